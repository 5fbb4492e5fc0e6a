"""`loop._selector`: a read-only view of what ferroloop's poller watches."""

from __future__ import annotations

import selectors
from typing import Any


class SelectorView:
    """What the poller watches, as a selector's read-only `get_key` and
    `get_map` show it. `data` is asyncio's `(reader, writer)`: the Handle of
    an add_reader/add_writer callback, True for a side watched by a native
    transport or child watch, None for an unwatched side. Registering and
    selecting go through add_reader/add_writer and the Rust poller."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        fd = selectors._fileobj_to_fd(fileobj)  # type: ignore[attr-defined]
        key = self._key(fd)
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        return key

    def get_map(self) -> dict[int, selectors.SelectorKey]:
        keys = ((fd, self._key(fd)) for fd in self._loop._watched_fds())
        return {fd: key for fd, key in keys if key is not None}

    def _key(self, fd: int) -> selectors.SelectorKey | None:
        # `fileobj` is the descriptor: what add_reader/add_writer and the
        # transports register on asyncio's selector too.
        waiters = self._loop._fd_waiters(fd)
        if waiters is None:
            return None
        reader, writer = waiters
        events = (selectors.EVENT_READ if reader is not None else 0) | (
            selectors.EVENT_WRITE if writer is not None else 0
        )
        if not events:
            return None
        return selectors.SelectorKey(fd, fd, events, (reader, writer))
