"""Timers scheduled by a running loop, which keeps them off the GC's lists
while they sit in its heap (src/parked.rs): every cycle through one is
still collected once it can be garbage, and nothing they hold is freed
early. Each test runs on ferroloop and on asyncio's loop."""

import contextvars
import gc
import weakref

import pytest


class Owner:
    """Something a callback keeps alive."""

    def method(self):
        pass


def while_running(loop, fn):
    """Calls fn() from a callback of the running loop; returns its result."""
    return in_one_run(loop, fn)[0]


def in_one_run(loop, *steps):
    """Calls each step from a callback, a few iterations after the one
    before, all in one `run_forever`: a timer that leaves the heap then
    does so while the loop runs. Returns what the steps returned."""
    results = []

    def go(i, wait):
        if wait:
            loop.call_soon(go, i, wait - 1)
            return
        results.append(steps[i](*results[-1:]))
        if i + 1 < len(steps):
            loop.call_soon(go, i + 1, 3)
        else:
            loop.stop()

    loop.call_soon(go, 0, 0)
    loop.run_forever()
    return results


def collected(ref):
    gc.collect()
    return ref() is None


def test_cycle_through_a_timer_that_fired_is_collected(loop):
    def schedule():
        owner = Owner()
        owner.timer = loop.call_later(0, owner.method)  # owner -> timer -> owner
        return weakref.ref(owner)

    assert in_one_run(loop, schedule, collected)[-1]


@pytest.mark.parametrize("count", [1, 300])  # popped at the head; purged
def test_cycle_through_a_cancelled_timers_context_is_collected_once_dropped(loop, count):
    # cancel() lets go of the callback: the cycle goes through the context.
    var = contextvars.ContextVar("var")

    def schedule_in_own_context():
        owner = Owner()
        var.set(owner)  # the copied contexts -> owner
        owner.timers = [loop.call_later(3600, owner.method) for _ in range(count)]
        for t in owner.timers:
            t.cancel()
        return weakref.ref(owner)

    def schedule():
        loop.call_later(7200, Owner().method)  # a live timer, behind them
        return contextvars.copy_context().run(schedule_in_own_context)

    assert in_one_run(loop, schedule, collected)[-1]


@pytest.mark.parametrize("count", [1, 300])
def test_cancelled_timers_no_one_holds_are_freed(loop, count):
    def schedule():
        loop.call_later(7200, Owner().method)  # a live timer, behind them
        timers = [loop.call_later(3600, Owner().method) for _ in range(count)]
        for t in timers:
            t.cancel()
        return [weakref.ref(t) for t in timers]

    def check(refs):
        gc.collect()
        return all(r() is None for r in refs)

    assert in_one_run(loop, schedule, check)[-1]


def test_cycle_through_a_pending_timer_is_collected_once_the_loop_closes(loop):
    def schedule():
        owner = Owner()
        owner.timer = loop.call_later(3600, owner.method)
        return weakref.ref(owner)

    ref = while_running(loop, schedule)
    gc.collect()
    assert ref() is not None  # the loop still holds its timer
    loop.close()
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_an_unclosed_stopped_loop_with_timers_it_scheduled_running_is_collected(
    loop_factory, method
):
    loop = loop_factory()

    def schedule():
        owner = Owner()
        owner.loop = loop
        var = contextvars.ContextVar("var")
        var.set(owner)  # and the copied context -> owner -> loop
        for delay in (10, 3600):
            when = delay if method == "call_later" else loop.time() + delay
            owner.timer = getattr(loop, method)(when, loop.stop)  # timer -> loop
        return weakref.ref(owner)

    owner_ref = while_running(loop, schedule)
    loop_ref = weakref.ref(loop)
    del loop
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        gc.collect()
    assert loop_ref() is None
    assert owner_ref() is None


def test_pending_timers_are_seen_by_the_gc_once_the_loop_stops(loop):
    held = while_running(loop, lambda: [loop.call_later(3600, Owner().method) for _ in range(3)])
    assert all(gc.is_tracked(t) for t in held)
    # the contexts they copied, as the GC reaches them (`_context` would
    # put a context back on the GC's lists before handing it out)
    contexts = [o for t in held for o in gc.get_referents(t) if isinstance(o, contextvars.Context)]
    assert len(contexts) == 3
    assert all(gc.is_tracked(c) for c in contexts)


def test_timers_go_back_on_the_gcs_lists_when_the_run_stops_with_an_error(loop):
    held = []

    def schedule_and_fail():
        held.append(loop.call_later(3600, Owner().method))
        raise KeyboardInterrupt

    loop.call_soon(schedule_and_fail)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert gc.is_tracked(held[0])


def test_what_parked_timers_hold_survives_collections(loop):
    out = []

    def schedule():
        for i in range(2000):
            box = [i]
            box.append(box)  # a cycle only the timer's arguments reach
            loop.call_later(0.001 * (i % 3), out.append, box)
            if i % 500 == 0:
                gc.collect()
        gc.collect()
        loop.call_later(0.01, loop.stop)

    loop.call_soon(schedule)
    loop.run_forever()
    assert sorted(b[0] for b in out) == list(range(2000))
    assert all(b[1] is b for b in out)


VAR = contextvars.ContextVar("VAR")


@pytest.mark.parametrize("how", ["_context", "gc_referents"])
def test_a_parked_timers_context_handed_out_outlives_it(loop, how):
    def schedule():
        VAR.set("set before")
        timer = loop.call_later(0, lambda: None)
        if how == "_context":
            ctx = timer._context
        else:
            ctx = next(o for o in gc.get_referents(timer) if isinstance(o, contextvars.Context))
        return weakref.ref(timer), ctx

    def fired(made):
        gc.collect()
        return made[0]() is None, made[1]

    timer_freed, ctx = contextvars.Context().run(in_one_run, loop, schedule, fired)[-1]
    assert timer_freed
    assert ctx.run(VAR.get) == "set before"
    del ctx
    gc.collect()  # the context is freed from the GC's lists, no crash


def test_a_timer_its_fired_callback_keeps_is_collected(loop):
    class Keeper:
        def fire(self):
            self.kept = self.timer  # the timer's callback holds its timer

    def schedule():
        keeper = Keeper()
        keeper.timer = loop.call_later(0, keeper.fire)
        return weakref.ref(keeper)

    assert in_one_run(loop, schedule, collected)[-1]
