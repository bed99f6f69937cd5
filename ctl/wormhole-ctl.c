/* wormhole-ctl: inspect and steer a running broker through its control socket. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control_msg.h"
#include "render.h"
#include "text_escape.h"

/* Exit codes (wormhole-ctl(1)). */
enum {
	EXIT_OK = 0,
	EXIT_REFUSED = 1,     /* the broker said no */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3, /* no broker at the socket, or not allowed to talk to it */
};

#define DEFAULT_SOCKET "/run/wormhole/control.sock"
#define REPLY_TIMEOUT_MS 30000
#define TABLES_MAX 8

struct ctl {
	const char *socket_path;
	bool json;
	int fd;
	struct ctl_table tables[TABLES_MAX];
	unsigned table_count;
	int status;
	char message[CONTROL_TEXT_MAX + 1];
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: wormhole-ctl [-s SOCKET] [--json] COMMAND [ARGS]\n"
		"\n"
		"views:\n"
		"  status                       the broker: version, uptime, listeners, counts, budget\n"
		"  peers                        each peer's pool: connections, dials, back-off\n"
		"  conns [--by-peer]            each connection, or summed per peer: streams, RTT, bytes\n"
		"  streams [--peer P] [--app ID|PID]  each stream: owner, state, bytes, windows, ring\n"
		"  apps                         each attached app: pid, uid, streams, ring memory\n"
		"  services                     who serves each service name\n"
		"  forwards                     each [forward]: listen, peer, service, connections, bytes\n"
		"  targets                      each target of a [service]: health, connections, failures\n"
		"  config                       the running settings and where each came from\n"
		"  metrics                      every counter and gauge, Prometheus text format\n"
		"  watch [-n SECONDS] [-c COUNT] VIEW   refresh a view, with byte rates\n"
		"actions:\n"
		"  close-stream CONN/STREAM [CODE]   end one stream with ERROR CODE (499)\n"
		"  drain-peer PEER              no new streams to PEER; open ones finish\n"
		"  warm-peer PEER               take streams again and dial up to pool-min\n"
		"  reload                       read the config file again (as SIGHUP)\n"
		"  log-level error|warn|info|debug\n"
		"  forward add NAME LISTEN PEER SERVICE   listen at LISTEN, connections to SERVICE of PEER\n"
		"  forward del NAME             stop listening; its connections drain\n"
		"\n"
		"options:\n"
		"  -s, --socket PATH   the broker's control socket ($WORMHOLE_CONTROL_SOCKET, else "
		DEFAULT_SOCKET ")\n"
		"  -j, --json          machine-readable output (docs/CONTROL.md)\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the version\n"
		"\n"
		"exit status: 0 done, 1 the broker refused, 2 usage, 3 cannot reach the broker\n");
}

/* Why a connect failed, and what to do about it. */
static int unreachable(const struct ctl *c, int error)
{
	const char *why, *todo;
	switch (error) {
	case ENOENT:
		why = "no such file";
		todo = "is the broker running, and is this its control-socket? (-s PATH)";
		break;
	case EACCES:
	case EPERM:
		why = "permission denied";
		todo = "the control socket admits the broker's own user (mode 0600) unless "
		       "control-socket-owner and control-socket-mode say more: run as that user or root";
		break;
	case ECONNREFUSED:
		why = "nobody is listening there";
		todo = "the broker that made this socket has stopped: start it (the stale file is "
		       "replaced at start)";
		break;
	case ENOTSOCK:
		why = "not a socket";
		todo = "this path is not a broker's control socket (-s PATH)";
		break;
	case EPROTOTYPE:
		why = "not a broker's control socket (a socket of another kind: the app socket?)";
		todo = "the control socket is control.sock beside the app socket by default (-s PATH)";
		break;
	default:
		why = strerror(error);
		todo = "check the path (-s PATH) and that the broker runs";
		break;
	}
	fprintf(stderr, "wormhole-ctl: cannot reach the broker at %s: %s\n  %s\n", c->socket_path, why, todo);
	return EXIT_UNREACHABLE;
}

static int not_a_broker(const struct ctl *c, const char *what)
{
	fprintf(stderr, "wormhole-ctl: cannot reach the broker at %s: not a broker (%s)\n"
		"  is this a wormhole-broker's control socket, of the same version? (-s PATH)\n",
		c->socket_path, what);
	return EXIT_UNREACHABLE;
}

static int connect_broker(struct ctl *c)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(c->socket_path) >= sizeof addr.sun_path) {
		fprintf(stderr, "wormhole-ctl: socket path too long (at most %zu bytes): %s\n",
			sizeof addr.sun_path - 1, c->socket_path);
		return EXIT_USAGE;
	}
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", c->socket_path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
		int error = errno;
		struct stat st;
		if (error == ECONNREFUSED && stat(c->socket_path, &st) == 0 && !S_ISSOCK(st.st_mode))
			error = ENOTSOCK;
		return unreachable(c, error);
	}
	return EXIT_OK;
}

/* Reads exactly n bytes, waiting at most REPLY_TIMEOUT_MS for each piece. */
static int read_exact(struct ctl *c, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int ready = poll(&p, 1, REPLY_TIMEOUT_MS);
		if (ready == 0)
			return ETIMEDOUT;
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		ssize_t r = recv(c->fd, (char *)buf + got, n - got, 0);
		if (r == 0)
			return EPIPE;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		got += (size_t)r;
	}
	return 0;
}

static void free_tables(struct ctl *c)
{
	for (unsigned i = 0; i < c->table_count; i++)
		free(c->tables[i].body);
	c->table_count = 0;
}

/* Sends one request and reads every TABLE up to its DONE. EXIT_OK with c->status set (the
 * broker's answer), or EXIT_UNREACHABLE. */
static int exchange(struct ctl *c, unsigned argc, char **argv)
{
	struct control_request req = { .argc = argc };
	if (argc < 1 || argc > CONTROL_ARGS_MAX) {
		fprintf(stderr, "wormhole-ctl: at most %u arguments\n", CONTROL_ARGS_MAX - 1);
		return EXIT_USAGE;
	}
	for (unsigned i = 0; i < argc; i++) {
		if (strlen(argv[i]) > CONTROL_ARG_MAX) {
			fprintf(stderr, "wormhole-ctl: argument longer than %u bytes: %.40s...\n", CONTROL_ARG_MAX, argv[i]);
			return EXIT_USAGE;
		}
		snprintf(req.argv[i], sizeof req.argv[i], "%s", argv[i]);
	}
	uint8_t out[CONTROL_HEADER_SIZE + CONTROL_REQUEST_MAX];
	int n = control_request_encode(out, sizeof out, &req);
	if (n < 0) {
		fprintf(stderr, "wormhole-ctl: cannot encode the request: %s\n", wh_strerror(n));
		return EXIT_USAGE;
	}
	for (size_t sent = 0; sent < (size_t)n;) {
		ssize_t w = send(c->fd, out + sent, (size_t)n - sent, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			fprintf(stderr, "wormhole-ctl: the broker at %s closed the connection before taking the "
				"request\n  a broker drops the control client that waited longest when 16 are "
				"connected: try again\n", c->socket_path);
			return EXIT_UNREACHABLE;
		}
		if (w <= 0)
			return unreachable(c, errno);
		sent += (size_t)w;
	}
	free_tables(c);
	for (;;) {
		uint8_t head[CONTROL_HEADER_SIZE];
		int error = read_exact(c, head, sizeof head);
		if (error == EPIPE)
			return not_a_broker(c, "it closed the connection without an answer");
		if (error)
			return unreachable(c, error);
		struct control_header h;
		if (control_header_decode(head, sizeof head, CONTROL_BODY_MAX, &h) != WH_OK ||
		    (h.type != CONTROL_TABLE && h.type != CONTROL_DONE))
			return not_a_broker(c, "its answer is not the control protocol");
		uint8_t *body = malloc(h.length ? h.length : 1);
		if (!body) {
			fprintf(stderr, "wormhole-ctl: out of memory for a %u-byte answer\n", h.length);
			return EXIT_REFUSED;
		}
		error = read_exact(c, body, h.length);
		if (error) {
			free(body);
			return error == EPIPE ? not_a_broker(c, "its answer stopped short") : unreachable(c, error);
		}
		if (h.type == CONTROL_DONE) {
			int rc = control_done_decode(body, h.length, &c->status, c->message);
			free(body);
			return rc == WH_OK ? EXIT_OK : not_a_broker(c, "a malformed DONE");
		}
		struct ctl_table *t = &c->tables[c->table_count];
		if (c->table_count >= TABLES_MAX || control_table_decode(body, h.length, &t->table) != WH_OK) {
			free(body);
			return not_a_broker(c, "a malformed table");
		}
		t->body = body;
		c->table_count++;
	}
}

/* The broker's refusal: exit 1 with its message. */
static int refused(const struct ctl *c, const char *command)
{
	if (c->json) {
		printf("{\"ok\": false, \"error\": ");
		render_json_string(stdout, wh_error_name(c->status), strlen(wh_error_name(c->status)));
		printf(", \"message\": ");
		render_json_string(stdout, c->message, strlen(c->message));
		printf("}\n");
	}
	static char message[4 * sizeof c->message]; /* it may name what an app or a file said */
	text_escape(message, sizeof message, c->message, strlen(c->message));
	fprintf(stderr, "wormhole-ctl: %s: %s (%s)\n", command, message, wh_strerror(c->status));
	return EXIT_REFUSED;
}

/* The columns a view shows as a text table, in order (JSON and metrics show every one). */
static const char *const *default_columns(const char *view)
{
	static const char *const peers[] = { "peer", "address", "state", "open", "in_use",
					     "failed_connections", "retry_in", NULL };
	static const char *const conns[] = { "conn", "peer", "role", "connections", "state", "age", "streams", "rtt",
					     "bytes_in", "bytes_out", "window_stalls", "malformed_frames", NULL };
	static const char *const streams[] = { "conn", "stream", "peer", "service", "state", "pid",
					       "bytes_in", "bytes_out", "ring_fill", "age", "send_window",
					       "recv_window", NULL };
	/* the session id is long: after the pid, so that it is the column cut to fit */
	static const char *const apps[] = { "pid", "uid", "app", "streams", "ring_bytes", "bytes_sent",
					    "bytes_received", "listening", "ring_bytes_limit", NULL };
	static const char *const services[] = { "service", "kind", "app", "pid", "uid", NULL };
	static const char *const config[] = { "option", "section", "value", "source", NULL };
	static const char *const forwards[] = { "forward", "state", "connections", "bytes_in", "bytes_out",
						"accepted", "refused_full", "peer", "service", "listen", NULL };
	static const char *const targets[] = { "service", "target", "health", "connections", "connects",
					       "failures", "bytes_from_target", "bytes_to_target", "last_error", NULL };
	if (strcmp(view, "forwards") == 0)
		return forwards;
	if (strcmp(view, "targets") == 0)
		return targets;
	if (strcmp(view, "peers") == 0)
		return peers;
	if (strcmp(view, "conns") == 0)
		return conns;
	if (strcmp(view, "streams") == 0)
		return streams;
	if (strcmp(view, "apps") == 0)
		return apps;
	if (strcmp(view, "services") == 0)
		return services;
	if (strcmp(view, "config") == 0)
		return config;
	return NULL;
}

static unsigned terminal_width(void)
{
	const char *columns = getenv("COLUMNS");
	long n = columns ? strtol(columns, NULL, 10) : 0;
	return n >= 40 && n <= 1000 ? (unsigned)n : 80;
}

static void show(const struct ctl *c, const char *view, const struct ctl_table *previous, double interval)
{
	if (c->json) {
		render_json(stdout, c->tables, c->table_count);
		return;
	}
	for (unsigned i = 0; i < c->table_count; i++) {
		const struct ctl_table *t = &c->tables[i];
		if (t->table.rows == 0) {
			printf("(no %s)\n", t->table.name);
			continue;
		}
		render_text(stdout, t, default_columns(view), terminal_width(), previous, interval);
	}
}

static bool is_view(const char *name)
{
	static const char *const views[] = { "status", "peers", "conns", "streams", "apps", "services",
					     "forwards", "targets", "config", NULL };
	for (unsigned i = 0; views[i]; i++)
		if (strcmp(name, views[i]) == 0)
			return true;
	return false;
}

/* Connections are asked for summed per peer (conns --by-peer): a series per connection id
 * would grow with every connection a peer makes. */
static int run_metrics(struct ctl *c)
{
	static const char *const views[][2] = { { "status" }, { "peers" }, { "conns", "--by-peer" }, { "apps" },
						{ "forwards" }, { "targets" } };
	enum { VIEWS = sizeof views / sizeof views[0] };
	struct ctl_table all[VIEWS];
	unsigned count = 0;
	for (unsigned i = 0; i < VIEWS; i++) {
		char *argv[] = { (char *)views[i][0], (char *)views[i][1] };
		int rc = exchange(c, views[i][1] ? 2 : 1, argv);
		if (rc != EXIT_OK)
			return rc;
		if (c->status != WH_OK)
			return refused(c, views[i][0]);
		if (c->table_count == 1) {
			all[count++] = c->tables[0];
			c->table_count = 0; /* kept in all[] */
		}
	}
	render_prometheus(stdout, all, count);
	for (unsigned i = 0; i < count; i++)
		free(all[i].body);
	return EXIT_OK;
}

static volatile sig_atomic_t interrupted;

static void on_interrupt(int signum)
{
	(void)signum;
	interrupted = 1;
}

static double monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* watch [-n SECONDS] [-c COUNT] VIEW [ARGS]: redraw the view, with byte rates between draws. */
static int run_watch(struct ctl *c, int argc, char **argv)
{
	double interval = 2;
	long count = 0; /* 0: until interrupted */
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		char *end = NULL;
		if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
			interval = strtod(argv[++i], &end);
		else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			count = strtol(argv[++i], &end, 10);
		if (!end || *end || interval < 0.1 || interval > 86400 || count < 0) {
			fprintf(stderr, "wormhole-ctl: watch [-n SECONDS (0.1..86400)] [-c COUNT] VIEW\n");
			return EXIT_USAGE;
		}
	}
	if (i >= argc || !is_view(argv[i])) {
		fprintf(stderr, "wormhole-ctl: watch needs a view: status, peers, conns, streams, apps, "
			"services, config\n");
		return EXIT_USAGE;
	}
	signal(SIGINT, on_interrupt);
	signal(SIGTERM, on_interrupt);
	bool tty = isatty(STDOUT_FILENO);
	struct ctl_table previous = { 0 };
	double previous_at = 0;
	for (long round = 0; !interrupted && (count == 0 || round < count); round++) {
		/* a connection per refresh: the broker closes control clients idle for a minute */
		int rc = round == 0 ? EXIT_OK : connect_broker(c);
		if (rc == EXIT_OK)
			rc = exchange(c, (unsigned)(argc - i), argv + i);
		close(c->fd);
		c->fd = -1;
		if (rc != EXIT_OK)
			return rc;
		if (c->status != WH_OK)
			return refused(c, argv[i]);
		double now = monotonic();
		if (tty)
			fputs("\033[H\033[2J", stdout);
		time_t wall = time(NULL);
		char stamp[64];
		strftime(stamp, sizeof stamp, "%H:%M:%S", localtime(&wall));
		printf("wormhole-ctl %s    every %.1f s    %s\n\n", argv[i], interval, stamp);
		if (c->table_count == 1 && !c->json)
			render_text(stdout, &c->tables[0], default_columns(argv[i]), terminal_width(),
				    previous.body ? &previous : NULL, now - previous_at);
		else
			show(c, argv[i], NULL, 0);
		fflush(stdout);
		free(previous.body);
		previous = (struct ctl_table){ 0 };
		if (c->table_count == 1) {
			previous = c->tables[0];
			c->table_count = 0;
		}
		previous_at = now;
		if (count != 0 && round + 1 >= count)
			break;
		struct timespec pause = { (time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9) };
		while (!interrupted && nanosleep(&pause, &pause) < 0 && errno == EINTR)
			;
	}
	free(previous.body);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct ctl c = { .fd = -1 };
	c.socket_path = getenv("WORMHOLE_CONTROL_SOCKET");
	if (!c.socket_path || !c.socket_path[0])
		c.socket_path = DEFAULT_SOCKET;
	static const struct option long_options[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;
	/* '+': options end at the command, so that the command's own (--peer, -n) pass through */
	while ((opt = getopt_long(argc, argv, "+s:jhV", long_options, NULL)) != -1) {
		switch (opt) {
		case 's': c.socket_path = optarg; break;
		case 'j': c.json = true; break;
		case 'h': usage(stdout); return EXIT_OK;
		case 'V': printf("wormhole-ctl %s\n", PACKAGE_VERSION); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *command = argv[optind];
	static const char *const known[] = { "status", "peers", "conns", "streams", "apps", "services",
					     "forwards", "targets", "config", "metrics", "watch", "close-stream", "drain-peer",
					     "warm-peer", "reload", "log-level", "forward", NULL };
	bool ok = false;
	for (unsigned i = 0; known[i]; i++)
		ok |= strcmp(command, known[i]) == 0;
	if (!ok) {
		fprintf(stderr, "wormhole-ctl: unknown command '%s'\n\n", command);
		usage(stderr);
		return EXIT_USAGE;
	}
	int rc = connect_broker(&c);
	if (rc != EXIT_OK)
		return rc;
	if (strcmp(command, "metrics") == 0)
		rc = run_metrics(&c);
	else if (strcmp(command, "watch") == 0)
		rc = run_watch(&c, argc - optind, argv + optind);
	else if ((rc = exchange(&c, (unsigned)(argc - optind), argv + optind)) == EXIT_OK) {
		if (c.status != WH_OK)
			rc = refused(&c, command);
		else if (c.table_count > 0)
			show(&c, command, NULL, 0);
		else if (c.json) {
			printf("{\"ok\": true, \"message\": ");
			render_json_string(stdout, c.message, strlen(c.message));
			printf("}\n");
		}
		else if (c.message[0])
			render_text_line(stdout, c.message);
	}
	free_tables(&c);
	if (c.fd >= 0)
		close(c.fd);
	return rc;
}
