"""`python -m ferroloop --stats`: a short report of each loop's
`loop.stats()` at exit, and on SIGUSR1 while the program runs."""

from __future__ import annotations

import signal
import sys
from typing import Any

from . import _loop


def format_report(stats: dict[str, Any], title: str = "loop") -> str:
    """A few human lines for one `loop.stats()` snapshot."""
    busy, idle = stats["running_seconds"], stats["waiting_seconds"]
    share = busy / (busy + idle) if busy + idle > 0 else 0.0
    lag = stats["lag"]
    ms = 1e3
    lines = [
        f"ferroloop stats: {title}",
        f"  {stats['iterations']:,} iterations, {stats['callbacks']:,} callbacks, "
        f"{stats['io_events']:,} I/O events; timers: {stats['timers_scheduled']:,} scheduled, "
        f"{stats['timers_fired']:,} fired, {stats['timers_cancelled']:,} cancelled",
        f"  {busy:.3f} s running, {idle:.3f} s waiting for I/O or timers ({share:.0%} busy)",
        f"  timer lag over {lag['count']:,} timers: p50 {lag['p50'] * ms:.2f} ms, p90 {lag['p90'] * ms:.2f} ms, "
        f"p99 {lag['p99'] * ms:.2f} ms, max {lag['max'] * ms:.2f} ms",
    ]
    threshold = stats["slow_callback_threshold"]
    longest, callbacks = stats["longest_iteration"]
    lines.append(
        f"  slow (>= {threshold * ms:.0f} ms): {stats['slow_iterations']:,} iterations (longest "
        f"{longest * ms:.1f} ms, {callbacks:,} callbacks), {stats['slow_callbacks']:,} callbacks named"
    )
    for what, seconds in stats["slowest_callbacks"]:
        lines.append(f"    {seconds * ms:9.1f} ms  {what}")
    return "\n".join(lines)


def report(file: Any = None) -> None:
    """Every loop made since `enable()` that has run, to `file` (stderr)."""
    out = sys.stderr if file is None else file
    for n, loop in enumerate(_loop._stats_loops or (), 1):
        stats = loop.stats()
        if stats["iterations"]:
            print(format_report(stats, f"loop {n}"), file=out, flush=True)


def enable() -> None:
    """Keeps every loop made from now on for `report()`, and reports on
    SIGUSR1 (unless the program has a handler of its own for it)."""
    _loop._stats_loops = []
    if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGUSR1, lambda signum, frame: report())
