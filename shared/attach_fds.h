/* Descriptors beside an attach message (SCM_RIGHTS): the control area sendmsg takes, and the
 * descriptors a received message brought. Buffers only: the caller does the I/O. */
#ifndef WORMHOLE_SHARED_ATTACH_FDS_H
#define WORMHOLE_SHARED_ATTACH_FDS_H

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "attach_msg.h"

/* Room for the most an attach message carries, and one more (a receiver that finds one too
 * many knows the message is wrong rather than cut short). */
#define ATTACH_FDS_ROOM (ATTACH_MAX_FDS + 1u)

union attach_control {
	char buf[CMSG_SPACE(sizeof(int) * ATTACH_FDS_ROOM)];
	struct cmsghdr align;
};

/* Sets msg's control area to carry fds[0..n) (n <= ATTACH_FDS_ROOM); none when n is 0. The
 * area is zeroed first: its padding goes to the kernel too. */
static inline void attach_fds_put(struct msghdr *msg, union attach_control *control, const int *fds, unsigned n)
{
	memset(control, 0, sizeof *control);
	msg->msg_control = NULL;
	msg->msg_controllen = 0;
	if (n == 0 || n > ATTACH_FDS_ROOM)
		return;
	msg->msg_control = control->buf;
	msg->msg_controllen = CMSG_SPACE(sizeof(int) * n);
	struct cmsghdr *cm = CMSG_FIRSTHDR(msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
}

/* The descriptors a received message brought, into fds (room for ATTACH_FDS_ROOM); returns
 * how many. Any past that room are closed, never kept. */
static inline unsigned attach_fds_take(const struct msghdr *msg, int fds[ATTACH_FDS_ROOM])
{
	unsigned count = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof fd);
			if (count < ATTACH_FDS_ROOM)
				fds[count++] = fd;
			else
				close(fd);
		}
	}
	return count;
}

#endif
