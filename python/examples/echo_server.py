#!/usr/bin/env python3
"""echo_server.py: listens on a service and echoes every stream opened to it, all streams on
one asyncio loop (wormhole.aio).

    echo_server.py [-s SOCKET] [-n STREAMS] SERVICE

Exits after STREAMS streams ended (default 0: never). Prints one line per finished stream.
"""

import argparse
import asyncio
import sys

import wormhole
import wormhole.aio


async def echo(stream):
    total = 0
    buffer = bytearray(65536)
    async with stream:
        try:
            while True:
                n = await stream.readinto(buffer)
                if not n:
                    break
                await stream.write(memoryview(buffer)[:n])
                total += n
        except wormhole.Error as e:
            print("stream from %s: %s after %d bytes" % (stream.peer, e, total), flush=True)
            return
    print("stream from %s: %d bytes echoed" % (stream.peer, total), flush=True)


async def main(args):
    async with wormhole.aio.Client(args.socket) as client:
        client.listen(args.service)
        print("listening on %r" % args.service, flush=True)
        tasks = set()
        served = 0
        while args.streams == 0 or served < args.streams:
            task = asyncio.ensure_future(echo(await client.accept()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            served += 1
        await asyncio.gather(*tasks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-s", "--socket", help="the broker's socket ($WORMHOLE_SOCKET or the default)")
    parser.add_argument("-n", "--streams", type=int, default=0, help="exit after this many streams")
    parser.add_argument("service")
    args = parser.parse_args()
    try:
        asyncio.run(main(args))
    except wormhole.Error as e:
        sys.exit("echo_server: %s" % e)
    except KeyboardInterrupt:
        pass
