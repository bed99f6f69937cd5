/* wormhole-ctl: inspect and steer a running broker through its control socket. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
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
#include "select.h"
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
		"usage: wormhole-ctl [OPTIONS] COMMAND [ARGS]   (options before or after the command)\n"
		"\n"
		"views:\n"
		"  status                       the broker: version, uptime, listeners, counts, budget\n"
		"  peers                        each peer's pool: connections, dials, back-off\n"
		"  conns [--by-peer]            each connection, or summed per peer: streams, RTT, bytes\n"
		"  streams [--peer P] [--app ID|PID]  each stream: owner, state, bytes, windows, ring\n"
		"  apps [--by-uid]              each attached app: pid, uid, streams, ring memory\n"
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
		"  --filter FIELD=VALUE   views: only rows whose FIELD is VALUE (repeatable; null: none)\n"
		"  --sort [-]FIELD     views: rows by FIELD, ascending (-FIELD: descending)\n"
		"  --limit N           views: the first N rows (after --filter and --sort)\n"
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
	static const char *const config[] = { "option", "section", "value", "source", "applies", NULL };
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

/* Connections are asked for summed per peer (conns --by-peer), apps per user (apps --by-uid):
 * a series per connection id, app session or pid would grow with every one there has been. */
static int run_metrics(struct ctl *c)
{
	static const char *const views[][2] = { { "status" }, { "peers" }, { "conns", "--by-peer" }, { "apps", "--by-uid" },
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

/* What the command line asked for: the command, what goes to the broker, and the tool's own. */
struct args {
	const char *command;
	const char *view;  /* watch: the view it refreshes */
	char *send[CONTROL_ARGS_MAX]; /* the request: the command (watch: its view), flags, operands */
	unsigned sends;
	unsigned operands; /* of those, not flags */
	double interval;   /* watch -n */
	long count;        /* watch -c; 0: until interrupted */
	struct selection selection;
};

/* Applies --filter, --sort and --limit to every table received: EXIT_OK or EXIT_USAGE. */
static int select_tables(struct ctl *c, const struct selection *s)
{
	for (unsigned i = 0; i < c->table_count && selection_any(s); i++) {
		char why[1024];
		if (select_rows(&c->tables[i], s, why, sizeof why) < 0) {
			fprintf(stderr, "wormhole-ctl: %s\n", why);
			return EXIT_USAGE;
		}
	}
	return EXIT_OK;
}

/* watch [-n SECONDS] [-c COUNT] VIEW [ARGS]: redraw the view, with byte rates between draws. */
static int run_watch(struct ctl *c, const struct args *a)
{
	signal(SIGINT, on_interrupt);
	signal(SIGTERM, on_interrupt);
	bool tty = isatty(STDOUT_FILENO);
	struct ctl_table previous = { 0 };
	double previous_at = 0;
	for (long round = 0; !interrupted && (a->count == 0 || round < a->count); round++) {
		/* a connection per refresh: the broker closes control clients idle for a minute */
		int rc = round == 0 ? EXIT_OK : connect_broker(c);
		if (rc == EXIT_OK)
			rc = exchange(c, a->sends, (char **)a->send);
		close(c->fd);
		c->fd = -1;
		if (rc != EXIT_OK)
			return rc;
		if (c->status != WH_OK)
			return refused(c, a->view);
		if ((rc = select_tables(c, &a->selection)) != EXIT_OK)
			return rc;
		double now = monotonic();
		if (tty)
			fputs("\033[H\033[2J", stdout);
		time_t wall = time(NULL);
		char stamp[64];
		strftime(stamp, sizeof stamp, "%H:%M:%S", localtime(&wall));
		printf("wormhole-ctl %s    every %.1f s    %s\n\n", a->view, a->interval, stamp);
		if (c->table_count == 1 && !c->json)
			render_text(stdout, &c->tables[0], default_columns(a->view), terminal_width(),
				    previous.body ? &previous : NULL, now - previous_at);
		else
			show(c, a->view, NULL, 0);
		fflush(stdout);
		free(previous.body);
		previous = (struct ctl_table){ 0 };
		if (c->table_count == 1) {
			previous = c->tables[0];
			c->table_count = 0;
		}
		previous_at = now;
		if (a->count != 0 && round + 1 >= a->count)
			break;
		struct timespec pause = { (time_t)a->interval,
					  (long)((a->interval - (double)(time_t)a->interval) * 1e9) };
		while (!interrupted && nanosleep(&pause, &pause) < 0 && errno == EINTR)
			;
	}
	free(previous.body);
	return EXIT_OK;
}

/* ---- the command line ---------------------------------------------------------------------- */

/* The commands, their operands (at least, at most), and their own flags. */
static const struct command {
	const char *name;
	unsigned least, most;
	bool view;
	const char *flags[3];  /* each "NAME" or "NAME=" (takes a value) */
} commands[] = {
	{ "status", 0, 0, true, { NULL } },
	{ "peers", 0, 0, true, { NULL } },
	{ "conns", 0, 0, true, { "--by-peer" } },
	{ "streams", 0, 0, true, { "--peer=", "--app=" } },
	{ "apps", 0, 0, true, { "--by-uid" } },
	{ "services", 0, 0, true, { NULL } },
	{ "forwards", 0, 0, true, { NULL } },
	{ "targets", 0, 0, true, { NULL } },
	{ "config", 0, 0, true, { NULL } },
	{ "metrics", 0, 0, false, { NULL } },
	{ "watch", 0, 0, false, { "-n=", "-c=" } },
	{ "close-stream", 1, 2, false, { NULL } },
	{ "drain-peer", 1, 1, false, { NULL } },
	{ "warm-peer", 1, 1, false, { NULL } },
	{ "reload", 0, 0, false, { NULL } },
	{ "log-level", 1, 1, false, { NULL } },
	{ "forward", 2, 5, false, { NULL } }, /* add NAME LISTEN PEER SERVICE, del NAME */
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; name && i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* Whether cmd has the flag; *value: it takes one. */
static bool command_flag(const struct command *cmd, const char *flag, size_t length, bool *value)
{
	for (unsigned i = 0; cmd && i < 3 && cmd->flags[i]; i++) {
		const char *f = cmd->flags[i];
		size_t n = strcspn(f, "=");
		if (n == length && strncmp(f, flag, length) == 0) {
			*value = f[n] == '=';
			return true;
		}
	}
	return false;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "wormhole-ctl: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  (wormhole-ctl --help lists commands and options)\n");
	return EXIT_USAGE;
}

static bool whole_number(const char *text, long least, long most, long *out)
{
	char *end;
	errno = 0;
	long n = strtol(text, &end, 10);
	if (!text[0] || *end || errno || n < least || n > most)
		return false;
	*out = n;
	return true;
}

#define TOOL_DONE 100 /* --help, --version: the run ends, with 0 */

/* A tool option (-s, -j, --sort, ...): 1 taken, 0 not one, TOOL_DONE, or EXIT_USAGE + 2. */
static int tool_option(struct ctl *c, struct args *a, const char *name, size_t length, const char *value,
		       bool *used_value)
{
	static const char *const with_value[] = { "-s", "--socket", "--sort", "--limit", "--filter", NULL };
	bool takes = false;
	for (unsigned i = 0; with_value[i]; i++)
		takes |= strlen(with_value[i]) == length && strncmp(with_value[i], name, length) == 0;
	char flag[32];
	snprintf(flag, sizeof flag, "%.*s", (int)(length < 31 ? length : 31), name);
	if (takes && !value)
		return usage_error("%s needs a value", flag) + 2;
	*used_value = takes;
	long limit;
	if (strcmp(flag, "-s") == 0 || strcmp(flag, "--socket") == 0)
		c->socket_path = value;
	else if (strcmp(flag, "-j") == 0 || strcmp(flag, "--json") == 0)
		c->json = true;
	else if (strcmp(flag, "-h") == 0 || strcmp(flag, "--help") == 0)
		return usage(stdout), TOOL_DONE;
	else if (strcmp(flag, "-V") == 0 || strcmp(flag, "--version") == 0)
		return printf("wormhole-ctl %s\n", PACKAGE_VERSION), TOOL_DONE;
	else if (strcmp(flag, "--sort") == 0)
		a->selection.sort = value;
	else if (strcmp(flag, "--limit") == 0 && whole_number(value, 1, 1000000000, &limit))
		a->selection.limit = limit;
	else if (strcmp(flag, "--limit") == 0)
		return usage_error("--limit %s: not a whole number of rows (1 or more)", value) + 2;
	else if (strcmp(flag, "--filter") == 0 && (!strchr(value, '=') || value[0] == '='))
		return usage_error("--filter %s: not FIELD=VALUE", value) + 2;
	else if (strcmp(flag, "--filter") == 0 && a->selection.filters == SELECT_FILTERS_MAX)
		return usage_error("at most %d --filter", SELECT_FILTERS_MAX) + 2;
	else if (strcmp(flag, "--filter") == 0)
		a->selection.filter[a->selection.filters++] = value;
	else
		return 0;
	return 1;
}

static int add_send(struct args *a, char *word)
{
	if (a->sends >= CONTROL_ARGS_MAX)
		return usage_error("too many arguments (at most %u)", CONTROL_ARGS_MAX);
	a->send[a->sends++] = word;
	return EXIT_OK;
}

/* A flag of the command (or of watch's view): passed to the broker, or kept (watch -n, -c). */
static int command_option(struct args *a, char *flag, size_t length, char *value, bool *used_value)
{
	const struct command *cmd = find_command(a->command), *view = find_command(a->view);
	bool takes = false;
	if (!command_flag(cmd, flag, length, &takes) && !command_flag(view, flag, length, &takes))
		return usage_error("unknown option '%s'", flag);
	if (takes && !value)
		return usage_error("%s needs a value", flag);
	*used_value = takes;
	if (strcmp(a->command, "watch") == 0 && (strcmp(flag, "-n") == 0 || strcmp(flag, "-c") == 0)) {
		char *end = NULL;
		if (flag[1] == 'n')
			a->interval = strtod(value, &end);
		else
			a->count = strtol(value, &end, 10);
		if (!end || *end || end == value || a->interval < 0.1 || a->interval > 86400 || a->count < 0)
			return usage_error("watch [-n SECONDS (0.1..86400)] [-c COUNT] VIEW: not %s", value);
		return EXIT_OK;
	}
	flag[length] = '\0'; /* --peer=NAME: the broker takes --peer NAME */
	int rc = add_send(a, flag);
	return rc == EXIT_OK && takes ? add_send(a, value) : rc;
}

/* An operand: the command, watch's view, or one for the command. */
static int operand(struct args *a, char *word)
{
	if (!a->command) {
		if (!find_command(word))
			return usage_error("unknown command '%s'", word);
		a->command = word;
		return strcmp(word, "watch") == 0 ? EXIT_OK : add_send(a, word);
	}
	if (strcmp(a->command, "watch") == 0 && !a->view) {
		const struct command *view = find_command(word);
		if (!view || !view->view)
			return usage_error("watch needs a view (status, peers, conns, streams, apps, services, "
					   "config), not '%s'", word);
		a->view = word;
		return add_send(a, word);
	}
	a->operands++;
	return add_send(a, word);
}

/* The operands' shapes, which the broker would refuse anyway: a usage error (2), not its no (1). */
static int check_operands(const struct args *a)
{
	const struct command *cmd = find_command(a->command);
	if (!cmd)
		return usage_error("no command");
	if (strcmp(a->command, "watch") == 0 && !a->view)
		return usage_error("watch needs a view (status, peers, conns, streams, apps, services, config)");
	if (a->operands < cmd->least || a->operands > cmd->most)
		return usage_error("%s: wrong number of operands", a->command);
	const char *first = a->operands ? a->send[a->sends - a->operands] : NULL;
	unsigned conn, code;
	unsigned long long stream; /* a same-host stream's handle (0/HANDLE) is 64-bit */
	char end;
	if (strcmp(a->command, "close-stream") == 0 &&
	    (sscanf(first, "%u/%llu%c", &conn, &stream, &end) != 2 || first[0] == '-' ||
	     (a->operands == 2 && sscanf(a->send[a->sends - 1], "%u%c", &code, &end) != 1)))
		return usage_error("close-stream CONN/STREAM [CODE], in numbers: not '%s'", first);
	if (strcmp(a->command, "log-level") == 0 && strcmp(first, "error") != 0 && strcmp(first, "warn") != 0 &&
	    strcmp(first, "info") != 0 && strcmp(first, "debug") != 0)
		return usage_error("log-level error|warn|info|debug: not '%s'", first);
	if (selection_any(&a->selection) && !cmd->view && strcmp(a->command, "watch") != 0)
		return usage_error("--sort, --limit and --filter apply to views, not %s", a->command);
	return EXIT_OK;
}

/*
 * Options may come before the command or after it, in any order: the tool's own (-s, --json,
 * --sort, ...) and the command's (--peer, -n, ...); "--" ends them. Anything else that starts
 * with '-' is refused, as are operands a command does not take. EXIT_OK, EXIT_USAGE, or -1
 * after --help or --version, which end the run (with 0).
 */
static int parse_args(struct ctl *c, struct args *a, int argc, char **argv)
{
	bool options = true;
	for (int i = 1; i < argc; i++) {
		char *word = argv[i];
		if (options && strcmp(word, "--") == 0) {
			options = false;
			continue;
		}
		if (!options || word[0] != '-' || !word[1]) {
			int rc = operand(a, word);
			if (rc != EXIT_OK)
				return rc;
			continue;
		}
		size_t length = strcspn(word, "=");
		char *value = word[length] == '=' && word[1] == '-' ? word + length + 1 : NULL;
		if (!value)
			length = strlen(word);
		bool inline_value = value != NULL, used = false;
		if (!value && i + 1 < argc)
			value = argv[i + 1];
		int rc = tool_option(c, a, word, length, value, &used);
		if (rc == TOOL_DONE)
			return -1;
		if (rc >= 2)
			return rc - 2;
		if (rc == 0) {
			if (!a->command)
				return usage_error("unknown option '%s' (or one that belongs after its command)", word);
			rc = command_option(a, word, length, value, &used);
			if (rc != EXIT_OK)
				return rc;
		}
		if (inline_value && !used)
			return usage_error("%.*s takes no value", (int)length, word);
		if (used && !inline_value)
			i++;
	}
	return check_operands(a);
}

int main(int argc, char **argv)
{
	struct ctl c = { .fd = -1 };
	c.socket_path = getenv("WORMHOLE_CONTROL_SOCKET");
	if (!c.socket_path || !c.socket_path[0])
		c.socket_path = DEFAULT_SOCKET;
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	struct args a = { .interval = 2 };
	int rc = parse_args(&c, &a, argc, argv);
	if (rc != EXIT_OK)
		return rc < 0 ? EXIT_OK : rc;
	if ((rc = connect_broker(&c)) != EXIT_OK)
		return rc;
	if (strcmp(a.command, "metrics") == 0)
		rc = run_metrics(&c);
	else if (strcmp(a.command, "watch") == 0)
		rc = run_watch(&c, &a);
	else if ((rc = exchange(&c, a.sends, a.send)) == EXIT_OK) {
		if (c.status != WH_OK)
			rc = refused(&c, a.command);
		else if (c.table_count > 0 && (rc = select_tables(&c, &a.selection)) == EXIT_OK)
			show(&c, a.command, NULL, 0);
		else if (c.table_count > 0)
			;
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
