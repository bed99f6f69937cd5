/* A hostile peer broker: every class of wire attack the broker must shrug off, one per run.
 *
 *   hostile-peer ATTACK HOST PORT [SECONDS]
 *
 * Each attack talks raw frames to the broker and checks that it answered on the narrowest
 * scope that holds the fault: an ERROR on the stream for a stream's fault, the connection
 * closed for a connection's fault, nothing at all where dropping is right. Floods run for
 * SECONDS (default 2). Exit status 0 when the broker answered as docs/PROTOCOL.md says, 1
 * otherwise (with the reason on stderr), 2 for bad arguments. `hostile-peer list` prints the
 * attacks. With HOSTILE_SOURCE=ADDRESS in the environment, connections come from that local
 * address (127.0.0.2, ...: another peer to the broker's per-address bounds). tests/integration/check_attacks.c runs them all against a live broker while it
 * watches the broker's CPU, descriptors, memory and a canary connection.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "frame.h"

static const char *host, *port;
static double seconds = 2.0;
static uint32_t flood_stream; /* flood(): DATA (empty) and WINDOW_UPDATE (+1) go to it */
static size_t flood_data_bytes; /* flood(): bytes in each DATA frame to flood_stream */
/* flood_unread(): a broker that stops reading the flood (its answers back up) instead of
 * closing holds it within its bounds too; check_attacks then looks at its memory */
static bool unread_may_stall;
static bool flood_held; /* flood(): DATA of 0 or 1 byte spread over 8 ids that never open */
static bool reset_with_data; /* attack_rapid_reset(): a byte of DATA before each reset */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *why)
{
	fprintf(stderr, "hostile-peer: %s\n", why);
	return 1;
}

/* A connection to the broker, from source (a local IPv4 address) when given. */
static int dial_from(const char *source)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -1;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && source && ai->ai_family == AF_INET) {
		struct sockaddr_in from = { .sin_family = AF_INET };
		if (inet_pton(AF_INET, source, &from.sin_addr) != 1 ||
		    bind(fd, (struct sockaddr *)&from, sizeof from) < 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd >= 0) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	return fd;
}

static int dial(void)
{
	return dial_from(getenv("HOSTILE_SOURCE"));
}

/* Writes everything (blocking); false if the broker closed the connection. */
static bool send_all(int fd, const void *data, size_t length)
{
	const uint8_t *p = data;
	while (length) {
		ssize_t n = send(fd, p, length, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		length -= (size_t)n;
	}
	return true;
}

/* Writes what the socket takes now; -1 once the broker closed the connection. */
static ssize_t send_some(int fd, const void *data, size_t length)
{
	ssize_t n = send(fd, data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	return n < 0 ? -1 : n;
}

/* What the broker sent, decoded as it arrives. */
struct reader {
	int fd;
	struct frame_decoder decoder;
	bool eof;
	uint64_t frames[8];
	uint32_t last_error_stream, last_error_code;
	uint32_t errors_for[64]; /* ERROR code last seen per stream id < 64 */
	uint32_t pong;
	uint64_t credit; /* bytes we may still send on flood_stream (flood_data_tiny keeps it) */
};

static void reader_init(struct reader *r, int fd)
{
	memset(r, 0, sizeof *r);
	r->fd = fd;
	frame_decoder_init(&r->decoder, FRAME_MAX_PAYLOAD);
}

static void reader_feed(struct reader *r, const uint8_t *data, size_t length)
{
	while (length) {
		struct frame_event ev;
		size_t used = frame_decoder_feed(&r->decoder, data, length, &ev);
		data += used;
		length -= used;
		if (ev.kind != FRAME_EVENT_CONTROL && ev.kind != FRAME_EVENT_DATA_HEADER)
			continue;
		r->frames[ev.header.type & 7]++;
		if (ev.header.type == FRAME_ERROR && ev.payload_length >= 4) {
			uint32_t code = (uint32_t)ev.payload[0] << 24 | (uint32_t)ev.payload[1] << 16 |
					(uint32_t)ev.payload[2] << 8 | ev.payload[3];
			r->last_error_stream = ev.header.stream_id;
			r->last_error_code = code;
			if (ev.header.stream_id < 64)
				r->errors_for[ev.header.stream_id] = code;
		} else if (ev.header.type == FRAME_WINDOW_UPDATE && ev.payload_length == 4 &&
			   ev.header.stream_id == flood_stream) {
			r->credit += (uint32_t)ev.payload[0] << 24 | (uint32_t)ev.payload[1] << 16 |
				     (uint32_t)ev.payload[2] << 8 | ev.payload[3];
		} else if (ev.header.type == FRAME_PONG && ev.payload_length == 4) {
			r->pong = (uint32_t)ev.payload[0] << 24 | (uint32_t)ev.payload[1] << 16 |
				  (uint32_t)ev.payload[2] << 8 | ev.payload[3];
		} else if (ev.header.type == FRAME_PING && ev.payload_length == 4) {
			uint8_t pong[FRAME_HEADER_SIZE + 4];
			uint32_t id = (uint32_t)ev.payload[0] << 24 | (uint32_t)ev.payload[1] << 16 |
				      (uint32_t)ev.payload[2] << 8 | ev.payload[3];
			int n = frame_encode_pong(pong, sizeof pong, id);
			send_all(r->fd, pong, (size_t)n); /* keep-alive must not end the attack early */
		}
	}
}

/* Reads what is there within timeout seconds (0: only what is there now). */
static void reader_poll(struct reader *r, double timeout)
{
	static uint8_t buffer[1 << 16];
	double deadline = now() + timeout;
	for (;;) {
		double left = deadline - now();
		struct pollfd pfd = { r->fd, POLLIN, 0 };
		if (poll(&pfd, 1, left > 0 ? (int)(left * 1000) + 1 : 0) <= 0)
			return;
		ssize_t n = recv(r->fd, buffer, sizeof buffer, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			r->eof = true;
			return;
		}
		reader_feed(r, buffer, (size_t)n);
		if (left <= 0)
			continue; /* drain what is there, then return */
	}
}

/* Waits (bounded) until the broker closes the connection. */
static bool wait_closed(struct reader *r, double timeout)
{
	double deadline = now() + timeout;
	while (!r->eof && now() < deadline)
		reader_poll(r, 0.05);
	return r->eof;
}

/* A PING answered by a PONG within timeout: the connection is alive and served. */
static bool ping_ok(struct reader *r, uint32_t id, double timeout)
{
	uint8_t frame[FRAME_HEADER_SIZE + 4];
	if (!send_all(r->fd, frame, (size_t)frame_encode_ping(frame, sizeof frame, id)))
		return false;
	double deadline = now() + timeout;
	while (r->pong != id && !r->eof && now() < deadline)
		reader_poll(r, 0.05);
	return r->pong == id;
}

static bool wait_error(struct reader *r, uint32_t stream, uint32_t code, double timeout)
{
	double deadline = now() + timeout;
	while (r->errors_for[stream] != code && !r->eof && now() < deadline)
		reader_poll(r, 0.05);
	return r->errors_for[stream] == code;
}

/* Any frame, also one the encoders refuse to make (oversized payloads): header, payload. */
static int send_frame(int fd, enum frame_type type, uint32_t stream, const void *payload, size_t length)
{
	static uint8_t frame[FRAME_HEADER_SIZE + 65536];
	struct frame_header h = { FRAME_VERSION, (uint8_t)type, stream, (uint32_t)length };
	if (length > sizeof frame - FRAME_HEADER_SIZE)
		return -1;
	frame_header_pack(frame, &h);
	if (length)
		memcpy(frame + FRAME_HEADER_SIZE, payload, length);
	return send_all(fd, frame, FRAME_HEADER_SIZE + length) ? 0 : -1;
}

/* ---- connection-fatal faults: the connection closes, with whatever came after --------- */

static int attack_fatal_trailing(void)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	struct reader r;
	reader_init(&r, fd);
	/* a declared length above 16 MiB, then 2 MiB the broker must never parse or spin on,
	 * in the same send so that they arrive together */
	static uint8_t packet[FRAME_HEADER_SIZE + (2 << 20)];
	struct frame_header h = { 1, FRAME_DATA, 1, FRAME_MAX_PAYLOAD + 1 };
	frame_header_pack(packet, &h);
	for (size_t sent = 0; sent < sizeof packet;) {
		ssize_t n = send_some(fd, packet + sent, sizeof packet - sent);
		if (n < 0)
			break;
		sent += (size_t)n;
		reader_poll(&r, n == 0 ? 0.01 : 0);
		if (r.eof)
			break;
	}
	bool closed = wait_closed(&r, 5);
	close(fd);
	return closed ? 0 : fail("fatal frame: the connection was not closed");
}

/* A version-2 header, then 1 MiB of what may be its payload and valid-looking frames: the
 * broker says goodbye (ERROR 505 on stream 0) and closes, parsing nothing after it. */
static int attack_bad_version(void)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	struct reader r;
	reader_init(&r, fd);
	static uint8_t packet[FRAME_HEADER_SIZE + (1 << 20)];
	struct frame_header h = { 2, FRAME_DATA, 1, 16 };
	frame_header_pack(packet, &h);
	for (size_t at = FRAME_HEADER_SIZE; at + 64 <= sizeof packet; at += 64)
		frame_encode_handshake(packet + at, 64, 1 + 2 * (uint32_t)(at / 64), "echo", 4);
	send_some(fd, packet, sizeof packet);
	bool closed = wait_closed(&r, 5);
	close(fd);
	if (!closed)
		return fail("a version-2 frame: the connection was not closed");
	if (r.last_error_stream != 0 || r.last_error_code != FRAME_ERR_GOING_AWAY)
		return fail("a version-2 frame: no ERROR 505 on stream 0 before the close");
	if (r.frames[FRAME_HANDSHAKE] || r.frames[FRAME_DATA])
		return fail("a version-2 frame: frames after it were acted on");
	return 0;
}

static int attack_malformed_run(void)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	struct reader r;
	reader_init(&r, fd);
	/* nine frames of an unknown type, then 1 MiB more, in one send */
	static uint8_t packet[9 * FRAME_HEADER_SIZE + (1 << 20)];
	struct frame_header bad = { 1, 0x42, 1, 0 };
	for (int i = 0; i < 9; i++)
		frame_header_pack(packet + i * FRAME_HEADER_SIZE, &bad);
	memset(packet + 9 * FRAME_HEADER_SIZE, 0x41, 1 << 20);
	send_some(fd, packet, sizeof packet);
	bool closed = wait_closed(&r, 5);
	close(fd);
	return closed ? 0 : fail("nine malformed frames: the connection was not closed");
}

/* ---- stream-scoped faults: ERROR 400 on that stream, the connection stays ------------- */

static int attack_malformed_stream(void)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	struct reader r;
	reader_init(&r, fd);
	send_frame(fd, FRAME_HANDSHAKE, 1, "discard", 7);
	uint8_t frame[FRAME_HEADER_SIZE + 3] = { 0 };
	struct frame_header short_update = { 1, FRAME_WINDOW_UPDATE, 1, 3 };
	frame_header_pack(frame, &short_update);
	send_all(fd, frame, sizeof frame);
	if (!wait_error(&r, 1, 400, 5))
		return fail("short WINDOW_UPDATE: no ERROR 400 on its stream");
	static uint8_t big[5000];
	send_frame(fd, FRAME_HANDSHAKE, 3, big, sizeof big); /* above 4 KiB */
	if (!wait_error(&r, 3, 400, 5))
		return fail("oversized HANDSHAKE: no ERROR 400 on its stream");
	send_frame(fd, FRAME_HANDSHAKE, 5, "discard", 7);
	static uint8_t too_long[40000];
	send_frame(fd, FRAME_DATA, 5, too_long, sizeof too_long); /* above 32 KiB */
	if (!wait_error(&r, 5, 400, 5))
		return fail("oversized DATA: no ERROR 400 on its stream");
	send_frame(fd, FRAME_HANDSHAKE, 9, "discard", 7);
	send_frame(fd, FRAME_HANDSHAKE, 9, "discard", 7);
	if (!wait_error(&r, 9, 409, 5))
		return fail("duplicate HANDSHAKE: no ERROR 409 on its stream");
	send_frame(fd, FRAME_HANDSHAKE, 10, "discard", 7); /* the broker's own parity */
	if (!wait_error(&r, 10, 400, 5))
		return fail("HANDSHAKE with the listener's parity: no ERROR 400");
	bool alive = ping_ok(&r, 77, 5);
	close(fd);
	return alive ? 0 : fail("the connection did not survive stream-scoped faults");
}

/* DATA up to the exact edge of a stream's window, then one byte beyond it. The stream goes to
 * echo and we never grant it credit back: echo returns at most our window (256 KiB), then
 * holds what it has, so the broker's credit stops. All it granted may be sent without error;
 * one byte more is ERROR 413 on that stream (an edge off by one passes neither check). */
static bool data_to_the_window_edge(struct reader *r, uint32_t id)
{
	static uint8_t chunk[16384];
	flood_stream = id; /* the reader adds the broker's credit for it */
	r->credit = 262144; /* the initial window */
	send_frame(r->fd, FRAME_HANDSHAKE, id, "echo", 4);
	double deadline = now() + 20;
	const char *wrong = NULL;
	while (!wrong) {
		while (r->credit > 0 && !wrong) {
			size_t n = r->credit < sizeof chunk ? (size_t)r->credit : sizeof chunk;
			if (send_frame(r->fd, FRAME_DATA, id, chunk, n) < 0)
				wrong = "the broker closed the connection within the window";
			r->credit -= n;
		}
		uint64_t updates = r->frames[FRAME_WINDOW_UPDATE];
		reader_poll(r, 0.3);
		if (r->credit == 0 && r->frames[FRAME_WINDOW_UPDATE] == updates)
			break; /* no credit for 300 ms: echo holds a full window */
		if (now() > deadline)
			wrong = "credit never stopped coming";
	}
	flood_stream = 0;
	if (!wrong && r->errors_for[id])
		wrong = "ERROR on a stream that stayed within its window";
	if (!wrong) {
		send_frame(r->fd, FRAME_DATA, id, chunk, 1);
		if (!wait_error(r, id, 413, 5))
			wrong = "DATA one byte beyond the window: no ERROR 413 on its stream";
	}
	if (wrong)
		fail(wrong);
	return !wrong;
}

static int attack_window_overflow(void)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	struct reader r;
	reader_init(&r, fd);
	send_frame(fd, FRAME_HANDSHAKE, 1, "discard", 7);
	uint8_t increment[4] = { 0x7f, 0xff, 0xff, 0xff };
	send_frame(fd, FRAME_WINDOW_UPDATE, 1, increment, 4);
	if (!wait_error(&r, 1, 413, 5))
		return fail("credit above 2^31-1: no ERROR 413 on its stream");
	if (!data_to_the_window_edge(&r, 3))
		return 1;
	send_frame(fd, FRAME_HANDSHAKE, 5, "nobody-serves-this", 18);
	if (!wait_error(&r, 5, 404, 5))
		return fail("unknown service: no ERROR 404");
	bool alive = ping_ok(&r, 78, 5);
	close(fd);
	return alive ? 0 : fail("the connection did not survive flow-control faults");
}

/* ---- floods ---------------------------------------------------------------------------- */

/* Sends frames of one type as fast as the broker takes them for `seconds`, reading what it
 * answers (or not, with read_answers false). Returns the number sent. */
static uint64_t flood(int fd, struct reader *r, enum frame_type type, bool read_answers)
{
	uint8_t batch[64 * 64];
	uint64_t sent = 0;
	uint32_t id = 1;
	double end = now() + seconds;
	while (now() < end && !r->eof) {
		if (flood_data_bytes && type == FRAME_DATA) { /* within the stream's window */
			if (r->credit < 64 * flood_data_bytes) {
				reader_poll(r, 0.01);
				continue;
			}
			r->credit -= 64 * flood_data_bytes;
		}
		size_t length = 0;
		for (int i = 0; i < 64; i++) {
			uint8_t code[8] = { 0, 0, 0x01, 0xf3, 'x', 'y', 'z', '!' }; /* 499 */
			int n;
			switch (type) {
			case FRAME_DATA: /* new odd ids: held briefly for a HANDSHAKE that never comes */
				if (flood_held) { /* the eight ids held for a HANDSHAKE, over and over */
					id++;
					n = frame_encode_data(batch + length, sizeof batch - length,
							      1 + 2 * (id % 8), "t", id / 8 % 2);
					break;
				}
				n = flood_stream ? frame_encode_data(batch + length, sizeof batch - length,
								     flood_stream, "t", flood_data_bytes)
						 : frame_encode_data(batch + length, sizeof batch - length,
								     id += 2, "data", 4);
				break;
			case FRAME_WINDOW_UPDATE:
				n = frame_encode_window_update(batch + length, sizeof batch - length,
							       flood_stream ? flood_stream : (id += 2), 1);
				break;
			case FRAME_PING:
				n = frame_encode_ping(batch + length, sizeof batch - length, id++);
				break;
			case FRAME_PONG:
				n = frame_encode_pong(batch + length, sizeof batch - length, id++);
				break;
			case FRAME_CLOSE:
				n = frame_encode_close(batch + length, sizeof batch - length, id += 2);
				break;
			case FRAME_HANDSHAKE:
				n = frame_encode_handshake(batch + length, sizeof batch - length, id += 2,
							   "discard", 7);
				break;
			default:
				n = frame_encode_error(batch + length, sizeof batch - length, id += 2, 499,
						       (const char *)code + 4, 4);
				break;
			}
			length += (size_t)n;
		}
		size_t done = 0;
		/* a batch goes out whole, also when the time is up: a frame cut short would make
		 * whatever we send next (the PING that checks the connection) part of it */
		while (done < length && now() < end + 30) {
			ssize_t n = send_some(fd, batch + done, length - done);
			if (n < 0) {
				/* closed, perhaps with a reset (we had sent more than it read): what it
				 * said before, its goodbye, is still ours to read */
				reader_poll(r, 0);
				r->eof = true;
				break;
			}
			done += (size_t)n;
			if (read_answers) {
				/* A full socket: wait for room or an answer, as the rapid resets wait in
				 * a blocking send and a flood tool on epoll would. Spinning here made a
				 * connection the broker holds unread (a peer with strikes:
				 * broker/penalty.h) a spinning process, which measures this host's CPU,
				 * not what the attack costs the broker. */
				if (n == 0) {
					struct pollfd room = { fd, POLLOUT | POLLIN, 0 };
					poll(&room, 1, 100);
				}
				reader_poll(r, 0);
			} else if (n == 0) {
				/* Not reading, we would never see the broker's FIN: ask for it. A
				 * broker that closed us (keep-alive, the bounded control queue) stops
				 * reading, so our send buffer stays full and POLLOUT never comes. */
				struct pollfd pfd = { fd, POLLOUT | POLLRDHUP, 0 };
				if (poll(&pfd, 1, 10) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
					r->eof = true;
					break;
				}
			}
		}
		sent += done / (size_t)(length / 64);
	}
	return sent;
}

/* A flood of frames, the answers read. Frames that cost the broker work and serve no stream
 * are bounded by rate, and a peer past the bound is closed with a goodbye (ERROR 505 on
 * stream 0): PINGs (ping-rate), HANDSHAKEs that end refused once the budget share is spent,
 * DATA or CLOSE for ids never opened (reset-rate), WINDOW_UPDATE or ERROR for streams not
 * open and PONGs nobody asked for (noop-rate). Every flood must end so. */
static int flood_bounded_on(int fd, struct reader *r, enum frame_type type);

static int flood_bounded(enum frame_type type)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	struct reader r;
	reader_init(&r, fd);
	return flood_bounded_on(fd, &r, type);
}

/* Connects with stream 1 open to discard, with `first` as its DATA (none when NULL) and its
 * CLOSE when `ended`; flood() then aims at it. The PONG comes after the broker took these
 * (and discard's CLOSE, when ended). The descriptor, or -1 once fail() said why. */
static int dial_discard(struct reader *r, const char *first, bool ended)
{
	int fd = dial();
	if (fd < 0) {
		fail("cannot connect");
		return -1;
	}
	reader_init(r, fd);
	uint8_t frames[128];
	size_t length = (size_t)frame_encode_handshake(frames, sizeof frames, 1, "discard", 7);
	if (first)
		length += (size_t)frame_encode_data(frames + length, sizeof frames - length, 1, first,
						    strlen(first));
	if (ended)
		length += (size_t)frame_encode_close(frames + length, sizeof frames - length, 1);
	if (!send_all(fd, frames, length) || !ping_ok(r, 1000000, 10)) {
		close(fd);
		fail("the stream to discard did not open");
		return -1;
	}
	flood_stream = 1;
	return fd;
}

/* Frames that do nothing on one stream to discard: empty DATA after it ended in order (our
 * CLOSE and discard's: nothing of it can still be on its way), or while it is open, and credit
 * while it is open for bytes discard never sends. Each counts in noop-rate. */
static int flood_on_stream(enum frame_type type, bool ended)
{
	struct reader r;
	int fd = dial_discard(&r, "x", ended);
	return fd < 0 ? 1 : flood_bounded_on(fd, &r, type);
}

/* DATA of one byte each to discard, within the window, as an app writing a byte at a time
 * through the reference makes: useful, so served for as long as it lasts, though each frame
 * costs the broker about what a full one costs (its turn on the loop is measured in time, so
 * it takes its share and no more). The connection must stay served. */
static int flood_data_tiny(void)
{
	struct reader r;
	int fd = dial_discard(&r, NULL, false);
	if (fd < 0)
		return 1;
	flood_data_bytes = 1;
	r.credit = 262144; /* the initial window */
	uint64_t sent = flood(fd, &r, FRAME_DATA, true);
	fprintf(stderr, "hostile-peer: one-byte DATA flood: %llu frames\n", (unsigned long long)sent);
	bool alive = ping_ok(&r, 1000001, 60);
	close(fd);
	return alive ? 0 : fail("a stream of one-byte DATA frames was not served");
}

static int flood_bounded_on(int fd, struct reader *r, enum frame_type type)
{
	uint64_t sent = flood(fd, r, type, true);
	fprintf(stderr, "hostile-peer: %s flood: %llu frames\n", frame_type_name(type),
		(unsigned long long)sent);
	/* Every flood is bounded by rate (ping-rate, reset-rate, noop-rate): the broker has
	 * closed the connection with a goodbye once it worked through what we queued (a
	 * sanitizer build takes a while). Still answered means served to the end. */
	bool alive = ping_ok(r, 1000001, 30);
	bool goodbye = !alive && wait_closed(r, 5) && r->last_error_stream == 0 &&
		       r->last_error_code == 505;
	close(fd);
	if (alive)
		return fail("the flood was served to the end: no rate bound");
	if (!goodbye)
		return fail("the flood ended without a goodbye (ERROR 505)");
	fprintf(stderr, "hostile-peer: the broker closed the connection with a goodbye\n");
	return 0;
}

/* A flood of frames the broker answers, without reading the answers: it must not queue
 * answers for ever. It closes the connection once its bounded control queue is full, or
 * stops the flood by not reading (TCP back-pressure); both bound its memory. */
static int flood_unread(enum frame_type type)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	struct reader r;
	reader_init(&r, fd);
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	/* flooded until the broker ends it (the flood stops at once then): first the kernel's
	 * send buffer towards us fills (up to 4 MiB of PONGs, ~300,000 PINGs), then the broker's
	 * control queue. The caller gives the time that may take (a sanitizer build on a loaded
	 * machine needs tens of seconds). */
	uint64_t sent = flood(fd, &r, type, false);
	fprintf(stderr, "hostile-peer: %s flood, answers unread: %llu frames, %s\n",
		frame_type_name(type), (unsigned long long)sent,
		r.eof ? "the broker closed the connection" : "still open");
	close(fd);
	/* PONGs are owed for every PING: the broker's bounded control queue must end it, or its
	 * keep-alive first (we answer no PING either), whichever comes first on a loaded
	 * machine (the test runs the broker with a small control-queue). HANDSHAKEs to a built-in service
	 * owe nothing until the budget refuses them, so either outcome is right there. */
	if (type == FRAME_PING && !r.eof && !unread_may_stall)
		return fail("PINGs with their PONGs unread did not end the connection");
	return 0;
}

static int attack_rapid_reset(bool with_error)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	struct reader r;
	reader_init(&r, fd);
	uint8_t batch[64 * 48];
	uint64_t streams = 0;
	uint32_t id = 1;
	double end = now() + seconds;
	while (now() < end && !r.eof) {
		size_t length = 0;
		for (int i = 0; i < 32; i++, id += 2) {
			length += (size_t)frame_encode_handshake(batch + length, sizeof batch - length, id,
								 "echo", 4);
			if (reset_with_data)
				length += (size_t)frame_encode_data(batch + length, sizeof batch - length, id,
								    "x", 1);
			length += (size_t)(with_error ? frame_encode_error(batch + length, sizeof batch - length,
									   id, 499, "bye", 3)
						      : frame_encode_close(batch + length, sizeof batch - length, id));
		}
		if (!send_all(fd, batch, length))
			break;
		streams += 32;
		reader_poll(&r, 0);
	}
	fprintf(stderr, "hostile-peer: rapid reset (%s): %llu streams\n", with_error ? "ERROR" : "CLOSE",
		(unsigned long long)streams);
	/* the reset-rate bucket (200 a second, 1000 at once by default) ends it with a goodbye */
	bool closed = wait_closed(&r, 10);
	close(fd);
	if (!closed)
		return fail("the connection survived the resets: no rapid-reset bound");
	if (r.last_error_stream != 0 || r.last_error_code != 505)
		return fail("closed without a goodbye (ERROR 505 on stream 0)");
	fprintf(stderr, "hostile-peer: the broker said goodbye and closed the connection\n");
	return 0;
}

/* Streams that fill their windows towards us while we never read nor grant credit. */
static int zero_window(uint32_t streams)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	/* Past store-rate the broker reads us slowly: the sending ends with the attack. */
	struct timeval limit = { (time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6) };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
	static uint8_t chunk[32768];
	double start = now();
	uint32_t sent = 0; /* whole windows */
	for (uint32_t id = 1; id < 2 * streams && now() - start < seconds; id += 2, sent++) {
		bool whole = send_frame(fd, FRAME_HANDSHAKE, id, "echo", 4) == 0;
		for (int i = 0; i < 8 && whole; i++) /* the whole 256 KiB window: the echo must hold it */
			whole = send_frame(fd, FRAME_DATA, id, chunk, sizeof chunk) == 0;
		if (whole)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break; /* the attack's time is up */
		/* The broker's keep-alive, whose PINGs we never read, may end us while it reads us
		 * slowly: not before a second (no test's keep-alive is shorter). Sooner, it closed
		 * a peer for not reading. */
		if (now() - start < 1.0)
			return fail("the broker closed a connection that only stopped reading");
		fprintf(stderr, "hostile-peer: zero-window: closed after %.1f s, %u of %u windows sent "
			"(keep-alive)\n", now() - start, sent, streams);
		close(fd);
		return 0;
	}
	fprintf(stderr, "hostile-peer: zero-window: %u of %u windows sent in %.1f s\n", sent, streams,
		now() - start);
	double end = start + seconds;
	while (now() < end)
		usleep(50000); /* hold the connection, read nothing */
	close(fd);
	return 0;
}

/* A frame a byte at a time, never finished, PINGs never answered: keep-alive ends it. */
static int attack_slowloris(void)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	uint8_t frame[FRAME_HEADER_SIZE + 4];
	frame_encode_handshake(frame, sizeof frame, 1, "echo", 4);
	double end = now() + seconds;
	bool closed = false;
	for (size_t i = 0; now() < end && !closed; i = (i + 1) % (sizeof frame - 1)) {
		if (send_some(fd, frame + i, 1) < 0)
			closed = true;
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 200) > 0) {
			uint8_t sink[4096];
			ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT); /* read, never answer */
			if (n == 0 || (n < 0 && errno != EAGAIN))
				closed = true;
		}
	}
	close(fd);
	fprintf(stderr, "hostile-peer: slowloris %s\n", closed ? "cut off by the broker" : "held to the end");
	return closed ? 0 : fail("a frame a byte at a time held the connection to the end");
}

/* Half a frame header, then silence, reading nothing: the broker's first-frame deadline
 * (handshake-timeout) must close it within `seconds`, keep-alive or not. */
static int attack_half_header(void)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	uint8_t frame[FRAME_HEADER_SIZE + 4];
	frame_encode_handshake(frame, sizeof frame, 1, "echo", 4);
	if (send_some(fd, frame, FRAME_HEADER_SIZE / 2) <= 0)
		return fail("cannot send");
	double start = now();
	bool closed = false;
	while (!closed && now() < start + seconds) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		uint8_t sink[4096];
		ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT); /* its PING, then EOF */
		closed = n == 0 || (n < 0 && errno != EAGAIN);
	}
	close(fd);
	if (!closed)
		return fail("half a header held the connection to the end");
	fprintf(stderr, "hostile-peer: half a header: closed after %.1f s\n", now() - start);
	return 0;
}

/* Many connections at once, each opening a stream, held, then all dropped. */
/* Reads one connection until its echo stream has sent back `want` (bounded). */
static bool echo_came_back(int fd, const char *want, size_t length, double timeout)
{
	struct frame_decoder decoder;
	frame_decoder_init(&decoder, FRAME_MAX_PAYLOAD);
	char got[64];
	size_t have = 0;
	double deadline = now() + timeout;
	uint8_t buffer[4096];
	while (have < length && now() < deadline) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
		if (n <= 0)
			return false;
		const uint8_t *p = buffer;
		size_t left = (size_t)n;
		while (left) {
			struct frame_event ev;
			size_t used = frame_decoder_feed(&decoder, p, left, &ev);
			p += used;
			left -= used;
			if (ev.kind == FRAME_EVENT_DATA_CHUNK && ev.header.stream_id == 1)
				for (size_t i = 0; i < ev.payload_length && have < sizeof got; i++)
					got[have++] = (char)ev.payload[i];
		}
	}
	return have == length && memcmp(got, want, length) == 0;
}

/* 2000 connections at once, each with an echo stream, from 40 source addresses (50 each:
 * under max-connections-per-address, so the broker's bounds on all of them together are what
 * is tried); every connection must get its echo back. */
static int attack_many_connections(void)
{
	enum { COUNT = 2000, PER_ADDRESS = 50 };
	static int fds[COUNT];
	int opened = 0;
	for (int i = 0; i < COUNT; i++) {
		char source[16];
		snprintf(source, sizeof source, "127.0.1.%d", 1 + i / PER_ADDRESS);
		fds[i] = dial_from(source);
		if (fds[i] < 0)
			break;
		opened++;
		char hello[16];
		int length = snprintf(hello, sizeof hello, "hello %d", i);
		send_frame(fds[i], FRAME_HANDSHAKE, 1, "echo", 4);
		send_frame(fds[i], FRAME_DATA, 1, hello, (size_t)length);
	}
	int echoed = 0;
	for (int i = 0; i < opened; i++) {
		char hello[16];
		int length = snprintf(hello, sizeof hello, "hello %d", i);
		echoed += echo_came_back(fds[i], hello, (size_t)length, 10);
	}
	fprintf(stderr, "hostile-peer: %d connections open, %d echoes back\n", opened, echoed);
	double end = now() + seconds;
	while (now() < end)
		usleep(50000);
	for (int i = 0; i < opened; i++)
		close(fds[i]);
	if (opened < COUNT)
		return fail("not every connection could be made");
	return echoed == COUNT ? 0 : fail("not every connection got its echo back");
}

/* A connection that answers every PING and opens no stream: held for nothing. The broker
 * (run with a short peer-idle-timeout) must say goodbye and close it within `seconds`. */
static int attack_idle(void)
{
	int fd = dial();
	if (fd < 0)
		return fail("cannot connect");
	struct reader r;
	reader_init(&r, fd);
	double start = now();
	bool closed = wait_closed(&r, seconds); /* the reader answers PINGs as they come */
	close(fd);
	if (!closed)
		return fail("an idle connection was held to the end");
	if (r.last_error_stream != 0 || r.last_error_code != 505)
		return fail("idle connection closed without a goodbye (ERROR 505)");
	fprintf(stderr, "hostile-peer: idle connection closed after %.1f s\n", now() - start);
	return 0;
}

/* Two connections that each open streams to echo and hold them, never closing: the broker's
 * per-connection and per-peer budget shares must refuse the excess with 429 on each. Prints
 * "holding" once set up, then holds for `seconds` (the test checks meanwhile that others are
 * served). */
static int attack_stream_hog(void)
{
	enum { CONNS = 2, STREAMS = 1000 };
	int fds[CONNS];
	struct reader r[CONNS];
	unsigned refused[CONNS] = { 0 };
	for (int c = 0; c < CONNS; c++) {
		fds[c] = dial();
		if (fds[c] < 0)
			return fail("cannot connect");
		reader_init(&r[c], fds[c]);
		uint8_t batch[64 * 32];
		for (uint32_t id = 1; id < 2 * STREAMS; id += 2 * 32) {
			size_t length = 0;
			for (uint32_t k = id; k < id + 2 * 32 && k < 2 * STREAMS; k += 2)
				length += (size_t)frame_encode_handshake(batch + length, sizeof batch - length,
									 k, "echo", 4);
			if (!send_all(fds[c], batch, length))
				return fail("the broker closed a connection that only opened streams");
		}
		/* every refusal comes back as ERROR 429 on its stream; count them as they come */
		double deadline = now() + 10;
		uint64_t errors_before = 0;
		while (now() < deadline) {
			reader_poll(&r[c], 0.2);
			if (r[c].frames[FRAME_ERROR] == errors_before && errors_before > 0)
				break; /* no more for 200 ms */
			errors_before = r[c].frames[FRAME_ERROR];
		}
		refused[c] = (unsigned)r[c].frames[FRAME_ERROR];
		if (r[c].eof)
			return fail("the broker closed a connection that only opened streams");
		if (refused[c] == 0 || r[c].last_error_code != 429)
			return fail("no stream refused with 429: no budget share");
	}
	fprintf(stderr, "hostile-peer: stream-hog holding: accepted %u and %u of %u streams\n",
		STREAMS - refused[0], STREAMS - refused[1], STREAMS);
	double end = now() + seconds;
	while (now() < end)
		for (int c = 0; c < CONNS; c++)
			reader_poll(&r[c], 0.05); /* answer PINGs: a live peer, just greedy */
	for (int c = 0; c < CONNS; c++)
		close(fds[c]);
	return 0;
}

static int attack_zero_window(void) { return zero_window(64); }
static int attack_zero_window_many(void) { return zero_window(1000); }

struct attack {
	const char *name;
	int (*run)(void);
	const char *what;
};

static int flood_data(void) { return flood_bounded(FRAME_DATA); }
static int flood_data_ended(void) { return flood_on_stream(FRAME_DATA, true); }
static int flood_data_empty(void) { return flood_on_stream(FRAME_DATA, false); }
static int flood_window_live(void) { return flood_on_stream(FRAME_WINDOW_UPDATE, false); }
static int flood_window(void) { return flood_bounded(FRAME_WINDOW_UPDATE); }
static int flood_ping(void) { return flood_bounded(FRAME_PING); }
static int flood_pong(void) { return flood_bounded(FRAME_PONG); }
static int flood_close(void) { return flood_bounded(FRAME_CLOSE); }
static int flood_error(void) { return flood_bounded(FRAME_ERROR); }
static int flood_handshake(void) { return flood_bounded(FRAME_HANDSHAKE); }
static int flood_ping_unread(void) { return flood_unread(FRAME_PING); }
/* The same PINGs, run against a broker whose ping-rate lets all of them through: what ends it
 * must be the control queue (check_attacks looks for its log line). */
static int flood_ping_unread_in_rate(void)
{
	unread_may_stall = true;
	return flood_unread(FRAME_PING);
}
static int flood_handshake_unread(void) { return flood_unread(FRAME_HANDSHAKE); }
static int reset_close(void) { return attack_rapid_reset(false); }
static int reset_error(void) { return attack_rapid_reset(true); }

/* Rapid reset with a byte of DATA on each stream: a stream that carried a byte is not thereby
 * a useful one (it ran at 710,000 streams a second, unbounded); reset-rate must end it. */
static int flood_reset_data(void)
{
	reset_with_data = true;
	return attack_rapid_reset(true);
}

/* Empty and one-byte DATA spread over the eight ids the broker holds for a HANDSHAKE that
 * never comes (37 M frames a second, never closed): held frames count in noop-rate. */
static int flood_data_held(void)
{
	flood_held = true;
	return flood_bounded(FRAME_DATA);
}

/* ---- strangers at a TLS listener ----------------------------------------------------------
 * They need no certificate and speak no frame. The rotating ones bind source addresses in
 * 127.1.0.0/16, so HOST must be on this machine's loopback. */

/* What a TLS 1.3 client without a certificate sends first (its ClientHello), made once: a
 * stranger replays it, and each copy costs the broker a server flight (a key exchange, a
 * signature) unless the broker bounds them. */
static size_t client_hello(unsigned char *out, size_t len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	BIO *in = BIO_new(BIO_s_mem()), *sent = BIO_new(BIO_s_mem());
	int n = 0;
	if (ssl && in && sent) {
		SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
		SSL_set_bio(ssl, in, sent);
		SSL_set_connect_state(ssl);
		(void)SSL_do_handshake(ssl); /* wants the server's answer: the hello is out */
		n = BIO_read(sent, out, (int)len);
	} else {
		BIO_free(in);
		BIO_free(sent);
	}
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return n > 0 ? (size_t)n : 0;
}

/* The i-th of `count` source addresses: 127.1.0.1 and on, 250 to a /24. */
static uint32_t stranger_source(unsigned i, unsigned count)
{
	i %= count;
	return 0x7f010000u + ((i / 250u) << 8) + i % 250u + 1u;
}

/* A connection to HOST:PORT (IPv4) from `source`, connected within 200 ms; -1 if not. */
static int dial_from_source(uint32_t source)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in from = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(source) };
	struct pollfd pfd = { fd, POLLOUT, 0 };
	int error = 0;
	socklen_t error_len = sizeof error;
	if (fd < 0 || bind(fd, (struct sockaddr *)&from, sizeof from) < 0 ||
	    (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) ||
	    poll(&pfd, 1, 200) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len) < 0 ||
	    error != 0) {
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* A ClientHello from each of 1000 source addresses in turn, closed at once, for `seconds`. */
static int stranger_rotate(void)
{
	unsigned char hello[4096];
	size_t hello_len = client_hello(hello, sizeof hello);
	if (!hello_len)
		return fail("no ClientHello from OpenSSL");
	uint64_t made = 0;
	double end = now() + seconds;
	for (unsigned i = 0; now() < end; i++) {
		int fd = dial_from_source(stranger_source(i, 1000));
		if (fd < 0)
			continue;
		made += send_some(fd, hello, hello_len) == (ssize_t)hello_len;
		close(fd);
	}
	fprintf(stderr, "hostile-peer: %llu ClientHellos from 1000 addresses in %.1f s\n",
		(unsigned long long)made, seconds);
	return made ? 0 : fail("no connection could be made");
}

/* 1100 connections from 1100 addresses that never send their ClientHello, held `seconds`. */
static int stranger_hold(void)
{
	enum { COUNT = 1100 };
	static int fds[COUNT];
	int opened = 0;
	for (int i = 0; i < COUNT; i++) {
		int fd = dial_from_source(stranger_source((unsigned)i, COUNT));
		if (fd >= 0)
			fds[opened++] = fd;
	}
	fprintf(stderr, "hostile-peer: %d unfinished handshakes open\n", opened);
	double end = now() + seconds;
	while (now() < end)
		usleep(50000);
	for (int i = 0; i < opened; i++)
		close(fds[i]);
	return opened ? 0 : fail("no connection could be made");
}

/* 5 junk connections every 4 s from one address (HOSTILE_SOURCE: a peer's own), each
 * refused by the TLS listener as not a ClientHello. */
static int stranger_junk(void)
{
	static const char junk[] = "GET / HTTP/1.0\r\n\r\n";
	unsigned made = 0;
	double end = now() + seconds;
	while (now() < end) {
		for (int i = 0; i < 5; i++) {
			int fd = dial();
			if (fd < 0)
				continue;
			made += send_some(fd, junk, sizeof junk - 1) > 0;
			close(fd);
		}
		double next = now() + 4;
		while (now() < next && now() < end)
			usleep(50000);
	}
	fprintf(stderr, "hostile-peer: %u junk connections\n", made);
	return made ? 0 : fail("no connection could be made");
}

static const struct attack attacks[] = {
	{ "fatal-trailing", attack_fatal_trailing, "a length above 16 MiB, then 2 MiB more" },
	{ "bad-version", attack_bad_version, "a version-2 frame, then 1 MiB of frames" },
	{ "malformed-run", attack_malformed_run, "nine malformed frames in a row, then 1 MiB more" },
	{ "malformed-stream", attack_malformed_stream, "each stream-scoped malformed frame" },
	{ "window-overflow", attack_window_overflow, "credit above 2^31-1, DATA beyond the window" },
	{ "flood-data", flood_data, "DATA for ids that never open" },
	{ "flood-data-ended", flood_data_ended, "empty DATA for a stream that ended" },
	{ "flood-data-empty", flood_data_empty, "empty DATA for an open stream" },
	{ "flood-window-live", flood_window_live, "credit for an open stream that sends nothing" },
	{ "flood-data-tiny", flood_data_tiny, "one-byte DATA frames to discard, served" },
	{ "flood-window", flood_window, "WINDOW_UPDATE for unknown streams" },
	{ "flood-ping", flood_ping, "PING, answers read" },
	{ "flood-pong", flood_pong, "PONG nobody asked for" },
	{ "flood-close", flood_close, "CLOSE for unknown streams" },
	{ "flood-error", flood_error, "ERROR for unknown streams" },
	{ "flood-handshake", flood_handshake, "HANDSHAKE after HANDSHAKE, answers read" },
	{ "flood-ping-unread", flood_ping_unread, "PING without reading the PONGs" },
	{ "flood-ping-unread-in-rate", flood_ping_unread_in_rate, "PINGs within ping-rate, PONGs never read" },
	{ "flood-handshake-unread", flood_handshake_unread, "HANDSHAKEs without reading" },
	{ "rapid-reset-close", reset_close, "HANDSHAKE then CLOSE, as fast as possible" },
	{ "rapid-reset-error", reset_error, "HANDSHAKE then ERROR, as fast as possible" },
	{ "flood-reset-data", flood_reset_data, "HANDSHAKE, one byte of DATA, ERROR, as fast as possible" },
	{ "flood-data-held", flood_data_held, "empty or one-byte DATA over the 8 ids held for a HANDSHAKE" },
	{ "zero-window", attack_zero_window, "full windows towards a peer that never reads" },
	{ "zero-window-many", attack_zero_window_many, "1000 echo streams, full windows, never read" },
	{ "slowloris", attack_slowloris, "a frame a byte at a time, PINGs unanswered" },
	{ "many-connections", attack_many_connections, "2000 connections at once" },
	{ "half-header", attack_half_header, "half a frame header, then silence" },
	{ "idle", attack_idle, "a connection that answers PINGs and opens nothing" },
	{ "stream-hog", attack_stream_hog, "two connections holding 1000 streams each" },
	{ "stranger-rotate", stranger_rotate, "TLS: a ClientHello from 1000 addresses in turn" },
	{ "stranger-hold", stranger_hold, "TLS: 1100 unfinished handshakes from 1100 addresses" },
	{ "stranger-junk", stranger_junk, "TLS: 5 junk connections every 4 s from one address" },
};

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "list") == 0) {
		for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++)
			printf("%-24s %s\n", attacks[i].name, attacks[i].what);
		return 0;
	}
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: hostile-peer ATTACK HOST PORT [SECONDS] | hostile-peer list\n");
		return 2;
	}
	host = argv[2];
	port = argv[3];
	if (argc == 5)
		seconds = atof(argv[4]);
	for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++)
		if (strcmp(attacks[i].name, argv[1]) == 0)
			return attacks[i].run();
	fprintf(stderr, "hostile-peer: no attack '%s' (hostile-peer list)\n", argv[1]);
	return 2;
}
