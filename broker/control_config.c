/* The control socket's config view: every setting in force, in [broker], each [peer NAME]
 * and each [service NAME], with where its value came from and when a change applies. Apart
 * from the other views (control_views.c) because it reads the options as loaded
 * (options.h), not a module's snapshot. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "control.h"
#include "control_internal.h"
#include "control_msg.h"

static const char *apply_name(enum option_apply apply)
{
	switch (apply) {
	case APPLY_LIVE: return "live";
	case APPLY_NEW_STREAMS: return "new streams";
	case APPLY_NEW_CONNECTIONS: return "new connections";
	default: return "restart";
	}
}

/* A config value, or none (NULL value: `meaning` says what is in force instead). */
static void config_row(struct control_writer *w, const char *option, enum option_apply apply, const char *section,
		       const char *value, const char *meaning, const char *source)
{
	control_table_row(w);
	control_put_text(w, option);
	control_put_text(w, section);
	if (value)
		control_put_text(w, value);
	else
		control_put_null(w, meaning);
	control_put_text(w, source);
	control_put_text(w, apply_name(apply));
}

/* The value shown for a broker-wide or peer setting: NULL where the broker would otherwise show
 * a placeholder (an owner of -1:-1, a peer address in [broker]), with *meaning set. */
static const char *config_value(const struct options *o, const struct broker_peer *peer, enum option_id id,
				char *value, size_t length, const char **meaning)
{
	const struct broker_config *c = &o->config;
	long uid = id == OPT_SOCKET_OWNER ? c->apps.socket_uid : c->control.socket_uid;
	long gid = id == OPT_SOCKET_OWNER ? c->apps.socket_gid : c->control.socket_gid;
	if (id == OPT_SOCKET_OWNER || id == OPT_CONTROL_SOCKET_OWNER) {
		*meaning = "the broker's user and group";
		if (uid < 0 && gid < 0)
			return NULL;
		if (uid < 0)
			snprintf(value, length, ":%ld", gid);
		else if (gid < 0)
			snprintf(value, length, "%ld", uid);
		else
			snprintf(value, length, "%ld:%ld", uid, gid);
		return value;
	}
	if (!peer && (id == OPT_ADDRESS || id == OPT_TLS_NAME || id == OPT_PEER_FROM)) {
		*meaning = id == OPT_TLS_NAME ? "each peer's name" : "none (each [peer NAME] gives its own)";
		return NULL;
	}
	options_format_value(c, peer, id, value, length);
	return value;
}

/* Where a peer's value came from: its own line, the command line, or the broker-wide value's. */
static const char *peer_source(const struct options *o, int p, int i, char *out, size_t length)
{
	int line = o->peer_line[p][i];
	if (line == OPTIONS_FROM_COMMAND_LINE)
		return "command line";
	if (line > 0) {
		snprintf(out, length, "%s:%d", o->config_path, line);
		return out;
	}
	return o->sources[i].where;
}

static void config_service_rows(struct control_writer *w, const struct options *o)
{
	const struct service_rules *rules = &o->config.apps.services;
	for (unsigned r = 0; r < rules->count; r++) {
		const struct service_rule *rule = &rules->rules[r];
		char section[300], peers[SERVICE_RULE_PEERS_MAX * 66] = "", owner[48], where[3][4200];
		snprintf(section, sizeof section, "service %s", rule->name);
		for (unsigned p = 0; p < rule->peer_count; p++)
			snprintf(peers + strlen(peers), sizeof peers - strlen(peers), "%s%s", p ? ", " : "", rule->peers[p]);
		if (rule->owner_uid >= 0 && rule->owner_gid >= 0)
			snprintf(owner, sizeof owner, "%ld:%ld", rule->owner_uid, rule->owner_gid);
		else
			snprintf(owner, sizeof owner, rule->owner_uid >= 0 ? "%ld" : ":%ld",
				 rule->owner_uid >= 0 ? rule->owner_uid : rule->owner_gid);
		for (int k = 0; k < 3; k++) {
			if (o->service_line[r][k] > 0)
				snprintf(where[k], sizeof where[k], "%s:%d", o->config_path, o->service_line[r][k]);
			else
				snprintf(where[k], sizeof where[k], "built-in");
		}
		const char *peers_value = !rule->peers_set ? NULL : rule->any_peer ? "*" : rule->peer_count ? peers : "none";
		config_row(w, "peers", option_table[OPT_SERVICE_PEERS].apply, section, peers_value,
			   "any peer that authenticated", where[0]);
		config_row(w, "local", option_table[OPT_SERVICE_LOCAL].apply, section, rule->local ? "yes" : "no",
			   NULL, where[1]);
		config_row(w, "owner", option_table[OPT_SERVICE_OWNER].apply, section,
			   rule->owner_uid < 0 && rule->owner_gid < 0 ? NULL : owner, "any app that may attach", where[2]);
	}
}

void view_config(struct view_ctx *v)
{
	struct control *ctl = v->control;
	double loaded_at;
	const struct options *o = ctl->hooks.options ? ctl->hooks.options(ctl->hooks.ctx, &loaded_at) : NULL;
	if (!o) {
		fail(v->reply, WH_EINVAL, "this broker keeps no record of its settings");
		return;
	}
	struct control_writer *w = &v->w;
	table_begin(v->reply, w, "config");
	control_table_column(w, "option", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "the setting's name");
	control_table_column(w, "section", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "broker, peer NAME or service NAME");
	control_table_column(w, "value", CONTROL_TEXT, CONTROL_INFO | CONTROL_NULLABLE, CONTROL_UNIT_NONE, "the value in force, as the config file spells it (null: none; the text says what applies)");
	control_table_column(w, "source", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "built-in, FILE:LINE, command line or wormhole-ctl");
	control_table_column(w, "applies", CONTROL_TEXT, CONTROL_INFO, CONTROL_UNIT_NONE, "when a change takes effect on reload");
	char value[512], where[4200];
	const char *meaning = NULL;
	/* log-level set by wormhole-ctl since the settings were loaded: that is what is in force */
	bool level_by_ctl = ctl->log_level_set_at > loaded_at;
	for (int i = 0; i < OPTION_COUNT_ALL; i++) {
		const struct option_info *info = &option_table[i];
		if (info->scope != SCOPE_BROKER && info->scope != SCOPE_PEER)
			continue;
		const char *shown = config_value(o, NULL, info->id, value, sizeof value, &meaning);
		const char *source = o->sources[i].where;
		if (info->id == OPT_LOG_LEVEL && level_by_ctl) {
			struct broker_status st;
			broker_get_status(ctl->broker, &st);
			shown = log_level_name(st.log_level);
			source = "wormhole-ctl";
		}
		config_row(w, info->name, info->apply, "broker", shown, meaning, source);
	}
	for (int p = 0; p < o->config.peer_count; p++) {
		const struct broker_peer *peer = &o->config.peers[p];
		char section[80];
		snprintf(section, sizeof section, "peer %s", peer->name);
		for (int i = 0; i < OPTION_COUNT_ALL; i++) {
			const struct option_info *info = &option_table[i];
			if (info->scope != SCOPE_PEER)
				continue;
			const char *shown = config_value(o, peer, info->id, value, sizeof value, &meaning);
			config_row(w, info->name, info->apply, section, shown, meaning,
				   peer_source(o, p, i, where, sizeof where));
		}
	}
	config_service_rows(w, o);
	table_end(v->reply, w, "config", ctl->log);
}

