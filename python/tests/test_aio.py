"""The asyncio API against real brokers: many streams from one loop."""

import asyncio

import pytest

import wormhole
import wormhole.aio
from conftest import Broker, pattern


def run(coroutine, timeout=240):
    async def bounded():
        return await asyncio.wait_for(coroutine, timeout)
    return asyncio.run(bounded())


async def echo_through(stream, data):
    """Writes data and half-closes while reading the echo back; returns what came back."""
    async def send():
        await stream.write(data)
        stream.shutdown()
    sender = asyncio.ensure_future(send())
    got = bytearray()
    buffer = bytearray(16384)
    while True:
        n = await stream.readinto(buffer)
        if not n:
            break
        got += buffer[:n]
    await sender
    return bytes(got)


def test_thousand_streams_from_one_loop(tmp_path):
    """1,000 streams at once through broker b to a's built-in echo, each with its own bytes."""
    a = Broker(str(tmp_path), "a")
    b = Broker(str(tmp_path), "b", ["--peer", "a=127.0.0.1:%d" % a.port, "--ring-size", "65536"])
    count, size = 1000, 8192

    async def one(client, i):
        data = pattern(i, size)
        async with await client.open("a", "echo", timeout=30) as s:
            return await echo_through(s, data) == data

    async def main():
        async with wormhole.aio.Client(b.socket) as client:
            results = await asyncio.gather(*(one(client, i) for i in range(count)))
            assert client.sync.stats().streams == 0
            return results

    try:
        results = run(main())
        assert results.count(True) == count
    finally:
        assert b.stop() == 0, b.log_text()
        assert a.stop() == 0, a.log_text()


def test_listener_and_openers_on_one_loop(broker):
    count = 50

    async def serve(server):
        async def echo(s):
            async with s:
                buffer = bytearray(4096)
                while True:
                    n = await s.readinto(buffer)
                    if not n:
                        return
                    await s.write(memoryview(buffer)[:n])
        tasks = []
        for _ in range(count):
            tasks.append(asyncio.ensure_future(echo(await server.accept(timeout=60))))
        await asyncio.gather(*tasks)

    async def one(client, i):
        data = pattern(i, 50000 + i)
        s = await client.open("local", "svc", timeout=30)
        async with s:
            assert s.peer == "local"
            return await echo_through(s, data) == data

    async def main():
        async with wormhole.aio.Client(broker.socket) as server, \
                wormhole.aio.Client(broker.socket) as client:
            server.listen("svc")
            serving = asyncio.ensure_future(serve(server))
            results = await asyncio.gather(*(one(client, i) for i in range(count)))
            await serving
            return results

    assert run(main()).count(True) == count


def test_errors_and_timeouts(broker):
    async def main():
        async with wormhole.aio.Client(broker.socket) as client:
            with pytest.raises(wormhole.UnknownPeer):
                await client.open("nosuchpeer", "x", timeout=1)
            with pytest.raises(wormhole.NoService):
                await client.open("local", "nobody", timeout=1)
            client.listen("svc")
            with pytest.raises(wormhole.Timeout):
                await client.accept(timeout=0.2)
            opener = asyncio.ensure_future(client.open("local", "svc", timeout=10))
            t = await client.accept(timeout=10)
            s = await opener
            # a read that waits is cancelled cleanly by a timeout, and the stream goes on
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(t.read(10), 0.2)
            reading = asyncio.ensure_future(t.read(10))
            await asyncio.sleep(0)
            with pytest.raises(wormhole.Busy):
                await t.read(10)
            await s.write(b"ping")
            assert await reading == b"ping"
            s.close()
            assert await t.read(10) == b""
            t.close()
            with pytest.raises(wormhole.InvalidArgument):
                await t.read(1)

    run(main())


def test_unread_stream_does_not_stall_the_others(broker):
    """A stream with bytes nobody reads yet (so reported again and again) must not keep a
    stream that is waited on from its news."""
    async def main():
        async with wormhole.aio.Client(broker.socket) as server, \
                wormhole.aio.Client(broker.socket) as client:
            server.listen("svc")
            idle_opener = asyncio.ensure_future(client.open("local", "svc", timeout=10))
            idle_server = await server.accept(timeout=10)
            idle = await idle_opener
            await idle_server.write(b"unread for now")
            busy_opener = asyncio.ensure_future(client.open("local", "svc", timeout=10))
            busy_server = await server.accept(timeout=10)
            busy = await busy_opener
            for i in range(200):
                await busy_server.write(b"%d" % i)
                assert await busy.read(10) == b"%d" % i
            assert await idle.read(100) == b"unread for now"
            for s in (idle, idle_server, busy, busy_server):
                s.close()

    run(main(), timeout=60)


def test_unread_news_does_not_spin_the_loop(broker):
    """Bytes nobody awaits keep the stream reported (level-triggered); the loop must still
    sleep rather than spin on the descriptor."""
    import time

    async def main():
        async with wormhole.aio.Client(broker.socket) as server, \
                wormhole.aio.Client(broker.socket) as client:
            server.listen("svc")
            opener = asyncio.ensure_future(client.open("local", "svc", timeout=10))
            t = await server.accept(timeout=10)
            s = await opener
            await t.write(b"nobody reads this yet")
            await asyncio.sleep(0.1)
            cpu = time.process_time()
            await asyncio.sleep(1.0)
            used = time.process_time() - cpu
            assert await s.read(100) == b"nobody reads this yet"
            s.close()
            t.close()
            return used

    used = run(main(), timeout=60)
    assert used < 0.1, "the loop used %.3f s of CPU in 1 s of idle waiting" % used


def test_read_exactly(broker):
    async def main():
        async with wormhole.aio.Client(broker.socket) as server, \
                wormhole.aio.Client(broker.socket) as client:
            server.listen("svc")
            opener = asyncio.ensure_future(client.open("local", "svc", timeout=10))
            t = await server.accept(timeout=10)
            async with await opener as s, t:
                await s.write(b"0123456789")
                s.shutdown()
                assert await t.read_exactly(4) == b"0123"
                with pytest.raises(asyncio.IncompleteReadError) as info:
                    await t.read_exactly(10)
                assert info.value.partial == b"456789"

    run(main(), timeout=60)
