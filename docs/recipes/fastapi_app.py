import asyncio

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root():
    return {"loop": type(asyncio.get_running_loop()).__module__}
