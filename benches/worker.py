"""Run one workload on one event loop, in this (fresh) process; print JSON.

Not meant to be run by hand (run.py starts it), but it can be:

    .venv/bin/python benches/worker.py --loop ferroloop --workload sleep0 --n 100000

Each repetition gets a brand-new loop, closed afterwards. One small warm-up
run (n/10, not reported) goes first so that imports, code objects and the
allocator are warm for every loop alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workloads import BY_KEY  # noqa: E402


# The loops a worker can run: ours, asyncio's, uvloop, and the Rust peers
# (run.py --peers) rloop and rsloop.
LOOP_NAMES = ["asyncio", "uvloop", "ferroloop", "rloop", "rsloop"]


def installed(name: str) -> bool:
    """Whether the loop's package can be imported (asyncio always can)."""
    import importlib.util

    return name == "asyncio" or importlib.util.find_spec(name) is not None


def loop_factory(name: str):
    if name == "asyncio":
        return asyncio.SelectorEventLoop  # what asyncio.new_event_loop() gives on Linux
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "ferroloop":
        import ferroloop

        return ferroloop.new_event_loop
    if name == "rloop":
        import rloop

        return rloop.new_event_loop
    if name == "rsloop":
        import rsloop

        return rsloop.new_event_loop
    raise SystemExit(f"unknown loop {name!r}")


def run_once(factory, func, n: int, idle_fd: bool, gc_off: bool):
    loop = factory()
    asyncio.set_event_loop(loop)
    pair = None
    try:
        if idle_fd:
            # One registered descriptor that never becomes readable: every
            # iteration now has something to poll, so a loop may no longer
            # skip its zero-timeout epoll_wait.
            pair = socket.socketpair()
            loop.add_reader(pair[0].fileno(), lambda: None)
        gc.collect()
        if gc_off:
            # Measures the loop without the cyclic GC's passes over the
            # (possibly millions of) live handles; the default keeps GC on.
            gc.disable()
        return func(loop, n)
    finally:
        gc.enable()
        if pair is not None:
            loop.remove_reader(pair[0].fileno())
            for s in pair:
                s.close()
        asyncio.set_event_loop(None)
        loop.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", required=True, choices=LOOP_NAMES)
    ap.add_argument("--workload", choices=sorted(BY_KEY))
    ap.add_argument("--n", type=int)
    ap.add_argument("--fairness", action="store_true", help="no timing: chain steps before a ready reader runs")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--idle-fd", action="store_true")
    ap.add_argument("--gc-off", action="store_true")
    ap.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    args = ap.parse_args()

    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    factory = loop_factory(args.loop)
    if args.fairness:
        from workloads.call_soon import fairness

        loop = factory()
        try:
            json.dump(fairness(loop), sys.stdout)
        finally:
            loop.close()
        return
    if args.workload is None or args.n is None:
        ap.error("--workload and --n are required")
    func = BY_KEY[args.workload].func
    run_once(factory, func, max(1, args.n // 10), args.idle_fd, args.gc_off)  # warm-up

    seconds: list[float] = []
    parts: dict[str, list[float]] = {}
    check = None
    for _ in range(args.reps):
        r = run_once(factory, func, args.n, args.idle_fd, args.gc_off)
        seconds.append(r.seconds)
        for label, s in r.parts.items():
            parts.setdefault(label, []).append(s)
        check = r.check
    json.dump({"seconds": seconds, "parts": parts, "check": check}, sys.stdout)


if __name__ == "__main__":
    main()
