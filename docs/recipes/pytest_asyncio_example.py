import asyncio

import pytest
import pytest_asyncio


@pytest_asyncio.fixture
async def fixture_loop():
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.asyncio
async def test_runs_on_ferroloop(fixture_loop):
    assert fixture_loop.startswith("ferroloop")
    assert type(asyncio.get_running_loop()).__module__.startswith("ferroloop")
