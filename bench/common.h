/* What the benchmarks share: clocks, percentiles, raw-socket baselines, helper processes,
 * the report. Baselines run between two processes, as the measured paths do. */
#ifndef WORMHOLE_BENCH_COMMON_H
#define WORMHOLE_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define BENCH_CHUNK (64 * 1024)
/* What a bulk baseline writes and reads per system call: the size the wormhole app writes
 * (1 MiB) and the broker reads, so the baseline does the same work per call as we do (64 KiB
 * calls measured 1.2-1.5x slower than 1 MiB calls on loopback TCP here). */
#define BENCH_BULK_IO (1024 * 1024)

/* Where a raw baseline server listens: loopback TCP (path empty) or a Unix socket. */
struct endpoint {
	unsigned port;
	char path[108]; /* a Unix socket, or */
	char host[16];  /* an IPv4 address; empty: 127.0.0.1 */
};

double now_s(void);
/* CPU seconds the whole machine has been busy (all CPUs: user, system, interrupts; not idle
 * or iowait) since boot, from /proc/stat; -1 if it cannot be read. Taken around a transfer
 * on a quiet machine, the difference is what the transfer cost, every process and the
 * kernel's TCP included. */
double machine_busy_seconds(void);
/* Sorts values in place; p in [0, 1]. */
double percentile(double *values, size_t n, double p);
/* Rounds of an alternating figure (bulk, ping-pong): BENCH_ROUNDS, default 3, at most
 * BENCH_ROUNDS_MAX. */
#define BENCH_ROUNDS_MAX 15
int bench_rounds(void);
/* True unless BENCH_ONLY names another group of figures ("bulk", "rtt"). */
bool bench_selected(const char *group);
/* Raises the descriptor limit as far as allowed (to 1 Mi as root). */
void raise_fd_limit(void);

/* A child process that accepts connections and per connection echoes ('e') or reads and
 * discards ('d') in a process of its own, reading BENCH_BULK_IO per call; or ('a') accepts
 * in one loop, reads the connection's first byte and closes it, forking nothing (the
 * open-rate baseline: a server that forks per connection measures fork, not TCP). ep.path
 * set: a Unix stream socket there. */
pid_t raw_server(char mode, struct endpoint *ep);
int raw_connect(const struct endpoint *ep, bool nonblocking);
/* A listening socket at ep (its port filled in for TCP); exits on failure. */
int listen_endpoint(struct endpoint *ep);
/* Writes total bytes io_size per call, half-closes, waits for EOF (the reader has
 * everything); bytes/s. raw_bulk writes BENCH_BULK_IO per call. */
double raw_bulk_sized(const struct endpoint *ep, size_t total, size_t io_size);
double raw_bulk(const struct endpoint *ep, size_t total);
/* n round trips of 64 bytes; samples in seconds. */
void raw_pingpong(const struct endpoint *ep, double *samples, size_t n);
/* A child writing into ep until killed. */
pid_t raw_bulk_background(const struct endpoint *ep);
/* Connections per second to ep (each accepted by the server, then closed). */
double raw_connect_rate(const struct endpoint *ep, int n);

/* Starts wormhole-broker with arguments after its path; waits for the port file it is
 * given with "--port-file" (the caller includes it). Returns the pid or -1. */
pid_t spawn_broker(const char *broker_path, const char *const *args, const char *port_file,
		   unsigned *port);
/* Waits (bounded) until path exists. */
bool wait_for_path(const char *path, double seconds);
/* Waits for a port file (written whole by rename) and reads the port; 0 on failure. */
unsigned wait_for_port(const char *path, double seconds);
/* VmRSS of a process in KiB, or -1. */
long rss_kib(pid_t pid);
/* Descriptors a process holds now, or -1. */
int fd_count(pid_t pid);
/* Removes a scratch directory and everything in it. */
void remove_scratch_dir(const char *dir);

struct figure {
	const char *name, *unit, *baseline;
	double value, baseline_value;
	const char *note; /* what limits it, or how it was taken; may be NULL */
	/* The baseline is a constant (an allotment, one descriptor per TCP connection), not a
	 * figure measured in this run: the table and the JSON say so. */
	bool constant_baseline;
};
/* Prints the table and writes the JSON array (one object per figure) to json_path. */
void report(const char *title, const struct figure *figures, int n, const char *json_path);

#endif
