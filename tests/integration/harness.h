/* Integration-test helpers: real processes, temporary directories, bounded waits. */
#ifndef WORMHOLE_TESTS_HARNESS_H
#define WORMHOLE_TESTS_HARNESS_H

#include <ev.h>
#include <stdbool.h>
#include <sys/types.h>

struct process {
	pid_t pid;
	unsigned port;        /* from the port file, once up */
	char dir[256];        /* its temporary directory */
	char port_file[300];
	char log_file[300];
	char socket_path[300]; /* brokers: where apps attach */
	bool keep_log;         /* process_wait keeps the directory even after a clean exit */
};

/* A fresh temporary directory (removed by harness_cleanup_dir). */
void harness_tempdir(char *out, size_t len);
void harness_cleanup_dir(const char *dir);

/* Starts the built wormhole-broker listening on an ephemeral loopback port with extra
 * arguments (NULL-terminated), and waits (bounded) until it has written its port file. */
bool broker_spawn(struct process *p, const char *const *extra_args);
/* Starts tests/refpeer with arguments; if port_file is set, waits for the port like above. */
bool refpeer_spawn(struct process *p, const char *const *args, bool wait_port);
/* Starts a built program (path relative to the build tree) with arguments; output to its log. */
bool app_spawn(struct process *p, const char *program, const char *const *args);
/* Descriptors the process has open now, or -1. */
int process_fd_count(const struct process *p);
/* Resident memory of the process in KiB, or -1. */
long process_rss_kib(const struct process *p);
/* CPU time the process has used (user + system), in clock ticks (1/100 s), or -1. */
long process_cpu_ticks(const struct process *p);
/* Sends signal and waits for exit (bounded), then removes the process's temporary directory.
 * Returns the exit status, or -1 (also when it had already been reaped). */
int process_stop(struct process *p, int signal);
/* Waits (bounded) for the process to exit by itself; returns its exit status or -1. An exit
 * status of 0 removes its directory (unless keep_log); otherwise the log stays for
 * process_dump_log. process_stop removes it in any case. */
int process_wait(struct process *p, double timeout);
/* Runs a built program (path relative to the build tree) to completion (10 s bound): its
 * exit status, and what it printed (stdout and stderr) in output. */
int process_run(const char *program, const char *const *args, char *output, size_t len);
/* Certificates for broker names (space-separated) from scripts/make-certs.sh in dir (one CA per
 * dir, made on the first call); false if the script failed. */
bool harness_make_certs(const char *dir, const char *names);
/* The TLS arguments of a broker with certificate NAME from dir. */
struct harness_tls {
	char cert[300], key[300], ca[300];
	const char *argv[7]; /* --tls-cert, --tls-key, --tls-ca with values, NULL */
};
const char *const *harness_tls_args(struct harness_tls *tls, const char *dir, const char *name);
/* True if a line of the process's log contains text. */
bool process_log_has(const struct process *p, const char *text);
/* Waits (bounded) until a line of the process's log contains text; returns whether it did. */
bool process_log_wait(const struct process *p, const char *text, double timeout);
/* Dumps the process log to stderr (for failing tests). */
void process_dump_log(const struct process *p);

/* Runs the loop until predicate(arg) is true or timeout seconds pass; returns the predicate. */
bool run_until(struct ev_loop *loop, bool (*predicate)(void *), void *arg, double timeout);
/* Without a loop: looks at predicate(arg) every 10 ms until it is true or timeout seconds
 * pass (for conditions in other processes); returns the predicate. */
bool poll_until(bool (*predicate)(void *), void *arg, double timeout);
/* Runs the loop for a fixed time (for "nothing happens" checks, never as a wait). */
void run_for(struct ev_loop *loop, double seconds);

/* Seconds on the monotonic clock (for deadlines and for timing what a test measures). */
double harness_now(void);
/* Whether the process runs (started, not exited; a zombie is reaped and counts as ended). */
bool process_alive(const struct process *p);
/* How many lines of the process's log contain text. */
int process_log_count(const struct process *p, const char *text);
/* Whether name is a whole word of the space-separated list (ATTACKS="name ..."). */
bool harness_name_listed(const char *list, const char *name);
/* Runs a shell command (printf format) to completion; false, with the command on stderr, if
 * it did not exit 0. */
bool harness_run_shell(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* ---- child programs (not brokers): from PATH, output to a log, dying with the test ---------- */

/* Starts argv[0] from PATH in dir (NULL: here) with stdout and stderr appended to log. The
 * child gets SIGTERM's default action (not the test runner's) and is killed if the test ends. */
pid_t harness_spawn_program(const char *const *argv, const char *log, const char *dir);
/* Waits (bounded) for a child; its exit status, or -1 (killed by a signal, or at the bound). */
int harness_wait_child(pid_t pid, double timeout);
/* SIGTERM, then harness_wait_child with a 10 s bound (nothing for pid <= 0). */
void harness_stop_child(pid_t pid);

/* ---- loopback TCP clients ------------------------------------------------------------------ */

/* A client of 127.0.0.1:port, bound first to source (an address of 127/8, or NULL: the
 * kernel's pick; one that cannot be bound aborts), with 30 s bounds on every read and write
 * so nothing waits for ever. -1 if the connect failed (errno says why: ECONNREFUSED, or
 * ECONNRESET when a listener reset the connection before connect() returned). */
int harness_connect_loopback_from(const char *source, unsigned port);
/* Whether a connect to 127.0.0.1:port is refused (nothing listens there). */
bool harness_connect_refused(unsigned port);
/* Closes fd with a reset (SO_LINGER 0) instead of a FIN. */
void harness_reset_close(int fd);
/* Reads until EOF, an error (the 30 s bound of a harness socket is one) or cap - 1 bytes,
 * and NUL-terminates out; returns the bytes read. *error (if not NULL): 0 when the reading
 * ended at EOF or a full buffer, else the errno of the read that failed. */
size_t harness_read_to_end(int fd, char *out, size_t cap, int *error);

/* ---- for Check suites only (tests/integration/harness_check.c): these fail the test -------- */

/* The port forward `name` of broker p listens on, from its log line (10 s bound). */
unsigned harness_forward_port(const struct process *p, const char *name);
/* The port after `marker` ("...127.0.0.1:") in the first log line that has it, waited for
 * (bounded); fails the test if it never comes. */
unsigned harness_log_port(const struct process *p, const char *marker);
/* A counter of `wormhole-ctl status --json` of a broker the harness started; -1 if absent. */
long harness_status_counter(const struct process *broker, const char *key);
/* harness_connect_loopback_from(NULL, port), failing the test unless it connects. A forward
 * that closes a connection at once (max-connections, connection-rate, a peer not connected)
 * can have its reset arrive on loopback before connect() returns; the caller then gets what
 * it would have read: a socket at its end (one end of a closed socketpair, EOF at once). */
int harness_connect_loopback(unsigned port);
/* Listens on 127.0.0.1:*port (0: the kernel's pick, stored in *port) with SO_REUSEADDR, so
 * that a target can come back on its port at once. */
int harness_listen_loopback(unsigned *port, int backlog);
/* A loopback port nothing listens on: bound once, then let go (connects to it are refused). */
unsigned harness_closed_port(void);
/* Writes text to path (created or truncated). */
void harness_write_file(const char *path, const char *text);
/* A target of the test's own on 127.0.0.1:*port (0: the kernel's pick, stored in *port): a
 * process that accepts connections and hands each to serve(fd, arg) (closed after it), in a
 * process of its own if fork_each, else one after the other. Returns its pid
 * (harness_stop_child ends it); it and its children die with the test. */
pid_t harness_target_start(unsigned *port, void (*serve)(int fd, void *arg), void *arg, bool fork_each);
/* Sends size pattern bytes (harness_pattern, seed) on fd, half-closes, reads the echo to EOF
 * and fails the test unless exactly those bytes came back. */
void harness_echo_check(int fd, size_t size, unsigned seed);

/* A byte pattern by stream seed and offset, for checksummed transfers. */
static inline unsigned char harness_pattern(unsigned seed, size_t i)
{
	return (unsigned char)((seed * 2654435761u) >> 24 ^ (unsigned)(i * 131u + (i >> 9)));
}

#endif
