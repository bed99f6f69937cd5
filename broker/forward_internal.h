/* What broker/forward.c and broker/target.c share: the broker's forwarding state. */
#ifndef WORMHOLE_BROKER_FORWARD_INTERNAL_H
#define WORMHOLE_BROKER_FORWARD_INTERNAL_H

#include <netdb.h>
#include <stddef.h>

#include "broker.h"
#include "forward.h"
#include "tcp_relay.h"

struct forward_listener;
struct target_dial;
struct name_lookup;
struct target_health;
struct churn_table;

/* An exposed service's bandwidth limit, shared by the relays of all its targets. Made at the
 * first stream of the service and kept until the broker stops (relays point to it). */
struct service_limit {
	struct service_limit *next;
	struct forwarding *fw;
	char service[256];
	struct tcp_relay_limit limit;
};

/* One target of one service as it fared: its relays (connections now and in all, bytes,
 * resets) and its failed connects. Made at the first dial of it; bounded by
 * TARGET_ENTRIES_MAX, idle entries a reload removed from the config go first. */
struct target_entry {
	struct target_entry *next;
	char service[256];
	char target[300]; /* as configured: "127.0.0.1:8000" */
	struct tcp_relay_set relays;
	unsigned dialling; /* streams that chose it first and are connecting */
	uint64_t failures;
	bool last_failed; /* the last connect to it failed */
	bool tried;
	char last_error[160];
	struct target_health *health; /* health checks (health-check > 0), or NULL */
};

struct forwarding {
	struct broker *broker;
	struct forward_listener *listeners[FORWARD_MAX];
	unsigned listener_count;
	struct forward_listener *retiring; /* removed by a reload, draining */
	ev_timer retire_timer;
	ev_timer sync_timer; /* after a reload: health checks follow the new config */
	struct target_entry *targets;       /* per service and target: its relays and failures */
	unsigned target_entries;
	struct tcp_relay_set untracked_relays; /* relays of targets the table had no room for */
	struct service_limit *limits;       /* services' bandwidth limits, by name */
	struct {
		char service[256];
		uint64_t next;
	} turns[FORWARD_EXPOSED_MAX]; /* round-robin: whose turn it is, per service */
	struct target_dial *dials;          /* streams whose target is being dialled */
	struct name_lookup *lookups;        /* target names being looked up, one lookup each */
	uint64_t target_failures;           /* streams refused: no target answered */
	struct churn_table *churn;          /* client-reset-rate, per peer and client address
					     * (forward.c), made when first needed */
};

/* "host:port", or "[v6]:port". */
void forward_format_address(char *out, size_t length, const char *host, const char *port);
/* Sets TCP_NODELAY: the relay writes what it has at once, so small requests and answers are
 * not held back by Nagle waiting for an ACK. */
void forward_socket_nodelay(int fd);

/* broker/target.c */
struct target_entry *target_entry_get(struct forwarding *fw, const char *service, const char *target);
bool target_entry_configured(const struct broker_config *c, const struct target_entry *e);
int target_attach(struct forwarding *fw, struct mux_stream *stream, const struct exposed_service *exposed);
void targets_stop(struct forwarding *fw);
void targets_stop_lookups(struct forwarding *fw);
/* After a reload: each service's bandwidth limit takes its new rate (0 if it has none now). */
void targets_sync_limits(struct forwarding *fw);
/* Ends the dials and target relays whose stream is on a connection match() picks. */
void targets_abort_where(struct forwarding *fw, bool (*match)(const struct mux *, void *), void *arg,
			 const char *message);

/* broker/health.c: active health checks of targets (health-check, fall, rise). */
/* Starts checks the config asks for and stops those it no longer does (start, reload). */
void health_sync(struct forwarding *fw);
/* True when checks say the target is down: it takes no new streams. */
bool health_is_down(const struct target_entry *e);
/* "up", "down", or NULL when the target is not checked. */
const char *health_state(const struct target_entry *e);
void health_stop(struct target_entry *e);

#endif
