"""`python -m ferroloop` against `python` itself.

Each test runs a program both ways: under `python -m ferroloop` (the
"ferroloop" run) and under plain `python` (the "asyncio" run, the reference).
What the program prints, its exit status and its stderr must be the same,
except for the loop it ran on.
"""

import signal
import textwrap

import pytest
from conftest import python

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys

    async def main():
        print(type(asyncio.get_running_loop()).__name__, __name__, sys.argv, repr(sys.path[0]))
        await asyncio.sleep(0.01)
        if sys.argv[1:2] == ["exit"]:
            raise SystemExit(int(sys.argv[2]))
        if sys.argv[1:2] == ["fail"]:
            fail()
        if sys.argv[1:2] == ["interrupt"]:
            raise KeyboardInterrupt

    def fail():
        raise ValueError("failed in the script")

    asyncio.run(main())
    """
)

LOOP_TYPE = {"ferroloop": "Loop", "asyncio": "_UnixSelectorEventLoop"}
NO_LOOP_HINT = "ferroloop: this program never created a ferroloop event loop"


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    return path


def command(loop_name, *argv):
    return ("-m", "ferroloop", *argv) if loop_name == "ferroloop" else argv


def test_a_script_gets_its_arguments_main_and_path(loop_name, script):
    result = python(*command(loop_name, str(script), "a b", "c"))
    assert result.returncode == 0, result.stderr
    expected = f"{LOOP_TYPE[loop_name]} __main__ {[str(script), 'a b', 'c']} {str(script.parent)!r}\n"
    assert result.stdout == expected
    assert result.stderr == ""


def test_a_module_gets_its_arguments_main_and_path(loop_name, script):
    result = python(*command(loop_name, "-m", "script", "x"), cwd=script.parent)
    assert result.returncode == 0, result.stderr
    expected = f"{LOOP_TYPE[loop_name]} __main__ {[str(script), 'x']} {str(script.parent)!r}\n"
    assert result.stdout == expected
    assert result.stderr == ""


def test_code_given_with_dash_c(loop_name):
    code = "import asyncio, sys\nasync def main(): print(type(asyncio.get_running_loop()).__name__, __name__, sys.argv, repr(sys.path[0]))\nasyncio.run(main())"
    result = python(*command(loop_name, "-c", code, "y"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{LOOP_TYPE[loop_name]} __main__ ['-c', 'y'] ''\n"
    assert result.stderr == ""


def test_the_program_from_stdin(loop_name, script):
    result = python(*command(loop_name, "-", "z"), input=script.read_text())
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{LOOP_TYPE[loop_name]} __main__ ['-', 'z'] ''\n"


def test_the_exit_status_is_the_programs(loop_name, script):
    assert python(*command(loop_name, str(script), "exit", "3")).returncode == 3
    interrupted = python(*command(loop_name, str(script), "interrupt"))
    assert interrupted.returncode == -signal.SIGINT
    assert interrupted.stderr.rstrip().endswith("KeyboardInterrupt")


@pytest.mark.parametrize("how", ["script", "relative script", "module"])
def test_a_traceback_is_the_one_python_prints(script, how):
    """Byte for byte: it starts at the program's code (after runpy's two
    frames for -m, as python's own does), with none of the runner's, and
    names a script by its absolute path, as python does."""
    argv = {
        "script": [str(script), "fail"],
        "relative script": [script.name, "fail"],
        "module": ["-m", "script", "fail"],
    }[how]
    plain = python(*argv, cwd=script.parent)
    on_ferroloop = python("-m", "ferroloop", *argv, cwd=script.parent)
    assert plain.returncode == on_ferroloop.returncode == 1
    assert "ValueError: failed in the script" in plain.stderr
    assert "ferroloop" not in on_ferroloop.stderr.replace(str(script.parent), "")
    assert on_ferroloop.stderr == plain.stderr


def test_a_syntax_error_is_reported_as_python_reports_it(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def broken(:\n    pass\n")
    plain = python(str(bad))
    on_ferroloop = python("-m", "ferroloop", str(bad))
    assert plain.returncode == on_ferroloop.returncode == 1
    assert "SyntaxError" in plain.stderr
    assert on_ferroloop.stderr == plain.stderr


@pytest.mark.parametrize("argv", [["missing.py"], ["-m", "missing_module"], ["-c"], ["-m"]])
def test_what_python_refuses_is_refused_the_same_way(tmp_path, argv):
    plain = python(*argv, cwd=tmp_path)
    on_ferroloop = python("-m", "ferroloop", *argv, cwd=tmp_path)
    assert plain.returncode != 0
    assert on_ferroloop.returncode == plain.returncode
    # The first line is python's (the usage lines that follow differ).
    assert on_ferroloop.stderr.splitlines()[0] == plain.stderr.splitlines()[0]
    assert NO_LOOP_HINT not in on_ferroloop.stderr  # the program never ran


def test_a_program_that_made_no_ferroloop_loop_is_told_so(tmp_path):
    """What uvicorn's default `--loop auto` does: it makes its loop itself."""
    program = "import asyncio\nloop = asyncio.SelectorEventLoop()\nloop.run_until_complete(asyncio.sleep(0))\nloop.close()\n"
    result = python("-m", "ferroloop", "-c", program)
    assert result.returncode == 0
    assert NO_LOOP_HINT in result.stderr
    assert "--loop ferroloop:new_event_loop" in result.stderr


def test_a_program_that_ran_on_ferroloop_is_not_told_anything(script):
    result = python("-m", "ferroloop", str(script))
    assert result.returncode == 0
    assert result.stderr == ""
