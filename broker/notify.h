/* The service manager's readiness protocol: state lines sent to $NOTIFY_SOCKET. */
#ifndef WORMHOLE_BROKER_NOTIFY_H
#define WORMHOLE_BROKER_NOTIFY_H

#include <stdbool.h>

/*
 * systemd's sd_notify protocol, written by hand (it is one datagram): "READY=1" once the broker
 * listens, "RELOADING=1" with MONOTONIC_USEC before a reload and "READY=1" after it,
 * "STOPPING=1" when it begins to drain, "STATUS=..." for people. Without $NOTIFY_SOCKET (not
 * started by systemd with Type=notify) it does nothing. Returns true if the datagram went.
 */
bool notify_service_manager(const char *state);
/* "RELOADING=1\nMONOTONIC_USEC=<now>": what systemd wants to hear before a reload. */
bool notify_reloading(void);

#endif
