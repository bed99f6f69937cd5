/* The control socket's views of the running broker (docs/CONTROL.md): status, peers, conns,
 * streams, apps, services, forwards, targets, each a table made from the modules' own
 * snapshots, and the helpers that build a reply's tables. Apart from the socket and its
 * clients (control.c) because what a view shows changes with the modules, and how a client
 * is served does not. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build_commit.h"
#include "control.h"
#include "control_internal.h"
#include "control_msg.h"
#include "frame.h"
#include "metrics_http.h"

/* ---- the reply being built ------------------------------------------------------------ */

void table_begin(struct reply *r, struct control_writer *w, const char *name)
{
	control_table_begin(w, r->buf + r->length, r->cap - r->length, name);
}

void table_end(struct reply *r, struct control_writer *w, const char *name,
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

void fail(struct reply *r, int status, const char *fmt, ...)
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

/* ---- views ---------------------------------------------------------------------------- */
/* conns and apps take one argument, the flag of their grouped form (--by-peer, --by-uid):
 * true when the request was for that form, or had another argument (refused), and is done. */
static bool view_grouped(struct view_ctx *v, const char *view, const char *flag,
			 void (*grouped)(struct view_ctx *v))
{
	const struct control_request *req = v->request;
	if (req->argc == 2 && strcmp(req->argv[1], flag) == 0) {
		grouped(v);
		return true;
	}
	if (req->argc > 1) {
		fail(v->reply, WH_EINVAL, "%s: unknown argument '%s' (%s)", view, req->argv[1], flag);
		return true;
	}
	return false;
}

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

void view_status(struct view_ctx *v)
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
	control_table_column(w, "handshakes_failed", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "accepted TLS connections whose handshake failed or did not finish in handshake-timeout (logged at most once a second)");
	control_table_column(w, "connections_held", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "peer connections held unread a while: their peer was cut off for abuse lately (docs/SECURITY.md)");
	control_table_column(w, "connections_held_replaced", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "held peer connections closed for a newer one of the same peer");
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
	control_put_uint(w, st.handshakes_failed);
	control_put_uint(w, st.penalty_holds);
	control_put_uint(w, st.penalty_replaced);
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

void view_peers(struct view_ctx *v)
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

void view_conns(struct view_ctx *v)
{
	if (view_grouped(v, "conns", "--by-peer", view_conns_by_peer))
		return;
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

void view_streams(struct view_ctx *v)
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

void view_apps(struct view_ctx *v)
{
	if (view_grouped(v, "apps", "--by-uid", view_apps_by_uid))
		return;
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

void view_services(struct view_ctx *v)
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
void view_forwards(struct view_ctx *v)
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
void view_targets(struct view_ctx *v)
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

/* control_start's part: the book of the connections that closed (conns --by-peer), filled
 * from the start by conn_shared.on_free. False when it cannot be had. */
bool conn_groups_start(struct control *ctl)
{
	ctl->closed_conns = calloc(CONN_GROUPS_MAX, sizeof *ctl->closed_conns);
	if (!ctl->closed_conns)
		return false;
	ctl->broker->conn_shared.on_free = conn_group_closed;
	ctl->broker->conn_shared.on_free_ctx = ctl;
	return true;
}
