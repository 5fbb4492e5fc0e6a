"""Pipe transports on both loops: loop.connect_read_pipe and
loop.connect_write_pipe over os.pipe(), a FIFO, a PTY and /dev/null.

Covers, on the read side, data, EOF and connection_lost, pause/resume_reading
(also from connection_made), close, the extra info and a raising
data_received; on the write side write/writelines/write_eof/abort/close, the
write buffer and flow control (pause_writing/resume_writing), a reader that
goes away (idle, on write, with buffered data), writes after close and their
warning; asyncio's checks of bad input; a PTY whose slave side closes (EIO).

No descriptor may outlive a test.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os

import pytest
from _net import Recorder, no_fd_leak, outcome  # noqa: F401
from conftest import run

pytestmark = pytest.mark.usefixtures("no_fd_leak")

TIMEOUT = 10
MiB = 1 << 20
LOST_WRITES = "pipe closed by peer or os.write(pipe, data) raised exception."


async def settle(n=20):
    """Lets the loop run n iterations: enough for any ready fd to be served."""
    for _ in range(n):
        await asyncio.sleep(0)


async def read_fd(fd: int, n: int) -> bytes:
    """Reads n bytes (or up to EOF) from a non-blocking fd while the loop runs."""
    os.set_blocking(fd, False)
    out = bytearray()
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while len(out) < n:
        try:
            chunk = os.read(fd, n - len(out))
        except BlockingIOError:
            assert asyncio.get_running_loop().time() < deadline, f"read {len(out)} of {n} bytes"
            await asyncio.sleep(0.001)
            continue
        if not chunk:
            break
        out += chunk
    return bytes(out)


class Writer(asyncio.Protocol):
    """Records a write pipe's protocol callbacks."""

    def __init__(self, loop):
        self.events: list = []
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


# --- the read side ------------------------------------------------------------------


def test_read_pipe_data_eof_and_connection_lost(loop):
    r, w = os.pipe()

    async def main():
        pipe = open(r, "rb", buffering=0)
        transport, proto = await loop.connect_read_pipe(lambda: Recorder(loop), pipe)
        assert proto.transport is transport and isinstance(transport, asyncio.ReadTransport)
        assert transport.get_protocol() is proto
        assert transport.get_extra_info("pipe") is pipe and pipe.fileno() == r
        assert transport.get_extra_info("missing", "default") == "default"
        assert not os.get_blocking(r)
        assert transport.is_reading() and not transport.is_closing()
        os.write(w, b"hello ")
        os.write(w, b"pipe")
        assert await proto.wait_for_bytes(10) == b"hello pipe"
        os.close(w)
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert proto.events == [("made",), ("data", b"hello pipe"), ("eof",), ("lost", None)]
        assert transport.is_closing() and not transport.is_reading()
        assert pipe.closed and transport.get_extra_info("pipe") is pipe

    run(loop, main())


def test_read_pipe_from_a_fifo(loop, tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    w = os.open(path, os.O_WRONLY)

    async def main():
        transport, proto = await loop.connect_read_pipe(lambda: Recorder(loop), open(r, "rb", 0))
        os.write(w, b"through the fifo")
        assert await proto.wait_for_bytes(16) == b"through the fifo"
        os.close(w)
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert proto.events == [("made",), ("data", b"through the fifo"), ("eof",), ("lost", None)]

    run(loop, main())


def test_pause_and_resume_reading(loop):
    r, w = os.pipe()

    async def main():
        transport, proto = await loop.connect_read_pipe(lambda: Recorder(loop), open(r, "rb", 0))
        transport.pause_reading()
        transport.pause_reading()  # no-op
        assert not transport.is_reading()
        os.write(w, b"waits")
        await settle()
        assert proto.events == [("made",)]
        transport.resume_reading()
        transport.resume_reading()  # no-op
        assert transport.is_reading()
        assert await proto.wait_for_bytes(5) == b"waits"
        transport.close()
        transport.resume_reading()  # no-op once closing
        assert not transport.is_reading() and transport.is_closing()
        assert not transport.get_extra_info("pipe").closed  # until connection_lost
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert proto.events == [("made",), ("data", b"waits"), ("lost", None)]
        with pytest.raises(BrokenPipeError):  # the read end is closed
            os.write(w, b"x")

    try:
        run(loop, main())
    finally:
        os.close(w)


class PausesAtOnce(Recorder):
    def __init__(self, loop, then):
        super().__init__(loop)
        self.then = then

    def connection_made(self, transport):
        super().connection_made(transport)
        getattr(transport, self.then)()


@pytest.mark.parametrize("then", ["pause_reading", "close"])
def test_pause_or_close_in_connection_made(loop, then):
    r, w = os.pipe()

    async def main():
        os.write(w, b"early")
        transport, proto = await loop.connect_read_pipe(lambda: PausesAtOnce(loop, then), open(r, "rb", 0))
        await settle()
        if then == "close":
            assert proto.events == [("made",), ("lost", None)]
            return
        assert proto.events == [("made",)] and not transport.is_reading()
        transport.resume_reading()
        assert await proto.wait_for_bytes(5) == b"early"
        transport.close()
        await asyncio.wait_for(proto.lost, TIMEOUT)

    try:
        run(loop, main())
    finally:
        os.close(w)


class RaisesOnce(Recorder):
    raised = False

    def data_received(self, data):
        super().data_received(data)
        if not self.raised:
            self.raised = True
            raise ValueError("boom in data_received")


def test_data_received_raising_goes_to_the_exception_handler(loop):
    r, w = os.pipe()

    async def main():
        transport, proto = await loop.connect_read_pipe(lambda: RaisesOnce(loop), open(r, "rb", 0))
        os.write(w, b"first")
        await proto.wait_for_bytes(5)
        await settle()
        (ctx,) = loop.unexpected_errors
        loop.unexpected_errors.clear()
        assert repr(ctx["exception"]) == "ValueError('boom in data_received')"
        assert ctx["message"].startswith("Exception in callback ")
        os.write(w, b" second")  # the transport reads on
        os.close(w)
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert proto.events == [("made",), ("data", b"first second"), ("eof",), ("lost", None)]

    run(loop, main())


# --- the write side -----------------------------------------------------------------


def test_write_writelines_and_write_eof(loop):
    r, w = os.pipe()

    async def main():
        pipe = open(w, "wb", buffering=0)
        transport, proto = await loop.connect_write_pipe(lambda: Writer(loop), pipe)
        assert isinstance(transport, asyncio.WriteTransport)
        assert transport.get_extra_info("pipe") is pipe and transport.can_write_eof()
        transport.write(b"ab")
        transport.write(bytearray(b"cd"))
        transport.write(memoryview(b"ef"))
        transport.write(b"")
        transport.writelines([b"gh", bytearray(b"ij"), memoryview(b"kl")])
        assert transport.get_write_buffer_size() == 0  # all fits in the pipe
        assert await read_fd(r, 12) == b"abcdefghijkl"
        transport.write_eof()
        assert transport.is_closing()
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert await read_fd(r, 1) == b""  # EOF for the reader
        assert proto.events == ["made", "lost"] and pipe.closed

    try:
        run(loop, main())
    finally:
        os.close(r)


def test_write_to_a_fifo_and_to_dev_null(loop, tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Writer(loop), open(path, "wb", 0))
        transport.write(b"into the fifo")
        assert await read_fd(r, 13) == b"into the fifo"
        transport.close()
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        # a character device: everything is written at once
        transport, proto = await loop.connect_write_pipe(lambda: Writer(loop), open("/dev/null", "wb", 0))
        transport.write(b"x" * MiB)
        assert transport.get_write_buffer_size() == 0
        transport.close()
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert proto.events == ["made", "lost"]

    try:
        run(loop, main())
    finally:
        os.close(r)


def test_flow_control_and_close_with_buffered_data(loop):
    r, w = os.pipe()
    capacity = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
    data = bytes(range(256)) * (4 * 1024)  # 1 MiB

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Writer(loop), open(w, "wb", 0))
        transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        transport.write(data)  # more than the pipe holds; nobody reads
        assert transport.get_write_buffer_size() == len(data) - capacity
        assert proto.events == ["made", "pause"]
        transport.close()  # flushes first, then closes
        assert transport.is_closing()
        await settle()
        assert not proto.lost.done()
        assert await read_fd(r, len(data) + 1) == data  # up to EOF
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert proto.events == ["made", "pause", "resume", "lost"]
        assert transport.get_write_buffer_size() == 0

    try:
        run(loop, main())
    finally:
        os.close(r)


def test_abort_drops_buffered_data(loop):
    r, w = os.pipe()
    capacity = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Writer(loop), open(w, "wb", 0))
        transport.write(b"y" * MiB)
        assert transport.get_write_buffer_size() == MiB - capacity
        transport.abort()
        assert transport.is_closing() and transport.get_write_buffer_size() == 0
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert await read_fd(r, MiB) == b"y" * capacity  # then EOF
        assert proto.events == ["made", "pause", "lost"]

    try:
        run(loop, main())
    finally:
        os.close(r)


@pytest.mark.parametrize("kwargs", [{"high": 1, "low": 2}, {"high": -1}, {"low": -1, "high": 0}])
def test_bad_write_buffer_limits_are_asyncios(loop, loop_factory, kwargs):
    async def limits():
        r, w = os.pipe()
        os.close(r)
        loop = asyncio.get_running_loop()
        transport, proto = await loop.connect_write_pipe(asyncio.Protocol, open(w, "wb", 0))
        try:
            transport.set_write_buffer_limits(**kwargs)
        finally:
            transport.close()
            await settle()

    expected = outcome(asyncio.SelectorEventLoop, limits)
    assert expected[0] is ValueError
    assert outcome(loop_factory, limits) == expected


# --- the reader goes away -------------------------------------------------------


def test_reader_gone_while_idle(loop):
    r, w = os.pipe()

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Writer(loop), open(w, "wb", 0))
        os.close(r)
        # asyncio watches an idle pipe's write end: the hangup closes it
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert transport.is_closing() and proto.events == ["made", "lost"]

    run(loop, main())


def test_write_to_a_closed_reader_is_epipe(loop, caplog):
    r, w = os.pipe()

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Writer(loop), open(w, "wb", 0))
        os.close(r)
        transport.write(b"nobody reads")  # before the loop sees the hangup
        exc = await asyncio.wait_for(proto.lost, TIMEOUT)
        assert type(exc) is BrokenPipeError and exc.errno == errno.EPIPE
        assert proto.events == ["made", "lost"] and transport.is_closing()
        # That failed write counts as the first lost write: the warning
        # comes from the 5th write after it on.
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for n in range(1, 8):
                transport.write(b"more")
                warned = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
                assert warned == [LOST_WRITES] * max(0, n - 4), n

    run(loop, main())


def test_reader_gone_with_buffered_data(loop):
    r, w = os.pipe()

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Writer(loop), open(w, "wb", 0))
        transport.write(b"z" * MiB)
        assert transport.get_write_buffer_size() > 0
        os.close(r)
        exc = await asyncio.wait_for(proto.lost, TIMEOUT)
        assert type(exc) is BrokenPipeError and exc.args == ()  # asyncio's BrokenPipeError()
        assert transport.get_write_buffer_size() == 0
        assert proto.events == ["made", "pause", "lost"]

    run(loop, main())


def test_writes_after_close_are_dropped_then_warned_about(loop, caplog):
    r, w = os.pipe()

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Writer(loop), open(w, "wb", 0))
        transport.write(b"kept")
        transport.close()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for n in range(1, 8):
                transport.write(b"dropped")
                transport.write(b"")  # empty writes are not counted
                if n == 2:
                    assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
                warned = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
                assert warned == [LOST_WRITES] * max(0, n - 5), n
        assert transport.get_write_buffer_size() == 0
        assert await read_fd(r, 100) == b"kept"

    try:
        run(loop, main())
    finally:
        os.close(r)


# --- bad input ------------------------------------------------------------------------


def test_write_str_is_asyncios_assertion(loop):
    r, w = os.pipe()

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Writer(loop), open(w, "wb", 0))
        try:
            # asyncio's pipe transport checks the type with an assert
            with pytest.raises(AssertionError) as info:
                transport.write("text")
            assert str(info.value) == "'text'"
            # writelines joins first: the join raises
            with pytest.raises(TypeError, match="^sequence item 0: expected a bytes-like object, str found$"):
                transport.writelines(["te", "xt"])
        finally:
            transport.close()
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert await read_fd(r, 10) == b""

    try:
        run(loop, main())
    finally:
        os.close(r)


@pytest.mark.parametrize("side", ["read", "write"])
def test_regular_file_is_refused(loop, loop_factory, tmp_path, side):
    path = tmp_path / "file"
    path.write_bytes(b"regular")
    mode = "rb" if side == "read" else "r+b"
    messages = {
        "read": "Pipe transport is for pipes/sockets only.",
        "write": "Pipe transport is only for pipes, sockets and character devices",
    }

    async def connect():
        method = getattr(asyncio.get_running_loop(), f"connect_{side}_pipe")
        return await method(asyncio.Protocol, files[-1])

    files: list = []
    try:
        files.append(open(path, mode, buffering=0))
        assert outcome(asyncio.SelectorEventLoop, connect) == (ValueError, messages[side])
        files.append(open(path, mode, buffering=0))
        assert outcome(loop_factory, connect) == (ValueError, messages[side])
        # the file is the caller's: still open and still blocking
        assert not files[-1].closed and os.get_blocking(files[-1].fileno())
        assert files[-1].read() == b"regular"
    finally:
        for f in files:
            f.close()
    assert run(loop, asyncio.sleep(0, "usable")) == "usable"


# --- PTYs ---------------------------------------------------------------------------------


def test_pty_master_reads_until_the_slave_closes(loop):
    master, slave = os.openpty()

    async def main():
        transport, proto = await loop.connect_read_pipe(lambda: Recorder(loop), open(master, "rb", 0))
        os.write(slave, b"ping\n")
        assert await proto.wait_for_bytes(6) == b"ping\r\n"  # the tty's ONLCR
        os.close(slave)
        # Linux reports EIO on the master once the slave is closed: asyncio
        # passes it to connection_lost, without eof_received and without
        # calling the exception handler.
        exc = await asyncio.wait_for(proto.lost, TIMEOUT)
        assert type(exc) is OSError and exc.errno == errno.EIO
        assert proto.events == [("made",), ("data", b"ping\r\n"), ("lost", exc)]
        assert transport.is_closing()

    run(loop, main())


def test_pty_master_write(loop):
    master, slave = os.openpty()

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Writer(loop), open(master, "wb", 0))
        transport.write(b"pong\n")
        assert await read_fd(slave, 5) == b"pong\n"
        transport.close()
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert proto.events == ["made", "lost"]

    try:
        run(loop, main())
    finally:
        os.close(slave)
