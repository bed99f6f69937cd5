/* A hash map from a stream id (or an app stream's handle) to its stream: open addressing,
 * linear probing, backward-shift delete. */
#ifndef WORMHOLE_BROKER_STREAM_TABLE_H
#define WORMHOLE_BROKER_STREAM_TABLE_H

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

#endif
