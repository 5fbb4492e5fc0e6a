"""ferroloop's benchmark report: docs/benchmarks.md with tables and PNG charts.

    .venv/bin/python benches/report.py            # run both drivers (~3 + ~9 min), then write the report
    .venv/bin/python benches/report.py --quick    # both drivers with --quick: a smoke run (~2 min)
    .venv/bin/python benches/report.py --from-json CORE.json NET.json   # re-render, run nothing
    .venv/bin/python benches/report.py --core-args='--idle-fd' --net-args='--rounds 3'

It runs benches/run.py (loop core: time per workload) and benches/net.py
(networking: server CPU time per request), each writing its JSON into
.bench-results/; if both succeed, those files are copied to
docs/benchmarks/core.json and docs/benchmarks/net.json and the report is
written from them:

    docs/benchmarks.md              how it was measured, the tables, noise, charts
    docs/benchmarks/core.png        loop core: speed of each loop relative to asyncio
    docs/benchmarks/net.png         networking: requests per server CPU-second relative to asyncio
    docs/benchmarks/headline.png    one compact chart for the README

Every chart is normalised so that higher is better. The tables keep the
drivers' own figures and ratio directions (see benches/README.md).

A benchmark run is a measurement, not a test: nothing here looks at the
numbers to pass or fail. It exits non-zero if a driver failed (then the docs
are left untouched and the driver's JSON stays in .bench-results/), or, with
--from-json, if a file records failed cells. Needs matplotlib
(pip install -r benches/requirements.txt).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from report_charts import chart_core, chart_headline, chart_net, plt_setup
from report_model import HERE, ROOT, core_rows, net_rows, net_rss_rows
from report_page import failures, write_markdown

# --- running the drivers ------------------------------------------------------------------


def shown(cmd: list[str]) -> str:
    """A command line as a user would type it from the repository root."""
    out = []
    for a in cmd:
        p = Path(a)
        if p.is_absolute():
            try:
                a = str(p.relative_to(ROOT))
            except ValueError:
                pass
        out.append(a)
    return shlex.join(out)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_driver(script: str, json_path: Path, extra: list[str]) -> tuple[int, dict | None]:
    """Run one driver with its output on our terminal; its JSON, with what we know added under "report"."""
    cmd = [sys.executable, str(HERE / script), *extra]
    print(f"\n=== {shown(cmd)}", flush=True)
    rc = subprocess.run([*cmd, "--json", str(json_path)], cwd=ROOT).returncode
    if not json_path.exists():
        return rc or 1, None
    doc = json.loads(json_path.read_text())
    doc["report"] = {
        "command": shown(cmd),
        "returncode": rc,
        "kernel": os.uname().release,
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    return rc, doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-json", nargs=2, type=Path, metavar=("CORE.json", "NET.json"),
                    help="render from these results of benches/run.py and benches/net.py; run nothing")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="pass --quick to both drivers (a smoke run)")
    ap.add_argument("--core-args", default="", help="more arguments for benches/run.py, e.g. --core-args='--idle-fd'")
    ap.add_argument("--net-args", default="", help="more arguments for benches/net.py, e.g. --net-args='--rounds 3'")
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="where benchmarks.md and benchmarks/ go [docs]")
    args = ap.parse_args()
    if args.from_json and (args.quick or args.core_args or args.net_args):
        ap.error("--from-json runs nothing: --quick / --core-args / --net-args do not apply")

    try:
        plt = plt_setup()
    except ImportError:
        print("matplotlib is missing: .venv/bin/pip install -r benches/requirements.txt", file=sys.stderr)
        return 2

    assets = args.out / "benchmarks"
    if args.from_json:
        try:
            core, net = (json.loads(p.read_text()) for p in args.from_json)
        except (OSError, ValueError) as e:
            print(f"cannot read the results: {e}", file=sys.stderr)
            return 2
        for p, name, keys in ((args.from_json[0], "benches/run.py", "loops"), (args.from_json[1], "benches/net.py", "summary")):
            d = json.loads(p.read_text())
            if not d.get("results") or keys not in d["results"][0]:
                print(f"{p} does not look like the JSON of {name}", file=sys.stderr)
                return 2
        assets.mkdir(parents=True, exist_ok=True)
        for src, name in zip(args.from_json, ("core.json", "net.json")):
            dst = assets / name
            if not (dst.exists() and dst.resolve() == src.resolve()):
                shutil.copyfile(src, dst)
    else:
        stamp_ = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        results = ROOT / ".bench-results"
        results.mkdir(exist_ok=True)
        quick = ["--quick"] if args.quick else []
        runs = []
        for script, extra, name in (
            ("run.py", quick + shlex.split(args.core_args), f"report-core-{stamp_}.json"),
            ("net.py", quick + shlex.split(args.net_args), f"report-net-{stamp_}.json"),
        ):
            rc, doc = run_driver(script, results / name, extra)
            runs.append((script, rc, doc, results / name))
        bad = [(s, rc, p) for s, rc, doc, p in runs if rc != 0 or doc is None]
        if bad:
            print("\nthe report was not written: a driver failed", file=sys.stderr)
            for s, rc, p in bad:
                print(f"  benches/{s} exited {rc}" + (f" (its JSON: {p.relative_to(ROOT)})" if p.exists() else ""),
                      file=sys.stderr)  # fmt: skip
            ok = [p for s, rc, doc, p in runs if (s, rc, p) not in bad and p.exists()]
            for p in ok:
                print(f"  the other driver's results are in {p.relative_to(ROOT)}", file=sys.stderr)
            return 1
        core, net = runs[0][2], runs[1][2]
        assets.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(runs[0][3], assets / "core.json")
        shutil.copyfile(runs[1][3], assets / "net.json")

    crows, nrows, rss_rows = core_rows(core), net_rows(net), net_rss_rows(net)
    problems = failures(core, net)
    chart_core(plt, core, crows, assets / "core.png")
    chart_net(plt, net, nrows, rss_rows, assets / "net.png")
    chart_headline(plt, core, crows, net, nrows, assets / "headline.png")
    md = args.out / "benchmarks.md"
    write_markdown(md, core, crows, net, nrows, rss_rows, problems)
    rel = md.relative_to(ROOT) if md.is_relative_to(ROOT) else md
    print(f"\nreport written to {rel} (charts and JSON in {assets.relative_to(ROOT) if assets.is_relative_to(ROOT) else assets})")
    if problems:
        print(f"the results record {len(problems)} failed cell(s):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
