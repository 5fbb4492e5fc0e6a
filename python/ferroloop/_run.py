"""`ferroloop.run`: `asyncio.run` on a ferroloop loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._loop import new_event_loop

_T = TypeVar("_T")


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run a coroutine to completion on a new ferroloop loop, like asyncio.run.

    It cancels the tasks left over, shuts down async generators and the
    default executor, and closes the loop; Ctrl-C cancels the main task as
    asyncio.run does.
    """
    if asyncio.events._get_running_loop() is not None:
        # The same check and message as asyncio.run.
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
