"""add_signal_handler/remove_signal_handler, and Ctrl-C."""

import asyncio
import contextvars
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import python

VAR = contextvars.ContextVar("VAR", default="default")

# Only there to end a hang.
GUARD = 10.0


def noop(*args):
    pass


def send_and_wait(loop, sig, done):
    """Sends `sig` to this process from inside the loop and runs until `done`."""
    loop.call_soon(os.kill, os.getpid(), sig)
    guard = loop.call_later(GUARD, loop.stop)
    loop.run_until_complete(asyncio.wait_for(done, GUARD))
    guard.cancel()


def test_signal_handler_runs_in_the_loop(loop):
    done = loop.create_future()
    seen = []

    def handler(*args):
        seen.append((args, threading.current_thread() is threading.main_thread(),
                     asyncio.get_running_loop() is loop))
        done.set_result(None)

    loop.add_signal_handler(signal.SIGUSR1, handler, "a", 1)
    send_and_wait(loop, signal.SIGUSR1, done)
    assert seen == [(("a", 1), True, True)]


def test_signal_handler_runs_in_the_context_of_add_signal_handler(loop):
    done = loop.create_future()

    def register():
        VAR.set("at registration")
        loop.add_signal_handler(signal.SIGUSR1, lambda: done.set_result(VAR.get()))

    contextvars.copy_context().run(register)
    send_and_wait(loop, signal.SIGUSR1, done)
    assert done.result() == "at registration"


def test_replacing_a_signal_handler(loop):
    done = loop.create_future()
    calls = []
    loop.add_signal_handler(signal.SIGUSR1, calls.append, "old")
    loop.add_signal_handler(signal.SIGUSR1, lambda: (calls.append("new"), done.set_result(None)))
    send_and_wait(loop, signal.SIGUSR1, done)
    assert calls == ["new"]


def test_signal_handler_exception_goes_to_the_exception_handler(loop):
    done = loop.create_future()
    contexts = []
    loop.set_exception_handler(lambda _loop, ctx: (contexts.append(ctx), done.set_result(None)))

    def fail():
        raise ValueError("in a signal handler")

    loop.add_signal_handler(signal.SIGUSR1, fail)
    send_and_wait(loop, signal.SIGUSR1, done)
    [ctx] = contexts
    assert str(ctx["exception"]) == "in a signal handler"
    assert ctx["message"].startswith("Exception in callback")


def test_remove_signal_handler(loop):
    loop.add_signal_handler(signal.SIGUSR1, noop)
    assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_removing_the_sigint_handler_restores_keyboard_interrupt(loop):
    loop.add_signal_handler(signal.SIGINT, noop)
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_close_removes_signal_handlers(loop):
    loop.add_signal_handler(signal.SIGUSR1, noop)
    loop.add_signal_handler(signal.SIGUSR2, noop)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1


# --- refused -------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_uncatchable_signals(loop, sig):
    with pytest.raises(RuntimeError, match=f"^sig {int(sig)} cannot be caught$"):
        loop.add_signal_handler(sig, noop)


@pytest.mark.parametrize("sig", [0, -1, signal.NSIG, 1000])
def test_invalid_signal_numbers(loop, sig):
    with pytest.raises(ValueError, match=f"^invalid signal number {sig}$"):
        loop.add_signal_handler(sig, noop)
    with pytest.raises(ValueError, match=f"^invalid signal number {sig}$"):
        loop.remove_signal_handler(sig)


@pytest.mark.parametrize("sig", ["SIGUSR1", 10.0, None])
def test_signal_must_be_an_int(loop, sig):
    with pytest.raises(TypeError, match="^sig must be an int, not "):
        loop.add_signal_handler(sig, noop)
    with pytest.raises(TypeError, match="^sig must be an int, not "):
        loop.remove_signal_handler(sig)


async def coroutine_function():
    pass


def test_coroutines_are_refused_as_signal_handlers(loop):
    coro = coroutine_function()
    try:
        for bad in (coroutine_function, coro):
            with pytest.raises(TypeError, match=r"coroutines cannot be used with add_signal_handler\(\)"):
                loop.add_signal_handler(signal.SIGUSR1, bad)
    finally:
        coro.close()
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_add_signal_handler_from_another_thread(loop):
    errors = []

    def register():
        try:
            loop.add_signal_handler(signal.SIGUSR1, noop)
        except RuntimeError as e:
            errors.append(e)

    thread = threading.Thread(target=register)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.add_signal_handler(signal.SIGUSR1, noop)
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


# --- Ctrl-C: the same outcome on both loops ------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys

    async def background():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            print("background cancelled", flush=True)
            raise

    async def main():
        asyncio.ensure_future(background())
        try:
            print("ready", flush=True)
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            print("main cancelled", flush=True)
            raise
        finally:
            print("main finally", flush=True)

    if sys.argv[1] == "ferroloop.run":
        import ferroloop
        ferroloop.run(main())
    elif sys.argv[1] == "run_forever":
        import ferroloop
        loop = ferroloop.new_event_loop() if sys.argv[2] == "ferroloop" else asyncio.SelectorEventLoop()
        if sys.argv[3:] == ["busy"]:
            # After "ready" (written by C code, so no Python runs after it), the
            # loop's next iteration drops a million cancelled timers before it
            # blocks: Ctrl-C lands while the loop works, not while it waits.
            handles = [loop.call_later(3600, print) for _ in range(1_000_000)]

            def cancel_all():
                for handle in handles:
                    handle.cancel()
                handles.clear()

            loop.call_soon(cancel_all)
        loop.call_soon(os.write, 1, b"ready\\n")
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            print("KeyboardInterrupt out of run_forever", flush=True)
        finally:
            loop.close()
    else:
        asyncio.run(main())
    """
)


def wait_until_blocked(pid):
    """Waits until the process's main thread sleeps in epoll_wait (Linux)."""
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/wchan") as f:
            if f.read() == "do_epoll_wait":
                return
        time.sleep(0.005)


def interrupt(tmp_path, *argv, blocked=True):
    """Runs the child, sends SIGINT once it is ready (and, if `blocked`, once
    its loop waits); returns (returncode, stdout, last line of stderr)."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE")}
    args = [a if a != "child.py" else str(script) for a in argv]
    with subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as child:
        try:
            assert child.stdout.readline() == "ready\n"
            if blocked:
                wait_until_blocked(child.pid)
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=GUARD)
        finally:
            child.kill()
    lines = err.strip().splitlines()
    return child.returncode, out, lines[-1] if lines else ""


CTRL_C_COMMANDS = {
    # loop -> (command line, what asyncio.run-like code prints)
    "ferroloop.run": ("child.py", "ferroloop.run"),
    "python -m ferroloop": ("-m", "ferroloop", "child.py", "asyncio.run"),
}


@pytest.mark.parametrize("how", sorted(CTRL_C_COMMANDS))
def test_ctrl_c_cancels_tasks_like_asyncio_run(tmp_path, how):
    expected = interrupt(tmp_path, "child.py", "asyncio.run")
    got = interrupt(tmp_path, *CTRL_C_COMMANDS[how])
    assert expected == (
        -signal.SIGINT,
        "main cancelled\nmain finally\nbackground cancelled\n",
        "KeyboardInterrupt",
    )
    assert got == expected


def test_ctrl_c_raises_keyboard_interrupt_out_of_run_forever(tmp_path, loop_name):
    got = interrupt(tmp_path, "child.py", "run_forever", loop_name)
    assert got == (0, "KeyboardInterrupt out of run_forever\n", "")


def test_ctrl_c_while_the_loop_is_busy_between_callbacks(tmp_path, loop_name):
    got = interrupt(tmp_path, "child.py", "run_forever", loop_name, "busy", blocked=False)
    assert got == (0, "KeyboardInterrupt out of run_forever\n", "")


def test_python_m_ferroloop_installs_no_signal_handlers(tmp_path):
    script = tmp_path / "handlers.py"
    script.write_text("import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    result = python("-m", "ferroloop", str(script))
    assert (result.returncode, result.stdout) == (0, "True\n"), result.stderr
