"""asyncio.sleep(0): task switching."""

from __future__ import annotations

import asyncio
from time import perf_counter

from ._result import Result

TASKS = 1000


def sleep0(loop, n: int) -> Result:
    """1000 tasks each doing `await asyncio.sleep(0)` n/1000 times.

    sleep(0) yields to the loop without a future, so each switch is one
    Task.__step re-scheduled with call_soon. With 1000 tasks ready at once,
    each iteration runs ~1000 steps: this is the cost of a task step, not of
    the iteration.
    """
    k = max(1, n // TASKS)

    async def worker() -> int:
        for _ in range(k):
            await asyncio.sleep(0)
        return k

    async def main() -> int:
        return sum(await asyncio.gather(*(worker() for _ in range(TASKS))))

    t0 = perf_counter()
    switches = loop.run_until_complete(main())
    return Result(perf_counter() - t0, switches)
