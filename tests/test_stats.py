"""loop.stats(): always-on counters, time split, timer lag and slow
callbacks (ferroloop only: asyncio's loop has no such thing)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ferroloop


def run(loop, coro):
    return loop.run_until_complete(coro)


def delta(after, before, keys):
    return {k: after[k] - before[k] for k in keys}


def test_counters_count_what_ran():
    loop = ferroloop.new_event_loop()
    try:
        before = loop.stats()

        async def main():
            for _ in range(100):
                loop.call_soon(lambda: None)
            handles = [loop.call_later(0.001 * i, lambda: None) for i in range(10)]
            for h in handles[:3]:
                h.cancel()
            await asyncio.sleep(0.05)

        run(loop, main())
        after = loop.stats()
    finally:
        loop.close()
    d = delta(after, before, ["callbacks", "timers_scheduled", "timers_fired", "timers_cancelled"])
    # The 100 callbacks, 7 timers, the sleep's timer and the task's steps.
    assert d["callbacks"] >= 100 + 7 + 1
    assert d["timers_scheduled"] == 10 + 1
    assert d["timers_fired"] == 7 + 1
    assert d["timers_cancelled"] == 3
    assert after["lag"]["count"] == after["timers_fired"]
    lag = after["lag"]
    assert 0 <= lag["p50"] <= lag["p90"] <= lag["p99"] <= lag["max"]
    assert sum(n for _, n in lag["buckets"]) == lag["count"]


def test_io_events_and_the_time_split():
    loop = ferroloop.new_event_loop()
    a, b = socket.socketpair()
    try:
        a.setblocking(False)

        async def main():
            loop.call_later(0.2, b.send, b"x")
            return await loop.sock_recv(a, 1)

        assert run(loop, main()) == b"x"
        stats = loop.stats()
    finally:
        a.close()
        b.close()
        loop.close()
    assert stats["io_events"] >= 1
    # The loop sat in its poller for the 0.2 s before the send.
    assert stats["waiting_seconds"] >= 0.1
    assert stats["running_seconds"] >= 0
    assert stats["iterations"] >= 2


def test_a_slow_callback_counts_and_is_named_when_it_recurs():
    loop = ferroloop.new_event_loop()
    loop.slow_callback_duration = 0.05
    try:

        async def main():
            for _ in range(2):
                handle = loop.call_soon(time.sleep, 0.08)
                shown = repr(handle)  # `sleep()` from 3.13 on: args only in debug mode
                await asyncio.sleep(0.01)
            return shown

        shown = run(loop, main())
        stats = loop.stats()
    finally:
        loop.close()
    assert stats["slow_callback_threshold"] == 0.05
    assert stats["slow_iterations"] >= 1
    longest, callbacks = stats["longest_iteration"]
    assert longest >= 0.08 and callbacks >= 1
    # The first is seen as a slow iteration; the watch it starts names the second.
    assert stats["slow_callbacks"] >= 1
    what, seconds = stats["slowest_callbacks"][0]
    assert what == shown and what.startswith("<Handle sleep(") and seconds >= 0.08


def test_debug_mode_names_every_slow_callback():
    loop = ferroloop.new_event_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    try:

        async def main():
            loop.call_soon(time.sleep, 0.06)
            await asyncio.sleep(0.01)

        run(loop, main())
        stats = loop.stats()
    finally:
        loop.close()
    # Named as asyncio's debug log names it ("created at ..." included).
    (what, seconds), *_ = stats["slowest_callbacks"]
    assert what.startswith("<Handle sleep(0.06) created at ") and seconds >= 0.06


def test_counters_only_grow_and_a_snapshot_can_be_taken_from_another_thread():
    loop = ferroloop.new_event_loop()
    seen = []
    stop = threading.Event()

    def watcher():
        while not stop.is_set():
            seen.append(loop.stats()["callbacks"])
            time.sleep(0.001)

    async def main():
        for _ in range(200):
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)

    thread = threading.Thread(target=watcher)
    thread.start()
    try:
        run(loop, main())
    finally:
        stop.set()
        thread.join()
        loop.close()
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] >= 200


def test_python_m_ferroloop_stats_reports_at_exit():
    program = "import asyncio\nasync def main():\n    await asyncio.sleep(0.01)\nasyncio.run(main())\n"
    out = subprocess.run(
        [sys.executable, "-m", "ferroloop", "--stats", "-c", program], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert lines[0] == "ferroloop stats: loop 1"
    assert "iterations" in lines[1] and "1 fired" in lines[1]
    assert lines[3].startswith("  timer lag over 1 timers: p50 ")


def readme_blocks():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Loop statistics") : readme.index("## Speed")]
    return section, [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]


def test_the_readme_example_prints_what_the_readme_says():
    section, (example, _) = readme_blocks()
    out = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first == "2 2 1"
    assert second.startswith("[('<Handle sleep(") and second.endswith(")]")
    assert "prints `2 2 1`" in section


def test_the_readme_export_example_exports():
    prometheus_client = pytest.importorskip("prometheus_client")
    _, (_, export) = readme_blocks()
    namespace: dict = {}
    exec(export, namespace)
    loop = ferroloop.new_event_loop()
    registry = prometheus_client.CollectorRegistry()
    try:
        loop.run_until_complete(asyncio.sleep(0))
        registry.register(namespace["LoopStats"](loop))
        text = prometheus_client.generate_latest(registry).decode()
    finally:
        loop.close()
    iterations = loop.stats()["iterations"]
    assert f"ferroloop_iterations_total {float(iterations)}" in text
