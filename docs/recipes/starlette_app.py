import asyncio

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def root(request):
    return JSONResponse({"loop": type(asyncio.get_running_loop()).__module__})


app = Starlette(routes=[Route("/", root)])
