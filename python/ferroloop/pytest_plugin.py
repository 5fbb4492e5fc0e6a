"""A pytest plugin (registered as the `pytest11` entry point `ferroloop`):
pytest-asyncio's and anyio's tests run on ferroloop by one option.

    pytest --ferroloop                # every pytest-asyncio and anyio (asyncio backend) test on ferroloop
    pytest --ferroloop-virtual-time   # the same, each loop on virtual time (ferroloop.testing)

or, in the ini file, `ferroloop = true` / `ferroloop_virtual_time = true`.
Without either, the plugin changes nothing.

- pytest-asyncio (1.4 or later): through its `pytest_asyncio_loop_factories`
  hook, registered only while the plugin is on, naming the one factory
  every test runs on.
- anyio: its `anyio_backend` fixture gives the backend and its options; an
  asyncio backend gets ferroloop as its `loop_factory` (unless the fixture
  already names one).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

import ferroloop
import ferroloop.testing


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ferroloop")
    group.addoption(
        "--ferroloop",
        action="store_true",
        default=False,
        help="run pytest-asyncio's and anyio's asyncio tests on ferroloop",
    )
    group.addoption(
        "--ferroloop-virtual-time",
        action="store_true",
        default=False,
        help="as --ferroloop, with each loop on virtual time (ferroloop.testing)",
    )
    parser.addini("ferroloop", type="bool", default=False, help="as --ferroloop")
    parser.addini("ferroloop_virtual_time", type="bool", default=False, help="as --ferroloop-virtual-time")


def loop_factory(config: pytest.Config) -> Callable[[], Any] | None:
    """The factory the plugin gives both frameworks, or None when it is off."""
    if config.getoption("ferroloop_virtual_time") or config.getini("ferroloop_virtual_time"):
        return ferroloop.testing.new_event_loop
    if config.getoption("ferroloop") or config.getini("ferroloop"):
        return ferroloop.new_event_loop
    return None


class _PytestAsyncio:
    """pytest-asyncio's hook, registered while the plugin is on."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory

    def pytest_asyncio_loop_factories(self, config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
        return {"ferroloop": self.factory}


def pytest_configure(config: pytest.Config) -> None:
    factory = loop_factory(config)
    if factory is None:
        return
    if config.pluginmanager.has_plugin("asyncio"):
        if not hasattr(config.hook, "pytest_asyncio_loop_factories"):
            raise pytest.UsageError(
                "--ferroloop needs a pytest-asyncio with the pytest_asyncio_loop_factories hook (1.4 or later)"
            )
        config.pluginmanager.register(_PytestAsyncio(factory), "ferroloop-pytest-asyncio")


def pytest_report_header(config: pytest.Config) -> str | None:
    factory = loop_factory(config)
    if factory is None:
        return None
    time = "virtual time" if factory is ferroloop.testing.new_event_loop else "real time"
    return f"ferroloop {ferroloop.__version__}: asyncio tests run on ferroloop, {time}"


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Generator[None, Any, Any]:
    result = yield
    if fixturedef.argname != "anyio_backend":
        return result
    factory = loop_factory(request.config)
    if factory is None:
        return result
    name, options = (result, {}) if isinstance(result, str) else result
    if name != "asyncio" or "loop_factory" in options:
        return result
    backend = (name, {**options, "loop_factory": factory})
    # pytest caches what the fixture function returned; the value every
    # test of the fixture's scope sees is the one cached.
    fixturedef.cached_result = (backend, *fixturedef.cached_result[1:])
    return backend
