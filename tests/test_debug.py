"""asyncio's debug mode: the flag, its checks, and what it adds to reports."""

import asyncio
import inspect
import logging
import re
import socket
import threading

import pytest
from conftest import python, run_once


def callback(*args):
    pass


SOURCE = f"{__file__}:{callback.__code__.co_firstlineno}"


def previous_line():
    """file:line of the line before the caller's."""
    return f"{__file__}:{inspect.currentframe().f_back.f_lineno - 1}"


# --- the flag ------------------------------------------------------------------------


def test_debug_flag(loop):
    assert loop.get_debug() == asyncio.coroutines._is_debug_mode()
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_slow_callback_duration_default(loop):
    assert loop.slow_callback_duration == 0.1
    loop.slow_callback_duration = 0.5
    assert loop.slow_callback_duration == 0.5


DEBUG_PROBE = """
import asyncio, sys
if sys.argv[1] == "ferroloop":
    import ferroloop
    new_loop, run = ferroloop.new_event_loop, ferroloop.run
else:
    new_loop, run = asyncio.SelectorEventLoop, asyncio.run
loop = new_loop()
print(loop.get_debug())
loop.close()
async def main():
    return asyncio.get_running_loop().get_debug()
print(run(main()))
"""


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ((), {}, "False\nFalse\n"),
        ((), {"PYTHONASYNCIODEBUG": "1"}, "True\nTrue\n"),
        (("-X", "dev"), {}, "True\nTrue\n"),
    ],
)
def test_debug_mode_from_the_environment(loop_name, flags, env, expected):
    result = python(*flags, "-c", DEBUG_PROBE, loop_name, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


# --- checks made in debug mode -----------------------------------------------------------


def test_non_threadsafe_calls_from_another_thread_are_refused(loop):
    loop.set_debug(True)
    results = []

    def from_a_thread():
        for name, call in [
            ("call_soon", lambda: loop.call_soon(callback)),
            ("call_later", lambda: loop.call_later(1, callback)),
            ("call_at", lambda: loop.call_at(1, callback)),
            ("call_soon_threadsafe", lambda: loop.call_soon_threadsafe(callback)),
        ]:
            try:
                call()
                results.append((name, "ok"))
            except RuntimeError as e:
                results.append((name, str(e)))

    def in_the_loop():
        thread = threading.Thread(target=from_a_thread)
        thread.start()
        thread.join()

    loop.call_soon(in_the_loop)
    run_once(loop)
    refused = "Non-thread-safe operation invoked on an event loop other than the current one"
    assert results == [
        ("call_soon", refused),
        ("call_later", refused),
        ("call_at", refused),
        ("call_soon_threadsafe", "ok"),
    ]


def test_calls_from_another_thread_are_not_checked_outside_debug_mode(loop):
    loop.set_debug(False)
    errors = []

    def in_the_loop():
        def from_a_thread():
            try:
                loop.call_soon(callback)
            except RuntimeError as e:
                errors.append(e)

        thread = threading.Thread(target=from_a_thread)
        thread.start()
        thread.join()

    loop.call_soon(in_the_loop)
    run_once(loop)
    assert errors == []


async def coroutine_function():
    pass


@pytest.mark.parametrize(
    ("method", "args", "name"),
    [
        ("call_soon", (), "call_soon"),
        ("call_soon_threadsafe", (), "call_soon_threadsafe"),
        ("call_later", (1,), "call_at"),
        ("call_at", (1,), "call_at"),
    ],
)
def test_coroutines_are_refused_as_callbacks(loop, method, args, name):
    loop.set_debug(True)
    coro = coroutine_function()
    try:
        for bad in (coro, coroutine_function):
            with pytest.raises(TypeError, match=re.escape(f"coroutines cannot be used with {name}()")):
                getattr(loop, method)(*args, bad)
    finally:
        coro.close()


# --- what debug mode adds to reports ----------------------------------------------------


def test_handles_record_where_they_were_created(loop):
    loop.set_debug(True)
    handle = loop.call_soon(callback, 1)
    created = previous_line()
    timer = loop.call_at(12.5, callback)
    timer_created = previous_line()
    assert repr(handle) == f"<Handle callback(1) at {SOURCE} created at {created}>"
    assert repr(timer) == f"<TimerHandle when=12.5 callback() at {SOURCE} created at {timer_created}>"


def test_cancelled_handle_repr_in_debug_mode(loop):
    """Regression: ferroloop saved the repr before setting the cancelled flag."""
    loop.set_debug(True)
    handle = loop.call_soon(callback, 1)
    created = previous_line()
    timer = loop.call_at(12.5, callback)
    timer_created = previous_line()
    handle.cancel()
    timer.cancel()
    assert repr(handle) == f"<Handle cancelled callback(1) at {SOURCE} created at {created}>"
    assert repr(timer) == (
        f"<TimerHandle cancelled when=12.5 callback() at {SOURCE} created at {timer_created}>"
    )


def test_reader_handles_record_where_they_were_created_in_debug_mode(loop):
    loop.set_debug(True)
    a, b = socket.socketpair()
    with a, b:
        handle = loop._add_reader(a.fileno(), callback)
        loop.remove_reader(a)
    assert handle._source_traceback


def test_exception_context_has_the_source_traceback(loop):
    def boom():
        raise ValueError("boom")

    contexts = []
    loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))
    loop.set_debug(True)
    handle = loop.call_soon(boom)
    line = inspect.currentframe().f_lineno - 1
    run_once(loop)
    [ctx] = contexts
    assert set(ctx) == {"message", "exception", "handle", "source_traceback"}
    assert ctx["handle"] is handle
    frame = ctx["source_traceback"][-1]
    assert (frame.filename, frame.lineno) == (__file__, line)


def slow_callback():
    pass


def test_slow_callback_warning_names_the_callback(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.0  # every callback is "slow": no timing involved
    loop.call_soon(slow_callback)
    created = previous_line()
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_once(loop)
    messages = [r.getMessage() for r in caplog.records if "slow_callback" in r.getMessage()]
    source = f"{__file__}:{slow_callback.__code__.co_firstlineno}"
    assert len(messages) == 1
    assert re.fullmatch(
        re.escape(f"Executing <Handle slow_callback() at {source} created at {created}> took ")
        + r"\d+\.\d{3} seconds",
        messages[0],
    ), messages


def test_slow_task_step_warning_names_the_task(loop, caplog):
    async def slow_step():
        return "done"

    loop.set_debug(True)
    loop.slow_callback_duration = 0.0
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(loop.create_task(slow_step(), name="the-slow-task"))
    assert any(
        r.levelno == logging.WARNING
        and r.getMessage().startswith("Executing <Task finished name='the-slow-task'")
        for r in caplog.records
    )


def test_no_slow_callback_warning_outside_debug_mode(loop, caplog):
    loop.set_debug(False)
    loop.slow_callback_duration = 0.0
    loop.call_soon(slow_callback)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_once(loop)
    assert caplog.records == []


@pytest.mark.parametrize("kind", ["stream", "datagram", "read pipe"])
def test_pausing_and_resuming_reading_is_logged_in_debug_mode(loop, caplog, kind):
    """asyncio's `_SelectorTransport` and read pipe transport log both in
    debug mode; only a change is logged."""
    import os

    loop.set_debug(True)
    closers = []

    async def make():
        if kind == "stream":
            a, b = socket.socketpair()
            closers.append(b.close)
            t, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        elif kind == "datagram":
            t, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        else:
            r, w = os.pipe()
            closers.append(lambda: os.close(w))
            t, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(r, "rb", 0))
        return t

    t = loop.run_until_complete(make())
    try:
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            t.pause_reading()
            t.pause_reading()
            t.resume_reading()
            t.resume_reading()
        said = [r.getMessage() for r in caplog.records if "reading" in r.getMessage()]
        assert [m.rsplit(" ", 2)[-2:] for m in said] == [["pauses", "reading"], ["resumes", "reading"]]
        assert all(m.startswith("<") for m in said), said
    finally:
        t.close()
        loop.run_until_complete(asyncio.sleep(0))
        for c in closers:
            c()
