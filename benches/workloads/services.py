"""Workloads shaped like services: requests with timeouts, queue pipelines."""

from __future__ import annotations

import asyncio
import socket
import struct
from time import perf_counter

from ._result import Result

CLIENTS = 10_000
REQ = struct.Struct("!I")


class _Echo(asyncio.Protocol):
    """The far end: sends back every byte it gets."""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _Client(asyncio.Protocol):
    """The near end, as a database or cache client is written: each request
    has a Future, resolved by the reply that carries its id."""

    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future] = {}
        self.buf = b""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        end = len(buf) - len(buf) % REQ.size
        for (rid,) in REQ.iter_unpack(buf[:end]):
            fut = self.pending.pop(rid)
            if not fut.done():
                fut.set_result(rid)
        self.buf = buf[end:]


def io_timeout(loop, n: int) -> Result:
    """10,000 tasks, each sending requests over one socket and awaiting each
    reply's Future inside `asyncio.timeout(30)`, n requests in all.

    A reply comes back through an echo Protocol at the other end of a
    socketpair, so every request is a write, a read on each side, a Future
    resolved from `data_received`, a timeout scheduled and cancelled (its
    deadline never comes), and a task step: the shape of an asyncpg or
    redis client under load.
    """
    per_client = max(1, n // CLIENTS)
    a, b = socket.socketpair()

    async def main() -> int:
        await loop.create_connection(_Echo, sock=b)
        _, client = await loop.create_connection(_Client, sock=a)
        write = client.transport.write

        async def one(cid: int) -> int:
            got = 0
            for k in range(per_client):
                rid = cid * per_client + k
                fut = loop.create_future()
                client.pending[rid] = fut
                write(REQ.pack(rid))
                async with asyncio.timeout(30):
                    got += (await fut) == rid
            return got

        return sum(await asyncio.gather(*(one(c) for c in range(CLIENTS))))

    t0 = perf_counter()
    try:
        answered = loop.run_until_complete(main())
    finally:
        a.close()
        b.close()
    return Result(perf_counter() - t0, answered)


def queue_pipeline(loop, n: int) -> Result:
    """A TaskGroup pipeline: one producer puts n items in a bounded
    `asyncio.Queue`, four workers transform them into a second one, one
    consumer sums them. Every put and get that waits is a Future; the
    bounded queues make producers and consumers hand over constantly."""

    async def main() -> int:
        raw: asyncio.Queue[int | None] = asyncio.Queue(maxsize=100)
        done: asyncio.Queue[int | None] = asyncio.Queue(maxsize=100)
        workers = 4
        total = 0

        async def produce() -> None:
            for i in range(n):
                await raw.put(i)
            for _ in range(workers):
                await raw.put(None)

        async def work() -> None:
            while (item := await raw.get()) is not None:
                await done.put(item * 2)
            await done.put(None)

        async def consume() -> None:
            nonlocal total
            finished = 0
            while finished < workers:
                item = await done.get()
                if item is None:
                    finished += 1
                else:
                    total += item

        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce())
            for _ in range(workers):
                tg.create_task(work())
            tg.create_task(consume())
        return total

    t0 = perf_counter()
    total = loop.run_until_complete(main())
    return Result(perf_counter() - t0, total)
