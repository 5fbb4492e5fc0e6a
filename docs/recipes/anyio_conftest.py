import ferroloop
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio", {"loop_factory": ferroloop.new_event_loop}
