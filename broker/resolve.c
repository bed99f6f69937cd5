/* Name resolution off the event loop: getaddrinfo in a short-lived thread, result via ev_async. */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "resolve.h"

struct resolve_request {
	struct ev_loop *loop;
	ev_async done;
	char *host, *port;
	resolve_callback callback;
	void *user;
	struct addrinfo *result;
	int error;
	bool cancelled; /* loop thread only */
};

static void request_free(struct resolve_request *r)
{
	if (r->result)
		freeaddrinfo(r->result);
	free(r->host);
	free(r->port);
	free(r);
}

static void on_done(struct ev_loop *loop, ev_async *w, int revents)
{
	struct resolve_request *r = w->data;
	(void)revents;
	ev_async_stop(loop, w);
	if (!r->cancelled)
		r->callback(r->result, r->error, r->user);
	request_free(r);
}

static void *resolve_thread(void *arg)
{
	struct resolve_request *r = arg;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	r->error = getaddrinfo(r->host, r->port, &hints, &r->result);
	/* Hand over: the loop thread owns r from here (ev_async_send is thread-safe). */
	ev_async_send(r->loop, &r->done);
	return NULL;
}

static struct resolve_request *request_new(struct ev_loop *loop, const char *host,
					   const char *port, resolve_callback callback, void *user)
{
	struct resolve_request *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->host = strdup(host);
	r->port = strdup(port);
	if (!r->host || !r->port) {
		request_free(r);
		return NULL;
	}
	r->loop = loop;
	r->callback = callback;
	r->user = user;
	ev_async_init(&r->done, on_done);
	r->done.data = r;
	ev_async_start(loop, &r->done);
	return r;
}

struct resolve_request *resolve_start(struct ev_loop *loop, const char *host, const char *port,
				      resolve_callback callback, void *user)
{
	struct resolve_request *r = request_new(loop, host, port, callback, user);
	if (!r)
		return NULL;
	/* Numeric addresses need no lookup: answer from this thread, still through the loop, so
	 * the callback never runs before the caller has its request. */
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
	};
	if (getaddrinfo(host, port, &hints, &r->result) == 0) {
		ev_async_send(loop, &r->done);
		return r;
	}
	r->result = NULL;
	pthread_t thread;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&thread, &attr, resolve_thread, r);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		r->error = EAI_SYSTEM;
		ev_async_send(loop, &r->done);
	}
	return r;
}

void resolve_cancel(struct resolve_request *request)
{
	if (request)
		request->cancelled = true;
}
