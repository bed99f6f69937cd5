/* Local apps: the Unix socket they attach to, their listeners, and their shared-memory streams. */
#ifndef WORMHOLE_BROKER_APPS_H
#define WORMHOLE_BROKER_APPS_H

#include <ev.h>
#include <stdint.h>

#include "fdbudget.h"
#include "log.h"
#include "mux.h"
#include "services.h"
#include "pool.h"

/*
 * Each app attaches over a SOCK_SEQPACKET Unix socket (docs/ATTACH.md). Per stream it gets a
 * sealed memfd segment with two rings (shared/ring.h); it wakes the broker for any of its
 * streams through one doorbell (a bitmap of stream slots and an eventfd we read with
 * RWF_NOWAIT), and we wake it through the news bitmap and a socket pair. Whatever we write
 * for an app to read is our own end of a socket pair, used with MSG_DONTWAIT
 * (shared/attach_wake.h): nothing the app does to its descriptors makes us block. Stream bytes never cross the socket.
 *
 * Streams to a peer broker join a mux stream whose io is the segment itself: DATA payloads
 * are read from the socket straight into the app's ring and written from the app's ring
 * straight to the socket. Streams between two local apps ("local" peer) share one segment
 * and never involve the broker after set-up.
 *
 * Everything in the segment is written by an untrusted process: positions are checked on
 * every use (a violation ends that stream: ERROR 502 to the remote, an error to the app), the
 * broker never blocks on an app (non-blocking socket with a bounded send queue), and an app
 * that disconnects or dies has its streams ended and its memory and fds freed.
 */

/* Who may attach beyond the socket's mode (attach-users, attach-groups): with neither list
 * set, everyone the mode lets in; otherwise an app whose uid is listed, or whose primary or
 * supplementary groups include a listed one. root and the broker's own user always may. */
#define ATTACH_IDS_MAX 32
struct attach_rules {
	bool users_set, groups_set;
	unsigned user_count, group_count;
	uint32_t users[ATTACH_IDS_MAX], groups[ATTACH_IDS_MAX];
};

/* Whether an app with these credentials may attach. groups: its supplementary groups. */
bool attach_rules_admit(const struct attach_rules *rules, uint32_t uid, uint32_t gid,
			const uint32_t *groups, unsigned group_count);

struct apps_config {
	char socket_path[108];
	unsigned socket_mode;      /* permission bits of the socket file (0660) */
	long socket_uid, socket_gid; /* owner and group of the socket file; -1: unchanged */
	uint32_t ring_capacity;    /* bytes per ring direction (1 MiB) */
	uint32_t max_streams;      /* per app (16384) */
	uint32_t accept_backlog;   /* streams handed to a listening app and not yet accepted by
				    * it; more are refused with ERROR 503 (256) */
	uint64_t max_ring_memory;  /* segment bytes one app's streams may hold; 0: max_streams
				    * segments, so only max_streams binds */
	char default_service[256]; /* for HANDSHAKEs without a name */
	uint32_t max_listeners;    /* service names one app may listen on (64) */
	uint64_t peer_share;       /* budget bytes the streams one app opens to one peer may hold
				    * (a quarter of a peer's share, peer-budget); 0: no bound */
	struct service_rules services; /* who may listen on and open each service */
	struct attach_rules attach;    /* who may attach (beyond socket_mode) */
};

struct apps;

/* Finds the pool for a peer name; NULL if there is none. */
typedef struct pool *(*apps_find_pool)(void *ctx, const char *name);

/* Binds and listens on the socket (replacing a stale file). Descriptors apps make the broker
 * hold come from fds (may be NULL: no budget). The process must ignore SIGPIPE (the broker
 * does): an app that died leaves wake-up pipes without a reader. NULL with errno on failure. */
struct apps *apps_start(struct ev_loop *loop, const struct apps_config *config,
			const struct log_sink *log, struct fd_budget *fds, apps_find_pool find_pool,
			void *find_ctx);
/* New limits and services (reload): max_streams, max_ring_memory, accept_backlog and
 * ring_capacity for streams opened from now on, default_service; the socket's settings take
 * effect only at start. */
void apps_reconfigure(struct apps *apps, const struct apps_config *config);
/* The broker drains: no new sessions (the socket stops accepting), and OPENs are refused with
 * WH_EMUX_CLOSED ("the broker is stopping"); streams open now go on. */
void apps_drain(struct apps *apps);
/* Ends every app session and stream, removes the socket file. */
void apps_stop(struct apps *apps);
/* A peer opened a stream for `service`: hand it to the app listening there. WH_OK, or
 * WH_ENO_SERVICE when no app listens (the caller may try its built-in services), or
 * WH_EACCEPT_QUEUE_FULL (the app's accept backlog), WH_ELIMIT, WH_EDESCRIPTORS, WH_ENOMEM. */
int apps_route_incoming(struct apps *apps, struct mux *mux, struct mux_stream *stream,
			const char *service);

#define APPS_COUNTERS_TABLE(X) \
	X(clients, LEVEL, NONE, "apps attached now") \
	X(streams, LEVEL, NONE, "app streams to peer brokers now") \
	X(local_pairs, LEVEL, NONE, "same-host streams between two apps now") \
	X(clients_total, TOTAL, NONE, "apps that attached since the broker started") \
	X(protocol_errors, TOTAL, NONE, "attach messages that broke the protocol") \
	X(ring_corruptions, TOTAL, NONE, "streams ended because an app corrupted its ring") \
	X(opens_held_back, TOTAL, NONE, "app opens refused (WH_ELIMIT) because that app's streams " \
	  "to the peer ended without data faster than its part of the peer's reset-rate")

struct apps_stats {
	APPS_COUNTERS_TABLE(COUNTER_FIELD)
};
void apps_get_stats(const struct apps *apps, struct apps_stats *stats);

/* ---- what the control tool sees (broker/app_inspect.c) ---- */

/* One attached app. Strings belong to the session and live until the next loop step. */
struct apps_session_info {
	const char *id;          /* the session id (hex), as the broker's log lines name it */
	long pid, uid, gid;      /* from SO_PEERCRED */
	struct attach_stats counters; /* what wh_client_stats would tell the app */
	unsigned listening;      /* service names it listens on */
};
void apps_each_session(const struct apps *apps,
		       void (*fn)(const struct apps_session_info *session, void *arg), void *arg);

/* The app end of a peer stream, when an app owns it. */
struct apps_stream_info {
	const char *session_id;
	long pid, uid;
	uint32_t ring_capacity;   /* bytes per ring direction */
	uint64_t ring_fill;       /* bytes in its receive ring the app has not read yet */
	double age;               /* seconds since the app end was set up */
};
/* True and *info filled when a local app owns this mux stream. */
bool apps_stream_owner(const struct apps *apps, const struct mux_stream *stream,
		       struct apps_stream_info *info);
/* Before the broker itself ends a mux stream (wormhole-ctl close-stream): the words the app
 * that owns it reads as the stream's error, instead of the bare error code's. No-op when no
 * app owns it. `message` must outlive nothing: it is copied. */
void apps_stream_ending(struct mux_stream *stream, const char *message);

/* A same-host stream between two apps (no mux stream): its two ends. */
struct apps_pair_info {
	uint64_t handle;              /* the opener's handle for it */
	const char *session_id[2];    /* opener, acceptor ("" if gone) */
	long pid[2], uid[2];
	uint32_t ring_capacity;
	bool awaiting_accept;
};
/* wormhole-ctl close-stream of a same-host stream (`streams` shows it as 0/HANDLE): both
 * apps' reads and writes end with the protocol `code`'s error (frame_error_from_code) and
 * `why`, as a peer's ERROR ends a stream. WH_OK, WH_ESTREAM_NOT_FOUND (no same-host stream
 * has that handle), or WH_ESTREAM_CLOSED (it had ended both ways). */
int apps_close_local_pair(struct apps *apps, uint64_t handle, uint32_t code, const char *why);
void apps_each_local_pair(const struct apps *apps,
			  void (*fn)(const struct apps_pair_info *pair, void *arg), void *arg);

/* Every service name an app listens on, with its session. */
void apps_each_listener(const struct apps *apps,
			void (*fn)(const char *service, const struct apps_session_info *session, void *arg),
			void *arg);

#endif
