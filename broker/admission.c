/* Who gets a TLS handshake, and when (admission.h). */
#include "config.h"

#include <netinet/in.h>
#include <sodium.h>
#include <string.h>

#include "admission.h"

void admission_init(struct admission *a, const uint8_t key[ADMISSION_KEY_BYTES], double now,
		    double rate)
{
	memset(a, 0, sizeof *a);
	memcpy(a->key, key, ADMISSION_KEY_BYTES);
	a->started = now;
	a->tokens = rate * ADMISSION_BURST_SECONDS;
	a->refilled_at = now;
}

bool admission_addr_from(const struct sockaddr *sa, struct admission_addr *out)
{
	memset(out, 0, sizeof *out);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		out->address[10] = out->address[11] = 0xff;
		memcpy(out->address + 12, &in->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(out->address, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else {
		return false;
	}
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	/* an IPv4 address (plain or mapped) is in a /24, an IPv6 one in a /64 */
	size_t keep = memcmp(out->address, mapped, sizeof mapped) == 0 ? 15 : 8;
	memcpy(out->prefix, out->address, keep);
	return true;
}

/* Where the counter of `bytes` (tagged: an address and a prefix with the same bytes differ)
 * is in row. */
static size_t cell(const struct admission *a, int row, uint8_t tag, const uint8_t bytes[16])
{
	uint8_t in[18], hash[crypto_shorthash_BYTES];
	in[0] = tag;
	in[1] = (uint8_t)row;
	memcpy(in + 2, bytes, 16);
	crypto_shorthash(hash, in, sizeof in, a->key);
	uint32_t h;
	memcpy(&h, hash, sizeof h);
	return h % ADMISSION_WIDTH;
}

static double leaked(const struct admission_cell *c, double t)
{
	double score = c->score - ADMISSION_LEAK * (t - c->at);
	return score > 0 ? score : 0;
}

/* The least of the key's counters: never below its true score (count-min). */
static double score_of(const struct admission *a, uint8_t tag, const uint8_t bytes[16], double now)
{
	double t = now - a->started, least = 0;
	for (int row = 0; row < ADMISSION_ROWS; row++) {
		double s = leaked(&a->cells[row][cell(a, row, tag, bytes)], t);
		if (row == 0 || s < least)
			least = s;
	}
	return least;
}

static void add_score(struct admission *a, uint8_t tag, const uint8_t bytes[16], double now,
		      double delta, double cap)
{
	double t = now - a->started;
	for (int row = 0; row < ADMISSION_ROWS; row++) {
		struct admission_cell *c = &a->cells[row][cell(a, row, tag, bytes)];
		double s = leaked(c, t) + delta;
		c->score = s < 0 ? 0 : s > cap ? cap : s;
		c->at = t;
	}
}

static int known_slot(const struct admission *a, const uint8_t address[16], double now)
{
	for (int i = 0; i < ADMISSION_KNOWN_SLOTS; i++)
		if (a->known[i].at > 0 && now - a->known[i].at < ADMISSION_KNOWN_SECONDS &&
		    memcmp(a->known[i].address, address, 16) == 0)
			return i;
	return -1;
}

unsigned admission_priority(const struct admission *a, const struct admission_addr *addr,
			    double now)
{
	unsigned priority = known_slot(a, addr->address, now) >= 0 ? 0 : 1;
	if (score_of(a, 'p', addr->prefix, now) >= ADMISSION_PREFIX_MAX)
		priority += 1;
	if (score_of(a, 'a', addr->address, now) >= ADMISSION_ADDRESS_MAX)
		priority += 2;
	return priority;
}

bool admission_arrived(struct admission *a, const struct admission_addr *addr, double now)
{
	bool was_marked = score_of(a, 'a', addr->address, now) >= ADMISSION_ADDRESS_MAX;
	add_score(a, 'a', addr->address, now, 1, ADMISSION_ADDRESS_CAP);
	add_score(a, 'p', addr->prefix, now, 1, ADMISSION_PREFIX_CAP);
	return !was_marked && score_of(a, 'a', addr->address, now) >= ADMISSION_ADDRESS_MAX;
}

void admission_authenticated(struct admission *a, const struct admission_addr *addr, double now)
{
	add_score(a, 'a', addr->address, now, -1, ADMISSION_ADDRESS_CAP);
	add_score(a, 'p', addr->prefix, now, -1, ADMISSION_PREFIX_CAP);
	int slot = known_slot(a, addr->address, now);
	if (slot < 0) { /* a free or expired slot, else the one known longest ago */
		slot = 0;
		for (int i = 1; i < ADMISSION_KNOWN_SLOTS && a->known[slot].at > 0; i++)
			if (a->known[i].at < a->known[slot].at)
				slot = i;
		memcpy(a->known[slot].address, addr->address, 16);
	}
	a->known[slot].at = now > 0 ? now : 1e-9;
}

static void refill(struct admission *a, double rate, double now)
{
	double burst = rate * ADMISSION_BURST_SECONDS;
	if (burst < 1)
		burst = 1;
	if (now > a->refilled_at) {
		a->tokens += (now - a->refilled_at) * rate;
		a->refilled_at = now;
	}
	if (a->tokens > burst)
		a->tokens = burst;
}

bool admission_take(struct admission *a, double rate, double now, bool borrow)
{
	if (rate <= 0)
		return true;
	refill(a, rate, now);
	double floor = borrow ? 1 - rate * ADMISSION_BURST_SECONDS : 1;
	if (a->tokens < floor)
		return false;
	a->tokens -= 1;
	return true;
}

void admission_refund(struct admission *a, double rate, double now)
{
	if (rate <= 0)
		return;
	a->tokens += 1;
	refill(a, rate, now);
}

double admission_wait(const struct admission *a, double rate, double now)
{
	if (rate <= 0)
		return 0;
	double tokens = a->tokens + (now > a->refilled_at ? (now - a->refilled_at) * rate : 0);
	return tokens >= 1 ? 0 : (1 - tokens) / rate;
}
