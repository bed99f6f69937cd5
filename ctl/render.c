/* wormhole-ctl's output (render.h). */
#include "config.h"

#include "render.h"
#include "control_metrics.h"
#include "text_escape.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CELL_MAX 160 /* characters of one rendered cell in a text table */
#define TEXT_MIN_WIDTH 12 /* a text column is never cut narrower */

void render_bytes(char *out, size_t length, double bytes)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	unsigned u = 0;
	while (fabs(bytes) >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
		bytes /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, length, "%.0f B", bytes);
	else
		snprintf(out, length, fabs(bytes) < 10 ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

void render_seconds(char *out, size_t length, double s)
{
	if (s == 0)
		snprintf(out, length, "0");
	else if (s < 1e-3)
		snprintf(out, length, "%.0f us", s * 1e6);
	else if (s < 1)
		snprintf(out, length, s < 0.01 ? "%.2f ms" : "%.0f ms", s * 1e3);
	else if (s < 60)
		snprintf(out, length, "%.1f s", s);
	else if (s < 3600)
		snprintf(out, length, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
	else if (s < 86400)
		snprintf(out, length, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
	else
		snprintf(out, length, "%dd%02dh", (int)(s / 86400), (int)fmod(s / 3600, 24));
}

void render_cell(char *out, size_t length, const struct control_column *column,
		 const struct control_value *v, bool human)
{
	double number = v->type == CONTROL_UINT ? (double)v->u : v->type == CONTROL_INT ? (double)v->i : v->f;
	if (v->type == CONTROL_TEXT || v->type == CONTROL_NULL) {
		/* a null cell shows its words ("none"); names and messages from apps, peers and files: a cell never starts a line of
		 * its own nor sends the terminal an escape */
		text_escape(out, length, v->text, v->text_length);
	} else if (human && column->unit == CONTROL_UNIT_BYTES) {
		render_bytes(out, length, number);
	} else if (human && column->unit == CONTROL_UNIT_SECONDS) {
		render_seconds(out, length, number);
	} else if (v->type == CONTROL_UINT) {
		snprintf(out, length, "%" PRIu64, v->u);
	} else if (v->type == CONTROL_INT) {
		snprintf(out, length, "%" PRId64, v->i);
	} else if (!isfinite(v->f)) {
		snprintf(out, length, "0"); /* neither JSON nor a table has a use for NaN */
	} else {
		snprintf(out, length, human ? "%.3g" : "%.9g", v->f);
	}
}

static double number_of(const struct control_value *v)
{
	return v->type == CONTROL_UINT ? (double)v->u : v->type == CONTROL_INT ? (double)v->i : v->f;
}

/* The row's identity: its label cells, joined. */
static void row_key(const struct control_table *t, const struct control_value *row, char *out, size_t length)
{
	size_t at = 0;
	out[0] = '\0';
	for (unsigned c = 0; c < t->columns && at < length; c++) {
		if (t->column[c].role != CONTROL_LABEL)
			continue;
		char cell[CELL_MAX];
		render_cell(cell, sizeof cell, &t->column[c], &row[c], false);
		int n = snprintf(out + at, length - at, "%s\x1f", cell);
		at += n > 0 ? (size_t)n : 0;
	}
}

static int column_index(const struct control_table *t, const char *name)
{
	for (unsigned c = 0; c < t->columns; c++)
		if (strcmp(t->column[c].name, name) == 0)
			return (int)c;
	return -1;
}

/* A shown column: a table column, or the rate of one (rate_of >= 0). */
struct shown {
	int column;
	bool rate;
	char title[CONTROL_NAME_MAX + 3];
	size_t width;
	bool numeric;
};

static void render_vertical(FILE *out, const struct control_table *t, const struct control_value *row)
{
	size_t width = 0;
	for (unsigned c = 0; c < t->columns; c++)
		if (strlen(t->column[c].name) > width)
			width = strlen(t->column[c].name);
	for (unsigned c = 0; c < t->columns; c++) {
		char cell[CELL_MAX];
		render_cell(cell, sizeof cell, &t->column[c], &row[c], true);
		char name[4 * CONTROL_NAME_MAX + 1];
		text_escape(name, sizeof name, t->column[c].name, strlen(t->column[c].name));
		fprintf(out, "%-*s  %s\n", (int)width + 1, name, cell);
	}
}

/* Numbers align right, text left; the last column has no trailing blanks. Text longer than
 * its column is cut, its last shown character a '~'. */
static void print_cell(FILE *out, const char *cell, size_t width, bool numeric, bool last)
{
	if (!numeric && strlen(cell) > width && width > 0) {
		size_t keep = width - 1;
		while (keep > 0 && ((unsigned char)cell[keep] & 0xc0) == 0x80)
			keep--; /* not inside a character */
		fprintf(out, "%.*s~", (int)keep, cell);
	}
	else if (numeric)
		fprintf(out, "%*s", (int)width, cell);
	else if (last || strlen(cell) >= width)
		fputs(cell, out);
	else
		fprintf(out, "%-*s", (int)width, cell);
	if (!last)
		fputs("  ", out);
}

void render_text(FILE *out, const struct ctl_table *ct, const char *const *wanted, unsigned width,
		 const struct ctl_table *previous, double interval)
{
	const struct control_table *t = &ct->table;
	struct control_value *cells = control_table_cells(t);
	if (t->rows == 1 && !previous && !wanted) { /* status: one row of many columns */
		if (cells)
			render_vertical(out, t, cells);
		free(cells);
		return;
	}
	struct control_value *before = previous ? control_table_cells(&previous->table) : NULL;
	struct shown shown[2 * CONTROL_COLUMNS_MAX];
	unsigned count = 0;
	for (unsigned i = 0; wanted ? wanted[i] != NULL : i < t->columns; i++) {
		int c = wanted ? column_index(t, wanted[i]) : (int)i;
		if (c < 0)
			continue;
		const struct control_column *col = &t->column[c];
		shown[count] = (struct shown){ .column = c, .numeric = col->type != CONTROL_TEXT };
		text_escape(shown[count].title, sizeof shown[count].title, col->name, strlen(col->name));
		count++;
		if (previous && col->role == CONTROL_COUNTER && col->unit == CONTROL_UNIT_BYTES) {
			shown[count] = (struct shown){ .column = c, .rate = true, .numeric = true };
			snprintf(shown[count].title, sizeof shown[count].title, "%s/s", col->name);
			count++;
		}
	}
	/* the cells, rendered, to measure them */
	size_t rows = t->rows;
	char *text = calloc(rows * count + 1, CELL_MAX);
	for (size_t r = 0; r < rows && text && cells; r++) {
		const struct control_value *row = &cells[r * t->columns];
		const struct control_value *old = NULL;
		if (before) {
			char key[512], other[512];
			row_key(t, row, key, sizeof key);
			for (size_t p = 0; p < previous->table.rows && !old; p++) {
				row_key(&previous->table, &before[p * previous->table.columns], other, sizeof other);
				if (strcmp(key, other) == 0)
					old = &before[p * previous->table.columns];
			}
		}
		for (unsigned s = 0; s < count; s++) {
			char *cell = text + (r * count + s) * CELL_MAX;
			const struct control_column *col = &t->column[shown[s].column];
			if (!shown[s].rate) {
				render_cell(cell, CELL_MAX, col, &row[shown[s].column], true);
			} else if (old && interval > 0 && previous->table.columns == t->columns) {
				double rate = (number_of(&row[shown[s].column]) - number_of(&old[shown[s].column])) / interval;
				render_bytes(cell, CELL_MAX - 2, rate < 0 ? 0 : rate);
				strcat(cell, "/s");
			} else {
				snprintf(cell, CELL_MAX, "-");
			}
		}
	}
	for (unsigned s = 0; s < count; s++) {
		shown[s].width = strlen(shown[s].title);
		for (size_t r = 0; r < rows && text; r++) {
			size_t n = strlen(text + (r * count + s) * CELL_MAX);
			if (n > shown[s].width)
				shown[s].width = n;
		}
	}
	/* fit the width: first narrow the widest text columns (long paths, values), cutting their
	 * cells, then drop columns from the right; the first column always shows whole */
	size_t total = 0;
	for (unsigned s = 0; s < count; s++)
		total += shown[s].width + (s ? 2 : 0);
	while (width && total > width) {
		unsigned widest = 0;
		for (unsigned s = 1; s < count; s++)
			if (!shown[s].numeric && shown[s].width > TEXT_MIN_WIDTH &&
			    (!widest || shown[s].width > shown[widest].width))
				widest = s;
		if (!widest)
			break;
		size_t cut = total - width;
		if (cut > shown[widest].width - TEXT_MIN_WIDTH)
			cut = shown[widest].width - TEXT_MIN_WIDTH;
		shown[widest].width -= cut;
		total -= cut;
	}
	/* the first column always shows; later ones while they fit */
	unsigned fit = 0;
	size_t used = 0;
	for (; fit < count; fit++) {
		size_t need = used + (fit ? 2 : 0) + shown[fit].width;
		if (fit > 0 && width && need > width)
			break;
		used = need;
	}
	for (unsigned s = 0; s < fit; s++)
		print_cell(out, shown[s].title, shown[s].width, shown[s].numeric, s + 1 == fit);
	fputc('\n', out);
	for (size_t r = 0; r < rows && text; r++) {
		for (unsigned s = 0; s < fit; s++)
			print_cell(out, text + (r * count + s) * CELL_MAX, shown[s].width, shown[s].numeric,
				   s + 1 == fit);
		fputc('\n', out);
	}
	if (fit < count)
		fprintf(out, "(%u more column%s: --json shows every one)\n", count - fit, count - fit == 1 ? "" : "s");
	free(text);
	free(cells);
	free(before);
}

void render_json_string(FILE *out, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	fputc('"', out);
	for (size_t i = 0; i < n;) {
		uint32_t code = 0;
		size_t length = text_utf8_next(u + i, n - i, &code);
		if (length == 0) { /* not UTF-8, which JSON must be: the replacement character */
			fputs("\\ufffd", out);
			i++;
			continue;
		}
		if (code == '"' || code == '\\')
			fprintf(out, "\\%c", (char)code);
		else if (code == '\n')
			fputs("\\n", out);
		else if (text_code_is_control(code)) /* lossless, and inert in a terminal */
			fprintf(out, "\\u%04x", (unsigned)code);
		else
			fwrite(u + i, 1, length, out);
		i += length;
	}
	fputc('"', out);
}

void render_text_line(FILE *out, const char *s)
{
	size_t n = strlen(s);
	char *escaped = malloc(4 * n + 1);
	if (!escaped)
		return;
	text_escape(escaped, 4 * n + 1, s, n);
	fprintf(out, "%s\n", escaped);
	free(escaped);
}

void render_json(FILE *out, const struct ctl_table *tables, unsigned count)
{
	fputc('{', out);
	for (unsigned i = 0; i < count; i++) {
		const struct control_table *t = &tables[i].table;
		fprintf(out, "%s\n", i ? "," : "");
		render_json_string(out, t->name, strlen(t->name));
		fputs(": [", out);
		struct control_cells it;
		control_cells_start(&it, t);
		struct control_value v;
		unsigned column;
		bool first_row = true;
		while (control_cells_next(&it, &v, &column)) {
			if (column == 0) {
				fputs(first_row ? "\n  {" : "},\n  {", out);
				first_row = false;
			} else {
				fputs(", ", out);
			}
			render_json_string(out, t->column[column].name, strlen(t->column[column].name));
			fputs(": ", out);
			if (v.type == CONTROL_NULL) {
				fputs("null", out);
			} else if (v.type == CONTROL_TEXT) {
				render_json_string(out, v.text, v.text_length);
			} else {
				char cell[CELL_MAX];
				render_cell(cell, sizeof cell, &t->column[column], &v, false);
				fputs(cell, out);
			}
		}
		fputs(first_row ? "]" : "}\n]", out);
	}
	fputs("\n}\n", out);
}

void render_prometheus(FILE *out, const struct ctl_table *tables, unsigned count)
{
	for (unsigned i = 0; i < count; i++)
		control_metrics_write(out, &tables[i].table);
}
