import asyncio

import pytest


@pytest.mark.anyio
async def test_runs_on_ferroloop():
    assert type(asyncio.get_running_loop()).__module__.startswith("ferroloop")
