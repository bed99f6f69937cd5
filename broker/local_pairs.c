/* Same-host streams: two apps on one segment, the broker only watching. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "apps_internal.h"
#include "frame.h"
#include "futex.h"

/* ---- local pairs ------------------------------------------------------------------- */

/* Frees the pair once neither end holds it; true if it did. */
static bool pair_free_if_done(struct local_pair *p)
{
	if (p->ends[0] || p->ends[1])
		return false;
	budget_close(p->apps, p->wake[0]);
	budget_close(p->apps, p->wake[1]);
	segment_destroy(p->apps, &p->seg);
	p->apps->stats.local_pairs--;
	free(p);
	return true;
}

bool pair_detach(struct local_pair *p, unsigned end, bool died)
{
	if (end == 1 && p->awaiting_accept) {
		p->awaiting_accept = false;
		p->ends[1]->counters.unaccepted--;
	}
	LIST_REMOVE(&p->endpoints[end], link);
	stream_table_remove(&p->apps->handles, p->handles[end]);
	p->ends[end]->counters.streams--;
	p->ends[end]->counters.ring_bytes -= p->seg.size;
	p->ends[end] = NULL;
	if (died && p->ends[end ^ 1u]) {
		struct ring_producer producer;
		struct ring_consumer consumer;
		ring_producer_attach(&producer, p->seg.memory, p->seg.capacity, end);
		ring_consumer_attach(&consumer, p->seg.memory, p->seg.capacity, end ^ 1u);
		ring_producer_close(&producer, WH_EAPP_GONE);
		ring_consumer_close(&consumer, WH_EAPP_GONE);
		/* a thread of the other app that sleeps in a call, either way */
		if (ring_producer_wake_needed(&producer) & RING_WAIT_SLEEPER)
			futex_wake_shared(ring_producer_wake_word(&producer));
		if (ring_consumer_wake_needed(&consumer) & RING_WAIT_SLEEPER)
			futex_wake_shared(ring_consumer_wake_word(&consumer));
	}
	/* The other app hears it as a hang-up of its end, after the rings say why: nothing we
	 * do here can block, whatever either app did to its end (shutdown neither sends nor
	 * waits), and it reaches the end even if the app that left still holds a copy. */
	if (p->ends[end ^ 1u])
		shutdown(p->wake[end], SHUT_RDWR);
	return pair_free_if_done(p);
}

/* Whether either side of ring `ring` is still open. */
static bool ring_open(struct local_pair *p, unsigned ring)
{
	struct ring_producer producer;
	struct ring_consumer consumer;
	ring_producer_attach(&producer, p->seg.memory, p->seg.capacity, ring);
	ring_consumer_attach(&consumer, p->seg.memory, p->seg.capacity, ring);
	int ignored;
	return ring_producer_peer_state(&producer, &ignored) == RING_OPEN ||
	       ring_consumer_peer_state(&consumer, &ignored) == RING_OPEN;
}

/* Ends the sides of ring `ring` still open with `error` (one closed in order stays so: its
 * reader gets its last bytes and EOF), and wakes the thread of either app asleep on it. */
static void ring_end_open_sides(struct local_pair *p, unsigned ring, int error)
{
	struct ring_producer producer;
	struct ring_consumer consumer;
	ring_producer_attach(&producer, p->seg.memory, p->seg.capacity, ring);
	ring_consumer_attach(&consumer, p->seg.memory, p->seg.capacity, ring);
	int ignored;
	/* each side's state is what the other reads: the consumer's, as the producer sees it */
	if (ring_producer_peer_state(&producer, &ignored) == RING_OPEN)
		ring_consumer_close(&consumer, error);
	if (ring_consumer_peer_state(&consumer, &ignored) == RING_OPEN)
		ring_producer_close(&producer, error);
	if (ring_producer_wake_needed(&producer) & RING_WAIT_SLEEPER)
		futex_wake_shared(ring_producer_wake_word(&producer));
	if (ring_consumer_wake_needed(&consumer) & RING_WAIT_SLEEPER)
		futex_wake_shared(ring_consumer_wake_word(&consumer));
}

int apps_close_local_pair(struct apps *apps, uint64_t handle, uint32_t code, const char *why)
{
	struct app_handle *h = apps ? stream_table_find(&apps->handles, handle) : NULL;
	if (!h || h->kind != HANDLE_PAIR_END)
		return WH_ESTREAM_NOT_FOUND;
	struct local_pair *p = ((struct pair_end *)h)->pair;
	if (!ring_open(p, 0) && !ring_open(p, 1))
		return WH_ESTREAM_CLOSED; /* nothing is touched: what the apps read stays as it was */
	/* the words first: an app woken by the state reads them */
	struct ring_segment *header = p->seg.memory;
	snprintf(header->error_message, sizeof header->error_message, "%s", why);
	header->remote_code = code;
	int error = frame_error_from_code(code);
	ring_end_open_sides(p, 0, error);
	ring_end_open_sides(p, 1, error);
	/* an app waiting in its own loop hears it on its wake-up socket: a byte on the other
	 * end, as its partner would send (if that socket is full, a wake-up waits there already) */
	for (unsigned end = 0; end < 2; end++)
		if (p->ends[end])
			(void)send(p->wake[end ^ 1u], "", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	return WH_OK;
}

void open_local(struct app_session *c, const struct attach_msg *req)
{
	struct apps *apps = c->apps;
	struct app_session *listener = service_registry_find(&apps->services, req->service);
	if (!listener) {
		session_send_result(c, req->request_id, WH_ENO_SERVICE, NULL);
		return;
	}
	const char *why;
	int error = listener_admit(listener, &why);
	if (error != WH_OK) {
		log_write(apps->log, LOG_INFO, "apps", "client=%s local stream to service=%s refused: "
			  "listener client=%s: %s", c->id, req->service, listener->id, why);
		session_send_result(c, req->request_id, error, why);
		return;
	}
	if (listener != c && session_admit(c, &why) != WH_OK) {
		session_send_result(c, req->request_id, WH_ELIMIT, why);
		return;
	}
	struct local_pair *p = calloc(1, sizeof *p);
	if (!p) {
		session_send_result(c, req->request_id, WH_ENOMEM, NULL);
		return;
	}
	p->apps = apps;
	p->seg.memfd = -1;
	p->handles[0] = ++apps->next_handle;
	p->handles[1] = ++apps->next_handle;
	for (unsigned end = 0; end < 2; end++)
		p->endpoints[end] = (struct pair_end){ .h = { HANDLE_PAIR_END }, .pair = p, .end = end };
	error = budget_wake_pair(apps, FD_USE_STREAM, p->wake);
	if (error == WH_OK)
		error = segment_create(apps, &p->seg, apps->config.ring_capacity, p->handles[0]);
	if (error != WH_OK) {
		budget_close(apps, p->wake[0]);
		budget_close(apps, p->wake[1]);
		segment_destroy(apps, &p->seg);
		free(p);
		log_write(apps->log, LOG_INFO, "apps", "client=%s local stream to service=%s failed: %s",
			  c->id, req->service, wh_strerror(error));
		session_send_result(c, req->request_id, error, NULL);
		return;
	}
	p->ends[0] = c;
	p->ends[1] = listener;
	c->counters.streams++;
	listener->counters.streams++;
	c->counters.ring_bytes += p->seg.size;
	listener->counters.ring_bytes += p->seg.size;
	LIST_INSERT_HEAD(&c->pair_ends, &p->endpoints[0], link);
	LIST_INSERT_HEAD(&listener->pair_ends, &p->endpoints[1], link);
	apps->stats.local_pairs++;
	if (stream_table_insert(&apps->handles, p->handles[0], &p->endpoints[0].h) != WH_OK ||
	    stream_table_insert(&apps->handles, p->handles[1], &p->endpoints[1].h) != WH_OK) {
		pair_detach(p, 1, false);
		pair_detach(p, 0, false);
		session_send_result(c, req->request_id, WH_ENOMEM, NULL);
		return;
	}
	/* end i writes ring i and gets wake[i], on which it waits and sends to wake the other.
	 * The listener first: if it cannot be told, the opener gets an answer that says why. */
	error = session_hand_over(listener, ATTACH_INCOMING, 0, p->handles[1], &p->seg, p->wake[1],
			    ATTACH_NO_SLOT, 1, req->service, "local");
	if (error != WH_OK) {
		pair_detach(p, 1, false);
		pair_detach(p, 0, false);
		session_send_result(c, req->request_id, error, "the listening app could not be handed the stream");
		return;
	}
	p->awaiting_accept = true;
	listener->counters.unaccepted++;
	listener->counters.streams_accepted++;
	error = session_hand_over(c, ATTACH_OPENED, req->request_id, p->handles[0], &p->seg, p->wake[0],
			    ATTACH_NO_SLOT, 0, req->service, "local");
	if (error != WH_OK) {
		session_send_result(c, req->request_id, error, NULL);
		pair_detach(p, 0, true); /* the listener sees the stream fail */
		return;
	}
	c->counters.streams_opened++;
	segment_drop_fd(apps, &p->seg);
}
