/* Unit tests of the error table: names, messages, stability of values. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <wormhole/errors.h>
#include <wormhole/wormhole.h>

START_TEST(test_every_code_has_name_and_message)
{
	int seen = 0;
#define CHECK_ENTRY(name, value, message)                                            \
	ck_assert_int_lt((value), 0);                                                 \
	ck_assert_str_eq(wh_error_name(value), "WH_" #name);                          \
	ck_assert_str_eq(wh_strerror(value), (message));                              \
	ck_assert_str_ne(wh_strerror(value), "unknown error");                        \
	seen++;
	WH_ERROR_TABLE(CHECK_ENTRY)
#undef CHECK_ENTRY
	ck_assert_int_ge(seen, 29);
}
END_TEST

START_TEST(test_codes_are_unique)
{
	static const int codes[] = {
#define CODE(name, value, message) (value),
		WH_ERROR_TABLE(CODE)
#undef CODE
	};
	size_t n = sizeof codes / sizeof codes[0];
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			ck_assert_int_ne(codes[i], codes[j]);
}
END_TEST

START_TEST(test_ok_and_unknown)
{
	ck_assert_str_eq(wh_error_name(WH_OK), "WH_OK");
	ck_assert_str_eq(wh_strerror(WH_OK), "success");
	ck_assert_ptr_null(wh_error_name(-9999));
	ck_assert_str_eq(wh_strerror(-9999), "unknown error");
	ck_assert_str_eq(wh_strerror(42), "unknown error");
}
END_TEST

/* The values are ABI: these pins fail if anyone renumbers the table. */
START_TEST(test_values_are_pinned)
{
	ck_assert_int_eq(WH_EINVAL, -1);
	ck_assert_int_eq(WH_EINVALID_VERSION, -10);
	ck_assert_int_eq(WH_EMUX_CLOSED, -22);
	ck_assert_int_eq(WH_EPROTOCOL, -30);
	ck_assert_int_eq(WH_ELIMIT, -38);
	ck_assert_int_eq(WH_ESERVICE_TAKEN, -42);
	ck_assert_int_eq(WH_ETLS, -43);
	ck_assert_int_eq(WH_EACCESS, -44);
	ck_assert_str_eq(wh_strerror(WH_EINVALID_VERSION), "invalid frame version");
	ck_assert_str_eq(wh_strerror(WH_ESTREAM_ALREADY_EXISTS), "stream already exists");
}
END_TEST

static Suite *error_suite(void)
{
	Suite *suite = suite_create("error");
	TCase *tc = tcase_create("table");
	tcase_add_test(tc, test_every_code_has_name_and_message);
	tcase_add_test(tc, test_codes_are_unique);
	tcase_add_test(tc, test_ok_and_unknown);
	tcase_add_test(tc, test_values_are_pinned);
	suite_add_tcase(suite, tc);
	return suite;
}

int main(void)
{
	SRunner *runner = srunner_create(error_suite());
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
