/* Integration-test helpers for tests written as apps: attaching, checksummed echoes. */
#include "config.h"

#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "app_harness.h"

void broker_pair_start(struct broker_pair *pair, const char *const *a_extra, const char *const *b_extra)
{
	ck_assert(broker_spawn(&pair->a, a_extra));
	char peer[64];
	snprintf(peer, sizeof peer, "a=127.0.0.1:%u", pair->a.port);
	const char *args[16] = { "--peer", peer };
	int n = 2;
	for (int i = 0; b_extra && b_extra[i] && n < 15; i++)
		args[n++] = b_extra[i];
	args[n] = NULL;
	ck_assert(broker_spawn(&pair->b, args));
}

void broker_pair_stop(struct broker_pair *pair)
{
	ck_assert_int_eq(process_stop(&pair->b, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&pair->a, SIGTERM), 0);
}

wh_client *app_attach(const struct process *broker)
{
	wh_client *client = NULL;
	int rc = WH_EBROKER_GONE;
	for (int i = 0; i < 200 && rc != WH_OK; i++) { /* the socket is ready once the port is */
		rc = wh_client_attach(broker->socket_path, &client);
		if (rc != WH_OK)
			usleep(10000);
	}
	ck_assert_int_eq(rc, WH_OK);
	return client;
}

void app_read_exactly(wh_stream *s, void *buffer, size_t size)
{
	size_t got = 0;
	while (got < size) {
		long n = wh_read(s, (char *)buffer + got, size - got);
		ck_assert_msg(n > 0, "read: %s", n ? wh_strerror((int)n) : "end of stream");
		got += (size_t)n;
	}
}

/* Sends size pattern bytes, half-closes, reads the echo back and checks every byte. */
void app_echo_check(wh_stream *s, size_t size, unsigned seed)
{
	app_echo_check_from(s, size, seed, 0);
}

void app_echo_check_from(wh_stream *s, size_t size, unsigned seed, size_t sent)
{
	static unsigned char out[1 << 16], in[1 << 16];
	size_t received = 0;
	bool shut = false;
	wh_set_nonblocking(s, true);
#ifdef WH_SANITIZERS
	int64_t deadline = wh_now_ns() + 240ll * 1000000000; /* instrumented code is slower */
#else
	int64_t deadline = wh_now_ns() + 60ll * 1000000000;
#endif
	for (;;) {
		while (sent < size) {
			size_t n = size - sent < sizeof out ? size - sent : sizeof out;
			for (size_t i = 0; i < n; i++)
				out[i] = harness_pattern(seed, sent + i);
			long w = wh_write(s, out, n);
			if (w == WH_EWOULDBLOCK)
				break;
			ck_assert_msg(w > 0, "write: %s", wh_strerror((int)w));
			sent += (size_t)w;
		}
		if (sent == size && !shut) {
			ck_assert_int_eq(wh_shutdown(s), WH_OK);
			shut = true;
		}
		long r;
		while ((r = wh_read(s, in, sizeof in)) > 0) {
			for (long i = 0; i < r; i++)
				if (in[i] != harness_pattern(seed, received + (size_t)i))
					ck_abort_msg("byte %zu differs", received + (size_t)i);
			received += (size_t)r;
		}
		if (r == 0)
			break;
		ck_assert_msg(r == WH_EWOULDBLOCK, "read: %s", wh_strerror((int)r));
		ck_assert_msg(wh_now_ns() < deadline, "stalled: %zu sent, %zu back", sent, received);
		struct pollfd pfd = { wh_stream_fd(s), POLLIN, 0 };
		poll(&pfd, 1, 1000);
	}
	ck_assert_uint_eq(received, size);
	ck_assert(wh_stream_is_closed(s));
	ck_assert_int_eq(wh_stream_error(s, NULL, NULL), WH_OK);
}

struct wh_client_stats app_stats(wh_client *client)
{
	struct wh_client_stats stats;
	int rc = wh_client_stats(client, &stats);
	ck_assert_msg(rc == WH_OK, "stats: %s", wh_strerror(rc));
	return stats;
}

bool app_stats_reached(void *arg)
{
	struct app_stats_goal *g = arg;
	struct wh_client_stats now = app_stats(g->client);
	return now.streams == g->streams && now.ring_bytes == g->ring_bytes &&
	       now.broker_streams == g->broker_streams;
}
