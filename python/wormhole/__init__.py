"""wormhole: Python binding of libwormholeclient (ctypes), in the shape of the socket module.

    import wormhole
    with wormhole.Client() as client:                  # $WORMHOLE_SOCKET or the default
        with client.open("b", "echo", timeout=5) as s:  # peer broker b, service echo
            s.write_all(b"hello")
            s.shutdown()
            print(s.read(100))

Servers: client.listen("svc"), then client.accept(). asyncio: wormhole.aio. Every failure
raises a subclass of wormhole.Error (.code, .name, .message). Threads: one at a time per
Client and per Stream (wormhole.Busy otherwise); see wormhole.client.
"""

from .errors import (CODES, NAMES, AcceptQueueFull, AccessDenied, AppGone, BrokerGone, Busy, Error,
                     InvalidArgument, LimitReached, NoBroker, NoService, NotBroker, PeerUnreachable,
                     ProtocolError, RemoteError, ServiceTaken, SocketDenied, StreamClosed, Timeout,
                     UnknownPeer, WouldBlock, error_for, strerror)
from .client import Client, Stats, Stream, StreamIO, version
from . import aio  # noqa: E402  (wormhole.aio.Client: the asyncio API)

PEER_LOCAL = "local"
DEFAULT_SOCKET = "/run/wormhole/broker.sock"

# The codes as module constants: wormhole.WH_ETIMEOUT == -21.
globals().update(CODES)

__version__ = "0.1.0"
__all__ = ["Client", "Stream", "StreamIO", "Stats", "version", "Error", "Timeout", "WouldBlock",
           "BrokerGone", "NoBroker", "NotBroker", "SocketDenied", "AccessDenied", "ServiceTaken",
           "NoService", "UnknownPeer", "PeerUnreachable", "StreamClosed", "RemoteError", "AppGone",
           "AcceptQueueFull", "LimitReached", "InvalidArgument", "ProtocolError", "Busy",
           "error_for", "strerror", "CODES", "NAMES", "PEER_LOCAL", "DEFAULT_SOCKET"]
