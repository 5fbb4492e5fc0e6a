"""The `ferroloop.Loop` class: the Rust core plus asyncio's non-hot glue.

The hot machinery — ready queue, timers, poller, handles, call_soon and
friends, create_task/create_future, add_reader/add_writer and one loop
iteration — lives in Rust (`_ferroloop.BaseEventLoop`). What remains here is
what asyncio specifies in Python and that runs once per call, not once per
callback; most of it is asyncio's own functions of the running interpreter,
bound onto the class by the checked table in `_from_asyncio.py` (the only
place that does so), so their behaviour is asyncio's by construction. What
this file defines itself is ferroloop's: the loop's lifecycle, the native
transports' factories, TLS upgrades, the pidfd child watch and signals.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
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
from typing import TYPE_CHECKING, Any

from . import _ferroloop, _from_asyncio, _subprocess, _transports
from ._selector_view import SelectorView

# Typed as Any: we borrow their functions, including private ones.
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
# 3.14+'s start_tls moves what a StreamReader buffered into the TLS layer
# (gh-142352); read off asyncio's own start_tls, as the fix may be backported.
_START_TLS_TAKES_READER_BUFFER = "_stream_reader" in base_events.BaseEventLoop.start_tls.__code__.co_consts


# Whether this process has made a ferroloop loop: `python -m ferroloop` says
# at exit when the program never did (a framework made its own loop).
_made = False
# `python -m ferroloop --stats` (_stats.py): every loop made, for the report.
_stats_loops: list | None = None


# Our Handle/TimerHandle are Rust types, not subclasses of asyncio's, so the
# scheduling methods' return types differ nominally from typeshed's.
class Loop(_ferroloop.BaseEventLoop, asyncio.AbstractEventLoop):  # type: ignore[misc]
    """An asyncio event loop whose core is written in Rust."""

    if TYPE_CHECKING:
        # Private asyncio methods this class calls, bound from asyncio by
        # `_from_asyncio.bind` below the class (the public ones are typed by
        # AbstractEventLoop).
        _check_running: Any
        _set_coroutine_origin_tracking: Any
        _asyncgen_firstiter_hook: Any
        _asyncgen_finalizer_hook: Any
        _ensure_fd_no_transport: Any
        _make_self_pipe: Any

    def __init__(self) -> None:
        global _made
        _made = True
        if _stats_loops is not None:
            _stats_loops.append(self)
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
        if _subprocess.LOOP_WATCHERS:
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
        self._note_time_source()

    def __repr__(self) -> str:
        return (
            f"<{self.__class__.__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    # --- running ---------------------------------------------------------

    def run_forever(self) -> None:
        self._check_closed()
        self._check_running()
        self._note_time_source()
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
            or type(self)._run_once is not _ferroloop.BaseEventLoop._run_once
        )


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

    @property
    def _selector(self) -> Any:
        # Selector loops have one, and code that inspects it (asyncio's own
        # tests, debugging helpers) gets a read-only view of the poller's
        # registrations; None once closed, as asyncio's.
        return None if self.is_closed() else SelectorView(self)

    # --- networking ----------------------------------------------------------
    # Transports are native (see _transports.py and src/transports/); the
    # orchestration around them — address resolution, happy eyeballs, the
    # Server object, the accept loop and the sock_* operations built on
    # add_reader/add_writer — is asyncio's own code bound below.

    # `context` (3.15): the context every callback of the transport runs
    # in; asyncio's own code passes it from create_connection and Server.
    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None, context=None):
        return _transports._SelectorSocketTransport(self, sock, protocol, waiter, extra, server, context)

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
        return _transports._SelectorDatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return _transports._UnixReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return _transports._UnixWritePipeTransport(self, pipe, protocol, waiter, extra)

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
        _transports._SelectorSocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server, context=context)
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
        if server_side and _START_TLS_TAKES_READER_BUFFER:
            # gh-142352: what a StreamReader buffered before the upgrade
            # (the client's first TLS records) is the TLS layer's to read.
            reader = getattr(protocol, "_stream_reader", None)
            if isinstance(protocol, asyncio.StreamReaderProtocol) and reader is not None and reader._buffer:
                ssl_protocol._incoming.write(reader._buffer)
                reader._buffer.clear()
        transport.set_protocol(ssl_protocol)
        conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
        resume_cb = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            conmade_cb.cancel()
            resume_cb.cancel()
            waiter = None  # no cycle through the exception's frames
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
        watcher = _subprocess.installed_child_watcher(self)
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
        transp = _subprocess.SubprocessTransport(
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
            if exc.errno not in _subprocess.NO_PIDFD:
                raise
            # No pidfd (kernel < 5.3, or a sandbox refusing the call): wait
            # in a thread, as asyncio's ThreadedChildWatcher does.
            threading.Thread(
                target=_subprocess.wait_child_in_thread,
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


# asyncio's own functions: the checked table in _from_asyncio.py.
_from_asyncio.bind(Loop, _ferroloop.BaseEventLoop)


def new_event_loop() -> Loop:
    """Create a new ferroloop event loop."""
    # Networking and subprocess methods are still asyncio's abstract ones.
    return Loop()  # type: ignore[abstract]
