/* The broker's Unix sockets (apps, control) and the port file: claiming and writing their
 * paths safely. */
#ifndef WORMHOLE_BROKER_UNIX_SOCKET_H
#define WORMHOLE_BROKER_UNIX_SOCKET_H

#include <sys/stat.h>

#include "log.h"

/* Makes path free for a new socket of `type` (SOCK_SEQPACKET, SOCK_STREAM): nothing there, or
 * a stale socket (removed). Anything else is left alone: a file that is not a socket, or a
 * socket a program answers on. 0, or -1 with errno and a log line under `component`. */
int unix_socket_claim(const char *path, int type, const struct log_sink *log, const char *component);

/* path's directory is a directory where no stranger may put things: not writable by anyone
 * unless sticky (like /tmp, where only a file's owner may replace it). 0, or -1 with errno and
 * a log line. The sockets' and the port file's directories are checked alike. */
int unix_socket_dir_check(const char *path, const struct log_sink *log, const char *component);

/* Binds the socket fd at path with the given mode and owner (uid, gid: -1 leaves it) and
 * listens, so that no other file is ever chmodded or chowned in its place: the socket is
 * bound in a private directory made beside path (mode 0700, ours alone), given its owner and
 * mode there, and renamed onto path (rename replaces a link planted at path, never what it
 * points to). The claim (unix_socket_claim) comes first. made: the socket file's identity,
 * so that only it is removed at stop. 0, or -1 with errno and a log line. */
int unix_socket_bind(int fd, const char *path, unsigned mode, long uid, long gid, int backlog,
		     struct stat *made, const struct log_sink *log, const char *component);

/* Writes text to path as a new file (mode 0644): a temporary file beside it, made with
 * O_CREAT|O_EXCL|O_NOFOLLOW under a random name, then renamed over path. A link planted at
 * path or at any temporary name is never followed. 0, or -1 with errno and a log line. */
int unix_socket_write_file(const char *path, const char *text, const struct log_sink *log,
			   const char *component);

#endif
