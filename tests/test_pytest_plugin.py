"""The pytest plugin (`pytest --ferroloop`): pytest-asyncio's and anyio's
tests run on ferroloop, on virtual time if asked, and on their own loops
when it is off. Each case runs pytest in a subprocess on a scratch
project, through the installed entry point, as a user's run would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("pytest_asyncio")
pytest.importorskip("anyio")

TESTS = '''
import asyncio
import time

import pytest

def loop_kind():
    loop = asyncio.get_running_loop()
    return type(loop).__module__.split(".")[0]

@pytest.mark.asyncio
async def test_asyncio_loop(expect):
    assert loop_kind() == expect["loop"]

@pytest.mark.asyncio
async def test_asyncio_sleep(expect):
    started = time.monotonic()
    await asyncio.sleep(expect["sleep"])
    if expect["virtual"]:
        assert time.monotonic() - started < 5 and asyncio.get_running_loop().time() >= 3600

@pytest.mark.anyio
async def test_anyio_loop(expect):
    assert loop_kind() == expect["loop"]

@pytest.mark.anyio
async def test_anyio_sleep(expect):
    import anyio
    started = time.monotonic()
    await anyio.sleep(expect["sleep"])
    if expect["virtual"]:
        assert time.monotonic() - started < 5 and asyncio.get_running_loop().time() >= 3600
'''

CONFTEST = '''
import json
import os
import os

import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.fixture
def expect():
    return json.loads(os.environ["EXPECT"])
'''


def run_pytest(tmp_path, args, ini, expect, conftest=CONFTEST):
    (tmp_path / "test_user.py").write_text(TESTS)
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n" + ini)
    # The caller's environment (make asan preloads a runtime the extension
    # needs), less what would configure the inner pytest.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["EXPECT"] = json.dumps(expect)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )
    return proc.returncode, proc.stdout + proc.stderr


REAL = {"loop": "ferroloop", "sleep": 0.01, "virtual": False}
VIRTUAL = {"loop": "ferroloop", "sleep": 3600, "virtual": True}
OFF = {"loop": "asyncio", "sleep": 0.01, "virtual": False}


@pytest.mark.parametrize(
    "args, ini, expect",
    [
        (["--ferroloop"], "", REAL),
        (["--ferroloop-virtual-time"], "", VIRTUAL),
        ([], "ferroloop = true\n", REAL),
        ([], "ferroloop_virtual_time = true\n", VIRTUAL),
        ([], "", OFF),
    ],
    ids=["option", "virtual-time option", "ini", "virtual-time ini", "off"],
)
def test_pytest_asyncio_and_anyio_tests_run_on_ferroloop(tmp_path, args, ini, expect):
    rc, out = run_pytest(tmp_path, args, ini, expect)
    assert rc == 0, out
    assert "4 passed" in out, out


def test_the_report_header_says_so(tmp_path):
    rc, out = run_pytest(tmp_path, ["--ferroloop-virtual-time", "-v"], "", VIRTUAL)
    assert rc == 0, out
    assert "asyncio tests run on ferroloop, virtual time" in out, out


def test_an_anyio_backend_that_names_its_own_loop_factory_keeps_it(tmp_path):
    conftest = CONFTEST.replace(
        'return "asyncio"', 'return ("asyncio", {"loop_factory": __import__("asyncio").SelectorEventLoop})'
    )
    rc, out = run_pytest(tmp_path, ["--ferroloop", "-k", "anyio_loop"], "", OFF, conftest)
    assert rc == 0 and "1 passed" in out, out


def test_the_plugin_is_registered_as_an_entry_point():
    from importlib.metadata import entry_points

    (plugin,) = [ep for ep in entry_points(group="pytest11") if ep.name == "ferroloop"]
    assert plugin.value == "ferroloop.pytest_plugin"
    assert textwrap.dedent(plugin.load().__doc__ or "").startswith("A pytest plugin")
