"""The benchmark workloads, one small module per family.

Every workload is a plain function ``f(loop, n) -> Result``: it gets a fresh,
not-yet-running event loop (asyncio's, uvloop's or ferroloop's — it must not
care which) and a size ``n``, does its work on that loop, and returns how long
the measured part took plus a check value. The check value is the same on
every loop (it proves the workload really did all of its work); it says
nothing about speed. Nothing here asserts anything about timings.

``WORKLOADS`` is the registry ``run.py`` and ``worker.py`` iterate over, in
the order the table prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import call_soon, futures, services, sleep0, tasks, timers
from ._result import Result


@dataclass(frozen=True)
class Workload:
    key: str  # command-line name, JSON key
    title: str  # the table's row label (sizes are filled in from n)
    func: Callable[..., Result]
    n: int  # default size, before --scale
    # Variants the default run prints besides the plain row ("idle-fd",
    # "gc-off"); --idle-fd / --gc-off add that variant to every workload.
    extra_variants: tuple[str, ...] = ()


WORKLOADS: list[Workload] = [
    Workload("call_soon_chain", "call_soon chain, {n} hops", call_soon.chain, 1_000_000, ("idle-fd",)),
    Workload("call_soon_chains", "call_soon: 100 chains, {n} hops", call_soon.chains, 1_000_000),
    Workload("call_soon_batch", "call_soon batch, {n} callbacks", call_soon.batch, 1_000_000, ("gc-off",)),
    Workload("timers", "timers: {n} call_later, half cancelled", timers.timers, 100_000),
    Workload("task_await", "create_task + await, {n} one by one", tasks.await_each, 100_000),
    Workload("task_gather", "create_task + gather, {n} at once", tasks.gather_all, 100_000),
    Workload("sleep0", "sleep(0): 1000 tasks, {n} switches", sleep0.sleep0, 1_000_000, ("idle-fd",)),
    Workload("future_pingpong", "Future ping-pong, {n} futures", futures.pingpong, 200_000),
    Workload("io_timeout", "10k tasks: request + timeout(), {n} replies", services.io_timeout, 200_000),
    Workload("queue_pipeline", "Queue pipeline in a TaskGroup, {n} items", services.queue_pipeline, 200_000),
]

BY_KEY = {w.key: w for w in WORKLOADS}

__all__ = ["BY_KEY", "WORKLOADS", "Result", "Workload"]
