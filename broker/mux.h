/* The multiplexer: many streams over one connection's bytes, with no I/O of its own. */
#ifndef WORMHOLE_BROKER_MUX_H
#define WORMHOLE_BROKER_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "counters.h"
#include "frame.h"
#include "log.h"

/*
 * The mux is the protocol engine of one TCP connection (docs/PROTOCOL.md): it consumes bytes
 * the caller read (mux_input), produces iovecs for the caller to write (mux_output_gather and
 * mux_output_advance), and runs keep-alive from mux_timer(now). It never touches a socket or
 * a clock, so every state is testable without one; broker/conn.c drives it from libev.
 *
 * Streams carry their bytes through a mux_stream_io: a receive store the mux writes into and
 * a send source it gathers from. The built-in io keeps both in heap buffers and is used by
 * mux_stream_read and mux_stream_write; the shared-memory data path plugs rings in instead.
 *
 * Error convention: functions return WH_OK / a count, or a negative WH_E* code. After a fatal
 * error the mux is closed: on_closed fires once, every stream ends with that error.
 * Threading: a mux and its streams belong to one thread (the broker's loop).
 */

struct mux;
struct mux_stream;

/* The seed's MuxConfig and StreamConfig, plus the limits a daemon needs. */
struct mux_config {
	uint32_t accept_backlog;     /* streams waiting in mux_accept's queue (256) */
	uint32_t window_size;        /* initial per-stream window, both directions (256 KiB) */
	uint32_t max_window_size;    /* receive-window growth ceiling (16 MiB) */
	uint32_t max_frame_size;     /* DATA split size and receive ceiling (32 KiB) */
	double keepalive_interval;   /* seconds between PINGs, 0 disables (30) */
	double keepalive_timeout;    /* seconds to wait for a PONG (10) */
	bool enable_flow_control;    /* enforce and grant windows (true) */
	uint32_t max_streams;        /* live streams on this connection (65536) */
	uint64_t memory_budget;      /* bytes of receive windows this connection may back (4 GiB) */
	uint32_t send_buffer;        /* built-in io: bytes a stream may queue to send (256 KiB) */
	double release_linger;       /* seconds a released stream may wait for the peer's CLOSE
				      * and for credit to send its last bytes before it is reset
				      * with ERROR 499; and seconds a stream the owner half-closed
				      * and holds may go without a frame from the peer before it
				      * ends as if the peer's CLOSE had come (a reference peer
				      * never sends it after ours; ERROR 499 tells the peer);
				      * 0: forever (60) */
	uint32_t control_queue_limit; /* bytes of control frames (answers, credit, opens) queued
				       * for the peer; a peer that provokes more without reading
				       * them is closed (4 MiB). Growth past the first 64 KiB
				       * is taken from the memory budgets. */
	double reset_rate;           /* streams a second the peer may start for nothing, with a
				      * burst of five seconds' worth: opened and ended by it
				      * (CLOSE or ERROR) before any DATA, reset by it (ERROR)
				      * less than a second after it opened, whatever it carried
				      * (EARLY_RESET_SECONDS), refused by us, or sent
				      * DATA or CLOSE for without ever opening (rapid reset and
				      * its kin). Above it the connection is closed with a
				      * goodbye; 0: no bound (200) */
	double ping_rate;            /* PINGs a second the peer may send, with a burst of five
				      * seconds' worth; above it the connection is closed with a
				      * goodbye (ping flood); 0: no bound (50) */
	double noop_rate;            /* frames a second the peer may send that do nothing here:
				      * WINDOW_UPDATE or ERROR for a stream that is not open,
				      * CLOSE for one that ended, DATA for one that is not open
				      * beyond the windows of streams we reset, DATA or CLOSE
				      * held for a HANDSHAKE that has not come, empty DATA,
				      * WINDOW_UPDATE of 0 or beyond one per DATA frame we
				      * sent, ERROR on stream 0 other than going-away, PONG
				      * nobody asked for; a burst of five seconds' worth; above
				      * it the connection is closed with a goodbye. Races leave
				      * a few per finished stream. 0: no bound (10000) */
	double store_rate;           /* bytes a second the peer may add to what this broker holds
				      * in its own stores for it (built-in services' receive
				      * stores: echo's answers it does not read), with a burst of
				      * two seconds' worth; beyond it mux_input_pause asks the
				      * driver to stop reading until the bucket refills. Bytes
				      * that pass through (read or sent back) cost nothing.
				      * 0: no bound (8 MiB) */
	double frame_rate;           /* frames a second the peer may send on this connection,
				      * useful or not, with a burst of two seconds' worth;
				      * beyond it mux_input_pause asks the driver to stop
				      * reading until the bucket refills, as for store_rate.
				      * 0: no bound (1,000,000) */
	double idle_timeout;         /* accepted connections (server role) carrying no stream this
				      * many seconds are closed with a goodbye; 0: never (0) */
	uint32_t ids_left;           /* stream ids this side may open streams with before they
				      * are used up; 0: all of its half of the id space. Tests
				      * start near the end (0) */
	uint32_t id;                 /* the connection's id in logs and stats, unique in the broker */
	char peer[80];               /* the peer's name (pooled) or address (accepted), in logs */
	const struct log_sink *log;  /* NULL: silent */
};

void mux_config_default(struct mux_config *config);

/* A budget shared by every mux of a broker: bytes the broker holds for streams and peers
 * (receive windows, send buffers of built-in services, control queues past their first
 * 64 KiB). The last local_reserve bytes of the limit go only to streams this broker opened,
 * so peers that open streams cannot take what local apps need to open theirs. */
struct mux_budget {
	uint64_t limit;
	uint64_t used;
	uint64_t local_reserve;
	uint64_t refused; /* reservations refused by this budget */
};

/* One peer's share of the budget: every mux charged to it together may hold `limit` bytes
 * (the broker keeps one per peer identity; a mux without one is bounded by its own
 * config.memory_budget and the broker-wide budget alone). */
struct mux_budget_account {
	uint64_t limit;
	uint64_t used;
};

/* One owner's part of a peer (an app of ours, over every connection to that peer): what its
 * streams hold of the budgets, bounded by `limit` (0: no bound of its own) so that one app
 * cannot take the share the others need; and how many of them ended as the peer's reset-rate
 * counts (ended without our DATA, or refused), so that an app's misbehaviour holds back that
 * app's opens, not everyone's. The owner keeps it alive while a stream is charged to it. */
struct mux_owner_account {
	uint64_t limit;
	uint64_t used;
	uint64_t wasted;   /* streams that ended for nothing, as the peer counts them */
	uint64_t stream_cost; /* what the last stream charged to it held then: the next one's cost */
	double reset_rate; /* the peer's reset-rate as this broker assumes it (the mux's config) */
};

enum mux_stream_event {
	MUX_STREAM_READABLE, /* new bytes in the receive store */
	MUX_STREAM_WRITABLE, /* the send source has room again / credit came back */
	MUX_STREAM_EOF,      /* the peer sent CLOSE: after the held bytes, end of file */
	MUX_STREAM_ERROR,    /* the stream ended with an error (mux_stream_error tells which) */
};

typedef void (*mux_stream_handler)(struct mux_stream *stream, enum mux_stream_event event,
				   void *user);

/* Where a stream's bytes live. ctx is the io's own; the mux never frees it but calls release
 * once when the stream is gone.
 *
 * A callback that fails returns a negative WH_E* code: the mux then resets that stream with
 * it (ERROR to the peer, MUX_STREAM_ERROR to the owner, one log line) and asks the io for
 * nothing more but release. The io never resets or ends the stream itself from inside a
 * callback: the mux may be in the middle of reading a frame or planning output. */
struct mux_stream_io {
	/* Contiguous room for at most `want` received bytes: its size (0 when there is none),
	 * or WH_E* when the store failed. */
	long (*rx_reserve)(void *ctx, size_t want, uint8_t **span);
	/* The first n bytes of the reserved room hold data: WH_OK, or WH_E* when the store
	 * failed (the bytes count as delivered). */
	int (*rx_commit)(void *ctx, size_t n);
	/* Most bytes the store can ever hold: the window never grows past it. */
	size_t (*rx_capacity)(void *ctx);
	/* Up to two spans of bytes to send, starting `offset` bytes in: the span count, or WH_E*
	 * when the source failed. Bytes returned once must be returned again, at the same
	 * place, until consumed (frames are planned from them): only a call that asks past
	 * them may fail. */
	int (*tx_peek)(void *ctx, size_t offset, struct iovec iov[2]);
	void (*tx_consume)(void *ctx, size_t n);
	void (*release)(void *ctx);
};

struct mux_callbacks {
	/* A HANDSHAKE arrived for `service` (empty: the default service). Return WH_OK to take
	 * the stream (set its handler and io now), or WH_ENO_SERVICE, WH_EACCEPT_QUEUE_FULL,
	 * WH_ELIMIT to refuse it with the matching ERROR. When NULL, streams wait in the
	 * mux's accept queue (AcceptBacklog) for mux_accept and on_accept_ready fires. */
	int (*on_incoming)(struct mux *mux, struct mux_stream *stream, const char *service,
			   void *user);
	void (*on_accept_ready)(struct mux *mux, void *user);
	/* Output became pending: the driver should flush soon. */
	void (*on_want_write)(struct mux *mux, void *user);
	/* The mux closed (error < 0) or the peer went away cleanly (WH_ECONNECTION_CLOSED). */
	void (*on_closed)(struct mux *mux, int error, void *user);
	/* A PONG answered our PING: rtt in seconds. */
	void (*on_pong)(struct mux *mux, double rtt, void *user);
	/* mux_timer has something to do sooner than it last said (a deadline, or events to
	 * deliver): call it again soon (from the loop, not from inside this callback). */
	void (*on_timer_changed)(struct mux *mux, void *user);
};

/* Counters of one connection (shared/counters.h), beside the per-type frame counts. */
#define MUX_COUNTERS_TABLE(X) \
	X(bytes_in, TOTAL, BYTES, "wire bytes received, frame headers included") \
	X(bytes_out, TOTAL, BYTES, "wire bytes sent, frame headers included") \
	X(data_bytes_in, TOTAL, BYTES, "DATA payload bytes received") \
	X(data_bytes_out, TOTAL, BYTES, "DATA payload bytes sent") \
	X(streams_opened, TOTAL, NONE, "streams this side opened") \
	X(streams_accepted, TOTAL, NONE, "streams the peer opened and this side took") \
	X(streams_refused, TOTAL, NONE, "streams the peer opened and this side refused") \
	X(opens_held_back, TOTAL, NONE, "opens refused here (WH_ELIMIT) so as not to pass the peer's reset-rate") \
	X(dropped_frames, TOTAL, NONE, "frames for unknown or finished streams") \
	X(noop_frames, TOTAL, NONE, "frames that did nothing (noop-rate counts them): WINDOW_UPDATE, ERROR, CLOSE or DATA for a stream not open (held ones too), empty DATA, unneeded credit, unasked PONGs") \
	X(early_frames, TOTAL, NONE, "DATA or CLOSE held until their HANDSHAKE came") \
	X(malformed_frames, TOTAL, NONE, "frames that broke the protocol") \
	X(errors_sent, TOTAL, NONE, "ERROR frames sent") \
	X(errors_received, TOTAL, NONE, "ERROR frames received") \
	X(window_stalls, TOTAL, NONE, "times a stream had data but no send credit") \
	X(window_growths, TOTAL, NONE, "receive windows grown by auto-tuning") \
	X(streams_lingered, TOTAL, NONE, "streams ended by the release linger: released ones still open, half-closed ones the peer never closed") \
	X(streams_reset_empty, TOTAL, NONE, "peer streams that ended with no DATA: closed by the peer, refused, or never opened") \
	X(budget_refusals, TOTAL, NONE, "reservations a memory budget refused") \
	X(input_pauses, TOTAL, NONE, "times reading paused: the peer filled the broker's own stores faster than store-rate, or sent frames faster than a million a second")

struct mux_stats {
	uint64_t frames_in[8], frames_out[8]; /* by frame type (index = type; 0: unknown types) */
	MUX_COUNTERS_TABLE(COUNTER_FIELD)
	double rtt;                           /* last PING round trip, seconds (0: none yet) */
};

struct mux_stream_stats {
	uint64_t bytes_in, bytes_out, frames_in, frames_out, window_stalls;
	uint32_t recv_window;   /* current receive window */
	int64_t send_credit;    /* what the peer lets us send now */
	size_t held;            /* received bytes the app has not consumed */
	double opened_at;       /* the mux's clock at its start: the `now` of the last input or
				 * timer call, exact for streams the peer opens (their HANDSHAKE
				 * is input), earlier for ones opened locally between calls */
};

/* ---- the connection ---------------------------------------------------------------- */

/* client_role: we dialled (odd stream ids). budget may be NULL. Returns NULL on ENOMEM or a
 * config out of range (window_size 0, max_frame_size above 16 MiB, ...). */
struct mux *mux_new(bool client_role, const struct mux_config *config, struct mux_budget *budget,
		    const struct mux_callbacks *callbacks, void *user);
/* Frees the mux and every stream (owners must not use their streams afterwards). */
void mux_free(struct mux *mux);
/* Charges the mux's reservations, now and from now on, to a peer's share of the budget as
 * well (NULL: none). The account must outlive the mux or the next call. */
void mux_set_budget_account(struct mux *mux, struct mux_budget_account *account);

/* Feeds bytes read from the connection. WH_OK, or the fatal error that closed the mux. */
int mux_input(struct mux *mux, const uint8_t *data, size_t length, double now);
/* Zero-copy receive: room in the current DATA frame's destination, so the caller may read
 * payload straight into it; then mux_input_direct_commit with what it read. 0: read into
 * an ordinary buffer and call mux_input. */
size_t mux_input_direct_span(struct mux *mux, uint8_t **span);
int mux_input_direct_commit(struct mux *mux, size_t n, double now);
/* The peer closed its side of the connection. Always closes the mux. */
void mux_input_eof(struct mux *mux);
/* Whether the driver should stop reading the peer for now: 0 to read on, or the mux clock
 * time after which reading may go on (the peer added to the broker's own stores faster than
 * store_rate). Each answer other than 0 counts as a pause (input_pauses). */
double mux_input_pause(struct mux *mux);
/* Bytes the driver's next read may take (SIZE_MAX: no bound): what store_rate has left, at
 * least 4 KiB, so that a read past the rate overshoots it by little and the pause that
 * follows is short; 0 once it is spent (end the turn: ask mux_input_pause at the next). */
size_t mux_input_allowance(struct mux *mux);

/* Fills at most max_iov entries with the next bytes to write; returns the count (0: none). */
int mux_output_gather(struct mux *mux, struct iovec *iov, int max_iov);
/* The caller wrote n bytes of what gather returned. */
void mux_output_advance(struct mux *mux, size_t n);
/* The caller handed the first n bytes of what gather returned to a layer that has to be
 * given the same bytes again (a TLS write that must be repeated): until they are advanced,
 * later gathers return them unchanged (a small frame planned meanwhile may not overtake a
 * frame among them, though none of its bytes has been advanced). */
void mux_output_hold(struct mux *mux, size_t n);
bool mux_output_pending(const struct mux *mux);

/* Runs keep-alive at time now (seconds, any monotonic origin). Returns the next time it
 * wants to be called. */
double mux_timer(struct mux *mux, double now);
/* Sends a PING now (a health check); WH_EWOULDBLOCK if one is already outstanding. */
int mux_ping(struct mux *mux, double now);

/* Drains the connection: ERROR 505 on stream 0 tells the peer to open no new streams here
 * (its new HANDSHAKEs are refused with 505), and we open none; the streams open now go on. */
void mux_drain(struct mux *mux);
/* May a stream be opened here now (not closed, no 505 either way, ids left)? */
/* Whether the mux closed for what the peer sent: a flood past noop-rate, ping-rate or
 * reset-rate, a fatal malformed frame, or answers it would not read (broker/penalty.h). */
bool mux_peer_at_fault(const struct mux *mux);
bool mux_accepts_streams(const struct mux *mux);
/* Closes the connection: ERROR 505 on stream 0 is queued, every stream ends with `reason`. */
void mux_close(struct mux *mux, int reason);
bool mux_is_closed(const struct mux *mux);
/* The error the mux closed with (WH_OK while open). */
int mux_error(const struct mux *mux);
uint32_t mux_id(const struct mux *mux);
/* The peer's name or address, as given in the config's `peer`. */
const char *mux_peer(const struct mux *mux);
/* Renames the peer in log lines (an accepted connection learns its peer's identity late). */
void mux_set_peer(struct mux *mux, const char *name);
/* An accepted connection's idle_timeout, changed (0: never closed for want of streams): a
 * connection a dial-in peer keeps open for our streams is not idle while it waits for them. */
void mux_set_idle_timeout(struct mux *mux, double seconds);
/* The user pointer given to mux_new. */
void *mux_user(const struct mux *mux);
bool mux_is_client(const struct mux *mux);
size_t mux_num_streams(const struct mux *mux);
const struct mux_stats *mux_stats(const struct mux *mux);
/* Calls fn for every live stream (fn must not open or free streams). */
void mux_each_stream(const struct mux *mux, void (*fn)(struct mux_stream *, void *), void *arg);

/* True while the connection carries small DATA on one stream beside large DATA on another
 * (within the last second): the caller then keeps its reads and writes short, so that the
 * small frames wait behind little (docs/BROKER.md, "Writing and scheduling"). */
bool mux_interactive(const struct mux *mux);

/* ---- streams ----------------------------------------------------------------------- */

/* Tells the mux the caller's clock before a call that takes none (mux_open_stream, whose
 * reset-rate bucket refills with time); the clock never moves back. */
void mux_set_now(struct mux *mux, double now);

/* Opens a stream: HANDSHAKE is queued with `service` (NULL or "" = the default service) and
 * data may be written at once. WH_EMUX_CLOSED, WH_ELIMIT (stream limit or budget, or our
 * streams ended without data nearly as fast as the peer's reset-rate allows: see
 * opens_held_back), WH_EINVAL (service longer than 255 bytes or with NUL), WH_ENOMEM. */
int mux_open_stream(struct mux *mux, const char *service, struct mux_stream **out);
/* The same, naming a forward's TCP client in the HANDSHAKE (client NULL: none; WH_EINVAL
 * for a family other than 4 or 6): the exposing broker hands it to the service's target
 * (proxy-protocol, docs/FORWARDING.md). */
int mux_open_stream_from(struct mux *mux, const char *service, const struct frame_client_address *client,
			 struct mux_stream **out);
/* The next stream waiting in the accept queue, or NULL. */
struct mux_stream *mux_accept(struct mux *mux);

void mux_stream_set_handler(struct mux_stream *stream, mux_stream_handler handler, void *user);
/* Replaces the built-in io (before any byte moved). */
void mux_stream_set_io(struct mux_stream *stream, const struct mux_stream_io *io, void *ctx);

/* The stream sends back what it receives, straight from its receive store (the echo
 * service): nothing is copied, and the peer's window reopens only as bytes go back out, so a
 * peer that does not read what comes back holds one window of the broker's memory, no more.
 * Call it where an io is set (before any byte moved, or with only held DATA received). The
 * owner then reads and writes nothing; it kicks the stream on READABLE (mux_stream_kick), and
 * on EOF closes its write side and may release the stream at once: the CLOSE follows the
 * last byte back. */
void mux_stream_loop_back(struct mux_stream *stream);

/* Built-in io. write: bytes queued (> 0), WH_EWOULDBLOCK when the send buffer is full,
 * WH_ESTREAM_CLOSED after close_write, or the stream's error. read: bytes read (> 0), 0 at
 * EOF, WH_EWOULDBLOCK when nothing is held yet, or the stream's error. */
long mux_stream_write(struct mux_stream *stream, const void *data, size_t length);
long mux_stream_read(struct mux_stream *stream, void *data, size_t length);

/* Bytes mux_stream_write would take now (built-in io). When 0, a WRITABLE event follows
 * once there is room again. */
size_t mux_stream_write_room(struct mux_stream *stream);

/* Bytes the consumer must still take before a WINDOW_UPDATE is due (SIZE_MAX: none will be,
 * e.g. without flow control or after the peer's CLOSE). An io uses it to ask for news of
 * consumption only when that news would matter. */
size_t mux_stream_consumption_until_update(const struct mux_stream *stream);

/* A custom io's owner: new bytes are in the send source / n received bytes were consumed. */
void mux_stream_kick(struct mux_stream *stream);
void mux_stream_consumed(struct mux_stream *stream, size_t n);

/* Half-close: CLOSE follows the queued data. WH_ESTREAM_CLOSED if already closed. */
int mux_stream_close_write(struct mux_stream *stream);
/* Ends the stream with ERROR (code from `error`, e.g. WH_ESTREAM_CLOSED -> 499) and message. */
int mux_stream_reset(struct mux_stream *stream, int error, const char *message);
/* The same with the wire code given (an operator's close-stream): the peer gets ERROR `code`,
 * the owner WH_ESTREAM_CLOSED. WH_OK, or WH_ESTREAM_CLOSED if it had ended. */
int mux_stream_reset_code(struct mux_stream *stream, uint32_t code, const char *message);
/* The owner is done with the stream: it stops reading (later DATA is discarded with its
 * credit returned), half-closes if it had not, and the mux frees the stream when finished.
 * The pointer must not be used after this call. */
void mux_stream_release(struct mux_stream *stream);

uint32_t mux_stream_id(const struct mux_stream *stream);
struct mux *mux_stream_mux(const struct mux_stream *stream);
const char *mux_stream_service(const struct mux_stream *stream);
/* The forward's TCP client the stream's opener named in its HANDSHAKE (or we did, opening it),
 * NULL when none was named (an app's stream, a reference peer's). */
const struct frame_client_address *mux_stream_client(const struct mux_stream *stream);
/* True once both sides closed or an ERROR went either way. */
bool mux_stream_is_finished(const struct mux_stream *stream);
/* WH_OK, or the error that ended the stream (WH_EREMOTE etc. for a received ERROR). */
int mux_stream_error(const struct mux_stream *stream);
/* For a received ERROR: its wire code and message (NUL-terminated); 0 and "" otherwise. */
uint32_t mux_stream_remote_code(const struct mux_stream *stream);
const char *mux_stream_remote_message(const struct mux_stream *stream);
void mux_stream_get_stats(const struct mux_stream *stream, struct mux_stream_stats *stats);
/* "open", "local-closed" (we sent or queued CLOSE), "remote-closed", "closing" (both),
 * "finished", or "reset" (an ERROR went either way). */
const char *mux_stream_state(const struct mux_stream *stream);
/* The handler's user pointer when the stream's handler is `handler`, else NULL: lets a module
 * recognise the streams it owns. */
void *mux_stream_owner(const struct mux_stream *stream, mux_stream_handler handler);
/* Charges a stream this broker opened to its owner's account (NULL: to none): what it holds
 * now, what it takes later, and its end if it is wasted. WH_OK, or WH_ELIMIT (nothing
 * changed) when the account's limit cannot take what the stream holds already. */
int mux_stream_set_owner(struct mux_stream *stream, struct mux_owner_account *account);

#endif
