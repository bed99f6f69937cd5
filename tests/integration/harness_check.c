/* Integration-test helpers that fail the running Check test when the scene cannot be set up
 * (declared in harness.h). Apart from harness.c because tests/soak links that without Check. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

unsigned harness_log_port(const struct process *p, const char *marker)
{
	char line[1024];
	if (!process_log_wait(p, marker, 10)) {
		process_dump_log(p);
		ck_abort_msg("never logged '%s'", marker);
	}
	FILE *f = fopen(p->log_file, "r");
	unsigned port = 0;
	while (f && !port && fgets(line, sizeof line, f)) {
		char *at = strstr(line, marker);
		if (at)
			port = (unsigned)strtoul(at + strlen(marker), NULL, 10);
	}
	if (f)
		fclose(f);
	ck_assert_uint_ne(port, 0);
	return port;
}

unsigned harness_forward_port(const struct process *p, const char *name)
{
	char marker[128];
	snprintf(marker, sizeof marker, "forward=%s listening on 127.0.0.1:", name);
	return harness_log_port(p, marker);
}

long harness_status_counter(const struct process *broker, const char *key)
{
	char socket[300], status[16384], marker[64];
	snprintf(socket, sizeof socket, "%s/control.sock", broker->dir);
	const char *ctl_args[] = { "-s", socket, "--json", "status", NULL };
	if (process_run("ctl/wormhole-ctl", ctl_args, status, sizeof status) != 0)
		return -1;
	snprintf(marker, sizeof marker, "\"%s\": ", key);
	const char *at = strstr(status, marker);
	return at ? strtol(at + strlen(marker), NULL, 10) : -1;
}

int harness_connect_loopback(unsigned port)
{
	int fd = harness_connect_loopback_from(NULL, port);
	if (fd < 0) {
		ck_assert_msg(errno == ECONNRESET, "connect to %u: %s", port, strerror(errno));
		int pair[2];
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
		close(pair[1]);
		return pair[0];
	}
	return fd;
}

int harness_listen_loopback(unsigned *port, int backlog)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)*port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t length = sizeof a;
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	ck_assert_int_eq(listen(fd, backlog), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &length), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

unsigned harness_closed_port(void)
{
	/* without SO_REUSEADDR: a port the kernel gives such a socket has no TIME_WAIT left on it,
	 * so a program that binds it next (curl --local-port) can have it */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t length = sizeof a;
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &length), 0);
	close(fd);
	return ntohs(a.sin_port);
}

void harness_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

void harness_echo_check(int fd, size_t size, unsigned seed)
{
	unsigned char *out = malloc(size), *in = malloc(size + 1);
	ck_assert(out && in);
	for (size_t i = 0; i < size; i++)
		out[i] = harness_pattern(seed, i);
	for (size_t at = 0; at < size;) {
		ssize_t w = send(fd, out + at, size - at, MSG_NOSIGNAL);
		ck_assert_msg(w > 0, "send: %s", strerror(errno));
		at += (size_t)w;
	}
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	size_t have = 0;
	ssize_t n;
	/* one byte of room beyond size: an echo that sends more is seen */
	while ((n = read(fd, in + have, size + 1 - have)) > 0)
		have += (size_t)n;
	ck_assert_msg(n == 0, "read: %s", strerror(errno));
	ck_assert_uint_eq(have, size);
	ck_assert(memcmp(in, out, size) == 0);
	free(out);
	free(in);
}

/* The target's own process: connections one after the other, or each in a child. */
static void target_serve(int listen_fd, void (*serve)(int fd, void *arg), void *arg, bool fork_each)
{
	if (fork_each)
		signal(SIGCHLD, SIG_IGN); /* its connections' processes reap themselves */
	for (;;) {
		int fd = accept(listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		if (!fork_each) {
			serve(fd, arg);
			close(fd);
			continue;
		}
		if (fork() == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(listen_fd);
			serve(fd, arg);
			close(fd);
			_exit(0);
		}
		close(fd);
	}
}

pid_t harness_target_start(unsigned *port, void (*serve)(int fd, void *arg), void *arg, bool fork_each)
{
	int fd = harness_listen_loopback(port, 64);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGTERM, SIG_DFL); /* not the test runner's handler, which ends its group */
		target_serve(fd, serve, arg, fork_each);
		_exit(0);
	}
	close(fd);
	return pid;
}
