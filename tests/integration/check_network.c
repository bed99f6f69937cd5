/* Integration tests over real loopback TCP: real broker processes, the reference-like peer,
 * our mux and pool in this process on a libev loop. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "harness.h"
#include "pool.h"

/* ---- helpers ------------------------------------------------------------------------ */

struct counter_goal {
	int *counter;
	int goal;
};

static bool counter_reached(void *arg)
{
	struct counter_goal *g = arg;
	return *g->counter >= g->goal;
}

static struct pool *pool_to(struct ev_loop *loop, unsigned port, struct pool_config *config)
{
	return test_pool_to(loop, "127.0.0.1", port, config);
}

static struct mux_stream *open_stream(struct ev_loop *loop, struct pool *pool, const char *service)
{
	int error;
	struct mux_stream *stream = test_pool_open(loop, pool, service, 10, &error);
	ck_assert_int_eq(error, WH_OK);
	return stream;
}

/* n streams of random sizes up to max_size, all echoed and checked. */
static void echo_many(struct ev_loop *loop, struct pool *pool, int n, size_t max_size, double timeout)
{
	struct test_sender *senders = calloc((size_t)n, sizeof *senders);
	int done = 0;
	unsigned seed = 1234;
	for (int i = 0; i < n; i++) {
		size_t size = max_size ? (size_t)rand_r(&seed) % max_size : 0;
		test_sender_start(&senders[i], open_stream(loop, pool, "echo"), (unsigned)i + 1, size, &done);
	}
	struct counter_goal goal = { &done, n };
	ck_assert_msg(run_until(loop, counter_reached, &goal, timeout), "%d of %d streams ended", done, n);
	for (int i = 0; i < n; i++)
		ck_assert_msg(test_sender_ok(&senders[i]), "stream %d: %zu/%zu back, error %s, mismatch %d",
			      i, senders[i].received, senders[i].size, wh_strerror(senders[i].error),
			      senders[i].mismatch);
	free(senders);
}

static struct pool_config quick_pool(void)
{
	struct pool_config config;
	pool_config_default(&config);
	config.connect_timeout = 5;
	return config;
}

/* ---- interop with a reference-behaving peer, both roles ------------------------------- */

START_TEST(test_reference_peer_dials_our_broker)
{
	struct process broker, peer;
	ck_assert(broker_spawn(&broker, NULL));
	char port[16];
	snprintf(port, sizeof port, "%u", broker.port);
	const char *args[] = { "dial", "127.0.0.1", port, "100", "1048576", NULL };
	ck_assert(refpeer_spawn(&peer, args, false));
	int status = process_wait(&peer, 60);
	if (status != 0) {
		process_dump_log(&peer);
		process_dump_log(&broker);
	}
	ck_assert_int_eq(status, 0);
	process_stop(&peer, SIGTERM);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

START_TEST(test_we_dial_the_reference_peer)
{
	struct process peer;
	const char *args[] = { "serve", "@PORT_FILE@", NULL };
	ck_assert(refpeer_spawn(&peer, args, true));
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct pool_config config = quick_pool();
	struct pool *pool = pool_to(loop, peer.port, &config);
	echo_many(loop, pool, 50, 2u << 20, 60);
	pool_free(pool); /* closes the connection: the peer checks every stream ended cleanly */
	int status = process_wait(&peer, 10);
	if (status != 0)
		process_dump_log(&peer);
	ck_assert_int_eq(status, 0);
	ev_loop_destroy(loop);
}
END_TEST

/* ---- our broker, many streams, errors ------------------------------------------------- */

START_TEST(test_thousands_of_streams_through_broker)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct pool_config config = quick_pool();
	config.busy_streams = 100000; /* one connection carries them all */
	struct pool *pool = pool_to(loop, broker.port, &config);
	echo_many(loop, pool, 2000, 64 * 1024, 120);
	ck_assert_uint_eq(pool_len(pool), 1);
	const struct mux_stats *stats = mux_stats(conn_mux(pool_get(pool)));
	ck_assert_uint_eq(stats->malformed_frames, 0);
	ck_assert_uint_eq(stats->errors_received, 0);
	pool_free(pool);
	ev_loop_destroy(loop);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

static bool stream_finished(void *arg)
{
	return mux_stream_is_finished(arg);
}

START_TEST(test_unknown_service_is_a_stream_error)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct pool_config config = quick_pool();
	struct pool *pool = pool_to(loop, broker.port, &config);
	struct mux_stream *s = open_stream(loop, pool, "no-such-service");
	ck_assert(run_until(loop, stream_finished, s, 10));
	ck_assert_int_eq(mux_stream_error(s), WH_ENO_SERVICE);
	ck_assert_uint_eq(mux_stream_remote_code(s), 404);
	ck_assert_str_eq(mux_stream_remote_message(s), "no listener for that service");
	mux_stream_release(s);
	echo_many(loop, pool, 3, 1000, 10); /* the connection is fine */
	pool_free(pool);
	ev_loop_destroy(loop);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0); /* a sanitizer's report exits non-zero */
}
END_TEST

/* Raw bytes to the broker: a malformed frame ends its stream, the connection lives on. */
START_TEST(test_broker_survives_malformed_frames)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)broker.port),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	uint8_t out[256];
	size_t n = 0;
	n += (size_t)frame_encode_handshake(out + n, 64, 1, "echo", 4);
	struct frame_header bad = { 1, 0x42, 1, 2 }; /* an unknown type on stream 1 */
	frame_header_pack(out + n, &bad);
	n += FRAME_HEADER_SIZE;
	out[n++] = 'x';
	out[n++] = 'y';
	n += (size_t)frame_encode_handshake(out + n, 64, 3, "echo", 4);
	n += (size_t)frame_encode_data(out + n, 64, 3, "alive", 5);
	n += (size_t)frame_encode_close(out + n, 64, 3);
	ck_assert_int_eq(write(fd, out, n), (ssize_t)n);
	/* expect: ERROR 400 on stream 1, then "alive" echoed on 3 and its CLOSE */
	struct frame_decoder decoder;
	frame_decoder_init(&decoder, 0);
	bool error_on_1 = false, echoed = false, closed_3 = false;
	uint8_t in[4096];
	while (!(error_on_1 && echoed && closed_3)) {
		struct timeval tv = { 10, 0 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		ssize_t got = read(fd, in, sizeof in);
		ck_assert_int_gt(got, 0);
		size_t offset = 0;
		while (offset < (size_t)got) {
			struct frame_event ev;
			offset += frame_decoder_feed(&decoder, in + offset, (size_t)got - offset, &ev);
			if (ev.kind == FRAME_EVENT_CONTROL && ev.header.type == FRAME_ERROR) {
				uint32_t code;
				const char *msg;
				size_t len;
				frame_parse_error(&ev.header, ev.payload, ev.payload_length, &code, &msg, &len);
				ck_assert_uint_eq(ev.header.stream_id, 1);
				ck_assert_uint_eq(code, 400);
				error_on_1 = true;
			}
			if (ev.kind == FRAME_EVENT_DATA_CHUNK && ev.header.stream_id == 3) {
				ck_assert_mem_eq(ev.payload, "alive", 5);
				echoed = true;
			}
			if (ev.kind == FRAME_EVENT_CONTROL && ev.header.type == FRAME_CLOSE)
				closed_3 = ev.header.stream_id == 3;
		}
	}
	close(fd);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

/* A reference client can send a stream's first DATA (even its CLOSE) before the stream's
 * HANDSHAKE (WIRE-NOTES weakness 4). 64-byte request/response streams opened that way, to the
 * default service (echo, empty HANDSHAKE as the reference sends): every byte comes back. */
START_TEST(test_data_before_handshake_is_served)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)broker.port),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	enum { STREAMS = 100 };
	uint8_t request[64];
	static uint8_t out[STREAMS * (3 * FRAME_HEADER_SIZE + 64)];
	size_t n = 0;
	for (uint32_t i = 0; i < STREAMS; i++) {
		uint32_t id = 2 * i + 1;
		for (size_t k = 0; k < sizeof request; k++)
			request[k] = harness_pattern(id, k);
		n += (size_t)frame_encode_data(out + n, sizeof out - n, id, request, sizeof request);
		if (i % 2) /* half of them half-close before they even open */
			n += (size_t)frame_encode_close(out + n, sizeof out - n, id);
		n += (size_t)frame_encode_handshake(out + n, sizeof out - n, id, NULL, 0);
	}
	ck_assert_int_eq(write(fd, out, n), (ssize_t)n);
	struct frame_decoder decoder;
	frame_decoder_init(&decoder, 0);
	static size_t echoed[2 * STREAMS + 2];
	unsigned complete = 0;
	uint8_t in[65536];
	struct timeval tv = { 10, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	while (complete < STREAMS) {
		ssize_t got = read(fd, in, sizeof in);
		ck_assert_msg(got > 0, "%u of %d streams echoed", complete, STREAMS);
		size_t offset = 0;
		while (offset < (size_t)got) {
			struct frame_event ev;
			offset += frame_decoder_feed(&decoder, in + offset, (size_t)got - offset, &ev);
			ck_assert_msg(!(ev.kind == FRAME_EVENT_CONTROL && ev.header.type == FRAME_ERROR),
				      "ERROR on stream %u", ev.header.stream_id);
			if (ev.kind != FRAME_EVENT_DATA_CHUNK)
				continue;
			uint32_t id = ev.header.stream_id;
			ck_assert_uint_lt(id, 2 * STREAMS + 2);
			for (size_t k = 0; k < ev.payload_length; k++)
				ck_assert_uint_eq(ev.payload[k], harness_pattern(id, echoed[id] + k));
			echoed[id] += ev.payload_length;
			if (echoed[id] == sizeof request)
				complete++;
		}
	}
	close(fd);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

/* ---- keep-alive against a peer that stops answering ------------------------------------ */

struct closed_record {
	bool closed;
	int error;
	int stream_error;
};

static void record_closed(struct mux *mux, int error, void *user)
{
	struct closed_record *r = user;
	(void)mux;
	r->closed = true;
	r->error = error;
}

static void record_stream_error(struct mux_stream *stream, enum mux_stream_event event, void *user)
{
	if (event == MUX_STREAM_ERROR)
		((struct closed_record *)user)->stream_error = mux_stream_error(stream);
}

static bool record_is_closed(void *arg)
{
	return ((struct closed_record *)arg)->closed;
}

/* A connection of our own (not pooled), so the test decides when it is freed. */
static struct conn *dial_conn(struct ev_loop *loop, unsigned port, const struct mux_config *config,
			      const struct mux_callbacks *callbacks, void *user)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	connect(fd, (struct sockaddr *)&addr, sizeof addr); /* EINPROGRESS; the conn waits for it */
	return conn_new(loop, fd, true, config, NULL, callbacks, user);
}

START_TEST(test_keepalive_timeout_when_peer_stopped)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct mux_config config;
	mux_config_default(&config);
	config.keepalive_interval = 0.2;
	config.keepalive_timeout = 0.5;
	struct closed_record record = { 0 };
	struct mux_callbacks callbacks = { .on_closed = record_closed };
	struct conn *conn = dial_conn(loop, broker.port, &config, &callbacks, &record);
	struct mux_stream *s;
	ck_assert_int_eq(mux_open_stream(conn_mux(conn), "echo", &s), WH_OK);
	mux_stream_set_handler(s, record_stream_error, &record);
	run_for(loop, 0.6); /* PING rounds answered */
	ck_assert(!record.closed);
	ck_assert(mux_stats(conn_mux(conn))->rtt > 0);
	kill(broker.pid, SIGSTOP);
	ck_assert(run_until(loop, record_is_closed, &record, 5));
	ck_assert_int_eq(record.error, WH_EKEEPALIVE_TIMEOUT);
	ck_assert_int_eq(record.stream_error, WH_EKEEPALIVE_TIMEOUT); /* the stream learns why */
	kill(broker.pid, SIGCONT);
	conn_free(conn);
	ev_loop_destroy(loop);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0); /* a sanitizer's report exits non-zero */
}
END_TEST

static Suite *network_suite(void)
{
	Suite *suite = suite_create("network");
	TCase *tc = tcase_create("network");
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_reference_peer_dials_our_broker);
	tcase_add_test(tc, test_we_dial_the_reference_peer);
	tcase_add_test(tc, test_thousands_of_streams_through_broker);
	tcase_add_test(tc, test_unknown_service_is_a_stream_error);
	tcase_add_test(tc, test_broker_survives_malformed_frames);
	tcase_add_test(tc, test_data_before_handshake_is_served);
	tcase_add_test(tc, test_keepalive_timeout_when_peer_stopped);
	suite_add_tcase(suite, tc);
	return suite;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	SRunner *runner = srunner_create(network_suite());
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
