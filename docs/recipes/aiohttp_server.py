import asyncio

import ferroloop
from aiohttp import web


async def hello(request):
    loop = type(asyncio.get_running_loop()).__module__
    return web.Response(text=f"Hello from {loop}\n")


app = web.Application()
app.router.add_get("/", hello)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=8080, loop=ferroloop.new_event_loop())
