/* Text from outside (service names, peer names, paths, messages), made safe to show on one
 * line of a log or a terminal: the broker's log and wormhole-ctl's text output. */
#ifndef WORMHOLE_SHARED_TEXT_ESCAPE_H
#define WORMHOLE_SHARED_TEXT_ESCAPE_H

#include <stddef.h>
#include <stdint.h>

/*
 * The length (1..4) of the well-formed UTF-8 sequence at s (n bytes there), its code point in
 * *code; 0 if the bytes there are not one (a stray, overlong or truncated sequence, a
 * surrogate, beyond U+10FFFF).
 */
size_t text_utf8_next(const unsigned char *s, size_t n, uint32_t *code);

/* True for a code point a terminal or a log reader may act on rather than show: C0 and C1
 * controls, DEL, the line and paragraph separators, and the bidirectional overrides and
 * isolates (which reorder what follows them on the line). */
int text_code_is_control(uint32_t code);

/*
 * in (n bytes, NULs included) as one line of printable text in out (size bytes, always
 * NUL-terminated when size > 0): a backslash becomes \\, newline, carriage return and tab
 * become \n, \r, \t, every other byte of a control (see text_code_is_control) or of a
 * sequence that is not UTF-8 becomes \xNN. Never cuts an escape or a character in two.
 * Returns the length written.
 */
size_t text_escape(char *out, size_t size, const char *in, size_t n);

#endif
