/* App sessions: attach, the messages an app sends, its limits, and its end (dropped sessions
 * are freed from the loop's prepare step). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "apps_internal.h"
#include "attach_fds.h"

static uint64_t segment_bytes(const struct apps *apps)
{
	return ring_segment_size(apps->config.ring_capacity);
}

uint64_t ring_memory_limit(const struct apps *apps)
{
	return apps->config.max_ring_memory ? apps->config.max_ring_memory
					    : (uint64_t)apps->config.max_streams * segment_bytes(apps);
}

int session_admit(const struct app_session *c, const char **why)
{
	const struct apps *apps = c->apps;
	if (c->counters.streams >= apps->config.max_streams) {
		*why = "too many streams for this app";
		return WH_ELIMIT;
	}
	if (c->counters.ring_bytes + segment_bytes(apps) > ring_memory_limit(apps)) {
		*why = "the app's shared-memory limit is reached";
		return WH_ELIMIT;
	}
	return WH_OK;
}

int listener_admit(const struct app_session *listener, const char **why)
{
	if (listener->counters.unaccepted >= listener->apps->config.accept_backlog) {
		*why = "the listening app's accept queue is full";
		return WH_EACCEPT_QUEUE_FULL;
	}
	return session_admit(listener, why);
}

struct app_session *session_by_id(struct apps *apps, const char *id)
{
	struct app_session *c;
	LIST_FOREACH(c, &apps->sessions, link)
		if (strcmp(c->id, id) == 0 && !c->closing)
			return c;
	return NULL;
}

/* ---- listeners --------------------------------------------------------------------- */

static void handle_listen(struct app_session *c, const struct attach_msg *req, bool listen)
{
	struct apps *apps = c->apps;
	const char *service = req->service[0] ? req->service : "(default)";
	if (!listen) {
		if (service_registry_remove(&apps->services, req->service, c) != WH_OK) {
			session_send_result(c, req->request_id, WH_ENO_SERVICE, "not listening on that service");
			return;
		}
		c->listening--;
		log_write(apps->log, LOG_INFO, "apps", "client=%s stops listening on service=%s", c->id,
			  service);
		session_send_result(c, req->request_id, WH_OK, "");
		return;
	}
	const char *name = req->service[0] ? req->service : apps->config.default_service;
	const char *why;
	const struct app_credentials who = { c->uid, c->gid, c->groups, c->group_count };
	int error = service_app_may_listen(&apps->config.services, name, apps->config.default_service,
					   &who, &why);
	if (error == WH_OK && c->listening >= apps->config.max_listeners) {
		why = "too many listeners for this app (app-max-listeners)";
		error = WH_ELIMIT;
	}
	if (error != WH_OK) {
		log_write(apps->log, LOG_INFO, "apps", "client=%s uid=%ld listen on service=%s refused: %s",
			  c->id, (long)c->uid, service, why);
		session_send_result(c, req->request_id, error, why);
		return;
	}
	error = service_registry_add(&apps->services, req->service, c);
	if (error != WH_OK) {
		char message[ATTACH_STRING_MAX + 1];
		snprintf(message, sizeof message, error == WH_ESERVICE_TAKEN ? "another app listens on "
			 "service %.200s" : "%.200s", error == WH_ESERVICE_TAKEN ? service : wh_strerror(error));
		session_send_result(c, req->request_id, error, message);
		return;
	}
	c->listening++;
	log_write(apps->log, LOG_INFO, "apps", "client=%s listens on service=%s", c->id, service);
	session_send_result(c, req->request_id, WH_OK, "");
}

/* RELEASE (the app is done with the stream) or ACCEPTED (wh_accept took it from the queue):
 * found by its handle in O(1); a handle that is not this app's (gone, or another app's) is
 * ignored. */
static void handle_stream_message(struct app_session *c, uint64_t handle, bool release)
{
	struct app_handle *h = stream_table_find(&c->apps->handles, handle);
	if (h && h->kind == HANDLE_STREAM) {
		struct shm_stream *s = (struct shm_stream *)h;
		if (s->client != c)
			return;
		if (release) {
			shm_detach_client(s, WH_OK, NULL);
		} else if (s->awaiting_accept) {
			s->awaiting_accept = false;
			c->counters.unaccepted--;
		}
	} else if (h) {
		struct pair_end *e = (struct pair_end *)h;
		struct local_pair *p = e->pair;
		if (p->ends[e->end] != c)
			return;
		if (release) {
			pair_detach(p, e->end, false);
		} else if (e->end == 1 && p->awaiting_accept) {
			p->awaiting_accept = false;
			c->counters.unaccepted--;
		}
	}
}

/* ---- sessions ---------------------------------------------------------------------- */

/* The doorbell, the news wake-up pair and the bitmaps' segment. The doorbell is an eventfd
 * we share with the app (we read it with RWF_NOWAIT, so nothing the app does to it makes us
 * wait), or where the kernel cannot do that a socket pair; news is a socket pair, because
 * no flag makes an eventfd's write safe. We keep c->doorbell and our end of news; app_fds[]
 * gets the app's ends of the pairs (-1 for an eventfd doorbell, which is c->doorbell), from
 * the budget, to be closed once WELCOME carried them. Returns the segment's memfd to hand
 * over (from the budget too), or a negative WH_E* code. */
static int doorbell_create(struct app_session *c, int app_fds[2])
{
	struct apps *apps = c->apps;
	int pair[2];
	c->slot_count = (apps->config.max_streams + 63) / 64 * 64;
	c->slots = calloc(c->slot_count, sizeof *c->slots);
	c->notify_size = notify_segment_size(c->slot_count);
	if (!c->slots)
		return WH_ENOMEM;
	int error = WH_OK;
	if (apps->doorbell_sockets) {
		error = budget_wake_pair(apps, FD_USE_SESSION, pair);
		c->doorbell = pair[0];
		app_fds[0] = pair[1];
	} else if ((c->doorbell = budget_eventfd(apps, FD_USE_SESSION)) < 0) {
		error = c->doorbell;
	}
	if (error != WH_OK)
		return error;
	error = budget_wake_pair(apps, FD_USE_SESSION, pair);
	if (error != WH_OK)
		return error;
	c->news = pair[0];
	app_fds[1] = pair[1];
	shutdown(c->news, SHUT_RD); /* we only send: nothing the app sends can queue here */
	if (!fd_budget_take(apps->fds, 1, FD_USE_SESSION))
		return WH_EDESCRIPTORS;
	int memfd = memfd_create("wormhole-doorbell", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0) {
		error = errno_error();
		fd_budget_give(apps->fds, 1);
		return error;
	}
	if (ftruncate(memfd, (off_t)c->notify_size) < 0 ||
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		error = errno_error();
	c->notify = error ? MAP_FAILED
			  : mmap(NULL, c->notify_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (c->notify == MAP_FAILED) {
		c->notify = NULL;
		budget_close(apps, memfd);
		return error ? error : WH_ENOMEM;
	}
	c->notify->magic = NOTIFY_MAGIC;
	c->notify->slots = c->slot_count;
	atomic_store(&c->notify->armed, 1);
	ev_io_init(&c->doorbell_watcher, on_doorbell, c->doorbell, EV_READ);
	c->doorbell_watcher.data = c;
	ev_io_start(apps->loop, &c->doorbell_watcher);
	return memfd;
}

static void send_stats(struct app_session *c, uint32_t request_id)
{
	struct attach_stats stats;
	apps_session_counters(c, &stats);
	struct attach_msg reply = { .type = ATTACH_STATS_REPLY, .request_id = request_id };
	attach_stats_pack(&stats, &reply);
	session_send(c, &reply, NULL, 0);
}

/* passed_fd: the descriptor that came with STREAM_FD (its only carrier), ours to keep or
 * close; -1 with every other message. */
static void handle_message(struct app_session *c, const struct attach_msg *msg, int passed_fd)
{
	if (passed_fd >= 0 && (msg->type != ATTACH_STREAM_FD || !c->welcomed)) {
		close(passed_fd); /* a broker-only type that carries descriptors: refused below */
		passed_fd = -1;
	}
	if (!c->welcomed && msg->type != ATTACH_HELLO) {
		c->apps->stats.protocol_errors++;
		session_send_result(c, msg->request_id, WH_EPROTOCOL, "the first message must be HELLO");
		flush_queue(c);
		session_drop(c, "first message was not HELLO");
		return;
	}
	switch (msg->type) {
	case ATTACH_HELLO: {
		if (c->welcomed || msg->version != ATTACH_VERSION) {
			c->apps->stats.protocol_errors++;
			session_send_result(c, msg->request_id, WH_EPROTOCOL,
				    c->welcomed ? "HELLO was already said" : "unsupported protocol version");
			flush_queue(c);
			session_drop(c, "bad HELLO");
			return;
		}
		if (!attach_rules_admit(&c->apps->config.attach, c->uid, c->gid, c->groups,
					c->group_count)) {
			log_write(c->apps->log, LOG_WARN, "apps", "attach refused: pid=%d uid=%ld gid=%ld "
				  "is not in attach-users or attach-groups", (int)c->pid, (long)c->uid,
				  (long)c->gid);
			char message[128];
			snprintf(message, sizeof message, "uid %ld may not attach to this broker "
				 "(attach-users, attach-groups)", (long)c->uid);
			session_send_result(c, msg->request_id, WH_EACCESS, message);
			flush_queue(c);
			session_drop(c, "not allowed to attach");
			return;
		}
		int app_fds[2] = { -1, -1 };
		int notify_fd = doorbell_create(c, app_fds);
		if (notify_fd < 0) {
			budget_close(c->apps, app_fds[0]);
			budget_close(c->apps, app_fds[1]);
			session_send_result(c, msg->request_id, notify_fd, "the broker cannot set up the session");
			flush_queue(c);
			session_drop(c, wh_strerror(notify_fd));
			return;
		}
		c->welcomed = true;
		struct attach_msg welcome = { .type = ATTACH_WELCOME, .request_id = msg->request_id,
					   .version = ATTACH_VERSION, .max_streams = c->slot_count,
					   .ring_capacity = c->apps->config.ring_capacity };
		randombytes_buf(welcome.client_id, sizeof welcome.client_id);
		for (unsigned i = 0; i < ATTACH_CLIENT_ID_SIZE; i++)
			snprintf(c->id + 2 * i, 3, "%02x", welcome.client_id[i]);
		log_write(c->apps->log, LOG_INFO, "apps", "client=%s attached: pid=%d uid=%d", c->id,
			  (int)c->pid, (int)c->uid);
		int fds[3] = { app_fds[0] >= 0 ? app_fds[0] : c->doorbell, notify_fd, app_fds[1] };
		int rc = session_send(c, &welcome, fds, 3);
		budget_close(c->apps, notify_fd);
		budget_close(c->apps, app_fds[0]);
		budget_close(c->apps, app_fds[1]);
		if (rc != WH_OK)
			session_drop(c, wh_strerror(rc));
		return;
	}
	case ATTACH_OPEN:
		open_through_pool(c, msg);
		return;
	case ATTACH_LISTEN:
	case ATTACH_UNLISTEN:
		handle_listen(c, msg, msg->type == ATTACH_LISTEN);
		return;
	case ATTACH_RELEASE:
	case ATTACH_ACCEPTED:
		handle_stream_message(c, msg->handle, msg->type == ATTACH_RELEASE);
		return;
	case ATTACH_STATS:
		send_stats(c, msg->request_id);
		return;
	case ATTACH_STREAM_FD:
		shm_take_app_pipe(c, msg->handle, passed_fd);
		return;
	default:
		c->apps->stats.protocol_errors++;
		session_send_result(c, msg->request_id, WH_EPROTOCOL, "message type not accepted from an app");
		session_drop(c, "broker-only message type from an app");
		return;
	}
}

static void on_client_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct app_session *c = w->data;
	(void)loop;
	(void)revents;
	for (int i = 0; i < 64 && !c->closing; i++) {
		if (c->replies_queued >= REPLY_BACKLOG) {
			/* it asks and does not read the answers: its socket holds it back */
			c->reading_held = true;
			ev_io_stop(c->apps->loop, &c->reader);
			return;
		}
		uint8_t buffer[ATTACH_MESSAGE_MAX + 1];
		union attach_control control;
		struct iovec iov = { buffer, sizeof buffer };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
				      .msg_controllen = sizeof control.buf };
		ssize_t n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n <= 0) {
			session_drop(c, n == 0 ? "detached" : strerror(errno));
			return;
		}
		/* Apps send one descriptor, with STREAM_FD only: any other is closed (never
		 * kept) and ends the session. */
		int passed[ATTACH_FDS_ROOM];
		unsigned count = attach_fds_take(&msg, passed);
		struct attach_msg decoded;
		const char *why = NULL;
		char malformed[128];
		if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
			why = "attach message too long";
		else if (attach_decode(buffer, (size_t)n, &decoded) != WH_OK) {
			snprintf(malformed, sizeof malformed, "malformed attach message: %s",
				 attach_decode_error(buffer, (size_t)n));
			why = malformed;
		}
		else if (count != attach_fd_count(&decoded))
			why = decoded.type == ATTACH_STREAM_FD ? "STREAM_FD without its descriptor"
							       : "descriptors sent with an attach message";
		if (why) {
			for (unsigned k = 0; k < count; k++)
				close(passed[k]);
			c->apps->stats.protocol_errors++;
			session_send_result(c, 0, WH_EPROTOCOL, why);
			flush_queue(c);
			session_drop(c, why);
			return;
		}
		/* OPENs are pipelined (wh_open_start) and their answers bounded by the queue */
		c->answering = decoded.type != ATTACH_OPEN;
		handle_message(c, &decoded, count ? passed[0] : -1);
		c->answering = false;
	}
}

static void on_client_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	flush_queue(w->data);
}

bool attach_rules_admit(const struct attach_rules *rules, uint32_t uid, uint32_t gid,
			const uint32_t *groups, unsigned group_count)
{
	if (!rules->users_set && !rules->groups_set)
		return true;
	if (uid == 0 || uid == (uint32_t)geteuid())
		return true;
	for (unsigned i = 0; i < rules->user_count; i++)
		if (rules->users[i] == uid)
			return true;
	const struct app_credentials who = { (long)uid, (long)gid, groups, group_count };
	for (unsigned i = 0; i < rules->group_count; i++)
		if (app_credentials_in_group(&who, (long)rules->groups[i]))
			return true;
	return false;
}

void session_start(struct apps *apps, int fd)
{
	struct ucred cred = { 0 };
	socklen_t len = sizeof cred;
	getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
	gid_t groups[64];
	socklen_t groups_len = sizeof groups;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &groups_len) != 0)
		groups_len = 0; /* more than 64 groups (ERANGE): primary group only */
	struct app_session *c = calloc(1, sizeof *c);
	if (!c) {
		log_write(apps->log, LOG_WARN, "apps", "attach refused: out of memory");
		budget_close(apps, fd);
		return;
	}
	c->apps = apps;
	c->fd = fd;
	c->doorbell = c->news = -1;
	c->pid = cred.pid;
	c->uid = cred.uid;
	c->gid = cred.gid;
	c->group_count = (unsigned)(groups_len / sizeof groups[0]);
	for (unsigned i = 0; i < c->group_count; i++)
		c->groups[i] = groups[i];
	ev_io_init(&c->reader, on_client_readable, fd, EV_READ);
	ev_io_init(&c->writer, on_client_writable, fd, EV_WRITE);
	c->reader.data = c->writer.data = c;
	ev_io_start(apps->loop, &c->reader);
	LIST_INSERT_HEAD(&apps->sessions, c, link);
	apps->stats.clients++;
	apps->stats.clients_total++;
}

void session_drop(struct app_session *c, const char *why)
{
	struct apps *apps = c->apps;
	if (c->closing)
		return;
	c->closing = true;
	bool orderly = strcmp(why, "detached") == 0 || strcmp(why, "broker stopping") == 0;
	log_write(apps->log, orderly ? LOG_INFO : LOG_WARN, "apps",
		  "client=%s pid=%d dropped: %s (%u streams)", c->id[0] ? c->id : "-", (int)c->pid, why,
		  c->counters.streams);
	while (!LIST_EMPTY(&c->shm_streams))
		shm_detach_client(LIST_FIRST(&c->shm_streams), WH_EAPP_GONE, "the app went away");
	/* both ends are c's when an app opened a stream to its own listener: the pair goes with
	 * the second */
	while (!LIST_EMPTY(&c->pair_ends)) {
		struct pair_end *e = LIST_FIRST(&c->pair_ends);
		pair_detach(e->pair, e->end, true);
	}
	if (c->listening)
		service_registry_remove_owner(&apps->services, c);
	c->listening = 0;
	ev_io_stop(apps->loop, &c->reader);
	ev_io_stop(apps->loop, &c->writer);
	ev_io_stop(apps->loop, &c->doorbell_watcher);
	budget_close(apps, c->doorbell);
	budget_close(apps, c->news);
	c->doorbell = c->news = -1;
	if (c->notify)
		munmap(c->notify, c->notify_size);
	free(c->slots);
	while (c->queue_count) {
		queued_free(apps, c->queue[c->queue_head]);
		c->queue_head = (c->queue_head + 1) % c->queue_max;
		c->queue_count--;
	}
	free(c->queue);
	c->queue = NULL;
	budget_close(apps, c->fd);
	c->fd = -1;
	LIST_REMOVE(c, link);
	apps->stats.clients--;
	LIST_INSERT_HEAD(&apps->dropped, c, link);
	ev_prepare_start(apps->loop, &apps->reaper);
}

void sessions_free_dropped(struct apps *apps)
{
	while (!LIST_EMPTY(&apps->dropped)) {
		struct app_session *c = LIST_FIRST(&apps->dropped);
		LIST_REMOVE(c, link);
		peer_shares_release(c);
		free(c);
	}
}

void session_drop_later(struct app_session *c, const char *why)
{
	if (c->closing || c->drop_reason)
		return;
	c->drop_reason = why;
	ev_prepare_start(c->apps->loop, &c->apps->reaper);
}

void on_sessions_reap(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct apps *apps = w->data;
	(void)revents;
	ev_prepare_stop(loop, w);
	for (struct app_session *c = LIST_FIRST(&apps->sessions), *next; c; c = next) {
		next = LIST_NEXT(c, link);
		if (c->drop_reason)
			session_drop(c, c->drop_reason);
	}
	sessions_free_dropped(apps);
}
