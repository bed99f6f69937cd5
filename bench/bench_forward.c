/* Benchmark of forwarding: one unmodified program's TCP connection carried through two
 * brokers,
 *
 *   client -> [forward] on B -> B -> A -> [service] with a target on A -> target server
 *
 * against, in the same run: the client straight to the server (raw TCP); two socat relays
 * chained the same way (`socat TCP-LISTEN:P1,fork,reuseaddr TCP:127.0.0.1:P2`, then P2 to the
 * server); and `ssh -N -L` through a loopback sshd (against the brokers over TLS). Over the
 * 50 ms link (root: tests/integration/delay_link.c), raw TCP and ssh -L across the same link.
 *
 *   bench_forward BROKER JSON [BULK_MIB] [CONNECTIONS]
 *
 * The target server and every client are this program's own C code: one epoll loop serves
 * every path (a sink that reads 1 MiB a call, an echo), so each baseline meets the same
 * server with the same buffer sizes. BENCH_SHORT=1 takes short settings for a trial (64 MiB
 * bulk, 1,000 round trips, 300 connections for the rate, 1,000 concurrent connections).
 * BENCH_ONLY picks one group: forward (all of them), forward_bulk, forward_tls, forward_rtt,
 * forward_rate, forward_many, forward_far.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "delay_link.h"

#define MESSAGE 64           /* the request/response and connection-rate figures' message */
#define MANY_BYTES 1024      /* what each concurrent connection sends and checks, each time */
#define MANY_IN_FLIGHT 512   /* concurrent connections being opened at once */
#define IDLE_GOAL_KIB 16.0   /* the goal for broker memory per idle connection */

struct settings {
	size_t bulk, pings, connects, many;
};

/* Every process the run starts, stopped at its end (or when a helper gives up). */
#define SPAWNED_MAX 64
static pid_t spawned[SPAWNED_MAX];
static int spawned_count;
static pid_t bench_main_pid;

static pid_t track(pid_t pid)
{
	if (pid > 0 && spawned_count < SPAWNED_MAX)
		spawned[spawned_count++] = pid;
	return pid;
}

/* Stops the given processes (SIGTERM, then reaped) and forgets them. */
static void stop_pids(pid_t *pids, int n)
{
	for (int i = 0; i < n; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGTERM);
	for (int i = 0; i < n; i++) {
		if (pids[i] <= 0)
			continue;
		waitpid(pids[i], NULL, 0);
		for (int j = 0; j < spawned_count; j++)
			if (spawned[j] == pids[i])
				spawned[j] = -1;
		pids[i] = -1;
	}
}

static void stop_spawned(void)
{
	if (getpid() == bench_main_pid)
		stop_pids(spawned, spawned_count);
}

static bool selected(const char *group)
{
	const char *only = getenv("BENCH_ONLY");
	return !only || strcmp(only, "forward") == 0 || strcmp(only, group) == 0;
}

/* A port nobody listens on now, on 127.0.0.1 of the calling thread's namespace, for the
 * programs that cannot pick one themselves (socat, sshd, ssh, the forwards). */
static unsigned free_port(void)
{
	struct endpoint ep = { 0 };
	int fd = listen_endpoint(&ep);
	close(fd);
	return ep.port;
}

/* Waits until something accepts at ep (each try is a real connection, closed at once). */
static bool wait_listening(const struct endpoint *ep, double seconds)
{
	double deadline = now_s() + seconds;
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)ep->port) };
	inet_pton(AF_INET, ep->host[0] ? ep->host : "127.0.0.1", &addr.sin_addr);
	while (now_s() < deadline) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
		close(fd);
		if (rc == 0)
			return true;
		usleep(20000);
	}
	fprintf(stderr, "bench: nothing listens on %s:%u\n", ep->host[0] ? ep->host : "127.0.0.1", ep->port);
	return false;
}

static struct endpoint loopback(unsigned port)
{
	return (struct endpoint){ .port = port };
}

/* ---- the target server: one epoll loop, every connection non-blocking ---------------------- */

struct tconn {
	int fd;
	bool sink;
	char *pending; /* echo bytes the socket did not take yet */
	size_t length, offset;
	bool eof;
};

static char target_buffer[BENCH_BULK_IO];

static void tconn_close(int ep, struct tconn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->pending);
	free(c);
}

/* Writes what the echo holds; false once the connection is over. */
static bool tconn_flush(int ep, struct tconn *c)
{
	while (c->offset < c->length) {
		ssize_t w = write(c->fd, c->pending + c->offset, c->length - c->offset);
		if (w < 0 && errno == EAGAIN) {
			struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
			epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
			return true;
		}
		if (w <= 0)
			return false;
		c->offset += (size_t)w;
	}
	c->length = c->offset = 0;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	return !c->eof;
}

/* One read: a sink drops it, an echo writes it back (what the socket does not take waits,
 * and the connection is not read until it went). False once the connection is over. */
static bool tconn_step(int ep, struct tconn *c, bool writable)
{
	if (writable)
		return tconn_flush(ep, c);
	size_t want = c->sink ? sizeof target_buffer : 64 * 1024;
	ssize_t n = read(c->fd, target_buffer, want);
	if (n < 0 && errno == EAGAIN)
		return true;
	if (n <= 0)
		return false; /* EOF: the client is done; closing tells it we are too */
	if (c->sink)
		return true;
	char *copy = realloc(c->pending, (size_t)n);
	if (!copy)
		return false;
	memcpy(copy, target_buffer, (size_t)n);
	c->pending = copy;
	c->length = (size_t)n;
	c->offset = 0;
	return tconn_flush(ep, c);
}

static void target_accept(int ep, int listener, bool sink)
{
	for (;;) {
		int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
		if (fd < 0)
			return;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct tconn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->sink = sink;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	}
}

/* Listeners: [0] a sink, [1] an echo. Runs until killed. */
static void target_loop(const int *listeners)
{
	int ep = epoll_create1(0);
	static char marks[2];
	for (int i = 0; i < 2; i++) {
		fcntl(listeners[i], F_SETFL, O_NONBLOCK);
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &marks[i] };
		epoll_ctl(ep, EPOLL_CTL_ADD, listeners[i], &ev);
	}
	struct epoll_event events[256];
	for (;;) {
		int n = epoll_wait(ep, events, 256, -1);
		for (int i = 0; i < n; i++) {
			void *p = events[i].data.ptr;
			if (p == &marks[0] || p == &marks[1]) {
				target_accept(ep, listeners[p == &marks[1]], p == &marks[0]);
				continue;
			}
			struct tconn *c = p;
			if (!tconn_step(ep, c, (events[i].events & EPOLLOUT) != 0))
				tconn_close(ep, c);
		}
	}
}

/* The server in a child process: sink and echo listening at host (empty: 127.0.0.1). */
static pid_t target_server(const char *host, struct endpoint *sink, struct endpoint *echo)
{
	*sink = *echo = (struct endpoint){ 0 };
	snprintf(sink->host, sizeof sink->host, "%s", host);
	snprintf(echo->host, sizeof echo->host, "%s", host);
	int listeners[2] = { listen_endpoint(sink), listen_endpoint(echo) };
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		target_loop(listeners);
	}
	close(listeners[0]);
	close(listeners[1]);
	return track(pid);
}

/* ---- the paths: two brokers, two socat relays, ssh -L ---------------------------------------- */

/* One pair of brokers: A exposes the sink and the echo, B forwards to them. */
struct pair {
	pid_t a, b;
	struct endpoint sink, echo; /* B's forwards */
};

struct pair_options {
	const char *dir, *tag;
	const char *a_listen;        /* HOST for A's peer listener: 127.0.0.1, or the far end's */
	const char *target_host;     /* where A finds the target server */
	const char *certs;           /* a directory made by make-certs.sh (names a and b), or NULL */
	unsigned max_connections;
	const char *budget;          /* both brokers' budget (an option's value), or NULL */
};

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0) {
		perror(path);
		exit(1);
	}
	fclose(f);
}

/* A with its config: the two services with targets (open to every peer when A's listener is
 * off loopback in plaintext: docs/SECURITY.md). */
static pid_t pair_start_a(const char *broker, const struct pair_options *o, const struct endpoint *sink,
			  const struct endpoint *echo, unsigned *port)
{
	char conf[300], text[1024], listen[64], port_file[300], sock[300], cert[300], key[300], ca[300];
	bool off_loopback = strcmp(o->a_listen, "127.0.0.1") != 0;
	snprintf(conf, sizeof conf, "%s/%sa.conf", o->dir, o->tag);
	snprintf(text, sizeof text, "[broker]\nlisten-plaintext = %s\n%s%s\n[service fwd-sink]\ntarget = %s:%u\n%s"
		 "[service fwd-echo]\ntarget = %s:%u\n%s", off_loopback && !o->certs ? "yes" : "no",
		 o->budget ? "budget = " : "", o->budget ? o->budget : "", o->target_host, sink->port, off_loopback ? "peers = *\n" : "", o->target_host, echo->port,
		 off_loopback ? "peers = *\n" : "");
	write_text(conf, text);
	snprintf(listen, sizeof listen, "%s:0", o->a_listen);
	snprintf(port_file, sizeof port_file, "%s/%sa.port", o->dir, o->tag);
	snprintf(sock, sizeof sock, "%s/%sa.sock", o->dir, o->tag);
	snprintf(cert, sizeof cert, "%s/a.pem", o->certs ? o->certs : "");
	snprintf(key, sizeof key, "%s/a.key", o->certs ? o->certs : "");
	snprintf(ca, sizeof ca, "%s/ca.pem", o->certs ? o->certs : "");
	const char *args[] = { "--config", conf, "--listen", listen, "--port-file", port_file, "--socket",
			       sock, "--keepalive", "0", o->certs ? "--tls-cert" : NULL, cert, "--tls-key",
			       key, "--tls-ca", ca, NULL };
	return track(spawn_broker(broker, args, port_file, port));
}

/* B with its config: peer a and the two forwards, on ports of the calling thread's
 * namespace's loopback. Every client of the bench comes from 127.0.0.1, and the connection
 * rate and 10,000 concurrent figures open connections from it far faster than a forward's
 * default client-reset-rate lets one address hold young or silent streams: the bound is off
 * (client-reset-rate = 0), as docs/FORWARDING.md says for a forward behind a proxy. */
static pid_t pair_start_b(const char *broker, const struct pair_options *o, unsigned port_a, struct pair *p)
{
	char conf[300], text[1024], port_file[300], sock[300], cert[300], key[300], ca[300];
	p->sink = loopback(free_port());
	p->echo = loopback(free_port());
	bool off_loopback = strcmp(o->a_listen, "127.0.0.1") != 0;
	snprintf(conf, sizeof conf, "%s/%sb.conf", o->dir, o->tag);
	snprintf(text, sizeof text, "[broker]\n%s%s\n[peer a]\naddress = %s:%u\n%s\n"
		 "[forward fwd-sink]\nlisten = 127.0.0.1:%u\npeer = a\nservice = fwd-sink\nmax-connections = %u\nclient-reset-rate = 0\n\n"
		 "[forward fwd-echo]\nlisten = 127.0.0.1:%u\npeer = a\nservice = fwd-echo\nmax-connections = %u\nclient-reset-rate = 0\n",
		 o->budget ? "budget = " : "", o->budget ? o->budget : "", o->a_listen, port_a, off_loopback && !o->certs ? "plaintext = yes\n" : "", p->sink.port,
		 o->max_connections, p->echo.port, o->max_connections);
	write_text(conf, text);
	snprintf(port_file, sizeof port_file, "%s/%sb.port", o->dir, o->tag);
	snprintf(sock, sizeof sock, "%s/%sb.sock", o->dir, o->tag);
	snprintf(cert, sizeof cert, "%s/b.pem", o->certs ? o->certs : "");
	snprintf(key, sizeof key, "%s/b.key", o->certs ? o->certs : "");
	snprintf(ca, sizeof ca, "%s/ca.pem", o->certs ? o->certs : "");
	unsigned port_b;
	const char *args[] = { "--config", conf, "--listen", "127.0.0.1:0", "--port-file", port_file,
			       "--socket", sock, "--keepalive", "0", o->certs ? "--tls-cert" : NULL, cert,
			       "--tls-key", key, "--tls-ca", ca, NULL };
	return track(spawn_broker(broker, args, port_file, &port_b));
}

/* Starts A, then B, and waits until both forwards take a connection. link: A (and the target
 * it reaches) in the far namespace, B in the near one, and the calling thread left in the near
 * one, where B's forwards listen. */
static bool pair_start(const char *broker, const struct pair_options *o, const struct endpoint *sink,
		       const struct endpoint *echo, struct pair *p, struct delay_link *link)
{
	unsigned port_a = 0;
	if (link && !delay_link_enter(link, DELAY_LINK_FAR))
		return false;
	p->a = pair_start_a(broker, o, sink, echo, &port_a);
	if (link && !delay_link_enter(link, DELAY_LINK_NEAR))
		return false;
	p->b = p->a > 0 ? pair_start_b(broker, o, port_a, p) : -1;
	return p->a > 0 && p->b > 0 && wait_listening(&p->sink, 10) && wait_listening(&p->echo, 10);
}

static void pair_stop(struct pair *p)
{
	stop_pids(&p->b, 1); /* B dials A: stopped first, it does not redial a stopped A */
	stop_pids(&p->a, 1);
}

/* Two socat relays chained to `to`: the client connects to the first one's port. */
static bool socat_chain(const struct endpoint *to, struct endpoint *entry, pid_t *pids)
{
	unsigned p1 = free_port(), p2 = free_port();
	char listen[2][64], connect[2][64];
	snprintf(listen[0], sizeof listen[0], "TCP-LISTEN:%u,bind=127.0.0.1,fork,reuseaddr", p2);
	snprintf(connect[0], sizeof connect[0], "TCP:127.0.0.1:%u", to->port);
	snprintf(listen[1], sizeof listen[1], "TCP-LISTEN:%u,bind=127.0.0.1,fork,reuseaddr", p1);
	snprintf(connect[1], sizeof connect[1], "TCP:127.0.0.1:%u", p2);
	for (int i = 0; i < 2; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			execl("/usr/bin/socat", "socat", listen[i], connect[i], (char *)NULL);
			_exit(127);
		}
		pids[i] = track(pid);
		struct endpoint at = loopback(i == 0 ? p2 : p1);
		if (!wait_listening(&at, 10))
			return false;
	}
	*entry = loopback(p1);
	return true;
}

/* ---- ssh -L: sshd on a loopback port with a key, a config and host key of its own ---------- */

static bool run_quiet(const char *command)
{
	char line[2100];
	snprintf(line, sizeof line, "%s >/dev/null 2>&1", command);
	return system(line) == 0;
}

/* Writes sshd's keys and config in ssh_dir: it listens at host:port. */
static bool sshd_files(const char *ssh_dir, const char *host, unsigned port)
{
	char command[2048], text[2048];
	mkdir(ssh_dir, 0700);
	mkdir("/run/sshd", 0755); /* sshd's privilege separation directory, as its package makes it */
	snprintf(command, sizeof command, "ssh-keygen -q -t ed25519 -N '' -f %s/host_key && "
		 "ssh-keygen -q -t ed25519 -N '' -f %s/user_key && cp %s/user_key.pub %s/authorized_keys",
		 ssh_dir, ssh_dir, ssh_dir, ssh_dir);
	if (!run_quiet(command))
		return false;
	/* The cipher is pinned to AES-128-GCM: the brokers' TLS takes AES-128-GCM first. */
	snprintf(text, sizeof text, "Port %u\nListenAddress %s\nHostKey %s/host_key\n"
		 "AuthorizedKeysFile %s/authorized_keys\nPidFile none\nUsePAM no\nStrictModes no\n"
		 "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
		 "KbdInteractiveAuthentication no\nAllowTcpForwarding yes\nCiphers aes128-gcm@openssh.com\n"
		 "LogLevel ERROR\n", port, host, ssh_dir, ssh_dir);
	snprintf(command, sizeof command, "%s/sshd_config", ssh_dir);
	write_text(command, text);
	return true;
}

/* sshd in the foreground at host (the calling thread's namespace); its port, or 0. */
static unsigned sshd_start(const char *ssh_dir, const char *host, pid_t *pid)
{
	char config[400], log[400];
	unsigned port = free_port();
	if (getuid() != 0 || !sshd_files(ssh_dir, host, port))
		return 0;
	snprintf(config, sizeof config, "%s/sshd_config", ssh_dir);
	snprintf(log, sizeof log, "%s/sshd.log", ssh_dir); /* it logs each probe of its port */
	*pid = track(fork());
	if (*pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", config, (char *)NULL);
		_exit(127);
	}
	struct endpoint at = loopback(port);
	snprintf(at.host, sizeof at.host, "%s", host);
	return wait_listening(&at, 10) ? port : 0;
}

/* sshd beside the server `to` (at to's host; link: in the far namespace) and `ssh -N -L`
 * to it (link: in the near one, where the thread is left): the client connects to *entry.
 * pids[0] sshd, pids[1] ssh. */
static bool ssh_forward(const char *ssh_dir, struct delay_link *link, const struct endpoint *to,
			struct endpoint *entry, pid_t *pids)
{
	char key[400], forward[96], port_text[16], login[128];
	const char *host = to->host[0] ? to->host : "127.0.0.1";
	if (link && !delay_link_enter(link, DELAY_LINK_FAR))
		return false;
	unsigned sshd_port = sshd_start(ssh_dir, host, &pids[0]);
	if (!sshd_port || (link && !delay_link_enter(link, DELAY_LINK_NEAR)))
		return false;
	snprintf(key, sizeof key, "%s/user_key", ssh_dir);
	*entry = loopback(free_port());
	snprintf(forward, sizeof forward, "127.0.0.1:%u:%s:%u", entry->port, host, to->port);
	snprintf(port_text, sizeof port_text, "%u", sshd_port);
	struct passwd *pw = getpwuid(getuid());
	snprintf(login, sizeof login, "%s@%s", pw ? pw->pw_name : "root", host);
	pids[1] = track(fork());
	if (pids[1] == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl("/usr/bin/ssh", "ssh", "-N", "-L", forward, "-c", "aes128-gcm@openssh.com", "-o",
		      "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		      "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR", "-i", key, "-p", port_text,
		      login, (char *)NULL);
		_exit(127);
	}
	return wait_listening(entry, 20);
}

/* ---- the clients ---------------------------------------------------------------------------- */

/* Connections per second: connect, one 64-byte request, its answer, close; one at a time. */
static double connect_rate(const struct endpoint *ep, size_t n)
{
	char message[MESSAGE];
	memset(message, 'r', sizeof message);
	double start = now_s();
	for (size_t i = 0; i < n; i++) {
		int fd = raw_connect(ep, false);
		if (write(fd, message, sizeof message) != sizeof message)
			exit(1);
		for (size_t got = 0; got < sizeof message;) {
			ssize_t r = read(fd, message + got, sizeof message - got);
			if (r <= 0) {
				fprintf(stderr, "bench: connection %zu to port %u: no answer\n", i, ep->port);
				exit(1);
			}
			got += (size_t)r;
		}
		close(fd);
	}
	return (double)n / (now_s() - start);
}

/* The median of one path's rounds. */
static double median(double *values, int n)
{
	return percentile(values, (size_t)n, 0.5);
}

/* A note that lives as long as the run (the report is printed at its end). */
__attribute__((format(printf, 1, 2))) static const char *note_text(const char *format, ...)
{
	char *text = malloc(160);
	if (!text)
		exit(1);
	va_list args;
	va_start(args, format);
	vsnprintf(text, 160, format, args);
	va_end(args);
	return text;
}

/* ---- the figures ---------------------------------------------------------------------------- */

/* Bulk, one connection: raw TCP, the socat chain and the forward in turn each round. */
static void bulk_figures(const struct settings *s, const struct endpoint *raw, const struct endpoint *socat,
			 const struct endpoint *forward, struct figure *f, int *n)
{
	int rounds = bench_rounds();
	double r_raw[BENCH_ROUNDS_MAX], r_socat[BENCH_ROUNDS_MAX], r_fwd[BENCH_ROUNDS_MAX];
	for (int r = 0; r < rounds; r++) {
		r_raw[r] = raw_bulk(raw, s->bulk);
		r_socat[r] = raw_bulk(socat, s->bulk);
		r_fwd[r] = raw_bulk(forward, s->bulk);
		printf("forward bulk round %d: forward %.1f MB/s, raw TCP %.1f, socat chain %.1f\n", r + 1,
		       r_fwd[r] / 1e6, r_raw[r] / 1e6, r_socat[r] / 1e6);
	}
	double fwd = median(r_fwd, rounds) / 1e6;
	f[(*n)++] = (struct figure){ "forward_bulk_vs_raw", "MB/s",
				     "raw TCP client to server, 1 MiB writes and reads", fwd,
				     median(r_raw, rounds) / 1e6, "goal >= 0.8x", false };
	f[(*n)++] = (struct figure){ "forward_bulk_vs_socat", "MB/s",
				     "two socat relays chained (fork, socat's default 8 KiB buffer)", fwd,
				     median(r_socat, rounds) / 1e6, "goal above 1x", false };
}

/* Bulk with TLS between the brokers against ssh -L (AES-128-GCM both). */
static void tls_figures(const char *broker, const char *dir, const struct settings *s,
			const struct endpoint *sink, const struct endpoint *echo, struct figure *f, int *n)
{
	const char *make_certs = getenv("WH_MAKE_CERTS") ? getenv("WH_MAKE_CERTS") : "scripts/make-certs.sh";
	char certs[300], command[1024];
	snprintf(certs, sizeof certs, "%s/certs", dir);
	snprintf(command, sizeof command, "%s %s a b", make_certs, certs);
	struct pair p = { -1, -1, { 0 }, { 0 } };
	struct pair_options o = { dir, "tls-", "127.0.0.1", "127.0.0.1", certs, 1024, NULL };
	pid_t ssh[2] = { -1, -1 };
	struct endpoint ssh_entry;
	char ssh_dir[300];
	snprintf(ssh_dir, sizeof ssh_dir, "%s/ssh", dir);
	if (!run_quiet(command) || !pair_start(broker, &o, sink, echo, &p, NULL) ||
	    !ssh_forward(ssh_dir, NULL, sink, &ssh_entry, ssh)) {
		fprintf(stderr, "bench: no TLS figure (certificates, brokers or sshd did not start)\n");
		stop_pids(ssh, 2);
		pair_stop(&p);
		return;
	}
	int rounds = bench_rounds();
	double r_ssh[BENCH_ROUNDS_MAX], r_tls[BENCH_ROUNDS_MAX];
	for (int r = 0; r < rounds; r++) {
		r_ssh[r] = raw_bulk(&ssh_entry, s->bulk);
		r_tls[r] = raw_bulk(&p.sink, s->bulk);
		printf("forward TLS bulk round %d: forward over TLS %.1f MB/s, ssh -L %.1f\n", r + 1,
		       r_tls[r] / 1e6, r_ssh[r] / 1e6);
	}
	f[(*n)++] = (struct figure){ "forward_tls_bulk_vs_ssh", "MB/s",
				     "ssh -N -L through a loopback sshd, aes128-gcm@openssh.com",
				     median(r_tls, rounds) / 1e6, median(r_ssh, rounds) / 1e6,
				     "brokers over TLS 1.3, AES-128-GCM; goal >= 2x", false };
	stop_pids(ssh, 2);
	pair_stop(&p);
}

/* 64-byte request/response on one connection: raw TCP, the socat chain, the forward. */
static void rtt_figures(const struct settings *s, const struct endpoint *raw, const struct endpoint *socat,
			const struct endpoint *forward, struct figure *f, int *n)
{
	int rounds = bench_rounds();
	size_t per_round = s->pings / (size_t)rounds, taken = per_round * (size_t)rounds;
	double *v_raw = calloc(taken, sizeof *v_raw), *v_socat = calloc(taken, sizeof *v_socat),
	       *v_fwd = calloc(taken, sizeof *v_fwd);
	if (!v_raw || !v_socat || !v_fwd)
		exit(1);
	for (int r = 0; r < rounds; r++) {
		raw_pingpong(raw, v_raw + (size_t)r * per_round, per_round);
		raw_pingpong(socat, v_socat + (size_t)r * per_round, per_round);
		raw_pingpong(forward, v_fwd + (size_t)r * per_round, per_round);
	}
	double raw50 = percentile(v_raw, taken, 0.5) * 1e6, raw99 = percentile(v_raw, taken, 0.99) * 1e6;
	f[(*n)++] = (struct figure){ "forward_rtt_64B_p50", "us", "two socat relays chained",
				     percentile(v_fwd, taken, 0.5) * 1e6, percentile(v_socat, taken, 0.5) * 1e6,
				     note_text("goal <= 1x; raw TCP %.1f us", raw50), false };
	f[(*n)++] = (struct figure){ "forward_rtt_64B_p99", "us", "two socat relays chained",
				     percentile(v_fwd, taken, 0.99) * 1e6, percentile(v_socat, taken, 0.99) * 1e6,
				     note_text("goal <= 1x; raw TCP %.1f us", raw99), false };
	free(v_raw);
	free(v_socat);
	free(v_fwd);
}

/* Connections per second, each one request and its answer, one at a time. */
static void rate_figures(const struct settings *s, const struct endpoint *raw, const struct endpoint *socat,
			 const struct endpoint *forward, struct figure *f, int *n)
{
	int rounds = bench_rounds();
	double r_raw[BENCH_ROUNDS_MAX], r_socat[BENCH_ROUNDS_MAX], r_fwd[BENCH_ROUNDS_MAX];
	for (int r = 0; r < rounds; r++) {
		r_raw[r] = connect_rate(raw, s->connects);
		r_socat[r] = connect_rate(socat, s->connects);
		r_fwd[r] = connect_rate(forward, s->connects);
		printf("forward connection rate round %d: forward %.0f/s, raw TCP %.0f/s, socat chain %.0f/s\n",
		       r + 1, r_fwd[r], r_raw[r], r_socat[r]);
	}
	f[(*n)++] = (struct figure){ "forward_connections_per_s", "conn/s",
				     "two socat relays chained (a process per connection each)",
				     median(r_fwd, rounds), median(r_socat, rounds),
				     note_text("connect, 64 B request, answer, close, one at a time; goal >= 2x; "
					       "raw TCP %.0f/s", median(r_raw, rounds)), false };
}

/* ---- 10,000 concurrent connections, each with bytes of its own, checked ---------------------- */

struct mconn {
	int fd;
	size_t sent, got;
	bool done, bad;
};

static unsigned char many_byte(size_t connection, int phase, size_t i)
{
	return (unsigned char)(connection * 131 + (connection >> 8) + (size_t)phase * 17 + i * 7 + (i >> 8));
}

/* Moves one connection's exchange along; true once it is over (checked, or failed). */
static bool many_io(int ep, struct mconn *m, size_t index, int phase)
{
	unsigned char buffer[MANY_BYTES];
	while (m->sent < MANY_BYTES) {
		size_t len = MANY_BYTES - m->sent;
		for (size_t j = 0; j < len; j++)
			buffer[j] = many_byte(index, phase, m->sent + j);
		ssize_t w = write(m->fd, buffer, len);
		if (w < 0 && (errno == EAGAIN || errno == ENOTCONN))
			return false;
		if (w <= 0) {
			fprintf(stderr, "bench: connection %zu: write: %s\n", index, strerror(errno));
			return m->bad = true;
		}
		m->sent += (size_t)w;
		if (m->sent == MANY_BYTES) {
			struct epoll_event ev = { .events = EPOLLIN, .data.u64 = index };
			epoll_ctl(ep, EPOLL_CTL_MOD, m->fd, &ev);
		}
	}
	for (;;) {
		ssize_t r = read(m->fd, buffer, sizeof buffer);
		if (r < 0 && errno == EAGAIN)
			return false;
		if (r <= 0 || m->got + (size_t)r > MANY_BYTES) {
			static int told;
			if (told++ < 3)
				fprintf(stderr, "bench: connection %zu: %s after %zu bytes back\n", index,
					r == 0 ? "EOF" : strerror(errno), m->got);
			return m->bad = true;
		}
		for (ssize_t j = 0; j < r; j++)
			m->bad |= buffer[j] != many_byte(index, phase, m->got + (size_t)j);
		m->got += (size_t)r;
		if (m->got == MANY_BYTES)
			return true;
	}
}

static void many_begin(int ep, struct mconn *m, size_t index, const struct endpoint *to)
{
	if (m->fd <= 0)
		m->fd = raw_connect(to, true);
	m->sent = m->got = 0;
	m->done = false;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u64 = index };
	epoll_ctl(ep, EPOLL_CTL_ADD, m->fd, &ev);
}

/* One exchange on every connection (phase 0 opens them, at most `in_flight` at once, and
 * leaves them open); returns how many failed or stalled (no progress for 20 s). */
static size_t many_phase(int ep, struct mconn *m, size_t n, const struct endpoint *to, int phase,
			 size_t in_flight)
{
	size_t started = 0, finished = 0, failed = 0;
	struct epoll_event events[512];
	while (finished < n) {
		for (; started < n && started - finished < in_flight; started++)
			many_begin(ep, &m[started], started, to);
		int ready = epoll_wait(ep, events, 512, 20000);
		if (ready <= 0) {
			fprintf(stderr, "bench: %zu of %zu connections stalled\n", n - finished, n);
			return failed + (n - finished);
		}
		for (int e = 0; e < ready; e++) {
			size_t i = (size_t)events[e].data.u64;
			if (m[i].done || !many_io(ep, &m[i], i, phase))
				continue;
			epoll_ctl(ep, EPOLL_CTL_DEL, m[i].fd, NULL); /* idle (or failed) from now on */
			m[i].done = true;
			finished++;
			failed += m[i].bad;
		}
	}
	return failed;
}

/* A pair of its own (fresh: what it grew by is the connections'), n connections through its
 * echo forward, all open at once: each checked once while they are being opened and once
 * more with all of them open; between the two, every one idle, the brokers' RSS. */
static void many_figures(const char *broker, const char *dir, const struct settings *s,
			 const struct endpoint *sink, const struct endpoint *echo, struct figure *f, int *n)
{
	struct pair p = { -1, -1, { 0 }, { 0 } };
	/* Each forwarded stream takes 512 KiB of the exposing broker's budget (its window and its
	 * send buffer, grown to full size when the relay first asks for room), and one peer may
	 * hold half of it: the default 8 GiB refuses (ERROR 429) the connections past about
	 * 8,200. The budget is what may be held, not what is: 2 MiB a connection, so that it is
	 * not what the figure meets. */
	char budget[32];
	snprintf(budget, sizeof budget, "%zuM", s->many * 2 > 8192 ? s->many * 2 : 8192);
	struct pair_options o = { dir, "many-", "127.0.0.1", "127.0.0.1", NULL, (unsigned)s->many + 64, budget };
	if (!pair_start(broker, &o, sink, echo, &p, NULL)) {
		pair_stop(&p);
		return;
	}
	struct mconn *m = calloc(s->many, sizeof *m);
	int ep = epoll_create1(0);
	long a_before = rss_kib(p.a), b_before = rss_kib(p.b);
	double start = now_s();
	size_t bad = many_phase(ep, m, s->many, &p.echo, 0, MANY_IN_FLIGHT);
	double opened = now_s() - start;
	usleep(200000); /* the last answers' frames settle */
	double a_idle = (double)(rss_kib(p.a) - a_before) / (double)s->many;
	double b_idle = (double)(rss_kib(p.b) - b_before) / (double)s->many;
	for (size_t i = 0; i < s->many && !bad; i++)
		m[i].done = false;
	if (!bad)
		bad = many_phase(ep, m, s->many, &p.echo, 1, s->many);
	printf("forward: %zu connections opened and checked in %.2f s, checked again all open; %zu failed\n",
	       s->many, opened, bad);
	for (size_t i = 0; i < s->many; i++)
		if (m[i].fd > 0)
			close(m[i].fd);
	close(ep);
	free(m);
	f[(*n)++] = (struct figure){ "forward_concurrent_verified", "connections", "connections opened",
				     (double)(s->many - bad), (double)s->many,
				     "each 1 KiB echoed and checked twice, the second time with all open", true };
	f[(*n)++] = (struct figure){ "forward_idle_rss_b", "KiB/conn", "the goal", b_idle, IDLE_GOAL_KIB,
				     "the forwarding broker (B): RSS growth / idle connections", true };
	f[(*n)++] = (struct figure){ "forward_idle_rss_a", "KiB/conn", "the goal", a_idle, IDLE_GOAL_KIB,
				     "the exposing broker (A): RSS growth / idle connections", true };
	pair_stop(&p);
}

/* ---- one connection over the 50 ms link ---------------------------------------------------- */

/* B and the clients in the near namespace; A, sshd and the target server in the far one. */
struct far {
	struct delay_link link;
	pid_t server, ssh[2];
	struct endpoint sink, echo, ssh_entry;
	struct pair plain, tls;
	bool tls_up;
};

/* Starts the plaintext pair, and the TLS pair and ssh -L when they can be (both or neither). */
static bool far_start(const char *broker, const char *dir, struct far *x)
{
	if (!delay_link_enter(&x->link, DELAY_LINK_FAR))
		return false;
	x->server = target_server(x->link.far_addr, &x->sink, &x->echo);
	struct pair_options o = { dir, "far-", x->link.far_addr, x->link.far_addr, NULL, 1024, NULL };
	if (!pair_start(broker, &o, &x->sink, &x->echo, &x->plain, &x->link))
		return false;
	const char *make_certs = getenv("WH_MAKE_CERTS") ? getenv("WH_MAKE_CERTS") : "scripts/make-certs.sh";
	char certs[300], command[1024], ssh_dir[300];
	snprintf(certs, sizeof certs, "%s/far-certs", dir);
	snprintf(command, sizeof command, "%s %s a b", make_certs, certs);
	snprintf(ssh_dir, sizeof ssh_dir, "%s/far-ssh", dir);
	struct pair_options t = { dir, "far-tls-", x->link.far_addr, x->link.far_addr, certs, 1024, NULL };
	x->tls_up = run_quiet(command) && pair_start(broker, &t, &x->sink, &x->echo, &x->tls, &x->link) &&
		    ssh_forward(ssh_dir, &x->link, &x->sink, &x->ssh_entry, x->ssh);
	if (!x->tls_up)
		fprintf(stderr, "bench: no TLS figure over the 50 ms link (certificates, brokers or sshd)\n");
	return delay_link_enter(&x->link, DELAY_LINK_NEAR);
}

/* Rounds from the near side: raw TCP and the forward, ssh -L and the forward over TLS. */
static void far_rounds(const struct settings *s, struct far *x, struct figure *f, int *n)
{
	size_t bytes = s->bulk / 4;
	int rounds = bench_rounds();
	double r_raw[BENCH_ROUNDS_MAX], r_fwd[BENCH_ROUNDS_MAX], r_ssh[BENCH_ROUNDS_MAX], r_tls[BENCH_ROUNDS_MAX];
	for (int r = 0; r < rounds; r++) {
		r_raw[r] = raw_bulk(&x->sink, bytes);
		r_fwd[r] = raw_bulk(&x->plain.sink, bytes);
		r_ssh[r] = x->tls_up ? raw_bulk(&x->ssh_entry, bytes) : 0;
		r_tls[r] = x->tls_up ? raw_bulk(&x->tls.sink, bytes) : 0;
		printf("forward far round %d: forward %.1f MB/s, raw TCP %.1f; forward over TLS %.1f, ssh -L %.1f\n",
		       r + 1, r_fwd[r] / 1e6, r_raw[r] / 1e6, r_tls[r] / 1e6, r_ssh[r] / 1e6);
	}
	f[(*n)++] = (struct figure){ "forward_far_bulk_50ms", "MB/s", "raw TCP over the same 50 ms link",
				     median(r_fwd, rounds) / 1e6, median(r_raw, rounds) / 1e6,
				     "plaintext brokers; goal >= 0.8x", false };
	if (x->tls_up)
		f[(*n)++] = (struct figure){ "forward_far_tls_vs_ssh_50ms", "MB/s",
					     "ssh -N -L over the same 50 ms link, aes128-gcm@openssh.com",
					     median(r_tls, rounds) / 1e6, median(r_ssh, rounds) / 1e6,
					     "brokers over TLS 1.3, AES-128-GCM", false };
}

/* One connection across a link with a 50 ms round trip. Root only. */
static void far_figures(const char *broker, const char *dir, const struct settings *s, struct figure *f, int *n)
{
	struct far x = { .server = -1, .ssh = { -1, -1 }, .plain = { -1, -1, { 0 }, { 0 } },
			 .tls = { -1, -1, { 0 }, { 0 } } };
	if (getuid() != 0 || !delay_link_start(&x.link, 0.025)) {
		fprintf(stderr, "bench: no 50 ms link (needs root and tun): no far figures\n");
		return;
	}
	if (far_start(broker, dir, &x))
		far_rounds(s, &x, f, n);
	delay_link_enter(&x.link, DELAY_LINK_HOME);
	stop_pids(x.ssh, 2);
	pair_stop(&x.tls);
	pair_stop(&x.plain);
	stop_pids(&x.server, 1);
	delay_link_stop(&x.link);
}

/* ---- the run -------------------------------------------------------------------------------- */

static struct settings settings_from(int argc, char **argv)
{
	struct settings s = { .bulk = (size_t)(argc > 3 ? atof(argv[3]) : 1024) << 20, .pings = 10000,
			      .connects = 2000, .many = argc > 4 ? (size_t)atol(argv[4]) : 10000 };
	if (getenv("BENCH_SHORT") && atoi(getenv("BENCH_SHORT")))
		s = (struct settings){ .bulk = 64u << 20, .pings = 1000, .connects = 300, .many = 1000 };
	return s;
}

/* The raw, socat and forward paths to one server: the figures that compare the three. */
static void local_figures(const struct settings *s, const struct endpoint *sink, const struct endpoint *echo,
			  const struct pair *p, struct figure *f, int *n)
{
	pid_t socat[4] = { -1, -1, -1, -1 };
	struct endpoint socat_sink, socat_echo;
	if (!socat_chain(sink, &socat_sink, socat) || !socat_chain(echo, &socat_echo, socat + 2)) {
		fprintf(stderr, "bench: socat did not start: no figures against it\n");
		stop_pids(socat, 4);
		return;
	}
	if (selected("forward_bulk"))
		bulk_figures(s, sink, &socat_sink, &p->sink, f, n);
	if (selected("forward_rtt"))
		rtt_figures(s, echo, &socat_echo, &p->echo, f, n);
	if (selected("forward_rate"))
		rate_figures(s, echo, &socat_echo, &p->echo, f, n);
	stop_pids(socat, 4);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	bench_main_pid = getpid();
	atexit(stop_spawned);
	if (argc < 3) {
		fprintf(stderr, "usage: bench_forward BROKER JSON [BULK_MIB] [CONNECTIONS]\n");
		return 2;
	}
	const char *broker = argv[1], *json_path = argv[2];
	struct settings s = settings_from(argc, argv);
	raise_fd_limit();
	char dir[] = "/tmp/wh-bench-forward.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	printf("forward: bulk %zu MiB, %zu round trips, %zu connections for the rate, %zu concurrent\n",
	       s.bulk >> 20, s.pings, s.connects, s.many);
	struct endpoint sink, echo;
	target_server("", &sink, &echo);
	struct figure f[16];
	int n = 0;
	struct pair p = { -1, -1, { 0 }, { 0 } };
	struct pair_options o = { dir, "", "127.0.0.1", "127.0.0.1", NULL, 1024, NULL };
	if (!pair_start(broker, &o, &sink, &echo, &p, NULL)) {
		fprintf(stderr, "bench: the brokers did not start\n");
		return 1;
	}
	if (selected("forward_bulk") || selected("forward_rtt") || selected("forward_rate"))
		local_figures(&s, &sink, &echo, &p, f, &n);
	pair_stop(&p);
	if (selected("forward_tls"))
		tls_figures(broker, dir, &s, &sink, &echo, f, &n);
	if (selected("forward_many"))
		many_figures(broker, dir, &s, &sink, &echo, f, &n);
	if (selected("forward_far"))
		far_figures(broker, dir, &s, f, &n);
	report("forward: client -> [forward] on B -> B -> A -> target", f, n, json_path);
	bool failed = false;
	for (int i = 0; i < n; i++)
		failed |= strcmp(f[i].name, "forward_concurrent_verified") == 0 && f[i].value != f[i].baseline_value;
	stop_spawned();
	remove_scratch_dir(dir);
	return failed ? 1 : 0;
}
