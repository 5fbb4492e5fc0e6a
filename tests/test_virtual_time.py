"""ferroloop.testing: a loop on virtual time jumps to its next deadline
instead of waiting, fires timers in the order the real clock would, and
still does real I/O."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ferroloop
import ferroloop.testing as vt


def run(coro, clock=None):
    loop = vt.new_event_loop(clock=clock)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_an_hour_of_sleep_takes_no_real_time():
    clock = vt.VirtualClock()

    async def main():
        loop = asyncio.get_running_loop()
        assert vt.get_clock() is clock and loop.time() == 0.0
        await asyncio.sleep(3600)
        return loop.time()

    started = time.monotonic()
    assert run(main(), clock) == 3600.0
    assert clock.time == 3600.0
    # Not a benchmark: an hour would be the real-time answer.
    assert time.monotonic() - started < 60


def test_timeouts_and_wait_for_expire_on_virtual_time():
    async def main():
        loop = asyncio.get_running_loop()
        out = []
        try:
            async with asyncio.timeout(30):
                await asyncio.sleep(31)
        except TimeoutError:
            out.append(("timeout", loop.time()))
        try:
            await asyncio.wait_for(asyncio.sleep(10), 2.5)
        except TimeoutError:
            out.append(("wait_for", loop.time()))
        out.append(("sleep done", await asyncio.sleep(0.25, "x"), loop.time()))
        return out

    assert run(main()) == [("timeout", 30.0), ("wait_for", 32.5), ("sleep done", "x", 32.75)]


def test_call_later_chains_and_task_groups_keep_the_real_order():
    async def main():
        loop = asyncio.get_running_loop()
        fired = []
        for delay in (5, 1, 3, 1, 0, 7):
            loop.call_later(delay, lambda d=delay: fired.append((d, loop.time())))

        async def worker(n, delay):
            await asyncio.sleep(delay)
            fired.append((f"task {n}", loop.time()))

        async with asyncio.TaskGroup() as tg:
            for n, delay in enumerate((2, 6, 4)):
                tg.create_task(worker(n, delay))
        await asyncio.sleep(2)
        return fired

    assert run(main()) == [
        (0, 0.0), (1, 1.0), (1, 1.0), ("task 0", 2.0), (3, 3.0), ("task 2", 4.0), (5, 5.0), ("task 1", 6.0),
        (7, 7.0),
    ]


def test_the_clock_can_be_driven_by_hand():
    clock = vt.VirtualClock(100.0)

    async def main():
        loop = asyncio.get_running_loop()
        fired = []
        loop.call_later(10, fired.append, "ten")
        clock.advance(9.5)
        for _ in range(3):
            await asyncio.sleep(0)
        assert fired == [] and loop.time() == 109.5
        clock.advance(0.5)
        # The iteration that runs this task's next step finds the timer due
        # and runs it after that step, as with a real clock.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert fired == ["ten"] and loop.time() == 110.0
        return fired

    assert run(main(), clock) == ["ten"]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_the_clock_refuses_to_go_back_or_to_infinity(bad):
    clock = vt.VirtualClock()
    with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
        clock.advance(bad)
    with pytest.raises(ValueError, match="autojump_threshold must be a finite number >= 0"):
        clock.autojump_threshold = bad
    assert clock.time == 0.0 and clock.autojump_threshold == 0.0


def test_the_clock_is_not_changed_under_timers_or_a_running_loop():
    loop = ferroloop.new_event_loop()
    try:
        handle = loop.call_later(1, print)
        with pytest.raises(RuntimeError, match="with timers scheduled"):
            loop._virtual_clock = vt.VirtualClock()
        handle.cancel()

        async def inside():
            loop._virtual_clock = vt.VirtualClock()

        with pytest.raises(RuntimeError, match="of a running loop"):
            loop.run_until_complete(inside())
    finally:
        loop.close()
    with pytest.raises(RuntimeError, match="does not run on virtual time"):
        vt.get_clock(loop)


def test_real_io_works_on_virtual_time():
    """A loopback server and client, under a virtual timeout: the loop polls
    I/O before it jumps, so the answer comes before the deadline."""

    async def main():
        loop = asyncio.get_running_loop()

        async def echo(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping\n")
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return line, loop.time()

    line, now = run(main())
    assert line == b"ping\n" and now < 5


def test_a_subprocess_on_virtual_time_with_a_threshold():
    """Work done in real time elsewhere (a child process) while a virtual
    timer is pending: a threshold lets it arrive before the jump."""
    clock = vt.VirtualClock(autojump_threshold=0.5)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(0.05); print('out')", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 3600)
        return out, proc.returncode

    assert run(main(), clock) == (b"out\n", 0)


def test_a_socket_pair_read_with_a_pending_timer():
    """Data already in the kernel is read before the clock jumps."""

    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.send(b"here")
            data = await asyncio.wait_for(loop.sock_recv(a, 10), 1)
        return data, loop.time()

    assert run(main()) == (b"here", 0.0)


# --- a deadline-heavy workload, on virtual and on real time ---------------------------------------


def deadline_workload(tasks: int, slots: int, slot: float, seed: int):
    """`tasks` tasks, each sleeping until one slot and timing out at
    another (never the same), on absolute deadlines from one start: the
    order they finish in, and how, is decided by the deadlines alone."""
    rng = random.Random(seed)
    plan = []
    for n in range(tasks):
        sleep_slot, timeout_slot = rng.sample(range(1, slots + 1), 2)
        plan.append((n, sleep_slot, timeout_slot))

    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        finished = []

        async def sleep_until(when):
            # Not sleep(when - loop.time()): on a real clock that rounds the
            # deadline off `when`, and ties with other deadlines would break.
            woken = loop.create_future()
            handle = loop.call_at(when, woken.set_result, None)
            try:
                await woken
            finally:
                handle.cancel()

        async def one(n, sleep_slot, timeout_slot):
            try:
                async with asyncio.timeout_at(start + timeout_slot * slot):
                    await sleep_until(start + sleep_slot * slot)
                finished.append((n, "slept", sleep_slot))
            except TimeoutError:
                finished.append((n, "timed out", timeout_slot))

        async with asyncio.TaskGroup() as tg:
            for args in plan:
                tg.create_task(one(*args))
        return finished, loop.time() - start

    return main


def test_ten_thousand_deadlines_over_a_virtual_hour():
    main = deadline_workload(tasks=10_000, slots=3600, slot=1.0, seed=17)
    started = time.monotonic()
    finished, elapsed = run(main())
    real = time.monotonic() - started
    assert len(finished) == 10_000 and elapsed <= 3600.0
    # Every task ended at the earlier of its two deadlines, in deadline order.
    assert [slot for _, _, slot in finished] == sorted(slot for _, _, slot in finished)
    assert real < 60  # not a benchmark: the real-time run would take an hour


def by_slot(finished):
    """Finish events as a set per slot, in slot order: asyncio's heap
    leaves the order of equal deadlines undefined."""
    groups: dict = {}
    for n, how, slot in finished:
        groups.setdefault(slot, set()).add((n, how))
    return [groups[slot] for slot in sorted(groups)]


def test_a_scaled_down_copy_gives_the_same_results_on_the_real_clock():
    """The same plan at 1/10 scale (0.1 s slots) on the real clock: on
    ferroloop, the same tasks finish the same way in the same order (equal
    deadlines in the order they were set); on asyncio's loop, the same way,
    slot by slot."""

    def on(factory):
        loop = factory()
        try:
            return loop.run_until_complete(deadline_workload(tasks=400, slots=20, slot=0.1, seed=5)())[0]
        finally:
            loop.close()

    virtual = on(vt.new_event_loop)
    assert len(virtual) == 400
    assert virtual == on(ferroloop.new_event_loop)
    assert by_slot(virtual) == by_slot(on(asyncio.SelectorEventLoop))


def test_the_readme_example_prints_what_the_readme_says():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Virtual time for tests") :]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "timed out at 30.0\nvirtual time: 30.0\n"
    assert "prints `timed out at 30.0` and `virtual time: 30.0`" in section
