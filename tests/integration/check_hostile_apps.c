/* Hostile and careless apps against live brokers: every attack of tests/hostile_app.c ends
 * only the offender's session or stream while a well-behaved app on the same broker carries
 * on, and the broker's descriptors and memory come back. Also: an app whose broker dies
 * learns it through its non-blocking streams and their descriptors; credit for bytes an app
 * leaves unread is returned; a listener that does not accept gets ERROR 503 beyond its
 * backlog, not the broker's descriptors. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "frame.h"
#include "harness.h"
#include "internal.h" /* to see that a reader sleeps on its ring's word */

#ifdef WH_SANITIZERS
#define SANITIZER_RSS_KIB (640 << 10) /* ASan holds freed memory (256 MiB quarantine) and shadow */
#define IDLE_TICKS_MAX 10
#else
#define SANITIZER_RSS_KIB 0
#define IDLE_TICKS_MAX 5 /* clock ticks (1/100 s) of CPU in a second */
#endif

struct fd_goal {
	const struct process *broker;
	int count;
};

/* back to the count before, or below it (a pool connection may have idled out) */
static bool fds_back(void *arg)
{
	struct fd_goal *g = arg;
	int count = process_fd_count(g->broker);
	return count >= 0 && count <= g->count;
}

struct rss_goal {
	const struct process *broker;
	long at_most;
};

static bool rss_back(void *arg)
{
	struct rss_goal *g = arg;
	long rss = process_rss_kib(g->broker);
	return rss >= 0 && rss <= g->at_most;
}

/* A well-behaved app: a same-host stream to itself and a stream to A's echo, both checked. */
static void good_app_round(wh_client *good, unsigned seed)
{
	wh_stream *s, *accepted;
	ck_assert_int_eq(wh_open(good, WH_PEER_LOCAL, "good", 5000, &s), WH_OK);
	ck_assert_int_eq(wh_accept(good, 5000, &accepted), WH_OK);
	ck_assert_int_eq(wh_write(s, "ok", 2), 2);
	char buf[2];
	ck_assert_int_eq(wh_read(accepted, buf, 2), 2);
	wh_close(s);
	wh_close(accepted);
	ck_assert_int_eq(wh_open(good, "a", "echo", 5000, &s), WH_OK);
	app_echo_check(s, 100000, seed);
	wh_close(s);
}

static const char *const attacks[] = {
	"before-hello", "hello-version", "double-hello", "broker-type", "fds-attached", "oversize",
	"malformed-each", "never-read", "never-read-held", "local-teardown", "corrupt-positions", "punch-hole", "exhaust",
	"stream-fd", "news-blocking", "doorbell-drained", "stream-fd-full", "local-wait-blocking",
};

START_TEST(test_hostile_app)
{
	const char *attack = attacks[_i];
	struct broker_pair p;
	const char *b_args[] = { "--max-fds", "400", "--app-max-streams", "256", NULL };
	broker_pair_start(&p, NULL, b_args);
	wh_client *good = app_attach(&p.b);
	ck_assert_int_eq(wh_listen(good, "good"), WH_OK);
	good_app_round(good, 1); /* the pool's connection to A is up: part of the baseline */
	int fds_before = process_fd_count(&p.b);
	long rss_before = process_rss_kib(&p.b);

	struct process attacker;
	const char *args[] = { attack, p.b.socket_path, "a", NULL };
	ck_assert(app_spawn(&attacker, "tests/hostile-app", args));
	int status = process_wait(&attacker, 60);
	if (status != 0) {
		process_dump_log(&attacker);
		process_dump_log(&p.b);
	}
	ck_assert_msg(status == 0, "%s: the attacker's checks failed (status %d)", attack, status);

	good_app_round(good, 2); /* the good app's session was never touched */
	struct fd_goal fds = { &p.b, fds_before };
	ck_assert_msg(poll_until(fds_back, &fds, 5), "%s: broker descriptors %d, before %d", attack,
		      process_fd_count(&p.b), fds_before);
	/* memory freed after the attack is given back within the broker's trim interval */
	struct rss_goal rss = { &p.b, rss_before + 1024 + SANITIZER_RSS_KIB };
	ck_assert_msg(poll_until(rss_back, &rss, 12), "%s: broker RSS %ld KiB, before %ld", attack,
		      process_rss_kib(&p.b), rss_before);
	/* and idle: nothing left spinning (a pending attach the broker had no descriptor for
	 * once kept its accept loop busy) */
	long ticks_start = process_cpu_ticks(&p.b);
	usleep(1000000); /* a measurement window */
	long idle_ticks = process_cpu_ticks(&p.b) - ticks_start;
	fprintf(stderr, "hostile app %-18s fds %d -> %d, rss %ld -> %ld KiB, cpu after %ld ticks/s\n",
		attack, fds_before, process_fd_count(&p.b), rss_before, process_rss_kib(&p.b), idle_ticks);
	ck_assert_msg(idle_ticks >= 0 && idle_ticks <= IDLE_TICKS_MAX, "%s: the broker used %ld ticks of "
		      "CPU in the second after", attack, idle_ticks);
	wh_client_detach(good);
	broker_pair_stop(&p);
}
END_TEST

/* An app that runs its own poll loop on non-blocking streams learns that its broker died:
 * the stream's descriptor becomes readable and the next call says WH_EBROKER_GONE. */
START_TEST(test_broker_death_reaches_polled_streams)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	wh_stream *s;
	ck_assert_int_eq(wh_open(client, "a", "discard", 10000, &s), WH_OK);
	ck_assert_int_eq(wh_set_nonblocking(s, true), WH_OK);
	char buf[16];
	ck_assert_int_eq(wh_read(s, buf, sizeof buf), WH_EWOULDBLOCK);
	int fd = wh_stream_fd(s);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(wh_stream_fd(s), fd); /* made once */
	struct pollfd pfd = { fd, POLLIN, 0 };
	ck_assert_int_eq(poll(&pfd, 1, 0), 0); /* nothing yet */
	kill(p.b.pid, SIGKILL);
	int64_t start = wh_now_ns();
	ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
	ck_assert(wh_now_ns() - start < 2000000000ll);
	ck_assert_int_eq(wh_read(s, buf, sizeof buf), WH_EBROKER_GONE);
	ck_assert_int_eq(wh_write(s, "x", 1), WH_EBROKER_GONE);
	wh_close(s);
	wh_client_detach(client);
	process_stop(&p.b, SIGTERM);
	ck_assert_int_eq(process_stop(&p.a, SIGTERM), 0);
}
END_TEST

/* Threads blocked in wh_read and wh_write sleep on their rings' words, which a dying broker
 * wakes no more: they must still learn that it died, within a second or so. */
struct blocked {
	wh_stream *s;
	bool writing;
	long result;
	int64_t returned_at;
};

static void *blocked_call(void *arg)
{
	struct blocked *b = arg;
	enum { SIZE = 1 << 16 };
	char *buf = calloc(1, SIZE);
	if (b->writing) {
		while ((b->result = wh_write(b->s, buf, SIZE)) > 0)
			;
	} else {
		b->result = wh_read(b->s, buf, SIZE);
	}
	b->returned_at = wh_now_ns();
	free(buf);
	return NULL;
}

static bool sleeping_on(uint32_t *word)
{
	return __atomic_load_n(word, __ATOMIC_ACQUIRE) == (RING_WAIT_NEWS | RING_WAIT_SLEEPER);
}

static bool both_asleep(void *arg)
{
	struct blocked *b = arg;
	return sleeping_on(ring_consumer_wait_word(&b[0].s->rx)) &&
	       sleeping_on(ring_producer_wait_word(&b[1].s->tx));
}

/* Blocks a reader (b[0]) and a writer (b[1]) on their streams, kills the broker under them,
 * and checks both calls return WH_EBROKER_GONE within a sleeping slice and some room. */
static void kill_broker_under_blocked_calls(struct process *broker, struct blocked b[2])
{
	pthread_t threads[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&threads[i], NULL, blocked_call, &b[i]);
	ck_assert(poll_until(both_asleep, b, 10));
	int64_t killed_at = wh_now_ns();
	kill(broker->pid, SIGKILL);
	for (int i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(b[i].result, WH_EBROKER_GONE);
		ck_assert_int_lt(b[i].returned_at - killed_at, 1500000000ll); /* a 200 ms slice, and room */
	}
}

START_TEST(test_broker_death_wakes_blocked_threads)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	struct blocked b[2] = { { .writing = false }, { .writing = true } };
	/* a reader of a stream that never answers, a writer into one whose far app never reads */
	wh_client *sink = app_attach(&p.a);
	ck_assert_int_eq(wh_listen(sink, "never-read"), WH_OK);
	ck_assert_int_eq(wh_open(client, "a", "discard", 10000, &b[0].s), WH_OK);
	ck_assert_int_eq(wh_open(client, "a", "never-read", 10000, &b[1].s), WH_OK);
	kill_broker_under_blocked_calls(&p.b, b);
	wh_close(b[0].s);
	wh_close(b[1].s);
	wh_client_detach(sink);
	wh_client_detach(client);
	process_stop(&p.b, SIGTERM);
	ck_assert_int_eq(process_stop(&p.a, SIGTERM), 0);
}
END_TEST

/* The same for same-host streams: their bytes need no broker, but a thread blocked on one
 * (its partner neither writes nor reads) must still learn that the broker died, as
 * docs/ATTACH.md promises every blocked call. */
START_TEST(test_broker_death_wakes_threads_on_local_streams)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b), *partner = app_attach(&p.b);
	ck_assert_int_eq(wh_listen(partner, "quiet"), WH_OK);
	struct blocked b[2] = { { .writing = false }, { .writing = true } };
	wh_stream *held[2];
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(wh_open(client, WH_PEER_LOCAL, "quiet", 10000, &b[i].s), WH_OK);
		ck_assert_int_eq(wh_accept(partner, 10000, &held[i]), WH_OK);
	}
	kill_broker_under_blocked_calls(&p.b, b);
	for (int i = 0; i < 2; i++) {
		wh_close(b[i].s);
		wh_close(held[i]);
	}
	wh_client_detach(partner);
	wh_client_detach(client);
	process_stop(&p.b, SIGTERM);
	ck_assert_int_eq(process_stop(&p.a, SIGTERM), 0);
}
END_TEST

/* The example sender runs non-blocking streams in a poll loop; its broker is killed in the
 * middle of a transfer: it must end, reporting the error, not hang. */
START_TEST(test_sender_outlives_its_broker)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *sink = app_attach(&p.a);
	ck_assert_int_eq(wh_listen(sink, "slow"), WH_OK);
	struct process sender;
	const char *args[] = { "-s", p.b.socket_path, "-n", "4", "-b", "100000000000", "a", "slow", NULL };
	ck_assert(app_spawn(&sender, "examples/wh-send", args));
	wh_stream *s;
	ck_assert_int_eq(wh_accept(sink, 10000, &s), WH_OK);
	char buf[65536];
	size_t got = 0;
	long n;
	while (got < (1u << 20) && (n = wh_read(s, buf, sizeof buf)) > 0)
		got += (size_t)n; /* the transfer is under way */
	kill(p.b.pid, SIGKILL);
	int status = process_wait(&sender, 10);
	if (status <= 0)
		process_dump_log(&sender);
	ck_assert_msg(status > 0, "the sender did not end with an error after its broker died (%d)", status);
	process_stop(&sender, SIGKILL);
	wh_close(s);
	wh_client_detach(sink);
	process_stop(&p.b, SIGTERM);
	ck_assert_int_eq(process_stop(&p.a, SIGTERM), 0);
}
END_TEST

/* An app closes a stream with bytes still unread: the broker returns their credit, so the
 * peer's 4 MiB of writes complete and the stream ends cleanly, with no reset at the linger. */
START_TEST(test_unread_bytes_are_credited)
{
	struct broker_pair p;
	const char *b_args[] = { "--release-linger", "30", NULL };
	broker_pair_start(&p, NULL, b_args);
	wh_client *reader = app_attach(&p.a), *writer = app_attach(&p.b);
	ck_assert_int_eq(wh_listen(reader, "closes-early"), WH_OK);
	wh_stream *w, *r;
	ck_assert_int_eq(wh_open(writer, "a", "closes-early", 10000, &w), WH_OK);
	ck_assert_int_eq(wh_write(w, "first", 5), 5);
	ck_assert_int_eq(wh_accept(reader, 10000, &r), WH_OK);
	char buf[16];
	ck_assert_int_gt(wh_read(r, buf, sizeof buf), 0);
	wh_close(r); /* everything after the first read stays unread */
	static char chunk[1 << 20];
	ck_assert_int_eq(wh_set_write_deadline(w, wh_now_ns() + 10000000000ll), WH_OK);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(wh_write(w, chunk, sizeof chunk), (long)sizeof chunk);
	ck_assert_int_eq(wh_shutdown(w), WH_OK);
	ck_assert_int_eq(wh_set_read_deadline(w, wh_now_ns() + 10000000000ll), WH_OK);
	ck_assert_int_eq(wh_read(w, buf, sizeof buf), 0); /* the reader's CLOSE, no ERROR 499 */
	ck_assert_int_eq(wh_stream_error(w, NULL, NULL), WH_OK);
	wh_close(w);
	wh_client_detach(writer);
	wh_client_detach(reader);
	broker_pair_stop(&p);
}
END_TEST

/* Same host: the reader closes with bytes unread while the writer still has megabytes to
 * go; the writes complete (discarded), as they would through a broker, and nothing hangs. */
START_TEST(test_same_host_writer_after_reader_closed)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	wh_client *a = app_attach(&broker), *b = app_attach(&broker);
	ck_assert_int_eq(wh_listen(b, "closes-early"), WH_OK);
	wh_stream *w, *r;
	ck_assert_int_eq(wh_open(a, WH_PEER_LOCAL, "closes-early", 5000, &w), WH_OK);
	ck_assert_int_eq(wh_accept(b, 5000, &r), WH_OK);
	ck_assert_int_eq(wh_write(w, "first", 5), 5);
	char buf[8];
	ck_assert_int_eq(wh_read(r, buf, sizeof buf), 5);
	wh_close(r);
	static char chunk[1 << 20];
	ck_assert_int_eq(wh_set_write_deadline(w, wh_now_ns() + 5000000000ll), WH_OK);
	for (int i = 0; i < 8; i++) /* 8 MiB through a 1 MiB ring nobody reads */
		ck_assert_int_eq(wh_write(w, chunk, sizeof chunk), (long)sizeof chunk);
	void *span;
	ck_assert_int_eq(wh_write_reserve(w, &span), WH_ESTREAM_CLOSED);
	ck_assert_int_eq(wh_read(w, buf, sizeof buf), 0); /* the reader's close was orderly */
	wh_close(w);
	wh_client_detach(a);
	wh_client_detach(b);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

static int dial(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	return fd;
}

/* A listening app that never accepts holds at most its backlog of streams; a peer opening
 * a thousand gets ERROR 503 for the rest, and the broker's descriptors stay bounded. */
START_TEST(test_listener_backlog)
{
	struct process broker;
	const char *args[] = { "--app-accept-backlog", "100", NULL };
	ck_assert(broker_spawn(&broker, args));
	wh_client *lazy = app_attach(&broker);
	ck_assert_int_eq(wh_listen(lazy, "lazy"), WH_OK);
	int fds_before = process_fd_count(&broker);
	int fd = dial(broker.port);
	static uint8_t frames[1000 * (FRAME_HEADER_SIZE + 4)];
	size_t length = 0;
	for (uint32_t i = 0; i < 1000; i++)
		length += (size_t)frame_encode_handshake(frames + length, sizeof frames - length, 2 * i + 1,
							 "lazy", 4);
	ck_assert_int_eq(send(fd, frames, length, MSG_NOSIGNAL), (ssize_t)length);
	struct frame_decoder decoder;
	frame_decoder_init(&decoder, FRAME_MAX_PAYLOAD);
	unsigned full = 0, other = 0;
	int64_t deadline = wh_now_ns() + 10000000000ll;
	while (full + other < 900 && wh_now_ns() < deadline) {
		uint8_t buffer[65536];
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		ssize_t n = recv(fd, buffer, sizeof buffer, 0);
		ck_assert_int_gt(n, 0);
		const uint8_t *at = buffer;
		size_t left = (size_t)n;
		while (left) {
			struct frame_event ev;
			size_t used = frame_decoder_feed(&decoder, at, left, &ev);
			at += used;
			left -= used;
			if (ev.kind == FRAME_EVENT_CONTROL && ev.header.type == FRAME_ERROR) {
				uint32_t code = (uint32_t)ev.payload[2] << 8 | ev.payload[3];
				if (code == 503)
					full++;
				else
					other++;
			}
		}
	}
	ck_assert_uint_eq(full, 900);
	ck_assert_uint_eq(other, 0);
	/* each stream waiting for the app costs the broker one descriptor, and no more */
	int fds_during = process_fd_count(&broker);
	ck_assert_msg(fds_during <= fds_before + 1 + 100 + 8, "broker fds %d, before %d", fds_during,
		      fds_before);
	/* the held streams are real: the app can still take one */
	wh_stream *s;
	ck_assert_int_eq(wh_accept(lazy, 5000, &s), WH_OK);
	wh_close(s);
	close(fd);
	struct fd_goal goal = { &broker, fds_before };
	ck_assert_msg(poll_until(fds_back, &goal, 5), "broker fds %d, before %d",
		      process_fd_count(&broker), fds_before);
	wh_client_detach(lazy);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

/* A same-host partner that makes its descriptors blocking and full, and takes whatever
 * arrives on them (tests/hostile_app.c, hostile-partner): the victim app's wh_read with a
 * deadline, its non-blocking wh_read, its wh_write and its non-blocking wh_write each return
 * in time, the stream's descriptor included. Each call runs on a thread the test waits for
 * with its own deadline, so that a frozen call fails the test instead of hanging it. */
struct victim {
	wh_stream *s;
	const char *step; /* what it does now */
	atomic_bool done;
};

static void *victim_calls(void *arg)
{
	struct victim *v = arg;
	static char big[2 << 20];
	char buf[16];
	v->step = "wh_read with a deadline";
	ck_assert_int_eq(wh_set_read_deadline(v->s, wh_now_ns() + 1000000000ll), WH_OK);
	ck_assert_int_eq(wh_read(v->s, buf, sizeof buf), WH_ETIMEOUT);
	v->step = "wh_write with a deadline (the ring fills: nobody reads)";
	ck_assert_int_eq(wh_set_write_deadline(v->s, wh_now_ns() + 1000000000ll), WH_OK);
	ck_assert_int_eq(wh_write(v->s, big, sizeof big), WH_ETIMEOUT);
	v->step = "non-blocking wh_read";
	ck_assert_int_eq(wh_set_nonblocking(v->s, true), WH_OK);
	ck_assert_int_eq(wh_read(v->s, buf, sizeof buf), WH_EWOULDBLOCK);
	v->step = "non-blocking wh_write";
	ck_assert_int_eq(wh_write(v->s, big, sizeof big), WH_EWOULDBLOCK);
	v->step = "poll on wh_stream_fd";
	struct pollfd pfd = { wh_stream_fd(v->s), POLLIN, 0 };
	ck_assert_int_ge(poll(&pfd, 1, 100), 0);
	atomic_store(&v->done, true);
	return NULL;
}

static bool victim_done(void *arg)
{
	return atomic_load(&((struct victim *)arg)->done);
}

static void victim_survives(wh_client *victim, wh_stream *s)
{
	char r;
	ck_assert_int_eq(wh_set_read_deadline(s, wh_now_ns() + 10000000000ll), WH_OK);
	ck_assert_int_eq(wh_read(s, &r, 1), 1); /* "R": the partner did its worst */
	struct victim v = { .s = s, .step = "" };
	atomic_init(&v.done, false);
	pthread_t thread;
	pthread_create(&thread, NULL, victim_calls, &v);
	ck_assert_msg(poll_until(victim_done, &v, 20), "the app froze in %s", v.step);
	pthread_join(thread, NULL);
	struct wh_client_stats stats; /* and the broker still answers it */
	ck_assert_int_eq(wh_client_stats(victim, &stats), WH_OK);
}

START_TEST(test_hostile_partner_cannot_freeze_an_app)
{
	struct process broker, partner;
	ck_assert(broker_spawn(&broker, NULL));
	wh_client *victim = app_attach(&broker);
	wh_stream *s;
	if (_i == 0) { /* the partner listens, the victim opens */
		const char *args[] = { "hostile-partner", broker.socket_path, NULL };
		ck_assert(app_spawn(&partner, "tests/hostile-app", args));
		ck_assert(process_log_wait(&partner, "listening", 10));
		ck_assert_int_eq(wh_open(victim, WH_PEER_LOCAL, "hostile-partner", 5000, &s), WH_OK);
	} else { /* the partner opens, the victim listens */
		ck_assert_int_eq(wh_listen(victim, "victim"), WH_OK);
		const char *args[] = { "hostile-partner", broker.socket_path, "victim", NULL };
		ck_assert(app_spawn(&partner, "tests/hostile-app", args));
		ck_assert_int_eq(wh_accept(victim, 10000, &s), WH_OK);
	}
	victim_survives(victim, s);
	process_stop(&partner, SIGKILL);
	wh_close(s);
	wh_client_detach(victim);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("hostile-apps");
	TCase *tc = tcase_create("apps");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_hostile_app, 0, (int)(sizeof attacks / sizeof attacks[0]));
	tcase_add_test(tc, test_broker_death_reaches_polled_streams);
	tcase_add_test(tc, test_broker_death_wakes_blocked_threads);
	tcase_add_test(tc, test_broker_death_wakes_threads_on_local_streams);
	tcase_add_test(tc, test_sender_outlives_its_broker);
	tcase_add_test(tc, test_unread_bytes_are_credited);
	tcase_add_test(tc, test_listener_backlog);
	tcase_add_test(tc, test_same_host_writer_after_reader_closed);
	suite_add_tcase(suite, tc);
	TCase *partner = tcase_create("partner"); /* CK_RUN_CASE=partner runs it alone */
	tcase_set_timeout(partner, 120);
	tcase_add_loop_test(partner, test_hostile_partner_cannot_freeze_an_app, 0, 2);
	suite_add_tcase(suite, partner);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
