"""Subprocess benchmarks: asyncio vs uvloop vs ferroloop, side by side.

    .venv/bin/python benches/subprocess_bench.py            # `make bench-subprocess`
    .venv/bin/python benches/subprocess_bench.py --quick    # smaller, one round
    .venv/bin/python benches/subprocess_bench.py --rounds 5 --spawn 2000 --mib 512

Workloads:

* spawn   — `create_subprocess_exec("true")` then `wait()`, N times in sequence.
* pipe    — `communicate()` of M MiB through `cat`: the parent writes M MiB
            into the child's stdin while reading M MiB back from its stdout.
            The input `bytes` is made before the clock starts.

Each (workload, loop) cell runs in a fresh Python process; loops are
interleaved round by round so a burst of outside load hits all of them. Two
figures per run: wall time, and the parent's own CPU time (user + system,
`RUSAGE_SELF`, so the children's work — `true`, `cat` — is not counted): the
part the event loop is responsible for. A cell shows the best of its rounds,
and `~` when the median is more than 10% above the best (a noisy cell).

Nothing is pinned: the children inherit the parent's CPU mask, and `cat`
sharing one core with its parent would measure the scheduler, not the loop.

These are measurements, not tests: nothing fails because of a timing; the
script exits non-zero only if a run crashed or moved the wrong amount of data.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

LOOPS = ["asyncio", "uvloop", "ferroloop"]
NOISY = 0.10

CHILD = r"""
import asyncio, resource, sys, time
loop_name, workload, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if loop_name == "uvloop":
    import uvloop
    factory = uvloop.new_event_loop
elif loop_name == "ferroloop":
    import ferroloop
    factory = ferroloop.new_event_loop
else:
    factory = asyncio.SelectorEventLoop
PIPE = asyncio.subprocess.PIPE

async def spawn(n):
    codes = 0
    for _ in range(n):
        p = await asyncio.create_subprocess_exec("true")
        codes += await p.wait()
    return n if codes == 0 else -1

async def pipe(data):
    p = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
    out, _ = await p.communicate(data)
    await p.wait()
    return len(out) if out == data else -1

data = b"\x5a" * (n << 20) if workload == "pipe" else None
loop = factory()
# A warm-up run, small, so imports and first-use costs are not measured.
loop.run_until_complete(spawn(5) if workload == "spawn" else pipe(b"w" * 65536))
r0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
check = loop.run_until_complete(spawn(n) if workload == "spawn" else pipe(data))
wall = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF)
loop.close()
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(f'{{"wall": {wall}, "cpu": {cpu}, "check": {check}}}')
"""


def run_cell(loop: str, workload: str, n: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, loop, workload, str(n)], capture_output=True, text=True
    )
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]}
    return json.loads(out.stdout)


def have(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def cell(samples: list[dict], key: str) -> tuple[float, float] | None:
    vals = [s[key] for s in samples if "error" not in s]
    if not vals:
        return None
    return min(vals), statistics.median(vals)


def fmt(c: tuple[float, float] | None, unit: float, suffix: str) -> str:
    if c is None:
        return "n/a"
    best, med = c
    noisy = "~" if med > best * (1 + NOISY) else " "
    return f"{best / unit:8.3f}{suffix}{noisy}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spawn", type=int, default=1000, help="processes spawned in sequence [1000]")
    ap.add_argument("--mib", type=int, default=256, help="MiB piped through cat [256]")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds [3]")
    ap.add_argument("--only", nargs="+", choices=["spawn", "pipe"])
    ap.add_argument("--loops", nargs="+", choices=LOOPS, default=LOOPS)
    ap.add_argument("--quick", action="store_true", help="100 spawns, 32 MiB, one round")
    ap.add_argument("--json", type=Path, default=None, help="also write the samples here")
    args = ap.parse_args()
    if args.quick:
        args.spawn, args.mib, args.rounds = 100, 32, 1

    loops = [lp for lp in args.loops if lp == "asyncio" or have(lp)]
    for lp in set(args.loops) - set(loops):
        print(f"note: {lp} is not installed: its column is left out", file=sys.stderr)
    workloads = [("spawn", args.spawn), ("pipe", args.mib)]
    workloads = [w for w in workloads if not args.only or w[0] in args.only]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
          f"{args.rounds} rounds, nothing pinned")  # fmt: skip

    samples: dict[str, dict[str, list[dict]]] = {w: {lp: [] for lp in loops} for w, _ in workloads}
    errors = []
    for _ in range(args.rounds):
        for w, n in workloads:
            for lp in loops:
                s = run_cell(lp, w, n)
                expected = n if w == "spawn" else n << 20
                if "error" in s:
                    errors.append(f"{w}/{lp}: {s['error']}")
                elif s["check"] != expected:
                    errors.append(f"{w}/{lp}: check {s['check']} != {expected}")
                    s["error"] = "wrong check value"
                samples[w][lp].append(s)

    print()
    for w, n in workloads:
        label = f"spawn + wait, {n} x `true`" if w == "spawn" else f"communicate(), {n} MiB through `cat`"
        print(label)
        print(f"  {'loop':10} {'wall':>10} {'parent CPU':>11}   {'wall vs':>8} {'CPU vs':>7}  (uvloop / ferroloop)")
        ref = samples[w].get("uvloop")
        for lp in loops:
            wall, cpu = cell(samples[w][lp], "wall"), cell(samples[w][lp], "cpu")
            ratio = ""
            if ref is not None and lp == "ferroloop" and wall and cpu:
                rw, rc = cell(ref, "wall"), cell(ref, "cpu")
                if rw and rc:
                    ratio = f"   {rw[0] / wall[0]:7.2f}x {rc[0] / cpu[0]:6.2f}x"
            print(f"  {lp:10} {fmt(wall, 1, 's')} {fmt(cpu, 1, 's')}{ratio}")
        print()
    print("ratios: uvloop's best / ferroloop's best; above 1.00x ferroloop is faster.")
    print(f"load at end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(samples, indent=1))
    for e in errors:
        print("error:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
