/* The control protocol codec (control_msg.h): pure functions over buffers. */
#include "config.h"

#include "control_msg.h"

#include <string.h>

const char *control_type_name(unsigned type)
{
	switch (type) {
	case CONTROL_REQUEST: return "REQUEST";
	case CONTROL_TABLE: return "TABLE";
	case CONTROL_DONE: return "DONE";
	default: return "UNKNOWN";
	}
}

void control_header_encode(uint8_t *out, enum control_type type, uint32_t length)
{
	struct cursor c = cursor_writer(out, CONTROL_HEADER_SIZE);
	cursor_put_u32le(&c, CONTROL_MAGIC);
	cursor_put_u16le(&c, CONTROL_VERSION);
	cursor_put_u16le(&c, (uint16_t)type);
	cursor_put_u32le(&c, length);
}

int control_header_decode(const uint8_t *in, size_t length, size_t max_body,
			  struct control_header *header)
{
	memset(header, 0, sizeof *header);
	if (length < CONTROL_HEADER_SIZE)
		return WH_EWOULDBLOCK;
	struct cursor c = cursor_reader(in, CONTROL_HEADER_SIZE);
	uint32_t magic = cursor_get_u32le(&c);
	header->version = cursor_get_u16le(&c);
	header->type = cursor_get_u16le(&c);
	header->length = cursor_get_u32le(&c);
	if (magic != CONTROL_MAGIC || header->version != CONTROL_VERSION ||
	    strcmp(control_type_name(header->type), "UNKNOWN") == 0 || header->length > max_body)
		return WH_EPROTOCOL;
	return WH_OK;
}

/* A string of at most max bytes, cut at its first NUL. */
static void put_string(struct cursor *c, const char *s, size_t max)
{
	size_t n = s ? strnlen(s, max) : 0;
	cursor_put_u16le(c, (uint16_t)n);
	cursor_put_bytes(c, s, n);
}

/* Reads a string of at most max bytes into out (max + 1 bytes); a longer one or one with a
 * NUL fails the cursor. */
static void get_string(struct cursor *c, char *out, size_t max)
{
	size_t n = cursor_get_u16le(c);
	if (n > max) {
		c->failed = true;
		out[0] = '\0';
		return;
	}
	cursor_get_bytes(c, out, n);
	out[n] = '\0';
	if (strlen(out) != n)
		c->failed = true;
}

/* Writes the header with a placeholder length, to be patched by finish. */
static void begin_message(struct cursor *c, enum control_type type)
{
	if (c->length < CONTROL_HEADER_SIZE) {
		c->failed = true;
		return;
	}
	control_header_encode(c->out, type, 0);
	c->at = CONTROL_HEADER_SIZE;
}

static int finish_message(struct cursor *c, enum control_type type)
{
	if (c->failed)
		return WH_EBUFFER_TOO_SMALL;
	control_header_encode(c->out, type, (uint32_t)(c->at - CONTROL_HEADER_SIZE));
	return (int)c->at;
}

int control_request_encode(uint8_t *out, size_t cap, const struct control_request *request)
{
	if (!out || !request || request->argc < 1 || request->argc > CONTROL_ARGS_MAX)
		return WH_EINVAL;
	for (unsigned i = 0; i < request->argc; i++)
		if (strnlen(request->argv[i], CONTROL_ARG_MAX + 1) > CONTROL_ARG_MAX)
			return WH_EINVAL;
	struct cursor c = cursor_writer(out, cap);
	begin_message(&c, CONTROL_REQUEST);
	cursor_put_u8(&c, (uint8_t)request->argc);
	for (unsigned i = 0; i < request->argc; i++)
		put_string(&c, request->argv[i], CONTROL_ARG_MAX);
	return finish_message(&c, CONTROL_REQUEST);
}

int control_request_decode(const uint8_t *body, size_t length, struct control_request *request)
{
	memset(request, 0, sizeof *request);
	if (!body || length > CONTROL_REQUEST_MAX)
		return WH_EPROTOCOL;
	struct cursor c = cursor_reader(body, length);
	request->argc = cursor_get_u8(&c);
	if (request->argc < 1 || request->argc > CONTROL_ARGS_MAX)
		return WH_EPROTOCOL;
	for (unsigned i = 0; i < request->argc && !c.failed; i++)
		get_string(&c, request->argv[i], CONTROL_ARG_MAX);
	return c.failed || c.at != length ? WH_EPROTOCOL : WH_OK;
}

int control_done_encode(uint8_t *out, size_t cap, int status, const char *message)
{
	if (!out)
		return WH_EINVAL;
	struct cursor c = cursor_writer(out, cap);
	begin_message(&c, CONTROL_DONE);
	cursor_put_u32le(&c, (uint32_t)status);
	put_string(&c, message, CONTROL_TEXT_MAX);
	return finish_message(&c, CONTROL_DONE);
}

int control_done_decode(const uint8_t *body, size_t length, int *status,
			char message[CONTROL_TEXT_MAX + 1])
{
	struct cursor c = cursor_reader(body, length);
	*status = (int32_t)cursor_get_u32le(&c);
	get_string(&c, message, CONTROL_TEXT_MAX);
	return c.failed || c.at != length ? WH_EPROTOCOL : WH_OK;
}

/* ---- tables --------------------------------------------------------------------------- */

static bool value_type_valid(unsigned type)
{
	return type >= CONTROL_UINT && type <= CONTROL_TEXT;
}

static bool role_valid(unsigned role)
{
	role &= ~(unsigned)CONTROL_NULLABLE;
	return role >= CONTROL_LABEL && role <= CONTROL_INFO;
}

static bool unit_valid(unsigned unit)
{
	return unit <= CONTROL_UNIT_SECONDS;
}

void control_table_begin(struct control_writer *w, void *out, size_t cap, const char *name)
{
	memset(w, 0, sizeof *w);
	w->c = cursor_writer(out, cap);
	begin_message(&w->c, CONTROL_TABLE);
	if (!name || strlen(name) > CONTROL_NAME_MAX)
		w->invalid = true;
	put_string(&w->c, name, CONTROL_NAME_MAX);
	/* the column count is patched when the first row starts */
	cursor_put_u16le(&w->c, 0);
}

void control_table_column(struct control_writer *w, const char *name, enum control_value_type type,
			  enum control_role role, enum control_unit unit, const char *help)
{
	if (w->in_rows || w->columns >= CONTROL_COLUMNS_MAX || !name || !name[0] ||
	    strlen(name) > CONTROL_NAME_MAX || (help && strlen(help) > CONTROL_HELP_MAX) ||
	    !value_type_valid(type) || !role_valid(role) || !unit_valid(unit)) {
		w->invalid = true;
		return;
	}
	w->nullable[w->columns] = (role & CONTROL_NULLABLE) != 0;
	w->types[w->columns++] = (uint8_t)type;
	put_string(&w->c, name, CONTROL_NAME_MAX);
	cursor_put_u8(&w->c, (uint8_t)type);
	cursor_put_u8(&w->c, (uint8_t)role);
	cursor_put_u8(&w->c, (uint8_t)unit);
	put_string(&w->c, help, CONTROL_HELP_MAX);
}

/* The columns are all declared: patch their count and leave room for the row count. */
static void start_rows(struct control_writer *w)
{
	if (w->in_rows)
		return;
	w->in_rows = true;
	if (w->columns == 0)
		w->invalid = true;
	if (w->c.failed)
		return;
	/* the column count sits after the header and the name */
	size_t name_length = (size_t)(w->c.out[CONTROL_HEADER_SIZE] | w->c.out[CONTROL_HEADER_SIZE + 1] << 8);
	struct cursor patch = cursor_writer(w->c.out + CONTROL_HEADER_SIZE + 2 + name_length, 2);
	cursor_put_u16le(&patch, (uint16_t)w->columns);
	w->rows_at = w->c.at;
	cursor_put_u32le(&w->c, 0);
}

void control_table_row(struct control_writer *w)
{
	start_rows(w);
	if (w->rows > 0 && w->column != w->columns)
		w->invalid = true; /* the previous row was left short */
	w->column = 0;
	w->rows++;
}

/* The next cell must be of this type, in a row that has room for it. */
static bool cell_ok(struct control_writer *w, uint8_t type)
{
	if (!w->in_rows || w->rows == 0 || w->column >= w->columns || w->types[w->column] != type) {
		w->invalid = true;
		return false;
	}
	if (w->nullable[w->column])
		cursor_put_u8(&w->c, 1);
	w->column++;
	return true;
}

void control_put_uint(struct control_writer *w, uint64_t value)
{
	if (cell_ok(w, CONTROL_UINT))
		cursor_put_u64le(&w->c, value);
}

void control_put_int(struct control_writer *w, int64_t value)
{
	if (cell_ok(w, CONTROL_INT))
		cursor_put_u64le(&w->c, (uint64_t)value);
}

void control_put_float(struct control_writer *w, double value)
{
	uint64_t bits;
	memcpy(&bits, &value, sizeof bits);
	if (cell_ok(w, CONTROL_FLOAT))
		cursor_put_u64le(&w->c, bits);
}

void control_put_text(struct control_writer *w, const char *text)
{
	if (cell_ok(w, CONTROL_TEXT))
		put_string(&w->c, text, CONTROL_TEXT_MAX);
}

void control_put_null(struct control_writer *w, const char *meaning)
{
	if (!w->in_rows || w->rows == 0 || w->column >= w->columns || !w->nullable[w->column]) {
		w->invalid = true;
		return;
	}
	w->column++;
	cursor_put_u8(&w->c, 0);
	put_string(&w->c, meaning, CONTROL_TEXT_MAX);
}

void control_table_column_like(struct control_writer *w, const struct control_column *col)
{
	control_table_column(w, col->name, col->type, col->role | (col->nullable ? CONTROL_NULLABLE : 0),
			     col->unit, col->help);
}

void control_put_value(struct control_writer *w, const struct control_value *v)
{
	char text[CONTROL_TEXT_MAX + 1];
	if (v->type == CONTROL_TEXT || v->type == CONTROL_NULL) {
		size_t n = v->text_length < CONTROL_TEXT_MAX ? v->text_length : CONTROL_TEXT_MAX;
		memcpy(text, v->text, n);
		text[n] = '\0';
	}
	switch (v->type) {
	case CONTROL_UINT: control_put_uint(w, v->u); break;
	case CONTROL_INT: control_put_int(w, v->i); break;
	case CONTROL_FLOAT: control_put_float(w, v->f); break;
	case CONTROL_TEXT: control_put_text(w, text); break;
	case CONTROL_NULL: control_put_null(w, text); break;
	default: w->invalid = true; break;
	}
}

int control_table_end(struct control_writer *w)
{
	start_rows(w);
	if (w->rows > 0 && w->column != w->columns)
		w->invalid = true;
	if (w->invalid)
		return WH_EINVAL;
	if (w->c.failed)
		return WH_EBUFFER_TOO_SMALL;
	struct cursor patch = cursor_writer(w->c.out + w->rows_at, 4);
	cursor_put_u32le(&patch, w->rows);
	return finish_message(&w->c, CONTROL_TABLE);
}

/* A TEXT cell, or a null cell's words. */
static void get_text(struct cursor *c, struct control_value *v)
{
	size_t n = cursor_get_u16le(c);
	if (c->failed || n > CONTROL_TEXT_MAX || c->length - c->at < n) {
		c->failed = true;
		return;
	}
	v->text = (const char *)c->in + c->at;
	v->text_length = n;
	if (memchr(v->text, '\0', n))
		c->failed = true;
	c->at += n;
}

/* Reads one cell of the column; the cursor fails when it is not whole. */
static void get_cell(struct cursor *c, const struct control_column *col, struct control_value *v)
{
	memset(v, 0, sizeof *v);
	uint8_t type = col->type;
	if (col->nullable) {
		uint8_t present = cursor_get_u8(c);
		if (present > 1)
			c->failed = true;
		if (present == 0)
			type = CONTROL_NULL;
	}
	v->type = type;
	switch (type) {
	case CONTROL_UINT: v->u = cursor_get_u64le(c); break;
	case CONTROL_INT: v->i = (int64_t)cursor_get_u64le(c); break;
	case CONTROL_FLOAT: {
		uint64_t bits = cursor_get_u64le(c);
		memcpy(&v->f, &bits, sizeof bits);
		break;
	}
	case CONTROL_TEXT:
	case CONTROL_NULL: get_text(c, v); break;
	default: c->failed = true; break;
	}
}

int control_table_decode(const uint8_t *body, size_t length, struct control_table *table)
{
	memset(table, 0, sizeof *table);
	if (!body || length > CONTROL_BODY_MAX)
		return WH_EPROTOCOL;
	struct cursor c = cursor_reader(body, length);
	get_string(&c, table->name, CONTROL_NAME_MAX);
	table->columns = cursor_get_u16le(&c);
	if (c.failed || table->columns == 0 || table->columns > CONTROL_COLUMNS_MAX)
		return WH_EPROTOCOL;
	for (unsigned i = 0; i < table->columns && !c.failed; i++) {
		struct control_column *col = &table->column[i];
		get_string(&c, col->name, CONTROL_NAME_MAX);
		col->type = cursor_get_u8(&c);
		col->role = cursor_get_u8(&c);
		col->nullable = (col->role & CONTROL_NULLABLE) != 0;
		col->unit = cursor_get_u8(&c);
		get_string(&c, col->help, CONTROL_HELP_MAX);
		if (!col->name[0] || !value_type_valid(col->type) || !role_valid(col->role) ||
		    !unit_valid(col->unit))
			c.failed = true;
		col->role &= (uint8_t)~CONTROL_NULLABLE;
	}
	table->rows = cursor_get_u32le(&c);
	if (c.failed)
		return WH_EPROTOCOL;
	/* every cell is at least 2 bytes: a row count the body cannot hold is refused before
	 * anything walks it */
	if ((uint64_t)table->rows * table->columns > (length - c.at) / 2)
		return WH_EPROTOCOL;
	table->cells = body + c.at;
	table->cells_length = length - c.at;
	struct control_value v;
	for (uint64_t i = 0; i < (uint64_t)table->rows * table->columns && !c.failed; i++)
		get_cell(&c, &table->column[i % table->columns], &v);
	if (c.failed || c.at != length)
		return WH_EPROTOCOL;
	return WH_OK;
}

void control_cells_start(struct control_cells *it, const struct control_table *table)
{
	it->c = cursor_reader(table->cells, table->cells_length);
	it->table = table;
	it->column = 0;
}

bool control_cells_next(struct control_cells *it, struct control_value *value, unsigned *column_out)
{
	if (it->c.failed || it->c.at >= it->c.length)
		return false;
	unsigned column = it->column;
	get_cell(&it->c, &it->table->column[column], value);
	if (it->c.failed)
		return false;
	if (column_out)
		*column_out = column;
	it->column = (column + 1) % it->table->columns;
	return true;
}
