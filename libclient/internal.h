/* The library's private structures, shared by client.c and stream.c. */
#ifndef WORMHOLE_LIBCLIENT_INTERNAL_H
#define WORMHOLE_LIBCLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <wormhole/wormhole.h>

#include "attach_msg.h"
#include "ring.h"

/* A stream handed over by the broker, waiting for wh_accept. */
struct pending_stream {
	struct attach_msg msg;
	int fds[ATTACH_MAX_FDS];
	struct pending_stream *next;
};

/* An open started with wh_open_start: its answer, once it came, waits here for
 * wh_open_result. */
struct pending_open {
	uint32_t request_id;
	int64_t give_up;          /* past this (the timeout and some grace) the app is told
				   * WH_ETIMEOUT; 0: no bound */
	bool answered;
	struct attach_msg answer; /* OPENED or RESULT */
	int fds[ATTACH_MAX_FDS];
	char peer[ATTACH_STRING_MAX + 1], service[ATTACH_STRING_MAX + 1];
	struct pending_open *next;
};

struct wh_client {
	int fd;
	atomic_bool broker_gone; /* read by every stream's thread */
	uint32_t next_request;
	uint32_t ring_capacity;
	int doorbell;                  /* wakes the broker for any stream: an eventfd we share with
					* it, or (kernels before 5.12) our end of a socket pair */
	bool doorbell_socket;
	int news;                      /* our end of a socket pair: the broker wakes us through it */
	int news_self;                 /* an eventfd only we hold: keeps the wait set readable */
	struct notify_segment *notify; /* which streams: one bit per slot, each way */
	size_t notify_size;
	uint32_t slots;
	bool news_pending;             /* we wrote `news_self` and nobody read it since */
	char id[2 * ATTACH_CLIENT_ID_SIZE + 1];
	char detail[WH_DETAIL_MAX]; /* why the last failed call failed (wh_client_errmsg) */
	struct pending_stream *accept_head, *accept_tail;
	struct pending_open *opens;    /* started, not yet taken by wh_open_result */
	/* Open handles, closed by wh_client_detach. wh_close runs on any stream's thread while
	 * the client's thread adds streams (wh_open, wh_accept): the list has its own lock. */
	pthread_mutex_t streams_lock;
	struct wh_stream *streams;
	/* Streams to a peer broker by their slot in the notify bitmaps (under streams_lock). */
	struct wh_stream **by_slot;
	/* Streams that may have news, in the order they got it: what wh_client_wait reports,
	 * level-triggered (a stream leaves when a call on it finds nothing to do). Under
	 * streams_lock. */
	struct wh_stream *ready_head, *ready_tail;
	/* wh_client_wait's epoll set: the socket, the news socket, news_self and the sockets of same-host
	 * streams (streams to a peer broker need none: the news bitmap names them). Entries of
	 * same-host streams name them by a slot in wait_table and a generation (never by
	 * pointer), so an event for a stream closed meanwhile on another thread is recognised
	 * and dropped. The table is under streams_lock. */
	int epoll_fd;
	struct wh_stream **wait_table;
	uint32_t wait_capacity, wait_hint, wait_generation;
};

struct wh_stream {
	struct wh_client *client;
	uint64_t handle;
	void *segment;
	size_t segment_size;
	/* A descriptor the app may wait on, our end of a socket pair (shared/attach_wake.h): for
	 * a same-host stream, the partner app holds the other end (it sends on it to wake us, we
	 * send on ours to wake it); for a stream to a peer broker, made only when wh_stream_fd
	 * asks, the broker holds the other end. A hang-up means the other end let go or died.
	 * Else -1: a blocking call sleeps on the ring's wait word (futex) and wh_client_wait
	 * learns of news from the news bitmap. */
	_Atomic int fd; /* set once, by wh_stream_fd on either direction's thread */
	bool local;     /* a same-host stream: wakes its partner on fd, not the doorbell */
	/* One thread may read while another writes (wormhole.h, Threads): tx is the writer's,
	 * rx the reader's; what both directions touch is atomic (plain loads and stores on
	 * x86-64 and arm64, relaxed where order does not matter), or under `lock`, which only
	 * the slow paths take: draining the wake-ups of fd, and recording the error. */
	_Atomic bool hung_up; /* the other end of fd is closed or shut down */
	uint32_t slot;
	struct ring_producer tx;
	struct ring_consumer rx;
	_Atomic bool nonblocking, write_closed;
	bool aborted;
	_Atomic bool want_read, want_write; /* a non-blocking call returns WH_EWOULDBLOCK */
	_Atomic int error; /* sticky once the stream failed; message written first, under lock */
	_Atomic int64_t read_deadline, write_deadline;
	_Atomic int64_t spin_ns; /* how long a blocking call watches the ring before it sleeps */
	pthread_mutex_t lock;
	char service[ATTACH_STRING_MAX + 1];
	char peer[ATTACH_STRING_MAX + 1];
	char message[RING_MESSAGE_MAX];
	void *userdata; /* the app's (wh_stream_set_userdata) */
	uint32_t wait_slot, wait_generation; /* its entry in the client's epoll set */
	_Atomic bool ready; /* on the client's ready list (changed under streams_lock) */
	struct wh_stream *ready_prev, *ready_next;
	struct wh_stream *prev, *next;
};

/* Maps a handed-over stream; takes ownership of the fds (closed on failure too). On failure
 * the caller hands the stream back to the broker (RELEASE). */
int stream_from_message(struct wh_client *client, const struct attach_msg *msg,
			const int fds[ATTACH_MAX_FDS], struct wh_stream **out);
/* Enters a new stream in the client's epoll set, and takes it out (under streams_lock). */
int client_wait_add(struct wh_client *client, struct wh_stream *stream);
void client_wait_remove(struct wh_client *client, struct wh_stream *stream);
/* Sends one attach message (no fds), or with one descriptor (fd >= 0; STREAM_FD). */
int client_send(struct wh_client *client, const struct attach_msg *msg);
int client_send_fd(struct wh_client *client, const struct attach_msg *msg, int fd);
/* The stream may have news: onto the ready list if not there yet (under streams_lock). */
void client_ready_add(struct wh_client *client, struct wh_stream *stream);
/* Off the ready list, for good (wh_close), the caller holding streams_lock. */
void client_ready_remove_locked(struct wh_client *client, struct wh_stream *stream);
/* Off the ready list; true if it was on it. Takes streams_lock only when it may have been. */
bool client_ready_take(struct wh_client *client, struct wh_stream *stream);
/* Wakes the broker (its doorbell); never blocks. */
void client_ring(struct wh_client *client);
/* Looks (without waiting) whether the broker hung up the session; if so every call says
 * WH_EBROKER_GONE from now on. Returns the flag. */
bool client_broker_gone(struct wh_client *client);

#endif
