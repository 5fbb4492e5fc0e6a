"""Python code reachable from user objects never makes ferroloop panic.

The loop core and the transports are Rust objects with runtime borrow
flags. Any Python code that runs while one of them is borrowed — a
`__bool__`, `__index__`, `__eq__` or `__hash__` of an argument, an
`isinstance` that consults `__class__`, a protocol method, the `__del__`
of an object the call lets go — may use that same object again, and a
second borrow would raise `PanicException` (a BaseException that `except
Exception` does not catch). Here every public method of the loop and of
each kind of transport is driven with objects whose every hook uses the
loop and the transports again; whatever exceptions come out must be
ordinary ones, on ferroloop as on asyncio's loop.
"""

from __future__ import annotations

import asyncio
import gc
import os
import ssl

import pytest
from _net import no_fd_leak  # noqa: F401
from conftest import run

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.usefixtures("no_fd_leak")

SKIP = {"close", "abort", "run_forever", "run_until_complete", "stop", "__del__", "__init__", "__new__"}


def is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


class Reenter:
    """Uses the loop and every transport it knows, swallowing what they
    raise; records any PanicException it sees."""

    def __init__(self, loop):
        self.loop = loop
        self.transports: list = []
        self.panics: list[str] = []
        self.depth = 0

    def __call__(self) -> None:
        if self.depth > 2:
            return
        self.depth += 1
        try:
            steps = [
                lambda: self.loop.call_soon(lambda: None),
                lambda: self.loop.call_later(1, lambda: None).cancel(),
                lambda: self.loop.time(),
                lambda: self.loop.get_debug(),
                lambda: setattr(self.loop, "_debug", False),
            ]
            for t in self.transports:
                for name in ("is_closing", "get_write_buffer_size", "pause_reading", "resume_reading",
                             "get_protocol", "is_reading"):  # fmt: skip
                    if hasattr(t, name):
                        steps.append(getattr(t, name))
                steps.append(lambda t=t: t.get_extra_info("peername"))
                if hasattr(t, "set_write_buffer_limits"):
                    steps.append(lambda t=t: t.set_write_buffer_limits(1 << 20))
            for step in steps:
                try:
                    step()
                except BaseException as exc:  # noqa: BLE001 - a panic must be seen here
                    if is_panic(exc):
                        self.panics.append(repr(exc))
                    elif not isinstance(exc, Exception):
                        raise
        finally:
            self.depth -= 1


def hostile(reenter: Reenter):
    """An object whose every hook runs `reenter` first."""

    class Meta(type):
        def __instancecheck__(cls, obj):
            reenter()
            return False

    class Hostile(metaclass=Meta):
        def __bool__(self):
            reenter()
            return True

        def __index__(self):
            reenter()
            return 1

        def __float__(self):
            reenter()
            return 1.0

        def __eq__(self, other):
            reenter()
            return False

        def __hash__(self):
            reenter()
            return 1

        def __lt__(self, other):
            reenter()
            return False

        __gt__ = __le__ = __ge__ = __lt__

        def __call__(self, *args, **kwargs):
            reenter()

        def __len__(self):
            reenter()
            return 1

        def __iter__(self):
            reenter()
            return iter([b"x"])

        def fileno(self):
            reenter()
            return -1

        @property
        def __class__(self):
            reenter()
            return Hostile

        def __getattr__(self, name):
            reenter()
            raise AttributeError(name)

        def __del__(self):
            reenter()

        def __repr__(self):
            return "<hostile>"

    return Hostile


def drive(obj, reenter: Reenter, Hostile) -> None:
    """Calls every public method and sets every attribute of `obj` with
    hostile arguments (fresh ones each time, so their finalizers run too)."""
    for name in sorted(dir(obj)):
        # Public methods and attributes, and the loop's `_debug` (which
        # asyncio's own code sets).
        if name in SKIP or (name.startswith("_") and name != "_debug"):
            continue
        try:
            attr = getattr(obj, name)
        except BaseException as exc:  # noqa: BLE001
            assert not is_panic(exc), f"{name}: {exc!r}"
            continue
        if not callable(attr):
            calls = [lambda name=name: setattr(obj, name, Hostile())]
        else:
            calls = [lambda attr=attr, n=n: attr(*[Hostile() for _ in range(n)]) for n in range(4)]
        for call in calls:
            try:
                result = call()
                if asyncio.iscoroutine(result):
                    result.close()
            except BaseException as exc:  # noqa: BLE001
                assert not is_panic(exc), f"{type(obj).__name__}.{name}: {exc!r}"
                if not isinstance(exc, Exception):
                    raise
            # The arguments' finalizers ran when the call let them go (they
            # are in no cycle); a full collection per call would cost more
            # than everything else here.
            assert not reenter.panics, f"{type(obj).__name__}.{name}: {reenter.panics}"


class Proto(asyncio.Protocol, asyncio.DatagramProtocol):
    def __init__(self, reenter: Reenter):
        self.reenter = reenter

    def connection_made(self, transport):
        self.reenter()

    def data_received(self, data):
        self.reenter()

    def datagram_received(self, data, addr):
        self.reenter()

    def eof_received(self):
        self.reenter()

    def connection_lost(self, exc):
        self.reenter()


def test_the_loop_with_hostile_arguments(loop_factory):
    # A loop of its own: the hostile task factory, exception handler and
    # executor it is left with make it unusable afterwards.
    victim = loop_factory()
    reenter = Reenter(victim)
    try:
        drive(victim, reenter, hostile(reenter))
    finally:
        try:
            victim.close()
        except Exception:  # noqa: BLE001 - a hostile executor, say
            pass


def test_transports_with_hostile_arguments_and_protocols(loop):
    reenter = Reenter(loop)
    Hostile = hostile(reenter)
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)

    async def main():
        make = lambda: Proto(reenter)  # noqa: E731
        server = await loop.create_server(make, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        tls_server = await loop.create_server(make, "127.0.0.1", 0, ssl=server_ctx)
        tcp, _ = await loop.create_connection(make, *addr)
        tls, _ = await loop.create_connection(
            make, *tls_server.sockets[0].getsockname(), ssl=client_ctx, server_hostname="127.0.0.1"
        )
        udp, _ = await loop.create_datagram_endpoint(make, local_addr=("127.0.0.1", 0))
        r, w = os.pipe()
        rpipe, _ = await loop.connect_read_pipe(make, open(r, "rb", buffering=0))
        wpipe, _ = await loop.connect_write_pipe(make, open(w, "wb", buffering=0))
        transports = [tcp, tls, udp, rpipe, wpipe]
        reenter.transports = transports
        for t in transports:
            # An old protocol whose finalizer uses the transport it leaves.
            t.set_protocol(Hostile())
            t.set_protocol(Proto(reenter))
            gc.collect()
            drive(t, reenter, Hostile)
            await asyncio.sleep(0)
        for t in transports:
            try:
                t.abort() if hasattr(t, "abort") else t.close()
            except Exception:  # noqa: BLE001 - asyncio's, after what it went through
                pass
        for s in (server, tls_server):
            s.close()
            await s.wait_closed()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not reenter.panics

    errors = loop.unexpected_errors
    try:
        run(loop, main())
    finally:
        # Hostile data and protocols make the transports report errors;
        # only a panic matters here.
        panics = [e for e in errors if is_panic(e.get("exception") or Exception())]
        errors.clear()
    assert not panics
