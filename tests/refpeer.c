/* A test peer that speaks the frame protocol the way the reference implementation does.
 *
 * It proves interoperation without the reference itself: empty HANDSHAKE payloads, DATA at
 * most 32 KiB, a fixed 256 KiB send window, and the reference's receive rule (its counter
 * starts full, so its first WINDOW_UPDATE is 256 KiB plus the bytes read, then one every
 * 128 KiB). It is deliberately strict where the reference is: an unknown frame type or a
 * payload above 32 KiB ends the connection, more than 1 MiB unread on a stream is fatal.
 *
 *   refpeer serve PORT_FILE            accept one connection, echo every stream opened to it
 *   refpeer serve PORT_FILE no-close   the same, and as the reference does, never send CLOSE
 *                                      on a stream the dialler closed first (WIRE-NOTES
 *                                      weakness 10); an ERROR on such a stream is no failure
 *                                      (the reference has forgotten it)
 *   refpeer dial HOST PORT N BYTES     open N streams, send BYTES each, check the echo
 *   refpeer dial HOST PORT N BYTES reorder
 *                                      the same, HANDSHAKEs out of id order as the reference's
 *                                      concurrent opens send them (3 before 1, 7 before 5, ...),
 *                                      each late one's first DATA ahead of both (WIRE-NOTES
 *                                      weaknesses 4 and 11)
 *
 * Exit status 0 when every stream ended cleanly with every byte checked; 1 otherwise.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bytebuf.h"
#include "frame.h"

#define REF_WINDOW (256u * 1024u)
#define REF_FRAME (32u * 1024u)
#define REF_BUFFER_MAX (1u << 20)
#define MAX_STREAMS 4096

struct ref_stream {
	uint32_t id;
	bool used, remote_closed, close_sent;
	int64_t credit;
	uint32_t read_counter; /* the reference's: starts full */
	struct bytebuf in, out;
	/* dial mode */
	size_t to_send, generated, received;
	bool mismatch;
};

struct ref_peer {
	int fd;
	bool client;
	struct frame_decoder decoder;
	struct ref_stream streams[MAX_STREAMS];
	int stream_count;
	uint32_t rx_stream; /* DATA being received: index + 1, 0 none */
	struct bytebuf output;
	int rr; /* round-robin cursor */
	bool no_close; /* serve: never CLOSE after the dialler's CLOSE, as the reference */
	const char *failure;
};

static uint8_t pattern(uint32_t id, size_t i)
{
	return (uint8_t)(id * 7u + i * 13u + (i >> 10));
}

static void queue_frame(struct ref_peer *p, const uint8_t *frame, int length)
{
	if (length > 0)
		bytebuf_write(&p->output, frame, (size_t)length);
}

static struct ref_stream *find(struct ref_peer *p, uint32_t id)
{
	for (int i = 0; i < p->stream_count; i++)
		if (p->streams[i].used && p->streams[i].id == id)
			return &p->streams[i];
	return NULL;
}

static struct ref_stream *add_stream(struct ref_peer *p, uint32_t id)
{
	if (p->stream_count == MAX_STREAMS)
		return NULL;
	struct ref_stream *s = &p->streams[p->stream_count++];
	memset(s, 0, sizeof *s);
	s->id = id;
	s->used = true;
	s->credit = REF_WINDOW;
	s->read_counter = REF_WINDOW;
	bytebuf_init(&s->in, REF_BUFFER_MAX);
	bytebuf_init(&s->out, REF_BUFFER_MAX);
	return s;
}

/* The app read n bytes: the reference's update rule. */
static void app_read(struct ref_peer *p, struct ref_stream *s, size_t n)
{
	s->read_counter += (uint32_t)n;
	if (s->read_counter >= REF_WINDOW / 2 && !s->remote_closed) {
		uint8_t frame[16];
		queue_frame(p, frame, frame_encode_window_update(frame, sizeof frame, s->id, s->read_counter));
		s->read_counter = 0;
	}
}

static void on_frame(struct ref_peer *p, const struct frame_event *ev)
{
	const struct frame_header *h = &ev->header;
	struct ref_stream *s = find(p, h->stream_id);
	uint32_t value;
	uint8_t frame[64];
	switch (h->type) {
	case FRAME_HANDSHAKE:
		if (s) {
			p->failure = "duplicate HANDSHAKE"; /* the reference drops the connection */
			return;
		}
		if (!add_stream(p, h->stream_id))
			p->failure = "too many streams";
		return;
	case FRAME_WINDOW_UPDATE:
		if (s && frame_parse_window_update(h, ev->payload, &value) == WH_OK)
			s->credit += value;
		return;
	case FRAME_PING:
		if (frame_parse_ping(h, ev->payload, &value) == WH_OK)
			queue_frame(p, frame, frame_encode_pong(frame, sizeof frame, value));
		return;
	case FRAME_CLOSE:
		if (s)
			s->remote_closed = true;
		return;
	case FRAME_ERROR:
		if (p->no_close && s && s->remote_closed)
			return; /* a stream we will never close: the far end gave up on it */
		p->failure = "received ERROR";
		return;
	default:
		return;
	}
}

static void on_data(struct ref_peer *p, const uint8_t *data, size_t n)
{
	struct ref_stream *s = p->rx_stream ? &p->streams[p->rx_stream - 1] : NULL;
	if (!s)
		return; /* unknown stream: dropped silently, as the reference does */
	if (p->client) {
		for (size_t i = 0; i < n; i++)
			if (data[i] != pattern(s->id, s->received + i))
				s->mismatch = true;
		s->received += n;
		app_read(p, s, n);
		return;
	}
	if (bytebuf_write(&s->in, data, n) != (long)n)
		p->failure = "more than 1 MiB unread on a stream";
}

static void receive(struct ref_peer *p, const uint8_t *data, size_t length)
{
	size_t offset = 0;
	while (offset < length && !p->failure) {
		struct frame_event ev;
		offset += frame_decoder_feed(&p->decoder, data + offset, length - offset, &ev);
		if (ev.kind == FRAME_EVENT_MALFORMED) {
			p->failure = wh_strerror(ev.error); /* the reference ends the connection */
		} else if (ev.kind == FRAME_EVENT_CONTROL) {
			on_frame(p, &ev);
		} else if (ev.kind == FRAME_EVENT_DATA_HEADER) {
			struct ref_stream *s = find(p, ev.header.stream_id);
			p->rx_stream = s ? (uint32_t)(s - p->streams) + 1 : 0;
		} else if (ev.kind == FRAME_EVENT_DATA_CHUNK) {
			on_data(p, ev.payload, ev.payload_length);
		}
	}
}

/* Echo app (serve mode) and sender (dial mode), then DATA frames while credit lasts. */
static void produce(struct ref_peer *p)
{
	uint8_t chunk[REF_FRAME];
	for (int i = 0; i < p->stream_count; i++) {
		struct ref_stream *s = &p->streams[i];
		if (!p->client) {
			while (bytebuf_length(&s->in) && bytebuf_room(&s->out)) {
				size_t n = bytebuf_read(&s->in, chunk,
							bytebuf_room(&s->out) < sizeof chunk ? bytebuf_room(&s->out)
											     : sizeof chunk);
				bytebuf_write(&s->out, chunk, n);
				app_read(p, s, n);
			}
		} else {
			while (s->generated < s->to_send && bytebuf_room(&s->out)) {
				size_t n = s->to_send - s->generated;
				n = n < sizeof chunk ? n : sizeof chunk;
				n = n < bytebuf_room(&s->out) ? n : bytebuf_room(&s->out);
				for (size_t j = 0; j < n; j++)
					chunk[j] = pattern(s->id, s->generated + j);
				bytebuf_write(&s->out, chunk, n);
				s->generated += n;
			}
		}
	}
	if (bytebuf_length(&p->output) > 4 * REF_FRAME)
		return; /* the socket is behind: let it drain first */
	for (int turn = 0; turn < p->stream_count; turn++) {
		struct ref_stream *s = &p->streams[(p->rr + turn) % p->stream_count];
		size_t n = bytebuf_length(&s->out);
		n = n < REF_FRAME ? n : REF_FRAME;
		n = (int64_t)n < s->credit ? n : (size_t)(s->credit > 0 ? s->credit : 0);
		if (n) {
			uint8_t header[FRAME_HEADER_SIZE];
			frame_encode_data_header(header, sizeof header, s->id, n);
			bytebuf_write(&p->output, header, sizeof header);
			bytebuf_read(&s->out, chunk, n);
			bytebuf_write(&p->output, chunk, n);
			s->credit -= (int64_t)n;
		}
		bool all_sent = p->client ? s->generated == s->to_send : s->remote_closed && !bytebuf_length(&s->in);
		if (all_sent && !bytebuf_length(&s->out) && !s->close_sent) {
			uint8_t frame[16];
			if (!p->no_close) /* no_close: done, but its CLOSE is never sent */
				queue_frame(p, frame, frame_encode_close(frame, sizeof frame, s->id));
			s->close_sent = true;
		}
	}
	p->rr++;
}

static bool all_done(const struct ref_peer *p, int expected)
{
	if (p->stream_count < expected)
		return false;
	for (int i = 0; i < p->stream_count; i++)
		if (!p->streams[i].close_sent || !p->streams[i].remote_closed)
			return false;
	return bytebuf_length(&p->output) == 0;
}

static int run(struct ref_peer *p, int expected_streams)
{
	static uint8_t buffer[1 << 16];
	for (;;) {
		produce(p);
		if (p->failure)
			break;
		if (p->client && all_done(p, expected_streams))
			return 0;
		struct pollfd pfd = { p->fd, POLLIN | (bytebuf_length(&p->output) ? POLLOUT : 0), 0 };
		if (poll(&pfd, 1, 30000) <= 0) {
			p->failure = "no progress for 30 s";
			break;
		}
		if (pfd.revents & POLLOUT) {
			struct iovec iov[2];
			int n = bytebuf_peek(&p->output, 0, iov);
			ssize_t w = writev(p->fd, iov, n);
			if (w > 0)
				bytebuf_consume(&p->output, (size_t)w);
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(p->fd, buffer, sizeof buffer);
			if (n == 0 && !p->client && all_done(p, 0))
				return 0; /* the dialler is done with us, every stream ended cleanly */
			if (n <= 0) {
				p->failure = n == 0 ? "connection closed early" : strerror(errno);
				break;
			}
			receive(p, buffer, (size_t)n);
		}
	}
	fprintf(stderr, "refpeer: %s\n", p->failure);
	return 1;
}

static int serve(struct ref_peer *p, const char *port_file)
{
	int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof addr;
	if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
	    listen(listener, 4) < 0 || getsockname(listener, (struct sockaddr *)&addr, &len) < 0) {
		perror("refpeer: listen");
		return 1;
	}
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%u\n", ntohs(addr.sin_port)) < 0 || fclose(f) || rename(tmp, port_file)) {
		perror("refpeer: port file");
		return 1;
	}
	p->fd = accept(listener, NULL, NULL);
	close(listener);
	if (p->fd < 0) {
		perror("refpeer: accept");
		return 1;
	}
	p->client = false;
	return run(p, 0);
}

/* The first bytes of a stream, as a DATA frame queued now (ahead of its HANDSHAKE). */
static void send_first_data(struct ref_peer *p, struct ref_stream *s)
{
	uint8_t frame[FRAME_HEADER_SIZE + 1024];
	size_t n = s->to_send < 1024 ? s->to_send : 1024;
	for (size_t j = 0; j < n; j++)
		frame[FRAME_HEADER_SIZE + j] = pattern(s->id, j);
	frame_encode_data_header(frame, sizeof frame, s->id, n);
	queue_frame(p, frame, (int)(FRAME_HEADER_SIZE + n));
	s->generated = n;
	s->credit -= (int64_t)n;
}

/* Opens the streams: HANDSHAKEs in id order, or (reorder) each pair swapped, the late one's
 * first DATA first of all: DATA 1, HANDSHAKE 3, HANDSHAKE 1, DATA 5, HANDSHAKE 7, ... */
static void open_streams(struct ref_peer *p, int streams, size_t bytes, bool reorder)
{
	for (int i = 0; i < streams; i++) {
		struct ref_stream *s = add_stream(p, (uint32_t)(2 * i + 1));
		s->to_send = bytes;
	}
	for (int i = 0; i < streams; i++) {
		struct ref_stream *s = &p->streams[i];
		uint8_t frame[16];
		if (reorder && i % 2 == 0 && i + 1 < streams) {
			struct ref_stream *next = &p->streams[i + 1];
			if (s->to_send)
				send_first_data(p, s);
			queue_frame(p, frame, frame_encode_handshake(frame, sizeof frame, next->id, NULL, 0));
			queue_frame(p, frame, frame_encode_handshake(frame, sizeof frame, s->id, NULL, 0));
			i++;
			continue;
		}
		queue_frame(p, frame, frame_encode_handshake(frame, sizeof frame, s->id, NULL, 0));
	}
}

static int dial(struct ref_peer *p, const char *host, const char *port, int streams, size_t bytes,
		bool reorder)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		fprintf(stderr, "refpeer: cannot resolve %s:%s\n", host, port);
		return 1;
	}
	p->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->fd < 0 || connect(p->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		perror("refpeer: connect");
		freeaddrinfo(ai);
		return 1;
	}
	freeaddrinfo(ai);
	p->client = true;
	if (streams > MAX_STREAMS)
		streams = MAX_STREAMS;
	open_streams(p, streams, bytes, reorder);
	int rc = run(p, streams);
	for (int i = 0; i < p->stream_count && rc == 0; i++) {
		struct ref_stream *s = &p->streams[i];
		if (s->mismatch || s->received != bytes) {
			fprintf(stderr, "refpeer: stream %u: %zu of %zu bytes back%s\n", s->id, s->received,
				bytes, s->mismatch ? ", corrupted" : "");
			rc = 1;
		}
	}
	if (rc == 0)
		printf("refpeer: %d streams x %zu bytes echoed and verified\n", streams, bytes);
	return rc;
}

int main(int argc, char **argv)
{
	static struct ref_peer peer;
	frame_decoder_init(&peer.decoder, REF_FRAME);
	bytebuf_init(&peer.output, 64u << 20);
	if ((argc == 3 || (argc == 4 && strcmp(argv[3], "no-close") == 0)) && strcmp(argv[1], "serve") == 0) {
		peer.no_close = argc == 4;
		return serve(&peer, argv[2]);
	}
	if ((argc == 6 || (argc == 7 && strcmp(argv[6], "reorder") == 0)) && strcmp(argv[1], "dial") == 0) {
		return dial(&peer, argv[2], argv[3], atoi(argv[4]), (size_t)strtoull(argv[5], NULL, 10),
			    argc == 7);
	}
	fprintf(stderr, "usage: refpeer serve PORT_FILE [no-close] | refpeer dial HOST PORT STREAMS BYTES [reorder]\n");
	return 2;
}
