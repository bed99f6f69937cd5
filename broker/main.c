/* wormhole-broker: settings, signals, and the event loop. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "control.h"
#include "notify.h"
#include "options.h"
#include "text_escape.h"

#define DRAIN_CHECK 0.05 /* s between looks at whether the streams are done */
#define GOODBYE_GRACE 0.2 /* s for the last goodbyes to leave once everything is closed */

struct daemon {
	struct broker broker;
	struct control *control;
	struct options *options; /* as last loaded: what `wormhole-ctl config` shows */
	double loaded_at;
	int argc;
	char **argv;
	ev_signal term, interrupt, hangup, user1, user2;
	ev_timer drain_check, goodbye;
	double drain_deadline;
	bool stopping;
};

/* Each on one line, escaped as the log's lines are: a value may come from a file. */
static void print_problems(const struct options *o)
{
	static char line[4 * sizeof o->errors[0]];
	for (int i = 0; i < o->error_count; i++) {
		text_escape(line, sizeof line, o->errors[i], strlen(o->errors[i]));
		fprintf(stderr, "wormhole-broker: %s\n", line);
	}
	for (int i = 0; i < o->warning_count; i++) {
		text_escape(line, sizeof line, o->warnings[i], strlen(o->warnings[i]));
		fprintf(stderr, "wormhole-broker: warning: %s\n", line);
	}
}

static void on_goodbye_sent(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

/* Everything that is left ends now (ERROR 505 on each connection), then the loop stops. */
static void close_now(struct daemon *d)
{
	ev_timer_stop(d->broker.loop, &d->drain_check);
	broker_close_all(&d->broker);
	ev_timer_init(&d->goodbye, on_goodbye_sent, GOODBYE_GRACE, 0);
	ev_timer_start(d->broker.loop, &d->goodbye);
}

static void on_drain_check(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	(void)revents;
	if (broker_drained(&d->broker)) {
		log_write(&d->broker.log, LOG_INFO, "broker", "drained: every stream finished");
		close_now(d);
	} else if (ev_now(loop) >= d->drain_deadline) {
		log_write(&d->broker.log, LOG_WARN, "broker", "drain timeout (%.0f s): ending the streams "
			  "still open", d->broker.config.drain_timeout);
		close_now(d);
	}
}

/* SIGTERM, SIGINT: drain, then stop; a second one stops at once. */
static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;
	(void)revents;
	if (d->stopping) {
		log_write(&d->broker.log, LOG_WARN, "broker", "signal %d again: stopping now", w->signum);
		close_now(d);
		return;
	}
	d->stopping = true;
	notify_service_manager("STOPPING=1");
	log_write(&d->broker.log, LOG_INFO, "broker", "signal %d: draining (at most %.0f s; again to "
		  "stop now)", w->signum, d->broker.config.drain_timeout);
	broker_drain(&d->broker);
	d->drain_deadline = ev_now(loop) + d->broker.config.drain_timeout;
	ev_timer_init(&d->drain_check, on_drain_check, 0, DRAIN_CHECK);
	d->drain_check.data = d;
	ev_timer_start(loop, &d->drain_check);
}

/* Reads the settings again (SIGHUP, wormhole-ctl reload); if they are bad, says every reason
 * and keeps the old ones. WH_OK, or WH_EINVAL with the first reason in message. */
static int reload(struct daemon *d, char *message, size_t length)
{
	static struct options next;
	notify_reloading();
	if (!options_load(&next, d->argc, d->argv)) {
		for (int i = 0; i < next.error_count; i++)
			log_write(&d->broker.log, LOG_ERROR, "broker", "reload refused: %s", next.errors[i]);
		log_write(&d->broker.log, LOG_ERROR, "broker", "reload refused: running on as before");
		notify_service_manager("READY=1\nSTATUS=reload refused: the config has errors");
		snprintf(message, length, "reload refused (%d error%s), running on as before: %s",
			 next.error_count, next.error_count == 1 ? "" : "s", next.errors[0]);
		return WH_EINVAL;
	}
	for (int i = 0; i < next.warning_count; i++)
		log_write(&d->broker.log, LOG_WARN, "broker", "reload: %s", next.warnings[i]);
	if (broker_reload(&d->broker, &next.config) != WH_OK) {
		notify_service_manager("READY=1\nSTATUS=reload refused: a forward cannot listen");
		snprintf(message, length, "reload refused, running on as before: a [forward] listen "
			 "address cannot be bound (the broker's log says which and why)");
		return WH_ESYSTEM;
	}
	*d->options = next;
	d->loaded_at = ev_now(d->broker.loop);
	log_write(&d->broker.log, LOG_INFO, "broker", "reloaded %s", next.config_path[0] ? next.config_path
											: "(no config file)");
	notify_service_manager("READY=1\nSTATUS=running");
	snprintf(message, length, "reloaded %s", next.config_path[0] ? next.config_path : "(no config file)");
	return WH_OK;
}

static void on_reload(struct ev_loop *loop, ev_signal *w, int revents)
{
	char message[512];
	(void)loop;
	(void)revents;
	reload(w->data, message, sizeof message);
}

static int control_reload(void *ctx, char *message, size_t length)
{
	return reload(ctx, message, length);
}

static const struct options *control_options(void *ctx, double *loaded_at)
{
	struct daemon *d = ctx;
	*loaded_at = d->loaded_at;
	return d->options;
}

/* SIGUSR1, SIGUSR2: reserved; never a reason to die. */
static void on_ignored(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;
	(void)loop;
	(void)revents;
	log_write(&d->broker.log, LOG_INFO, "broker", "signal %d: ignored", w->signum);
}

static void watch(struct daemon *d, ev_signal *w, void (*cb)(struct ev_loop *, ev_signal *, int), int signum)
{
	ev_signal_init(w, cb, signum);
	w->data = d;
	ev_signal_start(d->broker.loop, w);
}

int main(int argc, char **argv)
{
	static struct options options;
	bool ok = options_load(&options, argc, argv);
	if (options.help) {
		options_usage(stdout);
		return 0;
	}
	if (options.version) {
		printf("wormhole-broker %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (getenv("WORMHOLE_MAN_OPTIONS")) { /* the man page's option list, from the table */
		options_man(stdout);
		return 0;
	}
	print_problems(&options);
	if (options.check_only)
		return ok ? 0 : 1;
	if (!ok)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
	if (!loop) {
		fprintf(stderr, "wormhole-broker: cannot start the event loop\n");
		return 1;
	}
	static struct daemon d;
	d.argc = argc;
	d.argv = argv;
	if (broker_start(&d.broker, loop, &options.config) != WH_OK) {
		broker_stop(&d.broker);
		return 1;
	}
	d.options = &options;
	d.loaded_at = ev_now(loop);
	if (options.config.control.socket_path[0] || options.config.control.metrics_host[0]) {
		struct control_hooks hooks = { control_reload, control_options, &d };
		d.control = control_start(&d.broker, &hooks);
		if (!d.control) {
			broker_stop(&d.broker);
			return 1;
		}
	}
	if (broker_write_port_file(&d.broker) != WH_OK) {
		control_stop(d.control);
		broker_stop(&d.broker);
		return 1;
	}
	bool listen_tls = d.broker.conn_shared.tls && !options.config.listen_plaintext;
	if (options.config.listen_host[0] && !listen_tls &&
	    !host_is_loopback(options.config.listen_host))
		log_write(&d.broker.log, LOG_WARN, "broker", "listening on %s:%s in plaintext, not "
			  "loopback (listen-plaintext): any host that reaches this port may open any "
			  "service and read its bytes", options.config.listen_host,
			  options.config.listen_port);
	watch(&d, &d.term, on_stop, SIGTERM);
	watch(&d, &d.interrupt, on_stop, SIGINT);
	watch(&d, &d.hangup, on_reload, SIGHUP);
	watch(&d, &d.user1, on_ignored, SIGUSR1);
	watch(&d, &d.user2, on_ignored, SIGUSR2);
	notify_service_manager("READY=1\nSTATUS=running");
	ev_run(loop, 0);
	control_stop(d.control);
	broker_stop(&d.broker);
	ev_loop_destroy(loop);
	return 0;
}
