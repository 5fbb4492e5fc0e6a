"""Real asyncio libraries on both loops, over TLS and in the clear: an
aiohttp server with aiohttp's and httpx's clients (HTTP/1.1 with request
bodies of many sizes, a WebSocket), a websockets server and client, and
uvicorn (h11 and httptools) serving a FastAPI app, and anyio's TCP, TLS,
UDP and thread APIs.
They exercise the loop the way applications do — create_server/
create_connection with ssl=, streams, flow control, get_extra_info — and
each must give the same results on ferroloop as on asyncio's loop.

Each library is skipped when it is not installed (requirements-dev.txt
installs them all).
"""

from __future__ import annotations

import asyncio
import ssl
from types import SimpleNamespace

import pytest
from _net import no_fd_leak  # noqa: F401
from conftest import run

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.usefixtures("no_fd_leak")

SIZES = [0, 1, 1000, 70_000, 1_000_000]


@pytest.fixture(scope="module")
def certs():
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return SimpleNamespace(server=server, client=client)


async def aiohttp_app(server_ctx):
    """An aiohttp server: POST / answers with what it got, /ws upper-cases
    text messages. Returns (runner, base URL)."""
    from aiohttp import web

    async def echo(request):
        body = await request.read()
        tls = request.transport.get_extra_info("ssl_object") is not None
        return web.Response(body=b"%d:%s:" % (len(body), b"tls" if tls else b"plain") + body)

    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            await sock.send_str(msg.data.upper())
        return sock

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/", echo)
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx).start()
    port = runner.addresses[0][1]
    return runner, f"{'https' if server_ctx else 'http'}://localhost:{port}"


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_aiohttp_server_and_client(loop, certs, tls):
    aiohttp = pytest.importorskip("aiohttp")

    async def main():
        runner, url = await aiohttp_app(certs.server if tls else None)
        got = []
        try:
            async with aiohttp.ClientSession() as session:
                for size in SIZES:
                    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
                    async with session.post(url + "/", data=body, ssl=certs.client if tls else True) as r:
                        got.append((r.status, await r.read() == b"%d:%s:" % (size, b"tls" if tls else b"plain") + body))
                async with session.ws_connect(url + "/ws", ssl=certs.client if tls else True) as ws:
                    for word in ("hello", "ferroloop" * 1000):
                        await ws.send_str(word)
                        got.append((await ws.receive()).data == word.upper())
        finally:
            await runner.cleanup()
        return got

    assert run(loop, main()) == [(200, True)] * len(SIZES) + [True, True]


def test_aiohttp_client_refuses_an_untrusted_server(loop, certs):
    aiohttp = pytest.importorskip("aiohttp")

    async def main():
        runner, url = await aiohttp_app(certs.server)
        try:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
                    await session.post(url + "/", data=b"x", ssl=ssl.create_default_context())
                return type(info.value.certificate_error)
        finally:
            await runner.cleanup()

    assert run(loop, main()) is ssl.SSLCertVerificationError


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_httpx_client(loop, certs, tls):
    httpx = pytest.importorskip("httpx")

    async def main():
        runner, url = await aiohttp_app(certs.server if tls else None)
        try:
            async with httpx.AsyncClient(verify=certs.client if tls else True) as client:
                out = []
                for size in SIZES:
                    r = await client.post(url + "/", content=b"y" * size)
                    out.append((r.status_code, r.content == b"%d:%s:" % (size, b"tls" if tls else b"plain") + b"y" * size))
                return out
        finally:
            await runner.cleanup()

    assert run(loop, main()) == [(200, True)] * len(SIZES)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_websockets_server_and_client(loop, certs, tls):
    pytest.importorskip("websockets")
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def reverse(ws):
        async for msg in ws:
            await ws.send(msg[::-1])

    async def main():
        out = []
        async with serve(reverse, "127.0.0.1", 0, ssl=certs.server if tls else None) as server:
            port = list(server.sockets)[0].getsockname()[1]
            uri = f"{'wss' if tls else 'ws'}://localhost:{port}"
            async with connect(uri, ssl=certs.client if tls else None) as ws:
                for msg in ("abc", "d" * 100_000, b"\x00\x01" * 300_000):
                    await ws.send(msg)
                    out.append(await ws.recv() == msg[::-1])
        return out

    assert run(loop, main()) == [True, True, True]


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_uvicorn_serving_fastapi(loop, http):
    uvicorn = pytest.importorskip("uvicorn")
    fastapi = pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    pytest.importorskip(http)
    import hashlib
    import socket

    # Starlette-style endpoints (FastAPI's add_route): this module's
    # postponed annotations would hide a `Request` annotation from FastAPI.
    async def echo(request):
        body = await request.body()
        return fastapi.responses.JSONResponse(
            {
                "size": len(body),
                "sha": hashlib.sha256(body).hexdigest(),
                "client": [request.client.host, request.client.port],
                "server": list(request.scope["server"]),
            }
        )

    async def stream(request):
        async def chunks():
            for i in range(50):
                yield b"%04d" % i * 1000

        return fastapi.responses.StreamingResponse(chunks())

    app = fastapi.FastAPI()
    app.add_route("/echo", echo, methods=["POST"])
    app.add_route("/stream", stream)

    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, http=http, lifespan="on", log_level="warning", ws="none")
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            out = []
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                for size in SIZES:
                    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
                    r = await client.post("/echo", content=body)
                    got = r.json()
                    host, client_port = got["client"]
                    out.append(
                        (
                            r.status_code,
                            got["size"] == size and got["sha"] == hashlib.sha256(body).hexdigest(),
                            host == "127.0.0.1" and client_port not in (0, port),
                            got["server"] == ["127.0.0.1", port],
                        )
                    )
                r = await client.get("/stream")
                out.append(r.content == b"".join(b"%04d" % i * 1000 for i in range(50)))
            return out
        finally:
            server.should_exit = True
            await serving
            sock.close()

    assert run(loop, main()) == [(200, True, True, True)] * len(SIZES) + [True]


def test_anyio_tcp_tls_udp_and_threads(loop, certs):
    anyio = pytest.importorskip("anyio")
    from anyio.streams.tls import TLSListener, TLSStream

    async def serve(stream):
        async with stream:
            async for chunk in stream:
                await stream.send(chunk.upper())

    async def main():
        out = []
        async with anyio.create_task_group() as tg:
            # TCP: anyio's listener accepts with loop.sock_accept.
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            tg.start_soon(listener.serve, serve)
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(b"hello")
                out.append(await s.receive())
            # TLS: anyio's own TLS stream over a ferroloop connection.
            tls_listener = TLSListener(await anyio.create_tcp_listener(local_host="127.0.0.1"), certs.server)
            tls_port = tls_listener.listener.extra(anyio.abc.SocketAttribute.local_port)
            tg.start_soon(tls_listener.serve, serve)
            raw = await anyio.connect_tcp("127.0.0.1", tls_port)
            tls = await TLSStream.wrap(raw, hostname="127.0.0.1", ssl_context=certs.client)
            async with tls:
                await tls.send(b"secret")
                out.append(await tls.receive())
            # UDP through create_datagram_endpoint.
            async with await anyio.create_udp_socket(local_host="127.0.0.1") as a:
                async with await anyio.create_connected_udp_socket(
                    "127.0.0.1", a.extra(anyio.abc.SocketAttribute.local_port)
                ) as b:
                    await b.send(b"datagram")
                    data, addr = await a.receive()
                    out.append((data, addr == b.extra(anyio.abc.SocketAttribute.local_address)))
            # A worker thread that calls back into the loop.
            out.append(await anyio.to_thread.run_sync(lambda: anyio.from_thread.run_sync(lambda: "back")))
            tg.cancel_scope.cancel()
        await listener.aclose()
        await tls_listener.aclose()
        return out

    assert run(loop, main()) == [b"HELLO", b"SECRET", (b"datagram", True), "back"]
