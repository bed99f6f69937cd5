/* Forwarding attacked as an adversary would (docs/FORWARDING.md, Tests): the `forward` cases
 * of check_attacks. Broker A exposes services whose targets are the test's own (threads of
 * this process); B forwards local ports to them. Each case runs its attack beside one good
 * forwarded connection that keeps echoing checksummed bytes, and afterwards holds both brokers
 * to their descriptors and memory before the attack, and to an idle CPU. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "attacks_forward.h"
#include "harness.h"

#ifdef WH_SANITIZERS
#define SANITIZER_RSS_KIB (640 << 10) /* ASan holds freed memory (256 MiB quarantine) and shadow */
#else
#define SANITIZER_RSS_KIB 0
#endif

static long rss_kib(pid_t pid)
{
	struct process p = { .pid = pid };
	return process_rss_kib(&p);
}

/* Both brokers run with a stream window that cannot grow (max-window = window = 256 KiB), so
 * what a stuck connection can make a broker hold is bounded by the settings: the stream's
 * receive store (one window), its send buffer (at most the far side's window of credit) and
 * the one read a relay keeps for a socket that took part of it (RELAY_CHUNK, 64 KiB). Per
 * connection and broker: 576 KiB. */
#define FWD_WINDOW_KIB 256
#define FWD_HELD_PER_CONNECTION_KIB (2 * FWD_WINDOW_KIB + 64)
/* Beyond that: the allocator's slack (the broker trims only past 8 MiB free, broker.c) and
 * the relays' and streams' own structures. */
#define FWD_RSS_SLACK_KIB (12 << 10)
#define FWD_IDLE_TICKS 10 /* clock ticks (1/100 s) of CPU in a second, each broker */

struct ftarget {
	int listen_fd;
	unsigned port;
	atomic_uint accepted, live;
	atomic_ullong sent; /* by connections told to send for ever */
};

struct ftarget_conn {
	struct ftarget *t;
	int fd;
};

/* Each connection in a thread; its first byte says what to do:
 *   'P' send back each read at once; at EOF shut the write side
 *   'Q' read and drop everything, never answer, close at EOF
 *   'H' read and drop to EOF, then hold the connection, never answering, until it is reset
 *   'N' never read again: hold the connection until it is reset or closed
 *   'S' send for ever
 *   'R' read a little, send 16 KiB, then reset the connection (SO_LINGER 0)
 *   'F' shut the write side at once (half-close), read one more byte, then reset */
static void ftarget_serve(struct ftarget *t, int fd, char mode)
{
	char *buffer = malloc(1 << 16);
	ssize_t n;
	switch (mode) {
	case 'P':
		while ((n = read(fd, buffer, 1 << 16)) > 0)
			for (ssize_t at = 0, w; at < n; at += w)
				if ((w = write(fd, buffer + at, (size_t)(n - at))) <= 0)
					goto out;
		if (n == 0)
			shutdown(fd, SHUT_WR);
		break;
	case 'Q':
	case 'H':
		while ((n = read(fd, buffer, 1 << 16)) > 0)
			;
		if (mode == 'H' && n == 0) {
			struct pollfd p = { .fd = fd, .events = 0 }; /* POLLERR: a reset */
			poll(&p, 1, 120000);
		}
		break;
	case 'N': {
		struct pollfd p = { .fd = fd, .events = POLLRDHUP };
		poll(&p, 1, 120000);
		break;
	}
	case 'S':
		memset(buffer, 'S', 1 << 16);
		while ((n = write(fd, buffer, 1 << 16)) > 0)
			atomic_fetch_add(&t->sent, (unsigned long long)n);
		break;
	case 'F':
		shutdown(fd, SHUT_WR);
		/* then the byte the client sends once it saw the EOF, and the reset */
		/* fall through */
	case 'R':
		if (read(fd, buffer, 4096) > 0 && (mode == 'F' || write(fd, buffer, 16384) > 0)) {
			struct linger hard = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
		}
		break;
	}
out:
	free(buffer);
}

static void *ftarget_conn_run(void *arg)
{
	struct ftarget_conn *c = arg;
	char mode = 0;
	if (read(c->fd, &mode, 1) == 1)
		ftarget_serve(c->t, c->fd, mode);
	close(c->fd);
	atomic_fetch_sub(&c->t->live, 1);
	free(c);
	return NULL;
}

static void *ftarget_accept_run(void *arg)
{
	struct ftarget *t = arg;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 128 << 10);
	for (;;) {
		int fd = accept(t->listen_fd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
				continue;
			break;
		}
		struct ftarget_conn *c = malloc(sizeof *c);
		*c = (struct ftarget_conn){ t, fd };
		atomic_fetch_add(&t->accepted, 1);
		atomic_fetch_add(&t->live, 1);
		pthread_t thread;
		if (pthread_create(&thread, &attr, ftarget_conn_run, c) != 0) {
			close(fd);
			atomic_fetch_sub(&t->live, 1);
			free(c);
		}
	}
	return NULL;
}

static void ftarget_start(struct ftarget *t)
{
	t->port = 0;
	t->listen_fd = harness_listen_loopback(&t->port, 1024);
	atomic_init(&t->accepted, 0);
	atomic_init(&t->live, 0);
	atomic_init(&t->sent, 0);
	pthread_t thread;
	ck_assert_int_eq(pthread_create(&thread, NULL, ftarget_accept_run, t), 0);
	pthread_detach(thread);
}

/* A connect without an answer: a listener whose accept queue is full drops every SYN (its
 * backlog 0 holds one connection; fillers are connected until one is not answered). The
 * broker's dial to it waits for connect-timeout, as to a host behind a firewall that drops. */
static int blackhole_start(unsigned *port, int fillers[16])
{
	*port = 0;
	int fd = harness_listen_loopback(port, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)*port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	for (int i = 0; i < 16; i++)
		fillers[i] = -1;
	for (int i = 0; i < 16; i++) {
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		connect(fillers[i], (struct sockaddr *)&a, sizeof a);
		struct pollfd p = { .fd = fillers[i], .events = POLLOUT };
		if (poll(&p, 1, 500) == 0) /* not answered: the queue is full */
			break;
	}
	return fd;
}

static bool send_all(int fd, const void *data, size_t length)
{
	for (size_t at = 0; at < length;) {
		ssize_t w = send(fd, (const char *)data + at, length - at, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		at += (size_t)w;
	}
	return true;
}

/* Reads and drops until the connection ends: 0 at EOF, the errno of a reset or error. */
static int drain_to_end(int fd)
{
	char buffer[16384];
	for (;;) {
		ssize_t n = recv(fd, buffer, sizeof buffer, 0);
		if (n == 0)
			return 0;
		if (n < 0)
			return errno == EAGAIN ? ETIMEDOUT : errno;
	}
}

/* ---- the good connection: checksummed bytes through the forward during the attack ---------- */

#define GOOD_CHUNK 4096

struct good {
	unsigned port;
	const struct process *a, *b;
	pthread_t thread;
	atomic_bool stop;
	atomic_int rounds;
	long peak_a, peak_b; /* resident KiB, sampled while it runs */
	unsigned long long echoed;
	char failure[160];
};

static void good_sample(struct good *g)
{
	long a = rss_kib(g->a->pid), b = rss_kib(g->b->pid);
	if (a > g->peak_a)
		g->peak_a = a;
	if (b > g->peak_b)
		g->peak_b = b;
}

/* Reads n bytes, checking them against the pattern from offset; false on a short read. */
static bool good_read(struct good *g, int fd, size_t n)
{
	unsigned char buffer[GOOD_CHUNK];
	for (size_t have = 0; have < n;) {
		ssize_t r = recv(fd, buffer, n - have, 0);
		if (r <= 0) {
			snprintf(g->failure, sizeof g->failure, "after %llu bytes echoed: %s", g->echoed,
				 r == 0 ? "EOF" : strerror(errno));
			return false;
		}
		for (ssize_t i = 0; i < r; i++)
			if (buffer[i] != harness_pattern(11, g->echoed + (size_t)i)) {
				snprintf(g->failure, sizeof g->failure, "byte %llu differs",
					 g->echoed + (unsigned long long)i);
				return false;
			}
		g->echoed += (unsigned long long)r;
		have += (size_t)r;
	}
	return true;
}

static void *good_run(void *arg)
{
	struct good *g = arg;
	int fd = harness_connect_loopback_from(NULL, g->port);
	if (fd < 0 || !send_all(fd, "P", 1)) {
		snprintf(g->failure, sizeof g->failure, "cannot connect: %s", strerror(errno));
		atomic_store(&g->rounds, -1);
		return NULL;
	}
	unsigned char chunk[GOOD_CHUNK];
	unsigned long long sent = 0;
	while (!atomic_load(&g->stop)) {
		for (size_t i = 0; i < sizeof chunk; i++)
			chunk[i] = harness_pattern(11, sent + i);
		if (!send_all(fd, chunk, sizeof chunk)) {
			snprintf(g->failure, sizeof g->failure, "send after %llu bytes: %s", sent, strerror(errno));
			break;
		}
		sent += sizeof chunk;
		if (!good_read(g, fd, sizeof chunk))
			break;
		atomic_fetch_add(&g->rounds, 1);
		good_sample(g);
		usleep(20000); /* one round trip every 20 ms: a measurement period, not a wait */
	}
	/* the end: half-close, and the echo's EOF comes after every byte */
	if (!g->failure[0] && shutdown(fd, SHUT_WR) == 0) {
		char byte;
		ssize_t n = recv(fd, &byte, 1, 0);
		if (n != 0)
			snprintf(g->failure, sizeof g->failure, "no clean EOF after %llu bytes: %zd (%s)",
				 g->echoed, n, n < 0 ? strerror(errno) : "a byte too many");
	}
	close(fd);
	return NULL;
}

static bool good_going(void *arg)
{
	return atomic_load(&((struct good *)arg)->rounds) != 0;
}

/* ---- the scene and the cases ----------------------------------------------------------------- */

struct fscene {
	char dir[64];
	struct process a, b;
	struct ftarget target;
	int blackhole_fd, fillers[16];
	unsigned port, dead_port, refused_port; /* B's forwards to t, dead and refused */
	bool a_killed;
};

/* A exposes t (the test's target), dead (a target that never answers a connect) and refused;
 * B forwards to each, t with the case's limits (`forward_extra`, config lines). */
static void fscene_start(struct fscene *s, const char *forward_extra, bool short_keepalive,
			 const char *b_max_fds)
{
	harness_tempdir(s->dir, sizeof s->dir);
	ftarget_start(&s->target);
	unsigned dead;
	s->blackhole_fd = blackhole_start(&dead, s->fillers);
	char path[300], text[2048];
	snprintf(text, sizeof text, "[service t]\ntarget = 127.0.0.1:%u\n\n[service dead]\n"
		 "target = 127.0.0.1:%u\nconnect-timeout = 1\n\n[service refused]\ntarget = 127.0.0.1:%u\n",
		 s->target.port, dead, harness_closed_port());
	snprintf(path, sizeof path, "%s/a.conf", s->dir);
	harness_write_file(path, text);
	/* keep-alive 1 s, timeout 1 s, where a case needs the pool's connection to end soon */
	const char *a_args[] = { "--config", path, "--max-window", "262144", "--keepalive",
				 short_keepalive ? "1" : "30", "--keepalive-timeout", short_keepalive ? "1" : "30",
				 NULL };
	ck_assert(broker_spawn(&s->a, a_args));
	snprintf(text, sizeof text, "[peer a]\naddress = 127.0.0.1:%u\n\n[forward t]\nlisten = 127.0.0.1:0\n"
		 "peer = a\nservice = t\n%s\n[forward dead]\nlisten = 127.0.0.1:0\npeer = a\nservice = dead\n\n"
		 "[forward refused]\nlisten = 127.0.0.1:0\npeer = a\nservice = refused\n", s->a.port,
		 forward_extra ? forward_extra : "");
	snprintf(path, sizeof path, "%s/b.conf", s->dir);
	harness_write_file(path, text);
	/* one pooled connection, in the baseline: any other descriptor counted after is a leak */
	const char *b_args[] = { "--config", path, "--max-window", "262144", "--pool-max", "1", "--keepalive",
				 short_keepalive ? "1" : "30", "--keepalive-timeout", short_keepalive ? "1" : "30",
				 b_max_fds ? "--max-fds" : NULL, b_max_fds, NULL };
	ck_assert(broker_spawn(&s->b, b_args));
	s->port = harness_forward_port(&s->b, "t");
	s->dead_port = harness_forward_port(&s->b, "dead");
	s->refused_port = harness_forward_port(&s->b, "refused");
}

static void fscene_stop(struct fscene *s)
{
	ck_assert_int_eq(process_stop(&s->b, SIGTERM), 0);
	if (!s->a_killed)
		ck_assert_int_eq(process_stop(&s->a, SIGTERM), 0);
	close(s->target.listen_fd);
	close(s->blackhole_fd);
	for (int i = 0; i < 16; i++)
		if (s->fillers[i] >= 0)
			close(s->fillers[i]);
	harness_cleanup_dir(s->dir);
}

struct count_goal {
	atomic_uint *value;
	unsigned want;
	bool at_least;
};

static bool count_reached(void *arg)
{
	struct count_goal *g = arg;
	unsigned v = atomic_load(g->value);
	return g->at_least ? v >= g->want : v <= g->want;
}

/* The target holds `want` connections (at least, or at most), within a bound. */
static void expect_target_live(struct fscene *s, unsigned want, bool at_least, const char *what)
{
	struct count_goal goal = { &s->target.live, want, at_least };
	if (!poll_until(count_reached, &goal, 30)) {
		char command[300];
		snprintf(command, sizeof command, "echo accepted %u >&2; ss -tanp | grep -E ':%u |:%u ' >&2",
			 atomic_load(&s->target.accepted), s->target.port, s->port);
		(void)!system(command);
		process_dump_log(&s->a);
		process_dump_log(&s->b);
	}
	ck_assert_msg(count_reached(&goal), "%s: the target holds %u connections, want %s %u",
		      what, atomic_load(&s->target.live), at_least ? "at least" : "at most", want);
}

/* Both brokers (B alone once A was killed) use at most FWD_IDLE_TICKS in a second. */
static void expect_idle(struct fscene *s, const char *what)
{
	long a0 = s->a_killed ? 0 : process_cpu_ticks(&s->a), b0 = process_cpu_ticks(&s->b);
	usleep(1000000); /* a measurement window */
	long a = s->a_killed ? 0 : process_cpu_ticks(&s->a) - a0, b = process_cpu_ticks(&s->b) - b0;
	fprintf(stderr, "forward attack: %s: cpu A %ld, B %ld ticks in a second\n", what, a, b);
	ck_assert_msg(a <= FWD_IDLE_TICKS && b <= FWD_IDLE_TICKS, "%s: A used %ld ticks of CPU and B %ld "
		      "in a second", what, a, b);
}

struct fwd_case {
	const char *name;
	void (*attack)(struct fscene *s);
	const char *forward_extra; /* config lines of forward t */
	long rss_growth_kib;       /* most either broker may grow while it runs */
	bool good_dies;            /* the pool's connection ends: the good connection with it */
	bool short_keepalive;      /* keep-alive 1 s, its timeout 1 s */
	const char *b_max_fds;     /* B's descriptor limit (--max-fds), when the case sets one */
};

/* A number after `"key": ` in wormhole-ctl's JSON for B's forward t (-1 if absent). */
static long forward_counter(const struct fscene *s, const char *key)
{
	char socket[300], out[8192], marker[64];
	snprintf(socket, sizeof socket, "%s/control.sock", s->b.dir);
	const char *args[] = { "-s", socket, "--json", "forwards", NULL };
	if (process_run("ctl/wormhole-ctl", args, out, sizeof out) != 0)
		return -1;
	const char *t = strstr(out, "\"forward\": \"t\"");
	snprintf(marker, sizeof marker, "\"%s\": ", key);
	const char *at = t ? strstr(t, marker) : NULL;
	return at ? strtol(at + strlen(marker), NULL, 10) : -1;
}

/* Polls clients until `want` of them have ended (EOF or reset; each closed and set to -1). */
static unsigned await_ended(int *fds, unsigned n, unsigned want, double timeout)
{
	unsigned ended = 0;
	double deadline = harness_now() + timeout;
	struct pollfd *p = calloc(n, sizeof *p);
	while (ended < want && harness_now() < deadline) {
		for (unsigned i = 0; i < n; i++)
			p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
		if (poll(p, n, 100) <= 0)
			continue;
		for (unsigned i = 0; i < n; i++) {
			char byte;
			if (fds[i] < 0 || !p[i].revents)
				continue;
			ssize_t r = recv(fds[i], &byte, 1, MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN)) {
				close(fds[i]);
				fds[i] = -1;
				ended++;
			}
		}
	}
	free(p);
	return ended;
}

/* (a) Hundreds of clients that connect and send nothing, beyond max-connections: the first
 * ones are carried (and cost nothing while silent), the rest closed at once, counted, and
 * logged at most once a second. */
#define SILENT_CLIENTS 300
#define SILENT_MAX 100
static void attack_silent_beyond_max(struct fscene *s)
{
	static int fds[SILENT_CLIENTS];
	unsigned live = atomic_load(&s->target.live);
	double start = harness_now();
	for (unsigned i = 0; i < SILENT_CLIENTS; i++)
		ck_assert_int_ge(fds[i] = harness_connect_loopback_from(NULL, s->port), 0);
	/* the good connection holds one place */
	unsigned carried = SILENT_MAX - 1, refused = SILENT_CLIENTS - carried;
	unsigned ended = await_ended(fds, SILENT_CLIENTS, refused, 30);
	ended += await_ended(fds, SILENT_CLIENTS, SILENT_CLIENTS, 0.3); /* and no more: a measurement */
	double took = harness_now() - start;
	ck_assert_msg(ended == refused, "%u clients were closed, want %u", ended, refused);
	expect_target_live(s, live + carried, true, "silent clients");
	unsigned logged = process_log_count(&s->b, "forward=t: max-connections 100 reached");
	ck_assert_msg(logged >= 1 && logged <= took + 2, "%u log lines in %.1f s", logged, took);
	ck_assert_int_eq(forward_counter(s, "refused_full"), refused);
	expect_idle(s, "silent clients held");
	for (unsigned i = 0; i < SILENT_CLIENTS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* (b) One client address opens connections as fast as it can for 2 s, far beyond
 * connection-rate: what passes is within the rate and its burst, the rest closed at once,
 * counted, logged at most once a second. */
#define FLOOD_RATE 10
#define FLOOD_MOST 5000 /* connections: beyond the rate many times over, gentle on the machine */
static void attack_rate_flood(struct fscene *s)
{
	unsigned accepted = atomic_load(&s->target.accepted), opened = 0;
	double start = harness_now();
	while (harness_now() - start < 2.0 && opened < FLOOD_MOST) { /* the attack's length */
		int fd = harness_connect_loopback_from(NULL, s->port);
		if (fd < 0)
			continue;
		send(fd, "Q", 1, MSG_NOSIGNAL);
		close(fd);
		opened++;
	}
	double took = harness_now() - start;
	ck_assert(process_log_wait(&s->b, "forward=t: client 127.0.0.1 opens more than connection-rate 10", 10));
	/* every connection let through reached the target by the time the counter says the rest */
	long refused = 0;
	for (double deadline = harness_now() + 10; harness_now() < deadline;) {
		refused = forward_counter(s, "refused_rate");
		if (refused + atomic_load(&s->target.accepted) - accepted >= opened)
			break;
		usleep(50000); /* polling a condition with a deadline */
	}
	unsigned through = atomic_load(&s->target.accepted) - accepted;
	unsigned logged = process_log_count(&s->b, "opens more than connection-rate");
	fprintf(stderr, "forward attack: %u connections in %.1f s, %u through, %ld refused, %u log lines\n",
		opened, took, through, refused, logged);
	ck_assert_msg(through <= FLOOD_RATE * (took + 1) + 2, "%u through in %.1f s", through, took);
	ck_assert_msg(opened > 10 * through, "the flood was not beyond the rate: %u opened", opened);
	ck_assert_int_eq((long)opened, refused + (long)through);
	ck_assert_msg(logged >= 1 && logged <= took + 3, "%u log lines in %.1f s", logged, took);
}

/* Sends into each client until nothing more goes anywhere for a second (or cap bytes each). */
static unsigned long long push_until_stuck(int *fds, unsigned n, size_t cap)
{
	static char chunk[1 << 16];
	unsigned long long total = 0;
	size_t *sent = calloc(n, sizeof *sent);
	double quiet_since = harness_now(), deadline = harness_now() + 90;
	while (harness_now() - quiet_since < 1.0) {
		ck_assert_msg(harness_now() < deadline, "still sending after 90 s: %llu bytes", total);
		bool moved = false;
		for (unsigned i = 0; i < n; i++) {
			if (sent[i] >= cap)
				continue;
			ssize_t w = send(fds[i], chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w > 0) {
				sent[i] += (size_t)w;
				total += (unsigned long long)w;
				moved = true;
			}
		}
		if (moved) {
			quiet_since = harness_now();
		} else {
			struct pollfd p = { .fd = fds[0], .events = POLLOUT };
			poll(&p, 1, 50); /* until a socket takes more, or the quiet second passes */
		}
	}
	free(sent);
	return total;
}

/* (c) Targets that accept and never read (clients send until everything is full) and
 * targets that accept and never answer, many of each at once. */
#define NEVER_READ 20
#define NEVER_ANSWER 100
static void attack_targets_never_read(struct fscene *s)
{
	int readers[NEVER_READ], quiet[NEVER_ANSWER];
	unsigned live = atomic_load(&s->target.live);
	static char kib[1025] = "Q";
	for (unsigned i = 0; i < NEVER_ANSWER; i++) {
		ck_assert_int_ge(quiet[i] = harness_connect_loopback_from(NULL, s->port), 0);
		ck_assert(send_all(quiet[i], kib, sizeof kib));
	}
	for (unsigned i = 0; i < NEVER_READ; i++) {
		ck_assert_int_ge(readers[i] = harness_connect_loopback_from(NULL, s->port), 0);
		ck_assert(send_all(readers[i], "N", 1));
	}
	unsigned long long total = push_until_stuck(readers, NEVER_READ, 64u << 20);
	fprintf(stderr, "forward attack: %llu bytes went towards %d targets that never read\n", total,
		NEVER_READ);
	expect_target_live(s, live + NEVER_READ + NEVER_ANSWER, true, "targets that never read");
	expect_idle(s, "targets that never read or answer");
	for (unsigned i = 0; i < NEVER_READ; i++)
		harness_reset_close(readers[i]);
	for (unsigned i = 0; i < NEVER_ANSWER; i++)
		harness_reset_close(quiet[i]);
}

struct stall {
	atomic_ullong *count;
	unsigned long long last;
	double since;
};

static bool stalled(void *arg)
{
	struct stall *st = arg;
	unsigned long long now = atomic_load(st->count);
	if (now != st->last) {
		st->last = now;
		st->since = harness_now();
		return false;
	}
	return harness_now() - st->since >= 1.0;
}

/* (d) A target that sends for ever to many clients that never read: it is stopped once the
 * windows and the sockets' buffers are full. */
#define UNREAD_CLIENTS 20
static void attack_target_floods_unread(struct fscene *s)
{
	int fds[UNREAD_CLIENTS];
	for (unsigned i = 0; i < UNREAD_CLIENTS; i++) {
		ck_assert_int_ge(fds[i] = harness_connect_loopback_from(NULL, s->port), 0);
		ck_assert(send_all(fds[i], "S", 1));
	}
	struct stall st = { .count = &s->target.sent, .since = harness_now() };
	ck_assert_msg(poll_until(stalled, &st, 90), "the target never stopped: %llu bytes", st.last);
	fprintf(stderr, "forward attack: the target stopped after %llu bytes to %d clients\n", st.last,
		UNREAD_CLIENTS);
	expect_idle(s, "a target sending to clients that never read");
	for (unsigned i = 0; i < UNREAD_CLIENTS; i++)
		harness_reset_close(fds[i]);
}

/* (e) Clients that reset mid-stream, one after another, and clients that reset at once; then
 * targets that reset mid-stream, many at once: each client sees the reset. */
#define RESET_LOOPS 300
#define TARGET_RESETS 100
static void attack_resets_mid_stream(struct fscene *s)
{
	static char request[8193] = "P";
	for (unsigned i = 0; i < RESET_LOOPS; i++) {
		int fd = harness_connect_loopback_from(NULL, s->port);
		ck_assert_int_ge(fd, 0);
		ck_assert(send_all(fd, request, sizeof request));
		char byte;
		ck_assert_int_eq(recv(fd, &byte, 1, 0), 1); /* the echo is flowing */
		harness_reset_close(fd);
	}
	/* and clients that reset before the broker even accepted them */
	for (unsigned i = 0; i < RESET_LOOPS; i++) {
		int fd = harness_connect_loopback_from(NULL, s->port);
		ck_assert_int_ge(fd, 0);
		harness_reset_close(fd);
	}
	int fds[TARGET_RESETS];
	for (unsigned i = 0; i < TARGET_RESETS; i++) {
		ck_assert_int_ge(fds[i] = harness_connect_loopback_from(NULL, s->port), 0);
		ck_assert(send_all(fds[i], "Rx", 2));
	}
	for (unsigned i = 0; i < TARGET_RESETS; i++) {
		int end = drain_to_end(fds[i]);
		ck_assert_msg(end == ECONNRESET, "client %u: %s, not a reset", i, strerror(end));
		close(fds[i]);
	}
}

/* Targets that half-close, then reset once the client has seen their EOF and sent one more
 * byte (which they read): each client sees the reset, though nothing else moves. */
static void targets_half_close_then_reset(struct fscene *s, unsigned n)
{
	int *fds = calloc(n, sizeof *fds);
	for (unsigned i = 0; i < n; i++) {
		ck_assert_int_ge(fds[i] = harness_connect_loopback_from(NULL, s->port), 0);
		ck_assert(send_all(fds[i], "F", 1));
	}
	for (unsigned i = 0; i < n; i++) {
		char byte;
		ck_assert_int_eq(recv(fds[i], &byte, 1, 0), 0); /* the target's EOF */
		ck_assert(send_all(fds[i], "x", 1));
	}
	for (unsigned i = 0; i < n; i++) {
		struct pollfd p = { .fd = fds[i], .events = 0 }; /* POLLERR or POLLHUP: the reset */
		ck_assert_msg(poll(&p, 1, 10000) == 1, "client %u never saw the target's reset", i);
		close(fds[i]);
	}
	free(fds);
}

/* (f) Clients that half-close and never read: some while the target echoes what they sent
 * (it stops once the windows are full), some while the target holds the connection without a
 * word. Then they reset. And targets that half-close, then reset. */
#define HALF_CLOSERS 20
static void attack_half_close_never_read(struct fscene *s)
{
	int echoed[HALF_CLOSERS], held[HALF_CLOSERS];
	unsigned live = atomic_load(&s->target.live);
	for (unsigned i = 0; i < HALF_CLOSERS; i++) {
		ck_assert_int_ge(echoed[i] = harness_connect_loopback_from(NULL, s->port), 0);
		ck_assert(send_all(echoed[i], "P", 1));
	}
	/* the echo fills everything between the target and the client that does not read it */
	unsigned long long total = push_until_stuck(echoed, HALF_CLOSERS, 64u << 20);
	fprintf(stderr, "forward attack: %llu bytes sent by half-closing clients\n", total);
	for (unsigned i = 0; i < HALF_CLOSERS; i++) {
		ck_assert_int_eq(shutdown(echoed[i], SHUT_WR), 0);
		ck_assert_int_ge(held[i] = harness_connect_loopback_from(NULL, s->port), 0);
		ck_assert(send_all(held[i], "Hheld", 5));
		ck_assert_int_eq(shutdown(held[i], SHUT_WR), 0);
	}
	expect_target_live(s, live + 2 * HALF_CLOSERS, true, "half-closed clients");
	expect_idle(s, "clients that half-closed and never read");
	for (unsigned i = 0; i < HALF_CLOSERS; i++) {
		harness_reset_close(echoed[i]);
		harness_reset_close(held[i]);
	}
	targets_half_close_then_reset(s, HALF_CLOSERS);
}

/* Sends a request: 0, or the errno of a reset that came first (a refusal within a
 * millisecond resets the connection before the request goes; the send reports it then, and a
 * read after it sees EOF). */
static int send_or_reset(int fd, const char *request)
{
	return send(fd, request, strlen(request), MSG_NOSIGNAL) < 0 ? errno : 0;
}

/* (g) A flood of streams to a target that never answers a connect (bounded by its
 * connect-timeout, 1 s) and to one that refuses: every client is reset. */
#define DEAD_CLIENTS 100
static void attack_dead_targets(struct fscene *s)
{
	int dead[DEAD_CLIENTS], refused[DEAD_CLIENTS], dead_seen[DEAD_CLIENTS], refused_seen[DEAD_CLIENTS];
	double start = harness_now();
	for (unsigned i = 0; i < DEAD_CLIENTS; i++) {
		ck_assert_int_ge(dead[i] = harness_connect_loopback_from(NULL, s->dead_port), 0);
		ck_assert_int_ge(refused[i] = harness_connect_loopback_from(NULL, s->refused_port), 0);
		dead_seen[i] = send_or_reset(dead[i], "GET");
		refused_seen[i] = send_or_reset(refused[i], "GET");
	}
	for (unsigned i = 0; i < DEAD_CLIENTS; i++) {
		int end = dead_seen[i] ? dead_seen[i] : drain_to_end(dead[i]);
		ck_assert_msg(end == ECONNRESET || end == EPIPE, "client %u of the dead target: %s", i, strerror(end));
		end = refused_seen[i] ? refused_seen[i] : drain_to_end(refused[i]);
		ck_assert_msg(end == ECONNRESET || end == EPIPE, "client %u of the refusing target: %s", i, strerror(end));
		close(dead[i]);
		close(refused[i]);
	}
	double took = harness_now() - start;
	fprintf(stderr, "forward attack: %d clients of dead targets reset within %.1f s\n", 2 * DEAD_CLIENTS, took);
	ck_assert_msg(took < 15, "the clients of dead targets were reset after %.1f s", took);
	/* the one timed out (its SYNs dropped), the other refused */
	ck_assert(process_log_has(&s->a, "connect timed out after 1 s"));
	ck_assert(process_log_has(&s->a, "Connection refused"));
}

/* Forwarded connections in the middle of an echo: 64 KiB sent, the first 16 KiB read back. */
#define FAR_CLIENTS 50
#define FAR_BYTES (64 << 10)
static void far_clients_start(struct fscene *s, int *fds)
{
	static unsigned char request[FAR_BYTES + 1] = "P";
	for (size_t i = 0; i < FAR_BYTES; i++)
		request[i + 1] = harness_pattern(5, i);
	for (unsigned i = 0; i < FAR_CLIENTS; i++) {
		ck_assert_int_ge(fds[i] = harness_connect_loopback_from(NULL, s->port), 0);
		ck_assert(send_all(fds[i], request, sizeof request));
		unsigned char got[16384];
		for (size_t have = 0; have < sizeof got;) {
			ssize_t r = recv(fds[i], got + have, sizeof got - have, 0);
			ck_assert_int_gt(r, 0);
			have += (size_t)r;
		}
	}
}

/* (h) The far broker stopped (SIGSTOP) under forwarded connections, then continued: each
 * completes (or is reset); B waits without spinning meanwhile. */
static void attack_far_stopped(struct fscene *s)
{
	int fds[FAR_CLIENTS];
	far_clients_start(s, fds);
	kill(s->a.pid, SIGSTOP);
	long b0 = process_cpu_ticks(&s->b);
	usleep(2000000); /* the fault's length, and a measurement window for B */
	long b_ticks = process_cpu_ticks(&s->b) - b0;
	kill(s->a.pid, SIGCONT);
	ck_assert_msg(b_ticks <= 2 * FWD_IDLE_TICKS, "B used %ld ticks in 2 s while A was stopped", b_ticks);
	unsigned completed = 0, reset = 0;
	for (unsigned i = 0; i < FAR_CLIENTS; i++) {
		ck_assert_int_eq(shutdown(fds[i], SHUT_WR), 0);
		unsigned char buffer[16384];
		size_t have = 16384;
		ssize_t r;
		while ((r = recv(fds[i], buffer, sizeof buffer, 0)) > 0) {
			for (ssize_t j = 0; j < r; j++)
				ck_assert_int_eq(buffer[j], harness_pattern(5, have + (size_t)j));
			have += (size_t)r;
		}
		ck_assert_msg(r == 0 || errno == ECONNRESET, "client %u: %s", i, strerror(errno));
		if (r == 0) {
			ck_assert_uint_eq(have, FAR_BYTES);
			completed++;
		} else {
			reset++;
		}
		close(fds[i]);
	}
	fprintf(stderr, "forward attack: after SIGCONT %u completed, %u reset\n", completed, reset);
}

/* (e) with a bandwidth limit (1 MiB/s each way on forward t): 200 clients fill what their
 * sockets take, then reset. Each relay ends at once: the bytes queued before a reset are not
 * carried at the limit's pace (about 25 s for these), holding the relays, the targets'
 * connections and the limit's share of the live connections. */
#define LIMITED_CLIENTS 200 /* the limit stops their relays reading: they hold little */
static void attack_bandwidth_resets(struct fscene *s)
{
	int fds[LIMITED_CLIENTS];
	unsigned live = atomic_load(&s->target.live);
	for (unsigned i = 0; i < LIMITED_CLIENTS; i++) {
		ck_assert_int_ge(fds[i] = harness_connect_loopback_from(NULL, s->port), 0);
		ck_assert(send_all(fds[i], "Q", 1));
	}
	unsigned long long total = push_until_stuck(fds, LIMITED_CLIENTS, 1u << 20);
	expect_target_live(s, live + LIMITED_CLIENTS, true, "clients of a limited forward");
	for (unsigned i = 0; i < LIMITED_CLIENTS; i++)
		harness_reset_close(fds[i]);
	double start = harness_now();
	struct count_goal goal = { &s->target.live, live, false };
	bool ended = poll_until(count_reached, &goal, 5);
	fprintf(stderr, "forward attack: %llu bytes queued by %d clients; their targets' connections %s "
		"%.1f s after the resets\n", total, LIMITED_CLIENTS, ended ? "ended" : "still open", harness_now() - start);
	ck_assert_msg(ended, "the target still holds %u connections 5 s after their clients reset",
		      atomic_load(&s->target.live) - live);
}

/* 400 clients of a forward on a broker with 200 descriptors (64 of them kept for apps
 * attaching): those beyond its descriptors are closed at once, counted with the refusals of
 * max-connections, and logged at most once a second. */
#define FDS_CLIENTS 400
static void attack_out_of_descriptors(struct fscene *s)
{
	static int fds[FDS_CLIENTS];
	double start = harness_now();
	for (unsigned i = 0; i < FDS_CLIENTS; i++) {
		ck_assert_int_ge(fds[i] = harness_connect_loopback_from(NULL, s->port), 0);
		ck_assert(send_all(fds[i], "Q", 1));
	}
	/* those carried hold on; the others end: once the count has not moved for a second */
	unsigned ended = 0;
	for (unsigned more; (more = await_ended(fds, FDS_CLIENTS, FDS_CLIENTS, 1.0)) > 0;)
		ended += more;
	double took = harness_now() - start;
	unsigned logged = process_log_count(&s->b, "forward=t: out of file descriptors");
	long counted = forward_counter(s, "refused_full");
	fprintf(stderr, "forward attack: %u of %d clients closed for want of descriptors, %ld counted, %u log "
		"lines in %.1f s\n", ended, FDS_CLIENTS, counted, logged, took);
	ck_assert_msg(ended >= FDS_CLIENTS / 2, "only %u clients were closed", ended);
	ck_assert_int_eq(counted, ended);
	ck_assert_msg(logged >= 1 && logged <= took + 2, "%u log lines in %.1f s", logged, took);
	expect_idle(s, "clients held beyond the descriptors");
	for (unsigned i = 0; i < FDS_CLIENTS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Whether a new forwarded connection echoes a byte (the pool is back). */
static bool forward_echoes(void *arg)
{
	struct fscene *s = arg;
	int fd = harness_connect_loopback_from(NULL, s->port);
	char byte = 0;
	bool ok = fd >= 0 && send_all(fd, "Py", 2) && shutdown(fd, SHUT_WR) == 0 && recv(fd, &byte, 1, 0) == 1 &&
		  byte == 'y' && recv(fd, &byte, 1, 0) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* (h) The far broker stopped past B's keep-alive (1 s, timeout 1 s) under forwarded
 * connections: B ends the pool's connection and resets every client; once A continues, it
 * finds the connection gone and resets every target's; new connections work again. */
static void attack_far_stopped_past_keepalive(struct fscene *s)
{
	int fds[FAR_CLIENTS];
	far_clients_start(s, fds);
	kill(s->a.pid, SIGSTOP);
	double start = harness_now();
	for (unsigned i = 0; i < FAR_CLIENTS; i++) {
		int end = drain_to_end(fds[i]);
		ck_assert_msg(end == ECONNRESET, "client %u: %s, not a reset", i, strerror(end));
		close(fds[i]);
	}
	double took = harness_now() - start;
	kill(s->a.pid, SIGCONT);
	fprintf(stderr, "forward attack: the clients were reset %.1f s after A stopped\n", took);
	ck_assert_msg(took < 10, "the clients were reset %.1f s after A stopped", took);
	ck_assert_msg(poll_until(forward_echoes, s, 20), "no forwarded connection works after SIGCONT");
}

/* (h) The far broker killed under forwarded connections: every client is reset. */
static void attack_far_killed(struct fscene *s)
{
	int fds[FAR_CLIENTS];
	far_clients_start(s, fds);
	process_stop(&s->a, SIGKILL);
	s->a_killed = true;
	for (unsigned i = 0; i < FAR_CLIENTS; i++) {
		int end = drain_to_end(fds[i]);
		ck_assert_msg(end == ECONNRESET, "client %u: %s, not a reset", i, strerror(end));
		close(fds[i]);
	}
}

#define HELD(n) ((n) * FWD_HELD_PER_CONNECTION_KIB + FWD_RSS_SLACK_KIB)
static const struct fwd_case fwd_cases[] = {
	{ "forward-silent-clients", attack_silent_beyond_max, "max-connections = 100\n", HELD(0), false, false, NULL },
	{ "forward-rate-flood", attack_rate_flood, "connection-rate = 10\n", HELD(0), false, false, NULL },
	{ "forward-targets-never-read", attack_targets_never_read, NULL, HELD(NEVER_READ), false, false, NULL },
	{ "forward-target-floods-unread", attack_target_floods_unread, NULL, HELD(UNREAD_CLIENTS), false, false, NULL },
	/* 700 resets from one address in a few seconds: client-reset-rate would refuse most (that
	 * is its own case, check_forward churn); here the relay's ends are what is attacked */
	{ "forward-resets-mid-stream", attack_resets_mid_stream, "client-reset-rate = 0\n", HELD(0), false,
	  false, NULL },
	{ "forward-half-close-never-read", attack_half_close_never_read, NULL, HELD(HALF_CLOSERS), false, false, NULL },
	{ "forward-dead-targets", attack_dead_targets, NULL, HELD(0), false, false, NULL },
	{ "forward-far-stopped", attack_far_stopped, NULL, HELD(FAR_CLIENTS), false, false, NULL },
	{ "forward-far-stopped-past-keepalive", attack_far_stopped_past_keepalive, NULL, HELD(FAR_CLIENTS), true,
	  true, NULL },
	{ "forward-far-killed", attack_far_killed, NULL, HELD(FAR_CLIENTS), true, false, NULL },
	{ "forward-out-of-descriptors", attack_out_of_descriptors, NULL, HELD(0), false, false, "200" },
	{ "forward-bandwidth-resets", attack_bandwidth_resets, "bandwidth = 1M\n", HELD(0), false,
	  false, NULL },
};

struct rss_goal {
	const struct process *p;
	long most;
};

static bool rss_back(void *arg)
{
	const struct rss_goal *g = arg;
	return process_rss_kib(g->p) <= g->most;
}

static bool fds_at_most(void *arg)
{
	const struct rss_goal *g = arg; /* most: a descriptor count here */
	return process_fd_count(g->p) <= g->most;
}

/* B's forward t carries no connection. */
static bool forward_idle(void *arg)
{
	return forward_counter(arg, "connections") == 0;
}

/* One exchange before the baseline: the pool's connection is up, its buffers made. */
static void forward_warm_up(struct fscene *s)
{
	int fd = harness_connect_loopback_from(NULL, s->port);
	ck_assert_int_ge(fd, 0);
	ck_assert(send_all(fd, "Pwarm", 5));
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	char got[8];
	size_t have = 0;
	ssize_t r;
	while ((r = recv(fd, got + have, sizeof got - have, 0)) > 0)
		have += (size_t)r;
	ck_assert_msg(r == 0 && have == 4 && memcmp(got, "warm", 4) == 0, "the warm-up echo failed");
	close(fd);
	expect_target_live(s, 0, false, "the warm-up");
}

static void good_start(struct good *g, struct fscene *s)
{
	memset(g, 0, sizeof *g);
	g->port = s->port;
	g->a = &s->a;
	g->b = &s->b;
	atomic_init(&g->stop, false);
	atomic_init(&g->rounds, 0);
	ck_assert_int_eq(pthread_create(&g->thread, NULL, good_run, g), 0);
	ck_assert_msg(poll_until(good_going, g, 10) && atomic_load(&g->rounds) > 0, "the good connection: %s",
		      g->failure);
}

/* Both brokers (B alone once A was killed) hold no more descriptors than *a and *b (15 s
 * bound); *a and *b get what they hold then (-1 for a killed A). */
static void expect_descriptors_back(struct fscene *s, const char *name, int *a, int *b)
{
	struct rss_goal fa = { &s->a, *a }, fb = { &s->b, *b };
	bool a_back = s->a_killed || poll_until(fds_at_most, &fa, 15), b_back = poll_until(fds_at_most, &fb, 15);
	int a_now = s->a_killed ? -1 : process_fd_count(&s->a), b_now = process_fd_count(&s->b);
	if (!a_back || !b_back) {
		process_dump_log(&s->a);
		process_dump_log(&s->b);
		char command[200];
		snprintf(command, sizeof command, "ls -l /proc/%d/fd /proc/%d/fd >&2; "
			 "ss -tanp | grep -E 'pid=(%d|%d),' >&2", (int)s->a.pid, (int)s->b.pid, (int)s->a.pid,
			 (int)s->b.pid);
		(void)!system(command);
	}
	ck_assert_msg(a_back && b_back, "%s: descriptors: A %d before, %d after; B %d before, %d after", name,
		      *a, a_now, *b, b_now);
	*a = a_now;
	*b = b_now;
}

START_TEST(test_forward_attack)
{
	const struct fwd_case *c = &fwd_cases[_i];
	const char *only = getenv("ATTACKS");
	if (only && !harness_name_listed(only, c->name))
		return;
	static struct fscene s;
	memset(&s, 0, sizeof s);
	fscene_start(&s, c->forward_extra, c->short_keepalive, c->b_max_fds);
	forward_warm_up(&s);
	/* the baseline once the warm-up's relay on B is gone (A's went with the target's) */
	ck_assert(poll_until(forward_idle, &s, 10));
	static struct good g;
	/* the baseline: the pool's connection up, no forwarded connection (the good one's are
	 * gone again when it is counted after) */
	int fds_a = process_fd_count(&s.a), fds_b = process_fd_count(&s.b);
	good_start(&g, &s);
	long rss_a = process_rss_kib(&s.a), rss_b = process_rss_kib(&s.b);

	c->attack(&s);

	atomic_store(&g.stop, true);
	pthread_join(g.thread, NULL);
	int rounds = atomic_load(&g.rounds);
	if (!c->good_dies)
		ck_assert_msg(!g.failure[0] && rounds > 1, "%s: the good connection: %s (%d round trips)", c->name,
			      g.failure, rounds);
	int fds_a_after = fds_a, fds_b_after = fds_b;
	expect_descriptors_back(&s, c->name, &fds_a_after, &fds_b_after);
	expect_target_live(&s, 0, false, c->name);
	expect_idle(&s, c->name);
	struct rss_goal ra = { &s.a, rss_a + FWD_RSS_SLACK_KIB + SANITIZER_RSS_KIB },
			rb = { &s.b, rss_b + FWD_RSS_SLACK_KIB + SANITIZER_RSS_KIB };
	ck_assert_msg(s.a_killed || poll_until(rss_back, &ra, 15), "%s: A's RSS %ld KiB, %ld before", c->name,
		      process_rss_kib(&s.a), rss_a);
	ck_assert_msg(poll_until(rss_back, &rb, 15), "%s: B's RSS %ld KiB, %ld before", c->name,
		      process_rss_kib(&s.b), rss_b);
	long grew_a = g.peak_a > rss_a ? g.peak_a - rss_a : 0, grew_b = g.peak_b > rss_b ? g.peak_b - rss_b : 0;
	fprintf(stderr, "forward attack %-30s good %d round trips; A grew %ld KiB, B %ld KiB (bound %ld); "
		"fds A %d -> %d, B %d -> %d\n", c->name, rounds, grew_a, grew_b, c->rss_growth_kib, fds_a,
		fds_a_after, fds_b, fds_b_after);
	ck_assert_msg(grew_a <= c->rss_growth_kib + SANITIZER_RSS_KIB && grew_b <= c->rss_growth_kib +
		      SANITIZER_RSS_KIB, "%s: A grew %ld KiB, B %ld KiB", c->name, grew_a, grew_b);
	fscene_stop(&s);
}
END_TEST

TCase *forward_attacks_tcase(void)
{
	TCase *forward = tcase_create("forward");
	tcase_set_timeout(forward, 240);
	tcase_add_loop_test(forward, test_forward_attack, 0, (int)(sizeof fwd_cases / sizeof fwd_cases[0]));
	return forward;
}
