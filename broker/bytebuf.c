/* A circular byte buffer that grows on demand up to a fixed ceiling. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <wormhole/errors.h>

#include "bytebuf.h"

#define BYTEBUF_MIN_CAPACITY 4096u

void bytebuf_init(struct bytebuf *buf, size_t limit)
{
	memset(buf, 0, sizeof *buf);
	buf->limit = limit;
}

void bytebuf_free(struct bytebuf *buf)
{
	free(buf->data);
	bytebuf_init(buf, buf->limit);
}

void bytebuf_set_limit(struct bytebuf *buf, size_t limit)
{
	buf->limit = limit > buf->length ? limit : buf->length;
}

/* Reallocates to `capacity` (a power of two, at least twice the old one). realloc keeps the
 * bytes where they were, without a copy when it can extend the block or move its pages
 * (mremap, for large blocks): a stream's store doubles from 4 KiB to its window as the window
 * fills, and copying it into fresh memory at each step cost as much as the data itself
 * (every new page a fault). Held bytes that wrapped past the old end are moved to just after
 * it, where the larger buffer continues them. */
static int bytebuf_grow(struct bytebuf *buf, size_t capacity)
{
	size_t old_capacity = buf->capacity;
	uint8_t *data = realloc(buf->data, capacity);
	if (!data)
		return WH_ENOMEM;
	if (buf->head + buf->length > old_capacity) {
		size_t wrapped = buf->head + buf->length - old_capacity;
		memcpy(data + old_capacity, data, wrapped);
	}
	buf->data = data;
	buf->capacity = capacity;
	return WH_OK;
}

size_t bytebuf_reserve(struct bytebuf *buf, size_t want, uint8_t **span)
{
	*span = NULL;
	if (want > bytebuf_room(buf))
		want = bytebuf_room(buf);
	if (want == 0)
		return 0;
	if (buf->length + want > buf->capacity) {
		size_t capacity = buf->capacity ? buf->capacity : BYTEBUF_MIN_CAPACITY;
		while (capacity < buf->length + want)
			capacity *= 2;
		if (bytebuf_grow(buf, capacity) != WH_OK)
			return 0;
	}
	size_t tail = (buf->head + buf->length) & (buf->capacity - 1);
	/* Not full here, so tail == head only when empty. */
	size_t contiguous = tail >= buf->head ? buf->capacity - tail : buf->head - tail;
	*span = buf->data + tail;
	return want < contiguous ? want : contiguous;
}

void bytebuf_commit(struct bytebuf *buf, size_t n)
{
	buf->length += n;
}

long bytebuf_write(struct bytebuf *buf, const void *src, size_t n)
{
	const uint8_t *from = src;
	size_t done = 0;
	while (done < n) {
		uint8_t *span;
		size_t room = bytebuf_reserve(buf, n - done, &span);
		if (!span)
			return done ? (long)done : (bytebuf_room(buf) ? WH_ENOMEM : 0);
		memcpy(span, from + done, room);
		bytebuf_commit(buf, room);
		done += room;
	}
	return (long)done;
}

int bytebuf_peek(const struct bytebuf *buf, size_t offset, struct iovec iov[2])
{
	if (offset >= buf->length)
		return 0;
	size_t start = (buf->head + offset) & (buf->capacity - 1);
	size_t left = buf->length - offset;
	size_t first = buf->capacity - start;
	if (first > left)
		first = left;
	iov[0].iov_base = buf->data + start;
	iov[0].iov_len = first;
	if (first == left)
		return 1;
	iov[1].iov_base = buf->data;
	iov[1].iov_len = left - first;
	return 2;
}

void bytebuf_consume(struct bytebuf *buf, size_t n)
{
	if (n > buf->length)
		n = buf->length;
	buf->length -= n;
	/* The allocation is kept while the owner lives: freeing on every empty would cost a
	 * malloc and free per burst on a busy stream. An empty buffer restarts at offset 0 so
	 * that the next reserve gets the longest contiguous span. */
	buf->head = buf->length ? (buf->head + n) & (buf->capacity - 1) : 0;
}

size_t bytebuf_read(struct bytebuf *buf, void *dst, size_t n)
{
	struct iovec iov[2];
	int spans = bytebuf_peek(buf, 0, iov);
	size_t done = 0;
	for (int i = 0; i < spans && done < n; i++) {
		size_t take = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
		memcpy((uint8_t *)dst + done, iov[i].iov_base, take);
		done += take;
	}
	bytebuf_consume(buf, done);
	return done;
}
