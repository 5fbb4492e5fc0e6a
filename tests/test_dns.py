"""getaddrinfo/getnameinfo: the socket module's answers, through the executor.

No network: only numeric hosts, the loopback names and flags that forbid
lookups.
"""

import asyncio
import logging
import socket

import pytest


def outcome(fn, *args, **kwargs):
    """A call's result, or its exception's type and args."""
    try:
        return fn(*args, **kwargs)
    except OSError as e:
        return type(e), e.args


async def aoutcome(awaitable):
    try:
        return await awaitable
    except OSError as e:
        return type(e), e.args


@pytest.mark.parametrize(
    ("host", "port", "kwargs"),
    [
        ("127.0.0.1", 80, {}),
        ("127.0.0.1", 0, {"type": socket.SOCK_STREAM}),
        ("127.0.0.1", "8080", {"family": socket.AF_INET, "type": socket.SOCK_DGRAM}),
        ("localhost", 80, {"type": socket.SOCK_STREAM}),
        ("::1", 443, {"type": socket.SOCK_STREAM}),
        (None, 0, {"flags": socket.AI_PASSIVE, "type": socket.SOCK_STREAM}),
        ("127.0.0.1", 80, {"proto": socket.IPPROTO_TCP}),
    ],
)
def test_getaddrinfo_matches_socket(loop, host, port, kwargs):
    got = loop.run_until_complete(aoutcome(loop.getaddrinfo(host, port, **kwargs)))
    assert got == outcome(socket.getaddrinfo, host, port, **kwargs)


@pytest.mark.parametrize(
    ("sockaddr", "flags"),
    [
        (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
        (("127.0.0.1", 80), 0),
        (("::1", 443, 0, 0), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    ],
)
def test_getnameinfo_matches_socket(loop, sockaddr, flags):
    got = loop.run_until_complete(aoutcome(loop.getnameinfo(sockaddr, flags)))
    assert got == outcome(socket.getnameinfo, sockaddr, flags)


def test_getaddrinfo_error_is_socket_gaierror(loop):
    args = ("invalid.invalid", 80)
    with pytest.raises(socket.gaierror) as expected:
        socket.getaddrinfo(*args, flags=socket.AI_NUMERICHOST)
    with pytest.raises(socket.gaierror) as got:
        loop.run_until_complete(loop.getaddrinfo(*args, flags=socket.AI_NUMERICHOST))
    assert got.value.args == expected.value.args
    assert got.value.errno == socket.EAI_NONAME


def test_getaddrinfo_runs_in_the_executor_concurrently(loop):
    async def main():
        return await asyncio.gather(*(loop.getaddrinfo("127.0.0.1", port) for port in range(10)))

    results = loop.run_until_complete(main())
    assert results == [socket.getaddrinfo("127.0.0.1", port) for port in range(10)]


def test_getaddrinfo_is_logged_in_debug_mode(loop, caplog):
    loop.set_debug(True)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        loop.run_until_complete(loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM))
    assert any(r.getMessage().startswith("Getting address info 127.0.0.1:80") for r in caplog.records)
