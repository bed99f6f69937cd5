/* Forwarding, tried with unmodified programs: broker A exposes services whose streams go to
 * TCP targets, broker B forwards a local port to them. A real HTTP server and client from
 * Debian (python3 -m http.server, curl), a small target of the test's own for half-close,
 * resets and limits (max-connections, idle-timeout, bandwidth, connection-rate), targets that
 * refuse, and the config checks. Real broker processes throughout. check_forward_peers.c has
 * the cases where forwards, targets and peers change or are several. */
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "forward_scene.h"
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

/* What the process holds, on stderr (when a count is off). */
static void dump_fds(const struct process *p)
{
	char command[128];
	snprintf(command, sizeof command, "ls -l /proc/%d/fd >&2; cat /proc/%d/net/tcp | head -40 >&2",
		 (int)p->pid, (int)p->pid);
	if (system(command) != 0)
		fprintf(stderr, "(cannot list the descriptors of %d)\n", (int)p->pid);
}

/* Both brokers hold no more descriptors than they did (bounded wait): every relay and dial
 * closed its socket. */
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
	brokers_start(&a, &b, dir, services, "[forward web]\nlisten = 127.0.0.1:0\npeer = a\nservice = web\n", false);
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

/* A connection to a Unix socket, left waiting in its listen queue. */
static int connect_unix(const char *path, int type)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	snprintf(address.sun_path, sizeof address.sun_path, "%s", path);
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_msg(connect(fd, (struct sockaddr *)&address, sizeof address) == 0, "connect %s: %s", path,
		      strerror(errno));
	return fd;
}

/* Out of descriptors beyond what the budget's spare can absorb (here: B's limit lowered under
 * it, as something the budget does not count would do), an accept keeps failing while the
 * client waits in the listen queue. The forward's and the metrics listener used to look again
 * at once, a full core for as long as it lasted; the peer listener, the app socket and the
 * control socket rested once, and then spun (a one-shot timer started again without its time
 * set fires at once). Now each rests 0.1 s between tries, and takes the waiting clients once
 * descriptors are back. */
START_TEST(test_listeners_rest_when_out_of_descriptors)
{
	char dir[64];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b,
					 "[broker]\nmetrics-listen = 127.0.0.1:0\n\n"
					 "[forward small]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n");
	unsigned port = harness_forward_port(&b, "small");
	unsigned scrape_port = harness_log_port(&b, "GET /metrics served at 127.0.0.1:");
	struct rlimit before, starved;
	ck_assert_int_eq(prlimit(b.pid, RLIMIT_NOFILE, NULL, &before), 0);
	starved = (struct rlimit){ .rlim_cur = 3, .rlim_max = before.rlim_max };
	ck_assert_int_eq(prlimit(b.pid, RLIMIT_NOFILE, &starved, NULL), 0);
	int client = harness_connect_loopback(port);
	ck_assert_int_eq(write(client, "Ehello", 6), 6);
	int scraper = harness_connect_loopback(scrape_port);
	const char *request = "GET /metrics HTTP/1.0\r\n\r\n";
	ck_assert_int_eq(write(scraper, request, strlen(request)), (ssize_t)strlen(request));
	char control_path[400]; /* beside the app socket broker.sock */
	snprintf(control_path, sizeof control_path, "%s/control.sock", b.dir);
	int waiting[3] = { harness_connect_loopback(b.port), connect_unix(b.socket_path, SOCK_SEQPACKET),
			   connect_unix(control_path, SOCK_STREAM) };
	ck_assert(process_log_wait(&b, "forward=small accept: Too many open files: the listener rests", 10));
	ck_assert(process_log_wait(&b, "metrics: accept: Too many open files: the listener rests", 10));
	ck_assert(process_log_wait(&b, "broker: peer listener accept: Too many open files: the listener rests", 10));
	ck_assert(process_log_wait(&b, "apps: app socket accept: Too many open files: the listener rests", 10));
	ck_assert(process_log_wait(&b, "control: control socket accept: Too many open files: the listener rests", 10));
	assert_brokers_idle(&a, &b, "accepts failing for want of descriptors");
	ck_assert_int_eq(prlimit(b.pid, RLIMIT_NOFILE, &before, NULL), 0);
	/* the clients that waited are served */
	ck_assert_int_eq(shutdown(client, SHUT_WR), 0);
	char got[4096];
	harness_read_to_end(client, got, sizeof got, NULL);
	ck_assert_str_eq(got, "hello");
	close(client);
	harness_read_to_end(scraper, got, sizeof got, NULL);
	ck_assert_msg(strncmp(got, "HTTP/1.", 7) == 0 && strstr(got, " 200 "), "the scraper got '%.40s'", got);
	close(scraper);
	for (int i = 0; i < 3; i++)
		close(waiting[i]);
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* The local link (`peer = local`) that used up its stream ids is replaced at the next open
 * while its last streams go on; before, every local open failed for as long as one of them
 * lived. The ids run out after 3 opens here (WORMHOLE_TEST_LOCAL_IDS_LEFT), not 2^31. */
START_TEST(test_local_link_renewed_when_ids_run_out)
{
	char dir[64], path[300], text[512];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(path, sizeof path, "%s/b.conf", dir);
	snprintf(text, sizeof text, "[service small]\ntarget = 127.0.0.1:%u\n\n[forward lw]\n"
		 "listen = 127.0.0.1:0\npeer = local\nservice = small\n", target_port);
	harness_write_file(path, text);
	setenv("WORMHOLE_TEST_LOCAL_IDS_LEFT", "3", 1);
	struct process b;
	const char *args[] = { "--config", path, NULL };
	ck_assert(broker_spawn(&b, args));
	unsigned port = harness_forward_port(&b, "lw");
	int held = ping_begin(port, "the one that stays"); /* id 1 of 3 */
	/* ids 2 and 3, then eight more links of three and one open of the next: each used-up
	 * link closes as its last stream ends, and the next open may come while its other end
	 * is still closing (CI met that moment: the open failed) */
	for (int i = 0; i < 28; i++) {
		int fd = ping_begin(port, "one more");
		ping_end(fd, "one more");
	}
	ck_assert(process_log_has(&b, "the local link used up its stream ids"));
	ck_assert(!process_log_has(&b, "client reset"));
	/* the old link's stream is still in view (and close-stream could end it): two links */
	char control[320], out[16384];
	snprintf(control, sizeof control, "%s/control.sock", b.dir);
	const char *ctl_args[] = { "-s", control, "--json", "conns", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", ctl_args, out, sizeof out), 0);
	int local_links = 0;
	for (const char *at = out; (at = strstr(at, "\"peer\": \"local\"")); at++)
		local_links++;
	ck_assert_msg(local_links >= 2, "conns shows %d local links: %s", local_links, out);
	ping_end(held, "the one that stays"); /* it carried on across the renewal */
	ck_assert(process_log_wait(&b, "stream ids used up and its last stream ended: closing", 10));
	int fd = ping_begin(port, "after");
	ping_end(fd, "after");
	ck_assert_int_eq(process_stop(&b, SIGTERM), 0);
	harness_stop_child(target);
	harness_cleanup_dir(dir);
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
	brokers_start(&a, &b, dir, services, "[forward gone]\nlisten = 127.0.0.1:0\npeer = a\nservice = gone\n", false);
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
	brokers_start(&a, &b, dir, services, "[forward small]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n", false);
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
	brokers_start(&a, &b, dir, services, "[forward small]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n", false);
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
		      "bandwidth = 1M\n[forward free]\nlisten = 127.0.0.1:0\npeer = a\nservice = slow\n", false);
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
	tcase_add_test(listen, test_listeners_rest_when_out_of_descriptors);
	suite_add_tcase(suite, listen);
	tcase_add_test(tc, test_refused_target);
	tcase_add_test(tc, test_next_target_after_a_refusal);
	tcase_add_test(tc, test_target_by_name);
	tcase_add_test(tc, test_idle_timeout);
	tcase_add_test(tc, test_connection_rate);
	tcase_add_test(tc, test_bandwidth);
	tcase_add_test(tc, test_half_close_both_ways);
	tcase_add_test(tc, test_resets_both_ways);
	tcase_add_test(tc, test_slow_client_stops_the_target);
	tcase_add_test(tc, test_target_that_never_reads);
	tcase_add_test(tc, test_max_connections);
	tcase_add_test(tc, test_local_link_renewed_when_ids_run_out);
	tcase_add_test(tc, test_http_server_through_two_brokers);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
