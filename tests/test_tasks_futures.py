"""Futures and tasks, task factories, and asyncio's high-level API end to end."""

import asyncio
import contextvars
import sys

import pytest

VAR = contextvars.ContextVar("VAR", default="default")


async def value(x):
    await asyncio.sleep(0)
    return x


# --- futures -----------------------------------------------------------------------


def test_create_future_gives_an_asyncio_future_of_this_loop(loop):
    future = loop.create_future()
    assert isinstance(future, asyncio.Future)
    assert future.get_loop() is loop
    assert not future.done()
    loop.call_later(0.01, future.set_result, "result")
    assert loop.run_until_complete(future) == "result"


def test_future_done_callbacks_run_through_the_loop_in_their_context(loop):
    future = loop.create_future()
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "ctx")
    seen = []
    future.add_done_callback(lambda f: seen.append(("plain", f.result(), VAR.get())))
    future.add_done_callback(lambda f: seen.append(("ctx", f.result(), VAR.get())), context=ctx)
    future.set_result(1)
    assert seen == []  # scheduled with call_soon, not run inline
    loop.run_until_complete(future)
    loop.run_until_complete(asyncio.sleep(0))
    assert seen == [("plain", 1, "default"), ("ctx", 1, "ctx")]


# --- tasks ---------------------------------------------------------------------------


def test_create_task_runs_the_coroutine(loop):
    task = loop.create_task(value(5))
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) == 5


def test_create_task_name(loop):
    named = loop.create_task(value(1), name="worker")
    numbered = loop.create_task(value(2))
    coerced = loop.create_task(value(3), name=123)
    loop.run_until_complete(asyncio.gather(named, numbered, coerced))
    assert named.get_name() == "worker"
    assert numbered.get_name().startswith("Task-")
    assert coerced.get_name() == "123"


def test_create_task_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "ctx")

    async def read_then_write():
        before = VAR.get()
        VAR.set("set by the task")
        return before

    assert loop.run_until_complete(loop.create_task(read_then_write(), context=ctx)) == "ctx"
    assert ctx[VAR] == "set by the task"
    assert loop.run_until_complete(loop.create_task(read_then_write())) == "default"
    assert VAR.get() == "default"


def test_create_task_refuses_a_non_coroutine(loop):
    with pytest.raises(TypeError, match="a coroutine was expected, got 42"):
        loop.create_task(42)


def test_create_task_on_a_closed_loop(loop):
    loop.close()
    coro = value(1)
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.create_task(coro)
    coro.close()


def test_task_cancellation(loop):
    async def sleeper():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "cleaned up"

    async def main():
        task = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        task.cancel()
        return await task

    assert loop.run_until_complete(main()) == "cleaned up"


def test_current_task_and_all_tasks(loop):
    async def main():
        me = asyncio.current_task()
        other = asyncio.create_task(asyncio.sleep(0.01))
        tasks = asyncio.all_tasks()
        await other
        return me, other, tasks

    me, other, tasks = loop.run_until_complete(main())
    assert tasks == {me, other}
    assert asyncio.all_tasks(loop) == set()


# --- task factories ------------------------------------------------------------------


def test_task_factory(loop):
    calls = []

    def factory(the_loop, coro, **kwargs):
        calls.append((the_loop, coro.__name__, sorted(set(kwargs) - {"name"})))
        return asyncio.Task(coro, loop=the_loop, **kwargs)

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    named = loop.create_task(value(1), name="named")
    with_ctx = loop.create_task(value(2), context=contextvars.copy_context())
    assert loop.run_until_complete(asyncio.gather(named, with_ctx)) == [1, 2]
    assert named.get_name() == "named"
    assert calls == [(loop, "value", []), (loop, "value", ["context"])]
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    loop.run_until_complete(value(3))
    assert len(calls) == 2


def test_task_factory_receives_exactly_the_keywords_given(loop):
    # 3.14 hands the factory create_task's keywords as given; earlier
    # versions pass `context` only, and apply `name` with set_name().
    seen = []

    def factory(the_loop, coro, **kwargs):
        seen.append(sorted(kwargs))
        return asyncio.Task(coro, loop=the_loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        for kw in ({}, {"name": "n"}, {"context": contextvars.copy_context()}, {"name": None}):
            task = loop.create_task(value(1), **kw)
            assert loop.run_until_complete(task) == 1
    finally:
        loop.set_task_factory(None)
    if sys.version_info >= (3, 14):
        assert seen == [[], ["name"], ["context"], ["name"]]
    else:
        assert seen == [[], [], ["context"], []]


def test_create_task_takes_other_keywords_as_its_version_does(loop):
    async def now():
        return "ran"

    async def main():
        coro = now()
        if sys.version_info >= (3, 14):
            # Passed on to Task: an eager task runs to its first suspension
            # inside create_task.
            task = loop.create_task(coro, eager_start=True)
            assert task.done() and task.result() == "ran"
        else:
            with pytest.raises(TypeError, match="unexpected keyword argument 'eager_start'"):
                loop.create_task(coro, eager_start=True)
            coro.close()

    loop.run_until_complete(main())


class NamedFuture(asyncio.Future):
    def set_name(self, name):  # asyncio 3.13 names what the factory returns
        self.name = name


def test_task_factory_may_return_any_future(loop):
    def factory(the_loop, coro, **kwargs):
        coro.close()
        future = NamedFuture(loop=the_loop)
        future.set_result("from the factory")
        return future

    loop.set_task_factory(factory)
    try:
        assert loop.run_until_complete(value(1)) == "from the factory"
    finally:
        loop.set_task_factory(None)


@pytest.mark.parametrize("factory", [42, "factory"])
def test_set_task_factory_refuses_a_non_callable(loop, factory):
    with pytest.raises(TypeError, match="^task factory must be a callable or None$"):
        loop.set_task_factory(factory)
    assert loop.get_task_factory() is None


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_task_factory is new in 3.12")
def test_eager_task_factory(loop):
    out = []

    async def step():
        out.append("started")
        await asyncio.sleep(0)
        out.append("resumed")
        return "done"

    async def main():
        task = asyncio.create_task(step())
        out.append("created")
        return await task

    loop.set_task_factory(asyncio.eager_task_factory)
    assert loop.run_until_complete(main()) == "done"
    assert out == ["started", "created", "resumed"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in 3.12")
def test_eager_task_that_completes_synchronously(loop):
    async def immediate():
        return "at once"

    async def main():
        task = asyncio.create_task(immediate())
        return task.done(), await task

    loop.set_task_factory(asyncio.eager_task_factory)
    assert loop.run_until_complete(main()) == (True, "at once")


# --- the high-level API, end to end ------------------------------------------------


def test_gather(loop):
    async def main():
        return await asyncio.gather(value(1), value(2), asyncio.sleep(0.01, 3))

    assert loop.run_until_complete(main()) == [1, 2, 3]


def test_gather_return_exceptions(loop):
    async def fail():
        raise ValueError("x")

    async def main():
        return await asyncio.gather(value(1), fail(), return_exceptions=True)

    first, second = loop.run_until_complete(main())
    assert first == 1 and isinstance(second, ValueError)


def test_wait_first_completed(loop):
    async def main():
        fast = asyncio.ensure_future(asyncio.sleep(0.01, "fast"))
        slow = asyncio.ensure_future(asyncio.sleep(60, "slow"))
        done, pending = await asyncio.wait({fast, slow}, return_when=asyncio.FIRST_COMPLETED)
        slow.cancel()
        return done == {fast}, pending == {slow}, fast.result()

    assert loop.run_until_complete(main()) == (True, True, "fast")


def test_wait_for_timeout_cancels_the_awaitable(loop):
    async def main():
        inner = asyncio.ensure_future(asyncio.sleep(60))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(inner, 0.01)
        return inner.cancelled()

    assert loop.run_until_complete(main()) is True


def test_wait_for_result_within_timeout(loop):
    async def main():
        return await asyncio.wait_for(value("in time"), 30)

    assert loop.run_until_complete(main()) == "in time"


def test_timeout_context_manager(loop):
    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(60)
        async with asyncio.timeout(30) as cm:
            await asyncio.sleep(0)
        return cm.expired()

    assert loop.run_until_complete(main()) is False


def test_task_group(loop):
    async def fail():
        await asyncio.sleep(0)
        raise ValueError("in the group")

    async def main():
        async with asyncio.TaskGroup() as group:
            a = group.create_task(value("a"))
            b = group.create_task(value("b"))
        results = (a.result(), b.result())
        with pytest.raises(ExceptionGroup) as exc:
            async with asyncio.TaskGroup() as group:
                sibling = group.create_task(asyncio.sleep(60))
                group.create_task(fail())
        return results, sibling.cancelled(), exc.value.exceptions

    results, sibling_cancelled, errors = loop.run_until_complete(main())
    assert results == ("a", "b")
    assert sibling_cancelled
    assert [str(e) for e in errors] == ["in the group"]


def test_queue_producer_consumer(loop):
    async def main():
        queue = asyncio.Queue(maxsize=2)

        async def produce():
            for i in range(10):
                await queue.put(i)
            await queue.put(None)

        async def consume():
            got = []
            while (item := await queue.get()) is not None:
                got.append(item)
            return got

        return (await asyncio.gather(produce(), consume()))[1]

    assert loop.run_until_complete(main()) == list(range(10))


def test_lock_serializes(loop):
    async def main():
        lock = asyncio.Lock()
        trace = []

        async def critical(name):
            async with lock:
                trace.append(f"{name} in")
                await asyncio.sleep(0)
                trace.append(f"{name} out")

        await asyncio.gather(critical("a"), critical("b"))
        return trace

    assert loop.run_until_complete(main()) == ["a in", "a out", "b in", "b out"]


def test_semaphore_bounds_concurrency(loop):
    async def main():
        semaphore = asyncio.Semaphore(2)
        active = peak = 0

        async def work():
            nonlocal active, peak
            async with semaphore:
                active += 1
                peak = max(peak, active)
                await asyncio.sleep(0.001)
                active -= 1

        await asyncio.gather(*(work() for _ in range(6)))
        return peak

    assert loop.run_until_complete(main()) == 2


def test_event_and_condition(loop):
    async def main():
        event = asyncio.Event()
        condition = asyncio.Condition()
        state = []

        async def waiter():
            async with condition:
                await condition.wait_for(lambda: state)
                return state[0]

        waiting = asyncio.create_task(waiter())
        asyncio.get_running_loop().call_later(0.01, event.set)
        await event.wait()
        async with condition:
            state.append("notified")
            condition.notify_all()
        return await waiting

    assert loop.run_until_complete(main()) == "notified"


def test_sleep_ordering(loop):
    async def main():
        out = []

        async def sleeper(delay):
            await asyncio.sleep(delay)
            out.append(delay)

        await asyncio.gather(sleeper(0.03), sleeper(0.01), sleeper(0.02), sleeper(0))
        return out

    assert loop.run_until_complete(main()) == [0, 0.01, 0.02, 0.03]


def test_create_task_and_future_use_the_classes_asyncio_has_now(loop, monkeypatch):
    # asyncio's create_task/create_future look up tasks.Task and
    # futures.Future at each call; code that swaps them (CPython's tests
    # install the pure-Python classes) gets its own on either loop.
    class MyTask(asyncio.Task):
        pass

    class MyFuture(asyncio.Future):
        pass

    monkeypatch.setattr(asyncio.tasks, "Task", MyTask)
    monkeypatch.setattr(asyncio.futures, "Future", MyFuture)
    task = loop.create_task(value(1))
    future = loop.create_future()
    assert type(task) is MyTask and type(future) is MyFuture
    future.set_result(2)
    assert loop.run_until_complete(asyncio.gather(task, future)) == [1, 2]


def test_create_task_and_future_look_the_classes_up_as_attributes(loop, monkeypatch):
    # Not only what the modules' dicts hold: a module `__getattr__` answers
    # for a name the dict lacks. (A ModuleType subclass's descriptor is not
    # tested: CPython's own lookup skips it once specialized, as 3.15's
    # asyncio loop does here after a few hundred tasks.)
    class MyTask(asyncio.Task):
        pass

    class MyFuture(asyncio.Future):
        pass

    mine = {"Task": MyTask, "Future": MyFuture}
    for module, name in ((asyncio.tasks, "Task"), (asyncio.futures, "Future")):
        monkeypatch.delattr(module, name)
        monkeypatch.setattr(module, "__getattr__", mine.__getitem__, raising=False)
    task = loop.create_task(value(1))
    future = loop.create_future()
    assert type(task) is MyTask and type(future) is MyFuture
    future.set_result(2)
    assert loop.run_until_complete(asyncio.gather(task, future)) == [1, 2]
