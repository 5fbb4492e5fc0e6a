"""What one `call_soon` and one callback run cost, per loop, GC on and off.

    .venv/bin/python benches/per_op.py                    # ns per operation, every loop installed
    .venv/bin/python benches/per_op.py --callgrind        # + instructions per call_soon+run (valgrind)
    .venv/bin/python benches/per_op.py --loops ferroloop uvloop --n 100000 --reps 7

The operation is the one a program makes most: `loop.call_soon(f, 1)`, with
n callbacks pending at once (the cyclic GC then has n live handles, and
contexts, to walk), and then running them all in one iteration. Each
(loop, GC) cell is one fresh process pinned to one CPU; cells are
interleaved round by round; a figure is the best round, the spread is the
range of rounds. With --callgrind, each loop also runs under `valgrind
--tool=callgrind` twice, with n and with 2n callbacks, and the difference
of the instruction totals divided by n is what one call_soon plus its run
costs in instructions: reproducible where times on a shared machine are
not. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from worker import LOOP_NAMES, installed, loop_factory  # noqa: E402


def cell(loop_name: str, n: int, gc_on: bool) -> dict:
    """In this process: n call_soon(f, 1) pending, then all of them run."""
    loop = loop_factory(loop_name)()
    count = 0

    def f(x: int) -> None:
        nonlocal count
        count += x

    try:
        call_soon = loop.call_soon
        gc.collect()
        if not gc_on:
            gc.disable()
        t0 = perf_counter()
        for _ in range(n):
            call_soon(f, 1)
        t1 = perf_counter()
        call_soon(loop.stop)  # FIFO: after the n callbacks
        loop.run_forever()
        t2 = perf_counter()
    finally:
        gc.enable()
        loop.close()
    if count != n:
        raise SystemExit(f"{loop_name}: {count} of {n} callbacks ran")
    return {"schedule_ns": (t1 - t0) / n * 1e9, "run_ns": (t2 - t1) / n * 1e9}


def run_cell(python: str, loop: str, n: int, gc_on: bool, cpu: int) -> dict:
    cmd = [python, __file__, "--worker", loop, "--n", str(n), "--gc", "on" if gc_on else "off", "--pin", str(cpu)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def instructions(python: str, loop: str, n: int) -> int:
    """Total instructions of one worker process with n callbacks, under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, __file__,
               "--worker", loop, "--n", str(n), "--gc", "on", "--cold"]
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        m = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
        if not m:
            raise SystemExit("no instruction total in callgrind's output")
        return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loops", nargs="+", choices=LOOP_NAMES, help="default: every loop installed")
    ap.add_argument("--n", type=int, default=100_000, help="callbacks pending at once [100000]")
    ap.add_argument("--reps", type=int, default=7, help="interleaved rounds [7]")
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    ap.add_argument("--callgrind", action="store_true", help="also count instructions with valgrind")
    ap.add_argument("--callgrind-n", type=int, default=20_000)
    ap.add_argument("--callgrind-python", default=sys.executable,
                    help="python to run under valgrind: one whose ferroloop is built with --features memcheck "
                         "(rustix's direct vDSO calls crash valgrind; `make bench-per-op` builds it)")
    ap.add_argument("--worker", choices=LOOP_NAMES, help=argparse.SUPPRESS)
    ap.add_argument("--gc", choices=["on", "off"], default="on", help=argparse.SUPPRESS)
    ap.add_argument("--pin", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)  # no warm-up run
    args = ap.parse_args()

    if args.worker:
        if args.pin is not None:
            os.sched_setaffinity(0, {args.pin})
        if not args.cold:
            cell(args.worker, max(1, args.n // 10), args.gc == "on")  # warm-up
        json.dump(cell(args.worker, args.n, args.gc == "on"), sys.stdout)
        return 0

    loops = args.loops or [lp for lp in LOOP_NAMES if installed(lp)]
    results: dict[tuple[str, bool], list[dict]] = {}
    for _ in range(args.reps):
        for lp in loops:
            for gc_on in (True, False):
                results.setdefault((lp, gc_on), []).append(run_cell(sys.executable, lp, args.n, gc_on, args.cpu))

    print(f"ns per operation, {args.n:,} `loop.call_soon(f, 1)` pending, then run; "
          f"best of {args.reps} (range), CPython {sys.version.split()[0]}")
    head = f"{'loop':<10} {'schedule, GC on':>22} {'schedule, GC off':>22} {'run, GC on':>22} {'run, GC off':>22}"
    print(head)
    print("-" * len(head))
    for lp in loops:
        line = f"{lp:<10}"
        for key in ("schedule_ns", "run_ns"):
            for gc_on in (True, False):
                xs = [r[key] for r in results[(lp, gc_on)]]
                line += f" {min(xs):>8.0f} ({min(xs):.0f}-{max(xs):.0f})".rjust(23)
        print(line)

    if args.callgrind:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed: no instruction counts", file=sys.stderr)
            return 1
        n = args.callgrind_n
        print()
        py = args.callgrind_python
        print(f"instructions per call_soon(f, 1) + its run, GC on (callgrind: ({n * 2:,} - {n:,}) / {n:,}; {py})")
        for lp in loops:
            probe = subprocess.run([py, "-c", f"import {lp}"], capture_output=True)
            if probe.returncode != 0:
                print(f"{lp:<10} {'not installed there':>10}")
                continue
            per_op = (instructions(py, lp, 2 * n) - instructions(py, lp, n)) / n
            print(f"{lp:<10} {per_op:>10,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
