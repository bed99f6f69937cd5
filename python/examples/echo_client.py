#!/usr/bin/env python3
"""echo_client.py: sends its standard input (or the words given) on a stream, half-closes,
and prints what comes back: blocking calls, as with a socket.

    echo_client.py [-s SOCKET] [-t TIMEOUT] PEER SERVICE [WORD...]

PEER is a peer broker's name from the broker's configuration, or "local" for an app on the
same broker (such as echo_server.py); a broker's built-in service "echo" answers too.
"""

import argparse
import sys

import wormhole


def main(args):
    data = (" ".join(args.words) + "\n").encode() if args.words else sys.stdin.buffer.read()
    with wormhole.Client(args.socket) as client:
        with client.open(args.peer, args.service, timeout=args.timeout) as stream:
            stream.settimeout(args.timeout)
            # an echo returns bytes only as they are read: send in pieces and read the
            # answer in between, keeping at most one piece in flight
            sent = received = 0
            while sent < len(data):
                sent += stream.write(data[sent:sent + 65536])
                while received < sent - 65536:
                    chunk = stream.read(65536)
                    sys.stdout.buffer.write(chunk)
                    received += len(chunk)
            stream.shutdown()
            sys.stdout.buffer.write(stream.read())  # the rest, to the end of the stream
    sys.stdout.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-s", "--socket", help="the broker's socket ($WORMHOLE_SOCKET or the default)")
    parser.add_argument("-t", "--timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("peer")
    parser.add_argument("service")
    parser.add_argument("words", nargs="*")
    args = parser.parse_args()
    try:
        main(args)
    except wormhole.Error as e:
        sys.exit("echo_client: %s" % e)
