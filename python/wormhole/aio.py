"""asyncio over libwormholeclient: many streams on one event loop, no thread per stream.

    async with wormhole.aio.Client(path) as client:
        s = await client.open("b", "echo", timeout=5)
        async with s:
            await s.write(b"hello")
            s.shutdown()
            print(await s.read(100))

How it waits. Every stream is non-blocking (wh_set_nonblocking). One descriptor per client,
wh_client_wait_fd, sits in the loop (loop.add_reader); when it is readable, wh_client_wait
names the streams that may have news and the coroutines waiting on them retry; the client's
own news (an answer to wh_open_start, an incoming stream) goes to open() and accept(). A
stream costs no descriptor.

The C library reports a stream for as long as its news is not taken (level-triggered), and a
stream is only taken off when a read or write on it finds nothing to do. A stream that has
bytes nobody awaits yet, or that sits at its end unclosed, would therefore keep the
descriptor readable and the loop spinning: when a round finds only such news, the client
stops watching the descriptor for a moment (1 ms, doubling to 20 ms), and watches it again
at once when a coroutine starts waiting. Streams that are waited on see no such delay unless
they share a round with unread ones; close streams once done with them.

Threads: everything of one Client belongs to its loop's thread (the C library's rule, and
asyncio's). One coroutine at a time may read a stream, and one may write it.
"""

import asyncio
import collections
import weakref
import ctypes

from . import _lib
from . import client as _sync
from .client import EINVAL, ETIMEOUT, EWOULDBLOCK, _source, _target, _timeout_ms
from .errors import Busy, Timeout, error_for

_EVENTS = 256
_BACKOFF_FIRST, _BACKOFF_MOST = 0.001, 0.02


class Client:
    """A session with the broker for one event loop. Attach with `await Client(path).attach()`
    or `async with Client(path) as client` (path None: $WORMHOLE_SOCKET or the default)."""

    def __init__(self, path=None):
        self.path = path
        self._c = None
        self._loop = None
        self._fd = -1
        self._watching = False
        self._backoff = _BACKOFF_FIRST
        self._timer = None
        self._streams = weakref.WeakValueDictionary()  # C handle -> Stream (a forgotten one still closes)
        self._opens = {}  # ticket -> future
        self._accepters = collections.deque()
        self._events = (_lib.event * _EVENTS)()

    async def attach(self):
        """Attaches (in the loop's executor: the hello is a blocking round trip)."""
        if self._c is None:
            loop = asyncio.get_running_loop()
            self._c = await loop.run_in_executor(None, _sync.Client, self.path)
            self._loop = loop
            self._fd = _lib.wh_client_wait_fd(self._c._h)
            if self._fd < 0:
                error = self._c._error(_sync.CODES["WH_ESYSTEM"])
                self._c.close()
                raise error
            self._watch()
        return self

    async def __aenter__(self):
        return await self.attach()

    async def __aexit__(self, *exc):
        self.close()

    @property
    def closed(self):
        return self._c is None or self._c.closed

    @property
    def sync(self):
        """The blocking wormhole.Client underneath (id, stats(), listen...): use it from the
        loop's thread only."""
        return self._c

    def close(self):
        """Closes every stream and detaches; coroutines waiting get an Error."""
        if self._c is None or self._c.closed:
            return
        self._unwatch()
        if self._timer:
            self._timer.cancel()
            self._timer = None
        gone = error_for(EINVAL, "the client was closed")
        for future in list(self._opens.values()) + list(self._accepters):
            if not future.done():
                future.set_exception(gone)
        self._opens.clear()
        self._accepters.clear()
        for stream in list(self._streams.values()):
            stream._fail_waiters(gone)
        self._streams.clear()
        self._c.close()

    # ---- the descriptor ------------------------------------------------------------------

    def _watch(self):
        if not self._watching and self._c is not None and not self._c.closed:
            self._loop.add_reader(self._fd, self._on_ready)
            self._watching = True

    def _unwatch(self):
        if self._watching:
            self._loop.remove_reader(self._fd)
            self._watching = False

    def _want(self):
        """A coroutine starts waiting: watch the descriptor again if a back-off paused it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._backoff = _BACKOFF_FIRST
            self._watch()

    def _resume(self):
        self._timer = None
        self._watch()

    def _on_ready(self):
        n = _lib.wh_client_wait(self._c._h, self._events, _EVENTS, 0)
        if n < 0:  # the wait set cannot be made or read (WH_ESYSTEM): tell every waiter
            error = self._c._error(n)
            for stream in list(self._streams.values()):
                stream._fail_waiters(error)
            self._unwatch()  # and try again later rather than spin on it
            self._timer = self._loop.call_later(_BACKOFF_MOST, self._resume)
            return
        progress = False
        for i in range(n):
            handle = self._events[i].stream
            if handle is None:
                progress |= self._client_news()
            else:
                stream = self._streams.get(handle)
                if stream is not None:
                    progress |= stream._wake()
        if progress:
            self._backoff = _BACKOFF_FIRST
        elif n:  # only news nobody waits for: look again a little later
            self._unwatch()
            self._timer = self._loop.call_later(self._backoff, self._resume)
            self._backoff = min(self._backoff * 2, _BACKOFF_MOST)

    def _client_news(self):
        progress = False
        handle = ctypes.c_void_p()
        for ticket, future in list(self._opens.items()):
            rc = _lib.wh_open_result(self._c._h, ticket, ctypes.byref(handle))
            if rc == EWOULDBLOCK:
                continue
            del self._opens[ticket]
            progress = True
            if rc == 0:
                stream = Stream(self, _sync.Stream(self._c, handle.value))
                if future.done():
                    stream.close()  # the opener gave up meanwhile
                else:
                    future.set_result(stream)
            elif not future.done():
                future.set_exception(self._c._error(rc))
        while self._accepters:
            if self._accepters[0].done():  # timed out or cancelled
                self._accepters.popleft()
                continue
            rc = _lib.wh_accept(self._c._h, 0, ctypes.byref(handle))
            if rc == EWOULDBLOCK:
                break
            progress = True
            future = self._accepters.popleft()
            if rc == 0:
                future.set_result(Stream(self, _sync.Stream(self._c, handle.value)))
            else:
                future.set_exception(self._c._error(rc))
        return progress

    # ---- opening and accepting -----------------------------------------------------------

    def _handle(self):
        if self._c is None:
            raise error_for(EINVAL, "the client is not attached: await attach() first")
        return self._c._handle()

    async def open(self, peer, service=None, timeout=None):
        """Opens a stream (as wormhole.Client.open) without blocking the loop: wh_open_start,
        then the answer on the client's descriptor. timeout in seconds, kept by the broker."""
        ticket = ctypes.c_uint64()
        rc = _lib.wh_open_start(self._handle(), _sync._encode(peer, "peer"),
                                _sync._encode(service, "service"), _timeout_ms(timeout),
                                ctypes.byref(ticket))
        if rc != 0:
            raise self._c._error(rc)
        future = self._loop.create_future()
        self._opens[ticket.value] = future
        self._want()
        try:
            return await future
        except asyncio.CancelledError:
            if self._opens.pop(ticket.value, None) is not None and not self.closed:
                _lib.wh_open_cancel(self._c._h, ticket.value)
            raise

    def listen(self, service):
        """As wormhole.Client.listen (a short round trip to the broker on its socket)."""
        self._handle()
        self._c.listen(service)

    def unlisten(self, service):
        self._handle()
        self._c.unlisten(service)

    async def accept(self, timeout=None):
        """The next incoming stream; Timeout when timeout seconds pass first."""
        handle = ctypes.c_void_p()
        if not self._accepters:
            rc = _lib.wh_accept(self._handle(), 0, ctypes.byref(handle))
            if rc == 0:
                return Stream(self, _sync.Stream(self._c, handle.value))
            if rc != EWOULDBLOCK:
                raise self._c._error(rc)
        future = self._loop.create_future()
        self._accepters.append(future)
        self._want()
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise Timeout(ETIMEOUT, "no stream came within %g s" % timeout) from None


class Stream:
    """A stream on the loop: await read(n)/readinto(buf)/write(b); shutdown() and close()
    return at once. `async with stream:` closes it. The blocking wormhole.Stream underneath
    is .sync (its id, peer, service, error)."""

    def __init__(self, client, stream):
        self._client = client
        self.sync = stream
        stream.setblocking(False)
        self._reader = None
        self._writer = None
        client._streams[stream._h] = self

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()

    @property
    def closed(self):
        return self.sync.closed

    @property
    def id(self):
        return self.sync.id

    @property
    def peer(self):
        return self.sync.peer

    @property
    def service(self):
        return self.sync.service

    def close(self):
        handle = self.sync._h
        if handle is not None:
            self._client._streams.pop(handle, None)
        self._fail_waiters(error_for(EINVAL, "the stream was closed"))
        self.sync.close()

    def shutdown(self):
        """Half-close: no more writes (does not wait)."""
        self.sync.shutdown()

    def abort(self, code=_sync.ESTREAM_CLOSED):
        self.sync.abort(code)

    # ---- waiting ---------------------------------------------------------------------------

    def _wake(self):
        woke = False
        for future in (self._reader, self._writer):
            if future is not None and not future.done():
                future.set_result(None)
                woke = True
        return woke

    def _fail_waiters(self, error):
        for future in (self._reader, self._writer):
            if future is not None and not future.done():
                future.set_exception(error)

    async def _wait(self, reading):
        future = self._client._loop.create_future()
        if reading:
            self._reader = future
        else:
            self._writer = future
        self._client._want()
        try:
            await future
        finally:
            if reading:
                self._reader = None
            else:
                self._writer = None

    def _claim(self, reading):
        if (self._reader if reading else self._writer) is not None:
            raise Busy(EINVAL, "another coroutine %s this stream" % ("reads" if reading else "writes"))

    # ---- reading and writing ---------------------------------------------------------------

    async def readinto(self, buffer):
        """Reads up to len(buffer) bytes into it: the count, 0 at the end of the stream."""
        self._claim(True)
        address, length, keep = _target(buffer)
        s = self.sync
        while True:
            with s._guard:
                n = _lib.wh_read(s._handle(), address, length)
                if n >= 0:
                    return n
                if n != EWOULDBLOCK:
                    raise s._error(n)
            await self._wait(True)

    async def read(self, n):
        """Up to n bytes, at least one; b"" at the end of the stream."""
        if n <= 0:
            return b""
        buffer = ctypes.create_string_buffer(n)
        got = await self.readinto(memoryview(buffer).cast("B"))
        return buffer.raw[:got]

    async def read_exactly(self, n):
        """Exactly n bytes; asyncio.IncompleteReadError if the stream ends first."""
        out = bytearray(n)
        view = memoryview(out)
        got = 0
        while got < n:
            k = await self.readinto(view[got:])
            if not k:
                raise asyncio.IncompleteReadError(bytes(out[:got]), n)
            got += k
        return bytes(out)

    async def write(self, data):
        """Writes every byte of data, waiting for room as needed: len(data)."""
        self._claim(False)
        address, length, keep = _source(data)
        s = self.sync
        done = 0
        while done < length:
            with s._guard:
                s._handle()
                n = s._raw_write(address + done, length - done)
                if n < 0 and n != EWOULDBLOCK:
                    raise s._error(n)
            if n > 0:
                done += n
            else:
                await self._wait(False)
        return length
