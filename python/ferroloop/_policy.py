"""An event-loop policy for code that still configures asyncio that way."""

from __future__ import annotations

import asyncio

from ._loop import Loop


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy, creating ferroloop loops."""

    _loop_factory = Loop

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__}>"
