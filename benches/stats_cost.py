"""What always-on loop statistics cost: `make bench`'s workloads on ferroloop
built as usual and built with `--features no-stats`, side by side.

    make bench-stats        # builds .venv-nostats, then runs this
    .venv/bin/python benches/stats_cost.py --without .venv-nostats/bin/python [--rounds 7]

Each cell is one fresh worker process (benches/worker.py) pinned to one
CPU; the two builds alternate round by round, so load on the machine hits
both. A row's figure is the best time of each build and their ratio (with
statistics / without: above 1.00 is the cost), and the spread: the ratio of
medians, and the range of per-round ratios. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workloads import WORKLOADS  # noqa: E402


def cell(python: str, key: str, n: int, variant: str, reps: int, cpu: int) -> float:
    cmd = [python, str(HERE / "worker.py"), "--loop", "ferroloop", "--workload", key, "--n", str(n),
           "--reps", str(reps), "--cpu", str(cpu)]
    if variant != "plain":
        cmd.append("--" + variant)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return min(json.loads(out.stdout)["seconds"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--without", required=True, help="python of the no-stats build")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    ap.add_argument("--only", nargs="+", help="only these workload keys")
    ap.add_argument("--labels", nargs=2, default=["with", "without"], metavar=("THIS", "OTHER"),
                    help="column names for this build and the --without one (any two builds compare)")
    args = ap.parse_args()
    builds = {"with": sys.executable, "without": args.without}

    rows = []
    for w in WORKLOADS:
        if args.only and w.key not in args.only:
            continue
        for variant in ("plain", *[v for v in w.extra_variants if v == "idle-fd"]):
            rows.append((w, variant, max(1, int(w.n * args.scale))))

    print(f"{'workload':44} {args.labels[0]:>9} {args.labels[1]:>9} {'best':>6} {'median':>7}  per-round range")
    for w, variant, n in rows:
        times: dict[str, list[float]] = {"with": [], "without": []}
        for r in range(args.rounds):
            order = ("with", "without") if r % 2 == 0 else ("without", "with")
            for b in order:
                times[b].append(cell(builds[b], w.key, n, variant, args.reps, args.cpu))
        per_round = [a / b for a, b in zip(times["with"], times["without"])]
        label = w.title.format(n=f"{n:,}") + ("  + idle fd" if variant == "idle-fd" else "")
        best = min(times["with"]) / min(times["without"])
        median = statistics.median(times["with"]) / statistics.median(times["without"])
        print(f"{label[:44]:44} {min(times['with']) * 1e3:7.1f}ms {min(times['without']) * 1e3:7.1f}ms "
              f"{best:6.3f} {median:7.3f}  {min(per_round):.3f}-{max(per_round):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
