/* Unit tests of the broker's Unix sockets: the app socket gets its mode and owner, and a link
 * planted at its path while it is being made is never followed (broker/unix_socket.c). */
#include "config.h"

#include <check.h>
#include <ev.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "apps.h"
#include "unix_socket.h"

/* The attack: right after the broker's bind succeeds, whatever is at plant_at is replaced by
 * a link to plant_target (a local user who may write the directory does this between the
 * bind and a chown or chmod by path). bind is taken over here, for the code under test. */
static const char *plant_at, *plant_target;
static int plants;

int bind(int fd, const struct sockaddr *addr, socklen_t length)
{
	int rc = (int)syscall(SYS_bind, fd, addr, length);
	if (rc == 0 && plant_at) {
		unlink(plant_at);
		if (symlink(plant_target, plant_at) == 0)
			plants++;
	}
	return rc;
}

/* The owner the socket is given: someone else when we may give files away, else ourselves. */
static uid_t other_uid(void)
{
	return geteuid() == 0 ? 65534 : geteuid();
}

static gid_t other_gid(void)
{
	return geteuid() == 0 ? 65534 : getegid();
}

struct fixture {
	char dir[64], path[96], target[96];
};

static void fixture_init(struct fixture *f)
{
	snprintf(f->dir, sizeof f->dir, "/tmp/wh-unix-socket-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/broker.sock", f->dir);
	snprintf(f->target, sizeof f->target, "%s/precious", f->dir);
	int fd = open(f->target, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

static void fixture_free(struct fixture *f)
{
	unlink(f->path);
	unlink(f->target);
	ck_assert_int_eq(rmdir(f->dir), 0); /* nothing left behind: no private directory either */
}

static void assert_socket(const char *path, unsigned mode)
{
	struct stat st;
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, mode);
	ck_assert_uint_eq(st.st_uid, other_uid());
	ck_assert_uint_eq(st.st_gid, other_gid());
}

static void assert_untouched(const char *target)
{
	struct stat st;
	ck_assert_int_eq(stat(target, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_uint_eq(st.st_uid, geteuid());
	ck_assert_uint_eq(st.st_gid, getegid());
}

static struct apps *apps_at(struct ev_loop *loop, const char *path, unsigned mode)
{
	struct apps_config config = {
		.socket_mode = mode, .socket_uid = other_uid(), .socket_gid = other_gid(),
		.ring_capacity = 1u << 20, .max_streams = 16, .accept_backlog = 16, .max_listeners = 4,
	};
	snprintf(config.socket_path, sizeof config.socket_path, "%s", path);
	return apps_start(loop, &config, NULL, NULL, NULL, NULL);
}

START_TEST(test_app_socket_gets_its_mode_and_owner)
{
	struct fixture f;
	fixture_init(&f);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct apps *apps = apps_at(loop, f.path, 0640);
	ck_assert_ptr_nonnull(apps);
	assert_socket(f.path, 0640);
	/* and it answers there */
	int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", f.path);
	ck_assert_int_eq(connect(probe, (struct sockaddr *)&addr, sizeof addr), 0);
	close(probe);
	apps_stop(apps);
	ck_assert_int_eq(access(f.path, F_OK), -1); /* removed at stop */
	ev_loop_destroy(loop);
	fixture_free(&f);
}
END_TEST

START_TEST(test_app_socket_never_follows_a_planted_link)
{
	struct fixture f;
	fixture_init(&f);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	plant_at = f.path;
	plant_target = f.target;
	plants = 0;
	struct apps *apps = apps_at(loop, f.path, 0666);
	plant_at = NULL;
	ck_assert_int_eq(plants, 1); /* the link was there before any chown or chmod */
	assert_untouched(f.target);
	/* the link was replaced by the socket, not followed */
	ck_assert_ptr_nonnull(apps);
	assert_socket(f.path, 0666);
	apps_stop(apps);
	ev_loop_destroy(loop);
	fixture_free(&f);
}
END_TEST

/* The same through the helper, for a stream socket (the control socket's kind). */
START_TEST(test_stream_socket_never_follows_a_planted_link)
{
	struct fixture f;
	fixture_init(&f);
	plant_at = f.path;
	plant_target = f.target;
	plants = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct stat made;
	int rc = unix_socket_bind(fd, f.path, 0600, (long)other_uid(), (long)other_gid(), 4, &made, NULL, "test");
	plant_at = NULL;
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(plants, 1);
	assert_untouched(f.target);
	assert_socket(f.path, 0600);
	struct stat st;
	ck_assert_int_eq(lstat(f.path, &st), 0);
	ck_assert(st.st_ino == made.st_ino && st.st_dev == made.st_dev);
	close(fd);
	fixture_free(&f);
}
END_TEST

/* A path whose private directory would not fit sun_path (a long directory, a short name)
 * still works, through /proc/self/fd; a failure leaves nothing behind. */
START_TEST(test_long_path_and_failure_leave_nothing)
{
	struct fixture f;
	fixture_init(&f);
	char sub[108], path[120];
	memset(sub, 0, sizeof sub);
	int n = snprintf(sub, sizeof sub, "%s/", f.dir);
	memset(sub + n, 'd', 100 - (size_t)n); /* a directory of 100 bytes */
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	snprintf(path, sizeof path, "%s/s.sock", sub); /* 107 bytes: the longest there is */
	ck_assert_uint_eq(strlen(path), 107);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct stat made;
	ck_assert_int_eq(unix_socket_bind(fd, path, 0600, -1, -1, 4, &made, NULL, "test"), 0);
	ck_assert_int_eq(lstat(path, &made), 0);
	ck_assert(S_ISSOCK(made.st_mode));
	ck_assert_uint_eq(made.st_mode & 0777, 0600);
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	memcpy(addr.sun_path, path, 107);
	ck_assert_int_eq(connect(probe, (struct sockaddr *)&addr, sizeof addr), 0);
	close(probe);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(rmdir(sub), 0); /* nothing else was left in it */
	close(fd);
	snprintf(path, sizeof path, "%s/long.sock", f.dir);
	/* an already bound socket cannot be bound again: the error comes back, no leftovers */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(unix_socket_bind(fd, f.path, 0600, -1, -1, 4, &made, NULL, "test"), 0);
	ck_assert_int_eq(unix_socket_bind(fd, path, 0600, -1, -1, 4, &made, NULL, "test"), -1);
	ck_assert_int_eq(access(path, F_OK), -1);
	close(fd);
	fixture_free(&f);
}
END_TEST

static Suite *unix_socket_suite(void)
{
	Suite *suite = suite_create("unix_socket");
	TCase *tc = tcase_create("unix_socket");
	tcase_add_test(tc, test_app_socket_gets_its_mode_and_owner);
	tcase_add_test(tc, test_app_socket_never_follows_a_planted_link);
	tcase_add_test(tc, test_stream_socket_never_follows_a_planted_link);
	tcase_add_test(tc, test_long_path_and_failure_leave_nothing);
	suite_add_tcase(suite, tc);
	return suite;
}

int main(void)
{
	SRunner *runner = srunner_create(unix_socket_suite());
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
