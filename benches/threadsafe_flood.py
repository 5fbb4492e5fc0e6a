"""call_soon_threadsafe floods: what producer threads do to the loop's own timers.

    .venv/bin/python benches/threadsafe_flood.py                # `make bench-flood`
    .venv/bin/python benches/threadsafe_flood.py --producers 4 --seconds 1 --rounds 1

N threads call `loop.call_soon_threadsafe(cb)` in a tight loop while the loop
runs a 10 ms repeating timer (each firing re-arms itself with `call_later`).
Per (loop, producer count) cell, in a fresh process:

* timer lateness: how long after its deadline each firing ran (max, p99);
* firings: how many times the 10 ms timer fired (the ideal is seconds / 0.01);
* backlog: callbacks submitted but not yet run (submitted counts each
  producer's own calls, run counts the callback's own calls), sampled at
  every firing and once more when the producers stop; the maximum is shown;
* RSS growth over the run (max sample minus the start, /proc/self/statm);
* run time: the wall time from the start to the last callback, against the
  asked-for length (a starved loop overruns it);
* throughput: threadsafe callbacks run per second of run time.

Loops are interleaved round by round, each cell is a fresh process; a cell
shows the worst lateness and backlog over its rounds and the best
throughput, since the question is how bad a flood can get. Nothing here is a
test: no figure makes the script fail.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

LOOPS = ["asyncio", "uvloop", "ferroloop"]

CHILD = r"""
import asyncio, json, os, sys, threading, time
loop_name, producers, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if loop_name == "uvloop":
    import uvloop
    loop = uvloop.new_event_loop()
elif loop_name == "ferroloop":
    import ferroloop
    loop = ferroloop.new_event_loop()
else:
    loop = asyncio.SelectorEventLoop()

PAGE = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE

ran = [0]
submitted = [0] * producers
stop = threading.Event()

def cb():
    ran[0] += 1

go = threading.Event()

def produce(i):
    n = 0
    call = loop.call_soon_threadsafe
    go.wait()
    try:
        while not stop.is_set():
            call(cb)
            n += 1
            if n & 1023 == 0:
                submitted[i] = n
    except RuntimeError:  # the loop closed under us
        pass
    submitted[i] = n

late = []
backlog = [0]
start = 0.0
rss0 = rss()
rss_max = [rss0]
PERIOD = 0.01

def sample():
    backlog[0] = max(backlog[0], sum(submitted) - ran[0])
    rss_max[0] = max(rss_max[0], rss())

def tick(deadline):
    now = loop.time()
    late.append(now - deadline)
    sample()
    if now - start < seconds:
        nxt = deadline + PERIOD
        loop.call_at(nxt, tick, nxt)
    else:
        stop.set()
        loop.call_soon(finish)

def finish():
    for t in threads:
        t.join()
    sample()
    # Run what the producers left queued, then stop.
    def drained():
        if ran[0] < sum(submitted):
            loop.call_soon(drained)
        else:
            loop.stop()
    loop.call_soon(drained)

# The threads are started before the loop runs and released by its first
# callback, so the run measures a flood into a running loop, not how long
# starting threads takes while others already flood.
def begin():
    global start
    start = loop.time()
    loop.call_at(start + PERIOD, tick, start + PERIOD)
    go.set()

threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
for t in threads:
    t.start()
loop.call_soon(begin)
loop.run_forever()
elapsed = loop.time() - start
loop.close()
late.sort()
print(json.dumps({
    "firings": len(late),
    "late_max_ms": late[-1] * 1e3,
    "late_p99_ms": late[int(0.99 * (len(late) - 1))] * 1e3,
    "backlog_max": backlog[0],
    "rss_growth_mib": (rss_max[0] - rss0) / 2**20,
    "elapsed_s": elapsed,
    "ran": ran[0],
    "throughput": ran[0] / elapsed,
}))
"""


def run_cell(loop: str, producers: int, seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, loop, str(producers), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds * 20 + 60,
    )
    if out.returncode != 0:
        raise SystemExit(f"{loop} x{producers} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--producers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--loops", nargs="+", choices=LOOPS, default=LOOPS)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write every sample here")
    args = ap.parse_args()

    samples: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        for n in args.producers:
            for loop in args.loops:
                print(f"  round {r + 1}: {loop} x{n} ...", file=sys.stderr, flush=True)
                samples.setdefault(f"{loop}/{n}", []).append(
                    run_cell(loop, n, args.seconds)
                )

    try:
        import ferroloop

        version = ferroloop.__version__
    except ImportError:
        version = "?"
    print(
        f"\ncall_soon_threadsafe flood: {args.seconds:g} s runs, a 10 ms repeating timer, "
        f"{args.rounds} rounds; ferroloop {version}, CPython {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs"
    )
    head = (
        f"{'producers':>9}  {'loop':<10}{'firings':>8}{'late max':>10}{'late p99':>10}"
        f"{'backlog':>10}{'RSS +MiB':>9}{'run s':>7}{'callbacks/s':>13}"
    )
    print(head)
    print("-" * len(head))
    for n in args.producers:
        for loop in args.loops:
            cell = samples[f"{loop}/{n}"]
            print(
                f"{n:>9}  {loop:<10}"
                f"{min(c['firings'] for c in cell):>8}"
                f"{max(c['late_max_ms'] for c in cell):>8.1f}ms"
                f"{max(c['late_p99_ms'] for c in cell):>8.1f}ms"
                f"{max(c['backlog_max'] for c in cell):>10,}"
                f"{max(c['rss_growth_mib'] for c in cell):>9.1f}"
                f"{max(c['elapsed_s'] for c in cell):>7.2f}"
                f"{max(c['throughput'] for c in cell):>13,.0f}"
            )
    print(
        "firings: fewest over the rounds (ideal: seconds / 0.01); late, backlog, RSS, run s: "
        "worst over the rounds; callbacks/s: best."
    )
    if args.json:
        args.json.write_text(json.dumps(samples, indent=1))
        print(f"samples written to {args.json}")


if __name__ == "__main__":
    main()
