/* metrics-listen: GET /metrics over HTTP for a Prometheus scraper, and nothing else. */
#ifndef WORMHOLE_BROKER_METRICS_HTTP_H
#define WORMHOLE_BROKER_METRICS_HTTP_H

#include <ev.h>
#include <stddef.h>

#include "log.h"

/*
 * The smallest HTTP/1.x server a scraper needs: one request per connection (the answer says
 * Connection: close), a request line and headers of at most 8 KiB read within 5 s, then
 * GET /metrics is answered 200 with the text render() makes, another path 404, another method
 * 405, anything else 400. At most 8 connections at once; more are closed at accept. Nothing a
 * client sends reaches the rest of the broker.
 */
struct metrics_http;

/* render: the body, malloc'd (freed here), and its length; NULL answers 500. */
typedef char *(*metrics_render)(void *ctx, size_t *length);

/* Listens on host:port (port "0": any). NULL with a log line on failure. */
struct metrics_http *metrics_http_start(struct ev_loop *loop, const char *host, const char *port,
					const struct log_sink *log, metrics_render render, void *ctx);
/* The bound address, "HOST:PORT". */
const char *metrics_http_address(const struct metrics_http *server);
void metrics_http_stop(struct metrics_http *server);

#endif
