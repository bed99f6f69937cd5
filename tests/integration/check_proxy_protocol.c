/* proxy-protocol: the exposing broker tells its target who the forward's TCP client was.
 * Broker A exposes a service whose target is a real PROXY protocol consumer (haproxy from
 * Debian, `accept-proxy`), broker B forwards a port to it, and curl (from a port the test
 * chose) asks haproxy who it is: the answer names curl's address and port, for v1 and v2,
 * and haproxy refuses a target connection without the header. A small target of the test's
 * own decodes the header with the codec (shared/proxy_header.c) to check the v2 identity TLV
 * over TLS and what a stream without a client (an app's) gets; a raw peer sends A a
 * malformed address block and gets ERROR 400 on that stream alone. */
#include "config.h"

#include <arpa/inet.h>
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

#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "forward_scene.h"
#include "frame.h"
#include "harness.h"
#include "proxy_header.h"

#define HAPROXY "/usr/sbin/haproxy"

/* ---- helpers ------------------------------------------------------------------------------ */

/* Connects to loopback `port` from a port of its own, told in *local_port. */
static int connect_from(unsigned port, unsigned *local_port)
{
	int fd = harness_connect_loopback_from("127.0.0.1", port);
	ck_assert_msg(fd >= 0, "connect to %u: %s", port, strerror(errno));
	struct sockaddr_in a;
	socklen_t length = sizeof a;
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &length), 0);
	*local_port = ntohs(a.sin_port);
	return fd;
}

static bool port_answers(void *arg)
{
	unsigned port = *(unsigned *)arg;
	int fd = harness_connect_loopback_from(NULL, port);
	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

/* haproxy in the foreground: one frontend that wants a PROXY header and answers every HTTP
 * request with the client address it learnt from it. */
static pid_t haproxy_start(const char *dir, unsigned *port)
{
	ck_assert_msg(access(HAPROXY, X_OK) == 0, HAPROXY " is not installed (Debian package haproxy)");
	*port = harness_closed_port();
	char path[300], log[300], text[1024];
	snprintf(path, sizeof path, "%s/haproxy.cfg", dir);
	snprintf(text, sizeof text,
		 "global\n  nbthread 1\n"
		 "defaults\n  mode http\n  timeout connect 5s\n  timeout client 20s\n  timeout server 20s\n"
		 "frontend who\n  bind 127.0.0.1:%u accept-proxy\n"
		 "  http-request return status 200 content-type text/plain lf-string \"%%[src]:%%[src_port]\"\n",
		 *port);
	harness_write_file(path, text);
	snprintf(log, sizeof log, "%s/haproxy.log", dir);
	const char *argv[] = { HAPROXY, "-db", "-f", path, NULL };
	pid_t pid = harness_spawn_program(argv, log, NULL);
	ck_assert_msg(poll_until(port_answers, port, 20), "haproxy did not listen on %u", *port);
	return pid;
}

/* ---- the test's own target: decodes the header with the codec, answers what it says -------- */

/* "v2 family=4 src=127.0.0.1:5000 dst=127.0.0.1:18000 peer=b", or "bad" when no header came. */
static void describe(const struct proxy_header *h, char *out, size_t cap)
{
	char src[INET6_ADDRSTRLEN] = "-", dst[INET6_ADDRSTRLEN] = "-", peer[300] = "-";
	int af = h->addresses.family == PROXY_FAMILY_TCP6 ? AF_INET6 : AF_INET;
	if (h->addresses.family != PROXY_FAMILY_UNKNOWN) {
		inet_ntop(af, h->addresses.src_addr, src, sizeof src);
		inet_ntop(af, h->addresses.dst_addr, dst, sizeof dst);
	}
	struct proxy_tlv tlv;
	if (h->version == 2 && proxy_tlv_find(h, PROXY_TLV_WORMHOLE_PEER, &tlv))
		snprintf(peer, sizeof peer, "%.*s", (int)tlv.length, (const char *)tlv.value);
	snprintf(out, cap, "v%u family=%d src=%s:%u dst=%s:%u peer=%s local=%d", h->version,
		 (int)h->addresses.family, src, h->addresses.src_port, dst, h->addresses.dst_port, peer,
		 h->local);
}

static void decoder_one(int fd)
{
	uint8_t in[1024];
	size_t have = 0;
	char answer[512] = "bad: no header";
	struct proxy_header h;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (have < sizeof in && poll(&p, 1, 10000) == 1) {
		ssize_t n = read(fd, in + have, sizeof in - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		int r = proxy_header_decode(in, have, &h);
		if (r < 0)
			snprintf(answer, sizeof answer, "bad: not a header");
		if (r > 0)
			describe(&h, answer, sizeof answer);
		if (r != 0)
			break;
	}
	strcat(answer, "\n");
	if (write(fd, answer, strlen(answer)) < 0)
		_exit(1);
}

static void decoder_serve(int fd, void *arg)
{
	(void)arg;
	decoder_one(fd);
}

/* The decoding target: one connection after the other. */
static pid_t decoder_start(unsigned *port)
{
	return harness_target_start(port, decoder_serve, NULL, false);
}

/* ---- two brokers ---------------------------------------------------------------------------- */

static const char *const FORWARD_WEB = "[forward web]\nlisten = 127.0.0.1:0\npeer = a\nservice = web\n";

/* curl through B's forward to haproxy behind A, from a port of the test's choosing: curl's
 * exit status, and haproxy's answer in out. */
static int curl_from_once(const char *dir, unsigned forward, unsigned *local_port, char *out,
			  size_t cap)
{
	char url[128], port_text[16], log[300], command[1024];
	*local_port = harness_closed_port();
	snprintf(url, sizeof url, "http://127.0.0.1:%u/", forward);
	snprintf(port_text, sizeof port_text, "%u", *local_port);
	snprintf(log, sizeof log, "%s/curl.out", dir);
	snprintf(command, sizeof command, "curl -sS --max-time 20 --local-port %s %s > %s 2>&1", port_text,
		 url, log);
	const char *argv[] = { "sh", "-c", command, NULL };
	char run_log[300];
	snprintf(run_log, sizeof run_log, "%s/curl.log", dir);
	int status = harness_wait_child(harness_spawn_program(argv, run_log, NULL), 30);
	out[0] = '\0';
	FILE *f = fopen(log, "r");
	if (f) {
		size_t n = fread(out, 1, cap - 1, f);
		out[n] = '\0';
		fclose(f);
	}
	return status;
}

/* The same, with another port when the one chosen was taken before curl could bind it (the
 * suites run in parallel and every connection takes an ephemeral port: curl's exit 45, "bind
 * failed", seen once in CI). */
#define CURL_BIND_FAILED 45
static int curl_from(const char *dir, unsigned forward, unsigned *local_port, char *out, size_t cap)
{
	int status = CURL_BIND_FAILED;
	for (int attempt = 0; attempt < 5 && status == CURL_BIND_FAILED; attempt++)
		status = curl_from_once(dir, forward, local_port, out, cap);
	return status;
}

/* haproxy behind A with `proxy-protocol` (NULL: the key left out), curl through B. */
static void haproxy_case(const char *proxy_protocol, bool expect_answer)
{
	char dir[64], services[512], out[1024], want[64];
	harness_tempdir(dir, sizeof dir);
	unsigned haproxy_port;
	pid_t haproxy = haproxy_start(dir, &haproxy_port);
	snprintf(services, sizeof services, "[service web]\ntarget = 127.0.0.1:%u\n%s%s%s", haproxy_port,
		 proxy_protocol ? "proxy-protocol = " : "", proxy_protocol ? proxy_protocol : "",
		 proxy_protocol ? "\n" : "");
	struct process a, b;
	brokers_start(&a, &b, dir, services, FORWARD_WEB, false);
	unsigned forward = harness_forward_port(&b, "web"), local_port;
	int status = curl_from(dir, forward, &local_port, out, sizeof out);
	snprintf(want, sizeof want, "127.0.0.1:%u", local_port);
	if (expect_answer) {
		ck_assert_msg(status == 0 && strcmp(out, want) == 0, "proxy-protocol %s: curl %d said \"%s\", "
			      "want \"%s\"", proxy_protocol, status, out, want);
		/* a stream without a TCP client (an app of B's): haproxy takes the header (v1
		 * UNKNOWN, v2 LOCAL) and answers with A's own end of the connection */
		wh_client *app = app_attach(&b);
		wh_stream *s;
		ck_assert_int_eq(wh_open(app, "a", "web", 5000, &s), WH_OK);
		const char *request = "GET / HTTP/1.0\r\n\r\n";
		ck_assert_int_eq(wh_write(s, request, strlen(request)), (long)strlen(request));
		long n = 0, r;
		while (n + 1 < (long)sizeof out && (r = wh_read(s, out + n, sizeof out - 1 - (size_t)n)) > 0)
			n += r;
		out[n] = '\0';
		ck_assert_msg(strstr(out, " 200 ") && strstr(out, "\r\n\r\n127.0.0.1:"), "%s", out);
		wh_close(s);
		wh_client_detach(app);
	} else { /* haproxy closes a connection that does not start with a header */
		ck_assert_msg(status != 0 && !strstr(out, want), "without proxy-protocol: curl %d said \"%s\"",
			      status, out);
	}
	harness_stop_child(haproxy);
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}

/* ---- tests ---------------------------------------------------------------------------------- */

START_TEST(test_haproxy_v1)
{
	haproxy_case("v1", true);
}
END_TEST

START_TEST(test_haproxy_v2)
{
	haproxy_case("v2", true);
}
END_TEST

/* Without the header haproxy (accept-proxy) refuses the connection: the test above needs the
 * feature, not a lenient consumer. */
START_TEST(test_haproxy_refuses_without_the_header)
{
	haproxy_case(NULL, false);
}
END_TEST

/* Over TLS between the brokers: the v2 header names the client and, in TLV 0xE0, the identity
 * A verified for B's certificate; a stream an app of B opens (no TCP client) gets a LOCAL
 * header (family UNSPEC) with the identity still. v1 for an app's stream: PROXY UNKNOWN. */
START_TEST(test_v2_identity_over_tls)
{
	char dir[64], services[768], answer[512], want[512];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port, target1_port;
	pid_t target = decoder_start(&target_port), target1 = decoder_start(&target1_port);
	snprintf(services, sizeof services,
		 "[service who]\ntarget = 127.0.0.1:%u\nproxy-protocol = v2\npeers = b\n"
		 "[service who1]\ntarget = 127.0.0.1:%u\nproxy-protocol = v1\npeers = b\n"
		 "[service theirs]\ntarget = 127.0.0.1:%u\nproxy-protocol = v2\npeers = c\n",
		 target_port, target1_port, target_port);
	struct process a, b;
	brokers_start(&a, &b, dir, services,
		      "[forward who]\nlisten = 127.0.0.1:0\npeer = a\nservice = who\n"
		      "[forward theirs]\nlisten = 127.0.0.1:0\npeer = a\nservice = theirs\n", true);
	unsigned forward = harness_forward_port(&b, "who"), local_port;
	int fd = connect_from(forward, &local_port);
	harness_read_to_end(fd, answer, sizeof answer, NULL);
	close(fd);
	snprintf(want, sizeof want, "v2 family=4 src=127.0.0.1:%u dst=127.0.0.1:%u peer=b local=0\n",
		 local_port, forward);
	ck_assert_msg(strcmp(answer, want) == 0, "the target read \"%s\", want \"%s\"", answer, want);

	/* a peer the service's rules refuse puts no address before its target: the stream is
	 * refused (ERROR 403) before anything is dialled, and the client is reset */
	fd = connect_from(harness_forward_port(&b, "theirs"), &local_port);
	ck_assert_uint_eq(harness_read_to_end(fd, answer, sizeof answer, NULL), 0);
	close(fd);
	ck_assert(process_log_wait(&a, "service=theirs refused: this peer is not among the service's peers", 10));

	wh_client *app = app_attach(&b);
	wh_stream *s;
	ck_assert_int_eq(wh_open(app, "a", "who", 5000, &s), WH_OK);
	long n = 0, r;
	while (n + 1 < (long)sizeof answer && (r = wh_read(s, answer + n, sizeof answer - 1 - (size_t)n)) > 0)
		n += r;
	answer[n] = '\0';
	ck_assert_str_eq(answer, "v2 family=0 src=-:0 dst=-:0 peer=b local=1\n");
	wh_close(s);
	ck_assert_int_eq(wh_open(app, "a", "who1", 5000, &s), WH_OK);
	n = 0;
	while (n + 1 < (long)sizeof answer && (r = wh_read(s, answer + n, sizeof answer - 1 - (size_t)n)) > 0)
		n += r;
	answer[n] = '\0';
	ck_assert_str_eq(answer, "v1 family=0 src=-:0 dst=-:0 peer=- local=0\n");
	wh_close(s);
	wh_client_detach(app);
	harness_stop_child(target);
	harness_stop_child(target1);
	brokers_stop(&a, &b);
	harness_cleanup_dir(dir);
}
END_TEST

/* Reads one frame (bounded): its header and up to cap payload bytes. */
static bool read_frame(int fd, struct frame_header *h, uint8_t *payload, size_t cap)
{
	uint8_t head[FRAME_HEADER_SIZE];
	size_t have = 0;
	while (have < sizeof head) {
		ssize_t n = read(fd, head + have, sizeof head - have);
		if (n <= 0)
			return false;
		have += (size_t)n;
	}
	frame_header_unpack(head, h);
	if (h->length > cap)
		return false;
	for (have = 0; have < h->length;) {
		ssize_t n = read(fd, payload + have, h->length - have);
		if (n <= 0)
			return false;
		have += (size_t)n;
	}
	return true;
}

/* A peer that puts a malformed or oversized address block in a HANDSHAKE gets ERROR 400 on
 * that stream alone (a log line says why), and its connection carries on. */
START_TEST(test_bad_address_block_is_error_400)
{
	char dir[64], services[256];
	harness_tempdir(dir, sizeof dir);
	unsigned target_port;
	pid_t target = decoder_start(&target_port);
	snprintf(services, sizeof services, "[service who]\ntarget = 127.0.0.1:%u\nproxy-protocol = v2\n",
		 target_port);
	char path[300];
	snprintf(path, sizeof path, "%s/a.conf", dir);
	harness_write_file(path, services);
	struct process a;
	const char *a_args[] = { "--config", path, NULL };
	ck_assert(broker_spawn(&a, a_args));
	unsigned local_port;
	int fd = connect_from(a.port, &local_port);

	static const uint8_t short_block[] = { 'w', 'h', 'o', 0, 1, 12, 4, 192, 0, 2, 7, 0xC8, 0x22,
					       127, 0, 0, 1, 0x46 };
	uint8_t frame[FRAME_HEADER_SIZE + FRAME_CONTROL_MAX], payload[FRAME_CONTROL_MAX];
	int n = frame_encode_handshake(frame, sizeof frame, 1, short_block, sizeof short_block);
	ck_assert_int_eq(write(fd, frame, (size_t)n), n);
	memcpy(payload, "who", 4);
	for (size_t i = 0; i < 150; i++) { /* 300 bytes of extensions: over the 255 allowed */
		payload[4 + 2 * i] = (uint8_t)(0x80 + i);
		payload[5 + 2 * i] = 0;
	}
	n = frame_encode_handshake(frame, sizeof frame, 3, payload, 4 + 300);
	ck_assert_int_eq(write(fd, frame, (size_t)n), n);
	n = frame_encode_ping(frame, sizeof frame, 77);
	ck_assert_int_eq(write(fd, frame, (size_t)n), n);

	struct frame_header h;
	uint32_t code;
	const char *message;
	size_t message_length;
	uint32_t codes[4] = { 0 };
	bool pong = false; /* the connection carries on */
	for (int frames = 0; frames < 20 && !(pong && codes[1] && codes[3]); frames++) {
		ck_assert(read_frame(fd, &h, payload, sizeof payload));
		if (h.type == FRAME_PONG)
			pong = true;
		if (h.type != FRAME_ERROR) /* the broker's own PING, say */
			continue;
		ck_assert_uint_le(h.stream_id, 3);
		ck_assert_int_eq(frame_parse_error(&h, payload, h.length, &code, &message, &message_length), WH_OK);
		codes[h.stream_id] = code;
	}
	ck_assert(pong);
	ck_assert_uint_eq(codes[1], 400);
	ck_assert_uint_eq(codes[3], 400);
	ck_assert(process_log_wait(&a, "stream=1 refused: HANDSHAKE payload: malformed extensions "
				   "(client address): ERROR 400", 10));
	ck_assert(process_log_wait(&a, "stream=3 refused: HANDSHAKE payload: service name or "
				   "extensions too long: ERROR 400", 10));
	close(fd);
	harness_stop_child(target);
	ck_assert_int_eq(process_stop(&a, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

static Suite *proxy_protocol_suite(void)
{
	Suite *suite = suite_create("proxy_protocol");
	TCase *tc = tcase_create("proxy_protocol");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_haproxy_v1);
	tcase_add_test(tc, test_haproxy_v2);
	tcase_add_test(tc, test_haproxy_refuses_without_the_header);
	tcase_add_test(tc, test_v2_identity_over_tls);
	tcase_add_test(tc, test_bad_address_block_is_error_400);
	suite_add_tcase(suite, tc);
	return suite;
}

int main(void)
{
	SRunner *runner = srunner_create(proxy_protocol_suite());
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
