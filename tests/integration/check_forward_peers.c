/* Forwarding where forwards, targets and peers change or are several: SIGHUP and
 * wormhole-ctl adding and removing forwards under live connections, a peer removed under one,
 * balance and health checks over several targets, peer = local (a broker's forwards to its own
 * services), and one client address's churn over a peer connection the others share. Broker A
 * exposes services, broker B forwards to them (forward_scene.h); real broker processes
 * throughout. check_forward.c has the basic carrying and limits. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "forward_scene.h"
#include "harness.h"

/* ---- reloads, several targets, peers removed ------------------------------------------------- */

/* Sends "E" and text, and leaves the connection open (the answer comes after the shutdown). */
static int echo_begin(unsigned port, const char *text)
{
	int fd = harness_connect_loopback(port);
	ck_assert_int_eq(write(fd, "E", 1), 1);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	return fd;
}

/* Sends more, shuts the write side and checks everything comes back. */
static void echo_end(int fd, const char *first, const char *more)
{
	char want[256], got[256];
	snprintf(want, sizeof want, "%s%s", first, more);
	ck_assert_int_eq(write(fd, more, strlen(more)), (ssize_t)strlen(more));
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	int error;
	harness_read_to_end(fd, got, sizeof got, &error);
	ck_assert_msg(error == 0, "read: %s", strerror(error));
	ck_assert_str_eq(got, want);
	close(fd);
}

/* SIGHUP applies added, removed and changed forwards: a connection of an unchanged forward and
 * one of a removed forward carry their bytes across the reload, the removed one stops
 * listening, the added one listens; a new listen that cannot be bound refuses the reload. */
START_TEST(test_reload_forwards)
{
	char dir[64], path[300], text[1024];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, "[forward one]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n"
		      "[forward two]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n");
	unsigned one = harness_forward_port(&b, "one"), two = harness_forward_port(&b, "two");
	int kept = ping_begin(one, "kept before the reload");
	int drained = ping_begin(two, "drained before the reload");

	snprintf(path, sizeof path, "%s/b.conf", dir);
	snprintf(text, sizeof text, "[peer a]\naddress = 127.0.0.1:%u\n\n[forward one]\nlisten = 127.0.0.1:%u\n"
		 "peer = a\nservice = small\n[forward three]\nlisten = 127.0.0.1:0\npeer = a\nservice = small\n",
		 a.port, one);
	harness_write_file(path, text);
	/* a client whose connect completed just before the reload, still in the listen queue:
	 * served, not reset with the queue */
	ck_assert_int_eq(kill(b.pid, SIGSTOP), 0);
	int queued = harness_connect_loopback(two);
	ck_assert_int_eq(write(queued, "Pqueued", 7), 7);
	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	ck_assert_int_eq(kill(b.pid, SIGCONT), 0);
	unsigned three = harness_forward_port(&b, "three");
	ck_assert(process_log_wait(&b, "forward=two no longer listens: 2 connections drain", 10));
	ck_assert_msg(harness_connect_refused(two), "the removed forward still listens");
	char back[8] = "";
	for (size_t have = 0; have < 6;) {
		ssize_t n = read(queued, back + have, 6 - have);
		ck_assert_msg(n > 0, "the queued client: %zd %s", n, strerror(errno));
		have += (size_t)n;
	}
	ck_assert_str_eq(back, "queued");
	ping_end(queued, "queued after the reload");
	ping_end(kept, "kept after the reload");
	ping_end(drained, "drained after the reload");
	ck_assert(process_log_wait(&b, "forward=two removed", 10));
	int added = echo_begin(three, "added, ");
	echo_end(added, "added, ", "works");

	unsigned taken_port = 0;
	int taken = harness_listen_loopback(&taken_port, 64);
	snprintf(text, sizeof text, "[peer a]\naddress = 127.0.0.1:%u\n\n[forward one]\nlisten = 127.0.0.1:%u\n"
		 "peer = a\nservice = small\n[forward four]\nlisten = 127.0.0.1:%u\npeer = a\nservice = small\n",
		 a.port, one, taken_port);
	harness_write_file(path, text);
	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	char expect[256];
	snprintf(expect, sizeof expect, "forward=four: cannot listen on 127.0.0.1:%u: Address already in use "
		 "(errno %d)", taken_port, EADDRINUSE);
	ck_assert_msg(process_log_wait(&b, expect, 10), "no line: %s", expect);
	ck_assert(process_log_wait(&b, "reload refused: forward=four cannot listen", 10));
	int still = echo_begin(three, "three ");
	echo_end(still, "three ", "still listens: the reload changed nothing");
	close(taken);
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* Which target answered a new connection ('I'). */
static unsigned who_answers(unsigned port)
{
	int fd = harness_connect_loopback(port);
	char id[16];
	ck_assert_int_eq(write(fd, "I", 1), 1);
	/* ended both ways before the answer's EOF comes back: the target's connection no longer
	 * counts when the next one is balanced */
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	harness_read_to_end(fd, id, sizeof id, NULL);
	close(fd);
	return (unsigned)strtoul(id, NULL, 10);
}

/* balance: round-robin takes each target in turn; least-connections the one with fewer. */
START_TEST(test_balance)
{
	char dir[64], services[512];
	harness_tempdir(dir, sizeof dir);
	unsigned p1 = 0, p2 = 0;
	pid_t t1 = small_target_start(dir, &p1), t2 = small_target_start(dir, &p2);
	snprintf(services, sizeof services, "[service rr]\ntarget = 127.0.0.1:%u, 127.0.0.1:%u\nbalance = round-robin\n"
		 "[service lc]\ntarget = 127.0.0.1:%u, 127.0.0.1:%u\nbalance = least-connections\n"
		 "[service first]\ntarget = 127.0.0.1:%u, 127.0.0.1:%u\n", p1, p2, p1, p2, p1, p2);
	struct process a, b;
	brokers_start(&a, &b, dir, services, "[forward rr]\nlisten = 127.0.0.1:0\npeer = a\nservice = rr\n"
		      "[forward lc]\nlisten = 127.0.0.1:0\npeer = a\nservice = lc\n"
		      "[forward first]\nlisten = 127.0.0.1:0\npeer = a\nservice = first\n", false);
	unsigned rr = harness_forward_port(&b, "rr"), lc = harness_forward_port(&b, "lc"), first = harness_forward_port(&b, "first");
	unsigned seen[4];
	for (int i = 0; i < 4; i++)
		seen[i] = who_answers(rr);
	ck_assert_uint_ne(seen[0], seen[1]);
	ck_assert_uint_eq(seen[0], seen[2]);
	ck_assert_uint_eq(seen[1], seen[3]);
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(who_answers(first), p1);
	/* one connection held on whichever lc picks: the next ones go to the other */
	int held = ping_begin(lc, "held");
	unsigned other = who_answers(lc);
	ck_assert_uint_eq(who_answers(lc), other);
	ck_assert_uint_eq(who_answers(lc), other);
	ping_end(held, "done");
	harness_stop_child(t1);
	harness_stop_child(t2);
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}
END_TEST

/* Health checks: a target that stops answering goes down after `fall` checks and gets no new
 * streams; with every target down a stream is refused at once; a target back up after `rise`
 * checks takes streams again. */
START_TEST(test_health_checks)
{
	char dir[64], services[512], text[256];
	harness_tempdir(dir, sizeof dir);
	unsigned p1 = 0, p2 = 0;
	pid_t t1 = small_target_start(dir, &p1), t2 = small_target_start(dir, &p2);
	snprintf(services, sizeof services, "[service hc]\ntarget = 127.0.0.1:%u, 127.0.0.1:%u\n"
		 "balance = round-robin\nhealth-check = 0.2\nfall = 2\nrise = 2\nconnect-timeout = 1\n", p1, p2);
	struct process a, b;
	brokers_start(&a, &b, dir, services, "[forward hc]\nlisten = 127.0.0.1:0\npeer = a\nservice = hc\n", false);
	unsigned port = harness_forward_port(&b, "hc");
	unsigned first = who_answers(port), second = who_answers(port);
	ck_assert_uint_ne(first, second);

	harness_stop_child(t1);
	snprintf(text, sizeof text, "service=hc target=127.0.0.1:%u: down after 2 failed checks", p1);
	ck_assert_msg(process_log_wait(&a, text, 10), "no line: %s", text);
	char refused[128];
	snprintf(refused, sizeof refused, "service=hc target=127.0.0.1:%u: connect:", p1);
	int tried = process_log_count(&a, refused);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(who_answers(port), p2);
	ck_assert_int_eq(process_log_count(&a, refused), tried); /* the down target was not even tried */

	harness_stop_child(t2);
	snprintf(text, sizeof text, "service=hc target=127.0.0.1:%u: down after 2 failed checks", p2);
	ck_assert_msg(process_log_wait(&a, text, 10), "no line: %s", text);
	double start = harness_now();
	int fd = harness_connect_loopback(port);
	expect_reset_after_sending(fd, "I");
	ck_assert_msg(harness_now() - start < 2, "the refusal took %.1f s", harness_now() - start);
	close(fd);
	ck_assert(process_log_wait(&a, "service hc: every target is down (health checks): stream reset with "
				   "ERROR 502", 10));

	char socket_a[300], out[8192];
	snprintf(socket_a, sizeof socket_a, "%s/control.sock", a.dir);
	const char *targets[] = { "-s", socket_a, "--json", "targets", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", targets, out, sizeof out), 0);
	snprintf(text, sizeof text, "\"target\": \"127.0.0.1:%u\", \"health\": \"down\"", p2);
	ck_assert_msg(strstr(out, text), "%s", out);

	t1 = small_target_start(dir, &p1); /* back on its port */
	snprintf(text, sizeof text, "service=hc target=127.0.0.1:%u: up (2 checks passed)", p1);
	ck_assert_msg(process_log_wait(&a, text, 10), "no line: %s", text);
	ck_assert_uint_eq(who_answers(port), p1);
	harness_stop_child(t1);
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}
END_TEST

/* A reload removes the peer a forwarded connection runs to (and the forward): at drain-timeout
 * the peer's pool is freed with the stream still open. The relay must end first (its client
 * reset), not be left holding a freed stream; the broker runs on. */
START_TEST(test_peer_removed_under_a_connection)
{
	char dir[64], path[300];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, "[broker]\ndrain-timeout = 0.5\n[forward small]\n"
		      "listen = 127.0.0.1:0\npeer = a\nservice = small\n");
	unsigned port = harness_forward_port(&b, "small");
	int held = ping_begin(port, "held across the reload");
	snprintf(path, sizeof path, "%s/b.conf", dir);
	harness_write_file(path, "[broker]\ndrain-timeout = 0.5\n");
	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	ck_assert(process_log_wait(&b, "peer=a removed: drain timeout", 10));
	ck_assert(process_log_wait(&b, "forward=small removed", 10));
	char byte;
	errno = 0;
	ssize_t n = read(held, &byte, 1);
	ck_assert_msg(n < 0 && errno == ECONNRESET, "the client saw %zd (%s), not a reset", n, strerror(errno));
	close(held);
	/* the broker runs on, and answers */
	char socket_b[300], out[4096];
	snprintf(socket_b, sizeof socket_b, "%s/control.sock", b.dir);
	const char *status[] = { "-s", socket_b, "status", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", status, out, sizeof out), 0);
	ck_assert(process_alive(&b));
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* wormhole-ctl forward add and del change forwards at run time; a reload keeps the added one. */
START_TEST(test_runtime_forwards)
{
	char dir[64], socket_b[300], out[4096];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	struct process a, b;
	pid_t target = small_scene_start(dir, &target_port, &a, &b, "");
	snprintf(socket_b, sizeof socket_b, "%s/control.sock", b.dir);
	const char *add[] = { "-s", socket_b, "forward", "add", "web", "127.0.0.1:0", "a", "small", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", add, out, sizeof out), 0);
	const char *at = strstr(out, "listening on 127.0.0.1:");
	ck_assert_msg(at, "%s", out);
	unsigned port = (unsigned)strtoul(at + strlen("listening on 127.0.0.1:"), NULL, 10);
	int fd = ping_begin(port, "added at run time");
	ping_end(fd, "bye");

	const char *twice[] = { "-s", socket_b, "forward", "add", "web", "127.0.0.1:0", "a", "small", NULL };
	ck_assert_int_ne(process_run("ctl/wormhole-ctl", twice, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "a forward of that name exists"), "%s", out);
	const char *nopeer[] = { "-s", socket_b, "forward", "add", "x", "127.0.0.1:0", "zz", "small", NULL };
	ck_assert_int_ne(process_run("ctl/wormhole-ctl", nopeer, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "PEER is not a configured peer"), "%s", out);

	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	ck_assert(process_log_wait(&b, "reloaded", 10));
	fd = ping_begin(port, "after the reload");
	ping_end(fd, "bye");
	const char *list[] = { "-s", socket_b, "--json", "forwards", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", list, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "\"forward\": \"web\"") && strstr(out, "\"origin\": \"run time\""), "%s", out);

	const char *del[] = { "-s", socket_b, "forward", "del", "web", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", del, out, sizeof out), 0);
	ck_assert_msg(harness_connect_refused(port), "the deleted forward still listens");
	small_scene_stop(target, &a, &b, dir);
}
END_TEST

/* ---- peer = local ----------------------------------------------------------------------------- */

/* The client's answer to `request` sent through a forward on `port`, half-closed first. */
static void forward_exchange(unsigned port, const char *request, char *answer, size_t length)
{
	int fd = harness_connect_loopback(port);
	ck_assert_int_eq(write(fd, request, strlen(request)), (ssize_t)strlen(request));
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	harness_read_to_end(fd, answer, length, NULL);
	close(fd);
}

/* peer = local: a forward's connections reach this broker's own services, a target and a local
 * app listening, under each service's rule for local opens; an app's open of "local" reaches a
 * service with a target too. One broker, no peer. */
START_TEST(test_peer_local)
{
	char dir[64], path[300], config[1024], answer[64];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(config, sizeof config, "[service small]\ntarget = 127.0.0.1:%u\n\n[service closed]\nlocal = no\n\n"
		 "[forward small]\nlisten = 127.0.0.1:0\npeer = local\nservice = small\n\n"
		 "[forward app]\nlisten = 127.0.0.1:0\npeer = local\nservice = appsvc\n\n"
		 "[forward closed]\nlisten = 127.0.0.1:0\npeer = local\nservice = closed\n", target_port);
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, config);
	const char *args[] = { "--config", path, NULL };
	struct process a;
	ck_assert(broker_spawn(&a, args));

	/* to the target */
	forward_exchange(harness_forward_port(&a, "small"), "Ehello", answer, sizeof answer);
	ck_assert_str_eq(answer, "hello");

	/* to an app listening on the service */
	wh_client *app = app_attach(&a);
	ck_assert_int_eq(wh_listen(app, "appsvc"), WH_OK);
	int fd = harness_connect_loopback(harness_forward_port(&a, "app"));
	ck_assert_int_eq(write(fd, "ping", 4), 4);
	wh_stream *s;
	ck_assert_int_eq(wh_accept(app, 10000, &s), WH_OK);
	ck_assert_str_eq(wh_stream_service(s), "appsvc");
	char got[8] = "";
	app_read_exactly(s, got, 4);
	ck_assert_str_eq(got, "ping");
	ck_assert_int_eq(wh_write(s, "pong", 4), 4);
	ck_assert_int_eq(wh_shutdown(s), WH_OK);
	char reply[8];
	int error;
	harness_read_to_end(fd, reply, sizeof reply, &error);
	ck_assert_int_eq(error, 0);
	ck_assert_str_eq(reply, "pong");
	close(fd);
	wh_close(s);

	/* local = no: the client is reset and the log says why */
	fd = harness_connect_loopback(harness_forward_port(&a, "closed"));
	expect_reset_after_sending(fd, "x");
	close(fd);
	ck_assert(process_log_wait(&a, "service=closed refused", 10));

	/* wormhole-ctl forward add NAME LISTEN local SERVICE, at run time */
	char control[320], out[4096];
	snprintf(control, sizeof control, "%s/control.sock", a.dir);
	const char *add[] = { "-s", control, "forward", "add", "later", "127.0.0.1:0", "local", "small", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", add, out, sizeof out), 0);
	const char *at = strstr(out, "listening on 127.0.0.1:");
	ck_assert_msg(at, "%s", out);
	forward_exchange((unsigned)strtoul(at + strlen("listening on 127.0.0.1:"), NULL, 10), "Eagain", answer,
			 sizeof answer);
	ck_assert_str_eq(answer, "again");

	/* an app's open of "local" for a service with a target reaches the target */
	ck_assert_int_eq(wh_open(app, WH_PEER_LOCAL, "small", 5000, &s), WH_OK);
	ck_assert_int_eq(wh_write(s, "Ehi there", 9), 9);
	ck_assert_int_eq(wh_shutdown(s), WH_OK);
	char echoed[16] = "";
	app_read_exactly(s, echoed, 8);
	ck_assert_str_eq(echoed, "hi there");
	wh_close(s);
	wh_client_detach(app);
	harness_stop_child(target);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* A drain (SIGTERM) waits for a peer = local forward's connection as for a peer's: it goes on
 * carrying bytes, and the broker exits once it ends. */
START_TEST(test_peer_local_drain)
{
	char dir[64], path[300], config[512];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(config, sizeof config, "[broker]\ndrain-timeout = 30\n\n[service small]\ntarget = 127.0.0.1:%u\n\n"
		 "[forward small]\nlisten = 127.0.0.1:0\npeer = local\nservice = small\n", target_port);
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, config);
	const char *args[] = { "--config", path, NULL };
	struct process a;
	ck_assert(broker_spawn(&a, args));
	int fd = harness_connect_loopback(harness_forward_port(&a, "small"));
	char got[4] = "";
	ck_assert_int_eq(write(fd, "Pab", 3), 3);
	ck_assert_int_eq(read(fd, got, 2), 2);
	ck_assert_str_eq(got, "ab");
	ck_assert_int_eq(kill(a.pid, SIGTERM), 0);
	ck_assert(process_log_wait(&a, "draining", 10));
	usleep(300000); /* a drain that does not wait would have ended by now (it looks every 0.1 s) */
	ck_assert_int_eq(write(fd, "cd", 2), 2);
	ck_assert_int_eq(read(fd, got, 2), 2);
	ck_assert_str_eq(got, "cd");
	close(fd);
	a.keep_log = true; /* read after it exits */
	ck_assert_int_eq(process_wait(&a, 20), 0);
	ck_assert(process_log_has(&a, "drained: every stream finished"));
	harness_stop_child(target);
	process_stop(&a, SIGKILL);
	harness_cleanup_dir(dir);
}
END_TEST

/* Clients that connect and close at once (a port scan, a health checker) through a peer =
 * local forward: each is a stream ended without data. Over a peer's connection our side paces
 * such streams below the peer's reset-rate, which refuses the next opens (WH_ELIMIT): right
 * for a far broker that would close the link, wrong for the in-process link, whose far end is
 * this broker. 1500 of them at once must leave the next client served. */
START_TEST(test_peer_local_churn)
{
	char dir[64], path[300], config[512], answer[64];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(config, sizeof config, "[service small]\ntarget = 127.0.0.1:%u\n\n"
		 "[forward small]\nlisten = 127.0.0.1:0\npeer = local\nservice = small\nmax-connections = 4000\n",
		 target_port);
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, config);
	const char *args[] = { "--config", path, NULL };
	struct process a;
	ck_assert(broker_spawn(&a, args));
	unsigned port = harness_forward_port(&a, "small");
	forward_exchange(port, "Efirst", answer, sizeof answer);
	ck_assert_str_eq(answer, "first");
	for (int i = 0; i < 1500; i++)
		close(harness_connect_loopback(port));
	forward_exchange(port, "Ehello", answer, sizeof answer);
	ck_assert_msg(strcmp(answer, "hello") == 0, "the client after the churn got \"%s\"", answer);
	ck_assert(!process_log_has(&a, "faster than the peer's reset-rate"));
	harness_stop_child(target);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* A peer = local forward's streams are seen as any peer's: `wormhole-ctl conns` lists the
 * in-process link (peer local, dialled), `streams` lists a forwarded connection's stream, and
 * `close-stream` ends it (the client is reset). They were in neither view. */
START_TEST(test_peer_local_seen)
{
	char dir[64], path[300], config[512], control[320], out[8192];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(config, sizeof config, "[service small]\ntarget = 127.0.0.1:%u\n\n"
		 "[forward small]\nlisten = 127.0.0.1:0\npeer = local\nservice = small\n", target_port);
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, config);
	const char *args[] = { "--config", path, NULL };
	struct process a;
	ck_assert(broker_spawn(&a, args));
	int fd = harness_connect_loopback(harness_forward_port(&a, "small"));
	char got[4] = "";
	ck_assert_int_eq(write(fd, "Pab", 3), 3);
	ck_assert_int_eq(read(fd, got, 2), 2);
	snprintf(control, sizeof control, "%s/control.sock", a.dir);
	const char *conns[] = { "-s", control, "--json", "conns", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", conns, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "\"peer\": \"local\"") && strstr(out, "\"role\": \"dialled\""), "%s", out);
	const char *streams[] = { "-s", control, "--json", "streams", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", streams, out, sizeof out), 0);
	ck_assert_msg(strstr(out, "\"peer\": \"local\"") && strstr(out, "\"service\": \"small\""), "%s", out);
	const char *at = strstr(out, "\"conn\": ");
	const char *id = strstr(out, "\"stream\": ");
	ck_assert(at && id);
	char which[32];
	snprintf(which, sizeof which, "%lu/%lu", strtoul(at + 8, NULL, 10), strtoul(id + 10, NULL, 10));
	const char *close_it[] = { "-s", control, "close-stream", which, NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", close_it, out, sizeof out), 0);
	errno = 0;
	ck_assert_int_le(read(fd, got, 1), 0); /* the client is reset */
	close(fd);
	harness_stop_child(target);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* max-streams bounds the streams on one peer connection; every peer = local forward shares
 * the one in-process link, so it capped them all together (max-streams = 4: the fifth client
 * of any local forward was reset, "a configured limit was reached"), below max-connections.
 * The link keeps no such bound: 8 clients with max-streams = 4 are all carried. */
START_TEST(test_peer_local_max_streams)
{
	char dir[64], path[300], config[512];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port = 0;
	pid_t target = small_target_start(dir, &target_port);
	snprintf(config, sizeof config, "[broker]\nmax-streams = 4\n\n[service small]\ntarget = 127.0.0.1:%u\n\n"
		 "[forward small]\nlisten = 127.0.0.1:0\npeer = local\nservice = small\n", target_port);
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, config);
	const char *args[] = { "--config", path, NULL };
	struct process a;
	ck_assert(broker_spawn(&a, args));
	unsigned port = harness_forward_port(&a, "small");
	int fds[8];
	for (int i = 0; i < 8; i++) {
		fds[i] = harness_connect_loopback(port);
		char got[4] = "";
		ck_assert_int_eq(write(fds[i], "Pab", 3), 3);
		ck_assert_msg(read(fds[i], got, 2) == 2 && strcmp(got, "ab") == 0, "client %d: %s", i + 1,
			      strerror(errno));
	}
	for (int i = 0; i < 8; i++)
		close(fds[i]);
	harness_stop_child(target);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* ---- one address's churn against the others: client-reset-rate ------------------------------ */

#define CHURN_CLIENTS 3000 /* connect-and-close from 127.0.0.2, over three forwards */
#define GOOD_CLIENTS 300   /* from 127.0.0.1 beside them, bytes checked */
#define GOOD_BYTES 2048

static void good_bytes(unsigned seed, unsigned char out[GOOD_BYTES])
{
	for (size_t i = 0; i < GOOD_BYTES; i++)
		out[i] = (unsigned char)(seed * 131u + i * 7u);
}

/* One good client's exchange: the rest of its bytes sent (the first half went at connect),
 * the same bytes back, then EOF. */
static bool good_exchange(int fd, unsigned seed, char *why, size_t length)
{
	unsigned char out[GOOD_BYTES], in[GOOD_BYTES];
	good_bytes(seed, out);
	if (write(fd, out + GOOD_BYTES / 2, GOOD_BYTES / 2) != GOOD_BYTES / 2 || shutdown(fd, SHUT_WR) < 0) {
		snprintf(why, length, "write: %s", strerror(errno));
		return false;
	}
	size_t have = 0;
	ssize_t n = 0;
	while (have < sizeof in && (n = read(fd, in + have, sizeof in - have)) > 0)
		have += (size_t)n;
	if (have < sizeof in) {
		snprintf(why, length, "%zu of %zu bytes back, then %s", have, sizeof in,
			 n == 0 ? "EOF" : strerror(errno));
		return false;
	}
	if (memcmp(in, out, sizeof in) != 0) {
		snprintf(why, length, "the bytes differ");
		return false;
	}
	return true;
}

/* A good client: connected from 127.0.0.1, the first half of its bytes sent (-1: refused). */
static int good_begin(unsigned port, unsigned seed)
{
	unsigned char out[GOOD_BYTES];
	good_bytes(seed, out);
	int fd = harness_connect_loopback_from("127.0.0.1", port);
	if (fd >= 0 && write(fd, out, GOOD_BYTES / 2) != GOOD_BYTES / 2) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Three forwards of B to A's echo. 3,000 clients from 127.0.0.2 connect to them and close at
 * once (a port scan, connect-and-close churn; the second run: each sends a byte, and resets
 * once it came back); beside them 300 clients from 127.0.0.1 each
 * echo 2 KiB through one of them. B's streams for the churn ended early, as A's reset-rate
 * counts them: before, A's count (and B's own hold-back) refused every open on the shared
 * connection and most good clients were reset; now B refuses the churning address beyond
 * client-reset-rate and every good client is served. */
START_TEST(test_one_address_churn_spares_the_others)
{
	char dir[64];
	harness_tempdir(dir, sizeof dir);
	struct process a, b;
	brokers_start(&a, &b, dir, "# the built-in echo only\n",
		      "pool-max = 1\n" /* one connection to A: every stream shares its reset-rate */
		      "[forward c1]\nlisten = 127.0.0.1:0\npeer = a\nservice = echo\nmax-connections = 4096\n"
		      "[forward c2]\nlisten = 127.0.0.1:0\npeer = a\nservice = echo\nmax-connections = 4096\n"
		      "[forward good]\nlisten = 127.0.0.1:0\npeer = a\nservice = echo\nmax-connections = 4096\n", false);
	unsigned ports[3] = { harness_forward_port(&b, "c1"), harness_forward_port(&b, "c2"), harness_forward_port(&b, "good") };
	char why[160];
	int warm = good_begin(ports[2], 0);
	ck_assert_int_ge(warm, 0);
	ck_assert_msg(good_exchange(warm, 0, why, sizeof why), "warm-up: %s", why);
	close(warm);
	/* the good clients come one in ten among the churn's, and finish once it closed */
	static int churn[CHURN_CLIENTS], good[GOOD_CLIENTS];
	unsigned connected = 0;
	for (unsigned i = 0; i < CHURN_CLIENTS; i++) {
		if (i % (CHURN_CLIENTS / GOOD_CLIENTS) == 0)
			good[i / (CHURN_CLIENTS / GOOD_CLIENTS)] = good_begin(ports[i % 3], i + 1);
		connected += (churn[i] = harness_connect_loopback_from("127.0.0.2", ports[i % 3])) >= 0;
		if (_i == 1 && churn[i] >= 0)
			(void)!write(churn[i], "x", 1);
	}
	/* the second run: each sent a byte; once its echo is back (the stream carried it), all
	 * reset at once, within a second of their start (the peer's reset-rate counts those too) */
	double churned = harness_now();
	for (unsigned i = 0; _i == 1 && i < CHURN_CLIENTS; i++) {
		char byte;
		struct timeval bound = { .tv_usec = 200000 };
		if (churn[i] >= 0 && harness_now() - churned < 0.5) {
			setsockopt(churn[i], SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
			(void)!read(churn[i], &byte, 1);
		}
	}
	for (unsigned i = 0; i < CHURN_CLIENTS; i++) {
		if (churn[i] < 0)
			continue;
		if (_i == 1)
			harness_reset_close(churn[i]);
		else
			close(churn[i]);
	}
	unsigned served = 0;
	char first[200] = "";
	for (unsigned i = 0; i < GOOD_CLIENTS; i++) {
		unsigned seed = i * (CHURN_CLIENTS / GOOD_CLIENTS) + 1;
		bool ok = good[i] >= 0 && good_exchange(good[i], seed, why, sizeof why);
		served += ok;
		if (!ok && !first[0])
			snprintf(first, sizeof first, "client %u: %s", i, good[i] < 0 ? "connect refused" : why);
		if (good[i] >= 0)
			close(good[i]);
	}
	fprintf(stderr, "churn: %u of %u churning clients connected; %u of %u good clients served%s%s\n",
		connected, CHURN_CLIENTS, served, GOOD_CLIENTS, first[0] ? "; first failure: " : "", first);
	if (served != GOOD_CLIENTS) {
		process_dump_log(&b);
		ck_abort_msg("%u of %u good clients served (%s)", served, GOOD_CLIENTS, first);
	}
	if (!process_log_wait(&b, ": client 127.0.0.2 ends streams early faster than", 10)) {
		process_dump_log(&a);
		process_dump_log(&b);
		ck_abort_msg("B did not log the churning address's refusal");
	}
	/* counted per forward in wormhole-ctl forwards and the metrics */
	char socket_b[300], out[8192];
	static char all[1 << 18];
	snprintf(socket_b, sizeof socket_b, "%s/control.sock", b.dir);
	const char *forwards[] = { "-s", socket_b, "--json", "forwards", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", forwards, out, sizeof out), 0);
	long refused = 0;
	for (const char *at = out; (at = strstr(at, "\"refused_resets\": ")); at++)
		refused += strtol(at + strlen("\"refused_resets\": "), NULL, 10);
	fprintf(stderr, "churn: %ld churning connections refused (client-reset-rate)\n", refused);
	ck_assert_msg(refused > 0 && refused <= CHURN_CLIENTS, "%s", out);
	const char *metrics[] = { "-s", socket_b, "metrics", NULL };
	ck_assert_int_eq(process_run("ctl/wormhole-ctl", metrics, all, sizeof all), 0);
	ck_assert_msg(strstr(all, "wormhole_forwards_refused_resets_total{forward=\"c1\"}"), "%s", all);
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}
END_TEST

/* A client that gets no stream for a limit is logged with the peer and the limits it may be:
 * before, "no stream: limit reached". Here B's one connection to A takes two streams. */
START_TEST(test_limit_refusal_names_the_peer)
{
	char dir[64], why[160];
	harness_tempdir(dir, sizeof dir);
	struct process a, b;
	brokers_start(&a, &b, dir, "# the built-in echo only\n",
		      "pool-max = 1\nmax-streams = 2\n"
		      "[forward e]\nlisten = 127.0.0.1:0\npeer = a\nservice = echo\n", false);
	unsigned port = harness_forward_port(&b, "e");
	int held[2];
	for (unsigned i = 0; i < 2; i++) {
		held[i] = good_begin(port, i + 1);
		ck_assert_int_ge(held[i], 0);
	}
	int third = harness_connect_loopback_from("127.0.0.1", port);
	ck_assert_int_ge(third, 0);
	expect_reset_after_sending(third, "x");
	close(third);
	if (!process_log_wait(&b, "no stream: peer a takes no new streams from this broker for now", 10)) {
		process_dump_log(&b);
		ck_abort_msg("B's log does not name the peer and the limit");
	}
	for (unsigned i = 0; i < 2; i++) {
		ck_assert_msg(good_exchange(held[i], i + 1, why, sizeof why), "held %u: %s", i, why);
		close(held[i]);
	}
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}
END_TEST
int main(void)
{
	/* a client's write to a connection the forward reset reports EPIPE, not a signal */
	signal(SIGPIPE, SIG_IGN);
	Suite *suite = suite_create("forward_peers");
	TCase *tc = tcase_create("forward");
	tcase_set_timeout(tc, 600);
	TCase *local = tcase_create("local");
	tcase_set_timeout(local, 60);
	tcase_add_test(local, test_peer_local);
	tcase_add_test(local, test_peer_local_drain);
	tcase_add_test(local, test_peer_local_churn);
	tcase_add_test(local, test_peer_local_seen);
	tcase_add_test(local, test_peer_local_max_streams);
	suite_add_tcase(suite, local);
	TCase *churn = tcase_create("churn");
	tcase_set_timeout(churn, 120);
	tcase_add_loop_test(churn, test_one_address_churn_spares_the_others, 0, 2);
	tcase_add_test(churn, test_limit_refusal_names_the_peer);
	suite_add_tcase(suite, churn);
	tcase_add_test(tc, test_reload_forwards);
	tcase_add_test(tc, test_balance);
	tcase_add_test(tc, test_health_checks);
	tcase_add_test(tc, test_peer_removed_under_a_connection);
	tcase_add_test(tc, test_runtime_forwards);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
