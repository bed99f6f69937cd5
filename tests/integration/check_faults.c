/* Faults across two hosts: brokers in two network namespaces joined by a 20 ms link
 * (tests/integration/delay_link.c), an echoing app on the far host (examples/wh-echo), a
 * checking sender on the near one (examples/wh-send). Each case injects one fault in the
 * middle of a transfer: a broker stopped (SIGSTOP) for longer than the keep-alive timeout
 * and resumed, a broker killed and restarted, an app killed, the link cut for less and for
 * more than the keep-alive timeout.
 *
 * What must hold, every time: every stream ends, with all its bytes verified or with an
 * explicit error at both ends, within FAULT_BOUND seconds; no process hangs; afterwards the
 * brokers' descriptors are back to where they were, their CPU is idle, and a new stream
 * crosses the link intact. Needs root (namespaces, tun); skipped otherwise.
 */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "delay_link.h"
#include "harness.h"

#define KEEPALIVE "1"         /* s between PINGs */
#define KEEPALIVE_TIMEOUT "2" /* s without a PONG before a connection is declared dead */
#define FAULT_BOUND 30.0      /* s: every stream has ended, at both ends, after the fault */
#define STREAMS "4"
#define ENDLESS "100000000000" /* bytes: a transfer still running whenever the fault comes */

#ifdef WH_SANITIZERS
#define IDLE_TICKS_MAX 10
#define RSS_SLACK (640l << 10) /* ASan holds freed memory (256 MiB quarantine) and shadow */
#else
#define IDLE_TICKS_MAX 5       /* clock ticks (1/100 s) of CPU in a second */
#define RSS_SLACK 4096l        /* KiB: allocator slack after streams came and went */
#endif

struct hosts {
	char certs[64]; /* TLS between the hosts, as a deployment off loopback has it */
	struct harness_tls far_tls, near_tls;
	struct delay_link link;
	struct process near, far; /* near keeps a pool to far (peer name "far") */
	unsigned far_port;
	int near_fds, far_fds;
	long near_rss, far_rss; /* KiB */
};

static const char *const broker_args[] = { "--keepalive", KEEPALIVE, "--keepalive-timeout",
					   KEEPALIVE_TIMEOUT, NULL };

static void spawn_far(struct hosts *h, unsigned port)
{
	char listen[64];
	snprintf(listen, sizeof listen, "%s:%u", h->link.far_addr, port);
	const char *const *tls = harness_tls_args(&h->far_tls, h->certs, "far");
	const char *args[] = { "--listen", listen, broker_args[0], broker_args[1], broker_args[2],
			       broker_args[3], tls[0], tls[1], tls[2], tls[3], tls[4], tls[5], NULL };
	ck_assert(delay_link_enter(&h->link, DELAY_LINK_FAR));
	ck_assert(broker_spawn(&h->far, args));
	ck_assert(delay_link_enter(&h->link, DELAY_LINK_HOME));
	h->far_port = h->far.port;
}

static void spawn_near(struct hosts *h)
{
	char peer[64];
	snprintf(peer, sizeof peer, "far=%s:%u", h->link.far_addr, h->far_port);
	const char *const *tls = harness_tls_args(&h->near_tls, h->certs, "near");
	const char *args[] = { "--peer", peer, broker_args[0], broker_args[1], broker_args[2],
			       broker_args[3], tls[0], tls[1], tls[2], tls[3], tls[4], tls[5], NULL };
	ck_assert(delay_link_enter(&h->link, DELAY_LINK_NEAR));
	ck_assert(broker_spawn(&h->near, args));
	ck_assert(delay_link_enter(&h->link, DELAY_LINK_HOME));
}

/* A checked stream from the near host to the far broker's echo: the pool (re)connected and
 * the path carries bytes intact. */
static void cross_the_link(struct hosts *h, unsigned seed)
{
	wh_client *client = app_attach(&h->near);
	wh_stream *s = NULL;
	int rc = WH_ETIMEOUT;
	/* after a fault the pool may still be backing off from its failed dials */
	for (int i = 0; i < 100 && rc != WH_OK; i++) {
		rc = wh_open(client, "far", "echo", 10000, &s);
		if (rc == WH_OK) {
			char byte = 'x';
			if (wh_write(s, &byte, 1) != 1 || wh_read(s, &byte, 1) != 1) {
				wh_close(s);
				rc = WH_ETIMEOUT;
			}
		}
		if (rc != WH_OK)
			usleep(100000); /* retry until the bounded count runs out */
	}
	ck_assert_msg(rc == WH_OK, "no stream crosses the link: %s", wh_strerror(rc));
	app_echo_check(s, 1u << 20, seed);
	wh_close(s);
	wh_client_detach(client);
}

static void hosts_start(struct hosts *h)
{
	memset(h, 0, sizeof *h);
	harness_tempdir(h->certs, sizeof h->certs);
	ck_assert(harness_make_certs(h->certs, "far near"));
	ck_assert(delay_link_start(&h->link, 0.010));
	spawn_far(h, 0);
	spawn_near(h);
	cross_the_link(h, 1);
	h->near_fds = process_fd_count(&h->near);
	h->far_fds = process_fd_count(&h->far);
	h->near_rss = process_rss_kib(&h->near);
	h->far_rss = process_rss_kib(&h->far);
}

static void hosts_stop(struct hosts *h)
{
	ck_assert_int_eq(process_stop(&h->near, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&h->far, SIGTERM), 0);
	delay_link_stop(&h->link);
	harness_cleanup_dir(h->certs);
}

static bool fds_at_most(const struct process *p, int count, double timeout)
{
	int64_t deadline = wh_now_ns() + (int64_t)(timeout * 1e9);
	int now;
	while (((now = process_fd_count(p)) < 0 || now > count) && wh_now_ns() < deadline)
		usleep(20000); /* polling a condition with a deadline */
	return now >= 0 && now <= count;
}

static bool rss_at_most(const struct process *p, long kib, double timeout)
{
	int64_t deadline = wh_now_ns() + (int64_t)(timeout * 1e9);
	long now;
	while (((now = process_rss_kib(p)) < 0 || now > kib) && wh_now_ns() < deadline)
		usleep(50000); /* polling a condition with a deadline */
	return now >= 0 && now <= kib;
}

/* Both brokers back where they were: descriptors, memory (within the broker's trim interval
 * and RSS_SLACK), idle CPU, and a stream across the link. */
static void hosts_recovered(struct hosts *h, const char *fault)
{
	cross_the_link(h, 2);
	ck_assert_msg(fds_at_most(&h->near, h->near_fds, 10), "%s: near broker fds %d, before %d",
		      fault, process_fd_count(&h->near), h->near_fds);
	ck_assert_msg(fds_at_most(&h->far, h->far_fds, 10), "%s: far broker fds %d, before %d", fault,
		      process_fd_count(&h->far), h->far_fds);
	ck_assert_msg(rss_at_most(&h->near, h->near_rss + RSS_SLACK, 12), "%s: near broker RSS %ld KiB, "
		      "before %ld", fault, process_rss_kib(&h->near), h->near_rss);
	ck_assert_msg(rss_at_most(&h->far, h->far_rss + RSS_SLACK, 12), "%s: far broker RSS %ld KiB, "
		      "before %ld", fault, process_rss_kib(&h->far), h->far_rss);
	long near_start = process_cpu_ticks(&h->near), far_start = process_cpu_ticks(&h->far);
	usleep(1000000); /* a measurement window */
	long near_ticks = process_cpu_ticks(&h->near) - near_start, far_ticks = process_cpu_ticks(&h->far) - far_start;
	fprintf(stderr, "fault %-22s recovered: fds near %d far %d, rss near %+ld far %+ld KiB, "
		"cpu near %ld far %ld ticks/s\n", fault, process_fd_count(&h->near),
		process_fd_count(&h->far), process_rss_kib(&h->near) - h->near_rss,
		process_rss_kib(&h->far) - h->far_rss, near_ticks, far_ticks);
	ck_assert_msg(near_ticks <= IDLE_TICKS_MAX && far_ticks <= IDLE_TICKS_MAX,
		      "%s: CPU not idle after: near %ld, far %ld ticks/s", fault, near_ticks, far_ticks);
}

/* The apps of a transfer: wh-echo on the far host serving STREAMS streams, wh-send on the
 * near one sending `bytes` on each and checking the echo. */
struct transfer {
	struct process echo, send;
};

static void transfer_start(struct hosts *h, struct transfer *t, const char *service, const char *bytes)
{
	/* it serves the sender's streams and the one probe that finds it listening */
	char serve[16];
	snprintf(serve, sizeof serve, "%d", atoi(STREAMS) + 1);
	const char *echo_args[] = { "-s", h->far.socket_path, "-n", serve, service, NULL };
	ck_assert(app_spawn(&t->echo, "examples/wh-echo", echo_args));
	t->echo.keep_log = true; /* its outcome lines are read after it exits */
	wh_client *probe = app_attach(&h->far);
	wh_stream *s;
	int rc = WH_ENO_SERVICE;
	for (int i = 0; i < 200 && (rc = wh_open(probe, WH_PEER_LOCAL, service, 1000, &s)) != WH_OK; i++)
		usleep(10000); /* until the echo app listens */
	ck_assert_int_eq(rc, WH_OK);
	wh_close(s);
	wh_client_detach(probe);
	const char *send_args[] = { "-s", h->near.socket_path, "-n", STREAMS, "-b", bytes, "far", service, NULL };
	ck_assert(app_spawn(&t->send, "examples/wh-send", send_args));
	t->send.keep_log = true;
	usleep(500000); /* let the transfer get under way before the fault */
}

/* Both apps ended within the bound: the sender with every stream verified (status 0) or
 * with the failed ones reported; the echo app with an outcome for each of its streams. */
static void transfer_ended(struct transfer *t, const char *fault, bool must_succeed)
{
	int sent = process_wait(&t->send, FAULT_BOUND);
	int echoed = process_wait(&t->echo, FAULT_BOUND);
	if (sent != 0 || echoed != 0) {
		process_dump_log(&t->send);
		process_dump_log(&t->echo);
	}
	ck_assert_msg(sent >= 0 && sent < 128, "%s: the sender hung or died (%d)", fault, sent);
	ck_assert_msg(echoed >= 0 && echoed < 128, "%s: the echo app hung or died (%d)", fault, echoed);
	if (must_succeed && sent != 0)
		process_dump_log(&t->send);
	if (must_succeed)
		ck_assert_msg(sent == 0, "%s: streams failed that should have survived", fault);
	else
		ck_assert_msg(sent == 1 && process_log_count(&t->send, "bytes back") >= 1,
			      "%s: the sender reported no failed stream", fault);
	if (echoed == 0)
		ck_assert_int_eq(process_log_count(&t->echo, " done: "), atoi(STREAMS) + 1);
	process_stop(&t->send, SIGKILL);
	process_stop(&t->echo, SIGKILL);
}

static void stop_broker_for(struct process *broker, double seconds)
{
	kill(broker->pid, SIGSTOP);
	usleep((useconds_t)(seconds * 1e6)); /* the fault's own length */
	kill(broker->pid, SIGCONT);
}

START_TEST(test_near_broker_stopped)
{
	struct hosts h;
	hosts_start(&h);
	struct transfer t;
	transfer_start(&h, &t, "svc", ENDLESS);
	stop_broker_for(&h.near, 4.0); /* twice the keep-alive timeout */
	transfer_ended(&t, "near broker stopped", false);
	hosts_recovered(&h, "near broker stopped");
	hosts_stop(&h);
}
END_TEST

START_TEST(test_far_broker_stopped)
{
	struct hosts h;
	hosts_start(&h);
	struct transfer t;
	transfer_start(&h, &t, "svc", ENDLESS);
	stop_broker_for(&h.far, 4.0);
	transfer_ended(&t, "far broker stopped", false);
	hosts_recovered(&h, "far broker stopped");
	hosts_stop(&h);
}
END_TEST

START_TEST(test_near_broker_killed_and_restarted)
{
	struct hosts h;
	hosts_start(&h);
	struct transfer t;
	transfer_start(&h, &t, "svc", ENDLESS);
	process_stop(&h.near, SIGKILL);
	transfer_ended(&t, "near broker killed", false);
	ck_assert_msg(fds_at_most(&h.far, h.far_fds - 1, 10), "far broker fds %d, before %d",
		      process_fd_count(&h.far), h.far_fds); /* its accepted connection went too */
	spawn_near(&h);
	cross_the_link(&h, 3);
	h.near_fds = process_fd_count(&h.near);
	h.near_rss = process_rss_kib(&h.near);
	hosts_recovered(&h, "near broker restarted");
	hosts_stop(&h);
}
END_TEST

START_TEST(test_far_broker_killed_and_restarted)
{
	struct hosts h;
	hosts_start(&h);
	struct transfer t;
	transfer_start(&h, &t, "svc", ENDLESS);
	unsigned port = h.far_port;
	process_stop(&h.far, SIGKILL);
	transfer_ended(&t, "far broker killed", false);
	spawn_far(&h, port); /* the same address: the near pool dials it again */
	cross_the_link(&h, 4);
	h.far_fds = process_fd_count(&h.far);
	h.far_rss = process_rss_kib(&h.far);
	hosts_recovered(&h, "far broker restarted");
	hosts_stop(&h);
}
END_TEST

START_TEST(test_apps_killed)
{
	struct hosts h;
	hosts_start(&h);
	struct transfer t;
	transfer_start(&h, &t, "svc", ENDLESS);
	kill(t.send.pid, SIGKILL); /* the echo app sees its streams fail (ERROR 502) */
	int echoed = process_wait(&t.echo, FAULT_BOUND);
	if (echoed != 0)
		process_dump_log(&t.echo);
	ck_assert_int_eq(echoed, 0);
	/* every stream ended with the code docs/ATTACH.md promises, not just with some error */
	ck_assert_int_eq(process_log_count(&t.echo, "error 502: the app went away"), atoi(STREAMS));
	process_stop(&t.send, SIGKILL);
	process_stop(&t.echo, SIGKILL);
	hosts_recovered(&h, "sender killed");

	transfer_start(&h, &t, "svc2", ENDLESS);
	kill(t.echo.pid, SIGKILL); /* now the sender sees its streams fail */
	int sent = process_wait(&t.send, FAULT_BOUND);
	if (sent != 1)
		process_dump_log(&t.send);
	ck_assert_int_eq(sent, 1);
	ck_assert_int_eq(process_log_count(&t.send, "bytes back"), atoi(STREAMS));
	if (process_log_count(&t.send, "(502 the app went away)") != atoi(STREAMS))
		process_dump_log(&t.send);
	ck_assert_int_eq(process_log_count(&t.send, "(502 the app went away)"), atoi(STREAMS));
	process_stop(&t.send, SIGKILL);
	process_stop(&t.echo, SIGKILL);
	hosts_recovered(&h, "echo app killed");
	hosts_stop(&h);
}
END_TEST

START_TEST(test_link_cut_briefly)
{
	struct hosts h;
	hosts_start(&h);
	struct transfer t;
	transfer_start(&h, &t, "svc", "33554432"); /* 32 MiB a stream: still running at the cut */
	ck_assert(delay_link_set_up(&h.link, false));
	usleep(500000); /* shorter than the keep-alive timeout */
	ck_assert(delay_link_set_up(&h.link, true));
	transfer_ended(&t, "link cut 0.5 s", true);
	hosts_recovered(&h, "link cut 0.5 s");
	hosts_stop(&h);
}
END_TEST

START_TEST(test_link_cut_for_long)
{
	struct hosts h;
	hosts_start(&h);
	struct transfer t;
	transfer_start(&h, &t, "svc", ENDLESS);
	ck_assert(delay_link_set_up(&h.link, false));
	/* keep-alive ends the connection on both sides; both apps see their streams fail */
	transfer_ended(&t, "link cut for long", false);
	ck_assert(delay_link_set_up(&h.link, true));
	hosts_recovered(&h, "link cut for long");
	hosts_stop(&h);
}
END_TEST

/* Opens that time out while the peer cannot be reached leave nothing behind: the near
 * broker answers each by its timeout, and when the link comes back no stream opened for
 * them is held by the app's session or either broker. (Before the broker kept the app's
 * timeout, the late answers became streams the session held until it detached.) */
static struct wh_client_stats stats_of_client(wh_client *c)
{
	struct wh_client_stats st;
	ck_assert_int_eq(wh_client_stats(c, &st), WH_OK);
	return st;
}

static bool client_holds_nothing(void *arg)
{
	struct wh_client_stats st = stats_of_client(arg);
	return st.streams == 0 && st.broker_streams == 0;
}

START_TEST(test_open_timeouts_leave_nothing)
{
	struct hosts h;
	hosts_start(&h);
	wh_client *client = app_attach(&h.near);
	ck_assert(delay_link_set_up(&h.link, false));
	/* until keep-alive declares the connection dead, opens still land on it */
	int rc = WH_OK;
	for (int i = 0; i < 100 && rc == WH_OK; i++) {
		wh_stream *s;
		rc = wh_open(client, "far", "echo", 200, &s);
		if (rc == WH_OK) {
			wh_close(s);
			usleep(100000); /* retry until the bounded count runs out */
		}
	}
	ck_assert_msg(rc == WH_ETIMEOUT || rc == WH_EPEER_UNREACHABLE, "open with the link down: %s",
		      wh_strerror(rc));
	unsigned timed_out = 0;
	for (int i = 0; i < 20; i++) {
		wh_stream *s = NULL;
		int timeout = i % 2 ? 0 : 300;
		int64_t start = wh_now_ns();
		rc = wh_open(client, "far", "echo", timeout, &s);
		double took = (double)(wh_now_ns() - start) / 1e9;
		ck_assert_msg(rc == WH_ETIMEOUT || rc == WH_EPEER_UNREACHABLE, "open %d: %s", i, wh_strerror(rc));
		ck_assert_msg(took < timeout / 1000.0 + 1.0, "open %d took %.3f s for a %d ms timeout", i, took,
			      timeout);
		ck_assert_str_ne(wh_client_errmsg(client), "");
		timed_out++;
	}
	ck_assert_uint_eq(timed_out, 20);
	ck_assert(delay_link_set_up(&h.link, true));
	cross_the_link(&h, 3); /* the pool is back */
	ck_assert_msg(poll_until(client_holds_nothing, client, 10), "the session holds %lu streams",
		      (unsigned long)stats_of_client(client).streams);
	wh_client_detach(client);
	hosts_recovered(&h, "open timeouts");
	hosts_stop(&h);
}
END_TEST

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "check_faults: needs root (network namespaces, tun): skipped\n");
		return 77; /* automake's SKIP */
	}
	Suite *suite = suite_create("faults");
	TCase *tc = tcase_create("two hosts");
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_near_broker_stopped);
	tcase_add_test(tc, test_far_broker_stopped);
	tcase_add_test(tc, test_near_broker_killed_and_restarted);
	tcase_add_test(tc, test_far_broker_killed_and_restarted);
	tcase_add_test(tc, test_apps_killed);
	tcase_add_test(tc, test_link_cut_briefly);
	tcase_add_test(tc, test_link_cut_for_long);
	tcase_add_test(tc, test_open_timeouts_leave_nothing);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
