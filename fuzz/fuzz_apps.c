/* Fuzz target: the broker's app side (broker/apps.c) in process, driven by a script of what
 * apps do to it: sessions attach and drop at any point, send valid or arbitrary messages,
 * read their answers or not, scribble over the segments and doorbells they were handed,
 * while a peer connection (a mux in this process) opens streams to their listeners.
 *
 * Real Unix sockets, memfds, eventfds and socket pairs, one libev loop. The oracle is the sanitizers:
 * no invalid access, no leak (every session, stream and descriptor freed by apps_stop), no
 * abort; and the broker must never stop answering a fresh session (checked at the end).
 */
#include "config.h"

#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "apps.h"
#include "attach_fds.h"
#include "attach_msg.h"
#include "mux.h"
#include "ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SESSIONS 4u

struct session {
	int fd;
	int doorbell;
	struct notify_segment *notify;
	size_t notify_size;
	uint8_t *segment; /* the last segment handed over */
	size_t segment_size;
	uint64_t handle;
	uint32_t slot;
};

struct script {
	const uint8_t *at, *end;
};

static uint8_t next(struct script *s)
{
	return s->at < s->end ? *s->at++ : 0;
}

static struct apps *the_apps; /* for the mux's incoming callback */

static int on_incoming(struct mux *mux, struct mux_stream *stream, const char *service, void *user)
{
	(void)user;
	return apps_route_incoming(the_apps, mux, stream, service);
}

static void session_forget_segment(struct session *s)
{
	if (s->segment)
		munmap(s->segment, s->segment_size);
	s->segment = NULL;
}

static void session_close(struct session *s)
{
	session_forget_segment(s);
	if (s->notify)
		munmap(s->notify, s->notify_size);
	if (s->doorbell >= 0)
		close(s->doorbell);
	if (s->fd >= 0)
		close(s->fd);
	*s = (struct session){ .fd = -1, .doorbell = -1 };
}

/* Reads what the broker sent; keeps the doorbell and the newest segment to scribble on. */
static void session_drain(struct session *s)
{
	for (int i = 0; i < 64 && s->fd >= 0; i++) {
		uint8_t buffer[ATTACH_MESSAGE_MAX];
		union {
			char buf[CMSG_SPACE(sizeof(int) * ATTACH_MAX_FDS)];
			struct cmsghdr align;
		} control;
		struct iovec iov = { buffer, sizeof buffer };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
				    .msg_controllen = sizeof control.buf };
		ssize_t n = recvmsg(s->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n <= 0)
			return;
		int fds[ATTACH_MAX_FDS] = { -1, -1, -1 };
		unsigned count = 0;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
			for (size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int) && count < ATTACH_MAX_FDS; k++)
				memcpy(&fds[count++], CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
		struct attach_msg msg;
		if (attach_decode(buffer, (size_t)n, &msg) == WH_OK) {
			struct stat st;
			if (msg.type == ATTACH_WELCOME && count == 3 && s->doorbell < 0 && fstat(fds[1], &st) == 0) {
				s->doorbell = fds[0];
				fds[0] = -1;
				s->notify_size = (size_t)st.st_size;
				s->notify = mmap(NULL, s->notify_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
				if (s->notify == MAP_FAILED)
					s->notify = NULL;
			} else if ((msg.type == ATTACH_OPENED || msg.type == ATTACH_INCOMING) && count >= 1 &&
				   fstat(fds[0], &st) == 0) {
				session_forget_segment(s);
				s->segment_size = (size_t)st.st_size;
				s->segment = mmap(NULL, s->segment_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
				if (s->segment == MAP_FAILED)
					s->segment = NULL;
				s->handle = msg.handle;
				s->slot = msg.slot;
			}
		}
		for (unsigned k = 0; k < count; k++)
			if (fds[k] >= 0)
				close(fds[k]);
	}
}

static void send_valid(struct session *s, uint8_t kind, uint8_t arg)
{
	static const char *const services[] = { "", "a", "b" };
	struct attach_msg msg = { .request_id = arg };
	switch (kind % 8) {
	case 0: msg.type = ATTACH_HELLO; msg.version = ATTACH_VERSION; break;
	case 1: msg.type = ATTACH_OPEN; strcpy(msg.peer, arg & 1 ? "local" : "nowhere"); break;
	case 2: msg.type = ATTACH_LISTEN; break;
	case 3: msg.type = ATTACH_UNLISTEN; break;
	case 4: msg.type = ATTACH_RELEASE; msg.handle = arg & 1 ? s->handle : arg; break;
	case 5: msg.type = ATTACH_ACCEPTED; msg.handle = arg & 1 ? s->handle : arg; break;
	case 6: msg.type = ATTACH_STREAM_FD; msg.handle = arg & 1 ? s->handle : arg; break;
	default: msg.type = ATTACH_STATS; break;
	}
	strcpy(msg.service, services[arg % 3]);
	uint8_t bytes[ATTACH_MESSAGE_MAX];
	int n = attach_encode(bytes, sizeof bytes, &msg);
	if (n <= 0)
		return;
	/* STREAM_FD brings one end of a SOCK_SEQPACKET socket pair (arg & 2: none at all, or
	 * arg & 4: a pipe's write end, which the broker must refuse); the other end is closed at
	 * once, as a dying app's */
	int pipe_fds[2] = { -1, -1 };
	union attach_control control;
	struct iovec iov = { bytes, (size_t)n };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (msg.type == ATTACH_STREAM_FD && !(arg & 2) &&
	    (arg & 4 ? pipe(pipe_fds) : socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pipe_fds)) == 0)
		attach_fds_put(&m, &control, &pipe_fds[1], 1);
	(void)!sendmsg(s->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
	for (int i = 0; i < 2; i++)
		if (pipe_fds[i] >= 0)
			close(pipe_fds[i]);
}

static void run_loop(struct ev_loop *loop)
{
	for (int i = 0; i < 4; i++)
		ev_run(loop, EVRUN_NOWAIT);
}

static void feed_peer(struct mux *mux, enum frame_type type, uint32_t id, const char *service)
{
	uint8_t frame[FRAME_HEADER_SIZE + 64];
	int n = type == FRAME_HANDSHAKE ? frame_encode_handshake(frame, sizeof frame, id, service, strlen(service))
		: type == FRAME_DATA	? frame_encode_data(frame, sizeof frame, id, "0123456789abcdef", 16)
					: frame_encode_close(frame, sizeof frame, id);
	if (n > 0)
		mux_input(mux, frame, (size_t)n, 1.0);
	struct iovec iov[16];
	int count;
	while ((count = mux_output_gather(mux, iov, 16)) > 0) { /* the peer reads everything */
		size_t total = 0;
		for (int i = 0; i < count; i++)
			total += iov[i].iov_len;
		mux_output_advance(mux, total);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char dir[64], path[96];
	if (!dir[0]) {
		signal(SIGPIPE, SIG_IGN); /* as the broker does: wake-up pipes of apps that left */
		snprintf(dir, sizeof dir, "/tmp/wh-fuzz-apps.XXXXXX");
		if (!mkdtemp(dir))
			abort();
		snprintf(path, sizeof path, "%s/apps.sock", dir);
	}
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct apps_config config = { .socket_mode = 0600, .socket_uid = -1, .socket_gid = -1,
				      .ring_capacity = 4096, .max_streams = 4, .accept_backlog = 2 };
	snprintf(config.socket_path, sizeof config.socket_path, "%s", path);
	struct apps *apps = apps_start(loop, &config, NULL, NULL, NULL, NULL);
	if (!apps)
		abort();
	the_apps = apps;
	struct mux_config mux_config;
	mux_config_default(&mux_config);
	mux_config.keepalive_interval = 0;
	struct mux_callbacks callbacks = { .on_incoming = on_incoming };
	struct mux *peer = mux_new(false, &mux_config, NULL, &callbacks, NULL);
	uint32_t next_peer_id = 1;

	struct session sessions[SESSIONS];
	for (unsigned i = 0; i < SESSIONS; i++)
		sessions[i] = (struct session){ .fd = -1, .doorbell = -1 };
	struct script script = { data, data + size };
	while (script.at < script.end) {
		uint8_t op = next(&script), arg = next(&script);
		struct session *s = &sessions[arg % SESSIONS];
		switch (op % 10) {
		case 0:
			if (s->fd < 0) {
				s->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
				struct sockaddr_un addr = { .sun_family = AF_UNIX };
				snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
				if (connect(s->fd, (struct sockaddr *)&addr, sizeof addr) < 0)
					session_close(s);
			}
			break;
		case 1: { /* arbitrary bytes */
			size_t n = next(&script) % 64u;
			if (n > (size_t)(script.end - script.at))
				n = (size_t)(script.end - script.at);
			if (s->fd >= 0)
				(void)!send(s->fd, script.at, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			script.at += n;
			break;
		}
		case 2:
			if (s->fd >= 0)
				send_valid(s, next(&script), arg);
			break;
		case 3:
			session_close(s);
			break;
		case 4:
			run_loop(loop);
			break;
		case 5:
			session_drain(s);
			break;
		case 6:
			feed_peer(peer, FRAME_HANDSHAKE, next_peer_id, arg & 1 ? "a" : "b");
			next_peer_id += 2;
			break;
		case 7:
			if (next_peer_id > 1)
				feed_peer(peer, arg & 1 ? FRAME_DATA : FRAME_CLOSE, next_peer_id - 2, "");
			break;
		case 8: /* scribble over the segment, then ring for it */
			if (s->segment) {
				size_t at = ((size_t)next(&script) << 8 | next(&script)) % s->segment_size;
				s->segment[at] = next(&script);
			}
			/* fall through */
		case 9:
			if (s->notify && s->doorbell >= 0) {
				uint64_t one = 1;
				notify_ring(s->notify, s->notify->slots, arg & 1 ? s->slot : arg);
				(void)!write(s->doorbell, &one, sizeof one);
			}
			break;
		}
	}
	run_loop(loop);
	/* the broker still welcomes a new app after all that */
	struct session fresh = { .fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), .doorbell = -1 };
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
	if (connect(fresh.fd, (struct sockaddr *)&addr, sizeof addr) < 0)
		abort();
	send_valid(&fresh, 0, 1);
	run_loop(loop);
	session_drain(&fresh);
	if (fresh.doorbell < 0)
		abort(); /* no WELCOME */
	session_close(&fresh);
	for (unsigned i = 0; i < SESSIONS; i++)
		session_close(&sessions[i]);
	run_loop(loop);
	mux_free(peer);
	apps_stop(apps);
	ev_loop_destroy(loop);
	return 0;
}
