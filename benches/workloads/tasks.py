"""create_task: Task creation, first step, completion, and waking the awaiter."""

from __future__ import annotations

import asyncio
from time import perf_counter

from ._result import Result


async def _trivial(i: int) -> int:
    return i


def await_each(loop, n: int) -> Result:
    """Create n trivial tasks one at a time and await each before the next.

    Every task costs: Task creation, its first (and only) step via call_soon,
    completion, and the done-callback that wakes the awaiting coroutine —
    a few loop iterations each, with little else ready.
    """

    async def main() -> int:
        total = 0
        for i in range(n):
            total += await asyncio.create_task(_trivial(i))
        return total

    t0 = perf_counter()
    total = loop.run_until_complete(main())
    return Result(perf_counter() - t0, total)


def gather_all(loop, n: int) -> Result:
    """Create n trivial tasks at once and asyncio.gather them.

    The batch version: n tasks are ready in the same iteration, then gather's
    n done-callbacks run.
    """

    async def main() -> int:
        ts = [asyncio.create_task(_trivial(i)) for i in range(n)]
        return sum(await asyncio.gather(*ts))

    t0 = perf_counter()
    total = loop.run_until_complete(main())
    return Result(perf_counter() - t0, total)
