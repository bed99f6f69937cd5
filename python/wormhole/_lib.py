"""Loads libwormholeclient and declares the prototypes of <wormhole/wormhole.h>.

Where the library comes from, first match wins:
  1. $WORMHOLE_LIBRARY, a path to the shared object;
  2. the build tree, when this package is imported from python/ of a built source tree
     (libclient/.libs/libwormholeclient.so.0 beside it);
  3. ctypes.util.find_library("wormholeclient"), i.e. an installed library ldconfig knows;
  4. the soname itself, which the dynamic loader looks up ($LD_LIBRARY_PATH and so on).

ctypes.CDLL releases the GIL around every call, so a thread blocked in wh_read or wh_accept
lets the others run.
"""

import ctypes
import ctypes.util
import os

SONAME = "libwormholeclient.so.0"


def _candidates():
    env = os.environ.get("WORMHOLE_LIBRARY")
    if env:
        yield env
        return  # an explicit choice: no silent fallback to another copy
    here = os.path.dirname(os.path.abspath(__file__))
    built = os.path.join(here, os.pardir, os.pardir, "libclient", ".libs", SONAME)
    if os.path.exists(built):
        yield os.path.normpath(built)
    found = ctypes.util.find_library("wormholeclient")
    if found:
        yield found
    yield SONAME


def _load():
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path, use_errno=True)
        except OSError as e:
            errors.append("%s: %s" % (path, e))
    raise ImportError("wormhole: cannot load libwormholeclient (set WORMHOLE_LIBRARY to its path): "
                      + "; ".join(errors))


lib = _load()

c_int, c_long, c_size_t, c_bool = ctypes.c_int, ctypes.c_long, ctypes.c_size_t, ctypes.c_bool
c_char_p, c_void_p, c_int64, c_uint64, c_uint32 = (ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64,
                                                   ctypes.c_uint64, ctypes.c_uint32)
P = ctypes.POINTER
DETAIL_MAX = 512
EVENT_NEWS = 1


class client_stats(ctypes.Structure):
    _fields_ = [(name, c_uint64) for name in (
        "streams", "streams_opened", "streams_accepted", "ring_bytes", "ring_bytes_limit",
        "max_streams", "bytes_sent", "bytes_received", "broker_clients", "broker_streams")] + [
        ("reserved", c_uint64 * 6)]


class event(ctypes.Structure):
    _fields_ = [("stream", c_void_p), ("events", c_uint32)]


def _proto(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = argtypes
    return f


wh_version = _proto("wh_version", c_char_p)
wh_now_ns = _proto("wh_now_ns", c_int64)
wh_strerror = _proto("wh_strerror", c_char_p, c_int)
wh_error_name = _proto("wh_error_name", c_char_p, c_int)
wh_client_attach_detail = _proto("wh_client_attach_detail", c_int, c_char_p, P(c_void_p), c_char_p, c_size_t)
wh_client_errmsg = _proto("wh_client_errmsg", c_char_p, c_void_p)
wh_client_detach = _proto("wh_client_detach", None, c_void_p)
wh_client_fd = _proto("wh_client_fd", c_int, c_void_p)
wh_client_id = _proto("wh_client_id", c_char_p, c_void_p)
wh_client_stats = _proto("wh_client_stats", c_int, c_void_p, P(client_stats))
wh_open = _proto("wh_open", c_int, c_void_p, c_char_p, c_char_p, c_int, P(c_void_p))
wh_open_start = _proto("wh_open_start", c_int, c_void_p, c_char_p, c_char_p, c_int, P(c_uint64))
wh_open_result = _proto("wh_open_result", c_int, c_void_p, c_uint64, P(c_void_p))
wh_open_cancel = _proto("wh_open_cancel", c_int, c_void_p, c_uint64)
wh_listen = _proto("wh_listen", c_int, c_void_p, c_char_p)
wh_unlisten = _proto("wh_unlisten", c_int, c_void_p, c_char_p)
wh_accept = _proto("wh_accept", c_int, c_void_p, c_int, P(c_void_p))
wh_read = _proto("wh_read", c_long, c_void_p, c_void_p, c_size_t)
wh_write = _proto("wh_write", c_long, c_void_p, c_void_p, c_size_t)
wh_write_reserve = _proto("wh_write_reserve", c_long, c_void_p, P(c_void_p))
wh_write_commit = _proto("wh_write_commit", c_int, c_void_p, c_size_t)
wh_shutdown = _proto("wh_shutdown", c_int, c_void_p)
wh_abort = _proto("wh_abort", c_int, c_void_p, c_int)
wh_close = _proto("wh_close", c_int, c_void_p)
wh_set_nonblocking = _proto("wh_set_nonblocking", c_int, c_void_p, c_bool)
wh_set_read_deadline = _proto("wh_set_read_deadline", c_int, c_void_p, c_int64)
wh_set_write_deadline = _proto("wh_set_write_deadline", c_int, c_void_p, c_int64)
wh_set_spin = _proto("wh_set_spin", c_int, c_void_p, c_int64)
wh_stream_fd = _proto("wh_stream_fd", c_int, c_void_p)
wh_client_wait = _proto("wh_client_wait", c_int, c_void_p, P(event), c_int, c_int)
wh_client_wait_fd = _proto("wh_client_wait_fd", c_int, c_void_p)
wh_stream_id = _proto("wh_stream_id", c_uint64, c_void_p)
wh_stream_service = _proto("wh_stream_service", c_char_p, c_void_p)
wh_stream_peer = _proto("wh_stream_peer", c_char_p, c_void_p)
wh_stream_is_closed = _proto("wh_stream_is_closed", c_bool, c_void_p)
wh_stream_error = _proto("wh_stream_error", c_int, c_void_p, P(c_uint32), P(c_char_p))
