/* A checksummed sender over a mux stream, driven by stream events: the tests' app. */
#ifndef WORMHOLE_TESTS_CLIENT_H
#define WORMHOLE_TESTS_CLIENT_H

#include <ev.h>

#include "mux.h"
#include "pool.h"

struct test_sender {
	struct mux_stream *stream;
	unsigned seed;
	size_t size, sent, received;
	bool write_closed, eof, mismatch, released;
	int error;
	int *done_counter; /* incremented once when the stream ended (EOF or error) */
};

/* Takes the stream: writes `size` pattern bytes, half-closes, checks the echo up to EOF. */
void test_sender_start(struct test_sender *sender, struct mux_stream *stream, unsigned seed,
		       size_t size, int *done_counter);
/* True if every byte came back intact and the stream ended without error. */
bool test_sender_ok(const struct test_sender *sender);

/* A pool to host:port (named "peer"), for tests. */
struct pool *test_pool_to(struct ev_loop *loop, const char *host, unsigned port,
			  const struct pool_config *config);

/* Opens a stream through the pool and runs the loop until the answer (bounded by timeout
 * seconds). *error gets the pool's answer, or WH_EWOULDBLOCK if none came in time; the
 * stream or NULL is returned. */
struct mux_stream *test_pool_open(struct ev_loop *loop, struct pool *pool, const char *service,
				  double timeout, int *error);

#endif
