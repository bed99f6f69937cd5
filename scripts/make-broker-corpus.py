#!/usr/bin/env python3
"""Writes seed corpora for the in-process broker fuzz targets (fuzz/corpus/mux, fuzz/corpus/apps).

The layouts are the scripts fuzz/fuzz_mux.c and fuzz/fuzz_apps.c read: opcodes and their
argument bytes. Seeds walk the common paths so the fuzzer starts deep. Run from the top of
the tree; output is deterministic.
"""
import os
import struct


def frame(ftype, sid, payload=b"", version=1, length=None):
    n = len(payload) if length is None else length
    return struct.pack(">BBII", version, ftype, sid, n) + payload


# ---- mux: [setup] then (op, arg[, bytes]) steps ---------------------------------------
def peer(data):
    """op 0 feeds arg+1 bytes: split longer runs."""
    out = b""
    while data:
        chunk, data = data[:256], data[256:]
        out += bytes([0, len(chunk) - 1]) + chunk
    return out


DRAIN = bytes([3, 255])
TICK = bytes([4, 32])

mux_seeds = {
    # a peer opens echo streams, sends, half-closes, grants credit; we drain
    "server_echo": bytes([2]) + peer(frame(6, 1, b"echo") + frame(1, 1, b"hello") + frame(5, 1))
    + DRAIN + peer(frame(2, 1, struct.pack(">I", 65536))) + DRAIN,
    # accept queue, small limits: accept, read, write, release
    "server_accept_small": bytes([4]) + peer(frame(6, 1) + frame(1, 1, b"x" * 300))
    + bytes([11, 0, 7, 0, 6, 20, 8, 0]) + DRAIN + bytes([10, 0]) + DRAIN + TICK * 4,
    # client role: open streams, write, peer answers and closes
    "client_open": bytes([1]) + bytes([5, 1, 6, 40, 8, 1]) + DRAIN
    + peer(frame(1, 1, b"back") + frame(5, 1) + frame(2, 1, struct.pack(">I", 4096))) + DRAIN
    + bytes([7, 1, 10, 1]) + DRAIN,
    # data before handshake, malformed frames, a fatal one
    "early_and_malformed": bytes([0]) + peer(frame(1, 3, b"early") + frame(5, 3) + frame(6, 3, b"discard"))
    + peer(frame(2, 3, b"abc") + frame(3, 5, b"\0\0\0\1") + frame(9, 1, b"", version=7))
    + DRAIN + peer(frame(1, 1, length=0x1000001)) + DRAIN,
    # keep-alive with a clock that runs, pings answered
    "keepalive": bytes([8 | 2]) + peer(frame(3, 0, struct.pack(">I", 7))) + DRAIN + TICK * 8
    + peer(frame(4, 0, struct.pack(">I", 1))) + DRAIN + TICK * 40,
    # a released stream that lingers, then resets
    "linger": bytes([4 | 1]) + bytes([5, 2, 6, 100]) + DRAIN + bytes([10, 2]) + TICK * 8 + DRAIN,
    # no flow control
    "no_flow_control": bytes([16 | 2]) + peer(frame(6, 1, b"echo") + frame(1, 1, b"y" * 200) + frame(5, 1))
    + DRAIN,
}

# ---- apps: (op, arg[, ...]) steps ----------------------------------------------------
CONNECT = lambda k: bytes([0, k])
VALID = lambda k, kind, arg=0: bytes([2, k + 4 * arg, kind])  # arg % 4 picks the session
RUN = bytes([4, 0])
READ = lambda k: bytes([5, k])
CLOSE = lambda k: bytes([3, k])

apps_seeds = {
    # attach, listen on "a", open local "a", read everything, release, close
    "local_pair": CONNECT(0) + VALID(0, 0) + RUN + READ(0) + bytes([2, 4 + 0, 2]) + RUN
    + bytes([2, 0 + 4, 1]) + RUN + READ(0) + bytes([2, 4, 5]) + bytes([2, 4, 4]) + RUN + CLOSE(0) + RUN,
    # a peer opens streams to a listener that accepts one and lets the backlog fill
    "peer_streams": CONNECT(1) + VALID(1, 0) + RUN + READ(1) + bytes([2, 1 + 4, 2]) + RUN
    + bytes([6, 1, 6, 1, 6, 1, 7, 1, 7, 0]) + RUN + READ(1) + bytes([2, 1 + 4, 5]) + RUN
    + bytes([8, 1, 0, 64, 0xff]) + RUN + bytes([8, 1, 1, 0, 0x7f]) + RUN + CLOSE(1) + RUN,
    # garbage before hello, and after
    "garbage": CONNECT(2) + bytes([1, 2, 5]) + b"\x09" * 5 + RUN + CONNECT(3) + VALID(3, 0) + RUN
    + bytes([1, 3, 9]) + b"\x02\x01\x00\x00\x00\x00\x00\x00\x01" + RUN + READ(3) + RUN,
    # an app that never reads its answers
    "never_reads": CONNECT(0) + VALID(0, 0) + RUN + VALID(0, 6) * 40 + RUN * 3 + CLOSE(0) + RUN,
}

for name, seeds in (("mux", mux_seeds), ("apps", apps_seeds)):
    out = os.path.join("fuzz", "corpus", name)
    os.makedirs(out, exist_ok=True)
    for seed, data in seeds.items():
        with open(os.path.join(out, seed), "wb") as f:
            f.write(data)
