"""Futures: create_future, set_result, and waking the task awaiting it."""

from __future__ import annotations

from time import perf_counter

from ._result import Result


def pingpong(loop, n: int) -> Result:
    """Two tasks exchanging n futures in total.

    Each task awaits "its" future; when it is woken it makes a fresh one for
    itself and resolves the other task's future with a counter + 1. Exactly
    one task is runnable at a time, so each exchange is create_future +
    set_result + a done-callback + a Task wake-up + a loop iteration.
    """
    slots = {"ping": loop.create_future(), "pong": loop.create_future()}
    per_player = n // 2

    async def player(me: str, other: str) -> int:
        value = 0
        for _ in range(per_player):
            value = await slots[me]
            slots[me] = loop.create_future()
            slots[other].set_result(value + 1)
        return value

    async def main() -> int:
        a = loop.create_task(player("ping", "pong"))
        b = loop.create_task(player("pong", "ping"))
        slots["ping"].set_result(0)  # serve
        await a
        return await b

    t0 = perf_counter()
    last = loop.run_until_complete(main())
    return Result(perf_counter() - t0, last)
