/*
 * libwormholeclient: the public API apps link to open and accept streams through a
 * wormhole-broker. This is the only header apps include; every public symbol starts with wh_.
 *
 * Model. An app attaches to the broker on its Unix socket (wh_client_attach), then opens
 * streams to a service on a peer broker, or on "local" for another app on the same host
 * (wh_open), or listens for a service and accepts the streams opened to it (wh_listen,
 * wh_accept). A stream is a reliable, ordered byte stream in both directions, like a TCP
 * connection: read, write, half-close (wh_shutdown), close. Stream bytes move through shared
 * memory, never through the socket.
 *
 * Errors. Functions return 0 (WH_OK) or a count on success and a negative WH_E* code on
 * failure (<wormhole/errors.h>, wh_strerror). WH_EBROKER_GONE means the broker died or closed
 * the session: every call on that client and its streams returns it from then on.
 *
 * Threads. A wh_client is used by one thread at a time. A wh_stream may have one reading
 * thread and one writing thread at once, as a socket may (a TCP bridge's pump): wh_read,
 * wh_read_peek and wh_read_consume are the reader's; wh_write, wh_write_reserve,
 * wh_write_commit and wh_shutdown the writer's; either may call wh_abort, wh_stream_fd,
 * wh_stream_error, wh_stream_is_closed, the wh_set_* and the getters, blocking or not (both
 * may wait on wh_stream_fd). Two readers, or two writers, at once are not allowed. wh_close
 * frees the stream: call it when no other thread is in, or will start, a call on it.
 * Distinct streams of one client may be used from different threads at once. Nothing in the
 * library is global: handles share no state.
 *
 * Blocking. Calls block by default; wh_set_nonblocking makes a stream's reads and writes
 * return WH_EWOULDBLOCK instead, and wh_client_wait_fd (all of a client's streams),
 * wh_stream_fd (one stream) and wh_client_fd give descriptors that an app's own epoll or
 * libev loop can wait on (readable when there may be news; then retry). A stream to a peer
 * broker costs the app no descriptor unless wh_stream_fd asks for one.
 * Deadlines (the seed's SetDeadline) bound blocking calls: WH_ETIMEOUT when one passes.
 */
#ifndef WORMHOLE_WORMHOLE_H
#define WORMHOLE_WORMHOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wormhole/errors.h>
#include <wormhole/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where apps attach unless told otherwise (or the WORMHOLE_SOCKET environment variable). */
#define WH_DEFAULT_SOCKET "/run/wormhole/broker.sock"
/* The peer name for streams between apps attached to the same broker. */
#define WH_PEER_LOCAL "local"

typedef struct wh_client wh_client;
typedef struct wh_stream wh_stream;

/* The library's package version at run time, e.g. "0.1.0" (WH_VERSION_STRING is the one the
 * app was compiled against, <wormhole/version.h>). Static string; never fails. */
WH_EXPORT const char *wh_version(void);

/* CLOCK_MONOTONIC now, in nanoseconds: the clock deadlines use. */
WH_EXPORT int64_t wh_now_ns(void);

/* ---- attaching ----------------------------------------------------------------------- */

/* The most bytes (with NUL) of a detail string: wh_client_errmsg, wh_client_attach_detail. */
#define WH_DETAIL_MAX 512

/* Connects to the broker at socket_path (NULL: $WORMHOLE_SOCKET, else WH_DEFAULT_SOCKET)
 * and says hello. On WH_OK *out is the new client, to be released with wh_client_detach.
 * Errors, each a different situation:
 *   WH_ENO_BROKER      nothing listens there: no such file, or a socket a stopped broker left
 *   WH_ESOCKET_DENIED  the broker runs, but this user may not connect (the socket's mode and
 *                      group; a directory on the path)
 *   WH_ENOT_BROKER     a file that is not a socket, a socket of another kind (the control
 *                      socket), or something that does not speak the attach protocol
 *   WH_EACCESS         the broker refused this user (attach-users, attach-groups)
 *   WH_EPROTOCOL       a broker of an incompatible release
 *   WH_EBROKER_GONE    the broker closed the session at once (stopping, out of descriptors)
 *   WH_ETIMEOUT, WH_ENOMEM, WH_EINVAL (path too long) */
WH_EXPORT int wh_client_attach(const char *socket_path, wh_client **out);
/* Attaches as wh_client_attach does, and on failure writes a sentence in detail (up to length bytes, NUL-terminated; may be
 * NULL) that names the path, the reason and what to do, e.g.
 *   "permission denied on /run/wormhole/broker.sock: uid 1000 may not connect (the socket is
 *    mode 0660, owner uid 0, group wormhole (gid 990): join the group or ask for socket-mode)"
 * Like libcurl's error buffer: the caller owns the memory, nothing is kept. */
WH_EXPORT int wh_client_attach_detail(const char *socket_path, wh_client **out, char *detail,
				      size_t length);
/* Why the last call on this client that failed failed, in words: the broker's own (e.g.
 * "another app listens on that service", "no connection to peer a: connection refused") or
 * the library's. "" after a call that succeeded. Owned by the client, valid until its next
 * call; like sqlite3_errmsg, it belongs to the client's thread. */
WH_EXPORT const char *wh_client_errmsg(const wh_client *client);
/* Closes every stream still open (as wh_close does) and the session. NULL is a no-op. */
WH_EXPORT void wh_client_detach(wh_client *client);
/* A descriptor that is readable when an incoming stream or a broker message waits, and
 * reports hang-up when the broker is gone. Owned by the client. */
WH_EXPORT int wh_client_fd(const wh_client *client);
/* The id the broker gave this session (32 hex digits), as it appears in broker logs. */
WH_EXPORT const char *wh_client_id(const wh_client *client);

/* What the broker counts for this session (wh_client_stats). Counters are totals since the
 * session attached; "now" values are as of the answer. Fields are only ever appended, and
 * the reserved ones are zero. */
struct wh_client_stats {
	uint64_t streams;          /* streams this session holds now */
	uint64_t streams_opened;   /* streams it opened */
	uint64_t streams_accepted; /* streams handed to it as a listener */
	uint64_t ring_bytes;       /* shared memory (segments) allotted to its streams now */
	uint64_t ring_bytes_limit; /* the most it may have: opens beyond it fail with WH_ELIMIT */
	uint64_t max_streams;      /* the most streams it may hold */
	uint64_t bytes_sent;       /* bytes the broker took from its rings for peer brokers */
	uint64_t bytes_received;   /* bytes the broker put into its rings from peer brokers */
	uint64_t broker_clients;   /* sessions attached to the broker now */
	uint64_t broker_streams;   /* streams between apps and the broker now, all sessions */
	uint64_t reserved[6];
};

/* Asks the broker for this session's counters (one round trip on the control socket).
 * Same-host streams are counted in streams and ring_bytes but not in the byte counters: their
 * bytes never pass through the broker. Streams arriving meanwhile wait for wh_accept.
 * Errors: WH_EBROKER_GONE, WH_ETIMEOUT (no answer in 10 s), WH_EPROTOCOL, WH_EINVAL. */
WH_EXPORT int wh_client_stats(wh_client *client, struct wh_client_stats *stats);

/* ---- opening and accepting ------------------------------------------------------------ */

/* Opens a stream to `service` (NULL or "": the peer's default) on `peer` (a peer broker's
 * name from the broker's configuration, or WH_PEER_LOCAL). Returns once the broker has the
 * stream: data may be written at once.
 * timeout_ms bounds the wait for a connection to the peer, and the broker keeps it: it
 * answers by then, and a stream its pool would deliver later is ended at once, so a
 * timed-out open leaves nothing behind. 0: only if a connection is ready now. < 0: as long
 * as the broker's connect-timeout for the peer allows.
 * Errors (wh_client_errmsg says more):
 *   WH_EPEER_UNREACHABLE  the broker cannot reach the peer and knows why ("peer a
 *                         (10.0.0.2:7420): Connection refused; next dial in 0.8 s"): at once
 *                         when its last dial failed, else at the timeout
 *   WH_ETIMEOUT           no connection to the peer within the timeout
 *   WH_EUNKNOWN_PEER      no peer of that name is configured
 *   WH_EMUX_CLOSED        the broker takes no new streams to that peer (drain, stopping)
 *   WH_ENO_SERVICE (local: nobody listens), WH_EACCESS (local: the broker's rules keep the
 *   service from local apps), WH_ELIMIT, WH_EBROKER_GONE, WH_EINVAL, WH_ENOMEM.
 * A remote refusal (no such service there, queue full, WH_EACCESS: the peer's rules refuse
 * this broker) arrives as the stream's error. */
WH_EXPORT int wh_open(wh_client *client, const char *peer, const char *service, int timeout_ms,
		      wh_stream **out);
/*
 * Opens a stream without blocking, for apps with an event loop. wh_open_start sends the open and
 * returns at once with a ticket; the answer arrives on wh_client_fd, which is level-triggered
 * (readable while a message from the broker waits unread). wh_open_result then returns
 * WH_OK with the stream, WH_EWOULDBLOCK while the answer has not come, or the open's error
 * (as wh_open's); the ticket is spent by any answer but WH_EWOULDBLOCK. Answers that arrive
 * while the app calls other functions of the client (wh_accept, wh_listen, ...) are kept for
 * their ticket, and incoming streams for wh_accept, so that readiness can be spent by any of
 * them: after wakeups, try both wh_open_result for the tickets out and wh_accept with timeout
 * 0. wh_open_cancel gives up on a ticket: a stream it brings is handed back to the broker.
 * Errors: WH_EINVAL (no such ticket), and as wh_open.
 */
WH_EXPORT int wh_open_start(wh_client *client, const char *peer, const char *service, int timeout_ms,
			    uint64_t *ticket);
WH_EXPORT int wh_open_result(wh_client *client, uint64_t ticket, wh_stream **out);
WH_EXPORT int wh_open_cancel(wh_client *client, uint64_t ticket);
/* Streams opened to `service` ("" is the default service) are delivered to wh_accept.
 * Errors: WH_ESERVICE_TAKEN (another app listens on it), WH_EACCESS (the default service, or
 * one the broker's rules reserve to another user or group), WH_ELIMIT (this app listens on
 * app-max-listeners names already), WH_EBROKER_GONE, WH_EINVAL. */
WH_EXPORT int wh_listen(wh_client *client, const char *service);
/* Stops listening; streams already queued for wh_accept stay there. Errors: WH_ENO_SERVICE
 * (this client does not listen on it), WH_EBROKER_GONE, WH_EINVAL. */
WH_EXPORT int wh_unlisten(wh_client *client, const char *service);
/* The next incoming stream on any service this client listens on. timeout_ms: < 0 waits,
 * 0 polls. The broker hands a listening client at most its accept backlog (256 by default,
 * the broker's --app-accept-backlog) of streams not yet taken here; opens beyond that are
 * refused with WH_EACCEPT_QUEUE_FULL (wire code 503). Errors: WH_ETIMEOUT (nothing came;
 * WH_EWOULDBLOCK for timeout 0), WH_EBROKER_GONE, WH_ENOMEM, WH_EPROTOCOL. */
WH_EXPORT int wh_accept(wh_client *client, int timeout_ms, wh_stream **out);

/* ---- reading and writing -------------------------------------------------------------- */

/* Reads up to len bytes: > 0 bytes read, 0 at end of stream (the peer half-closed and every
 * byte was read), or an error: the stream's error (WH_EREMOTE and friends, see
 * wh_stream_error), WH_EWOULDBLOCK (non-blocking, nothing yet), WH_ETIMEOUT (read deadline),
 * WH_EBROKER_GONE, WH_ERING_CORRUPT. */
WH_EXPORT long wh_read(wh_stream *stream, void *buf, size_t len);
/* Writes len bytes. Blocking: returns len once all are in the stream, or an error (bytes
 * written before the error are not reported separately). Non-blocking: as many as fit
 * (> 0) or WH_EWOULDBLOCK. Once the other end closed the stream (wh_close: it reads no
 * more) writes complete at once and their bytes are discarded, through a broker and on the
 * same host alike. Errors also: WH_ESTREAM_CLOSED after wh_shutdown, the stream's error,
 * WH_ETIMEOUT (write deadline), WH_EBROKER_GONE. */
WH_EXPORT long wh_write(wh_stream *stream, const void *buf, size_t len);

/* Zero-copy reads and writes, in the stream's shared memory. read_peek: *data points at up to the returned count of readable bytes
 * in shared memory (0: end of stream; errors as wh_read; in blocking mode waits for at least
 * one byte); the bytes stay until wh_read_consume. write_reserve: *data points at room for
 * up to the returned count (blocking mode waits for some room; errors as wh_write, and
 * WH_ESTREAM_CLOSED once the other end closed the stream); nothing is sent until
 * wh_write_commit. n must not exceed what peek/reserve returned (WH_EINVAL). */
WH_EXPORT long wh_read_peek(wh_stream *stream, const void **data);
WH_EXPORT int wh_read_consume(wh_stream *stream, size_t n);
WH_EXPORT long wh_write_reserve(wh_stream *stream, void **data);
WH_EXPORT int wh_write_commit(wh_stream *stream, size_t n);

/* Half-closes the stream: no more writes; the peer reads every byte written, then end of stream. The
 * read side stays open. WH_ESTREAM_CLOSED if already shut down. */
WH_EXPORT int wh_shutdown(wh_stream *stream);
/* Ends the stream abnormally: the peer sees `error` (e.g. WH_ESTREAM_CLOSED: "cancelled")
 * with the code's wire value. The handle stays valid until wh_close. */
WH_EXPORT int wh_abort(wh_stream *stream, int error);
/* Half-closes if needed, stops reading (later bytes are discarded) and frees the handle.
 * Bytes already written are still delivered. Always succeeds; NULL is a no-op. */
WH_EXPORT int wh_close(wh_stream *stream);

/* ---- blocking, deadlines, polling --------------------------------------------------- */

/* Sets non-blocking mode: reads and writes that would wait return WH_EWOULDBLOCK instead (wait
 * on wh_stream_fd, then retry). Blocking is the default. WH_OK, or WH_EINVAL for NULL. */
WH_EXPORT int wh_set_nonblocking(wh_stream *stream, bool nonblocking);
/* Absolute CLOCK_MONOTONIC deadlines in nanoseconds (wh_now_ns() + timeout); 0 clears.
 * wh_set_deadline sets both. They apply to calls that block and to calls already waiting
 * from the next wake-up on. Always WH_OK. */
WH_EXPORT int wh_set_deadline(wh_stream *stream, int64_t deadline_ns);
WH_EXPORT int wh_set_read_deadline(wh_stream *stream, int64_t deadline_ns);
WH_EXPORT int wh_set_write_deadline(wh_stream *stream, int64_t deadline_ns);
/* How long (ns) a blocking call watches the ring before it announces that it waits and
 * sleeps; 0 (the default, or $WH_SPIN_NS when set) never spins. News that
 * arrives while it spins costs neither side a system call: a same-host round trip drops from
 * tens of microseconds to a few. Through two brokers it pays only when the spin outlasts the
 * reply (docs/ATTACH.md). It pays best when each side has a CPU of its own; on a busy machine
 * it takes time from the processes it waits for. It never outlasts the call's deadline;
 * non-blocking streams never spin. Always WH_OK. */
WH_EXPORT int wh_set_spin(wh_stream *stream, int64_t spin_ns);
/* A descriptor that becomes readable when the stream may have news (bytes, room, end, error);
 * level-triggered, for poll, epoll or libev. After WH_EWOULDBLOCK, wait for it and retry
 * the call that returned it: a stream read and written at once has one descriptor for both,
 * and it stays readable while a call that returned WH_EWOULDBLOCK could go on, until that
 * call is made again. For a stream to a peer broker it is made by the first call (streams
 * have none until asked: one descriptor here and one in the broker, until wh_close; with
 * many streams, wait on wh_client_wait_fd instead): one end of a socket pair whose other end
 * the broker holds, so it also becomes readable when the broker dies, and the next call
 * returns WH_EBROKER_GONE. A same-host stream's is its end of a socket pair whose other end
 * its partner app holds: it goes on working between the two apps while they live (watch
 * wh_client_fd for the broker's hang-up), and hangs up when the partner lets go or dies.
 * Owned by the stream: do not read, write, change or close it. -1 for NULL, or when no
 * descriptor can be made (wh_client_errmsg says why).
 * The stream is not const (it was, wrongly, until 0.1.0; same symbol, same ABI): the first
 * call changes the stream, makes a socket pair, tells the broker and may set the client's
 * wh_client_errmsg, so it is no mere look at the stream. Callers passing a wh_stream * need
 * no change. Any thread using the stream may call it: the descriptor is made once, under the
 * client's lock. */
WH_EXPORT int wh_stream_fd(wh_stream *stream);

/* ---- many streams, one descriptor ---------------------------------------------------- */

/* What wh_client_wait reports: a stream that may have news (bytes, room, its end, an error),
 * or with stream NULL news for the client itself (an incoming stream for wh_accept, the
 * answer to a wh_open_start, the broker's hang-up). */
#define WH_EVENT_NEWS 1u
struct wh_event {
	wh_stream *stream;
	uint32_t events; /* WH_EVENT_NEWS */
};
/*
 * Waits, like epoll_wait, until some of the client's streams (or the client) may have news,
 * and returns how many events it stored (at most max), or 0 when timeout_ms (< 0: no limit)
 * passed first. Level-triggered: a stream is reported for as long as its news is not taken,
 * that is until a wh_read or wh_write on it finds nothing to do (WH_EWOULDBLOCK); a new
 * stream is reported once; when more streams have news than max, they are reported in turns.
 * Every stream of the client is in the set from its open or accept to its wh_close, at no
 * descriptor's cost (the broker names streams with news in a bitmap); a stream closed on
 * another thread while this call runs is not reported. Errors: WH_EINVAL, WH_ESYSTEM.
 * Call it from the client's thread.
 * A batch names each stream at most once, so closing the stream of the event in hand is
 * safe. Closing another stream of the batch (a bridge closing both halves) is not, for an
 * event after it: wh_close frees the handle at once, and that event's pointer dangles. Before
 * such a wh_close, set the events that name it to 0 (the library never reports an event with
 * events 0) and skip those; or close at the end of the batch. The same holds for a stream
 * another thread closes while the batch is handled: the app must order the two itself.
 */
WH_EXPORT int wh_client_wait(wh_client *client, struct wh_event *events, int max, int timeout_ms);
/* One descriptor for an app's own event loop (poll, epoll, libev): readable when
 * wh_client_wait would report something. Owned by the client. -1 for NULL or when it
 * cannot be made (wh_client_errmsg says why). The set behind it is made by the first call
 * of either function, so clients that never use them pay nothing for it. */
WH_EXPORT int wh_client_wait_fd(wh_client *client);

/* ---- what a stream is ------------------------------------------------------------------- */

/* The app's own pointer for a stream (what epoll's data.ptr is to a descriptor): NULL until
 * set, never touched by the library. Find the app's state of a stream wh_client_wait reports
 * with it. */
WH_EXPORT void wh_stream_set_userdata(wh_stream *stream, void *userdata);
WH_EXPORT void *wh_stream_userdata(const wh_stream *stream);

/* The stream's handle: the number the broker knows it by, unique while the broker runs
 * (`wormhole-ctl streams` shows it as the stream of a same-host stream, conn 0). */
WH_EXPORT uint64_t wh_stream_id(const wh_stream *stream);
/* The service it was opened to or accepted on, and the peer broker at the other end, named
 * as this broker names it: for a stream this app opened, the peer name it gave wh_open; for
 * an accepted one, the peer's certificate identity over TLS, or its address HOST:PORT over
 * plaintext, or the configured name when the stream came on a connection this broker
 * dialled; "local" for a same-host stream. Strings owned by the stream. */
WH_EXPORT const char *wh_stream_service(const wh_stream *stream);
WH_EXPORT const char *wh_stream_peer(const wh_stream *stream);
/* True once the stream ended: both sides closed and every byte was read, or an error. */
WH_EXPORT bool wh_stream_is_closed(wh_stream *stream);
/* WH_OK, or the error that ended the stream. For an error from the remote end, the wire
 * code (e.g. 503) and its message are stored in *remote_code and *message (either may be
 * NULL); otherwise 0 and a description. The message is owned by the stream. */
WH_EXPORT int wh_stream_error(wh_stream *stream, uint32_t *remote_code, const char **message);

#ifdef __cplusplus
}
#endif

#endif /* WORMHOLE_WORMHOLE_H */
