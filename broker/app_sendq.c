/* Attach messages to an app: sent at once when its socket takes them, queued (bounded) when
 * not; an app that lets the queue fill is dropped, never waited for. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "apps_internal.h"
#include "attach_fds.h"

/* ---- attach messages out: never blocking on the app -------------------------------- */

static int send_now(struct app_session *c, const struct queued *q)
{
	struct iovec iov = { (void *)q->bytes, q->length };
	union attach_control control;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	attach_fds_put(&msg, &control, q->fds, q->nfds);
	ssize_t n = sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n == (ssize_t)q->length)
		return WH_OK;
	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? WH_EWOULDBLOCK : WH_ESYSTEM;
}

void queued_free(struct apps *apps, struct queued *q)
{
	for (unsigned i = 0; i < q->nfds; i++)
		budget_close(apps, q->fds[i]);
	free(q);
}

void flush_queue(struct app_session *c)
{
	while (c->queue_count) {
		struct queued *q = c->queue[c->queue_head];
		int rc = send_now(c, q);
		if (rc == WH_EWOULDBLOCK) {
			ev_io_start(c->apps->loop, &c->writer);
			return;
		}
		if (q->reply)
			c->replies_queued--;
		queued_free(c->apps, q); /* sent (the fds are the app's now) or the socket failed */
		c->queue_head = (c->queue_head + 1) % c->queue_max;
		c->queue_count--;
		session_release_reading(c);
		if (rc != WH_OK) {
			session_drop_later(c, "control socket failed");
			return;
		}
	}
	ev_io_stop(c->apps->loop, &c->writer);
}

int session_send(struct app_session *c, const struct attach_msg *msg, const int *fds, unsigned nfds)
{
	if (c->closing || c->drop_reason)
		return WH_ECONNECTION_CLOSED; /* the session is over: nobody to tell */
	struct queued now = { .nfds = nfds, .reply = c->answering };
	int n = attach_encode(now.bytes, sizeof now.bytes, msg);
	if (n < 0)
		return n;
	now.length = (size_t)n;
	if (nfds)
		memcpy(now.fds, fds, nfds * sizeof *fds);
	if (c->queue_count == 0) {
		int rc = send_now(c, &now);
		if (rc != WH_EWOULDBLOCK)
			return rc; /* sent, or the socket failed: the reader sees the hang-up */
	}
	if (!c->queue) {
		c->queue_max = c->apps->config.max_streams + SEND_QUEUE_SLACK;
		c->queue = calloc(c->queue_max, sizeof *c->queue);
		if (!c->queue)
			return WH_ENOMEM;
	}
	if (c->queue_count == c->queue_max) {
		/* Not now: callers are in the middle of handing this app a stream. */
		session_drop_later(c, "app does not read its control socket");
		return WH_ELIMIT;
	}
	struct queued *q = malloc(sizeof *q);
	if (!q)
		return WH_ENOMEM;
	*q = now;
	for (unsigned i = 0; i < nfds; i++) {
		/* the reserve may serve: an answer must not fail for want of a descriptor */
		int error = WH_EDESCRIPTORS;
		q->fds[i] = -1;
		if (fd_budget_take(c->apps->fds, 1, FD_USE_ANSWER)) {
			q->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
			if (q->fds[i] < 0) {
				error = errno_error();
				fd_budget_give(c->apps->fds, 1);
			}
		}
		if (q->fds[i] < 0) {
			q->nfds = i;
			queued_free(c->apps, q);
			return error;
		}
	}
	c->queue[(c->queue_head + c->queue_count++) % c->queue_max] = q;
	if (q->reply)
		c->replies_queued++;
	ev_io_start(c->apps->loop, &c->writer);
	return WH_OK;
}

/* The app read half of the answers it had left unread: its requests are read again. */
void session_release_reading(struct app_session *c)
{
	if (!c->reading_held || c->replies_queued > REPLY_BACKLOG / 2 || c->closing || c->drop_reason)
		return;
	c->reading_held = false;
	ev_io_start(c->apps->loop, &c->reader);
}

void session_send_result(struct app_session *c, uint32_t request_id, int error, const char *message)
{
	struct attach_msg msg = { .type = ATTACH_RESULT, .request_id = request_id, .error = error };
	snprintf(msg.message, sizeof msg.message, "%s", message ? message : wh_strerror(error));
	session_send(c, &msg, NULL, 0);
}

int session_hand_over(struct app_session *c, enum attach_type type, uint32_t request_id, uint64_t handle,
		       const struct segment *seg, int wake, uint32_t slot, unsigned tx_ring,
		       const char *service, const char *peer)
{
	struct attach_msg msg = { .type = type, .request_id = request_id, .handle = handle,
			       .ring_capacity = seg->capacity, .tx_ring = (uint8_t)tx_ring, .slot = slot };
	snprintf(msg.service, sizeof msg.service, "%s", service);
	snprintf(msg.peer, sizeof msg.peer, "%s", peer);
	int fds[ATTACH_MAX_FDS] = { seg->memfd, wake };
	return session_send(c, &msg, fds, attach_fd_count(&msg));
}
