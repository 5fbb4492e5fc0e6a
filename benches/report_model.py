"""The benchmark report's model: rows and cells read from the drivers' JSON, and their formatting."""

from __future__ import annotations

import math
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from net import BY_KEY as NET_BY_KEY  # noqa: E402
from run import VARIANT_LABEL, human_n  # noqa: E402
from run import NOISY as CORE_NOISY  # noqa: E402
from workloads import BY_KEY as CORE_BY_KEY  # noqa: E402

CORE_LOOPS = ["asyncio", "uvloop", "ferroloop"]
NET_LOOPS = ["asyncio", "uvloop", "ferroloop", "floor"]
LOOP_TITLE = {"asyncio": "asyncio", "uvloop": "uvloop", "ferroloop": "ferroloop", "floor": "rust floor"}
# One colour per loop, in every chart.
COLOR = {"asyncio": "#9a9a9a", "uvloop": "#3a74b0", "ferroloop": "#d0582a", "floor": "#222222"}

# The networking rows the headline chart shows (those measured), with short labels.
HEADLINE_NET = [
    ("tcp1k", "TCP echo, 1 KiB"),
    ("streams1k", "streams echo, 1 KiB"),
    ("unix1k", "Unix echo, 1 KiB"),
    ("udp1k", "UDP echo, 1 KiB"),
    ("http-httptools", "HTTP, httptools"),
    ("tls1k", "TLS echo, 1 KiB"),
    ("tls-handshake", "TLS handshakes"),
    ("https-httptools", "HTTPS, httptools"),
]
CORE_SHORT = {
    "call_soon_chain": "call_soon chain",
    "call_soon_batch": "call_soon batch",
    "timers": "timers",
    "task_await": "create_task + await",
    "task_gather": "create_task + gather",
    "sleep0": "sleep(0) switches",
    "future_pingpong": "Future ping-pong",
}


# --- reading the drivers' JSON -------------------------------------------------------


@dataclass
class Cell:
    """One loop's figure in one row: best and median, plus the drivers' markers."""

    best: float | None = None
    median: float | None = None
    samples: int = 0
    noisy: bool = False
    contended: bool = False
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def spread(self) -> float | None:
        """How far the median is above the best, as a fraction of the best."""
        if self.best and self.median is not None:
            return abs(self.median - self.best) / self.best
        return None

    def mark(self) -> str:
        return ("~" if self.noisy else "") + ("!" if self.contended else "")


@dataclass
class Row:
    key: str
    label: str  # the table's label
    chart_label: str  # shorter, may contain a line break
    cells: dict[str, Cell]
    variant: str = "plain"
    part: str | None = None
    extra: dict = field(default_factory=dict)

    def value(self, loop: str) -> float | None:
        c = self.cells.get(loop)
        return c.best if c and c.best and c.best > 0 else None


def split_title(title: str) -> tuple[str, str]:
    """'call_soon chain, 1M hops' -> ('call_soon chain', '1M hops')."""
    cut = [i for i in (title.find(": "), title.find(", ")) if i > 0]
    if not cut:
        return title, ""
    i = min(cut)
    return title[:i], title[i + 2 :]


def core_rows(doc: dict) -> list[Row]:
    """The rows of benches/run.py's table, in its order: plain, variants, measured parts."""
    rows: list[Row] = []
    for r in doc["results"]:
        key, variant, n = r["workload"], r["variant"], r["n"]
        w = CORE_BY_KEY.get(key)
        title = w.title.format(n=human_n(n)) if w else f"{key}, n={n:,}"
        name, detail = split_title(title)
        short = CORE_SHORT.get(key, name)
        if variant != "plain":
            vlabel = VARIANT_LABEL.get(variant, variant).strip()
            label, chart = f"{title} — {vlabel}", f"{short}\n{vlabel}"
        else:
            label, chart = title, f"{short}\n{detail}" if detail else short

        def cell(d: dict | None, values: list[float] | None = None) -> Cell:
            if not d:
                return Cell()
            vals = values if values is not None else d.get("seconds") or []
            if not vals:
                return Cell(error=d.get("error"))
            best, med = min(vals), statistics.median(vals)
            return Cell(best, med, len(vals), med > best * (1 + CORE_NOISY), error=d.get("error"))

        loops = r["loops"]
        rows.append(Row(key, label, chart, {lp: cell(loops.get(lp)) for lp in CORE_LOOPS}, variant, extra={"n": n}))
        parts = sorted({p for d in loops.values() for p in (d.get("parts") or {})})
        for p in parts:
            cells = {lp: cell(loops.get(lp), (loops.get(lp) or {}).get("parts", {}).get(p, [])) for lp in CORE_LOOPS}
            rows.append(Row(key, f"{label} — {p}", f"{short}\n{p}", cells, variant, part=p, extra={"n": n}))
    return rows


def net_rows(doc: dict) -> list[Row]:
    rows: list[Row] = []
    for r in doc["results"]:
        key = r["workload"]
        title = r.get("title") or (NET_BY_KEY[key].title if key in NET_BY_KEY else key)
        name, detail = split_title(title)
        cells: dict[str, Cell] = {}
        for lp in NET_LOOPS:
            s = (r.get("summary") or {}).get(lp) or {}
            errs = [x["error"] for x in (r.get("samples") or {}).get(lp, []) if "error" in x]
            n_ok = sum(1 for x in (r.get("samples") or {}).get(lp, []) if "error" not in x)
            cells[lp] = Cell(
                s.get("cpu_us_per_req"),
                s.get("cpu_us_per_req_median"),
                n_ok,
                bool(s.get("noisy")),
                bool(s.get("contended")),
                errs[0] if errs else None,
                extra={k: s.get(k) for k in ("rps", "server_busy", "client_busy", "foreign_max")},
            )
        rows.append(Row(key, title, f"{name}\n{detail}" if detail else name, cells))
    return rows


def net_rss_rows(doc: dict) -> list[Row]:
    rss = doc.get("rss") or {}
    if not rss:
        return []
    out = []
    for key, label, chart in (
        ("kib_per_conn", "RSS per idle connection, KiB", "memory (RSS)\nper connection"),
        ("cpu_us_per_conn", "server CPU per accept + echo, µs", "server CPU per\naccept + first echo"),
    ):
        cells = {lp: Cell((rss.get(lp) or {}).get(key), error=(rss.get(lp) or {}).get("error")) for lp in NET_LOOPS}
        out.append(Row(key, label, chart, cells))
    return out


def not_measured_reason(key: str, facts: dict) -> str:
    w = NET_BY_KEY.get(key)
    if w is None:
        return "not measured"
    if w.client == "wrk" and not facts.get("wrk"):
        return "wrk was not installed"
    if w.tls and "trustme" in facts and not facts.get("trustme"):
        return "trustme was not installed"
    if w.needs and not facts.get(w.needs):
        return f"{w.needs} was not installed"
    return "no successful run"


def is_quick_core(doc: dict) -> bool:
    s = doc.get("settings", {})
    return s.get("scale", 1.0) < 1.0 or s.get("rounds", 3) * s.get("reps", 2) < 2


def is_quick_net(doc: dict) -> bool:
    s = doc.get("settings", {})
    return s.get("duration", 3.0) < 2.0 or s.get("rounds", 2) < 2


EQUIVALENT = "\t(equivalent)"  # marks a command rebuilt from a JSON's settings, not recorded


def core_command(doc: dict) -> str:
    """The command recorded by this script, else one equivalent to the JSON's settings."""
    if "report" in doc and doc["report"].get("command"):
        return doc["report"]["command"]
    s = doc.get("settings", {})
    args = []
    if (s.get("scale"), s.get("rounds"), s.get("reps")) == (0.1, 1, 1):
        args.append("--quick")
    else:
        for k, default in (("rounds", 3), ("reps", 2), ("scale", 1.0)):
            if k in s and s[k] != default:
                args += [f"--{k}", f"{s[k]:g}" if isinstance(s[k], float) else str(s[k])]
    variants = {(r["workload"], r["variant"]) for r in doc["results"]}
    keys = [r["workload"] for r in doc["results"]]
    for v, flag in (("idle-fd", "--idle-fd"), ("gc-off", "--gc-off")):
        if keys and all((k, v) in variants for k in keys):
            args.append(flag)
    if keys and set(keys) != set(CORE_BY_KEY):
        args += ["--only", *dict.fromkeys(keys)]
    if s.get("loops") and list(s["loops"]) != CORE_LOOPS:
        args += ["--loops", *s["loops"]]
    return shlex.join(["python", "benches/run.py", *args]) + EQUIVALENT


def net_command(doc: dict) -> str:
    if "report" in doc and doc["report"].get("command"):
        return doc["report"]["command"]
    s = doc.get("settings", {})
    args = []
    quick = dict(rounds=1, duration=1.0, warmup=0.3, wrk_duration=2, warmup_wrk=1, rss_conns=2000)
    if all(s.get(k) == v for k, v in quick.items()):
        args.append("--quick")
    else:
        defaults = dict(rounds=2, duration=3.0, warmup=0.5, wrk_duration=5, warmup_wrk=1, rss_conns=10000)
        for k, d in defaults.items():
            if k in s and s[k] != d:
                args += ["--" + k.replace("_", "-"), f"{s[k]:g}"]
    for k, d in (("conns", 10), ("wrk_conns", 50)):
        if k in s and s[k] != d:
            args += ["--" + k.replace("_", "-"), str(s[k])]
    keys = [r["workload"] for r in doc["results"]] + (["rss"] if doc.get("rss") else [])
    if set(keys) != set(NET_BY_KEY) | {"rss"}:
        args += ["--only", *keys]
    if s.get("loops") and list(s["loops"]) != NET_LOOPS:
        args += ["--loops", *s["loops"]]
    return shlex.join(["python", "benches/net.py", *args]) + EQUIVALENT


# --- formatting ------------------------------------------------------------------------


def fmt_ms(s: float | None) -> str:
    if s is None:
        return "n/a"
    ms = s * 1000
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2f} ms"


def fmt_num(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den and num > 0 and den > 0 else None


def fmt_ratio(r: float | None) -> str:
    return f"{r:.2f}x" if r is not None else "n/a"


def md_mark(c: Cell) -> str:
    return c.mark().replace("~", "\\~")


def geomean(vals: list[float | None]) -> float | None:
    ok = [v for v in vals if v and v > 0]
    return math.exp(sum(map(math.log, ok)) / len(ok)) if ok else None


def short_date(iso: str | None) -> str:
    return (iso or "?")[:10]


def versions_line(f: dict) -> str:
    git = f.get("ferroloop_git") or "unknown"
    return f"ferroloop {f.get('ferroloop') or '?'} (git {git}), uvloop {f.get('uvloop') or 'n/a'}"


def kernel_of(doc: dict) -> str | None:
    return doc["facts"].get("kernel") or (doc.get("report") or {}).get("kernel")


def stamp(docs: list[dict]) -> str:
    """The charts' footer: machine, Python, versions, date (per driver where they differ)."""

    def one(fn) -> str:
        vals = [fn(d) for d in docs]
        if len(set(vals)) == 1:
            return vals[0]
        return " / ".join(f"{v} ({n})" for v, n in zip(vals, ("core", "net")))

    parts = [
        one(lambda d: f"{d['facts'].get('cpu_model', '?')}, {d['facts'].get('cpu_count', '?')} CPUs"),
        one(lambda d: f"Linux {kernel_of(d) or 'n/a'}"),
        one(lambda d: f"CPython {d['facts'].get('python', '?')}"),
        one(lambda d: versions_line(d["facts"])),
        one(lambda d: short_date(d["facts"].get("date"))),
    ]
    return " · ".join(parts)
