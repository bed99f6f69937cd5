/* The multiplexer: the connection, its streams' lifecycle, budgets, control frames and
 * keep-alive, over caller I/O (input: mux_input.c; the scheduler: mux_output.c). */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "bytebuf.h"
#include "mux_internal.h"

/* Control bytes a connection may queue without charging the budgets (a constant per
 * connection, counted in docs/SECURITY.md): enough for the answers to a full read of
 * HANDSHAKEs refused at once (about 45 bytes each) when the budget is spent, so a peer that
 * reads its answers is not closed for the broker being full. */
#define CONTROL_QUEUE_FREE (64u * 1024u)

/* ---- configuration and budgets ----------------------------------------------------- */

void mux_config_default(struct mux_config *config)
{
	*config = (struct mux_config){
		.accept_backlog = 256,
		.window_size = 256u * 1024u,
		.max_window_size = 16u * 1024u * 1024u,
		.max_frame_size = FRAME_DEFAULT_PAYLOAD,
		.keepalive_interval = 30.0,
		.keepalive_timeout = 10.0,
		.enable_flow_control = true,
		.max_streams = 65536,
		.memory_budget = 4ull << 30,
		.send_buffer = 256u * 1024u,
		.release_linger = 60.0,
		.control_queue_limit = 4u * 1024u * 1024u,
		.reset_rate = 200.0,
		.ping_rate = 50.0,
		.noop_rate = 10000.0,
		.store_rate = 8.0 * 1024 * 1024,
		.frame_rate = 1000000.0,
		.idle_timeout = 0.0,
	};
}

/* Takes n bytes from every budget the mux answers to: its own (config.memory_budget), its
 * peer's share, the broker's (outside the local reserve when the peer asked for them). */
static bool budget_reserve(struct mux *mux, uint64_t n, bool for_peer)
{
	bool ok = mux->budget_used + n <= mux->config.memory_budget &&
		  (!mux->account || mux->account->used + n <= mux->account->limit);
	if (ok && mux->budget) {
		uint64_t limit = mux->budget->limit;
		if (for_peer)
			limit = limit > mux->budget->local_reserve ? limit - mux->budget->local_reserve : 0;
		ok = mux->budget->used + n <= limit;
		if (!ok)
			mux->budget->refused++;
	}
	if (!ok) {
		mux->stats.budget_refusals++;
		return false;
	}
	mux->budget_used += n;
	if (mux->account)
		mux->account->used += n;
	if (mux->budget)
		mux->budget->used += n;
	return true;
}

static void budget_release(struct mux *mux, uint64_t n)
{
	mux->budget_used -= n;
	if (mux->account)
		mux->account->used -= n;
	if (mux->budget)
		mux->budget->used -= n;
}

/* budget_reserve for a stream: its owner's part is bounded too. */
static bool stream_budget_reserve(struct mux_stream *s, uint64_t n)
{
	struct mux_owner_account *o = s->owner;
	if (o && o->limit && o->used + n > o->limit) {
		s->mux->stats.budget_refusals++;
		return false;
	}
	if (!budget_reserve(s->mux, n, s->peer_opened))
		return false;
	s->budget_reserved += n;
	if (o)
		o->used += n;
	return true;
}

static void stream_budget_release(struct mux_stream *s, uint64_t n)
{
	budget_release(s->mux, n);
	s->budget_reserved -= n;
	if (s->owner)
		s->owner->used -= n;
}

void mux_set_budget_account(struct mux *mux, struct mux_budget_account *account)
{
	if (mux->account)
		mux->account->used -= mux->budget_used;
	mux->account = account;
	if (account)
		account->used += mux->budget_used;
}

/* ---- deferred notifications ---------------------------------------------------------
 * Handlers run only from mux_dispatch, at the end of each public entry point, so that a
 * handler that reads, writes or releases its stream never pulls state out from under the
 * code that is processing a frame. */

void stream_notify(struct mux_stream *s, unsigned event_bit)
{
	s->events |= event_bit;
	if (s->in_notify)
		return;
	s->in_notify = true;
	STAILQ_INSERT_TAIL(&s->mux->notify_queue, s, notify_link);
}

void stream_check_free(struct mux_stream *s)
{
	if (s->in_free_list)
		return;
	s->in_free_list = true;
	SLIST_INSERT_HEAD(&s->mux->free_list, s, free_link);
}

static void linger_remove(struct mux_stream *s)
{
	if (!s->in_linger)
		return;
	TAILQ_REMOVE(&s->mux->linger, s, linger_link);
	s->in_linger = false;
}

static void linger_add(struct mux_stream *s)
{
	s->in_linger = true;
	s->released_at = 0;
	TAILQ_INSERT_TAIL(&s->mux->linger, s, linger_link);
}

/* ---- half-closed streams the peer never closes -----------------------------------------
 * A reference peer never sends its CLOSE after ours (WIRE-NOTES weakness 10): a stream the
 * owner half-closed and still holds, waiting for end-of-stream, would wait for ever. Such a
 * stream is on the quiet list from our CLOSE on; each frame of the peer on it moves it to the
 * tail, and once the peer has said nothing on it for release_linger it ends as if the CLOSE
 * had come (mux_timer: quiet_expire). */

void quiet_remove(struct mux_stream *s)
{
	if (!s->in_quiet)
		return;
	TAILQ_REMOVE(&s->mux->quiet, s, quiet_link);
	s->in_quiet = false;
}

/* Streams added without a time (planning output knows none) are stamped with the next time
 * the mux learns: they are at the tail, and stay there until stamped, so the list stays in
 * time order. */
static void quiet_stamp(struct mux *mux, double now)
{
	struct mux_stream *t;
	TAILQ_FOREACH_REVERSE(t, &mux->quiet, linger_list, quiet_link) {
		if (t->quiet_since != 0)
			break;
		t->quiet_since = now;
	}
}

static void quiet_push(struct mux_stream *s, double since)
{
	quiet_remove(s);
	if (since != 0)
		quiet_stamp(s->mux, since);
	s->in_quiet = true;
	s->quiet_since = since;
	TAILQ_INSERT_TAIL(&s->mux->quiet, s, quiet_link);
}

/* Our CLOSE is planned: the wait for the peer's starts (streams the owner still holds). */
void quiet_start(struct mux_stream *s)
{
	struct mux *mux = s->mux;
	if (s->released || s->remote_closed || s->finished || mux->closed ||
	    mux->config.release_linger <= 0)
		return;
	quiet_push(s, 0);
	if (mux->cb.on_timer_changed) /* mux_timer stamps it and keeps its deadline */
		mux->cb.on_timer_changed(mux, mux->user);
}

/* A frame of the peer on the stream: the wait starts again. */
void quiet_touch(struct mux_stream *s)
{
	if (s->in_quiet)
		quiet_push(s, s->mux->now);
}

static void want_write(struct mux *mux)
{
	if (mux->cb.on_want_write)
		mux->cb.on_want_write(mux, mux->user);
}

void ready_remove(struct mux_stream *s)
{
	if (!s->in_ready)
		return;
	TAILQ_REMOVE(&s->mux->ready, s, ready_link);
	s->in_ready = false;
}

void ready_push(struct mux_stream *s)
{
	if (s->in_ready || s->finished)
		return;
	TAILQ_INSERT_TAIL(&s->mux->ready, s, ready_link);
	s->in_ready = true;
	want_write(s->mux);
}

void stream_destroy(struct mux_stream *s)
{
	struct mux *mux = s->mux;
	ready_remove(s);
	linger_remove(s);
	quiet_remove(s);
	if (stream_table_find(&mux->streams, s->id) == s)
		stream_table_remove(&mux->streams, s->id);
	LIST_REMOVE(s, all_link);
	stream_budget_release(s, s->budget_reserved);
	if (mux->ids_exhausted && LIST_EMPTY(&mux->all_streams) && !mux->closed &&
	    mux->cb.on_timer_changed)
		mux->cb.on_timer_changed(mux, mux->user); /* mux_timer closes it */
	if (!mux->client && mux->config.idle_timeout > 0 && LIST_EMPTY(&mux->all_streams) &&
	    !mux->closed) {
		mux->idle_since = mux->now; /* the idle clock starts now, not at the next timer */
		if (mux->cb.on_timer_changed)
			mux->cb.on_timer_changed(mux, mux->user);
	}
	if (s->io && s->io->release)
		s->io->release(s->io_ctx);
	store_refund(mux, bytebuf_length(&s->rx));
	bytebuf_free(&s->rx);
	bytebuf_free(&s->tx);
	free(s->remote_message);
	free(s);
}

static bool stream_can_free(const struct mux_stream *s)
{
	return s->released && s->finished && s->pending_frames == 0 && !s->in_notify;
}

void mux_dispatch(struct mux *mux)
{
	if (mux->dispatching)
		return;
	mux->dispatching = true;
	for (;;) {
		struct mux_stream *s = STAILQ_FIRST(&mux->notify_queue);
		if (s) {
			STAILQ_REMOVE_HEAD(&mux->notify_queue, notify_link);
			s->in_notify = false;
			unsigned events = s->events;
			s->events = 0;
			for (int ev = MUX_STREAM_READABLE; ev <= MUX_STREAM_ERROR; ev++)
				if ((events & (1u << ev)) && s->handler && !s->released)
					s->handler(s, (enum mux_stream_event)ev, s->handler_user);
			if (s->released)
				stream_check_free(s);
			continue;
		}
		if (mux->accept_ready_pending) {
			mux->accept_ready_pending = false;
			if (mux->cb.on_accept_ready)
				mux->cb.on_accept_ready(mux, mux->user);
			continue;
		}
		if (mux->closed_notify_pending) {
			mux->closed_notify_pending = false;
			if (mux->cb.on_closed)
				mux->cb.on_closed(mux, mux->error, mux->user);
			continue;
		}
		break;
	}
	while (!SLIST_EMPTY(&mux->free_list)) {
		struct mux_stream *s = SLIST_FIRST(&mux->free_list);
		SLIST_REMOVE_HEAD(&mux->free_list, free_link);
		s->in_free_list = false;
		if (stream_can_free(s))
			stream_destroy(s);
	}
	mux->dispatching = false;
}

/* ---- control frames ---------------------------------------------------------------- */

void control_push(struct mux *mux, const uint8_t *frame, int length)
{
	if (length <= 0 || mux->output_sealed)
		return;
	if (bytebuf_length(&mux->control_out) + (size_t)length > mux->config.control_queue_limit) {
		/* The peer provokes control frames (PINGs, refused streams) faster than it reads
		 * them. (Its goodbye finds the queue full too: nothing more to say then.) */
		if (!mux->closed)
			log_write(mux->config.log, LOG_WARN, "mux", "conn=%u peer=%s control queue full: peer "
				  "does not read our answers", mux->config.id, mux->config.peer);
		if (!mux->closed)
			mux->peer_at_fault = true;
		mux_fail(mux, WH_ELIMIT);
		return;
	}
	/* The queue's memory past its first CONTROL_QUEUE_FREE bytes is the peer's doing when
	 * it does not read: it is charged like its streams' windows. */
	size_t need = bytebuf_length(&mux->control_out) + (size_t)length;
	if (need > CONTROL_QUEUE_FREE + mux->control_charged) {
		size_t capacity = CONTROL_QUEUE_FREE;
		while (capacity < need)
			capacity *= 2;
		uint64_t extra = capacity - CONTROL_QUEUE_FREE - mux->control_charged;
		if (!budget_reserve(mux, extra, true)) {
			if (!mux->closed)
				log_write(mux->config.log, LOG_WARN, "mux", "conn=%u peer=%s control queue "
					  "over the memory budget: peer does not read our answers",
					  mux->config.id, mux->config.peer);
			if (!mux->closed)
				mux->peer_at_fault = true;
			mux_fail(mux, WH_ELIMIT);
			return;
		}
		mux->control_charged += extra;
	}
	if (bytebuf_write(&mux->control_out, frame, (size_t)length) != length) {
		mux_fail(mux, WH_ENOMEM);
		return;
	}
	mux->stats.frames_out[frame[1] < 8 ? frame[1] : 0]++;
	want_write(mux);
}

void send_error_frame(struct mux *mux, uint32_t stream_id, uint32_t code, const char *message)
{
	uint8_t frame[FRAME_HEADER_SIZE + 4 + 256];
	size_t length = strnlen(message, 256);
	control_push(mux, frame, frame_encode_error(frame, sizeof frame, stream_id, code, message, length));
	mux->stats.errors_sent++;
}

static void send_window_update(struct mux_stream *s)
{
	struct mux *mux = s->mux;
	uint32_t increment = s->recv_unacked;
	size_t capacity = s->io ? s->io->rx_capacity(s->io_ctx) : mux->config.max_window_size;
	uint32_t ceiling = mux->config.max_window_size < capacity ? mux->config.max_window_size
								  : (uint32_t)capacity;
	double rtt = mux->stats.rtt;
	/* Growth (docs/PROTOCOL.md 4.1): half the window went by in under two round trips, so
	 * the window, not the reader, limits this stream. Double it if the budgets allow. */
	if (rtt > 0 && mux->now - s->last_update_time < 2 * rtt && s->recv_window < ceiling) {
		uint32_t grown = s->recv_window * 2u < ceiling ? s->recv_window * 2u : ceiling;
		uint32_t extra = grown - s->recv_window;
		if (stream_budget_reserve(s, extra)) {
			s->recv_window = grown;
			increment += extra;
			bytebuf_set_limit(&s->rx, grown);
			mux->stats.window_growths++;
		}
	}
	s->last_update_time = mux->now;
	s->recv_unacked = 0;
	if (increment == 0)
		return;
	s->recv_peer_credit += increment;
	uint8_t frame[FRAME_HEADER_SIZE + 4];
	control_push(mux, frame, frame_encode_window_update(frame, sizeof frame, s->id, increment));
}

void stream_consumed(struct mux_stream *s, size_t n)
{
	if (!s->mux->config.enable_flow_control || s->finished || s->remote_closed || n == 0)
		return;
	s->recv_unacked += (uint32_t)n;
	if (s->recv_unacked >= s->recv_window / 2)
		send_window_update(s);
}

/* n bytes left a stream's receive store (read, sent back by a loop-back, dropped at
 * release): the store's rate bucket gets them back and the peer's window reopens. */
static void rx_left(struct mux_stream *s, size_t n)
{
	store_refund(s->mux, n);
	stream_consumed(s, n);
}

/* ---- stream lifecycle -------------------------------------------------------------- */

static long builtin_rx_reserve(void *ctx, size_t want, uint8_t **span)
{
	return (long)bytebuf_reserve(&((struct mux_stream *)ctx)->rx, want, span);
}
static int builtin_rx_commit(void *ctx, size_t n)
{
	struct mux_stream *s = ctx;
	bytebuf_commit(&s->rx, n);
	store_charge(s->mux, n);
	return WH_OK;
}
static size_t builtin_rx_capacity(void *ctx)
{
	return ((struct mux_stream *)ctx)->mux->config.max_window_size;
}
static int builtin_tx_peek(void *ctx, size_t offset, struct iovec iov[2])
{
	return bytebuf_peek(&((struct mux_stream *)ctx)->tx, offset, iov);
}
static void builtin_tx_consume(void *ctx, size_t n)
{
	bytebuf_consume(&((struct mux_stream *)ctx)->tx, n);
}

static const struct mux_stream_io builtin_io = {
	.rx_reserve = builtin_rx_reserve,
	.rx_commit = builtin_rx_commit,
	.rx_capacity = builtin_rx_capacity,
	.tx_peek = builtin_tx_peek,
	.tx_consume = builtin_tx_consume,
	.release = NULL,
};

static size_t send_buffer_floor(const struct mux *mux)
{
	return mux->config.send_buffer < mux->config.max_frame_size ? mux->config.send_buffer
								     : mux->config.max_frame_size;
}

/* Raises a built-in send buffer from its floor to send_buffer when the budgets allow: the
 * growth is the stream's until it is destroyed. False: it stays as it is. */
static bool send_buffer_grow(struct mux_stream *s)
{
	struct mux *mux = s->mux;
	if (s->tx.limit >= mux->config.send_buffer)
		return false;
	uint64_t extra = mux->config.send_buffer - s->tx.limit;
	if (!stream_budget_reserve(s, extra))
		return false;
	bytebuf_set_limit(&s->tx, mux->config.send_buffer);
	return true;
}

int stream_new(struct mux *mux, uint32_t id, const char *service, size_t service_length,
		      bool peer_opened, struct mux_stream **out)
{
	if (stream_table_find(&mux->streams, id))
		return WH_ESTREAM_ALREADY_EXISTS;
	if (mux->streams.count >= mux->config.max_streams)
		return WH_ELIMIT;
	struct mux_stream *s = calloc(1, sizeof *s);
	if (!s)
		return WH_ENOMEM;
	/* its receive window, and the first frame of the built-in send buffer (given back if an
	 * io of the owner's replaces the built-in one) */
	uint64_t cost = mux->config.window_size + send_buffer_floor(mux);
	if (!budget_reserve(mux, cost, peer_opened)) {
		free(s);
		return WH_ELIMIT;
	}
	s->budget_reserved = cost;
	s->peer_opened = peer_opened;
	s->mux = mux;
	s->id = id;
	memcpy(s->service, service, service_length);
	s->service[service_length] = '\0';
	s->io = &builtin_io;
	s->io_ctx = s;
	bytebuf_init(&s->rx, mux->config.window_size);
	/* The built-in io's send buffer holds one frame uncharged; more is taken from the budgets
	 * when a write needs it (mux_stream_write), so a peer that never reads what a built-in
	 * service answers holds no more than the budgets allow. */
	bytebuf_init(&s->tx, send_buffer_floor(mux));
	s->send_credit = mux->config.window_size;
	s->recv_window = mux->config.window_size;
	s->recv_peer_credit = mux->config.window_size;
	s->last_update_time = mux->now;
	s->stats.opened_at = mux->now;
	int error = stream_table_insert(&mux->streams, id, s);
	if (error != WH_OK) {
		budget_release(mux, s->budget_reserved);
		free(s);
		return error;
	}
	LIST_INSERT_HEAD(&mux->all_streams, s, all_link);
	mux->idle_since = 0;
	*out = s;
	return WH_OK;
}

/* The stream is over for the protocol: its id is forgotten, no more frames are planned. */
void stream_finish(struct mux_stream *s, int error)
{
	if (s->finished)
		return;
	s->finished = true;
	if (error != WH_OK && s->error == WH_OK)
		s->error = error;
	ready_remove(s);
	linger_remove(s);
	quiet_remove(s);
	stream_table_remove(&s->mux->streams, s->id);
	if (s->error != WH_OK)
		stream_notify(s, EVENT_ERROR);
	stream_check_free(s);
}

void stream_check_finished(struct mux_stream *s)
{
	if (s->close_sent && s->remote_closed)
		stream_finish(s, WH_OK);
}

/* DATA for a stream we ended. Until the peer reads our ERROR it may send what its window
 * allows, in frames of any size (an app's small writes make small frames), and those frames
 * are dropped here. Beyond that, DATA for an ended stream is a frame that does nothing, and a
 * flood of empty ones cost a parse and a lookup each, unbounded. So the windows the peer
 * still had when we ended its streams are remembered as one sum for the connection (no
 * memory per ended stream), for ENDED_CREDIT_SECONDS after the last such end: each dropped
 * frame takes at least ENDED_FRAME_COST bytes of it, and what it does not cover counts in
 * noop-rate. Only streams the owner ended (an app's reset, an app that died, a released
 * stream that lingered too long) add to the sum: the resets the peer causes by breaking the
 * protocol (a second HANDSHAKE, credit overflow) cost it two frames and would otherwise buy a
 * window of free frames each. The sum is capped at ENDED_CREDIT_MAX all the same. */
#define ENDED_CREDIT_SECONDS 30.0
#define ENDED_FRAME_COST 256u
#define ENDED_CREDIT_MAX (16u << 20)

static void expect_ended_data(struct mux_stream *s)
{
	struct mux *mux = s->mux;
	if (s->finished || s->remote_closed)
		return; /* after its CLOSE, DATA from the peer is wrong anyway */
	uint64_t in_flight = mux->config.enable_flow_control
				     ? (s->recv_peer_credit > 0 ? (uint64_t)s->recv_peer_credit : 0)
				     : mux->config.window_size;
	if (in_flight == 0)
		return;
	if (mux->now > mux->ended_credit_until)
		mux->ended_credit = 0;
	mux->ended_credit += in_flight;
	if (mux->ended_credit > ENDED_CREDIT_MAX)
		mux->ended_credit = ENDED_CREDIT_MAX;
	mux->ended_credit_until = mux->now + ENDED_CREDIT_SECONDS;
}

/* A DATA frame for a stream that is not open (ended, or an id the peer skipped): dropped,
 * and counted as a noop unless the windows of streams we ended cover it. */
void count_ended_data(struct mux *mux, uint32_t length)
{
	uint64_t cost = length > ENDED_FRAME_COST ? length : ENDED_FRAME_COST;
	if (mux->now <= mux->ended_credit_until && mux->ended_credit >= cost) {
		mux->ended_credit -= cost;
		return;
	}
	count_noop(mux);
}

/* Ends the stream: ERROR `code` to the peer, `error` to the owner. */
static void stream_reset_with(struct mux_stream *s, int error, uint32_t code, const char *message)
{
	if (s->finished)
		return;
	struct mux *mux = s->mux;
	log_write(mux->config.log, LOG_INFO, "mux", "conn=%u peer=%s stream=%u reset: %s (%s)", mux->config.id, mux->config.peer,
		  s->id, wh_strerror(error), message);
	send_error_frame(mux, s->id, code, message);
	if (!s->peer_opened && (!s->data_planned || ended_early(mux, s)))
		count_own_wasted_open(mux, s); /* as the peer counts our resets (count_peer_reset) */
	stream_finish(s, error);
}

void stream_reset(struct mux_stream *s, int error, const char *message)
{
	stream_reset_with(s, error, frame_error_code_for(error), message);
}

/* ---- keep-alive -------------------------------------------------------------------- */

static void send_ping(struct mux *mux)
{
	uint8_t frame[FRAME_HEADER_SIZE + 4];
	mux->ping_id++;
	mux->ping_outstanding = true;
	mux->ping_sent_at = mux->now;
	mux->pong_wait_from = mux->now;
	mux->pong_wait_bytes = mux->stats.bytes_in;
	control_push(mux, frame, frame_encode_ping(frame, sizeof frame, mux->ping_id));
}

int mux_ping(struct mux *mux, double now)
{
	mux->now = now;
	if (mux->closed)
		return WH_EMUX_CLOSED;
	if (mux->ping_outstanding)
		return WH_EWOULDBLOCK;
	send_ping(mux);
	return WH_OK;
}

/* The PONG goes ahead of what the peer has queued, but not ahead of what it has already
 * written: behind a full TCP pipe that we read slowly (a loaded machine, many streams) it can
 * take longer than the timeout, while the peer's DATA keeps coming. A peer that sent at least
 * KEEPALIVE_ALIVE_BYTES in the last timeout is alive: the wait starts again. A peer that
 * trickles (slowloris) or sends nothing is closed as before. */
#define KEEPALIVE_ALIVE_BYTES (64u * 1024u)

static bool keepalive_alive(struct mux *mux, double now)
{
	if (mux->stats.bytes_in - mux->pong_wait_bytes < KEEPALIVE_ALIVE_BYTES)
		return false;
	mux->pong_wait_from = now;
	mux->pong_wait_bytes = mux->stats.bytes_in;
	return true;
}

/* A half-closed stream the peer has said nothing on for release_linger: it ends as if its
 * CLOSE had come (end-of-stream to the owner, after every byte that came), and the peer gets
 * ERROR 499, which a reference peer that forgot the stream ignores and a peer whose app is
 * still on it passes on. A peer out of credit is waiting for our owner to read, not silent:
 * it waits on. */
static void quiet_end(struct mux_stream *s)
{
	struct mux *mux = s->mux;
	const struct mux_config *c = &mux->config;
	log_write(c->log, LOG_INFO, "mux", "conn=%u peer=%s stream=%u half-closed, nothing from the "
		  "peer on it for %.0f s: end of stream (a reference peer never sends its CLOSE after "
		  "ours)", c->id, c->peer, s->id, c->release_linger);
	char message[96];
	snprintf(message, sizeof message, "half-closed stream: no CLOSE from the peer in %.0f s",
		 c->release_linger);
	expect_ended_data(s);
	send_error_frame(mux, s->id, FRAME_ERR_CANCELLED, message);
	if (!s->peer_opened && ended_early(mux, s))
		count_own_wasted_open(mux, s); /* a linger under a second: the peer counts it */
	quiet_remove(s);
	s->remote_closed = true;
	stream_notify(s, EVENT_EOF);
	stream_finish(s, WH_OK);
	mux->stats.streams_lingered++;
}

/* Released streams still open after release_linger are reset. */
static void linger_expire(struct mux *mux, double now)
{
	const struct mux_config *c = &mux->config;
	/* stamp the streams released since the last call: the newest, at the tail */
	for (struct mux_stream *s = TAILQ_LAST(&mux->linger, linger_list);
	     s && s->released_at == 0; s = TAILQ_PREV(s, linger_list, linger_link))
		s->released_at = now;
	struct mux_stream *s;
	while (!mux->closed && (s = TAILQ_FIRST(&mux->linger)) &&
	       now >= s->released_at + c->release_linger) {
		linger_remove(s);
		char message[96];
		snprintf(message, sizeof message, "released stream still open after %.0f s",
			 c->release_linger);
		expect_ended_data(s);
		stream_reset(s, WH_ESTREAM_CLOSED, message);
		stream_check_free(s);
		mux->stats.streams_lingered++;
	}
}

static void quiet_expire(struct mux *mux, double now)
{
	struct mux_stream *s;
	quiet_stamp(mux, now);
	while (!mux->closed && (s = TAILQ_FIRST(&mux->quiet)) &&
	       now >= s->quiet_since + mux->config.release_linger) {
		if (mux->config.enable_flow_control && s->recv_peer_credit <= 0)
			quiet_push(s, now);
		else
			quiet_end(s);
	}
}

double mux_timer(struct mux *mux, double now)
{
	mux->now = now;
	const struct mux_config *c = &mux->config;
	if (!mux->closed && mux->ping_outstanding && c->keepalive_timeout > 0 &&
	    now - mux->pong_wait_from >= c->keepalive_timeout && !keepalive_alive(mux, now)) {
		log_write(c->log, LOG_WARN, "mux", "conn=%u peer=%s no PONG in %.1f s: closing", c->id, c->peer,
			  c->keepalive_timeout);
		mux_fail(mux, WH_EKEEPALIVE_TIMEOUT);
	}
	if (!mux->closed && !mux->probe_sent) {
		/* A first PING at once measures the RTT that window growth needs. */
		mux->probe_sent = true;
		mux->next_ping_at = now + c->keepalive_interval;
		if (!mux->ping_outstanding)
			send_ping(mux);
	}
	if (!mux->closed && c->keepalive_interval > 0 && now >= mux->next_ping_at) {
		mux->next_ping_at = now + c->keepalive_interval;
		if (!mux->ping_outstanding)
			send_ping(mux);
	}
	early_expire(mux, now);
	/* An accepted connection with no stream for idle_timeout: the peer holds our descriptor
	 * and memory for nothing. A pool that wants it back dials again. */
	bool idle = !mux->client && c->idle_timeout > 0 && LIST_EMPTY(&mux->all_streams);
	if (!idle)
		mux->idle_since = 0;
	else if (mux->idle_since == 0)
		mux->idle_since = now;
	else if (!mux->closed && now - mux->idle_since >= c->idle_timeout) {
		log_write(c->log, LOG_INFO, "mux", "conn=%u peer=%s no stream for %.0f s: closing",
			  c->id, c->peer, c->idle_timeout);
		mux_fail_saying(mux, WH_ETIMEOUT, "idle: no stream for the idle timeout");
	}
	linger_expire(mux, now);
	quiet_expire(mux, now);
	if (!mux->closed && mux->ids_exhausted && LIST_EMPTY(&mux->all_streams)) {
		log_write(c->log, LOG_INFO, "mux", "conn=%u peer=%s stream ids used up and its last "
			  "stream ended: closing", c->id, c->peer);
		mux_fail_saying(mux, WH_EMUX_CLOSED, "stream ids used up: connect again");
	}
	mux_dispatch(mux);
	double next = now + 3600;
	if (mux->closed)
		return next;
	struct mux_stream *oldest = TAILQ_FIRST(&mux->linger);
	if (oldest && oldest->released_at + c->release_linger < next)
		next = oldest->released_at + c->release_linger;
	struct mux_stream *quiet = TAILQ_FIRST(&mux->quiet);
	if (quiet && quiet->quiet_since + c->release_linger < next)
		next = quiet->quiet_since + c->release_linger;
	if (c->keepalive_interval > 0 && mux->next_ping_at < next)
		next = mux->next_ping_at;
	if (mux->idle_since > 0 && mux->idle_since + c->idle_timeout < next)
		next = mux->idle_since + c->idle_timeout;
	for (unsigned i = 0; i < EARLY_IDS_MAX; i++)
		if (mux->early[i].id && mux->early[i].since + EARLY_HOLD_SECONDS < next)
			next = mux->early[i].since + EARLY_HOLD_SECONDS;
	if (mux->ping_outstanding && c->keepalive_timeout > 0 &&
	    mux->pong_wait_from + c->keepalive_timeout < next)
		next = mux->pong_wait_from + c->keepalive_timeout;
	return next;
}

/* ---- the connection ---------------------------------------------------------------- */

struct mux *mux_new(bool client_role, const struct mux_config *config, struct mux_budget *budget,
		    const struct mux_callbacks *callbacks, void *user)
{
	if (!config || config->window_size == 0 || config->max_frame_size == 0 ||
	    config->max_frame_size > FRAME_MAX_PAYLOAD || config->max_window_size < config->window_size ||
	    config->max_window_size > (1u << 30) || config->send_buffer == 0 ||
	    config->control_queue_limit < 1024 || config->ids_left > UINT32_MAX / 2)
		return NULL;
	struct mux *mux = calloc(1, sizeof *mux);
	if (!mux)
		return NULL;
	mux->config = *config;
	mux->client = client_role;
	mux->budget = budget;
	if (callbacks)
		mux->cb = *callbacks;
	mux->user = user;
	/* odd ids dialling, even accepting; the last are 2^32-1 and 2^32-2 */
	uint32_t last_id = client_role ? UINT32_MAX : UINT32_MAX - 1;
	mux->next_local_id = config->ids_left ? last_id - 2 * (config->ids_left - 1) : client_role ? 1 : 2;
	mux->reset.tokens = mux->own_wasted.tokens = bucket_burst(config->reset_rate); /* full */
	mux->pings.tokens = bucket_burst(config->ping_rate);
	mux->noops.tokens = bucket_burst(config->noop_rate);
	mux->stored.tokens = config->store_rate * STORE_BURST_SECONDS;
	mux->framed.tokens = config->frame_rate * FRAME_BURST_SECONDS;
	LIST_INIT(&mux->all_streams);
	TAILQ_INIT(&mux->ready);
	STAILQ_INIT(&mux->accept_queue);
	STAILQ_INIT(&mux->notify_queue);
	SLIST_INIT(&mux->free_list);
	TAILQ_INIT(&mux->linger);
	TAILQ_INIT(&mux->quiet);
	bytebuf_init(&mux->control_out, config->control_queue_limit);
	if (frame_decoder_init(&mux->decoder, config->max_frame_size) != WH_OK ||
	    stream_table_init(&mux->streams) != WH_OK) {
		free(mux);
		return NULL;
	}
	return mux;
}

void mux_free(struct mux *mux)
{
	if (!mux)
		return;
	mux->closed = true; /* no callbacks from here on */
	while (!LIST_EMPTY(&mux->all_streams))
		stream_destroy(LIST_FIRST(&mux->all_streams));
	for (unsigned i = 0; i < EARLY_IDS_MAX; i++)
		bytebuf_free(&mux->early[i].data);
	stream_table_free(&mux->streams);
	bytebuf_free(&mux->control_out);
	budget_release(mux, mux->control_charged);
	free(mux);
}

void mux_fail(struct mux *mux, int error)
{
	mux_fail_saying(mux, error, NULL);
}

void mux_fail_saying(struct mux *mux, int error, const char *message)
{
	if (mux->closed)
		return;
	mux->closed = true;
	mux->error = error;
	if (error != WH_ECONNECTION_CLOSED && error != WH_EUNEXPECTED_EOF && error != WH_ENOMEM) {
		uint8_t frame[FRAME_HEADER_SIZE + 4 + 128];
		if (!message)
			message = wh_strerror(error);
		control_push(mux, frame, frame_encode_error(frame, sizeof frame, 0, FRAME_ERR_GOING_AWAY,
							    message, strnlen(message, 128)));
	}
	mux->output_sealed = true; /* nothing more after the goodbye */
	mux->closed_notify_pending = true;
	struct mux_stream *s;
	LIST_FOREACH(s, &mux->all_streams, all_link)
		if (!s->finished)
			stream_finish(s, error);
	while ((s = TAILQ_FIRST(&mux->ready)))
		ready_remove(s); /* nothing more is planned */
}

/* mux_drain's work without delivering events: safe inside an open (the pool's caller may be
 * walking its own lists). */
static void drain_start(struct mux *mux)
{
	if (mux->closed || mux->draining)
		return;
	mux->draining = true;
	static const char message[] = "going away: finish your streams, open no new ones";
	uint8_t frame[FRAME_HEADER_SIZE + 4 + sizeof message];
	control_push(mux, frame, frame_encode_error(frame, sizeof frame, 0, FRAME_ERR_GOING_AWAY, message,
						    sizeof message - 1));
	log_write(mux->config.log, LOG_INFO, "mux", "conn=%u peer=%s draining: %zu streams left", mux->config.id, mux->config.peer,
		  mux->streams.count);
}

void mux_drain(struct mux *mux)
{
	drain_start(mux);
	mux_dispatch(mux);
}

bool mux_peer_at_fault(const struct mux *mux)
{
	return mux->peer_at_fault;
}

bool mux_accepts_streams(const struct mux *mux)
{
	return !mux->closed && !mux->going_away && !mux->draining && !mux->ids_exhausted;
}

void mux_close(struct mux *mux, int reason)
{
	mux_fail(mux, reason);
	mux_dispatch(mux);
}

bool mux_is_closed(const struct mux *mux) { return mux->closed; }
int mux_error(const struct mux *mux) { return mux->error; }
uint32_t mux_id(const struct mux *mux) { return mux->config.id; }
const char *mux_peer(const struct mux *mux) { return mux->config.peer; }
void *mux_user(const struct mux *mux) { return mux->user; }
bool mux_is_client(const struct mux *mux) { return mux->client; }
size_t mux_num_streams(const struct mux *mux) { return mux->streams.count; }
const struct mux_stats *mux_stats(const struct mux *mux) { return &mux->stats; }

void mux_set_peer(struct mux *mux, const char *name)
{
	snprintf(mux->config.peer, sizeof mux->config.peer, "%s", name);
}

void mux_set_idle_timeout(struct mux *mux, double seconds)
{
	mux->config.idle_timeout = seconds;
	mux->idle_since = 0;
	/* the count starts at the next mux_timer: soon, not at the next keep-alive's */
	if (mux->cb.on_timer_changed)
		mux->cb.on_timer_changed(mux, mux->user);
}

void mux_each_stream(const struct mux *mux, void (*fn)(struct mux_stream *, void *), void *arg)
{
	struct mux_stream *s;
	LIST_FOREACH(s, &mux->all_streams, all_link)
		if (!s->finished)
			fn(s, arg);
}

/* ---- streams ----------------------------------------------------------------------- */

void mux_set_now(struct mux *mux, double now)
{
	if (now > mux->now)
		mux->now = now;
}

int mux_open_stream(struct mux *mux, const char *service, struct mux_stream **out)
{
	return mux_open_stream_from(mux, service, NULL, out);
}

int mux_open_stream_from(struct mux *mux, const char *service, const struct frame_client_address *client,
			 struct mux_stream **out)
{
	size_t length = service ? strnlen(service, SERVICE_NAME_MAX + 1) : 0;
	*out = NULL;
	if (length > SERVICE_NAME_MAX || (client && client->family != 4 && client->family != 6))
		return WH_EINVAL;
	if (mux->closed || mux->going_away || mux->draining)
		return WH_EMUX_CLOSED;
	if (mux->ids_exhausted)
		return WH_ELIMIT; /* ids are never reused: this connection opens no more streams */
	if (!own_opens_allowed(mux)) {
		mux->stats.opens_held_back++;
		if (!mux->own_reset_warned)
			log_write(mux->config.log, LOG_WARN, "mux", "conn=%u peer=%s our streams end without "
				  "data faster than the peer's reset-rate (%.0f a second) allows: new opens "
				  "fail with WH_ELIMIT until it recovers", mux->config.id, mux->config.peer,
				  mux->config.reset_rate);
		mux->own_reset_warned = true;
		return WH_ELIMIT;
	}
	mux->own_reset_warned = false;
	uint32_t id = mux->next_local_id;
	struct mux_stream *s;
	int error = stream_new(mux, id, service ? service : "", length, false, &s);
	if (error != WH_OK)
		return error;
	if (id > UINT32_MAX - 2)
		mux->ids_exhausted = true;
	else
		mux->next_local_id += 2;
	uint8_t payload[FRAME_HANDSHAKE_PAYLOAD_MAX], frame[FRAME_HEADER_SIZE + FRAME_HANDSHAKE_PAYLOAD_MAX];
	int n = frame_handshake_payload_encode(payload, sizeof payload, service, client);
	control_push(mux, frame, frame_encode_handshake(frame, sizeof frame, id, payload, n > 0 ? (size_t)n : 0));
	if (client) {
		s->has_client = true;
		s->client = *client;
	}
	mux->stats.streams_opened++;
	*out = s;
	if (mux->ids_exhausted) {
		/* Ids are never reused. The peer is told to open no more here either (its pool
		 * dials another connection: one that dials in is the only way we reach it), and
		 * the connection closes once its streams end (mux_timer). */
		log_write(mux->config.log, LOG_INFO, "mux", "conn=%u peer=%s stream ids used up: no "
			  "new streams on it, it closes once its %zu streams end", mux->config.id,
			  mux->config.peer, mux->streams.count);
		drain_start(mux);
	}
	return WH_OK;
}

struct mux_stream *mux_accept(struct mux *mux)
{
	struct mux_stream *s = STAILQ_FIRST(&mux->accept_queue);
	if (!s)
		return NULL;
	STAILQ_REMOVE_HEAD(&mux->accept_queue, accept_link);
	mux->accept_count--;
	return s;
}

void mux_stream_set_handler(struct mux_stream *s, mux_stream_handler handler, void *user)
{
	s->handler = handler;
	s->handler_user = user;
	/* Whatever happened before the owner arrived is news to it. */
	if (bytebuf_length(&s->rx))
		stream_notify(s, EVENT_READABLE);
	if (s->remote_closed)
		stream_notify(s, EVENT_EOF);
	if (s->error)
		stream_notify(s, EVENT_ERROR);
}

/* The loop-back io (mux_stream_loop_back): the receive store is the send source too. Bytes
 * leave the store only once they are written back, and only then does the peer's window
 * reopen: a peer that sends but does not read holds one window here, not a window and as
 * much again of answers, and no byte is copied on its way back. */
static int loop_back_tx_peek(void *ctx, size_t offset, struct iovec iov[2])
{
	return bytebuf_peek(&((struct mux_stream *)ctx)->rx, offset, iov);
}
static void loop_back_tx_consume(void *ctx, size_t n)
{
	struct mux_stream *s = ctx;
	bytebuf_consume(&s->rx, n);
	rx_left(s, n); /* a WINDOW_UPDATE joins the control queue: no output is planned here */
}

static const struct mux_stream_io loop_back_io = {
	.rx_reserve = builtin_rx_reserve,
	.rx_commit = builtin_rx_commit,
	.rx_capacity = builtin_rx_capacity,
	.tx_peek = loop_back_tx_peek,
	.tx_consume = loop_back_tx_consume,
	.release = NULL,
};

void mux_stream_loop_back(struct mux_stream *s)
{
	mux_stream_set_io(s, &loop_back_io, s);
	if (bytebuf_length(&s->rx))
		mux_stream_kick(s); /* bytes that came before (held DATA) go back now */
}

void mux_stream_set_io(struct mux_stream *s, const struct mux_stream_io *io, void *ctx)
{
	if (s->io == &builtin_io && io != &builtin_io && bytebuf_length(&s->tx) == 0) {
		/* the built-in send buffer is never used now: its charge goes back */
		uint64_t charged = s->tx.limit;
		bytebuf_free(&s->tx);
		bytebuf_init(&s->tx, 0);
		stream_budget_release(s, charged);
	}
	s->io = io;
	s->io_ctx = ctx;
}

long mux_stream_write(struct mux_stream *s, const void *data, size_t length)
{
	if (s->error)
		return s->error;
	if (s->write_closed || s->finished)
		return WH_ESTREAM_CLOSED;
	if (s->mux->closed)
		return s->mux->error ? s->mux->error : WH_EMUX_CLOSED;
	if (bytebuf_room(&s->tx) < length)
		send_buffer_grow(s);
	long n = bytebuf_write(&s->tx, data, length);
	if (n < 0)
		return n;
	if (n == 0 && length) {
		s->want_writable = true;
		return WH_EWOULDBLOCK;
	}
	mux_stream_kick(s);
	return n;
}

long mux_stream_read(struct mux_stream *s, void *data, size_t length)
{
	size_t n = bytebuf_read(&s->rx, data, length);
	if (n > 0) {
		rx_left(s, n);
		return (long)n;
	}
	if (s->error)
		return s->error;
	if (s->remote_closed)
		return 0;
	if (s->mux->closed)
		return s->mux->error ? s->mux->error : WH_EMUX_CLOSED;
	return WH_EWOULDBLOCK;
}

size_t mux_stream_write_room(struct mux_stream *s)
{
	if (s->error || s->write_closed || s->finished || s->mux->closed)
		return 0;
	size_t room = bytebuf_room(&s->tx);
	if (room < s->mux->config.send_buffer && send_buffer_grow(s))
		room = bytebuf_room(&s->tx);
	if (room == 0)
		s->want_writable = true;
	return room;
}

size_t mux_stream_consumption_until_update(const struct mux_stream *s)
{
	if (!s->mux->config.enable_flow_control || s->finished || s->remote_closed)
		return SIZE_MAX;
	uint32_t half = s->recv_window / 2;
	return s->recv_unacked < half ? half - s->recv_unacked : 1;
}

void mux_stream_kick(struct mux_stream *s)
{
	if (!s->finished && !s->stalled && !s->close_sent)
		ready_push(s);
}

void mux_stream_consumed(struct mux_stream *s, size_t n)
{
	stream_consumed(s, n);
}

int mux_stream_close_write(struct mux_stream *s)
{
	if (s->write_closed || s->finished)
		return WH_ESTREAM_CLOSED;
	s->write_closed = true;
	s->stalled = false; /* a CLOSE needs no credit: let the scheduler look again */
	ready_push(s);
	return WH_OK;
}

int mux_stream_reset(struct mux_stream *s, int error, const char *message)
{
	if (s->finished)
		return WH_ESTREAM_CLOSED;
	expect_ended_data(s);
	stream_reset(s, error < 0 ? error : WH_ESTREAM_CLOSED, message ? message : "");
	mux_dispatch(s->mux);
	return WH_OK;
}

int mux_stream_reset_code(struct mux_stream *s, uint32_t code, const char *message)
{
	if (s->finished)
		return WH_ESTREAM_CLOSED;
	expect_ended_data(s);
	stream_reset_with(s, WH_ESTREAM_CLOSED, code, message ? message : "");
	mux_dispatch(s->mux);
	return WH_OK;
}

void mux_stream_release(struct mux_stream *s)
{
	struct mux *mux = s->mux;
	s->released = true;
	s->handler = NULL;
	if (!s->write_closed && !s->finished)
		mux_stream_close_write(s);
	if (s->io != &loop_back_io) { /* a loop-back stream's store is what it still sends */
		size_t held = bytebuf_length(&s->rx);
		bytebuf_consume(&s->rx, held);
		rx_left(s, held);
	}
	/* A peer that never closes (the reference can lose its CLOSE, WIRE-NOTES weakness 2) or
	 * never grants credit for our last bytes would keep the stream forever: bound it. */
	quiet_remove(s); /* the linger of a released stream bounds it from now on */
	if (!s->finished && !s->in_linger && mux->config.release_linger > 0 && !mux->closed) {
		bool first = TAILQ_EMPTY(&mux->linger);
		linger_add(s);
		if (first && mux->cb.on_timer_changed)
			mux->cb.on_timer_changed(mux, mux->user);
	}
	stream_check_free(s);
	mux_dispatch(mux);
}

uint32_t mux_stream_id(const struct mux_stream *s) { return s->id; }
struct mux *mux_stream_mux(const struct mux_stream *s) { return s->mux; }
const char *mux_stream_service(const struct mux_stream *s) { return s->service; }
const struct frame_client_address *mux_stream_client(const struct mux_stream *s)
{
	return s->has_client ? &s->client : NULL;
}
bool mux_stream_is_finished(const struct mux_stream *s) { return s->finished; }
int mux_stream_error(const struct mux_stream *s) { return s->error; }
uint32_t mux_stream_remote_code(const struct mux_stream *s) { return s->remote_code; }

const char *mux_stream_remote_message(const struct mux_stream *s)
{
	return s->remote_message ? s->remote_message : "";
}

void mux_stream_get_stats(const struct mux_stream *s, struct mux_stream_stats *stats)
{
	*stats = s->stats;
	stats->recv_window = s->recv_window;
	stats->send_credit = s->send_credit;
	stats->held = bytebuf_length(&s->rx);
}

const char *mux_stream_state(const struct mux_stream *s)
{
	if (s->error != WH_OK)
		return "reset";
	if (s->finished)
		return "finished";
	if (s->write_closed && s->remote_closed)
		return "closing";
	if (s->write_closed)
		return "local-closed";
	if (s->remote_closed)
		return "remote-closed";
	return "open";
}

int mux_stream_set_owner(struct mux_stream *s, struct mux_owner_account *account)
{
	if (account && account->limit && account->used + s->budget_reserved > account->limit)
		return WH_ELIMIT;
	if (s->owner)
		s->owner->used -= s->budget_reserved;
	s->owner = account;
	if (account) {
		account->used += s->budget_reserved;
		account->stream_cost = s->budget_reserved;
		account->reset_rate = s->mux->config.reset_rate;
	}
	return WH_OK;
}

void *mux_stream_owner(const struct mux_stream *s, mux_stream_handler handler)
{
	return s->handler == handler ? s->handler_user : NULL;
}
