/* The mux's scheduler: frames planned from the ready streams in turn, small frames ahead of
 * bulk on an interactive connection, gathered into iovecs and advanced as they are written. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "bytebuf.h"
#include "mux_internal.h"

#define PLAN_BYTES_PER_ROUND (512u * 1024u) /* DATA planned per gather: bounds the iovecs */
/* Interactive beside bulk (docs/BROKER.md, "Writing and scheduling"): a DATA frame this
 * small is a request or an answer, one this large a bulk transfer's; a connection that
 * carried both, on different streams, within INTERACTIVE_SECONDS keeps its queues short. */
#define SMALL_FRAME 4096u
#define LARGE_FRAME (16u * 1024u)
#define INTERACTIVE_SECONDS 1.0
#define INTERACTIVE_PLAN (32u * 1024u) /* DATA planned ahead of the socket, then: a frame */
#define SMALL_LOOKAHEAD 16u /* streams of the ready list looked at for a small frame */

/* ---- output ------------------------------------------------------------------------ */

/* Small DATA on one stream and large DATA on another, either way, make the connection
 * interactive for a while: no flag from the app, and a lone bulk stream (whose window's
 * last frame may be small) never counts. */
void note_data(struct mux *mux, uint32_t id, size_t n)
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

/* The stream has no byte left to plan: its CLOSE, once the owner closed it for writing. */
static void plan_close(struct mux *mux, struct mux_stream *s)
{
	if (!s->write_closed || s->close_sent)
		return;
	struct out_frame *f = out_push(mux);
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
	if (available == 0) {
		plan_close(mux, s);
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
	struct out_frame *f = out_push(mux);
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
