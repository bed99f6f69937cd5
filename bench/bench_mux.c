/* Benchmark of the mux over loopback TCP against raw TCP, measured in the same run.
 *
 * Every figure has a baseline taken here and now, between the same two kinds of process:
 *   bulk      one stream, this process -> mux -> TCP -> wormhole-broker (discard service),
 *             vs raw TCP from this process to a child that reads and discards;
 *   rtt       64-byte ping-pong on one stream through the broker's echo service,
 *             vs 64-byte ping-pong over raw TCP with a child that echoes;
 *   rtt_bulk  the same ping-pong while a bulk stream saturates the same connection,
 *             vs raw ping-pong while a bulk raw TCP flow runs on another connection;
 *             and the bulk stream's speed beside the pings against its speed without them.
 * Prints a table and writes one JSON object per figure to the path given with --json.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "conn.h"

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
	static char buffer[BENCH_CHUNK];
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

static struct conn *mux_connect(struct ev_loop *loop, unsigned port, const struct conn_shared *shared)
{
	struct mux_config config;
	mux_config_default(&config);
	config.keepalive_interval = 0;
	struct endpoint ep = { .port = port };
	return conn_new(loop, raw_connect(&ep, true), true, &config, shared, NULL, NULL);
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

/* Bytes a second the running bulk stream (bulk_forever) moves for `seconds`, no pings. */
static double bulk_alone(struct bench *b, double seconds)
{
	size_t before = b->bulk_sent;
	double start = now_s();
	while (now_s() - start < seconds)
		ev_run(b->loop, EVRUN_ONCE);
	return (double)(b->bulk_sent - before) / (now_s() - start);
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

int main(int argc, char **argv)
{
	const char *broker_path = argc > 1 ? argv[1] : "broker/wormhole-broker";
	const char *json_path = argc > 2 ? argv[2] : "bench-mux.json";
	size_t bulk_bytes = (size_t)(argc > 3 ? atof(argv[3]) : 1024) << 20;
	size_t pings = 20000;
	signal(SIGPIPE, SIG_IGN);

	char dir[] = "/tmp/wh-bench.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char port_file[64];
	snprintf(port_file, sizeof port_file, "%s/port", dir);
	const char *args[] = { "--listen", "127.0.0.1:0", "--port-file", port_file, "--keepalive", "0",
			       "--socket", "none", NULL };
	unsigned broker_port;
	pid_t broker = spawn_broker(broker_path, args, port_file, &broker_port);
	if (broker < 0)
		return 1;
	struct endpoint sink_ep = { 0 }, echo_ep = { 0 };
	pid_t sink = raw_server('d', &sink_ep), echo = raw_server('e', &echo_ep);

	struct bench b = { .loop = ev_loop_new(EVFLAG_AUTO) };
	struct conn_shared shared; /* read like a broker reads */
	if (conn_shared_init(&shared, NULL) != WH_OK)
		return 1;
	b.conn = mux_connect(b.loop, broker_port, &shared);
	double *samples = calloc(pings, sizeof *samples);
	struct figure figures[6];
	int n = 0;

	printf("mux alone (this process -> TCP -> wormhole-broker): bulk %zu MiB, %zu pings\n",
	       bulk_bytes >> 20, pings);
	double raw_rounds[BENCH_ROUNDS_MAX], mux_rounds[BENCH_ROUNDS_MAX];
	int rounds = bench_rounds();
	for (int r = 0; r < rounds; r++) { /* alternating, medians: see bench_apps.c */
		raw_rounds[r] = raw_bulk(&sink_ep, bulk_bytes);
		mux_rounds[r] = mux_bulk(&b, bulk_bytes);
	}
	double raw = percentile(raw_rounds, (size_t)rounds, 0.5);
	double muxed = percentile(mux_rounds, (size_t)rounds, 0.5);
	figures[n++] = (struct figure){ "mux_bulk_throughput", "MB/s", "raw TCP, two processes, 1 MiB writes and reads",
					muxed / 1e6, raw / 1e6, NULL, false };

	raw_pingpong(&echo_ep, samples, pings);
	double raw_p50 = percentile(samples, pings, 0.50) * 1e6, raw_p99 = percentile(samples, pings, 0.99) * 1e6;
	mux_pingpong(&b, samples, pings);
	double mux_p50 = percentile(samples, pings, 0.50) * 1e6, mux_p99 = percentile(samples, pings, 0.99) * 1e6;
	figures[n++] = (struct figure){ "mux_rtt_64B_p50", "us", "raw TCP ping-pong", mux_p50, raw_p50, NULL, false };
	figures[n++] = (struct figure){ "mux_rtt_64B_p99", "us", "raw TCP ping-pong", mux_p99, raw_p99, NULL, false };

	/* interactive under bulk: the bulk stream shares the connection with the pings */
	size_t busy_pings = pings / 4;
	pid_t background = raw_bulk_background(&sink_ep);
	raw_pingpong(&echo_ep, samples, busy_pings);
	kill(background, SIGKILL);
	waitpid(background, NULL, 0);
	double raw_busy = percentile(samples, busy_pings, 0.50) * 1e6;
	double raw_busy99 = percentile(samples, busy_pings, 0.99) * 1e6;
	b.bulk_forever = true;
	b.bulk_done = false;
	mux_open_stream(conn_mux(b.conn), "discard", &b.bulk);
	mux_stream_set_handler(b.bulk, bulk_handler, &b);
	bulk_handler(b.bulk, MUX_STREAM_WRITABLE, &b);
	double alone_before = bulk_alone(&b, 0.3);
	size_t sent_before = b.bulk_sent;
	double start = now_s();
	mux_pingpong(&b, samples, busy_pings);
	double seconds = now_s() - start;
	double beside = (double)(b.bulk_sent - sent_before) / seconds;
	double alone = (alone_before + bulk_alone(&b, seconds > 0.3 ? seconds : 0.3)) / 2;
	double mux_busy = percentile(samples, busy_pings, 0.50) * 1e6;
	double mux_busy99 = percentile(samples, busy_pings, 0.99) * 1e6;
	figures[n++] = (struct figure){ "mux_rtt_under_bulk_p50", "us", "raw TCP ping-pong beside a raw bulk flow",
					mux_busy, raw_busy, NULL, false };
	figures[n++] = (struct figure){ "mux_rtt_under_bulk_p99", "us", "raw TCP ping-pong beside a raw bulk flow",
					mux_busy99, raw_busy99, NULL, false };
	figures[n++] = (struct figure){ "mux_bulk_beside_ping", "MB/s", "the same bulk stream without the pings",
					beside / 1e6, alone / 1e6, "ratio: the bulk stream's share kept", false };
	report("mux alone", figures, n, json_path);

	conn_free(b.conn);
	conn_shared_release(&shared);
	ev_loop_destroy(b.loop);
	kill(broker, SIGTERM);
	kill(sink, SIGTERM);
	kill(echo, SIGTERM);
	waitpid(broker, NULL, 0);
	waitpid(sink, NULL, 0);
	waitpid(echo, NULL, 0);
	remove_scratch_dir(dir);
	free(samples);
	return 0;
}
