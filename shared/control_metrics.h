/* Control tables as the Prometheus text exposition format (version 0.0.4): what
 * `wormhole-ctl metrics` prints and the broker's metrics-listen serves. */
#ifndef WORMHOLE_SHARED_CONTROL_METRICS_H
#define WORMHOLE_SHARED_CONTROL_METRICS_H

#include <stdio.h>

#include "control_msg.h"

/*
 * Every GAUGE and COUNTER column of the table becomes a family named
 * wormhole_TABLE_COLUMN, with _bytes or _seconds for those units (unless the name says so
 * already) and _total for counters, with # HELP (the column's help) and # TYPE; each row is a
 * sample labelled by the table's LABEL columns. docs/CONTROL.md, "metrics".
 */
void control_metrics_write(FILE *out, const struct control_table *table);

/* Every cell of a decoded table, row by row, in one malloc'd array the caller frees (NULL
 * when the table has no rows or memory is short). For renderers that look cells up. */
struct control_value *control_table_cells(const struct control_table *table);

#endif
