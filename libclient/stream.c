/* Streams: shared-memory rings, wake-ups, reads and writes with deadlines. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attach_wake.h"
#include "futex.h"
#include "internal.h"

/* Frees what this side holds of a stream (the caller tells the broker). */
static void stream_free(struct wh_stream *s)
{
	munmap(s->segment, s->segment_size);
	if (s->fd >= 0)
		close(s->fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int stream_from_message(struct wh_client *c, const struct attach_msg *msg, const int fds[ATTACH_MAX_FDS],
			struct wh_stream **out)
{
	struct stat st;
	unsigned nfds = attach_fd_count(msg);
	struct wh_stream *s = calloc(1, sizeof *s);
	size_t size = ring_segment_size(msg->ring_capacity);
	if (!s || fstat(fds[0], &st) < 0 || (size_t)st.st_size != size ||
	    (msg->slot != ATTACH_NO_SLOT && msg->slot >= c->slots)) {
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		int error = s ? WH_EPROTOCOL : WH_ENOMEM;
		free(s);
		return error;
	}
	void *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	int map_errno = errno;
	close(fds[0]); /* the mapping stays; the descriptor is not needed any more */
	if (memory == MAP_FAILED) {
		/* each stream is one mapping: past vm.max_map_count (65530 unless raised) mmap
		 * says ENOMEM with memory to spare */
		snprintf(c->detail, sizeof c->detail, "cannot map stream %llu's segment: %s (each stream "
			 "is one mapping; vm.max_map_count bounds them)", (unsigned long long)msg->handle,
			 strerror(map_errno));
		for (unsigned i = 1; i < nfds; i++)
			close(fds[i]);
		free(s);
		return map_errno == ENOMEM ? WH_ENOMEM : WH_ESYSTEM;
	}
	if (ring_segment_check(memory, size) != WH_OK ||
	    ((struct ring_segment *)memory)->capacity != msg->ring_capacity) {
		munmap(memory, size);
		for (unsigned i = 1; i < nfds; i++)
			close(fds[i]);
		free(s);
		return WH_EPROTOCOL;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->client = c;
	s->handle = msg->handle;
	s->segment = memory;
	s->segment_size = size;
	s->local = nfds == 2;
	s->fd = s->local ? fds[1] : -1;
	s->slot = msg->slot;
	const char *spin = getenv("WH_SPIN_NS");
	s->spin_ns = spin ? atoll(spin) : 0;
	ring_producer_attach(&s->tx, memory, msg->ring_capacity, msg->tx_ring);
	ring_consumer_attach(&s->rx, memory, msg->ring_capacity, msg->tx_ring ^ 1u);
	snprintf(s->service, sizeof s->service, "%s", msg->service);
	snprintf(s->peer, sizeof s->peer, "%s", msg->peer);
	pthread_mutex_lock(&c->streams_lock);
	int rc = WH_OK;
	if (s->slot != ATTACH_NO_SLOT && c->by_slot[s->slot])
		rc = WH_EPROTOCOL; /* the broker gave one slot to two streams */
	if (rc == WH_OK)
		rc = client_wait_add(c, s);
	if (rc == WH_OK) {
		s->next = c->streams;
		if (c->streams)
			c->streams->prev = s;
		c->streams = s;
		if (s->slot != ATTACH_NO_SLOT)
			c->by_slot[s->slot] = s;
		/* news that came before it was mapped set no bit we could see: a new stream is
		 * reported once, and the app's first call on it looks */
		client_ready_add(c, s);
	}
	pthread_mutex_unlock(&c->streams_lock);
	if (rc != WH_OK) {
		stream_free(s); /* the caller hands it back (RELEASE), as for any failure here */
		return rc;
	}
	*out = s;
	return WH_OK;
}

/* Wakes the other end, which announced `flags` (RING_WAIT_*) on the ring: a same-host
 * partner's thread that sleeps in a call on `word` (futex), else the partner on the stream's
 * socket; the broker through the client's doorbell (only when the broker is not already busy
 * with us). Never blocks, whatever the other side did to its end (shared/attach_wake.h). */
static void wake_peer(struct wh_stream *s, uint32_t flags, uint32_t *word)
{
	if (s->local && (flags & RING_WAIT_SLEEPER))
		futex_wake_shared(word);
	else if (s->local)
		wake_send(s->fd);
	else if (notify_ring(s->client->notify, s->client->slots, s->slot))
		client_ring(s->client);
}

/* The stream's state changed (end, abort, close): whoever waits in either direction. */
static void wake_peer_both(struct wh_stream *s)
{
	uint32_t reader = ring_producer_wake_needed(&s->tx), writer = ring_consumer_wake_needed(&s->rx);
	if (s->local && (reader & RING_WAIT_SLEEPER))
		futex_wake_shared(ring_producer_wake_word(&s->tx));
	if (s->local && (writer & RING_WAIT_SLEEPER))
		futex_wake_shared(ring_consumer_wake_word(&s->rx));
	wake_peer(s, RING_WAIT_NEWS, NULL); /* and its event loop, or the broker, always */
}

static bool rx_has_news(struct wh_stream *s)
{
	struct iovec iov[2];
	int spans, error;
	return ring_consumer_peek(&s->rx, iov, &spans) != 0 ||
	       ring_consumer_peer_state(&s->rx, &error) != RING_OPEN;
}

static bool tx_has_room(struct wh_stream *s)
{
	struct iovec iov[2];
	int spans;
	return ring_producer_reserve(&s->tx, iov, &spans) != 0;
}

/* Would the other direction's call get further now? Asked by one direction's thread about the
 * other's while that one may be inside a call: only the ring's shared words are read (the
 * other side's own cursor is its thread's), so a hostile value makes at most a wrong hint. */
static bool rx_news_hint(struct wh_stream *s)
{
	const struct ring_ctl *ctl = s->rx.ctl;
	return atomic_load_explicit(&ctl->head, memory_order_acquire) !=
		       atomic_load_explicit(&ctl->tail, memory_order_relaxed) ||
	       atomic_load_explicit(&ctl->producer_state, memory_order_acquire) != RING_OPEN;
}

static bool tx_news_hint(struct wh_stream *s)
{
	const struct ring_ctl *ctl = s->tx.ctl;
	uint64_t head = atomic_load_explicit(&ctl->head, memory_order_relaxed);
	return head - atomic_load_explicit(&ctl->tail, memory_order_acquire) < s->tx.capacity ||
	       atomic_load_explicit(&ctl->consumer_state, memory_order_acquire) != RING_OPEN;
}

/*
 * Takes the stream's news: off the client's ready list (wh_client_wait stops reporting it)
 * and, if it has a descriptor of its own, the wake-ups pending on it; true if there was any.
 * One descriptor serves both directions, so a wake-up taken here may be the one the other
 * direction is owed: when that direction returned WH_EWOULDBLOCK and could go on now, the
 * wake-ups are left, and the descriptor stays readable until the app retries it (taking
 * them all lost such wake-ups: an app that polled with no timeout slept for ever). Each is
 * looked at before it is taken, and the one that readied the other direction was sent after
 * it did, so a wake-up that arrives meanwhile is never taken unseen. A hang-up (the other
 * end let go of the stream, or died) counts as a wake-up that never goes away.
 * The other direction may be another thread's, in a call now. A non-blocking call says it
 * wants wake-ups (want_*) here, under the lock, before its last look at the ring: a drain
 * that finds the flag clear (under the lock too) runs before that look, so the wake-ups it
 * takes were sent before it and cannot be owed to it; one that finds it set looks at each
 * wake-up before it takes it, as above.
 */
static bool drain(struct wh_stream *s, bool reading)
{
	bool had_news = client_ready_take(s->client, s);
	/* A blocking call on a same-host stream sleeps on the ring's word, where its partner
	 * wakes it: the socket has only the odd wake-up at a state change, and its hang-up,
	 * which wait_for_news looks for after each slice. One system call less per wait. */
	int fd = s->fd;
	bool nonblocking = atomic_load_explicit(&s->nonblocking, memory_order_relaxed);
	if (fd < 0 || (s->local && !nonblocking))
		return had_news;
	_Atomic bool *other_wants = reading ? &s->want_write : &s->want_read;
	enum wake_state state = WAKE_NONE;
	pthread_mutex_lock(&s->lock);
	if (!atomic_load_explicit(other_wants, memory_order_relaxed)) {
		state = wake_take(fd);
	} else {
		/* bounded: a partner that keeps sending cannot keep us here */
		for (int taken = 0; taken < 64; taken++) {
			enum wake_state next = wake_peek(fd);
			if (next != WAKE_TAKEN ||
			    (atomic_load(other_wants) && (reading ? tx_news_hint(s) : rx_news_hint(s)))) {
				state = next == WAKE_NONE ? state : next;
				break;
			}
			wake_take_one(fd);
			state = WAKE_TAKEN;
		}
	}
	if (nonblocking) /* cleared when the call returns anything but WH_EWOULDBLOCK */
		atomic_store_explicit(reading ? &s->want_read : &s->want_write, true, memory_order_relaxed);
	pthread_mutex_unlock(&s->lock);
	if (state == WAKE_HUNG_UP)
		atomic_store_explicit(&s->hung_up, true, memory_order_relaxed);
	return had_news || state != WAKE_NONE;
}

/* The other end hung up a stream whose rings still say open: the broker died (or dropped the
 * session), or a same-host partner let go without saying so in the rings (the broker marks
 * them before it hangs up a partner that died). Returns the error to report, or WH_OK when
 * the rings have the last word. */
static int hangup_error(struct wh_stream *s, bool reading)
{
	int error;
	if (!s->hung_up)
		return WH_OK;
	if (s->local) /* the direction we wait on can never go on */
		return (reading ? ring_consumer_peer_state(&s->rx, &error)
				: ring_producer_peer_state(&s->tx, &error)) == RING_OPEN ? WH_EAPP_GONE : WH_OK;
	if (client_broker_gone(s->client))
		return WH_EBROKER_GONE;
	/* the session lives: the broker let go of this stream after writing its final state,
	 * which the caller reads from the rings; if it did not, the stream cannot go on */
	if (ring_consumer_peer_state(&s->rx, &error) == RING_OPEN &&
	    ring_producer_peer_state(&s->tx, &error) == RING_OPEN)
		return WH_EBROKER_GONE;
	return WH_OK;
}

/*
 * A reply is often microseconds away while a wake-up costs tens of them (docs/ATTACH.md), so
 * a blocking call may first watch the ring for a while (wh_set_spin). It does so before it
 * announces the wait: news that arrives meanwhile then costs neither side a system call (the
 * other side signals only a waiter that announced itself). True if news came in time.
 */
static bool spin_for_news(struct wh_stream *s, bool reading, int64_t deadline)
{
	int64_t spin_ns = atomic_load_explicit(&s->spin_ns, memory_order_relaxed);
	if (!spin_ns || atomic_load_explicit(&s->nonblocking, memory_order_relaxed))
		return false;
	int64_t until = wh_now_ns() + spin_ns;
	if (deadline && deadline < until)
		until = deadline;
	do {
		if (reading ? rx_has_news(s) : tx_has_room(s))
			return true;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause(); /* spare the sibling hardware thread */
#endif
	} while (wh_now_ns() < until);
	return false;
}

/* How long a thread sleeps on a ring's wait word before it looks whether the broker is
 * still there: a broker that dies wakes nobody's futex (its hang-up shows on the socket). */
#define SLEEP_SLICE_NS (200 * 1000000LL)

/* Announces that the caller waits (reading: for bytes or the end, else for room): a blocking
 * call as a sleeper on the ring's word, a non-blocking one as a waiter on descriptors. The
 * caller looks at the ring once more before it waits. */
static void announce_wait(struct wh_stream *s, bool reading)
{
	bool sleeper = !atomic_load_explicit(&s->nonblocking, memory_order_relaxed);
	if (reading && sleeper)
		ring_consumer_prepare_sleep(&s->rx);
	else if (reading)
		ring_consumer_prepare_wait(&s->rx);
	else if (sleeper)
		ring_producer_prepare_sleep(&s->tx);
	else
		ring_producer_prepare_wait(&s->tx);
}

/* Sleeps on the ring's wait word until the stream has news, the deadline passes, or (a
 * stream to a peer broker) the broker goes away. A same-host partner wakes the word itself,
 * and the broker does when the partner leaves or dies (after marking the rings); after each
 * slice the caller also looks for a hang-up of the stream's socket (the partner died while
 * the broker was gone). */
static int wait_for_news(struct wh_stream *s, bool reading, int64_t deadline)
{
	int64_t left = -1;
	if (deadline) {
		left = deadline - wh_now_ns();
		if (left <= 0)
			return WH_ETIMEOUT;
	}
	uint32_t *word = reading ? ring_consumer_wait_word(&s->rx) : ring_producer_wait_word(&s->tx);
	int64_t slice = left >= 0 && left < SLEEP_SLICE_NS ? left : SLEEP_SLICE_NS;
	int rc = futex_wait_shared(word, RING_WAIT_NEWS | RING_WAIT_SLEEPER, slice);
	if (rc == ETIMEDOUT && s->local && wake_hung_up(s->fd))
		s->hung_up = true; /* the caller says why */
	/* A same-host stream needs no broker to move its bytes, but docs/ATTACH.md promises every
	 * blocked call WH_EBROKER_GONE once the broker is gone: it alone would tell of the
	 * partner's death now, so a wait could otherwise last for ever. */
	if (rc == ETIMEDOUT && client_broker_gone(s->client))
		return WH_EBROKER_GONE;
	if (rc != 0 && rc != ETIMEDOUT && rc != EINTR)
		return WH_ESYSTEM;
	return WH_OK; /* the caller looks again */
}

/* Records why the stream ended, with the remote's code and message when there is one. */
static int stream_fail(struct wh_stream *s, int error)
{
	/* both directions may fail at once: the first error stays, its message written
	 * before the error is (wh_stream_error reads them in the other order) */
	pthread_mutex_lock(&s->lock);
	if (atomic_load_explicit(&s->error, memory_order_relaxed) == WH_OK) {
		const struct ring_segment *header = s->segment;
		snprintf(s->message, sizeof s->message, "%.*s", (int)sizeof header->error_message,
			 header->error_message[0] ? header->error_message : wh_strerror(error));
		atomic_store_explicit(&s->error, error, memory_order_release);
	}
	pthread_mutex_unlock(&s->lock);
	return atomic_load_explicit(&s->error, memory_order_relaxed);
}

static int check_gone(struct wh_stream *s)
{
	if (atomic_load_explicit(&s->client->broker_gone, memory_order_relaxed))
		return stream_fail(s, WH_EBROKER_GONE);
	return atomic_load_explicit(&s->error, memory_order_acquire);
}

/* Readable bytes as spans, waiting if allowed: > 0 bytes, 0 at EOF, or an error. */
static long read_spans_loop(struct wh_stream *s, struct iovec iov[2], int *spans)
{
	bool spun = false;
	for (;;) {
		int error = check_gone(s);
		if (error)
			return error;
		long held = ring_consumer_peek(&s->rx, iov, spans);
		if (held != 0)
			return held < 0 ? stream_fail(s, held) : held;
		int peer_error;
		enum ring_end_state state = ring_consumer_peer_state(&s->rx, &peer_error);
		if (state != RING_OPEN) {
			/* Bytes committed before the state change are visible now: look once more. */
			held = ring_consumer_peek(&s->rx, iov, spans);
			if (held != 0)
				return held < 0 ? stream_fail(s, held) : held;
			return state == RING_CLOSED ? 0 : stream_fail(s, peer_error);
		}
		if (!spun) {
			spun = true;
			if (spin_for_news(s, true, s->read_deadline))
				continue;
		}
		bool woken = drain(s, true);
		if ((error = hangup_error(s, true)) != WH_OK)
			return stream_fail(s, error);
		announce_wait(s, true);
		if (ring_consumer_peek(&s->rx, iov, spans) != 0 ||
		    ring_consumer_peer_state(&s->rx, &peer_error) != RING_OPEN)
			continue;
		if (atomic_load_explicit(&s->nonblocking, memory_order_relaxed)) {
			/* Nothing to read and no wake-up: is that because the broker died? (A poll on
			 * wh_stream_fd wakes for its hang-up too.) */
			if (!woken && client_broker_gone(s->client))
				return stream_fail(s, WH_EBROKER_GONE);
			return WH_EWOULDBLOCK; /* want_read is set (drain) */
		}
		error = wait_for_news(s, true, s->read_deadline);
		if (error)
			return error == WH_EBROKER_GONE ? stream_fail(s, error) : error;
	}
}

/* want_read is set while a non-blocking read that returned WH_EWOULDBLOCK is owed its
 * wake-up, from the drain before its last look on (see drain). */
static long read_spans(struct wh_stream *s, struct iovec iov[2], int *spans)
{
	if (atomic_load_explicit(&s->want_read, memory_order_relaxed))
		atomic_store_explicit(&s->want_read, false, memory_order_relaxed);
	long held = read_spans_loop(s, iov, spans);
	if (held != WH_EWOULDBLOCK && atomic_load_explicit(&s->want_read, memory_order_relaxed))
		atomic_store_explicit(&s->want_read, false, memory_order_relaxed);
	return held;
}

static void after_consume(struct wh_stream *s)
{
	uint32_t flags = ring_consumer_wake_needed(&s->rx);
	if (flags)
		wake_peer(s, flags, ring_consumer_wake_word(&s->rx));
}

long wh_read(wh_stream *s, void *buf, size_t len)
{
	if (!s || (!buf && len))
		return WH_EINVAL;
	struct iovec iov[2];
	int spans;
	long held = read_spans(s, iov, &spans);
	if (held <= 0)
		return held;
	size_t done = 0;
	for (int i = 0; i < spans && done < len; i++) {
		size_t take = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		memcpy((uint8_t *)buf + done, iov[i].iov_base, take);
		done += take;
	}
	ring_consumer_consume(&s->rx, done);
	after_consume(s);
	return (long)done;
}

long wh_read_peek(wh_stream *s, const void **data)
{
	if (!s || !data)
		return WH_EINVAL;
	struct iovec iov[2];
	int spans;
	long held = read_spans(s, iov, &spans);
	*data = held > 0 ? iov[0].iov_base : NULL;
	return held > 0 ? (long)iov[0].iov_len : held;
}

int wh_read_consume(wh_stream *s, size_t n)
{
	struct iovec iov[2];
	int spans;
	if (!s)
		return WH_EINVAL;
	long held = ring_consumer_peek(&s->rx, iov, &spans);
	if (held < 0)
		return stream_fail(s, (int)held);
	if (n > (size_t)held)
		return WH_EINVAL;
	ring_consumer_consume(&s->rx, n);
	after_consume(s);
	return WH_OK;
}

/* Room to write as spans, waiting if allowed: > 0 bytes, or an error. */
static long write_spans_loop(struct wh_stream *s, struct iovec iov[2], int *spans)
{
	bool spun = false;
	for (;;) {
		int error = check_gone(s);
		if (error)
			return error;
		if (atomic_load_explicit(&s->write_closed, memory_order_relaxed))
			return WH_ESTREAM_CLOSED;
		int peer_error;
		enum ring_end_state reader = ring_producer_peer_state(&s->tx, &peer_error);
		if (reader == RING_FAILED)
			return stream_fail(s, peer_error);
		if (reader == RING_CLOSED)
			return WH_ESTREAM_CLOSED; /* the reader closed: wh_write discards, see there */
		long room = ring_producer_reserve(&s->tx, iov, spans);
		if (room != 0)
			return room < 0 ? stream_fail(s, room) : room;
		if (!spun) {
			spun = true;
			if (spin_for_news(s, false, s->write_deadline))
				continue;
		}
		bool woken = drain(s, false);
		if ((error = hangup_error(s, false)) != WH_OK)
			return stream_fail(s, error);
		announce_wait(s, false);
		if (ring_producer_reserve(&s->tx, iov, spans) != 0)
			continue;
		if (atomic_load_explicit(&s->nonblocking, memory_order_relaxed)) {
			if (!woken && client_broker_gone(s->client))
				return stream_fail(s, WH_EBROKER_GONE);
			return WH_EWOULDBLOCK; /* want_write is set (drain) */
		}
		error = wait_for_news(s, false, s->write_deadline);
		if (error)
			return error == WH_EBROKER_GONE ? stream_fail(s, error) : error;
	}
}

static long write_spans(struct wh_stream *s, struct iovec iov[2], int *spans)
{
	if (atomic_load_explicit(&s->want_write, memory_order_relaxed))
		atomic_store_explicit(&s->want_write, false, memory_order_relaxed);
	long room = write_spans_loop(s, iov, spans);
	if (room != WH_EWOULDBLOCK && atomic_load_explicit(&s->want_write, memory_order_relaxed))
		atomic_store_explicit(&s->want_write, false, memory_order_relaxed);
	return room;
}

static void after_commit(struct wh_stream *s)
{
	uint32_t flags = ring_producer_wake_needed(&s->tx);
	if (flags)
		wake_peer(s, flags, ring_producer_wake_word(&s->tx));
}

long wh_write(wh_stream *s, const void *buf, size_t len)
{
	if (!s || (!buf && len))
		return WH_EINVAL;
	size_t done = 0;
	while (done < len) {
		struct iovec iov[2];
		int spans;
		long room = write_spans(s, iov, &spans);
		bool nonblocking = atomic_load_explicit(&s->nonblocking, memory_order_relaxed);
		int reader_error;
		if (room == WH_ESTREAM_CLOSED && !atomic_load_explicit(&s->write_closed, memory_order_relaxed) &&
		    ring_producer_peer_state(&s->tx, &reader_error) == RING_CLOSED)
			return (long)len; /* the other end closed its stream: nobody reads, bytes are
					   * discarded and the write completes, as through a broker.
					   * A stream that failed with WH_ESTREAM_CLOSED (closed by
					   * the operator, say) is an error, not this. */
		if (room < 0)
			return done && nonblocking ? (long)done : room;
		size_t before = done;
		for (int i = 0; i < spans && done < len; i++) {
			size_t take = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
			memcpy(iov[i].iov_base, (const uint8_t *)buf + done, take);
			done += take;
		}
		ring_producer_commit(&s->tx, done - before);
		after_commit(s);
		if (nonblocking)
			break;
	}
	return (long)done;
}

long wh_write_reserve(wh_stream *s, void **data)
{
	if (!s || !data)
		return WH_EINVAL;
	struct iovec iov[2];
	int spans;
	long room = write_spans(s, iov, &spans);
	*data = room > 0 ? iov[0].iov_base : NULL;
	return room > 0 ? (long)iov[0].iov_len : room;
}

int wh_write_commit(wh_stream *s, size_t n)
{
	struct iovec iov[2];
	int spans;
	if (!s)
		return WH_EINVAL;
	long room = ring_producer_reserve(&s->tx, iov, &spans);
	if (room < 0)
		return stream_fail(s, (int)room);
	if (n > (spans ? iov[0].iov_len : 0))
		return WH_EINVAL;
	ring_producer_commit(&s->tx, n);
	after_commit(s);
	return WH_OK;
}

int wh_shutdown(wh_stream *s)
{
	if (!s)
		return WH_EINVAL;
	if (atomic_load(&s->write_closed))
		return WH_ESTREAM_CLOSED;
	atomic_store(&s->write_closed, true);
	ring_producer_close(&s->tx, WH_OK);
	wake_peer_both(s);
	return WH_OK;
}

int wh_abort(wh_stream *s, int error)
{
	if (!s)
		return WH_EINVAL;
	if (error >= 0)
		error = WH_ESTREAM_CLOSED;
	atomic_store(&s->write_closed, true);
	s->aborted = true;
	ring_producer_close(&s->tx, error);
	ring_consumer_close(&s->rx, error);
	wake_peer_both(s);
	stream_fail(s, error);
	return WH_OK;
}

int wh_close(wh_stream *s)
{
	if (!s)
		return WH_OK;
	struct wh_client *c = s->client;
	if (!s->write_closed)
		ring_producer_close(&s->tx, WH_OK);
	if (!s->aborted)
		ring_consumer_close(&s->rx, WH_OK);
	wake_peer_both(s);
	/* off the client's books before RELEASE: the broker may give the slot to a new stream
	 * as soon as it reads it */
	pthread_mutex_lock(&c->streams_lock);
	client_wait_remove(c, s);
	if (s->prev)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	if (s->slot != ATTACH_NO_SLOT && s->slot < c->slots && c->by_slot[s->slot] == s)
		c->by_slot[s->slot] = NULL;
	client_ready_remove_locked(c, s);
	pthread_mutex_unlock(&c->streams_lock);
	struct attach_msg release = { .type = ATTACH_RELEASE, .handle = s->handle };
	client_send(c, &release); /* if the broker is gone there is nobody left to tell */
	stream_free(s);
	return WH_OK;
}

int wh_set_nonblocking(wh_stream *s, bool nonblocking)
{
	if (!s)
		return WH_EINVAL;
	atomic_store(&s->nonblocking, nonblocking);
	return WH_OK;
}

int wh_set_spin(wh_stream *s, int64_t spin_ns)
{
	if (!s)
		return WH_EINVAL;
	atomic_store(&s->spin_ns, spin_ns > 0 ? spin_ns : 0);
	return WH_OK;
}

int wh_set_deadline(wh_stream *s, int64_t deadline_ns)
{
	if (!s)
		return WH_EINVAL;
	atomic_store(&s->read_deadline, deadline_ns);
	atomic_store(&s->write_deadline, deadline_ns);
	return WH_OK;
}

int wh_set_read_deadline(wh_stream *s, int64_t deadline_ns)
{
	if (!s)
		return WH_EINVAL;
	atomic_store(&s->read_deadline, deadline_ns);
	return WH_OK;
}

int wh_set_write_deadline(wh_stream *s, int64_t deadline_ns)
{
	if (!s)
		return WH_EINVAL;
	atomic_store(&s->write_deadline, deadline_ns);
	return WH_OK;
}

int wh_stream_fd(wh_stream *s)
{
	/* Made on first use, under the client's lock in case two threads ask at once (the
	 * stream's reader and writer, or wh_client_wait's thread). */
	if (!s)
		return -1;
	struct wh_client *c = s->client;
	pthread_mutex_lock(&c->streams_lock);
	if (s->fd < 0) {
		int pair[2];
		if (wake_pair(pair) < 0) {
			snprintf(c->detail, sizeof c->detail, "cannot make a descriptor for stream %llu: %s",
				 (unsigned long long)s->handle, strerror(errno));
		} else {
			/* News we took already (the stream is on the ready list: new, or reported and
			 * not yet drained) is told here; news the broker posted and we did not take
			 * yet, the broker tells when the socket arrives; after that, every wake-up. */
			if (atomic_load_explicit(&s->ready, memory_order_relaxed))
				wake_send(pair[1]);
			struct attach_msg msg = { .type = ATTACH_STREAM_FD, .handle = s->handle };
			/* If the broker is gone the other end closes here and ours hangs up at once:
			 * the next call on the stream says WH_EBROKER_GONE. */
			client_send_fd(c, &msg, pair[1]);
			close(pair[1]);
			s->fd = pair[0];
		}
	}
	pthread_mutex_unlock(&c->streams_lock);
	return s->fd;
}
uint64_t wh_stream_id(const wh_stream *s) { return s->handle; }
void wh_stream_set_userdata(wh_stream *s, void *userdata) { s->userdata = userdata; }
void *wh_stream_userdata(const wh_stream *s) { return s->userdata; }
const char *wh_stream_service(const wh_stream *s) { return s->service; }
const char *wh_stream_peer(const wh_stream *s) { return s->peer; }

bool wh_stream_is_closed(wh_stream *s)
{
	int error;
	if (check_gone(s) != WH_OK)
		return true;
	enum ring_end_state in = ring_consumer_peer_state(&s->rx, &error);
	if (in == RING_FAILED) {
		stream_fail(s, error);
		return true;
	}
	/* every byte read: asked of the ring's shared words, not the reader's cursor, so that
	 * either direction's thread may ask */
	const struct ring_ctl *ctl = s->rx.ctl;
	return in == RING_CLOSED && atomic_load(&s->write_closed) &&
	       atomic_load_explicit(&ctl->head, memory_order_acquire) == atomic_load(&ctl->tail);
}

int wh_stream_error(wh_stream *s, uint32_t *remote_code, const char **message)
{
	if (!s)
		return WH_EINVAL;
	wh_stream_is_closed(s); /* picks up an error the broker posted meanwhile */
	const struct ring_segment *header = s->segment;
	int error = atomic_load_explicit(&s->error, memory_order_acquire); /* then its message */
	if (remote_code)
		*remote_code = error ? header->remote_code : 0;
	if (message)
		*message = error ? s->message : "";
	return error;
}
