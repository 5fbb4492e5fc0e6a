"""Wrong types and odd values: the same errors (or the same tolerance) as asyncio."""

import asyncio
import decimal
import math
import random
import socket
import sys

import pytest
from conftest import run_once


def noop(*args):
    pass


class OnlyFloat:
    def __float__(self):
        return 1.0


# --- delays and deadlines ---------------------------------------------------------------


def test_none_delay_and_deadline(loop):
    with pytest.raises(TypeError, match="^delay must not be None$"):
        loop.call_later(None, noop)
    with pytest.raises(TypeError, match="^when cannot be None$"):
        loop.call_at(None, noop)


@pytest.mark.parametrize("delay", ["1", b"1", [1], object(), decimal.Decimal(1), OnlyFloat()])
def test_non_number_delay_fails_as_time_plus_delay_does(loop, delay):
    # asyncio computes `self.time() + delay`: the TypeError is that of `+`.
    message = f"unsupported operand type(s) for +: 'float' and '{type(delay).__qualname__}'"
    if isinstance(delay, decimal.Decimal):
        message = message.replace("'Decimal'", "'decimal.Decimal'")
    with pytest.raises(TypeError) as caught:
        loop.call_later(delay, noop)
    assert str(caught.value) == message


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
def test_argument_errors_name_base_event_loop(loop, method):
    with pytest.raises(TypeError) as unexpected:
        getattr(loop, method)(noop, x=1)
    assert str(unexpected.value) == f"BaseEventLoop.{method}() got an unexpected keyword argument 'x'"
    with pytest.raises(TypeError) as missing:
        getattr(loop, method)()
    assert str(missing.value) == f"BaseEventLoop.{method}() missing 1 required positional argument: 'callback'"


@pytest.mark.parametrize(("method", "first"), [("call_later", "delay"), ("call_at", "when")])
def test_timer_argument_errors_are_asyncios(loop, method, first):
    # ferroloop parses these vectorcalls itself (scheduling.rs).
    call = getattr(loop, method)
    cases = [
        ((), {}, f"missing 2 required positional arguments: '{first}' and 'callback'"),
        ((0,), {}, "missing 1 required positional argument: 'callback'"),
        ((), {"callback": noop}, f"missing 1 required positional argument: '{first}'"),
        ((0, noop), {first: 0}, f"got multiple values for argument '{first}'"),
        ((0, noop), {"callback": noop}, "got multiple values for argument 'callback'"),
        ((0, noop), {"x": 1}, "got an unexpected keyword argument 'x'"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(TypeError) as caught:
            call(*args, **kwargs)
        assert str(caught.value) == f"BaseEventLoop.{method}() {message}"


@pytest.mark.parametrize("when", ["1", b"1", object()])
def test_non_number_deadline_fails_by_the_next_iteration(loop, when):
    # asyncio accepts the deadline and fails when its loop compares it;
    # failing at once is fine too. Either way: TypeError, nothing runs.
    out = []
    handle = None
    with pytest.raises(TypeError):
        handle = loop.call_at(when, out.append, "ran")
        run_once(loop)
    if handle is not None:
        handle.cancel()  # let the fixture's teardown run the loop
    assert out == []


def test_negative_delay_fires_as_soon_as_possible(loop):
    out = []
    loop.call_later(-5, out.append, "negative")
    loop.call_soon(out.append, "soon")
    loop.call_later(0, out.append, "zero")
    loop.call_at(-math.inf, out.append, "-inf")
    loop.call_at(loop.time() - 100, out.append, "past")
    run_once(loop)
    run_once(loop)
    assert out[0] == "soon"
    assert sorted(out[1:]) == ["-inf", "negative", "past", "zero"]


def test_infinite_delay_never_fires(loop):
    out = []
    handle = loop.call_later(math.inf, out.append, "inf")
    far = loop.call_later(1e300, out.append, "1e300")
    assert handle.when() == math.inf
    assert far.when() == 1e300
    loop.call_later(0.01, out.append, "real")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert out == ["real"]


def test_nan_delay_fires_on_the_next_iteration(loop):
    out = []
    handle = loop.call_later(math.nan, out.append, "nan")
    assert math.isnan(handle.when())
    run_once(loop)
    assert out == ["nan"]


def test_nan_delay_fires_before_later_timers(loop):
    """asyncio's comparisons leave a NaN timer at the head of its heap."""
    out = []
    loop.call_later(math.nan, out.append, "nan")
    far = loop.call_later(3600, out.append, "an hour")
    loop.call_later(0.01, out.append, "soon")
    run_once(loop)
    far.cancel()
    assert out == ["nan"]


def test_a_nan_deadline_at_the_head_when_the_loop_would_wait(loop):
    """Up to 3.12 asyncio waits `max(0, nan)`, i.e. not at all, and the NaN
    timer fires; from 3.13 its selector gets the NaN and raises."""
    out = []
    nan = loop.call_at(math.nan, out.append, "nan")
    stop = loop.call_later(0.01, loop.stop)
    if sys.version_info >= (3, 13):
        with pytest.raises(ValueError, match="^cannot convert float NaN to integer$"):
            loop.run_forever()
        assert out == []
        nan.cancel()
        stop.cancel()
    else:
        loop.run_forever()
        assert out == ["nan"]


def test_nan_scheduled_after_a_timer_waits_for_it(loop):
    """heappush leaves a NaN below the timer it was pushed after."""
    out = []
    loop.call_later(0.05, out.append, "timer")
    loop.call_later(math.nan, out.append, "nan")
    run_once(loop)
    assert out == []
    loop.call_later(0.1, loop.stop)
    loop.run_forever()
    assert out == ["timer", "nan"]


def _firing_order(loop, seed):
    """Schedules past, future and NaN deadlines (some cancelled) in a
    seeded order and returns the order they fire in, and how the run ended.
    Fewer than 100 timers, so no purge: the pops follow from the heap's
    history alone. From 3.13, a NaN left at the head of the heap when the
    loop would wait makes asyncio's selector raise ValueError."""
    rng = random.Random(seed)
    now = loop.time()
    out = []
    handles = []
    for i in range(60):
        kind = rng.choice(["past", "future", "nan"])
        if kind == "past":
            when = now - 1 - i / 1000 - rng.random()
        elif kind == "future":
            when = now + 0.002 + i / 5000 + rng.random() / 100
        else:
            when = math.nan
        handles.append(loop.call_at(when, out.append, i))
    for h in rng.sample(handles, 15):
        h.cancel()
    stop = loop.call_at(now + 0.08, loop.stop)
    try:
        loop.run_forever()
        ended = "stopped"
    except ValueError as exc:
        ended = f"ValueError: {exc}"
    for h in handles + [stop]:
        h.cancel()
    return out, ended


@pytest.mark.parametrize("seed", range(20))
def test_nan_deadlines_fire_in_asyncios_heap_order(loop, seed):
    reference = asyncio.SelectorEventLoop()
    try:
        expected = _firing_order(reference, seed)
    finally:
        reference.close()
    assert _firing_order(loop, seed) == expected


@pytest.mark.parametrize("when", [10**400, -(10**400)], ids=["far future", "far past"])
def test_a_deadline_beyond_a_float_is_accepted(loop, when):
    """asyncio keeps any int as a deadline, and the handle's when() is that
    int; it orders as an infinity."""
    out = []
    handle = loop.call_at(when, out.append, "huge")
    assert handle.when() == when and type(handle.when()) is int
    assert repr(handle).startswith(f"<TimerHandle when={when} ")
    loop.call_soon(out.append, "soon")
    run_once(loop)
    assert out == (["soon"] if when > 0 else ["soon", "huge"])
    handle.cancel()


def test_a_delay_beyond_a_float_fails_as_time_plus_delay_does(loop):
    with pytest.raises(OverflowError, match="int too large to convert to float"):
        loop.call_later(10**400, noop)


# --- descriptors ----------------------------------------------------------------------------


@pytest.mark.parametrize("fd", [2**31, 2**63, 2**70], ids=["2**31", "2**63", "2**70"])
def test_a_descriptor_beyond_c_int_is_not_registered(loop, fd):
    assert loop.remove_reader(fd) is False
    assert loop.remove_writer(fd) is False
    # As epoll's register refuses it.
    with pytest.raises(OverflowError, match="^Python int too large to convert to C int$"):
        loop.add_reader(fd, noop)
    with pytest.raises(OverflowError, match="^Python int too large to convert to C int$"):
        loop.add_writer(fd, noop)


@pytest.mark.parametrize("fd", [-1, -(2**31) - 1, -(2**63), -(2**70)])
def test_a_negative_descriptor_is_invalid(loop, fd):
    for method, args in [("add_reader", (noop,)), ("add_writer", (noop,)), ("remove_reader", ()), ("remove_writer", ())]:
        with pytest.raises(ValueError) as caught:
            getattr(loop, method)(fd, *args)
        assert str(caught.value) == f"Invalid file descriptor: {fd}"


# --- callbacks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args"),
    [("call_soon", ()), ("call_soon_threadsafe", ()), ("call_later", (0,)), ("call_at", (0,))],
)
def test_non_callable_callback_is_reported_when_run(loop, method, args):
    contexts = []
    loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))
    out = []
    handle = getattr(loop, method)(*args, 42)
    loop.call_later(0, out.append, "still running")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert out == ["still running"]
    [ctx] = contexts
    assert ctx["message"] == "Exception in callback 42()"
    assert isinstance(ctx["exception"], TypeError)
    assert str(ctx["exception"]) == "'int' object is not callable"
    assert ctx["handle"] is handle
    assert repr(handle).startswith("<") and "42()" in repr(handle)


@pytest.mark.parametrize(
    ("method", "args", "name"),
    [
        ("call_soon", (), "call_soon"),
        ("call_soon_threadsafe", (), "call_soon_threadsafe"),
        ("call_later", (0,), "call_at"),
        ("call_at", (0,), "call_at"),
    ],
)
def test_non_callable_callback_is_refused_in_debug_mode(loop, method, args, name):
    loop.set_debug(True)
    with pytest.raises(TypeError, match=rf"^a callable object was expected by {name}\(\), got 42$"):
        getattr(loop, method)(*args, 42)


@pytest.mark.parametrize(
    ("method", "args"),
    [("call_soon", ()), ("call_soon_threadsafe", ()), ("call_later", (0,)), ("call_at", (0,))],
)
def test_keyword_arguments_for_the_callback_are_refused(loop, method, args):
    with pytest.raises(TypeError, match="unexpected keyword argument 'x'"):
        getattr(loop, method)(*args, noop, x=1)


def test_missing_callback(loop):
    with pytest.raises(TypeError):
        loop.call_soon()
    with pytest.raises(TypeError):
        loop.call_later(1)


def test_a_context_that_is_not_a_context_is_reported_when_run(loop):
    contexts = []
    loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))
    out = []
    handle = loop.call_soon(out.append, "never", context=42)
    loop.call_soon(out.append, "still running")
    run_once(loop)
    assert out == ["still running"]
    [ctx] = contexts
    assert ctx["handle"] is handle
    # asyncio's Handle._run calls `self._context.run(...)`: duck typing.
    assert type(ctx["exception"]) is AttributeError
    assert str(ctx["exception"]) == "'int' object has no attribute 'run'"


def test_a_context_is_duck_typed_by_its_run_method(loop):
    class Runner:
        def __init__(self):
            self.calls = []

        def run(self, callback, *args):
            self.calls.append((callback, args))
            return callback(*args)

    runner = Runner()
    out = []
    handle = loop.call_soon(out.append, "ran", context=runner)
    timer = loop.call_later(0, out.append, "timer", context=runner)
    run_once(loop)
    run_once(loop)
    if sys.version_info >= (3, 12):  # Handle.get_context()
        assert handle.get_context() is runner and timer.get_context() is runner
    assert out == ["ran", "timer"]
    assert runner.calls == [(out.append, ("ran",)), (out.append, ("timer",))]


# --- a closed loop ---------------------------------------------------------------------------

CLOSED_LOOP_CALLS = {
    "call_soon": lambda loop: loop.call_soon(noop),
    "call_soon_threadsafe": lambda loop: loop.call_soon_threadsafe(noop),
    "call_later": lambda loop: loop.call_later(1, noop),
    "call_at": lambda loop: loop.call_at(1, noop),
    "run_forever": lambda loop: loop.run_forever(),
    "run_in_executor": lambda loop: loop.run_in_executor(None, noop),
    "add_reader": lambda loop: loop.add_reader(0, noop),
    "add_writer": lambda loop: loop.add_writer(1, noop),
    "add_signal_handler": lambda loop: loop.add_signal_handler(10, noop),
}


@pytest.mark.parametrize("name", sorted(CLOSED_LOOP_CALLS))
def test_closed_loop_raises_runtime_error(loop, name):
    loop.close()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        CLOSED_LOOP_CALLS[name](loop)


@pytest.mark.parametrize("method", ["run_until_complete", "create_task"])
def test_closed_loop_refuses_coroutines(loop, method):
    loop.close()
    coro = asyncio.sleep(0)
    try:
        with pytest.raises(RuntimeError, match="^Event loop is closed$"):
            getattr(loop, method)(coro)
    finally:
        coro.close()


def test_closed_loop_tolerates_what_asyncio_tolerates(loop):
    a, b = socket.socketpair()
    with a, b:
        loop.close()
        loop.close()
        loop.stop()
        assert loop.remove_reader(a) is False
        assert loop.remove_writer(a) is False
        assert loop.remove_signal_handler(10) is False
        assert isinstance(loop.time(), float)
        assert loop.is_closed() and not loop.is_running()

