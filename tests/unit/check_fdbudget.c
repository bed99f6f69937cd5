/* Unit tests of the descriptor budget: what it admits is the process limit less what was
 * already held at start (the baseline) and less the reserve for the use, and every descriptor
 * it admits can really be opened. */
#include "config.h"

#include <check.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fdbudget.h"

/* The arithmetic, on a budget whose numbers the test chose: the baseline counts against every
 * use, the reserve against streams wholly and sessions by half. */
START_TEST(test_baseline_and_reserve_come_off_the_limit)
{
	struct fd_budget b = { .limit = 1000, .baseline = 300, .reserve = 100, .spare_fd = -1 };
	ck_assert_uint_eq(fd_budget_available(&b, FD_USE_STREAM), 1000 - 300 - 100);
	ck_assert_uint_eq(fd_budget_available(&b, FD_USE_SESSION), 1000 - 300 - 50);
	ck_assert_uint_eq(fd_budget_available(&b, FD_USE_ANSWER), 1000 - 300);
	ck_assert(fd_budget_take(&b, 600, FD_USE_STREAM));
	ck_assert(!fd_budget_take(&b, 1, FD_USE_STREAM));
	ck_assert_uint_eq(b.refused, 1);
	ck_assert(fd_budget_take(&b, 50, FD_USE_SESSION));
	ck_assert(!fd_budget_take(&b, 1, FD_USE_SESSION));
	ck_assert(fd_budget_take(&b, 50, FD_USE_ANSWER));
	ck_assert_uint_eq(fd_budget_available(&b, FD_USE_ANSWER), 0);
	ck_assert(!fd_budget_take(&b, 1, FD_USE_ANSWER));
	fd_budget_give(&b, 700);
	ck_assert_uint_eq(b.used, 0);
	/* a baseline above the limit leaves nothing, not a wrapped-around count */
	b.baseline = 2000;
	ck_assert_uint_eq(fd_budget_available(&b, FD_USE_ANSWER), 0);
}
END_TEST

/* init counts what the process holds when it is called, plus the fixed needs it is told of. */
START_TEST(test_init_counts_descriptors_held_and_fixed_needs)
{
	enum { EXTRA = 40, FIXED = 7 };
	struct fd_budget before, after;
	fd_budget_init(&before, 16, 0);
	fd_budget_release(&before); /* its spare is counted again by the next one */
	int held[EXTRA];
	for (int i = 0; i < EXTRA; i++) {
		held[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		ck_assert_int_ge(held[i], 0);
	}
	fd_budget_init(&after, 16, FIXED);
	ck_assert_uint_eq(after.baseline, before.baseline + EXTRA + FIXED);
	struct rlimit limit;
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &limit), 0);
	ck_assert_uint_eq(after.limit, limit.rlim_cur);
	fd_budget_release(&after);
	for (int i = 0; i < EXTRA; i++)
		close(held[i]);
}
END_TEST

/* Takes descriptors for `use` one at a time until the budget says no, opening each: every
 * one the budget admits must open. Returns how many it took. */
static unsigned take_and_open(struct fd_budget *b, enum fd_use use, int *fds, unsigned *n, unsigned cap)
{
	unsigned taken = 0;
	while (*n < cap && fd_budget_take(b, 1, use)) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		ck_assert_msg(fd >= 0, "the budget admitted descriptor %u, the kernel had none (%s)", *n + 1,
			      strerror(errno));
		fds[(*n)++] = fd;
		taken++;
	}
	return taken;
}

/* Under a small real limit: the budget admits exactly the limit less what was held at init
 * and less the reserve, and the kernel has a descriptor for every one it admits, down to the
 * last one of the reserve. A budget that forgot the descriptors already open would admit more
 * than the kernel gives. */
START_TEST(test_every_admitted_descriptor_opens_under_a_real_limit)
{
	enum { LIMIT = 96, RESERVE = 16 };
	struct rlimit saved, small;
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
	small = saved;
	small.rlim_cur = saved.rlim_max < LIMIT ? saved.rlim_max : LIMIT;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &small), 0);
	struct fd_budget b;
	fd_budget_init(&b, RESERVE, 0);
	ck_assert_uint_eq(b.limit, small.rlim_cur);
	ck_assert_uint_lt(b.baseline + RESERVE, b.limit);
	int fds[LIMIT];
	unsigned n = 0;
	ck_assert_uint_eq(take_and_open(&b, FD_USE_STREAM, fds, &n, LIMIT), b.limit - RESERVE - b.baseline);
	ck_assert_uint_eq(take_and_open(&b, FD_USE_SESSION, fds, &n, LIMIT), RESERVE / 2);
	ck_assert_uint_eq(take_and_open(&b, FD_USE_ANSWER, fds, &n, LIMIT), RESERVE - RESERVE / 2);
	ck_assert_uint_eq(b.baseline + b.used, b.limit);
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
	fd_budget_give(&b, n);
	fd_budget_release(&b);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
}
END_TEST

/* Starved past the spare (the limit lowered under every descriptor held), the spare is gone:
 * it comes back once a descriptor can be had again, so the next exhaustion sheds clients at
 * once. Before, only a successful shed reopened it, and that needs the spare. */
START_TEST(test_spare_comes_back_after_a_starvation)
{
	struct rlimit saved, starved;
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
	struct fd_budget b;
	fd_budget_init(&b, 16, 0);
	ck_assert_int_ge(b.spare_fd, 0);
	int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t length = sizeof address;
	ck_assert_int_eq(bind(listener, (struct sockaddr *)&address, sizeof address), 0);
	ck_assert_int_eq(listen(listener, 8), 0);
	ck_assert_int_eq(getsockname(listener, (struct sockaddr *)&address, &length), 0);
	int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(client, (struct sockaddr *)&address, sizeof address), 0);
	starved = saved;
	starved.rlim_cur = 3; /* below every descriptor but the standard three */
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &starved), 0);
	bool shed = false;
	int fd = fd_budget_accept(&b, listener, FD_USE_STREAM, &shed);
	int error = errno;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
	ck_assert_int_lt(fd, 0);
	ck_assert_int_eq(error, EMFILE);
	ck_assert_int_lt(b.spare_fd, 0); /* lost with the starvation */
	/* descriptors again: the next accept has its spare first, and takes the client */
	fd = fd_budget_accept(&b, listener, FD_USE_STREAM, &shed);
	ck_assert_int_ge(b.spare_fd, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert(!shed);
	close(fd);
	fd_budget_give(&b, 1);
	ck_assert_int_ge(b.spare_fd, 0);
	close(client);
	close(listener);
	fd_budget_release(&b);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("fdbudget");
	TCase *tc = tcase_create("budget");
	tcase_add_test(tc, test_baseline_and_reserve_come_off_the_limit);
	tcase_add_test(tc, test_init_counts_descriptors_held_and_fixed_needs);
	tcase_add_test(tc, test_every_admitted_descriptor_opens_under_a_real_limit);
	tcase_add_test(tc, test_spare_comes_back_after_a_starvation);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
