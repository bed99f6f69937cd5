/* Peers cut off for abuse wait before they are served again. Pure bookkeeping: no I/O, the
 * time is passed in. */
#ifndef WORMHOLE_BROKER_PENALTY_H
#define WORMHOLE_BROKER_PENALTY_H

#include <stdint.h>

/*
 * A peer whose connection the broker closed for what it sent (a flood past noop-rate,
 * ping-rate or reset-rate, a fatal malformed frame, answers it would not read) gets a
 * strike. Its next connection is accepted but not read until PENALTY_BASE * 2^(strikes-1)
 * seconds (at most PENALTY_MAX) after the strike: every limit counts per connection, so an
 * attacker that reconnects at once got a fresh burst each time, and a loop of short floods
 * cost the others a quarter of their speed (docs/SECURITY.md, "What an attack costs the
 * others"). Held, it sleeps in its own write: no CPU on either side.
 *
 * The broker caps a hold at half the shortest deadline that runs while the connection waits
 * (keep-alive's answer, the first frame, peer-idle-timeout), and holds one connection of a
 * peer at a time: a newer one takes the place of one still held. Times are monotonic.
 *
 * Who a peer is: over TLS its certificate identity (a stranger cannot earn a peer strikes),
 * over plaintext its source address. Strikes are forgotten PENALTY_FORGET seconds after the
 * last. The table is fixed (PENALTY_SLOTS, keyed hashes of the names: SipHash with a random
 * key each start); when it is full the entry struck longest ago makes room, so an attacker
 * rotating over more names than that is back to the per-connection limits, no worse.
 */
#define PENALTY_SLOTS 256
#define PENALTY_BASE 0.25   /* seconds held after the first strike */
#define PENALTY_MAX 4.0     /* the longest hold */
#define PENALTY_FORGET 60.0 /* strikes are forgotten this long after the last */
#define PENALTY_KEY_BYTES 16

struct penalty {
	uint8_t key[PENALTY_KEY_BYTES];
	struct {
		uint64_t hash;
		unsigned strikes;
		double at; /* of the last strike; 0: free */
	} slots[PENALTY_SLOTS];
};

void penalty_init(struct penalty *p, const uint8_t key[PENALTY_KEY_BYTES]);
/* `name` ("address:HOST" or "id:IDENTITY") was cut off for abuse at `now` (> 0): one more
 * strike (the first if the last was over PENALTY_FORGET ago). Returns its strikes now. */
unsigned penalty_strike(struct penalty *p, const char *name, double now);
/* Seconds a new connection of `name` arriving at `now` is held before it is read (0: none).
 * *strikes (if not NULL) gets the strikes behind it. */
double penalty_hold(const struct penalty *p, const char *name, double now, unsigned *strikes);

#endif
