/* The control socket's actions (docs/CONTROL.md): close-stream, drain-peer, warm-peer,
 * reload, forward add/del, log-level. Apart from the views because each changes the broker:
 * control.c logs them at info and never runs one twice. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "control_internal.h"
#include "control_msg.h"
#include "frame.h"

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

/* A whole unsigned number up to max. */
static bool parse_number(const char *text, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	if (!text[0] || text[0] == '-' || *end || errno || n > max)
		return false;
	*out = n;
	return true;
}

static bool parse_u32(const char *text, uint32_t *out)
{
	uint64_t n;
	if (!parse_number(text, UINT32_MAX, &n))
		return false;
	*out = (uint32_t)n;
	return true;
}

void action_close_stream(struct view_ctx *v)
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
	uint64_t stream = 0; /* a stream id, or a same-host stream's 64-bit handle (conn 0) */
	if (!parse_u32(id, &s.conn_id) || !parse_number(slash + 1, s.conn_id ? UINT32_MAX : UINT64_MAX, &stream) ||
	    (req->argc == 3 && !parse_u32(req->argv[2], &code))) {
		fail(v->reply, WH_EINVAL, "close-stream: '%s%s%s' is not CONN/STREAM [CODE] in numbers",
		     req->argv[1], req->argc == 3 ? " " : "", req->argc == 3 ? req->argv[2] : "");
		return;
	}
	s.stream_id = (uint32_t)stream;
	static const uint32_t stream_codes[] = { 400, 403, 404, 409, 413, 429, 499, 500, 502, 503, 504 };
	bool known = false;
	for (size_t i = 0; i < COUNT_OF(stream_codes); i++)
		known |= stream_codes[i] == code;
	if (!known) {
		fail(v->reply, WH_EINVAL, "close-stream: %u is not an error code of the protocol "
		     "(400, 403, 404, 409, 413, 429, 499, 500, 502, 503, 504)", code);
		return;
	}
	static const char why[] = "closed by the operator (wormhole-ctl close-stream)";
	if (s.conn_id == 0) { /* a same-host stream, by its handle */
		int error = apps_close_local_pair(v->control->broker->apps, stream, code, why);
		if (error == WH_ESTREAM_NOT_FOUND)
			fail(v->reply, error, "no same-host stream %llu (0/HANDLE as `streams` shows it)",
			     (unsigned long long)stream);
		else if (error != WH_OK)
			fail(v->reply, error, "stream 0/%llu has already ended", (unsigned long long)stream);
		else
			snprintf(v->reply->message, sizeof v->reply->message, "stream 0/%llu closed with "
				 "ERROR %u", (unsigned long long)stream, code);
		return;
	}
	broker_each_conn(v->control->broker, search_conn, &s);
	if (!s.found) {
		fail(v->reply, WH_ESTREAM_NOT_FOUND, "no stream %u on connection %u", s.stream_id, s.conn_id);
		return;
	}
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

void action_drain_peer(struct view_ctx *v)
{
	struct pool *pool = peer_argument(v, "drain-peer");
	if (!pool)
		return;
	pool_drain(pool);
	snprintf(v->reply->message, sizeof v->reply->message, "peer %s draining: no new streams; open "
		 "ones go on (warm-peer undoes it)", pool_name(pool));
}

void action_warm_peer(struct view_ctx *v)
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

void action_reload(struct view_ctx *v)
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
void action_forward(struct view_ctx *v)
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

void action_log_level(struct view_ctx *v)
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

