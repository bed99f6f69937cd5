/* Who serves a name: the broker's built-in services (echo and discard), and the registry of
 * local apps listening on service names. */
#ifndef WORMHOLE_BROKER_SERVICES_H
#define WORMHOLE_BROKER_SERVICES_H

#include <stddef.h>

#include "mux.h"

/*
 * Takes an incoming stream for a built-in service: "echo" sends every byte back and closes
 * after the peer's CLOSE; "discard" reads and drops everything, then closes. Returns WH_OK
 * (the stream is owned by the service from now on) or WH_ENO_SERVICE.
 */
int services_attach(struct mux_stream *stream, const char *service);
/* True if name is a built-in service. */
bool services_exists(const char *name);

/*
 * The listener registry: service name -> the owner (an app session) listening on it, at most
 * one owner per name, found in O(1) (a hash table of chains that doubles as it fills). Owners
 * are opaque pointers: the registry never looks inside them.
 */
struct service_listener;
struct service_registry {
	struct service_listener **buckets;
	size_t bucket_count; /* a power of two, or 0 before the first add */
	size_t count;
};

void service_registry_init(struct service_registry *registry);
/* Frees every entry (not the owners). */
void service_registry_free(struct service_registry *registry);
/* The owner listening on service, or NULL. */
void *service_registry_find(const struct service_registry *registry, const char *service);
/* Registers owner on service. WH_OK; WH_ESERVICE_TAKEN when another owner (or the same one)
 * listens there already; WH_ENOMEM. */
int service_registry_add(struct service_registry *registry, const char *service, void *owner);
/* Unregisters owner from service. WH_OK, or WH_ENO_SERVICE when owner does not listen there. */
int service_registry_remove(struct service_registry *registry, const char *service,
			    const void *owner);
/* Unregisters every name owner listens on; returns how many there were. */
size_t service_registry_remove_owner(struct service_registry *registry, const void *owner);

#endif
