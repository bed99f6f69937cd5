/* The broker as a system service, tried as an administrator would: settings and their
 * messages, the config file and --check-config, reload with streams flowing, drain on
 * SIGTERM, the socket guard, signals that must not kill, the service manager's notifications
 * and the installed unit. Real broker processes throughout. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "harness.h"

#define BROKER TOP_BUILDDIR "/broker/wormhole-broker"

/* ---- helpers ------------------------------------------------------------------------------ */

/* True if `text` is in a line after the first line containing `marker`. */
static bool log_after(const struct process *p, const char *marker, const char *text)
{
	FILE *f = fopen(p->log_file, "r");
	char line[1024];
	bool seen = false, found = false;
	while (f && !found && fgets(line, sizeof line, f)) {
		if (seen)
			found = strstr(line, text) != NULL;
		seen = seen || strstr(line, marker);
	}
	if (f)
		fclose(f);
	return found;
}

/* A checksummed transfer on its own thread, so that the test can act on the brokers while
 * its bytes flow. */
struct transfer {
	wh_stream *stream;
	size_t size;
	unsigned seed;
	pthread_t thread;
	atomic_size_t echoed;
	int error; /* WH_OK once every byte came back intact and the stream ended cleanly */
};

static void *transfer_run(void *arg)
{
	struct transfer *t = arg;
	static _Thread_local unsigned char out[65536], in[65536];
	size_t sent = 0, received = 0;
	wh_set_nonblocking(t->stream, true);
	int64_t deadline = wh_now_ns() + 120ll * 1000000000;
	t->error = WH_ETIMEOUT;
	while (wh_now_ns() < deadline) {
		while (sent < t->size) {
			size_t n = t->size - sent < sizeof out ? t->size - sent : sizeof out;
			for (size_t i = 0; i < n; i++)
				out[i] = harness_pattern(t->seed, sent + i);
			long w = wh_write(t->stream, out, n);
			if (w == WH_EWOULDBLOCK)
				break;
			if (w < 0) {
				t->error = (int)w;
				return NULL;
			}
			sent += (size_t)w;
			if (sent == t->size)
				wh_shutdown(t->stream);
		}
		long r;
		while ((r = wh_read(t->stream, in, sizeof in)) > 0) {
			for (long i = 0; i < r; i++)
				if (in[i] != harness_pattern(t->seed, received + (size_t)i)) {
					t->error = WH_ERING_CORRUPT; /* a byte differs */
					return NULL;
				}
			received += (size_t)r;
			atomic_store(&t->echoed, received);
		}
		if (r == 0) {
			t->error = received == t->size ? WH_OK : WH_EPROTOCOL;
			return NULL;
		}
		if (r != WH_EWOULDBLOCK) {
			t->error = (int)r;
			return NULL;
		}
		struct pollfd pfd = { wh_stream_fd(t->stream), POLLIN, 0 };
		poll(&pfd, 1, 100);
	}
	return NULL;
}

static void transfer_start(struct transfer *t, wh_stream *s, size_t size, unsigned seed)
{
	*t = (struct transfer){ .stream = s, .size = size, .seed = seed };
	atomic_init(&t->echoed, 0);
	ck_assert_int_eq(pthread_create(&t->thread, NULL, transfer_run, t), 0);
}

static bool transfer_under_way(void *arg)
{
	return atomic_load(&((struct transfer *)arg)->echoed) > (1u << 20);
}

static int transfer_end(struct transfer *t)
{
	pthread_join(t->thread, NULL);
	return t->error;
}

/* ---- settings ----------------------------------------------------------------------------- */

START_TEST(test_bad_settings_name_option_value_and_rule)
{
	char err[4096];
	const char *ring[] = { "--ring-size", "1000", "--config", "/dev/null", NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", ring, err, sizeof err), 2);
	ck_assert_msg(strstr(err, "--ring-size 1000: below the minimum (4096..67108864)"), "%s", err);
	ck_assert_msg(!strstr(err, "usage:"), "no usage dump: %s", err);
	const char *port[] = { "--listen", "127.0.0.1:99999", "--config", "/dev/null", NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", port, err, sizeof err), 2);
	ck_assert(strstr(err, "--listen 127.0.0.1:99999: the port is not within 0..65535"));
	const char *peers[] = { "--config", "/dev/null", "--peer", "local=10.0.0.1:1", "--peer", "b=10.0.0.1:1",
				"--peer", "b=10.0.0.2:1", "--peer", "c=127.0.0.1:notaport", "--pool-min", "5",
				"--pool-max", "2", NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", peers, err, sizeof err), 2);
	ck_assert(strstr(err, "\"local\" means apps on this broker"));
	ck_assert(strstr(err, "--peer b=10.0.0.2:1: peer b is given twice"));
	ck_assert(strstr(err, "--peer c=127.0.0.1:notaport: the port is not a number"));
	ck_assert(strstr(err, "pool-min 5 is above pool-max 2"));
	const char *idle[] = { "--config", "/dev/null", "--socket", "none", "--listen", "none", NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", idle, err, sizeof err), 2);
	ck_assert(strstr(err, "nothing to do"));
	const char *missing[] = { "--config", "/nonexistent/broker.conf", NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", missing, err, sizeof err), 2);
	ck_assert(strstr(err, "--config /nonexistent/broker.conf: No such file or directory"));
}
END_TEST

START_TEST(test_check_config)
{
	char dir[64], path[128], err[4096];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/broker.conf", dir);
	harness_write_file(path, "[broker]\nlisten = 127.0.0.1:0\nlog-level = info\n[peer b]\naddress = 10.0.0.2:7420\n"
		   "plaintext = yes\n");
	const char *good[] = { "--check-config", "--config", path, NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", good, err, sizeof err), 0);
	ck_assert_str_eq(err, ""); /* nothing said when all is good */
	harness_write_file(path, "[broker]\nring-size = 5000\n\n[peer b]\npool-max = 0\n");
	const char *bad[] = { "--check-config", "--config", path, NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", bad, err, sizeof err), 1);
	char expect[256];
	snprintf(expect, sizeof expect, "%s:2: ring-size: not a power of two", path);
	ck_assert_msg(strstr(err, expect), "%s", err);
	snprintf(expect, sizeof expect, "%s:5: pool-max: below the minimum", path);
	ck_assert_msg(strstr(err, expect), "%s", err);
	snprintf(expect, sizeof expect, "%s:4: [peer b]: no address", path);
	ck_assert_msg(strstr(err, expect), "%s", err);
	/* the command line is checked with the file */
	const char *both[] = { "--check-config", "--config", path, "--keepalive", "never", NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", both, err, sizeof err), 1);
	ck_assert(strstr(err, "--keepalive never: not a number of seconds"));
	harness_cleanup_dir(dir);
}
END_TEST

/* ---- reload -------------------------------------------------------------------------------- */

START_TEST(test_reload_adds_and_removes_peers_while_streams_flow)
{
	struct process a, c, b;
	ck_assert(broker_spawn(&a, NULL));
	ck_assert(broker_spawn(&c, NULL));
	char dir[64], path[128], conf[512];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/b.conf", dir);
	snprintf(conf, sizeof conf, "[broker]\nlog-level = info\n[peer a]\naddress = 127.0.0.1:%u\n", a.port);
	harness_write_file(path, conf);
	const char *args[] = { "--config", path, NULL };
	ck_assert(broker_spawn(&b, args));
	wh_client *app = app_attach(&b);
	wh_stream *s;
	ck_assert_int_eq(wh_open(app, "a", "echo", 10000, &s), WH_OK);
	struct transfer t;
	transfer_start(&t, s, 64u << 20, 9);
	ck_assert(poll_until(transfer_under_way, &t, 30));
	ck_assert_int_eq(wh_open(app, "c", "echo", 1000, &s), WH_EUNKNOWN_PEER);

	/* add peer c, and a service default on the way */
	snprintf(conf, sizeof conf, "[broker]\nlog-level = info\ndefault-service = discard\n"
		 "[peer a]\naddress = 127.0.0.1:%u\n[peer c]\naddress = 127.0.0.1:%u\n", a.port, c.port);
	harness_write_file(path, conf);
	kill(b.pid, SIGHUP);
	ck_assert(process_log_wait(&b, "peer=c added", 10));
	wh_stream *to_c;
	ck_assert_int_eq(wh_open(app, "c", "echo", 10000, &to_c), WH_OK);
	app_echo_check(to_c, 1u << 20, 10);
	wh_close(to_c);

	/* a bad file: every error logged, the broker runs on as before */
	harness_write_file(path, "[broker]\nring-size = 5000\n");
	kill(b.pid, SIGHUP);
	ck_assert(process_log_wait(&b, "reload refused: running on as before", 10));
	ck_assert(process_log_has(&b, "ring-size: not a power of two"));
	ck_assert_int_eq(wh_open(app, "c", "echo", 10000, &to_c), WH_OK);
	wh_close(to_c);

	/* remove c again: it drains and goes; a is untouched */
	snprintf(conf, sizeof conf, "[broker]\nlog-level = info\n[peer a]\naddress = 127.0.0.1:%u\n", a.port);
	harness_write_file(path, conf);
	kill(b.pid, SIGHUP);
	ck_assert(process_log_wait(&b, "peer=c removed", 10));
	ck_assert_int_eq(wh_open(app, "c", "echo", 1000, &to_c), WH_EUNKNOWN_PEER);

	ck_assert_int_eq(transfer_end(&t), WH_OK); /* every byte through all three reloads */
	wh_close(s);
	wh_client_detach(app);
	ck_assert_int_eq(process_stop(&b, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&c, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* ---- drain ---------------------------------------------------------------------------------- */

START_TEST(test_sigterm_drains)
{
	struct process a, b;
	ck_assert(broker_spawn(&a, NULL));
	char peer[64];
	snprintf(peer, sizeof peer, "a=127.0.0.1:%u", a.port);
	const char *args[] = { "--peer", peer, "--drain-timeout", "30", NULL };
	ck_assert(broker_spawn(&b, args));
	wh_client *app = app_attach(&b);
	wh_stream *s, *late;
	ck_assert_int_eq(wh_open(app, "a", "echo", 10000, &s), WH_OK);
	struct transfer t;
	transfer_start(&t, s, 32u << 20, 11);
	ck_assert(poll_until(transfer_under_way, &t, 30));
	kill(b.pid, SIGTERM);
	ck_assert(process_log_wait(&b, "draining", 10));
	/* new streams are refused while the open one finishes */
	ck_assert_int_eq(wh_open(app, "a", "echo", 1000, &late), WH_EMUX_CLOSED);
	ck_assert_int_eq(transfer_end(&t), WH_OK); /* every byte, within the drain */
	wh_close(s);
	wh_client_detach(app);
	b.keep_log = true;
	ck_assert_int_eq(process_wait(&b, 10), 0); /* then it stops by itself, well before 30 s */
	ck_assert_msg(!log_after(&b, "draining", " dialled "), "the pool dialled again while draining");
	harness_cleanup_dir(b.dir); /* its exit status was checked above; its log was kept for this */
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
}
END_TEST

/* ---- the socket guard ------------------------------------------------------------------------ */

START_TEST(test_socket_path_is_never_a_hazard)
{
	char dir[64], path[96], err[4096];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/not-a-socket", dir);
	harness_write_file(path, "precious\n");
	const char *on_file[] = { "--config", "/dev/null", "--listen", "none", "--socket", path, NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", on_file, err, sizeof err), 1);
	ck_assert_msg(strstr(err, "not a socket is there; refusing to replace it"), "%s", err);
	char content[32] = "";
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(fgets(content, sizeof content, f));
	fclose(f);
	ck_assert_str_eq(content, "precious\n");

	/* a second broker on a running broker's socket is refused; the first keeps it */
	struct process first;
	ck_assert(broker_spawn(&first, NULL));
	const char *second[] = { "--config", "/dev/null", "--listen", "none", "--socket", first.socket_path, NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", second, err, sizeof err), 1);
	ck_assert_msg(strstr(err, "a broker is already running there"), "%s", err);
	wh_client *app = app_attach(&first);
	wh_client_detach(app);
	ck_assert_int_eq(process_stop(&first, SIGTERM), 0);

	/* a stale socket (nobody listening) is taken over */
	snprintf(path, sizeof path, "%s/stale.sock", dir);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	close(fd); /* the file stays, as after a crash */
	const char *stale[] = { "--socket", path, NULL };
	struct process third;
	ck_assert(broker_spawn(&third, stale));
	snprintf(third.socket_path, sizeof third.socket_path, "%s", path);
	app = app_attach(&third);
	wh_client_detach(app);
	ck_assert_int_eq(process_stop(&third, SIGTERM), 0);

	/* a directory that cannot be made says why */
	snprintf(path, sizeof path, "%s/not-a-socket/sub/broker.sock", dir);
	const char *no_dir[] = { "--config", "/dev/null", "--listen", "none", "--socket", path, NULL };
	ck_assert_int_eq(process_run("broker/wormhole-broker", no_dir, err, sizeof err), 1);
	ck_assert_msg(strstr(err, "cannot create its directory"), "%s", err);
	harness_cleanup_dir(dir);
}
END_TEST

/* ---- logs ------------------------------------------------------------------------------------ */

/* ---- the broker's own services ------------------------------------------------------------- */

/* echo and discard are the broker's: a local app may not claim them (peers that open them
 * trust the broker to answer) unless a [service] rule names it as their owner. */
START_TEST(test_builtin_services_are_the_brokers)
{
	char dir[64], path[96], conf[256];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/broker.conf", dir);
	/* discard is the default service: echo is then a built-in that no rule names */
	harness_write_file(path, "[broker]\nlog-level = info\ndefault-service = discard\n");
	const char *args[] = { "--config", path, NULL };
	struct broker_pair pair;
	broker_pair_start(&pair, args, NULL);
	wh_client *app = app_attach(&pair.a);
	ck_assert_int_eq(wh_listen(app, "discard"), WH_EACCESS);
	ck_assert_int_eq(wh_listen(app, "echo"), WH_EACCESS);
	ck_assert_int_eq(wh_listen(app, ""), WH_EACCESS);
	ck_assert(process_log_has(&pair.a, "listen on service=echo refused: a built-in service is "
				      "the broker's unless a [service] rule names its owner"));
	ck_assert_int_eq(wh_listen(app, "mine"), WH_OK); /* names no rule reserves stay free */
	/* so a peer's stream to echo still reaches the broker's echo, not the app */
	wh_client *far = app_attach(&pair.b);
	wh_stream *s;
	ck_assert_int_eq(wh_open(far, "a", "echo", 10000, &s), WH_OK);
	app_echo_check(s, 4096, 3);
	wh_close(s);
	wh_client_detach(far);
	wh_client_detach(app);
	broker_pair_stop(&pair);
	struct process a;

	/* a rule that names the owner gives the name to that owner */
	snprintf(conf, sizeof conf, "[broker]\nlog-level = info\n[service discard]\nowner = %ld\n",
		 (long)geteuid());
	harness_write_file(path, conf);
	ck_assert(broker_spawn(&a, args));
	app = app_attach(&a);
	ck_assert_int_eq(wh_listen(app, "discard"), WH_OK);
	ck_assert_int_eq(wh_listen(app, "echo"), WH_EACCESS);
	wh_client_detach(app);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* Brokers whose windows differ break bulk streams with ERROR 413: both say why, at warn;
 * and every connection line names its peer, with ids unique in the broker. */
START_TEST(test_logs_name_peers_and_window_mismatches)
{
	struct process a, b;
	const char *a_args[] = { "--window", "256K", NULL };
	ck_assert(broker_spawn(&a, a_args));
	char peer[64];
	snprintf(peer, sizeof peer, "a=127.0.0.1:%u", a.port);
	const char *b_args[] = { "--peer", peer, "--window", "1M", "--max-window", "16M", NULL };
	ck_assert(broker_spawn(&b, b_args));
	/* an app on A that never reads: A grants no credit beyond its 256 KiB, so B's 1 MiB
	 * window overruns it whatever the timing (a reading service may keep up and hide it) */
	wh_client *holder = app_attach(&a);
	ck_assert_int_eq(wh_listen(holder, "hold"), WH_OK);
	wh_client *app = app_attach(&b);
	wh_stream *s;
	ck_assert_int_eq(wh_open(app, "a", "hold", 10000, &s), WH_OK);
	static char chunk[1 << 20];
	wh_set_write_deadline(s, wh_now_ns() + 10000000000ll);
	long rc = 0;
	for (int i = 0; i < 16 && rc >= 0; i++)
		rc = wh_write(s, chunk, sizeof chunk);
	char buf[8];
	wh_set_read_deadline(s, wh_now_ns() + 10000000000ll);
	ck_assert_int_eq(wh_read(s, buf, sizeof buf), WH_EFLOW_CONTROL);
	wh_close(s);
	ck_assert(process_log_wait(&a, "the peer's window is probably larger than ours", 10));
	ck_assert(process_log_wait(&b, "the peer's window is probably smaller than ours", 10));
	ck_assert(process_log_has(&a, "warn mux:"));
	/* the pooled connection is named by its peer, the accepted one by its address */
	ck_assert(process_log_has(&b, "peer=a dialled"));
	ck_assert(process_log_has(&a, "peer=127.0.0.1:"));
	wh_client_detach(app);
	wh_client_detach(holder);
	ck_assert_int_eq(process_stop(&b, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
}
END_TEST

/* ---- signals and the service manager ---------------------------------------------------------- */

START_TEST(test_signals_that_must_not_kill)
{
	struct process b;
	const char *args[] = { "--log-level", "info", NULL };
	ck_assert(broker_spawn(&b, args));
	kill(b.pid, SIGUSR1);
	kill(b.pid, SIGUSR2);
	kill(b.pid, SIGPIPE);
	kill(b.pid, SIGHUP);
	ck_assert(process_log_wait(&b, "reloaded", 10));
	ck_assert(process_log_has(&b, "signal 10: ignored"));
	ck_assert(process_alive(&b));
	wh_client *app = app_attach(&b);
	wh_client_detach(app);
	ck_assert_int_eq(process_stop(&b, SIGTERM), 0);
}
END_TEST

/* Reads the next notification within a bound. */
static bool next_notification(int fd, char *out, size_t len)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	if (poll(&pfd, 1, 10000) != 1)
		return false;
	ssize_t n = recv(fd, out, len - 1, 0);
	if (n < 0)
		return false;
	out[n] = '\0';
	return true;
}

START_TEST(test_service_manager_notifications)
{
	char dir[64], path[96], message[256];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/notify", dir);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
	setenv("NOTIFY_SOCKET", path, 1);
	struct process b;
	ck_assert(broker_spawn(&b, NULL));
	unsetenv("NOTIFY_SOCKET");
	ck_assert(next_notification(fd, message, sizeof message));
	ck_assert_msg(strstr(message, "READY=1"), "%s", message);
	kill(b.pid, SIGHUP);
	ck_assert(next_notification(fd, message, sizeof message));
	ck_assert_msg(strstr(message, "RELOADING=1") && strstr(message, "MONOTONIC_USEC="), "%s", message);
	ck_assert(next_notification(fd, message, sizeof message));
	ck_assert_msg(strstr(message, "READY=1"), "%s", message);
	kill(b.pid, SIGTERM);
	ck_assert(next_notification(fd, message, sizeof message));
	ck_assert_msg(strstr(message, "STOPPING=1"), "%s", message);
	ck_assert_int_eq(process_wait(&b, 10), 0); /* its exit status; its directory went with it */
	close(fd);
	harness_cleanup_dir(dir);
}
END_TEST

/* The installed unit's ExecReload, run as systemd would run it (its $MAINPID the broker's, its
 * wormhole-ctl the one built here): a reload the broker refuses must fail, so that `systemctl
 * reload` reports it, and one it takes must succeed. */
static int run_exec_reload(const struct process *b)
{
	FILE *f = fopen(TOP_BUILDDIR "/contrib/wormhole-broker.service", "r");
	ck_assert_ptr_nonnull(f);
	char line[512] = "", *command = NULL;
	while (!command && fgets(line, sizeof line, f))
		if (strncmp(line, "ExecReload=", 11) == 0)
			command = line + 11;
	fclose(f);
	ck_assert_msg(command != NULL, "the unit has no ExecReload");
	char *argv[16], pid[32], control[400], *save = NULL;
	int n = 0;
	snprintf(pid, sizeof pid, "%ld", (long)b->pid);
	snprintf(control, sizeof control, "%s/control.sock", b->dir);
	for (char *word = strtok_r(command, " \t\n", &save); word && n < 15; word = strtok_r(NULL, " \t\n", &save)) {
		const char *slash = strrchr(word, '/');
		if (n == 0 && slash && strcmp(slash, "/wormhole-ctl") == 0)
			word = TOP_BUILDDIR "/ctl/wormhole-ctl";
		argv[n++] = strcmp(word, "$MAINPID") == 0 ? pid : word;
	}
	argv[n] = NULL;
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		setenv("WORMHOLE_CONTROL_SOCKET", control, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	int status;
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(test_unit_reload_reports_a_refusal)
{
	char dir[64], conf[96];
	harness_tempdir(dir, sizeof dir);
	snprintf(conf, sizeof conf, "%s/broker.conf", dir);
	harness_write_file(conf, "[broker]\nlog-level = info\n");
	const char *args[] = { "--config", conf, NULL };
	struct process b;
	ck_assert(broker_spawn(&b, args));
	ck_assert_int_eq(run_exec_reload(&b), 0);
	harness_write_file(conf, "[broker]\nwindow = 1\n[service upper]\nwindow = 2\n");
	ck_assert_int_ne(run_exec_reload(&b), 0);
	ck_assert(process_log_has(&b, "reload refused"));
	ck_assert(process_alive(&b));
	ck_assert_int_eq(process_stop(&b, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* ---- strings from outside --------------------------------------------------------------------- */

/* True if a line of the file starts with prefix or has one of the bytes in `bytes`. */
static bool file_has_line_or_byte(const char *path, const char *prefix, const char *bytes)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	bool found = false;
	while (f && !found && fgets(line, sizeof line, f))
		found = strncmp(line, prefix, strlen(prefix)) == 0 || strpbrk(line, bytes) != NULL;
	if (f)
		fclose(f);
	return found;
}

/* An app's service name with a newline, a forged log line, a terminal escape and a byte that
 * is not UTF-8: the broker logs one line with all of it escaped, and wormhole-ctl's text
 * shows it escaped too (its JSON as JSON escapes). */
START_TEST(test_names_from_outside_cannot_forge_log_lines)
{
	static const char name[] = "s\n2026-01-01T00:00:00.000Z error broker: forged\x1b[31m\xff";
	static const char escaped[] = "s\\n2026-01-01T00:00:00.000Z error broker: forged\\x1b[31m\\xff";
	struct process b;
	ck_assert(broker_spawn(&b, NULL));
	wh_client *app = app_attach(&b);
	ck_assert_int_eq(wh_listen(app, name), WH_OK);
	char want[256];
	snprintf(want, sizeof want, "listens on service=%s", escaped);
	ck_assert_msg(process_log_wait(&b, want, 10), "no escaped line");
	ck_assert_msg(!file_has_line_or_byte(b.log_file, "2026-01-01T00:00:00.000Z", "\x1b\xff"),
		      "a forged line or a raw control in the log");
	char control[400], out[16384];
	snprintf(control, sizeof control, "%s/control.sock", b.dir);
	const char *text[] = { "-s", control, "services", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", text, out, sizeof out), 0);
	ck_assert_msg(strstr(out, escaped), "%s", out);
	ck_assert_msg(!strstr(out, "\n2026-01-01") && !strpbrk(out, "\x1b\xff"), "%s", out);
	const char *json[] = { "-s", control, "--json", "services", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", json, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "\"s\\n2026-01-01T00:00:00.000Z error broker: forged\\u001b[31m\\ufffd\""), "%s", out);
	wh_client_detach(app);
	ck_assert_int_eq(process_stop(&b, SIGTERM), 0);
}
END_TEST

/* ---- what a config file is ---------------------------------------------------------------- */

/* `wormhole-ctl -s CONTROL VIEW`'s output contains text. */
static bool ctl_shows(const struct process *b, const char *view, const char *text)
{
	char control[400], out[16384];
	snprintf(control, sizeof control, "%s/control.sock", b->dir);
	const char *args[] = { "-s", control, view, NULL };
	return process_run("ctl/wormhole-ctl", args, out, sizeof out) == 0 && strstr(out, text);
}

/* A directory, a FIFO or /dev/zero where the config file was: at start the broker exits 2
 * with the reason (within process_run's bound: it neither waits on the FIFO nor reads zeros
 * for ever); on SIGHUP it refuses the reload, says why, and runs on with its peers. */
START_TEST(test_config_path_that_is_not_a_file)
{
	char dir[64], path[128], err[4096], conf[256];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/broker.conf", dir);
	snprintf(conf, sizeof conf, "[broker]\nlog-level = info\n[peer kept]\naddress = 127.0.0.1:1\n");
	harness_write_file(path, conf);
	const char *args[] = { "--config", path, NULL };
	struct process b;
	ck_assert(broker_spawn(&b, args));
	ck_assert(ctl_shows(&b, "peers", "kept"));
	static const char *const kinds[] = { "directory", "fifo", "zero" };
	static const char *const reasons[] = { "a directory, not a config file", "a FIFO, not a config file",
					       "not a regular file" };
	for (int k = 0; k < 3; k++) {
		unlink(path);
		ck_assert_int_eq(k == 0 ? mkdir(path, 0700) : k == 1 ? mkfifo(path, 0600) : symlink("/dev/zero", path), 0);
		kill(b.pid, SIGHUP);
		char want[300];
		snprintf(want, sizeof want, "reload refused: --config %s: %s", path, reasons[k]);
		ck_assert_msg(process_log_wait(&b, want, 10), "%s: no refusal", kinds[k]);
		ck_assert(process_log_wait(&b, "reload refused: running on as before", 10));
		ck_assert_msg(ctl_shows(&b, "peers", "kept"), "%s: the peer went", kinds[k]);
		const char *start[] = { "--config", path, "--listen", "none", "--check-config", NULL };
		ck_assert_int_eq(process_run("broker/wormhole-broker", start, err, sizeof err), 1);
		ck_assert_msg(strstr(err, reasons[k]), "%s: %s", kinds[k], err);
		k == 0 ? rmdir(path) : unlink(path);
	}
	harness_write_file(path, conf);
	kill(b.pid, SIGHUP);
	ck_assert(process_log_wait(&b, "reloaded", 10));
	ck_assert_int_eq(process_stop(&b, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* ---- the port file ------------------------------------------------------------------------------ */

/* A port number can be read at arg (through a link, if one is there). */
static bool port_file_written(void *arg)
{
	FILE *f = fopen(arg, "r");
	unsigned port = 0;
	bool ok = f && fscanf(f, "%u", &port) == 1 && port > 0;
	if (f)
		fclose(f);
	return ok;
}

static void read_text(const char *path, char *out, size_t length)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(out, 1, length - 1, f);
	out[n] = '\0';
	fclose(f);
}

/* A local user who plants links where the port file and its old temporary file go (the
 * broker may run as root) changes nothing but the links: the files they point to stay as they
 * were, and the port file is written, a regular file of its own. A directory anyone may write
 * to (not sticky) is refused, as the sockets' would be. */
START_TEST(test_port_file_never_follows_a_planted_link)
{
	char dir[64], target[128], other[128], port[128], link[160], text[64];
	harness_tempdir(dir, sizeof dir);
	snprintf(target, sizeof target, "%s/root-owned", dir);
	snprintf(other, sizeof other, "%s/also-root-owned", dir);
	snprintf(port, sizeof port, "%s/port", dir);
	harness_write_file(target, "secret\n");
	harness_write_file(other, "other\n");
	snprintf(link, sizeof link, "%s.tmp", port); /* where the broker wrote before */
	ck_assert_int_eq(symlink(target, link), 0);
	ck_assert_int_eq(symlink(other, port), 0);
	const char *args[] = { "--config", "/dev/null", "--listen", "127.0.0.1:0", "--socket", "none",
			       "--port-file", port, NULL };
	struct process b;
	ck_assert(app_spawn(&b, "broker/wormhole-broker", args));
	ck_assert_msg(poll_until(port_file_written, port, 10), "no port file");
	read_text(target, text, sizeof text);
	ck_assert_str_eq(text, "secret\n");
	read_text(other, text, sizeof text);
	ck_assert_str_eq(text, "other\n");
	struct stat st;
	ck_assert_int_eq(lstat(port, &st), 0);
	ck_assert(S_ISREG(st.st_mode)); /* the link there replaced, not followed */
	ck_assert_int_eq(lstat(link, &st), 0);
	ck_assert(S_ISLNK(st.st_mode)); /* left alone */
	ck_assert_int_eq(process_stop(&b, SIGTERM), 0);
	unlink(port);
	ck_assert_int_eq(chmod(dir, 0777), 0);
	char err[4096];
	ck_assert_int_eq(process_run("broker/wormhole-broker", args, err, sizeof err), 1);
	ck_assert_msg(strstr(err, "is writable by anyone and not sticky"), "%s", err);
	ck_assert_int_ne(access(port, F_OK), 0);
	ck_assert_int_eq(chmod(dir, 01777), 0); /* like /tmp: only a file's owner may replace it */
	ck_assert(app_spawn(&b, "broker/wormhole-broker", args));
	ck_assert_msg(poll_until(port_file_written, port, 10), "no port file in a sticky directory");
	ck_assert_int_eq(process_stop(&b, SIGTERM), 0);
	ck_assert_int_eq(chmod(dir, 0700), 0);
	harness_cleanup_dir(dir);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("service");
	TCase *tc = tcase_create("service");
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_bad_settings_name_option_value_and_rule);
	tcase_add_test(tc, test_check_config);
	tcase_add_test(tc, test_reload_adds_and_removes_peers_while_streams_flow);
	tcase_add_test(tc, test_sigterm_drains);
	tcase_add_test(tc, test_socket_path_is_never_a_hazard);
	tcase_add_test(tc, test_logs_name_peers_and_window_mismatches);
	tcase_add_test(tc, test_builtin_services_are_the_brokers);
	tcase_add_test(tc, test_signals_that_must_not_kill);
	tcase_add_test(tc, test_service_manager_notifications);
	tcase_add_test(tc, test_unit_reload_reports_a_refusal);
	tcase_add_test(tc, test_names_from_outside_cannot_forge_log_lines);
	tcase_add_test(tc, test_config_path_that_is_not_a_file);
	tcase_add_test(tc, test_port_file_never_follows_a_planted_link);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
