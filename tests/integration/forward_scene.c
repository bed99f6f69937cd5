/* A scene for forwarding tests: broker A exposes services whose streams go to TCP targets,
 * broker B (peer a) forwards local ports to them; the test's own small target behind A. Shared
 * by check_forward, check_forward_peers and check_proxy_protocol. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "forward_scene.h"

/* ---- the test's own target ----------------------------------------------------------------- */

/* One connection of the small target, in a process of its own (forward_scene.h says what each
 * first byte asks for). */
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

/* A connection of the small target: its port ('I') is the accepted socket's own. */
static void small_target_serve(int fd, void *dir)
{
	struct sockaddr_in own;
	socklen_t length = sizeof own;
	unsigned port = getsockname(fd, (struct sockaddr *)&own, &length) == 0 ? ntohs(own.sin_port) : 0;
	small_target_one(fd, dir, port);
}

pid_t small_target_start(const char *dir, unsigned *port)
{
	return harness_target_start(port, small_target_serve, (void *)dir, true);
}

/* ---- two brokers ------------------------------------------------------------------------------ */

/* A exposes `services` (config text); B has peer a and forwards `forwards` (config text);
 * tls: both with certificates made in dir. */
void brokers_start(struct process *a, struct process *b, const char *dir, const char *services,
		   const char *forwards, bool tls)
{
	char path[300], b_path[300], text[4096];
	struct harness_tls ta, tb;
	if (tls)
		ck_assert(harness_make_certs(dir, "a b"));
	const char *const *a_tls = tls ? harness_tls_args(&ta, dir, "a") : NULL;
	const char *const *b_tls = tls ? harness_tls_args(&tb, dir, "b") : NULL;
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, services);
	const char *a_args[9] = { "--config", path };
	for (int i = 0; a_tls && a_tls[i]; i++)
		a_args[2 + i] = a_tls[i];
	ck_assert(broker_spawn(a, a_args));
	snprintf(text, sizeof text, "[peer a]\naddress = 127.0.0.1:%u\n\n%s", a->port, forwards);
	snprintf(b_path, sizeof b_path, "%s/b.conf", dir);
	harness_write_file(b_path, text);
	const char *b_args[9] = { "--config", b_path };
	for (int i = 0; b_tls && b_tls[i]; i++)
		b_args[2 + i] = b_tls[i];
	ck_assert(broker_spawn(b, b_args));
}

/* The small target behind A as service small (target = 127.0.0.1:PORT), and B with the given
 * forwards (NULL: forward small to it). Returns the target's pid. */
pid_t small_scene_start(const char *dir, unsigned *target_port, struct process *a, struct process *b,
			const char *forwards)
{
	pid_t target = small_target_start(dir, target_port);
	char services[512];
	snprintf(services, sizeof services, "[service small]\ntarget = 127.0.0.1:%u\n", *target_port);
	brokers_start(a, b, dir, services,
		      forwards ? forwards : "[forward small]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n",
		      false);
	return target;
}

void brokers_stop(struct process *a, struct process *b)
{
	ck_assert_int_eq(process_stop(b, SIGTERM), 0);
	ck_assert_int_eq(process_stop(a, SIGTERM), 0);
}

/* A connection that cannot move (a side that never reads) costs the brokers no CPU while
 * it waits: at most a few clock ticks (1/100 s) in a second, each (a relay's probe once
 * spun a core). */
void assert_brokers_idle(struct process *a, struct process *b, const char *what)
{
	long a_start = process_cpu_ticks(a), b_start = process_cpu_ticks(b);
	usleep(1000000); /* a measurement window */
	long a_ticks = process_cpu_ticks(a) - a_start, b_ticks = process_cpu_ticks(b) - b_start;
	ck_assert_msg(a_ticks <= 10 && b_ticks <= 10, "%s: A used %ld ticks and B %ld in a second",
		      what, a_ticks, b_ticks);
}

/* Stops what small_scene_start started and removes the test's directory. */
void small_scene_stop(pid_t target, struct process *a, struct process *b, const char *dir)
{
	harness_stop_child(target);
	brokers_stop(a, b);
	harness_cleanup_dir(dir);
}

/* A client refused at once is reset: sends `request`, then reads. A quick refusal may reset
 * the connection before the request is written; then the write is what sees it. */
void expect_reset_after_sending(int fd, const char *request)
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

/* Sends "P" and text and reads it back: the connection is carried end to end. */
int ping_begin(unsigned port, const char *text)
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
void ping_end(int fd, const char *text)
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

