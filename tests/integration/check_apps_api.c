/* Integration tests of the client library's edges, against real brokers on loopback: what
 * attach and open say when they fail, the version macros, asynchronous opens from an event
 * loop, streams on one descriptor and what streams cost in descriptors, per-app limits, the
 * attach socket's owner and mode. check_apps.c has the data path itself. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "harness.h"

/* Each way attaching can fail has its own code and a sentence naming the path and the cause. */
static int attach_code(const char *path, char *detail, size_t length)
{
	wh_client *c = NULL;
	int rc = wh_client_attach_detail(path, &c, detail, length);
	if (rc == WH_OK)
		wh_client_detach(c);
	return rc;
}

START_TEST(test_attach_errors_say_what_happened)
{
	char dir[256], path[400], detail[WH_DETAIL_MAX];
	harness_tempdir(dir, sizeof dir);
	/* no such file */
	snprintf(path, sizeof path, "%s/none.sock", dir);
	ck_assert_int_eq(attach_code(path, detail, sizeof detail), WH_ENO_BROKER);
	ck_assert_ptr_nonnull(strstr(detail, path));
	ck_assert_ptr_nonnull(strstr(detail, "no such file"));
	ck_assert_int_eq(wh_client_attach(path, &(wh_client *){ NULL }), WH_ENO_BROKER);
	/* a regular file */
	snprintf(path, sizeof path, "%s/file", dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	ck_assert_int_eq(attach_code(path, detail, sizeof detail), WH_ENOT_BROKER);
	ck_assert_ptr_nonnull(strstr(detail, "not a socket"));
	/* a socket nobody listens on (what a killed broker leaves) */
	snprintf(path, sizeof path, "%s/stale.sock", dir);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	memcpy(addr.sun_path, path, strlen(path) + 1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	close(fd);
	ck_assert_int_eq(attach_code(path, detail, sizeof detail), WH_ENO_BROKER);
	ck_assert_ptr_nonnull(strstr(detail, "nobody listens"));
	/* a stream socket: the broker's control socket, not its app socket */
	struct process broker;
	const char *args[] = { "--socket-mode", "0660", NULL };
	ck_assert(broker_spawn(&broker, args));
	snprintf(path, sizeof path, "%s/control.sock", broker.dir);
	ck_assert_int_eq(attach_code(path, detail, sizeof detail), WH_ENOT_BROKER);
	ck_assert_ptr_nonnull(strstr(detail, "another kind"));
	/* permission denied: the broker runs, this user may not connect */
	if (getuid() == 0) {
		ck_assert_int_eq(chmod(broker.dir, 0755), 0);
		int out[2];
		ck_assert_int_eq(pipe(out), 0);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
				_exit(100);
			char why[WH_DETAIL_MAX];
			int rc = attach_code(broker.socket_path, why, sizeof why);
			(void)!write(out[1], why, strlen(why) + 1);
			_exit(-rc);
		}
		close(out[1]);
		char why[WH_DETAIL_MAX] = "";
		ck_assert_int_gt(read(out[0], why, sizeof why), 0);
		close(out[0]);
		int status;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFEXITED(status));
		ck_assert_int_eq(-WEXITSTATUS(status), WH_ESOCKET_DENIED);
		ck_assert_ptr_nonnull(strstr(why, "permission denied"));
		ck_assert_ptr_nonnull(strstr(why, "mode 0660"));
	}
	/* a taken service: its own code and the broker's words */
	wh_client *first = app_attach(&broker), *second = app_attach(&broker);
	ck_assert_int_eq(wh_listen(first, "taken"), WH_OK);
	ck_assert_str_eq(wh_client_errmsg(first), "");
	ck_assert_int_eq(wh_listen(second, "taken"), WH_ESERVICE_TAKEN);
	ck_assert_str_eq(wh_client_errmsg(second), "another app listens on service taken");
	ck_assert_int_eq(wh_listen(second, "free"), WH_OK);
	ck_assert_str_eq(wh_client_errmsg(second), "");
	wh_client_detach(second);
	wh_client_detach(first);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* A peer that refuses connections: once the pool has failed a dial, an open fails at once
 * with WH_EPEER_UNREACHABLE and the cause, instead of waiting out its timeout. */
START_TEST(test_open_to_unreachable_peer_says_why)
{
	/* a port nobody listens on: bound, then closed */
	int probe = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in any = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t length = sizeof any;
	ck_assert_int_eq(bind(probe, (struct sockaddr *)&any, sizeof any), 0);
	ck_assert_int_eq(getsockname(probe, (struct sockaddr *)&any, &length), 0);
	char peer[64];
	snprintf(peer, sizeof peer, "down=127.0.0.1:%u", ntohs(any.sin_port));
	close(probe);
	struct process broker;
	const char *args[] = { "--peer", peer, "--backoff-initial", "5", NULL };
	ck_assert(broker_spawn(&broker, args));
	ck_assert(process_log_wait(&broker, "dial 127.0.0.1", 10)); /* its first dial failed */
	wh_client *client = app_attach(&broker);
	wh_stream *s = NULL;
	int64_t start = wh_now_ns();
	ck_assert_int_eq(wh_open(client, "down", "echo", 5000, &s), WH_EPEER_UNREACHABLE);
	ck_assert_msg(wh_now_ns() - start < 1000000000ll, "took %.3f s", (double)(wh_now_ns() - start) / 1e9);
	ck_assert_msg(strstr(wh_client_errmsg(client), "Connection refused") &&
		      strstr(wh_client_errmsg(client), "peer down"), "errmsg: %s", wh_client_errmsg(client));
	/* an unknown peer is not unreachable: it is not configured */
	ck_assert_int_eq(wh_open(client, "nobody", "echo", 5000, &s), WH_EUNKNOWN_PEER);
	wh_client_detach(client);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

/* The compile-time version is the run-time one of the library built with it. */
START_TEST(test_version_macros)
{
	char expected[32];
	snprintf(expected, sizeof expected, "%d.%d.%d", WH_VERSION_MAJOR, WH_VERSION_MINOR, WH_VERSION_PATCH);
	ck_assert_str_eq(wh_version(), expected);
	ck_assert_str_eq(WH_VERSION_STRING, expected);
	ck_assert_int_eq(WH_VERSION_NUMBER, WH_VERSION_MAJOR * 10000 + WH_VERSION_MINOR * 100 + WH_VERSION_PATCH);
	ck_assert(WH_VERSION_NUMBER >= WH_VERSION_ENCODE(0, 1, 0));
}
END_TEST

/* An event-loop app never blocks on an open: it starts many, waits on the client's one
 * descriptor, and takes each answer as it comes, while streams opened to it arrive too. */
#define ASYNC_OPENS 40

/* An answer another call took off the socket and kept (wh_accept reads whatever comes) is
 * news the socket no longer shows: wh_client_wait reports it and wh_client_wait_fd stays
 * readable until wh_open_result takes it. */
START_TEST(test_kept_answers_are_news)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	int wait_fd = wh_client_wait_fd(client);
	ck_assert_int_ge(wait_fd, 0);
	uint64_t ticket;
	ck_assert_int_eq(wh_open_start(client, "a", "echo", 10000, &ticket), WH_OK);
	struct pollfd socket_fd = { wh_client_fd(client), POLLIN, 0 };
	ck_assert_int_eq(poll(&socket_fd, 1, 10000), 1); /* the answer is there */
	wh_stream *none;
	ck_assert_int_eq(wh_accept(client, 0, &none), WH_EWOULDBLOCK); /* ... and kept by this */
	ck_assert_int_eq(poll(&socket_fd, 1, 0), 0);                  /* the socket says nothing */
	struct pollfd waited = { wait_fd, POLLIN, 0 };
	ck_assert_int_eq(poll(&waited, 1, 0), 1);
	struct wh_event ev[4];
	int n = wh_client_wait(client, ev, 4, 0);
	ck_assert_int_ge(n, 1);
	ck_assert_ptr_null(ev[0].stream);
	ck_assert_int_eq(poll(&waited, 1, 0), 1); /* still: nothing took it yet */
	wh_stream *s;
	ck_assert_int_eq(wh_open_result(client, ticket, &s), WH_OK);
	app_echo_check(s, 10000, 3);
	wh_close(s);
	/* taken: once a wait finds nothing more, the descriptor goes quiet */
	while (wh_client_wait(client, ev, 4, 0) > 0)
		;
	ck_assert_int_eq(poll(&waited, 1, 0), 0);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

START_TEST(test_async_opens_from_an_event_loop)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	ck_assert_int_eq(wh_listen(client, "back"), WH_OK);
	wh_client *other = app_attach(&p.b);
	uint64_t tickets[ASYNC_OPENS];
	wh_stream *streams[ASYNC_OPENS] = { NULL };
	for (int i = 0; i < ASYNC_OPENS; i++)
		ck_assert_int_eq(wh_open_start(client, "a", "echo", 10000, &tickets[i]), WH_OK);
	/* a stream to this app arrives while the opens are out */
	wh_stream *to_client;
	ck_assert_int_eq(wh_open(other, WH_PEER_LOCAL, "back", 10000, &to_client), WH_OK);
	unsigned done = 0, wakeups = 0;
	wh_stream *accepted = NULL;
	int64_t deadline = wh_now_ns() + 30000000000ll;
	while ((done < ASYNC_OPENS || !accepted) && wh_now_ns() < deadline) {
		/* wh_accept below may take answers off the socket and keep them for their tickets:
		 * the descriptor then says nothing more about them, so every round looks at the
		 * tickets, woken or not (the pattern the header asks of an event loop) */
		struct pollfd pfd = { wh_client_fd(client), POLLIN, 0 };
		wakeups += poll(&pfd, 1, 100) > 0;
		for (int i = 0; i < ASYNC_OPENS; i++) {
			if (streams[i])
				continue;
			int rc = wh_open_result(client, tickets[i], &streams[i]);
			ck_assert_msg(rc == WH_OK || rc == WH_EWOULDBLOCK, "open %d: %s", i, wh_strerror(rc));
			done += rc == WH_OK;
		}
		if (!accepted) {
			int rc = wh_accept(client, 0, &accepted);
			ck_assert_msg(rc == WH_OK || rc == WH_EWOULDBLOCK, "accept: %s", wh_strerror(rc));
		}
	}
	ck_assert_uint_eq(done, ASYNC_OPENS);
	ck_assert_ptr_nonnull(accepted);
	/* a spent ticket is no ticket */
	wh_stream *again;
	ck_assert_int_eq(wh_open_result(client, tickets[0], &again), WH_EINVAL);
	for (int i = 0; i < ASYNC_OPENS; i++) {
		app_echo_check(streams[i], 10000, 100u + (unsigned)i);
		wh_close(streams[i]);
	}
	ck_assert_int_eq(wh_write(to_client, "hi", 2), 2);
	char two[2];
	ck_assert_int_eq(wh_read(accepted, two, 2), 2);
	wh_close(accepted);
	wh_close(to_client);
	/* cancelled opens leave nothing behind, whether their answer had come or not */
	uint64_t cancelled[10];
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(wh_open_start(client, "a", "echo", 10000, &cancelled[i]), WH_OK);
	for (int i = 0; i < 10; i += 2)
		ck_assert_int_eq(wh_open_cancel(client, cancelled[i]), WH_OK);
	usleep(200000); /* let some answers come before the rest are cancelled */
	for (int i = 1; i < 10; i += 2) {
		wh_stream *late;
		if (wh_open_result(client, cancelled[i], &late) == WH_EWOULDBLOCK)
			ck_assert_int_eq(wh_open_cancel(client, cancelled[i]), WH_OK);
		else if (late)
			wh_close(late);
	}
	ck_assert_int_eq(wh_open_cancel(client, cancelled[0]), WH_EINVAL);
	struct app_stats_goal goal = { client, 0, 0, 0 };
	ck_assert(poll_until(app_stats_reached, &goal, 5));
	(void)wakeups;
	wh_client_detach(other);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

/* Many streams served from one descriptor: wh_client_wait says which have news, level-
 * triggered, and the client's own news (an incoming stream) comes the same way. */
#define WAITED_STREAMS 200
#define WAITED_BYTES 30000

struct waited {
	wh_stream *s;
	size_t sent, received;
	unsigned seed;
	bool done, bad;
};

/* Moves what it can on a non-blocking stream; true once it is done. */
static bool waited_step(struct waited *w)
{
	unsigned char buf[8192];
	while (w->sent < WAITED_BYTES) {
		size_t n = WAITED_BYTES - w->sent < sizeof buf ? WAITED_BYTES - w->sent : sizeof buf;
		for (size_t i = 0; i < n; i++)
			buf[i] = harness_pattern(w->seed, w->sent + i);
		long r = wh_write(w->s, buf, n);
		if (r <= 0)
			break;
		w->sent += (size_t)r;
		if (w->sent == WAITED_BYTES)
			wh_shutdown(w->s);
	}
	long r;
	while ((r = wh_read(w->s, buf, sizeof buf)) > 0) {
		for (long i = 0; i < r; i++)
			w->bad |= buf[i] != harness_pattern(w->seed, w->received + (size_t)i);
		w->received += (size_t)r;
	}
	if (r != WH_EWOULDBLOCK) {
		w->done = true;
		w->bad |= r != 0 || w->received != WAITED_BYTES;
	}
	return w->done;
}

START_TEST(test_many_streams_one_descriptor)
{
	struct broker_pair p;
	broker_pair_start(&p, NULL, NULL);
	wh_client *client = app_attach(&p.b);
	ck_assert_int_eq(wh_listen(client, "inbound"), WH_OK);
	static struct waited w[WAITED_STREAMS];
	for (int i = 0; i < WAITED_STREAMS; i++) {
		w[i] = (struct waited){ .seed = 500u + (unsigned)i };
		ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &w[i].s), WH_OK);
		wh_set_nonblocking(w[i].s, true);
	}
	/* an app that nests the client in its own loop waits on this one descriptor */
	int fd = wh_client_wait_fd(client);
	ck_assert_int_ge(fd, 0);
	/* The first writes: what comes back is news. A stream can be done already here, when a
	 * slow run (sanitizers, a loaded machine) let its echo and CLOSE come back while it was
	 * still writing and checking: it counts, and no later news is needed for it. */
	unsigned done = 0, client_news = 0, rounds = 0;
	for (int i = 0; i < WAITED_STREAMS; i++)
		if (waited_step(&w[i]))
			done++;
	wh_client *other = app_attach(&p.b);
	wh_stream *to_client;
	ck_assert_int_eq(wh_open(other, WH_PEER_LOCAL, "inbound", 10000, &to_client), WH_OK);
	wh_stream *accepted = NULL;
	int64_t deadline = wh_now_ns() + 60000000000ll;
	while ((done < WAITED_STREAMS || !accepted) && wh_now_ns() < deadline) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		struct wh_event ev[64];
		int n = wh_client_wait(client, ev, 64, 0);
		ck_assert_int_ge(n, 0);
		rounds++;
		/* a batch names each stream once (wormhole.h: so closing the one in hand is safe) */
		for (int e = 0; e < n; e++)
			for (int f = e + 1; f < n; f++)
				ck_assert(ev[e].stream != ev[f].stream);
		for (int e = 0; e < n; e++) {
			if (!ev[e].stream) {
				client_news++;
				if (!accepted)
					ck_assert_int_eq(wh_accept(client, 0, &accepted), WH_OK);
				continue;
			}
			if (accepted && ev[e].stream == accepted)
				continue; /* a new stream is reported once: it may have news */
			struct waited *x = NULL;
			for (int i = 0; i < WAITED_STREAMS && !x; i++)
				if (w[i].s == ev[e].stream)
					x = &w[i];
			ck_assert_ptr_nonnull(x); /* only streams of this client are reported */
			if (!x->done && waited_step(x))
				done++;
		}
	}
	ck_assert_uint_eq(done, WAITED_STREAMS);
	ck_assert_ptr_nonnull(accepted);
	ck_assert_uint_ge(client_news, 1);
	for (int i = 0; i < WAITED_STREAMS; i++) {
		ck_assert_msg(!w[i].bad, "stream %d: %zu bytes back", i, w[i].received);
		wh_close(w[i].s);
	}
	/* closed streams leave the set: nothing is reported for them */
	struct wh_event ev[8];
	int n = wh_client_wait(client, ev, 8, 100);
	for (int e = 0; e < n; e++)
		ck_assert(ev[e].stream == NULL || ev[e].stream == accepted);
	wh_close(accepted);
	wh_close(to_client);
	wh_client_detach(other);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

struct fd_goal {
	const struct process *broker;
	int count;
};

static bool fds_exactly(void *arg)
{
	struct fd_goal *g = arg;
	return process_fd_count(g->broker) == g->count;
}

/* back to the count before, or below it (a pool connection may have idled out) */
static bool fds_back(void *arg)
{
	struct fd_goal *g = arg;
	int count = process_fd_count(g->broker);
	return count >= 0 && count <= g->count;
}

static int own_fd_count(void)
{
	DIR *dir = opendir("/proc/self/fd");
	int count = 0;
	for (struct dirent *e; dir && (e = readdir(dir));)
		count += e->d_name[0] != '.';
	if (dir)
		closedir(dir);
	return count - 1; /* the directory's own descriptor */
}

/* A stream to a peer broker costs no descriptor in the app or the broker: news travels
 * through the client's bitmap and one eventfd, a blocked thread sleeps on the ring. Only a
 * stream whose descriptor the app asks for (wh_stream_fd) costs one on each side, until it
 * closes. Every stream carries bytes both ways, checked. */
#define FDLESS_STREAMS 400

/* Blocking calls only (they sleep on the rings' wait words): size bytes out and back. */
static void blocking_echo_check(wh_stream *s, size_t size, unsigned seed)
{
	unsigned char out[4096], in[4096];
	ck_assert_uint_le(size, sizeof out);
	for (size_t i = 0; i < size; i++)
		out[i] = harness_pattern(seed, i);
	ck_assert_int_eq(wh_set_read_deadline(s, wh_now_ns() + 10000000000ll), WH_OK);
	ck_assert_int_eq(wh_write(s, out, size), (long)size);
	app_read_exactly(s, in, size);
	ck_assert_mem_eq(in, out, size);
	ck_assert_int_eq(wh_set_read_deadline(s, 0), WH_OK);
}

START_TEST(test_streams_cost_no_descriptors)
{
	struct broker_pair p;
	const char *b_args[] = { "--ring-size", "4096", "--pool-max", "1", NULL };
	broker_pair_start(&p, NULL, b_args);
	wh_client *client = app_attach(&p.b);
	wh_stream *first;
	ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &first), WH_OK); /* the pool is up */
	blocking_echo_check(first, 1000, 1);
	int app_before = own_fd_count(), a_before = process_fd_count(&p.a), b_before = process_fd_count(&p.b);
	static wh_stream *streams[FDLESS_STREAMS];
	for (int i = 0; i < FDLESS_STREAMS; i++)
		ck_assert_int_eq(wh_open(client, "a", "echo", 10000, &streams[i]), WH_OK);
	for (int i = 0; i < FDLESS_STREAMS; i++)
		blocking_echo_check(streams[i], 3000, 100u + (unsigned)i);
	int app_open = own_fd_count(), a_open = process_fd_count(&p.a), b_open = process_fd_count(&p.b);
	fprintf(stderr, "%d streams: app fds %d -> %d, broker B %d -> %d, broker A %d -> %d\n", FDLESS_STREAMS,
		app_before, app_open, b_before, b_open, a_before, a_open);
	ck_assert_int_le(app_open, app_before);
	ck_assert_int_le(b_open, b_before); /* one pooled connection carries them all */
	ck_assert_int_le(a_open, a_before);
	/* a descriptor of its own for ten of them: one each side, made once */
	for (int i = 0; i < 10; i++) {
		int fd = wh_stream_fd(streams[i]);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(wh_stream_fd(streams[i]), fd);
	}
	ck_assert_int_eq(own_fd_count(), app_open + 10);
	struct fd_goal b_goal = { &p.b, b_open + 10 };
	ck_assert_msg(poll_until(fds_exactly, &b_goal, 5), "broker B holds %d descriptors, expected %d",
		      process_fd_count(&p.b), b_open + 10);
	/* and it works: readable once the echo of a write is back, then drained */
	ck_assert_int_eq(wh_set_nonblocking(streams[0], true), WH_OK);
	char buf[64];
	while (wh_read(streams[0], buf, sizeof buf) > 0)
		;
	ck_assert_int_eq(wh_write(streams[0], "ping", 4), 4);
	struct pollfd pfd = { wh_stream_fd(streams[0]), POLLIN, 0 };
	ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
	long got = 0;
	int64_t deadline = wh_now_ns() + 5000000000ll;
	while (got < 4 && wh_now_ns() < deadline) {
		long n = wh_read(streams[0], buf + got, sizeof buf - (size_t)got);
		if (n > 0)
			got += n;
		else
			poll(&pfd, 1, 100);
	}
	ck_assert_int_eq(got, 4);
	ck_assert_mem_eq(buf, "ping", 4);
	for (int i = 0; i < FDLESS_STREAMS; i++)
		wh_close(streams[i]);
	wh_close(first);
	ck_assert_int_le(own_fd_count(), app_before);
	struct fd_goal b_back = { &p.b, b_before };
	ck_assert_msg(poll_until(fds_back, &b_back, 5), "broker B holds %d descriptors, before %d",
		      process_fd_count(&p.b), b_before);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

START_TEST(test_per_app_limits)
{
	/* Broker A: 64 KiB rings, an app may hold two and a half segments, or 3 streams. */
	struct broker_pair p;
	const uint64_t segment = 4096 + 2 * 65536;
	char memory[32];
	snprintf(memory, sizeof memory, "%llu", (unsigned long long)(segment * 5 / 2));
	const char *limits[] = { "--ring-size", "65536", "--app-max-ring-memory", memory,
				 "--app-max-streams", "3", NULL };
	ck_assert(broker_spawn(&p.a, limits));
	char peer[64];
	snprintf(peer, sizeof peer, "a=127.0.0.1:%u", p.a.port);
	const char *args[] = { "--peer", peer, NULL };
	ck_assert(broker_spawn(&p.b, args));

	/* opening: memory binds before the stream count */
	wh_client *client = app_attach(&p.a);
	ck_assert_uint_eq(app_stats(client).ring_bytes_limit, segment * 5 / 2);
	wh_client *listener = app_attach(&p.a);
	ck_assert_int_eq(wh_listen(listener, "svc"), WH_OK);
	wh_stream *one, *two, *three;
	ck_assert_int_eq(wh_open(client, WH_PEER_LOCAL, "svc", 10000, &one), WH_OK);
	ck_assert_int_eq(wh_open(client, WH_PEER_LOCAL, "svc", 10000, &two), WH_OK);
	ck_assert_int_eq(wh_open(client, WH_PEER_LOCAL, "svc", 10000, &three), WH_ELIMIT);
	/* the listener holds two segments too: a third stream to it is refused */
	wh_client *third = app_attach(&p.a);
	ck_assert_int_eq(wh_open(third, WH_PEER_LOCAL, "svc", 10000, &three), WH_ELIMIT);
	/* and so is one from a peer broker: the opener's stream ends with 429 */
	wh_client *remote = app_attach(&p.b);
	wh_stream *from_b;
	ck_assert_int_eq(wh_open(remote, "a", "svc", 10000, &from_b), WH_OK);
	char buf[8];
	ck_assert_int_eq(wh_set_read_deadline(from_b, wh_now_ns() + 5000000000ll), WH_OK);
	ck_assert_int_eq(wh_read(from_b, buf, sizeof buf), WH_ELIMIT);
	uint32_t code;
	wh_stream_error(from_b, &code, NULL);
	ck_assert_uint_eq(code, 429);
	wh_close(from_b);
	/* room again once a stream is closed */
	wh_close(one);
	struct app_stats_goal goal = { client, 1, segment, 0 };
	wh_stream *accepted;
	while (wh_accept(listener, 0, &accepted) == WH_OK)
		wh_close(accepted);
	goal.broker_streams = 2; /* two and the listener's end of two */
	ck_assert(poll_until(app_stats_reached, &goal, 5));
	ck_assert_int_eq(wh_open(client, WH_PEER_LOCAL, "svc", 10000, &three), WH_OK);
	wh_close(two);
	wh_close(three);
	wh_client_detach(remote);
	wh_client_detach(third);
	wh_client_detach(listener);
	wh_client_detach(client);
	broker_pair_stop(&p);
}
END_TEST

START_TEST(test_socket_owner_and_mode)
{
	struct process broker;
	const char *args[] = { "--socket-owner", "65534:65533", "--socket-mode", "0620", NULL };
	ck_assert(broker_spawn(&broker, args));
	struct stat st;
	ck_assert_int_eq(stat(broker.socket_path, &st), 0);
	ck_assert_uint_eq(st.st_uid, 65534);
	ck_assert_uint_eq(st.st_gid, 65533);
	ck_assert_uint_eq(st.st_mode & 0777, 0620);
	ck_assert(S_ISSOCK(st.st_mode));
	wh_client *client = app_attach(&broker); /* root may attach whatever the bits say */
	wh_client_detach(client);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

static Suite *apps_api_suite(void)
{
	Suite *suite = suite_create("apps_api");
	TCase *tc = tcase_create("apps");
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_attach_errors_say_what_happened);
	tcase_add_test(tc, test_open_to_unreachable_peer_says_why);
	tcase_add_test(tc, test_version_macros);
	tcase_add_test(tc, test_async_opens_from_an_event_loop);
	tcase_add_test(tc, test_kept_answers_are_news);
	tcase_add_test(tc, test_many_streams_one_descriptor);
	tcase_add_test(tc, test_streams_cost_no_descriptors);
	tcase_add_test(tc, test_per_app_limits);
	tcase_add_test(tc, test_socket_owner_and_mode);
	suite_add_tcase(suite, tc);
	return suite;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	SRunner *runner = srunner_create(apps_api_suite());
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
