/* A TCP connection running a mux on the broker's libev loop: the socket side of broker/mux.c. */
#ifndef WORMHOLE_BROKER_CONN_H
#define WORMHOLE_BROKER_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mux.h"
#include "tls.h"

struct conn;

/*
 * What the conns of one broker share. Conns run one at a time on their loop and the mux
 * copies out everything it is handed before mux_input returns, so one read area serves
 * them all: reading up to 1 MiB per system call is what keeps a bulk stream near raw TCP
 * speed (64 KiB reads cost about a third of the throughput), and sharing makes that 1 MiB
 * per broker rather than per connection.
 */
/* Accepted connections' failed TLS handshakes: counted, and logged at most once a second
 * (a scanner or a misconfigured peer otherwise made a warning per connection, up to
 * handshake-rate a second). Dialled connections' failures are logged each: their pool backs
 * off between dials. */
struct tls_failures {
	uint64_t failed;    /* handshakes that failed or did not finish in handshake-timeout */
	uint64_t unlogged;  /* of them, since the last line */
	double logged_at;   /* ev_now of the last line */
};

struct conn_shared {
	struct mux_budget *budget; /* receive-window bytes all conns may back; NULL: no limit */
	uint8_t *read_area;        /* NULL: each conn reads into a private 64 KiB buffer */
	size_t read_area_size;
	uint32_t *next_conn_id;    /* connection ids unique in the broker; NULL: the config's */
	SSL_CTX *tls;              /* the broker's TLS context (released with the struct); NULL: none */
	double handshake_timeout;  /* seconds for a TLS handshake */
	struct tls_failures *tls_failures; /* accepted connections' failures (NULL: each logged) */
	/* Called by conn_free before the connection's mux goes (its counters still readable):
	 * the control keeps the totals of closed connections, so that sums only grow. NULL: none. */
	void (*on_free)(struct conn *conn, bool dialled, void *ctx);
	void *on_free_ctx;
};

#define CONN_READ_AREA_SIZE (1024u * 1024u)

/* Allocates the read area (CONN_READ_AREA_SIZE). WH_OK or WH_ENOMEM. */
int conn_shared_init(struct conn_shared *shared, struct mux_budget *budget);
void conn_shared_release(struct conn_shared *shared);

/*
 * The conn owns the socket (it closes it) and the mux. Frames are read into the shared read
 * area, or straight into a stream's store when a DATA payload is in progress (readv), and
 * written with writev from the mux's gathered iovecs once per loop iteration (an
 * ev_prepare), so every frame produced in one iteration leaves in as few system calls as
 * possible.
 *
 * shared may be NULL (tests): no budget and a private read buffer. It must outlive the conn.
 * The user's mux callbacks are forwarded, except on_closed which is delivered from the loop
 * (never from inside a mux call), so it may call conn_free.
 */
struct conn *conn_new(struct ev_loop *loop, int fd, bool client_role, const struct mux_config *config,
		      const struct conn_shared *shared, const struct mux_callbacks *callbacks, void *user);
/* TLS for one connection (broker/tls.h). */
struct conn_tls {
	SSL_CTX *ctx;             /* NULL: plaintext; each connection holds its own reference */
	const char *expect_name;  /* dialling: the name the server's certificate must carry */
	double handshake_timeout; /* seconds until an unfinished handshake closes it; 0: none */
	bool held;                /* accepted: nothing is read (the handshake does not start)
				   * until conn_start_handshake; the timeout runs from now */
};

/*
 * conn_new over TLS when tls->ctx is set (tls NULL: plaintext, as conn_new): no frame is read
 * or written until the handshake is done (frames the mux queues meanwhile wait); a failed or
 * late handshake closes the connection with WH_ETLS or WH_ETIMEOUT and a warn line naming
 * the peer and the reason. DATA payloads are decrypted straight into the stream's store and
 * long spans encrypted from where they are.
 */
struct conn *conn_new_secure(struct ev_loop *loop, int fd, bool client_role,
			     const struct mux_config *config, const struct conn_shared *shared,
			     const struct conn_tls *tls, const struct mux_callbacks *callbacks,
			     void *user);
bool conn_is_tls(const struct conn *conn);
/* False while a TLS handshake is under way (and for a TLS conn closed before it ended). */
bool conn_is_ready(const struct conn *conn);
/* Starts the handshake of a conn made held (its first read); once only. */
void conn_start_handshake(struct conn *conn);
/* True while a held conn waits for conn_start_handshake (and is not closing). */
bool conn_is_held(const struct conn *conn);
/* Called once when the TLS handshake is done (not for plaintext conns), from the loop. */
void conn_set_on_ready(struct conn *conn, void (*on_ready)(struct conn *conn, void *user));
/* The peer's identity from its verified certificate ("" on plaintext, or before the
 * handshake is done). */
const char *conn_peer_identity(const struct conn *conn);
/* Stops watchers, closes the socket, frees the mux and every stream. */
/* Reads nothing from the peer for `seconds` from now (a peer cut off for abuse comes back:
 * broker/penalty.h); what it sends waits in TCP, and writes still go out. */
void conn_hold_reading(struct conn *conn, double seconds);
/* Whether conn_hold_reading's wait is still on. */
bool conn_reading_held(const struct conn *conn);
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
/* Seconds since the conn was made. */
double conn_age(const struct conn *conn);

/* 127.0.0.0/8, ::1 (bracketed or not), localhost: where plaintext needs no asking. */
bool host_is_loopback(const char *host);
/* "host:port" for a socket address; writes at most len bytes. */
void sockaddr_format(const struct sockaddr *addr, socklen_t addr_len, char *out, size_t len);

#endif
