/* Wake-ups between the broker and apps, and between two apps: one-byte messages on a
 * SOCK_SEQPACKET socket pair, sent and taken with MSG_DONTWAIT. docs/ATTACH.md says why a
 * socket pair and not an eventfd where one process writes for another to read: each end of
 * a pair is an open file description of its own, so the other side can neither make ours
 * blocking nor fill or drain a count we share. The caller does nothing else with these
 * sockets. */
#ifndef WORMHOLE_SHARED_ATTACH_WAKE_H
#define WORMHOLE_SHARED_ATTACH_WAKE_H

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>

/* A connected pair, both ends non-blocking and close-on-exec; 0, or -1 with errno. */
static inline int wake_pair(int fds[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds);
}

/* One wake-up to whoever holds the other end. Never blocks, whatever the flags of the
 * description; a full queue (EAGAIN) already holds wake-ups, and a closed other end (EPIPE,
 * no SIGPIPE) has nobody left to wake. */
static inline void wake_send(int fd)
{
	static const char byte = 1;
	(void)send(fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

enum wake_state {
	WAKE_NONE = 0,   /* nothing pending */
	WAKE_TAKEN = 1,  /* at least one wake-up was pending (taken, or seen with wake_peek) */
	WAKE_HUNG_UP = 2 /* the other end is closed or shut down (nothing more will come) */
};

/* Takes a wake-up. One system call, one message: more than one is pending only when several
 * wake-ups crossed, and what is left keeps the descriptor readable, so the waiter comes back
 * for it (a batch with recvmmsg cost every round trip more than these rare extra turns). A
 * message of no bytes reads as the hang-up it usually is: only a hostile sender can send
 * one, and it only hangs up its own wake-ups. */
static inline enum wake_state wake_take(int fd)
{
	char byte;
	ssize_t n = recv(fd, &byte, 1, MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? WAKE_NONE : WAKE_HUNG_UP;
	return n == 0 ? WAKE_HUNG_UP : WAKE_TAKEN;
}

/* Looks at the next wake-up without taking it. */
static inline enum wake_state wake_peek(int fd)
{
	char byte;
	ssize_t n = recv(fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? WAKE_NONE : WAKE_HUNG_UP;
	return n == 0 ? WAKE_HUNG_UP : WAKE_TAKEN;
}

/* Has the other end hung up (closed, or shut down), whatever is still queued? */
static inline bool wake_hung_up(int fd)
{
	struct pollfd pfd = { fd, 0, 0 }; /* a hang-up is always reported */
	return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR));
}

/* Takes the next wake-up only (after wake_peek said there is one). */
static inline void wake_take_one(int fd)
{
	char byte;
	(void)recv(fd, &byte, 1, MSG_DONTWAIT);
}

#endif
