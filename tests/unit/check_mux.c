/* Unit tests of the mux: two muxes joined by an in-memory pipe, no sockets, a fake clock. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mux.h"
#include "services.h"

/* ---- the in-memory link ------------------------------------------------------------- */

struct link {
	struct mux *client, *server;
	double now;
	unsigned seed;
	bool partial_writes; /* write a random prefix of what gather offers, as a full socket would */
	bool cut;            /* stop delivering (a dead peer) */
	int server_closed, client_closed;
	int server_close_error, client_close_error;
	int timer_changes; /* on_timer_changed calls, either side */
};

static uint8_t wire_scratch[4 << 20];

/* Moves one gather's worth of bytes from one mux to the other; returns bytes moved. */
static size_t pump_once(struct link *link, struct mux *from, struct mux *to)
{
	struct iovec iov[64];
	int n = mux_output_gather(from, iov, 64);
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		memcpy(wire_scratch + total, iov[i].iov_base, iov[i].iov_len);
		total += iov[i].iov_len;
	}
	if (total == 0)
		return 0;
	size_t write = total;
	if (link->partial_writes && total > 1)
		write = 1 + (size_t)rand_r(&link->seed) % total;
	mux_output_advance(from, write);
	if (!link->cut)
		mux_input(to, wire_scratch, write, link->now);
	return write;
}

static void pump(struct link *link)
{
	for (int round = 0; round < 100000; round++) {
		size_t moved = pump_once(link, link->client, link->server);
		moved += pump_once(link, link->server, link->client);
		if (moved == 0)
			return;
	}
	ck_abort_msg("pump did not settle");
}

static void on_closed(struct mux *mux, int error, void *user)
{
	struct link *link = user;
	if (mux == link->server) {
		link->server_closed++;
		link->server_close_error = error;
	} else {
		link->client_closed++;
		link->client_close_error = error;
	}
}

static void on_timer_changed(struct mux *mux, void *user)
{
	(void)mux;
	((struct link *)user)->timer_changes++;
}

static const struct mux_callbacks link_callbacks = { .on_closed = on_closed,
						     .on_timer_changed = on_timer_changed };

/* A client and a server joined by the link; the server's streams drawn from server_budget
 * (NULL: none). */
static void link_open_budget(struct link *link, const struct mux_config *config,
			     struct mux_budget *server_budget)
{
	memset(link, 0, sizeof *link);
	link->seed = 1;
	link->now = 1000.0;
	link->client = mux_new(true, config, NULL, &link_callbacks, link);
	link->server = mux_new(false, config, server_budget, &link_callbacks, link);
	ck_assert_ptr_nonnull(link->client);
	ck_assert_ptr_nonnull(link->server);
}

static void link_open(struct link *link, const struct mux_config *config)
{
	link_open_budget(link, config, NULL);
}

static void link_close(struct link *link)
{
	mux_free(link->client);
	mux_free(link->server);
}

static struct mux_config test_config(void)
{
	struct mux_config config;
	mux_config_default(&config);
	config.keepalive_interval = 0; /* tests drive PINGs themselves */
	return config;
}

/* ---- the test apps: a checksummed sender and an echo server ------------------------- */

static uint8_t pattern(uint32_t seed, size_t i)
{
	return (uint8_t)((seed * 2654435761u) >> 24 ^ (uint32_t)(i * 131u + (i >> 9)));
}

struct sender {
	struct mux_stream *stream;
	uint32_t seed;
	size_t size, sent, received;
	bool write_closed, eof, mismatch;
};

struct echo {
	struct mux_stream *stream;
	uint8_t pending[65536];
	size_t pending_length;
	bool eof, write_closed;
};

/* One non-blocking step of a sender: write what fits, then read and check the echo. */
static bool sender_step(struct sender *c)
{
	uint8_t buffer[65536];
	bool progress = false;
	while (c->sent < c->size) {
		size_t n = c->size - c->sent < sizeof buffer ? c->size - c->sent : sizeof buffer;
		for (size_t i = 0; i < n; i++)
			buffer[i] = pattern(c->seed, c->sent + i);
		long wrote = mux_stream_write(c->stream, buffer, n);
		if (wrote == WH_EWOULDBLOCK)
			break;
		ck_assert_int_gt(wrote, 0);
		c->sent += (size_t)wrote;
		progress = true;
	}
	if (c->sent == c->size && !c->write_closed) {
		ck_assert_int_eq(mux_stream_close_write(c->stream), WH_OK);
		c->write_closed = true;
		progress = true;
	}
	for (;;) {
		long got = mux_stream_read(c->stream, buffer, sizeof buffer);
		if (got == WH_EWOULDBLOCK)
			break;
		if (got == 0) {
			c->eof = true;
			break;
		}
		ck_assert_int_gt(got, 0);
		for (long i = 0; i < got; i++)
			if (buffer[i] != pattern(c->seed, c->received + (size_t)i))
				c->mismatch = true;
		c->received += (size_t)got;
		progress = true;
	}
	return progress;
}

static bool echo_step(struct echo *e)
{
	bool progress = false;
	for (;;) {
		if (e->pending_length) {
			long wrote = mux_stream_write(e->stream, e->pending, e->pending_length);
			if (wrote == WH_EWOULDBLOCK)
				break;
			ck_assert_int_gt(wrote, 0);
			memmove(e->pending, e->pending + wrote, e->pending_length - (size_t)wrote);
			e->pending_length -= (size_t)wrote;
			progress = true;
			continue;
		}
		long got = mux_stream_read(e->stream, e->pending, sizeof e->pending);
		if (got == WH_EWOULDBLOCK)
			break;
		if (got == 0) {
			e->eof = true;
			break;
		}
		ck_assert_int_gt(got, 0);
		e->pending_length = (size_t)got;
		progress = true;
	}
	if (e->eof && !e->pending_length && !e->write_closed) {
		ck_assert_int_eq(mux_stream_close_write(e->stream), WH_OK);
		e->write_closed = true;
		progress = true;
	}
	return progress;
}

/* Every byte came back, checked, then EOF, and the stream ended cleanly: released. */
static void sender_assert_echoed(struct sender *c, unsigned index)
{
	ck_assert_msg(c->eof, "stream %u: no EOF (%zu of %zu back)", index, c->received, c->size);
	ck_assert_uint_eq(c->received, c->size);
	ck_assert(!c->mismatch);
	ck_assert(mux_stream_is_finished(c->stream));
	ck_assert_int_eq(mux_stream_error(c->stream), WH_OK);
	mux_stream_release(c->stream);
}

/* Opens n streams, echoes them all, checks every byte; partial writes on the wire. */
static void run_echo(unsigned n, size_t max_size, bool partial)
{
	struct mux_config config = test_config();
	config.accept_backlog = n; /* every HANDSHAKE may arrive before the first accept */
	struct link link;
	link_open(&link, &config);
	link.partial_writes = partial;
	struct sender *senders = calloc(n, sizeof *senders);
	struct echo *echoes = calloc(n, sizeof *echoes);
	unsigned accepted = 0, seed = 42;
	for (unsigned i = 0; i < n; i++) {
		ck_assert_int_eq(mux_open_stream(link.client, "echo", &senders[i].stream), WH_OK);
		senders[i].seed = i + 1;
		senders[i].size = max_size ? (size_t)rand_r(&seed) % max_size : 0;
	}
	for (int round = 0; round < 200000; round++) {
		bool progress = false;
		for (unsigned i = 0; i < n; i++)
			progress |= sender_step(&senders[i]);
		pump(&link);
		struct mux_stream *s;
		while ((s = mux_accept(link.server))) {
			ck_assert_uint_lt(accepted, n);
			ck_assert_str_eq(mux_stream_service(s), "echo");
			echoes[accepted++].stream = s;
			progress = true;
		}
		for (unsigned i = 0; i < accepted; i++)
			progress |= echo_step(&echoes[i]);
		pump(&link);
		if (!progress)
			break;
	}
	for (unsigned i = 0; i < n; i++) {
		sender_assert_echoed(&senders[i], i);
		mux_stream_release(echoes[i].stream);
	}
	ck_assert_uint_eq(accepted, n);
	ck_assert_uint_eq(mux_num_streams(link.client), 0);
	ck_assert_uint_eq(mux_num_streams(link.server), 0);
	ck_assert_uint_eq(mux_stats(link.server)->malformed_frames, 0);
	free(senders);
	free(echoes);
	link_close(&link);
}

START_TEST(test_echo_one_large_stream)
{
	run_echo(1, 3u << 20, false);
}
END_TEST

START_TEST(test_echo_many_streams_partial_writes)
{
	run_echo(1000, 20000, true);
}
END_TEST

START_TEST(test_echo_empty_streams)
{
	run_echo(50, 0, true);
}
END_TEST

/* ---- the built-in echo: it sends back from its receive store ---------------------------- */

static int incoming_builtin(struct mux *mux, struct mux_stream *s, const char *service, void *user)
{
	(void)mux;
	(void)user;
	return services_attach(s, service);
}

static const struct mux_callbacks builtin_callbacks = { .on_incoming = incoming_builtin,
							.on_closed = on_closed,
							.on_timer_changed = on_timer_changed };

/* A link whose server answers with the built-in services, its streams charged to `budget`. */
static void link_open_builtin(struct link *link, const struct mux_config *config,
			      struct mux_budget *budget)
{
	link_open(link, config);
	mux_free(link->server);
	link->server = mux_new(false, config, budget, &builtin_callbacks, link);
	ck_assert_ptr_nonnull(link->server);
}

/* Events the mux defers (planned output) reach the echo from its timer. */
static void pump_builtin(struct link *link)
{
	pump(link);
	mux_timer(link->server, link->now);
	pump(link);
}

/* Runs the senders against the built-in echo until nothing moves; every byte must have come
 * back, checked, each stream ended cleanly and released. */
static void echo_to_the_end(struct link *link, struct sender *senders, unsigned n)
{
	for (int round = 0; round < 100000; round++) {
		bool progress = false;
		for (unsigned i = 0; i < n; i++)
			progress |= sender_step(&senders[i]);
		pump_builtin(link);
		if (!progress)
			break;
	}
	for (unsigned i = 0; i < n; i++)
		sender_assert_echoed(&senders[i], i);
	pump_builtin(link);
}

START_TEST(test_builtin_echo_returns_every_byte)
{
	struct mux_config config = test_config();
	struct mux_budget budget = { .limit = 1u << 30 };
	struct link link;
	link_open_builtin(&link, &config, &budget);
	link.partial_writes = true;
	enum { STREAMS = 40 };
	struct sender senders[STREAMS] = { 0 };
	unsigned seed = 7;
	for (unsigned i = 0; i < STREAMS; i++) {
		ck_assert_int_eq(mux_open_stream(link.client, "echo", &senders[i].stream), WH_OK);
		senders[i].seed = i + 100;
		/* some empty, most beyond two windows: the window turns over many times */
		senders[i].size = i % 8 == 0 ? 0 : (size_t)rand_r(&seed) % (3u << 20);
	}
	echo_to_the_end(&link, senders, STREAMS);
	ck_assert_uint_eq(mux_num_streams(link.server), 0); /* each echo released itself */
	ck_assert_uint_eq(budget.used, 0);
	link_close(&link);
}
END_TEST

/* A peer that sends to echo and never reads the answers holds one window of the broker's
 * memory: what came back fills its own window, the rest waits in the echo's receive store,
 * and that store's window opens no further. (An echo that copied into a send buffer held a
 * window and a send buffer, and took a third window's worth.) Then the peer reads: every
 * byte comes back, checked, and the budget is whole again. */
START_TEST(test_builtin_echo_holds_one_window_for_a_peer_that_does_not_read)
{
	struct mux_config config = test_config();
	struct mux_budget budget = { .limit = 1u << 30 };
	struct link link;
	link_open_builtin(&link, &config, &budget);
	struct sender c = { .seed = 9, .size = 8u << 20 };
	ck_assert_int_eq(mux_open_stream(link.client, "echo", &c.stream), WH_OK);
	uint8_t buffer[65536];
	for (int round = 0; round < 100; round++) { /* write only */
		for (size_t i = 0; i < sizeof buffer; i++)
			buffer[i] = pattern(c.seed, c.sent + i);
		long wrote = mux_stream_write(c.stream, buffer, sizeof buffer);
		if (wrote > 0)
			c.sent += (size_t)wrote;
		pump_builtin(&link);
	}
	const struct mux_stats *server = mux_stats(link.server);
	size_t window = config.window_size;
	ck_assert_uint_eq(server->data_bytes_out, window);    /* the client's window, full */
	ck_assert_uint_eq(server->data_bytes_in, 2 * window); /* and one window held here */
	ck_assert_uint_eq(budget.used, window);               /* no send buffer beside it */
	/* now it reads: all of it comes back, in order */
	for (int round = 0; round < 100000 && !c.eof; round++) {
		sender_step(&c);
		pump_builtin(&link);
	}
	sender_assert_echoed(&c, 0);
	pump_builtin(&link);
	ck_assert_uint_eq(mux_num_streams(link.server), 0);
	ck_assert_uint_eq(budget.used, 0);
	link_close(&link);
}
END_TEST

/* store-rate: what a peer adds to the broker's own stores (echo's answers it does not read)
 * is bounded in rate; past the burst the driver is told to pause reading, until the rate has
 * made up for it. Bytes that go back out, or are read, are given back. */
START_TEST(test_store_rate_pauses_a_peer_that_fills_stores)
{
	struct mux_config config = test_config();
	config.store_rate = 512 * 1024; /* a burst of 1 MiB */
	struct mux_budget budget = { .limit = 1u << 30 };
	struct link link;
	link_open_builtin(&link, &config, &budget);
	ck_assert_uint_eq(mux_input_allowance(link.server), 1024 * 1024); /* the burst */
	enum { STREAMS = 8 };
	struct sender senders[STREAMS] = { 0 };
	size_t window = config.window_size;
	uint8_t buffer[65536];
	for (unsigned i = 0; i < STREAMS; i++) {
		ck_assert_int_eq(mux_open_stream(link.client, "echo", &senders[i].stream), WH_OK);
		senders[i].seed = i + 1;
		senders[i].size = 2 * window;
	}
	for (int round = 0; round < 100; round++) { /* write, never read */
		for (unsigned i = 0; i < STREAMS; i++) {
			struct sender *c = &senders[i];
			size_t n = c->size - c->sent < sizeof buffer ? c->size - c->sent : sizeof buffer;
			for (size_t k = 0; k < n; k++)
				buffer[k] = pattern(c->seed, c->sent + k);
			long wrote = n ? mux_stream_write(c->stream, buffer, n) : 0;
			if (wrote > 0)
				c->sent += (size_t)wrote;
		}
		pump_builtin(&link);
	}
	/* each echo sent back the client's window and holds the second: 2 MiB held, 1 MiB past
	 * the burst, so reading waits 2 s */
	const struct mux_stats *server = mux_stats(link.server);
	ck_assert_uint_eq(server->data_bytes_in - server->data_bytes_out, STREAMS * window);
	double resume_at = mux_input_pause(link.server);
	ck_assert_double_eq_tol(resume_at, link.now + 2.0, 1e-6);
	ck_assert_uint_eq(server->input_pauses, 1);
	ck_assert_uint_eq(mux_input_allowance(link.server), 0); /* the turn ends */
	link.now += 1.0;
	mux_timer(link.server, link.now);
	ck_assert_double_eq_tol(mux_input_pause(link.server), link.now + 1.0, 1e-6);
	link.now += 1.0;
	mux_timer(link.server, link.now);
	ck_assert_double_eq(mux_input_pause(link.server), 0);
	ck_assert_uint_eq(server->input_pauses, 2);
	ck_assert_uint_eq(mux_input_allowance(link.server), 4096); /* a small read, then again */
	link.now += 1.0;
	mux_timer(link.server, link.now);
	ck_assert_uint_eq(mux_input_allowance(link.server), 512 * 1024);
	/* the client reads: everything comes back, checked, and what was held is given back */
	echo_to_the_end(&link, senders, STREAMS);
	ck_assert_uint_eq(mux_num_streams(link.server), 0);
	ck_assert_double_eq(mux_input_pause(link.server), 0);
	link_close(&link);
}
END_TEST

/* frame-rate: useful frames cost the broker as much as useless ones (one-byte DATA within the
 * window kept a core busy and a good bulk stream beside it at 0.41 of its speed). Past the
 * burst (two seconds' worth) the driver is told to pause reading until the rate has made up
 * for it; every byte is still delivered and the connection goes on. */
static void inject_data(struct link *link, uint32_t id, const void *payload, size_t length);

START_TEST(test_frame_rate_pauses_a_peer_of_tiny_frames)
{
	struct mux_config config = test_config();
	config.frame_rate = 1000; /* a burst of 2000 */
	struct link link;
	link_open_builtin(&link, &config, NULL);
	struct mux_stream *c;
	ck_assert_int_eq(mux_open_stream(link.client, "discard", &c), WH_OK);
	pump_builtin(&link);
	uint32_t id = mux_stream_id(c);
	uint64_t frames_before = 0; /* the HANDSHAKE and whatever came with it */
	for (int t = 0; t < 8; t++)
		frames_before += mux_stats(link.server)->frames_in[t];
	ck_assert_double_eq(mux_input_pause(link.server), 0);
	size_t within = 2000 - (size_t)frames_before;
	for (size_t i = 0; i < within; i++)
		inject_data(&link, id, "x", 1);
	pump_builtin(&link);
	ck_assert_double_eq(mux_input_pause(link.server), 0); /* the burst, to the frame */
	ck_assert_uint_ne(mux_input_allowance(link.server), 0);
	for (int i = 0; i < 500; i++)
		inject_data(&link, id, "x", 1);
	pump_builtin(&link);
	const struct mux_stats *server = mux_stats(link.server);
	double resume_at = mux_input_pause(link.server);
	/* 500 frames past the burst at 1000 a second (give or take the few the open took) */
	ck_assert_msg(fabs(resume_at - link.now - 0.5) < 0.01, "resume after %.6f s", resume_at - link.now);
	ck_assert_uint_eq(server->input_pauses, 1);
	ck_assert_uint_eq(mux_input_allowance(link.server), 0); /* the turn ends */
	link.now = resume_at;
	mux_timer(link.server, link.now);
	ck_assert_double_eq(mux_input_pause(link.server), 0);
	ck_assert_uint_ne(mux_input_allowance(link.server), 0);
	/* served, not refused: every byte reached discard and the connection goes on */
	ck_assert_uint_eq(server->data_bytes_in, within + 500);
	ck_assert(!mux_is_closed(link.server));
	mux_stream_release(c);
	link_close(&link);
}
END_TEST

/* Bytes that pass through the broker's stores cost nothing: 16 MiB to discard at a store-rate
 * of 64 KiB a second never pause reading. */
START_TEST(test_store_rate_lets_bytes_that_pass_through)
{
	struct mux_config config = test_config();
	config.store_rate = 64 * 1024;
	struct link link;
	link_open_builtin(&link, &config, NULL);
	struct mux_stream *c;
	ck_assert_int_eq(mux_open_stream(link.client, "discard", &c), WH_OK);
	static uint8_t buffer[1 << 20];
	for (size_t sent = 0; sent < (16u << 20);) {
		long wrote = mux_stream_write(c, buffer, sizeof buffer);
		if (wrote > 0)
			sent += (size_t)wrote;
		pump_builtin(&link);
		ck_assert_double_eq(mux_input_pause(link.server), 0);
	}
	ck_assert_uint_eq(mux_stats(link.server)->data_bytes_in, 16u << 20);
	ck_assert_uint_eq(mux_stats(link.server)->input_pauses, 0);
	mux_stream_release(c);
	link_close(&link);
}
END_TEST

/* ---- half-close ----------------------------------------------------------------------- */

START_TEST(test_half_close_keeps_other_direction)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct mux_stream *c, *s;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &c), WH_OK);
	ck_assert_int_eq(mux_stream_write(c, "request", 7), 7);
	ck_assert_int_eq(mux_stream_close_write(c), WH_OK);
	ck_assert_int_eq(mux_stream_write(c, "x", 1), WH_ESTREAM_CLOSED);
	ck_assert_int_eq(mux_stream_close_write(c), WH_ESTREAM_CLOSED);
	pump(&link);
	s = mux_accept(link.server);
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(mux_stream_service(s), "");
	char buf[32];
	ck_assert_int_eq(mux_stream_read(s, buf, sizeof buf), 7); /* all bytes before EOF */
	ck_assert_mem_eq(buf, "request", 7);
	ck_assert_int_eq(mux_stream_read(s, buf, sizeof buf), 0);
	ck_assert(!mux_stream_is_finished(s));
	/* the server can still answer after the client's CLOSE */
	ck_assert_int_eq(mux_stream_write(s, "response", 8), 8);
	pump(&link);
	ck_assert_int_eq(mux_stream_read(c, buf, sizeof buf), 8);
	ck_assert_int_eq(mux_stream_read(c, buf, sizeof buf), WH_EWOULDBLOCK);
	ck_assert_int_eq(mux_stream_close_write(s), WH_OK);
	pump(&link);
	ck_assert_int_eq(mux_stream_read(c, buf, sizeof buf), 0);
	ck_assert(mux_stream_is_finished(c));
	ck_assert(mux_stream_is_finished(s));
	ck_assert_uint_eq(mux_num_streams(link.client), 0);
	link_close(&link);
}
END_TEST

/* CLOSE waits behind data that has no credit yet, however long. */
START_TEST(test_close_never_overtakes_data)
{
	struct mux_config config = test_config();
	config.window_size = 1000;
	config.max_window_size = 1000;
	struct link link;
	link_open(&link, &config);
	struct mux_stream *c;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &c), WH_OK);
	static uint8_t data[5000];
	ck_assert_int_eq(mux_stream_write(c, data, sizeof data), 5000);
	ck_assert_int_eq(mux_stream_close_write(c), WH_OK);
	pump(&link);
	struct mux_stream *s = mux_accept(link.server);
	ck_assert_ptr_nonnull(s);
	size_t total = 0;
	uint8_t buf[700];
	for (int i = 0; i < 100; i++) {
		long n = mux_stream_read(s, buf, sizeof buf);
		if (n == 0)
			break;
		if (n > 0)
			total += (size_t)n;
		pump(&link);
	}
	ck_assert_uint_eq(total, 5000);
	ck_assert_int_eq(mux_stream_read(s, buf, sizeof buf), 0);
	ck_assert_uint_ge(mux_stats(link.client)->window_stalls, 1);
	link_close(&link);
}
END_TEST

/* Stream ids are never reused: the open that takes the last one tells the peer the
 * connection is going away (so a peer that dials in connects again: nothing else would
 * renew its connection), later opens fail, and the connection closes once its last stream
 * ends. */
START_TEST(test_ids_used_up_rotate_the_connection)
{
	struct mux_config config = test_config(), near_the_end = test_config();
	near_the_end.ids_left = 2;
	struct link link;
	memset(&link, 0, sizeof link);
	link.now = 1000.0;
	struct mux *accepting = mux_new(false, &near_the_end, NULL, &link_callbacks, &link);
	struct mux_stream *even;
	ck_assert_int_eq(mux_open_stream(accepting, NULL, &even), WH_OK);
	ck_assert_uint_eq(mux_stream_id(even), UINT32_MAX - 3); /* an accepting side's last two */
	mux_free(accepting);
	link.client = mux_new(true, &near_the_end, NULL, &link_callbacks, &link);
	link.server = mux_new(false, &config, NULL, &link_callbacks, &link);
	ck_assert_ptr_nonnull(link.client);
	struct mux_stream *first, *last, *none = NULL;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &first), WH_OK);
	ck_assert_uint_eq(mux_stream_id(first), UINT32_MAX - 2);
	ck_assert(mux_accepts_streams(link.client));
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &last), WH_OK);
	ck_assert_uint_eq(mux_stream_id(last), UINT32_MAX);
	ck_assert(!mux_accepts_streams(link.client));
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &none), WH_EMUX_CLOSED);
	ck_assert_ptr_null(none);
	pump(&link);
	/* the peer heard it: it opens nothing more here */
	ck_assert(!mux_accepts_streams(link.server));
	struct mux_stream *theirs[2] = { mux_accept(link.server), mux_accept(link.server) };
	ck_assert_ptr_nonnull(theirs[0]);
	ck_assert_ptr_nonnull(theirs[1]);
	/* both streams still carry bytes */
	ck_assert_int_eq(mux_stream_write(last, "end", 3), 3);
	pump(&link);
	char got[4] = "";
	ck_assert_int_eq(mux_stream_read(theirs[1], got, 3), 3);
	ck_assert_str_eq(got, "end");
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(mux_stream_close_write(i ? last : first), WH_OK);
		ck_assert_int_eq(mux_stream_close_write(theirs[i]), WH_OK);
		mux_stream_release(theirs[i]);
	}
	pump(&link);
	ck_assert_int_eq(link.client_closed, 0);
	int timer_changes = link.timer_changes;
	mux_stream_release(first);
	mux_stream_release(last);
	pump(&link);
	ck_assert_int_gt(link.timer_changes, timer_changes); /* the driver runs mux_timer soon */
	mux_timer(link.client, link.now);
	ck_assert(mux_is_closed(link.client));
	pump(&link);
	ck_assert_int_eq(link.client_closed, 1);
	ck_assert_int_eq(link.client_close_error, WH_EMUX_CLOSED); /* planned: an orderly close */
	link_close(&link);
}
END_TEST

/* Bytes the client would write before the first DATA frame of stream `id` with a payload
 * of `length` bytes, over one gather (the socket takes nothing yet); SIZE_MAX: not there.
 * The gather's first `skip` bytes finish a frame the socket took part of. */
static size_t bytes_before_frame(struct mux *mux, uint32_t id, uint32_t length, size_t skip)
{
	struct iovec iov[64];
	int n = mux_output_gather(mux, iov, 64);
	struct frame_decoder decoder;
	frame_decoder_init(&decoder, FRAME_MAX_PAYLOAD);
	size_t offset = 0;
	for (int i = 0; i < n; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;
		while (left) {
			struct frame_event ev;
			size_t used = offset < skip ? (skip - offset < left ? skip - offset : left)
						    : frame_decoder_feed(&decoder, p, left, &ev);
			ck_assert_uint_gt(used, 0);
			if (offset >= skip && ev.kind == FRAME_EVENT_DATA_HEADER &&
			    ev.header.stream_id == id && ev.header.length == length)
				return offset + used - FRAME_HEADER_SIZE;
			p += used;
			left -= used;
			offset += used;
		}
	}
	return SIZE_MAX;
}

/* A small frame on one stream beside a bulk stream that has a window's worth queued waits
 * behind one bulk frame at most (docs/BROKER.md, "Writing and scheduling"): before, every
 * frame planned ahead of it (up to 512 KiB a gather) went first. */
START_TEST(test_small_frame_waits_behind_one_bulk_frame)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	link.now = 1.0;
	mux_set_now(link.client, link.now);
	struct mux_stream *bulk, *ping;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &bulk), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &ping), WH_OK);
	static uint8_t data[192 * 1024];
	uint8_t message[64] = "ping";
	/* a first exchange: small frames on one stream, large on the other */
	ck_assert_int_eq(mux_stream_write(ping, message, sizeof message), 64);
	ck_assert_int_eq(mux_stream_write(bulk, data, 64 * 1024), 64 * 1024);
	pump(&link);
	ck_assert(mux_interactive(link.client));
	/* the bulk stream queues more than its next frame; the socket takes nothing yet */
	ck_assert_int_eq(mux_stream_write(bulk, data, sizeof data), (long)sizeof data);
	struct iovec iov[64];
	ck_assert_int_gt(mux_output_gather(link.client, iov, 64), 0);
	ck_assert_int_eq(mux_stream_write(ping, message, sizeof message), 64);
	size_t ahead = bytes_before_frame(link.client, mux_stream_id(ping), 64, 0);
	ck_assert_uint_le(ahead, config.max_frame_size + FRAME_HEADER_SIZE);
	pump(&link);
	link_close(&link);
}
END_TEST

/* A bulk frame planned but not started leaves after the small frame planned behind it; one
 * the socket took part of stays ahead (its bytes must follow), and the peer gets both. */
/* Copies the first `length` bytes of the next gather into out; how many there were. */
static size_t gather_copy(struct mux *mux, uint8_t *out, size_t length)
{
	struct iovec iov[64];
	int n = mux_output_gather(mux, iov, 64);
	size_t at = 0;
	for (int i = 0; i < n && at < length; i++) {
		size_t take = iov[i].iov_len < length - at ? iov[i].iov_len : length - at;
		memcpy(out + at, iov[i].iov_base, take);
		at += take;
	}
	return at;
}

/* Two streams of the client, in the interactive mode: a first exchange (a 64-byte ping, then
 * 64 KiB of bulk), then `size` more bytes of `data` queued on the bulk stream. */
static void bulk_beside_ping(struct link *link, struct mux_stream **bulk, struct mux_stream **ping,
			     const uint8_t *data, size_t size)
{
	static const uint8_t message[64] = "ping";
	link->now = 1.0;
	mux_set_now(link->client, link->now);
	ck_assert_int_eq(mux_open_stream(link->client, NULL, bulk), WH_OK);
	ck_assert_int_eq(mux_open_stream(link->client, NULL, ping), WH_OK);
	ck_assert_int_eq(mux_stream_write(*ping, message, sizeof message), 64);
	ck_assert_int_eq(mux_stream_write(*bulk, data, 64 * 1024), 64 * 1024);
	pump(link);
	ck_assert_int_eq(mux_stream_write(*bulk, data, size), (long)size);
}

START_TEST(test_small_frame_overtakes_a_bulk_frame_not_started)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct mux_stream *bulk, *ping;
	static uint8_t data[192 * 1024];
	uint8_t message[64] = "ping";
	bulk_beside_ping(&link, &bulk, &ping, data, sizeof data);
	struct iovec iov[64];
	ck_assert_int_gt(mux_output_gather(link.client, iov, 64), 0);
	ck_assert_int_eq(mux_stream_write(ping, message, sizeof message), 64);
	ck_assert_uint_eq(bytes_before_frame(link.client, mux_stream_id(ping), 64, 0), 0);
	/* the socket takes the ping and part of the bulk frame behind it */
	size_t taken = 2 * FRAME_HEADER_SIZE + 64 + 1000; /* the ping, a bulk header, 1000 bytes */
	uint8_t *copy = malloc(taken);
	ck_assert_uint_eq(gather_copy(link.client, copy, taken), taken);
	mux_output_advance(link.client, taken);
	mux_input(link.server, copy, taken, link.now);
	free(copy);
	ck_assert_int_eq(mux_stream_write(ping, message, sizeof message), 64);
	size_t rest = config.max_frame_size - 1000; /* of the bulk frame the socket took part of */
	ck_assert_uint_eq(bytes_before_frame(link.client, mux_stream_id(ping), 64, rest), rest);
	pump(&link);
	struct mux_stream *accepted[2] = { mux_accept(link.server), mux_accept(link.server) };
	ck_assert_ptr_nonnull(accepted[0]);
	ck_assert_ptr_nonnull(accepted[1]);
	struct mux_stream *far_ping = mux_stream_id(accepted[0]) == mux_stream_id(ping) ? accepted[0] : accepted[1];
	uint8_t got[256];
	ck_assert_int_eq(mux_stream_read(far_ping, got, sizeof got), 3 * 64);
	link_close(&link);
}
END_TEST

/* Bytes the driver handed to TLS as gathered (mux_output_hold: a write to be repeated with
 * the same bytes) are gathered again unchanged: a small frame planned meanwhile waits behind
 * every frame among them. It overtook the bulk frame there before: the repeated TLS write
 * sent the bulk frame while the mux counted the ping as sent (a soak's "bytes differ"). */
START_TEST(test_held_output_is_gathered_again_unchanged)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct mux_stream *bulk, *ping;
	static uint8_t data[192 * 1024];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (uint8_t)(i * 7 + i / 251);
	uint8_t message[64] = "ping";
	bulk_beside_ping(&link, &bulk, &ping, data, sizeof data);
	/* a TLS write took a bulk header and 1000 bytes, and must be repeated */
	enum { HELD = FRAME_HEADER_SIZE + 1000 };
	uint8_t first[HELD], again[HELD];
	ck_assert_uint_eq(gather_copy(link.client, first, HELD), HELD);
	mux_output_hold(link.client, HELD);
	ck_assert_int_eq(mux_stream_write(ping, message, sizeof message), 64);
	ck_assert_uint_eq(gather_copy(link.client, again, HELD), HELD);
	ck_assert_mem_eq(again, first, HELD);
	ck_assert_uint_eq(bytes_before_frame(link.client, mux_stream_id(ping), 64, 0),
			  FRAME_HEADER_SIZE + config.max_frame_size);
	/* the repeated write went out: the far side reads every byte in order */
	mux_output_advance(link.client, HELD);
	mux_input(link.server, first, HELD, link.now);
	pump(&link);
	struct mux_stream *accepted[2] = { mux_accept(link.server), mux_accept(link.server) };
	ck_assert_ptr_nonnull(accepted[0]);
	ck_assert_ptr_nonnull(accepted[1]);
	bool ping_first = mux_stream_id(accepted[0]) == mux_stream_id(ping);
	struct mux_stream *far_ping = accepted[ping_first ? 0 : 1], *far_bulk = accepted[ping_first ? 1 : 0];
	uint8_t got[256];
	ck_assert_int_eq(mux_stream_read(far_ping, got, sizeof got), 2 * 64);
	static uint8_t received[256 * 1024];
	size_t total = 0;
	for (int round = 0; round < 64 && total < 64 * 1024 + sizeof data; round++) {
		long n = mux_stream_read(far_bulk, received + total, sizeof received - total);
		if (n > 0)
			total += (size_t)n;
		pump(&link);
	}
	ck_assert_uint_eq(total, 64 * 1024 + sizeof data);
	ck_assert_mem_eq(received, data, 64 * 1024);
	ck_assert_mem_eq(received + 64 * 1024, data, sizeof data);
	link_close(&link);
}
END_TEST

/* A lone bulk stream is never interactive: its gathers stay large. */
START_TEST(test_lone_bulk_stream_is_not_interactive)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	link.now = 1.0;
	mux_set_now(link.client, link.now);
	struct mux_stream *bulk;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &bulk), WH_OK);
	static uint8_t data[192 * 1024];
	ck_assert_int_eq(mux_stream_write(bulk, data, 64 * 1024 + 100), 64 * 1024 + 100);
	pump(&link);
	ck_assert(!mux_interactive(link.client));
	ck_assert(!mux_interactive(link.server));
	/* the next bulk stream's first frame is small (its app had written little yet) */
	struct mux_stream *next;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &next), WH_OK);
	ck_assert_int_eq(mux_stream_write(next, data, 100), 100);
	pump(&link);
	ck_assert_int_eq(mux_stream_write(next, data, 64 * 1024), 64 * 1024);
	pump(&link);
	ck_assert(!mux_interactive(link.client));
	ck_assert(!mux_interactive(link.server));
	link_close(&link);
}
END_TEST

/* ---- errors both ways ------------------------------------------------------------------ */

static void count_error_events(struct mux_stream *stream, enum mux_stream_event event, void *user)
{
	(void)stream;
	if (event == MUX_STREAM_ERROR)
		(*(int *)user)++;
}

START_TEST(test_reset_carries_code_and_message)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct mux_stream *c, *s;
	int error_events = 0;
	ck_assert_int_eq(mux_open_stream(link.client, "svc", &c), WH_OK);
	mux_stream_set_handler(c, count_error_events, &error_events);
	pump(&link);
	s = mux_accept(link.server);
	ck_assert_int_eq(mux_stream_reset(s, WH_ETIMEOUT, "took too long"), WH_OK);
	pump(&link);
	ck_assert(mux_stream_is_finished(c));
	ck_assert_int_eq(mux_stream_error(c), WH_ETIMEOUT);
	ck_assert_uint_eq(mux_stream_remote_code(c), FRAME_ERR_TIMEOUT);
	ck_assert_str_eq(mux_stream_remote_message(c), "took too long");
	ck_assert_int_eq(error_events, 1); /* a waiting writer or reader is woken */
	char buf[4];
	ck_assert_int_eq(mux_stream_read(c, buf, 4), WH_ETIMEOUT);
	ck_assert_int_eq(mux_stream_write(c, "x", 1), WH_ETIMEOUT);
	ck_assert_int_eq(mux_stream_error(s), WH_ETIMEOUT);
	ck_assert_int_eq(mux_stream_reset(s, WH_ETIMEOUT, "again"), WH_ESTREAM_CLOSED);
	ck_assert(!mux_is_closed(link.client));

	/* and the other way: the opener aborts, the acceptor learns it */
	struct mux_stream *c2;
	ck_assert_int_eq(mux_open_stream(link.client, "svc", &c2), WH_OK);
	pump(&link);
	struct mux_stream *s2 = mux_accept(link.server);
	ck_assert_int_eq(mux_stream_reset(c2, WH_ESTREAM_CLOSED, "app aborted"), WH_OK);
	pump(&link);
	ck_assert_int_eq(mux_stream_error(s2), WH_EREMOTE); /* 499 has no local equivalent */
	ck_assert_uint_eq(mux_stream_remote_code(s2), FRAME_ERR_CANCELLED);
	ck_assert_str_eq(mux_stream_remote_message(s2), "app aborted");
	link_close(&link);
}
END_TEST

/* ---- a stream io that fails on request ----------------------------------------------- */

struct faulty_io {
	uint8_t tx[256];
	size_t tx_length, tx_consumed;
	bool tx_broken; /* asking past the bytes it holds fails */
	uint8_t rx[256];
	size_t rx_length;
	int rx_reserve_error, rx_commit_error;
	int rx_commits;
	bool released;
};

static long faulty_rx_reserve(void *ctx, size_t want, uint8_t **span)
{
	struct faulty_io *io = ctx;
	*span = io->rx + io->rx_length;
	if (io->rx_reserve_error)
		return io->rx_reserve_error;
	size_t room = sizeof io->rx - io->rx_length;
	return (long)(room < want ? room : want);
}
static int faulty_rx_commit(void *ctx, size_t n)
{
	struct faulty_io *io = ctx;
	io->rx_length += n;
	io->rx_commits++;
	return io->rx_commit_error;
}
static size_t faulty_rx_capacity(void *ctx)
{
	return sizeof ((struct faulty_io *)ctx)->rx;
}
static int faulty_tx_peek(void *ctx, size_t offset, struct iovec iov[2])
{
	struct faulty_io *io = ctx;
	size_t held = io->tx_length - io->tx_consumed;
	if (offset >= held)
		return io->tx_broken ? WH_ERING_CORRUPT : 0;
	iov[0].iov_base = io->tx + io->tx_consumed + offset;
	iov[0].iov_len = held - offset;
	return 1;
}
static void faulty_tx_consume(void *ctx, size_t n)
{
	((struct faulty_io *)ctx)->tx_consumed += n;
}
static void faulty_release(void *ctx)
{
	((struct faulty_io *)ctx)->released = true;
}
static const struct mux_stream_io faulty_io_ops = {
	.rx_reserve = faulty_rx_reserve,
	.rx_commit = faulty_rx_commit,
	.rx_capacity = faulty_rx_capacity,
	.tx_peek = faulty_tx_peek,
	.tx_consume = faulty_tx_consume,
	.release = faulty_release,
};

static struct mux_stream *open_faulty(struct link *link, struct faulty_io *io, int *error_events,
				      struct mux_stream **accepted)
{
	struct mux_stream *c;
	ck_assert_int_eq(mux_open_stream(link->client, "svc", &c), WH_OK);
	mux_stream_set_io(c, &faulty_io_ops, io);
	mux_stream_set_handler(c, count_error_events, error_events);
	pump(link);
	*accepted = mux_accept(link->server);
	ck_assert_ptr_nonnull(*accepted);
	return c;
}

/* An io callback that fails resets its stream, once, with its code: the peer gets the
 * ERROR after every byte planned before the failure, the owner an error event, and the
 * connection and its other streams go on. */
START_TEST(test_io_failure_resets_one_stream)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);

	/* the send source fails while output is planned */
	struct faulty_io tx_io = { .tx_length = 5 };
	memcpy(tx_io.tx, "hello", 5);
	int tx_errors = 0;
	struct mux_stream *s1, *c1 = open_faulty(&link, &tx_io, &tx_errors, &s1);
	mux_stream_kick(c1);
	pump(&link);
	char buf[16];
	ck_assert_int_eq(mux_stream_read(s1, buf, sizeof buf), 5);
	ck_assert(memcmp(buf, "hello", 5) == 0);
	tx_io.tx_broken = true;
	int timer_changes = link.timer_changes;
	mux_stream_kick(c1);
	/* the owner hears of it from the loop (mux_timer), not from inside the gather; the
	 * gather that found the failure already carries the ERROR */
	struct iovec iov[8];
	ck_assert_int_gt(mux_output_gather(link.client, iov, 8), 0);
	ck_assert_int_eq(mux_stream_error(c1), WH_ERING_CORRUPT);
	ck_assert_int_gt(link.timer_changes, timer_changes);
	ck_assert_int_eq(tx_errors, 0);
	mux_timer(link.client, link.now);
	ck_assert_int_eq(tx_errors, 1);
	pump(&link);
	ck_assert(mux_stream_is_finished(s1));
	ck_assert_uint_eq(mux_stream_remote_code(s1), FRAME_ERR_ENDPOINT_GONE);
	ck_assert_int_eq(tx_errors, 1); /* once */

	/* the receive store fails on reserve, then on commit (the bytes counted as delivered) */
	struct faulty_io rx_io = { .rx_reserve_error = WH_ERING_CORRUPT };
	int rx_errors = 0;
	struct mux_stream *s2, *c2 = open_faulty(&link, &rx_io, &rx_errors, &s2);
	ck_assert_int_eq(mux_stream_write(s2, "data", 4), 4);
	pump(&link);
	ck_assert_int_eq(mux_stream_error(c2), WH_ERING_CORRUPT);
	ck_assert_int_eq(rx_errors, 1);
	ck_assert_uint_eq(mux_stream_remote_code(s2), FRAME_ERR_ENDPOINT_GONE);

	struct faulty_io commit_io = { .rx_commit_error = WH_ERING_CORRUPT };
	int commit_errors = 0;
	struct mux_stream *s3, *c3 = open_faulty(&link, &commit_io, &commit_errors, &s3);
	ck_assert_int_eq(mux_stream_write(s3, "more", 4), 4);
	pump(&link);
	ck_assert_int_eq(mux_stream_error(c3), WH_ERING_CORRUPT);
	ck_assert_int_eq(commit_errors, 1);
	ck_assert(mux_stream_is_finished(s3));
	ck_assert_int_lt(mux_stream_write(s3, "again", 5), 0);
	pump(&link);
	ck_assert_int_eq(commit_io.rx_commits, 1); /* not asked again after the failure */
	ck_assert_int_eq(commit_errors, 1);

	/* the connection is fine */
	ck_assert(!mux_is_closed(link.client) && !mux_is_closed(link.server));
	struct mux_stream *c4, *s4;
	ck_assert_int_eq(mux_open_stream(link.client, "svc", &c4), WH_OK);
	ck_assert_int_eq(mux_stream_write(c4, "ok", 2), 2);
	pump(&link);
	s4 = mux_accept(link.server);
	ck_assert_int_eq(mux_stream_read(s4, buf, sizeof buf), 2);

	/* each io is released once its stream is */
	mux_stream_release(c1);
	mux_stream_release(c2);
	mux_stream_release(c3);
	pump(&link);
	mux_timer(link.client, link.now);
	ck_assert(tx_io.released && rx_io.released && commit_io.released);
	link_close(&link);
}
END_TEST

START_TEST(test_accept_backlog)
{
	struct mux_config config = test_config();
	config.accept_backlog = 2;
	struct link link;
	link_open(&link, &config);
	struct mux_stream *c[3];
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(mux_open_stream(link.client, NULL, &c[i]), WH_OK);
	pump(&link);
	ck_assert(!mux_stream_is_finished(c[0]));
	ck_assert(!mux_stream_is_finished(c[1]));
	ck_assert(mux_stream_is_finished(c[2]));
	ck_assert_int_eq(mux_stream_error(c[2]), WH_EACCEPT_QUEUE_FULL);
	ck_assert_uint_eq(mux_stream_remote_code(c[2]), 503);
	ck_assert_str_eq(mux_stream_remote_message(c[2]), "accept queue full");
	ck_assert_uint_eq(mux_stats(link.server)->streams_refused, 1);
	/* taking one makes room for the next */
	ck_assert_ptr_nonnull(mux_accept(link.server));
	struct mux_stream *d;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &d), WH_OK);
	pump(&link);
	ck_assert(!mux_stream_is_finished(d));
	link_close(&link);
}
END_TEST

/* Raw frames injected into the server, as a broken or hostile peer would send them. */
static void inject(struct link *link, const uint8_t *frame, int length)
{
	ck_assert_int_gt(length, 0);
	mux_input(link->server, frame, (size_t)length, link->now);
}

/* A DATA frame for stream `id`, straight into the server. */
static void inject_data(struct link *link, uint32_t id, const void *payload, size_t length)
{
	static uint8_t frame[FRAME_HEADER_SIZE + 65536];
	inject(link, frame, frame_encode_data(frame, sizeof frame, id, payload, length));
}

/* `count` DATA frames of one byte from the server's stream, each delivered before the next. */
static void write_frames(struct link *link, struct mux_stream *s, int count)
{
	for (int i = 0; i < count; i++) {
		ck_assert_int_eq(mux_stream_write(s, "y", 1), 1);
		pump(link);
	}
}

START_TEST(test_duplicate_handshake_is_a_stream_error)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct mux_stream *c, *other;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &c), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &other), WH_OK);
	pump(&link);
	uint8_t frame[64];
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, mux_stream_id(c), NULL, 0));
	pump(&link);
	ck_assert_int_eq(mux_stream_error(c), WH_ESTREAM_ALREADY_EXISTS);
	ck_assert_uint_eq(mux_stream_remote_code(c), 409);
	ck_assert(!mux_stream_is_finished(other));
	ck_assert(!mux_is_closed(link.server));
	ck_assert_int_eq(mux_stream_write(other, "still fine", 10), 10);
	pump(&link);
	mux_accept(link.server);
	struct mux_stream *s = mux_accept(link.server);
	char buf[16];
	ck_assert_int_eq(mux_stream_read(s, buf, sizeof buf), 10);
	/* a reused id and an id of the server's own parity are refused too */
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 1, NULL, 0));
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 100, NULL, 0));
	ck_assert_uint_eq(mux_stats(link.server)->errors_sent, 3);
	ck_assert(!mux_is_closed(link.server));
	link_close(&link);
}
END_TEST

/* The forward's client travels in the HANDSHAKE beside the service name; a malformed or
 * oversized address block is ERROR 400 on that stream alone. */
START_TEST(test_handshake_client_address)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct frame_client_address client = { .family = 4, .src_addr = { 192, 0, 2, 7 }, .src_port = 51234,
					       .dst_addr = { 127, 0, 0, 1 }, .dst_port = 18000 };
	struct mux_stream *c, *plain, *bad;
	ck_assert_int_eq(mux_open_stream_from(link.client, "web", &client, &c), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, "web", &plain), WH_OK);
	client.family = 5;
	ck_assert_int_eq(mux_open_stream_from(link.client, "web", &client, &bad), WH_EINVAL);
	client.family = 4;
	pump(&link);
	struct mux_stream *s = mux_accept(link.server), *s2 = mux_accept(link.server);
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_nonnull(s2);
	ck_assert_str_eq(mux_stream_service(s), "web");
	ck_assert_ptr_nonnull(mux_stream_client(s));
	ck_assert_mem_eq(mux_stream_client(s), &client, sizeof client);
	ck_assert_ptr_null(mux_stream_client(s2));
	ck_assert_ptr_nonnull(mux_stream_client(c));

	/* malformed (a client block a byte short) and oversized (300 bytes of extensions) */
	uint8_t payload[FRAME_CONTROL_MAX], frame[FRAME_HEADER_SIZE + FRAME_CONTROL_MAX];
	static const uint8_t short_block[] = { 'w', 'e', 'b', 0, 1, 12, 4, 192, 0, 2, 7, 0xC8, 0x22,
					       127, 0, 0, 1, 0x46 };
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 5, short_block, sizeof short_block));
	memcpy(payload, "web", 4);
	for (size_t i = 0; i < 150; i++) {
		payload[4 + 2 * i] = (uint8_t)(0x80 + i);
		payload[5 + 2 * i] = 0;
	}
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 7, payload, 4 + 300));
	ck_assert_uint_eq(mux_stats(link.server)->errors_sent, 2);
	ck_assert_ptr_null(mux_accept(link.server));
	ck_assert(!mux_is_closed(link.server));
	/* the connection carries on: the first stream still works */
	ck_assert_int_eq(mux_stream_write(c, "still fine", 10), 10);
	pump(&link);
	char buf[16];
	ck_assert_int_eq(mux_stream_read(s, buf, sizeof buf), 10);
	link_close(&link);
}
END_TEST

START_TEST(test_window_violation_is_a_stream_error)
{
	struct mux_config config = test_config();
	config.window_size = 4096;
	config.max_window_size = 4096;
	struct link link;
	link_open(&link, &config);
	struct mux_stream *c, *other;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &c), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &other), WH_OK);
	pump(&link);
	static uint8_t payload[3000];
	inject_data(&link, mux_stream_id(c), payload, 3000);
	inject_data(&link, mux_stream_id(c), payload, 3000);
	pump(&link);
	ck_assert_int_eq(mux_stream_error(c), WH_EFLOW_CONTROL);
	ck_assert_uint_eq(mux_stream_remote_code(c), 413);
	ck_assert(!mux_is_closed(link.server));
	ck_assert(!mux_stream_is_finished(other));
	/* memory stayed within the window: the excess was never stored */
	struct mux_stream *s = mux_accept(link.server);
	struct mux_stream_stats stats;
	mux_stream_get_stats(s, &stats);
	ck_assert_uint_le(stats.held, 4096);
	link_close(&link);
}
END_TEST

START_TEST(test_malformed_frame_ends_one_stream)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct mux_stream *c, *other;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &c), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &other), WH_OK);
	pump(&link);
	uint8_t frame[32];
	struct frame_header bad = { 1, FRAME_WINDOW_UPDATE, mux_stream_id(c), 2 }; /* short */
	frame_header_pack(frame, &bad);
	frame[10] = frame[11] = 0;
	inject(&link, frame, 12);
	struct frame_header unknown_type = { 1, 0x33, mux_stream_id(other) + 100, 0 };
	frame_header_pack(frame, &unknown_type);
	inject(&link, frame, 10);
	pump(&link);
	ck_assert_int_eq(mux_stream_error(c), WH_EPROTOCOL);
	ck_assert_uint_eq(mux_stream_remote_code(c), 400);
	ck_assert_str_eq(mux_stream_remote_message(c), "frame too short");
	ck_assert(!mux_stream_is_finished(other));
	ck_assert_uint_eq(mux_stats(link.server)->malformed_frames, 2);
	ck_assert(!mux_is_closed(link.server));
	link_close(&link);
}
END_TEST

START_TEST(test_unknown_stream_frames_are_dropped)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	uint8_t frame[64];
	/* 78 has the server's own parity: never a stream the client may open */
	inject_data(&link, 78, "lost", 4);
	inject(&link, frame, frame_encode_window_update(frame, sizeof frame, 78, 5));
	inject(&link, frame, frame_encode_close(frame, sizeof frame, 78));
	ck_assert_uint_eq(mux_stats(link.server)->dropped_frames, 3);
	/* 77 may still open: DATA and CLOSE wait for its HANDSHAKE, briefly */
	inject_data(&link, 77, "held", 4);
	inject(&link, frame, frame_encode_close(frame, sizeof frame, 77));
	ck_assert_uint_eq(mux_stats(link.server)->early_frames, 2);
	ck_assert_int_gt(link.timer_changes, 0);
	double next = mux_timer(link.server, link.now);
	ck_assert(next <= link.now + 5.0 + 1e-9);
	mux_timer(link.server, link.now + 5.1);
	ck_assert_uint_eq(mux_stats(link.server)->dropped_frames, 4);
	/* its HANDSHAKE comes too late: the stream opens empty, nothing replayed */
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 77, NULL, 0));
	struct mux_stream *s = mux_accept(link.server);
	ck_assert_ptr_nonnull(s);
	char buf[8];
	ck_assert_int_eq(mux_stream_read(s, buf, sizeof buf), WH_EWOULDBLOCK);
	ck_assert(!mux_is_closed(link.server));
	link_close(&link);
}
END_TEST

/* Everything the server mux wants to write, decoded (frames kept in order, payloads cut). */
struct written {
	unsigned count;
	struct frame_header headers[64];
	uint8_t payloads[64][64];
};

static void collect_output(struct mux *mux, struct written *out)
{
	struct frame_decoder decoder;
	frame_decoder_init(&decoder, FRAME_MAX_PAYLOAD);
	memset(out, 0, sizeof *out);
	for (;;) {
		struct iovec iov[64];
		int n = mux_output_gather(mux, iov, 64);
		if (n <= 0)
			return;
		size_t total = 0;
		for (int i = 0; i < n; i++) {
			const uint8_t *p = iov[i].iov_base;
			size_t left = iov[i].iov_len;
			while (left) {
				struct frame_event ev;
				size_t used = frame_decoder_feed(&decoder, p, left, &ev);
				ck_assert_int_ne(ev.kind, FRAME_EVENT_MALFORMED);
				if ((ev.kind == FRAME_EVENT_CONTROL || ev.kind == FRAME_EVENT_DATA_HEADER) &&
				    out->count < 64) {
					out->headers[out->count] = ev.header;
					memcpy(out->payloads[out->count], ev.payload,
					       ev.payload_length < 64 ? ev.payload_length : 64);
					out->count++;
				}
				p += used;
				left -= used;
			}
			total += iov[i].iov_len;
		}
		mux_output_advance(mux, total);
	}
}

/* A reference client may send a stream's first DATA (and even its CLOSE) before its
 * HANDSHAKE: the bytes wait and arrive in order once the stream opens. */
START_TEST(test_data_before_handshake_is_held)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	uint8_t frame[64];
	inject_data(&link, 1, "hel", 3);
	inject_data(&link, 1, "lo", 2);
	inject(&link, frame, frame_encode_close(frame, sizeof frame, 1));
	ck_assert_ptr_null(mux_accept(link.server));
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 1, NULL, 0));
	struct mux_stream *s = mux_accept(link.server);
	ck_assert_ptr_nonnull(s);
	char buf[16];
	ck_assert_int_eq(mux_stream_read(s, buf, sizeof buf), 5);
	ck_assert_mem_eq(buf, "hello", 5);
	ck_assert_int_eq(mux_stream_read(s, buf, sizeof buf), 0); /* then its CLOSE */
	ck_assert_uint_eq(mux_stats(link.server)->dropped_frames, 0);

	/* an id skipped by a later HANDSHAKE may still open (its HANDSHAKE comes late): what was
	 * held for it waits for it */
	inject_data(&link, 3, "x", 1);
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 5, NULL, 0));
	ck_assert_uint_eq(mux_stats(link.server)->dropped_frames, 0);
	ck_assert_ptr_nonnull(mux_accept(link.server));
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 3, NULL, 0));
	struct mux_stream *late = mux_accept(link.server);
	ck_assert_ptr_nonnull(late);
	ck_assert_int_eq(mux_stream_read(late, buf, sizeof buf), 1);
	ck_assert_int_eq(buf[0], 'x');

	/* held bytes still count against the window: more than it is ERROR 413 at the open */
	static uint8_t big[FRAME_HEADER_SIZE + 32768], payload[32768];
	for (int i = 0; i < 9; i++) /* 9 x 32 KiB > 256 KiB */
		inject(&link, big, frame_encode_data(big, sizeof big, 7, payload, sizeof payload));
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 7, NULL, 0));
	struct mux_stream *over = mux_accept(link.server);
	ck_assert_ptr_nonnull(over);
	ck_assert_int_eq(mux_stream_error(over), WH_EFLOW_CONTROL);

	/* at most EARLY_IDS_MAX (8) ids wait at once; frames for more are dropped */
	uint64_t dropped = mux_stats(link.server)->dropped_frames;
	for (uint32_t id = 101; id < 101 + 2 * 10; id += 2)
		inject_data(&link, id, "y", 1);
	ck_assert_uint_eq(mux_stats(link.server)->dropped_frames, dropped + 2);
	ck_assert(!mux_is_closed(link.server));
	link_close(&link);
}
END_TEST

START_TEST(test_malformed_handshake_for_new_id_is_refused)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	static uint8_t frame[FRAME_HEADER_SIZE + 5000];
	struct frame_header h = { 1, FRAME_HANDSHAKE, 9, 5000 }; /* payload above 4 KiB */
	frame_header_pack(frame, &h);
	memset(frame + FRAME_HEADER_SIZE, 'a', 5000);
	inject(&link, frame, (int)sizeof frame);
	struct written out;
	collect_output(link.server, &out);
	ck_assert_uint_eq(out.count, 1);
	ck_assert_uint_eq(out.headers[0].type, FRAME_ERROR);
	ck_assert_uint_eq(out.headers[0].stream_id, 9);
	ck_assert_uint_eq(out.payloads[0][2] << 8 | out.payloads[0][3], 400);
	ck_assert_ptr_null(mux_accept(link.server));
	ck_assert(!mux_is_closed(link.server));
	link_close(&link);
}
END_TEST

/* An ERROR whose message is longer than any frame we would take is cut short, not refused:
 * the stream still ends with the peer's code. */
START_TEST(test_long_error_message_is_cut_short)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct mux_stream *c;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &c), WH_OK);
	pump(&link);
	size_t length = 100000; /* above MaxFrameSize (32 KiB) */
	uint8_t *frame = malloc(FRAME_HEADER_SIZE + length);
	struct frame_header h = { 1, FRAME_ERROR, mux_stream_id(c), (uint32_t)length };
	frame_header_pack(frame, &h);
	uint8_t code[4] = { 0, 0, 0x01, 0xf7 }; /* 503 */
	memcpy(frame + FRAME_HEADER_SIZE, code, 4);
	memset(frame + FRAME_HEADER_SIZE + 4, 'm', length - 4);
	mux_input(link.client, frame, FRAME_HEADER_SIZE + length, link.now);
	free(frame);
	ck_assert_int_eq(mux_stream_error(c), WH_EACCEPT_QUEUE_FULL);
	ck_assert_uint_eq(mux_stream_remote_code(c), 503);
	ck_assert_uint_eq(strlen(mux_stream_remote_message(c)), FRAME_CONTROL_MAX - 4);
	ck_assert_uint_eq(mux_stats(link.client)->malformed_frames, 0);
	ck_assert(!mux_is_closed(link.client));
	link_close(&link);
}
END_TEST

START_TEST(test_fatal_garbage_closes_connection)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct mux_stream *c;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &c), WH_OK);
	pump(&link);
	const char *garbage = "GET / HTTP/1.1\r\n\r\n";
	ck_assert_int_eq(mux_input(link.server, (const uint8_t *)garbage, strlen(garbage), link.now),
			 WH_EPAYLOAD_TOO_LARGE);
	ck_assert(mux_is_closed(link.server));
	ck_assert_int_eq(link.server_closed, 1);
	pump(&link); /* the goodbye reaches the client */
	struct iovec iov[4];
	ck_assert_int_eq(mux_output_gather(link.server, iov, 4), 0);
	link_close(&link);
}
END_TEST

/* ---- flow control: a slow reader is bounded and never blocks the others --------------- */

START_TEST(test_slow_reader_bounded_others_flow)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct mux_stream *slow, *fast;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &slow), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &fast), WH_OK);
	static uint8_t chunk[65536];
	for (int round = 0; round < 40; round++) {
		mux_stream_write(slow, chunk, sizeof chunk); /* the server never reads this one */
		mux_stream_write(fast, chunk, sizeof chunk);
		pump(&link);
	}
	struct mux_stream *s_slow = mux_accept(link.server);
	struct mux_stream *s_fast = mux_accept(link.server);
	size_t fast_total = 0;
	for (int round = 0; round < 200; round++) {
		long n;
		while ((n = mux_stream_read(s_fast, chunk, sizeof chunk)) > 0)
			fast_total += (size_t)n;
		mux_stream_write(fast, chunk, sizeof chunk);
		mux_stream_write(slow, chunk, sizeof chunk);
		pump(&link);
	}
	struct mux_stream_stats stats;
	mux_stream_get_stats(s_slow, &stats);
	ck_assert_uint_eq(stats.held, config.window_size); /* exactly one window, no more */
	ck_assert_uint_gt(fast_total, 10u << 20);          /* the other stream kept moving */
	mux_stream_get_stats(slow, &stats);
	ck_assert_int_eq(stats.send_credit, 0);
	ck_assert_uint_ge(stats.window_stalls, 1);
	link_close(&link);
}
END_TEST

/* A released stream discards what arrives but returns credit: the peer's writes finish. */
START_TEST(test_released_stream_keeps_peer_flowing)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct mux_stream *c;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &c), WH_OK);
	pump(&link);
	struct mux_stream *s = mux_accept(link.server);
	mux_stream_release(s); /* also half-closes the server side */
	static uint8_t chunk[65536];
	size_t sent = 0;
	for (int round = 0; round < 100; round++) {
		long n = mux_stream_write(c, chunk, sizeof chunk);
		if (n > 0)
			sent += (size_t)n;
		pump(&link);
	}
	ck_assert_uint_gt(sent, 4u << 20); /* far beyond one window */
	ck_assert_int_eq(mux_stream_close_write(c), WH_OK);
	pump(&link);
	char buf[4];
	ck_assert_int_eq(mux_stream_read(c, buf, 4), 0);
	ck_assert(mux_stream_is_finished(c));
	ck_assert_uint_eq(mux_num_streams(link.server), 0);
	link_close(&link);
}
END_TEST

START_TEST(test_released_stream_lingers_then_resets)
{
	struct mux_config config = test_config();
	config.release_linger = 5.0;
	struct link link;
	link_open(&link, &config);
	struct mux_stream *quiet, *polite;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &quiet), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &polite), WH_OK);
	pump(&link);
	struct mux_stream *s1 = mux_accept(link.server), *s2 = mux_accept(link.server);
	ck_assert_ptr_nonnull(s1);
	ck_assert_ptr_nonnull(s2);
	mux_stream_release(s1);
	mux_stream_release(s2);
	ck_assert_int_eq(link.timer_changes, 1); /* the first lingering stream brings the deadline in */
	double released = link.now;
	ck_assert(mux_timer(link.server, link.now) <= released + 5.0);
	pump(&link);
	/* the polite peer closes in time: its stream ends normally */
	ck_assert_int_eq(mux_stream_close_write(polite), WH_OK);
	pump(&link);
	ck_assert_uint_eq(mux_num_streams(link.server), 1);
	link.now = released + 4.9;
	mux_timer(link.server, link.now);
	pump(&link);
	ck_assert_uint_eq(mux_num_streams(link.server), 1);
	ck_assert(!mux_stream_is_finished(quiet));
	/* the quiet one never closes: past the linger it is reset, and the peer is told */
	link.now = released + 5.1;
	mux_timer(link.server, link.now);
	pump(&link);
	ck_assert_uint_eq(mux_num_streams(link.server), 0);
	ck_assert(mux_stream_is_finished(quiet));
	ck_assert_uint_eq(mux_stream_remote_code(quiet), FRAME_ERR_CANCELLED);
	ck_assert_ptr_nonnull(strstr(mux_stream_remote_message(quiet), "released stream"));
	ck_assert_int_eq(mux_stream_error(polite), WH_OK);
	ck_assert_uint_eq(mux_stats(link.server)->streams_lingered, 1);
	/* nothing lingers: the timer has nothing to do for it */
	ck_assert(mux_timer(link.server, link.now) > link.now + 1000);
	link_close(&link);
}
END_TEST

/* ---- window growth -------------------------------------------------------------------- */

static void measure_rtt(struct link *link, double rtt)
{
	mux_timer(link->server, link->now); /* the first timer call sends the RTT probe */
	pump_once(link, link->server, link->client);
	link->now += rtt; /* the PONG takes this long to come back */
	pump(link);
}

/* Opens a stream client -> server and moves `rounds` 64 KiB writes through it, the server
 * reading everything after each one. Returns the server's end. */
static struct mux_stream *bulk_with_fast_reader(struct link *link, int rounds)
{
	struct mux_stream *c;
	ck_assert_int_eq(mux_open_stream(link->client, NULL, &c), WH_OK);
	static uint8_t chunk[65536];
	mux_stream_write(c, chunk, sizeof chunk);
	pump(link);
	struct mux_stream *s = mux_accept(link->server);
	ck_assert_ptr_nonnull(s);
	for (int round = 0; round < rounds; round++) {
		mux_stream_write(c, chunk, sizeof chunk);
		pump(link);
		while (mux_stream_read(s, chunk, sizeof chunk) > 0)
			;
		pump(link);
	}
	return s;
}

START_TEST(test_window_grows_when_it_limits)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	measure_rtt(&link, 0.050); /* the PONG came back 50 ms later */
	ck_assert(mux_stats(link.server)->rtt > 0.049);
	/* the reader keeps up within microseconds: the window is the limit */
	struct mux_stream *s = bulk_with_fast_reader(&link, 2000);
	struct mux_stream_stats stats;
	mux_stream_get_stats(s, &stats);
	ck_assert_uint_eq(stats.recv_window, config.max_window_size);
	ck_assert_uint_ge(mux_stats(link.server)->window_growths, 6);
	link_close(&link);
}
END_TEST

START_TEST(test_window_growth_respects_budget)
{
	struct mux_config config = test_config();
	struct mux_budget budget = { .limit = 1u << 20, .used = 0 };
	struct link link;
	link_open_budget(&link, &config, &budget);
	measure_rtt(&link, 0.050);
	struct mux_stream *s = bulk_with_fast_reader(&link, 500);
	struct mux_stream_stats stats;
	mux_stream_get_stats(s, &stats);
	ck_assert_uint_le(stats.recv_window, 1u << 20);
	ck_assert_uint_le(budget.used, budget.limit);
	/* with the budget spent, a new incoming stream is refused with 429 */
	struct mux_stream *refused;
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(mux_open_stream(link.client, NULL, &refused), WH_OK);
	pump(&link);
	ck_assert_int_eq(mux_stream_error(refused), WH_ELIMIT);
	ck_assert_uint_eq(mux_stream_remote_code(refused), 429);
	mux_free(link.server);
	link.server = NULL;
	ck_assert_uint_eq(budget.used, 0); /* every reserved byte came back */
	mux_free(link.client);
}
END_TEST

/* ---- bounds on a hostile peer (docs/SECURITY.md) -------------------------------------- */

/* What a new stream takes from the budgets: its window and one frame of send buffer. */
#define STREAM_COST (262144 + 32768)

/* The goodbye a closed mux left in its output: ERROR on stream 0, its code. 0: none. */
static uint32_t goodbye_code(struct mux *mux, char *message, size_t length)
{
	struct written out;
	collect_output(mux, &out);
	for (unsigned i = 0; i < out.count; i++)
		if (out.headers[i].type == FRAME_ERROR && out.headers[i].stream_id == 0) {
			const uint8_t *p = out.payloads[i];
			size_t n = out.headers[i].length - 4 < length - 1 ? out.headers[i].length - 4 : length - 1;
			n = n < 60 ? n : 60;
			memcpy(message, p + 4, n);
			message[n] = '\0';
			return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		}
	return 0;
}

/* The mux is closed with `error` and left a goodbye (ERROR 505) saying `message`. */
static void assert_closed_with_goodbye(struct mux *mux, int error, const char *message)
{
	ck_assert(mux_is_closed(mux));
	ck_assert_int_eq(mux_error(mux), error);
	char said[64];
	ck_assert_uint_eq(goodbye_code(mux, said, sizeof said), FRAME_ERR_GOING_AWAY);
	ck_assert_str_eq(said, message);
}

/* HANDSHAKE then CLOSE (or ERROR) with no DATA: a bucket of reset_rate a second holding five
 * seconds' worth; the first stream beyond it ends the connection with a goodbye. Streams
 * that carried DATA are not counted, and the bucket refills with time. */
START_TEST(test_rapid_reset_closes_connection)
{
	struct mux_config config = test_config();
	config.reset_rate = 10; /* a burst of 50 */
	config.accept_backlog = 1000;
	struct link link;
	link_open(&link, &config);
	uint8_t frame[64];
	uint32_t id = 1;
	/* streams with data are a peer's normal business, however fast */
	for (int i = 0; i < 200; i++, id += 2) {
		inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, "echo", 4));
		inject_data(&link, id, "x", 1);
		inject(&link, frame, frame_encode_close(frame, sizeof frame, id));
	}
	ck_assert(!mux_is_closed(link.server));
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 0);
	/* 50 empty ones, alternating CLOSE and ERROR: the burst */
	for (int i = 0; i < 50; i++, id += 2) {
		inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, "echo", 4));
		if (i % 2)
			inject(&link, frame, frame_encode_close(frame, sizeof frame, id));
		else
			inject(&link, frame, frame_encode_error(frame, sizeof frame, id, 499, "x", 1));
	}
	ck_assert(!mux_is_closed(link.server));
	/* a second later, ten more are allowed, and the eleventh is one too many */
	link.now += 1.0;
	for (int i = 0; i < 10; i++, id += 2) {
		inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, "echo", 4));
		inject(&link, frame, frame_encode_close(frame, sizeof frame, id));
	}
	ck_assert(!mux_is_closed(link.server));
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, "echo", 4));
	inject(&link, frame, frame_encode_close(frame, sizeof frame, id));
	assert_closed_with_goodbye(link.server, WH_ELIMIT, "too many streams opened and ended without data");
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 61);
	/* bytes after the goodbye are not acted on */
	id += 2;
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, "echo", 4));
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 61);
	link_close(&link);
}
END_TEST

/* Opens the broker refuses count as rapid reset: the refusal costs us a stream and an answer
 * and the peer 20 bytes. Here the refusals are an accept backlog of 2 that nobody accepts. */
START_TEST(test_refused_opens_count_as_rapid_reset)
{
	struct mux_config config = test_config();
	config.reset_rate = 10; /* a burst of 50 */
	config.accept_backlog = 2;
	struct link link;
	link_open(&link, &config);
	uint8_t frame[64];
	uint32_t id = 1;
	for (int i = 0; i < 2 + 50; i++, id += 2)
		inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, "echo", 4));
	ck_assert(!mux_is_closed(link.server));
	ck_assert_uint_eq(mux_stats(link.server)->streams_refused, 50);
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 50);
	/* a bad service name is a refusal too: the 51st, one too many */
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, "a\0b", 3));
	assert_closed_with_goodbye(link.server, WH_ELIMIT, "too many streams opened and ended without data");
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 51);
	link_close(&link);
}
END_TEST

/* A HANDSHAKE too large to parse is a refused open too (ERROR 400 answers it), not only a
 * malformed frame: eight of those in a row close the connection, but one good frame between
 * them (DATA on an open stream) started that count again, and a peer had us refuse 3,000
 * HANDSHAKEs of over 4 KiB on one connection where a refusal of any other kind closes it after the
 * reset-rate burst. */
START_TEST(test_oversized_handshakes_count_as_rapid_reset)
{
	struct mux_config config = test_config();
	config.reset_rate = 10; /* a burst of 50 */
	struct link link;
	link_open(&link, &config);
	uint8_t small[64];
	inject(&link, small, frame_encode_handshake(small, sizeof small, 1, "echo", 4));
	static uint8_t frame[FRAME_HEADER_SIZE + 5000];
	struct frame_header h = { 1, FRAME_HANDSHAKE, 3, 5000 }; /* above 4 KiB: a malformed frame */
	frame_header_pack(frame, &h);
	memset(frame + FRAME_HEADER_SIZE, 'a', 5000);
	for (int i = 0; i < 60 && !mux_is_closed(link.server); i++) {
		inject(&link, frame, (int)sizeof frame);
		inject_data(&link, 1, "x", 1);
	}
	assert_closed_with_goodbye(link.server, WH_ELIMIT, "too many streams opened and ended without data");
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 51);
	link_close(&link);
}
END_TEST

/* DATA or CLOSE for ids that never open: eight ids are held for their HANDSHAKE (a reference
 * peer may send them first); a frame for a ninth new id while they are held, a held id that
 * expires, and held ids a higher HANDSHAKE shows will never open each count as rapid reset. */
START_TEST(test_never_opened_ids_count_as_rapid_reset)
{
	struct mux_config config = test_config();
	config.reset_rate = 10; /* a burst of 50 */
	struct link link;
	link_open(&link, &config);
	uint8_t frame[64];
	uint32_t id = 1;
	for (int i = 0; i < 8; i++, id += 2)
		inject_data(&link, id, "early", 5);
	ck_assert_uint_eq(mux_stats(link.server)->early_frames, 8);
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 0);
	for (int i = 0; i < 50; i++, id += 2)
		if (i % 2)
			inject_data(&link, id, "x", 1);
		else
			inject(&link, frame, frame_encode_close(frame, sizeof frame, id));
	ck_assert(!mux_is_closed(link.server));
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 50);
	inject_data(&link, id, "x", 1);
	ck_assert(mux_is_closed(link.server));
	ck_assert_int_eq(mux_error(link.server), WH_ELIMIT);
	link_close(&link);

	/* held ids that expire are counted once each, also ids a HANDSHAKE skipped (theirs may
	 * still come: they wait as long as the others) */
	link_open(&link, &config);
	for (id = 1; id <= 5; id += 2) /* 1, 3, 5 */
		inject_data(&link, id, "early", 5);
	link.now += 6.0;
	mux_timer(link.server, link.now);
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 3);
	for (id = 7; id <= 11; id += 2) /* 7, 9, 11 */
		inject_data(&link, id, "early", 5);
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 13, "echo", 4));
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 3);
	link.now += 6.0;
	mux_timer(link.server, link.now);
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 6);
	ck_assert(!mux_is_closed(link.server));
	link_close(&link);
}
END_TEST

/* PINGs: a bucket of ping_rate a second holding five seconds' worth, each answered; the first
 * beyond it ends the connection with a goodbye, and nothing after it is answered. */
START_TEST(test_ping_flood_closes_connection)
{
	struct mux_config config = test_config();
	config.ping_rate = 10; /* a burst of 50 */
	struct link link;
	link_open(&link, &config);
	uint8_t frame[32];
	uint32_t id = 1;
	for (; id <= 50; id++)
		inject(&link, frame, frame_encode_ping(frame, sizeof frame, id));
	ck_assert(!mux_is_closed(link.server));
	link.now += 1.0;
	for (int i = 0; i < 10; i++, id++)
		inject(&link, frame, frame_encode_ping(frame, sizeof frame, id));
	ck_assert(!mux_is_closed(link.server));
	inject(&link, frame, frame_encode_ping(frame, sizeof frame, id++));
	assert_closed_with_goodbye(link.server, WH_ELIMIT, "too many PINGs");
	inject(&link, frame, frame_encode_ping(frame, sizeof frame, id++));
	struct written out;
	collect_output(link.server, &out);
	ck_assert_uint_eq(mux_stats(link.server)->frames_out[FRAME_PONG], 60);
	link_close(&link);
}
END_TEST

/* noop-rate: WINDOW_UPDATE and ERROR for streams that are not open, a second CLOSE, ERRORs on
 * stream 0 that are not a goodbye, and PONGs nobody asked for share one bucket; a burst of
 * five seconds' worth passes, so does the rate after it, the next closes the connection with
 * the goodbye. Credit for a live stream, its first CLOSE, and the PONG that answers our PING
 * are not counted. */
START_TEST(test_noop_flood_closes_connection)
{
	struct mux_config config = test_config();
	config.noop_rate = 10; /* a burst of 50 */
	struct link link;
	link_open(&link, &config);
	struct mux_stream *c;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &c), WH_OK);
	pump(&link);
	struct mux_stream *live = mux_accept(link.server);
	ck_assert_ptr_nonnull(live);
	write_frames(&link, live, 200); /* DATA frames the peer may grant credit for */
	uint8_t frame[64];
	for (int i = 0; i < 200; i++) /* credit for the live stream: useful, never counted */
		inject(&link, frame, frame_encode_window_update(frame, sizeof frame, mux_stream_id(live), 1));
	/* its CLOSE is news; a second one is not */
	inject(&link, frame, frame_encode_close(frame, sizeof frame, mux_stream_id(live)));
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 0);
	inject(&link, frame, frame_encode_close(frame, sizeof frame, mux_stream_id(live)));
	uint32_t id = 101;
	for (int i = 0; i < 20; i++, id += 2)
		inject(&link, frame, frame_encode_window_update(frame, sizeof frame, id, 1));
	for (int i = 0; i < 10; i++, id += 2)
		inject(&link, frame, frame_encode_error(frame, sizeof frame, id, 499, "x", 1));
	for (int i = 0; i < 10; i++)
		inject(&link, frame, frame_encode_error(frame, sizeof frame, 0, 500, "x", 1));
	for (uint32_t ping = 1; ping <= 9; ping++)
		inject(&link, frame, frame_encode_pong(frame, sizeof frame, ping + 1000000));
	ck_assert(!mux_is_closed(link.server));
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 50);
	link.now += 1.0;
	for (int i = 0; i < 10; i++, id += 2)
		inject(&link, frame, frame_encode_window_update(frame, sizeof frame, id, 1));
	ck_assert(!mux_is_closed(link.server));
	inject(&link, frame, frame_encode_pong(frame, sizeof frame, 7));
	assert_closed_with_goodbye(link.server, WH_ELIMIT, "too many frames that do nothing");
	link_close(&link);
}
END_TEST

/* A stream the client opens (with `bytes`, when not NULL), as the server accepted it. */
static struct mux_stream *open_accepted(struct link *link, const char *bytes)
{
	struct mux_stream *c;
	ck_assert_int_eq(mux_open_stream(link->client, NULL, &c), WH_OK);
	if (bytes)
		ck_assert_int_eq(mux_stream_write(c, bytes, strlen(bytes)), (long)strlen(bytes));
	pump(link);
	struct mux_stream *accepted = mux_accept(link->server);
	ck_assert_ptr_nonnull(accepted);
	return accepted;
}

/* DATA for a stream that is not open does nothing: beyond what the windows of the streams the
 * owner ended may still bring, it counts in noop-rate, so a flood of empty DATA frames on an
 * ended id closes the connection like any other noop flood. */
START_TEST(test_data_for_ended_stream_counts_as_noop)
{
	struct mux_config config = test_config();
	config.noop_rate = 10; /* a burst of 50 */
	struct link link;
	link_open(&link, &config);
	struct mux_stream *live = open_accepted(&link, "x");
	uint32_t id = mux_stream_id(live);
	ck_assert_int_eq(mux_stream_read(live, (uint8_t[1]){ 0 }, 1), 1);
	uint8_t frame[64];
	inject(&link, frame, frame_encode_close(frame, sizeof frame, id));
	ck_assert_int_eq(mux_stream_close_write(live), WH_OK); /* both closed: it has ended */
	pump(&link);
	ck_assert(mux_stream_is_finished(live));
	for (int i = 0; i < 40; i++) /* the peer closed it: nothing of it may still come */
		inject_data(&link, id, NULL, 0);
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id + 4, NULL, 0));
	for (int i = 0; i < 10; i++) /* an id the peer skipped (below one it opened) */
		inject_data(&link, id + 2, "abc", 3);
	ck_assert(!mux_is_closed(link.server));
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 50);
	inject_data(&link, id, NULL, 0);
	assert_closed_with_goodbye(link.server, WH_ELIMIT, "too many frames that do nothing");
	link_close(&link);
}
END_TEST

/* A stream its owner resets may still have a window of the peer's DATA on its way, in frames
 * of any size: those are dropped but not counted, each taking at least 256 bytes of what the
 * window allowed; what comes beyond, or 30 s after, counts. A reset the peer caused by
 * breaking the protocol (a second HANDSHAKE) buys it nothing. */
START_TEST(test_data_in_flight_after_our_reset_is_spared)
{
	struct mux_config config = test_config();
	config.noop_rate = 10; /* a burst of 50 */
	struct link link;
	link_open(&link, &config);
	struct mux_stream *live = open_accepted(&link, "x");
	uint32_t id = mux_stream_id(live);
	/* read nothing: the peer's window is one byte smaller */
	ck_assert_int_eq(mux_stream_reset(live, WH_EAPP_GONE, "the app went away"), WH_OK);
	mux_stream_release(live);
	/* the peer had not read our ERROR yet: (window - 1) / 256 small frames, then a big one
	 * for the rest, all in its window */
	uint8_t frame[FRAME_HEADER_SIZE + 4096];
	uint32_t frames = (config.window_size - 1) / 256;
	for (uint32_t i = 0; i < frames - 16; i++)
		inject_data(&link, id, "small", 5);
	static const uint8_t big[4096];
	inject_data(&link, id, big, sizeof big);
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 0);
	for (int i = 0; i < 50; i++) /* beyond the window */
		inject_data(&link, id, NULL, 0);
	ck_assert(!mux_is_closed(link.server));
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 50);
	link_close(&link);

	/* 30 s after the reset, what the window allowed is no longer expected */
	link_open(&link, &config);
	live = open_accepted(&link, NULL);
	id = mux_stream_id(live);
	ck_assert_int_eq(mux_stream_reset(live, WH_EAPP_GONE, "the app went away"), WH_OK);
	mux_stream_release(live);
	inject_data(&link, id, "in time", 7);
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 0);
	link.now += 30.5;
	inject_data(&link, id, "too late", 8);
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 1);
	link_close(&link);

	/* a second HANDSHAKE resets the stream, and its window is not expected */
	link_open(&link, &config);
	live = open_accepted(&link, NULL);
	id = mux_stream_id(live);
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, NULL, 0));
	ck_assert(mux_stream_is_finished(live));
	mux_stream_release(live);
	inject_data(&link, id, NULL, 0);
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 1);
	link_close(&link);
}
END_TEST

/* On an open stream too: credit beyond one update per DATA frame we sent, credit of 0 and empty
 * DATA do nothing and count; a stream whose only DATA was empty still counts in reset-rate. */
START_TEST(test_useless_frames_on_an_open_stream_count)
{
	struct mux_config config = test_config();
	config.noop_rate = 10; /* a burst of 50 */
	struct link link;
	link_open(&link, &config);
	struct mux_stream *live = open_accepted(&link, "x");
	uint32_t id = mux_stream_id(live);
	write_frames(&link, live, 3);
	uint8_t frame[64];
	for (int i = 0; i < 3; i++)
		inject(&link, frame, frame_encode_window_update(frame, sizeof frame, id, 1));
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 0);
	inject(&link, frame, frame_encode_window_update(frame, sizeof frame, id, 1));
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 1);
	int length = frame_encode_window_update(frame, sizeof frame, id, 1);
	memset(frame + length - 4, 0, 4); /* credit of 0: our encoder will not write it */
	inject(&link, frame, length);
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 2);
	inject_data(&link, id, NULL, 0);
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 3);
	ck_assert(!mux_stream_is_finished(live));
	ck_assert_int_eq(mux_stream_read(live, (uint8_t[4]){ 0 }, 4), 1); /* "x", nothing more */
	/* HANDSHAKE, empty DATA, CLOSE: opened and ended without data all the same */
	uint64_t empty = mux_stats(link.server)->streams_reset_empty;
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id + 2, NULL, 0));
	inject_data(&link, id + 2, NULL, 0);
	inject(&link, frame, frame_encode_close(frame, sizeof frame, id + 2));
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, empty + 1);
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 4);
	ck_assert(!mux_is_closed(link.server));
	link_close(&link);
}
END_TEST

/* The PONG that answers our PING is not a noop frame. */
START_TEST(test_noop_rate_spares_the_pong_we_asked_for)
{
	struct mux_config config = test_config();
	config.noop_rate = 0.2; /* a burst of one */
	struct link link;
	link_open(&link, &config);
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(mux_ping(link.server, link.now), WH_OK);
		pump(&link); /* the client answers */
		link.now += 0.1;
	}
	ck_assert(!mux_is_closed(link.server));
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 0);
	link_close(&link);
}
END_TEST

/* Our side of the peer's reset-rate: our streams that the peer refuses, or that we end before
 * any DATA, count in a bucket of our own; below a fifth of its burst new opens fail here with
 * WH_ELIMIT, before the peer's bucket is empty, so an app retrying an open without a pause
 * gets an error and the connection (every other app's streams) lives. */
START_TEST(test_own_opens_held_back_before_peer_rate)
{
	struct mux_config config = test_config();
	config.reset_rate = 10; /* a burst of 50 on each side; ours holds back below 10 */
	config.accept_backlog = 1; /* the server takes one stream, then refuses */
	struct link link;
	link_open(&link, &config);
	int opened = 0, error = WH_OK;
	while (opened < 1000) {
		struct mux_stream *c;
		error = mux_open_stream(link.client, "svc", &c);
		if (error != WH_OK)
			break;
		opened++;
		pump(&link); /* the refusal comes back before the next try: a retry loop */
	}
	ck_assert_int_eq(error, WH_ELIMIT);
	ck_assert_int_eq(opened, 1 + 41); /* one taken, 41 refused: 50 - 41 < 10 */
	ck_assert_uint_eq(mux_stats(link.client)->opens_held_back, 1);
	ck_assert(!mux_is_closed(link.server));
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 41);
	/* a second later the bucket holds 19: opens go again */
	link.now += 1.0;
	mux_set_now(link.client, link.now);
	struct mux_stream *again;
	ck_assert_int_eq(mux_open_stream(link.client, "svc", &again), WH_OK);
	link_close(&link);

	/* opened and closed before any DATA: the same count; with DATA: none (the server holds
	 * them in its accept queue) */
	config.accept_backlog = 1000;
	link_open(&link, &config);
	for (int i = 0; i < 100; i++) {
		struct mux_stream *c;
		ck_assert_int_eq(mux_open_stream(link.client, "echo", &c), WH_OK);
		ck_assert_int_eq(mux_stream_write(c, "x", 1), 1);
		mux_stream_close_write(c);
		mux_stream_release(c);
		pump(&link);
	}
	ck_assert_uint_eq(mux_stats(link.client)->opens_held_back, 0);
	for (opened = 0; opened < 1000; opened++) {
		struct mux_stream *c;
		error = mux_open_stream(link.client, "echo", &c);
		if (error != WH_OK)
			break;
		mux_stream_close_write(c);
		mux_stream_release(c);
		pump(&link);
	}
	ck_assert_int_eq(error, WH_ELIMIT);
	ck_assert_int_eq(opened, 41);
	ck_assert(!mux_is_closed(link.server));
	link_close(&link);
}
END_TEST

START_TEST(test_rapid_reset_bound_can_be_off)
{
	struct mux_config config = test_config();
	config.reset_rate = 0;
	config.accept_backlog = 5000;
	struct link link;
	link_open(&link, &config);
	uint8_t frame[64];
	for (uint32_t id = 1; id < 2 * 4000; id += 2) {
		inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, "echo", 4));
		inject(&link, frame, frame_encode_close(frame, sizeof frame, id));
	}
	ck_assert(!mux_is_closed(link.server));
	link_close(&link);
}
END_TEST

/* An accepted connection with no stream for idle_timeout is closed; one with a stream is not;
 * the clock starts when its last stream is gone; a dialled one (client role) never is. */
START_TEST(test_idle_accepted_connection_closed)
{
	struct mux_config config = test_config();
	config.idle_timeout = 60;
	struct link link;
	link_open(&link, &config);
	double next = mux_timer(link.server, link.now);
	ck_assert(next <= link.now + 60 + 1e-9);
	mux_timer(link.client, link.now);
	pump(&link);
	link.now += 59;
	mux_timer(link.server, link.now);
	ck_assert(!mux_is_closed(link.server));
	/* a stream: not idle, for as long as it lives */
	struct mux_stream *c, *s;
	ck_assert_int_eq(mux_open_stream(link.client, "echo", &c), WH_OK);
	pump(&link);
	s = mux_accept(link.server);
	ck_assert_ptr_nonnull(s);
	link.now += 600;
	mux_timer(link.server, link.now);
	ck_assert(!mux_is_closed(link.server));
	ck_assert_int_eq(mux_stream_close_write(c), WH_OK);
	ck_assert_int_eq(mux_stream_close_write(s), WH_OK);
	pump(&link);
	int changes = link.timer_changes;
	mux_stream_release(c);
	mux_stream_release(s);
	ck_assert_int_gt(link.timer_changes, changes); /* the idle clock started: a new deadline */
	double idle_from = link.now;
	link.now += 59.5;
	next = mux_timer(link.server, link.now);
	ck_assert(next <= idle_from + 60 + 1e-9);
	ck_assert(!mux_is_closed(link.server));
	link.now += 1;
	mux_timer(link.server, link.now);
	assert_closed_with_goodbye(link.server, WH_ETIMEOUT, "idle: no stream for the idle timeout");
	/* the client side of the same config never closes for idleness */
	link.now += 10000;
	mux_timer(link.client, link.now);
	ck_assert(!mux_is_closed(link.client));
	link_close(&link);
}
END_TEST

/* PINGs whose PONGs the peer never reads: the control queue is bounded by control_queue_limit
 * and, past its first 64 KiB, by the budget; then the connection is closed. Everything it
 * charged comes back when it is freed. */
START_TEST(test_unread_answers_are_bounded)
{
	struct mux_config config = test_config();
	config.control_queue_limit = 32 * 1024;
	config.ping_rate = 0; /* the bound under test is the queue's, not the PING rate */
	struct link link;
	link_open(&link, &config);
	uint8_t frame[32];
	uint32_t id = 1;
	while (!mux_is_closed(link.server) && id < 100000) {
		inject(&link, frame, frame_encode_ping(frame, sizeof frame, id));
		id++;
	}
	ck_assert(mux_is_closed(link.server));
	ck_assert_int_eq(mux_error(link.server), WH_ELIMIT);
	ck_assert_uint_le(id, 32 * 1024 / (FRAME_HEADER_SIZE + 4) + 2);
	ck_assert_uint_ge(id, 32 * 1024 / (FRAME_HEADER_SIZE + 4) - 2);
	link_close(&link);

	/* the budget binds first when it is smaller */
	struct mux_budget budget = { .limit = 16 * 1024 };
	config.control_queue_limit = 4u << 20;
	link_open_budget(&link, &config, &budget);
	for (id = 1; !mux_is_closed(link.server) && id < 100000; id++)
		inject(&link, frame, frame_encode_ping(frame, sizeof frame, id));
	ck_assert(mux_is_closed(link.server));
	ck_assert_uint_le(budget.used, budget.limit);
	/* 64 KiB free of charge, and not a byte more */
	ck_assert_uint_le(id, 64 * 1024 / (FRAME_HEADER_SIZE + 4) + 2);
	ck_assert_uint_ge(id, 64 * 1024 / (FRAME_HEADER_SIZE + 4) - 2);
	ck_assert_uint_gt(budget.refused, 0);
	mux_free(link.server);
	link.server = NULL;
	ck_assert_uint_eq(budget.used, 0);
	mux_free(link.client);
}
END_TEST

/* Streams the peer opens never take the local reserve; streams we open may. */
START_TEST(test_budget_keeps_local_reserve)
{
	struct mux_config config = test_config();
	config.accept_backlog = 100;
	/* room for 8 windows, the last 2 kept for our own streams */
	struct mux_budget budget = { .limit = 8 * STREAM_COST, .local_reserve = 2 * STREAM_COST };
	struct link link;
	link_open_budget(&link, &config, &budget);
	struct mux_stream *c[8];
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(mux_open_stream(link.client, "echo", &c[i]), WH_OK);
	pump(&link);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(mux_stream_error(c[i]), WH_OK);
	ck_assert_int_eq(mux_stream_error(c[6]), WH_ELIMIT);
	ck_assert_int_eq(mux_stream_error(c[7]), WH_ELIMIT);
	ck_assert_uint_eq(budget.used, 6 * STREAM_COST);
	/* the server's own opens take the reserve */
	struct mux_stream *ours[3];
	ck_assert_int_eq(mux_open_stream(link.server, "echo", &ours[0]), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.server, "echo", &ours[1]), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.server, "echo", &ours[2]), WH_ELIMIT);
	ck_assert_uint_eq(budget.used, budget.limit);
	mux_free(link.server);
	link.server = NULL;
	ck_assert_uint_eq(budget.used, 0);
	mux_free(link.client);
}
END_TEST

/* Two connections charged to one peer's account share its limit; another peer's is its own. */
START_TEST(test_budget_account_shared_by_a_peers_connections)
{
	struct mux_config config = test_config();
	config.accept_backlog = 100;
	struct mux_budget budget = { .limit = 64 * STREAM_COST };
	struct mux_budget_account hog = { .limit = 4 * STREAM_COST }, other = { .limit = 4 * STREAM_COST };
	struct link a, b, c;
	struct link *links[3] = { &a, &b, &c };
	struct mux_budget_account *accounts[3] = { &hog, &hog, &other };
	for (int i = 0; i < 3; i++) {
		link_open_budget(links[i], &config, &budget);
		mux_set_budget_account(links[i]->server, accounts[i]);
	}
	struct mux_stream *s[3][4];
	for (int l = 0; l < 3; l++) {
		for (int i = 0; i < 4; i++)
			ck_assert_int_eq(mux_open_stream(links[l]->client, "echo", &s[l][i]), WH_OK);
		pump(links[l]);
	}
	/* the hog's two connections together got 4 streams; the other peer all of its 4 */
	unsigned hog_ok = 0;
	for (int l = 0; l < 2; l++)
		for (int i = 0; i < 4; i++)
			hog_ok += mux_stream_error(s[l][i]) == WH_OK;
	ck_assert_uint_eq(hog_ok, 4);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(mux_stream_error(s[2][i]), WH_OK);
	ck_assert_uint_eq(hog.used, 4 * STREAM_COST);
	ck_assert_uint_eq(other.used, 4 * STREAM_COST);
	for (int i = 0; i < 3; i++) {
		mux_free(links[i]->server);
		links[i]->server = NULL;
		mux_free(links[i]->client);
	}
	ck_assert_uint_eq(hog.used, 0);
	ck_assert_uint_eq(other.used, 0);
	ck_assert_uint_eq(budget.used, 0);
}
END_TEST

/* A built-in send buffer beyond its first frame is charged: with the budget spent, a stream
 * still sends (one frame at a time); with room, it queues its whole send_buffer. */
START_TEST(test_send_buffer_is_charged)
{
	struct mux_config config = test_config();
	struct mux_budget budget = { .limit = 2 * STREAM_COST + 262144 - 32768 };
	struct link link;
	link_open_budget(&link, &config, &budget);
	struct mux_stream *c1, *c2;
	ck_assert_int_eq(mux_open_stream(link.client, "echo", &c1), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, "echo", &c2), WH_OK);
	pump(&link);
	struct mux_stream *s1 = mux_accept(link.server), *s2 = mux_accept(link.server);
	ck_assert_ptr_nonnull(s1);
	ck_assert_ptr_nonnull(s2);
	static uint8_t big[1 << 20];
	link.cut = true; /* the peer reads nothing: what we write stays queued */
	long first = mux_stream_write(s1, big, sizeof big);
	ck_assert_int_eq(first, 262144); /* grown to send_buffer: charged */
	ck_assert_uint_eq(budget.used, budget.limit);
	long second = mux_stream_write(s2, big, sizeof big);
	ck_assert_int_eq(second, 32768); /* no budget left: one frame's worth */
	ck_assert_uint_eq(mux_stream_write_room(s2), 0);
	/* an owner's io in place of the built-in one gives the unused frame back */
	struct mux_stream *c3, *s3;
	mux_free(link.server);
	ck_assert_uint_eq(budget.used, 0);
	link.server = mux_new(false, &config, &budget, &link_callbacks, &link);
	link.cut = false;
	ck_assert_int_eq(mux_open_stream(link.client, "echo", &c3), WH_OK);
	pump(&link);
	s3 = mux_accept(link.server);
	ck_assert_ptr_nonnull(s3);
	ck_assert_uint_eq(budget.used, STREAM_COST);
	static const struct mux_stream_io other_io = { .rx_reserve = NULL };
	mux_stream_set_io(s3, &other_io, NULL);
	ck_assert_uint_eq(budget.used, 262144);
	mux_free(link.server);
	link.server = NULL;
	ck_assert_uint_eq(budget.used, 0);
	mux_free(link.client);
}
END_TEST

/* ---- keep-alive ----------------------------------------------------------------------- */

START_TEST(test_keepalive_ping_pong_and_timeout)
{
	struct mux_config config = test_config();
	config.keepalive_interval = 30;
	config.keepalive_timeout = 10;
	struct link link;
	link_open(&link, &config);
	double next = mux_timer(link.client, link.now); /* probe PING */
	ck_assert(next <= link.now + 10.0 + 1e-9);
	link.now += 0.002;
	pump(&link);
	ck_assert(mux_stats(link.client)->rtt > 0.0019);
	ck_assert_uint_eq(mux_stats(link.server)->frames_out[FRAME_PONG], 1);
	ck_assert_int_eq(mux_ping(link.client, link.now), WH_OK);
	ck_assert_int_eq(mux_ping(link.client, link.now), WH_EWOULDBLOCK);
	pump(&link);
	/* now the server stops answering */
	link.cut = true;
	link.now += 30;
	mux_timer(link.client, link.now); /* sends a PING that is never answered */
	pump(&link);
	link.now += 9.9;
	mux_timer(link.client, link.now);
	ck_assert(!mux_is_closed(link.client));
	link.now += 0.2;
	mux_timer(link.client, link.now);
	ck_assert(mux_is_closed(link.client));
	ck_assert_int_eq(link.client_close_error, WH_EKEEPALIVE_TIMEOUT);
	link_close(&link);
}
END_TEST

/* A peer whose PONG is late but whose DATA keeps coming (64 KiB or more within the timeout:
 * the PONG is behind what it had written) is alive: the wait starts again. One that trickles
 * less, or stops, is closed a timeout later. */
START_TEST(test_keepalive_spares_a_peer_that_keeps_sending)
{
	struct mux_config config = test_config();
	config.keepalive_interval = 30;
	config.keepalive_timeout = 10;
	struct link link;
	link_open(&link, &config);
	struct mux_stream *live = open_accepted(&link, NULL);
	uint32_t id = mux_stream_id(live);
	mux_stream_release(live); /* discards what comes, and returns its credit */
	link.cut = true; /* the client's PONGs never come */
	mux_timer(link.server, link.now); /* the server's first PING */
	static const uint8_t chunk[16384];
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 4; i++) /* 64 KiB within each timeout */
			inject_data(&link, id, chunk, sizeof chunk);
		link.now += 10.1;
		mux_timer(link.server, link.now);
		ck_assert(!mux_is_closed(link.server));
	}
	/* a trickle is not enough */
	inject_data(&link, id, chunk, 1000);
	link.now += 10.1;
	mux_timer(link.server, link.now);
	ck_assert(mux_is_closed(link.server));
	ck_assert_int_eq(mux_error(link.server), WH_EKEEPALIVE_TIMEOUT);
	link_close(&link);
}
END_TEST

/* ---- scheduling ----------------------------------------------------------------------- */

/* An interactive write waits behind at most one frame of each busy stream. */
START_TEST(test_round_robin_interactive_not_starved)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	struct mux_stream *bulk, *interactive;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &bulk), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &interactive), WH_OK);
	pump(&link);
	static uint8_t chunk[256 * 1024];
	ck_assert_int_eq(mux_stream_write(bulk, chunk, sizeof chunk), (long)sizeof chunk);
	ck_assert_int_eq(mux_stream_write(interactive, "ping", 4), 4);
	struct iovec iov[64];
	int n = mux_output_gather(link.client, iov, 64);
	/* frames: [bulk header, bulk payload] [interactive header, payload] ... */
	ck_assert_int_ge(n, 4);
	struct frame_header h;
	frame_header_unpack(iov[0].iov_base, &h);
	ck_assert_uint_eq(h.stream_id, mux_stream_id(bulk));
	ck_assert_uint_eq(h.length, FRAME_DEFAULT_PAYLOAD);
	frame_header_unpack(iov[2].iov_base, &h);
	ck_assert_uint_eq(h.stream_id, mux_stream_id(interactive));
	ck_assert_uint_eq(h.length, 4);
	link_close(&link);
}
END_TEST

/* A stream's HANDSHAKE always precedes its first DATA on the wire (one ordered queue). */
START_TEST(test_handshake_precedes_data)
{
	struct mux_config config = test_config();
	struct link link;
	link_open(&link, &config);
	for (int i = 0; i < 50; i++) {
		struct mux_stream *c;
		ck_assert_int_eq(mux_open_stream(link.client, NULL, &c), WH_OK);
		ck_assert_int_eq(mux_stream_write(c, "early", 5), 5);
	}
	link.partial_writes = true;
	pump(&link); /* any DATA before its HANDSHAKE would be dropped as unknown */
	ck_assert_uint_eq(mux_stats(link.server)->dropped_frames, 0);
	ck_assert_uint_eq(mux_stats(link.server)->data_bytes_in, 250);
	link_close(&link);
}
END_TEST

/* Control answers are queued however long the peer leaves them unread, never dropped. */
START_TEST(test_control_frames_never_dropped)
{
	struct mux_config config = test_config();
	config.ping_rate = 0; /* 2000 at once would be a ping flood */
	struct link link;
	link_open(&link, &config);
	uint8_t frame[32];
	for (uint32_t id = 1; id <= 2000; id++)
		inject(&link, frame, frame_encode_ping(frame, sizeof frame, id));
	pump(&link);
	ck_assert_uint_eq(mux_stats(link.server)->frames_out[FRAME_PONG], 2000);
	ck_assert_uint_eq(mux_stats(link.client)->frames_in[FRAME_PONG], 2000);
	link_close(&link);
}
END_TEST

START_TEST(test_limits_and_arguments)
{
	struct mux_config config = test_config();
	config.max_streams = 2;
	struct link link;
	link_open(&link, &config);
	struct mux_stream *s;
	char long_name[300];
	memset(long_name, 'n', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	ck_assert_int_eq(mux_open_stream(link.client, long_name, &s), WH_EINVAL);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &s), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &s), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &s), WH_ELIMIT);
	mux_close(link.client, WH_EMUX_CLOSED);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &s), WH_EMUX_CLOSED);
	struct mux_config bad = config;
	bad.window_size = 0;
	ck_assert_ptr_null(mux_new(true, &bad, NULL, NULL, NULL));
	bad = config;
	bad.max_frame_size = FRAME_MAX_PAYLOAD + 1;
	ck_assert_ptr_null(mux_new(true, &bad, NULL, NULL, NULL));
	link_close(&link);
}
END_TEST

/* Frames held for a HANDSHAKE that has not come count in noop-rate: empty or one-byte DATA
 * (and CLOSEs) spread over the eight held ids were served without bound before. A burst of
 * five seconds' worth passes, so does the rate after it, the next closes with the goodbye;
 * the stream whose frames were held still opens and gets them. */
START_TEST(test_held_frames_count_as_noop)
{
	struct mux_config config = test_config();
	config.noop_rate = 10; /* a burst of 50 */
	struct link link;
	link_open(&link, &config);
	uint8_t frame[64];
	for (int i = 0; i < 50; i++) {
		uint32_t id = 1 + 2 * (uint32_t)(i % 8);
		if (i % 3 == 0)
			inject_data(&link, id, "", 0);
		else if (i % 3 == 1)
			inject_data(&link, id, "y", 1);
		else
			inject(&link, frame, frame_encode_close(frame, sizeof frame, id));
	}
	ck_assert(!mux_is_closed(link.server));
	ck_assert_uint_eq(mux_stats(link.server)->early_frames, 50);
	ck_assert_uint_eq(mux_stats(link.server)->noop_frames, 50);
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 1, NULL, 0));
	struct mux_stream *s = mux_accept(link.server);
	ck_assert_ptr_nonnull(s);
	char buf[16];
	ck_assert_int_gt(mux_stream_read(s, buf, sizeof buf), 0);
	link.now += 1.0;
	for (int i = 0; i < 10; i++)
		inject_data(&link, 3, "", 0);
	ck_assert(!mux_is_closed(link.server));
	inject_data(&link, 5, "y", 1);
	assert_closed_with_goodbye(link.server, WH_ELIMIT, "too many frames that do nothing");
	link_close(&link);
}
END_TEST

/* Rapid reset with a byte of DATA: a stream the peer resets less than a second after it
 * opened counts in reset-rate whatever it carried; one reset later, or half-closed, does not.
 * Our side keeps the same count of the streams it resets early, and holds its opens back. */
START_TEST(test_early_resets_count_as_rapid_reset)
{
	struct mux_config config = test_config();
	config.reset_rate = 10; /* a burst of 50 */
	config.accept_backlog = 1000;
	struct link link;
	link_open(&link, &config);
	uint8_t frame[64];
	uint32_t id = 1;
	/* streams that carried a byte and were reset after a second and more: not early */
	for (int i = 0; i < 100; i++, id += 2) {
		inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, "echo", 4));
		inject_data(&link, id, "x", 1);
	}
	link.now += 1.5;
	for (uint32_t old = 1; old < id; old += 2)
		inject(&link, frame, frame_encode_error(frame, sizeof frame, old, 499, "x", 1));
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 0);
	/* HANDSHAKE, a byte, ERROR: 50 pass (the burst), the 51st closes */
	for (int i = 0; i < 50; i++, id += 2) {
		inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, "echo", 4));
		inject_data(&link, id, "x", 1);
		inject(&link, frame, frame_encode_error(frame, sizeof frame, id, 499, "x", 1));
	}
	ck_assert(!mux_is_closed(link.server));
	ck_assert_uint_eq(mux_stats(link.server)->streams_reset_empty, 50);
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, id, "echo", 4));
	inject_data(&link, id, "x", 1);
	inject(&link, frame, frame_encode_error(frame, sizeof frame, id, 499, "x", 1));
	assert_closed_with_goodbye(link.server, WH_ELIMIT, "too many streams opened and ended without data");
	link_close(&link);

	/* our own early resets: the opens stop before the peer's bound would end the link */
	link_open(&link, &config);
	int opened = 0;
	for (; opened < 50; opened++) {
		struct mux_stream *c;
		if (mux_open_stream(link.client, NULL, &c) != WH_OK)
			break;
		ck_assert_int_eq(mux_stream_write(c, "x", 1), 1);
		pump(&link);
		ck_assert_int_eq(mux_stream_reset(c, WH_ESTREAM_CLOSED, "changed my mind"), WH_OK);
		pump(&link);
		mux_stream_release(c);
	}
	ck_assert_int_eq(opened, 41); /* until a fifth of the burst is left: a margin */
	ck_assert_uint_eq(mux_stats(link.client)->opens_held_back, 1);
	ck_assert(!mux_is_closed(link.server));
	link_close(&link);
}
END_TEST

/* HANDSHAKEs out of id order (the reference's concurrent opens put 7 on the wire before 5):
 * every id of the peer's parity it never used opens, in any order, each once; an id that
 * was used is refused, and so is one further below the highest than the bookkeeping's
 * window (STREAM_IDS_WINDOW, 1024 ids). Frames held for a skipped id wait for its HANDSHAKE. */
START_TEST(test_handshakes_out_of_order_open)
{
	struct mux_config config = test_config();
	config.accept_backlog = 4096;
	struct link link;
	link_open(&link, &config);
	uint8_t frame[64];
	static const uint32_t order[] = { 7, 5, 1, 11, 3, 9 };
	inject_data(&link, 3, "three", 5); /* before 11 skips it, and before its own HANDSHAKE */
	for (unsigned i = 0; i < 6; i++)
		inject(&link, frame, frame_encode_handshake(frame, sizeof frame, order[i], NULL, 0));
	ck_assert_uint_eq(mux_stats(link.server)->streams_accepted, 6);
	ck_assert_uint_eq(mux_stats(link.server)->errors_sent, 0);
	char buf[16];
	for (unsigned i = 0; i < 6; i++) {
		struct mux_stream *s = mux_accept(link.server);
		ck_assert_ptr_nonnull(s);
		ck_assert_uint_eq(mux_stream_id(s), order[i]);
		if (order[i] == 3) {
			ck_assert_int_eq(mux_stream_read(s, buf, sizeof buf), 5);
			ck_assert_mem_eq(buf, "three", 5);
		}
	}
	/* each id once: a second HANDSHAKE for a used id (live or not) is refused */
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 5, NULL, 0));
	ck_assert_uint_eq(mux_stats(link.server)->errors_sent, 1);
	/* a long jump: the ids it skipped within the window still open, older ones never */
	uint32_t top = 11 + 2 * 2000;
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, top, NULL, 0));
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, top - 2 * 1023, NULL, 0));
	ck_assert_uint_eq(mux_stats(link.server)->streams_accepted, 8);
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, top - 2 * 1024, NULL, 0));
	inject(&link, frame, frame_encode_handshake(frame, sizeof frame, 13, NULL, 0));
	ck_assert_uint_eq(mux_stats(link.server)->streams_accepted, 8);
	ck_assert_uint_eq(mux_stats(link.server)->errors_sent, 3);
	/* frames for an id the window has left behind are not held: it can never open */
	uint64_t early = mux_stats(link.server)->early_frames;
	inject_data(&link, 15, "old", 3);
	ck_assert_uint_eq(mux_stats(link.server)->early_frames, early);
	ck_assert(!mux_is_closed(link.server));
	link_close(&link);
}
END_TEST

/* A reference peer never sends its CLOSE after ours: a stream its owner half-closed and still
 * holds ends as if the CLOSE had come once the peer has said nothing on it for the release
 * linger (its bytes first, then end-of-stream, no error), and the peer is told with ERROR 499.
 * Each frame of the peer on it starts the wait again, and a peer out of credit is waiting
 * for our reader, not silent. */
START_TEST(test_half_closed_stream_ends_when_the_peer_never_closes)
{
	struct mux_config config = test_config();
	config.release_linger = 5.0;
	struct link link;
	link_open(&link, &config);
	mux_timer(link.client, link.now); /* its first PING, out of the way */
	struct mux_stream *c, *blocked;
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &c), WH_OK);
	ck_assert_int_eq(mux_open_stream(link.client, NULL, &blocked), WH_OK);
	ck_assert_int_eq(mux_stream_write(c, "hello", 5), 5);
	ck_assert_int_eq(mux_stream_close_write(c), WH_OK);
	ck_assert_int_eq(mux_stream_close_write(blocked), WH_OK);
	pump(&link);
	struct mux_stream *s = mux_accept(link.server), *t = mux_accept(link.server);
	char buf[16];
	ck_assert_int_eq(mux_stream_read(s, buf, sizeof buf), 5);
	ck_assert_int_eq(mux_stream_read(s, buf, sizeof buf), 0);
	/* the peer answers, as the reference's echo does, and never closes */
	ck_assert_int_eq(mux_stream_write(s, "back", 4), 4);
	pump(&link);
	static uint8_t window[256 * 1024];
	for (size_t sent = 0; sent < sizeof window; pump(&link)) {
		long n = mux_stream_write(t, window, sizeof window - sent);
		sent += n > 0 ? (size_t)n : 0;
	}
	link.now += 4.0;
	ck_assert_int_eq(mux_stream_write(s, "more", 4), 4);
	pump(&link);
	link.now += 4.9;
	mux_timer(link.client, link.now);
	pump(&link);
	ck_assert(!mux_stream_is_finished(c));
	link.now += 0.2;
	ck_assert(mux_timer(link.client, link.now) >= link.now);
	pump(&link);
	ck_assert(mux_stream_is_finished(c));
	ck_assert_int_eq(mux_stream_read(c, buf, sizeof buf), 8);
	ck_assert_mem_eq(buf, "backmore", 8);
	ck_assert_int_eq(mux_stream_read(c, buf, sizeof buf), 0);
	ck_assert_int_eq(mux_stream_error(c), WH_OK);
	ck_assert_uint_eq(mux_stream_remote_code(s), FRAME_ERR_CANCELLED);
	ck_assert_ptr_nonnull(strstr(mux_stream_remote_message(s), "half-closed"));
	ck_assert_uint_eq(mux_stats(link.client)->streams_lingered, 1);
	/* the other filled its window and nobody read it: the peer waits for us, not silent */
	ck_assert(!mux_stream_is_finished(blocked));
	size_t got = 0;
	for (long n; (n = mux_stream_read(blocked, window, sizeof window)) > 0;)
		got += (size_t)n;
	ck_assert_uint_eq(got, sizeof window);
	pump(&link); /* its credit goes back: from now, the peer could send */
	link.now += 5.1;
	mux_timer(link.client, link.now);
	pump(&link);
	ck_assert(mux_stream_is_finished(blocked));
	ck_assert_int_eq(mux_stream_read(blocked, buf, sizeof buf), 0);
	ck_assert(!mux_is_closed(link.client));
	link_close(&link);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("mux");
	TCase *data = tcase_create("data");
	tcase_set_timeout(data, 120);
	tcase_add_test(data, test_echo_one_large_stream);
	tcase_add_test(data, test_echo_many_streams_partial_writes);
	tcase_add_test(data, test_echo_empty_streams);
	tcase_add_test(data, test_builtin_echo_returns_every_byte);
	tcase_add_test(data, test_builtin_echo_holds_one_window_for_a_peer_that_does_not_read);
	tcase_add_test(data, test_store_rate_pauses_a_peer_that_fills_stores);
	tcase_add_test(data, test_store_rate_lets_bytes_that_pass_through);
	tcase_add_test(data, test_frame_rate_pauses_a_peer_of_tiny_frames);
	tcase_add_test(data, test_half_close_keeps_other_direction);
	tcase_add_test(data, test_close_never_overtakes_data);
	tcase_add_test(data, test_ids_used_up_rotate_the_connection);
	tcase_add_test(data, test_small_frame_waits_behind_one_bulk_frame);
	tcase_add_test(data, test_small_frame_overtakes_a_bulk_frame_not_started);
	tcase_add_test(data, test_held_output_is_gathered_again_unchanged);
	tcase_add_test(data, test_lone_bulk_stream_is_not_interactive);
	suite_add_tcase(suite, data);

	TCase *errors = tcase_create("errors");
	tcase_add_test(errors, test_reset_carries_code_and_message);
	tcase_add_test(errors, test_io_failure_resets_one_stream);
	tcase_add_test(errors, test_accept_backlog);
	tcase_add_test(errors, test_duplicate_handshake_is_a_stream_error);
	tcase_add_test(errors, test_handshake_client_address);
	tcase_add_test(errors, test_window_violation_is_a_stream_error);
	tcase_add_test(errors, test_malformed_frame_ends_one_stream);
	tcase_add_test(errors, test_unknown_stream_frames_are_dropped);
	tcase_add_test(errors, test_data_before_handshake_is_held);
	tcase_add_test(errors, test_handshakes_out_of_order_open);
	tcase_add_test(errors, test_malformed_handshake_for_new_id_is_refused);
	tcase_add_test(errors, test_long_error_message_is_cut_short);
	tcase_add_test(errors, test_fatal_garbage_closes_connection);
	tcase_add_test(errors, test_limits_and_arguments);
	suite_add_tcase(suite, errors);

	TCase *flow = tcase_create("flow");
	tcase_set_timeout(flow, 120);
	tcase_add_test(flow, test_slow_reader_bounded_others_flow);
	tcase_add_test(flow, test_released_stream_keeps_peer_flowing);
	tcase_add_test(flow, test_released_stream_lingers_then_resets);
	tcase_add_test(flow, test_half_closed_stream_ends_when_the_peer_never_closes);
	tcase_add_test(flow, test_window_grows_when_it_limits);
	tcase_add_test(flow, test_window_growth_respects_budget);
	tcase_add_test(flow, test_keepalive_ping_pong_and_timeout);
	tcase_add_test(flow, test_keepalive_spares_a_peer_that_keeps_sending);
	tcase_add_test(flow, test_round_robin_interactive_not_starved);
	tcase_add_test(flow, test_handshake_precedes_data);
	tcase_add_test(flow, test_control_frames_never_dropped);
	tcase_add_test(flow, test_rapid_reset_closes_connection);
	tcase_add_test(flow, test_rapid_reset_bound_can_be_off);
	tcase_add_test(flow, test_refused_opens_count_as_rapid_reset);
	tcase_add_test(flow, test_oversized_handshakes_count_as_rapid_reset);
	tcase_add_test(flow, test_never_opened_ids_count_as_rapid_reset);
	tcase_add_test(flow, test_early_resets_count_as_rapid_reset);
	tcase_add_test(flow, test_ping_flood_closes_connection);
	tcase_add_test(flow, test_noop_flood_closes_connection);
	tcase_add_test(flow, test_noop_rate_spares_the_pong_we_asked_for);
	tcase_add_test(flow, test_data_for_ended_stream_counts_as_noop);
	tcase_add_test(flow, test_data_in_flight_after_our_reset_is_spared);
	tcase_add_test(flow, test_useless_frames_on_an_open_stream_count);
	tcase_add_test(flow, test_held_frames_count_as_noop);
	tcase_add_test(flow, test_own_opens_held_back_before_peer_rate);
	tcase_add_test(flow, test_idle_accepted_connection_closed);
	tcase_add_test(flow, test_unread_answers_are_bounded);
	tcase_add_test(flow, test_budget_keeps_local_reserve);
	tcase_add_test(flow, test_budget_account_shared_by_a_peers_connections);
	tcase_add_test(flow, test_send_buffer_is_charged);
	suite_add_tcase(suite, flow);

	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
