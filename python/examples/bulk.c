/* bulk.c: bulk.py's loop in C, the baseline the binding is measured against: one stream
 * through an echo, a 64 KiB pattern block written from, a reused buffer read into and
 * compared, poll() on the stream's descriptor when neither side moved. (examples/wh-send
 * computes its pattern byte by byte, which costs more than the transfer on a fast path.)
 *
 *   cc -O2 -Ilibclient/include python/examples/bulk.c -Llibclient/.libs -lwormholeclient -o bulk
 *   LD_LIBRARY_PATH=libclient/.libs ./bulk [-s SOCKET] [-b BYTES] PEER SERVICE
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#define BLOCK 65536

static unsigned char block[BLOCK], buffer[BLOCK];

/* Reads what is there and checks it; false at the end of the stream or on an error. */
static int drain(wh_stream *s, size_t *received, int *progress)
{
	for (;;) {
		long n = wh_read(s, buffer, sizeof buffer);
		if (n == WH_EWOULDBLOCK)
			return 1;
		if (n <= 0)
			return (int)n;
		size_t offset = *received % BLOCK, first = (size_t)n < BLOCK - offset ? (size_t)n : BLOCK - offset;
		if (memcmp(buffer, block + offset, first) || memcmp(buffer + first, block, (size_t)n - first)) {
			fprintf(stderr, "bulk: bytes differ near offset %zu\n", *received);
			exit(1);
		}
		*received += (size_t)n;
		*progress = 1;
	}
}

int main(int argc, char **argv)
{
	const char *socket_path = NULL;
	size_t size = 1 << 24;
	int opt;
	while ((opt = getopt(argc, argv, "s:b:")) != -1) {
		if (opt == 's')
			socket_path = optarg;
		else if (opt == 'b')
			size = (size_t)strtoull(optarg, NULL, 10);
		else
			return 2;
	}
	if (optind != argc - 2)
		return 2;
	for (size_t i = 0; i < BLOCK; i++)
		block[i] = (unsigned char)(i * 131 + (i >> 9));
	wh_client *client;
	wh_stream *s;
	int rc = wh_client_attach(socket_path, &client);
	if (rc == WH_OK)
		rc = wh_open(client, argv[optind], argv[optind + 1], 10000, &s);
	if (rc != WH_OK) {
		fprintf(stderr, "bulk: %s\n", wh_strerror(rc));
		return 1;
	}
	wh_set_nonblocking(s, true);
	struct pollfd pfd = { wh_stream_fd(s), POLLIN, 0 };
	size_t sent = 0, received = 0;
	int shut = 0, more = 1;
	int64_t start = wh_now_ns();
	while (more > 0) {
		int progress = 0;
		while (sent < size) {
			size_t offset = sent % BLOCK, n = size - sent < BLOCK - offset ? size - sent : BLOCK - offset;
			long w = wh_write(s, block + offset, n);
			if (w == WH_EWOULDBLOCK)
				break;
			if (w < 0) {
				fprintf(stderr, "bulk: write: %s\n", wh_strerror((int)w));
				return 1;
			}
			sent += (size_t)w;
			progress = 1;
		}
		if (sent == size && !shut)
			shut = wh_shutdown(s) == WH_OK;
		more = drain(s, &received, &progress);
		if (more > 0 && !progress)
			poll(&pfd, 1, 1000);
	}
	double seconds = (double)(wh_now_ns() - start) / 1e9;
	if (more < 0 || received != size) {
		fprintf(stderr, "bulk: %zu of %zu bytes back: %s\n", received, size, wh_strerror(more));
		return 1;
	}
	printf("bulk: %zu bytes echoed in %.3f s (%.1f MB/s)\n", received, seconds, (double)received / seconds / 1e6);
	wh_close(s);
	wh_client_detach(client);
	return 0;
}
