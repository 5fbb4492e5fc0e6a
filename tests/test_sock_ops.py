"""The loop's sock_* operations and sendfile: asyncio's behaviour on both
loops. No descriptor may outlive a test."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import os
import socket
import sys

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


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    with a, b:
        yield a, b


@pytest.fixture
def udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        a.setblocking(False)
        b.setblocking(False)
        yield a, b


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 123)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        yield f, data


async def recv_all(loop, sock, n=None):
    """Reads until EOF (or `n` bytes) with sock_recv."""
    out = bytearray()
    while n is None or len(out) < n:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), TIMEOUT)
        if not chunk:
            break
        out += chunk
    return bytes(out)


# --- receiving -----------------------------------------------------------------------------


def test_sock_recv_waits_for_data(loop, pair):
    a, b = pair

    async def main():
        loop.call_later(0.01, b.send, b"later")
        assert await asyncio.wait_for(loop.sock_recv(a, 100), TIMEOUT) == b"later"
        b.send(b"now")
        assert await loop.sock_recv(a, 100) == b"now"
        b.shutdown(socket.SHUT_WR)
        assert await loop.sock_recv(a, 100) == b""

    run(loop, main())


def test_sock_recv_into(loop, pair):
    a, b = pair

    async def main():
        buf = bytearray(10)
        loop.call_soon(b.send, b"abcdef")
        n = await asyncio.wait_for(loop.sock_recv_into(a, buf), TIMEOUT)
        assert n == 6 and buf[:6] == b"abcdef"
        b.send(b"123456789012")
        view = memoryview(buf)[2:]
        assert await loop.sock_recv_into(a, view) == 8
        assert buf == b"ab12345678"

    run(loop, main())


def test_sock_recv_cancelled_leaves_the_data(loop, pair):
    a, b = pair

    async def main():
        task = loop.create_task(loop.sock_recv(a, 100))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        b.send(b"unread")
        for _ in range(5):
            await asyncio.sleep(0)
        assert a.recv(100) == b"unread"
        # the reader is gone: the fd can be watched again
        loop.add_reader(a, lambda: None)
        assert loop.remove_reader(a)

    run(loop, main())


def test_sock_recvfrom_and_sendto(loop, udp_pair):
    a, b = udp_pair

    async def main():
        n = await loop.sock_sendto(b, b"datagram", a.getsockname())
        assert n == 8
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(a, 100), TIMEOUT)
        assert (data, addr) == (b"datagram", b.getsockname())
        loop.call_later(0.01, b.sendto, b"later", a.getsockname())
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(a, 100), TIMEOUT)
        assert data == b"later"

    run(loop, main())


def test_sock_recvfrom_into(loop, udp_pair):
    a, b = udp_pair

    async def main():
        buf = bytearray(20)
        b.sendto(b"into buffer", a.getsockname())
        n, addr = await asyncio.wait_for(loop.sock_recvfrom_into(a, buf), TIMEOUT)
        assert (n, addr) == (11, b.getsockname())
        assert buf[:n] == b"into buffer"
        b.sendto(b"truncated datagram", a.getsockname())
        n, addr = await asyncio.wait_for(loop.sock_recvfrom_into(a, buf, 5), TIMEOUT)
        assert n == 5 and buf[:5] == b"trunc"

    run(loop, main())


# --- sending -------------------------------------------------------------------------------


def test_sock_sendall_large(loop, pair):
    a, b = pair
    payload = os.urandom(16 * 1024 * 1024)

    async def main():
        reader = loop.create_task(recv_all(loop, b))
        assert await asyncio.wait_for(loop.sock_sendall(a, payload), TIMEOUT) is None
        a.shutdown(socket.SHUT_WR)
        got = await reader
        assert len(got) == len(payload)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()

    run(loop, main())


def test_sock_sendall_to_a_closed_peer(loop, pair):
    a, b = pair

    async def main():
        b.close()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            await loop.sock_sendall(a, b"x" * (8 * 1024 * 1024))

    run(loop, main())


def test_sock_sendall_empty(loop, pair):
    a, b = pair

    async def main():
        assert await loop.sock_sendall(a, b"") is None

    run(loop, main())


# --- connecting and accepting --------------------------------------------------------------


def test_sock_connect_and_accept(loop):
    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        lsock.setblocking(False)
        client = socket.socket()
        client.setblocking(False)
        with lsock, client:
            accept = loop.create_task(loop.sock_accept(lsock))
            await asyncio.wait_for(loop.sock_connect(client, lsock.getsockname()), TIMEOUT)
            conn, addr = await asyncio.wait_for(accept, TIMEOUT)
            with conn:
                assert addr == client.getsockname()
                assert conn.getblocking() is False
                await loop.sock_sendall(client, b"hi")
                assert await loop.sock_recv(conn, 10) == b"hi"

    run(loop, main())


def test_sock_connect_resolves_host_names(loop):
    async def main():
        with listening_socket() as lsock:
            client = socket.socket()
            client.setblocking(False)
            with client:
                await asyncio.wait_for(loop.sock_connect(client, ("localhost", lsock.getsockname()[1])), TIMEOUT)
                assert client.getpeername() == lsock.getsockname()
                lsock.accept()[0].close()

    run(loop, main())


def test_sock_connect_refused(loop):
    async def main():
        client = socket.socket()
        client.setblocking(False)
        with client:
            with pytest.raises(ConnectionRefusedError) as info:
                await asyncio.wait_for(loop.sock_connect(client, ("127.0.0.1", free_port())), TIMEOUT)
            assert info.value.errno == errno.ECONNREFUSED

    run(loop, main())


def test_sock_connect_unix(loop, short_tmp):
    path = os.path.join(short_tmp, "s")

    async def main():
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(path)
        lsock.listen()
        lsock.setblocking(False)
        client = socket.socket(socket.AF_UNIX)
        client.setblocking(False)
        with lsock, client:
            await asyncio.wait_for(loop.sock_connect(client, path), TIMEOUT)
            conn, _ = await asyncio.wait_for(loop.sock_accept(lsock), TIMEOUT)
            conn.close()

    run(loop, main())


def test_sock_accept_cancelled(loop):
    async def main():
        with listening_socket() as lsock:
            lsock.setblocking(False)
            task = loop.create_task(loop.sock_accept(lsock))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with socket.create_connection(lsock.getsockname()):
                for _ in range(5):
                    await asyncio.sleep(0)
                conn, _ = lsock.accept()  # still waiting for us
                conn.close()

    run(loop, main())


# --- sendfile ------------------------------------------------------------------------------


def test_sock_sendfile_native(loop, pair, data_file):
    a, b = pair
    f, data = data_file

    async def main():
        reader = loop.create_task(recv_all(loop, b))
        sent = await asyncio.wait_for(loop.sock_sendfile(a, f), TIMEOUT)
        a.shutdown(socket.SHUT_WR)
        assert sent == len(data)
        assert f.tell() == len(data)
        assert await reader == data

    run(loop, main())


def test_sock_sendfile_offset_and_count(loop, pair, data_file):
    a, b = pair
    f, data = data_file

    async def main():
        reader = loop.create_task(recv_all(loop, b))
        sent = await asyncio.wait_for(loop.sock_sendfile(a, f, 1000, 70000), TIMEOUT)
        a.shutdown(socket.SHUT_WR)
        assert sent == 70000
        assert f.tell() == 71000
        assert await reader == data[1000:71000]

    run(loop, main())


def test_sock_sendfile_fallback(loop, pair):
    a, b = pair
    data = os.urandom(500_000)

    async def main():
        reader = loop.create_task(recv_all(loop, b))
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sock_sendfile(a, io.BytesIO(data), fallback=False)
        sent = await asyncio.wait_for(loop.sock_sendfile(a, io.BytesIO(data), fallback=True), TIMEOUT)
        a.shutdown(socket.SHUT_WR)
        assert sent == len(data)
        assert await reader == data

    run(loop, main())


def test_sock_sendfile_bad_arguments(loop, pair, data_file, tmp_path):
    a, b = pair
    f, data = data_file

    async def main():
        with pytest.raises(ValueError, match="count must be a positive integer"):
            await loop.sock_sendfile(a, f, 0, 0)
        with pytest.raises(ValueError, match="offset must be a non-negative integer"):
            await loop.sock_sendfile(a, f, -1)
        with pytest.raises(TypeError):
            await loop.sock_sendfile(a, f, "0")
        text = tmp_path / "t.txt"
        text.write_text("text")
        with open(text) as tf:
            with pytest.raises(ValueError, match="binary mode"):
                await loop.sock_sendfile(a, tf)
        with socket.socket(type=socket.SOCK_DGRAM) as u:
            u.setblocking(False)
            with pytest.raises(ValueError, match="only SOCK_STREAM type sockets are supported"):
                await loop.sock_sendfile(u, f)

    run(loop, main())


def test_transport_sendfile_native(loop, data_file):
    f, data = data_file

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.write(b"head:")
        sent = await asyncio.wait_for(loop.sendfile(ct, f, fallback=False), TIMEOUT)
        assert sent == len(data)
        assert f.tell() == len(data)
        ct.write(b":tail")
        assert ct.is_reading()  # reading resumes after the native send
        st.write(b"still reading")
        assert await cp.wait_for_bytes(13) == b"still reading"
        ct.write_eof()
        await asyncio.wait_for(sp.eof, TIMEOUT)
        assert bytes(sp.data) == b"head:" + data + b":tail"
        await close_all(ct, st, server)

    run(loop, main())


def test_transport_sendfile_offset_and_count(loop, data_file):
    f, data = data_file

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        sent = await asyncio.wait_for(loop.sendfile(ct, f, 10, 100_000), TIMEOUT)
        assert sent == 100_000
        assert f.tell() == 100_010
        assert await sp.wait_for_bytes(100_000) == data[10:100_010]
        await close_all(ct, st, server)

    run(loop, main())


def test_transport_sendfile_fallback(loop):
    data = os.urandom(1_000_000)

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, client_protocol=lambda: Recorder(loop))
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(ct, io.BytesIO(data), fallback=False)
        ct.write(b"<")
        sent = await asyncio.wait_for(loop.sendfile(ct, io.BytesIO(data), fallback=True), TIMEOUT)
        assert sent == len(data)
        ct.write(b">")
        # the fallback restores the protocol it borrowed
        assert ct.get_protocol() is cp
        assert await sp.wait_for_bytes(len(data) + 2) == b"<" + data + b">"
        await close_all(ct, st, server)

    run(loop, main())


def test_transport_sendfile_fallback_with_a_paused_peer(loop, loop_name):
    """The fallback waits on the transport's flow control."""
    # Since 3.12 the selector transport queues a view of write()'s argument
    # instead of copying it, and _sendfile_fallback refills that same
    # bytearray while the view may still be queued: the data sent depends on
    # timing (every run on 3.12, about one in three on 3.14 here).
    skip_asyncio_bug(
        loop_name, sys.version_info >= (3, 12), "the sendfile fallback reuses a buffer write() queued without a copy"
    )
    data = os.urandom(8 * 1024 * 1024)

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        st.pause_reading()
        task = loop.create_task(loop.sendfile(ct, io.BytesIO(data), fallback=True))
        for _ in range(20):
            await asyncio.sleep(0.001)
        assert not task.done()
        st.resume_reading()
        assert await asyncio.wait_for(task, TIMEOUT) == len(data)
        assert await sp.wait_for_bytes(len(data)) == data
        await close_all(ct, st, server)

    run(loop, main())


def test_write_during_native_sendfile_is_refused(loop, tmp_path):
    data = os.urandom(32 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        st.pause_reading()
        with open(path, "rb") as f:
            task = loop.create_task(loop.sendfile(ct, f))
            for _ in range(20):
                await asyncio.sleep(0.001)
            assert not task.done()
            with pytest.raises(RuntimeError, match="^unable to write; sendfile is in progress$"):
                ct.write(b"x")
            st.resume_reading()
            assert await asyncio.wait_for(task, TIMEOUT) == len(data)
        assert await sp.wait_for_bytes(len(data)) == data
        await close_all(ct, st, server)

    run(loop, main())


def test_sendfile_on_a_closing_transport(loop, data_file):
    f, data = data_file

    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        ct.close()
        with pytest.raises(RuntimeError, match="Transport is closing"):
            await loop.sendfile(ct, f)
        await close_all(st, server)

    run(loop, main())


def test_sendfile_to_a_peer_that_goes_away(loop, tmp_path):
    data = os.urandom(32 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    async def main():
        with listening_socket() as lsock:
            ct, cp = await loop.create_connection(lambda: Recorder(loop), *lsock.getsockname())
            peer, _ = lsock.accept()
            with open(path, "rb") as f:
                task = loop.create_task(loop.sendfile(ct, f))
                for _ in range(10):
                    await asyncio.sleep(0.001)
                peer.close()
                with pytest.raises(OSError):
                    await asyncio.wait_for(task, TIMEOUT)
            ct.close()
            await asyncio.wait_for(cp.lost, TIMEOUT)

    run(loop, main())


# --- bad input -----------------------------------------------------------------------------


def test_blocking_sockets_are_refused_in_debug_mode(loop, data_file):
    # asyncio checks only in debug mode; otherwise a blocking socket blocks.
    f, _ = data_file
    loop.set_debug(True)

    async def main():
        a, b = socket.socketpair()
        with a, b:
            assert a.getblocking()
            calls = [
                loop.sock_recv(a, 1),
                loop.sock_recv_into(a, bytearray(1)),
                loop.sock_sendall(a, b"x"),
                loop.sock_connect(a, "/nowhere"),
                loop.sock_accept(a),
                loop.sock_sendfile(a, f),
            ]
            for coro in calls:
                with pytest.raises(ValueError, match="^the socket must be non-blocking$"):
                    await coro
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with u:
            for coro in (
                loop.sock_recvfrom(u, 1),
                loop.sock_recvfrom_into(u, bytearray(1)),
                loop.sock_sendto(u, b"x", ("127.0.0.1", 9)),
            ):
                with pytest.raises(ValueError, match="^the socket must be non-blocking$"):
                    await coro

    run(loop, main())


def test_sock_ops_on_a_transport_socket_are_refused(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        fd = ct.get_extra_info("socket").fileno()
        # The same descriptor, as user code might hold it (not a dup).
        s = socket.socket(fileno=fd)
        s.setblocking(False)  # as it is already; the object does not know
        try:
            with pytest.raises(RuntimeError, match=f"File descriptor {fd} is used by transport"):
                await loop.sock_recv(s, 1)
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.sock_recv_into(s, bytearray(1))
        finally:
            s.detach()
        await close_all(ct, st, server)

    run(loop, main())
