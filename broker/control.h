/* The control socket: wormhole-ctl's way into a running broker (docs/CONTROL.md). */
#ifndef WORMHOLE_BROKER_CONTROL_H
#define WORMHOLE_BROKER_CONTROL_H

#include <ev.h>

#include "broker.h"
#include "options.h"

/*
 * Shaped like relayd's control.c: a SOCK_STREAM Unix socket (control-socket, mode 0600 by
 * default, so that apps that may attach may not administer), a few clients at a time, one
 * request at a time per client. Each request is answered from per-module snapshots (the
 * broker's, the pools', the conns', the apps') taken through their own functions: this file
 * never reads another module's structs. Every request is logged with the caller's pid and uid
 * (SO_PEERCRED): actions at info, views at debug.
 */

struct control;

/* What only main knows: how to reload (as SIGHUP does) and what the settings were loaded from. */
struct control_hooks {
	/* Reads the config again and applies it. WH_OK, or an error with the reasons in message. */
	int (*reload)(void *ctx, char *message, size_t length);
	/* The options as last loaded (values and where each came from), and when. */
	const struct options *(*options)(void *ctx, double *loaded_at);
	void *ctx;
};

/* Binds the socket (config->control; a stale one is replaced, a live one refused) and starts
 * metrics-listen if set (broker/metrics_http.h: GET /metrics, what `wormhole-ctl metrics`
 * prints). NULL with errno and a log line on failure. */
struct control *control_start(struct broker *broker, const struct control_hooks *hooks);
/* Closes every client and the socket, and removes the socket file if it is still ours. */
void control_stop(struct control *control);

#endif
