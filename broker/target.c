/* The exposing side: a stream a peer opened for a service with targets becomes one TCP
 * connection to the first target that answers. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "forward_internal.h"
#include "proxy_header.h"
#include "resolve.h"

#define DIAL_ADDRESSES_MAX 8 /* addresses of one target name tried in turn */
#define TARGET_ENTRIES_MAX 1024 /* per-target statistics kept (config: 32 services x 8) */

/* One stream waiting for its target: the targets in order, each name's addresses in order,
 * one non-blocking connect at a time, each bounded by connect-timeout. The stream's bytes
 * wait in its receive window meanwhile (the opener writes at once: bounded by the window). */
struct target_dial {
	struct forwarding *fw;
	struct target_dial *prev, *next;
	struct mux_stream *stream;
	struct exposed_service service; /* a copy: a reload may change the config meanwhile */
	unsigned target;                /* the target tried now */
	struct name_lookup *lookup;     /* the lookup it waits for, or NULL */
	struct target_entry *counted;   /* the target it chose first, its dialling count taken */
	struct target_dial *wait_prev, *wait_next; /* among the lookup's waiters */
	struct sockaddr_storage addresses[DIAL_ADDRESSES_MAX];
	socklen_t address_lengths[DIAL_ADDRESSES_MAX];
	unsigned address_count, address_at;
	int fd;
	ev_io connected;
	ev_timer timeout;
	/* what the PROXY header says (proxy-protocol), taken when the stream came: the forward's
	 * client the opener named, and the identity its connection's certificate proved */
	bool has_client;
	struct frame_client_address client;
	char peer_identity[256];
	int last_error;       /* errno of the last failed attempt */
	char last_what[400];  /* "target 127.0.0.1:8000: Connection refused" */
	bool last_timed_out;
};

/* One lookup of a target's name, whatever the number of streams waiting for it: a name's
 * lookup runs in a thread (broker/resolve.c) that cannot be stopped once started, so the
 * threads are bounded by the names in the config, not by the streams peers open (or open and
 * reset, for nothing). A lookup whose waiters all left runs on to its end and is then freed. */
struct name_lookup {
	struct forwarding *fw;
	struct name_lookup *prev, *next;
	struct resolve_request *request;
	struct target_dial *waiting;  /* the newest first */
	struct target_dial *oldest;   /* the list's tail: answered first */
	char host[256];
	char port[16];
};

static void dial_next_target(struct target_dial *d);
static void dial_next_address(struct target_dial *d);
static void on_resolved(struct addrinfo *result, int gai_error, void *user);

static void lookup_unlink(struct name_lookup *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		n->fw->lookups = n->next;
	if (n->next)
		n->next->prev = n->prev;
}

static void lookup_leave(struct target_dial *d)
{
	struct name_lookup *n = d->lookup;
	if (!n)
		return;
	if (n->oldest == d)
		n->oldest = d->wait_prev;
	if (d->wait_prev)
		d->wait_prev->wait_next = d->wait_next;
	else
		n->waiting = d->wait_next;
	if (d->wait_next)
		d->wait_next->wait_prev = d->wait_prev;
	d->lookup = NULL;
	d->wait_prev = d->wait_next = NULL;
}

/* The answer goes to every dial that waits for it, in the order they came. */
static void on_lookup_done(struct addrinfo *result, int gai_error, void *user)
{
	struct name_lookup *n = user;
	lookup_unlink(n); /* a dial that tries this name again from here starts a new lookup */
	/* one at a time from the live list: answering one may end others (their streams' errors
	 * are delivered when a relay lets its stream go), which leave the list themselves */
	while (n->oldest) {
		struct target_dial *d = n->oldest;
		lookup_leave(d);
		on_resolved(result, gai_error, d);
	}
	free(n);
}

/* Joins the lookup of the current target's name (starting one if none runs). The answer
 * always comes from the loop, never from inside this call. WH_OK or WH_ENOMEM. */
static int dial_lookup(struct target_dial *d)
{
	const struct target_address *t = &d->service.targets[d->target];
	struct name_lookup *n = d->fw->lookups;
	while (n && (strcmp(n->host, t->host) != 0 || strcmp(n->port, t->port) != 0))
		n = n->next;
	if (!n) {
		n = calloc(1, sizeof *n);
		if (!n)
			return WH_ENOMEM;
		n->fw = d->fw;
		snprintf(n->host, sizeof n->host, "%s", t->host);
		snprintf(n->port, sizeof n->port, "%s", t->port);
		n->request = resolve_start(d->fw->broker->loop, t->host, t->port, on_lookup_done, n);
		if (!n->request) {
			free(n);
			return WH_ENOMEM;
		}
		if ((n->next = d->fw->lookups))
			n->next->prev = n;
		d->fw->lookups = n;
	}
	d->lookup = n;
	if ((d->wait_next = n->waiting))
		d->wait_next->wait_prev = d;
	else
		n->oldest = d;
	n->waiting = d;
	return WH_OK;
}

void targets_stop_lookups(struct forwarding *fw)
{
	while (fw->lookups) {
		struct name_lookup *n = fw->lookups;
		while (n->waiting)
			lookup_leave(n->waiting);
		lookup_unlink(n);
		resolve_cancel(n->request);
		free(n);
	}
}

static const char *current_target(struct target_dial *d, char *out, size_t length)
{
	const struct target_address *t = &d->service.targets[d->target];
	forward_format_address(out, length, t->host, t->port);
	return out;
}

bool target_entry_configured(const struct broker_config *c, const struct target_entry *e)
{
	const struct exposed_service *x = forwarding_find_exposed(c, e->service);
	char target[300];
	for (unsigned i = 0; x && i < x->target_count; i++) {
		forward_format_address(target, sizeof target, x->targets[i].host, x->targets[i].port);
		if (strcmp(target, e->target) == 0)
			return true;
	}
	return false;
}

/* The statistics of a service's target (made on first use); NULL when the table is full of
 * entries in use or configured, or without memory. */
struct target_entry *target_entry_get(struct forwarding *fw, const char *service, const char *target)
{
	for (struct target_entry *e = fw->targets; e; e = e->next)
		if (strcmp(e->service, service) == 0 && strcmp(e->target, target) == 0)
			return e;
	if (fw->target_entries >= TARGET_ENTRIES_MAX) {
		for (struct target_entry **link = &fw->targets; *link; link = &(*link)->next) {
			struct target_entry *e = *link;
			if (e->relays.open == 0 && e->dialling == 0 && !e->health &&
			    !target_entry_configured(&fw->broker->config, e)) {
				*link = e->next;
				free(e);
				fw->target_entries--;
				break;
			}
		}
		if (fw->target_entries >= TARGET_ENTRIES_MAX)
			return NULL;
	}
	struct target_entry *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	snprintf(e->service, sizeof e->service, "%s", service);
	snprintf(e->target, sizeof e->target, "%s", target);
	e->next = fw->targets;
	fw->targets = e;
	fw->target_entries++;
	return e;
}

static void service_wake(struct tcp_relay_limit *limit, void *ctx)
{
	struct service_limit *sl = ctx;
	for (struct target_entry *e = sl->fw->targets; e; e = e->next)
		if (strcmp(e->service, sl->service) == 0)
			tcp_relay_set_wake(&e->relays, limit);
	tcp_relay_set_wake(&sl->fw->untracked_relays, limit);
}

/* The service's bandwidth limit, or NULL when it has none (made on first use). */
static struct tcp_relay_limit *service_limit_get(struct forwarding *fw, const struct exposed_service *x)
{
	struct service_limit *sl = fw->limits;
	while (sl && strcmp(sl->service, x->service) != 0)
		sl = sl->next;
	if (!sl && x->bandwidth <= 0)
		return NULL;
	if (!sl) {
		if (!(sl = calloc(1, sizeof *sl)))
			return NULL;
		sl->fw = fw;
		snprintf(sl->service, sizeof sl->service, "%s", x->service);
		tcp_relay_limit_init(&sl->limit, fw->broker->loop, service_wake, sl);
		sl->next = fw->limits;
		fw->limits = sl;
	}
	tcp_relay_limit_set_rate(&sl->limit, x->bandwidth);
	return &sl->limit;
}

void targets_sync_limits(struct forwarding *fw)
{
	for (struct service_limit *sl = fw->limits; sl; sl = sl->next) {
		const struct exposed_service *x = forwarding_find_exposed(&fw->broker->config, sl->service);
		tcp_relay_limit_set_rate(&sl->limit, x ? x->bandwidth : 0);
	}
}

/* The relays of targets without an entry (the table is full). */
static struct tcp_relay_set *entry_relays(struct forwarding *fw, struct target_entry *e)
{
	return e ? &e->relays : &fw->untracked_relays;
}

/* The dial no longer counts towards its first target's load (least-connections). */
static void dial_uncount(struct target_dial *d)
{
	if (d->counted)
		d->counted->dialling--;
	d->counted = NULL;
}

/* Whose turn it is for the service, counted on (round-robin, and least-connections' ties). */
static uint64_t next_turn(struct forwarding *fw, const char *service)
{
	unsigned i = 0, free_slot = FORWARD_EXPOSED_MAX;
	for (; i < FORWARD_EXPOSED_MAX; i++) {
		if (strcmp(fw->turns[i].service, service) == 0)
			return fw->turns[i].next++;
		if (!fw->turns[i].service[0] && free_slot == FORWARD_EXPOSED_MAX)
			free_slot = i;
	}
	i = free_slot < FORWARD_EXPOSED_MAX ? free_slot : 0; /* full after reloads: start over */
	snprintf(fw->turns[i].service, sizeof fw->turns[i].service, "%s", service);
	fw->turns[i].next = 1;
	return 0;
}

static unsigned target_load(struct forwarding *fw, const char *service, const struct target_address *t)
{
	char target[300];
	forward_format_address(target, sizeof target, t->host, t->port);
	for (const struct target_entry *e = fw->targets; e; e = e->next)
		if (strcmp(e->service, service) == 0 && strcmp(e->target, target) == 0)
			return e->relays.open + e->dialling;
	return 0;
}

/* Puts the target the balance picks first; the others follow in their order, wrapping. */
static void dial_balance(struct target_dial *d)
{
	struct exposed_service *x = &d->service;
	unsigned n = x->target_count, first = 0;
	if (n > 1 && x->balance != BALANCE_FIRST) {
		unsigned turn = (unsigned)(next_turn(d->fw, x->service) % n);
		first = turn;
		if (x->balance == BALANCE_LEAST_CONNECTIONS) {
			unsigned best = UINT32_MAX;
			for (unsigned k = 0; k < n; k++) { /* ties go round in turn */
				unsigned i = (turn + k) % n, load = target_load(d->fw, x->service, &x->targets[i]);
				if (load < best) {
					best = load;
					first = i;
				}
			}
		}
	}
	/* targets their health checks call down take no new streams */
	struct target_address rotated[FORWARD_TARGETS_MAX];
	unsigned kept = 0;
	for (unsigned k = 0; k < n; k++) {
		const struct target_address *t = &x->targets[(first + k) % n];
		char name[300];
		forward_format_address(name, sizeof name, t->host, t->port);
		const struct target_entry *e = NULL;
		for (e = d->fw->targets; e; e = e->next)
			if (strcmp(e->service, x->service) == 0 && strcmp(e->target, name) == 0)
				break;
		if (!health_is_down(e))
			rotated[kept++] = *t;
	}
	memcpy(x->targets, rotated, sizeof rotated[0] * kept);
	x->target_count = kept;
	if (kept == 0)
		return;
	char target[300];
	forward_format_address(target, sizeof target, x->targets[0].host, x->targets[0].port);
	d->counted = target_entry_get(d->fw, x->service, target);
	if (d->counted)
		d->counted->dialling++;
}

static void dial_unlink(struct target_dial *d)
{
	dial_uncount(d);
	if (d->prev)
		d->prev->next = d->next;
	else
		d->fw->dials = d->next;
	if (d->next)
		d->next->prev = d->prev;
}

/* Stops whatever is under way: a lookup, a connect and its timer. */
static void dial_stop_attempt(struct target_dial *d)
{
	struct ev_loop *loop = d->fw->broker->loop;
	lookup_leave(d);
	ev_io_stop(loop, &d->connected);
	ev_timer_stop(loop, &d->timeout);
	if (d->fd >= 0) {
		close(d->fd);
		fd_budget_give(&d->fw->broker->fds, 1);
		d->fd = -1;
	}
}

/* No target answered: the opener gets ERROR 502 (refused, unreachable, reset) or 504 (timed
 * out) with the last target's words, and the log says the same. */
static void dial_failed(struct target_dial *d)
{
	uint32_t code = d->last_timed_out ? FRAME_ERR_TIMEOUT : FRAME_ERR_ENDPOINT_GONE;
	char message[400];
	if (d->service.target_count > 1)
		snprintf(message, sizeof message, "no target of service %.60s answered; last: %.300s",
			 d->service.service, d->last_what);
	else
		snprintf(message, sizeof message, "%s", d->last_what);
	log_write(&d->fw->broker->log, LOG_WARN, "target", "service=%s stream=%u: %s: stream reset "
		  "with ERROR %u", d->service.service, mux_stream_id(d->stream), message, code);
	d->fw->target_failures++;
	dial_unlink(d);
	mux_stream_set_handler(d->stream, NULL, NULL);
	mux_stream_reset_code(d->stream, code, message);
	mux_stream_release(d->stream);
	free(d);
}

/* One address failed (refused, unreachable, timed out): the next one, or the next target. */
static void attempt_failed(struct target_dial *d, int error, const char *address)
{
	char target[300];
	current_target(d, target, sizeof target);
	dial_stop_attempt(d);
	d->last_error = error;
	d->last_timed_out = error == ETIMEDOUT;
	if (d->last_timed_out)
		snprintf(d->last_what, sizeof d->last_what, "target %.280s: connect timed out after %.15g s",
			 target, d->service.connect_timeout);
	else
		snprintf(d->last_what, sizeof d->last_what, "target %.280s: %.100s", target, strerror(error));
	log_write(&d->fw->broker->log, LOG_WARN, "target", "service=%s target=%s%s%s: connect: %s "
		  "(errno %d)", d->service.service, target, address ? " address=" : "",
		  address ? address : "", strerror(error), error);
	struct target_entry *e = target_entry_get(d->fw, d->service.service, target);
	if (e) {
		e->failures++;
		e->tried = e->last_failed = true;
		snprintf(e->last_error, sizeof e->last_error, "%s",
			 d->last_timed_out ? "connect timed out" : strerror(error));
	}
	d->address_at++;
	dial_next_address(d);
}

/* The PROXY protocol header for the target (proxy-protocol): the client the opener named, or
 * "unknown" (v1 UNKNOWN, v2 LOCAL) when it named none; v2 adds the peer's identity (TLV
 * 0xE0) when its connection proved one. Its length, 0 when none is wanted. */
static size_t dial_proxy_header(const struct target_dial *d, uint8_t *out, size_t cap)
{
	struct proxy_addresses a = { .family = PROXY_FAMILY_UNKNOWN };
	if (d->has_client) {
		size_t size = d->client.family == 4 ? 4 : 16;
		a.family = d->client.family == 4 ? PROXY_FAMILY_TCP4 : PROXY_FAMILY_TCP6;
		memcpy(a.src_addr, d->client.src_addr, size);
		memcpy(a.dst_addr, d->client.dst_addr, size);
		a.src_port = d->client.src_port;
		a.dst_port = d->client.dst_port;
	}
	int n = 0;
	if (d->service.proxy_protocol == 1) {
		n = proxy_header_encode_v1(out, cap, &a);
	} else if (d->service.proxy_protocol == 2) {
		size_t id_length = strlen(d->peer_identity);
		struct proxy_tlv id = { PROXY_TLV_WORMHOLE_PEER, (uint16_t)id_length,
					(const uint8_t *)d->peer_identity };
		n = proxy_header_encode_v2(out, cap, &a, &id, id_length ? 1 : 0);
	}
	return n > 0 ? (size_t)n : 0;
}

static void dial_connected(struct target_dial *d)
{
	struct broker *broker = d->fw->broker;
	char target[300], label[200], name[320];
	current_target(d, target, sizeof target);
	ev_io_stop(broker->loop, &d->connected);
	ev_timer_stop(broker->loop, &d->timeout);
	forward_socket_nodelay(d->fd);
	snprintf(label, sizeof label, "service=%.60s target=%.100s stream=%u", d->service.service, target,
		 mux_stream_id(d->stream));
	snprintf(name, sizeof name, "target %s", target);
	log_write(&broker->log, LOG_DEBUG, "target", "%s: connected", label);
	struct target_entry *e = target_entry_get(d->fw, d->service.service, target);
	if (e) {
		e->tried = true;
		e->last_failed = false;
	}
	uint8_t header[PROXY_HEADER_ENCODE_MAX];
	struct tcp_relay_params params = { label, FRAME_ERR_ENDPOINT_GONE, name, d->service.idle_timeout,
					   service_limit_get(d->fw, &d->service), header,
					   dial_proxy_header(d, header, sizeof header), NULL, NULL };
	if (tcp_relay_start(broker->loop, &broker->log, &broker->fds, entry_relays(d->fw, e), d->fd,
			    d->stream, &params) != WH_OK) {
		d->last_timed_out = false;
		snprintf(d->last_what, sizeof d->last_what, "%.300s: out of memory", name);
		dial_stop_attempt(d);
		dial_failed(d);
		return;
	}
	dial_unlink(d); /* the relay has the socket and the stream now */
	free(d);
}

static void on_connect_ready(struct ev_loop *loop, ev_io *w, int revents)
{
	struct target_dial *d = w->data;
	int error = 0;
	socklen_t length = sizeof error;
	(void)loop;
	(void)revents;
	if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0)
		error = errno;
	if (error == EINPROGRESS)
		return;
	if (error)
		attempt_failed(d, error, NULL);
	else
		dial_connected(d);
}

static void on_all_down(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	dial_failed(w->data);
}

static void on_connect_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	attempt_failed(w->data, ETIMEDOUT, NULL);
}

static void dial_next_address(struct target_dial *d)
{
	struct broker *broker = d->fw->broker;
	if (d->address_at >= d->address_count) {
		d->target++;
		dial_next_target(d);
		return;
	}
	const struct sockaddr *address = (const struct sockaddr *)&d->addresses[d->address_at];
	if (!fd_budget_take(&broker->fds, 1, FD_USE_STREAM)) {
		attempt_failed(d, EMFILE, NULL);
		return;
	}
	d->fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (d->fd < 0) {
		int error = errno;
		fd_budget_give(&broker->fds, 1);
		attempt_failed(d, error, NULL);
		return;
	}
	if (connect(d->fd, address, d->address_lengths[d->address_at]) == 0) {
		dial_connected(d);
		return;
	}
	if (errno != EINPROGRESS) {
		attempt_failed(d, errno, NULL);
		return;
	}
	ev_io_init(&d->connected, on_connect_ready, d->fd, EV_WRITE);
	d->connected.data = d;
	ev_io_start(broker->loop, &d->connected);
	ev_timer_set(&d->timeout, d->service.connect_timeout, 0);
	ev_timer_start(broker->loop, &d->timeout);
}

static void on_resolved(struct addrinfo *result, int gai_error, void *user)
{
	struct target_dial *d = user;
	if (gai_error) {
		char target[300];
		current_target(d, target, sizeof target);
		snprintf(d->last_what, sizeof d->last_what, "target %.280s: %.100s", target,
			 gai_strerror(gai_error));
		d->last_timed_out = false;
		log_write(&d->fw->broker->log, LOG_WARN, "target", "service=%s target=%s: cannot resolve: %s",
			  d->service.service, target, gai_strerror(gai_error));
		d->target++;
		dial_next_target(d);
		return;
	}
	d->address_count = d->address_at = 0;
	for (struct addrinfo *a = result; a && d->address_count < DIAL_ADDRESSES_MAX; a = a->ai_next) {
		if (a->ai_addrlen > sizeof d->addresses[0])
			continue;
		memcpy(&d->addresses[d->address_count], a->ai_addr, a->ai_addrlen);
		d->address_lengths[d->address_count++] = a->ai_addrlen;
	}
	dial_next_address(d);
}

static void dial_next_target(struct target_dial *d)
{
	if (d->target >= d->service.target_count) {
		dial_failed(d);
		return;
	}
	if (dial_lookup(d) != WH_OK) {
		char target[300];
		snprintf(d->last_what, sizeof d->last_what, "target %.280s: out of memory",
			 current_target(d, target, sizeof target));
		dial_failed(d);
	}
}

/* While the target is dialled, the stream only ends early (the opener reset it, or its
 * connection went): the dial stops. Its bytes wait in the window. */
static void on_dial_stream(struct mux_stream *stream, enum mux_stream_event event, void *user)
{
	struct target_dial *d = user;
	if (event != MUX_STREAM_ERROR)
		return;
	log_write(&d->fw->broker->log, LOG_INFO, "target", "service=%s stream=%u: ended while its "
		  "target was dialled: %s", d->service.service, mux_stream_id(stream),
		  wh_strerror(mux_stream_error(stream)));
	dial_stop_attempt(d);
	dial_unlink(d);
	mux_stream_set_handler(stream, NULL, NULL);
	mux_stream_release(stream);
	free(d);
}

int target_attach(struct forwarding *fw, struct mux_stream *stream, const struct exposed_service *exposed)
{
	struct target_dial *d = calloc(1, sizeof *d);
	if (!d)
		return WH_ENOMEM;
	d->fw = fw;
	d->stream = stream;
	d->service = *exposed;
	d->fd = -1;
	const struct frame_client_address *client = mux_stream_client(stream);
	if ((d->has_client = client != NULL))
		d->client = *client;
	const struct conn *conn = conn_from_mux(mux_stream_mux(stream));
	snprintf(d->peer_identity, sizeof d->peer_identity, "%s", conn ? conn_peer_identity(conn) : "");
	dial_balance(d);
	ev_init(&d->timeout, on_connect_timeout);
	d->timeout.data = d;
	if (d->service.target_count == 0) { /* every target is down: refused at once */
		snprintf(d->last_what, sizeof d->last_what, "service %.200s: every target is down (health "
			 "checks)", d->service.service);
		if ((d->next = fw->dials))
			d->next->prev = d;
		fw->dials = d;
		ev_init(&d->timeout, on_all_down); /* from the loop: the mux is in its input now */
		ev_timer_set(&d->timeout, 0, 0);
		ev_timer_start(fw->broker->loop, &d->timeout);
		mux_stream_set_handler(stream, on_dial_stream, d);
		return WH_OK;
	}
	ev_io_init(&d->connected, on_connect_ready, -1, EV_WRITE);
	d->connected.data = d;
	if ((d->next = fw->dials))
		d->next->prev = d;
	fw->dials = d;
	/* the lookup's answer comes from the loop, never from inside this call: the mux that
	 * called us is in the middle of its input */
	if (dial_lookup(d) != WH_OK) {
		dial_unlink(d);
		free(d);
		return WH_ENOMEM;
	}
	mux_stream_set_handler(stream, on_dial_stream, d);
	return WH_OK;
}

void targets_stop(struct forwarding *fw)
{
	while (fw->dials) {
		struct target_dial *d = fw->dials;
		dial_stop_attempt(d);
		dial_unlink(d);
		mux_stream_set_handler(d->stream, NULL, NULL);
		mux_stream_reset_code(d->stream, FRAME_ERR_GOING_AWAY, "the broker is stopping");
		mux_stream_release(d->stream);
		free(d);
	}
	targets_stop_lookups(fw);
	while (fw->targets) {
		struct target_entry *e = fw->targets;
		fw->targets = e->next;
		health_stop(e);
		tcp_relay_set_abort_all(&e->relays);
		free(e);
	}
	fw->target_entries = 0;
	tcp_relay_set_abort_all(&fw->untracked_relays);
	while (fw->limits) {
		struct service_limit *sl = fw->limits;
		fw->limits = sl->next;
		tcp_relay_limit_stop(&sl->limit);
		free(sl);
	}
}

static void target_info_fill(struct target_info *info, const struct target_entry *e)
{
	info->health = e && health_state(e) ? health_state(e)
		     : !e || !e->tried ? "unknown" : e->last_failed ? "failing" : "up";
	info->last_error = e ? e->last_error : "";
	if (!e)
		return;
	info->open = e->relays.open;
	info->connections = e->relays.total;
	info->failures = e->failures;
	info->reset_by_target = e->relays.reset_out;
	info->reset_by_opener = e->relays.reset_in;
	info->idle_ended = e->relays.idle_ended;
	info->bytes_from_target = e->relays.bytes_in;
	info->bytes_to_target = e->relays.bytes_out;
}

void forwarding_each_target(const struct broker *broker, void (*fn)(const struct target_info *, void *),
			    void *arg)
{
	struct forwarding *fw = broker->forwarding;
	const struct broker_config *c = &broker->config;
	/* every configured target, in the config's order, tried or not; then those a reload
	 * removed that still carry connections */
	for (unsigned i = 0; i < c->exposed_count; i++) {
		const struct exposed_service *x = &c->exposed[i];
		for (unsigned t = 0; t < x->target_count; t++) {
			struct target_info info = { .service = x->service, .configured = true };
			forward_format_address(info.target, sizeof info.target, x->targets[t].host,
					       x->targets[t].port);
			const struct target_entry *e = fw ? fw->targets : NULL;
			while (e && (strcmp(e->service, x->service) != 0 || strcmp(e->target, info.target) != 0))
				e = e->next;
			target_info_fill(&info, e);
			fn(&info, arg);
		}
	}
	for (const struct target_entry *e = fw ? fw->targets : NULL; e; e = e->next) {
		if (target_entry_configured(c, e) || e->relays.open == 0)
			continue;
		struct target_info info = { .service = e->service };
		snprintf(info.target, sizeof info.target, "%s", e->target);
		target_info_fill(&info, e);
		fn(&info, arg);
	}
}

void targets_abort_where(struct forwarding *fw, bool (*match)(const struct mux *, void *), void *arg,
			 const char *message)
{
	for (bool again = true; again;) {
		again = false;
		for (struct target_dial *d = fw->dials; d; d = d->next) {
			if (!match(mux_stream_mux(d->stream), arg))
				continue;
			dial_stop_attempt(d);
			dial_unlink(d);
			mux_stream_set_handler(d->stream, NULL, NULL);
			mux_stream_reset_code(d->stream, FRAME_ERR_GOING_AWAY, message);
			mux_stream_release(d->stream);
			free(d);
			again = true;
			break;
		}
	}
	for (bool again = true; again;) { /* a reset may end entries' relays: restart */
		again = false;
		for (struct target_entry *e = fw->targets; e && !again; e = e->next) {
			unsigned before = e->relays.open;
			tcp_relay_set_abort_where(&e->relays, match, arg, FRAME_ERR_GOING_AWAY, message);
			again = e->relays.open != before;
		}
	}
	tcp_relay_set_abort_where(&fw->untracked_relays, match, arg, FRAME_ERR_GOING_AWAY, message);
}
