"""call_soon, call_later, call_at and time(), and the handles they return."""

import asyncio
import contextvars
import sys
import threading
import time

import pytest
from conftest import run_once

VAR = contextvars.ContextVar("VAR", default="default")


def callback(*args):
    pass


SOURCE = f"{__file__}:{callback.__code__.co_firstlineno}"


# --- order ---------------------------------------------------------------


def test_call_soon_runs_callbacks_in_fifo_order_with_their_args(loop):
    out = []
    for i in range(100):
        loop.call_soon(out.append, i)
    run_once(loop)
    assert out == list(range(100))


def test_call_soon_takes_its_arguments_as_asyncio_declares_them(loop):
    # `call_soon(self, callback, *args, context=None)`: ferroloop parses the
    # vectorcall itself (scheduling.rs), so every form is checked here.
    out = []

    def record(*args):
        out.append((args, VAR.get()))

    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "given")
    handles = [
        loop.call_soon(record),
        loop.call_soon(record, 1),
        loop.call_soon(record, 1, 2, 3),
        loop.call_soon(callback=record),
        loop.call_soon(record, "a", context=None),
        loop.call_soon(record, "b", context=ctx),
        loop.call_soon(context=ctx, callback=record),
        loop.call_soon(*[record, "c"], **{"context": ctx}),
    ]
    assert [h._args for h in handles] == [(), (1,), (1, 2, 3), (), ("a",), ("b",), (), ("c",)]
    run_once(loop)
    assert out == [
        ((), "default"),
        ((1,), "default"),
        ((1, 2, 3), "default"),
        ((), "default"),
        (("a",), "default"),
        (("b",), "given"),
        ((), "given"),
        (("c",), "given"),
    ]
    with pytest.raises(TypeError, match="got multiple values for argument 'callback'"):
        loop.call_soon(record, callback=record)
    with pytest.raises(TypeError, match="unexpected keyword argument 'args'"):
        loop.call_soon(record, args=(1,))


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_timers_take_their_arguments_as_asyncio_declares_them(loop, method):
    # `call_later(self, delay, callback, *args, context=None)` and
    # `call_at(self, when, callback, *args, context=None)`: ferroloop parses
    # the vectorcall itself (scheduling.rs), so every form is checked here.
    out = []

    def record(*args):
        out.append((args, VAR.get()))

    first = "delay" if method == "call_later" else "when"
    start = 0 if method == "call_later" else loop.time()
    # Distinct, increasing deadlines: asyncio's heap does not keep equal
    # deadlines in scheduling order.
    deadlines = iter(start + i * 1e-6 for i in range(100))
    call = getattr(loop, method)
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "given")
    handles = [
        call(next(deadlines), record),
        call(next(deadlines), record, 1),
        call(next(deadlines), record, 1, 2, 3),
        call(next(deadlines), callback=record),
        call(**{first: next(deadlines), "callback": record}),
        call(next(deadlines), record, "a", context=None),
        call(next(deadlines), record, "b", context=ctx),
        call(context=ctx, callback=record, **{first: next(deadlines)}),
        call(*[next(deadlines), record, "c"], **{"context": ctx}),
    ]
    assert [h._args for h in handles] == [(), (1,), (1, 2, 3), (), (), ("a",), ("b",), (), ("c",)]
    loop.call_later(0.001, loop.stop)
    loop.run_forever()
    assert out == [
        ((), "default"),
        ((1,), "default"),
        ((1, 2, 3), "default"),
        ((), "default"),
        ((), "default"),
        (("a",), "default"),
        (("b",), "given"),
        ((), "given"),
        (("c",), "given"),
    ]


def test_callbacks_scheduled_while_running_wait_for_the_next_iteration(loop):
    out = []

    def first():
        out.append("first")
        loop.call_soon(out.append, "scheduled by first")

    loop.call_soon(first)
    loop.call_soon(out.append, "second")
    run_once(loop)
    assert out == ["first", "second"]
    run_once(loop)
    assert out == ["first", "second", "scheduled by first"]


def test_timers_fire_in_deadline_order(loop):
    out = []
    start = loop.time()
    for delay in (0.03, 0.01, 0.02, 0.0, 0.015):
        loop.call_at(start + delay, out.append, delay)
    loop.call_at(start + 0.04, loop.stop)
    loop.run_forever()
    assert out == [0.0, 0.01, 0.015, 0.02, 0.03]


def test_call_later_and_call_at_share_one_timeline(loop):
    out = []
    start = loop.time()
    loop.call_later(0.02, out.append, "later 0.02")
    loop.call_at(start + 0.01, out.append, "at 0.01")
    loop.call_soon(out.append, "soon")
    loop.call_later(0.03, loop.stop)
    loop.run_forever()
    assert out == ["soon", "at 0.01", "later 0.02"]


def test_equal_deadlines_fire_together_after_earlier_ones(loop, loop_name):
    out = []
    when = loop.time() + 0.01
    for i in range(20):
        loop.call_at(when, out.append, i)
    loop.call_at(when - 0.005, out.append, "earlier")
    for i in range(20, 40):
        loop.call_at(when, out.append, i)
    loop.call_at(when + 0.01, loop.stop)
    loop.run_forever()
    assert out[0] == "earlier"
    assert sorted(out[1:]) == list(range(40))
    if loop_name == "ferroloop":
        # ferroloop also keeps scheduling order among equal deadlines;
        # asyncio's heapq does not promise it.
        assert out[1:] == list(range(40))


def test_delay_zero_gives_a_timer_handle_that_fires_after_ready_callbacks(loop):
    out = []
    handle = loop.call_later(0, out.append, "later")
    loop.call_soon(out.append, "soon")
    assert type(handle).__name__ == "TimerHandle"
    assert handle.when() <= loop.time()
    run_once(loop)
    run_once(loop)
    assert out == ["soon", "later"]


# --- the clock -------------------------------------------------------------


def test_time_reads_the_same_clock_as_time_monotonic(loop):
    before = time.monotonic()
    now = loop.time()
    after = time.monotonic()
    assert isinstance(now, float)
    assert before <= now <= after


def test_call_at_accepts_deadlines_computed_with_time_monotonic(loop):
    out = []
    loop.call_at(time.monotonic() + 0.01, out.append, "fired")
    loop.call_at(time.monotonic() + 0.02, loop.stop)
    loop.run_forever()
    assert out == ["fired"]


def test_timers_never_fire_early(loop):
    fired = []
    handles = []

    def record(i):
        fired.append((handles[i].when(), loop.time()))

    for i, delay in enumerate([0.001, 0.002, 0.005, 0.01, 0.02] * 4):
        handles.append(loop.call_later(delay, record, i))
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert len(fired) == 20
    assert all(now >= when for when, now in fired), fired


# --- handles -----------------------------------------------------------------


def test_cancelled_callbacks_do_not_run(loop):
    out = []
    handles = [
        loop.call_soon(out.append, "soon"),
        loop.call_later(0, out.append, "later"),
        loop.call_at(loop.time(), out.append, "at"),
        loop.call_soon_threadsafe(out.append, "threadsafe"),
    ]
    assert not any(h.cancelled() for h in handles)
    for h in handles:
        h.cancel()
        h.cancel()  # a second cancel is a no-op
    assert all(h.cancelled() for h in handles)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert out == []


def test_a_callback_can_cancel_a_later_one_in_the_same_iteration(loop):
    out = []
    second = None

    def first():
        out.append("first")
        second.cancel()

    loop.call_soon(first)
    second = loop.call_soon(out.append, "second")
    run_once(loop)
    assert out == ["first"]


def test_cancel_after_the_callback_ran(loop):
    out = []
    handle = loop.call_soon(out.append, 1)
    run_once(loop)
    handle.cancel()
    assert out == [1]
    assert handle.cancelled()


def test_when_is_the_absolute_deadline(loop):
    before = loop.time()
    handle = loop.call_later(10, callback)
    after = loop.time()
    assert before + 10 <= handle.when() <= after + 10
    assert loop.call_at(1234.5, callback).when() == 1234.5


def test_timer_handles_compare_by_deadline(loop):
    early = loop.call_at(100.0, callback)
    late = loop.call_at(200.0, callback)
    twin = loop.call_at(100.0, callback)
    assert early < late and late > early
    assert early <= twin and early >= twin
    assert early == twin and early != late
    assert hash(early) == hash(twin)


def test_timer_handles_hash_as_their_deadline(loop):
    """asyncio's TimerHandle hashes as hash(when): 0.0 and -0.0 are equal
    deadlines, so their handles hash equally too."""
    zero, minus_zero = loop.call_at(0.0, callback), loop.call_at(-0.0, callback)
    assert zero == minus_zero
    assert hash(zero) == hash(minus_zero) == hash(0.0)
    assert hash(loop.call_at(1234.5, callback)) == hash(1234.5)
    assert len({zero, minus_zero}) == 1
    for h in (zero, minus_zero):
        h.cancel()


def test_handle_repr(loop):
    handle = loop.call_soon(callback, 1, "a")
    timer = loop.call_at(12.5, callback)
    # From 3.13 on, arguments are shown in debug mode only.
    args = "(1, 'a')" if sys.version_info < (3, 13) else "()"
    assert repr(handle) == f"<Handle callback{args} at {SOURCE}>"
    assert repr(timer) == f"<TimerHandle when=12.5 callback() at {SOURCE}>"
    handle.cancel()
    timer.cancel()
    assert repr(handle) == "<Handle cancelled>"
    assert repr(timer) == "<TimerHandle cancelled when=12.5>"


def test_get_context(loop, loop_name):
    if loop_name == "asyncio" and not hasattr(asyncio.Handle, "get_context"):
        pytest.skip("asyncio's Handle.get_context() is new in Python 3.12")
    ctx = contextvars.copy_context()
    assert loop.call_soon(callback, context=ctx).get_context() is ctx
    assert loop.call_later(1, callback, context=ctx).get_context() is ctx
    assert loop.call_at(1, callback, context=ctx).get_context() is ctx
    assert loop.call_soon_threadsafe(callback, context=ctx).get_context() is ctx
    own = loop.call_soon(callback).get_context()
    assert isinstance(own, contextvars.Context) and own is not ctx


# --- contextvars -----------------------------------------------------------


def test_context_argument_is_honoured_by_every_scheduling_method(loop):
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "in ctx")
    seen = {}

    def record(name):
        seen[name] = VAR.get()

    loop.call_soon(record, "call_soon", context=ctx)
    loop.call_soon_threadsafe(record, "call_soon_threadsafe", context=ctx)
    loop.call_later(0, record, "call_later", context=ctx)
    loop.call_at(loop.time(), record, "call_at", context=ctx)
    thread = threading.Thread(
        target=loop.call_soon_threadsafe, args=(record, "from a thread"), kwargs={"context": ctx}
    )
    thread.start()
    thread.join()
    loop.call_soon(record, "no context")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == {
        "call_soon": "in ctx",
        "call_soon_threadsafe": "in ctx",
        "call_later": "in ctx",
        "call_at": "in ctx",
        "from a thread": "in ctx",
        "no context": "default",
    }


def test_without_context_callbacks_run_in_a_copy_taken_when_scheduled(loop):
    seen = []

    def record(name):
        seen.append((name, VAR.get()))
        VAR.set("set by a callback")

    def schedule():
        VAR.set("when scheduled")
        loop.call_soon(record, "call_soon")
        loop.call_later(0, record, "call_later")
        loop.call_at(loop.time(), record, "call_at")
        loop.call_soon_threadsafe(record, "call_soon_threadsafe")
        VAR.set("changed afterwards")

    contextvars.copy_context().run(schedule)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert sorted(seen) == [
        ("call_at", "when scheduled"),
        ("call_later", "when scheduled"),
        ("call_soon", "when scheduled"),
        ("call_soon_threadsafe", "when scheduled"),
    ]
    assert VAR.get() == "default"


def test_callbacks_sharing_a_context_see_each_others_changes(loop):
    ctx = contextvars.copy_context()
    seen = []
    loop.call_soon(VAR.set, "first", context=ctx)
    loop.call_soon(lambda: seen.append(VAR.get()), context=ctx)
    loop.call_soon(lambda: seen.append(VAR.get()))
    run_once(loop)
    assert seen == ["first", "default"]
    assert ctx[VAR] == "first"


# --- a replaced time() ---------------------------------------------------------------
# Test suites control when timers fire by replacing `loop.time`; asyncio's
# loop reads the replacement in call_later and in each iteration.


def test_time_patched_on_the_loop_decides_when_timers_fire(loop):
    from unittest import mock

    fired = []
    with mock.patch.object(loop, "time", return_value=1000.0):
        loop.call_later(10, fired.append, "later")  # due at 1010
        loop.call_at(1005, fired.append, "at")
        run_once(loop)
        assert fired == []
        loop.time.return_value = 1006.0
        run_once(loop)
        assert fired == ["at"]
        loop.time.return_value = 1010.0
        run_once(loop)
        assert fired == ["at", "later"]
    # Unpatched, the real clock is back: a timer due in an hour waits.
    assert "time" not in vars(loop)
    loop.call_later(3600, fired.append, "hour")
    loop.call_soon(fired.append, "soon")
    run_once(loop)
    assert fired == ["at", "later", "soon"]


def test_time_set_on_the_loop_and_deleted(loop):
    fired = []
    loop.time = lambda: 50.0
    loop.call_later(1, fired.append, 1)
    loop.time = lambda: 51.0
    run_once(loop)
    assert fired == [1]
    del loop.time
    assert loop.time() < 50.0 or loop.time() > 51.0
    loop.call_at(loop.time() + 3600, fired.append, 2)
    loop.call_soon(fired.append, 3)
    run_once(loop)
    assert fired == [1, 3]


def test_time_replaced_in_a_subclass(loop_factory):
    probe = loop_factory()
    base = type(probe)
    probe.close()

    class FakeClock(base):
        now = 0.0

        def time(self):
            return self.now

    loop = FakeClock()
    try:
        fired = []

        async def main():
            task = asyncio.ensure_future(asyncio.sleep(30, "slept"))
            await asyncio.sleep(0)
            loop.now = 30.0
            return await task

        assert loop.run_until_complete(main()) == "slept"
        loop.call_later(5, fired.append, "five")
        loop.now = 35.0
        run_once(loop)
        assert fired == ["five"]
    finally:
        loop.close()
