/* A hash map from a stream id (or an app stream's handle) to its stream: open addressing,
 * linear probing, backward-shift delete. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <wormhole/errors.h>

#include "stream_table.h"

#define STREAM_TABLE_INITIAL 64u

/* Fibonacci hashing spreads the sequential ids (1, 3, 5, ...) across the table; the high half
 * is folded in first so that 64-bit keys spread as well. */
static size_t slot_of(const struct stream_table *table, uint64_t id)
{
	return (size_t)(((id ^ (id >> 32)) * 0x9E3779B97F4A7C15ull) >> 32) & table->mask;
}

int stream_table_init(struct stream_table *table)
{
	table->slots = calloc(STREAM_TABLE_INITIAL, sizeof *table->slots);
	if (!table->slots)
		return WH_ENOMEM;
	table->mask = STREAM_TABLE_INITIAL - 1;
	table->count = 0;
	return WH_OK;
}

void stream_table_free(struct stream_table *table)
{
	free(table->slots);
	table->slots = NULL;
	table->mask = 0;
	table->count = 0;
}

static void place(struct stream_table *table, uint64_t id, void *value)
{
	size_t i = slot_of(table, id);
	while (table->slots[i].id)
		i = (i + 1) & table->mask;
	table->slots[i].id = id;
	table->slots[i].value = value;
	table->count++;
}

static int grow(struct stream_table *table)
{
	struct stream_table old = *table;
	size_t capacity = (old.mask + 1) * 2;
	table->slots = calloc(capacity, sizeof *table->slots);
	if (!table->slots) {
		*table = old;
		return WH_ENOMEM;
	}
	table->mask = capacity - 1;
	table->count = 0;
	for (size_t i = 0; i <= old.mask; i++)
		if (old.slots[i].id)
			place(table, old.slots[i].id, old.slots[i].value);
	free(old.slots);
	return WH_OK;
}

int stream_table_insert(struct stream_table *table, uint64_t id, void *value)
{
	if (id == 0 || !value)
		return WH_EINVAL;
	if (stream_table_find(table, id))
		return WH_ESTREAM_ALREADY_EXISTS;
	if ((table->count + 1) * 4 > (table->mask + 1) * 3) { /* keep the load under 3/4 */
		int error = grow(table);
		if (error != WH_OK)
			return error;
	}
	place(table, id, value);
	return WH_OK;
}

void *stream_table_find(const struct stream_table *table, uint64_t id)
{
	if (id == 0)
		return NULL;
	for (size_t i = slot_of(table, id);; i = (i + 1) & table->mask) {
		if (table->slots[i].id == id)
			return table->slots[i].value;
		if (table->slots[i].id == 0)
			return NULL;
	}
}

void *stream_table_remove(struct stream_table *table, uint64_t id)
{
	if (id == 0)
		return NULL;
	size_t i = slot_of(table, id);
	while (table->slots[i].id != id) {
		if (table->slots[i].id == 0)
			return NULL;
		i = (i + 1) & table->mask;
	}
	void *value = table->slots[i].value;
	/* Shift later members of the probe run back so lookups never stop at a false hole. */
	for (size_t j = (i + 1) & table->mask; table->slots[j].id; j = (j + 1) & table->mask) {
		size_t home = slot_of(table, table->slots[j].id);
		/* Move j into the hole i unless its home lies cyclically in (i, j]. */
		if (((j - home) & table->mask) >= ((j - i) & table->mask)) {
			table->slots[i] = table->slots[j];
			i = j;
		}
	}
	table->slots[i].id = 0;
	table->slots[i].value = NULL;
	table->count--;
	return value;
}

void stream_table_each(const struct stream_table *table, void (*fn)(void *value, void *arg),
		       void *arg)
{
	for (size_t i = 0; i <= table->mask; i++)
		if (table->slots[i].id)
			fn(table->slots[i].value, arg);
}

/* ---- ids used ---------------------------------------------------------------------------
 * Ids of one parity step by 2, so id >> 1 numbers them 0, 1, 2, ... without gaps: bit
 * (id >> 1) % STREAM_IDS_WINDOW stands for the id while it is in the window. */

static bool ids_bit(const struct stream_ids *ids, uint32_t seq)
{
	uint32_t at = seq % STREAM_IDS_WINDOW;
	return ids->bits[at / 64] >> (at % 64) & 1u;
}

static void ids_set(struct stream_ids *ids, uint32_t seq, bool used)
{
	uint32_t at = seq % STREAM_IDS_WINDOW;
	uint64_t mask = (uint64_t)1 << (at % 64);
	ids->bits[at / 64] = used ? ids->bits[at / 64] | mask : ids->bits[at / 64] & ~mask;
}

bool stream_ids_usable(const struct stream_ids *ids, uint32_t id)
{
	uint32_t seq = id >> 1;
	if (seq >= ids->top)
		return true;
	if (ids->top - seq > STREAM_IDS_WINDOW)
		return false;
	return !ids_bit(ids, seq);
}

void stream_ids_mark(struct stream_ids *ids, uint32_t id)
{
	uint32_t seq = id >> 1;
	if (seq >= ids->top) {
		/* the window moves up: the bits it takes over stand for new, unused ids */
		if (seq - ids->top >= STREAM_IDS_WINDOW)
			memset(ids->bits, 0, sizeof ids->bits);
		else
			for (uint32_t q = ids->top; q < seq; q++)
				ids_set(ids, q, false);
		ids->top = seq + 1;
	}
	ids_set(ids, seq, true);
}
