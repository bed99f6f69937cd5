/* App streams joined to a mux stream: the mux_stream_io adapter over the two rings, the
 * doorbell, and the stream's life as its app and its mux stream each let go. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "apps_internal.h"
#include "attach_wake.h"

/* ---- streams joined to a mux stream ------------------------------------------------ */

static void shm_free_if_done(struct shm_stream *s)
{
	if (s->client || s->stream)
		return;
	budget_close(s->apps, s->wake_app);
	segment_destroy(s->apps, &s->seg);
	s->apps->stats.streams--;
	free(s);
}

/* The app broke a ring of the stream: counted and logged against the app here; the stream
 * ends (on both sides) through the mux, which the caller tells. Returns WH_ERING_CORRUPT. */
static int shm_corrupted(struct shm_stream *s, const char *which)
{
	s->apps->stats.ring_corruptions++;
	log_write(s->apps->log, LOG_WARN, "apps", "client=%s stream=%llu: the app corrupted its %s ring",
		  s->client ? s->client->id : "-", (unsigned long long)s->handle, which);
	return WH_ERING_CORRUPT;
}

static long io_rx_reserve(void *ctx, size_t want, uint8_t **span)
{
	struct shm_stream *s = ctx;
	struct iovec iov[2];
	int spans;
	*span = NULL;
	long room = ring_producer_reserve(&s->to_app, iov, &spans);
	if (room < 0)
		return shm_corrupted(s, "receive");
	if (spans == 0)
		return 0;
	*span = iov[0].iov_base;
	return (long)(iov[0].iov_len < want ? iov[0].iov_len : want);
}

/* Passes the app's consumption to the mux and asks the app to ring when it consumes more,
 * but only if that consumption could make a WINDOW_UPDATE due: a wake-up per read that
 * carries no news would double the wake-ups of every request and response. Returns false
 * if the app corrupted the ring. */
static bool shm_track_consumption(struct shm_stream *s)
{
	long pending = ring_producer_pending(&s->to_app);
	if (pending < 0)
		return false;
	uint64_t tail = s->to_app.tail_seen;
	if (tail != s->reported_tail && s->stream) {
		mux_stream_consumed(s->stream, (size_t)(tail - s->reported_tail));
		s->reported_tail = tail;
	}
	if (s->stream && (size_t)pending >= mux_stream_consumption_until_update(s->stream)) {
		ring_producer_prepare_wait(&s->to_app);
		/* consumed meanwhile? then the app may not ring: report it now */
		if (ring_producer_pending(&s->to_app) < pending)
			return shm_track_consumption(s);
	}
	return true;
}

static int io_rx_commit(void *ctx, size_t n)
{
	struct shm_stream *s = ctx;
	ring_producer_commit(&s->to_app, n);
	if (s->client)
		s->client->counters.bytes_received += n;
	wake_app(s, ring_producer_wake_needed(&s->to_app), ring_producer_wake_word(&s->to_app));
	return shm_track_consumption(s) ? WH_OK : shm_corrupted(s, "receive");
}

static size_t io_rx_capacity(void *ctx)
{
	return ((struct shm_stream *)ctx)->seg.capacity;
}

static int io_tx_peek(void *ctx, size_t offset, struct iovec out[2])
{
	struct shm_stream *s = ctx;
	int spans;
	/* peek_at keeps the bytes it returned once, whatever the app writes afterwards: the
	 * frames planned from them go out intact */
	if (ring_consumer_peek_at(&s->from_app, offset, out, &spans) < 0)
		return shm_corrupted(s, "send");
	return spans;
}

static void io_tx_consume(void *ctx, size_t n)
{
	struct shm_stream *s = ctx;
	ring_consumer_consume(&s->from_app, n);
	if (s->client)
		s->client->counters.bytes_sent += n;
	/* an app waiting for room is woken once half the ring is free, not at each write the
	 * network took (a frame or a TLS record's worth): a bulk writer was woken every
	 * 70 KiB of a 1 MiB ring, some 15,000 times a second */
	wake_app(s, ring_consumer_wake_needed_with_room(&s->from_app, s->seg.capacity / 2),
		 ring_consumer_wake_word(&s->from_app));
}

static void io_release(void *ctx)
{
	struct shm_stream *s = ctx;
	s->stream = NULL;
	peer_share_stream_gone(s->share); /* the mux gave back what it charged to it */
	s->share = NULL;
	if (s->client) {
		/* The stream is over for the network and the app was told through the ring; the
		 * app holds its own mapping and descriptors. Ours go now, not when the app gets
		 * round to releasing it (an app that never accepts may never). */
		budget_close(s->apps, s->wake_app); /* the app's end hangs up: the rings say why */
		s->wake_app = -1;
		segment_destroy(s->apps, &s->seg);
		if (s->awaiting_accept) {
			/* Ended before the app took it: it no longer weighs on the app's ring memory
			 * (its opens, the peer's next streams). It keeps its handle and slot until
			 * the app lets go (the library names streams by slot from wh_accept on):
			 * wh_accept returns it, its reads give what came and then the error. */
			s->client->counters.ring_bytes -= s->seg.size;
			s->seg.size = 0;
		}
		return;
	}
	shm_free_if_done(s);
}

static const struct mux_stream_io shm_io = {
	.rx_reserve = io_rx_reserve,
	.rx_commit = io_rx_commit,
	.rx_capacity = io_rx_capacity,
	.tx_peek = io_tx_peek,
	.tx_consume = io_tx_consume,
	.release = io_release,
};

/* What the app did since we last looked: wrote, read, closed, failed. */
static void shm_service(struct shm_stream *s)
{
	for (int pass = 0; pass < 2 && s->stream && !mux_stream_is_finished(s->stream); pass++) {
		struct iovec iov[2];
		int spans, error;
		long held = ring_consumer_peek(&s->from_app, iov, &spans);
		if (held < 0 || !shm_track_consumption(s)) {
			/* not inside a mux callback: the stream can be reset from here */
			mux_stream_reset(s->stream, shm_corrupted(s, held < 0 ? "send" : "receive"),
					 "the app corrupted a ring of the stream");
			return;
		}
		if (held > 0)
			mux_stream_kick(s->stream);
		enum ring_end_state state = ring_consumer_peer_state(&s->from_app, &error);
		if (state == RING_CLOSED && !s->write_close_seen) {
			s->write_close_seen = true;
			mux_stream_close_write(s->stream); /* CLOSE follows the bytes still in the ring */
		} else if (state == RING_FAILED) {
			mux_stream_reset(s->stream, error == WH_ERING_CORRUPT ? WH_ESTREAM_CLOSED : error,
					 "the app aborted the stream");
			return;
		}
		if (pass == 0) {
			/* Ask to be woken for the next write, then look once more so that nothing the
			 * app did in between goes unseen (reads: shm_track_consumption). */
			ring_consumer_prepare_wait(&s->from_app);
		}
	}
}

void on_doorbell(struct ev_loop *loop, ev_io *w, int revents)
{
	struct app_session *c = w->data;
	(void)revents;
	if (!doorbell_take(c))
		ev_io_stop(loop, w); /* the app closed its end: it can ring no more (its loss) */
	for (int pass = 0; pass < 2 && !c->closing; pass++) {
		bool found = false;
		for (uint32_t word = 0; word < c->slot_count / 64 && !c->closing; word++) {
			uint64_t bits = notify_take(c->notify, word);
			while (bits) {
				uint32_t slot = word * 64 + (uint32_t)__builtin_ctzll(bits);
				bits &= bits - 1;
				found = true;
				if (c->slots[slot])
					shm_service(c->slots[slot]);
			}
		}
		if (pass == 0)
			notify_arm(c->notify);
		else if (found)
			pass = -1; /* something came in while we re-armed: go round again */
	}
}

/* Network events become ring states the app sees. */
static void on_mux_event(struct mux_stream *stream, enum mux_stream_event event, void *user)
{
	struct shm_stream *s = user;
	struct ring_segment *header = s->seg.memory;
	if (event == MUX_STREAM_EOF) {
		ring_producer_close(&s->to_app, WH_OK);
		wake_app_both(s);
	} else if (event == MUX_STREAM_ERROR) {
		int error = mux_stream_error(stream);
		header->remote_code = mux_stream_remote_code(stream);
		/* a reset of our own (no remote code) keeps the words apps_stream_ending left */
		if (header->remote_code || !s->end_noted)
			snprintf(header->error_message, sizeof header->error_message, "%s",
				 header->remote_code ? mux_stream_remote_message(stream) : wh_strerror(error));
		ring_producer_close(&s->to_app, error);
		ring_consumer_close(&s->from_app, error);
		wake_app_both(s);
	}
}

void apps_stream_ending(struct mux_stream *stream, const char *message)
{
	struct shm_stream *s = mux_stream_owner(stream, on_mux_event);
	if (!s || !s->seg.memory)
		return;
	struct ring_segment *header = s->seg.memory;
	snprintf(header->error_message, sizeof header->error_message, "%s", message);
	s->end_noted = true;
}

int shm_new(struct apps *apps, struct app_session *c, struct mux_stream *stream, struct shm_stream **out)
{
	*out = NULL;
	uint32_t slot = c->slot_hint;
	for (uint32_t tried = 0; tried < c->slot_count && c->slots[slot]; tried++)
		slot = (slot + 1) % c->slot_count;
	if (c->slots[slot])
		return WH_ELIMIT; /* session_admit keeps streams below the slot count: not reached */
	struct shm_stream *s = calloc(1, sizeof *s);
	if (!s)
		return WH_ENOMEM;
	s->h.kind = HANDLE_STREAM;
	s->apps = apps;
	s->created = ev_now(apps->loop);
	s->handle = ++apps->next_handle;
	s->seg.memfd = -1;
	int error = stream_table_insert(&apps->handles, s->handle, &s->h);
	s->wake_app = -1;
	if (error == WH_OK)
		error = segment_create(apps, &s->seg, apps->config.ring_capacity, s->handle);
	if (error != WH_OK) {
		log_write(apps->log, error == WH_EDESCRIPTORS ? LOG_INFO : LOG_WARN, "apps",
			  "client=%s stream set-up failed: %s", c->id, wh_strerror(error));
		if (stream_table_find(&apps->handles, s->handle) == &s->h)
			stream_table_remove(&apps->handles, s->handle);
		segment_destroy(apps, &s->seg);
		free(s);
		return error;
	}
	s->slot = slot;
	c->slots[slot] = s;
	c->slot_hint = (slot + 1) % c->slot_count;
	ring_producer_attach(&s->to_app, s->seg.memory, s->seg.capacity, APP_RX_RING);
	ring_consumer_attach(&s->from_app, s->seg.memory, s->seg.capacity, APP_TX_RING);
	ring_consumer_prepare_wait(&s->from_app);
	s->client = c;
	s->stream = stream;
	LIST_INSERT_HEAD(&c->shm_streams, s, link);
	c->counters.streams++;
	c->counters.ring_bytes += s->seg.size;
	apps->stats.streams++;
	mux_stream_set_io(stream, &shm_io, s);
	mux_stream_set_handler(stream, on_mux_event, s);
	*out = s;
	return WH_OK;
}

void shm_handed_over(struct shm_stream *s)
{
	segment_drop_fd(s->apps, &s->seg);
}

void shm_take_app_pipe(struct app_session *c, uint64_t handle, int fd)
{
	struct apps *apps = c->apps;
	int type = 0, domain = 0;
	socklen_t length = sizeof type;
	bool seqpacket = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == SOCK_SEQPACKET;
	length = sizeof domain;
	if (!seqpacket || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) < 0 || domain != AF_UNIX) {
		apps->stats.protocol_errors++;
		log_write(apps->log, LOG_WARN, "apps", "client=%s stream=%llu: STREAM_FD brought something "
			  "other than a Unix SOCK_SEQPACKET socket; ignored", c->id, (unsigned long long)handle);
		close(fd);
		return;
	}
	struct app_handle *h = stream_table_find(&apps->handles, handle);
	struct shm_stream *s = h && h->kind == HANDLE_STREAM ? (struct shm_stream *)h : NULL;
	if (!s || s->client != c || !s->seg.memory) {
		/* gone, or let go of by the network already: closing the write end is the news
		 * (the app's read end hangs up, the rings say why); a handle of a same-host stream
		 * or of another app gets nothing */
		close(fd);
		return;
	}
	if (!fd_budget_take(apps->fds, 1, FD_USE_STREAM)) {
		close(fd);
		log_write(apps->log, LOG_INFO, "apps", "client=%s stream=%llu: no descriptor for the "
			  "app's wake-up pipe: the stream ends", c->id, (unsigned long long)handle);
		if (s->stream)
			mux_stream_reset(s->stream, WH_EDESCRIPTORS, "the broker is out of descriptors");
		return;
	}
	budget_close(apps, s->wake_app); /* asked twice: the newer socket replaces the older */
	s->wake_app = fd;
	shutdown(fd, SHUT_RD); /* we only send: nothing the app sends can queue here */
	/* News posted before the socket came and not yet taken by the app is told now, as at any
	 * wake-up (the library itself sends one for news it had taken already). Every send is
	 * MSG_DONTWAIT: the app may have made the socket blocking and filled it. */
	if (notify_posted(c->notify, c->slot_count, s->slot))
		wake_send(s->wake_app);
}

void shm_unlink_client(struct shm_stream *s)
{
	struct app_session *c = s->client;
	LIST_REMOVE(s, link);
	stream_table_remove(&s->apps->handles, s->handle);
	if (s->awaiting_accept)
		c->counters.unaccepted--;
	c->counters.streams--;
	c->counters.ring_bytes -= s->seg.size;
	c->slots[s->slot] = NULL;
	s->client = NULL;
}

void shm_detach_client(struct shm_stream *s, int error, const char *why)
{
	shm_unlink_client(s);
	if (!s->stream) {
		shm_free_if_done(s);
		return;
	}
	/* The mux frees s through io_release, now or once the last frame is written: s must
	 * not be touched after these calls. Release sends CLOSE after the bytes in the ring;
	 * after a reset it only lets the stream be freed. */
	struct mux_stream *stream = s->stream;
	if (error != WH_OK) {
		mux_stream_reset(stream, error, why);
	} else {
		/* Bytes the app left unread in its ring are discarded: return their credit, so the
		 * peer's writes still complete (docs/PROTOCOL.md section 5). Counted from our own
		 * head, never from positions the app can write. */
		uint64_t unread = s->to_app.head - s->reported_tail;
		s->reported_tail = s->to_app.head;
		if (unread)
			mux_stream_consumed(stream, (size_t)unread);
	}
	mux_stream_release(stream);
}

bool apps_stream_owner(const struct apps *apps, const struct mux_stream *stream,
		       struct apps_stream_info *info)
{
	(void)apps;
	struct shm_stream *s = mux_stream_owner(stream, on_mux_event);
	if (!s || !s->client)
		return false;
	/* the app writes the ring's tail: a bad one reads as empty here, and the data path is
	 * what reports it */
	long fill = ring_producer_pending(&s->to_app);
	*info = (struct apps_stream_info){
		.session_id = s->client->id,
		.pid = s->client->pid,
		.uid = (long)s->client->uid,
		.ring_capacity = s->seg.capacity,
		.ring_fill = fill > 0 ? (uint64_t)fill : 0,
		.age = ev_now(s->apps->loop) - s->created,
	};
	return true;
}
