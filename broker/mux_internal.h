/* What broker/mux.c, mux_input.c and mux_output.c share: the connection's and its streams'
 * state, and the functions one of them calls in another. The rest of the broker sees mux.h. */
#ifndef WORMHOLE_BROKER_MUX_INTERNAL_H
#define WORMHOLE_BROKER_MUX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "bytebuf.h"
#include "mux.h"
#include "stream_table.h"

#define OUT_RING 128u                       /* planned frames not yet fully written */
#define SERVICE_NAME_MAX FRAME_SERVICE_NAME_MAX
/* Frames for a peer's stream that arrive before its HANDSHAKE (a reference peer can send them
 * so, WIRE-NOTES weakness 4) are held for this many ids at once, this long, and at most the
 * initial window each: more is what no honest peer sends. */
#define EARLY_IDS_MAX 8u
#define EARLY_HOLD_SECONDS 5.0

enum stream_event_bit {
	EVENT_READABLE = 1u << MUX_STREAM_READABLE,
	EVENT_WRITABLE = 1u << MUX_STREAM_WRITABLE,
	EVENT_EOF = 1u << MUX_STREAM_EOF,
	EVENT_ERROR = 1u << MUX_STREAM_ERROR,
};

struct mux_stream {
	struct mux *mux;
	uint32_t id;
	char service[SERVICE_NAME_MAX + 1];
	/* the forward's TCP client the opener named in its HANDSHAKE (has_client), or ours */
	bool has_client;
	struct frame_client_address client;

	bool write_closed;  /* the owner will write no more: CLOSE follows the queued data */
	bool close_sent;    /* CLOSE is planned on the wire */
	bool remote_closed; /* the peer's CLOSE arrived */
	bool released;      /* the owner let go: incoming bytes are discarded */
	bool finished;
	bool stalled;       /* has data, no credit: counted once per stall */
	bool want_writable; /* a write found the send buffer full */
	int error;
	uint32_t remote_code;
	char *remote_message;

	const struct mux_stream_io *io;
	void *io_ctx;
	struct bytebuf rx, tx; /* the built-in io's stores */
	mux_stream_handler handler;
	void *handler_user;

	int64_t send_credit;
	uint32_t recv_window;
	int64_t recv_peer_credit; /* bytes the peer may still send */
	uint32_t recv_unacked;    /* consumed, not yet returned by WINDOW_UPDATE */
	double last_update_time;
	uint64_t budget_reserved;
	struct mux_owner_account *owner; /* the app that opened it, charged too (or NULL) */
	bool peer_opened; /* the peer's HANDSHAKE made it: charged outside the local reserve */
	bool data_planned; /* a DATA frame of ours is planned on it (reset-rate's view of it) */

	size_t tx_planned; /* bytes of planned frames not yet written (and so not consumed) */
	unsigned pending_frames;
	size_t gather_offset;
	unsigned gather_pass;

	/* The lists a stream is on (<sys/queue.h>, which cannot tell whether an entry is on its
	 * list: the in_* flags say it for the lists a stream may or may not be on). */
	LIST_ENTRY(mux_stream) all_link; /* every stream of the mux, until destroyed */
	TAILQ_ENTRY(mux_stream) ready_link; /* has output to plan: the round-robin */
	bool in_ready;
	STAILQ_ENTRY(mux_stream) accept_link; /* waiting for mux_accept */
	STAILQ_ENTRY(mux_stream) notify_link; /* has events for its handler */
	unsigned events;
	bool in_notify;
	SLIST_ENTRY(mux_stream) free_link; /* released: freed once nothing refers to it */
	bool in_free_list;
	/* released but not finished: reset once release_linger has passed */
	TAILQ_ENTRY(mux_stream) linger_link;
	bool in_linger;
	double released_at; /* 0 until mux_timer stamps it: release itself knows no time */
	/* held, our CLOSE sent, the peer's not come: ended once the peer says nothing on it for
	 * release_linger (quiet_start) */
	TAILQ_ENTRY(mux_stream) quiet_link;
	bool in_quiet;
	double quiet_since; /* the peer's last frame on it; 0 until stamped (quiet_stamp) */

	struct mux_stream_stats stats;
};

/* DATA (and a CLOSE) for a peer id whose HANDSHAKE has not come yet. */
struct early_stream {
	uint32_t id; /* 0: slot free */
	bool closed;   /* its CLOSE came too */
	bool overflow; /* more than the initial window came: reset it once it opens */
	double since;
	struct bytebuf data;
};

enum out_kind { OUT_CONTROL, OUT_STREAM };

struct out_frame {
	enum out_kind kind;
	struct mux_stream *stream;
	uint8_t header[FRAME_HEADER_SIZE];
	uint8_t header_done; /* OUT_STREAM only; control bytes carry their own headers */
	uint32_t payload_length, payload_done;
};

TAILQ_HEAD(linger_list, mux_stream);

/* A token bucket: `rate` tokens a second, holding BUCKET_BURST_SECONDS of them. */
struct rate_bucket {
	double tokens;
	double refilled_at;
};
#define BUCKET_BURST_SECONDS 5.0
/* The store_rate and frame_rate buckets hold this many seconds' worth (mux_input.c). */
#define STORE_BURST_SECONDS 2.0
#define FRAME_BURST_SECONDS 2.0

struct mux {
	struct mux_config config;
	bool client;
	struct mux_budget *budget;
	struct mux_budget_account *account;
	uint64_t budget_used;
	uint64_t control_charged; /* control_out capacity above CONTROL_QUEUE_FREE, charged */
	struct rate_bucket reset; /* rapid reset: streams the peer may still open for nothing */
	struct rate_bucket pings; /* PINGs the peer may still send */
	struct rate_bucket noops; /* frames that do nothing the peer may still send */
	unsigned conn_errors_logged; /* stream-0 ERRORs logged: the first few only */
	struct rate_bucket own_wasted; /* our count of what the peer's reset-rate counts of ours */
	struct rate_bucket stored; /* bytes the peer may still add to our own stores (store_rate) */
	struct rate_bucket framed; /* frames the peer may still send (frame_rate) */
	uint64_t updates_owed;    /* WINDOW_UPDATEs the peer may send: one per DATA frame of ours */
	uint64_t ended_credit;    /* bytes of DATA the peer may have in flight for streams we ended */
	double ended_credit_until; /* ... until then (ENDED_CREDIT_SECONDS after the last end) */
	double idle_since;        /* accepted: when it last had no stream (0: it has some) */
	struct mux_callbacks cb;
	void *user;
	double now;

	struct frame_decoder decoder;
	struct stream_table streams;
	LIST_HEAD(, mux_stream) all_streams;
	uint32_t next_local_id;
	struct stream_ids peer_ids; /* which of the peer's ids were used (any order) */
	uint32_t rx_stream_id; /* stream of the DATA payload being received, 0: discard */
	struct early_stream *rx_early; /* or the early stream it is held for */
	struct early_stream early[EARLY_IDS_MAX];

	struct bytebuf control_out; /* encoded control frames, ahead of stream data */
	size_t control_planned;
	struct out_frame out[OUT_RING];
	unsigned out_head, out_count;
	size_t out_promised; /* bytes from the head the driver must write as gathered (mux_output_hold) */
	size_t planned_data; /* DATA bytes planned, not yet written */
	double small_at, large_at; /* the last small and large DATA frame (SMALL_FRAME) */
	uint32_t small_id, large_id; /* and their streams */
	TAILQ_HEAD(, mux_stream) ready;
	unsigned gather_pass;

	STAILQ_HEAD(, mux_stream) accept_queue;
	unsigned accept_count;
	bool accept_ready_pending;

	bool probe_sent;
	bool ping_outstanding;
	uint32_t ping_id;
	double ping_sent_at, next_ping_at;
	double pong_wait_from;    /* keep-alive: the timeout counts from here (keepalive_alive) */
	uint64_t pong_wait_bytes; /* stats.bytes_in then */

	bool ids_exhausted;
	bool closed, output_sealed, closed_notify_pending, dispatching;
	bool going_away;     /* the peer said ERROR 505: we open no more streams here */
	bool window_warned;  /* a window mismatch was logged at warn once for this connection */
	bool own_reset_warned; /* our opens are held back (own_opens_allowed): said once */
	bool draining;       /* we said it: the peer's new streams are refused with 505 */
	bool peer_at_fault; /* closed for what the peer sent (mux_peer_at_fault) */
	int error;
	STAILQ_HEAD(, mux_stream) notify_queue;
	SLIST_HEAD(, mux_stream) free_list;
	struct linger_list linger; /* in release order, so in expiry order */
	struct linger_list quiet; /* by the peer's last frame on them, so in expiry order */

	struct mux_stats stats;
};
/* ---- mux.c ---- */
/* queues an event for the stream's handler; handlers run from mux_dispatch only */
void stream_notify(struct mux_stream *s, unsigned event_bit);
/* puts the stream on the free list: mux_dispatch frees it once nothing refers to it */
void stream_check_free(struct mux_stream *s);
/* takes the stream off the quiet list (half-closed streams the peer never closes) */
void quiet_remove(struct mux_stream *s);
/* our CLOSE is planned: the wait for the peer's starts (streams the owner still holds) */
void quiet_start(struct mux_stream *s);
/* a frame of the peer on the stream: the wait for its CLOSE starts again */
void quiet_touch(struct mux_stream *s);
/* takes the stream off the ready list (the round-robin of streams with output to plan) */
void ready_remove(struct mux_stream *s);
/* puts the stream at the ready list's tail and asks the driver to write */
void ready_push(struct mux_stream *s);
/* frees the stream at once and gives back what it was charged */
void stream_destroy(struct mux_stream *s);
/* runs the handlers of queued events and frees the streams that can go */
void mux_dispatch(struct mux *mux);
/* queues an encoded control frame, within the control queue's limit and the budgets */
void control_push(struct mux *mux, const uint8_t *frame, int length);
/* queues ERROR `code` on stream_id */
void send_error_frame(struct mux *mux, uint32_t stream_id, uint32_t code, const char *message);
/* n bytes of the stream were read or dropped: a WINDOW_UPDATE once half the window was */
void stream_consumed(struct mux_stream *s, size_t n);
/* a stream with this id, charged to the budgets (outside the local reserve when peer_opened) */
int stream_new(struct mux *mux, uint32_t id, const char *service, size_t service_length,
	       bool peer_opened, struct mux_stream **out);
/* the stream is over for the protocol: its id is forgotten, no more frames are planned */
void stream_finish(struct mux_stream *s, int error);
/* finishes the stream once our CLOSE is planned and the peer's came */
void stream_check_finished(struct mux_stream *s);
/* DATA for a stream not open: counted as a noop unless the windows of streams we ended cover it */
void count_ended_data(struct mux *mux, uint32_t length);
/* ends the stream: ERROR to the peer, `error` to the owner */
void stream_reset(struct mux_stream *s, int error, const char *message);
/* closes the connection with `error`: a goodbye to the peer, every stream ended */
void mux_fail(struct mux *mux, int error);
/* mux_fail with the goodbye's text (NULL: the error's own). */
void mux_fail_saying(struct mux *mux, int error, const char *message);

/* ---- mux_input.c ---- */
/* a rate bucket's capacity: BUCKET_BURST_SECONDS of its rate, at least one token */
double bucket_burst(double rate);
/* n bytes entered our own stores: taken from the store_rate bucket */
void store_charge(struct mux *mux, size_t n);
/* n bytes left our own stores: given back to the store_rate bucket */
void store_refund(struct mux *mux, size_t n);
/* a frame that does nothing: counted in noop-rate, past which the peer is closed */
void count_noop(struct mux *mux);
/* the stream was reset less than EARLY_RESET_SECONDS after it opened */
bool ended_early(const struct mux *mux, const struct mux_stream *s);
/* one of our opens ended as the peer's reset-rate counts it: our own count of it */
void count_own_wasted_open(struct mux *mux, struct mux_stream *s);
/* false while our own count is too near the peer's reset-rate to open more streams */
bool own_opens_allowed(struct mux *mux);
/* frames held EARLY_HOLD_SECONDS for a HANDSHAKE that never came are dropped */
void early_expire(struct mux *mux, double now);

/* ---- mux_output.c ---- */
/* a DATA frame in or out, of n bytes: what makes the connection interactive (mux_interactive) */
void note_data(struct mux *mux, uint32_t id, size_t n);

#endif
