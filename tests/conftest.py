"""Every test body runs twice: on ferroloop and on asyncio's own loop.

A test asks for the `loop_factory` fixture (or `loop`) and must behave the
same on both; a stray call to the exception handler fails the test unless the
test expects it.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

import ferroloop

FACTORIES = {
    "ferroloop": ferroloop.new_event_loop,
    "asyncio": asyncio.SelectorEventLoop,
}


@pytest.fixture(params=sorted(FACTORIES))
def loop_factory(request):
    return FACTORIES[request.param]


@pytest.fixture
def loop(loop_factory):
    loop = loop_factory()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    loop.unexpected_errors = errors  # type: ignore[attr-defined]
    yield loop
    if not loop.is_closed():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    gc.collect()
    assert not errors, f"unexpected exception-handler calls: {errors}"


def run(loop, coro):
    return loop.run_until_complete(coro)
