import asyncio
import sys

import ferroloop
import httpx


async def main(url):
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        print(response.status_code, response.text, end="")
    print("client on", type(asyncio.get_running_loop()).__module__)


ferroloop.run(main(sys.argv[1]))
