"""Child processes on both loops: asyncio.create_subprocess_exec/shell and
loop.subprocess_exec/subprocess_shell with a recording SubprocessProtocol.

Covers the stdio arguments (PIPE, DEVNULL, STDOUT, file objects, raw fds),
the Popen options asyncio passes through (cwd, env, start_new_session,
process_group, pass_fds, close_fds and the loop's own descriptors, umask,
preexec_fn), spawn failures, asyncio's argument checks, the subprocess
transport's API (pid, returncode, pipe transports, signals, close, an
unclosed transport's ResourceWarning), the order of the protocol callbacks,
cancellation while spawning, large output, many children at once, exit
statuses, a child closing its stdout early, wait() and communicate(), stdin
after the child exited, a child outliving its loop, ferroloop's fallback
without pidfds, a loop in a non-main thread, other code's children (never
reaped by the loop) and a child watcher installed on the policy (3.11).

No descriptor may outlive a test, and no child either: after each test this
process must have no child at all, exited or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest

import ferroloop._loop
from _net import fds_added, no_fd_leak, open_fds, outcome, skip_asyncio_bug  # noqa: F401
from conftest import run

pytestmark = pytest.mark.usefixtures("no_fd_leak")

TIMEOUT = 30
PIPE, DEVNULL, STDOUT = subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT


def _children() -> list[int]:
    """Pids whose parent is this process (running or zombie)."""
    me, out = str(os.getpid()), []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except (OSError, ValueError):
            continue
        if fields[1] == me:
            out.append(int(name))
    return out


def child_state(pid: int = -1, timeout: float = 2.0) -> str:
    """Polls until child `pid` (-1: every child) is gone, reaped by whoever
    waits for it: 'reaped', or else 'running' / 'zombie' after `timeout`.
    It uses waitid(WNOWAIT), so it never reaps anything itself."""
    which = (os.P_ALL, 0) if pid == -1 else (os.P_PID, pid)
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = os.waitid(*which, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return "reaped"
        if time.monotonic() > deadline:
            return "running" if info is None else "zombie"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def no_child_left():
    """After the test and the loop's teardown, `os.waitpid(-1, os.WNOHANG)`
    would raise ChildProcessError: this process has no child left at all."""
    yield
    if child_state() != "reaped":
        left = _children()
        for pid in left:  # so that they do not spill into the next test
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        pytest.fail(f"child processes left behind (running or zombie): {left}")


class Recording(asyncio.SubprocessProtocol):
    """Records each SubprocessProtocol callback; consecutive
    pipe_data_received calls for one fd are merged into one event."""

    def __init__(self, loop):
        self.events: list[tuple] = []
        self.transport = None
        self.data = {1: bytearray(), 2: bytearray()}
        self.exited = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append(("connection_made",))

    def pipe_data_received(self, fd, data):
        assert isinstance(data, bytes) and data
        self.data[fd] += data
        if self.events[-1] != ("pipe_data_received", fd):
            self.events.append(("pipe_data_received", fd))

    def pipe_connection_lost(self, fd, exc):
        self.events.append(("pipe_connection_lost", fd, exc))

    def process_exited(self):
        self.events.append(("process_exited",))
        self.exited.set_result(self.transport.get_returncode())

    def connection_lost(self, exc):
        self.events.append(("connection_lost", exc))
        self.lost.set_result(exc)


async def exec_out(*args, **kwargs):
    """(stdout, stderr, returncode) of a child run with create_subprocess_exec."""
    kwargs.setdefault("stdout", PIPE)
    proc = await asyncio.create_subprocess_exec(*args, **kwargs)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    return out, err, proc.returncode


async def settle(n=20):
    for _ in range(n):
        await asyncio.sleep(0)


# --- stdio and Popen options ---------------------------------------------------


def test_pipes_for_stdin_stdout_and_stderr(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "cat; echo err >&2; exit 3", stdin=PIPE, stdout=PIPE, stderr=PIPE
        )
        assert all(isinstance(s, asyncio.StreamWriter if s is proc.stdin else asyncio.StreamReader)
                   for s in (proc.stdin, proc.stdout, proc.stderr))  # fmt: skip
        assert await proc.communicate(b"in put") == (b"in put", b"err\n")
        assert proc.returncode == 3

    run(loop, main())


def test_devnull_and_stderr_to_stdout(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec("cat", stdin=DEVNULL, stdout=PIPE, stderr=DEVNULL)
        assert proc.stdin is None and proc.stderr is None
        assert await proc.communicate() == (b"", None)
        proc = await asyncio.create_subprocess_exec("sh", "-c", "echo out", stdout=DEVNULL)
        assert proc.stdout is None
        assert await proc.communicate() == (None, None) and proc.returncode == 0
        # stderr=STDOUT merges both streams into the stdout pipe, in order
        out, err, code = await exec_out("sh", "-c", "echo a; echo b >&2; echo c >&2; echo d", stderr=STDOUT)
        assert (out, err, code) == (b"a\nb\nc\nd\n", None, 0)

    run(loop, main())


def test_file_objects_and_raw_fds(loop, tmp_path):
    (tmp_path / "in").write_bytes(b"from a file")

    async def main():
        with open(tmp_path / "in", "rb") as fin, open(tmp_path / "out", "wb") as fout:
            fd = os.open(tmp_path / "err", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                proc = await asyncio.create_subprocess_exec(
                    "sh", "-c", "cat; echo to-err >&2", stdin=fin, stdout=fout, stderr=fd
                )
            finally:
                os.close(fd)
            assert (proc.stdin, proc.stdout, proc.stderr) == (None, None, None)
            assert await proc.wait() == 0
        assert (tmp_path / "out").read_bytes() == b"from a file"
        assert (tmp_path / "err").read_bytes() == b"to-err\n"

    run(loop, main())


def test_cwd_and_env(loop, tmp_path):
    env = {"PATH": os.environ["PATH"], "FERRO_VAR": "set here"}

    async def main():
        proc = await asyncio.create_subprocess_shell(
            'pwd; echo "$FERRO_VAR"; echo "${HOME-unset}"', stdout=PIPE, cwd=tmp_path, env=env
        )
        out, _ = await proc.communicate()
        assert out.decode() == f"{os.path.realpath(tmp_path)}\nset here\nunset\n"

    run(loop, main())


def _stat_ids(out: bytes) -> tuple[int, int, int]:
    """(pid, pgrp, session) from /proc/<pid>/stat."""
    fields = out.decode().rpartition(")")[2].split()
    pid = int(out.split()[0])
    return pid, int(fields[2]), int(fields[3])


def test_start_new_session_and_process_group(loop):
    async def main():
        cmd = ("cat", "/proc/self/stat")
        pid, pgrp, sid = _stat_ids((await exec_out(*cmd))[0])
        assert (pgrp, sid) == (os.getpgrp(), os.getsid(0))
        pid, pgrp, sid = _stat_ids((await exec_out(*cmd, start_new_session=True))[0])
        assert sid == pgrp == pid != os.getsid(0)
        pid, pgrp, sid = _stat_ids((await exec_out(*cmd, process_group=0))[0])
        assert pgrp == pid != os.getpgrp()
        assert sid == os.getsid(0)

    run(loop, main())


def test_pass_fds_and_close_fds(loop):
    r, w = os.pipe()
    os.set_inheritable(w, True)

    async def main():
        script = f"echo to-fd > /proc/self/fd/{w}"
        # close_fds=True (the default) closes an inheritable fd ...
        assert (await exec_out("sh", "-c", script, stderr=DEVNULL))[2] != 0
        # ... unless it is passed, or close_fds=False
        assert (await exec_out("sh", "-c", script, pass_fds=(w,)))[2] == 0
        assert (await exec_out("sh", "-c", script, close_fds=False))[2] == 0

    try:
        run(loop, main())
        os.close(w)
        w = -1
        with os.fdopen(r, "rb") as f:
            assert f.read() == b"to-fd\nto-fd\n"
    finally:
        if w != -1:
            os.close(w)


def test_loop_descriptors_are_not_inherited(loop_factory):
    # Even with close_fds=False a child sees none of the loop's descriptors
    # (selector, self-pipe, pidfds, other children's pipes): only those that
    # were inheritable before the loop existed.
    inheritable = {fd for fd in open_fds() if os.get_inheritable(fd)}
    loop = loop_factory()
    errors: list = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))

    async def main():
        other = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        try:
            theirs = [fd for fd in open_fds() if fd not in inheritable]
            assert len(theirs) >= 2  # at least the other child's pipes
            check = "; ".join(f"[ -e /proc/self/fd/{fd} ] && echo {fd}" for fd in theirs)
            return (await exec_out("sh", "-c", check + "; true", close_fds=False))[0]
        finally:
            assert await other.communicate(b"x") == (b"x", None)

    try:
        assert loop.run_until_complete(main()) == b""
    finally:
        loop.close()
    assert errors == []


def test_umask_and_preexec_fn(loop, tmp_path):
    async def main():
        assert (await exec_out("sh", "-c", "umask", umask=0o027))[0] == b"0027\n"
        old = os.umask(0o022)
        os.umask(old)
        assert (await exec_out("sh", "-c", "umask"))[0] == b"%04o\n" % old
        chdir = lambda: os.chdir(tmp_path)  # noqa: E731 -- runs in the child
        assert (await exec_out("pwd", preexec_fn=chdir))[0].decode() == f"{os.path.realpath(tmp_path)}\n"
        assert os.getcwd() != str(tmp_path)

    run(loop, main())


def test_a_slow_preexec_fn_does_not_stall_the_loop(loop, loop_name):
    # The child's preexec_fn waits for a byte that only another task on
    # this loop sends: if spawning blocked the loop, it would wait forever.
    skip_asyncio_bug(loop_name, True, "Popen runs preexec_fn with the loop blocked")
    r, w = os.pipe()

    def wait_for_parent():  # runs in the child
        os.read(r, 1)

    async def release():
        await asyncio.sleep(0)
        os.write(w, b"x")

    async def main():
        releaser = asyncio.ensure_future(release())
        proc = await asyncio.wait_for(
            asyncio.create_subprocess_exec("true", preexec_fn=wait_for_parent), TIMEOUT
        )
        await releaser
        return await proc.wait()

    try:
        assert run(loop, main()) == 0
    finally:
        os.close(r)
        os.close(w)


def test_cancelled_while_preexec_fn_runs(loop, loop_name):
    # The spawn is abandoned while the child is still in preexec_fn: the
    # child must not be left running, unreaped or holding pipes.
    skip_asyncio_bug(loop_name, True, "Popen runs preexec_fn with the loop blocked: no cancelling it")
    r, w = os.pipe()

    def wait_for_parent():  # runs in the child
        os.read(r, 1)

    async def main():
        spawn = asyncio.ensure_future(
            asyncio.create_subprocess_exec("sleep", "30", stdout=PIPE, preexec_fn=wait_for_parent)
        )
        await asyncio.sleep(0.05)
        spawn.cancel()
        os.write(w, b"x")
        with pytest.raises(asyncio.CancelledError):
            await spawn
        for _ in range(200):  # the abandoned child is killed and reaped
            if child_state(timeout=0) == "reaped":
                break
            await asyncio.sleep(0.01)

    try:
        run(loop, main())
    finally:
        os.close(r)
        os.close(w)
    assert child_state() == "reaped"


def _boom():
    raise RuntimeError("in the child")


@pytest.mark.parametrize("args,kwargs,error", [
    (("true",), {"preexec_fn": _boom}, subprocess.SubprocessError),
    (("/nonexistent/program",), {}, FileNotFoundError),
    (("true",), {"cwd": "/nonexistent/dir"}, FileNotFoundError),
], ids=["preexec_fn", "program", "cwd"])  # fmt: skip
def test_spawn_failures_are_asyncios(loop, loop_factory, args, kwargs, error):
    def spawn():
        return asyncio.create_subprocess_exec(*args, stdout=PIPE, **kwargs)

    expected = outcome(asyncio.SelectorEventLoop, spawn)
    assert expected[0] is error
    assert outcome(loop_factory, spawn) == expected
    assert run(loop, exec_out("true"))[2] == 0  # the loop is still usable


# --- asyncio's argument checks --------------------------------------------------

EXEC_ARGS = {"shell": True, "text": True, "universal_newlines": True,
             "encoding": "utf-8", "errors": "strict", "bufsize": 1}  # fmt: skip
SHELL_ARGS = {**EXEC_ARGS, "shell": False, "cmd": ["true"]}
BAD_ARGS = [
    *(("subprocess_exec", k, v) for k, v in EXEC_ARGS.items()),
    *(("subprocess_shell", k, v) for k, v in SHELL_ARGS.items()),
    ("subprocess_shell", "cmd", 42), ("subprocess_exec", "bufsize", -1),
    ("create_subprocess_exec", "text", True), ("create_subprocess_shell", "bufsize", 1),
]  # fmt: skip


@pytest.mark.parametrize("how,key,value", BAD_ARGS, ids=[f"{h}-{k}={v}" for h, k, v in BAD_ARGS])
def test_argument_checks_are_asyncios(loop_factory, how, key, value):
    async def call():
        kw = {key: value} if key != "cmd" else {}
        cmd = value if key == "cmd" else "true"
        if how.startswith("create"):
            return await getattr(asyncio, how)(cmd, **kw)
        return await getattr(asyncio.get_running_loop(), how)(asyncio.SubprocessProtocol, cmd, **kw)

    expected = outcome(asyncio.SelectorEventLoop, call)
    assert expected[0] is ValueError and expected[1].startswith(key if key != "cmd" else "cmd must be")
    assert outcome(loop_factory, call) == expected


# --- the subprocess transport ------------------------------------------------


def test_transport_api(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Recording(loop), "sh", "-c", 'read x; echo "got $x"; exit 4', stderr=DEVNULL
        )
        assert proto.transport is transport
        assert isinstance(transport, asyncio.SubprocessTransport)
        assert transport.get_pid() == transport.get_extra_info("subprocess").pid > 0
        assert transport.get_returncode() is None  # blocked in `read`
        assert not transport.is_closing()
        assert isinstance(transport.get_pipe_transport(0), asyncio.WriteTransport)
        assert isinstance(transport.get_pipe_transport(1), asyncio.ReadTransport)
        assert transport.get_pipe_transport(2) is None  # DEVNULL: no pipe
        assert transport.get_pipe_transport(3) is None
        transport.get_pipe_transport(0).write(b"hi\n")
        assert await asyncio.wait_for(proto.exited, TIMEOUT) == 4
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert bytes(proto.data[1]) == b"got hi\n"
        assert transport.get_returncode() == 4
        # Once connection_lost ran, the Popen object is gone: asyncio raises
        # ProcessLookupError for every signal method.
        for method in (transport.kill, transport.terminate, lambda: transport.send_signal(signal.SIGTERM)):
            with pytest.raises(ProcessLookupError):
                method()
        transport.close()
        assert transport.is_closing()

    run(loop, main())


@pytest.mark.parametrize("how,code", [
    ("send_signal", -signal.SIGUSR1), ("terminate", -signal.SIGTERM), ("kill", -signal.SIGKILL),
])  # fmt: skip
def test_signals_to_a_child(loop, how, code):
    async def main():
        # through the transport
        transport, proto = await loop.subprocess_exec(
            lambda: Recording(loop), "sleep", "30", stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
        )
        args = (signal.SIGUSR1,) if how == "send_signal" else ()
        getattr(transport, how)(*args)
        assert await asyncio.wait_for(proto.exited, TIMEOUT) == code
        await asyncio.wait_for(proto.lost, TIMEOUT)
        transport.close()
        # through asyncio.subprocess.Process
        proc = await asyncio.create_subprocess_exec("sleep", "30")
        getattr(proc, how)(*args)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == code == proc.returncode

    run(loop, main())


def test_close_kills_a_running_child(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(lambda: Recording(loop), "sleep", "30")
        transport.close()
        assert transport.is_closing()
        assert await asyncio.wait_for(proto.exited, TIMEOUT) == -signal.SIGKILL
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert transport.get_returncode() == -signal.SIGKILL
        lost = sorted(e[1:] for e in proto.events if e[0] == "pipe_connection_lost")
        assert lost == [(0, None), (1, None), (2, None)]
        assert proto.events[-1] == ("connection_lost", None)

    run(loop, main())


def test_cancelled_while_connecting_the_pipes(loop):
    async def main():
        spawn = asyncio.ensure_future(asyncio.create_subprocess_exec("sleep", "30", stdin=PIPE, stdout=PIPE))
        await asyncio.sleep(0)  # the child is started, its pipes not connected yet
        assert len(_children()) == 1 and not spawn.done()
        spawn.cancel()
        with pytest.raises(asyncio.CancelledError):
            await spawn  # asyncio kills the child and waits for it first
        assert child_state(timeout=0) == "reaped"

    run(loop, main())


def test_unclosed_transport_warns_when_collected(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Recording(loop), "true", stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
        )
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        assert not transport.is_closing()
        proto.transport = None
        with pytest.warns(ResourceWarning, match="^unclosed transport <"):
            del transport
            gc.collect()

    run(loop, main())


# --- protocol callback order --------------------------------------------------


def test_callback_order_when_the_pipes_close_before_the_exit(loop):
    gate_r, gate_w = os.pipe()
    # dash redirects only fds 0-9: the gate is reopened through /proc.
    script = f"echo out; echo err >&2; exec 0<&- 1>&- 2>&-; read x < /proc/self/fd/{gate_r}; exit 5"

    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Recording(loop), "sh", "-c", script, pass_fds=(gate_r,)
        )
        os.close(gate_r)
        for _ in range(TIMEOUT * 100):
            if sum(e[0] == "pipe_connection_lost" for e in proto.events) == 3:
                break
            await asyncio.sleep(0.01)
        await settle()
        assert ("process_exited",) not in proto.events  # the child waits on the gate
        os.close(gate_w)
        assert await asyncio.wait_for(proto.exited, TIMEOUT) == 5
        await asyncio.wait_for(proto.lost, TIMEOUT)
        transport.close()
        ev = proto.events
        assert ev[0] == ("connection_made",)
        assert ev[-2:] == [("process_exited",), ("connection_lost", None)]
        assert sorted(ev[1:-2]) == [
            ("pipe_connection_lost", 0, None), ("pipe_connection_lost", 1, None),
            ("pipe_connection_lost", 2, None), ("pipe_data_received", 1), ("pipe_data_received", 2),
        ]  # fmt: skip
        for fd in (1, 2):
            assert ev.index(("pipe_data_received", fd)) < ev.index(("pipe_connection_lost", fd, None))
        assert proto.data == {1: b"out\n", 2: b"err\n"}

    run(loop, main())


def test_callback_order_when_the_exit_comes_before_the_pipes_close(loop):
    gate_r, gate_w = os.pipe()

    async def main():
        # A grandchild keeps stdout and stderr open until the gate reaches EOF.
        transport, proto = await loop.subprocess_shell(
            lambda: Recording(loop), f"cat < /proc/self/fd/{gate_r} & exit 7",
            stdin=DEVNULL, pass_fds=(gate_r,),
        )
        os.close(gate_r)
        assert await asyncio.wait_for(proto.exited, TIMEOUT) == 7
        await settle()
        assert proto.events == [("connection_made",), ("process_exited",)]
        os.close(gate_w)
        assert await asyncio.wait_for(proto.lost, TIMEOUT) is None
        transport.close()
        assert proto.events[:2] == [("connection_made",), ("process_exited",)]
        lost = [("pipe_connection_lost", 1, None), ("pipe_connection_lost", 2, None)]
        assert sorted(proto.events[2:4]) == lost
        assert proto.events[4:] == [("connection_lost", None)]

    run(loop, main())


# --- volume ------------------------------------------------------------------------


def test_20_mib_through_cat(loop):
    data = bytes(range(256)) * (20 * 4096) + b"tail"

    async def main():
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        out, err = await asyncio.wait_for(proc.communicate(data), TIMEOUT)
        assert len(out) == len(data) and out == data and err is None
        assert proc.returncode == 0
        # a small StreamReader limit pauses and resumes the stdout pipe often
        proc = await asyncio.create_subprocess_exec("head", "-c3000000", "/dev/zero", stdout=PIPE, limit=4096)
        assert await asyncio.wait_for(proc.stdout.read(), TIMEOUT) == bytes(3_000_000)
        assert await proc.wait() == 0

    run(loop, main())


def test_100_concurrent_children(loop):
    async def main():
        await exec_out("true")  # the loop's own descriptors now exist
        before = open_fds()
        spawn = asyncio.create_subprocess_exec
        procs = [await spawn("sh", "-c", f"exit {n}", stdout=PIPE) for n in range(100)]
        assert len({p.pid for p in procs}) == 100
        codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), TIMEOUT)
        assert codes == list(range(100))
        await settle()
        # Nothing kept per child once it is waited for.
        assert fds_added(before, open_fds()) == []

    run(loop, main())


# --- exit statuses, wait and communicate ---------------------------------------------


def test_exit_codes_and_signals(loop):
    async def main():
        cases = {"exit 3": 3, "exit 0": 0, "exit 255": 255, "kill -TERM $$": -15, "kill -KILL $$": -9}
        for script, code in cases.items():
            proc = await asyncio.create_subprocess_shell(script)
            assert await asyncio.wait_for(proc.wait(), TIMEOUT) == code, script
        assert await (await asyncio.create_subprocess_shell(b"exit 2")).wait() == 2
        assert (await exec_out(pathlib.Path("/bin/sh"), "-c", "exit 4"))[2] == 4

    run(loop, main())


def test_child_closing_stdout_early(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "echo early; exec 1>&-; read x; exit 5", stdin=PIPE, stdout=PIPE
        )
        assert await asyncio.wait_for(proc.stdout.read(), TIMEOUT) == b"early\n"
        assert proc.stdout.at_eof()
        await settle()
        assert proc.returncode is None  # still blocked in `read`
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 5

    run(loop, main())


def test_wait_twice_and_from_two_tasks(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec("sh", "-c", "read x; exit 6", stdin=PIPE)
        waiters = [asyncio.ensure_future(proc.wait()) for _ in range(2)]
        await settle()
        assert not any(w.done() for w in waiters)
        proc.stdin.close()
        assert await asyncio.wait_for(asyncio.gather(*waiters), TIMEOUT) == [6, 6]
        assert await proc.wait() == 6 and await proc.wait() == 6
        assert await proc.communicate() == (None, None)

    run(loop, main())


def test_stdin_after_the_child_exited(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec("true", stdin=PIPE)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
        proc.stdin.write(b"too late")  # dropped, as on a closed pipe transport
        assert proc.stdin.is_closing()
        with pytest.raises(ConnectionResetError, match="^Connection lost$"):
            await proc.stdin.drain()
        # A child that closes its stdin without reading it: communicate()
        # ignores the BrokenPipeError / ConnectionResetError.
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "exec 0<&-; echo closed", stdin=PIPE, stdout=PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(b"x" * (1 << 20)), TIMEOUT)
        assert (out, err, proc.returncode) == (b"closed\n", None, 0)
        proc = await asyncio.create_subprocess_exec("true", stdin=PIPE)
        await proc.wait()
        assert await proc.communicate(b"input") == (None, None)

    run(loop, main())


def test_child_outliving_its_loop_is_still_reaped(loop_factory, loop_name):
    skip_asyncio_bug(
        loop_name,
        sys.version_info >= (3, 12),
        "its default PidfdChildWatcher leaves a child that outlives its loop a zombie",
    )
    loop = loop_factory()

    async def main():
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol, "sleep", "30", stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
        )
        return transport

    # The Popen object never learns its returncode: when it is collected (as
    # the loop closes, or later) it warns "subprocess ... is still running",
    # on asyncio too.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        transport = run(loop, main())
        pid = transport.get_pid()
        loop.close()
        transport.close()  # kills the child, now that its loop is closed
        del transport
        # asyncio's child watcher reaps it all the same (and logs that the
        # loop handling it is closed).
        state = child_state(pid)
        if state != "reaped":
            os.waitpid(pid, 0)  # not to leave it to the next test
        for thread in threading.enumerate():  # asyncio's watcher threads
            if thread.name.startswith("waitpid-"):
                thread.join(TIMEOUT)
        del loop
        gc.collect()
    assert state == "reaped"


def test_without_pidfds_children_are_still_waited_for(loop, loop_name, monkeypatch):
    # ferroloop falls back to a thread per child when the kernel (or a
    # sandbox) refuses pidfd_open; on asyncio's loop this changes nothing.
    refused = []

    def no_pidfd(loop, pid, callback):
        refused.append(pid)
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(ferroloop._loop._ferroloop, "watch_child", no_pidfd)

    async def main():
        procs = [await asyncio.create_subprocess_exec("sh", "-c", f"exit {n}") for n in range(5)]
        codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), TIMEOUT)
        return codes, await exec_out("sh", "-c", "echo out; exit 3")

    assert run(loop, main()) == ([0, 1, 2, 3, 4], (b"out\n", None, 3))
    assert len(refused) == (6 if loop_name == "ferroloop" else 0)


# --- threads, other children, child watchers ------------------------------------------


def test_loop_in_a_non_main_thread(loop_factory):
    results: list = []

    def target():
        loop = loop_factory()
        errors: list = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        try:
            results.append(loop.run_until_complete(exec_out("sh", "-c", "echo in-thread; exit 9")))
        except BaseException as exc:  # reported by the main thread
            results.append(exc)
        finally:
            loop.close()
        results.append(errors)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert results == [(b"in-thread\n", None, 9), []]


def test_other_codes_children_are_not_reaped(loop):
    popen = subprocess.Popen(["sh", "-c", "exit 3"])
    # Wait until it is a zombie, without reaping it.
    os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)

    async def main():
        procs = [await asyncio.create_subprocess_exec("sh", "-c", f"exit {n}") for n in range(10)]
        return await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), TIMEOUT)

    try:
        assert run(loop, main()) == list(range(10))
        info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        assert info is not None and (info.si_pid, info.si_status) == (popen.pid, 3)
    finally:
        assert popen.wait() == 3


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="child watchers: 3.11 only here")
def test_installed_child_watcher_is_honoured(loop):
    class Watcher(asyncio.ThreadedChildWatcher):
        pids: list[int] = []

        def add_child_handler(self, pid, callback, *args):
            self.pids.append(pid)
            super().add_child_handler(pid, callback, *args)

    watcher = Watcher()
    asyncio.set_child_watcher(watcher)
    try:

        async def main():
            proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 4")
            return proc.pid, await asyncio.wait_for(proc.wait(), TIMEOUT)

        pid, code = run(loop, main())
        assert code == 4 and Watcher.pids == [pid]
    finally:
        asyncio.set_child_watcher(None)
