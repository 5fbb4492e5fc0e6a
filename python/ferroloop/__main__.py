"""`python -m ferroloop script.py [args]`: run an asyncio script on ferroloop.

The ferroloop policy is installed before the script runs, so its
`asyncio.run`, `asyncio.new_event_loop` and `asyncio.Runner` all get
ferroloop loops without a change to the script.
"""

from __future__ import annotations

from asyncio import events
import runpy
import sys

from ._policy import EventLoopPolicy


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m ferroloop SCRIPT [ARGS...]  |  python -m ferroloop -m MODULE [ARGS...]")
        return 0 if argv else 2
    # The private setter: the public one warns from 3.14 on.
    getattr(events, "_set_event_loop_policy", events.set_event_loop_policy)(EventLoopPolicy())
    if argv[0] == "-m":
        if len(argv) < 2:
            print("python -m ferroloop -m: a module name is required", file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
