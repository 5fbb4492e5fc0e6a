"""Where each public method of `ferroloop.Loop` comes from, pinned.

A loop method is the Rust core's, ferroloop's own Python, or asyncio's own
function bound by the table in `_from_asyncio.py`. If a later change swapped
one for another — asyncio's `start_tls` bound over the native one, say, as
happened before this test — the behaviour tests could still pass while the
implementation that runs is not the one claimed. This test fails instead.
"""

from __future__ import annotations

import asyncio

import pytest

import ferroloop
from ferroloop import _ferroloop, _from_asyncio

RUST = {
    "call_at", "call_later", "call_soon", "call_soon_threadsafe", "create_future", "create_task",
    "get_debug", "get_task_factory", "is_closed", "is_running", "set_task_factory", "stats", "stop", "time",
}
FERROLOOP = {
    "add_reader", "add_signal_handler", "add_writer", "close", "remove_reader", "remove_writer",
    "run_forever", "start_tls",
}
ASYNCIO = {
    "call_exception_handler", "connect_accepted_socket", "connect_read_pipe", "connect_write_pipe",
    "create_connection", "create_datagram_endpoint", "create_server", "create_unix_connection",
    "create_unix_server", "default_exception_handler", "get_exception_handler", "getaddrinfo",
    "getnameinfo", "remove_signal_handler", "run_in_executor", "run_until_complete", "sendfile",
    "set_debug", "set_default_executor", "set_exception_handler", "shutdown_asyncgens",
    "shutdown_default_executor", "sock_accept", "sock_connect", "sock_recv", "sock_recv_into",
    "sock_recvfrom", "sock_recvfrom_into", "sock_sendall", "sock_sendfile", "sock_sendto",
    "subprocess_exec", "subprocess_shell",
}  # fmt: skip


def owner(name: str) -> str:
    if name in vars(_ferroloop.BaseEventLoop):
        return "rust"
    if name in vars(ferroloop.Loop):
        found = _from_asyncio.resolve(name)
        bound = found is not None and vars(ferroloop.Loop)[name] is found[1]
        return "asyncio" if bound else "ferroloop"
    for klass in ferroloop.Loop.__mro__:
        if name in vars(klass):
            return f"{klass.__module__}.{klass.__qualname__}"
    raise AssertionError(name)


def public_methods() -> list[str]:
    return [n for n in dir(ferroloop.Loop) if not n.startswith("_") and callable(getattr(ferroloop.Loop, n))]


def test_every_public_method_has_its_pinned_owner():
    pinned = {**dict.fromkeys(RUST, "rust"), **dict.fromkeys(FERROLOOP, "ferroloop"), **dict.fromkeys(ASYNCIO, "asyncio")}
    actual = {name: owner(name) for name in public_methods()}
    # Nothing is left to AbstractEventLoop, whose methods raise NotImplementedError.
    assert actual == {name: pinned.get(name, "(not pinned)") for name in actual}
    assert set(pinned) == set(actual), "a pinned method is gone"


def test_start_tls_is_the_native_tls_layer():
    """loop.start_tls (and so StreamWriter.start_tls) upgrades with the
    Rust TLS layer, not asyncio's Python sslproto."""
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)
    layers = []

    async def handle(reader, writer):
        await writer.start_tls(server_ctx)
        layers.append(type(writer.transport._ssl_protocol))
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        await writer.start_tls(client_ctx, server_hostname="127.0.0.1")
        layers.append(type(writer.transport._ssl_protocol))
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    ferroloop.run(main())
    assert layers == [ferroloop._transports.SSLProtocol] * 2


def test_binding_over_a_method_of_ferroloop_is_refused():
    class Probe(ferroloop.Loop):  # type: ignore[misc]
        def create_connection(self, *args, **kwargs):  # ferroloop's own, here
            raise NotImplementedError

    with pytest.raises(TypeError, match=r"^Probe\.create_connection is ferroloop's own"):
        _from_asyncio.bind(Probe, _ferroloop.BaseEventLoop)
