/* The [peer NAME], [service NAME] and [forward NAME] sections of the config file: a peer's
 * address and own settings, a service's access rules and targets (made on its first key), a
 * forward's listener, peer and limits. Apart from the file reader (options_file.c) because
 * each section has rules of its own that the broker-wide table does not carry. */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "options.h"
#include "options_internal.h"
#include "services.h"

/* One key of a [peer NAME] section (the peer is made on its first key, or by its header:
 * note_peer_section). address and from are taken at once; the others wait in l->settings
 * until the broker-wide defaults are final (options_load). */
void set_peer_key(struct loading *l, const char *section, const struct option_info *info,
		  const char *name, const char *value, const struct origin *at)
{
	struct options *o = l->o;
	const char *peer = section + 5;
	while (*peer == ' ')
		peer++;
	if (!peer_name_valid(peer) || strcmp(peer, "local") == 0) {
		add_error(o, at, NULL, NULL, "[%s]: %s", section,
			  strcmp(peer, "local") == 0 ? "\"local\" means apps on this broker: not a peer name"
						     : "a peer name is 1 to 63 letters, digits, '-', '_' or '.'");
		return;
	}
	if (!info || info->scope != SCOPE_PEER) {
		add_error(o, at, NULL, NULL, "%s: %s", name,
			  info ? "not a setting of a peer" : "no such setting");
		return;
	}
	int i = add_peer(l, peer, at, section);
	if (i < 0)
		return;
	if (!l->peer_from_file[i]) {
		l->peer_from_file[i] = true;
		l->peer_lines[i] = l->section_line;
	}
	if (info->id == OPT_ADDRESS) {
		struct broker_peer *p = &o->config.peers[i];
		const char *why = parse_address(value, 1, 65535, p->host, sizeof p->host, p->port,
						sizeof p->port);
		if (why)
			add_error(o, at, info, value, "%s", why);
		o->peer_line[i][OPT_ADDRESS] = l->line;
		return;
	}
	if (info->id == OPT_PEER_FROM) {
		struct broker_peer *p = &o->config.peers[i];
		unsigned char bytes[16];
		int family = strchr(value, ':') ? AF_INET6 : AF_INET;
		if (inet_pton(family, value, bytes) != 1)
			add_error(o, at, info, value, "wants an IP address (no name, no port)");
		else
			inet_ntop(family, bytes, p->from, sizeof p->from);
		o->peer_line[i][OPT_PEER_FROM] = l->line;
		return;
	}
	if (l->setting_count < (int)(sizeof l->settings / sizeof l->settings[0])) {
		struct peer_setting *s = &l->settings[l->setting_count++];
		s->peer = i;
		s->info = info;
		s->line = l->line;
		snprintf(s->value, sizeof s->value, "%s", value);
	}
}

/* The [service NAME] section's targets (made on its first target key), or NULL (logged). */
static struct exposed_service *exposed_get(struct loading *l, const char *service, const struct origin *at)
{
	struct broker_config *c = &l->o->config;
	for (unsigned i = 0; i < c->exposed_count; i++)
		if (strcmp(c->exposed[i].service, service) == 0)
			return &c->exposed[i];
	if (c->exposed_count >= FORWARD_EXPOSED_MAX) {
		add_error(l->o, at, NULL, NULL, "[service %s]: at most %d services have targets", service,
			  FORWARD_EXPOSED_MAX);
		return NULL;
	}
	l->exposed_lines[c->exposed_count] = at->line;
	struct exposed_service *e = &c->exposed[c->exposed_count++];
	memset(e, 0, sizeof *e);
	snprintf(e->service, sizeof e->service, "%s", service);
	e->connect_timeout = FORWARD_CONNECT_TIMEOUT_DEFAULT;
	e->fall = FORWARD_FALL_DEFAULT;
	e->rise = FORWARD_RISE_DEFAULT;
	return e;
}

/* target = HOST:PORT[, HOST:PORT...] */
static void set_targets(struct loading *l, struct exposed_service *e, const struct option_info *info,
			const char *value, const struct origin *at)
{
	char list[1024];
	snprintf(list, sizeof list, "%s", value);
	e->target_count = 0;
	l->exposed_target_given[e - l->o->config.exposed] = true;
	for (char *save = NULL, *item = strtok_r(list, ", \t", &save); item;
	     item = strtok_r(NULL, ", \t", &save)) {
		if (e->target_count >= FORWARD_TARGETS_MAX) {
			add_error(l->o, at, info, value, "at most %d targets", FORWARD_TARGETS_MAX);
			return;
		}
		struct target_address *t = &e->targets[e->target_count];
		const char *why = parse_address(item, 1, 65535, t->host, sizeof t->host, t->port, sizeof t->port);
		if (why) {
			add_error(l->o, at, info, value, "%s: %s", item, why);
			return;
		}
		e->target_count++;
	}
	if (e->target_count == 0)
		add_error(l->o, at, info, value, "wants HOST:PORT[, HOST:PORT...]");
}

/* A [service NAME] key about its targets: target, connect-timeout, balance, health-check, fall,
 * rise, idle-timeout, bandwidth, proxy-protocol. */
static void set_exposed_key(struct loading *l, const char *service, const struct option_info *info,
			    const char *value, const struct origin *at)
{
	struct options *o = l->o;
	struct exposed_service *e = exposed_get(l, service, at);
	double seconds;
	if (!e)
		return;
	if (info->id == OPT_SERVICE_TARGET)
		set_targets(l, e, info, value, at);
	else if (info->id == OPT_SERVICE_BALANCE) {
		if (strcmp(value, "first") == 0)
			e->balance = BALANCE_FIRST;
		else if (strcmp(value, "round-robin") == 0)
			e->balance = BALANCE_ROUND_ROBIN;
		else if (strcmp(value, "least-connections") == 0)
			e->balance = BALANCE_LEAST_CONNECTIONS;
		else
			add_error(o, at, info, value, "first, round-robin or least-connections");
	} else if (info->id == OPT_SERVICE_FALL || info->id == OPT_SERVICE_RISE) {
		double n;
		if (!parse_whole(value, false, &n) || n < info->min || n > info->max)
			add_error(o, at, info, value, "not a whole number within 1..1000");
		else
			*(info->id == OPT_SERVICE_FALL ? &e->fall : &e->rise) = (unsigned)n;
	} else if (info->id == OPT_SERVICE_PROXY_PROTOCOL) {
		if (strcmp(value, "none") == 0)
			e->proxy_protocol = 0;
		else if (strcmp(value, "v1") == 0)
			e->proxy_protocol = 1;
		else if (strcmp(value, "v2") == 0)
			e->proxy_protocol = 2;
		else
			add_error(o, at, info, value, "none, v1 or v2");
	} else if (info->id == OPT_SERVICE_BANDWIDTH) {
		double n;
		if (!parse_whole(value, true, &n) || n > info->max)
			add_error(o, at, info, value, "not a whole number of bytes a second (K, M, G: "
				  "powers of 1024)");
		else
			e->bandwidth = n;
	} else if (info->id == OPT_SERVICE_HEALTH_CHECK || info->id == OPT_SERVICE_IDLE_TIMEOUT) {
		if (!parse_double(value, &seconds) || seconds < info->min || seconds > info->max)
			add_error(o, at, info, value, "not a number of seconds (%.15g..%.15g)",
				  info->min, info->max);
		else
			*(info->id == OPT_SERVICE_HEALTH_CHECK ? &e->health_interval
							      : &e->idle_timeout) = seconds;
	}
	else if (!parse_double(value, &seconds) || seconds < info->min || seconds > info->max)
		add_error(o, at, info, value, "not a number of seconds (0.001..3600)");
	else
		e->connect_timeout = seconds;
}

/* The rule of [service NAME] (made on its first key), or NULL (said). */
static struct service_rule *rule_get(struct options *o, const char *service, const struct origin *at)
{
	struct service_rules *rules = &o->config.apps.services;
	struct service_rule *rule = (struct service_rule *)service_rules_find(rules, service);
	if (!rule) {
		if (rules->count >= SERVICE_RULES_MAX) {
			add_error(o, at, NULL, NULL, "[service %s]: at most %d services have rules", service,
				  SERVICE_RULES_MAX);
			return NULL;
		}
		rule = &rules->rules[rules->count++];
		*rule = (struct service_rule){ .local = true, .owner_uid = -1, .owner_gid = -1 };
		snprintf(rule->name, sizeof rule->name, "%s", service);
	}
	return rule;
}

/* peers = NAME[, NAME...], '*' or 'none': who may open streams to the service. */
static void set_rule_peers(struct options *o, struct service_rule *rule, const struct option_info *info,
			   const char *value, const struct origin *at)
{
	rule->peers_set = true;
	rule->any_peer = false;
	rule->peer_count = 0;
	if (strcmp(value, "none") == 0)
		return;
	if (strcmp(value, "*") == 0) {
		rule->any_peer = true;
		return;
	}
	char list[1024];
	snprintf(list, sizeof list, "%s", value);
	for (char *save = NULL, *item = strtok_r(list, ", ", &save); item;
	     item = strtok_r(NULL, ", ", &save)) {
		if (rule->peer_count >= SERVICE_RULE_PEERS_MAX || strlen(item) >= sizeof rule->peers[0]) {
			add_error(o, at, info, value, "at most %d names of up to %zu bytes",
				  SERVICE_RULE_PEERS_MAX, sizeof rule->peers[0] - 1);
			return;
		}
		snprintf(rule->peers[rule->peer_count++], sizeof rule->peers[0], "%s", item);
	}
	if (rule->peer_count == 0)
		add_error(o, at, info, value, "names, '*' or 'none'");
}

/* One key of a [service NAME] section: the rule for NAME (made on its first key). */
void set_service_key(struct loading *l, const char *service, const struct option_info *info,
		     const char *name, const char *value, const struct origin *at)
{
	struct options *o = l->o;
	while (*service == ' ')
		service++;
	struct service_rules *rules = &o->config.apps.services;
	if (!service[0] || strlen(service) > 255) {
		add_error(o, at, NULL, NULL, "[service %s]: a service name is 1 to 255 bytes", service);
		return;
	}
	if (!info || info->scope != SCOPE_SERVICE) {
		add_error(o, at, NULL, NULL, "%s: %s", name,
			  info ? "not a setting of a service (peers, local, owner, target, connect-timeout, "
				 "balance, health-check, fall, rise, idle-timeout, bandwidth, proxy-protocol)"
			       : "no such setting");
		return;
	}
	struct service_rule *rule = rule_get(o, service, at);
	if (!rule)
		return;
	/* where peers, local and owner were set (the config view); a target's keys have
	 * exposed_lines of their own */
	if (info->id >= OPT_SERVICE_PEERS && info->id <= OPT_SERVICE_OWNER)
		o->service_line[rule - rules->rules][info->id - OPT_SERVICE_PEERS] = at->line;
	switch (info->id) {
	case OPT_SERVICE_PEERS:
		set_rule_peers(o, rule, info, value, at);
		return;
	case OPT_SERVICE_LOCAL: {
		int v = parse_bool(value);
		if (v < 0)
			add_error(o, at, info, value, "not yes or no");
		else
			rule->local = v;
		return;
	}
	case OPT_SERVICE_OWNER: {
		const char *why = parse_owner(value, &rule->owner_uid, &rule->owner_gid);
		if (why)
			add_error(o, at, info, value, "%s", why);
		return;
	}
	case OPT_SERVICE_TARGET:
		service_rule_set_target(rule, value);
		set_exposed_key(l, service, info, value, at);
		return;
	case OPT_SERVICE_BANDWIDTH:
	case OPT_SERVICE_PROXY_PROTOCOL:
	case OPT_SERVICE_IDLE_TIMEOUT:
	case OPT_SERVICE_BALANCE:
	case OPT_SERVICE_HEALTH_CHECK:
	case OPT_SERVICE_FALL:
	case OPT_SERVICE_RISE:
	case OPT_SERVICE_CONNECT_TIMEOUT:
		set_exposed_key(l, service, info, value, at);
		return;
	default:
		return;
	}
}

/* A [forward NAME] key's value into f: NULL, or why it is refused. */
static const char *forward_value(struct forward_config *f, const struct option_info *info,
				 const char *value)
{
	double number;
	const char *why = NULL;
	switch (info->id) {
	case OPT_FORWARD_LISTEN:
		why = parse_address(value, 0, 65535, f->listen_host, sizeof f->listen_host, f->listen_port,
				    sizeof f->listen_port);
		break;
	case OPT_FORWARD_PEER:
		if (!peer_name_valid(value))
			why = "a peer name is 1 to 63 letters, digits, '-', '_' or '.'";
		else
			snprintf(f->peer, sizeof f->peer, "%s", value);
		break;
	case OPT_FORWARD_SERVICE:
		if (!value[0] || strlen(value) > 255)
			why = "a service name is 1 to 255 bytes";
		else
			snprintf(f->service, sizeof f->service, "%s", value);
		break;
	case OPT_FORWARD_MAX_CONNECTIONS:
		if (!parse_whole(value, false, &number) || number < info->min || number > info->max)
			why = "not a whole number within 1..1048576";
		else
			f->max_connections = (unsigned)number;
		break;
	case OPT_FORWARD_IDLE_TIMEOUT:
		if (!parse_double(value, &number) || number < info->min || number > info->max)
			why = "not a number of seconds (0..1e9)";
		else
			f->idle_timeout = number;
		break;
	case OPT_FORWARD_BANDWIDTH:
		if (!parse_whole(value, true, &number) || number > info->max)
			why = "not a whole number of bytes a second (K, M, G: powers of 1024)";
		else
			f->bandwidth = number;
		break;
	case OPT_FORWARD_CONNECTION_RATE:
		if (!parse_whole(value, false, &number) || number < info->min || number > info->max)
			why = "not a whole number of connections a second (0..10000000)";
		else
			f->connection_rate = number;
		break;
	case OPT_FORWARD_CLIENT_RESET_RATE:
		if (!parse_whole(value, false, &number) || number < info->min || number > info->max)
			why = "not a whole number of streams a second (0..10000000)";
		else
			f->client_reset_rate = number;
		break;
	default:
		break;
	}
	return why;
}

/* One key of a [forward NAME] section (the forward is made on its first key). */
void set_forward_key(struct loading *l, const char *forward, const struct option_info *info,
		     const char *name, const char *value, const struct origin *at,
		     const struct origin *header)
{
	struct options *o = l->o;
	struct broker_config *c = &o->config;
	while (*forward == ' ')
		forward++;
	if (!peer_name_valid(forward)) {
		add_error(o, at, NULL, NULL, "[forward %s]: a forward's name is 1 to 63 letters, digits, "
			  "'-', '_' or '.'", forward);
		return;
	}
	if (!info || info->scope != SCOPE_FORWARD) {
		add_error(o, at, NULL, NULL, "%s: %s", name, info ? "not a setting of a forward (listen, "
			  "peer, service, max-connections, idle-timeout, connection-rate, client-reset-rate, "
			  "bandwidth)"
			: "no such setting");
		return;
	}
	unsigned i = 0;
	while (i < c->forward_count && strcmp(c->forwards[i].name, forward) != 0)
		i++;
	if (i == c->forward_count) {
		if (c->forward_count >= FORWARD_MAX) {
			add_error(o, header, NULL, NULL, "[forward %s]: at most %d forwards", forward, FORWARD_MAX);
			return;
		}
		c->forward_count++;
		memset(&c->forwards[i], 0, sizeof c->forwards[i]);
		snprintf(c->forwards[i].name, sizeof c->forwards[i].name, "%s", forward);
		c->forwards[i].max_connections = FORWARD_MAX_CONNECTIONS_DEFAULT;
		c->forwards[i].client_reset_rate = FORWARD_CLIENT_RESET_RATE_DEFAULT;
		l->forward_lines[i] = header->line;
	}
	const char *why = forward_value(&c->forwards[i], info, value);
	if (why)
		add_error(o, at, info, value, "%s", why);
}

