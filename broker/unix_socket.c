/* The broker's Unix sockets (apps, control) and the port file: claiming and writing their
 * paths safely. */
#include "config.h"

#include "unix_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/*
 * A socket's path is never a hazard: anything there but a socket stays untouched, a
 * broker that answers there keeps it, and only a stale socket (nobody listening) is removed.
 * 0, or -1 with errno and a log line that says why.
 */
int unix_socket_dir_check(const char *path, const struct log_sink *log, const char *component)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else
		snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	struct stat st;
	int bad = stat(dir, &st) < 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
	if (bad) {
		int saved = bad;
		log_write(log, LOG_ERROR, component, "%s: its directory %s: %s", path, dir, strerror(saved));
		errno = saved;
		return -1;
	}
	if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
		log_write(log, LOG_ERROR, component, "%s: its directory %s is writable by anyone and not "
			  "sticky: any user could put something else there; refusing", path, dir);
		errno = EPERM;
		return -1;
	}
	return 0;
}

int unix_socket_claim(const char *path, int type, const struct log_sink *log, const char *component)
{
	if (unix_socket_dir_check(path, log, component) < 0)
		return -1;
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

/* A fresh temporary file beside path, made by us alone: O_EXCL never opens what is there
 * (a planted link included) and the name is not guessed in advance. Its descriptor, the name
 * in tmp; -1 with errno. */
static int create_beside(const char *path, char *tmp, size_t length)
{
	for (int attempt = 0; attempt < 16; attempt++) {
		uint64_t r = 0;
		if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
			r ^= (uint64_t)clock() << 32 ^ (uint64_t)(uintptr_t)&r ^ (uint64_t)attempt;
		int n = snprintf(tmp, length, "%s.%ld.%016llx.tmp", path, (long)getpid(), (unsigned long long)r);
		if (n < 0 || (size_t)n >= length) {
			errno = ENAMETOOLONG;
			return -1;
		}
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	errno = EEXIST;
	return -1;
}

int unix_socket_write_file(const char *path, const char *text, const struct log_sink *log, const char *component)
{
	if (unix_socket_dir_check(path, log, component) < 0)
		return -1;
	char tmp[4200];
	int fd = create_beside(path, tmp, sizeof tmp);
	size_t length = strlen(text), done = 0;
	while (fd >= 0 && done < length) {
		ssize_t n = write(fd, text + done, length - done);
		if (n < 0 && errno != EINTR)
			break;
		done += n > 0 ? (size_t)n : 0;
	}
	int saved = errno;
	bool ok = fd >= 0 && done == length;
	if (fd >= 0 && close(fd) < 0 && ok) {
		ok = false;
		saved = errno;
	}
	/* rename replaces path itself (a link there included, never what it points to): a
	 * reader sees the old file or the whole new one */
	if (ok && rename(tmp, path) < 0) {
		ok = false;
		saved = errno;
	}
	if (!ok) {
		if (fd >= 0)
			unlink(tmp);
		log_write(log, LOG_ERROR, component, "%s: %s", path, strerror(saved));
		errno = saved;
		return -1;
	}
	return 0;
}

/* The private directory beside path: its name in dir, and a descriptor of it checked to be
 * the directory we made (a stranger who renames it and puts another in its place is found
 * out here, or later finds us working on ours through the descriptor). -1 with errno. */
static int private_dir_beside(const char *path, char *dir, size_t length)
{
	const char *slash = strrchr(path, '/');
	int n = snprintf(dir, length, "%.*s.wh-XXXXXX", slash ? (int)(slash - path + 1) : 0, path);
	if (n < 0 || (size_t)n >= length) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (!mkdtemp(dir))
		return -1;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (dfd >= 0 && (fstat(dfd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 0077))) {
		close(dfd);
		errno = EPERM;
		return -1;
	}
	if (dfd < 0)
		rmdir(dir);
	return dfd;
}

/* Binds fd at name inside the private directory: by its path when that fits sun_path, else
 * through /proc/self/fd (short whatever the directory's length). */
static int bind_in(int fd, int dfd, const char *dir, const char *name)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int n = snprintf(addr.sun_path, sizeof addr.sun_path, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof addr.sun_path)
		snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s", dfd, name);
	return bind(fd, (struct sockaddr *)&addr, sizeof addr);
}

/*
 * Why not bind at path and then chown/chmod it: both follow links, and between the bind and
 * them a local user who may write the directory could put a link at path (to /etc/shadow,
 * say) and have the broker give that file the socket's owner and mode. fchmod on the socket
 * descriptor does not reach the file, and lchown/fchmodat(AT_SYMLINK_NOFOLLOW) still act on
 * whatever was swapped in (or fail where links cannot be chmodded). In a directory only we
 * may write nothing can be swapped: the socket gets its owner and mode there, by name under
 * the directory's descriptor, and only then appears at path, by rename, which replaces what
 * is at path (a planted link itself) and follows nothing. In a sticky directory (/tmp)
 * rename cannot replace another user's file: the start fails instead.
 */
int unix_socket_bind(int fd, const char *path, unsigned mode, long uid, long gid, int backlog,
		     struct stat *made, const struct log_sink *log, const char *component)
{
	char dir[4200];
	int dfd = private_dir_beside(path, dir, sizeof dir);
	int rc = dfd < 0 ? -1 : bind_in(fd, dfd, dir, "s");
	bool bound = rc == 0;
	if (rc == 0 && (rc = fstatat(dfd, "s", made, AT_SYMLINK_NOFOLLOW)) == 0 && !S_ISSOCK(made->st_mode)) {
		errno = EPERM; /* cannot be: nobody else may write there */
		rc = -1;
	}
	if (rc == 0 && (uid >= 0 || gid >= 0))
		rc = fchownat(dfd, "s", (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW);
	if (rc == 0) /* chmod needs no NOFOLLOW here: "s" is our socket, as checked */
		rc = fchmodat(dfd, "s", (mode_t)mode, 0);
	if (rc == 0)
		rc = fstatat(dfd, "s", made, AT_SYMLINK_NOFOLLOW);
	if (rc == 0)
		rc = listen(fd, backlog); /* before it appears at path: no attach is refused */
	if (rc == 0)
		rc = renameat(dfd, "s", AT_FDCWD, path);
	int saved = errno;
	if (rc < 0 && bound)
		unlinkat(dfd, "s", 0);
	if (dfd >= 0) {
		close(dfd);
		rmdir(dir);
	}
	if (rc < 0) {
		log_write(log, LOG_ERROR, component, "socket %s: %s", path, strerror(saved));
		errno = saved;
		return -1;
	}
	return 0;
}
