/* Integration tests of the connection pool against real broker processes over loopback TCP. */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "harness.h"
#include "json_lite.h"
#include "pool.h"

struct pool_goal {
	struct pool *pool;
	size_t len;
	uint64_t failures;
};

static bool pool_len_is(void *arg)
{
	struct pool_goal *g = arg;
	return pool_len(g->pool) == g->len;
}

static bool health_failures_reached(void *arg)
{
	struct pool_goal *g = arg;
	struct pool_stats stats;
	pool_get_stats(g->pool, &stats);
	return stats.health_check_failures >= g->failures;
}

struct opened {
	struct mux_stream *stream;
	int error;
};

static struct opened open_wait(struct ev_loop *loop, struct pool *pool, double timeout)
{
	struct opened o;
	o.stream = test_pool_open(loop, pool, "echo", timeout, &o.error);
	return o;
}

static struct pool *pool_to(struct ev_loop *loop, unsigned port, const struct pool_config *config)
{
	return test_pool_to(loop, "127.0.0.1", port, config);
}

static struct pool_config test_pool_config(void)
{
	struct pool_config config;
	pool_config_default(&config);
	config.mux.keepalive_interval = 0;
	config.connect_timeout = 2;
	return config;
}

static bool counter_at_least(void *arg)
{
	int *counter = arg;
	return counter[0] >= counter[1];
}

/* One checked echo through the pool proves it works end to end. */
static void echo_once(struct ev_loop *loop, struct pool *pool)
{
	struct opened o = open_wait(loop, pool, 5);
	ck_assert_int_eq(o.error, WH_OK);
	struct test_sender sender;
	int done[2] = { 0, 1 };
	test_sender_start(&sender, o.stream, 9, 100000, &done[0]);
	ck_assert(run_until(loop, counter_at_least, done, 10));
	ck_assert(test_sender_ok(&sender));
}

START_TEST(test_warmup_reaches_min_size)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct pool_config config = test_pool_config();
	config.min_size = 3;
	config.max_size = 5;
	/* a name, not an address: resolved on the helper thread; if it yields ::1 first, the
	 * dial falls through to 127.0.0.1 where the broker listens */
	struct pool *pool = test_pool_to(loop, "localhost", broker.port, &config);
	ck_assert_int_eq(pool_warmup(pool), WH_OK);
	struct pool_goal goal = { pool, 3, 0 };
	ck_assert(run_until(loop, pool_len_is, &goal, 5));
	run_for(loop, 0.2); /* and no more than that */
	ck_assert_uint_eq(pool_len(pool), 3);
	struct pool_stats stats;
	pool_get_stats(pool, &stats);
	ck_assert_int_eq(stats.total_connections, 3);
	ck_assert_int_eq(stats.idle_connections, 3);
	ck_assert_int_eq(stats.failed_connections, 0);
	echo_once(loop, pool);
	pool_free(pool);
	ev_loop_destroy(loop);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0); /* a sanitizer's report exits non-zero */
}
END_TEST

START_TEST(test_grows_to_max_when_busy_then_reaps_idle)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct pool_config config = test_pool_config();
	config.min_size = 1;
	config.max_size = 3;
	config.busy_streams = 2;
	config.max_idle_time = 0.3;
	struct pool *pool = pool_to(loop, broker.port, &config);
	struct mux_stream *streams[12];
	for (int i = 0; i < 12; i++) {
		struct opened o = open_wait(loop, pool, 5);
		ck_assert_int_eq(o.error, WH_OK);
		streams[i] = o.stream;
		run_for(loop, 0.02); /* a dial started by a busy pool gets its turn */
	}
	struct pool_goal goal = { pool, 3, 0 };
	ck_assert(run_until(loop, pool_len_is, &goal, 5));
	ck_assert_uint_eq(pool_len(pool), 3); /* never above max_size */
	struct pool_stats stats;
	pool_get_stats(pool, &stats);
	ck_assert_int_eq(stats.total_streams, 12);
	ck_assert_int_eq(stats.active_connections, 3);
	/* end every stream: the pool shrinks back to min_size after max_idle_time */
	for (int i = 0; i < 12; i++) {
		mux_stream_close_write(streams[i]);
		mux_stream_release(streams[i]);
	}
	goal.len = 1;
	ck_assert(run_until(loop, pool_len_is, &goal, 5));
	run_for(loop, 0.5);
	ck_assert_uint_eq(pool_len(pool), 1); /* min_size stays */
	echo_once(loop, pool);
	pool_free(pool);
	ev_loop_destroy(loop);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0); /* a sanitizer's report exits non-zero */
}
END_TEST

START_TEST(test_health_check_failure_replaces_connection)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct pool_config config = test_pool_config();
	config.health_check_interval = 0.2;
	config.mux.keepalive_timeout = 0.4;
	config.backoff_max = 0.2;
	struct pool *pool = pool_to(loop, broker.port, &config);
	pool_warmup(pool);
	struct pool_goal goal = { pool, 1, 1 };
	ck_assert(run_until(loop, pool_len_is, &goal, 5));
	run_for(loop, 0.5); /* healthy checks pass */
	struct pool_stats stats;
	pool_get_stats(pool, &stats);
	ck_assert_int_eq(stats.health_check_failures, 0);
	kill(broker.pid, SIGSTOP);
	ck_assert(run_until(loop, health_failures_reached, &goal, 5));
	kill(broker.pid, SIGCONT);
	/* replaced: a working connection again */
	ck_assert(run_until(loop, pool_len_is, &goal, 5));
	echo_once(loop, pool);
	pool_get_stats(pool, &stats);
	ck_assert_int_ge(stats.total_connections, 2);
	pool_free(pool);
	ev_loop_destroy(loop);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0); /* a sanitizer's report exits non-zero */
}
END_TEST

START_TEST(test_dial_failures_back_off_then_recover)
{
	/* learn a free port from a broker, then stop it: dials there are refused */
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	unsigned port = broker.port;
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0); /* a sanitizer's report exits non-zero */

	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct pool_config config = test_pool_config();
	config.backoff_initial = 0.05;
	config.backoff_max = 0.4;
	config.connect_timeout = 0.5;
	struct pool *pool = pool_to(loop, port, &config);
	pool_warmup(pool);
	run_for(loop, 1.0);
	struct pool_stats stats;
	pool_get_stats(pool, &stats);
	/* without back-off it would retry every 50 ms tick (~20 times) */
	ck_assert_int_ge(stats.failed_connections, 3);
	ck_assert_int_le(stats.failed_connections, 8);
	ck_assert_uint_eq(pool_len(pool), 0);
	struct opened o = open_wait(loop, pool, 2);
	ck_assert_int_eq(o.error, WH_ETIMEOUT);

	char listen[64];
	snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
	const char *args[] = { "--listen", listen, NULL };
	ck_assert(broker_spawn(&broker, args));
	struct pool_goal goal = { pool, 1, 0 };
	ck_assert(run_until(loop, pool_len_is, &goal, 5));
	echo_once(loop, pool);
	pool_free(pool);
	ev_loop_destroy(loop);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0); /* a sanitizer's report exits non-zero */
}
END_TEST

/* A number from `wormhole-ctl --json VIEW` of a broker (its first row's column key), or -1. */
static double ctl_number(const struct process *broker, const char *view, const char *key)
{
	char socket[400], output[65536];
	snprintf(socket, sizeof socket, "%s/control.sock", broker->dir);
	const char *args[] = { "-s", socket, "--json", view, NULL };
	if (process_run("ctl/wormhole-ctl", args, output, sizeof output) != 0)
		return -1;
	size_t at = 0;
	struct json *doc = json_parse(output, &at);
	const struct json *rows = json_get(doc, view);
	double value = rows && rows->kind == JSON_ARRAY && rows->count > 0 ? json_number(rows->items[0], key) : -1;
	json_free(doc);
	return value == value ? value : -1; /* NAN: missing */
}

static bool dial_failed_once(void *arg)
{
	return ctl_number(arg, "peers", "failed_connections") >= 1;
}

/* A broker at its per-address cap accepts and closes at once: the pool that dials it must
 * count each such connection as a failed dial and back off, not redial in a tight loop
 * (it did: ~23,000 connections a second, failed_connections 0). */
START_TEST(test_capped_far_broker_is_backed_off)
{
	struct process a, b;
	const char *a_args[] = { "--max-connections-per-address", "8", NULL };
	ck_assert(broker_spawn(&a, a_args));
	char peer[64];
	snprintf(peer, sizeof peer, "a=127.0.0.1:%u", a.port);
	const char *b_args[] = { "--peer", peer, "--pool-min", "20", "--pool-max", "20", NULL };
	ck_assert(broker_spawn(&b, b_args));
	bool failed = poll_until(dial_failed_once, &b, 10);
	double capped_before = ctl_number(&a, "status", "connections_capped");
	struct timespec pause = { 2, 0 }; /* the window the dial rate is measured over */
	nanosleep(&pause, NULL);
	double capped_after = ctl_number(&a, "status", "connections_capped");
	double b_failed = ctl_number(&b, "peers", "failed_connections");
	fprintf(stderr, "capped: %.0f then %.0f 2 s later; b's failed_connections %.0f\n", capped_before,
		capped_after, b_failed);
	ck_assert_msg(failed, "b never counted a failed dial");
	ck_assert(capped_before >= 1);
	/* back-off from 0.1 s, doubling: a handful in 2 s; without it, tens of thousands */
	ck_assert_double_le(capped_after - capped_before, 40);
	ck_assert_double_ge(b_failed, 1);
	ck_assert_int_eq(process_stop(&b, SIGTERM), 0); /* a sanitizer's report exits non-zero */
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *suite = suite_create("pool");
	TCase *tc = tcase_create("pool");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_warmup_reaches_min_size);
	tcase_add_test(tc, test_grows_to_max_when_busy_then_reaps_idle);
	tcase_add_test(tc, test_health_check_failure_replaces_connection);
	tcase_add_test(tc, test_dial_failures_back_off_then_recover);
	tcase_add_test(tc, test_capped_far_broker_is_backed_off);
	suite_add_tcase(suite, tc);
	return suite;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	SRunner *runner = srunner_create(pool_suite());
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
