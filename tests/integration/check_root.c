/* The cases that need other users to try them, so root to become those users: who may attach
 * (attach-users, attach-groups), who may listen on a name a rule reserves (owner = :GROUP), and
 * who may use the control socket. Not root: the whole program reports SKIP (exit 77), never a
 * pass that checked nothing; CI runs as root and fails on any skip. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <wormhole/wormhole.h>

#include "app_harness.h"
#include "harness.h"

#define CTL TOP_BUILDDIR "/ctl/wormhole-ctl"

/* Takes the child's credentials: no supplementary group unless one is given. */
static bool become(uid_t uid, gid_t gid, gid_t supplementary)
{
	gid_t groups[1] = { supplementary };
	return setgroups(supplementary ? 1 : 0, groups) == 0 && setgid(gid) == 0 && setuid(uid) == 0;
}

/* The exit status of a child, 2 if it did not exit. */
static int child_status(pid_t pid)
{
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}

/* ---- who may attach ------------------------------------------------------------------ */

/* In a child with these credentials: attaches to the socket; exit 0 if the result is `want`. */
static int attach_as(const char *socket_path, uid_t uid, gid_t gid, gid_t supplementary, int want)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (!become(uid, gid, supplementary))
			_exit(3);
		wh_client *client = NULL;
		int rc = wh_client_attach(socket_path, &client);
		if (client)
			wh_client_detach(client);
		if (rc != want)
			fprintf(stderr, "attach as uid %u gid %u (+%u): %s, wanted %s\n", (unsigned)uid,
				(unsigned)gid, (unsigned)supplementary, wh_strerror(rc), wh_strerror(want));
		_exit(rc == want ? 0 : 1);
	}
	return child_status(pid);
}

START_TEST(test_attach_allow_list)
{
	struct process broker;
	const char *args[] = { "--attach-users", "1234", "--attach-groups", "4321",
			       "--socket-mode", "0666", NULL };
	ck_assert(broker_spawn(&broker, args));
	ck_assert_int_eq(chmod(broker.dir, 0755), 0); /* the socket mode, not the directory, decides */
	/* app_attach waits for the socket to come up, as root (always admitted) */
	wh_client_detach(app_attach(&broker));
	ck_assert_int_eq(attach_as(broker.socket_path, 65534, 65534, 0, WH_EACCESS), 0);
	ck_assert_int_eq(attach_as(broker.socket_path, 1234, 65534, 0, WH_OK), 0);
	ck_assert_int_eq(attach_as(broker.socket_path, 65534, 4321, 0, WH_OK), 0);
	ck_assert_int_eq(attach_as(broker.socket_path, 65534, 65534, 4321, WH_OK), 0);
	ck_assert(process_log_wait(&broker, "attach refused: pid=", 5));
	ck_assert(process_log_has(&broker, "uid=65534 gid=65534 is not in attach-users or attach-groups"));
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);

	/* without the lists, the socket's mode alone decides */
	const char *open_args[] = { "--socket-mode", "0666", NULL };
	ck_assert(broker_spawn(&broker, open_args));
	ck_assert_int_eq(chmod(broker.dir, 0755), 0);
	wh_client_detach(app_attach(&broker));
	ck_assert_int_eq(attach_as(broker.socket_path, 65534, 65534, 0, WH_OK), 0);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
}
END_TEST

/* ---- who may listen on a reserved name ------------------------------------------------ */

/* In a child with these credentials: attaches and listens on service; exit 0 if the listen's
 * result is `want`. */
static int listen_as(const char *socket_path, uid_t uid, gid_t gid, gid_t supplementary,
		     const char *service, int want)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (!become(uid, gid, supplementary))
			_exit(3);
		wh_client *client = NULL;
		int rc = wh_client_attach(socket_path, &client);
		if (rc == WH_OK)
			rc = wh_listen(client, service);
		if (client)
			wh_client_detach(client);
		if (rc != want)
			fprintf(stderr, "listen on %s as uid %u gid %u (+%u): %s, wanted %s\n", service,
				(unsigned)uid, (unsigned)gid, (unsigned)supplementary, wh_strerror(rc),
				wh_strerror(want));
		_exit(rc == want ? 0 : 1);
	}
	return child_status(pid);
}

/* `owner = :GROUP` admits the group's members as attach-groups does: by primary or by
 * supplementary group. */
START_TEST(test_service_owner_group_counts_supplementary_groups)
{
	char dir[64], path[96];
	harness_tempdir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/broker.conf", dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("[broker]\nlog-level = info\n[service web]\nowner = :4321\n", f);
	fclose(f);
	struct process broker;
	const char *args[] = { "--config", path, "--socket-mode", "0666", NULL };
	ck_assert(broker_spawn(&broker, args));
	ck_assert_int_eq(chmod(broker.dir, 0755), 0);
	wh_client_detach(app_attach(&broker)); /* the socket is up */
	ck_assert_int_eq(listen_as(broker.socket_path, 65534, 65534, 0, "web", WH_EACCESS), 0);
	ck_assert_int_eq(listen_as(broker.socket_path, 65534, 4321, 0, "web", WH_OK), 0);
	ck_assert_int_eq(listen_as(broker.socket_path, 65534, 65534, 4321, "web", WH_OK), 0);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

/* ---- who may use the control socket --------------------------------------------------- */

/* Runs wormhole-ctl ARGS as uid (gid the same, no supplementary group), its stdout and stderr
 * into the file `output`; its exit status, or -1. */
static int ctl_as(uid_t uid, const char *output, const char *const *args)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* opened before the privileges go: the build tree may sit in a directory only root
		 * may enter (CI's sanitizer trees are mktemp -d, mode 0700) */
		int program = open(CTL, O_RDONLY | O_CLOEXEC);
		int out = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (program < 0 || out < 0 || dup2(out, STDOUT_FILENO) < 0 || dup2(out, STDERR_FILENO) < 0)
			_exit(125);
		if (!become(uid, uid, 0))
			_exit(126);
		const char *argv[16] = { CTL };
		for (int i = 0; args[i] && i < 14; i++)
			argv[i + 1] = args[i];
		setenv("COLUMNS", "80", 1);
		extern char **environ;
		fexecve(program, (char *const *)argv, environ);
		_exit(127);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The control socket is the broker's user's: nobody is refused there, while it may attach to
 * the app socket (mode 0666). */
START_TEST(test_control_socket_refuses_other_users)
{
	char dir[64], output[96], control[400], err[4096];
	harness_tempdir(dir, sizeof dir);
	snprintf(output, sizeof output, "%s/ctl.out", dir);
	struct process broker;
	const char *open_mode[] = { "--socket-mode", "0666", NULL };
	ck_assert(broker_spawn(&broker, open_mode));
	snprintf(control, sizeof control, "%s/control.sock", broker.dir);
	struct stat st;
	ck_assert_int_eq(stat(control, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(chmod(broker.dir, 0755), 0); /* the sockets' modes decide, not the directory */
	const char *as_nobody[] = { "-s", control, "status", NULL };
	ck_assert_int_eq(ctl_as(65534, output, as_nobody), 3);
	FILE *f = fopen(output, "r");
	ck_assert_ptr_nonnull(f);
	err[fread(err, 1, sizeof err - 1, f)] = '\0';
	fclose(f);
	ck_assert_msg(strstr(err, "permission denied"), "wormhole-ctl said: %s", err);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (!become(65534, 65534, 0))
			_exit(2);
		wh_client *client = NULL;
		_exit(wh_client_attach(broker.socket_path, &client) == WH_OK ? 0 : 1);
	}
	ck_assert_int_eq(child_status(pid), 0);
	ck_assert_int_eq(process_stop(&broker, SIGTERM), 0);
	harness_cleanup_dir(dir);
}
END_TEST

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "check_root: needs root (to try as other users): skipped\n");
		return 77; /* automake's SKIP */
	}
	signal(SIGPIPE, SIG_IGN);
	Suite *suite = suite_create("root");
	TCase *tc = tcase_create("other users");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_attach_allow_list);
	tcase_add_test(tc, test_service_owner_group_counts_supplementary_groups);
	tcase_add_test(tc, test_control_socket_refuses_other_users);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
