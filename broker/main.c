/* wormhole-broker: command line, signals, and the event loop. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>

#include "broker.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: wormhole-broker [options]\n"
		"  -l, --listen HOST:PORT      accept peer brokers here (default 127.0.0.1:7420; 'none': off)\n"
		"  -p, --peer NAME=HOST:PORT   keep a pool of connections to a peer broker (repeatable)\n"
		"      --port-file PATH        write the listening port here once bound\n"
		"  -s, --socket PATH           apps attach here (default /run/wormhole/broker.sock; 'none': off)\n"
		"      --socket-mode MODE      permission bits of the socket, octal (default 0660)\n"
		"      --socket-owner USER[:GROUP]  owner and group of the socket (names or numbers)\n"
		"      --ring-size BYTES       shared-memory ring per stream direction (default 1048576)\n"
		"      --app-max-streams N     streams one app may hold (default 16384)\n"
		"      --app-accept-backlog N  streams handed to a listening app and not yet accepted;\n"
		"                              more are refused with ERROR 503 (default 256)\n"
		"      --app-max-ring-memory BYTES  segment memory one app's streams may hold\n"
		"                              (default: app-max-streams segments)\n"
		"      --default-service NAME  service for streams that name none (default echo)\n"
		"      --pool-min N            connections kept per peer (default 1)\n"
		"      --pool-max N            most connections per peer (default 4)\n"
		"      --keepalive SECONDS     PING interval, 0 to disable (default 30)\n"
		"      --keepalive-timeout S   PONG deadline (default 10)\n"
		"      --health-check SECONDS  pool health-check interval (default 30)\n"
		"      --idle-time SECONDS     close pool connections idle this long (default 300)\n"
		"      --window BYTES          initial stream window (default 262144; must match peers)\n"
		"      --max-window BYTES      receive-window growth limit (default 16777216)\n"
		"      --budget BYTES          receive-window bytes the broker may back (default 8 GiB)\n"
		"      --max-fds N             descriptor limit of the process (default: as high as\n"
		"                              allowed); the last 64 are kept for apps attaching\n"
		"      --max-streams N         live streams per connection (default 65536)\n"
		"      --release-linger S      reset a stream its app closed if the peer has not\n"
		"                              closed it within S seconds, 0: never (default 60)\n"
		"  -L, --log-level LEVEL       error, warn (default), info or debug; logs go to stderr\n"
		"  -V, --version               print the version and exit\n"
		"  -h, --help                  this text\n");
}

/* Splits "HOST:PORT" (or "[V6]:PORT") in place-safe copies. */
static int split_host_port(const char *text, char *host, size_t host_len, char *port, size_t port_len)
{
	const char *colon = strrchr(text, ':');
	if (!colon || colon == text || !colon[1])
		return -1;
	size_t n = (size_t)(colon - text);
	if (text[0] == '[' && colon[-1] == ']') {
		text++;
		n -= 2;
	}
	if (n >= host_len || strlen(colon + 1) >= port_len)
		return -1;
	memcpy(host, text, n);
	host[n] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int parse_number(const char *text, double min, double max, double *out)
{
	char *end;
	errno = 0;
	double value = strtod(text, &end);
	if (errno || end == text || *end || value < min || value > max)
		return -1;
	*out = value;
	return 0;
}

enum {
	OPT_PORT_FILE = 256, OPT_DEFAULT_SERVICE, OPT_POOL_MIN, OPT_POOL_MAX, OPT_KEEPALIVE,
	OPT_KEEPALIVE_TIMEOUT, OPT_HEALTH, OPT_IDLE, OPT_WINDOW, OPT_MAX_WINDOW, OPT_BUDGET,
	OPT_MAX_STREAMS, OPT_SOCKET_MODE, OPT_RING_SIZE, OPT_APP_MAX_STREAMS, OPT_APP_MAX_RING_MEMORY,
	OPT_SOCKET_OWNER, OPT_RELEASE_LINGER, OPT_APP_ACCEPT_BACKLOG, OPT_MAX_FDS,
};

/* "USER", "USER:GROUP" or ":GROUP", by name or number; -1 for the part not given. */
static int parse_owner(const char *text, long *uid, long *gid)
{
	char user[256] = "", group[256] = "";
	const char *colon = strchr(text, ':');
	size_t n = colon ? (size_t)(colon - text) : strlen(text);
	if (n >= sizeof user || (colon && strlen(colon + 1) >= sizeof group))
		return -1;
	memcpy(user, text, n);
	if (colon)
		strcpy(group, colon + 1);
	*uid = *gid = -1;
	char *end;
	if (user[0]) {
		long v = strtol(user, &end, 10);
		const struct passwd *pw = *end ? getpwnam(user) : NULL;
		if (*end && !pw)
			return -1;
		*uid = pw ? (long)pw->pw_uid : v;
	}
	if (group[0]) {
		long v = strtol(group, &end, 10);
		const struct group *gr = *end ? getgrnam(group) : NULL;
		if (*end && !gr)
			return -1;
		*gid = gr ? (long)gr->gr_gid : v;
	}
	return *uid < -1 || *gid < -1 || (!user[0] && !group[0]) ? -1 : 0;
}

static int parse_numeric_option(int option, const char *arg, struct broker_config *c)
{
	double v;
	struct mux_config *m = &c->pool.mux;
	switch (option) {
	case OPT_POOL_MIN: if (parse_number(arg, 0, 1024, &v)) return -1; c->pool.min_size = (unsigned)v; break;
	case OPT_POOL_MAX: if (parse_number(arg, 1, 1024, &v)) return -1; c->pool.max_size = (unsigned)v; break;
	case OPT_KEEPALIVE: if (parse_number(arg, 0, 86400, &v)) return -1; m->keepalive_interval = v; break;
	case OPT_KEEPALIVE_TIMEOUT: if (parse_number(arg, 0.001, 86400, &v)) return -1; m->keepalive_timeout = v; break;
	case OPT_HEALTH: if (parse_number(arg, 0, 86400, &v)) return -1; c->pool.health_check_interval = v; break;
	case OPT_IDLE: if (parse_number(arg, 0, 1e9, &v)) return -1; c->pool.max_idle_time = v; break;
	case OPT_WINDOW: if (parse_number(arg, 1024, 1 << 30, &v)) return -1; m->window_size = (uint32_t)v; break;
	case OPT_MAX_WINDOW: if (parse_number(arg, 1024, 1 << 30, &v)) return -1; m->max_window_size = (uint32_t)v; break;
	case OPT_BUDGET: if (parse_number(arg, 1024, 1e15, &v)) return -1; c->memory_budget = (uint64_t)v; break;
	case OPT_MAX_STREAMS: if (parse_number(arg, 1, 1 << 30, &v)) return -1; m->max_streams = (uint32_t)v; break;
	case OPT_RELEASE_LINGER: if (parse_number(arg, 0, 1e9, &v)) return -1; m->release_linger = v; break;
	case OPT_RING_SIZE:
		if (parse_number(arg, 4096, 64 << 20, &v) || ((uint32_t)v & ((uint32_t)v - 1)))
			return -1; /* a power of two */
		c->apps.ring_capacity = (uint32_t)v;
		break;
	case OPT_MAX_FDS: if (parse_number(arg, 128, 1 << 24, &v)) return -1; c->max_fds = (uint64_t)v; break;
	case OPT_APP_ACCEPT_BACKLOG: if (parse_number(arg, 1, 1 << 20, &v)) return -1; c->apps.accept_backlog = (uint32_t)v; break;
	case OPT_APP_MAX_STREAMS: if (parse_number(arg, 1, 1 << 20, &v)) return -1; c->apps.max_streams = (uint32_t)v; break;
	case OPT_APP_MAX_RING_MEMORY: if (parse_number(arg, 8192, 1e15, &v)) return -1; c->apps.max_ring_memory = (uint64_t)v; break;
	case OPT_SOCKET_OWNER: return parse_owner(arg, &c->apps.socket_uid, &c->apps.socket_gid);
	case OPT_SOCKET_MODE: {
		char *end;
		unsigned long mode = strtoul(arg, &end, 8);
		if (*end || end == arg || mode > 0777)
			return -1;
		c->apps.socket_mode = (unsigned)mode;
		break;
	}
	default: return -1;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct broker_config *c)
{
	static const struct option options[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "peer", required_argument, NULL, 'p' },
		{ "port-file", required_argument, NULL, OPT_PORT_FILE },
		{ "default-service", required_argument, NULL, OPT_DEFAULT_SERVICE },
		{ "pool-min", required_argument, NULL, OPT_POOL_MIN },
		{ "pool-max", required_argument, NULL, OPT_POOL_MAX },
		{ "keepalive", required_argument, NULL, OPT_KEEPALIVE },
		{ "keepalive-timeout", required_argument, NULL, OPT_KEEPALIVE_TIMEOUT },
		{ "health-check", required_argument, NULL, OPT_HEALTH },
		{ "idle-time", required_argument, NULL, OPT_IDLE },
		{ "window", required_argument, NULL, OPT_WINDOW },
		{ "max-window", required_argument, NULL, OPT_MAX_WINDOW },
		{ "budget", required_argument, NULL, OPT_BUDGET },
		{ "max-streams", required_argument, NULL, OPT_MAX_STREAMS },
		{ "release-linger", required_argument, NULL, OPT_RELEASE_LINGER },
		{ "socket-mode", required_argument, NULL, OPT_SOCKET_MODE },
		{ "ring-size", required_argument, NULL, OPT_RING_SIZE },
		{ "app-max-streams", required_argument, NULL, OPT_APP_MAX_STREAMS },
		{ "app-accept-backlog", required_argument, NULL, OPT_APP_ACCEPT_BACKLOG },
		{ "max-fds", required_argument, NULL, OPT_MAX_FDS },
		{ "app-max-ring-memory", required_argument, NULL, OPT_APP_MAX_RING_MEMORY },
		{ "socket-owner", required_argument, NULL, OPT_SOCKET_OWNER },
		{ "socket", required_argument, NULL, 's' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int option;
	while ((option = getopt_long(argc, argv, "l:p:s:L:Vh", options, NULL)) != -1) {
		switch (option) {
		case 'l':
			if (strcmp(optarg, "none") == 0) {
				c->listen_host[0] = '\0';
			} else if (split_host_port(optarg, c->listen_host, sizeof c->listen_host,
						   c->listen_port, sizeof c->listen_port)) {
				fprintf(stderr, "wormhole-broker: --listen wants HOST:PORT, not '%s'\n", optarg);
				return -1;
			}
			break;
		case 'p': {
			const char *eq = strchr(optarg, '=');
			struct broker_peer *p = &c->peers[c->peer_count];
			if (c->peer_count == BROKER_PEERS_MAX || !eq || eq == optarg ||
			    (size_t)(eq - optarg) >= sizeof p->name ||
			    split_host_port(eq + 1, p->host, sizeof p->host, p->port, sizeof p->port)) {
				fprintf(stderr, "wormhole-broker: --peer wants NAME=HOST:PORT, not '%s'\n", optarg);
				return -1;
			}
			memcpy(p->name, optarg, (size_t)(eq - optarg));
			p->name[eq - optarg] = '\0';
			c->peer_count++;
			break;
		}
		case 's':
			if (strcmp(optarg, "none") == 0)
				c->apps.socket_path[0] = '\0';
			else if (strlen(optarg) >= sizeof c->apps.socket_path) {
				fprintf(stderr, "wormhole-broker: --socket path is too long\n");
				return -1;
			} else
				snprintf(c->apps.socket_path, sizeof c->apps.socket_path, "%s", optarg);
			break;
		case OPT_PORT_FILE:
			snprintf(c->port_file, sizeof c->port_file, "%s", optarg);
			break;
		case OPT_DEFAULT_SERVICE:
			snprintf(c->default_service, sizeof c->default_service, "%s", optarg);
			break;
		case 'L': {
			int level = log_level_parse(optarg);
			if (level < 0) {
				fprintf(stderr, "wormhole-broker: unknown log level '%s'\n", optarg);
				return -1;
			}
			c->log.level = (enum log_level)level;
			break;
		}
		case 'V':
			printf("wormhole-broker %s\n", PACKAGE_VERSION);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		default:
			if (option >= OPT_POOL_MIN && parse_numeric_option(option, optarg, c) == 0)
				break;
			if (option >= OPT_POOL_MIN)
				fprintf(stderr, "wormhole-broker: bad value '%s'\n", optarg);
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "wormhole-broker: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (c->pool.mux.max_window_size < c->pool.mux.window_size) {
		fprintf(stderr, "wormhole-broker: --max-window is below --window\n");
		return -1;
	}
	return 0;
}

struct shutdown {
	struct broker *broker;
	ev_signal sigterm, sigint;
	ev_timer grace;
};

static void on_grace_over(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

/* Orderly stop: every connection says goodbye (ERROR 505) and gets a moment to flush. */
static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct shutdown *s = w->data;
	(void)revents;
	log_write(&s->broker->config.log, LOG_INFO, "broker", "signal %d: shutting down", w->signum);
	ev_signal_stop(loop, &s->sigterm);
	ev_signal_stop(loop, &s->sigint);
	broker_close_all(s->broker);
	ev_timer_init(&s->grace, on_grace_over, 0.2, 0);
	ev_timer_start(loop, &s->grace);
}

int main(int argc, char **argv)
{
	struct broker_config config;
	broker_config_default(&config);
	if (parse_args(argc, argv, &config) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
	if (!loop) {
		fprintf(stderr, "wormhole-broker: cannot start the event loop\n");
		return 1;
	}
	static struct broker broker;
	if (broker_start(&broker, loop, &config) != WH_OK) {
		broker_stop(&broker);
		return 1;
	}
	struct shutdown shutdown = { .broker = &broker };
	ev_signal_init(&shutdown.sigterm, on_signal, SIGTERM);
	ev_signal_init(&shutdown.sigint, on_signal, SIGINT);
	shutdown.sigterm.data = shutdown.sigint.data = &shutdown;
	ev_signal_start(loop, &shutdown.sigterm);
	ev_signal_start(loop, &shutdown.sigint);
	ev_run(loop, 0);
	broker_stop(&broker);
	ev_loop_destroy(loop);
	return 0;
}
