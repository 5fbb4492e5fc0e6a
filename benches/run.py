"""ferroloop's loop-core benchmarks: asyncio vs uvloop vs ferroloop, side by side.

    .venv/bin/python benches/run.py                 # the default run (`make bench`)
    .venv/bin/python benches/run.py --idle-fd       # + an idle-fd row for every workload
    .venv/bin/python benches/run.py --quick         # 1/10 sizes, one round: a smoke run
    .venv/bin/python benches/run.py --only sleep0 call_soon_chain --rounds 5

Every (workload, variant, loop) cell runs in its own fresh subprocess
(benches/worker.py) pinned to one CPU. The three loops are interleaved round
by round, so a burst of unrelated load on the machine hits all of them rather
than one. A cell's time is the best of rounds x reps runs; the median is kept
in the JSON, and a cell whose median is more than 10% above its best is marked
`~` as noisy. See benches/README.md for what each workload measures.

These are measurements, not tests: nothing here fails because of a timing.
It exits non-zero only if a workload crashed or if the loops disagree on a
workload's check value (i.e. one of them did not do all the work).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from worker import installed  # noqa: E402
from workloads import BY_KEY, WORKLOADS  # noqa: E402

LOOPS = ["asyncio", "uvloop", "ferroloop"]
# --peers: the other event loops written in Rust, as columns of their own.
PEERS = ["rloop", "rsloop"]
NOISY = 0.10  # median more than 10% above best -> marked "~"

VARIANTS = ["plain", "idle-fd", "gc-off"]  # row order within a workload
VARIANT_LABEL = {
    "plain": "",
    "idle-fd": "  + 1 idle fd registered",
    "gc-off": "  with the cyclic GC off",
}
IDLE_FD_NOTE = (
    "idle-fd rows: one never-readable socket is registered with add_reader, so every "
    "iteration must poll I/O. asyncio (its self-pipe) and uvloop (its signal-wakeup socket) "
    "always have an fd and call epoll_wait on every iteration either way (checked with "
    "strace). ferroloop skips that zero-timeout syscall with no fd registered, and, with "
    "some, while its io_uring doorbell shows none has become ready (src/doorbell.rs; the "
    "fairness table checks a ready reader still runs within one iteration)."
)
GC_OFF_NOTE = (
    "gc-off rows: gc.disable() during the measured part. With ~1M handles alive at once, "
    "the cyclic GC's passes over them are a large share of the GC-on time, on every loop."
)
TIMERS_NOTE = (
    "timers: the total includes up to 0.1 s of real waiting for the last timer, which "
    "pulls that row's ratios towards 1.00x; the schedule + cancel row has no waiting."
)


# --- machine facts -----------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def module_version(name: str) -> str | None:
    out = subprocess.run(
        [sys.executable, "-c", f"import {name}; print({name}.__version__)"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def peer_version(name: str) -> str | None:
    """A peer's installed version (neither exports __version__)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:  # no git (the 3.14 chroot has none)
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def facts(cpu: int | None) -> dict:
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "pinned_cpu": cpu,
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "ferroloop": module_version("ferroloop"),
        "ferroloop_git": git_rev(),
        "uvloop": module_version("uvloop"),
        **{peer: peer_version(peer) for peer in PEERS},
        "loadavg_start": loadavg(),
    }


# --- running -----------------------------------------------------------------


def run_cell(loop: str, key: str, n: int, variant: str, reps: int, cpu: int | None) -> dict:
    cmd = [
        sys.executable,
        str(HERE / "worker.py"),
        "--loop", loop,
        "--workload", key,
        "--n", str(n),
        "--reps", str(reps),
    ]  # fmt: skip
    if variant != "plain":
        cmd.append("--" + variant)
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["exit %d" % out.returncode])[-1]}
    return json.loads(out.stdout)


def human_n(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def fmt_time(s: float | None) -> str:
    if s is None:
        return "n/a"
    ms = s * 1000
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def fmt_ratio(num: float | None, den: float | None) -> str:
    if not num or not den:
        return "n/a"
    return f"{num / den:.2f}x"


def fairness_table(loops: list[str], cpu: int | None) -> dict[str, dict]:
    """Runs and prints: after how many chain steps a ready reader runs."""
    fair: dict[str, dict] = {}
    for lp in loops:
        cmd = [sys.executable, str(HERE / "worker.py"), "--loop", lp, "--fairness"]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        fair[lp] = json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr.strip()[-200:]}
    print()
    print("Fairness: call_soon chain steps that run before a ready reader does, over 200 trials")
    print("(1 = I/O polled on every iteration, as asyncio does; k = polled every k iterations)")
    print(f"{'':<12}" + "".join(f"{lp:>12}" for lp in loops))
    for stat in ("max", "mean"):
        cells = "".join(f"{fair[lp].get(stat, float('nan')):>12.1f}" for lp in loops)
        print(f"{stat:<12}" + cells)
    return fair


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=[w.key for w in WORKLOADS], help="run only these workloads")
    ap.add_argument("--loops", nargs="+", choices=LOOPS + PEERS, default=LOOPS)
    ap.add_argument("--peers", action="store_true", help="add rloop and rsloop (and a fairness table)")
    ap.add_argument("--fairness", action="store_true", help="print the fairness table (default with --peers)")
    ap.add_argument("--idle-fd", action="store_true", help="add an idle-fd row to every workload")
    ap.add_argument("--gc-off", action="store_true", help="add a GC-off row to every workload")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (fresh processes) [3]")
    ap.add_argument("--reps", type=int, default=2, help="timed runs per process [2]")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every workload size")
    ap.add_argument("--quick", action="store_true", help="--scale 0.1 --rounds 1 --reps 1")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to [the last one]")
    ap.add_argument("--no-pin", action="store_true", help="do not pin to a CPU")
    ap.add_argument("--json", type=Path, default=None, help="result file [.bench-results/bench-<date>.json]")
    ap.add_argument("--no-json", action="store_true", help="do not write a JSON result file")
    args = ap.parse_args()
    if args.quick:
        args.scale, args.rounds, args.reps = 0.1, 1, 1

    cpu = None
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))

    info = facts(cpu)
    loops = list(args.loops)
    if args.peers:
        loops += [p for p in PEERS if p not in loops]
        args.fairness = True
    missing = {lp for lp in loops if not installed(lp)}
    for lp in sorted(missing):
        print(f"note: {lp} is not installed (see benches/README.md); its column shows n/a", file=sys.stderr)

    # The rows: every workload's plain row, plus the extra variants.
    rows: list[tuple[str, str, int]] = []  # (key, variant, n)
    for w in WORKLOADS:
        if args.only and w.key not in args.only:
            continue
        n = max(1, int(w.n * args.scale))
        wanted = {"plain", *w.extra_variants}
        if args.idle_fd:
            wanted.add("idle-fd")
        if args.gc_off:
            wanted.add("gc-off")
        rows += [(w.key, v, n) for v in VARIANTS if v in wanted]

    # samples[(key, variant)][loop] = {"seconds": [...], "parts": {...}, "check": ...}
    samples: dict[tuple[str, str], dict[str, dict]] = {}
    errors: list[str] = []
    started = time.monotonic()
    for key, variant, n in rows:
        cell = samples.setdefault((key, variant), {})
        print(f"  {key} [{variant}] n={n:,} ...", end="", flush=True, file=sys.stderr)
        for _ in range(args.rounds):
            for loop in loops:
                if loop in missing:
                    continue
                res = run_cell(loop, key, n, variant, args.reps, cpu)
                if "error" in res:
                    errors.append(f"{key} [{variant}] on {loop}: {res['error']}")
                    cell.setdefault(loop, {"seconds": [], "parts": {}, "check": None})["error"] = res["error"]
                    continue
                acc = cell.setdefault(loop, {"seconds": [], "parts": {}, "check": res["check"]})
                acc["seconds"] += res["seconds"]
                for label, secs in res["parts"].items():
                    acc["parts"].setdefault(label, []).extend(secs)
                if acc["check"] != res["check"]:
                    acc["check_mismatch"] = True
        checks = {loop: c["check"] for loop, c in cell.items() if "error" not in c}
        if len(set(map(repr, checks.values()))) > 1 or any(c.get("check_mismatch") for c in cell.values()):
            errors.append(f"{key} [{variant}]: loops disagree on the check value: {checks}")
        print(f" {time.monotonic() - started:.0f} s so far", file=sys.stderr)
    info["loadavg_end"] = loadavg()
    info["wall_seconds"] = round(time.monotonic() - started, 1)

    # --- the table -----------------------------------------------------------
    def stat(vals: list[float]) -> tuple[float | None, float | None]:
        return (min(vals), statistics.median(vals)) if vals else (None, None)

    table: list[tuple[str, dict[str, tuple[float | None, float | None]]]] = []
    for key, variant, n in rows:
        w = BY_KEY[key]
        cell = samples[(key, variant)]
        label = w.title.format(n=human_n(n)) if variant == "plain" else VARIANT_LABEL[variant]
        table.append((label, {lp: stat(cell.get(lp, {}).get("seconds", [])) for lp in loops}))
        part_labels = sorted({p for c in cell.values() for p in c.get("parts", {})})
        for p in part_labels:
            indent = "    " if variant != "plain" else "  "
            by_loop = {lp: stat(cell.get(lp, {}).get("parts", {}).get(p, [])) for lp in loops}
            table.append((f"{indent}({p})", by_loop))

    samples_per_cell = args.rounds * args.reps
    print()
    print(
        f"ferroloop {info['ferroloop']} ({info['ferroloop_git']}), "
        f"uvloop {info['uvloop'] or 'not installed'}, "
        + "".join(f"{p} {info[p]}, " for p in PEERS if info[p] and p in loops)
        + f"{info['python_impl']} {info['python']}"
    )
    pin = f"pinned to CPU {cpu}" if cpu is not None else "not pinned"
    print(f"{info['cpu_model']}, {info['cpu_count']} CPUs, {pin}; {info['date']}")
    print(
        f"load average {info['loadavg_start']} at start, {info['loadavg_end']} at end; "
        f"{info['wall_seconds']:.0f} s in all"
    )
    print(
        f"best of {samples_per_cell} runs ({args.rounds} rounds x {args.reps} reps, one fresh process per "
        f"loop per round); ~ = median >{NOISY:.0%} above best"
    )
    print()
    width = max(len(label) for label, _ in table) + 2
    head = f"{'workload':<{width}}" + "".join(f"{lp:>12}" for lp in loops)
    rivals = [lp for lp in ("uvloop", *PEERS) if lp in loops and lp not in missing]
    best_col = "ferroloop" in loops and any(p in rivals for p in PEERS)
    if "ferroloop" in loops:
        ratio_cols = (("vs uvloop", "uvloop"), ("vs asyncio", "asyncio"))
        head += "".join(f"{h:>12}" for h, lp in ratio_cols if lp in loops)
        if best_col:
            head += f"{'vs best':>12}"
    print(head)
    print("-" * len(head))
    for label, by_loop in table:
        line = f"{label:<{width}}"
        for lp in loops:
            best, med = by_loop[lp]
            mark = "~" if best and med and med > best * (1 + NOISY) else " "
            line += f"{fmt_time(best) + mark:>12}"
        if "ferroloop" in loops:
            ferro = by_loop["ferroloop"][0]
            for lp in ("uvloop", "asyncio"):
                if lp in loops:
                    line += f"{fmt_ratio(by_loop[lp][0], ferro):>12}"
            if best_col:
                times = [by_loop[lp][0] for lp in rivals if by_loop[lp][0]]
                line += f"{fmt_ratio(min(times) if times else None, ferro):>12}"
        print(line)
    print()
    print("vs uvloop = uvloop time / ferroloop time, vs asyncio = asyncio time / ferroloop time:")
    print("above 1.00x ferroloop is faster, below 1.00x it is slower.")
    if best_col:
        print(f"vs best = the fastest of {', '.join(rivals)} on that row / ferroloop time.")
    variants_shown = {v for _, v, _ in rows}
    notes = []
    if "idle-fd" in variants_shown:
        notes.append(IDLE_FD_NOTE)
    if "gc-off" in variants_shown:
        notes.append(GC_OFF_NOTE)
    if any(k == "timers" for k, _, _ in rows):
        notes.append(TIMERS_NOTE)
    for note in notes:
        print(textwrap.fill(note, width=100, subsequent_indent="  "))

    fair: dict[str, dict] = {}
    if args.fairness:
        fair = fairness_table([lp for lp in loops if lp not in missing], cpu)

    if not args.no_json:
        path = args.json or ROOT / ".bench-results" / f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "facts": info,
            "settings": {k: getattr(args, k) for k in ("rounds", "reps", "scale", "loops")},
            "results": [
                {
                    "workload": key,
                    "variant": variant,
                    "n": n,
                    "loops": {
                        lp: {
                            "seconds": c.get("seconds", []),
                            "best": min(c["seconds"]) if c.get("seconds") else None,
                            "median": statistics.median(c["seconds"]) if c.get("seconds") else None,
                            "parts": c.get("parts", {}),
                            "check": c.get("check"),
                            **({"error": c["error"]} if "error" in c else {}),
                        }
                        for lp, c in samples[(key, variant)].items()
                    },
                }
                for key, variant, n in rows
            ],
            "fairness": fair,
        }
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"results written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    if errors:
        print("\nPROBLEMS (not timing related):", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
