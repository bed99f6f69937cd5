/* The broker: its configuration, its listener for peer brokers, its pools, its services. */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "services.h"

struct broker_conn {
	struct broker *broker;
	struct conn *conn;
	struct broker_conn *prev, *next;
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
	config->apps.socket_uid = config->apps.socket_gid = -1;
	pool_config_default(&config->pool);
	config->log.level = LOG_WARN;
	config->log.out = stderr;
}

/* Streams a peer opens are routed by service name (empty: the default service): to the app
 * listening on it, else to a built-in service. */
static int on_incoming(struct mux *mux, struct mux_stream *stream, const char *service, void *user)
{
	struct broker *broker = user;
	const char *name = service[0] ? service : broker->config.default_service;
	int error = broker->apps ? apps_route_incoming(broker->apps, mux, stream, name) : WH_ENO_SERVICE;
	if (error == WH_ENO_SERVICE)
		error = services_attach(stream, name);
	log_write(&broker->config.log, LOG_DEBUG, "broker", "conn=%u stream=%u service=%s: %s",
		  mux_id(mux), mux_stream_id(stream), name, wh_strerror(error));
	return error;
}

static int on_incoming_accepted(struct mux *mux, struct mux_stream *stream, const char *service,
				void *user)
{
	return on_incoming(mux, stream, service, ((struct broker_conn *)user)->broker);
}

static void on_accepted_closed(struct mux *mux, int error, void *user)
{
	struct broker_conn *bc = user;
	struct broker *broker = bc->broker;
	(void)mux;
	(void)error;
	if (bc->prev)
		bc->prev->next = bc->next;
	else
		broker->accepted = bc->next;
	if (bc->next)
		bc->next->prev = bc->prev;
	conn_free(bc->conn);
	fd_budget_give(&broker->fds, 1);
	free(bc);
}

static void on_accept_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct broker *broker = w->data;
	(void)revents;
	ev_io_start(loop, &broker->accept_watcher);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct broker *broker = w->data;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		bool shed;
		int fd = fd_budget_accept(&broker->fds, broker->listen_fd, FD_USE_STREAM, &shed);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* Not even the spare could take it: a readable listener would spin the
				 * loop, so stop looking for a moment. */
				ev_io_stop(loop, &broker->accept_watcher);
				ev_timer_start(loop, &broker->accept_pause);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				log_write(&broker->config.log, LOG_WARN, "broker", "accept: %s", strerror(errno));
			}
			return;
		}
		if (shed) {
			/* Descriptors left are kept for apps attaching: this peer has to come back. */
			fd_budget_shed_done(&broker->fds, fd);
			if (broker->accepted_shed++ % 1000 == 0)
				log_write(&broker->config.log, LOG_WARN, "broker", "peer connection refused: out "
					  "of file descriptors (%llu refused)",
					  (unsigned long long)broker->accepted_shed);
			continue;
		}
		struct broker_conn *bc = calloc(1, sizeof *bc);
		struct mux_config config = broker->config.pool.mux;
		config.id = ++broker->next_conn_id;
		struct mux_callbacks callbacks = {
			.on_incoming = on_incoming_accepted,
			.on_closed = on_accepted_closed,
		};
		if (bc)
			bc->conn = conn_new(loop, fd, false, &config, &broker->conn_shared, &callbacks, bc);
		if (!bc || !bc->conn) {
			log_write(&broker->config.log, LOG_ERROR, "broker", "out of memory for a connection");
			close(fd);
			fd_budget_give(&broker->fds, 1);
			free(bc);
			continue;
		}
		bc->broker = broker;
		bc->next = broker->accepted;
		if (broker->accepted)
			broker->accepted->prev = bc;
		broker->accepted = bc;
		broker->accepted_total++;
	}
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
		log_write(&c->log, LOG_ERROR, "broker", "listen address %s:%s: %s", c->listen_host,
			  c->listen_port, gai_strerror(rc));
		return WH_EINVAL;
	}
	int fd = socket(result->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, result->ai_addr, result->ai_addrlen) < 0 || listen(fd, 512) < 0) {
		log_write(&c->log, LOG_ERROR, "broker", "listen on %s:%s: %s", c->listen_host,
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
	ev_timer_init(&broker->accept_pause, on_accept_resume, 0.1, 0.0);
	broker->accept_pause.data = broker;
	ev_io_start(broker->loop, &broker->accept_watcher);
	log_write(&c->log, LOG_INFO, "broker", "listening for peers on %s:%u", c->listen_host,
		  broker_listen_port(broker));
	return WH_OK;
}

static int write_port_file(const struct broker *broker)
{
	const char *path = broker->config.port_file;
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%u\n", broker_listen_port(broker)) < 0 || fclose(f) != 0 ||
	    rename(tmp, path) != 0) { /* rename: a reader never sees a half-written file */
		log_write(&broker->config.log, LOG_ERROR, "broker", "port file %s: %s", path, strerror(errno));
		return WH_ESYSTEM;
	}
	return WH_OK;
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

/* The socket's directory, created if missing (e.g. /run/wormhole under a fresh /run). */
static void make_socket_dir(const char *path)
{
	char dir[sizeof ((struct broker_config *)0)->apps.socket_path];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755);
	}
}

int broker_start(struct broker *broker, struct ev_loop *loop, const struct broker_config *config)
{
	memset(broker, 0, sizeof *broker);
	broker->loop = loop;
	broker->config = *config;
	broker->config.pool.mux.log = &broker->config.log;
	broker->budget.limit = config->memory_budget;
	broker->listen_fd = -1;
	broker->fds.spare_fd = -1;
	if (conn_shared_init(&broker->conn_shared, &broker->budget) != WH_OK)
		return WH_ENOMEM;
	if (!services_exists(config->default_service))
		log_write(&broker->config.log, LOG_WARN, "broker",
			  "default service %s is not built in: streams without a service are refused",
			  config->default_service);
	if (config->listen_host[0]) {
		int error = listen_on(broker);
		if (error != WH_OK)
			return error;
	}
	set_fd_limit(&broker->config.log, config->max_fds);
	ev_timer_init(&broker->trim_timer, on_trim, TRIM_INTERVAL, TRIM_INTERVAL);
	ev_timer_start(loop, &broker->trim_timer);
	/* the pools' own connections are the broker's fixed needs, not the budget's */
	uint64_t pool_fds = (uint64_t)config->peer_count * config->pool.max_size;
	fd_budget_init(&broker->fds, BROKER_FD_RESERVE, pool_fds);
	log_write(&broker->config.log, LOG_INFO, "broker",
		  "descriptor limit %llu: %llu held at start, %llu kept for attaching apps",
		  (unsigned long long)broker->fds.limit, (unsigned long long)broker->fds.baseline,
		  (unsigned long long)broker->fds.reserve);
	if (config->apps.socket_path[0]) {
		snprintf(broker->config.apps.default_service, sizeof broker->config.apps.default_service,
			 "%s", config->default_service);
		make_socket_dir(config->apps.socket_path);
		broker->apps = apps_start(loop, &broker->config.apps, &broker->config.log, &broker->fds,
					  find_pool, broker);
		if (!broker->apps)
			return WH_ESYSTEM;
	}
	if (config->port_file[0] && write_port_file(broker) != WH_OK)
		return WH_ESYSTEM;
	struct pool_callbacks callbacks = { .on_incoming = on_incoming };
	for (int i = 0; i < config->peer_count; i++) {
		const struct broker_peer *p = &config->peers[i];
		broker->pools[i] = pool_new(loop, p->name, p->host, p->port, &broker->config.pool,
					    &broker->conn_shared, &callbacks, broker);
		if (!broker->pools[i])
			return WH_ENOMEM;
		pool_warmup(broker->pools[i]);
	}
	return WH_OK;
}

static void close_conn(struct conn *conn, void *arg)
{
	(void)arg;
	conn_close(conn, WH_EMUX_CLOSED);
}

void broker_close_all(struct broker *broker)
{
	if (broker->listen_fd >= 0)
		ev_io_stop(broker->loop, &broker->accept_watcher);
	for (struct broker_conn *bc = broker->accepted; bc; bc = bc->next)
		close_conn(bc->conn, NULL);
	for (int i = 0; i < broker->config.peer_count; i++)
		pool_each_conn(broker->pools[i], close_conn, NULL);
}

void broker_stop(struct broker *broker)
{
	/* Connections first: their streams let go of the apps' segments, then the apps go. */
	for (int i = 0; i < broker->config.peer_count; i++)
		pool_free(broker->pools[i]);
	while (broker->accepted) {
		struct broker_conn *bc = broker->accepted;
		broker->accepted = bc->next;
		conn_free(bc->conn);
		fd_budget_give(&broker->fds, 1);
		free(bc);
	}
	apps_stop(broker->apps);
	broker->apps = NULL;
	if (broker->listen_fd >= 0) {
		ev_io_stop(broker->loop, &broker->accept_watcher);
		ev_timer_stop(broker->loop, &broker->accept_pause);
		close(broker->listen_fd);
	}
	ev_timer_stop(broker->loop, &broker->trim_timer);
	fd_budget_release(&broker->fds);
	conn_shared_release(&broker->conn_shared);
}
