/* Integration tests of the data path: real brokers joined by loopback TCP, real apps linked
 * with libwormholeclient (this process and the example programs), shared-memory rings: bulk
 * and many streams, apps and brokers killed, hostile or stuck apps, threads. check_apps_api.c
 * has the library's edges (attach and open errors, event loops, descriptors, limits). */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "harness.h"
#include "internal.h" /* the hostile-app test reaches into its own segment */

#ifdef WH_SANITIZERS
#define SANITIZER_RSS_KIB (640 << 10) /* sanitizers keep freed memory (quarantine) and shadow */
#define BULK_BYTES (256u << 20)       /* ThreadSanitizer moves ~10 MB/s: a quarter of it */
#else
#define SANITIZER_RSS_KIB 0
#define BULK_BYTES (1u << 30)
#endif

START_TEST(test_one_gib_through_two_brokers)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	wh_stream *s;
	ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &s), WH_OK);
	ck_assert_str_eq(wh_stream_service(s), "echo");
	app_echo_check(s, BULK_BYTES, 7);
	wh_close(s);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

START_TEST(test_thousand_streams_between_apps)
{
	struct broker_pair p;
	/* wh-send opens all 1000 at once: A may hand the echo app that many before it accepts */
	const char *a_args[] = { "--app-accept-backlog", "1000", NULL };
	broker_pair_start(&p, a_args, NULL);
	struct process echo, send;
	const char *echo_args[] = { "-s", p.a.socket_path, "app-echo", NULL };
	ck_assert(app_spawn(&echo, "examples/wh-echo", echo_args));
	wh_client *probe = app_attach(&p.a); /* wait until the listener is registered */
	wh_stream *s = NULL;
	for (int i = 0; i < 200; i++) {
		if (wh_open(probe, WH_PEER_LOCAL, "app-echo", 1000, &s) == WH_OK)
			break;
		usleep(10000);
	}
	ck_assert_ptr_nonnull(s);
	app_echo_check(s, 1000, 3);
	wh_close(s);
	wh_client_detach(probe);
	const char *send_args[] = { "-s", p.b.socket_path, "-n", "1000", "-r", "-b", "200000", "a",
				    "app-echo", NULL };
	ck_assert(app_spawn(&send, "examples/wh-send", send_args));
	int status = process_wait(&send, 120);
	if (status != 0) {
		process_dump_log(&send);
		process_dump_log(&echo);
	}
	ck_assert_int_eq(status, 0);
	process_stop(&send, SIGTERM);
	process_stop(&echo, SIGTERM);
	broker_pair_stop(&p);
}
END_TEST

START_TEST(test_half_close_and_errors)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	wh_stream *s;
	ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &s), WH_OK);
	ck_assert_int_eq(wh_write(s, "hello", 5), 5);
	ck_assert_int_eq(wh_shutdown(s), WH_OK);
	ck_assert_int_eq(wh_shutdown(s), WH_ESTREAM_CLOSED);
	ck_assert_int_eq(wh_write(s, "x", 1), WH_ESTREAM_CLOSED);
	char buf[16];
	app_read_exactly(s, buf, 5);
	ck_assert_mem_eq(buf, "hello", 5);
	ck_assert_int_eq(wh_read(s, buf, sizeof buf), 0); /* every byte, then end of stream */
	wh_close(s);

	/* a remote refusal arrives as the stream's error, with the peer's code and message */
	ck_assert_int_eq(wh_open(client, "a", "no-such-service", 10000, &s), WH_OK);
	ck_assert_int_eq(wh_read(s, buf, sizeof buf), WH_ENO_SERVICE);
	uint32_t code;
	const char *message;
	ck_assert_int_eq(wh_stream_error(s, &code, &message), WH_ENO_SERVICE);
	ck_assert_uint_eq(code, 404);
	ck_assert_str_eq(message, "no listener for that service");
	ck_assert(wh_stream_is_closed(s));
	wh_close(s);
	/* refusals the broker decides at once */
	ck_assert_int_eq(wh_open(client, "nobody", "echo", 1000, &s), WH_EUNKNOWN_PEER);
	ck_assert_int_eq(wh_open(client, WH_PEER_LOCAL, "nobody-listens", 1000, &s), WH_ENO_SERVICE);
	ck_assert_int_eq(wh_listen(client, "mine"), WH_OK);
	wh_client *other = app_attach(&p.b);
	ck_assert_int_eq(wh_listen(other, "mine"), WH_ESERVICE_TAKEN);
	ck_assert_int_eq(wh_accept(other, 0, &s), WH_EWOULDBLOCK);
	ck_assert_int_eq(wh_accept(other, 50, &s), WH_ETIMEOUT);
	/* a deadline bounds a blocking read */
	ck_assert_int_eq(wh_open(client, "a", "discard", 10000, &s), WH_OK);
	ck_assert_int_eq(wh_set_read_deadline(s, wh_now_ns() + 100000000), WH_OK);
	ck_assert_int_eq(wh_read(s, buf, sizeof buf), WH_ETIMEOUT);
	wh_close(s);
	wh_client_detach(other);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

/* A measure of a process (descriptors, resident KiB) that must come down to a bound. */
struct usage_goal {
	struct process *broker;
	long (*measure)(const struct process *);
	long at_most;
};

static bool usage_at_most(void *arg)
{
	struct usage_goal *g = arg;
	long now = g->measure(g->broker);
	return now >= 0 && now <= g->at_most;
}

static long fd_count(const struct process *p)
{
	return process_fd_count(p);
}

START_TEST(test_app_killed_mid_transfer)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *listener = app_attach(&p.a);
	ck_assert_int_eq(wh_listen(listener, "victim"), WH_OK);
	wh_client *observer = app_attach(&p.b); /* asks broker B for its books */
	int fds_before = process_fd_count(&p.b);
	long rss_before = process_rss_kib(&p.b);
	struct process sender;
	const char *args[] = { "-s", p.b.socket_path, "-n", "4", "-b", "100000000000", "a", "victim", NULL };
	ck_assert(app_spawn(&sender, "examples/wh-send", args));
	wh_stream *s;
	ck_assert_int_eq(wh_accept(listener, 10000, &s), WH_OK);
	char buf[65536];
	size_t got = 0;
	long n;
	while (got < (8u << 20) && (n = wh_read(s, buf, sizeof buf)) > 0)
		got += (size_t)n; /* the transfer is well under way */
	/* four streams' rings are mapped and written: the broker's memory shows them */
	ck_assert_uint_eq(app_stats(observer).broker_streams, 4);
	ck_assert_uint_eq(app_stats(observer).broker_clients, 2);
	long rss_during = process_rss_kib(&p.b);
	ck_assert_msg(rss_during >= rss_before + 1024, "broker rss %ld KiB during, %ld before",
		      rss_during, rss_before);
	kill(sender.pid, SIGKILL);
	ck_assert_int_eq(wh_set_read_deadline(s, wh_now_ns() + 5000000000ll), WH_OK);
	while ((n = wh_read(s, buf, sizeof buf)) > 0)
		;
	ck_assert_int_eq(n, WH_EAPP_GONE); /* within a second, not at the deadline */
	uint32_t code;
	const char *message;
	wh_stream_error(s, &code, &message);
	ck_assert_uint_eq(code, 502);
	wh_close(s);
	/* the broker freed the dead app's segments and descriptors */
	struct usage_goal goal = { &p.b, fd_count, fds_before };
	ck_assert_msg(poll_until(usage_at_most, &goal, 5), "broker fds %d, before %d",
		      process_fd_count(&p.b), fds_before);
	/* ... and its memory: no stream left on the books, the segments unmapped */
	struct app_stats_goal books = { observer, 0, 0, 0 };
	ck_assert(poll_until(app_stats_reached, &books, 5));
	ck_assert_uint_eq(app_stats(observer).broker_clients, 1);
	struct usage_goal memory = { &p.b, process_rss_kib, rss_before + 512 + SANITIZER_RSS_KIB };
	ck_assert_msg(poll_until(usage_at_most, &memory, 5), "broker rss %ld KiB, before %ld",
		      process_rss_kib(&p.b), rss_before);
	process_stop(&sender, SIGTERM);
	wh_client_detach(observer);
	wh_client_detach(listener);
	broker_pair_stop(&p);
}
END_TEST

/* wh_stream_fd changes its stream (it makes the descriptor): it takes no const stream. An
 * assignment between function pointers whose parameters differ in const does not compile
 * with -Werror, so this fails to build while the header says const. */
static int (*const stream_fd_signature)(wh_stream *) = wh_stream_fd;

START_TEST(test_broker_killed)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	wh_stream *s;
	ck_assert_int_eq(stream_fd_signature(NULL), -1);
	ck_assert_int_eq(wh_open(client, "a", "discard", 10000, &s), WH_OK);
	ck_assert_int_eq(wh_set_read_deadline(s, wh_now_ns() + 10000000000ll), WH_OK);
	kill(p.b.pid, SIGKILL);
	char buf[16];
	int64_t start = wh_now_ns();
	ck_assert_int_eq(wh_read(s, buf, sizeof buf), WH_EBROKER_GONE);
	ck_assert(wh_now_ns() - start < 2000000000ll); /* promptly, not at the deadline */
	ck_assert_int_eq(wh_write(s, "x", 1), WH_EBROKER_GONE);
	wh_stream *t;
	/* every failure has words, wh_accept's too (it had none: "" from the open that worked) */
	ck_assert_int_eq(wh_accept(client, 1000, &t), WH_EBROKER_GONE);
	ck_assert_msg(strstr(wh_client_errmsg(client), "broker"), "wh_accept: '%s'", wh_client_errmsg(client));
	ck_assert_int_eq(wh_open(client, "a", "echo", 1000, &t), WH_EBROKER_GONE);
	ck_assert_str_ne(wh_client_errmsg(client), "");
	ck_assert_int_eq(wh_listen(client, "x"), WH_EBROKER_GONE);
	ck_assert_str_ne(wh_client_errmsg(client), "");
	struct wh_client_stats stats;
	ck_assert_int_eq(wh_client_stats(client, &stats), WH_EBROKER_GONE);
	ck_assert_str_ne(wh_client_errmsg(client), "");
	wh_close(s);
	wh_client_detach(client);
	process_stop(&p.b, SIGTERM);
	ck_assert_int_eq(process_stop(&p.a, SIGTERM), 0);
}
END_TEST

/* A hostile app rewrites its ring's positions: its stream ends, the broker carries on. */
START_TEST(test_corrupted_ring_ends_one_stream)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	wh_stream *s, *good;
	ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &s), WH_OK);
	ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &good), WH_OK);
	ck_assert_int_eq(wh_write(s, "hello", 5), 5);
	struct ring_segment *segment = s->segment;
	atomic_store(&segment->rings[0].head, 1ull << 40); /* far beyond anything it wrote */
	uint64_t one = 1; /* ring the doorbell for that stream, as the library would */
	notify_ring(client->notify, client->slots, s->slot);
	ck_assert_int_eq(write(client->doorbell, &one, sizeof one), 8);
	char buf[64];
	ck_assert_int_eq(wh_set_read_deadline(s, wh_now_ns() + 5000000000ll), WH_OK);
	long n;
	while ((n = wh_read(s, buf, sizeof buf)) > 0)
		;
	ck_assert_int_eq(n, WH_ERING_CORRUPT);
	wh_close(s);
	app_echo_check(good, 1u << 20, 5); /* the other stream on the same connection is fine */
	wh_close(good);
	/* and the broker serves new streams */
	ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &s), WH_OK);
	app_echo_check(s, 100000, 6);
	wh_close(s);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

/* An app that writes and never reads: memory stays bounded, other streams flow. */
START_TEST(test_app_that_never_reads)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	wh_stream *lazy, *busy;
	ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &lazy), WH_OK);
	wh_set_nonblocking(lazy, true);
	static char chunk[65536];
	long rss_a_before = process_rss_kib(&p.a), rss_b_before = process_rss_kib(&p.b);
	size_t written = 0;
	for (int i = 0; i < 2000; i++) {
		long n = wh_write(lazy, chunk, sizeof chunk);
		if (n > 0)
			written += (size_t)n;
		else
			usleep(1000);
	}
	ck_assert_uint_lt(written, 8u << 20); /* back-pressure: rings and windows fill, then stop */
	ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &busy), WH_OK);
	app_echo_check(busy, 32u << 20, 9);
	/* Each broker holds at most a window per stream (16 MiB at most after growth) plus the
	 * rings: two streams stay well under 64 MiB, allocator and sanitizer slack included,
	 * however much the lazy app keeps trying to write. */
	long grow_a = process_rss_kib(&p.a) - rss_a_before, grow_b = process_rss_kib(&p.b) - rss_b_before;
	ck_assert_msg(grow_a < 64 * 1024 && grow_b < 64 * 1024, "rss grew %ld / %ld KiB", grow_a, grow_b);
	wh_close(busy);
	wh_close(lazy);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

/* Many small messages one way to an app that only reads: its consumption must reach the
 * sender as window credit although the reader never writes (the broker asks to hear of
 * reads only when they could make an update due). */
/* An app that retries an open to a service the peer does not serve, without a pause, must
 * not make the peer end the connection that every app's streams share (its reset-rate counts
 * refused opens): broker B holds the app's opens back first (WH_ELIMIT), and a stream already
 * on the connection goes on. reset-rate 10 on both: a burst of 50 at A, B stops below 10. */
START_TEST(test_retry_loop_cannot_end_the_link)
{
	const char *const rate[] = { "--reset-rate", "10", NULL };
	struct broker_pair p;
	broker_pair_start(&p, rate, rate);
	wh_client *client = app_attach(&p.b);
	wh_stream *kept, *s;
	ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &kept), WH_OK);
	ck_assert_int_eq(wh_write(kept, "before", 6), 6);
	int refused = 0, error = WH_OK;
	char buf[64];
	while (refused < 500) {
		error = wh_open(client, "a", "no-such-service", 10000, &s);
		if (error != WH_OK)
			break;
		ck_assert_int_eq(wh_read(s, buf, sizeof buf), WH_ENO_SERVICE);
		wh_close(s);
		refused++;
	}
	ck_assert_int_eq(error, WH_ELIMIT);
	ck_assert_int_le(refused, 45); /* A's bucket holds 50 */
	ck_assert_ptr_nonnull(strstr(wh_client_errmsg(client), "reset-rate"));
	/* the kept stream is on the same connection: it still carries bytes both ways */
	app_read_exactly(kept, buf, 6);
	ck_assert_mem_eq(buf, "before", 6);
	app_echo_check(kept, 256 * 1024, 7);
	wh_close(kept);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

START_TEST(test_one_way_trickle_keeps_flowing)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *on_a = app_attach(&p.a), *on_b = app_attach(&p.b);
	ck_assert_int_eq(wh_listen(on_a, "trickle"), WH_OK);
	wh_stream *reader, *writer;
	ck_assert_int_eq(wh_open(on_b, "a", "trickle", 10000, &reader), WH_OK);
	ck_assert_int_eq(wh_accept(on_a, 10000, &writer), WH_OK);
	wh_set_nonblocking(reader, true);
	wh_set_nonblocking(writer, true);
	const size_t total = 16u << 20; /* 64 windows of 256 KiB, in 64-byte messages */
	size_t sent = 0, received = 0;
	char message[64], buf[4096];
	memset(message, 't', sizeof message);
	int64_t deadline = wh_now_ns() + 60000000000ll;
	while (received < total && wh_now_ns() < deadline) {
		long w;
		while (sent < total &&
		       (w = wh_write(writer, message, total - sent < sizeof message ? total - sent
										 : sizeof message)) > 0)
			sent += (size_t)w; /* non-blocking: a message may go in part */
		long n;
		while ((n = wh_read(reader, buf, sizeof buf)) > 0)
			received += (size_t)n;
		struct pollfd pfd[2] = { { wh_stream_fd(reader), POLLIN, 0 }, { wh_stream_fd(writer), POLLIN, 0 } };
		poll(pfd, 2, 100);
	}
	ck_assert_uint_eq(received, total);
	wh_close(reader);
	wh_close(writer);
	wh_client_detach(on_a);
	wh_client_detach(on_b);
	broker_pair_stop(&p);
}
END_TEST

/* Garbage on the control socket ends that app's session with an error, and nothing else. */
START_TEST(test_malformed_control_message_ends_one_session)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	wh_client *good = app_attach(&broker);
	ck_assert_int_eq(wh_listen(good, "still-here"), WH_OK);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(broker.socket_path), sizeof addr.sun_path);
	memcpy(addr.sun_path, broker.socket_path, strlen(broker.socket_path) + 1);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	const uint8_t garbage[] = { 9, 9, 9, 9, 9, 9, 9, 9, 9 };
	ck_assert_int_eq(send(fd, garbage, sizeof garbage, 0), (ssize_t)sizeof garbage);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	uint8_t reply[ATTACH_MESSAGE_MAX];
	ssize_t n = recv(fd, reply, sizeof reply, 0);
	struct attach_msg msg;
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(attach_decode(reply, (size_t)n, &msg), WH_OK);
	ck_assert_int_eq(msg.type, ATTACH_RESULT);
	ck_assert_int_eq(msg.error, WH_EPROTOCOL);
	ck_assert_int_eq(recv(fd, reply, sizeof reply, 0), 0); /* then the session is closed */
	close(fd);
	/* the other app's session and listener are untouched */
	wh_stream *s;
	ck_assert_int_eq(wh_open(good, WH_PEER_LOCAL, "still-here", 1000, &s), WH_OK);
	wh_stream *accepted;
	ck_assert_int_eq(wh_accept(good, 5000, &accepted), WH_OK);
	ck_assert_int_eq(wh_write(s, "ok", 2), 2);
	char buf[2];
	ck_assert_int_eq(wh_read(accepted, buf, 2), 2);
	wh_close(s);
	wh_close(accepted);
	wh_client_detach(good);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

START_TEST(test_same_host_streams)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	struct process echo;
	const char *echo_args[] = { "-s", broker.socket_path, "loc", NULL };
	ck_assert(app_spawn(&echo, "examples/wh-echo", echo_args));
	wh_client *client = app_attach(&broker);
	wh_stream *s = NULL;
	for (int i = 0; i < 200 && !s; i++)
		if (wh_open(client, WH_PEER_LOCAL, "loc", 1000, &s) != WH_OK)
			usleep(10000);
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(wh_stream_peer(s), "local");
	app_echo_check(s, 64u << 20, 11);
	wh_close(s);
	/* the listener dies: the other end of a local stream learns it */
	ck_assert_int_eq(wh_open(client, WH_PEER_LOCAL, "loc", 1000, &s), WH_OK);
	ck_assert_int_eq(wh_write(s, "x", 1), 1);
	kill(echo.pid, SIGKILL);
	char buf[8];
	ck_assert_int_eq(wh_set_read_deadline(s, wh_now_ns() + 5000000000ll), WH_OK);
	long n;
	while ((n = wh_read(s, buf, sizeof buf)) > 0)
		;
	ck_assert_int_eq(n, WH_EAPP_GONE);
	wh_close(s);
	wh_client_detach(client);
	process_stop(&echo, SIGTERM);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

/* One non-blocking stream written and read at once from an event loop that polls its
 * wh_stream_fd with no timeout, as wormhole.h says: after WH_EWOULDBLOCK, wait for the
 * descriptor and retry. A wake-up taken by one direction must not be lost to the other: the
 * loop would then sleep for ever (3 runs in 30 hung so). The poll is infinite for the stream;
 * a timerfd beside it is the test's own deadline, so a lost wake-up fails instead of hanging. */
struct polled {
	wh_stream *s;
	size_t size, sent, received;
	unsigned seed;
	bool shut;
};

/* Moves what it can both ways; false once the echo is all back (or on an error). */
static bool polled_step(struct polled *p)
{
	static unsigned char buffer[16384];
	while (p->sent < p->size) {
		size_t n = p->size - p->sent < sizeof buffer ? p->size - p->sent : sizeof buffer;
		for (size_t i = 0; i < n; i++)
			buffer[i] = harness_pattern(p->seed, p->sent + i);
		long w = wh_write(p->s, buffer, n);
		if (w == WH_EWOULDBLOCK)
			break;
		ck_assert_int_gt(w, 0);
		p->sent += (size_t)w;
	}
	if (p->sent == p->size && !p->shut) {
		ck_assert_int_eq(wh_shutdown(p->s), WH_OK);
		p->shut = true;
	}
	for (;;) {
		long r = wh_read(p->s, buffer, sizeof buffer);
		if (r == WH_EWOULDBLOCK)
			return true;
		const char *why = "";
		if (r < 0)
			wh_stream_error(p->s, NULL, &why);
		ck_assert_msg(r >= 0, "read: %s: %s", wh_strerror((int)r), why);
		if (r == 0)
			return false;
		long bad = -1; /* ck_assert per byte costs a system call each (fork mode) */
		for (long i = 0; i < r && bad < 0; i++)
			if (buffer[i] != harness_pattern(p->seed, p->received + (size_t)i))
				bad = i;
		ck_assert_msg(bad < 0, "byte %zu came back wrong", p->received + (size_t)bad);
		p->received += (size_t)r;
	}
}

static void polled_echo(wh_client *client, const char *peer, size_t size, unsigned seed)
{
	struct polled p = { .size = size, .seed = seed };
	ck_assert_int_eq(wh_open(client, peer, "polled", 10000, &p.s), WH_OK);
	ck_assert_int_eq(wh_set_nonblocking(p.s, true), WH_OK);
	int guard = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	struct itimerspec deadline = { .it_value = { 30, 0 } };
	ck_assert(guard >= 0 && timerfd_settime(guard, 0, &deadline, NULL) == 0);
	while (polled_step(&p)) {
		struct pollfd pfd[2] = { { wh_stream_fd(p.s), POLLIN, 0 }, { guard, POLLIN, 0 } };
		ck_assert_int_ge(poll(pfd, 2, -1), 1);
		ck_assert_msg(!(pfd[1].revents & POLLIN), "to %s: a wake-up was lost: %zu of %zu bytes "
			      "sent, %zu back, and the stream's descriptor stayed quiet for 30 s", peer,
			      p.sent, size, p.received);
	}
	ck_assert_uint_eq(p.received, size);
	close(guard);
	wh_close(p.s);
}

START_TEST(test_stream_fd_polled_without_timeout)
{
	struct broker_pair p;
	/* small rings: many wake-ups each way */
	const char *args[] = { "--ring-size", "262144", NULL };
	broker_pair_start(&p, args, args);
	struct process far_echo, near_echo;
	const char *far_args[] = { "-s", p.a.socket_path, "polled", NULL };
	const char *near_args[] = { "-s", p.b.socket_path, "polled", NULL };
	ck_assert(app_spawn(&far_echo, "examples/wh-echo", far_args));
	ck_assert(app_spawn(&near_echo, "examples/wh-echo", near_args));
	ck_assert(process_log_wait(&far_echo, "listening", 10));
	ck_assert(process_log_wait(&near_echo, "listening", 10));
	wh_client *client = app_attach(&p.b);
	for (unsigned run = 0; run < 40; run++)
		polled_echo(client, run % 2 ? WH_PEER_LOCAL : "a", 8u << 20, run + 1);
	wh_client_detach(client);
	process_stop(&far_echo, SIGTERM);
	process_stop(&near_echo, SIGTERM);
	broker_pair_stop(&p);
}
END_TEST

static void *write_late(void *stream)
{
	usleep(20000); /* long after the reader's spin gave up */
	return wh_write(stream, "late", 4) == 4 ? stream : NULL;
}

START_TEST(test_released_stream_lingers_then_resets)
{
	/* A releases a stream whose far end never closes: after A's linger the far end is told */
	struct broker_pair p;
	const char *linger[] = { "--release-linger", "1", "--keepalive", "0", NULL };
	ck_assert(broker_spawn(&p.a, linger));
	char peer[64];
	snprintf(peer, sizeof peer, "a=127.0.0.1:%u", p.a.port);
	const char *args[] = { "--peer", peer, NULL };
	ck_assert(broker_spawn(&p.b, args));
	wh_client *listener = app_attach(&p.a), *opener = app_attach(&p.b);
	ck_assert_int_eq(wh_listen(listener, "hold"), WH_OK);
	wh_stream *held, *accepted;
	ck_assert_int_eq(wh_open(opener, "a", "hold", 10000, &held), WH_OK);
	ck_assert_int_eq(wh_write(held, "x", 1), 1);
	ck_assert_int_eq(wh_accept(listener, 10000, &accepted), WH_OK);
	wh_close(accepted); /* A sends CLOSE; the opener never closes its side */
	char buf[8];
	ck_assert_int_eq(wh_set_read_deadline(held, wh_now_ns() + 5000000000ll), WH_OK);
	ck_assert_int_eq(wh_read(held, buf, sizeof buf), 0);
	int64_t eof_at = wh_now_ns();
	long w = 0;
	while (w >= 0 && wh_now_ns() - eof_at < 10000000000ll) {
		w = wh_write(held, "y", 1);
		usleep(20000);
	}
	ck_assert_int_lt(w, 0);
	ck_assert_int_gt(wh_now_ns() - eof_at, 500000000); /* the linger, not something sooner */
	uint32_t code;
	const char *message;
	wh_stream_error(held, &code, &message);
	ck_assert_uint_eq(code, 499);
	ck_assert_ptr_nonnull(strstr(message, "released stream"));
	wh_close(held);
	wh_client_detach(opener);
	wh_client_detach(listener);
	broker_pair_stop(&p);
}
END_TEST

START_TEST(test_spinning_streams)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	wh_client *client = app_attach(&broker);
	ck_assert_int_eq(wh_listen(client, "spin"), WH_OK);
	wh_stream *a, *b;
	ck_assert_int_eq(wh_open(client, WH_PEER_LOCAL, "spin", 10000, &a), WH_OK);
	ck_assert_int_eq(wh_accept(client, 10000, &b), WH_OK);
	ck_assert_int_eq(wh_set_spin(a, 2000000), WH_OK);
	ck_assert_int_eq(wh_set_spin(b, 1000000000), WH_OK);
	/* a spin bounded by a deadline: the 1 ms deadline wins over the 1 s spin... */
	char byte;
	ck_assert_int_eq(wh_set_read_deadline(b, wh_now_ns() + 1000000), WH_OK);
	int64_t start = wh_now_ns();
	ck_assert_int_eq(wh_read(b, &byte, 1), WH_ETIMEOUT);
	ck_assert_int_lt(wh_now_ns() - start, 500000000);
	ck_assert_int_eq(wh_set_read_deadline(b, 0), WH_OK);
	/* ...and a spin that outlasts its budget goes to sleep and is still woken */
	ck_assert_int_eq(wh_set_spin(b, 1000), WH_OK);
	pthread_t writer; /* distinct streams may be used from different threads */
	ck_assert_int_eq(pthread_create(&writer, NULL, write_late, a), 0);
	char late[4];
	ck_assert_int_eq(wh_read(b, late, sizeof late), 4);
	ck_assert_mem_eq(late, "late", 4);
	void *written;
	ck_assert_int_eq(pthread_join(writer, &written), 0);
	ck_assert_ptr_eq(written, a);
	/* ping-pong with both ends spinning: every byte arrives, in order */
	ck_assert_int_eq(wh_set_spin(b, 2000000), WH_OK);
	for (unsigned i = 0; i < 2000; i++) {
		unsigned char out[64], in[64];
		for (size_t k = 0; k < sizeof out; k++)
			out[k] = harness_pattern(i, k);
		ck_assert_int_eq(wh_write(a, out, sizeof out), sizeof out);
		for (size_t got = 0; got < sizeof in;) {
			long n = wh_read(b, in + got, sizeof in - got);
			ck_assert_int_gt(n, 0);
			got += (size_t)n;
		}
		ck_assert_int_eq(wh_write(b, in, sizeof in), sizeof in);
		for (size_t got = 0; got < sizeof in;) {
			long n = wh_read(a, in + got, sizeof in - got);
			ck_assert_int_gt(n, 0);
			got += (size_t)n;
		}
		ck_assert_mem_eq(in, out, sizeof out);
	}
	wh_close(a);
	wh_close(b);
	wh_client_detach(client);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

START_TEST(test_stats_count_streams_and_bytes)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	struct wh_client_stats st = app_stats(client);
	ck_assert_uint_eq(st.streams, 0);
	ck_assert_uint_eq(st.max_streams, 16384);
	ck_assert_uint_eq(st.broker_clients, 1);
	const uint64_t segment = 4096 + 2 * (1u << 20); /* header page and two 1 MiB rings */
	ck_assert_uint_eq(st.ring_bytes_limit, 16384 * segment);

	wh_stream *s;
	ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &s), WH_OK);
	app_echo_check(s, 3u << 20, 21);
	st = app_stats(client);
	ck_assert_uint_eq(st.streams, 1);
	ck_assert_uint_eq(st.streams_opened, 1);
	ck_assert_uint_eq(st.ring_bytes, segment);
	ck_assert_uint_eq(st.bytes_sent, 3u << 20);
	ck_assert_uint_eq(st.bytes_received, 3u << 20);
	ck_assert_uint_eq(st.broker_streams, 1);

	/* a same-host stream counts for both apps, its bytes for neither */
	wh_client *listener = app_attach(&p.b);
	ck_assert_int_eq(wh_listen(listener, "here"), WH_OK);
	wh_stream *local, *accepted;
	ck_assert_int_eq(wh_open(client, WH_PEER_LOCAL, "here", 10000, &local), WH_OK);
	ck_assert_int_eq(wh_accept(listener, 10000, &accepted), WH_OK);
	ck_assert_int_eq(wh_write(local, "hello", 5), 5);
	char buf[8];
	ck_assert_int_eq(wh_read(accepted, buf, sizeof buf), 5);
	st = app_stats(client);
	ck_assert_uint_eq(st.streams, 2);
	ck_assert_uint_eq(st.streams_opened, 2);
	ck_assert_uint_eq(st.ring_bytes, 2 * segment);
	ck_assert_uint_eq(st.bytes_sent, 3u << 20);
	struct wh_client_stats other = app_stats(listener);
	ck_assert_uint_eq(other.streams, 1);
	ck_assert_uint_eq(other.streams_accepted, 1);
	ck_assert_uint_eq(other.ring_bytes, segment);
	ck_assert_uint_eq(other.broker_clients, 2);
	ck_assert_uint_eq(other.broker_streams, 3);

	/* closing gives it all back */
	wh_close(accepted);
	wh_close(local);
	wh_close(s);
	struct app_stats_goal goal = { client, 0, 0, 0 };
	ck_assert(poll_until(app_stats_reached, &goal, 5));
	ck_assert_int_eq(wh_client_stats(NULL, &st), WH_EINVAL);
	wh_client_detach(listener);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

/* The thread contract of wormhole.h: one thread uses the client (opens) while others read,
 * write and close its streams at once. Closing edits the client's list of streams, so this is
 * the case ThreadSanitizer (CI runs this suite under it) must find clean. */
#define THREADED_WORKERS 4
#define THREADED_STREAMS 64
#define THREADED_BYTES 20000

struct stream_queue {
	pthread_mutex_t lock;
	pthread_cond_t ready;
	wh_stream *items[THREADED_STREAMS];
	unsigned head, tail;
	bool done;
	unsigned verified;
};

static void *threaded_worker(void *arg)
{
	struct stream_queue *q = arg;
	for (;;) {
		pthread_mutex_lock(&q->lock);
		while (q->head == q->tail && !q->done)
			pthread_cond_wait(&q->ready, &q->lock);
		if (q->head == q->tail) {
			pthread_mutex_unlock(&q->lock);
			return NULL;
		}
		unsigned index = q->head;
		wh_stream *s = q->items[q->head++];
		pthread_mutex_unlock(&q->lock);
		/* echo a checked pattern, then close: the close races the opener's next open */
		unsigned char out[THREADED_BYTES], in[THREADED_BYTES];
		for (size_t i = 0; i < sizeof out; i++)
			out[i] = harness_pattern(index, i);
		bool ok = wh_write(s, out, sizeof out) == (long)sizeof out && wh_shutdown(s) == WH_OK;
		size_t got = 0;
		wh_set_read_deadline(s, wh_now_ns() + 30000000000ll);
		while (ok && got < sizeof in) {
			long r = wh_read(s, in + got, sizeof in - got);
			if (r <= 0)
				ok = false;
			else
				got += (size_t)r;
		}
		ok = ok && memcmp(in, out, sizeof in) == 0;
		wh_close(s);
		pthread_mutex_lock(&q->lock);
		q->verified += ok;
		pthread_mutex_unlock(&q->lock);
	}
}

START_TEST(test_threads_open_read_and_close_at_once)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	static struct stream_queue q;
	memset(&q, 0, sizeof q);
	pthread_mutex_init(&q.lock, NULL);
	pthread_cond_init(&q.ready, NULL);
	pthread_t workers[THREADED_WORKERS];
	for (int i = 0; i < THREADED_WORKERS; i++)
		ck_assert_int_eq(pthread_create(&workers[i], NULL, threaded_worker, &q), 0);
	for (unsigned i = 0; i < THREADED_STREAMS; i++) {
		wh_stream *s;
		ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &s), WH_OK);
		pthread_mutex_lock(&q.lock);
		q.items[q.tail++] = s;
		pthread_cond_signal(&q.ready);
		pthread_mutex_unlock(&q.lock);
	}
	pthread_mutex_lock(&q.lock);
	q.done = true;
	pthread_cond_broadcast(&q.ready);
	pthread_mutex_unlock(&q.lock);
	for (int i = 0; i < THREADED_WORKERS; i++)
		pthread_join(workers[i], NULL);
	ck_assert_uint_eq(q.verified, THREADED_STREAMS);
	struct app_stats_goal goal = { client, 0, 0, 0 };
	ck_assert(poll_until(app_stats_reached, &goal, 5)); /* every close reached the broker */
	wh_client_detach(client);
	broker_pair_stop(&p);
	pthread_cond_destroy(&q.ready);
	pthread_mutex_destroy(&q.lock);
}
END_TEST

/* One reader thread and one writer thread on each stream at once, as a TCP bridge's pump
 * has them: bytes go out on one thread and come back through an echo on the other, in both
 * blocking and non-blocking (poll on wh_stream_fd) modes, through two brokers and between two
 * apps on one host. The echo needs both at once (a window's worth of bytes is in flight), and
 * ThreadSanitizer (CI's tsan step) finds any state the two directions share unguarded. */
#define PUMP_BYTES (2u << 20)

struct pump {
	wh_stream *s;
	bool nonblocking;
	uint64_t moved;
	int rc;
};

static uint8_t pump_byte(uint64_t at) { return (uint8_t)(at * 7 + at / 251 + 3); }

/* Non-blocking: after WH_EWOULDBLOCK wait on the stream's descriptor (bounded: a lost
 * wake-up shows as a stall the caller's deadline reports, not a hang). */
static int pump_wait(struct pump *p, int64_t deadline)
{
	if (wh_now_ns() > deadline)
		return WH_ETIMEOUT;
	struct pollfd pfd = { wh_stream_fd(p->s), POLLIN, 0 };
	poll(&pfd, 1, 200);
	return WH_OK;
}

static void *pump_writer(void *arg)
{
	struct pump *p = arg;
	uint8_t buf[12000];
	int64_t deadline = wh_now_ns() + 60000000000ll;
	while (p->moved < PUMP_BYTES && p->rc == WH_OK) {
		size_t n = PUMP_BYTES - p->moved < sizeof buf ? PUMP_BYTES - p->moved : sizeof buf;
		for (size_t i = 0; i < n; i++)
			buf[i] = pump_byte(p->moved + i);
		long w = wh_write(p->s, buf, n);
		if (w == WH_EWOULDBLOCK)
			p->rc = pump_wait(p, deadline);
		else if (w <= 0)
			p->rc = (int)w;
		else
			p->moved += (uint64_t)w;
	}
	if (p->rc == WH_OK)
		p->rc = wh_shutdown(p->s);
	return NULL;
}

static void *pump_reader(void *arg)
{
	struct pump *p = arg;
	uint8_t buf[7000];
	int64_t deadline = wh_now_ns() + 60000000000ll;
	for (;;) {
		long r = wh_read(p->s, buf, sizeof buf);
		if (r == 0)
			break;
		if (r == WH_EWOULDBLOCK) {
			if ((p->rc = pump_wait(p, deadline)) != WH_OK)
				break;
			continue;
		}
		if (r < 0) {
			p->rc = (int)r;
			break;
		}
		for (long i = 0; i < r; i++)
			if (buf[i] != pump_byte(p->moved + (uint64_t)i)) {
				p->rc = WH_ERING_CORRUPT;
				return NULL;
			}
		p->moved += (uint64_t)r;
	}
	return NULL;
}

/* Echoes a same-host stream back on one thread (the other app of the test). */
static void *pump_echo(void *arg)
{
	wh_stream *s = arg;
	uint8_t buf[9000];
	long r;
	while ((r = wh_read(s, buf, sizeof buf)) > 0)
		if (wh_write(s, buf, (size_t)r) != r)
			break;
	wh_shutdown(s);
	return NULL;
}

static void pump_both_ways(wh_stream *s, bool nonblocking, const char *what)
{
	ck_assert_int_eq(wh_set_nonblocking(s, nonblocking), WH_OK);
	ck_assert_int_eq(wh_set_deadline(s, wh_now_ns() + 90000000000ll), WH_OK);
	struct pump out = { s, nonblocking, 0, WH_OK }, in = { s, nonblocking, 0, WH_OK };
	pthread_t writer, reader;
	ck_assert_int_eq(pthread_create(&reader, NULL, pump_reader, &in), 0);
	ck_assert_int_eq(pthread_create(&writer, NULL, pump_writer, &out), 0);
	pthread_join(writer, NULL);
	pthread_join(reader, NULL);
	ck_assert_msg(out.rc == WH_OK && in.rc == WH_OK, "%s: writer %s after %llu bytes, reader %s after %llu",
		      what, wh_error_name(out.rc), (unsigned long long)out.moved, wh_error_name(in.rc),
		      (unsigned long long)in.moved);
	ck_assert_uint_eq(in.moved, PUMP_BYTES);
}

START_TEST(test_one_reader_and_one_writer_thread_per_stream)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b), *partner = app_attach(&p.b);
	ck_assert_int_eq(wh_listen(partner, "pump"), WH_OK);
	for (int nonblocking = 0; nonblocking < 2; nonblocking++) {
		wh_stream *s;
		ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &s), WH_OK);
		pump_both_ways(s, nonblocking, nonblocking ? "peer, non-blocking" : "peer, blocking");
		wh_close(s);
		wh_stream *local, *accepted;
		ck_assert_int_eq(wh_open(client, WH_PEER_LOCAL, "pump", 10000, &local), WH_OK);
		ck_assert_int_eq(wh_accept(partner, 10000, &accepted), WH_OK);
		pthread_t echo;
		ck_assert_int_eq(pthread_create(&echo, NULL, pump_echo, accepted), 0);
		pump_both_ways(local, nonblocking, nonblocking ? "same host, non-blocking" : "same host, blocking");
		pthread_join(echo, NULL);
		wh_close(local);
		wh_close(accepted);
	}
	wh_client_detach(partner);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

static Suite *apps_suite(void)
{
	Suite *suite = suite_create("apps");
	TCase *tc = tcase_create("apps");
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_one_gib_through_two_brokers);
	tcase_add_test(tc, test_thousand_streams_between_apps);
	tcase_add_test(tc, test_half_close_and_errors);
	tcase_add_test(tc, test_app_killed_mid_transfer);
	tcase_add_test(tc, test_broker_killed);
	tcase_add_test(tc, test_corrupted_ring_ends_one_stream);
	tcase_add_test(tc, test_app_that_never_reads);
	tcase_add_test(tc, test_one_way_trickle_keeps_flowing);
	tcase_add_test(tc, test_retry_loop_cannot_end_the_link);
	tcase_add_test(tc, test_malformed_control_message_ends_one_session);
	tcase_add_test(tc, test_same_host_streams);
	tcase_add_test(tc, test_released_stream_lingers_then_resets);
	tcase_add_test(tc, test_spinning_streams);
	tcase_add_test(tc, test_stats_count_streams_and_bytes);
	tcase_add_test(tc, test_threads_open_read_and_close_at_once);
	tcase_add_test(tc, test_one_reader_and_one_writer_thread_per_stream);
	suite_add_tcase(suite, tc);
	/* its own case, so that it can be run alone: CK_RUN_CASE=polled */
	TCase *polled = tcase_create("polled");
	tcase_set_timeout(polled, 180);
	tcase_add_test(polled, test_stream_fd_polled_without_timeout);
	suite_add_tcase(suite, polled);
	return suite;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	SRunner *runner = srunner_create(apps_suite());
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
