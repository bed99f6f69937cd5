/* Fuzz target: a hostile peer rewrites ring positions and states between our operations.
 * Whatever it writes, our side must stay inside the data area and report corruption. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CAPACITY 4096u

static uint64_t take_u64(const uint8_t **data, size_t *size)
{
	uint64_t value = 0;
	size_t n = *size < 8 ? *size : 8;
	memcpy(&value, *data, n);
	*data += n;
	*size -= n;
	return value;
}

static void check_spans(const struct iovec *iov, int spans, const uint8_t *area)
{
	for (int i = 0; i < spans; i++)
		if ((const uint8_t *)iov[i].iov_base < area ||
		    (const uint8_t *)iov[i].iov_base + iov[i].iov_len > area + FUZZ_CAPACITY)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t segment_size = ring_segment_size(FUZZ_CAPACITY);
	/* exactly sized, so AddressSanitizer catches any access past the end */
	uint8_t *memory = malloc(segment_size);
	memset(memory, 0, segment_size);
	if (ring_segment_init(memory, segment_size, FUZZ_CAPACITY, 1) != WH_OK)
		abort();
	struct ring_segment *segment = (struct ring_segment *)memory;
	struct ring_producer p;
	struct ring_consumer c;
	ring_producer_attach(&p, memory, FUZZ_CAPACITY, 0);
	ring_consumer_attach(&c, memory, FUZZ_CAPACITY, 0);
	const uint8_t *area = memory + RING_DATA_OFFSET;
	static uint8_t scratch[2 * FUZZ_CAPACITY];
	struct iovec iov[2];
	int spans, error;
	while (size > 0) {
		uint8_t op = *data++;
		size--;
		uint64_t value = take_u64(&data, &size);
		long n;
		switch (op % 10) {
		case 0:
			n = ring_producer_write(&p, scratch, value % sizeof scratch);
			if (n > (long)FUZZ_CAPACITY)
				abort();
			break;
		case 1:
			n = ring_consumer_read(&c, scratch, value % sizeof scratch);
			if (n > (long)FUZZ_CAPACITY)
				abort();
			break;
		case 2:
			n = ring_producer_reserve(&p, iov, &spans);
			check_spans(iov, spans, area);
			break;
		case 3:
			n = ring_consumer_peek(&c, iov, &spans);
			check_spans(iov, spans, area);
			break;
		case 4: /* the hostile peer rewrites a position */
			atomic_store(&segment->rings[0].head, value);
			break;
		case 5:
			atomic_store(&segment->rings[0].tail, value);
			break;
		case 6:
			atomic_store(&segment->rings[0].producer_state, (uint32_t)value);
			atomic_store(&segment->rings[0].producer_error, (int32_t)(value >> 32));
			(void)ring_consumer_peer_state(&c, &error);
			if (ring_consumer_peer_state(&c, &error) == RING_FAILED && error >= 0)
				abort(); /* a failure always reports an error code */
			break;
		case 7:
			atomic_store(&segment->rings[0].consumer_state, (uint32_t)value);
			atomic_store(&segment->rings[0].consumer_error, (int32_t)(value >> 32));
			if (ring_producer_peer_state(&p, &error) == RING_FAILED && error >= 0)
				abort();
			break;
		case 8:
			segment->capacity = (uint32_t)value; /* never re-read after attach */
			break;
		case 9:
			(void)ring_producer_wake_needed(&p);
			(void)ring_consumer_wake_needed(&c);
			(void)ring_consumer_wake_needed_with_room(&c, (size_t)(value % (2u * FUZZ_CAPACITY + 1)));
			break;
		}
	}
	free(memory);
	return 0;
}
