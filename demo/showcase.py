"""ferroloop showcase: one real asyncio workload, on the stdlib loop and on ferroloop.

    .venv/bin/python demo/showcase.py                  # what `make demo` runs
    .venv/bin/python demo/showcase.py --jobs 5000      # a shorter run
    .venv/bin/python demo/showcase.py --with-uvloop    # add uvloop as a third column

The workload is a small job-processing service, written the way ordinary
asyncio code is written and knowing nothing about the loop it runs on:

  producer ──► asyncio.Queue ──► N worker tasks ──► audit pipe ──► auditor
                (backpressure)    │                  (os.pipe, real fd I/O:
                                  │                   loop.add_writer/add_reader)
                                  ├─ Semaphore: at most K downstream calls at once
                                  ├─ asyncio.timeout: per-attempt deadline
                                  ├─ retries with a small backoff sleep
                                  ├─ TaskGroup: fan out to two downstream lookups
                                  ├─ shield: coalesced, cached customer fetches
                                  ├─ contextvars: the request id follows the job
                                  └─ run_in_executor: a few jobs offload CPU work

plus a SIGUSR1 "progress" handler that the producer triggers once, halfway.
Networking is not used (ferroloop has no transports yet): the "downstream
service" answers after a few loop turns, so the time measured is asyncio
machinery and the loop, plus a little real CPU work per job.

Every job's outcome is decided by a fixed seed, never by timing, so both loops
must produce exactly the same summary (counts and a checksum over every audit
line). If they do not, the script says so and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import hashlib
import json
import os
import random
import signal
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field

import ferroloop

# --- configuration -------------------------------------------------------------

WORKERS = 64  # concurrent worker tasks
RATE_LIMIT = 16  # concurrent "downstream" calls (the Semaphore)
QUEUE_SIZE = 256  # producer backpressure
DEADLINE = 0.05  # seconds per attempt; only planned hangs should ever reach it
BACKOFF = 0.002  # seconds, times the attempt number
MAX_ATTEMPTS = 3
CUSTOMERS = 2_000  # distinct customer ids, fetched once each then cached
KINDS = ("invoice", "thumbnail", "report", "email")

# The request id of the job being handled. Set once per job in the worker;
# every task the job spawns (TaskGroup children) inherits it via its context.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


# --- the jobs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    customer: int
    payload: bytes
    flaky: bool  # the first attempt fails with a transient error -> retry
    hangs: bool  # the first attempt's downstream call never answers -> deadline -> retry
    offload: bool  # the CPU part goes to the default executor (a thread)


def make_jobs(n: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        roll = rng.random()
        jobs.append(
            Job(
                id=i,
                kind=rng.choice(KINDS),
                customer=rng.randrange(CUSTOMERS),
                payload=rng.randbytes(rng.randrange(64, 512)),
                flaky=roll < 0.03,
                hangs=0.03 <= roll < 0.032,
                # Rare on purpose: each trip to a thread means GIL hand-offs
                # that cost the same on every loop and, on a busy machine,
                # add a lot of noise to the timing.
                offload=rng.random() < 0.0005,
            )
        )
    return jobs


class TransientError(Exception):
    """What a flaky downstream call raises on a job's first attempt."""


# --- the fake downstream service --------------------------------------------------


class Downstream:
    """Answers after a few loop turns, like a fast service on localhost would.

    Customer records are fetched once per customer: concurrent requests for the
    same customer share one in-flight fetch task (coalescing), later ones hit
    the cache. The shared fetch is awaited through asyncio.shield, so a caller
    whose deadline expires does not cancel it for everybody else.
    """

    def __init__(self) -> None:
        self.cache: dict[int, int] = {}
        self.inflight: dict[int, asyncio.Task[int]] = {}
        self.fetches = 0

    async def _fetch_customer(self, customer: int) -> int:
        for _ in range(4):  # the round trip
            await asyncio.sleep(0)
        self.fetches += 1
        record = zlib.crc32(b"customer-%d" % customer)
        self.cache[customer] = record
        del self.inflight[customer]
        return record

    async def customer(self, customer: int) -> int:
        if customer in self.cache:
            await asyncio.sleep(0)  # a cache round trip is still a turn of the loop
            return self.cache[customer]
        task = self.inflight.get(customer)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch_customer(customer))
            self.inflight[customer] = task
        return await asyncio.shield(task)

    async def quote(self, job: Job) -> tuple[int, str]:
        for _ in range(2):
            await asyncio.sleep(0)
        # This runs in a TaskGroup child; the request id reached it through the
        # child's copy of the worker's context. It goes into the audit line.
        return zlib.adler32(job.payload), REQUEST_ID.get()

    async def hang(self) -> None:
        """A call whose answer never comes; only a deadline gets us out."""
        await asyncio.get_running_loop().create_future()


# --- the audit pipe: real fd I/O through the loop -------------------------------


class AuditPipe:
    """Workers write result lines into an os.pipe(); the auditor reads the other end.

    Both ends are non-blocking and driven by the loop: the read end with
    loop.add_reader, the write end with loop.add_writer whenever the pipe's
    kernel buffer (64 KiB) is full and lines have to wait.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)
        self.backlog = bytearray()  # written by us, not yet accepted by the pipe
        self.closing = False
        self.partial = b""
        self.lines: dict[int, bytes] = {}  # job id -> its audit line
        self.bytes_read = 0
        self.bad_request_ids = 0
        self.eof = loop.create_future()
        loop.add_reader(self.rfd, self._on_readable)

    # writer side
    def write(self, line: bytes) -> None:
        if not self.backlog:
            try:
                sent = os.write(self.wfd, line)
            except BlockingIOError:
                sent = 0
            if sent == len(line):
                return
            line = line[sent:]
            self.loop.add_writer(self.wfd, self._on_writable)
        self.backlog += line

    def _on_writable(self) -> None:
        try:
            sent = os.write(self.wfd, self.backlog)
        except BlockingIOError:
            return
        del self.backlog[:sent]
        if not self.backlog:
            self.loop.remove_writer(self.wfd)
            if self.closing:
                os.close(self.wfd)

    def close_writer(self) -> None:
        """No more lines; the reader sees EOF once the backlog has drained."""
        self.closing = True
        if not self.backlog:
            os.close(self.wfd)

    # reader side (the auditor)
    def _on_readable(self) -> None:
        data = os.read(self.rfd, 1 << 16)
        if not data:  # EOF: every writer is done
            self.loop.remove_reader(self.rfd)
            os.close(self.rfd)
            self.eof.set_result(None)
            return
        self.bytes_read += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        for line in complete:
            job_id, request_id, _ = line.split(b" ", 2)
            # The request id in the line came from the context of a TaskGroup
            # child; it must be the one the worker set for this very job.
            if request_id != b"req-%06d" % int(job_id):
                self.bad_request_ids += 1
            self.lines[int(job_id)] = line

    def checksum(self) -> str:
        h = hashlib.sha256()
        for job_id in sorted(self.lines):
            h.update(self.lines[job_id] + b"\n")
        return h.hexdigest()


# --- the service -------------------------------------------------------------------


@dataclass
class Stats:
    done: Counter = field(default_factory=Counter)  # per kind
    transient_retries: int = 0
    planned_timeouts: int = 0  # a hanging first attempt hit its deadline
    unplanned_timeouts: int = 0  # any other attempt hit it (a very stalled machine)
    offloaded: int = 0
    failed: int = 0
    progress_signals: int = 0
    progress_at_signal: int = -1


def render(job: Job, customer_record: int, quote: int) -> bytes:
    """The CPU-light part of a job: hash the payload, build a JSON document."""
    digest = hashlib.blake2b(job.payload, digest_size=16, key=b"%d" % customer_record).hexdigest()
    doc = {"job": job.id, "kind": job.kind, "customer": job.customer, "quote": quote, "digest": digest}
    return json.dumps(doc, sort_keys=True).encode()


def render_heavy(job: Job, customer_record: int, quote: int) -> bytes:
    """An offloaded job does more of it, in a thread of the default executor."""
    body = render(job, customer_record, quote)
    return body[:-1] + b', "z": %d}' % len(zlib.compress(job.payload * 64, 6))


async def attempt(
    job: Job, n: int, downstream: Downstream, limiter: asyncio.Semaphore, stats: Stats
) -> tuple[bytes, str]:
    """One try at a job: returns the rendered document and the request id the downstream call saw."""
    loop = asyncio.get_running_loop()
    async with limiter:  # the rate limiter: wait for a free downstream slot
        async with asyncio.timeout(DEADLINE):  # the deadline covers the calls, not the wait above
            if n == 1 and job.hangs:
                await downstream.hang()
            if n == 1 and job.flaky:
                await asyncio.sleep(0)
                raise TransientError(job.id)
            async with asyncio.TaskGroup() as tg:  # fan out, join, fail together
                customer = tg.create_task(downstream.customer(job.customer))
                quote = tg.create_task(downstream.quote(job))
    price, seen_request_id = quote.result()
    if job.offload:
        stats.offloaded += 1
        body = await loop.run_in_executor(None, render_heavy, job, customer.result(), price)
    else:
        body = render(job, customer.result(), price)
    return body, seen_request_id


async def worker(
    queue: asyncio.Queue, downstream: Downstream, limiter: asyncio.Semaphore, audit: AuditPipe, stats: Stats
) -> None:
    while (job := await queue.get()) is not None:
        REQUEST_ID.set("req-%06d" % job.id)  # this worker task's context, inherited by its children
        for n in range(1, MAX_ATTEMPTS + 1):
            try:
                body, request_id = await attempt(job, n, downstream, limiter, stats)
            except TransientError:
                stats.transient_retries += 1
            except TimeoutError:
                if n == 1 and job.hangs:
                    stats.planned_timeouts += 1
                else:
                    stats.unplanned_timeouts += 1
            else:
                digest = hashlib.sha1(body).hexdigest()
                audit.write(f"{job.id} {request_id} {digest}\n".encode())
                stats.done[job.kind] += 1
                break
            await asyncio.sleep(BACKOFF * n)  # back off before the next attempt
        else:
            stats.failed += 1
        queue.task_done()


async def producer(queue: asyncio.Queue, jobs: list[Job], workers: int, stats: Stats) -> None:
    for i, job in enumerate(jobs):
        await queue.put(job)  # waits while the queue is full: backpressure
        if i == len(jobs) // 2:
            os.kill(os.getpid(), signal.SIGUSR1)  # "operator asks for progress"
        if i % 1000 == 999:
            await asyncio.sleep(0.001)  # arrivals come in bursts
    for _ in range(workers):
        await queue.put(None)  # one stop sentinel per worker


async def service(jobs: list[Job]) -> tuple[dict, Stats]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_SIZE)
    limiter = asyncio.Semaphore(RATE_LIMIT)
    downstream = Downstream()
    audit = AuditPipe(loop)
    stats = Stats()
    signalled = asyncio.Event()

    def on_progress_signal() -> None:  # runs as a loop callback, not in the C signal handler
        stats.progress_signals += 1
        stats.progress_at_signal = sum(stats.done.values())
        signalled.set()

    loop.add_signal_handler(signal.SIGUSR1, on_progress_signal)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(producer(queue, jobs, WORKERS, stats))
            for _ in range(WORKERS):
                tg.create_task(worker(queue, downstream, limiter, audit, stats))
        audit.close_writer()
        await audit.eof  # the auditor has read every line
        async with asyncio.timeout(5):
            await signalled.wait()
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)

    # Only what the seed decides goes into the summary: it must be identical
    # on every loop. (progress_at_signal, unplanned timeouts depend on timing.)
    summary = {
        "jobs completed": sum(stats.done.values()),
        "jobs failed": stats.failed,
        "by kind": dict(sorted(stats.done.items())),
        "transient errors retried": stats.transient_retries,
        "deadlines hit and retried": stats.planned_timeouts,
        "offloaded to the executor": stats.offloaded,
        "customer fetches (coalesced)": downstream.fetches,
        "progress signals handled": stats.progress_signals,
        "audit lines through the pipe": len(audit.lines),
        "audit bytes through the pipe": audit.bytes_read,
        "request ids out of context": audit.bad_request_ids,
        "checksum (sha256 of audit log)": audit.checksum(),
    }
    return summary, stats


# --- running it on each loop -------------------------------------------------------


def loop_factories(with_uvloop: bool) -> dict:
    factories = {"asyncio": asyncio.SelectorEventLoop, "ferroloop": ferroloop.new_event_loop}
    if with_uvloop:
        import uvloop  # pip install uvloop

        factories = {
            "asyncio": factories["asyncio"],
            "uvloop": uvloop.new_event_loop,
            "ferroloop": factories["ferroloop"],
        }
    return factories


def run_on(factory, jobs: list[Job]) -> tuple[float, dict, Stats]:
    with asyncio.Runner(loop_factory=factory) as runner:
        t0 = time.perf_counter()
        summary, stats = runner.run(service(jobs))
        return time.perf_counter() - t0, summary, stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3, help="runs per loop, alternating; best time counts [3]")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--with-uvloop", action="store_true", help="also run on uvloop")
    args = ap.parse_args()

    jobs = make_jobs(args.jobs, args.seed)
    factories = loop_factories(args.with_uvloop)
    print(
        f"ferroloop {ferroloop.__version__} showcase: a job-processing service, {len(jobs):,} jobs, "
        f"{WORKERS} workers, {RATE_LIMIT} downstream slots, Python {sys.version.split()[0]}"
    )

    best: dict[str, float] = {}
    summaries: dict[str, dict] = {}
    unplanned: dict[str, int] = {}
    for r in range(1, args.rounds + 1):
        for name, factory in factories.items():
            secs, summary, stats = run_on(factory, jobs)
            print(f"  round {r}/{args.rounds}  {name:<10} {secs:6.2f} s  ({len(jobs) / secs:,.0f} jobs/s)")
            best[name] = min(best.get(name, secs), secs)
            unplanned[name] = unplanned.get(name, 0) + stats.unplanned_timeouts
            if name in summaries and summaries[name] != summary:
                print(f"  !! {name} gave different results in two runs of the same jobs")
                summaries[name + f" (round {r})"] = summary
            summaries.setdefault(name, summary)

    # --- verify: every loop must have produced exactly the same summary ----------
    reference_name = "asyncio"
    reference = summaries[reference_name]
    mismatched = [name for name, s in summaries.items() if s != reference]
    print()
    print("results" + (" (identical on every loop and every run):" if not mismatched else ":"))
    for key, value in reference.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:,}" for k, v in value.items())
        elif isinstance(value, int):
            value = f"{value:,}"
        print(f"  {key:<32} {value}")
        for name in mismatched:
            if summaries[name][key] != reference[key]:
                print(f"  {'':<32} {name}: {summaries[name][key]}   <-- differs")
    for name, n in unplanned.items():
        if n:
            print(f"  note: {n} attempt(s) on {name} missed their {DEADLINE} s deadline (busy machine?), retried")

    # --- the comparison ------------------------------------------------------
    names = list(factories)
    print()
    print(f"{'':<22}" + "".join(f"{n:>14}" for n in names))
    print(f"{'wall time (best)':<22}" + "".join(f"{best[n]:>12.2f} s" for n in names))
    print(f"{'throughput':<22}" + "".join(f"{len(jobs) / best[n]:>8,.0f} jobs/s" for n in names))
    ratio = best["asyncio"] / best["ferroloop"]
    verdict = "same speed" if abs(ratio - 1) < 0.01 else "faster" if ratio > 1 else "slower"
    print(f"\nferroloop vs asyncio: {ratio:.2f}x ({verdict} on this workload)")
    if "uvloop" in best:
        print(f"ferroloop vs uvloop:  {best['uvloop'] / best['ferroloop']:.2f}x")
    print(
        "(ferroloop replaces the loop core only: asyncio's Queue, Semaphore, timeout and TaskGroup\n"
        " are Python code that runs the same on every loop, as does each job's own work, so an\n"
        " application gains less than the loop-core microbenchmarks of `make bench` show.)"
    )

    if mismatched:
        print(f"\nFAILED: results differ between loops: {', '.join(mismatched)} vs {reference_name}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
