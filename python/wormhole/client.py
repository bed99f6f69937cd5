"""wormhole.Client and wormhole.Stream: the blocking API, in the shape of the socket module.

Threads (the C library's rule, <wormhole/wormhole.h>): a Client is used by one thread at a
time, and so is each Stream; distinct streams of one client may be used from different
threads at once. The binding enforces it cheaply: each object has a lock that a call takes
without waiting, and a second thread that finds it taken gets wormhole.Busy instead of
undefined behaviour in C. In particular a stream cannot be closed while another thread
blocks in it: bound the wait with settimeout() instead. Client.close() refuses (Busy) while
one of its streams is in use, since it closes them all.

Blocking calls release the GIL. Those without a timeout still wake every second or so
(a deadline the binding renews), so that signal handlers, KeyboardInterrupt among them, run.
"""

import ctypes
import io
import math
import os
import threading
import time
import weakref

from . import _lib
from .errors import CODES, Busy, WouldBlock, error_for

EWOULDBLOCK = CODES["WH_EWOULDBLOCK"]
ETIMEOUT = CODES["WH_ETIMEOUT"]
ESTREAM_CLOSED = CODES["WH_ESTREAM_CLOSED"]
EINVAL = CODES["WH_EINVAL"]

_SLICE_NS = 1000000000  # how long a blocking call without a timeout waits between wake-ups
_MAX_MS = 2**31 - 1


def version():
    """The library's version at run time, e.g. "0.1.0" (wh_version)."""
    return _lib.wh_version().decode()


def _timeout_ms(timeout):
    """Seconds (float or None) as the C library's milliseconds: None waits, 0 polls."""
    if timeout is None:
        return -1
    if timeout < 0:
        raise ValueError("timeout must be None or >= 0")
    return min(_MAX_MS, math.ceil(timeout * 1000))


def _encode(name, what):
    if name is None:
        return None
    if hasattr(name, "__fspath__"):  # a socket path given as pathlib.Path
        name = os.fspath(name)
    if isinstance(name, str):
        return name.encode()
    if isinstance(name, (bytes, bytearray)):
        return bytes(name)
    raise TypeError("%s must be str, bytes or None" % what)


class _PyBuffer(ctypes.Structure):
    """CPython's Py_buffer (Include/pybuffer.h), stable since 3.3."""
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = (ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int)
_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = (ctypes.POINTER(_PyBuffer),)
_release_buffer.restype = None


class _Pinned:
    """A read-only buffer held (PyObject_GetBuffer) until this object goes: ctypes's own
    from_buffer wants a writable one, and a copy of each slice written would cost a memcpy."""

    __slots__ = ("view",)

    def __init__(self, data):
        self.view = _PyBuffer()
        _get_buffer(data, ctypes.byref(self.view), 0)  # PyBUF_SIMPLE: contiguous bytes only

    def __del__(self):
        _release_buffer(ctypes.byref(self.view))


def _source(data):
    """(address, length, keep-alive) of a readable buffer (bytes, memoryview slices of it,
    bytearray...), without a copy."""
    if isinstance(data, bytes):
        return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0, len(data), data
    if isinstance(data, memoryview) and data.readonly:
        if not data.contiguous:
            raise BufferError("write() needs a contiguous buffer")
        pinned = _Pinned(data)
        return pinned.view.buf or 0, pinned.view.len, pinned
    return _target(data)


def _target(buffer):
    """(address, length, keep-alive) of a writable buffer (bytearray, memoryview, array...)."""
    view = memoryview(buffer)
    if view.readonly:
        raise TypeError("readinto() needs a writable buffer")
    if view.ndim != 1 or view.format not in ("B", "b", "c"):
        view = view.cast("B")
    if not view.nbytes:
        return 0, 0, None
    window = (ctypes.c_char * view.nbytes).from_buffer(view)
    return ctypes.addressof(window), view.nbytes, window


class _Guard:
    """One thread at a time in an object: a lock taken without waiting, Busy if taken."""

    __slots__ = ("_lock", "_what")

    def __init__(self, what):
        self._lock = threading.Lock()
        self._what = what

    def __enter__(self):
        if not self._lock.acquire(False):
            raise Busy(EINVAL, "this %s is in use by another thread: the C library allows one "
                       "thread at a time per %s" % (self._what, self._what))

    def __exit__(self, *exc):
        self._lock.release()

    def try_hold(self):
        return self._lock.acquire(False)

    def release(self):
        self._lock.release()


class Stats:
    """A session's counters, as the broker keeps them (struct wh_client_stats)."""

    FIELDS = ("streams", "streams_opened", "streams_accepted", "ring_bytes", "ring_bytes_limit",
              "max_streams", "bytes_sent", "bytes_received", "broker_clients", "broker_streams")

    def __init__(self, raw):
        for name in self.FIELDS:
            setattr(self, name, getattr(raw, name))

    def __repr__(self):
        return "Stats(%s)" % ", ".join("%s=%d" % (n, getattr(self, n)) for n in self.FIELDS)


class _Handle:
    """What a Client and a Stream share: a C handle in `_h` (None once closed), closed by
    `close()`, as a context manager and when garbage-collected."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_h", None):
            try:
                self.close()
            except Exception:
                pass

    @property
    def closed(self):
        return self._h is None


class Client(_Handle):
    """A session with the broker: Client(path=None) attaches at once.

    path: the broker's Unix socket; None lets the C library choose ($WORMHOLE_SOCKET, else
    /run/wormhole/broker.sock). Use it as a context manager, or call close().
    """

    def __init__(self, path=None):
        self._h = None
        self._guard = _Guard("client")
        self._streams = weakref.WeakSet()
        self.path = path
        handle = ctypes.c_void_p()
        detail = ctypes.create_string_buffer(_lib.DETAIL_MAX)
        rc = _lib.wh_client_attach_detail(_encode(path, "path"), ctypes.byref(handle), detail,
                                          _lib.DETAIL_MAX)
        if rc != 0:
            raise error_for(rc, detail.value.decode(errors="replace"))
        self._h = handle.value

    # ---- life ---------------------------------------------------------------------------

    def close(self):
        """Closes every stream still open (as Stream.close does) and detaches. Idempotent."""
        if self._h is None:
            return
        with self._guard:
            held = []
            try:
                for stream in list(self._streams):
                    if not stream._guard.try_hold():
                        raise Busy(EINVAL, "a stream of this client is in use by another "
                                   "thread: close it there first")
                    held.append(stream)
                for stream in held:
                    stream._h = None  # wh_client_detach frees it
                _lib.wh_client_detach(self._h)
                self._h = None
            finally:
                for stream in held:
                    stream._guard.release()

    def _handle(self):
        if self._h is None:
            raise error_for(EINVAL, "the client is closed")
        return self._h

    def _error(self, rc):
        message = _lib.wh_client_errmsg(self._h).decode(errors="replace") if self._h else ""
        return error_for(rc, message)

    # ---- what it is ---------------------------------------------------------------------

    @property
    def id(self):
        """The session id the broker logs (32 hex digits)."""
        return _lib.wh_client_id(self._handle()).decode()

    def fileno(self):
        """A descriptor readable when an incoming stream or a broker message waits, and that
        reports hang-up when the broker is gone (wh_client_fd). Owned by the client."""
        return _lib.wh_client_fd(self._handle())

    def stats(self):
        """The broker's counters for this session (one round trip): a Stats."""
        raw = _lib.client_stats()
        with self._guard:
            rc = _lib.wh_client_stats(self._handle(), ctypes.byref(raw))
            if rc != 0:
                raise self._error(rc)
        return Stats(raw)

    # ---- opening and accepting ----------------------------------------------------------

    def open(self, peer, service=None, timeout=None):
        """Opens a stream to service (None or "": the peer's default) on peer (a configured
        peer broker's name, or "local"). timeout in seconds bounds the wait for a connection
        to the peer (None: the broker's connect-timeout; 0: only if one is ready now).
        Returns a Stream, writable at once."""
        out = ctypes.c_void_p()
        with self._guard:
            rc = _lib.wh_open(self._handle(), _encode(peer, "peer"), _encode(service, "service"),
                              _timeout_ms(timeout), ctypes.byref(out))
            if rc != 0:
                raise self._error(rc)
            return Stream(self, out.value)

    def listen(self, service):
        """Streams opened to service ("" is the default service) come to accept()."""
        with self._guard:
            rc = _lib.wh_listen(self._handle(), _encode(service, "service"))
            if rc != 0:
                raise self._error(rc)

    def unlisten(self, service):
        """Stops listening on service; streams already queued stay for accept()."""
        with self._guard:
            rc = _lib.wh_unlisten(self._handle(), _encode(service, "service"))
            if rc != 0:
                raise self._error(rc)

    def accept(self, timeout=None):
        """The next stream opened to a service this client listens on. timeout in seconds:
        None waits, 0 polls (WouldBlock when none is there), else Timeout when it passes."""
        out = ctypes.c_void_p()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._guard:
            handle = self._handle()
            while True:
                wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
                rc = _lib.wh_accept(handle, 0 if timeout == 0 else _timeout_ms(wait) or 1,
                                    ctypes.byref(out))
                if rc == 0:
                    return Stream(self, out.value)
                # a slice passed: go round (signal handlers run between slices) unless the
                # caller's own timeout did
                if rc != ETIMEOUT or (deadline is not None and time.monotonic() >= deadline):
                    raise self._error(rc)


class Stream(_Handle):
    """A reliable, ordered byte stream in both directions, like a connected TCP socket.

    Made by Client.open and Client.accept. read/readinto return b""/0 at the end of the
    stream; write takes what fits (at least one byte when blocking), write_all takes all;
    shutdown() half-closes. Use it as a context manager, or call close().
    """

    def __init__(self, client, handle):
        self._client = client  # keeps the session alive while the stream is
        self._h = handle
        self._guard = _Guard("stream")
        self._timeout = None
        self._blocking = True
        self._shut = False
        self._read_deadline = 0  # the deadline set in C now, in ns (0: none)
        self._write_deadline = 0
        # what it is never changes: kept, so that it can be logged after close() too
        self.id = _lib.wh_stream_id(handle)
        self.service = _lib.wh_stream_service(handle).decode(errors="replace")
        self.peer = _lib.wh_stream_peer(handle).decode(errors="replace")
        client._streams.add(self)

    # ---- life ---------------------------------------------------------------------------

    def close(self):
        """Half-closes if needed, stops reading and frees the stream; bytes already written
        are still delivered. Idempotent."""
        if self._h is None:
            return
        with self._guard:
            handle, self._h = self._h, None
            if handle and not self._client.closed:
                _lib.wh_close(handle)

    def _handle(self):
        if self._h is None:
            raise error_for(EINVAL, "the stream is closed")
        return self._h

    def _error(self, rc):
        if rc == EWOULDBLOCK or rc == ETIMEOUT:  # never the stream's end: no need to ask
            return error_for(rc)
        code = ctypes.c_uint32()
        message = ctypes.c_char_p()
        if self._h and _lib.wh_stream_error(self._h, ctypes.byref(code), ctypes.byref(message)) == rc:
            return error_for(rc, (message.value or b"").decode(errors="replace"), code.value)
        return error_for(rc)

    # ---- what it is ---------------------------------------------------------------------

    # id, service (the one it was opened to or accepted on) and peer (the peer broker at
    # the other end, as this broker names it; "local" on one host) are attributes.

    @property
    def error(self):
        """None, or the Error that ended the stream (a RemoteError with .remote_code...)."""
        with self._guard:
            code = ctypes.c_uint32()
            message = ctypes.c_char_p()
            rc = _lib.wh_stream_error(self._handle(), ctypes.byref(code), ctypes.byref(message))
            return error_for(rc, (message.value or b"").decode(errors="replace"),
                             code.value) if rc else None

    def fileno(self):
        """A descriptor readable when the stream may have news (wh_stream_fd; for a stream to
        a peer broker the first call makes it, at one descriptor here and one in the broker).
        Owned by the stream: do not read or close it."""
        with self._guard:
            fd = _lib.wh_stream_fd(self._handle())
            if fd < 0:
                raise self._client._error(CODES["WH_ESYSTEM"])
            return fd

    # ---- modes --------------------------------------------------------------------------

    def settimeout(self, timeout):
        """Seconds each blocking read or write may wait (None: no limit; 0: non-blocking)."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be None or >= 0")
        self.setblocking(timeout != 0)
        self._timeout = None if timeout in (None, 0) else float(timeout)

    def gettimeout(self):
        return 0.0 if not self._blocking else self._timeout

    def setblocking(self, flag):
        """False: reads and writes that would wait raise WouldBlock (a BlockingIOError)."""
        with self._guard:
            _lib.wh_set_nonblocking(self._handle(), not flag)
            self._blocking = bool(flag)
            if not flag:
                self._timeout = None

    def getblocking(self):
        return self._blocking

    def set_spin(self, seconds):
        """How long a blocking call watches the ring before it sleeps (wh_set_spin)."""
        with self._guard:
            _lib.wh_set_spin(self._handle(), int(seconds * 1e9))

    # ---- the calls: raw results (count or negative code), for this class and asyncio ----

    def _deadline(self, setter, current, user_deadline):
        """Sets the C deadline for the next call; returns the value set."""
        now = time.monotonic_ns()  # CLOCK_MONOTONIC, as wh_now_ns
        want = now + _SLICE_NS if user_deadline is None else min(user_deadline, now + _SLICE_NS)
        if user_deadline is not None or current - now < _SLICE_NS // 2:
            setter(self._h, want)
            return want
        return current

    def _raw_read(self, address, length):
        if not self._blocking:
            return _lib.wh_read(self._h, address, length)
        user = None if self._timeout is None else time.monotonic_ns() + int(self._timeout * 1e9)
        while True:
            self._read_deadline = self._deadline(_lib.wh_set_read_deadline, self._read_deadline, user)
            n = _lib.wh_read(self._h, address, length)
            if n != ETIMEOUT or (user is not None and time.monotonic_ns() >= user):
                return n

    def _raw_write(self, address, length):
        """At most length bytes into the ring through reserve and commit, which (unlike
        wh_write) tell exactly how many went when a deadline passes."""
        room_at = ctypes.c_void_p()
        user = None
        if self._blocking and self._timeout is not None:
            user = time.monotonic_ns() + int(self._timeout * 1e9)
        while True:
            if self._blocking:
                self._write_deadline = self._deadline(_lib.wh_set_write_deadline,
                                                      self._write_deadline, user)
            room = _lib.wh_write_reserve(self._h, ctypes.byref(room_at))
            if room > 0:
                take = min(room, length)
                ctypes.memmove(room_at.value, address, take)
                rc = _lib.wh_write_commit(self._h, take)
                return take if rc == 0 else rc
            if room == ESTREAM_CLOSED and not self._shut:
                return length  # the other end closed: nobody reads, bytes are discarded
            if room != ETIMEOUT or not self._blocking or (user is not None and time.monotonic_ns() >= user):
                return room

    # ---- reading ------------------------------------------------------------------------

    def readinto(self, buffer):
        """Reads up to len(buffer) bytes into it: the count, 0 at the end of the stream."""
        address, length, keep = _target(buffer)
        with self._guard:
            self._handle()
            n = self._raw_read(address, length)
            if n < 0:
                raise self._error(n)
            return n

    def read(self, n=-1):
        """Up to n bytes (at least one, waiting for it); b"" at the end of the stream.
        n < 0 reads until the end of the stream."""
        if n < 0:
            chunks = []
            while True:
                chunk = self.read(65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        if n == 0:
            return b""
        buffer = ctypes.create_string_buffer(n)
        with self._guard:
            self._handle()
            got = self._raw_read(ctypes.addressof(buffer), n)
            if got < 0:
                raise self._error(got)
        return buffer.raw[:got]

    recv = read
    recv_into = readinto

    # ---- writing ------------------------------------------------------------------------

    def write(self, data):
        """Writes what fits of data, at least one byte (blocking; else WouldBlock): the count.
        Once the other end closed the stream, bytes are discarded and count as written."""
        address, length, keep = _source(data)
        if not length:
            return 0
        with self._guard:
            self._handle()
            n = self._raw_write(address, length)
            if n < 0:
                raise self._error(n)
            return n

    def write_all(self, data):
        """Writes every byte of data (like socket.sendall). On an error, some may have gone."""
        address, length, keep = _source(data)
        done = 0
        with self._guard:
            self._handle()
            while done < length:
                n = self._raw_write(address + done, length - done)
                if n < 0:
                    raise self._error(n)
                done += n

    send = write
    sendall = write_all

    def shutdown(self, how=None):
        """Half-close: no more writes; the other end reads every byte, then the end of the
        stream. Reading goes on. (how is accepted for socket compatibility; it must be
        None or socket.SHUT_WR.)"""
        if how not in (None, 1):
            raise ValueError("a stream half-closes its writing side only (SHUT_WR)")
        with self._guard:
            rc = _lib.wh_shutdown(self._handle())
            self._shut = True
            if rc != 0:
                raise self._error(rc)

    def abort(self, code=ESTREAM_CLOSED):
        """Ends the stream abnormally: the other end sees code (a WH_E* value). close() still
        frees it."""
        with self._guard:
            rc = _lib.wh_abort(self._handle(), code)
            if rc != 0:
                raise self._error(rc)

    # ---- file-like ----------------------------------------------------------------------

    def makefile(self, mode="r", buffering=None, *, encoding=None, errors=None, newline=None):
        """A file object over the stream, as socket.makefile: "rb", "wb", "rwb" or text
        modes. Closing the file does not close the stream."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError("invalid mode %r (only r, w, b)" % mode)
        reading, writing, binary = "r" in mode, "w" in mode, "b" in mode
        if not (reading or writing):
            raise ValueError("mode must have r or w")
        raw = StreamIO(self, reading, writing)
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        size = io.DEFAULT_BUFFER_SIZE if buffering in (None, -1) else buffering
        if reading and writing:
            buffered = io.BufferedRWPair(raw, raw, size)
        elif reading:
            buffered = io.BufferedReader(raw, size)
        else:
            buffered = io.BufferedWriter(raw, size)
        if binary:
            return buffered
        text = io.TextIOWrapper(buffered, encoding, errors, newline)
        text.mode = mode
        return text

    def __repr__(self):
        if self._h is None:
            return "<wormhole.Stream closed>"
        return "<wormhole.Stream id=%d peer=%r service=%r>" % (self.id, self.peer, self.service)


class StreamIO(io.RawIOBase):
    """A raw file over a Stream, for io.BufferedReader/Writer (what makefile returns)."""

    def __init__(self, stream, reading, writing):
        super().__init__()
        self._stream = stream
        self._reading = reading
        self._writing = writing

    def readable(self):
        return self._reading

    def writable(self):
        return self._writing

    def readinto(self, buffer):
        self._checkClosed()
        try:
            return self._stream.readinto(buffer)
        except WouldBlock:
            return None  # a non-blocking raw file's way to say so

    def write(self, data):
        self._checkClosed()
        try:
            return self._stream.write(data)
        except WouldBlock:
            return None

    def fileno(self):
        return self._stream.fileno()
