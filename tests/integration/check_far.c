/* Two hosts: brokers in two network namespaces joined by a link with a 20 ms round trip
 * (tests/integration/delay_link.c), apps on both, real TCP end to end, TLS between the
 * brokers as a deployment off loopback has it (certificates from scripts/make-certs.sh).
 * Needs root. */
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

struct hosts {
	char certs[64];
	struct harness_tls far_tls, near_tls;
	struct delay_link link;
	struct process near, far; /* near keeps a pool to far (peer name "far") */
};

static void hosts_start(struct hosts *h, const char *const *extra)
{
	harness_tempdir(h->certs, sizeof h->certs);
	ck_assert(harness_make_certs(h->certs, "far near"));
	const char *const *far_tls = harness_tls_args(&h->far_tls, h->certs, "far");
	const char *const *near_tls = harness_tls_args(&h->near_tls, h->certs, "near");
	ck_assert(delay_link_start(&h->link, 0.010));
	char listen_far[64], peer[64];
	snprintf(listen_far, sizeof listen_far, "%s:0", h->link.far_addr);
	const char *far_args[24] = { "--listen", listen_far, far_tls[0], far_tls[1], far_tls[2],
				     far_tls[3], far_tls[4], far_tls[5] };
	int n = 8;
	for (int i = 0; extra && extra[i] && n < 23; i++)
		far_args[n++] = extra[i];
	ck_assert(delay_link_enter(&h->link, DELAY_LINK_FAR));
	ck_assert(broker_spawn(&h->far, far_args));
	snprintf(peer, sizeof peer, "far=%s:%u", h->link.far_addr, h->far.port);
	const char *near_args[24] = { "--peer", peer, near_tls[0], near_tls[1], near_tls[2],
				      near_tls[3], near_tls[4], near_tls[5] };
	n = 8;
	for (int i = 0; extra && extra[i] && n < 23; i++)
		near_args[n++] = extra[i];
	ck_assert(delay_link_enter(&h->link, DELAY_LINK_NEAR));
	ck_assert(broker_spawn(&h->near, near_args));
	ck_assert(delay_link_enter(&h->link, DELAY_LINK_HOME));
}

static void hosts_stop(struct hosts *h)
{
	ck_assert_int_eq(process_stop(&h->near, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&h->far, SIGTERM), 0);
	delay_link_stop(&h->link);
	harness_cleanup_dir(h->certs);
}

START_TEST(test_streams_across_the_link)
{
	struct hosts h;
	hosts_start(&h, NULL);
	/* a near app to the far broker's built-in echo, then to a far app */
	wh_client *near = app_attach(&h.near);
	wh_stream *s;
	ck_assert_int_eq(wh_open(near, "far", "echo", 10000, &s), WH_OK);
	app_echo_check(s, 8u << 20, 31);
	wh_close(s);
	struct process echo;
	const char *echo_args[] = { "-s", h.far.socket_path, "far-echo", NULL };
	ck_assert(app_spawn(&echo, "examples/wh-echo", echo_args));
	/* until the far app listens: a refusal arrives as the stream's error */
	bool echoed = false;
	for (int i = 0; i < 200 && !echoed; i++) {
		char byte = '?';
		if (wh_open(near, "far", "far-echo", 10000, &s) == WH_OK) {
			echoed = wh_write(s, &byte, 1) == 1 && wh_read(s, &byte, 1) == 1;
			wh_close(s);
		}
		if (!echoed)
			usleep(20000);
	}
	ck_assert(echoed);
	ck_assert_int_eq(wh_open(near, "far", "far-echo", 10000, &s), WH_OK);
	app_echo_check(s, 4u << 20, 32);
	ck_assert_str_eq(wh_stream_peer(s), "far");
	wh_close(s);
	/* the far broker knows the near one from its certificate */
	ck_assert(process_log_has(&h.far, "identity near"));
	wh_client_detach(near);
	process_stop(&echo, SIGTERM);
	hosts_stop(&h);
}
END_TEST

START_TEST(test_link_cut_is_reported_to_both_ends)
{
	struct hosts h;
	const char *keepalive[] = { "--keepalive", "1", "--keepalive-timeout", "2", NULL };
	hosts_start(&h, keepalive);
	wh_client *near = app_attach(&h.near), *far = app_attach(&h.far);
	ck_assert_int_eq(wh_listen(far, "svc"), WH_OK);
	wh_stream *opened, *accepted;
	ck_assert_int_eq(wh_open(near, "far", "svc", 10000, &opened), WH_OK);
	ck_assert_int_eq(wh_write(opened, "ping", 4), 4);
	ck_assert_int_eq(wh_accept(far, 10000, &accepted), WH_OK);
	char buf[8];
	ck_assert_int_eq(wh_read(accepted, buf, sizeof buf), 4);
	ck_assert_int_eq(wh_write(accepted, "pong", 4), 4);
	ck_assert_int_eq(wh_read(opened, buf, sizeof buf), 4);

	/* the cable is pulled: no FIN, no RST, nothing; only keep-alive can tell */
	delay_link_cut(&h.link);
	wh_stream *ends[2] = { opened, accepted };
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(wh_set_read_deadline(ends[i], wh_now_ns() + 30000000000ll), WH_OK);
		long n = wh_read(ends[i], buf, sizeof buf);
		ck_assert_msg(n == WH_EKEEPALIVE_TIMEOUT, "end %d: read returned %s", i,
			      n < 0 ? wh_error_name((int)n) : "data");
		wh_close(ends[i]);
	}
	wh_client_detach(near);
	wh_client_detach(far);
	hosts_stop(&h);
}
END_TEST

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "check_far: needs root (network namespaces, tun): skipped\n");
		return 77; /* automake's SKIP */
	}
	Suite *suite = suite_create("far");
	TCase *tc = tcase_create("two hosts");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_streams_across_the_link);
	tcase_add_test(tc, test_link_cut_is_reported_to_both_ends);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
