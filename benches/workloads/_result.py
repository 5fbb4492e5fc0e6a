from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Result:
    seconds: float  # the measured part, wall clock (time.perf_counter)
    check: object  # identical on every loop when the workload did all its work
    # Extra timings of a part of the same run, printed as their own rows
    # (label suffix -> seconds), e.g. the scheduling phase of the timer workload.
    parts: dict[str, float] = field(default_factory=dict)
