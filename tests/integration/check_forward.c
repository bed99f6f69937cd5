/* Forwarding, tried with unmodified programs: broker A exposes services whose streams go to
 * TCP targets, broker B forwards a local port to them. A real HTTP server and client from
 * Debian (python3 -m http.server, curl), a small target of the test's own for half-close and
 * resets, a target that refuses, and the config checks. Real broker processes throughout. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "harness.h"

#define BIG_FILE_BYTES (50u * 1024u * 1024u)
#define CURLS 20

/* ---- helpers ------------------------------------------------------------------------------ */

/* The first line of a file, without its newline ("" if none). */
static void read_line(const char *path, char *out, size_t length)
{
	out[0] = '\0';
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	if (fgets(out, (int)length, f))
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

struct fd_goal {
	const struct process *p;
	int count;
};

static bool fds_back(void *arg)
{
	const struct fd_goal *g = arg;
	return process_fd_count(g->p) <= g->count;
}

/* Both brokers hold no more descriptors than they did (bounded wait): every relay and dial
 * closed its socket. */
/* What the process holds, on stderr (when a count is off). */
static void dump_fds(const struct process *p)
{
	char command[128];
	snprintf(command, sizeof command, "ls -l /proc/%d/fd >&2; cat /proc/%d/net/tcp | head -40 >&2",
		 (int)p->pid, (int)p->pid);
	if (system(command) != 0)
		fprintf(stderr, "(cannot list the descriptors of %d)\n", (int)p->pid);
}

static void assert_fds_back(const struct process *a, int a_count, const struct process *b, int b_count)
{
	struct fd_goal ga = { a, a_count }, gb = { b, b_count };
	if (!poll_until(fds_back, &ga, 10))
		dump_fds(a);
	ck_assert_msg(poll_until(fds_back, &ga, 10), "A holds %d descriptors, %d before",
		      process_fd_count(a), a_count);
	ck_assert_msg(poll_until(fds_back, &gb, 10), "B holds %d descriptors, %d before",
		      process_fd_count(b), b_count);
}

/* ---- the test's own target ----------------------------------------------------------------- */

/*
 * Each connection in a process of its own; the first byte says what to do:
 *   'E' read to EOF, then send back everything after the first byte, then close (half-close)
 *   'R' reset the connection at once (SO_LINGER 0)
 *   'W' read until the connection ends and write "eof" or "rst" to DIR/result
 *   'S' send for ever, writing the count sent so far to DIR/sent after each write
 *   'P' send back each read at once, until EOF
 *   'I' send the target's port (who answered) and close
 *   'N' never read: hold the connection until the other side ends it
 */
static void small_target_one(int fd, const char *dir, unsigned port)
{
	{
		char what = 0;
		if (read(fd, &what, 1) != 1)
			return;
		if (what == 'N') {
			struct pollfd p = { .fd = fd, .events = 0 }; /* POLLHUP and POLLERR only */
			poll(&p, 1, 120000);
			return;
		}
		if (what == 'I') {
			char id[16];
			int n = snprintf(id, sizeof id, "%u", port);
			if (write(fd, id, (size_t)n) != n)
				return;
			return;
		}
		if (what == 'P') {
			char chunk[4096];
			ssize_t n;
			while ((n = read(fd, chunk, sizeof chunk)) > 0)
				if (write(fd, chunk, (size_t)n) != n)
					break;
			return;
		}
		if (what == 'R') {
			harness_reset_close(fd);
			return;
		}
		if (what == 'S') {
			static char chunk[1 << 16];
			char path[300], count[32];
			snprintf(path, sizeof path, "%s/sent", dir);
			unsigned long long sent = 0;
			for (ssize_t w; (w = write(fd, chunk, sizeof chunk)) > 0;) {
				sent += (unsigned long long)w;
				snprintf(count, sizeof count, "%llu\n", sent);
				harness_write_file(path, count);
			}
			return;
		}
		if (what == 'W') { /* the test resets the client once the target has the connection */
			char path[300];
			snprintf(path, sizeof path, "%s/accepted", dir);
			harness_write_file(path, "yes\n");
		}
		size_t size = 0, cap = 1 << 20;
		char *held = malloc(cap);
		ssize_t n;
		for (;;) {
			if (size == cap)
				held = realloc(held, cap *= 2);
			n = read(fd, held + size, cap - size);
			if (n <= 0)
				break;
			size += (size_t)n;
		}
		if (what == 'W') {
			char path[300];
			snprintf(path, sizeof path, "%s/result", dir);
			harness_write_file(path, n == 0 ? "eof\n" : errno == ECONNRESET ? "rst\n" : "error\n");
		} else if (what == 'E' && n == 0) {
			for (size_t at = 0; at < size;) {
				ssize_t w = write(fd, held + at, size - at);
				if (w <= 0)
					break;
				at += (size_t)w;
			}
		}
		free(held);
	}
}

static void small_target_serve(int listen_fd, const char *dir, unsigned port)
{
	signal(SIGCHLD, SIG_IGN); /* its connections' processes reap themselves */
	for (;;) {
		int fd = accept(listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		pid_t pid = fork();
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(listen_fd);
			small_target_one(fd, dir, port);
			close(fd);
			_exit(0);
		}
		close(fd);
	}
}

/* The test's target on *port (0: one the system picks, stored in *port). */
static pid_t small_target_start(const char *dir, unsigned *port)
{
	int fd = harness_listen_loopback(port, 64);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGTERM, SIG_DFL); /* not the test runner's handler, which ends its group */
		small_target_serve(fd, dir, *port);
		_exit(0);
	}
	close(fd);
	return pid;
}

/* ---- two brokers ------------------------------------------------------------------------------ */

/* A exposes `services` (config text); B has peer a and forwards `forwards` (config text). */
static void brokers_start(struct process *a, struct process *b, const char *dir, const char *services,
			  const char *forwards)
{
	char path[300], text[4096];
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, services);
	const char *a_args[] = { "--config", path, NULL };
	ck_assert(broker_spawn(a, a_args));
	snprintf(text, sizeof text, "[peer a]\naddress = 127.0.0.1:%u\n\n%s", a->port, forwards);
	char b_path[300];
	snprintf(b_path, sizeof b_path, "%s/b.conf", dir);
	harness_write_file(b_path, text);
	const char *b_args[] = { "--config", b_path, NULL };
	ck_assert(broker_spawn(b, b_args));
}

/* The small target behind A as service small (target = 127.0.0.1:PORT), and B with the given
 * forwards (NULL: forward small to it). Returns the target's pid. */
static pid_t small_scene_start(const char *dir, unsigned *target_port, struct process *a,
			       struct process *b, const char *forwards)
{
	pid_t target = small_target_start(dir, target_port);
	char services[512];
	snprintf(services, sizeof services, "[service small]\ntarget = 127.0.0.1:%u\n", *target_port);
	brokers_start(a, b, dir, services,
		      forwards ? forwards : "[forward small]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n");
	return target;
}


static void brokers_stop(struct process *a, struct process *b)
{
	ck_assert_int_eq(process_stop(b, SIGTERM), 0);
	ck_assert_int_eq(process_stop(a, SIGTERM), 0);
}

/* A connection that cannot move (a side that never reads) costs the brokers no CPU while
 * it waits: at most a few clock ticks (1/100 s) in a second, each (a relay's probe once
 * spun a core). */
static void assert_brokers_idle(struct process *a, struct process *b, const char *what)
{
	long a_start = process_cpu_ticks(a), b_start = process_cpu_ticks(b);
	usleep(1000000); /* a measurement window */
	long a_ticks = process_cpu_ticks(a) - a_start, b_ticks = process_cpu_ticks(b) - b_start;
	ck_assert_msg(a_ticks <= 10 && b_ticks <= 10, "%s: A used %ld ticks and B %ld in a second",
		      what, a_ticks, b_ticks);
}

/* Stops what small_scene_start started and removes the test's directory. */
static void small_scene_stop(pid_t target, struct process *a, struct process *b, const char *dir)
{
	harness_stop_child(target);
	brokers_stop(a, b);
	harness_cleanup_dir(dir);
}

/* A client refused at once is reset: sends `request`, then reads. A quick refusal may reset
 * the connection before the request is written; then the write is what sees it. */
static void expect_reset_after_sending(int fd, const char *request)
{
	errno = 0;
	ssize_t n = send(fd, request, strlen(request), MSG_NOSIGNAL);
	if (n == (ssize_t)strlen(request)) {
		char byte;
		errno = 0;
		n = read(fd, &byte, 1);
	}
	ck_assert_msg(n < 0 && (errno == ECONNRESET || errno == EPIPE), "the client saw %zd (%s), not a reset",
		      n, strerror(errno));
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* The issue's own case: python3 -m http.server behind A, curl near B, 20 at once, 50 MB each. */
START_TEST(test_http_server_through_two_brokers)
{
	char dir[64], path[300], log[300];
	harness_tempdir(dir, sizeof dir);
	/* the file: a pattern, so that a byte out of place changes its SHA-256 */
	snprintf(path, sizeof path, "%s/big.bin", dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	static unsigned char block[1 << 16];
	for (size_t at = 0; at < BIG_FILE_BYTES; at += sizeof block) {
		for (size_t i = 0; i < sizeof block; i++)
			block[i] = harness_pattern(7, at + i);
		ck_assert_uint_eq(fwrite(block, 1, sizeof block, f), sizeof block);
	}
	fclose(f);
	unsigned http_port = harness_closed_port();
	char port_text[16];
	snprintf(port_text, sizeof port_text, "%u", http_port);
	snprintf(log, sizeof log, "%s/http.log", dir);
	const char *http[] = { "python3", "-u", "-m", "http.server", "--bind", "127.0.0.1", port_text, NULL };
	pid_t server = harness_spawn_program(http, log, dir);
	struct process http_log = { .pid = server };
	snprintf(http_log.log_file, sizeof http_log.log_file, "%s", log);
	ck_assert_msg(process_log_wait(&http_log, "Serving HTTP", 20), "python3 -m http.server did not start");

	char services[512];
	snprintf(services, sizeof services, "[service web]\ntarget = 127.0.0.1:%u\n", http_port);
	struct process a, b;
	brokers_start(&a, &b, dir, services, "[forward web]\nlisten = 127.0.0.1:0\npeer = a\nservice = web\n");
	unsigned port = harness_forward_port(&b, "web");

	char want[128], command[1024];
	snprintf(command, sizeof command, "sha256sum < %s/big.bin | cut -d' ' -f1 > %s/want", dir, dir);
	ck_assert_int_eq(system(command), 0);
	snprintf(path, sizeof path, "%s/want", dir);
	read_line(path, want, sizeof want);
	ck_assert_uint_eq(strlen(want), 64);

	pid_t curls[CURLS];
	for (int i = 0; i < CURLS; i++) {
		snprintf(command, sizeof command, "set -o pipefail; curl -sS --max-time 240 "
			 "http://127.0.0.1:%u/big.bin | sha256sum | cut -d' ' -f1 > %s/got%d", port, dir, i);
		const char *argv[] = { "bash", "-c", command, NULL };
		snprintf(log, sizeof log, "%s/curl%d.log", dir, i);
		curls[i] = harness_spawn_program(argv, log, NULL);
	}
	for (int i = 0; i < CURLS; i++) {
		ck_assert_int_eq(harness_wait_child(curls[i], 300), 0);
		char got[128];
		snprintf(path, sizeof path, "%s/got%d", dir, i);
		read_line(path, got, sizeof got);
		ck_assert_msg(strcmp(got, want) == 0, "curl %d: sha256 %s, want %s", i, got, want);
	}
	harness_stop_child(server);
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}
END_TEST

/* The client shuts its write side and still gets the whole answer: FIN -> CLOSE -> FIN to the
 * target, and the target's answer and FIN back. */
START_TEST(test_half_close_both_ways)
{
	char dir[64];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, NULL);
	unsigned port = harness_forward_port(&b, "small");

	const size_t size = 3u << 20; /* beyond every window: the answer waits for the reader */
	unsigned char *sent = malloc(size + 1), *got = malloc(size + 1);
	sent[0] = 'E';
	for (size_t i = 0; i < size; i++)
		sent[i + 1] = harness_pattern(3, i);
	int fd = harness_connect_loopback(port);
	for (size_t at = 0; at < size + 1;) {
		ssize_t w = write(fd, sent + at, size + 1 - at);
		ck_assert_int_gt(w, 0);
		at += (size_t)w;
	}
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	size_t have = 0;
	for (;;) {
		ssize_t n = read(fd, got + have, size + 1 - have);
		ck_assert_msg(n >= 0, "read: %s", strerror(errno));
		if (n == 0)
			break;
		have += (size_t)n;
	}
	ck_assert_uint_eq(have, size);
	ck_assert(memcmp(got, sent + 1, size) == 0);
	close(fd);
	free(sent);
	free(got);
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

static bool result_written(void *arg)
{
	return access(arg, F_OK) == 0;
}

/* A target's RST reaches the client as RST; a client's RST reaches the target as RST. */
START_TEST(test_resets_both_ways)
{
	char dir[64], result[300], line[32];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, NULL);
	unsigned port = harness_forward_port(&b, "small");

	/* target -> client */
	int fd = harness_connect_loopback(port);
	ck_assert_int_eq(write(fd, "R", 1), 1);
	char byte;
	errno = 0;
	ssize_t n = read(fd, &byte, 1);
	ck_assert_msg(n < 0 && errno == ECONNRESET, "the client saw %zd (%s), not a reset", n, strerror(errno));
	close(fd);
	/* the pool's connection is up now: what the brokers hold besides it is the relays' */
	int a_fds = process_fd_count(&a), b_fds = process_fd_count(&b);

	/* client -> target, once the target has the connection */
	char accepted[300];
	snprintf(result, sizeof result, "%s/result", dir);
	snprintf(accepted, sizeof accepted, "%s/accepted", dir);
	fd = harness_connect_loopback(port);
	ck_assert_int_eq(write(fd, "Wsome bytes", 11), 11);
	ck_assert_msg(poll_until(result_written, accepted, 15), "the target never got the connection");
	harness_reset_close(fd);
	ck_assert_msg(poll_until(result_written, result, 15), "the target never saw the end");
	poll(NULL, 0, 50);
	read_line(result, line, sizeof line);
	ck_assert_msg(strcmp(line, "rst") == 0, "the target saw %s, not a reset", line);
	assert_fds_back(&a, a_fds, &b, b_fds);
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* The target's count has not moved for a second (it is blocked in write). */
struct stalled {
	char path[300];
	char last[32];
	double since;
};

static bool target_stalled(void *arg)
{
	struct stalled *st = arg;
	char now[32];
	read_line(st->path, now, sizeof now);
	if (!now[0] || strcmp(now, st->last) != 0) {
		snprintf(st->last, sizeof st->last, "%s", now);
		st->since = harness_now();
		return false;
	}
	return harness_now() - st->since >= 1.0;
}

/* A client that does not read stops the far target: what the brokers hold stays within the
 * windows, and the target is blocked after the windows and the sockets' buffers are full. */
START_TEST(test_slow_client_stops_the_target)
{
	char dir[64];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, NULL);
	unsigned port = harness_forward_port(&b, "small");
	int fd = harness_connect_loopback(port); /* one exchange first: the pool's connection is up after it */
	ck_assert_int_eq(write(fd, "Eh", 2), 2);
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	char byte;
	ck_assert_int_eq(read(fd, &byte, 1), 1);
	close(fd);
	int a_fds = process_fd_count(&a), b_fds = process_fd_count(&b);
	fd = harness_connect_loopback(port);
	long a_before = process_rss_kib(&a), b_before = process_rss_kib(&b);
	ck_assert_int_eq(write(fd, "S", 1), 1);
	struct stalled st = { .since = harness_now() };
	snprintf(st.path, sizeof st.path, "%s/sent", dir);
	ck_assert_msg(poll_until(target_stalled, &st, 60), "the target never stopped: %s bytes", st.last);
	unsigned long long sent = strtoull(st.last, NULL, 10);
	long a_growth = process_rss_kib(&a) - a_before, b_growth = process_rss_kib(&b) - b_before;
	fprintf(stderr, "slow client: target stopped after %llu bytes; A grew %ld KiB, B %ld KiB\n", sent,
		a_growth, b_growth);
	/* the stream's window (16 MiB at most) and one relay chunk; the rest is in sockets */
	ck_assert_msg(sent < 96ull << 20, "the target sent %llu bytes to a client that reads nothing", sent);
	ck_assert_int_lt(a_growth, 24 * 1024);
	ck_assert_int_lt(b_growth, 24 * 1024);
	assert_brokers_idle(&a, &b, "a client that reads nothing");
	harness_reset_close(fd);
	assert_fds_back(&a, a_fds, &b, b_fds);
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* A target that never reads: a client that sends for ever is stopped within the windows and
 * the sockets' buffers; the brokers' memory stays bounded; a reset frees everything. */
START_TEST(test_target_that_never_reads)
{
	char dir[64];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, NULL);
	unsigned port = harness_forward_port(&b, "small");
	int fd = harness_connect_loopback(port); /* one exchange first: the pool's connection is up after it */
	ck_assert_int_eq(write(fd, "Eh", 2), 2);
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	char byte;
	ck_assert_int_eq(read(fd, &byte, 1), 1);
	close(fd);
	int a_fds = process_fd_count(&a), b_fds = process_fd_count(&b);
	long a_before = process_rss_kib(&a), b_before = process_rss_kib(&b);
	fd = harness_connect_loopback(port);
	ck_assert_int_eq(write(fd, "N", 1), 1);
	static char chunk[1 << 16];
	unsigned long long sent = 0;
	double quiet_since = harness_now(), deadline = harness_now() + 60;
	/* send until nothing more goes for a whole second: the pipeline is full */
	while (harness_now() - quiet_since < 1.0) {
		ck_assert_msg(harness_now() < deadline, "still sending after 60 s: %llu bytes", sent);
		ssize_t w = send(fd, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0) {
			sent += (unsigned long long)w;
			quiet_since = harness_now();
		} else {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			poll(&p, 1, 100); /* until the socket takes more, or the quiet second passes */
		}
	}
	long a_growth = process_rss_kib(&a) - a_before, b_growth = process_rss_kib(&b) - b_before;
	fprintf(stderr, "target that never reads: the client got %llu bytes in; A grew %ld KiB, B %ld KiB\n",
		sent, a_growth, b_growth);
	ck_assert_msg(sent < 96ull << 20, "%llu bytes went into a target that reads nothing", sent);
	ck_assert_int_lt(a_growth, 24 * 1024);
	ck_assert_int_lt(b_growth, 24 * 1024);
	assert_brokers_idle(&a, &b, "a target that reads nothing");
	harness_reset_close(fd);
	assert_fds_back(&a, a_fds, &b, b_fds);
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* Beyond max-connections a connection is accepted and closed at once, and the log says so. */
START_TEST(test_max_connections)
{
	char dir[64];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, "[forward small]\nlisten = 127.0.0.1:0\npeer = a\n"
		      "service = small\nmax-connections = 1\n");
	unsigned port = harness_forward_port(&b, "small");
	int held = harness_connect_loopback(port);
	ck_assert_int_eq(write(held, "Ehello", 6), 6);
	int extra = harness_connect_loopback(port);
	char byte;
	ssize_t n = read(extra, &byte, 1);
	ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET), "the extra connection got %zd", n);
	close(extra);
	ck_assert(process_log_wait(&b, "forward=small: max-connections 1 reached", 10));
	/* the one carried still works */
	ck_assert_int_eq(shutdown(held, SHUT_WR), 0);
	char got[16];
	harness_read_to_end(held, got, sizeof got, NULL);
	ck_assert_str_eq(got, "hello");
	close(held);
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* A target that refuses: the forward's client is reset at once; A's log names the service, the
 * target and the errno; an app opening the service gets ERROR 502 with the target's words. */
START_TEST(test_refused_target)
{
	char dir[64], services[512], expected[256];
	harness_tempdir(dir, sizeof dir);
	unsigned dead = harness_closed_port();
	snprintf(services, sizeof services, "[service gone]\ntarget = 127.0.0.1:%u\nconnect-timeout = 2\n", dead);
	struct process a, b;
	brokers_start(&a, &b, dir, services, "[forward gone]\nlisten = 127.0.0.1:0\npeer = a\nservice = gone\n");
	unsigned port = harness_forward_port(&b, "gone");
	double start = harness_now();
	int fd = harness_connect_loopback(port);
	expect_reset_after_sending(fd, "GET / HTTP/1.0\r\n\r\n");
	ck_assert_msg(harness_now() - start < 5, "the reset took %.1f s", harness_now() - start);
	close(fd);
	snprintf(expected, sizeof expected, "service=gone target=127.0.0.1:%u: connect: Connection refused "
		 "(errno %d)", dead, ECONNREFUSED);
	ck_assert_msg(process_log_wait(&a, expected, 10), "A's log does not say: %s", expected);

	/* wormhole-ctl shows it: the target failing and why, the forward's client reset by it */
	char socket_a[300], socket_b[300], out[8192];
	snprintf(socket_a, sizeof socket_a, "%s/control.sock", a.dir);
	snprintf(socket_b, sizeof socket_b, "%s/control.sock", b.dir);
	const char *targets[] = { "-s", socket_a, "--json", "targets", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", targets, out, sizeof out), 0);
	snprintf(expected, sizeof expected, "{\"service\": \"gone\", \"target\": \"127.0.0.1:%u\", "
		 "\"health\": \"failing\", \"connections\": 0, \"connects\": 0, \"failures\": 1,", dead);
	ck_assert_msg(strstr(out, expected) && strstr(out, "\"last_error\": \"Connection refused\""), "%s", out);
	const char *forwards[] = { "-s", socket_b, "--json", "forwards", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", forwards, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "\"forward\": \"gone\"") && strstr(out, "\"state\": \"listening\"") &&
		      strstr(out, "\"accepted\": 1,") && strstr(out, "\"reset_by_far\": 1,"), "%s", out);
	const char *metrics[] = { "-s", socket_b, "metrics", NULL };
	static char all[1 << 18];
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", metrics, all, sizeof all), 0);
	ck_assert_msg(strstr(all, "wormhole_forwards_reset_by_far_total{forward=\"gone\"} 1"), "%s", all);

	wh_client *app = app_attach(&b);
	wh_stream *s;
	ck_assert_int_eq(wh_open(app, "a", "gone", 5000, &s), WH_OK);
	char buffer[16];
	long r = wh_read(s, buffer, sizeof buffer);
	uint32_t code = 0;
	const char *message = NULL;
	ck_assert_int_eq(r, WH_EAPP_GONE);
	ck_assert_int_eq(wh_stream_error(s, &code, &message), WH_EAPP_GONE);
	ck_assert_uint_eq(code, 502);
	snprintf(expected, sizeof expected, "target 127.0.0.1:%u: Connection refused", dead);
	ck_assert_msg(message && strcmp(message, expected) == 0, "message: %s", message ? message : "(none)");
	wh_close(s);
	wh_client_detach(app);
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}
END_TEST

/* An app may not listen on a service with a target: the target takes every stream, so the
 * listener would wait for ever; it is refused, in words that name the target. */
START_TEST(test_no_listen_on_a_target)
{
	char dir[64], path[300], config[512];
	harness_tempdir(dir, sizeof dir);
	unsigned dead = harness_closed_port();
	snprintf(config, sizeof config, "[service web]\ntarget = 127.0.0.1:%u\nowner = %ld\n", dead,
		 (long)getuid());
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, config);
	const char *args[] = { "--config", path, NULL };
	struct process a;
	ck_assert(broker_spawn(&a, args));
	wh_client *app = app_attach(&a);
	ck_assert_int_eq(wh_listen(app, "web"), WH_EACCESS);
	char expected[128];
	snprintf(expected, sizeof expected, "service web goes to its TCP target 127.0.0.1:%u", dead);
	ck_assert_msg(strstr(wh_client_errmsg(app), expected), "%s", wh_client_errmsg(app));
	ck_assert_int_eq(wh_listen(app, "other"), WH_OK); /* a name without a target still may */
	wh_client_detach(app);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* A second target is tried when the first refuses. */
START_TEST(test_next_target_after_a_refusal)
{
	char dir[64], services[512];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	unsigned dead = harness_closed_port();
	snprintf(services, sizeof services, "[service small]\ntarget = 127.0.0.1:%u, 127.0.0.1:%u\n", dead,
		 target_port);
	struct process a, b;
	brokers_start(&a, &b, dir, services, "[forward small]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n");
	int fd = harness_connect_loopback(harness_forward_port(&b, "small"));
	ck_assert_int_eq(write(fd, "Ehello", 6), 6);
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	char got[16];
	int error;
	harness_read_to_end(fd, got, sizeof got, &error);
	ck_assert_int_eq(error, 0);
	ck_assert_str_eq(got, "hello");
	close(fd);
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* A target given by name: its lookup runs off the loop, once for every stream that waits for
 * it, and each of the name's addresses is tried in turn (localhost may be ::1 first, where
 * nothing listens). */
START_TEST(test_target_by_name)
{
	char dir[64], services[512];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(services, sizeof services, "[service small]\ntarget = localhost:%u\n", target_port);
	struct process a, b;
	brokers_start(&a, &b, dir, services, "[forward small]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n");
	unsigned port = harness_forward_port(&b, "small");
	enum { CLIENTS = 30 };
	int fds[CLIENTS];
	for (int i = 0; i < CLIENTS; i++) {
		char hello[32];
		int n = snprintf(hello, sizeof hello, "Eclient %d", i);
		fds[i] = harness_connect_loopback(port);
		ck_assert_int_eq(write(fds[i], hello, (size_t)n), n);
		ck_assert_int_eq(shutdown(fds[i], SHUT_WR), 0);
	}
	for (int i = 0; i < CLIENTS; i++) {
		char got[32], want[32];
		snprintf(want, sizeof want, "client %d", i);
		int error;
		harness_read_to_end(fds[i], got, sizeof got, &error);
		ck_assert_msg(error == 0, "client %d: %s", i, strerror(error));
		ck_assert_str_eq(got, want);
		close(fds[i]);
	}
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* Sends "E" and text, and leaves the connection open (the answer comes after the shutdown). */
static int echo_begin(unsigned port, const char *text)
{
	int fd = harness_connect_loopback(port);
	ck_assert_int_eq(write(fd, "E", 1), 1);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	return fd;
}

/* Sends more, shuts the write side and checks everything comes back. */
static void echo_end(int fd, const char *first, const char *more)
{
	char want[256], got[256];
	snprintf(want, sizeof want, "%s%s", first, more);
	ck_assert_int_eq(write(fd, more, strlen(more)), (ssize_t)strlen(more));
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	int error;
	harness_read_to_end(fd, got, sizeof got, &error);
	ck_assert_msg(error == 0, "read: %s", strerror(error));
	ck_assert_str_eq(got, want);
	close(fd);
}

/* Sends "P" and text and reads it back: the connection is carried end to end. */
static int ping_begin(unsigned port, const char *text)
{
	int fd = harness_connect_loopback(port);
	char got[256] = "";
	size_t have = 0, want = strlen(text);
	ck_assert_int_eq(write(fd, "P", 1), 1);
	ck_assert_int_eq(write(fd, text, want), (ssize_t)want);
	while (have < want) {
		ssize_t n = read(fd, got + have, want - have);
		ck_assert_msg(n > 0, "read: %zd %s", n, strerror(errno));
		have += (size_t)n;
	}
	ck_assert_str_eq(got, text);
	return fd;
}

/* The same once more, then the end: EOF both ways. */
static void ping_end(int fd, const char *text)
{
	char got[256];
	int error;
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	harness_read_to_end(fd, got, sizeof got, &error);
	ck_assert_msg(error == 0, "read: %s", strerror(error));
	ck_assert_str_eq(got, text);
	close(fd);
}

/* SIGHUP applies added, removed and changed forwards: a connection of an unchanged forward and
 * one of a removed forward carry their bytes across the reload, the removed one stops
 * listening, the added one listens; a new listen that cannot be bound refuses the reload. */
START_TEST(test_reload_forwards)
{
	char dir[64], path[300], text[1024];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, "[forward one]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n"
		      "[forward two]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n");
	unsigned one = harness_forward_port(&b, "one"), two = harness_forward_port(&b, "two");
	int kept = ping_begin(one, "kept before the reload");
	int drained = ping_begin(two, "drained before the reload");

	snprintf(path, sizeof path, "%s/b.conf", dir);
	snprintf(text, sizeof text, "[peer a]\naddress = 127.0.0.1:%u\n\n[forward one]\nlisten = 127.0.0.1:%u\n"
		 "peer = a\nservice = small\n[forward three]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n",
		 a.port, one);
	harness_write_file(path, text);
	/* a client whose connect completed just before the reload, still in the listen queue:
	 * served, not reset with the queue */
	ck_assert_int_eq(kill(b.pid, SIGSTOP), 0);
	int queued = harness_connect_loopback(two);
	ck_assert_int_eq(write(queued, "Pqueued", 7), 7);
	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	ck_assert_int_eq(kill(b.pid, SIGCONT), 0);
	unsigned three = harness_forward_port(&b, "three");
	ck_assert(process_log_wait(&b, "forward=two no longer listens: 2 connections drain", 10));
	ck_assert_msg(harness_connect_refused(two), "the removed forward still listens");
	char back[8] = "";
	for (size_t have = 0; have < 6;) {
		ssize_t n = read(queued, back + have, 6 - have);
		ck_assert_msg(n > 0, "the queued client: %zd %s", n, strerror(errno));
		have += (size_t)n;
	}
	ck_assert_str_eq(back, "queued");
	ping_end(queued, "queued after the reload");
	ping_end(kept, "kept after the reload");
	ping_end(drained, "drained after the reload");
	ck_assert(process_log_wait(&b, "forward=two removed", 10));
	int added = echo_begin(three, "added, ");
	echo_end(added, "added, ", "works");

	unsigned taken_port = 0;
	int taken = harness_listen_loopback(&taken_port, 64);
	snprintf(text, sizeof text, "[peer a]\naddress = 127.0.0.1:%u\n\n[forward one]\nlisten = 127.0.0.1:%u\n"
		 "peer = a\nservice = small\n[forward four]\nlisten = 127.0.0.1:%u\npeer = a\nservice = small\n",
		 a.port, one, taken_port);
	harness_write_file(path, text);
	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	char expect[256];
	snprintf(expect, sizeof expect, "forward=four: cannot listen on 127.0.0.1:%u: Address already in use "
		 "(errno %d)", taken_port, EADDRINUSE);
	ck_assert_msg(process_log_wait(&b, expect, 10), "no line: %s", expect);
	ck_assert(process_log_wait(&b, "reload refused: forward=four cannot listen", 10));
	int still = echo_begin(three, "three ");
	echo_end(still, "three ", "still listens: the reload changed nothing");
	close(taken);
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* Which target answered a new connection ('I'). */
static unsigned who_answers(unsigned port)
{
	int fd = harness_connect_loopback(port);
	char id[16];
	ck_assert_int_eq(write(fd, "I", 1), 1);
	/* ended both ways before the answer's EOF comes back: the target's connection no longer
	 * counts when the next one is balanced */
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	harness_read_to_end(fd, id, sizeof id, NULL);
	close(fd);
	return (unsigned)strtoul(id, NULL, 10);
}

/* balance: round-robin takes each target in turn; least-connections the one with fewer. */
START_TEST(test_balance)
{
	char dir[64], services[512];
	harness_tempdir(dir, sizeof dir);
	unsigned p1 = 0, p2 = 0;
	pid_t t1 = small_target_start(dir, &p1), t2 = small_target_start(dir, &p2);
	snprintf(services, sizeof services, "[service rr]\ntarget = 127.0.0.1:%u, 127.0.0.1:%u\nbalance = round-robin\n"
		 "[service lc]\ntarget = 127.0.0.1:%u, 127.0.0.1:%u\nbalance = least-connections\n"
		 "[service first]\ntarget = 127.0.0.1:%u, 127.0.0.1:%u\n", p1, p2, p1, p2, p1, p2);
	struct process a, b;
	brokers_start(&a, &b, dir, services, "[forward rr]\nlisten = 127.0.0.1:0\npeer = a\nservice = rr\n"
		      "[forward lc]\nlisten = 127.0.0.1:0\npeer = a\nservice = lc\n"
		      "[forward first]\nlisten = 127.0.0.1:0\npeer = a\nservice = first\n");
	unsigned rr = harness_forward_port(&b, "rr"), lc = harness_forward_port(&b, "lc"), first = harness_forward_port(&b, "first");
	unsigned seen[4];
	for (int i = 0; i < 4; i++)
		seen[i] = who_answers(rr);
	ck_assert_uint_ne(seen[0], seen[1]);
	ck_assert_uint_eq(seen[0], seen[2]);
	ck_assert_uint_eq(seen[1], seen[3]);
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(who_answers(first), p1);
	/* one connection held on whichever lc picks: the next ones go to the other */
	int held = ping_begin(lc, "held");
	unsigned other = who_answers(lc);
	ck_assert_uint_eq(who_answers(lc), other);
	ck_assert_uint_eq(who_answers(lc), other);
	ping_end(held, "done");
	harness_stop_child(t1);
	harness_stop_child(t2);
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}
END_TEST

/* Lines of the process's log that contain text. */
/* Health checks: a target that stops answering goes down after `fall` checks and gets no new
 * streams; with every target down a stream is refused at once; a target back up after `rise`
 * checks takes streams again. */
START_TEST(test_health_checks)
{
	char dir[64], services[512], text[256];
	harness_tempdir(dir, sizeof dir);
	unsigned p1 = 0, p2 = 0;
	pid_t t1 = small_target_start(dir, &p1), t2 = small_target_start(dir, &p2);
	snprintf(services, sizeof services, "[service hc]\ntarget = 127.0.0.1:%u, 127.0.0.1:%u\n"
		 "balance = round-robin\nhealth-check = 0.2\nfall = 2\nrise = 2\nconnect-timeout = 1\n", p1, p2);
	struct process a, b;
	brokers_start(&a, &b, dir, services, "[forward hc]\nlisten = 127.0.0.1:0\npeer = a\nservice = hc\n");
	unsigned port = harness_forward_port(&b, "hc");
	unsigned first = who_answers(port), second = who_answers(port);
	ck_assert_uint_ne(first, second);

	harness_stop_child(t1);
	snprintf(text, sizeof text, "service=hc target=127.0.0.1:%u: down after 2 failed checks", p1);
	ck_assert_msg(process_log_wait(&a, text, 10), "no line: %s", text);
	char refused[128];
	snprintf(refused, sizeof refused, "service=hc target=127.0.0.1:%u: connect:", p1);
	int tried = process_log_count(&a, refused);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(who_answers(port), p2);
	ck_assert_int_eq(process_log_count(&a, refused), tried); /* the down target was not even tried */

	harness_stop_child(t2);
	snprintf(text, sizeof text, "service=hc target=127.0.0.1:%u: down after 2 failed checks", p2);
	ck_assert_msg(process_log_wait(&a, text, 10), "no line: %s", text);
	double start = harness_now();
	int fd = harness_connect_loopback(port);
	expect_reset_after_sending(fd, "I");
	ck_assert_msg(harness_now() - start < 2, "the refusal took %.1f s", harness_now() - start);
	close(fd);
	ck_assert(process_log_wait(&a, "service hc: every target is down (health checks): stream reset with "
				   "ERROR 502", 10));

	char socket_a[300], out[8192];
	snprintf(socket_a, sizeof socket_a, "%s/control.sock", a.dir);
	const char *targets[] = { "-s", socket_a, "--json", "targets", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", targets, out, sizeof out), 0);
	snprintf(text, sizeof text, "\"target\": \"127.0.0.1:%u\", \"health\": \"down\"", p2);
	ck_assert_msg(strstr(out, text), "%s", out);

	t1 = small_target_start(dir, &p1); /* back on its port */
	snprintf(text, sizeof text, "service=hc target=127.0.0.1:%u: up (2 checks passed)", p1);
	ck_assert_msg(process_log_wait(&a, text, 10), "no line: %s", text);
	ck_assert_uint_eq(who_answers(port), p1);
	harness_stop_child(t1);
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}
END_TEST

/* idle-timeout: a forwarded connection with no byte either way is reset at both ends; one that
 * keeps talking is not. */
START_TEST(test_idle_timeout)
{
	char dir[64], result[300], accepted[300], line[32];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, "[forward small]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n"
		      "idle-timeout = 1\n");
	unsigned port = harness_forward_port(&b, "small");
	/* talking every 0.3 s for 2 s: not idle */
	int busy = ping_begin(port, "busy");
	for (int i = 0; i < 6; i++) {
		poll(NULL, 0, 300); /* the pace of a client that talks, not a wait for a condition */
		ck_assert_int_eq(write(busy, "x", 1), 1);
		char x;
		ck_assert_int_eq(read(busy, &x, 1), 1);
	}
	ping_end(busy, "still here");
	/* silent: reset at both ends after about a second */
	snprintf(result, sizeof result, "%s/result", dir);
	snprintf(accepted, sizeof accepted, "%s/accepted", dir);
	double start = harness_now();
	int fd = harness_connect_loopback(port);
	ck_assert_int_eq(write(fd, "W", 1), 1);
	char byte;
	errno = 0;
	ssize_t n = read(fd, &byte, 1);
	double took = harness_now() - start;
	ck_assert_msg(n < 0 && errno == ECONNRESET, "the client saw %zd (%s), not a reset", n, strerror(errno));
	ck_assert_msg(took > 0.9 && took < 10, "reset after %.1f s", took);
	ck_assert_msg(poll_until(result_written, result, 15), "the target never saw the end");
	poll(NULL, 0, 50);
	read_line(result, line, sizeof line);
	ck_assert_msg(strcmp(line, "rst") == 0, "the target saw %s, not a reset", line);
	ck_assert(process_log_wait(&b, "idle for 1 s (idle-timeout): stream", 10));
	close(fd);
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* A reload removes the peer a forwarded connection runs to (and the forward): at drain-timeout
 * the peer's pool is freed with the stream still open. The relay must end first (its client
 * reset), not be left holding a freed stream; the broker runs on. */
START_TEST(test_peer_removed_under_a_connection)
{
	char dir[64], path[300];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, "[broker]\ndrain-timeout = 0.5\n[forward small]\n"
		      "listen = 127.0.0.1:0\npeer = a\nservice = small\n");
	unsigned port = harness_forward_port(&b, "small");
	int held = ping_begin(port, "held across the reload");
	snprintf(path, sizeof path, "%s/b.conf", dir);
	harness_write_file(path, "[broker]\ndrain-timeout = 0.5\n");
	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	ck_assert(process_log_wait(&b, "peer=a removed: drain timeout", 10));
	ck_assert(process_log_wait(&b, "forward=small removed", 10));
	char byte;
	errno = 0;
	ssize_t n = read(held, &byte, 1);
	ck_assert_msg(n < 0 && errno == ECONNRESET, "the client saw %zd (%s), not a reset", n, strerror(errno));
	close(held);
	/* the broker runs on, and answers */
	char socket_b[300], out[4096];
	snprintf(socket_b, sizeof socket_b, "%s/control.sock", b.dir);
	const char *status[] = { "-s", socket_b, "status", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", status, out, sizeof out), 0);
	ck_assert(process_alive(&b));
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* wormhole-ctl forward add and del change forwards at run time; a reload keeps the added one. */
START_TEST(test_runtime_forwards)
{
	char dir[64], socket_b[300], out[4096];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, "");
	snprintf(socket_b, sizeof socket_b, "%s/control.sock", b.dir);
	const char *add[] = { "-s", socket_b, "forward", "add", "web", "127.0.0.1:0", "a", "small", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", add, out, sizeof out), 0);
	const char *at = strstr(out, "listening on 127.0.0.1:");
	ck_assert_msg(at, "%s", out);
	unsigned port = (unsigned)strtoul(at + strlen("listening on 127.0.0.1:"), NULL, 10);
	int fd = ping_begin(port, "added at run time");
	ping_end(fd, "bye");

	const char *twice[] = { "-s", socket_b, "forward", "add", "web", "127.0.0.1:0", "a", "small", NULL };
	ck_assert_int_ne(process_run("ctl/wormhole-ctl", twice, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "a forward of that name exists"), "%s", out);
	const char *nopeer[] = { "-s", socket_b, "forward", "add", "x", "127.0.0.1:0", "zz", "small", NULL };
	ck_assert_int_ne(process_run("ctl/wormhole-ctl", nopeer, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "PEER is not a configured peer"), "%s", out);

	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	ck_assert(process_log_wait(&b, "reloaded", 10));
	fd = ping_begin(port, "after the reload");
	ping_end(fd, "bye");
	const char *list[] = { "-s", socket_b, "--json", "forwards", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", list, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "\"forward\": \"web\"") && strstr(out, "\"origin\": \"run time\""), "%s", out);

	const char *del[] = { "-s", socket_b, "forward", "del", "web", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", del, out, sizeof out), 0);
	ck_assert_msg(harness_connect_refused(port), "the deleted forward still listens");
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* Sends size bytes after 'E', shuts the write side, reads the echo back and checks it; returns
 * the seconds it took. */
static double echo_transfer(unsigned port, size_t size)
{
	double start = harness_now();
	int fd = harness_connect_loopback(port);
	ck_assert_int_eq(write(fd, "E", 1), 1);
	harness_echo_check(fd, size, 5);
	double took = harness_now() - start;
	close(fd);
	return took;
}

/* bandwidth on a forward and on a service: 2 MiB each way at 1 MiB/s take about 4 s, every
 * byte right. */
START_TEST(test_bandwidth)
{
	char dir[64], services[512];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(services, sizeof services, "[service small]\ntarget = 127.0.0.1:%u\n"
		 "[service slow]\ntarget = 127.0.0.1:%u\nbandwidth = 1M\n", target_port, target_port);
	struct process a, b;
	brokers_start(&a, &b, dir, services, "[forward limited]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n"
		      "bandwidth = 1M\n[forward free]\nlisten = 127.0.0.1:0\npeer = a\nservice = slow\n");
	double took = echo_transfer(harness_forward_port(&b, "limited"), 2u << 20);
	ck_assert_msg(took > 3.0 && took < 60, "the forward's limit: %.2f s", took);
	took = echo_transfer(harness_forward_port(&b, "free"), 2u << 20);
	ck_assert_msg(took > 3.0 && took < 60, "the service's limit: %.2f s", took);
	fprintf(stderr, "bandwidth: 2 MiB each way at 1 MiB/s: %.2f s\n", took);
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* Whether a new connection is served ('I' answered) or closed at once. */
static bool served(unsigned port)
{
	int fd = harness_connect_loopback(port);
	char id[16];
	if (write(fd, "I", 1) == 1)
		shutdown(fd, SHUT_WR);
	size_t have = harness_read_to_end(fd, id, sizeof id, NULL);
	close(fd);
	return have > 0;
}

/* connection-rate: one client address opening connections faster is closed at once. */
START_TEST(test_connection_rate)
{
	char dir[64];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, "[forward small]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n"
		      "connection-rate = 2\n");
	unsigned port = harness_forward_port(&b, "small");
	int ok = 0;
	double start = harness_now();
	for (int i = 0; i < 12; i++)
		ok += served(port);
	double took = harness_now() - start;
	/* a burst of 2, then 2 a second: what the time taken allows, give or take one */
	ck_assert_msg(ok >= 2 && ok <= 3 + (int)(took * 2), "%d of 12 served in %.2f s", ok, took);
	ck_assert(process_log_wait(&b, "forward=small: client 127.0.0.1 opens more than connection-rate 2 a second", 10));
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* --check-config names the file and line of a bad target or listen; a listen that cannot be
 * bound stops the start with the address and the errno. */
START_TEST(test_config_errors)
{
	char dir[64], path[300], err[4096], text[512];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/bad.conf", dir);
	harness_write_file(path, "[broker]\nlisten = 127.0.0.1:0\n\n[service web]\ntarget = 127.0.0.1:80, nowhere\n\n"
			 "[peer a]\naddress = 127.0.0.1:7420\n\n[forward web]\nlisten = 127.0.0.1:99999\npeer = a\n"
			 "service = web\n\n[forward other]\nlisten = 127.0.0.1:0\npeer = z\nservice = web\n");
	const char *check[] = { "--check-config", "--config", path, NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", check, err, sizeof err), 1);
	snprintf(text, sizeof text, "%s:5: target: nowhere: wants HOST:PORT", path);
	ck_assert_msg(strstr(err, text), "%s", err);
	snprintf(text, sizeof text, "%s:11: listen: the port is not within 0..65535", path);
	ck_assert_msg(strstr(err, text), "%s", err);
	snprintf(text, sizeof text, "%s:15: [forward other]: peer z is not configured", path);
	ck_assert_msg(strstr(err, text), "%s", err);

	unsigned taken_port = 0;
	int taken = harness_listen_loopback(&taken_port, 64);
	snprintf(text, sizeof text, "[peer a]\naddress = 127.0.0.1:7420\n[forward web]\nlisten = 127.0.0.1:%u\n"
		 "peer = a\nservice = web\n", taken_port);
	harness_write_file(path, text);
	const char *start[] = { "--config", path, "--listen", "none", "--socket", "none", NULL };
	ck_assert_int_ne(process_run("broker/wormhole-broker", start, err, sizeof err), 0);
	snprintf(text, sizeof text, "forward=web: cannot listen on 127.0.0.1:%u: Address already in use "
		 "(errno %d)", taken_port, EADDRINUSE);
	ck_assert_msg(strstr(err, text), "%s", err);
	close(taken);
	harness_cleanup_dir(dir);
}
END_TEST

/* The client's answer to `request` sent through a forward on `port`, half-closed first. */
static void forward_exchange(unsigned port, const char *request, char *answer, size_t length)
{
	int fd = harness_connect_loopback(port);
	ck_assert_int_eq(write(fd, request, strlen(request)), (ssize_t)strlen(request));
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	harness_read_to_end(fd, answer, length, NULL);
	close(fd);
}

/* peer = local: a forward's connections reach this broker's own services, a target and a local
 * app listening, under each service's rule for local opens; an app's open of "local" reaches a
 * service with a target too. One broker, no peer. */
START_TEST(test_peer_local)
{
	char dir[64], path[300], config[1024], answer[64];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(config, sizeof config, "[service small]\ntarget = 127.0.0.1:%u\n\n[service closed]\nlocal = no\n\n"
		 "[forward small]\nlisten = 127.0.0.1:0\npeer = local\nservice = small\n\n"
		 "[forward app]\nlisten = 127.0.0.1:0\npeer = local\nservice = appsvc\n\n"
		 "[forward closed]\nlisten = 127.0.0.1:0\npeer = local\nservice = closed\n", target_port);
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, config);
	const char *args[] = { "--config", path, NULL };
	struct process a;
	ck_assert(broker_spawn(&a, args));

	/* to the target */
	forward_exchange(harness_forward_port(&a, "small"), "Ehello", answer, sizeof answer);
	ck_assert_str_eq(answer, "hello");

	/* to an app listening on the service */
	wh_client *app = app_attach(&a);
	ck_assert_int_eq(wh_listen(app, "appsvc"), WH_OK);
	int fd = harness_connect_loopback(harness_forward_port(&a, "app"));
	ck_assert_int_eq(write(fd, "ping", 4), 4);
	wh_stream *s;
	ck_assert_int_eq(wh_accept(app, 10000, &s), WH_OK);
	ck_assert_str_eq(wh_stream_service(s), "appsvc");
	char got[8] = "";
	app_read_exactly(s, got, 4);
	ck_assert_str_eq(got, "ping");
	ck_assert_int_eq(wh_write(s, "pong", 4), 4);
	ck_assert_int_eq(wh_shutdown(s), WH_OK);
	char reply[8];
	int error;
	harness_read_to_end(fd, reply, sizeof reply, &error);
	ck_assert_int_eq(error, 0);
	ck_assert_str_eq(reply, "pong");
	close(fd);
	wh_close(s);

	/* local = no: the client is reset and the log says why */
	fd = harness_connect_loopback(harness_forward_port(&a, "closed"));
	expect_reset_after_sending(fd, "x");
	close(fd);
	ck_assert(process_log_wait(&a, "service=closed refused", 10));

	/* wormhole-ctl forward add NAME LISTEN local SERVICE, at run time */
	char control[320], out[4096];
	snprintf(control, sizeof control, "%s/control.sock", a.dir);
	const char *add[] = { "-s", control, "forward", "add", "later", "127.0.0.1:0", "local", "small", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", add, out, sizeof out), 0);
	const char *at = strstr(out, "listening on 127.0.0.1:");
	ck_assert_msg(at, "%s", out);
	forward_exchange((unsigned)strtoul(at + strlen("listening on 127.0.0.1:"), NULL, 10), "Eagain", answer,
			 sizeof answer);
	ck_assert_str_eq(answer, "again");

	/* an app's open of "local" for a service with a target reaches the target */
	ck_assert_int_eq(wh_open(app, WH_PEER_LOCAL, "small", 5000, &s), WH_OK);
	ck_assert_int_eq(wh_write(s, "Ehi there", 9), 9);
	ck_assert_int_eq(wh_shutdown(s), WH_OK);
	char echoed[16] = "";
	app_read_exactly(s, echoed, 8);
	ck_assert_str_eq(echoed, "hi there");
	wh_close(s);
	wh_client_detach(app);
	harness_stop_child(target);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* A drain (SIGTERM) waits for a peer = local forward's connection as for a peer's: it goes on
 * carrying bytes, and the broker exits once it ends. */
START_TEST(test_peer_local_drain)
{
	char dir[64], path[300], config[512];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(config, sizeof config, "[broker]\ndrain-timeout = 30\n\n[service small]\ntarget = 127.0.0.1:%u\n\n"
		 "[forward small]\nlisten = 127.0.0.1:0\npeer = local\nservice = small\n", target_port);
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, config);
	const char *args[] = { "--config", path, NULL };
	struct process a;
	ck_assert(broker_spawn(&a, args));
	int fd = harness_connect_loopback(harness_forward_port(&a, "small"));
	char got[4] = "";
	ck_assert_int_eq(write(fd, "Pab", 3), 3);
	ck_assert_int_eq(read(fd, got, 2), 2);
	ck_assert_str_eq(got, "ab");
	ck_assert_int_eq(kill(a.pid, SIGTERM), 0);
	ck_assert(process_log_wait(&a, "draining", 10));
	usleep(300000); /* a drain that does not wait would have ended by now (it looks every 0.1 s) */
	ck_assert_int_eq(write(fd, "cd", 2), 2);
	ck_assert_int_eq(read(fd, got, 2), 2);
	ck_assert_str_eq(got, "cd");
	close(fd);
	a.keep_log = true; /* read after it exits */
	ck_assert_int_eq(process_wait(&a, 20), 0);
	ck_assert(process_log_has(&a, "drained: every stream finished"));
	harness_stop_child(target);
	process_stop(&a, SIGKILL);
	harness_cleanup_dir(dir);
}
END_TEST

/* Clients that connect and close at once (a port scan, a health checker) through a peer =
 * local forward: each is a stream ended without data. Over a peer's connection our side paces
 * such streams below the peer's reset-rate, which refuses the next opens (WH_ELIMIT): right
 * for a far broker that would close the link, wrong for the in-process link, whose far end is
 * this broker. 1500 of them at once must leave the next client served. */
START_TEST(test_peer_local_churn)
{
	char dir[64], path[300], config[512], answer[64];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(config, sizeof config, "[service small]\ntarget = 127.0.0.1:%u\n\n"
		 "[forward small]\nlisten = 127.0.0.1:0\npeer = local\nservice = small\nmax-connections = 4000\n",
		 target_port);
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, config);
	const char *args[] = { "--config", path, NULL };
	struct process a;
	ck_assert(broker_spawn(&a, args));
	unsigned port = harness_forward_port(&a, "small");
	forward_exchange(port, "Efirst", answer, sizeof answer);
	ck_assert_str_eq(answer, "first");
	for (int i = 0; i < 1500; i++)
		close(harness_connect_loopback(port));
	forward_exchange(port, "Ehello", answer, sizeof answer);
	ck_assert_msg(strcmp(answer, "hello") == 0, "the client after the churn got \"%s\"", answer);
	ck_assert(!process_log_has(&a, "faster than the peer's reset-rate"));
	harness_stop_child(target);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* A peer = local forward's streams are seen as any peer's: `wormhole-ctl conns` lists the
 * in-process link (peer local, dialled), `streams` lists a forwarded connection's stream, and
 * `close-stream` ends it (the client is reset). They were in neither view. */
START_TEST(test_peer_local_seen)
{
	char dir[64], path[300], config[512], control[320], out[8192];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(config, sizeof config, "[service small]\ntarget = 127.0.0.1:%u\n\n"
		 "[forward small]\nlisten = 127.0.0.1:0\npeer = local\nservice = small\n", target_port);
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, config);
	const char *args[] = { "--config", path, NULL };
	struct process a;
	ck_assert(broker_spawn(&a, args));
	int fd = harness_connect_loopback(harness_forward_port(&a, "small"));
	char got[4] = "";
	ck_assert_int_eq(write(fd, "Pab", 3), 3);
	ck_assert_int_eq(read(fd, got, 2), 2);
	snprintf(control, sizeof control, "%s/control.sock", a.dir);
	const char *conns[] = { "-s", control, "--json", "conns", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", conns, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "\"peer\": \"local\"") && strstr(out, "\"role\": \"dialled\""), "%s", out);
	const char *streams[] = { "-s", control, "--json", "streams", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", streams, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "\"peer\": \"local\"") && strstr(out, "\"service\": \"small\""), "%s", out);
	const char *at = strstr(out, "\"conn\": ");
	const char *id = strstr(out, "\"stream\": ");
	ck_assert(at && id);
	char which[32];
	snprintf(which, sizeof which, "%lu/%lu", strtoul(at + 8, NULL, 10), strtoul(id + 10, NULL, 10));
	const char *close_it[] = { "-s", control, "close-stream", which, NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", close_it, out, sizeof out), 0);
	errno = 0;
	ck_assert_int_le(read(fd, got, 1), 0); /* the client is reset */
	close(fd);
	harness_stop_child(target);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* max-streams bounds the streams on one peer connection; every peer = local forward shares
 * the one in-process link, so it capped them all together (max-streams = 4: the fifth client
 * of any local forward was reset, "a configured limit was reached"), below max-connections.
 * The link keeps no such bound: 8 clients with max-streams = 4 are all carried. */
START_TEST(test_peer_local_max_streams)
{
	char dir[64], path[300], config[512];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(config, sizeof config, "[broker]\nmax-streams = 4\n\n[service small]\ntarget = 127.0.0.1:%u\n\n"
		 "[forward small]\nlisten = 127.0.0.1:0\npeer = local\nservice = small\n", target_port);
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, config);
	const char *args[] = { "--config", path, NULL };
	struct process a;
	ck_assert(broker_spawn(&a, args));
	unsigned port = harness_forward_port(&a, "small");
	int fds[8];
	for (int i = 0; i < 8; i++) {
		fds[i] = harness_connect_loopback(port);
		char got[4] = "";
		ck_assert_int_eq(write(fds[i], "Pab", 3), 3);
		ck_assert_msg(read(fds[i], got, 2) == 2 && strcmp(got, "ab") == 0, "client %d: %s", i + 1,
			      strerror(errno));
	}
	for (int i = 0; i < 8; i++)
		close(fds[i]);
	harness_stop_child(target);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* ---- one address's churn against the others: client-reset-rate ------------------------------ */

#define CHURN_CLIENTS 3000 /* connect-and-close from 127.0.0.2, over three forwards */
#define GOOD_CLIENTS 300   /* from 127.0.0.1 beside them, bytes checked */
#define GOOD_BYTES 2048

static void good_bytes(unsigned seed, unsigned char out[GOOD_BYTES])
{
	for (size_t i = 0; i < GOOD_BYTES; i++)
		out[i] = (unsigned char)(seed * 131u + i * 7u);
}

/* One good client's exchange: the rest of its bytes sent (the first half went at connect),
 * the same bytes back, then EOF. */
static bool good_exchange(int fd, unsigned seed, char *why, size_t length)
{
	unsigned char out[GOOD_BYTES], in[GOOD_BYTES];
	good_bytes(seed, out);
	if (write(fd, out + GOOD_BYTES / 2, GOOD_BYTES / 2) != GOOD_BYTES / 2 || shutdown(fd, SHUT_WR) < 0) {
		snprintf(why, length, "write: %s", strerror(errno));
		return false;
	}
	size_t have = 0;
	ssize_t n = 0;
	while (have < sizeof in && (n = read(fd, in + have, sizeof in - have)) > 0)
		have += (size_t)n;
	if (have < sizeof in) {
		snprintf(why, length, "%zu of %zu bytes back, then %s", have, sizeof in,
			 n == 0 ? "EOF" : strerror(errno));
		return false;
	}
	if (memcmp(in, out, sizeof in) != 0) {
		snprintf(why, length, "the bytes differ");
		return false;
	}
	return true;
}

/* A good client: connected from 127.0.0.1, the first half of its bytes sent (-1: refused). */
static int good_begin(unsigned port, unsigned seed)
{
	unsigned char out[GOOD_BYTES];
	good_bytes(seed, out);
	int fd = harness_connect_loopback_from("127.0.0.1", port);
	if (fd >= 0 && write(fd, out, GOOD_BYTES / 2) != GOOD_BYTES / 2) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Three forwards of B to A's echo. 3,000 clients from 127.0.0.2 connect to them and close at
 * once (a port scan, connect-and-close churn; the second run: each sends a byte, and resets
 * once it came back); beside them 300 clients from 127.0.0.1 each
 * echo 2 KiB through one of them. B's streams for the churn ended early, as A's reset-rate
 * counts them: before, A's count (and B's own hold-back) refused every open on the shared
 * connection and most good clients were reset; now B refuses the churning address beyond
 * client-reset-rate and every good client is served. */
START_TEST(test_one_address_churn_spares_the_others)
{
	char dir[64];
	harness_tempdir(dir, sizeof dir);
	struct process a, b;
	brokers_start(&a, &b, dir, "# the built-in echo only\n",
		      "pool-max = 1\n" /* one connection to A: every stream shares its reset-rate */
		      "[forward c1]\nlisten = 127.0.0.1:0\npeer = a\nservice = echo\nmax-connections = 4096\n"
		      "[forward c2]\nlisten = 127.0.0.1:0\npeer = a\nservice = echo\nmax-connections = 4096\n"
		      "[forward good]\nlisten = 127.0.0.1:0\npeer = a\nservice = echo\nmax-connections = 4096\n");
	unsigned ports[3] = { harness_forward_port(&b, "c1"), harness_forward_port(&b, "c2"), harness_forward_port(&b, "good") };
	char why[160];
	int warm = good_begin(ports[2], 0);
	ck_assert_int_ge(warm, 0);
	ck_assert_msg(good_exchange(warm, 0, why, sizeof why), "warm-up: %s", why);
	close(warm);
	/* the good clients come one in ten among the churn's, and finish once it closed */
	static int churn[CHURN_CLIENTS], good[GOOD_CLIENTS];
	unsigned connected = 0;
	for (unsigned i = 0; i < CHURN_CLIENTS; i++) {
		if (i % (CHURN_CLIENTS / GOOD_CLIENTS) == 0)
			good[i / (CHURN_CLIENTS / GOOD_CLIENTS)] = good_begin(ports[i % 3], i + 1);
		connected += (churn[i] = harness_connect_loopback_from("127.0.0.2", ports[i % 3])) >= 0;
		if (_i == 1 && churn[i] >= 0)
			(void)!write(churn[i], "x", 1);
	}
	/* the second run: each sent a byte; once its echo is back (the stream carried it), all
	 * reset at once, within a second of their start (the peer's reset-rate counts those too) */
	double churned = harness_now();
	for (unsigned i = 0; _i == 1 && i < CHURN_CLIENTS; i++) {
		char byte;
		struct timeval bound = { .tv_usec = 200000 };
		if (churn[i] >= 0 && harness_now() - churned < 0.5) {
			setsockopt(churn[i], SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
			(void)!read(churn[i], &byte, 1);
		}
	}
	for (unsigned i = 0; i < CHURN_CLIENTS; i++) {
		if (churn[i] < 0)
			continue;
		if (_i == 1)
			harness_reset_close(churn[i]);
		else
			close(churn[i]);
	}
	unsigned served = 0;
	char first[200] = "";
	for (unsigned i = 0; i < GOOD_CLIENTS; i++) {
		unsigned seed = i * (CHURN_CLIENTS / GOOD_CLIENTS) + 1;
		bool ok = good[i] >= 0 && good_exchange(good[i], seed, why, sizeof why);
		served += ok;
		if (!ok && !first[0])
			snprintf(first, sizeof first, "client %u: %s", i, good[i] < 0 ? "connect refused" : why);
		if (good[i] >= 0)
			close(good[i]);
	}
	fprintf(stderr, "churn: %u of %u churning clients connected; %u of %u good clients served%s%s\n",
		connected, CHURN_CLIENTS, served, GOOD_CLIENTS, first[0] ? "; first failure: " : "", first);
	if (served != GOOD_CLIENTS) {
		process_dump_log(&b);
		ck_abort_msg("%u of %u good clients served (%s)", served, GOOD_CLIENTS, first);
	}
	if (!process_log_wait(&b, ": client 127.0.0.2 ends streams early faster than", 10)) {
		process_dump_log(&a);
		process_dump_log(&b);
		ck_abort_msg("B did not log the churning address's refusal");
	}
	/* counted per forward in wormhole-ctl forwards and the metrics */
	char socket_b[300], out[8192];
	static char all[1 << 18];
	snprintf(socket_b, sizeof socket_b, "%s/control.sock", b.dir);
	const char *forwards[] = { "-s", socket_b, "--json", "forwards", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", forwards, out, sizeof out), 0);
	long refused = 0;
	for (const char *at = out; (at = strstr(at, "\"refused_resets\": ")); at++)
		refused += strtol(at + strlen("\"refused_resets\": "), NULL, 10);
	fprintf(stderr, "churn: %ld churning connections refused (client-reset-rate)\n", refused);
	ck_assert_msg(refused > 0 && refused <= CHURN_CLIENTS, "%s", out);
	const char *metrics[] = { "-s", socket_b, "metrics", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", metrics, all, sizeof all), 0);
	ck_assert_msg(strstr(all, "wormhole_forwards_refused_resets_total{forward=\"c1\"}"), "%s", all);
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}
END_TEST

/* A client that gets no stream for a limit is logged with the peer and the limits it may be:
 * before, "no stream: limit reached". Here B's one connection to A takes two streams. */
START_TEST(test_limit_refusal_names_the_peer)
{
	char dir[64], why[160];
	harness_tempdir(dir, sizeof dir);
	struct process a, b;
	brokers_start(&a, &b, dir, "# the built-in echo only\n",
		      "pool-max = 1\nmax-streams = 2\n"
		      "[forward e]\nlisten = 127.0.0.1:0\npeer = a\nservice = echo\n");
	unsigned port = harness_forward_port(&b, "e");
	int held[2];
	for (unsigned i = 0; i < 2; i++) {
		held[i] = good_begin(port, i + 1);
		ck_assert_int_ge(held[i], 0);
	}
	int third = harness_connect_loopback_from("127.0.0.1", port);
	ck_assert_int_ge(third, 0);
	expect_reset_after_sending(third, "x");
	close(third);
	if (!process_log_wait(&b, "no stream: peer a takes no new streams from this broker for now", 10)) {
		process_dump_log(&b);
		ck_abort_msg("B's log does not name the peer and the limit");
	}
	for (unsigned i = 0; i < 2; i++) {
		ck_assert_msg(good_exchange(held[i], i + 1, why, sizeof why), "held %u: %s", i, why);
		close(held[i]);
	}
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}
END_TEST

int main(void)
{
	/* a client's write to a connection the forward reset reports EPIPE, not a signal */
	signal(SIGPIPE, SIG_IGN);
	Suite *suite = suite_create("forward");
	TCase *tc = tcase_create("forward");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_config_errors);
	TCase *listen = tcase_create("listen");
	tcase_set_timeout(listen, 60);
	tcase_add_test(listen, test_no_listen_on_a_target);
	suite_add_tcase(suite, listen);
	TCase *local = tcase_create("local");
	tcase_set_timeout(local, 60);
	tcase_add_test(local, test_peer_local);
	tcase_add_test(local, test_peer_local_drain);
	tcase_add_test(local, test_peer_local_churn);
	tcase_add_test(local, test_peer_local_seen);
	tcase_add_test(local, test_peer_local_max_streams);
	suite_add_tcase(suite, local);
	TCase *churn = tcase_create("churn");
	tcase_set_timeout(churn, 120);
	tcase_add_loop_test(churn, test_one_address_churn_spares_the_others, 0, 2);
	tcase_add_test(churn, test_limit_refusal_names_the_peer);
	suite_add_tcase(suite, churn);
	tcase_add_test(tc, test_refused_target);
	tcase_add_test(tc, test_next_target_after_a_refusal);
	tcase_add_test(tc, test_target_by_name);
	tcase_add_test(tc, test_reload_forwards);
	tcase_add_test(tc, test_balance);
	tcase_add_test(tc, test_health_checks);
	tcase_add_test(tc, test_idle_timeout);
	tcase_add_test(tc, test_connection_rate);
	tcase_add_test(tc, test_peer_removed_under_a_connection);
	tcase_add_test(tc, test_runtime_forwards);
	tcase_add_test(tc, test_bandwidth);
	tcase_add_test(tc, test_half_close_both_ways);
	tcase_add_test(tc, test_resets_both_ways);
	tcase_add_test(tc, test_slow_client_stops_the_target);
	tcase_add_test(tc, test_target_that_never_reads);
	tcase_add_test(tc, test_max_connections);
	tcase_add_test(tc, test_http_server_through_two_brokers);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
