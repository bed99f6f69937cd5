/* Local apps: the Unix socket they attach to, their listeners, and their shared-memory streams. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "apps.h"
#include "conn.h"
#include "fdbudget.h"
#include "ctlmsg.h"
#include "ring.h"
#include "stream_table.h"

/* Control messages an app may leave unread before it is dropped: one per stream it may hold
 * (a burst of INCOMING) and some room for answers. */
#define SEND_QUEUE_SLACK 256u

/* App rings: the app writes ring 0 and reads ring 1 of a broker-joined stream. */
#define APP_TX_RING 0u
#define APP_RX_RING 1u

struct app_session;

/* One segment: mapped by the broker for its whole life, fds kept to hand over and signal. */
struct segment {
	void *memory;
	size_t size;
	uint32_t capacity;
	int memfd;
};

/* What a handle (the app's name for one of its streams) stands for: O(1) from RELEASE and
 * ACCEPTED to the stream, through apps->handles. */
enum handle_kind { HANDLE_STREAM, HANDLE_PAIR_END };
struct app_handle {
	enum handle_kind kind;
};

/* A stream between an app and a mux stream. */
struct shm_stream {
	struct app_handle h; /* first: apps->handles points here */
	struct apps *apps;
	struct app_session *client; /* NULL once the app let go or died */
	struct mux_stream *stream; /* NULL once the mux freed it */
	uint64_t handle;
	uint32_t slot; /* its bit in the client's doorbell bitmap */
	struct segment seg;
	/* The stream's wake-up pipe: we hold the write end, the app the read end, handed over
	 * with the segment. We wake the app by writing a byte; when we die (or let go of the
	 * stream) the app's end hangs up, so a poll on it learns that as well. */
	int wake_app;
	int wake_app_peer; /* the app's end, until it is handed over */
	struct ring_producer to_app;
	struct ring_consumer from_app;
	uint64_t reported_tail; /* app consumption already passed to the mux */
	bool write_close_seen;
	bool awaiting_accept; /* handed to a listening app that has not accepted it yet */
	LIST_ENTRY(shm_stream) link; /* in its app's list */
};

struct local_pair;

/* One end of a same-host stream, as its app knows it. */
struct pair_end {
	struct app_handle h; /* first: apps->handles points here */
	struct local_pair *pair;
	unsigned end;
	LIST_ENTRY(pair_end) link; /* in its app's list */
};

/* A stream between two local apps: one segment, both apps on it, the broker only watching. */
struct local_pair {
	struct apps *apps;
	struct app_session *ends[2]; /* opener writes ring 0, acceptor ring 1 */
	uint64_t handles[2];
	struct pair_end endpoints[2];
	struct segment seg;
	int efd[2]; /* efd[i]: end i waits on it */
	bool awaiting_accept; /* end 1 (the listener) has not accepted it yet */
};

struct queued {
	size_t length;
	int fds[CTL_MAX_FDS];
	unsigned nfds;
	uint8_t bytes[CTL_MESSAGE_MAX];
};

struct app_session {
	struct apps *apps;
	int fd;
	ev_io reader, writer;
	pid_t pid;
	uid_t uid;
	char id[2 * CTL_CLIENT_ID_SIZE + 1];
	bool welcomed, closing;
	const char *drop_reason; /* set: the loop's next prepare step drops the session */
	unsigned streams;
	unsigned unaccepted; /* streams handed to it as a listener, not yet accepted */
	uint64_t ring_bytes; /* segment bytes of the streams it holds (a local pair counts for both) */
	uint64_t streams_opened, streams_accepted, bytes_sent, bytes_received;
	LIST_HEAD(, shm_stream) shm_streams;
	LIST_HEAD(, pair_end) pair_ends;
	/* the doorbell: the app wakes us through one eventfd and a bitmap of stream slots */
	int doorbell;
	ev_io doorbell_watcher;
	struct notify_segment *notify;
	size_t notify_size;
	struct shm_stream **slots; /* by slot; NULL: free */
	uint32_t slot_count, slot_hint;
	struct queued **queue;
	unsigned queue_head, queue_count, queue_max;
	struct app_session *next; /* in apps->clients, or in apps->dropped once closing */
};

struct listener {
	char service[CTL_STRING_MAX + 1];
	struct app_session *client;
	struct listener *next;
};

struct apps {
	struct ev_loop *loop;
	struct apps_config config;
	const struct log_sink *log;
	struct fd_budget *fds; /* every descriptor an app can make us hold comes from it */
	ev_timer accept_pause; /* accepting paused: no descriptor even to shed a connection */
	apps_find_pool find_pool;
	void *find_ctx;
	int listen_fd;
	bool draining;    /* the broker stops: no new sessions or opens */
	dev_t socket_dev; /* the socket file we made: removed at stop only if it is still ours */
	ino_t socket_ino;
	ev_io acceptor;
	struct app_session *clients;
	/* Dropped sessions wait here until the loop's next prepare step frees them: a drop can
	 * happen deep inside a handler whose callers still hold the pointer. */
	struct app_session *dropped;
	ev_prepare reaper;
	struct listener *listeners;
	struct stream_table handles; /* handle -> struct app_handle, of every app's streams */
	uint64_t next_handle;
	struct apps_stats stats;
};

static void session_drop(struct app_session *c, const char *why);
static void session_drop_later(struct app_session *c, const char *why);

/* ---- segments ---------------------------------------------------------------------- */

/* Descriptors an app can make us hold come from the budget; the kernel's own EMFILE and
 * ENFILE say the same thing. Both become WH_EDESCRIPTORS, never "out of memory". */
static int errno_error(void)
{
	return errno == EMFILE || errno == ENFILE ? WH_EDESCRIPTORS
	       : errno == ENOMEM		  ? WH_ENOMEM
						  : WH_ESYSTEM;
}

/* A non-blocking eventfd from the budget; the descriptor, or a negative WH_E* code. */
static int budget_eventfd(struct apps *apps, enum fd_use use)
{
	if (!fd_budget_take(apps->fds, 1, use))
		return WH_EDESCRIPTORS;
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0) {
		int error = errno_error();
		fd_budget_give(apps->fds, 1);
		return error;
	}
	return fd;
}

static void budget_close(struct apps *apps, int fd)
{
	if (fd < 0)
		return;
	close(fd);
	fd_budget_give(apps->fds, 1);
}

static int segment_create(struct apps *apps, struct segment *seg, uint32_t capacity, uint64_t handle)
{
	uint8_t random[8];
	char name[40];
	randombytes_buf(random, sizeof random); /* names only tell segments apart in /proc */
	snprintf(name, sizeof name, "wormhole-%02x%02x%02x%02x%02x%02x%02x%02x", random[0], random[1],
		 random[2], random[3], random[4], random[5], random[6], random[7]);
	seg->capacity = capacity;
	seg->size = ring_segment_size(capacity);
	if (!fd_budget_take(apps->fds, 1, FD_USE_STREAM))
		return WH_EDESCRIPTORS;
	seg->memfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (seg->memfd < 0) {
		int error = errno_error();
		fd_budget_give(apps->fds, 1);
		return error;
	}
	if (ftruncate(seg->memfd, (off_t)seg->size) < 0 ||
	    fcntl(seg->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return errno_error(); /* the caller's segment_destroy closes it */
	seg->memory = mmap(NULL, seg->size, PROT_READ | PROT_WRITE, MAP_SHARED, seg->memfd, 0);
	if (seg->memory == MAP_FAILED) {
		seg->memory = NULL;
		return WH_ENOMEM;
	}
	return ring_segment_init(seg->memory, seg->size, capacity, handle);
}

/* After the hand-over the mapping is all the broker needs: one descriptor less per stream. */
static void segment_drop_fd(struct apps *apps, struct segment *seg)
{
	budget_close(apps, seg->memfd);
	seg->memfd = -1;
}

static void segment_destroy(struct apps *apps, struct segment *seg)
{
	if (seg->memory)
		munmap(seg->memory, seg->size);
	seg->memory = NULL;
	segment_drop_fd(apps, seg);
}

/* A same-host partner's eventfd. */
static void wake(int efd)
{
	uint64_t one = 1;
	(void)!write(efd, &one, sizeof one); /* a full counter already means "wake up" */
}

/* An app waiting on a stream to a peer broker: one byte into its wake-up pipe. */
static void wake_app(const struct shm_stream *s)
{
	static const char byte = 1;
	if (s->wake_app >= 0) /* a full pipe already means "wake up" (EAGAIN, SIGPIPE ignored) */
		(void)!write(s->wake_app, &byte, 1);
}

/* The wake-up pipe of a stream to a peer broker, from the budget (two descriptors; the
 * app's read end is given back once handed over): ours[0] the write end, ours[1] the read
 * end. WH_OK or a negative WH_E* code. */
static int budget_wake_pipe(struct apps *apps, int ours[2])
{
	int fds[2];
	ours[0] = ours[1] = -1;
	if (!fd_budget_take(apps->fds, 2, FD_USE_STREAM))
		return WH_EDESCRIPTORS;
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		int error = errno_error();
		fd_budget_give(apps->fds, 2);
		return error;
	}
	ours[0] = fds[1];
	ours[1] = fds[0];
	return WH_OK;
}

/* ---- control messages out: never blocking on the app ------------------------------- */

static int send_now(struct app_session *c, const struct queued *q)
{
	struct iovec iov = { (void *)q->bytes, q->length };
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
		struct cmsghdr align;
	} control;
	memset(&control, 0, sizeof control); /* the padding goes to the kernel too */
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (q->nfds) {
		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * q->nfds);
		struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * q->nfds);
		memcpy(CMSG_DATA(cmsg), q->fds, sizeof(int) * q->nfds);
	}
	ssize_t n = sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n == (ssize_t)q->length)
		return WH_OK;
	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? WH_EWOULDBLOCK : WH_ESYSTEM;
}

static void queued_free(struct apps *apps, struct queued *q)
{
	for (unsigned i = 0; i < q->nfds; i++)
		budget_close(apps, q->fds[i]);
	free(q);
}

static void flush_queue(struct app_session *c)
{
	while (c->queue_count) {
		struct queued *q = c->queue[c->queue_head];
		int rc = send_now(c, q);
		if (rc == WH_EWOULDBLOCK) {
			ev_io_start(c->apps->loop, &c->writer);
			return;
		}
		queued_free(c->apps, q); /* sent (the fds are the app's now) or the socket failed */
		c->queue_head = (c->queue_head + 1) % c->queue_max;
		c->queue_count--;
		if (rc != WH_OK) {
			session_drop_later(c, "control socket failed");
			return;
		}
	}
	ev_io_stop(c->apps->loop, &c->writer);
}

/* Sends a message now, or queues it with duplicates of its fds; the caller keeps its own.
 * WH_OK, or why it could not be sent (the session may have been dropped). */
static int session_send(struct app_session *c, const struct ctl_msg *msg, const int *fds, unsigned nfds)
{
	if (c->closing || c->drop_reason)
		return WH_ECONNECTION_CLOSED; /* the session is over: nobody to tell */
	struct queued now = { .nfds = nfds };
	int n = ctl_encode(now.bytes, sizeof now.bytes, msg);
	if (n < 0)
		return n;
	now.length = (size_t)n;
	if (nfds)
		memcpy(now.fds, fds, nfds * sizeof *fds);
	if (c->queue_count == 0) {
		int rc = send_now(c, &now);
		if (rc != WH_EWOULDBLOCK)
			return rc; /* sent, or the socket failed: the reader sees the hang-up */
	}
	if (!c->queue) {
		c->queue_max = c->apps->config.max_streams + SEND_QUEUE_SLACK;
		c->queue = calloc(c->queue_max, sizeof *c->queue);
		if (!c->queue)
			return WH_ENOMEM;
	}
	if (c->queue_count == c->queue_max) {
		/* Not now: callers are in the middle of handing this app a stream. */
		session_drop_later(c, "app does not read its control socket");
		return WH_ELIMIT;
	}
	struct queued *q = malloc(sizeof *q);
	if (!q)
		return WH_ENOMEM;
	*q = now;
	for (unsigned i = 0; i < nfds; i++) {
		/* the reserve may serve: an answer must not fail for want of a descriptor */
		int error = WH_EDESCRIPTORS;
		q->fds[i] = -1;
		if (fd_budget_take(c->apps->fds, 1, FD_USE_ANSWER)) {
			q->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
			if (q->fds[i] < 0) {
				error = errno_error();
				fd_budget_give(c->apps->fds, 1);
			}
		}
		if (q->fds[i] < 0) {
			q->nfds = i;
			queued_free(c->apps, q);
			return error;
		}
	}
	c->queue[(c->queue_head + c->queue_count++) % c->queue_max] = q;
	ev_io_start(c->apps->loop, &c->writer);
	return WH_OK;
}

static void send_result(struct app_session *c, uint32_t request_id, int error, const char *message)
{
	struct ctl_msg msg = { .type = CTL_RESULT, .request_id = request_id, .error = error };
	snprintf(msg.message, sizeof msg.message, "%s", message ? message : wh_strerror(error));
	session_send(c, &msg, NULL, 0);
}

static uint64_t segment_bytes(const struct apps *apps)
{
	return ring_segment_size(apps->config.ring_capacity);
}

static uint64_t ring_memory_limit(const struct apps *apps)
{
	return apps->config.max_ring_memory ? apps->config.max_ring_memory
					    : (uint64_t)apps->config.max_streams * segment_bytes(apps);
}

/* May c hold one more stream? WH_OK, or WH_ELIMIT with the reason in *why. */
static int session_admit(const struct app_session *c, const char **why)
{
	const struct apps *apps = c->apps;
	if (c->streams >= apps->config.max_streams) {
		*why = "too many streams for this app";
		return WH_ELIMIT;
	}
	if (c->ring_bytes + segment_bytes(apps) > ring_memory_limit(apps)) {
		*why = "the app's shared-memory limit is reached";
		return WH_ELIMIT;
	}
	return WH_OK;
}

/* ---- streams joined to a mux stream ------------------------------------------------ */

static void shm_free_if_done(struct shm_stream *s)
{
	if (s->client || s->stream)
		return;
	budget_close(s->apps, s->wake_app);
	budget_close(s->apps, s->wake_app_peer);
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
		s->client->bytes_received += n;
	if (ring_producer_wake_needed(&s->to_app))
		wake_app(s);
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
		s->client->bytes_sent += n;
	if (ring_consumer_wake_needed(&s->from_app))
		wake_app(s);
}

static void io_release(void *ctx)
{
	struct shm_stream *s = ctx;
	s->stream = NULL;
	if (s->client) {
		/* The stream is over for the network and the app was told through the ring; the
		 * app holds its own mapping and descriptors. Ours go now, not when the app gets
		 * round to releasing it (an app that never accepts may never). */
		budget_close(s->apps, s->wake_app); /* the app's end hangs up: the rings say why */
		s->wake_app = -1;
		budget_close(s->apps, s->wake_app_peer);
		s->wake_app_peer = -1;
		segment_destroy(s->apps, &s->seg);
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

/* The app rang: serve every stream whose bit is set, re-arm, and look once more. */
static void on_doorbell(struct ev_loop *loop, ev_io *w, int revents)
{
	struct app_session *c = w->data;
	uint64_t value;
	(void)loop;
	(void)revents;
	(void)!read(c->doorbell, &value, sizeof value);
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
		wake_app(s);
	} else if (event == MUX_STREAM_ERROR) {
		int error = mux_stream_error(stream);
		header->remote_code = mux_stream_remote_code(stream);
		snprintf(header->error_message, sizeof header->error_message, "%s",
			 mux_stream_remote_code(stream) ? mux_stream_remote_message(stream) : wh_strerror(error));
		ring_producer_close(&s->to_app, error);
		ring_consumer_close(&s->from_app, error);
		wake_app(s);
	}
}

/* Joins a mux stream to a new segment for app c. WH_OK, or WH_EDESCRIPTORS, WH_ENOMEM,
 * WH_ESYSTEM (logged); on failure the mux stream is untouched. */
static int shm_new(struct apps *apps, struct app_session *c, struct mux_stream *stream, struct shm_stream **out)
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
	s->handle = ++apps->next_handle;
	s->seg.memfd = -1;
	int pair[2];
	int error = stream_table_insert(&apps->handles, s->handle, &s->h);
	s->wake_app = s->wake_app_peer = -1;
	if (error == WH_OK && (error = budget_wake_pipe(apps, pair)) == WH_OK) {
		s->wake_app = pair[0];
		s->wake_app_peer = pair[1];
	}
	if (error == WH_OK)
		error = segment_create(apps, &s->seg, apps->config.ring_capacity, s->handle);
	if (error != WH_OK) {
		log_write(apps->log, error == WH_EDESCRIPTORS ? LOG_INFO : LOG_WARN, "apps",
			  "client=%s stream set-up failed: %s", c->id, wh_strerror(error));
		if (stream_table_find(&apps->handles, s->handle) == &s->h)
			stream_table_remove(&apps->handles, s->handle);
		budget_close(apps, s->wake_app);
		budget_close(apps, s->wake_app_peer);
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
	c->streams++;
	c->ring_bytes += s->seg.size;
	apps->stats.streams++;
	mux_stream_set_io(stream, &shm_io, s);
	mux_stream_set_handler(stream, on_mux_event, s);
	*out = s;
	return WH_OK;
}

/* The app has its segment and the read end of the wake-up pipe: the mapping and our write
 * end are all we need. */
static void shm_handed_over(struct shm_stream *s)
{
	segment_drop_fd(s->apps, &s->seg);
	budget_close(s->apps, s->wake_app_peer);
	s->wake_app_peer = -1;
}

/* Takes the stream off its app's books; the mux side is not touched. */
static void shm_unlink_client(struct shm_stream *s)
{
	struct app_session *c = s->client;
	LIST_REMOVE(s, link);
	stream_table_remove(&s->apps->handles, s->handle);
	if (s->awaiting_accept)
		c->unaccepted--;
	c->streams--;
	c->ring_bytes -= s->seg.size;
	c->slots[s->slot] = NULL;
	s->client = NULL;
}

/* The app is done with the stream (RELEASE, error WH_OK) or it is ended for the app with
 * `error` (the app died, or the hand-over failed): the mux side finishes on its own. */
static void shm_detach_client(struct shm_stream *s, int error, const char *why)
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

/* Hands a stream to the app. efd_wake < 0: the app rings the doorbell (slot) instead.
 * WH_OK once sent or queued; otherwise the app did not get it (WH_EDESCRIPTORS, ...). */
static int send_stream(struct app_session *c, enum ctl_type type, uint32_t request_id, uint64_t handle,
		       const struct segment *seg, int efd_wait, int efd_wake, uint32_t slot,
		       unsigned tx_ring, const char *service, const char *peer)
{
	struct ctl_msg msg = { .type = type, .request_id = request_id, .handle = handle,
			       .ring_capacity = seg->capacity, .tx_ring = (uint8_t)tx_ring, .slot = slot };
	snprintf(msg.service, sizeof msg.service, "%s", service);
	snprintf(msg.peer, sizeof msg.peer, "%s", peer);
	int fds[CTL_MAX_FDS] = { seg->memfd, efd_wait, efd_wake };
	return session_send(c, &msg, fds, ctl_fd_count(&msg));
}

/* ---- local pairs ------------------------------------------------------------------- */

/* Frees the pair once neither end holds it; true if it did. */
static bool pair_free_if_done(struct local_pair *p)
{
	if (p->ends[0] || p->ends[1])
		return false;
	budget_close(p->apps, p->efd[0]);
	budget_close(p->apps, p->efd[1]);
	segment_destroy(p->apps, &p->seg);
	p->apps->stats.local_pairs--;
	free(p);
	return true;
}

/* End `end` of the pair lets go; if it died, the other end is told so through the rings.
 * True if that freed the pair. */
static bool pair_detach(struct local_pair *p, unsigned end, bool died)
{
	if (end == 1 && p->awaiting_accept) {
		p->awaiting_accept = false;
		p->ends[1]->unaccepted--;
	}
	LIST_REMOVE(&p->endpoints[end], link);
	stream_table_remove(&p->apps->handles, p->handles[end]);
	p->ends[end]->streams--;
	p->ends[end]->ring_bytes -= p->seg.size;
	p->ends[end] = NULL;
	if (died && p->ends[end ^ 1u]) {
		struct ring_producer producer;
		struct ring_consumer consumer;
		ring_producer_attach(&producer, p->seg.memory, p->seg.capacity, end);
		ring_consumer_attach(&consumer, p->seg.memory, p->seg.capacity, end ^ 1u);
		ring_producer_close(&producer, WH_EAPP_GONE);
		ring_consumer_close(&consumer, WH_EAPP_GONE);
		wake(p->efd[end ^ 1u]);
	}
	return pair_free_if_done(p);
}

static struct listener *find_listener(struct apps *apps, const char *service)
{
	struct listener *l = apps->listeners;
	while (l && strcmp(l->service, service) != 0)
		l = l->next;
	return l;
}

/* May the app listening there be handed one more stream? WH_OK, or WH_EACCEPT_QUEUE_FULL
 * when it has accept_backlog streams it has not taken with wh_accept yet, or WH_ELIMIT. */
static int listener_admit(const struct listener *l, const char **why)
{
	if (l->client->unaccepted >= l->client->apps->config.accept_backlog) {
		*why = "the listening app's accept queue is full";
		return WH_EACCEPT_QUEUE_FULL;
	}
	return session_admit(l->client, why);
}

static void open_local(struct app_session *c, const struct ctl_msg *req)
{
	struct apps *apps = c->apps;
	struct listener *l = find_listener(apps, req->service);
	if (!l) {
		send_result(c, req->request_id, WH_ENO_SERVICE, NULL);
		return;
	}
	const char *why;
	int error = listener_admit(l, &why);
	if (error != WH_OK) {
		log_write(apps->log, LOG_INFO, "apps", "client=%s local stream to service=%s refused: "
			  "listener client=%s: %s", c->id, req->service, l->client->id, why);
		send_result(c, req->request_id, error, why);
		return;
	}
	if (l->client != c && session_admit(c, &why) != WH_OK) {
		send_result(c, req->request_id, WH_ELIMIT, why);
		return;
	}
	struct local_pair *p = calloc(1, sizeof *p);
	if (!p) {
		send_result(c, req->request_id, WH_ENOMEM, NULL);
		return;
	}
	p->apps = apps;
	p->seg.memfd = -1;
	p->handles[0] = ++apps->next_handle;
	p->handles[1] = ++apps->next_handle;
	for (unsigned end = 0; end < 2; end++)
		p->endpoints[end] = (struct pair_end){ .h = { HANDLE_PAIR_END }, .pair = p, .end = end };
	p->efd[0] = budget_eventfd(apps, FD_USE_STREAM);
	p->efd[1] = p->efd[0] < 0 ? -1 : budget_eventfd(apps, FD_USE_STREAM);
	error = p->efd[0] < 0 ? p->efd[0] : p->efd[1] < 0 ? p->efd[1] : WH_OK;
	if (error == WH_OK)
		error = segment_create(apps, &p->seg, apps->config.ring_capacity, p->handles[0]);
	if (error != WH_OK) {
		budget_close(apps, p->efd[0]);
		budget_close(apps, p->efd[1]);
		segment_destroy(apps, &p->seg);
		free(p);
		log_write(apps->log, LOG_INFO, "apps", "client=%s local stream to service=%s failed: %s",
			  c->id, req->service, wh_strerror(error));
		send_result(c, req->request_id, error, NULL);
		return;
	}
	p->ends[0] = c;
	p->ends[1] = l->client;
	c->streams++;
	l->client->streams++;
	c->ring_bytes += p->seg.size;
	l->client->ring_bytes += p->seg.size;
	LIST_INSERT_HEAD(&c->pair_ends, &p->endpoints[0], link);
	LIST_INSERT_HEAD(&l->client->pair_ends, &p->endpoints[1], link);
	apps->stats.local_pairs++;
	if (stream_table_insert(&apps->handles, p->handles[0], &p->endpoints[0].h) != WH_OK ||
	    stream_table_insert(&apps->handles, p->handles[1], &p->endpoints[1].h) != WH_OK) {
		pair_detach(p, 1, false);
		pair_detach(p, 0, false);
		send_result(c, req->request_id, WH_ENOMEM, NULL);
		return;
	}
	/* end i writes ring i, waits on efd[i], wakes the other through efd[i ^ 1]. The listener
	 * first: if it cannot be told, the opener gets an answer that says why. */
	error = send_stream(l->client, CTL_INCOMING, 0, p->handles[1], &p->seg, p->efd[1], p->efd[0],
			    CTL_NO_SLOT, 1, req->service, "local");
	if (error != WH_OK) {
		pair_detach(p, 1, false);
		pair_detach(p, 0, false);
		send_result(c, req->request_id, error, "the listening app could not be handed the stream");
		return;
	}
	p->awaiting_accept = true;
	l->client->unaccepted++;
	l->client->streams_accepted++;
	error = send_stream(c, CTL_OPENED, req->request_id, p->handles[0], &p->seg, p->efd[0],
			    p->efd[1], CTL_NO_SLOT, 0, req->service, "local");
	if (error != WH_OK) {
		send_result(c, req->request_id, error, NULL);
		pair_detach(p, 0, true); /* the listener sees the stream fail */
		return;
	}
	c->streams_opened++;
	segment_drop_fd(apps, &p->seg);
}

/* ---- opening through a pool -------------------------------------------------------- */

struct open_request {
	struct apps *apps;
	char client_id[2 * CTL_CLIENT_ID_SIZE + 1];
	uint32_t request_id;
	char service[CTL_STRING_MAX + 1];
	char peer[CTL_STRING_MAX + 1];
};

static struct app_session *session_by_id(struct apps *apps, const char *id)
{
	for (struct app_session *c = apps->clients; c; c = c->next)
		if (strcmp(c->id, id) == 0 && !c->closing)
			return c;
	return NULL;
}

static void on_pool_opened(struct mux_stream *stream, int error, void *user)
{
	struct open_request *r = user;
	/* The app may have left while the pool dialled: look it up again by id. */
	struct app_session *c = session_by_id(r->apps, r->client_id);
	const char *why;
	if (!c) {
		if (stream) {
			mux_stream_reset(stream, WH_EAPP_GONE, "the app went away");
			mux_stream_release(stream);
		}
	} else if (error != WH_OK) {
		send_result(c, r->request_id, error, NULL);
	} else if (session_admit(c, &why) != WH_OK) {
		/* admitted when asked, but other opens completed meanwhile */
		mux_stream_reset(stream, WH_ELIMIT, why);
		mux_stream_release(stream);
		send_result(c, r->request_id, WH_ELIMIT, why);
	} else {
		struct shm_stream *s;
		int rc = shm_new(r->apps, c, stream, &s);
		if (rc != WH_OK) {
			mux_stream_reset(stream, rc, wh_strerror(rc));
			mux_stream_release(stream);
			send_result(c, r->request_id, rc, NULL);
		} else if ((rc = send_stream(c, CTL_OPENED, r->request_id, s->handle, &s->seg,
					     s->wake_app_peer, -1, s->slot, APP_TX_RING, r->service,
					     r->peer)) != WH_OK) {
			/* The answer is the stream: without it, say why (or the app is gone). */
			shm_detach_client(s, rc, wh_strerror(rc));
			send_result(c, r->request_id, rc, NULL);
		} else {
			c->streams_opened++;
			shm_handed_over(s);
		}
	}
	free(r);
}

static void handle_open(struct app_session *c, const struct ctl_msg *req)
{
	struct apps *apps = c->apps;
	const char *why;
	if (apps->draining) {
		send_result(c, req->request_id, WH_EMUX_CLOSED, "the broker is stopping");
		return;
	}
	if (session_admit(c, &why) != WH_OK) {
		log_write(apps->log, LOG_INFO, "apps", "client=%s open to peer=%s refused: %s", c->id,
			  req->peer, why);
		send_result(c, req->request_id, WH_ELIMIT, why);
		return;
	}
	if (strcmp(req->peer, "local") == 0) {
		open_local(c, req);
		return;
	}
	struct pool *pool = apps->find_pool ? apps->find_pool(apps->find_ctx, req->peer) : NULL;
	if (!pool) {
		send_result(c, req->request_id, WH_EUNKNOWN_PEER, NULL);
		return;
	}
	struct open_request *r = calloc(1, sizeof *r);
	if (!r) {
		send_result(c, req->request_id, WH_ENOMEM, NULL);
		return;
	}
	r->apps = apps;
	r->request_id = req->request_id;
	memcpy(r->client_id, c->id, sizeof r->client_id);
	memcpy(r->service, req->service, sizeof r->service);
	memcpy(r->peer, req->peer, sizeof r->peer);
	if (pool_open_stream(pool, req->service, on_pool_opened, r) != WH_OK) {
		send_result(c, req->request_id, WH_EMUX_CLOSED, NULL);
		free(r);
	}
}

int apps_route_incoming(struct apps *apps, struct mux *mux, struct mux_stream *stream,
			const char *service)
{
	struct listener *l = find_listener(apps, service);
	if (!l)
		return WH_ENO_SERVICE;
	const char *why;
	int error = listener_admit(l, &why);
	if (error != WH_OK) {
		log_write(apps->log, LOG_INFO, "apps", "client=%s incoming stream for service=%s "
			  "refused: %s", l->client->id, service, why);
		return error;
	}
	struct shm_stream *s;
	error = shm_new(apps, l->client, stream, &s);
	if (error != WH_OK)
		return error;
	struct conn *conn = conn_from_mux(mux);
	error = send_stream(l->client, CTL_INCOMING, 0, s->handle, &s->seg, s->wake_app_peer, -1,
			    s->slot, APP_TX_RING, service, conn ? conn_remote_addr(conn) : "");
	if (error != WH_OK) {
		/* refused: the mux frees the stream, and with it s (io_release) */
		shm_unlink_client(s);
		return error;
	}
	s->awaiting_accept = true;
	l->client->unaccepted++;
	l->client->streams_accepted++;
	shm_handed_over(s);
	return WH_OK;
}

/* ---- listeners --------------------------------------------------------------------- */

static void handle_listen(struct app_session *c, const struct ctl_msg *req, bool listen)
{
	struct apps *apps = c->apps;
	struct listener **link = &apps->listeners;
	while (*link && strcmp((*link)->service, req->service) != 0)
		link = &(*link)->next;
	if (!listen) {
		if (!*link || (*link)->client != c) {
			send_result(c, req->request_id, WH_ENO_SERVICE, "not listening on that service");
			return;
		}
		struct listener *l = *link;
		*link = l->next;
		free(l);
		send_result(c, req->request_id, WH_OK, "");
		return;
	}
	if (*link) {
		send_result(c, req->request_id, WH_ELIMIT, "another app listens on that service");
		return;
	}
	struct listener *l = calloc(1, sizeof *l);
	if (!l) {
		send_result(c, req->request_id, WH_ENOMEM, NULL);
		return;
	}
	memcpy(l->service, req->service, sizeof l->service);
	l->client = c;
	l->next = apps->listeners;
	apps->listeners = l;
	log_write(apps->log, LOG_INFO, "apps", "client=%s listens on service=%s", c->id,
		  req->service[0] ? req->service : "(default)");
	send_result(c, req->request_id, WH_OK, "");
}

/* RELEASE (the app is done with the stream) or ACCEPTED (wh_accept took it from the queue):
 * found by its handle in O(1); a handle that is not this app's (gone, or another app's) is
 * ignored. */
static void handle_stream_message(struct app_session *c, uint64_t handle, bool release)
{
	struct app_handle *h = stream_table_find(&c->apps->handles, handle);
	if (h && h->kind == HANDLE_STREAM) {
		struct shm_stream *s = (struct shm_stream *)h;
		if (s->client != c)
			return;
		if (release) {
			shm_detach_client(s, WH_OK, NULL);
		} else if (s->awaiting_accept) {
			s->awaiting_accept = false;
			c->unaccepted--;
		}
	} else if (h) {
		struct pair_end *e = (struct pair_end *)h;
		struct local_pair *p = e->pair;
		if (p->ends[e->end] != c)
			return;
		if (release) {
			pair_detach(p, e->end, false);
		} else if (e->end == 1 && p->awaiting_accept) {
			p->awaiting_accept = false;
			c->unaccepted--;
		}
	}
}

/* ---- sessions ---------------------------------------------------------------------- */

/* The doorbell eventfd and the bitmap segment; returns the segment's memfd to hand over
 * (from the budget: segment_drop_fd-like budget_close when done), or a negative WH_E* code. */
static int doorbell_create(struct app_session *c)
{
	struct apps *apps = c->apps;
	c->slot_count = (apps->config.max_streams + 63) / 64 * 64;
	c->slots = calloc(c->slot_count, sizeof *c->slots);
	c->notify_size = notify_segment_size(c->slot_count);
	if (!c->slots)
		return WH_ENOMEM;
	c->doorbell = budget_eventfd(apps, FD_USE_SESSION);
	if (c->doorbell < 0)
		return c->doorbell;
	if (!fd_budget_take(apps->fds, 1, FD_USE_SESSION))
		return WH_EDESCRIPTORS;
	int memfd = memfd_create("wormhole-doorbell", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0) {
		int error = errno_error();
		fd_budget_give(apps->fds, 1);
		return error;
	}
	int error = WH_OK;
	if (ftruncate(memfd, (off_t)c->notify_size) < 0 ||
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		error = errno_error();
	c->notify = error ? MAP_FAILED
			  : mmap(NULL, c->notify_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (c->notify == MAP_FAILED) {
		c->notify = NULL;
		budget_close(apps, memfd);
		return error ? error : WH_ENOMEM;
	}
	c->notify->magic = NOTIFY_MAGIC;
	c->notify->slots = c->slot_count;
	atomic_store(&c->notify->armed, 1);
	ev_io_init(&c->doorbell_watcher, on_doorbell, c->doorbell, EV_READ);
	c->doorbell_watcher.data = c;
	ev_io_start(apps->loop, &c->doorbell_watcher);
	return memfd;
}

static void send_stats(struct app_session *c, uint32_t request_id)
{
	const struct apps *apps = c->apps;
	struct ctl_msg reply = { .type = CTL_STATS_REPLY, .request_id = request_id,
				 .stats_count = CTL_STAT_COUNT };
	reply.stats[CTL_STAT_STREAMS] = c->streams;
	reply.stats[CTL_STAT_STREAMS_OPENED] = c->streams_opened;
	reply.stats[CTL_STAT_STREAMS_ACCEPTED] = c->streams_accepted;
	reply.stats[CTL_STAT_RING_BYTES] = c->ring_bytes;
	reply.stats[CTL_STAT_RING_BYTES_LIMIT] = ring_memory_limit(apps);
	reply.stats[CTL_STAT_MAX_STREAMS] = apps->config.max_streams;
	reply.stats[CTL_STAT_BYTES_SENT] = c->bytes_sent;
	reply.stats[CTL_STAT_BYTES_RECEIVED] = c->bytes_received;
	reply.stats[CTL_STAT_BROKER_CLIENTS] = apps->stats.clients;
	reply.stats[CTL_STAT_BROKER_STREAMS] = apps->stats.streams + 2 * apps->stats.local_pairs;
	session_send(c, &reply, NULL, 0);
}

static void handle_message(struct app_session *c, const struct ctl_msg *msg)
{
	if (!c->welcomed && msg->type != CTL_HELLO) {
		c->apps->stats.protocol_errors++;
		send_result(c, msg->request_id, WH_EPROTOCOL, "the first message must be HELLO");
		flush_queue(c);
		session_drop(c, "first message was not HELLO");
		return;
	}
	switch (msg->type) {
	case CTL_HELLO: {
		if (c->welcomed || msg->version != CTL_VERSION) {
			c->apps->stats.protocol_errors++;
			send_result(c, msg->request_id, WH_EPROTOCOL,
				    c->welcomed ? "HELLO was already said" : "unsupported protocol version");
			flush_queue(c);
			session_drop(c, "bad HELLO");
			return;
		}
		int notify_fd = doorbell_create(c);
		if (notify_fd < 0) {
			send_result(c, msg->request_id, notify_fd, "the broker cannot set up the session");
			flush_queue(c);
			session_drop(c, wh_strerror(notify_fd));
			return;
		}
		c->welcomed = true;
		struct ctl_msg welcome = { .type = CTL_WELCOME, .request_id = msg->request_id,
					   .version = CTL_VERSION, .max_streams = c->slot_count,
					   .ring_capacity = c->apps->config.ring_capacity };
		randombytes_buf(welcome.client_id, sizeof welcome.client_id);
		for (unsigned i = 0; i < CTL_CLIENT_ID_SIZE; i++)
			snprintf(c->id + 2 * i, 3, "%02x", welcome.client_id[i]);
		log_write(c->apps->log, LOG_INFO, "apps", "client=%s attached: pid=%d uid=%d", c->id,
			  (int)c->pid, (int)c->uid);
		int fds[2] = { c->doorbell, notify_fd };
		int rc = session_send(c, &welcome, fds, 2);
		budget_close(c->apps, notify_fd);
		if (rc != WH_OK)
			session_drop(c, wh_strerror(rc));
		return;
	}
	case CTL_OPEN:
		handle_open(c, msg);
		return;
	case CTL_LISTEN:
	case CTL_UNLISTEN:
		handle_listen(c, msg, msg->type == CTL_LISTEN);
		return;
	case CTL_RELEASE:
	case CTL_ACCEPTED:
		handle_stream_message(c, msg->handle, msg->type == CTL_RELEASE);
		return;
	case CTL_STATS:
		send_stats(c, msg->request_id);
		return;
	default:
		c->apps->stats.protocol_errors++;
		send_result(c, msg->request_id, WH_EPROTOCOL, "message type not accepted from an app");
		session_drop(c, "broker-only message type from an app");
		return;
	}
}

static void on_client_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct app_session *c = w->data;
	(void)loop;
	(void)revents;
	for (int i = 0; i < 64 && !c->closing; i++) {
		uint8_t buffer[CTL_MESSAGE_MAX + 1];
		union {
			char buf[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} control;
		struct iovec iov = { buffer, sizeof buffer };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
				      .msg_controllen = sizeof control.buf };
		ssize_t n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n <= 0) {
			session_drop(c, n == 0 ? "detached" : strerror(errno));
			return;
		}
		/* Apps send no fds: close any they pass (never keep them) and end the session. */
		unsigned passed = 0;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
				for (size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) {
					int fd;
					memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof fd);
					close(fd);
					passed++;
				}
		struct ctl_msg decoded;
		const char *why = NULL;
		if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
			why = "control message too long";
		else if (passed)
			why = "descriptors attached to a control message";
		else if (ctl_decode(buffer, (size_t)n, &decoded) != WH_OK)
			why = "malformed control message";
		if (why) {
			c->apps->stats.protocol_errors++;
			send_result(c, 0, WH_EPROTOCOL, why);
			flush_queue(c);
			session_drop(c, why);
			return;
		}
		handle_message(c, &decoded);
	}
}

static void on_client_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	flush_queue(w->data);
}

/* Ends the session: streams end with an error the remote sees, memory and fds are freed. */
static void session_drop(struct app_session *c, const char *why)
{
	struct apps *apps = c->apps;
	if (c->closing)
		return;
	c->closing = true;
	bool orderly = strcmp(why, "detached") == 0 || strcmp(why, "broker stopping") == 0;
	log_write(apps->log, orderly ? LOG_INFO : LOG_WARN, "apps",
		  "client=%s pid=%d dropped: %s (%u streams)", c->id[0] ? c->id : "-", (int)c->pid, why,
		  c->streams);
	while (!LIST_EMPTY(&c->shm_streams))
		shm_detach_client(LIST_FIRST(&c->shm_streams), WH_EAPP_GONE, "the app went away");
	/* both ends are c's when an app opened a stream to its own listener: the pair goes with
	 * the second */
	while (!LIST_EMPTY(&c->pair_ends)) {
		struct pair_end *e = LIST_FIRST(&c->pair_ends);
		pair_detach(e->pair, e->end, true);
	}
	for (struct listener **link = &apps->listeners; *link;) {
		struct listener *l = *link;
		if (l->client == c) {
			*link = l->next;
			free(l);
		} else {
			link = &l->next;
		}
	}
	ev_io_stop(apps->loop, &c->reader);
	ev_io_stop(apps->loop, &c->writer);
	ev_io_stop(apps->loop, &c->doorbell_watcher);
	budget_close(apps, c->doorbell);
	c->doorbell = -1;
	if (c->notify)
		munmap(c->notify, c->notify_size);
	free(c->slots);
	while (c->queue_count) {
		queued_free(apps, c->queue[c->queue_head]);
		c->queue_head = (c->queue_head + 1) % c->queue_max;
		c->queue_count--;
	}
	free(c->queue);
	c->queue = NULL;
	budget_close(apps, c->fd);
	c->fd = -1;
	for (struct app_session **link = &apps->clients; *link; link = &(*link)->next)
		if (*link == c) {
			*link = c->next;
			break;
		}
	apps->stats.clients--;
	c->next = apps->dropped;
	apps->dropped = c;
	ev_prepare_start(apps->loop, &apps->reaper);
}

static void free_dropped(struct apps *apps)
{
	while (apps->dropped) {
		struct app_session *c = apps->dropped;
		apps->dropped = c->next;
		free(c);
	}
}

static void session_drop_later(struct app_session *c, const char *why)
{
	if (c->closing || c->drop_reason)
		return;
	c->drop_reason = why;
	ev_prepare_start(c->apps->loop, &c->apps->reaper);
}

/* The loop's prepare step: sessions marked for dropping go, dropped ones are freed. */
static void on_reap(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct apps *apps = w->data;
	(void)revents;
	ev_prepare_stop(loop, w);
	for (struct app_session *c = apps->clients, *next; c; c = next) {
		next = c->next;
		if (c->drop_reason)
			session_drop(c, c->drop_reason);
	}
	free_dropped(apps);
}

static void on_accept_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct apps *apps = w->data;
	(void)revents;
	if (!apps->draining)
		ev_io_start(loop, &apps->acceptor);
}

/* An app we have no descriptors for is told so on its own socket, then let go. */
static void shed_attach(struct apps *apps, int fd)
{
	struct ctl_msg msg = { .type = CTL_RESULT, .request_id = 1, .error = WH_EDESCRIPTORS };
	snprintf(msg.message, sizeof msg.message, "the broker is out of file descriptors");
	uint8_t bytes[CTL_MESSAGE_MAX];
	int n = ctl_encode(bytes, sizeof bytes, &msg);
	if (n > 0)
		(void)!send(fd, bytes, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	fd_budget_shed_done(apps->fds, fd);
	log_write(apps->log, LOG_WARN, "apps", "attach refused: out of file descriptors (%llu shed)",
		  apps->fds ? (unsigned long long)apps->fds->shed : 0ull);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct apps *apps = w->data;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		bool shed;
		int fd = fd_budget_accept(apps->fds, apps->listen_fd, FD_USE_SESSION, &shed);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* Not even the spare could take it: a readable listener would spin the
				 * loop, so stop looking for a moment. */
				ev_io_stop(loop, &apps->acceptor);
				ev_timer_start(loop, &apps->accept_pause);
			}
			return;
		}
		if (shed) {
			shed_attach(apps, fd);
			continue;
		}
		struct ucred cred = { 0 };
		socklen_t len = sizeof cred;
		getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
		struct app_session *c = calloc(1, sizeof *c);
		if (!c) {
			budget_close(apps, fd);
			continue;
		}
		c->apps = apps;
		c->fd = fd;
		c->doorbell = -1;
		c->pid = cred.pid;
		c->uid = cred.uid;
		ev_io_init(&c->reader, on_client_readable, fd, EV_READ);
		ev_io_init(&c->writer, on_client_writable, fd, EV_WRITE);
		c->reader.data = c->writer.data = c;
		ev_io_start(loop, &c->reader);
		c->next = apps->clients;
		apps->clients = c;
		apps->stats.clients++;
		apps->stats.clients_total++;
	}
}

/*
 * The app socket's path is never a hazard: anything there but a socket stays untouched, a
 * broker that answers there keeps it, and only a stale socket (nobody listening) is removed.
 * 0, or -1 with errno and a log line that says why.
 */
static int claim_socket_path(const char *path, const struct log_sink *log)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		int saved = errno;
		log_write(log, LOG_ERROR, "apps", "socket %s: %s", path, strerror(errno));
		errno = saved;
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_write(log, LOG_ERROR, "apps", "socket %s: something that is not a socket is there; "
			  "refusing to replace it", path);
		errno = EEXIST;
		return -1;
	}
	int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
	int rc = probe < 0 ? -1 : connect(probe, (struct sockaddr *)&addr, sizeof addr);
	int error = rc == 0 ? 0 : errno;
	if (probe >= 0)
		close(probe);
	if (rc == 0) {
		log_write(log, LOG_ERROR, "apps", "socket %s: a broker is already running there", path);
		errno = EADDRINUSE;
		return -1;
	}
	if (error != ECONNREFUSED) { /* someone else's socket, or one we may not look at */
		log_write(log, LOG_ERROR, "apps", "socket %s: in use by another program (%s); refusing to "
			  "replace it", path, strerror(error));
		errno = EADDRINUSE;
		return -1;
	}
	if (unlink(path) < 0) {
		int saved = errno;
		log_write(log, LOG_ERROR, "apps", "socket %s: cannot remove the stale socket: %s", path,
			  strerror(errno));
		errno = saved;
		return -1;
	}
	log_write(log, LOG_INFO, "apps", "socket %s: removed a stale socket (no broker answered)", path);
	return 0;
}

struct apps *apps_start(struct ev_loop *loop, const struct apps_config *config,
			const struct log_sink *log, struct fd_budget *fds, apps_find_pool find_pool,
			void *find_ctx)
{
	if (sodium_init() < 0)
		return NULL;
	struct apps *apps = calloc(1, sizeof *apps);
	if (!apps)
		return NULL;
	apps->loop = loop;
	apps->config = *config;
	apps->log = log;
	apps->fds = fds;
	if (stream_table_init(&apps->handles) != WH_OK) {
		free(apps);
		errno = ENOMEM;
		return NULL;
	}
	apps->find_pool = find_pool;
	apps->find_ctx = find_ctx;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", config->socket_path);
	if (claim_socket_path(config->socket_path, log) < 0) {
		int saved = errno;
		stream_table_free(&apps->handles);
		free(apps);
		errno = saved;
		return NULL;
	}
	apps->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	mode_t old_mask = umask(0777 & ~config->socket_mode);
	int rc = apps->listen_fd < 0 ? -1 : bind(apps->listen_fd, (struct sockaddr *)&addr, sizeof addr);
	umask(old_mask);
	if (rc == 0 && (config->socket_uid >= 0 || config->socket_gid >= 0))
		rc = chown(config->socket_path, (uid_t)config->socket_uid, (gid_t)config->socket_gid);
	if (rc < 0 || listen(apps->listen_fd, 128) < 0 || chmod(config->socket_path, config->socket_mode) < 0) {
		int saved = errno;
		log_write(log, LOG_ERROR, "apps", "socket %s: %s", config->socket_path, strerror(errno));
		if (apps->listen_fd >= 0)
			close(apps->listen_fd);
		stream_table_free(&apps->handles);
		free(apps);
		errno = saved;
		return NULL;
	}
	struct stat st;
	if (stat(config->socket_path, &st) == 0) { /* remembered, so that we remove only ours */
		apps->socket_dev = st.st_dev;
		apps->socket_ino = st.st_ino;
	}
	ev_io_init(&apps->acceptor, on_accept, apps->listen_fd, EV_READ);
	apps->acceptor.data = apps;
	ev_prepare_init(&apps->reaper, on_reap);
	apps->reaper.data = apps;
	ev_timer_init(&apps->accept_pause, on_accept_resume, 0.1, 0.0);
	apps->accept_pause.data = apps;
	ev_io_start(loop, &apps->acceptor);
	log_write(log, LOG_INFO, "apps", "apps attach at %s (mode %03o, owner %ld, group %ld)",
		  config->socket_path, config->socket_mode, config->socket_uid, config->socket_gid);
	return apps;
}

void apps_stop(struct apps *apps)
{
	if (!apps)
		return;
	while (apps->clients)
		session_drop(apps->clients, "broker stopping");
	ev_prepare_stop(apps->loop, &apps->reaper);
	ev_timer_stop(apps->loop, &apps->accept_pause);
	free_dropped(apps);
	ev_io_stop(apps->loop, &apps->acceptor);
	close(apps->listen_fd);
	struct stat st;
	if (stat(apps->config.socket_path, &st) == 0 && st.st_dev == apps->socket_dev &&
	    st.st_ino == apps->socket_ino)
		unlink(apps->config.socket_path); /* still ours */
	stream_table_free(&apps->handles);
	free(apps);
}

void apps_reconfigure(struct apps *apps, const struct apps_config *config)
{
	struct apps_config next = *config;
	/* the socket was made at start */
	memcpy(next.socket_path, apps->config.socket_path, sizeof next.socket_path);
	next.socket_mode = apps->config.socket_mode;
	next.socket_uid = apps->config.socket_uid;
	next.socket_gid = apps->config.socket_gid;
	apps->config = next;
}

void apps_drain(struct apps *apps)
{
	apps->draining = true;
	ev_io_stop(apps->loop, &apps->acceptor);
	ev_timer_stop(apps->loop, &apps->accept_pause);
}

void apps_get_stats(const struct apps *apps, struct apps_stats *stats)
{
	*stats = apps->stats;
}
