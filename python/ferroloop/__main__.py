"""`python -m ferroloop` runs a program on ferroloop the way `python` runs it.

    python -m ferroloop script.py [args]
    python -m ferroloop -m module [args]
    python -m ferroloop -c code [args]
    python -m ferroloop - [args]            (the program from stdin)

ferroloop's policy is installed first, so the program's `asyncio.run`,
`asyncio.new_event_loop` and `asyncio.Runner` get ferroloop loops without a
change. Everything else is `python`'s: `sys.argv`, `sys.path[0]`, the
`__main__` module, exit codes, the one-line errors for a missing file or
module, and tracebacks that start at the program's own code.

A framework that makes its own loop (uvicorn's default `--loop auto`, for
one) bypasses the policy; when the program never made a ferroloop loop, a
line on stderr at exit says so and how to fix it.
"""

from __future__ import annotations

import atexit
from asyncio import events
import io
import os
import runpy
import sys
import types
from importlib.machinery import BuiltinImporter, SourceFileLoader
from typing import Any, Callable, NoReturn

from . import _loop, _stats
from ._policy import EventLoopPolicy

USAGE = """\
usage: python -m ferroloop [--stats] [-c cmd | -m mod | file | -] [arg] ...
Runs the program as python would, with asyncio's loops made by ferroloop.
--stats: a report of each loop's statistics at exit, and on SIGUSR1."""

NO_LOOP_HINT = """\
ferroloop: this program never created a ferroloop event loop, so it did not \
run on ferroloop.
A framework that creates its own loop must be told which one to use, e.g. \
uvicorn: --loop ferroloop:new_event_loop; \
aiohttp: web.run_app(app, loop=ferroloop.new_event_loop()); \
anyio: backend_options={"loop_factory": ferroloop.new_event_loop}."""


def _program_name() -> str:
    return (getattr(sys, "orig_argv", None) or [sys.executable])[0]


def _usage_error(msg: str) -> NoReturn:
    print(msg, file=sys.stderr)
    print(USAGE, file=sys.stderr)
    sys.exit(2)


def _fresh_main(**attrs: Any) -> dict[str, Any]:
    """A new `__main__` module, as python makes for the program."""
    module = types.ModuleType("__main__")
    module.__dict__.update(__package__=None, __spec__=None, __builtins__=__builtins__)
    module.__dict__.update(attrs)
    sys.modules["__main__"] = module
    return module.__dict__


def _run_code(source: str | bytes, filename: str, namespace: dict[str, Any]) -> None:
    global _ran
    code = compile(source, filename, "exec", dont_inherit=True)
    _ran = True
    exec(code, namespace)


def _run_file(path: str) -> None:
    if os.path.isdir(path) or not path.endswith((".py", ".pyw")) and _is_zip(path):
        # A directory or zip archive with a __main__.py: runpy does what
        # python does (it puts the archive first on sys.path).
        sys.path[0] = path
        runpy.run_path(path, run_name="__main__")
        return
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    # python names the file by its absolute path (in __file__, in tracebacks
    # and in its error for a missing file), while sys.argv[0] keeps what was
    # typed.
    path = os.path.abspath(path)
    try:
        with io.open_code(path) as f:
            source = f.read()
    except OSError as e:
        # python's own message and exit status for a file it cannot open.
        print(f"{_program_name()}: can't open file '{path}': [Errno {e.errno}] {e.strerror}", file=sys.stderr)
        sys.exit(2)
    loader = SourceFileLoader("__main__", path)
    _run_code(source, path, _fresh_main(__file__=path, __cached__=None, __loader__=loader))


def _is_zip(path: str) -> bool:
    import zipfile

    return os.path.isfile(path) and zipfile.is_zipfile(path)


def _run(argv: list[str]) -> None:
    if argv[0] == "-c":
        if len(argv) < 2:
            _usage_error("Argument expected for the -c option")
        sys.argv = ["-c", *argv[2:]]
        sys.path[0] = ""
        _run_code(argv[1], "<string>", _fresh_main(__loader__=BuiltinImporter))
    elif argv[0] == "-m":
        if len(argv) < 2:
            _usage_error("Argument expected for the -m option")
        sys.argv = ["-m", *argv[2:]]
        global _module_main
        # A namespace of its own, not this runner's; runpy gives it the
        # module's spec just before the module's code runs.
        _module_main = _fresh_main()
        # What python -m itself calls: argv[0], __spec__, the one-line error
        # for a missing module and the runpy frames in a traceback are its.
        runpy._run_module_as_main(argv[1], alter_argv=True)  # type: ignore[attr-defined]
    elif argv[0] == "-":
        sys.argv = argv
        sys.path[0] = ""
        _run_code(sys.stdin.read(), "<stdin>", _fresh_main(__loader__=BuiltinImporter))
    else:
        sys.argv = argv
        _run_file(argv[0])


def _starting_at_the_program(hook: Callable[..., Any]) -> Callable[..., Any]:
    """`hook`, given tracebacks without this runner's frames (nor those above it)."""

    def excepthook(exc_type: Any, exc: Any, tb: Any) -> Any:
        start = tb
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == __file__:
                start = tb.tb_next
            tb = tb.tb_next
        if isinstance(exc, BaseException):
            exc.__traceback__ = start  # what python's own hook prints from
        return hook(exc_type, exc, start)

    return excepthook


# Set once the program's own code starts.
_ran = False
_module_main: dict[str, Any] = {}


def _warn_if_no_ferroloop_loop() -> None:
    if (_ran or _module_main.get("__spec__") is not None) and not _loop._made:
        print(NO_LOOP_HINT, file=sys.stderr)


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    if argv[0] == "--stats":
        argv = argv[1:]
        if not argv:
            _usage_error("--stats needs a program to run")
        _stats.enable()
        atexit.register(_stats.report)
    if argv[0].startswith("-") and argv[0] not in ("-c", "-m", "-"):
        _usage_error(f"Unknown option: {argv[0]}")
    # The private setter: the public one warns from 3.14 on.
    getattr(events, "_set_event_loop_policy", events.set_event_loop_policy)(EventLoopPolicy())
    atexit.register(_warn_if_no_ferroloop_loop)
    try:
        _run(argv)
    except SystemExit:
        raise  # python's own handling: the code, or the message and status 1
    except BaseException:
        # Uncaught, it reaches python's own top level, which prints it and
        # exits as python would (status 1, or SIGINT for a KeyboardInterrupt);
        # only the printed traceback loses the runner's frames.
        sys.excepthook = _starting_at_the_program(sys.excepthook)
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
