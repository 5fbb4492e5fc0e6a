"""Task introspection (3.14+): call graphs inside the process, and
`python -m asyncio ps/pstree` from outside, on both loops."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest
from conftest import run

pytestmark = pytest.mark.skipif(sys.version_info < (3, 14), reason="task call graphs are new in 3.14")


def test_capture_call_graph_sees_the_awaiting_tasks(loop):
    async def leaf(started):
        started.set_result(None)
        await asyncio.sleep(3600)

    async def waiter(task):
        await task

    async def main():
        started = loop.create_future()
        child = asyncio.create_task(leaf(started), name="leaf")
        awaiting = asyncio.create_task(waiter(child), name="waiter")
        await started
        await asyncio.sleep(0)
        graph = asyncio.capture_call_graph(child)
        child.cancel()
        with pytest.raises(asyncio.CancelledError):
            await awaiting
        return graph

    graph = run(loop, main())
    assert graph.future.get_name() == "leaf"
    assert [f.frame.f_code.co_name for f in graph.call_stack] == ["sleep", "leaf"]
    assert [a.future.get_name() for a in graph.awaited_by] == ["waiter"]


PROGRAM = textwrap.dedent(
    """
    import asyncio, sys, ferroloop

    async def worker():
        await asyncio.sleep(3600)

    async def main():
        async with asyncio.TaskGroup() as tg:
            tg.create_task(worker(), name="worker-0")
            tg.create_task(worker(), name="worker-1")
            await asyncio.sleep(0)
            print(type(asyncio.get_running_loop()).__name__, flush=True)
            sys.stdin.read()
            raise SystemExit

    ferroloop.run(main()) if sys.argv[1] == "ferroloop" else asyncio.run(main())
    """
)


def test_asyncio_ps_lists_the_tasks_from_outside(loop_name):
    prog = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, loop_name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert prog.stdout.readline().strip() == ("Loop" if loop_name == "ferroloop" else "_UnixSelectorEventLoop")
        ps = subprocess.run(
            [sys.executable, "-m", "asyncio", "ps", str(prog.pid)], capture_output=True, text=True, timeout=60
        )
        if ps.returncode and "ermission" in ps.stderr:
            pytest.skip(f"cannot read another process here: {ps.stderr.strip()[-200:]}")
        assert ps.returncode == 0, ps.stderr
        names = sorted(line.split()[2] for line in ps.stdout.splitlines()[2:] if line.strip())
        assert names == ["Task-1", "worker-0", "worker-1"]
    finally:
        prog.stdin.close()
        prog.wait(timeout=30)
        prog.stdout.close()
