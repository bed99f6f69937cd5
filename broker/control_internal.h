/* What the parts of the control socket share (control.c, control_views.c, control_config.c,
 * control_actions.c): the control's state, the reply being built, and each command's function
 * (control.c's table of commands names them). Not for the rest of the broker: control.h is
 * its way in. */
#ifndef WORMHOLE_BROKER_CONTROL_INTERNAL_H
#define WORMHOLE_BROKER_CONTROL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "control.h"
#include "control_msg.h"

struct control_client;
struct conn_group;
struct metrics_http;

#define COUNT_OF(a) (sizeof (a) / sizeof (a)[0])

/* One control socket and its clients (control_start). */
struct control {
	struct broker *broker;
	struct control_hooks hooks;
	const struct log_sink *log;
	char path[108];
	dev_t socket_dev; /* the file we made: removed at stop only if it is still ours */
	ino_t socket_ino;
	int listen_fd;
	ev_io acceptor;
	ev_timer accept_pause; /* out of descriptors: look again in a moment */
	uint64_t accept_rests; /* times it rested (listener_rest.h) */
	unsigned client_count;
	LIST_HEAD(, control_client) clients;
	ev_timer idle_sweep;  /* closes clients idle past CONTROL_IDLE_TIMEOUT */
	struct metrics_http *metrics; /* metrics-listen; NULL: none */
	uint64_t clients_dropped;     /* not reading their replies, or displaced */
	double log_level_set_at;      /* ev_now of the last log-level action (0: none) */
	size_t replies_held;          /* bytes of the replies clients have not taken yet */
	/* conns --by-peer: the counters of the connections that closed, per peer and role (as
	 * many rows as the view), added to the open ones' so that each family only grows */
	struct conn_group *closed_conns;
	unsigned closed_count;
};

/* The reply being built: the views write its tables, control.c adds the DONE. */
struct reply {
	uint8_t *buf;
	size_t cap, length;  /* cap keeps DONE_ROOM free for the DONE */
	bool overflow;       /* a table did not fit: the view runs again with a larger buffer */
	int status;          /* for DONE */
	char message[CONTROL_TEXT_MAX + 1];
};

/* What a command runs with: the request, the reply, and the writer of its table. */
struct view_ctx {
	struct control *control;
	const struct control_request *request;
	struct reply *reply;
	struct control_writer w;
	double now;
	/* filters (streams) */
	const char *peer, *app;
};

/* control_views.c: the reply's tables and its failure */
void table_begin(struct reply *r, struct control_writer *w, const char *name);
void table_end(struct reply *r, struct control_writer *w, const char *name,
	       const struct log_sink *log);
void fail(struct reply *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* the views (control_views.c, control_config.c) */
void view_status(struct view_ctx *v);
void view_peers(struct view_ctx *v);
void view_conns(struct view_ctx *v);
void view_streams(struct view_ctx *v);
void view_apps(struct view_ctx *v);
void view_services(struct view_ctx *v);
void view_forwards(struct view_ctx *v);
void view_targets(struct view_ctx *v);
void view_config(struct view_ctx *v);
/* conns --by-peer's book of closed connections, set up by control_start */
bool conn_groups_start(struct control *ctl);

/* the actions (control_actions.c) */
void action_close_stream(struct view_ctx *v);
void action_drain_peer(struct view_ctx *v);
void action_warm_peer(struct view_ctx *v);
void action_reload(struct view_ctx *v);
void action_forward(struct view_ctx *v);
void action_log_level(struct view_ctx *v);

#endif
