"""call_later / TimerHandle.cancel: the timer heap."""

from __future__ import annotations

import random
from time import perf_counter

from ._result import Result

MAX_DELAY = 0.1  # seconds; the "total" row can never be faster than this


def timers(loop, n: int) -> Result:
    """n call_later with random delays in [0, 0.1) s, half of them cancelled.

    The delays and the cancelled half come from a fixed seed, so every loop
    gets exactly the same schedule. The timers are scheduled and cancelled
    from a callback of the running loop, as a program's coroutines and
    callbacks do (`sleep`, `timeout`, `wait_for`). Timed: scheduling all n
    and cancelling half (reported as its own row), and the whole thing until
    the last live timer has fired. The total includes up to 0.1 s of genuine
    waiting that no loop can skip, which compresses the ratios of that row
    towards 1.
    """
    rng = random.Random(1234)
    delays = [rng.random() * MAX_DELAY for _ in range(n)]
    to_cancel = rng.sample(range(n), n // 2)
    expected = n - len(to_cancel)
    fired = 0
    t = {}

    def fire() -> None:
        nonlocal fired
        fired += 1
        if fired == expected:
            loop.stop()

    def schedule() -> None:
        call_later = loop.call_later
        t["start"] = perf_counter()
        handles = [call_later(d, fire) for d in delays]
        for i in to_cancel:
            handles[i].cancel()
        t["scheduled"] = perf_counter()

    loop.call_soon(schedule)
    loop.run_forever()
    end = perf_counter()
    return Result(end - t["start"], fired, parts={"schedule + cancel only": t["scheduled"] - t["start"]})
