/* The broker's descriptor budget: what peers and apps may make it hold, and a reserve. */
#ifndef WORMHOLE_BROKER_FDBUDGET_H
#define WORMHOLE_BROKER_FDBUDGET_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Every descriptor a peer or an app can make the broker hold is taken from this budget
 * before it is opened and given back when it is closed: accepted peer connections, app
 * sessions (socket and doorbell), stream eventfds, segment memfds until they are handed
 * over, descriptors duplicated into an app's send queue. Everything else the broker holds
 * (its loop, listeners, pools, logs) is a constant measured at start.
 *
 * Streams and peer connections may not use the last `reserve` descriptors of the process
 * limit; an app attaching may use half of them, and the answers that hand an app its
 * descriptors all of them. So a flood of streams meets WH_EDESCRIPTORS while apps can still
 * attach, a flood of sessions meets it while answers still go out, and the kernel's EMFILE
 * is never the first to say no.
 *
 * A NULL budget admits everything (unit tests). Single-threaded: the broker's loop.
 */
struct fd_budget {
	uint64_t limit;    /* RLIMIT_NOFILE (soft) */
	uint64_t baseline; /* held at start and by the broker's own fixed needs */
	uint64_t used;     /* taken from the budget now */
	uint64_t reserve;  /* kept for attaching apps and answers */
	uint64_t refused;  /* admissions refused */
	uint64_t shed;     /* connections taken off a listen queue and closed unserved */
	int spare_fd;      /* held so that one slot is always there to shed a connection */
};

enum fd_use {
	FD_USE_STREAM,  /* streams and peer connections: never the reserve */
	FD_USE_SESSION, /* an app attaching: half the reserve, so that a flood of sessions
			 * still leaves room to answer */
	FD_USE_ANSWER,  /* descriptors passed in an answer to an app: all of it */
};

/* Reads the process limit and counts the descriptors open now as the baseline, plus
 * `fixed` more the broker will open for its own needs (pools). */
void fd_budget_init(struct fd_budget *budget, uint64_t reserve, uint64_t fixed);
/* Takes n descriptors if the budget allows that use; false (and counted) if not. */
bool fd_budget_take(struct fd_budget *budget, unsigned n, enum fd_use use);
void fd_budget_give(struct fd_budget *budget, unsigned n);
/* Descriptors free for a use now. */
uint64_t fd_budget_available(const struct fd_budget *budget, enum fd_use use);

/*
 * Accepts one pending connection on a non-blocking listening socket, taking its descriptor
 * from the budget. Returns the descriptor (non-blocking, close-on-exec), or -1 with errno
 * (EAGAIN: none pending). When neither the budget nor the kernel has a descriptor for it,
 * the connection is taken off the queue all the same, through the spare descriptor, and
 * returned with *shed set: the caller may say why on it, then must call fd_budget_shed_done.
 * Leaving it queued would keep the listener readable and spin the loop. budget may be NULL.
 */
int fd_budget_accept(struct fd_budget *budget, int listen_fd, enum fd_use use, bool *shed);
void fd_budget_shed_done(struct fd_budget *budget, int fd);
/* Closes the spare descriptor. */
void fd_budget_release(struct fd_budget *budget);

#endif
