"""Which contextvars Context each protocol callback runs in.

asyncio runs a transport's protocol callbacks in contexts fixed by where the
transport was set up and, before 3.15, by where each of its handles was
scheduled: `_add_reader` and `call_soon` copy the current context, so a
reader re-added by `resume_reading()` from a task runs in a copy of that
task's context, and `connection_lost` in a copy of the context of whoever
closed the transport. From 3.15 on, a socket transport runs every callback
in one context of its own: a copy of the caller's for `create_connection`,
a copy of the Server's (taken when the Server was made) per connection.

ferroloop's transports call protocols from Rust, outside any handle. Each
scenario here records, for every callback, the value a ContextVar has there;
the recording on ferroloop must equal the recording on asyncio's loop of the
running Python. A few values that every version agrees on are also asserted
outright, so that both loops being wrong the same way still fails.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import ssl
import sys

import pytest
from _net import no_fd_leak, short_tmp  # noqa: F401
from conftest import FACTORIES

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.usefixtures("no_fd_leak")

TIMEOUT = 10
var = contextvars.ContextVar("var", default="unset")


class Tracer(asyncio.Protocol):
    """Records (callback, var's value) and sets var in some callbacks, so
    that whether two callbacks share a context shows in the trace."""

    def __init__(self, trace: list, name: str):
        self.trace = trace
        self.name = name
        self.transport = None
        loop = asyncio.get_running_loop()
        self.data = bytearray()
        self.got = asyncio.Event()
        self.lost = loop.create_future()
        self.record("init")

    def record(self, event: str) -> None:
        entry = (self.name, event, var.get())
        # How a byte stream is cut into reads is the kernel's business.
        if not (event == "data" and self.trace and self.trace[-1] == entry):
            self.trace.append(entry)

    def connection_made(self, transport):
        self.record("made")
        self.transport = transport
        var.set(f"{self.name}:made")

    def data_received(self, data):
        self.record("data")
        self.data += data
        self.got.set()
        var.set(f"{self.name}:data")

    def eof_received(self):
        self.record("eof")

    def pause_writing(self):
        self.record("pause_writing")

    def resume_writing(self):
        self.record("resume_writing")

    def connection_lost(self, exc):
        self.record("lost")
        self.lost.set_result(None)

    async def wait_for(self, n: int) -> None:
        while len(self.data) < n:
            self.got.clear()
            await asyncio.wait_for(self.got.wait(), TIMEOUT)


@pytest.fixture(scope="module")
def tls():
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    return server, client


def on_both(make_coro) -> list:
    """The trace of `make_coro()` on ferroloop, after checking that it is
    the trace on asyncio's loop."""
    traces = {}
    for name, factory in FACTORIES.items():
        loop = factory()
        errors: list = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        try:
            # A fresh context per run: nothing leaks between the loops.
            traces[name] = contextvars.Context().run(loop.run_until_complete, make_coro())
        finally:
            loop.close()
        assert not errors, f"{name}: {errors}"
    assert traces["ferroloop"] == traces["asyncio"]
    return traces["ferroloop"]


async def stream_scenario(server_ssl=None, client_ssl=None, unix_path=None):
    """A client and a server connection through setup, data both ways,
    reading paused and resumed from a task, and a close from a task."""
    loop = asyncio.get_running_loop()
    trace: list = []
    servers: list[Tracer] = []

    def server_protocol():
        p = Tracer(trace, "S")
        servers.append(p)
        return p

    var.set("server-creator")
    if unix_path:
        server = await loop.create_unix_server(server_protocol, unix_path, ssl=server_ssl)
    else:
        server = await loop.create_server(server_protocol, "127.0.0.1", 0, ssl=server_ssl)
    var.set("after-server")
    var.set("client-creator")
    hostname = "127.0.0.1" if client_ssl else None
    if unix_path:
        ct, cp = await loop.create_unix_connection(
            lambda: Tracer(trace, "C"), unix_path, ssl=client_ssl, server_hostname=hostname
        )
    else:
        port = server.sockets[0].getsockname()[1]
        ct, cp = await loop.create_connection(
            lambda: Tracer(trace, "C"), "127.0.0.1", port, ssl=client_ssl, server_hostname=hostname
        )
    var.set("after-client")
    ct.write(b"ping")
    while not servers:
        await asyncio.sleep(0)
    sp = servers[0]
    await sp.wait_for(4)
    sp.transport.write(b"pong")
    await cp.wait_for(4)

    async def pause_and_resume():
        var.set("fiddler")
        sp.transport.pause_reading()
        await asyncio.sleep(0.01)
        sp.transport.resume_reading()

    await loop.create_task(pause_and_resume())
    ct.write(b"more")
    await sp.wait_for(8)

    async def close():
        var.set("closer")
        ct.close()

    await loop.create_task(close())
    await asyncio.wait_for(asyncio.gather(cp.lost, sp.lost), TIMEOUT)
    server.close()
    await server.wait_closed()
    return trace


def test_stream_callbacks():
    trace = on_both(stream_scenario)
    assert ("C", "made", "client-creator") in trace
    assert ("S", "made", "server-creator") in trace
    assert ("S", "init", "server-creator") in trace


def test_stream_callbacks_over_unix_sockets(short_tmp):
    trace = on_both(lambda: stream_scenario(unix_path=os.path.join(short_tmp, "s.sock")))
    assert ("C", "made", "client-creator") in trace


def test_tls_callbacks(tls):
    server_ssl, client_ssl = tls
    trace = on_both(lambda: stream_scenario(server_ssl, client_ssl))
    assert ("C", "made", "client-creator") in trace
    assert ("S", "made", "server-creator") in trace


def test_gh140947_connection_lost_after_a_task_resumed_reading(tls):
    """The shape of CPython's gh-140947 report: a task started from
    data_received pauses and resumes reading; what context does
    connection_lost see? (3.15 fixed it to the transport's.)"""
    server_ssl, client_ssl = tls

    async def scenario(server_ssl=None, client_ssl=None):
        loop = asyncio.get_running_loop()
        trace: list = []
        tasks = set()

        class P(Tracer):
            def data_received(self, data):
                super().data_received(data)
                tasks.add(loop.create_task(self.task()))

            async def task(self):
                var.set("task")
                self.transport.pause_reading()
                await asyncio.sleep(0.01)
                self.transport.resume_reading()

        server = await loop.create_server(lambda: P(trace, "S"), "127.0.0.1", 0, ssl=server_ssl)
        port = server.sockets[0].getsockname()[1]
        hostname = "127.0.0.1" if client_ssl else None
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ssl, server_hostname=hostname)
        writer.write(b"anything")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await writer.wait_closed()
        while not any(e[1] == "lost" for e in trace):
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        server.close()
        await server.wait_closed()
        return trace

    trace = on_both(scenario)
    lost = [e for e in trace if e[1] == "lost"]
    if sys.version_info >= (3, 15):
        assert lost == [("S", "lost", "S:data")]
    else:
        assert lost == [("S", "lost", "task")]
    # Over TLS the application's callbacks come from the TLS layer, inside
    # the socket transport's: only the loops' agreement is asserted.
    tls_trace = on_both(lambda: scenario(server_ssl, client_ssl))
    assert [e[1] for e in tls_trace if e[1] in ("made", "lost")] == ["made", "lost"]


def test_write_flow_control_callbacks():
    """pause_writing runs where write() was called; resume_writing where
    the transport's writer handle runs."""

    async def scenario():
        loop = asyncio.get_running_loop()
        trace: list = []
        servers: list[Tracer] = []

        def server_protocol():
            servers.append(Tracer(trace, "S"))
            return servers[-1]

        server = await loop.create_server(server_protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        var.set("client-creator")
        ct, cp = await loop.create_connection(lambda: Tracer(trace, "C"), "127.0.0.1", port)
        while not servers:
            await asyncio.sleep(0)
        sp = servers[0]
        sp.transport.pause_reading()

        async def write():
            var.set("writer")
            ct.write(b"x" * (16 * 1024 * 1024))

        await loop.create_task(write())
        assert ("C", "pause_writing", "writer") in trace
        var.set("resumer")
        sp.transport.resume_reading()
        await sp.wait_for(16 * 1024 * 1024)
        while ("C", "resume_writing") not in [e[:2] for e in trace]:
            await asyncio.sleep(0.01)
        ct.close()
        await asyncio.wait_for(asyncio.gather(cp.lost, sp.lost), TIMEOUT)
        server.close()
        await server.wait_closed()
        # The server's reads are cut differently on each run.
        return [e for e in trace if e[0] == "C"]

    trace = on_both(scenario)
    assert ("C", "made", "client-creator") in trace


def test_datagram_callbacks():
    async def scenario():
        loop = asyncio.get_running_loop()
        trace: list = []

        class D(Tracer):
            def datagram_received(self, data, addr):
                self.record("datagram")
                self.got.set()
                var.set("D:datagram")

            def error_received(self, exc):
                self.record("error")

        var.set("endpoint-creator")
        t, p = await loop.create_datagram_endpoint(lambda: D(trace, "D"), local_addr=("127.0.0.1", 0))
        var.set("after")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(2):
                p.got.clear()
                s.sendto(b"x", t.get_extra_info("sockname"))
                await asyncio.wait_for(p.got.wait(), TIMEOUT)

        async def close():
            var.set("closer")
            t.close()

        await loop.create_task(close())
        await asyncio.wait_for(p.lost, TIMEOUT)
        return trace

    trace = on_both(scenario)
    assert ("D", "datagram", "endpoint-creator") in trace


def test_read_pipe_callbacks():
    async def scenario():
        loop = asyncio.get_running_loop()
        trace: list = []
        r, w = os.pipe()
        var.set("pipe-creator")
        with open(r, "rb", buffering=0) as pipe:
            t, p = await loop.connect_read_pipe(lambda: Tracer(trace, "P"), pipe)
            var.set("after")
            os.write(w, b"abc")
            await p.wait_for(3)
            os.close(w)
            await asyncio.wait_for(p.lost, TIMEOUT)
        return trace

    trace = on_both(scenario)
    assert ("P", "data", "pipe-creator") in trace


def test_subprocess_callbacks():
    async def scenario():
        loop = asyncio.get_running_loop()
        trace: list = []
        done = loop.create_future()

        class S(asyncio.SubprocessProtocol):
            def record(self, event):
                trace.append((event, var.get()))

            def connection_made(self, transport):
                self.record("made")
                var.set("S:made")

            def pipe_data_received(self, fd, data):
                if not trace or trace[-1][0] != "pipe_data":
                    self.record("pipe_data")

            def pipe_connection_lost(self, fd, exc):
                self.record(f"pipe_lost{fd}")

            def process_exited(self):
                self.record("exited")

            def connection_lost(self, exc):
                # Called once the process has exited and every pipe is
                # lost: the trace is then complete on both loops. (Waiting
                # for process_exited alone raced with the pipes' EOF when
                # the machine was loaded, on either loop's ordering.) It
                # runs in the context of whichever of the two came last,
                # which is a race too on 3.11, whose child watcher reports
                # the exit from its own thread: either context will do.
                lost_in = var.get()
                either = lost_in in ("spawner", "unset")
                trace.append(("lost", "exit's or pipes'" if either else lost_in))
                done.set_result(None)

        var.set("spawner")
        # The child exits only once its stdin is closed, after setup: the
        # exit is then reported by the child watcher, not with setup's calls.
        code = "import sys; sys.stdin.read(); print('hi')"
        t, p = await loop.subprocess_exec(S, sys.executable, "-c", code)
        var.set("after")
        t.get_pipe_transport(0).close()
        await asyncio.wait_for(done, TIMEOUT)
        t.close()
        return sorted(trace)

    trace = on_both(scenario)
    assert ("made", "spawner") in trace
    # asyncio's child watcher: 3.11's calls back from a thread (a context of
    # its own), 3.12+'s from a reader handle made where the child started.
    assert ("exited", "spawner" if sys.version_info >= (3, 12) else "unset") in trace
