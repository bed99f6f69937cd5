/* metrics-listen: GET /metrics over HTTP for a Prometheus scraper, and nothing else. */
#ifndef WORMHOLE_BROKER_METRICS_HTTP_H
#define WORMHOLE_BROKER_METRICS_HTTP_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

/*
 * The smallest HTTP/1.x server a scraper needs: one request per connection (the answer says
 * Connection: close), a request line and headers of at most 8 KiB that must arrive whole within
 * 2 s, then GET /metrics is answered 200 with the text render() makes, another path 404,
 * another method 405, anything else 400; the answer must be taken within 5 s. It runs on the
 * broker's event loop, so its cost is bounded: a rendered body is reused for every scrape within
 * 1 s of its rendering (four scrapers in a loop cost one render a second, not one each), and a
 * request that is already there when its connection is accepted is answered at once. At most 8
 * connections at once; when all are taken, a new one displaces the oldest that has not sent its
 * whole request yet (else the oldest still taking its answer): a slowloris that opens and
 * reopens cannot keep a scraper out. Nothing a client sends reaches the rest of the broker.
 */
struct metrics_http;

/* What status shows of it (docs/CONTROL.md). */
struct metrics_http_stats {
	uint64_t scrapes;   /* GET or HEAD /metrics answered */
	uint64_t renders;   /* bodies rendered: at most about one a second whatever the scrapes */
	uint64_t dropped;   /* connections closed unanswered: displaced, or past a deadline */
};

/* render: the body, malloc'd (freed here), and its length; NULL answers 500. */
typedef char *(*metrics_render)(void *ctx, size_t *length);

/* Listens on host:port (port "0": any). NULL with a log line on failure. */
struct metrics_http *metrics_http_start(struct ev_loop *loop, const char *host, const char *port,
					const struct log_sink *log, metrics_render render, void *ctx);
/* The bound address, "HOST:PORT". */
const char *metrics_http_address(const struct metrics_http *server);
/* Zeros when server is NULL. */
void metrics_http_get_stats(const struct metrics_http *server, struct metrics_http_stats *stats);
void metrics_http_stop(struct metrics_http *server);

#endif
