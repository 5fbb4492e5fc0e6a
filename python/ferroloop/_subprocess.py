"""Subprocesses on ferroloop: the pieces around the pidfd child watch.

asyncio's own Unix subprocess transport starts the process (so every Popen
argument and check is asyncio's); its pipes are native pipe transports, and
its exit is watched by a pidfd in the poller (src/process.rs). What is here:
a transport that can be handed a process already started, which child
watcher asyncio would use instead, and the thread-per-child fallback for
kernels without pidfds.
"""

from __future__ import annotations

import errno
import os
from asyncio import base_events, events, unix_events
from typing import Any

_logger: Any = base_events.logger  # type: ignore[attr-defined]
_unix_events: Any = unix_events

NO_PIDFD = (errno.ENOSYS, errno.EPERM, errno.EACCES)


_UnixSubprocessTransport: Any = getattr(unix_events, "_UnixSubprocessTransport")


class SubprocessTransport(_UnixSubprocessTransport):
    """asyncio's Unix subprocess transport, which may be handed a process
    already started (in a thread, see `_make_subprocess_transport`)."""

    def __init__(self, *args: Any, started: Any = None, **kwargs: Any) -> None:
        self._started = started
        super().__init__(*args, **kwargs)

    def _start(self, *args: Any, **kwargs: Any) -> None:
        if self._started is None:
            super()._start(*args, **kwargs)
        else:
            self._proc, self._started = self._started, None


# 3.14 removed the child-watcher API: a Unix loop owns its `_watcher`.
LOOP_WATCHERS = hasattr(unix_events, "_PidfdChildWatcher")


def installed_child_watcher(loop: Any) -> Any:
    """The child watcher asyncio would use instead of the native pidfd
    watch: on 3.14+ the loop's own `_watcher` unless it is asyncio's pidfd
    watcher (which the native watch reproduces); before 3.14 the watcher set
    on the policy, unless it is one of asyncio's defaults."""
    if LOOP_WATCHERS:
        watcher = getattr(loop, "_watcher", None)
        return None if type(watcher) is _unix_events._PidfdChildWatcher else watcher
    # The private getter: the public one warns from 3.14 on, where policies
    # are deprecated and child watchers are gone (so this finds none).
    policy = getattr(events, "_get_event_loop_policy", events.get_event_loop_policy)()
    watcher = getattr(policy, "_watcher", None)
    defaults = tuple(
        getattr(unix_events, name)
        for name in ("ThreadedChildWatcher", "PidfdChildWatcher")
        if hasattr(unix_events, name)
    )
    if watcher is None or type(watcher) in defaults:
        return None
    return watcher


def wait_child_in_thread(loop: Any, pid: int, callback: Any) -> None:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        # Reaped by someone else: asyncio reports 255 and warns.
        returncode = 255
        _logger.warning("Unknown child process pid %d, will report returncode 255", pid)
    else:
        returncode = os.waitstatus_to_exitcode(status)
    try:
        loop.call_soon_threadsafe(callback, returncode)
    except RuntimeError:
        pass  # the loop was closed meanwhile, as with asyncio's watcher
