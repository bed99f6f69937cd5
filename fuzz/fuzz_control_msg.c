/* Fuzz target: any bytes are a control message that decodes to an error, or one that
 * re-encodes to exactly the same bytes (requests, tables cell by cell, results). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "control_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_or_abort(const uint8_t *a, int n, const uint8_t *b, size_t size)
{
	if (n < 0 || (size_t)n != size || memcmp(a, b, size) != 0)
		abort();
}

/* Writes the decoded table again through the writer. */
static int reencode_table(const struct control_table *t, uint8_t *out, size_t cap)
{
	struct control_writer w;
	control_table_begin(&w, out, cap, t->name);
	for (unsigned c = 0; c < t->columns; c++)
		control_table_column_like(&w, &t->column[c]);
	struct control_cells it;
	control_cells_start(&it, t);
	struct control_value v;
	unsigned column;
	uint64_t cells = 0;
	while (control_cells_next(&it, &v, &column)) {
		if (column == 0)
			control_table_row(&w);
		cells++;
		control_put_value(&w, &v);
	}
	if (cells != (uint64_t)t->rows * t->columns)
		abort(); /* decode promised every cell reads back */
	return control_table_end(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct control_header h;
	if (control_header_decode(data, size, CONTROL_BODY_MAX, &h) != WH_OK ||
	    size != CONTROL_HEADER_SIZE + h.length)
		return 0;
	const uint8_t *body = data + CONTROL_HEADER_SIZE;
	uint8_t *out = malloc(size + 64);
	if (!out)
		return 0;
	if (h.type == CONTROL_REQUEST) {
		struct control_request req;
		if (control_request_decode(body, h.length, &req) == WH_OK)
			same_or_abort(out, control_request_encode(out, size + 64, &req), data, size);
	} else if (h.type == CONTROL_DONE) {
		int status;
		char message[CONTROL_TEXT_MAX + 1];
		if (control_done_decode(body, h.length, &status, message) == WH_OK)
			same_or_abort(out, control_done_encode(out, size + 64, status, message), data, size);
	} else if (h.type == CONTROL_TABLE) {
		static struct control_table table;
		if (control_table_decode(body, h.length, &table) == WH_OK)
			same_or_abort(out, reencode_table(&table, out, size + 64), data, size);
	}
	free(out);
	return 0;
}
