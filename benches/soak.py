"""Soak test: a mixed asyncio workload on one loop for minutes, then a verdict on whether anything grew.

    .venv/bin/python benches/soak.py                               # 300 s on ferroloop (`make soak`)
    .venv/bin/python benches/soak.py --loop asyncio --seconds 60   # the same code on asyncio's SelectorEventLoop
    .venv/bin/python benches/soak.py --seconds 30 --interval 5 --seed 7

All at once on one loop, the same code on either loop, sizes and choices from RNGs seeded by --seed:

* echo: a streams server (asyncio.start_server) and a Protocol server (loop.create_server, with flow
  control) on 127.0.0.1; --conns clients (20), half on asyncio.open_connection, half a Protocol on
  loop.create_connection, each doing 1-8 round trips of 1 B .. 256 KiB (log-uniform) with either
  server, then ending by close() (40%), reset (30%: SO_LINGER 0, then close() / abort(), half of
  them with data in flight) or half-close (30%: write_eof(), read to EOF), and connecting again.
  Every echo is checked: blake2b of what came back against what was sent.
* timers: batches of 300 call_later (0-200 ms), 40% cancelled 50 ms in (a cancelled timer that
  fires or a live one that never does is an error); wait_for / asyncio.timeout that must expire
  (around sleep(3600)) and that must not (60 s on a 1 ms sleep).
* threads: 2 calling call_soon_threadsafe --threadsafe-rate (2,000) times a second each, every call
  to run in order; run_in_executor, 4 jobs at a time (2 ms blocking; one in ten raises on purpose).
* subprocesses: every ~0.5 s `true` or `cat` with communicate() (cat's input must come back).

Every --interval (10 s) the workers finish their current step and park, the servers' side of the
last connections drains, gc.collect() and malloc_trim(0) run, and a line is printed: time, RSS
(/proc/self/statm after the trim; raw: before), open fds (/proc/self/fd), tasks (all_tasks()),
sys.getallocatedblocks(), CPU (process + children, % of one core), and the work done since the
previous line. At that quiet point fds and tasks are exact and RSS and blocks far less noisy than
mid-transfer. The 0 s line is taken before any work.

The verdict. Samples before --warmup (20% of the run) are left out: executor threads, allocator
arenas and caches fill up then. For each of RSS, fds, tasks and blocks:

    trend = least-squares slope over the samples after the warm-up x the time they span
    rise  = max over the last third of the run - max over its middle third
    FAIL when trend > tolerance AND rise > tolerance / 4

A steady leak raises both (a linear one: rise = 0.42 x trend on a default run); a one-off step that
stays flat after (an arena, a thread, a cache filled once) raises the trend, not the rise; jitter
neither. Tolerances (TOLERANCE), for the default 300 s run, whose workload makes ~200 connections
a second, ~48,000 in the 240 s judged:

    RSS     4 MiB    1 KiB leaked per connection is ~47 MiB; the trimmed RSS drifts < 1 MiB
    fds     2        exact when quiet: one socket leaked per 1,000 connections is ~48
    tasks   1        exact when quiet
    blocks  2,000    one small object leaked per connection is ~48,000; jitter is ~300

Shorter runs are less sensitive (fewer connections, same tolerances). Exit 1 on FAIL, and when any
step raised unexpectedly (a wrong echo, a step hung 30 s, a timer or timeout that did the wrong
thing, a threadsafe call lost or out of order) or the loop's exception handler got anything but the
connection errors our own resets cause (those are counted and printed); 2 when too short to judge.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import functools
import gc
import hashlib
import os
import random
import resource
import socket
import struct
import sys
import threading
import time
from collections import namedtuple

PAGE = os.sysconf("SC_PAGE_SIZE")
POOL = 1 << 20  # messages are slices of 1 MiB (+ 256 KiB) of seeded random bytes
HANG = 30.0  # a step that takes longer than this is hung, not slow
PARK_TIMEOUT = 60.0
LINGER0 = struct.pack("ii", 1, 0)
TOLERANCE = {"rss": 4.0, "fds": 2, "tasks": 1, "blocks": 2000}  # see the docstring
UNIT = {"rss": "MiB", "fds": "fds", "tasks": "tasks", "blocks": "blocks"}
# What the loop's exception handler may report without failing the run: the results of our own resets.
EXPECTED_HANDLER = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
COUNTERS = ("echoes", "bytes", "conns", "resets", "halfcloses", "timers", "cancelled", "timeouts",
            "threadsafe", "executor", "subprocs")  # fmt: skip

try:
    malloc_trim = ctypes.CDLL(None).malloc_trim
except (AttributeError, OSError):  # not glibc
    malloc_trim = None


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def same(sent: bytes, got: bytes) -> bool:
    return hashlib.blake2b(sent).digest() == hashlib.blake2b(got).digest()


# One reading at a quiet point; conns: connections made since the start.
Sample = namedtuple("Sample", "t rss raw fds tasks blocks conns")


class EchoClient(asyncio.Protocol):
    def __init__(self, loop):
        self.loop, self.buf, self.want, self.waiter = loop, bytearray(), 0, None
        self.eof, self.lost = loop.create_future(), loop.create_future()

    def data_received(self, data):
        self.buf += data
        if self.waiter is not None and not self.waiter.done() and len(self.buf) >= self.want:
            self.waiter.set_result(None)

    def eof_received(self):
        if not self.eof.done():
            self.eof.set_result(None)  # and return None: the transport closes itself

    def connection_lost(self, exc):
        for f in (self.eof, self.lost):
            if not f.done():
                f.set_result(exc)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost while waiting for an echo: {exc!r}"))

    async def read(self, n: int) -> bytes:
        if len(self.buf) < n:
            self.want, self.waiter = n, self.loop.create_future()
            await self.waiter
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def read_all(self) -> bytes:
        await self.eof
        return bytes(self.buf)


class EchoServer(asyncio.Protocol):
    def __init__(self, soak):
        self.soak = soak

    def connection_made(self, transport):
        self.transport = transport
        self.soak.server_conns += 1

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return None  # the echo is already written: close once it is flushed

    # Flow control: a client slow to read stops us reading from it, so our buffer stays bounded.
    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def connection_lost(self, exc):
        self.soak.server_conns -= 1


class Soak:
    def __init__(self, args, loop):
        self.args, self.loop = args, loop
        self.pool = random.Random(args.seed).randbytes(POOL + (1 << 18))
        self.count, self.total = dict.fromkeys(COUNTERS, 0), dict.fromkeys(COUNTERS, 0)
        self.errors: dict[str, int] = {}
        self.handler_expected: dict[str, int] = {}
        self.stop, self.running, self.parked, self.server_conns, self.ports = False, asyncio.Event(), 0, 0, [0]
        self.running.set()
        self.thread_stop, self.submitted, self.received = threading.Event(), [0, 0], [0, 0]

    def add(self, key: str, n: int = 1) -> None:
        self.count[key] += n
        self.total[key] += n

    def fail(self, where: str, what) -> None:
        text = f"{where}: {type(what).__name__}: {what}" if isinstance(what, BaseException) else f"{where}: {what}"
        if text not in self.errors:
            if len(self.errors) >= 20:  # a fault that repeats must not become a leak of its own
                text = "(more errors, not itemised)"
            elif len(self.errors) < 5:
                print(f"  error: {text}", file=sys.stderr, flush=True)
        self.errors[text] = self.errors.get(text, 0) + 1

    def on_loop_error(self, loop, ctx) -> None:
        exc = ctx.get("exception")
        key = f"{ctx.get('message')} ({type(exc).__name__})" if exc else str(ctx.get("message"))
        if isinstance(exc, EXPECTED_HANDLER):
            self.handler_expected[key] = self.handler_expected.get(key, 0) + 1
        else:
            self.fail("exception handler", f"{key}: {exc!r}" if exc else key)

    def message(self, rng: random.Random, max_log2: int = 18) -> bytes:
        n = int(2 ** rng.uniform(0, max_log2))  # 1 B .. 256 KiB by default, log-uniform
        off = rng.randrange(POOL)
        return self.pool[off : off + n]

    def check(self, sent: bytes, got: bytes, what: str) -> None:
        if not same(sent, got):
            raise AssertionError(f"{what}: sent {len(sent)} B, got back {len(got)} B that differ")
        self.add("echoes")
        self.add("bytes", len(sent))

    # --- the workers: each runs its step until the end, parking between steps --------------

    async def worker(self, name: str, step, rng: random.Random) -> None:
        while not self.stop:
            if not self.running.is_set():  # park between two steps while the sampler measures
                self.parked += 1
                await self.running.wait()
                self.parked -= 1
            if self.stop:
                break
            try:
                async with asyncio.timeout(HANG):
                    await step(rng)
            except Exception as e:  # recorded; the worker goes on: one fault should not end the soak
                self.fail(name, e)
                await asyncio.sleep(0.1)

    async def client(self, rng: random.Random, streams: bool) -> None:
        """One connection: round trips, then close, reset or half-close. On streams or on a Protocol."""
        port = rng.choice(self.ports)
        if streams:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            transport, write, read, read_all = writer.transport, writer.write, reader.readexactly, reader.read
        else:
            transport, proto = await self.loop.create_connection(lambda: EchoClient(self.loop), "127.0.0.1", port)
            write, read, read_all = transport.write, proto.read, proto.read_all
        self.add("conns")
        mode = rng.choices(("close", "reset", "half"), (4, 3, 3))[0]
        try:
            for _ in range(rng.randint(1, 8)):
                msg = self.message(rng)
                write(msg)  # no drain() first: read while it flushes, or both ends could block
                self.check(msg, await read(len(msg)), "echo")
                if streams:
                    await writer.drain()
                await asyncio.sleep(rng.uniform(0, 0.03))
            if mode == "half":
                msgs = [self.message(rng, 16) for _ in range(rng.randint(1, 4))]
                for m in msgs:
                    write(m)
                transport.write_eof()
                self.check(b"".join(msgs), await read_all(), "half-close")
                self.add("halfcloses")
            elif mode == "reset":
                if rng.random() < 0.5:
                    write(self.message(rng))  # still in flight when the RST goes
                transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
                if not streams:
                    transport.abort()  # (the streams client resets by writer.close(), below)
                self.add("resets")
        finally:
            if streams:
                writer.close()
                await writer.wait_closed()
            else:
                transport.close()
                await proto.lost
        await asyncio.sleep(rng.uniform(0, 0.05))

    async def stream_handler(self, reader, writer) -> None:
        self.server_conns += 1
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass  # the client reset the connection: part of the workload
        except Exception as e:
            self.fail("streams server", e)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
            self.server_conns -= 1

    async def timers(self, rng: random.Random) -> None:
        n, fired, cancelled = 300, [False] * 300, [False] * 300
        state = {"fired": 0, "cancelled": 0}
        done = self.loop.create_future()

        def fire(j: int) -> None:
            if cancelled[j] or fired[j]:
                self.fail("timers", f"timer {j} fired {'after cancel()' if cancelled[j] else 'twice'}")
            fired[j] = True
            state["fired"] += 1
            self.add("timers")
            if state["fired"] + state["cancelled"] == n and not done.done():
                done.set_result(None)

        handles = [self.loop.call_later(rng.uniform(0, 0.2), fire, j) for j in range(n)]
        await asyncio.sleep(0.05)  # some have fired by now: cancel() on those must do nothing
        for j in rng.sample(range(n), n * 2 // 5):
            handles[j].cancel()
            if not fired[j]:
                cancelled[j] = True
                state["cancelled"] += 1
                self.add("cancelled")
        if state["fired"] + state["cancelled"] < n:
            await done  # under the 30 s hang guard: a live timer that never fires is an error
        await asyncio.sleep(rng.uniform(0, 0.02))

    async def timeouts(self, rng: random.Random) -> None:
        async def expires(use_wait_for: bool):
            try:
                if use_wait_for:
                    await asyncio.wait_for(asyncio.sleep(3600), rng.uniform(0.001, 0.02))
                else:
                    async with asyncio.timeout(rng.uniform(0.001, 0.02)):
                        await asyncio.sleep(3600)
            except TimeoutError:
                return
            raise AssertionError(f"{'wait_for' if use_wait_for else 'timeout'} around sleep(3600) did not expire")

        async def in_time():
            if await asyncio.wait_for(asyncio.sleep(0.001, result=42), 60) != 42:
                raise AssertionError("wait_for returned the wrong result")
            async with asyncio.timeout(60):
                await asyncio.sleep(0.001)

        await asyncio.gather(expires(True), expires(False), in_time())
        self.add("timeouts", 4)
        await asyncio.sleep(rng.uniform(0, 0.02))

    async def executor(self, rng: random.Random) -> None:
        def job(i: int) -> int:
            time.sleep(0.002)  # a blocking call: a thread waits, not the loop
            if i % 10 == 0:
                raise ValueError(i)
            return i * i

        base = rng.randrange(1_000_000)
        results = await asyncio.gather(*(self.loop.run_in_executor(None, job, base + k) for k in range(4)),
                                       return_exceptions=True)  # fmt: skip
        for i, r in enumerate(results, base):
            if not ((type(r) is ValueError and r.args == (i,)) if i % 10 == 0 else r == i * i):
                raise AssertionError(f"executor job {i} returned {r!r}")
            self.add("executor")
        await asyncio.sleep(rng.uniform(0.01, 0.04))

    async def subprocs(self, rng: random.Random) -> None:
        pipe = asyncio.subprocess.PIPE
        data = self.message(rng, 16) if rng.random() < 0.5 else b""
        if data:
            p = await asyncio.create_subprocess_exec("cat", stdin=pipe, stdout=pipe)
            out, _ = await p.communicate(data)
        else:
            p = await asyncio.create_subprocess_exec("true", stdout=pipe)
            out, _ = await p.communicate()
        if p.returncode != 0 or not same(data, out):
            raise AssertionError(f"subprocess: exit {p.returncode}, {len(out)} of {len(data)} bytes back")
        self.add("subprocs")
        await asyncio.sleep(rng.uniform(0.3, 0.7))

    def producer(self, tid: int) -> None:
        """A thread: call_soon_threadsafe at a steady rate (a few thousand a second, not a flood)."""
        tick, seq, due = 0.01, 0, time.monotonic()
        per_tick = max(1, round(self.args.threadsafe_rate * tick))
        try:
            while not self.thread_stop.is_set():
                for _ in range(per_tick):
                    self.loop.call_soon_threadsafe(self.on_threadsafe, tid, seq)
                    seq += 1
                self.submitted[tid] = seq
                due += tick
                if due > time.monotonic():
                    self.thread_stop.wait(due - time.monotonic())
                else:
                    due = time.monotonic()  # fell behind (GIL, a busy machine): keep the rate, don't burst
        except Exception as e:
            self.fail(f"threadsafe thread {tid}", e)

    def on_threadsafe(self, tid: int, seq: int) -> None:
        if seq != self.received[tid]:
            self.fail("threadsafe", f"thread {tid}: call {seq} ran when {self.received[tid]} was due")
        self.received[tid] = seq + 1
        self.add("threadsafe")

    # --- sampling ------------------------------------------------------------------------------

    async def quiesce(self, workers: int) -> None:
        self.running.clear()
        try:
            async with asyncio.timeout(PARK_TIMEOUT):
                while self.parked < workers:
                    await asyncio.sleep(0.005)
        except TimeoutError:
            self.fail("sampler", f"the workers did not park within {PARK_TIMEOUT:.0f} s (a hung step?)")
        # The server side of the last closes and resets; not forever: a connection that never ends
        # is a leak, and the fds column shows it.
        for _ in range(500):
            if self.server_conns <= 0:
                break
            await asyncio.sleep(0.01)

    def sample(self, t: float) -> Sample:
        raw = rss_mib()
        gc.collect()
        if malloc_trim is not None:
            malloc_trim(0)  # freed heap the allocator keeps cached is not growth
        return Sample(t, rss_mib(), raw, len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks()),
                      sys.getallocatedblocks(), self.total["conns"])  # fmt: skip

    async def run(self) -> list[Sample]:
        a = self.args
        servers = [await asyncio.start_server(self.stream_handler, "127.0.0.1", 0),
                   await self.loop.create_server(lambda: EchoServer(self), "127.0.0.1", 0)]  # fmt: skip
        self.ports = [s.sockets[0].getsockname()[1] for s in servers]
        print(HEADER)
        samples = [self.sample(0.0)]
        print(row(samples[0], self.count, None), flush=True)

        steps = [(f"client {i}", functools.partial(self.client, streams=i % 2 == 0)) for i in range(a.conns)]
        steps += [("timers", self.timers), ("timeouts", self.timeouts), ("executor", self.executor),
                  ("subprocess", self.subprocs)]  # fmt: skip
        workers = [asyncio.create_task(self.worker(name, step, random.Random(f"{a.seed}/{name}")), name=name)
                   for name, step in steps]  # fmt: skip
        threads = [threading.Thread(target=self.producer, args=(i,), daemon=True) for i in range(2)]
        for th in threads:
            th.start()
        t0, cpu0, k = time.monotonic(), cpu_seconds(), 0
        while True:
            k += 1
            t = min(k * a.interval, a.seconds)
            await asyncio.sleep(max(0.0, t0 + t - time.monotonic()))
            await self.quiesce(len(workers))
            samples.append(self.sample(time.monotonic() - t0))
            cpu1 = cpu_seconds()
            print(row(samples[-1], self.count, (cpu1 - cpu0) / (samples[-1].t - samples[-2].t)), flush=True)
            self.count, cpu0 = dict.fromkeys(COUNTERS, 0), cpu1
            if t >= a.seconds:
                break
            self.running.set()

        self.stop = True
        self.running.set()
        await asyncio.gather(*workers)
        self.thread_stop.set()
        for th in threads:
            th.join()
        await asyncio.sleep(0.5)  # the last threadsafe calls
        if self.received != self.submitted:
            self.fail("threadsafe", f"calls submitted {self.submitted}, run {self.received}")
        for srv in servers:
            srv.close()
            await srv.wait_closed()
        return samples


HEADER = (
    f"{'time':>6} {'RSS':>6} {'raw':>6} {'fds':>4} {'tasks':>5} {'blocks':>8} {'cpu%':>5} |"
    f" {'echoes':>6} {'MiB':>6} {'conns':>5} {'reset':>5} {'half':>5} |"
    f" {'timers':>6} {'cancel':>6} {'tmo':>5} | {'tsafe':>6} {'exec':>5} {'subp':>4}"
)


def row(s: Sample, c: dict, cpu: float | None) -> str:
    return (
        f"{s.t:5.0f}s {s.rss:6.1f} {s.raw:6.1f} {s.fds:4d} {s.tasks:5d} {s.blocks:8d} "
        f"{f'{cpu * 100:5.0f}' if cpu is not None else '':>5} |"
        f" {c['echoes']:6d} {c['bytes'] / 2**20:6.0f} {c['conns']:5d} {c['resets']:5d} {c['halfcloses']:5d} |"
        f" {c['timers']:6d} {c['cancelled']:6d} {c['timeouts']:5d} | {c['threadsafe']:6d} {c['executor']:5d}"
        f" {c['subprocs']:4d}"
    )


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def verdict(samples: list[Sample], warmup: float) -> tuple[bool | None, list[str]]:
    end = samples[-1].t
    post = [s for s in samples if s.t >= warmup and s.t > 0]
    mid = [s for s in samples if end / 3 < s.t <= 2 * end / 3]
    last = [s for s in samples if s.t > 2 * end / 3]
    if len(post) < 3 or not mid or not last:
        return None, [f"too few samples after the {warmup:.0f} s warm-up for a verdict on growth (run longer)"]
    span, conns = post[-1].t - post[0].t, post[-1].conns - post[0].conns
    lines = [
        f"rule: FAIL when trend > tol and rise > tol/4; trend = least-squares slope over the {len(post)} samples "
        f"{post[0].t:.0f}-{post[-1].t:.0f} s x {span:.0f} s ({conns:,} connections made in between); "
        f"rise = max of the last third ({end * 2 / 3:.0f}-{end:.0f} s) - max of the middle third "
        f"({end / 3:.0f}-{end * 2 / 3:.0f} s)"
    ]
    ok = True
    for key, tol in TOLERANCE.items():
        ys = [float(getattr(s, key)) for s in post]
        trend = slope([s.t for s in post], ys) * span
        rise = max(getattr(s, key) for s in last) - max(getattr(s, key) for s in mid)
        bad = trend > tol and rise > tol / 4
        ok &= not bad
        f = ".2f" if key == "rss" else ".1f" if key in ("fds", "tasks") else ",.0f"
        per = ""
        if conns:
            per = f", {trend * (1024 if key == 'rss' else 1) / conns * 1000:+.2f} "
            per += f"{'KiB' if key == 'rss' else UNIT[key]} per 1,000 connections"
        lines.append(
            f"{'FAIL' if bad else 'ok':>4}  {key:<6} trend {trend:+{f}} {UNIT[key]} (tol {tol:{f}}){per}; "
            f"rise {rise:+{f}} (tol/4 {tol / 4:{f}}); min {min(ys):{f}}, max {max(ys):{f}}"
        )
    return ok, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loop", choices=["ferroloop", "asyncio"], default="ferroloop")
    ap.add_argument("--seconds", type=float, default=300, help="length of the run [300]")
    ap.add_argument("--interval", type=float, default=10, help="seconds between samples [10]")
    ap.add_argument("--warmup", type=float, default=None, help="seconds left out of the verdict [20%% of the run]")
    ap.add_argument("--conns", type=int, default=20, help="echo clients [20]")
    ap.add_argument("--threadsafe-rate", type=int, default=2000, help="call_soon_threadsafe/s per thread [2000]")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    warmup = args.warmup if args.warmup is not None else 0.2 * args.seconds

    if args.loop == "ferroloop":
        import ferroloop

        loop, name = ferroloop.new_event_loop(), f"ferroloop {ferroloop.__version__}"
    else:
        loop, name = asyncio.SelectorEventLoop(), "asyncio.SelectorEventLoop"
    asyncio.set_event_loop(loop)
    soak = Soak(args, loop)
    loop.set_exception_handler(soak.on_loop_error)
    print(
        f"soak: {name}, CPython {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"{args.seconds:.0f} s, a sample every {args.interval:g} s, warm-up {warmup:.0f} s, seed {args.seed}, "
        f"{args.conns} echo clients, 2 x {args.threadsafe_rate}/s threadsafe\n"
        "RSS/raw: MiB after/before gc.collect() + malloc_trim(0); cpu%: this process + children, of one core; "
        "after the |: work done since the previous line"
    )
    wall0, cpu0 = time.monotonic(), cpu_seconds()
    try:
        samples = loop.run_until_complete(soak.run())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    wall, cpu = time.monotonic() - wall0, cpu_seconds() - cpu0

    ok, lines = verdict(samples, warmup)
    t = soak.total
    print(
        f"\ntotal: {t['echoes']:,} echoes ({t['bytes'] / 2**30:.2f} GiB), {t['conns']:,} connections "
        f"({t['resets']:,} reset, {t['halfcloses']:,} half-closed), {t['timers']:,} timers fired, "
        f"{t['cancelled']:,} cancelled, {t['timeouts']:,} timeouts, {t['threadsafe']:,} threadsafe calls, "
        f"{t['executor']:,} executor jobs, {t['subprocs']:,} subprocesses; CPU {cpu:.0f} s in {wall:.0f} s "
        f"({cpu / wall:.0%} of one core)"
    )
    for key, n in soak.handler_expected.items():
        print(f"exception handler, expected (our resets): {n} x {key}")
    print("\n".join(lines))
    for e, n in soak.errors.items():
        print(f"error: {n} x {e}")
    if ok is False or soak.errors:
        why = (["growth beyond tolerance"] if ok is False else [])
        why += [f"{sum(soak.errors.values())} workload error(s)"] if soak.errors else []
        print(f"FAIL ({args.loop}): " + "; ".join(why))
        return 1
    print(f"PASS ({args.loop})" if ok else f"no verdict on growth ({args.loop}); no workload error")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
