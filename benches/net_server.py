"""One benchmark server on one event loop, in this (fresh) process.

Started by benches/net.py, pinned to a CPU; not meant to be run by hand, but
it can be:

    .venv/bin/python benches/net_server.py --loop ferroloop --kind tcp-proto
    .venv/bin/python benches/net_server.py --loop ferroloop --kind tls-proto --cert C.pem --key K.pem

Binds to an ephemeral port on 127.0.0.1 (or --addr PATH for the Unix kind),
prints one JSON line {"addr": ..., "pid": ...} on stdout when it is serving,
then serves until it is killed. Kinds:

    tcp-proto      echo, asyncio.Protocol on loop.create_server
    tcp-streams    echo, asyncio.start_server + reader.read / writer.write / drain
    unix-proto     echo, asyncio.Protocol on loop.create_unix_server
    udp            echo, asyncio.DatagramProtocol on loop.create_datagram_endpoint
    http-httptools keep-alive HTTP/1.1, a Protocol parsing with httptools.HttpRequestParser
    http-aiohttp   aiohttp.web hello world (access log off)
    tls-proto      tcp-proto over TLS (loop.create_server(..., ssl=ctx))
    tls-streams    tcp-streams over TLS (asyncio.start_server(..., ssl=ctx))
    https-httptools http-httptools over TLS

The TLS kinds need --cert (the certificate chain, PEM) and --key (its key,
PEM). Every loop gets the same context: ssl.create_default_context(
ssl.Purpose.CLIENT_AUTH) with that chain loaded, nothing else changed (TLS
1.2 minimum, 1.3 negotiated with the benchmark clients; OpenSSL's defaults
for ciphers, groups and session tickets).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys

HELLO = b"Hello, World!"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(HELLO), HELLO)
)


def loop_factory(name: str):
    if name == "asyncio":
        return asyncio.SelectorEventLoop
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "ferroloop":
        import ferroloop

        return ferroloop.new_event_loop
    raise SystemExit(f"unknown loop {name!r}")


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoDatagram(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class HttpProtocol(asyncio.Protocol):
    """A minimal keep-alive HTTP/1.1 server: httptools parses, every request gets HELLO."""

    def __init__(self):
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.parse_error = httptools.HttpParserError
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except self.parse_error:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()

    def on_message_complete(self):
        self.transport.write(RESPONSE)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


TLS_KINDS = {"tls-proto": "tcp-proto", "tls-streams": "tcp-streams", "https-httptools": "http-httptools"}


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The server context of the TLS kinds, the same on every loop."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def serve(kind: str, addr: str | None, ctx: ssl.SSLContext | None = None):
    loop = asyncio.get_running_loop()
    keep = []  # servers / transports / runners kept alive
    if kind in TLS_KINDS:
        if ctx is None:
            raise SystemExit(f"--kind {kind} needs --cert and --key")
        kind = TLS_KINDS[kind]
    if kind == "tcp-proto":
        srv = await loop.create_server(EchoProtocol, "127.0.0.1", 0, backlog=1024, ssl=ctx)
        where = "%s:%d" % srv.sockets[0].getsockname()[:2]
    elif kind == "tcp-streams":
        srv = await asyncio.start_server(stream_echo, "127.0.0.1", 0, backlog=1024, ssl=ctx)
        where = "%s:%d" % srv.sockets[0].getsockname()[:2]
    elif kind == "unix-proto":
        srv = await loop.create_unix_server(EchoProtocol, addr, backlog=1024)
        where = addr
    elif kind == "udp":
        srv, _ = await loop.create_datagram_endpoint(EchoDatagram, local_addr=("127.0.0.1", 0))
        where = "%s:%d" % srv.get_extra_info("sockname")[:2]
    elif kind == "http-httptools":
        srv = await loop.create_server(HttpProtocol, "127.0.0.1", 0, backlog=1024, ssl=ctx)
        where = "%s:%d" % srv.sockets[0].getsockname()[:2]
    elif kind == "http-aiohttp":
        from aiohttp import web

        async def hello(request):
            return web.Response(text="Hello, World!")

        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        srv = runner
        where = "%s:%d" % runner.addresses[0][:2]
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    keep.append(srv)
    print(json.dumps({"addr": where, "pid": os.getpid()}), flush=True)
    await asyncio.Event().wait()  # serve until killed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", required=True, choices=["asyncio", "uvloop", "ferroloop"])
    ap.add_argument(
        "--kind",
        required=True,
        choices=["tcp-proto", "tcp-streams", "unix-proto", "udp", "http-httptools", "http-aiohttp", *TLS_KINDS],
    )
    ap.add_argument("--addr", default=None, help="socket path for unix-proto")
    ap.add_argument("--cert", default=None, help="certificate chain (PEM) for the TLS kinds")
    ap.add_argument("--key", default=None, help="its private key (PEM)")
    ap.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = tls_context(args.cert, args.key) if args.cert else None
    loop = loop_factory(args.loop)()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(args.kind, args.addr, ctx))
    finally:
        loop.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
