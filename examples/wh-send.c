/* wh-send: opens streams to a service, sends checksummed bytes, checks what comes back.
 *
 *   wh-send [-s SOCKET] [-n STREAMS] [-b BYTES] [-r] PEER SERVICE
 *
 * Each stream carries BYTES (with -r, a random size up to BYTES) of a pattern derived from
 * its number, half-closes, and must read back exactly the same bytes before end of stream
 * (the service echoes). All streams run at once, non-blocking, in one poll() loop.
 * Exit status 0 when every byte of every stream came back intact.
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#define USAGE "usage: wh-send [-s SOCKET] [-n STREAMS] [-b BYTES] [-r] PEER SERVICE\n"

struct sender {
	wh_stream *stream;
	unsigned seed;
	size_t size, sent, received;
	bool shut, done, mismatch;
	int error;
};

static unsigned char pattern(unsigned seed, size_t i)
{
	return (unsigned char)((seed * 2654435761u) >> 24 ^ (unsigned)(i * 131u + (i >> 9)));
}

static void step(struct sender *s)
{
	unsigned char buffer[65536];
	while (s->sent < s->size) {
		size_t n = s->size - s->sent < sizeof buffer ? s->size - s->sent : sizeof buffer;
		for (size_t i = 0; i < n; i++)
			buffer[i] = pattern(s->seed, s->sent + i);
		long w = wh_write(s->stream, buffer, n);
		if (w == WH_EWOULDBLOCK)
			break;
		if (w < 0) {
			s->error = (int)w;
			s->done = true;
			return;
		}
		s->sent += (size_t)w;
	}
	if (s->sent == s->size && !s->shut) {
		wh_shutdown(s->stream);
		s->shut = true;
	}
	for (;;) {
		long r = wh_read(s->stream, buffer, sizeof buffer);
		if (r == WH_EWOULDBLOCK)
			return;
		if (r <= 0) {
			s->error = (int)r;
			s->done = true;
			return;
		}
		for (long i = 0; i < r; i++)
			if (buffer[i] != pattern(s->seed, s->received + (size_t)i))
				s->mismatch = true;
		s->received += (size_t)r;
	}
}

/* --help and --version, wherever they are before "--": true when one was answered. */
static bool help_or_version(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf(USAGE "Opens STREAMS streams (1) to SERVICE on PEER, sends BYTES (1 MiB; -r: a random size up\n"
		       "to it) on each, and checks that every byte comes back.\n"
			       "-s SOCKET: the broker's app socket (default /run/wormhole/broker.sock)\n");
			return true;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("wh-send %s (libwormholeclient %s)\n", WH_VERSION_STRING, wh_version());
			return true;
		}
	}
	return false;
}

int main(int argc, char **argv)
{
	const char *socket_path = NULL;
	int streams = 1;
	size_t bytes = 1 << 20;
	bool random_sizes = false;
	int opt;
	if (help_or_version(argc, argv))
		return 0;
	while ((opt = getopt(argc, argv, "s:n:b:r")) != -1) {
		if (opt == 's')
			socket_path = optarg;
		else if (opt == 'n')
			streams = atoi(optarg);
		else if (opt == 'b')
			bytes = (size_t)strtoull(optarg, NULL, 10);
		else if (opt == 'r')
			random_sizes = true;
		else {
			fprintf(stderr, USAGE);
			return 2;
		}
	}
	if (optind != argc - 2 || streams < 1) {
		fprintf(stderr, USAGE);
		return 2;
	}
	wh_client *client;
	int rc = wh_client_attach(socket_path, &client);
	if (rc != WH_OK) {
		fprintf(stderr, "wh-send: attach: %s\n", wh_strerror(rc));
		return 1;
	}
	struct sender *senders = calloc((size_t)streams, sizeof *senders);
	struct pollfd *fds = calloc((size_t)streams, sizeof *fds);
	unsigned seed = 99;
	for (int i = 0; i < streams; i++) {
		rc = wh_open(client, argv[optind], argv[optind + 1], 10000, &senders[i].stream);
		if (rc != WH_OK) {
			fprintf(stderr, "wh-send: open %s/%s: %s\n", argv[optind], argv[optind + 1],
				wh_strerror(rc));
			return 1;
		}
		wh_set_nonblocking(senders[i].stream, true);
		senders[i].seed = (unsigned)i + 1;
		senders[i].size = random_sizes ? (size_t)rand_r(&seed) % (bytes + 1) : bytes;
	}
	int64_t start = wh_now_ns();
	int remaining = streams;
	while (remaining > 0) {
		for (int i = 0; i < streams; i++)
			if (!senders[i].done) {
				step(&senders[i]);
				if (senders[i].done)
					remaining--;
			}
		int n = 0;
		for (int i = 0; i < streams; i++)
			if (!senders[i].done)
				fds[n++] = (struct pollfd){ wh_stream_fd(senders[i].stream), POLLIN, 0 };
		/* no timeout: each stream's descriptor stays readable while a call that returned
		 * WH_EWOULDBLOCK could go on, and hangs up if the broker dies */
		if (n && poll(fds, (nfds_t)n, -1) < 0)
			break;
	}
	double seconds = (double)(wh_now_ns() - start) / 1e9;
	int failed = 0;
	size_t total = 0;
	for (int i = 0; i < streams; i++) {
		struct sender *s = &senders[i];
		total += s->received;
		if (s->error || s->mismatch || s->received != s->size) {
			uint32_t code = 0;
			const char *message = "";
			wh_stream_error(s->stream, &code, &message);
			if (failed++ < 5)
				fprintf(stderr, "wh-send: stream %d: %zu of %zu bytes back%s: %s (%u %s)\n", i,
					s->received, s->size, s->mismatch ? ", corrupted" : "",
					wh_strerror(s->error), code, message);
		}
		wh_close(s->stream);
	}
	printf("wh-send: %d streams, %zu bytes echoed in %.3f s (%.1f MB/s), %d failed\n", streams,
	       total, seconds, (double)total / seconds / 1e6, failed);
	wh_client_detach(client);
	free(senders);
	free(fds);
	return failed ? 1 : 0;
}
