/* Single-producer single-consumer byte rings in a shared-memory segment, one per direction. */
#ifndef WORMHOLE_SHARED_RING_H
#define WORMHOLE_SHARED_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <wormhole/errors.h>

/*
 * A stream's segment (one memfd, sealed against resizing) holds a header and two rings:
 *
 *   offset 0      struct ring_segment: magic, version, capacity, two ring_ctl, error message
 *   RING_DATA_OFFSET            data of ring 0 (capacity bytes)
 *   RING_DATA_OFFSET+capacity   data of ring 1 (capacity bytes)
 *
 * The layout is ABI between broker and library: every offset is pinned below; bump
 * RING_LAYOUT_VERSION if any of it changes.
 *
 * Positions are monotonic 64-bit byte counts (head: produced, tail: consumed); the index in
 * the data area is position & (capacity - 1). Each side keeps its own position privately and
 * only *reads* the other side's from shared memory, checking it (it never goes backwards,
 * tail never passes head, head never runs more than capacity ahead of tail). The other side
 * may be a hostile or dying process: a failed check is WH_ERING_CORRUPT, never a wild access.
 *
 * Who signals when (no lost wake-ups). A consumer that finds the ring empty and wants to
 * sleep: (1) sets consumer_waiting, (2) full fence, (3) looks at head again, and sleeps only
 * if still empty. A producer: (a) stores head, (b) full fence, (c) reads consumer_waiting and,
 * if set, clears it and wakes the consumer. With both fences, either (3) sees (a) or (c) sees
 * (1), so a commit is never missed; a producer that finds nobody waiting saves the system
 * call. The same protocol, mirrored, wakes a producer waiting for space (producer_waiting).
 * The wake itself is the caller's: this module does no I/O. The flag says how to wake:
 * RING_WAIT_NEWS asks for the wake-up that reaches the waiter's event loop (a bit in its
 * client's news bitmap, a socket); RING_WAIT_SLEEPER adds that a thread sleeps in
 * futex(2) on the flag's own word, so the waker clears it and then wakes that word. A waker
 * treats any nonzero value as a request to wake (the flag is written by the other side).
 */
#define RING_WAIT_NEWS 1u
#define RING_WAIT_SLEEPER 2u

#define RING_MAGIC 0x57485247u /* "WHRG" */
#define RING_LAYOUT_VERSION 1u
#define RING_CACHE_LINE 64u
#define RING_MESSAGE_MAX 256u
#define RING_DATA_OFFSET 4096u
#define RING_MIN_CAPACITY 4096u
#define RING_MAX_CAPACITY (64u << 20)

enum ring_end_state {
	RING_OPEN = 0,
	RING_CLOSED = 1, /* orderly: producer wrote everything / consumer stopped reading */
	RING_FAILED = 2, /* with an error code (a WH_E* value) */
};

/* One direction. Each field is written by one side only (named), on its own cache line. */
struct ring_ctl {
	_Alignas(RING_CACHE_LINE) _Atomic uint64_t head; /* producer */
	_Alignas(RING_CACHE_LINE) _Atomic uint64_t tail; /* consumer */
	_Alignas(RING_CACHE_LINE) _Atomic uint32_t consumer_waiting; /* set: consumer; cleared: producer */
	_Atomic uint32_t producer_waiting;                           /* set: producer; cleared: consumer */
	_Atomic uint32_t producer_state;                             /* producer: enum ring_end_state */
	_Atomic int32_t producer_error;                              /* producer */
	_Atomic uint32_t consumer_state;                             /* consumer */
	_Atomic int32_t consumer_error;                              /* consumer */
};

struct ring_segment {
	uint32_t magic;
	uint16_t version;
	uint16_t header_size;
	uint32_t capacity;      /* bytes per ring, a power of two */
	uint32_t remote_code;   /* written by the broker: the peer's ERROR code, if any */
	uint64_t stream_handle; /* the broker's id for this stream */
	_Alignas(RING_CACHE_LINE) struct ring_ctl rings[2];
	_Alignas(RING_CACHE_LINE) char error_message[RING_MESSAGE_MAX]; /* written by the broker */
};

_Static_assert(sizeof(_Atomic uint64_t) == 8 && ATOMIC_LLONG_LOCK_FREE == 2,
	       "ring positions must be lock-free 64-bit atomics to work across processes");
_Static_assert(offsetof(struct ring_ctl, head) == 0, "ring_ctl.head");
_Static_assert(offsetof(struct ring_ctl, tail) == 64, "ring_ctl.tail");
_Static_assert(offsetof(struct ring_ctl, consumer_waiting) == 128, "ring_ctl flags");
_Static_assert(offsetof(struct ring_ctl, consumer_error) == 148, "ring_ctl.consumer_error");
_Static_assert(sizeof(struct ring_ctl) == 192, "ring_ctl size");
_Static_assert(offsetof(struct ring_segment, capacity) == 8, "ring_segment.capacity");
_Static_assert(offsetof(struct ring_segment, stream_handle) == 16, "ring_segment.stream_handle");
_Static_assert(offsetof(struct ring_segment, rings) == 64, "ring_segment.rings");
_Static_assert(offsetof(struct ring_segment, error_message) == 448, "ring_segment.error_message");
_Static_assert(sizeof(struct ring_segment) <= RING_DATA_OFFSET, "header fits before the data");

/* Bytes a segment with rings of this capacity occupies. */
static inline size_t ring_segment_size(uint32_t capacity)
{
	return RING_DATA_OFFSET + 2 * (size_t)capacity;
}

/* Writes a fresh header into zeroed memory of ring_segment_size(capacity) bytes.
 * WH_EINVAL for a capacity that is not a power of two within limits. */
int ring_segment_init(void *memory, size_t size, uint32_t capacity, uint64_t stream_handle);
/* Checks a mapped segment's header against its size before any use. WH_OK, or
 * WH_ERING_CORRUPT (bad magic, version, capacity, or size mismatch). */
int ring_segment_check(const void *memory, size_t size);

/* One side's handle on one ring. Fields are private to ring.c. */
struct ring_producer {
	struct ring_ctl *ctl;
	uint8_t *data;
	uint32_t capacity;
	uint64_t head;      /* ours: trusted */
	uint64_t tail_seen; /* theirs: last value that passed the checks */
};

struct ring_consumer {
	struct ring_ctl *ctl;
	uint8_t *data;
	uint32_t capacity;
	uint64_t tail;
	uint64_t head_seen;
};

/* Attach to ring `index` (0 or 1) of a checked segment. capacity comes from a trusted
 * source (the creator's own record, never re-read from memory the peer can write).
 * Positions start at what is there (zero in a new segment). */
void ring_producer_attach(struct ring_producer *p, void *segment, uint32_t capacity, unsigned index);
void ring_consumer_attach(struct ring_consumer *c, void *segment, uint32_t capacity, unsigned index);

/* Free space as up to two spans (iov, count in *spans). Returns the free byte count, or
 * WH_ERING_CORRUPT when the consumer's tail is impossible. */
long ring_producer_reserve(struct ring_producer *p, struct iovec iov[2], int *spans);
/* Makes n reserved bytes visible. n must not exceed what reserve reported. */
void ring_producer_commit(struct ring_producer *p, size_t n);
/* Copies in as much as fits; returns bytes written or WH_ERING_CORRUPT. */
long ring_producer_write(struct ring_producer *p, const void *src, size_t n);
/* After commit: what the consumer announced if it waits (RING_WAIT_* flags, cleared), 0 if it
 * does not: nonzero means it must be woken. */
uint32_t ring_producer_wake_needed(struct ring_producer *p);
/* Before waiting for space: announce it (RING_WAIT_NEWS); then reserve again, wait only if
 * still full. prepare_sleep announces a thread that sleeps on ring_producer_wait_word. */
void ring_producer_prepare_wait(struct ring_producer *p);
void ring_producer_prepare_sleep(struct ring_producer *p);
/* The 32-bit word a sleeping producer waits on with futex(2): the announcement itself, which
 * the consumer clears before it wakes the word. */
uint32_t *ring_producer_wait_word(struct ring_producer *p);
/* The word a sleeping consumer waits on, for the producer to wake after wake_needed. */
uint32_t *ring_producer_wake_word(struct ring_producer *p);
/* No more data (error WH_OK: orderly EOF after the bytes), or the stream failed. */
void ring_producer_close(struct ring_producer *p, int error);
/* The consumer's state: RING_OPEN, RING_CLOSED (stopped reading) or RING_FAILED (*error). */
enum ring_end_state ring_producer_peer_state(const struct ring_producer *p, int *error);
/* Bytes committed but not yet consumed (checked like reserve). */
long ring_producer_pending(struct ring_producer *p);

/* Held bytes as up to two spans. Returns the byte count, or WH_ERING_CORRUPT when the
 * producer's head is impossible. */
long ring_consumer_peek(struct ring_consumer *c, struct iovec iov[2], int *spans);
/* Held bytes from `offset` past our tail, as up to two spans. Bytes returned once are
 * returned again (same offset) even if the producer corrupts its head meanwhile, so a sender
 * that planned frames from them can still send them: a bad head is WH_ERING_CORRUPT only for
 * a call that asks past the bytes already checked. Returns the byte count past offset. */
long ring_consumer_peek_at(struct ring_consumer *c, size_t offset, struct iovec iov[2], int *spans);
void ring_consumer_consume(struct ring_consumer *c, size_t n);
/* Copies out and consumes up to n bytes; returns bytes read or WH_ERING_CORRUPT. */
long ring_consumer_read(struct ring_consumer *c, void *dst, size_t n);
/* After consume: what the producer announced if it waits for space (RING_WAIT_* flags,
 * cleared), 0 if it does not. */
uint32_t ring_consumer_wake_needed(struct ring_consumer *c);
/* The same, for a consumer that wakes a waiting producer only once `room` bytes are free
 * (more than the capacity counts as all of it): below that it answers 0 and the announcement stays for a
 * later call. A bulk writer then fills a large part of the ring per wake-up instead of
 * what one write to the network took, as TCP wakes a writer only once a good part of its
 * buffer is free. No wake-up is lost: the ring only drains while the producer waits, and
 * a drained ring has every byte free. */
uint32_t ring_consumer_wake_needed_with_room(struct ring_consumer *c, size_t room);
void ring_consumer_prepare_wait(struct ring_consumer *c);
void ring_consumer_prepare_sleep(struct ring_consumer *c);
uint32_t *ring_consumer_wait_word(struct ring_consumer *c);
uint32_t *ring_consumer_wake_word(struct ring_consumer *c);
/* Stop reading (WH_OK) or fail the stream from the reading side. */
void ring_consumer_close(struct ring_consumer *c, int error);
/* The producer's state: RING_OPEN, RING_CLOSED (EOF once drained) or RING_FAILED (*error). */
enum ring_end_state ring_consumer_peer_state(const struct ring_consumer *c, int *error);
/* Total bytes consumed so far (our own, trusted). */
static inline uint64_t ring_consumer_position(const struct ring_consumer *c) { return c->tail; }

/*
 * A client's notify segment: how either side learns which of the client's streams have news
 * without a descriptor per stream. Two bitmaps of one bit per stream slot, each with its own
 * `armed` flag:
 *
 *   the doorbell (app -> broker): the app sets the stream's bit, then, if the broker is armed
 *   (it sleeps in epoll between two scans), clears `armed` and sends on the doorbell socket.
 *   news (broker -> app): the broker sets the bit, then, if the app is armed (it sleeps in
 *   wh_client_wait or an event loop on wh_client_wait_fd), clears `app_armed` and writes the
 *   client's news socket (shared/attach_wake.h).
 *
 * A taker takes whole words with an atomic exchange, serves the streams whose bits were set,
 * re-arms with a full fence and scans once more, so a bit set meanwhile is never missed. Both
 * sides write the segment: a bit for a slot the reader does not use is ignored, and `slots`
 * is never re-read from it (each side keeps its own). Layout (offsets pinned below):
 *
 *   0    magic, slots
 *   64   armed           128  app_armed
 *   192  doorbell bits   (slots / 64 words)
 *   then, on the next cache line, the news bits (slots / 64 words)
 */
#define NOTIFY_MAGIC 0x57484432u /* "WHD2": layout 2, with the news bitmap */

struct notify_segment {
	uint32_t magic;
	uint32_t slots; /* bits in each bitmap, a multiple of 64 */
	_Alignas(RING_CACHE_LINE) _Atomic uint32_t armed;
	_Alignas(RING_CACHE_LINE) _Atomic uint32_t app_armed;
	_Alignas(RING_CACHE_LINE) _Atomic uint64_t bits[];
};

_Static_assert(offsetof(struct notify_segment, armed) == 64, "notify_segment.armed");
_Static_assert(offsetof(struct notify_segment, app_armed) == 128, "notify_segment.app_armed");
_Static_assert(offsetof(struct notify_segment, bits) == 192, "notify_segment.bits");

/* Bytes of one bitmap, rounded up to whole cache lines. */
static inline size_t notify_bitmap_size(uint32_t slots)
{
	size_t bytes = (size_t)(slots + 63) / 64 * sizeof(uint64_t);
	return (bytes + RING_CACHE_LINE - 1) / RING_CACHE_LINE * RING_CACHE_LINE;
}

static inline size_t notify_segment_size(uint32_t slots)
{
	return sizeof(struct notify_segment) + 2 * notify_bitmap_size(slots);
}

/* App side: note that stream `slot` has news; true if the broker must be woken. */
bool notify_ring(struct notify_segment *n, uint32_t slots, uint32_t slot);
/* Broker side: takes word `index` of the doorbell bitmap (the bits are cleared). */
uint64_t notify_take(struct notify_segment *n, uint32_t index);
/* Broker side: about to sleep; the caller scans once more afterwards. */
void notify_arm(struct notify_segment *n);

/* Broker side: stream `slot` has news for the app; true if the app must be woken. */
bool notify_post(struct notify_segment *n, uint32_t slots, uint32_t slot);
/* Broker side: is stream `slot`'s news bit set (posted, not yet taken by the app)? */
bool notify_posted(struct notify_segment *n, uint32_t slots, uint32_t slot);
/* App side: takes word `index` of the news bitmap; slots is the app's own record. */
uint64_t notify_app_take(struct notify_segment *n, uint32_t slots, uint32_t index);
/* App side: about to sleep; the caller scans once more afterwards. */
void notify_app_arm(struct notify_segment *n);
/* App side: awake again; the broker need not send on the news socket. */
void notify_app_disarm(struct notify_segment *n);

#endif
