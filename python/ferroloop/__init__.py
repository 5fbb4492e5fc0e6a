"""ferroloop: a drop-in replacement for asyncio's event loop, written in Rust.

    ferroloop.run(main())
    asyncio.run(main(), loop_factory=ferroloop.new_event_loop)   # 3.12+
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as r: ...
"""

from ._ferroloop import Handle, TimerHandle, __version__
from ._loop import Loop, new_event_loop
from ._policy import EventLoopPolicy
from ._run import run

__all__ = [
    "EventLoopPolicy",
    "Handle",
    "Loop",
    "TimerHandle",
    "__version__",
    "new_event_loop",
    "run",
]
