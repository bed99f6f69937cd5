/* One TCP connection joined to one stream: bytes both ways through the stream's windows. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tcp_relay.h"

/* One read or write; and what one direction may move in one turn of the loop before the
 * others get theirs (a watcher left on brings it back at the next turn). */
#define RELAY_CHUNK 65536
#define RELAY_TURN (256u * 1024u)
#define PROBE_INTERVAL 1.0 /* seconds between looks at a socket not read for want of room */

struct tcp_relay {
	struct ev_loop *loop;
	const struct log_sink *log;
	struct fd_budget *fds;
	struct tcp_relay_set *set;
	struct tcp_relay *prev, *next; /* in set */
	int fd;
	struct mux_stream *stream;
	ev_io readable, writable;
	ev_timer idle;       /* idle-timeout: checks last_active */
	ev_timer probe;      /* while the stream has no room, or after the socket's EOF: is it still there? */
	struct tcp_relay_limit *limit;
	bool throttled_in, throttled_out; /* waiting for the limit's tokens */
	double idle_timeout;
	double last_active;
	/* the tail of a stream read the socket did not take: at most RELAY_CHUNK */
	uint8_t *pending;
	size_t pending_at, pending_length;
	size_t uncounted; /* bytes of pending that are the prefix: not the stream's */
	bool socket_eof; /* the socket said EOF: CLOSE is queued on the stream */
	bool reset_sent; /* we reset the stream (the socket reset or failed) */
	bool proven;     /* watch was told PROVEN */
	double started;
	ev_timer proof;  /* with watch: a second after the start, PROVEN if bytes went by then */
	void (*watch)(void *ctx, enum tcp_relay_news news);
	void *watch_ctx;
	bool stream_eof; /* the stream said EOF: the socket's write side is shut */
	uint32_t reset_code;
	uint64_t bytes_in, bytes_out;
	char label[300];
	char socket_name[300];
};

void tcp_relay_close_abortive(int fd)
{
	struct linger hard = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
	close(fd);
}

/* The relay is over: the socket closes (with RST when abortive), the stream is let go (a
 * clean end's CLOSE follows the bytes still queued on it), the relay is freed. */
static void relay_finish(struct tcp_relay *r, bool abortive)
{
	ev_io_stop(r->loop, &r->readable);
	ev_io_stop(r->loop, &r->writable);
	ev_timer_stop(r->loop, &r->idle);
	ev_timer_stop(r->loop, &r->probe);
	ev_timer_stop(r->loop, &r->proof);
	if (abortive)
		tcp_relay_close_abortive(r->fd);
	else
		close(r->fd);
	if (r->fds)
		fd_budget_give(r->fds, 1);
	struct tcp_relay_set *set = r->set;
	if (r->prev)
		r->prev->next = r->next;
	else
		set->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	set->open--;
	log_write(r->log, LOG_DEBUG, "relay", "%s: done, %llu bytes in, %llu out%s", r->label,
		  (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
		  abortive ? " (reset)" : "");
	mux_stream_set_handler(r->stream, NULL, NULL);
	mux_stream_release(r->stream);
	if (r->watch) {
		bool early = (abortive || r->reset_sent) &&
			     ev_now(r->loop) - r->started < TCP_RELAY_EARLY_SECONDS;
		r->watch(r->watch_ctx, r->bytes_in == 0 ? TCP_RELAY_ENDED_EMPTY
				       : early ? TCP_RELAY_ENDED_EARLY : TCP_RELAY_ENDED);
	}
	free(r->pending);
	free(r);
}

/* The socket reset or failed: the stream ends with ERROR, the relay with it. */
static void relay_socket_failed(struct tcp_relay *r, int error)
{
	char message[400];
	if (error == ECONNRESET || error == EPIPE)
		snprintf(message, sizeof message, "%s reset the connection", r->socket_name);
	else
		snprintf(message, sizeof message, "%s: %s", r->socket_name, strerror(error));
	log_write(r->log, LOG_INFO, "relay", "%s: %s (errno %d): stream %u reset with ERROR %u",
		  r->label, strerror(error), error, mux_stream_id(r->stream), r->reset_code);
	r->set->reset_out++;
	r->reset_sent = true;
	/* no handler while resetting: the ERROR the reset delivers is ours, not news */
	mux_stream_set_handler(r->stream, NULL, NULL);
	mux_stream_reset_code(r->stream, r->reset_code, message);
	relay_finish(r, false);
}

/* The stream ended with an ERROR (the far side reset, refused, or its connection went): the
 * socket is reset too, so the program sees an abortive end, not a clean EOF. */
static void relay_stream_failed(struct tcp_relay *r)
{
	uint32_t code = mux_stream_remote_code(r->stream);
	if (code)
		log_write(r->log, LOG_INFO, "relay", "%s: stream %u ended by ERROR %u \"%s\": socket reset",
			  r->label, mux_stream_id(r->stream), code, mux_stream_remote_message(r->stream));
	else
		log_write(r->log, LOG_INFO, "relay", "%s: stream %u ended: %s: socket reset", r->label,
			  mux_stream_id(r->stream), wh_strerror(mux_stream_error(r->stream)));
	r->set->reset_in++;
	relay_finish(r, true);
}

/* True (and r gone) once both directions ended. */
static bool relay_check_done(struct tcp_relay *r)
{
	if (!r->socket_eof || !r->stream_eof)
		return false;
	relay_finish(r, false);
	return true;
}

/* ---- bandwidth limits ---------------------------------------------------------------- */

static double limit_burst(const struct tcp_relay_limit *l)
{
	double floor = l->rate < 16384 ? l->rate : 16384;
	return l->rate / 10 > floor ? l->rate / 10 : floor;
}

/* Bytes the direction may move now, at most want (want when there is no limit). */
static size_t limit_allow(struct tcp_relay_limit *l, int dir, size_t want)
{
	if (!l || l->rate <= 0)
		return want;
	double now = ev_now(l->loop), burst = limit_burst(l);
	l->tokens[dir] += (now - l->at[dir]) * l->rate;
	l->at[dir] = now;
	if (l->tokens[dir] > burst)
		l->tokens[dir] = burst;
	if (l->tokens[dir] < 1)
		return 0;
	return (double)want < l->tokens[dir] ? want : (size_t)l->tokens[dir];
}

static void limit_take(struct tcp_relay_limit *l, int dir, size_t n)
{
	if (l && l->rate > 0)
		l->tokens[dir] -= (double)n;
}

/* A relay waits: the timer wakes the waiters once a few KiB came back. */
static void limit_wait(struct tcp_relay_limit *l, int dir)
{
	l->waits++;
	if (ev_is_active(&l->refill))
		return;
	double quantum = limit_burst(l) < 4096 ? limit_burst(l) : 4096;
	double wait = (quantum - l->tokens[dir]) / l->rate;
	ev_timer_set(&l->refill, wait > 0.001 ? wait : 0.001, 0);
	ev_timer_start(l->loop, &l->refill);
}

static void on_refill(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tcp_relay_limit *l = w->data;
	(void)loop;
	(void)revents;
	l->wake(l, l->ctx);
}

void tcp_relay_limit_init(struct tcp_relay_limit *limit, struct ev_loop *loop,
			  void (*wake)(struct tcp_relay_limit *, void *), void *ctx)
{
	memset(limit, 0, sizeof *limit);
	limit->loop = loop;
	limit->wake = wake;
	limit->ctx = ctx;
	ev_timer_init(&limit->refill, on_refill, 0, 0);
	limit->refill.data = limit;
}

void tcp_relay_limit_set_rate(struct tcp_relay_limit *limit, double rate)
{
	if (rate == limit->rate)
		return;
	limit->rate = rate;
	for (int dir = 0; dir < 2; dir++) {
		limit->tokens[dir] = rate > 0 ? limit_burst(limit) : 0;
		limit->at[dir] = ev_now(limit->loop);
	}
	if (rate <= 0 && limit->wake) /* no limit now: whoever waited goes on */
		limit->wake(limit, limit->ctx);
}

void tcp_relay_limit_stop(struct tcp_relay_limit *limit)
{
	ev_timer_stop(limit->loop, &limit->refill);
}

void tcp_relay_set_wake(struct tcp_relay_set *set, const struct tcp_relay_limit *limit)
{
	for (struct tcp_relay *r = set->head; r; r = r->next) {
		if (r->limit != limit)
			continue;
		if (r->throttled_in) {
			r->throttled_in = false;
			ev_io_start(r->loop, &r->readable);
		}
		if (r->throttled_out) {
			r->throttled_out = false;
			ev_io_start(r->loop, &r->writable);
		}
	}
}

/* True (and r gone) when the socket has a pending error: it reset. Bytes it queued before
 * the reset stay readable, so a relay that reads slowly would carry them first. */
static bool relay_socket_reset(struct tcp_relay *r)
{
	int error = 0;
	socklen_t length = sizeof error;
	if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0 || !error)
		return false;
	relay_socket_failed(r, error);
	return true;
}

/* The socket said EOF: CLOSE follows what was written. The socket is not read again, so a
 * reset after its EOF (a client that half-closed, then went) would go unseen while the stream
 * says nothing: the probe looks. False: the relay ended. */
static bool socket_eof_seen(struct tcp_relay *r)
{
	r->socket_eof = true;
	ev_io_stop(r->loop, &r->readable);
	mux_stream_close_write(r->stream);
	if (relay_check_done(r))
		return false;
	ev_timer_again(r->loop, &r->probe);
	return true;
}

/* The owner's news of a stream that carried the socket's bytes for a second: from then on no
 * end of it is one that a peer's reset-rate counts. */
static void relay_proven(struct tcp_relay *r)
{
	r->proven = true;
	r->watch(r->watch_ctx, TCP_RELAY_PROVEN);
}

static void on_proof(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tcp_relay *r = w->data;
	(void)loop;
	(void)revents;
	if (r->bytes_in > 0 && !r->proven)
		relay_proven(r); /* else the first bytes will be */
}

static void relay_first_bytes(struct tcp_relay *r)
{
	r->watch(r->watch_ctx, TCP_RELAY_FIRST_BYTES);
	if (ev_now(r->loop) - r->started >= TCP_RELAY_EARLY_SECONDS)
		relay_proven(r);
}

/* Socket -> stream, while the stream has room and the turn lasts. False: the relay ended. */
static bool pump_in(struct tcp_relay *r)
{
	uint8_t buffer[RELAY_CHUNK];
	size_t moved = 0;
	if (r->socket_eof) /* nothing more to read: its readable watcher would fire for ever */
		return true;
	while (moved < RELAY_TURN) {
		size_t room = mux_stream_write_room(r->stream);
		if (room == 0) {
			/* WRITABLE brings us back (or ERROR ends us): the socket is not read meanwhile,
			 * so TCP's window stops the program; the probe notices if it resets */
			ev_io_stop(r->loop, &r->readable);
			if (!ev_is_active(&r->probe))
				ev_timer_again(r->loop, &r->probe); /* every PROBE_INTERVAL from now */
			return true;
		}
		ev_timer_stop(r->loop, &r->probe);
		size_t allow = limit_allow(r->limit, 0, room < sizeof buffer ? room : sizeof buffer);
		if (allow == 0) { /* the limit's timer brings us back */
			/* a socket that reset ends now, not once its queued bytes went through at the
			 * limit's pace (holding the relay and the others' share of the limit) */
			if (relay_socket_reset(r))
				return false;
			ev_io_stop(r->loop, &r->readable);
			r->throttled_in = true;
			limit_wait(r->limit, 0);
			return true;
		}
		ssize_t n = recv(r->fd, buffer, allow, 0);
		if (n > 0) {
			limit_take(r->limit, 0, (size_t)n);
			long w = mux_stream_write(r->stream, buffer, (size_t)n);
			if (w != n) { /* the room said it would take them: the stream ended meanwhile */
				relay_stream_failed(r);
				return false;
			}
			if (r->bytes_in == 0 && r->watch)
				relay_first_bytes(r);
			r->bytes_in += (uint64_t)n;
			r->set->bytes_in += (uint64_t)n;
			r->last_active = ev_now(r->loop);
			moved += (size_t)n;
			continue;
		}
		if (n == 0)
			return socket_eof_seen(r);
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		relay_socket_failed(r, errno);
		return false;
	}
	ev_io_start(r->loop, &r->readable);
	return true;
}

/* Sends what a short write left: 1 when nothing is left, 0 to wait for the socket, -1 when
 * the relay ended. */
static int flush_pending(struct tcp_relay *r)
{
	while (r->pending_length) {
		ssize_t w = send(r->fd, r->pending + r->pending_at, r->pending_length, MSG_NOSIGNAL);
		if (w > 0) {
			size_t prefix = (size_t)w < r->uncounted ? (size_t)w : r->uncounted;
			r->uncounted -= prefix;
			r->last_active = ev_now(r->loop);
			r->pending_at += (size_t)w;
			r->pending_length -= (size_t)w;
			r->bytes_out += (uint64_t)w - prefix;
			r->set->bytes_out += (uint64_t)w - prefix;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ev_io_start(r->loop, &r->writable);
			return 0;
		}
		relay_socket_failed(r, w < 0 ? errno : EPIPE);
		return -1;
	}
	free(r->pending);
	r->pending = NULL;
	r->pending_at = 0;
	return 1;
}

/* Keeps what the socket did not take; false (and r gone) when that fails. */
static bool keep_pending(struct tcp_relay *r, const uint8_t *data, size_t length)
{
	r->pending = malloc(length);
	if (!r->pending) {
		relay_socket_failed(r, ENOMEM);
		return false;
	}
	memcpy(r->pending, data, length);
	r->pending_at = 0;
	r->pending_length = length;
	ev_io_start(r->loop, &r->writable);
	return true;
}

/* The stream said EOF: the socket's write side is shut after the bytes before it. */
static bool stream_ended(struct tcp_relay *r)
{
	r->stream_eof = true;
	ev_io_stop(r->loop, &r->writable);
	if (shutdown(r->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
		relay_socket_failed(r, errno);
		return false;
	}
	return !relay_check_done(r);
}

/* Stream -> socket, while the socket takes bytes and the turn lasts. Bytes are read from the
 * stream (returning their credit) only when the socket has taken the ones before, so what
 * waits here is one read at most. False: the relay ended. */
static bool pump_out(struct tcp_relay *r)
{
	int flushed = flush_pending(r);
	if (flushed <= 0)
		return flushed == 0;
	uint8_t buffer[RELAY_CHUNK];
	size_t moved = 0;
	while (!r->stream_eof) {
		if (moved >= RELAY_TURN) {
			ev_io_start(r->loop, &r->writable); /* the rest at the next turn */
			return true;
		}
		size_t allow = limit_allow(r->limit, 1, sizeof buffer);
		if (allow == 0) { /* the stream's bytes wait in its window: the far side slows down */
			ev_io_stop(r->loop, &r->writable);
			r->throttled_out = true;
			limit_wait(r->limit, 1);
			return true;
		}
		long n = mux_stream_read(r->stream, buffer, allow);
		if (n == 0)
			return stream_ended(r);
		if (n > 0)
			limit_take(r->limit, 1, (size_t)n);
		if (n < 0) { /* nothing yet; or the stream failed and its ERROR event follows */
			ev_io_stop(r->loop, &r->writable);
			return true;
		}
		ssize_t w;
		do
			w = send(r->fd, buffer, (size_t)n, MSG_NOSIGNAL);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			relay_socket_failed(r, errno);
			return false;
		}
		if (w < 0)
			w = 0;
		if (w > 0)
			r->last_active = ev_now(r->loop);
		r->bytes_out += (uint64_t)w;
		r->set->bytes_out += (uint64_t)w;
		moved += (size_t)w;
		if (w < n)
			return keep_pending(r, buffer + w, (size_t)(n - w));
	}
	return true;
}

/* The stream has had no room for a while, or the socket said EOF: the socket is not read, so
 * its reset (or EOF) would go unseen (and its descriptor and stream held until the far side
 * moved). A look at its error and a peek once a PROBE_INTERVAL find out without taking a byte. */
static void on_probe(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tcp_relay *r = w->data;
	(void)loop;
	(void)revents;
	if (!r->socket_eof && mux_stream_write_room(r->stream) > 0) {
		pump_in(r);
		return;
	}
	/* a reset leaves the bytes before it readable (a peek sees them, not the reset), but sets
	 * the socket's error at once (its TCP state is no help: a clean close in both directions
	 * ends in the same state) */
	if (relay_socket_reset(r))
		return;
	char byte;
	ssize_t n = recv(r->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		relay_socket_failed(r, errno);
		return;
	}
	if (n == 0 && !r->socket_eof) { /* everything before the EOF was read: CLOSE needs no room */
		socket_eof_seen(r);
		return;
	}
	/* the timer repeats: the next look comes PROBE_INTERVAL from now (restarting a one-shot
	 * timer here fired it again at once, on every pass of the loop: a core spun) */
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	pump_in(w->data);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	pump_out(w->data);
}

/* No byte either way for idle-timeout: both ends are reset. The timer is set for the
 * earliest the relay can be idle, and moved on when bytes passed meanwhile (no timer work
 * per byte). */
static void on_idle(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tcp_relay *r = w->data;
	(void)revents;
	double left = r->last_active + r->idle_timeout - ev_now(loop);
	if (left > 0) {
		ev_timer_set(w, left, 0);
		ev_timer_start(loop, w);
		return;
	}
	char message[320];
	snprintf(message, sizeof message, "idle for %.15g s (idle-timeout)", r->idle_timeout);
	log_write(r->log, LOG_INFO, "relay", "%s: %s: stream %u reset with ERROR 504, socket reset",
		  r->label, message, mux_stream_id(r->stream));
	r->set->idle_ended++;
	mux_stream_set_handler(r->stream, NULL, NULL);
	mux_stream_reset_code(r->stream, 504, message);
	relay_finish(r, true);
}

static void on_stream(struct mux_stream *stream, enum mux_stream_event event, void *user)
{
	struct tcp_relay *r = user;
	(void)stream;
	switch (event) {
	case MUX_STREAM_READABLE:
	case MUX_STREAM_EOF:
		pump_out(r);
		return;
	case MUX_STREAM_WRITABLE:
		pump_in(r);
		return;
	case MUX_STREAM_ERROR:
		relay_stream_failed(r);
		return;
	}
}

int tcp_relay_start(struct ev_loop *loop, const struct log_sink *log, struct fd_budget *fds,
		    struct tcp_relay_set *set, int fd, struct mux_stream *stream,
		    const struct tcp_relay_params *params)
{
	struct tcp_relay *r = calloc(1, sizeof *r);
	if (!r)
		return WH_ENOMEM;
	r->loop = loop;
	r->log = log;
	r->fds = fds;
	r->set = set;
	r->fd = fd;
	r->stream = stream;
	r->reset_code = params->reset_code;
	snprintf(r->label, sizeof r->label, "%s", params->label);
	snprintf(r->socket_name, sizeof r->socket_name, "%s", params->socket_name);
	ev_io_init(&r->readable, on_readable, fd, EV_READ);
	ev_io_init(&r->writable, on_writable, fd, EV_WRITE);
	r->readable.data = r->writable.data = r;
	r->idle_timeout = params->idle_timeout;
	r->limit = params->limit;
	r->last_active = r->started = ev_now(loop);
	r->watch = params->watch;
	r->watch_ctx = params->watch_ctx;
	ev_timer_init(&r->idle, on_idle, params->idle_timeout, 0);
	r->idle.data = r;
	ev_timer_init(&r->probe, on_probe, 0, PROBE_INTERVAL);
	r->probe.data = r;
	ev_timer_init(&r->proof, on_proof, TCP_RELAY_EARLY_SECONDS, 0);
	r->proof.data = r;
	if (params->prefix_length) { /* the header goes first: pump_out flushes pending first */
		if (params->prefix_length > RELAY_CHUNK || !(r->pending = malloc(params->prefix_length))) {
			free(r);
			return WH_ENOMEM;
		}
		memcpy(r->pending, params->prefix, params->prefix_length);
		r->pending_length = r->uncounted = params->prefix_length;
	}
	if (r->idle_timeout > 0)
		ev_timer_start(loop, &r->idle);
	if (r->watch)
		ev_timer_start(loop, &r->proof);
	r->next = set->head;
	if (set->head)
		set->head->prev = r;
	set->head = r;
	set->open++;
	set->total++;
	mux_stream_set_handler(stream, on_stream, r);
	if (mux_stream_error(stream) != WH_OK) {
		/* it failed before we came (while the target was dialled): its ERROR event would
		 * wait for the mux's next dispatch */
		relay_stream_failed(r);
		return WH_OK;
	}
	/* Bytes that came first (the opener writes at once, before the target answered) go now,
	 * and the socket is read now: a forward's client's first bytes leave at once. The
	 * events set_handler queued for them come later and find nothing new. */
	if (pump_out(r))
		pump_in(r);
	return WH_OK;
}

void tcp_relay_set_abort_all(struct tcp_relay_set *set)
{
	while (set->head) {
		struct tcp_relay *r = set->head;
		mux_stream_set_handler(r->stream, NULL, NULL);
		mux_stream_reset_code(r->stream, 505, "the broker is stopping");
		relay_finish(r, true);
	}
}

void tcp_relay_set_abort_where(struct tcp_relay_set *set, bool (*match)(const struct mux *, void *),
			       void *arg, uint32_t code, const char *message)
{
	/* from the head again after each: ending one may end others (events the reset
	 * delivers), which leave the list themselves */
	for (bool again = true; again;) {
		again = false;
		for (struct tcp_relay *r = set->head; r; r = r->next) {
			if (!match(mux_stream_mux(r->stream), arg))
				continue;
			log_write(r->log, LOG_INFO, "relay", "%s: %s: reset", r->label, message);
			mux_stream_set_handler(r->stream, NULL, NULL);
			mux_stream_reset_code(r->stream, code, message);
			relay_finish(r, true);
			again = true;
			break;
		}
	}
}
