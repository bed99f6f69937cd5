/* Who gets a TLS handshake, and when: the handshake work strangers can cause is bounded, and
 * peers that authenticate are served first. Pure bookkeeping: no I/O, the time is passed in. */
#ifndef WORMHOLE_BROKER_ADMISSION_H
#define WORMHOLE_BROKER_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * An accepted TLS connection is a stranger until its certificate checks out. Strangers are
 * accounted three ways, none of which an attacker can make the broker forget by rotating
 * over addresses:
 *
 * - One token bucket for the whole listener: a handshake is started (OpenSSL given the
 *   connection, and with it a server flight: key exchange and a signature) only with a token,
 *   `handshake-rate` a second, a burst of two seconds' worth. A handshake that authenticates
 *   gives its token back: only strangers' handshakes use the rate up.
 * - A score per source address and per prefix (/24 for IPv4, /64 for IPv6): each connection
 *   that has not authenticated adds one, authenticating takes it back, and a score leaks at
 *   ADMISSION_LEAK a second. The scores live in a count-min sketch: a fixed array of counters
 *   found by a keyed hash (SipHash, a random key each start), nothing is evicted, so a
 *   thousand addresses do not push one out; two keys that share every counter only make each
 *   other look worse, never better. Scores are capped, so an attacker is forgotten within
 *   ADMISSION_*_CAP / ADMISSION_LEAK seconds of stopping.
 * - The addresses that authenticated lately (only a certificate writes this table, so a
 *   stranger cannot fill it).
 *
 * A score is never a refusal: it is a priority (admission_priority). Connections waiting for a
 * token are served best priority first, oldest first within one; when a connection must make
 * room the worst, oldest one goes. A stranger that shares a peer's address (NAT, the same
 * host) therefore lowers that address's priority but cannot get the peer refused.
 */

#define ADMISSION_ROWS 4
#define ADMISSION_WIDTH 4096
#define ADMISSION_KNOWN_SLOTS 256
#define ADMISSION_KNOWN_SECONDS 3600.0 /* an address that authenticated stays known this long */
#define ADMISSION_LEAK 0.5             /* score units a second */
#define ADMISSION_ADDRESS_MAX 5.0      /* an address at or above this is marked */
#define ADMISSION_ADDRESS_CAP 10.0
#define ADMISSION_PREFIX_MAX 20.0      /* a /24 or /64 at or above this is marked */
#define ADMISSION_PREFIX_CAP 40.0
#define ADMISSION_KEY_BYTES 16
#define ADMISSION_BURST_SECONDS 2.0    /* the bucket holds this many seconds of handshake-rate */

/* A source address as 16 bytes (IPv4 as ::ffff:a.b.c.d) and its prefix. */
struct admission_addr {
	uint8_t address[16];
	uint8_t prefix[16];
};

struct admission_cell {
	double score;
	double at; /* seconds since admission_init when score was last written (a daemon runs
		    * for months: a float's resolution there would be seconds) */
};

struct admission {
	uint8_t key[ADMISSION_KEY_BYTES];
	double started;
	double tokens, refilled_at;
	struct admission_cell cells[ADMISSION_ROWS][ADMISSION_WIDTH];
	struct {
		uint8_t address[16];
		double at; /* 0: free */
	} known[ADMISSION_KNOWN_SLOTS];
};

/* Priorities: lower is served first and dropped last. */
enum {
	ADMISSION_KNOWN = 0,  /* authenticated from this address lately */
	ADMISSION_WORST = 4,  /* unknown, its address and its prefix marked */
};

void admission_init(struct admission *a, const uint8_t key[ADMISSION_KEY_BYTES], double now,
		    double rate);
/* The address and prefix of a socket address; false for a family other than IPv4 or IPv6. */
bool admission_addr_from(const struct sockaddr *sa, struct admission_addr *out);

/* 0 (known) to ADMISSION_WORST: unknown +1, prefix marked +1, address marked +2. */
unsigned admission_priority(const struct admission *a, const struct admission_addr *addr,
			    double now);
/* A connection that has not authenticated (yet): the address's and prefix's scores rise.
 * True if that marked the address (it was below ADMISSION_ADDRESS_MAX). */
bool admission_arrived(struct admission *a, const struct admission_addr *addr, double now);
/* It authenticated: its point is taken back and the address is known. */
void admission_authenticated(struct admission *a, const struct admission_addr *addr, double now);

/* Takes a token for a handshake (rate 0: no bound, always true). With borrow (a connection
 * of priority ADMISSION_KNOWN: a peer authenticated from its address lately, and nothing
 * marks the address), an empty bucket lends one, down to a burst of debt that the strangers
 * after it wait out: a known peer does not wait behind a flood for its turn. A stranger on
 * the same address can borrow only until its own connections mark the address. */
bool admission_take(struct admission *a, double rate, double now, bool borrow);
/* A handshake that authenticated gives its token back. */
void admission_refund(struct admission *a, double rate, double now);
/* Seconds until a token is there (0: one is there now). */
double admission_wait(const struct admission *a, double rate, double now);

#endif
