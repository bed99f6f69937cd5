/* The broker's built-in services, served to streams that peers open: echo and discard. */
#ifndef WORMHOLE_BROKER_SERVICES_H
#define WORMHOLE_BROKER_SERVICES_H

#include "mux.h"

/*
 * Takes an incoming stream for a built-in service: "echo" sends every byte back and closes
 * after the peer's CLOSE; "discard" reads and drops everything, then closes. Returns WH_OK
 * (the stream is owned by the service from now on) or WH_ENO_SERVICE.
 */
int services_attach(struct mux_stream *stream, const char *service);
/* True if name is a built-in service. */
bool services_exists(const char *name);

#endif
