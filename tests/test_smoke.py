"""The basics, on both loops."""

import asyncio

import ferroloop


def test_loop_is_an_abstract_event_loop():
    loop = ferroloop.new_event_loop()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert isinstance(loop, ferroloop.Loop)
    finally:
        loop.close()


def test_run_returns_result():
    async def main():
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    loop = ferroloop.run(main())
    assert isinstance(loop, ferroloop.Loop)
    assert loop.is_closed()


def test_call_soon_fifo(loop):
    out = []
    for i in range(5):
        loop.call_soon(out.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == [0, 1, 2, 3, 4]
