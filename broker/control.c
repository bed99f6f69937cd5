/* The control socket (control.h): requests in, tables and results out. */
#include "config.h"

#include "control.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "build_commit.h"
#include "control_metrics.h"
#include "control_msg.h"
#include "frame.h"
#include "metrics_http.h"
#include "unix_socket.h"

#define CONTROL_CLIENTS_MAX 16      /* at once: a new one displaces the longest idle */
#define CONTROL_IDLE_TIMEOUT 60.0   /* s without a byte either way: the client is closed */
#define CONTROL_REPLY_TIMEOUT 10.0  /* s to take a whole reply: a client that does not read is closed */
#define CONTROL_REPLIES_HELD_MAX (2 * (size_t)REPLY_MAX_SIZE) /* unsent replies, all clients */
#define REPLY_FIRST_SIZE (64u << 10)
#define REPLY_MAX_SIZE CONTROL_BODY_MAX
#define DONE_ROOM (CONTROL_HEADER_SIZE + 6 + CONTROL_TEXT_MAX) /* the DONE after the tables */

struct control_client {
	struct control *control;
	int fd;
	ev_io io;
	long pid, uid;
	uint8_t in[CONTROL_HEADER_SIZE + CONTROL_REQUEST_MAX];
	size_t in_length;
	uint8_t *out;             /* the reply being written */
	ev_timer reply_deadline;  /* CONTROL_REPLY_TIMEOUT to take it */
	size_t out_length, out_sent;
	bool close_after_reply;   /* it broke the protocol: the answer says so, then it ends */
	double last_active;       /* ev_now of its last byte either way */
	LIST_ENTRY(control_client) link;
};

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

/* ---- the reply being built ------------------------------------------------------------ */

struct reply {
	uint8_t *buf;
	size_t cap, length;  /* cap keeps DONE_ROOM free for the DONE */
	bool overflow;       /* a table did not fit: the view runs again with a larger buffer */
	int status;          /* for DONE */
	char message[CONTROL_TEXT_MAX + 1];
};

static void table_begin(struct reply *r, struct control_writer *w, const char *name)
{
	control_table_begin(w, r->buf + r->length, r->cap - r->length, name);
}

static void table_end(struct reply *r, struct control_writer *w, const char *name,
		      const struct log_sink *log)
{
	int n = control_table_end(w);
	if (n == WH_EBUFFER_TOO_SMALL) {
		r->overflow = true;
	} else if (n < 0) { /* a mistake in this file's column lists: say so, never crash */
		log_write(log, LOG_ERROR, "control", "table %s could not be written: %s", name, wh_strerror(n));
		r->status = WH_EINVAL;
		snprintf(r->message, sizeof r->message, "the broker could not write table %s", name);
	} else {
		r->length += (size_t)n;
	}
}

static void fail(struct reply *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct reply *r, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof r->message, fmt, ap);
	va_end(ap);
	r->status = status;
}

/* Columns from a counter table (shared/counters.h). */
static void counter_columns(struct control_writer *w, const struct counter_info *info, size_t count,
			    const char *prefix)
{
	for (size_t i = 0; i < count; i++) {
		char name[CONTROL_NAME_MAX + 1];
		snprintf(name, sizeof name, "%s%s", prefix, info[i].name);
		control_table_column(w, name, CONTROL_UINT,
				     info[i].kind == COUNTER_TOTAL ? CONTROL_COUNTER : CONTROL_GAUGE,
				     info[i].unit == COUNTER_UNIT_BYTES ? CONTROL_UNIT_BYTES
				     : info[i].unit == COUNTER_UNIT_SECONDS ? CONTROL_UNIT_SECONDS
									   : CONTROL_UNIT_NONE,
				     info[i].help);
	}
}

static void counter_values(struct control_writer *w, const void *counters, const struct counter_info *info,
			   size_t count)
{
	for (size_t i = 0; i < count; i++)
		control_put_uint(w, counter_value(counters, &info[i]));
}

#define COUNTER_STRUCT struct mux_stats
static const struct counter_info mux_counter_info[] = { MUX_COUNTERS_TABLE(COUNTER_INFO_OF) };
#undef COUNTER_STRUCT
#define COUNTER_STRUCT struct pool_stats
static const struct counter_info pool_counter_info[] = { POOL_COUNTERS_TABLE(COUNTER_INFO_OF) };
#undef COUNTER_STRUCT
#define COUNTER_STRUCT struct apps_stats
static const struct counter_info apps_counter_info[] = { APPS_COUNTERS_TABLE(COUNTER_INFO_OF) };
#undef COUNTER_STRUCT
#define COUNTER_STRUCT struct attach_stats
static const struct counter_info session_counter_info[] = { ATTACH_STATS_TABLE(COUNTER_INFO_OF) };
#undef COUNTER_STRUCT
/* the last two rows of the attach table are broker-wide (status shows them) */
#define SESSION_COUNTERS (sizeof session_counter_info / sizeof session_counter_info[0] - 2)
#define COUNT_OF(a) (sizeof (a) / sizeof (a)[0])

/* ---- views ---------------------------------------------------------------------------- */

struct view_ctx {
	struct control *control;
	const struct control_request *request;
	struct reply *reply;
	struct control_writer w;
	double now;
	/* filters (streams) */
	const char *peer, *app;
};

/* status: what the operators' endpoints themselves did (metrics-listen, this socket). */
static void operator_columns(struct control_writer *w)
{
	control_table_column(w, "metrics_scrapes", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "GET /metrics answered at metrics-listen");
	control_table_column(w, "metrics_renders", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "metrics bodies rendered (one serves the scrapes of a second)");
	control_table_column(w, "metrics_dropped", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "metrics-listen connections closed unanswered (displaced, or too slow)");
	control_table_column(w, "control_clients_dropped", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "control clients closed for not taking a reply in time, or to make room");
}

static void operator_values(struct control *ctl, struct control_writer *w)
{
	struct metrics_http_stats metrics;
	metrics_http_get_stats(ctl->metrics, &metrics);
	control_put_uint(w, metrics.scrapes);
	control_put_uint(w, metrics.renders);
	control_put_uint(w, metrics.dropped);
	control_put_uint(w, ctl->clients_dropped);
}

static void view_status(struct view_ctx *v)
{
	struct control *ctl = v->control;
	struct broker_status st;
	broker_get_status(ctl->broker, &st);
	double loaded_at = 0;
	const struct options *options = ctl->hooks.options ? ctl->hooks.options(ctl->hooks.ctx, &loaded_at) : NULL;
	char listen[300] = "none";
	if (st.listen_host[0])
		snprintf(listen, sizeof listen, "%s:%u%s", st.listen_host, st.listen_port, st.tls ? " (TLS)" : "");
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "status");
	control_table_column(w, "version", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "the broker's version");
	control_table_column(w, "commit", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "the commit it was built from (unknown: not built from git)");
	control_table_column(w, "instance", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "random at each start: a restart shows as a new one");
	control_table_column(w, "pid", CONTROL_INT, CONTROL_INFO, CONTROL_UNIT_NONE, "the broker's process id");
	control_table_column(w, "uptime", CONTROL_FLOAT, CONTROL_GAUGE, CONTROL_UNIT_SECONDS, "time since the broker started");
	control_table_column(w, "start_time", CONTROL_UINT, CONTROL_INFO, CONTROL_UNIT_NONE, "when the broker started, whole seconds since the Unix epoch");
	control_table_column(w, "listen", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "where peer brokers connect");
	control_table_column(w, "app_socket", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "where apps attach");
	control_table_column(w, "control_socket", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "where wormhole-ctl connects");
	control_table_column(w, "metrics_listen", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "where GET /metrics is served (empty: nowhere)");
	control_table_column(w, "config_file", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "the settings file read (empty: none)");
	control_table_column(w, "config_age", CONTROL_FLOAT, CONTROL_GAUGE, CONTROL_UNIT_SECONDS, "time since the settings were loaded");
	control_table_column(w, "log_level", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "the log level now");
	control_table_column(w, "state", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "running or draining");
	control_table_column(w, "peers", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "configured peer brokers");
	control_table_column(w, "connections_dialled", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "open connections this broker dialled");
	control_table_column(w, "connections_accepted", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "open connections peers dialled");
	counter_columns(w, apps_counter_info, COUNT_OF(apps_counter_info), "apps_");
	control_table_column(w, "budget_used", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_BYTES, "memory budget held by streams and peers");
	control_table_column(w, "budget_limit", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_BYTES, "the memory budget");
	control_table_column(w, "accepted_total", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "peer connections accepted");
	control_table_column(w, "accepted_shed", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "peer connections closed at accept for want of descriptors");
	control_table_column(w, "connections_capped", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "peer connections refused by the connection caps");
	control_table_column(w, "handshakes_refused", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "TLS connections dropped before they authenticated, to make room for newer ones (max-unauthenticated)");
	operator_columns(w);
	control_table_row(w);
	control_put_text(w, PACKAGE_VERSION);
	control_put_text(w, WH_BUILD_COMMIT);
	control_put_text(w, st.instance_id);
	control_put_int(w, (int64_t)getpid());
	control_put_float(w, st.uptime);
	control_put_uint(w, (uint64_t)(v->now - st.uptime)); /* ev_now is wall-clock time */
	control_put_text(w, listen);
	control_put_text(w, st.app_socket);
	control_put_text(w, ctl->path);
	control_put_text(w, metrics_http_address(ctl->metrics));
	control_put_text(w, options ? options->config_path : "");
	control_put_float(w, options ? v->now - loaded_at : 0);
	control_put_text(w, log_level_name(st.log_level));
	control_put_text(w, st.draining ? "draining" : "running");
	control_put_uint(w, st.peers);
	control_put_uint(w, st.connections_dialled);
	control_put_uint(w, st.connections_accepted);
	counter_values(w, &st.apps, apps_counter_info, COUNT_OF(apps_counter_info));
	control_put_uint(w, st.budget_used);
	control_put_uint(w, st.budget_limit);
	control_put_uint(w, st.accepted_total);
	control_put_uint(w, st.accepted_shed);
	control_put_uint(w, st.capped_connections);
	control_put_uint(w, st.handshake_refused);
	operator_values(ctl, w);
	table_end(v->reply, w, "status", ctl->log);
}

static void peer_row(struct pool *pool, void *arg)
{
	struct view_ctx *v = arg;
	struct control_writer *w = &v->w;
	struct pool_info info;
	struct pool_stats stats;
	pool_get_info(pool, &info);
	pool_get_stats(pool, &stats);
	char address[300];
	snprintf(address, sizeof address, "%s:%s", info.host, info.port);
	if (info.dial_in)
		snprintf(address, sizeof address, "(dials in)");
	const char *state = info.draining ? "draining"
			  : info.open > 0 ? "up"
			  : info.dial_in ? "not-connected"
			  : info.retry_in > 0 ? "backing-off"
			  : info.dialling > 0 ? "dialling" : "down";
	control_table_row(w);
	control_put_text(w, info.name);
	control_put_text(w, address);
	control_put_text(w, state);
	control_put_text(w, info.tls ? "yes" : "no");
	control_put_uint(w, info.min_size);
	control_put_uint(w, info.max_size);
	control_put_uint(w, info.open);
	control_put_uint(w, info.dialling);
	control_put_uint(w, info.streams);
	counter_values(w, &stats, pool_counter_info, COUNT_OF(pool_counter_info));
	control_put_float(w, info.retry_in);
	control_put_float(w, info.backoff);
	control_put_text(w, info.last_error);
}

static void view_peers(struct view_ctx *v)
{
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "peers");
	control_table_column(w, "peer", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the peer's name");
	control_table_column(w, "address", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "where it is dialled; (dials in): a peer without an address, reached over the connections it made to us (`open`)");
	control_table_column(w, "state", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "up, dialling, backing-off, down, draining, or not-connected (a peer that dials in, without a connection now)");
	control_table_column(w, "tls", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "dialled over TLS");
	control_table_column(w, "min", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "connections kept open (pool-min)");
	control_table_column(w, "max", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "most connections (pool-max)");
	control_table_column(w, "open", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "connections open now");
	control_table_column(w, "dialling", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "dials under way");
	control_table_column(w, "in_use", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "streams on its connections now");
	counter_columns(w, pool_counter_info, COUNT_OF(pool_counter_info), "");
	control_table_column(w, "retry_in", CONTROL_FLOAT, CONTROL_GAUGE, CONTROL_UNIT_SECONDS, "time until the next dial after failures (0: none waits)");
	control_table_column(w, "backoff", CONTROL_FLOAT, CONTROL_GAUGE, CONTROL_UNIT_SECONDS, "the delay the next failure waits");
	control_table_column(w, "last_error", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "why the last dial failed (empty once one succeeded)");
	broker_each_pool(v->control->broker, peer_row, v);
	table_end(v->reply, w, "peers", v->control->log);
}

static const char *conn_state(struct conn *conn)
{
	struct mux *mux = conn_mux(conn);
	if (mux_is_closed(mux))
		return "closed";
	if (!conn_is_ready(conn))
		return "handshaking";
	return mux_accepts_streams(mux) ? "open" : "draining";
}

/* "data", "window_update", ...: frame type names as column suffixes. */
static void frame_type_column(char *out, size_t length, const char *prefix, unsigned type)
{
	char name[32];
	snprintf(name, sizeof name, "%s", frame_type_name(type));
	for (char *p = name; *p; p++)
		*p = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
	snprintf(out, length, "%s%s", prefix, name);
}

/* A connection's frame counts and MUX_COUNTERS_TABLE, the columns conn_number_columns
 * declares, in that order: what conns shows per connection and conns --by-peer sums. */
#define CONN_FRAME_TYPES (FRAME_ERROR - FRAME_DATA + 1)
#define CONN_NUMBERS (2 * CONN_FRAME_TYPES + 1 + COUNT_OF(mux_counter_info))

static void conn_number_columns(struct control_writer *w)
{
	char name[CONTROL_NAME_MAX + 1];
	for (unsigned t = FRAME_DATA; t <= FRAME_ERROR; t++) {
		frame_type_column(name, sizeof name, "frames_in_", t);
		control_table_column(w, name, CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "frames received of this type");
	}
	control_table_column(w, "frames_in_unknown", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "frames received of unknown types");
	for (unsigned t = FRAME_DATA; t <= FRAME_ERROR; t++) {
		frame_type_column(name, sizeof name, "frames_out_", t);
		control_table_column(w, name, CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "frames sent of this type");
	}
	counter_columns(w, mux_counter_info, COUNT_OF(mux_counter_info), "");
}

static void conn_numbers(struct conn *conn, uint64_t out[CONN_NUMBERS])
{
	const struct mux_stats *stats = mux_stats(conn_mux(conn));
	size_t n = 0;
	for (unsigned t = FRAME_DATA; t <= FRAME_ERROR; t++)
		out[n++] = stats->frames_in[t];
	out[n++] = stats->frames_in[0];
	for (unsigned t = FRAME_DATA; t <= FRAME_ERROR; t++)
		out[n++] = stats->frames_out[t];
	for (size_t i = 0; i < COUNT_OF(mux_counter_info); i++)
		out[n++] = counter_value(stats, &mux_counter_info[i]);
}

static void conn_row(struct conn *conn, bool accepted, void *arg)
{
	struct view_ctx *v = arg;
	struct control_writer *w = &v->w;
	struct mux *mux = conn_mux(conn);
	const char *identity = conn_peer_identity(conn);
	control_table_row(w);
	control_put_uint(w, mux_id(mux));
	control_put_text(w, mux_peer(mux));
	control_put_text(w, accepted ? "accepted" : "dialled");
	control_put_text(w, conn_state(conn));
	control_put_text(w, conn_local_addr(conn));
	control_put_text(w, conn_remote_addr(conn));
	control_put_text(w, conn_is_tls(conn) ? (identity[0] ? identity : "(handshaking)") : "");
	control_put_float(w, conn_age(conn));
	control_put_uint(w, mux_num_streams(mux));
	control_put_float(w, mux_stats(mux)->rtt);
	uint64_t numbers[CONN_NUMBERS];
	conn_numbers(conn, numbers);
	for (size_t i = 0; i < CONN_NUMBERS; i++)
		control_put_uint(w, numbers[i]);
	control_put_text(w, mux_error(mux) == WH_OK ? "" : wh_strerror(mux_error(mux)));
}

/* conns --by-peer: one row per peer and role, whatever the number of connections, so that
 * a scraper's series do not grow with connections (each accepted connection of a peer
 * without a certificate name would be a label of its own: its address and port). */
#define CONN_GROUPS_MAX 64
struct conn_group {
	char peer[256];
	bool accepted;
	uint64_t connections, streams;
	double rtt;
	uint64_t numbers[CONN_NUMBERS];
};

struct conn_groups {
	struct conn_group *group;
	unsigned count;
};

/* The group of (name, role) in group[*count], made if new; past CONN_GROUPS_MAX, the last
 * one, renamed (others). */
static struct conn_group *conn_group_of(struct conn_group *group, unsigned *count,
					struct conn *conn, bool accepted)
{
	const char *identity = conn_peer_identity(conn);
	/* a dialled connection's peer is a configured name; an accepted one's its certificate's */
	const char *name = !accepted ? mux_peer(conn_mux(conn)) : identity[0] ? identity : "(unidentified)";
	unsigned i = 0;
	while (i < *count && (group[i].accepted != accepted || strcmp(group[i].peer, name) != 0))
		i++;
	if (i == *count && *count == CONN_GROUPS_MAX)
		i = CONN_GROUPS_MAX - 1; /* past the bound: all in the last, renamed */
	if (i == *count) {
		(*count)++;
		snprintf(group[i].peer, sizeof group[i].peer, "%s", name);
		group[i].accepted = accepted;
	} else if (i == CONN_GROUPS_MAX - 1 && strcmp(group[i].peer, name) != 0) {
		snprintf(group[i].peer, sizeof group[i].peer, "(others)");
	}
	return &group[i];
}

static void conn_group_add(struct conn *conn, bool accepted, void *arg)
{
	struct conn_groups *g = arg;
	struct conn_group *group = conn_group_of(g->group, &g->count, conn, accepted);
	struct mux *mux = conn_mux(conn);
	uint64_t numbers[CONN_NUMBERS];
	conn_numbers(conn, numbers);
	group->connections++;
	group->streams += mux_num_streams(mux);
	if (mux_stats(mux)->rtt > group->rtt)
		group->rtt = mux_stats(mux)->rtt;
	for (size_t n = 0; n < CONN_NUMBERS; n++)
		group->numbers[n] += numbers[n];
}

/* conn_shared.on_free: a connection's totals join its group's closed ones (the frame counts,
 * and the mux counters that are totals: a level that closed is gone). */
static void conn_group_closed(struct conn *conn, bool dialled, void *ctx)
{
	struct control *ctl = ctx;
	struct conn_group *group = conn_group_of(ctl->closed_conns, &ctl->closed_count, conn, !dialled);
	uint64_t numbers[CONN_NUMBERS];
	conn_numbers(conn, numbers);
	const size_t frames = CONN_NUMBERS - COUNT_OF(mux_counter_info);
	for (size_t n = 0; n < CONN_NUMBERS; n++)
		if (n < frames || mux_counter_info[n - frames].kind == COUNTER_TOTAL)
			group->numbers[n] += numbers[n];
}

static void view_conns_by_peer(struct view_ctx *v)
{
	struct conn_groups g = { .group = calloc(CONN_GROUPS_MAX, sizeof *g.group) };
	if (!g.group) {
		fail(v->reply, WH_ENOMEM, "the broker is out of memory");
		return;
	}
	/* the closed connections' rows first (no connection, no stream: their totals only) */
	g.count = v->control->closed_count;
	memcpy(g.group, v->control->closed_conns, g.count * sizeof *g.group);
	broker_each_conn(v->control->broker, conn_group_add, &g);
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "conns");
	control_table_column(w, "peer", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the peer's name (accepted: its certificate's, or (unidentified))");
	control_table_column(w, "role", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "dialled by this broker, or accepted");
	control_table_column(w, "connections", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "connections open now");
	control_table_column(w, "streams", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "streams on them now");
	control_table_column(w, "rtt", CONTROL_FLOAT, CONTROL_GAUGE, CONTROL_UNIT_SECONDS, "the longest last PING round trip among them");
	conn_number_columns(w);
	for (unsigned i = 0; i < g.count; i++) {
		const struct conn_group *group = &g.group[i];
		control_table_row(w);
		control_put_text(w, group->peer);
		control_put_text(w, group->accepted ? "accepted" : "dialled");
		control_put_uint(w, group->connections);
		control_put_uint(w, group->streams);
		control_put_float(w, group->rtt);
		for (size_t n = 0; n < CONN_NUMBERS; n++)
			control_put_uint(w, group->numbers[n]);
	}
	table_end(v->reply, w, "conns", v->control->log);
	free(g.group);
}

static void view_conns(struct view_ctx *v)
{
	const struct control_request *req = v->request;
	if (req->argc == 2 && strcmp(req->argv[1], "--by-peer") == 0) {
		view_conns_by_peer(v);
		return;
	}
	if (req->argc > 1) {
		fail(v->reply, WH_EINVAL, "conns: unknown argument '%s' (--by-peer)", req->argv[1]);
		return;
	}
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "conns");
	control_table_column(w, "conn", CONTROL_UINT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the connection's id (as in log lines)");
	control_table_column(w, "peer", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the peer's name, identity or address");
	control_table_column(w, "role", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "dialled by this broker, or accepted");
	control_table_column(w, "state", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "handshaking, open, draining or closed");
	control_table_column(w, "local", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "local address");
	control_table_column(w, "remote", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "remote address");
	control_table_column(w, "tls_identity", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "the peer's certificate name (empty: plaintext)");
	control_table_column(w, "age", CONTROL_FLOAT, CONTROL_GAUGE, CONTROL_UNIT_SECONDS, "time since the connection was made");
	control_table_column(w, "streams", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "streams on it now");
	control_table_column(w, "rtt", CONTROL_FLOAT, CONTROL_GAUGE, CONTROL_UNIT_SECONDS, "last PING round trip (0: none yet)");
	conn_number_columns(w);
	control_table_column(w, "last_error", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "why it closed (empty while open)");
	broker_each_conn(v->control->broker, conn_row, v);
	table_end(v->reply, w, "conns", v->control->log);
}

struct stream_walk {
	struct view_ctx *v;
	struct conn *conn;
};

static void stream_cells(struct view_ctx *v, uint64_t conn, uint64_t id, const char *peer,
			 const char *service, const char *state, const char *app, long pid, long uid,
			 uint64_t bytes_in, uint64_t bytes_out, int64_t send_window, uint64_t recv_window,
			 uint64_t ring_fill, double age)
{
	struct control_writer *w = &v->w;
	control_table_row(w);
	control_put_uint(w, conn);
	control_put_uint(w, id);
	control_put_text(w, peer);
	control_put_text(w, service);
	control_put_text(w, state);
	control_put_text(w, app);
	/* no owning app (a built-in service's stream): no value, never a pid 0 or uid -1 that
	 * a script would take for root's or a real process */
	if (pid > 0)
		control_put_int(w, pid);
	else
		control_put_null(w, "none");
	if (uid >= 0)
		control_put_int(w, uid);
	else
		control_put_null(w, "none");
	control_put_uint(w, bytes_in);
	control_put_uint(w, bytes_out);
	control_put_int(w, send_window);
	control_put_uint(w, recv_window);
	control_put_uint(w, ring_fill);
	control_put_float(w, age);
}

static void stream_row(struct mux_stream *stream, void *arg)
{
	struct stream_walk *walk = arg;
	struct view_ctx *v = walk->v;
	struct mux *mux = mux_stream_mux(stream);
	struct apps_stream_info owner = { .session_id = "", .pid = 0, .uid = -1 };
	struct apps *apps = broker_apps(v->control->broker);
	bool owned = apps && apps_stream_owner(apps, stream, &owner);
	if (v->app && (!owned || (strcmp(v->app, owner.session_id) != 0 &&
				  strtol(v->app, NULL, 10) != owner.pid)))
		return;
	struct mux_stream_stats stats;
	mux_stream_get_stats(stream, &stats);
	const char *service = mux_stream_service(stream);
	stream_cells(v, mux_id(mux), mux_stream_id(stream), mux_peer(mux),
		     service[0] ? service : "(default)", mux_stream_state(stream),
		     owned ? owner.session_id : "(built-in)", owner.pid, owner.uid, stats.bytes_in,
		     stats.bytes_out, stats.send_credit, stats.recv_window, owned ? owner.ring_fill : stats.held,
		     owned ? owner.age : stats.opened_at > 0 ? v->now - stats.opened_at : 0);
}

static void stream_conn(struct conn *conn, bool accepted, void *arg)
{
	struct view_ctx *v = arg;
	(void)accepted;
	struct mux *mux = conn_mux(conn);
	if (v->peer && strcmp(v->peer, mux_peer(mux)) != 0)
		return;
	struct stream_walk walk = { v, conn };
	mux_each_stream(mux, stream_row, &walk);
}

static void pair_row(const struct apps_pair_info *pair, void *arg)
{
	struct view_ctx *v = arg;
	if (v->peer && strcmp(v->peer, "local") != 0)
		return;
	for (unsigned end = 0; end < 2; end++) {
		if (!pair->session_id[end][0])
			continue;
		if (v->app && strcmp(v->app, pair->session_id[end]) != 0 &&
		    strtol(v->app, NULL, 10) != pair->pid[end])
			continue;
		stream_cells(v, 0, pair->handle, "local", "", pair->awaiting_accept ? "awaiting-accept" : "open",
			     pair->session_id[end], pair->pid[end], pair->uid[end], 0, 0, 0, 0, 0, 0);
	}
}

static void view_streams(struct view_ctx *v)
{
	const struct control_request *req = v->request;
	for (unsigned i = 1; i < req->argc; i++) {
		if (strcmp(req->argv[i], "--peer") == 0 && i + 1 < req->argc) {
			v->peer = req->argv[++i];
		} else if (strcmp(req->argv[i], "--app") == 0 && i + 1 < req->argc) {
			v->app = req->argv[++i];
		} else {
			fail(v->reply, WH_EINVAL, "streams: unknown argument '%s' (--peer NAME, --app ID|PID)",
			     req->argv[i]);
			return;
		}
	}
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "streams");
	control_table_column(w, "conn", CONTROL_UINT, CONTROL_LABEL, CONTROL_UNIT_NONE, "its connection (0: a same-host stream)");
	control_table_column(w, "stream", CONTROL_UINT, CONTROL_LABEL, CONTROL_UNIT_NONE, "its id on the connection (same-host: the handle)");
	control_table_column(w, "peer", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "the peer broker (local: same host)");
	control_table_column(w, "service", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "the service it was opened for");
	control_table_column(w, "state", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "open, local-closed, remote-closed, closing, finished, reset");
	control_table_column(w, "app", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "the app session that owns it, or (built-in)");
	control_table_column(w, "pid", CONTROL_INT, CONTROL_INFO | CONTROL_NULLABLE, CONTROL_UNIT_NONE, "the owning app's process id (null: no app owns it)");
	control_table_column(w, "uid", CONTROL_INT, CONTROL_INFO | CONTROL_NULLABLE, CONTROL_UNIT_NONE, "the owning app's user id (null: no app owns it)");
	control_table_column(w, "bytes_in", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_BYTES, "payload bytes received from the peer");
	control_table_column(w, "bytes_out", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_BYTES, "payload bytes sent to the peer");
	control_table_column(w, "send_window", CONTROL_INT, CONTROL_GAUGE, CONTROL_UNIT_BYTES, "what the peer lets us send now");
	control_table_column(w, "recv_window", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_BYTES, "our receive window");
	control_table_column(w, "ring_fill", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_BYTES, "received bytes its owner has not read yet");
	control_table_column(w, "age", CONTROL_FLOAT, CONTROL_GAUGE, CONTROL_UNIT_SECONDS, "time since it opened");
	broker_each_conn(v->control->broker, stream_conn, v);
	struct apps *apps = broker_apps(v->control->broker);
	if (apps)
		apps_each_local_pair(apps, pair_row, v);
	table_end(v->reply, w, "streams", v->control->log);
}

static void app_row(const struct apps_session_info *s, void *arg)
{
	struct view_ctx *v = arg;
	struct control_writer *w = &v->w;
	control_table_row(w);
	control_put_text(w, s->id);
	control_put_int(w, s->pid);
	control_put_int(w, s->uid);
	control_put_int(w, s->gid);
	counter_values(w, &s->counters, session_counter_info, SESSION_COUNTERS);
	control_put_uint(w, s->listening);
}

/* apps --by-uid: one row per user, whatever the number of app sessions, so that a scraper's
 * series do not grow with every app started (session ids and pids are new each time). */
#define APP_GROUPS_MAX 64
struct app_group {
	long uid; /* -2: the others, past APP_GROUPS_MAX users */
	uint64_t apps, listening, counters[SESSION_COUNTERS];
};

struct app_groups {
	struct app_group group[APP_GROUPS_MAX];
	unsigned count;
};

static void app_group_add(const struct apps_session_info *s, void *arg)
{
	struct app_groups *g = arg;
	unsigned i = 0;
	while (i < g->count && g->group[i].uid != s->uid)
		i++;
	if (i == g->count && g->count == APP_GROUPS_MAX) {
		i = APP_GROUPS_MAX - 1;
		g->group[i].uid = -2;
	} else if (i == g->count) {
		g->group[g->count++].uid = s->uid;
	}
	struct app_group *group = &g->group[i];
	group->apps++;
	group->listening += s->listening;
	for (size_t n = 0; n < SESSION_COUNTERS; n++)
		group->counters[n] += counter_value(&s->counters, &session_counter_info[n]);
}

static void view_apps_by_uid(struct view_ctx *v)
{
	static struct app_groups g; /* the loop's thread only */
	g.count = 0;
	memset(g.group, 0, sizeof g.group);
	struct apps *apps = broker_apps(v->control->broker);
	if (apps)
		apps_each_session(apps, app_group_add, &g);
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "apps");
	control_table_column(w, "uid", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the apps' user id ((others): past 64 users)");
	control_table_column(w, "apps", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "apps of this user attached now");
	counter_columns(w, session_counter_info, SESSION_COUNTERS, "");
	control_table_column(w, "listening", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "service names they listen on");
	for (unsigned i = 0; i < g.count; i++) {
		char uid[32];
		snprintf(uid, sizeof uid, g.group[i].uid == -2 ? "(others)" : "%ld", g.group[i].uid);
		control_table_row(w);
		control_put_text(w, uid);
		control_put_uint(w, g.group[i].apps);
		for (size_t n = 0; n < SESSION_COUNTERS; n++)
			control_put_uint(w, g.group[i].counters[n]);
		control_put_uint(w, g.group[i].listening);
	}
	table_end(v->reply, w, "apps", v->control->log);
}

static void view_apps(struct view_ctx *v)
{
	const struct control_request *req = v->request;
	if (req->argc == 2 && strcmp(req->argv[1], "--by-uid") == 0) {
		view_apps_by_uid(v);
		return;
	}
	if (req->argc > 1) {
		fail(v->reply, WH_EINVAL, "apps: unknown argument '%s' (--by-uid)", req->argv[1]);
		return;
	}
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "apps");
	control_table_column(w, "app", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the session id (as in log lines)");
	control_table_column(w, "pid", CONTROL_INT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the app's process id");
	control_table_column(w, "uid", CONTROL_INT, CONTROL_INFO, CONTROL_UNIT_NONE, "the app's user id");
	control_table_column(w, "gid", CONTROL_INT, CONTROL_INFO, CONTROL_UNIT_NONE, "the app's group id");
	counter_columns(w, session_counter_info, SESSION_COUNTERS, "");
	control_table_column(w, "listening", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "service names it listens on");
	struct apps *apps = broker_apps(v->control->broker);
	if (apps)
		apps_each_session(apps, app_row, v);
	table_end(v->reply, w, "apps", v->control->log);
}

static void listener_row(const char *service, const struct apps_session_info *s, void *arg)
{
	struct view_ctx *v = arg;
	struct control_writer *w = &v->w;
	control_table_row(w);
	control_put_text(w, service);
	control_put_text(w, "app");
	control_put_text(w, s->id);
	control_put_int(w, s->pid);
	control_put_int(w, s->uid);
}

static void view_services(struct view_ctx *v)
{
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "services");
	control_table_column(w, "service", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the service name");
	control_table_column(w, "kind", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "app (an app listens), built-in");
	control_table_column(w, "app", CONTROL_TEXT, CONTROL_INFO | CONTROL_NULLABLE, CONTROL_UNIT_NONE, "the listening app's session id (null: built-in, the broker's)");
	control_table_column(w, "pid", CONTROL_INT, CONTROL_INFO | CONTROL_NULLABLE, CONTROL_UNIT_NONE, "its process id (null: built-in, the broker's)");
	control_table_column(w, "uid", CONTROL_INT, CONTROL_INFO | CONTROL_NULLABLE, CONTROL_UNIT_NONE, "its user id (null: built-in, the broker's)");
	struct apps *apps = broker_apps(v->control->broker);
	if (apps)
		apps_each_listener(apps, listener_row, v);
	for (const char *const *name = services_builtin; *name; name++) {
		control_table_row(w);
		control_put_text(w, *name);
		control_put_text(w, "built-in");
		control_put_null(w, "the broker's");
		control_put_null(w, "the broker's");
		control_put_null(w, "the broker's");
	}
	table_end(v->reply, w, "services", v->control->log);
}

static void forward_row(const struct forward_info *f, void *arg)
{
	struct control_writer *w = &((struct view_ctx *)arg)->w;
	control_table_row(w);
	control_put_text(w, f->name);
	control_put_text(w, f->listen);
	control_put_text(w, f->peer);
	control_put_text(w, f->service);
	control_put_text(w, f->state);
	control_put_text(w, f->origin);
	control_put_uint(w, f->open);
	control_put_uint(w, f->max_connections);
	control_put_uint(w, f->accepted);
	control_put_uint(w, f->refused_full);
	control_put_uint(w, f->refused_rate);
	control_put_uint(w, f->refused_resets);
	control_put_uint(w, f->open_failures);
	control_put_uint(w, f->reset_by_far);
	control_put_uint(w, f->reset_by_client);
	control_put_uint(w, f->idle_ended);
	control_put_uint(w, f->bytes_in);
	control_put_uint(w, f->bytes_out);
}

/* Forwards ([forward NAME], docs/FORWARDING.md): one row each, labelled by name. */
static void view_forwards(struct view_ctx *v)
{
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "forwards");
	control_table_column(w, "forward", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the forward's name");
	control_table_column(w, "listen", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "where it accepts connections");
	control_table_column(w, "peer", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "the peer its connections reach");
	control_table_column(w, "service", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "the service opened there");
	control_table_column(w, "state", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "listening, draining (a reload or forward del removed it) or closed (the broker drains)");
	control_table_column(w, "origin", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "config, or run time (wormhole-ctl forward add)");
	control_table_column(w, "connections", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "connections carried now, or waiting for their stream");
	control_table_column(w, "max_connections", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "its max-connections");
	control_table_column(w, "accepted", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "connections accepted, refused ones included");
	control_table_column(w, "refused_full", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "closed at once: max-connections reached, or no descriptor");
	control_table_column(w, "refused_rate", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "closed at once: the client's address was over connection-rate");
	control_table_column(w, "refused_resets", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "closed at once: the client's address ended streams early faster than client-reset-rate");
	control_table_column(w, "open_failures", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "reset: no stream (peer unreachable, draining, no memory)");
	control_table_column(w, "reset_by_far", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "ended by an ERROR from the far side (target refused or reset, link lost)");
	control_table_column(w, "reset_by_client", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "ended by the client's reset or a socket error");
	control_table_column(w, "idle_ended", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "reset by its idle-timeout");
	control_table_column(w, "bytes_in", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_BYTES, "bytes from its clients");
	control_table_column(w, "bytes_out", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_BYTES, "bytes to its clients");
	forwarding_each_forward(v->control->broker, forward_row, v);
	table_end(v->reply, w, "forwards", v->control->log);
}

static void target_row(const struct target_info *t, void *arg)
{
	struct control_writer *w = &((struct view_ctx *)arg)->w;
	control_table_row(w);
	control_put_text(w, t->service);
	control_put_text(w, t->target);
	control_put_text(w, t->health);
	control_put_uint(w, t->open);
	control_put_uint(w, t->connections);
	control_put_uint(w, t->failures);
	control_put_uint(w, t->reset_by_target);
	control_put_uint(w, t->reset_by_opener);
	control_put_uint(w, t->idle_ended);
	control_put_uint(w, t->bytes_from_target);
	control_put_uint(w, t->bytes_to_target);
	control_put_text(w, t->configured ? "yes" : "no");
	control_put_text(w, t->last_error);
}

/* Targets of exposed services ([service NAME] target, docs/FORWARDING.md). */
static void view_targets(struct view_ctx *v)
{
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "targets");
	control_table_column(w, "service", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the exposed service");
	control_table_column(w, "target", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "one of its targets, as configured");
	control_table_column(w, "health", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "up (the last connect worked), failing, unknown (never tried)");
	control_table_column(w, "connections", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "connections to it now");
	control_table_column(w, "connects", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "connections made");
	control_table_column(w, "failures", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "connects that failed (refused, unreachable, timed out)");
	control_table_column(w, "reset_by_target", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "connections the target reset (or failed)");
	control_table_column(w, "reset_by_opener", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "connections ended by an ERROR from the opener's side");
	control_table_column(w, "idle_ended", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "connections reset by the service's idle-timeout");
	control_table_column(w, "bytes_from_target", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_BYTES, "bytes the target sent");
	control_table_column(w, "bytes_to_target", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_BYTES, "bytes sent to the target");
	control_table_column(w, "configured", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "no: a reload removed it, its connections go on");
	control_table_column(w, "last_error", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "why its last failed connect failed");
	forwarding_each_target(v->control->broker, target_row, v);
	table_end(v->reply, w, "targets", v->control->log);
}

static const char *apply_name(enum option_apply apply)
{
	switch (apply) {
	case APPLY_LIVE: return "live";
	case APPLY_NEW_STREAMS: return "new streams";
	case APPLY_NEW_CONNECTIONS: return "new connections";
	default: return "restart";
	}
}

/* A config value, or none (NULL value: `meaning` says what is in force instead). */
static void config_row(struct control_writer *w, const char *option, enum option_apply apply, const char *section,
		       const char *value, const char *meaning, const char *source)
{
	control_table_row(w);
	control_put_text(w, option);
	control_put_text(w, section);
	if (value)
		control_put_text(w, value);
	else
		control_put_null(w, meaning);
	control_put_text(w, source);
	control_put_text(w, apply_name(apply));
}

/* The value shown for a broker-wide or peer setting: NULL where the broker would otherwise show
 * a placeholder (an owner of -1:-1, a peer address in [broker]), with *meaning set. */
static const char *config_value(const struct options *o, const struct broker_peer *peer, enum option_id id,
				char *value, size_t length, const char **meaning)
{
	const struct broker_config *c = &o->config;
	long uid = id == OPT_SOCKET_OWNER ? c->apps.socket_uid : c->control.socket_uid;
	long gid = id == OPT_SOCKET_OWNER ? c->apps.socket_gid : c->control.socket_gid;
	if (id == OPT_SOCKET_OWNER || id == OPT_CONTROL_SOCKET_OWNER) {
		*meaning = "the broker's user and group";
		if (uid < 0 && gid < 0)
			return NULL;
		if (uid < 0)
			snprintf(value, length, ":%ld", gid);
		else if (gid < 0)
			snprintf(value, length, "%ld", uid);
		else
			snprintf(value, length, "%ld:%ld", uid, gid);
		return value;
	}
	if (!peer && (id == OPT_ADDRESS || id == OPT_TLS_NAME || id == OPT_PEER_FROM)) {
		*meaning = id == OPT_TLS_NAME ? "each peer's name" : "none (each [peer NAME] gives its own)";
		return NULL;
	}
	options_format_value(c, peer, id, value, length);
	return value;
}

/* Where a peer's value came from: its own line, the command line, or the broker-wide value's. */
static const char *peer_source(const struct options *o, int p, int i, char *out, size_t length)
{
	int line = o->peer_line[p][i];
	if (line == OPTIONS_FROM_COMMAND_LINE)
		return "command line";
	if (line > 0) {
		snprintf(out, length, "%s:%d", o->config_path, line);
		return out;
	}
	return o->sources[i].where;
}

static void config_service_rows(struct control_writer *w, const struct options *o)
{
	const struct service_rules *rules = &o->config.apps.services;
	for (unsigned r = 0; r < rules->count; r++) {
		const struct service_rule *rule = &rules->rules[r];
		char section[300], peers[SERVICE_RULE_PEERS_MAX * 66] = "", owner[48], where[3][4200];
		snprintf(section, sizeof section, "service %s", rule->name);
		for (unsigned p = 0; p < rule->peer_count; p++)
			snprintf(peers + strlen(peers), sizeof peers - strlen(peers), "%s%s", p ? ", " : "", rule->peers[p]);
		if (rule->owner_uid >= 0 && rule->owner_gid >= 0)
			snprintf(owner, sizeof owner, "%ld:%ld", rule->owner_uid, rule->owner_gid);
		else
			snprintf(owner, sizeof owner, rule->owner_uid >= 0 ? "%ld" : ":%ld",
				 rule->owner_uid >= 0 ? rule->owner_uid : rule->owner_gid);
		for (int k = 0; k < 3; k++) {
			if (o->service_line[r][k] > 0)
				snprintf(where[k], sizeof where[k], "%s:%d", o->config_path, o->service_line[r][k]);
			else
				snprintf(where[k], sizeof where[k], "built-in");
		}
		const char *peers_value = !rule->peers_set ? NULL : rule->any_peer ? "*" : rule->peer_count ? peers : "none";
		config_row(w, "peers", option_table[OPT_SERVICE_PEERS].apply, section, peers_value,
			   "any peer that authenticated", where[0]);
		config_row(w, "local", option_table[OPT_SERVICE_LOCAL].apply, section, rule->local ? "yes" : "no",
			   NULL, where[1]);
		config_row(w, "owner", option_table[OPT_SERVICE_OWNER].apply, section,
			   rule->owner_uid < 0 && rule->owner_gid < 0 ? NULL : owner, "any app that may attach", where[2]);
	}
}

static void view_config(struct view_ctx *v)
{
	struct control *ctl = v->control;
	double loaded_at;
	const struct options *o = ctl->hooks.options ? ctl->hooks.options(ctl->hooks.ctx, &loaded_at) : NULL;
	if (!o) {
		fail(v->reply, WH_EINVAL, "this broker keeps no record of its settings");
		return;
	}
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "config");
	control_table_column(w, "option", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the setting's name");
	control_table_column(w, "section", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "broker, peer NAME or service NAME");
	control_table_column(w, "value", CONTROL_TEXT, CONTROL_INFO | CONTROL_NULLABLE, CONTROL_UNIT_NONE, "the value in force, as the config file spells it (null: none; the text says what applies)");
	control_table_column(w, "source", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "built-in, FILE:LINE, command line or wormhole-ctl");
	control_table_column(w, "applies", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "when a change takes effect on reload");
	char value[512], where[4200];
	const char *meaning = NULL;
	/* log-level set by wormhole-ctl since the settings were loaded: that is what is in force */
	bool level_by_ctl = ctl->log_level_set_at > loaded_at;
	for (int i = 0; i < OPTION_COUNT_ALL; i++) {
		const struct option_info *info = &option_table[i];
		if (info->scope != SCOPE_BROKER && info->scope != SCOPE_PEER)
			continue;
		const char *shown = config_value(o, NULL, info->id, value, sizeof value, &meaning);
		const char *source = o->sources[i].where;
		if (info->id == OPT_LOG_LEVEL && level_by_ctl) {
			struct broker_status st;
			broker_get_status(ctl->broker, &st);
			shown = log_level_name(st.log_level);
			source = "wormhole-ctl";
		}
		config_row(w, info->name, info->apply, "broker", shown, meaning, source);
	}
	for (int p = 0; p < o->config.peer_count; p++) {
		const struct broker_peer *peer = &o->config.peers[p];
		char section[80];
		snprintf(section, sizeof section, "peer %s", peer->name);
		for (int i = 0; i < OPTION_COUNT_ALL; i++) {
			const struct option_info *info = &option_table[i];
			if (info->scope != SCOPE_PEER)
				continue;
			const char *shown = config_value(o, peer, info->id, value, sizeof value, &meaning);
			config_row(w, info->name, info->apply, section, shown, meaning,
				   peer_source(o, p, i, where, sizeof where));
		}
	}
	config_service_rows(w, o);
	table_end(v->reply, w, "config", ctl->log);
}

/* ---- actions ---------------------------------------------------------------------------- */

struct stream_search {
	uint32_t conn_id, stream_id;
	struct mux_stream *found;
};

static void search_stream(struct mux_stream *stream, void *arg)
{
	struct stream_search *s = arg;
	if (mux_stream_id(stream) == s->stream_id)
		s->found = stream;
}

static void search_conn(struct conn *conn, bool accepted, void *arg)
{
	struct stream_search *s = arg;
	(void)accepted;
	if (mux_id(conn_mux(conn)) == s->conn_id && !s->found)
		mux_each_stream(conn_mux(conn), search_stream, s);
}

/* A whole unsigned number that fits in 32 bits. */
static bool parse_u32(const char *text, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	if (!text[0] || text[0] == '-' || *end || errno || n > UINT32_MAX)
		return false;
	*out = (uint32_t)n;
	return true;
}

static void action_close_stream(struct view_ctx *v)
{
	const struct control_request *req = v->request;
	struct stream_search s = { 0 };
	char id[CONTROL_ARG_MAX + 1];
	snprintf(id, sizeof id, "%s", req->argc > 1 ? req->argv[1] : "");
	char *slash = strchr(id, '/');
	if (req->argc < 2 || req->argc > 3 || !slash) {
		fail(v->reply, WH_EINVAL, "usage: close-stream CONN/STREAM [CODE] (ids as `streams` shows them)");
		return;
	}
	*slash = '\0';
	uint32_t code = FRAME_ERR_CANCELLED;
	if (!parse_u32(id, &s.conn_id) || !parse_u32(slash + 1, &s.stream_id) ||
	    (req->argc == 3 && !parse_u32(req->argv[2], &code))) {
		fail(v->reply, WH_EINVAL, "close-stream: '%s%s%s' is not CONN/STREAM [CODE] in numbers",
		     req->argv[1], req->argc == 3 ? " " : "", req->argc == 3 ? req->argv[2] : "");
		return;
	}
	static const uint32_t stream_codes[] = { 400, 403, 404, 409, 413, 429, 499, 500, 502, 503, 504 };
	bool known = false;
	for (size_t i = 0; i < COUNT_OF(stream_codes); i++)
		known |= stream_codes[i] == code;
	if (!known) {
		fail(v->reply, WH_EINVAL, "close-stream: %u is not an error code of the protocol "
		     "(400, 403, 404, 409, 413, 429, 499, 500, 502, 503, 504)", code);
		return;
	}
	broker_each_conn(v->control->broker, search_conn, &s);
	if (!s.found) {
		fail(v->reply, WH_ESTREAM_NOT_FOUND, "no stream %u on connection %u", s.stream_id, s.conn_id);
		return;
	}
	static const char why[] = "closed by the operator (wormhole-ctl close-stream)";
	if (!mux_stream_is_finished(s.found))
		apps_stream_ending(s.found, why); /* the app reads why, not a bare "stream closed" */
	if (mux_stream_reset_code(s.found, code, why) != WH_OK) {
		fail(v->reply, WH_ESTREAM_CLOSED, "stream %u/%u has already ended", s.conn_id, s.stream_id);
		return;
	}
	snprintf(v->reply->message, sizeof v->reply->message, "stream %u/%u closed with ERROR %u",
		 s.conn_id, s.stream_id, code);
}

static struct pool *peer_argument(struct view_ctx *v, const char *verb)
{
	const struct control_request *req = v->request;
	if (req->argc != 2) {
		fail(v->reply, WH_EINVAL, "usage: %s PEER", verb);
		return NULL;
	}
	struct pool *pool = broker_find_pool(v->control->broker, req->argv[1]);
	if (!pool)
		fail(v->reply, WH_EUNKNOWN_PEER, "%s: no peer named '%s' is configured", verb, req->argv[1]);
	return pool;
}

static void action_drain_peer(struct view_ctx *v)
{
	struct pool *pool = peer_argument(v, "drain-peer");
	if (!pool)
		return;
	pool_drain(pool);
	snprintf(v->reply->message, sizeof v->reply->message, "peer %s draining: no new streams; open "
		 "ones go on (warm-peer undoes it)", pool_name(pool));
}

static void action_warm_peer(struct view_ctx *v)
{
	struct pool *pool = peer_argument(v, "warm-peer");
	if (!pool)
		return;
	pool_resume(pool);
	int error = pool_warmup(pool);
	if (error != WH_OK) {
		fail(v->reply, error, "warm-peer %s: %s", pool_name(pool), wh_strerror(error));
		return;
	}
	struct pool_info info;
	pool_get_info(pool, &info);
	snprintf(v->reply->message, sizeof v->reply->message, "peer %s: %u open, %u dialling (pool-min %u)",
		 info.name, info.open, info.dialling, info.min_size);
}

static void action_reload(struct view_ctx *v)
{
	struct control *ctl = v->control;
	if (v->request->argc != 1) {
		fail(v->reply, WH_EINVAL, "usage: reload");
		return;
	}
	if (!ctl->hooks.reload) {
		fail(v->reply, WH_EINVAL, "this broker cannot reload");
		return;
	}
	int error = ctl->hooks.reload(ctl->hooks.ctx, v->reply->message, sizeof v->reply->message);
	if (error != WH_OK)
		v->reply->status = error;
}

/* forward add NAME LISTEN PEER SERVICE | forward del NAME (docs/FORWARDING.md) */
static void action_forward(struct view_ctx *v)
{
	const struct control_request *req = v->request;
	struct broker *broker = v->control->broker;
	char message[512];
	int rc;
	if (req->argc == 6 && strcmp(req->argv[1], "add") == 0)
		rc = forwarding_add(broker, req->argv[2], req->argv[3], req->argv[4], req->argv[5], message,
				    sizeof message);
	else if (req->argc == 3 && strcmp(req->argv[1], "del") == 0)
		rc = forwarding_del(broker, req->argv[2], message, sizeof message);
	else {
		fail(v->reply, WH_EINVAL, "usage: forward add NAME LISTEN PEER SERVICE | forward del NAME");
		return;
	}
	if (rc != WH_OK) {
		fail(v->reply, rc, "%s", message);
		return;
	}
	snprintf(v->reply->message, sizeof v->reply->message, "%s", message);
}

static void action_log_level(struct view_ctx *v)
{
	const struct control_request *req = v->request;
	int level = req->argc == 2 ? log_level_parse(req->argv[1]) : -1;
	if (level < 0) {
		fail(v->reply, WH_EINVAL, "usage: log-level error|warn|info|debug");
		return;
	}
	broker_set_log_level(v->control->broker, (enum log_level)level);
	v->control->log_level_set_at = v->now;
	snprintf(v->reply->message, sizeof v->reply->message, "log level %s", log_level_name((enum log_level)level));
}

static const struct {
	const char *name;
	void (*run)(struct view_ctx *v);
	bool action; /* changes something: logged at info, never repeated */
} commands[] = {
	{ "status", view_status, false },
	{ "peers", view_peers, false },
	{ "conns", view_conns, false },
	{ "streams", view_streams, false },
	{ "apps", view_apps, false },
	{ "services", view_services, false },
	{ "forwards", view_forwards, false },
	{ "targets", view_targets, false },
	{ "config", view_config, false },
	{ "close-stream", action_close_stream, true },
	{ "drain-peer", action_drain_peer, true },
	{ "warm-peer", action_warm_peer, true },
	{ "reload", action_reload, true },
	{ "log-level", action_log_level, true },
	{ "forward", action_forward, true },
};

/* ---- clients ------------------------------------------------------------------------------ */

/* The reply the client is to take (NULL: none): what it holds counts in replies_held. */
static void client_set_reply(struct control_client *cl, uint8_t *out, size_t length)
{
	struct control *ctl = cl->control;
	ctl->replies_held -= cl->out ? cl->out_length : 0;
	free(cl->out);
	cl->out = out;
	cl->out_length = out ? length : 0;
	cl->out_sent = 0;
	ctl->replies_held += cl->out_length;
	ev_timer_stop(ctl->broker->loop, &cl->reply_deadline);
}

static void client_free(struct control_client *cl)
{
	struct control *ctl = cl->control;
	ev_io_stop(ctl->broker->loop, &cl->io);
	client_set_reply(cl, NULL, 0);
	close(cl->fd);
	LIST_REMOVE(cl, link);
	ctl->client_count--;
	free(cl);
}

static void client_want(struct control_client *cl, int events)
{
	struct ev_loop *loop = cl->control->broker->loop;
	ev_io_stop(loop, &cl->io);
	ev_io_set(&cl->io, cl->fd, events);
	ev_io_start(loop, &cl->io);
}

/* Runs a request into a whole reply (tables, then DONE) in cl->out. */
/* Runs a command into r (tables, and room for the DONE after them): r->buf is allocated (the
 * caller frees it) unless even DONE_ROOM could not be had (false). A view whose answer does not
 * fit runs again with twice the room, up to REPLY_MAX_SIZE. */
static bool run_command(struct control *ctl, const struct control_request *req, int found, struct reply *r)
{
	size_t size = REPLY_FIRST_SIZE;
	for (;;) {
		uint8_t *buf = malloc(size);
		if (!buf) {
			*r = (struct reply){ .status = WH_ENOMEM, .buf = malloc(DONE_ROOM) };
			snprintf(r->message, sizeof r->message, "the broker is out of memory");
			return r->buf != NULL;
		}
		*r = (struct reply){ .buf = buf, .cap = size - DONE_ROOM, .status = WH_OK };
		if (found < 0) {
			fail(r, WH_EINVAL, "unknown command '%s' (status, peers, conns, streams, apps, services, "
			     "config, close-stream, drain-peer, warm-peer, reload, log-level)", req->argv[0]);
			return true;
		}
		struct view_ctx v = { .control = ctl, .request = req, .reply = r, .now = ev_now(ctl->broker->loop) };
		commands[found].run(&v);
		if (!r->overflow)
			return true;
		free(buf);
		if (size >= REPLY_MAX_SIZE) { /* views only: actions write no table */
			*r = (struct reply){ .status = WH_ELIMIT, .buf = malloc(DONE_ROOM) };
			snprintf(r->message, sizeof r->message, "the answer is larger than %u MiB", REPLY_MAX_SIZE >> 20);
			return r->buf != NULL;
		}
		size *= 2;
	}
}

static int find_command(const char *name)
{
	for (size_t i = 0; i < COUNT_OF(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Runs a request into a whole reply (tables, then DONE) in cl->out. */
static void answer(struct control_client *cl, const struct control_request *req)
{
	struct control *ctl = cl->control;
	int found = find_command(req->argv[0]);
	log_write(ctl->log, found >= 0 && commands[found].action ? LOG_INFO : LOG_DEBUG, "control",
		  "pid=%ld uid=%ld: %s%s%s", cl->pid, cl->uid, req->argv[0], req->argc > 1 ? " " : "",
		  req->argc > 1 ? req->argv[1] : "");
	struct reply r;
	if (!run_command(ctl, req, found, &r)) {
		client_set_reply(cl, NULL, 0);
		cl->close_after_reply = true;
		return;
	}
	if (r.status != WH_OK) {
		r.length = 0; /* a failed view sends no partial table */
		log_write(ctl->log, LOG_INFO, "control", "pid=%ld uid=%ld: %s refused: %s", cl->pid, cl->uid,
			  req->argv[0], r.message);
	}
	int n = control_done_encode(r.buf + r.length, DONE_ROOM, r.status, r.message);
	r.length += n > 0 ? (size_t)n : 0;
	client_set_reply(cl, r.buf, r.length);
}

/* The views `wormhole-ctl metrics` asks for, as Prometheus text (for metrics-listen):
 * connections summed per peer and apps per user, so that the series do not grow with them. */
static char *metrics_text(void *arg, size_t *length)
{
	struct control *ctl = arg;
	static const char *const views[][2] = { { "status" }, { "peers" }, { "conns", "--by-peer" }, { "apps", "--by-uid" },
						{ "forwards" }, { "targets" } };
	char *text = NULL;
	FILE *out = open_memstream(&text, length);
	if (!out)
		return NULL;
	for (size_t i = 0; i < COUNT_OF(views); i++) {
		struct control_request req = { .argc = views[i][1] ? 2 : 1 };
		for (unsigned a = 0; a < req.argc; a++)
			snprintf(req.argv[a], sizeof req.argv[a], "%s", views[i][a]);
		struct reply r;
		if (!run_command(ctl, &req, find_command(views[i][0]), &r))
			continue;
		struct control_header h;
		static struct control_table table;
		if (r.status == WH_OK &&
		    control_header_decode(r.buf, r.length, CONTROL_BODY_MAX, &h) == WH_OK &&
		    control_table_decode(r.buf + CONTROL_HEADER_SIZE, h.length, &table) == WH_OK)
			control_metrics_write(out, &table);
		free(r.buf);
	}
	if (fclose(out) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

static void reply_protocol_error(struct control_client *cl, const char *why)
{
	log_write(cl->control->log, LOG_WARN, "control", "pid=%ld uid=%ld: %s; closing", cl->pid, cl->uid, why);
	uint8_t *out = malloc(DONE_ROOM);
	int n = out ? control_done_encode(out, DONE_ROOM, WH_EPROTOCOL, why) : 0;
	client_set_reply(cl, out, n > 0 ? (size_t)n : 0);
	cl->close_after_reply = true;
}

/* A whole request in cl->in: answer it. Returns false while more bytes are needed. */
static bool take_request(struct control_client *cl)
{
	struct control_header h;
	int rc = control_header_decode(cl->in, cl->in_length, CONTROL_REQUEST_MAX, &h);
	if (rc == WH_EWOULDBLOCK)
		return false;
	if (rc != WH_OK || h.type != CONTROL_REQUEST) {
		reply_protocol_error(cl, "not a wormhole control request (wrong magic, version, type or length)");
		return true;
	}
	size_t whole = CONTROL_HEADER_SIZE + h.length;
	if (cl->in_length < whole)
		return false;
	struct control_request req;
	if (control_request_decode(cl->in + CONTROL_HEADER_SIZE, h.length, &req) != WH_OK) {
		reply_protocol_error(cl, "a malformed control request");
		return true;
	}
	memmove(cl->in, cl->in + whole, cl->in_length - whole);
	cl->in_length -= whole;
	answer(cl, &req);
	return true;
}

/* Closes a client for the reason given (logged with its pid), counting it. */
static void client_drop(struct control_client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void client_drop(struct control_client *cl, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	log_write(cl->control->log, LOG_INFO, "control", "pid=%ld uid=%ld: closed: %s", cl->pid, cl->uid, why);
	cl->control->clients_dropped++;
	client_free(cl);
}

/* The client that has waited longest (least recently took or sent a byte), other than keep. */
static struct control_client *longest_waiting(struct control *ctl, const struct control_client *keep,
					     bool with_reply)
{
	struct control_client *found = NULL, *c;
	LIST_FOREACH(c, &ctl->clients, link)
		if (c != keep && (!with_reply || c->out) && (!found || c->last_active < found->last_active))
			found = c;
	return found;
}

/* A reply is ready: it must be taken within CONTROL_REPLY_TIMEOUT, and the replies clients
 * hold, all together, stay under CONTROL_REPLIES_HELD_MAX (those that waited longest go). */
static void reply_ready(struct control_client *cl)
{
	struct control *ctl = cl->control;
	struct ev_loop *loop = ctl->broker->loop;
	struct control_client *stalled;
	while (ctl->replies_held > CONTROL_REPLIES_HELD_MAX && (stalled = longest_waiting(ctl, cl, true)))
		client_drop(stalled, "its %zu-byte reply not taken, to bound the memory replies hold",
			    stalled->out_length - stalled->out_sent);
	ev_timer_set(&cl->reply_deadline, CONTROL_REPLY_TIMEOUT, 0);
	ev_timer_start(loop, &cl->reply_deadline);
	client_want(cl, EV_WRITE);
}

static void on_reply_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct control_client *cl = w->data;
	(void)loop;
	(void)revents;
	client_drop(cl, "%zu bytes of its reply not taken within %.0f s", cl->out_length - cl->out_sent,
		    CONTROL_REPLY_TIMEOUT);
}

static void client_send(struct control_client *cl)
{
	struct ev_loop *loop = cl->control->broker->loop;
	while (cl->out_sent < cl->out_length) {
		ssize_t n = send(cl->fd, cl->out + cl->out_sent, cl->out_length - cl->out_sent, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			client_free(cl);
			return;
		}
		cl->out_sent += (size_t)n;
		cl->last_active = ev_now(loop);
	}
	client_set_reply(cl, NULL, 0);
	if (cl->close_after_reply) {
		client_free(cl);
		return;
	}
	if (take_request(cl)) { /* one was already waiting */
		reply_ready(cl);
		return;
	}
	client_want(cl, EV_READ);
}

static void client_receive(struct control_client *cl)
{
	ssize_t n = recv(cl->fd, cl->in + cl->in_length, sizeof cl->in - cl->in_length, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) { /* gone, or an error: nothing to answer */
		client_free(cl);
		return;
	}
	cl->in_length += (size_t)n;
	cl->last_active = ev_now(cl->control->broker->loop);
	if (take_request(cl))
		reply_ready(cl);
}

static void on_client(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	if (revents & EV_WRITE)
		client_send(w->data);
	else
		client_receive(w->data);
}

static void client_new(struct control *ctl, int fd, const struct ucred *cred)
{
	struct ev_loop *loop = ctl->broker->loop;
	if (ctl->client_count >= CONTROL_CLIENTS_MAX) {
		/* the client that has waited longest makes room, idle or not taking its reply: a
		 * stopped tool, a script that never closes or never reads cannot lock the
		 * operator out */
		struct control_client *oldest = longest_waiting(ctl, NULL, false);
		if (oldest)
			client_drop(oldest, "%s for %.0f s, to admit pid=%ld", oldest->out ? "not taking its reply"
				    : "idle", ev_now(loop) - oldest->last_active, (long)cred->pid);
	}
	struct control_client *cl = calloc(1, sizeof *cl);
	if (!cl) {
		close(fd);
		return;
	}
	cl->control = ctl;
	cl->fd = fd;
	cl->pid = cred->pid;
	cl->uid = (long)cred->uid;
	cl->last_active = ev_now(loop);
	ev_io_init(&cl->io, on_client, fd, EV_READ);
	cl->io.data = cl;
	ev_timer_init(&cl->reply_deadline, on_reply_deadline, CONTROL_REPLY_TIMEOUT, 0);
	cl->reply_deadline.data = cl;
	ev_io_start(loop, &cl->io);
	LIST_INSERT_HEAD(&ctl->clients, cl, link);
	ctl->client_count++;
	client_receive(cl); /* a request already there is answered before later arrivals come */
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct control *ctl = w->data;
	(void)revents;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				ev_io_stop(loop, &ctl->acceptor);
				ev_timer_start(loop, &ctl->accept_pause);
			}
			return;
		}
		struct ucred cred = { .pid = 0, .uid = (uid_t)-1 };
		socklen_t len = sizeof cred;
		getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
		client_new(ctl, fd, &cred);
	}
}

static void on_idle_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct control *ctl = w->data;
	(void)revents;
	for (struct control_client *c = LIST_FIRST(&ctl->clients), *next; c; c = next) {
		next = LIST_NEXT(c, link);
		if (ev_now(loop) - c->last_active > CONTROL_IDLE_TIMEOUT) {
			log_write(ctl->log, LOG_INFO, "control", "pid=%ld uid=%ld: closed after %.0f s idle",
				  c->pid, c->uid, CONTROL_IDLE_TIMEOUT);
			client_free(c);
		}
	}
}

static void on_accept_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct control *ctl = w->data;
	(void)revents;
	ev_io_start(loop, &ctl->acceptor);
}

static struct control *control_open(struct broker *broker, const struct control_hooks *hooks)
{
	const struct control_config *config = &broker->config.control;
	struct control *ctl = calloc(1, sizeof *ctl);
	if (!ctl)
		return NULL;
	ctl->broker = broker;
	ctl->hooks = *hooks;
	ctl->log = &broker->log;
	ctl->listen_fd = -1;
	LIST_INIT(&ctl->clients);
	snprintf(ctl->path, sizeof ctl->path, "%s", config->socket_path);
	if (config->metrics_host[0]) {
		ctl->metrics = metrics_http_start(broker->loop, config->metrics_host, config->metrics_port,
						  ctl->log, metrics_text, ctl);
		if (!ctl->metrics) {
			free(ctl);
			errno = EADDRNOTAVAIL;
			return NULL;
		}
	}
	if (!config->socket_path[0])
		return ctl; /* metrics only */
	if (unix_socket_claim(config->socket_path, SOCK_STREAM, ctl->log, "control") < 0) {
		int saved = errno;
		metrics_http_stop(ctl->metrics);
		free(ctl);
		errno = saved;
		return NULL;
	}
	ctl->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* given its owner and mode where no link can be swapped in, then put at its path: no
	 * moment where a wider mode lets someone in (unix_socket_bind) */
	struct stat st;
	int rc = ctl->listen_fd < 0 ? -1
		 : unix_socket_bind(ctl->listen_fd, config->socket_path, config->socket_mode,
				    config->socket_uid, config->socket_gid, 16, &st, ctl->log, "control");
	if (rc < 0) {
		int saved = errno;
		if (ctl->listen_fd >= 0)
			close(ctl->listen_fd);
		else
			log_write(ctl->log, LOG_ERROR, "control", "socket %s: %s", config->socket_path, strerror(saved));
		metrics_http_stop(ctl->metrics);
		free(ctl);
		errno = saved;
		return NULL;
	}
	ctl->socket_dev = st.st_dev;
	ctl->socket_ino = st.st_ino;
	ev_io_init(&ctl->acceptor, on_accept, ctl->listen_fd, EV_READ);
	ctl->acceptor.data = ctl;
	ev_timer_init(&ctl->accept_pause, on_accept_resume, 0.1, 0.0);
	ctl->accept_pause.data = ctl;
	ev_timer_init(&ctl->idle_sweep, on_idle_sweep, CONTROL_IDLE_TIMEOUT / 4, CONTROL_IDLE_TIMEOUT / 4);
	ctl->idle_sweep.data = ctl;
	ev_timer_start(broker->loop, &ctl->idle_sweep);
	ev_io_start(broker->loop, &ctl->acceptor);
	log_write(ctl->log, LOG_INFO, "control", "wormhole-ctl connects at %s (mode %03o, owner %ld, group %ld)",
		  config->socket_path, config->socket_mode, config->socket_uid, config->socket_gid);
	return ctl;
}

struct control *control_start(struct broker *broker, const struct control_hooks *hooks)
{
	struct control *ctl = control_open(broker, hooks);
	if (!ctl)
		return NULL;
	ctl->closed_conns = calloc(CONN_GROUPS_MAX, sizeof *ctl->closed_conns);
	if (!ctl->closed_conns) {
		control_stop(ctl);
		errno = ENOMEM;
		return NULL;
	}
	broker->conn_shared.on_free = conn_group_closed;
	broker->conn_shared.on_free_ctx = ctl;
	return ctl;
}

void control_stop(struct control *ctl)
{
	if (!ctl)
		return;
	while (!LIST_EMPTY(&ctl->clients))
		client_free(LIST_FIRST(&ctl->clients));
	metrics_http_stop(ctl->metrics);
	if (ctl->listen_fd >= 0) {
		ev_io_stop(ctl->broker->loop, &ctl->acceptor);
		ev_timer_stop(ctl->broker->loop, &ctl->accept_pause);
		ev_timer_stop(ctl->broker->loop, &ctl->idle_sweep);
		close(ctl->listen_fd);
		struct stat st;
		if (lstat(ctl->path, &st) == 0 && st.st_dev == ctl->socket_dev && st.st_ino == ctl->socket_ino)
			unlink(ctl->path);
	}
	if (ctl->broker->conn_shared.on_free_ctx == ctl)
		ctl->broker->conn_shared.on_free = NULL;
	free(ctl->closed_conns);
	free(ctl);
}
