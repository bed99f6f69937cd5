/* A hash map from a stream id (or an app stream's handle) to its stream: open addressing,
 * linear probing, backward-shift delete. */
#ifndef WORMHOLE_BROKER_STREAM_TABLE_H
#define WORMHOLE_BROKER_STREAM_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stream_table_slot {
	uint64_t id; /* 0 marks an empty slot: stream id 0 is the connection, and handles start at 1 */
	void *value;
};

struct stream_table {
	struct stream_table_slot *slots;
	size_t mask;  /* capacity - 1; capacity is a power of two */
	size_t count;
};

/* Error convention: WH_OK or WH_ENOMEM / WH_EINVAL / WH_ESTREAM_ALREADY_EXISTS. */
int stream_table_init(struct stream_table *table);
void stream_table_free(struct stream_table *table);
int stream_table_insert(struct stream_table *table, uint64_t id, void *value);
void *stream_table_find(const struct stream_table *table, uint64_t id);
/* Returns the removed value, or NULL if the id was absent. */
void *stream_table_remove(struct stream_table *table, uint64_t id);
/* Calls fn for every entry; fn must not modify the table. */
void stream_table_each(const struct stream_table *table, void (*fn)(void *value, void *arg),
		       void *arg);

/* Which of a peer's stream ids were used (docs/PROTOCOL.md 2): an id is used once, but the
 * peer's HANDSHAKEs need not come in id order (the reference sends HANDSHAKE 7 before 5 when
 * opens race, WIRE-NOTES weakness 11). So: the highest id seen, and one bit for each of the
 * STREAM_IDS_WINDOW ids of the peer's parity below it and up to it. An id above the highest is
 * unused; an id in the window is unused while its bit is clear; an id further below counts as
 * used (skipped so far back it may no longer open: a bound on the bookkeeping, 128 bytes a
 * connection). Every id given is of one parity: the caller checks it. */
#define STREAM_IDS_WINDOW 1024u

struct stream_ids {
	uint32_t top; /* (highest id >> 1) + 1; 0: no id used yet */
	uint64_t bits[STREAM_IDS_WINDOW / 64];
};

/* Whether the id was never used and may still be (not so far below the highest). */
bool stream_ids_usable(const struct stream_ids *ids, uint32_t id);
/* Marks the id used; ids between the highest and it stay usable (within the window). */
void stream_ids_mark(struct stream_ids *ids, uint32_t id);

#endif
