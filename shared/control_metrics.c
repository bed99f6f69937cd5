/* Control tables as Prometheus text (control_metrics.h). */
#include "config.h"

#include "control_metrics.h"
#include "text_escape.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CELL_MAX 160

/* A cell as the exposition format spells a label value or a sample value. */
static void raw_cell(char *out, size_t length, const struct control_value *v)
{
	if (v->type == CONTROL_TEXT)
		snprintf(out, length, "%.*s", (int)v->text_length, v->text);
	else if (v->type == CONTROL_NULL) /* a label with no value: empty, as Prometheus has it */
		snprintf(out, length, "%s", "");
	else if (v->type == CONTROL_UINT)
		snprintf(out, length, "%" PRIu64, v->u);
	else if (v->type == CONTROL_INT)
		snprintf(out, length, "%" PRId64, v->i);
	else if (isnan(v->f))
		snprintf(out, length, "NaN");
	else if (isinf(v->f))
		snprintf(out, length, v->f > 0 ? "+Inf" : "-Inf");
	else
		snprintf(out, length, "%.9g", v->f);
}

struct control_value *control_table_cells(const struct control_table *t)
{
	size_t count = (size_t)t->rows * t->columns;
	struct control_value *cells = count ? calloc(count, sizeof *cells) : NULL;
	if (!cells)
		return NULL;
	struct control_cells it;
	control_cells_start(&it, t);
	for (size_t i = 0; i < count && control_cells_next(&it, &cells[i], NULL); i++)
		;
	return cells;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/*
 * A label value comes from outside (a peer's or an app's name): the exposition format's own
 * escapes (\\, \" and \n) leave every other control byte (ESC drives the terminal of whoever
 * runs `wormhole-ctl metrics`) and bytes that are not UTF-8 (a scraper rejects the whole
 * page) as they are. So the value is the text as the broker's log shows it (text_escape: a
 * backslash doubled, \n \r \t, \xNN for every other control byte and every byte that is not
 * UTF-8, at most LABEL_MAX bytes, never an escape cut in two), then put in quotes with the
 * format's escapes: a scraper reads printable UTF-8 that says unambiguously what was there.
 */
#define LABEL_MAX (4 * CELL_MAX)

static void prometheus_label_value(FILE *out, const char *s, size_t n)
{
	char shown[LABEL_MAX + 1];
	text_escape(shown, sizeof shown, s, n);
	fputc('"', out);
	for (const char *p = shown; *p; p++) {
		if (*p == '\\' || *p == '"')
			fputc('\\', out);
		fputc(*p, out);
	}
	fputc('"', out);
}

static int column_of(const struct control_table *t, const char *name)
{
	for (unsigned c = 0; c < t->columns; c++)
		if (strcmp(t->column[c].name, name) == 0)
			return (int)c;
	return -1;
}

/* From the status table, the two families every exporter has: what is running (its labels
 * bounded: one version and commit per process) and since when (restarts show as jumps). */
static void write_build_info(FILE *out, const struct control_table *t, const struct control_value *row)
{
	int version = column_of(t, "version"), commit = column_of(t, "commit"), start = column_of(t, "start_time");
	if (version < 0 || commit < 0 || row[version].type != CONTROL_TEXT || row[commit].type != CONTROL_TEXT)
		return;
	fputs("# HELP wormhole_build_info the broker's version and the commit it was built from (always 1)\n"
	      "# TYPE wormhole_build_info gauge\nwormhole_build_info{version=", out);
	prometheus_label_value(out, row[version].text, row[version].text_length);
	fputs(",commit=", out);
	prometheus_label_value(out, row[commit].text, row[commit].text_length);
	fputs("} 1\n", out);
	if (start < 0 || row[start].type != CONTROL_UINT)
		return;
	fprintf(out, "# HELP wormhole_start_time_seconds when the broker started, seconds since the Unix epoch\n"
		     "# TYPE wormhole_start_time_seconds gauge\nwormhole_start_time_seconds %" PRIu64 "\n", row[start].u);
}

void control_metrics_write(FILE *out, const struct control_table *t)
{
	struct control_value *cells = control_table_cells(t);
	if (strcmp(t->name, "status") == 0 && t->rows == 1 && cells)
		write_build_info(out, t, cells);
	for (unsigned c = 0; c < t->columns; c++) {
		const struct control_column *col = &t->column[c];
		if (col->role != CONTROL_COUNTER && col->role != CONTROL_GAUGE)
			continue;
		char name[256];
		snprintf(name, sizeof name, "wormhole_%s_%s%s", t->name, col->name,
			 col->unit == CONTROL_UNIT_BYTES && !strstr(col->name, "bytes") ? "_bytes"
			 : col->unit == CONTROL_UNIT_SECONDS && !ends_with(col->name, "seconds") ? "_seconds" : "");
		for (char *p = name; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
				*p = '_';
		if (col->role == CONTROL_COUNTER && !ends_with(name, "_total"))
			strcat(name, "_total");
		fprintf(out, "# HELP %s ", name);
		for (const char *h = col->help; *h; h++)
			fputs(*h == '\\' ? "\\\\" : *h == '\n' ? "\\n" : (char[]){ *h, 0 }, out);
		fprintf(out, "\n# TYPE %s %s\n", name, col->role == CONTROL_COUNTER ? "counter" : "gauge");
		for (size_t r = 0; r < t->rows && cells; r++) {
			const struct control_value *row = &cells[r * t->columns];
			if (row[c].type == CONTROL_NULL)
				continue; /* no value: no sample */
			fputs(name, out);
			bool any = false;
			for (unsigned l = 0; l < t->columns; l++) {
				if (t->column[l].role != CONTROL_LABEL)
					continue;
				fprintf(out, "%s%s=", any ? "," : "{", t->column[l].name);
				if (row[l].type == CONTROL_TEXT) { /* all of it: NULs, bytes past CELL_MAX */
					prometheus_label_value(out, row[l].text, row[l].text_length);
				} else {
					char cell[CELL_MAX];
					raw_cell(cell, sizeof cell, &row[l]);
					prometheus_label_value(out, cell, strlen(cell));
				}
				any = true;
			}
			char value[CELL_MAX];
			raw_cell(value, sizeof value, &row[c]);
			fprintf(out, "%s %s\n", any ? "}" : "", value);
		}
	}
	free(cells);
}
