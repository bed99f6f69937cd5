/* The control socket (control.h): requests in, tables and results out.
 * This file: the socket, its clients (a request at a time each, bounded in number, time and
 * the memory their replies hold) and the table of commands; the views are in
 * control_views.c and control_config.c, the actions in control_actions.c. */
#include "config.h"

#include "control.h"
#include "control_internal.h"

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

#include "control_metrics.h"
#include "control_msg.h"
#include "metrics_http.h"
#include "unix_socket.h"
#include "listener_rest.h"

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
			if (accept_failure_persists(errno)) {
				listener_rest(loop, &ctl->acceptor, &ctl->accept_pause, &ctl->accept_rests,
					      ctl->log, "control", "control socket ", errno);
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
	ev_timer_init(&ctl->accept_pause, on_accept_resume, ACCEPT_PAUSE_SECONDS, 0.0);
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
	if (!conn_groups_start(ctl)) {
		control_stop(ctl);
		errno = ENOMEM;
		return NULL;
	}
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
