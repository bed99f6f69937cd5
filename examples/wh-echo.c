/* wh-echo: an app that listens on a service and echoes every stream opened to it.
 *
 *   wh-echo [-s SOCKET] [-n STREAMS] SERVICE
 *
 * Serves streams concurrently from one thread: each stream is non-blocking and its
 * wh_stream_fd sits in one poll() set with the client's fd. Exits after STREAMS streams
 * ended (0: never). Prints one line per finished stream.
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#define USAGE "usage: wh-echo [-s SOCKET] [-n STREAMS] SERVICE\n"

#define MAX_STREAMS 4096

struct echo {
	wh_stream *stream;
	char pending[65536];
	size_t length, offset;
	unsigned long long bytes;
	bool eof;
};

/* Moves what it can; returns false once the stream is over. */
static bool serve(struct echo *e)
{
	for (;;) {
		if (e->offset < e->length) {
			long n = wh_write(e->stream, e->pending + e->offset, e->length - e->offset);
			if (n == WH_EWOULDBLOCK)
				return true;
			if (n < 0)
				return false;
			e->offset += (size_t)n;
			continue;
		}
		if (e->eof)
			return false;
		long n = wh_read(e->stream, e->pending, sizeof e->pending);
		if (n == WH_EWOULDBLOCK)
			return true;
		if (n == 0) {
			e->eof = true;
			wh_shutdown(e->stream);
			return false;
		}
		if (n < 0)
			return false;
		e->length = (size_t)n;
		e->offset = 0;
		e->bytes += (unsigned long long)n;
	}
}

/* --help and --version, wherever they are before "--": true when one was answered. */
static bool help_or_version(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf(USAGE "Listens on SERVICE and echoes every stream opened to it; exits after STREAMS streams\n"
		       "ended (0: never).\n"
			       "-s SOCKET: the broker's app socket (default /run/wormhole/broker.sock)\n");
			return true;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("wh-echo %s (libwormholeclient %s)\n", WH_VERSION_STRING, wh_version());
			return true;
		}
	}
	return false;
}

int main(int argc, char **argv)
{
	const char *socket_path = NULL;
	long limit = 0;
	int opt;
	if (help_or_version(argc, argv))
		return 0;
	while ((opt = getopt(argc, argv, "s:n:")) != -1) {
		if (opt == 's')
			socket_path = optarg;
		else if (opt == 'n')
			limit = atol(optarg);
		else {
			fprintf(stderr, USAGE);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, USAGE);
		return 2;
	}
	const char *service = argv[optind];
	wh_client *client;
	int rc = wh_client_attach(socket_path, &client);
	if (rc == WH_OK)
		rc = wh_listen(client, service);
	if (rc != WH_OK) {
		fprintf(stderr, "wh-echo: %s\n", wh_strerror(rc));
		return 1;
	}
	printf("wh-echo: listening on service %s\n", service);
	fflush(stdout);
	static struct echo echoes[MAX_STREAMS];
	static struct pollfd fds[MAX_STREAMS + 1];
	int count = 0;
	long finished = 0;
	while (!limit || finished < limit) {
		fds[0] = (struct pollfd){ wh_client_fd(client), POLLIN, 0 };
		for (int i = 0; i < count; i++)
			fds[i + 1] = (struct pollfd){ wh_stream_fd(echoes[i].stream), POLLIN, 0 };
		if (poll(fds, (nfds_t)count + 1, -1) < 0)
			break;
		if (fds[0].revents & (POLLHUP | POLLERR)) {
			fprintf(stderr, "wh-echo: %s\n", wh_strerror(WH_EBROKER_GONE));
			return 1;
		}
		wh_stream *stream;
		while (count < MAX_STREAMS && wh_accept(client, 0, &stream) == WH_OK) {
			memset(&echoes[count], 0, sizeof echoes[count]);
			echoes[count].stream = stream;
			wh_set_nonblocking(stream, true);
			count++;
		}
		for (int i = 0; i < count;) {
			if (serve(&echoes[i])) {
				i++;
				continue;
			}
			uint32_t code;
			const char *message;
			int error = wh_stream_error(echoes[i].stream, &code, &message);
			if (error)
				printf("wh-echo: stream %llu done: %llu bytes echoed, error %u: %s\n",
				       (unsigned long long)wh_stream_id(echoes[i].stream), echoes[i].bytes,
				       code, message);
			else
				printf("wh-echo: stream %llu done: %llu bytes echoed, ok\n",
				       (unsigned long long)wh_stream_id(echoes[i].stream), echoes[i].bytes);
			fflush(stdout);
			wh_close(echoes[i].stream);
			echoes[i] = echoes[--count];
			finished++;
		}
	}
	wh_client_detach(client);
	return 0;
}
