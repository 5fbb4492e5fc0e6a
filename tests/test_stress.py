"""Volume: many threads, a million timers. Counts and memory, never timings."""

import asyncio
import threading

from _memory import live_allocations
from conftest import run_once, scheduled_timers

THREADS = 8
CALLS_PER_THREAD = 100_000
TIMERS = 1_000_000
# Generous: a leak of one small object per timer would be a million blocks or
# tens of MB; a timer queue that kept its peak capacity, about 16 MB.
BLOCK_SLACK = 10_000
MALLOC_SLACK_MB = 4


def noop():
    pass


def assert_gave_back(baseline):
    blocks, malloc_mb = live_allocations()
    assert blocks - baseline[0] < BLOCK_SLACK, f"{blocks - baseline[0]} more Python blocks"
    assert malloc_mb - baseline[1] < MALLOC_SLACK_MB, f"{malloc_mb - baseline[1]:.1f} MiB more"


def test_call_soon_threadsafe_from_many_threads_runs_each_callback_once(loop):
    counts = [0] * THREADS

    def bump(i):
        counts[i] += 1

    def produce(i):
        call = loop.call_soon_threadsafe
        for _ in range(CALLS_PER_THREAD):
            call(bump, i)

    async def main():
        threads = [threading.Thread(target=produce, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.01)  # keep iterating while they produce
        for t in threads:
            t.join()
        await asyncio.sleep(0)  # what they queued runs before this resumes

    loop.run_until_complete(main())
    assert counts == [CALLS_PER_THREAD] * THREADS


def test_a_million_cancelled_timers_give_their_memory_back(loop):
    def schedule_and_cancel():
        for _ in range(TIMERS // 10_000):
            for handle in [loop.call_later(3600, noop) for _ in range(10_000)]:
                handle.cancel()
        assert scheduled_timers(loop) == TIMERS
        run_once(loop)  # the loop drops cancelled timers
        assert scheduled_timers(loop) == 0

    schedule_and_cancel()  # the allocator grows its arenas once
    baseline = live_allocations()
    schedule_and_cancel()
    schedule_and_cancel()
    assert_gave_back(baseline)


def test_cancelled_timers_do_not_accumulate_among_live_ones(loop):
    live = [loop.call_later(3600, noop) for _ in range(1000)]
    for _ in range(100):
        for handle in [loop.call_later(3600, noop) for _ in range(10_000)]:
            handle.cancel()
        run_once(loop)
        # Cancelled timers are at most half of what the loop holds (asyncio's rule).
        assert scheduled_timers(loop) <= 2 * len(live) + 10_000
    for handle in live:
        handle.cancel()


def test_a_burst_of_a_million_fired_timers_gives_its_memory_back(loop):
    """Regression: the timer heap and ready queues kept a burst's capacity until close."""
    run_once(loop)
    baseline = live_allocations()
    for _ in range(2):
        when = loop.time()
        for _ in range(TIMERS):
            loop.call_at(when, noop)
        run_once(loop)
        assert scheduled_timers(loop) == 0
    assert_gave_back(baseline)
