"""Transports given odd values, and what asyncio makes of them: a
non-contiguous memoryview, an unhashable extra-info key, a read-only buffer
from `get_buffer()`, a factory that returns no protocol — and the handle
reprs that name the transport's methods."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import socket
import sys
import warnings

import pytest
from _net import close_all, no_fd_leak, tcp_pair  # noqa: F401
from conftest import run

pytestmark = pytest.mark.usefixtures("no_fd_leak")

TIMEOUT = 10
NON_CONTIGUOUS = "memoryview: underlying buffer is not C-contiguous"


def view():
    """A memoryview of b"aceg" whose items are not adjacent."""
    v = memoryview(b"abcdefgh")[::2]
    assert not v.c_contiguous
    return v


async def wait_until(pred, timeout=TIMEOUT):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


class Recorder(asyncio.Protocol):
    def __init__(self):
        self.data = b""
        self.lost = "not yet"

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data

    def datagram_received(self, data, addr):
        self.data += data

    def error_received(self, exc):
        pass

    def connection_lost(self, exc):
        self.lost = exc


def fatal_errors(loop):
    """Collects the exception handler's (message, exception) pairs."""
    seen = []
    loop.set_exception_handler(lambda _, ctx: seen.append((ctx["message"], ctx.get("exception"))))
    return seen


def assert_fatal(seen, proto, message):
    ((msg, exc),) = seen
    assert msg == message
    assert type(exc) is BufferError and str(exc) == NON_CONTIGUOUS
    assert proto.lost is exc


# --- a non-contiguous memoryview ------------------------------------------------------------


def test_stream_write_of_a_non_contiguous_view_is_a_fatal_write_error(loop):
    """socket.send() refuses the view: asyncio's `_fatal_error`."""
    seen = fatal_errors(loop)

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, Recorder, Recorder)
        ct.write(view())
        await wait_until(lambda: cp.lost != "not yet" and sp.lost != "not yet")
        assert_fatal(seen, cp, "Fatal write error on socket transport")
        assert sp.data == b""
        await close_all(st, ct, server)

    run(loop, main())


def test_stream_write_of_a_non_contiguous_view_behind_a_queued_write(loop):
    """3.11 adds it to a bytearray, which raises; 3.12+ queues it and the
    vectored send fails: a fatal error either way, nothing of it sent."""
    seen = fatal_errors(loop)

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, Recorder, Recorder)
        ct.write(b"x" * (16 * 1024 * 1024))  # more than the socket takes
        assert ct.get_write_buffer_size() > 0
        if sys.version_info < (3, 12):
            with pytest.raises(TypeError, match="^can't set bytearray slice from memoryview$"):
                ct.write(view())
            assert seen == []
        else:
            ct.write(view())
            await wait_until(lambda: cp.lost != "not yet")
            assert_fatal(seen, cp, "Fatal write error on socket transport")
        await close_all(st, ct, server)

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="3.11's writelines joins the items")
def test_stream_writelines_with_a_non_contiguous_view_sends_nothing(loop):
    seen = fatal_errors(loop)

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, Recorder, Recorder)
        ct.writelines([b"head", view(), b"tail"])
        await wait_until(lambda: cp.lost != "not yet" and sp.lost != "not yet")
        assert_fatal(seen, cp, "Fatal write error on socket transport")
        assert sp.data == b""
        await close_all(st, ct, server)

    run(loop, main())


def test_pipe_write_of_a_non_contiguous_view_is_a_fatal_write_error(loop):
    seen = fatal_errors(loop)
    r, w = os.pipe()

    async def main():
        t, p = await loop.connect_write_pipe(Recorder, open(w, "wb", 0))
        t.write(view())
        await wait_until(lambda: p.lost != "not yet")
        assert_fatal(seen, p, "Fatal write error on pipe transport")
        assert t.is_closing()

    try:
        run(loop, main())
    finally:
        os.close(r)


def test_pipe_write_of_a_non_contiguous_view_behind_a_queued_write(loop):
    """`self._buffer += data` refuses it: a TypeError from write()."""
    seen = fatal_errors(loop)
    r, w = os.pipe()

    async def main():
        t, p = await loop.connect_write_pipe(Recorder, open(w, "wb", 0))
        t.write(b"x" * (4 * 1024 * 1024))  # more than a pipe holds
        assert t.get_write_buffer_size() > 0
        with pytest.raises(TypeError, match="^can't concat memoryview to bytearray$"):
            t.write(view())
        assert seen == [] and p.lost == "not yet"
        t.abort()
        await wait_until(lambda: p.lost != "not yet")

    try:
        run(loop, main())
    finally:
        os.close(r)


def test_sendto_of_a_non_contiguous_view_is_a_fatal_write_error(loop):
    seen = fatal_errors(loop)

    async def main():
        peer, pp = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        t, p = await loop.create_datagram_endpoint(
            Recorder, remote_addr=peer.get_extra_info("sockname")
        )
        t.sendto(view())
        await wait_until(lambda: p.lost != "not yet")
        assert_fatal(seen, p, "Fatal write error on datagram transport")
        peer.close()
        await wait_until(lambda: pp.lost != "not yet")

    run(loop, main())


# --- extra info -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [[], {}], ids=["list", "dict"])
def test_an_unhashable_extra_info_key_is_a_type_error(loop, key):
    """asyncio looks the key up in a dict, which hashes it (3.15's dict
    words the error differently: the running Python's words are expected)."""
    with pytest.raises(TypeError) as dict_error:
        {}.get(key)
    message = f"^{re.escape(str(dict_error.value))}$"
    r, w = os.pipe()

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, Recorder, Recorder)
        udp, _ = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        rt, _ = await loop.connect_read_pipe(Recorder, open(r, "rb", 0))
        wt, _ = await loop.connect_write_pipe(Recorder, open(w, "wb", 0))
        for t in (st, ct, udp, rt, wt):
            with pytest.raises(TypeError, match=message):
                t.get_extra_info(key)
            with pytest.raises(TypeError, match=message):
                t.get_extra_info(key, "default")
        await close_all(st, ct, server, udp, rt, wt)

    run(loop, main())


# --- get_buffer() ---------------------------------------------------------------------------


class ReadOnly(bytes):
    pass


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, buf):
        self.buf = buf
        self.lost = "not yet"

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        pass

    def connection_lost(self, exc):
        self.lost = exc


@pytest.mark.parametrize("buf", [b"abc", ReadOnly(b"abc"), memoryview(b"abc")], ids=["bytes", "subclass", "memoryview"])
def test_a_read_only_buffer_is_a_fatal_read_error_in_recv_intos_words(loop, buf):
    seen = fatal_errors(loop)
    name = type(buf).__name__

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, lambda: Buffered(buf), Recorder)
        st.write(b"data")
        await wait_until(lambda: cp.lost != "not yet")
        ((msg, exc),) = seen
        assert msg == "Fatal read error on socket transport"
        assert type(exc) is TypeError
        assert str(exc) == f"recv_into() argument 1 must be read-write bytes-like object, not {name}"
        await close_all(st, ct, server)

    run(loop, main())


# --- handles that name the transport's methods -------------------------------------------


class FailsWhenLost(Recorder):
    def connection_lost(self, exc):
        raise ZeroDivisionError("in connection_lost")


@pytest.mark.parametrize(
    "kind, owner", [("tcp", "_SelectorSocketTransport"), ("udp", "_SelectorTransport")]
)
def test_connection_lost_handle_reads_as_asyncios(loop, kind, owner):
    """asyncio's handle names the class that defines the method."""
    handles = []
    loop.set_exception_handler(lambda _, ctx: handles.append(ctx.get("handle")))

    async def main():
        if kind == "tcp":
            st, sp, t, p, server = await tcp_pair(loop, FailsWhenLost, Recorder)
        else:
            t, p = await loop.create_datagram_endpoint(FailsWhenLost, local_addr=("127.0.0.1", 0))
        t.close()
        await wait_until(lambda: handles)
        # (3.15's reprs leave out an argument that is None.)
        assert repr(handles[0]).startswith(f"<Handle {owner}._call_connection_lost(")
        if kind == "tcp":
            await close_all(st, server)

    run(loop, main())


# --- a factory that makes no protocol ----------------------------------------------------------


def test_a_factory_returning_no_protocol_is_reported_in_debug_mode(loop):
    """asyncio fails in the transport's constructor, reports it in debug
    mode, and leaves the socket to the collector; ferroloop reports the same
    and has closed the socket already. Either way the peer then sees EOF."""
    loop.set_debug(True)
    loop.slow_callback_duration = 60
    seen = fatal_errors(loop)

    async def main():
        server = await loop.create_server(object, "127.0.0.1", 0)
        r, w = await asyncio.open_connection(*server.sockets[0].getsockname())
        await wait_until(lambda: seen)
        ((msg, exc),) = seen
        assert msg == "Error on transport creation for incoming connection"
        assert type(exc) is AttributeError
        assert "connection_made" in str(exc)
        del exc
        seen.clear()
        gc.collect()
        assert await asyncio.wait_for(r.read(), TIMEOUT) == b""
        w.close()
        # Not wait_closed(): from 3.12 the half-made transport stays attached
        # to the server on both loops, and wait_closed() would wait for it.
        server.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        run(loop, main())
