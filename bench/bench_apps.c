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
#include <sys/mman.h>
#include <sys/prctl.h>
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

/* A bulk app stream in a child process, until killed; it counts the bytes it wrote in
 * *written (shared memory), so the bench can tell its speed beside a ping from alone. */
static pid_t app_bulk_background(const char *socket_path, const char *peer,
				 volatile uint64_t *written)
{
	pid_t pid = fork();
	if (pid == 0) {
		wh_client *client = attach_retry(socket_path);
		wh_stream *s = open_retry(client, peer, "bench-sink");
		static char buffer[1 << 20];
		long w;
		while ((w = wh_write(s, buffer, sizeof buffer)) > 0)
			__atomic_add_fetch(written, (uint64_t)w, __ATOMIC_RELAXED);
		_exit(0);
	}
	return pid;
}

/* Bytes a second the background bulk stream moved over `seconds` from now. */
static double bulk_rate_over(volatile uint64_t *written, double seconds)
{
	uint64_t before = __atomic_load_n(written, __ATOMIC_RELAXED);
	double start = now_s();
	usleep((useconds_t)(seconds * 1e6));
	return (double)(__atomic_load_n(written, __ATOMIC_RELAXED) - before) / (now_s() - start);
}

/* Ping-pong on one stream while another stream of the same brokers runs bulk: the ping's
 * p50 and p99, and the bulk stream's speed beside the pings against alone (the mean of a
 * window before and one after them, each as long as the pings took). */
static void under_bulk_figures(wh_client *on_b, const char *socket_path, const struct endpoint *sink,
			       const struct endpoint *echo, double *samples, size_t busy,
			       struct figure *f, int *n)
{
	pid_t background = raw_bulk_background(sink);
	raw_pingpong(echo, samples, busy);
	kill(background, SIGKILL);
	waitpid(background, NULL, 0);
	double raw50 = percentile(samples, busy, 0.5) * 1e6, raw99 = percentile(samples, busy, 0.99) * 1e6;
	volatile uint64_t *written = mmap(NULL, sizeof *written, PROT_READ | PROT_WRITE,
					  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (written == MAP_FAILED)
		exit(1);
	*written = 0;
	background = app_bulk_background(socket_path, "a", written);
	for (double until = now_s() + 10; now_s() < until;) /* attached, opened, window grown */
		if (__atomic_load_n(written, __ATOMIC_RELAXED) >= (16u << 20))
			break;
		else
			usleep(1000);
	double alone_before = bulk_rate_over(written, 0.3);
	uint64_t at_start = __atomic_load_n(written, __ATOMIC_RELAXED);
	double start = now_s();
	app_pingpong(on_b, "a", samples, busy);
	double seconds = now_s() - start;
	double beside = (double)(__atomic_load_n(written, __ATOMIC_RELAXED) - at_start) / seconds;
	double alone = (alone_before + bulk_rate_over(written, seconds > 0.3 ? seconds : 0.3)) / 2;
	kill(background, SIGKILL);
	waitpid(background, NULL, 0);
	munmap((void *)written, sizeof *written);
	f[(*n)++] = (struct figure){ "app_rtt_under_bulk_p50", "us", "raw TCP ping-pong beside a raw bulk flow",
				     percentile(samples, busy, 0.5) * 1e6, raw50, NULL, false };
	f[(*n)++] = (struct figure){ "app_rtt_under_bulk_p99", "us", "raw TCP ping-pong beside a raw bulk flow",
				     percentile(samples, busy, 0.99) * 1e6, raw99, NULL, false };
	f[(*n)++] = (struct figure){ "app_bulk_beside_ping", "MB/s", "the same bulk stream without the pings",
				     beside / 1e6, alone / 1e6, "ratio: the bulk stream's share kept", false };
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
 * through (A), as a ratio to the same bulk with no attack: what a peer that attacks costs
 * everyone else. The attacks are tests/hostile-peer's. An attacker is present for the whole
 * measured transfer: it runs the attack again as soon as a run ends, whether the broker
 * closed it or its time ran out, as a real one would reconnect; the note says how many runs
 * the transfer saw and how many the broker cut short. Rounds alternate alone and under
 * attack; each figure is the median of each side. Names figures under_attack_NAME.
 */
static const char *const bench_attacks[] = {
	"flood-ping", "flood-data", "flood-data-ended", "flood-data-empty", "flood-window",
	"flood-window-live", "flood-data-tiny", "flood-pong", "flood-error", "flood-close",
	"flood-handshake", "flood-ping-unread", "rapid-reset-close", "zero-window-many",
	"stream-hog", "slowloris", "half-header", "many-connections", "malformed-run", "idle",
	"flood-reset-data", "flood-data-held",
};
#define BENCH_ATTACKS (sizeof bench_attacks / sizeof bench_attacks[0])
#define ATTACK_RUN_SECONDS 4.0

/* counters (shared with the child): [0] runs finished, [1] of them ended by the broker
 * before their time (run_seconds; 0: runs that end by themselves, none counted). A run that
 * failed at once is retried after 10 ms, so a refused attacker measures the broker's
 * refusals, not how fast this machine can fork. argv[0] is the program. */
static pid_t attack_loop(const char *const *argv, double run_seconds, unsigned long *counters)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int null = open("/dev/null", O_WRONLY);
	for (;;) {
		double start = now_s();
		pid_t run = fork();
		if (run == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			dup2(null, 1);
			dup2(null, 2);
			execv(argv[0], (char *const *)argv);
			_exit(127);
		}
		int status = 0;
		waitpid(run, &status, 0);
		double lasted = now_s() - start;
		__atomic_add_fetch(&counters[0], 1, __ATOMIC_RELAXED);
		if (run_seconds > 0 && lasted < run_seconds - 0.25)
			__atomic_add_fetch(&counters[1], 1, __ATOMIC_RELAXED);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
			_exit(127);
		if (lasted < 0.01)
			usleep(10000);
	}
}

/* tests/NAME beside broker/wormhole-broker in the build tree */
static void test_tool_path(const char *broker_path, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s", broker_path);
	char *slash = strrchr(out, '/');
	if (slash)
		*slash = '\0';
	slash = strrchr(out, '/');
	snprintf(slash ? slash + 1 : out, len - (size_t)(slash ? slash + 1 - out : 0), "tests/%s", name);
}

static void hostile_peer_path(const char *broker_path, char *out, size_t len)
{
	test_tool_path(broker_path, "hostile-peer", out, len);
}

/* The bulk through `client` to peer a's sink, alone and with the attack (argv, argv[1] its
 * name) looping for the whole transfer; adds the figure `prefix``argv[1]`. */
static void one_attack_figure(const char *const *argv, double run_seconds, const char *prefix,
			      wh_client *client, size_t bulk, unsigned long *counters, struct figure *f,
			      int *n)
{
	int rounds = bench_rounds();
	double alone[BENCH_ROUNDS_MAX], under[BENCH_ROUNDS_MAX];
	unsigned long runs = 0, cut_short = 0;
	for (int r = 0; r < rounds; r++) {
		alone[r] = app_bulk(client, "a", "bench-sink", bulk);
		counters[0] = counters[1] = 0;
		pid_t attacker = attack_loop(argv, run_seconds, counters);
		usleep(300000); /* the first run under way: a start-up delay; later runs follow it */
		unsigned long runs_before = __atomic_load_n(&counters[0], __ATOMIC_RELAXED);
		unsigned long cut_before = __atomic_load_n(&counters[1], __ATOMIC_RELAXED);
		under[r] = app_bulk(client, "a", "bench-sink", bulk);
		/* the run in progress at the end counts as one the transfer saw */
		runs += __atomic_load_n(&counters[0], __ATOMIC_RELAXED) - runs_before + 1;
		cut_short += __atomic_load_n(&counters[1], __ATOMIC_RELAXED) - cut_before;
		kill(attacker, SIGKILL);
		waitpid(attacker, NULL, 0);
	}
	double a = percentile(alone, (size_t)rounds, 0.5), u = percentile(under, (size_t)rounds, 0.5);
	printf("%s%-18s %.1f MB/s, alone %.1f MB/s, ratio %.2f; %lu attack runs, %lu cut short by the "
	       "broker\n", prefix, argv[1], u / 1e6, a / 1e6, u / a, runs, cut_short);
	/* names and notes live as long as the run: the report is printed at its end */
	char *name = malloc(64), *note = malloc(96);
	if (!name || !note)
		exit(1);
	snprintf(name, 64, "%s%s", prefix, argv[1]);
	if (run_seconds > 0)
		snprintf(note, 96, "%d rounds: %lu attack runs, %lu cut short by the broker", rounds, runs,
			 cut_short);
	else
		snprintf(note, 96, "%d rounds: %lu attack runs, each to its end", rounds, runs);
	f[(*n)++] = (struct figure){ name, "MB/s", "the same bulk with no attack", u / 1e6, a / 1e6, note,
				     false };
}

/* A hostile-peer attack on the broker at port: its argument vector. */
static void peer_attack_argv(const char *hostile, const char *attack, const char *port,
			     const char *argv[6])
{
	argv[0] = hostile;
	argv[1] = attack;
	argv[2] = "127.0.0.1";
	argv[3] = port;
	argv[4] = "4"; /* ATTACK_RUN_SECONDS */
	argv[5] = NULL;
}

static void attack_figures(const char *broker_path, unsigned port_a, wh_client *on_b, size_t bulk,
			   struct figure *f, int *n)
{
	char hostile[4096];
	hostile_peer_path(broker_path, hostile, sizeof hostile);
	if (access(hostile, X_OK) != 0) {
		printf("attacks: %s not built: skipped\n", hostile);
		return;
	}
	char port[16];
	snprintf(port, sizeof port, "%u", port_a);
	/* what any process that keeps a core busy costs the bulk on this machine (an attacker
	 * on the same host does at least that): the yardstick for the floods */
	int rounds = bench_rounds();
	double alone[BENCH_ROUNDS_MAX], beside[BENCH_ROUNDS_MAX];
	for (int r = 0; r < rounds; r++) {
		alone[r] = app_bulk(on_b, "a", "bench-sink", bulk);
		pid_t spinner = fork();
		if (spinner == 0)
			for (volatile unsigned long spin = 0;; spin++)
				;
		beside[r] = app_bulk(on_b, "a", "bench-sink", bulk);
		kill(spinner, SIGKILL);
		waitpid(spinner, NULL, 0);
	}
	double a = percentile(alone, (size_t)rounds, 0.5), b = percentile(beside, (size_t)rounds, 0.5);
	printf("beside a process spinning on a core: %.1f MB/s, alone %.1f MB/s, ratio %.2f\n", b / 1e6,
	       a / 1e6, b / a);
	f[(*n)++] = (struct figure){ "bulk_beside_cpu_spinner", "MB/s", "the same bulk with no spinner",
				     b / 1e6, a / 1e6, NULL, false };
	unsigned long *counters = mmap(NULL, 2 * sizeof *counters, PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counters == MAP_FAILED)
		return;
	const char *only = getenv("BENCH_ATTACK"); /* one attack by name (profiling) */
	for (size_t i = 0; i < BENCH_ATTACKS; i++)
		if (!only || strcmp(only, bench_attacks[i]) == 0) {
			const char *argv[6];
			peer_attack_argv(hostile, bench_attacks[i], port, argv);
			one_attack_figure(argv, ATTACK_RUN_SECONDS, "under_attack_", on_b, bulk, counters, f, n);
		}
	munmap(counters, 2 * sizeof *counters);
}

/*
 * A hostile local app (tests/hostile-app) attached to the broker the bulk starts from (B),
 * attacking it in a loop for the whole transfer: what an app that misbehaves costs another
 * app's bulk through the same broker. Names figures app_attack_NAME.
 */
static const char *const bench_app_attacks[] = {
	"news-blocking", "doorbell-drained", "stream-fd-full", "local-wait-blocking",
	"never-read", "corrupt-positions", "malformed-each", "exhaust",
};
#define BENCH_APP_ATTACKS (sizeof bench_app_attacks / sizeof bench_app_attacks[0])

static void app_attack_figures(const char *broker_path, const char *socket_b, wh_client *on_b,
			       size_t bulk, struct figure *f, int *n)
{
	char hostile[4096];
	test_tool_path(broker_path, "hostile-app", hostile, sizeof hostile);
	if (access(hostile, X_OK) != 0) {
		printf("app attacks: %s not built: skipped\n", hostile);
		return;
	}
	unsigned long *counters = mmap(NULL, 2 * sizeof *counters, PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counters == MAP_FAILED)
		return;
	const char *only = getenv("BENCH_ATTACK");
	for (size_t i = 0; i < BENCH_APP_ATTACKS; i++)
		if (!only || strcmp(only, bench_app_attacks[i]) == 0) {
			const char *argv[] = { hostile, bench_app_attacks[i], socket_b, "a", NULL };
			one_attack_figure(argv, 0, "app_attack_", on_b, bulk, counters, f, n);
		}
	munmap(counters, 2 * sizeof *counters);
}

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
				 "--app-max-streams", limit, "--max-streams", limit, "--window", "16384",
				 "--app-peer-budget", "100", NULL };
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
					     (double)(streams - (size_t)bad), (double)streams, "one app, 4 KiB rings", true };
		f[(*n)++] = (struct figure){ "scale_streams_broker_fds", "fds/stream",
					     "a TCP connection: one per end", r.broker_fds, 1.0, NULL, true };
		f[(*n)++] = (struct figure){ "scale_streams_app_fds", "fds/stream",
					     "a TCP connection: one per end", r.app_fds, 1.0, NULL, true };
		f[(*n)++] = (struct figure){ "scale_streams_broker_rss_peak", "KiB/stream",
					     "ring memory allotted per stream", r.broker_rss_peak, 8.0,
					     "with every stream's bytes through, shared pages counted", true };
		f[(*n)++] = (struct figure){ "scale_streams_app_rss_peak", "KiB/stream",
					     "ring memory allotted per stream", r.app_rss_peak, 8.0,
					     "with every stream's bytes through, shared pages counted", true };
	}
	stop_all(&pids[1], 1); /* B dials A: stop it first */
	stop_all(pids, 1);
	restore_map_count(map_count_before);
	return bad;
}

/* The far figures' processes: brokers C (near) and D (far) in plaintext, C' and D' over TLS,
 * a raw TCP sink and a TLS sink beside D, and an app sink on each D. */
struct far_setup {
	struct delay_link link;
	struct tls_files near, far;
	struct endpoint raw_sink, tls_sink;
	char c_sock[2][300];
	pid_t pids[8];
};

/* Starts one pair across the link: D listens at the far end, C dials it. tls: with certificates. */
static bool far_pair(struct far_setup *fs, const char *broker_path, const char *self, const char *dir,
		     bool tls, pid_t *pids)
{
	const char *tag = tls ? "tls-" : "";
	char d_port[300], d_sock[300], c_port[300], d_listen[64], peer_far[64];
	snprintf(d_port, sizeof d_port, "%s/%sd.port", dir, tag);
	snprintf(d_sock, sizeof d_sock, "%s/%sd.sock", dir, tag);
	snprintf(c_port, sizeof c_port, "%s/%sc.port", dir, tag);
	snprintf(fs->c_sock[tls], sizeof fs->c_sock[tls], "%s/%sc.sock", dir, tag);
	snprintf(d_listen, sizeof d_listen, "%s:0", fs->link.far_addr);
	unsigned port_d = 0, port_c = 0;
	/* Each side's processes start inside its namespace; the apps attach by socket path. */
	if (!delay_link_enter(&fs->link, DELAY_LINK_FAR))
		return false;
	const char *args_d[20] = { "--listen", d_listen, "--port-file", d_port, "--socket", d_sock,
				   "--ring-size", "16777216", NULL };
	const char *tls_d[] = { "--tls-cert", fs->far.cert, "--tls-key", fs->far.key, "--tls-ca", fs->far.ca, NULL };
	/* Off loopback plaintext is asked for, and a plaintext peer may open only services that
	 * every peer may (docs/SECURITY.md): a config file says so for the sink. */
	char d_conf[300];
	snprintf(d_conf, sizeof d_conf, "%s/d.conf", dir);
	FILE *conf = tls ? NULL : fopen(d_conf, "w");
	if (conf) {
		fprintf(conf, "[broker]\nlisten-plaintext = yes\n[service bench-sink]\npeers = *\n");
		fclose(conf);
	}
	const char *plain_d[] = { "--config", d_conf, NULL };
	for (int i = 0; (tls ? tls_d : plain_d)[i]; i++)
		args_d[8 + i] = (tls ? tls_d : plain_d)[i];
	pids[0] = spawn_broker(broker_path, args_d, d_port, &port_d);
	snprintf(peer_far, sizeof peer_far, "far=%s:%u", fs->link.far_addr, port_d);
	if (!delay_link_enter(&fs->link, DELAY_LINK_NEAR))
		return false;
	const char *args_c[20] = { "--listen", "127.0.0.1:0", "--port-file", c_port, "--socket",
				   fs->c_sock[tls], "--peer", peer_far, NULL };
	const char *tls_c[] = { "--tls-cert", fs->near.cert, "--tls-key", fs->near.key, "--tls-ca", fs->near.ca, NULL };
	const char *plain_c[] = { "--plaintext", "yes", NULL };
	for (int i = 0; (tls ? tls_c : plain_c)[i]; i++)
		args_c[8 + i] = (tls ? tls_c : plain_c)[i];
	if (pids[0] > 0)
		pids[1] = spawn_broker(broker_path, args_c, c_port, &port_c);
	delay_link_enter(&fs->link, DELAY_LINK_HOME);
	const char *serve_args[] = { "serve", d_sock, "bench-sink", "sink", NULL };
	pids[2] = spawn_self(self, serve_args);
	return pids[0] > 0 && pids[1] > 0;
}

static bool far_certs(struct far_setup *fs, const char *dir)
{
	const char *make_certs = getenv("WH_MAKE_CERTS") ? getenv("WH_MAKE_CERTS") : "scripts/make-certs.sh";
	char certs[300], command[1024];
	snprintf(certs, sizeof certs, "%s/far-certs", dir);
	snprintf(command, sizeof command, "%s %s far near", make_certs, certs);
	if (system(command) != 0)
		return false;
	struct tls_files *side[] = { &fs->far, &fs->near };
	const char *names[] = { "far", "near" };
	for (int i = 0; i < 2; i++) {
		snprintf(side[i]->cert, sizeof side[i]->cert, "%s/%s.pem", certs, names[i]);
		snprintf(side[i]->key, sizeof side[i]->key, "%s/%s.key", certs, names[i]);
		snprintf(side[i]->ca, sizeof side[i]->ca, "%s/ca.pem", certs);
	}
	return true;
}

/* Bulk from an app on C to an app on D across a link with a 50 ms round trip: in plaintext
 * against raw TCP over the same link, and over TLS against two OpenSSL processes over the
 * same link; rounds alternate, medians. Adds two figures at f[*n], or none (not root, no tun,
 * no certificates). Everything it starts, it stops. */
static void far_figures(const char *self, const char *broker_path, const char *dir, size_t bytes,
			struct figure *f, int *n)
{
	struct far_setup fs = { .pids = { -1, -1, -1, -1, -1, -1, -1, -1 } };
	if (!far_certs(&fs, dir) || !delay_link_start(&fs.link, 0.025))
		return;
	snprintf(fs.raw_sink.host, sizeof fs.raw_sink.host, "%s", fs.link.far_addr);
	snprintf(fs.tls_sink.host, sizeof fs.tls_sink.host, "%s", fs.link.far_addr);
	if (delay_link_enter(&fs.link, DELAY_LINK_FAR)) {
		fs.pids[6] = raw_server('d', &fs.raw_sink);
		fs.pids[7] = tls_raw_server('d', &fs.far, &fs.tls_sink);
	}
	bool up = far_pair(&fs, broker_path, self, dir, false, &fs.pids[0]) &&
		  far_pair(&fs, broker_path, self, dir, true, &fs.pids[3]);
	if (up) {
		wh_client *plain_c = attach_retry(fs.c_sock[0]), *tls_c = attach_retry(fs.c_sock[1]);
		wait_served(plain_c, "far", "bench-sink");
		wait_served(tls_c, "far", "bench-sink");
		int rounds = bench_rounds();
		double raw[BENCH_ROUNDS_MAX], plain[BENCH_ROUNDS_MAX], pair[BENCH_ROUNDS_MAX], tls[BENCH_ROUNDS_MAX];
		for (int r = 0; r < rounds; r++) {
			delay_link_enter(&fs.link, DELAY_LINK_NEAR); /* the baselines dial from C's side */
			raw[r] = raw_bulk(&fs.raw_sink, bytes);
			pair[r] = tls_raw_bulk(&fs.tls_sink, &fs.near, bytes);
			delay_link_enter(&fs.link, DELAY_LINK_HOME);
			plain[r] = app_bulk(plain_c, "far", "bench-sink", bytes);
			tls[r] = app_bulk(tls_c, "far", "bench-sink", bytes);
			printf("far round %d: wormhole %.1f MB/s, raw TCP %.1f; wormhole TLS %.1f, OpenSSL pair %.1f\n",
			       r + 1, plain[r] / 1e6, raw[r] / 1e6, tls[r] / 1e6, pair[r] / 1e6);
		}
		size_t k = (size_t)rounds;
		f[(*n)++] = (struct figure){ "far_bulk_throughput_50ms", "MB/s", "raw TCP over the same 50 ms link",
					     percentile(plain, k, 0.5) / 1e6, percentile(raw, k, 0.5) / 1e6,
					     "plaintext brokers", false };
		f[(*n)++] = (struct figure){ "far_tls_bulk_throughput_50ms", "MB/s",
					     "two OpenSSL processes over the same 50 ms link",
					     percentile(tls, k, 0.5) / 1e6, percentile(pair, k, 0.5) / 1e6,
					     "brokers over TLS", false };
		wh_client_detach(plain_c);
		wh_client_detach(tls_c);
	}
	delay_link_enter(&fs.link, DELAY_LINK_HOME);
	stop_all(&fs.pids[1], 1); /* C dials D: stop it first */
	stop_all(&fs.pids[4], 1);
	fs.pids[1] = fs.pids[4] = -1;
	stop_all(fs.pids, 8);
	delay_link_stop(&fs.link);
}

/* Strangers at a TLS listener (tests/hostile-peer's stranger-* attacks: ClientHellos from
 * 1000 addresses in turn, unfinished handshakes held, junk from one address): what they cost
 * an authenticated peer's bulk through that listener. Names figures tls_under_attack_NAME. */
static void tls_stranger_figures(const char *broker_path, unsigned port, wh_client *client,
				 size_t bulk, struct figure *f, int *n)
{
	static const char *const strangers[] = { "stranger-rotate", "stranger-hold", "stranger-junk" };
	char hostile[4096], port_text[16];
	hostile_peer_path(broker_path, hostile, sizeof hostile);
	if (access(hostile, X_OK) != 0)
		return;
	unsigned long *counters = mmap(NULL, 2 * sizeof *counters, PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counters == MAP_FAILED)
		return;
	snprintf(port_text, sizeof port_text, "%u", port);
	const char *only = getenv("BENCH_ATTACK");
	for (size_t i = 0; i < sizeof strangers / sizeof strangers[0]; i++)
		if (!only || strcmp(only, strangers[i]) == 0) {
			const char *argv[6];
			peer_attack_argv(hostile, strangers[i], port_text, argv);
			one_attack_figure(argv, ATTACK_RUN_SECONDS, "tls_under_attack_", client, bulk,
					  counters, f, n);
		}
	munmap(counters, 2 * sizeof *counters);
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
	double tls_cpu[BENCH_ROUNDS_MAX], openssl_cpu[BENCH_ROUNDS_MAX]; /* CPU seconds per GB */
	for (int r = 0; r < rounds; r++) {
		plain[r] = app_bulk(on_b, "a", "bench-sink", bulk);
		double busy = machine_busy_seconds();
		tls[r] = app_bulk(on_tb, "a", "bench-sink", bulk);
		double between = machine_busy_seconds();
		openssl[r] = tls_raw_bulk(&tls_sink, &side[3], bulk);
		tls_cpu[r] = (between - busy) / ((double)bulk / 1e9);
		openssl_cpu[r] = (machine_busy_seconds() - between) / ((double)bulk / 1e9);
		printf("TLS bulk round %d: wormhole TLS %.1f MB/s, wormhole plaintext %.1f MB/s, OpenSSL "
		       "pair %.1f MB/s\n", r + 1, tls[r] / 1e6, plain[r] / 1e6, openssl[r] / 1e6);
	}
	double tls_bulk = percentile(tls, (size_t)rounds, 0.5) / 1e6;
	f[(*n)++] = (struct figure){ "tls_app_bulk_throughput", "MB/s", "plaintext wormhole, same run",
				     tls_bulk, percentile(plain, (size_t)rounds, 0.5) / 1e6,
				     "target >= 0.6x plaintext", false };
	f[(*n)++] = (struct figure){ "tls_app_bulk_vs_openssl", "MB/s",
				     "two OpenSSL processes, TLS 1.3 over TCP", tls_bulk,
				     percentile(openssl, (size_t)rounds, 0.5) / 1e6, NULL, false };
	/* What bounds the two on a machine whose CPUs they keep busy: the CPU each byte takes,
	 * both apps, both brokers and the kernel against the OpenSSL pair (lower is better) */
	f[(*n)++] = (struct figure){ "tls_app_bulk_cpu_per_gb", "CPU s/GB",
				     "two OpenSSL processes, TLS 1.3 over TCP",
				     percentile(tls_cpu, (size_t)rounds, 0.5),
				     percentile(openssl_cpu, (size_t)rounds, 0.5),
				     "the whole machine's busy time over the transfer; lower is better", false };
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
				     percentile(plain_rtt, taken, 0.5) * 1e6, "target <= 1.2x plaintext", false };
	f[(*n)++] = (struct figure){ "tls_app_rtt_vs_openssl_p50", "us",
				     "two OpenSSL processes, TLS 1.3 over TCP", tls50,
				     percentile(openssl_rtt, taken, 0.5) * 1e6, NULL, false };
	free(plain_rtt);
	free(tls_rtt);
	free(openssl_rtt);
	tls_stranger_figures(broker_path, port_a, on_tb, bulk / 2, f, n);
	wh_client_detach(on_tb);
	stop_all(&pids[1], 1); /* B dials A: stop it first */
	pids[1] = -1;
	stop_all(pids, 4);
	stop_all(raw, 2);
}

/* A same-host stream (two apps on one broker) against a Unix stream socket between two
 * processes. The socket writes at the size that was fastest in a trial of each candidate
 * (said in the table), and both sides take several rounds, alternating, medians. */
static void local_figures(wh_client *on_b, const struct endpoint *unix_sink,
			  const struct endpoint *unix_echo, size_t bulk, double *samples,
			  size_t pings, struct figure *f, int *n)
{
	static const size_t sizes[] = { 64 * 1024, 256 * 1024, 1024 * 1024 };
	static char label[96];
	size_t best = sizes[0];
	double best_rate = 0;
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		double rate = raw_bulk_sized(unix_sink, bulk / 2, sizes[i]);
		if (rate > best_rate) {
			best_rate = rate;
			best = sizes[i];
		}
	}
	int rounds = bench_rounds();
	double raw[BENCH_ROUNDS_MAX], app[BENCH_ROUNDS_MAX];
	for (int r = 0; r < rounds; r++) {
		raw[r] = raw_bulk_sized(unix_sink, bulk, best);
		app[r] = app_bulk(on_b, WH_PEER_LOCAL, "bench-sink", bulk);
		printf("local bulk round %d: wormhole %.1f MB/s, Unix socket %.1f MB/s\n", r + 1,
		       app[r] / 1e6, raw[r] / 1e6);
	}
	snprintf(label, sizeof label, "Unix stream socket between two processes, %zu KiB writes",
		 best / 1024);
	f[(*n)++] = (struct figure){ "local_bulk_throughput", "MB/s", label,
				     percentile(app, (size_t)rounds, 0.5) / 1e6,
				     percentile(raw, (size_t)rounds, 0.5) / 1e6, NULL, false };
	double *raw_samples = calloc(pings, sizeof *raw_samples);
	size_t per_round = pings / (size_t)rounds, taken = per_round * (size_t)rounds;
	for (int r = 0; r < rounds; r++) {
		raw_pingpong(unix_echo, raw_samples + (size_t)r * per_round, per_round);
		app_pingpong(on_b, WH_PEER_LOCAL, samples + (size_t)r * per_round, per_round);
	}
	f[(*n)++] = (struct figure){ "local_rtt_64B_p50", "us", "Unix socket ping-pong",
				     percentile(samples, taken, 0.5) * 1e6,
				     percentile(raw_samples, taken, 0.5) * 1e6, NULL, false };
	free(raw_samples);
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
	/* one app opens the 10,000 streams: its share of a peer is the peer's whole share */
	const char *args_b[] = { "--listen", "127.0.0.1:0", "--port-file", path[2], "--socket", path[3],
				 "--peer", peer_a, "--keepalive", "0", "--ring-size", ring,
				 "--app-peer-budget", "100", NULL };
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
			      raw_server('a', &tcp_accept) };

	wh_client *on_b = attach_retry(path[3]);
	wait_served(on_b, "a", "bench-sink");
	wait_served(on_b, "a", "bench-echo");
	double *samples = calloc(pings, sizeof *samples);
	struct figure f[48 + BENCH_ATTACKS + BENCH_APP_ATTACKS];
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
		double raw_cpu[BENCH_ROUNDS_MAX], app_cpu[BENCH_ROUNDS_MAX]; /* CPU s per GB */
		for (int r = 0; r < rounds; r++) {
			double busy = machine_busy_seconds();
			raw_rounds[r] = raw_bulk(&tcp_sink, bulk);
			double between = machine_busy_seconds();
			app_rounds[r] = app_bulk(on_b, "a", "bench-sink", bulk);
			raw_cpu[r] = (between - busy) / ((double)bulk / 1e9);
			app_cpu[r] = (machine_busy_seconds() - between) / ((double)bulk / 1e9);
			printf("bulk round %d: wormhole %.1f MB/s, raw TCP %.1f MB/s, ratio %.2f\n", r + 1,
			       app_rounds[r] / 1e6, raw_rounds[r] / 1e6, app_rounds[r] / raw_rounds[r]);
		}
		raw = percentile(raw_rounds, (size_t)rounds, 0.5);
		app = percentile(app_rounds, (size_t)rounds, 0.5);
		f[n++] = (struct figure){ "app_bulk_throughput", "MB/s",
					  "raw TCP between two processes, 1 MiB writes and reads", app / 1e6,
					  raw / 1e6, NULL, false };
		f[n++] = (struct figure){ "app_bulk_cpu_per_gb", "CPU s/GB",
					  "raw TCP between two processes, 1 MiB writes and reads",
					  percentile(app_cpu, (size_t)rounds, 0.5),
					  percentile(raw_cpu, (size_t)rounds, 0.5),
					  "the whole machine's busy time over the transfer; lower is better", false };
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
					  percentile(samples, taken, 0.5) * 1e6, raw50, NULL, false };
		f[n++] = (struct figure){ "app_rtt_64B_p99", "us", "raw TCP ping-pong",
					  percentile(samples, taken, 0.99) * 1e6, raw99, NULL, false };
	}
	if (bench_selected("tls"))
		tls_figures(argv[0], broker_path, dir, bulk, pings, on_b, f, &n);
	if (bench_selected("local"))
		local_figures(on_b, &unix_sink, &unix_echo, bulk, samples, pings, f, &n);

	if (bench_selected("under_bulk"))
		under_bulk_figures(on_b, path[3], &tcp_sink, &tcp_echo, samples, pings / 4, f, &n);

	if (bench_selected("many")) {
		double raw_rate = raw_connect_rate(&tcp_accept, 2000);
		struct many_result r;
		bad = many_streams(on_b, "a", streams, 4096, broker_b, &r);
		double open_rate = r.open_rate, seconds = r.seconds,
		       broker_fds = r.broker_fds, app_fds = r.app_fds;
		f[n++] = (struct figure){ "many_streams_open_rate", "streams/s",
					  "raw TCP connections/s, one accept loop", open_rate, raw_rate, NULL, false };
		f[n++] = (struct figure){ "many_streams_broker_rss_peak", "KiB/stream",
					  "ring memory allotted per stream", r.broker_rss_peak,
					  2.0 * atof(ring) / 1024, "with every stream's bytes through", true };
		f[n++] = (struct figure){ "many_streams_verified", "streams", "streams opened",
					  (double)(streams - (size_t)bad), (double)streams, NULL, true };
		f[n++] = (struct figure){ "many_streams_broker_fds", "fds/stream",
					  "a TCP connection: one per end", broker_fds, 1.0, NULL, true };
		f[n++] = (struct figure){ "many_streams_app_fds", "fds/stream",
					  "a TCP connection: one per end", app_fds, 1.0, NULL, true };
		printf("%zu streams x 4 KiB echoed and checked in %.2f s; %d failed\n", streams, seconds, bad);
	}

	if (bench_selected("scale")) {
		const char *scale = getenv("BENCH_SCALE_STREAMS");
		bad += scale_figures(broker_path, dir, scale ? (size_t)atol(scale) : 100000, f, &n);
	}

	if (bench_selected("attacks"))
		attack_figures(broker_path, port_a, on_b, bulk / 2, f, &n);
	if (bench_selected("app_attacks"))
		app_attack_figures(broker_path, path[3], on_b, bulk / 2, f, &n);

	if (bench_selected("far"))
		far_figures(argv[0], broker_path, dir, bulk / 4, f, &n);

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
