"""call_soon: the ready queue and the per-iteration overhead of the loop."""

from __future__ import annotations

import socket
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


CHAINS = 100


def chains(loop, n: int) -> Result:
    """100 callbacks that each re-schedule themselves, n hops in all.

    About 100 callbacks are ready in every iteration, so this weighs the
    per-callback cost (handle, context, dispatch) against the iteration's,
    as a busy server's loop does.
    """
    per_chain = max(1, n // CHAINS)
    hops = 0
    live = CHAINS

    def hop(left: int) -> None:
        nonlocal hops, live
        hops += 1
        if left > 1:
            loop.call_soon(hop, left - 1)
        else:
            live -= 1
            if live == 0:
                loop.stop()

    for _ in range(CHAINS):
        loop.call_soon(hop, per_chain)
    t0 = perf_counter()
    loop.run_forever()
    return Result(perf_counter() - t0, hops)


def fairness(loop, trials: int = 200) -> dict[str, float]:
    """How many steps of a call_soon chain run before a ready reader does.

    Not timed. A loop that polls I/O on every iteration runs a reader that
    became ready within one step (asyncio: exactly 1); one that polls only
    every k iterations lets the chain run up to k steps first. The reader
    is registered on an already-readable socket at a different phase of the
    chain in each trial, so a periodic poll cannot hide.
    """
    a, b = socket.socketpair()
    b.send(b"x")  # stays unread: a is readable throughout
    delays: list[int] = []
    steps = 0
    registered_at: int | None = None
    next_trial = 1000  # let the chain run before the first trial

    def on_readable() -> None:
        nonlocal registered_at, next_trial
        assert registered_at is not None
        delays.append(steps - registered_at)
        loop.remove_reader(a.fileno())
        registered_at = None
        next_trial = steps + 37 + len(delays) % 13  # a new phase each time

    def hop() -> None:
        nonlocal steps, registered_at
        steps += 1
        if registered_at is None and steps >= next_trial:
            if len(delays) == trials:
                loop.stop()
                return
            registered_at = steps
            loop.add_reader(a.fileno(), on_readable)
        loop.call_soon(hop)

    loop.call_soon(hop)
    try:
        loop.run_forever()
    finally:
        a.close()
        b.close()
    return {"max": max(delays), "mean": sum(delays) / len(delays)}
