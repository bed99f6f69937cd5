/* Active health checks of a service's targets: a TCP connect every health-check seconds; fall
 * failures in a row take a target down (it gets no new streams), rise successes bring it up. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "forward_internal.h"
#include "resolve.h"

struct target_health {
	struct forwarding *fw;
	struct target_entry *entry;
	char host[256];
	char port[16];
	double interval, timeout;
	unsigned fall, rise;
	bool down;
	unsigned in_row; /* results in a row that disagree with the state */
	bool probing;
	bool keep;       /* health_sync: still asked for */
	int fd;
	ev_io connected;
	ev_timer timer;  /* the next probe; while probing, the probe's timeout */
	struct resolve_request *lookup;
};

static void probe_cleanup(struct target_health *h)
{
	struct ev_loop *loop = h->fw->broker->loop;
	ev_io_stop(loop, &h->connected);
	ev_timer_stop(loop, &h->timer);
	if (h->lookup) {
		resolve_cancel(h->lookup);
		h->lookup = NULL;
	}
	if (h->fd >= 0) {
		close(h->fd);
		h->fd = -1;
	}
	h->probing = false;
}

/* One probe's result: the state turns after fall failures or rise successes in a row. */
static void probe_done(struct target_health *h, bool ok, const char *why)
{
	struct target_entry *e = h->entry;
	const struct log_sink *log = &h->fw->broker->log;
	probe_cleanup(h);
	if (ok == !h->down) {
		h->in_row = 0;
	} else if (++h->in_row >= (ok ? h->rise : h->fall)) {
		h->down = !ok;
		h->in_row = 0;
		if (ok)
			log_write(log, LOG_INFO, "health", "service=%s target=%s: up (%u checks passed)",
				  e->service, e->target, h->rise);
		else
			log_write(log, LOG_WARN, "health", "service=%s target=%s: down after %u failed checks: "
				  "%s: it takes no new streams", e->service, e->target, h->fall, why);
	}
	if (!ok)
		snprintf(e->last_error, sizeof e->last_error, "health check: %s", why);
	ev_timer_set(&h->timer, h->interval, 0);
	ev_timer_start(h->fw->broker->loop, &h->timer);
}

static void on_probe_connected(struct ev_loop *loop, ev_io *w, int revents)
{
	struct target_health *h = w->data;
	int error = 0;
	socklen_t length = sizeof error;
	(void)loop;
	(void)revents;
	if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0)
		error = errno;
	if (error != EINPROGRESS)
		probe_done(h, error == 0, strerror(error));
}

static void on_probe_resolved(struct addrinfo *result, int gai_error, void *user)
{
	struct target_health *h = user;
	h->lookup = NULL;
	if (gai_error) {
		probe_done(h, false, gai_strerror(gai_error));
		return;
	}
	/* the first address: what a stream tries first (the others stand in when it fails) */
	h->fd = socket(result->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd < 0) {
		probe_done(h, false, strerror(errno));
		return;
	}
	if (connect(h->fd, result->ai_addr, result->ai_addrlen) == 0) {
		probe_done(h, true, "");
		return;
	}
	if (errno != EINPROGRESS) {
		probe_done(h, false, strerror(errno));
		return;
	}
	ev_io_set(&h->connected, h->fd, EV_WRITE);
	ev_io_start(h->fw->broker->loop, &h->connected);
	/* the timer was stopped when the probe started: now it bounds the connect */
	ev_timer_set(&h->timer, h->timeout, 0);
	ev_timer_start(h->fw->broker->loop, &h->timer);
}

static void on_health_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct target_health *h = w->data;
	(void)loop;
	(void)revents;
	if (h->probing) {
		probe_done(h, false, "connect timed out");
		return;
	}
	h->probing = true;
	h->lookup = resolve_start(h->fw->broker->loop, h->host, h->port, on_probe_resolved, h);
	if (!h->lookup)
		probe_done(h, false, "out of memory");
}

static struct target_health *health_new(struct forwarding *fw, struct target_entry *e)
{
	struct target_health *h = calloc(1, sizeof *h);
	if (!h)
		return NULL;
	h->fw = fw;
	h->entry = e;
	h->fd = -1;
	ev_init(&h->connected, on_probe_connected);
	h->connected.data = h;
	ev_timer_init(&h->timer, on_health_timer, 0, 0); /* the first check at once */
	h->timer.data = h;
	ev_timer_start(fw->broker->loop, &h->timer);
	return h;
}

void health_sync(struct forwarding *fw)
{
	const struct broker_config *c = &fw->broker->config;
	for (struct target_entry *e = fw->targets; e; e = e->next)
		if (e->health)
			e->health->keep = false;
	for (unsigned i = 0; i < c->exposed_count; i++) {
		const struct exposed_service *x = &c->exposed[i];
		for (unsigned t = 0; x->health_interval > 0 && t < x->target_count; t++) {
			char target[300];
			forward_format_address(target, sizeof target, x->targets[t].host, x->targets[t].port);
			struct target_entry *e = target_entry_get(fw, x->service, target);
			if (!e || (!e->health && !(e->health = health_new(fw, e))))
				continue;
			struct target_health *h = e->health;
			snprintf(h->host, sizeof h->host, "%s", x->targets[t].host);
			snprintf(h->port, sizeof h->port, "%s", x->targets[t].port);
			h->interval = x->health_interval;
			h->timeout = x->connect_timeout < x->health_interval ? x->connect_timeout : x->health_interval;
			h->fall = x->fall;
			h->rise = x->rise;
			h->keep = true;
		}
	}
	for (struct target_entry *e = fw->targets; e; e = e->next)
		if (e->health && !e->health->keep)
			health_stop(e);
}

bool health_is_down(const struct target_entry *e)
{
	return e && e->health && e->health->down;
}

const char *health_state(const struct target_entry *e)
{
	return e->health ? (e->health->down ? "down" : "up") : NULL;
}

void health_stop(struct target_entry *e)
{
	if (!e->health)
		return;
	probe_cleanup(e->health);
	free(e->health);
	e->health = NULL;
}
