/* Benchmark of the whole data path: app -> broker -> TCP -> broker -> app through shared
 * memory, against raw sockets measured in the same run.
 *
 *   bench_apps BROKER JSON [BULK_MIB] [STREAMS]      run every figure
 *   bench_apps serve SOCKET SERVICE echo|sink         (internal) an app server on one broker
 *
 * Brokers: A accepts peers; B keeps a pool to A. For the far figure (root only), C and D run
 * in two network namespaces joined by a link that delays every packet 25 ms each way
 * (tests/integration/delay_link.c); D has 16 MiB rings, room for window growth. App servers
 * on A, B and D answer the streams the figures open.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#include "common.h"
#include "delay_link.h"
#include "tls_baseline.h"

/* ---- the app server: every stream through wh_client_wait ------------------------------ */

struct served {
	wh_stream *stream;
	char pending[65536];
	size_t length, offset;
	bool eof;
};

static bool serve_step(struct served *s, bool echo)
{
	for (;;) {
		if (s->offset < s->length) {
			long n = wh_write(s->stream, s->pending + s->offset, s->length - s->offset);
			if (n == WH_EWOULDBLOCK)
				return true;
			if (n < 0)
				return false;
			s->offset += (size_t)n;
			continue;
		}
		if (s->eof)
			return false;
		if (!echo) { /* a sink reads in place: the zero-copy span calls */
			const void *data;
			long n = wh_read_peek(s->stream, &data);
			if (n == WH_EWOULDBLOCK)
				return true;
			if (n <= 0) {
				s->eof = true;
				wh_shutdown(s->stream);
				return false;
			}
			wh_read_consume(s->stream, (size_t)n);
			continue;
		}
		long n = wh_read(s->stream, s->pending, sizeof s->pending);
		if (n == WH_EWOULDBLOCK)
			return true;
		if (n <= 0) {
			s->eof = true;
			wh_shutdown(s->stream); /* after the last byte: the sender sees EOF */
			return false;
		}
		s->length = echo ? (size_t)n : 0;
		s->offset = 0;
	}
}

static int serve(const char *socket_path, const char *service, bool echo)
{
	raise_fd_limit();
	wh_client *client;
	if (wh_client_attach(socket_path, &client) != WH_OK || wh_listen(client, service) != WH_OK)
		return 1;
	struct wh_event events[256];
	for (;;) {
		int n = wh_client_wait(client, events, 256, -1);
		if (n < 0)
			return 1;
		for (int i = 0; i < n; i++) {
			if (!events[i].stream) {
				wh_stream *stream;
				int rc;
				while ((rc = wh_accept(client, 0, &stream)) == WH_OK) {
					struct served *s = calloc(1, sizeof *s);
					s->stream = stream;
					wh_set_nonblocking(stream, true);
					wh_stream_set_userdata(stream, s);
					if (!serve_step(s, echo)) {
						wh_close(stream);
						free(s);
					}
				}
				if (rc == WH_EBROKER_GONE)
					return 0; /* the broker went away: the run is over */
				continue;
			}
			struct served *s = wh_stream_userdata(events[i].stream);
			if (!serve_step(s, echo)) {
				wh_close(s->stream);
				free(s);
			}
		}
	}
}

/* ---- the measuring app ----------------------------------------------------------------- */

static wh_client *attach_retry(const char *socket_path)
{
	wh_client *client = NULL;
	for (int i = 0; i < 500; i++) {
		if (wh_client_attach(socket_path, &client) == WH_OK)
			return client;
		usleep(10000);
	}
	fprintf(stderr, "bench: cannot attach to %s\n", socket_path);
	exit(1);
}

static wh_stream *open_retry(wh_client *client, const char *peer, const char *service)
{
	wh_stream *s;
	for (int i = 0; i < 500; i++) { /* until the app server has registered its listener */
		int rc = wh_open(client, peer, service, 10000, &s);
		if (rc == WH_OK)
			return s;
		if (rc != WH_ENO_SERVICE) {
			fprintf(stderr, "bench: open %s/%s: %s\n", peer, service, wh_strerror(rc));
			exit(1);
		}
		usleep(10000);
	}
	exit(1);
}

/* Writes total bytes, half-closes, waits for the server's EOF; bytes/s. A sink service
 * closes only after reading everything, so the time covers delivery, not just sending. */
/* Waits until a remote service is served: a peer's refusal reaches a stream only after the
 * open, so an empty stream is opened and half-closed until its server answers with EOF. */
static void wait_served(wh_client *client, const char *peer, const char *service)
{
	for (int i = 0; i < 500; i++) {
		wh_stream *s = open_retry(client, peer, service);
		wh_shutdown(s);
		char byte;
		long r = wh_read(s, &byte, 1);
		wh_close(s);
		if (r == 0)
			return;
		usleep(10000); /* the server app has not registered its listener yet */
	}
	fprintf(stderr, "bench: %s/%s is not served\n", peer, service);
	exit(1);
}

static double app_bulk(wh_client *client, const char *peer, const char *service, size_t total)
{
	wh_stream *s = open_retry(client, peer, service);
	static char buffer[1 << 20];
	memset(buffer, 'w', sizeof buffer);
	double start = now_s();
	for (size_t sent = 0; sent < total;) {
		size_t n = total - sent < sizeof buffer ? total - sent : sizeof buffer;
		long w = wh_write(s, buffer, n);
		if (w < 0) {
			fprintf(stderr, "bench: write: %s\n", wh_strerror((int)w));
			exit(1);
		}
		sent += (size_t)w;
	}
	wh_shutdown(s);
	char byte;
	long r = wh_read(s, &byte, 1);
	double seconds = now_s() - start;
	if (r != 0) {
		fprintf(stderr, "bench: bulk did not end cleanly: %s\n", wh_strerror((int)r));
		exit(1);
	}
	wh_close(s);
	return (double)total / seconds;
}

static void app_pingpong(wh_client *client, const char *peer, double *samples, size_t n)
{
	wh_stream *s = open_retry(client, peer, "bench-echo");
	char message[64] = "ping";
	for (size_t i = 0; i < n; i++) {
		double start = now_s();
		if (wh_write(s, message, sizeof message) != sizeof message)
			exit(1);
		for (size_t got = 0; got < sizeof message;) {
			long r = wh_read(s, message + got, sizeof message - got);
			if (r <= 0)
				exit(1);
			got += (size_t)r;
		}
		samples[i] = now_s() - start;
	}
	wh_close(s);
}

/* A bulk app stream in a child process, until killed. */
static pid_t app_bulk_background(const char *socket_path, const char *peer)
{
	pid_t pid = fork();
	if (pid == 0) {
		wh_client *client = attach_retry(socket_path);
		wh_stream *s = open_retry(client, peer, "bench-sink");
		static char buffer[1 << 20];
		while (wh_write(s, buffer, sizeof buffer) > 0)
			;
		_exit(0);
	}
	return pid;
}

struct many {
	wh_stream *stream;
	size_t sent, received;
	bool done, bad;
};

static unsigned char many_byte(size_t stream, size_t i)
{
	return (unsigned char)(stream * 7 + i * 13 + (i >> 8));
}

/* What many_streams measured; memory and descriptors per stream. */
struct many_result {
	double open_rate, seconds;
	double broker_rss_open, app_rss_open; /* KiB, once open, before any byte */
	double broker_rss_peak, app_rss_peak; /* KiB, with every stream's bytes through */
	double broker_fds, app_fds;
};

/* Opens n streams, each echoing `size` checked bytes, all at once. */
static int many_streams(wh_client *client, const char *peer, size_t n, size_t size, pid_t broker,
			struct many_result *out)
{
	struct many *m = calloc(n, sizeof *m);
	long rss_before = rss_kib(broker), app_rss_before = rss_kib(getpid());
	int broker_fds = fd_count(broker), app_fds = fd_count(getpid());
	double start = now_s();
	/* The far end is broker A's built-in echo: the streams' shared memory and descriptors
	 * are all on this app's side (broker B), which is what the figure is about. */
	for (size_t i = 0; i < n; i++)
		m[i].stream = open_retry(client, peer, "echo");
	out->open_rate = (double)n / (now_s() - start);
	out->broker_rss_open = (double)(rss_kib(broker) - rss_before) / (double)n;
	out->app_rss_open = (double)(rss_kib(getpid()) - app_rss_before) / (double)n;
	/* what an app with many streams runs out of first: descriptors on each side */
	out->broker_fds = (double)(fd_count(broker) - broker_fds) / (double)n;
	out->app_fds = (double)(fd_count(getpid()) - app_fds) / (double)n;
	for (size_t i = 0; i < n; i++) {
		wh_set_nonblocking(m[i].stream, true);
		wh_stream_set_userdata(m[i].stream, &m[i]);
	}
	size_t done = 0;
	unsigned char buffer[8192];
	enum { EVENTS_MAX = 1024 };
	struct wh_event *events = calloc(EVENTS_MAX, sizeof *events);
	/* one wait for all of them: wh_client_wait reports the streams with news (every new
	 * stream once, to begin with) */
	while (done < n) {
		int ready = wh_client_wait(client, events, EVENTS_MAX, 5000);
		if (ready <= 0) {
			fprintf(stderr, "bench: %zu of %zu streams stalled\n", n - done, n);
			break;
		}
		for (int e = 0; e < ready; e++) {
			struct many *x = events[e].stream ? wh_stream_userdata(events[e].stream) : NULL;
			if (!x || x->done)
				continue;
			size_t i = (size_t)(x - m);
			while (x->sent < size) {
				size_t len = size - x->sent < sizeof buffer ? size - x->sent : sizeof buffer;
				for (size_t j = 0; j < len; j++)
					buffer[j] = many_byte(i, x->sent + j);
				long w = wh_write(x->stream, buffer, len);
				if (w <= 0)
					break;
				x->sent += (size_t)w;
				if (x->sent == size)
					wh_shutdown(x->stream);
			}
			long r;
			while ((r = wh_read(x->stream, buffer, sizeof buffer)) > 0) {
				for (long j = 0; j < r; j++)
					x->bad |= buffer[j] != many_byte(i, x->received + (size_t)j);
				x->received += (size_t)r;
			}
			if (r != WH_EWOULDBLOCK) {
				x->done = true;
				x->bad |= r != 0 || x->received != size;
				done++;
			}
		}
	}
	out->seconds = now_s() - start;
	out->broker_rss_peak = (double)(rss_kib(broker) - rss_before) / (double)n;
	out->app_rss_peak = (double)(rss_kib(getpid()) - app_rss_before) / (double)n;
	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		bad += m[i].bad || !m[i].done;
		wh_close(m[i].stream);
	}
	free(events);
	free(m);
	return bad;
}

static pid_t spawn_self(const char *self, const char *const *args)
{
	pid_t pid = fork();
	if (pid == 0) {
		const char *argv[8] = { self };
		for (int i = 0; args[i] && i < 6; i++)
			argv[i + 1] = args[i];
		execv("/proc/self/exe", (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static void stop_all(const pid_t *pids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGTERM);
	for (size_t i = 0; i < n; i++)
		if (pids[i] > 0)
			waitpid(pids[i], NULL, 0);
}

/*
 * A well-behaved stream's bulk throughput while a hostile peer attacks the broker it flows
 * through (A), as a ratio to the same bulk just before with no attack: what a peer that
 * attacks costs everyone else. The attacks are tests/hostile-peer's; each runs for a few
 * seconds from the start of its measurement (the broker ends several of them at once: the
 * bulk then runs beside what is left of them). Names figures under_attack_NAME.
 */
static const char *const bench_attacks[] = {
	"flood-ping", "flood-data", "flood-data-ended", "flood-data-empty", "flood-window",
	"flood-window-live", "flood-data-tiny", "flood-pong", "flood-error", "flood-close",
	"flood-handshake", "flood-ping-unread", "rapid-reset-close", "zero-window-many",
	"stream-hog", "slowloris", "half-header", "many-connections", "malformed-run", "idle",
	"flood-reset-data", "flood-data-held",
};
#define BENCH_ATTACKS (sizeof bench_attacks / sizeof bench_attacks[0])
static char attack_names[BENCH_ATTACKS][48];

static void attack_figures(const char *broker_path, unsigned port_a, wh_client *on_b, size_t bulk,
			   struct figure *f, int *n)
{
	/* tests/hostile-peer beside broker/wormhole-broker in the build tree */
	char hostile[4096];
	snprintf(hostile, sizeof hostile, "%s", broker_path);
	char *slash = strrchr(hostile, '/');
	if (slash)
		*slash = '\0';
	slash = strrchr(hostile, '/');
	snprintf(slash ? slash + 1 : hostile, sizeof hostile - (size_t)(slash ? slash + 1 - hostile : 0),
		 "tests/hostile-peer");
	if (access(hostile, X_OK) != 0) {
		printf("attacks: %s not built: skipped\n", hostile);
		return;
	}
	char port[16];
	snprintf(port, sizeof port, "%u", port_a);
	/* what any process that keeps a core busy costs the bulk on this machine (an attacker
	 * on the same host does at least that): the yardstick for the floods */
	double alone = app_bulk(on_b, "a", "bench-sink", bulk);
	pid_t spinner = fork();
	if (spinner == 0)
		for (volatile unsigned long spin = 0;; spin++)
			;
	double beside = app_bulk(on_b, "a", "bench-sink", bulk);
	kill(spinner, SIGKILL);
	waitpid(spinner, NULL, 0);
	printf("beside a process spinning on a core: %.1f MB/s, alone %.1f MB/s, ratio %.2f\n",
	       beside / 1e6, alone / 1e6, beside / alone);
	f[(*n)++] = (struct figure){ "bulk_beside_cpu_spinner", "MB/s", "the same bulk with no spinner",
				     beside / 1e6, alone / 1e6, NULL };
	const char *only = getenv("BENCH_ATTACK"); /* one attack by name (profiling) */
	for (size_t i = 0; i < BENCH_ATTACKS; i++) {
		if (only && strcmp(only, bench_attacks[i]) != 0)
			continue;
		alone = app_bulk(on_b, "a", "bench-sink", bulk);
		pid_t attacker = fork();
		if (attacker == 0) {
			int null = open("/dev/null", O_WRONLY);
			dup2(null, 1);
			dup2(null, 2);
			execl(hostile, hostile, bench_attacks[i], "127.0.0.1", port, "4", (char *)NULL);
			_exit(127);
		}
		usleep(300000); /* the attack under way: a start-up delay, not a wait for a condition */
		double under = app_bulk(on_b, "a", "bench-sink", bulk);
		kill(attacker, SIGKILL);
		waitpid(attacker, NULL, 0);
		printf("under attack %-18s %.1f MB/s, alone %.1f MB/s, ratio %.2f\n", bench_attacks[i],
		       under / 1e6, alone / 1e6, under / alone);
		snprintf(attack_names[i], sizeof attack_names[i], "under_attack_%s", bench_attacks[i]);
		f[(*n)++] = (struct figure){ attack_names[i], "MB/s", "the same bulk with no attack",
					     under / 1e6, alone / 1e6, NULL };
	}
}

/* Bulk from an app on C to an app on D, C and D on either side of a link with a 50 ms round
 * trip, against raw TCP over the same link. 0 with the figure, or -1 (skipped: not root, or no
 * tun here). Everything it starts, it stops. */
/* 100,000 (BENCH_SCALE_STREAMS) concurrent streams through one app and a broker pair of
 * their own, each stream's 4 KiB echoed and checked: what the app and its broker hold per
 * stream, in descriptors and resident memory. Small streams get small buffers: 4 KiB rings
 * and 16 KiB windows (the default 256 KiB window, reserved in the memory budget for each of
 * 100,000 streams, would be 25 GiB: the budget refuses streams past 8 GiB with 429). */
/* Each stream is one mapping in the app and one in its broker, and Linux allows a process
 * vm.max_map_count of them (65530 unless raised, as databases and search engines ask
 * deployments to): raised for the run when it is lower than the streams need (as root),
 * then put back. Returns the value to put back, or -1. */
static long raise_map_count(size_t streams)
{
	long current = -1, wanted = (long)streams * 2 + 65536;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	if (f) {
		if (fscanf(f, "%ld", &current) != 1)
			current = -1;
		fclose(f);
	}
	if (current < 0 || current >= wanted)
		return -1;
	f = fopen("/proc/sys/vm/max_map_count", "w");
	if (!f || fprintf(f, "%ld\n", wanted) < 0) {
		if (f)
			fclose(f);
		printf("scale: vm.max_map_count is %ld, fewer than %zu streams need: not raised\n", current, streams);
		return -1;
	}
	fclose(f);
	printf("scale: vm.max_map_count raised from %ld to %ld for the run\n", current, wanted);
	return current;
}

static long map_count_to_restore = -1; /* also put back by a run that gives up */

static void restore_map_count(long value)
{
	FILE *f = value >= 0 ? fopen("/proc/sys/vm/max_map_count", "w") : NULL;
	if (f) {
		fprintf(f, "%ld\n", value);
		fclose(f);
	}
	map_count_to_restore = -1;
}

static int scale_figures(const char *broker_path, const char *dir, size_t streams, struct figure *f, int *n)
{
	char a_port[300], a_sock[300], b_port[300], b_sock[300], peer_a[64], limit[32];
	long map_count_before = map_count_to_restore = raise_map_count(streams);
	snprintf(a_port, sizeof a_port, "%s/scale-a.port", dir);
	snprintf(a_sock, sizeof a_sock, "%s/scale-a.sock", dir);
	snprintf(b_port, sizeof b_port, "%s/scale-b.port", dir);
	snprintf(b_sock, sizeof b_sock, "%s/scale-b.sock", dir);
	snprintf(limit, sizeof limit, "%zu", streams + streams / 4);
	unsigned port_a, port_b;
	const char *args_a[] = { "--listen", "127.0.0.1:0", "--port-file", a_port, "--socket", a_sock,
				 "--keepalive", "0", "--max-streams", limit, "--connection-budget", "100",
				 "--peer-budget", "100", "--window", "16384", NULL };
	pid_t pids[2] = { spawn_broker(broker_path, args_a, a_port, &port_a), -1 };
	snprintf(peer_a, sizeof peer_a, "a=127.0.0.1:%u", port_a);
	const char *args_b[] = { "--listen", "127.0.0.1:0", "--port-file", b_port, "--socket", b_sock,
				 "--peer", peer_a, "--keepalive", "0", "--ring-size", "4096",
				 "--app-max-streams", limit, "--max-streams", limit, "--window", "16384", NULL };
	if (pids[0] > 0)
		pids[1] = spawn_broker(broker_path, args_b, b_port, &port_b);
	int bad = (int)streams;
	if (pids[1] > 0) {
		wh_client *client = attach_retry(b_sock);
		struct many_result r;
		bad = many_streams(client, "a", streams, 4096, pids[1], &r);
		wh_client_detach(client);
		printf("%zu streams x 4 KiB echoed and checked in %.2f s (%.0f opens/s); %d failed\n", streams,
		       r.seconds, r.open_rate, bad);
		f[(*n)++] = (struct figure){ "scale_streams_verified", "streams", "streams opened",
					     (double)(streams - (size_t)bad), (double)streams, "one app, 4 KiB rings" };
		f[(*n)++] = (struct figure){ "scale_streams_broker_fds", "fds/stream",
					     "a TCP connection: one per end", r.broker_fds, 1.0, NULL };
		f[(*n)++] = (struct figure){ "scale_streams_app_fds", "fds/stream",
					     "a TCP connection: one per end", r.app_fds, 1.0, NULL };
		f[(*n)++] = (struct figure){ "scale_streams_broker_rss_peak", "KiB/stream",
					     "ring memory allotted per stream", r.broker_rss_peak, 8.0,
					     "with every stream's bytes through, shared pages counted" };
		f[(*n)++] = (struct figure){ "scale_streams_app_rss_peak", "KiB/stream",
					     "ring memory allotted per stream", r.app_rss_peak, 8.0,
					     "with every stream's bytes through, shared pages counted" };
	}
	stop_all(&pids[1], 1); /* B dials A: stop it first */
	stop_all(pids, 1);
	restore_map_count(map_count_before);
	return bad;
}

static int far_figure(const char *self, const char *broker_path, const char *dir, size_t bytes,
		      struct figure *figure)
{
	/* TLS across the link, as a deployment off loopback has it */
	const char *make_certs = getenv("WH_MAKE_CERTS") ? getenv("WH_MAKE_CERTS") : "scripts/make-certs.sh";
	char certs[300], command[1024], files[6][320];
	snprintf(certs, sizeof certs, "%s/far-certs", dir);
	snprintf(command, sizeof command, "%s %s far near", make_certs, certs);
	if (system(command) != 0)
		return -1;
	const char *names[] = { "far", "near" };
	for (int i = 0; i < 2; i++) {
		snprintf(files[3 * i], sizeof files[0], "%s/%s.pem", certs, names[i]);
		snprintf(files[3 * i + 1], sizeof files[0], "%s/%s.key", certs, names[i]);
		snprintf(files[3 * i + 2], sizeof files[0], "%s/ca.pem", certs);
	}
	struct delay_link link;
	if (!delay_link_start(&link, 0.025))
		return -1;
	char d_port[300], d_sock[300], c_port[300], c_sock[300], d_listen[64], peer_far[64];
	snprintf(d_port, sizeof d_port, "%s/d.port", dir);
	snprintf(d_sock, sizeof d_sock, "%s/d.sock", dir);
	snprintf(c_port, sizeof c_port, "%s/c.port", dir);
	snprintf(c_sock, sizeof c_sock, "%s/c.sock", dir);
	snprintf(d_listen, sizeof d_listen, "%s:0", link.far_addr);
	/* Each side's processes are started from inside its namespace; the apps stay here and
	 * attach through the brokers' socket paths. */
	unsigned port_d = 0, port_c = 0;
	struct endpoint far_sink = { 0 };
	snprintf(far_sink.host, sizeof far_sink.host, "%s", link.far_addr);
	pid_t pids[4] = { -1, -1, -1, -1 };
	if (delay_link_enter(&link, DELAY_LINK_FAR)) {
		const char *args_d[] = { "--listen", d_listen, "--port-file", d_port, "--socket", d_sock,
					 "--ring-size", "16777216", "--tls-cert", files[0], "--tls-key",
					 files[1], "--tls-ca", files[2], NULL };
		pids[0] = spawn_broker(broker_path, args_d, d_port, &port_d);
		pids[1] = raw_server('d', &far_sink);
	}
	snprintf(peer_far, sizeof peer_far, "far=%s:%u", link.far_addr, port_d);
	const char *args_c[] = { "--listen", "127.0.0.1:0", "--port-file", c_port, "--socket", c_sock,
				 "--peer", peer_far, "--tls-cert", files[3], "--tls-key", files[4],
				 "--tls-ca", files[5], NULL };
	if (delay_link_enter(&link, DELAY_LINK_NEAR))
		pids[2] = spawn_broker(broker_path, args_c, c_port, &port_c);
	delay_link_enter(&link, DELAY_LINK_HOME);
	const char *serve_args[] = { "serve", d_sock, "bench-sink", "sink", NULL };
	pids[3] = spawn_self(self, serve_args);
	int rc = -1;
	if (pids[0] > 0 && pids[2] > 0 && delay_link_enter(&link, DELAY_LINK_NEAR)) {
		/* raw TCP from the near namespace; a TCP handshake takes one round trip */
		double start = now_s();
		close(raw_connect(&far_sink, false));
		printf("far link: TCP connect in %.1f ms\n", (now_s() - start) * 1e3);
		double raw = raw_bulk(&far_sink, bytes);
		delay_link_enter(&link, DELAY_LINK_HOME);
		wh_client *on_c = attach_retry(c_sock);
		double app = app_bulk(on_c, "far", "bench-sink", bytes);
		*figure = (struct figure){ "far_bulk_throughput_50ms", "MB/s",
					   "raw TCP over the same 50 ms link", app / 1e6, raw / 1e6,
					   "wormhole over TLS" };
		wh_client_detach(on_c);
		rc = 0;
	}
	delay_link_enter(&link, DELAY_LINK_HOME);
	stop_all(&pids[2], 1); /* C dials D: stop it first */
	pids[2] = -1;
	stop_all(pids, 4);
	delay_link_stop(&link);
	return rc;
}

/* TLS against plaintext and against plain OpenSSL: a second pair of brokers with
 * certificates (scripts/make-certs.sh), an app server on its A, rounds alternating the
 * plaintext pair, the TLS pair and the OpenSSL baseline. Adds its figures at f[*n]. */
static void tls_figures(const char *self, const char *broker_path, const char *dir, size_t bulk,
			size_t pings, wh_client *on_b, struct figure *f, int *n)
{
	const char *make_certs = getenv("WH_MAKE_CERTS") ? getenv("WH_MAKE_CERTS") : "scripts/make-certs.sh";
	char certs[300], command[1024];
	snprintf(certs, sizeof certs, "%s/certs", dir);
	snprintf(command, sizeof command, "%s %s a b server client", make_certs, certs);
	if (system(command) != 0) {
		fprintf(stderr, "bench: %s failed: no TLS figures\n", command);
		return;
	}
	struct tls_files side[4]; /* a, b, server, client */
	const char *names[] = { "a", "b", "server", "client" };
	for (int i = 0; i < 4; i++) {
		snprintf(side[i].cert, sizeof side[i].cert, "%s/%s.pem", certs, names[i]);
		snprintf(side[i].key, sizeof side[i].key, "%s/%s.key", certs, names[i]);
		snprintf(side[i].ca, sizeof side[i].ca, "%s/ca.pem", certs);
	}
	char a_port[300], a_sock[300], b_port[300], b_sock[300], peer[64];
	snprintf(a_port, sizeof a_port, "%s/ta.port", dir);
	snprintf(a_sock, sizeof a_sock, "%s/ta.sock", dir);
	snprintf(b_port, sizeof b_port, "%s/tb.port", dir);
	snprintf(b_sock, sizeof b_sock, "%s/tb.sock", dir);
	unsigned port_a, port_b;
	const char *args_a[] = { "--listen", "127.0.0.1:0", "--port-file", a_port, "--socket", a_sock,
				 "--keepalive", "0", "--tls-cert", side[0].cert, "--tls-key", side[0].key,
				 "--tls-ca", side[0].ca, NULL };
	pid_t pids[4] = { spawn_broker(broker_path, args_a, a_port, &port_a), -1, -1, -1 };
	snprintf(peer, sizeof peer, "a=127.0.0.1:%u", port_a);
	const char *args_b[] = { "--listen", "127.0.0.1:0", "--port-file", b_port, "--socket", b_sock,
				 "--peer", peer, "--keepalive", "0", "--tls-cert", side[1].cert,
				 "--tls-key", side[1].key, "--tls-ca", side[1].ca, NULL };
	pids[1] = spawn_broker(broker_path, args_b, b_port, &port_b);
	const char *sink_args[] = { "serve", a_sock, "bench-sink", "sink", NULL };
	const char *echo_args[] = { "serve", a_sock, "bench-echo", "echo", NULL };
	pids[2] = spawn_self(self, sink_args);
	pids[3] = spawn_self(self, echo_args);
	struct endpoint tls_sink = { 0 }, tls_echo = { 0 };
	pid_t raw[2] = { tls_raw_server('d', &side[2], &tls_sink), tls_raw_server('e', &side[2], &tls_echo) };
	if (pids[0] < 0 || pids[1] < 0) {
		fprintf(stderr, "bench: the TLS brokers did not start: no TLS figures\n");
		stop_all(&pids[1], 1);
		stop_all(pids, 4);
		stop_all(raw, 2);
		return;
	}
	wh_client *on_tb = attach_retry(b_sock);
	int rounds = bench_rounds();
	double plain[BENCH_ROUNDS_MAX], tls[BENCH_ROUNDS_MAX], openssl[BENCH_ROUNDS_MAX];
	for (int r = 0; r < rounds; r++) {
		plain[r] = app_bulk(on_b, "a", "bench-sink", bulk);
		tls[r] = app_bulk(on_tb, "a", "bench-sink", bulk);
		openssl[r] = tls_raw_bulk(&tls_sink, &side[3], bulk);
		printf("TLS bulk round %d: wormhole TLS %.1f MB/s, wormhole plaintext %.1f MB/s, OpenSSL "
		       "pair %.1f MB/s\n", r + 1, tls[r] / 1e6, plain[r] / 1e6, openssl[r] / 1e6);
	}
	double tls_bulk = percentile(tls, (size_t)rounds, 0.5) / 1e6;
	f[(*n)++] = (struct figure){ "tls_app_bulk_throughput", "MB/s", "plaintext wormhole, same run",
				     tls_bulk, percentile(plain, (size_t)rounds, 0.5) / 1e6,
				     "target >= 0.6x plaintext" };
	f[(*n)++] = (struct figure){ "tls_app_bulk_vs_openssl", "MB/s",
				     "two OpenSSL processes, TLS 1.3 over TCP", tls_bulk,
				     percentile(openssl, (size_t)rounds, 0.5) / 1e6, NULL };
	double *plain_rtt = calloc(pings, sizeof *plain_rtt), *tls_rtt = calloc(pings, sizeof *tls_rtt),
	       *openssl_rtt = calloc(pings, sizeof *openssl_rtt);
	size_t per_round = pings / (size_t)rounds, taken = per_round * (size_t)rounds;
	for (int r = 0; r < rounds; r++) {
		app_pingpong(on_b, "a", plain_rtt + (size_t)r * per_round, per_round);
		app_pingpong(on_tb, "a", tls_rtt + (size_t)r * per_round, per_round);
		tls_raw_pingpong(&tls_echo, &side[3], openssl_rtt + (size_t)r * per_round, per_round);
	}
	double tls50 = percentile(tls_rtt, taken, 0.5) * 1e6;
	f[(*n)++] = (struct figure){ "tls_app_rtt_64B_p50", "us", "plaintext wormhole, same run", tls50,
				     percentile(plain_rtt, taken, 0.5) * 1e6, "target <= 1.2x plaintext" };
	f[(*n)++] = (struct figure){ "tls_app_rtt_vs_openssl_p50", "us",
				     "two OpenSSL processes, TLS 1.3 over TCP", tls50,
				     percentile(openssl_rtt, taken, 0.5) * 1e6, NULL };
	free(plain_rtt);
	free(tls_rtt);
	free(openssl_rtt);
	wh_client_detach(on_tb);
	stop_all(&pids[1], 1); /* B dials A: stop it first */
	pids[1] = -1;
	stop_all(pids, 4);
	stop_all(raw, 2);
}

/* A run that gives up (exit from a helper) takes the brokers, servers and baselines it
 * started with it: every process whose parent it is. Only the run's own process does this,
 * not the children forked from it. */
static pid_t bench_main_pid;

static void stop_children(void)
{
	if (getpid() != bench_main_pid)
		return;
	restore_map_count(map_count_to_restore);
	DIR *dir = opendir("/proc");
	for (struct dirent *e; dir && (e = readdir(dir));) {
		char path[300], stat[512];
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		FILE *f = e->d_name[0] >= '1' && e->d_name[0] <= '9' ? fopen(path, "r") : NULL;
		if (!f)
			continue;
		size_t n = fread(stat, 1, sizeof stat - 1, f);
		fclose(f);
		stat[n] = '\0';
		const char *after_name = strrchr(stat, ')'); /* "pid (comm) state ppid ..." */
		char state;
		int ppid;
		if (after_name && sscanf(after_name + 1, " %c %d", &state, &ppid) == 2 && ppid == bench_main_pid)
			kill(atoi(e->d_name), SIGTERM);
	}
	if (dir)
		closedir(dir);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 5 && strcmp(argv[1], "serve") == 0)
		return serve(argv[2], argv[3], strcmp(argv[4], "echo") == 0);
	bench_main_pid = getpid();
	atexit(stop_children);
	if (argc < 3) {
		fprintf(stderr, "usage: bench_apps BROKER JSON [BULK_MIB] [STREAMS]\n");
		return 2;
	}
	const char *broker_path = argv[1], *json_path = argv[2];
	size_t bulk = (size_t)(argc > 3 ? atof(argv[3]) : 1024) << 20;
	size_t streams = argc > 4 ? (size_t)atol(argv[4]) : 10000;
	size_t pings = 10000;
	raise_fd_limit();

	char dir[] = "/tmp/wh-bench-apps.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char path[4][256];
	const char *names[] = { "a.port", "a.sock", "b.port", "b.sock" };
	for (int i = 0; i < 4; i++)
		snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]);
	unsigned port_a, port_b;
	const char *ring = getenv("BENCH_RING") ? getenv("BENCH_RING") : "1048576";
	/* the many-streams figure opens thousands before the server app accepts them */
	const char *args_a[] = { "--listen", "127.0.0.1:0", "--port-file", path[0], "--socket", path[1],
				 "--keepalive", "0", "--ring-size", ring, "--app-accept-backlog", "1048576",
				 NULL };
	pid_t broker_a = spawn_broker(broker_path, args_a, path[0], &port_a);
	char peer_a[64];
	snprintf(peer_a, sizeof peer_a, "a=127.0.0.1:%u", port_a);
	const char *args_b[] = { "--listen", "127.0.0.1:0", "--port-file", path[2], "--socket", path[3],
				 "--peer", peer_a, "--keepalive", "0", "--ring-size", ring, NULL };
	pid_t broker_b = spawn_broker(broker_path, args_b, path[2], &port_b);
	if (broker_a < 0 || broker_b < 0)
		return 1;
	const char *servers[][4] = {
		{ "serve", path[1], "bench-echo", "echo" }, { "serve", path[1], "bench-sink", "sink" },
		{ "serve", path[3], "bench-echo", "echo" }, { "serve", path[3], "bench-sink", "sink" },
	};
	pid_t server_pids[4];
	for (int i = 0; i < 4; i++) {
		const char *args[] = { servers[i][0], servers[i][1], servers[i][2], servers[i][3], NULL };
		server_pids[i] = spawn_self(argv[0], args);
	}
	struct endpoint tcp_sink = { 0 }, tcp_echo = { 0 }, unix_sink = { 0 }, unix_echo = { 0 },
			tcp_accept = { 0 };
	snprintf(unix_sink.path, sizeof unix_sink.path, "%s/unix-sink", dir);
	snprintf(unix_echo.path, sizeof unix_echo.path, "%s/unix-echo", dir);
	pid_t raw_pids[5] = { raw_server('d', &tcp_sink), raw_server('e', &tcp_echo),
			      raw_server('d', &unix_sink), raw_server('e', &unix_echo),
			      raw_server('d', &tcp_accept) };

	wh_client *on_b = attach_retry(path[3]);
	wait_served(on_b, "a", "bench-sink");
	wait_served(on_b, "a", "bench-echo");
	double *samples = calloc(pings, sizeof *samples);
	struct figure f[30 + BENCH_ATTACKS];
	int n = 0;
	printf("apps: bulk %zu MiB, %zu pings, %zu concurrent streams\n", bulk >> 20, pings, streams);

	int bad = 0;
	/* Bulk alternates raw and wormhole rounds and reports the median of each: on a shared
	 * machine raw TCP alone varies by ±30% from one second to the next. Ping-pong alternates
	 * too, and takes percentiles over all rounds' samples. */
	int rounds = bench_rounds();
	double raw = 0, app = 0;
	if (bench_selected("bulk")) {
		double raw_rounds[BENCH_ROUNDS_MAX], app_rounds[BENCH_ROUNDS_MAX];
		for (int r = 0; r < rounds; r++) {
			raw_rounds[r] = raw_bulk(&tcp_sink, bulk);
			app_rounds[r] = app_bulk(on_b, "a", "bench-sink", bulk);
			printf("bulk round %d: wormhole %.1f MB/s, raw TCP %.1f MB/s, ratio %.2f\n", r + 1,
			       app_rounds[r] / 1e6, raw_rounds[r] / 1e6, app_rounds[r] / raw_rounds[r]);
		}
		raw = percentile(raw_rounds, (size_t)rounds, 0.5);
		app = percentile(app_rounds, (size_t)rounds, 0.5);
		f[n++] = (struct figure){ "app_bulk_throughput", "MB/s", "raw TCP between two processes",
					  app / 1e6, raw / 1e6, NULL };
	}
	double raw50, raw99;
	if (bench_selected("rtt")) {
		double *raw_samples = calloc(pings, sizeof *raw_samples);
		size_t per_round = pings / (size_t)rounds;
		for (int r = 0; r < rounds; r++) {
			raw_pingpong(&tcp_echo, raw_samples + (size_t)r * per_round, per_round);
			app_pingpong(on_b, "a", samples + (size_t)r * per_round, per_round);
		}
		size_t taken = per_round * (size_t)rounds;
		raw50 = percentile(raw_samples, taken, 0.5) * 1e6;
		raw99 = percentile(raw_samples, taken, 0.99) * 1e6;
		free(raw_samples);
		f[n++] = (struct figure){ "app_rtt_64B_p50", "us", "raw TCP ping-pong",
					  percentile(samples, taken, 0.5) * 1e6, raw50, NULL };
		f[n++] = (struct figure){ "app_rtt_64B_p99", "us", "raw TCP ping-pong",
					  percentile(samples, taken, 0.99) * 1e6, raw99, NULL };
	}
	if (bench_selected("tls"))
		tls_figures(argv[0], broker_path, dir, bulk, pings, on_b, f, &n);
	if (bench_selected("local")) {
		raw = raw_bulk(&unix_sink, bulk);
		app = app_bulk(on_b, WH_PEER_LOCAL, "bench-sink", bulk);
		f[n++] = (struct figure){ "local_bulk_throughput", "MB/s", "Unix stream socket between two processes",
					  app / 1e6, raw / 1e6, NULL };
		raw_pingpong(&unix_echo, samples, pings);
		raw50 = percentile(samples, pings, 0.5) * 1e6;
		app_pingpong(on_b, WH_PEER_LOCAL, samples, pings);
		f[n++] = (struct figure){ "local_rtt_64B_p50", "us", "Unix socket ping-pong",
					  percentile(samples, pings, 0.5) * 1e6, raw50, NULL };
	}

	if (bench_selected("under_bulk")) {
		size_t busy = pings / 4;
		pid_t background = raw_bulk_background(&tcp_sink);
		raw_pingpong(&tcp_echo, samples, busy);
		kill(background, SIGKILL);
		waitpid(background, NULL, 0);
		raw50 = percentile(samples, busy, 0.5) * 1e6;
		background = app_bulk_background(path[3], "a");
		app_pingpong(on_b, "a", samples, busy);
		kill(background, SIGKILL);
		waitpid(background, NULL, 0);
		f[n++] = (struct figure){ "app_rtt_under_bulk_p50", "us", "raw TCP ping-pong beside a raw bulk flow",
					  percentile(samples, busy, 0.5) * 1e6, raw50, NULL };
	}

	if (bench_selected("many")) {
		double raw_rate = raw_connect_rate(&tcp_accept, 2000);
		struct many_result r;
		bad = many_streams(on_b, "a", streams, 4096, broker_b, &r);
		double open_rate = r.open_rate, rss_per_stream = r.broker_rss_open, seconds = r.seconds,
		       broker_fds = r.broker_fds, app_fds = r.app_fds;
		f[n++] = (struct figure){ "many_streams_open_rate", "streams/s", "raw TCP connections/s",
					  open_rate, raw_rate, NULL };
		f[n++] = (struct figure){ "many_streams_broker_rss", "KiB/stream", "ring memory allotted per stream",
					  rss_per_stream, 2.0 * atof(ring) / 1024, NULL };
		f[n++] = (struct figure){ "many_streams_verified", "streams", "streams opened",
					  (double)(streams - (size_t)bad), (double)streams, NULL };
		f[n++] = (struct figure){ "many_streams_broker_fds", "fds/stream",
					  "a TCP connection: one per end", broker_fds, 1.0, NULL };
		f[n++] = (struct figure){ "many_streams_app_fds", "fds/stream",
					  "a TCP connection: one per end", app_fds, 1.0, NULL };
		printf("%zu streams x 4 KiB echoed and checked in %.2f s; %d failed\n", streams, seconds, bad);
	}

	if (bench_selected("scale")) {
		const char *scale = getenv("BENCH_SCALE_STREAMS");
		bad += scale_figures(broker_path, dir, scale ? (size_t)atol(scale) : 100000, f, &n);
	}

	if (bench_selected("attacks"))
		attack_figures(broker_path, port_a, on_b, bulk / 2, f, &n);

	if (bench_selected("far") && far_figure(argv[0], broker_path, dir, bulk / 4, &f[n]) == 0)
		n++;

	report("apps: app -> broker -> TCP -> broker -> app", f, n, json_path);

	wh_client_detach(on_b);
	stop_all(&broker_b, 1); /* the dialling side first: it would redial a stopped A and warn */
	pid_t all[] = { broker_a, server_pids[0], server_pids[1], server_pids[2],
			server_pids[3], raw_pids[0], raw_pids[1], raw_pids[2], raw_pids[3], raw_pids[4] };
	stop_all(all, sizeof all / sizeof all[0]);
	free(samples);
	remove_scratch_dir(dir);
	return bad ? 1 : 0;
}
