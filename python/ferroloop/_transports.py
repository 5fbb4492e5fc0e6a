"""The Python faces of ferroloop's native transports.

asyncio's transport classes have a C layout (`__slots__`) that a Rust class
cannot share, yet libraries check `isinstance(t, asyncio.Transport)` and
probe a few of asyncio's attributes (`_sock`, `_loop`, `_protocol`). So each
transport is this thin subclass holding a Rust core: every method forwards
to the core, which owns the socket I/O, the buffers and the protocol calls.
Like asyncio's own transports they have an instance __dict__, because code
and tests patch methods on transport instances.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
import warnings
from asyncio import base_events, constants, sslproto, trsock
from typing import Any

from . import _ferroloop

# 3.13's Server tracks its transports: _attach(transport)/_detach(transport).
_SERVER_TAKES_TRANSPORT = sys.version_info >= (3, 13)
_set_nodelay: Any = getattr(base_events, "_set_nodelay")
_set_result_unless_cancelled: Any = getattr(asyncio.futures, "_set_result_unless_cancelled")


# _FlowControlMixin, not just Transport: asyncio's sendfile fallback
# insists on it. Its water-mark slots stay unused; the core keeps the marks.
_FlowControlMixin: Any = getattr(asyncio.transports, "_FlowControlMixin")


class _SelectorTransport(_FlowControlMixin):
    """What the stream and datagram transports share: the repr, the
    unclosed-transport warning, asyncio's private attributes and the
    methods that forward to the core unchanged. Named as asyncio's
    `selector_events._SelectorTransport`, its counterpart, so that handles
    of its methods (`_call_connection_lost`) read as asyncio's do."""

    _core: Any = None

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        core = self._core
        if not core._sock_open:
            info.append("closed")
        elif core.is_closing():
            info.append("closing")
        info.append(f"fd={core._sock_fd}")
        if self._loop is not None and not self._loop.is_closed():
            reading, writing, size = core._state
            info.append("read=polling" if reading else "read=idle")
            info.append(f"write=<{'polling' if writing else 'idle'}, bufsize={size}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn) -> None:
        core = self._core
        if core is not None and core._sock_open:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            core._close_unclosed()

    @property
    def _protocol(self):
        return self._core.get_protocol()

    @property
    def _protocol_paused(self) -> bool:
        return self._core._protocol_paused

    @property
    def _closing(self) -> bool:
        return self._core.is_closing()

    @property
    def _conn_lost(self) -> int:
        return self._core._conn_lost

    @property
    def _sock_fd(self) -> int:
        return self._core._sock_fd

    def close(self) -> None:
        self._core.close()

    def abort(self) -> None:
        self._core.abort()

    def is_closing(self) -> bool:
        return self._core.is_closing()

    def is_reading(self) -> bool:
        return self._core.is_reading()

    def pause_reading(self) -> None:
        self._core.pause_reading()

    def resume_reading(self) -> None:
        self._core.resume_reading()

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self._core.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[Any, Any]:
        return self._core.get_write_buffer_limits()

    def get_write_buffer_size(self) -> int:
        return self._core.get_write_buffer_size()

    def set_protocol(self, protocol) -> None:
        self._core.set_protocol(protocol)

    def get_protocol(self):
        return self._core.get_protocol()

    def _fatal_error(self, exc, message="Fatal error on transport") -> None:
        self._core._fatal_error(exc, message)

    # Scheduled by the constructor: the handle holds the transport until
    # reading starts, as asyncio's `_add_reader` handle does, so a transport
    # nobody else holds yet (a just-accepted one) is not collected first.
    def _start_reading(self) -> None:
        self._core._start_reading()

    def _call_connection_lost(self, exc) -> None:
        self._core._call_connection_lost(exc)


class _SelectorSocketTransport(_SelectorTransport):
    """A TCP or Unix stream transport. Its socket object, `sockname` and
    `peername` are kept by the core and made into Python objects only when
    asked for (`get_extra_info`, `_sock`, `_extra`). Named as asyncio's
    class, as are the other transports here: reprs, and the handles of
    their methods in error reports, read as asyncio's do."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None, context=None):
        self._loop = loop
        self._server = server
        _set_nodelay(sock)
        self._core = _ferroloop.StreamTransport(
            loop, sock, protocol, self, server, _SERVER_TAKES_TRANSPORT, extra, context
        )
        self._attach_to(server)
        loop._transports[sock.fileno()] = self
        self._core._start(waiter)

    def _attach_to(self, server) -> None:
        # 3.13's Server tracks its transports; earlier ones count them.
        if server is not None:
            if _SERVER_TAKES_TRANSPORT:
                server._attach(self)
            else:
                server._attach()

    def get_extra_info(self, name, default=None):
        return self._core.get_extra_info(name, default)

    @property
    def _paused(self) -> bool:
        return self._core._paused

    @property  # type: ignore[override]
    def _extra(self) -> dict:
        return self._core._extra

    @property
    def _sock(self):
        return self._core._sock

    def write(self, data) -> None:
        self._core.write(data)

    if sys.version_info >= (3, 12):

        def writelines(self, list_of_data) -> None:
            self._core.writelines(list_of_data)

    else:
        # 3.11's is asyncio.WriteTransport's: join, then write().
        def writelines(self, list_of_data) -> None:
            self._core.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self._core.write_eof()

    def can_write_eof(self) -> bool:
        return True

    # What the loop runs when the socket is ready (a handle's callback in
    # asyncio, so error reports name it): defined here, not on the base, for
    # the class name in that report.
    def _read_ready(self) -> None:
        self._core._read_ready()

    def _write_ready(self) -> None:
        self._core._write_ready()

    def _force_close(self, exc) -> None:
        self._core._force_close(exc)

    # asyncio's stream transport overrides this one: the handle that runs
    # it is named `_SelectorSocketTransport._call_connection_lost`.
    def _call_connection_lost(self, exc) -> None:
        self._core._call_connection_lost(exc)

    def _make_empty_waiter(self):
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self) -> None:
        self._core._reset_empty_waiter()


def accepted(loop, core, server) -> _SelectorSocketTransport:
    """The transport of a connection the native accept loop took
    (src/transports/server.rs): `_SelectorSocketTransport.__init__` for a core the
    loop already made."""
    self = _SelectorSocketTransport.__new__(_SelectorSocketTransport)
    self._loop = loop
    self._server = server
    self._core = core
    core._set_face(self)
    self._attach_to(server)
    core._start(None)
    return self


class _SelectorDatagramTransport(_SelectorTransport, asyncio.DatagramTransport):
    """A UDP or Unix datagram transport."""

    def _init_extra(self, loop, sock, extra) -> None:
        asyncio.BaseTransport.__init__(self, extra)
        self._extra["socket"] = trsock.TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._loop = loop
        self._sock = sock

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        self._init_extra(loop, sock, extra)
        self._address = address
        native = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._core = _ferroloop.DatagramTransport(
            loop, sock, protocol, self, address, bool(self._extra["peername"]),
            native, sock.family == socket.AF_INET6, sys.version_info >= (3, 13),
        )
        loop._transports[sock.fileno()] = self
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def sendto(self, data, addr=None) -> None:
        self._core.sendto(data, addr)

    def _read_ready(self) -> None:
        self._core._read_ready()

    def _write_ready(self) -> None:
        self._core._write_ready()


def _check_pipe(fileno: int, message: str) -> int:
    """asyncio's check: pipe transports are for pipes, sockets and character
    devices. Returns the mode."""
    mode = os.fstat(fileno).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        raise ValueError(message)
    return mode


class _UnixReadPipeTransport(asyncio.ReadTransport):
    """The read end of a pipe, FIFO, character device or PTY."""


    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        super().__init__(extra)
        self._extra["pipe"] = pipe
        self._loop = loop
        self._pipe = None
        fileno = pipe.fileno()
        _check_pipe(fileno, "Pipe transport is for pipes/sockets only.")
        os.set_blocking(fileno, False)
        self._pipe = pipe
        self._fileno = fileno
        self._core = _ferroloop.ReadPipeTransport(loop, pipe, protocol, self)
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._core.is_closing():
            info.append("closing")
        info.append(f"fd={self._fileno}")
        # What asyncio's pipe transports show on a loop without a selector.
        info.append("open" if self._pipe is not None else "closed")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn) -> None:
        if self._pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def _start_reading(self) -> None:  # scheduled: holds the transport until then
        self._core._start_reading()

    # What the loop runs when the pipe is readable, as in asyncio: the
    # `handle` of the report when data_received() raises.
    def _read_ready(self) -> None:
        self._core._read_ready()

    @property
    def _protocol(self):
        return self._core.get_protocol()

    @property
    def _closing(self) -> bool:
        return self._core.is_closing()

    def is_reading(self) -> bool:
        return self._core.is_reading()

    def pause_reading(self) -> None:
        self._core.pause_reading()

    def resume_reading(self) -> None:
        self._core.resume_reading()

    def set_protocol(self, protocol) -> None:
        self._core.set_protocol(protocol)

    def get_protocol(self):
        return self._core.get_protocol()

    def is_closing(self) -> bool:
        return self._core.is_closing()

    def close(self) -> None:
        self._core.close()

    def _fatal_error(self, exc, message="Fatal error on pipe transport") -> None:
        self._core._fatal_error(exc, message)

    def _call_connection_lost(self, exc) -> None:
        self._core._call_connection_lost(exc)


class _UnixWritePipeTransport(_FlowControlMixin, asyncio.WriteTransport):
    """The write end of a pipe, FIFO, character device or PTY."""


    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        asyncio.BaseTransport.__init__(self, extra)
        self._extra["pipe"] = pipe
        self._loop = loop
        self._pipe = None
        fileno = pipe.fileno()
        mode = _check_pipe(fileno, "Pipe transport is only for pipes, sockets and character devices")
        os.set_blocking(fileno, False)
        self._pipe = pipe
        self._fileno = fileno
        # A readable FIFO or socket end means the reader went away.
        watch = stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode)
        self._core = _ferroloop.WritePipeTransport(loop, pipe, protocol, self, watch)
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_watching)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._core.is_closing():
            info.append("closing")
        info.append(f"fd={self._fileno}")
        # What asyncio's pipe transports show on a loop without a selector.
        info.append("open" if self._pipe is not None else "closed")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn) -> None:
        if self._pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def _start_watching(self) -> None:  # scheduled: holds the transport until then
        self._core._start_watching()

    @property
    def _protocol(self):
        return self._core.get_protocol()

    @property
    def _protocol_paused(self) -> bool:
        return self._core._protocol_paused

    @property
    def _closing(self) -> bool:
        return self._core.is_closing()

    @property
    def _conn_lost(self) -> int:
        return self._core._conn_lost

    def write(self, data) -> None:
        # asyncio's `assert isinstance(...), repr(data)`, spelt out: pytest
        # rewrites the asserts of a package that installs a pytest plugin,
        # which would change this message under pytest.
        if __debug__ and not isinstance(data, (bytes, bytearray, memoryview)):
            raise AssertionError(repr(data))
        self._core.write(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._core.write_eof()

    def close(self) -> None:
        self._core.close()

    def abort(self) -> None:
        if self._loop is None:
            # Once connection_lost() has run, asyncio's abort() reaches for
            # `self._loop._remove_reader` on the loop it has let go of.
            raise AttributeError("'NoneType' object has no attribute '_remove_reader'")
        self._core.abort()

    def is_closing(self) -> bool:
        return self._core.is_closing()

    def set_protocol(self, protocol) -> None:
        self._core.set_protocol(protocol)

    def get_protocol(self):
        return self._core.get_protocol()

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self._core.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._core.get_write_buffer_limits()

    def get_write_buffer_size(self) -> int:
        return self._core.get_write_buffer_size()

    def _fatal_error(self, exc, message="Fatal error on pipe transport") -> None:
        self._core._fatal_error(exc, message)

    def _call_connection_lost(self, exc) -> None:
        self._core._call_connection_lost(exc)


class SSLProtocol(_ferroloop.TlsProtocol, asyncio.BufferedProtocol):
    """asyncio's SSLProtocol, natively (src/transports/tls/): the TLS
    layer between a stream transport and the application's protocol. A
    BufferedProtocol, as asyncio's is, for transports that are not
    ferroloop's; under ferroloop's own stream transport the ciphertext
    goes straight from the socket into OpenSSL. Weak references and an
    instance dict, as asyncio's has."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._get_app_transport()


_SSLProtocolTransport: Any = getattr(sslproto, "_SSLProtocolTransport")


class SSLTransport(_SSLProtocolTransport):
    """The application's side of a TLS connection: asyncio's own
    _SSLProtocolTransport (every method forwards to `_ssl_protocol`, here
    the native SSLProtocol), with the write path shortened."""

    def write(self, data) -> None:
        self._ssl_protocol._write(data)

    def _test__append_write_backlog(self, data) -> None:
        # for asyncio's tests only
        self._ssl_protocol._test__append_write_backlog(data)
