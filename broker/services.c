/* Who serves a name: the built-in services (echo and discard) and the registry of listening apps. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services.h"

#define SERVICE_CHUNK 65536

/* The stream loops back (mux_stream_loop_back): the handler only tells the mux that bytes
 * came and, after the peer's CLOSE, closes too. A peer that does not read the answers stops
 * its own window: the broker holds its window's worth, once. */
static void echo_handler(struct mux_stream *stream, enum mux_stream_event event, void *user)
{
	(void)user;
	switch (event) {
	case MUX_STREAM_READABLE:
		mux_stream_kick(stream);
		return;
	case MUX_STREAM_WRITABLE:
		return;
	case MUX_STREAM_EOF: /* the CLOSE follows what is still to go back */
	case MUX_STREAM_ERROR:
		mux_stream_release(stream);
		return;
	}
}

static void discard_handler(struct mux_stream *stream, enum mux_stream_event event, void *user)
{
	uint8_t buffer[SERVICE_CHUNK];
	(void)user;
	(void)event;
	for (;;) {
		long n = mux_stream_read(stream, buffer, sizeof buffer);
		if (n == WH_EWOULDBLOCK)
			return;
		if (n <= 0) {
			mux_stream_release(stream);
			return;
		}
	}
}

const char *const services_builtin[] = { "echo", "discard", NULL };

bool services_exists(const char *name)
{
	return strcmp(name, "echo") == 0 || strcmp(name, "discard") == 0;
}

int services_attach(struct mux_stream *stream, const char *service)
{
	if (strcmp(service, "echo") == 0) {
		mux_stream_loop_back(stream);
		mux_stream_set_handler(stream, echo_handler, NULL);
	}
	else if (strcmp(service, "discard") == 0)
		mux_stream_set_handler(stream, discard_handler, NULL);
	else
		return WH_ENO_SERVICE;
	return WH_OK;
}

/* ---- the listener registry ----------------------------------------------------------- */

struct service_listener {
	struct service_listener *next; /* in its bucket */
	void *owner;
	char service[]; /* NUL-terminated */
};

/* FNV-1a: names are short and chosen by apps; the table only needs spread, not secrecy,
 * because a name's bucket costs its owner, who also pays the per-app listener limit. */
static size_t name_hash(const char *name)
{
	uint64_t h = 1469598103934665603ull;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		h ^= *p;
		h *= 1099511628211ull;
	}
	return (size_t)(h ^ (h >> 32));
}

static struct service_listener **bucket_of(const struct service_registry *registry,
					   const char *service)
{
	return &registry->buckets[name_hash(service) & (registry->bucket_count - 1)];
}

void service_registry_init(struct service_registry *registry)
{
	memset(registry, 0, sizeof *registry);
}

void service_registry_free(struct service_registry *registry)
{
	for (size_t i = 0; i < registry->bucket_count; i++) {
		while (registry->buckets[i]) {
			struct service_listener *l = registry->buckets[i];
			registry->buckets[i] = l->next;
			free(l);
		}
	}
	free(registry->buckets);
	memset(registry, 0, sizeof *registry);
}

void *service_registry_find(const struct service_registry *registry, const char *service)
{
	if (registry->count == 0)
		return NULL;
	for (struct service_listener *l = *bucket_of(registry, service); l; l = l->next)
		if (strcmp(l->service, service) == 0)
			return l->owner;
	return NULL;
}

/* Doubles the bucket array (16 at first) once entries outnumber buckets. */
static int registry_grow(struct service_registry *registry)
{
	size_t count = registry->bucket_count ? registry->bucket_count * 2 : 16;
	struct service_listener **buckets = calloc(count, sizeof *buckets);
	if (!buckets)
		return WH_ENOMEM;
	for (size_t i = 0; i < registry->bucket_count; i++) {
		while (registry->buckets[i]) {
			struct service_listener *l = registry->buckets[i];
			registry->buckets[i] = l->next;
			size_t at = name_hash(l->service) & (count - 1);
			l->next = buckets[at];
			buckets[at] = l;
		}
	}
	free(registry->buckets);
	registry->buckets = buckets;
	registry->bucket_count = count;
	return WH_OK;
}

int service_registry_add(struct service_registry *registry, const char *service, void *owner)
{
	if (service_registry_find(registry, service))
		return WH_ESERVICE_TAKEN;
	if (registry->count >= registry->bucket_count && registry_grow(registry) != WH_OK)
		return WH_ENOMEM;
	size_t length = strlen(service);
	struct service_listener *l = malloc(sizeof *l + length + 1);
	if (!l)
		return WH_ENOMEM;
	memcpy(l->service, service, length + 1);
	l->owner = owner;
	struct service_listener **bucket = bucket_of(registry, service);
	l->next = *bucket;
	*bucket = l;
	registry->count++;
	return WH_OK;
}

int service_registry_remove(struct service_registry *registry, const char *service,
			    const void *owner)
{
	if (registry->count == 0)
		return WH_ENO_SERVICE;
	for (struct service_listener **link = bucket_of(registry, service); *link;
	     link = &(*link)->next) {
		struct service_listener *l = *link;
		if (strcmp(l->service, service) == 0) {
			if (l->owner != owner)
				return WH_ENO_SERVICE;
			*link = l->next;
			free(l);
			registry->count--;
			return WH_OK;
		}
	}
	return WH_ENO_SERVICE;
}

size_t service_registry_remove_owner(struct service_registry *registry, const void *owner)
{
	size_t removed = 0;
	for (size_t i = 0; i < registry->bucket_count; i++) {
		for (struct service_listener **link = &registry->buckets[i]; *link;) {
			struct service_listener *l = *link;
			if (l->owner == owner) {
				*link = l->next;
				free(l);
				removed++;
			} else {
				link = &l->next;
			}
		}
	}
	registry->count -= removed;
	return removed;
}

void service_registry_each(const struct service_registry *registry,
			   void (*fn)(const char *service, void *owner, void *arg), void *arg)
{
	for (size_t i = 0; i < registry->bucket_count; i++)
		for (const struct service_listener *l = registry->buckets[i]; l; l = l->next)
			fn(l->service, l->owner, arg);
}

/* ---- access rules ---------------------------------------------------------------------- */

const struct service_rule *service_rules_find(const struct service_rules *rules, const char *name)
{
	for (unsigned i = 0; i < rules->count; i++)
		if (strcmp(rules->rules[i].name, name) == 0)
			return &rules->rules[i];
	return NULL;
}

int service_peer_may_open(const struct service_rules *rules, const char *service,
			  const char *identity, bool tls, bool loopback, const char **why)
{
	const struct service_rule *rule = service_rules_find(rules, service);
	if (rule && rule->peers_set) {
		if (rule->any_peer)
			return WH_OK;
		for (unsigned i = 0; tls && identity[0] && i < rule->peer_count; i++)
			if (strcmp(rule->peers[i], identity) == 0)
				return WH_OK;
		*why = tls ? "this peer is not among the service's peers" : "the service's peers are named by certificate: this link has no TLS";
		return WH_EACCESS;
	}
	if (tls || loopback)
		return WH_OK;
	*why = "a plaintext peer off loopback may open only services with peers = *";
	return WH_EACCESS;
}

bool app_credentials_in_group(const struct app_credentials *who, long group)
{
	if (group < 0)
		return false;
	if (who->gid == group)
		return true;
	for (unsigned i = 0; i < who->group_count; i++)
		if ((long)who->groups[i] == group)
			return true;
	return false;
}

void service_rule_set_target(struct service_rule *rule, const char *target)
{
	snprintf(rule->target_refusal, sizeof rule->target_refusal,
		 "service %.60s goes to its TCP target %.60s (target =), never to an app", rule->name,
		 target);
}

int service_app_may_listen(const struct service_rules *rules, const char *service,
			   const char *default_service, const struct app_credentials *who,
			   const char **why)
{
	const struct service_rule *rule = service_rules_find(rules, service);
	/* A peer's stream for it goes to the target before any app is looked for: a listener
	 * there would wait for ever, so it is told now (whoever owns the name). */
	if (rule && rule->target_refusal[0]) {
		*why = rule->target_refusal;
		return WH_EACCESS;
	}
	bool owned = rule && (rule->owner_uid >= 0 || rule->owner_gid >= 0);
	if (!owned) {
		/* A peer that opens echo or discard trusts the broker to answer, not whichever
		 * local user claimed the name first. */
		if (services_exists(service)) {
			*why = "a built-in service is the broker's unless a [service] rule names its owner";
			return WH_EACCESS;
		}
		if (default_service[0] && strcmp(service, default_service) == 0) {
			*why = "the default service is the broker's unless a [service] rule names its owner";
			return WH_EACCESS;
		}
		return WH_OK;
	}
	if ((rule->owner_uid >= 0 && rule->owner_uid == who->uid) ||
	    app_credentials_in_group(who, rule->owner_gid))
		return WH_OK;
	*why = "the service is reserved to another user or group";
	return WH_EACCESS;
}

int service_app_may_open(const struct service_rules *rules, const char *service, const char **why)
{
	const struct service_rule *rule = service_rules_find(rules, service);
	if (rule && !rule->local) {
		*why = "the service is for peers only (local = no)";
		return WH_EACCESS;
	}
	return WH_OK;
}
