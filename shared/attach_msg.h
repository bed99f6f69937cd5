/* The attach protocol between apps and the broker: messages on a SOCK_SEQPACKET Unix socket. */
#ifndef WORMHOLE_SHARED_ATTACH_MSG_H
#define WORMHOLE_SHARED_ATTACH_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <wormhole/errors.h>

#include "counters.h"

/*
 * One message per packet: an 8-byte header, then the type's fields in order. Integers are
 * little-endian (both ends share a host); strings are a u8 length and 0..255 bytes without
 * NUL. Messages that hand over a stream carry file descriptors (SCM_RIGHTS) beside the bytes:
 * the client's doorbell, its notify segment and the app's end of its news socket pair, a
 * stream's segment (memfd), the app's end of a same-host stream's wake-up socket pair, one
 * end of a socket pair an app makes for one stream. docs/ATTACH.md is the specification.
 *
 *   header: [version u8 = ATTACH_VERSION][type u8][reserved u16 = 0][request id u32]
 *
 * Bump ATTACH_VERSION if any of these change. Codec only: no I/O, no allocation.
 */

#define ATTACH_VERSION 5u /* 2: ACCEPTED; 3: OPEN carries the app's timeout; 4: the news
			    * bitmap and eventfd in WELCOME, no per-stream descriptor, STREAM_FD;
			    * 5: apps are woken on socket pairs (shared/attach_wake.h), not on
			    * eventfds and pipes: one descriptor for a same-host stream, a socket
			    * for STREAM_FD */
#define ATTACH_HEADER_SIZE 8u
#define ATTACH_STRING_MAX 255u
#define ATTACH_MESSAGE_MAX 1024u /* every encoded message fits */
#define ATTACH_CLIENT_ID_SIZE 16u
#define ATTACH_MAX_FDS 3u        /* the most descriptors one message carries */
#define ATTACH_NO_SLOT 0xFFFFFFFFu /* OPENED/INCOMING of a same-host stream: no doorbell slot */
#define ATTACH_NO_TIMEOUT 0xFFFFFFFFu /* OPEN: wait as long as the peer's connect timeout allows */

enum attach_type {
	/* app -> broker */
	ATTACH_HELLO = 1,    /* version, pid */
	ATTACH_OPEN = 2,     /* peer, service, timeout: answered by OPENED or RESULT, by the
			      * timeout at the latest (the broker enforces it) */
	ATTACH_LISTEN = 3,   /* service: answered by RESULT */
	ATTACH_UNLISTEN = 4, /* service: answered by RESULT */
	ATTACH_RELEASE = 5,  /* handle: the app is done with the stream (no answer) */
	ATTACH_STATS = 6,    /* no fields: answered by STATS_REPLY */
	ATTACH_ACCEPTED = 7, /* handle: wh_accept took this INCOMING stream (no answer); the broker
			   * hands a listening app at most its accept backlog of streams it has not
			   * taken yet */
	ATTACH_STREAM_FD = 8, /* handle, + one end of a SOCK_SEQPACKET socket pair: the app wants a
			   * descriptor of its own for this stream (wh_stream_fd); the broker sends a
			   * wake-up on it at each wake-up and closes it when it lets go (no answer) */
	/* broker -> app */
	ATTACH_WELCOME = 32,  /* version, client id, limits, + doorbell (an eventfd, or on kernels
			       * without RWF_NOWAIT reads the app's end of a socket pair), notify
			       * memfd, the app's end of the news pair */
	ATTACH_OPENED = 33,   /* handle, capacity, tx ring, slot, + segment [, the app's end of the
			       * stream's wake-up pair: a same-host stream] */
	ATTACH_INCOMING = 34, /* the same as OPENED, plus service and peer */
	ATTACH_RESULT = 35,   /* error (WH_OK or WH_E*), message */
	ATTACH_STATS_REPLY = 36, /* count, then count u64 counters in enum attach_stat order */
};

/* STATS_REPLY carries a count, then that many u64 counters in ATTACH_STATS_TABLE's order
 * (shared/counters.h). New ones are only ever appended: a reader takes the ones it knows and
 * ignores the rest, a writer of fewer leaves the reader's extra ones 0. */
#define ATTACH_STATS_MAX 32u

struct attach_msg {
	enum attach_type type;
	uint32_t request_id;  /* chosen by the app; answers carry it back (0 in INCOMING) */
	uint32_t version;     /* HELLO, WELCOME */
	uint32_t pid;         /* HELLO: informative only, the broker trusts SO_PEERCRED */
	uint32_t timeout_ms;  /* OPEN: answer by then (0: only if a connection is ready now), or
			       * ATTACH_NO_TIMEOUT */
	uint8_t client_id[ATTACH_CLIENT_ID_SIZE]; /* WELCOME */
	uint32_t max_streams; /* WELCOME */
	uint32_t ring_capacity; /* WELCOME, OPENED, INCOMING */
	uint64_t handle;      /* OPENED, INCOMING, RELEASE, ACCEPTED */
	uint8_t tx_ring;      /* OPENED, INCOMING: the ring the app writes (0 or 1) */
	uint32_t slot;        /* OPENED, INCOMING: the stream's bit in the doorbell bitmap, or
			       * ATTACH_NO_SLOT for a same-host stream (it brings its own wake-up pair) */
	int32_t error;        /* RESULT */
	char peer[ATTACH_STRING_MAX + 1];    /* OPEN, INCOMING ("local" for same-host) */
	char service[ATTACH_STRING_MAX + 1]; /* OPEN, LISTEN, UNLISTEN, INCOMING */
	char message[ATTACH_STRING_MAX + 1]; /* RESULT */
	uint8_t stats_count;               /* STATS_REPLY: 0..ATTACH_STATS_MAX */
	uint64_t stats[ATTACH_STATS_MAX];     /* STATS_REPLY, in ATTACH_STATS_TABLE order */
};

/* Bytes written (> 0), or WH_EINVAL (unknown type, string too long or with NUL, bad
 * tx_ring) / WH_EBUFFER_TOO_SMALL. */
int attach_encode(uint8_t *out, size_t cap, const struct attach_msg *msg);
/* WH_OK, or WH_EPROTOCOL for anything malformed: short or long packet, wrong version,
 * unknown type, bad string, bad field value. msg is fully written (zeroed first). */
int attach_decode(const uint8_t *in, size_t length, struct attach_msg *msg);
/* Which rule a message that attach_decode refuses broke, in words for the RESULT that ends
 * the session ("unknown message type", "bytes after the last field", ...); NULL if none. */
const char *attach_decode_error(const uint8_t *in, size_t length);
/* How many fds travel with this message: WELCOME 3 (doorbell, notify segment, news);
 * OPENED and INCOMING 1 (segment), or 2 with ATTACH_NO_SLOT (segment, wake-up socket);
 * STREAM_FD 1 (a socket); others 0. */
unsigned attach_fd_count(const struct attach_msg *msg);
const char *attach_type_name(unsigned type);

/* STATS_REPLY's array from the named counters and back (counters it lacks stay 0). */
void attach_stats_pack(const struct attach_stats *stats, struct attach_msg *reply);
void attach_stats_unpack(const struct attach_msg *reply, struct attach_stats *stats);

#endif
