/* `peer = local`: this broker's own services reached as a peer's are. A forward (or an app's
 * open of a service with a TCP target) opens streams on one end of an in-process connection,
 * a socketpair with a mux at each end; the other end routes them as streams from a peer are
 * routed (target, listening app, built-in service), under the service's rules for local
 * opens. So a forward's relay, the windows and the targets are the same code whatever the
 * peer, and no other broker is involved. Made at the first use, made again if it ever closes. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "services.h"

/* A pair whose opener used up its stream ids: out of the pool, it closes once its streams
 * end (docs/PROTOCOL.md 2), while a new pair takes the opens. */
struct retired_pair {
	struct conn *opener, *taker; /* NULL once closed */
	struct retired_pair *next;
};

struct local_link {
	struct broker *broker;
	struct pool *pool;           /* "local": dials in, its one connection lent */
	struct conn *opener, *taker; /* NULL once closed */
	struct retired_pair *retired;
};

/* Forgets a closed end of a retired pair; the pair goes once both ends have. */
static void retired_forget(struct local_link *link, struct conn *conn)
{
	for (struct retired_pair **at = &link->retired; *at; at = &(*at)->next) {
		struct retired_pair *r = *at;
		if (r->opener == conn)
			r->opener = NULL;
		else if (r->taker == conn)
			r->taker = NULL;
		else
			continue;
		if (!r->opener && !r->taker) {
			*at = r->next;
			free(r);
		}
		return;
	}
}

static int refuse_incoming(struct mux *mux, struct mux_stream *stream, const char *service, void *user)
{
	(void)mux;
	(void)stream;
	(void)service;
	(void)user;
	return WH_ENO_SERVICE; /* the taker's end opens nothing */
}

/* A stream opened through the link, for `service` (empty: the default): the service's local
 * rule decides, as for a local app's open, then it is routed as any peer's stream is. */
static int local_incoming(struct mux *mux, struct mux_stream *stream, const char *service, void *user)
{
	struct local_link *link = user;
	struct broker *broker = link->broker;
	const char *name = service[0] ? service : broker->config.default_service;
	const char *why = NULL;
	if (service_app_may_open(&broker->config.apps.services, name, &why) != WH_OK) {
		log_write(&broker->log, LOG_WARN, "broker", "local stream=%u service=%s refused: %s",
			  mux_stream_id(stream), name, why ? why : "its rules");
		return WH_EACCESS;
	}
	int error = forwarding_attach_target(broker, stream, name);
	if (error == WH_ENO_SERVICE)
		error = broker->apps ? apps_route_incoming(broker->apps, mux, stream, name) : WH_ENO_SERVICE;
	if (error == WH_ENO_SERVICE)
		error = services_attach(stream, name);
	return error;
}

static void on_opener_closed(struct mux *mux, int error, void *user)
{
	struct local_link *link = user;
	struct conn *conn = conn_from_mux(mux);
	pool_release(link->pool, conn);
	if (conn == link->opener) {
		/* WH_EMUX_CLOSED: planned (its stream ids used up and its last stream ended) */
		log_write(&link->broker->log, error == WH_EMUX_CLOSED ? LOG_INFO : LOG_WARN, "broker",
			  "the local link closed: %s (made again at the next use)", wh_strerror(error));
		link->opener = NULL;
	} else {
		retired_forget(link, conn);
	}
	conn_free(conn);
}

static void on_taker_closed(struct mux *mux, int error, void *user)
{
	struct local_link *link = user;
	struct conn *conn = conn_from_mux(mux);
	(void)error;
	if (conn == link->taker)
		link->taker = NULL;
	else
		retired_forget(link, conn);
	conn_free(conn);
}

/* A pair that can take no more opens makes room for a new one at the next open: its opener
 * took its last stream id (it leaves the pool and closes once its streams end), or one end
 * closed while the other still finishes closing (the taker hears the opener's goodbye a loop
 * iteration later). Without this every local open failed for as long as one stream of an
 * exhausted pair lived (a forwarded SSH session: for ever), and in the moment between the two
 * ends' closes. The ends left behind free themselves from their close callbacks. */
static void retire_unusable(struct local_link *link)
{
	bool exhausted = link->opener && !mux_is_closed(conn_mux(link->opener)) &&
			 !mux_accepts_streams(conn_mux(link->opener));
	bool usable = link->opener && link->taker && !mux_is_closed(conn_mux(link->opener)) && !exhausted;
	if (usable || (!link->opener && !link->taker))
		return;
	struct retired_pair *r = calloc(1, sizeof *r);
	if (!r)
		return; /* it stays the link until both ends closed, as before */
	r->opener = link->opener;
	r->taker = link->taker;
	r->next = link->retired;
	link->retired = r;
	if (link->opener)
		pool_release(link->pool, link->opener);
	link->opener = link->taker = NULL;
	if (exhausted)
		log_write(&link->broker->log, LOG_INFO, "broker", "the local link used up its stream "
			  "ids: a new one takes the opens, the old one closes once its streams end");
}

/* Both ends, over a new socketpair. WH_OK, or WH_ESYSTEM / WH_ENOMEM (logged). */
static int link_connect(struct local_link *link)
{
	struct broker *broker = link->broker;
	int fds[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
		log_write(&broker->log, LOG_ERROR, "broker", "local link: socketpair: %s", strerror(errno));
		return WH_ESYSTEM;
	}
	struct mux_config config = broker->config.pool.mux;
	config.idle_timeout = 0;
	/* Both ends are this broker: the bounds a peer's misuse calls for (reset-rate, and our
	 * pacing below it, which refuses opens; noop-rate) would only turn a forward's clients
	 * that connect and close at once into refusals of everyone else's. */
	config.reset_rate = 0;
	config.noop_rate = 0;
	/* max-streams bounds a peer's connection; this one connection carries every local
	 * forward's and app's open, which max-connections and app-max-streams bound already */
	config.max_streams = UINT32_MAX;
	/* A test hook: stream ids run out after this many opens, as they would after 2^31
	 * (check_forward test_local_link_renewed_when_ids_run_out) */
	const char *ids_left = getenv("WORMHOLE_TEST_LOCAL_IDS_LEFT");
	unsigned long left = ids_left ? strtoul(ids_left, NULL, 10) : 0;
	config.ids_left = left <= UINT32_MAX / 2 ? (uint32_t)left : 0;
	snprintf(config.peer, sizeof config.peer, "local");
	struct mux_callbacks opener = { .on_incoming = refuse_incoming, .on_closed = on_opener_closed };
	struct mux_callbacks taker = { .on_incoming = local_incoming, .on_closed = on_taker_closed };
	link->opener = conn_new(broker->loop, fds[0], true, &config, &broker->conn_shared, &opener, link);
	link->taker = conn_new(broker->loop, fds[1], false, &config, &broker->conn_shared, &taker, link);
	if (!link->opener || !link->taker || pool_adopt(link->pool, link->opener) != WH_OK) {
		if (link->opener)
			conn_free(link->opener);
		else
			close(fds[0]);
		if (link->taker)
			conn_free(link->taker);
		else
			close(fds[1]);
		link->opener = link->taker = NULL;
		log_write(&broker->log, LOG_ERROR, "broker", "local link: out of memory");
		return WH_ENOMEM;
	}
	return WH_OK;
}

struct pool *local_link_pool(struct broker *broker)
{
	struct local_link *link = broker->local;
	if (broker->draining)
		return link ? link->pool : NULL;
	if (!link) {
		link = calloc(1, sizeof *link);
		if (!link)
			return NULL;
		link->broker = broker;
		link->pool = pool_new(broker->loop, "local", "", "", &broker->config.pool, &broker->conn_shared,
				      NULL, broker);
		if (!link->pool) {
			free(link);
			return NULL;
		}
		broker->local = link;
	}
	retire_unusable(link);
	if (!link->opener && !link->taker) /* the first use, or the last pair retired */
		link_connect(link);
	return link->pool;
}

static bool opener_drained(const struct conn *opener)
{
	return !opener || mux_is_closed(conn_mux(opener)) || mux_num_streams(conn_mux(opener)) == 0;
}

bool local_link_drained(const struct broker *broker)
{
	const struct local_link *link = broker->local;
	if (!link)
		return true;
	for (const struct retired_pair *r = link->retired; r; r = r->next)
		if (!opener_drained(r->opener))
			return false;
	return opener_drained(link->opener);
}

void local_link_each_conn(const struct broker *broker, void (*fn)(struct conn *conn, void *arg), void *arg)
{
	const struct local_link *link = broker->local;
	if (!link)
		return;
	if (link->opener)
		fn(link->opener, arg);
	for (const struct retired_pair *r = link->retired; r; r = r->next)
		if (r->opener)
			fn(r->opener, arg);
}

void local_link_free(struct broker *broker)
{
	struct local_link *link = broker->local;
	if (!link)
		return;
	pool_free(link->pool); /* lends the opener back */
	if (link->opener)
		conn_free(link->opener);
	if (link->taker)
		conn_free(link->taker);
	while (link->retired) {
		struct retired_pair *r = link->retired;
		link->retired = r->next;
		if (r->opener)
			conn_free(r->opener);
		if (r->taker)
			conn_free(r->taker);
		free(r);
	}
	free(link);
	broker->local = NULL;
}
