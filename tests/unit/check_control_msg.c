/* Unit tests of the control protocol codec (shared/control_msg.h): round trips, the writer's
 * mistakes and a full buffer, every malformed input refused, the committed fuzz seeds valid. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control_msg.h"

START_TEST(test_request_round_trip)
{
	struct control_request req = { .argc = 3 };
	strcpy(req.argv[0], "streams");
	strcpy(req.argv[1], "--peer");
	strcpy(req.argv[2], "a");
	uint8_t out[512];
	int n = control_request_encode(out, sizeof out, &req);
	ck_assert_int_eq(n, CONTROL_HEADER_SIZE + 1 + 2 + 7 + 2 + 6 + 2 + 1);
	struct control_header h;
	ck_assert_int_eq(control_header_decode(out, (size_t)n, CONTROL_REQUEST_MAX, &h), WH_OK);
	ck_assert_uint_eq(h.type, CONTROL_REQUEST);
	ck_assert_uint_eq(h.length, (unsigned)n - CONTROL_HEADER_SIZE);
	struct control_request back;
	ck_assert_int_eq(control_request_decode(out + CONTROL_HEADER_SIZE, h.length, &back), WH_OK);
	ck_assert_uint_eq(back.argc, 3);
	ck_assert_str_eq(back.argv[0], "streams");
	ck_assert_str_eq(back.argv[2], "a");
	/* a header alone is not enough to decode; fewer bytes than a header wait for more */
	ck_assert_int_eq(control_header_decode(out, CONTROL_HEADER_SIZE - 1, CONTROL_REQUEST_MAX, &h), WH_EWOULDBLOCK);
	/* truncated, or with a byte more: refused */
	ck_assert_int_eq(control_request_decode(out + CONTROL_HEADER_SIZE, h.length - 1, &back), WH_EPROTOCOL);
	out[n] = 0;
	ck_assert_int_eq(control_request_decode(out + CONTROL_HEADER_SIZE, h.length + 1, &back), WH_EPROTOCOL);
	/* the encoder refuses what the decoder would */
	req.argc = 0;
	ck_assert_int_eq(control_request_encode(out, sizeof out, &req), WH_EINVAL);
	req.argc = CONTROL_ARGS_MAX + 1;
	ck_assert_int_eq(control_request_encode(out, sizeof out, &req), WH_EINVAL);
	req.argc = 1;
	ck_assert_int_eq(control_request_encode(out, 8, &req), WH_EBUFFER_TOO_SMALL);
}
END_TEST

START_TEST(test_header_refusals)
{
	uint8_t out[CONTROL_HEADER_SIZE];
	struct control_header h;
	control_header_encode(out, CONTROL_TABLE, 100);
	ck_assert_int_eq(control_header_decode(out, sizeof out, 100, &h), WH_OK);
	ck_assert_int_eq(control_header_decode(out, sizeof out, 99, &h), WH_EPROTOCOL); /* too long */
	out[0] ^= 1; /* magic */
	ck_assert_int_eq(control_header_decode(out, sizeof out, 100, &h), WH_EPROTOCOL);
	control_header_encode(out, CONTROL_TABLE, 1);
	out[4] = 3; /* version */
	ck_assert_int_eq(control_header_decode(out, sizeof out, 100, &h), WH_EPROTOCOL);
	control_header_encode(out, (enum control_type)0x0103, 1); /* a type in no range we know */
	ck_assert_int_eq(control_header_decode(out, sizeof out, 100, &h), WH_EPROTOCOL);
	ck_assert_str_eq(control_type_name(0x0103), "UNKNOWN");
}
END_TEST

START_TEST(test_done_round_trip)
{
	uint8_t out[CONTROL_HEADER_SIZE + 6 + CONTROL_TEXT_MAX];
	int n = control_done_encode(out, sizeof out, WH_EUNKNOWN_PEER, "no peer named 'x'");
	ck_assert_int_gt(n, 0);
	int status;
	char message[CONTROL_TEXT_MAX + 1];
	ck_assert_int_eq(control_done_decode(out + CONTROL_HEADER_SIZE, (size_t)n - CONTROL_HEADER_SIZE,
					     &status, message), WH_OK);
	ck_assert_int_eq(status, WH_EUNKNOWN_PEER);
	ck_assert_str_eq(message, "no peer named 'x'");
	/* a long message is cut at CONTROL_TEXT_MAX */
	static char longer[CONTROL_TEXT_MAX + 100];
	memset(longer, 'm', sizeof longer - 1);
	n = control_done_encode(out, sizeof out, WH_OK, longer);
	ck_assert_int_eq(n, (int)sizeof out);
	ck_assert_int_eq(control_done_decode(out + CONTROL_HEADER_SIZE, (size_t)n - CONTROL_HEADER_SIZE,
					     &status, message), WH_OK);
	ck_assert_uint_eq(strlen(message), CONTROL_TEXT_MAX);
}
END_TEST

/* A nullable column: cells with a value, and cells with none but the words for it; a null in
 * a column that is not nullable is a mistake; a present byte other than 0 or 1 is refused. */
START_TEST(test_nullable_cells)
{
	static uint8_t out[1024];
	struct control_writer w;
	control_table_begin(&w, out, sizeof out, "streams");
	control_table_column(&w, "pid", CONTROL_INT, CONTROL_INFO | CONTROL_NULLABLE, CONTROL_UNIT_NONE, "");
	control_table_column(&w, "id", CONTROL_UINT, CONTROL_LABEL, CONTROL_UNIT_NONE, "");
	control_table_row(&w);
	control_put_int(&w, 42);
	control_put_uint(&w, 1);
	control_table_row(&w);
	control_put_null(&w, "none");
	control_put_uint(&w, 2);
	int n = control_table_end(&w);
	ck_assert_int_gt(n, 0);
	static struct control_table t;
	ck_assert_int_eq(control_table_decode(out + CONTROL_HEADER_SIZE, (size_t)n - CONTROL_HEADER_SIZE, &t), WH_OK);
	ck_assert(t.column[0].nullable);
	ck_assert_uint_eq(t.column[0].role, CONTROL_INFO);
	ck_assert(!t.column[1].nullable);
	struct control_cells it;
	control_cells_start(&it, &t);
	struct control_value v;
	ck_assert(control_cells_next(&it, &v, NULL) && v.type == CONTROL_INT && v.i == 42);
	ck_assert(control_cells_next(&it, &v, NULL) && v.type == CONTROL_UINT);
	ck_assert(control_cells_next(&it, &v, NULL) && v.type == CONTROL_NULL);
	ck_assert(v.text_length == 4 && memcmp(v.text, "none", 4) == 0);
	/* re-encoded through control_put_value: the same bytes */
	static uint8_t again[1024];
	control_table_begin(&w, again, sizeof again, t.name);
	for (unsigned c = 0; c < t.columns; c++)
		control_table_column_like(&w, &t.column[c]);
	control_cells_start(&it, &t);
	unsigned column;
	while (control_cells_next(&it, &v, &column)) {
		if (column == 0)
			control_table_row(&w);
		control_put_value(&w, &v);
	}
	ck_assert_int_eq(control_table_end(&w), n);
	ck_assert(memcmp(out, again, (size_t)n) == 0);
	/* null where no null may be */
	control_table_begin(&w, again, sizeof again, "x");
	control_table_column(&w, "a", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	control_table_row(&w);
	control_put_null(&w, "none");
	ck_assert_int_eq(control_table_end(&w), WH_EINVAL);
	/* a present byte of 2 */
	size_t first_cell = (size_t)(t.cells - (out + CONTROL_HEADER_SIZE)) + CONTROL_HEADER_SIZE;
	out[first_cell] = 2;
	ck_assert_int_eq(control_table_decode(out + CONTROL_HEADER_SIZE, (size_t)n - CONTROL_HEADER_SIZE, &t), WH_EPROTOCOL);
}
END_TEST

/* A table of every value type, written and read back cell by cell. */
START_TEST(test_table_round_trip)
{
	static uint8_t out[4096];
	struct control_writer w;
	control_table_begin(&w, out, sizeof out, "conns");
	control_table_column(&w, "conn", CONTROL_UINT, CONTROL_LABEL, CONTROL_UNIT_NONE, "id");
	control_table_column(&w, "peer", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "name");
	control_table_column(&w, "credit", CONTROL_INT, CONTROL_GAUGE, CONTROL_UNIT_BYTES, "");
	control_table_column(&w, "rtt", CONTROL_FLOAT, CONTROL_GAUGE, CONTROL_UNIT_SECONDS, "round trip");
	for (int r = 0; r < 3; r++) {
		control_table_row(&w);
		control_put_uint(&w, 10u + (unsigned)r);
		control_put_text(&w, r == 1 ? "" : "peer");
		control_put_int(&w, -1000 * r);
		control_put_float(&w, 0.25 * r);
	}
	int n = control_table_end(&w);
	ck_assert_int_gt(n, 0);
	struct control_header h;
	ck_assert_int_eq(control_header_decode(out, (size_t)n, CONTROL_BODY_MAX, &h), WH_OK);
	ck_assert_uint_eq(h.type, CONTROL_TABLE);
	static struct control_table t;
	ck_assert_int_eq(control_table_decode(out + CONTROL_HEADER_SIZE, h.length, &t), WH_OK);
	ck_assert_str_eq(t.name, "conns");
	ck_assert_uint_eq(t.columns, 4);
	ck_assert_uint_eq(t.rows, 3);
	ck_assert_str_eq(t.column[3].name, "rtt");
	ck_assert_str_eq(t.column[3].help, "round trip");
	ck_assert_uint_eq(t.column[3].unit, CONTROL_UNIT_SECONDS);
	ck_assert_uint_eq(t.column[1].role, CONTROL_LABEL);
	struct control_cells it;
	control_cells_start(&it, &t);
	struct control_value v;
	unsigned column, count = 0;
	while (control_cells_next(&it, &v, &column)) {
		unsigned row = count / 4;
		ck_assert_uint_eq(column, count % 4);
		switch (column) {
		case 0: ck_assert(v.u == 10u + row); break;
		case 1: ck_assert_uint_eq(v.text_length, row == 1 ? 0 : 4); break;
		case 2: ck_assert(v.i == -1000 * (int64_t)row); break;
		case 3: ck_assert(fabs(v.f - 0.25 * row) < 1e-12); break;
		}
		count++;
	}
	ck_assert_uint_eq(count, 12);
	/* a table with no rows is fine */
	control_table_begin(&w, out, sizeof out, "empty");
	control_table_column(&w, "x", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, NULL);
	n = control_table_end(&w);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(control_table_decode(out + CONTROL_HEADER_SIZE, (size_t)n - CONTROL_HEADER_SIZE, &t), WH_OK);
	ck_assert_uint_eq(t.rows, 0);
}
END_TEST

/* The writer's mistakes are WH_EINVAL at the end; a full buffer WH_EBUFFER_TOO_SMALL. */
START_TEST(test_writer_mistakes)
{
	static uint8_t out[4096];
	struct control_writer w;
	/* a value of the wrong type */
	control_table_begin(&w, out, sizeof out, "t");
	control_table_column(&w, "a", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	control_table_row(&w);
	control_put_text(&w, "x");
	ck_assert_int_eq(control_table_end(&w), WH_EINVAL);
	/* a row left short, then another row */
	control_table_begin(&w, out, sizeof out, "t");
	control_table_column(&w, "a", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	control_table_column(&w, "b", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	control_table_row(&w);
	control_put_uint(&w, 1);
	control_table_row(&w);
	control_put_uint(&w, 1);
	control_put_uint(&w, 2);
	ck_assert_int_eq(control_table_end(&w), WH_EINVAL);
	/* the last row short */
	control_table_begin(&w, out, sizeof out, "t");
	control_table_column(&w, "a", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	control_table_column(&w, "b", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	control_table_row(&w);
	control_put_uint(&w, 1);
	ck_assert_int_eq(control_table_end(&w), WH_EINVAL);
	/* a column after the rows began; a value before any row; no columns */
	control_table_begin(&w, out, sizeof out, "t");
	control_table_column(&w, "a", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	control_table_row(&w);
	control_put_uint(&w, 1);
	control_table_column(&w, "late", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	ck_assert_int_eq(control_table_end(&w), WH_EINVAL);
	control_table_begin(&w, out, sizeof out, "t");
	control_table_column(&w, "a", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	control_put_uint(&w, 1);
	ck_assert_int_eq(control_table_end(&w), WH_EINVAL);
	control_table_begin(&w, out, sizeof out, "t");
	ck_assert_int_eq(control_table_end(&w), WH_EINVAL);
	/* a bad column: empty name, unknown type */
	control_table_begin(&w, out, sizeof out, "t");
	control_table_column(&w, "", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	ck_assert_int_eq(control_table_end(&w), WH_EINVAL);
	control_table_begin(&w, out, sizeof out, "t");
	control_table_column(&w, "a", (enum control_value_type)9, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	ck_assert_int_eq(control_table_end(&w), WH_EINVAL);
	/* full: nothing is written past the end */
	uint8_t small[64];
	memset(small, 0xee, sizeof small);
	control_table_begin(&w, small, 40, "t");
	control_table_column(&w, "a", CONTROL_UINT, CONTROL_GAUGE, CONTROL_UNIT_NONE, "");
	for (int r = 0; r < 10; r++) {
		control_table_row(&w);
		control_put_uint(&w, 1);
	}
	ck_assert_int_eq(control_table_end(&w), WH_EBUFFER_TOO_SMALL);
	for (size_t i = 40; i < sizeof small; i++)
		ck_assert_uint_eq(small[i], 0xee);
}
END_TEST

/* Every cut of a good table, and bytes changed in its structure, are refused, never read
 * past. */
START_TEST(test_table_decode_refusals)
{
	static uint8_t out[1024];
	struct control_writer w;
	control_table_begin(&w, out, sizeof out, "t");
	control_table_column(&w, "a", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "help");
	control_table_column(&w, "b", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_BYTES, "");
	control_table_row(&w);
	control_put_text(&w, "hello");
	control_put_uint(&w, 42);
	int n = control_table_end(&w);
	ck_assert_int_gt(n, 0);
	const uint8_t *body = out + CONTROL_HEADER_SIZE;
	size_t length = (size_t)n - CONTROL_HEADER_SIZE;
	static struct control_table t;
	ck_assert_int_eq(control_table_decode(body, length, &t), WH_OK);
	for (size_t cut = 0; cut < length; cut++) {
		uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any read past it */
		memcpy(copy, body, cut);
		ck_assert_int_eq(control_table_decode(copy, cut, &t), WH_EPROTOCOL);
		free(copy);
	}
	/* a row count the body cannot hold */
	static uint8_t bad[1024];
	memcpy(bad, body, length);
	size_t rows_at = length - (2 + 5 + 8) - 4;
	bad[rows_at + 3] = 0x7f;
	ck_assert_int_eq(control_table_decode(bad, length, &t), WH_EPROTOCOL);
	/* a NUL inside a text cell */
	memcpy(bad, body, length);
	bad[length - 8 - 3] = '\0';
	ck_assert_int_eq(control_table_decode(bad, length, &t), WH_EPROTOCOL);
	/* an unknown role */
	memcpy(bad, body, length);
	bad[2 + 1 + 2 + 2 + 1 + 1] = 9; /* name "t", columns, column "a": type, then role */
	ck_assert_int_eq(control_table_decode(bad, length, &t), WH_EPROTOCOL);
}
END_TEST

/* The committed fuzz seeds are whole, valid messages (so the fuzzer starts from the
 * interesting side of the decoder). */
START_TEST(test_fuzz_seeds_decode)
{
	DIR *dir = opendir(TOP_SRCDIR "/fuzz/corpus/control_msg");
	ck_assert_ptr_nonnull(dir);
	unsigned files = 0;
	for (struct dirent *e; (e = readdir(dir)) != NULL;) {
		if (e->d_name[0] == '.')
			continue;
		char path[1024];
		snprintf(path, sizeof path, "%s/fuzz/corpus/control_msg/%s", TOP_SRCDIR, e->d_name);
		FILE *f = fopen(path, "rb");
		ck_assert_ptr_nonnull(f);
		static uint8_t buf[1 << 16];
		size_t n = fread(buf, 1, sizeof buf, f);
		fclose(f);
		struct control_header h;
		ck_assert_int_eq(control_header_decode(buf, n, CONTROL_BODY_MAX, &h), WH_OK);
		ck_assert_uint_eq(n, CONTROL_HEADER_SIZE + h.length);
		static struct control_table t;
		struct control_request req;
		int status;
		char message[CONTROL_TEXT_MAX + 1];
		int rc = h.type == CONTROL_TABLE ? control_table_decode(buf + CONTROL_HEADER_SIZE, h.length, &t)
		       : h.type == CONTROL_REQUEST ? control_request_decode(buf + CONTROL_HEADER_SIZE, h.length, &req)
		       : control_done_decode(buf + CONTROL_HEADER_SIZE, h.length, &status, message);
		ck_assert_msg(rc == WH_OK, "seed %s does not decode", e->d_name);
		files++;
	}
	closedir(dir);
	ck_assert_uint_ge(files, 3);
}
END_TEST

static Suite *control_msg_suite(void)
{
	Suite *s = suite_create("control_msg");
	TCase *tc = tcase_create("codec");
	tcase_add_test(tc, test_request_round_trip);
	tcase_add_test(tc, test_header_refusals);
	tcase_add_test(tc, test_done_round_trip);
	tcase_add_test(tc, test_table_round_trip);
	tcase_add_test(tc, test_nullable_cells);
	tcase_add_test(tc, test_writer_mistakes);
	tcase_add_test(tc, test_table_decode_refusals);
	tcase_add_test(tc, test_fuzz_seeds_decode);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(control_msg_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
