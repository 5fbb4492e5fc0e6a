import asyncio


async def main():
    print("running on", type(asyncio.get_running_loop()))


if __name__ == "__main__":
    asyncio.run(main())
