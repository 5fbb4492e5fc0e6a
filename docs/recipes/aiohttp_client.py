import asyncio
import sys

import aiohttp
import ferroloop


async def main(url):
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            print(response.status, await response.text(), end="")
    print("client on", type(asyncio.get_running_loop()).__module__)


ferroloop.run(main(sys.argv[1]))
