/* Fuzz target: the incremental frame decoder must agree with itself across any input split. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A running digest of the event sequence, so two decodings can be compared cheaply. */
struct digest {
	uint64_t hash;
	size_t consumed;
	bool failed;
};

static void mix(struct digest *digest, const void *bytes, size_t length)
{
	const uint8_t *p = bytes;
	for (size_t i = 0; i < length; i++)
		digest->hash = (digest->hash ^ p[i]) * 0x100000001b3ULL;
}

/* DATA payload pieces are hashed as bytes (not per piece), so split points do not matter. */
static void digest_event(struct digest *digest, const struct frame_event *event)
{
	uint8_t kind = (uint8_t)event->kind;
	/* NONE and the piece boundaries of DATA depend on the split, not on the input. */
	if (event->kind != FRAME_EVENT_DATA_CHUNK && event->kind != FRAME_EVENT_NONE)
		mix(digest, &kind, 1);
	switch (event->kind) {
	case FRAME_EVENT_CONTROL:
		mix(digest, &event->header, sizeof event->header);
		mix(digest, event->payload, event->payload_length);
		break;
	case FRAME_EVENT_DATA_HEADER:
		mix(digest, &event->header, sizeof event->header);
		break;
	case FRAME_EVENT_DATA_CHUNK:
		mix(digest, event->payload, event->payload_length);
		break;
	case FRAME_EVENT_MALFORMED:
		mix(digest, &event->error, sizeof event->error);
		mix(digest, &event->fatal, sizeof event->fatal);
		break;
	case FRAME_EVENT_NONE:
		break;
	}
}

/* Re-encoding a whole control frame must give back the bytes it was decoded from. */
static void check_control_roundtrip(const struct frame_event *event, const uint8_t *frame_start,
				    size_t available)
{
	if (event->truncated || available < FRAME_HEADER_SIZE + event->payload_length)
		return;
	static uint8_t out[FRAME_HEADER_SIZE + FRAME_CONTROL_MAX];
	int written = frame_encode(out, sizeof out, event->header.type, event->header.stream_id,
				   event->payload, event->payload_length);
	if (written < 0 || memcmp(out, frame_start, (size_t)written) != 0)
		abort();
}

/* A HANDSHAKE payload parses to a name without NUL of at most 255 bytes, within the payload;
 * the name and client it gave encode to a payload that parses to the same. */
static void check_handshake_payload(const struct frame_event *event)
{
	struct frame_handshake hs, again;
	if (frame_handshake_payload_parse(event->payload, event->payload_length, &hs) != WH_OK)
		return;
	if (hs.service_length > FRAME_SERVICE_NAME_MAX || hs.service_length > event->payload_length ||
	    (hs.service_length && memchr(hs.service, 0, hs.service_length)))
		abort();
	char name[FRAME_SERVICE_NAME_MAX + 1];
	memcpy(name, hs.service, hs.service_length);
	name[hs.service_length] = '\0';
	uint8_t out[FRAME_HANDSHAKE_PAYLOAD_MAX];
	int n = frame_handshake_payload_encode(out, sizeof out, name, hs.has_client ? &hs.client : NULL);
	if (n < 0 || frame_handshake_payload_parse(out, (size_t)n, &again) != WH_OK ||
	    again.service_length != hs.service_length || again.has_client != hs.has_client ||
	    (hs.has_client && memcmp(&again.client, &hs.client, sizeof hs.client) != 0))
		abort();
}

/* Feeds data in pieces whose sizes come from the split pattern (0 means all at once). */
static struct digest decode(const uint8_t *data, size_t size, uint32_t max_payload, uint8_t split)
{
	struct frame_decoder decoder;
	struct digest digest = { .hash = 0xcbf29ce484222325ULL };
	if (frame_decoder_init(&decoder, max_payload) != WH_OK)
		abort();
	size_t offset = 0, frame_start = 0;
	while (offset < size) {
		size_t piece = split ? (size_t)(split % 7) + 1 : size - offset;
		if (piece > size - offset)
			piece = size - offset;
		struct frame_event event;
		size_t used = frame_decoder_feed(&decoder, data + offset, piece, &event);
		if (used > piece)
			abort();
		if (event.kind == FRAME_EVENT_CONTROL && !split)
			check_control_roundtrip(&event, data + frame_start, size - frame_start);
		if (event.kind == FRAME_EVENT_CONTROL && !split && event.header.type == FRAME_HANDSHAKE)
			check_handshake_payload(&event);
		digest_event(&digest, &event);
		offset += used;
		if (event.kind == FRAME_EVENT_MALFORMED && event.fatal) {
			digest.failed = true;
			break;
		}
		if (frame_decoder_finish(&decoder) == WH_OK)
			frame_start = offset; /* on a frame boundary */
		if (used == 0 && event.kind == FRAME_EVENT_NONE)
			abort(); /* no progress and nothing to say: a stuck decoder */
	}
	digest.consumed = offset;
	int finish = frame_decoder_finish(&decoder);
	if (digest.failed ? finish >= 0 : (finish != WH_OK && finish != WH_EUNEXPECTED_EOF))
		abort();
	return digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	/* Byte 0 picks the per-codec ceiling (small ones reach the too-large paths), byte 1 a
	 * split pattern; the rest is the wire input. */
	static const uint32_t ceilings[] = { 0, 1, 4, 16, 100, FRAME_DEFAULT_PAYLOAD,
					     FRAME_MAX_PAYLOAD };
	uint32_t max_payload = ceilings[data[0] % (sizeof ceilings / sizeof ceilings[0])];
	uint8_t split = data[1] | 1;
	data += 2;
	size -= 2;

	struct digest whole = decode(data, size, max_payload, 0);
	struct digest pieces = decode(data, size, max_payload, split);
	if (whole.hash != pieces.hash || whole.consumed != pieces.consumed ||
	    whole.failed != pieces.failed)
		abort();
	return 0;
}
