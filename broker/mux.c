/* The multiplexer: stream state, flow control and the frame scheduler, over caller I/O. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "bytebuf.h"
#include "mux.h"
#include "stream_table.h"

#define OUT_RING 128u                       /* planned frames not yet fully written */
#define PLAN_BYTES_PER_ROUND (512u * 1024u) /* DATA planned per gather: bounds the iovecs */
/* Interactive beside bulk (docs/BROKER.md, "Writing and scheduling"): a DATA frame this
 * small is a request or an answer, one this large a bulk transfer's; a connection that
 * carried both, on different streams, within INTERACTIVE_SECONDS keeps its queues short. */
#define SMALL_FRAME 4096u
#define LARGE_FRAME (16u * 1024u)
#define INTERACTIVE_SECONDS 1.0
#define INTERACTIVE_PLAN (32u * 1024u) /* DATA planned ahead of the socket, then: a frame */
#define SMALL_LOOKAHEAD 16u /* streams of the ready list looked at for a small frame */
/* Control bytes a connection may queue without charging the budgets (a constant per
 * connection, counted in docs/SECURITY.md): enough for the answers to a full read of
 * HANDSHAKEs refused at once (about 45 bytes each) when the budget is spent, so a peer that
 * reads its answers is not closed for the broker being full. */
#define CONTROL_QUEUE_FREE (64u * 1024u)
#define SEND_CREDIT_LIMIT 0x7FFFFFFF        /* credit above this is a flow-control error */
#define SERVICE_NAME_MAX FRAME_SERVICE_NAME_MAX
/* Frames for a peer's stream that arrive before its HANDSHAKE (a reference peer can send them
 * so, WIRE-NOTES weakness 4) are held for this many ids at once, this long, and at most the
 * initial window each: more is what no honest peer sends. */
#define EARLY_IDS_MAX 8u
#define EARLY_HOLD_SECONDS 5.0

enum stream_event_bit {
	EVENT_READABLE = 1u << MUX_STREAM_READABLE,
	EVENT_WRITABLE = 1u << MUX_STREAM_WRITABLE,
	EVENT_EOF = 1u << MUX_STREAM_EOF,
	EVENT_ERROR = 1u << MUX_STREAM_ERROR,
};

struct mux_stream {
	struct mux *mux;
	uint32_t id;
	char service[SERVICE_NAME_MAX + 1];
	/* the forward's TCP client the opener named in its HANDSHAKE (has_client), or ours */
	bool has_client;
	struct frame_client_address client;

	bool write_closed;  /* the owner will write no more: CLOSE follows the queued data */
	bool close_sent;    /* CLOSE is planned on the wire */
	bool remote_closed; /* the peer's CLOSE arrived */
	bool released;      /* the owner let go: incoming bytes are discarded */
	bool finished;
	bool stalled;       /* has data, no credit: counted once per stall */
	bool want_writable; /* a write found the send buffer full */
	int error;
	uint32_t remote_code;
	char *remote_message;

	const struct mux_stream_io *io;
	void *io_ctx;
	struct bytebuf rx, tx; /* the built-in io's stores */
	mux_stream_handler handler;
	void *handler_user;

	int64_t send_credit;
	uint32_t recv_window;
	int64_t recv_peer_credit; /* bytes the peer may still send */
	uint32_t recv_unacked;    /* consumed, not yet returned by WINDOW_UPDATE */
	double last_update_time;
	uint64_t budget_reserved;
	struct mux_owner_account *owner; /* the app that opened it, charged too (or NULL) */
	bool peer_opened; /* the peer's HANDSHAKE made it: charged outside the local reserve */
	bool data_planned; /* a DATA frame of ours is planned on it (reset-rate's view of it) */

	size_t tx_planned; /* bytes of planned frames not yet written (and so not consumed) */
	unsigned pending_frames;
	size_t gather_offset;
	unsigned gather_pass;

	/* The lists a stream is on (<sys/queue.h>, which cannot tell whether an entry is on its
	 * list: the in_* flags say it for the lists a stream may or may not be on). */
	LIST_ENTRY(mux_stream) all_link; /* every stream of the mux, until destroyed */
	TAILQ_ENTRY(mux_stream) ready_link; /* has output to plan: the round-robin */
	bool in_ready;
	STAILQ_ENTRY(mux_stream) accept_link; /* waiting for mux_accept */
	STAILQ_ENTRY(mux_stream) notify_link; /* has events for its handler */
	unsigned events;
	bool in_notify;
	SLIST_ENTRY(mux_stream) free_link; /* released: freed once nothing refers to it */
	bool in_free_list;
	/* released but not finished: reset once release_linger has passed */
	TAILQ_ENTRY(mux_stream) linger_link;
	bool in_linger;
	double released_at; /* 0 until mux_timer stamps it: release itself knows no time */
	/* held, our CLOSE sent, the peer's not come: ended once the peer says nothing on it for
	 * release_linger (quiet_start) */
	TAILQ_ENTRY(mux_stream) quiet_link;
	bool in_quiet;
	double quiet_since; /* the peer's last frame on it; 0 until stamped (quiet_stamp) */

	struct mux_stream_stats stats;
};

/* DATA (and a CLOSE) for a peer id whose HANDSHAKE has not come yet. */
struct early_stream {
	uint32_t id; /* 0: slot free */
	bool closed;   /* its CLOSE came too */
	bool overflow; /* more than the initial window came: reset it once it opens */
	double since;
	struct bytebuf data;
};

enum out_kind { OUT_CONTROL, OUT_STREAM };

struct out_frame {
	enum out_kind kind;
	struct mux_stream *stream;
	uint8_t header[FRAME_HEADER_SIZE];
	uint8_t header_done; /* OUT_STREAM only; control bytes carry their own headers */
	uint32_t payload_length, payload_done;
};

TAILQ_HEAD(linger_list, mux_stream);

/* A token bucket: `rate` tokens a second, holding BUCKET_BURST_SECONDS of them. */
struct rate_bucket {
	double tokens;
	double refilled_at;
};
#define BUCKET_BURST_SECONDS 5.0

struct mux {
	struct mux_config config;
	bool client;
	struct mux_budget *budget;
	struct mux_budget_account *account;
	uint64_t budget_used;
	uint64_t control_charged; /* control_out capacity above CONTROL_QUEUE_FREE, charged */
	struct rate_bucket reset; /* rapid reset: streams the peer may still open for nothing */
	struct rate_bucket pings; /* PINGs the peer may still send */
	struct rate_bucket noops; /* frames that do nothing the peer may still send */
	unsigned conn_errors_logged; /* stream-0 ERRORs logged: the first few only */
	struct rate_bucket own_wasted; /* our count of what the peer's reset-rate counts of ours */
	struct rate_bucket stored; /* bytes the peer may still add to our own stores (store_rate) */
	struct rate_bucket framed; /* frames the peer may still send (frame_rate) */
	uint64_t updates_owed;    /* WINDOW_UPDATEs the peer may send: one per DATA frame of ours */
	uint64_t ended_credit;    /* bytes of DATA the peer may have in flight for streams we ended */
	double ended_credit_until; /* ... until then (ENDED_CREDIT_SECONDS after the last end) */
	double idle_since;        /* accepted: when it last had no stream (0: it has some) */
	struct mux_callbacks cb;
	void *user;
	double now;

	struct frame_decoder decoder;
	struct stream_table streams;
	LIST_HEAD(, mux_stream) all_streams;
	uint32_t next_local_id;
	struct stream_ids peer_ids; /* which of the peer's ids were used (any order) */
	uint32_t rx_stream_id; /* stream of the DATA payload being received, 0: discard */
	struct early_stream *rx_early; /* or the early stream it is held for */
	struct early_stream early[EARLY_IDS_MAX];

	struct bytebuf control_out; /* encoded control frames, ahead of stream data */
	size_t control_planned;
	struct out_frame out[OUT_RING];
	unsigned out_head, out_count;
	size_t out_promised; /* bytes from the head the driver must write as gathered (mux_output_hold) */
	size_t planned_data; /* DATA bytes planned, not yet written */
	double small_at, large_at; /* the last small and large DATA frame (SMALL_FRAME) */
	uint32_t small_id, large_id; /* and their streams */
	TAILQ_HEAD(, mux_stream) ready;
	unsigned gather_pass;

	STAILQ_HEAD(, mux_stream) accept_queue;
	unsigned accept_count;
	bool accept_ready_pending;

	bool probe_sent;
	bool ping_outstanding;
	uint32_t ping_id;
	double ping_sent_at, next_ping_at;
	double pong_wait_from;    /* keep-alive: the timeout counts from here (keepalive_alive) */
	uint64_t pong_wait_bytes; /* stats.bytes_in then */

	bool ids_exhausted;
	bool closed, output_sealed, closed_notify_pending, dispatching;
	bool going_away;     /* the peer said ERROR 505: we open no more streams here */
	bool window_warned;  /* a window mismatch was logged at warn once for this connection */
	bool own_reset_warned; /* our opens are held back (own_opens_allowed): said once */
	bool draining;       /* we said it: the peer's new streams are refused with 505 */
	bool peer_at_fault; /* closed for what the peer sent (mux_peer_at_fault) */
	int error;
	STAILQ_HEAD(, mux_stream) notify_queue;
	SLIST_HEAD(, mux_stream) free_list;
	struct linger_list linger; /* in release order, so in expiry order */
	struct linger_list quiet; /* by the peer's last frame on them, so in expiry order */

	struct mux_stats stats;
};

static void stream_finish(struct mux_stream *s, int error);
static void store_charge(struct mux *mux, size_t n);
static void store_refund(struct mux *mux, size_t n);
static void count_wasted_open(struct mux *mux, const char *what);
static void count_noop(struct mux *mux);
static void count_own_wasted_open(struct mux *mux, struct mux_stream *s);
static bool ended_early(const struct mux *mux, const struct mux_stream *s);

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

static void stream_notify(struct mux_stream *s, unsigned event_bit)
{
	s->events |= event_bit;
	if (s->in_notify)
		return;
	s->in_notify = true;
	STAILQ_INSERT_TAIL(&s->mux->notify_queue, s, notify_link);
}

static void stream_check_free(struct mux_stream *s)
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

static void quiet_remove(struct mux_stream *s)
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
static void quiet_start(struct mux_stream *s)
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
static void quiet_touch(struct mux_stream *s)
{
	if (s->in_quiet)
		quiet_push(s, s->mux->now);
}

static void want_write(struct mux *mux)
{
	if (mux->cb.on_want_write)
		mux->cb.on_want_write(mux, mux->user);
}

static void ready_remove(struct mux_stream *s)
{
	if (!s->in_ready)
		return;
	TAILQ_REMOVE(&s->mux->ready, s, ready_link);
	s->in_ready = false;
}

static void ready_push(struct mux_stream *s)
{
	if (s->in_ready || s->finished)
		return;
	TAILQ_INSERT_TAIL(&s->mux->ready, s, ready_link);
	s->in_ready = true;
	want_write(s->mux);
}

static void stream_destroy(struct mux_stream *s)
{
	struct mux *mux = s->mux;
	ready_remove(s);
	linger_remove(s);
	quiet_remove(s);
	if (stream_table_find(&mux->streams, s->id) == s)
		stream_table_remove(&mux->streams, s->id);
	LIST_REMOVE(s, all_link);
	stream_budget_release(s, s->budget_reserved);
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

static void mux_dispatch(struct mux *mux)
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

static void mux_fail(struct mux *mux, int error);
/* mux_fail with the goodbye's text (NULL: the error's own). */
static void mux_fail_saying(struct mux *mux, int error, const char *message);

static void control_push(struct mux *mux, const uint8_t *frame, int length)
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

static void send_error_frame(struct mux *mux, uint32_t stream_id, uint32_t code, const char *message)
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

static int stream_new(struct mux *mux, uint32_t id, const char *service, size_t service_length,
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
static void stream_finish(struct mux_stream *s, int error)
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

static void stream_check_finished(struct mux_stream *s)
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
static void count_ended_data(struct mux *mux, uint32_t length)
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

static void stream_reset(struct mux_stream *s, int error, const char *message)
{
	stream_reset_with(s, error, frame_error_code_for(error), message);
}

/* ---- input ------------------------------------------------------------------------- */

static struct mux_stream *live_stream(struct mux *mux, uint32_t id)
{
	return stream_table_find(&mux->streams, id);
}

/* ---- frames that overtook their stream's HANDSHAKE ----------------------------------- */

static void early_drop(struct mux *mux, struct early_stream *e)
{
	if (mux->rx_early == e)
		mux->rx_early = NULL;
	bytebuf_free(&e->data);
	memset(e, 0, sizeof *e);
}

/* An id the peer may still open: its parity, never used (above every id it used, or one a
 * later HANDSHAKE skipped, within the bookkeeping's window: stream_ids). */
static bool early_candidate(const struct mux *mux, uint32_t id)
{
	return !mux->closed && !mux->going_away && !frame_stream_id_is_local(id, mux->client) &&
	       stream_ids_usable(&mux->peer_ids, id);
}

/* The held frames for a peer id that may still open; with create, a free slot is taken for
 * it. NULL: not such an id, or no slot free. */

static struct early_stream *early_find(struct mux *mux, uint32_t id, bool create)
{
	if (!early_candidate(mux, id))
		return NULL;
	struct early_stream *free_slot = NULL;
	for (unsigned i = 0; i < EARLY_IDS_MAX; i++) {
		if (mux->early[i].id == id)
			return &mux->early[i];
		if (!mux->early[i].id && !free_slot)
			free_slot = &mux->early[i];
	}
	if (!create || !free_slot)
		return NULL;
	bool first = true;
	for (unsigned i = 0; i < EARLY_IDS_MAX; i++)
		first = first && !mux->early[i].id;
	free_slot->id = id;
	free_slot->since = mux->now;
	bytebuf_init(&free_slot->data, mux->config.window_size);
	if (first && mux->cb.on_timer_changed) /* mux_timer must expire it */
		mux->cb.on_timer_changed(mux, mux->user);
	return free_slot;
}

/* A frame held for a HANDSHAKE that has not come (DATA or CLOSE) does nothing yet, and may
 * never: held frames count in noop-rate. The eight holds bound their memory, not their rate:
 * empty or one-byte DATA spread over the held ids was served at 37 M frames a second, for as
 * long as the attacker liked. A reference peer's frames overtake their HANDSHAKE by a few at
 * most (a window's worth: eight full frames), well within noop-rate's burst. */
static void count_held(struct mux *mux)
{
	count_noop(mux);
}

static void early_hold(struct early_stream *e, const uint8_t *data, size_t n)
{
	long kept = bytebuf_write(&e->data, data, n);
	if (kept < 0 || (size_t)kept < n)
		e->overflow = true; /* beyond the initial window, or no memory: reset it at open */
}

static void deliver(struct mux *mux, struct mux_stream *s, const uint8_t *data, size_t n);

/* The stream's HANDSHAKE came and it is open: what was held for it, in order. */
static void early_replay(struct mux *mux, struct mux_stream *s)
{
	struct early_stream *e = NULL;
	for (unsigned i = 0; i < EARLY_IDS_MAX; i++)
		if (mux->early[i].id == s->id)
			e = &mux->early[i];
	if (!e)
		return;
	size_t held = bytebuf_length(&e->data);
	if (e->overflow || (mux->config.enable_flow_control && (int64_t)held > s->recv_peer_credit)) {
		early_drop(mux, e);
		stream_reset(s, WH_EFLOW_CONTROL, "DATA beyond the flow-control window before HANDSHAKE");
		return;
	}
	s->recv_peer_credit -= (int64_t)held;
	struct iovec spans[2];
	int n = bytebuf_peek(&e->data, 0, spans);
	for (int i = 0; i < n && !s->finished; i++)
		deliver(mux, s, spans[i].iov_base, spans[i].iov_len);
	bool closed = e->closed;
	early_drop(mux, e);
	if (closed && !s->finished && !s->remote_closed) {
		s->remote_closed = true;
		stream_notify(s, EVENT_EOF);
		stream_check_finished(s);
	}
}

/* A HANDSHAKE for `id` came. Ids it skipped may still open (their HANDSHAKEs may come
 * late): what is held for them stays. Only ids the window of used ids left behind can never
 * open now: what was held for them goes. */
static void early_forget_unusable(struct mux *mux, uint32_t id)
{
	for (unsigned i = 0; i < EARLY_IDS_MAX; i++) {
		uint32_t held = mux->early[i].id;
		if (held && held != id && !stream_ids_usable(&mux->peer_ids, held)) {
			mux->stats.dropped_frames++;
			early_drop(mux, &mux->early[i]);
			count_wasted_open(mux, "sends frames for streams it never opens");
		}
	}
}

/* The open of `id` is refused: what was held for it goes too (the refusal was counted). */
static void early_forget(struct mux *mux, uint32_t id)
{
	for (unsigned i = 0; i < EARLY_IDS_MAX; i++)
		if (mux->early[i].id == id) {
			mux->stats.dropped_frames++;
			early_drop(mux, &mux->early[i]);
		}
}

/* Windows are not negotiated (docs/PROTOCOL.md 4): a peer whose window differs from ours
 * breaks every bulk stream with ERROR 413. Say so once per connection where operators look. */
static void window_mismatch(struct mux *mux, bool theirs_larger)
{
	if (mux->window_warned)
		return;
	mux->window_warned = true;
	log_write(mux->config.log, LOG_WARN, "mux", "conn=%u peer=%s %s: the peer's window is probably "
		  "%s than ours (%u bytes); windows are not negotiated, give both brokers the same window",
		  mux->config.id, mux->config.peer,
		  theirs_larger ? "DATA beyond the window we granted" : "the peer refused our DATA (ERROR 413)",
		  theirs_larger ? "larger" : "smaller", mux->config.window_size);
}

/* Small DATA on one stream and large DATA on another, either way, make the connection
 * interactive for a while: no flag from the app, and a lone bulk stream (whose window's
 * last frame may be small) never counts. */
static void note_data(struct mux *mux, uint32_t id, size_t n)
{
	if (n >= LARGE_FRAME) {
		mux->large_at = mux->now;
		mux->large_id = id;
	} else if (n <= SMALL_FRAME && id != mux->large_id) {
		mux->small_at = mux->now;
		mux->small_id = id;
	}
}

bool mux_interactive(const struct mux *mux)
{
	/* a bulk stream that began with a small frame is not beside another one */
	return mux->small_at > 0 && mux->large_at > 0 && mux->small_id != mux->large_id &&
	       mux->now - mux->small_at < INTERACTIVE_SECONDS && mux->now - mux->large_at < INTERACTIVE_SECONDS;
}

static void handle_data_header(struct mux *mux, const struct frame_header *h)
{
	struct mux_stream *s = live_stream(mux, h->stream_id);
	mux->rx_stream_id = 0;
	mux->rx_early = NULL;
	if (!s) {
		mux->rx_early = early_find(mux, h->stream_id, true);
		if (mux->rx_early) {
			mux->stats.early_frames++;
			count_held(mux);
			return; /* its payload is held until the HANDSHAKE (handle_data_chunk) */
		}
		if (early_candidate(mux, h->stream_id)) /* every hold in use: one more is abuse */
			count_wasted_open(mux, "sends frames for streams it never opens");
		else
			count_ended_data(mux, h->length);
		/* Unknown or finished: dropped without credit, as the reference does. */
		mux->stats.dropped_frames++;
		frame_decoder_skip_payload(&mux->decoder);
		return;
	}
	if (h->length == 0) {
		/* Moves nothing, and would spare the stream from reset-rate as one that carried
		 * DATA: a frame that does nothing (HTTP/2's empty-frames flood, CVE-2019-9518). */
		mux->stats.dropped_frames++;
		count_noop(mux);
		return;
	}
	s->stats.frames_in++;
	note_data(mux, s->id, h->length);
	if (s->remote_closed) {
		frame_decoder_skip_payload(&mux->decoder);
		stream_reset(s, WH_EPROTOCOL, "DATA after CLOSE");
		return;
	}
	if (mux->config.enable_flow_control && h->length > s->recv_peer_credit) {
		frame_decoder_skip_payload(&mux->decoder);
		window_mismatch(mux, true);
		stream_reset(s, WH_EFLOW_CONTROL, "DATA beyond the flow-control window");
		return;
	}
	s->recv_peer_credit -= h->length;
	mux->rx_stream_id = h->stream_id;
	quiet_touch(s);
}

static void stream_consumed(struct mux_stream *s, size_t n)
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

/* The stream's store cannot take the DATA payload in progress: the rest of it is skipped and
 * the stream reset. */
static void rx_abandon(struct mux *mux, struct mux_stream *s, int error, const char *message)
{
	frame_decoder_skip_payload(&mux->decoder);
	mux->rx_stream_id = 0;
	stream_reset(s, error, message);
}

/* Stores received payload; a store that lacks the room it promised ends the stream. */
static void deliver(struct mux *mux, struct mux_stream *s, const uint8_t *data, size_t n)
{
	s->stats.bytes_in += n;
	mux->stats.data_bytes_in += n;
	if (s->released) {
		stream_consumed(s, n); /* nobody reads: discard, but keep the peer's writes flowing */
		return;
	}
	size_t done = 0;
	while (done < n) {
		uint8_t *span;
		long room = s->io->rx_reserve(s->io_ctx, n - done, &span);
		if (room <= 0) {
			rx_abandon(mux, s, room < 0 ? (int)room : WH_ELIMIT,
				   room < 0 ? "the stream's receive store failed" : "receive store full");
			return;
		}
		memcpy(span, data + done, (size_t)room);
		int error = s->io->rx_commit(s->io_ctx, (size_t)room);
		if (error != WH_OK) {
			rx_abandon(mux, s, error, "the stream's receive store failed");
			return;
		}
		done += (size_t)room;
	}
	stream_notify(s, EVENT_READABLE);
}

static void handle_data_chunk(struct mux *mux, const struct frame_event *ev)
{
	struct mux_stream *s = mux->rx_stream_id ? live_stream(mux, mux->rx_stream_id) : NULL;
	if (s && ev->payload_length)
		deliver(mux, s, ev->payload, ev->payload_length);
	else if (mux->rx_early && ev->payload_length)
		early_hold(mux->rx_early, ev->payload, ev->payload_length);
	if (ev->end) {
		mux->rx_stream_id = 0;
		mux->rx_early = NULL;
	}
}

/* A HANDSHAKE whose payload does not parse (a name too long, an address block malformed or
 * oversized: frame_handshake_payload_parse) is refused on its id alone, with a log line. */
static void refuse_bad_handshake(struct mux *mux, uint32_t id, int error)
{
	const char *why = error == WH_EPAYLOAD_TOO_LARGE ? "service name or extensions too long"
							 : "malformed extensions (client address)";
	log_write(mux->config.log, LOG_WARN, "mux", "conn=%u peer=%s stream=%u refused: HANDSHAKE payload: "
		  "%s: ERROR 400", mux->config.id, mux->config.peer, id, why);
	send_error_frame(mux, id, FRAME_ERR_PROTOCOL, why);
	early_forget(mux, id);
	count_wasted_open(mux, "opens streams that are refused");
}

static void handle_handshake(struct mux *mux, const struct frame_header *h, const uint8_t *payload,
			     size_t length)
{
	uint32_t id = h->stream_id;
	struct mux_stream *s = live_stream(mux, id);
	if (s) {
		stream_reset(s, WH_ESTREAM_ALREADY_EXISTS, "duplicate HANDSHAKE for a live stream");
		return;
	}
	/* Any id of the peer's parity it never used opens, in any order (WIRE-NOTES weakness
	 * 11); an id it used, or one so far below the highest that the bookkeeping let it go,
	 * never again. */
	if (frame_stream_id_is_local(id, mux->client) || !stream_ids_usable(&mux->peer_ids, id)) {
		send_error_frame(mux, id, FRAME_ERR_PROTOCOL, "stream id not usable by the opener");
		count_wasted_open(mux, "opens streams that are refused");
		return;
	}
	stream_ids_mark(&mux->peer_ids, id);
	early_forget_unusable(mux, id);
	struct frame_handshake hs;
	int parsed = frame_handshake_payload_parse(payload, length, &hs);
	if (parsed != WH_OK) {
		refuse_bad_handshake(mux, id, parsed);
		return;
	}
	if (mux->going_away || mux->draining) {
		send_error_frame(mux, id, FRAME_ERR_GOING_AWAY, "connection is closing");
		early_forget(mux, id);
		return;
	}
	int error = stream_new(mux, id, (const char *)hs.service, hs.service_length, true, &s);
	if (error == WH_OK && hs.has_client) {
		s->has_client = true;
		s->client = hs.client;
	}
	if (error == WH_OK && mux->cb.on_incoming)
		error = mux->cb.on_incoming(mux, s, s->service, mux->user);
	else if (error == WH_OK && mux->accept_count >= mux->config.accept_backlog)
		error = WH_EACCEPT_QUEUE_FULL;
	if (error != WH_OK) {
		if (s && stream_table_find(&mux->streams, id) == s)
			stream_destroy(s);
		mux->stats.streams_refused++;
		log_write(mux->config.log, LOG_INFO, "mux", "conn=%u peer=%s stream=%u refused: %s",
			  mux->config.id, mux->config.peer, id, wh_strerror(error));
		send_error_frame(mux, id, frame_error_code_for(error), wh_strerror(error));
		early_forget(mux, id);
		count_wasted_open(mux, "opens streams that are refused");
		return;
	}
	mux->stats.streams_accepted++;
	early_replay(mux, s);
	if (mux->cb.on_incoming)
		return;
	STAILQ_INSERT_TAIL(&mux->accept_queue, s, accept_link);
	mux->accept_count++;
	mux->accept_ready_pending = true;
}

static void handle_window_update(struct mux *mux, const struct frame_header *h, const uint8_t *payload)
{
	uint32_t increment;
	struct mux_stream *s = live_stream(mux, h->stream_id);
	if (frame_parse_window_update(h, payload, &increment) != WH_OK || !s || increment == 0) {
		mux->stats.dropped_frames++;
		count_noop(mux);
		return;
	}
	/* A peer grants credit for bytes it read, so it has no cause for more updates than we sent
	 * DATA frames (the reference sends one a half window). More are a flood that looks
	 * useful (+1 a frame), and count as frames that do nothing. */
	if (mux->updates_owed)
		mux->updates_owed--;
	else
		count_noop(mux);
	if (mux->closed)
		return; /* that was one too many */
	quiet_touch(s);
	s->send_credit += increment;
	if (s->send_credit > SEND_CREDIT_LIMIT) {
		stream_reset(s, WH_EFLOW_CONTROL, "window credit above 2^31-1");
		return;
	}
	if (s->stalled && increment) {
		s->stalled = false;
		ready_push(s);
	}
}

static double bucket_burst(double rate)
{
	return rate * BUCKET_BURST_SECONDS > 1 ? rate * BUCKET_BURST_SECONDS : 1;
}

/* Adds the tokens earned since the last refill, up to `burst`. */
static void bucket_refill_to(struct rate_bucket *b, double rate, double burst, double now)
{
	b->tokens += (now - b->refilled_at) * rate;
	b->refilled_at = now;
	if (b->tokens > burst)
		b->tokens = burst;
}

/* The same, up to the usual burst; returns the burst. */
static double bucket_refill(struct rate_bucket *b, double rate, double now)
{
	double burst = bucket_burst(rate);
	bucket_refill_to(b, rate, burst, now);
	return burst;
}

/* Takes a token; false once the bucket is empty. A rate of 0 is no bound. */
static bool bucket_take(struct rate_bucket *b, double rate, double now)
{
	if (rate <= 0)
		return true;
	bucket_refill(b, rate, now);
	b->tokens -= 1;
	return b->tokens >= 0;
}

/* What a peer makes us hold in our own stores (built-in services' receive stores) costs us
 * memory we must first touch: a peer that fills 1000 echo windows and never reads the
 * answers makes the broker take in 256 MiB, within its budget share, and on a VM each new
 * page is a fault of 15-28 us: seconds of the broker's time, taken from every other
 * connection. The budget bounds how much; store_rate bounds how fast: growth is taken from a
 * bucket of store_rate bytes a second (a burst of STORE_BURST_SECONDS' worth) and bytes that
 * leave the store (read, sent back, released) are given back, so bytes that pass through
 * cost nothing. Once the bucket is empty the driver stops reading this peer until it has
 * refilled (mux_input_pause): the peer's own connection waits, no other. */
#define STORE_BURST_SECONDS 2.0

static void store_charge(struct mux *mux, size_t n)
{
	double rate = mux->config.store_rate;
	if (rate <= 0)
		return;
	/* refilled up to now first: what the bucket earned before this charge, not after */
	bucket_refill_to(&mux->stored, rate, rate * STORE_BURST_SECONDS, mux->now);
	mux->stored.tokens -= (double)n;
}

static void store_refund(struct mux *mux, size_t n)
{
	double burst = mux->config.store_rate * STORE_BURST_SECONDS;
	if (mux->config.store_rate <= 0 || n == 0)
		return;
	mux->stored.tokens += (double)n;
	if (mux->stored.tokens > burst)
		mux->stored.tokens = burst;
}

#define STORE_READ_MIN 4096.0

/* Frames cost the broker far more than bytes: one-byte DATA frames within the window, served
 * and useful, kept a core busy at 7.6 million a second, and on a shared machine that core was
 * the other streams' (a good bulk stream beside them kept 0.41 of its speed). frame_rate
 * bounds a connection's frames, useful or not, as store_rate bounds its stores: past the
 * bucket the driver stops reading it until it refills, and TCP holds the peer back (its own
 * process then waits too). An honest peer sends far fewer: bulk in frames of 32 KiB (the
 * default) is under 100,000 a second at 3 GB/s. Returns the frames spent past the bucket (> 0: pause). */
#define FRAME_BURST_SECONDS 2.0

static double frames_spent(struct mux *mux)
{
	double rate = mux->config.frame_rate;
	if (rate <= 0)
		return 0;
	bucket_refill_to(&mux->framed, rate, rate * FRAME_BURST_SECONDS, mux->now);
	return -mux->framed.tokens;
}

size_t mux_input_allowance(struct mux *mux)
{
	double rate = mux->config.store_rate;
	if (frames_spent(mux) > 0)
		return 0;
	if (rate <= 0)
		return SIZE_MAX;
	bucket_refill_to(&mux->stored, rate, rate * STORE_BURST_SECONDS, mux->now);
	double tokens = mux->stored.tokens;
	if (tokens < 0)
		return 0;
	return tokens > STORE_READ_MIN ? (size_t)tokens : (size_t)STORE_READ_MIN;
}

double mux_input_pause(struct mux *mux)
{
	double rate = mux->config.store_rate;
	if (mux->closed)
		return 0;
	double wait = 0, frames = frames_spent(mux);
	if (frames > 0)
		wait = frames / mux->config.frame_rate;
	if (rate > 0) {
		bucket_refill_to(&mux->stored, rate, rate * STORE_BURST_SECONDS, mux->now);
		if (mux->stored.tokens < 0 && -mux->stored.tokens / rate > wait)
			wait = -mux->stored.tokens / rate;
	}
	if (wait <= 0)
		return 0;
	mux->stats.input_pauses++;
	return mux->now + wait;
}

/* Rapid reset (the shape of CVE-2023-44487), widened: a stream the peer starts and that ends
 * before any DATA was delivered on it costs us an open (or a refusal, or a held frame) and the
 * peer nothing. Counted are streams the peer opens and ends itself (CLOSE or ERROR) before it
 * sends DATA, opens we refuse (an ERROR answers the HANDSHAKE: no such service, no budget
 * left, not allowed), and ids the peer sent DATA or CLOSE for whose HANDSHAKE never came
 * (docs/PROTOCOL.md 3.1). A bucket of reset_rate a second; once it is empty the connection
 * is closed with a goodbye. */
static void count_wasted_open(struct mux *mux, const char *what)
{
	if (mux->closed)
		return;
	mux->stats.streams_reset_empty++;
	if (bucket_take(&mux->reset, mux->config.reset_rate, mux->now))
		return;
	log_write(mux->config.log, LOG_WARN, "mux", "conn=%u peer=%s %s faster than %.0f a second "
		  "(rapid reset): closing", mux->config.id, mux->config.peer, what, mux->config.reset_rate);
	if (!mux->closed)
		mux->peer_at_fault = true;
	mux_fail_saying(mux, WH_ELIMIT, "too many streams opened and ended without data");
}

static void count_empty_stream(struct mux *mux, const struct mux_stream *s)
{
	if (s->peer_opened && s->stats.frames_in == 0)
		count_wasted_open(mux, "opens and ends streams without data");
}

/* A stream reset less than EARLY_RESET_SECONDS after it opened ended early, whatever it
 * carried: HANDSHAKE, one byte of DATA, ERROR ran at 710,000 streams a second, each costing
 * us an open and the peer 45 bytes, for as long as the peer liked. A second is far above the
 * microseconds such a stream lives, and a peer that holds each one longer is bounded by its
 * share of the streams (at most that share reset a second). An honest peer resets a stream
 * that young when its app aborts at once or dies: a few, not hundreds a second. */
#define EARLY_RESET_SECONDS 1.0

static bool ended_early(const struct mux *mux, const struct mux_stream *s)
{
	return mux->now - s->stats.opened_at < EARLY_RESET_SECONDS;
}

/* The peer sent ERROR on one of its streams: counted in reset-rate when it carried nothing
 * or ended early. */
static void count_peer_reset(struct mux *mux, const struct mux_stream *s)
{
	if (s->peer_opened && s->stats.frames_in != 0 && ended_early(mux, s))
		count_wasted_open(mux, "resets streams it has just opened");
	else
		count_empty_stream(mux, s);
}

/* PING costs the peer 12 bytes and us an answer. A keep-alive needs one every few seconds;
 * a peer past ping_rate a second (its bucket empty) is closed with a goodbye, as HTTP/2
 * servers do since the ping flood (CVE-2019-9512). False: the connection is closed. */
static bool count_ping(struct mux *mux)
{
	if (bucket_take(&mux->pings, mux->config.ping_rate, mux->now))
		return true;
	log_write(mux->config.log, LOG_WARN, "mux", "conn=%u peer=%s sends PINGs faster than %.0f a "
		  "second: closing", mux->config.id, mux->config.peer, mux->config.ping_rate);
	if (!mux->closed)
		mux->peer_at_fault = true;
	mux_fail_saying(mux, WH_ELIMIT, "too many PINGs");
	return false;
}

/* Frames that do nothing here (credit or an ERROR for a stream that is not open, a CLOSE for
 * one that ended or closed already, an ERROR on stream 0 that is not a goodbye, a PONG nobody
 * asked for, empty DATA, credit beyond what our DATA frames call for) cost us a parse and a lookup and the peer 12 bytes: a flood of them took the
 * broker's core from every other connection (a bulk stream beside one kept a fifth of its
 * speed). A peer that races our close sends a few per finished stream, so the default is
 * generous (10,000 a second, 50,000 at once: an app with that many streams may die at once);
 * a flood sends millions. Past noop_rate a second (its bucket empty) the peer is closed with
 * a goodbye. DATA for a stream that is not open counts too, beyond what the windows of the
 * streams we ended may still bring (count_ended_data). */
static void count_noop(struct mux *mux)
{
	mux->stats.noop_frames++;
	if (mux->closed || bucket_take(&mux->noops, mux->config.noop_rate, mux->now))
		return;
	log_write(mux->config.log, LOG_WARN, "mux", "conn=%u peer=%s sends frames that do nothing "
		  "(credit, errors, CLOSEs or DATA for streams not open, unasked PONGs) faster than %.0f "
		  "a second: closing", mux->config.id, mux->config.peer, mux->config.noop_rate);
	if (!mux->closed)
		mux->peer_at_fault = true;
	mux_fail_saying(mux, WH_ELIMIT, "too many frames that do nothing");
}

/* Our side of the peer's reset-rate. The peer counts the streams we open that end without our
 * DATA (we close or reset them first, or it refuses them) and closes the whole connection
 * once its bucket is empty, with every stream on it: an app of ours that retries an open
 * without a pause would end the link for all the others. So we keep the same count of our
 * own streams and stop opening new ones while our bucket is below OWN_RESET_MARGIN of its
 * burst: the app gets WH_ELIMIT, the link lives. Opens already in flight when the bucket runs
 * low still count at the peer, hence the margin. */
#define OWN_RESET_MARGIN 0.2

static void count_own_wasted_open(struct mux *mux, struct mux_stream *s)
{
	if (s->owner)
		s->owner->wasted++; /* its owner's own count: docs/SECURITY.md, shares per app */
	if (mux->config.reset_rate > 0)
		(void)bucket_take(&mux->own_wasted, mux->config.reset_rate, mux->now);
}

static bool own_opens_allowed(struct mux *mux)
{
	double rate = mux->config.reset_rate;
	if (rate <= 0)
		return true;
	double burst = bucket_refill(&mux->own_wasted, rate, mux->now);
	return mux->own_wasted.tokens >= burst * OWN_RESET_MARGIN;
}

#define CONN_ERRORS_LOGGED 10 /* a peer's stream-0 ERRORs logged per connection, then counted */

static void handle_stream_error(struct mux *mux, const struct frame_header *h, const uint8_t *payload,
				size_t length)
{
	uint32_t code;
	const char *message;
	size_t message_length;
	mux->stats.errors_received++;
	if (frame_parse_error(h, payload, (uint32_t)length, &code, &message, &message_length) != WH_OK)
		return;
	if (h->stream_id == 0) {
		if (mux->conn_errors_logged < CONN_ERRORS_LOGGED) {
			mux->conn_errors_logged++;
			log_write(mux->config.log, LOG_INFO, "mux", "conn=%u peer=%s peer error %u: %.*s%s",
				  mux->config.id, mux->config.peer, code, (int)message_length, message,
				  mux->conn_errors_logged == CONN_ERRORS_LOGGED ? " (more are counted, not logged)" : "");
		}
		if (code == FRAME_ERR_GOING_AWAY)
			mux->going_away = true;
		else
			count_noop(mux);
		return;
	}
	struct mux_stream *s = live_stream(mux, h->stream_id);
	if (!s) {
		mux->stats.dropped_frames++;
		count_noop(mux);
		return;
	}
	if (code == FRAME_ERR_FLOW_CONTROL)
		window_mismatch(mux, false);
	count_peer_reset(mux, s);
	if (!s->peer_opened && s->stats.frames_in == 0)
		count_own_wasted_open(mux, s); /* refused, as the peer counts it (or ended as early) */
	if (mux->closed)
		return;
	s->remote_code = code;
	s->remote_message = malloc(message_length + 1);
	if (s->remote_message) {
		memcpy(s->remote_message, message, message_length);
		s->remote_message[message_length] = '\0';
	}
	stream_finish(s, frame_error_from_code(code));
}

static void handle_close(struct mux *mux, const struct frame_header *h)
{
	struct mux_stream *s = live_stream(mux, h->stream_id);
	struct early_stream *e = s ? NULL : early_find(mux, h->stream_id, true);
	if (e) {
		e->closed = true;
		mux->stats.early_frames++;
		count_held(mux);
		return;
	}
	bool never_opened = !s && early_candidate(mux, h->stream_id);
	if (never_opened) /* every hold in use */
		count_wasted_open(mux, "sends frames for streams it never opens");
	if (!s || s->remote_closed) {
		mux->stats.dropped_frames++;
		if (!never_opened)
			count_noop(mux); /* a stream that ended, or its second CLOSE */
		return;
	}
	count_empty_stream(mux, s);
	if (mux->closed)
		return;
	s->remote_closed = true;
	quiet_remove(s);
	stream_notify(s, EVENT_EOF);
	stream_check_finished(s);
}

static void handle_control(struct mux *mux, const struct frame_event *ev)
{
	const struct frame_header *h = &ev->header;
	uint32_t ping_id;
	switch (h->type) {
	case FRAME_HANDSHAKE:
		handle_handshake(mux, h, ev->payload, ev->payload_length);
		break;
	case FRAME_WINDOW_UPDATE:
		handle_window_update(mux, h, ev->payload);
		break;
	case FRAME_PING:
		if (frame_parse_ping(h, ev->payload, &ping_id) == WH_OK && count_ping(mux)) {
			uint8_t frame[FRAME_HEADER_SIZE + 4];
			control_push(mux, frame, frame_encode_pong(frame, sizeof frame, ping_id));
		}
		break;
	case FRAME_PONG:
		if (frame_parse_pong(h, ev->payload, &ping_id) == WH_OK && mux->ping_outstanding &&
		    ping_id == mux->ping_id) {
			mux->ping_outstanding = false;
			mux->stats.rtt = mux->now - mux->ping_sent_at;
			if (mux->cb.on_pong)
				mux->cb.on_pong(mux, mux->stats.rtt, mux->user);
		} else {
			count_noop(mux); /* nobody asked: a late answer, or a flood */
		}
		break;
	case FRAME_CLOSE:
		handle_close(mux, h);
		break;
	case FRAME_ERROR:
		handle_stream_error(mux, h, ev->payload, ev->payload_length);
		break;
	default:
		break;
	}
}

static void handle_malformed(struct mux *mux, const struct frame_event *ev)
{
	mux->stats.malformed_frames++;
	if (ev->fatal) {
		log_write(mux->config.log, LOG_WARN, "mux", "conn=%u peer=%s fatal malformed frame: %s",
			  mux->config.id, mux->config.peer, ev->error == WH_EPROTOCOL ? "more than 8 malformed frames in a row"
								    : wh_strerror(ev->error));
		if (!mux->closed)
			mux->peer_at_fault = true;
		mux_fail(mux, ev->error);
		return;
	}
	log_write(mux->config.log, LOG_INFO, "mux", "conn=%u peer=%s stream=%u malformed %s frame: %s",
		  mux->config.id, mux->config.peer, ev->header.stream_id, frame_type_name(ev->header.type),
		  wh_strerror(ev->error));
	struct mux_stream *s = live_stream(mux, ev->header.stream_id);
	if (s)
		stream_reset(s, ev->error, wh_strerror(ev->error));
	else if (ev->header.type == FRAME_HANDSHAKE && ev->header.stream_id != 0) {
		send_error_frame(mux, ev->header.stream_id, FRAME_ERR_PROTOCOL, wh_strerror(ev->error));
		/* a refused open like any other: a good frame between two resets the count of
		 * malformed ones in a row, not this one */
		count_wasted_open(mux, "opens streams that are refused");
	}
}

static void input_bytes(struct mux *mux, const uint8_t *data, size_t length)
{
	size_t offset = 0;
	while (offset < length && !mux->closed) {
		struct frame_event ev;
		offset += frame_decoder_feed(&mux->decoder, data + offset, length - offset, &ev);
		if (ev.kind != FRAME_EVENT_NONE && ev.kind != FRAME_EVENT_DATA_CHUNK &&
		    ev.kind != FRAME_EVENT_MALFORMED) {
			mux->stats.frames_in[ev.header.type]++;
			mux->framed.tokens -= 1; /* refilled where it is asked (frames_spent) */
		}
		switch (ev.kind) {
		case FRAME_EVENT_CONTROL:
			handle_control(mux, &ev);
			break;
		case FRAME_EVENT_DATA_HEADER:
			handle_data_header(mux, &ev.header);
			break;
		case FRAME_EVENT_DATA_CHUNK:
			handle_data_chunk(mux, &ev);
			break;
		case FRAME_EVENT_MALFORMED:
			handle_malformed(mux, &ev);
			break;
		case FRAME_EVENT_NONE:
			break;
		}
	}
}

int mux_input(struct mux *mux, const uint8_t *data, size_t length, double now)
{
	mux->now = now;
	mux->stats.bytes_in += length;
	/* Calls the stream owners make from inside (an io noticing a corrupt ring resets its
	 * stream) must not run handlers in the middle of a frame: hold dispatch until the end. */
	bool was_dispatching = mux->dispatching;
	mux->dispatching = true;
	if (!mux->closed)
		input_bytes(mux, data, length);
	mux->dispatching = was_dispatching;
	mux_dispatch(mux);
	return mux->error;
}

size_t mux_input_direct_span(struct mux *mux, uint8_t **span)
{
	uint32_t remaining = frame_decoder_data_remaining(&mux->decoder);
	struct mux_stream *s = mux->rx_stream_id ? live_stream(mux, mux->rx_stream_id) : NULL;
	*span = NULL;
	if (mux->closed || remaining == 0 || !s || s->released)
		return 0;
	long room = s->io->rx_reserve(s->io_ctx, remaining, span);
	if (room < 0) {
		*span = NULL;
		rx_abandon(mux, s, (int)room, "the stream's receive store failed");
		mux_dispatch(mux);
		return 0;
	}
	return (size_t)room;
}

int mux_input_direct_commit(struct mux *mux, size_t n, double now)
{
	mux->now = now;
	struct mux_stream *s = mux->rx_stream_id ? live_stream(mux, mux->rx_stream_id) : NULL;
	if (!s || n > frame_decoder_data_remaining(&mux->decoder))
		return WH_EINVAL;
	mux->stats.bytes_in += n;
	int error = s->io->rx_commit(s->io_ctx, n);
	s->stats.bytes_in += n;
	mux->stats.data_bytes_in += n;
	frame_decoder_data_consumed(&mux->decoder, (uint32_t)n);
	if (error != WH_OK && frame_decoder_data_remaining(&mux->decoder) > 0)
		rx_abandon(mux, s, error, "the stream's receive store failed");
	else if (error != WH_OK)
		stream_reset(s, error, "the stream's receive store failed");
	if (frame_decoder_data_remaining(&mux->decoder) == 0)
		mux->rx_stream_id = 0;
	stream_notify(s, EVENT_READABLE);
	mux_dispatch(mux);
	return mux->error;
}

void mux_input_eof(struct mux *mux)
{
	int at_boundary = frame_decoder_finish(&mux->decoder);
	mux_fail(mux, at_boundary == WH_OK ? WH_ECONNECTION_CLOSED : WH_EUNEXPECTED_EOF);
	mux_dispatch(mux);
}

/* ---- output ------------------------------------------------------------------------ */

static struct out_frame *out_push(struct mux *mux)
{
	struct out_frame *f = &mux->out[(mux->out_head + mux->out_count) % OUT_RING];
	mux->out_count++;
	memset(f, 0, sizeof *f);
	return f;
}

/* Bytes the stream's source holds that no frame carries yet, or WH_E* when it failed. */
static long stream_unplanned(struct mux_stream *s)
{
	struct iovec iov[2];
	int n = s->io->tx_peek(s->io_ctx, s->tx_planned, iov);
	if (n < 0)
		return n;
	size_t total = 0;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	return (long)total;
}

/* Events queued while planning output reach their handlers from mux_timer, soon: not from
 * inside mux_output_gather, whose caller holds spans into our frames. */
static void dispatch_soon(struct mux *mux)
{
	if (mux->cb.on_timer_changed)
		mux->cb.on_timer_changed(mux, mux->user);
}

/* One frame from the stream at the head of the ready list: the round-robin slice. */
static size_t plan_stream_frame(struct mux *mux, struct mux_stream *s)
{
	long unplanned = stream_unplanned(s);
	if (unplanned < 0) {
		/* frames already planned from it still go out: the io keeps their bytes */
		stream_reset(s, (int)unplanned, "the stream's send source failed");
		dispatch_soon(mux);
		return 0;
	}
	size_t available = (size_t)unplanned;
	struct out_frame *f;
	if (available == 0) {
		if (s->write_closed && !s->close_sent) {
			f = out_push(mux);
			f->kind = OUT_STREAM;
			f->stream = s;
			struct frame_header h = { FRAME_VERSION, FRAME_CLOSE, s->id, 0 };
			frame_header_pack(f->header, &h);
			s->close_sent = true;
			s->pending_frames++;
			s->stats.frames_out++;
			mux->stats.frames_out[FRAME_CLOSE]++;
			if (!s->peer_opened && !s->data_planned)
				count_own_wasted_open(mux, s);
			stream_check_finished(s);
			quiet_start(s);
		}
		return 0;
	}
	size_t n = available < mux->config.max_frame_size ? available : mux->config.max_frame_size;
	if (mux->config.enable_flow_control) {
		if (s->send_credit <= 0) {
			if (!s->stalled) {
				s->stalled = true;
				s->stats.window_stalls++;
				mux->stats.window_stalls++;
			}
			return 0;
		}
		if ((int64_t)n > s->send_credit)
			n = (size_t)s->send_credit;
		s->send_credit -= (int64_t)n;
	}
	f = out_push(mux);
	f->kind = OUT_STREAM;
	f->stream = s;
	f->payload_length = (uint32_t)n;
	frame_encode_data_header(f->header, sizeof f->header, s->id, n);
	s->tx_planned += n;
	mux->planned_data += n;
	note_data(mux, s->id, n);
	s->data_planned = true;
	s->pending_frames++;
	s->stats.frames_out++;
	mux->stats.frames_out[FRAME_DATA]++;
	mux->updates_owed++;
	/* More to send (or a CLOSE to follow): back to the tail, so every stream gets a turn. */
	if (available > n || (s->write_closed && !s->close_sent))
		ready_push(s);
	return n;
}

static void plan_control(struct mux *mux)
{
	size_t control_unplanned = bytebuf_length(&mux->control_out) - mux->control_planned;
	if (control_unplanned && mux->out_count < OUT_RING) {
		struct out_frame *f = out_push(mux);
		f->kind = OUT_CONTROL;
		f->payload_length = (uint32_t)control_unplanned;
		mux->control_planned += control_unplanned;
	}
}

/* How many frames from the head hold bytes of the promised prefix (mux_output_hold): the
 * driver already handed them, as gathered, to a layer that must get the same bytes again
 * (a TLS write to be repeated), so none of them may move. */
static unsigned promised_frames(const struct mux *mux)
{
	size_t offset = 0;
	unsigned i = 0;
	for (; i < mux->out_count && offset < mux->out_promised; i++) {
		const struct out_frame *f = &mux->out[(mux->out_head + i) % OUT_RING];
		size_t header_left = f->kind == OUT_STREAM ? FRAME_HEADER_SIZE - f->header_done : 0;
		offset += header_left + f->payload_length - f->payload_done;
	}
	return i;
}

/* The frame just planned (the ring's last) goes ahead of the frames of other streams that
 * have not started to leave. A frame of its own stream, a control frame (its HANDSHAKE may
 * be there) and one partly written stay ahead of it. */
static void overtake(struct mux *mux)
{
	unsigned at = mux->out_count - 1;
	struct out_frame *small = &mux->out[(mux->out_head + at) % OUT_RING];
	unsigned fixed = promised_frames(mux);
	for (; at > fixed; at--) {
		struct out_frame *f = &mux->out[(mux->out_head + at - 1) % OUT_RING];
		if (f->kind != OUT_STREAM || f->stream == small->stream || f->header_done || f->payload_done)
			break;
		struct out_frame held = *f;
		*f = *small;
		*small = held;
		small = f;
	}
}

/* Past INTERACTIVE_PLAN: the streams near the ready list's head that have a small frame
 * to send (a request, an answer) are planned now, ahead of the bulk frame planned before. */
static void plan_small(struct mux *mux)
{
	struct mux_stream *s = TAILQ_FIRST(&mux->ready), *next;
	for (unsigned looked = 0; s && looked < SMALL_LOOKAHEAD && mux->out_count < OUT_RING;
	     looked++, s = next) {
		next = TAILQ_NEXT(s, ready_link);
		long unplanned = stream_unplanned(s);
		if (unplanned > 0 && unplanned <= (long)SMALL_FRAME) {
			unsigned before = mux->out_count;
			ready_remove(s);
			plan_stream_frame(mux, s);
			if (mux->out_count > before)
				overtake(mux);
		}
	}
}

static void plan_more(struct mux *mux)
{
	plan_control(mux);
	size_t planned = 0;
	/* Interactive beside bulk: bulk frames are planned one at a time, just ahead of the
	 * socket, so that a small frame that comes meanwhile waits behind one of them only. */
	bool interactive = mux_interactive(mux);
	while (!mux->closed && !TAILQ_EMPTY(&mux->ready) && mux->out_count < OUT_RING &&
	       planned < PLAN_BYTES_PER_ROUND && (!interactive || mux->planned_data < INTERACTIVE_PLAN)) {
		struct mux_stream *s = TAILQ_FIRST(&mux->ready);
		ready_remove(s);
		planned += plan_stream_frame(mux, s);
	}
	if (interactive && !mux->closed)
		plan_small(mux);
	/* planning may have queued control frames (a stream whose source failed is reset) */
	plan_control(mux);
}

static int add_spans(struct iovec *iov, int at, int max_iov, const struct iovec *spans, int n,
		     size_t limit)
{
	for (int i = 0; i < n && at < max_iov && limit; i++) {
		size_t len = spans[i].iov_len < limit ? spans[i].iov_len : limit;
		iov[at].iov_base = spans[i].iov_base;
		iov[at].iov_len = len;
		at++;
		limit -= len;
	}
	return at;
}

int mux_output_gather(struct mux *mux, struct iovec *iov, int max_iov)
{
	if (mux->out_count < OUT_RING / 2)
		plan_more(mux);
	mux->gather_pass++;
	size_t control_offset = 0;
	int count = 0;
	for (unsigned i = 0; i < mux->out_count && count < max_iov; i++) {
		struct out_frame *f = &mux->out[(mux->out_head + i) % OUT_RING];
		struct iovec spans[2];
		size_t left = f->payload_length - f->payload_done;
		if (f->kind == OUT_CONTROL) {
			int n = bytebuf_peek(&mux->control_out, control_offset, spans);
			count = add_spans(iov, count, max_iov, spans, n, left);
			control_offset += left;
			continue;
		}
		struct mux_stream *s = f->stream;
		if (f->header_done < FRAME_HEADER_SIZE) {
			iov[count].iov_base = f->header + f->header_done;
			iov[count].iov_len = FRAME_HEADER_SIZE - f->header_done;
			count++;
		}
		if (left == 0)
			continue;
		if (s->gather_pass != mux->gather_pass) {
			s->gather_pass = mux->gather_pass;
			s->gather_offset = 0;
		}
		int n = s->io->tx_peek(s->io_ctx, s->gather_offset, spans);
		if (n < 0) {
			/* The io broke its promise to keep planned bytes: the frame header may be
			 * out already and its payload cannot follow, so the connection ends. */
			mux_fail(mux, WH_ESYSTEM);
			dispatch_soon(mux);
			return 0;
		}
		count = add_spans(iov, count, max_iov, spans, n, left);
		s->gather_offset += left;
	}
	return count;
}

static void frame_written(struct mux *mux, struct out_frame *f)
{
	struct mux_stream *s = f->stream;
	if (f->kind != OUT_STREAM)
		return;
	s->pending_frames--;
	if (s->want_writable && bytebuf_room(&s->tx)) {
		s->want_writable = false;
		stream_notify(s, EVENT_WRITABLE);
	}
	if (s->released || s->finished)
		stream_check_free(s);
	(void)mux;
}

void mux_output_hold(struct mux *mux, size_t n)
{
	if (n > mux->out_promised)
		mux->out_promised = n;
}

void mux_output_advance(struct mux *mux, size_t n)
{
	mux->stats.bytes_out += n;
	mux->out_promised = mux->out_promised > n ? mux->out_promised - n : 0;
	while (n && mux->out_count) {
		struct out_frame *f = &mux->out[mux->out_head];
		if (f->kind == OUT_STREAM && f->header_done < FRAME_HEADER_SIZE) {
			size_t take = FRAME_HEADER_SIZE - f->header_done;
			take = take < n ? take : n;
			f->header_done += (uint8_t)take;
			n -= take;
		}
		size_t take = f->payload_length - f->payload_done;
		take = take < n ? take : n;
		if (take && f->kind == OUT_CONTROL) {
			bytebuf_consume(&mux->control_out, take);
			mux->control_planned -= take;
		} else if (take) {
			f->stream->io->tx_consume(f->stream->io_ctx, take);
			f->stream->tx_planned -= take;
			mux->planned_data -= take;
			f->stream->stats.bytes_out += take;
			mux->stats.data_bytes_out += take;
		}
		f->payload_done += (uint32_t)take;
		n -= take;
		bool header_complete = f->kind == OUT_CONTROL || f->header_done == FRAME_HEADER_SIZE;
		if (!header_complete || f->payload_done < f->payload_length)
			break;
		frame_written(mux, f);
		mux->out_head = (mux->out_head + 1) % OUT_RING;
		mux->out_count--;
	}
	mux_dispatch(mux);
}

bool mux_output_pending(const struct mux *mux)
{
	return mux->out_count || bytebuf_length(&mux->control_out) > mux->control_planned ||
	       (!mux->closed && !TAILQ_EMPTY(&mux->ready));
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

/* Frames held EARLY_HOLD_SECONDS for a HANDSHAKE that never came go. */
static void early_expire(struct mux *mux, double now)
{
	const struct mux_config *c = &mux->config;
	for (unsigned i = 0; i < EARLY_IDS_MAX; i++)
		if (mux->early[i].id && now >= mux->early[i].since + EARLY_HOLD_SECONDS) {
			log_write(c->log, LOG_INFO, "mux", "conn=%u peer=%s stream=%u frames without a HANDSHAKE "
				  "dropped after %.0f s", c->id, c->peer, mux->early[i].id, EARLY_HOLD_SECONDS);
			mux->stats.dropped_frames++;
			early_drop(mux, &mux->early[i]);
			count_wasted_open(mux, "sends frames for streams it never opens");
		}
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
	    config->control_queue_limit < 1024)
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
	mux->next_local_id = client_role ? 1 : 2;
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

static void mux_fail(struct mux *mux, int error)
{
	mux_fail_saying(mux, error, NULL);
}

static void mux_fail_saying(struct mux *mux, int error, const char *message)
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

void mux_drain(struct mux *mux)
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
