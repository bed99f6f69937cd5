/* Unit tests of the attach-protocol codec: round trips, exact bytes, every malformation. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "attach_msg.h"

static struct attach_msg roundtrip(const struct attach_msg *in)
{
	uint8_t buf[ATTACH_MESSAGE_MAX];
	int n = attach_encode(buf, sizeof buf, in);
	ck_assert_int_gt(n, 0);
	struct attach_msg out;
	ck_assert_int_eq(attach_decode(buf, (size_t)n, &out), WH_OK);
	/* every strictly shorter packet is malformed */
	for (int cut = 0; cut < n; cut++) {
		struct attach_msg scratch;
		ck_assert_int_eq(attach_decode(buf, (size_t)cut, &scratch), WH_EPROTOCOL);
	}
	/* and so is one byte too many */
	buf[n] = 0;
	struct attach_msg scratch;
	ck_assert_int_eq(attach_decode(buf, (size_t)n + 1, &scratch), WH_EPROTOCOL);
	return out;
}

START_TEST(test_roundtrip_every_type)
{
	struct attach_msg m = { .type = ATTACH_HELLO, .request_id = 7, .version = ATTACH_VERSION, .pid = 1234 };
	struct attach_msg r = roundtrip(&m);
	ck_assert_int_eq(r.type, ATTACH_HELLO);
	ck_assert_uint_eq(r.request_id, 7);
	ck_assert_uint_eq(r.pid, 1234);

	m = (struct attach_msg){ .type = ATTACH_OPEN, .request_id = 9, .timeout_ms = 2500 };
	strcpy(m.peer, "b");
	strcpy(m.service, "echo");
	r = roundtrip(&m);
	ck_assert_str_eq(r.peer, "b");
	ck_assert_str_eq(r.service, "echo");
	ck_assert_uint_eq(r.timeout_ms, 2500);

	m = (struct attach_msg){ .type = ATTACH_LISTEN };
	strcpy(m.service, "svc");
	ck_assert_str_eq(roundtrip(&m).service, "svc");
	m.type = ATTACH_UNLISTEN;
	ck_assert_str_eq(roundtrip(&m).service, "svc");

	m = (struct attach_msg){ .type = ATTACH_RELEASE, .handle = 0x1122334455667788ull };
	ck_assert_uint_eq(roundtrip(&m).handle, 0x1122334455667788ull);
	m.type = ATTACH_ACCEPTED;
	r = roundtrip(&m);
	ck_assert_int_eq(r.type, ATTACH_ACCEPTED);
	ck_assert_uint_eq(r.handle, 0x1122334455667788ull);
	ck_assert_uint_eq(attach_fd_count(&r), 0);

	m = (struct attach_msg){ .type = ATTACH_WELCOME, .version = 1, .max_streams = 10000,
			      .ring_capacity = 1 << 18 };
	memset(m.client_id, 0xAB, sizeof m.client_id);
	r = roundtrip(&m);
	ck_assert_mem_eq(r.client_id, m.client_id, sizeof m.client_id);
	ck_assert_uint_eq(r.max_streams, 10000);

	ck_assert_uint_eq(attach_fd_count(&r), 3); /* doorbell, notify segment, news */

	m = (struct attach_msg){ .type = ATTACH_OPENED, .request_id = 3, .handle = 5, .ring_capacity = 4096,
			      .tx_ring = 1, .slot = 17 };
	r = roundtrip(&m);
	ck_assert_uint_eq(r.tx_ring, 1);
	ck_assert_uint_eq(r.slot, 17);
	ck_assert_uint_eq(attach_fd_count(&r), 1); /* the segment only: no descriptor per stream */

	m = (struct attach_msg){ .type = ATTACH_STREAM_FD, .handle = 0x0102030405060708ull };
	r = roundtrip(&m);
	ck_assert_int_eq(r.type, ATTACH_STREAM_FD);
	ck_assert_uint_eq(r.handle, 0x0102030405060708ull);
	ck_assert_uint_eq(attach_fd_count(&r), 1);
	ck_assert_str_eq(attach_type_name(ATTACH_STREAM_FD), "STREAM_FD");

	m = (struct attach_msg){ .type = ATTACH_INCOMING, .handle = 6, .ring_capacity = 8192,
			      .slot = ATTACH_NO_SLOT };
	strcpy(m.service, "echo");
	strcpy(m.peer, "local");
	r = roundtrip(&m);
	ck_assert_str_eq(r.peer, "local");
	ck_assert_uint_eq(attach_fd_count(&r), 2); /* segment, its wake-up socket */

	m = (struct attach_msg){ .type = ATTACH_RESULT, .request_id = 4, .error = WH_ENO_SERVICE };
	strcpy(m.message, "no listener");
	r = roundtrip(&m);
	ck_assert_int_eq(r.error, WH_ENO_SERVICE);
	ck_assert_str_eq(r.message, "no listener");
	ck_assert_uint_eq(attach_fd_count(&r), 0);

	m = (struct attach_msg){ .type = ATTACH_STATS, .request_id = 11 };
	r = roundtrip(&m);
	ck_assert_int_eq(r.type, ATTACH_STATS);
	ck_assert_uint_eq(r.request_id, 11);
}
END_TEST

START_TEST(test_stats_reply)
{
	struct attach_msg m = { .type = ATTACH_STATS_REPLY, .request_id = 12, .stats_count = ATTACH_STAT_COUNT };
	for (unsigned i = 0; i < ATTACH_STAT_COUNT; i++)
		m.stats[i] = 0x0102030405060708ull * (i + 1);
	struct attach_msg r = roundtrip(&m);
	ck_assert_uint_eq(r.stats_count, ATTACH_STAT_COUNT);
	for (unsigned i = 0; i < ATTACH_STAT_COUNT; i++)
		ck_assert_uint_eq(r.stats[i], m.stats[i]);
	ck_assert_uint_eq(attach_fd_count(&r), 0);

	/* the most counters a reply may carry, and none */
	m.stats_count = ATTACH_STATS_MAX;
	ck_assert_uint_eq(roundtrip(&m).stats_count, ATTACH_STATS_MAX);
	m.stats_count = 0;
	ck_assert_uint_eq(roundtrip(&m).stats_count, 0);

	/* exact bytes: header, count, little-endian counters */
	m = (struct attach_msg){ .type = ATTACH_STATS_REPLY, .request_id = 1, .stats_count = 1, .stats = { 258 } };
	uint8_t buf[64];
	ck_assert_int_eq(attach_encode(buf, sizeof buf, &m), 17);
	const uint8_t expected[] = { ATTACH_VERSION, 36, 0, 0, 1, 0, 0, 0, 1, 2, 1, 0, 0, 0, 0, 0, 0 };
	ck_assert_mem_eq(buf, expected, sizeof expected);

	/* more counters than any reader keeps: refused both ways */
	m.stats_count = ATTACH_STATS_MAX + 1;
	ck_assert_int_eq(attach_encode(buf, sizeof buf, &m), WH_EINVAL);
	uint8_t too_many[8 + 1 + 8 * (ATTACH_STATS_MAX + 1)] = { ATTACH_VERSION, ATTACH_STATS_REPLY, 0, 0, 0, 0, 0, 0,
							       ATTACH_STATS_MAX + 1 };
	ck_assert_int_eq(attach_decode(too_many, sizeof too_many, &r), WH_EPROTOCOL);
	/* a count that promises more than the packet holds */
	uint8_t short_reply[] = { ATTACH_VERSION, ATTACH_STATS_REPLY, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0 };
	ck_assert_int_eq(attach_decode(short_reply, sizeof short_reply, &r), WH_EPROTOCOL);
	ck_assert_str_eq(attach_type_name(ATTACH_STATS_REPLY), "STATS_REPLY");
}
END_TEST

START_TEST(test_exact_bytes)
{
	struct attach_msg m = { .type = ATTACH_LISTEN, .request_id = 0x01020304 };
	strcpy(m.service, "ab");
	uint8_t buf[64];
	ck_assert_int_eq(attach_encode(buf, sizeof buf, &m), 11);
	const uint8_t expected[] = { ATTACH_VERSION, 3, 0, 0, 4, 3, 2, 1, 2, 'a', 'b' };
	ck_assert_mem_eq(buf, expected, sizeof expected);
}
END_TEST

START_TEST(test_encode_errors)
{
	uint8_t buf[ATTACH_MESSAGE_MAX];
	struct attach_msg m = { .type = ATTACH_OPEN };
	memset(m.service, 'x', ATTACH_STRING_MAX + 1); /* 256 bytes, no terminator within the limit */
	ck_assert_int_eq(attach_encode(buf, sizeof buf, &m), WH_EINVAL);
	m = (struct attach_msg){ .type = (enum attach_type)99 };
	ck_assert_int_eq(attach_encode(buf, sizeof buf, &m), WH_EINVAL);
	m = (struct attach_msg){ .type = ATTACH_OPENED, .tx_ring = 2 };
	ck_assert_int_eq(attach_encode(buf, sizeof buf, &m), WH_EINVAL);
	m = (struct attach_msg){ .type = ATTACH_OPEN };
	strcpy(m.service, "service");
	ck_assert_int_eq(attach_encode(buf, 8, &m), WH_EBUFFER_TOO_SMALL);
	ck_assert_int_eq(attach_encode(buf, 10, &m), WH_EBUFFER_TOO_SMALL);
	ck_assert_int_eq(attach_encode(NULL, 10, &m), WH_EINVAL);
}
END_TEST

START_TEST(test_decode_malformed)
{
	struct attach_msg m;
	uint8_t bad_version[] = { 1, ATTACH_HELLO, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
	ck_assert_int_eq(attach_decode(bad_version, sizeof bad_version, &m), WH_EPROTOCOL);
	uint8_t bad_type[] = { ATTACH_VERSION, 77, 0, 0, 0, 0, 0, 0 };
	ck_assert_int_eq(attach_decode(bad_type, sizeof bad_type, &m), WH_EPROTOCOL);
	uint8_t reserved[] = { ATTACH_VERSION, ATTACH_LISTEN, 1, 0, 0, 0, 0, 0, 0 };
	ck_assert_int_eq(attach_decode(reserved, sizeof reserved, &m), WH_EPROTOCOL);
	uint8_t nul_in_string[] = { ATTACH_VERSION, ATTACH_LISTEN, 0, 0, 0, 0, 0, 0, 3, 'a', 0, 'b' };
	ck_assert_int_eq(attach_decode(nul_in_string, sizeof nul_in_string, &m), WH_EPROTOCOL);
	uint8_t string_past_end[] = { ATTACH_VERSION, ATTACH_LISTEN, 0, 0, 0, 0, 0, 0, 200, 'a' };
	ck_assert_int_eq(attach_decode(string_past_end, sizeof string_past_end, &m), WH_EPROTOCOL);
	uint8_t bad_ring[] = { ATTACH_VERSION, ATTACH_OPENED, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 2,
			       0, 0, 0, 0 };
	ck_assert_int_eq(attach_decode(bad_ring, sizeof bad_ring, &m), WH_EPROTOCOL);
	ck_assert_int_eq(attach_decode(NULL, 8, &m), WH_EPROTOCOL);
	static uint8_t huge[ATTACH_MESSAGE_MAX + 1];
	ck_assert_int_eq(attach_decode(huge, sizeof huge, &m), WH_EPROTOCOL);
	ck_assert_str_eq(attach_type_name(ATTACH_WELCOME), "WELCOME");
	ck_assert_str_eq(attach_type_name(0), "UNKNOWN");
}
END_TEST

/* Each broken rule has its own words, which the broker sends in the RESULT that ends the
 * session: an app's developer reads what was wrong, not only that something was. */
START_TEST(test_decode_error_names_the_rule)
{
	static const struct {
		uint8_t bytes[16];
		size_t length;
		const char *names;
	} cases[] = {
		{ { ATTACH_VERSION, ATTACH_STATS, 0 }, 3, "shorter than the 8-byte header" },
		{ { 9, ATTACH_STATS, 0, 0, 0, 0, 0, 0 }, 8, "another protocol version" },
		{ { ATTACH_VERSION, ATTACH_STATS, 0, 1, 0, 0, 0, 0 }, 8, "reserved header bits" },
		{ { ATTACH_VERSION, 99, 0, 0, 0, 0, 0, 0 }, 8, "unknown message type" },
		{ { ATTACH_VERSION, ATTACH_STATS, 0, 0, 0, 0, 0, 0, 7 }, 9, "bytes after the last field" },
		{ { ATTACH_VERSION, ATTACH_LISTEN, 0, 0, 0, 0, 0, 0, 9, 'a' }, 10, "runs past the end" },
		{ { ATTACH_VERSION, ATTACH_LISTEN, 0, 0, 0, 0, 0, 0, 2, 'a', 0 }, 11, "holds a NUL" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct attach_msg m;
		ck_assert_int_eq(attach_decode(cases[i].bytes, cases[i].length, &m), WH_EPROTOCOL);
		const char *why = attach_decode_error(cases[i].bytes, cases[i].length);
		ck_assert_msg(why && strstr(why, cases[i].names), "case %zu: \"%s\"", i, why ? why : "(none)");
	}
	uint8_t big[ATTACH_MESSAGE_MAX + 1] = { ATTACH_VERSION, ATTACH_STATS };
	ck_assert_ptr_nonnull(strstr(attach_decode_error(big, sizeof big), "longer than"));
	uint8_t good[] = { ATTACH_VERSION, ATTACH_STATS, 0, 0, 0, 0, 0, 0 };
	ck_assert_ptr_null(attach_decode_error(good, sizeof good));
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("attach_msg");
	TCase *tc = tcase_create("codec");
	tcase_add_test(tc, test_roundtrip_every_type);
	tcase_add_test(tc, test_exact_bytes);
	tcase_add_test(tc, test_stats_reply);
	tcase_add_test(tc, test_encode_errors);
	tcase_add_test(tc, test_decode_malformed);
	tcase_add_test(tc, test_decode_error_names_the_rule);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
