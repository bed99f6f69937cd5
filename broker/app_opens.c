/* Opens through a peer pool, and streams peers open to a service an app listens on. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps_internal.h"

/* ---- an app's part of a peer ---------------------------------------------------------- */

/* An app may waste a quarter of what the peer's reset-rate allows the connection (its burst
 * and its rate), and hold app-peer-budget of a peer's budget share (apps->config.peer_share): one
 * misbehaving app leaves the connection's bucket, and three such apps leave it above the
 * margin at which every app's opens are held back (mux_input.c, OWN_RESET_MARGIN). */
#define APP_SHARE_DIVISOR 4.0
#define APP_BURST_SECONDS 5.0 /* as the mux's buckets */

static struct app_peer_share *peer_share_get(struct app_session *c, const char *peer)
{
	struct app_peer_share *p;
	LIST_FOREACH(p, &c->peer_shares, link)
		if (strcmp(p->peer, peer) == 0)
			return p;
	/* one per peer name the pool lookup accepted: bounded by the configured peers */
	p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->session = c;
	snprintf(p->peer, sizeof p->peer, "%s", peer);
	LIST_INSERT_HEAD(&c->peer_shares, p, link);
	return p;
}

/* Refills the bucket and takes what the app's streams wasted since the last look. */
static double peer_share_tokens(struct app_peer_share *p, double now)
{
	double rate = p->account.reset_rate / APP_SHARE_DIVISOR;
	if (rate <= 0)
		return 1; /* no reset-rate, or no stream charged yet: nothing to hold back */
	double burst = rate * APP_BURST_SECONDS > 1 ? rate * APP_BURST_SECONDS : 1;
	if (p->refilled_at == 0) {
		p->tokens = burst;
		p->refilled_at = now;
	}
	p->tokens += (now - p->refilled_at) * rate;
	p->refilled_at = now;
	if (p->tokens > burst)
		p->tokens = burst;
	p->tokens -= (double)(p->account.wasted - p->wasted_seen);
	p->wasted_seen = p->account.wasted;
	if (p->tokens < 0)
		p->tokens = 0;
	return p->tokens;
}

/* May the app open one more stream to this peer? WH_OK, or WH_ELIMIT with the reason. */
static int peer_share_admit(struct app_session *c, struct app_peer_share *p, char *why, size_t length)
{
	p->account.limit = c->apps->config.peer_share; /* a reload may have changed it */
	if (peer_share_tokens(p, ev_now(c->apps->loop)) < 1) {
		snprintf(why, length, "peer %.60s: this app's streams end without data nearly as fast "
			 "as the peer's reset-rate allows (a quarter of it is each app's): retry after a "
			 "pause", p->peer);
		if (!p->held_back)
			log_write(c->apps->log, LOG_WARN, "apps", "client=%s opens to peer=%s held back: "
				  "its streams end without data faster than its part of the peer's "
				  "reset-rate (%.0f a second) allows", c->id, p->peer,
				  p->account.reset_rate / APP_SHARE_DIVISOR);
		p->held_back = true;
		return WH_ELIMIT;
	}
	p->held_back = false;
	if (p->account.limit && p->account.used + p->account.stream_cost > p->account.limit) {
		snprintf(why, length, "peer %.60s: this app's streams hold its part of the memory "
			 "budget for the peer (app-peer-budget of its peer-budget share): close some first", p->peer);
		return WH_ELIMIT;
	}
	return WH_OK;
}

void peer_shares_release(struct app_session *c)
{
	while (!LIST_EMPTY(&c->peer_shares)) {
		struct app_peer_share *p = LIST_FIRST(&c->peer_shares);
		LIST_REMOVE(p, link);
		p->session = NULL;
		if (p->account.used == 0)
			free(p); /* else its last stream frees it */
	}
}

void peer_share_stream_gone(struct app_peer_share *p)
{
	/* every stream charged to it holds budget (its window) until freed: used reaches 0
	 * only when the last one goes */
	if (p && !p->session && p->account.used == 0)
		free(p);
}

/* ---- opening through a pool -------------------------------------------------------- */

struct open_request {
	struct apps *apps;
	struct pool *pool;
	char client_id[2 * ATTACH_CLIENT_ID_SIZE + 1];
	uint32_t request_id;
	char service[ATTACH_STRING_MAX + 1];
	char peer[ATTACH_STRING_MAX + 1];
	/* The app's timeout: at it the app is answered (WH_ETIMEOUT, or why the peer cannot be
	 * reached) and the open is over for it; a stream the pool delivers later is ended at
	 * once, so that nothing is left behind. */
	ev_timer deadline;
	bool answered;
};

/* Why an open to this pool cannot be served now, in words: the peer's address and the last
 * dial's failure, or "" when the pool has nothing to say. */
static void pool_trouble(struct pool *pool, char *out, size_t length)
{
	struct pool_info info;
	pool_get_info(pool, &info);
	out[0] = '\0';
	if (info.dial_in) /* it has no address: "peer NAME is not connected (it dials in...)" */
		snprintf(out, length, "%s", info.last_error);
	else if (info.last_error[0] && info.retry_in > 0)
		snprintf(out, length, "peer %s (%s:%s): %s; next dial in %.1f s", info.name, info.host, info.port,
			 info.last_error, info.retry_in);
	else if (info.last_error[0])
		snprintf(out, length, "peer %s (%s:%s): %s", info.name, info.host, info.port, info.last_error);
}

/* The app's answer for an open that failed: WH_EPEER_UNREACHABLE with the cause when the pool
 * knows why it has no connection, else the error as it is. */
static void answer_failure(struct app_session *c, struct open_request *r, int error)
{
	char why[ATTACH_STRING_MAX + 1];
	pool_trouble(r->pool, why, sizeof why);
	if (why[0] && (error == WH_ETIMEOUT || error == WH_EPEER_UNREACHABLE)) {
		session_send_result(c, r->request_id, WH_EPEER_UNREACHABLE, why);
		return;
	}
	if (error == WH_ETIMEOUT)
		snprintf(why, sizeof why, "no connection to peer %.200s within the open's timeout", r->peer);
	else if (error == WH_ELIMIT)
		snprintf(why, sizeof why, "peer %.60s: no more streams for now (the connection's "
			 "limit, or streams ending without data nearly as fast as its reset-rate "
			 "allows: retry after a pause)", r->peer);
	session_send_result(c, r->request_id, error, why[0] ? why : NULL);
}

static void on_open_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct open_request *r = w->data;
	(void)loop;
	(void)revents;
	r->answered = true;
	struct app_session *c = session_by_id(r->apps, r->client_id);
	if (c)
		answer_failure(c, r, WH_ETIMEOUT);
}

/* The pool opened the stream for app c: join it to a segment, charge it to the app's part
 * of the peer, and hand it over (or say why not, and end it). */
static void deliver_opened(struct app_session *c, struct open_request *r, struct mux_stream *stream)
{
	struct shm_stream *s;
	struct app_peer_share *share = peer_share_get(c, r->peer);
	int rc = shm_new(r->apps, c, stream, &s);
	if (rc != WH_OK) {
		mux_stream_reset(stream, rc, wh_strerror(rc));
		mux_stream_release(stream);
		session_send_result(c, r->request_id, rc, NULL);
		return;
	}
	if (share && mux_stream_set_owner(stream, &share->account) != WH_OK) {
		/* admitted when asked, but the app's other opens took its part meanwhile */
		const char *why = "this app's streams hold its part of the memory budget for the peer";
		shm_detach_client(s, WH_ELIMIT, why);
		session_send_result(c, r->request_id, WH_ELIMIT, why);
		return;
	}
	s->share = share;
	rc = session_hand_over(c, ATTACH_OPENED, r->request_id, s->handle, &s->seg, -1, s->slot,
			       APP_TX_RING, r->service, r->peer);
	if (rc != WH_OK) {
		/* The answer is the stream: without it, say why (or the app is gone). */
		shm_detach_client(s, rc, wh_strerror(rc));
		session_send_result(c, r->request_id, rc, NULL);
		return;
	}
	c->counters.streams_opened++;
	shm_handed_over(s);
}

static void on_pool_opened(struct mux_stream *stream, int error, void *user)
{
	struct open_request *r = user;
	ev_timer_stop(r->apps->loop, &r->deadline);
	/* The app may have left while the pool dialled: look it up again by id. */
	struct app_session *c = r->answered ? NULL : session_by_id(r->apps, r->client_id);
	const char *why;
	if (!c) {
		if (stream) {
			mux_stream_reset(stream, WH_EAPP_GONE, r->answered ? "the app's open timed out"
									    : "the app went away");
			mux_stream_release(stream);
		}
	} else if (error != WH_OK) {
		answer_failure(c, r, error);
	} else if (session_admit(c, &why) != WH_OK) {
		/* admitted when asked, but other opens completed meanwhile */
		mux_stream_reset(stream, WH_ELIMIT, why);
		mux_stream_release(stream);
		session_send_result(c, r->request_id, WH_ELIMIT, why);
	} else {
		deliver_opened(c, r, stream);
	}
	free(r);
}

void open_through_pool(struct app_session *c, const struct attach_msg *req)
{
	struct apps *apps = c->apps;
	const char *why;
	if (apps->draining) {
		session_send_result(c, req->request_id, WH_EMUX_CLOSED, "the broker is stopping");
		return;
	}
	if (session_admit(c, &why) != WH_OK) {
		log_write(apps->log, LOG_INFO, "apps", "client=%s open to peer=%s refused: %s", c->id,
			  req->peer, why);
		session_send_result(c, req->request_id, WH_ELIMIT, why);
		return;
	}
	if (strcmp(req->peer, "local") == 0) {
		const char *service = req->service[0] ? req->service : apps->config.default_service;
		if (service_app_may_open(&apps->config.services, service, &why) != WH_OK) {
			log_write(apps->log, LOG_INFO, "apps", "client=%s local open of service=%s refused: %s",
				  c->id, service, why);
			session_send_result(c, req->request_id, WH_EACCESS, why);
			return;
		}
		/* a service with a TCP target goes to it (no app may listen there): through the
		 * broker's local link, as a forward with peer = local does */
		const struct service_rule *rule = service_rules_find(&apps->config.services, service);
		if (!rule || !rule->target_refusal[0]) {
			open_local(c, req);
			return;
		}
	}
	struct pool *pool = apps->find_pool ? apps->find_pool(apps->find_ctx, req->peer) : NULL;
	if (!pool) {
		session_send_result(c, req->request_id, WH_EUNKNOWN_PEER, NULL);
		return;
	}
	struct app_peer_share *share = peer_share_get(c, req->peer);
	char held[ATTACH_STRING_MAX + 1];
	if (share && peer_share_admit(c, share, held, sizeof held) != WH_OK) {
		c->apps->stats.opens_held_back++;
		session_send_result(c, req->request_id, WH_ELIMIT, held);
		return;
	}
	struct open_request *r = calloc(1, sizeof *r);
	if (!r) {
		session_send_result(c, req->request_id, WH_ENOMEM, NULL);
		return;
	}
	r->apps = apps;
	r->pool = pool;
	r->request_id = req->request_id;
	memcpy(r->client_id, c->id, sizeof r->client_id);
	memcpy(r->service, req->service, sizeof r->service);
	memcpy(r->peer, req->peer, sizeof r->peer);
	/* a peer the pool cannot reach (its last dial failed, the next waits for its back-off)
	 * fails at once with the cause, rather than at the end of the app's timeout */
	struct pool_info info;
	pool_get_info(pool, &info);
	if (info.open == 0 && info.retry_in > 0 && info.last_error[0]) {
		answer_failure(c, r, WH_EPEER_UNREACHABLE);
		free(r);
		return;
	}
	ev_timer_init(&r->deadline, on_open_deadline, req->timeout_ms / 1000.0, 0);
	r->deadline.data = r;
	if (req->timeout_ms != ATTACH_NO_TIMEOUT)
		ev_timer_start(apps->loop, &r->deadline);
	if (pool_open_stream(pool, req->service, on_pool_opened, r) != WH_OK) {
		ev_timer_stop(apps->loop, &r->deadline);
		session_send_result(c, req->request_id, WH_EMUX_CLOSED, pool_is_closed(pool) ? NULL
					 : "the broker takes no new streams to this peer (drain-peer, or a reload "
					   "removed it)");
		free(r);
	}
}

int apps_route_incoming(struct apps *apps, struct mux *mux, struct mux_stream *stream,
			const char *service)
{
	struct app_session *listener = service_registry_find(&apps->services, service);
	if (!listener)
		return WH_ENO_SERVICE;
	const char *why;
	int error = listener_admit(listener, &why);
	if (error != WH_OK) {
		log_write(apps->log, LOG_INFO, "apps", "client=%s incoming stream for service=%s "
			  "refused: %s", listener->id, service, why);
		return error;
	}
	struct shm_stream *s;
	error = shm_new(apps, listener, stream, &s);
	if (error != WH_OK)
		return error;
	/* the peer as this broker names it: its configured name on dialled connections, its
	 * certificate identity or address on accepted ones (wh_stream_peer) */
	error = session_hand_over(listener, ATTACH_INCOMING, 0, s->handle, &s->seg, -1,
			    s->slot, APP_TX_RING, service, mux_peer(mux));
	if (error != WH_OK) {
		/* refused: the mux frees the stream, and with it s (io_release) */
		shm_unlink_client(s);
		return error;
	}
	s->awaiting_accept = true;
	listener->counters.unaccepted++;
	listener->counters.streams_accepted++;
	shm_handed_over(s);
	return WH_OK;
}
