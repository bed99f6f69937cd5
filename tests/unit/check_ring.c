/* Unit tests of the shared-memory rings: layout, wrap-around, hostile positions, wake-ups. */
#include "config.h"

#include <check.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "futex.h"
#include "ring.h"

#define CAPACITY 4096u

static void *new_segment(uint32_t capacity)
{
	size_t size = ring_segment_size(capacity);
	void *memory = aligned_alloc(RING_CACHE_LINE, size);
	memset(memory, 0, size);
	ck_assert_int_eq(ring_segment_init(memory, size, capacity, 42), WH_OK);
	ck_assert_int_eq(ring_segment_check(memory, size), WH_OK);
	return memory;
}

START_TEST(test_segment_header_checks)
{
	size_t size = ring_segment_size(CAPACITY);
	void *memory = new_segment(CAPACITY);
	struct ring_segment *s = memory;
	ck_assert_uint_eq(s->stream_handle, 42);
	ck_assert_int_eq(ring_segment_check(memory, size - 1), WH_ERING_CORRUPT);
	ck_assert_int_eq(ring_segment_check(memory, 100), WH_ERING_CORRUPT);
	s->magic ^= 1;
	ck_assert_int_eq(ring_segment_check(memory, size), WH_ERING_CORRUPT);
	s->magic ^= 1;
	s->version = 99;
	ck_assert_int_eq(ring_segment_check(memory, size), WH_ERING_CORRUPT);
	s->version = RING_LAYOUT_VERSION;
	s->capacity = 5000; /* not a power of two */
	ck_assert_int_eq(ring_segment_check(memory, size), WH_ERING_CORRUPT);
	s->capacity = CAPACITY;
	ck_assert_int_eq(ring_segment_check(memory, size), WH_OK);
	ck_assert_int_eq(ring_segment_init(memory, size, 3000, 1), WH_EINVAL);
	ck_assert_int_eq(ring_segment_init(memory, size, 1024, 1), WH_EINVAL); /* below minimum */
	ck_assert_int_eq(ring_segment_init(memory, 100, CAPACITY, 1), WH_EINVAL);
	ck_assert_int_eq(ring_segment_check(NULL, size), WH_ERING_CORRUPT);
	free(memory);
}
END_TEST

START_TEST(test_write_read_wraps)
{
	void *memory = new_segment(CAPACITY);
	struct ring_producer p;
	struct ring_consumer c;
	ring_producer_attach(&p, memory, CAPACITY, 0);
	ring_consumer_attach(&c, memory, CAPACITY, 0);
	static uint8_t in[3000], out[3000];
	uint8_t next = 0, expect = 0;
	for (int round = 0; round < 500; round++) {
		size_t n = 1 + (size_t)(round * 7919) % sizeof in;
		for (size_t i = 0; i < n; i++)
			in[i] = next++;
		long wrote = ring_producer_write(&p, in, n);
		ck_assert_int_ge(wrote, 0);
		next = (uint8_t)(next - (n - (size_t)wrote)); /* what did not fit is offered again */
		long got = ring_consumer_read(&c, out, sizeof out);
		ck_assert_int_ge(got, 0);
		for (long i = 0; i < got; i++)
			ck_assert_uint_eq(out[i], expect++);
	}
	struct iovec iov[2];
	int spans;
	ck_assert_int_eq(ring_producer_reserve(&p, iov, &spans), CAPACITY); /* drained */
	static uint8_t big[CAPACITY + 10];
	ck_assert_int_eq(ring_producer_write(&p, big, sizeof big), CAPACITY);
	ck_assert_int_eq(ring_producer_write(&p, big, 1), 0); /* full */
	ck_assert_int_eq(ring_consumer_peek(&c, iov, &spans), CAPACITY);
	ck_assert_int_eq(ring_producer_pending(&p), CAPACITY);
	free(memory);
}
END_TEST

/* Every way the other side can lie about its position is caught, and no span leaves the
 * data area. */
START_TEST(test_hostile_positions)
{
	void *memory = new_segment(CAPACITY);
	struct ring_segment *s = memory;
	struct ring_producer p;
	struct ring_consumer c;
	struct iovec iov[2];
	int spans;
	ring_producer_attach(&p, memory, CAPACITY, 1);
	ring_consumer_attach(&c, memory, CAPACITY, 1);
	char tmp[8];
	ck_assert_int_eq(ring_producer_write(&p, "0123456789", 10), 10);
	ck_assert_int_eq(ring_consumer_read(&c, tmp, 4), 4);

	/* the consumer's tail as seen by the producer */
	ck_assert_int_eq(ring_producer_reserve(&p, iov, &spans), CAPACITY - 6); /* sees tail 4 */
	atomic_store(&s->rings[1].tail, 11); /* past head */
	ck_assert_int_eq(ring_producer_reserve(&p, iov, &spans), WH_ERING_CORRUPT);
	ck_assert_int_eq(spans, 0);
	atomic_store(&s->rings[1].tail, 2); /* backwards */
	ck_assert_int_eq(ring_producer_reserve(&p, iov, &spans), WH_ERING_CORRUPT);
	atomic_store(&s->rings[1].tail, UINT64_MAX);
	ck_assert_int_eq(ring_producer_write(&p, "x", 1), WH_ERING_CORRUPT);
	atomic_store(&s->rings[1].tail, 4); /* the truth again */
	ck_assert_int_eq(ring_producer_reserve(&p, iov, &spans), CAPACITY - 6);

	/* the producer's head as seen by the consumer */
	atomic_store(&s->rings[1].head, 4 + CAPACITY + 1); /* more than capacity ahead */
	ck_assert_int_eq(ring_consumer_peek(&c, iov, &spans), WH_ERING_CORRUPT);
	atomic_store(&s->rings[1].head, 3); /* behind our tail */
	ck_assert_int_eq(ring_consumer_peek(&c, iov, &spans), WH_ERING_CORRUPT);
	atomic_store(&s->rings[1].head, 9); /* behind what it showed before (10) */
	ck_assert_int_eq(ring_consumer_read(&c, tmp, 4), WH_ERING_CORRUPT);
	atomic_store(&s->rings[1].head, 4 + CAPACITY); /* full, legal: spans stay inside */
	long held = ring_consumer_peek(&c, iov, &spans);
	ck_assert_int_eq(held, CAPACITY);
	uint8_t *data = (uint8_t *)memory + RING_DATA_OFFSET + CAPACITY;
	for (int i = 0; i < spans; i++) {
		ck_assert((uint8_t *)iov[i].iov_base >= data);
		ck_assert((uint8_t *)iov[i].iov_base + iov[i].iov_len <= data + CAPACITY);
	}
	/* the capacity field is never trusted after attach */
	s->capacity = 1u << 30;
	ck_assert_int_eq(ring_consumer_peek(&c, iov, &spans), CAPACITY);
	free(memory);
}
END_TEST

/* peek_at: bytes past an offset; bytes once returned stay returned when the producer then
 * corrupts its head (frames planned from them can still be sent); new bytes need a good head. */
START_TEST(test_peek_at_keeps_checked_bytes)
{
	void *memory = new_segment(CAPACITY);
	struct ring_segment *s = memory;
	struct ring_producer p;
	struct ring_consumer c;
	struct iovec iov[2];
	int spans;
	ring_producer_attach(&p, memory, CAPACITY, 0);
	ring_consumer_attach(&c, memory, CAPACITY, 0);
	char out[CAPACITY];
	/* near the end of the ring, so the bytes wrap */
	ck_assert_int_eq(ring_producer_write(&p, out, CAPACITY - 4), CAPACITY - 4);
	ck_assert_int_eq(ring_consumer_read(&c, out, CAPACITY - 4), CAPACITY - 4);
	ck_assert_int_eq(ring_producer_write(&p, "abcdefghij", 10), 10);
	ck_assert_int_eq(ring_consumer_peek_at(&c, 0, iov, &spans), 10);
	ck_assert_int_eq(spans, 2);
	ck_assert_int_eq(iov[0].iov_len, 4);
	ck_assert(memcmp(iov[0].iov_base, "abcd", 4) == 0);
	ck_assert(memcmp(iov[1].iov_base, "efghij", 6) == 0);
	ck_assert_int_eq(ring_consumer_peek_at(&c, 6, iov, &spans), 4);
	ck_assert_int_eq(spans, 1);
	ck_assert(memcmp(iov[0].iov_base, "ghij", 4) == 0);
	/* the head goes bad: checked bytes are still there, anything past them is an error */
	atomic_store(&s->rings[0].head, UINT64_MAX);
	ck_assert_int_eq(ring_consumer_peek_at(&c, 2, iov, &spans), 8);
	ck_assert(memcmp(iov[0].iov_base, "cd", 2) == 0);
	ck_assert_int_eq(ring_consumer_peek_at(&c, 10, iov, &spans), WH_ERING_CORRUPT);
	ck_assert_int_eq(spans, 0);
	ring_consumer_consume(&c, 10);
	ck_assert_int_eq(ring_consumer_peek_at(&c, 0, iov, &spans), WH_ERING_CORRUPT);
	/* a good head again: new bytes are seen once the checked ones are used up */
	atomic_store(&s->rings[0].head, (uint64_t)CAPACITY - 4 + 10);
	ck_assert_int_eq(ring_producer_write(&p, "kl", 2), 2);
	ck_assert_int_eq(ring_consumer_peek_at(&c, 0, iov, &spans), 2);
	ck_assert_int_eq(ring_consumer_peek_at(&c, 2, iov, &spans), 0);
	free(memory);
}
END_TEST

START_TEST(test_end_states)
{
	void *memory = new_segment(CAPACITY);
	struct ring_segment *s = memory;
	struct ring_producer p;
	struct ring_consumer c;
	int error;
	ring_producer_attach(&p, memory, CAPACITY, 0);
	ring_consumer_attach(&c, memory, CAPACITY, 0);
	ck_assert_int_eq(ring_consumer_peer_state(&c, &error), RING_OPEN);
	ring_producer_write(&p, "tail", 4);
	ring_producer_close(&p, WH_OK);
	ck_assert_int_eq(ring_consumer_peer_state(&c, &error), RING_CLOSED);
	char out[8];
	ck_assert_int_eq(ring_consumer_read(&c, out, sizeof out), 4); /* bytes before EOF */
	ring_producer_close(&p, WH_ETIMEOUT);
	ck_assert_int_eq(ring_consumer_peer_state(&c, &error), RING_FAILED);
	ck_assert_int_eq(error, WH_ETIMEOUT);
	/* a failure without an error code, or a made-up state, is itself corruption */
	atomic_store(&s->rings[0].producer_error, 7);
	ck_assert_int_eq(ring_consumer_peer_state(&c, &error), RING_FAILED);
	ck_assert_int_eq(error, WH_ERING_CORRUPT);
	atomic_store(&s->rings[0].producer_state, 12345);
	ck_assert_int_eq(ring_consumer_peer_state(&c, &error), RING_FAILED);
	ck_assert_int_eq(ring_producer_peer_state(&p, &error), RING_OPEN);
	ring_consumer_close(&c, WH_OK);
	ck_assert_int_eq(ring_producer_peer_state(&p, &error), RING_CLOSED);
	free(memory);
}
END_TEST

START_TEST(test_wake_flags)
{
	void *memory = new_segment(CAPACITY);
	struct ring_producer p;
	struct ring_consumer c;
	ring_producer_attach(&p, memory, CAPACITY, 0);
	ring_consumer_attach(&c, memory, CAPACITY, 0);
	ring_producer_write(&p, "a", 1);
	ck_assert(!ring_producer_wake_needed(&p)); /* nobody sleeps: no system call */
	ring_consumer_prepare_wait(&c);
	ring_producer_write(&p, "b", 1);
	ck_assert(ring_producer_wake_needed(&p));
	ck_assert(!ring_producer_wake_needed(&p)); /* one wake per sleep */
	ring_producer_prepare_wait(&p);
	char out[2];
	ring_consumer_read(&c, out, 2);
	ck_assert(ring_consumer_wake_needed(&c));
	ck_assert(!ring_consumer_wake_needed(&c));
	/* a sleeper announces itself on the word it sleeps on; the waker takes both flags */
	ring_consumer_prepare_sleep(&c);
	ck_assert_uint_eq(*ring_consumer_wait_word(&c), RING_WAIT_NEWS | RING_WAIT_SLEEPER);
	ring_producer_write(&p, "c", 1);
	ck_assert_uint_eq(ring_producer_wake_needed(&p), RING_WAIT_NEWS | RING_WAIT_SLEEPER);
	ck_assert_uint_eq(*ring_consumer_wait_word(&c), 0);
	ring_producer_prepare_sleep(&p);
	ck_assert_uint_eq(*ring_producer_wait_word(&p), RING_WAIT_NEWS | RING_WAIT_SLEEPER);
	ring_consumer_read(&c, out, 1);
	ck_assert_uint_eq(ring_consumer_wake_needed(&c), RING_WAIT_NEWS | RING_WAIT_SLEEPER);
	ck_assert_uint_eq(ring_consumer_wake_needed(&c), 0);
	free(memory);
}
END_TEST

/* A producer waiting for room is woken once half the ring is free, and then only once; its
 * announcement stays set below that, and a drained ring always wakes it. */
START_TEST(test_wake_with_room)
{
	void *memory = new_segment(CAPACITY);
	struct ring_producer p;
	struct ring_consumer c;
	ring_producer_attach(&p, memory, CAPACITY, 0);
	ring_consumer_attach(&c, memory, CAPACITY, 0);
	static uint8_t bytes[CAPACITY], out[CAPACITY];
	ck_assert_int_eq(ring_producer_write(&p, bytes, CAPACITY), CAPACITY);
	ring_producer_prepare_sleep(&p);
	ck_assert_int_eq(ring_consumer_read(&c, out, CAPACITY / 4), CAPACITY / 4);
	ck_assert_uint_eq(ring_consumer_wake_needed_with_room(&c, CAPACITY / 2), 0);
	ck_assert_uint_eq(*ring_producer_wait_word(&p), RING_WAIT_NEWS | RING_WAIT_SLEEPER);
	ck_assert_int_eq(ring_consumer_read(&c, out, CAPACITY / 4), CAPACITY / 4);
	ck_assert_uint_eq(ring_consumer_wake_needed_with_room(&c, CAPACITY / 2),
			  RING_WAIT_NEWS | RING_WAIT_SLEEPER);
	ck_assert_uint_eq(ring_consumer_wake_needed_with_room(&c, CAPACITY / 2), 0);
	/* asked for the whole ring: only a drained one wakes */
	ck_assert_int_eq(ring_producer_write(&p, bytes, CAPACITY / 2), CAPACITY / 2);
	ring_producer_prepare_wait(&p);
	ck_assert_int_eq(ring_consumer_read(&c, out, CAPACITY - 1), CAPACITY - 1);
	ck_assert_uint_eq(ring_consumer_wake_needed_with_room(&c, CAPACITY), 0);
	ck_assert_int_eq(ring_consumer_read(&c, out, 1), 1);
	ck_assert_uint_eq(ring_consumer_wake_needed_with_room(&c, CAPACITY), RING_WAIT_NEWS);
	free(memory);
}
END_TEST

START_TEST(test_notify_bitmaps)
{
	const uint32_t slots = 192;
	size_t size = notify_segment_size(slots);
	ck_assert_uint_eq(size, 192 + 2 * 64); /* 3 words each, one cache line each */
	ck_assert_uint_eq(notify_segment_size(640), 192 + 2 * 128);
	struct notify_segment *n = aligned_alloc(RING_CACHE_LINE, size);
	memset(n, 0, size);
	n->magic = NOTIFY_MAGIC;
	n->slots = slots;
	/* nobody armed: bits are set, nobody is woken */
	ck_assert(!notify_ring(n, slots, 5));
	ck_assert(!notify_post(n, slots, 7));
	/* the two directions never see each other's bits */
	ck_assert_uint_eq(notify_take(n, 0), 1ull << 5);
	ck_assert_uint_eq(notify_app_take(n, slots, 0), 1ull << 7);
	ck_assert_uint_eq(notify_take(n, 0), 0);
	ck_assert_uint_eq(notify_app_take(n, slots, 0), 0);
	for (uint32_t slot = 0; slot < slots; slot++)
		notify_ring(n, slots, slot);
	for (uint32_t word = 0; word < slots / 64; word++)
		ck_assert_uint_eq(notify_app_take(n, slots, word), 0);
	for (uint32_t word = 0; word < slots / 64; word++)
		ck_assert_uint_eq(notify_take(n, word), UINT64_MAX);
	/* armed: the first post wakes, the next ones do not until re-armed */
	notify_app_arm(n);
	ck_assert(notify_post(n, slots, 130));
	ck_assert(!notify_post(n, slots, 131));
	ck_assert(notify_posted(n, slots, 131));
	ck_assert(!notify_posted(n, slots, 132));
	ck_assert_uint_eq(notify_app_take(n, slots, 2), 3ull << 2);
	ck_assert(!notify_posted(n, slots, 131));
	notify_app_arm(n);
	notify_app_disarm(n);
	ck_assert(!notify_post(n, slots, 0));
	notify_arm(n);
	ck_assert(notify_ring(n, slots, 64));
	/* slots and words past the end are ignored, never touched */
	ck_assert(!notify_post(n, slots, slots));
	ck_assert(!notify_posted(n, slots, slots));
	ck_assert(!notify_ring(n, slots, UINT32_MAX));
	ck_assert_uint_eq(notify_app_take(n, slots, slots / 64), 0);
	ck_assert_uint_eq(notify_app_take(n, slots, UINT32_MAX), 0);
	free(n);
}
END_TEST

/* Two threads at full speed, each sleeping by the documented protocol on an eventfd (run 0)
 * or on the ring's own wait word with futex(2) (run 1). A lost
 * wake-up would leave one asleep until the poll timeout; any timeout fails the test. */
struct stress {
	bool futex; /* sleep on the ring's own wait word (as the library does), else an eventfd */
	void *memory;
	int wake_consumer, wake_producer;
	size_t total;
	int timeouts;
	bool corrupt;
};

static void sleep_on(int fd, int *timeouts)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	if (poll(&pfd, 1, 2000) == 0)
		(*timeouts)++;
	uint64_t value;
	if (pfd.revents & POLLIN)
		(void)!read(fd, &value, sizeof value);
}

static void wake(int fd)
{
	uint64_t one = 1;
	(void)!write(fd, &one, sizeof one);
}

/* The library's way: announce a sleeper, look again, sleep on the flag's own word. */
static void futex_sleep_on(uint32_t *word, int *timeouts)
{
	if (futex_wait_shared(word, RING_WAIT_NEWS | RING_WAIT_SLEEPER, 2000000000) == ETIMEDOUT)
		(*timeouts)++;
}

static void wake_by(const struct stress *st, int fd, uint32_t *word, uint32_t flags)
{
	if (!flags)
		return;
	if (st->futex) {
		if (flags & RING_WAIT_SLEEPER)
			futex_wake_shared(word);
	} else {
		wake(fd);
	}
}

static uint8_t stress_byte(size_t i)
{
	return (uint8_t)(i * 31 + (i >> 11));
}

static void *producer_thread(void *arg)
{
	struct stress *st = arg;
	struct ring_producer p;
	ring_producer_attach(&p, st->memory, CAPACITY, 0);
	size_t sent = 0;
	while (sent < st->total) {
		struct iovec iov[2];
		int spans;
		long room = ring_producer_reserve(&p, iov, &spans);
		if (room < 0) {
			st->corrupt = true;
			break;
		}
		if (room == 0) {
			if (st->futex)
				ring_producer_prepare_sleep(&p);
			else
				ring_producer_prepare_wait(&p);
			if (ring_producer_reserve(&p, iov, &spans) != 0)
				continue;
			if (st->futex)
				futex_sleep_on(ring_producer_wait_word(&p), &st->timeouts);
			else
				sleep_on(st->wake_producer, &st->timeouts);
			continue;
		}
		size_t n = 0;
		for (int i = 0; i < spans; i++)
			for (size_t j = 0; j < iov[i].iov_len && sent + n < st->total; j++, n++)
				((uint8_t *)iov[i].iov_base)[j] = stress_byte(sent + n);
		ring_producer_commit(&p, n);
		sent += n;
		wake_by(st, st->wake_consumer, ring_producer_wake_word(&p), ring_producer_wake_needed(&p));
	}
	ring_producer_close(&p, WH_OK);
	wake_by(st, st->wake_consumer, ring_producer_wake_word(&p), ring_producer_wake_needed(&p));
	return NULL;
}

START_TEST(test_two_threads_no_lost_wakeups)
{
	struct stress st = {
		.futex = _i & 1,
		.memory = new_segment(CAPACITY),
		.wake_consumer = eventfd(0, EFD_CLOEXEC),
		.wake_producer = eventfd(0, EFD_CLOEXEC),
		.total = 64u << 20,
	};
	/* in runs 2 and 3 the consumer takes at most 700 bytes at a time and wakes the producer
	 * only once half the ring is free, as the broker does */
	size_t room = _i & 2 ? CAPACITY / 2 : 0, most = _i & 2 ? 700 : SIZE_MAX;
	pthread_t thread;
	pthread_create(&thread, NULL, producer_thread, &st);
	struct ring_consumer c;
	ring_consumer_attach(&c, st.memory, CAPACITY, 0);
	size_t received = 0;
	bool mismatch = false;
	int error, consumer_timeouts = 0;
	for (;;) {
		struct iovec iov[2];
		int spans;
		long held = ring_consumer_peek(&c, iov, &spans);
		ck_assert_int_ge(held, 0);
		if (held == 0) {
			if (ring_consumer_peer_state(&c, &error) == RING_CLOSED &&
			    ring_consumer_peek(&c, iov, &spans) == 0)
				break;
			if (st.futex)
				ring_consumer_prepare_sleep(&c);
			else
				ring_consumer_prepare_wait(&c);
			if (ring_consumer_peek(&c, iov, &spans) != 0 ||
			    ring_consumer_peer_state(&c, &error) != RING_OPEN)
				continue;
			if (st.futex)
				futex_sleep_on(ring_consumer_wait_word(&c), &consumer_timeouts);
			else
				sleep_on(st.wake_consumer, &consumer_timeouts);
			continue;
		}
		for (int i = 0; i < spans; i++)
			for (size_t j = 0; j < iov[i].iov_len; j++)
				mismatch |= ((uint8_t *)iov[i].iov_base)[j] != stress_byte(received + j +
						   (i ? iov[0].iov_len : 0));
		size_t take = (size_t)held < most ? (size_t)held : most;
		ring_consumer_consume(&c, take);
		received += take;
		wake_by(&st, st.wake_producer, ring_consumer_wake_word(&c),
			ring_consumer_wake_needed_with_room(&c, room));
	}
	pthread_join(thread, NULL);
	ck_assert_uint_eq(received, st.total);
	ck_assert(!mismatch);
	ck_assert(!st.corrupt);
	ck_assert_int_eq(st.timeouts, 0);
	ck_assert_int_eq(consumer_timeouts, 0);
	close(st.wake_consumer);
	close(st.wake_producer);
	free(st.memory);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("ring");
	TCase *tc = tcase_create("ring");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_segment_header_checks);
	tcase_add_test(tc, test_write_read_wraps);
	tcase_add_test(tc, test_hostile_positions);
	tcase_add_test(tc, test_peek_at_keeps_checked_bytes);
	tcase_add_test(tc, test_end_states);
	tcase_add_test(tc, test_wake_flags);
	tcase_add_test(tc, test_wake_with_room);
	tcase_add_test(tc, test_notify_bitmaps);
	tcase_add_loop_test(tc, test_two_threads_no_lost_wakeups, 0, 4); /* eventfd, futex; each with waking at half free */
	suite_add_tcase(suite, tc);
	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
