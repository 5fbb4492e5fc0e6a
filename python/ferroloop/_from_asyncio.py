"""What `ferroloop.Loop` takes from asyncio itself: the one checked place.

Loop methods that asyncio specifies in Python and that run once per call,
not once per callback — `run_until_complete`, the exception handler,
executors, DNS, happy eyeballs and the `Server`, the `sock_*` operations
built on add_reader/add_writer, the sendfile fallbacks, signal wiring — are
the running interpreter's own asyncio functions, bound onto Loop. Their
behaviour (messages, ordering, what changed between versions) is then
asyncio's by construction.

`BORROWED` lists them, and `bind` is the only code that binds them. Each
name resolves as asyncio's own Unix loop resolves it (its most derived
definition among `_UnixSelectorEventLoop`, `BaseSelectorEventLoop` and
`BaseEventLoop`); a name this version's asyncio lacks is skipped. `bind`
refuses a name that ferroloop defines itself — a Rust method of the core or
a method of Loop's own body — so a borrowed function can never silently
replace a native one.
"""

from __future__ import annotations

from asyncio import base_events, selector_events, unix_events
from typing import Any

# Most derived first: the order in which asyncio's Unix loop finds a name.
SOURCES: tuple[Any, ...] = (
    getattr(unix_events, "_UnixSelectorEventLoop"),
    selector_events.BaseSelectorEventLoop,
    base_events.BaseEventLoop,
)

BORROWED: dict[str, tuple[str, ...]] = {
    "running": ("run_until_complete", "_check_running"),
    "debug": ("set_debug", "_set_coroutine_origin_tracking", "_check_thread", "_check_callback"),
    "errors": (
        "get_exception_handler", "set_exception_handler", "default_exception_handler",
        "call_exception_handler",
    ),
    "async generators": ("_asyncgen_firstiter_hook", "_asyncgen_finalizer_hook", "shutdown_asyncgens"),
    "executors and DNS": (
        "run_in_executor", "set_default_executor", "shutdown_default_executor", "_do_shutdown",
        "_check_default_executor", "getaddrinfo", "getnameinfo", "_getaddrinfo_debug",
    ),
    "file descriptors": ("_ensure_fd_no_transport",),
    "connections and servers": (
        "create_connection", "_create_connection_transport", "_connect_sock", "_ensure_resolved",
        "create_server", "_create_server_getaddrinfo", "connect_accepted_socket",
        "create_datagram_endpoint", "create_unix_connection", "create_unix_server",
        "_accept_connection", "_accept_connection2",
    ),
    "pipes and subprocesses": (
        "connect_read_pipe", "connect_write_pipe", "subprocess_exec", "subprocess_shell",
        "_log_subprocess", "_child_watcher_callback",
    ),
    "sendfile": (
        "sendfile", "_sendfile_native", "_sendfile_fallback", "sock_sendfile",
        "_sock_sendfile_native", "_sock_sendfile_fallback", "_check_sendfile_params",
        "_sock_sendfile_native_impl", "_sock_sendfile_update_filepos",
        "_sock_add_cancellation_callback",
    ),
    "socket operations": (
        "sock_recv", "_sock_recv", "sock_recv_into", "_sock_recv_into", "sock_recvfrom",
        "_sock_recvfrom", "sock_recvfrom_into", "_sock_recvfrom_into", "sock_sendall",
        "_sock_sendall", "sock_sendto", "_sock_sendto", "sock_connect", "_sock_connect",
        "_sock_connect_cb", "_sock_write_done", "_sock_read_done", "sock_accept", "_sock_accept",
    ),
    "signals": (
        "remove_signal_handler", "_handle_signal", "_check_signal", "_process_self_data",
        "_add_callback_signalsafe", "_make_self_pipe", "_close_self_pipe", "_read_from_self",
        "_write_to_self",
    ),
}  # fmt: skip


def resolve(name: str) -> tuple[Any, Any] | None:
    """(asyncio class, function) that asyncio's Unix loop uses for `name`,
    or None if this version's asyncio has no such method."""
    for source in SOURCES:
        if name in vars(source):
            return source, vars(source)[name]
    return None


def borrowed_names() -> list[str]:
    return [name for names in BORROWED.values() for name in names]


def bind(cls: Any, core: Any) -> None:
    """Binds every borrowed function this asyncio has onto `cls`, a
    subclass of the Rust `core`. Raises TypeError for a name `cls` or
    `core` defines itself."""
    names = borrowed_names()
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise TypeError(f"listed twice in BORROWED: {sorted(dupes)}")
    for name in names:
        found = resolve(name)
        if found is None:
            continue
        owner = cls if name in vars(cls) else core if name in vars(core) else None
        if owner is not None:
            raise TypeError(
                f"{owner.__name__}.{name} is ferroloop's own: binding asyncio's "
                f"{found[0].__name__}.{name} over it would replace it"
            )
        setattr(cls, name, found[1])
