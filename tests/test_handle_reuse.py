"""ferroloop reuses a call_soon handle that only the loop held once it ran
(src/recycled.rs): nothing about handles may show it. Each test runs on
both loops."""

import contextvars
import gc
import weakref

import pytest
from conftest import run_once

VAR = contextvars.ContextVar("VAR", default="default")


def test_a_cancelled_handle_that_was_let_go_does_not_cancel_the_next(loop):
    out = []
    for i in range(300):  # more than the loop keeps for reuse
        loop.call_soon(out.append, ("cancelled", i)).cancel()
    run_once(loop)  # each is dropped unrun, and may be kept for reuse
    handles = [loop.call_soon(out.append, i) for i in range(300)]
    assert not any(h.cancelled() for h in handles)
    run_once(loop)
    assert out == list(range(300))


def test_a_handle_someone_holds_keeps_what_it_was_made_with(loop):
    def f(*args):
        pass

    held = loop.call_soon(f, 1, 2)
    shown = repr(held)  # its arguments are in it before 3.13 (debug mode only from then)
    run_once(loop)
    for i in range(300):
        loop.call_soon(print, i).cancel()
    run_once(loop)
    assert held._callback is f
    assert held._args == (1, 2)
    assert not held.cancelled()
    assert repr(held) == shown


def test_a_handle_with_a_weak_reference_dies_when_let_go(loop):
    ref = weakref.ref(loop.call_soon(len, ()))
    run_once(loop)
    loop.call_soon(len, ())  # would be the same object, were it reused
    assert ref() is None


def test_each_callback_runs_in_its_own_context_copy(loop):
    seen = []

    def hop(left):
        seen.append(VAR.get())
        VAR.set(f"set by hop {left}")  # in this callback's own copy only
        if left:
            loop.call_soon(hop, left - 1)

    for chain in range(3):
        contextvars.copy_context().run(lambda c=chain: (VAR.set(f"chain {c}"), loop.call_soon(hop, 4)))
    for _ in range(5):
        run_once(loop)
    # Each hop sees what the hop before it set (its copy was made there),
    # the first of each chain the value its chain was scheduled with.
    expected = []
    for step in range(5):
        for chain in range(3):
            expected.append(f"chain {chain}" if step == 0 else f"set by hop {5 - step}")
    assert seen == expected
    assert VAR.get() == "default"


def test_an_unclosed_loop_that_reused_handles_is_collected(loop_factory):
    loop = loop_factory()
    out = []
    for _ in range(3):
        for i in range(100):
            loop.call_soon(out.append, i)
        run_once(loop)
    assert len(out) == 300
    ref = weakref.ref(loop)
    del loop
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        gc.collect()
    assert ref() is None


def test_a_callback_that_keeps_its_handle_is_collected_after_it_ran(loop):
    class Owner:
        def method(self):
            pass

    refs = []
    for _ in range(300):
        owner = Owner()
        owner.handle = loop.call_soon(owner.method)  # owner -> handle -> owner
        refs.append(weakref.ref(owner))
    del owner
    run_once(loop)
    for i in range(300):
        loop.call_soon(len, ())
    run_once(loop)
    gc.collect()
    assert all(r() is None for r in refs)


def test_debug_mode_handles_keep_their_traceback(loop):
    loop.set_debug(True)
    for _ in range(10):
        loop.call_soon(len, ())
    run_once(loop)
    handle = loop.call_soon(len, ())
    assert handle._source_traceback
    run_once(loop)
