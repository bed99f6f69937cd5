/* A circular byte buffer that grows on demand up to a fixed ceiling (a stream's heap store). */
#ifndef WORMHOLE_BROKER_BYTEBUF_H
#define WORMHOLE_BROKER_BYTEBUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * Holds at most `limit` bytes; memory is allocated only when bytes first arrive (so ten
 * thousand idle streams cost nothing), grows by doubling, and is freed by bytebuf_free.
 * Error convention: functions return a byte count, or a negative WH_E* code where documented.
 */
struct bytebuf {
	uint8_t *data;
	size_t capacity; /* allocated bytes, a power of two or 0 */
	size_t limit;    /* most bytes it may hold */
	size_t head;     /* read position, < capacity */
	size_t length;   /* bytes held */
};

void bytebuf_init(struct bytebuf *buf, size_t limit);
void bytebuf_free(struct bytebuf *buf);
/* Raises (never lowers below what is held) the ceiling. */
void bytebuf_set_limit(struct bytebuf *buf, size_t limit);
static inline size_t bytebuf_length(const struct bytebuf *buf) { return buf->length; }
static inline size_t bytebuf_room(const struct bytebuf *buf) { return buf->limit - buf->length; }

/* Contiguous free space at the tail for at most `want` bytes, growing the allocation if
 * needed. Returns its size (0 when full, WH_ENOMEM as 0 with *span NULL). */
size_t bytebuf_reserve(struct bytebuf *buf, size_t want, uint8_t **span);
void bytebuf_commit(struct bytebuf *buf, size_t n);
/* Copies up to n bytes in; returns bytes copied, or WH_ENOMEM. */
long bytebuf_write(struct bytebuf *buf, const void *src, size_t n);
/* Up to two spans of held bytes, from `offset` bytes past the head. Returns the span count. */
int bytebuf_peek(const struct bytebuf *buf, size_t offset, struct iovec iov[2]);
/* Copies up to n bytes out and consumes them; returns bytes copied. */
size_t bytebuf_read(struct bytebuf *buf, void *dst, size_t n);
void bytebuf_consume(struct bytebuf *buf, size_t n);

#endif
