/* A pool of multiplexed connections to one peer broker: dial, warm up, balance, check, reap. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pool.h"
#include "resolve.h"

#define POOL_TICK 0.05       /* maintenance period: deadlines, reaping, retries */
#define DIAL_ADDRESSES_MAX 4 /* addresses of one name tried in turn */
/* A connection proves the far broker took it (and resets the back-off) with its first frame
 * other than ERROR, or by staying open this long. Until then, its end is a failed dial: a
 * broker at its connection caps (max-connections-per-address, max-peer-connections, a
 * full descriptor budget) accepts and closes at once, or says goodbye, and redialling that
 * without back-off ran at ~23,000 connections a second. */
#define POOL_PROVEN_AFTER 2.0

struct pool_conn {
	struct pool *pool;
	struct conn *conn; /* NULL while dialling */
	int fd;
	struct sockaddr_storage addresses[DIAL_ADDRESSES_MAX];
	socklen_t address_lengths[DIAL_ADDRESSES_MAX];
	int address_count, address_next;
	struct resolve_request *resolving;
	ev_io connect_watcher;
	ev_timer connect_timer;
	double idle_since; /* 0 while it carries streams */
	double connected_at;
	bool health_check_pending;
	bool proven;      /* the far broker took it: see POOL_PROVEN_AFTER */
	bool reaped_idle; /* we closed it for idleness: its end is no failed dial (nor in a drain) */
	bool borrowed;    /* a connection the peer dialled in (pool_adopt): the broker owns it */
	struct pool_conn *next;
};

struct open_request {
	char *service;
	bool has_client;
	struct frame_client_address client; /* the forward's TCP client, for the HANDSHAKE */
	pool_open_callback callback;
	void *user;
	double deadline;
	struct open_request *next;
};

struct pool {
	struct ev_loop *loop;
	char *name, *host, *port;
	struct pool_config config;
	const struct conn_shared *shared;
	struct pool_callbacks callbacks;
	void *user;
	struct pool_conn *conns;
	unsigned open_count, dialling;
	struct open_request *waiting_head, *waiting_tail;
	ev_timer tick;
	double backoff, retry_at, next_health_check;
	uint64_t jitter_state;
	uint32_t next_conn_id;
	bool closed;
	bool draining; /* the peer was removed (reload) or the broker stops: no new streams */
	char last_error[160]; /* why the last dial failed; "" once one succeeds */
	struct pool_stats stats;
};

static void pool_dial(struct pool *pool);
static void pool_maintain(struct pool *pool);

/* A peer without an address dials us: the pool never dials, it lends the connections the
 * broker matched to the peer (pool_adopt). */
static bool dials_in(const struct pool *pool)
{
	return pool->host[0] == '\0';
}

static void note_not_connected(struct pool *pool)
{
	snprintf(pool->last_error, sizeof pool->last_error, "peer %.60s is not connected (it dials "
		 "in: no connection from it now)", pool->name);
}

void pool_config_default(struct pool_config *config)
{
	*config = (struct pool_config){
		.min_size = 1,
		.max_size = 4,
		.max_idle_time = 300,
		.health_check_interval = 30,
		.connect_timeout = 10,
		.busy_streams = 128,
		.backoff_initial = 0.1,
		.backoff_max = 30,
	};
	mux_config_default(&config->mux);
}

/* splitmix64: jitter only needs to differ between brokers, not to be unpredictable. */
static double jitter(struct pool *pool)
{
	uint64_t z = (pool->jitter_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return 0.75 + 0.5 * (double)(z >> 11) / (double)(1ull << 53);
}

/* ---- choosing a connection ------------------------------------------------------------ */

/* Open and taking new streams (not closed, no ERROR 505 either way). */
static bool conn_usable(const struct pool_conn *pc)
{
	return pc->conn && mux_accepts_streams(conn_mux(pc->conn));
}

/* Connections that can take new streams: what min_size and max_size count. */
static unsigned usable_count(const struct pool *pool)
{
	unsigned n = 0;
	for (const struct pool_conn *pc = pool->conns; pc; pc = pc->next)
		n += conn_usable(pc);
	return n;
}

static struct pool_conn *least_loaded(const struct pool *pool)
{
	struct pool_conn *best = NULL;
	for (struct pool_conn *pc = pool->conns; pc; pc = pc->next)
		if (conn_usable(pc) && (!best || mux_num_streams(conn_mux(pc->conn)) <
							 mux_num_streams(conn_mux(best->conn))))
			best = pc;
	return best;
}

struct conn *pool_get(struct pool *pool)
{
	if (pool->closed || pool->draining)
		return NULL;
	struct pool_conn *best = least_loaded(pool);
	bool busy = !best || mux_num_streams(conn_mux(best->conn)) >= pool->config.busy_streams;
	if (busy && !dials_in(pool) && pool->dialling == 0 && pool->retry_at == 0 &&
	    usable_count(pool) + pool->dialling < pool->config.max_size)
		pool_dial(pool);
	return best ? best->conn : NULL;
}

static void open_on(struct pool *pool, struct conn *conn, const char *service,
		    const struct frame_client_address *client, pool_open_callback callback, void *user)
{
	struct mux_stream *stream;
	mux_set_now(conn_mux(conn), ev_now(pool->loop));
	int error = mux_open_stream_from(conn_mux(conn), service, client, &stream);
	if (error == WH_OK)
		pool->stats.total_streams++;
	callback(error == WH_OK ? stream : NULL, error, user);
}

int pool_open_stream(struct pool *pool, const char *service, pool_open_callback callback, void *user)
{
	return pool_open_stream_from(pool, service, NULL, callback, user);
}

int pool_open_stream_from(struct pool *pool, const char *service, const struct frame_client_address *client,
			  pool_open_callback callback, void *user)
{
	if (pool->closed || pool->draining)
		return WH_EMUX_CLOSED;
	struct conn *conn = pool_get(pool);
	if (conn) {
		open_on(pool, conn, service, client, callback, user);
		return WH_OK;
	}
	if (dials_in(pool)) { /* nothing to wait for: it comes when it comes */
		if (pool->open_count > 0) /* open, but each said goodbye (ERROR 505) */
			snprintf(pool->last_error, sizeof pool->last_error, "peer %.60s is not connected "
				 "(its connections are going away: it said goodbye)", pool->name);
		callback(NULL, WH_EPEER_UNREACHABLE, user);
		return WH_OK;
	}
	struct open_request *r = calloc(1, sizeof *r);
	if (!r || !(r->service = strdup(service ? service : ""))) {
		free(r);
		callback(NULL, WH_ENOMEM, user);
		return WH_OK;
	}
	r->callback = callback;
	r->user = user;
	if ((r->has_client = client != NULL))
		r->client = *client;
	r->deadline = ev_now(pool->loop) + pool->config.connect_timeout;
	if (pool->waiting_tail)
		pool->waiting_tail->next = r;
	else
		pool->waiting_head = r;
	pool->waiting_tail = r;
	pool_maintain(pool);
	return WH_OK;
}

/* Serves (conn != NULL) or fails (with error) the waiting opens whose turn it is. */
static void settle_waiting(struct pool *pool, struct conn *conn, int error, double now)
{
	struct open_request **link = &pool->waiting_head;
	pool->waiting_tail = NULL;
	while (*link) {
		struct open_request *r = *link;
		if (conn && !mux_accepts_streams(conn_mux(conn))) {
			/* it took its last stream id (or is going away): the rest wait for the next
			 * connection instead of failing on this one */
			conn = NULL;
			continue;
		}
		if (conn || error != WH_OK || now >= r->deadline) {
			*link = r->next;
			if (conn)
				open_on(pool, conn, r->service, r->has_client ? &r->client : NULL,
					r->callback, r->user);
			else
				r->callback(NULL, error != WH_OK ? error : WH_ETIMEOUT, r->user);
			free(r->service);
			free(r);
			continue;
		}
		pool->waiting_tail = r;
		link = &r->next;
	}
}

/* ---- connection lifecycle ------------------------------------------------------------- */

static void pool_conn_unlink(struct pool *pool, struct pool_conn *pc)
{
	for (struct pool_conn **link = &pool->conns; *link; link = &(*link)->next)
		if (*link == pc) {
			*link = pc->next;
			break;
		}
	ev_io_stop(pool->loop, &pc->connect_watcher);
	ev_timer_stop(pool->loop, &pc->connect_timer);
	resolve_cancel(pc->resolving);
	if (pc->conn && !pc->borrowed) /* a borrowed one is the broker's to free */
		conn_free(pc->conn);
	else if (pc->fd >= 0)
		close(pc->fd);
	free(pc);
}

/* Counts a failed dial and holds every dial back for the current back-off, then doubles it.
 * Returns the delay, for the caller's log line. */
static double back_off(struct pool *pool, const char *why)
{
	pool->stats.failed_connections++;
	double delay = pool->backoff * jitter(pool);
	snprintf(pool->last_error, sizeof pool->last_error, "%s", why);
	pool->retry_at = ev_now(pool->loop) + delay;
	pool->backoff = pool->backoff * 2 < pool->config.backoff_max ? pool->backoff * 2
								     : pool->config.backoff_max;
	return delay;
}

static void dial_failed(struct pool_conn *pc, const char *why)
{
	struct pool *pool = pc->pool;
	pool->dialling--;
	double delay = back_off(pool, why);
	log_write(pool->config.mux.log, LOG_WARN, "pool", "peer=%s dial %s:%s failed: %s; retry in %.2f s",
		  pool->name, pool->host, pool->port, why, delay);
	pool_conn_unlink(pool, pc);
}

/* Whether the far broker has shown it took the connection; the first time, the back-off
 * starts again from its initial value. */
static bool conn_proven(struct pool_conn *pc, double now)
{
	if (pc->proven)
		return true;
	if (!pc->conn || !conn_is_ready(pc->conn))
		return false;
	const struct mux_stats *stats = mux_stats(conn_mux(pc->conn));
	uint64_t heard = 0;
	for (size_t type = 0; type < sizeof stats->frames_in / sizeof *stats->frames_in; type++)
		heard += type == FRAME_ERROR ? 0 : stats->frames_in[type];
	if (heard == 0 && now - pc->connected_at < POOL_PROVEN_AFTER)
		return false;
	pc->proven = true;
	pc->pool->backoff = pc->pool->config.backoff_initial;
	return true;
}

static int cb_incoming(struct mux *mux, struct mux_stream *stream, const char *service, void *user)
{
	struct pool *pool = ((struct pool_conn *)user)->pool;
	if (!pool->callbacks.on_incoming)
		return WH_ENO_SERVICE;
	return pool->callbacks.on_incoming(mux, stream, service, pool->user);
}

static void cb_pong(struct mux *mux, double rtt, void *user)
{
	(void)mux;
	(void)rtt;
	((struct pool_conn *)user)->health_check_pending = false;
}

static void cb_closed(struct mux *mux, int error, void *user)
{
	struct pool_conn *pc = user;
	struct pool *pool = pc->pool;
	(void)mux;
	if (pc->health_check_pending && error == WH_EKEEPALIVE_TIMEOUT) {
		pool->stats.health_check_failures++;
		log_write(pool->config.mux.log, LOG_WARN, "pool", "peer=%s conn=%u failed its health check",
			  pool->name, mux_id(conn_mux(pc->conn)));
	}
	pool->open_count--;
	pool->stats.closed_connections++;
	/* Closed before the far broker showed it took it (TLS never came up, or it closed or
	 * said goodbye before any other frame): a failed dial, with its back-off */
	const char *logged = NULL;
	double delay = 0;
	if (!conn_is_ready(pc->conn)) {
		delay = back_off(pool, "no TLS session (the broker's log says why)");
		logged = "no TLS session";
	} else if (!pc->reaped_idle && !pool->draining && !conn_proven(pc, ev_now(pool->loop))) {
		delay = back_off(pool, "closed by the peer before any frame (its connection caps?)");
		logged = "closed by the peer before any frame (its connection caps?)";
	}
	if (logged)
		log_write(pool->config.mux.log, LOG_WARN, "pool", "peer=%s %s:%s: %s; retry in %.2f s",
			  pool->name, pool->host, pool->port, logged, delay);
	pool_conn_unlink(pool, pc);
	pool_maintain(pool);
}

static void dial_succeeded(struct pool_conn *pc)
{
	struct pool *pool = pc->pool;
	struct mux_config config = pool->config.mux;
	config.id = ++pool->next_conn_id; /* unless the broker numbers all connections (conn_new) */
	snprintf(config.peer, sizeof config.peer, "%s", pool->name);
	struct mux_callbacks callbacks = {
		.on_incoming = cb_incoming,
		.on_closed = cb_closed,
		.on_pong = cb_pong,
	};
	ev_io_stop(pool->loop, &pc->connect_watcher);
	ev_timer_stop(pool->loop, &pc->connect_timer);
	pool->dialling--;
	/* TLS unless this peer is plaintext; its certificate must name it */
	struct conn_tls tls = {
		.ctx = pool->shared && !pool->config.plaintext ? pool->shared->tls : NULL,
		.expect_name = pool->config.tls_name[0] ? pool->config.tls_name : pool->name,
		.handshake_timeout = pool->shared ? pool->shared->handshake_timeout : 0,
	};
	pc->conn = conn_new_secure(pool->loop, pc->fd, true, &config, pool->shared, &tls, &callbacks, pc);
	if (!pc->conn) {
		pool->dialling++;
		dial_failed(pc, "out of memory");
		return;
	}
	pc->fd = -1; /* the conn owns it now */
	pc->idle_since = pc->connected_at = ev_now(pool->loop);
	pool->open_count++;
	pool->stats.total_connections++;
	pool->last_error[0] = '\0'; /* the back-off resets once it is proven (conn_proven) */
	settle_waiting(pool, pc->conn, WH_OK, ev_now(pool->loop));
}

static void connect_next_address(struct pool_conn *pc);

static void on_connect_ready(struct ev_loop *loop, ev_io *w, int revents)
{
	struct pool_conn *pc = w->data;
	int error = 0;
	socklen_t len = sizeof error;
	(void)loop;
	(void)revents;
	if (getsockopt(pc->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
		error = errno;
	if (error == 0) {
		dial_succeeded(pc);
		return;
	}
	if (pc->address_next < pc->address_count) {
		connect_next_address(pc);
		return;
	}
	dial_failed(pc, strerror(error));
}

static void on_connect_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	dial_failed(w->data, "connect timeout");
}

static void connect_next_address(struct pool_conn *pc)
{
	struct pool *pool = pc->pool;
	if (pc->fd >= 0)
		close(pc->fd);
	ev_io_stop(pool->loop, &pc->connect_watcher);
	int i = pc->address_next++;
	struct sockaddr *addr = (struct sockaddr *)&pc->addresses[i];
	pc->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (pc->fd < 0) {
		dial_failed(pc, strerror(errno));
		return;
	}
	if (connect(pc->fd, addr, pc->address_lengths[i]) < 0 && errno != EINPROGRESS) {
		int error = errno;
		if (pc->address_next < pc->address_count) {
			connect_next_address(pc);
			return;
		}
		dial_failed(pc, strerror(error));
		return;
	}
	ev_io_set(&pc->connect_watcher, pc->fd, EV_WRITE);
	ev_io_start(pool->loop, &pc->connect_watcher);
}

static void on_resolved(struct addrinfo *result, int gai_error, void *user)
{
	struct pool_conn *pc = user;
	pc->resolving = NULL;
	if (gai_error) {
		dial_failed(pc, gai_strerror(gai_error));
		return;
	}
	for (struct addrinfo *ai = result; ai && pc->address_count < DIAL_ADDRESSES_MAX; ai = ai->ai_next) {
		memcpy(&pc->addresses[pc->address_count], ai->ai_addr, ai->ai_addrlen);
		pc->address_lengths[pc->address_count++] = ai->ai_addrlen;
	}
	if (pc->address_count == 0) {
		dial_failed(pc, "no address");
		return;
	}
	connect_next_address(pc);
}

static void pool_dial(struct pool *pool)
{
	struct pool_conn *pc = calloc(1, sizeof *pc);
	if (!pc)
		return;
	pc->pool = pool;
	pc->fd = -1;
	ev_io_init(&pc->connect_watcher, on_connect_ready, -1, EV_WRITE);
	ev_timer_init(&pc->connect_timer, on_connect_timeout, pool->config.connect_timeout, 0);
	pc->connect_watcher.data = pc->connect_timer.data = pc;
	pc->next = pool->conns;
	pool->conns = pc;
	pool->dialling++;
	/* The timer covers resolution and connect together: one ConnectTimeout per dial. */
	ev_timer_start(pool->loop, &pc->connect_timer);
	pc->resolving = resolve_start(pool->loop, pool->host, pool->port, on_resolved, pc);
	if (!pc->resolving)
		dial_failed(pc, "out of memory");
}

/* ---- maintenance ---------------------------------------------------------------------- */

static void pool_maintain(struct pool *pool)
{
	if (dials_in(pool) || pool->closed || pool->draining || pool->retry_at != 0 || pool->dialling)
		return;
	unsigned want = pool->config.min_size, usable = usable_count(pool);
	if (pool->waiting_head && want == 0)
		want = 1;
	if (usable < want && usable < pool->config.max_size)
		pool_dial(pool);
}

static void reap_and_check(struct pool *pool, double now)
{
	bool check = pool->config.health_check_interval > 0 && now >= pool->next_health_check;
	if (check)
		pool->next_health_check = now + pool->config.health_check_interval;
	for (struct pool_conn *pc = pool->conns; pc; pc = pc->next) {
		if (pc->borrowed)
			continue; /* the dialler checks, reaps and drains its own connections */
		conn_proven(pc, now);
		struct mux *mux = pc->conn ? conn_mux(pc->conn) : NULL;
		if (mux && !mux_is_closed(mux) && !mux_accepts_streams(mux) && mux_num_streams(mux) == 0) {
			/* going away (either side said 505) and its last stream is done */
			log_write(pool->config.mux.log, LOG_INFO, "pool", "peer=%s conn=%u drained: closing",
				  pool->name, mux_id(mux));
			conn_close(pc->conn, WH_EMUX_CLOSED);
			continue;
		}
		if (!conn_usable(pc))
			continue;
		if (mux_num_streams(mux) > 0)
			pc->idle_since = 0;
		else if (pc->idle_since == 0)
			pc->idle_since = now;
		if (pc->idle_since && now - pc->idle_since >= pool->config.max_idle_time &&
		    usable_count(pool) > pool->config.min_size) {
			log_write(pool->config.mux.log, LOG_INFO, "pool", "peer=%s conn=%u idle: closing",
				  pool->name, mux_id(mux));
			pc->idle_since = 0;
			pc->reaped_idle = true;
			conn_close(pc->conn, WH_EMUX_CLOSED);
			continue; /* cb_closed unlinks it from the loop, later */
		}
		if (check && conn_ping(pc->conn) == WH_OK)
			pc->health_check_pending = true;
	}
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pool *pool = w->data;
	double now = ev_now(loop);
	(void)revents;
	settle_waiting(pool, NULL, WH_OK, now);
	reap_and_check(pool, now);
	if (pool->retry_at && now >= pool->retry_at)
		pool->retry_at = 0;
	pool_maintain(pool);
}

struct pool *pool_new(struct ev_loop *loop, const char *name, const char *host, const char *port,
		      const struct pool_config *config, const struct conn_shared *shared,
		      const struct pool_callbacks *callbacks, void *user)
{
	struct pool *pool = calloc(1, sizeof *pool);
	if (!pool)
		return NULL;
	pool->name = strdup(name);
	pool->host = strdup(host);
	pool->port = strdup(port);
	if (!pool->name || !pool->host || !pool->port) {
		free(pool->name);
		free(pool->host);
		free(pool->port);
		free(pool);
		return NULL;
	}
	pool->loop = loop;
	pool->config = *config;
	if (pool->config.max_size == 0)
		pool->config.max_size = 1;
	pool->shared = shared;
	if (callbacks)
		pool->callbacks = *callbacks;
	pool->user = user;
	pool->backoff = config->backoff_initial;
	pool->jitter_state = (uint64_t)(uintptr_t)pool ^ (uint64_t)(ev_time() * 1e6) ^ (uint64_t)getpid();
	pool->next_health_check = ev_now(loop) + config->health_check_interval;
	if (dials_in(pool))
		note_not_connected(pool);
	ev_timer_init(&pool->tick, on_tick, POOL_TICK, POOL_TICK);
	pool->tick.data = pool;
	ev_timer_start(loop, &pool->tick);
	return pool;
}

void pool_free(struct pool *pool)
{
	if (!pool)
		return;
	pool->closed = true;
	ev_timer_stop(pool->loop, &pool->tick);
	settle_waiting(pool, NULL, WH_EMUX_CLOSED, ev_now(pool->loop));
	while (pool->conns)
		pool_conn_unlink(pool, pool->conns);
	free(pool->name);
	free(pool->host);
	free(pool->port);
	free(pool);
}

int pool_warmup(struct pool *pool)
{
	if (pool->closed || pool->draining)
		return WH_EMUX_CLOSED;
	while (!dials_in(pool) && usable_count(pool) + pool->dialling < pool->config.min_size)
		pool_dial(pool);
	return WH_OK;
}

static void drain_conn(struct conn *conn, void *arg)
{
	(void)arg;
	mux_drain(conn_mux(conn));
}

void pool_drain(struct pool *pool)
{
	if (pool->closed || pool->draining)
		return;
	pool->draining = true;
	settle_waiting(pool, NULL, WH_EMUX_CLOSED, ev_now(pool->loop));
	pool_each_conn(pool, drain_conn, NULL);
	log_write(pool->config.mux.log, LOG_INFO, "pool", "peer=%s draining: %u connections", pool->name,
		  pool->open_count);
}

void pool_resume(struct pool *pool)
{
	if (pool->closed || !pool->draining)
		return;
	pool->draining = false;
	pool->backoff = pool->config.backoff_initial;
	pool->retry_at = 0;
	log_write(pool->config.mux.log, LOG_INFO, "pool", "peer=%s takes streams again", pool->name);
	pool_maintain(pool);
}

void pool_get_info(const struct pool *pool, struct pool_info *info)
{
	double now = ev_now(pool->loop);
	*info = (struct pool_info){
		.name = pool->name, .host = pool->host, .port = pool->port,
		.min_size = pool->config.min_size, .max_size = pool->config.max_size,
		.open = pool->open_count, .dialling = pool->dialling,
		.retry_in = pool->retry_at > now ? pool->retry_at - now : 0,
		.backoff = pool->backoff,
		.draining = pool->draining,
		.dial_in = dials_in(pool),
		.tls = pool->shared && pool->shared->tls && !pool->config.plaintext,
		.last_error = pool->last_error,
	};
	for (const struct pool_conn *pc = pool->conns; pc; pc = pc->next)
		if (pc->conn)
			info->streams += mux_num_streams(conn_mux(pc->conn));
}

bool pool_drained(const struct pool *pool)
{
	for (const struct pool_conn *pc = pool->conns; pc; pc = pc->next)
		if (pc->conn && !pc->borrowed && !mux_is_closed(conn_mux(pc->conn)) &&
		    mux_num_streams(conn_mux(pc->conn)))
			return false;
	return true;
}

int pool_reconfigure(struct pool *pool, const char *host, const char *port, const struct pool_config *config)
{
	char *h = strdup(host), *p = strdup(port);
	if (!h || !p) {
		free(h);
		free(p);
		return WH_ENOMEM;
	}
	free(pool->host);
	free(pool->port);
	pool->host = h;
	pool->port = p;
	pool->config = *config;
	/* no longer dialling in: the connections it lent are the broker's alone again */
	for (struct pool_conn **link = &pool->conns; *link;) {
		struct pool_conn *pc = *link;
		if (!pc->borrowed || dials_in(pool)) {
			link = &pc->next;
			continue;
		}
		*link = pc->next;
		pool->open_count--;
		free(pc);
	}
	if (dials_in(pool) && pool->open_count == 0)
		note_not_connected(pool);
	if (pool->config.max_size == 0)
		pool->config.max_size = 1;
	pool->backoff = pool->config.backoff_initial;
	pool->retry_at = 0;
	pool_maintain(pool);
	return WH_OK;
}

size_t pool_len(const struct pool *pool)
{
	return pool->open_count;
}

void pool_get_stats(const struct pool *pool, struct pool_stats *stats)
{
	*stats = pool->stats;
	stats->active_connections = stats->idle_connections = 0;
	for (struct pool_conn *pc = pool->conns; pc; pc = pc->next) {
		if (!conn_usable(pc))
			continue;
		if (mux_num_streams(conn_mux(pc->conn)))
			stats->active_connections++;
		else
			stats->idle_connections++;
	}
}

const char *pool_name(const struct pool *pool)
{
	return pool->name;
}

void pool_each_conn(const struct pool *pool, void (*fn)(struct conn *, void *), void *arg)
{
	for (struct pool_conn *pc = pool->conns; pc; pc = pc->next)
		if (pc->conn && !pc->borrowed)
			fn(pc->conn, arg);
}

bool pool_is_closed(const struct pool *pool)
{
	return pool->closed;
}

/* ---- a peer that dials in -------------------------------------------------------------- */

static struct pool_conn *find_borrowed(const struct pool *pool, const struct conn *conn)
{
	for (struct pool_conn *pc = pool->conns; pc; pc = pc->next)
		if (pc->borrowed && pc->conn == conn)
			return pc;
	return NULL;
}

int pool_adopt(struct pool *pool, struct conn *conn)
{
	if (pool->closed || !dials_in(pool))
		return WH_EINVAL;
	if (find_borrowed(pool, conn))
		return WH_OK;
	struct pool_conn *pc = calloc(1, sizeof *pc);
	if (!pc)
		return WH_ENOMEM;
	pc->pool = pool;
	pc->conn = conn;
	pc->fd = -1;
	pc->borrowed = pc->proven = true;
	pc->connected_at = ev_now(pool->loop);
	pc->next = pool->conns;
	pool->conns = pc;
	pool->open_count++;
	pool->stats.total_connections++;
	pool->last_error[0] = '\0';
	log_write(pool->config.mux.log, LOG_INFO, "pool", "peer=%s dialled in: conn=%u from %s (%u "
		  "connections from it)", pool->name, mux_id(conn_mux(conn)), conn_remote_addr(conn),
		  pool->open_count);
	return WH_OK;
}

bool pool_release(struct pool *pool, struct conn *conn)
{
	struct pool_conn *pc = find_borrowed(pool, conn);
	if (!pc)
		return false;
	for (struct pool_conn **link = &pool->conns; *link; link = &(*link)->next)
		if (*link == pc) {
			*link = pc->next;
			break;
		}
	free(pc);
	pool->open_count--;
	pool->stats.closed_connections++;
	if (pool->open_count == 0 && dials_in(pool))
		note_not_connected(pool);
	log_write(pool->config.mux.log, LOG_INFO, "pool", "peer=%s: its conn=%u %s (%u connections "
		  "from it)", pool->name, mux_id(conn_mux(conn)), mux_is_closed(conn_mux(conn)) ? "closed" :
		  "let go", pool->open_count);
	return true;
}

bool pool_dials_in(const struct pool *pool)
{
	return dials_in(pool);
}
