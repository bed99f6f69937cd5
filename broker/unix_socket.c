/* The broker's Unix sockets (apps, control): claiming their path safely. */
#include "config.h"

#include "unix_socket.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/*
 * A socket's path is never a hazard: anything there but a socket stays untouched, a
 * broker that answers there keeps it, and only a stale socket (nobody listening) is removed.
 * 0, or -1 with errno and a log line that says why.
 */
int unix_socket_claim(const char *path, int type, const struct log_sink *log, const char *component)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		int saved = errno;
		log_write(log, LOG_ERROR, component, "socket %s: %s", path, strerror(errno));
		errno = saved;
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_write(log, LOG_ERROR, component, "socket %s: something that is not a socket is there; "
			  "refusing to replace it", path);
		errno = EEXIST;
		return -1;
	}
	int probe = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
	int rc = probe < 0 ? -1 : connect(probe, (struct sockaddr *)&addr, sizeof addr);
	int error = rc == 0 ? 0 : errno;
	if (probe >= 0)
		close(probe);
	if (rc == 0) {
		log_write(log, LOG_ERROR, component, "socket %s: a broker is already running there", path);
		errno = EADDRINUSE;
		return -1;
	}
	if (error != ECONNREFUSED) { /* someone else's socket, or one we may not look at */
		log_write(log, LOG_ERROR, component, "socket %s: in use by another program (%s); refusing to "
			  "replace it", path, strerror(error));
		errno = EADDRINUSE;
		return -1;
	}
	if (unlink(path) < 0) {
		int saved = errno;
		log_write(log, LOG_ERROR, component, "socket %s: cannot remove the stale socket: %s", path,
			  strerror(errno));
		errno = saved;
		return -1;
	}
	log_write(log, LOG_INFO, component, "socket %s: removed a stale socket (no broker answered)", path);
	return 0;
}
