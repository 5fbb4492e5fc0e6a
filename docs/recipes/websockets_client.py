import asyncio
import sys

import ferroloop
from websockets.asyncio.client import connect


async def main(uri):
    async with connect(uri) as websocket:
        await websocket.send("Hello")
        print(await websocket.recv())
        await websocket.send(b"\x00\xff")
        print(await websocket.recv())
    print("client on", type(asyncio.get_running_loop()).__module__)


ferroloop.run(main(sys.argv[1]))
