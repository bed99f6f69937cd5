/* What the benchmarks share: clocks, percentiles, raw-socket baselines, helper processes,
 * the report. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double machine_busy_seconds(void)
{
	FILE *f = fopen("/proc/stat", "r");
	unsigned long long user, nice, system, idle, iowait, irq, softirq, steal;
	int got = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system,
			     &idle, &iowait, &irq, &softirq, &steal)
		    : 0;
	if (f)
		fclose(f);
	if (got != 8)
		return -1;
	return (double)(user + nice + system + irq + softirq + steal) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int bench_rounds(void)
{
	int rounds = getenv("BENCH_ROUNDS") ? atoi(getenv("BENCH_ROUNDS")) : 3;
	return rounds < 1 ? 1 : rounds > BENCH_ROUNDS_MAX ? BENCH_ROUNDS_MAX : rounds;
}

bool bench_selected(const char *group)
{
	const char *only = getenv("BENCH_ONLY");
	return !only || strcmp(only, group) == 0;
}

double percentile(double *values, size_t n, double p)
{
	qsort(values, n, sizeof *values, cmp_double);
	return values[(size_t)(p * (double)(n - 1) + 0.5)];
}

void raise_fd_limit(void)
{
	struct rlimit limit = { 1u << 20, 1u << 20 };
	if (setrlimit(RLIMIT_NOFILE, &limit) < 0 && getrlimit(RLIMIT_NOFILE, &limit) == 0) {
		limit.rlim_cur = limit.rlim_max;
		setrlimit(RLIMIT_NOFILE, &limit);
	}
}

static in_addr_t endpoint_address(const struct endpoint *ep)
{
	struct in_addr addr;
	if (ep->host[0] && inet_pton(AF_INET, ep->host, &addr) == 1)
		return addr.s_addr;
	return htonl(INADDR_LOOPBACK);
}

int listen_endpoint(struct endpoint *ep)
{
	int fd;
	if (ep->path[0]) {
		struct sockaddr_un addr = { .sun_family = AF_UNIX };
		snprintf(addr.sun_path, sizeof addr.sun_path, "%s", ep->path);
		unlink(ep->path);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, 128))
			goto fail;
		return fd;
	}
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = endpoint_address(ep) };
	socklen_t len = sizeof addr;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, 4096) ||
	    getsockname(fd, (struct sockaddr *)&addr, &len))
		goto fail;
	ep->port = ntohs(addr.sin_port);
	return fd;
fail:
	perror("bench: listen");
	exit(1);
}

int raw_connect(const struct endpoint *ep, bool nonblocking)
{
	int type = SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0);
	int fd;
	if (ep->path[0]) {
		struct sockaddr_un addr = { .sun_family = AF_UNIX };
		snprintf(addr.sun_path, sizeof addr.sun_path, "%s", ep->path);
		fd = socket(AF_UNIX, type, 0);
		if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
			perror("bench: connect");
			exit(1);
		}
		return fd;
	}
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)ep->port),
				    .sin_addr.s_addr = endpoint_address(ep) };
	fd = socket(AF_INET, type, 0);
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
		perror("bench: connect");
		exit(1);
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/* The open-rate baseline's server: one process, one accept loop, no fork. */
static void accept_loop(int listener)
{
	for (;;) {
		int fd = accept(listener, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			_exit(0);
		}
		char byte;
		(void)!read(fd, &byte, 1);
		close(fd);
	}
}

pid_t raw_server(char mode, struct endpoint *ep)
{
	int listener = listen_endpoint(ep);
	pid_t pid = fork();
	if (pid != 0) {
		close(listener);
		return pid;
	}
	if (mode == 'a')
		accept_loop(listener);
	signal(SIGCHLD, SIG_IGN); /* per-connection children reap themselves */
	for (;;) {
		int fd = accept(listener, NULL, NULL);
		if (fd < 0)
			_exit(0);
		if (fork() == 0) {
			char *buffer = malloc(BENCH_BULK_IO);
			int one = 1;
			if (!ep->path[0])
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			ssize_t n;
			while (buffer && (n = read(fd, buffer, BENCH_BULK_IO)) > 0)
				if (mode == 'e' && write(fd, buffer, (size_t)n) != n)
					break;
			_exit(0);
		}
		close(fd);
	}
}

double raw_bulk_sized(const struct endpoint *ep, size_t total, size_t io_size)
{
	int fd = raw_connect(ep, false);
	char *buffer = malloc(io_size);
	if (!buffer)
		exit(1);
	memset(buffer, 'b', io_size);
	double start = now_s();
	for (size_t sent = 0; sent < total;) {
		size_t want = total - sent < io_size ? total - sent : io_size;
		ssize_t n = write(fd, buffer, want);
		if (n <= 0)
			exit(1);
		sent += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	while (read(fd, buffer, io_size) > 0)
		;
	double seconds = now_s() - start;
	close(fd);
	free(buffer);
	return (double)total / seconds;
}

double raw_bulk(const struct endpoint *ep, size_t total)
{
	return raw_bulk_sized(ep, total, BENCH_BULK_IO);
}

void raw_pingpong(const struct endpoint *ep, double *samples, size_t n)
{
	int fd = raw_connect(ep, false);
	char message[64] = "ping";
	for (size_t i = 0; i < n; i++) {
		double start = now_s();
		if (write(fd, message, sizeof message) != sizeof message)
			exit(1);
		for (size_t got = 0; got < sizeof message;) {
			ssize_t r = read(fd, message + got, sizeof message - got);
			if (r <= 0)
				exit(1);
			got += (size_t)r;
		}
		samples[i] = now_s() - start;
	}
	close(fd);
}

pid_t raw_bulk_background(const struct endpoint *ep)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = raw_connect(ep, false);
		static char buffer[BENCH_CHUNK];
		while (write(fd, buffer, sizeof buffer) > 0)
			;
		_exit(0);
	}
	return pid;
}

double raw_connect_rate(const struct endpoint *ep, int n)
{
	double start = now_s();
	for (int i = 0; i < n; i++) {
		int fd = raw_connect(ep, false);
		char byte = 'x';
		if (write(fd, &byte, 1) != 1) /* the server process has it: the connection is real */
			exit(1);
		close(fd);
	}
	return n / (now_s() - start);
}

bool wait_for_path(const char *path, double seconds)
{
	double deadline = now_s() + seconds;
	while (now_s() < deadline) {
		if (access(path, F_OK) == 0)
			return true;
		usleep(5000);
	}
	return false;
}

pid_t spawn_broker(const char *broker_path, const char *const *args, const char *port_file,
		   unsigned *port)
{
	const char *argv[32] = { broker_path };
	int n = 1;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		execv(broker_path, (char *const *)argv);
		_exit(127);
	}
	*port = wait_for_port(port_file, 10);
	if (!*port) {
		fprintf(stderr, "bench: the broker did not start\n");
		return -1;
	}
	return pid;
}

unsigned wait_for_port(const char *path, double seconds)
{
	unsigned port = 0;
	if (!wait_for_path(path, seconds))
		return 0;
	FILE *f = fopen(path, "r"); /* written to a temporary name, then renamed: whole */
	if (f && fscanf(f, "%u", &port) != 1)
		port = 0;
	if (f)
		fclose(f);
	return port;
}

long rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long rss = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &rss) == 1)
			break;
	if (f)
		fclose(f);
	return rss;
}

int fd_count(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
	DIR *dir = opendir(path);
	if (!dir)
		return -1;
	int count = 0;
	for (struct dirent *e; (e = readdir(dir)) != NULL;)
		count += e->d_name[0] != '.';
	closedir(dir);
	return count - (pid == getpid()); /* our own look at the directory holds one */
}

void report(const char *title, const struct figure *f, int n, const char *json_path)
{
	printf("\n%s\n%-30s %12s %12s %8s  %s\n", title, "figure", "wormhole", "baseline", "ratio",
	       "unit: baseline (measured in this run unless marked constant)");
	for (int i = 0; i < n; i++) {
		printf("%-30s %12.1f %12.1f %8.2f  %s: %s%s\n", f[i].name, f[i].value, f[i].baseline_value,
		       f[i].value / f[i].baseline_value, f[i].unit, f[i].constant_baseline ? "constant: " : "",
		       f[i].baseline);
		if (f[i].note)
			printf("%-30s   (%s)\n", "", f[i].note);
	}
	FILE *out = fopen(json_path, "w");
	if (!out) {
		perror(json_path);
		return;
	}
	fprintf(out, "[\n");
	for (int i = 0; i < n; i++)
		fprintf(out,
			"  {\"name\": \"%s\", \"value\": %.3f, \"unit\": \"%s\", \"baseline\": \"%s\", "
			"\"baseline_value\": %.3f, \"baseline_kind\": \"%s\", \"ratio\": %.4f, \"note\": \"%s\"}%s\n",
			f[i].name, f[i].value, f[i].unit, f[i].baseline, f[i].baseline_value,
			f[i].constant_baseline ? "constant" : "measured", f[i].value / f[i].baseline_value,
			f[i].note ? f[i].note : "", i + 1 < n ? "," : "");
	fprintf(out, "]\n");
	fclose(out);
	printf("JSON written to %s\n", json_path);
}

void remove_scratch_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char path[512];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR)
			remove_scratch_dir(path); /* the certificates the TLS figures made */
		else
			unlink(path);
	}
	closedir(d);
	rmdir(dir);
}
