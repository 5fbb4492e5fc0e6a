"""call_soon: the ready queue and the per-iteration overhead of the loop."""

from __future__ import annotations

from time import perf_counter

from ._result import Result


def chain(loop, n: int) -> Result:
    """One callback that re-schedules itself with call_soon, n times.

    Only one callback is ready at any time, so every hop is a whole loop
    iteration: this measures the fixed cost of `_run_once` (timer check,
    poll-or-not, popping the ready queue, entering the callback's context)
    plus one call_soon.
    """
    count = 0

    def hop() -> None:
        nonlocal count
        count += 1
        if count < n:
            loop.call_soon(hop)
        else:
            loop.stop()

    loop.call_soon(hop)
    t0 = perf_counter()
    loop.run_forever()
    return Result(perf_counter() - t0, count)


def batch(loop, n: int) -> Result:
    """Schedule n callbacks from one place, then run until all have run.

    All n are ready in the same iteration, so this measures call_soon itself
    (Handle creation, queue push) and running a handle, with the iteration
    overhead amortised away. Scheduling happens before run_forever() and is
    included in the time.
    """
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1

    call_soon = loop.call_soon
    t0 = perf_counter()
    for _ in range(n):
        call_soon(tick)
    call_soon(loop.stop)  # FIFO: runs after the n ticks
    loop.run_forever()
    return Result(perf_counter() - t0, count)
