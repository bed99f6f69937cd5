/* The broker's Unix sockets (apps, control): claiming their path safely. */
#ifndef WORMHOLE_BROKER_UNIX_SOCKET_H
#define WORMHOLE_BROKER_UNIX_SOCKET_H

#include "log.h"

/* Makes path free for a new socket of `type` (SOCK_SEQPACKET, SOCK_STREAM): nothing there, or
 * a stale socket (removed). Anything else is left alone: a file that is not a socket, or a
 * socket a program answers on. 0, or -1 with errno and a log line under `component`. */
int unix_socket_claim(const char *path, int type, const struct log_sink *log, const char *component);

#endif
