/* A hostile local app: every way an app can abuse the attach socket and its shared memory.
 *
 *   hostile-app ATTACK SOCKET [PEER]
 *
 * It speaks the attach protocol by hand (shared/attach_msg.h), not through libwormholeclient, so
 * it can send what the library never would. Each attack checks that the broker ended only
 * the offending session (with a RESULT that says why, where there is one to send) or stream,
 * and that the broker still answers. PEER names a peer broker for attacks that need a stream
 * whose rings the broker itself reads. Exit status 0 when the broker behaved, 1 otherwise
 * (the reason on stderr), 2 for bad arguments; `hostile-app list` prints the attacks.
 * tests/integration/check_hostile_apps.c runs them against a live broker.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "attach_fds.h"
#include "attach_msg.h"
#include "ring.h"

static const char *socket_path, *peer = "";

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *why)
{
	fprintf(stderr, "hostile-app: %s\n", why);
	return 1;
}

static int connect_raw(void)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool send_bytes(int fd, const void *bytes, size_t length, int pass_fd)
{
	struct iovec iov = { (void *)bytes, length };
	union attach_control control;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	attach_fds_put(&msg, &control, &pass_fd, pass_fd >= 0 ? 1 : 0);
	return sendmsg(fd, &msg, MSG_NOSIGNAL) == (ssize_t)length;
}

static bool send_msg(int fd, const struct attach_msg *msg)
{
	uint8_t bytes[ATTACH_MESSAGE_MAX];
	int n = attach_encode(bytes, sizeof bytes, msg);
	return n > 0 && send_bytes(fd, bytes, (size_t)n, -1);
}

/* The next message within timeout_ms, with its fds; false at EOF, timeout or garbage. */
static bool receive(int fd, struct attach_msg *msg, int fds[ATTACH_MAX_FDS], int timeout_ms)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	if (poll(&pfd, 1, timeout_ms) <= 0)
		return false;
	uint8_t buffer[ATTACH_MESSAGE_MAX];
	union {
		char buf[CMSG_SPACE(sizeof(int) * ATTACH_MAX_FDS)];
		struct cmsghdr align;
	} control;
	struct iovec iov = { buffer, sizeof buffer };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			    .msg_controllen = sizeof control.buf };
	ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
	if (n <= 0 || attach_decode(buffer, (size_t)n, msg) != WH_OK)
		return false;
	unsigned count = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
		for (size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int) && count < ATTACH_MAX_FDS; k++)
			memcpy(&fds[count++], CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
	for (unsigned i = count; i < ATTACH_MAX_FDS; i++)
		fds[i] = -1;
	return true;
}

static void close_fds(const int fds[ATTACH_MAX_FDS])
{
	for (unsigned i = 0; i < ATTACH_MAX_FDS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* The broker answered the offence with RESULT(error), then hung up; its words are copied to
 * said (ATTACH_STRING_MAX + 1 bytes) when given. */
static bool refused_then_closed_saying(int fd, int error, char *said)
{
	struct attach_msg reply;
	int fds[ATTACH_MAX_FDS];
	if (!receive(fd, &reply, fds, 5000) || reply.type != ATTACH_RESULT || reply.error != error)
		return false;
	if (said)
		snprintf(said, ATTACH_STRING_MAX + 1, "%s", reply.message);
	close_fds(fds);
	uint8_t byte[ATTACH_MESSAGE_MAX];
	struct pollfd pfd = { fd, POLLIN, 0 };
	return poll(&pfd, 1, 5000) == 1 && recv(fd, byte, sizeof byte, 0) == 0;
}

/* A session's doorbell, for attacks that make the broker look at their rings. */
struct doorbell {
	int fd;
	int news; /* the descriptor the broker wakes us on (closed unless an attack keeps it) */
	struct notify_segment *notify;
	size_t size;
	uint32_t slots;
};

/* A session that said HELLO and got WELCOME; its doorbell kept if bell is not NULL (else
 * its fds are closed). -1 on failure. */
static int attach_with(struct doorbell *bell)
{
	int fd = connect_raw();
	struct attach_msg hello = { .type = ATTACH_HELLO, .request_id = 1, .version = ATTACH_VERSION,
				 .pid = (uint32_t)getpid() }, reply;
	int fds[ATTACH_MAX_FDS];
	if (fd < 0 || !send_msg(fd, &hello) || !receive(fd, &reply, fds, 5000) ||
	    reply.type != ATTACH_WELCOME) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (bell) {
		bell->fd = fds[0];
		bell->slots = reply.max_streams;
		bell->size = notify_segment_size(reply.max_streams);
		bell->notify = mmap(NULL, bell->size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
		close(fds[1]);
		bell->news = fds[2]; /* this app never sleeps on it: kept for the attacks on it */
		if (bell->notify == MAP_FAILED) {
			close(fd);
			return -1;
		}
		return fd;
	}
	close_fds(fds);
	return fd;
}

/* Says "stream `slot` has news", as the library does: its bit, then the doorbell. */
static void ring_doorbell(const struct doorbell *bell, uint32_t slot)
{
	uint64_t one = 1;
	notify_ring(bell->notify, bell->slots, slot);
	(void)!write(bell->fd, &one, sizeof one);
}

static int attach(void)
{
	return attach_with(NULL);
}

/* A request and its reply (INCOMING messages met on the way are dropped, fds closed). */
static bool request(int fd, struct attach_msg *req, struct attach_msg *reply, int fds[ATTACH_MAX_FDS])
{
	static uint32_t next_id = 100;
	req->request_id = ++next_id;
	if (!send_msg(fd, req))
		return false;
	while (receive(fd, reply, fds, 5000)) {
		if (reply->request_id == req->request_id && reply->type != ATTACH_INCOMING)
			return true;
		close_fds(fds);
	}
	return false;
}

/* Whether the session still answers (STATS), then ends it: unmaps the stream's segment and
 * the doorbell's, closes the stream's descriptors, the doorbell and the session. */
static bool served_then_ended(int fd, struct doorbell *bell, struct ring_segment *segment,
			      size_t size, int fds[ATTACH_MAX_FDS])
{
	struct attach_msg stats = { .type = ATTACH_STATS }, reply;
	int ignored[ATTACH_MAX_FDS];
	bool alive = request(fd, &stats, &reply, ignored) && reply.type == ATTACH_STATS_REPLY;
	munmap(segment, size);
	munmap(bell->notify, bell->size);
	close(bell->fd);
	close(bell->news);
	close_fds(fds);
	close(fd);
	return alive;
}

/* The broker still serves a fresh session: the offence was contained. */
static bool broker_serves(void)
{
	int fd = attach();
	if (fd < 0)
		return false;
	struct attach_msg req = { .type = ATTACH_STATS }, reply;
	int fds[ATTACH_MAX_FDS];
	bool ok = request(fd, &req, &reply, fds) && reply.type == ATTACH_STATS_REPLY;
	close(fd);
	return ok;
}

/* The offence ends the session with RESULT WH_EPROTOCOL whose words name it (`names`). */
static int expect_refusal(const void *bytes, size_t length, int pass_fd, bool after_hello,
			  const char *what, const char *names)
{
	int fd = after_hello ? attach() : connect_raw();
	if (fd < 0)
		return fail("cannot attach");
	if (!send_bytes(fd, bytes, length, pass_fd)) {
		close(fd);
		return fail("send failed");
	}
	char said[ATTACH_STRING_MAX + 1] = "";
	bool ok = refused_then_closed_saying(fd, WH_EPROTOCOL, said);
	close(fd);
	if (!ok) {
		fprintf(stderr, "hostile-app: %s: ", what);
		return fail("no RESULT WH_EPROTOCOL followed by a hang-up");
	}
	if (!strstr(said, names)) {
		fprintf(stderr, "hostile-app: %s: the broker said \"%s\", not \"%s\": ", what, said, names);
		return fail("the refusal does not name the offence");
	}
	return broker_serves() ? 0 : fail("the broker does not serve new sessions afterwards");
}

/* ---- malformed and misplaced messages -------------------------------------------------- */

static int attack_before_hello(void)
{
	uint8_t release[] = { ATTACH_VERSION, ATTACH_RELEASE, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
	return expect_refusal(release, sizeof release, -1, false, "RELEASE before HELLO", "the first message must be HELLO");
}

static int attack_hello_version(void)
{
	struct attach_msg hello = { .type = ATTACH_HELLO, .request_id = 1, .version = 99 };
	uint8_t bytes[ATTACH_MESSAGE_MAX];
	int n = attach_encode(bytes, sizeof bytes, &hello);
	return expect_refusal(bytes, (size_t)n, -1, false, "HELLO version 99", "unsupported protocol version");
}

static int attack_double_hello(void)
{
	struct attach_msg hello = { .type = ATTACH_HELLO, .request_id = 2, .version = ATTACH_VERSION };
	uint8_t bytes[ATTACH_MESSAGE_MAX];
	int n = attach_encode(bytes, sizeof bytes, &hello);
	return expect_refusal(bytes, (size_t)n, -1, true, "a second HELLO", "HELLO was already said");
}

static int attack_broker_type(void)
{
	struct attach_msg result = { .type = ATTACH_RESULT, .request_id = 3, .error = 0 };
	uint8_t bytes[ATTACH_MESSAGE_MAX];
	int n = attach_encode(bytes, sizeof bytes, &result);
	return expect_refusal(bytes, (size_t)n, -1, true, "a broker-only message type", "message type not accepted from an app");
}

static int attack_fds_attached(void)
{
	struct attach_msg stats = { .type = ATTACH_STATS, .request_id = 4 };
	uint8_t bytes[ATTACH_MESSAGE_MAX];
	int n = attach_encode(bytes, sizeof bytes, &stats);
	int extra = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int rc = expect_refusal(bytes, (size_t)n, extra, true, "a descriptor attached", "descriptors sent with an attach message");
	close(extra);
	return rc;
}

static int attack_oversize(void)
{
	static uint8_t big[ATTACH_MESSAGE_MAX * 2];
	big[0] = ATTACH_VERSION;
	big[1] = ATTACH_STATS;
	return expect_refusal(big, sizeof big, -1, true, "a message over the size limit", "attach message too long");
}

/* Every malformed shape, each on a session of its own. */
static int attack_malformed_each(void)
{
	static const struct {
		const char *what;
		uint8_t bytes[16];
		size_t length;
		const char *names; /* what the RESULT must say */
	} shapes[] = {
		{ "garbage", { 9, 9, 9, 9, 9, 9, 9, 9, 9 }, 9, "another protocol version" },
		{ "short header", { ATTACH_VERSION, ATTACH_STATS, 0 }, 3, "shorter than the 8-byte header" },
		{ "reserved bits", { ATTACH_VERSION, ATTACH_STATS, 1, 0, 0, 0, 0, 0 }, 8, "reserved header bits" },
		{ "unknown type", { ATTACH_VERSION, 99, 0, 0, 0, 0, 0, 0 }, 8, "unknown message type" },
		{ "trailing bytes", { ATTACH_VERSION, ATTACH_STATS, 0, 0, 0, 0, 0, 0, 1 }, 9, "bytes after the last field" },
		{ "string past the end", { ATTACH_VERSION, ATTACH_LISTEN, 0, 0, 0, 0, 0, 0, 200, 'a' }, 10,
		  "runs past the end" },
		{ "NUL in a string", { ATTACH_VERSION, ATTACH_LISTEN, 0, 0, 0, 0, 0, 0, 3, 'a', 0, 'b' }, 12,
		  "a string holds a NUL" },
		{ "short RELEASE", { ATTACH_VERSION, ATTACH_RELEASE, 0, 0, 0, 0, 0, 0, 1, 2, 3 }, 11, "runs past the end" },
	};
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		int rc = expect_refusal(shapes[i].bytes, shapes[i].length, -1, true, shapes[i].what, shapes[i].names);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- an app that asks and never reads the answers ------------------------------------- */

static int attack_never_read(void)
{
	int fd = attach();
	if (fd < 0)
		return fail("cannot attach");
	struct attach_msg stats = { .type = ATTACH_STATS };
	uint8_t bytes[ATTACH_MESSAGE_MAX];
	int n = attach_encode(bytes, sizeof bytes, &stats);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	bool dropped = false; /* or held back: the broker stops reading past 256 unread answers */
	for (int i = 0; i < 1000000 && !dropped; i++)
		dropped = send(fd, bytes, (size_t)n, MSG_NOSIGNAL) < 0;
	close(fd);
	if (!dropped)
		return fail("an app that never reads its answers was never dropped");
	return broker_serves() ? 0 : fail("the broker does not serve new sessions afterwards");
}

/* The same, watched: the broker stops reading an app that leaves REPLY_BACKLOG (256)
 * answers unread instead of answering a queue's worth (app-max-streams + 256) and dropping
 * it, and reads it again once it has read its answers. Before, the broker took ~17,000
 * requests a run at the defaults and the app attached again at once (a good bulk stream kept
 * 0.57 of its speed). */
static bool send_held(int fd, const uint8_t *bytes, size_t n, unsigned long *sent)
{
	for (;;) {
		if (send(fd, bytes, n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n) {
			(*sent)++;
			continue;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return false; /* dropped */
		struct pollfd p = { fd, POLLOUT, 0 };
		if (poll(&p, 1, 500) == 0)
			return true; /* the broker stopped reading us */
		if (p.revents & (POLLERR | POLLHUP))
			return false;
	}
}

static int attack_never_read_held(void)
{
	int fd = attach();
	if (fd < 0)
		return fail("cannot attach");
	struct attach_msg stats = { .type = ATTACH_STATS };
	uint8_t bytes[ATTACH_MESSAGE_MAX];
	int n = attach_encode(bytes, sizeof bytes, &stats);
	unsigned long sent = 0;
	if (!send_held(fd, bytes, (size_t)n, &sent))
		return fail("an app that never read its answers was dropped, not held back");
	fprintf(stderr, "hostile-app: held back after %lu requests\n", sent);
	/* the socket buffers (a few hundred each way) and 256 queued answers */
	if (sent > 5000)
		return fail("the broker answered too many requests nobody read");
	/* reading the answers lets the requests in again */
	uint8_t answer[ATTACH_MESSAGE_MAX + 1];
	unsigned long answers = 0;
	struct pollfd p = { fd, POLLIN, 0 };
	while (answers < sent && poll(&p, 1, 2000) > 0 && recv(fd, answer, sizeof answer, 0) > 0)
		answers++;
	if (answers != sent)
		return fail("not every request was answered once the answers were read");
	unsigned long more = 0;
	if (!send_held(fd, bytes, (size_t)n, &more) || more == 0)
		return fail("requests were not read again after the answers were");
	close(fd);
	return broker_serves() ? 0 : fail("the broker does not serve new sessions afterwards");
}

/* ---- same-host teardown orders --------------------------------------------------------- */

static bool listen_on(int fd, const char *service)
{
	struct attach_msg req = { .type = ATTACH_LISTEN }, reply;
	int fds[ATTACH_MAX_FDS];
	snprintf(req.service, sizeof req.service, "%s", service);
	return request(fd, &req, &reply, fds) && reply.type == ATTACH_RESULT && reply.error == WH_OK;
}

/* OPEN and its answer: OPENED (fds in fds[]) or RESULT (*error). */
static bool open_stream(int fd, const char *to, const char *service, struct attach_msg *reply,
			int fds[ATTACH_MAX_FDS])
{
	struct attach_msg req = { .type = ATTACH_OPEN };
	snprintf(req.peer, sizeof req.peer, "%s", to);
	snprintf(req.service, sizeof req.service, "%s", service);
	return request(fd, &req, reply, fds);
}

static int attack_local_teardown(void)
{
	/* the listener goes first, then the opener: ordinary app behaviour */
	int listener = attach(), opener = attach();
	if (listener < 0 || opener < 0 || !listen_on(listener, "teardown"))
		return fail("cannot set up");
	struct attach_msg reply;
	int fds[ATTACH_MAX_FDS];
	if (!open_stream(opener, "local", "teardown", &reply, fds) || reply.type != ATTACH_OPENED)
		return fail("local open failed");
	close_fds(fds);
	close(listener);
	usleep(50000); /* let the broker see them go in this order */
	close(opener);
	/* and an app with a stream to its own listener */
	int self = attach();
	if (self < 0 || !listen_on(self, "self") || !open_stream(self, "local", "self", &reply, fds) ||
	    reply.type != ATTACH_OPENED)
		return fail("self open failed");
	close_fds(fds);
	close(self);
	return broker_serves() ? 0 : fail("the broker does not serve new sessions afterwards");
}

/* ---- shared memory ------------------------------------------------------------------- */

/* A stream to PEER's echo whose segment the app then damages in `how`: the broker must end
 * that stream (the app sees its receive ring failed), and only that stream. */
static int damage_segment(int how)
{
	if (!peer[0])
		return fail("this attack needs a PEER");
	struct doorbell bell;
	int fd = attach_with(&bell);
	if (fd < 0)
		return fail("cannot attach");
	struct attach_msg reply;
	int fds[ATTACH_MAX_FDS];
	if (!open_stream(fd, peer, "echo", &reply, fds) || reply.type != ATTACH_OPENED)
		return fail("open to the peer's echo failed");
	size_t size = ring_segment_size(reply.ring_capacity);
	if (ftruncate(fds[0], 4096) == 0 || ftruncate(fds[0], (off_t)size * 2) == 0)
		return fail("the segment is not sealed against resizing");
	struct ring_segment *segment = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (segment == MAP_FAILED)
		return fail("cannot map the segment");
	struct ring_producer tx;
	ring_producer_attach(&tx, segment, reply.ring_capacity, reply.tx_ring);
	ring_producer_write(&tx, "hello", 5);
	ring_doorbell(&bell, reply.slot);
	/* the echo comes back: the broker has consumed what we wrote and produced as much */
	unsigned rx_ring = reply.tx_ring ^ 1u;
	double deadline = now() + 5;
	while (atomic_load(&segment->rings[rx_ring].head) < 5 && now() < deadline)
		usleep(10000); /* polling a condition with a deadline */
	if (how == 0) /* positions far beyond anything written */
		atomic_store(&segment->rings[reply.tx_ring].head, 1ull << 40);
	else if (fallocate(fds[0], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size) < 0)
		return fail("cannot punch a hole in the segment");
	/* ring the doorbell for that stream again, as the library would */
	ring_doorbell(&bell, reply.slot);
	deadline = now() + 5;
	while (atomic_load(&segment->rings[rx_ring].producer_state) != RING_FAILED && now() < deadline)
		usleep(10000); /* polling a condition with a deadline */
	bool ended = atomic_load(&segment->rings[rx_ring].producer_state) == RING_FAILED;
	bool alive = served_then_ended(fd, &bell, segment, size, fds);
	if (!ended)
		return fail("the broker did not end the stream whose ring was damaged");
	if (!alive)
		return fail("the session was not served after damaging its own segment");
	return broker_serves() ? 0 : fail("the broker does not serve new sessions afterwards");
}

/* STREAM_FD, the one message that carries a descriptor, misused every way: without it (the
 * session ends), with what is not a Unix SOCK_SEQPACKET socket, for a handle that is not
 * ours, and asked again and again for one stream (each socket replaces the one before: the
 * broker holds at most one per stream). A socket it keeps is sent a wake-up at a wake-up;
 * one it drops hangs up. */
static bool hangs_up(int read_end, int timeout_ms)
{
	struct pollfd pfd = { read_end, POLLIN, 0 };
	char byte;
	double deadline = now() + timeout_ms / 1000.0;
	while (now() < deadline) {
		if (poll(&pfd, 1, 100) > 0 && read(read_end, &byte, 1) == 0)
			return true;
	}
	return false;
}

static int attack_stream_fd(void)
{
	if (!peer[0])
		return fail("this attack needs a PEER");
	struct attach_msg bare = { .type = ATTACH_STREAM_FD, .request_id = 5, .handle = 1 };
	uint8_t bytes[ATTACH_MESSAGE_MAX];
	int n = attach_encode(bytes, sizeof bytes, &bare);
	int rc = expect_refusal(bytes, (size_t)n, -1, true, "STREAM_FD without a descriptor", "STREAM_FD without its descriptor");
	if (rc)
		return rc;
	struct doorbell bell;
	int fd = attach_with(&bell);
	struct attach_msg reply;
	int fds[ATTACH_MAX_FDS];
	if (fd < 0 || !open_stream(fd, peer, "echo", &reply, fds) || reply.type != ATTACH_OPENED)
		return fail("open to the peer's echo failed");
	struct attach_msg msg = { .type = ATTACH_STREAM_FD, .handle = reply.handle };
	n = attach_encode(bytes, sizeof bytes, &msg);
	/* not a Unix SOCK_SEQPACKET socket: a pipe's write end (what version 4 took), /dev/null,
	 * a stream socket, the stream's own segment */
	int pipe_fds[2], stream_fds[2];
	if (pipe(pipe_fds) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, stream_fds) < 0)
		return fail("pipe");
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	int wrong[] = { pipe_fds[1], devnull, stream_fds[1], fds[0] };
	for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
		if (!send_bytes(fd, bytes, (size_t)n, wrong[i]))
			return fail("send failed");
	close(devnull);
	close(pipe_fds[0]);
	close(pipe_fds[1]);
	close(stream_fds[0]);
	close(stream_fds[1]);
	/* a socket for a handle that is not ours: dropped, so our end hangs up */
	struct attach_msg stranger = { .type = ATTACH_STREAM_FD, .handle = reply.handle + 1000 };
	uint8_t stranger_bytes[ATTACH_MESSAGE_MAX];
	int stranger_n = attach_encode(stranger_bytes, sizeof stranger_bytes, &stranger);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pipe_fds) < 0 ||
	    !send_bytes(fd, stranger_bytes, (size_t)stranger_n, pipe_fds[1]))
		return fail("send failed");
	close(pipe_fds[1]);
	if (!hangs_up(pipe_fds[0], 5000))
		return fail("a socket for a handle that is not ours was kept");
	close(pipe_fds[0]);
	/* one stream asked 2,000 times: each socket replaces the one before, which hangs up */
	int last = -1;
	for (int i = 0; i < 2000; i++) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pipe_fds) < 0 ||
		    !send_bytes(fd, bytes, (size_t)n, pipe_fds[1]))
			return fail("send failed");
		close(pipe_fds[1]);
		if (last >= 0)
			close(last);
		last = pipe_fds[0];
	}
	/* the last one is kept and told of news: say we wait for bytes, send some, the echo
	 * brings them back and the broker sends a wake-up on the socket */
	size_t size = ring_segment_size(reply.ring_capacity);
	struct ring_segment *segment = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (segment == MAP_FAILED)
		return fail("cannot map the segment");
	struct ring_producer tx;
	struct ring_consumer rx;
	ring_producer_attach(&tx, segment, reply.ring_capacity, reply.tx_ring);
	ring_consumer_attach(&rx, segment, reply.ring_capacity, reply.tx_ring ^ 1u);
	ring_consumer_prepare_wait(&rx);
	ring_producer_write(&tx, "hello", 5);
	ring_doorbell(&bell, reply.slot);
	struct pollfd pfd = { last, POLLIN, 0 };
	bool told = poll(&pfd, 1, 5000) == 1 && (pfd.revents & POLLIN);
	char byte;
	told = told && read(last, &byte, 1) == 1;
	/* the session ends: the broker lets go of the stream and of its socket */
	bool alive = served_then_ended(fd, &bell, segment, size, fds);
	bool let_go = hangs_up(last, 5000);
	close(last);
	if (!told)
		return fail("the socket the broker kept got no wake-up");
	if (!alive)
		return fail("the session was not served after misused STREAM_FDs");
	if (!let_go)
		return fail("the broker kept the socket after the session ended");
	return broker_serves() ? 0 : fail("the broker does not serve new sessions afterwards");
}

static int attack_corrupt_positions(void) { return damage_segment(0); }
static int attack_punch_hole(void) { return damage_segment(1); }

/* ---- exhaustion ---------------------------------------------------------------------- */

/* Same-host streams to a listener that never accepts nor reads, until the broker refuses:
 * every OPEN gets an answer, and a new app can still attach (the reserve). Then sessions
 * until the broker refuses those too: each refused attach is told why. Run it against a
 * broker with a small --max-fds. */
static int attack_exhaust(void)
{
	int listener = attach(), opener = attach();
	if (listener < 0 || opener < 0 || !listen_on(listener, "sink"))
		return fail("cannot set up");
	unsigned opened = 0;
	int refusal = 0;
	while (!refusal && opened < 100000) {
		struct attach_msg reply;
		int fds[ATTACH_MAX_FDS];
		if (!open_stream(opener, "local", "sink", &reply, fds))
			return fail("an OPEN got no answer");
		if (reply.type == ATTACH_OPENED)
			opened++;
		else
			refusal = reply.error;
		close_fds(fds); /* the broker keeps its own: what we hold does not count */
	}
	fprintf(stderr, "hostile-app: %u streams opened, then refused: %s\n", opened, wh_strerror(refusal));
	if (refusal != WH_EDESCRIPTORS && refusal != WH_EACCEPT_QUEUE_FULL && refusal != WH_ELIMIT)
		return fail("the refusal does not say which limit was reached");
	if (!broker_serves())
		return fail("a new app could not attach once streams had taken every descriptor they may");
	enum { SESSIONS_MAX = 100000 };
	static int sessions[SESSIONS_MAX];
	unsigned count = 0;
	int why = 0;
	while (count < SESSIONS_MAX) {
		int fd = connect_raw();
		struct attach_msg hello = { .type = ATTACH_HELLO, .request_id = 1, .version = ATTACH_VERSION }, reply;
		int fds[ATTACH_MAX_FDS];
		if (fd < 0 || !send_msg(fd, &hello) || !receive(fd, &reply, fds, 5000)) {
			if (fd >= 0)
				close(fd);
			return fail("an attach got no answer");
		}
		close_fds(fds);
		if (reply.type != ATTACH_WELCOME) {
			why = reply.error;
			close(fd);
			break;
		}
		sessions[count++] = fd;
	}
	fprintf(stderr, "hostile-app: %u more sessions, then refused: %s\n", count, wh_strerror(why));
	for (unsigned i = 0; i < count; i++)
		close(sessions[i]);
	close(opener);
	close(listener);
	if (why != WH_EDESCRIPTORS)
		return fail("a refused attach was not told that descriptors ran out");
	double deadline = now() + 5;
	bool serves = false;
	while (!(serves = broker_serves()) && now() < deadline)
		usleep(20000); /* the broker sees the sessions go: a condition with a deadline */
	return serves ? 0 : fail("the broker does not serve new sessions after they left");
}

/* ---- descriptors shared with the broker or a partner, made blocking ------------------------
 *
 * O_NONBLOCK belongs to the open file description, which SCM_RIGHTS shares: an app can clear
 * it on a descriptor it shares with the broker (or a partner app) and then fill or drain it,
 * so that the other side's next write or read blocks. The broker must go on serving others,
 * and a partner app must not freeze. Each attack does it to whatever it was given: an
 * eventfd is set to its highest count, a socket has its other end's queue filled. */

static void make_blocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags >= 0)
		(void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}

/* Blocking, and full: the next write into it (or through it) would wait for ever. */
static void make_blocking_and_full(int fd)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
		static const char byte = 1;
		int sent = 0;
		while (sent < 1000000 && send(fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1)
			sent++;
	} else {
		uint64_t most = 0xfffffffffffffffeull; /* an eventfd's highest count */
		(void)!write(fd, &most, sizeof most);
	}
	make_blocking(fd);
}

/* A child that takes everything that arrives on fd with blocking reads, so that whoever
 * polls it and then reads finds it empty. Its pid, to be killed. */
static pid_t drain_for_ever(int fd)
{
	pid_t pid = fork();
	if (pid == 0) {
		char buffer[64];
		for (;;)
			if (read(fd, buffer, sizeof buffer) < 0 && errno != EINTR)
				_exit(0);
	}
	return pid;
}

static void stop_child(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

/* The session answers STATS within timeout_ms. */
static bool answers(int fd, int timeout_ms)
{
	struct attach_msg req = { .type = ATTACH_STATS, .request_id = 7777 }, reply;
	int fds[ATTACH_MAX_FDS];
	if (!send_msg(fd, &req))
		return false;
	while (receive(fd, &reply, fds, timeout_ms)) {
		close_fds(fds);
		if (reply.request_id == req.request_id)
			return reply.type == ATTACH_STATS_REPLY;
	}
	return false;
}

/* The broker serves a fresh session within a few seconds (it may be busy, not frozen). */
static int served_after(const char *attack)
{
	double deadline = now() + 5;
	while (now() < deadline) {
		if (broker_serves())
			return 0;
		usleep(50000); /* a condition with a deadline */
	}
	fprintf(stderr, "hostile-app: %s: ", attack);
	return fail("the broker serves nobody any more: its event loop is blocked");
}

/* Sends bytes to the peer's echo and waits (bounded) for them to come back, having said
 * that we wait for them (and, with armed, that we sleep: the broker wakes our news). */
static bool echo_round(struct doorbell *bell, struct ring_segment *segment, const struct attach_msg *opened,
		       bool armed)
{
	struct ring_producer tx;
	struct ring_consumer rx;
	ring_producer_attach(&tx, segment, opened->ring_capacity, opened->tx_ring);
	ring_consumer_attach(&rx, segment, opened->ring_capacity, opened->tx_ring ^ 1u);
	/* positions go on from where the last round left them */
	tx.head = atomic_load(&segment->rings[opened->tx_ring].head);
	rx.tail = rx.head_seen = atomic_load(&segment->rings[opened->tx_ring ^ 1u].tail);
	if (armed)
		atomic_store(&bell->notify->app_armed, 1);
	ring_consumer_prepare_wait(&rx);
	if (ring_producer_write(&tx, "wake up!", 8) != 8)
		return false;
	ring_doorbell(bell, opened->slot);
	double deadline = now() + 1;
	char back[64];
	long got = 0;
	while (got < 8 && now() < deadline) {
		long n = ring_consumer_read(&rx, back, sizeof back);
		if (n < 0)
			return false;
		got += n;
		if (got < 8)
			usleep(1000); /* polling a condition with a deadline */
	}
	return got >= 8;
}

/* A stream to PEER's echo, mapped. */
static struct ring_segment *echo_stream(int fd, struct attach_msg *reply, int fds[ATTACH_MAX_FDS])
{
	if (!open_stream(fd, peer, "echo", reply, fds) || reply->type != ATTACH_OPENED)
		return NULL;
	void *segment = mmap(NULL, ring_segment_size(reply->ring_capacity), PROT_READ | PROT_WRITE,
			     MAP_SHARED, fds[0], 0);
	return segment == MAP_FAILED ? NULL : segment;
}

/* The news descriptor: made blocking and full, then news posted while we say we sleep, so
 * that the broker wakes us on it, again and again. */
static int attack_news_blocking(void)
{
	if (!peer[0])
		return fail("this attack needs a PEER");
	struct doorbell bell;
	int fd = attach_with(&bell);
	struct attach_msg reply;
	int fds[ATTACH_MAX_FDS];
	struct ring_segment *segment = fd < 0 ? NULL : echo_stream(fd, &reply, fds);
	if (!segment)
		return fail("open to the peer's echo failed");
	make_blocking_and_full(bell.news);
	for (int i = 0; i < 300; i++)
		if (!echo_round(&bell, segment, &reply, true))
			break; /* no echo: the broker may be frozen; served_after says */
	int rc = served_after("news-blocking");
	if (rc == 0 && !served_then_ended(fd, &bell, segment, ring_segment_size(reply.ring_capacity), fds))
		return fail("the session was not served after it blocked its news descriptor");
	return rc;
}

/* The doorbell made blocking, and drained by a child between the broker's poll and its read. */
static int attack_doorbell_drained(void)
{
	struct doorbell bell;
	int fd = attach_with(&bell);
	if (fd < 0)
		return fail("cannot attach");
	make_blocking(bell.fd);
	pid_t drainer = drain_for_ever(bell.fd);
	for (int i = 0; i < 200; i++) {
		uint64_t one = 1;
		(void)!write(bell.fd, &one, sizeof one);
		if (!answers(fd, 250))
			break; /* frozen (or only slow): served_after says */
	}
	stop_child(drainer);
	int rc = served_after("doorbell-drained");
	munmap(bell.notify, bell.size);
	close(bell.fd);
	close(bell.news);
	close(fd);
	return rc;
}

/* STREAM_FD with a socket whose broker end we keep a copy of: made blocking and its queue
 * filled, then wake-ups asked for. */
static int attack_stream_fd_full(void)
{
	if (!peer[0])
		return fail("this attack needs a PEER");
	struct doorbell bell;
	int fd = attach_with(&bell);
	struct attach_msg reply;
	int fds[ATTACH_MAX_FDS];
	struct ring_segment *segment = fd < 0 ? NULL : echo_stream(fd, &reply, fds);
	int pair[2];
	if (!segment || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
		return fail("open to the peer's echo failed");
	struct attach_msg msg = { .type = ATTACH_STREAM_FD, .handle = reply.handle };
	uint8_t bytes[ATTACH_MESSAGE_MAX];
	int n = attach_encode(bytes, sizeof bytes, &msg);
	if (!send_bytes(fd, bytes, (size_t)n, pair[1]) || !answers(fd, 5000))
		return fail("STREAM_FD was not taken");
	make_blocking_and_full(pair[1]); /* the broker's end: our end's queue is full */
	for (int i = 0; i < 300; i++)
		if (!echo_round(&bell, segment, &reply, false))
			break;
	int rc = served_after("stream-fd-full");
	close(pair[0]);
	close(pair[1]);
	if (rc == 0 && !served_then_ended(fd, &bell, segment, ring_segment_size(reply.ring_capacity), fds))
		return fail("the session was not served after it filled its stream's descriptor");
	return rc;
}

/* A same-host stream between two of our sessions: the listener's descriptors made blocking
 * and full, then the opener's session ends, so the broker tells the listener. The listener
 * must learn it (a hang-up, with the rings saying WH_EAPP_GONE) and the broker serve on. */
static int attack_local_wait_blocking(void)
{
	int listener = attach(), opener = attach();
	if (listener < 0 || opener < 0 || !listen_on(listener, "blocking-wait"))
		return fail("cannot set up");
	struct attach_msg opened, incoming;
	int fds[ATTACH_MAX_FDS], in_fds[ATTACH_MAX_FDS];
	if (!open_stream(opener, "local", "blocking-wait", &opened, fds) || opened.type != ATTACH_OPENED ||
	    !receive(listener, &incoming, in_fds, 5000) || incoming.type != ATTACH_INCOMING)
		return fail("local open failed");
	for (unsigned i = 1; i < ATTACH_MAX_FDS; i++)
		if (in_fds[i] >= 0)
			make_blocking_and_full(in_fds[i]);
	struct ring_segment *segment = mmap(NULL, ring_segment_size(incoming.ring_capacity),
					    PROT_READ | PROT_WRITE, MAP_SHARED, in_fds[0], 0);
	if (segment == MAP_FAILED)
		return fail("cannot map the segment");
	close_fds(fds);
	close(opener); /* the broker ends the opener's side and tells the listener */
	int rc = served_after("local-wait-blocking");
	double deadline = now() + 5;
	while (atomic_load(&segment->rings[incoming.tx_ring ^ 1u].producer_state) != RING_FAILED &&
	       now() < deadline)
		usleep(10000); /* polling a condition with a deadline */
	bool marked = atomic_load(&segment->rings[incoming.tx_ring ^ 1u].producer_state) == RING_FAILED;
	/* and a socket (protocol 5) hangs up, for the listener's own loop */
	struct stat st;
	struct pollfd pfd = { in_fds[1], 0, 0 };
	bool hung_up = fstat(in_fds[1], &st) == 0 && S_ISSOCK(st.st_mode) ? poll(&pfd, 1, 5000) == 1 &&
		       (pfd.revents & POLLHUP) : true;
	munmap(segment, ring_segment_size(incoming.ring_capacity));
	close_fds(in_fds);
	close(listener);
	if (rc == 0 && !marked)
		return fail("the listener's rings do not say that the opener went away");
	if (rc == 0 && !hung_up)
		return fail("the listener's wake-up socket did not hang up when the opener went away");
	return rc;
}

/* A partner app that does all of the above to a same-host stream with a victim app: it
 * listens on "hostile-partner" (or, given PEER, opens the victim's service PEER), makes its
 * descriptors blocking and full, has a child take whatever arrives on them, asks to be woken
 * at the victim's next write, then writes "R" (ready) and waits until it is killed. */
static int attack_hostile_partner(void)
{
	int fd = attach();
	struct attach_msg msg;
	int fds[ATTACH_MAX_FDS];
	if (fd < 0)
		return fail("cannot attach");
	if (peer[0]) {
		if (!open_stream(fd, "local", peer, &msg, fds) || msg.type != ATTACH_OPENED)
			return fail("cannot open the victim's service");
	} else if (!listen_on(fd, "hostile-partner")) {
		return fail("cannot listen");
	} else {
		fprintf(stderr, "hostile-app: listening\n");
		if (!receive(fd, &msg, fds, 30000) || msg.type != ATTACH_INCOMING)
			return fail("no stream came");
	}
	/* the descriptors past the segment: our own wait descriptor and, before protocol 5,
	 * the victim's, which the child keeps empty */
	pid_t drainers[ATTACH_MAX_FDS] = { 0 };
	for (unsigned i = 1; i < ATTACH_MAX_FDS; i++)
		if (fds[i] >= 0) {
			make_blocking_and_full(fds[i]);
			if (i == 2)
				drainers[i] = drain_for_ever(fds[i]);
		}
	struct ring_segment *segment = mmap(NULL, ring_segment_size(msg.ring_capacity), PROT_READ | PROT_WRITE,
					    MAP_SHARED, fds[0], 0);
	if (segment == MAP_FAILED)
		return fail("cannot map the segment");
	/* "wake me at your next write", then ready */
	atomic_store(&segment->rings[msg.tx_ring ^ 1u].consumer_waiting, RING_WAIT_NEWS);
	struct ring_producer tx;
	ring_producer_attach(&tx, segment, msg.ring_capacity, msg.tx_ring);
	ring_producer_write(&tx, "R", 1);
	fprintf(stderr, "hostile-app: partner ready\n");
	/* until the test kills us, or the broker hangs up (at most two minutes) */
	double deadline = now() + 120;
	while (now() < deadline) {
		struct attach_msg other;
		int other_fds[ATTACH_MAX_FDS];
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 1000) > 0 && !receive(fd, &other, other_fds, 0))
			break;
		if (pfd.revents & POLLIN)
			close_fds(other_fds);
	}
	for (unsigned i = 1; i < ATTACH_MAX_FDS; i++)
		stop_child(drainers[i]);
	return 0;
}

struct attack {
	const char *name;
	int (*run)(void);
	const char *what;
};

static const struct attack attacks[] = {
	{ "before-hello", attack_before_hello, "a message before HELLO" },
	{ "hello-version", attack_hello_version, "HELLO with version 99" },
	{ "double-hello", attack_double_hello, "HELLO twice" },
	{ "broker-type", attack_broker_type, "a message type only the broker sends" },
	{ "fds-attached", attack_fds_attached, "a descriptor attached to a message" },
	{ "oversize", attack_oversize, "a message over the size limit" },
	{ "malformed-each", attack_malformed_each, "every malformed message shape" },
	{ "never-read", attack_never_read, "requests whose answers are never read" },
	{ "never-read-held", attack_never_read_held, "the same, held back and let in again once read" },
	{ "local-teardown", attack_local_teardown, "same-host streams torn down in every order" },
	{ "corrupt-positions", attack_corrupt_positions, "ring positions beyond the ring (PEER)" },
	{ "punch-hole", attack_punch_hole, "the segment's pages zeroed under the broker (PEER)" },
	{ "exhaust", attack_exhaust, "same-host streams until the broker refuses" },
	{ "stream-fd", attack_stream_fd, "STREAM_FD misused every way (PEER)" },
	{ "news-blocking", attack_news_blocking, "the news descriptor made blocking and full (PEER)" },
	{ "doorbell-drained", attack_doorbell_drained, "the doorbell made blocking and drained" },
	{ "stream-fd-full", attack_stream_fd_full, "STREAM_FD's socket made blocking and full (PEER)" },
	{ "local-wait-blocking", attack_local_wait_blocking, "a same-host wait descriptor made blocking" },
	{ "hostile-partner", attack_hostile_partner, "a same-host partner that blocks its descriptors [SERVICE]" },
};

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "list") == 0) {
		for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++)
			printf("%-18s %s\n", attacks[i].name, attacks[i].what);
		return 0;
	}
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: hostile-app ATTACK SOCKET [PEER] | hostile-app list\n");
		return 2;
	}
	socket_path = argv[2];
	if (argc == 4)
		peer = argv[3];
	for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++)
		if (strcmp(attacks[i].name, argv[1]) == 0)
			return attacks[i].run();
	fprintf(stderr, "hostile-app: no attack '%s' (hostile-app list)\n", argv[1]);
	return 2;
}
