/* Unit tests of the broker's settings: the option table, the command line, the config file,
 * and the messages that say what is wrong with them. */
#include "config.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "options.h"
#include "services.h"

static struct options o;

/* Loads with these arguments (NULL-terminated) after the program name. */
static bool load(const char *first, ...)
{
	char *argv[64] = { "wormhole-broker" };
	int argc = 1;
	va_list args;
	va_start(args, first);
	for (const char *a = first; a && argc < 63; a = va_arg(args, const char *))
		argv[argc++] = (char *)a;
	va_end(args);
	argv[argc] = NULL;
	return options_load(&o, argc, argv);
}

static bool has_error(const char *text)
{
	for (int i = 0; i < o.error_count; i++)
		if (strstr(o.errors[i], text))
			return true;
	return false;
}

static bool has_warning(const char *text)
{
	for (int i = 0; i < o.warning_count; i++)
		if (strstr(o.warnings[i], text))
			return true;
	return false;
}

/* A ring below the window loads, with a warning that says what breaks: a peer's bulk stream
 * to an app is reset once the peer is a ring ahead (windows are not negotiated). */
START_TEST(test_ring_below_window_is_warned)
{
	ck_assert(load("--config", "/dev/null", "--socket", "/tmp/wh-options-test.sock", "--ring-size", "4096", NULL));
	ck_assert(has_warning("ring-size 4096 is below window 262144"));
	ck_assert(load("--config", "/dev/null", "--socket", "/tmp/wh-options-test.sock", "--ring-size", "4096",
		       "--window", "4096", "--max-window", "4096", NULL));
	ck_assert(!has_warning("is below window"));
	ck_assert(load("--config", "/dev/null", "--socket", "/tmp/wh-options-test.sock", NULL));
	ck_assert(!has_warning("is below window"));
}
END_TEST

static void dump(void)
{
	for (int i = 0; i < o.error_count; i++)
		fprintf(stderr, "error: %s\n", o.errors[i]);
}

/* A config file with these lines, in a temporary directory; its path. */
static const char *write_config(const char *text)
{
	static char path[64];
	snprintf(path, sizeof path, "/tmp/wh-options.XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

START_TEST(test_defaults_need_nothing)
{
	ck_assert(load("--config", "/dev/null", NULL));
	ck_assert_int_eq(o.error_count, 0);
	ck_assert_str_eq(o.config.listen_host, "127.0.0.1");
	ck_assert_str_eq(o.config.listen_port, "7420");
	ck_assert_str_eq(o.config.apps.socket_path, "/run/wormhole/broker.sock");
	ck_assert_uint_eq(o.config.apps.ring_capacity, 1u << 20);
	ck_assert_uint_eq(o.config.pool.max_size, 4);
	ck_assert_str_eq(o.sources[OPT_RING_SIZE].where, "built-in");
	/* no file named: the default file is read if it exists, and nothing is wrong if not */
	ck_assert(load(NULL) || o.config_path[0]);
}
END_TEST

/* Where each setting in force came from, peers' and service rules' included: the file's line,
 * the command line, or the broker-wide value's. */
START_TEST(test_origins_of_every_setting)
{
	const char *path = write_config("[broker]\n"          /* 1 */
					"pool-max = 8\n"      /* 2 */
					"[peer a]\n"          /* 3 */
					"address = 127.0.0.1:1\n" /* 4 */
					"pool-min = 2\n"      /* 5 */
					"[service upper]\n"   /* 6 */
					"peers = b\n"         /* 7 */
					"local = no\n");      /* 8 */
	bool ok = load("--config", path, "--peer", "b=127.0.0.1:2", "--window", "65536", NULL);
	if (!ok)
		dump();
	ck_assert(ok);
	char want[128];
	snprintf(want, sizeof want, "%s:2", path);
	ck_assert_str_eq(o.sources[OPT_POOL_MAX].where, want);
	ck_assert_str_eq(o.sources[OPT_WINDOW].where, "command line");
	ck_assert_str_eq(o.sources[OPT_BUDGET].where, "built-in");
	ck_assert_int_eq(o.config.peer_count, 2);
	ck_assert_int_eq(o.peer_line[0][OPT_ADDRESS], 4);
	ck_assert_int_eq(o.peer_line[0][OPT_POOL_MIN], 5);
	ck_assert_int_eq(o.peer_line[0][OPT_POOL_MAX], 0); /* the broker's */
	ck_assert_int_eq(o.peer_line[1][OPT_ADDRESS], OPTIONS_FROM_COMMAND_LINE);
	ck_assert_uint_eq(o.config.apps.services.count, 1);
	ck_assert_int_eq(o.service_line[0][OPT_SERVICE_PEERS - OPT_SERVICE_PEERS], 7);
	ck_assert_int_eq(o.service_line[0][OPT_SERVICE_LOCAL - OPT_SERVICE_PEERS], 8);
	ck_assert_int_eq(o.service_line[0][OPT_SERVICE_OWNER - OPT_SERVICE_PEERS], 0);
	unlink(path);
}
END_TEST

/* One peer too many is said once, however many lines its section has. */
START_TEST(test_too_many_peers_said_once_each)
{
	static char text[BROKER_PEERS_MAX * 80 + 400];
	size_t at = 0;
	for (int i = 0; i < BROKER_PEERS_MAX + 2; i++)
		at += (size_t)snprintf(text + at, sizeof text - at, "[peer p%d]\naddress = h:%d\npool-min = 1\n", i, i + 1);
	const char *path = write_config(text);
	ck_assert(!load("--config", path, NULL));
	int said = 0;
	for (int i = 0; i < o.error_count; i++)
		said += strstr(o.errors[i], "more than 32 peers") != NULL;
	if (said != 2)
		dump();
	ck_assert_int_eq(said, 2);
	unlink(path);
}
END_TEST

/* The control socket sits beside the app socket, named after it, unless given. */
START_TEST(test_control_socket_default)
{
	ck_assert(load("--config", "/dev/null", NULL));
	ck_assert_str_eq(o.config.control.socket_path, "/run/wormhole/control.sock");
	ck_assert_uint_eq(o.config.control.socket_mode, 0600);
	ck_assert(load("--config", "/dev/null", "--socket", "/tmp/x/a.sock", NULL));
	ck_assert_str_eq(o.config.control.socket_path, "/tmp/x/a.control.sock");
	ck_assert(load("--config", "/dev/null", "--socket", "/tmp/x/b.sock", NULL));
	ck_assert_str_eq(o.config.control.socket_path, "/tmp/x/b.control.sock");
	ck_assert(load("--config", "/dev/null", "--socket", "apps", NULL));
	ck_assert_str_eq(o.config.control.socket_path, "apps.control.sock");
	ck_assert(load("--config", "/dev/null", "--socket", "none", NULL));
	ck_assert_str_eq(o.config.control.socket_path, "");
	ck_assert(load("--config", "/dev/null", "--socket", "/tmp/x/a.sock", "--control-socket", "/tmp/c", NULL));
	ck_assert_str_eq(o.config.control.socket_path, "/tmp/c");
	ck_assert(load("--config", "/dev/null", "--control-socket", "none", NULL));
	ck_assert_str_eq(o.config.control.socket_path, "");
	ck_assert(!load("--config", "/dev/null", "--socket", "/tmp/s", "--control-socket", "/tmp/s", NULL));
	ck_assert(has_error("the control socket must have a path of its own"));
	ck_assert(load("--config", "/dev/null", "--metrics-listen", "127.0.0.1:9100", NULL));
	ck_assert_str_eq(o.config.control.metrics_host, "127.0.0.1");
	ck_assert_str_eq(o.config.control.metrics_port, "9100");
}
END_TEST

START_TEST(test_every_rejected_value_names_option_value_and_rule)
{
	ck_assert(!load("--config", "/dev/null", "--ring-size", "5000", NULL));
	ck_assert(has_error("--ring-size 5000: not a power of two (4096..67108864)"));
	ck_assert(!load("--config", "/dev/null", "--ring-size", "1000", NULL));
	ck_assert(has_error("--ring-size 1000: below the minimum (4096..67108864)"));
	ck_assert(!load("--config", "/dev/null", "--listen", "127.0.0.1:99999", NULL));
	ck_assert(has_error("--listen 127.0.0.1:99999: the port is not within 0..65535"));
	ck_assert(!load("--config", "/dev/null", "--peer", "local=10.0.0.1:7420", NULL));
	ck_assert(has_error("--peer local=10.0.0.1:7420: \"local\" means apps on this broker"));
	ck_assert(!load("--config", "/dev/null", "--peer", "b=10.0.0.1:7420", "--peer", "b=10.0.0.2:7420", NULL));
	ck_assert(has_error("--peer b=10.0.0.2:7420: peer b is given twice"));
	ck_assert(!load("--config", "/dev/null", "--peer", "b=127.0.0.1:notaport", NULL));
	ck_assert(has_error("--peer b=127.0.0.1:notaport: the port is not a number"));
	ck_assert(!load("--config", "/dev/null", "--pool-min", "5", "--pool-max", "2", NULL));
	ck_assert(has_error("pool-min 5 is above pool-max 2"));
	ck_assert(!load("--config", "/dev/null", "--socket", "none", "--listen", "none", NULL));
	ck_assert(has_error("nothing to do"));
	ck_assert(!load("--config", "/dev/null", "--keepalive", "soon", NULL));
	ck_assert(has_error("--keepalive soon: not a number of seconds"));
	ck_assert(!load("--config", "/dev/null", "--socket-mode", "999", NULL));
	ck_assert(has_error("--socket-mode 999: not permission bits in octal"));
	ck_assert(!load("--config", "/dev/null", "--log-level", "loud", NULL));
	ck_assert(has_error("--log-level loud: not a level"));
	ck_assert(!load("--config", "/dev/null", "--bogus", NULL));
	ck_assert(has_error("--bogus: no such option"));
	ck_assert(!load("--config", "/dev/null", "--window", "1M", "--max-window", "512K", NULL));
	ck_assert(has_error("max-window 524288 is below window 1048576"));
	/* several problems: every one is reported */
	ck_assert(!load("--config", "/dev/null", "--ring-size", "5000", "--pool-max", "0", NULL));
	ck_assert_int_eq(o.error_count, 2);
	ck_assert(!load("--config", "/nonexistent/broker.conf", NULL));
	ck_assert(has_error("--config /nonexistent/broker.conf: No such file or directory"));
}
END_TEST

START_TEST(test_units_and_values)
{
	ck_assert(load("--config", "/dev/null", "--ring-size", "2M", "--budget", "1GiB", "--window", "512K",
		       "--flow-control", "off", "--listen", "[::1]:7000", "--socket-mode", "0600", NULL));
	ck_assert_uint_eq(o.config.apps.ring_capacity, 2u << 20);
	ck_assert_uint_eq(o.config.memory_budget, 1ull << 30);
	ck_assert_uint_eq(o.config.pool.mux.window_size, 512u << 10);
	ck_assert(!o.config.pool.mux.enable_flow_control);
	ck_assert_str_eq(o.config.listen_host, "::1");
	ck_assert_str_eq(o.config.listen_port, "7000");
	ck_assert_uint_eq(o.config.apps.socket_mode, 0600);
	ck_assert_str_eq(o.sources[OPT_RING_SIZE].where, "command line");
	char value[64];
	options_format_value(&o.config, NULL, OPT_LISTEN, value, sizeof value);
	ck_assert_str_eq(value, "[::1]:7000");
	/* the peer bounds */
	ck_assert(load("--config", "/dev/null", "--attach-users", "root, 1234", "--attach-groups", "0",
		       "--reset-rate", "50", "--control-queue", "64K", "--peer-idle-timeout", "30",
		       "--connection-budget", "10", "--peer-budget", "20", "--local-reserve", "5", NULL));
	ck_assert(o.config.apps.attach.users_set && o.config.apps.attach.groups_set);
	ck_assert_uint_eq(o.config.apps.attach.user_count, 2);
	ck_assert_uint_eq(o.config.apps.attach.users[0], 0);
	ck_assert_uint_eq(o.config.apps.attach.users[1], 1234);
	options_format_value(&o.config, NULL, OPT_ATTACH_USERS, value, sizeof value);
	ck_assert_str_eq(value, "0,1234");
	ck_assert(o.config.pool.mux.reset_rate == 50);
	ck_assert_uint_eq(o.config.pool.mux.control_queue_limit, 64u << 10);
	ck_assert(o.config.peer_idle_timeout == 30);
	ck_assert_uint_eq(o.config.connection_budget_percent, 10);
	ck_assert_uint_eq(o.config.peer_budget_percent, 20);
	ck_assert_uint_eq(o.config.local_reserve_percent, 5);
	ck_assert(load("--config", "/dev/null", NULL));
	ck_assert(!o.config.apps.attach.users_set && !o.config.apps.attach.groups_set);
	options_format_value(&o.config, NULL, OPT_ATTACH_GROUPS, value, sizeof value);
	ck_assert_str_eq(value, "any");
	ck_assert(!load("--config", "/dev/null", "--attach-users", "no-such-user-here", NULL));
	ck_assert(has_error("--attach-users no-such-user-here: no such user"));
	ck_assert(!load("--config", "/dev/null", "--attach-groups", "0,,", NULL));
	ck_assert(has_error("an empty name in the list"));
	ck_assert(o.error_count == 1);
}
END_TEST

START_TEST(test_config_file_and_precedence)
{
	const char *path = write_config("# a broker with two peers\n"
					"[broker]\n"
					"listen = 10.1.2.3:7421\n"
					"ring-size = 262144\n"
					"pool-max = 3\n"
					"keepalive = 15\n"
					"listen-plaintext = yes\n"
					"plaintext = yes\n"
					"\n"
					"[peer b]\n"
					"address = 10.0.0.2:7420\n"
					"pool-max = 2\n"
					"\n"
					"[peer c]\n"
					"address = [fd00::3]:7420\n");
	ck_assert(load("--config", path, "--keepalive", "5", NULL));
	dump();
	ck_assert_str_eq(o.config_path, path);
	ck_assert_str_eq(o.config.listen_host, "10.1.2.3");
	ck_assert_uint_eq(o.config.apps.ring_capacity, 262144);
	ck_assert_int_eq(o.config.peer_count, 2);
	ck_assert_str_eq(o.config.peers[0].name, "b");
	ck_assert_str_eq(o.config.peers[0].host, "10.0.0.2");
	ck_assert_uint_eq(o.config.peers[0].pool.max_size, 2); /* its own section */
	ck_assert_uint_eq(o.config.peers[1].pool.max_size, 3); /* the broker-wide default */
	ck_assert_str_eq(o.config.peers[1].host, "fd00::3");
	/* the command line overrides the file, for every peer too */
	ck_assert_double_eq(o.config.pool.mux.keepalive_interval, 5);
	ck_assert_double_eq(o.config.peers[0].pool.mux.keepalive_interval, 5);
	char where[64];
	snprintf(where, sizeof where, "%s:5", path);
	ck_assert_str_eq(o.sources[OPT_POOL_MAX].where, where);
	/* a peer on the command line over one of the file's: its address wins */
	ck_assert(load("--config", path, "--peer", "b=10.9.9.9:1", NULL));
	ck_assert_str_eq(o.config.peers[0].host, "10.9.9.9");
	ck_assert_uint_eq(o.config.peers[0].pool.max_size, 2);
	unlink(path);
}
END_TEST

START_TEST(test_config_file_errors_have_lines)
{
	const char *path = write_config("[broker]\n"                 /* 1 */
					"ring-size = 5000\n"         /* 2 */
					"no-such-thing = 1\n"        /* 3 */
					"address = 1.2.3.4:5\n"      /* 4 */
					"[peer b]\n"                 /* 5 */
					"pool-max = 0\n"             /* 6 */
					"socket = /tmp/x\n"          /* 7 */
					"[peer local]\n"             /* 8 */
					"address = 1.2.3.4:5\n"      /* 9 */
					"[elsewhere]\n"              /* 10 */
					"x = 1\n"                    /* 11 */
					"[broker]\n"                 /* 12 */
					"log-level = debug\n"        /* 13 */
					"this line is no INI\n");    /* 14 */
	ck_assert(!load("--config", path, NULL));
	dump();
	char expect[256];
	snprintf(expect, sizeof expect, "%s:2: ring-size: not a power of two", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:3: no-such-thing: no such setting", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:4: address: not a setting of [broker]", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:6: pool-max: below the minimum", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:7: socket: not a setting of a peer", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:9: [peer local]: \"local\" means apps", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:11: [elsewhere]: no such section", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:12: [broker]: the section is given twice (first at line 1)", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:14: not a line of an INI file", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "[peer b]: no address");
	ck_assert(has_error(expect));
	unlink(path);
}
END_TEST

START_TEST(test_table_is_complete)
{
	for (int i = 0; i < OPTION_COUNT_ALL; i++) {
		const struct option_info *info = &option_table[i];
		ck_assert_int_eq(info->id, i);
		ck_assert_ptr_nonnull(info->name);
		ck_assert_ptr_nonnull(info->help);
		/* a section's key may share its name with a broker setting (listen in [forward],
		 * connect-timeout in [service]): the name alone means the broker's */
		const struct option_info *found = options_find(info->name);
		ck_assert(found == info || ((info->scope == SCOPE_SERVICE || info->scope == SCOPE_FORWARD) &&
					    found->scope != info->scope));
		if (info->short_name) {
			char spelling[3] = { '-', info->short_name, 0 };
			ck_assert_ptr_eq(options_find(spelling), info);
		}
	}
	ck_assert_ptr_null(options_find("--no-such-option"));
	/* every value a setting can hold is shown as the file would spell it */
	ck_assert(load("--config", "/dev/null", NULL));
	for (int i = 0; i < OPTION_COUNT_ALL; i++) {
		char value[256] = "";
		options_format_value(&o.config, NULL, (enum option_id)i, value, sizeof value);
		ck_assert(value[0]);
	}
}
END_TEST

/* [service NAME] targets and [forward NAME] sections: their keys are theirs, not the broker's
 * of the same name. */
START_TEST(test_forwarding_sections)
{
	const char *path = write_config("[broker]\n"
					"listen = 127.0.0.1:7000\n"
					"connect-timeout = 3\n"
					"[peer a]\n"
					"address = 127.0.0.1:7001\n"
					"[service web]\n"
					"target = 127.0.0.1:8000,  [::1]:8001\n"
					"connect-timeout = 0.5\n"
					"balance = least-connections\n"
					"health-check = 2\n"
					"fall = 4\n"
					"proxy-protocol = v2\n"
					"peers = a\n"
					"[forward web]\n"
					"listen = 127.0.0.1:18000\n"
					"peer = a\n"
					"service = web\n"
					"max-connections = 10\n"
					"idle-timeout = 30\n"
					"bandwidth = 10M\n");
	ck_assert(load("--config", path, NULL));
	const struct broker_config *c = &o.config;
	ck_assert_str_eq(c->listen_port, "7000");
	ck_assert_double_eq(c->pool.connect_timeout, 3);
	ck_assert_uint_eq(c->exposed_count, 1);
	ck_assert_str_eq(c->exposed[0].service, "web");
	ck_assert_uint_eq(c->exposed[0].target_count, 2);
	ck_assert_str_eq(c->exposed[0].targets[1].host, "::1");
	ck_assert_str_eq(c->exposed[0].targets[1].port, "8001");
	ck_assert_double_eq(c->exposed[0].connect_timeout, 0.5);
	ck_assert_int_eq(c->exposed[0].balance, BALANCE_LEAST_CONNECTIONS);
	ck_assert_double_eq(c->exposed[0].health_interval, 2);
	ck_assert_uint_eq(c->exposed[0].fall, 4);
	ck_assert_uint_eq(c->exposed[0].rise, 2);
	ck_assert_uint_eq(c->exposed[0].proxy_protocol, 2);
	ck_assert_ptr_nonnull(service_rules_find(&c->apps.services, "web"));
	ck_assert_uint_eq(c->forward_count, 1);
	ck_assert_str_eq(c->forwards[0].listen_port, "18000");
	ck_assert_str_eq(c->forwards[0].peer, "a");
	ck_assert_str_eq(c->forwards[0].service, "web");
	ck_assert_uint_eq(c->forwards[0].max_connections, 10);
	ck_assert_double_eq(c->forwards[0].idle_timeout, 30);
	ck_assert_double_eq(c->forwards[0].bandwidth, 10 * 1024 * 1024);
	unlink(path);

	path = write_config("[service web]\n"          /* 1 */
			    "target = 127.0.0.1\n"      /* 2 */
			    "[service db]\n"           /* 3 */
			    "connect-timeout = 1\n"     /* 4 */
			    "[forward f]\n"            /* 5 */
			    "listen = 127.0.0.1:1\n"    /* 6 */
			    "peer = no/way\n"           /* 7 */
			    "window = 5\n"              /* 8 */
			    "[forward g]\n"            /* 9 */
			    "peer = nobody\n");        /* 10 */
	ck_assert(!load("--config", path, "--listen", "none", NULL));
	dump();
	char expect[256];
	snprintf(expect, sizeof expect, "%s:2: target: 127.0.0.1: wants HOST:PORT", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:4: [service db]: connect-timeout, balance, health checks, idle-timeout, bandwidth or proxy-protocol without a target", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:7: peer: a peer name is 1 to 63", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:8: window: not a setting of a forward", path);
	ck_assert(has_error(expect));
	snprintf(expect, sizeof expect, "%s:9: [forward g]: no listen = HOST:PORT", path);
	ck_assert(has_error(expect));
	unlink(path);
	path = write_config("[service web]\n"
			    "target = 127.0.0.1:1\n"
			    "proxy-protocol = v3\n");
	ck_assert(!load("--config", path, "--listen", "none", NULL));
	snprintf(expect, sizeof expect, "%s:3: proxy-protocol: none, v1 or v2", path);
	ck_assert(has_error(expect));
	unlink(path);
}
END_TEST

/* When stderr is the journal, lines carry a syslog priority instead of a time. */
START_TEST(test_journal_priorities)
{
	char path[] = "/tmp/wh-journal.XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	char stream[64];
	snprintf(stream, sizeof stream, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	setenv("JOURNAL_STREAM", stream, 1);
	bool journal = log_stderr_is_journal();
	setenv("JOURNAL_STREAM", "1:2", 1);
	bool other = log_stderr_is_journal();
	unsetenv("JOURNAL_STREAM");
	dup2(saved, STDERR_FILENO);
	close(saved);
	ck_assert(journal);
	ck_assert(!other);
	FILE *out = fdopen(fd, "w+");
	struct log_sink sink = { LOG_INFO, out, true };
	log_write(&sink, LOG_WARN, "conn", "conn=%u peer=%s closed", 3u, "b");
	log_write(&sink, LOG_ERROR, "broker", "x");
	log_write(&sink, LOG_DEBUG, "broker", "not at info");
	rewind(out);
	char line[256];
	ck_assert_ptr_nonnull(fgets(line, sizeof line, out));
	ck_assert_str_eq(line, "<4>warn conn: conn=3 peer=b closed\n");
	ck_assert_ptr_nonnull(fgets(line, sizeof line, out));
	ck_assert_str_eq(line, "<3>error broker: x\n");
	ck_assert_ptr_null(fgets(line, sizeof line, out));
	fclose(out);
	unlink(path);
}
END_TEST

/* A string from outside cannot forge a line of the log nor drive the terminal that shows it:
 * the log writer escapes controls, backslashes and bytes that are not UTF-8 in every line. */
START_TEST(test_log_lines_escape_what_came_from_outside)
{
	char path[] = "/tmp/wh-log.XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	FILE *out = fdopen(fd, "w+");
	struct log_sink sink = { LOG_INFO, out, true };
	log_write(&sink, LOG_INFO, "apps", "listens on service=%s",
		  "x\n2026-01-01T00:00:00.000Z error broker: forged\r\x1b[2J\t\\\xff\xc2\x9b\xe2\x80\xae" "caf\xc3\xa9");
	log_write(&sink, LOG_INFO, "apps", "next");
	rewind(out);
	char line[512];
	ck_assert_ptr_nonnull(fgets(line, sizeof line, out));
	ck_assert_str_eq(line, "<6>info apps: listens on service=x\\n2026-01-01T00:00:00.000Z error broker: "
			       "forged\\r\\x1b[2J\\t\\\\\\xff\\xc2\\x9b\\xe2\\x80\\xae" "caf\xc3\xa9\n");
	ck_assert_ptr_nonnull(fgets(line, sizeof line, out));
	ck_assert_str_eq(line, "<6>info apps: next\n");
	ck_assert_ptr_null(fgets(line, sizeof line, out));
	fclose(out);
	unlink(path);
}
END_TEST

/* A config file is a regular file (or /dev/null): a directory, a FIFO and a device are each
 * refused at once with the reason, never read as empty, waited on or read for ever (each of
 * these tests ends within the suite's timeout only if the broker does not block or spin). */
START_TEST(test_config_must_be_a_regular_file)
{
	char dir[] = "/tmp/wh-options-dir.XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert(!load("--config", dir, NULL));
	ck_assert_msg(has_error("--config ") && has_error(": a directory, not a config file"), "%s", o.errors[0]);
	ck_assert_str_eq(o.config_path, "");
	char zero[300];
	snprintf(zero, sizeof zero, "%s/zero.conf", dir);
	ck_assert_int_eq(symlink("/dev/zero", zero), 0);
	ck_assert(!load("--config", zero, NULL));
	ck_assert_msg(has_error("not a regular file"), "%s", o.errors[0]);
	unlink(zero);
	ck_assert(load("--config", "/dev/null", NULL)); /* the conventional empty file */
	rmdir(dir);
}
END_TEST

START_TEST(test_config_fifo_is_refused_without_blocking)
{
	char dir[] = "/tmp/wh-options-fifo.XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char fifo[300];
	snprintf(fifo, sizeof fifo, "%s/broker.conf", dir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	alarm(20); /* a broker blocked in open(2) fails here, not in a hung suite */
	ck_assert(!load("--config", fifo, NULL));
	alarm(0);
	ck_assert_msg(has_error("a FIFO, not a config file"), "%s", o.errors[0]);
	unlink(fifo);
	rmdir(dir);
}
END_TEST

/* inih reads a line into a buffer of 200 bytes and parses what is left of a longer one as a
 * line of its own: a long comment is dropped whole, a long setting is an error at its line. */
START_TEST(test_config_long_lines)
{
	char text[1024];
	char filler[400];
	memset(filler, 'x', 300);
	filler[300] = '\0';
	snprintf(text, sizeof text, "[broker]\n# %s log-level = debug\nbudget = 1G\n;%s\n", filler, filler);
	const char *path = write_config(text);
	ck_assert(load("--config", path, NULL));
	dump();
	ck_assert_int_eq(o.config.log_level, LOG_WARN); /* the comment's tail is not a setting */
	char where[128];
	snprintf(where, sizeof where, "%s:3", path);
	ck_assert_str_eq(o.sources[OPT_BUDGET].where, where); /* lines still count right */
	unlink(path);
	snprintf(text, sizeof text, "[broker]\ntls-cert = /%s\nbudget = 1G\n", filler);
	path = write_config(text);
	ck_assert(!load("--config", path, NULL));
	snprintf(where, sizeof where, "%s:2: the line is longer than", path);
	ck_assert_msg(has_error(where), "%s", o.errors[0]);
	ck_assert_int_eq(o.error_count, 1);
	unlink(path);
	static const char nul[] = "[broker]\nbudget = 1G\0log-level = debug\n"; /* not text */
	path = write_config("");
	FILE *f = fopen(path, "w");
	ck_assert_uint_eq(fwrite(nul, 1, sizeof nul - 1, f), sizeof nul - 1);
	fclose(f);
	ck_assert(!load("--config", path, NULL));
	snprintf(where, sizeof where, "%s:2: a NUL byte", path);
	ck_assert_msg(has_error(where), "%s", o.errors[0]);
	unlink(path);
}
END_TEST

/* At most OPTIONS_CONFIG_FILE_MAX bytes: one more is refused, not read. */
START_TEST(test_config_size_is_bounded)
{
	char path[] = "/tmp/wh-options-big.XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	static char comments[OPTIONS_CONFIG_FILE_MAX];
	for (size_t i = 0; i < sizeof comments; i++)
		comments[i] = i % 64 == 63 ? '\n' : i % 64 == 0 ? '#' : 'x';
	ck_assert_int_eq(write(fd, comments, sizeof comments), (ssize_t)sizeof comments);
	ck_assert(load("--config", path, NULL));
	ck_assert_int_eq(write(fd, "\n", 1), 1);
	ck_assert(!load("--config", path, NULL));
	ck_assert_msg(has_error("larger than 1 MiB"), "%s", o.errors[0]);
	close(fd);
	unlink(path);
}
END_TEST

/* A dial-in peer's from = ADDRESS against an accepted connection's "host:port". */
START_TEST(test_dialin_from_matches)
{
	ck_assert(dialin_from_matches("127.0.0.1", "127.0.0.1:40110"));
	ck_assert(!dialin_from_matches("127.0.0.1", "127.0.0.2:40110"));
	ck_assert(dialin_from_matches("::1", "[::1]:7420"));
	ck_assert(dialin_from_matches("192.0.2.44", "[::ffff:192.0.2.44]:7420")); /* a v6 listener's view */
	ck_assert(dialin_from_matches("fd00::3", "[fd00:0::3]:1"));
	ck_assert(!dialin_from_matches("", "127.0.0.1:1"));
	ck_assert(!dialin_from_matches("127.0.0.1", "-"));
	ck_assert(!dialin_from_matches("127.0.0.1", "[127.0.0.1:1"));
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("options");
	TCase *tc = tcase_create("settings");
	tcase_add_test(tc, test_defaults_need_nothing);
	tcase_add_test(tc, test_forwarding_sections);
	tcase_add_test(tc, test_every_rejected_value_names_option_value_and_rule);
	tcase_add_test(tc, test_ring_below_window_is_warned);
	tcase_add_test(tc, test_units_and_values);
	tcase_add_test(tc, test_config_file_and_precedence);
	tcase_add_test(tc, test_config_file_errors_have_lines);
	tcase_add_test(tc, test_table_is_complete);
	tcase_add_test(tc, test_journal_priorities);
	tcase_add_test(tc, test_control_socket_default);
	tcase_add_test(tc, test_origins_of_every_setting);
	tcase_add_test(tc, test_too_many_peers_said_once_each);
	tcase_add_test(tc, test_log_lines_escape_what_came_from_outside);
	tcase_add_test(tc, test_config_must_be_a_regular_file);
	tcase_add_test(tc, test_config_fifo_is_refused_without_blocking);
	tcase_add_test(tc, test_config_long_lines);
	tcase_add_test(tc, test_config_size_is_bounded);
	tcase_add_test(tc, test_dialin_from_matches);
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
