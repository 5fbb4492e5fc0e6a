import asyncio
import sys

import ferroloop


async def main():
    return type(asyncio.get_running_loop())


print(ferroloop.run(main()))  # like asyncio.run, on every Python version

with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
    print(runner.run(main()))

if sys.version_info >= (3, 12):  # asyncio.run takes loop_factory from 3.12 on
    print(asyncio.run(main(), loop_factory=ferroloop.new_event_loop))
