"""Every test body runs twice: on ferroloop and on asyncio's own loop.

A test asks for the `loop_factory` fixture (or `loop`) and must behave the
same on both; a stray call to the exception handler fails the test unless the
test expects it.

A known ferroloop bug is marked `@pytest.mark.ferroloop_bug("what is wrong")`:
the test asserts asyncio's behaviour, passes on asyncio, and is a strict xfail
on the ferroloop param only.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys

import pytest

import ferroloop

FACTORIES = {
    "ferroloop": ferroloop.new_event_loop,
    "asyncio": asyncio.SelectorEventLoop,
}
# `make asan` and `make memcheck` run only the ferroloop param
# (FERROLOOP_TEST_LOOPS=ferroloop); FACTORIES keeps both, since some tests
# compare with asyncio's loop inside one param.
LOOP_PARAMS = sorted(FACTORIES)
if os.environ.get("FERROLOOP_TEST_LOOPS"):
    LOOP_PARAMS = os.environ["FERROLOOP_TEST_LOOPS"].split(",")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "ferroloop_bug(reason): a known ferroloop bug; strict xfail on the ferroloop param only",
    )


def pytest_collection_modifyitems(items):
    for item in items:
        marker = item.get_closest_marker("ferroloop_bug")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None:
            continue
        if callspec.params.get("loop_factory") == "ferroloop":
            reason = f"ferroloop bug: {marker.args[0]}"
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(params=LOOP_PARAMS)
def loop_factory(request):
    return FACTORIES[request.param]


@pytest.fixture
def loop_name(request, loop_factory):
    """'ferroloop' or 'asyncio': which loop this run of the test is on."""
    return request.node.callspec.params["loop_factory"]


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


def run_once(loop):
    """Runs one iteration of `loop` (what is ready now, then stop)."""
    loop.call_soon(loop.stop)
    loop.run_forever()


def scheduled_timers(loop):
    """How many timers the loop holds, cancelled ones included."""
    if isinstance(loop, ferroloop.Loop):
        return loop._timer_count()
    return len(loop._scheduled)


def python(*args, env=None, timeout=60, **kwargs):
    """Runs `python *args` in a subprocess; returns the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        **kwargs,
    )
