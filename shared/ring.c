/* Single-producer single-consumer byte rings in a shared-memory segment, one per direction. */
#include "config.h"

#include <string.h>

#include "ring.h"

static bool power_of_two(uint32_t x)
{
	return x && !(x & (x - 1));
}

int ring_segment_init(void *memory, size_t size, uint32_t capacity, uint64_t stream_handle)
{
	if (!memory || !power_of_two(capacity) || capacity < RING_MIN_CAPACITY ||
	    capacity > RING_MAX_CAPACITY || size < ring_segment_size(capacity))
		return WH_EINVAL;
	struct ring_segment *s = memory;
	memset(s, 0, sizeof *s);
	s->magic = RING_MAGIC;
	s->version = RING_LAYOUT_VERSION;
	s->header_size = (uint16_t)sizeof *s;
	s->capacity = capacity;
	s->stream_handle = stream_handle;
	return WH_OK;
}

int ring_segment_check(const void *memory, size_t size)
{
	const struct ring_segment *s = memory;
	if (!memory || size < RING_DATA_OFFSET || s->magic != RING_MAGIC ||
	    s->version != RING_LAYOUT_VERSION || s->header_size != sizeof *s ||
	    !power_of_two(s->capacity) || s->capacity < RING_MIN_CAPACITY ||
	    s->capacity > RING_MAX_CAPACITY || size != ring_segment_size(s->capacity))
		return WH_ERING_CORRUPT;
	return WH_OK;
}

static uint8_t *ring_data(void *segment, unsigned index, uint32_t capacity)
{
	return (uint8_t *)segment + RING_DATA_OFFSET + (size_t)(index & 1u) * capacity;
}

void ring_producer_attach(struct ring_producer *p, void *segment, uint32_t capacity, unsigned index)
{
	struct ring_segment *s = segment;
	p->ctl = &s->rings[index & 1u];
	p->data = ring_data(segment, index, capacity);
	p->capacity = capacity;
	/* Start from what is there (zero for a new segment); the peer's value is checked
	 * against ours from here on. */
	p->head = atomic_load_explicit(&p->ctl->head, memory_order_relaxed);
	p->tail_seen = p->head;
}

void ring_consumer_attach(struct ring_consumer *c, void *segment, uint32_t capacity, unsigned index)
{
	struct ring_segment *s = segment;
	c->ctl = &s->rings[index & 1u];
	c->data = ring_data(segment, index, capacity);
	c->capacity = capacity;
	c->tail = atomic_load_explicit(&c->ctl->tail, memory_order_relaxed);
	c->head_seen = c->tail;
}

/* Splits [position, position + length) of the ring into at most two spans. */
static int spans_at(uint8_t *data, uint32_t capacity, uint64_t position, size_t length,
		    struct iovec iov[2])
{
	if (length == 0)
		return 0;
	size_t start = (size_t)(position & (capacity - 1));
	size_t first = capacity - start < length ? capacity - start : length;
	iov[0].iov_base = data + start;
	iov[0].iov_len = first;
	if (first == length)
		return 1;
	iov[1].iov_base = data;
	iov[1].iov_len = length - first;
	return 2;
}

/* The consumer's tail, checked: never backwards, never past what we produced. */
static long producer_refresh(struct ring_producer *p)
{
	uint64_t tail = atomic_load_explicit(&p->ctl->tail, memory_order_acquire);
	if (tail < p->tail_seen || tail > p->head)
		return WH_ERING_CORRUPT;
	p->tail_seen = tail;
	return (long)(p->head - tail);
}

long ring_producer_reserve(struct ring_producer *p, struct iovec iov[2], int *spans)
{
	long used = producer_refresh(p);
	*spans = 0;
	if (used < 0)
		return used;
	size_t room = p->capacity - (size_t)used;
	*spans = spans_at(p->data, p->capacity, p->head, room, iov);
	return (long)room;
}

void ring_producer_commit(struct ring_producer *p, size_t n)
{
	p->head += n;
	atomic_store_explicit(&p->ctl->head, p->head, memory_order_release);
}

long ring_producer_write(struct ring_producer *p, const void *src, size_t n)
{
	struct iovec iov[2];
	int spans;
	long room = ring_producer_reserve(p, iov, &spans);
	if (room < 0)
		return room;
	size_t done = 0;
	for (int i = 0; i < spans && done < n; i++) {
		size_t take = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
		memcpy(iov[i].iov_base, (const uint8_t *)src + done, take);
		done += take;
	}
	ring_producer_commit(p, done);
	return (long)done;
}

uint32_t ring_producer_wake_needed(struct ring_producer *p)
{
	atomic_thread_fence(memory_order_seq_cst); /* (b): orders our head store before the read */
	if (!atomic_load_explicit(&p->ctl->consumer_waiting, memory_order_relaxed))
		return 0;
	return atomic_exchange_explicit(&p->ctl->consumer_waiting, 0, memory_order_relaxed);
}

void ring_producer_prepare_wait(struct ring_producer *p)
{
	atomic_store_explicit(&p->ctl->producer_waiting, RING_WAIT_NEWS, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
}

void ring_producer_prepare_sleep(struct ring_producer *p)
{
	atomic_store_explicit(&p->ctl->producer_waiting, RING_WAIT_NEWS | RING_WAIT_SLEEPER,
			      memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
}

uint32_t *ring_producer_wait_word(struct ring_producer *p)
{
	return (uint32_t *)&p->ctl->producer_waiting;
}

uint32_t *ring_producer_wake_word(struct ring_producer *p)
{
	return (uint32_t *)&p->ctl->consumer_waiting;
}

void ring_producer_close(struct ring_producer *p, int error)
{
	atomic_store_explicit(&p->ctl->producer_error, error, memory_order_relaxed);
	/* release: a consumer that sees the state also sees every committed byte */
	atomic_store_explicit(&p->ctl->producer_state, error == WH_OK ? RING_CLOSED : RING_FAILED,
			      memory_order_release);
}

enum ring_end_state ring_producer_peer_state(const struct ring_producer *p, int *error)
{
	uint32_t state = atomic_load_explicit(&p->ctl->consumer_state, memory_order_acquire);
	*error = atomic_load_explicit(&p->ctl->consumer_error, memory_order_relaxed);
	if (state == RING_OPEN || state == RING_CLOSED)
		return (enum ring_end_state)state;
	if (*error >= 0)
		*error = WH_ERING_CORRUPT; /* a failure must carry an error code */
	return RING_FAILED;
}

long ring_producer_pending(struct ring_producer *p)
{
	return producer_refresh(p);
}

/* The producer's head, checked: never backwards, never more than capacity ahead of us. */
static long consumer_refresh(struct ring_consumer *c)
{
	uint64_t head = atomic_load_explicit(&c->ctl->head, memory_order_acquire);
	if (head < c->head_seen || head < c->tail || head - c->tail > c->capacity)
		return WH_ERING_CORRUPT;
	c->head_seen = head;
	return (long)(head - c->tail);
}

long ring_consumer_peek(struct ring_consumer *c, struct iovec iov[2], int *spans)
{
	long held = consumer_refresh(c);
	*spans = 0;
	if (held < 0)
		return held;
	*spans = spans_at(c->data, c->capacity, c->tail, (size_t)held, iov);
	return held;
}

long ring_consumer_peek_at(struct ring_consumer *c, size_t offset, struct iovec iov[2], int *spans)
{
	*spans = 0;
	long held = consumer_refresh(c);
	uint64_t known = c->head_seen - c->tail; /* on a bad head: what it showed before */
	if (held < 0 && offset >= known)
		return held;
	if (offset >= known)
		return 0;
	size_t past = (size_t)(known - offset);
	*spans = spans_at(c->data, c->capacity, c->tail + offset, past, iov);
	return (long)past;
}

void ring_consumer_consume(struct ring_consumer *c, size_t n)
{
	c->tail += n;
	atomic_store_explicit(&c->ctl->tail, c->tail, memory_order_release);
}

long ring_consumer_read(struct ring_consumer *c, void *dst, size_t n)
{
	struct iovec iov[2];
	int spans;
	long held = ring_consumer_peek(c, iov, &spans);
	if (held < 0)
		return held;
	size_t done = 0;
	for (int i = 0; i < spans && done < n; i++) {
		size_t take = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
		memcpy((uint8_t *)dst + done, iov[i].iov_base, take);
		done += take;
	}
	ring_consumer_consume(c, done);
	return (long)done;
}

uint32_t ring_consumer_wake_needed(struct ring_consumer *c)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&c->ctl->producer_waiting, memory_order_relaxed))
		return 0;
	return atomic_exchange_explicit(&c->ctl->producer_waiting, 0, memory_order_relaxed);
}

uint32_t ring_consumer_wake_needed_with_room(struct ring_consumer *c, size_t room)
{
	/* the fence of ring_consumer_wake_needed, written out: GCC's ThreadSanitizer build
	 * refuses a fence inlined from another function (-Wtsan) */
	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&c->ctl->producer_waiting, memory_order_relaxed))
		return 0;
	/* head_seen is the last head that passed the checks; one seen later can only be
	 * further on, so this free count is never too small: at worst a wake-up comes early */
	uint64_t held = c->head_seen - c->tail;
	if (room > c->capacity)
		room = c->capacity; /* a drained ring wakes, whatever was asked */
	if (held <= c->capacity && (size_t)(c->capacity - held) < room)
		return 0; /* the announcement stays for a later call */
	return atomic_exchange_explicit(&c->ctl->producer_waiting, 0, memory_order_relaxed);
}

void ring_consumer_prepare_wait(struct ring_consumer *c)
{
	atomic_store_explicit(&c->ctl->consumer_waiting, RING_WAIT_NEWS, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst); /* (2): orders the flag before re-reading head */
}

void ring_consumer_prepare_sleep(struct ring_consumer *c)
{
	atomic_store_explicit(&c->ctl->consumer_waiting, RING_WAIT_NEWS | RING_WAIT_SLEEPER,
			      memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
}

uint32_t *ring_consumer_wait_word(struct ring_consumer *c)
{
	return (uint32_t *)&c->ctl->consumer_waiting;
}

uint32_t *ring_consumer_wake_word(struct ring_consumer *c)
{
	return (uint32_t *)&c->ctl->producer_waiting;
}

void ring_consumer_close(struct ring_consumer *c, int error)
{
	atomic_store_explicit(&c->ctl->consumer_error, error, memory_order_relaxed);
	atomic_store_explicit(&c->ctl->consumer_state, error == WH_OK ? RING_CLOSED : RING_FAILED,
			      memory_order_release);
}

enum ring_end_state ring_consumer_peer_state(const struct ring_consumer *c, int *error)
{
	uint32_t state = atomic_load_explicit(&c->ctl->producer_state, memory_order_acquire);
	*error = atomic_load_explicit(&c->ctl->producer_error, memory_order_relaxed);
	if (state == RING_OPEN || state == RING_CLOSED)
		return (enum ring_end_state)state;
	if (*error >= 0)
		*error = WH_ERING_CORRUPT;
	return RING_FAILED;
}

/* One bitmap and its armed flag: set a bit, then wake the taker if it is armed. */
static bool bitmap_post(_Atomic uint64_t *bits, _Atomic uint32_t *armed, uint32_t slot)
{
	atomic_fetch_or_explicit(&bits[slot / 64], 1ull << (slot % 64), memory_order_release);
	atomic_thread_fence(memory_order_seq_cst); /* the bit before the look at `armed` */
	if (!atomic_load_explicit(armed, memory_order_relaxed))
		return false;
	return atomic_exchange_explicit(armed, 0, memory_order_relaxed) != 0;
}

static uint64_t bitmap_take(_Atomic uint64_t *word)
{
	/* Most words are zero: a plain read spares a locked instruction on each of them. */
	if (!atomic_load_explicit(word, memory_order_relaxed))
		return 0;
	return atomic_exchange_explicit(word, 0, memory_order_acquire);
}

/* The news bitmap follows the doorbell's, on its own cache lines. */
static _Atomic uint64_t *news_bits(struct notify_segment *n, uint32_t slots)
{
	return (_Atomic uint64_t *)((uint8_t *)n->bits + notify_bitmap_size(slots));
}

bool notify_ring(struct notify_segment *n, uint32_t slots, uint32_t slot)
{
	return slot < slots && bitmap_post(n->bits, &n->armed, slot);
}

uint64_t notify_take(struct notify_segment *n, uint32_t index)
{
	return bitmap_take(&n->bits[index]);
}

/* (The two arms are written out: gcc's ThreadSanitizer build refuses a fence it inlines.) */
void notify_arm(struct notify_segment *n)
{
	atomic_store_explicit(&n->armed, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst); /* armed before the rescan */
}

bool notify_post(struct notify_segment *n, uint32_t slots, uint32_t slot)
{
	return slot < slots && bitmap_post(news_bits(n, slots), &n->app_armed, slot);
}

bool notify_posted(struct notify_segment *n, uint32_t slots, uint32_t slot)
{
	return slot < slots &&
	       (atomic_load_explicit(&news_bits(n, slots)[slot / 64], memory_order_acquire) >> (slot % 64) & 1);
}

uint64_t notify_app_take(struct notify_segment *n, uint32_t slots, uint32_t index)
{
	if (index >= (slots + 63) / 64)
		return 0;
	return bitmap_take(&news_bits(n, slots)[index]);
}

void notify_app_arm(struct notify_segment *n)
{
	atomic_store_explicit(&n->app_armed, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst); /* armed before the rescan */
}

void notify_app_disarm(struct notify_segment *n)
{
	atomic_store_explicit(&n->app_armed, 0, memory_order_relaxed);
}
