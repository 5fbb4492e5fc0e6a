"""The exception handler, and what an exception in a callback does."""

import asyncio
import gc
import logging
import socket

import pytest
from conftest import run_once


def boom():
    raise ValueError("boom")


SOURCE = f"{__file__}:{boom.__code__.co_firstlineno}"


@pytest.fixture
def contexts(loop):
    """The contexts passed to the exception handler."""
    seen = []
    loop.set_exception_handler(lambda the_loop, ctx: seen.append((the_loop, ctx)))
    yield seen


# --- the handler API ---------------------------------------------------------------


def test_exception_handler_get_set_reset(loop_factory):
    loop = loop_factory()
    try:
        assert loop.get_exception_handler() is None

        def handler(the_loop, ctx):
            pass

        loop.set_exception_handler(handler)
        assert loop.get_exception_handler() is handler
        loop.set_exception_handler(None)
        assert loop.get_exception_handler() is None
    finally:
        loop.close()


@pytest.mark.parametrize("handler", [42, "handler"])
def test_set_exception_handler_refuses_a_non_callable(loop, handler):
    with pytest.raises(TypeError, match="A callable object or None is expected, got"):
        loop.set_exception_handler(handler)


def test_call_exception_handler_passes_the_context_to_the_handler(loop, contexts):
    ctx = {"message": "hello", "extra": 1}
    loop.call_exception_handler(ctx)
    assert contexts == [(loop, ctx)]


# --- exceptions in callbacks ---------------------------------------------------------


def test_exception_in_call_soon_goes_to_the_handler(loop, contexts):
    handle = loop.call_soon(boom)
    run_once(loop)
    [(the_loop, ctx)] = contexts
    assert the_loop is loop
    assert set(ctx) == {"message", "exception", "handle"}
    assert ctx["message"] == f"Exception in callback boom() at {SOURCE}"
    assert isinstance(ctx["exception"], ValueError)
    assert str(ctx["exception"]) == "boom"
    assert ctx["handle"] is handle


def test_exception_in_a_timer_goes_to_the_handler(loop, contexts):
    timer = loop.call_later(0, boom)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    [(_, ctx)] = contexts
    assert set(ctx) == {"message", "exception", "handle"}
    assert ctx["handle"] is timer
    assert ctx["message"] == f"Exception in callback boom() at {SOURCE}"


def test_exception_in_a_reader_goes_to_the_handler(loop, contexts):
    a, b = socket.socketpair()
    with a, b:
        b.send(b"x")
        loop.add_reader(a, boom)
        run_once(loop)
        loop.remove_reader(a)
    [(_, ctx)] = contexts
    assert set(ctx) == {"message", "exception", "handle"}
    assert isinstance(ctx["exception"], ValueError)


def test_exceptions_never_stop_the_loop(loop, contexts):
    out = []
    for i in range(3):
        loop.call_soon(boom)
        loop.call_soon(out.append, i)
    loop.call_later(0, boom)
    loop.call_later(0.01, out.append, "timer")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert out == [0, 1, 2, "timer"]
    assert len(contexts) == 4


def test_a_failing_exception_handler_is_logged_and_the_loop_goes_on(loop, caplog):
    def bad_handler(the_loop, ctx):
        raise RuntimeError("in the handler")

    out = []
    loop.set_exception_handler(bad_handler)
    loop.call_soon(boom)
    loop.call_soon(out.append, "after")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_once(loop)
    assert out == ["after"]
    [record] = caplog.records
    assert record.getMessage().startswith("Unhandled error in exception handler")
    assert isinstance(record.exc_info[1], RuntimeError)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_propagate_out_of_run_forever(loop, contexts, exc_type):
    out = []

    def interrupt():
        raise exc_type

    loop.call_soon(out.append, "before")
    loop.call_soon(interrupt)
    loop.call_soon(out.append, "after")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert out == ["before"]
    assert not loop.is_running()
    assert contexts == []
    # What was ready stays queued and runs on the next run.
    run_once(loop)
    assert out == ["before", "after"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_from_a_timer_or_a_task(loop, contexts, exc_type):
    def interrupt():
        raise exc_type

    loop.call_later(0.001, interrupt)
    with pytest.raises(exc_type):
        loop.run_forever()

    async def task_interrupt():
        await asyncio.sleep(0)
        raise exc_type

    with pytest.raises(exc_type):
        loop.run_until_complete(task_interrupt())
    assert contexts == []


def test_unretrieved_task_exception_is_reported(loop, contexts):
    async def fail():
        raise ValueError("never retrieved")

    task = loop.create_task(fail())
    loop.run_until_complete(asyncio.sleep(0.01))
    assert task.done()
    del task
    gc.collect()
    [(_, ctx)] = contexts
    assert ctx["message"] == "Task exception was never retrieved"
    assert str(ctx["exception"]) == "never retrieved"


# --- the default handler's log --------------------------------------------------------


def test_default_handler_log_format(loop_factory, caplog):
    loop = loop_factory()
    try:
        handle = loop.call_soon(boom)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            run_once(loop)
    finally:
        loop.close()
    [record] = caplog.records
    assert record.name == "asyncio"
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"Exception in callback boom() at {SOURCE}\nhandle: {handle!r}"
    )
    assert repr(handle) == f"<Handle boom() at {SOURCE}>"
    assert isinstance(record.exc_info[1], ValueError)


@pytest.mark.parametrize("callback", [1, int], ids=["not callable", "a builtin"])
def test_a_callback_failing_in_c_code_is_logged_with_a_traceback(loop_factory, caplog, callback):
    """asyncio's log shows `Traceback (most recent call last):` and the
    frame that called the callback even when the error comes from C code."""
    loop = loop_factory()
    try:
        loop.call_soon(callback, "x")
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    [record] = caplog.records
    exc = record.exc_info[1]
    assert isinstance(exc, (TypeError, ValueError))
    assert exc.__traceback__ is not None
    assert "Traceback (most recent call last):\n  File " in caplog.text


def test_default_handler_logs_extra_context_keys(loop_factory, caplog):
    loop = loop_factory()
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            loop.call_exception_handler({"message": "hello", "foo": "bar"})
    finally:
        loop.close()
    [record] = caplog.records
    assert record.getMessage() == "hello\nfoo: 'bar'"
    assert not record.exc_info
