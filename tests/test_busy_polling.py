"""A loop busy with callbacks still polls I/O on every iteration.

asyncio polls its selector with a zero timeout whenever callbacks are
ready, so a descriptor that becomes ready during a `call_soon` chain has
its reader run one iteration later. ferroloop skips that poll's syscall
while its io_uring doorbell shows nothing has become ready (doorbell.rs);
these tests pin the outcome to asyncio's, after the chain has run long
enough for the doorbell to be armed, for each way a descriptor can become
ready: a write from the loop's thread, one from another thread, and a
descriptor registered while already readable.
"""

import os
import socket
import threading

import pytest

WARM_UP = 50  # chain steps before the event: the doorbell arms after a few
LIMIT = 1000  # chain steps after which the test gives up


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b:
        yield a, b


def busy(loop, steps):
    """A call_soon chain of `steps` hops: the doorbell arms after a few."""
    count = 0

    def step():
        nonlocal count
        count += 1
        if count < steps:
            loop.call_soon(step)
        else:
            loop.stop()

    loop.call_soon(step)
    loop.run_forever()


def reader_for(loop, sock, log, done):
    def on_readable():
        sock.recv(100)
        log.append("reader")
        loop.remove_reader(sock)
        if not done.done():
            done.set_result(None)

    return on_readable


def test_write_from_the_loop_thread_is_seen_next_iteration(loop, pair):
    a, b = pair
    log = []
    done = loop.create_future()

    def step(n):
        log.append(n)
        if n == 0:
            loop.add_reader(a, reader_for(loop, a, log, done))
        if n == WARM_UP:
            b.send(b"x")
        if n < LIMIT and not done.done():
            loop.call_soon(step, n + 1)

    loop.call_soon(step, 0)
    loop.run_until_complete(done)
    # The write in step WARM_UP; the poll before step WARM_UP + 1's
    # iteration queues the reader behind it.
    i = log.index(WARM_UP + 1)
    assert log[i + 1] == "reader", log[i - 2 : i + 3]


def test_write_from_another_thread_is_seen_within_an_iteration(loop, pair):
    a, b = pair
    log = []
    done = loop.create_future()
    wrote = threading.Event()

    def mark():
        log.append("mark")
        if "reader" in log:
            done.set_result(None)

    def writer():
        wrote.wait()
        b.send(b"x")
        # Queued after the write: the first poll that can see `mark` in
        # the ready queue comes after the write too.
        loop.call_soon_threadsafe(mark)

    def on_readable():
        a.recv(100)
        log.append("reader")
        loop.remove_reader(a)
        if "mark" in log:
            done.set_result(None)

    thread = threading.Thread(target=writer)
    thread.start()

    def step(n):
        log.append(n)
        if n == 0:
            loop.add_reader(a, on_readable)
        if n == WARM_UP:
            wrote.set()
        if n < 100 * LIMIT and not done.done():
            loop.call_soon(step, n + 1)

    loop.call_soon(step, 0)
    loop.run_until_complete(done)
    thread.join()
    # The reader may run before `mark` (a poll between the write and
    # call_soon_threadsafe saw it); after it, it runs in the same iteration
    # or the next: at most one chain step between them.
    between = log[log.index("mark") + 1 : log.index("reader")]
    assert len(between) <= 1, log[log.index("mark") - 2 :]


@pytest.mark.parametrize("how", ["add_reader", "add_writer"])
def test_descriptor_registered_ready_runs_next_iteration(loop, pair, how):
    a, b = pair
    b.send(b"x")  # `a` is readable, and writable, from the start
    log = []
    done = loop.create_future()
    idle_a, idle_b = socket.socketpair()

    def ready():
        log.append("ready")
        getattr(loop, "remove_" + how[4:])(a)
        if not done.done():
            done.set_result(None)

    def step(n):
        log.append(n)
        if n == 0:
            # Something registered for the doorbell to watch meanwhile.
            loop.add_reader(idle_a, lambda: None)
        if n == WARM_UP:
            getattr(loop, how)(a, ready)
        if n < LIMIT and not done.done():
            loop.call_soon(step, n + 1)

    with idle_a, idle_b:
        loop.call_soon(step, 0)
        loop.run_until_complete(done)
        loop.remove_reader(idle_a)
    i = log.index(WARM_UP + 1)
    assert log[i + 1] == "ready", log[i - 2 : i + 3]


def rings():
    """How many io_uring descriptors this process has open."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[io_uring]"
        except OSError:  # the listing's own descriptor, gone by now
            pass
    return count


def test_closing_the_loop_closes_its_ring(loop_factory, pair):
    a, b = pair
    before = rings()
    loop = loop_factory()
    try:
        loop.add_reader(a, lambda: None)
        busy(loop, 100)
        loop.remove_reader(a)
        # One ring at most, made by the busy iterations (none where
        # io_uring is unavailable, and none on asyncio's loop).
        assert rings() - before in (0, 1)
    finally:
        loop.close()
    assert rings() == before


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads
def test_a_forked_child_can_run_the_loop_it_inherited(loop, pair):
    # Unsupported by asyncio in general, but the child must not crash or
    # hang: the doorbell's ring belongs to the parent (doorbell.rs).
    a, b = pair
    loop.add_reader(a, lambda: None)
    busy(loop, 100)  # the parent's doorbell is armed
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            busy(loop, 100)
            got = []
            loop.remove_reader(a)
            loop.add_reader(a, lambda: (got.append(a.recv(10)), loop.stop()))
            loop.call_soon(b.send, b"x")
            loop.run_forever()
            code = 0 if got == [b"x"] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    loop.remove_reader(a)
    busy(loop, 100)
