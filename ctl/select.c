/* wormhole-ctl's row selection (select.h). */
#include "config.h"

#include "select.h"
#include "control_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The column named, or -1 with the names the table has in why. */
static int field_index(const struct control_table *t, const char *name, size_t length, char *why,
		       size_t why_length)
{
	for (unsigned c = 0; c < t->columns; c++)
		if (strlen(t->column[c].name) == length && memcmp(t->column[c].name, name, length) == 0)
			return (int)c;
	int at = snprintf(why, why_length, "%s has no field '%.*s' (it has:", t->name, (int)length, name);
	for (unsigned c = 0; c < t->columns && at > 0 && (size_t)at < why_length; c++)
		at += snprintf(why + at, why_length - (size_t)at, " %s", t->column[c].name);
	if (at > 0 && (size_t)at < why_length)
		snprintf(why + at, why_length - (size_t)at, ")");
	return -1;
}

/* A cell as its filter VALUE is spelled: numbers as JSON has them, text as it is, no value as
 * "null" (its words match too). */
static bool cell_matches(const struct control_column *col, const struct control_value *v, const char *want)
{
	if (v->type == CONTROL_NULL)
		return strcmp(want, "null") == 0 ||
		       (strlen(want) == v->text_length && memcmp(want, v->text, v->text_length) == 0);
	if (v->type == CONTROL_TEXT)
		return strlen(want) == v->text_length && memcmp(want, v->text, v->text_length) == 0;
	char cell[64];
	render_cell(cell, sizeof cell, col, v, false);
	return strcmp(cell, want) == 0;
}

static double number(const struct control_value *v)
{
	return v->type == CONTROL_UINT ? (double)v->u : v->type == CONTROL_INT ? (double)v->i : v->f;
}

/* Orders two cells of a column: text bytewise, numbers by value (exactly, for 64-bit ids),
 * cells with no value last whichever the direction. */
static int compare_cells(const struct control_value *a, const struct control_value *b)
{
	if (a->type == CONTROL_NULL || b->type == CONTROL_NULL)
		return (a->type == CONTROL_NULL) - (b->type == CONTROL_NULL);
	if (a->type == CONTROL_TEXT) {
		size_t n = a->text_length < b->text_length ? a->text_length : b->text_length;
		int c = memcmp(a->text, b->text, n);
		return c ? c : (a->text_length > b->text_length) - (a->text_length < b->text_length);
	}
	if (a->type == CONTROL_UINT)
		return (a->u > b->u) - (a->u < b->u);
	if (a->type == CONTROL_INT)
		return (a->i > b->i) - (a->i < b->i);
	return (number(a) > number(b)) - (number(a) < number(b));
}

struct sort_key {
	const struct control_value *cells;
	unsigned columns;
	int column;
	bool descending;
};

static struct sort_key sort_by; /* qsort has no context argument in C11 */

static int compare_rows(const void *x, const void *y)
{
	size_t a = *(const size_t *)x, b = *(const size_t *)y;
	const struct control_value *va = &sort_by.cells[a * sort_by.columns + (unsigned)sort_by.column];
	const struct control_value *vb = &sort_by.cells[b * sort_by.columns + (unsigned)sort_by.column];
	int c = compare_cells(va, vb);
	if (c && va->type != CONTROL_NULL && vb->type != CONTROL_NULL && sort_by.descending)
		c = -c;
	return c ? c : (a > b) - (a < b); /* stable: rows as sent break ties */
}

/* The table again, with only rows[0..count) in that order. */
static int rewrite(struct ctl_table *t, const struct control_value *cells, const size_t *rows, size_t count)
{
	/* fewer rows, the same columns: never more than the table as received */
	size_t cap = CONTROL_HEADER_SIZE + (size_t)(t->table.cells - t->body) + t->table.cells_length;
	uint8_t *out = malloc(cap);
	if (!out)
		return -1;
	struct control_writer w;
	control_table_begin(&w, out, cap, t->table.name);
	for (unsigned c = 0; c < t->table.columns; c++)
		control_table_column_like(&w, &t->table.column[c]);
	for (size_t r = 0; r < count; r++) {
		control_table_row(&w);
		for (unsigned c = 0; c < t->table.columns; c++)
			control_put_value(&w, &cells[rows[r] * t->table.columns + c]);
	}
	struct control_table decoded;
	int n = control_table_end(&w);
	if (n < 0 || control_table_decode(out + CONTROL_HEADER_SIZE, (size_t)n - CONTROL_HEADER_SIZE, &decoded) != WH_OK) {
		free(out);
		return -1;
	}
	free(t->body);
	t->body = out;
	t->table = decoded;
	return 0;
}

int select_rows(struct ctl_table *t, const struct selection *s, char *why, size_t why_length)
{
	const struct control_table *table = &t->table;
	int filter_column[SELECT_FILTERS_MAX];
	for (unsigned f = 0; f < s->filters; f++) {
		const char *equals = strchr(s->filter[f], '=');
		filter_column[f] = field_index(table, s->filter[f], equals ? (size_t)(equals - s->filter[f]) : 0,
					       why, why_length);
		if (filter_column[f] < 0)
			return -1;
	}
	int sort_column = -1;
	bool descending = s->sort && s->sort[0] == '-';
	if (s->sort) {
		const char *name = s->sort + (descending ? 1 : 0);
		if ((sort_column = field_index(table, name, strlen(name), why, why_length)) < 0)
			return -1;
	}
	if (table->rows == 0)
		return 0;
	struct control_value *cells = control_table_cells(table);
	size_t *rows = malloc(table->rows * sizeof *rows);
	size_t count = 0;
	for (size_t r = 0; r < table->rows && cells && rows; r++) {
		bool keep = true;
		for (unsigned f = 0; f < s->filters && keep; f++)
			keep = cell_matches(&table->column[filter_column[f]],
					    &cells[r * table->columns + (unsigned)filter_column[f]],
					    strchr(s->filter[f], '=') + 1);
		if (keep)
			rows[count++] = r;
	}
	if (cells && rows && sort_column >= 0) {
		sort_by = (struct sort_key){ cells, table->columns, sort_column, descending };
		qsort(rows, count, sizeof *rows, compare_rows);
	}
	if (s->limit > 0 && count > (size_t)s->limit)
		count = (size_t)s->limit;
	int rc = cells && rows ? rewrite(t, cells, rows, count) : -1;
	if (rc < 0)
		snprintf(why, why_length, "out of memory for %u rows", table->rows);
	free(rows);
	free(cells);
	return rc;
}
