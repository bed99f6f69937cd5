/* The mux's input: the peer's frames decoded and handled, frames held for a HANDSHAKE
 * that has not come, and the rate buckets that bound what the peer may send. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "bytebuf.h"
#include "mux_internal.h"

#define SEND_CREDIT_LIMIT 0x7FFFFFFF        /* credit above this is a flow-control error */

static void count_wasted_open(struct mux *mux, const char *what);

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

/* Frames held EARLY_HOLD_SECONDS for a HANDSHAKE that never came go. */
void early_expire(struct mux *mux, double now)
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

double bucket_burst(double rate)
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

void store_charge(struct mux *mux, size_t n)
{
	double rate = mux->config.store_rate;
	if (rate <= 0)
		return;
	/* refilled up to now first: what the bucket earned before this charge, not after */
	bucket_refill_to(&mux->stored, rate, rate * STORE_BURST_SECONDS, mux->now);
	mux->stored.tokens -= (double)n;
}

void store_refund(struct mux *mux, size_t n)
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

bool ended_early(const struct mux *mux, const struct mux_stream *s)
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
void count_noop(struct mux *mux)
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

void count_own_wasted_open(struct mux *mux, struct mux_stream *s)
{
	if (s->owner)
		s->owner->wasted++; /* its owner's own count: docs/SECURITY.md, shares per app */
	if (mux->config.reset_rate > 0)
		(void)bucket_take(&mux->own_wasted, mux->config.reset_rate, mux->now);
}

bool own_opens_allowed(struct mux *mux)
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
