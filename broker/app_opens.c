/* Opens through a peer pool, and streams peers open to a service an app listens on. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps_internal.h"

/* ---- opening through a pool -------------------------------------------------------- */

struct open_request {
	struct apps *apps;
	char client_id[2 * ATTACH_CLIENT_ID_SIZE + 1];
	uint32_t request_id;
	char service[ATTACH_STRING_MAX + 1];
	char peer[ATTACH_STRING_MAX + 1];
};

static void on_pool_opened(struct mux_stream *stream, int error, void *user)
{
	struct open_request *r = user;
	/* The app may have left while the pool dialled: look it up again by id. */
	struct app_session *c = session_by_id(r->apps, r->client_id);
	const char *why;
	if (!c) {
		if (stream) {
			mux_stream_reset(stream, WH_EAPP_GONE, "the app went away");
			mux_stream_release(stream);
		}
	} else if (error != WH_OK) {
		session_send_result(c, r->request_id, error, NULL);
	} else if (session_admit(c, &why) != WH_OK) {
		/* admitted when asked, but other opens completed meanwhile */
		mux_stream_reset(stream, WH_ELIMIT, why);
		mux_stream_release(stream);
		session_send_result(c, r->request_id, WH_ELIMIT, why);
	} else {
		struct shm_stream *s;
		int rc = shm_new(r->apps, c, stream, &s);
		if (rc != WH_OK) {
			mux_stream_reset(stream, rc, wh_strerror(rc));
			mux_stream_release(stream);
			session_send_result(c, r->request_id, rc, NULL);
		} else if ((rc = session_hand_over(c, ATTACH_OPENED, r->request_id, s->handle, &s->seg,
					     s->wake_app_peer, -1, s->slot, APP_TX_RING, r->service,
					     r->peer)) != WH_OK) {
			/* The answer is the stream: without it, say why (or the app is gone). */
			shm_detach_client(s, rc, wh_strerror(rc));
			session_send_result(c, r->request_id, rc, NULL);
		} else {
			c->counters.streams_opened++;
			shm_handed_over(s);
		}
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
		open_local(c, req);
		return;
	}
	struct pool *pool = apps->find_pool ? apps->find_pool(apps->find_ctx, req->peer) : NULL;
	if (!pool) {
		session_send_result(c, req->request_id, WH_EUNKNOWN_PEER, NULL);
		return;
	}
	struct open_request *r = calloc(1, sizeof *r);
	if (!r) {
		session_send_result(c, req->request_id, WH_ENOMEM, NULL);
		return;
	}
	r->apps = apps;
	r->request_id = req->request_id;
	memcpy(r->client_id, c->id, sizeof r->client_id);
	memcpy(r->service, req->service, sizeof r->service);
	memcpy(r->peer, req->peer, sizeof r->peer);
	if (pool_open_stream(pool, req->service, on_pool_opened, r) != WH_OK) {
		session_send_result(c, req->request_id, WH_EMUX_CLOSED, NULL);
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
	struct conn *conn = conn_from_mux(mux);
	error = session_hand_over(listener, ATTACH_INCOMING, 0, s->handle, &s->seg, s->wake_app_peer, -1,
			    s->slot, APP_TX_RING, service, conn ? conn_remote_addr(conn) : "");
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
