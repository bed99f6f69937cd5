/* The TLS baseline: two plain OpenSSL processes over loopback TCP, TLS 1.3 with both sides
 * authenticated as the brokers are, moving the bytes the wormhole figures move. */
#ifndef WORMHOLE_BENCH_TLS_BASELINE_H
#define WORMHOLE_BENCH_TLS_BASELINE_H

#include "common.h"

/* Certificate, key and CA files for one side. */
struct tls_files {
	char cert[512], key[512], ca[512];
};

/* A child process that accepts TLS connections and per connection echoes ('e') or reads and
 * discards ('d'), as raw_server does in the clear. */
pid_t tls_raw_server(char mode, const struct tls_files *files, struct endpoint *ep);
/* Handshakes (untimed), then writes total bytes in BENCH_BULK_IO calls, sends close_notify,
 * waits for the server's; bytes/s of the transfer alone. */
double tls_raw_bulk(const struct endpoint *ep, const struct tls_files *files, size_t total);
/* n round trips of 64 bytes; samples in seconds. */
void tls_raw_pingpong(const struct endpoint *ep, const struct tls_files *files, double *samples,
		      size_t n);

#endif
