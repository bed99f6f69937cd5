/* Unit tests of the growable circular byte buffer. */
#include "config.h"

#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <wormhole/errors.h>

#include "bytebuf.h"

START_TEST(test_empty_costs_nothing)
{
	struct bytebuf b;
	bytebuf_init(&b, 1 << 20);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(bytebuf_length(&b), 0);
	struct iovec iov[2];
	ck_assert_int_eq(bytebuf_peek(&b, 0, iov), 0);
	char out[4];
	ck_assert_uint_eq(bytebuf_read(&b, out, 4), 0);
	bytebuf_free(&b);
}
END_TEST

START_TEST(test_limit_is_enforced)
{
	struct bytebuf b;
	bytebuf_init(&b, 10);
	ck_assert_int_eq(bytebuf_write(&b, "0123456789abc", 13), 10);
	ck_assert_int_eq(bytebuf_write(&b, "x", 1), 0);
	ck_assert_uint_eq(bytebuf_room(&b), 0);
	uint8_t *span;
	ck_assert_uint_eq(bytebuf_reserve(&b, 5, &span), 0);
	bytebuf_set_limit(&b, 5); /* never below what is held */
	ck_assert_uint_eq(b.limit, 10);
	bytebuf_set_limit(&b, 20);
	ck_assert_int_eq(bytebuf_write(&b, "abc", 3), 3);
	char out[16];
	ck_assert_uint_eq(bytebuf_read(&b, out, sizeof out), 13);
	ck_assert_mem_eq(out, "0123456789abc", 13);
	bytebuf_free(&b);
}
END_TEST

/* Random writes, peeks at offsets and reads across wrap-around and growth keep the bytes. */
START_TEST(test_random_traffic_keeps_order)
{
	struct bytebuf b;
	bytebuf_init(&b, 100000);
	unsigned seed = 7;
	uint8_t next_in = 0, next_out = 0;
	static uint8_t scratch[100000];
	bool order_kept = true;
	for (int round = 0; round < 3000; round++) {
		size_t n = (size_t)(rand_r(&seed) % 9000);
		for (size_t i = 0; i < n; i++)
			scratch[i] = (uint8_t)(next_in + i);
		long wrote = bytebuf_write(&b, scratch, n);
		ck_assert_int_ge(wrote, 0);
		next_in = (uint8_t)(next_in + wrote);
		size_t offset = bytebuf_length(&b) ? (size_t)rand_r(&seed) % bytebuf_length(&b) : 0;
		struct iovec iov[2];
		int spans = bytebuf_peek(&b, offset, iov);
		size_t seen = 0;
		for (int i = 0; i < spans; i++)
			for (size_t j = 0; j < iov[i].iov_len; j++, seen++)
				order_kept &= ((uint8_t *)iov[i].iov_base)[j] ==
					      (uint8_t)(next_out + offset + seen);
		ck_assert_uint_eq(seen, bytebuf_length(&b) - offset);
		size_t want = (size_t)(rand_r(&seed) % 9000);
		size_t got = bytebuf_read(&b, scratch, want);
		for (size_t i = 0; i < got; i++)
			order_kept &= scratch[i] == (uint8_t)(next_out + i);
		next_out = (uint8_t)(next_out + got);
	}
	ck_assert(order_kept);
	bytebuf_free(&b);
}
END_TEST

START_TEST(test_reserve_commit_spans)
{
	struct bytebuf b;
	bytebuf_init(&b, 8192);
	uint8_t *span;
	size_t room = bytebuf_reserve(&b, 3000, &span);
	ck_assert_uint_eq(room, 3000);
	memset(span, 'a', room);
	bytebuf_commit(&b, room);
	char out[4096];
	ck_assert_uint_eq(bytebuf_read(&b, out, 2000), 2000);
	/* tail at 3000 of 4096: the next span stops at the end, the rest wraps to the front */
	room = bytebuf_reserve(&b, 2000, &span);
	ck_assert_uint_eq(room, 1096);
	bytebuf_commit(&b, room);
	room = bytebuf_reserve(&b, 904, &span);
	ck_assert_uint_eq(room, 904);
	bytebuf_commit(&b, room);
	ck_assert_uint_eq(bytebuf_length(&b), 3000);
	bytebuf_consume(&b, 99999);
	ck_assert_uint_eq(bytebuf_length(&b), 0);
	bytebuf_free(&b);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("bytebuf");
	TCase *tc = tcase_create("bytebuf");
	tcase_add_test(tc, test_empty_costs_nothing);
	tcase_add_test(tc, test_limit_is_enforced);
	tcase_add_test(tc, test_random_traffic_keeps_order);
	tcase_add_test(tc, test_reserve_commit_spans);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
