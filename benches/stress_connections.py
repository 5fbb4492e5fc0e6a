"""Opens and closes TCP connections one after another on each loop and
prints descriptor counts and resident memory before and after.

    .venv/bin/python benches/stress_connections.py                   # 200,000 on asyncio and ferroloop
    .venv/bin/python benches/stress_connections.py -n 50000 --loops ferroloop

Each connection: create_connection to a server on the same loop, one byte
echoed, closed by the client. A warm-up round (`--warmup`, 2,000) comes
first; the baseline is taken after it. This is a measurement: it exits
non-zero only if descriptors leaked or a connection failed, and prints the
RSS change for a human to judge (tests/test_net_stress.py asserts it).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import os
import sys
import time

import ferroloop

LOOPS = {"asyncio": asyncio.SelectorEventLoop, "ferroloop": ferroloop.new_event_loop}


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def open_and_close(n: int) -> int:
    loop = asyncio.get_running_loop()
    lost = 0

    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

        def connection_lost(self, exc):
            nonlocal lost
            lost += 1

    class Client(asyncio.Protocol):
        def __init__(self):
            self.reply = loop.create_future()

        def data_received(self, data):
            self.reply.set_result(data)

    server = await loop.create_server(Server, "127.0.0.1", 0, backlog=1000)
    port = server.sockets[0].getsockname()[1]
    try:
        for _ in range(n):
            t, p = await loop.create_connection(Client, "127.0.0.1", port)
            t.write(b"x")
            if await p.reply != b"x":
                raise AssertionError("bad echo")
            t.close()
        while lost < n:
            await asyncio.sleep(0.001)
    finally:
        server.close()
        await server.wait_closed()
    return lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200_000, help="connections per loop (default 200,000)")
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--loops", nargs="+", choices=sorted(LOOPS), default=sorted(LOOPS))
    args = parser.parse_args()
    ok = True
    for name in args.loops:
        loop = LOOPS[name]()
        try:
            loop.run_until_complete(open_and_close(args.warmup))
            fds0, rss0 = fd_count(), rss_mb()
            t0 = time.perf_counter()
            done = loop.run_until_complete(open_and_close(args.n))
            elapsed = time.perf_counter() - t0
            fds1, rss1 = fd_count(), rss_mb()
        finally:
            loop.close()
        leak = fds1 != fds0 or done != args.n
        ok &= not leak
        print(
            f"{name:10} connections={done:,} fds {fds0} -> {fds1} "
            f"rss {rss0:.1f} MB -> {rss1:.1f} MB ({rss1 - rss0:+.1f} MB) "
            f"{elapsed:.1f} s{'  LEAK' if leak else ''}",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
