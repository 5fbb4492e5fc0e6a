"""Smoke suite for an installed ferroloop wheel.

Run by scripts/wheels.sh with the interpreter of a fresh virtualenv into
which only the wheel was installed, with no Rust toolchain on PATH:

    python tests/smoke/smoke.py

Standard library only. Each check prints one line; any failure raises, so
the exit status is non-zero. Kept apart from tests/ (pytest does not
collect it): it proves the *package*, where pytest proves the code.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import shutil
import signal
import ssl
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CERT = HERE / "localhost.pem"  # a self-signed test certificate, never a secret


def check(name: str, ok: bool, detail: object = "") -> None:
    print(f"{'ok ' if ok else 'FAIL'} {name}{': ' + str(detail) if detail != '' else ''}", flush=True)
    if not ok:
        raise SystemExit(f"smoke check failed: {name}")


def check_environment() -> None:
    # What makes this a test of the wheel: no toolchain could have built
    # anything, and ferroloop comes from site-packages, not a checkout.
    for tool in ("cargo", "rustc"):
        check(f"no {tool} on PATH", shutil.which(tool) is None, shutil.which(tool) or "")


def check_import() -> None:
    import ferroloop
    from ferroloop import _ferroloop

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    check("imported from site-packages", Path(ferroloop.__file__).resolve().is_relative_to(site), ferroloop.__file__)
    check("extension from site-packages", Path(_ferroloop.__file__).resolve().is_relative_to(site), _ferroloop.__file__)
    meta = importlib.metadata.version("ferroloop")
    check("__version__ is the wheel's version", ferroloop.__version__ == meta, f"{ferroloop.__version__} / {meta}")
    check("py.typed and stubs installed", (site / "ferroloop" / "py.typed").exists() and (site / "ferroloop" / "_ferroloop.pyi").exists())
    files = [str(f) for f in importlib.metadata.files("ferroloop") or ()]
    check("license files installed", all(any(f.endswith(n) for f in files) for n in ("LICENSE-MIT", "LICENSE-APACHE")))


async def _is_ferroloop() -> bool:
    import ferroloop

    return isinstance(asyncio.get_running_loop(), ferroloop.Loop)


def check_run() -> None:
    import ferroloop

    async def main() -> str:
        await asyncio.sleep(0.01)
        assert await _is_ferroloop()
        return "done"

    check("ferroloop.run", ferroloop.run(main()) == "done")


async def tcp_echo() -> bytes:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    return line


async def tls_handshake() -> tuple[bytes, str | None]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(CERT)
    client_ctx = ssl.create_default_context(cafile=str(CERT))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello over " + (writer.get_extra_info("ssl_object").version() or "?").encode() + b"\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
        line = await reader.readline()
        version = writer.get_extra_info("ssl_object").version()
        writer.close()
        await writer.wait_closed()
    return line, version


async def subprocess_roundtrip() -> tuple[bytes, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    out, _ = await proc.communicate(b"piped")
    return out, proc.returncode if proc.returncode is not None else -1


async def signal_handler() -> int:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[int] = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, signal.SIGUSR1)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        return await asyncio.wait_for(got, 5)
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


def check_io() -> None:
    import ferroloop

    async def main() -> None:
        assert await _is_ferroloop()
        check("TCP echo", await tcp_echo() == b"ping\n")
        line, version = await tls_handshake()
        check("TLS handshake", line.startswith(b"hello over TLS"), version)
        out, rc = await subprocess_roundtrip()
        check("subprocess", (out, rc) == (b"PIPED", 0), (out, rc))
        check("signal handler", await signal_handler() == signal.SIGUSR1)

    ferroloop.run(main())


def check_dash_m() -> None:
    script = (
        "import asyncio, sys\n"
        "async def main():\n"
        "    return type(asyncio.get_running_loop()).__module__, sys.argv[1:]\n"
        "print(asyncio.run(main()))\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "script.py")
        path.write_text(script)
        out = subprocess.run(
            [sys.executable, "-m", "ferroloop", str(path), "a", "b"],
            capture_output=True, text=True, timeout=60, cwd=tmp,
        )
    got = out.stdout.strip()
    check("python -m ferroloop script.py", out.returncode == 0 and got.startswith("('ferroloop") and got.endswith("['a', 'b'])"), got or out.stderr)


def main() -> None:
    print(f"smoke: {sys.version.split()[0]} at {sys.executable}", flush=True)
    check_environment()
    check_import()
    check_run()
    check_io()
    check_dash_m()
    print("smoke: all checks passed", flush=True)


if __name__ == "__main__":
    main()
