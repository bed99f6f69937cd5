/* Unit tests of the stream id hash map, against a plain array as the model. */
#include "config.h"

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <wormhole/errors.h>

#include "stream_table.h"

START_TEST(test_basic)
{
	struct stream_table t;
	int a = 1, b = 2;
	ck_assert_int_eq(stream_table_init(&t), WH_OK);
	ck_assert_int_eq(stream_table_insert(&t, 0, &a), WH_EINVAL);
	ck_assert_int_eq(stream_table_insert(&t, 5, NULL), WH_EINVAL);
	ck_assert_int_eq(stream_table_insert(&t, 5, &a), WH_OK);
	ck_assert_int_eq(stream_table_insert(&t, 5, &b), WH_ESTREAM_ALREADY_EXISTS);
	ck_assert_ptr_eq(stream_table_find(&t, 5), &a);
	ck_assert_ptr_null(stream_table_find(&t, 7));
	ck_assert_ptr_null(stream_table_find(&t, 0));
	ck_assert_ptr_eq(stream_table_remove(&t, 5), &a);
	ck_assert_ptr_null(stream_table_remove(&t, 5));
	ck_assert_uint_eq(t.count, 0);
	stream_table_free(&t);
}
END_TEST

static void count_entries(void *value, void *arg)
{
	(void)value;
	(*(size_t *)arg)++;
}

/* Random inserts and removals of 20,000 ids (sequential odd ones and random ones). */
START_TEST(test_random_against_model)
{
	enum { N = 20000 };
	static uint32_t ids[N];
	static bool present[N];
	struct stream_table t;
	ck_assert_int_eq(stream_table_init(&t), WH_OK);
	unsigned seed = 99;
	for (int i = 0; i < N; i++)
		ids[i] = i < N / 2 ? (uint32_t)(2 * i + 1) : ((uint32_t)rand_r(&seed) << 1 | 1u) + 2u * N;
	size_t live = 0;
	for (int round = 0; round < 200000; round++) {
		int i = rand_r(&seed) % N;
		if (present[i]) {
			ck_assert_ptr_eq(stream_table_remove(&t, ids[i]), &ids[i]);
			present[i] = false;
			live--;
		} else {
			int rc = stream_table_insert(&t, ids[i], &ids[i]);
			ck_assert(rc == WH_OK || rc == WH_ESTREAM_ALREADY_EXISTS); /* random id clash */
			if (rc == WH_OK) {
				present[i] = true;
				live++;
			}
		}
		if (round % 997 == 0)
			for (int j = 0; j < N; j++)
				if (present[j])
					ck_assert_ptr_eq(stream_table_find(&t, ids[j]), &ids[j]);
	}
	ck_assert_uint_eq(t.count, live);
	size_t counted = 0;
	stream_table_each(&t, count_entries, &counted);
	ck_assert_uint_eq(counted, live);
	stream_table_free(&t);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("stream_table");
	TCase *tc = tcase_create("table");
	tcase_add_test(tc, test_basic);
	tcase_add_test(tc, test_random_against_model);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
