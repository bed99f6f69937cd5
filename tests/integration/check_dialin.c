/* A peer that dials in (docs/FORWARDING.md, "Reach a broker behind NAT"): broker "public" has
 * [peer home] without an address; broker "home" dials public. Opens from public to home, an
 * app's and a forward's, go over the connections home made; without one they fail at once
 * with "peer home is not connected"; after home comes back they work again with nothing
 * restarted. On loopback (plaintext, told apart by `from`; TLS, by the certificate), and in
 * network namespaces where home's firewall drops every connection coming in (root only: the
 * program reports SKIP, exit 77, when not root, after the loopback cases pass). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "harness.h"

/* ---- an echo target: each connection read to its end, then sent back --------------------- */

static void echo_one(int fd)
{
	size_t size = 0, cap = 1 << 20;
	char *held = malloc(cap);
	ssize_t n;
	while (held && (n = read(fd, held + size, cap - size)) > 0) {
		size += (size_t)n;
		if (size == cap)
			held = realloc(held, cap *= 2);
	}
	for (size_t at = 0; held && at < size;) {
		ssize_t w = write(fd, held + at, size - at);
		if (w <= 0)
			break;
		at += (size_t)w;
	}
	free(held);
}

static void echo_serve(int fd, void *arg)
{
	(void)arg;
	echo_one(fd);
}

/* The echo target on 127.0.0.1, a port of the system's pick (in *port); returns its pid. */
static pid_t echo_target_start(unsigned *port)
{
	*port = 0;
	return harness_target_start(port, echo_serve, NULL, true);
}

/* ---- the two brokers ----------------------------------------------------------------------- */

/* Through the forward on `port` to the echo target: 256 KiB of pattern sent, half-closed, and
 * every byte back. */
static void forward_echo_check(unsigned port, unsigned seed)
{
	int fd = harness_connect_loopback(port);
	harness_echo_check(fd, 256 * 1024, seed);
	close(fd);
}

/* A client of a forward whose peer is not connected: it is reset at once. On loopback the
 * reset can come before connect() returns, which then fails with ECONNRESET: as good as a
 * reset seen by the send or the read. */
static void connect_and_see_reset(unsigned port)
{
	int fd = harness_connect_loopback_from(NULL, port);
	if (fd < 0) {
		ck_assert_msg(errno == ECONNRESET, "connect to %u: %s", port, strerror(errno));
		return;
	}
	errno = 0;
	ssize_t n = send(fd, "x", 1, MSG_NOSIGNAL);
	char byte;
	if (n == 1)
		n = read(fd, &byte, 1);
	ck_assert_msg(n <= 0, "the forward's client got a byte");
	ck_assert_msg(n == 0 || errno == ECONNRESET || errno == EPIPE, "the client saw %s", strerror(errno));
	close(fd);
}

/* A forward's client to a peer that is not connected is reset at once: well within a second
 * (the peer's connect-timeout is 10 s), and public's log says why. */
static void forward_refused_at_once(const struct process *public, unsigned port)
{
	double start = harness_now();
	connect_and_see_reset(port);
	ck_assert_msg(harness_now() - start < 3, "the refusal took %.1f s", harness_now() - start);
	ck_assert(process_log_wait(public, "forward=web client=127.0.0.1:", 5));
	ck_assert(process_log_wait(public, "peer home is not connected", 5));
}

/* An app's open to home fails at once, with WH_EPEER_UNREACHABLE and the words. */
static void app_open_refused_at_once(const struct process *public)
{
	wh_client *app = app_attach(public);
	wh_stream *s = NULL;
	double start = harness_now();
	int rc = wh_open(app, "home", "echo", 10000, &s);
	double took = harness_now() - start;
	ck_assert_msg(rc == WH_EPEER_UNREACHABLE, "wh_open: %s (%s)", wh_strerror(rc), wh_client_errmsg(app));
	ck_assert_msg(strstr(wh_client_errmsg(app), "peer home is not connected"), "%s", wh_client_errmsg(app));
	ck_assert_msg(took < 2, "the refusal took %.1f s", took);
	wh_client_detach(app);
}

static bool app_open_works(void *arg)
{
	const struct process *public = arg;
	wh_client *app = NULL;
	if (wh_client_attach(public->socket_path, &app) != WH_OK)
		return false;
	wh_stream *s = NULL;
	int rc = wh_open(app, "home", "echo", 5000, &s);
	if (rc == WH_OK)
		wh_close(s);
	wh_client_detach(app);
	return rc == WH_OK;
}

static void app_echo_through_home(const struct process *public, unsigned seed)
{
	ck_assert_msg(poll_until(app_open_works, (void *)public, 15), "opens to home never worked");
	wh_client *app = app_attach(public);
	wh_stream *s = NULL;
	ck_assert_int_eq(wh_open(app, "home", "echo", 5000, &s), WH_OK);
	app_echo_check(s, 1u << 20, seed);
	wh_close(s);
	wh_client_detach(app);
}

static bool app_open_refused(void *arg)
{
	return !app_open_works(arg);
}

/* Starts home: it dials public at `public_port` and exposes service web (the echo target). */
static void home_start(struct process *home, const char *dir, unsigned public_port, unsigned target_port,
		       const char *const *tls)
{
	char path[300], text[512];
	snprintf(path, sizeof path, "%s/home.conf", dir);
	snprintf(text, sizeof text, "[peer public]\naddress = 127.0.0.1:%u\n\n[service web]\n"
		 "target = 127.0.0.1:%u\n%s", public_port, target_port, tls ? "peers = public\n" : "");
	harness_write_file(path, text);
	const char *args[16] = { "--config", path };
	int n = 2;
	for (int i = 0; tls && tls[i]; i++)
		args[n++] = tls[i];
	args[n] = NULL;
	ck_assert(broker_spawn(home, args));
}

/* `wormhole-ctl peers` on public shows home dialling in, with `open` connections. */
static void peers_show(const struct process *public, const char *state, unsigned open)
{
	char control[320], out[8192], want[64];
	snprintf(control, sizeof control, "%s/control.sock", public->dir);
	const char *args[] = { "-s", control, "--json", "peers", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", args, out, sizeof out), 0);
	snprintf(want, sizeof want, "\"open\": %u,", open);
	ck_assert_msg(strstr(out, "\"peer\": \"home\", \"address\": \"(dials in)\"") && strstr(out, want) &&
		      strstr(out, state), "%s", out);
}

/* The whole story on loopback; tls NULL: plaintext, home told by from = 127.0.0.1. */
static void dial_in_story(const char *const *public_tls, const char *const *home_tls)
{
	char dir[64], path[300], text[512];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = echo_target_start(&target_port);
	snprintf(path, sizeof path, "%s/public.conf", dir);
	snprintf(text, sizeof text, "[peer home]\n%s\n[forward web]\nlisten = 127.0.0.1:0\npeer = home\n"
		 "service = web\n", public_tls ? "" : "from = 127.0.0.1\n");
	harness_write_file(path, text);
	const char *args[16] = { "--config", path };
	int n = 2;
	for (int i = 0; public_tls && public_tls[i]; i++)
		args[n++] = public_tls[i];
	args[n] = NULL;
	struct process public, home;
	ck_assert(broker_spawn(&public, args));
	unsigned port = harness_forward_port(&public, "web");

	/* nobody dialled in yet: both kinds of open fail at once, with the words */
	app_open_refused_at_once(&public);
	forward_refused_at_once(&public, port);
	peers_show(&public, "\"state\": \"not-connected\"", 0);

	home_start(&home, dir, public.port, target_port, home_tls);
	ck_assert(process_log_wait(&public, "peer=home dialled in: conn=", 10));
	app_echo_through_home(&public, 3);
	forward_echo_check(port, 4);
	peers_show(&public, "\"state\": \"up\"", 1);

	/* home dies: opens fail at once again; home restarted: they work again, public untouched */
	ck_assert_int_ne(process_stop(&home, SIGKILL), 0);
	ck_assert_msg(poll_until(app_open_refused, &public, 10), "opens still work with home gone");
	app_open_refused_at_once(&public);
	home_start(&home, dir, public.port, target_port, home_tls);
	app_echo_through_home(&public, 5);
	forward_echo_check(port, 6);

	ck_assert_int_eq(process_stop(&home, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&public, SIGTERM), 0);
	harness_stop_child(target);
	harness_cleanup_dir(dir);
}

START_TEST(test_dial_in_plaintext)
{
	dial_in_story(NULL, NULL);
}
END_TEST

/* Over TLS: an empty [peer home] section; home's certificate says "home". A broker whose
 * certificate says another name dials in too and is not taken for home. */
START_TEST(test_dial_in_tls)
{
	char certs[64];
	harness_tempdir(certs, sizeof certs);
	ck_assert(harness_make_certs(certs, "public home"));
	struct harness_tls tp, th;
	dial_in_story(harness_tls_args(&tp, certs, "public"), harness_tls_args(&th, certs, "home"));
	harness_cleanup_dir(certs);
}
END_TEST

/* A broker with a good certificate of another name dials public: it is not home. */
START_TEST(test_other_certificate_is_not_home)
{
	char certs[64], dir[64], path[300], text[256];
	harness_tempdir(certs, sizeof certs);
	harness_tempdir(dir, sizeof dir);
	ck_assert(harness_make_certs(certs, "public mallory"));
	struct harness_tls tp, tm;
	snprintf(path, sizeof path, "%s/public.conf", dir);
	harness_write_file(path, "[peer home]\n");
	const char *const *ptls = harness_tls_args(&tp, certs, "public");
	const char *args[] = { "--config", path, ptls[0], ptls[1], ptls[2], ptls[3], ptls[4], ptls[5], NULL };
	struct process public, mallory;
	ck_assert(broker_spawn(&public, args));
	snprintf(path, sizeof path, "%s/mallory.conf", dir);
	snprintf(text, sizeof text, "[peer public]\naddress = 127.0.0.1:%u\n", public.port);
	harness_write_file(path, text);
	const char *const *mtls = harness_tls_args(&tm, certs, "mallory");
	const char *margs[] = { "--config", path, mtls[0], mtls[1], mtls[2], mtls[3], mtls[4], mtls[5], NULL };
	ck_assert(broker_spawn(&mallory, margs));
	ck_assert(process_log_wait(&public, "identity mallory", 10));
	app_open_refused_at_once(&public);
	ck_assert(!process_log_has(&public, "dialled in"));
	ck_assert_int_eq(process_stop(&mallory, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&public, SIGTERM), 0);
	harness_cleanup_dir(dir);
	harness_cleanup_dir(certs);
}
END_TEST

/* A reload that adds [peer home] takes home's connection open already (no redial); one that
 * removes it makes opens to home unknown; one that adds it back takes it again. */
START_TEST(test_reload_adds_and_removes_the_peer)
{
	char dir[64], path[300];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = echo_target_start(&target_port);
	snprintf(path, sizeof path, "%s/public.conf", dir);
	harness_write_file(path, "[broker]\nlog-level = info\n");
	const char *args[] = { "--config", path, NULL };
	struct process public, home;
	ck_assert(broker_spawn(&public, args));
	home_start(&home, dir, public.port, target_port, NULL);
	ck_assert(process_log_wait(&home, "peer=public dialled", 10));

	harness_write_file(path, "[peer home]\nfrom = 127.0.0.1\n");
	ck_assert_int_eq(kill(public.pid, SIGHUP), 0);
	ck_assert(process_log_wait(&public, "peer=home dialled in: conn=1 ", 10));
	app_echo_through_home(&public, 7);

	harness_write_file(path, "[broker]\nlog-level = info\n");
	ck_assert_int_eq(kill(public.pid, SIGHUP), 0);
	ck_assert(process_log_wait(&public, "peer=home removed", 10));
	wh_client *app = app_attach(&public);
	wh_stream *s = NULL;
	ck_assert_int_eq(wh_open(app, "home", "echo", 5000, &s), WH_EUNKNOWN_PEER);
	wh_client_detach(app);

	harness_write_file(path, "[peer home]\nfrom = 127.0.0.1\n");
	ck_assert_int_eq(kill(public.pid, SIGHUP), 0);
	app_echo_through_home(&public, 8);
	/* home never had to dial again */
	ck_assert_msg(!process_log_has(&public, "conn=2"), "home dialled again");

	ck_assert_int_eq(process_stop(&home, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&public, SIGTERM), 0);
	harness_stop_child(target);
	harness_cleanup_dir(dir);
}
END_TEST

/* A reload that removes [peer home] hands home's connection back as an ordinary accepted
 * one: named by its address, closed after peer-idle-timeout with no stream. It used to keep
 * home's name and no idle timeout, open for as long as home held it. */
START_TEST(test_removed_peer_connection_is_ordinary)
{
	char dir[64], path[300];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = echo_target_start(&target_port);
	snprintf(path, sizeof path, "%s/public.conf", dir);
	harness_write_file(path, "[broker]\npeer-idle-timeout = 1\n[peer home]\nfrom = 127.0.0.1\n");
	const char *args[] = { "--config", path, NULL };
	struct process public, home;
	ck_assert(broker_spawn(&public, args));
	home_start(&home, dir, public.port, target_port, NULL);
	ck_assert(process_log_wait(&public, "peer=home dialled in: conn=1 ", 10));
	app_echo_through_home(&public, 9);
	/* home's, it is not idle without streams: it waits for ours */
	usleep(1500000); /* past the idle timeout: the connection must still be there */
	ck_assert_msg(!process_log_has(&public, "no stream for 1 s: closing"), "home's connection was "
		      "closed as idle");

	/* the reload that removes home also sets the timeout: the connection gets the new one
	 * (it got the old, 600 s here, at first) */
	harness_write_file(path, "[broker]\npeer-idle-timeout = 600\n[peer home]\nfrom = 127.0.0.1\n");
	ck_assert_int_eq(kill(public.pid, SIGHUP), 0);
	ck_assert(process_log_wait(&public, "reloaded", 10));
	harness_write_file(path, "[broker]\npeer-idle-timeout = 1\n");
	ck_assert_int_eq(kill(public.pid, SIGHUP), 0);
	ck_assert(process_log_wait(&public, "peer=home removed: conn=1 from 127.0.0.1:", 10));
	ck_assert(process_log_wait(&public, "conn=1 peer=127.0.0.1:", 10));
	ck_assert(process_log_wait(&public, "no stream for 1 s: closing", 10));

	ck_assert_int_eq(process_stop(&home, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&public, SIGTERM), 0);
	harness_stop_child(target);
	harness_cleanup_dir(dir);
}
END_TEST

/* Home drains (SIGTERM) while a stream of public's is open on its connection: the connection
 * says goodbye, so a new open to home fails at once and says so, while the open stream goes on. */
START_TEST(test_home_draining)
{
	char dir[64], path[300], text[256];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/public.conf", dir);
	harness_write_file(path, "[peer home]\nfrom = 127.0.0.1\n");
	const char *args[] = { "--config", path, NULL };
	struct process public, home;
	ck_assert(broker_spawn(&public, args));
	snprintf(path, sizeof path, "%s/home.conf", dir);
	snprintf(text, sizeof text, "[broker]\ndrain-timeout = 30\n[peer public]\naddress = 127.0.0.1:%u\n",
		 public.port);
	harness_write_file(path, text);
	const char *hargs[] = { "--config", path, NULL };
	ck_assert(broker_spawn(&home, hargs));
	ck_assert_msg(poll_until(app_open_works, &public, 15), "opens to home never worked");
	wh_client *app = app_attach(&public);
	wh_stream *held = NULL, *s = NULL;
	ck_assert_int_eq(wh_open(app, "home", "echo", 5000, &held), WH_OK);
	ck_assert_int_eq(wh_write(held, "abc", 3), 3);
	char got[4] = "";
	app_read_exactly(held, got, 3);
	ck_assert_int_eq(kill(home.pid, SIGTERM), 0);
	ck_assert(process_log_wait(&home, "draining", 10));
	ck_assert_msg(poll_until(app_open_refused, &public, 10), "opens to a draining home still work");
	double start = harness_now();
	ck_assert_int_eq(wh_open(app, "home", "echo", 10000, &s), WH_EPEER_UNREACHABLE);
	ck_assert_msg(harness_now() - start < 2, "the refusal took %.1f s", harness_now() - start);
	ck_assert_msg(strstr(wh_client_errmsg(app), "peer home is not connected (its connections are going away"),
		      "%s", wh_client_errmsg(app));
	ck_assert_int_eq(wh_write(held, "def", 3), 3); /* the open stream goes on */
	app_read_exactly(held, got, 3);
	ck_assert_str_eq(got, "def");
	wh_close(held);
	wh_client_detach(app);
	ck_assert_int_eq(process_wait(&home, 20), 0);
	ck_assert_int_eq(process_stop(&public, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* A reload that changes home's `from` to an address home does not dial from: its connection
 * open now is no longer home's (an operator revoking an address): opens to home fail at once,
 * a stream open on it carries on; the old `from` back takes the connection again. */
START_TEST(test_reload_changes_from)
{
	char dir[64], path[300], text[256];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/public.conf", dir);
	harness_write_file(path, "[peer home]\nfrom = 127.0.0.1\n");
	const char *args[] = { "--config", path, NULL };
	struct process public, home;
	ck_assert(broker_spawn(&public, args));
	char home_path[300];
	snprintf(home_path, sizeof home_path, "%s/home.conf", dir);
	snprintf(text, sizeof text, "[peer public]\naddress = 127.0.0.1:%u\n", public.port);
	harness_write_file(home_path, text);
	const char *hargs[] = { "--config", home_path, NULL };
	ck_assert(broker_spawn(&home, hargs));
	ck_assert_msg(poll_until(app_open_works, &public, 15), "opens to home never worked");
	wh_client *app = app_attach(&public);
	wh_stream *held = NULL, *s = NULL;
	ck_assert_int_eq(wh_open(app, "home", "echo", 5000, &held), WH_OK);
	ck_assert_int_eq(wh_write(held, "abc", 3), 3);
	char got[4] = "";
	app_read_exactly(held, got, 3);

	harness_write_file(path, "[peer home]\nfrom = 127.0.0.2\n");
	ck_assert_int_eq(kill(public.pid, SIGHUP), 0);
	ck_assert_msg(poll_until(app_open_refused, &public, 10), "opens still go to a connection from "
		      "127.0.0.1 with from = 127.0.0.2");
	ck_assert_int_eq(wh_open(app, "home", "echo", 10000, &s), WH_EPEER_UNREACHABLE);
	ck_assert_msg(strstr(wh_client_errmsg(app), "peer home is not connected"), "%s", wh_client_errmsg(app));
	ck_assert(process_log_wait(&public, "no longer matches its section", 5));
	peers_show(&public, "\"state\": \"not-connected\"", 0);
	ck_assert_int_eq(wh_write(held, "def", 3), 3); /* the open stream goes on */
	app_read_exactly(held, got, 3);
	ck_assert_str_eq(got, "def");
	wh_close(held);

	harness_write_file(path, "[peer home]\nfrom = 127.0.0.1\n");
	ck_assert_int_eq(kill(public.pid, SIGHUP), 0);
	ck_assert_msg(poll_until(app_open_works, &public, 10), "the old from back: opens never worked");
	wh_client_detach(app);
	ck_assert_int_eq(process_stop(&home, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&public, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* A flood of clients at a forward whose peer is not connected: each is reset at once, but the
 * log gets at most a line a second for them (it got one per client), and the next line says
 * how many were not logged. */
START_TEST(test_refusals_logged_once_a_second)
{
	char dir[64], path[300];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/public.conf", dir);
	harness_write_file(path, "[peer home]\nfrom = 127.0.0.1\n\n[forward web]\nlisten = 127.0.0.1:0\npeer = home\n"
			 "service = web\n");
	const char *args[] = { "--config", path, NULL };
	struct process public;
	ck_assert(broker_spawn(&public, args));
	unsigned port = harness_forward_port(&public, "web");
	double start = harness_now();
	for (int i = 0; i < 400; i++)
		connect_and_see_reset(port);
	double took = harness_now() - start;
	ck_assert(process_log_wait(&public, "peer home is not connected", 5));
	int lines = process_log_count(&public, "peer home is not connected");
	ck_assert_msg(lines <= 2 + (int)took, "%d lines for 400 clients in %.1f s", lines, took);
	usleep(1100000); /* the next second: one more client is logged, with the count */
	connect_and_see_reset(port);
	ck_assert(process_log_wait(&public, "more clients reset since the last such line)", 5));
	ck_assert_int_eq(process_stop(&public, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* --check-config: a plaintext dial-in peer needs from; two may not share one; from wants an
 * address and a peer without one. */
START_TEST(test_config_checks)
{
	static const struct {
		const char *text, *said;
	} cases[] = {
		{ "[peer home]\n", "[peer home]: no address, so it dials in, but over plaintext its "
				   "connections are told by from = ADDRESS" },
		{ "[peer home]\nfrom = 127.0.0.1\n[peer cabin]\nfrom = 127.0.0.1\n",
		  "[peer cabin]: a connection from 127.0.0.1 could be peer home's as well" },
		/* one address spelled two ways: a connection from it would match both */
		{ "[peer home]\nfrom = 127.0.0.1\n[peer cabin]\nfrom = ::ffff:127.0.0.1\n",
		  "[peer cabin]: a connection from ::ffff:127.0.0.1 could be peer home's as well" },
		{ "[peer home]\nfrom = ::1\n[peer cabin]\nfrom = 0:0::1\n",
		  "[peer cabin]: a connection from ::1 could be peer home's as well" },
		{ "[peer home]\nfrom = home.example\n", "bad.conf:2: from: wants an IP address" },
		{ "[peer home]\naddress = 127.0.0.1:7\nfrom = 127.0.0.1\n", "[peer home]: from is for a peer "
		  "that dials in" },
	};
	char dir[64], path[300], out[4096];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/bad.conf", dir);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		harness_write_file(path, cases[i].text);
		const char *args[] = { "--check-config", "--config", path, NULL };
		ck_assert_int_ne(process_run("broker/wormhole-broker", args, out, sizeof out), 0);
		ck_assert_msg(strstr(out, cases[i].said), "case %zu said: %s", i, out);
	}
	harness_write_file(path, "[peer home]\nfrom = ::1\n[peer cabin]\nfrom = 127.0.0.2\n");
	const char *args[] = { "--check-config", "--config", path, NULL };
	ck_assert_msg(process_run("broker/wormhole-broker", args, out, sizeof out) == 0, "%s", out);
	harness_cleanup_dir(dir);
}
END_TEST

/* ---- network namespaces: home behind a firewall that lets nothing in --------------------- */

struct nat_scene {
	char ns[3][48]; /* home, public, client */
	int own_ns;     /* this process's own namespace, to come back to */
};

static void scene_remove(struct nat_scene *s)
{
	for (int i = 0; i < 3; i++)
		if (s->ns[i][0])
			harness_run_shell("ip netns del %s 2>/dev/null", s->ns[i]);
}

/* home 10.23.1.2 -- 10.23.1.1 public 10.23.2.1 -- 10.23.2.2 client; home's nftables drops
 * every new connection that comes in (loopback aside: its broker reaches its target there). */
static bool scene_make(struct nat_scene *s)
{
	static const char *const names[] = { "home", "public", "client" };
	/* a run that failed half-way left its namespaces: those whose process is gone go */
	(void)!system("for n in $(ip netns list 2>/dev/null | awk '/^wh-nat-/ {print $1}'); do "
		      "p=${n##*-}; kill -0 \"$p\" 2>/dev/null || ip netns del \"$n\"; done");
	for (int i = 0; i < 3; i++) {
		snprintf(s->ns[i], sizeof s->ns[i], "wh-nat-%s-%d", names[i], (int)getpid());
		if (!harness_run_shell("ip netns add %s && ip -n %s link set lo up", s->ns[i], s->ns[i]))
			return false;
	}
	return harness_run_shell("ip -n %s link add eth0 type veth peer name tohome netns %s", s->ns[0],
				 s->ns[1]) &&
	       harness_run_shell("ip -n %s link add eth0 type veth peer name toclient netns %s", s->ns[2],
				 s->ns[1]) &&
	       harness_run_shell("ip -n %s addr add 10.23.1.2/24 dev eth0 && ip -n %s link set eth0 up", s->ns[0],
				 s->ns[0]) &&
	       harness_run_shell("ip -n %s addr add 10.23.1.1/24 dev tohome && ip -n %s link set tohome up",
				 s->ns[1], s->ns[1]) &&
	       harness_run_shell("ip -n %s addr add 10.23.2.1/24 dev toclient && ip -n %s link set toclient up",
				 s->ns[1], s->ns[1]) &&
	       harness_run_shell("ip -n %s addr add 10.23.2.2/24 dev eth0 && ip -n %s link set eth0 up", s->ns[2],
				 s->ns[2]) &&
	       harness_run_shell("ip netns exec %s nft -f - <<'EOF'\n"
		   "table inet nat_home {\n"
		   "  chain input {\n"
		   "    type filter hook input priority 0; policy accept;\n"
		   "    iifname \"lo\" accept\n"
		   "    ct state new drop\n"
		   "  }\n"
		   "}\nEOF", s->ns[0]);
}

/* Runs fn's fork (broker_spawn, or a program) inside namespace ns: this process enters it
 * for the fork and comes back. */
static void enter(struct nat_scene *s, int which)
{
	char path[96];
	snprintf(path, sizeof path, "/run/netns/%s", s->ns[which]);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(setns(fd, CLONE_NEWNET), 0);
	close(fd);
}

static void leave(struct nat_scene *s)
{
	ck_assert_int_eq(setns(s->own_ns, CLONE_NEWNET), 0);
}

static pid_t spawn_in(struct nat_scene *s, int which, const char *const *argv, const char *log, const char *dir)
{
	enter(s, which);
	pid_t pid = harness_spawn_program(argv, log, dir);
	leave(s);
	return pid;
}

/* The SHA-256 of a file, in hex, by sha256sum. */
static void sha256_of(const char *path, char out[65])
{
	char command[400];
	snprintf(command, sizeof command, "sha256sum '%s'", path);
	FILE *p = popen(command, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(fscanf(p, "%64s", out), 1);
	pclose(p);
}

struct curl_try {
	struct nat_scene *scene;
	const char *url, *output, *log;
};

static bool curl_gets_it(void *arg)
{
	struct curl_try *t = arg;
	const char *argv[] = { "curl", "-sS", "--fail", "--max-time", "20", "-o", t->output, t->url, NULL };
	return harness_wait_child(spawn_in(t->scene, 2, argv, t->log, NULL), 30) == 0;
}

START_TEST(test_nat_namespaces_over_tls)
{
	struct nat_scene scene = { .own_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC) };
	ck_assert_int_ge(scene.own_ns, 0);
	char dir[64], certs[96], path[300], text[1024], log[300], file[300], got[300];
	harness_tempdir(dir, sizeof dir);
	snprintf(certs, sizeof certs, "%s/certs", dir);
	ck_assert_int_eq(mkdir(certs, 0700), 0);
	ck_assert(harness_make_certs(certs, "public home"));
	if (!scene_make(&scene)) {
		scene_remove(&scene);
		ck_abort_msg("cannot make the namespaces");
	}
	/* the file home serves: 8 MiB of pattern */
	snprintf(file, sizeof file, "%s/www/big.bin", dir);
	snprintf(path, sizeof path, "%s/www", dir);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	FILE *f = fopen(file, "w");
	ck_assert_ptr_nonnull(f);
	for (size_t i = 0; i < (8u << 20); i++)
		fputc(harness_pattern(11, i), f);
	fclose(f);
	snprintf(log, sizeof log, "%s/http.log", dir);
	const char *http[] = { "python3", "-m", "http.server", "--bind", "0.0.0.0", "8000", NULL };
	pid_t server = spawn_in(&scene, 0, http, log, path);

	/* public: TLS on 10.23.1.1, [peer home] with no address, the forward for the client */
	struct harness_tls tp, th;
	const char *const *ptls = harness_tls_args(&tp, certs, "public");
	snprintf(path, sizeof path, "%s/public.conf", dir);
	harness_write_file(path, "[peer home]\n\n[forward web]\n"
			 "listen = 10.23.2.1:18000\npeer = home\nservice = web\n");
	const char *pargs[] = { "--config", path, "--listen", "10.23.1.1:7420", ptls[0], ptls[1], ptls[2],
				ptls[3], ptls[4], ptls[5], NULL };
	struct process public, home;
	enter(&scene, 1);
	bool public_up = broker_spawn(&public, pargs);
	leave(&scene);
	ck_assert(public_up);

	/* home dials out to public; its service web goes to the HTTP server, for public only */
	const char *const *htls = harness_tls_args(&th, certs, "home");
	char home_conf[300];
	snprintf(home_conf, sizeof home_conf, "%s/home.conf", dir);
	snprintf(text, sizeof text, "[peer public]\naddress = 10.23.1.1:7420\n\n[service web]\n"
		 "target = 127.0.0.1:8000\npeers = public\n");
	harness_write_file(home_conf, text);
	const char *hargs[] = { "--config", home_conf, htls[0], htls[1], htls[2], htls[3], htls[4], htls[5], NULL };
	enter(&scene, 0);
	bool home_up = broker_spawn(&home, hargs);
	leave(&scene);
	ck_assert(home_up);
	ck_assert(process_log_wait(&public, "peer=home dialled in: conn=", 15));

	/* the firewall holds: nothing reaches home's HTTP server from outside */
	snprintf(log, sizeof log, "%s/curl.log", dir);
	snprintf(got, sizeof got, "%s/direct.bin", dir);
	const char *direct[] = { "curl", "-sS", "--max-time", "2", "-o", got, "http://10.23.1.2:8000/big.bin", NULL };
	ck_assert_int_ne(harness_wait_child(spawn_in(&scene, 1, direct, log, NULL), 10), 0);

	/* the client, in a third namespace, fetches it through public's forward */
	snprintf(got, sizeof got, "%s/got.bin", dir);
	struct curl_try t = { &scene, "http://10.23.2.1:18000/big.bin", got, log };
	if (!poll_until(curl_gets_it, &t, 30)) {
		process_dump_log(&public);
		process_dump_log(&home);
		ck_abort_msg("curl through the forward failed (%s)", log);
	}
	char want[65], have[65];
	sha256_of(file, want);
	sha256_of(got, have);
	ck_assert_str_eq(have, want);
	ck_assert(process_log_has(&public, "TLS"));

	ck_assert_int_eq(process_stop(&home, SIGTERM), 0);
	ck_assert_int_eq(process_stop(&public, SIGTERM), 0);
	harness_stop_child(server);
	scene_remove(&scene);
	close(scene.own_ns);
	harness_cleanup_dir(dir);
}
END_TEST

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	Suite *suite = suite_create("dialin");
	TCase *tc = tcase_create("loopback");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_dial_in_plaintext);
	tcase_add_test(tc, test_dial_in_tls);
	tcase_add_test(tc, test_other_certificate_is_not_home);
	tcase_add_test(tc, test_config_checks);
	tcase_add_test(tc, test_reload_adds_and_removes_the_peer);
	tcase_add_test(tc, test_removed_peer_connection_is_ordinary);
	tcase_add_test(tc, test_home_draining);
	tcase_add_test(tc, test_reload_changes_from);
	tcase_add_test(tc, test_refusals_logged_once_a_second);
	suite_add_tcase(suite, tc);
	bool root = geteuid() == 0;
	if (root) {
		TCase *ns = tcase_create("namespaces");
		tcase_set_timeout(ns, 180);
		tcase_add_test(ns, test_nat_namespaces_over_tls);
		suite_add_tcase(suite, ns);
	}
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	if (failed)
		return EXIT_FAILURE;
	if (!root) {
		fprintf(stderr, "check_dialin: the namespace case needs root: skipped\n");
		return 77; /* automake's SKIP: not everything was checked */
	}
	return EXIT_SUCCESS;
}
