"""The README's recipes, run for real.

Each recipe lives in docs/recipes/ and appears verbatim in README.md
(`test_recipe_is_in_the_readme`), so the two cannot drift. Each test copies
the recipes it needs into a fresh directory and runs them in subprocesses
twice: on ferroloop exactly as written, and on asyncio's own loop as the
reference, the same text with the loop swapped (`SWAPS`: `--loop asyncio`,
`asyncio.new_event_loop`, `asyncio.run`, ...). Each run asserts the real
result (the HTTP body, the echoed message) and which loop produced it: the
apps answer with `type(asyncio.get_running_loop()).__module__`, which starts
with `ferroloop` on the first run and `asyncio` on the reference run.

Only the port changes from the text: a command takes it from the
environment (`UVICORN_PORT`, `GUNICORN_CMD_ARGS`), a Python recipe has its
literal port replaced by a free one. Servers listen on 127.0.0.1, are polled
on their port until they accept, and are always stopped (SIGINT to their
process group, then SIGKILL). Over TLS the certificates come from a trustme
CA, and the clients trust it through SSL_CERT_FILE, as a user's would.

A recipe whose library is not installed is skipped (requirements-dev.txt
installs them all).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "docs" / "recipes"
README = ROOT / "README.md"

# How the reference run differs from the recipe: asyncio's loop instead of
# ferroloop's, nothing else.
SWAPS = [
    ("python -m ferroloop ", "python "),
    ("ferroloop:new_event_loop", "asyncio"),  # uvicorn's own name for asyncio's loop
    ("ferroloop.new_event_loop", "asyncio.new_event_loop"),
    ("ferroloop.run(", "asyncio.run("),
    ("ferroloop.EventLoopPolicy()", "asyncio.DefaultEventLoopPolicy()"),
    ('startswith("ferroloop")', 'startswith("asyncio")'),
]

LOOPS = ["ferroloop", "asyncio"]
SERVER_START_TIMEOUT = 30  # seconds: a deadline for a broken server, not a measurement
RUN_TIMEOUT = 60

loop_param = pytest.mark.parametrize("loop", LOOPS)


def recipe_names() -> list[str]:
    return sorted(p.name for p in RECIPES.iterdir() if p.is_file())


# ---------------------------------------------------------------- the text


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_is_in_the_readme(name):
    text = (RECIPES / name).read_text()
    assert text.strip(), name
    assert text in README.read_text(), f"docs/recipes/{name} is not verbatim in README.md"


def test_every_recipe_is_run_here():
    """A recipe added to docs/recipes/ without a test here fails."""
    source = Path(__file__).read_text()
    unrun = [name for name in recipe_names() if source.count(f'"{name}"') < 1]
    assert len(recipe_names()) >= 20 and not unrun, unrun


# ---------------------------------------------------------------- helpers


def loop_module_prefix(loop: str) -> str:
    return "ferroloop." if loop == "ferroloop" else "asyncio."


def reference(text: str, python: bool) -> tuple[str, int]:
    """The recipe with asyncio's loop in place of ferroloop's."""
    swaps = 0
    for old, new in SWAPS:
        swaps += text.count(old)
        text = text.replace(old, new)
    if python and swaps and not re.search(r"^import asyncio$", text, re.M):
        text = "import asyncio\n" + text
    return text, swaps


def materialize(dest: Path, loop: str, *names: str) -> None:
    """Copies the recipes into `dest`, swapped to asyncio's loop for the reference run."""
    swaps = 0
    for name in names:
        text = (RECIPES / name).read_text()
        if loop == "asyncio":
            text, n = reference(text, name.endswith(".py"))
            swaps += n
        (dest / name).write_text(text)
    if loop == "asyncio":
        assert swaps, f"the reference run of {names} would be the ferroloop run"


def commands(name: str) -> list[str]:
    return [line for line in (RECIPES / name).read_text().splitlines() if line.strip()]


def argv_of(line: str) -> list[str]:
    """A command line as the shell would split it; `python` is this interpreter."""
    argv = shlex.split(line)
    if argv[0] == "python":
        argv[0] = sys.executable
    else:
        tool = Path(sys.executable).parent / argv[0]
        if not tool.exists():
            pytest.skip(f"{argv[0]} is not installed beside {sys.executable}")
        argv[0] = str(tool)
    return argv


def command(name: str, loop: str, index: int) -> list[str]:
    """Line `index` of the command recipe `name`, for `loop`."""
    line = commands(name)[index]
    if loop == "asyncio":
        line, swaps = reference(line, python=False)
        assert swaps or name == "gunicorn.sh", line  # gunicorn's loop is in its worker class
    return argv_of(line)


def set_port(path: Path, literal: str, port: int) -> None:
    text = path.read_text()
    assert text.count(literal) == 1, (path.name, literal)
    path.write_text(text.replace(literal, literal.replace(re.search(r"\d+", literal)[0], str(port))))


def env(**extra: str) -> dict[str, str]:
    out = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTEST_ADDOPTS", "SSL_CERT_FILE", "SSL_CERT_DIR")
    }
    out["PATH"] = str(Path(sys.executable).parent) + os.pathsep + out.get("PATH", "")
    out["PYTHONUNBUFFERED"] = "1"
    out.update(extra)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv: list[str], cwd: Path, **extra_env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=cwd, env=env(**extra_env), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, f"{argv} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


class Server:
    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc = proc
        self.log_path = log

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serving(
    argv: list[str], cwd: Path, port: int, workers: int = 0, stop_signal: int = signal.SIGINT, **extra_env: str
):
    """Runs a server in its own process group until the block ends.

    Ready when its port accepts and, with `workers`, when that many workers
    have logged uvicorn's "Application startup complete" (a worker still
    booting when the server is stopped can miss the signal). Stopped with
    `stop_signal`: Ctrl-C's SIGINT unless the server wants another."""
    log = cwd / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env(**extra_env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(proc, log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{argv} exited {proc.returncode} before listening:\n{server.log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                if server.log.count("Application startup complete") >= workers:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{argv} was not ready on {port}:\n{server.log}")
            time.sleep(0.05)
        yield server
    finally:
        stop(proc, stop_signal)


def stop(proc: subprocess.Popen, stop_signal: int) -> None:
    """`stop_signal` to the server (which passes it on to its workers), then
    SIGKILL to its whole process group."""
    if proc.poll() is None:
        proc.send_signal(stop_signal)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    # Workers the server left behind, if any.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def workers_of(argv: list[str]) -> int:
    return int(argv[argv.index("--workers") + 1]) if "--workers" in argv else 0


def http_get(port: int, tls: ssl.SSLContext | None = None) -> tuple[int, str]:
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=tls)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """ca.pem, cert.pem and key.pem for 127.0.0.1 from a trustme CA; a client context trusting it."""
    trustme = pytest.importorskip("trustme")
    where = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(where / "ca.pem"))
    cert.private_key_pem.write_to_path(str(where / "key.pem"))
    for i, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(str(where / "cert.pem"), append=i > 0)
    client = ssl.create_default_context(cafile=str(where / "ca.pem"))
    return where, client


@pytest.fixture
def workdir(tmp_path, certs):
    """A fresh directory holding the certificates, where a test lays its recipes."""
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_bytes((certs[0] / name).read_bytes())
    return tmp_path


@pytest.fixture
def client_tls(certs):
    return certs[1]


def assert_hello(body: str, loop: str) -> None:
    assert re.fullmatch(rf"Hello from {re.escape(loop_module_prefix(loop))}\w+(\.\w+)*\n", body), body


# ---------------------------------------------------------------- quick start


@loop_param
def test_quickstart(workdir, loop):
    materialize(workdir, loop, "hello.py")
    out = run([sys.executable, "hello.py"], workdir).stdout.splitlines()
    expected = "<class 'ferroloop._loop.Loop'>" if loop == "ferroloop" else "<class 'asyncio."
    assert len(out) == (3 if sys.version_info >= (3, 12) else 2), out
    assert all(line.startswith(expected) for line in out), out


@loop_param
@pytest.mark.parametrize("line", range(3), ids=["script", "-m", "-c"])
def test_python_m_ferroloop(workdir, loop, line):
    materialize(workdir, loop, "script.py", "run_script.sh")
    done = run(command("run_script.sh", loop, line), workdir)
    assert done.stdout.startswith(f"running on <class '{loop_module_prefix(loop)}"), done.stdout
    assert done.stdout.count("\n") == 1
    assert "did not run on ferroloop" not in done.stderr


# ---------------------------------------------------------------- uvicorn


@loop_param
@pytest.mark.parametrize("line", range(3), ids=["plain", "tls", "workers"])
def test_uvicorn_cli(workdir, client_tls, loop, line):
    pytest.importorskip("uvicorn")
    materialize(workdir, loop, "app.py", "uvicorn.sh")
    argv = command("uvicorn.sh", loop, line)
    tls = client_tls if "--ssl-certfile" in argv else None
    port = free_port()
    workers = workers_of(argv)
    with serving(argv, workdir, port, workers, UVICORN_PORT=str(port)):
        # With --workers, each request may reach another worker: all must be on the loop.
        answers = [http_get(port, tls) for _ in range(2 * workers or 1)]
    for status, body in answers:
        assert status == 200
        assert_hello(body, loop)


@loop_param
def test_uvicorn_run(workdir, loop):
    pytest.importorskip("uvicorn")
    materialize(workdir, loop, "app.py", "uvicorn_run.py")
    port = free_port()
    set_port(workdir / "uvicorn_run.py", "port=8000", port)
    with serving([sys.executable, "uvicorn_run.py"], workdir, port):
        status, body = http_get(port)
    assert status == 200
    assert_hello(body, loop)


def test_uvicorn_under_python_m_ferroloop_is_not_on_ferroloop(workdir):
    """The README's warning: uvicorn's default `--loop auto` makes its own loop."""
    pytest.importorskip("uvicorn")
    materialize(workdir, "ferroloop", "app.py")
    port = free_port()
    argv = [sys.executable, "-m", "ferroloop", "-m", "uvicorn", "app:app"]
    with serving(argv, workdir, port, UVICORN_PORT=str(port)) as server:
        status, body = http_get(port)
    assert status == 200 and body.startswith("Hello from ")
    assert not body.startswith("Hello from ferroloop"), body
    assert "did not run on ferroloop" in server.log


# ---------------------------------------------------------------- gunicorn


@loop_param
@pytest.mark.parametrize("line", range(2), ids=["plain", "tls-workers"])
def test_gunicorn_uvicorn_worker(workdir, client_tls, loop, line):
    gunicorn = pytest.importorskip("gunicorn")
    pytest.importorskip("uvicorn_worker")
    import gunicorn.config
    materialize(workdir, loop, "app.py", "gunicorn_worker.py", "gunicorn.sh")
    argv = command("gunicorn.sh", loop, line)
    tls = client_tls if "--certfile" in argv else None
    port = free_port()
    workers = workers_of(argv) or 1
    settings = f"--bind 127.0.0.1:{port}"
    if any(s.name == "control_socket_disable" for s in gunicorn.config.KNOWN_SETTINGS):
        settings += " --no-control-socket"  # gunicorn 27's, in $HOME by default
    # SIGTERM: gunicorn's graceful stop. Its quick stop (SIGINT) sends the
    # workers SIGQUIT, which a uvicorn worker does not act on.
    with serving(argv, workdir, port, workers, signal.SIGTERM, GUNICORN_CMD_ARGS=settings):
        answers = [http_get(port, tls) for _ in range(2 * workers)]
    for status, body in answers:
        assert status == 200
        assert_hello(body, loop)


# ---------------------------------------------------------------- FastAPI, Starlette


@loop_param
@pytest.mark.parametrize(
    "framework, app, cmd",
    [("fastapi", "fastapi_app.py", "fastapi.sh"), ("starlette", "starlette_app.py", "starlette.sh")],
    ids=["fastapi", "starlette"],
)
def test_asgi_framework_under_uvicorn(workdir, loop, framework, app, cmd):
    pytest.importorskip("uvicorn")
    pytest.importorskip(framework)
    materialize(workdir, loop, app, cmd)
    port = free_port()
    with serving(command(cmd, loop, 0), workdir, port, UVICORN_PORT=str(port)):
        status, body = http_get(port)
    assert status == 200
    assert json.loads(body)["loop"].startswith(loop_module_prefix(loop)), body


# ---------------------------------------------------------------- aiohttp, httpx


@contextlib.contextmanager
def aiohttp_server(workdir: Path, tls: bool):
    pytest.importorskip("aiohttp")
    name, literal = ("aiohttp_server_tls.py", "port=8443") if tls else ("aiohttp_server.py", "port=8080")
    port = free_port()
    set_port(workdir / name, literal, port)
    with serving([sys.executable, name], workdir, port):
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}/", port


@loop_param
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_aiohttp_server(workdir, client_tls, loop, tls):
    materialize(workdir, loop, "aiohttp_server.py", "aiohttp_server_tls.py")
    with aiohttp_server(workdir, tls) as (_url, port):
        status, body = http_get(port, client_tls if tls else None)
    assert status == 200
    assert_hello(body, loop)


@loop_param
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("client", ["aiohttp_client.py", "httpx_client.py"])
def test_http_client(workdir, loop, tls, client):
    pytest.importorskip(client.split("_")[0])
    materialize(workdir, loop, "aiohttp_server.py", "aiohttp_server_tls.py", client)
    trust = {"SSL_CERT_FILE": str(workdir / "ca.pem")} if tls else {}
    with aiohttp_server(workdir, tls) as (url, _port):
        out = run([sys.executable, client, url], workdir, **trust).stdout
    prefix = loop_module_prefix(loop)
    first, second = out.splitlines()
    assert re.fullmatch(rf"200 Hello from {re.escape(prefix)}\w+(\.\w+)*", first), out
    assert second.startswith(f"client on {prefix}"), out


# ---------------------------------------------------------------- websockets


@loop_param
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_websockets(workdir, loop, tls):
    pytest.importorskip("websockets")
    materialize(workdir, loop, "websockets_server.py", "websockets_server_tls.py", "websockets_client.py")
    name, literal = ("websockets_server_tls.py", "main(8766") if tls else ("websockets_server.py", "main(8765)")
    port = free_port()
    set_port(workdir / name, literal, port)
    trust = {"SSL_CERT_FILE": str(workdir / "ca.pem")} if tls else {}
    with serving([sys.executable, name], workdir, port) as server:
        out = run([sys.executable, "websockets_client.py", f"{'wss' if tls else 'ws'}://127.0.0.1:{port}"], workdir, **trust)
    prefix = loop_module_prefix(loop)
    assert out.stdout.splitlines() == ["Hello", repr(b"\x00\xff"), out.stdout.splitlines()[2]], out.stdout
    assert out.stdout.splitlines()[2].startswith(f"client on {prefix}"), out.stdout
    assert f"serving on {prefix}" in server.log, server.log


# ---------------------------------------------------------------- anyio


@loop_param
def test_anyio_run(workdir, loop):
    pytest.importorskip("anyio")
    materialize(workdir, loop, "anyio_main.py")
    out = run([sys.executable, "anyio_main.py"], workdir).stdout.splitlines()
    assert out[0] == "b'Hello'" and len(out) == 2, out
    assert out[1].startswith(f"running on {loop_module_prefix(loop)}"), out


# ---------------------------------------------------------------- test runners


def run_pytest(workdir: Path) -> str:
    """pytest on workdir's test_loop.py in a subprocess, with workdir as its rootdir."""
    (workdir / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_loop.py"],
        cwd=workdir,
        env=env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def lay_test_suite(workdir: Path, loop: str, conftest: str, example: str) -> None:
    materialize(workdir, loop, conftest, example)
    (workdir / conftest).rename(workdir / "conftest.py")
    (workdir / example).rename(workdir / "test_loop.py")


@loop_param
@pytest.mark.parametrize("conftest", ["pytest_asyncio_conftest.py", "pytest_asyncio_policy_conftest.py"])
def test_pytest_asyncio(workdir, loop, conftest):
    pytest_asyncio = pytest.importorskip("pytest_asyncio")
    # The loop-factory hook came with pytest-asyncio 1.4, which deprecated
    # overriding event_loop_policy.
    has_hook = hasattr(pytest_asyncio.plugin, "PytestAsyncioSpecs")
    if conftest == "pytest_asyncio_conftest.py" and not has_hook:
        pytest.skip("this pytest-asyncio has no pytest_asyncio_loop_factories hook")
    lay_test_suite(workdir, loop, conftest, "pytest_asyncio_example.py")
    out = run_pytest(workdir)
    assert re.search(r"^1 passed\b", out, re.M), out
    deprecated = 'Overriding the "event_loop_policy" fixture is deprecated' in out
    assert deprecated == (has_hook and conftest == "pytest_asyncio_policy_conftest.py"), out


@loop_param
def test_anyio_pytest_plugin(workdir, loop):
    pytest.importorskip("anyio")
    lay_test_suite(workdir, loop, "anyio_conftest.py", "anyio_example.py")
    out = run_pytest(workdir)
    assert re.search(r"^1 passed\b", out, re.M), out
