/* The checks of the settings as a whole, after every value was read: what --check-config
 * reports besides bad values (pool-min above pool-max, TLS files that go together, peers
 * that dial in, forwards without a peer, paths that clash) and the control socket's default
 * path. Apart from the parsers because each rule here spans several settings. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "broker.h" /* dialin_from_matches */
#include "options.h"
#include "options_internal.h"
#include "tls.h"

/* ---- checks of the whole ----------------------------------------------------------------- */

static void check_pool(struct options *o, const struct pool_config *p, const char *who)
{
	if (p->min_size > p->max_size)
		add_error(o, NULL, NULL, NULL, "%spool-min %u is above pool-max %u", who, p->min_size, p->max_size);
	if (p->mux.max_window_size < p->mux.window_size)
		add_error(o, NULL, NULL, NULL, "%smax-window %u is below window %u", who,
			  p->mux.max_window_size, p->mux.window_size);
	if (p->backoff_max < p->backoff_initial)
		add_error(o, NULL, NULL, NULL, "%sbackoff-max %.15g is below backoff-initial %.15g", who,
			  p->backoff_max, p->backoff_initial);
}

/* TLS files go together and must load; off loopback, plaintext must be asked for. */
static void check_tls(struct options *o, struct loading *l)
{
	struct broker_config *c = &o->config;
	const struct tls_settings *t = &c->tls;
	bool tls = tls_settings_enabled(t);
	if (!tls && (t->cert[0] || t->key[0] || t->ca[0])) {
		char missing[48] = "";
		const char *names[] = { "tls-cert", "tls-key", "tls-ca" };
		const char *values[] = { t->cert, t->key, t->ca };
		for (int i = 0; i < 3; i++)
			if (!values[i][0])
				snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
					 missing[0] ? " and " : "", names[i]);
		add_error(o, NULL, NULL, NULL, "tls-cert, tls-key and tls-ca go together: %s missing", missing);
		return;
	}
	if (tls) {
		char error[512], warning[512];
		SSL_CTX *ctx = tls_context_new(t, error, sizeof error, warning, sizeof warning);
		if (!ctx)
			add_error(o, NULL, NULL, NULL, "%s", error);
		else if (warning[0])
			add_warning(o, "%s", warning);
		tls_context_free(ctx);
	}
	if (c->listen_host[0] && !host_is_loopback(c->listen_host) && !tls && !c->listen_plaintext)
		add_error(o, NULL, NULL, NULL, "listen %s:%s is not loopback: give the broker a certificate "
			  "(tls-cert, tls-key, tls-ca) or accept peers in plaintext (listen-plaintext = yes)",
			  c->listen_host, c->listen_port);
	for (int i = 0; i < c->peer_count; i++) {
		const struct broker_peer *p = &c->peers[i];
		if (p->host[0] && !host_is_loopback(p->host) && !tls && !p->pool.plaintext) {
			struct origin at = { l->file, l->peer_lines[i], NULL };
			add_error(o, l->peer_from_file[i] ? &at : NULL, NULL, NULL, "peer %s at %s:%s is not "
				  "loopback: give the broker a certificate (tls-cert, tls-key, tls-ca) or dial it "
				  "in plaintext (plaintext = yes)", p->name, p->host, p->port);
		}
	}
}

/* A peer without an address dials us: the broker must listen, and each accepted connection
 * must be told to belong to one such peer at most (over plaintext only `from` can say). */
static void check_dial_in(struct options *o, struct loading *l)
{
	const struct broker_config *c = &o->config;
	bool tls = tls_settings_enabled(&c->tls) && !c->listen_plaintext;
	for (int i = 0; i < c->peer_count; i++) {
		const struct broker_peer *p = &c->peers[i];
		struct origin at = { l->file, l->peer_lines[i], NULL };
		const struct origin *where = l->peer_from_file[i] ? &at : NULL;
		if (p->host[0]) {
			if (p->from[0])
				add_error(o, where, NULL, NULL, "[peer %s]: from is for a peer that dials in "
					  "(without an address); this one is dialled at %s:%s", p->name, p->host, p->port);
			continue;
		}
		const char *why = !c->listen_host[0] ? "the broker does not listen (listen = HOST:PORT)"
				: !tls && !p->from[0] ? "over plaintext its connections are told by from = "
							"ADDRESS (or give the broker a certificate)"
				: NULL;
		if (why) {
			add_error(o, where, NULL, NULL, "[peer %s]: no address, so it dials in, but %s", p->name, why);
			continue;
		}
		for (int j = 0; j < i; j++) {
			const struct broker_peer *q = &c->peers[j];
			const char *pe = p->pool.tls_name[0] ? p->pool.tls_name : p->name;
			const char *qe = q->pool.tls_name[0] ? q->pool.tls_name : q->name;
			bool same_from = !p->from[0] || !q->from[0] || dialin_from_matches(p->from, q->from);
			if (!q->host[0] && same_from && (!tls || strcmp(pe, qe) == 0))
				add_error(o, where, NULL, NULL, "[peer %s]: a connection from %s could be peer %s's "
					  "as well (both dial in%s): give each its own %s", p->name,
					  p->from[0] ? p->from : q->from[0] ? q->from : "one address", q->name,
					  tls ? " and expect one certificate identity" : "",
					  tls ? "tls-name" : "from = ADDRESS");
		}
	}
}

/* Each forward has its three keys, a configured peer, and a listen address of its own. */
static void check_forwards(struct options *o, struct loading *l)
{
	struct broker_config *c = &o->config;
	for (unsigned i = 0; i < c->forward_count; i++) {
		const struct forward_config *f = &c->forwards[i];
		struct origin at = { l->file, l->forward_lines[i], NULL };
		const char *missing = !f->listen_host[0] && !f->listen_port[0] ? "listen = HOST:PORT"
				    : !f->peer[0]                            ? "peer = NAME"
				    : !f->service[0]                         ? "service = NAME"
									     : NULL;
		if (missing) {
			add_error(o, &at, NULL, NULL, "[forward %s]: no %s", f->name, missing);
			continue;
		}
		if (strcmp(f->peer, "local") != 0 && find_peer(c, f->peer) < 0)
			add_error(o, &at, NULL, NULL, "[forward %s]: peer %s is not configured (a [peer %s] "
				  "section or --peer)", f->name, f->peer, f->peer);
		for (unsigned j = 0; j < i; j++)
			if (strcmp(c->forwards[j].listen_host, f->listen_host) == 0 &&
			    strcmp(c->forwards[j].listen_port, f->listen_port) == 0 &&
			    strcmp(f->listen_port, "0") != 0)
				add_error(o, &at, NULL, NULL, "[forward %s]: listen %s:%s is forward %s's too",
					  f->name, f->listen_host, f->listen_port, c->forwards[j].name);
	}
	for (unsigned i = 0; i < c->exposed_count; i++)
		if (!l->exposed_target_given[i]) {
			struct origin at = { l->file, l->exposed_lines[i], NULL };
			add_error(o, &at, NULL, NULL, "[service %s]: connect-timeout, balance, health checks, idle-timeout, bandwidth or "
				  "proxy-protocol without a target",
				  c->exposed[i].service);
		}
}

void check_whole(struct options *o, struct loading *l)
{
	struct broker_config *c = &o->config;
	check_pool(o, &c->pool, "");
	for (int i = 0; i < c->peer_count; i++) {
		struct broker_peer *p = &c->peers[i];
		char who[96];
		snprintf(who, sizeof who, "peer %s: ", p->name);
		if (memcmp(&p->pool, &c->pool, sizeof p->pool) != 0)
			check_pool(o, &p->pool, who);
	}
	/* Windows are not negotiated (docs/PROTOCOL.md 4): a peer may send a whole window before
	 * it hears from us, and an app's stream keeps what comes in its ring. A ring below the
	 * window works for streams that carry less than a ring at a time (small requests, the
	 * bench's 4 KiB echoes) and same-host streams; a peer's bulk stream is reset. */
	if (c->apps.socket_path[0] && c->apps.ring_capacity < c->pool.mux.window_size)
		add_warning(o, "ring-size %u is below window %u: a peer that sends an app more than "
			    "%u bytes ahead of its reads gets the stream reset (ERROR 429 \"receive "
			    "store full\"); same-host streams are not affected",
			    c->apps.ring_capacity, c->pool.mux.window_size, c->apps.ring_capacity);
	check_tls(o, l);
	check_dial_in(o, l);
	check_forwards(o, l);
	if (!c->listen_host[0] && !c->apps.socket_path[0] && c->peer_count == 0)
		add_error(o, NULL, NULL, NULL, "nothing to do: no listener (listen), no app socket (socket) "
			  "and no peers");
	if (c->apps.socket_path[0] && c->port_file[0] && strcmp(c->apps.socket_path, c->port_file) == 0)
		add_error(o, NULL, NULL, NULL, "the port file and the app socket are the same path");
	/* the control socket's default sits beside the app socket and is named after it:
	 * broker.sock -> control.sock, NAME.sock -> NAME.control.sock; so each broker's pair of
	 * sockets stays together, and brokers whose app sockets share a directory (several on one
	 * host, test brokers) never meet */
	if (!c->control.socket_path_set && c->apps.socket_path[0]) {
		const char *path = c->apps.socket_path;
		const char *slash = strrchr(path, '/');
		const char *base = slash ? slash + 1 : path;
		int dir_length = (int)(base - path);
		int stem_length = (int)strlen(base);
		if (stem_length > 5 && strcmp(base + stem_length - 5, ".sock") == 0)
			stem_length -= 5;
		bool named_broker = stem_length == 6 && strncmp(base, "broker", 6) == 0;
		int n = named_broker
			? snprintf(c->control.socket_path, sizeof c->control.socket_path, "%.*scontrol.sock",
				   dir_length, path)
			: snprintf(c->control.socket_path, sizeof c->control.socket_path, "%.*s%.*s.control.sock",
				   dir_length, path, stem_length, base);
		if (n < 0 || (size_t)n >= sizeof c->control.socket_path)
			add_error(o, NULL, NULL, NULL, "control-socket: the default beside the app socket would "
				  "be too long a path: set control-socket");
	}
	if (c->control.socket_path[0] &&
	    (strcmp(c->control.socket_path, c->apps.socket_path) == 0 ||
	     strcmp(c->control.socket_path, c->port_file) == 0))
		add_error(o, NULL, NULL, NULL, "the control socket must have a path of its own (not the app "
			  "socket's or the port file's)");
}

