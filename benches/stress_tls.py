"""TLS leak check: opens, uses and closes TLS connections one after another
on one event loop and checks that memory and descriptors come back.

    .venv/bin/python benches/stress_tls.py                        # 50,000 on ferroloop
    .venv/bin/python benches/stress_tls.py --loop uvloop --count 10000
    make stress-tls

Client and server are on the same loop, over loopback: a TLS echo Protocol
on loop.create_server(ssl=...), and loop.create_connection(ssl=...) for each
client. Each connection: TCP connect, full TLS handshake (no session reuse),
one 1 KiB message echoed back, the client closes (close_notify), and the
next one starts only after both ends' connection_lost ran. Certificates:
a throwaway trustme CA (ECDSA P-256); TLS 1.3 is negotiated.

A warm-up of `--warmup` connections (1,000) comes first; the baseline is
taken after it: VmRSS from /proc/self/status (after gc.collect() and
malloc_trim(0), so that freed-but-cached heap does not count; the raw value
is printed too) and the number of entries in /proc/self/fd. The same is
read after the last connection. It exits non-zero if RSS grew more than
`--max-growth` (10%) over the post-warm-up value, if any descriptor is left
(at the end, and after loop.close() against before the loop existed; a
throwaway loop is created and closed before that count, so that what a loop
library opens once per process, like libuv's signal pipe, is not counted),
if a connection failed, or if the loop's exception handler was called.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import os
import ssl
import sys
import time

MSG = bytes(range(256)) * 4  # 1 KiB
TIMEOUT = 10.0


def loop_factory(name: str):
    if name == "asyncio":
        return asyncio.SelectorEventLoop
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    import ferroloop

    return ferroloop.new_event_loop


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def vmrss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def rss_sample() -> tuple[float, float]:
    """(raw, after gc.collect() + malloc_trim(0)) VmRSS in MiB."""
    raw = vmrss_kib() / 1024
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass
    return raw, vmrss_kib() / 1024


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    import trustme

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the hostname
    ca.configure_trust(client)
    return server, client


class Stats:
    def __init__(self):
        self.done = 0
        self.handler_calls: list[str] = []


async def run_connections(n: int, sctx, cctx, stats: Stats, progress: int = 0) -> None:
    loop = asyncio.get_running_loop()
    server_lost: asyncio.Future | None = None

    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

        def connection_lost(self, exc):
            if server_lost is not None and not server_lost.done():
                server_lost.set_result(exc)

    class Client(asyncio.Protocol):
        def __init__(self):
            self.buf = bytearray()
            self.echoed = loop.create_future()
            self.lost = loop.create_future()

        def data_received(self, data):
            self.buf += data
            if len(self.buf) >= len(MSG) and not self.echoed.done():
                self.echoed.set_result(bytes(self.buf))

        def connection_lost(self, exc):
            if not self.lost.done():
                self.lost.set_result(exc)

    server = await loop.create_server(Server, "127.0.0.1", 0, ssl=sctx, backlog=128)
    port = server.sockets[0].getsockname()[1]
    t0 = time.perf_counter()
    try:
        for i in range(n):
            server_lost = loop.create_future()
            t, p = await asyncio.wait_for(
                loop.create_connection(Client, "127.0.0.1", port, ssl=cctx, server_hostname="127.0.0.1"), TIMEOUT
            )
            t.write(MSG)
            if await asyncio.wait_for(p.echoed, TIMEOUT) != MSG:
                raise AssertionError(f"connection {i}: bad echo")
            t.close()  # close_notify, then the socket
            await asyncio.wait_for(asyncio.gather(p.lost, server_lost), TIMEOUT)
            stats.done += 1
            if progress and stats.done % progress == 0:
                print(
                    f"  {stats.done:>7,} connections  {time.perf_counter() - t0:6.1f} s  "
                    f"VmRSS {vmrss_kib() / 1024:.1f} MiB  fds {fd_count()}",
                    flush=True,
                )
    finally:
        server.close()
        await server.wait_closed()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loop", choices=["asyncio", "uvloop", "ferroloop"], default="ferroloop")
    ap.add_argument("--count", type=int, default=50_000, help="measured connections [50000]")
    ap.add_argument("--warmup", type=int, default=1_000, help="connections before the baseline [1000]")
    ap.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth [0.10]")
    ap.add_argument("--progress", type=int, default=10_000, help="print a line every N connections (0: never)")
    args = ap.parse_args()

    sctx, cctx = contexts()
    stats = Stats()
    # A throwaway loop first, so that what a loop library opens once per process
    # (libuv's signal pipe, for uvloop) is already there when counting.
    first = loop_factory(args.loop)()
    first.run_until_complete(asyncio.sleep(0))
    first.close()
    del first
    gc.collect()
    fds_before_loop = fd_count()
    loop = loop_factory(args.loop)()
    loop.set_exception_handler(lambda lp, ctx: stats.handler_calls.append(str(ctx.get("message"))))
    failure = None
    try:
        loop.run_until_complete(run_connections(args.warmup, sctx, cctx, stats))
        fds0, (raw0, rss0) = fd_count(), rss_sample()
        stats.done = 0
        t0 = time.perf_counter()
        try:
            loop.run_until_complete(run_connections(args.count, sctx, cctx, stats, args.progress))
        except Exception as e:  # noqa: BLE001 - reported below
            failure = f"{type(e).__name__}: {e}"
        elapsed = time.perf_counter() - t0
        fds1, (raw1, rss1) = fd_count(), rss_sample()
    finally:
        loop.close()
    gc.collect()
    fds_after_close = fd_count()

    growth = (rss1 - rss0) / rss0
    problems = []
    if failure:
        problems.append(f"connection {stats.done} failed: {failure}")
    if stats.done != args.count:
        problems.append(f"only {stats.done:,} of {args.count:,} connections completed")
    if growth > args.max_growth:
        problems.append(f"RSS grew {growth:+.1%} (more than {args.max_growth:.0%})")
    if fds1 != fds0:
        problems.append(f"{fds1 - fds0:+d} descriptors after the run")
    if fds_after_close != fds_before_loop:
        problems.append(f"{fds_after_close - fds_before_loop:+d} descriptors after loop.close()")
    if stats.handler_calls:
        problems.append(
            f"the loop's exception handler was called {len(stats.handler_calls)} times, first: "
            f"{stats.handler_calls[0]!r}"
        )

    print(
        f"{args.loop}: {stats.done:,} TLS connections (handshake + 1 KiB echo + close) in {elapsed:.1f} s "
        f"({stats.done / elapsed if elapsed else 0:,.0f}/s) after a {args.warmup:,}-connection warm-up\n"
        f"  VmRSS after warm-up {rss0:.1f} MiB (raw {raw0:.1f}), at the end {rss1:.1f} MiB (raw {raw1:.1f}): "
        f"{growth:+.1%} (limit +{args.max_growth:.0%})\n"
        f"  fds: {fds_before_loop} before the loop, {fds0} after warm-up, {fds1} at the end, "
        f"{fds_after_close} after loop.close()"
    )
    if problems:
        print("FAIL: " + "; ".join(problems))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
