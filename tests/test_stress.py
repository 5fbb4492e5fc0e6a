"""Volume: many threads, a million timers. Counts and memory, never timings."""

import asyncio
import ctypes
import gc
import os
import threading

from conftest import run_once, scheduled_timers

THREADS = 8
CALLS_PER_THREAD = 100_000
TIMERS = 1_000_000
# Generous: a leak of one small object per timer would be tens of MB.
MEMORY_SLACK_MB = 10


def noop():
    pass


def rss_mb():
    """Resident memory, after the C allocator gave back what it can."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)  # glibc keeps freed heap memory otherwise
    except AttributeError:
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


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
    baseline = rss_mb()
    schedule_and_cancel()
    schedule_and_cancel()
    assert rss_mb() - baseline < MEMORY_SLACK_MB


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
    baseline = rss_mb()
    for _ in range(2):
        when = loop.time()
        for _ in range(TIMERS):
            loop.call_at(when, noop)
        run_once(loop)
        assert scheduled_timers(loop) == 0
    assert rss_mb() - baseline < MEMORY_SLACK_MB
