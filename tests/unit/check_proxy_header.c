/* Unit tests of the PROXY protocol codec: golden bytes of both versions, round trips, TLVs,
 * prefixes that wait for more, and every kind of bad input refused without a read past it. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_header.h"

static struct proxy_addresses tcp4(const char *src, unsigned sport, const char *dst, unsigned dport)
{
	struct proxy_addresses a = { .family = PROXY_FAMILY_TCP4 };
	ck_assert_int_eq(inet_pton(AF_INET, src, a.src_addr), 1);
	ck_assert_int_eq(inet_pton(AF_INET, dst, a.dst_addr), 1);
	a.src_port = (uint16_t)sport;
	a.dst_port = (uint16_t)dport;
	return a;
}

static struct proxy_addresses tcp6(const char *src, unsigned sport, const char *dst, unsigned dport)
{
	struct proxy_addresses a = { .family = PROXY_FAMILY_TCP6 };
	ck_assert_int_eq(inet_pton(AF_INET6, src, a.src_addr), 1);
	ck_assert_int_eq(inet_pton(AF_INET6, dst, a.dst_addr), 1);
	a.src_port = (uint16_t)sport;
	a.dst_port = (uint16_t)dport;
	return a;
}

static void assert_same_addresses(const struct proxy_addresses *a, const struct proxy_addresses *b)
{
	ck_assert_int_eq(a->family, b->family);
	ck_assert_mem_eq(a->src_addr, b->src_addr, 16);
	ck_assert_mem_eq(a->dst_addr, b->dst_addr, 16);
	ck_assert_uint_eq(a->src_port, b->src_port);
	ck_assert_uint_eq(a->dst_port, b->dst_port);
}

static int decode_text(const char *text, struct proxy_header *h)
{
	return proxy_header_decode((const uint8_t *)text, strlen(text), h);
}

START_TEST(test_v1_golden)
{
	uint8_t out[PROXY_V1_MAX];
	struct proxy_addresses a = tcp4("192.0.2.7", 51234, "127.0.0.1", 18000);
	int n = proxy_header_encode_v1(out, sizeof out, &a);
	const char *want = "PROXY TCP4 192.0.2.7 127.0.0.1 51234 18000\r\n";
	ck_assert_int_eq(n, (int)strlen(want));
	ck_assert_mem_eq(out, want, strlen(want));

	a = tcp6("2001:db8::1", 1, "::1", 65535);
	n = proxy_header_encode_v1(out, sizeof out, &a);
	want = "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
	ck_assert_int_eq(n, (int)strlen(want));
	ck_assert_mem_eq(out, want, strlen(want));

	struct proxy_addresses unknown = { .family = PROXY_FAMILY_UNKNOWN };
	n = proxy_header_encode_v1(out, sizeof out, &unknown);
	ck_assert_int_eq(n, 15);
	ck_assert_mem_eq(out, "PROXY UNKNOWN\r\n", 15);
}
END_TEST

START_TEST(test_v1_longest_fits)
{
	uint8_t out[PROXY_V1_MAX];
	struct proxy_addresses a = tcp6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
					"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	int n = proxy_header_encode_v1(out, sizeof out, &a);
	ck_assert_int_eq(n, 104); /* the spec's 107 is UNKNOWN with addresses after it */
	ck_assert_int_eq(proxy_header_encode_v1(out, 50, &a), WH_EBUFFER_TOO_SMALL);
	struct proxy_header h;
	ck_assert_int_eq(proxy_header_decode(out, (size_t)n, &h), n);
	assert_same_addresses(&h.addresses, &a);
}
END_TEST

START_TEST(test_v1_decode)
{
	struct proxy_header h;
	const char *line = "PROXY TCP4 10.1.2.3 10.0.0.1 40000 80\r\nGET / HTTP/1.0\r\n";
	ck_assert_int_eq(decode_text(line, &h), 39);
	ck_assert_uint_eq(h.version, 1);
	struct proxy_addresses want = tcp4("10.1.2.3", 40000, "10.0.0.1", 80);
	assert_same_addresses(&h.addresses, &want);
	ck_assert_int_eq(decode_text("PROXY UNKNOWN\r\n", &h), 15);
	ck_assert_int_eq(h.addresses.family, PROXY_FAMILY_UNKNOWN);
	/* UNKNOWN: the rest of the line is the sender's business */
	ck_assert_int_eq(decode_text("PROXY UNKNOWN ffff::1 ::1 1 2\r\n", &h), 31);
	ck_assert_int_eq(decode_text("PROXY TCP6 ::ffff:1.2.3.4 ::1 0 1\r\n", &h), 35);
	ck_assert_int_eq(h.addresses.family, PROXY_FAMILY_TCP6);
}
END_TEST

START_TEST(test_v1_bad)
{
	static const char *const bad[] = {
		"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",     /* no such protocol */
		"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",   /* a word too many */
		"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",       /* a word short */
		"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n",    /* two spaces */
		"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n",    /* a space at the end */
		"PROXY TCP4 ::1 1.2.3.4 1 2\r\n",         /* v6 in TCP4 */
		"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",         /* v4 in TCP6 */
		"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", /* port too big */
		"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",    /* leading zero */
		"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n",    /* sign */
		"PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n",   /* not an address */
		"PROXY TCP4 1.2.3.4\t1.2.3.4 1 2\r\n",    /* a tab */
		"PROXY UNKNOWNX\r\n",
		"PROXY \r\n",
		"PROXY\r\n",
		"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
		"GET / HTTP/1.1\r\n",
	};
	struct proxy_header h;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(decode_text(bad[i], &h) == WH_EPROTOCOL, "accepted: %s", bad[i]);
	uint8_t nul[] = "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\n";
	nul[12] = 0;
	ck_assert_int_eq(proxy_header_decode(nul, sizeof nul - 1, &h), WH_EPROTOCOL);
	/* no CRLF within the spec's 107 bytes: never a header */
	uint8_t longer[200];
	memcpy(longer, "PROXY UNKNOWN ", 14);
	memset(longer + 14, 'x', sizeof longer - 14);
	ck_assert_int_eq(proxy_header_decode(longer, PROXY_V1_MAX - 1, &h), 0);
	ck_assert_int_eq(proxy_header_decode(longer, PROXY_V1_MAX, &h), WH_EPROTOCOL);
	ck_assert_int_eq(proxy_header_decode(longer, sizeof longer, &h), WH_EPROTOCOL);
}
END_TEST

START_TEST(test_v2_golden)
{
	uint8_t out[PROXY_HEADER_ENCODE_MAX];
	struct proxy_addresses a = tcp4("192.0.2.7", 0xC822, "127.0.0.1", 0x4650);
	struct proxy_tlv id = { PROXY_TLV_WORMHOLE_PEER, 1, (const uint8_t *)"b" };
	int n = proxy_header_encode_v2(out, sizeof out, &a, &id, 1);
	static const uint8_t want[] = {
		0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, /* signature */
		0x21, 0x11, 0x00, 0x10,                                                   /* PROXY, TCP4, 16 */
		192, 0, 2, 7, 127, 0, 0, 1, 0xC8, 0x22, 0x46, 0x50,                       /* addresses */
		0xE0, 0x00, 0x01, 'b',                                                    /* the peer TLV */
	};
	ck_assert_int_eq(n, (int)sizeof want);
	ck_assert_mem_eq(out, want, sizeof want);

	struct proxy_addresses unknown = { .family = PROXY_FAMILY_UNKNOWN };
	n = proxy_header_encode_v2(out, sizeof out, &unknown, NULL, 0);
	/* no addresses: LOCAL, family UNSPEC (haproxy resets PROXY with UNSPEC) */
	static const uint8_t want_unspec[] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
					       0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00 };
	ck_assert_int_eq(n, (int)sizeof want_unspec);
	ck_assert_mem_eq(out, want_unspec, sizeof want_unspec);
	ck_assert_int_eq(proxy_header_encode_v2(out, 20, &a, &id, 1), WH_EBUFFER_TOO_SMALL);
}
END_TEST

START_TEST(test_v2_roundtrip_tlvs)
{
	uint8_t out[PROXY_HEADER_ENCODE_MAX + 16];
	struct proxy_addresses a = tcp6("2001:db8::7", 443, "fe80::1", 18000);
	char identity[256];
	memset(identity, 'n', 255);
	struct proxy_tlv tlvs[2] = { { PROXY_TLV_NOOP, 0, NULL },
				     { PROXY_TLV_WORMHOLE_PEER, 255, (const uint8_t *)identity } };
	int n = proxy_header_encode_v2(out, sizeof out, &a, tlvs, 2);
	ck_assert_int_eq(n, 16 + 36 + 3 + 3 + 255);
	struct proxy_header h;
	ck_assert_int_eq(proxy_header_decode(out, (size_t)n, &h), n);
	ck_assert_uint_eq(h.version, 2);
	ck_assert(!h.local);
	assert_same_addresses(&h.addresses, &a);
	struct proxy_tlv got;
	ck_assert(proxy_tlv_find(&h, PROXY_TLV_WORMHOLE_PEER, &got));
	ck_assert_uint_eq(got.length, 255);
	ck_assert_mem_eq(got.value, identity, 255);
	ck_assert(proxy_tlv_find(&h, PROXY_TLV_NOOP, &got));
	ck_assert(!proxy_tlv_find(&h, PROXY_TLV_SSL, &got));
	/* every shorter prefix waits for more */
	for (int k = 0; k < n; k++)
		ck_assert_int_eq(proxy_header_decode(out, (size_t)k, &h), 0);
}
END_TEST

START_TEST(test_v2_bad)
{
	uint8_t out[64];
	struct proxy_addresses a = tcp4("1.2.3.4", 1, "5.6.7.8", 2);
	struct proxy_tlv id = { PROXY_TLV_WORMHOLE_PEER, 2, (const uint8_t *)"ab" };
	int n = proxy_header_encode_v2(out, sizeof out, &a, &id, 1);
	struct proxy_header h;
	uint8_t copy[64];

	memcpy(copy, out, (size_t)n);
	copy[12] = 0x11; /* version 1 in a v2 header */
	ck_assert_int_eq(proxy_header_decode(copy, (size_t)n, &h), WH_EPROTOCOL);
	memcpy(copy, out, (size_t)n);
	copy[12] = 0x22; /* no such command */
	ck_assert_int_eq(proxy_header_decode(copy, (size_t)n, &h), WH_EPROTOCOL);
	memcpy(copy, out, (size_t)n);
	copy[13] = 0x41; /* no such family */
	ck_assert_int_eq(proxy_header_decode(copy, (size_t)n, &h), WH_EPROTOCOL);
	memcpy(copy, out, (size_t)n);
	copy[15] = 8; /* a length shorter than the TCP4 addresses */
	ck_assert_int_eq(proxy_header_decode(copy, (size_t)n, &h), WH_EPROTOCOL);
	memcpy(copy, out, (size_t)n);
	copy[n - 3] = 9; /* a TLV that runs past the header's end */
	ck_assert_int_eq(proxy_header_decode(copy, (size_t)n, &h), WH_EPROTOCOL);
	memcpy(copy, out, (size_t)n);
	copy[15] = (uint8_t)(copy[15] - 1); /* the header ends inside the TLV */
	ck_assert_int_eq(proxy_header_decode(copy, (size_t)n - 1, &h), WH_EPROTOCOL);
	memcpy(copy, out, (size_t)n);
	copy[3] = 0x0B; /* the signature broken */
	ck_assert_int_eq(proxy_header_decode(copy, (size_t)n, &h), WH_EPROTOCOL);
	/* a length the bytes do not reach yet: wait */
	memcpy(copy, out, (size_t)n);
	copy[14] = 0xFF;
	ck_assert_int_eq(proxy_header_decode(copy, (size_t)n, &h), 0);
	/* LOCAL is a header too */
	memcpy(copy, out, (size_t)n);
	copy[12] = 0x20;
	ck_assert_int_eq(proxy_header_decode(copy, (size_t)n, &h), n);
	ck_assert(h.local);
}
END_TEST

START_TEST(test_encode_bad_arguments)
{
	uint8_t out[64];
	struct proxy_addresses a = { .family = (enum proxy_family)5 };
	ck_assert_int_eq(proxy_header_encode_v1(out, sizeof out, &a), WH_EINVAL);
	ck_assert_int_eq(proxy_header_encode_v2(out, sizeof out, &a, NULL, 0), WH_EINVAL);
	a.family = PROXY_FAMILY_TCP4;
	ck_assert_int_eq(proxy_header_encode_v2(out, sizeof out, &a, NULL, 1), WH_EINVAL);
	struct proxy_tlv no_value = { PROXY_TLV_WORMHOLE_PEER, 3, NULL };
	ck_assert_int_eq(proxy_header_encode_v2(out, sizeof out, &a, &no_value, 1), WH_EINVAL);
	struct proxy_header h;
	ck_assert_int_eq(proxy_header_decode(NULL, 1, &h), WH_EINVAL);
	ck_assert_int_eq(proxy_header_decode(out, 0, &h), 0);
}
END_TEST

static Suite *proxy_header_suite(void)
{
	Suite *suite = suite_create("proxy_header");
	TCase *v1 = tcase_create("v1");
	tcase_add_test(v1, test_v1_golden);
	tcase_add_test(v1, test_v1_longest_fits);
	tcase_add_test(v1, test_v1_decode);
	tcase_add_test(v1, test_v1_bad);
	suite_add_tcase(suite, v1);
	TCase *v2 = tcase_create("v2");
	tcase_add_test(v2, test_v2_golden);
	tcase_add_test(v2, test_v2_roundtrip_tlvs);
	tcase_add_test(v2, test_v2_bad);
	tcase_add_test(v2, test_encode_bad_arguments);
	suite_add_tcase(suite, v2);
	return suite;
}

int main(void)
{
	SRunner *runner = srunner_create(proxy_header_suite());
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
