#!/usr/bin/env python3
"""Conformance runner: CPython's own test.test_asyncio on ferroloop.

    python tests/conformance/run.py [--loop ferroloop|asyncio] [--modules a,b]
        [--all] [--expected FILE] [--update-expected] [--timeout S] [-j N]
        [--json PATH]

Runs the test_asyncio that ships with the running interpreter, one module per
subprocess (harness.py), with every loop the tests create coming from the
chosen loop. `--loop asyncio` runs the very same tests on the stdlib
SelectorEventLoop: that is the baseline. Exit status: 0 when every failure is
listed in the expected-failures file (or, for one Python version only, in
expected_failures-3.N.txt beside it), 1 on any unexpected failure, 2 on bad
usage or an invalid expected-failures file.
"""
import argparse
import concurrent.futures
import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness.py"
PACKAGE = "test.test_asyncio"

# In scope by default: the public loop/task/future/synchronisation behaviour.
DEFAULT_MODULES = [
    "test_tasks", "test_futures2", "test_locks", "test_queues", "test_taskgroups",
    "test_timeouts", "test_waitfor", "test_context", "test_threads", "test_events",
    "test_eager_task_factory",  # 3.12+; dropped where the interpreter lacks it
    "test_server_context",  # 3.15+: protocol callbacks in the server's context
    "test_staggered", "test_graph",  # test_graph: 3.14+ call-graph introspection
    "test_free_threading",  # 3.14+: loops and tasks driven from many threads
    # networking
    "test_streams", "test_server", "test_sock_lowlevel", "test_buffered_proto",
    "test_protocols", "test_transports", "test_sendfile", "test_unix_events",
    # TLS (the native TLS layer)
    "test_ssl", "test_sslproto",
    # subprocesses and pipes
    "test_subprocess",
]
# Never run, not even with --all: these test asyncio's private internals
# (BaseEventLoop, the selector/proactor/Windows machinery, pure-Python vs C
# Future/Task internals, runner internals) or only ever run on mock and
# fake-clock loops, so they say nothing about a replacement loop.
OUT_OF_SCOPE = {
    "test_base_events", "test_selector_events", "test_proactor_events",
    "test_windows_events", "test_windows_utils", "test_futures", "test_pep492",
    "test_runners",
}
FAILING = {"fail", "error", "timeout", "crash"}
TODO = re.compile(r"\bTODO\b", re.IGNORECASE)
TB_LINES = 15  # traceback lines shown per unexpected failure


def available_modules():
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        sys.exit(f"run.py: {sys.executable} has no {PACKAGE} (install the CPython test suite)")
    folder = Path(spec.submodule_search_locations[0])
    return sorted(p.stem for p in folder.glob("test_*.py"))


# ---------------------------------------------------------------- expected failures

def load_expected(path, allow_todo):
    """Parse `test.id  # reason` lines; an entry may be a class or module
    prefix. Returns (entries {id: reason}, problems)."""
    entries, problems = {}, []
    if not path.exists():
        return entries, problems
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        test_id, _, reason = (part.strip() for part in line.partition("#"))
        if not test_id or " " in test_id:
            problems.append(f"{path}:{n}: expected one test id before '#': {raw!r}")
        elif not reason or (TODO.search(reason) and not allow_todo):
            problems.append(f"{path}:{n}: {test_id} needs a real reason (got {reason or 'none'!r})")
        else:
            entries[test_id] = reason
    return entries, problems


def covering_entry(entries, test_id):
    """The entry naming this test, its class or its module, if any."""
    parts = test_id.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in entries:
            return prefix
    return None


def update_expected(path, entries, results, modules):
    """Rewrite the file to list exactly the current failures: entries still
    covering a failure (or belonging to modules not run now) keep their line
    and reason, comments stay, new failures are appended as `TODO reason`."""
    run_prefixes = tuple(f"{PACKAGE}.{m}" for m in modules)
    failing = [tid for tid, rec in sorted(results.items()) if rec["outcome"] in FAILING]
    used = {covering_entry(entries, tid) for tid in failing}
    kept, dropped = [], 0
    lines = path.read_text().splitlines() if path.exists() else []
    for raw in lines:
        test_id = raw.partition("#")[0].strip()
        if not test_id or test_id in used or not test_id.startswith(run_prefixes):
            kept.append(raw)
        else:
            dropped += 1
    added = [f"{tid}  # TODO reason" for tid in failing if covering_entry(entries, tid) is None]
    path.write_text("\n".join(kept + added) + "\n")
    print(f"\nwrote {path}: {len(added)} entries added (replace their TODO reasons), "
          f"{dropped} dropped (nothing under them fails now)")


# ---------------------------------------------------------------- running a module

def read_records(path):
    if not path.exists():
        return []
    with open(path) as f:
        # a killed child may leave a torn last line
        return [json.loads(line) for line in f if line.endswith("\n")]


def run_module(module, args, workdir):
    """Run one module in a subprocess, restarting it after a hang or crash
    with the finished tests skipped. Returns {test id: end record}."""
    results = {}
    for attempt in itertools.count():  # each restart settles >= 1 more test
        out = workdir / f"{module}.{attempt}.jsonl"
        log = workdir / f"{module}.{attempt}.log"
        skip = workdir / f"{module}.{attempt}.skip.json"
        skip.write_text(json.dumps(sorted(results)))
        cmd = [sys.executable, str(HARNESS), "--loop", args.loop, "--module", module,
               "--out", str(out), "--skip", str(skip), "--timeout", str(args.timeout)]
        with open(log, "wb") as logf:
            # own session: the whole process group (test subprocesses too) can be killed
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            killed = watch(proc, out, args.timeout)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of a dead child
        except (ProcessLookupError, PermissionError):
            pass

        records = read_records(out)
        started = [r["id"] for r in records if r["event"] == "start"]
        results.update((r["id"], r) for r in records if r["event"] == "end")
        if proc.returncode == 0 and not killed:
            return results
        text = log.read_text(errors="replace")
        kind = "timeout" if killed or "Timeout (" in text else "crash"
        tail = "\n".join(text.splitlines()[-60:])
        if not started:  # died importing the module or in a module fixture: give up
            results[f"{PACKAGE}.{module}"] = dict(
                outcome=kind, on_loop=False, time=0,
                tb=f"harness exited with {proc.returncode} outside any test\n{tail}")
            return results
        culprit = started[-1]
        where = "after the test finished (teardown)" if culprit in results else "during the test"
        results[culprit] = dict(
            outcome=kind, on_loop=results.get(culprit, {}).get("on_loop", False), time=None,
            tb=f"{kind} {where}: harness exited with {proc.returncode}\n{tail}")


def watch(proc, out, timeout):
    """Backstop for faulthandler: kill the child if it makes no progress for
    well past the per-test timeout. Returns whether it had to be killed."""
    last_size, last_change = -1, time.monotonic()
    while proc.poll() is None:
        time.sleep(0.5)
        size = out.stat().st_size if out.exists() else 0
        if size != last_size:
            last_size, last_change = size, time.monotonic()
        elif time.monotonic() - last_change > timeout + 30:
            os.kill(proc.pid, signal.SIGABRT)  # faulthandler dumps the stacks first
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return True
    return False


# ---------------------------------------------------------------- reporting

def module_of(test_id):
    return test_id[len(PACKAGE) + 1:].split(".")[0]


def print_table(modules, results):
    cols = ("run", "pass", "fail", "error", "skip", "on-loop")
    rows, total = [], dict.fromkeys(cols, 0)
    for module in modules:
        recs = [r for tid, r in results.items() if module_of(tid) == module]
        row = dict.fromkeys(cols, 0)
        for r in recs:
            row["run"] += 1
            # timeouts count as failures, crashes as errors
            row[{"timeout": "fail", "crash": "error"}.get(r["outcome"], r["outcome"])] += 1
            row["on-loop"] += bool(r.get("on_loop"))
        rows.append((module, row))
        for c in cols:
            total[c] += row[c]
    width = max(len(m) for m in modules + ["total"])
    print(f"\n{'module':<{width}}" + "".join(f"{c:>9}" for c in cols))
    for name, row in rows + [("total", total)]:
        if name == "total":
            print("-" * (width + 9 * len(cols)))
        print(f"{name:<{width}}" + "".join(f"{row[c]:>9}" for c in cols))
    return rows, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loop", choices=("ferroloop", "asyncio"), default="ferroloop")
    ap.add_argument("--modules", help="comma-separated test_asyncio modules")
    ap.add_argument("--all", action="store_true", help="every in-scope test_asyncio module")
    ap.add_argument("--expected", type=Path, default=HERE / "expected_failures.txt")
    ap.add_argument("--update-expected", action="store_true")
    ap.add_argument("--timeout", type=float, default=60, help="per test, seconds")
    ap.add_argument("-j", type=int, default=1, dest="jobs", help="modules run in parallel")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    available = available_modules()
    if args.modules:
        modules = [m.strip() for m in args.modules.split(",") if m.strip()]
        unknown = [m for m in modules if m not in available]
        if unknown:
            ap.error(f"no such module in {PACKAGE}: {', '.join(unknown)}")
    elif args.all:
        modules = [m for m in available if m not in OUT_OF_SCOPE]
    else:
        modules = [m for m in DEFAULT_MODULES if m in available]

    entries, problems = load_expected(args.expected, allow_todo=args.update_expected)
    # Failures of one version only: expected_failures-3.14.txt beside it.
    versioned = args.expected.with_name(
        f"{args.expected.stem}-{sys.version_info[0]}.{sys.version_info[1]}{args.expected.suffix}")
    more, more_problems = load_expected(versioned, allow_todo=args.update_expected)
    entries.update(more)
    problems += more_problems
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"run.py: {args.expected}: every entry needs a reason; TODO is not one",
              file=sys.stderr)
        return 2
    if args.loop == "ferroloop":
        check = subprocess.run([sys.executable, "-c", "import ferroloop"], capture_output=True)
        if check.returncode:
            print(check.stderr.decode(errors="replace"), file=sys.stderr)
            print(f"run.py: {sys.executable} cannot import ferroloop", file=sys.stderr)
            return 2

    print(f"{PACKAGE} from Python {sys.version.split()[0]} on --loop {args.loop}: "
          f"{len(modules)} modules, -j {args.jobs}, {args.timeout:g}s per test", flush=True)
    results, started = {}, time.monotonic()
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        jobs = {pool.submit(run_module, m, args, Path(tmp)): m for m in modules}
        for n, job in enumerate(concurrent.futures.as_completed(jobs), 1):
            module_results = job.result()
            results.update(module_results)
            bad = sum(r["outcome"] in FAILING for r in module_results.values())
            print(f"[{n}/{len(modules)}] {jobs[job]}: {len(module_results)} tests, {bad} failing"
                  f" ({time.monotonic() - started:.0f}s)", flush=True)

    rows, total = print_table(modules, results)

    # A class/module entry passes unexpectedly only when nothing under it failed.
    expected, unexpected, entry_outcomes = [], [], {}
    for tid, rec in sorted(results.items()):
        entry = covering_entry(entries, tid)
        failing = rec["outcome"] in FAILING
        if failing:
            (expected if entry else unexpected).append(tid)
        if entry:
            entry_outcomes.setdefault(entry, set()).add("fail" if failing else rec["outcome"])
    unexpected_pass = sorted(e for e, seen in entry_outcomes.items()
                             if "pass" in seen and "fail" not in seen)
    for tid in unexpected:
        rec = results[tid]
        print(f"\nUNEXPECTED {rec['outcome'].upper()}: {tid}")
        tb = (rec.get("tb") or "").rstrip().splitlines()
        print("    " + "\n    ".join(tb[:TB_LINES] + (["..."] if len(tb) > TB_LINES else [])))
    for entry in unexpected_pass:
        print(f"unexpected pass — remove from expected failures: {entry}")

    if args.update_expected:
        update_expected(args.expected, entries, results, modules)
    if args.json:
        args.json.write_text(json.dumps({
            "python": sys.version.split()[0], "loop": args.loop, "modules": dict(rows),
            "total": total, "tests": results, "expected_failures": expected,
            "unexpected_failures": unexpected, "unexpected_passes": unexpected_pass,
        }, indent=1))
    print(f"\nfailing tests: {total['fail'] + total['error']} — expected (listed with their "
          f"reasons): {len(expected)}, unexpected: {len(unexpected)}; "
          f"unexpected passes: {len(unexpected_pass)}")
    # Like pytest's closing line, "failed" counts what fails the run; the
    # expected failures are counted on the line above.
    print(f"conformance: {total['pass']} passed, {len(unexpected)} failed, {total['skip']} skipped")
    return 1 if unexpected and not args.update_expected else 0


if __name__ == "__main__":
    sys.exit(main())
