/* What the parts of the option reader share (options.c, options_table.c, options_values.c,
 * options_file.c, options_sections.c, options_check.c): where a value came from, the state
 * of one load, and the helpers each part calls in another. Not for the rest of the broker:
 * options.h is its way in. */
#ifndef WORMHOLE_BROKER_OPTIONS_INTERNAL_H
#define WORMHOLE_BROKER_OPTIONS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "options.h"

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * MIB)

/* Where a value was given: a file line or the command line. */
struct origin {
	const char *file; /* NULL: the command line */
	int line;
	const char *spelling; /* the command line's: "--ring-size" or "-l" */
};

/* Settings of one [peer NAME] section, kept as text until the broker-wide defaults are final
 * (the command line comes after the file). */
struct peer_setting {
	int peer;
	const struct option_info *info;
	char value[256];
	int line;
};

struct loading {
	struct options *o;
	const char *file;
	int line, section_line;
	char section[128];
	char sections_seen[64][128];
	int sections_seen_lines[64];
	int section_count;
	struct peer_setting settings[512];
	int setting_count;
	bool peer_from_file[BROKER_PEERS_MAX];
	int peer_lines[BROKER_PEERS_MAX];
	bool cli_set[OPTION_COUNT_ALL]; /* per-peer rows given on the command line */
	int peer_overflow_line; /* the section of the last peer refused as one too many */
	int forward_lines[FORWARD_MAX];  /* where each [forward NAME] starts */
	int exposed_lines[FORWARD_EXPOSED_MAX]; /* where each service's target keys start */
	bool exposed_target_given[FORWARD_EXPOSED_MAX]; /* a target key, good or bad (said then) */
};

/* options_table.c */
bool file_only(const struct option_info *info);
void format_id_list(const struct attach_rules *rules, bool groups, char *out, size_t len);

/* options_values.c: problems */
void add_error(struct options *o, const struct origin *at, const struct option_info *info,
	       const char *value, const char *format, ...) __attribute__((format(printf, 5, 6)));
void add_warning(struct options *o, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* options_values.c: values */
int parse_bool(const char *value);
bool parse_double(const char *text, double *out);
bool parse_whole(const char *text, bool bytes, double *out);
const char *parse_address(const char *text, double min, double max, char *host, size_t host_len,
			  char *port, size_t port_len);
const char *parse_owner(const char *text, long *uid, long *gid);
bool peer_name_valid(const char *name);
bool set_value(struct options *o, const struct option_info *info, const char *value,
	       const struct origin *at, struct pool_config *pool);

/* options.c: the peers the file and the command line name */
int find_peer(const struct broker_config *c, const char *name);
int add_peer(struct loading *l, const char *name, const struct origin *at, const char *value);

/* options_file.c */
void load_file(struct loading *l, const char *path, bool must_exist);

/* options_sections.c */
void set_peer_key(struct loading *l, const char *section, const struct option_info *info,
		  const char *name, const char *value, const struct origin *at);
void set_service_key(struct loading *l, const char *service, const struct option_info *info,
		     const char *name, const char *value, const struct origin *at);
void set_forward_key(struct loading *l, const char *forward, const struct option_info *info,
		     const char *name, const char *value, const struct origin *at,
		     const struct origin *header);

/* options_check.c */
void check_whole(struct options *o, struct loading *l);

#endif
