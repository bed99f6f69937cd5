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

static struct service_rules example_rules(void)
{
	struct service_rules r = { .count = 4 };
	r.rules[0] = (struct service_rule){ .name = "secret", .peers_set = true, .peer_count = 1,
					    .peers = { "c" }, .local = false, .owner_uid = -1,
					    .owner_gid = -1 };
	r.rules[1] = (struct service_rule){ .name = "public", .peers_set = true, .any_peer = true,
					    .local = true, .owner_uid = -1, .owner_gid = -1 };
	r.rules[2] = (struct service_rule){ .name = "web", .local = true, .owner_uid = 1000,
					    .owner_gid = 50 };
	r.rules[3] = (struct service_rule){ .name = "echo", .local = true, .owner_uid = -1,
					    .owner_gid = 70 };
	return r;
}

START_TEST(test_peer_rules)
{
	struct service_rules r = example_rules();
	const char *why = NULL;
	/* named peers: only those, and only with a certificate: "c" over TLS (its certificate
	 * names it) may, from afar or from loopback; another name over TLS may not */
	ck_assert_int_eq(service_peer_may_open(&r, "secret", "c", true, false, &why), WH_OK);
	ck_assert_int_eq(service_peer_may_open(&r, "secret", "c", true, true, &why), WH_OK);
	ck_assert_int_eq(service_peer_may_open(&r, "secret", "b", true, false, &why), WH_EACCESS);
	ck_assert_str_eq(why, "this peer is not among the service's peers");
	/* a name without TLS proves nothing: refused, even the right name, even from loopback */
	why = NULL;
	ck_assert_int_eq(service_peer_may_open(&r, "secret", "c", false, true, &why), WH_EACCESS);
	ck_assert_str_eq(why, "the service's peers are named by certificate: this link has no TLS");
	ck_assert_int_eq(service_peer_may_open(&r, "secret", "c", false, false, &why), WH_EACCESS);
	/* and a plaintext peer with no identity at all, as the broker passes it */
	ck_assert_int_eq(service_peer_may_open(&r, "secret", "", false, true, &why), WH_EACCESS);
	/* TLS whose certificate names nobody is not any named peer */
	ck_assert_int_eq(service_peer_may_open(&r, "secret", "", true, true, &why), WH_EACCESS);
	/* '*': every peer, plaintext ones too */
	ck_assert_int_eq(service_peer_may_open(&r, "public", "", false, false, &why), WH_OK);
	/* no rule: authenticated peers, or plaintext from loopback; not plaintext from afar */
	ck_assert_int_eq(service_peer_may_open(&r, "other", "b", true, false, &why), WH_OK);
	ck_assert_int_eq(service_peer_may_open(&r, "other", "", false, true, &why), WH_OK);
	ck_assert_int_eq(service_peer_may_open(&r, "other", "", false, false, &why), WH_EACCESS);
}
END_TEST

/* An app's credentials with no supplementary groups. */
#define WHO(uid, gid) (&(struct app_credentials){ (uid), (gid), NULL, 0 })

START_TEST(test_app_rules)
{
	struct service_rules r = example_rules();
	const char *why = NULL;
	/* owners: the user or the group */
	ck_assert_int_eq(service_app_may_listen(&r, "web", "echo", WHO(1000, 1), &why), WH_OK);
	ck_assert_int_eq(service_app_may_listen(&r, "web", "echo", WHO(1, 50), &why), WH_OK);
	ck_assert_int_eq(service_app_may_listen(&r, "web", "echo", WHO(0, 0), &why), WH_EACCESS);
	/* the default service: nobody, unless its rule names an owner */
	ck_assert_int_eq(service_app_may_listen(&r, "discard", "discard", WHO(1000, 50), &why), WH_EACCESS);
	ck_assert_int_eq(service_app_may_listen(&r, "echo", "echo", WHO(1, 70), &why), WH_OK);
	ck_assert_int_eq(service_app_may_listen(&r, "echo", "echo", WHO(1, 71), &why), WH_EACCESS);
	ck_assert_int_eq(service_app_may_listen(&r, "anything", "echo", WHO(5, 5), &why), WH_OK);
	/* the built-in services are the broker's too, whichever is the default */
	ck_assert_int_eq(service_app_may_listen(&r, "discard", "echo", WHO(5, 5), &why), WH_EACCESS);
	ck_assert_str_eq(why, "a built-in service is the broker's unless a [service] rule names its owner");
	ck_assert_int_eq(service_app_may_listen(&r, "echo", "discard", WHO(5, 5), &why), WH_EACCESS);
	/* owner = :GROUP admits a supplementary group, as attach-groups does */
	const uint32_t groups[] = { 3, 50 };
	ck_assert_int_eq(service_app_may_listen(&r, "web", "echo", &(struct app_credentials){ 1, 1, groups, 2 }, &why), WH_OK);
	ck_assert_int_eq(service_app_may_listen(&r, "web", "echo", &(struct app_credentials){ 1, 1, groups, 1 }, &why), WH_EACCESS);
	/* local opens */
	ck_assert_int_eq(service_app_may_open(&r, "secret", &why), WH_EACCESS);
	ck_assert_int_eq(service_app_may_open(&r, "public", &why), WH_OK);
	ck_assert_int_eq(service_app_may_open(&r, "none-such", &why), WH_OK);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("services");
	TCase *tc = tcase_create("registry");
	tcase_add_test(tc, test_one_owner_per_name);
	tcase_add_test(tc, test_random_against_model);
	tcase_add_test(tc, test_peer_rules);
	tcase_add_test(tc, test_app_rules);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
