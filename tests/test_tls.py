"""TLS on both loops, asyncio's behaviour as the reference.

Covers create_server/create_connection with an SSLContext (a Protocol, a
BufferedProtocol, streams, Unix sockets, connect_accepted_socket),
loop.start_tls and StreamWriter.start_tls, asyncio's argument checks
(server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout) and their
messages, the TLS transport (extra info, write_eof, close with close_notify,
abort, flow control, pause/resume reading), TLS 1.2 and 1.3, ALPN, SNI,
mutual TLS, session resumption, and failures: an untrusted CA, a hostname
mismatch, a handshake timeout on either side, a peer speaking garbage, a peer
vanishing without close_notify. The native layer's less travelled paths:
TLS inside TLS (buffers lent to a transport that is not a socket), a
context's `sslobject_class`, a failing protocol, writes after close. Last,
300 TLS connections in a row leave no descriptor and no transport alive.

Certificates are made once per session with trustme; everything is loopback.
No descriptor may outlive a test.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import re
import socket
import ssl
import struct
import sys
import weakref
from types import SimpleNamespace

import pytest
from _net import Recorder, close_all, listening_socket, no_fd_leak, short_tmp, skip_asyncio_bug  # noqa: F401
from conftest import run

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.usefixtures("no_fd_leak")

TIMEOUT = 10
NON_CONTIGUOUS = "memoryview: underlying buffer is not C-contiguous"
MIB = 1024 * 1024
V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
VERSIONS = pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    ca = trustme.CA()
    ca_pem = tmp_path_factory.mktemp("pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    return SimpleNamespace(
        ca=ca,
        ca_pem=str(ca_pem),
        other_ca=trustme.CA(),  # trusted by nobody
        server=ca.issue_cert("localhost", "127.0.0.1"),
        elsewhere=ca.issue_cert("elsewhere.example"),  # valid, but for another name
        client=ca.issue_cert("client@example.org", common_name="ferroloop-client"),
    )


def server_ctx(pki, cert=None, version=None, client_auth=False):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    (cert or pki.server).configure_cert(ctx)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if client_auth:
        ctx.verify_mode = ssl.CERT_REQUIRED
        pki.ca.configure_trust(ctx)
    return ctx


def client_ctx(pki, ca=None, version=None, cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts only `ca`; checks the hostname
    (ca or pki.ca).configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def wait_until(pred, timeout=TIMEOUT):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


async def serve(loop, sctx, protocol=None, **kw):
    """A TLS server on 127.0.0.1: (server, port, the protocols it made)."""
    made = []

    def factory():
        made.append((protocol or Recorder)())
        return made[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0, ssl=sctx, **kw)
    return server, server.sockets[0].getsockname()[1], made


def connect(loop, port, cctx, protocol=None, **kw):
    kw.setdefault("server_hostname", "localhost")
    return loop.create_connection(protocol or Recorder, "127.0.0.1", port, ssl=cctx, **kw)


async def tls_pair(loop, pki, sctx=None, cctx=None, server_protocol=None, client_protocol=None):
    """(server transport, server protocol, client transport, client
    protocol, server) of a TLS connection, both handshakes done."""
    server, port, made = await serve(loop, sctx or server_ctx(pki), server_protocol)
    ct, cp = await connect(loop, port, cctx or client_ctx(pki), client_protocol)
    await wait_until(lambda: made and getattr(made[0], "transport", None) is not None)
    return made[0].transport, made[0], ct, cp, server


def outcome(loop, coro_fn):
    """('ok', result) or (exception type, message) of `coro_fn(loop)`."""
    try:
        return ("ok", loop.run_until_complete(coro_fn(loop)))
    except Exception as exc:
        return (type(exc), str(exc))


def on_fresh_asyncio(coro_fn):
    """The outcome of `coro_fn` on a new asyncio loop: the reference."""
    ref = asyncio.SelectorEventLoop()
    try:
        return outcome(ref, coro_fn)
    finally:
        ref.close()


# --- data through TLS ---------------------------------------------------------------------------


class Sink(asyncio.BufferedProtocol):
    """Collects what it is given through a small buffer of its own."""

    def __init__(self):
        self.buf, self.data = bytearray(5000), bytearray()
        self.lost = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint):
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        self.data += self.buf[:nbytes]

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@pytest.mark.parametrize("size, app", [(1, Recorder), (64 * 1024, Recorder), (MIB, Recorder), (MIB, Sink)])
def test_echo_both_ways(loop, pki, size, app):
    async def main():
        st, sp, ct, cp, server = await tls_pair(loop, pki, server_protocol=Echo, client_protocol=app)
        payload = os.urandom(size)
        ct.write(payload)
        await wait_until(lambda: len(cp.data) >= size)
        assert hashlib.sha256(cp.data).digest() == hashlib.sha256(payload).digest()
        await close_all(ct, server)
        assert await asyncio.wait_for(cp.lost, TIMEOUT) is None

    run(loop, main())


@pytest.mark.parametrize("mode", ["tls", "starttls", "abort"])
def test_streams(loop, pki, mode):
    """start_server/open_connection with ssl=, or StreamWriter.start_tls on a
    plain connection; the server ends with close_notify, or aborts."""

    async def main():
        handlers = []

        async def handle(reader, writer):
            handlers.append(asyncio.current_task())
            if mode == "starttls":
                assert await reader.readline() == b"STARTTLS\n"
                writer.write(b"GO\n")
                await writer.drain()
                await writer.start_tls(server_ctx(pki))
            writer.write((await reader.readline()).upper() + b"y" * 300_000)
            await writer.drain()
            if mode == "abort":  # no close_notify: still a plain EOF for the reader
                writer.transport.abort()
            else:
                writer.close()
                await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=None if mode == "starttls" else server_ctx(pki))
        port = server.sockets[0].getsockname()[1]
        if mode == "starttls":
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert writer.get_extra_info("ssl_object") is None
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"GO\n"
            await writer.start_tls(client_ctx(pki), server_hostname="localhost")
        else:
            tls = dict(ssl=client_ctx(pki), server_hostname="localhost")
            reader, writer = await asyncio.open_connection("127.0.0.1", port, **tls)
        assert writer.get_extra_info("ssl_object").server_hostname == "localhost"
        assert writer.can_write_eof() is False
        writer.write(b"hello tls\n")
        assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"HELLO TLS\n"
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"y" * 300_000
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()
        await asyncio.gather(*handlers)
        await close_all(server)

    run(loop, main())


def test_unix_socket_with_tls(loop, pki, short_tmp):
    async def main():
        path = os.path.join(short_tmp, "tls.sock")
        server = await loop.create_unix_server(Echo, path, ssl=server_ctx(pki))
        ct, cp = await loop.create_unix_connection(Recorder, path, ssl=client_ctx(pki), server_hostname="localhost")
        assert ct.get_extra_info("peername") == path
        assert ct.get_extra_info("ssl_object").server_hostname == "localhost"
        ct.write(b"over a unix socket")
        assert await cp.wait_for_bytes(18) == b"over a unix socket"
        await close_all(ct, server)
        assert await asyncio.wait_for(cp.lost, TIMEOUT) is None

    run(loop, main())


def test_connect_accepted_socket_with_tls(loop, pki):
    async def main():
        with listening_socket() as lsock:
            csock = socket.create_connection(lsock.getsockname())
            ssock, _ = lsock.accept()
            (st, sp), (ct, cp) = await asyncio.gather(
                loop.connect_accepted_socket(Recorder, ssock, ssl=server_ctx(pki)),
                loop.create_connection(Recorder, sock=csock, ssl=client_ctx(pki), server_hostname="localhost"),
            )
        assert st.get_extra_info("ssl_object").server_side is True
        ct.write(b"up")
        assert await sp.wait_for_bytes(2) == b"up"
        st.write(b"down")
        assert await cp.wait_for_bytes(4) == b"down"
        ct.close()
        assert await asyncio.wait_for(sp.lost, TIMEOUT) is None
        assert await asyncio.wait_for(cp.lost, TIMEOUT) is None

    run(loop, main())


# --- asyncio's argument checks ------------------------------------------------------------------

CTX, SCTX = object(), object()  # stand for a client / server SSLContext
NO_SSL = "%s is only meaningful with ssl"
POSITIVE = "%s should be a positive number, got %s"
ARG_CASES = [  # (id, call, keyword arguments, what asyncio raises)
    ("hostname-no-ssl", "connect", dict(server_hostname="x"), (ValueError, NO_SSL % "server_hostname")),
    ("ssl-true-no-host", "connect_sock", dict(ssl=True),
     (ValueError, "You must set server_hostname when using ssl without a host")),
    ("unix-ssl-no-hostname", "unix_connect", dict(ssl=CTX),
     (ValueError, "you have to pass server_hostname when using ssl")),
    ("unix-hostname-no-ssl", "unix_connect", dict(server_hostname="x"), (ValueError, NO_SSL % "server_hostname")),
    ("handshake-no-ssl", "connect", dict(ssl_handshake_timeout=1), (ValueError, NO_SSL % "ssl_handshake_timeout")),
    ("shutdown-no-ssl", "connect", dict(ssl_shutdown_timeout=1), (ValueError, NO_SSL % "ssl_shutdown_timeout")),
    ("server-handshake-no-ssl", "serve", dict(ssl_handshake_timeout=1), (ValueError, NO_SSL % "ssl_handshake_timeout")),
    ("server-shutdown-no-ssl", "serve", dict(ssl_shutdown_timeout=1), (ValueError, NO_SSL % "ssl_shutdown_timeout")),
    ("server-ssl-true", "serve", dict(ssl=True), (TypeError, "ssl argument must be an SSLContext or None")),
    ("unix-server-handshake-no-ssl", "unix_serve", dict(ssl_handshake_timeout=1),
     (ValueError, NO_SSL % "ssl_handshake_timeout")),
    ("accepted-handshake-no-ssl", "accepted", dict(ssl_handshake_timeout=1),
     (ValueError, NO_SSL % "ssl_handshake_timeout")),
    ("handshake-zero", "connect_sock", dict(ssl=CTX, server_hostname="x", ssl_handshake_timeout=0),
     (ValueError, POSITIVE % ("ssl_handshake_timeout", 0))),
    ("handshake-negative", "connect_sock", dict(ssl=CTX, server_hostname="x", ssl_handshake_timeout=-1.5),
     (ValueError, POSITIVE % ("ssl_handshake_timeout", -1.5))),
    ("shutdown-zero", "connect_sock", dict(ssl=CTX, server_hostname="x", ssl_shutdown_timeout=0),
     (ValueError, POSITIVE % ("ssl_shutdown_timeout", 0))),
    ("accepted-shutdown-negative", "accepted", dict(ssl=SCTX, ssl_shutdown_timeout=-1),
     (ValueError, POSITIVE % ("ssl_shutdown_timeout", -1))),
]


async def _call(loop, pki, what, kw):
    kw = {k: client_ctx(pki) if v is CTX else server_ctx(pki) if v is SCTX else v for k, v in kw.items()}
    a, b = socket.socketpair()
    with a, b:
        if what == "connect":
            return await loop.create_connection(asyncio.Protocol, "127.0.0.1", 9, **kw)
        if what == "connect_sock":
            return await loop.create_connection(asyncio.Protocol, sock=a, **kw)
        if what == "unix_connect":
            return await loop.create_unix_connection(asyncio.Protocol, "/nonexistent", **kw)
        if what == "serve":
            return await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, **kw)
        if what == "unix_serve":
            return await loop.create_unix_server(asyncio.Protocol, "/nonexistent/s", **kw)
        return await loop.connect_accepted_socket(asyncio.Protocol, a, **kw)


@pytest.mark.parametrize("what, kw, expected", [c[1:] for c in ARG_CASES], ids=[c[0] for c in ARG_CASES])
def test_argument_checks_match_asyncio(loop, pki, what, kw, expected):
    want = on_fresh_asyncio(lambda lp: _call(lp, pki, what, kw))
    assert want == expected  # asyncio's own behaviour, pinned
    assert outcome(loop, lambda lp: _call(lp, pki, what, kw)) == want


def _refuses_empty_hostname(ctx):
    try:
        # asyncio hands ssl None for an empty server_hostname.
        ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname=None)
    except ValueError:
        return True
    return False


@pytest.mark.parametrize(
    "cert, ca, hostname, expected, sni",
    [
        ("server", "ca", None, "ok", None),  # defaults to the host, an IP: checked, no SNI sent
        ("server", "ca", "localhost", "ok", "localhost"),
        ("elsewhere", "ca", "", "ok", None),  # '' skips the hostname check, even with check_hostname
        ("elsewhere", "ca", None, 64, None),  # X509_V_ERR_IP_ADDRESS_MISMATCH
        ("server", "ca", "wrong.example", 62, "wrong.example"),  # X509_V_ERR_HOSTNAME_MISMATCH
        ("server", "other_ca", "localhost", 20, "localhost"),  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        ("elsewhere", "ssl=True", None, 64, None),  # asyncio's default context, trusting SSL_CERT_FILE
        ("elsewhere", "ssl=True", "", "ok", None),  # ... whose check_hostname '' turns off
    ],
)
def test_certificate_checks_and_sni(loop, pki, monkeypatch, cert, ca, hostname, expected, sni):
    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_pem)  # read by ssl.create_default_context()

    async def main():
        names = []
        sctx = server_ctx(pki, cert=getattr(pki, cert))
        sctx.sni_callback = lambda sslobj, name, ctx: names.append(name)
        server, port, _ = await serve(loop, sctx, Echo)
        cctx = True if ca == "ssl=True" else client_ctx(pki, ca=getattr(pki, ca))
        kw = {} if hostname is None else {"server_hostname": hostname}
        if hostname == "" and cctx is not True and _refuses_empty_hostname(cctx):
            # 3.14's ssl refuses '' with check_hostname on, before any I/O.
            with pytest.raises(ValueError, match="^check_hostname requires server_hostname$"):
                await loop.create_connection(Recorder, "127.0.0.1", port, ssl=cctx, **kw)
            await close_all(server)
            return
        try:
            ct, cp = await loop.create_connection(Recorder, "127.0.0.1", port, ssl=cctx, **kw)
        except ssl.SSLCertVerificationError as exc:
            assert exc.verify_code == expected
            assert exc.reason == "CERTIFICATE_VERIFY_FAILED"
            assert str(exc).startswith("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ")
            assert exc.verify_message in str(exc)
        else:
            assert expected == "ok"
            assert ct.get_extra_info("sslcontext").check_hostname is (cctx is not True)
            ct.write(b"x")
            await cp.wait_for_bytes(1)
            await close_all(ct)
        await close_all(server)
        assert names == [sni]

    run(loop, main())


# --- upgrading a plain connection ---------------------------------------------------------------


def test_loop_start_tls_on_both_sides(loop, pki):
    async def main():
        plain_server, port, made = await serve(loop, None)
        ct, cp = await loop.create_connection(Recorder, "127.0.0.1", port)
        await wait_until(lambda: made)
        sp = made[0]
        st = await sp.made
        ct.write(b"plain ")
        assert await sp.wait_for_bytes(6) == b"plain "
        # asyncio's checks come before the transport is touched.
        with pytest.raises(TypeError, match="sslcontext is expected to be an instance of ssl.SSLContext"):
            await loop.start_tls(ct, cp, True)
        with pytest.raises(ValueError, match="ssl_handshake_timeout should be a positive number, got 0"):
            await loop.start_tls(ct, cp, client_ctx(pki), ssl_handshake_timeout=0)
        st2, ct2 = await asyncio.gather(
            loop.start_tls(st, sp, server_ctx(pki), server_side=True),
            loop.start_tls(ct, cp, client_ctx(pki), server_hostname="localhost"),
        )
        assert isinstance(ct2, asyncio.Transport) and ct2 is not ct
        assert ct2.get_protocol() is cp and ct.get_protocol() is not cp
        assert ct2.get_extra_info("ssl_object").server_hostname == "localhost"
        assert st2.get_extra_info("ssl_object").server_side is True
        ct2.write(b"secret")
        assert await sp.wait_for_bytes(12) == b"plain secret"
        st2.write(b"reply")
        assert await cp.wait_for_bytes(5) == b"reply"
        ct2.close()
        assert await asyncio.wait_for(sp.lost, TIMEOUT) is None
        assert await asyncio.wait_for(cp.lost, TIMEOUT) is None
        assert [e[0] for e in sp.events] == ["made", "data", "eof", "lost"]
        await close_all(plain_server)

    run(loop, main())


# --- the TLS transport --------------------------------------------------------------------------

EXTRA_TYPES = {  # compression: None, OpenSSL is built without TLS compression
    "ssl_object": ssl.SSLObject, "cipher": tuple, "compression": type(None), "sslcontext": ssl.SSLContext,
    "socket": asyncio.trsock.TransportSocket, "peername": tuple, "sockname": tuple,
}  # fmt: skip


def test_transport_api_and_extra_info(loop, pki):
    async def main():
        sctx, cctx = server_ctx(pki), client_ctx(pki)
        st, sp, ct, cp, server = await tls_pair(loop, pki, sctx, cctx)
        # The server asked for no client certificate: its peercert is None.
        for t, ctx, peercert in ((ct, cctx, dict), (st, sctx, type(None))):
            assert isinstance(t, asyncio.Transport)
            assert {k: type(t.get_extra_info(k)) for k in EXTRA_TYPES} == EXTRA_TYPES
            assert type(t.get_extra_info("peercert")) is peercert
            assert t.get_extra_info("sslcontext") is ctx
            assert t.get_extra_info("cipher") == t.get_extra_info("ssl_object").cipher()
            assert t.get_extra_info("no such key", "default") == "default"
            assert t.can_write_eof() is False
            assert t.is_reading() and not t.is_closing()
        assert ct.get_extra_info("peername") == st.get_extra_info("sockname")
        assert ct.get_extra_info("socket").family == socket.AF_INET
        assert ("DNS", "localhost") in ct.get_extra_info("peercert")["subjectAltName"]
        assert ct.get_protocol() is cp and st.get_protocol() is sp
        with pytest.raises(NotImplementedError) as info:
            ct.write_eof()
        assert str(info.value) == ""
        await close_all(ct, server)

    run(loop, main())


def test_close_flushes_then_close_notify_on_both_ends(loop, pki):
    async def main():
        st, sp, ct, cp, server = await tls_pair(loop, pki)
        payload = os.urandom(MIB)
        ct.write(payload)
        ct.close()
        assert ct.is_closing()
        assert await asyncio.wait_for(cp.lost, TIMEOUT) is None
        assert await asyncio.wait_for(sp.lost, TIMEOUT) is None
        assert sp.data == payload
        # The closing side gets the peer's close_notify as eof_received too.
        assert cp.events == [("made",), ("eof",), ("lost", None)]
        assert sp.events == [("made",), ("data", payload), ("eof",), ("lost", None)]
        await close_all(server)

    run(loop, main())


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_abort_drops_the_connection_without_close_notify(loop, pki, how):
    async def main():
        st, sp, ct, cp, server = await tls_pair(loop, pki)
        st.write(b"x" * 1000)
        await cp.wait_for_bytes(1000)
        if how == "rst":
            ct.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ct.abort()
        assert await asyncio.wait_for(cp.lost, TIMEOUT) is None
        exc = await asyncio.wait_for(sp.lost, TIMEOUT)
        if how == "fin":  # a TCP EOF without close_notify is an EOF to asyncio
            assert sp.events == [("made",), ("eof",), ("lost", None)]
        else:
            assert sp.events == [("made",), ("lost", exc)]
            assert type(exc) is ConnectionResetError
        assert cp.events == [("made",), ("data", b"x" * 1000), ("lost", None)]
        await close_all(server)

    run(loop, main())


def test_flow_control_and_pause_reading(loop, pki):
    class Writer(Recorder):
        def pause_writing(self):
            self.events.append(("pause",))

        def resume_writing(self):
            self.events.append(("resume",))

    async def main():
        st, sp, ct, cp, server = await tls_pair(loop, pki, server_protocol=Writer)
        ct.pause_reading()
        assert not ct.is_reading()
        st.set_write_buffer_limits(high=64 * 1024)
        assert st.get_write_buffer_limits() == (16 * 1024, 64 * 1024)  # asyncio's order: (low, high)
        chunk, sent = b"z" * (256 * 1024), 0
        while ("pause",) not in sp.events:  # write faster than the paused peer reads
            assert sent < 256 * MIB, "pause_writing never called"
            st.write(chunk)
            sent += len(chunk)
            await asyncio.sleep(0)
        assert st.get_write_buffer_size() > 64 * 1024
        await asyncio.sleep(0.05)
        assert cp.data == b""  # nothing delivered while paused
        ct.resume_reading()
        assert ct.is_reading()
        assert len(await cp.wait_for_bytes(sent, timeout=30)) == sent
        await wait_until(lambda: ("resume",) in sp.events)
        assert sp.events == [("made",), ("pause",), ("resume",)]
        await close_all(ct, server)

    run(loop, main())


# --- protocol versions and extensions -----------------------------------------------------------


@pytest.mark.parametrize("offer, chosen", [(["spdy/1", "http/1.1"], "http/1.1"), (None, None)])
def test_alpn(loop, pki, offer, chosen):
    async def main():
        sctx, cctx = server_ctx(pki), client_ctx(pki)
        sctx.set_alpn_protocols(["h2", "http/1.1"])
        if offer:
            cctx.set_alpn_protocols(offer)
        st, sp, ct, cp, server = await tls_pair(loop, pki, sctx, cctx)
        assert ct.get_extra_info("ssl_object").selected_alpn_protocol() == chosen
        assert st.get_extra_info("ssl_object").selected_alpn_protocol() == chosen
        await close_all(ct, server)

    run(loop, main())


@VERSIONS
def test_pinned_version_with_mutual_tls(loop, pki, version):
    async def main():
        sctx = server_ctx(pki, version=version, client_auth=True)
        cctx = client_ctx(pki, version=version, cert=pki.client)
        st, sp, ct, cp, server = await tls_pair(loop, pki, sctx, cctx)
        name = {V12: "TLSv1.2", V13: "TLSv1.3"}[version]
        for t in (st, ct):
            assert t.get_extra_info("ssl_object").version() == name
            assert t.get_extra_info("cipher")[1] == name
        peer = st.get_extra_info("peercert")  # the client's certificate
        assert peer == st.get_extra_info("ssl_object").getpeercert()
        assert (("commonName", "ferroloop-client"),) in peer["subject"]
        ct.write(b"me")
        assert await sp.wait_for_bytes(2) == b"me"
        await close_all(ct, server)

    run(loop, main())


@VERSIONS
def test_mutual_tls_without_a_client_certificate(loop, pki, version):
    async def main():
        server, port, made = await serve(loop, server_ctx(pki, version=version, client_auth=True))
        if version == V12:
            # The server drops the connection mid-handshake (its alert is not flushed).
            with pytest.raises(ConnectionResetError):
                await connect(loop, port, client_ctx(pki))
        else:
            # TLS 1.3: the client is done before the server checks; then a plain EOF.
            ct, cp = await connect(loop, port, client_ctx(pki))
            assert await asyncio.wait_for(cp.lost, TIMEOUT) is None
            assert cp.events == [("made",), ("eof",), ("lost", None)]
        assert [p.events for p in made] == [[]]  # the server's app protocol never connected
        await close_all(server)

    run(loop, main())


class ResumingContext(ssl.SSLContext):
    """Offers the last saved session: asyncio has no session= argument, but
    it makes its SSLObject with ctx.wrap_bio()."""

    saved = None

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None, session=None):
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session=self.saved)


@VERSIONS
@pytest.mark.parametrize("resume", [False, True], ids=["same-context", "session-offered"])
def test_session_resumption(loop, pki, version, resume):
    async def scenario(loop):
        server, port, _ = await serve(loop, server_ctx(pki, version=version), Echo)
        cctx = (ResumingContext if resume else ssl.SSLContext)(ssl.PROTOCOL_TLS_CLIENT)
        pki.ca.configure_trust(cctx)
        reused = []
        for _ in range(3):
            ct, cp = await connect(loop, port, cctx)
            ct.write(b"hi")
            await cp.wait_for_bytes(2)  # TLS 1.3 tickets come after the handshake
            sslobj = ct.get_extra_info("ssl_object")
            reused.append(sslobj.session_reused)
            cctx.saved = sslobj.session
            ct.close()
            await asyncio.wait_for(cp.lost, TIMEOUT)
        await close_all(server)
        return reused

    want = on_fresh_asyncio(scenario)
    # A client context alone never resumes (OpenSSL keeps no client-side
    # cache); offering the previous session does.
    assert want == ("ok", [False, True, True] if resume else [False, False, False])
    assert outcome(loop, scenario) == want


# --- failures -----------------------------------------------------------------------------------


async def _echo_once(loop, pki):
    st, sp, ct, cp, server = await tls_pair(loop, pki, server_protocol=Echo)
    ct.write(b"still fine")
    assert await cp.wait_for_bytes(10) == b"still fine"
    await close_all(ct, server)


def test_client_handshake_timeout(loop, pki):
    async def main():
        with listening_socket() as lsock:  # accepts TCP, never speaks TLS
            with pytest.raises(ConnectionAbortedError) as info:
                await connect(loop, lsock.getsockname()[1], client_ctx(pki), ssl_handshake_timeout=0.2)
            assert str(info.value) == "SSL handshake is taking longer than 0.2 seconds: aborting the connection"
            peer, _ = lsock.accept()
            with peer:
                peer.settimeout(TIMEOUT)
                assert peer.recv(4096)[:1] == b"\x16"  # the ClientHello it sent
                assert peer.recv(4096) == b""  # then the client closed

    run(loop, main())


@pytest.mark.parametrize("send", [b"", b"GET / HTTP/1.0\r\n\r\n"], ids=["silent", "garbage"])
def test_server_drops_a_client_that_does_not_speak_tls(loop, pki, send):
    async def main():
        timeout = None if send else 0.2  # garbage must be dropped at once, not by the timeout
        server, port, made = await serve(loop, server_ctx(pki), ssl_handshake_timeout=timeout)
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.setblocking(False)
            await loop.sock_sendall(raw, send)
            # Dropped without a TLS alert flushed.
            assert await asyncio.wait_for(loop.sock_recv(raw, 4096), TIMEOUT) == b""
        assert [p.events for p in made] == [[]]  # the app protocol never connected
        await close_all(server)
        await _echo_once(loop, pki)  # the loop keeps working

    run(loop, main())


def test_garbage_from_the_server(loop, pki):
    async def main():
        handlers = []

        async def garbage(reader, writer):
            handlers.append(asyncio.current_task())
            await reader.read(1)
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await reader.read()  # the rest of the ClientHello, then the client's EOF
            assert reader.at_eof()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        with pytest.raises(ssl.SSLError) as info:
            await connect(loop, server.sockets[0].getsockname()[1], client_ctx(pki))
        assert info.value.reason == "WRONG_VERSION_NUMBER"
        await asyncio.wait_for(asyncio.gather(*handlers), TIMEOUT)
        await close_all(server)
        await _echo_once(loop, pki)  # the loop keeps working

    run(loop, main())


# --- the layer's less travelled paths ----------------------------------------------------------


def test_tls_inside_tls(loop, pki):
    """start_tls on a transport that already is TLS: the inner layer's
    transport is the outer TLS transport, which lends it buffers
    (get_buffer/buffer_updated) instead of feeding it from the socket."""

    async def main():
        st, sp, ct, cp, server = await tls_pair(loop, pki)
        st2, ct2 = await asyncio.gather(
            loop.start_tls(st, sp, server_ctx(pki), server_side=True),
            loop.start_tls(ct, cp, client_ctx(pki), server_hostname="localhost"),
        )
        inner = ct2.get_extra_info("ssl_object")
        assert inner is not ct.get_extra_info("ssl_object") and inner.version() is not None
        payload = os.urandom(300_000)
        ct2.write(payload)
        await sp.wait_for_bytes(len(payload))
        assert hashlib.sha256(sp.data).digest() == hashlib.sha256(payload).digest()
        st2.writelines([b"back ", b"again"])
        assert await cp.wait_for_bytes(10) == b"back again"
        ct2.close()
        assert await asyncio.wait_for(sp.lost, TIMEOUT) is None
        assert await asyncio.wait_for(cp.lost, TIMEOUT) is None
        # The closing side hears the peer's close_notify as eof_received.
        assert [e[0] for e in cp.events] == ["made", "data", "eof", "lost"]
        for t in (st, ct):
            t.close()
        await close_all(server)

    run(loop, main())


def test_sslobject_subclass_is_used(loop, pki):
    """A context's sslobject_class: its methods, not OpenSSL's directly,
    are what the loop calls."""
    calls: dict[str, int] = {}

    class Counting(ssl.SSLObject):
        def read(self, *args):
            calls["read"] = calls.get("read", 0) + 1
            return super().read(*args)

        def write(self, data):
            calls["write"] = calls.get("write", 0) + 1
            return super().write(data)

        def do_handshake(self):
            calls["do_handshake"] = calls.get("do_handshake", 0) + 1
            return super().do_handshake()

    async def main():
        cctx = client_ctx(pki)
        cctx.sslobject_class = Counting
        st, sp, ct, cp, server = await tls_pair(loop, pki, server_protocol=Echo, cctx=cctx)
        assert type(ct.get_extra_info("ssl_object")) is Counting
        ct.write(b"x" * 5000)
        assert await cp.wait_for_bytes(5000) == b"x" * 5000
        await close_all(ct, server)
        await cp.lost

    run(loop, main())
    assert calls["do_handshake"] >= 1 and calls["write"] >= 1 and calls["read"] >= 1


def test_an_sslobject_subclass_is_never_lent_the_loops_memory(loop, pki):
    """A plain Protocol's data is read as asyncio's `_do_read__copied`
    reads it, `sslobj.read(n)`: a subclass is given no buffer, so it can
    keep no view of the loop's own read buffer (which would show it later
    plaintext, or memory since freed)."""
    given = []

    class Keeping(ssl.SSLObject):
        def read(self, n=1024, buffer=None):
            given.append(buffer)
            return super().read(n) if buffer is None else super().read(n, buffer)

    async def main():
        cctx = client_ctx(pki)
        cctx.sslobject_class = Keeping
        st, sp, ct, cp, server = await tls_pair(loop, pki, server_protocol=Echo, cctx=cctx)
        payload = os.urandom(300 * 1024)
        ct.write(payload)
        assert await cp.wait_for_bytes(len(payload)) == payload
        await close_all(ct, server)
        await cp.lost

    run(loop, main())
    assert given and all(b is None for b in given), {type(b).__name__ for b in given}


class Raises(Recorder):
    def data_received(self, data):
        super().data_received(data)
        raise ValueError("protocol bug")


def test_protocol_error_closes_only_that_connection(loop, pki):
    """An exception from the application's data_received goes to the
    exception handler with sslproto's message and context; that connection
    is closed, the server and the loop go on."""

    async def main():
        st, sp, ct, cp, server = await tls_pair(loop, pki, server_protocol=Raises)
        ct.write(b"boom")
        await asyncio.wait_for(sp.lost, TIMEOUT)
        await asyncio.wait_for(cp.lost, TIMEOUT)
        [ctx] = loop.unexpected_errors
        loop.unexpected_errors.clear()
        seen = (
            ctx["message"],
            type(ctx["exception"]),
            isinstance(ctx["protocol"], asyncio.BufferedProtocol),
            isinstance(ctx["transport"], asyncio.Transport) and ctx["transport"] is not st,
            [e[0] for e in sp.events],
        )
        await _echo_once(loop, pki)
        await close_all(server)
        return seen

    assert run(loop, main()) == (
        "Fatal error on SSL protocol", ValueError, True, True, ["made", "data", "lost"]
    )


def test_writes_after_close_are_dropped_with_warnings(loop, pki, caplog):
    async def main():
        st, sp, ct, cp, server = await tls_pair(loop, pki)
        ct.writelines([b"one ", b"two"])
        assert await sp.wait_for_bytes(7) == b"one two"
        ct.close()
        with caplog.at_level("WARNING", logger="asyncio"):
            for _ in range(8):
                ct._ssl_protocol._write_appdata([b"late"])
        await asyncio.wait_for(sp.lost, TIMEOUT)
        await close_all(server)
        assert sp.data == b"one two"
        return [r.getMessage() for r in caplog.records if r.name == "asyncio"]

    # asyncio counts silently up to its LOG_THRESHOLD_FOR_CONNLOST_WRITES (5).
    assert run(loop, main()) == ["SSL connection is closed"] * 3


# --- no leak ------------------------------------------------------------------------------------


def test_300_connections_leave_nothing_behind(loop, pki):
    async def main():
        server, port, _ = await serve(loop, server_ctx(pki), Echo)
        cctx = client_ctx(pki)
        fds_before = len(os.listdir("/proc/self/fd"))
        refs = []
        for i in range(300):
            ct, cp = await connect(loop, port, cctx)
            ct.write(b"ping %d" % i)
            await cp.wait_for_bytes(len(b"ping %d" % i))
            if i % 30 == 0:  # the app transport, its SSLProtocol and the socket transport
                refs += [weakref.ref(ct), weakref.ref(ct._ssl_protocol), weakref.ref(ct._ssl_protocol._transport)]
            ct.close()
            assert await asyncio.wait_for(cp.lost, TIMEOUT) is None
            del ct, cp
        await close_all(server)
        gc.collect()
        assert len(os.listdir("/proc/self/fd")) <= fds_before
        assert [r() for r in refs if r() is not None] == []
        assert len(loop._transports) == 0

    run(loop, main())


_TRANSPORT_TYPES = {"SocketTransport", "StreamTransport", "SSLProtocol", "_SelectorSocketTransport"}


def _live_transports():
    return sum(type(o).__name__ in _TRANSPORT_TYPES for o in gc.get_objects())


def test_failed_handshake_leaves_no_cycle(loop, loop_name, pki):
    skip_asyncio_bug(loop_name, sys.version_info < (3, 14), "a failed TLS handshake leaves a cycle (gh-159049)")
    # With the collector off, what a client whose certificate check failed
    # leaves behind is freed by reference counting alone: no cycle keeps the
    # socket transport or the TLS layer alive (asyncio's gh-159049).
    async def attempt(port):
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(loop, port, client_ctx(pki, ca=pki.other_ca))

    async def main():
        server, port, _ = await serve(loop, server_ctx(pki), Echo)
        await attempt(port)  # warm-up: lazily made objects
        gc.collect()
        before = _live_transports()
        gc.disable()
        try:
            for _ in range(3):
                await attempt(port)
            for _ in range(5):
                await asyncio.sleep(0)
            after = _live_transports()
        finally:
            gc.enable()
        await close_all(server)
        return before, after

    before, after = run(loop, main())
    assert after <= before


@pytest.mark.parametrize(
    "items, raises, fatal",
    [
        ([b"a", "str", b"b"], None, "TypeError: a bytes-like object is required, not 'str'"),
        ([b"a", 42], "object of type 'int' has no len()", None),
        ([b"a", memoryview(b"abcdef")[::2]], None, "BufferError: " + NON_CONTIGUOUS),
        ([bytearray(b"x"), memoryview(b"y")], None, None),
    ],
    ids=["str", "int", "non-contiguous", "buffers"],
)
def test_writelines_with_odd_items(loop, pki, items, raises, fatal):
    """asyncio's `_write_appdata` takes len() of each item (a TypeError
    for the caller), then `sslobj.write()` refuses what is not a contiguous
    buffer: a fatal error, and nothing reaches the peer."""
    seen = []
    loop.set_exception_handler(lambda _, ctx: seen.append(ctx))

    async def main():
        st, sp, ct, cp, server = await tls_pair(loop, pki)
        if raises:
            with pytest.raises(TypeError, match=f"^{re.escape(raises)}$"):
                ct.writelines(items)
        else:
            ct.writelines(items)
        if fatal:
            await wait_until(lambda: seen)
            ((ctx,),) = (seen,)
            assert ctx["message"] == "Fatal error on SSL protocol"
            exc = ctx["exception"]
            assert f"{type(exc).__name__}: {exc}" == fatal
            await wait_until(sp.lost.done)
            assert bytes(sp.data) == b""
        else:
            if not raises:
                await wait_until(lambda: bytes(sp.data) == b"xy")
            assert seen == []
        await close_all(ct, st, server)

    run(loop, main())
