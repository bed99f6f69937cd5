/* The broker's settings: one table for the command line, --help, the config file,
 * --check-config, the man page's option list, and the control tool's view of them. */
#ifndef WORMHOLE_BROKER_OPTIONS_H
#define WORMHOLE_BROKER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "broker.h"

/*
 * Shaped like tmux's options-table.c: each setting is a row (name, type, range or rule,
 * default, unit, when a change takes effect, help), and everything that reads or shows a
 * setting goes through the row. A setting is given on the command line as --NAME VALUE, in the
 * config file as `NAME = VALUE`: in [broker] for the broker's own settings and for the
 * defaults of every peer, in [peer NAME] for one peer. The command line overrides the file.
 *
 * Every rejected value names the option, the value and the rule, e.g.
 *   --ring-size 1000: not a power of two (4096..67108864)
 *   /etc/wormhole/broker.conf:12: pool-max: 0 is below the minimum 1
 */

/* A config file is a regular file of at most this many bytes (or /dev/null), read whole
 * before it is parsed; anything else named by --config is refused (wormhole-broker.conf(5)). */
#define OPTIONS_CONFIG_FILE_MAX (1u << 20)

#define OPTIONS_FROM_COMMAND_LINE (-1)

enum option_type {
	OPTION_FLAG,    /* no value (command line only) */
	OPTION_STRING,  /* text */
	OPTION_PATH,    /* a file name; "none" where allowed */
	OPTION_COUNT,   /* a whole number */
	OPTION_BYTES,   /* a whole number of bytes; K, M, G suffixes (powers of 1024) */
	OPTION_SECONDS, /* a decimal number of seconds */
	OPTION_MODE,    /* permission bits in octal */
	OPTION_BOOL,    /* yes/no, true/false, on/off, 1/0 */
	OPTION_LEVEL,   /* error, warn, info, debug */
	OPTION_ADDRESS, /* HOST:PORT, [V6]:PORT; "none" where allowed */
	OPTION_OWNER,   /* USER[:GROUP] or :GROUP, names or numbers */
	OPTION_PEER,    /* NAME=HOST:PORT (command line; the file has [peer NAME] sections) */
};

/* When a changed value takes effect (SIGHUP reload). */
enum option_apply {
	APPLY_LIVE,            /* at once */
	APPLY_NEW_STREAMS,     /* for streams opened from now on */
	APPLY_NEW_CONNECTIONS, /* for connections made from now on */
	APPLY_RESTART,         /* only when the broker starts */
};

/* Where a setting may be given. */
enum option_scope {
	SCOPE_COMMAND_LINE, /* the command line only (--config, --check-config, ...) */
	SCOPE_BROKER,       /* the command line and [broker] */
	SCOPE_PEER,         /* also [peer NAME]; in [broker], the default for every peer */
	SCOPE_SERVICE,      /* [service NAME] only: the service's access rules and targets */
	SCOPE_FORWARD,      /* [forward NAME] only: a local listener whose connections go to a peer */
};

enum option_id {
	OPT_CONFIG, OPT_CHECK_CONFIG, OPT_HELP, OPT_VERSION,
	OPT_LISTEN, OPT_PORT_FILE, OPT_SOCKET, OPT_SOCKET_MODE, OPT_SOCKET_OWNER, OPT_RING_SIZE,
	OPT_APP_MAX_STREAMS, OPT_APP_MAX_RING_MEMORY, OPT_APP_ACCEPT_BACKLOG, OPT_APP_MAX_LISTENERS,
	OPT_DEFAULT_SERVICE,
	OPT_BUDGET, OPT_MAX_FDS, OPT_DRAIN_TIMEOUT, OPT_LOG_LEVEL, OPT_TLS_CERT, OPT_TLS_KEY,
	OPT_TLS_CA, OPT_LISTEN_PLAINTEXT, OPT_HANDSHAKE_TIMEOUT, OPT_MAX_PEER_CONNECTIONS,
	OPT_MAX_CONNECTIONS_PER_ADDRESS, OPT_MAX_UNAUTHENTICATED, OPT_HANDSHAKE_RATE,
	OPT_PEER_IDLE_TIMEOUT, OPT_CONNECTION_BUDGET,
	OPT_PEER_BUDGET, OPT_APP_PEER_BUDGET, OPT_LOCAL_RESERVE, OPT_ATTACH_USERS, OPT_ATTACH_GROUPS,
	OPT_CONTROL_SOCKET, OPT_CONTROL_SOCKET_MODE, OPT_CONTROL_SOCKET_OWNER, OPT_METRICS_LISTEN, OPT_PEER,
	/* per peer (PoolConfig, MuxConfig, StreamConfig of the seed, and ours) */
	OPT_ADDRESS, OPT_PEER_FROM, OPT_POOL_MIN, OPT_POOL_MAX, OPT_IDLE_TIME, OPT_HEALTH_CHECK, OPT_CONNECT_TIMEOUT,
	OPT_BUSY_STREAMS, OPT_BACKOFF_INITIAL, OPT_BACKOFF_MAX, OPT_ACCEPT_BACKLOG, OPT_KEEPALIVE,
	OPT_KEEPALIVE_TIMEOUT, OPT_MAX_FRAME_SIZE, OPT_FLOW_CONTROL, OPT_WINDOW, OPT_MAX_WINDOW,
	OPT_READ_BUFFER_SIZE, OPT_MAX_STREAMS, OPT_SEND_BUFFER, OPT_RELEASE_LINGER, OPT_PLAINTEXT,
	OPT_TLS_NAME, OPT_CONTROL_QUEUE, OPT_RESET_RATE, OPT_PING_RATE, OPT_NOOP_RATE, OPT_STORE_RATE,
	/* per service ([service NAME]) */
	OPT_SERVICE_PEERS, OPT_SERVICE_LOCAL, OPT_SERVICE_OWNER,
	OPT_SERVICE_TARGET, OPT_SERVICE_CONNECT_TIMEOUT, OPT_SERVICE_BALANCE, OPT_SERVICE_HEALTH_CHECK,
	OPT_SERVICE_FALL, OPT_SERVICE_RISE, OPT_SERVICE_IDLE_TIMEOUT, OPT_SERVICE_BANDWIDTH,
	OPT_SERVICE_PROXY_PROTOCOL,
	/* per forward ([forward NAME]) */
	OPT_FORWARD_LISTEN, OPT_FORWARD_PEER, OPT_FORWARD_SERVICE, OPT_FORWARD_MAX_CONNECTIONS,
	OPT_FORWARD_IDLE_TIMEOUT, OPT_FORWARD_CONNECTION_RATE, OPT_FORWARD_BANDWIDTH,
	OPT_FORWARD_CLIENT_RESET_RATE,
	OPTION_COUNT_ALL
};

struct option_info {
	enum option_id id;
	const char *name;
	char short_name; /* 0: none */
	enum option_type type;
	double min, max;  /* numbers; for OPTION_BYTES the whole range */
	bool power_of_two;
	bool none_allowed; /* "none" turns it off (paths, addresses) */
	const char *default_text;
	const char *unit;
	enum option_apply apply;
	enum option_scope scope;
	const char *help;
};

extern const struct option_info option_table[OPTION_COUNT_ALL];

/* Where a value came from: "built-in", "FILE:LINE" or "command line". */
struct option_source {
	char where[160];
};

/* Everything that was read: the settings, and what the command line asked for besides. */
struct options {
	struct broker_config config;
	char config_path[4096];     /* the file read ("" if none) */
	bool config_path_given;     /* --config: the file must exist */
	bool check_only;            /* --check-config */
	bool help, version;
	struct option_source sources[OPTION_COUNT_ALL]; /* of the broker-wide values */
	/* a peer's own value: the line of config_path that set it, OPTIONS_FROM_COMMAND_LINE
	 * (--peer NAME=ADDRESS), or 0: it has the broker-wide one (sources[]) */
	int peer_line[BROKER_PEERS_MAX][OPTION_COUNT_ALL];
	/* the line of each [service NAME] key (peers, local, owner) of each rule; 0: not given */
	int service_line[SERVICE_RULES_MAX][3];
	/* every problem found, one line each, in the order found */
	char errors[32][512];
	int error_count;
	char warnings[8][512];
	int warning_count;
};

/* The default config file: $(sysconfdir)/wormhole/broker.conf. */
const char *options_default_config_path(void);

/*
 * Reads the settings: built-in defaults, then the config file (--config PATH, or the default
 * file if it exists), then the command line over both; then checks them as a whole. Returns
 * true when there is nothing wrong (errors[] is empty). Never exits; --help and --version only
 * set their flags. argv is not modified.
 */
bool options_load(struct options *options, int argc, char **argv);

/* The option of a command-line spelling ("--ring-size", "-l") or a config key; NULL if none. */
const struct option_info *options_find(const char *name);

/* --help: every option with its default, unit and help text. */
void options_usage(FILE *out);
/* The man page's option list, as roff (make checks that docs/man says the same). */
void options_man(FILE *out);

/* The value of a setting as the config file would spell it (for the control tool and logs). */
void options_format_value(const struct broker_config *config, const struct broker_peer *peer,
			  enum option_id id, char *out, size_t len);

#endif
