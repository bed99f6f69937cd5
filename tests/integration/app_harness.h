/* Integration-test helpers for tests written as apps (linked with libwormholeclient). */
#ifndef WORMHOLE_TESTS_APP_HARNESS_H
#define WORMHOLE_TESTS_APP_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wormhole/wormhole.h>

#include "harness.h"

/* Two brokers on loopback: A accepts peers, B keeps a pool to A (peer name "a"). */
struct broker_pair {
	struct process a, b;
};

/* Starts A, then B, each with its extra arguments (NULL-terminated, or NULL). */
void broker_pair_start(struct broker_pair *pair, const char *const *a_extra, const char *const *b_extra);
/* Stops both with SIGTERM; fails the test unless both exit cleanly. */
void broker_pair_stop(struct broker_pair *pair);

/* Attaches to the broker's socket, retrying (bounded) while it comes up; fails the test if
 * it cannot. */
wh_client *app_attach(const struct process *broker);
/* Reads exactly size bytes into buffer with blocking reads; fails the test on an error or an
 * early end of stream. */
void app_read_exactly(wh_stream *s, void *buffer, size_t size);
/* Sends size pattern bytes (seed), half-closes, reads the echo back and checks every byte,
 * then that the stream ended cleanly. Fails the test otherwise (60 s bound; 240 s in sanitizer
 * builds). */
void app_echo_check(wh_stream *s, size_t size, unsigned seed);
/* The same when the first `sent` pattern bytes were written already (none read yet). */
void app_echo_check_from(wh_stream *s, size_t size, unsigned seed, size_t sent);

/* The client's wh_client_stats; fails the test if it cannot have them. */
struct wh_client_stats app_stats(wh_client *client);
/* What a client's books should come to (poll_until(app_stats_reached, &goal, ...)). */
struct app_stats_goal {
	wh_client *client;
	uint64_t streams, ring_bytes, broker_streams;
};
/* Whether the client's streams, ring bytes and the broker's streams for it are the goal's;
 * RELEASE has no answer, so a closed stream leaves the broker's books a moment later. */
bool app_stats_reached(void *arg);

#endif
