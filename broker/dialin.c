/* Peers that dial in: a [peer NAME] without an address is reached over the connections it
 * dialled to us (a broker behind NAT can only dial out). The broker owns those accepted
 * connections; the peer's pool borrows them (pool_adopt) so that opens to the peer, an app's
 * or a forward's, go over them as over dialled ones. */
#include "config.h"

#include <arpa/inet.h>
#include <string.h>

#include "broker.h"

/* The address of "host:port", "[v6]:port" or a bare IP, as 16 bytes (v4 as v4-mapped v6). */
static bool parse_ip(const char *text, struct in6_addr *out)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	size_t n = strlen(text);
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close)
			return false;
		text++;
		n = (size_t)(close - text);
	} else if (colon && strchr(text, ':') == colon) { /* one colon: v4 with its port */
		n = (size_t)(colon - text);
	}
	if (n >= sizeof host)
		return false;
	memcpy(host, text, n);
	host[n] = '\0';
	struct in_addr v4;
	if (inet_pton(AF_INET, host, &v4) == 1) {
		memset(out, 0, sizeof *out);
		out->s6_addr[10] = out->s6_addr[11] = 0xff;
		memcpy(&out->s6_addr[12], &v4, 4);
		return true;
	}
	return inet_pton(AF_INET6, host, out) == 1;
}

bool dialin_from_matches(const char *from, const char *remote)
{
	struct in6_addr a, b;
	return from[0] && parse_ip(from, &a) && parse_ip(remote, &b) && memcmp(&a, &b, sizeof a) == 0;
}

/* The dial-in peer an accepted connection belongs to (its index), or -1. Over TLS the verified
 * certificate's identity must be the one the peer's tls-name expects (its name by default),
 * and `from`, when given, must match too; over plaintext only `from` can say. */
static int peer_of(const struct broker *broker, struct conn *conn)
{
	const struct broker_config *c = &broker->config;
	bool tls = conn_is_tls(conn);
	if (tls && (!conn_is_ready(conn) || !conn_peer_identity(conn)[0]))
		return -1;
	for (int i = 0; i < c->peer_count; i++) {
		const struct broker_peer *p = &c->peers[i];
		if (p->host[0] || !broker->pools[i])
			continue;
		const char *expect = p->pool.tls_name[0] ? p->pool.tls_name : p->name;
		if (tls && strcmp(conn_peer_identity(conn), expect) != 0)
			continue;
		if ((p->from[0] || !tls) && !dialin_from_matches(p->from, conn_remote_addr(conn)))
			continue;
		return i;
	}
	return -1;
}

/* A connection no dial-in peer holds is an ordinary accepted connection: named by who it is
 * (its certificate's identity, or its address) and closed after peer-idle-timeout with no
 * stream. */
static void make_ordinary(struct conn *conn, double idle_timeout)
{
	const char *identity = conn_peer_identity(conn);
	mux_set_peer(conn_mux(conn), identity[0] ? identity : conn_remote_addr(conn));
	mux_set_idle_timeout(conn_mux(conn), idle_timeout);
}

/* A connection lent to a dial-in peer it no longer matches (a reload changed the peer's
 * `from` or `tls-name`, or made it dial out) goes back: the pool opens nothing more over it
 * (its streams open now carry on), and it is an ordinary accepted connection again. */
static void let_go_elsewhere(struct broker *broker, struct conn *conn, const struct pool *keep)
{
	bool held = false;
	for (int j = 0; j < broker->config.peer_count; j++)
		if (broker->pools[j] && broker->pools[j] != keep && pool_release(broker->pools[j], conn)) {
			held = true;
			log_write(&broker->log, LOG_WARN, "broker", "peer=%s: conn=%u from %s no longer "
				  "matches its section: no new streams go over it", broker->config.peers[j].name,
				  mux_id(conn_mux(conn)), conn_remote_addr(conn));
		}
	if (held)
		make_ordinary(conn, broker->config.peer_idle_timeout);
}

void dialin_return(struct broker *broker, struct pool *pool, struct conn *conn, double idle_timeout)
{
	if (!pool_release(pool, conn))
		return;
	log_write(&broker->log, LOG_INFO, "broker", "peer=%s removed: conn=%u from %s is an ordinary "
		  "connection again (its streams carry on)", pool_name(pool), mux_id(conn_mux(conn)),
		  conn_remote_addr(conn));
	make_ordinary(conn, idle_timeout);
}

void dialin_adopt(struct broker *broker, struct conn *conn)
{
	if (broker->draining || mux_is_closed(conn_mux(conn)))
		return;
	int i = peer_of(broker, conn);
	let_go_elsewhere(broker, conn, i < 0 ? NULL : broker->pools[i]);
	if (i < 0)
		return;
	struct pool *pool = broker->pools[i];
	if (pool_adopt(pool, conn) != WH_OK) {
		log_write(&broker->log, LOG_ERROR, "broker", "peer=%s: out of memory to take its "
			  "conn=%u", broker->config.peers[i].name, mux_id(conn_mux(conn)));
		return;
	}
	/* logs and wh_stream_peer name it as configured; it waits for our streams, so it is
	 * not idle while it has none */
	mux_set_peer(conn_mux(conn), broker->config.peers[i].name);
	mux_set_idle_timeout(conn_mux(conn), 0);
}

static void release_from(struct pool *pool, void *arg)
{
	pool_release(pool, arg);
}

void dialin_release(struct broker *broker, struct conn *conn)
{
	broker_each_pool(broker, release_from, conn);
}
