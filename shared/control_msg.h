/* The control protocol between wormhole-ctl and the broker: requests, tables, results. */
#ifndef WORMHOLE_SHARED_CONTROL_MSG_H
#define WORMHOLE_SHARED_CONTROL_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wormhole/errors.h>

#include "cursor.h"

/*
 * Spoken on the broker's control socket (a SOCK_STREAM Unix socket, separate from the app
 * socket): the tool sends a REQUEST, the broker answers with zero or more TABLEs and one
 * DONE, and the tool may send the next request on the same connection. docs/CONTROL.md is
 * the specification. Every message is a 12-byte header and a body; integers little-endian
 * (both ends share a host):
 *
 *   header: [magic u32 = CONTROL_MAGIC][version u16][type u16][body length u32]
 *
 * Types come in ranges, as tmux's protocol does: 0x0001..0x00ff from the tool, 0x0100..0x01ff
 * from the broker; an unknown type is a protocol error.
 *
 *   REQUEST: [argc u8 (1..CONTROL_ARGS_MAX)] argc x string        argv[0] is the command
 *   TABLE:   [name string][columns u16] columns x column [rows u32] rows x columns cells
 *     column: [name string][type u8][role u8][unit u8][help string]
 *     cell:   by its column's type: UINT u64, INT i64, FLOAT the bits of a double, TEXT string;
 *             in a NULLABLE column (role | 0x80) first [present u8]: 1 and the value, or 0
 *             and a string, the words that say what is meant ("none", "the broker's")
 *   DONE:    [status i32: WH_OK or a WH_E* code][message string]
 *   string:  [length u16][bytes, no NUL]
 *
 * Codec only: no I/O, no allocation. A table is written into a caller's buffer (the caller
 * retries with a larger one on WH_EBUFFER_TOO_SMALL) and read in place.
 */

#define CONTROL_MAGIC 0x4c544357u /* "WCTL" */
#define CONTROL_VERSION 2u /* 2: nullable columns */
#define CONTROL_HEADER_SIZE 12u
#define CONTROL_BODY_MAX (64u << 20)    /* the largest body either side accepts */
#define CONTROL_REQUEST_MAX 8192u       /* the largest REQUEST body the broker reads */
#define CONTROL_ARGS_MAX 16u
#define CONTROL_ARG_MAX 255u            /* bytes of one request argument */
#define CONTROL_NAME_MAX 63u            /* bytes of a table or column name */
#define CONTROL_HELP_MAX 255u
#define CONTROL_TEXT_MAX 4095u          /* bytes of a TEXT cell or a DONE message */
#define CONTROL_COLUMNS_MAX 96u

enum control_type {
	/* tool -> broker */
	CONTROL_REQUEST = 0x0001,
	/* broker -> tool */
	CONTROL_TABLE = 0x0101,
	CONTROL_DONE = 0x0102,
};

/* How a column's cells are encoded. */
enum control_value_type {
	CONTROL_UINT = 1,  /* u64 */
	CONTROL_INT = 2,   /* i64 */
	CONTROL_FLOAT = 3, /* double */
	CONTROL_TEXT = 4,  /* string */
	CONTROL_NULL = 5,  /* decoded only: a cell with no value (its text: what that means) */
};

/* What a column means, for the tool's renderers: LABEL columns name the row (and become
 * Prometheus labels), COUNTER only grows, GAUGE goes up and down, INFO is neither (shown,
 * never exported as a metric). */
enum control_role {
	CONTROL_LABEL = 1,
	CONTROL_COUNTER = 2,
	CONTROL_GAUGE = 3,
	CONTROL_INFO = 4,
	/* or'd in: a cell may hold no value (JSON null) rather than a placeholder (pid 0, uid -1)
	 * that a script would take for a value */
	CONTROL_NULLABLE = 0x80,
};

/* Units, for human-readable tables (KiB, MB/s, ms) and metric names (_bytes, _seconds). */
enum control_unit {
	CONTROL_UNIT_NONE = 0,
	CONTROL_UNIT_BYTES = 1,
	CONTROL_UNIT_SECONDS = 2,
};

struct control_header {
	uint16_t version, type;
	uint32_t length; /* of the body */
};

/* Encodes a header (CONTROL_HEADER_SIZE bytes). */
void control_header_encode(uint8_t *out, enum control_type type, uint32_t length);
/* WH_OK (a whole header is there: *header filled), WH_EWOULDBLOCK (fewer than
 * CONTROL_HEADER_SIZE bytes), or WH_EPROTOCOL (wrong magic or version, unknown type, body
 * longer than max_body). */
int control_header_decode(const uint8_t *in, size_t length, size_t max_body,
			  struct control_header *header);

struct control_request {
	unsigned argc;
	char argv[CONTROL_ARGS_MAX][CONTROL_ARG_MAX + 1];
};

/* A whole REQUEST message (header included): bytes written, or WH_EINVAL (no or too many
 * arguments, one too long or with NUL) / WH_EBUFFER_TOO_SMALL. */
int control_request_encode(uint8_t *out, size_t cap, const struct control_request *request);
/* A REQUEST body: WH_OK or WH_EPROTOCOL. */
int control_request_decode(const uint8_t *body, size_t length, struct control_request *request);

/* A whole DONE message: bytes written, or WH_EBUFFER_TOO_SMALL (a message is cut at
 * CONTROL_TEXT_MAX bytes and at its first NUL). */
int control_done_encode(uint8_t *out, size_t cap, int status, const char *message);
/* A DONE body: WH_OK or WH_EPROTOCOL. message gets at most CONTROL_TEXT_MAX bytes + NUL. */
int control_done_decode(const uint8_t *body, size_t length, int *status,
			char message[CONTROL_TEXT_MAX + 1]);

/* ---- tables --------------------------------------------------------------------------- */

struct control_column {
	char name[CONTROL_NAME_MAX + 1];
	uint8_t type, role, unit; /* role without CONTROL_NULLABLE */
	bool nullable;
	char help[CONTROL_HELP_MAX + 1];
};

/*
 * Writes one TABLE message: begin, every column, then for each row control_table_row and one
 * value per column in order, then end. Mistakes (a value of the wrong type, a row left short,
 * a name too long) and a full buffer stick until end, which reports them.
 */
struct control_writer {
	struct cursor c;
	size_t rows_at;   /* where the row count goes, once the columns are written */
	uint32_t rows;
	unsigned columns, column; /* columns declared; the next cell's column */
	bool in_rows, invalid;
	uint8_t types[CONTROL_COLUMNS_MAX];
	bool nullable[CONTROL_COLUMNS_MAX];
};

void control_table_begin(struct control_writer *w, void *out, size_t cap, const char *name);
void control_table_column(struct control_writer *w, const char *name, enum control_value_type type,
			  enum control_role role, enum control_unit unit, const char *help);
void control_table_row(struct control_writer *w);
void control_put_uint(struct control_writer *w, uint64_t value);
void control_put_int(struct control_writer *w, int64_t value);
void control_put_float(struct control_writer *w, double value);
/* NULL is written as "". Text longer than CONTROL_TEXT_MAX is cut there. */
void control_put_text(struct control_writer *w, const char *text);
struct control_value;
/* No value, in a NULLABLE column: `meaning` says in words what that is ("none"). */
void control_put_null(struct control_writer *w, const char *meaning);
/* A decoded column and cell, written again as they were (tools that reorder or select rows). */
void control_table_column_like(struct control_writer *w, const struct control_column *column);
void control_put_value(struct control_writer *w, const struct control_value *value);
/* Bytes of the whole message, or WH_EBUFFER_TOO_SMALL, or WH_EINVAL (misuse, as above). */
int control_table_end(struct control_writer *w);

/* A decoded TABLE: its columns, and its cells left in the body (already checked whole). */
struct control_table {
	char name[CONTROL_NAME_MAX + 1];
	unsigned columns;
	struct control_column column[CONTROL_COLUMNS_MAX];
	uint32_t rows;
	const uint8_t *cells;
	size_t cells_length;
};

/* A TABLE body: WH_OK, or WH_EPROTOCOL for anything malformed (every cell is checked, so
 * reading them afterwards cannot fail). The table points into body. */
int control_table_decode(const uint8_t *body, size_t length, struct control_table *table);

struct control_value {
	uint8_t type;
	uint64_t u;
	int64_t i;
	double f;
	const char *text; /* TEXT: into the body, not NUL-terminated */
	size_t text_length;
};

/* Reads a decoded table's cells in order: row by row, column by column. */
struct control_cells {
	struct cursor c;
	const struct control_table *table;
	unsigned column;
};

void control_cells_start(struct control_cells *it, const struct control_table *table);
/* The next cell (false after the last). column_out: the cell's column. */
bool control_cells_next(struct control_cells *it, struct control_value *value, unsigned *column_out);

const char *control_type_name(unsigned type);

#endif
