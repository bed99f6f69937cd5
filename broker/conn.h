/* A TCP connection running a mux on the broker's libev loop: the socket side of broker/mux.c. */
#ifndef WORMHOLE_BROKER_CONN_H
#define WORMHOLE_BROKER_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "mux.h"

struct conn;

/*
 * The conn owns the socket (it closes it) and the mux. Frames are read into a 64 KiB buffer,
 * or straight into a stream's store when a DATA payload is in progress (readv), and written
 * with writev from the mux's gathered iovecs once per loop iteration (an ev_prepare), so
 * every frame produced in one iteration leaves in as few system calls as possible.
 *
 * The user's mux callbacks are forwarded, except on_closed which is delivered from the loop
 * (never from inside a mux call), so it may call conn_free.
 */
struct conn *conn_new(struct ev_loop *loop, int fd, bool client_role, const struct mux_config *config,
		      struct mux_budget *budget, const struct mux_callbacks *callbacks, void *user);
/* Stops watchers, closes the socket, frees the mux and every stream. */
void conn_free(struct conn *conn);
struct mux *conn_mux(const struct conn *conn);
struct conn *conn_from_mux(const struct mux *mux);
/* Starts a PING round trip now (health check). WH_EWOULDBLOCK if one is outstanding. */
int conn_ping(struct conn *conn);
/* Closes with `reason`: a best-effort goodbye, then on_closed from the loop. */
void conn_close(struct conn *conn, int reason);
/* Addresses as "host:port" (empty if unknown). */
const char *conn_local_addr(const struct conn *conn);
const char *conn_remote_addr(const struct conn *conn);
void *conn_user(const struct conn *conn);

/* "host:port" for a socket address; writes at most len bytes. */
void sockaddr_format(const struct sockaddr *addr, socklen_t addr_len, char *out, size_t len);

#endif
