"""Shared helpers for the networking tests (test_tcp, test_unix_udp,
test_sock_ops, test_net_stress).

`no_fd_leak` counts this process's open file descriptors before a test and
again after it, once the `loop` fixture has closed the loop and the garbage
collector has run: a transport, server or socket left open fails the test.
Each networking module applies it to every test with
`pytestmark = pytest.mark.usefixtures("no_fd_leak")`; the `usefixtures`
fixtures are set up before the test's own arguments (`loop`) and torn down
after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import socket
import sys
import tempfile
import traceback
import warnings

import pytest


def open_fds() -> dict[int, str]:
    """This process's open descriptors and what each one points at."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the listing's own descriptor, gone by now
            pass
    return out


# The io_uring descriptor a busy ferroloop makes for itself, the loop's own
# like its epoll descriptor (src/doorbell.rs), the first time an iteration
# arms its doorbell: a test may see it appear mid-run. Closing the loop
# closes it (tests/test_busy_polling.py).
RING = "anon_inode:[io_uring]"


def fds_added(before: dict[int, str], after: dict[int, str]) -> list[str]:
    """What `after` holds that `before` did not, but for the loop's ring,
    which may appear once; what `before` held must still be there."""
    assert all(after.get(fd) == what for fd, what in before.items()), (before, after)
    added = [what for fd, what in after.items() if before.get(fd) != what]
    if added.count(RING) == 1:
        added.remove(RING)
    return added


@pytest.fixture
def no_fd_leak():
    # What a failed earlier test left behind is collected here, quietly:
    # its failure was the report.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    before = open_fds()
    last_failure = getattr(sys, "last_value", None)
    yield
    if getattr(sys, "last_value", None) is not last_failure:
        # The test failed (pytest keeps the failure's traceback in
        # sys.last_traceback, and with it every socket the test held): the
        # failure is the report. Drop those frames so the sockets do not
        # spill ResourceWarnings into the next tests.
        failure_tb = getattr(sys, "last_traceback", None)  # 3.12+ may set only last_exc
        if failure_tb is not None:
            traceback.clear_frames(failure_tb)
        sys.last_type = sys.last_value = sys.last_traceback = None
        if hasattr(sys, "last_exc"):  # 3.12+
            sys.last_exc = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        return
    gc.collect()
    after = open_fds()
    # Only new descriptors count: an earlier failed test's garbage may be
    # collected (and its descriptors closed) while this one runs.
    leaked = {fd: what for fd, what in after.items() if before.get(fd) != what}
    assert not leaked, f"fd leak: {leaked}"


@pytest.fixture
def short_tmp():
    """A short temporary directory: AF_UNIX paths are limited to 107 bytes."""
    d = tempfile.mkdtemp(prefix="fl-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Recorder(asyncio.Protocol):
    """Records every protocol callback as a tuple, in call order.

    Consecutive data_received calls are merged (how a byte stream is cut
    into reads is the kernel's business), so the recorded list is the same
    on every loop.
    """

    def __init__(self, loop=None, eof_keeps_open=False):
        self.events: list[tuple] = []
        self.transport = None
        self.eof_keeps_open = eof_keeps_open
        loop = loop or asyncio.get_running_loop()
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.eof = loop.create_future()
        self.data = bytearray()
        self._waiters: list[tuple[int, asyncio.Future]] = []

    def connection_made(self, transport):
        self.transport = transport
        self.events.append(("made",))
        self.made.set_result(transport)

    def data_received(self, data):
        assert isinstance(data, bytes)
        if self.events and self.events[-1][0] == "data":
            self.events[-1] = ("data", self.events[-1][1] + data)
        else:
            self.events.append(("data", data))
        self.data += data
        for n, fut in list(self._waiters):
            if len(self.data) >= n and not fut.done():
                fut.set_result(None)

    def eof_received(self):
        self.events.append(("eof",))
        self.eof.set_result(None)
        return self.eof_keeps_open

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(exc)

    async def wait_for_bytes(self, n: int, timeout: float = 10):
        if len(self.data) < n:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append((n, fut))
            await asyncio.wait_for(fut, timeout)
        return bytes(self.data)


async def tcp_pair(loop, client_protocol=None, server_protocol=None, host="127.0.0.1"):
    """A connected (server transport, server protocol, client transport,
    client protocol, server) on `loop`, each end's connection_made done."""
    server_protocols = []

    def factory():
        p = server_protocol() if server_protocol else Recorder(loop)
        server_protocols.append(p)
        return p

    server = await loop.create_server(factory, host, 0)
    port = server.sockets[0].getsockname()[1]
    ct, cp = await loop.create_connection(client_protocol or (lambda: Recorder(loop)), host, port)
    for _ in range(1000):
        if server_protocols and getattr(server_protocols[0], "transport", None) is not None:
            break
        await asyncio.sleep(0)
    sp = server_protocols[0]
    return sp.transport, sp, ct, cp, server


async def close_all(*things):
    """Closes transports and servers and waits until they are gone."""
    for t in things:
        if t is None:
            continue
        if isinstance(t, asyncio.AbstractServer):
            t.close()
            await t.wait_closed()
        else:
            t.close()
    # connection_lost runs on the next iterations
    for _ in range(5):
        await asyncio.sleep(0)


def free_port(family=socket.AF_INET, type=socket.SOCK_STREAM) -> int:
    """A port nothing listens on right now."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family, type) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def listening_socket(host="127.0.0.1", family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        s.listen(100)
        yield s
    finally:
        s.close()


def outcome(factory, make_coro):
    """Runs make_coro() on a fresh loop from `factory`: ('ok', result) or
    (exception type, str)."""
    loop = factory()
    try:
        return "ok", loop.run_until_complete(make_coro())
    except Exception as exc:
        return type(exc), str(exc)
    finally:
        loop.close()


def skip_asyncio_bug(loop_name: str, condition: bool, what: str) -> None:
    """Skips the asyncio run of a test where this interpreter's asyncio is
    itself broken; ferroloop is still held to the correct behaviour."""
    if loop_name == "asyncio" and condition:
        pytest.skip(f"asyncio bug in Python {sys.version.split()[0]}: {what}")
