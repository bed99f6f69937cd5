/* Strikes of peers cut off for abuse, and how long their next connection waits
 * (broker/penalty.h). */
#include "config.h"

#include <sodium.h>
#include <stdbool.h>
#include <string.h>

#include "penalty.h"

void penalty_init(struct penalty *p, const uint8_t key[PENALTY_KEY_BYTES])
{
	memset(p, 0, sizeof *p);
	memcpy(p->key, key, PENALTY_KEY_BYTES);
}

static uint64_t name_hash(const struct penalty *p, const char *name)
{
	uint8_t hash[crypto_shorthash_BYTES];
	crypto_shorthash(hash, (const unsigned char *)name, strlen(name), p->key);
	uint64_t h;
	memcpy(&h, hash, sizeof h);
	return h | 1; /* never 0, whatever the name */
}

static bool live(double at, double now)
{
	return at > 0 && now - at <= PENALTY_FORGET;
}

static int slot_of(const struct penalty *p, uint64_t hash, double now)
{
	for (int i = 0; i < PENALTY_SLOTS; i++)
		if (p->slots[i].hash == hash && live(p->slots[i].at, now))
			return i;
	return -1;
}

unsigned penalty_strike(struct penalty *p, const char *name, double now)
{
	uint64_t hash = name_hash(p, name);
	int at = slot_of(p, hash, now);
	if (at < 0) {
		/* a free or forgotten slot, else the one struck longest ago */
		at = 0;
		for (int i = 0; i < PENALTY_SLOTS; i++) {
			if (!live(p->slots[i].at, now)) {
				at = i;
				break;
			}
			if (p->slots[i].at < p->slots[at].at)
				at = i;
		}
		p->slots[at].hash = hash;
		p->slots[at].strikes = 0;
	}
	if (p->slots[at].strikes < 64)
		p->slots[at].strikes++;
	p->slots[at].at = now;
	return p->slots[at].strikes;
}

double penalty_hold(const struct penalty *p, const char *name, double now, unsigned *strikes)
{
	if (strikes)
		*strikes = 0;
	int at = slot_of(p, name_hash(p, name), now);
	if (at < 0)
		return 0.0;
	unsigned n = p->slots[at].strikes;
	if (strikes)
		*strikes = n;
	double delay = PENALTY_BASE;
	for (unsigned i = 1; i < n && delay < PENALTY_MAX; i++)
		delay *= 2;
	if (delay > PENALTY_MAX)
		delay = PENALTY_MAX;
	double left = p->slots[at].at + delay - now;
	if (left > delay)
		left = delay; /* a strike "after" now: the clock went back */
	return left > 0 ? left : 0.0;
}
