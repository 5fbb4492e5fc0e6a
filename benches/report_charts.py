"""The benchmark report's PNG charts (matplotlib): every bar normalised so that higher is better."""

from __future__ import annotations

import textwrap
from pathlib import Path

from report_model import (
    COLOR,
    CORE_LOOPS,
    CORE_SHORT,
    fmt_ms,
    fmt_num,
    HEADLINE_NET,
    is_quick_core,
    is_quick_net,
    LOOP_TITLE,
    NET_LOOPS,
    ratio,
    Row,
    split_title,
    stamp,
)
# --- charts -------------------------------------------------------------------------------

FIG_WIDTH = 8.0  # inches; saved at 150 dpi (1200 px), legible when shown 800 px wide
GROUP_H = {3: 0.56, 4: 0.66}  # inches per group of bars, by bars per group
LABEL_BOX = dict(facecolor="white", edgecolor="none", alpha=0.75, pad=0.3)  # a value label over a grid line


def plt_setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 10,
            "axes.titlesize": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "savefig.dpi": 150,
        }
    )
    return plt


def loop_handles(loops: list[str], baseline_line: bool = False) -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    out: list = []
    for lp in loops:
        if lp == "floor":
            out.append(Patch(facecolor="white", edgecolor=COLOR[lp], hatch="////", label="rust floor (plain-Rust server)"))
        else:
            out.append(Patch(facecolor=COLOR[lp], label=LOOP_TITLE[lp]))
    if baseline_line:
        out.append(Line2D([0], [0], color="#444444", lw=1, ls="--", label="asyncio = 1×"))
    return out


def figure(plt, body_h: float, title: str, warn: str | None, handles: list, footer_lines: list[str], **subplots):
    """A figure FIG_WIDTH wide: a title, an optional red warning line, the legend,
    the axes (constrained layout inside what is left) and a footer stamp."""
    title_h, warn_h, legend_h = 0.42, 0.24 if warn else 0.0, 0.34
    top = title_h + warn_h + legend_h
    bottom = 0.14 + 0.15 * len(footer_lines)
    height = body_h + top + bottom
    fig = plt.figure(figsize=(FIG_WIDTH, height), layout="constrained")
    axes = fig.subplots(**subplots)
    fig.get_layout_engine().set(rect=(0, bottom / height, 1, 1 - (top + bottom) / height))  # (x, y, w, h)
    fig.text(0.5, 1 - 0.1 / height, title, ha="center", va="top", fontsize=12.5, fontweight="bold")
    if warn:
        fig.text(0.5, 1 - (title_h + 0.02) / height, warn, ha="center", va="top", fontsize=9.5, color="#b00020")
    fig.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - (title_h + warn_h) / height),
        ncols=len(handles), fontsize=9, handlelength=1.6, columnspacing=1.4,
    )  # fmt: skip
    fig.text(0.012, 0.08 / height, "\n".join(footer_lines), fontsize=8, color="#555555", ha="left", va="bottom")
    return fig, axes


def hbar_groups(ax, rows: list[Row], loops: list[str], baseline: str, base_fmt) -> None:
    """Grouped horizontal bars, one group per row, normalised to `baseline`:
    bar = baseline's figure / the loop's figure (every figure here is a cost:
    time, CPU, memory), so higher is better. The floor gets an outlined bar."""
    h = 0.84 / len(loops)
    xmax = 1.0
    for i, row in enumerate(rows):
        base = row.value(baseline)
        for j, lp in enumerate(loops):
            y = i + (j - (len(loops) - 1) / 2) * h
            v = ratio(base, row.value(lp))
            if v is None:
                what = "error" if row.cells[lp].error else "n/a"
                ax.text(0.03, y, f"{LOOP_TITLE[lp]}: {what}", va="center", ha="left", fontsize=7.5, color="#666666")
                continue
            if lp == "floor":
                ax.barh(y, v, height=h * 0.9, facecolor="white", edgecolor=COLOR[lp], hatch="////", lw=0.8)
            else:
                ax.barh(y, v, height=h * 0.9, color=COLOR[lp])
            mark = row.cells[lp].mark()
            text = f"1× = {base_fmt(row.value(lp), row)}{mark}" if lp == baseline else f"{v:.2f}×{mark}"
            ax.text(v, y, " " + text, va="center", ha="left", fontsize=8, bbox=LABEL_BOX)
            xmax = max(xmax, v)
    ax.axvline(1.0, color="#444444", lw=0.8, ls="--", zorder=0)
    for i in range(len(rows) - 1):
        ax.axhline(i + 0.5, color="#dddddd", lw=0.8, zorder=0)
    ax.set_yticks(range(len(rows)), [r.chart_label for r in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, xmax * 1.3)
    ax.tick_params(axis="y", length=0)
    ax.tick_params(axis="x", labelsize=8.5)
    ax.grid(axis="x", color="#eeeeee", zorder=-1)
    ax.set_axisbelow(True)


QUICK_WARN = "quick smoke run (--quick): small sizes, one round; not representative"


def chart_core(plt, doc: dict, rows: list[Row], path: Path) -> None:
    rows = [r for r in rows if any(r.value(lp) for lp in CORE_LOOPS)]
    loops = [lp for lp in CORE_LOOPS if lp == "asyncio" or any(r.value(lp) for r in rows)]
    s = doc.get("settings", {})
    n_runs = s.get("rounds", 0) * s.get("reps", 0)
    noisy = any(c.noisy for r in rows for c in r.cells.values())
    foot = [stamp([doc])] + (["~ = noisy cell: its median is more than 10% above its best"] if noisy else [])
    fig, ax = figure(
        plt, 0.9 + GROUP_H[3] * len(rows), "Loop core (benches/run.py): speed relative to asyncio",
        QUICK_WARN if is_quick_core(doc) else None, loop_handles(loops), foot,
    )  # fmt: skip
    hbar_groups(ax, rows, loops, "asyncio", lambda v, r: fmt_ms(v))
    ax.set_title(
        f"bar = asyncio's time ÷ the loop's time (best of {n_runs} run{'s' if n_runs != 1 else ''} per cell); "
        "asyncio's bar shows its time",
        fontsize=8.5, loc="left", color="#333333",
    )  # fmt: skip
    ax.set_xlabel("speed relative to asyncio (×)  —  higher is better →")
    fig.savefig(path)
    plt.close(fig)


def chart_net(plt, doc: dict, rows: list[Row], rss_rows: list[Row], path: Path) -> None:
    rows = [r for r in rows if any(r.value(lp) for lp in NET_LOOPS)]
    rss_rows = [r for r in rss_rows if any(r.value(lp) for lp in NET_LOOPS)]
    loops = [lp for lp in NET_LOOPS if lp == "asyncio" or any(r.value(lp) for r in rows + rss_rows)]
    gh = GROUP_H[4] if len(loops) > 3 else GROUP_H[3]
    h_main = 0.9 + gh * len(rows)
    h_rss = 0.9 + gh * len(rss_rows) if rss_rows else 0.0
    marks = [m for m, on in (
        ("~ = noisy: its rounds are more than 10% apart", any(c.noisy for r in rows for c in r.cells.values())),
        ("! = other load took more than 10% of a CPU during its window", any(c.contended for r in rows for c in r.cells.values())),
    ) if on]  # fmt: skip
    foot = [stamp([doc])] + (["; ".join(marks)] if marks else [])
    kw = dict(nrows=2, ncols=1, height_ratios=[h_main, h_rss]) if rss_rows else {}
    fig, axes = figure(
        plt, h_main + h_rss, "Networking (benches/net.py): server efficiency relative to asyncio",
        QUICK_WARN if is_quick_net(doc) else None, loop_handles(loops), foot, **kw,
    )  # fmt: skip
    ax, ax2 = (axes[0], axes[1]) if rss_rows else (axes, None)
    hbar_groups(ax, rows, loops, "asyncio", lambda v, r: f"{fmt_num(v)} µs")
    rounds = doc.get("settings", {}).get("rounds", 0)
    ax.set_title(
        f"bar = asyncio's server CPU time per request ÷ the loop's (best of {rounds} round{'s' if rounds != 1 else ''});"
        "\nasyncio's bar shows its CPU µs per request",
        fontsize=8.5, loc="left", color="#333333",
    )  # fmt: skip
    ax.set_xlabel("requests per server CPU-second, relative to asyncio (×)  —  higher is better →")
    if ax2 is not None:
        n = next((v.get("conns") for v in (doc.get("rss") or {}).values() if isinstance(v, dict) and v.get("conns")), None)
        units = {"kib_per_conn": "KiB", "cpu_us_per_conn": "µs"}
        hbar_groups(ax2, rss_rows, loops, "asyncio", lambda v, r: f"{fmt_num(v)} {units.get(r.key, '')}")
        ax2.set_title(
            f"{n:,} idle TCP connections held open" if n else "idle TCP connections held open",
            fontsize=8.5, loc="left", color="#333333",
        )  # fmt: skip
        ax2.set_xlabel("less memory / CPU per connection than asyncio (×)  —  higher is better →")
    fig.savefig(path)
    plt.close(fig)


def chart_headline(plt, core_doc: dict, crows: list[Row], net_doc: dict, nrows: list[Row], path: Path) -> None:
    core = [
        Row(r.key, r.label, CORE_SHORT.get(r.key, split_title(r.label)[0]), r.cells)
        for r in crows
        if r.variant == "plain" and r.part is None and r.value("asyncio")
    ]
    by_key = {r.key: r for r in nrows}
    net = [
        Row(k, by_key[k].label, label, by_key[k].cells)
        for k, label in HEADLINE_NET
        if k in by_key and by_key[k].value("asyncio") and (by_key[k].value("ferroloop") or by_key[k].value("uvloop"))
    ]
    panels = [
        (core, "Loop core: speed", "speed, × asyncio  —  higher is better →"),
        (net, "Networking: CPU efficiency", "requests / CPU-second, × asyncio →"),
    ]
    panels = [p for p in panels if p[0]]
    if not panels:
        return
    nmax = max(len(p[0]) for p in panels)
    loops = [lp for lp in ("uvloop", "ferroloop") if any(r.value(lp) for r in core + net)]
    quick = is_quick_core(core_doc) or is_quick_net(net_doc)
    foot = textwrap.wrap(stamp([core_doc, net_doc]), 140)
    fig, axes = figure(
        plt, 0.75 + 0.36 * nmax, "ferroloop and uvloop relative to asyncio (higher is better)",
        QUICK_WARN if quick else None, loop_handles(loops, baseline_line=True), foot,
        nrows=1, ncols=len(panels), squeeze=False,
    )  # fmt: skip
    fig.get_layout_engine().set(wspace=0.08)
    for ax, (rows, title, xlabel) in zip(axes[0], panels):
        h = 0.76 / max(1, len(loops))
        xmax = 1.0
        for i, row in enumerate(rows):
            for j, lp in enumerate(loops):
                v = ratio(row.value("asyncio"), row.value(lp))
                y = i + (j - (len(loops) - 1) / 2) * h
                if v is None:
                    what = "error" if row.cells[lp].error else "n/a"
                    ax.text(0.03, y, f"{lp}: {what}", va="center", ha="left", fontsize=7.5, color="#666666")
                    continue
                ax.barh(y, v, height=h * 0.92, color=COLOR[lp])
                ax.text(v, y, f" {v:.1f}×", va="center", ha="left", fontsize=8.5, bbox=LABEL_BOX)
                xmax = max(xmax, v)
        ax.axvline(1.0, color="#444444", lw=0.9, ls="--")
        ax.set_yticks(range(len(rows)), [r.chart_label for r in rows], fontsize=9.5)
        ax.set_ylim(nmax - 0.5, -0.5)
        ax.set_xlim(0, xmax * 1.22)
        ax.tick_params(axis="y", length=0)
        ax.tick_params(axis="x", labelsize=8.5)
        ax.grid(axis="x", color="#eeeeee")
        ax.set_axisbelow(True)
        ax.set_title(title, fontsize=9.5, loc="left", fontweight="bold")
        ax.set_xlabel(xlabel, fontsize=9)
    fig.savefig(path)
    plt.close(fig)
