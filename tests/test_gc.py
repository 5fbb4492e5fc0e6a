"""Reference cycles through handles and loops are collected; closed loops are freed."""

import asyncio
import contextvars
import gc
import signal
import socket
import weakref

import pytest
from conftest import run_once


class Owner:
    """Something a callback keeps alive."""

    def method(self):
        pass


def test_cycle_through_a_handle_that_ran_is_collected(loop):
    owner = Owner()
    owner.handle = loop.call_soon(owner.method)  # owner -> handle -> bound method -> owner
    ref = weakref.ref(owner)
    del owner
    run_once(loop)
    gc.collect()
    assert ref() is None


def test_cycle_through_handle_args_is_collected(loop):
    box = []
    box.append(loop.call_soon(len, box))  # box -> handle -> args -> box
    ref = weakref.ref(box[0])
    del box
    run_once(loop)
    gc.collect()
    assert ref() is None


def test_pending_timer_cycle_is_collected_once_the_loop_closes(loop):
    owner = Owner()
    owner.timer = loop.call_later(3600, owner.method)
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is not None  # the loop still holds its timer
    loop.close()
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("kind", ["call_soon", "call_later"])
def test_cancel_releases_the_callback(loop, kind):
    keep = loop.call_later(10, Owner().method)  # an earlier live timer
    owner = Owner()
    if kind == "call_soon":
        handle = loop.call_soon(owner.method)
    else:
        handle = loop.call_later(3600, owner.method)
    ref = weakref.ref(owner)
    del owner
    handle.cancel()
    gc.collect()
    assert ref() is None  # at once, while the loop still holds the handle
    keep.cancel()


def test_closed_loop_is_freed(loop_factory):
    loop = loop_factory()
    loop.call_soon(loop.stop)
    loop.call_later(3600, loop.stop)  # loop -> timer -> bound method -> loop
    loop.run_forever()
    ref = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert ref() is None


def test_loop_that_ran_tasks_is_freed(loop_factory):
    async def main():
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    loop = loop_factory()
    assert loop.run_until_complete(main()) is loop
    loop.run_until_complete(loop.shutdown_default_executor())
    ref = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert ref() is None


def test_loop_with_readers_and_signal_handlers_is_freed_after_close(loop_factory):
    a, b = socket.socketpair()
    with a, b:
        loop = loop_factory()
        loop.add_reader(a, loop.stop)
        loop.add_writer(b, loop.stop)
        loop.add_signal_handler(signal.SIGUSR1, loop.stop)
        ref = weakref.ref(loop)
        loop.close()
        del loop
        gc.collect()
        assert ref() is None


def test_ferroloop_run_frees_its_loop(loop_name):
    import ferroloop

    run_main = ferroloop.run if loop_name == "ferroloop" else asyncio.run

    async def main():
        return weakref.ref(asyncio.get_running_loop())

    ref = run_main(main())
    gc.collect()
    assert ref() is None


def test_unclosed_loop_in_a_cycle_is_collected_with_a_warning(loop_factory):
    loop = loop_factory()
    loop.call_later(3600, loop.stop)
    ref = weakref.ref(loop)
    del loop
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        gc.collect()
    assert ref() is None


# The loop keeps the handles of its ready queue off the GC's lists while
# only it holds them (src/queued.rs); these cases are where that could go
# wrong: a handle someone else holds, and a loop that is itself garbage.


def test_unclosed_loop_with_pending_callbacks_in_a_cycle_is_collected(loop_factory):
    loop = loop_factory()
    for _ in range(3):
        loop.call_soon(loop.stop)  # loop -> ready -> handle -> bound method -> loop
    ref = weakref.ref(loop)
    del loop
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        gc.collect()
    assert ref() is None


def test_unclosed_loop_whose_pending_handle_an_object_holds_is_collected(loop_factory):
    loop = loop_factory()
    owner = Owner()
    owner.loop = loop
    owner.handle = loop.call_soon(owner.method)  # owner -> handle -> owner, and -> loop
    loop_ref, owner_ref = weakref.ref(loop), weakref.ref(owner)
    del loop, owner
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        gc.collect()
    assert loop_ref() is None
    assert owner_ref() is None


def test_a_pending_handle_someone_holds_is_seen_by_the_gc(loop):
    held = loop.call_soon(Owner().method)
    gc.collect()
    assert gc.is_tracked(held)
    assert any(o is held for o in gc.get_objects())
    run_once(loop)
    assert gc.is_tracked(held)


def test_cycle_through_a_pending_handle_is_collected_once_it_ran(loop):
    owners = []
    for _ in range(1000):
        owner = Owner()
        owner.handle = loop.call_soon(owner.method)
        owners.append(weakref.ref(owner))
    del owner
    gc.collect()  # while pending: the loop holds them
    assert all(r() is not None for r in owners)
    run_once(loop)
    gc.collect()
    assert all(r() is None for r in owners)


def test_callbacks_pending_across_collections_keep_their_arguments(loop):
    out = []
    for i in range(2000):
        loop.call_soon(out.append, [i])  # each list only the handle holds
        if i % 500 == 0:
            gc.collect()
    gc.collect()
    run_once(loop)
    assert out == [[i] for i in range(2000)]


# The context a call_soon handle copies for itself is kept off the GC's
# lists with it while only the loop holds them (src/queued.rs).

VAR = contextvars.ContextVar("VAR")


def noop():
    pass


# A call_later handle is pending in the timer heap, tracked as it is.
SCHEDULE_PENDING = {
    "call_soon": lambda loop: loop.call_soon(noop),
    "call_later": lambda loop: loop.call_later(3600, noop),
}


@pytest.mark.parametrize("method", SCHEDULE_PENDING)
def test_unclosed_loop_with_a_cycle_through_a_pending_handles_context(loop_factory, method):
    loop = loop_factory()
    owner = Owner()
    owner.loop = loop
    ref = weakref.ref(owner)

    def schedule():
        VAR.set(owner)  # loop -> handle -> its copied context -> owner -> loop
        SCHEDULE_PENDING[method](loop)

    contextvars.copy_context().run(schedule)
    loop_ref = weakref.ref(loop)
    del loop, owner
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        gc.collect()
    assert loop_ref() is None
    assert ref() is None


def test_a_pending_handles_context_is_the_one_its_callback_runs_in(loop):
    def set_var():
        VAR.set("set by the callback")

    handle = loop.call_soon(set_var)
    context = handle._context  # get_context() from 3.12 on
    gc.collect()
    assert gc.is_tracked(context)
    run_once(loop)
    assert context[VAR] == "set by the callback"
    assert handle._context is context
    if hasattr(handle, "get_context"):
        assert handle.get_context() is context


@pytest.mark.parametrize("drop_handle_first", [True, False])
@pytest.mark.parametrize("method", ["call_soon", "call_later"])
def test_a_context_reached_through_gc_referents_outlives_its_handle(loop, drop_handle_first, method):
    if method == "call_soon":
        handle = loop.call_soon(VAR.set, "ran")
    else:
        handle = loop.call_later(0, VAR.set, "ran")
    contexts = [o for o in gc.get_referents(handle) if isinstance(o, contextvars.Context)]
    assert len(contexts) == 1
    if drop_handle_first:
        del handle
    run_once(loop)  # the loop lets go of the handle
    gc.collect()
    context = contexts.pop()
    assert context[VAR] == "ran"
    assert gc.is_tracked(context)
    del context  # freed here (or with the handle below): no crash
    gc.collect()


def test_cycles_through_contexts_of_callbacks_that_ran_are_collected(loop):
    refs = []
    for _ in range(1000):
        owner = Owner()
        refs.append(weakref.ref(owner))

        def keep(owner=owner):
            owner.context = contextvars.copy_context()  # owner -> context -> owner
            VAR.set(owner)

        owner.handle = loop.call_soon(keep)  # and owner -> handle -> keep -> owner
    del owner, keep
    run_once(loop)
    gc.collect()
    assert all(r() is None for r in refs)


# Timer handles and their copied contexts stay on the GC's lists (only
# queued call_soon handles leave them, src/queued.rs): cycles through them
# are collected, and gc.get_referents shows a handle's context.


def test_cycle_through_a_held_timer_handles_context_is_collected(loop):
    owner = Owner()
    ref = weakref.ref(owner)

    def schedule():
        VAR.set(owner)  # owner -> handle -> its copied context -> owner
        owner.handle = loop.call_later(3600, noop)

    contextvars.copy_context().run(schedule)
    owner.handle.cancel()
    run_once(loop)  # the loop drops the cancelled timer from its heap
    del owner
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_gc_referents_of_a_handle_name_the_context_it_copied(loop, method):
    seen = []

    def schedule():
        VAR.set("scheduled")
        first = 0 if method == "call_soon" else loop.time()
        args = (seen.append,) if method == "call_soon" else (first, seen.append)
        return getattr(loop, method)(*args, 1)

    handle = contextvars.copy_context().run(schedule)
    contexts = [r for r in gc.get_referents(handle) if isinstance(r, contextvars.Context)]
    assert len(contexts) == 1
    assert contexts[0][VAR] == "scheduled"
    del contexts
    gc.collect()  # a collection in between changes nothing
    assert len([r for r in gc.get_referents(handle) if isinstance(r, contextvars.Context)]) == 1
    handle.cancel()


def test_the_gc_sees_what_handles_refer_to(loop):
    import decimal

    def f(*args):
        pass

    arg, ctx = object(), contextvars.copy_context()
    when = decimal.Decimal(loop.time() + 3600)
    handles = [
        loop.call_soon(f, arg, context=ctx),
        loop.call_soon(f, arg, 2, 3, context=ctx),
        loop.call_later(3600, f, arg, context=ctx),
        loop.call_at(when, f, arg, context=ctx),
    ]
    for h in handles:
        refs = gc.get_referents(h)
        for expected in (f, ctx, loop):
            assert any(r is expected for r in refs), (h, expected, refs)
        # The argument, alone or in the args tuple.
        assert any(r is arg or (type(r) is tuple and arg in r) for r in refs), refs
    assert any(r is when for r in gc.get_referents(handles[3]))
    for h in handles:
        h.cancel()
