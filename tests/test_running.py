"""Running and stopping a loop, its lifecycle, and the ways to get one."""

import asyncio
import sys
import warnings

import pytest
from conftest import python, run_once

import ferroloop


async def answer(value=42):
    await asyncio.sleep(0)
    return value


# --- run_until_complete / run_forever -----------------------------------------


def test_run_until_complete_returns_a_coroutines_result(loop):
    assert loop.run_until_complete(answer()) == 42


def test_run_until_complete_returns_a_futures_result(loop):
    future = loop.create_future()
    loop.call_soon(future.set_result, "done")
    assert loop.run_until_complete(future) == "done"


def test_run_until_complete_accepts_a_task_and_any_awaitable(loop):
    class Awaitable:
        def __await__(self):
            return answer(7).__await__()

    assert loop.run_until_complete(loop.create_task(answer(3))) == 3
    assert loop.run_until_complete(Awaitable()) == 7


def test_run_until_complete_raises_the_exception_of_the_coroutine(loop):
    async def fail():
        await asyncio.sleep(0)
        raise ValueError("from the coroutine")

    with pytest.raises(ValueError, match="from the coroutine"):
        loop.run_until_complete(fail())


def test_run_forever_runs_until_stop(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.call_later(0.01, out.append, 2)
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert out == [1, 2]
    assert not loop.is_running()


def test_stop_before_run_forever_runs_one_iteration(loop):
    out = []
    loop.stop()
    loop.call_soon(out.append, 1)
    loop.run_forever()
    assert out == [1]
    # The loop can run again; stop() was consumed.
    loop.call_soon(out.append, 2)
    run_once(loop)
    assert out == [1, 2]


def test_stop_in_a_callback_finishes_the_current_iteration(loop):
    out = []

    def stop_and_schedule():
        loop.stop()
        loop.call_soon(out.append, "next iteration")

    loop.call_soon(out.append, "before")
    loop.call_soon(stop_and_schedule)
    loop.call_soon(out.append, "after")
    loop.run_forever()
    assert out == ["before", "after"]
    run_once(loop)
    assert out == ["before", "after", "next iteration"]


def test_run_until_complete_stopped_early(loop):
    async def stop_then_wait():
        loop.stop()
        await asyncio.sleep(10)

    task = loop.create_task(stop_then_wait())
    with pytest.raises(RuntimeError, match="^Event loop stopped before Future completed.$"):
        loop.run_until_complete(task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)


def test_run_until_complete_after_stop(loop):
    loop.stop()
    task = loop.create_task(asyncio.sleep(10))
    with pytest.raises(RuntimeError, match="^Event loop stopped before Future completed.$"):
        loop.run_until_complete(task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)


def test_run_until_complete_refuses_a_future_of_another_loop(loop):
    other = asyncio.SelectorEventLoop()
    try:
        with pytest.raises(ValueError, match="future belongs to a different loop"):
            loop.run_until_complete(other.create_future())
    finally:
        other.close()


def test_run_until_complete_refuses_a_non_awaitable(loop):
    with pytest.raises(TypeError, match="An asyncio.Future, a coroutine or an awaitable is required"):
        loop.run_until_complete(42)


# --- state checks ----------------------------------------------------------------


# One attempt per test: on CPython 3.13.0 a refused run_forever() still runs
# its clean-up, which marks the running loop as stopped.
RUN_METHODS = ["run_forever", "run_until_complete"]


def attempt_to_run(loop, method):
    coro = answer()
    try:
        with pytest.raises(RuntimeError) as exc:
            if method == "run_forever":
                loop.run_forever()
            else:
                loop.run_until_complete(coro)
    finally:
        coro.close()
    return str(exc.value)


@pytest.mark.parametrize("method", RUN_METHODS)
def test_running_loop_refuses_to_run_again(loop, method):
    errors = []
    loop.call_soon(lambda: errors.append(attempt_to_run(loop, method)))
    run_once(loop)
    assert errors == ["This event loop is already running"]


def test_closed_loop_refuses_to_run(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.run_forever()
    coro = answer()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.run_until_complete(coro)
    coro.close()


def test_close_while_running_is_refused(loop):
    errors = []

    def try_close():
        with pytest.raises(RuntimeError) as exc:
            loop.close()
        errors.append(str(exc.value))

    loop.call_soon(try_close)
    run_once(loop)
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()
    assert loop.run_until_complete(answer()) == 42


def test_close_is_idempotent_and_drops_pending_callbacks(loop):
    out = []
    loop.call_soon(out.append, "soon")
    loop.call_later(0, out.append, "later")
    assert not loop.is_closed()
    loop.close()
    loop.close()
    assert loop.is_closed()
    assert out == []


def test_is_running(loop):
    seen = []
    loop.call_soon(lambda: seen.append(loop.is_running()))
    assert not loop.is_running()
    run_once(loop)
    assert seen == [True]
    assert not loop.is_running()


def test_running_loop_bookkeeping(loop):
    async def inside():
        return asyncio.get_running_loop(), asyncio.get_event_loop(), asyncio._get_running_loop()

    assert asyncio._get_running_loop() is None
    assert loop.run_until_complete(inside()) == (loop, loop, loop)
    assert asyncio._get_running_loop() is None
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.get_running_loop()


def test_running_loop_is_reset_when_an_exception_escapes(loop):
    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert asyncio._get_running_loop() is None
    assert not loop.is_running()
    assert loop.run_until_complete(answer()) == 42


@pytest.mark.parametrize("method", RUN_METHODS)
def test_a_loop_cannot_run_inside_another_running_loop(loop, loop_factory, method):
    other = loop_factory()

    async def main():
        return attempt_to_run(other, method)

    try:
        error = loop.run_until_complete(main())
    finally:
        other.close()
    assert error == "Cannot run the event loop while another loop is running"


# --- shutdown ----------------------------------------------------------------


def test_shutdown_asyncgens_finalizes_suspended_generators(loop):
    out = []

    async def gen():
        try:
            yield 1
            yield 2
        finally:
            out.append("finalized")

    async def start():
        agen = gen()
        await agen.__anext__()
        return agen

    agen = loop.run_until_complete(start())
    assert out == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert out == ["finalized"]
    del agen


def test_shutdown_default_executor(loop):
    assert loop.run_until_complete(loop.run_in_executor(None, sum, [1, 2])) == 3
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, sum, [1, 2])


# --- ferroloop.run, mirroring asyncio.run ------------------------------------------


@pytest.fixture
def run_main(loop_name):
    """ferroloop.run on the ferroloop param, asyncio.run on the asyncio one."""
    return ferroloop.run if loop_name == "ferroloop" else asyncio.run


def test_run_returns_the_result_on_a_fresh_loop_and_closes_it(run_main):
    async def main():
        return asyncio.get_running_loop(), await answer()

    used, result = run_main(main())
    assert result == 42
    assert used.is_closed()
    assert asyncio._get_running_loop() is None


def test_run_loop_type(loop_name):
    async def main():
        return type(asyncio.get_running_loop())

    if loop_name == "ferroloop":
        assert ferroloop.run(main()) is ferroloop.Loop
    else:
        assert not issubclass(asyncio.run(main()), ferroloop.Loop)


def test_run_raises_the_exception_of_main(run_main):
    async def main():
        raise ValueError("from main")

    with pytest.raises(ValueError, match="from main"):
        run_main(main())


@pytest.mark.parametrize("not_a_coroutine", [42, answer, asyncio.sleep])
def test_run_needs_a_coroutine(run_main, not_a_coroutine):
    if sys.version_info >= (3, 14):  # 3.14 also runs any awaitable
        expected = pytest.raises(TypeError, match="^An asyncio.Future, a coroutine or an awaitable is required$")
    else:
        expected = pytest.raises(ValueError, match="^a coroutine was expected, got ")
    with expected:
        run_main(not_a_coroutine)


@pytest.mark.skipif(sys.version_info < (3, 14), reason="3.14 added running awaitables")
def test_run_takes_any_awaitable_from_314(run_main):
    class Awaitable:
        def __await__(self):
            return answer().__await__()

    assert run_main(Awaitable()) == 42


def test_run_refuses_to_run_inside_a_running_loop(run_main, loop):
    async def main():
        coro = answer()
        try:
            with pytest.raises(RuntimeError) as exc:
                run_main(coro)
        finally:
            coro.close()
        return str(exc.value)

    assert loop.run_until_complete(main()) == (
        "asyncio.run() cannot be called from a running event loop"
    )


def test_run_cancels_leftover_tasks_and_finalizes_asyncgens(run_main):
    out = []

    async def background():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            out.append("cancelled")
            raise

    async def gen():
        try:
            yield 1
            yield 2
        finally:
            out.append("finalized")

    agen = None

    async def main():
        nonlocal agen
        asyncio.ensure_future(background())
        agen = gen()
        await agen.__anext__()
        await asyncio.sleep(0)
        return "done"

    assert run_main(main()) == "done"
    assert sorted(out) == ["cancelled", "finalized"]


def test_run_debug_flag(run_main):
    async def debug():
        return asyncio.get_running_loop().get_debug()

    assert run_main(debug(), debug=True) is True
    assert run_main(debug(), debug=False) is False


def test_runner_with_loop_factory(loop_factory):
    async def which():
        return asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        first = runner.run(which())
        second = runner.run(answer())
        assert first is runner.get_loop()
        assert type(first) is type(runner.get_loop())
    assert second == 42
    assert first.is_closed()


def test_runner_with_ferroloop_factory_gives_a_ferroloop_loop():
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), ferroloop.Loop)
        assert runner.run(answer()) == 42


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is new in 3.12")
def test_asyncio_run_with_loop_factory(loop_factory):
    async def main():
        return asyncio.get_running_loop(), await answer()

    used, result = asyncio.run(main(), loop_factory=loop_factory)
    assert result == 42
    assert used.is_closed()
    probe = loop_factory()
    assert type(used) is type(probe)
    probe.close()


# --- the policy --------------------------------------------------------------


@pytest.fixture
def restore_policy():
    with warnings.catch_warnings():
        # Policies are deprecated from Python 3.14 on.
        warnings.simplefilter("ignore", DeprecationWarning)
        old = asyncio.get_event_loop_policy()
        yield
        asyncio.set_event_loop_policy(old)


def test_event_loop_policy_makes_ferroloop_loops(restore_policy):
    async def which():
        return type(asyncio.get_running_loop())

    asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, ferroloop.Loop)
    finally:
        loop.close()
    assert asyncio.run(which()) is ferroloop.Loop
    with asyncio.Runner() as runner:
        assert runner.run(which()) is ferroloop.Loop


def test_event_loop_policy_is_asyncios_default_policy(restore_policy):
    policy = ferroloop.EventLoopPolicy()
    assert isinstance(policy, asyncio.DefaultEventLoopPolicy)
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, ferroloop.Loop)
    finally:
        loop.close()
