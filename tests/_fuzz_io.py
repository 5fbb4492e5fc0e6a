"""The connection worlds of tests/test_fuzz.py: TCP and TLS streams between
a client and a server of one loop, datagram endpoints, and pipes. Each
`run_*` function runs generated operations on one fresh loop and returns
its outcome as plain data (see `_fuzz_ops`, which records it the same way
for the loop's own operations)."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import socket
import sys

from _fuzz_ops import Boom, HandlerLog, LogCapture, attempt, exc_sig
from hypothesis import strategies as st

# --- what the connection worlds share ---------------------------------------------------------------------

SETTLE_BOUND = 10.0  # seconds: generous, reached only if something hangs
FLOOD = 8 * 1024 * 1024  # more than a paused TCP peer's kernel buffers hold here
LIMITS = [None, 0, 1, -1, 1.5, math.nan, "a", 10**30, True]
EXTRA_KEYS = ["peername", "sockname", "socket", "nope", None, 42, ("a",), [], "ssl_object", "peercert", "cipher",
              "compression", "sslcontext", "pipe"]


class Peer(asyncio.Protocol):
    """One end's protocol: its lifecycle calls in order, its bytes apart
    (how a stream is cut into reads is the kernel's business).
    `misbehave` names a callback that fails or returns something odd."""

    def __init__(self, side, misbehave="none"):
        self.side = side
        self.misbehave = misbehave
        self.events: list = []
        self.data = bytearray()
        self.transport = None
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        if self.misbehave == "made_raises":
            raise Boom(f"{self.side} connection_made")

    def data_received(self, data):
        if type(data) is not bytes:
            self.events.append(("data of type", type(data).__name__))
        self.data += data
        if self.misbehave == "data_raises":
            raise Boom(f"{self.side} data_received")
        return self if self.misbehave == "data_returns" else None  # asyncio ignores it

    def eof_received(self):
        self.events.append("eof")
        if self.misbehave == "eof_raises":
            raise Boom(f"{self.side} eof_received")
        if self.misbehave == "eof_badbool" and self.events.count("eof") > 1:
            # asyncio tests the truth of the result outside its try: the
            # handler is called, the reader stays, the next iteration calls
            # eof_received again. Once is enough.
            return None
        return {"eof_true": True, "eof_truthy": "yes", "eof_badbool": BadBool()}.get(self.misbehave)

    def connection_lost(self, exc):
        self.events.append(("lost", exc_sig(exc)))
        self.lost = True
        if self.misbehave == "lost_raises":
            raise Boom(f"{self.side} connection_lost")

    def pause_writing(self):
        self.events.append("pause_writing")
        if self.misbehave == "pause_raises":
            raise Boom(f"{self.side} pause_writing")

    def resume_writing(self):
        self.events.append("resume_writing")


class BadBool:
    """A return value whose truth cannot be told."""

    def __bool__(self):
        raise Boom("no truth value")


def write_data(kind, n):
    """What operation `n` writes: the bytes it stands for (None when it is
    not data) and the object passed. Each payload is distinct."""
    payload = f"<{n}:{kind}>".encode()
    if kind in ("big", "flood"):
        data = payload * 20000 if kind == "big" else b"f" * FLOOD
        return data, data
    return {
        "bytes": lambda: (payload, payload),
        "bytearray": lambda: (payload, bytearray(payload)),
        "memoryview": lambda: (payload, memoryview(payload)),
        "view_slice": lambda: (payload, memoryview(b"__" + payload + b"__")[2:-2]),
        "view_strided": lambda: (None, memoryview(b"abcdefgh")[::2]),
        "view_2d": lambda: (b"abcdef", memoryview(b"abcdef").cast("B", (2, 3))),
        "empty": lambda: (b"", b""),
        "str": lambda: (None, payload.decode()),
        "int": lambda: (None, 42),
        "none": lambda: (None, None),
    }[kind]()


def writelines_data(kind, n):
    payload = f"<{n}:lines>".encode()
    return {
        "mixed": (payload * 3, [payload, bytearray(payload), memoryview(payload)]),
        "empty_list": (b"", []),
        "empties": (b"", [b"", b""]),
        "generator": (payload * 2, (p for p in [payload, payload])),
        "with_str": (None, [payload, "str"]),
        "not_iterable": (None, 42),
        "bytes_itself": (None, payload),  # its items are ints
    }[kind]


def delivery(got, sent):
    """How much of what one end wrote the other read: all of it (and how
    much that is), a prefix (an abort cut it), or something else."""
    return ("all", len(got)) if got == sent else "prefix" if sent.startswith(got) else "other"


class World:
    """Runs operations on the transports of one loop. After each operation
    the world *settles*: the loop runs until nothing observable changes for
    a while, so that what the operation caused is attributed to it alike on
    both loops. `snapshot()` is what is observed, `transports()` what to
    close should a run fail half-way."""

    def __init__(self, loop):
        self.loop = loop
        self.handler: list = []
        self.logs: list = []
        loop.set_exception_handler(HandlerLog(self.handler))

    async def settle(self):
        """Until the snapshot has not changed over several iterations and a
        few milliseconds (loopback and pipes deliver within the sending
        call; the margin is for a loaded machine)."""
        deadline = self.loop.time() + SETTLE_BOUND
        last, stable = None, 0
        while stable < 6 and self.loop.time() < deadline:
            await asyncio.sleep(0 if stable < 4 else 0.002)
            now = self.snapshot()
            stable = stable + 1 if now == last else 0
            last = now

    def take_handler(self):
        """The handler's calls and the logs since the last take, sorted: two
        ends may fail in either order within one operation's consequences."""
        calls = sorted(self.handler + self.logs, key=repr)
        self.handler.clear()
        self.logs.clear()
        return calls

    async def run(self, ops):
        await self.open()
        await self.settle()
        record = [("opened", self.peers_outcome(), self.take_handler())]
        for n, op in enumerate(ops):
            result = self.apply(n, op)
            await self.settle()
            record.append((op, result, self.take_handler()))
        await self.teardown()
        record.append(("end", self.peers_outcome(), self.take_handler()))
        return record

    def extra(self, t, key):
        """get_extra_info(key) as data: ports named, objects by type."""
        try:
            value = t.get_extra_info(key, "default")
        except Exception as exc:
            return ("raised",) + exc_sig(exc)
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "127.0.0.1":
            return (value[0], self.port_name(value[1]))
        if value is None or isinstance(value, (bool, int, float, str, bytes)) or key == "cipher":
            return value
        return type(value).__name__

    def port_name(self, port):
        return "a port"


def run_world(factory, make_world, ops):
    """Runs `ops` in `make_world(loop)` on a fresh loop from `factory`."""
    loop = factory()
    world = make_world(loop)
    capture = LogCapture(world.logs)
    logger = logging.getLogger("asyncio")
    logger.addHandler(capture)
    try:
        return loop.run_until_complete(world.run(ops))
    finally:
        logger.removeHandler(capture)
        # After a failure half-way, close what is open: the failure is the report.
        for t in world.transports():
            if not t.is_closing():
                t.close()
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()


def attempt_method(t, name, *args):
    """attempt() of a method the transport may not have (a read pipe has
    no abort()); the AttributeError would name the class, ferroloop's own."""
    if not hasattr(t, name):
        return ("no method", name)
    return attempt(getattr(t, name), *args)


def transport_op(world, t, op):
    """The operations every transport kind takes."""
    name = op[0]
    if name == "limits":
        return (attempt_method(t, "set_write_buffer_limits", *op[2:]), attempt_method(t, "get_write_buffer_limits"))
    if name == "extra":
        return world.extra(t, op[2])
    if name == "state":
        return (t.is_closing(), attempt_method(t, "is_reading"), attempt_method(t, "can_write_eof"),
                attempt_method(t, "get_write_buffer_size")[0], t.get_protocol() is not None)
    return attempt_method(t, name)  # close, abort, write_eof, pause_reading, resume_reading


# --- stream transports: TCP, and TLS over it -------------------------------------------------------------


WRITELINES_AFTER_LOSS_FAILS = (3, 12) <= sys.version_info[:2] < (3, 14)

MISBEHAVIOURS = [
    "none", "none", "none", "made_raises", "data_raises", "data_returns", "eof_raises", "eof_true", "eof_truthy",
    "eof_badbool", "lost_raises", "pause_raises"]


class StreamWorld(World):
    """A client ("c") and the server's end ("s") of one connection."""

    def __init__(self, loop, misbehave, tls=None):
        super().__init__(loop)
        self.misbehave = misbehave  # {"c": ..., "s": ...}
        self.tls = tls  # (server context, client context) or None
        self.offered = {"c": bytearray(), "s": bytearray()}
        self.peers: dict = {}
        self.server = None

    async def open(self):
        made = []

        def factory():
            made.append(Peer("s", self.misbehave["s"]))
            return made[-1]

        sctx, cctx = self.tls or (None, None)
        self.server = await self.loop.create_server(factory, "127.0.0.1", 0, ssl=sctx)
        self.port = self.server.sockets[0].getsockname()[1]
        _, self.peers["c"] = await self.loop.create_connection(
            lambda: Peer("c", self.misbehave["c"]), "127.0.0.1", self.port, ssl=cctx,
            **({"server_hostname": "localhost"} if cctx else {}))
        deadline = self.loop.time() + SETTLE_BOUND
        while not (made and made[0].transport) and self.loop.time() < deadline:
            await asyncio.sleep(0.001)
        self.peers["s"] = made[0]
        self.local_port = self.peers["c"].transport.get_extra_info("sockname")[1]

    def port_name(self, port):
        return {self.port: "server port", self.local_port: "client port"}.get(port, "other port")

    def transports(self):
        return [p.transport for p in self.peers.values() if p.transport is not None]

    def snapshot(self):
        snap = [len(self.handler), len(self.logs)]
        for p in self.peers.values():
            t = p.transport  # asyncio's TLS transport fails get_write_buffer_size() once lost
            snap += [len(p.data), len(p.events), t.is_closing(), attempt(t.get_write_buffer_size)]
        return snap

    def apply(self, n, op):
        name, side = op[0], op[1]
        t = self.peers[side].transport
        if name == "writelines" and WRITELINES_AFTER_LOSS_FAILS and not self.tls and t._conn_lost:
            # 3.12 and 3.13's socket writelines() does not check for a lost
            # connection: it buffers and calls the loop it has let go of
            # (AttributeError on `_add_writer`). 3.14's checks, as write()
            # always did. Not compared; the README lists it.
            return ("skipped: writelines after loss, asyncio 3.12/3.13",)
        if name in ("write", "writelines"):
            data, obj = (write_data if name == "write" else writelines_data)(op[2], n)
            result = attempt(getattr(t, name), obj)
            if result[0] == "ok" and data is not None:
                self.offered[side] += data
            return result
        return transport_op(self, t, op)

    def peers_outcome(self):
        return [(side, tuple(p.events), delivery(bytes(p.data), bytes(self.offered["s" if side == "c" else "c"])))
                for side, p in self.peers.items()]

    async def teardown(self):
        """Read what waits, close both ends, then the server."""
        for t in self.transports():
            if not t.is_closing():
                t.resume_reading()
        await self.settle()
        for t in self.transports():
            t.close()
        await self.settle()
        self.server.close()
        await self.server.wait_closed()
        await self.settle()


def run_stream(factory, ops, misbehave, tls=None):
    return run_world(factory, lambda loop: StreamWorld(loop, misbehave, tls), ops)


def stream_ops(tls=False):
    side = st.sampled_from(["c", "s"])
    lines = ["mixed", "empty_list", "empties", "generator", "with_str", "not_iterable", "bytes_itself"]
    kinds = ["bytes", "bytearray", "memoryview", "view_slice", "view_strided", "view_2d", "empty", "str", "int",
             "none", "big", "flood"]
    op = st.one_of(
        st.tuples(st.just("write"), side, st.sampled_from(kinds)),
        st.tuples(st.just("writelines"), side, st.sampled_from(lines)),
        st.tuples(st.sampled_from(["write_eof", "pause_reading", "resume_reading", "close", "abort", "state"]), side),
        st.tuples(st.just("limits"), side, st.sampled_from(LIMITS), st.sampled_from(LIMITS)),
        st.tuples(st.just("limits"), side),
        st.tuples(st.just("extra"), side, st.sampled_from(EXTRA_KEYS)),
    )
    # Over TLS a connection_made() that raises fails the handshake's
    # completion and so create_connection() itself: there is no connection
    # for the operations. test_fuzz.test_tls_connection_made_raises has it.
    ends = [m for m in MISBEHAVIOURS if not (tls and m == "made_raises")]
    misbehave = st.fixed_dictionaries({"c": st.sampled_from(ends), "s": st.sampled_from(ends)})
    return st.tuples(st.lists(op, max_size=12), misbehave)


# --- datagram endpoints -----------------------------------------------------------------------------------------


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self, name, misbehave):
        self.name = name
        self.misbehave = misbehave
        self.events: list = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def datagram_received(self, data, addr):
        self.events.append(("datagram", data, addr))
        if self.misbehave == "datagram_raises":
            raise Boom(f"{self.name} datagram_received")

    def error_received(self, exc):
        self.events.append(("error", exc_sig(exc)))
        if self.misbehave == "error_raises":
            raise Boom(f"{self.name} error_received")

    def connection_lost(self, exc):
        self.events.append(("lost", exc_sig(exc)))
        if self.misbehave == "lost_raises":
            raise Boom(f"{self.name} connection_lost")


DATAGRAM_MISBEHAVIOURS = ["none", "none", "datagram_raises", "error_raises", "lost_raises"]
ADDRESSES = {
    "default": lambda w: (), "none": lambda w: (None,), "a": lambda w: (w.addr["a"],), "b": lambda w: (w.addr["b"],),
    "unbound": lambda w: (w.addr["unbound"],), "port0": lambda w: (("127.0.0.1", 0),),
    "port_overflow": lambda w: (("127.0.0.1", 70000),), "port_str": lambda w: (("127.0.0.1", "x"),),
    "one_tuple": lambda w: (("127.0.0.1",),), "str": lambda w: ("127.0.0.1",),
    "three_tuple": lambda w: (("127.0.0.1", 1, 2),),
}


class DatagramWorld(World):
    """Three endpoints on 127.0.0.1: `a` and `c` bound and unconnected,
    `b` connected to `a`."""

    def __init__(self, loop, misbehave):
        super().__init__(loop)
        self.misbehave = misbehave
        self.ends: dict = {}

    async def open(self):
        make = self.loop.create_datagram_endpoint
        ta, self.ends["a"] = await make(lambda: Datagrams("a", self.misbehave["a"]), local_addr=("127.0.0.1", 0))
        self.addr = {"a": ta.get_extra_info("sockname")}
        _, self.ends["b"] = await make(lambda: Datagrams("b", self.misbehave["b"]), remote_addr=self.addr["a"])
        _, self.ends["c"] = await make(lambda: Datagrams("c", "none"), local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.addr["unbound"] = s.getsockname()
        for name in "bc":
            self.addr[name] = self.ends[name].transport.get_extra_info("sockname")

    def port_name(self, port):
        return {a[1]: f"port {name}" for name, a in self.addr.items()}.get(port, "other port")

    def transports(self):
        return [e.transport for e in self.ends.values() if e.transport is not None]

    def snapshot(self):
        return [len(self.handler)] + [(len(e.events), e.transport.is_closing()) for e in self.ends.values()]

    def apply(self, n, op):
        name, who = op[0], op[1]
        t = self.ends[who].transport
        if name != "sendto":
            return transport_op(self, t, op)
        if who != "b" and self.ends[who].events[-1][0] == "lost":
            # asyncio's bug: on a closed unconnected endpoint sendto() sends
            # on the closed socket and reports the failure through the
            # transport's loop or protocol, None by then: AttributeError
            # (3.11 to 3.13). ferroloop's choice there is not compared.
            return "not tried: an asyncio bug"
        return attempt(t.sendto, write_data(op[2], n)[1], *ADDRESSES[op[3]](self))

    def peers_outcome(self):
        return [(name, tuple(e.events)) for name, e in self.ends.items()]

    async def teardown(self):
        for t in self.transports():
            t.close()
        await self.settle()

    async def run(self, ops):
        """The record with each port named, in messages too ("Invalid
        address: must be None or ('127.0.0.1', 41234)")."""
        record = await super().run(ops)
        names = {a[1]: f"<port {name}>" for name, a in self.addr.items()}
        pattern = re.compile(r"\b(" + "|".join(str(p) for p in names) + r")\b")
        return [pattern.sub(lambda m: names[int(m.group(1))], repr(entry)) for entry in record]


def run_datagram(factory, ops, misbehave):
    return run_world(factory, lambda loop: DatagramWorld(loop, misbehave), ops)


def datagram_ops():
    who = st.sampled_from(["a", "b", "c"])
    kinds = ["bytes", "bytearray", "memoryview", "view_slice", "view_strided", "empty", "str", "int", "none", "big"]
    op = st.one_of(
        st.tuples(st.just("sendto"), who, st.sampled_from(kinds), st.sampled_from(sorted(ADDRESSES))),
        st.tuples(st.sampled_from(["close", "abort", "state"]), who),
        st.tuples(st.just("limits"), who, st.sampled_from(LIMITS), st.sampled_from(LIMITS)),
        st.tuples(st.just("extra"), who, st.sampled_from(EXTRA_KEYS)),
    )
    misbehave = st.fixed_dictionaries({"a": st.sampled_from(DATAGRAM_MISBEHAVIOURS),
                                       "b": st.sampled_from(DATAGRAM_MISBEHAVIOURS)})
    return st.tuples(st.lists(op, max_size=12), misbehave)


# --- pipes ---------------------------------------------------------------------------------------------------------

PIPE_MISBEHAVIOURS = {"r": ["none", "data_raises", "eof_raises", "lost_raises"],
                      "w": ["none", "pause_raises", "lost_raises"]}


class PipeWorld(World):
    """An os.pipe(): its read end under connect_read_pipe ("r"), its write
    end under connect_write_pipe ("w")."""

    def __init__(self, loop, misbehave):
        super().__init__(loop)
        self.misbehave = misbehave
        self.offered = bytearray()
        self.peers: dict = {}

    async def open(self):
        r, w = os.pipe()
        reader, writer = open(r, "rb", 0), open(w, "wb", 0)
        try:
            _, self.peers["r"] = await self.loop.connect_read_pipe(lambda: Peer("r", self.misbehave["r"]), reader)
        finally:
            if "r" not in self.peers:
                reader.close()
                writer.close()
        _, self.peers["w"] = await self.loop.connect_write_pipe(lambda: Peer("w", self.misbehave["w"]), writer)

    def transports(self):
        return [p.transport for p in self.peers.values() if p.transport is not None]

    def snapshot(self):
        w = self.peers["w"].transport
        return [len(self.handler), w.get_write_buffer_size()] + [
            (len(p.data), len(p.events), p.transport.is_closing()) for p in self.peers.values()]

    def apply(self, n, op):
        name = op[0]
        if name in ("write", "writelines"):
            data, obj = (write_data if name == "write" else writelines_data)(op[1], n)
            if op[1] == "flood":
                data, obj = data[: 1024 * 1024], obj[: 1024 * 1024]  # a pipe holds 64 KiB
            result = attempt(getattr(self.peers["w"].transport, name), obj)
            if result[0] == "ok" and data is not None:
                self.offered += data
            return result
        return transport_op(self, self.peers[op[1]].transport, op)

    def peers_outcome(self):
        return [tuple(self.peers["r"].events), tuple(self.peers["w"].events),
                delivery(bytes(self.peers["r"].data), bytes(self.offered))]

    async def teardown(self):
        r, w = self.peers["r"].transport, self.peers["w"].transport
        if not r.is_closing():
            r.resume_reading()
        await self.settle()
        w.close()
        await self.settle()
        r.close()
        await self.settle()


def run_pipes(factory, ops, misbehave):
    return run_world(factory, lambda loop: PipeWorld(loop, misbehave), ops)


def pipe_ops():
    end = st.sampled_from(["r", "w"])
    # Not a 2-D memoryview: asyncio's pipe takes len() for its size, so it
    # writes it all, keeps "the rest" (nothing) and its _write_ready fails
    # an assertion on every iteration from then on.
    kinds = ["bytes", "bytearray", "memoryview", "view_slice", "empty", "str", "int", "none", "big", "flood"]
    op = st.one_of(
        st.tuples(st.just("write"), st.sampled_from(kinds)),
        st.tuples(st.just("writelines"), st.sampled_from(["mixed", "empty_list", "generator", "with_str",
                                                          "not_iterable"])),
        st.tuples(st.sampled_from(["close", "abort", "state"]), end),
        st.tuples(st.just("extra"), end, st.sampled_from(EXTRA_KEYS)),
        st.tuples(st.sampled_from(["write_eof", "pause_reading", "resume_reading"]), end),
        st.tuples(st.just("limits"), end, st.sampled_from(LIMITS), st.sampled_from(LIMITS)),
    )
    misbehave = st.fixed_dictionaries({end: st.sampled_from(m) for end, m in PIPE_MISBEHAVIOURS.items()})
    return st.tuples(st.lists(op, max_size=12), misbehave)
