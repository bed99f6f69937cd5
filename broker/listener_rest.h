/* A listener whose accept keeps failing rests a moment instead of spinning the loop. */
#ifndef WORMHOLE_BROKER_LISTENER_REST_H
#define WORMHOLE_BROKER_LISTENER_REST_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <ev.h>

#include "log.h"

/* An accept failed for a reason that stays while the connection waits in the queue (no
 * descriptor even for the budget's spare, no kernel memory): the listener is still readable,
 * and looking again at once spins the loop at a full core. */
#define ACCEPT_PAUSE_SECONDS 0.1
static inline bool accept_failure_persists(int error)
{
	return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

/* Stops the listener's watcher and starts `pause` (whose callback starts it again) for
 * ACCEPT_PAUSE_SECONDS. The time is set each time: a one-shot ev_timer that already fired
 * and is started again without ev_timer_set fires at once, and the listener spun so. The
 * first rest and every hundredth after are logged (`who`: "forward=web ", or ""), with the
 * count kept in *rests. */
static inline void listener_rest(struct ev_loop *loop, ev_io *listener, ev_timer *pause, uint64_t *rests,
				 const struct log_sink *log, const char *component, const char *who, int error)
{
	ev_io_stop(loop, listener);
	if (!ev_is_active(pause)) {
		ev_timer_set(pause, ACCEPT_PAUSE_SECONDS, 0.0);
		ev_timer_start(loop, pause);
	}
	if ((*rests)++ % 100 == 0)
		log_write(log, LOG_WARN, component, "%saccept: %s: the listener rests %.1f s (%llu times "
			  "so far)", who, strerror(error), ACCEPT_PAUSE_SECONDS, (unsigned long long)*rests);
}

#endif
