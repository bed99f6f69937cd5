/* The broker: its configuration, its listener for peer brokers, its pools, its services. */
#include "config.h"

#include <errno.h>
#include <sodium.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "unix_socket.h"
#include "services.h"
#include "listener_rest.h"

struct broker_conn {
	struct broker *broker;
	struct conn *conn;
	struct broker_conn *prev, *next;
	struct peer_account *account; /* its peer's share of the budget */
	/* over TLS, until it authenticates: in the broker's strangers list */
	struct broker_conn *wait_prev, *wait_next;
	struct admission_addr addr; /* its source address (the per-address cap, broker/admission.h) */
	unsigned priority;          /* admission_priority at accept: lower is served first */
	bool stranger;              /* in the strangers list */
	bool token;                 /* its handshake took a token (given back if it authenticates) */
};

void broker_config_default(struct broker_config *config)
{
	memset(config, 0, sizeof *config);
	snprintf(config->listen_host, sizeof config->listen_host, "127.0.0.1");
	snprintf(config->listen_port, sizeof config->listen_port, "7420");
	snprintf(config->default_service, sizeof config->default_service, "echo");
	config->memory_budget = 8ull << 30;
	snprintf(config->apps.socket_path, sizeof config->apps.socket_path, "/run/wormhole/broker.sock");
	config->apps.socket_mode = 0660;
	config->apps.ring_capacity = 1024u * 1024u;
	config->apps.max_streams = 16384;
	config->apps.accept_backlog = 256;
	config->apps.max_listeners = 64;
	config->apps.socket_uid = config->apps.socket_gid = -1;
	config->control.socket_mode = 0600;
	config->control.socket_uid = config->control.socket_gid = -1;
	pool_config_default(&config->pool);
	config->log_level = LOG_WARN;
	config->drain_timeout = 10;
	config->handshake_timeout = 10;
	config->max_peer_connections = 1024;
	config->max_connections_per_address = 64;
	config->max_unauthenticated = 256;
	config->handshake_rate = 100;
	config->peer_idle_timeout = 600;
	config->connection_budget_percent = 25;
	config->peer_budget_percent = 50;
	config->app_peer_budget_percent = 25;
	config->local_reserve_percent = 10;
}

/* What the streams one app opens to one peer may hold of the budgets: app-peer-budget percent
 * (a quarter by default) of a peer's share, so that one app holding idle streams leaves the
 * others theirs. */
static uint64_t app_peer_share(const struct broker_config *config)
{
	return config->memory_budget / 100 * config->peer_budget_percent / 100 * config->app_peer_budget_percent;
}

/* "host" of "host:port" or "[v6]:port". */
static void address_host(const char *address, char *host, size_t len)
{
	const char *colon = strrchr(address, ':');
	size_t n = colon ? (size_t)(colon - address) : strlen(address);
	snprintf(host, len, "%.*s", (int)n, address);
}

/* Streams a peer opens are routed by service name (empty: the default service): to the app
 * listening on it, else to a built-in service. */
static int on_incoming(struct mux *mux, struct mux_stream *stream, const char *service, void *user)
{
	struct broker *broker = user;
	const char *name = service[0] ? service : broker->config.default_service;
	struct conn *conn = conn_from_mux(mux);
	const char *why;
	bool tls = conn && conn_is_tls(conn);
	char host[64] = "";
	if (conn)
		address_host(conn_remote_addr(conn), host, sizeof host);
	if (service_peer_may_open(&broker->config.apps.services, name,
				  conn ? conn_peer_identity(conn) : "", tls, host_is_loopback(host),
				  &why) != WH_OK) {
		log_write(&broker->log, LOG_WARN, "broker", "conn=%u peer=%s stream=%u service=%s refused: %s",
			  mux_id(mux), mux_peer(mux), mux_stream_id(stream), name, why);
		return WH_EACCESS;
	}
	int error = forwarding_attach_target(broker, stream, name);
	if (error == WH_ENO_SERVICE)
		error = broker->apps ? apps_route_incoming(broker->apps, mux, stream, name) : WH_ENO_SERVICE;
	if (error == WH_ENO_SERVICE)
		error = services_attach(stream, name);
	log_write(&broker->log, LOG_DEBUG, "broker", "conn=%u stream=%u service=%s: %s",
		  mux_id(mux), mux_stream_id(stream), name, wh_strerror(error));
	return error;
}

static int on_incoming_accepted(struct mux *mux, struct mux_stream *stream, const char *service,
				void *user)
{
	return on_incoming(mux, stream, service, ((struct broker_conn *)user)->broker);
}

/* ---- strangers: accepted TLS connections not authenticated yet ---------------------------- */

/* How many strangers may be open at once: max-unauthenticated, within max-peer-connections. */
static unsigned strangers_allowance(const struct broker *broker)
{
	const struct broker_config *c = &broker->config;
	return c->max_unauthenticated < c->max_peer_connections ? c->max_unauthenticated
								: c->max_peer_connections;
}

static void stranger_unlink(struct broker *broker, struct broker_conn *bc)
{
	if (!bc->stranger)
		return;
	if (bc->wait_prev)
		bc->wait_prev->wait_next = bc->wait_next;
	else
		broker->strangers = bc->wait_next;
	if (bc->wait_next)
		bc->wait_next->wait_prev = bc->wait_prev;
	else
		broker->strangers_tail = bc->wait_prev;
	bc->wait_prev = bc->wait_next = NULL;
	bc->stranger = false;
	broker->strangers_open--;
}

/* The stranger that makes room for a newcomer of `priority`: the worst priority, the oldest
 * among those; NULL if every stranger is better than the newcomer (the newcomer is refused
 * then). With `from`, the oldest stranger from that address, whatever its priority: the
 * newcomer cannot be told from it, and the address's score may have fallen since it came
 * (its own strangers must not get a peer on their address refused). */
static struct broker_conn *stranger_victim(struct broker *broker, unsigned priority,
					   const struct admission_addr *from)
{
	struct broker_conn *victim = NULL;
	for (struct broker_conn *bc = broker->strangers; bc; bc = bc->wait_next) {
		if (from) {
			if (memcmp(bc->addr.address, from->address, sizeof from->address) == 0)
				return bc;
			continue;
		}
		if (!victim || bc->priority > victim->priority)
			victim = bc;
	}
	return victim && victim->priority >= priority ? victim : NULL;
}

static void accepted_release(struct broker *broker, struct broker_conn *bc);

/* Drops a stranger now, so that its slot goes to the newer connection being accepted. */
static void stranger_drop(struct broker *broker, struct broker_conn *bc, const char *which)
{
	broker->strangers_dropped++;
	double now = ev_now(broker->loop);
	if (now - broker->dropped_logged_at >= 1.0) {
		broker->dropped_logged_at = now;
		log_write(&broker->log, LOG_WARN, "broker", "conn=%u from %s dropped before it "
			  "authenticated (%s): %s reached (%llu dropped so far)",
			  mux_id(conn_mux(bc->conn)), conn_remote_addr(bc->conn),
			  conn_is_held(bc->conn) ? "waiting for its turn" : "in its handshake", which,
			  (unsigned long long)broker->strangers_dropped);
	}
	accepted_release(broker, bc);
}

static void on_handshake_turn(struct ev_loop *loop, ev_timer *w, int revents);

/* Strangers waiting for a handshake get one while handshake-rate has tokens: the best
 * priority first, the oldest first within it. Otherwise the timer comes back for the next. */
static void strangers_serve(struct broker *broker)
{
	double now = ev_now(broker->loop), rate = broker->config.handshake_rate;
	for (;;) {
		struct broker_conn *best = NULL;
		for (struct broker_conn *bc = broker->strangers; bc; bc = bc->wait_next)
			if (conn_is_held(bc->conn) && (!best || bc->priority < best->priority))
				best = bc;
		if (!best)
			return;
		if (!admission_take(broker->admission, rate, now, best->priority == ADMISSION_KNOWN)) {
			if (!ev_is_active(&broker->handshake_turn)) {
				ev_timer_set(&broker->handshake_turn,
					     admission_wait(broker->admission, rate, now), 0.0);
				ev_timer_start(broker->loop, &broker->handshake_turn);
			}
			return;
		}
		best->token = true;
		conn_start_handshake(best->conn);
	}
}

static void on_handshake_turn(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	strangers_serve(w->data);
}

/* An address whose connections do not authenticate waits behind others (logged at most once a
 * second, with how many more were marked meanwhile). */
static void note_marked(struct broker *broker, const char *host)
{
	double now = ev_now(broker->loop);
	broker->marked_unlogged++;
	if (now - broker->marked_logged_at < 1.0)
		return;
	log_write(&broker->log, LOG_WARN, "broker", "%s made %.0f connections that did not "
		  "authenticate lately: its connections wait behind others' for a TLS handshake, none "
		  "refused (%u addresses marked since the last such line)", host,
		  ADMISSION_ADDRESS_MAX, broker->marked_unlogged);
	broker->marked_logged_at = now;
	broker->marked_unlogged = 0;
}

/* Accepted connections are capped in total and per source address: beyond, a connection is
 * closed at once (logged once per second, counted), before it costs a mux or a handshake.
 * Over TLS the newcomer is a `stranger` (not authenticated yet) of `priority`: a stranger no
 * better than it that holds a slot makes room instead, the oldest first, so strangers never
 * crowd out an authenticated peer. Addresses are compared as admission_addr_from made them. */
static bool over_connection_caps(struct broker *broker, const char *address,
				 const struct admission_addr *from, bool stranger, unsigned priority)
{
	const struct broker_config *c = &broker->config;
	const char *which = NULL;
	int kind = 0;
	unsigned same = 0;
	for (struct broker_conn *bc = broker->accepted; bc && same < c->max_connections_per_address;
	     bc = bc->next)
		same += memcmp(bc->addr.address, from->address, sizeof from->address) == 0;
	struct broker_conn *victim = NULL;
	if (same >= c->max_connections_per_address) {
		which = "max-connections-per-address";
		kind = 1;
		victim = stranger ? stranger_victim(broker, priority, from) : NULL;
	} else if (broker->accepted_open >= c->max_peer_connections) {
		which = "max-peer-connections";
		victim = stranger ? stranger_victim(broker, priority, NULL) : NULL;
	} else if (stranger && broker->strangers_open >= strangers_allowance(broker)) {
		which = "max-unauthenticated";
		kind = 2;
		victim = stranger_victim(broker, priority, NULL);
	}
	if (!which)
		return false;
	if (victim) {
		stranger_drop(broker, victim, which);
		return false;
	}
	broker->capped_connections++;
	double now = ev_now(broker->loop);
	if (now - broker->capped_logged_at[kind] >= 1.0) {
		char host[64];
		address_host(address, host, sizeof host);
		broker->capped_logged_at[kind] = now;
		log_write(&broker->log, LOG_WARN, "broker", "peer connection from %s refused: %s reached "
			  "(%llu refused so far)", host, which, (unsigned long long)broker->capped_connections);
	}
	return true;
}

/* The peer's share of the budget, made with its first connection. NULL on ENOMEM. */
static struct peer_account *account_join(struct broker *broker, const char *key)
{
	struct peer_account *a;
	for (a = broker->accounts; a; a = a->next)
		if (strcmp(a->key, key) == 0)
			break;
	if (!a) {
		a = calloc(1, sizeof *a);
		if (!a)
			return NULL;
		snprintf(a->key, sizeof a->key, "%s", key);
		a->next = broker->accounts;
		broker->accounts = a;
	}
	a->budget.limit = broker->config.memory_budget / 100 * broker->config.peer_budget_percent;
	a->connections++;
	return a;
}

static void account_leave(struct broker *broker, struct peer_account *account)
{
	if (!account || --account->connections > 0)
		return;
	for (struct peer_account **p = &broker->accounts; *p; p = &(*p)->next)
		if (*p == account) {
			*p = account->next;
			break;
		}
	free(account);
}

/* Charges a connection to its peer's share: over TLS once the certificate names the peer,
 * over plaintext by source address at once. */
static void account_attach(struct broker_conn *bc, const char *key)
{
	struct peer_account *account = account_join(bc->broker, key);
	if (!account)
		return; /* out of memory: the connection's own share and the broker's still bound it */
	mux_set_budget_account(conn_mux(bc->conn), &account->budget);
	account_leave(bc->broker, bc->account);
	bc->account = account;
}

static void penalty_apply(struct broker *broker, struct broker_conn *bc, const char *name);

static void on_accepted_ready(struct conn *conn, void *user)
{
	struct broker_conn *bc = user;
	struct broker *broker = bc->broker;
	double now = ev_now(broker->loop);
	char key[260];
	snprintf(key, sizeof key, "id:%s", conn_peer_identity(conn));
	account_attach(bc, key);
	/* authenticated: no longer a stranger, its address known, its token back */
	stranger_unlink(broker, bc);
	admission_authenticated(broker->admission, &bc->addr, now);
	if (bc->token)
		admission_refund(broker->admission, broker->config.handshake_rate, now);
	strangers_serve(broker);
	dialin_adopt(broker, conn);
	penalty_apply(broker, bc, key);
}

/* Forgets an accepted connection: its slot, its descriptor, its share of the budget. */
static void accepted_release(struct broker *broker, struct broker_conn *bc)
{
	stranger_unlink(broker, bc);
	broker->accepted_open--;
	if (bc->prev)
		bc->prev->next = bc->next;
	else
		broker->accepted = bc->next;
	if (bc->next)
		bc->next->prev = bc->prev;
	dialin_release(broker, bc->conn);
	conn_free(bc->conn); /* before the account: freeing the mux gives its charges back */
	account_leave(broker, bc->account);
	fd_budget_give(&broker->fds, 1);
	free(bc);
}

/* The penalty's clock: monotonic, so that a step of the wall clock (ev_now is wall-clock
 * time) neither lengthens a hold nor forgets a strike. */
static double penalty_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The longest hold this broker's timers allow: a held connection is read after half the
 * shortest of the deadlines that run while it waits (its PING's answer, its first frame, a
 * stream before peer-idle-timeout), so that they never end a connection for our own wait. */
static double penalty_hold_max(const struct broker *broker)
{
	const struct mux_config *mux = &broker->config.pool.mux;
	double most = PENALTY_MAX;
	double limits[3] = { mux->keepalive_interval > 0 ? mux->keepalive_timeout : 0,
			     broker->conn_shared.handshake_timeout, broker->config.peer_idle_timeout };
	for (int i = 0; i < 3; i++)
		if (limits[i] > 0 && limits[i] / 2 < most)
			most = limits[i] / 2;
	return most;
}

/* A connection closed for what its peer sent: a strike against the peer (its account's key:
 * its certificate identity over TLS, its source address over plaintext). */
static void penalty_note_close(struct broker *broker, struct broker_conn *bc, struct mux *mux)
{
	if (!mux_peer_at_fault(mux) || !bc->account)
		return;
	double now = penalty_now();
	unsigned strikes = penalty_strike(broker->penalty, bc->account->key, now);
	double hold = penalty_hold(broker->penalty, bc->account->key, now, NULL);
	double most = penalty_hold_max(broker);
	log_write(&broker->log, LOG_INFO, "broker", "conn=%u peer=%s (%s) cut off for abuse: strike %u, "
		  "its next connection waits %.2f s", mux_id(mux), mux_peer(mux), bc->account->key,
		  strikes, hold < most ? hold : most);
}

/* Closes the other held connections of this peer; how many. A held connection whose peer
 * left cannot be told from a live one (the peer's FIN waits behind what it sent, unread), so
 * the newest wins: a reconnecting attacker's last run goes, and a batch opened at once is
 * held one at a time (let go together, each would bring a fresh burst). */
static unsigned penalty_replace(struct broker *broker, const struct broker_conn *self)
{
	unsigned closed = 0;
	for (struct broker_conn *bc = broker->accepted; bc; bc = bc->next)
		if (bc != self && bc->account == self->account && conn_reading_held(bc->conn)) {
			conn_close(bc->conn, WH_ELIMIT);
			closed++;
		}
	return closed;
}

/* A new connection of a peer with strikes (penalty_note_close) is read only once its hold
 * is over; it takes the place of any other of the peer's still held. */
static void penalty_apply(struct broker *broker, struct broker_conn *bc, const char *name)
{
	double now = penalty_now();
	unsigned strikes = 0;
	double hold = penalty_hold(broker->penalty, name, now, &strikes);
	if (hold <= 0)
		return;
	double most = penalty_hold_max(broker);
	if (hold > most)
		hold = most;
	if (bc->account)
		broker->penalty_replaced += penalty_replace(broker, bc);
	conn_hold_reading(bc->conn, hold);
	broker->penalty_holds++;
	if (now - broker->penalty_logged_at >= 1.0) {
		broker->penalty_logged_at = now;
		log_write(&broker->log, LOG_WARN, "broker", "conn=%u peer connection (%s) held %.2f s "
			  "before it is read: %u strikes for abuse in the last minute (%llu held, %llu "
			  "closed for a newer one so far)", mux_id(conn_mux(bc->conn)), name, hold, strikes,
			  (unsigned long long)broker->penalty_holds,
			  (unsigned long long)broker->penalty_replaced);
	}
}

static void on_accepted_closed(struct mux *mux, int error, void *user)
{
	struct broker_conn *bc = user;
	(void)error;
	penalty_note_close(bc->broker, bc, mux);
	accepted_release(bc->broker, bc);
}

static void on_accept_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct broker *broker = w->data;
	(void)revents;
	ev_io_start(loop, &broker->accept_watcher);
}

/* A new accepted connection: its conn (held until its turn, over TLS) and its place in the
 * lists. False on out of memory (the descriptor is the caller's then). */
static bool accepted_add(struct broker *broker, int fd, const char *address,
			 const struct admission_addr *addr, bool stranger, unsigned priority)
{
	struct broker_conn *bc = calloc(1, sizeof *bc);
	struct mux_config config = broker->config.pool.mux;
	config.idle_timeout = broker->config.peer_idle_timeout;
	config.memory_budget = broker->config.memory_budget / 100 *
			       broker->config.connection_budget_percent;
	/* the id comes from conn_new: one numbering for every connection */
	struct mux_callbacks callbacks = {
		.on_incoming = on_incoming_accepted,
		.on_closed = on_accepted_closed,
	};
	struct conn_tls tls = {
		.ctx = broker->config.listen_plaintext ? NULL : broker->conn_shared.tls,
		.handshake_timeout = broker->conn_shared.handshake_timeout,
		.held = stranger,
	};
	if (bc)
		bc->conn = conn_new_secure(broker->loop, fd, false, &config, &broker->conn_shared, &tls,
					   &callbacks, bc);
	if (!bc || !bc->conn) {
		free(bc);
		return false;
	}
	bc->broker = broker;
	bc->addr = *addr;
	if (stranger) {
		conn_set_on_ready(bc->conn, on_accepted_ready);
		bc->priority = priority;
		bc->stranger = true;
		bc->wait_prev = broker->strangers_tail;
		if (broker->strangers_tail)
			broker->strangers_tail->wait_next = bc;
		else
			broker->strangers = bc;
		broker->strangers_tail = bc;
		broker->strangers_open++;
	} else {
		char key[260], host[64];
		address_host(address, host, sizeof host);
		snprintf(key, sizeof key, "address:%s", host);
		account_attach(bc, key);
	}
	bc->next = broker->accepted;
	if (broker->accepted)
		broker->accepted->prev = bc;
	broker->accepted = bc;
	broker->accepted_total++;
	broker->accepted_open++;
	if (!stranger) {
		dialin_adopt(broker, bc->conn); /* plaintext: a dial-in peer by its address */
		penalty_apply(broker, bc, bc->account ? bc->account->key : "");
	}
	return true;
}

/* One accepted descriptor: refused by a cap, or added. Over TLS it is a stranger: scored by
 * its address (never refused for that: broker/admission.h) and started when its turn comes. */
static void accepted_admit(struct broker *broker, int fd)
{
	struct sockaddr_storage from;
	socklen_t from_len = sizeof from;
	char address[64] = "";
	struct admission_addr addr;
	bool tls = broker->conn_shared.tls && !broker->config.listen_plaintext;
	bool known_family = false;
	if (getpeername(fd, (struct sockaddr *)&from, &from_len) == 0) {
		sockaddr_format((struct sockaddr *)&from, from_len, address, sizeof address);
		known_family = admission_addr_from((struct sockaddr *)&from, &addr);
	}
	if (!known_family)
		memset(&addr, 0, sizeof addr); /* all such share one key: the worst it can do */
	double now = ev_now(broker->loop);
	unsigned priority = tls ? admission_priority(broker->admission, &addr, now) : 0;
	if (over_connection_caps(broker, address, &addr, tls, priority)) {
		close(fd);
		fd_budget_give(&broker->fds, 1);
		return;
	}
	if (!accepted_add(broker, fd, address, &addr, tls, priority)) {
		log_write(&broker->log, LOG_ERROR, "broker", "out of memory for a connection");
		close(fd);
		fd_budget_give(&broker->fds, 1);
		return;
	}
	if (tls && admission_arrived(broker->admission, &addr, now)) {
		char host[64];
		address_host(address, host, sizeof host);
		note_marked(broker, host);
	}
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct broker *broker = w->data;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		bool shed;
		int fd = fd_budget_accept(&broker->fds, broker->listen_fd, FD_USE_STREAM, &shed);
		if (fd < 0) {
			if (accept_failure_persists(errno)) {
				/* Not even the spare could take it: a readable listener would spin the
				 * loop, so stop looking for a moment. */
				listener_rest(loop, &broker->accept_watcher, &broker->accept_pause,
					      &broker->accept_rests, &broker->log, "broker", "peer listener ",
					      errno);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				log_write(&broker->log, LOG_WARN, "broker", "accept: %s", strerror(errno));
			}
			break;
		}
		if (shed) {
			/* Descriptors left are kept for apps attaching: this peer has to come back. */
			fd_budget_shed_done(&broker->fds, fd);
			if (broker->accepted_shed++ % 1000 == 0)
				log_write(&broker->log, LOG_WARN, "broker", "peer connection refused: out "
					  "of file descriptors (%llu refused)",
					  (unsigned long long)broker->accepted_shed);
			continue;
		}
		accepted_admit(broker, fd);
	}
	strangers_serve(broker);
}

/* After a burst (a flood of connections or streams, now gone) malloc keeps the freed memory
 * in its arenas; an operator watching RSS should see it come back. Looked at every few
 * seconds, given back when more than TRIM_THRESHOLD is free. */
#define TRIM_INTERVAL 5.0
#define TRIM_THRESHOLD (8u << 20)

static void on_trim(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	struct mallinfo2 info = mallinfo2();
	if (info.fordblks > TRIM_THRESHOLD)
		malloc_trim(0);
}

static int listen_on(struct broker *broker)
{
	const struct broker_config *c = &broker->config;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *result;
	int rc = getaddrinfo(c->listen_host, c->listen_port, &hints, &result);
	if (rc != 0) {
		log_write(&broker->log, LOG_ERROR, "broker", "listen address %s:%s: %s", c->listen_host,
			  c->listen_port, gai_strerror(rc));
		return WH_EINVAL;
	}
	int fd = socket(result->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, result->ai_addr, result->ai_addrlen) < 0 || listen(fd, 512) < 0) {
		log_write(&broker->log, LOG_ERROR, "broker", "listen on %s:%s: %s", c->listen_host,
			  c->listen_port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(result);
		return WH_ESYSTEM;
	}
	freeaddrinfo(result);
	broker->listen_fd = fd;
	ev_io_init(&broker->accept_watcher, on_accept, fd, EV_READ);
	broker->accept_watcher.data = broker;
	ev_timer_init(&broker->accept_pause, on_accept_resume, ACCEPT_PAUSE_SECONDS, 0.0);
	broker->accept_pause.data = broker;
	ev_io_start(broker->loop, &broker->accept_watcher);
	log_write(&broker->log, LOG_INFO, "broker", "listening for peers on %s:%u (%s)", c->listen_host,
		  broker_listen_port(broker),
		  broker->conn_shared.tls && !c->listen_plaintext ? "TLS 1.3, peers authenticated" : "plaintext");
	return WH_OK;
}

int broker_write_port_file(const struct broker *broker)
{
	const char *path = broker->config.port_file;
	if (!path[0])
		return WH_OK;
	char text[16];
	snprintf(text, sizeof text, "%u\n", broker_listen_port(broker));
	/* never through a link planted at a temporary name: the broker may run as root */
	return unix_socket_write_file(path, text, &broker->log, "port-file") == 0 ? WH_OK : WH_ESYSTEM;
}

unsigned broker_listen_port(const struct broker *broker)
{
	struct sockaddr_storage addr;
	socklen_t len = sizeof addr;
	if (broker->listen_fd < 0 || getsockname(broker->listen_fd, (struct sockaddr *)&addr, &len) < 0)
		return 0;
	if (addr.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&addr)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
}

static struct pool *find_pool(void *ctx, const char *name)
{
	struct broker *broker = ctx;
	if (strcmp(name, "local") == 0)
		return local_link_pool(broker);
	for (int i = 0; i < broker->config.peer_count; i++)
		if (strcmp(broker->config.peers[i].name, name) == 0)
			return broker->pools[i];
	return NULL;
}

/* Each app stream costs the broker a descriptor or two: allow as many as the system lets us.
 * With the privilege to (root, CAP_SYS_RESOURCE) the hard limit goes up to 1 Mi; without,
 * the soft limit goes up to the hard one. `wanted` (--max-fds) sets the limit instead. */
static void set_fd_limit(const struct log_sink *log, uint64_t wanted)
{
	struct rlimit limit = { 1u << 20, 1u << 20 };
	if (wanted) {
		limit.rlim_cur = limit.rlim_max = (rlim_t)wanted;
		if (setrlimit(RLIMIT_NOFILE, &limit) < 0)
			log_write(log, LOG_WARN, "broker", "cannot set the descriptor limit to %llu: %s",
				  (unsigned long long)wanted, strerror(errno));
		return;
	}
	if (setrlimit(RLIMIT_NOFILE, &limit) == 0)
		return;
	if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &limit) < 0)
			log_write(log, LOG_WARN, "broker", "cannot raise the descriptor limit: %s",
				  strerror(errno));
	}
}

/* The socket's directory, created if missing (e.g. /run/wormhole under a fresh /run), with
 * mode 0755: the socket's own mode and owner say who may attach. WH_OK, or WH_ESYSTEM with a
 * log line that says why (EACCES included). */
static int make_socket_dir(const char *path, const struct log_sink *log)
{
	char dir[sizeof ((struct broker_config *)0)->apps.socket_path];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return WH_OK;
	*slash = '\0';
	if (mkdir(dir, 0755) == 0) {
		log_write(log, LOG_INFO, "apps", "created the socket directory %s", dir);
		return WH_OK;
	}
	struct stat st;
	if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return WH_OK;
	log_write(log, LOG_ERROR, "apps", "socket %s: cannot create its directory %s: %s", path, dir,
		  errno == EEXIST ? "it exists and is not a directory" : strerror(errno));
	return WH_ESYSTEM;
}

static void retire_check(struct ev_loop *loop, ev_timer *w, int revents);

int broker_start(struct broker *broker, struct ev_loop *loop, const struct broker_config *config)
{
	memset(broker, 0, sizeof *broker);
	broker->loop = loop;
	broker->started_at = ev_now(loop);
	if (sodium_init() < 0)
		return WH_ESYSTEM;
	uint8_t id[8];
	randombytes_buf(id, sizeof id);
	sodium_bin2hex(broker->instance_id, sizeof broker->instance_id, id, sizeof id);
	broker->config = *config;
	broker->log = (struct log_sink){ config->log_level, stderr, log_stderr_is_journal() };
	broker->config.pool.mux.log = &broker->log;
	for (int i = 0; i < broker->config.peer_count; i++)
		broker->config.peers[i].pool.mux.log = &broker->log;
	broker->budget.limit = config->memory_budget;
	broker->budget.local_reserve = config->memory_budget / 100 * config->local_reserve_percent;
	broker->listen_fd = -1;
	broker->fds.spare_fd = -1;
	if (conn_shared_init(&broker->conn_shared, &broker->budget) != WH_OK)
		return WH_ENOMEM;
	broker->conn_shared.next_conn_id = &broker->next_conn_id; /* one numbering for all */
	broker->admission = malloc(sizeof *broker->admission);
	if (!broker->admission)
		return WH_ENOMEM;
	uint8_t admission_key[ADMISSION_KEY_BYTES];
	randombytes_buf(admission_key, sizeof admission_key);
	admission_init(broker->admission, admission_key, ev_now(loop), config->handshake_rate);
	broker->penalty = malloc(sizeof *broker->penalty);
	if (!broker->penalty)
		return WH_ENOMEM;
	uint8_t penalty_key[PENALTY_KEY_BYTES];
	randombytes_buf(penalty_key, sizeof penalty_key);
	penalty_init(broker->penalty, penalty_key);
	ev_timer_init(&broker->handshake_turn, on_handshake_turn, 0.0, 0.0);
	broker->handshake_turn.data = broker;
	broker->conn_shared.handshake_timeout = config->handshake_timeout;
	broker->conn_shared.tls_failures = &broker->tls_failures;
	if (tls_settings_enabled(&config->tls)) {
		char error[512], warning[512];
		broker->conn_shared.tls = tls_context_new(&config->tls, error, sizeof error, warning,
							  sizeof warning);
		if (!broker->conn_shared.tls) {
			log_write(&broker->log, LOG_ERROR, "broker", "TLS: %s", error);
			return WH_ETLS;
		}
		if (warning[0])
			log_write(&broker->log, LOG_WARN, "broker", "TLS: %s", warning);
	}
	if (!services_exists(config->default_service))
		log_write(&broker->log, LOG_WARN, "broker",
			  "default service %s is not built in: streams without a service are refused",
			  config->default_service);
	if (config->listen_host[0]) {
		int error = listen_on(broker);
		if (error != WH_OK)
			return error;
	}
	set_fd_limit(&broker->log, config->max_fds);
	ev_timer_init(&broker->retire_timer, retire_check, 0.1, 0.1);
	broker->retire_timer.data = broker;
	ev_timer_init(&broker->trim_timer, on_trim, TRIM_INTERVAL, TRIM_INTERVAL);
	ev_timer_start(loop, &broker->trim_timer);
	/* the pools' own connections are the broker's fixed needs, not the budget's */
	uint64_t pool_fds = (uint64_t)config->peer_count * config->pool.max_size;
	fd_budget_init(&broker->fds, BROKER_FD_RESERVE, pool_fds);
	log_write(&broker->log, LOG_INFO, "broker",
		  "descriptor limit %llu: %llu held at start, %llu kept for attaching apps",
		  (unsigned long long)broker->fds.limit, (unsigned long long)broker->fds.baseline,
		  (unsigned long long)broker->fds.reserve);
	if (config->apps.socket_path[0]) {
		snprintf(broker->config.apps.default_service, sizeof broker->config.apps.default_service,
			 "%s", config->default_service);
		broker->config.apps.peer_share = app_peer_share(config);
		if (make_socket_dir(config->apps.socket_path, &broker->log) != WH_OK)
			return WH_ESYSTEM;
		broker->apps = apps_start(loop, &broker->config.apps, &broker->log, &broker->fds,
					  find_pool, broker);
		if (!broker->apps)
			return WH_ESYSTEM;
	}
	struct pool_callbacks callbacks = { .on_incoming = on_incoming };
	for (int i = 0; i < config->peer_count; i++) {
		const struct broker_peer *p = &config->peers[i];
		broker->pools[i] = pool_new(loop, p->name, p->host, p->port, &broker->config.peers[i].pool,
					    &broker->conn_shared, &callbacks, broker);
		if (!broker->pools[i])
			return WH_ENOMEM;
		pool_warmup(broker->pools[i]);
	}
	return forwarding_start(broker);
}

static void close_conn(struct conn *conn, void *arg)
{
	(void)arg;
	conn_close(conn, WH_EMUX_CLOSED);
}

/* No more peer connections (drain, close): the port is closed, not just ignored. */
static void close_listener(struct broker *broker)
{
	if (broker->listen_fd < 0)
		return;
	ev_io_stop(broker->loop, &broker->accept_watcher);
	ev_timer_stop(broker->loop, &broker->accept_pause);
	close(broker->listen_fd);
	broker->listen_fd = -1;
}

void broker_close_all(struct broker *broker)
{
	close_listener(broker);
	forwarding_drain(broker);
	for (int i = 0; i < broker->config.peer_count; i++)
		pool_drain(broker->pools[i]); /* no redial while stopping */
	for (struct retiring *r = broker->retiring; r; r = r->next)
		pool_drain(r->pool);
	for (struct broker_conn *bc = broker->accepted; bc; bc = bc->next)
		close_conn(bc->conn, NULL);
	for (int i = 0; i < broker->config.peer_count; i++)
		pool_each_conn(broker->pools[i], close_conn, NULL);
	for (struct retiring *r = broker->retiring; r; r = r->next)
		pool_each_conn(r->pool, close_conn, NULL);
}

static void drain_accepted(struct conn *conn, void *arg)
{
	(void)arg;
	mux_drain(conn_mux(conn));
}

void broker_drain(struct broker *broker)
{
	if (broker->draining)
		return;
	broker->draining = true;
	close_listener(broker);
	forwarding_drain(broker);
	if (broker->apps)
		apps_drain(broker->apps);
	for (struct broker_conn *bc = broker->accepted; bc; bc = bc->next)
		drain_accepted(bc->conn, NULL);
	for (int i = 0; i < broker->config.peer_count; i++)
		pool_drain(broker->pools[i]);
	for (struct retiring *r = broker->retiring; r; r = r->next)
		pool_drain(r->pool);
	if (broker->local)
		pool_drain(local_link_pool(broker));
}

bool broker_drained(const struct broker *broker)
{
	for (const struct broker_conn *bc = broker->accepted; bc; bc = bc->next) {
		const struct mux *mux = conn_mux(bc->conn);
		if (!mux_is_closed(mux) && mux_num_streams(mux))
			return false;
	}
	for (int i = 0; i < broker->config.peer_count; i++)
		if (!pool_drained(broker->pools[i]))
			return false;
	for (const struct retiring *r = broker->retiring; r; r = r->next)
		if (!pool_drained(r->pool))
			return false;
	return local_link_drained(broker);
}

/* ---- reload ------------------------------------------------------------------------------ */

/* Pools of peers a reload removed: draining, freed once their streams are done or the drain
 * timeout passed. */
static void retire_check(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct broker *broker = w->data;
	(void)revents;
	double now = ev_now(loop);
	for (struct retiring **link = &broker->retiring; *link;) {
		struct retiring *r = *link;
		if (pool_drained(r->pool) || now >= r->deadline) {
			log_write(&broker->log, LOG_INFO, "broker", "peer=%s removed%s", pool_name(r->pool),
				  pool_drained(r->pool) ? "" : ": drain timeout, its last streams end");
			*link = r->next;
			forwarding_pool_gone(broker, r->pool); /* relays on it end before its streams go */
			pool_free(r->pool);
			free(r);
			continue;
		}
		link = &r->next;
	}
	if (!broker->retiring)
		ev_timer_stop(loop, w);
}

static void retire_pool(struct broker *broker, struct pool *pool)
{
	struct retiring *r = calloc(1, sizeof *r);
	if (!r) { /* no memory to wait: let it go now */
		forwarding_pool_gone(broker, pool);
		pool_free(pool);
		return;
	}
	pool_drain(pool);
	r->pool = pool;
	r->deadline = ev_now(broker->loop) + broker->config.drain_timeout;
	r->next = broker->retiring;
	broker->retiring = r;
	ev_timer_start(broker->loop, &broker->retire_timer);
}

/* Settings that take effect only at start: say so when a reload changes them. */
static void note_restart_only(struct broker *broker, const struct broker_config *next)
{
	const struct broker_config *now = &broker->config;
	struct {
		bool changed;
		const char *name;
	} checks[] = {
		{ strcmp(now->listen_host, next->listen_host) || strcmp(now->listen_port, next->listen_port), "listen" },
		{ strcmp(now->port_file, next->port_file) != 0, "port-file" },
		{ strcmp(now->apps.socket_path, next->apps.socket_path) != 0, "socket" },
		{ now->apps.socket_mode != next->apps.socket_mode, "socket-mode" },
		{ now->apps.socket_uid != next->apps.socket_uid || now->apps.socket_gid != next->apps.socket_gid,
		  "socket-owner" },
		{ now->max_fds != next->max_fds, "max-fds" },
		{ strcmp(now->control.socket_path, next->control.socket_path) != 0, "control-socket" },
		{ now->control.socket_mode != next->control.socket_mode, "control-socket-mode" },
		{ strcmp(now->control.metrics_host, next->control.metrics_host) != 0 ||
		  strcmp(now->control.metrics_port, next->control.metrics_port) != 0, "metrics-listen" },
		{ now->control.socket_uid != next->control.socket_uid ||
		  now->control.socket_gid != next->control.socket_gid, "control-socket-owner" },
	};
	for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
		if (checks[i].changed)
			log_write(&broker->log, LOG_WARN, "broker", "reload: %s changed: it takes effect when "
				  "the broker restarts", checks[i].name);
}

static bool same_pool(const struct pool_config *a, const struct pool_config *b)
{
	struct pool_config x = *a, y = *b;
	x.mux.log = y.mux.log = NULL; /* wiring, not settings */
	x.mux.id = y.mux.id = 0;
	memset(x.mux.peer, 0, sizeof x.mux.peer);
	memset(y.mux.peer, 0, sizeof y.mux.peer);
	return memcmp(&x, &y, sizeof x) == 0;
}

/* The certificate files are read again (rotation without a restart): new connections use
 * them, open ones keep the context they started with. Files that do not load keep the old. */
static void reload_tls(struct broker *broker, struct broker_config *next)
{
	struct conn_shared *shared = &broker->conn_shared;
	shared->handshake_timeout = next->handshake_timeout;
	if (!tls_settings_enabled(&next->tls)) {
		if (shared->tls)
			log_write(&broker->log, LOG_WARN, "broker", "TLS settings removed: new peer "
				  "connections are plaintext");
		tls_context_free(shared->tls);
		shared->tls = NULL;
		return;
	}
	char error[512], warning[512];
	SSL_CTX *ctx = tls_context_new(&next->tls, error, sizeof error, warning, sizeof warning);
	if (!ctx) {
		log_write(&broker->log, LOG_ERROR, "broker", "reload: TLS: %s: %s", error,
			  shared->tls ? "keeping the certificate loaded before" : "peer links stay plaintext");
		next->tls = broker->config.tls;
		return;
	}
	if (warning[0])
		log_write(&broker->log, LOG_WARN, "broker", "TLS: %s", warning);
	tls_context_free(shared->tls);
	shared->tls = ctx;
	log_write(&broker->log, LOG_INFO, "broker", "TLS: %s and %s loaded for new connections",
		  next->tls.cert, next->tls.key);
}

int broker_reload(struct broker *broker, const struct broker_config *given)
{
	struct broker_config next = *given;
	if (forwarding_reload(broker, &next) != WH_OK)
		return WH_ESYSTEM; /* a forward's new address cannot be bound: nothing changed */
	note_restart_only(broker, &next);
	/* what only a restart changes keeps its running value */
	const struct broker_config *now = &broker->config;
	memcpy(next.listen_host, now->listen_host, sizeof next.listen_host);
	memcpy(next.listen_port, now->listen_port, sizeof next.listen_port);
	memcpy(next.port_file, now->port_file, sizeof next.port_file);
	memcpy(next.apps.socket_path, now->apps.socket_path, sizeof next.apps.socket_path);
	next.apps.socket_mode = now->apps.socket_mode;
	next.apps.socket_uid = now->apps.socket_uid;
	next.apps.socket_gid = now->apps.socket_gid;
	next.max_fds = now->max_fds;
	next.listen_plaintext = now->listen_plaintext;
	next.control = now->control;

	broker->log.level = next.log_level;
	broker->budget.limit = next.memory_budget;
	broker->budget.local_reserve = next.memory_budget / 100 * next.local_reserve_percent;
	reload_tls(broker, &next);
	next.pool.mux.log = &broker->log;
	snprintf(next.apps.default_service, sizeof next.apps.default_service, "%s", next.default_service);
	next.apps.peer_share = app_peer_share(&next);
	if (broker->apps)
		apps_reconfigure(broker->apps, &next.apps);

	/* peers, by name */
	struct pool *pools[BROKER_PEERS_MAX] = { NULL };
	bool kept[BROKER_PEERS_MAX] = { false };
	struct pool_callbacks callbacks = { .on_incoming = on_incoming };
	for (int j = 0; j < next.peer_count; j++) {
		struct broker_peer *p = &next.peers[j];
		p->pool.mux.log = &broker->log;
		int i = 0;
		while (i < now->peer_count && strcmp(now->peers[i].name, p->name) != 0)
			i++;
		if (i < now->peer_count) {
			kept[i] = true;
			pools[j] = broker->pools[i];
			const struct broker_peer *was = &now->peers[i];
			if (strcmp(was->host, p->host) || strcmp(was->port, p->port) || !same_pool(&was->pool, &p->pool)) {
				pool_reconfigure(pools[j], p->host, p->port, &p->pool);
				log_write(&broker->log, LOG_INFO, "broker", "peer=%s changed: new connections use "
					  "the new settings", p->name);
			}
			continue;
		}
		pools[j] = pool_new(broker->loop, p->name, p->host, p->port, &p->pool, &broker->conn_shared,
				    &callbacks, broker);
		if (!pools[j]) {
			log_write(&broker->log, LOG_ERROR, "broker", "peer=%s: out of memory: not added", p->name);
			memmove(&next.peers[j], &next.peers[j + 1], sizeof next.peers[0] * (size_t)(next.peer_count - j - 1));
			next.peer_count--;
			j--;
			continue;
		}
		if (!broker->draining)
			pool_warmup(pools[j]);
		log_write(&broker->log, LOG_INFO, "broker", "peer=%s added at %s:%s", p->name, p->host, p->port);
	}
	for (int i = 0; i < now->peer_count; i++)
		if (!kept[i]) {
			log_write(&broker->log, LOG_INFO, "broker", "peer=%s removed from the config: draining",
				  now->peers[i].name);
			for (struct broker_conn *bc = broker->accepted; bc; bc = bc->next)
				dialin_return(broker, broker->pools[i], bc->conn, next.peer_idle_timeout);
			retire_pool(broker, broker->pools[i]);
		}
	memcpy(broker->pools, pools, sizeof pools);
	broker->config = next;
	/* a dial-in peer added (or its identity changed): its connections open now are its own */
	for (struct broker_conn *bc = broker->accepted; bc; bc = bc->next)
		if (!bc->stranger)
			dialin_adopt(broker, bc->conn);
	return WH_OK;
}

void broker_stop(struct broker *broker)
{
	/* Connections first: their streams let go of the apps' segments, then the apps go. The
	 * relays of forwards and targets hold streams too: they go before the connections. */
	forwarding_stop(broker);
	local_link_free(broker);
	for (int i = 0; i < broker->config.peer_count; i++)
		pool_free(broker->pools[i]);
	while (broker->retiring) {
		struct retiring *r = broker->retiring;
		broker->retiring = r->next;
		pool_free(r->pool);
		free(r);
	}
	ev_timer_stop(broker->loop, &broker->retire_timer);
	while (broker->accepted) {
		struct broker_conn *bc = broker->accepted;
		broker->accepted = bc->next;
		conn_free(bc->conn);
		account_leave(broker, bc->account);
		fd_budget_give(&broker->fds, 1);
		free(bc);
	}
	apps_stop(broker->apps);
	broker->apps = NULL;
	close_listener(broker);
	ev_timer_stop(broker->loop, &broker->trim_timer);
	ev_timer_stop(broker->loop, &broker->handshake_turn);
	broker->strangers = broker->strangers_tail = NULL;
	broker->strangers_open = 0;
	free(broker->admission);
	broker->admission = NULL;
	free(broker->penalty);
	broker->penalty = NULL;
	fd_budget_release(&broker->fds);
	conn_shared_release(&broker->conn_shared);
}

/* ---- what the control tool sees ---- */

void broker_get_status(const struct broker *broker, struct broker_status *status)
{
	*status = (struct broker_status){
		.uptime = ev_now(broker->loop) - broker->started_at,
		.instance_id = broker->instance_id,
		.listen_host = broker->config.listen_host,
		.listen_port = broker_listen_port(broker),
		.tls = broker->conn_shared.tls != NULL,
		.app_socket = broker->apps ? broker->config.apps.socket_path : "",
		.peers = (unsigned)broker->config.peer_count,
		.connections_accepted = broker->accepted_open,
		.budget_used = broker->budget.used,
		.budget_limit = broker->budget.limit,
		.log_level = broker->log.level,
		.draining = broker->draining,
		.accepted_total = broker->accepted_total,
		.accepted_shed = broker->accepted_shed,
		.capped_connections = broker->capped_connections,
		.handshake_refused = broker->strangers_dropped,
		.handshakes_failed = broker->tls_failures.failed,
		.penalty_holds = broker->penalty_holds,
		.penalty_replaced = broker->penalty_replaced,
	};
	if (broker->apps)
		apps_get_stats(broker->apps, &status->apps);
	for (int i = 0; i < broker->config.peer_count; i++)
		if (broker->pools[i] && !pool_dials_in(broker->pools[i])) /* lent ones are accepted */
			status->connections_dialled += (unsigned)pool_len(broker->pools[i]);
}

struct conn_walk {
	void (*fn)(struct conn *conn, bool accepted, void *arg);
	void *arg;
};

static void each_dialled(struct conn *conn, void *arg)
{
	struct conn_walk *walk = arg;
	walk->fn(conn, false, walk->arg);
}

void broker_each_pool(const struct broker *broker, void (*fn)(struct pool *pool, void *arg), void *arg)
{
	for (int i = 0; i < broker->config.peer_count; i++)
		if (broker->pools[i])
			fn(broker->pools[i], arg);
	for (struct retiring *r = broker->retiring; r; r = r->next)
		fn(r->pool, arg);
}

static void each_pool_conn(struct pool *pool, void *arg)
{
	pool_each_conn(pool, each_dialled, arg);
}

void broker_each_conn(const struct broker *broker, void (*fn)(struct conn *conn, bool accepted, void *arg),
		      void *arg)
{
	struct conn_walk walk = { fn, arg };
	broker_each_pool(broker, each_pool_conn, &walk);
	local_link_each_conn(broker, each_dialled, &walk); /* lent to the "local" pool, not listed by it */
	for (struct broker_conn *bc = broker->accepted; bc; bc = bc->next)
		if (bc->conn)
			fn(bc->conn, true, arg);
}

/* "local" included (made at this first call). */
struct pool *broker_find_pool(const struct broker *broker, const char *name)
{
	return find_pool((void *)broker, name);
}

struct apps *broker_apps(const struct broker *broker)
{
	return broker->apps;
}

void broker_set_log_level(struct broker *broker, enum log_level level)
{
	broker->log.level = level;
	broker->config.log_level = level;
}
