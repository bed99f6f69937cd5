/* The broker's settings: one table for the command line, --help, the config file,
 * --check-config, the man page's option list, and the control tool's view of them.
 * This file: options_load, which reads them in their order (defaults, the file, the command
 * line), the command line itself, and the peers both of them name. The rest of the reader is
 * beside it: the table and the help made from it (options_table.c), one value's parsing
 * (options_values.c), the file (options_file.c) and its [service] and [forward] sections
 * (options_sections.c), the checks of the whole (options_check.c). */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "options_internal.h"

/* ---- peers ------------------------------------------------------------------------------- */

int find_peer(const struct broker_config *c, const char *name)
{
	for (int i = 0; i < c->peer_count; i++)
		if (strcmp(c->peers[i].name, name) == 0)
			return i;
	return -1;
}

int add_peer(struct loading *l, const char *name, const struct origin *at, const char *value)
{
	struct broker_config *c = &l->o->config;
	int i = find_peer(c, name);
	if (i >= 0)
		return i;
	if (c->peer_count == BROKER_PEERS_MAX) {
		/* once per peer too many: each line of its section comes here */
		if (!at->file || l->peer_overflow_line != l->section_line)
			add_error(l->o, at, &option_table[OPT_PEER], value, "more than %d peers", BROKER_PEERS_MAX);
		if (at->file)
			l->peer_overflow_line = l->section_line;
		return -1;
	}
	i = c->peer_count++;
	memset(&c->peers[i], 0, sizeof c->peers[i]);
	snprintf(c->peers[i].name, sizeof c->peers[i].name, "%s", name);
	return i;
}

/* ---- the command line -------------------------------------------------------------------- */

static void build_getopt(struct option *longs, char *shorts)
{
	int n = 0, s = 0;
	for (int i = 0; i < OPTION_COUNT_ALL; i++) {
		const struct option_info *info = &option_table[i];
		if (file_only(info))
			continue; /* [peer NAME] or [service NAME] only */
		longs[n++] = (struct option){ info->name,
					      info->type == OPTION_FLAG ? no_argument : required_argument,
					      NULL, 1000 + i };
		if (info->short_name) {
			shorts[s++] = info->short_name;
			if (info->type != OPTION_FLAG)
				shorts[s++] = ':';
		}
	}
	longs[n] = (struct option){ NULL, 0, NULL, 0 };
	shorts[s] = '\0';
}

static const struct option_info *info_of_short(int ch)
{
	for (int i = 0; i < OPTION_COUNT_ALL; i++)
		if (option_table[i].short_name == ch)
			return &option_table[i];
	return NULL;
}

/* --peer NAME=HOST:PORT: a peer the file need not name (given twice on the command line is an
 * error; cli_peer_names holds the names given so far). */
static void add_cli_peer(struct options *o, struct loading *l, const struct option_info *info,
			 const char *value, const struct origin *at, char cli_peer_names[][64], int *cli_peers)
{
	const char *eq = strchr(value, '=');
	char name[64] = "";
	if (!eq || eq == value || (size_t)(eq - value) >= sizeof name) {
		add_error(o, at, info, value, "wants NAME=HOST:PORT");
		return;
	}
	memcpy(name, value, (size_t)(eq - value));
	if (!peer_name_valid(name) || strcmp(name, "local") == 0) {
		add_error(o, at, info, value, "%s", strcmp(name, "local") == 0
					 ? "\"local\" means apps on this broker: not a peer name"
					 : "a peer name is 1 to 63 letters, digits, '-', '_' or '.'");
		return;
	}
	bool twice = false;
	for (int i = 0; i < *cli_peers; i++)
		twice = twice || strcmp(cli_peer_names[i], name) == 0;
	if (twice) {
		add_error(o, at, info, value, "peer %s is given twice", name);
		return;
	}
	char host[256], port[16];
	const char *why = parse_address(eq + 1, 1, 65535, host, sizeof host, port, sizeof port);
	if (why) {
		add_error(o, at, info, value, "%s", why);
		return;
	}
	int i = add_peer(l, name, at, value);
	if (i < 0)
		return;
	if (*cli_peers < BROKER_PEERS_MAX)
		snprintf(cli_peer_names[(*cli_peers)++], sizeof cli_peer_names[0], "%s", name);
	snprintf(o->config.peers[i].host, sizeof o->config.peers[i].host, "%s", host);
	snprintf(o->config.peers[i].port, sizeof o->config.peers[i].port, "%s", port);
	o->peer_line[i][OPT_ADDRESS] = OPTIONS_FROM_COMMAND_LINE;
}

/* Reads --config, --check-config, --help, --version first: the file comes before the rest. */
static void scan_command_line(struct options *o, int argc, char **argv, bool apply, struct loading *l)
{
	struct option longs[OPTION_COUNT_ALL + 1];
	char shorts[2 * OPTION_COUNT_ALL + 2];
	build_getopt(longs, shorts);
	/* getopt_long reorders what it is given: work on a copy */
	char **args = calloc((size_t)argc + 1, sizeof *args);
	if (!args) {
		add_error(o, NULL, NULL, NULL, "out of memory");
		return;
	}
	memcpy(args, argv, sizeof args[0] * (size_t)argc);
	optind = 1;
	opterr = 0;
	int ch;
	int cli_peers = 0;
	char cli_peer_names[BROKER_PEERS_MAX][64];
	while ((ch = getopt_long(argc, args, shorts, longs, NULL)) != -1) {
		const struct option_info *info = ch >= 1000 ? &option_table[ch - 1000] : info_of_short(ch);
		char spelling[80];
		if (ch == '?' || ch == ':' || !info) {
			if (!apply)
				continue;
			const char *arg = args[optind - 1];
			struct origin at = { NULL, 0, arg };
			add_error(o, &at, NULL, NULL, ch == ':' || (optopt && info_of_short(optopt))
							 ? "wants a value"
							 : "no such option (--help lists them)");
			continue;
		}
		snprintf(spelling, sizeof spelling, "--%s", info->name);
		struct origin at = { NULL, 0, spelling };
		const char *value = optarg;
		switch (info->id) {
		case OPT_CONFIG:
			if (!apply) {
				snprintf(o->config_path, sizeof o->config_path, "%s", value);
				o->config_path_given = true;
			}
			continue;
		case OPT_CHECK_CONFIG: o->check_only = true; continue;
		case OPT_HELP: o->help = true; continue;
		case OPT_VERSION: o->version = true; continue;
		default:
			break;
		}
		if (!apply)
			continue;
		if (info->id == OPT_PEER) {
			add_cli_peer(o, l, info, value, &at, cli_peer_names, &cli_peers);
			continue;
		}
		if (set_value(o, info, value, &at, NULL)) {
			snprintf(o->sources[info->id].where, sizeof o->sources[0].where, "command line");
			if (info->scope == SCOPE_PEER)
				l->cli_set[info->id] = true;
		}
	}
	if (apply && optind < argc) {
		struct origin at = { NULL, 0, args[optind] };
		add_error(o, &at, NULL, NULL, "unexpected argument");
	}
	free(args);
}

bool options_load(struct options *o, int argc, char **argv)
{
	memset(o, 0, sizeof *o);
	broker_config_default(&o->config);
	for (int i = 0; i < OPTION_COUNT_ALL; i++) {
		if (option_table[i].id != (enum option_id)i)
			abort(); /* the table is out of order: a build defect */
		snprintf(o->sources[i].where, sizeof o->sources[0].where, "built-in");
	}
	static struct loading l; /* large: not on the stack */
	memset(&l, 0, sizeof l);
	l.o = o;
	scan_command_line(o, argc, argv, false, &l);
	if (o->help || o->version)
		return true;
	char path[sizeof o->config_path];
	snprintf(path, sizeof path, "%s", o->config_path_given ? o->config_path : options_default_config_path());
	o->config_path[0] = '\0'; /* set again once the file is read */
	load_file(&l, path, o->config_path_given);
	scan_command_line(o, argc, argv, true, &l);
	/* every peer starts from the broker-wide defaults, then its own section, unless the
	 * command line said otherwise for all peers */
	for (int i = 0; i < o->config.peer_count; i++)
		o->config.peers[i].pool = o->config.pool;
	for (int k = 0; k < l.setting_count; k++) {
		struct peer_setting *s = &l.settings[k];
		if (l.cli_set[s->info->id])
			continue;
		struct origin at = { l.file, s->line, NULL };
		if (set_value(o, s->info, s->value, &at, &o->config.peers[s->peer].pool))
			o->peer_line[s->peer][s->info->id] = s->line;
	}
	check_whole(o, &l);
	return o->error_count == 0;
}

