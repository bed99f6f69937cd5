/* A pool of multiplexed connections to one peer broker: dial, warm up, balance, check, reap. */
#ifndef WORMHOLE_BROKER_POOL_H
#define WORMHOLE_BROKER_POOL_H

#include <ev.h>
#include <stdint.h>

#include "conn.h"
#include "mux.h"

/* The seed's PoolConfig, plus the knobs its behaviour needs that it leaves implicit. */
struct pool_config {
	unsigned min_size;              /* connections kept open, dialled by warmup (1) */
	unsigned max_size;              /* most connections to this peer (4) */
	double max_idle_time;           /* a connection above min_size with no stream this long closes (300 s) */
	double health_check_interval;   /* PING every connection this often; no PONG: replace (30 s) */
	double connect_timeout;         /* one dial, and one open waiting for a connection (10 s) */
	unsigned busy_streams;          /* a connection with this many streams is busy: dial another (128) */
	double backoff_initial;         /* first retry delay after a failed dial (0.1 s) */
	double backoff_max;             /* the delay doubles up to this (30 s), with +-25 % jitter */
	bool plaintext;                 /* dial without TLS even when the broker has a certificate */
	char tls_name[256];             /* the name its certificate must carry; "": the peer's name */
	struct mux_config mux;
};

void pool_config_default(struct pool_config *config);

/* The seed's PoolStats (shared/counters.h). */
#define POOL_COUNTERS_TABLE(X) \
	X(total_connections, TOTAL, NONE, "dials that succeeded") \
	X(active_connections, LEVEL, NONE, "open connections carrying at least one stream") \
	X(idle_connections, LEVEL, NONE, "open connections with no stream") \
	X(total_streams, TOTAL, NONE, "streams opened through the pool") \
	X(failed_connections, TOTAL, NONE, "dials that failed or timed out") \
	X(health_check_failures, TOTAL, NONE, "health checks that got no PONG in time") \
	X(closed_connections, TOTAL, NONE, "connections that closed, for any reason")

struct pool_stats {
	POOL_COUNTERS_TABLE(COUNTER_FIELD)
};

struct pool;

/* Streams the peer opens on our dialled connections go to on_incoming, as on any mux. */
struct pool_callbacks {
	int (*on_incoming)(struct mux *mux, struct mux_stream *stream, const char *service, void *user);
};

/* Result of pool_open_stream: a stream (error WH_OK) or why there is none. */
typedef void (*pool_open_callback)(struct mux_stream *stream, int error, void *user);

/* name: the peer's name in logs. host and port are resolved off the loop. shared (may be
 * NULL) is handed to every conn and must outlive the pool. NULL on ENOMEM. */
struct pool *pool_new(struct ev_loop *loop, const char *name, const char *host, const char *port,
		      const struct pool_config *config, const struct conn_shared *shared,
		      const struct pool_callbacks *callbacks, void *user);
/* Closes every connection, fails every waiting open with WH_EMUX_CLOSED, frees the pool. */
void pool_free(struct pool *pool);

/* Dials until min_size connections are open or dialling. WH_OK, or WH_EMUX_CLOSED. */
int pool_warmup(struct pool *pool);
/* The least-loaded open connection, dialling another when all are busy and the pool is below
 * max_size; NULL while none is open yet (a dial is then under way). */
struct conn *pool_get(struct pool *pool);
/* Opens a stream on the least-loaded connection. The callback runs once: at once when a
 * connection is open, else when one opens or after connect_timeout (WH_ETIMEOUT). Returns
 * WH_OK (the callback will run) or WH_EMUX_CLOSED (pool closed; the callback will not run). */
int pool_open_stream(struct pool *pool, const char *service, pool_open_callback callback, void *user);
/* The same, naming a forward's TCP client in the stream's HANDSHAKE (NULL: none). */
int pool_open_stream_from(struct pool *pool, const char *service, const struct frame_client_address *client,
			  pool_open_callback callback, void *user);
/* Connections open now (not counting dials in progress). */
size_t pool_len(const struct pool *pool);
void pool_get_stats(const struct pool *pool, struct pool_stats *stats);
const char *pool_name(const struct pool *pool);
/* Calls fn for each open connection it dialled (not those a dial-in peer lent it). */
void pool_each_conn(const struct pool *pool, void (*fn)(struct conn *, void *), void *arg);
bool pool_is_closed(const struct pool *pool);
/* Stops taking streams: waiting opens fail with WH_EMUX_CLOSED, every connection says ERROR 505
 * (the peer opens no new streams on it), no new dial; a connection whose last stream ended is
 * closed. For a peer removed by a reload and for the broker's drain. */
void pool_drain(struct pool *pool);
/* Undoes pool_drain (wormhole-ctl warm-peer): streams are taken again and the pool dials back
 * up to min_size; connections that said ERROR 505 stay drained and close once idle. */
void pool_resume(struct pool *pool);

/* What the control tool shows of a pool beside its stats. Strings belong to the pool. */
struct pool_info {
	const char *name, *host, *port;
	unsigned min_size, max_size;
	unsigned open, dialling;  /* connections open now; dials under way */
	uint64_t streams;         /* streams on its connections now */
	double retry_in;          /* seconds until the next dial after failures (0: none waits) */
	double backoff;           /* the delay the next failure will wait */
	bool draining, tls;
	bool dial_in;             /* no address: the peer dials us, `open` counts its connections */
	const char *last_error;   /* why the last dial failed ("" once one succeeded since) */
};
void pool_get_info(const struct pool *pool, struct pool_info *info);

/* True once no connection of a draining pool carries a stream. */
bool pool_drained(const struct pool *pool);
/* New settings for connections dialled from now on (open ones keep theirs); the address too.
 * WH_OK or WH_ENOMEM. */
int pool_reconfigure(struct pool *pool, const char *host, const char *port, const struct pool_config *config);

/* A peer without an address dials us (docs/FORWARDING.md, "Reach a broker behind NAT"): its
 * pool never dials; opens go over the connections the broker lends it, the least loaded
 * first, and fail at once with WH_EPEER_UNREACHABLE ("peer NAME is not connected", the
 * pool's last_error) while there is none. */
bool pool_dials_in(const struct pool *pool);
/* Lends an accepted connection the broker matched to this dial-in peer (idempotent). The
 * broker keeps owning it and calls pool_release before freeing it. WH_OK, WH_ENOMEM, or
 * WH_EINVAL (the pool dials out). */
int pool_adopt(struct pool *pool, struct conn *conn);
/* Takes a lent connection back: true if the pool held it (else a no-op). */
bool pool_release(struct pool *pool, struct conn *conn);

#endif
