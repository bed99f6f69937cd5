/* The app side of the broker, inside: the structures its files share and the functions one
 * file calls in another. Nothing here is for the rest of the broker: that is apps.h. */
#ifndef WORMHOLE_BROKER_APPS_INTERNAL_H
#define WORMHOLE_BROKER_APPS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "apps.h"
#include "conn.h"
#include "attach_msg.h"
#include "fdbudget.h"
#include "ring.h"
#include "services.h"
#include "stream_table.h"

/* Control messages an app may leave unread before it is dropped: one per stream it may hold
 * (a burst of INCOMING) and some room for answers. */
#define SEND_QUEUE_SLACK 256u
/* Answers to its own requests an app may leave unread before the broker stops reading its
 * requests (until it has read half of them): an app that asks and never reads is held back
 * by its socket, as TCP holds back a peer, instead of making the broker answer a queue's
 * worth, being dropped and attaching again. The library asks and waits, one request a
 * thread, except OPEN (wh_open_start pipelines them, answers read later): OPEN's answers are
 * not counted here, only in the queue (one per stream the app may hold). */
#define REPLY_BACKLOG 256u

/* App rings: the app writes ring 0 and reads ring 1 of a broker-joined stream. */
#define APP_TX_RING 0u
#define APP_RX_RING 1u

struct app_session;

/* An app's part of one peer (docs/SECURITY.md, "Shares per app"): what the streams it opened
 * to the peer hold of the budgets (at most a quarter of a peer's share), and a bucket of the
 * streams it may still waste (a quarter of the peer's reset-rate) before its own opens to
 * that peer are held back: one app's misbehaviour costs that app, not every app. It lives
 * while its app does, then until the last stream charged to it is freed. */
struct app_peer_share {
	struct mux_owner_account account;
	struct app_session *session; /* NULL once its app is gone */
	double tokens, refilled_at;  /* refilled_at 0: the bucket has not started */
	uint64_t wasted_seen;
	bool held_back;              /* said once per spell in the log */
	char peer[ATTACH_STRING_MAX + 1];
	LIST_ENTRY(app_peer_share) link; /* in its app's list while it has one */
};

/* One segment: mapped by the broker for its whole life, fds kept to hand over and signal. */
struct segment {
	void *memory;
	size_t size;
	uint32_t capacity;
	int memfd;
};

/* What a handle (the app's name for one of its streams) stands for: O(1) from RELEASE and
 * ACCEPTED to the stream, through apps->handles. */
enum handle_kind { HANDLE_STREAM, HANDLE_PAIR_END };

struct app_handle {
	enum handle_kind kind;
};

/* A stream between an app and a mux stream. */
struct shm_stream {
	struct app_handle h; /* first: apps->handles points here */
	struct apps *apps;
	struct app_session *client; /* NULL once the app let go or died */
	struct mux_stream *stream; /* NULL once the mux freed it */
	uint64_t handle;
	uint32_t slot; /* its bit in the client's doorbell bitmap */
	struct segment seg;
	/* The app learns of news through its client's news bitmap (one bit per slot) and, for a
	 * thread blocked on the stream, a futex wake on the ring's wait word: no descriptor per
	 * stream. An app that asks for a descriptor of the stream's own (wh_stream_fd) sends one
	 * end of a socket pair (STREAM_FD): we send a wake-up on it at each wake-up, and when we
	 * die or let go of the stream its other end hangs up. -1 until asked. */
	int wake_app;
	struct ring_producer to_app;
	struct ring_consumer from_app;
	uint64_t reported_tail; /* app consumption already passed to the mux */
	bool write_close_seen;
	bool end_noted; /* apps_stream_ending wrote the app's error message */
	bool awaiting_accept; /* handed to a listening app that has not accepted it yet */
	struct app_peer_share *share; /* the opener's part of the peer it was charged to, or NULL */
	double created;       /* ev_now at set-up (for wormhole-ctl's age) */
	LIST_ENTRY(shm_stream) link; /* in its app's list */
};

struct local_pair;

/* One end of a same-host stream, as its app knows it. */
struct pair_end {
	struct app_handle h; /* first: apps->handles points here */
	struct local_pair *pair;
	unsigned end;
	LIST_ENTRY(pair_end) link; /* in its app's list */
};

/* A stream between two local apps: one segment, both apps on it, the broker only watching. */
struct local_pair {
	struct apps *apps;
	struct app_session *ends[2]; /* opener writes ring 0, acceptor ring 1 */
	uint64_t handles[2];
	struct pair_end endpoints[2];
	struct segment seg;
	/* wake[i]: end i's socket of the pair's wake-up socket pair, handed to app i, which waits
	 * on it and sends on it to wake the other. We keep both only to shut down the end of an
	 * app that lets go or dies: the other then sees a hang-up. We never send or receive. */
	int wake[2];
	bool awaiting_accept; /* end 1 (the listener) has not accepted it yet */
};

struct queued {
	size_t length;
	int fds[ATTACH_MAX_FDS];
	unsigned nfds;
	bool reply; /* an answer to a request of the app's (counted in replies_queued) */
	uint8_t bytes[ATTACH_MESSAGE_MAX];
};

/* What one app holds and has done: its limits are checked against these, STATS reports them. */
struct app_counters {
	unsigned streams; /* streams it holds (a same-host pair is one for each end) */
	unsigned unaccepted; /* streams handed to it as a listener, not yet accepted */
	uint64_t ring_bytes; /* segment bytes of the streams it holds (a local pair counts for both) */
	uint64_t streams_opened, streams_accepted;
	uint64_t bytes_sent, bytes_received; /* through broker-joined streams */
};

struct app_session {
	struct apps *apps;
	int fd;
	ev_io reader, writer;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	uint32_t groups[64];  /* supplementary groups (SO_PEERGROUPS), for attach-groups */
	unsigned group_count;
	char id[2 * ATTACH_CLIENT_ID_SIZE + 1];
	bool welcomed, closing;
	bool reading_held;       /* REPLY_BACKLOG answers unread: its requests wait */
	bool answering;          /* in handle_message: what it sends is an answer */
	unsigned replies_queued; /* answers in the queue (reply) */
	const char *drop_reason; /* set: the loop's next prepare step drops the session */
	struct app_counters counters;
	unsigned listening; /* service names it listens on, in apps->services */
	LIST_HEAD(, shm_stream) shm_streams;
	LIST_HEAD(, pair_end) pair_ends;
	LIST_HEAD(, app_peer_share) peer_shares; /* one per peer it opened streams to */
	/* the doorbell: the app wakes us through a bitmap of stream slots and an eventfd we
	 * share, which we read with RWF_NOWAIT (or, on kernels without it, our end of a socket
	 * pair); we wake the app through the segment's second bitmap and our end of a socket
	 * pair, `news` (shared/attach_wake.h), whose other end is the app's own. */
	int doorbell;
	int news;
	ev_io doorbell_watcher;
	struct notify_segment *notify;
	size_t notify_size;
	struct shm_stream **slots; /* by slot; NULL: free */
	uint32_t slot_count, slot_hint;
	struct queued **queue;
	unsigned queue_head, queue_count, queue_max;
	LIST_ENTRY(app_session) link; /* in apps->sessions, or in apps->dropped once closing */
};

struct apps {
	struct ev_loop *loop;
	struct apps_config config;
	const struct log_sink *log;
	struct fd_budget *fds; /* every descriptor an app can make us hold comes from it */
	ev_timer accept_pause; /* accepting paused: no descriptor even to shed a connection */
	uint64_t accept_rests; /* times it rested (listener_rest.h) */
	apps_find_pool find_pool;
	void *find_ctx;
	int listen_fd;
	bool draining;    /* the broker stops: no new sessions or opens */
	bool map_limit_logged; /* a segment's mmap failed with ENOMEM: told once */
	bool doorbell_sockets; /* !eventfd_reads_nowait(): doorbells are socket pairs */
	dev_t socket_dev; /* the socket file we made: removed at stop only if it is still ours */
	ino_t socket_ino;
	ev_io acceptor;
	LIST_HEAD(, app_session) sessions;
	/* Dropped sessions wait here until the loop's next prepare step frees them: a drop can
	 * happen deep inside a handler whose callers still hold the pointer. */
	LIST_HEAD(, app_session) dropped;
	ev_prepare reaper;
	struct service_registry services; /* service name -> the app session listening on it */
	struct stream_table handles; /* handle -> struct app_handle, of every app's streams */
	uint64_t next_handle;
	struct apps_stats stats;
};

/* The most segment memory one app may hold (app-max-ring-memory, or max_streams segments). */
uint64_t ring_memory_limit(const struct apps *apps);

/* What STATS tells the app (app_inspect.c; the control tool shows the same). */
void apps_session_counters(const struct app_session *c, struct attach_stats *counters);

/* ---- app_segments.c ------------------------------------------------------------ */

/* Descriptors an app can make us hold come from the budget; the kernel's own EMFILE and
 * ENFILE say the same thing. Both become WH_EDESCRIPTORS, never "out of memory". */
int errno_error(void);

/* A non-blocking eventfd from the budget (a doorbell); the descriptor, or a negative WH_E*
 * code. */
int budget_eventfd(struct apps *apps, enum fd_use use);

/* Can this kernel read an eventfd without blocking whatever its flags (preadv2 with
 * RWF_NOWAIT: Linux 5.12 and later)? Where it cannot, doorbells are socket pairs. */
bool eventfd_reads_nowait(void);

/* Takes the wake-ups the app's doorbell holds, never blocking; false if the app closed its
 * end of a socket doorbell (it can ring no more). */
bool doorbell_take(struct app_session *c);

/* A wake-up socket pair (shared/attach_wake.h) from the budget, two descriptors: WH_OK, or
 * a negative WH_E* code (fds[] are then -1). */
int budget_wake_pair(struct apps *apps, enum fd_use use, int fds[2]);

void budget_close(struct apps *apps, int fd);

int segment_create(struct apps *apps, struct segment *seg, uint32_t capacity, uint64_t handle);

/* After the hand-over the mapping is all the broker needs: one descriptor less per stream. */
void segment_drop_fd(struct apps *apps, struct segment *seg);

void segment_destroy(struct apps *apps, struct segment *seg);

/* Tells the app a stream to a peer broker has news. flags: what the app announced on the
 * ring (RING_WAIT_*, from a wake_needed; 0: nobody waits, nothing is done); a sleeping
 * thread is woken on sleeper_word. Sets the stream's news bit (and sends a wake-up on the
 * news socket if the app is armed) and one on the stream's own socket if the app asked for
 * one. Every send is MSG_DONTWAIT: nothing the app does makes it block. */
void wake_app(const struct shm_stream *s, uint32_t flags, uint32_t *sleeper_word);

/* The stream ended or failed: whoever waits in either direction is woken, and the news is
 * posted whether or not anybody waits (the app finds it on its next look). */
void wake_app_both(struct shm_stream *s);

/* ---- app_sendq.c --------------------------------------------------------------- */

void queued_free(struct apps *apps, struct queued *q);

void flush_queue(struct app_session *c);
void session_release_reading(struct app_session *c);

/* Sends a message now, or queues it with duplicates of its fds; the caller keeps its own.
 * WH_OK, or why it could not be sent (the session may have been dropped). */
int session_send(struct app_session *c, const struct attach_msg *msg, const int *fds, unsigned nfds);

void session_send_result(struct app_session *c, uint32_t request_id, int error, const char *message);

/* Hands a stream to the app. wake: its end of a same-host stream's wake-up pair; -1 for a
 * stream to a peer broker (the app rings the doorbell for slot instead).
 * WH_OK once sent or queued; otherwise the app did not get it (WH_EDESCRIPTORS, ...). */
int session_hand_over(struct app_session *c, enum attach_type type, uint32_t request_id, uint64_t handle,
		       const struct segment *seg, int wake, uint32_t slot, unsigned tx_ring,
		       const char *service, const char *peer);

/* ---- app_streams.c ------------------------------------------------------------- */

/* The app rang: serve every stream whose bit is set, re-arm, and look once more. */
void on_doorbell(struct ev_loop *loop, ev_io *w, int revents);

/* Joins a mux stream to a new segment for app c. WH_OK, or WH_EDESCRIPTORS, WH_ENOMEM,
 * WH_ESYSTEM (logged); on failure the mux stream is untouched. */
int shm_new(struct apps *apps, struct app_session *c, struct mux_stream *stream, struct shm_stream **out);

/* The app has its segment: the mapping is all we need. */
void shm_handed_over(struct shm_stream *s);

/* STREAM_FD: the app's wake-up pipe for one of its streams (fd is ours to keep or close). */
void shm_take_app_pipe(struct app_session *c, uint64_t handle, int fd);

/* Takes the stream off its app's books; the mux side is not touched. */
void shm_unlink_client(struct shm_stream *s);

/* The app is done with the stream (RELEASE, error WH_OK) or it is ended for the app with
 * `error` (the app died, or the hand-over failed): the mux side finishes on its own. */
void shm_detach_client(struct shm_stream *s, int error, const char *why);

/* ---- local_pairs.c ------------------------------------------------------------- */

/* End `end` of the pair lets go; if it died, the other end is told so through the rings.
 * True if that freed the pair. */
bool pair_detach(struct local_pair *p, unsigned end, bool died);

void open_local(struct app_session *c, const struct attach_msg *req);

/* ---- app_opens.c --------------------------------------------------------------- */

void open_through_pool(struct app_session *c, const struct attach_msg *req);

/* The app is gone: its shares are freed, or left to the streams still charged to them. */
void peer_shares_release(struct app_session *c);

/* A stream charged to share was freed: the share goes too if it was the last of a gone app. */
void peer_share_stream_gone(struct app_peer_share *share);

/* ---- app_sessions.c ------------------------------------------------------------ */

/* May c hold one more stream? WH_OK, or WH_ELIMIT with the reason in *why. */
int session_admit(const struct app_session *c, const char **why);

/* May the app listening on a service be handed one more stream? WH_OK, or
 * WH_EACCEPT_QUEUE_FULL when it has accept_backlog streams it has not taken with wh_accept
 * yet, or WH_ELIMIT. */
int listener_admit(const struct app_session *listener, const char **why);

struct app_session *session_by_id(struct apps *apps, const char *id);

/* A new session on an accepted app connection (its descriptor from the budget, closed
 * here if the session cannot be made); it waits for the app's HELLO. */
void session_start(struct apps *apps, int fd);

/* Ends the session: streams end with an error the remote sees, memory and fds are freed. */
void session_drop(struct app_session *c, const char *why);

void sessions_free_dropped(struct apps *apps);

void session_drop_later(struct app_session *c, const char *why);

/* The loop's prepare step: sessions marked for dropping go, dropped ones are freed. */
void on_sessions_reap(struct ev_loop *loop, ev_prepare *w, int revents);

#endif
