"""An event-loop policy for code that still configures asyncio that way.

asyncio deprecated its policy system in 3.14 (removal is planned for 3.16):
`asyncio.DefaultEventLoopPolicy` warns when it is looked up. The class below
derives from the same class through its private name in `unix_events`, which
every supported version has, so importing ferroloop never warns.
"""

from __future__ import annotations

from asyncio import unix_events
from typing import Any

from ._loop import Loop

_DefaultPolicy: Any = getattr(unix_events, "_UnixDefaultEventLoopPolicy")


class EventLoopPolicy(_DefaultPolicy):
    """asyncio's default policy, creating ferroloop loops."""

    _loop_factory = Loop

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__}>"
