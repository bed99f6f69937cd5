/* The attach protocol between apps and the broker: messages on a SOCK_SEQPACKET Unix socket. */
#ifndef WORMHOLE_SHARED_CTLMSG_H
#define WORMHOLE_SHARED_CTLMSG_H

#include <stddef.h>
#include <stdint.h>

#include <wormhole/errors.h>

/*
 * One message per packet: an 8-byte header, then the type's fields in order. Integers are
 * little-endian (both ends share a host); strings are a u8 length and 0..255 bytes without
 * NUL. Messages that hand over a stream carry file descriptors (SCM_RIGHTS) beside the bytes:
 * the stream's segment (memfd) and the two eventfds. docs/ATTACH.md is the specification.
 *
 *   header: [version u8 = CTL_VERSION][type u8][reserved u16 = 0][request id u32]
 *
 * Bump CTL_VERSION if any of these change. Codec only: no I/O, no allocation.
 */

#define CTL_VERSION 2u /* 2: ACCEPTED */
#define CTL_HEADER_SIZE 8u
#define CTL_STRING_MAX 255u
#define CTL_MESSAGE_MAX 1024u /* every encoded message fits */
#define CTL_CLIENT_ID_SIZE 16u
#define CTL_MAX_FDS 3u        /* the most descriptors one message carries */
#define CTL_NO_SLOT 0xFFFFFFFFu /* OPENED/INCOMING of a same-host stream: no doorbell slot */

enum ctl_type {
	/* app -> broker */
	CTL_HELLO = 1,    /* version, pid */
	CTL_OPEN = 2,     /* peer, service: answered by OPENED or RESULT */
	CTL_LISTEN = 3,   /* service: answered by RESULT */
	CTL_UNLISTEN = 4, /* service: answered by RESULT */
	CTL_RELEASE = 5,  /* handle: the app is done with the stream (no answer) */
	CTL_STATS = 6,    /* no fields: answered by STATS_REPLY */
	CTL_ACCEPTED = 7, /* handle: wh_accept took this INCOMING stream (no answer); the broker
			   * hands a listening app at most its accept backlog of streams it has not
			   * taken yet */
	/* broker -> app */
	CTL_WELCOME = 32,  /* version, client id, limits, + doorbell eventfd, notify memfd */
	CTL_OPENED = 33,   /* handle, capacity, tx ring, slot, + segment, wait eventfd [, wake eventfd] */
	CTL_INCOMING = 34, /* the same as OPENED, plus service and peer */
	CTL_RESULT = 35,   /* error (WH_OK or WH_E*), message */
	CTL_STATS_REPLY = 36, /* count, then count u64 counters in enum ctl_stat order */
};

/* The counters of STATS_REPLY, by index. New ones are only ever appended: a reader takes the
 * ones it knows and ignores the rest, a writer of fewer leaves the reader's extra ones 0. */
enum ctl_stat {
	CTL_STAT_STREAMS,           /* streams the app holds now */
	CTL_STAT_STREAMS_OPENED,    /* streams it opened since it attached */
	CTL_STAT_STREAMS_ACCEPTED,  /* streams handed to it as a listener */
	CTL_STAT_RING_BYTES,        /* shared memory allotted to its streams now */
	CTL_STAT_RING_BYTES_LIMIT,  /* the most it may have */
	CTL_STAT_MAX_STREAMS,       /* the most streams it may hold */
	CTL_STAT_BYTES_SENT,        /* bytes the broker took from its rings (peer streams) */
	CTL_STAT_BYTES_RECEIVED,    /* bytes the broker put into its rings (peer streams) */
	CTL_STAT_BROKER_CLIENTS,    /* apps attached to the broker now */
	CTL_STAT_BROKER_STREAMS,    /* app streams in the broker now, all apps */
	CTL_STAT_COUNT
};
#define CTL_STATS_MAX 32u

struct ctl_msg {
	enum ctl_type type;
	uint32_t request_id;  /* chosen by the app; answers carry it back (0 in INCOMING) */
	uint32_t version;     /* HELLO, WELCOME */
	uint32_t pid;         /* HELLO: informative only, the broker trusts SO_PEERCRED */
	uint8_t client_id[CTL_CLIENT_ID_SIZE]; /* WELCOME */
	uint32_t max_streams; /* WELCOME */
	uint32_t ring_capacity; /* WELCOME, OPENED, INCOMING */
	uint64_t handle;      /* OPENED, INCOMING, RELEASE, ACCEPTED */
	uint8_t tx_ring;      /* OPENED, INCOMING: the ring the app writes (0 or 1) */
	uint32_t slot;        /* OPENED, INCOMING: the stream's bit in the doorbell bitmap, or
			       * CTL_NO_SLOT for a same-host stream (it brings its own wake eventfd) */
	int32_t error;        /* RESULT */
	char peer[CTL_STRING_MAX + 1];    /* OPEN, INCOMING ("local" for same-host) */
	char service[CTL_STRING_MAX + 1]; /* OPEN, LISTEN, UNLISTEN, INCOMING */
	char message[CTL_STRING_MAX + 1]; /* RESULT */
	uint8_t stats_count;               /* STATS_REPLY: 0..CTL_STATS_MAX */
	uint64_t stats[CTL_STATS_MAX];     /* STATS_REPLY, by enum ctl_stat */
};

/* Bytes written (> 0), or WH_EINVAL (unknown type, string too long or with NUL, bad
 * tx_ring) / WH_EBUFFER_TOO_SMALL. */
int ctl_encode(uint8_t *out, size_t cap, const struct ctl_msg *msg);
/* WH_OK, or WH_EPROTOCOL for anything malformed: short or long packet, wrong version,
 * unknown type, bad string, bad field value. msg is fully written (zeroed first). */
int ctl_decode(const uint8_t *in, size_t length, struct ctl_msg *msg);
/* How many fds travel with this message: WELCOME 2; OPENED and INCOMING 2 (segment, wait)
 * or 3 with CTL_NO_SLOT (segment, wait, wake); others 0. */
unsigned ctl_fd_count(const struct ctl_msg *msg);
const char *ctl_type_name(unsigned type);

#endif
