/* broker/admission.c: who gets a TLS handshake, and when. Pure: the time is passed in. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"

static struct admission *fresh(double rate)
{
	static const uint8_t key[ADMISSION_KEY_BYTES] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	struct admission *a = malloc(sizeof *a);
	ck_assert_ptr_nonnull(a);
	admission_init(a, key, 1000.0, rate);
	return a;
}

static struct admission_addr v4(uint32_t address)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(address) };
	struct admission_addr out;
	ck_assert(admission_addr_from((struct sockaddr *)&in, &out));
	return out;
}

/* An address marked for connections that did not authenticate stays marked however many other
 * addresses come after it (the table it replaces had 256 slots, the oldest evicted). */
START_TEST(test_many_addresses_do_not_make_it_forget)
{
	struct admission *a = fresh(100);
	struct admission_addr attacker = v4(0xc0000201); /* 192.0.2.1 */
	for (int i = 0; i < 5; i++)
		admission_arrived(a, &attacker, 1000.0);
	ck_assert_uint_eq(admission_priority(a, &attacker, 1000.0), 3);
	for (uint32_t i = 0; i < 100000; i++) { /* 10.x.y.z, each once */
		struct admission_addr other = v4(0x0a000000u + i * 7u);
		admission_arrived(a, &other, 1000.0);
	}
	ck_assert_uint_ge(admission_priority(a, &attacker, 1000.0), 3);
	/* ... and forgets it once it stops: the score leaks from its cap */
	ck_assert_uint_eq(admission_priority(a, &attacker, 1000.0 + 25.0), 1);
	free(a);
}
END_TEST

/* A peer that authenticated is known (served first); a stranger on its address lowers the
 * address's priority but it is never below the strangers that are not known. */
START_TEST(test_known_and_marked)
{
	struct admission *a = fresh(100);
	struct admission_addr peer = v4(0xc0000202), clean = v4(0xc6336401);
	ck_assert_uint_eq(admission_priority(a, &peer, 1000.0), 1);
	admission_arrived(a, &peer, 1000.0);
	admission_authenticated(a, &peer, 1000.0);
	ck_assert_uint_eq(admission_priority(a, &peer, 1000.0), ADMISSION_KNOWN);
	for (int i = 0; i < 5; i++) /* junk from the same address */
		admission_arrived(a, &peer, 1001.0);
	ck_assert_uint_eq(admission_priority(a, &peer, 1001.0), 2);
	ck_assert_uint_eq(admission_priority(a, &clean, 1001.0), 1);
	/* its own connections that authenticate cost it nothing */
	for (int i = 0; i < 50; i++) {
		admission_arrived(a, &clean, 1002.0);
		admission_authenticated(a, &clean, 1002.0);
	}
	ck_assert_uint_eq(admission_priority(a, &clean, 1002.0), ADMISSION_KNOWN);
	free(a);
}
END_TEST

/* Addresses rotated within one /24 (or /64) mark the prefix: a fresh address there comes after
 * strangers elsewhere. */
START_TEST(test_prefixes)
{
	struct admission *a = fresh(100);
	for (uint32_t i = 1; i <= 20; i++) {
		struct admission_addr one = v4(0xcb007100u + i); /* 203.0.113.i */
		admission_arrived(a, &one, 1000.0);
	}
	struct admission_addr fresh_there = v4(0xcb0071c8), elsewhere = v4(0xcb007201);
	ck_assert_uint_eq(admission_priority(a, &fresh_there, 1000.0), 2);
	ck_assert_uint_eq(admission_priority(a, &elsewhere, 1000.0), 1);
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	struct admission_addr six;
	for (int i = 0; i < 20; i++) {
		inet_pton(AF_INET6, "2001:db8:1:2::", &in6.sin6_addr);
		in6.sin6_addr.s6_addr[15] = (uint8_t)i;
		in6.sin6_addr.s6_addr[9] = (uint8_t)(i * 13);
		ck_assert(admission_addr_from((struct sockaddr *)&in6, &six));
		admission_arrived(a, &six, 1000.0);
	}
	inet_pton(AF_INET6, "2001:db8:1:2:ffff::1", &in6.sin6_addr);
	ck_assert(admission_addr_from((struct sockaddr *)&in6, &six));
	ck_assert_uint_eq(admission_priority(a, &six, 1000.0), 2);
	inet_pton(AF_INET6, "2001:db8:1:3::1", &in6.sin6_addr);
	ck_assert(admission_addr_from((struct sockaddr *)&in6, &six));
	ck_assert_uint_eq(admission_priority(a, &six, 1000.0), 1);
	free(a);
}
END_TEST

/* handshake-rate: a burst of two seconds' worth, then the rate; an authenticated handshake
 * gives its token back; 0 bounds nothing. */
START_TEST(test_tokens)
{
	struct admission *a = fresh(10);
	for (int i = 0; i < 20; i++)
		ck_assert(admission_take(a, 10, 1000.0, false));
	ck_assert(!admission_take(a, 10, 1000.0, false));
	ck_assert(admission_wait(a, 10, 1000.0) > 0.09);
	ck_assert(admission_take(a, 10, 1000.11, false));
	ck_assert(!admission_take(a, 10, 1000.11, false));
	admission_refund(a, 10, 1000.11);
	ck_assert(admission_take(a, 10, 1000.11, false));
	ck_assert(admission_take(a, 0, 1000.11, false));
	ck_assert(admission_wait(a, 0, 1000.11) == 0);
	/* a known peer borrows down to a burst of debt, which the others then wait out */
	for (int i = 0; i < 20; i++)
		ck_assert(admission_take(a, 10, 1000.11, true));
	ck_assert(!admission_take(a, 10, 1000.11, true));
	ck_assert(admission_wait(a, 10, 1000.11) > 1.9);
	ck_assert(!admission_take(a, 10, 1002.0, false));
	ck_assert(admission_take(a, 10, 1002.3, false));
	/* never more than the burst, however long it was idle */
	for (int i = 0; i < 20; i++)
		ck_assert(admission_take(a, 10, 5000.0, false));
	ck_assert(!admission_take(a, 10, 5000.0, false));
	free(a);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("admission");
	TCase *tc = tcase_create("admission");
	tcase_add_test(tc, test_many_addresses_do_not_make_it_forget);
	tcase_add_test(tc, test_known_and_marked);
	tcase_add_test(tc, test_prefixes);
	tcase_add_test(tc, test_tokens);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
