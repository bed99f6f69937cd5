/* The app socket: the path it is made at, accepting attaches, start, stop, reconfigure and
 * drain. */
#include "config.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "apps_internal.h"
#include "unix_socket.h"
#include "listener_rest.h"

static void on_accept_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct apps *apps = w->data;
	(void)revents;
	if (!apps->draining)
		ev_io_start(loop, &apps->acceptor);
}

/* An app we have no descriptors for is told so on its own socket, then let go. */
static void shed_attach(struct apps *apps, int fd)
{
	struct attach_msg msg = { .type = ATTACH_RESULT, .request_id = 1, .error = WH_EDESCRIPTORS };
	snprintf(msg.message, sizeof msg.message, "the broker is out of file descriptors");
	uint8_t bytes[ATTACH_MESSAGE_MAX];
	int n = attach_encode(bytes, sizeof bytes, &msg);
	if (n > 0)
		(void)!send(fd, bytes, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	fd_budget_shed_done(apps->fds, fd);
	log_write(apps->log, LOG_WARN, "apps", "attach refused: out of file descriptors (%llu shed)",
		  apps->fds ? (unsigned long long)apps->fds->shed : 0ull);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct apps *apps = w->data;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		bool shed;
		int fd = fd_budget_accept(apps->fds, apps->listen_fd, FD_USE_SESSION, &shed);
		if (fd < 0) {
			if (accept_failure_persists(errno)) {
				/* Not even the spare could take it: a readable listener would spin the
				 * loop, so stop looking for a moment. */
				listener_rest(loop, &apps->acceptor, &apps->accept_pause, &apps->accept_rests,
					      apps->log, "apps", "app socket ", errno);
			}
			return;
		}
		if (shed) {
			shed_attach(apps, fd);
			continue;
		}
		session_start(apps, fd);
	}
}

struct apps *apps_start(struct ev_loop *loop, const struct apps_config *config,
			const struct log_sink *log, struct fd_budget *fds, apps_find_pool find_pool,
			void *find_ctx)
{
	if (sodium_init() < 0)
		return NULL;
	struct apps *apps = calloc(1, sizeof *apps);
	if (!apps)
		return NULL;
	apps->loop = loop;
	apps->config = *config;
	apps->log = log;
	apps->fds = fds;
	service_registry_init(&apps->services);
	if (stream_table_init(&apps->handles) != WH_OK) {
		free(apps);
		errno = ENOMEM;
		return NULL;
	}
	apps->find_pool = find_pool;
	apps->find_ctx = find_ctx;
	apps->doorbell_sockets = !eventfd_reads_nowait();
	if (apps->doorbell_sockets)
		log_write(log, LOG_INFO, "apps", "this kernel cannot read an eventfd without blocking "
			  "(RWF_NOWAIT, Linux 5.12): apps' doorbells are socket pairs");
	if (unix_socket_claim(config->socket_path, SOCK_SEQPACKET, log, "apps") < 0) {
		int saved = errno;
		stream_table_free(&apps->handles);
		free(apps);
		errno = saved;
		return NULL;
	}
	apps->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* owner and mode are set where no link can be swapped in (unix_socket_bind) */
	struct stat st;
	int rc = apps->listen_fd < 0 ? -1
		 : unix_socket_bind(apps->listen_fd, config->socket_path, config->socket_mode,
				    config->socket_uid, config->socket_gid, 128, &st, log, "apps");
	if (rc < 0) {
		int saved = errno;
		if (apps->listen_fd >= 0)
			close(apps->listen_fd);
		else
			log_write(log, LOG_ERROR, "apps", "socket %s: %s", config->socket_path, strerror(saved));
		stream_table_free(&apps->handles);
		free(apps);
		errno = saved;
		return NULL;
	}
	apps->socket_dev = st.st_dev; /* remembered, so that we remove only ours */
	apps->socket_ino = st.st_ino;
	ev_io_init(&apps->acceptor, on_accept, apps->listen_fd, EV_READ);
	apps->acceptor.data = apps;
	ev_prepare_init(&apps->reaper, on_sessions_reap);
	apps->reaper.data = apps;
	ev_timer_init(&apps->accept_pause, on_accept_resume, ACCEPT_PAUSE_SECONDS, 0.0);
	apps->accept_pause.data = apps;
	ev_io_start(loop, &apps->acceptor);
	log_write(log, LOG_INFO, "apps", "apps attach at %s (mode %03o, owner %ld, group %ld)",
		  config->socket_path, config->socket_mode, config->socket_uid, config->socket_gid);
	return apps;
}

void apps_stop(struct apps *apps)
{
	if (!apps)
		return;
	while (!LIST_EMPTY(&apps->sessions))
		session_drop(LIST_FIRST(&apps->sessions), "broker stopping");
	ev_prepare_stop(apps->loop, &apps->reaper);
	ev_timer_stop(apps->loop, &apps->accept_pause);
	sessions_free_dropped(apps);
	ev_io_stop(apps->loop, &apps->acceptor);
	close(apps->listen_fd);
	struct stat st;
	if (lstat(apps->config.socket_path, &st) == 0 && st.st_dev == apps->socket_dev &&
	    st.st_ino == apps->socket_ino)
		unlink(apps->config.socket_path); /* still ours */
	stream_table_free(&apps->handles);
	service_registry_free(&apps->services);
	free(apps);
}

void apps_reconfigure(struct apps *apps, const struct apps_config *config)
{
	struct apps_config next = *config;
	/* the socket was made at start */
	memcpy(next.socket_path, apps->config.socket_path, sizeof next.socket_path);
	next.socket_mode = apps->config.socket_mode;
	next.socket_uid = apps->config.socket_uid;
	next.socket_gid = apps->config.socket_gid;
	apps->config = next;
}

void apps_drain(struct apps *apps)
{
	apps->draining = true;
	ev_io_stop(apps->loop, &apps->acceptor);
	ev_timer_stop(apps->loop, &apps->accept_pause);
}

void apps_get_stats(const struct apps *apps, struct apps_stats *stats)
{
	*stats = apps->stats;
}
