#!/usr/bin/env python3
"""bulk.py: the Python counterpart of examples/wh-send for one stream: sends BYTES to an echo
service, reads them back into one reused buffer (readinto) and checks every byte.

    bulk.py [-s SOCKET] [-b BYTES] PEER SERVICE

One thread, a non-blocking stream and select() on its descriptor, as wh-send's poll loop.
Prints "bulk.py: N bytes echoed in T s (R MB/s)", as wh-send does.
"""

import argparse
import select
import sys
import time

import wormhole


def main(args):
    block = bytes((i * 131 + (i >> 9)) & 0xFF for i in range(1 << 16))
    blocks = memoryview(block)  # slices of it are written without a copy
    size = args.bytes
    buffer = bytearray(1 << 16)
    with wormhole.Client(args.socket) as client, client.open(args.peer, args.service, timeout=10) as s:
        s.setblocking(False)
        fd = s.fileno()
        sent = received = 0
        shut = False
        start = time.monotonic()
        while True:
            progress = False
            try:
                while sent < size:
                    offset = sent % len(block)
                    sent += s.write(blocks[offset:offset + min(size - sent, len(block) - offset)])
                    progress = True
            except wormhole.WouldBlock:
                pass
            if sent == size and not shut:
                s.shutdown()
                shut = True
            try:
                while True:
                    n = s.readinto(buffer)
                    if not n:
                        break
                    offset = received % len(block)
                    first = min(n, len(block) - offset)  # the pattern repeats every 64 KiB
                    if buffer[:first] != block[offset:offset + first] or buffer[first:n] != block[:n - first]:
                        sys.exit("bulk.py: bytes differ near offset %d" % received)
                    received += n
                    progress = True
            except wormhole.WouldBlock:
                pass
            else:
                break  # the end of the stream
            if not progress:
                select.select([fd], [], [], 1.0)
        seconds = time.monotonic() - start
    if received != size:
        sys.exit("bulk.py: %d of %d bytes came back" % (received, size))
    print("bulk.py: %d bytes echoed in %.3f s (%.1f MB/s)" % (received, seconds, received / seconds / 1e6))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-s", "--socket", help="the broker's socket ($WORMHOLE_SOCKET or the default)")
    parser.add_argument("-b", "--bytes", type=int, default=1 << 24, help="bytes to send (default 16 MiB)")
    parser.add_argument("peer")
    parser.add_argument("service")
    try:
        main(parser.parse_args())
    except wormhole.Error as e:
        sys.exit("bulk.py: %s" % e)
