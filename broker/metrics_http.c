/* metrics-listen (metrics_http.h). */
#include "config.h"

#include "metrics_http.h"

#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h" /* sockaddr_format */
#include "listener_rest.h"

#define HTTP_CLIENTS_MAX 8
#define HTTP_REQUEST_MAX 8192
#define HTTP_REQUEST_TIMEOUT 2.0 /* s for the request head to arrive whole */
#define HTTP_ANSWER_TIMEOUT 5.0  /* s for the answer to be taken */
#define HTTP_CACHE_TTL 1.0       /* s a rendered body answers scrapes for */

struct http_client {
	struct metrics_http *server;
	int fd;
	ev_io io;
	ev_timer deadline;
	double accepted_at;
	bool answering;          /* the request arrived whole: the answer is being sent */
	char request[HTTP_REQUEST_MAX];
	size_t request_length;
	char *out;
	size_t out_length, out_sent;
	LIST_ENTRY(http_client) link;
};

struct metrics_http {
	struct ev_loop *loop;
	const struct log_sink *log;
	metrics_render render;
	void *ctx;
	int fd;
	ev_io acceptor;
	ev_timer accept_pause; /* out of descriptors: the listener rests, or it spins the loop */
	uint64_t accept_pauses;
	char address[300];
	unsigned client_count;
	LIST_HEAD(, http_client) clients;
	char *body;              /* the last rendering, reused for HTTP_CACHE_TTL */
	size_t body_length;
	double body_at;
	struct metrics_http_stats stats;
};

static void client_free(struct http_client *c)
{
	ev_io_stop(c->server->loop, &c->io);
	ev_timer_stop(c->server->loop, &c->deadline);
	close(c->fd);
	free(c->out);
	LIST_REMOVE(c, link);
	c->server->client_count--;
	free(c);
}

/* Sets the whole answer: status line, headers, body (copied). */
static void respond(struct http_client *c, const char *status, const char *type, const char *body,
		    size_t length)
{
	char head[256];
	int n = snprintf(head, sizeof head, "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n", status, type, length);
	c->out = malloc((size_t)n + length);
	if (!c->out) {
		c->out_length = 0;
		return;
	}
	memcpy(c->out, head, (size_t)n);
	memcpy(c->out + n, body, length);
	c->out_length = (size_t)n + length;
	c->out_sent = 0;
}

static void respond_text(struct http_client *c, const char *status, const char *text)
{
	respond(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* The body, rendered at most once per HTTP_CACHE_TTL: a scrape walks every connection of the
 * broker on its event loop, so scrapers in a loop must not each pay for a rendering. */
static const char *rendered_body(struct metrics_http *server, size_t *length)
{
	double now = ev_now(server->loop);
	if (!server->body || now - server->body_at >= HTTP_CACHE_TTL || now < server->body_at) {
		free(server->body);
		server->stats.renders++; /* before: the body's own count includes it */
		double started = ev_time();
		server->body = server->render(server->ctx, &server->body_length);
		server->body_at = now;
		log_write(server->log, LOG_DEBUG, "metrics", "rendered %zu bytes in %.1f ms",
			  server->body ? server->body_length : 0, (ev_time() - started) * 1e3);
	}
	*length = server->body_length;
	return server->body;
}

/* A whole request head arrived: answer it. */
static void handle_request(struct http_client *c)
{
	char method[16], path[256], version[16];
	if (sscanf(c->request, "%15s %255s %15s", method, path, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0) {
		respond_text(c, "400 Bad Request", "not an HTTP/1.x request\n");
		return;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		respond_text(c, "405 Method Not Allowed", "only GET /metrics is served here\n");
		return;
	}
	char *query = strchr(path, '?');
	if (query)
		*query = '\0';
	if (strcmp(path, "/metrics") != 0) {
		respond_text(c, "404 Not Found", "only GET /metrics is served here\n");
		return;
	}
	size_t length = 0;
	const char *text = rendered_body(c->server, &length);
	if (!text) {
		respond_text(c, "500 Internal Server Error", "the broker could not gather its metrics\n");
		return;
	}
	c->server->stats.scrapes++;
	respond(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", text,
		strcmp(method, "HEAD") == 0 ? 0 : length);
}

/* Sends what the socket takes now; the client ends once all is sent, or on an error. */
static void client_send(struct http_client *c)
{
	while (c->out_sent < c->out_length) {
		ssize_t n = send(c->fd, c->out + c->out_sent, c->out_length - c->out_sent, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			break;
		c->out_sent += (size_t)n;
	}
	client_free(c);
}

/* The answer is in c->out: send it, with its own deadline (a reader that never takes it is
 * dropped then). */
static void client_answer(struct http_client *c)
{
	struct ev_loop *loop = c->server->loop;
	if (!c->out) {
		client_free(c);
		return;
	}
	c->answering = true;
	ev_timer_stop(loop, &c->deadline);
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(loop, &c->io);
	ev_timer_set(&c->deadline, HTTP_ANSWER_TIMEOUT, 0);
	ev_timer_start(loop, &c->deadline);
	client_send(c); /* most answers fit the socket's buffer: done before the loop turns */
}

static void client_receive(struct http_client *c)
{
	ssize_t n = recv(c->fd, c->request + c->request_length, sizeof c->request - 1 - c->request_length, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_free(c);
		return;
	}
	c->request_length += (size_t)n;
	c->request[c->request_length] = '\0';
	if (!strstr(c->request, "\r\n\r\n") && !strstr(c->request, "\n\n")) {
		if (c->request_length < sizeof c->request - 1)
			return; /* more to come */
		respond_text(c, "431 Request Header Fields Too Large", "request head over 8 KiB\n");
	} else {
		handle_request(c);
	}
	client_answer(c);
}

static void on_client(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	if (revents & EV_WRITE)
		client_send(w->data);
	else
		client_receive(w->data);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct http_client *c = w->data;
	(void)loop;
	(void)revents;
	c->server->stats.dropped++;
	client_free(c);
}

/* All slots taken: the oldest connection that has not sent its whole request makes room (a
 * scraper sends its request at once, a slowloris never does), else the oldest taking its answer. */
static void make_room(struct metrics_http *server)
{
	struct http_client *victim = NULL, *c;
	LIST_FOREACH(c, &server->clients, link)
		if (!victim || (victim->answering && !c->answering) ||
		    (victim->answering == c->answering && c->accepted_at < victim->accepted_at))
			victim = c;
	if (!victim)
		return;
	log_write(server->log, LOG_DEBUG, "metrics", "a connection %s for %.1f s closed to make room",
		  victim->answering ? "not taking its answer" : "without a whole request",
		  ev_now(server->loop) - victim->accepted_at);
	server->stats.dropped++;
	client_free(victim);
}

static void on_accept_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct metrics_http *server = w->data;
	(void)revents;
	ev_io_start(loop, &server->acceptor);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct metrics_http *server = w->data;
	(void)revents;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(server->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (accept_failure_persists(errno)) {
				/* the scraper stays queued and the listener readable: looking again at
				 * once would spin the loop, so rest a moment */
				listener_rest(loop, &server->acceptor, &server->accept_pause,
					      &server->accept_pauses, server->log, "metrics", "", errno);
			}
			return;
		}
		if (server->client_count >= HTTP_CLIENTS_MAX)
			make_room(server);
		struct http_client *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		c->server = server;
		c->fd = fd;
		c->accepted_at = ev_now(loop);
		ev_io_init(&c->io, on_client, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->deadline, on_deadline, HTTP_REQUEST_TIMEOUT, 0);
		c->deadline.data = c;
		ev_io_start(loop, &c->io);
		ev_timer_start(loop, &c->deadline);
		LIST_INSERT_HEAD(&server->clients, c, link);
		server->client_count++;
		/* a request already there is answered now, before later arrivals could displace it */
		client_receive(c);
	}
}

struct metrics_http *metrics_http_start(struct ev_loop *loop, const char *host, const char *port,
					const struct log_sink *log, metrics_render render, void *ctx)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *result = NULL;
	int rc = getaddrinfo(host, port, &hints, &result);
	if (rc != 0) {
		log_write(log, LOG_ERROR, "metrics", "metrics-listen %s:%s: %s", host, port, gai_strerror(rc));
		return NULL;
	}
	struct metrics_http *server = calloc(1, sizeof *server);
	int fd = server ? socket(result->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, result->ai_addr, result->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		log_write(log, LOG_ERROR, "metrics", "metrics-listen %s:%s: %s", host, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(server);
		freeaddrinfo(result);
		return NULL;
	}
	freeaddrinfo(result);
	struct sockaddr_storage bound;
	socklen_t bound_length = sizeof bound;
	getsockname(fd, (struct sockaddr *)&bound, &bound_length);
	*server = (struct metrics_http){ .loop = loop, .log = log, .render = render, .ctx = ctx, .fd = fd };
	sockaddr_format((struct sockaddr *)&bound, bound_length, server->address, sizeof server->address);
	LIST_INIT(&server->clients);
	ev_io_init(&server->acceptor, on_accept, fd, EV_READ);
	server->acceptor.data = server;
	ev_io_start(loop, &server->acceptor);
	ev_timer_init(&server->accept_pause, on_accept_resume, ACCEPT_PAUSE_SECONDS, 0.0);
	server->accept_pause.data = server;
	log_write(log, host_is_loopback(host) ? LOG_INFO : LOG_WARN, "metrics", "GET /metrics served at %s%s",
		  server->address, host_is_loopback(host) ? "" : " (not loopback: anyone who reaches it "
		  "reads peer names, addresses and apps)");
	return server;
}

const char *metrics_http_address(const struct metrics_http *server)
{
	return server ? server->address : "";
}

void metrics_http_get_stats(const struct metrics_http *server, struct metrics_http_stats *stats)
{
	*stats = server ? server->stats : (struct metrics_http_stats){ 0 };
}

void metrics_http_stop(struct metrics_http *server)
{
	if (!server)
		return;
	while (!LIST_EMPTY(&server->clients))
		client_free(LIST_FIRST(&server->clients));
	ev_io_stop(server->loop, &server->acceptor);
	ev_timer_stop(server->loop, &server->accept_pause);
	close(server->fd);
	free(server->body);
	free(server);
}
