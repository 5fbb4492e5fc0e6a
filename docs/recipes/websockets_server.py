import asyncio

import ferroloop
from websockets.asyncio.server import serve


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


async def main(port, ssl_context=None):
    async with serve(echo, "127.0.0.1", port, ssl=ssl_context) as server:
        print("serving on", type(asyncio.get_running_loop()).__module__)
        await server.serve_forever()


if __name__ == "__main__":
    ferroloop.run(main(8765))
