/* Benchmark of the mux over loopback TCP against raw TCP, measured in the same run.
 *
 * Every figure has a baseline taken here and now, between the same two kinds of process:
 *   bulk      one stream, this process -> mux -> TCP -> wormhole-broker (discard service),
 *             vs raw TCP from this process to a child that reads and discards;
 *   rtt       64-byte ping-pong on one stream through the broker's echo service,
 *             vs 64-byte ping-pong over raw TCP with a child that echoes;
 *   rtt_bulk  the same ping-pong while a bulk stream saturates the same connection,
 *             vs raw ping-pong while a bulk raw TCP flow runs on another connection.
 * Prints a table and writes one JSON object per figure to the path given with --json.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"

#define CHUNK (64 * 1024)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double percentile(double *values, size_t n, double p)
{
	qsort(values, n, sizeof *values, cmp_double);
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return values[i];
}

/* ---- raw TCP baselines ------------------------------------------------------------- */

static int listen_loopback(unsigned *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof addr;
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, 8) ||
	    getsockname(fd, (struct sockaddr *)&addr, &len)) {
		perror("listen");
		exit(1);
	}
	*port = ntohs(addr.sin_port);
	return fd;
}

static int connect_loopback(unsigned port, bool nonblocking)
{
	int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
		perror("connect");
		exit(1);
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/* A child that accepts connections and, per connection, echoes (mode 'e') or discards ('d'),
 * each connection in its own process so that bulk and ping-pong do not share a thread. */
static pid_t raw_server(char mode, unsigned *port)
{
	int listener = listen_loopback(port);
	pid_t pid = fork();
	if (pid != 0) {
		close(listener);
		return pid;
	}
	for (;;) {
		int fd = accept(listener, NULL, NULL);
		if (fd < 0)
			_exit(0);
		if (fork() == 0) {
			static char buffer[CHUNK];
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			ssize_t n;
			while ((n = read(fd, buffer, sizeof buffer)) > 0)
				if (mode == 'e' && write(fd, buffer, (size_t)n) != n)
					break;
			_exit(0);
		}
		close(fd);
	}
}

static double raw_bulk(unsigned port, size_t total)
{
	int fd = connect_loopback(port, false);
	static char buffer[CHUNK];
	memset(buffer, 'b', sizeof buffer);
	double start = now_s();
	for (size_t sent = 0; sent < total;) {
		ssize_t n = write(fd, buffer, sizeof buffer);
		if (n <= 0)
			exit(1);
		sent += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	while (read(fd, buffer, sizeof buffer) > 0) /* EOF: the reader has everything */
		;
	double seconds = now_s() - start;
	close(fd);
	return (double)total / seconds;
}

static void raw_pingpong(unsigned port, double *samples, size_t n)
{
	int fd = connect_loopback(port, false);
	char message[64] = "ping";
	for (size_t i = 0; i < n; i++) {
		double start = now_s();
		if (write(fd, message, sizeof message) != sizeof message)
			exit(1);
		size_t got = 0;
		while (got < sizeof message) {
			ssize_t r = read(fd, message + got, sizeof message - got);
			if (r <= 0)
				exit(1);
			got += (size_t)r;
		}
		samples[i] = now_s() - start;
	}
	close(fd);
}

/* A bulk raw flow in a child process, running until killed. */
static pid_t raw_bulk_background(unsigned port)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = connect_loopback(port, false);
		static char buffer[CHUNK];
		while (write(fd, buffer, sizeof buffer) > 0)
			;
		_exit(0);
	}
	return pid;
}

/* ---- the mux side ------------------------------------------------------------------ */

struct bench {
	struct ev_loop *loop;
	struct conn *conn;
	/* bulk */
	struct mux_stream *bulk;
	size_t bulk_total, bulk_sent;
	bool bulk_forever, bulk_done;
	/* ping-pong */
	struct mux_stream *echo;
	size_t pings, pings_done, got;
	double sent_at, *samples;
	bool stop;
};

static void bulk_handler(struct mux_stream *s, enum mux_stream_event event, void *user)
{
	struct bench *b = user;
	static char buffer[CHUNK];
	if (event == MUX_STREAM_EOF || event == MUX_STREAM_ERROR) {
		b->bulk_done = true;
		ev_break(b->loop, EVBREAK_ONE);
		return;
	}
	while (b->bulk_forever || b->bulk_sent < b->bulk_total) {
		size_t room = mux_stream_write_room(s);
		if (room == 0)
			return;
		size_t n = room < sizeof buffer ? room : sizeof buffer;
		if (!b->bulk_forever && n > b->bulk_total - b->bulk_sent)
			n = b->bulk_total - b->bulk_sent;
		long w = mux_stream_write(s, buffer, n);
		if (w <= 0)
			return;
		b->bulk_sent += (size_t)w;
	}
	if (!b->bulk_forever)
		mux_stream_close_write(s); /* repeated calls return WH_ESTREAM_CLOSED, harmlessly */
}

static void send_ping(struct bench *b)
{
	char message[64] = "ping";
	b->got = 0;
	b->sent_at = now_s();
	mux_stream_write(b->echo, message, sizeof message);
}

static void echo_handler(struct mux_stream *s, enum mux_stream_event event, void *user)
{
	struct bench *b = user;
	char buffer[256];
	if (event != MUX_STREAM_READABLE)
		return;
	long n;
	while ((n = mux_stream_read(s, buffer, sizeof buffer)) > 0) {
		b->got += (size_t)n;
		if (b->got < 64)
			continue;
		b->samples[b->pings_done++] = now_s() - b->sent_at;
		if (b->pings_done == b->pings) {
			ev_break(b->loop, EVBREAK_ONE);
			return;
		}
		send_ping(b);
	}
}

static struct conn *mux_connect(struct ev_loop *loop, unsigned port)
{
	struct mux_config config;
	mux_config_default(&config);
	config.keepalive_interval = 0;
	return conn_new(loop, connect_loopback(port, true), true, &config, NULL, NULL, NULL);
}

static double mux_bulk(struct bench *b, size_t total)
{
	b->bulk_total = total;
	b->bulk_sent = 0;
	b->bulk_done = false;
	b->bulk_forever = false;
	mux_open_stream(conn_mux(b->conn), "discard", &b->bulk);
	mux_stream_set_handler(b->bulk, bulk_handler, b);
	double start = now_s();
	bulk_handler(b->bulk, MUX_STREAM_WRITABLE, b);
	while (!b->bulk_done)
		ev_run(b->loop, EVRUN_ONCE);
	double seconds = now_s() - start;
	mux_stream_release(b->bulk);
	return (double)total / seconds;
}

static void mux_pingpong(struct bench *b, double *samples, size_t n)
{
	b->samples = samples;
	b->pings = n;
	b->pings_done = 0;
	mux_open_stream(conn_mux(b->conn), "echo", &b->echo);
	mux_stream_set_handler(b->echo, echo_handler, b);
	send_ping(b);
	while (b->pings_done < n)
		ev_run(b->loop, EVRUN_ONCE);
	mux_stream_release(b->echo);
}

/* ---- report ------------------------------------------------------------------------ */

struct figure {
	const char *name, *unit, *baseline;
	double value, baseline_value;
};

static void report(const struct figure *f, int n, const char *json_path)
{
	printf("\n%-28s %14s %14s %8s  %s\n", "figure", "wormhole", "baseline", "ratio", "baseline is");
	for (int i = 0; i < n; i++)
		printf("%-28s %14.1f %14.1f %8.2f  %s (%s)\n", f[i].name, f[i].value, f[i].baseline_value,
		       f[i].value / f[i].baseline_value, f[i].baseline, f[i].unit);
	FILE *out = json_path ? fopen(json_path, "w") : NULL;
	if (!out)
		return;
	fprintf(out, "[\n");
	for (int i = 0; i < n; i++)
		fprintf(out,
			"  {\"name\": \"%s\", \"value\": %.3f, \"unit\": \"%s\", \"baseline\": \"%s\", "
			"\"baseline_value\": %.3f, \"ratio\": %.4f}%s\n",
			f[i].name, f[i].value, f[i].unit, f[i].baseline, f[i].baseline_value,
			f[i].value / f[i].baseline_value, i + 1 < n ? "," : "");
	fprintf(out, "]\n");
	fclose(out);
	printf("\nJSON written to %s\n", json_path);
}

int main(int argc, char **argv)
{
	const char *broker_path = argc > 1 ? argv[1] : "broker/wormhole-broker";
	const char *json_path = argc > 2 ? argv[2] : "bench-mux.json";
	size_t bulk_bytes = (size_t)(argc > 3 ? atof(argv[3]) : 1024) << 20;
	size_t pings = 20000;
	signal(SIGPIPE, SIG_IGN);

	/* the broker under test, on an ephemeral port it reports through a file */
	char dir[] = "/tmp/wh-bench.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char port_file[64];
	snprintf(port_file, sizeof port_file, "%s/port", dir);
	pid_t broker = fork();
	if (broker == 0) {
		execl(broker_path, broker_path, "--listen", "127.0.0.1:0", "--port-file", port_file,
		      "--keepalive", "0", "--socket", "none", (char *)NULL);
		_exit(127);
	}
	unsigned broker_port = 0;
	for (int i = 0; i < 1000 && !broker_port; i++) {
		FILE *f = fopen(port_file, "r");
		if (f) {
			if (fscanf(f, "%u", &broker_port) != 1)
				broker_port = 0;
			fclose(f);
		}
		if (!broker_port)
			usleep(10000);
	}
	if (!broker_port) {
		fprintf(stderr, "bench: the broker did not start\n");
		return 1;
	}
	unsigned sink_port, echo_port;
	pid_t sink = raw_server('d', &sink_port), echo = raw_server('e', &echo_port);

	struct bench b = { .loop = ev_loop_new(EVFLAG_AUTO) };
	b.conn = mux_connect(b.loop, broker_port);
	double *samples = calloc(pings, sizeof *samples);
	struct figure figures[5];
	int n = 0;

	printf("bulk: %zu MiB one stream; ping-pong: %zu x 64 B\n", bulk_bytes >> 20, pings);
	double raw = raw_bulk(sink_port, bulk_bytes);
	double muxed = mux_bulk(&b, bulk_bytes);
	figures[n++] = (struct figure){ "bulk_throughput", "MB/s", "raw TCP, two processes",
					muxed / 1e6, raw / 1e6 };

	raw_pingpong(echo_port, samples, pings);
	double raw_p50 = percentile(samples, pings, 0.50) * 1e6, raw_p99 = percentile(samples, pings, 0.99) * 1e6;
	mux_pingpong(&b, samples, pings);
	double mux_p50 = percentile(samples, pings, 0.50) * 1e6, mux_p99 = percentile(samples, pings, 0.99) * 1e6;
	figures[n++] = (struct figure){ "rtt_64B_p50", "us", "raw TCP ping-pong", mux_p50, raw_p50 };
	figures[n++] = (struct figure){ "rtt_64B_p99", "us", "raw TCP ping-pong", mux_p99, raw_p99 };

	/* interactive under bulk: the bulk stream shares the connection with the pings */
	size_t busy_pings = pings / 4;
	pid_t background = raw_bulk_background(sink_port);
	raw_pingpong(echo_port, samples, busy_pings);
	kill(background, SIGKILL);
	waitpid(background, NULL, 0);
	double raw_busy = percentile(samples, busy_pings, 0.50) * 1e6;
	double raw_busy99 = percentile(samples, busy_pings, 0.99) * 1e6;
	b.bulk_forever = true;
	b.bulk_done = false;
	mux_open_stream(conn_mux(b.conn), "discard", &b.bulk);
	mux_stream_set_handler(b.bulk, bulk_handler, &b);
	bulk_handler(b.bulk, MUX_STREAM_WRITABLE, &b);
	mux_pingpong(&b, samples, busy_pings);
	double mux_busy = percentile(samples, busy_pings, 0.50) * 1e6;
	double mux_busy99 = percentile(samples, busy_pings, 0.99) * 1e6;
	figures[n++] = (struct figure){ "rtt_64B_under_bulk_p50", "us", "raw TCP ping-pong beside a raw bulk flow",
					mux_busy, raw_busy };
	figures[n++] = (struct figure){ "rtt_64B_under_bulk_p99", "us", "raw TCP ping-pong beside a raw bulk flow",
					mux_busy99, raw_busy99 };
	report(figures, n, json_path);

	conn_free(b.conn);
	ev_loop_destroy(b.loop);
	kill(broker, SIGTERM);
	kill(sink, SIGTERM);
	kill(echo, SIGTERM);
	waitpid(broker, NULL, 0);
	waitpid(sink, NULL, 0);
	waitpid(echo, NULL, 0);
	remove(port_file);
	rmdir(dir);
	free(samples);
	return 0;
}
