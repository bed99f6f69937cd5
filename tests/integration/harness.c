/* Integration-test helpers: real processes, temporary directories, bounded waits. */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static double monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void harness_tempdir(char *out, size_t len)
{
	snprintf(out, len, "/tmp/wh-test.XXXXXX");
	if (!mkdtemp(out)) {
		perror("mkdtemp");
		abort();
	}
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void harness_cleanup_dir(const char *dir)
{
	if (dir[0])
		nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static bool read_port(struct process *p, double timeout)
{
	double deadline = monotonic() + timeout;
	while (monotonic() < deadline) {
		FILE *f = fopen(p->port_file, "r");
		if (f) {
			bool ok = fscanf(f, "%u", &p->port) == 1;
			fclose(f);
			if (ok)
				return true;
		}
		int status;
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			p->pid = 0;
			return false;
		}
		usleep(5000); /* polling a condition with a deadline, not a bare sleep */
	}
	return false;
}

static bool spawn(struct process *p, const char *const *argv)
{
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		/* A failed assertion ends the test process at once, before any clean-up: its
		 * brokers and apps must not outlive it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int log = open(p->log_file, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (log >= 0) {
			dup2(log, 1);
			dup2(log, 2);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	p->pid = pid;
	return true;
}

bool broker_spawn(struct process *p, const char *const *extra_args)
{
	memset(p, 0, sizeof *p);
	harness_tempdir(p->dir, sizeof p->dir);
	snprintf(p->port_file, sizeof p->port_file, "%s/port", p->dir);
	snprintf(p->log_file, sizeof p->log_file, "%s/log", p->dir);
	snprintf(p->socket_path, sizeof p->socket_path, "%s/broker.sock", p->dir);
	const char *argv[64] = { TOP_BUILDDIR "/broker/wormhole-broker", "--listen", "127.0.0.1:0",
				 "--port-file", p->port_file, "--log-level", "info",
				 "--socket", p->socket_path };
	int n = 9;
	for (int i = 0; extra_args && extra_args[i] && n < 63; i++)
		argv[n++] = extra_args[i];
	argv[n] = NULL;
	return spawn(p, argv) && read_port(p, 10.0);
}

bool refpeer_spawn(struct process *p, const char *const *args, bool wait_port)
{
	memset(p, 0, sizeof *p);
	harness_tempdir(p->dir, sizeof p->dir);
	snprintf(p->port_file, sizeof p->port_file, "%s/port", p->dir);
	snprintf(p->log_file, sizeof p->log_file, "%s/log", p->dir);
	const char *argv[16] = { TOP_BUILDDIR "/tests/refpeer" };
	int n = 1;
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = strcmp(args[i], "@PORT_FILE@") == 0 ? p->port_file : args[i];
	argv[n] = NULL;
	return spawn(p, argv) && (!wait_port || read_port(p, 10.0));
}

bool app_spawn(struct process *p, const char *program, const char *const *args)
{
	memset(p, 0, sizeof *p);
	harness_tempdir(p->dir, sizeof p->dir);
	snprintf(p->log_file, sizeof p->log_file, "%s/log", p->dir);
	static char path[512];
	snprintf(path, sizeof path, "%s/%s", TOP_BUILDDIR, program);
	const char *argv[32] = { path };
	int n = 1;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return spawn(p, argv);
}

int process_fd_count(const struct process *p)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/fd", (int)p->pid);
	DIR *dir = opendir(path);
	if (!dir)
		return -1;
	int count = 0;
	struct dirent *entry;
	while ((entry = readdir(dir)))
		if (entry->d_name[0] != '.')
			count++;
	closedir(dir);
	return count;
}

long process_rss_kib(const struct process *p)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)p->pid);
	FILE *f = fopen(path, "r");
	long rss = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &rss) == 1)
			break;
	if (f)
		fclose(f);
	return rss;
}

long process_cpu_ticks(const struct process *p)
{
	char path[64], line[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)p->pid);
	FILE *f = fopen(path, "r");
	long utime = -1, stime = -1;
	if (f && fgets(line, sizeof line, f)) {
		const char *at = strrchr(line, ')'); /* the command may contain spaces */
		if (at)
			sscanf(at + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime);
	}
	if (f)
		fclose(f);
	return utime < 0 ? -1 : utime + stime;
}

int process_wait(struct process *p, double timeout)
{
	if (p->pid <= 0)
		return -1;
	double deadline = monotonic() + timeout;
	int status;
	while (monotonic() < deadline) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);
		if (r == p->pid) {
			p->pid = 0;
			int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			if (code == 0 && !p->keep_log)
				harness_cleanup_dir(p->dir); /* a failure keeps its log for the dump */
			return code;
		}
		usleep(5000);
	}
	return -1;
}

int process_stop(struct process *p, int signal)
{
	if (p->pid <= 0) {
		harness_cleanup_dir(p->dir); /* already reaped: only its directory is left */
		return -1;
	}
	kill(p->pid, SIGCONT); /* a stopped process cannot act on SIGTERM */
	kill(p->pid, signal);
	int status = process_wait(p, 10.0);
	if (status < 0 && p->pid > 0) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
	harness_cleanup_dir(p->dir);
	return status;
}

void process_dump_log(const struct process *p)
{
	FILE *f = fopen(p->log_file, "r");
	if (!f)
		return;
	char line[1024];
	fprintf(stderr, "---- %s\n", p->log_file);
	while (fgets(line, sizeof line, f))
		fputs(line, stderr);
	fclose(f);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

struct until {
	bool (*predicate)(void *);
	void *arg;
	bool timed_out;
};

static void on_check(struct ev_loop *loop, ev_check *w, int revents)
{
	struct until *u = w->data;
	(void)revents;
	if (u->predicate(u->arg))
		ev_break(loop, EVBREAK_ONE);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct until *u = w->data;
	(void)revents;
	u->timed_out = true;
	ev_break(loop, EVBREAK_ONE);
}

bool run_until(struct ev_loop *loop, bool (*predicate)(void *), void *arg, double timeout)
{
	if (predicate(arg))
		return true;
	struct until u = { predicate, arg, false };
	ev_check check;
	ev_timer deadline, poll_tick;
	ev_check_init(&check, on_check);
	check.data = &u;
	ev_timer_init(&deadline, on_deadline, timeout, 0);
	deadline.data = &u;
	/* a tick so that conditions changed by other processes are looked at regularly */
	ev_timer_init(&poll_tick, on_tick, 0.01, 0.01);
	ev_check_start(loop, &check);
	ev_timer_start(loop, &deadline);
	ev_timer_start(loop, &poll_tick);
	ev_run(loop, 0);
	ev_check_stop(loop, &check);
	ev_timer_stop(loop, &deadline);
	ev_timer_stop(loop, &poll_tick);
	return predicate(arg);
}

bool poll_until(bool (*predicate)(void *), void *arg, double timeout)
{
	double deadline = monotonic() + timeout;
	while (monotonic() < deadline) {
		if (predicate(arg))
			return true;
		usleep(10000); /* polling a condition with a deadline */
	}
	return predicate(arg);
}

static bool never(void *arg)
{
	(void)arg;
	return false;
}

void run_for(struct ev_loop *loop, double seconds)
{
	run_until(loop, never, NULL, seconds);
}

bool process_log_has(const struct process *p, const char *text)
{
	FILE *f = fopen(p->log_file, "r");
	char line[2048];
	bool found = false;
	while (f && !found && fgets(line, sizeof line, f))
		found = strstr(line, text) != NULL;
	if (f)
		fclose(f);
	return found;
}

struct log_wait {
	const struct process *p;
	const char *text;
};

static bool log_wait_met(void *arg)
{
	const struct log_wait *w = arg;
	return process_log_has(w->p, w->text);
}

bool process_log_wait(const struct process *p, const char *text, double timeout)
{
	struct log_wait w = { p, text };
	return poll_until(log_wait_met, &w, timeout);
}

int process_run(const char *program, const char *const *args, char *output, size_t len)
{
	struct process p;
	if (!app_spawn(&p, program, args))
		return -1;
	p.keep_log = true;
	int status = process_wait(&p, 10);
	FILE *f = fopen(p.log_file, "r");
	size_t n = f ? fread(output, 1, len - 1, f) : 0;
	output[n] = '\0';
	if (f)
		fclose(f);
	process_stop(&p, SIGKILL);
	return status;
}

bool harness_make_certs(const char *dir, const char *names)
{
	char command[1024];
	snprintf(command, sizeof command, "%s/scripts/make-certs.sh %s %s", TOP_SRCDIR, dir, names);
	return system(command) == 0;
}

const char *const *harness_tls_args(struct harness_tls *tls, const char *dir, const char *name)
{
	snprintf(tls->cert, sizeof tls->cert, "%s/%s.pem", dir, name);
	snprintf(tls->key, sizeof tls->key, "%s/%s.key", dir, name);
	snprintf(tls->ca, sizeof tls->ca, "%s/ca.pem", dir);
	const char *argv[] = { "--tls-cert", tls->cert, "--tls-key", tls->key, "--tls-ca", tls->ca, NULL };
	memcpy(tls->argv, argv, sizeof argv);
	return tls->argv;
}

double harness_now(void)
{
	return monotonic();
}

int process_log_count(const struct process *p, const char *text)
{
	FILE *f = fopen(p->log_file, "r");
	char line[2048];
	int n = 0;
	while (f && fgets(line, sizeof line, f))
		n += strstr(line, text) != NULL;
	if (f)
		fclose(f);
	return n;
}

bool harness_run_shell(const char *format, ...)
{
	char command[1024];
	va_list ap;
	va_start(ap, format);
	vsnprintf(command, sizeof command, format, ap);
	va_end(ap);
	int status = system(command);
	if (status != 0)
		fprintf(stderr, "harness: `%s` exited %d\n", command, status);
	return status == 0;
}

pid_t harness_spawn_program(const char *const *argv, const char *log, const char *dir)
{
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		abort();
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGTERM, SIG_DFL); /* not the test runner's handler, which ends its group */
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (dir && chdir(dir) != 0)
			_exit(126);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

int harness_wait_child(pid_t pid, double timeout)
{
	double deadline = monotonic() + timeout;
	for (;;) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		if (monotonic() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return -1;
		}
		poll(NULL, 0, 20); /* polling a child with a deadline */
	}
}

void harness_stop_child(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		harness_wait_child(pid, 10);
	}
}

int harness_connect_loopback_from(const char *source, unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in from = { .sin_family = AF_INET }, to = { .sin_family = AF_INET,
		.sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	/* a source that cannot be bound is the test's mistake, not the result it looks for */
	if (source && (inet_pton(AF_INET, source, &from.sin_addr) != 1 ||
		       bind(fd, (struct sockaddr *)&from, sizeof from) != 0)) {
		fprintf(stderr, "harness: cannot bind a client to %s: %s\n", source, strerror(errno));
		abort();
	}
	if (connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
		int error = errno;
		close(fd);
		errno = error;
		return -1;
	}
	struct timeval bound = { .tv_sec = 30 }; /* no read or write waits for ever */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound);
	return fd;
}

bool harness_connect_refused(unsigned port)
{
	int fd = harness_connect_loopback_from(NULL, port);
	if (fd >= 0) {
		close(fd);
		return false;
	}
	return errno == ECONNREFUSED;
}

void harness_reset_close(int fd)
{
	struct linger hard = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
	close(fd);
}

size_t harness_read_to_end(int fd, char *out, size_t cap, int *error)
{
	size_t have = 0;
	ssize_t n = 0;
	while (have + 1 < cap && (n = read(fd, out + have, cap - 1 - have)) > 0)
		have += (size_t)n;
	out[have] = '\0';
	if (error)
		*error = n < 0 ? errno : 0;
	return have;
}

bool harness_name_listed(const char *list, const char *name)
{
	size_t length = strlen(name);
	for (const char *p = strstr(list, name); p; p = strstr(p + 1, name))
		if ((p == list || p[-1] == ' ') && (p[length] == ' ' || p[length] == '\0'))
			return true;
	return false;
}

bool process_alive(const struct process *p)
{
	return p->pid > 0 && kill(p->pid, 0) == 0 && waitpid(p->pid, NULL, WNOHANG) == 0;
}
