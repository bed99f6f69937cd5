/* The broker's shares, tried against live brokers as an attacker would: a peer that holds as
 * many streams as it can (tests/hostile_peer.c stream-hog) gets its share of the memory budget
 * and no more, while another peer and the local apps are still served; one app's wasted opens
 * and idle streams hold back that app only. (The allow-lists need other users to try them:
 * check_root.c.) */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "frame.h"
#include "harness.h"

/* A budget of 64 MiB. An echo stream holds its 256 KiB window (it sends back from it: no
 * send buffer), but is admitted only while its window and a 32 KiB frame of send buffer
 * (288 KiB) fit, the frame given back at once: so one connection (25 %) holds 63 streams,
 * one peer (50 %) 127, and peers together (90 %, the rest kept for local apps) 230. */
#define STREAM_COST (256u * 1024u)
#define STREAM_ADMISSION (288u * 1024u)
#define BUDGET (64u << 20)
#define STREAMS_IN(share) (((share) - STREAM_ADMISSION) / STREAM_COST + 1)
#define CONNECTION_STREAMS STREAMS_IN(BUDGET / 4)
#define PEER_STREAMS STREAMS_IN(BUDGET / 2)

/*
 * A well-behaved peer from `source` (127.0.0.N): opens stream 1 to echo, sends a message,
 * half-closes, and reads frames until the echo and its CLOSE came back (true), or an ERROR
 * (its code in *refused), or 5 s passed.
 */
static bool raw_echo(unsigned port, const char *source, uint32_t *refused)
{
	*refused = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in from = { .sin_family = AF_INET }, to = { .sin_family = AF_INET };
	inet_pton(AF_INET, source, &from.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	to.sin_port = htons((uint16_t)port);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&from, sizeof from), 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
	uint8_t out[256];
	size_t length = 0;
	length += (size_t)frame_encode_handshake(out + length, sizeof out - length, 1, "echo", 4);
	length += (size_t)frame_encode_data(out + length, sizeof out - length, 1, "well-behaved", 12);
	length += (size_t)frame_encode_close(out + length, sizeof out - length, 1);
	ck_assert_int_eq(send(fd, out, length, MSG_NOSIGNAL), (ssize_t)length);
	struct frame_decoder decoder;
	frame_decoder_init(&decoder, FRAME_MAX_PAYLOAD);
	char echoed[64] = "";
	size_t echoed_length = 0;
	bool closed = false;
	double deadline = harness_now() + 5;
	while (!closed && !*refused && harness_now() < deadline) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		uint8_t in[4096];
		ssize_t n = recv(fd, in, sizeof in, 0);
		if (n <= 0)
			break;
		const uint8_t *p = in;
		size_t left = (size_t)n;
		while (left) {
			struct frame_event ev;
			size_t used = frame_decoder_feed(&decoder, p, left, &ev);
			p += used;
			left -= used;
			if (ev.header.stream_id != 1)
				continue;
			if (ev.kind == FRAME_EVENT_DATA_CHUNK && echoed_length + ev.payload_length < sizeof echoed) {
				memcpy(echoed + echoed_length, ev.payload, ev.payload_length);
				echoed_length += ev.payload_length;
			} else if (ev.kind == FRAME_EVENT_CONTROL && ev.header.type == FRAME_CLOSE) {
				closed = true;
			} else if (ev.kind == FRAME_EVENT_CONTROL && ev.header.type == FRAME_ERROR &&
				   ev.payload_length >= 4) {
				*refused = (uint32_t)ev.payload[0] << 24 | (uint32_t)ev.payload[1] << 16 |
					   (uint32_t)ev.payload[2] << 8 | ev.payload[3];
			}
		}
	}
	close(fd);
	return closed && echoed_length == 12 && memcmp(echoed, "well-behaved", 12) == 0;
}

/* Starts stream-hog from `source` against the broker and waits until it holds its streams;
 * the streams each of its two connections got. */
static void hog_start(struct process *hog, const struct process *broker, const char *source,
		      unsigned accepted[2])
{
	char port[16];
	snprintf(port, sizeof port, "%u", broker->port);
	setenv("HOSTILE_SOURCE", source, 1);
	const char *args[] = { "stream-hog", "127.0.0.1", port, "60", NULL };
	ck_assert(app_spawn(hog, "tests/hostile-peer", args));
	unsetenv("HOSTILE_SOURCE");
	hog->keep_log = true;
	if (!process_log_wait(hog, "stream-hog holding", 30)) {
		process_dump_log(hog);
		ck_abort_msg("stream-hog from %s did not get to hold its streams", source);
	}
	FILE *f = fopen(hog->log_file, "r");
	ck_assert_ptr_nonnull(f);
	char line[256];
	accepted[0] = accepted[1] = 0;
	while (fgets(line, sizeof line, f))
		sscanf(line, "hostile-peer: stream-hog holding: accepted %u and %u", &accepted[0],
		       &accepted[1]);
	fclose(f);
	fprintf(stderr, "stream-hog from %s: accepted %u and %u\n", source, accepted[0], accepted[1]);
}

START_TEST(test_stream_hog_gets_its_share_only)
{
	/* B is where A's apps open streams to; A is the victim */
	struct process a, b;
	ck_assert(broker_spawn(&b, NULL));
	char peer[64], budget[32];
	snprintf(peer, sizeof peer, "b=127.0.0.1:%u", b.port);
	snprintf(budget, sizeof budget, "%u", BUDGET);
	const char *a_args[] = { "--peer", peer, "--budget", budget, NULL };
	ck_assert(broker_spawn(&a, a_args));
	wh_client *app = app_attach(&a);

	/* one peer, two connections: each gets its connection's share, both the peer's */
	struct process hog;
	unsigned accepted[2];
	hog_start(&hog, &a, "127.0.0.1", accepted);
	ck_assert_uint_le(accepted[0], CONNECTION_STREAMS);
	ck_assert_uint_le(accepted[1], CONNECTION_STREAMS);
	ck_assert_uint_le(accepted[0] + accepted[1], PEER_STREAMS);
	ck_assert_uint_ge(accepted[0] + accepted[1], PEER_STREAMS - 2);

	/* another peer is served, and so is a local app opening a stream to its peer */
	uint32_t refused;
	ck_assert_msg(raw_echo(a.port, "127.0.0.2", &refused), "another peer was not served (%u)",
		      refused);
	wh_stream *s;
	ck_assert_int_eq(wh_open(app, "b", "echo", 10000, &s), WH_OK);
	app_echo_check(s, 1 << 20, 7);
	wh_close(s);

	/* more greedy peers fill what peers may have: the next peer is refused with 429, the
	 * local app still opens (the local reserve) */
	struct process more[3];
	const char *sources[3] = { "127.0.0.3", "127.0.0.4", "127.0.0.5" };
	unsigned more_accepted[3][2];
	for (int i = 0; i < 3; i++)
		hog_start(&more[i], &a, sources[i], more_accepted[i]);
	unsigned total = accepted[0] + accepted[1];
	for (int i = 0; i < 3; i++)
		total += more_accepted[i][0] + more_accepted[i][1];
	ck_assert_uint_le(total * STREAM_COST, BUDGET / 100 * 90);
	ck_assert(!raw_echo(a.port, "127.0.0.6", &refused));
	ck_assert_uint_eq(refused, 429);
	ck_assert_int_eq(wh_open(app, "b", "echo", 10000, &s), WH_OK);
	app_echo_check(s, 1 << 20, 8);
	wh_close(s);

	/* once the hogs leave, everything they held comes back: the next peer is served */
	for (int i = 0; i < 3; i++)
		process_stop(&more[i], SIGTERM);
	process_stop(&hog, SIGTERM);
	double deadline = harness_now() + 10;
	bool served = false;
	while (!served && harness_now() < deadline)
		served = raw_echo(a.port, "127.0.0.6", &refused);
	ck_assert(served);
	wh_client_detach(app);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&b, SIGTERM), 0);
}
END_TEST

/* Peers from four addresses open 1000 echo streams each, fill every window and never read
 * what the echo sends back: every byte the broker holds for them is counted, so its resident
 * memory grows by no more than the budget (64 MiB) and a constant. */
#define RSS_CONSTANT_KIB (16 << 10) /* connections, stream structs, allocator slack */
#ifdef WH_SANITIZERS
#define SANITIZER_RSS_KIB (640 << 10) /* ASan's quarantine and shadow memory */
#else
#define SANITIZER_RSS_KIB 0
#endif

START_TEST(test_zero_window_peers_stay_within_budget)
{
	struct process broker;
	char budget[32];
	snprintf(budget, sizeof budget, "%u", BUDGET);
	const char *args[] = { "--budget", budget, "--socket", "none", NULL };
	ck_assert(broker_spawn(&broker, args));
	long before = process_rss_kib(&broker);
	char port[16];
	snprintf(port, sizeof port, "%u", broker.port);
	struct process attackers[4];
	for (int i = 0; i < 4; i++) {
		char source[16];
		snprintf(source, sizeof source, "127.0.0.%d", i + 1);
		setenv("HOSTILE_SOURCE", source, 1);
		const char *attack[] = { "zero-window-many", "127.0.0.1", port, "3", NULL };
		ck_assert(app_spawn(&attackers[i], "tests/hostile-peer", attack));
	}
	unsetenv("HOSTILE_SOURCE");
	long peak = before;
	int done = 0;
	bool finished[4] = { false };
	double deadline = harness_now() + 120;
	while (done < 4 && harness_now() < deadline) {
		long rss = process_rss_kib(&broker);
		if (rss > peak)
			peak = rss;
		for (int i = 0; i < 4; i++)
			if (!finished[i] && waitpid(attackers[i].pid, NULL, WNOHANG) == attackers[i].pid) {
				finished[i] = true;
				done++;
			}
		usleep(20000); /* a sampling period, not a wait */
	}
	for (int i = 0; i < 4; i++) {
		if (!finished[i])
			process_stop(&attackers[i], SIGKILL);
		else
			harness_cleanup_dir(attackers[i].dir);
	}
	fprintf(stderr, "zero-window from 4 peers, budget %u MiB: RSS %ld -> peak %ld KiB (+%ld KiB)\n",
		BUDGET >> 20, before, peak, peak - before);
	ck_assert_int_eq(done, 4);
	ck_assert_int_le(peak - before, (long)(BUDGET >> 10) + RSS_CONSTANT_KIB + SANITIZER_RSS_KIB);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

/* ---- streams the app never took ------------------------------------------------------ */

struct stats_wait {
	wh_client *client;
	uint64_t ring_bytes, streams;
	struct wh_client_stats last;
};

static bool ring_bytes_are(void *arg)
{
	struct stats_wait *w = arg;
	return wh_client_stats(w->client, &w->last) == WH_OK && w->last.ring_bytes == w->ring_bytes;
}

static bool streams_are(void *arg)
{
	struct stats_wait *w = arg;
	return wh_client_stats(w->client, &w->last) == WH_OK && w->last.streams == w->streams;
}

/* Streams handed to a listening app that has not accepted them, whose connection then dies:
 * their segments leave the app's ring memory at once (they held it for as long as the app
 * waited: 256 of them, 513 MiB, five minutes later). The app may still accept them: it reads
 * what came, then the error; closing them frees the rest. */
START_TEST(test_unaccepted_streams_give_back_ring_memory_when_their_connection_dies)
{
	enum { STREAMS = 16, BYTES = 3000 };
	struct broker_pair pair;
	broker_pair_start(&pair, NULL, NULL);
	wh_client *listener = app_attach(&pair.a);
	ck_assert_int_eq(wh_listen(listener, "held"), WH_OK);
	wh_client *opener = app_attach(&pair.b);
	unsigned char bytes[BYTES];
	memset(bytes, 7, sizeof bytes);
	for (int i = 0; i < STREAMS; i++) {
		wh_stream *s;
		ck_assert_int_eq(wh_open(opener, "a", "held", 10000, &s), WH_OK);
		ck_assert_int_eq(wh_write(s, bytes, sizeof bytes), BYTES);
	}
	struct stats_wait w = { .client = listener, .streams = STREAMS };
	ck_assert(poll_until(streams_are, &w, 30));
	uint64_t segment = w.last.ring_bytes / STREAMS;
	ck_assert_uint_gt(segment, 2 * 65536); /* one segment each: two rings and a header */

	process_stop(&pair.b, SIGKILL); /* the connection dies with every stream on it */
	w.ring_bytes = 0;
	ck_assert_msg(poll_until(ring_bytes_are, &w, 10), "ring memory still %llu bytes",
		      (unsigned long long)w.last.ring_bytes);
	ck_assert_uint_eq(w.last.streams, STREAMS); /* each keeps its slot until it is taken */

	for (int i = 0; i < STREAMS; i++) {
		wh_stream *s;
		ck_assert_int_eq(wh_accept(listener, 5000, &s), WH_OK);
		unsigned char in[BYTES];
		size_t got = 0;
		long n;
		while ((n = wh_read(s, in, sizeof in)) > 0)
			got += (size_t)n;
		ck_assert_msg(n < 0, "stream %d ended cleanly, not with its connection's error", i);
		ck_assert_uint_le(got, BYTES);
		wh_close(s);
	}
	w.streams = 0;
	ck_assert(poll_until(streams_are, &w, 10));
	ck_assert_uint_eq(w.last.ring_bytes, 0);
	wh_client_detach(opener);
	wh_client_detach(listener);
	ck_assert_int_eq(process_stop(&pair.a, SIGTERM), 0);
}
END_TEST

/* ---- one app cannot cut the others off from a peer ------------------------------------- */

/* A child process: an app on B that opens streams to a service A does not have, as fast as
 * the broker lets it, for up to 60 s (the parent kills it sooner). It writes a byte into
 * `told` at its first WH_ELIMIT. */
static pid_t spawn_retry_loop(const char *socket_path, int told)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid > 0)
		return pid;
	wh_client *client = NULL;
	if (wh_client_attach(socket_path, &client) != WH_OK)
		_exit(3);
	bool said = false;
	for (int64_t end = wh_now_ns() + 60000000000ll; wh_now_ns() < end;) {
		wh_stream *s;
		char buf[16];
		int error = wh_open(client, "a", "no-such-service", 10000, &s);
		if (error == WH_OK) {
			(void)wh_read(s, buf, sizeof buf);
			wh_close(s);
		} else if (error == WH_ELIMIT && !said) {
			said = write(told, "!", 1) == 1;
		}
	}
	_exit(0);
}

/* reset-rate: one app whose opens are all refused is held back on its own; another app's
 * opens on the same connection all succeed meanwhile (before, the hold-back was the
 * connection's: 0 or 1 of 20 got through). */
START_TEST(test_one_apps_wasted_opens_hold_back_that_app_only)
{
	const char *const rate[] = { "--reset-rate", "10", NULL };
	struct broker_pair p;
	broker_pair_start(&p, rate, rate);
	wh_client *good = app_attach(&p.b);
	wh_stream *s;
	ck_assert_int_eq(wh_open(good, "a", "echo", 10000, &s), WH_OK); /* the connection is up */
	app_echo_check(s, 1024, 1);
	wh_close(s);
	int told[2];
	ck_assert_int_eq(pipe(told), 0);
	pid_t bad = spawn_retry_loop(p.b.socket_path, told[1]);
	struct pollfd pfd = { .fd = told[0], .events = POLLIN };
	ck_assert_int_eq(poll(&pfd, 1, 30000), 1); /* the bad app is held back, and keeps trying */
	int served = 0;
	for (int i = 0; i < 20; i++) {
		int error = wh_open(good, "a", "echo", 10000, &s);
		if (error != WH_OK) {
			fprintf(stderr, "good app's open %d: %s (%s)\n", i, wh_strerror(error),
				wh_client_errmsg(good));
			continue;
		}
		app_echo_check(s, 4096, (unsigned)i);
		wh_close(s);
		served++;
	}
	kill(bad, SIGKILL);
	waitpid(bad, NULL, 0);
	close(told[0]);
	close(told[1]);
	fprintf(stderr, "reset-rate per app: the good app's opens served %d of 20\n", served);
	ck_assert_int_eq(served, 20);
	ck_assert(process_log_has(&p.b, "held back: its streams end without data"));
	wh_client_detach(good);
	broker_pair_stop(&p);
}
END_TEST

/* budget: one app holding as many idle streams to a peer as it may takes its part of the
 * peer's share, not all of it; another app's streams are served (before, the first took the
 * whole share and the other got ERROR 429). */
START_TEST(test_one_apps_idle_streams_leave_the_others_their_share)
{
	enum { HOG_TRIES = 200, GOOD = 20 };
	const char *const budget[] = { "--budget", "64M", NULL };
	struct broker_pair p;
	broker_pair_start(&p, budget, budget);
	wh_client *hog = app_attach(&p.b), *good = app_attach(&p.b);
	static wh_stream *held[HOG_TRIES];
	int opened = 0, error = WH_OK;
	while (opened < HOG_TRIES && (error = wh_open(hog, "a", "echo", 10000, &held[opened])) == WH_OK)
		opened++;
	fprintf(stderr, "budget per app: the hog opened %d streams (%s)\n", opened,
		error == WH_OK ? "all it tried" : wh_client_errmsg(hog));
	wh_stream *s;
	for (int i = 0; i < GOOD; i++) {
		ck_assert_int_eq(wh_open(good, "a", "echo", 10000, &s), WH_OK);
		app_echo_check(s, 4096, (unsigned)i);
		wh_close(s);
	}
	/* a quarter of the peer's 32 MiB share at 256 KiB a stream */
	ck_assert_int_eq(error, WH_ELIMIT);
	ck_assert_int_le(opened, 33);
	ck_assert_ptr_nonnull(strstr(wh_client_errmsg(hog), "memory budget"));
	for (int i = 0; i < opened; i++)
		wh_close(held[i]);
	wh_client_detach(hog);
	wh_client_detach(good);
	broker_pair_stop(&p);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("bounds");
	TCase *tc = tcase_create("bounds");
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_stream_hog_gets_its_share_only);
	tcase_add_test(tc, test_zero_window_peers_stay_within_budget);
	tcase_add_test(tc, test_one_apps_wasted_opens_hold_back_that_app_only);
	tcase_add_test(tc, test_one_apps_idle_streams_leave_the_others_their_share);
	tcase_add_test(tc, test_unaccepted_streams_give_back_ring_memory_when_their_connection_dies);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
