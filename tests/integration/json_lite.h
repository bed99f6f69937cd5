/* A small JSON reader for tests: parses wormhole-ctl --json output into a tree, so that tests
 * check values, not substrings. Strict (RFC 8259 grammar, no comments, no trailing commas);
 * \u escapes outside ASCII are kept as '?'. */
#ifndef WORMHOLE_TESTS_JSON_LITE_H
#define WORMHOLE_TESTS_JSON_LITE_H

#include <stdbool.h>
#include <stddef.h>

enum json_kind { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json {
	enum json_kind kind;
	bool boolean;
	double number;
	char *string;          /* JSON_STRING */
	size_t count;          /* JSON_ARRAY, JSON_OBJECT: members */
	char **keys;           /* JSON_OBJECT */
	struct json **items;   /* JSON_ARRAY, JSON_OBJECT */
};

/* The document, or NULL when text is not exactly one JSON value (with *error_at set). */
struct json *json_parse(const char *text, size_t *error_at);
void json_free(struct json *value);
/* An object's member by key, or NULL (also when value is not an object). */
const struct json *json_get(const struct json *object, const char *key);
/* Shorthands: a member's number (NAN if missing or not a number) and string (NULL). */
double json_number(const struct json *object, const char *key);
const char *json_string(const struct json *object, const char *key);

#endif
