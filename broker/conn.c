/* A TCP connection running a mux on the broker's libev loop: the socket side of broker/mux.c. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "tls.h"

#define PRIVATE_READ_SIZE (64u * 1024u)
#define READ_BYTES_PER_WAKEUP (2u * 1024u * 1024u) /* then let other connections run */
/* Bytes cost little, frames cost more (a HANDSHAKE opens a stream): a connection that sends
 * many small frames (a flood of HANDSHAKEs and resets) is read in small pieces and at most
 * this many frames per wake-up, so other connections wait milliseconds, not a second. */
#define FRAMES_PER_WAKEUP 2048u
#define DENSE_READ_SIZE (16u * 1024u)
#define DENSE_FRAME_BYTES 256u /* average frame size below which input counts as dense */
/* A connection's turn on the loop is also bounded in CPU time: bytes can cost far more than
 * their copy. DATA for a built-in service's streams is copied twice more and lands in fresh
 * memory, each new page a fault (about 28 us here): a peer that fills 1000 echo windows made
 * every read of 1 MiB cost 14 ms, during which no other connection was read and a bulk
 * stream's window updates waited. Each read is sized to what the connection's recent bytes
 * cost (time per byte, a moving average), so that a turn takes about READ_SLICE_SECONDS;
 * the bytes of a turn are counted over both parts of each read (the payload read straight
 * into a stream's store and what lands in the read area after it), or a turn ran to two or
 * three slices. Cheap bulk bytes still go in reads of up to the whole read area. */
#define READ_SLICE_SECONDS 0.0001
#define READ_SLICE_MIN (4u * 1024u) /* never smaller reads than this */
#define WRITE_IOV 64
/* The socket reports writable only while fewer unsent bytes than this are queued in it.
 * Smaller keeps more frames in our scheduler, where an interactive stream can overtake a
 * bulk one; but each writable event then moves less, and below ~512 KiB the wake-ups cost
 * a bulk stream a third of its speed on a 2-vCPU machine (docs/BROKER.md, "Writing and scheduling"). */
#define NOTSENT_LOWAT (512 * 1024)
/* TLS output: spans at least this long are encrypted straight from where the mux keeps them
 * (a ring, a stream's buffer); shorter ones (frame headers, small frames) are gathered into
 * one record first, so a header does not cost a record of its own. */
#define TLS_DIRECT_MIN (4u * 1024u)
#define TLS_RECORD (16u * 1024u)
#define TLS_WRITE_MAX (128u * 1024u) /* per SSL_write: half the session's record buffer */
#define TLS_FLUSH_MAX (512u * 1024u) /* per flush, then wait for the socket as plaintext does */

struct conn {
	struct ev_loop *loop;
	int fd;
	struct mux *mux;
	struct mux_callbacks user_callbacks;
	void *user;
	const struct log_sink *log;
	ev_io read_watcher;
	ev_io write_watcher;
	ev_prepare flush_watcher;
	ev_timer keepalive_timer;
	int close_error;
	bool closing;   /* the mux closed: the next prepare step tears the socket down */
	bool fd_closed;
	bool timer_dirty; /* the mux wants mux_timer sooner: rearm from the loop */
	bool dense;       /* its last reads were many small frames: read in small pieces */
	double cost_per_byte; /* seconds its input took us per byte, a moving average (0: none yet) */
	char local[64], remote[64];
	double started;           /* ev_now when it was made */
	/* TLS: NULL for plaintext */
	struct tls_session *tls;
	bool handshaking;          /* no frame is read or written before the handshake ends */
	bool held;                 /* accepted, its handshake not started yet (conn_start_handshake) */
	bool read_wants_write;     /* a TLS read needs the socket writable first */
	size_t tls_retry;          /* a write that could not finish: its length, to repeat */
	bool tls_retry_staged;     /* ... and whether it came from tls_out */
	ev_timer handshake_timer;  /* TLS done and a first frame in, or the connection ends */
	ev_timer resume_timer;     /* reading paused (store-rate): when it goes on */
	bool pause_logged;         /* the first pause was logged; the rest are counted */
	double read_held_until;    /* conn_hold_reading: not read before this (clock_seconds) */
	bool awaiting_first_frame; /* accepted: no complete frame from the peer yet */
	void (*on_ready)(struct conn *conn, void *user);
	const struct conn_shared *shared; /* its on_free, read at free (NULL: none) */
	bool dialled;                     /* client_role: this broker dialled it */
	char identity[256];        /* the peer's name from its certificate */
	uint8_t *tls_out;          /* TLS_RECORD bytes: small pieces gathered into one record */
	uint8_t *read_buffer; /* the shared read area, or private_buffer */
	size_t read_size;
	uint8_t private_buffer[];
};

int conn_shared_init(struct conn_shared *shared, struct mux_budget *budget)
{
	*shared = (struct conn_shared){ 0 }; /* callers set next_conn_id after, if they number */
	shared->budget = budget;
	shared->read_area_size = CONN_READ_AREA_SIZE;
	shared->read_area = malloc(shared->read_area_size);
	return shared->read_area ? WH_OK : WH_ENOMEM;
}

void conn_shared_release(struct conn_shared *shared)
{
	tls_context_free(shared->tls);
	shared->tls = NULL;
	free(shared->read_area);
	shared->read_area = NULL;
	shared->read_area_size = 0;
}

bool host_is_loopback(const char *host)
{
	return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0 ||
	       strcmp(host, "localhost") == 0 || strcmp(host, "ip6-localhost") == 0;
}

void sockaddr_format(const struct sockaddr *addr, socklen_t addr_len, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "";
	unsigned port = 0;
	(void)addr_len;
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		port = ntohs(in->sin_port);
		snprintf(out, len, "%s:%u", host, port);
	} else if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		port = ntohs(in6->sin6_port);
		snprintf(out, len, "[%s]:%u", host, port);
	} else {
		snprintf(out, len, "-");
	}
}

static void conn_rearm_timer(struct conn *conn)
{
	double now = ev_now(conn->loop);
	double next = mux_timer(conn->mux, now);
	ev_timer_stop(conn->loop, &conn->keepalive_timer);
	ev_timer_set(&conn->keepalive_timer, next > now ? next - now : 0.0, 0.0);
	ev_timer_start(conn->loop, &conn->keepalive_timer);
}

/* One TLS write from the gathered output: a retry repeats the last length; a long first span
 * goes straight from its memory; short pieces are gathered into tls_out as one record. */
static ssize_t tls_send(struct conn *conn, const struct iovec *iov, int n, char *error,
			size_t error_len)
{
	const void *data;
	size_t length;
	bool staged;
	if (conn->tls_retry) {
		staged = conn->tls_retry_staged;
		length = conn->tls_retry;
		data = staged ? conn->tls_out : iov[0].iov_base;
	} else if (iov[0].iov_len >= TLS_DIRECT_MIN) {
		staged = false;
		data = iov[0].iov_base;
		length = iov[0].iov_len < TLS_WRITE_MAX ? iov[0].iov_len : TLS_WRITE_MAX;
	} else {
		staged = true;
		data = conn->tls_out;
		length = 0;
		for (int i = 0; i < n && length < TLS_RECORD; i++) {
			if (i > 0 && iov[i].iov_len >= TLS_DIRECT_MIN)
				break; /* it goes on its own, from where it is */
			size_t take = iov[i].iov_len < TLS_RECORD - length ? iov[i].iov_len
									   : TLS_RECORD - length;
			memcpy(conn->tls_out + length, iov[i].iov_base, take);
			length += take;
		}
	}
	ssize_t written = tls_write(conn->tls, data, length, error, error_len);
	if (written < 0 && errno == EAGAIN) {
		/* OpenSSL may have made records of part of these bytes already: the retry gives
		 * it the same bytes, and the mux keeps them where they are until then */
		conn->tls_retry = length;
		conn->tls_retry_staged = staged;
		mux_output_hold(conn->mux, length);
	} else {
		conn->tls_retry = 0;
	}
	return written;
}

static void conn_flush(struct conn *conn)
{
	if (conn->fd_closed || conn->handshaking)
		return;
	if (conn->tls) {
		/* records from before go first; a socket still full waits for writable */
		int held = tls_flush(conn->tls);
		if (held < 0) {
			log_write(conn->log, LOG_INFO, "conn", "conn=%u peer=%s write to %s failed: %s",
				  mux_id(conn->mux), mux_peer(conn->mux), conn->remote, strerror(errno));
			ev_io_stop(conn->loop, &conn->write_watcher);
			mux_close(conn->mux, WH_ECONNECTION_CLOSED);
			return;
		}
		if (held > 0) {
			ev_io_start(conn->loop, &conn->write_watcher);
			return;
		}
	}
	size_t flushed = 0;
	for (;;) {
		struct iovec iov[WRITE_IOV];
		int n = mux_output_gather(conn->mux, iov, WRITE_IOV);
		if (n <= 0)
			break;
		char error[256] = "";
		ssize_t written = conn->tls ? tls_send(conn, iov, n, error, sizeof error)
					    : writev(conn->fd, iov, n);
		if (written < 0 && errno == EINTR)
			continue;
		if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (written < 0) {
			log_write(conn->log, LOG_INFO, "conn", "conn=%u peer=%s write to %s failed: %s",
				  mux_id(conn->mux), mux_peer(conn->mux), conn->remote,
				  error[0] ? error : strerror(errno));
			ev_io_stop(conn->loop, &conn->write_watcher);
			mux_close(conn->mux, conn->tls && errno == EPROTO ? WH_ETLS : WH_ECONNECTION_CLOSED);
			return;
		}
		mux_output_advance(conn->mux, (size_t)written);
		flushed += (size_t)written;
		/* One batch, then wait for the socket to drain below the low-water mark: more now
		 * would only queue in the kernel, where nothing can overtake it. A TLS write is
		 * one record or one span: batch them up to a socket's worth. */
		if (!conn->tls || flushed >= TLS_FLUSH_MAX)
			break;
	}
	if (mux_output_pending(conn->mux) || (conn->tls && tls_output_pending(conn->tls)))
		ev_io_start(conn->loop, &conn->write_watcher);
	else
		ev_io_stop(conn->loop, &conn->write_watcher);
}

static void conn_teardown(struct conn *conn);

static void on_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct conn *conn = w->data;
	(void)revents;
	ev_prepare_stop(loop, w);
	if (conn->closing) {
		conn_teardown(conn); /* may free conn (the owner's on_closed) */
		return;
	}
	if (conn->timer_dirty) {
		conn->timer_dirty = false;
		conn_rearm_timer(conn);
	}
	mux_set_now(conn->mux, ev_now(loop)); /* mux_interactive ages by it */
	conn_flush(conn);
}

static void conn_tls_step(struct conn *conn);
static void on_readable(struct ev_loop *loop, ev_io *w, int revents);

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *conn = w->data;
	(void)revents;
	if (conn->handshaking) {
		conn_tls_step(conn);
		return;
	}
	if (conn->read_wants_write) {
		conn->read_wants_write = false;
		on_readable(loop, &conn->read_watcher, EV_READ);
		if (conn->closing)
			return;
	}
	conn_flush(conn);
}

static uint64_t frames_in(const struct mux *mux)
{
	const struct mux_stats *stats = mux_stats(mux);
	uint64_t total = 0;
	for (int i = 0; i < 8; i++)
		total += stats->frames_in[i];
	return total;
}

/* The monotonic clock, not the thread's CPU clock: it is read without a system call (vDSO),
 * three times a read. Time the broker was preempted counts as cost then; the moving average
 * forgets it within a few reads. */
static double clock_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bytes this connection's input may take in one read: a slice of CPU at its recent cost. */
static size_t read_slice_bytes(const struct conn *conn)
{
	if (conn->cost_per_byte <= 0)
		return READ_SLICE_MIN; /* its cost is not known yet */
	double bytes = READ_SLICE_SECONDS / conn->cost_per_byte;
	if (bytes < READ_SLICE_MIN)
		return READ_SLICE_MIN;
	return bytes > (double)SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)bytes;
}

/* The peer filled the broker's own stores faster than store-rate, or sent frames faster than
 * the mux's frame_rate (mux_input_pause): its socket is left unread for `seconds`, TCP holds
 * the rest back, the other connections run. */
static void conn_pause_reading(struct conn *conn, double seconds)
{
	if (!conn->pause_logged) {
		conn->pause_logged = true;
		log_write(conn->log, LOG_INFO, "conn", "conn=%u peer=%s fills the broker's stores faster "
			  "than store-rate, or sends frames faster than a million a second: reading "
			  "paused (counted in input_pauses from now on)",
			  mux_id(conn->mux), mux_peer(conn->mux));
	}
	ev_io_stop(conn->loop, &conn->read_watcher);
	ev_timer_set(&conn->resume_timer, seconds > 0 ? seconds : 0.0, 0.0);
	ev_timer_start(conn->loop, &conn->resume_timer);
}

void conn_hold_reading(struct conn *conn, double seconds)
{
	if (seconds <= 0 || conn->closing)
		return;
	conn->read_held_until = clock_seconds() + seconds; /* monotonic: a clock step changes nothing */
	ev_io_stop(conn->loop, &conn->read_watcher);
	ev_timer_stop(conn->loop, &conn->resume_timer);
	ev_timer_set(&conn->resume_timer, seconds, 0.0);
	ev_timer_start(conn->loop, &conn->resume_timer);
}

bool conn_reading_held(const struct conn *conn)
{
	return !conn->closing && !mux_is_closed(conn->mux) && conn->read_held_until > clock_seconds();
}

/* Still held (conn_hold_reading): the read watcher waits for the resume timer. */
static bool reading_held(struct conn *conn)
{
	if (conn->read_held_until == 0)
		return false; /* never held, or over: no clock read on every wake-up */
	double left = conn->read_held_until - clock_seconds();
	if (left <= 0) {
		conn->read_held_until = 0;
		return false;
	}
	ev_io_stop(conn->loop, &conn->read_watcher);
	if (!ev_is_active(&conn->resume_timer)) {
		ev_timer_set(&conn->resume_timer, left, 0.0);
		ev_timer_start(conn->loop, &conn->resume_timer);
	}
	return true;
}

static void on_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *conn = w->data;
	(void)revents;
	if (conn->closing || mux_is_closed(conn->mux) || reading_held(conn))
		return;
	ev_io_start(loop, &conn->read_watcher);
	/* bytes TLS decrypted before the pause wake nobody: the socket may have nothing new */
	if (conn->tls)
		ev_feed_event(loop, &conn->read_watcher, EV_READ);
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *conn = w->data;
	(void)revents;
	if (conn->handshaking) {
		conn_tls_step(conn);
		return;
	}
	if (reading_held(conn))
		return;
	/* Past store-rate the turn waits: asked here, not after a read, because what the read
	 * brought may leave again (echo sends it back) in this iteration's flush, and then it
	 * costs nothing. */
	mux_set_now(conn->mux, ev_now(loop)); /* the bucket refills by the loop's clock */
	double resume_at = mux_input_pause(conn->mux);
	if (resume_at > 0) {
		conn_pause_reading(conn, resume_at - ev_now(loop));
		return;
	}
	uint64_t frames_start = frames_in(conn->mux);
	double turn_start = clock_seconds();
	/* the turn's bytes, over both parts of every read (TLS decrypts whole records) */
	size_t turn_bytes = conn->tls ? SIZE_MAX : read_slice_bytes(conn);
	for (size_t total = 0; total < READ_BYTES_PER_WAKEUP && !mux_is_closed(conn->mux);) {
		uint8_t *span;
		size_t direct = mux_input_direct_span(conn->mux, &span);
		size_t read_size = conn->dense && conn->read_size > DENSE_READ_SIZE ? DENSE_READ_SIZE
										    : conn->read_size;
		/* and no more than store-rate leaves, TLS too: a read past it overshoots little (at
		 * the turn's start the rate allowed a read: a first read always has room) */
		size_t read_bytes = turn_bytes;
		size_t allowance = mux_input_allowance(conn->mux);
		if (allowance == 0)
			allowance = READ_SLICE_MIN;
		if (read_bytes > allowance)
			read_bytes = allowance;
		if (direct > read_bytes)
			direct = read_bytes; /* the rest of the payload comes in the next read */
		if (read_size > read_bytes - direct)
			read_size = read_bytes - direct;
		double read_start = clock_seconds();
		struct iovec iov[2] = {
			{ span, direct },
			{ conn->read_buffer, read_size },
		};
		/* With a DATA payload in progress its bytes go straight to the stream's store;
		 * whatever follows lands in the ordinary buffer. */
		char error[256] = "";
		bool want_write = false;
		ssize_t n;
		if (conn->tls)
			n = tls_readv(conn->tls, direct ? iov : iov + 1, direct ? 2 : 1, &want_write, error,
				      sizeof error);
		else
			n = direct ? readv(conn->fd, iov, 2) : read(conn->fd, conn->read_buffer, read_size);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (want_write) {
				conn->read_wants_write = true;
				ev_io_start(loop, &conn->write_watcher);
			}
			return;
		}
		if (n < 0 && conn->tls && errno == EPROTO) {
			log_write(conn->log, LOG_WARN, "conn", "conn=%u peer=%s TLS from %s failed: %s",
				  mux_id(conn->mux), mux_peer(conn->mux), conn->remote, error);
			ev_io_stop(loop, w);
			mux_close(conn->mux, WH_ETLS);
			return;
		}
		if (n <= 0) {
			if (n < 0)
				log_write(conn->log, LOG_INFO, "conn", "conn=%u peer=%s read from %s failed: %s",
					  mux_id(conn->mux), mux_peer(conn->mux), conn->remote,
					  error[0] ? error : strerror(errno));
			ev_io_stop(loop, w);
			mux_input_eof(conn->mux);
			return;
		}
		total += (size_t)n;
		double now = ev_now(loop);
		uint64_t frames_before = frames_in(conn->mux);
		size_t into_store = direct < (size_t)n ? direct : (size_t)n;
		if (into_store)
			mux_input_direct_commit(conn->mux, into_store, now);
		if ((size_t)n > into_store)
			mux_input(conn->mux, conn->read_buffer, (size_t)n - into_store, now);
		uint64_t frames = frames_in(conn->mux) - frames_before;
		if (frames && conn->awaiting_first_frame) {
			conn->awaiting_first_frame = false;
			ev_timer_stop(loop, &conn->handshake_timer);
		}
		conn->dense = frames && (size_t)n / frames < DENSE_FRAME_BYTES;
		double now_clock = clock_seconds();
		double cost = (now_clock - read_start) / (double)n;
		conn->cost_per_byte = conn->cost_per_byte > 0 ? conn->cost_per_byte * 0.75 + cost * 0.25 : cost;
		if (turn_bytes != SIZE_MAX)
			turn_bytes -= (size_t)n;
		if (frames_in(conn->mux) - frames_start >= FRAMES_PER_WAKEUP ||
		    now_clock - turn_start >= READ_SLICE_SECONDS || turn_bytes == 0 ||
		    mux_input_allowance(conn->mux) == 0)
			break; /* the socket stays readable: the loop comes back after the others */
		/* drained; TLS reads on until it says so (EAGAIN): it fills what it can */
		if (!conn->tls && (size_t)n < direct + read_size)
			return;
	}
	/* Bytes TLS already decrypted or read ahead wake nobody: the socket may have nothing
	 * more. Come back next iteration, after the other connections. */
	if (conn->tls && !mux_is_closed(conn->mux) && tls_has_pending(conn->tls))
		ev_feed_event(loop, w, EV_READ);
}

static void on_keepalive(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_rearm_timer(w->data);
}

/*
 * The mux closed. Runs from the loop's prepare step, which libev runs on every iteration
 * whatever else is pending, never from inside a mux call. One non-blocking attempt delivers
 * the goodbye and anything queued before it; bytes the peer sent and we never read are
 * dropped with the socket. If bytes are left that the kernel has not even sent, the peer's
 * window is shut (it does not read): they can never leave, and an ordinary close would leave
 * an orphaned socket holding them, its FIN behind them, while the peer, writing into a full
 * buffer of its own, never learns we left. The close is abortive then (a reset). Then the
 * owner hears of it (and may free the conn).
 */
static void conn_teardown(struct conn *conn)
{
	conn_flush(conn);
	ev_io_stop(conn->loop, &conn->read_watcher);
	ev_io_stop(conn->loop, &conn->write_watcher);
	ev_prepare_stop(conn->loop, &conn->flush_watcher);
	ev_timer_stop(conn->loop, &conn->keepalive_timer);
	ev_timer_stop(conn->loop, &conn->handshake_timer);
	ev_timer_stop(conn->loop, &conn->resume_timer);
	if (conn->tls && !conn->handshaking && !conn->fd_closed && conn->close_error != WH_ETLS)
		tls_shutdown(conn->tls);
	if (!conn->fd_closed) {
		int unsent = 0;
		if (ioctl(conn->fd, SIOCOUTQNSD, &unsent) == 0 && unsent > 0) {
			struct linger abort_now = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(conn->fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now);
		}
		close(conn->fd);
		conn->fd_closed = true;
	}
	if (conn->user_callbacks.on_closed)
		conn->user_callbacks.on_closed(conn->mux, conn->close_error, conn->user);
}

/* ---- TLS handshake ------------------------------------------------------------------ */

/* Counts an accepted connection's failed handshake; whether to log it, with `note` (what
 * the line adds) filled: a dialled one's always, an accepted one's at most once a second,
 * saying how many went unlogged since. */
static bool handshake_failure_logs(struct conn *conn, char *note, size_t note_len)
{
	struct tls_failures *failures = conn->shared ? conn->shared->tls_failures : NULL;
	note[0] = '\0';
	if (!failures || conn->dialled)
		return true;
	failures->failed++;
	double now = ev_now(conn->loop);
	if (failures->logged_at > 0 && now - failures->logged_at < 1.0) {
		failures->unlogged++;
		return false;
	}
	if (failures->unlogged)
		snprintf(note, note_len, " (and %llu more since the last "
			 "such line, %llu in all)", (unsigned long long)failures->unlogged,
			 (unsigned long long)failures->failed);
	failures->logged_at = now;
	failures->unlogged = 0;
	return true;
}

static void conn_tls_step(struct conn *conn)
{
	char error[256];
	switch (tls_handshake(conn->tls, error, sizeof error)) {
	case TLS_WANT_READ:
		ev_io_stop(conn->loop, &conn->write_watcher); /* the read watcher always runs */
		return;
	case TLS_WANT_WRITE:
		ev_io_start(conn->loop, &conn->write_watcher);
		return;
	case TLS_FAILED: {
		char note[96];
		if (handshake_failure_logs(conn, note, sizeof note))
			log_write(conn->log, LOG_WARN, "conn", "conn=%u peer=%s TLS handshake with %s "
				  "failed: %s%s", mux_id(conn->mux), mux_peer(conn->mux), conn->remote,
				  error, note);
		ev_io_stop(conn->loop, &conn->read_watcher);
		ev_io_stop(conn->loop, &conn->write_watcher);
		mux_close(conn->mux, WH_ETLS);
		return;
	}
	case TLS_DONE:
		break;
	}
	conn->handshaking = false;
	if (!conn->awaiting_first_frame) /* accepted: the same deadline covers the first frame */
		ev_timer_stop(conn->loop, &conn->handshake_timer);
	ev_io_stop(conn->loop, &conn->write_watcher);
	tls_peer_identity(conn->tls, conn->identity, sizeof conn->identity);
	if (!mux_is_client(conn->mux) && conn->identity[0])
		mux_set_peer(conn->mux, conn->identity); /* an accepted conn's logs name the peer */
	char description[128];
	tls_describe(conn->tls, description, sizeof description);
	log_write(conn->log, LOG_INFO, "conn", "conn=%u peer=%s %s with %s, identity %s",
		  mux_id(conn->mux), mux_peer(conn->mux), description, conn->remote,
		  conn->identity[0] ? conn->identity : "(none in its certificate)");
	if (conn->on_ready)
		conn->on_ready(conn, conn->user);
	conn_flush(conn); /* what the mux queued meanwhile */
	if (tls_has_pending(conn->tls))
		ev_feed_event(conn->loop, &conn->read_watcher, EV_READ);
}

static void on_handshake_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *conn = w->data;
	(void)loop;
	(void)revents;
	char note[96];
	if (conn->held)
		log_write(conn->log, LOG_INFO, "conn", "conn=%u peer=%s %s waited %.0f s for its turn "
			  "to handshake (handshake-rate): closed", mux_id(conn->mux), mux_peer(conn->mux),
			  conn->remote, w->repeat);
	else if (conn->handshaking && handshake_failure_logs(conn, note, sizeof note))
		log_write(conn->log, LOG_WARN, "conn", "conn=%u peer=%s TLS handshake with %s not done "
			  "after %.0f s%s", mux_id(conn->mux), mux_peer(conn->mux), conn->remote, w->repeat,
			  note);
	else
		log_write(conn->log, LOG_WARN, "conn", "conn=%u peer=%s no complete frame from %s "
			  "after %.0f s", mux_id(conn->mux), mux_peer(conn->mux), conn->remote, w->repeat);
	ev_io_stop(conn->loop, &conn->read_watcher);
	ev_io_stop(conn->loop, &conn->write_watcher);
	mux_close(conn->mux, WH_ETIMEOUT);
}

/* ---- mux callbacks, forwarded ------------------------------------------------------ */

static int cb_incoming(struct mux *mux, struct mux_stream *s, const char *service, void *user)
{
	struct conn *conn = user;
	return conn->user_callbacks.on_incoming(mux, s, service, conn->user);
}

static void cb_accept_ready(struct mux *mux, void *user)
{
	struct conn *conn = user;
	if (conn->user_callbacks.on_accept_ready)
		conn->user_callbacks.on_accept_ready(mux, conn->user);
}

static void cb_want_write(struct mux *mux, void *user)
{
	struct conn *conn = user;
	(void)mux;
	if (!conn->fd_closed)
		ev_prepare_start(conn->loop, &conn->flush_watcher);
}

static void cb_timer_changed(struct mux *mux, void *user)
{
	struct conn *conn = user;
	(void)mux;
	conn->timer_dirty = true; /* not from inside the mux: from the loop's prepare step */
	if (!conn->fd_closed)
		ev_prepare_start(conn->loop, &conn->flush_watcher);
}

static void cb_closed(struct mux *mux, int error, void *user)
{
	struct conn *conn = user;
	(void)mux;
	conn->close_error = error;
	/* a TLS failure was logged at warn where it happened, with its reason */
	bool orderly = error == WH_ECONNECTION_CLOSED || error == WH_EMUX_CLOSED || error == WH_ETLS;
	log_write(conn->log, orderly ? LOG_INFO : LOG_WARN, "conn",
		  "conn=%u peer=%s to %s closed: %s", mux_id(conn->mux), mux_peer(conn->mux), conn->remote, wh_strerror(error));
	/* Stop reading at once: unread bytes would keep the read watcher pending for ever. */
	conn->closing = true;
	ev_io_stop(conn->loop, &conn->read_watcher);
	ev_timer_stop(conn->loop, &conn->keepalive_timer);
	ev_prepare_start(conn->loop, &conn->flush_watcher);
}

static void cb_pong(struct mux *mux, double rtt, void *user)
{
	struct conn *conn = user;
	if (conn->user_callbacks.on_pong)
		conn->user_callbacks.on_pong(mux, rtt, conn->user);
}

struct conn *conn_new(struct ev_loop *loop, int fd, bool client_role, const struct mux_config *config,
		      const struct conn_shared *shared, const struct mux_callbacks *callbacks, void *user)
{
	return conn_new_secure(loop, fd, client_role, config, shared, NULL, callbacks, user);
}

struct conn *conn_new_secure(struct ev_loop *loop, int fd, bool client_role,
			     const struct mux_config *config, const struct conn_shared *shared,
			     const struct conn_tls *tls, const struct mux_callbacks *callbacks,
			     void *user)
{
	bool own_buffer = !shared || !shared->read_area;
	struct conn *conn = calloc(1, sizeof *conn + (own_buffer ? PRIVATE_READ_SIZE : 0));
	if (!conn)
		return NULL;
	if (tls && tls->ctx) {
		conn->tls_out = malloc(TLS_RECORD);
		conn->tls = tls->ctx ? tls_session_new(tls->ctx, fd, client_role, tls->expect_name) : NULL;
		if (!conn->tls_out || !conn->tls) {
			tls_session_free(conn->tls);
			free(conn->tls_out);
			free(conn);
			return NULL;
		}
		conn->handshaking = true;
	}
	conn->read_buffer = own_buffer ? conn->private_buffer : shared->read_area;
	conn->read_size = own_buffer ? PRIVATE_READ_SIZE : shared->read_area_size;
	struct mux_budget *budget = shared ? shared->budget : NULL;
	conn->loop = loop;
	conn->shared = shared;
	conn->dialled = client_role;
	conn->started = ev_now(loop);
	conn->fd = fd;
	conn->user = user;
	conn->log = config->log;
	if (callbacks)
		conn->user_callbacks = *callbacks;
	struct mux_callbacks own = {
		.on_incoming = conn->user_callbacks.on_incoming ? cb_incoming : NULL,
		.on_accept_ready = cb_accept_ready,
		.on_want_write = cb_want_write,
		.on_closed = cb_closed,
		.on_pong = cb_pong,
		.on_timer_changed = cb_timer_changed,
	};
	/* the peer's address names an accepted connection in logs until we know more */
	struct sockaddr_storage addr;
	socklen_t len = sizeof addr;
	if (getpeername(fd, (struct sockaddr *)&addr, &len) == 0)
		sockaddr_format((struct sockaddr *)&addr, len, conn->remote, sizeof conn->remote);
	struct mux_config own_config = *config;
	if (!own_config.peer[0])
		snprintf(own_config.peer, sizeof own_config.peer, "%s", conn->remote[0] ? conn->remote : "-");
	if (shared && shared->next_conn_id)
		own_config.id = ++*shared->next_conn_id;
	conn->mux = mux_new(client_role, &own_config, budget, &own, conn);
	if (!conn->mux) {
		tls_session_free(conn->tls);
		free(conn->tls_out);
		free(conn);
		return NULL;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	/* Keep the kernel's unsent queue short, so that frames wait in our scheduler (where an
	 * interactive stream can overtake a bulk one) rather than behind megabytes of queued
	 * bulk data in the socket: the socket reports writable only below this mark. */
	int lowat = NOTSENT_LOWAT;
	setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
	len = sizeof addr;
	if (getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
		sockaddr_format((struct sockaddr *)&addr, len, conn->local, sizeof conn->local);

	ev_io_init(&conn->read_watcher, on_readable, fd, EV_READ);
	ev_io_init(&conn->write_watcher, on_writable, fd, EV_WRITE);
	ev_prepare_init(&conn->flush_watcher, on_flush);
	ev_timer_init(&conn->keepalive_timer, on_keepalive, 0.0, 0.0);
	ev_timer_init(&conn->handshake_timer, on_handshake_timeout, 0.0, 0.0);
	ev_timer_init(&conn->resume_timer, on_resume, 0.0, 0.0);
	conn->read_watcher.data = conn->write_watcher.data = conn->flush_watcher.data = conn;
	conn->keepalive_timer.data = conn->handshake_timer.data = conn->resume_timer.data = conn;
	conn->held = conn->tls && tls->held && !client_role;
	if (!conn->held)
		ev_io_start(loop, &conn->read_watcher);
	conn_rearm_timer(conn);
	log_write(conn->log, LOG_INFO, "conn", "conn=%u peer=%s %s %s -> %s%s", mux_id(conn->mux),
		  mux_peer(conn->mux), client_role ? "dialled" : "accepted", conn->local, conn->remote,
		  conn->tls ? " (TLS)" : "");
	/* An accepted peer has handshake_timeout to finish TLS and send one whole frame (we
	 * PING it at once, so a live peer's PONG is that frame): half a header and then silence
	 * holds nothing for long (slowloris). After that first frame, keep-alive takes over. */
	if (tls && tls->handshake_timeout > 0 && (conn->tls || !client_role)) {
		conn->awaiting_first_frame = !client_role;
		ev_timer_set(&conn->handshake_timer, tls->handshake_timeout, 0.0);
		conn->handshake_timer.repeat = tls->handshake_timeout; /* for the log line */
		ev_timer_start(loop, &conn->handshake_timer);
	}
	if (conn->tls && client_role)
		conn_tls_step(conn); /* the ClientHello goes now */
	return conn;
}

void conn_free(struct conn *conn)
{
	if (!conn)
		return;
	ev_io_stop(conn->loop, &conn->read_watcher);
	ev_io_stop(conn->loop, &conn->write_watcher);
	ev_prepare_stop(conn->loop, &conn->flush_watcher);
	ev_timer_stop(conn->loop, &conn->keepalive_timer);
	ev_timer_stop(conn->loop, &conn->handshake_timer);
	ev_timer_stop(conn->loop, &conn->resume_timer);
	if (conn->shared && conn->shared->on_free)
		conn->shared->on_free(conn, conn->dialled, conn->shared->on_free_ctx);
	tls_session_free(conn->tls);
	free(conn->tls_out);
	if (!conn->fd_closed)
		close(conn->fd);
	mux_free(conn->mux);
	free(conn);
}

struct mux *conn_mux(const struct conn *conn) { return conn->mux; }
struct conn *conn_from_mux(const struct mux *mux) { return mux_user(mux); }
double conn_age(const struct conn *conn)
{
	return ev_now(conn->loop) - conn->started;
}

void *conn_user(const struct conn *conn) { return conn->user; }
const char *conn_local_addr(const struct conn *conn) { return conn->local; }
const char *conn_remote_addr(const struct conn *conn) { return conn->remote; }
bool conn_is_tls(const struct conn *conn) { return conn->tls != NULL; }
bool conn_is_ready(const struct conn *conn) { return !conn->handshaking; }
bool conn_is_held(const struct conn *conn) { return conn->held && !conn->closing; }

void conn_start_handshake(struct conn *conn)
{
	if (!conn->held || conn->closing || conn->fd_closed)
		return;
	conn->held = false;
	ev_io_start(conn->loop, &conn->read_watcher); /* the ClientHello may be waiting already */
}

void conn_set_on_ready(struct conn *conn, void (*on_ready)(struct conn *conn, void *user))
{
	conn->on_ready = on_ready;
}
const char *conn_peer_identity(const struct conn *conn) { return conn->identity; }

int conn_ping(struct conn *conn)
{
	int error = mux_ping(conn->mux, ev_now(conn->loop));
	if (error == WH_OK)
		conn_rearm_timer(conn);
	return error;
}

void conn_close(struct conn *conn, int reason)
{
	mux_close(conn->mux, reason);
}
