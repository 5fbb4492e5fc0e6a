"""Virtual time for tests: a ferroloop loop whose clock jumps to the next
timer's deadline whenever it would otherwise wait.

    clock = ferroloop.testing.VirtualClock()
    loop = ferroloop.testing.new_event_loop(clock=clock)
    loop.run_until_complete(asyncio.sleep(3600))   # returns at once
    assert clock.time == 3600

    asyncio.run(main(), loop_factory=ferroloop.testing.new_event_loop)  # 3.12+
    ferroloop.testing.run(main())                                        # any version

When no callback is ready, the loop polls I/O for `autojump_threshold`
real seconds (0 by default: one non-blocking poll) and, if nothing arrived,
moves the clock to the earliest deadline, so `sleep`, `timeout`, `wait_for`
and `call_later` chains take no real time and fire in the order the real
clock would give. Real I/O keeps working: a loopback server and client, a
subprocess. Work that finishes in real time while a timer is pending (a
subprocess, an executor, a remote peer) needs a threshold that covers it,
or the clock jumps past the pending timer first. The clock stands still
while callbacks run; `clock.advance(seconds)` moves it by hand.

Everything else is the normal ferroloop loop, built into its Rust core
(src/virtual_clock.rs): the same speed and behaviour.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._ferroloop import VirtualClock
from ._loop import Loop
from ._loop import new_event_loop as _new_real_loop

__all__ = ["VirtualClock", "get_clock", "new_event_loop", "run"]

_T = TypeVar("_T")


def new_event_loop(*, clock: VirtualClock | None = None) -> Loop:
    """A new ferroloop loop on `clock` (a new `VirtualClock()` at 0.0 if
    None), usable as a `loop_factory`."""
    loop = _new_real_loop()
    loop._virtual_clock = VirtualClock() if clock is None else clock
    return loop


def get_clock(loop: asyncio.AbstractEventLoop | None = None) -> VirtualClock:
    """The virtual clock of `loop` (default: the running loop). RuntimeError
    if that loop runs on real time."""
    if loop is None:
        loop = asyncio.get_running_loop()
    clock = getattr(loop, "_virtual_clock", None)
    if clock is None:
        raise RuntimeError(f"{loop!r} does not run on virtual time")
    return clock


def run(
    main: Coroutine[Any, Any, _T],
    *,
    clock: VirtualClock | None = None,
    debug: bool | None = None,
) -> _T:
    """`ferroloop.run(main)` on virtual time (on `clock`, if given)."""
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=lambda: new_event_loop(clock=clock)) as runner:
        return runner.run(main)
