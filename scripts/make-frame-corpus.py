#!/usr/bin/env python3
"""Writes the frame decoder's seed corpus (fuzz/corpus/frame_decoder/).

Each file is: [ceiling selector byte][split pattern byte][wire bytes], the layout
fuzz/fuzz_frame_decoder.c expects. Run from the top of the tree; output is deterministic.
"""
import os
import struct

OUT = "fuzz/corpus/frame_decoder"


def frame(ftype, sid, payload=b"", version=1, length=None):
    n = len(payload) if length is None else length
    return struct.pack(">BBII", version, ftype, sid, n) + payload


golden = {
    "handshake": frame(6, 1),
    "handshake_service": frame(6, 1, b"echo"),
    "data_hi": frame(1, 1, b"hi"),
    "window_update": frame(2, 3, struct.pack(">I", 65536)),
    "ping": frame(3, 0, struct.pack(">I", 7)),
    "pong": frame(4, 0, struct.pack(">I", 7)),
    "close": frame(5, 5),
    "error_503": frame(7, 513, struct.pack(">I", 503) + b"accept queue full"),
    "data_empty": frame(1, 7),
    "data_32k": frame(1, 9, bytes(range(256)) * 128),
}
malformed = {
    "bad_version": frame(2, 1, b"\0\0\0\1", version=9),
    "unknown_type": frame(0x42, 3, b"xyz"),
    "type_zero": frame(0, 3),
    "ping_nonzero_stream": frame(3, 5, b"\0\0\0\1"),
    "data_stream_zero": frame(1, 0, b"x"),
    "short_window_update": frame(2, 1, b"\0\1"),
    "long_ping": frame(3, 0, b"\0\0\0\1\2"),
    "short_error": frame(7, 1, b"\0\1"),
    "huge_length": frame(1, 1, length=0xFFFFFFFF),
    "truncated_header": frame(6, 1)[:7],
    "truncated_payload": frame(1, 1, b"hello")[:12],
    "http_request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "long_error": frame(7, 0, struct.pack(">I", 500) + b"m" * 5000),
    "big_handshake": frame(6, 1, b"s" * 5000),
    "malformed_run": frame(0x42, 1) * 10,
}
conversation = b"".join([
    frame(6, 1, b"echo"), frame(1, 1, b"hello"), frame(2, 1, struct.pack(">I", 5)),
    frame(3, 0, struct.pack(">I", 1)), frame(9, 1), frame(1, 1, b"world"),
    frame(5, 1), frame(7, 0, struct.pack(">I", 505) + b"bye"),
])

os.makedirs(OUT, exist_ok=True)
for selector, (name, wire) in enumerate({**golden, **malformed, "conversation": conversation}.items()):
    for ceiling in (5, selector % 7):
        with open(os.path.join(OUT, f"{name}-{ceiling}"), "wb") as f:
            f.write(bytes([ceiling, (selector * 37) & 0xFF]) + wire)
