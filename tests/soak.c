/* A bounded soak: three brokers on three hosts (network namespaces on one bridge, one host's
 * link rate-limited by tc tbf), a full mesh of pools, an echoing app on each host, and a
 * driver that keeps streams going between every pair while faults are injected.
 *
 *   soak SECONDS [SEED]
 *
 * Streams: random source and destination (another host, or "local" on the same one), the
 * broker's built-in echo or the host's echo app, random sizes (empty to 4 MiB), and random
 * endings: orderly (everything written, half-closed, every byte read back and checked),
 * closed early by the driver, or aborted. Faults, one at a time: a broker stopped past the
 * keep-alive timeout, a broker killed and restarted, an echo app killed and restarted, a
 * host's link cut briefly (TCP rides it out) or for long (keep-alive ends the connections).
 *
 * Forwarded connections (docs/FORWARDING.md) beside the streams: each broker exposes service
 * fwd whose target is a TCP echo server on its host, and forwards 127.0.0.1:7600 on its host
 * to the next host's fwd. The driver opens TCP connections to those forwards throughout,
 * with the same sizes and endings (orderly: half-closed and every byte checked; closed
 * early; reset mid-stream), held to the same checks.
 *
 * Stop condition: SECONDS pass, or the first violation: an orderly stream whose bytes differ,
 * a stream that ends in an error while no fault was under way, or a stream that does not end
 * within STREAM_BOUND seconds. At the end every broker's descriptors and resident memory must
 * be back to where they were after the warm-up, and idle (at most IDLE_TICKS of CPU in a
 * second). Prints its figures; exit status 0 when every
 * check held, 1 otherwise, 77 when it cannot run here (not root). Needs iproute2 and tc.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#include "harness.h"

#define HOSTS 3
#define MAX_STREAMS 48        /* concurrent streams the driver keeps going */
#define MAX_FORWARDED 8       /* of them, forwarded TCP connections */
#define FORWARD_PORT 7600     /* each host's forward, on its loopback */
#define TARGET_PORT 7500      /* each host's TCP echo target, on its address */
#define STREAM_BOUND 30.0     /* s: every stream ends within this */
#define FAULT_GRACE 6.0       /* s after a fault during which streams may fail because of it */
#define KEEPALIVE "1"
#define KEEPALIVE_TIMEOUT "2"
/* Allocator slack after thousands of streams came and went: the broker gives free memory
 * back only once more than 8 MiB of it is free (broker.c, TRIM_THRESHOLD), so up to that
 * stays resident by design, plus fragmentation around what is still in use. A slack equal to
 * the threshold failed one CI run in about fifty (+8.3 MiB on a broker that was never
 * restarted); leaks are the valgrind step's to find. */
#define RSS_SLACK_KIB 12288l

static const char *const names[HOSTS] = { "a", "b", "c" };

struct host {
	char netns[48];
	int ns_fd;
	char addr[16];
	unsigned port;
	char socket_path[128];
	struct process broker, echo;
	pid_t tcp_echo; /* the target of its service fwd */
	char config[128];
	wh_client *client;
	int fds_start;
	long rss_start;
};

struct soak {
	int home_fd;
	char certs[96]; /* TLS between the hosts, as a deployment has it */
	char hub[48];
	struct host hosts[HOSTS];
	uint64_t rng;
	double fault_until; /* streams that end by then may blame a fault */
	uint64_t streams_started, orderly_verified, ended_by_fault, closed_early, aborted;
	uint64_t bytes_verified, faults;
	uint64_t forwarded_started, forwarded_verified, forwarded_bytes, forwarded_by_fault,
		forwarded_early, forwarded_reset;
	const char *violation;
	char why[256];
};

struct stream {
	bool used;
	int host; /* whose client it belongs to */
	wh_stream *s;
	int fd; /* a forwarded connection's socket (then s is NULL) */
	unsigned seed;
	int kind; /* 0: orderly, 1: closed early, 2: aborted */
	size_t size, sent, received;
	bool shut;
	double started, fault_mark;
};

static double now(void)
{
	return (double)wh_now_ns() / 1e9;
}

static uint64_t rnd(struct soak *k)
{
	k->rng ^= k->rng << 13;
	k->rng ^= k->rng >> 7;
	k->rng ^= k->rng << 17;
	return k->rng;
}

static bool enter(int ns_fd)
{
	return setns(ns_fd, CLONE_NEWNET) == 0;
}

/* ---- hosts ------------------------------------------------------------------------------ */

static void remove_stale(void)
{
	(void)!system("for n in $(ip netns list 2>/dev/null | awk '/^wh-soak-/ {print $1}'); do "
		      "p=${n##*-}; kill -0 \"$p\" 2>/dev/null || ip netns del \"$n\"; done");
}

static bool network_up(struct soak *k)
{
	remove_stale();
	snprintf(k->hub, sizeof k->hub, "wh-soak-hub-%d", (int)getpid());
	if (!harness_run_shell("ip netns add %s", k->hub) ||
	    !harness_run_shell("ip -n %s link add br0 type bridge", k->hub) ||
	    !harness_run_shell("ip -n %s link set br0 up", k->hub))
		return false;
	for (int i = 0; i < HOSTS; i++) {
		struct host *h = &k->hosts[i];
		char veth[16], path[96];
		snprintf(h->netns, sizeof h->netns, "wh-soak-%s-%d", names[i], (int)getpid());
		snprintf(h->addr, sizeof h->addr, "10.232.0.%d", i + 1);
		snprintf(veth, sizeof veth, "v%s", names[i]);
		if (!harness_run_shell("ip netns add %s", h->netns) ||
		    !harness_run_shell("ip -n %s link add %s type veth peer name eth0 netns %s", k->hub, veth, h->netns) ||
		    !harness_run_shell("ip -n %s link set %s master br0 up", k->hub, veth) ||
		    !harness_run_shell("ip -n %s link set lo up", h->netns) ||
		    !harness_run_shell("ip -n %s link set eth0 up", h->netns))
			return false;
		char cidr[24];
		snprintf(cidr, sizeof cidr, "%s/24", h->addr);
		if (!harness_run_shell("ip -n %s addr add %s dev eth0", h->netns, cidr))
			return false;
		snprintf(path, sizeof path, "/run/netns/%s", h->netns);
		h->ns_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (h->ns_fd < 0)
			return false;
	}
	/* host c sits behind a slower link: 200 Mbit/s, shaped by tc tbf */
	return harness_run_shell("ip netns exec %s tc qdisc add dev eth0 root tbf rate 200mbit burst 256kb latency 20ms",
		   k->hosts[2].netns);
}

static void network_down(struct soak *k)
{
	for (int i = 0; i < HOSTS; i++)
		if (k->hosts[i].netns[0])
			harness_run_shell("ip netns del %s", k->hosts[i].netns);
	if (k->hub[0])
		harness_run_shell("ip netns del %s", k->hub);
}

static bool link_set(struct soak *k, int host, bool up)
{
	char veth[16];
	snprintf(veth, sizeof veth, "v%s", names[host]);
	return harness_run_shell("ip -n %s link set %s %s", k->hub, veth, up ? "up" : "down");
}

static bool broker_up(struct soak *k, int i)
{
	struct host *h = &k->hosts[i];
	char listen[48], peers[HOSTS - 1][64];
	snprintf(listen, sizeof listen, "%s:%u", h->addr, h->port);
	static struct harness_tls tls[HOSTS];
	const char *const *tls_args = harness_tls_args(&tls[i], k->certs, names[i]);
	const char *args[28] = { "--listen", listen, "--socket", h->socket_path, "--keepalive", KEEPALIVE,
				 "--keepalive-timeout", KEEPALIVE_TIMEOUT, "--pool-max", "1",
				 tls_args[0], tls_args[1], tls_args[2], tls_args[3], tls_args[4],
				 tls_args[5], "--config", h->config };
	int n = 18;
	for (int j = 0, p = 0; j < HOSTS; j++) {
		if (j == i)
			continue;
		/* every host listens on port 7400 + its index: pools know where to dial */
		snprintf(peers[p], sizeof peers[p], "%s=%s:%u", names[j], k->hosts[j].addr, 7400u + (unsigned)j);
		args[n++] = "--peer";
		args[n++] = peers[p++];
	}
	args[n] = NULL;
	if (!enter(h->ns_fd))
		return false;
	bool ok = broker_spawn(&h->broker, args);
	enter(k->home_fd);
	memcpy(h->broker.socket_path, h->socket_path, sizeof h->socket_path); /* apps attach here */
	return ok;
}

static bool echo_up(struct host *h)
{
	const char *args[] = { "-s", h->socket_path, "app-echo", NULL };
	if (!app_spawn(&h->echo, "examples/wh-echo", args))
		return false;
	/* listening once a local open reaches it */
	wh_client *probe = NULL;
	for (int i = 0; i < 300 && wh_client_attach(h->socket_path, &probe) != WH_OK; i++)
		usleep(10000);
	if (!probe)
		return false;
	wh_stream *s;
	int rc = WH_ENO_SERVICE;
	for (int i = 0; i < 300 && (rc = wh_open(probe, "local", "app-echo", 1000, &s)) != WH_OK; i++)
		usleep(10000); /* a condition polled with a bound */
	if (rc == WH_OK)
		wh_close(s);
	wh_client_detach(probe);
	return rc == WH_OK;
}

/* The host's [service fwd] (its target: a TCP echo server on the host's address, a process
 * per connection) and [forward fwd] (127.0.0.1:FORWARD_PORT on the host, to the next host's
 * fwd), in the config file its broker reads. */
static bool forwarding_up(struct soak *k, int i, const char *dir)
{
	struct host *h = &k->hosts[i];
	snprintf(h->config, sizeof h->config, "%s/%s.conf", dir, names[i]);
	FILE *f = fopen(h->config, "w");
	if (!f)
		return false;
	fprintf(f, "[service fwd]\ntarget = %s:%d\n\n[forward fwd]\nlisten = 127.0.0.1:%d\npeer = %s\n"
		"service = fwd\n", h->addr, TARGET_PORT, FORWARD_PORT, names[(i + 1) % HOSTS]);
	fclose(f);
	if (!enter(h->ns_fd))
		return false;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	enter(k->home_fd);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(TARGET_PORT) };
	inet_pton(AF_INET, h->addr, &a.sin_addr);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 128) < 0)
		return false;
	h->tcp_echo = fork();
	if (h->tcp_echo == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGCHLD, SIG_IGN); /* its connections' processes reap themselves */
		for (;;) {
			int c = accept(fd, NULL, NULL);
			if (c < 0)
				continue;
			if (fork() == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				static char buffer[65536];
				ssize_t n;
				while ((n = read(c, buffer, sizeof buffer)) > 0)
					for (ssize_t at = 0, w; at < n; at += w)
						if ((w = write(c, buffer + at, (size_t)(n - at))) <= 0)
							_exit(0);
				if (n == 0)
					shutdown(c, SHUT_WR); /* half-close: every byte went back first */
				_exit(0);
			}
			close(c);
		}
	}
	close(fd);
	return h->tcp_echo > 0;
}

static bool client_up(struct host *h)
{
	if (h->client)
		wh_client_detach(h->client);
	h->client = NULL;
	for (int i = 0; i < 300; i++) {
		if (wh_client_attach(h->socket_path, &h->client) == WH_OK)
			return true;
		usleep(10000);
	}
	return false;
}

/* ---- streams ---------------------------------------------------------------------------- */

static void violation(struct soak *k, const char *what, const struct stream *st, int error)
{
	if (k->violation)
		return;
	k->violation = what;
	snprintf(k->why, sizeof k->why, "%s: stream %u (%zu of %zu bytes sent, %zu back, age %.1f s): %s",
		 what, st->seed, st->sent, st->size, st->received, now() - st->started,
		 error ? wh_strerror(error) : "-");
}

static void stream_end(struct soak *k, struct stream *st, int error)
{
	if (error && error != WH_EWOULDBLOCK) {
		/* an error: fine only if a fault was under way during the stream's life */
		if (st->fault_mark < k->fault_until || now() < k->fault_until)
			k->ended_by_fault++;
		else if (st->kind == 0)
			violation(k, "an error with no fault under way", st, error);
	} else if (st->kind == 0) {
		if (st->received != st->size)
			violation(k, "an orderly stream ended short", st, 0);
		k->orderly_verified++;
		k->bytes_verified += st->received;
	}
	wh_close(st->s);
	st->used = false;
}

static void stream_start(struct soak *k, struct stream *st)
{
	int from = (int)(rnd(k) % HOSTS), to = (int)(rnd(k) % HOSTS);
	struct host *h = &k->hosts[from];
	if (!h->client)
		return;
	bool local = from == to;
	const char *service = local || rnd(k) % 2 ? "app-echo" : "echo";
	wh_stream *s;
	if (wh_open(h->client, local ? "local" : names[to], service, 2000, &s) != WH_OK)
		return; /* refused or timed out: a fault under way, nothing to check */
	static const size_t sizes[] = { 0, 1, 100, 4096, 65536, 300000, 1u << 20, 4u << 20 };
	*st = (struct stream){ .used = true, .host = from, .s = s, .seed = (unsigned)++k->streams_started,
			       .size = sizes[rnd(k) % 8], .started = now(), .fault_mark = k->fault_until };
	unsigned ending = (unsigned)(rnd(k) % 10);
	st->kind = ending < 8 ? 0 : ending == 8 ? 1 : 2;
	wh_set_nonblocking(s, true);
}

/* ---- forwarded connections -------------------------------------------------------------- */

/* Whether one byte goes through host i's forward and comes back (its pool is up). */
static bool forward_answers(struct soak *k, int i)
{
	if (!enter(k->hosts[i].ns_fd))
		return false;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	enter(k->home_fd);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(FORWARD_PORT),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval bound = { .tv_sec = 5 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
	char byte = 0;
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && send(fd, "x", 1, MSG_NOSIGNAL) == 1 &&
		  shutdown(fd, SHUT_WR) == 0 && recv(fd, &byte, 1, 0) == 1 && byte == 'x' &&
		  recv(fd, &byte, 1, 0) == 0;
	close(fd);
	return ok;
}

/* Every host's forward carries a byte (bounded): the warm-up starts from connected pools. */
static bool forwards_ready(struct soak *k)
{
	for (int i = 0; i < HOSTS; i++) {
		int tries = 0;
		while (!forward_answers(k, i))
			if (++tries == 100)
				return false;
			else
				usleep(100000); /* a condition polled with a bound */
	}
	return true;
}

static void forwarded_end(struct soak *k, struct stream *st, int error)
{
	if (error) {
		/* an error, or EOF short of the bytes sent: fine only if a fault was under way */
		if (st->fault_mark < k->fault_until || now() < k->fault_until) {
			k->forwarded_by_fault++;
		} else if (st->kind == 0) {
			fprintf(stderr, "soak: forwarded connection %u: %s\n", st->seed, strerror(error));
			violation(k, "a forwarded connection failed or ended short with no fault under way", st, 0);
		}
	} else if (st->kind == 0) {
		k->forwarded_verified++;
		k->forwarded_bytes += st->received;
	}
	close(st->fd);
	st->used = false;
}

/* A TCP connection to a host's forward, from inside that host. */
static void forwarded_start(struct soak *k, struct stream *st)
{
	int from = (int)(rnd(k) % HOSTS);
	if (!enter(k->hosts[from].ns_fd))
		return;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	enter(k->home_fd);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(FORWARD_PORT),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		if (fd >= 0)
			close(fd); /* its broker is down (a fault): nothing to check */
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	static const size_t sizes[] = { 0, 1, 100, 4096, 65536, 300000, 1u << 20 };
	*st = (struct stream){ .used = true, .host = from, .fd = fd, .seed = (unsigned)++k->streams_started,
			       .size = sizes[rnd(k) % 7], .started = now(), .fault_mark = k->fault_until };
	unsigned ending = (unsigned)(rnd(k) % 10);
	st->kind = ending < 8 ? 0 : ending == 8 ? 1 : 2;
	k->forwarded_started++;
}

/* Reads what the echo sent back, checking it; false when the connection has ended. */
static bool forwarded_read(struct soak *k, struct stream *st)
{
	unsigned char buffer[65536];
	for (;;) {
		ssize_t r = recv(st->fd, buffer, sizeof buffer, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return true;
		if (r <= 0) {
			forwarded_end(k, st, r < 0 ? errno : st->received == st->size ? 0 : ECONNABORTED);
			return false;
		}
		for (ssize_t i = 0; i < r; i++)
			if (buffer[i] != harness_pattern(st->seed, st->received + (size_t)i)) {
				violation(k, "a forwarded connection's bytes differ", st, 0);
				forwarded_end(k, st, 0);
				return false;
			}
		st->received += (size_t)r;
		if (st->kind == 1) { /* close early: unread bytes stay behind (the broker sees RST) */
			k->forwarded_early++;
			close(st->fd);
			st->used = false;
			return false;
		}
	}
}

/* One non-blocking step of a forwarded connection; false when it has ended. */
static bool forwarded_step(struct soak *k, struct stream *st)
{
	unsigned char buffer[65536];
	if (st->kind == 2 && st->sent >= st->size / 2) { /* reset mid-stream */
		struct linger hard = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(st->fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
		close(st->fd);
		k->forwarded_reset++;
		st->used = false;
		return false;
	}
	while (st->sent < st->size) {
		size_t n = st->size - st->sent < sizeof buffer ? st->size - st->sent : sizeof buffer;
		for (size_t i = 0; i < n; i++)
			buffer[i] = harness_pattern(st->seed, st->sent + i);
		ssize_t w = send(st->fd, buffer, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			break;
		if (w < 0) {
			forwarded_end(k, st, errno);
			return false;
		}
		st->sent += (size_t)w;
	}
	if (st->sent == st->size && !st->shut) {
		shutdown(st->fd, SHUT_WR);
		st->shut = true;
	}
	if (!forwarded_read(k, st))
		return false;
	if (now() - st->started > STREAM_BOUND) {
		violation(k, "a forwarded connection did not end in time", st, 0);
		close(st->fd);
		st->used = false;
		return false;
	}
	return true;
}

/* One non-blocking step; false when the stream has ended. */
static bool stream_step(struct soak *k, struct stream *st)
{
	unsigned char buffer[65536];
	if (st->kind == 2 && st->sent >= st->size / 2) {
		wh_abort(st->s, WH_ESTREAM_CLOSED);
		k->aborted++;
		wh_close(st->s);
		st->used = false;
		return false;
	}
	while (st->sent < st->size) {
		size_t n = st->size - st->sent < sizeof buffer ? st->size - st->sent : sizeof buffer;
		for (size_t i = 0; i < n; i++)
			buffer[i] = harness_pattern(st->seed, st->sent + i);
		long w = wh_write(st->s, buffer, n);
		if (w == WH_EWOULDBLOCK)
			break;
		if (w < 0) {
			stream_end(k, st, (int)w);
			return false;
		}
		st->sent += (size_t)w;
	}
	if (st->sent == st->size && !st->shut) {
		wh_shutdown(st->s);
		st->shut = true;
	}
	for (;;) {
		long r = wh_read(st->s, buffer, sizeof buffer);
		if (r == WH_EWOULDBLOCK)
			break;
		if (r <= 0) {
			stream_end(k, st, (int)r);
			return false;
		}
		for (long i = 0; i < r; i++)
			if (buffer[i] != harness_pattern(st->seed, st->received + (size_t)i)) {
				violation(k, "bytes differ", st, 0);
				stream_end(k, st, 0);
				return false;
			}
		st->received += (size_t)r;
		if (st->kind == 1 && st->received > 0) { /* close early: unread bytes stay behind */
			k->closed_early++;
			wh_close(st->s);
			st->used = false;
			return false;
		}
	}
	if (now() - st->started > STREAM_BOUND) {
		violation(k, "a stream did not end in time", st, 0);
		wh_close(st->s);
		st->used = false;
		return false;
	}
	return true;
}

/* ---- faults ----------------------------------------------------------------------------- */

/* Pumps the streams for `seconds` (faults run while traffic flows). */
static void pump(struct soak *k, struct stream *streams, double seconds, bool start_new);

static void fault(struct soak *k, struct stream *streams)
{
	int victim = (int)(rnd(k) % HOSTS);
	struct host *h = &k->hosts[victim];
	int what = (int)(rnd(k) % 5);
	static const char *const kinds[] = { "broker stopped 3 s", "broker killed and restarted",
					     "echo app killed and restarted", "link cut 0.5 s",
					     "link cut 4 s" };
	fprintf(stderr, "soak: fault on %s: %s\n", names[victim], kinds[what]);
	k->faults++;
	k->fault_until = now() + 3600; /* under way */
	switch (what) {
	case 0:
		kill(h->broker.pid, SIGSTOP);
		pump(k, streams, 3.0, false);
		kill(h->broker.pid, SIGCONT);
		break;
	case 1:
		/* the driver's streams through that broker end with it (WH_EBROKER_GONE) */
		for (int i = 0; i < MAX_STREAMS; i++)
			if (streams[i].used && streams[i].s && streams[i].host == victim) {
				k->ended_by_fault++;
				wh_close(streams[i].s);
				streams[i].used = false;
			}
		process_stop(&h->broker, SIGKILL);
		process_stop(&h->echo, SIGKILL); /* its session died with the broker */
		if (!broker_up(k, victim) || !client_up(h))
			violation(k, "a broker did not come back", &(struct stream){ 0 }, 0);
		h->fds_start = -1; /* a new process: its baseline is taken again */
		if (!echo_up(h))
			violation(k, "an echo app did not come back", &(struct stream){ 0 }, 0);
		break;
	case 2:
		process_stop(&h->echo, SIGKILL);
		if (!echo_up(h))
			violation(k, "an echo app did not come back", &(struct stream){ 0 }, 0);
		break;
	case 3:
	case 4:
		link_set(k, victim, false);
		pump(k, streams, what == 3 ? 0.5 : 4.0, false);
		link_set(k, victim, true);
		break;
	}
	k->fault_until = now() + FAULT_GRACE;
}

static void pump(struct soak *k, struct stream *streams, double seconds, bool start_new)
{
	double end = now() + seconds;
	while (now() < end && !k->violation) {
		struct pollfd fds[MAX_STREAMS];
		int n = 0;
		for (int i = 0; i < MAX_STREAMS; i++) {
			struct stream *st = &streams[i];
			bool forwarded = i < MAX_FORWARDED; /* the first slots carry forwarded connections */
			if (!st->used && start_new)
				(forwarded ? forwarded_start : stream_start)(k, st);
			if (st->used && forwarded && forwarded_step(k, st))
				fds[n++] = (struct pollfd){ st->fd, (short)(POLLIN | (st->sent < st->size ? POLLOUT : 0)), 0 };
			else if (st->used && !forwarded && stream_step(k, st))
				fds[n++] = (struct pollfd){ wh_stream_fd(st->s), POLLIN, 0 };
		}
		if (n == 0 && !start_new)
			return; /* every stream has ended */
		poll(fds, (nfds_t)n, 50);
	}
}

/* Brokers that used more than IDLE_TICKS of CPU in the second after everything settled (with
 * nothing left to carry, only keep-alive's PINGs). */
#define IDLE_TICKS 10 /* clock ticks (1/100 s) */
static int brokers_busy(struct soak *k)
{
	long start[HOSTS];
	for (int i = 0; i < HOSTS; i++)
		start[i] = process_cpu_ticks(&k->hosts[i].broker);
	usleep(1000000); /* a measurement window */
	int busy = 0;
	for (int i = 0; i < HOSTS; i++) {
		long ticks = process_cpu_ticks(&k->hosts[i].broker) - start[i];
		fprintf(stderr, "soak: broker %s: %ld ticks of CPU in the second after\n", names[i], ticks);
		busy += ticks > IDLE_TICKS;
	}
	return busy;
}

static void baseline(struct soak *k)
{
	for (int i = 0; i < HOSTS; i++) {
		struct host *h = &k->hosts[i];
		if (h->fds_start < 0) {
			h->fds_start = process_fd_count(&h->broker);
			h->rss_start = process_rss_kib(&h->broker);
		}
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: soak SECONDS [SEED]\n");
		return 2;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "soak: needs root (network namespaces): skipped\n");
		return 77;
	}
	double seconds = atof(argv[1]);
	static struct soak k;
	k.rng = argc > 2 ? strtoull(argv[2], NULL, 0) : (uint64_t)getpid() * 2654435761u + 1;
	fprintf(stderr, "soak: %.0f s, seed %llu\n", seconds, (unsigned long long)k.rng);
	signal(SIGPIPE, SIG_IGN);
	k.home_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	char dir[64];
	harness_tempdir(dir, sizeof dir);
	snprintf(k.certs, sizeof k.certs, "%s/certs", dir);
	char host_names[64] = "";
	for (int i = 0; i < HOSTS; i++)
		snprintf(host_names + strlen(host_names), sizeof host_names - strlen(host_names), "%s ",
			 names[i]);
	bool ok = harness_make_certs(k.certs, host_names) && network_up(&k);
	for (int i = 0; i < HOSTS && ok; i++)
		ok = forwarding_up(&k, i, dir);
	for (int i = 0; i < HOSTS && ok; i++) {
		struct host *h = &k.hosts[i];
		h->port = 7400u + (unsigned)i;
		h->fds_start = -1;
		snprintf(h->socket_path, sizeof h->socket_path, "%s/%s.sock", dir, names[i]);
		ok = broker_up(&k, i);
	}
	for (int i = 0; i < HOSTS && ok; i++)
		ok = echo_up(&k.hosts[i]) && client_up(&k.hosts[i]);
	ok = ok && forwards_ready(&k);
	if (!ok) {
		fprintf(stderr, "soak: cannot set up the hosts\n");
		network_down(&k);
		return 1;
	}
	static struct stream streams[MAX_STREAMS];
	double start = now();
	pump(&k, streams, 3.0, true); /* warm-up: pools connected, memory at its working size */
	pump(&k, streams, STREAM_BOUND, false);
	baseline(&k);
	double next_fault = now() + 2.0;
	while (now() - start < seconds && !k.violation) {
		pump(&k, streams, 0.5, true);
		if (now() >= next_fault) {
			fault(&k, streams);
			next_fault = now() + 3.0 + (double)(rnd(&k) % 4000) / 1000.0;
		}
	}
	/* let every stream end, then everything settle */
	pump(&k, streams, STREAM_BOUND + 5, false);
	for (int i = 0; i < MAX_STREAMS; i++)
		if (streams[i].used)
			violation(&k, "a stream did not end in time", &streams[i], 0);
	for (int i = 0; i < HOSTS; i++) {
		wh_client_detach(k.hosts[i].client);
		k.hosts[i].client = NULL;
	}
	baseline(&k); /* brokers restarted late get theirs now */
	int fds_bad = 0;
	for (int i = 0; i < HOSTS; i++) {
		struct host *h = &k.hosts[i];
		double deadline = now() + 15; /* descriptors at once, memory within the trim interval */
		int fds;
		long rss;
		while (((fds = process_fd_count(&h->broker)) > h->fds_start ||
			(rss = process_rss_kib(&h->broker)) > h->rss_start + RSS_SLACK_KIB) &&
		       now() < deadline)
			usleep(100000); /* polling a condition with a deadline */
		rss = process_rss_kib(&h->broker);
		struct wh_client_stats books = { 0 };
		wh_client *observer;
		if (wh_client_attach(h->socket_path, &observer) == WH_OK) {
			wh_client_stats(observer, &books);
			wh_client_detach(observer);
		}
		fprintf(stderr, "soak: broker %s: fds %d (start %d), rss %ld KiB (start %ld), app streams %llu, "
			"apps %llu\n", names[i], fds, h->fds_start, rss, h->rss_start,
			(unsigned long long)books.broker_streams, (unsigned long long)books.broker_clients - 1);
		if (fds > h->fds_start || rss > h->rss_start + RSS_SLACK_KIB) {
			fds_bad++;
			char command[160];
			snprintf(command, sizeof command, "ls -l /proc/%d/fd >&2; ip netns exec %s ss -tanp >&2",
				 (int)h->broker.pid, h->netns);
			(void)!system(command);
		}
	}
	int busy = brokers_busy(&k);
	fprintf(stderr, "soak: %.0f s, %llu streams: %llu orderly verified (%llu bytes), %llu ended by "
		"faults, %llu closed early, %llu aborted; %llu faults\n", now() - start,
		(unsigned long long)k.streams_started, (unsigned long long)k.orderly_verified,
		(unsigned long long)k.bytes_verified, (unsigned long long)k.ended_by_fault,
		(unsigned long long)k.closed_early, (unsigned long long)k.aborted,
		(unsigned long long)k.faults);
	fprintf(stderr, "soak: %llu forwarded connections: %llu orderly verified (%llu bytes), %llu ended by "
		"faults, %llu closed early, %llu reset\n", (unsigned long long)k.forwarded_started,
		(unsigned long long)k.forwarded_verified, (unsigned long long)k.forwarded_bytes,
		(unsigned long long)k.forwarded_by_fault, (unsigned long long)k.forwarded_early,
		(unsigned long long)k.forwarded_reset);
	for (int i = 0; i < HOSTS; i++) {
		if (k.violation || fds_bad || busy)
			process_dump_log(&k.hosts[i].broker);
		process_stop(&k.hosts[i].echo, SIGTERM);
		process_stop(&k.hosts[i].broker, SIGTERM);
		if (k.hosts[i].tcp_echo > 0) {
			kill(k.hosts[i].tcp_echo, SIGKILL);
			waitpid(k.hosts[i].tcp_echo, NULL, 0);
		}
	}
	network_down(&k);
	harness_cleanup_dir(dir);
	if (k.violation)
		fprintf(stderr, "soak: FAILED: %s\n", k.why);
	else if (fds_bad)
		fprintf(stderr, "soak: FAILED: a broker's descriptors or memory did not come back\n");
	else if (busy)
		fprintf(stderr, "soak: FAILED: a broker was not idle once everything settled\n");
	else
		fprintf(stderr, "soak: passed\n");
	return k.violation || fds_bad || busy ? 1 : 0;
}
