/* broker/penalty.c: strikes of peers cut off for abuse, and how long their next connection
 * waits. Pure: the time is passed in. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "penalty.h"

static struct penalty *fresh(void)
{
	static const uint8_t key[PENALTY_KEY_BYTES] = { 9, 8, 7, 6, 5, 4, 3, 2, 1 };
	struct penalty *p = malloc(sizeof *p);
	ck_assert_ptr_nonnull(p);
	penalty_init(p, key);
	return p;
}

/* No strike, no hold; each strike doubles the hold, up to PENALTY_MAX, counted from the
 * strike; other names are not touched. */
START_TEST(test_holds_double_up_to_the_most)
{
	struct penalty *p = fresh();
	ck_assert(penalty_hold(p, "address:10.0.0.1", 100.0, NULL) == 0.0);
	ck_assert_uint_eq(penalty_strike(p, "address:10.0.0.1", 100.0), 1);
	unsigned strikes = 0;
	ck_assert_double_eq_tol(penalty_hold(p, "address:10.0.0.1", 100.0, &strikes), PENALTY_BASE, 1e-9);
	ck_assert_uint_eq(strikes, 1);
	ck_assert_double_eq_tol(penalty_hold(p, "address:10.0.0.1", 100.1, NULL), PENALTY_BASE - 0.1, 1e-9);
	ck_assert(penalty_hold(p, "address:10.0.0.1", 100.0 + PENALTY_BASE, NULL) == 0.0);
	ck_assert(penalty_hold(p, "address:10.0.0.2", 100.0, NULL) == 0.0);
	ck_assert(penalty_hold(p, "id:10.0.0.1", 100.0, NULL) == 0.0);
	double expected = PENALTY_BASE;
	for (unsigned n = 2; n <= 12; n++) {
		ck_assert_uint_eq(penalty_strike(p, "address:10.0.0.1", 100.0 + n), n);
		expected = expected * 2 < PENALTY_MAX ? expected * 2 : PENALTY_MAX;
		ck_assert_double_eq_tol(penalty_hold(p, "address:10.0.0.1", 100.0 + n, NULL), expected, 1e-9);
	}
	ck_assert_double_eq_tol(expected, PENALTY_MAX, 1e-9);
	free(p);
}
END_TEST

/* Strikes are forgotten PENALTY_FORGET seconds after the last: the next one is a first. */
START_TEST(test_strikes_are_forgotten)
{
	struct penalty *p = fresh();
	for (unsigned n = 1; n <= 5; n++)
		penalty_strike(p, "id:b", 10.0 + n);
	ck_assert_uint_eq(penalty_strike(p, "id:b", 15.0 + PENALTY_FORGET), 6);
	ck_assert_uint_eq(penalty_strike(p, "id:b", 15.1 + 2 * PENALTY_FORGET), 1);
	unsigned strikes = 9;
	ck_assert(penalty_hold(p, "id:b", 15.2 + 3 * PENALTY_FORGET, &strikes) == 0.0);
	ck_assert_uint_eq(strikes, 0);
	free(p);
}
END_TEST

/* A full table makes room with the entry struck longest ago; the others keep their strikes. */
START_TEST(test_full_table_evicts_the_oldest)
{
	struct penalty *p = fresh();
	char name[32];
	for (unsigned i = 0; i < PENALTY_SLOTS; i++) {
		snprintf(name, sizeof name, "address:10.1.%u.%u", i / 256, i % 256);
		penalty_strike(p, name, 1.0 + i * 0.01);
		penalty_strike(p, name, 1.0 + i * 0.01);
	}
	penalty_strike(p, "address:192.0.2.7", 5.0);
	unsigned strikes = 0;
	ck_assert(penalty_hold(p, "address:10.1.0.0", 5.0, &strikes) == 0.0); /* the oldest: gone */
	ck_assert_uint_eq(strikes, 0);
	ck_assert(penalty_hold(p, "address:10.1.0.1", 1.02, &strikes) > 0.0);
	ck_assert_uint_eq(strikes, 2);
	ck_assert(penalty_hold(p, "address:192.0.2.7", 5.0, &strikes) > 0.0);
	ck_assert_uint_eq(strikes, 1);
	free(p);
}
END_TEST

/* A strike "after" now (the clock went back) holds for the strike's delay at most, never for
 * the clock's step: an hour back held every new connection for an hour. */
START_TEST(test_clock_going_back_holds_no_longer)
{
	struct penalty *p = fresh();
	penalty_strike(p, "id:b", 5000.0);
	ck_assert_double_le(penalty_hold(p, "id:b", 1400.0, NULL), PENALTY_BASE);
	free(p);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("penalty");
	TCase *tc = tcase_create("penalty");
	tcase_add_test(tc, test_holds_double_up_to_the_most);
	tcase_add_test(tc, test_strikes_are_forgotten);
	tcase_add_test(tc, test_full_table_evicts_the_oldest);
	tcase_add_test(tc, test_clock_going_back_holds_no_longer);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
