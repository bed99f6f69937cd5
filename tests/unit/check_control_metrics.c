/* Unit tests of the Prometheus rendering of control tables (shared/control_metrics.c): label
 * values from outside reach a scraper, and the terminal of whoever runs `wormhole-ctl
 * metrics`, as printable UTF-8. */
#include "config.h"

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wormhole/errors.h>

#include "control_metrics.h"
#include "text_escape.h"

/* The metrics text of a table with one TEXT label column and a counter, a row per name. */
static char *render(const char *const *names, unsigned count)
{
	static uint8_t message[65536];
	struct control_writer w;
	control_table_begin(&w, message, sizeof message, "peers");
	control_table_column(&w, "peer", CONTROL_TEXT, CONTROL_LABEL, CONTROL_UNIT_NONE, "name");
	control_table_column(&w, "opens", CONTROL_UINT, CONTROL_COUNTER, CONTROL_UNIT_NONE, "opens");
	for (unsigned i = 0; i < count; i++) {
		control_table_row(&w);
		control_put_text(&w, names[i]);
		control_put_uint(&w, i);
	}
	int n = control_table_end(&w);
	ck_assert_int_gt(n, 0);
	static struct control_table t;
	ck_assert_int_eq(control_table_decode(message + CONTROL_HEADER_SIZE, (size_t)n - CONTROL_HEADER_SIZE, &t),
			 WH_OK);
	char *text = NULL;
	size_t length = 0;
	FILE *out = open_memstream(&text, &length);
	ck_assert_ptr_nonnull(out);
	control_metrics_write(out, &t);
	ck_assert_int_eq(fclose(out), 0);
	return text;
}

/* Every byte printable UTF-8, line feeds only between lines. */
static void assert_printable(const char *text)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t n = strlen(text);
	for (size_t i = 0; i < n;) {
		uint32_t code;
		size_t length = text_utf8_next(s + i, n - i, &code);
		ck_assert_msg(length > 0, "not UTF-8 at byte %zu: %s", i, text);
		ck_assert_msg(code == '\n' || !text_code_is_control(code), "control U+%04X at byte %zu: %s",
			      (unsigned)code, i, text);
		i += length;
	}
}

START_TEST(test_label_values_escape_every_control_and_stray_byte)
{
	const char *names[] = {
		"a\x1b[31mb\x07",     /* ESC and BEL: a terminal acts on them */
		"\xff\xfe",            /* not UTF-8: a scraper refuses the page */
		"q\"\\\n",             /* the format's own escapes, as the log shows them */
		("c1\xc2\x9b" "2J"),   /* a C1 CSI, as UTF-8 (\x9b2 would be one escape) */
		"bidi\xe2\x80\xae",    /* RIGHT-TO-LEFT OVERRIDE */
		"caf\xc3\xa9",         /* plain UTF-8 stays as it is */
		"cr\rtab\tdel\x7f",
	};
	char *text = render(names, sizeof names / sizeof *names);
	assert_printable(text);
	const char *expected[] = {
		"wormhole_peers_opens_total{peer=\"a\\\\x1b[31mb\\\\x07\"} 0\n",
		"wormhole_peers_opens_total{peer=\"\\\\xff\\\\xfe\"} 1\n",
		"wormhole_peers_opens_total{peer=\"q\\\"\\\\\\\\\\\\n\"} 2\n",
		"wormhole_peers_opens_total{peer=\"c1\\\\xc2\\\\x9b2J\"} 3\n",
		"wormhole_peers_opens_total{peer=\"bidi\\\\xe2\\\\x80\\\\xae\"} 4\n",
		"wormhole_peers_opens_total{peer=\"caf\xc3\xa9\"} 5\n",
		"wormhole_peers_opens_total{peer=\"cr\\\\rtab\\\\tdel\\\\x7f\"} 6\n",
	};
	for (size_t i = 0; i < sizeof expected / sizeof *expected; i++)
		ck_assert_msg(strstr(text, expected[i]), "missing %s in:\n%s", expected[i], text);
	free(text);
}
END_TEST

/* A long name is cut whole escapes at a time, never inside one, and the page stays valid. */
START_TEST(test_long_label_values_are_cut_cleanly)
{
	static char name[4001];
	for (size_t i = 0; i < sizeof name - 1; i++)
		name[i] = i % 2 ? '\x1b' : '\xc3'; /* stray lead bytes and ESCs: all escaped */
	const char *names[] = { name };
	char *text = render(names, 1);
	assert_printable(text);
	const char *open = strstr(text, "{peer=\"");
	ck_assert_ptr_nonnull(open);
	const char *close = strstr(open, "\"} 0\n");
	ck_assert_ptr_nonnull(close);
	size_t length = (size_t)(close - open - 7);
	ck_assert_uint_gt(length, 0);
	ck_assert_uint_eq(length % 5, 0); /* whole \\xNN pieces only */
	free(text);
}
END_TEST

static Suite *control_metrics_suite(void)
{
	Suite *suite = suite_create("control_metrics");
	TCase *tc = tcase_create("labels");
	tcase_add_test(tc, test_label_values_escape_every_control_and_stray_byte);
	tcase_add_test(tc, test_long_label_values_are_cut_cleanly);
	suite_add_tcase(suite, tc);
	return suite;
}

int main(void)
{
	SRunner *runner = srunner_create(control_metrics_suite());
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
