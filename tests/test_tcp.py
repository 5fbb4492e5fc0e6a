"""TCP: create_connection/create_server, the Server object, the stream
transport, protocol callbacks, streams and bad input — asyncio's behaviour
on both loops. No descriptor may outlive a test."""

from __future__ import annotations

import array
import asyncio
import errno
import gc
import hashlib
import logging
import os
import socket
import struct
import sys
import warnings

import pytest
from _net import (  # noqa: F401
    Recorder,
    close_all,
    free_port,
    listening_socket,
    no_fd_leak,
    short_tmp,
    skip_asyncio_bug,
    tcp_pair,
)
from conftest import run

pytestmark = pytest.mark.usefixtures("no_fd_leak")

TIMEOUT = 10


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")


async def wait_until(pred, timeout=TIMEOUT):
    """Iterates the loop until `pred()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.001)


async def drain_errors(loop, n=1):
    """Waits until the exception handler was called `n` times; returns and
    forgets the contexts (so the `loop` fixture does not fail the test)."""
    await wait_until(lambda: len(loop.unexpected_errors) >= n)
    out = list(loop.unexpected_errors)
    loop.unexpected_errors.clear()
    return out


# --- create_server / create_connection ----------------------------------------------------


def test_server_on_port_zero_echoes(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        port = server.sockets[0].getsockname()[1]
        assert port != 0
        assert ct.get_extra_info("peername") == ("127.0.0.1", port)
        ct.write(b"ping")
        assert await sp.wait_for_bytes(4) == b"ping"
        st.write(b"pong")
        assert await cp.wait_for_bytes(4) == b"pong"
        await close_all(ct, st, server)
        assert sp.events[-1] == ("lost", None)
        assert cp.events[-1] == ("lost", None)

    run(loop, main())


@needs_ipv6
def test_server_on_several_hosts(loop):
    async def main():
        made = []

        def factory():
            p = Recorder(loop)
            made.append(p)
            return p

        server = await loop.create_server(factory, ["127.0.0.1", "::1"], 0)
        assert sorted(s.family for s in server.sockets) == sorted([socket.AF_INET, socket.AF_INET6])
        clients = []
        for s in server.sockets:
            host, port = s.getsockname()[:2]
            ct, cp = await loop.create_connection(lambda: Recorder(loop), host, port)
            clients.append(ct)
            assert ct.get_extra_info("socket").family == s.family
        await wait_until(lambda: len(made) == 2)
        await close_all(*clients, server)
        for p in made:
            await asyncio.wait_for(p.lost, TIMEOUT)

    run(loop, main())


def test_server_on_all_interfaces(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, None, 0)
        assert len(server.sockets) >= 1
        assert all(s.getsockname()[0] in ("0.0.0.0", "::") for s in server.sockets)
        port = next(s.getsockname()[1] for s in server.sockets if s.family == socket.AF_INET)
        ct, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        await close_all(ct, server)

    run(loop, main())


def test_server_with_family(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "localhost", 0, family=socket.AF_INET)
        assert [s.family for s in server.sockets] == [socket.AF_INET]
        port = server.sockets[0].getsockname()[1]
        ct, _ = await loop.create_connection(asyncio.Protocol, "localhost", port, family=socket.AF_INET)
        assert ct.get_extra_info("socket").family == socket.AF_INET
        await close_all(ct, server)

    run(loop, main())


@needs_ipv6
def test_connection_over_ipv6(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, host="::1")
        assert ct.get_extra_info("socket").family == socket.AF_INET6
        assert len(ct.get_extra_info("peername")) == 4
        ct.write(b"six")
        assert await sp.wait_for_bytes(3) == b"six"
        await close_all(ct, st, server)

    run(loop, main())


def test_server_from_a_listening_sock(loop):
    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        made = []
        server = await loop.create_server(lambda: made.append(1) or Recorder(loop), sock=sock)
        assert [s.fileno() for s in server.sockets] == [sock.fileno()]
        assert sock.getblocking() is False
        ct, _ = await loop.create_connection(asyncio.Protocol, *sock.getsockname())
        await wait_until(lambda: made)
        await close_all(ct, server)
        # Closing the server closes the socket it was given.
        assert sock.fileno() == -1

    run(loop, main())


def test_connection_from_a_connected_sock(loop):
    async def main():
        with listening_socket() as lsock:
            sock = socket.create_connection(lsock.getsockname())
            peer, _ = lsock.accept()
            with peer:
                ct, cp = await loop.create_connection(lambda: Recorder(loop), sock=sock)
                assert sock.getblocking() is False
                assert ct.get_extra_info("socket").fileno() == sock.fileno()
                peer.sendall(b"hi")
                assert await cp.wait_for_bytes(2) == b"hi"
                ct.close()
                await asyncio.wait_for(cp.lost, TIMEOUT)
                assert sock.fileno() == -1

    run(loop, main())


def test_connection_sock_must_be_a_stream_socket(loop):
    async def main():
        with socket.socket(type=socket.SOCK_DGRAM) as s:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.create_connection(asyncio.Protocol, sock=s)

    run(loop, main())


def test_connection_with_local_addr(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        local = ("127.0.0.1", free_port())
        ct, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, local_addr=local)
        assert ct.get_extra_info("sockname") == local
        await close_all(ct, server)

    run(loop, main())


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_two_servers_share_a_port_with_reuse_port(loop):
    async def main():
        a = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, reuse_port=True)
        port = a.sockets[0].getsockname()[1]
        b = await loop.create_server(asyncio.Protocol, "127.0.0.1", port, reuse_port=True)
        assert b.sockets[0].getsockname()[1] == port
        assert b.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        with pytest.raises(OSError) as info:
            await loop.create_server(asyncio.Protocol, "127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE
        await close_all(a, b)

    run(loop, main())


def test_start_serving_false_then_start_serving(loop):
    async def main():
        made = []

        def factory():
            p = Recorder(loop)
            made.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0, start_serving=False)
        assert not server.is_serving()
        port = server.sockets[0].getsockname()[1]
        # The socket is bound but does not listen until start_serving().
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        await server.start_serving()
        assert server.is_serving()
        ct, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        await wait_until(lambda: made)
        await asyncio.wait_for(made[0].made, TIMEOUT)
        await server.start_serving()  # a second call is a no-op
        await close_all(ct, server)
        await asyncio.wait_for(made[0].lost, TIMEOUT)

    run(loop, main())


def test_server_basics(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        assert isinstance(server, asyncio.AbstractServer)
        assert server.get_loop() is loop
        assert server.is_serving()
        assert len(server.sockets) == 1
        assert isinstance(server.sockets[0], asyncio.trsock.TransportSocket)
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        server.close()  # idempotent

    run(loop, main())


def test_serve_forever_cancelled_closes_the_server(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, start_serving=False)
        task = loop.create_task(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        with pytest.raises(RuntimeError, match="is already being awaited"):
            await server.serve_forever()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        assert server.sockets == ()

    run(loop, main())


def test_server_as_async_context_manager(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        async with server as s:
            assert s is server
            assert server.is_serving()
        assert not server.is_serving()

    run(loop, main())


def test_wait_closed_waits_for_open_connections(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        server.close()
        waiter = loop.create_task(server.wait_closed())
        await asyncio.sleep(0)
        # Closing the server leaves the accepted connection open.
        assert not st.is_closing()
        ct.write(b"still here")
        assert await sp.wait_for_bytes(10) == b"still here"
        st.close()
        ct.close()
        await asyncio.wait_for(waiter, TIMEOUT)
        await close_all()

    run(loop, main())


# --- the transport ------------------------------------------------------------------------


def test_transport_types(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        for t in (st, ct):
            assert isinstance(t, asyncio.Transport)
            assert isinstance(t, asyncio.ReadTransport)
            assert isinstance(t, asyncio.WriteTransport)
            assert isinstance(t, asyncio.BaseTransport)
            assert not isinstance(t, asyncio.DatagramTransport)
        assert sp.transport is st and cp.transport is ct
        await close_all(ct, st, server)

    run(loop, main())


def test_get_extra_info(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        server_addr = server.sockets[0].getsockname()
        sock = ct.get_extra_info("socket")
        assert isinstance(sock, asyncio.trsock.TransportSocket)
        assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
        assert ct.get_extra_info("sockname") == sock.getsockname()
        assert ct.get_extra_info("peername") == server_addr
        assert st.get_extra_info("peername") == ct.get_extra_info("sockname")
        assert st.get_extra_info("sockname") == ct.get_extra_info("peername")
        assert ct.get_extra_info("nothing") is None
        assert ct.get_extra_info("nothing", "default") == "default"
        # Nagle is off on both ends, as asyncio does.
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert st.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await close_all(ct, st, server)
        # The information stays after the close.
        assert ct.get_extra_info("peername") == server_addr
        assert ct.get_extra_info("socket") is sock

    run(loop, main())


def test_write_and_writelines_accept_bytes_like_objects(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.write(b"a")
        ct.write(bytearray(b"b"))
        ct.write(memoryview(b"xcd")[1:])
        ct.write(b"")
        ct.writelines([b"e", bytearray(b"f"), memoryview(b"g")])
        ct.writelines(iter([b"h", b"i"]))
        ct.writelines([])
        assert await sp.wait_for_bytes(9) == b"abcdefghi"
        await close_all(ct, st, server)

    run(loop, main())


def test_write_accepts_any_buffer_format(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ints = array.array("i", [1, 2])
        ct.write(memoryview(ints))
        # Sent whole (8 bytes from a 2-item view): nothing queued, the
        # socket's write side not watched.
        assert ct.get_write_buffer_size() == 0 and "write=<idle" in repr(ct)
        ct.write(memoryview(b"abcd").cast("I"))
        expected = ints.tobytes() + b"abcd"
        assert await sp.wait_for_bytes(len(expected)) == expected
        await close_all(ct, st, server)

    run(loop, main())


def test_writelines_accepts_any_bytes_like_object(loop, loop_name):
    skip_asyncio_bug(loop_name, sys.version_info >= (3, 12), "writelines() miscounts non-byte buffers (IndexError)")

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.writelines([array.array("h", [3]), memoryview(b"abcd").cast("I")])
        expected = array.array("h", [3]).tobytes() + b"abcd"
        assert await sp.wait_for_bytes(len(expected)) == expected
        await close_all(ct, st, server)

    run(loop, main())


def test_writelines_with_a_bad_item_writes_nothing(loop, loop_name):
    # 3.15's fix for gh-155888 appends the items to the buffer one by one,
    # so those before a bad one stay queued (3.14's backport does not).
    skip_asyncio_bug(loop_name, sys.version_info >= (3, 15), "writelines() queues the items before a bad one")

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        with pytest.raises(TypeError):
            ct.writelines([b"lost", "str"])
        with pytest.raises(TypeError):
            ct.writelines([b"lost", 1])
        assert ct.get_write_buffer_size() == 0
        ct.write(b"kept")
        ct.write_eof()
        await asyncio.wait_for(sp.eof, TIMEOUT)
        assert bytes(sp.data) == b"kept"
        await close_all(ct, st, server)

    run(loop, main())


def test_write_copies_mutable_buffers(loop, loop_name):
    """A bytearray queued by write() may be reused by the caller at once."""
    skip_asyncio_bug(loop_name, sys.version_info >= (3, 12), "write() queues mutable buffers without a copy")

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        st.pause_reading()
        chunk = b"x" * 65536
        while ct.get_write_buffer_size() == 0:
            ct.write(chunk)
        sent = ct.get_write_buffer_size()
        # everything written so far is either in the kernel or queued
        buf = bytearray(b"original")
        ct.write(buf)
        view_src = bytearray(b"view-data")
        ct.write(memoryview(view_src))
        ct.writelines([bytearray(b"-lines")])
        buf[:] = b"CHANGED!"
        view_src[:] = b"VIEW-DATA"
        assert ct.get_write_buffer_size() == sent + 8 + 9 + 6
        st.resume_reading()
        ct.write_eof()
        await asyncio.wait_for(sp.eof, TIMEOUT)
        assert bytes(sp.data).endswith(b"originalview-data-lines")
        await close_all(ct, st, server)

    run(loop, main())


def test_write_eof_half_closes(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        assert ct.can_write_eof() is True
        assert st.can_write_eof() is True
        ct.write(b"request")
        ct.write_eof()
        ct.write_eof()  # a second call is a no-op
        await asyncio.wait_for(sp.eof, TIMEOUT)
        assert bytes(sp.data) == b"request"
        # The default eof_received() returns None: the server side closes.
        await asyncio.wait_for(sp.lost, TIMEOUT)
        await asyncio.wait_for(cp.lost, TIMEOUT)
        assert sp.events == [("made",), ("data", b"request"), ("eof",), ("lost", None)]
        assert cp.events == [("made",), ("eof",), ("lost", None)]
        await close_all(ct, st, server)

    run(loop, main())


def test_write_eof_after_close_is_a_no_op(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.close()
        ct.write_eof()
        await close_all(ct, st, server)

    run(loop, main())


def test_eof_received_returning_true_keeps_the_write_side_open(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, server_protocol=lambda: Recorder(loop, eof_keeps_open=True))
        ct.write(b"question")
        ct.write_eof()
        await asyncio.wait_for(sp.eof, TIMEOUT)
        for _ in range(5):
            await asyncio.sleep(0)
        assert not st.is_closing()
        assert st.is_reading()  # asyncio only removes its reader
        st.write(b"answer")
        st.write(b" after eof")
        st.close()
        await asyncio.wait_for(cp.lost, TIMEOUT)
        await asyncio.wait_for(sp.lost, TIMEOUT)
        assert sp.events == [("made",), ("data", b"question"), ("eof",), ("lost", None)]
        assert cp.events == [("made",), ("data", b"answer after eof"), ("eof",), ("lost", None)]
        await close_all(ct, server)

    run(loop, main())


def test_close_flushes_the_buffer_before_connection_lost(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        payload = os.urandom(4 * 1024 * 1024)
        ct.write(payload)
        assert ct.get_write_buffer_size() > 0
        ct.close()
        assert ct.is_closing()
        ct.close()  # idempotent
        await asyncio.sleep(0)
        assert cp.events == [("made",)]  # still flushing
        await asyncio.wait_for(sp.lost, TIMEOUT)
        await asyncio.wait_for(cp.lost, TIMEOUT)
        assert bytes(sp.data) == payload
        assert sp.events[-2:] == [("eof",), ("lost", None)]
        assert cp.events == [("made",), ("lost", None)]
        assert ct.get_write_buffer_size() == 0
        await close_all(server)

    run(loop, main())


def test_connection_lost_runs_on_a_later_iteration(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.close()
        assert ct.is_closing()
        assert cp.events == [("made",)]
        await asyncio.sleep(0)
        assert cp.events == [("made",), ("lost", None)]
        assert ct.get_extra_info("socket").fileno() == -1
        await close_all(st, server)

    run(loop, main())


def test_abort_drops_the_buffer(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        st.pause_reading()
        ct.write(os.urandom(4 * 1024 * 1024))
        assert ct.get_write_buffer_size() > 0
        ct.abort()
        assert ct.is_closing()
        assert ct.get_write_buffer_size() == 0
        ct.abort()  # idempotent
        await asyncio.wait_for(cp.lost, TIMEOUT)
        assert cp.events == [("made",), ("lost", None)]
        await close_all(st, server)
        await asyncio.wait_for(sp.lost, TIMEOUT)

    run(loop, main())


def test_abort_after_close_while_flushing(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        st.pause_reading()
        ct.write(os.urandom(4 * 1024 * 1024))
        ct.close()
        ct.abort()
        await asyncio.wait_for(cp.lost, TIMEOUT)
        assert cp.events == [("made",), ("lost", None)]
        await close_all(st, server)

    run(loop, main())


def test_pause_and_resume_reading(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        assert st.is_reading()
        st.pause_reading()
        st.pause_reading()  # no-op
        assert not st.is_reading()
        ct.write(b"held")
        for _ in range(20):
            await asyncio.sleep(0)
        assert sp.events == [("made",)]
        st.resume_reading()
        st.resume_reading()  # no-op
        assert st.is_reading()
        assert await sp.wait_for_bytes(4) == b"held"
        # EOF is held back too while paused.
        st.pause_reading()
        ct.close()
        for _ in range(20):
            await asyncio.sleep(0)
        assert sp.events == [("made",), ("data", b"held")]
        st.resume_reading()
        await asyncio.wait_for(sp.lost, TIMEOUT)
        assert sp.events == [("made",), ("data", b"held"), ("eof",), ("lost", None)]
        # After the close: not reading, and pause/resume do nothing.
        assert not st.is_reading()
        st.pause_reading()
        st.resume_reading()
        assert not st.is_reading()
        await close_all(server)

    run(loop, main())


def test_write_buffer_limits(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        assert ct.get_write_buffer_limits() == (16384, 65536)
        ct.set_write_buffer_limits(high=100)
        assert ct.get_write_buffer_limits() == (25, 100)
        ct.set_write_buffer_limits(low=10)
        assert ct.get_write_buffer_limits() == (10, 40)
        ct.set_write_buffer_limits(high=50, low=50)
        assert ct.get_write_buffer_limits() == (50, 50)
        ct.set_write_buffer_limits(high=0)
        assert ct.get_write_buffer_limits() == (0, 0)
        ct.set_write_buffer_limits()
        assert ct.get_write_buffer_limits() == (16384, 65536)
        with pytest.raises(ValueError, match=r"^high \(1\) must be >= low \(2\) must be >= 0$"):
            ct.set_write_buffer_limits(high=1, low=2)
        with pytest.raises(ValueError, match=r"^high \(-4\) must be >= low \(-1\) must be >= 0$"):
            ct.set_write_buffer_limits(low=-1)
        assert ct.get_write_buffer_limits() == (16384, 65536)
        assert ct.get_write_buffer_size() == 0
        await close_all(ct, st, server)

    run(loop, main())


def test_write_buffer_limits_accept_floats(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.set_write_buffer_limits(high=1000.0)
        assert ct.get_write_buffer_limits() == (250.0, 1000.0)
        await close_all(ct, st, server)

    run(loop, main())


class FlowRecorder(Recorder):
    def pause_writing(self):
        self.events.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self):
        self.events.append(("resume", self.transport.get_write_buffer_size()))


def test_pause_and_resume_writing_at_the_water_marks(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, client_protocol=lambda: FlowRecorder(loop))
        high, low = 256 * 1024, 64 * 1024
        ct.set_write_buffer_limits(high=high, low=low)
        st.pause_reading()
        chunk = os.urandom(32 * 1024)
        sent = bytearray()
        for _ in range(10000):
            ct.write(chunk)
            sent += chunk
            if len(cp.events) > 1:
                break
        assert cp.events[1][0] == "pause"
        assert cp.events[1][1] > high
        assert cp.events[1][1] == ct.get_write_buffer_size()
        # More writes while paused do not call pause_writing again.
        ct.write(chunk)
        sent += chunk
        assert [e[0] for e in cp.events] == ["made", "pause"]
        st.resume_reading()
        await wait_until(lambda: len(cp.events) > 2)
        assert cp.events[2][0] == "resume"
        assert cp.events[2][1] <= low
        assert await sp.wait_for_bytes(len(sent)) == bytes(sent)
        assert [e[0] for e in cp.events] == ["made", "pause", "resume"]
        await close_all(ct, st, server)

    run(loop, main())


def test_lowering_the_high_water_mark_pauses_at_once(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, client_protocol=lambda: FlowRecorder(loop))
        st.pause_reading()
        # One write of at most the high-water mark never pauses by itself.
        while ct.get_write_buffer_size() == 0:
            ct.write(b"y" * 65536)
        assert cp.events == [("made",)]
        ct.set_write_buffer_limits(high=0)
        assert cp.events == [("made",), ("pause", ct.get_write_buffer_size())]
        st.resume_reading()
        await wait_until(lambda: cp.events[-1][0] == "resume")
        assert cp.events[-1] == ("resume", 0)
        await close_all(ct, st, server)

    run(loop, main())


def test_a_failing_pause_writing_goes_to_the_exception_handler(loop):
    class Bad(Recorder):
        def pause_writing(self):
            raise ZeroDivisionError("pause")

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, client_protocol=lambda: Bad(loop))
        st.pause_reading()
        ct.set_write_buffer_limits(high=0)
        while ct.get_write_buffer_size() == 0:
            ct.write(b"z" * 65536)
        [ctx] = await drain_errors(loop)
        assert ctx["message"] == "protocol.pause_writing() failed"
        assert isinstance(ctx["exception"], ZeroDivisionError)
        assert ctx["transport"] is ct
        assert ctx["protocol"] is cp
        assert not ct.is_closing()
        st.resume_reading()
        await close_all(ct, st, server)

    run(loop, main())


def test_set_protocol_and_get_protocol(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        assert st.get_protocol() is sp
        ct.write(b"first")
        await sp.wait_for_bytes(5)
        new = Recorder(loop)
        st.set_protocol(new)
        assert st.get_protocol() is new
        ct.write(b"second")
        assert await new.wait_for_bytes(6) == b"second"
        ct.close()
        await asyncio.wait_for(new.lost, TIMEOUT)
        # The new protocol never had connection_made; it gets the rest.
        assert new.events == [("data", b"second"), ("eof",), ("lost", None)]
        assert sp.events == [("made",), ("data", b"first")]
        await close_all(st, server)

    run(loop, main())


def test_set_protocol_to_a_buffered_protocol(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        new = BufferedRecorder(loop)
        st.set_protocol(new)
        ct.write(b"buffered now")
        ct.close()
        await asyncio.wait_for(new.lost, TIMEOUT)
        assert bytes(new.got) == b"buffered now"
        assert new.events[-2:] == [("eof",), ("lost", None)]
        await close_all(st, server)

    run(loop, main())


def test_writelines_with_more_items_than_iov_max(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        st.pause_reading()
        while ct.get_write_buffer_size() == 0:
            ct.write(b"-" * 65536)
        before = ct.get_write_buffer_size()
        items = [bytes([i % 251]) * (1 + i % 7) for i in range(5000)]
        ct.writelines(items)
        assert ct.get_write_buffer_size() == before + sum(map(len, items))
        ct.write_eof()
        st.resume_reading()
        await asyncio.wait_for(sp.eof, TIMEOUT)
        assert bytes(sp.data).lstrip(b"-") == b"".join(items)
        await close_all(ct, st, server)

    run(loop, main())


def test_pause_reading_in_connection_made(loop):
    class Paused(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.pause_reading()

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, client_protocol=lambda: Paused(loop))
        st.write(b"waiting")
        for _ in range(20):
            await asyncio.sleep(0)
        assert cp.events == [("made",)]
        assert not ct.is_reading()
        ct.resume_reading()
        assert await cp.wait_for_bytes(7) == b"waiting"
        await close_all(ct, st, server)

    run(loop, main())


def test_close_in_connection_made(loop):
    class Closer(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.write(b"goodbye")
            transport.close()

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, server_protocol=lambda: Closer(loop))
        await asyncio.wait_for(cp.lost, TIMEOUT)
        await asyncio.wait_for(sp.lost, TIMEOUT)
        assert sp.events == [("made",), ("lost", None)]
        assert cp.events == [("made",), ("data", b"goodbye"), ("eof",), ("lost", None)]
        await close_all(ct, server)

    run(loop, main())


def test_transport_left_open_when_the_loop_closes(loop_factory):
    """Nothing closes it: once the loop is closed and the transport
    collected, its socket is closed with asyncio's ResourceWarning."""
    loop = loop_factory()

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        server.close()  # (3.12's wait_closed() would wait for the open connections)
        await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del loop
        gc.collect()
    messages = sorted(str(w.message).split(" <")[0] for w in caught if w.category is ResourceWarning)
    assert messages.count("unclosed transport") == 2


# --- protocol callbacks ---------------------------------------------------------------------


def test_callback_order_on_both_ends(loop):
    async def main():
        server_protocols = []

        class Echo(Recorder):
            def data_received(self, data):
                super().data_received(data)
                self.transport.write(data.upper())

            def eof_received(self):
                super().eof_received()
                self.transport.write(b"!")
                return False

        def factory():
            p = Echo(loop)
            server_protocols.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ct, cp = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        # create_connection returns once connection_made ran.
        assert cp.events == [("made",)]
        ct.write(b"hello ")
        ct.write(b"world")
        ct.write_eof()
        await asyncio.wait_for(cp.lost, TIMEOUT)
        [sp] = server_protocols
        await asyncio.wait_for(sp.lost, TIMEOUT)
        assert sp.events == [("made",), ("data", b"hello world"), ("eof",), ("lost", None)]
        assert cp.events == [("made",), ("data", b"HELLO WORLD!"), ("eof",), ("lost", None)]
        await close_all(ct, server)

    run(loop, main())


def test_data_already_waiting_is_delivered_after_connection_made(loop):
    """A client that writes and half-closes before the server accepts."""

    async def main():
        server_protocols = []

        def factory():
            p = Recorder(loop)
            server_protocols.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0, start_serving=False)
        await server.start_serving()
        addr = server.sockets[0].getsockname()
        with socket.create_connection(addr) as raw:
            raw.sendall(b"early bird")
            raw.shutdown(socket.SHUT_WR)
            await wait_until(lambda: server_protocols and server_protocols[0].lost.done())
        [sp] = server_protocols
        assert sp.events == [("made",), ("data", b"early bird"), ("eof",), ("lost", None)]
        await close_all(server)

    run(loop, main())


def test_exception_in_data_received_closes_only_that_transport(loop):
    class Fragile(Recorder):
        def data_received(self, data):
            super().data_received(data)
            if data.startswith(b"boom"):
                raise ValueError("bad data")
            self.transport.write(data)

    async def main():
        server_protocols = []

        def factory():
            p = Fragile(loop)
            server_protocols.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ct1, cp1 = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        ct2, cp2 = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        await wait_until(lambda: len(server_protocols) == 2 and all(p.transport for p in server_protocols))
        ct1.write(b"boom")
        [ctx] = await drain_errors(loop)
        sp1 = ctx["protocol"]
        assert set(ctx) == {"message", "exception", "transport", "protocol"}
        assert ctx["message"] == "Fatal error: protocol.data_received() call failed."
        assert isinstance(ctx["exception"], ValueError)
        assert ctx["transport"] is sp1.transport
        assert sp1 in server_protocols
        exc = await asyncio.wait_for(sp1.lost, TIMEOUT)
        assert exc is ctx["exception"]
        assert sp1.transport.is_closing()
        await asyncio.wait_for(cp1.lost, TIMEOUT)
        # The other connection carries on.
        ct2.write(b"still fine")
        assert await cp2.wait_for_bytes(10) == b"still fine"
        [sp2] = [p for p in server_protocols if p is not sp1]
        assert not sp2.transport.is_closing()
        await close_all(ct1, ct2, server)
        await asyncio.wait_for(sp2.lost, TIMEOUT)

    run(loop, main())


def test_exception_in_eof_received(loop):
    class Bad(Recorder):
        def eof_received(self):
            super().eof_received()
            raise KeyError("eof")

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, server_protocol=lambda: Bad(loop))
        ct.write_eof()
        [ctx] = await drain_errors(loop)
        assert ctx["message"] == "Fatal error: protocol.eof_received() call failed."
        assert isinstance(ctx["exception"], KeyError)
        assert ctx["transport"] is st and ctx["protocol"] is sp
        assert await asyncio.wait_for(sp.lost, TIMEOUT) is ctx["exception"]
        await close_all(ct, server)

    run(loop, main())


def test_exception_in_connection_lost_still_closes_the_socket(loop):
    class Bad(Recorder):
        def connection_lost(self, exc):
            super().connection_lost(exc)
            raise OSError("in connection_lost")

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, server_protocol=lambda: Bad(loop))
        sock = st.get_extra_info("socket")
        st.close()
        [ctx] = await drain_errors(loop)
        assert ctx["message"].startswith("Exception in callback")
        assert isinstance(ctx["exception"], OSError)
        assert sock.fileno() == -1
        await close_all(ct, server)

    run(loop, main())


def test_exception_in_connection_lost_after_a_flush(loop):
    class Bad(Recorder):
        def connection_lost(self, exc):
            super().connection_lost(exc)
            raise KeyError("lost")

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, client_protocol=lambda: Bad(loop))
        sock = ct.get_extra_info("socket")
        ct.write(os.urandom(4 * 1024 * 1024))
        assert ct.get_write_buffer_size() > 0
        ct.close()  # connection_lost comes once the buffer is flushed
        [ctx] = await drain_errors(loop)
        assert isinstance(ctx["exception"], KeyError)
        assert ctx["message"].startswith("Exception in callback")
        assert sock.fileno() == -1
        await close_all(st, server)

    run(loop, main())


def test_transport_socket_is_not_for_add_reader(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        fd = ct.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match=f"File descriptor {fd} is used by transport"):
            loop.add_reader(fd, print)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_writer(fd, print)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.remove_reader(fd)
        await close_all(ct, st, server)

    run(loop, main())


def test_connection_lost_is_called_once(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.write(b"x")
        ct.close()
        ct.abort()
        st.close()
        st.abort()
        for _ in range(20):
            await asyncio.sleep(0)
        assert [e for e in cp.events if e[0] == "lost"] == [("lost", None)]
        assert len([e for e in sp.events if e[0] == "lost"]) == 1
        await close_all(server)

    run(loop, main())


def test_exception_in_connection_made_leaves_the_transport_working(loop):
    class Bad(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            raise ValueError("made")

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, server_protocol=lambda: Bad(loop))
        [ctx] = await drain_errors(loop)
        assert ctx["message"].startswith("Exception in callback")
        assert isinstance(ctx["exception"], ValueError)
        assert not st.is_closing()
        ct.write(b"anyway")
        assert await sp.wait_for_bytes(6) == b"anyway"
        await close_all(ct, st, server)

    run(loop, main())


def test_close_in_data_received_stops_reading(loop):
    class Closer(Recorder):
        def data_received(self, data):
            super().data_received(data)
            self.transport.close()

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, server_protocol=lambda: Closer(loop))
        ct.write(b"one")
        await asyncio.wait_for(sp.lost, TIMEOUT)
        ct.write(b"two")
        await asyncio.wait_for(cp.lost, TIMEOUT)
        assert sp.events == [("made",), ("data", b"one"), ("lost", None)]
        assert cp.events[0] == ("made",) and cp.events[-1][0] == "lost"
        await close_all(ct, server)

    run(loop, main())


def test_keyboard_interrupt_in_data_received_stops_the_loop(loop):
    class Interrupting(Recorder):
        def data_received(self, data):
            super().data_received(data)
            raise KeyboardInterrupt

    async def setup():
        return await tcp_pair(loop, server_protocol=lambda: Interrupting(loop))

    async def wait_forever():
        await asyncio.sleep(TIMEOUT)

    st, sp, ct, cp, server = run(loop, setup())
    ct.write(b"^C")
    with pytest.raises(KeyboardInterrupt):
        run(loop, wait_forever())
    assert sp.events == [("made",), ("data", b"^C")]
    assert not st.is_closing()  # asyncio only lets it through
    run(loop, close_all(ct, st, server))
    for task in asyncio.all_tasks(loop):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            run(loop, task)


# --- BufferedProtocol --------------------------------------------------------------------


class BufferedRecorder(asyncio.BufferedProtocol):
    def __init__(self, loop, size=1000, make_buffer=None):
        self.events = []
        self.got = bytearray()
        self.hints = []
        self.buf = bytearray(size)
        self.make_buffer = make_buffer
        self.transport = None
        self.lost = loop.create_future()
        self.eof = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append(("made",))

    def get_buffer(self, sizehint):
        self.hints.append(sizehint)
        if self.make_buffer is not None:
            return self.make_buffer()
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        if not self.events or self.events[-1][0] != "data":
            self.events.append(("data",))
        self.got += self.buf[:nbytes]

    def eof_received(self):
        self.events.append(("eof",))
        self.eof.set_result(None)

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(exc)


def test_buffered_protocol_receives_everything(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, server_protocol=lambda: BufferedRecorder(loop, 1000))
        payload = os.urandom(1024 * 1024)
        ct.write(payload)
        ct.close()
        await asyncio.wait_for(sp.lost, TIMEOUT)
        assert bytes(sp.got) == payload
        assert sp.events == [("made",), ("data",), ("eof",), ("lost", None)]
        assert set(sp.hints) == {-1}
        await close_all(server)

    run(loop, main())


def test_buffered_protocol_buffer_of_any_format(loop):
    store = array.array("i", [0] * 4)

    class IntBuffer(BufferedRecorder):
        def get_buffer(self, sizehint):
            return memoryview(store)

        def buffer_updated(self, nbytes):
            self.got += store.tobytes()[:nbytes]

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, server_protocol=lambda: IntBuffer(loop))
        payload = bytes(range(40))
        ct.write(payload)
        ct.close()
        await asyncio.wait_for(sp.lost, TIMEOUT)
        errors = list(loop.unexpected_errors)
        loop.unexpected_errors.clear()
        assert errors == []
        assert bytes(sp.got) == payload
        await close_all(server)

    run(loop, main())


def test_get_buffer_returning_an_empty_buffer_is_fatal(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(
            loop, server_protocol=lambda: BufferedRecorder(loop, make_buffer=bytearray)
        )
        ct.write(b"data")
        [ctx] = await drain_errors(loop)
        assert ctx["message"] == "Fatal error: protocol.get_buffer() call failed."
        assert isinstance(ctx["exception"], RuntimeError)
        assert str(ctx["exception"]) == "get_buffer() returned an empty buffer"
        assert ctx["transport"] is st and ctx["protocol"] is sp
        assert st.is_closing()
        assert await asyncio.wait_for(sp.lost, TIMEOUT) is ctx["exception"]
        assert sp.events == [("made",), ("lost", ctx["exception"])]
        await asyncio.wait_for(cp.lost, TIMEOUT)
        await close_all(ct, server)

    run(loop, main())


def test_get_buffer_raising_is_fatal(loop):
    def boom():
        raise ArithmeticError("no buffer")

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, server_protocol=lambda: BufferedRecorder(loop, make_buffer=boom))
        ct.write(b"data")
        [ctx] = await drain_errors(loop)
        assert ctx["message"] == "Fatal error: protocol.get_buffer() call failed."
        assert isinstance(ctx["exception"], ArithmeticError)
        assert await asyncio.wait_for(sp.lost, TIMEOUT) is ctx["exception"]
        await close_all(ct, server)

    run(loop, main())


def test_get_buffer_returning_a_non_buffer_is_fatal(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(
            loop, server_protocol=lambda: BufferedRecorder(loop, make_buffer=lambda: None)
        )
        ct.write(b"data")
        [ctx] = await drain_errors(loop)
        assert ctx["message"] == "Fatal error: protocol.get_buffer() call failed."
        assert isinstance(ctx["exception"], TypeError)
        await asyncio.wait_for(sp.lost, TIMEOUT)
        await close_all(ct, server)

    run(loop, main())


def test_get_buffer_returning_a_read_only_buffer_is_a_read_error(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(
            loop, server_protocol=lambda: BufferedRecorder(loop, make_buffer=lambda: b"read-only")
        )
        ct.write(b"data")
        [ctx] = await drain_errors(loop)
        assert ctx["message"] == "Fatal read error on socket transport"
        assert isinstance(ctx["exception"], TypeError)
        await asyncio.wait_for(sp.lost, TIMEOUT)
        await close_all(ct, server)

    run(loop, main())


def test_buffer_updated_raising_is_fatal(loop):
    class Bad(BufferedRecorder):
        def buffer_updated(self, nbytes):
            raise LookupError("updated")

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, server_protocol=lambda: Bad(loop))
        ct.write(b"data")
        [ctx] = await drain_errors(loop)
        assert ctx["message"] == "Fatal error: protocol.buffer_updated() call failed."
        assert isinstance(ctx["exception"], LookupError)
        assert ctx["transport"] is st and ctx["protocol"] is sp
        await asyncio.wait_for(sp.lost, TIMEOUT)
        await close_all(ct, server)

    run(loop, main())


# --- streams -------------------------------------------------------------------------------


def test_streams_readline_readexactly_drain(loop):
    async def main():
        async def handle(reader, writer):
            line = await reader.readline()
            n = int(line)
            body = await reader.readexactly(n)
            writer.write(b"got %d: " % n + body[::-1] + b"\n")
            await writer.drain()
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(b"5\nabcde")
        await writer.drain()
        writer.write_eof()
        assert await reader.readline() == b"got 5: edcba\n"
        assert await reader.read() == b""
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_streams_readexactly_incomplete(loop):
    async def main():
        async def handle(reader, writer):
            writer.write(b"abc")
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readexactly(10)
        assert info.value.partial == b"abc"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_streams_ten_mib_both_ways_intact(loop):
    size = 10 * 1024 * 1024
    payload = os.urandom(size)
    digest = hashlib.sha256(payload).hexdigest().encode()

    async def main():
        async def handle(reader, writer):
            h = hashlib.sha256()
            got = 0
            while got < size:
                chunk = await reader.read(1 << 20)
                assert chunk
                h.update(chunk)
                got += len(chunk)
            writer.write(h.hexdigest().encode() + b"\n")
            # and the same 10 MiB back
            view = memoryview(payload)
            for i in range(0, size, 1 << 20):
                writer.write(view[i : i + (1 << 20)])
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        for i in range(0, size, 65536):
            writer.write(payload[i : i + 65536])
            await writer.drain()
        assert await reader.readline() == digest + b"\n"
        back = hashlib.sha256()
        n = 0
        while chunk := await reader.read(1 << 20):
            back.update(chunk)
            n += len(chunk)
        assert n == size
        assert back.hexdigest().encode() == digest
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_streams_drain_waits_while_the_peer_does_not_read(loop):
    async def main():
        release = asyncio.Event()
        received = []

        async def handle(reader, writer):
            await release.wait()
            received.append(len(await reader.read()))
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.transport.set_write_buffer_limits(high=65536)
        total = 0
        drain = None
        for _ in range(1000):
            writer.write(b"d" * 65536)
            total += 65536
            drain = asyncio.ensure_future(writer.drain())
            await asyncio.sleep(0.001)
            if not drain.done():
                break
            await drain
        assert not drain.done()  # the peer does not read: drain() blocks
        release.set()
        await asyncio.wait_for(drain, TIMEOUT)
        writer.write_eof()
        await wait_until(lambda: received)
        assert received == [total]
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


# --- bad input and failures ----------------------------------------------------------------


# The stream transport's write() message, reworded in 3.14.
NOT_BYTES = (
    "data argument must be a bytes, bytearray, or memoryview object, not "
    if sys.version_info >= (3, 14)
    else "data argument must be a bytes-like object, not "
)


def test_write_str_is_a_type_error_with_asyncio_message(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        for bad, name in (("text", "str"), (1, "int"), (None, "NoneType"), (array.array("b"), "array")):
            with pytest.raises(TypeError) as info:
                ct.write(bad)
            assert str(info.value) == f"{NOT_BYTES}{name!r}"
        await close_all(ct, st, server)

    run(loop, main())


def test_write_of_a_wrong_type_is_a_type_error(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        for bad in ("text", 1, None, array.array("b"), [b"x"]):
            with pytest.raises(TypeError, match=f"^{NOT_BYTES}"):
                ct.write(bad)
        # even after the connection is gone
        ct.close()
        with pytest.raises(TypeError):
            ct.write("text")
        await close_all(st, server)

    run(loop, main())


def test_writes_after_close_are_dropped_then_logged(loop, caplog):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.close()
        await asyncio.wait_for(cp.lost, TIMEOUT)
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(4):
                ct.write(b"dropped")
            assert [r.getMessage() for r in caplog.records] == []
            ct.write(b"dropped")
            assert [r.getMessage() for r in caplog.records] == ["socket.send() raised exception."]
            ct.write(b"dropped")
            ct.write(b"")  # empty writes do not count
            assert len(caplog.records) == 2
            if sys.version_info < (3, 12):  # 3.12's writelines() fails after the close
                ct.writelines([b"dropped"])
                assert len(caplog.records) == 3
            assert all(r.levelno == logging.WARNING and r.name == "asyncio" for r in caplog.records)
        await asyncio.sleep(0)
        assert bytes(sp.data) == b""
        await close_all(st, server)

    run(loop, main())


def test_writes_right_after_close_are_dropped(loop, caplog):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.close()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(4):
                ct.write(b"dropped")
            assert caplog.records == []
        await asyncio.wait_for(sp.lost, TIMEOUT)
        assert bytes(sp.data) == b""
        await close_all(st, server)

    run(loop, main())


def test_write_after_write_eof_is_a_runtime_error(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.write_eof()
        with pytest.raises(RuntimeError, match=r"^Cannot call write\(\) after write_eof\(\)$"):
            ct.write(b"late")
        with pytest.raises(RuntimeError):
            ct.writelines([b"late"])
        # an empty write too: the check comes first
        with pytest.raises(RuntimeError):
            ct.write(b"")
        await close_all(ct, st, server)

    run(loop, main())


def test_writelines_after_write_eof_message(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.write_eof()
        # 3.11's writelines() is WriteTransport's: join, then write().
        name = "writelines" if sys.version_info >= (3, 12) else "write"
        with pytest.raises(RuntimeError, match=rf"^Cannot call {name}\(\) after write_eof\(\)$"):
            ct.writelines([b"late"])
        await close_all(ct, st, server)

    run(loop, main())


def test_server_on_a_port_in_use(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(OSError) as info:
            await loop.create_server(asyncio.Protocol, "127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE
        assert "address already in use" in str(info.value)
        await close_all(server)

    run(loop, main())


def test_connection_to_a_closed_port_is_refused(loop):
    async def main():
        with pytest.raises(ConnectionRefusedError) as info:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", free_port())
        assert info.value.errno == errno.ECONNREFUSED

    run(loop, main())


@pytest.mark.parametrize("host", [123, 1.5, object()])
def test_bad_host_type(loop, host):
    async def main():
        with pytest.raises(TypeError):
            await loop.create_connection(asyncio.Protocol, host, 80)
        with pytest.raises(TypeError):
            await loop.create_server(asyncio.Protocol, host, 0)

    run(loop, main())


def test_bad_port_type(loop):
    async def main():
        with pytest.raises(OSError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", "not-a-port")

    run(loop, main())


def test_connection_needs_a_host_and_port_or_a_sock(loop):
    async def main():
        with pytest.raises(ValueError, match="host and port was not specified and no sock specified"):
            await loop.create_connection(asyncio.Protocol)
        with socket.socket() as s:
            with pytest.raises(ValueError, match="host/port and sock can not be specified at the same time"):
                await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, sock=s)

    run(loop, main())


def linger_reset(sock):
    """Makes `sock.close()` send a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_peer_reset_while_idle(loop):
    async def main():
        with listening_socket() as lsock:
            ct, cp = await loop.create_connection(lambda: Recorder(loop), *lsock.getsockname())
            peer, _ = lsock.accept()
            linger_reset(peer)
            exc = await asyncio.wait_for(cp.lost, TIMEOUT)
        assert isinstance(exc, ConnectionResetError)
        assert cp.events == [("made",), ("lost", exc)]
        assert ct.is_closing()

    run(loop, main())


def test_peer_reset_mid_write(loop):
    async def main():
        with listening_socket() as lsock:
            ct, cp = await loop.create_connection(lambda: FlowRecorder(loop), *lsock.getsockname())
            peer, _ = lsock.accept()
            ct.write(os.urandom(8 * 1024 * 1024))
            assert ct.get_write_buffer_size() > 0
            peer.recv(1000)  # some read, most not
            linger_reset(peer)
            exc = await asyncio.wait_for(cp.lost, TIMEOUT)
        assert isinstance(exc, ConnectionResetError)
        assert [e[0] for e in cp.events] == ["made", "pause", "lost"]
        assert ct.get_write_buffer_size() == 0
        # later writes are dropped silently (the first few)
        ct.write(b"after")

    run(loop, main())


def test_peer_reset_while_writing_into_a_full_buffer(loop):
    async def main():
        with listening_socket() as lsock:
            ct, cp = await loop.create_connection(lambda: Recorder(loop), *lsock.getsockname())
            peer, _ = lsock.accept()
            ct.write(os.urandom(8 * 1024 * 1024))
            linger_reset(peer)
            # the next writes may find the reset before the loop does
            for _ in range(3):
                ct.write(b"more")
                await asyncio.sleep(0)
            exc = await asyncio.wait_for(cp.lost, TIMEOUT)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert [e[0] for e in cp.events] == ["made", "lost"]

    run(loop, main())


def test_peer_closing_normally_after_sending(loop):
    async def main():
        with listening_socket() as lsock:
            ct, cp = await loop.create_connection(lambda: Recorder(loop), *lsock.getsockname())
            peer, _ = lsock.accept()
            peer.sendall(b"bye")
            peer.close()
            exc = await asyncio.wait_for(cp.lost, TIMEOUT)
        assert exc is None
        assert cp.events == [("made",), ("data", b"bye"), ("eof",), ("lost", None)]

    run(loop, main())


def test_unix_server_path_too_long(loop, short_tmp):
    async def main():
        path = os.path.join(short_tmp, "s" * 200)
        with pytest.raises(OSError) as info:
            await loop.create_unix_server(asyncio.Protocol, path)
        assert "too long" in str(info.value)
        with pytest.raises(OSError):
            await loop.create_unix_connection(asyncio.Protocol, path)
        assert not os.path.exists(path)

    run(loop, main())


def test_a_transport_nobody_holds_still_starts_reading(loop):
    # Until reading starts, the loop's scheduled callback is what holds a
    # new transport (asyncio's `_add_reader` handle does): a transport the
    # creator dropped must not be collected, and its socket closed, first.
    a, b = socket.socketpair()
    a.setblocking(False)
    got = loop.create_future()

    class Forgetful(asyncio.Protocol):
        def connection_made(self, transport):
            pass  # keeps no reference

        def data_received(self, data):
            got.set_result(data)

    fd = a.fileno()
    loop._make_socket_transport(a, Forgetful())
    del a
    gc.collect()
    b.sendall(b"hi")
    try:
        assert run(loop, asyncio.wait_for(got, 10)) == b"hi"
    finally:
        loop._transports[fd].close()
        run(loop, asyncio.sleep(0))
        b.close()


def test_pause_reading_from_an_earlier_callback_of_the_same_iteration(loop):
    # Two connections whose data arrives for the same iteration: whichever
    # protocol runs first pauses the other's reading, and the other's read,
    # already due in that iteration, must not run (asyncio's remove_reader
    # cancels its handle). Its data comes after resume_reading.
    class Pauser(Recorder):
        other = None

        def data_received(self, data):
            super().data_received(data)
            if self.other is not None and self.other.transport.is_reading():
                self.other.transport.pause_reading()
                self.paused_other = True

    async def main():
        st1, sp1, ct1, cp1, server1 = await tcp_pair(loop, server_protocol=Pauser)
        st2, sp2, ct2, cp2, server2 = await tcp_pair(loop, server_protocol=Pauser)
        sp1.other, sp2.other = sp2, sp1
        s1, s2 = ct1.get_extra_info("socket"), ct2.get_extra_info("socket")
        # Sent with plain syscalls, so both are readable before the next poll.
        socket.socket.send(s1._sock, b"one")
        socket.socket.send(s2._sock, b"two")
        await asyncio.sleep(0.05)
        got = [bytes(sp1.data), bytes(sp2.data)]
        assert sorted(got) in ([b"", b"one"], [b"", b"two"]), got
        paused = sp1 if got[0] == b"" else sp2
        assert not paused.transport.is_reading()
        paused.transport.resume_reading()
        await paused.wait_for_bytes(3)
        await close_all(ct1, ct2, st1, st2, server1, server2)

    run(loop, main())
