"""The benchmark report's page: docs/benchmarks.md."""

from __future__ import annotations

import datetime as dt
import statistics
import textwrap
from pathlib import Path


from net import FOREIGN as NET_FOREIGN
from net import NOISY as NET_NOISY
from run import GC_OFF_NOTE, IDLE_FD_NOTE, TIMERS_NOTE
from report_model import (
    core_command,
    CORE_LOOPS,
    CORE_NOISY,
    EQUIVALENT,
    fmt_ms,
    fmt_num,
    fmt_ratio,
    geomean,
    is_quick_core,
    is_quick_net,
    kernel_of,
    LOOP_TITLE,
    md_mark,
    net_command,
    NET_LOOPS,
    not_measured_reason,
    ratio,
    Row,
)
# --- the markdown ----------------------------------------------------------------------


def md_table(head: list[str], rows: list[list[str]], align: str) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def fill(text: str) -> str:
    return textwrap.fill(text, width=100)


def machine_table(core: dict, net: dict) -> str:
    cf, nf = core["facts"], net["facts"]

    def both(fn) -> list[str]:
        return [fn(cf, core), fn(nf, net)]

    def load(f, d):
        return f"{f.get('loadavg_start', '?')} → {f.get('loadavg_end', '?')}"

    def ferro(f, d):
        full = (d.get("report") or {}).get("git_commit")
        git = f.get("ferroloop_git") or "unknown"
        return f"{f.get('ferroloop') or 'n/a'}, git `{git}`" + (f" (`{full[:12]}`)" if full else "")

    def pin(f, d):
        if "pinned_cpu" in f:
            return f"benchmark processes on CPU {f['pinned_cpu']}" if f["pinned_cpu"] is not None else "not pinned"
        if f.get("server_cpu") is not None:
            return f"servers on CPU {f['server_cpu']}, load clients on CPU {f.get('client_cpu')}"
        return "not pinned"

    def impl(f, d):
        return f"{f.get('python_impl', 'CPython')} {f.get('python', '?')}"

    rows = [
        ["date", *both(lambda f, d: f.get("date", "?"))],
        ["CPU", *both(lambda f, d: f.get("cpu_model", "?"))],
        ["cores", *both(lambda f, d: str(f.get("cpu_count", "?")))],
        ["pinning", *both(pin)],
        ["kernel", *both(lambda f, d: f"Linux {kernel_of(d)}" if kernel_of(d) else "not recorded")],
        ["Python", *both(impl)],
        ["ferroloop", *both(ferro)],
        ["uvloop", *both(lambda f, d: f.get("uvloop") or "not installed")],
        ["httptools / aiohttp / wrk", "—",
         f"{nf.get('httptools') or 'n/a'} / {nf.get('aiohttp') or 'n/a'} / {nf.get('wrk') or 'not installed'}"],
        ["load average, start → end", *both(load)],
        ["wall time", *both(lambda f, d: f"{f['wall_seconds']:.0f} s" if f.get("wall_seconds") is not None else "?")],
        ["command", *both(lambda f, d: md_command((core_command if d is core else net_command)(d)))],
    ]  # fmt: skip
    return md_table(["", "loop core (`benches/run.py`)", "networking (`benches/net.py`)"], rows, "lll")


def md_command(cmd: str) -> str:
    if cmd.endswith(EQUIVALENT):
        return f"`{cmd[: -len(EQUIVALENT)]}` (not recorded; equivalent to the JSON's settings)"
    return f"`{cmd}`"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def mismatch_note(core: dict, net: dict) -> str | None:
    cf, nf = core["facts"], net["facts"]
    diff = [
        name
        for name, k in (("CPU", "cpu_model"), ("core count", "cpu_count"), ("Python", "python"),
                        ("ferroloop", "ferroloop"), ("ferroloop commit", "ferroloop_git"), ("uvloop", "uvloop"))
        if cf.get(k) != nf.get(k)
    ]  # fmt: skip
    if not diff:
        return None
    return (
        f"**Note:** the two runs differ in {', '.join(diff)} (see the table): the two sections below were "
        "not measured under the same conditions."
    )


def core_section(doc: dict, rows: list[Row]) -> list[str]:
    s = doc.get("settings", {})
    n_runs = s.get("rounds", 0) * s.get("reps", 0)
    out = [
        "## Loop core (`benches/run.py`)",
        "",
        fill(
            "Wall time of the measured part of each workload (lower is better), every cell in a fresh process "
            f"pinned to one CPU, best of {plural(n_runs, 'run')} ({plural(s.get('rounds', 0), 'round')} x "
            f"{plural(s.get('reps', 0), 'rep')}, the "
            "loops interleaved round by round). The ratios are the other loop's time divided by ferroloop's: "
            "**above 1.00x ferroloop is faster**, below it is slower. "
            "What each workload does: [benches/README.md](../benches/README.md#the-workloads)."
        ),
        "",
    ]
    table = []
    for r in rows:
        line = [r.label if r.variant == "plain" and r.part is None else "↳ " + r.label.split(" — ", 1)[1]]
        for lp in CORE_LOOPS:
            c = r.cells[lp]
            line.append(fmt_ms(c.best) + md_mark(c) if c.best is not None else ("error" if c.error else "n/a"))
        line += [fmt_ratio(ratio(r.value("uvloop"), r.value("ferroloop"))),
                 fmt_ratio(ratio(r.value("asyncio"), r.value("ferroloop")))]  # fmt: skip
        table.append(line)
    out.append(
        md_table(["workload", "asyncio", "uvloop", "ferroloop", "vs uvloop", "vs asyncio"], table, "lrrrrr")
    )
    out.append("")
    out.append("`vs uvloop` = uvloop time ÷ ferroloop time; `vs asyncio` = asyncio time ÷ ferroloop time.")
    out.append("")
    plain = [r for r in rows if r.variant == "plain" and r.part is None]
    gu = geomean([ratio(r.value("uvloop"), r.value("ferroloop")) for r in plain])
    ga = geomean([ratio(r.value("asyncio"), r.value("ferroloop")) for r in plain])
    if gu or ga:
        out.append(
            fill(
                f"Geometric mean over the {len(plain)} plain rows: ferroloop {fmt_ratio(ga)} asyncio's speed"
                + (f", {fmt_ratio(gu)} uvloop's." if gu else ".")
            )
        )
        out.append("")
    notes = []
    variants = {r.variant for r in rows}
    if "idle-fd" in variants:
        notes.append(IDLE_FD_NOTE)
    if "gc-off" in variants:
        notes.append(GC_OFF_NOTE)
    if any(r.key == "timers" for r in rows):
        notes.append(TIMERS_NOTE)
    out += ["* " + fill(n).replace("\n", "\n  ") for n in notes]
    out += ["", "![Loop core: speed relative to asyncio](benchmarks/core.png)", ""]
    return out


def net_section(doc: dict, rows: list[Row], rss_rows: list[Row]) -> list[str]:
    s = doc.get("settings", {})
    f = doc["facts"]
    loops = [lp for lp in NET_LOOPS if lp in (s.get("loops") or NET_LOOPS)]
    out = [
        "## Networking (`benches/net.py`)",
        "",
        fill(
            "Real sockets on loopback: a server on each loop (a fresh process pinned to one CPU) driven by a "
            "load client in Rust (`benches/loadgen`) or `wrk` pinned to the other CPU. The figure is the "
            "**server's CPU time per request** in microseconds (lower is better): it is what a request costs "
            "the machine whatever limited the rate. `rust floor` is the same server in plain Rust: the least "
            f"CPU an event loop could spend. Echo rows: {s.get('conns')} connections in ping-pong, "
            f"{s.get('duration', 0):g} s measured after {s.get('warmup', 0):g} s warm-up; HTTP rows: "
            f"`wrk -t1 -c{s.get('wrk_conns')} -d{s.get('wrk_duration')}s`; best of {plural(s.get('rounds', 0), 'round')}. "
            "The ratios are ferroloop's figure divided by the other's: **below 1.00x ferroloop spends less**, "
            "above it spends more (the opposite direction from the loop-core table, since this is a cost). "
            "What each row does: [benches/README.md](../benches/README.md#what-each-row-measures)."
        ),
        "",
    ]
    head = ["workload"] + [LOOP_TITLE[lp] for lp in loops]
    ratio_cols = [lp for lp in ("uvloop", "asyncio", "floor") if lp in loops and lp != "ferroloop"]
    head += [f"f/{LOOP_TITLE[lp].split()[-1]}" for lp in ratio_cols]
    table, missing = [], []
    for r in rows:
        if not any(r.value(lp) for lp in loops):
            missing.append(f"{r.label} ({not_measured_reason(r.key, f)})")
        line = [r.label]
        for lp in loops:
            c = r.cells[lp]
            line.append(fmt_num(c.best) + md_mark(c) if c.best is not None else ("error" if c.error else "n/a"))
        line += [fmt_ratio(ratio(r.value("ferroloop"), r.value(lp))) for lp in ratio_cols]
        table.append(line)
    out += ["**Server CPU time per request, µs** (lower is better)", ""]
    out.append(md_table(head, table, "l" + "r" * (len(head) - 1)))
    out.append("")
    if missing:
        out += [fill("Not measured in this run: " + "; ".join(missing) + "."), ""]
    measured = [r for r in rows if r.value("ferroloop")]
    gu = geomean([ratio(r.value("ferroloop"), r.value("uvloop")) for r in measured])
    ga = geomean([ratio(r.value("ferroloop"), r.value("asyncio")) for r in measured])
    if gu or ga:
        out += [
            fill(
                f"Geometric mean over the {len(measured)} measured rows: ferroloop's CPU per request is "
                f"{fmt_ratio(ga)} asyncio's" + (f" and {fmt_ratio(gu)} uvloop's." if gu else ".")
            ),
            "",
        ]
    # requests per second, with the busy shares
    out += [
        "**Requests per second** (in brackets: server CPU busy / client CPU busy, share of the window; a "
        "server near 100% was the bottleneck, well below it the client or the wake-ups were)",
        "",
    ]
    table = []
    for r in rows:
        if not any(r.value(lp) for lp in loops):
            continue
        line = [r.label]
        for lp in loops:
            x = r.cells[lp].extra
            if x.get("rps"):
                busy = (
                    f" ({x['server_busy']:.0%} / {x['client_busy']:.0%})"
                    if x.get("server_busy") is not None and x.get("client_busy") is not None
                    else ""
                )
                line.append(f"{x['rps']:,.0f}{busy}")
            else:
                line.append("n/a")
        table.append(line)
    out += [md_table(["workload"] + [LOOP_TITLE[lp] for lp in loops], table, "l" + "r" * len(loops)), ""]
    rss = doc.get("rss") or {}
    if rss:
        rl = [lp for lp in loops if lp in rss]
        n = next((v.get("conns") for v in rss.values() if isinstance(v, dict) and v.get("conns")), None)
        out += [f"**Server memory holding {n or '?':,} idle TCP connections** (echo Protocol server; lower is better)", ""]
        table = []
        for label, key, scale, with_ratio in (
            ("RSS before connecting, MiB", "rss_before_kib", 1 / 1024, False),
            ("RSS holding them, MiB", "rss_holding_kib", 1 / 1024, True),
            ("RSS per connection, KiB", "kib_per_conn", 1, True),
            ("server CPU per accept + echo, µs", "cpu_us_per_conn", 1, True),
        ):
            line = [label]
            for lp in rl:
                v = (rss.get(lp) or {}).get(key)
                line.append(fmt_num(v * scale) if v is not None else "n/a")
            both = "ferroloop" in rss and "uvloop" in rss
            line.append(fmt_ratio(ratio(rss["ferroloop"].get(key), rss["uvloop"].get(key))) if both and with_ratio else "")
            table.append(line)
        out += [md_table([""] + [LOOP_TITLE[lp] for lp in rl] + ["f/uvloop"], table, "l" + "r" * (len(rl) + 1)), ""]
    if any(r.key == "tls-handshake" for r in rows):
        out += [
            "* " + fill(
                "TLS connection row: one request is a whole TLS connection (TCP connect, full TLS 1.3 handshake, "
                "a 16-byte echo, close_notify both ways, close); its requests/s is connections per second."
            ).replace("\n", "\n  "),
        ]  # fmt: skip
    out += [
        "* " + fill(
            "The kernel's loopback TCP is most of every echo row's cost (see the floor); the loops' differences "
            "sit on top of it. Where a row is bound by OpenSSL or by asyncio's own Python code on every loop, "
            "benches/README.md says so (\"Things to know when reading the numbers\")."
        ).replace("\n", "\n  "),
        "",
        "![Networking: requests per server CPU-second relative to asyncio](benchmarks/net.png)",
        "",
    ]  # fmt: skip
    return out


def noise_section(core: dict, crows: list[Row], net: dict, nrows: list[Row]) -> list[str]:
    out = ["## Noise", ""]
    # core: best vs median of rounds x reps samples per cell
    cells = [(r, lp, r.cells[lp]) for r in crows for lp in CORE_LOOPS if r.cells[lp].best]
    single = all(c.samples <= 1 for _, _, c in cells)
    if single:
        out.append(fill("Loop core: one run per cell (a quick run), so there is no spread to report."))
    elif cells:
        spreads = sorted((c.spread or 0, r.label, lp) for r, lp, c in cells)
        med = statistics.median(s for s, _, _ in spreads)
        worst = spreads[-1]
        noisy = [f"{r.label} on {lp} (+{c.spread:.0%})" for r, lp, c in cells if c.noisy]
        out.append(
            fill(
                "Loop core: a cell's figure is the best of its runs; the JSON also keeps their median. Across "
                f"the {len(cells)} cells, the median run is typically {med:.1%} slower than the best (the median "
                f"of that spread) and at most {worst[0]:.1%} ({worst[1]} on {worst[2]}). "
                + (
                    f"Cells marked `~` (median more than {CORE_NOISY:.0%} above best): " + "; ".join(noisy) + "."
                    if noisy
                    else f"No cell is marked `~` (median more than {CORE_NOISY:.0%} above best)."
                )
            )
        )
    out.append("")
    cells = [(r, lp, r.cells[lp]) for r in nrows for lp in NET_LOOPS if r.cells[lp].best]
    rounds = net.get("settings", {}).get("rounds", 0)
    if cells:
        if rounds <= 1:
            text = "Networking: one round per cell (a quick run), so there is no spread between rounds to report. "
        else:
            spreads = sorted((c.spread or 0, r.label, lp) for r, lp, c in cells)
            med = statistics.median(s for s, _, _ in spreads)
            worst = spreads[-1]
            text = (
                f"Networking: a cell's figure is the best of its {rounds} rounds (lowest CPU per request); the "
                f"JSON also keeps their median. Across the {len(cells)} cells, the median round is typically "
                f"{med:.1%} above the best and at most {worst[0]:.1%} ({worst[1]} on {LOOP_TITLE[worst[2]]}). "
            )
        noisy = [f"{r.label} on {LOOP_TITLE[lp]}" for r, lp, c in cells if c.noisy]
        cont = [(r, lp, c) for r, lp, c in cells if c.contended]
        text += (
            f"Cells marked `~` (rounds more than {NET_NOISY:.0%} apart): " + "; ".join(noisy) + ". "
            if noisy
            else f"No cell is marked `~` (rounds more than {NET_NOISY:.0%} apart). "
        )
        if cont:
            text += (
                f"{len(cont)} of {len(cells)} cells are marked `!`: in every round, other processes (or the "
                f"hypervisor) took more than {NET_FOREIGN:.0%} of the server's or the client's CPU during the "
                f"window (up to {max(c.extra.get('foreign_max') or 0 for _, _, c in cont):.0%}); their figures "
                "are suspect and the run should be repeated on a quiet machine."
            )
        else:
            text += f"No cell is marked `!` (other load above {NET_FOREIGN:.0%} of a CPU during its window)."
        out += [fill(text), ""]
    out += [
        fill(
            "Differences within about 5% are noise on a shared machine. A load average well above 1 (core) or "
            "above about 2 (networking, whose own server and client add about 2) means something else competed "
            "for the CPUs."
        ),
        "",
    ]
    return out


def failures(core: dict | None, net: dict | None) -> list[str]:
    out = []
    for r in (core or {}).get("results", []):
        for lp, d in r["loops"].items():
            if d.get("error"):
                out.append(f"core {r['workload']} [{r['variant']}] on {lp}: {d['error']}")
    for r in (net or {}).get("results", []):
        for lp, ss in (r.get("samples") or {}).items():
            for x in ss:
                if "error" in x:
                    out.append(f"net {r['workload']} on {lp}: {x['error']}")
    for lp, d in ((net or {}).get("rss") or {}).items():
        if isinstance(d, dict) and d.get("error"):
            out.append(f"net rss on {lp}: {d['error']}")
    return out


def write_markdown(
    path: Path, core: dict, crows: list[Row], net: dict, nrows: list[Row], rss_rows: list[Row], problems: list[str]
) -> None:
    today = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    quick = is_quick_core(core) or is_quick_net(net)
    lines = [
        "# ferroloop benchmarks",
        "",
        "<!-- Generated by benches/report.py (make bench-report). Do not edit by hand: re-run it. -->",
        "",
        fill(
            f"ferroloop against the standard library's asyncio loop and uvloop, on the loop core and on "
            f"networking. Written by `make bench-report` (`benches/report.py`) on {today[:10]}. Raw results: "
            "[core.json](benchmarks/core.json), [net.json](benchmarks/net.json); to redraw from them without "
            "measuring again: `.venv/bin/python benches/report.py --from-json docs/benchmarks/core.json "
            "docs/benchmarks/net.json`."
        ),
        "",
    ]
    if quick:
        which = {(True, True): "All figures", (True, False): "The loop-core figures",
                 (False, True): "The networking figures"}[(is_quick_core(core), is_quick_net(net))]  # fmt: skip
        lines += [
            f"> **Quick smoke run.** {which} come from the drivers' `--quick` mode (smaller sizes, "
            "shorter windows, one round): they show that everything runs, not how fast it runs. "
            "Run `make bench-report` on a quiet machine for the real figures.",
            "",
        ]
    if problems:
        lines += ["> **Failed cells.** The runs recorded failures; the affected cells show `error` in the tables:", ">"]
        lines += [f"> * {p}" for p in problems[:20]]
        lines += [""]
    lines += [
        "![ferroloop and uvloop relative to asyncio](benchmarks/headline.png)",
        "",
        fill(
            "Every chart is normalised to asyncio, and higher is better: for the loop core, asyncio's time "
            "divided by the loop's; for networking, asyncio's server CPU per request divided by the loop's, "
            "i.e. requests served per CPU-second. These are measurements of the loop machinery on small "
            "workloads, not of an application: in a real program most of the time goes to Python code that "
            "runs the same on every loop."
        ),
        "",
        "## How it was measured",
        "",
        machine_table(core, net),
        "",
    ]
    note = mismatch_note(core, net)
    if note:
        lines += [fill(note), ""]
    lines += [
        fill(
            "Both drivers interleave the loops round by round (asyncio, uvloop, ferroloop, then again), so a "
            "burst of unrelated load hits every loop alike, and keep every sample in their JSON. The "
            "method is described in full in [benches/README.md](../benches/README.md)."
        ),
        "",
    ]
    lines += core_section(core, crows)
    lines += net_section(net, nrows, rss_rows)
    lines += noise_section(core, crows, net, nrows)
    path.write_text("\n".join(lines).rstrip() + "\n")
