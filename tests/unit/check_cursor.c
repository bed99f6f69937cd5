/* Unit tests of the shared cursor (shared/cursor.h): bounds, byte orders, sticky failure. */
#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "cursor.h"

START_TEST(test_round_trip_both_byte_orders)
{
	uint8_t buffer[32];
	struct cursor w = cursor_writer(buffer, sizeof buffer);
	cursor_put_u8(&w, 0xab);
	cursor_put_u32be(&w, 0x01020304u);
	cursor_put_u32le(&w, 0x01020304u);
	cursor_put_u64le(&w, 0x1122334455667788ull);
	cursor_put_bytes(&w, "xyz", 3);
	ck_assert(!w.failed);
	ck_assert_uint_eq(w.at, 1 + 4 + 4 + 8 + 3);
	/* the byte orders, as they lie in memory */
	ck_assert_uint_eq(buffer[1], 0x01);
	ck_assert_uint_eq(buffer[4], 0x04);
	ck_assert_uint_eq(buffer[5], 0x04);
	ck_assert_uint_eq(buffer[8], 0x01);
	struct cursor r = cursor_reader(buffer, w.at);
	ck_assert_uint_eq(cursor_get_u8(&r), 0xab);
	ck_assert_uint_eq(cursor_get_u32be(&r), 0x01020304u);
	ck_assert_uint_eq(cursor_get_u32le(&r), 0x01020304u);
	ck_assert(cursor_get_u64le(&r) == 0x1122334455667788ull);
	char text[3];
	cursor_get_bytes(&r, text, 3);
	ck_assert(!r.failed);
	ck_assert_int_eq(memcmp(text, "xyz", 3), 0);
	ck_assert_uint_eq(r.at, r.length);
}
END_TEST

/* An overrun writes nothing past the end, and every later call does nothing. */
START_TEST(test_overrun_sticks)
{
	uint8_t buffer[8];
	memset(buffer, 0xee, sizeof buffer);
	struct cursor w = cursor_writer(buffer, 6);
	cursor_put_u32be(&w, 1);
	cursor_put_u32be(&w, 2); /* 8 > 6: refused whole */
	ck_assert(w.failed);
	ck_assert_uint_eq(w.at, 4);
	cursor_put_u8(&w, 3);
	ck_assert_uint_eq(w.at, 4);
	ck_assert_uint_eq(buffer[4], 0xee);
	ck_assert_uint_eq(buffer[6], 0xee);

	struct cursor r = cursor_reader(buffer, 5);
	ck_assert_uint_eq(cursor_get_u32be(&r), 1);
	ck_assert_uint_eq(cursor_get_u32le(&r), 0); /* 1 byte left: zeros, failed */
	ck_assert(r.failed);
	ck_assert_uint_eq(cursor_get_u8(&r), 0); /* the byte that is there is not read either */
	ck_assert_uint_eq(r.at, 4);
}
END_TEST

/* A reader cannot write and a writer cannot read. */
START_TEST(test_direction_is_fixed)
{
	uint8_t buffer[8] = { 1, 2, 3, 4 };
	struct cursor r = cursor_reader(buffer, sizeof buffer);
	cursor_put_u8(&r, 9);
	ck_assert(r.failed);
	ck_assert_uint_eq(buffer[0], 1);
	struct cursor w = cursor_writer(buffer, sizeof buffer);
	ck_assert_uint_eq(cursor_get_u8(&w), 0);
	ck_assert(w.failed);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("cursor");
	TCase *tc = tcase_create("cursor");
	tcase_add_test(tc, test_round_trip_both_byte_orders);
	tcase_add_test(tc, test_overrun_sticks);
	tcase_add_test(tc, test_direction_is_fixed);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
