"""add_reader/add_writer and their removal: level-triggered, asyncio's bookkeeping."""

import asyncio
import contextvars
import errno
import os
import socket
import tempfile

import pytest
from conftest import run_once

VAR = contextvars.ContextVar("VAR", default="default")


def noop(*args):
    pass


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    with a, b:
        yield a, b


def test_reader_is_level_triggered(loop, pair):
    """The reader runs again on every iteration while data stays unread."""
    a, b = pair
    out = []

    def tick():
        out.append("t")
        if len(out) < 12:
            loop.call_soon(tick)
        else:
            loop.stop()

    b.send(b"x")
    loop.add_reader(a, out.append, "r")
    loop.call_soon(tick)
    loop.run_forever()
    loop.remove_reader(a)
    # One tick per iteration, and the unread socket's reader after it every time.
    assert "".join(out) == "tr" * 7


def test_reader_stops_once_the_data_is_read(loop, pair):
    a, b = pair
    got = []

    def read():
        got.append(a.recv(100))

    b.send(b"hello")
    loop.add_reader(a, read)
    for _ in range(3):
        run_once(loop)
    loop.remove_reader(a)
    assert got == [b"hello"]


def test_writer_is_level_triggered(loop, pair):
    a, b = pair
    calls = []

    def write():
        calls.append(1)
        if len(calls) == 3:
            loop.stop()

    loop.add_writer(b, write)
    loop.run_forever()
    assert calls == [1, 1, 1]
    assert loop.remove_writer(b) is True


def test_reader_gets_its_args_and_eof(loop, pair):
    a, b = pair
    got = []

    def read(tag, n):
        data = a.recv(n)
        got.append((tag, data))
        if not data:
            loop.remove_reader(a)
            loop.stop()

    loop.add_reader(a, read, "tag", 10)
    b.send(b"data")
    b.close()
    loop.run_forever()
    assert got == [("tag", b"data"), ("tag", b"")]


def test_pipe(loop):
    r, w = os.pipe()
    try:
        got = []

        def read():
            got.append(os.read(r, 100))
            loop.remove_reader(r)
            loop.stop()

        loop.add_reader(r, read)
        os.write(w, b"through a pipe")
        loop.run_forever()
        assert got == [b"through a pipe"]
    finally:
        os.close(r)
        os.close(w)


def test_reader_and_writer_on_one_descriptor_are_independent(loop, pair):
    a, b = pair
    out = []
    loop.add_reader(a, out.append, "r")
    loop.add_writer(a, out.append, "w")
    b.send(b"x")
    run_once(loop)
    assert sorted(out) == ["r", "w"]
    assert loop.remove_writer(a) is True
    out.clear()
    run_once(loop)
    assert out == ["r"]
    assert loop.remove_reader(a) is True


def test_remove_return_values(loop, pair):
    a, b = pair
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False
    loop.add_reader(a, noop)
    assert loop.remove_writer(a) is False
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False
    loop.add_writer(a.fileno(), noop)
    assert loop.remove_writer(a) is True  # the socket and its number are one descriptor


def test_removed_reader_does_not_run(loop, pair):
    a, b = pair
    out = []
    b.send(b"x")
    loop.add_reader(a, out.append, "r")
    loop.remove_reader(a)
    run_once(loop)
    assert out == []


def test_a_callback_removing_a_reader_stops_it_in_the_same_iteration(loop, pair):
    a, b = pair
    out = []

    def remove_reader():
        out.append("writer")
        loop.remove_reader(a)

    b.send(b"x")
    loop.add_writer(b, remove_reader)  # b is writable; a's reader becomes ready too
    loop.add_reader(a, out.append, "reader")
    run_once(loop)
    loop.remove_writer(b)
    run_once(loop)
    assert out.count("writer") == 1
    assert out.count("reader") <= 1


def test_replacing_a_reader_cancels_the_old_handle(loop, pair):
    a, b = pair
    out = []
    old = loop._add_reader(a.fileno(), out.append, "old")
    new = loop._add_reader(a.fileno(), out.append, "new")
    assert old.cancelled() and not new.cancelled()
    b.send(b"x")
    run_once(loop)
    assert out == ["new"]
    assert loop.remove_reader(a) is True
    assert new.cancelled()


def test_replacing_a_writer_runs_only_the_new_one(loop, pair):
    a, b = pair
    out = []
    loop.add_writer(a, out.append, "old")
    loop.add_writer(a, out.append, "new")
    run_once(loop)
    assert out == ["new"]
    assert loop.remove_writer(a) is True
    assert loop.remove_writer(a) is False


def test_exceptions_in_a_reader_go_to_the_handler_and_it_stays_registered(loop, pair):
    a, b = pair
    contexts = []
    loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))

    def fail():
        raise ValueError("in a reader")

    b.send(b"x")
    loop.add_reader(a, fail)
    run_once(loop)
    run_once(loop)
    loop.remove_reader(a)
    assert [str(c["exception"]) for c in contexts] == ["in a reader"] * 2


def test_reader_runs_in_the_context_of_add_reader(loop, pair):
    a, b = pair
    seen = []

    def register():
        VAR.set("at add_reader")
        loop.add_reader(a, lambda: seen.append(VAR.get()))

    contextvars.copy_context().run(register)
    b.send(b"x")
    run_once(loop)
    loop.remove_reader(a)
    assert seen == ["at add_reader"]


# --- what counts as a file object ----------------------------------------------------------


class FileLike:
    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd


def test_objects_with_fileno(loop, pair):
    a, b = pair
    out = []
    loop.add_reader(FileLike(a.fileno()), out.append, "file-like")
    b.send(b"x")
    run_once(loop)
    assert out == ["file-like"]
    assert loop.remove_reader(FileLike(a.fileno())) is True


@pytest.mark.parametrize("method", ["add_reader", "add_writer", "remove_reader", "remove_writer"])
@pytest.mark.parametrize(
    ("fileobj", "message"),
    [
        (-1, "Invalid file descriptor: -1"),
        (FileLike(-5), "Invalid file descriptor: -5"),
        (object(), "Invalid file object: <object object at"),
        ("3", "Invalid file object: '3'"),
        (3.0, "Invalid file object: 3.0"),
        (FileLike("x"), "Invalid file object: <test_fds.FileLike object at"),
    ],
)
def test_invalid_file_objects_raise_value_error(loop, method, fileobj, message):
    args = (noop,) if method.startswith("add") else ()
    with pytest.raises(ValueError) as exc:
        getattr(loop, method)(fileobj, *args)
    assert str(exc.value).startswith(message)


class FailingFileno:
    def fileno(self):
        raise KeyError("fileno failed")


@pytest.mark.parametrize("method", ["add_reader", "add_writer", "remove_reader", "remove_writer"])
def test_other_exceptions_from_fileno_propagate(loop, method):
    args = (noop,) if method.startswith("add") else ()
    with pytest.raises(KeyError, match="fileno failed"):
        getattr(loop, method)(FailingFileno(), *args)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_regular_file_is_refused_as_by_epoll(loop, method):
    with tempfile.TemporaryFile() as f:
        with pytest.raises(PermissionError) as exc:
            getattr(loop, method)(f, noop)
        assert exc.value.errno == errno.EPERM
        assert loop.remove_reader(f) is False
        assert loop.remove_writer(f) is False


def test_closed_descriptor_is_refused(loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    a.close()
    b.close()
    with pytest.raises(OSError) as exc:
        loop.add_reader(fd, noop)
    assert exc.value.errno == errno.EBADF


def test_descriptor_closed_while_registered_can_be_removed(loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, noop)
    a.close()
    b.close()
    assert loop.remove_reader(fd) is True


# --- a closed loop ------------------------------------------------------------------------


def test_closed_loop(loop, pair):
    a, b = pair
    loop.add_reader(a, noop)
    loop.close()
    for method in (loop.add_reader, loop.add_writer):
        with pytest.raises(RuntimeError, match="^Event loop is closed$"):
            method(a, noop)
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False


def test_closed_loop_still_validates_file_objects_on_remove(loop):
    loop.close()
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.remove_reader(object())
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.remove_writer(object())


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_closed_loop_is_checked_before_the_descriptor(loop, method):
    loop.close()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        getattr(loop, method)(-1, noop)


def test_selector_view_shows_what_is_watched(loop, pair):
    # Selector loops have loop._selector; code and asyncio's own tests read
    # its get_key()/get_map(). ferroloop's is a read-only view of its poller.
    import selectors

    a, b = pair
    with pytest.raises(KeyError):
        loop._selector.get_key(a)
    handle = loop._add_reader(a.fileno(), lambda: None)
    key = loop._selector.get_key(a)
    assert (key.fileobj, key.fd, key.events) == (a.fileno(), a.fileno(), selectors.EVENT_READ)
    assert key.data[0] is handle and key.data[1] is None
    loop._add_writer(a.fileno(), lambda: None)
    assert loop._selector.get_key(a.fileno()).events == selectors.EVENT_READ | selectors.EVENT_WRITE
    assert a.fileno() in loop._selector.get_map()
    loop._remove_reader(a.fileno())
    loop._remove_writer(a.fileno())
    with pytest.raises(KeyError):
        loop._selector.get_key(a)
    assert a.fileno() not in loop._selector.get_map()
    loop.close()
    assert loop._selector is None


def test_selector_view_shows_a_transports_socket(loop):
    import selectors

    async def main():
        r, w = socket.socketpair()
        fd = r.fileno()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, r)
        await asyncio.sleep(0)
        key = loop._selector.get_key(fd)
        assert key.events == selectors.EVENT_READ and key.data[0] is not None
        transport.close()
        await asyncio.sleep(0)
        with pytest.raises(KeyError):
            loop._selector.get_key(fd)
        w.close()

    loop.run_until_complete(main())


def outcomes(*steps):
    """Each step's result, or its exception as (type, errno or message)."""
    out = []
    for step in steps:
        try:
            out.append(step())
        except OSError as exc:
            out.append((type(exc), exc.errno))
        except ValueError as exc:
            out.append((ValueError, str(exc)))
    return out


@pytest.mark.parametrize("remove", ["remove_reader", "remove_writer"])
def test_removal_by_a_socket_closed_after_it_was_registered(loop, remove):
    """selectors find the registration by the object once its fileno() is
    -1 (`_fileobj_lookup`): anyio closes sockets with a read pending."""
    a, b = socket.socketpair()
    with b:
        getattr(loop, remove.replace("remove", "add"))(a, noop)
        a.close()
        assert outcomes(lambda: getattr(loop, remove)(a), lambda: getattr(loop, remove)(a)) == [
            True,
            (ValueError, "Invalid file descriptor: -1"),
        ]
        run_once(loop)


def test_a_closed_socket_with_both_sides_registered(loop):
    """Removing one side leaves the other to register anew, which the
    kernel refuses for a closed descriptor: the registration is gone."""
    a, b = socket.socketpair()
    with b:
        loop.add_reader(a, noop)
        loop.add_writer(a, noop)
        a.close()
        assert outcomes(lambda: loop.remove_reader(a), lambda: loop.remove_writer(a)) == [
            (OSError, errno.EBADF),
            (ValueError, "Invalid file descriptor: -1"),
        ]
        run_once(loop)


def test_adding_to_a_closed_socket_that_is_registered(loop):
    """The same side again only replaces the handler (no system call); the
    other side changes the events, which the kernel refuses."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with b, d:
        loop.add_reader(a, noop)
        a.close()
        assert outcomes(lambda: loop.add_reader(a, noop), lambda: loop.remove_reader(a)) == [None, True]
        loop.add_reader(c, noop)
        c.close()
        assert outcomes(lambda: loop.add_writer(c, noop), lambda: loop.remove_reader(c)) == [
            (OSError, errno.EBADF),
            (ValueError, "Invalid file descriptor: -1"),
        ]
        never = socket.socket()
        never.close()
        assert outcomes(lambda: loop.remove_reader(never)) == [(ValueError, "Invalid file descriptor: -1")]
        run_once(loop)


def test_the_first_object_names_the_registration(loop):
    """A selector key keeps the object it was registered with: adding the
    other side by number does not rename it, so the closed socket still
    finds its registration."""
    a, b = socket.socketpair()
    with b:
        loop.add_reader(a, noop)
        loop.add_writer(a.fileno(), noop)
        assert loop.remove_writer(a.fileno()) is True
        a.close()
        assert outcomes(lambda: loop.remove_reader(a)) == [True]
        run_once(loop)


def test_a_file_object_let_go_by_the_loop_may_use_the_loop(loop):
    """The object a registration was named by is released when the
    registration goes; its finalizer may call the loop (no borrow is
    held then)."""
    r, w = os.pipe()
    seen = []

    class FileObj:
        def fileno(self):
            return r

        def __del__(self):
            try:
                loop.call_soon(seen.append, "finalized")
            except BaseException as exc:  # noqa: BLE001 - a PanicException must be seen
                seen.append(repr(exc))

    try:
        loop.add_reader(FileObj(), noop)  # the registration holds the only reference
        assert loop.remove_reader(r) is True
        run_once(loop)
        assert seen == ["finalized"]
    finally:
        os.close(r)
        os.close(w)
