/* The broker: its configuration, its listener for peer brokers, its pools, its services. */
#ifndef WORMHOLE_BROKER_BROKER_H
#define WORMHOLE_BROKER_BROKER_H

#include <ev.h>

#include "admission.h"
#include "penalty.h"
#include "apps.h"
#include "conn.h"
#include "fdbudget.h"
#include "forward.h"
#include "log.h"
#include "pool.h"

#define BROKER_PEERS_MAX 32
/* Descriptors that streams and peer connections may not take: attaching apps and the
 * answers that tell an app why it was refused get them. */
#define BROKER_FD_RESERVE 64

/* A peer broker, by name: where it listens and how we pool connections to it. */
struct broker_peer {
	char name[64];
	char host[256];
	char port[16];
	/* host empty: the peer dials us (docs/FORWARDING.md); its accepted connections are its own
	 * when the certificate names it (tls-name) over TLS, or they come from `from` over
	 * plaintext (an IP address, canonical text; empty: none) */
	char from[64];
	struct pool_config pool; /* its PoolConfig, MuxConfig and StreamConfig */
};

/* The control socket wormhole-ctl talks to (broker/control.c). */
struct control_config {
	char socket_path[108]; /* empty: none */
	bool socket_path_set;  /* given; otherwise control.sock beside the app socket */
	unsigned socket_mode;  /* 0600 */
	long socket_uid, socket_gid; /* -1: unchanged */
	char metrics_host[256];  /* metrics-listen: GET /metrics served here; empty: none */
	char metrics_port[16];
};

struct broker_config {
	char listen_host[256]; /* empty: accept no peer connections */
	char listen_port[16];
	char port_file[4096];  /* if set, the bound port is written here once listening */
	char default_service[256];
	uint64_t memory_budget; /* bytes held for streams and peers (struct mux_budget) */
	uint64_t max_fds;       /* the process's descriptor limit; 0: as high as allowed */
	struct pool_config pool; /* for dialled peers; its mux config serves accepted ones too */
	struct apps_config apps; /* socket_path empty: no app socket */
	struct control_config control;
	struct broker_peer peers[BROKER_PEERS_MAX];
	int peer_count;
	double drain_timeout;     /* seconds open streams may take to finish on SIGTERM (10) */
	struct tls_settings tls;  /* all set: peer links are TLS */
	bool listen_plaintext;    /* accept peers without TLS even with a certificate */
	double handshake_timeout; /* seconds a peer connection may take to finish TLS (10) */
	unsigned max_peer_connections;        /* accepted peer connections open at once (1024) */
	unsigned max_connections_per_address; /* ... from one source address (64) */
	unsigned max_unauthenticated;         /* ... of them not authenticated yet (256) */
	double handshake_rate;                /* TLS handshakes/s strangers may start (100; 0: any) */
	double peer_idle_timeout;             /* accepted connections with no stream (600 s) */
	unsigned connection_budget_percent;   /* of memory_budget, one connection (25) */
	unsigned peer_budget_percent;         /* ... one peer's accepted connections (50) */
	unsigned app_peer_budget_percent;     /* ... of which one app's streams to one peer (25) */
	unsigned local_reserve_percent;       /* ... kept for streams local apps open (10) */
	enum log_level log_level; /* warn */
	/* forwarding (docs/FORWARDING.md): [service NAME] targets and [forward NAME] sections */
	struct exposed_service exposed[FORWARD_EXPOSED_MAX];
	unsigned exposed_count;
	struct forward_config forwards[FORWARD_MAX];
	unsigned forward_count;
};

/* The built-in defaults: peers on 127.0.0.1:7420, apps on /run/wormhole/broker.sock,
 * default service echo, no peers. */
void broker_config_default(struct broker_config *config);

struct broker_conn;

/* One peer's share of the memory budget (peer-budget), by identity: the certificate's name
 * over TLS, the source address over plaintext. Made with its first connection, freed with
 * its last. */
struct peer_account {
	char key[260];
	unsigned connections;
	struct mux_budget_account budget;
	struct peer_account *next;
};

/* A pool of a peer that a reload removed, draining until its streams are done. */
struct retiring {
	struct pool *pool;
	double deadline;
	struct retiring *next;
};

struct broker {
	struct ev_loop *loop;
	double started_at;
	char instance_id[17]; /* random at each start: tells a restarted broker from the one before */
	struct broker_config config;
	struct log_sink log; /* its level from config.log_level; wired here, not a setting */
	struct mux_budget budget;
	struct conn_shared conn_shared; /* the budget and the read area of every connection */
	struct fd_budget fds;           /* descriptors peers and apps can make it hold */
	int listen_fd;
	ev_io accept_watcher;
	struct broker_conn *accepted;
	struct pool *pools[BROKER_PEERS_MAX];
	struct apps *apps;
	ev_timer accept_pause; /* accepting paused: no descriptor even to shed a connection */
	uint64_t accept_rests; /* times it rested (listener_rest.h) */
	ev_timer trim_timer;   /* gives memory freed after a burst back to the system */
	struct retiring *retiring;
	ev_timer retire_timer; /* frees retiring pools once drained */
	bool draining;         /* broker_drain: no new peers, apps or streams */
	uint32_t next_conn_id;
	uint64_t accepted_total, accepted_shed;
	unsigned accepted_open;
	uint64_t capped_connections; /* refused by the connection caps */
	double capped_logged_at[3]; /* the total cap, the per-address cap, max-unauthenticated:
				     * each logged once a second */
	/* Accepted TLS connections not authenticated yet ("strangers"), oldest first: they wait
	 * for a handshake turn (broker/admission.h) and make room for newer ones. */
	struct admission *admission;
	/* Peers cut off for abuse: their next connections wait (broker/penalty.h) */
	struct penalty *penalty;
	uint64_t penalty_holds;     /* connections held for their peer's strikes */
	uint64_t penalty_replaced;  /* held ones closed for a newer one of the same peer */
	double penalty_logged_at;   /* a hold is logged at most once a second (monotonic) */
	struct broker_conn *strangers, *strangers_tail;
	unsigned strangers_open;
	ev_timer handshake_turn;      /* the next token for a waiting stranger */
	uint64_t strangers_dropped;   /* dropped unauthenticated to make room */
	struct tls_failures tls_failures; /* accepted connections' failed handshakes (conn.h) */
	double dropped_logged_at, marked_logged_at; /* logged at most once a second */
	unsigned marked_unlogged;     /* addresses marked since the last such line */
	struct peer_account *accounts; /* a list: as long as the accepted peers (capped) */
	struct forwarding *forwarding; /* broker/forward.c: forwards and targets */
	struct local_link *local;      /* broker/local_link.c: peer = local; NULL until used */
};

/* Starts listening and warms up the pools. WH_OK, or WH_ESYSTEM (errno set, logged). */
int broker_start(struct broker *broker, struct ev_loop *loop, const struct broker_config *config);
/* Stops accepting and closes every connection with a goodbye (ERROR 505), flushed from the
 * loop; the broker stays usable for broker_stop. */
void broker_close_all(struct broker *broker);
/* Drain (SIGTERM): the listener closes, apps may not attach or open, every connection says
 * ERROR 505 so that peers open no new streams on it, pools stop dialling; open streams go on. */
void broker_drain(struct broker *broker);
/* True once no connection carries a stream. */
bool broker_drained(const struct broker *broker);
/* Applies new settings (SIGHUP), by name: peers added (pool started), removed (drained for up
 * to the drain timeout, then closed), changed (new connections use the new settings); limits,
 * services and the log level at once; forwards by name (broker/forward.h); listener, socket
 * and descriptor limit only at restart (logged). Streams the change does not touch go on.
 * WH_OK, or WH_ESYSTEM when a forward's new listen address cannot be bound: then nothing
 * changed (logged with the address and the errno). */
int broker_reload(struct broker *broker, const struct broker_config *next);
/* Frees every connection, pool and the listener. */
void broker_stop(struct broker *broker);
/* Writes the bound port to port-file (if set): the sign, for scripts and tests, that the broker
 * is up, so its caller writes it once everything (control socket included) is ready. WH_OK, or
 * WH_ESYSTEM (logged). */
int broker_write_port_file(const struct broker *broker);
/* The port the listener is bound to (0 without a listener). */
unsigned broker_listen_port(const struct broker *broker);

/* ---- peers that dial in (broker/dialin.c) ---- */

/* An accepted connection (authenticated, over TLS) is lent to the dial-in peer it belongs to,
 * if any: its pool opens our streams over it. Called when it authenticates (plaintext: at
 * accept) and after a reload. */
void dialin_adopt(struct broker *broker, struct conn *conn);
/* A dial-in peer removed by a reload: a connection it held becomes an ordinary accepted one
 * (named by who it is, closed after idle_timeout with no stream: the reload's new
 * peer-idle-timeout), so that one left
 * behind does not stay open for ever under a name the config no longer has. A reload that
 * adds the peer back takes it again. */
void dialin_return(struct broker *broker, struct pool *pool, struct conn *conn, double idle_timeout);
/* Before an accepted connection is freed: every pool lets go of it. */
void dialin_release(struct broker *broker, struct conn *conn);
/* Whether an IP address in text (`from`) names the host of "host:port" (a v4-mapped v6
 * address is its v4 one). */
bool dialin_from_matches(const char *from, const char *remote);

/* ---- peer = local (broker/local_link.c) ---- */

/* The pool named "local": streams opened on it reach this broker's own services (a target, a
 * listening app, a built-in service) under each service's rule for local opens (`local`).
 * Made at the first call. NULL on ENOMEM. */
struct pool *local_link_pool(struct broker *broker);
/* True once no stream runs over the link (a drain waits for them as for peers'). */
bool local_link_drained(const struct broker *broker);
/* At stop, after the relays: frees the link. */
void local_link_free(struct broker *broker);
/* The link's opening ends (their streams are the forwards' and apps' opens of "local"): the
 * current one and any that used up their stream ids and finish their streams. What
 * `wormhole-ctl conns` and `streams` show of it (and close-stream finds), as dialled
 * connections of peer local. */
void local_link_each_conn(const struct broker *broker, void (*fn)(struct conn *conn, void *arg), void *arg);

/* ---- what the control tool sees and steers (broker/control.c) ---- */

/* The broker as a whole. Strings belong to the broker. */
struct broker_status {
	double uptime;                 /* seconds */
	const char *instance_id;       /* 16 hex digits, new at each start */
	const char *listen_host;       /* "" without a listener */
	unsigned listen_port;          /* the bound port */
	bool tls;                      /* peer links use TLS (a certificate is configured) */
	const char *app_socket;        /* "" without one */
	unsigned peers;                /* configured peers */
	unsigned connections_dialled, connections_accepted; /* open now */
	struct apps_stats apps;
	uint64_t budget_used, budget_limit; /* the memory budget, bytes */
	enum log_level log_level;
	bool draining;
	uint64_t accepted_total, accepted_shed, capped_connections;
	uint64_t handshake_refused; /* strangers dropped unauthenticated to make room */
	uint64_t handshakes_failed; /* accepted TLS connections whose handshake failed or timed out */
	uint64_t penalty_holds;     /* connections held unread for their peer's strikes */
	uint64_t penalty_replaced;  /* held connections closed for a newer one of the peer */
};
void broker_get_status(const struct broker *broker, struct broker_status *status);
/* Every pool (configured peers, then peers a reload removed that still drain). */
void broker_each_pool(const struct broker *broker, void (*fn)(struct pool *pool, void *arg), void *arg);
/* Every open connection: dialled ones (through their pools), then accepted ones. */
void broker_each_conn(const struct broker *broker, void (*fn)(struct conn *conn, bool accepted, void *arg),
		      void *arg);
/* A configured peer's pool, or NULL. */
struct pool *broker_find_pool(const struct broker *broker, const char *name);
/* The app side (NULL without an app socket). */
struct apps *broker_apps(const struct broker *broker);
/* log-level, live (as a reload would set it). */
void broker_set_log_level(struct broker *broker, enum log_level level);

#endif
