"""A server's accept loop and the transports it makes: what asyncio's
`_accept_connection`/`_accept_connection2` do, on both loops. ferroloop
accepts natively and keeps an accepted connection's socket object and
addresses in Rust until asked; what the program sees must not change."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import resource
import socket
import sys
import warnings

import pytest
from _net import Recorder, close_all, no_fd_leak, tcp_pair  # noqa: F401
from conftest import run, run_once
from test_tcp import drain_errors, needs_ipv6, wait_until

pytestmark = pytest.mark.usefixtures("no_fd_leak")

TIMEOUT = 10


def test_accepted_transport_extra_info(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        client = ct.get_extra_info("socket")
        assert st.get_extra_info("peername") == client.getsockname()
        assert st.get_extra_info("sockname") == client.getpeername()
        sock = st.get_extra_info("socket")
        assert isinstance(sock, asyncio.trsock.TransportSocket)
        assert st.get_extra_info("socket") is sock
        assert (sock.family, sock.type, sock.proto) == (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        assert sock.fileno() == st._sock_fd
        assert sock.getpeername() == client.getsockname()
        # Non-blocking, as asyncio's accept path leaves it.
        assert st._sock.gettimeout() == 0.0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        extra = st._extra
        assert set(extra) >= {"socket", "sockname", "peername"}
        assert extra["peername"] == client.getsockname()
        assert st.get_extra_info("nothing", "default") == "default"
        peer = st.get_extra_info("peername")
        await close_all(ct, st, server)
        # Everything stays after the close; the socket is closed.
        assert st.get_extra_info("peername") == peer
        assert st.get_extra_info("socket") is sock
        assert sock.fileno() == -1
        assert st._sock is None

    run(loop, main())


def test_socket_first_asked_for_after_the_close(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        peer = ct.get_extra_info("sockname")
        local = ct.get_extra_info("peername")
        await close_all(ct, st, server)
        sock = st.get_extra_info("socket")
        assert isinstance(sock, asyncio.trsock.TransportSocket)
        assert sock.fileno() == -1
        assert (sock.family, sock.type) == (socket.AF_INET, socket.SOCK_STREAM)
        assert st.get_extra_info("socket") is sock
        assert st.get_extra_info("peername") == peer
        assert st.get_extra_info("sockname") == local
        assert "closed" in repr(st)

    run(loop, main())


@needs_ipv6
def test_accepted_ipv6_addresses(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop, host="::1")
        peer = st.get_extra_info("peername")
        assert peer == ct.get_extra_info("sockname")
        assert len(peer) == 4 and peer[0] == "::1"
        assert st.get_extra_info("sockname") == ct.get_extra_info("peername")
        assert st.get_extra_info("socket").family == socket.AF_INET6
        await close_all(ct, st, server)

    run(loop, main())


def test_no_nodelay_for_a_listening_socket_without_tcp_proto(loop):
    # asyncio's _set_nodelay only touches sockets whose proto is IPPROTO_TCP;
    # a socket made with socket.socket() has proto 0, and so do its
    # accepted connections.
    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        protocols = []
        server = await loop.create_server(lambda: protocols.append(Recorder(loop)) or protocols[-1], sock=lsock)
        ct, cp = await loop.create_connection(lambda: Recorder(loop), *lsock.getsockname())
        await wait_until(lambda: protocols and protocols[0].transport is not None)
        st = protocols[0].transport
        sock = st.get_extra_info("socket")
        assert sock.proto == 0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        await close_all(ct, st, server)

    run(loop, main())


def test_a_failing_protocol_factory_drops_that_connection_only(loop):
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("no protocol")
        return Recorder(loop)

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        r1, w1 = await asyncio.open_connection(*addr)
        # The first connection is closed; the error is not reported
        # outside debug mode.
        assert await asyncio.wait_for(r1.read(), TIMEOUT) == b""
        r2, w2 = await asyncio.open_connection(*addr)
        w2.write(b"ping")
        await wait_until(lambda: len(calls) == 2)
        w1.close()
        w2.close()
        server.close()
        await server.wait_closed()
        await close_all()

    # asyncio leaves the failed connection's socket to the collector.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        run(loop, main())
    assert loop.unexpected_errors == []


def test_a_failing_protocol_factory_is_reported_in_debug_mode(loop):
    loop.set_debug(True)
    loop.slow_callback_duration = 60

    def factory():
        raise ZeroDivisionError("no protocol")

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        r, w = await asyncio.open_connection(*server.sockets[0].getsockname())
        (ctx,) = await drain_errors(loop)
        assert ctx["message"] == "Error on transport creation for incoming connection"
        assert isinstance(ctx["exception"], ZeroDivisionError)
        assert "protocol" not in ctx
        # asyncio's connection socket lives as long as the exception's
        # traceback; ferroloop has closed it already.
        del ctx
        gc.collect()
        assert await asyncio.wait_for(r.read(), TIMEOUT) == b""
        w.close()
        server.close()
        await server.wait_closed()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        run(loop, main())


def test_debug_mode_logs_each_accepted_connection(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 60

    async def main():
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            st, sp, ct, cp, server = await tcp_pair(loop)
        lines = [r.getMessage() for r in caplog.records if "got a new connection from" in r.getMessage()]
        assert len(lines) == 1
        assert repr(ct.get_extra_info("sockname")) in lines[0]
        assert "<socket.socket fd=" in lines[0]
        await close_all(ct, st, server)

    run(loop, main())


var = contextvars.ContextVar("var", default="unset")


def test_each_connection_runs_in_a_copy_of_the_servers_context(loop):
    seen = []

    class P(asyncio.Protocol):
        def __init__(self):
            seen.append(("factory", var.get()))
            var.set(f"conn{len(seen)}")

        def connection_made(self, transport):
            seen.append(("made", var.get()))
            self.transport = transport

    async def main():
        var.set("server")
        server = await loop.create_server(P, "127.0.0.1", 0)
        var.set("later")
        addr = server.sockets[0].getsockname()
        writers = []
        for _ in range(2):
            writers.append((await asyncio.open_connection(*addr))[1])
            await wait_until(lambda: len(seen) == 2 * len(writers))
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()
        await close_all()

    run(loop, main())
    assert seen == [("factory", "server"), ("made", "conn1"), ("factory", "server"), ("made", "conn3")]


def test_accept_backs_off_when_out_of_descriptors(loop):
    protocols = []

    async def main():
        server = await loop.create_server(lambda: protocols.append(Recorder(loop)) or protocols[-1], "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        # Connections wait in the backlog; no descriptor is left for accept.
        clients = [socket.create_connection(addr) for _ in range(3)]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        highest = max(c.fileno() for c in clients)
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
        # asyncio's accept loop does not stop at the first failure: it
        # reports one per attempt, `backlog` (100 by default) of them, one
        # more from 3.14 on. Waiting for all of them, not only the first,
        # keeps the test from depending on how many one iteration reports.
        expected = 100 + (sys.version_info >= (3, 14))
        try:
            errors = await drain_errors(loop, expected)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert len(errors) == expected
        for ctx in errors:
            assert ctx["message"] == "socket.accept() out of system resource"
            assert isinstance(ctx["exception"], OSError) and ctx["exception"].errno == 24  # EMFILE
            assert isinstance(ctx["socket"], asyncio.trsock.TransportSocket)
        # A second later (asyncio's ACCEPT_RETRY_DELAY) it serves again.
        for c in clients:
            c.sendall(b"hi")
        await wait_until(lambda: len(protocols) == 3 and all(p.transport is not None for p in protocols))
        for p in protocols:
            await p.wait_for_bytes(2)
        assert server.is_serving()
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
        await close_all(*(p.transport for p in protocols))

    run(loop, main())


def test_connections_never_set_up_leak_no_descriptor(loop_factory, loop_name):
    if loop_name == "asyncio":
        pytest.skip("asyncio leaves them to the collector: a pending task is destroyed")
    loop = loop_factory()
    made = []

    async def start():
        return await loop.create_server(lambda: made.append(1) or Recorder(loop), "127.0.0.1", 0)

    server = loop.run_until_complete(start())
    clients = [socket.create_connection(server.sockets[0].getsockname()) for _ in range(3)]
    # One iteration accepts them; the loop closes before they are set up.
    run_once(loop)
    server.close()
    loop.close()
    assert made == []
    for c in clients:
        c.settimeout(TIMEOUT)
        assert c.recv(1) == b""
        c.close()


def test_add_reader_refuses_an_accepted_transports_descriptor(loop):
    async def main():
        st, sp, ct, cp, server = await tcp_pair(loop)
        fd = st._sock_fd
        assert loop._transports[fd] is st
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, lambda: None)
        await close_all(ct, st, server)
        # A closed transport no longer owns it (asyncio may still list it,
        # as closing, until it is collected).
        t = loop._transports.get(fd)
        assert t is None or t.is_closing()
        loop._ensure_fd_no_transport(fd)

    run(loop, main())


def test_garbage_collection_while_connections_wait_to_be_set_up(loop):
    # Many accepted connections queued at once share their server's state;
    # a collection in the middle must count its references right.
    protocols = []

    def factory():
        if not protocols:
            gc.collect()
        protocols.append(Recorder(loop))
        return protocols[-1]

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0, backlog=200)
        addr = server.sockets[0].getsockname()
        clients = [socket.create_connection(addr) for _ in range(150)]
        await wait_until(lambda: len(protocols) == 150 and all(p.transport is not None for p in protocols))
        for i, c in enumerate(clients):
            c.sendall(b"%d" % i)
        for i, p in enumerate(protocols):
            await p.wait_for_bytes(1)
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
        await close_all(*(p.transport for p in protocols))

    run(loop, main())


def test_an_accept_error_goes_to_the_handler_with_asyncios_handle(loop):
    async def main():
        server = await loop.create_server(lambda: Recorder(loop), "127.0.0.1", 0)
        # A listening socket shut down for reading fails accept() with EINVAL.
        lsock = server.sockets[0]
        socket.socket.shutdown(lsock._sock, socket.SHUT_RD)
        errors = await drain_errors(loop)
        # (asyncio's handle shows as cancelled once the server is closed)
        shown = repr(errors[0]["handle"])
        server.close()
        await server.wait_closed()
        ctx = errors[0]
        assert set(ctx) == {"message", "exception", "handle"}
        assert isinstance(ctx["exception"], OSError) and ctx["exception"].errno == 22  # EINVAL
        assert shown.startswith("<Handle BaseSelectorEventLoop._accept_connection(")
        assert ctx["message"] == f"Exception in callback {shown[len('<Handle '):-1]}"

    run(loop, main())
