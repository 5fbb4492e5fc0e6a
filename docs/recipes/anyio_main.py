import asyncio

import anyio
import ferroloop


async def echo(stream):
    async with stream:
        await stream.send(await stream.receive())


async def main():
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(b"Hello")
                print(await stream.receive())
            tg.cancel_scope.cancel()
    print("running on", type(asyncio.get_running_loop()).__module__)


anyio.run(main, backend_options={"loop_factory": ferroloop.new_event_loop})
