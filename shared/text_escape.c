/* Text from outside, made safe for one line of a log or a terminal (text_escape.h). */
#include "config.h"

#include "text_escape.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

size_t text_utf8_next(const unsigned char *s, size_t n, uint32_t *code)
{
	if (n == 0)
		return 0;
	if (s[0] < 0x80) {
		*code = s[0];
		return 1;
	}
	size_t length = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
	if (length == 0 || s[0] > 0xf4 || length > n)
		return 0;
	uint32_t c = s[0] & (0x7f >> length);
	for (size_t i = 1; i < length; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	static const uint32_t least[] = { 0, 0, 0x80, 0x800, 0x10000 }; /* shorter is overlong */
	if (c < least[length] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*code = c;
	return length;
}

int text_code_is_control(uint32_t code)
{
	return code < 0x20 || (code >= 0x7f && code <= 0x9f) || code == 0x2028 || code == 0x2029 ||
	       (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069);
}

/* The escape of one byte: \\, \n, \r, \t or \xNN, in piece; its length. */
static size_t escape_byte(unsigned char byte, char *piece)
{
	const char *named = byte == '\\' ? "\\\\" : byte == '\n' ? "\\n" : byte == '\r' ? "\\r" : byte == '\t' ? "\\t" : NULL;
	if (named) {
		piece[0] = named[0];
		piece[1] = named[1];
		return 2;
	}
	snprintf(piece, 5, "\\x%02x", byte);
	return 4;
}

size_t text_escape(char *out, size_t size, const char *in, size_t n)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t at = 0;
	if (size == 0)
		return 0;
	for (size_t i = 0; i < n;) {
		uint32_t code = 0;
		size_t length = text_utf8_next(s + i, n - i, &code);
		bool plain = length > 0 && code != '\\' && !text_code_is_control(code);
		size_t take = length > 0 ? length : 1; /* a stray byte is escaped alone */
		char piece[4 * 4 + 1]; /* four bytes of \xNN, and snprintf's NUL */
		size_t piece_length = 0;
		for (size_t k = 0; k < take; k++) {
			if (plain)
				piece[piece_length++] = (char)s[i + k];
			else
				piece_length += escape_byte(s[i + k], piece + piece_length);
		}
		if (at + piece_length >= size)
			break;
		memcpy(out + at, piece, piece_length);
		at += piece_length;
		i += take;
	}
	out[at] = '\0';
	return at;
}
