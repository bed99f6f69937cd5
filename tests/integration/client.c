/* A checksummed sender over a mux stream, driven by stream events: the tests' app. */
#include "config.h"

#include <stdio.h>

#include "client.h"
#include "harness.h"

static void finish(struct test_sender *c)
{
	if (c->released)
		return;
	c->released = true;
	if (c->done_counter)
		(*c->done_counter)++;
	mux_stream_release(c->stream);
}

static void pump_writes(struct test_sender *c)
{
	unsigned char buffer[65536];
	while (c->sent < c->size) {
		size_t room = mux_stream_write_room(c->stream);
		if (room == 0)
			return;
		size_t n = c->size - c->sent;
		n = n < sizeof buffer ? n : sizeof buffer;
		n = n < room ? n : room;
		for (size_t i = 0; i < n; i++)
			buffer[i] = harness_pattern(c->seed, c->sent + i);
		long wrote = mux_stream_write(c->stream, buffer, n);
		if (wrote <= 0)
			return;
		c->sent += (size_t)wrote;
	}
	if (!c->write_closed) {
		c->write_closed = true;
		mux_stream_close_write(c->stream);
	}
}

static void on_event(struct mux_stream *stream, enum mux_stream_event event, void *user)
{
	struct test_sender *c = user;
	unsigned char buffer[65536];
	(void)stream;
	if (c->released)
		return;
	if (event == MUX_STREAM_ERROR) {
		c->error = mux_stream_error(c->stream);
		finish(c);
		return;
	}
	pump_writes(c);
	for (;;) {
		long n = mux_stream_read(c->stream, buffer, sizeof buffer);
		if (n == WH_EWOULDBLOCK)
			break;
		if (n == 0) {
			c->eof = true;
			finish(c);
			return;
		}
		if (n < 0) {
			c->error = (int)n;
			finish(c);
			return;
		}
		for (long i = 0; i < n; i++)
			if (buffer[i] != harness_pattern(c->seed, c->received + (size_t)i))
				c->mismatch = true;
		c->received += (size_t)n;
	}
}

void test_sender_start(struct test_sender *c, struct mux_stream *stream, unsigned seed, size_t size,
		       int *done_counter)
{
	*c = (struct test_sender){ .stream = stream, .seed = seed, .size = size,
				   .done_counter = done_counter };
	mux_stream_set_handler(stream, on_event, c);
	pump_writes(c);
}

bool test_sender_ok(const struct test_sender *c)
{
	return c->eof && !c->mismatch && c->error == WH_OK && c->received == c->size &&
	       c->sent == c->size;
}

struct pool *test_pool_to(struct ev_loop *loop, const char *host, unsigned port,
			  const struct pool_config *config)
{
	char p[16];
	snprintf(p, sizeof p, "%u", port);
	return pool_new(loop, "peer", host, p, config, NULL, NULL, NULL);
}

struct opened {
	struct mux_stream *stream;
	int error;
	bool done;
};

static void on_opened(struct mux_stream *stream, int error, void *user)
{
	struct opened *o = user;
	o->stream = stream;
	o->error = error;
	o->done = true;
}

static bool opened_done(void *arg)
{
	return ((struct opened *)arg)->done;
}

struct mux_stream *test_pool_open(struct ev_loop *loop, struct pool *pool, const char *service,
				  double timeout, int *error)
{
	struct opened o = { .error = WH_ETIMEOUT };
	*error = pool_open_stream(pool, service, on_opened, &o);
	if (*error != WH_OK)
		return NULL;
	run_until(loop, opened_done, &o, timeout);
	*error = o.done ? o.error : WH_EWOULDBLOCK; /* not the pool's answer: none came */
	return o.stream;
}
