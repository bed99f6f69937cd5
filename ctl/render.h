/* wormhole-ctl's output: decoded control tables as aligned text, JSON, or Prometheus text. */
#ifndef WORMHOLE_CTL_RENDER_H
#define WORMHOLE_CTL_RENDER_H

#include <stdbool.h>
#include <stdio.h>

#include "control_msg.h"

/* A table as received: the body it was decoded from stays with it. */
struct ctl_table {
	uint8_t *body;
	struct control_table table;
};

/* Human units: 1.5 KiB, 12 ms, 3.4 s. */
void render_bytes(char *out, size_t length, double bytes);
void render_seconds(char *out, size_t length, double seconds);

/* A cell as text (human: with units; raw: as JSON would spell a number, strings unquoted). */
void render_cell(char *out, size_t length, const struct control_column *column,
		 const struct control_value *value, bool human);

/*
 * An aligned table that fits `width` columns: the columns named in `wanted` (NULL: all) in
 * that order, cells with human units; `rates` (may be NULL) adds, after each byte counter, its
 * rate per second since `previous` (the same view `interval` seconds before), matched by the
 * row's label columns. A one-row table with no column list (status) is shown as
 * "name  value" lines, every column.
 */
void render_text(FILE *out, const struct ctl_table *t, const char *const *wanted, unsigned width,
		 const struct ctl_table *previous, double interval);

/* A JSON string literal (quoted and escaped): controls as \uXXXX (C1, separators and
 * bidirectional overrides too), bytes that are not UTF-8 as U+FFFD. */
void render_json_string(FILE *out, const char *s, size_t n);

/* s, escaped as the broker's log is (text_escape.h), and a newline: a message from the
 * broker that may carry names from outside. */
void render_text_line(FILE *out, const char *s);

/* {"NAME": [ {column: value, ...}, ... ]} with numbers as JSON numbers (docs/CONTROL.md). */
void render_json(FILE *out, const struct ctl_table *tables, unsigned count);

/* The Prometheus text exposition (format 0.0.4) of every GAUGE and COUNTER column, named
 * wormhole_TABLE_COLUMN[_bytes|_seconds][_total], labelled by the table's LABEL columns. */
void render_prometheus(FILE *out, const struct ctl_table *tables, unsigned count);

#endif
