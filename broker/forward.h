/* Carrying unmodified programs' TCP: services whose streams go to a TCP target (expose), and
 * local listeners whose connections become streams to a peer's service (forward). */
#ifndef WORMHOLE_BROKER_FORWARD_H
#define WORMHOLE_BROKER_FORWARD_H

#include <stdint.h>

#include "mux.h"

/* docs/FORWARDING.md tells the two config blocks apart:
 *
 *   [service web]                 [forward web]
 *   target = 127.0.0.1:8000       listen = 127.0.0.1:18000
 *                                 peer = a
 *                                 service = web
 *
 * The relay between a socket and a stream is broker/tcp_relay.c; the target side is
 * broker/target.c, the listener side broker/forward.c. */

#define FORWARD_TARGETS_MAX 8   /* targets of one service */
#define FORWARD_EXPOSED_MAX 32  /* services with targets */
#define FORWARD_MAX 32          /* [forward] sections */

struct target_address {
	char host[256];
	char port[16];
};

/* Which target a new stream tries first (the others follow in order, wrapping around). */
enum forward_balance {
	BALANCE_FIRST,             /* the first: the others are fail-over (the default) */
	BALANCE_ROUND_ROBIN,       /* each in turn */
	BALANCE_LEAST_CONNECTIONS, /* the one with the fewest connections (and dials) now */
};

/* A [service NAME] section's target keys. */
struct exposed_service {
	char service[256];
	unsigned target_count;
	struct target_address targets[FORWARD_TARGETS_MAX]; /* tried in order */
	double connect_timeout; /* one connect to one address (5 s) */
	enum forward_balance balance;
	double health_interval; /* seconds between TCP-connect checks of each target; 0: none */
	unsigned fall, rise;    /* failed checks in a row that take a target down (3), passed ones
				 * that bring it back (2) */
	double idle_timeout;    /* a connection with no byte either way this long is reset; 0: never */
	double bandwidth;       /* bytes a second each way, all its target connections together; 0: none */
	unsigned proxy_protocol; /* 0: none; 1, 2: the PROXY header version sent to each target */
};

/* A [forward NAME] section. */
struct forward_config {
	char name[64];
	char listen_host[256];
	char listen_port[16];
	char peer[64];     /* a [peer] name */
	char service[256];
	unsigned max_connections; /* open at once (1024); more are accepted and closed */
	double idle_timeout;      /* a connection with no byte either way this long is reset; 0: never */
	double connection_rate;   /* new connections a second from one client address; 0: no bound */
	double client_reset_rate; /* streams a second one client address may end early (as the
				   * peer's reset-rate counts them), burst 5 s; 0: no bound */
	double bandwidth;         /* bytes a second each way, all its connections together; 0: none */
};

#define FORWARD_CONNECT_TIMEOUT_DEFAULT 5.0
#define FORWARD_MAX_CONNECTIONS_DEFAULT 1024
/* A quarter of the default reset-rate (200), as each app's part of a peer: three churning
 * addresses leave the connection's count short of the point where every open is held back. */
#define FORWARD_CLIENT_RESET_RATE_DEFAULT 50
#define FORWARD_FALL_DEFAULT 3
#define FORWARD_RISE_DEFAULT 2

struct broker;
struct broker_config;

/* Binds every forward's listener (an address that cannot be bound is an error naming it and
 * the errno) and readies the target side. WH_OK, WH_ESYSTEM (logged), WH_ENOMEM. */
int forwarding_start(struct broker *broker);
/* The broker drains: the listeners close; connections carried now go on. */
void forwarding_drain(struct broker *broker);
/* Ends every carried connection (sockets reset, streams reset) and frees everything; before
 * the pools and connections go, since the relays hold their streams. */
void forwarding_stop(struct broker *broker);
/* A reload, by forward name (targets apply to new streams by themselves): added forwards
 * listen, removed ones stop listening and their connections drain for up to drain-timeout,
 * a forward whose listen moved is both; one whose peer, service or max-connections changed
 * applies them to new connections; unchanged ones go on untouched. Every new address is bound
 * first: WH_OK, or WH_ESYSTEM (logged, with the address and the errno) and nothing changed. */
int forwarding_reload(struct broker *broker, struct broker_config *next);
/* A pool is about to be freed with streams still open (a peer a reload removed, at its
 * drain-timeout): the forwarded connections and target connections on it end now (reset
 * both ways), since freeing the pool frees their streams without a word. */
struct pool;
void forwarding_pool_gone(struct broker *broker, struct pool *pool);
/* A stream a peer opened for `service`: if the service has targets, the stream is taken (the
 * target is dialled; WH_OK) and otherwise WH_ENO_SERVICE. */
int forwarding_attach_target(struct broker *broker, struct mux_stream *stream, const char *service);

/* ---- what wormhole-ctl shows (forwards, targets) ---- */

struct forward_info {
	const char *name, *peer, *service;
	char listen[300];      /* the bound address */
	const char *state;     /* "listening", or "draining" (a reload removed it) */
	const char *origin;    /* "config", or "run time" (wormhole-ctl forward add) */
	unsigned open;         /* connections carried now (or waiting for their stream) */
	unsigned max_connections;
	uint64_t accepted;     /* connections accepted, refused ones included */
	uint64_t refused_full; /* closed at once: max-connections, or no descriptor */
	uint64_t refused_rate; /* closed at once: the client's address is over connection-rate */
	uint64_t refused_resets; /* closed at once: the client's address is over client-reset-rate */
	uint64_t open_failures; /* reset: no stream (peer unreachable, refused, draining) */
	uint64_t reset_by_far;  /* ended by an ERROR from the far side */
	uint64_t reset_by_client; /* ended by the client's reset */
	uint64_t idle_ended;      /* reset by idle-timeout */
	uint64_t bytes_in, bytes_out; /* from the clients, to the clients */
};
/* wormhole-ctl forward add NAME LISTEN PEER SERVICE: a forward that listens at once and
 * stays across reloads (unless the config gets one of that name) until forward del. WH_OK
 * with what was done in why, or WH_EINVAL / WH_ESYSTEM with why not. */
int forwarding_add(struct broker *broker, const char *name, const char *listen, const char *peer,
		   const char *service, char *why, size_t length);
/* wormhole-ctl forward del NAME: it stops listening; its connections drain (drain-timeout).
 * A forward from the config comes back at the next reload. */
int forwarding_del(struct broker *broker, const char *name, char *why, size_t length);
/* Calls fn for each forward: the running ones, then those a reload removed that drain. */
void forwarding_each_forward(const struct broker *broker, void (*fn)(const struct forward_info *, void *),
			     void *arg);

struct target_info {
	const char *service;
	char target[300];
	bool configured;        /* false: a reload removed it, connections still carried */
	const char *health;     /* "up" (the last connect worked), "failing", "unknown" (never tried) */
	unsigned open;          /* connections now */
	uint64_t connections;   /* connections made */
	uint64_t failures;      /* connects that failed */
	uint64_t reset_by_target, reset_by_opener;
	uint64_t idle_ended;
	uint64_t bytes_from_target, bytes_to_target;
	const char *last_error; /* of the last failed connect ("" if none) */
};
/* Calls fn for each configured target of each service, then removed ones still in use. */
void forwarding_each_target(const struct broker *broker, void (*fn)(const struct target_info *, void *),
			    void *arg);

/* The exposed service of that name, or NULL. */
const struct exposed_service *forwarding_find_exposed(const struct broker_config *config,
						       const char *service);

#endif
