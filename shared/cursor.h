/* A bounds-checked cursor over a byte buffer: the one reader and writer of every codec. */
#ifndef WORMHOLE_SHARED_CURSOR_H
#define WORMHOLE_SHARED_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * A cursor never reads or writes past its end. The first overrun sticks (failed), later
 * calls do nothing and reads return zeros, so a codec runs its whole field list and checks
 * once at the end, as tmux's imsg buffers and OpenBSD's ibuf do. Integers come in both byte
 * orders: the wire protocol is big-endian (shared/frame.c), the attach protocol little-endian
 * (shared/attach_msg.c, both ends on one host). Pure functions over memory: no allocation,
 * no I/O.
 */
struct cursor {
	uint8_t *out;      /* writing: the buffer (NULL when reading) */
	const uint8_t *in; /* reading: the buffer (NULL when writing) */
	size_t length, at; /* its size, and the position */
	bool failed;       /* an overrun or a codec's own error happened */
};

static inline struct cursor cursor_writer(void *out, size_t length)
{
	return (struct cursor){ .out = out, .length = length };
}

static inline struct cursor cursor_reader(const void *in, size_t length)
{
	return (struct cursor){ .in = in, .length = length };
}

static inline void cursor_put_bytes(struct cursor *c, const void *bytes, size_t n)
{
	if (c->failed || !c->out || c->length - c->at < n) {
		c->failed = true;
		return;
	}
	if (n)
		memcpy(c->out + c->at, bytes, n);
	c->at += n;
}

static inline void cursor_put_u8(struct cursor *c, uint8_t v)
{
	cursor_put_bytes(c, &v, 1);
}

static inline void cursor_put_u16le(struct cursor *c, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	cursor_put_bytes(c, b, 2);
}

static inline void cursor_put_u32be(struct cursor *c, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	cursor_put_bytes(c, b, 4);
}

static inline void cursor_put_u32le(struct cursor *c, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	cursor_put_bytes(c, b, 4);
}

static inline void cursor_put_u64le(struct cursor *c, uint64_t v)
{
	cursor_put_u32le(c, (uint32_t)v);
	cursor_put_u32le(c, (uint32_t)(v >> 32));
}

static inline void cursor_get_bytes(struct cursor *c, void *bytes, size_t n)
{
	if (c->failed || !c->in || c->length - c->at < n) {
		c->failed = true;
		memset(bytes, 0, n);
		return;
	}
	if (n)
		memcpy(bytes, c->in + c->at, n);
	c->at += n;
}

static inline uint8_t cursor_get_u8(struct cursor *c)
{
	uint8_t v;
	cursor_get_bytes(c, &v, 1);
	return v;
}

static inline uint16_t cursor_get_u16le(struct cursor *c)
{
	uint8_t b[2];
	cursor_get_bytes(c, b, 2);
	return (uint16_t)(b[0] | b[1] << 8);
}

static inline uint32_t cursor_get_u32be(struct cursor *c)
{
	uint8_t b[4];
	cursor_get_bytes(c, b, 4);
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static inline uint32_t cursor_get_u32le(struct cursor *c)
{
	uint8_t b[4];
	cursor_get_bytes(c, b, 4);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint64_t cursor_get_u64le(struct cursor *c)
{
	uint64_t low = cursor_get_u32le(c);
	return low | (uint64_t)cursor_get_u32le(c) << 32;
}

#endif
