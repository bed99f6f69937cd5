/* One TCP connection joined to one stream: bytes both ways through the stream's windows. */
#ifndef WORMHOLE_BROKER_TCP_RELAY_H
#define WORMHOLE_BROKER_TCP_RELAY_H

#include <ev.h>
#include <stdint.h>

#include "fdbudget.h"
#include "log.h"
#include "mux.h"

/*
 * The relay shared by both ends of forwarding (docs/FORWARDING.md): a forward's client
 * (broker/forward.c) and an exposed service's target (broker/target.c). It never blocks the
 * loop and bounds what it moves per turn; its memory is bounded by the stream's windows: a
 * socket that does not take bytes stops the relay reading the stream (so its credit is not
 * returned and the far end stops sending), and a stream without room stops it reading the
 * socket (so TCP's own window pushes back on the program). At most one read's worth
 * (RELAY_CHUNK) waits here for a socket that took part of it.
 *
 * Ends, both ways:
 *   socket EOF                -> CLOSE on the stream after the bytes read before it
 *   CLOSE from the stream     -> shutdown(SHUT_WR) after the bytes received before it
 *   socket reset or error     -> ERROR `reset_code` on the stream, with the errno's words
 *   ERROR on the stream       -> the socket is closed with SO_LINGER 0: the program sees RST
 * The relay is over when both directions ended (or at the first abortive end): it closes the
 * socket, gives its descriptor back to the budget, releases the stream and frees itself.
 */

struct tcp_relay;

/* The relays of one owner (a forward, or the broker's targets), for counting and stopping. */
struct tcp_relay_set {
	struct tcp_relay *head;
	unsigned open;       /* relays running now */
	uint64_t total;      /* relays started */
	uint64_t reset_in;   /* ended by an ERROR on the stream (the far side reset) */
	uint64_t reset_out;  /* ended by a reset or error of the socket */
	uint64_t idle_ended; /* ended by the idle timeout */
	uint64_t bytes_in;   /* socket -> stream */
	uint64_t bytes_out;  /* stream -> socket */
};

/* A bandwidth limit that relays share (a forward's, or an exposed service's): bytes a second
 * each way, a token bucket per direction with a tenth of a second's worth of burst (at least
 * 16 KiB, or the rate when lower). A relay that finds its bucket empty stops reading (so the
 * windows push back on the far side, which then slows down too) until the limit's timer calls
 * wake, which restarts the relays it names (tcp_relay_set_wake on each set using it). */
struct tcp_relay_limit {
	struct ev_loop *loop;
	double rate;             /* bytes a second each way; 0: no limit */
	double tokens[2], at[2]; /* [0]: socket -> stream, [1]: stream -> socket */
	ev_timer refill;
	void (*wake)(struct tcp_relay_limit *limit, void *ctx);
	void *ctx;
	uint64_t waits;          /* times a relay waited for it */
};
void tcp_relay_limit_init(struct tcp_relay_limit *limit, struct ev_loop *loop,
			  void (*wake)(struct tcp_relay_limit *, void *), void *ctx);
/* A new rate (a reload): applies to the bytes from now on. */
void tcp_relay_limit_set_rate(struct tcp_relay_limit *limit, double rate);
void tcp_relay_limit_stop(struct tcp_relay_limit *limit);
/* Restarts the relays of the set that wait for limit (never runs a relay from inside). */
void tcp_relay_set_wake(struct tcp_relay_set *set, const struct tcp_relay_limit *limit);

/* What a relay tells its owner of its course (forward.c's client-reset-rate): a peer's
 * reset-rate counts a stream opened to it that ends before any of our bytes went, or that is
 * reset less than a second after it opened, whatever it carried (broker/mux_input.c, ended_early). */
enum tcp_relay_news {
	TCP_RELAY_FIRST_BYTES, /* the socket's first bytes went into the stream */
	TCP_RELAY_PROVEN,      /* after FIRST_BYTES, and a second old: no end of it is early now */
	TCP_RELAY_ENDED,       /* over, and not early: after FIRST_BYTES */
	TCP_RELAY_ENDED_EARLY, /* over, reset within a second of its start: after FIRST_BYTES */
	TCP_RELAY_ENDED_EMPTY, /* over, nothing read from the socket (no FIRST_BYTES) */
};
#define TCP_RELAY_EARLY_SECONDS 1.0 /* the peer's EARLY_RESET_SECONDS */

/* How a relay names itself and ends. */
struct tcp_relay_params {
	const char *label;       /* in logs: "forward=web client=127.0.0.1:5000" */
	uint32_t reset_code;     /* the ERROR sent when the socket resets */
	const char *socket_name; /* who that is in the ERROR's message: "the client", "target ..." */
	double idle_timeout;     /* no byte either way this long: both ends reset (ERROR 504 to
				  * the stream, RST to the socket); 0: never */
	struct tcp_relay_limit *limit; /* NULL: none; must outlive the relay */
	const uint8_t *prefix;   /* bytes the socket gets before any byte of the stream (a PROXY
				  * protocol header; copied), or NULL; not counted as relayed */
	size_t prefix_length;    /* at most RELAY_CHUNK */
	/* NULL, or told FIRST_BYTES and PROVEN at most once each, in that order, and one of the
	 * ENDED once (never from inside tcp_relay_start's failure); it must not touch the relay */
	void (*watch)(void *ctx, enum tcp_relay_news news);
	void *watch_ctx;
};

/* Joins fd (connected, non-blocking; its descriptor taken from fds, which may be NULL) and
 * stream (its handler becomes the relay's), and starts moving bytes at once (it may be over
 * before this returns). WH_OK: fd, its descriptor's budget and stream are the relay's now;
 * WH_ENOMEM: nothing was taken over. */
int tcp_relay_start(struct ev_loop *loop, const struct log_sink *log, struct fd_budget *fds,
		    struct tcp_relay_set *set, int fd, struct mux_stream *stream,
		    const struct tcp_relay_params *params);

/* Ends every relay of the set at once (the broker stops): sockets reset, streams reset with
 * ERROR 505 (going away). */
void tcp_relay_set_abort_all(struct tcp_relay_set *set);

/* Ends, as abort_all does, the relays whose stream is on a connection match() picks (with
 * ERROR code and message): before the pool that holds those connections is freed. */
void tcp_relay_set_abort_where(struct tcp_relay_set *set, bool (*match)(const struct mux *, void *),
			       void *arg, uint32_t code, const char *message);

/* Closes fd so that its peer sees RST, not FIN (SO_LINGER 0). */
void tcp_relay_close_abortive(int fd);

#endif
