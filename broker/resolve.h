/* Name resolution off the event loop: getaddrinfo in a short-lived thread, result via ev_async. */
#ifndef WORMHOLE_BROKER_RESOLVE_H
#define WORMHOLE_BROKER_RESOLVE_H

#include <ev.h>
#include <netdb.h>

struct resolve_request;

/* Called on the loop's thread with the addresses (freed after the call) or an EAI_* code. */
typedef void (*resolve_callback)(struct addrinfo *result, int gai_error, void *user);

/*
 * Resolves host and port for a TCP stream socket. The callback always runs later, from the
 * loop, never before this returns: numeric hosts on the next iteration, names when a
 * detached thread's getaddrinfo finishes, so the loop never blocks on a lookup.
 * Returns the request (for resolve_cancel), or NULL on ENOMEM (the callback will not run).
 * The loop must outlive every request.
 */
struct resolve_request *resolve_start(struct ev_loop *loop, const char *host, const char *port,
				      resolve_callback callback, void *user);
/* The callback will not run; the request frees itself when its thread finishes. */
void resolve_cancel(struct resolve_request *request);

#endif
