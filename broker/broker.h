/* The broker: its configuration, its listener for peer brokers, its pools, its services. */
#ifndef WORMHOLE_BROKER_BROKER_H
#define WORMHOLE_BROKER_BROKER_H

#include <ev.h>

#include "apps.h"
#include "conn.h"
#include "fdbudget.h"
#include "log.h"
#include "pool.h"

#define BROKER_PEERS_MAX 32
/* Descriptors that streams and peer connections may not take: attaching apps and the
 * answers that tell an app why it was refused get them. */
#define BROKER_FD_RESERVE 64

struct broker_peer {
	char name[64];
	char host[256];
	char port[16];
};

struct broker_config {
	char listen_host[256]; /* empty: accept no peer connections */
	char listen_port[16];
	char port_file[4096];  /* if set, the bound port is written here once listening */
	char default_service[256];
	uint64_t memory_budget; /* receive-window bytes all connections together may back */
	uint64_t max_fds;       /* the process's descriptor limit; 0: as high as allowed */
	struct pool_config pool; /* for dialled peers; its mux config serves accepted ones too */
	struct apps_config apps; /* socket_path empty: no app socket */
	struct broker_peer peers[BROKER_PEERS_MAX];
	int peer_count;
	struct log_sink log;
};

/* The built-in defaults: peers on 127.0.0.1:7420, apps on /run/wormhole/broker.sock,
 * default service echo, no peers. */
void broker_config_default(struct broker_config *config);

struct broker_conn;

struct broker {
	struct ev_loop *loop;
	struct broker_config config;
	struct mux_budget budget;
	struct conn_shared conn_shared; /* the budget and the read area of every connection */
	struct fd_budget fds;           /* descriptors peers and apps can make it hold */
	int listen_fd;
	ev_io accept_watcher;
	struct broker_conn *accepted;
	struct pool *pools[BROKER_PEERS_MAX];
	struct apps *apps;
	ev_timer accept_pause; /* accepting paused: no descriptor even to shed a connection */
	ev_timer trim_timer;   /* gives memory freed after a burst back to the system */
	uint32_t next_conn_id;
	uint64_t accepted_total, accepted_shed;
};

/* Starts listening and warms up the pools. WH_OK, or WH_ESYSTEM (errno set, logged). */
int broker_start(struct broker *broker, struct ev_loop *loop, const struct broker_config *config);
/* Stops accepting and closes every connection with a goodbye (ERROR 505), flushed from the
 * loop; the broker stays usable for broker_stop. */
void broker_close_all(struct broker *broker);
/* Frees every connection, pool and the listener. */
void broker_stop(struct broker *broker);
/* The port the listener is bound to (0 without a listener). */
unsigned broker_listen_port(const struct broker *broker);

#endif
