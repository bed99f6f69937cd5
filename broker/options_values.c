/* One value of one setting: the parsers of each type (numbers, sizes, addresses, owners,
 * id lists), the check against the row's range, and set_value, which stores it where the
 * settings keep it; and the list of problems every check adds to. Apart from the reading of
 * the command line and the file because both hand their values here. */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "options_internal.h"

/* 1 for yes, true, on, 1; 0 for no, false, off, 0; -1 for anything else. */
int parse_bool(const char *value)
{
	static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };
	for (int i = 0; i < 4; i++) {
		if (strcmp(value, yes[i]) == 0)
			return 1;
		if (strcmp(value, no[i]) == 0)
			return 0;
	}
	return -1;
}

/* ---- problems ---------------------------------------------------------------------------- */

/* "--ring-size 1000: not a power of two (...)" or "FILE:LINE: ring-size: ..." */
void add_error(struct options *o, const struct origin *at, const struct option_info *info,
	       const char *value, const char *format, ...)
{
	if (o->error_count == (int)(sizeof o->errors / sizeof o->errors[0]))
		return;
	char *line = o->errors[o->error_count++];
	size_t len = sizeof o->errors[0];
	int n;
	if (at && at->file)
		n = snprintf(line, len, "%s:%d: %s%s", at->file, at->line, info ? info->name : "", info ? ": " : "");
	else if (info && value)
		n = snprintf(line, len, "%s %s: ", at && at->spelling ? at->spelling : "", value);
	else
		n = snprintf(line, len, "%s%s", at && at->spelling ? at->spelling : "",
			     at && at->spelling ? ": " : "");
	if (n < 0 || (size_t)n >= len)
		return;
	va_list args;
	va_start(args, format);
	vsnprintf(line + n, len - (size_t)n, format, args);
	va_end(args);
}


void add_warning(struct options *o, const char *format, ...)
{
	if (o->warning_count == (int)(sizeof o->warnings / sizeof o->warnings[0]))
		return;
	va_list args;
	va_start(args, format);
	vsnprintf(o->warnings[o->warning_count++], sizeof o->warnings[0], format, args);
	va_end(args);
}

/* ---- values ------------------------------------------------------------------------------ */

bool parse_double(const char *text, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	if (errno || end == text || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

/* A whole number, with K/M/G (powers of 1024) for bytes. */
bool parse_whole(const char *text, bool bytes, double *out)
{
	char *end;
	errno = 0;
	if (text[0] == '-' || text[0] == '+' || !text[0])
		return false;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || end == text)
		return false;
	double scale = 1;
	if (bytes && *end) {
		char suffix = *end++;
		scale = suffix == 'K' || suffix == 'k' ? 1024.0 : suffix == 'M' ? MIB : suffix == 'G' ? GIB : 0;
		if (scale == 0)
			return false;
		if (*end == 'i' && end[1] == 'B')
			end += 2;
		else if (*end == 'B')
			end++;
	}
	if (*end)
		return false;
	*out = (double)v * scale;
	return true;
}

/* "HOST:PORT" or "[V6]:PORT"; the port numeric and within [min, max]. */
const char *parse_address(const char *text, double min, double max, char *host, size_t host_len,
			  char *port, size_t port_len)
{
	const char *colon = strrchr(text, ':');
	if (!colon || colon == text || !colon[1])
		return "wants HOST:PORT";
	size_t n = (size_t)(colon - text);
	if (text[0] == '[') {
		if (colon[-1] != ']' || n < 3)
			return "wants [ADDRESS]:PORT for IPv6";
		text++;
		n -= 2;
	}
	if (n >= host_len)
		return "host name too long";
	char *end;
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (*end || errno || colon[1] == '-' || colon[1] == '+')
		return "the port is not a number";
	if (p < min || p > max)
		return min > 0 ? "the port is not within 1..65535" : "the port is not within 0..65535";
	memcpy(host, text, n);
	host[n] = '\0';
	snprintf(port, port_len, "%lu", p);
	return NULL;
}

/* "USER", "USER:GROUP" or ":GROUP", by name or number. */
const char *parse_owner(const char *text, long *uid, long *gid)
{
	char user[256] = "", group[256] = "";
	const char *colon = strchr(text, ':');
	size_t n = colon ? (size_t)(colon - text) : strlen(text);
	if (n >= sizeof user || (colon && strlen(colon + 1) >= sizeof group))
		return "name too long";
	memcpy(user, text, n);
	if (colon)
		snprintf(group, sizeof group, "%s", colon + 1);
	if (!user[0] && !group[0])
		return "wants USER[:GROUP] or :GROUP";
	*uid = *gid = -1;
	char *end;
	if (user[0]) {
		long v = strtol(user, &end, 10);
		const struct passwd *pw = *end ? getpwnam(user) : NULL;
		if (*end && !pw)
			return "no such user";
		*uid = pw ? (long)pw->pw_uid : v;
	}
	if (group[0]) {
		long v = strtol(group, &end, 10);
		const struct group *gr = *end ? getgrnam(group) : NULL;
		if (*end && !gr)
			return "no such group";
		*gid = gr ? (long)gr->gr_gid : v;
	}
	return *uid < -1 || *gid < -1 ? "a negative id" : NULL;
}

/* "any", or a comma-separated list of user (or group) names or numbers. */
static const char *parse_id_list(const char *text, bool groups, struct attach_rules *rules)
{
	uint32_t *ids = groups ? rules->groups : rules->users;
	unsigned *count = groups ? &rules->group_count : &rules->user_count;
	bool *set = groups ? &rules->groups_set : &rules->users_set;
	*count = 0;
	*set = false;
	if (strcmp(text, "any") == 0)
		return NULL;
	*set = true;
	const char *p = text;
	while (*p) {
		size_t n = strcspn(p, ",");
		char name[256];
		while (n && *p == ' ') {
			p++;
			n--;
		}
		if (n == 0 || n >= sizeof name)
			return n ? "name too long" : "an empty name in the list";
		memcpy(name, p, n);
		name[n] = '\0';
		while (n && name[n - 1] == ' ')
			name[--n] = '\0';
		if (*count >= ATTACH_IDS_MAX)
			return "more than 32 names";
		char *end;
		errno = 0;
		unsigned long v = strtoul(name, &end, 10);
		if (*end || errno || name[0] == '-') {
			const struct passwd *pw = groups ? NULL : getpwnam(name);
			const struct group *gr = groups ? getgrnam(name) : NULL;
			if (!pw && !gr)
				return groups ? "no such group" : "no such user";
			v = pw ? pw->pw_uid : gr->gr_gid;
		} else if (v > UINT32_MAX - 1) {
			return "id out of range";
		}
		ids[(*count)++] = (uint32_t)v;
		p += strcspn(p, ",");
		if (*p == ',')
			p++;
	}
	return *count ? NULL : "an empty list (use 'any')";
}

bool peer_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n >= sizeof ((struct broker_peer *)0)->name)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '_' || ch == '.'))
			return false;
	}
	return true;
}

/* The range of a row, for messages: "(4096..67108864)". */
static void range_text(const struct option_info *info, char *out, size_t len)
{
	snprintf(out, len, "(%.15g..%.15g)", info->min, info->max);
}

/* A number's row: `value` read as its type (whole, bytes, seconds) into *number and checked
 * against the row's range and power of two. True for a good number and for rows of other
 * types (their value is text: set_text reads it). */
static bool number_of(struct options *o, const struct option_info *info, const char *value,
		      const struct origin *at, double *number)
{
	char range[64];
	range_text(info, range, sizeof range);
	switch (info->type) {
	case OPTION_COUNT:
	case OPTION_BYTES:
		if (!parse_whole(value, info->type == OPTION_BYTES, number)) {
			add_error(o, at, info, value, "not a whole number%s",
				  info->type == OPTION_BYTES ? " of bytes (K, M, G: powers of 1024)" : "");
			return false;
		}
		goto check_range;
	case OPTION_SECONDS:
		if (!parse_double(value, number)) {
			add_error(o, at, info, value, "not a number of seconds");
			return false;
		}
	check_range:
		if (*number < info->min || *number > info->max) {
			add_error(o, at, info, value, "%s %s", *number < info->min ? "below the minimum" : "above the maximum",
				  range);
			return false;
		}
		if (info->power_of_two && ((uint64_t)*number & ((uint64_t)*number - 1))) {
			add_error(o, at, info, value, "not a power of two %s", range);
			return false;
		}
		break;
	default:
		break;
	}
	return true;
}

/* A broker-wide number's row: stored in c. False for any other row. */
static bool set_broker_number(struct broker_config *c, enum option_id id, double number)
{
	switch (id) {
	case OPT_RING_SIZE: c->apps.ring_capacity = (uint32_t)number; break;
	case OPT_APP_MAX_STREAMS: c->apps.max_streams = (uint32_t)number; break;
	case OPT_APP_MAX_RING_MEMORY: c->apps.max_ring_memory = (uint64_t)number; break;
	case OPT_APP_ACCEPT_BACKLOG: c->apps.accept_backlog = (uint32_t)number; break;
	case OPT_APP_MAX_LISTENERS: c->apps.max_listeners = (uint32_t)number; break;
	case OPT_BUDGET: c->memory_budget = (uint64_t)number; break;
	case OPT_MAX_FDS: c->max_fds = (uint64_t)number; break;
	case OPT_DRAIN_TIMEOUT: c->drain_timeout = number; break;
	case OPT_HANDSHAKE_TIMEOUT: c->handshake_timeout = number; break;
	case OPT_MAX_PEER_CONNECTIONS: c->max_peer_connections = (unsigned)number; break;
	case OPT_MAX_CONNECTIONS_PER_ADDRESS: c->max_connections_per_address = (unsigned)number; break;
	case OPT_MAX_UNAUTHENTICATED: c->max_unauthenticated = (unsigned)number; break;
	case OPT_HANDSHAKE_RATE: c->handshake_rate = number; break;
	case OPT_PEER_IDLE_TIMEOUT: c->peer_idle_timeout = number; break;
	case OPT_CONNECTION_BUDGET: c->connection_budget_percent = (unsigned)number; break;
	case OPT_PEER_BUDGET: c->peer_budget_percent = (unsigned)number; break;
	case OPT_APP_PEER_BUDGET: c->app_peer_budget_percent = (unsigned)number; break;
	case OPT_LOCAL_RESERVE: c->local_reserve_percent = (unsigned)number; break;
	default: return false;
	}
	return true;
}

/* A peer's number's row (pool, mux): stored in p. False for any other row. */
static bool set_pool_number(struct pool_config *p, enum option_id id, double number)
{
	struct mux_config *m = &p->mux;
	switch (id) {
	case OPT_POOL_MIN: p->min_size = (unsigned)number; break;
	case OPT_POOL_MAX: p->max_size = (unsigned)number; break;
	case OPT_IDLE_TIME: p->max_idle_time = number; break;
	case OPT_HEALTH_CHECK: p->health_check_interval = number; break;
	case OPT_CONNECT_TIMEOUT: p->connect_timeout = number; break;
	case OPT_BUSY_STREAMS: p->busy_streams = (unsigned)number; break;
	case OPT_BACKOFF_INITIAL: p->backoff_initial = number; break;
	case OPT_BACKOFF_MAX: p->backoff_max = number; break;
	case OPT_ACCEPT_BACKLOG: m->accept_backlog = (uint32_t)number; break;
	case OPT_KEEPALIVE: m->keepalive_interval = number; break;
	case OPT_KEEPALIVE_TIMEOUT: m->keepalive_timeout = number; break;
	case OPT_MAX_FRAME_SIZE: m->max_frame_size = (uint32_t)number; break;
	case OPT_WINDOW: m->window_size = (uint32_t)number; break;
	case OPT_MAX_WINDOW: m->max_window_size = (uint32_t)number; break;
	case OPT_MAX_STREAMS: m->max_streams = (uint32_t)number; break;
	case OPT_SEND_BUFFER: m->send_buffer = (uint32_t)number; break;
	case OPT_RELEASE_LINGER: m->release_linger = number; break;
	case OPT_CONTROL_QUEUE: m->control_queue_limit = (uint32_t)number; break;
	case OPT_RESET_RATE: m->reset_rate = number; break;
	case OPT_PING_RATE: m->ping_rate = number; break;
	case OPT_NOOP_RATE: m->noop_rate = number; break;
	case OPT_STORE_RATE: m->store_rate = number; break;
	default: return false;
	}
	return true;
}

/* listen, metrics-listen: HOST:PORT (port 0 picks one) into host and port; "none" empties both. */
static bool set_listen(struct options *o, const struct option_info *info, const char *value,
		       const struct origin *at, char *host, size_t host_len, char *port, size_t port_len)
{
	if (strcmp(value, "none") == 0) {
		host[0] = port[0] = '\0';
		return true;
	}
	const char *why = parse_address(value, 0, 65535, host, host_len, port, port_len);
	if (why) {
		add_error(o, at, info, value, "%s", why);
		return false;
	}
	return true;
}

/* A path into dest (cap bytes, so at most cap - 1); where none_ok, "none" empties it. */
static bool set_path(struct options *o, const struct option_info *info, const char *value,
		     const struct origin *at, char *dest, size_t cap, bool none_ok)
{
	if (none_ok && strcmp(value, "none") == 0) {
		dest[0] = '\0';
		return true;
	}
	if (!value[0] || strlen(value) >= cap) {
		add_error(o, at, info, value, value[0] ? "path too long (at most %zu bytes)" : "empty path%.0zu",
			  cap - 1);
		return false;
	}
	snprintf(dest, cap, "%s", value);
	return true;
}

/* The rows of the broker's sockets and who may reach them: listen, metrics-listen, the
 * socket and port file paths, their modes and owners, attach-users and attach-groups.
 * -1 for any other row; else whether the value was taken. */
static int set_socket_value(struct options *o, const struct option_info *info, const char *value,
			    const struct origin *at)
{
	struct broker_config *c = &o->config;
	const char *why;
	switch (info->id) {
	case OPT_METRICS_LISTEN:
		return set_listen(o, info, value, at, c->control.metrics_host, sizeof c->control.metrics_host,
				  c->control.metrics_port, sizeof c->control.metrics_port);
	case OPT_LISTEN:
		return set_listen(o, info, value, at, c->listen_host, sizeof c->listen_host, c->listen_port,
				  sizeof c->listen_port);
	case OPT_PORT_FILE: return set_path(o, info, value, at, c->port_file, sizeof c->port_file, false);
	case OPT_SOCKET:
		return set_path(o, info, value, at, c->apps.socket_path, sizeof c->apps.socket_path, true);
	case OPT_CONTROL_SOCKET:
		c->control.socket_path_set = true;
		return set_path(o, info, value, at, c->control.socket_path, sizeof c->control.socket_path, true);
	case OPT_CONTROL_SOCKET_MODE:
	case OPT_SOCKET_MODE: {
		char *end;
		unsigned long mode = strtoul(value, &end, 8);
		if (*end || end == value || mode > 0777) {
			add_error(o, at, info, value, "not permission bits in octal (0..0777)");
			return false;
		}
		*(info->id == OPT_SOCKET_MODE ? &c->apps.socket_mode : &c->control.socket_mode) = (unsigned)mode;
		return true;
	}
	case OPT_CONTROL_SOCKET_OWNER:
	case OPT_SOCKET_OWNER: {
		bool app = info->id == OPT_SOCKET_OWNER;
		why = parse_owner(value, app ? &c->apps.socket_uid : &c->control.socket_uid,
				  app ? &c->apps.socket_gid : &c->control.socket_gid);
		break;
	}
	case OPT_ATTACH_USERS:
	case OPT_ATTACH_GROUPS:
		why = parse_id_list(value, info->id == OPT_ATTACH_GROUPS, &c->apps.attach);
		break;
	default:
		return -1;
	}
	if (why) {
		add_error(o, at, info, value, "%s", why);
		return false;
	}
	return true;
}

/* The other rows whose value is text: default-service, log-level, the yes/no ones, the TLS
 * files and name; read-buffer-size, taken and ignored. Any other row cannot be set here. */
static bool set_text(struct options *o, const struct option_info *info, const char *value,
		     const struct origin *at, struct pool_config *pool)
{
	struct broker_config *c = &o->config;
	struct pool_config *p = pool ? pool : &c->pool;
	switch (info->id) {
	case OPT_DEFAULT_SERVICE:
		if (!value[0] || strlen(value) > 255) {
			add_error(o, at, info, value, "a service name is 1 to 255 bytes");
			return false;
		}
		snprintf(c->default_service, sizeof c->default_service, "%s", value);
		return true;
	case OPT_LOG_LEVEL: {
		int level = log_level_parse(value);
		if (level < 0) {
			add_error(o, at, info, value, "not a level (error, warn, info, debug)");
			return false;
		}
		c->log_level = (enum log_level)level;
		return true;
	}
	case OPT_READ_BUFFER_SIZE:
		if (!pool || pool == &c->pool) /* say it once */
			add_warning(o, "read-buffer-size %s: ignored: a stream's receive store is its window "
				    "(window, max-window)", value);
		return true;
	case OPT_FLOW_CONTROL:
	case OPT_PLAINTEXT:
	case OPT_LISTEN_PLAINTEXT: {
		int v = parse_bool(value);
		if (v < 0) {
			add_error(o, at, info, value, "not yes or no");
			return false;
		}
		if (info->id == OPT_FLOW_CONTROL)
			p->mux.enable_flow_control = v;
		else if (info->id == OPT_PLAINTEXT)
			p->plaintext = v;
		else
			c->listen_plaintext = v;
		return true;
	}
	case OPT_TLS_CERT:
	case OPT_TLS_KEY:
	case OPT_TLS_CA: {
		char *dest = info->id == OPT_TLS_CERT ? c->tls.cert : info->id == OPT_TLS_KEY ? c->tls.key : c->tls.ca;
		return set_path(o, info, value, at, dest, sizeof c->tls.cert, true);
	}
	case OPT_TLS_NAME:
		if (!value[0] || strlen(value) >= sizeof p->tls_name) {
			add_error(o, at, info, value, "a name is 1 to %zu bytes", sizeof p->tls_name - 1);
			return false;
		}
		snprintf(p->tls_name, sizeof p->tls_name, "%s", value);
		return true;
	default:
		add_error(o, at, info, value, "cannot be set here");
		return false;
	}
}

/*
 * Parses `value` for row `info` and stores it: in the broker-wide settings, or in `pool` for a
 * per-peer row (NULL: the broker-wide defaults of every peer). Errors are added with `at`.
 * Returns true if the value was taken.
 */
bool set_value(struct options *o, const struct option_info *info, const char *value,
	       const struct origin *at, struct pool_config *pool)
{
	struct broker_config *c = &o->config;
	double number = 0;
	if (!number_of(o, info, value, at, &number))
		return false;
	if (set_broker_number(c, info->id, number) || set_pool_number(pool ? pool : &c->pool, info->id, number))
		return true;
	int socket = set_socket_value(o, info, value, at);
	return socket >= 0 ? socket : set_text(o, info, value, at, pool);
}
