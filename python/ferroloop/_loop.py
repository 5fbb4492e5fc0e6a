"""The `ferroloop.Loop` class: the Rust core plus asyncio's non-hot glue.

The hot machinery — ready queue, timers, poller, handles, call_soon and
friends, create_task/create_future, add_reader/add_writer and one loop
iteration — lives in Rust (`_ferroloop.LoopCore`). What remains here is
orchestration asyncio specifies in Python and that runs once per
`run_until_complete` or once per error, not once per callback: the exception
handler, executors, async-generator hooks, DNS through the executor and
signal wiring. For those we bind *asyncio's own functions* of the running
interpreter to our class, so their behaviour (messages, ordering, version
differences between 3.11 and 3.13) is asyncio's by construction.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import os
import selectors
import subprocess
import sys
import threading
import time
import warnings
import weakref

try:
    import ssl
except ImportError:  # pragma: no cover - CPython built without OpenSSL
    ssl = None  # type: ignore[assignment]
from asyncio import base_events, constants, events, selector_events, unix_events
from typing import Any

from . import _ferroloop, _transports

# Typed as Any: we borrow their functions, including private ones.
_Base: Any = base_events.BaseEventLoop
_Selector: Any = selector_events.BaseSelectorEventLoop
_Unix: Any = unix_events._UnixSelectorEventLoop
_logger: Any = base_events.logger  # type: ignore[attr-defined]

# asyncio's debug mode is on with PYTHONASYNCIODEBUG or `python -X dev`.
_is_debug_mode: Any = getattr(asyncio.coroutines, "_is_debug_mode")
# unix_events as Any: its 3.14+ private names are not in every typeshed.
_unix_events: Any = unix_events
# 3.15's socket transports run every callback in a context that asyncio's
# create_connection and Server hand to _make_socket_transport and
# _start_serving; its _accept_connection takes it as a last argument.
_TRANSPORTS_TAKE_CONTEXT = "context" in inspect.signature(_Selector._make_socket_transport).parameters


# Our Handle/TimerHandle are Rust types, not subclasses of asyncio's, so the
# scheduling methods' return types differ nominally from typeshed's.
class Loop(_ferroloop.LoopCore, asyncio.AbstractEventLoop):  # type: ignore[misc]
    """An asyncio event loop whose core is written in Rust."""

    def __init__(self) -> None:
        self._signal_handlers: dict = {}
        self._ssock = self._csock = None
        self._internal_fds = 0
        # 3.13's create_unix_server records socket inodes here for cleanup.
        self._unix_server_sockets: dict[Any, int] = {}
        self._default_executor = None
        self._executor_shutdown_called = False
        self._exception_handler = None
        self._asyncgens: weakref.WeakSet[Any] = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        if _LOOP_WATCHERS:
            # 3.14+: each Unix loop has its child watcher, chosen as asyncio
            # chooses it. Its pidfd watcher is served natively (see
            # _make_subprocess_transport); a threaded or replaced one is
            # asyncio's path.
            self._watcher = (
                _unix_events._PidfdChildWatcher()
                if _unix_events.can_use_pidfd()
                else _unix_events._ThreadedChildWatcher()
            )
        self.set_debug(_is_debug_mode())

    def __repr__(self) -> str:
        return (
            f"<{self.__class__.__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    # --- running ---------------------------------------------------------

    def run_forever(self) -> None:
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            if self._run_once_overridden():
                while True:
                    self._run_once()
                    if self._stopping:
                        break
            else:
                self._run_until_stopped()
        finally:
            self._stopping = False
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def _run_once_overridden(self) -> bool:
        # Code that wraps or replaces `_run_once` (nest_asyncio, test
        # harnesses counting iterations) must see every iteration go through
        # it; otherwise the whole loop stays in Rust.
        return (
            "_run_once" in self.__dict__
            or type(self)._run_once is not _ferroloop.LoopCore._run_once
        )

    run_until_complete = _Base.run_until_complete
    _check_running = _Base._check_running

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._debug:
            _logger.debug("Close %r", self)
        if self._ssock is not None:
            self._close_self_pipe()
        self._close_core()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)
        if not sys.is_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers:
            warnings.warn(
                f"Closing the loop {self!r} on interpreter shutdown stage, "
                "skipping signal handlers removal",
                ResourceWarning,
                source=self,
            )
            self._signal_handlers.clear()

    def __del__(self, _warn=warnings.warn) -> None:
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    # --- debug -------------------------------------------------------------

    set_debug = _Base.set_debug
    _set_coroutine_origin_tracking = _Base._set_coroutine_origin_tracking
    _check_thread = _Base._check_thread
    _check_callback = _Base._check_callback

    # --- errors ------------------------------------------------------------

    get_exception_handler = _Base.get_exception_handler
    set_exception_handler = _Base.set_exception_handler
    default_exception_handler = _Base.default_exception_handler
    call_exception_handler = _Base.call_exception_handler

    # --- async generators ----------------------------------------------------

    _asyncgen_firstiter_hook = _Base._asyncgen_firstiter_hook
    _asyncgen_finalizer_hook = _Base._asyncgen_finalizer_hook
    shutdown_asyncgens = _Base.shutdown_asyncgens

    # --- executors and DNS ---------------------------------------------------

    run_in_executor = _Base.run_in_executor
    set_default_executor = _Base.set_default_executor
    shutdown_default_executor = _Base.shutdown_default_executor
    if hasattr(_Base, "_do_shutdown"):
        _do_shutdown = _Base._do_shutdown
    if hasattr(_Base, "_check_default_executor"):
        _check_default_executor = _Base._check_default_executor
    getaddrinfo = _Base.getaddrinfo
    getnameinfo = _Base.getnameinfo
    _getaddrinfo_debug = _Base._getaddrinfo_debug

    # --- file descriptors --------------------------------------------------

    def add_reader(self, fd: Any, callback: Any, *args: Any) -> None:  # type: ignore[override]
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd: Any) -> bool:
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd: Any, callback: Any, *args: Any) -> None:  # type: ignore[override]
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd: Any) -> bool:
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)

    _ensure_fd_no_transport = _Selector._ensure_fd_no_transport

    @property
    def _selector(self) -> Any:
        # Selector loops have one, and code that inspects it (asyncio's own
        # tests, debugging helpers) gets a read-only view of the poller's
        # registrations; None once closed, as asyncio's.
        return None if self.is_closed() else _SelectorView(self)

    # --- networking ----------------------------------------------------------
    # Transports are native (see _transports.py and src/transports/); the
    # orchestration around them — address resolution, happy eyeballs, the
    # Server object, the accept loop and the sock_* operations built on
    # add_reader/add_writer — is asyncio's own code bound below.

    # `context` (3.15): the context every callback of the transport runs
    # in; asyncio's own code passes it from create_connection and Server.
    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None, context=None):
        return _transports.SocketTransport(self, sock, protocol, waiter, extra, server, context)

    def _start_serving(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
        context=None,
    ) -> None:
        # Servers without TLS accept natively (src/transports/server.rs):
        # asyncio's _accept_connection and per-connection task, in Rust.
        # TLS servers, and loops whose accept path or transport factory was
        # replaced, take asyncio's own. `context` is 3.15's (the Server's).
        if not sslcontext and not self._accept_path_overridden():
            _ferroloop.serve(
                self, sock, protocol_factory, server, backlog, ssl_handshake_timeout,
                ssl_shutdown_timeout, _transports._SERVER_TAKES_TRANSPORT, _transports.accepted,
                context,
            )  # fmt: skip
            return
        args: tuple[Any, ...] = (
            protocol_factory, sock, sslcontext, server, backlog, ssl_handshake_timeout, ssl_shutdown_timeout,
        )  # fmt: skip
        if _TRANSPORTS_TAKE_CONTEXT:
            args += (context,)
        self._add_reader(sock.fileno(), getattr(self, "_accept_connection"), *args)

    def _accept_path_overridden(self) -> bool:
        cls = type(self)
        return any(
            name in self.__dict__ or getattr(cls, name) is not getattr(Loop, name)
            for name in ("_accept_connection", "_accept_connection2", "_make_socket_transport")
        )

    def _stop_serving(self, sock: Any) -> None:
        # asyncio's (3.13) Unix-loop version; on 3.11/3.12 nothing is ever
        # recorded in _unix_server_sockets and this is the selector one.
        path = sock.getsockname() if sock in self._unix_server_sockets else None
        self._remove_reader(sock.fileno())
        sock.close()
        if path is not None:
            prev_ino = self._unix_server_sockets.pop(sock)
            try:
                if os.stat(path).st_ino == prev_ino:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                _logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        return _transports.DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return _transports.ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return _transports.WritePipeTransport(self, pipe, protocol, waiter, extra)

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
        context=None,
    ):
        # The TLS layer is native (src/transports/tls/), asyncio's
        # SSLProtocol state machine over the user's SSLContext.
        self._ensure_fd_no_transport(rawsock)
        ssl_protocol = _transports.SSLProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        _transports.SocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server, context=context)
        return ssl_protocol._app_transport

    async def start_tls(
        self,
        transport,
        protocol,
        sslcontext,
        *,
        server_side=False,
        server_hostname=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        """Upgrade transport to TLS: asyncio's, with the native TLS layer."""
        if ssl is None:
            raise RuntimeError("Python ssl module is not available")
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
            )
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        ssl_protocol = _transports.SSLProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False,
        )
        # Paused first, so that no data reaches the TLS layer before its
        # connection_made() (asyncio's order).
        transport.pause_reading()
        transport.set_protocol(ssl_protocol)
        conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
        resume_cb = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            conmade_cb.cancel()
            resume_cb.cancel()
            raise
        return ssl_protocol._app_transport

    # --- subprocesses ------------------------------------------------------
    # The process is started by asyncio's _UnixSubprocessTransport (so every
    # Popen argument and check is asyncio's), its pipes are native pipe
    # transports, and its exit is watched by a pidfd in the poller
    # (src/process.rs): no thread per child, and only that child is reaped.
    # A child watcher the user installed on the policy is honoured instead,
    # as asyncio honours it.

    async def _make_subprocess_transport(
        self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
    ):
        watcher = _installed_child_watcher(self)
        if watcher is not None:
            return await _Unix._make_subprocess_transport(
                self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra, **kwargs
            )
        proc = None
        if kwargs.get("preexec_fn") is not None:
            # Popen waits until the child has run preexec_fn and exec'd; a
            # slow preexec_fn would stall every other task for that long,
            # so the process is started in a thread.
            spawning = self.run_in_executor(
                None,
                functools.partial(
                    subprocess.Popen, args, shell=shell, stdin=stdin, stdout=stdout,
                    stderr=stderr, universal_newlines=False, bufsize=bufsize, **kwargs,
                ),
            )  # fmt: skip
            try:
                proc = await asyncio.shield(spawning)
            except asyncio.CancelledError:
                # The thread may still start it: then it is nobody's.
                spawning.add_done_callback(self._discard_started_process)
                raise
        waiter = self.create_future()
        transp = _SubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, started=proc, **kwargs,
        )  # fmt: skip
        self._watch_child(transp.get_pid(), transp._process_exited)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _discard_started_process(self, spawning: Any) -> None:
        if spawning.cancelled() or spawning.exception() is not None:
            return
        proc = spawning.result()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.kill()
        self._watch_child(proc.pid, functools.partial(setattr, proc, "returncode"))

    def _watch_child(self, pid: int, callback: Any) -> None:
        try:
            _ferroloop.watch_child(self, pid, callback)
        except OSError as exc:
            if exc.errno not in _NO_PIDFD:
                raise
            # No pidfd (kernel < 5.3, or a sandbox refusing the call): wait
            # in a thread, as asyncio's ThreadedChildWatcher does.
            threading.Thread(
                target=_wait_child_in_thread,
                args=(self, pid, callback),
                name=f"ferroloop-waitpid-{pid}",
                daemon=True,
            ).start()

    # --- signals -----------------------------------------------------------
    # Signal numbers arrive through `signal.set_wakeup_fd` on a socket pair
    # watched by the poller, exactly as in asyncio's Unix loop. The pair is
    # made on first use rather than for every loop.

    def add_signal_handler(self, sig: int, callback: Any, *args: Any) -> None:  # type: ignore[override]
        if self._ssock is None and not self.is_closed():
            self._make_self_pipe()
        _Unix.add_signal_handler(self, sig, callback, *args)

    remove_signal_handler = _Unix.remove_signal_handler
    _handle_signal = _Unix._handle_signal
    _check_signal = _Unix._check_signal
    _process_self_data = _Unix._process_self_data
    _add_callback_signalsafe = _Base._add_callback_signalsafe
    _make_self_pipe = _Selector._make_self_pipe
    _close_self_pipe = _Selector._close_self_pipe
    _read_from_self = _Selector._read_from_self
    _write_to_self = _Selector._write_to_self


_NO_PIDFD = (errno.ENOSYS, errno.EPERM, errno.EACCES)


_UnixSubprocessTransport: Any = getattr(unix_events, "_UnixSubprocessTransport")


class _SubprocessTransport(_UnixSubprocessTransport):
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


class _SelectorView:
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


# 3.14 removed the child-watcher API: a Unix loop owns its `_watcher`.
_LOOP_WATCHERS = hasattr(unix_events, "_PidfdChildWatcher")


def _installed_child_watcher(loop: Any) -> Any:
    """The child watcher asyncio would use instead of the native pidfd
    watch: on 3.14+ the loop's own `_watcher` unless it is asyncio's pidfd
    watcher (which the native watch reproduces); before 3.14 the watcher set
    on the policy, unless it is one of asyncio's defaults."""
    if _LOOP_WATCHERS:
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


def _wait_child_in_thread(loop: Any, pid: int, callback: Any) -> None:
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


def _borrow(cls: Any, source: Any, names: str) -> None:
    """Binds asyncio's functions `names` of `source` to `cls`, skipping the
    ones this Python version does not have."""
    for name in names.split():
        if name in vars(source):
            setattr(cls, name, vars(source)[name])


_borrow(
    Loop,
    _Base,
    "create_connection _create_connection_transport _connect_sock _ensure_resolved "
    "create_server _create_server_getaddrinfo connect_accepted_socket "
    "create_datagram_endpoint start_tls "
    "connect_read_pipe connect_write_pipe subprocess_exec subprocess_shell _log_subprocess "
    "sendfile _sendfile_native _sendfile_fallback sock_sendfile "
    "_sock_sendfile_native _sock_sendfile_fallback _check_sendfile_params",
)
_borrow(
    Loop,
    _Selector,
    "_accept_connection _accept_connection2 "
    "sock_recv _sock_recv sock_recv_into _sock_recv_into sock_recvfrom _sock_recvfrom "
    "sock_recvfrom_into _sock_recvfrom_into sock_sendall _sock_sendall sock_sendto "
    "_sock_sendto sock_connect _sock_connect _sock_connect_cb _sock_write_done "
    "_sock_read_done sock_accept _sock_accept _sendfile_native",
)
_borrow(
    Loop,
    _Unix,
    "create_unix_connection create_unix_server _sock_sendfile_native "
    "_child_watcher_callback "
    "_sock_sendfile_native_impl _sock_sendfile_update_filepos "
    "_sock_add_cancellation_callback",
)


def new_event_loop() -> Loop:
    """Create a new ferroloop event loop."""
    # Networking and subprocess methods are still asyncio's abstract ones.
    return Loop()  # type: ignore[abstract]
