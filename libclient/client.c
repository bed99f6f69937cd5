/* The client session: attaching, attach messages, opening, listening and accepting. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <grp.h>
#include <stdarg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "attach_fds.h"
#include "attach_wake.h"
#include "internal.h"

/* The epoll entry of the client's own socket (an incoming stream, an open's answer, the
 * broker's hang-up); streams' entries carry a generation in the high half, never all ones. */
#define CLIENT_NEWS UINT64_MAX

/* How long past an open's timeout we wait for the broker's answer (it answers by the timeout;
 * this is for the answer to travel, and bounds a broker that hangs). */
#define OPEN_ANSWER_GRACE_MS 2000

int64_t wh_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void close_fds(const int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Keeps wh_client_wait_fd readable for news the socket no longer shows (an answer or an
 * incoming stream another call took off it and kept, streams still on the ready list). The
 * news socket is the broker's to send on: our own eventfd, which nobody else holds, sits
 * beside it in the wait set. */
static void signal_news(struct wh_client *c)
{
	if (c->news_self < 0 || c->news_pending)
		return;
	uint64_t one = 1;
	(void)!write(c->news_self, &one, sizeof one); /* ours alone: non-blocking, never full */
	c->news_pending = true;
}

void client_ring(struct wh_client *c)
{
	uint64_t one = 1;
	if (c->doorbell_socket)
		wake_send(c->doorbell);
	else /* ours and the broker's, which only reads it: never full, made non-blocking by it */
		(void)!write(c->doorbell, &one, sizeof one);
}

static int broker_gone(struct wh_client *c)
{
	atomic_store(&c->broker_gone, true);
	return WH_EBROKER_GONE;
}

bool client_broker_gone(struct wh_client *c)
{
	if (atomic_load(&c->broker_gone))
		return true;
	struct pollfd pfd = { c->fd, 0, 0 }; /* hang-up and errors are always reported */
	if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR)))
		atomic_store(&c->broker_gone, true);
	return atomic_load(&c->broker_gone);
}

int client_send(struct wh_client *c, const struct attach_msg *msg)
{
	return client_send_fd(c, msg, -1);
}

int client_send_fd(struct wh_client *c, const struct attach_msg *msg, int fd)
{
	uint8_t buffer[ATTACH_MESSAGE_MAX];
	int n = attach_encode(buffer, sizeof buffer, msg);
	if (n < 0)
		return n;
	if (atomic_load(&c->broker_gone))
		return WH_EBROKER_GONE;
	union attach_control control;
	struct iovec iov = { buffer, (size_t)n };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	attach_fds_put(&m, &control, &fd, fd >= 0 ? 1 : 0);
	for (;;) {
		ssize_t sent = sendmsg(c->fd, &m, MSG_NOSIGNAL);
		if (sent == n)
			return WH_OK;
		if (sent < 0 && errno == EINTR)
			continue;
		return broker_gone(c);
	}
}

/* Receives one message within timeout_ms (< 0: no limit). fds[] gets exactly the number the
 * type carries; a message with the wrong number of fds is a protocol error. */
static int receive(struct wh_client *c, int timeout_ms, struct attach_msg *msg, int fds[ATTACH_MAX_FDS])
{
	if (atomic_load(&c->broker_gone))
		return WH_EBROKER_GONE;
	struct pollfd pfd = { c->fd, POLLIN, 0 };
	int ready;
	do
		ready = poll(&pfd, 1, timeout_ms);
	while (ready < 0 && errno == EINTR);
	if (ready == 0)
		return timeout_ms == 0 ? WH_EWOULDBLOCK : WH_ETIMEOUT;
	uint8_t buffer[ATTACH_MESSAGE_MAX + 1];
	union attach_control control;
	struct iovec iov = { buffer, sizeof buffer };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			    .msg_controllen = sizeof control.buf };
	ssize_t n = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return broker_gone(c);
	int received[ATTACH_FDS_ROOM];
	unsigned count = attach_fds_take(&m, received);
	if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || attach_decode(buffer, (size_t)n, msg) != WH_OK ||
	    count != attach_fd_count(msg)) {
		close_fds(received, count);
		return WH_EPROTOCOL;
	}
	memcpy(fds, received, count * sizeof(int));
	return WH_OK;
}

/* Tells the broker what became of a stream it handed over: taken by wh_accept (ACCEPTED:
 * room in the accept backlog again) or dropped here (RELEASE: it ends the stream). */
static void tell_broker(struct wh_client *c, enum attach_type type, uint64_t handle)
{
	struct attach_msg msg = { .type = type, .handle = handle };
	client_send(c, &msg); /* if the broker is gone there is nobody left to tell */
}

static void queue_incoming(struct wh_client *c, const struct attach_msg *msg, const int fds[ATTACH_MAX_FDS])
{
	struct pending_stream *p = calloc(1, sizeof *p);
	if (!p) {
		close_fds(fds, attach_fd_count(msg));
		tell_broker(c, ATTACH_RELEASE, msg->handle);
		return;
	}
	p->msg = *msg;
	memcpy(p->fds, fds, sizeof p->fds);
	if (c->accept_tail)
		c->accept_tail->next = p;
	else
		c->accept_head = p;
	c->accept_tail = p;
	signal_news(c);
}

static struct pending_open *find_open(struct wh_client *c, uint32_t request_id)
{
	for (struct pending_open *p = c->opens; p; p = p->next)
		if (p->request_id == request_id)
			return p;
	return NULL;
}

static void forget_open(struct wh_client *c, struct pending_open *gone)
{
	for (struct pending_open **link = &c->opens; *link; link = &(*link)->next)
		if (*link == gone) {
			*link = gone->next;
			break;
		}
	if (gone->answered)
		close_fds(gone->fds, attach_fd_count(&gone->answer));
	if (gone->answered && gone->answer.type == ATTACH_OPENED)
		tell_broker(c, ATTACH_RELEASE, gone->answer.handle);
	free(gone);
}

/* A message nobody waits for right now: the answer of an open started with wh_open_start
 * (kept for wh_open_result), or an answer to a request we gave up on (wh_open past its
 * timeout, wh_open_cancel): a stream in it is handed back at once, so that an abandoned open
 * leaves nothing behind in the broker. */
static void drop_late_answer(struct wh_client *c, const struct attach_msg *msg, const int fds[ATTACH_MAX_FDS])
{
	struct pending_open *p = msg->request_id ? find_open(c, msg->request_id) : NULL;
	if (p && !p->answered && (msg->type == ATTACH_OPENED || msg->type == ATTACH_RESULT)) {
		p->answered = true;
		p->answer = *msg;
		memcpy(p->fds, fds, sizeof p->fds);
		signal_news(c);
		return;
	}
	close_fds(fds, attach_fd_count(msg));
	if (msg->type == ATTACH_OPENED)
		tell_broker(c, ATTACH_RELEASE, msg->handle);
}

/* A message that is not the answer the caller waits for: an incoming stream is queued for
 * wh_accept, anything else kept for its open ticket or handed back. */
static void dispatch_other(struct wh_client *c, const struct attach_msg *msg, const int fds[ATTACH_MAX_FDS])
{
	if (msg->type == ATTACH_INCOMING)
		queue_incoming(c, msg, fds);
	else
		drop_late_answer(c, msg, fds);
}

/* Waits for the answer to request_id; INCOMING streams arriving meanwhile are queued. */
static int await_reply(struct wh_client *c, uint32_t request_id, int timeout_ms, struct attach_msg *msg,
		       int fds[ATTACH_MAX_FDS])
{
	int64_t deadline = timeout_ms < 0 ? 0 : wh_now_ns() + (int64_t)timeout_ms * 1000000;
	for (;;) {
		int wait_ms = -1;
		if (deadline) {
			int64_t left = deadline - wh_now_ns();
			if (left <= 0)
				return WH_ETIMEOUT;
			wait_ms = (int)((left + 999999) / 1000000);
		}
		int rc = receive(c, wait_ms, msg, fds);
		if (rc != WH_OK)
			return rc == WH_EWOULDBLOCK ? WH_ETIMEOUT : rc;
		if (msg->type != ATTACH_INCOMING && msg->request_id == request_id)
			return WH_OK;
		dispatch_other(c, msg, fds);
	}
}

/* WELCOME brings the doorbell, the memfd of the bitmaps and our end of the news socket pair;
 * check before use. */
static int map_doorbell(struct wh_client *c, const struct attach_msg *welcome, const int fds[3])
{
	struct stat st;
	size_t size = notify_segment_size(welcome->max_streams);
	void *memory = MAP_FAILED;
	if (welcome->max_streams % 64 == 0 && fstat(fds[1], &st) == 0 && (size_t)st.st_size == size)
		memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
	close(fds[1]);
	c->by_slot = calloc(welcome->max_streams ? welcome->max_streams : 1, sizeof *c->by_slot);
	if (memory == MAP_FAILED || !c->by_slot || ((struct notify_segment *)memory)->magic != NOTIFY_MAGIC ||
	    ((struct notify_segment *)memory)->slots != welcome->max_streams) {
		if (memory != MAP_FAILED)
			munmap(memory, size);
		free(c->by_slot);
		c->by_slot = NULL;
		close(fds[0]);
		close(fds[2]);
		return WH_EPROTOCOL;
	}
	c->news_self = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->news_self < 0) {
		munmap(memory, size);
		free(c->by_slot);
		c->by_slot = NULL;
		close(fds[0]);
		close(fds[2]);
		return WH_ESYSTEM;
	}
	c->doorbell = fds[0];
	c->doorbell_socket = fstat(fds[0], &st) == 0 && S_ISSOCK(st.st_mode);
	c->news = fds[2];
	c->notify = memory;
	c->notify_size = size;
	c->slots = welcome->max_streams;
	return WH_OK;
}

static void set_detail(char *detail, size_t length, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_detail(char *detail, size_t length, const char *fmt, ...)
{
	if (!detail || !length)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, length, fmt, ap);
	va_end(ap);
}

/* Why connect() to the app socket failed, as an error code and a sentence that names the path
 * and says what to do. */
static int connect_failure(int error, const char *path, const char *from, char *detail, size_t length)
{
	struct stat st;
	bool seen = stat(path, &st) == 0;
	switch (error) {
	case ENOENT:
		set_detail(detail, length, "no broker at %s: no such file (is the broker running? the path "
			   "is %s)", path, from);
		return WH_ENO_BROKER;
	case EACCES:
	case EPERM:
		if (!seen) {
			set_detail(detail, length, "permission denied on %s: uid %u may not reach the socket "
				   "(a directory on the path is closed to it)", path, (unsigned)getuid());
		} else {
			struct group *g = getgrgid(st.st_gid);
			set_detail(detail, length, "permission denied on %s: uid %u may not connect (the socket "
				   "is mode %04o, owner uid %u, group %s (gid %u): join the group or ask for "
				   "socket-mode)", path, (unsigned)getuid(), (unsigned)(st.st_mode & 07777),
				   (unsigned)st.st_uid, g ? g->gr_name : "?", (unsigned)st.st_gid);
		}
		return WH_ESOCKET_DENIED;
	case ECONNREFUSED:
		if (seen && !S_ISSOCK(st.st_mode)) {
			set_detail(detail, length, "%s is not a socket, so not a broker (the path is %s)", path, from);
			return WH_ENOT_BROKER;
		}
		set_detail(detail, length, "no broker at %s: nobody listens on that socket (a broker that "
			   "stopped left it; start the broker)", path);
		return WH_ENO_BROKER;
	case EPROTOTYPE:
		set_detail(detail, length, "%s is a socket of another kind, not a broker's app socket (the "
			   "control socket?)", path);
		return WH_ENOT_BROKER;
	default:
		set_detail(detail, length, "cannot connect to %s: %s", path, strerror(error));
		return WH_ENO_BROKER;
	}
}

int wh_client_attach_detail(const char *socket_path, wh_client **out, char *detail, size_t detail_length)
{
	if (detail && detail_length)
		detail[0] = '\0';
	if (!out) {
		set_detail(detail, detail_length, "no place for the client (out is NULL)");
		return WH_EINVAL;
	}
	*out = NULL;
	const char *from = "the argument";
	if (!socket_path) {
		socket_path = getenv("WORMHOLE_SOCKET");
		from = "from $WORMHOLE_SOCKET";
	}
	if (!socket_path || !*socket_path) {
		socket_path = WH_DEFAULT_SOCKET;
		from = "the default, WH_DEFAULT_SOCKET";
	}
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(socket_path) >= sizeof addr.sun_path) {
		set_detail(detail, detail_length, "socket path longer than %zu bytes: %s", sizeof addr.sun_path - 1,
			   socket_path);
		return WH_EINVAL;
	}
	strcpy(addr.sun_path, socket_path);
	struct wh_client *c = calloc(1, sizeof *c);
	if (!c) {
		set_detail(detail, detail_length, "out of memory");
		return WH_ENOMEM;
	}
	atomic_init(&c->broker_gone, false);
	pthread_mutex_init(&c->streams_lock, NULL);
	c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
		int rc = connect_failure(errno, socket_path, from, detail, detail_length);
		if (c->fd >= 0)
			close(c->fd);
		pthread_mutex_destroy(&c->streams_lock);
		free(c);
		return rc;
	}
	struct attach_msg hello = { .type = ATTACH_HELLO, .request_id = ++c->next_request,
				 .version = ATTACH_VERSION, .pid = (uint32_t)getpid() };
	struct attach_msg welcome;
	int fds[ATTACH_MAX_FDS];
	c->doorbell = c->news = c->news_self = -1;
	int rc = client_send(c, &hello);
	if (rc == WH_OK)
		rc = await_reply(c, hello.request_id, 10000, &welcome, fds);
	if (rc == WH_OK && welcome.type == ATTACH_RESULT) {
		/* the broker said no: its words (attach-users, a broker that is stopping, ...) */
		rc = welcome.error < 0 ? welcome.error : WH_ENOT_BROKER;
		set_detail(detail, detail_length, "the broker at %s refused: %s", socket_path,
			   welcome.message[0] ? welcome.message : wh_strerror(rc));
	} else if (rc == WH_OK && (welcome.type != ATTACH_WELCOME || welcome.version != ATTACH_VERSION)) {
		close_fds(fds, attach_fd_count(&welcome));
		set_detail(detail, detail_length, "the broker at %s speaks attach protocol version %u, this "
			   "library %u: use a library of the broker's release", socket_path, welcome.version,
			   ATTACH_VERSION);
		rc = WH_EPROTOCOL;
	} else if (rc == WH_OK) {
		rc = map_doorbell(c, &welcome, fds);
		if (rc != WH_OK)
			set_detail(detail, detail_length, "the broker at %s sent a doorbell this library cannot "
				   "use", socket_path);
	} else if (rc == WH_EPROTOCOL) {
		set_detail(detail, detail_length, "what answers at %s does not speak the attach protocol",
			   socket_path);
		rc = WH_ENOT_BROKER;
	} else if (rc == WH_ETIMEOUT) {
		set_detail(detail, detail_length, "the broker at %s did not answer HELLO within 10 s", socket_path);
	} else {
		set_detail(detail, detail_length, "the broker at %s closed the session at once (it may be "
			   "stopping or out of descriptors; its log says why)", socket_path);
	}
	if (rc != WH_OK) {
		close(c->fd);
		pthread_mutex_destroy(&c->streams_lock);
		free(c);
		return rc;
	}
	for (unsigned i = 0; i < ATTACH_CLIENT_ID_SIZE; i++)
		snprintf(c->id + 2 * i, 3, "%02x", welcome.client_id[i]);
	c->ring_capacity = welcome.ring_capacity;
	c->epoll_fd = -1; /* made by the first wh_client_wait or wh_client_wait_fd */
	*out = c;
	return WH_OK;
}

/* Same-host streams only: a stream to a peer broker is named by the news bitmap instead. */
int client_wait_add(struct wh_client *c, struct wh_stream *s)
{
	if (c->epoll_fd < 0 || !s->local)
		return WH_OK; /* an app that never asks pays nothing: streams join when it first does */
	uint32_t slot = c->wait_hint;
	while (slot < c->wait_capacity && c->wait_table[slot])
		slot++;
	if (slot >= c->wait_capacity) {
		for (slot = 0; slot < c->wait_capacity && c->wait_table[slot]; slot++)
			;
	}
	if (slot >= c->wait_capacity) {
		uint32_t grown = c->wait_capacity ? 2 * c->wait_capacity : 64;
		struct wh_stream **table = realloc(c->wait_table, grown * sizeof *table);
		if (!table)
			return WH_ENOMEM;
		memset(table + c->wait_capacity, 0, (grown - c->wait_capacity) * sizeof *table);
		slot = c->wait_capacity;
		c->wait_table = table;
		c->wait_capacity = grown;
	}
	s->wait_slot = slot;
	s->wait_generation = ++c->wait_generation;
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.u64 = (uint64_t)s->wait_generation << 32 | slot };
	if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, s->fd, &ev) < 0)
		return errno == ENOMEM || errno == ENOSPC ? WH_ENOMEM : WH_ESYSTEM;
	c->wait_table[slot] = s;
	c->wait_hint = slot + 1;
	return WH_OK;
}

void client_wait_remove(struct wh_client *c, struct wh_stream *s)
{
	if (c->epoll_fd < 0 || !s->local)
		return;
	epoll_ctl(c->epoll_fd, EPOLL_CTL_DEL, s->fd, NULL); /* ENOENT after a hang-up: fine */
	if (s->wait_slot < c->wait_capacity && c->wait_table[s->wait_slot] == s) {
		c->wait_table[s->wait_slot] = NULL;
		if (s->wait_slot < c->wait_hint)
			c->wait_hint = s->wait_slot;
	}
}

void client_ready_add(struct wh_client *c, struct wh_stream *s)
{
	if (atomic_load_explicit(&s->ready, memory_order_relaxed))
		return;
	atomic_store_explicit(&s->ready, true, memory_order_relaxed);
	s->ready_next = NULL;
	s->ready_prev = c->ready_tail;
	if (c->ready_tail)
		c->ready_tail->ready_next = s;
	else
		c->ready_head = s;
	c->ready_tail = s;
}

static void ready_unlink(struct wh_client *c, struct wh_stream *s)
{
	if (s->ready_prev)
		s->ready_prev->ready_next = s->ready_next;
	else
		c->ready_head = s->ready_next;
	if (s->ready_next)
		s->ready_next->ready_prev = s->ready_prev;
	else
		c->ready_tail = s->ready_prev;
	s->ready_prev = s->ready_next = NULL;
	atomic_store_explicit(&s->ready, false, memory_order_relaxed);
}

void client_ready_remove_locked(struct wh_client *c, struct wh_stream *s)
{
	if (atomic_load_explicit(&s->ready, memory_order_relaxed))
		ready_unlink(c, s);
}

bool client_ready_take(struct wh_client *c, struct wh_stream *s)
{
	/* the flag changes only under the lock; a stale "no" costs the caller one more look at
	 * its ring, which it does anyway before it waits */
	if (!atomic_load_explicit(&s->ready, memory_order_relaxed))
		return false;
	pthread_mutex_lock(&c->streams_lock);
	bool was = atomic_load_explicit(&s->ready, memory_order_relaxed);
	if (was)
		ready_unlink(c, s);
	pthread_mutex_unlock(&c->streams_lock);
	return was;
}

/* The epoll entries of the news socket and of our own eventfd beside it; same-host streams'
 * carry a generation in the high half, never all ones. */
#define NEWS_SOCKET (UINT64_MAX - 1)
#define NEWS_SELF (UINT64_MAX - 2)

/* The epoll set, made on first use with the socket, the news socket, our own eventfd and
 * every same-host stream open now. */
static int wait_set_ready(struct wh_client *c)
{
	if (c->epoll_fd >= 0)
		return WH_OK;
	int fd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event socket_event = { .events = EPOLLIN, .data.u64 = CLIENT_NEWS };
	struct epoll_event news_event = { .events = EPOLLIN, .data.u64 = NEWS_SOCKET };
	struct epoll_event self_event = { .events = EPOLLIN, .data.u64 = NEWS_SELF };
	if (fd < 0 || epoll_ctl(fd, EPOLL_CTL_ADD, c->fd, &socket_event) < 0 ||
	    epoll_ctl(fd, EPOLL_CTL_ADD, c->news, &news_event) < 0 ||
	    epoll_ctl(fd, EPOLL_CTL_ADD, c->news_self, &self_event) < 0) {
		if (fd >= 0)
			close(fd);
		snprintf(c->detail, sizeof c->detail, "cannot make the client's epoll set: %s", strerror(errno));
		return WH_ESYSTEM;
	}
	pthread_mutex_lock(&c->streams_lock);
	c->epoll_fd = fd;
	int rc = WH_OK;
	for (struct wh_stream *s = c->streams; s && rc == WH_OK; s = s->next)
		rc = client_wait_add(c, s);
	if (rc != WH_OK) { /* back to no set: the next call tries again */
		for (struct wh_stream *s = c->streams; s; s = s->next)
			client_wait_remove(c, s);
		c->epoll_fd = -1;
		close(fd);
	}
	pthread_mutex_unlock(&c->streams_lock);
	return rc;
}

/* Streams whose bit the broker set go onto the ready list; true if any did. */
static bool collect_news(struct wh_client *c)
{
	bool found = false;
	pthread_mutex_lock(&c->streams_lock);
	for (uint32_t word = 0; word < c->slots / 64; word++) {
		uint64_t bits = notify_app_take(c->notify, c->slots, word);
		while (bits) {
			uint32_t slot = word * 64 + (uint32_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			struct wh_stream *s = c->by_slot[slot];
			if (s) { /* else: closed meanwhile, or still waiting for wh_accept */
				client_ready_add(c, s);
				found = true;
			}
		}
	}
	pthread_mutex_unlock(&c->streams_lock);
	return found;
}

/* Answers and incoming streams taken off the socket by another call and kept: news the
 * socket no longer shows. */
static bool client_has_kept_news(const struct wh_client *c)
{
	if (c->accept_head)
		return true;
	for (const struct pending_open *p = c->opens; p; p = p->next)
		if (p->answered)
			return true;
	return false;
}

/* What one epoll_wait found: same-host streams onto the ready list; true if the client
 * itself has news (a message on the socket, or its hang-up). */
static bool take_epoll_events(struct wh_client *c, const struct epoll_event *ready, int n)
{
	bool client_news = false;
	pthread_mutex_lock(&c->streams_lock);
	for (int i = 0; i < n; i++) {
		uint64_t data = ready[i].data.u64;
		if (data == CLIENT_NEWS) {
			client_news = true;
		} else if (data == NEWS_SOCKET) {
			/* the bitmap says which streams; a hang-up is the broker's, which the
			 * session socket reports too */
			if (wake_take(c->news) == WAKE_HUNG_UP)
				epoll_ctl(c->epoll_fd, EPOLL_CTL_DEL, c->news, NULL);
		} else if (data == NEWS_SELF) {
			uint64_t value;
			(void)!read(c->news_self, &value, sizeof value);
			c->news_pending = false;
		} else {
			uint32_t slot = (uint32_t)data, generation = (uint32_t)(data >> 32);
			struct wh_stream *s = slot < c->wait_capacity ? c->wait_table[slot] : NULL;
			if (!s || s->wait_generation != generation)
				continue; /* closed meanwhile */
			client_ready_add(c, s);
			/* its partner is gone and the rings say how: reported once, as news, then
			 * left out of the set (a hang-up stays readable for ever) */
			if (ready[i].events & (EPOLLHUP | EPOLLERR))
				epoll_ctl(c->epoll_fd, EPOLL_CTL_DEL, s->fd, NULL);
		}
	}
	pthread_mutex_unlock(&c->streams_lock);
	return client_news;
}

/* Up to max events: the client's news first, then ready streams, which move to the back of
 * the list (they stay on it until a call on them finds nothing to do), so that a long list
 * is reported in turns. While news remains, our own eventfd is left readable, so that
 * wh_client_wait_fd stays readable as long as this call would report something. */
static int report(struct wh_client *c, bool client_news, struct wh_event *events, int max)
{
	int count = 0;
	if (client_news)
		events[count++] = (struct wh_event){ .stream = NULL, .events = WH_EVENT_NEWS };
	pthread_mutex_lock(&c->streams_lock);
	struct wh_stream *last = c->ready_tail;
	while (count < max && c->ready_head) {
		struct wh_stream *s = c->ready_head;
		events[count++] = (struct wh_event){ .stream = s, .events = WH_EVENT_NEWS };
		if (s == last)
			break; /* each stream once per call; the last one stays where it is */
		/* to the back, its flag untouched (another thread may look at it unlocked) */
		c->ready_head = s->ready_next;
		c->ready_head->ready_prev = NULL;
		s->ready_prev = c->ready_tail;
		s->ready_next = NULL;
		c->ready_tail->ready_next = s;
		c->ready_tail = s;
	}
	bool more = c->ready_head != NULL;
	pthread_mutex_unlock(&c->streams_lock);
	if (more || client_news)
		signal_news(c);
	return count;
}

int wh_client_wait(wh_client *c, struct wh_event *events, int max, int timeout_ms)
{
	if (!c || !events || max <= 0)
		return WH_EINVAL;
	int rc = wait_set_ready(c);
	if (rc != WH_OK)
		return rc;
	int64_t deadline = timeout_ms > 0 ? wh_now_ns() + (int64_t)timeout_ms * 1000000 : 0;
	bool block = false;
	for (;;) {
		int wait_ms = 0;
		if (block && timeout_ms < 0) {
			wait_ms = -1;
		} else if (block) {
			int64_t left = deadline - wh_now_ns();
			wait_ms = left > 0 ? (int)((left + 999999) / 1000000) : 0;
		}
		struct epoll_event ready[64];
		int n = epoll_wait(c->epoll_fd, ready, 64, wait_ms);
		notify_app_disarm(c->notify); /* awake: the bitmap is enough until we sleep again */
		if (n < 0 && errno != EINTR) {
			snprintf(c->detail, sizeof c->detail, "waiting on the client's epoll set: %s", strerror(errno));
			return WH_ESYSTEM;
		}
		bool client_news = take_epoll_events(c, ready, n > 0 ? n : 0) || client_has_kept_news(c);
		collect_news(c);
		int count = report(c, client_news, events, max);
		if (count > 0)
			return count;
		/* Nothing: ask the broker for a wake-up, then look once more, so that a bit set
		 * between the scan and the arming is not slept through. We stay armed when we
		 * return empty-handed: an app's own loop then sleeps on wh_client_wait_fd. */
		notify_app_arm(c->notify);
		if (collect_news(c)) {
			block = false;
			continue;
		}
		if (timeout_ms == 0 || (block && timeout_ms > 0 && wh_now_ns() >= deadline))
			return 0;
		block = true;
	}
}

int wh_client_wait_fd(wh_client *c)
{
	return c && wait_set_ready(c) == WH_OK ? c->epoll_fd : -1;
}

int wh_client_attach(const char *socket_path, wh_client **out)
{
	return wh_client_attach_detail(socket_path, out, NULL, 0);
}

const char *wh_client_errmsg(const wh_client *c)
{
	return c ? c->detail : "";
}

void wh_client_detach(wh_client *c)
{
	if (!c)
		return;
	while (c->streams)
		wh_close(c->streams);
	while (c->opens)
		forget_open(c, c->opens);
	while (c->accept_head) {
		struct pending_stream *p = c->accept_head;
		c->accept_head = p->next;
		close_fds(p->fds, attach_fd_count(&p->msg));
		free(p);
	}
	close(c->fd);
	close(c->doorbell);
	close(c->news);
	close(c->news_self);
	if (c->epoll_fd >= 0)
		close(c->epoll_fd);
	free(c->wait_table);
	free(c->by_slot);
	munmap(c->notify, c->notify_size);
	pthread_mutex_destroy(&c->streams_lock);
	free(c);
}

int wh_client_fd(const wh_client *c)
{
	return c->fd;
}

const char *wh_client_id(const wh_client *c)
{
	return c->id;
}

/* Every failed call leaves words for wh_client_errmsg: the broker's when it gave some (the
 * caller wrote them already), else the library's, saying for WH_EBROKER_GONE where to look.
 * Returns rc, so that failures read `return client_failed(c, rc);`. */
static int client_failed(struct wh_client *c, int rc)
{
	if (rc >= 0 || c->detail[0])
		return rc;
	if (rc == WH_EBROKER_GONE)
		snprintf(c->detail, sizeof c->detail, "the broker closed the session (it stopped, or dropped "
			 "this app: its log says why)");
	else
		snprintf(c->detail, sizeof c->detail, "%s", wh_strerror(rc));
	return rc;
}

/* Sends a request and takes its RESULT: WH_OK or the broker's error. */
static int request(struct wh_client *c, struct attach_msg *req, int timeout_ms, struct attach_msg *reply,
		   int fds[ATTACH_MAX_FDS])
{
	req->request_id = ++c->next_request;
	c->detail[0] = '\0';
	int rc = client_send(c, req);
	if (rc == WH_OK)
		rc = await_reply(c, req->request_id, timeout_ms, reply, fds);
	if (rc == WH_OK && reply->type == ATTACH_RESULT) {
		if (reply->error != WH_OK)
			snprintf(c->detail, sizeof c->detail, "%s", reply->message[0] ? reply->message
											: wh_strerror(reply->error));
		return reply->error;
	}
	return client_failed(c, rc);
}

static bool name_ok(const char *name)
{
	return !name || strlen(name) <= ATTACH_STRING_MAX;
}

int wh_open_start(wh_client *c, const char *peer, const char *service, int timeout_ms, uint64_t *ticket)
{
	if (!c || !ticket || !peer || !name_ok(peer) || !name_ok(service))
		return WH_EINVAL;
	*ticket = 0;
	struct pending_open *p = calloc(1, sizeof *p);
	if (!p)
		return WH_ENOMEM;
	/* The broker keeps the deadline (it answers by then, and opens nothing after it); the
	 * bound here has some grace for the answer to arrive, and covers a broker that hangs. */
	struct attach_msg req = { .type = ATTACH_OPEN, .request_id = ++c->next_request,
				  .timeout_ms = timeout_ms < 0 ? ATTACH_NO_TIMEOUT : (uint32_t)timeout_ms };
	snprintf(req.peer, sizeof req.peer, "%s", peer);
	snprintf(req.service, sizeof req.service, "%s", service ? service : "");
	c->detail[0] = '\0';
	int rc = client_send(c, &req);
	if (rc != WH_OK) {
		free(p);
		snprintf(c->detail, sizeof c->detail, "%s", wh_strerror(rc));
		return rc;
	}
	p->request_id = req.request_id;
	p->give_up = timeout_ms < 0 ? 0 : wh_now_ns() + ((int64_t)timeout_ms + OPEN_ANSWER_GRACE_MS) * 1000000;
	memcpy(p->peer, req.peer, sizeof p->peer);
	memcpy(p->service, req.service, sizeof p->service);
	p->next = c->opens;
	c->opens = p;
	*ticket = p->request_id;
	return WH_OK;
}

/* Takes every message waiting on the socket now, without blocking: answers to started
 * opens are kept, incoming streams queued. WH_OK, or WH_EBROKER_GONE / WH_EPROTOCOL. */
static int take_waiting_messages(struct wh_client *c)
{
	for (;;) {
		struct attach_msg msg;
		int fds[ATTACH_MAX_FDS];
		int rc = receive(c, 0, &msg, fds);
		if (rc == WH_EWOULDBLOCK)
			return WH_OK;
		if (rc != WH_OK)
			return rc;
		dispatch_other(c, &msg, fds);
	}
}

int wh_open_result(wh_client *c, uint64_t ticket, wh_stream **out)
{
	if (!c || !out)
		return WH_EINVAL;
	*out = NULL;
	struct pending_open *p = ticket <= UINT32_MAX ? find_open(c, (uint32_t)ticket) : NULL;
	if (!p)
		return WH_EINVAL;
	if (!p->answered) {
		int rc = take_waiting_messages(c);
		if (!p->answered) {
			if (rc == WH_OK && p->give_up && wh_now_ns() >= p->give_up)
				rc = WH_ETIMEOUT; /* the broker did not keep its deadline: it hangs */
			if (rc == WH_OK)
				return WH_EWOULDBLOCK;
			snprintf(c->detail, sizeof c->detail, "%s", wh_strerror(rc));
			forget_open(c, p); /* an answer arriving later is handed back */
			return rc;
		}
	}
	struct attach_msg answer = p->answer;
	int fds[ATTACH_MAX_FDS];
	memcpy(fds, p->fds, sizeof fds);
	char peer[ATTACH_STRING_MAX + 1], service[ATTACH_STRING_MAX + 1];
	memcpy(peer, p->peer, sizeof peer);
	memcpy(service, p->service, sizeof service);
	p->answered = false; /* the answer is ours now: forget_open must not hand it back */
	forget_open(c, p);
	if (answer.type == ATTACH_RESULT) {
		int error = answer.error < 0 ? answer.error : WH_EPROTOCOL;
		snprintf(c->detail, sizeof c->detail, "%s", answer.message[0] ? answer.message : wh_strerror(error));
		return error;
	}
	/* OPENED names neither peer nor service: they are what we asked for */
	memcpy(answer.peer, peer, sizeof answer.peer);
	memcpy(answer.service, service, sizeof answer.service);
	c->detail[0] = '\0';
	int rc = stream_from_message(c, &answer, fds, out);
	if (rc != WH_OK)
		tell_broker(c, ATTACH_RELEASE, answer.handle); /* nothing of it stays in the broker */
	return client_failed(c, rc);
}

int wh_open_cancel(wh_client *c, uint64_t ticket)
{
	struct pending_open *p = c && ticket <= UINT32_MAX ? find_open(c, (uint32_t)ticket) : NULL;
	if (!p)
		return WH_EINVAL;
	forget_open(c, p); /* a stream already here is handed back; one still coming will be */
	return WH_OK;
}

int wh_open(wh_client *c, const char *peer, const char *service, int timeout_ms, wh_stream **out)
{
	if (!c || !out)
		return WH_EINVAL;
	*out = NULL;
	uint64_t ticket;
	int rc = wh_open_start(c, peer, service, timeout_ms, &ticket);
	while (rc == WH_OK && (rc = wh_open_result(c, ticket, out)) == WH_EWOULDBLOCK) {
		struct pending_open *p = find_open(c, (uint32_t)ticket);
		int wait_ms = -1;
		if (p && p->give_up) {
			int64_t left = p->give_up - wh_now_ns();
			wait_ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
		}
		struct pollfd pfd = { c->fd, POLLIN, 0 };
		if (poll(&pfd, 1, wait_ms) < 0 && errno != EINTR) {
			wh_open_cancel(c, ticket);
			return WH_ESYSTEM;
		}
		rc = WH_OK;
	}
	return rc;
}

static int listen_request(wh_client *c, const char *service, enum attach_type type)
{
	if (!c || !name_ok(service))
		return WH_EINVAL;
	struct attach_msg req = { .type = type }, reply;
	snprintf(req.service, sizeof req.service, "%s", service ? service : "");
	int fds[ATTACH_MAX_FDS];
	return request(c, &req, 10000, &reply, fds);
}

int wh_listen(wh_client *c, const char *service)
{
	return listen_request(c, service, ATTACH_LISTEN);
}

int wh_unlisten(wh_client *c, const char *service)
{
	return listen_request(c, service, ATTACH_UNLISTEN);
}

int wh_accept(wh_client *c, int timeout_ms, wh_stream **out)
{
	if (!c || !out)
		return WH_EINVAL;
	*out = NULL;
	c->detail[0] = '\0';
	int64_t deadline = timeout_ms < 0 ? 0 : wh_now_ns() + (int64_t)timeout_ms * 1000000;
	while (!c->accept_head) {
		int wait_ms = -1;
		if (deadline) {
			int64_t left = deadline - wh_now_ns();
			wait_ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
		}
		struct attach_msg msg;
		int fds[ATTACH_MAX_FDS];
		int rc = receive(c, wait_ms, &msg, fds);
		if (rc == WH_ETIMEOUT || rc == WH_EWOULDBLOCK)
			return client_failed(c, timeout_ms == 0 ? WH_EWOULDBLOCK : WH_ETIMEOUT);
		if (rc != WH_OK)
			return client_failed(c, rc);
		dispatch_other(c, &msg, fds);
	}
	struct pending_stream *p = c->accept_head;
	c->accept_head = p->next;
	if (!c->accept_head)
		c->accept_tail = NULL;
	int rc = stream_from_message(c, &p->msg, p->fds, out);
	tell_broker(c, rc == WH_OK ? ATTACH_ACCEPTED : ATTACH_RELEASE, p->msg.handle);
	free(p);
	return client_failed(c, rc);
}

int wh_client_stats(wh_client *c, struct wh_client_stats *stats)
{
	if (!c || !stats)
		return WH_EINVAL;
	memset(stats, 0, sizeof *stats);
	struct attach_msg req = { .type = ATTACH_STATS }, reply;
	int fds[ATTACH_MAX_FDS];
	int rc = request(c, &req, 10000, &reply, fds);
	if (rc != WH_OK)
		return rc;
	if (reply.type != ATTACH_STATS_REPLY) /* no fds: a STATS_REPLY or RESULT carries none */
		return client_failed(c, WH_EPROTOCOL);
	/* A broker may know more counters than we do (ignored) or fewer (left 0). */
	struct attach_stats known;
	attach_stats_unpack(&reply, &known);
#define COPY_COUNTER(name, kind, unit, help) stats->name = known.name;
	ATTACH_STATS_TABLE(COPY_COUNTER)
#undef COPY_COUNTER
	return WH_OK;
}
