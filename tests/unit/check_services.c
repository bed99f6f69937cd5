/* Unit tests of the listener registry (service name -> owner), against a plain array model. */
#include "config.h"

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <wormhole/errors.h>

#include "services.h"

START_TEST(test_one_owner_per_name)
{
	struct service_registry r;
	int app1, app2;
	service_registry_init(&r);
	ck_assert_ptr_null(service_registry_find(&r, "echo"));
	ck_assert_int_eq(service_registry_remove(&r, "echo", &app1), WH_ENO_SERVICE);
	ck_assert_int_eq(service_registry_add(&r, "web", &app1), WH_OK);
	ck_assert_int_eq(service_registry_add(&r, "", &app1), WH_OK); /* the default service */
	ck_assert_int_eq(service_registry_add(&r, "web", &app2), WH_ESERVICE_TAKEN);
	ck_assert_int_eq(service_registry_add(&r, "web", &app1), WH_ESERVICE_TAKEN);
	ck_assert_ptr_eq(service_registry_find(&r, "web"), &app1);
	ck_assert_ptr_eq(service_registry_find(&r, ""), &app1);
	ck_assert_ptr_null(service_registry_find(&r, "we"));
	/* only the owner may take its name back */
	ck_assert_int_eq(service_registry_remove(&r, "web", &app2), WH_ENO_SERVICE);
	ck_assert_ptr_eq(service_registry_find(&r, "web"), &app1);
	ck_assert_int_eq(service_registry_remove(&r, "web", &app1), WH_OK);
	ck_assert_int_eq(service_registry_add(&r, "web", &app2), WH_OK);
	ck_assert_uint_eq(service_registry_remove_owner(&r, &app1), 1);
	ck_assert_ptr_null(service_registry_find(&r, ""));
	ck_assert_ptr_eq(service_registry_find(&r, "web"), &app2);
	ck_assert_uint_eq(r.count, 1);
	service_registry_free(&r);
	ck_assert_ptr_null(service_registry_find(&r, "web"));
}
END_TEST

/* Many names, three owners, random adds and removes: the registry agrees with the model
 * through every growth of its table, and an owner's names all go at once. */
START_TEST(test_random_against_model)
{
	enum { NAMES = 20000, OWNERS = 3 };
	static int owners[OWNERS];
	static int *model[NAMES];
	char name[32];
	struct service_registry r;
	service_registry_init(&r);
	unsigned seed = 7;
	size_t live = 0;
	for (int i = 0; i < 200000; i++) {
		int n = rand_r(&seed) % NAMES;
		int *owner = &owners[rand_r(&seed) % OWNERS];
		snprintf(name, sizeof name, "service-%d", n);
		if (rand_r(&seed) % 3) {
			int expect = model[n] ? WH_ESERVICE_TAKEN : WH_OK;
			ck_assert_int_eq(service_registry_add(&r, name, owner), expect);
			if (!model[n]) {
				model[n] = owner;
				live++;
			}
		} else {
			int expect = model[n] == owner ? WH_OK : WH_ENO_SERVICE;
			ck_assert_int_eq(service_registry_remove(&r, name, owner), expect);
			if (model[n] == owner) {
				model[n] = NULL;
				live--;
			}
		}
	}
	ck_assert_uint_eq(r.count, live);
	for (int n = 0; n < NAMES; n++) {
		snprintf(name, sizeof name, "service-%d", n);
		ck_assert_ptr_eq(service_registry_find(&r, name), model[n]);
	}
	size_t held = 0;
	for (int n = 0; n < NAMES; n++)
		held += model[n] == &owners[1];
	ck_assert_uint_eq(service_registry_remove_owner(&r, &owners[1]), held);
	ck_assert_uint_eq(r.count, live - held);
	for (int n = 0; n < NAMES; n++) {
		snprintf(name, sizeof name, "service-%d", n);
		ck_assert_ptr_eq(service_registry_find(&r, name),
				 model[n] == &owners[1] ? NULL : model[n]);
	}
	service_registry_free(&r);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("services");
	TCase *tc = tcase_create("registry");
	tcase_add_test(tc, test_one_owner_per_name);
	tcase_add_test(tc, test_random_against_model);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
