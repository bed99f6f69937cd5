/* The reaching side: each connection a forward's listener accepts becomes one stream to a
 * peer's service; and the broker's forwarding state as a whole (start, drain, stop, reload). */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "forward_internal.h"
#include "listener_rest.h"

#define ACCEPTS_PER_TURN 64 /* then the loop serves the others before this listener again */
#define RETIRE_CHECK 0.1    /* seconds between looks at removed forwards that drain */

struct forward_open;

/* connection-rate: new connections a second from one client address, a token bucket each
 * (one second's worth). A small table, oldest entry replaced: many addresses each get the
 * rate, and max-connections bounds them together. */
#define RATE_SLOTS 256
struct rate_slot {
	char host[64];
	double tokens, at;
};

/* client-reset-rate: the streams each client address ends early through a peer, as that
 * peer's reset-rate counts them (over every forward to the peer: one address behind several
 * forwards is one count). A peer whose reset-rate runs out refuses every stream on the
 * connection, whoever's; so this broker keeps the count per address itself and refuses the
 * churning address first. A token bucket each, five seconds' worth, from which every early
 * end is taken. A churn of thousands at once is in flight before any of it ends, so the
 * streams that may still end early are held too: those that sent nothing yet against the
 * tokens, and all those younger than a second (that sent something, or not) against twice the
 * burst. One address can so waste at most its tokens and twice its burst at once: 750 at the
 * default, short of the 800 of the peer's burst (1000) at which this broker holds back every
 * open on the connection, while 300 new connections of one address in the same second pass.
 * A table of CHURN_SLOTS, the oldest slot with nothing held replaced; a replaced slot's
 * generation tells the tickets of the streams it had that it is someone else's now. */
#define CHURN_SLOTS 256
#define CHURN_BURST_SECONDS 5.0 /* as the peer's reset-rate */
#define CHURN_YOUNG_BURSTS 2    /* streams younger than a second: twice the burst */
struct churn_slot {
	char peer[64], host[64];
	double tokens, at;
	unsigned empty; /* streams of the address that sent nothing yet */
	unsigned young; /* those, and the others less than a second old */
	uint64_t generation;
};
struct churn_table {
	struct churn_slot slots[CHURN_SLOTS];
};
/* One admitted connection's hold on its address's slot. */
enum churn_hold { CHURN_EMPTY, CHURN_YOUNG, CHURN_PROVEN };
struct churn_ticket {
	struct churn_slot *slot;
	uint64_t generation;
	enum churn_hold hold;
};

struct forward_listener {
	struct forwarding *fw;
	struct forward_config config;
	int fd;
	unsigned port; /* bound: the one the system picked for port 0 */
	ev_io accept_watcher;
	ev_timer accept_pause; /* an accept that keeps failing: the listener rests */
	uint64_t accept_pauses;
	struct tcp_relay_set relays;
	struct tcp_relay_limit limit; /* bandwidth */
	struct forward_open *opening; /* accepted, waiting for the pool's stream */
	unsigned opening_count;
	uint64_t accepted, refused_full, open_failures, refused_rate, refused_resets;
	double full_logged_at, rate_logged_at, reset_logged_at, churn_logged_at;
	uint64_t resets_unlogged; /* clients reset since the last such line (refusal_log_now) */
	struct rate_slot *rates; /* RATE_SLOTS, made when connection-rate is first needed */
	bool runtime; /* added by wormhole-ctl forward add: a reload keeps it */
	/* removed by a reload: no longer listening, its connections drain until the deadline */
	struct forward_listener *next_retiring;
	double retire_deadline;
};

/* An accepted connection waiting for its stream. The pool's callback cannot be withdrawn: a
 * forward that stops marks it abandoned, and the callback ends the stream it brings. */
struct forward_open {
	struct forward_listener *listener; /* NULL once abandoned */
	struct forward_open *prev, *next;
	int fd;
	char client[80];
	bool has_address;
	struct frame_client_address address; /* named in the stream's HANDSHAKE (proxy-protocol) */
	struct churn_ticket *ticket; /* client-reset-rate's hold, or NULL */
};

void forward_format_address(char *out, size_t length, const char *host, const char *port)
{
	bool v6 = strchr(host, ':') != NULL;
	snprintf(out, length, "%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

void forward_socket_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

const struct exposed_service *forwarding_find_exposed(const struct broker_config *config,
						       const char *service)
{
	for (unsigned i = 0; i < config->exposed_count; i++)
		if (strcmp(config->exposed[i].service, service) == 0 && config->exposed[i].target_count)
			return &config->exposed[i];
	return NULL;
}

int forwarding_attach_target(struct broker *broker, struct mux_stream *stream, const char *service)
{
	const struct exposed_service *exposed = forwarding_find_exposed(&broker->config, service);
	if (!exposed || !broker->forwarding)
		return WH_ENO_SERVICE;
	return target_attach(broker->forwarding, stream, exposed);
}

/* ---- accepted connections ------------------------------------------------------------- */

static void open_unlink(struct forward_open *o)
{
	struct forward_listener *l = o->listener;
	if (o->prev)
		o->prev->next = o->next;
	else
		l->opening = o->next;
	if (o->next)
		o->next->prev = o->prev;
	l->opening_count--;
}

/* The client is refused: RST, so that it learns at once that nothing is behind the port. */
static void client_refuse(struct forward_listener *l, int fd)
{
	tcp_relay_close_abortive(fd);
	fd_budget_give(&l->fw->broker->fds, 1);
}

/* Whether a client's reset (no stream for it) may be logged now: at most one line a second
 * per forward, as for max-connections; a flood of clients to a peer that is down wrote one
 * line each. The others are counted (open_failures) and the next line says how many. */
static bool refusal_log_now(struct forward_listener *l, char *more, size_t length)
{
	double now = ev_now(l->fw->broker->loop);
	more[0] = '\0';
	if (l->reset_logged_at > 0 && now - l->reset_logged_at < 1.0) {
		l->resets_unlogged++;
		return false;
	}
	if (l->resets_unlogged)
		snprintf(more, length, " (and %llu more clients reset since the last such line)",
			 (unsigned long long)l->resets_unlogged);
	l->reset_logged_at = now;
	l->resets_unlogged = 0;
	return true;
}

/* ---- client-reset-rate ---------------------------------------------------------------- */

static double churn_burst(double rate)
{
	return rate * CHURN_BURST_SECONDS > 1 ? rate * CHURN_BURST_SECONDS : 1;
}

/* The slot of (peer, host), or a new one in place of the oldest with nothing held; NULL
 * when there is no table or every slot holds streams (then no bound applies: as many
 * addresses each have their own, and max-connections bounds them together). */
static struct churn_slot *churn_slot_for(struct forwarding *fw, const char *peer, const char *host,
					 double rate, double now)
{
	if (!fw->churn && !(fw->churn = calloc(1, sizeof *fw->churn)))
		return NULL;
	struct churn_slot *oldest = NULL;
	for (unsigned i = 0; i < CHURN_SLOTS; i++) {
		struct churn_slot *slot = &fw->churn->slots[i];
		if (strcmp(slot->host, host) == 0 && strcmp(slot->peer, peer) == 0)
			return slot;
		if (slot->young == 0 && (!oldest || slot->at < oldest->at))
			oldest = slot;
	}
	if (!oldest)
		return NULL;
	snprintf(oldest->peer, sizeof oldest->peer, "%s", peer);
	snprintf(oldest->host, sizeof oldest->host, "%s", host);
	oldest->tokens = churn_burst(rate);
	oldest->at = now;
	oldest->generation++;
	return oldest;
}

/* Whether the client's address may open one more stream through the forward's peer now:
 * its early ends (taken) and its streams that sent nothing (held) leave at least one token,
 * and it has fewer than twice the burst younger than a second. *ticket gets the new stream's
 * hold (NULL: no bound applies). */
static bool churn_admit(struct forward_listener *l, const char *host, double now, struct churn_ticket **ticket)
{
	double rate = l->config.client_reset_rate;
	*ticket = NULL;
	if (rate <= 0 || strcmp(l->config.peer, "local") == 0)
		return true; /* no bound, or this broker's own services: no reset-rate between */
	struct churn_slot *slot = churn_slot_for(l->fw, l->config.peer, host, rate, now);
	if (!slot)
		return true;
	double burst = churn_burst(rate);
	slot->tokens += (now - slot->at) * rate;
	slot->at = now;
	if (slot->tokens > burst)
		slot->tokens = burst;
	if (slot->tokens - slot->empty < 1 || slot->young >= CHURN_YOUNG_BURSTS * burst)
		return false;
	struct churn_ticket *t = calloc(1, sizeof *t);
	if (!t)
		return true; /* no memory: unbounded for this one, as before */
	t->slot = slot;
	t->generation = slot->generation;
	t->hold = CHURN_EMPTY;
	slot->empty++;
	slot->young++;
	*ticket = t;
	return true;
}

/* The ticket's hold becomes `to` (never back). */
static void churn_hold(struct churn_ticket *t, enum churn_hold to)
{
	bool ours = t->slot->generation == t->generation;
	if (ours && t->hold == CHURN_EMPTY && to != CHURN_EMPTY)
		t->slot->empty--;
	if (ours && t->hold != CHURN_PROVEN && to == CHURN_PROVEN)
		t->slot->young--;
	if (to > t->hold)
		t->hold = to;
}

/* The relay's news of a ticket's stream (tcp_relay_params.watch): its first bytes and its
 * first second end the holds; an early end (as the peer counts it) takes a token; an end
 * frees the ticket. A slot given to another address since then is left alone. */
static void churn_watch(void *ctx, enum tcp_relay_news news)
{
	struct churn_ticket *t = ctx;
	if (news == TCP_RELAY_FIRST_BYTES) {
		churn_hold(t, CHURN_YOUNG);
		return;
	}
	churn_hold(t, CHURN_PROVEN);
	if (news == TCP_RELAY_PROVEN)
		return;
	if (t->slot->generation == t->generation && news != TCP_RELAY_ENDED && --t->slot->tokens < 0)
		t->slot->tokens = 0;
	free(t);
}

/* A ticket whose stream never reached the peer: its holds end, nothing is taken. */
static void churn_release(struct churn_ticket *t)
{
	if (!t)
		return;
	churn_hold(t, CHURN_PROVEN);
	free(t);
}

/* Over client-reset-rate: closed at once, counted, logged at most once a second. */
static void refuse_churn(struct forward_listener *l, const char *host, int fd, double now)
{
	struct broker *broker = l->fw->broker;
	l->refused_resets++;
	if (now - l->churn_logged_at >= 1.0) {
		l->churn_logged_at = now;
		log_write(&broker->log, LOG_WARN, "forward", "forward=%s: client %s ends streams early "
			  "faster than client-reset-rate %.15g a second (closes or resets them before "
			  "they carry anything: peer %s's reset-rate would refuse every client's streams): "
			  "its new connections closed (%llu so far)", l->config.name, host,
			  l->config.client_reset_rate, l->config.peer, (unsigned long long)l->refused_resets);
	}
	close(fd);
	fd_budget_give(&broker->fds, 1);
}

/* Why a client got no stream, in words: WH_ELIMIT alone said "limit" without which or whose. */
static void open_failure_log(struct forward_listener *l, const char *label, int error, const char *more)
{
	struct broker *broker = l->fw->broker;
	if (error == WH_ELIMIT)
		log_write(&broker->log, LOG_WARN, "forward", "%s: no stream: peer %s takes no new streams "
			  "from this broker for now: our streams to it ended without data nearly as fast as "
			  "its reset-rate (%.15g a second, as this broker assumes it) allows (opens_held_back "
			  "in wormhole-ctl stats; client-reset-rate refuses the address that causes it), or "
			  "its connection's max-streams or memory budget is reached: client reset%s", label,
			  l->config.peer, broker->config.pool.mux.reset_rate, more);
	else
		log_write(&broker->log, LOG_WARN, "forward", "%s: no stream: %s: client reset%s", label,
			  wh_strerror(error), more);
}

static void on_stream_opened(struct mux_stream *stream, int error, void *user)
{
	struct forward_open *o = user;
	struct forward_listener *l = o->listener;
	if (!l) { /* the forward stopped while the pool dialled: its socket is closed already
		   * (and its ticket released) */
		if (stream) {
			mux_stream_reset_code(stream, FRAME_ERR_CANCELLED, "the forward stopped");
			mux_stream_release(stream);
		}
		free(o);
		return;
	}
	open_unlink(o);
	struct broker *broker = l->fw->broker;
	char label[300];
	snprintf(label, sizeof label, "forward=%s client=%s peer=%s service=%.60s", l->config.name,
		 o->client, l->config.peer, l->config.service);
	if (error != WH_OK) {
		l->open_failures++;
		char more[96];
		if (refusal_log_now(l, more, sizeof more))
			open_failure_log(l, label, error, more);
		churn_release(o->ticket);
		client_refuse(l, o->fd);
		free(o);
		return;
	}
	struct tcp_relay_params params = { label, FRAME_ERR_CANCELLED, "the client", l->config.idle_timeout,
					   &l->limit, NULL, 0, o->ticket ? churn_watch : NULL, o->ticket };
	if (tcp_relay_start(broker->loop, &broker->log, &broker->fds, &l->relays, o->fd, stream,
			    &params) != WH_OK) {
		mux_stream_reset(stream, WH_ENOMEM, "out of memory");
		mux_stream_release(stream);
		churn_release(o->ticket);
		client_refuse(l, o->fd);
	}
	free(o);
}

/* Whether the pool can take an open now; if its peer is known to be unreachable (its last
 * dial failed and the next waits for the back-off), the client is refused at once rather
 * than at the end of connect-timeout. */
static struct pool *forward_pool(struct forward_listener *l, const char *client)
{
	struct broker *broker = l->fw->broker;
	struct pool *pool = broker_find_pool(broker, l->config.peer);
	struct pool_info info;
	if (pool)
		pool_get_info(pool, &info);
	char more[96];
	if (pool && !(info.open == 0 && (info.dial_in || (info.retry_in > 0 && info.last_error[0]))))
		return pool;
	if (!refusal_log_now(l, more, sizeof more))
		return NULL;
	if (!pool)
		log_write(&broker->log, LOG_WARN, "forward", "forward=%s client=%s: peer %s is not "
			  "configured (a reload removed it): client reset%s", l->config.name, client,
			  l->config.peer, more);
	else if (info.dial_in)
		log_write(&broker->log, LOG_WARN, "forward", "forward=%s client=%s: %s: client reset%s",
			  l->config.name, client, info.last_error, more);
	else
		log_write(&broker->log, LOG_WARN, "forward", "forward=%s client=%s: peer %s (%s:%s) is "
			  "unreachable: %s: client reset%s", l->config.name, client, info.name, info.host,
			  info.port, info.last_error, more);
	return NULL;
}

/* The client's address ("host:port") and host alone. */
static void client_address(int fd, char *out, size_t length, char host[64])
{
	struct sockaddr_storage address;
	socklen_t size = sizeof address;
	char port[16] = "?";
	snprintf(host, 64, "?");
	if (getpeername(fd, (struct sockaddr *)&address, &size) == 0)
		getnameinfo((struct sockaddr *)&address, size, host, 64, port, sizeof port,
			    NI_NUMERICHOST | NI_NUMERICSERV);
	forward_format_address(out, length, host, port);
}

/* One end of a socket as the HANDSHAKE names it; a v4-mapped v6 address as v4 (v4 is 4). */
static uint8_t wire_address(const struct sockaddr_storage *a, uint8_t addr[16], uint16_t *port)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF };
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)a;
		memcpy(addr, &in->sin_addr, 4);
		*port = ntohs(in->sin_port);
		return 4;
	}
	if (a->ss_family != AF_INET6)
		return 0;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;
	*port = ntohs(in6->sin6_port);
	if (memcmp(in6->sin6_addr.s6_addr, mapped, sizeof mapped) == 0) {
		memcpy(addr, in6->sin6_addr.s6_addr + 12, 4);
		return 4;
	}
	memcpy(addr, in6->sin6_addr.s6_addr, 16);
	return 6;
}

/* Who connected (source) to which of our addresses (destination): false if either end is
 * not TCP over IP, or they differ in family. */
static bool client_wire_address(int fd, struct frame_client_address *out)
{
	struct sockaddr_storage peer, local;
	socklen_t peer_size = sizeof peer, local_size = sizeof local;
	memset(out, 0, sizeof *out);
	if (getpeername(fd, (struct sockaddr *)&peer, &peer_size) < 0 ||
	    getsockname(fd, (struct sockaddr *)&local, &local_size) < 0)
		return false;
	out->family = wire_address(&peer, out->src_addr, &out->src_port);
	return out->family && wire_address(&local, out->dst_addr, &out->dst_port) == out->family;
}

/* Whether the client's address may open one more connection now (connection-rate). */
static bool rate_admit(struct forward_listener *l, const char *host, double now)
{
	double rate = l->config.connection_rate;
	if (rate <= 0)
		return true;
	if (!l->rates && !(l->rates = calloc(RATE_SLOTS, sizeof *l->rates)))
		return true; /* no memory for the table: max-connections still bounds */
	struct rate_slot *slot = NULL, *oldest = &l->rates[0];
	for (unsigned i = 0; i < RATE_SLOTS && !slot; i++) {
		if (strcmp(l->rates[i].host, host) == 0)
			slot = &l->rates[i];
		else if (l->rates[i].at < oldest->at)
			oldest = &l->rates[i];
	}
	double burst = rate > 1 ? rate : 1;
	if (!slot) {
		slot = oldest;
		snprintf(slot->host, sizeof slot->host, "%s", host);
		slot->tokens = burst;
		slot->at = now;
	}
	slot->tokens += (now - slot->at) * rate;
	slot->at = now;
	if (slot->tokens > burst)
		slot->tokens = burst;
	if (slot->tokens < 1)
		return false;
	slot->tokens -= 1;
	return true;
}

/* Over max-connections: closed at once, counted, logged at most once a second. */
static void refuse_full(struct forward_listener *l, int fd, double now)
{
	struct broker *broker = l->fw->broker;
	l->refused_full++;
	if (now - l->full_logged_at >= 1.0) {
		l->full_logged_at = now;
		log_write(&broker->log, LOG_WARN, "forward", "forward=%s: max-connections %u reached: new "
			  "connections closed (%llu so far)", l->config.name, l->config.max_connections,
			  (unsigned long long)l->refused_full);
	}
	close(fd);
	fd_budget_give(&broker->fds, 1);
}

/* Over connection-rate: closed at once, counted, logged at most once a second. */
static void refuse_rate(struct forward_listener *l, const char *host, int fd, double now)
{
	struct broker *broker = l->fw->broker;
	l->refused_rate++;
	if (now - l->rate_logged_at >= 1.0) {
		l->rate_logged_at = now;
		log_write(&broker->log, LOG_WARN, "forward", "forward=%s: client %s opens more than "
			  "connection-rate %.15g a second: new connections closed (%llu so far)",
			  l->config.name, host, l->config.connection_rate, (unsigned long long)l->refused_rate);
	}
	close(fd);
	fd_budget_give(&broker->fds, 1);
}

/* One accepted connection: over max-connections it is closed (counted, logged at most once
 * a second); else it asks the pool for a stream. */
static void forward_accepted(struct forward_listener *l, int fd)
{
	struct broker *broker = l->fw->broker;
	double now = ev_now(broker->loop);
	l->accepted++;
	if (l->relays.open + l->opening_count >= l->config.max_connections) {
		refuse_full(l, fd, now);
		return;
	}
	struct forward_open *o = calloc(1, sizeof *o);
	if (!o) {
		client_refuse(l, fd);
		return;
	}
	o->fd = fd;
	char host[64];
	client_address(fd, o->client, sizeof o->client, host);
	if (!rate_admit(l, host, now)) {
		refuse_rate(l, host, fd, now);
		free(o);
		return;
	}
	if (!churn_admit(l, host, now, &o->ticket)) {
		refuse_churn(l, host, fd, now);
		free(o);
		return;
	}
	forward_socket_nodelay(fd);
	struct pool *pool = forward_pool(l, o->client);
	if (!pool) {
		l->open_failures++;
		churn_release(o->ticket);
		client_refuse(l, fd);
		free(o);
		return;
	}
	o->listener = l;
	if ((o->next = l->opening))
		o->next->prev = o;
	l->opening = o;
	l->opening_count++;
	/* with a connection open, the stream comes back before this returns and the relay reads
	 * the client at once: its first bytes go with (or right after) the HANDSHAKE */
	o->has_address = client_wire_address(fd, &o->address);
	if (pool_open_stream_from(pool, l->config.service, o->has_address ? &o->address : NULL,
				  on_stream_opened, o) != WH_OK) {
		open_unlink(o);
		l->open_failures++;
		char more[96];
		if (refusal_log_now(l, more, sizeof more))
			log_write(&broker->log, LOG_WARN, "forward", "forward=%s client=%s: peer %s takes no "
				  "new streams (draining): client reset%s", l->config.name, o->client,
				  l->config.peer, more);
		churn_release(o->ticket);
		client_refuse(l, fd);
		free(o);
	}
}

/* No descriptor for it (those left are kept for apps attaching): closed at once, counted
 * with the refusals of max-connections, logged at most once a second. */
static void refuse_no_descriptor(struct forward_listener *l, int fd)
{
	struct broker *broker = l->fw->broker;
	double now = ev_now(broker->loop);
	fd_budget_shed_done(&broker->fds, fd);
	l->refused_full++;
	if (now - l->full_logged_at >= 1.0) {
		l->full_logged_at = now;
		log_write(&broker->log, LOG_WARN, "forward", "forward=%s: out of file descriptors: new "
			  "connections closed (%llu so far)", l->config.name, (unsigned long long)l->refused_full);
	}
}

/* Not even the budget's spare could take a connection off the queue (descriptors used by
 * something the budget does not count, a limit lowered under the broker): the client waits
 * in the queue, and the listener, still readable, would spin the loop. */
static void accept_rest(struct forward_listener *l, int error)
{
	struct broker *broker = l->fw->broker;
	char who[96];
	if (l->fd < 0)
		return;
	snprintf(who, sizeof who, "forward=%s ", l->config.name);
	listener_rest(broker->loop, &l->accept_watcher, &l->accept_pause, &l->accept_pauses,
		      &broker->log, "forward", who, error);
}

static void on_forward_accept_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct forward_listener *l = w->data;
	(void)revents;
	if (l->fd >= 0)
		ev_io_start(loop, &l->accept_watcher);
}

/* Accepts up to max pending connections. */
static void accept_some(struct forward_listener *l, unsigned max)
{
	for (unsigned i = 0; i < max; i++) {
		bool shed = false;
		int fd = fd_budget_accept(&l->fw->broker->fds, l->fd, FD_USE_STREAM, &shed);
		if (fd < 0) {
			if (accept_failure_persists(errno))
				accept_rest(l, errno);
			return; /* EAGAIN, or an error the next turn meets again */
		}
		if (shed) {
			refuse_no_descriptor(l, fd);
			continue;
		}
		forward_accepted(l, fd);
	}
}

static void on_forward_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	accept_some(w->data, ACCEPTS_PER_TURN);
}

/* ---- listeners ------------------------------------------------------------------------ */

static int listener_bind(struct broker *broker, const struct forward_config *c, int *out)
{
	char where[300];
	forward_format_address(where, sizeof where, c->listen_host, c->listen_port);
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *result;
	int rc = getaddrinfo(c->listen_host, c->listen_port, &hints, &result);
	if (rc != 0) {
		log_write(&broker->log, LOG_ERROR, "forward", "forward=%s: listen %s: %s", c->name, where,
			  gai_strerror(rc));
		return WH_EINVAL;
	}
	int fd = socket(result->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, result->ai_addr, result->ai_addrlen) < 0 || listen(fd, 512) < 0) {
		int error = errno;
		log_write(&broker->log, LOG_ERROR, "forward", "forward=%s: cannot listen on %s: %s (errno %d)",
			  c->name, where, strerror(error), error);
		if (fd >= 0)
			close(fd);
		freeaddrinfo(result);
		return WH_ESYSTEM;
	}
	freeaddrinfo(result);
	*out = fd;
	return WH_OK;
}

static unsigned bound_port(int fd)
{
	struct sockaddr_storage address;
	socklen_t length = sizeof address;
	if (getsockname(fd, (struct sockaddr *)&address, &length) < 0)
		return 0;
	if (address.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&address)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
}

static void forward_wake(struct tcp_relay_limit *limit, void *ctx)
{
	tcp_relay_set_wake(&((struct forward_listener *)ctx)->relays, limit);
}

/* Starts accepting on fd (bound by listener_bind; closed here on failure). */
static int listener_start(struct forwarding *fw, const struct forward_config *c, int fd)
{
	struct broker *broker = fw->broker;
	struct forward_listener *l = calloc(1, sizeof *l);
	if (!l) {
		close(fd);
		return WH_ENOMEM;
	}
	l->fw = fw;
	l->config = *c;
	l->fd = fd;
	tcp_relay_limit_init(&l->limit, broker->loop, forward_wake, l);
	tcp_relay_limit_set_rate(&l->limit, c->bandwidth);
	ev_io_init(&l->accept_watcher, on_forward_accept, l->fd, EV_READ);
	l->accept_watcher.data = l;
	ev_io_start(broker->loop, &l->accept_watcher);
	ev_timer_init(&l->accept_pause, on_forward_accept_resume, ACCEPT_PAUSE_SECONDS, 0.0);
	l->accept_pause.data = l;
	fw->listeners[fw->listener_count++] = l;
	char port[16];
	l->port = bound_port(l->fd);
	snprintf(port, sizeof port, "%u", l->port);
	char where[300];
	forward_format_address(where, sizeof where, c->listen_host, port);
	log_write(&broker->log, LOG_INFO, "forward", "forward=%s listening on %s: connections go to "
		  "service %s of peer %s", c->name, where, c->service, c->peer);
	return WH_OK;
}

static void listener_close(struct forward_listener *l)
{
	if (l->fd < 0)
		return;
	ev_io_stop(l->fw->broker->loop, &l->accept_watcher);
	ev_timer_stop(l->fw->broker->loop, &l->accept_pause);
	close(l->fd);
	l->fd = -1;
}

/* Ends a listener's connections (sockets reset, streams reset) and frees it. */
static void listener_free(struct forward_listener *l)
{
	listener_close(l);
	while (l->opening) {
		struct forward_open *o = l->opening;
		open_unlink(o);
		client_refuse(l, o->fd);
		churn_release(o->ticket);
		o->ticket = NULL;
		o->listener = NULL; /* the pool's callback frees it */
	}
	tcp_relay_set_abort_all(&l->relays);
	tcp_relay_limit_stop(&l->limit);
	free(l->rates);
	free(l);
}

/* Retiring forwards whose connections are done, or whose drain-timeout passed, go. */
static void on_retire_check(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct forwarding *fw = w->data;
	(void)revents;
	double now = ev_now(loop);
	for (struct forward_listener **link = &fw->retiring; *link;) {
		struct forward_listener *l = *link;
		bool done = l->relays.open == 0 && l->opening_count == 0;
		if (!done && now < l->retire_deadline) {
			link = &l->next_retiring;
			continue;
		}
		*link = l->next_retiring;
		log_write(&fw->broker->log, LOG_INFO, "forward", "forward=%s removed%s", l->config.name,
			  done ? "" : ": drain-timeout, its last connections reset");
		listener_free(l);
	}
	if (!fw->retiring)
		ev_timer_stop(loop, w);
}

/* A reload removed the forward: it stops listening at once, its connections go on for up to
 * drain-timeout. */
static void listener_retire(struct forwarding *fw, struct forward_listener *l)
{
	/* clients whose connect completed before the reload are served, not reset with the
	 * listen queue (max-connections bounds what is taken) */
	accept_some(l, l->config.max_connections);
	listener_close(l);
	l->retire_deadline = ev_now(fw->broker->loop) + fw->broker->config.drain_timeout;
	l->next_retiring = fw->retiring;
	fw->retiring = l;
	ev_timer_start(fw->broker->loop, &fw->retire_timer);
	log_write(&fw->broker->log, LOG_INFO, "forward", "forward=%s no longer listens: %u connections "
		  "drain (drain-timeout %.15g s)", l->config.name, l->relays.open + l->opening_count,
		  fw->broker->config.drain_timeout);
}

/* After a reload, once the broker runs on the new config: health checks follow it. */
static void on_sync(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	health_sync(w->data);
	targets_sync_limits(w->data);
}

int forwarding_start(struct broker *broker)
{
	struct forwarding *fw = calloc(1, sizeof *fw);
	if (!fw)
		return WH_ENOMEM;
	fw->broker = broker;
	broker->forwarding = fw;
	ev_timer_init(&fw->retire_timer, on_retire_check, RETIRE_CHECK, RETIRE_CHECK);
	fw->retire_timer.data = fw;
	ev_timer_init(&fw->sync_timer, on_sync, 0, 0);
	fw->sync_timer.data = fw;
	for (unsigned i = 0; i < broker->config.forward_count; i++) {
		int fd, rc = listener_bind(broker, &broker->config.forwards[i], &fd);
		if (rc == WH_OK)
			rc = listener_start(fw, &broker->config.forwards[i], fd);
		if (rc != WH_OK)
			return rc;
	}
	for (unsigned i = 0; i < broker->config.exposed_count; i++) {
		const struct exposed_service *e = &broker->config.exposed[i];
		char first[300];
		forward_format_address(first, sizeof first, e->targets[0].host, e->targets[0].port);
		log_write(&broker->log, LOG_INFO, "forward", "service=%s: streams go to target %s%s",
			  e->service, first, e->target_count > 1 ? " (then the others in order)" : "");
	}
	health_sync(fw);
	return WH_OK;
}

void forwarding_drain(struct broker *broker)
{
	struct forwarding *fw = broker->forwarding;
	for (unsigned i = 0; fw && i < fw->listener_count; i++)
		listener_close(fw->listeners[i]);
}

void forwarding_stop(struct broker *broker)
{
	struct forwarding *fw = broker->forwarding;
	if (!fw)
		return;
	for (unsigned i = 0; i < fw->listener_count; i++)
		listener_free(fw->listeners[i]);
	while (fw->retiring) {
		struct forward_listener *l = fw->retiring;
		fw->retiring = l->next_retiring;
		listener_free(l);
	}
	ev_timer_stop(broker->loop, &fw->retire_timer);
	ev_timer_stop(broker->loop, &fw->sync_timer);
	targets_stop(fw);
	free(fw->churn); /* after the relays, whose ends report to it */
	free(fw);
	broker->forwarding = NULL;
}

static struct forward_listener *listener_named(struct forwarding *fw, const char *name)
{
	for (unsigned i = 0; i < fw->listener_count; i++)
		if (strcmp(fw->listeners[i]->config.name, name) == 0)
			return fw->listeners[i];
	return NULL;
}

/* A forward whose listen address is new needs a socket of its own. */
static bool needs_bind(struct forwarding *fw, const struct forward_config *c)
{
	const struct forward_listener *l = listener_named(fw, c->name);
	char bound[16];
	snprintf(bound, sizeof bound, "%u", l ? l->port : 0);
	return !l || strcmp(l->config.listen_host, c->listen_host) != 0 ||
	       (strcmp(l->config.listen_port, c->listen_port) != 0 && strcmp(bound, c->listen_port) != 0);
}

/* Forwards added at run time stay across a reload, unless the file now has one of that name
 * (the file's then takes its place). */
static void keep_runtime_forwards(struct forwarding *fw, struct broker_config *next)
{
	for (unsigned i = 0; i < fw->listener_count; i++) {
		struct forward_listener *l = fw->listeners[i];
		if (!l->runtime)
			continue;
		unsigned j = 0;
		while (j < next->forward_count && strcmp(next->forwards[j].name, l->config.name) != 0)
			j++;
		if (j < next->forward_count) {
			l->runtime = false;
		} else if (next->forward_count < FORWARD_MAX) {
			next->forwards[next->forward_count++] = l->config;
		} else {
			log_write(&fw->broker->log, LOG_WARN, "forward", "forward=%s (added at run time): "
				  "the config has %d forwards already: removed", l->config.name, FORWARD_MAX);
		}
	}
}

int forwarding_reload(struct broker *broker, struct broker_config *next)
{
	struct forwarding *fw = broker->forwarding;
	if (!fw)
		return WH_OK;
	keep_runtime_forwards(fw, next);
	/* every new address first: one that cannot be bound refuses the reload, nothing changed */
	int fds[FORWARD_MAX];
	for (unsigned i = 0; i < next->forward_count; i++) {
		fds[i] = -1;
		if (needs_bind(fw, &next->forwards[i]) &&
		    listener_bind(broker, &next->forwards[i], &fds[i]) != WH_OK) {
			log_write(&broker->log, LOG_ERROR, "broker", "reload refused: forward=%s cannot listen "
				  "(above): running on as before", next->forwards[i].name);
			while (i-- > 0)
				if (fds[i] >= 0)
					close(fds[i]);
			return WH_ESYSTEM;
		}
	}
	struct forward_listener *kept[FORWARD_MAX];
	unsigned kept_count = 0;
	for (unsigned i = 0; i < fw->listener_count; i++) { /* removed, or moved elsewhere */
		struct forward_listener *l = fw->listeners[i];
		unsigned j = 0;
		while (j < next->forward_count && strcmp(next->forwards[j].name, l->config.name) != 0)
			j++;
		if (j == next->forward_count || fds[j] >= 0)
			listener_retire(fw, l);
		else
			kept[kept_count++] = l;
	}
	memcpy(fw->listeners, kept, sizeof kept[0] * kept_count);
	fw->listener_count = kept_count;
	for (unsigned j = 0; j < next->forward_count; j++) {
		const struct forward_config *c = &next->forwards[j];
		struct forward_listener *l = fds[j] < 0 ? listener_named(fw, c->name) : NULL;
		if (l) { /* same address: new connections take the new peer, service, limit */
			if (memcmp(&l->config, c, sizeof *c) != 0)
				log_write(&broker->log, LOG_INFO, "forward", "forward=%s changed: new connections "
					  "use the new settings", c->name);
			l->config = *c;
			tcp_relay_limit_set_rate(&l->limit, c->bandwidth);
		} else if (listener_start(fw, c, fds[j]) != WH_OK) {
			log_write(&broker->log, LOG_ERROR, "forward", "forward=%s: out of memory: not added",
				  c->name);
		}
	}
	ev_timer_start(broker->loop, &fw->sync_timer); /* checks and limits: once next runs */
	return WH_OK;
}

static void forward_info_emit(const struct forward_listener *l, const char *state,
			      void (*fn)(const struct forward_info *, void *), void *arg)
{
	struct forward_info info = {
		.name = l->config.name, .peer = l->config.peer, .service = l->config.service,
		.state = state, .origin = l->runtime ? "run time" : "config", .open = l->relays.open + l->opening_count,
		.max_connections = l->config.max_connections, .accepted = l->accepted,
		.refused_full = l->refused_full, .refused_rate = l->refused_rate,
		.refused_resets = l->refused_resets,
		.open_failures = l->open_failures,
		.reset_by_far = l->relays.reset_in, .reset_by_client = l->relays.reset_out,
		.idle_ended = l->relays.idle_ended,
		.bytes_in = l->relays.bytes_in, .bytes_out = l->relays.bytes_out,
	};
	char port[16];
	snprintf(port, sizeof port, "%u", l->port);
	forward_format_address(info.listen, sizeof info.listen, l->config.listen_host, port);
	fn(&info, arg);
}

void forwarding_each_forward(const struct broker *broker, void (*fn)(const struct forward_info *, void *),
			     void *arg)
{
	const struct forwarding *fw = broker->forwarding;
	for (unsigned i = 0; fw && i < fw->listener_count; i++)
		forward_info_emit(fw->listeners[i], broker->draining ? "closed" : "listening", fn, arg);
	for (const struct forward_listener *l = fw ? fw->retiring : NULL; l; l = l->next_retiring)
		forward_info_emit(l, "draining", fn, arg);
}

#define POOL_MUXES_MAX 1024 /* pool-max's ceiling */

struct mux_list {
	const struct mux *muxes[POOL_MUXES_MAX];
	unsigned count;
};

static void collect_mux(struct conn *conn, void *arg)
{
	struct mux_list *list = arg;
	if (list->count < POOL_MUXES_MAX)
		list->muxes[list->count++] = conn_mux(conn);
}

static bool in_list(const struct mux *mux, void *arg)
{
	const struct mux_list *list = arg;
	for (unsigned i = 0; i < list->count; i++)
		if (list->muxes[i] == mux)
			return true;
	return false;
}

void forwarding_pool_gone(struct broker *broker, struct pool *pool)
{
	struct forwarding *fw = broker->forwarding;
	if (!fw)
		return;
	static struct mux_list list; /* 8 KiB: not on the stack; the loop's thread only */
	list.count = 0;
	pool_each_conn(pool, collect_mux, &list);
	if (list.count == 0)
		return;
	const char *why = "the peer was removed from the config and its drain-timeout passed";
	for (unsigned i = 0; i < fw->listener_count; i++)
		tcp_relay_set_abort_where(&fw->listeners[i]->relays, in_list, &list, FRAME_ERR_GOING_AWAY, why);
	for (struct forward_listener *l = fw->retiring; l; l = l->next_retiring)
		tcp_relay_set_abort_where(&l->relays, in_list, &list, FRAME_ERR_GOING_AWAY, why);
	targets_abort_where(fw, in_list, &list, why);
}

/* ---- forwards changed at run time (wormhole-ctl forward add, forward del) ---------------- */

static bool name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n >= sizeof ((struct forward_config *)0)->name)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", name[i]))
			return false;
	return true;
}

/* "HOST:PORT" or "[V6]:PORT" into c's listen fields; NULL or why not. */
static const char *parse_listen(const char *text, struct forward_config *c)
{
	const char *colon = strrchr(text, ':');
	if (!colon || colon == text || !colon[1] || strlen(colon + 1) >= sizeof c->listen_port)
		return "LISTEN wants HOST:PORT";
	size_t n = (size_t)(colon - text);
	if (text[0] == '[') {
		if (colon[-1] != ']' || n < 3)
			return "LISTEN wants [ADDRESS]:PORT for IPv6";
		text++;
		n -= 2;
	}
	if (n >= sizeof c->listen_host)
		return "LISTEN: host name too long";
	char *end;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (*end || port > 65535 || colon[1] == '-' || colon[1] == '+')
		return "LISTEN: the port is not within 0..65535";
	memcpy(c->listen_host, text, n);
	c->listen_host[n] = '\0';
	snprintf(c->listen_port, sizeof c->listen_port, "%lu", port);
	return NULL;
}

int forwarding_add(struct broker *broker, const char *name, const char *listen, const char *peer,
		   const char *service, char *why, size_t length)
{
	struct forwarding *fw = broker->forwarding;
	struct broker_config *config = &broker->config;
	struct forward_config c = { .max_connections = FORWARD_MAX_CONNECTIONS_DEFAULT,
				    .client_reset_rate = FORWARD_CLIENT_RESET_RATE_DEFAULT };
	const char *bad = !fw ? "the broker has no forwarding" /* start failed */
			: broker->draining ? "the broker is stopping"
			: !name_valid(name) ? "NAME is 1 to 63 letters, digits, '-', '_' or '.'"
			: listener_named(fw, name) ? "a forward of that name exists (forward del it first)"
			: config->forward_count >= FORWARD_MAX ? "too many forwards"
			: !broker_find_pool(broker, peer) ? "PEER is not a configured peer"
			: !service[0] || strlen(service) > 255 ? "SERVICE is 1 to 255 bytes"
			: parse_listen(listen, &c);
	if (bad) {
		snprintf(why, length, "forward add %s: %s", name, bad);
		return WH_EINVAL;
	}
	snprintf(c.name, sizeof c.name, "%s", name);
	snprintf(c.peer, sizeof c.peer, "%s", peer);
	snprintf(c.service, sizeof c.service, "%s", service);
	int fd, rc = listener_bind(broker, &c, &fd);
	if (rc == WH_OK)
		rc = listener_start(fw, &c, fd);
	if (rc != WH_OK) {
		snprintf(why, length, "forward add %s: cannot listen on %s (the broker's log says why)", name,
			 listen);
		return rc;
	}
	fw->listeners[fw->listener_count - 1]->runtime = true;
	config->forwards[config->forward_count++] = c;
	struct forward_listener *l = fw->listeners[fw->listener_count - 1];
	char port[16], where[300];
	snprintf(port, sizeof port, "%u", l->port);
	forward_format_address(where, sizeof where, c.listen_host, port);
	snprintf(why, length, "forward %s listening on %s: connections go to service %s of peer %s", name,
		 where, service, peer);
	return WH_OK;
}

int forwarding_del(struct broker *broker, const char *name, char *why, size_t length)
{
	struct forwarding *fw = broker->forwarding;
	struct forward_listener *l = fw ? listener_named(fw, name) : NULL;
	if (!l) {
		snprintf(why, length, "forward del: no forward named '%.100s'", name);
		return WH_EINVAL;
	}
	unsigned open = l->relays.open + l->opening_count;
	for (unsigned i = 0; i < fw->listener_count; i++)
		if (fw->listeners[i] == l) {
			memmove(&fw->listeners[i], &fw->listeners[i + 1],
				sizeof fw->listeners[0] * (fw->listener_count - i - 1));
			fw->listener_count--;
			break;
		}
	struct broker_config *config = &broker->config;
	for (unsigned i = 0; i < config->forward_count; i++)
		if (strcmp(config->forwards[i].name, name) == 0) {
			memmove(&config->forwards[i], &config->forwards[i + 1],
				sizeof config->forwards[0] * (config->forward_count - i - 1));
			config->forward_count--;
			break;
		}
	listener_retire(fw, l);
	snprintf(why, length, "forward %s no longer listens; %u connections drain (drain-timeout %.15g s)%s",
		 name, open, config->drain_timeout, l->runtime ? "" : "; a reload brings it back from the config");
	return WH_OK;
}
