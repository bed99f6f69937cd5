/* wormhole-ctl against live brokers with live streams: every view in both forms, checked
 * against what the test did (streams it opened, bytes it sent); every action with its effect
 * observed; the metrics text checked line by line against the exposition format; and the exit
 * codes and messages when the broker cannot be reached or says no. */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "control_msg.h"
#include "harness.h"
#include "json_lite.h"

#define CTL TOP_BUILDDIR "/ctl/wormhole-ctl"
#define OUTPUT_MAX (1u << 20)

struct ctl_run {
	int status; /* exit status, or -1 */
	char out[OUTPUT_MAX];
	char err[16384];
};

static void control_path(const struct process *broker, char *out, size_t length)
{
	snprintf(out, length, "%s/control.sock", broker->dir);
}

/* Reads a pipe to its end into buf (bounded by a deadline). */
static void drain_pipes(int out_fd, char *out, size_t out_cap, int err_fd, char *err, size_t err_cap)
{
	size_t n_out = 0, n_err = 0;
	bool out_open = true, err_open = true;
	int64_t deadline = wh_now_ns() + 30ll * 1000000000;
	while ((out_open || err_open) && wh_now_ns() < deadline) {
		struct pollfd p[2] = { { out_open ? out_fd : -1, POLLIN, 0 }, { err_open ? err_fd : -1, POLLIN, 0 } };
		if (poll(p, 2, 100) <= 0)
			continue;
		if (p[0].revents) {
			ssize_t r = read(out_fd, out + n_out, out_cap - 1 - n_out);
			if (r <= 0)
				out_open = false;
			else
				n_out += (size_t)r;
		}
		if (p[1].revents) {
			ssize_t r = read(err_fd, err + n_err, err_cap - 1 - n_err);
			if (r <= 0)
				err_open = false;
			else
				n_err += (size_t)r;
		}
	}
	out[n_out] = '\0';
	err[n_err] = '\0';
}

/* Runs wormhole-ctl with args (NULL-terminated) as uid (-1: ours), capturing stdout and
 * stderr apart. */
static void ctl_run_as(struct ctl_run *r, long uid, const char *const *args)
{
	int out[2], err[2];
	ck_assert_int_eq(pipe(out), 0);
	ck_assert_int_eq(pipe(err), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(out[1], STDOUT_FILENO);
		dup2(err[1], STDERR_FILENO);
		close(out[0]);
		close(err[0]);
		/* opened before the privileges go: the build tree may sit in a directory only root
		 * may enter (CI's sanitizer trees are mktemp -d, mode 0700) */
		int program = open(CTL, O_RDONLY | O_CLOEXEC);
		if (uid >= 0 && (setgroups(0, NULL) < 0 || setgid((gid_t)uid) < 0 || setuid((uid_t)uid) < 0))
			_exit(126);
		const char *argv[40] = { CTL };
		int n = 1;
		for (int i = 0; args[i] && n < 39; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		setenv("COLUMNS", "80", 1);
		extern char **environ;
		fexecve(program, (char *const *)argv, environ);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	drain_pipes(out[0], r->out, sizeof r->out, err[0], r->err, sizeof r->err);
	close(out[0]);
	close(err[0]);
	int status;
	r->status = waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* wormhole-ctl -s BROKER'S-CONTROL-SOCKET ARGS... */
static void ctl_run(struct ctl_run *r, const struct process *broker, ...)
{
	char path[400];
	control_path(broker, path, sizeof path);
	const char *args[32] = { "-s", path };
	int n = 2;
	va_list ap;
	va_start(ap, broker);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 31;)
		args[n++] = a;
	va_end(ap);
	args[n] = NULL;
	ctl_run_as(r, -1, args);
}

/* `wormhole-ctl --json VIEW [ARGS]`: the view's rows, parsed (the document in *doc). */
static const struct json *ctl_json(struct json **doc, const struct process *broker, const char *view,
				   const char *arg1, const char *arg2)
{
	static struct ctl_run r;
	ctl_run(&r, broker, "--json", view, arg1, arg2, (const char *)NULL);
	if (r.status != 0)
		fprintf(stderr, "wormhole-ctl --json %s: exit %d: %s\n", view, r.status, r.err);
	ck_assert_int_eq(r.status, 0);
	size_t at = 0;
	*doc = json_parse(r.out, &at);
	if (!*doc)
		fprintf(stderr, "not JSON at byte %zu: %s\n", at, r.out);
	ck_assert_ptr_nonnull(*doc);
	const struct json *rows = json_get(*doc, view);
	ck_assert_ptr_nonnull(rows);
	ck_assert_int_eq(rows->kind, JSON_ARRAY);
	return rows;
}

/* The row whose column `key` has number value, or NULL. */
static const struct json *row_with(const struct json *rows, const char *key, double value)
{
	for (size_t i = 0; i < rows->count; i++)
		if (json_number(rows->items[i], key) == value)
			return rows->items[i];
	return NULL;
}

/* Every line of a text table fits 80 columns and the first names the columns wanted. */
static void check_text(const struct ctl_run *r, const char *const *headers)
{
	ck_assert_int_eq(r->status, 0);
	const char *line = r->out;
	bool first = true;
	while (*line) {
		const char *end = strchr(line, '\n');
		size_t length = end ? (size_t)(end - line) : strlen(line);
		if (length > 80)
			fprintf(stderr, "line of %zu columns: %.*s\n", length, (int)length, line);
		ck_assert_uint_le(length, 80);
		if (first)
			for (int i = 0; headers[i]; i++) {
				if (!memmem(line, length, headers[i], strlen(headers[i])))
					fprintf(stderr, "no '%s' in the header: %.*s\n", headers[i], (int)length, line);
				ck_assert_ptr_nonnull(memmem(line, length, headers[i], strlen(headers[i])));
			}
		first = false;
		line = end ? end + 1 : line + length;
	}
}

/* Writes exactly n pattern bytes on a blocking stream. */
static void write_all(wh_stream *s, size_t n, unsigned seed)
{
	unsigned char buf[4096];
	for (size_t sent = 0; sent < n;) {
		size_t chunk = n - sent < sizeof buf ? n - sent : sizeof buf;
		for (size_t i = 0; i < chunk; i++)
			buf[i] = harness_pattern(seed, sent + i);
		long w = wh_write(s, buf, chunk);
		ck_assert_int_gt(w, 0);
		sent += (size_t)w;
	}
}

/* Reads exactly n bytes and checks them against the pattern (5 s bound). */
static void read_check(wh_stream *s, size_t n, unsigned seed)
{
	unsigned char buf[4096];
	wh_set_read_deadline(s, wh_now_ns() + 5000000000ll);
	for (size_t got = 0; got < n;) {
		long r = wh_read(s, buf, n - got < sizeof buf ? n - got : sizeof buf);
		if (r <= 0)
			fprintf(stderr, "read: %ld (%s) after %zu of %zu bytes\n", r, r < 0 ? wh_strerror((int)r) : "EOF", got, n);
		ck_assert_int_gt(r, 0);
		for (long i = 0; i < r; i++)
			ck_assert_int_eq(buf[i], harness_pattern(seed, got + (size_t)i));
		got += (size_t)r;
	}
}

/* B's apps open three streams to service "svc" on A, where an app listens; each carries a
 * different number of bytes, all received and checked by the listener. */
#define STREAMS 3
static const size_t sizes[STREAMS] = { 1000, 20000, 300000 };

struct scene {
	struct broker_pair pair;
	wh_client *listener, *opener;
	wh_stream *opened[STREAMS], *accepted[STREAMS];
};

static void scene_start(struct scene *s, const char *const *a_extra, const char *const *b_extra)
{
	memset(s, 0, sizeof *s);
	broker_pair_start(&s->pair, a_extra, b_extra);
	s->listener = app_attach(&s->pair.a);
	s->opener = app_attach(&s->pair.b);
	ck_assert_int_eq(wh_listen(s->listener, "svc"), WH_OK);
	for (int i = 0; i < STREAMS; i++) {
		ck_assert_int_eq(wh_open(s->opener, "a", "svc", 10000, &s->opened[i]), WH_OK);
		write_all(s->opened[i], sizes[i], (unsigned)i + 1);
		ck_assert_int_eq(wh_accept(s->listener, 10000, &s->accepted[i]), WH_OK);
	}
	/* accepted in the order opened: one app, one connection */
	for (int i = 0; i < STREAMS; i++)
		read_check(s->accepted[i], sizes[i], (unsigned)i + 1);
}

static void scene_stop(struct scene *s)
{
	for (int i = 0; i < STREAMS; i++) {
		if (s->opened[i])
			wh_close(s->opened[i]);
		if (s->accepted[i])
			wh_close(s->accepted[i]);
	}
	wh_client_detach(s->opener);
	wh_client_detach(s->listener);
	broker_pair_stop(&s->pair);
}

START_TEST(views_json_match_what_the_test_did)
{
	struct scene s;
	scene_start(&s, NULL, NULL);
	struct json *doc;

	/* streams on B: ours, with the bytes we sent, owned by this process */
	const struct json *rows = ctl_json(&doc, &s.pair.b, "streams", NULL, NULL);
	ck_assert_uint_eq(rows->count, STREAMS);
	double conn = NAN;
	for (int i = 0; i < STREAMS; i++) {
		const struct json *row = row_with(rows, "bytes_out", (double)sizes[i]);
		ck_assert_ptr_nonnull(row);
		ck_assert_str_eq(json_string(row, "peer"), "a");
		ck_assert_str_eq(json_string(row, "service"), "svc");
		ck_assert_str_eq(json_string(row, "state"), "open");
		ck_assert_str_eq(json_string(row, "app"), wh_client_id(s.opener));
		ck_assert_int_eq((long)json_number(row, "pid"), (long)getpid());
		ck_assert_int_eq((long)json_number(row, "uid"), (long)getuid());
		ck_assert_int_eq((long)json_number(row, "bytes_in"), 0);
		ck_assert(json_number(row, "age") >= 0);
		if (i == 0)
			conn = json_number(row, "conn");
		ck_assert(json_number(row, "conn") == conn); /* one connection carries them all */
	}
	json_free(doc);

	/* the filters: --app by session id and by pid, --peer */
	rows = ctl_json(&doc, &s.pair.b, "streams", "--app", wh_client_id(s.opener));
	ck_assert_uint_eq(rows->count, STREAMS);
	json_free(doc);
	char pid[32];
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	rows = ctl_json(&doc, &s.pair.b, "streams", "--app", pid);
	ck_assert_uint_eq(rows->count, STREAMS);
	json_free(doc);
	rows = ctl_json(&doc, &s.pair.b, "streams", "--peer", "nobody");
	ck_assert_uint_eq(rows->count, 0);
	json_free(doc);

	/* streams on A: the same bytes, received, read by the listener (ring empty) */
	rows = ctl_json(&doc, &s.pair.a, "streams", NULL, NULL);
	ck_assert_uint_eq(rows->count, STREAMS);
	for (int i = 0; i < STREAMS; i++) {
		const struct json *row = row_with(rows, "bytes_in", (double)sizes[i]);
		ck_assert_ptr_nonnull(row);
		ck_assert_str_eq(json_string(row, "app"), wh_client_id(s.listener));
		ck_assert_int_eq((long)json_number(row, "ring_fill"), 0);
	}
	json_free(doc);

	/* conns on B: one dialled connection to a, carrying the streams' bytes */
	rows = ctl_json(&doc, &s.pair.b, "conns", NULL, NULL);
	const struct json *c = row_with(rows, "conn", conn);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(json_string(c, "peer"), "a");
	ck_assert_str_eq(json_string(c, "role"), "dialled");
	ck_assert_str_eq(json_string(c, "state"), "open");
	ck_assert_int_eq((long)json_number(c, "streams"), STREAMS);
	ck_assert_int_eq((long)json_number(c, "data_bytes_out"), (long)(sizes[0] + sizes[1] + sizes[2]));
	ck_assert_int_eq((long)json_number(c, "frames_out_handshake"), STREAMS);
	ck_assert_int_eq((long)json_number(c, "malformed_frames"), 0);
	char remote[64];
	snprintf(remote, sizeof remote, "127.0.0.1:%u", s.pair.a.port);
	ck_assert_str_eq(json_string(c, "remote"), remote);
	json_free(doc);
	rows = ctl_json(&doc, &s.pair.a, "conns", NULL, NULL);
	ck_assert_uint_ge(rows->count, 1);
	ck_assert_str_eq(json_string(rows->items[0], "role"), "accepted");
	json_free(doc);

	/* apps on B: this process, three streams opened, the bytes sent */
	rows = ctl_json(&doc, &s.pair.b, "apps", NULL, NULL);
	ck_assert_uint_eq(rows->count, 1);
	ck_assert_str_eq(json_string(rows->items[0], "app"), wh_client_id(s.opener));
	ck_assert_int_eq((long)json_number(rows->items[0], "pid"), (long)getpid());
	ck_assert_int_eq((long)json_number(rows->items[0], "streams"), STREAMS);
	ck_assert_int_eq((long)json_number(rows->items[0], "streams_opened"), STREAMS);
	ck_assert_int_eq((long)json_number(rows->items[0], "bytes_sent"), (long)(sizes[0] + sizes[1] + sizes[2]));
	json_free(doc);

	/* services on A: svc is ours; echo and discard are built in */
	rows = ctl_json(&doc, &s.pair.a, "services", NULL, NULL);
	bool svc = false, echo = false;
	for (size_t i = 0; i < rows->count; i++) {
		const char *name = json_string(rows->items[i], "service");
		if (strcmp(name, "svc") == 0) {
			svc = true;
			ck_assert_str_eq(json_string(rows->items[i], "kind"), "app");
			ck_assert_str_eq(json_string(rows->items[i], "app"), wh_client_id(s.listener));
		}
		if (strcmp(name, "echo") == 0)
			echo = strcmp(json_string(rows->items[i], "kind"), "built-in") == 0;
	}
	ck_assert(svc && echo);
	json_free(doc);

	/* peers on B: a is up with its connection, and counted the three streams */
	rows = ctl_json(&doc, &s.pair.b, "peers", NULL, NULL);
	ck_assert_uint_eq(rows->count, 1);
	ck_assert_str_eq(json_string(rows->items[0], "peer"), "a");
	ck_assert_str_eq(json_string(rows->items[0], "state"), "up");
	ck_assert_int_ge((long)json_number(rows->items[0], "open"), 1);
	ck_assert_int_eq((long)json_number(rows->items[0], "in_use"), STREAMS);
	ck_assert_int_eq((long)json_number(rows->items[0], "total_streams"), STREAMS);
	ck_assert_int_eq((long)json_number(rows->items[0], "failed_connections"), 0);
	json_free(doc);

	/* status on B */
	rows = ctl_json(&doc, &s.pair.b, "status", NULL, NULL);
	ck_assert_uint_eq(rows->count, 1);
	const struct json *st = rows->items[0];
	ck_assert_str_eq(json_string(st, "version"), PACKAGE_VERSION);
	ck_assert_uint_eq(strlen(json_string(st, "instance")), 16);
	ck_assert_int_eq((long)json_number(st, "pid"), (long)s.pair.b.pid);
	ck_assert_int_eq((long)json_number(st, "peers"), 1);
	ck_assert_int_eq((long)json_number(st, "apps_clients"), 1);
	ck_assert_int_eq((long)json_number(st, "apps_streams"), STREAMS);
	ck_assert_str_eq(json_string(st, "app_socket"), s.pair.b.socket_path);
	ck_assert_str_eq(json_string(st, "state"), "running");
	ck_assert(json_number(st, "budget_used") > 0);
	json_free(doc);

	/* config on B: the peer came from the command line, the window from the defaults */
	rows = ctl_json(&doc, &s.pair.b, "config", NULL, NULL);
	bool socket_seen = false, window_seen = false;
	for (size_t i = 0; i < rows->count; i++) {
		const struct json *row = rows->items[i];
		if (strcmp(json_string(row, "option"), "socket") == 0 && strcmp(json_string(row, "section"), "broker") == 0) {
			socket_seen = true;
			ck_assert_str_eq(json_string(row, "value"), s.pair.b.socket_path);
			ck_assert_str_eq(json_string(row, "source"), "command line");
		}
		if (strcmp(json_string(row, "option"), "window") == 0 && strcmp(json_string(row, "section"), "peer a") == 0) {
			window_seen = true;
			ck_assert_str_eq(json_string(row, "source"), "built-in"); /* the broker's, built in */
		}
		if (strcmp(json_string(row, "option"), "address") == 0 && strcmp(json_string(row, "section"), "peer a") == 0)
			ck_assert_str_eq(json_string(row, "source"), "command line"); /* --peer a=HOST:PORT */
	}
	ck_assert(socket_seen && window_seen);
	json_free(doc);
	scene_stop(&s);
}
END_TEST

START_TEST(views_text_fit_80_columns)
{
	struct scene s;
	scene_start(&s, NULL, NULL);
	static struct ctl_run r;
	static const char *const streams[] = { "conn", "stream", "peer", "service", "bytes_out", NULL };
	ctl_run(&r, &s.pair.b, "streams", (const char *)NULL);
	check_text(&r, streams);
	ck_assert_ptr_nonnull(strstr(r.out, "293 KiB")); /* the 300000-byte stream, in human units */
	static const char *const conns[] = { "conn", "peer", "role", "rtt", "bytes_in", NULL };
	ctl_run(&r, &s.pair.b, "conns", (const char *)NULL);
	check_text(&r, conns);
	static const char *const apps[] = { "pid", "app", "streams", NULL };
	ctl_run(&r, &s.pair.b, "apps", (const char *)NULL);
	check_text(&r, apps);
	static const char *const peers[] = { "peer", "address", "state", NULL };
	ctl_run(&r, &s.pair.b, "peers", (const char *)NULL);
	check_text(&r, peers);
	static const char *const services[] = { "service", "kind", NULL };
	ctl_run(&r, &s.pair.a, "services", (const char *)NULL);
	check_text(&r, services);
	static const char *const config[] = { "option", "section", "value", "source", NULL };
	ctl_run(&r, &s.pair.b, "config", (const char *)NULL);
	check_text(&r, config);
	static const char *const status[] = { "version", NULL };
	ctl_run(&r, &s.pair.b, "status", (const char *)NULL);
	check_text(&r, status);
	ck_assert_ptr_nonnull(strstr(r.out, "uptime"));

	/* watch: two refreshes, the second with byte rates */
	ctl_run(&r, &s.pair.b, "watch", "-n", "0.2", "-c", "2", "conns", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	char *second = strstr(r.out, "wormhole-ctl conns");
	ck_assert_ptr_nonnull(second);
	second = strstr(second + 1, "wormhole-ctl conns");
	ck_assert_ptr_nonnull(second);
	ck_assert_ptr_nonnull(strstr(second, "bytes_in/s"));
	scene_stop(&s);
}
END_TEST

START_TEST(close_stream_ends_that_stream_only)
{
	struct scene s;
	scene_start(&s, NULL, NULL);
	struct json *doc;
	const struct json *rows = ctl_json(&doc, &s.pair.b, "streams", NULL, NULL);
	const struct json *row = row_with(rows, "bytes_out", (double)sizes[1]);
	ck_assert_ptr_nonnull(row);
	char id[64];
	snprintf(id, sizeof id, "%.0f/%.0f", json_number(row, "conn"), json_number(row, "stream"));
	json_free(doc);
	static struct ctl_run r;
	ctl_run(&r, &s.pair.b, "close-stream", id, (const char *)NULL);
	ck_assert_msg(r.status == 0, "close-stream %s: %d %s", id, r.status, r.err);
	ck_assert_ptr_nonnull(strstr(r.out, "closed with ERROR 499"));
	/* both ends of that stream learn it: the opener here, the listener across */
	unsigned char byte;
	wh_set_read_deadline(s.opened[1], wh_now_ns() + 5000000000ll);
	ck_assert_int_lt(wh_read(s.opened[1], &byte, 1), 0);
	uint32_t code = 1;
	const char *message = NULL;
	/* the app on this broker is told who ended it, not a bare "stream closed" */
	wh_stream_error(s.opened[1], &code, &message);
	ck_assert_uint_eq(code, 0);
	ck_assert_msg(strstr(message, "closed by the operator (wormhole-ctl close-stream)"), "opener read '%s'", message);
	/* and its writes fail: before, a write after the close "completed", its bytes dropped */
	ck_assert_int_eq(wh_write(s.opened[1], "more", 4), WH_ESTREAM_CLOSED);
	wh_set_read_deadline(s.accepted[1], wh_now_ns() + 5000000000ll);
	long got = wh_read(s.accepted[1], &byte, 1);
	ck_assert_int_lt(got, 0);
	wh_stream_error(s.accepted[1], &code, &message);
	ck_assert_uint_eq(code, 499);
	ck_assert_msg(strstr(message, "closed by the operator"), "listener read '%s'", message);
	/* the others carry on, both ways */
	for (int i = 0; i < STREAMS; i += 2) {
		write_all(s.opened[i], 5000, 40u + (unsigned)i);
		read_check(s.accepted[i], 5000, 40u + (unsigned)i);
		write_all(s.accepted[i], 7000, 50u + (unsigned)i);
		read_check(s.opened[i], 7000, 50u + (unsigned)i);
	}
	/* the closed stream is gone from the view; a second close says so */
	rows = ctl_json(&doc, &s.pair.b, "streams", NULL, NULL);
	ck_assert_ptr_null(row_with(rows, "bytes_out", (double)sizes[1]));
	json_free(doc);
	ctl_run(&r, &s.pair.b, "close-stream", id, (const char *)NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "no stream"));
	ctl_run(&r, &s.pair.b, "close-stream", "1/2", "777", (const char *)NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "not an error code"));
	ctl_run(&r, &s.pair.b, "close-stream", "x", (const char *)NULL);
	ck_assert_int_eq(r.status, 2); /* usage, as wormhole-ctl(1) says */
	scene_stop(&s);
}
END_TEST

/* A reader blocked on a stream: what its wh_read returned and how long it took. */
struct blocked_read {
	wh_stream *stream;
	long result;
	double took;
};

static void *read_blocked(void *arg)
{
	struct blocked_read *b = arg;
	unsigned char byte;
	wh_set_read_deadline(b->stream, wh_now_ns() + 10000000000ll);
	int64_t start = wh_now_ns();
	b->result = wh_read(b->stream, &byte, 1);
	b->took = (double)(wh_now_ns() - start) / 1e9;
	return NULL;
}

/* A same-host stream (two apps on one broker, `streams` shows it as 0/HANDLE) is closed as a
 * network stream is: both apps hear the code and why, one blocked in a read at once. Before,
 * close-stream knew only streams on connections ("no stream 7 on connection 0"). */
START_TEST(close_stream_ends_a_same_host_stream)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *listener = app_attach(&p.b), *opener = app_attach(&p.b);
	ck_assert_int_eq(wh_listen(listener, "here"), WH_OK);
	wh_stream *opened, *accepted;
	ck_assert_int_eq(wh_open(opener, WH_PEER_LOCAL, "here", 10000, &opened), WH_OK);
	ck_assert_int_eq(wh_accept(listener, 10000, &accepted), WH_OK);
	write_all(opened, 3000, 7);
	read_check(accepted, 3000, 7);
	struct json *doc;
	const struct json *rows = ctl_json(&doc, &p.b, "streams", "--peer", "local");
	ck_assert_uint_ge(rows->count, 1);
	ck_assert(json_number(rows->items[0], "conn") == 0);
	char id[64];
	snprintf(id, sizeof id, "0/%.0f", json_number(rows->items[0], "stream"));
	json_free(doc);
	struct blocked_read blocked = { .stream = accepted };
	pthread_t reader;
	ck_assert_int_eq(pthread_create(&reader, NULL, read_blocked, &blocked), 0);
	static struct ctl_run r;
	ctl_run(&r, &p.b, "close-stream", id, "503", (const char *)NULL);
	ck_assert_msg(r.status == 0, "close-stream %s: %d %s", id, r.status, r.err);
	ck_assert_ptr_nonnull(strstr(r.out, "closed with ERROR 503"));
	pthread_join(reader, NULL);
	ck_assert_msg(blocked.result < 0 && blocked.took < 5, "the blocked reader got %ld after %.1f s",
		      blocked.result, blocked.took);
	wh_stream *ends[2] = { opened, accepted };
	for (int i = 0; i < 2; i++) {
		unsigned char byte;
		wh_set_read_deadline(ends[i], wh_now_ns() + 5000000000ll);
		ck_assert_int_lt(wh_read(ends[i], &byte, 1), 0);
		ck_assert_int_lt(wh_write(ends[i], "x", 1), 0);
		uint32_t code = 0;
		const char *message = NULL;
		wh_stream_error(ends[i], &code, &message);
		ck_assert_uint_eq(code, 503);
		ck_assert_msg(message && strstr(message, "closed by the operator (wormhole-ctl close-stream)"),
			      "end %d read '%s'", i, message ? message : "");
	}
	ctl_run(&r, &p.b, "close-stream", id, (const char *)NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "has already ended"));
	ctl_run(&r, &p.b, "close-stream", "0/99999999999", (const char *)NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "no same-host stream 99999999999"));
	/* the apps carry on: a new stream between them works */
	wh_close(opened);
	wh_close(accepted);
	ck_assert_int_eq(wh_open(opener, WH_PEER_LOCAL, "here", 10000, &opened), WH_OK);
	ck_assert_int_eq(wh_accept(listener, 10000, &accepted), WH_OK);
	write_all(opened, 2000, 9);
	read_check(accepted, 2000, 9);
	/* a stream whose writer finished in order: its reader still gets every byte and EOF */
	write_all(opened, 1500, 11);
	ck_assert_int_eq(wh_shutdown(opened), WH_OK);
	rows = ctl_json(&doc, &p.b, "streams", "--peer", "local");
	ck_assert_uint_ge(rows->count, 1);
	snprintf(id, sizeof id, "0/%.0f", json_number(rows->items[0], "stream"));
	json_free(doc);
	ctl_run(&r, &p.b, "close-stream", id, (const char *)NULL);
	ck_assert_msg(r.status == 0, "close-stream %s: %d %s", id, r.status, r.err);
	read_check(accepted, 1500, 11);
	unsigned char last;
	wh_set_read_deadline(accepted, wh_now_ns() + 5000000000ll);
	ck_assert_int_eq(wh_read(accepted, &last, 1), 0);
	wh_close(opened);
	wh_close(accepted);
	wh_client_detach(opener);
	wh_client_detach(listener);
	broker_pair_stop(&p);
}
END_TEST

struct peer_state {
	const struct process *broker;
	const char *want;
};

static bool peer_in_state(void *arg)
{
	struct peer_state *p = arg;
	struct json *doc;
	const struct json *rows = ctl_json(&doc, p->broker, "peers", NULL, NULL);
	bool match = rows->count == 1 && strcmp(json_string(rows->items[0], "state"), p->want) == 0;
	json_free(doc);
	return match;
}

START_TEST(drain_peer_then_warm_peer)
{
	struct scene s;
	scene_start(&s, NULL, NULL);
	static struct ctl_run r;
	ctl_run(&r, &s.pair.b, "drain-peer", "a", (const char *)NULL);
	ck_assert_msg(r.status == 0, "drain-peer: %s", r.err);
	struct peer_state draining = { &s.pair.b, "draining" };
	ck_assert(peer_in_state(&draining));
	/* no new streams to a ... */
	wh_stream *extra = NULL;
	ck_assert_int_ne(wh_open(s.opener, "a", "svc", 2000, &extra), WH_OK);
	/* ... while the open ones go on, both ways */
	for (int i = 0; i < STREAMS; i++) {
		write_all(s.opened[i], 3000, 60u + (unsigned)i);
		read_check(s.accepted[i], 3000, 60u + (unsigned)i);
		write_all(s.accepted[i], 4000, 70u + (unsigned)i);
		read_check(s.opened[i], 4000, 70u + (unsigned)i);
	}
	/* warm-peer undoes it: a new stream opens and carries bytes */
	ctl_run(&r, &s.pair.b, "warm-peer", "a", (const char *)NULL);
	ck_assert_msg(r.status == 0, "warm-peer: %s", r.err);
	struct peer_state up = { &s.pair.b, "up" };
	ck_assert(poll_until(peer_in_state, &up, 10));
	ck_assert_int_eq(wh_open(s.opener, "a", "svc", 10000, &extra), WH_OK);
	wh_stream *extra_accepted = NULL;
	ck_assert_int_eq(wh_accept(s.listener, 10000, &extra_accepted), WH_OK);
	write_all(extra, 9000, 99);
	read_check(extra_accepted, 9000, 99);
	wh_close(extra);
	wh_close(extra_accepted);
	/* an unknown peer is a refusal, exit 1 */
	ctl_run(&r, &s.pair.b, "drain-peer", "nobody", (const char *)NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "no peer named 'nobody'"));
	scene_stop(&s);
}
END_TEST

static const char *status_field(const struct process *broker, const char *field, char *out, size_t length)
{
	struct json *doc;
	const struct json *rows = ctl_json(&doc, broker, "status", NULL, NULL);
	snprintf(out, length, "%s", json_string(rows->items[0], field));
	json_free(doc);
	return out;
}

START_TEST(reload_and_log_level)
{
	char dir[256], conf[300];
	harness_tempdir(dir, sizeof dir);
	snprintf(conf, sizeof conf, "%s/broker.conf", dir);
	harness_write_file(conf, "[broker]\nlog-level = warn\n");
	const char *args[] = { "--config", conf, NULL };
	/* the harness's --log-level info comes after --config: the command line wins */
	struct process broker;
	ck_assert(broker_spawn(&broker, args));
	char level[32];
	ck_assert_str_eq(status_field(&broker, "log_level", level, sizeof level), "info");
	static struct ctl_run r;
	ctl_run(&r, &broker, "log-level", "debug", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(status_field(&broker, "log_level", level, sizeof level), "debug");
	ctl_run(&r, &broker, "log-level", "loud", (const char *)NULL);
	ck_assert_int_eq(r.status, 2); /* usage, as wormhole-ctl(1) says */
	/* reload reads the file again: a new setting shows in config with its line */
	harness_write_file(conf, "[broker]\n# a comment\nbudget = 1G\n");
	ctl_run(&r, &broker, "reload", (const char *)NULL);
	ck_assert_msg(r.status == 0, "reload: %s", r.err);
	ck_assert_ptr_nonnull(strstr(r.out, "reloaded"));
	struct json *doc;
	const struct json *rows = ctl_json(&doc, &broker, "config", NULL, NULL);
	bool seen = false;
	for (size_t i = 0; i < rows->count; i++)
		if (strcmp(json_string(rows->items[i], "option"), "budget") == 0 &&
		    strcmp(json_string(rows->items[i], "section"), "broker") == 0) {
			seen = true;
			char where[400];
			snprintf(where, sizeof where, "%s:3", conf);
			ck_assert_str_eq(json_string(rows->items[i], "source"), where);
			ck_assert_str_eq(json_string(rows->items[i], "value"), "1073741824");
		}
	ck_assert(seen);
	json_free(doc);
	rows = ctl_json(&doc, &broker, "status", NULL, NULL);
	ck_assert_int_eq((long)json_number(rows->items[0], "budget_limit"), 1l << 30);
	json_free(doc);
	/* a bad file: refused with the reason, exit 1, the broker runs on */
	harness_write_file(conf, "[broker]\nring-size = 1000\n");
	ctl_run(&r, &broker, "reload", (const char *)NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "ring-size"));
	ctl_run(&r, &broker, "--json", "reload", (const char *)NULL);
	ck_assert_int_eq(r.status, 1);
	struct json *refusal = json_parse(r.out, NULL);
	ck_assert_ptr_nonnull(refusal);
	ck_assert_str_eq(json_string(refusal, "error"), "WH_EINVAL");
	json_free(refusal);
	ck_assert_str_eq(status_field(&broker, "state", level, sizeof level), "running");
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* The row of config whose option and section are these, or NULL. */
static const struct json *config_row(const struct json *rows, const char *option, const char *section)
{
	for (size_t i = 0; i < rows->count; i++)
		if (strcmp(json_string(rows->items[i], "option"), option) == 0 &&
		    strcmp(json_string(rows->items[i], "section"), section) == 0)
			return rows->items[i];
	return NULL;
}

static void assert_config(const struct json *rows, const char *option, const char *section, const char *value,
			  const char *source)
{
	const struct json *row = config_row(rows, option, section);
	ck_assert_msg(row != NULL, "config has no %s in [%s]", option, section);
	const struct json *v = json_get(row, "value");
	if (value)
		ck_assert_msg(v && v->kind == JSON_STRING && strcmp(v->string, value) == 0,
			      "%s in [%s]: value is not %s", option, section, value);
	else
		ck_assert_msg(v && v->kind == JSON_NULL, "%s in [%s]: value is not null", option, section);
	ck_assert_msg(strcmp(json_string(row, "source"), source) == 0, "%s in [%s]: source %s, not %s", option,
		      section, json_string(row, "source"), source);
	ck_assert_ptr_nonnull(json_string(row, "applies"));
}

/* Every setting in force with where it came from: the file's line, built-in, the command line,
 * wormhole-ctl; peers' own and inherited values; [service] rules; no placeholder as a value. */
START_TEST(config_shows_every_setting_and_its_origin)
{
	char dir[256], conf[300], line[400];
	harness_tempdir(dir, sizeof dir);
	snprintf(conf, sizeof conf, "%s/broker.conf", dir);
	harness_write_file(conf, "[broker]\n"                /* 1 */
			 "pool-max = 8\n"            /* 2 */
			 "[peer a]\n"                /* 3 */
			 "address = 127.0.0.1:9\n"   /* 4 */
			 "pool-min = 0\n"            /* 5 */
			 "[service upper]\n"         /* 6 */
			 "peers = b\n"               /* 7 */
			 "local = no\n");            /* 8 */
	const char *args[] = { "--config", conf, NULL };
	struct process broker;
	ck_assert(broker_spawn(&broker, args));
	struct json *doc;
	const struct json *rows = ctl_json(&doc, &broker, "config", NULL, NULL);
	snprintf(line, sizeof line, "%s:2", conf);
	assert_config(rows, "pool-max", "broker", "8", line);
	assert_config(rows, "pool-max", "peer a", "8", line); /* the broker's: its line */
	snprintf(line, sizeof line, "%s:4", conf);
	assert_config(rows, "address", "peer a", "127.0.0.1:9", line);
	snprintf(line, sizeof line, "%s:5", conf);
	assert_config(rows, "pool-min", "peer a", "0", line);
	assert_config(rows, "budget", "broker", "8589934592", "built-in");
	assert_config(rows, "log-level", "broker", "info", "command line");
	assert_config(rows, "socket-owner", "broker", NULL, "built-in");
	assert_config(rows, "address", "broker", NULL, "built-in");
	snprintf(line, sizeof line, "%s:7", conf);
	assert_config(rows, "peers", "service upper", "b", line);
	snprintf(line, sizeof line, "%s:8", conf);
	assert_config(rows, "local", "service upper", "no", line);
	assert_config(rows, "owner", "service upper", NULL, "built-in");
	json_free(doc);
	/* wormhole-ctl's own change shows as such, until a reload reads the file again */
	static struct ctl_run r;
	ctl_run(&r, &broker, "log-level", "debug", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	rows = ctl_json(&doc, &broker, "config", NULL, NULL);
	assert_config(rows, "log-level", "broker", "debug", "wormhole-ctl");
	json_free(doc);
	/* text: what a placeholder meant, in words */
	ctl_run(&r, &broker, "config", "--filter", "option=socket-owner", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_msg(strstr(r.out, "the broker's") && !strstr(r.out, "-1"), "%s", r.out);
	ck_assert_ptr_nonnull(strstr(r.out, "applies"));
	/* built-in services are the broker's: no pid 0, no uid -1 */
	rows = ctl_json(&doc, &broker, "services", NULL, NULL);
	ck_assert_uint_gt(rows->count, 0);
	for (size_t i = 0; i < rows->count; i++) {
		ck_assert_int_eq(json_get(rows->items[i], "pid")->kind, JSON_NULL);
		ck_assert_int_eq(json_get(rows->items[i], "uid")->kind, JSON_NULL);
	}
	json_free(doc);
	ctl_run(&r, &broker, "services", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_msg(strstr(r.out, "the broker's") && !strstr(r.out, " -1"), "%s", r.out);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* The text exposition format, line by line: HELP and TYPE before a family's samples, names
 * and label names of [a-zA-Z_][a-zA-Z0-9_]*, quoted label values, a number at the end;
 * counters end in _total. Returns the number of samples. */
static int check_exposition(const char *text, const char *want_sample)
{
	char family[256] = "", type[32] = "";
	int samples = 0;
	bool wanted_seen = want_sample == NULL;
	for (const char *line = text; *line;) {
		const char *end = strchr(line, '\n');
		ck_assert_ptr_nonnull(end); /* every line ends with a newline */
		char l[2048];
		size_t length = (size_t)(end - line);
		ck_assert_uint_lt(length, sizeof l);
		memcpy(l, line, length);
		l[length] = '\0';
		line = end + 1;
		if (strncmp(l, "# HELP ", 7) == 0) {
			ck_assert_int_eq(sscanf(l + 7, "%255s", family), 1);
			type[0] = '\0';
			continue;
		}
		if (strncmp(l, "# TYPE ", 7) == 0) {
			char name[256];
			ck_assert_int_eq(sscanf(l + 7, "%255s %31s", name, type), 2);
			ck_assert_str_eq(name, family);
			ck_assert(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0);
			if (strcmp(type, "counter") == 0)
				ck_assert(length > 6 && strcmp(name + strlen(name) - 6, "_total") == 0);
			continue;
		}
		ck_assert_msg(l[0] != '#', "unknown comment: %s", l);
		/* a sample of the current family */
		ck_assert_msg(family[0] && type[0], "sample before HELP/TYPE: %s", l);
		const char *p = l;
		ck_assert(isalpha((unsigned char)*p) || *p == '_');
		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		ck_assert_msg((size_t)(p - l) == strlen(family) && strncmp(l, family, strlen(family)) == 0,
			      "sample %s outside its family %s", l, family);
		if (*p == '{') {
			p++;
			for (;;) {
				ck_assert(isalpha((unsigned char)*p) || *p == '_');
				while (isalnum((unsigned char)*p) || *p == '_')
					p++;
				ck_assert_int_eq(*p++, '=');
				ck_assert_int_eq(*p++, '"');
				while (*p && *p != '"')
					p += *p == '\\' ? 2 : 1;
				ck_assert_int_eq(*p++, '"');
				if (*p == ',') {
					p++;
					continue;
				}
				ck_assert_int_eq(*p++, '}');
				break;
			}
		}
		ck_assert_int_eq(*p++, ' ');
		char *number_end;
		strtod(p, &number_end);
		ck_assert_msg(number_end != p && *number_end == '\0', "not a number: %s", l);
		if (want_sample && strcmp(l, want_sample) == 0)
			wanted_seen = true;
		samples++;
	}
	ck_assert_msg(wanted_seen, "no line '%s'", want_sample);
	return samples;
}

/* wormhole_build_info with the broker's version and commit, wormhole_start_time_seconds when
 * it started; and no label whose values come anew with every app or connection. */
static void check_process_families(const char *text, const struct process *broker)
{
	struct json *doc;
	const struct json *rows = ctl_json(&doc, broker, "status", NULL, NULL);
	char want[256];
	snprintf(want, sizeof want, "wormhole_build_info{version=\"%s\",commit=\"%s\"} 1\n",
		 json_string(rows->items[0], "version"), json_string(rows->items[0], "commit"));
	ck_assert_msg(strstr(text, want) != NULL, "no %s", want);
	ck_assert_str_eq(json_string(rows->items[0], "version"), PACKAGE_VERSION);
	ck_assert_ptr_nonnull(strstr(text, "# TYPE wormhole_build_info gauge\n"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE wormhole_start_time_seconds gauge\n"));
	const char *start = strstr(text, "\nwormhole_start_time_seconds ");
	ck_assert_ptr_nonnull(start);
	double started = strtod(start + strlen("\nwormhole_start_time_seconds "), NULL);
	double expected = (double)time(NULL) - json_number(rows->items[0], "uptime");
	ck_assert_msg(fabs(started - expected) < 30, "start time %.0f, expected about %.0f", started, expected);
	json_free(doc);
	static const char *const unbounded[] = { "conn=\"", "app=\"", "pid=\"", "stream=\"", NULL };
	for (int i = 0; unbounded[i]; i++)
		ck_assert_msg(!strstr(text, unbounded[i]), "a series labelled %s", unbounded[i]);
}

START_TEST(metrics_follow_the_exposition_format)
{
	struct scene s;
	scene_start(&s, NULL, NULL);
	static struct ctl_run r;
	ctl_run(&r, &s.pair.b, "metrics", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	char want[256];
	snprintf(want, sizeof want, "wormhole_apps_streams{uid=\"%ld\"} %d", (long)getuid(), STREAMS);
	ck_assert_int_gt(check_exposition(r.out, want), 50);
	check_process_families(r.out, &s.pair.b);
	ck_assert_ptr_nonnull(strstr(r.out, "wormhole_peers_total_streams_total{peer=\"a\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(r.out, "# TYPE wormhole_conns_data_bytes_out_total counter\n"));
	ck_assert_ptr_nonnull(strstr(r.out, "# TYPE wormhole_status_uptime_seconds gauge\n"));
	scene_stop(&s);
}
END_TEST

/* One HTTP request to host:port; the whole answer (status line, headers, body) in out. */
static void http_get(const char *address, const char *request, char *out, size_t cap)
{
	char host[64];
	unsigned port;
	ck_assert_int_eq(sscanf(address, "%63[^:]:%u", host, &port), 2);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, host, &to.sin_addr);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
	ck_assert_int_eq(send(fd, request, strlen(request), MSG_NOSIGNAL), (ssize_t)strlen(request));
	size_t got = 0;
	struct pollfd pfd = { fd, POLLIN, 0 };
	while (got < cap - 1 && poll(&pfd, 1, 5000) > 0) {
		ssize_t n = recv(fd, out + got, cap - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	out[got] = '\0';
	close(fd);
}

START_TEST(metrics_listen_serves_a_scraper)
{
	struct scene s;
	const char *metrics[] = { "--metrics-listen", "127.0.0.1:0", NULL };
	scene_start(&s, NULL, metrics);
	char address[300];
	ck_assert_ptr_nonnull(status_field(&s.pair.b, "metrics_listen", address, sizeof address));
	ck_assert_msg(strncmp(address, "127.0.0.1:", 10) == 0, "metrics_listen '%s'", address);
	static char answer[OUTPUT_MAX];
	http_get(address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", answer, sizeof answer);
	ck_assert_msg(strncmp(answer, "HTTP/1.0 200 OK\r\n", 17) == 0, "%.80s", answer);
	ck_assert_ptr_nonnull(strstr(answer, "Content-Type: text/plain; version=0.0.4"));
	const char *body = strstr(answer, "\r\n\r\n");
	ck_assert_ptr_nonnull(body);
	char want[256];
	snprintf(want, sizeof want, "wormhole_apps_streams{uid=\"%ld\"} %d", (long)getuid(), STREAMS);
	ck_assert_int_gt(check_exposition(body + 4, want), 50);
	check_process_families(body + 4, &s.pair.b);
	http_get(address, "GET / HTTP/1.0\r\n\r\n", answer, sizeof answer);
	ck_assert_ptr_nonnull(strstr(answer, "404 Not Found"));
	http_get(address, "POST /metrics HTTP/1.0\r\n\r\n", answer, sizeof answer);
	ck_assert_ptr_nonnull(strstr(answer, "405 Method Not Allowed"));
	http_get(address, "\x16\x03\x01 garbage\r\n\r\n", answer, sizeof answer);
	ck_assert_ptr_nonnull(strstr(answer, "400 Bad Request"));
	scene_stop(&s);
}
END_TEST

START_TEST(exit_codes_name_the_reason)
{
	static struct ctl_run r;
	char dir[256], path[300];
	harness_tempdir(dir, sizeof dir);
	/* no such file */
	snprintf(path, sizeof path, "%s/none.sock", dir);
	const char *missing[] = { "-s", path, "status", NULL };
	ctl_run_as(&r, -1, missing);
	ck_assert_int_eq(r.status, 3);
	ck_assert_ptr_nonnull(strstr(r.err, path));
	ck_assert_ptr_nonnull(strstr(r.err, "no such file"));
	/* a regular file */
	snprintf(path, sizeof path, "%s/file", dir);
	harness_write_file(path, "not a socket\n");
	const char *file[] = { "-s", path, "status", NULL };
	ctl_run_as(&r, -1, file);
	ck_assert_int_eq(r.status, 3);
	ck_assert_ptr_nonnull(strstr(r.err, "not a socket"));
	/* usage */
	const char *nothing[] = { NULL };
	ctl_run_as(&r, -1, nothing);
	ck_assert_int_eq(r.status, 2);
	const char *unknown[] = { "-s", path, "frobnicate", NULL };
	ctl_run_as(&r, -1, unknown);
	ck_assert_int_eq(r.status, 2);
	const char *bad_watch[] = { "-s", path, "watch", "-n", "0", "conns", NULL };
	ctl_run_as(&r, -1, bad_watch);
	ck_assert_int_eq(r.status, 2); /* usage is checked before the socket is tried */

	struct process broker;
	const char *open_mode[] = { "--socket-mode", "0666", NULL };
	ck_assert(broker_spawn(&broker, open_mode));
	char control[400];
	control_path(&broker, control, sizeof control);
	/* the app socket is not the control socket */
	const char *app_socket[] = { "-s", broker.socket_path, "status", NULL };
	ctl_run_as(&r, -1, app_socket);
	ck_assert_int_eq(r.status, 3);
	ck_assert_ptr_nonnull(strstr(r.err, "not a broker"));
	/* the control socket is the broker's user's (that nobody is refused there: check_root.c) */
	struct stat st;
	ck_assert_int_eq(stat(control, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	int fds_before = process_fd_count(&broker);
	/* garbage on the control socket: the broker says so and closes; it stays up */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(control), sizeof addr.sun_path);
	memcpy(addr.sun_path, control, strlen(control) + 1);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	static const char garbage[] = "GET / HTTP/1.0\r\n\r\n";
	ck_assert_int_eq(send(fd, garbage, sizeof garbage - 1, MSG_NOSIGNAL), (ssize_t)(sizeof garbage - 1));
	uint8_t answer[CONTROL_HEADER_SIZE + 256];
	size_t got = 0;
	struct pollfd pfd = { fd, POLLIN, 0 };
	while (poll(&pfd, 1, 5000) > 0) {
		ssize_t n = recv(fd, answer + got, sizeof answer - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	struct control_header h;
	ck_assert_int_eq(control_header_decode(answer, got, CONTROL_BODY_MAX, &h), WH_OK);
	ck_assert_int_eq(h.type, CONTROL_DONE);
	int status_code;
	char message[CONTROL_TEXT_MAX + 1];
	ck_assert_int_eq(control_done_decode(answer + CONTROL_HEADER_SIZE, h.length, &status_code, message), WH_OK);
	ck_assert_int_eq(status_code, WH_EPROTOCOL);
	ck_assert(process_log_wait(&broker, "not a wormhole control request", 5));
	const char *alive[] = { "-s", control, "status", NULL };
	ctl_run_as(&r, -1, alive);
	ck_assert_int_eq(r.status, 0);
	/* clients that connect and say nothing cannot lock the operator out: the longest idle
	 * makes room for a new one */
	int idle[24];
	for (int i = 0; i < 24; i++) {
		idle[i] = socket(AF_UNIX, SOCK_STREAM, 0);
		ck_assert_int_eq(connect(idle[i], (struct sockaddr *)&addr, sizeof addr), 0);
	}
	ctl_run_as(&r, -1, alive);
	ck_assert_msg(r.status == 0, "with idle clients: %d %s", r.status, r.err);
	for (int i = 0; i < 24; i++)
		close(idle[i]);
	/* and everything it took is given back (the count before may still include a client
	 * that had just left, so it is an upper bound) */
	int64_t fd_deadline = wh_now_ns() + 5000000000ll;
	while (process_fd_count(&broker) > fds_before && wh_now_ns() < fd_deadline)
		usleep(10000); /* polling a condition with a deadline */
	ck_assert_int_le(process_fd_count(&broker), fds_before);
	/* a killed broker leaves its socket behind: nobody listens there */
	ck_assert_int_eq(kill(broker.pid, SIGKILL), 0);
	int wstatus;
	ck_assert_int_eq(waitpid(broker.pid, &wstatus, 0), broker.pid);
	ctl_run_as(&r, -1, alive);
	ck_assert_int_eq(r.status, 3);
	ck_assert_ptr_nonnull(strstr(r.err, "nobody is listening"));
	harness_cleanup_dir(broker.dir);
	harness_cleanup_dir(dir);
}
END_TEST

/* The tool's flags come before or after the command; an unknown one, or operands a command
 * cannot take, are usage errors (2), before the broker is asked. */
START_TEST(flags_after_the_view_unknown_ones_refused)
{
	struct process broker;
	ck_assert(broker_spawn(&broker, NULL));
	static struct ctl_run r;
	ctl_run(&r, &broker, "peers", "--json", (const char *)NULL);
	ck_assert_msg(r.status == 0, "peers --json: %d %s", r.status, r.err);
	struct json *doc = json_parse(r.out, NULL);
	ck_assert_msg(doc != NULL, "peers --json is not JSON: %s", r.out);
	ck_assert_ptr_nonnull(json_get(doc, "peers"));
	json_free(doc);
	ctl_run(&r, &broker, "status", "-j", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull((doc = json_parse(r.out, NULL)));
	json_free(doc);
	static const char *const refused[][3] = {
		{ "peers", "--bogus" }, { "streams", "--bogus" }, { "conns", "--peer", "a" },
		{ "close-stream", "banana" }, { "close-stream", "1/x" }, { "close-stream", "1/2", "many" },
		{ "drain-peer" }, { "reload", "now" }, { "status", "extra" }, { "--bogus", "status" },
		{ "streams", "--peer" }, { "peers", "--limit", "0" }, { "peers", "--filter", "peer" },
		{ "reload", "--sort", "peer" }, { "log-level", "loud" }, { "peers", "--json=yes" },
	};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		ctl_run(&r, &broker, refused[i][0], refused[i][1], refused[i][2], (const char *)NULL);
		ck_assert_msg(r.status == 2, "%s %s %s: exit %d, not 2 (usage): %s", refused[i][0],
			      refused[i][1] ? refused[i][1] : "", refused[i][2] ? refused[i][2] : "", r.status, r.err);
	}
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

/* --filter, --sort and --limit on a table view, JSON and text alike. */
START_TEST(views_sort_limit_and_filter)
{
	struct scene s;
	scene_start(&s, NULL, NULL);
	char path[400];
	control_path(&s.pair.b, path, sizeof path);
	static struct ctl_run r;
	/* descending: the largest first */
	ctl_run(&r, &s.pair.b, "streams", "--json", "--sort", "-bytes_out", "--limit", "2", (const char *)NULL);
	ck_assert_msg(r.status == 0, "%s", r.err);
	struct json *doc = json_parse(r.out, NULL);
	ck_assert_ptr_nonnull(doc);
	const struct json *rows = json_get(doc, "streams");
	ck_assert_uint_eq(rows->count, 2);
	ck_assert(json_number(rows->items[0], "bytes_out") == (double)sizes[2]);
	ck_assert(json_number(rows->items[1], "bytes_out") == (double)sizes[1]);
	json_free(doc);
	/* ascending, and a filter on a number */
	char want[32];
	snprintf(want, sizeof want, "bytes_out=%zu", sizes[1]);
	ctl_run(&r, &s.pair.b, "--sort=bytes_out", "streams", "--json", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull((doc = json_parse(r.out, NULL)));
	rows = json_get(doc, "streams");
	ck_assert_uint_eq(rows->count, STREAMS);
	ck_assert(json_number(rows->items[0], "bytes_out") == (double)sizes[0]);
	json_free(doc);
	ctl_run(&r, &s.pair.b, "streams", "--json", "--filter", want, "--filter", "service=svc", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull((doc = json_parse(r.out, NULL)));
	rows = json_get(doc, "streams");
	ck_assert_uint_eq(rows->count, 1);
	ck_assert(json_number(rows->items[0], "bytes_out") == (double)sizes[1]);
	json_free(doc);
	ctl_run(&r, &s.pair.b, "streams", "--json", "--filter", "service=nothing", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull((doc = json_parse(r.out, NULL)));
	ck_assert_uint_eq(json_get(doc, "streams")->count, 0);
	json_free(doc);
	/* text: the header and one row (and the note on columns cut to fit) */
	ctl_run(&r, &s.pair.b, "streams", "--sort", "-bytes_out", "--limit", "1", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	int lines = 0;
	for (const char *p = r.out; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
		lines += *p != '(';
	ck_assert_int_eq(lines, 2);
	ck_assert_ptr_nonnull(strstr(r.out, "293 KiB"));
	/* every table view takes them; a field the view has not is a usage error naming those it has */
	static const char *const views[] = { "peers", "conns", "apps", "services", "config", "status" };
	for (size_t i = 0; i < sizeof views / sizeof views[0]; i++) {
		ctl_run(&r, &s.pair.b, views[i], "--limit", "1", "--json", (const char *)NULL);
		ck_assert_msg(r.status == 0, "%s --limit 1: %s", views[i], r.err);
		ck_assert_ptr_nonnull((doc = json_parse(r.out, NULL)));
		ck_assert_uint_le(json_get(doc, views[i])->count, 1);
		json_free(doc);
	}
	ctl_run(&r, &s.pair.b, "streams", "--sort", "colour", (const char *)NULL);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "bytes_out"));
	ctl_run(&r, &s.pair.b, "watch", "-c", "1", "streams", "--limit", "1", "--sort", "-bytes_out", (const char *)NULL);
	ck_assert_msg(r.status == 0, "%s", r.err);
	ck_assert_ptr_nonnull(strstr(r.out, "293 KiB"));
	scene_stop(&s);
}
END_TEST

/* ---- operators' endpoints: bounded cost, no lock-out ------------------------------------- */

/* One HTTP request; true if answered 200 (the body, NUL-terminated, in out). Never asserts:
 * a refused connection is an answer too. */
static bool http_try(const char *address, const char *request, char *out, size_t cap)
{
	char host[64];
	unsigned port;
	if (sscanf(address, "%63[^:]:%u", host, &port) != 2)
		return false;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, host, &to.sin_addr);
	size_t got = 0;
	if (fd >= 0 && connect(fd, (struct sockaddr *)&to, sizeof to) == 0 &&
	    send(fd, request, strlen(request), MSG_NOSIGNAL) == (ssize_t)strlen(request)) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		while (got < cap - 1 && poll(&pfd, 1, 10000) > 0) {
			ssize_t n = recv(fd, out + got, cap - 1 - got, 0);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
	}
	out[got] = '\0';
	if (fd >= 0)
		close(fd);
	return strncmp(out, "HTTP/1.0 200 OK\r\n", 17) == 0;
}

static double status_number(const struct process *broker, const char *field)
{
	struct json *doc;
	const struct json *rows = ctl_json(&doc, broker, "status", NULL, NULL);
	double value = json_number(rows->items[0], field);
	json_free(doc);
	return value;
}

struct pool_open {
	const struct process *broker;
	double open;
};

static bool pool_has_open(void *arg)
{
	struct pool_open *p = arg;
	struct json *doc;
	const struct json *rows = ctl_json(&doc, p->broker, "peers", NULL, NULL);
	bool done = rows->count == 1 && json_number(rows->items[0], "open") >= p->open;
	json_free(doc);
	return done;
}

#define POOLED "32"

/* B keeps 32 connections to A and serves metrics-listen. */
static void pooled_pair_start(struct broker_pair *pair, char *address, size_t length)
{
	const char *a_args[] = { "--metrics-listen", "127.0.0.1:0", NULL };
	const char *b_args[] = { "--pool-min", POOLED, "--pool-max", POOLED, "--metrics-listen", "127.0.0.1:0", NULL };
	broker_pair_start(pair, a_args, b_args);
	struct pool_open want = { &pair->b, atof(POOLED) };
	ck_assert_msg(poll_until(pool_has_open, &want, 30), "B's pool did not reach " POOLED);
	ck_assert_ptr_nonnull(status_field(&pair->b, "metrics_listen", address, length));
}

/* A scraper in a loop until the deadline (a child process): exits 0 if every scrape was
 * answered. */
static void scrape_loop(const char *address, int64_t until_ns)
{
	static char answer[OUTPUT_MAX];
	int failed = 0;
	while (wh_now_ns() < until_ns)
		failed += !http_try(address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", answer, sizeof answer);
	_exit(failed ? 1 : 0);
}

START_TEST(metrics_scrapes_in_a_loop_share_one_rendering)
{
	struct broker_pair pair;
	char address[300];
	pooled_pair_start(&pair, address, sizeof address);
	double renders_before = status_number(&pair.b, "metrics_renders");
	int64_t start = wh_now_ns(), until = start + 2000000000ll;
	pid_t scrapers[4];
	for (int i = 0; i < 4; i++) {
		scrapers[i] = fork();
		ck_assert_int_ge(scrapers[i], 0);
		if (scrapers[i] == 0)
			scrape_loop(address, until);
	}
	/* the operator is answered while they scrape (a generous bound: the machine is loaded) */
	double slowest = 0;
	static struct ctl_run r;
	while (wh_now_ns() < until) {
		int64_t asked = wh_now_ns();
		ctl_run(&r, &pair.b, "status", (const char *)NULL);
		ck_assert_int_eq(r.status, 0);
		double took = (double)(wh_now_ns() - asked) / 1e9;
		slowest = took > slowest ? took : slowest;
	}
	for (int i = 0; i < 4; i++) {
		int status;
		ck_assert_int_eq(waitpid(scrapers[i], &status, 0), scrapers[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a scraper was not answered");
	}
	double elapsed = (double)(wh_now_ns() - start) / 1e9;
	double scrapes = status_number(&pair.b, "metrics_scrapes");
	double renders = status_number(&pair.b, "metrics_renders") - renders_before;
	fprintf(stderr, "4 scrapers for %.1f s: %.0f scrapes, %.0f renders; status took %.3f s at most\n",
		elapsed, scrapes, renders, slowest);
	ck_assert_msg(slowest < 5.0, "wormhole-ctl status took %.3f s while scrapers ran", slowest);
	ck_assert_msg(scrapes >= 8, "%.0f scrapes answered", scrapes);
	/* one rendering serves the scrapes of a second */
	ck_assert_msg(renders >= 1 && renders <= elapsed + 2, "%.0f renders in %.1f s", renders, elapsed);
	broker_pair_stop(&pair);
}
END_TEST

/* The samples of family `name` in text (lines that start with name and '{' or ' '). */
static int samples_of(const char *text, const char *name)
{
	int count = 0;
	size_t n = strlen(name);
	for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
		if (strncmp(line, name, n) == 0 && (line[n] == '{' || line[n] == ' '))
			count++;
	return count;
}

START_TEST(metrics_series_do_not_grow_with_connections)
{
	struct broker_pair pair;
	char address[300];
	pooled_pair_start(&pair, address, sizeof address);
	/* B dialled 32 connections: one series per peer and role, over HTTP */
	static char answer[OUTPUT_MAX];
	ck_assert(http_try(address, "GET /metrics HTTP/1.0\r\n\r\n", answer, sizeof answer));
	const char *body = strstr(answer, "\r\n\r\n");
	ck_assert_ptr_nonnull(body);
	check_exposition(body + 4, "wormhole_conns_connections{peer=\"a\",role=\"dialled\"} " POOLED);
	ck_assert_msg(!strstr(body, "conn=\""), "a series labelled by connection id");
	ck_assert_int_eq(samples_of(body, "wormhole_conns_streams"), 1);
	ck_assert_int_eq(samples_of(body, "wormhole_conns_bytes_out_total"), 1);
	/* A accepted them (plaintext: no names): the same, from wormhole-ctl metrics */
	static struct ctl_run r;
	ctl_run(&r, &pair.a, "metrics", (const char *)NULL);
	ck_assert_int_eq(r.status, 0);
	check_exposition(r.out, "wormhole_conns_connections{peer=\"(unidentified)\",role=\"accepted\"} " POOLED);
	ck_assert_msg(!strstr(r.out, "conn=\""), "a series labelled by connection id");
	ck_assert_int_eq(samples_of(r.out, "wormhole_conns_streams"), 1);
	/* the per-connection view is still there for the operator */
	struct json *doc;
	const struct json *rows = ctl_json(&doc, &pair.a, "conns", NULL, NULL);
	ck_assert_uint_eq(rows->count, atoi(POOLED));
	json_free(doc);
	broker_pair_stop(&pair);
}
END_TEST

/* A's conns --by-peer row for B's connections (plaintext: (unidentified), accepted): its
 * bytes_in, and its open connections in *open; -1 if there is no such row. */
static double unidentified_bytes_in(const struct process *a, double *open)
{
	struct json *doc;
	const struct json *rows = ctl_json(&doc, a, "conns", "--by-peer", NULL);
	double bytes = -1;
	for (size_t i = 0; i < rows->count; i++)
		if (strcmp(json_string(rows->items[i], "peer"), "(unidentified)") == 0 &&
		    strcmp(json_string(rows->items[i], "role"), "accepted") == 0) {
			bytes = json_number(rows->items[i], "bytes_in");
			*open = json_number(rows->items[i], "connections");
		}
	json_free(doc);
	return bytes;
}

static bool no_conns_open(void *arg)
{
	struct json *doc;
	const struct json *rows = ctl_json(&doc, arg, "conns", NULL, NULL);
	bool none = rows->count == 0;
	json_free(doc);
	return none;
}

/* The sums per peer are counters to a scraper: a connection that closes takes nothing from
 * them (a drop would read as a reset), and the row stays when the last one goes. */
START_TEST(conns_by_peer_sums_survive_closed_connections)
{
	struct broker_pair pair;
	const char *b_args[] = { "--pool-min", "2", "--pool-max", "2", NULL };
	broker_pair_start(&pair, NULL, b_args);
	struct pool_open want = { &pair.b, 2 };
	ck_assert_msg(poll_until(pool_has_open, &want, 30), "B's pool did not reach 2");
	double open = 0;
	double before = unidentified_bytes_in(&pair.a, &open);
	ck_assert_msg(before > 0 && open == 2, "bytes_in %.0f over %.0f connections", before, open);
	ck_assert_int_eq(process_stop(&pair.b, SIGTERM), 0); /* both of B's connections close */
	ck_assert_msg(poll_until(no_conns_open, &pair.a, 30), "A still has connections");
	double after = unidentified_bytes_in(&pair.a, &open);
	ck_assert_msg(after >= before && open == 0, "bytes_in %.0f after %.0f before (%.0f open)", after,
		      before, open);
	ck_assert_int_eq(process_stop(&pair.a, SIGTERM), 0);
}
END_TEST

/* A connection to the metrics listener that sends half a request and waits. */
static int slowloris_open(const char *address)
{
	char host[64];
	unsigned port;
	ck_assert_int_eq(sscanf(address, "%63[^:]:%u", host, &port), 2);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, host, &to.sin_addr);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&to, sizeof to) == 0)
		send(fd, "GET /metr", 9, MSG_NOSIGNAL);
	return fd;
}

#define SLOWLORIS 12

START_TEST(metrics_slowloris_cannot_keep_a_scraper_out)
{
	struct process broker;
	const char *args[] = { "--metrics-listen", "127.0.0.1:0", NULL };
	ck_assert(broker_spawn(&broker, args));
	char address[300];
	ck_assert_ptr_nonnull(status_field(&broker, "metrics_listen", address, sizeof address));
	/* more half-requests than slots, all held open */
	int held[SLOWLORIS];
	for (int i = 0; i < SLOWLORIS; i++)
		held[i] = slowloris_open(address);
	static char answer[OUTPUT_MAX];
	ck_assert_msg(http_try(address, "GET /metrics HTTP/1.0\r\n\r\n", answer, sizeof answer),
		      "behind %d half-requests: '%.60s'", SLOWLORIS, answer);
	/* and one that opens and reopens without end */
	int64_t until = wh_now_ns() + 3000000000ll;
	pid_t churn = fork();
	ck_assert_int_ge(churn, 0);
	if (churn == 0) {
		int ring[SLOWLORIS];
		for (int i = 0; i < SLOWLORIS; i++)
			ring[i] = slowloris_open(address);
		for (unsigned i = 0; wh_now_ns() < until; i++) {
			close(ring[i % SLOWLORIS]);
			ring[i % SLOWLORIS] = slowloris_open(address);
			usleep(1000); /* pacing the attack, not waiting for a condition */
		}
		_exit(0);
	}
	int answered = 0, tries = 0;
	while (wh_now_ns() < until && tries < 300) {
		answered += http_try(address, "GET /metrics HTTP/1.0\r\n\r\n", answer, sizeof answer);
		tries++;
	}
	int status;
	ck_assert_int_eq(waitpid(churn, &status, 0), churn);
	fprintf(stderr, "with a slowloris reopening: %d of %d scrapes answered\n", answered, tries);
	ck_assert_msg(tries >= 5 && answered >= tries * 8 / 10, "%d of %d scrapes answered", answered, tries);
	ck_assert_double_gt(status_number(&broker, "metrics_dropped"), SLOWLORIS - 8);
	for (int i = 0; i < SLOWLORIS; i++)
		close(held[i]);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

/* A control client that asks for view and never reads: returns once the answer started to
 * come (the broker has it and is stuck sending it), or the connection ended. */
static int control_ask_and_stall(const struct process *broker, const char *view)
{
	char path[400];
	control_path(broker, path, sizeof path);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(path), sizeof addr.sun_path);
	memcpy(addr.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	struct control_request req = { .argc = 1 };
	snprintf(req.argv[0], sizeof req.argv[0], "%s", view);
	uint8_t out[CONTROL_HEADER_SIZE + CONTROL_REQUEST_MAX];
	int n = control_request_encode(out, sizeof out, &req);
	ck_assert_int_gt(n, 0);
	send(fd, out, (size_t)n, MSG_NOSIGNAL); /* a refused client's send may fail: fine */
	struct pollfd pfd = { fd, POLLIN, 0 };
	poll(&pfd, 1, 10000);
	return fd;
}

#define STALLED 20
#define LISTENED 2500

START_TEST(control_clients_that_never_read_cannot_lock_out_the_operator)
{
	struct process broker;
	const char *args[] = { "--app-max-listeners", "4096", NULL };
	ck_assert(broker_spawn(&broker, args));
	/* a services answer of over half a megabyte: more than a socket buffer holds */
	wh_client *app = app_attach(&broker);
	char name[256];
	for (int i = 0; i < LISTENED; i++) {
		snprintf(name, sizeof name, "%0200d", i);
		ck_assert_int_eq(wh_listen(app, name), WH_OK);
	}
	int stalled[STALLED];
	for (int i = 0; i < STALLED; i++)
		stalled[i] = control_ask_and_stall(&broker, "services");
	static struct ctl_run r;
	ctl_run(&r, &broker, "status", (const char *)NULL);
	ck_assert_msg(r.status == 0, "with %d clients not reading: exit %d: %s", STALLED, r.status, r.err);
	ck_assert_double_ge(status_number(&broker, "control_clients_dropped"), STALLED - 16);
	/* and those left are closed once their replies were not taken in time */
	ck_assert(process_log_wait(&broker, "of its reply not taken within", 30));
	for (int i = 0; i < STALLED; i++)
		close(stalled[i]);
	wh_client_detach(app);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

static Suite *ctl_suite(void)
{
	Suite *s = suite_create("ctl");
	TCase *tc = tcase_create("live");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, views_json_match_what_the_test_did);
	tcase_add_test(tc, views_text_fit_80_columns);
	tcase_add_test(tc, close_stream_ends_that_stream_only);
	tcase_add_test(tc, close_stream_ends_a_same_host_stream);
	tcase_add_test(tc, drain_peer_then_warm_peer);
	tcase_add_test(tc, reload_and_log_level);
	tcase_add_test(tc, config_shows_every_setting_and_its_origin);
	tcase_add_test(tc, metrics_follow_the_exposition_format);
	tcase_add_test(tc, metrics_listen_serves_a_scraper);
	tcase_add_test(tc, exit_codes_name_the_reason);
	tcase_add_test(tc, flags_after_the_view_unknown_ones_refused);
	tcase_add_test(tc, views_sort_limit_and_filter);
	suite_add_tcase(s, tc);
	TCase *operators = tcase_create("operators");
	tcase_set_timeout(operators, 120);
	tcase_add_test(operators, metrics_scrapes_in_a_loop_share_one_rendering);
	tcase_add_test(operators, metrics_series_do_not_grow_with_connections);
	tcase_add_test(operators, metrics_slowloris_cannot_keep_a_scraper_out);
	tcase_add_test(operators, control_clients_that_never_read_cannot_lock_out_the_operator);
	suite_add_tcase(s, operators);
	TCase *closed = tcase_create("closed");
	tcase_set_timeout(closed, 120);
	tcase_add_test(closed, conns_by_peer_sums_survive_closed_connections);
	suite_add_tcase(s, closed);
	return s;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	SRunner *sr = srunner_create(ctl_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
