/* A small JSON reader for tests (json_lite.h). */
#include "config.h"

#include "json_lite.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct reader {
	const char *p, *start;
	bool failed;
	int depth;
};

static void skip_space(struct reader *r)
{
	while (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t')
		r->p++;
}

static struct json *parse_value(struct reader *r);

static char *parse_string(struct reader *r)
{
	if (*r->p != '"') {
		r->failed = true;
		return NULL;
	}
	r->p++;
	size_t cap = 16, n = 0;
	char *out = malloc(cap);
	while (out && *r->p && *r->p != '"') {
		char ch = *r->p++;
		if ((unsigned char)ch < 0x20) {
			r->failed = true;
			break;
		}
		if (ch == '\\') {
			char e = *r->p++;
			switch (e) {
			case '"': case '\\': case '/': ch = e; break;
			case 'n': ch = '\n'; break;
			case 't': ch = '\t'; break;
			case 'r': ch = '\r'; break;
			case 'b': ch = '\b'; break;
			case 'f': ch = '\f'; break;
			case 'u': {
				unsigned v = 0;
				for (int i = 0; i < 4; i++) {
					char h = *r->p++;
					v = v * 16 + (unsigned)(h >= '0' && h <= '9' ? h - '0'
								: h >= 'a' && h <= 'f' ? h - 'a' + 10
								: h >= 'A' && h <= 'F' ? h - 'A' + 10 : (r->failed = true, 0));
				}
				ch = v < 0x80 ? (char)v : '?';
				break;
			}
			default: r->failed = true; break;
			}
		}
		if (n + 2 > cap) {
			char *grown = realloc(out, cap *= 2);
			if (!grown) {
				free(out);
				out = NULL;
				break;
			}
			out = grown;
		}
		if (out)
			out[n++] = ch;
		if (r->failed)
			break;
	}
	if (!out || r->failed || *r->p != '"') {
		r->failed = true;
		free(out);
		return NULL;
	}
	r->p++;
	out[n] = '\0';
	return out;
}

static bool add_member(struct json *v, char *key, struct json *item)
{
	struct json **items = realloc(v->items, (v->count + 1) * sizeof *items);
	if (!items)
		return false;
	v->items = items;
	if (v->kind == JSON_OBJECT) {
		char **keys = realloc(v->keys, (v->count + 1) * sizeof *keys);
		if (!keys)
			return false;
		v->keys = keys;
		v->keys[v->count] = key;
	}
	v->items[v->count++] = item;
	return true;
}

static struct json *parse_container(struct reader *r, struct json *v, char close)
{
	r->p++;
	skip_space(r);
	if (*r->p == close) {
		r->p++;
		return v;
	}
	for (;;) {
		char *key = NULL;
		skip_space(r);
		if (v->kind == JSON_OBJECT) {
			key = parse_string(r);
			skip_space(r);
			if (!key || *r->p != ':') {
				free(key);
				r->failed = true;
				return v;
			}
			r->p++;
		}
		struct json *item = parse_value(r);
		if (!item || !add_member(v, key, item)) {
			free(key);
			json_free(item);
			r->failed = true;
			return v;
		}
		skip_space(r);
		if (*r->p == ',') {
			r->p++;
			continue;
		}
		if (*r->p == close) {
			r->p++;
			return v;
		}
		r->failed = true;
		return v;
	}
}

static struct json *parse_value(struct reader *r)
{
	skip_space(r);
	if (r->failed || ++r->depth > 64) {
		r->failed = true;
		return NULL;
	}
	struct json *v = calloc(1, sizeof *v);
	if (!v) {
		r->failed = true;
		return NULL;
	}
	if (*r->p == '{') {
		v->kind = JSON_OBJECT;
		parse_container(r, v, '}');
	} else if (*r->p == '[') {
		v->kind = JSON_ARRAY;
		parse_container(r, v, ']');
	} else if (*r->p == '"') {
		v->kind = JSON_STRING;
		v->string = parse_string(r);
	} else if (strncmp(r->p, "true", 4) == 0 || strncmp(r->p, "false", 5) == 0) {
		v->kind = JSON_BOOL;
		v->boolean = *r->p == 't';
		r->p += v->boolean ? 4 : 5;
	} else if (strncmp(r->p, "null", 4) == 0) {
		v->kind = JSON_NULL;
		r->p += 4;
	} else if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9')) {
		char *end;
		v->kind = JSON_NUMBER;
		v->number = strtod(r->p, &end);
		if (end == r->p)
			r->failed = true;
		r->p = end;
	} else {
		r->failed = true;
	}
	r->depth--;
	return v;
}

struct json *json_parse(const char *text, size_t *error_at)
{
	struct reader r = { .p = text, .start = text };
	struct json *v = parse_value(&r);
	skip_space(&r);
	if (r.failed || *r.p) {
		if (error_at)
			*error_at = (size_t)(r.p - text);
		json_free(v);
		return NULL;
	}
	return v;
}

void json_free(struct json *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->count; i++) {
		json_free(v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->string);
	free(v);
}

const struct json *json_get(const struct json *object, const char *key)
{
	if (!object || object->kind != JSON_OBJECT)
		return NULL;
	for (size_t i = 0; i < object->count; i++)
		if (strcmp(object->keys[i], key) == 0)
			return object->items[i];
	return NULL;
}

double json_number(const struct json *object, const char *key)
{
	const struct json *v = json_get(object, key);
	return v && v->kind == JSON_NUMBER ? v->number : NAN;
}

const char *json_string(const struct json *object, const char *key)
{
	const struct json *v = json_get(object, key);
	return v && v->kind == JSON_STRING ? v->string : NULL;
}
