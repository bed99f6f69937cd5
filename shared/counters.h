/* Counters, defined once: each table row says a counter's name, kind, unit and help, and
 * everything that stores, copies, sends or shows the counter is generated from the row. */
#ifndef WORMHOLE_SHARED_COUNTERS_H
#define WORMHOLE_SHARED_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

/*
 * A table is a macro of rows X(name, kind, unit, help), as WH_ERROR_TABLE is for errors:
 *   kind  TOTAL (only grows; a Prometheus counter) or LEVEL (goes up and down; a gauge)
 *   unit  NONE, BYTES or SECONDS
 * Every counter is a uint64_t. A table generates, where it is used:
 *   - the struct that holds the counters (COUNTER_FIELD),
 *   - a descriptor array (COUNTER_INFO with the struct's type): the names, kinds, units and
 *     help the control tool shows and exports, with each counter's offset in the struct.
 */
enum counter_kind { COUNTER_TOTAL, COUNTER_LEVEL };
enum counter_unit { COUNTER_UNIT_NONE, COUNTER_UNIT_BYTES, COUNTER_UNIT_SECONDS };

struct counter_info {
	const char *name;
	enum counter_kind kind;
	enum counter_unit unit;
	const char *help;
	size_t offset; /* of its uint64_t in the struct the table generated */
};

#define COUNTER_FIELD(name, kind, unit, help) uint64_t name;
/* Use as: static const struct counter_info x_info[] = { X_TABLE(COUNTER_INFO_OF) }, with
 * COUNTER_STRUCT defined as the struct's type first. */
#define COUNTER_INFO_OF(name_, kind_, unit_, help_) \
	{ #name_, COUNTER_##kind_, COUNTER_UNIT_##unit_, help_, offsetof(COUNTER_STRUCT, name_) },
#define COUNTER_COUNT_OF(...) +1

static inline uint64_t counter_value(const void *counters, const struct counter_info *info)
{
	return *(const uint64_t *)(const void *)((const char *)counters + info->offset);
}

/*
 * One app session's counters as the attach protocol's STATS_REPLY carries them, in wire
 * order (new rows are only ever appended) and as wh_client_stats names them.
 */
#define ATTACH_STATS_TABLE(X) \
	X(streams, LEVEL, NONE, "streams the app holds now") \
	X(streams_opened, TOTAL, NONE, "streams it opened since it attached") \
	X(streams_accepted, TOTAL, NONE, "streams handed to it as a listener") \
	X(ring_bytes, LEVEL, BYTES, "shared memory allotted to its streams now") \
	X(ring_bytes_limit, LEVEL, BYTES, "the most shared memory it may have") \
	X(max_streams, LEVEL, NONE, "the most streams it may hold") \
	X(bytes_sent, TOTAL, BYTES, "bytes the broker took from its rings for peer brokers") \
	X(bytes_received, TOTAL, BYTES, "bytes the broker put into its rings from peer brokers") \
	X(broker_clients, LEVEL, NONE, "apps attached to the broker now") \
	X(broker_streams, LEVEL, NONE, "app streams in the broker now, all apps")

struct attach_stats {
	ATTACH_STATS_TABLE(COUNTER_FIELD)
};
#define ATTACH_STAT_COUNT (0 ATTACH_STATS_TABLE(COUNTER_COUNT_OF))

#endif
