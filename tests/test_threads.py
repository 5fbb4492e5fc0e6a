"""The loop and other threads: call_soon_threadsafe, executors, to_thread."""

import asyncio
import concurrent.futures
import contextvars
import itertools
import threading
import time

import pytest

VAR = contextvars.ContextVar("VAR", default="default")

# Only there to end a hang: a test whose wake-up is lost fails instead.
GUARD = 10.0


def noop():
    pass


def in_thread(fn, *args):
    thread = threading.Thread(target=fn, args=args)
    thread.start()
    return thread


def test_call_soon_threadsafe_wakes_a_blocked_loop(loop):
    guard_fired = []

    async def main():
        woken = loop.create_future()

        def wake(ident):
            if not woken.done():
                woken.set_result(ident)

        def from_a_thread():
            time.sleep(0.05)  # let the loop block in its poll
            loop.call_soon_threadsafe(wake, threading.get_ident())

        thread = in_thread(from_a_thread)
        guard = loop.call_later(GUARD, lambda: (guard_fired.append(True), wake(None)))
        ident = await woken
        guard.cancel()
        thread.join()
        return ident

    assert loop.run_until_complete(main()) not in (None, threading.get_ident())
    assert guard_fired == [], "the loop slept through call_soon_threadsafe"


def test_call_soon_threadsafe_keeps_waking_the_loop_after_bursts(loop):
    """Regression: a wake-up racing the loop's drain of its eventfd was lost for good."""
    guard_fired = []

    async def main():
        woken = loop.create_future()

        def wake():
            if not woken.done():
                woken.set_result(None)

        def produce():
            call = loop.call_soon_threadsafe
            for _ in range(200):
                time.sleep(0.0005)  # let the loop block in its poll between bursts
                for _ in itertools.repeat(None, 1000):
                    call(noop)
            time.sleep(0.001)
            call(wake)

        thread = in_thread(produce)
        # Nothing but the guard wakes the loop unless call_soon_threadsafe does.
        guard = loop.call_later(GUARD, lambda: (guard_fired.append(True), wake()))
        await woken
        guard.cancel()
        thread.join()

    loop.run_until_complete(main())
    assert guard_fired == [], "the loop slept through call_soon_threadsafe"


def test_call_soon_threadsafe_before_the_loop_runs(loop):
    out = []
    in_thread(loop.call_soon_threadsafe, out.append, "queued").join()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == ["queued"]


def test_call_soon_threadsafe_on_a_closed_loop(loop):
    loop.close()
    errors = []

    def call():
        try:
            loop.call_soon_threadsafe(noop)
        except RuntimeError as e:
            errors.append(str(e))

    in_thread(call).join()
    assert errors == ["Event loop is closed"]


def test_run_coroutine_threadsafe_from_another_thread(loop):
    results = []

    async def double(x):
        await asyncio.sleep(0)
        return (x * 2, threading.get_ident())

    async def main():
        def submit():
            future = asyncio.run_coroutine_threadsafe(double(21), loop)
            results.append(future.result(timeout=GUARD))

        await asyncio.to_thread(submit)

    loop.run_until_complete(main())
    assert results == [(42, threading.get_ident())]


# --- executors --------------------------------------------------------------------------


def test_run_in_executor_runs_in_another_thread(loop):
    def work(a, b):
        return a + b, threading.get_ident()

    result, ident = loop.run_until_complete(loop.run_in_executor(None, work, 1, 2))
    assert result == 3
    assert ident != threading.get_ident()


def test_run_in_executor_propagates_exceptions(loop):
    def fail():
        raise ValueError("in the executor")

    with pytest.raises(ValueError, match="in the executor"):
        loop.run_until_complete(loop.run_in_executor(None, fail))


def test_run_in_executor_with_an_explicit_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="explicit") as executor:
        name = loop.run_until_complete(
            loop.run_in_executor(executor, lambda: threading.current_thread().name)
        )
    assert name.startswith("explicit")


def test_set_default_executor(loop):
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="default")
    loop.set_default_executor(executor)
    name = loop.run_until_complete(
        loop.run_in_executor(None, lambda: threading.current_thread().name)
    )
    assert name.startswith("default")
    loop.run_until_complete(loop.shutdown_default_executor())


def test_set_default_executor_needs_a_thread_pool(loop):
    with pytest.raises(TypeError, match="executor must be ThreadPoolExecutor instance"):
        loop.set_default_executor(42)


def test_run_in_executor_on_a_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.run_in_executor(None, noop)


def test_to_thread_carries_the_context(loop):
    async def main():
        VAR.set("in the task")
        return await asyncio.to_thread(lambda: (VAR.get(), threading.get_ident()))

    value, ident = loop.run_until_complete(main())
    assert value == "in the task"
    assert ident != threading.get_ident()


@pytest.mark.skipif(
    not hasattr(asyncio.events, "_ThreadSafeHandle"), reason="3.14 added asyncio's thread-safe handle"
)
def test_call_soon_threadsafe_handle_cancel_waits_for_the_running_callback(loop):
    # From 3.14 the handle is asyncio's _ThreadSafeHandle: cancel() from
    # another thread blocks until a callback already running has finished,
    # and a handle cancelled before it runs never runs.
    started, finished, log = threading.Event(), threading.Event(), []

    def slow():
        started.set()
        time.sleep(0.2)
        log.append("slow ran")
        finished.set()

    gate = threading.Event()

    def in_thread():
        never = loop.call_soon_threadsafe(log.append, "never")
        never.cancel()
        gate.set()
        handle = loop.call_soon_threadsafe(slow)
        log.append(isinstance(handle, asyncio.events._ThreadSafeHandle))
        started.wait()
        handle.cancel()
        log.append(("finished before cancel returned", finished.is_set()))
        loop.call_soon_threadsafe(loop.stop)

    # The loop is held until `never` is queued and cancelled.
    loop.call_soon(gate.wait, 5)
    thread = threading.Thread(target=in_thread)
    thread.start()
    loop.run_forever()
    thread.join()
    assert log == [True, "slow ran", ("finished before cancel returned", True)]


# --- floods ---------------------------------------------------------------------------------

# ferroloop holds back producer threads once this many of their callbacks
# wait for the loop's next iteration (src/event_loop/throttle.rs).
FLOOD_LIMIT = 4096


def test_a_threadsafe_flood_from_threads_keeps_a_bounded_backlog(loop, loop_name):
    """Four threads flood call_soon_threadsafe while the loop runs a
    repeating timer. Every callback runs, in each thread's order; on
    ferroloop the backlog (submitted, not yet run) stays within about two
    iterations' worth of the limit. asyncio has no stated bound (its
    self-pipe write per call slows producers down by accident), so there the
    backlog is only recorded."""
    producers, calls = 4, 30_000
    submitted = [0] * producers
    ran = [[] for _ in range(producers)]
    backlog = []

    def record(i, n):
        ran[i].append(n)

    def produce(i):
        for n in range(calls):
            submitted[i] += 1
            loop.call_soon_threadsafe(record, i, n)

    def sample():
        backlog.append(sum(submitted) - sum(map(len, ran)))
        if sum(map(len, ran)) < producers * calls:
            loop.call_later(0.001, sample)
        else:
            loop.stop()

    def start():
        threads.extend(in_thread(produce, i) for i in range(producers))
        sample()

    threads = []
    guard = loop.call_later(60, loop.stop)
    loop.call_soon(start)
    loop.run_forever()
    guard.cancel()
    for t in threads:
        t.join()
    assert [len(r) for r in ran] == [calls] * producers
    assert all(r == list(range(calls)) for r in ran)
    assert len(backlog) > 1
    if loop_name == "ferroloop":
        assert max(backlog) <= 2 * (FLOOD_LIMIT + producers), max(backlog)
