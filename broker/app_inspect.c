/* What the control tool sees of the apps: sessions, listeners and same-host streams, copied
 * out one at a time so that nothing outside the apps module reads its structs. */
#include "apps_internal.h"

static void session_info(const struct app_session *c, struct apps_session_info *info)
{
	const struct apps *apps = c->apps;
	*info = (struct apps_session_info){
		.id = c->id,
		.pid = c->pid,
		.uid = (long)c->uid,
		.gid = (long)c->gid,
		.counters = {
			.streams = c->counters.streams,
			.streams_opened = c->counters.streams_opened,
			.streams_accepted = c->counters.streams_accepted,
			.ring_bytes = c->counters.ring_bytes,
			.ring_bytes_limit = ring_memory_limit(apps),
			.max_streams = apps->config.max_streams,
			.bytes_sent = c->counters.bytes_sent,
			.bytes_received = c->counters.bytes_received,
			.broker_clients = apps->stats.clients,
			.broker_streams = apps->stats.streams + 2 * apps->stats.local_pairs,
		},
		.listening = c->listening,
	};
}

void apps_session_counters(const struct app_session *c, struct attach_stats *counters)
{
	struct apps_session_info info;
	session_info(c, &info);
	*counters = info.counters;
}

void apps_each_session(const struct apps *apps,
		       void (*fn)(const struct apps_session_info *session, void *arg), void *arg)
{
	const struct app_session *c;
	LIST_FOREACH(c, &apps->sessions, link) {
		if (!c->welcomed)
			continue; /* not an app yet: it has not said HELLO */
		struct apps_session_info info;
		session_info(c, &info);
		fn(&info, arg);
	}
}

void apps_each_local_pair(const struct apps *apps,
			  void (*fn)(const struct apps_pair_info *pair, void *arg), void *arg)
{
	/* every pair has its opener's end in the opener's list; a pair whose opener let go is
	 * found through its acceptor */
	const struct app_session *c;
	LIST_FOREACH(c, &apps->sessions, link) {
		const struct pair_end *e;
		LIST_FOREACH(e, &c->pair_ends, link) {
			const struct local_pair *p = e->pair;
			if (e->end == 1 && p->ends[0])
				continue; /* shown with its opener */
			struct apps_pair_info info = {
				.handle = p->handles[0] ? p->handles[0] : p->handles[1],
				.ring_capacity = p->seg.capacity,
				.awaiting_accept = p->awaiting_accept,
			};
			for (unsigned i = 0; i < 2; i++) {
				info.session_id[i] = p->ends[i] ? p->ends[i]->id : "";
				info.pid[i] = p->ends[i] ? p->ends[i]->pid : 0;
				info.uid[i] = p->ends[i] ? (long)p->ends[i]->uid : -1;
			}
			fn(&info, arg);
		}
	}
}

struct listener_walk {
	void (*fn)(const char *service, const struct apps_session_info *session, void *arg);
	void *arg;
};

static void each_listener(const char *service, void *owner, void *arg)
{
	struct listener_walk *walk = arg;
	struct apps_session_info info;
	session_info(owner, &info);
	walk->fn(service, &info, walk->arg);
}

void apps_each_listener(const struct apps *apps,
			void (*fn)(const char *service, const struct apps_session_info *session, void *arg),
			void *arg)
{
	struct listener_walk walk = { fn, arg };
	service_registry_each(&apps->services, each_listener, &walk);
}
