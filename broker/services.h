/* Who serves a name: the broker's built-in services (echo and discard), and the registry of
 * local apps listening on service names. */
#ifndef WORMHOLE_BROKER_SERVICES_H
#define WORMHOLE_BROKER_SERVICES_H

#include <stddef.h>
#include <stdint.h>

#include "mux.h"

/*
 * Takes an incoming stream for a built-in service: "echo" sends every byte back and closes
 * after the peer's CLOSE; "discard" reads and drops everything, then closes. Returns WH_OK
 * (the stream is owned by the service from now on) or WH_ENO_SERVICE.
 */
int services_attach(struct mux_stream *stream, const char *service);
/* True if name is a built-in service. */
bool services_exists(const char *name);
/* The built-in services' names, NULL-terminated. */
extern const char *const services_builtin[];

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
/* Calls fn for every name and its owner (fn must not change the registry). */
void service_registry_each(const struct service_registry *registry,
			   void (*fn)(const char *service, void *owner, void *arg), void *arg);
/* Unregisters every name owner listens on; returns how many there were. */
size_t service_registry_remove_owner(struct service_registry *registry, const void *owner);

/*
 * Access rules, by service name ([service NAME] sections of the config file). A service with
 * no rule: local apps may open it, any app that may attach may listen on it (except the
 * built-in services and the default service, which are the broker's: no app may claim one
 * unless its rule names an owner), and peers may
 * open it over TLS (any authenticated identity) or over plaintext from loopback; a
 * plaintext peer off loopback may open only a service whose rule says `peers = *`.
 */
#define SERVICE_RULES_MAX 64
#define SERVICE_RULE_PEERS_MAX 16
struct service_rule {
	char name[256];
	bool peers_set;     /* `peers` given: only these may open it */
	bool any_peer;      /* peers = *: every peer, plaintext ones too */
	unsigned peer_count;
	char peers[SERVICE_RULE_PEERS_MAX][64]; /* identities from certificates */
	bool local;         /* local apps may open it (default yes) */
	long owner_uid, owner_gid; /* who may listen on it; -1: not restricted by that */
	/* "" or, when the section has a `target`, why no app may listen on it (its streams go to
	 * the target, which takes precedence: an app listening there would never get one) */
	char target_refusal[200];
};
struct service_rules {
	struct service_rule rules[SERVICE_RULES_MAX];
	unsigned count;
};

/* The rule for a service, or NULL. */
const struct service_rule *service_rules_find(const struct service_rules *rules, const char *name);
/* WH_OK, or WH_EACCESS with the reason in *why: may a peer open the service? identity is its
 * certificate's name ("" on plaintext); loopback: the connection comes from this host. */
int service_peer_may_open(const struct service_rules *rules, const char *service,
			  const char *identity, bool tls, bool loopback, const char **why);
/* A local app's credentials as the kernel gave them (SO_PEERCRED, SO_PEERGROUPS). */
struct app_credentials {
	long uid, gid;
	const uint32_t *groups; /* supplementary groups */
	unsigned group_count;
};
/* True if group is the app's primary group or one of its supplementary groups: the one test
 * for both attach-groups and a service's `owner = :GROUP`. */
bool app_credentials_in_group(const struct app_credentials *who, long group);
/* The section has `target = TARGET` (as configured): no app may listen on the service. */
void service_rule_set_target(struct service_rule *rule, const char *target);
/* WH_OK, or WH_EACCESS with *why: may an app with these credentials listen on the service?
 * default_service is the broker's service for streams that name none. */
int service_app_may_listen(const struct service_rules *rules, const char *service,
			   const char *default_service, const struct app_credentials *who,
			   const char **why);
/* WH_OK, or WH_EACCESS with *why: may a local app open the service? */
int service_app_may_open(const struct service_rules *rules, const char *service, const char **why);

#endif
