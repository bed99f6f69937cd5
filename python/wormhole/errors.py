"""wormhole.Error and its subclasses: one per WH_E* code that callers tell apart.

Every failure of the binding raises a subclass of Error carrying .code (the negative WH_E*
value), .name ("WH_ETIMEOUT") and .message (the broker's or the library's own words, from
wh_client_errmsg, wh_client_attach_detail or wh_stream_error; else wh_strerror). Where a
built-in exception means the same thing, the class derives from it too, so that code written
for sockets (except TimeoutError, BlockingIOError, ConnectionError, PermissionError) works.
"""

from . import _lib

# Every code the library knows, by name: {"WH_ETIMEOUT": -21, ...}. Taken from the library
# at import, so codes appended to the C table appear without a change here.
CODES = {}
for _value in range(-1, -128, -1):
    _name = _lib.wh_error_name(_value)
    if _name is not None:
        CODES[_name.decode()] = _value
NAMES = {value: name for name, value in CODES.items()}


class Error(Exception):
    """A call into libwormholeclient failed."""

    def __init__(self, code, message=None, remote_code=0):
        self.code = code
        self.name = NAMES.get(code) or "WH_E%d" % -code
        self.message = message or strerror(code)
        self.remote_code = remote_code  # the wire code of an error from the remote end, or 0
        super().__init__("%s: %s" % (self.name, self.message))


class Timeout(Error, TimeoutError):
    """WH_ETIMEOUT: a timeout or deadline passed."""


class WouldBlock(Error, BlockingIOError):
    """WH_EWOULDBLOCK: a non-blocking call found nothing to do; wait and retry."""


class BrokerGone(Error, ConnectionError):
    """WH_EBROKER_GONE: the broker died or closed the session; every later call fails too."""


class NoBroker(Error, ConnectionRefusedError):
    """WH_ENO_BROKER: nothing listens at the socket path."""


class NotBroker(Error, ConnectionError):
    """WH_ENOT_BROKER: what answers at the socket path is not a wormhole broker."""


class SocketDenied(Error, PermissionError):
    """WH_ESOCKET_DENIED: this user may not connect to the broker's socket."""


class AccessDenied(Error, PermissionError):
    """WH_EACCESS: the broker's (or the peer's) access rules refuse this."""


class ServiceTaken(Error):
    """WH_ESERVICE_TAKEN: another app listens on that service."""


class NoService(Error):
    """WH_ENO_SERVICE: nobody listens on that service."""


class UnknownPeer(Error, LookupError):
    """WH_EUNKNOWN_PEER: no peer of that name is configured in the broker."""


class PeerUnreachable(Error, ConnectionError):
    """WH_EPEER_UNREACHABLE: the broker cannot reach the peer broker."""


class StreamClosed(Error, BrokenPipeError):
    """WH_ESTREAM_CLOSED: a write after shutdown(), or a stream that is already over."""


class RemoteError(Error, ConnectionResetError):
    """WH_EREMOTE: the remote end ended the stream with an error (.remote_code, .message)."""


class AppGone(Error, ConnectionResetError):
    """WH_EAPP_GONE: the app at the other end of the stream went away."""


class AcceptQueueFull(Error):
    """WH_EACCEPT_QUEUE_FULL: the listener's accept backlog is full."""


class LimitReached(Error):
    """WH_ELIMIT: a configured limit (streams, memory, listeners) was reached."""


class InvalidArgument(Error, ValueError):
    """WH_EINVAL: a bad argument, or an object used in a way the library forbids."""


class ProtocolError(Error):
    """WH_EPROTOCOL: the other side broke the protocol (an incompatible broker)."""


class Busy(InvalidArgument):
    """An object used by two threads at once, which the C library forbids (WH_EINVAL)."""


_CLASSES = {
    "WH_ETIMEOUT": Timeout, "WH_EWOULDBLOCK": WouldBlock, "WH_EBROKER_GONE": BrokerGone,
    "WH_ENO_BROKER": NoBroker, "WH_ENOT_BROKER": NotBroker, "WH_ESOCKET_DENIED": SocketDenied,
    "WH_EACCESS": AccessDenied, "WH_ESERVICE_TAKEN": ServiceTaken, "WH_ENO_SERVICE": NoService,
    "WH_EUNKNOWN_PEER": UnknownPeer, "WH_EPEER_UNREACHABLE": PeerUnreachable,
    "WH_ESTREAM_CLOSED": StreamClosed, "WH_EREMOTE": RemoteError, "WH_EAPP_GONE": AppGone,
    "WH_EACCEPT_QUEUE_FULL": AcceptQueueFull, "WH_ELIMIT": LimitReached,
    "WH_EINVAL": InvalidArgument, "WH_EPROTOCOL": ProtocolError,
}
_BY_CODE = {CODES[name]: cls for name, cls in _CLASSES.items() if name in CODES}


_STRERROR = {}


def strerror(code):
    """The library's sentence for a code (wh_strerror; static strings, so kept)."""
    text = _STRERROR.get(code)
    if text is None:
        text = _STRERROR[code] = _lib.wh_strerror(code).decode(errors="replace")
    return text


def error_for(code, message=None, remote_code=0):
    """The exception (not raised) for a negative WH_E* code."""
    return _BY_CODE.get(code, Error)(code, message, remote_code)
