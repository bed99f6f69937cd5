/* A scene for forwarding tests (forward_scene.c): broker A exposes services whose streams go to
 * TCP targets, broker B has peer a and forwards local ports to them; real broker processes. */
#ifndef WORMHOLE_TESTS_FORWARD_SCENE_H
#define WORMHOLE_TESTS_FORWARD_SCENE_H

#include <stdbool.h>
#include <sys/types.h>

#include "harness.h"

/*
 * The test's own target on 127.0.0.1:*port (0: the system's pick, stored in *port); returns its
 * pid (harness_stop_child ends it). Each connection in a process of its own; the first byte
 * says what to do:
 *   'E' read to EOF, then send back everything after the first byte, then close (half-close)
 *   'R' reset the connection at once (SO_LINGER 0)
 *   'W' write "yes" to DIR/accepted, read until the connection ends and write "eof" or "rst"
 *       to DIR/result
 *   'S' send for ever, writing the count sent so far to DIR/sent after each write
 *   'P' send back each read at once, until EOF
 *   'I' send the target's port (who answered) and close
 *   'N' never read: hold the connection until the other side ends it
 */
pid_t small_target_start(const char *dir, unsigned *port);

/* A exposes `services` (config text, written to DIR/a.conf); B has peer a and forwards
 * `forwards` (config text, DIR/b.conf); tls: both with certificates made in dir. */
void brokers_start(struct process *a, struct process *b, const char *dir, const char *services,
		   const char *forwards, bool tls);
/* Stops B, then A, with SIGTERM; fails the test unless both exit cleanly. */
void brokers_stop(struct process *a, struct process *b);
/* The small target behind A as service small (target = 127.0.0.1:PORT), and B with the given
 * forwards (NULL: forward small, listening on a port of the system's pick). Returns the
 * target's pid. */
pid_t small_scene_start(const char *dir, unsigned *target_port, struct process *a, struct process *b,
			const char *forwards);
/* Stops what small_scene_start started and removes the test's directory. */
void small_scene_stop(pid_t target, struct process *a, struct process *b, const char *dir);
/* A connection that cannot move (a side that never reads) costs the brokers no CPU while it
 * waits: at most a few clock ticks (1/100 s) in a second, each. */
void assert_brokers_idle(struct process *a, struct process *b, const char *what);

/* A client refused at once is reset: sends `request`, then reads; a quick refusal may reset
 * the connection before the request is written, and then the write is what sees it. */
void expect_reset_after_sending(int fd, const char *request);
/* Connects to port, sends "P" and text and reads it back (the small target's 'P'): the
 * connection is carried end to end. Returns the connection for ping_end. */
int ping_begin(unsigned port, const char *text);
/* The same once more, then the end: EOF both ways; closes fd. */
void ping_end(int fd, const char *text);

#endif
