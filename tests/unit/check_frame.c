/* Unit tests of the frame codec: golden bytes, round trips, every error path, the decoder. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

/* ---- helpers ------------------------------------------------------------------------ */

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	for (const char *p = hex; *p;) {
		if (*p == ' ') {
			p++;
			continue;
		}
		ck_assert_uint_lt(n, cap);
		char byte[3] = { p[0], p[1], 0 };
		out[n++] = (uint8_t)strtoul(byte, NULL, 16);
		p += 2;
	}
	return n;
}

static void assert_bytes(const uint8_t *got, int got_len, const char *expected_hex)
{
	uint8_t expected[256];
	size_t n = unhex(expected_hex, expected, sizeof expected);
	ck_assert_int_eq(got_len, (int)n);
	ck_assert_mem_eq(got, expected, n);
}

/* Everything a decoding produced, flattened so two decodings can be compared. */
struct decoded {
	int controls, data_headers, malformed;
	struct frame_header last_header;
	uint8_t control_payload[FRAME_CONTROL_MAX];
	uint32_t control_length;
	bool truncated;
	uint8_t data[1 << 16];
	size_t data_length;
	int last_error;
	bool fatal;
	size_t consumed;
};

/* Feeds `wire` in pieces of `piece` bytes (0: all at once; SIZE_MAX: random sizes). */
static void decode_all(const uint8_t *wire, size_t length, uint32_t max_payload, size_t piece,
		       struct decoded *out)
{
	struct frame_decoder decoder;
	memset(out, 0, sizeof *out);
	ck_assert_int_eq(frame_decoder_init(&decoder, max_payload), WH_OK);
	unsigned seed = 12345;
	size_t offset = 0;
	while (offset < length) {
		size_t n = piece == 0 ? length - offset : piece;
		if (piece == SIZE_MAX)
			n = (size_t)(rand_r(&seed) % 13) + 1;
		if (n > length - offset)
			n = length - offset;
		struct frame_event ev;
		size_t used = frame_decoder_feed(&decoder, wire + offset, n, &ev);
		offset += used;
		switch (ev.kind) {
		case FRAME_EVENT_CONTROL:
			out->controls++;
			out->last_header = ev.header;
			memcpy(out->control_payload, ev.payload, ev.payload_length);
			out->control_length = ev.payload_length;
			out->truncated = ev.truncated;
			break;
		case FRAME_EVENT_DATA_HEADER:
			out->data_headers++;
			out->last_header = ev.header;
			break;
		case FRAME_EVENT_DATA_CHUNK:
			ck_assert_uint_le(out->data_length + ev.payload_length, sizeof out->data);
			memcpy(out->data + out->data_length, ev.payload, ev.payload_length);
			out->data_length += ev.payload_length;
			break;
		case FRAME_EVENT_MALFORMED:
			out->malformed++;
			out->last_error = ev.error;
			out->fatal = ev.fatal;
			out->last_header = ev.header;
			break;
		case FRAME_EVENT_NONE:
			ck_assert_uint_gt(used, 0);
			break;
		}
		if (out->fatal)
			break;
	}
	out->consumed = offset;
}

static size_t put_frame(uint8_t *out, uint8_t version, uint8_t type, uint32_t stream_id,
			uint32_t length, const void *payload, size_t payload_length)
{
	struct frame_header h = { version, type, stream_id, length };
	frame_header_pack(out, &h);
	if (payload_length)
		memcpy(out + FRAME_HEADER_SIZE, payload, payload_length);
	return FRAME_HEADER_SIZE + payload_length;
}

/* ---- golden bytes: exactly what the reference puts on the wire ----------------------- */

START_TEST(test_golden_handshake)
{
	uint8_t out[64];
	assert_bytes(out, frame_encode_handshake(out, sizeof out, 1, NULL, 0), "01 06 00000001 00000000");
}
END_TEST

START_TEST(test_golden_data)
{
	uint8_t out[64];
	assert_bytes(out, frame_encode_data(out, sizeof out, 1, "hi", 2), "01 01 00000001 00000002 6869");
}
END_TEST

START_TEST(test_golden_window_update)
{
	uint8_t out[64];
	assert_bytes(out, frame_encode_window_update(out, sizeof out, 3, 65536),
		     "01 02 00000003 00000004 00010000");
}
END_TEST

START_TEST(test_golden_ping_pong)
{
	uint8_t out[64];
	assert_bytes(out, frame_encode_ping(out, sizeof out, 7), "01 03 00000000 00000004 00000007");
	assert_bytes(out, frame_encode_pong(out, sizeof out, 7), "01 04 00000000 00000004 00000007");
}
END_TEST

START_TEST(test_golden_close)
{
	uint8_t out[64];
	assert_bytes(out, frame_encode_close(out, sizeof out, 5), "01 05 00000005 00000000");
}
END_TEST

START_TEST(test_golden_error)
{
	uint8_t out[64];
	const char *msg = "accept queue full";
	assert_bytes(out, frame_encode_error(out, sizeof out, 513, 503, msg, strlen(msg)),
		     "01 07 00000201 00000015 000001f7 61636365707420717565756520 66756c6c");
}
END_TEST

START_TEST(test_golden_data_header_only)
{
	uint8_t out[FRAME_HEADER_SIZE];
	assert_bytes(out, frame_encode_data_header(out, sizeof out, 0x01020304, 0x8000),
		     "01 01 01020304 00008000");
}
END_TEST

/* ---- round trips of every type ------------------------------------------------------ */

static void roundtrip_control(const uint8_t *wire, int length, struct decoded *d)
{
	ck_assert_int_gt(length, 0);
	decode_all(wire, (size_t)length, 0, 0, d);
	ck_assert_int_eq(d->controls, 1);
	ck_assert_int_eq(d->malformed, 0);
	ck_assert_uint_eq(d->consumed, (size_t)length);
}

START_TEST(test_roundtrip_every_type)
{
	static struct decoded d;
	uint8_t out[FRAME_HEADER_SIZE + FRAME_CONTROL_MAX];
	uint32_t value;

	int n = frame_encode_window_update(out, sizeof out, 9, 0xFFFFFFFFu);
	roundtrip_control(out, n, &d);
	ck_assert_int_eq(frame_parse_window_update(&d.last_header, d.control_payload, &value), WH_OK);
	ck_assert_uint_eq(value, 0xFFFFFFFFu);
	ck_assert_uint_eq(d.last_header.stream_id, 9);

	n = frame_encode_ping(out, sizeof out, 0xDEADBEEF);
	roundtrip_control(out, n, &d);
	ck_assert_int_eq(frame_parse_ping(&d.last_header, d.control_payload, &value), WH_OK);
	ck_assert_uint_eq(value, 0xDEADBEEF);

	n = frame_encode_pong(out, sizeof out, 42);
	roundtrip_control(out, n, &d);
	ck_assert_int_eq(frame_parse_pong(&d.last_header, d.control_payload, &value), WH_OK);
	ck_assert_uint_eq(value, 42);

	n = frame_encode_close(out, sizeof out, 0xFFFFFFFFu);
	roundtrip_control(out, n, &d);
	ck_assert_uint_eq(d.last_header.type, FRAME_CLOSE);
	ck_assert_uint_eq(d.last_header.stream_id, 0xFFFFFFFFu);

	n = frame_encode_handshake(out, sizeof out, 2, "service", 7);
	roundtrip_control(out, n, &d);
	ck_assert_uint_eq(d.last_header.type, FRAME_HANDSHAKE);
	ck_assert_uint_eq(d.control_length, 7);
	ck_assert_mem_eq(d.control_payload, "service", 7);

	n = frame_encode_error(out, sizeof out, 0, 505, "bye", 3);
	roundtrip_control(out, n, &d);
	uint32_t code;
	const char *msg;
	size_t msg_len;
	ck_assert_int_eq(frame_parse_error(&d.last_header, d.control_payload, d.control_length, &code,
					   &msg, &msg_len), WH_OK);
	ck_assert_uint_eq(code, 505);
	ck_assert_uint_eq(msg_len, 3);
	ck_assert_mem_eq(msg, "bye", 3);
	ck_assert(frame_is_connection_level(&d.last_header));

	n = frame_encode_data(out, sizeof out, 11, "payload", 7);
	decode_all(out, (size_t)n, 0, 0, &d);
	ck_assert_int_eq(d.data_headers, 1);
	ck_assert_uint_eq(d.data_length, 7);
	ck_assert_mem_eq(d.data, "payload", 7);
	ck_assert_uint_eq(d.last_header.stream_id, 11);
}
END_TEST

START_TEST(test_type_names_and_roles)
{
	ck_assert_str_eq(frame_type_name(FRAME_DATA), "DATA");
	ck_assert_str_eq(frame_type_name(FRAME_PONG), "PONG");
	ck_assert_str_eq(frame_type_name(FRAME_ERROR), "ERROR");
	ck_assert_str_eq(frame_type_name(0), "UNKNOWN");
	ck_assert_str_eq(frame_type_name(8), "UNKNOWN");
	ck_assert(frame_stream_id_is_local(1, true));
	ck_assert(!frame_stream_id_is_local(2, true));
	ck_assert(frame_stream_id_is_local(2, false));
	ck_assert(!frame_stream_id_is_local(0, false));
	ck_assert(!frame_stream_id_is_local(0, true));
}
END_TEST

/* ---- encoder error paths ------------------------------------------------------------ */

START_TEST(test_encode_errors)
{
	uint8_t out[64];
	ck_assert_int_eq(frame_encode_data(out, 11, 1, "hi", 2), WH_EBUFFER_TOO_SMALL);
	ck_assert_int_eq(frame_encode_data(out, 12, 1, "hi", 2), 12);
	ck_assert_int_eq(frame_encode_data(out, sizeof out, 0, "hi", 2), WH_EINVALID_STREAM_ID);
	ck_assert_int_eq(frame_encode_data(out, sizeof out, 1, NULL, 2), WH_EINVAL);
	ck_assert_int_eq(frame_encode_data(NULL, 10, 1, "x", 1), WH_EINVAL);
	ck_assert_int_eq(frame_encode_data_header(out, 9, 1, 1), WH_EBUFFER_TOO_SMALL);
	ck_assert_int_eq(frame_encode_data_header(out, 10, 1, FRAME_MAX_PAYLOAD), 10);
	ck_assert_int_eq(frame_encode_data_header(out, 10, 1, FRAME_MAX_PAYLOAD + 1),
			 WH_EPAYLOAD_TOO_LARGE);
	ck_assert_int_eq(frame_encode_window_update(out, sizeof out, 1, 0), WH_EINVAL);
	ck_assert_int_eq(frame_encode_window_update(out, sizeof out, 0, 1), WH_EINVALID_STREAM_ID);
	ck_assert_int_eq(frame_encode_window_update(out, 13, 1, 1), WH_EBUFFER_TOO_SMALL);
	ck_assert_int_eq(frame_encode_ping(out, 13, 1), WH_EBUFFER_TOO_SMALL);
	ck_assert_int_eq(frame_encode_close(out, sizeof out, 0), WH_EINVALID_STREAM_ID);
	ck_assert_int_eq(frame_encode_handshake(out, sizeof out, 0, NULL, 0), WH_EINVALID_STREAM_ID);
	ck_assert_int_eq(frame_encode_handshake(out, sizeof out, 1, out, FRAME_CONTROL_MAX + 1),
			 WH_EPAYLOAD_TOO_LARGE);
	ck_assert_int_eq(frame_encode_error(out, sizeof out, 1, 1, NULL, 3), WH_EINVAL);
	ck_assert_int_eq(frame_encode_error(out, 15, 1, 1, "ab", 2), WH_EBUFFER_TOO_SMALL);
	ck_assert_int_eq(frame_encode_error(out, sizeof out, 1, 1, "ab", FRAME_CONTROL_MAX),
			 WH_EPAYLOAD_TOO_LARGE);
	ck_assert_int_eq(frame_encode(out, sizeof out, (enum frame_type)0, 1, NULL, 0),
			 WH_EINVALID_FRAME_TYPE);
	ck_assert_int_eq(frame_encode(out, sizeof out, (enum frame_type)8, 1, NULL, 0),
			 WH_EINVALID_FRAME_TYPE);
	ck_assert_int_eq(frame_encode(out, sizeof out, FRAME_PING, 3, "abcd", 4), WH_EINVALID_STREAM_ID);
}
END_TEST

/* ---- parse helper error paths ------------------------------------------------------- */

START_TEST(test_parse_errors)
{
	uint8_t payload[8] = { 0, 0, 0, 9, 'x' };
	uint32_t value, code;
	const char *msg;
	size_t msg_len;
	struct frame_header h = { 1, FRAME_WINDOW_UPDATE, 1, 4 };

	ck_assert_int_eq(frame_parse_ping(&h, payload, &value), WH_EINVALID_FRAME_TYPE);
	ck_assert_int_eq(frame_parse_pong(&h, payload, &value), WH_EINVALID_FRAME_TYPE);
	ck_assert_int_eq(frame_parse_window_update(&h, payload, &value), WH_OK);
	ck_assert_uint_eq(value, 9);
	h.length = 3;
	ck_assert_int_eq(frame_parse_window_update(&h, payload, &value), WH_EFRAME_TOO_SHORT);
	h.length = 5;
	ck_assert_int_eq(frame_parse_window_update(&h, payload, &value), WH_EPAYLOAD_TOO_LARGE);
	ck_assert_int_eq(frame_parse_window_update(&h, NULL, &value), WH_EINVAL);
	ck_assert_int_eq(frame_parse_window_update(&h, payload, NULL), WH_EINVAL);

	struct frame_header e = { 1, FRAME_ERROR, 1, 3 };
	ck_assert_int_eq(frame_parse_error(&e, payload, 3, &code, &msg, &msg_len), WH_EFRAME_TOO_SHORT);
	e.length = 5;
	ck_assert_int_eq(frame_parse_error(&e, payload, 6, &code, &msg, &msg_len), WH_EFRAME_TOO_SHORT);
	ck_assert_int_eq(frame_parse_error(&e, payload, 5, &code, &msg, &msg_len), WH_OK);
	ck_assert_uint_eq(code, 9);
	ck_assert_uint_eq(msg_len, 1);
	ck_assert_int_eq(frame_parse_error(&h, payload, 5, &code, &msg, &msg_len),
			 WH_EINVALID_FRAME_TYPE);
	ck_assert_int_eq(frame_parse_error(&e, payload, 5, &code, NULL, &msg_len), WH_EINVAL);
}
END_TEST

START_TEST(test_wire_error_codes)
{
	ck_assert_uint_eq(frame_error_code_for(WH_EACCEPT_QUEUE_FULL), 503);
	ck_assert_uint_eq(frame_error_code_for(WH_EFLOW_CONTROL), FRAME_ERR_FLOW_CONTROL);
	ck_assert_uint_eq(frame_error_code_for(WH_EINVALID_FRAME_TYPE), FRAME_ERR_PROTOCOL);
	ck_assert_uint_eq(frame_error_code_for(WH_ENOMEM), FRAME_ERR_INTERNAL);
	ck_assert_int_eq(frame_error_from_code(503), WH_EACCEPT_QUEUE_FULL);
	ck_assert_int_eq(frame_error_from_code(FRAME_ERR_NO_SERVICE), WH_ENO_SERVICE);
	ck_assert_int_eq(frame_error_from_code(12345), WH_EREMOTE);
	/* every code we send maps back to a WH_E* code */
	const uint32_t codes[] = { 400, 404, 409, 413, 429, 499, 500, 502, 503, 504, 505 };
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
		ck_assert_int_lt(frame_error_from_code(codes[i]), 0);
}
END_TEST

/* ---- header checks: every rule -------------------------------------------------------- */

START_TEST(test_header_check_rules)
{
	const uint32_t max = FRAME_DEFAULT_PAYLOAD;
	struct frame_header h = { 1, FRAME_DATA, 1, 0 };
	ck_assert_int_eq(frame_header_check(&h, max), WH_OK);
	h.version = 2;
	ck_assert_int_eq(frame_header_check(&h, max), WH_EINVALID_VERSION);
	h.version = 0;
	ck_assert_int_eq(frame_header_check(&h, max), WH_EINVALID_VERSION);
	h = (struct frame_header){ 1, 0, 1, 0 };
	ck_assert_int_eq(frame_header_check(&h, max), WH_EINVALID_FRAME_TYPE);
	h.type = 8;
	ck_assert_int_eq(frame_header_check(&h, max), WH_EINVALID_FRAME_TYPE);
	h = (struct frame_header){ 1, FRAME_DATA, 0, 1 };
	ck_assert_int_eq(frame_header_check(&h, max), WH_EINVALID_STREAM_ID);
	h = (struct frame_header){ 1, FRAME_PING, 1, 4 };
	ck_assert_int_eq(frame_header_check(&h, max), WH_EINVALID_STREAM_ID);
	h = (struct frame_header){ 1, FRAME_PONG, 0, 3 };
	ck_assert_int_eq(frame_header_check(&h, max), WH_EFRAME_TOO_SHORT);
	h = (struct frame_header){ 1, FRAME_PONG, 0, 5 };
	ck_assert_int_eq(frame_header_check(&h, max), WH_EPAYLOAD_TOO_LARGE);
	h = (struct frame_header){ 1, FRAME_ERROR, 0, 3 };
	ck_assert_int_eq(frame_header_check(&h, max), WH_EFRAME_TOO_SHORT);
	h = (struct frame_header){ 1, FRAME_ERROR, 7, 4 };
	ck_assert_int_eq(frame_header_check(&h, max), WH_OK);
	h = (struct frame_header){ 1, FRAME_HANDSHAKE, 3, FRAME_CONTROL_MAX };
	ck_assert_int_eq(frame_header_check(&h, max), WH_OK);
	h.length++;
	ck_assert_int_eq(frame_header_check(&h, max), WH_EPAYLOAD_TOO_LARGE);
	h = (struct frame_header){ 1, FRAME_CLOSE, 3, FRAME_CONTROL_MAX + 1 };
	ck_assert_int_eq(frame_header_check(&h, max), WH_EPAYLOAD_TOO_LARGE);
	h = (struct frame_header){ 1, FRAME_CLOSE, 0, 0 };
	ck_assert_int_eq(frame_header_check(&h, max), WH_EINVALID_STREAM_ID);
}
END_TEST

/* DATA lengths at 0, 1, the per-codec ceiling, one past it, the absolute ceiling and past. */
START_TEST(test_header_check_boundaries)
{
	const uint32_t ceilings[] = { 1, 100, FRAME_DEFAULT_PAYLOAD, FRAME_MAX_PAYLOAD };
	for (size_t i = 0; i < sizeof ceilings / sizeof ceilings[0]; i++) {
		uint32_t max = ceilings[i];
		struct frame_header h = { 1, FRAME_DATA, 1, 0 };
		ck_assert_int_eq(frame_header_check(&h, max), WH_OK);
		h.length = 1;
		ck_assert_int_eq(frame_header_check(&h, max), WH_OK);
		h.length = max;
		ck_assert_int_eq(frame_header_check(&h, max), WH_OK);
		h.length = max + 1;
		ck_assert_int_eq(frame_header_check(&h, max), WH_EPAYLOAD_TOO_LARGE);
	}
	struct frame_header h = { 1, FRAME_DATA, 1, FRAME_MAX_PAYLOAD + 1 };
	ck_assert_int_eq(frame_header_check(&h, FRAME_MAX_PAYLOAD), WH_EPAYLOAD_TOO_LARGE);
	h.length = 0xFFFFFFFFu;
	ck_assert_int_eq(frame_header_check(&h, FRAME_MAX_PAYLOAD), WH_EPAYLOAD_TOO_LARGE);
}
END_TEST

/* ---- decoder ------------------------------------------------------------------------ */

START_TEST(test_decoder_init)
{
	struct frame_decoder d;
	ck_assert_int_eq(frame_decoder_init(&d, FRAME_MAX_PAYLOAD + 1), WH_EINVAL);
	ck_assert_int_eq(frame_decoder_init(NULL, 0), WH_EINVAL);
	ck_assert_int_eq(frame_decoder_init(&d, 0), WH_OK);
	ck_assert_uint_eq(d.max_payload, FRAME_DEFAULT_PAYLOAD);
	ck_assert_int_eq(frame_decoder_finish(&d), WH_OK);
	struct frame_event ev;
	ck_assert_uint_eq(frame_decoder_feed(&d, NULL, 0, &ev), 0);
	ck_assert_int_eq(ev.kind, FRAME_EVENT_NONE);
}
END_TEST

/* A conversation of every frame kind, good and bad, must decode the same under any split. */
static size_t build_conversation(uint8_t *wire)
{
	uint8_t *p = wire;
	uint8_t payload[3000];
	for (size_t i = 0; i < sizeof payload; i++)
		payload[i] = (uint8_t)(i * 7 + 3);
	p += frame_encode_handshake(p, 64, 1, "echo", 4);
	p += frame_encode_data(p, 4000, 1, payload, sizeof payload);
	p += frame_encode_window_update(p, 64, 1, 1000);
	p += put_frame(p, 1, 0x42, 1, 3, "abc", 3); /* unknown type: skipped */
	p += frame_encode_ping(p, 64, 77);
	p += frame_encode_data(p, 64, 1, "", 0);
	p += put_frame(p, 1, FRAME_DATA, 0, 2, "zz", 2); /* DATA on stream 0: skipped */
	p += frame_encode_data(p, 64, 3, "tail", 4);
	p += frame_encode_close(p, 64, 1);
	p += frame_encode_error(p, 64, 0, 505, "bye", 3);
	return (size_t)(p - wire);
}

START_TEST(test_decoder_any_split_same_result)
{
	static uint8_t wire[8192];
	size_t length = build_conversation(wire);
	static struct decoded whole, piece;
	decode_all(wire, length, 0, 0, &whole);
	ck_assert_int_eq(whole.controls, 5);     /* handshake, window update, ping, close, error */
	ck_assert_int_eq(whole.data_headers, 3);
	ck_assert_int_eq(whole.malformed, 2);
	ck_assert(!whole.fatal);
	ck_assert_uint_eq(whole.data_length, 3004);
	ck_assert_uint_eq(whole.consumed, length);
	ck_assert_mem_eq(whole.data + 3000, "tail", 4);
	ck_assert_uint_eq(whole.last_header.type, FRAME_ERROR);

	const size_t pieces[] = { 1, 2, 3, 9, 10, 11, 4096, SIZE_MAX };
	for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
		decode_all(wire, length, 0, pieces[i], &piece);
		ck_assert_int_eq(piece.controls, whole.controls);
		ck_assert_int_eq(piece.data_headers, whole.data_headers);
		ck_assert_int_eq(piece.malformed, whole.malformed);
		ck_assert_uint_eq(piece.data_length, whole.data_length);
		ck_assert_mem_eq(piece.data, whole.data, whole.data_length);
		ck_assert_uint_eq(piece.control_length, whole.control_length);
		ck_assert_mem_eq(piece.control_payload, whole.control_payload, whole.control_length);
		ck_assert_uint_eq(piece.consumed, length);
	}
}
END_TEST

START_TEST(test_decoder_malformed_is_not_fatal)
{
	uint8_t wire[128];
	static struct decoded d;
	size_t n = put_frame(wire, 1, FRAME_WINDOW_UPDATE, 5, 2, "\0\1", 2); /* short */
	n += frame_encode_data(wire + n, 64, 5, "ok", 2);
	decode_all(wire, n, 0, 1, &d);
	ck_assert_int_eq(d.malformed, 1);
	ck_assert_int_eq(d.last_error, WH_EFRAME_TOO_SHORT);
	ck_assert(!d.fatal);
	ck_assert_uint_eq(d.data_length, 2);
	ck_assert_mem_eq(d.data, "ok", 2);

	struct frame_decoder dec;
	struct frame_event ev;
	frame_decoder_init(&dec, 0);
	ck_assert_uint_eq(frame_decoder_feed(&dec, wire, 10, &ev), 10);
	ck_assert_int_eq(ev.kind, FRAME_EVENT_MALFORMED);
	ck_assert_int_eq(ev.error, WH_EFRAME_TOO_SHORT);
	ck_assert(!ev.fatal);
	ck_assert_uint_eq(ev.header.stream_id, 5);
	ck_assert_int_eq(frame_decoder_finish(&dec), WH_EUNEXPECTED_EOF); /* payload pending */
}
END_TEST

/* Each rule broken by a received frame yields its own code, and the next frame decodes. */
START_TEST(test_decoder_each_malformed_code)
{
	const struct {
		struct frame_header header;
		int error;
	} cases[] = {
		{ { 1, 0x42, 1, 0 }, WH_EINVALID_FRAME_TYPE },
		{ { 1, FRAME_DATA, 1, FRAME_DEFAULT_PAYLOAD + 1 }, WH_EPAYLOAD_TOO_LARGE },
		{ { 1, FRAME_PING, 1, 4 }, WH_EINVALID_STREAM_ID },
		{ { 1, FRAME_DATA, 0, 0 }, WH_EINVALID_STREAM_ID },
		{ { 1, FRAME_PING, 0, 3 }, WH_EFRAME_TOO_SHORT },
		{ { 1, FRAME_HANDSHAKE, 1, FRAME_CONTROL_MAX + 1 }, WH_EPAYLOAD_TOO_LARGE },
	};
	static uint8_t wire[FRAME_DEFAULT_PAYLOAD + 64];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(wire, 0xAB, sizeof wire);
		frame_header_pack(wire, &cases[i].header);
		size_t n = FRAME_HEADER_SIZE + cases[i].header.length;
		n += (size_t)frame_encode_close(wire + n, 16, 9);
		struct frame_decoder dec;
		frame_decoder_init(&dec, 0);
		struct frame_event ev;
		size_t used = frame_decoder_feed(&dec, wire, n, &ev);
		ck_assert_int_eq(ev.kind, FRAME_EVENT_MALFORMED);
		ck_assert_int_eq(ev.error, cases[i].error);
		ck_assert(!ev.fatal);
		size_t offset = used;
		do {
			used = frame_decoder_feed(&dec, wire + offset, n - offset, &ev);
			offset += used;
		} while (ev.kind == FRAME_EVENT_NONE && offset < n);
		ck_assert_int_eq(ev.kind, FRAME_EVENT_CONTROL);
		ck_assert_uint_eq(ev.header.type, FRAME_CLOSE);
		ck_assert_uint_eq(ev.header.stream_id, 9);
		ck_assert_int_eq(frame_decoder_finish(&dec), WH_OK);
	}
}
END_TEST

START_TEST(test_decoder_fatal_length)
{
	uint8_t wire[32];
	put_frame(wire, 1, FRAME_DATA, 1, FRAME_MAX_PAYLOAD + 1, NULL, 0);
	struct frame_decoder dec;
	struct frame_event ev;
	frame_decoder_init(&dec, FRAME_MAX_PAYLOAD);
	ck_assert_uint_eq(frame_decoder_feed(&dec, wire, 20, &ev), 10);
	ck_assert_int_eq(ev.kind, FRAME_EVENT_MALFORMED);
	ck_assert_int_eq(ev.error, WH_EPAYLOAD_TOO_LARGE);
	ck_assert(ev.fatal);
	/* stuck for good: consumes nothing, repeats the error */
	ck_assert_uint_eq(frame_decoder_feed(&dec, wire + 10, 10, &ev), 0);
	ck_assert_int_eq(ev.kind, FRAME_EVENT_MALFORMED);
	ck_assert(ev.fatal);
	ck_assert_int_eq(frame_decoder_finish(&dec), WH_EPAYLOAD_TOO_LARGE);
}
END_TEST

/* Another version's header cannot be trusted for its length: the connection's framing ends
 * there, whatever follows (here a valid version-1 frame). */
START_TEST(test_decoder_fatal_version)
{
	uint8_t wire[64];
	size_t n = put_frame(wire, 2, FRAME_DATA, 1, 2, "zz", 2);
	n += frame_encode_data(wire + n, 32, 1, "ok", 2);
	struct frame_decoder dec;
	struct frame_event ev;
	frame_decoder_init(&dec, 0);
	ck_assert_uint_eq(frame_decoder_feed(&dec, wire, n, &ev), 10);
	ck_assert_int_eq(ev.kind, FRAME_EVENT_MALFORMED);
	ck_assert_int_eq(ev.error, WH_EINVALID_VERSION);
	ck_assert(ev.fatal);
	ck_assert_uint_eq(frame_decoder_feed(&dec, wire + 10, n - 10, &ev), 0);
	ck_assert(ev.fatal);
	ck_assert_int_eq(frame_decoder_finish(&dec), WH_EINVALID_VERSION);
}
END_TEST

START_TEST(test_decoder_http_garbage_is_fatal)
{
	const char *garbage = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
	static struct decoded d;
	decode_all((const uint8_t *)garbage, strlen(garbage), 0, 0, &d);
	ck_assert(d.fatal);
	ck_assert_int_eq(d.last_error, WH_EPAYLOAD_TOO_LARGE);
}
END_TEST

START_TEST(test_decoder_malformed_run_limit)
{
	static uint8_t wire[FRAME_HEADER_SIZE * (2 * FRAME_MALFORMED_RUN_LIMIT + 2)];
	size_t n = 0;
	for (unsigned i = 0; i < FRAME_MALFORMED_RUN_LIMIT + 1; i++)
		n += put_frame(wire + n, 1, 0x42, 1, 0, NULL, 0);
	static struct decoded d;
	decode_all(wire, n, 0, 0, &d);
	ck_assert(d.fatal);
	ck_assert_int_eq(d.last_error, WH_EPROTOCOL);
	ck_assert_int_eq(d.malformed, FRAME_MALFORMED_RUN_LIMIT + 1);

	/* a good frame in between resets the run */
	n = 0;
	for (unsigned i = 0; i < 2 * FRAME_MALFORMED_RUN_LIMIT; i++) {
		n += put_frame(wire + n, 1, 0x42, 1, 0, NULL, 0);
		if (i == FRAME_MALFORMED_RUN_LIMIT - 1)
			n += (size_t)frame_encode_close(wire + n, 16, 1);
	}
	decode_all(wire, n, 0, 0, &d);
	ck_assert(!d.fatal);
	ck_assert_int_eq(d.malformed, 2 * FRAME_MALFORMED_RUN_LIMIT);
	ck_assert_int_eq(d.controls, 1);
}
END_TEST

START_TEST(test_decoder_error_message_truncated)
{
	static uint8_t wire[FRAME_HEADER_SIZE + 4 + 6000];
	static char message[6000];
	memset(message, 'm', sizeof message);
	struct frame_header h = { 1, FRAME_ERROR, 3, 4 + sizeof message };
	frame_header_pack(wire, &h);
	wire[13] = 99;
	memset(wire + 10, 0, 3);
	memcpy(wire + 14, message, sizeof message);
	static struct decoded d;
	decode_all(wire, sizeof wire, 0, 7, &d);
	ck_assert_int_eq(d.controls, 1);
	ck_assert(d.truncated);
	ck_assert_uint_eq(d.control_length, FRAME_CONTROL_MAX);
	uint32_t code;
	const char *msg;
	size_t msg_len;
	ck_assert_int_eq(frame_parse_error(&d.last_header, d.control_payload, d.control_length, &code,
					   &msg, &msg_len), WH_OK);
	ck_assert_uint_eq(code, 99);
	ck_assert_uint_eq(msg_len, FRAME_CONTROL_MAX - 4);
}
END_TEST

/* The zero-copy path: the caller reads a DATA payload itself, then tells the decoder. */
START_TEST(test_decoder_direct_payload_read)
{
	uint8_t wire[64];
	size_t n = (size_t)frame_encode_data(wire, sizeof wire, 3, "0123456789", 10);
	n += (size_t)frame_encode_close(wire + n, 16, 3);
	struct frame_decoder dec;
	struct frame_event ev;
	frame_decoder_init(&dec, 0);
	ck_assert_uint_eq(frame_decoder_feed(&dec, wire, n, &ev), 10);
	ck_assert_int_eq(ev.kind, FRAME_EVENT_DATA_HEADER);
	ck_assert(!ev.end);
	ck_assert_uint_eq(frame_decoder_data_remaining(&dec), 10);
	ck_assert_int_eq(frame_decoder_data_consumed(&dec, 11), WH_EINVAL);
	ck_assert_int_eq(frame_decoder_data_consumed(&dec, 4), WH_OK);
	ck_assert_uint_eq(frame_decoder_data_remaining(&dec), 6);
	ck_assert_int_eq(frame_decoder_finish(&dec), WH_EUNEXPECTED_EOF);
	ck_assert_int_eq(frame_decoder_data_consumed(&dec, 6), WH_OK);
	ck_assert_uint_eq(frame_decoder_data_remaining(&dec), 0);
	ck_assert_int_eq(frame_decoder_finish(&dec), WH_OK);
	ck_assert_uint_eq(frame_decoder_feed(&dec, wire + 20, n - 20, &ev), 10);
	ck_assert_int_eq(ev.kind, FRAME_EVENT_CONTROL);
	ck_assert_uint_eq(ev.header.type, FRAME_CLOSE);
	/* outside a DATA payload there is nothing to consume */
	ck_assert_int_eq(frame_decoder_data_consumed(&dec, 1), WH_EINVAL);
}
END_TEST

START_TEST(test_decoder_skip_payload)
{
	uint8_t wire[64];
	size_t n = (size_t)frame_encode_data(wire, sizeof wire, 3, "0123456789", 10);
	n += (size_t)frame_encode_close(wire + n, 16, 3);
	struct frame_decoder dec;
	struct frame_event ev;
	frame_decoder_init(&dec, 0);
	size_t offset = frame_decoder_feed(&dec, wire, 13, &ev);
	ck_assert_int_eq(ev.kind, FRAME_EVENT_DATA_HEADER);
	offset += frame_decoder_feed(&dec, wire + offset, 13 - offset, &ev);
	ck_assert_int_eq(ev.kind, FRAME_EVENT_DATA_CHUNK);
	ck_assert_uint_eq(ev.payload_offset, 0);
	ck_assert_uint_eq(ev.payload_length, 3);
	frame_decoder_skip_payload(&dec);
	ck_assert_uint_eq(frame_decoder_data_remaining(&dec), 0);
	offset += frame_decoder_feed(&dec, wire + offset, n - offset, &ev);
	ck_assert_int_eq(ev.kind, FRAME_EVENT_NONE);
	ck_assert_uint_eq(offset, 20);
	offset += frame_decoder_feed(&dec, wire + offset, n - offset, &ev);
	ck_assert_int_eq(ev.kind, FRAME_EVENT_CONTROL);
	ck_assert_uint_eq(offset, n);
}
END_TEST

START_TEST(test_decoder_per_codec_ceiling)
{
	static uint8_t wire[2 * FRAME_HEADER_SIZE + 201];
	static uint8_t payload[101];
	size_t n = (size_t)frame_encode_data(wire, sizeof wire, 1, payload, 100);
	n += (size_t)frame_encode_data(wire + n, sizeof wire - n, 1, payload, 101);
	static struct decoded d;
	decode_all(wire, n, 100, 0, &d);
	ck_assert_int_eq(d.data_headers, 1);
	ck_assert_uint_eq(d.data_length, 100);
	ck_assert_int_eq(d.malformed, 1);
	ck_assert_int_eq(d.last_error, WH_EPAYLOAD_TOO_LARGE);
	ck_assert(!d.fatal);
	ck_assert_uint_eq(d.consumed, n);
}
END_TEST

START_TEST(test_decoder_truncated_input)
{
	uint8_t wire[32];
	size_t n = (size_t)frame_encode_data(wire, sizeof wire, 1, "hello", 5);
	for (size_t cut = 1; cut < n; cut++) {
		struct frame_decoder dec;
		struct frame_event ev;
		frame_decoder_init(&dec, 0);
		size_t offset = 0;
		while (offset < cut)
			offset += frame_decoder_feed(&dec, wire + offset, cut - offset, &ev);
		ck_assert_int_eq(frame_decoder_finish(&dec), WH_EUNEXPECTED_EOF);
	}
}
END_TEST

/* ---- the HANDSHAKE payload: service name and extensions ------------------------------ */

static struct frame_client_address client_v4(void)
{
	struct frame_client_address c = { .family = 4, .src_port = 51234, .dst_port = 18000 };
	memcpy(c.src_addr, (const uint8_t[]){ 192, 0, 2, 7 }, 4);
	memcpy(c.dst_addr, (const uint8_t[]){ 127, 0, 0, 1 }, 4);
	return c;
}

START_TEST(test_handshake_payload_golden)
{
	uint8_t out[FRAME_HANDSHAKE_PAYLOAD_MAX];
	struct frame_client_address c = client_v4();
	int n = frame_handshake_payload_encode(out, sizeof out, "web", &c);
	assert_bytes(out, n, "776562 00 01 0d 04 c0000207 c822 7f000001 4650");
	/* without a client the payload is the name alone, as a broker of before sent it */
	n = frame_handshake_payload_encode(out, sizeof out, "web", NULL);
	assert_bytes(out, n, "776562");
	ck_assert_int_eq(frame_handshake_payload_encode(out, sizeof out, NULL, NULL), 0);
	ck_assert_int_eq(frame_handshake_payload_encode(out, 10, "web", &c), WH_EBUFFER_TOO_SMALL);
	c.family = 5;
	ck_assert_int_eq(frame_handshake_payload_encode(out, sizeof out, "web", &c), WH_EINVAL);
	char long_name[300];
	memset(long_name, 'a', 256);
	long_name[256] = '\0';
	ck_assert_int_eq(frame_handshake_payload_encode(out, sizeof out, long_name, NULL), WH_EINVAL);
}
END_TEST

START_TEST(test_handshake_payload_roundtrip)
{
	uint8_t out[FRAME_HANDSHAKE_PAYLOAD_MAX];
	struct frame_client_address c6 = { .family = 6, .src_port = 1, .dst_port = 65535 };
	for (int i = 0; i < 16; i++) {
		c6.src_addr[i] = (uint8_t)(0x20 + i);
		c6.dst_addr[i] = (uint8_t)(0xF0 - i);
	}
	char name[FRAME_SERVICE_NAME_MAX + 1];
	memset(name, 'n', FRAME_SERVICE_NAME_MAX);
	name[FRAME_SERVICE_NAME_MAX] = '\0';
	int n = frame_handshake_payload_encode(out, sizeof out, name, &c6);
	ck_assert_int_eq(n, 255 + 1 + 2 + 37);
	struct frame_handshake hs;
	ck_assert_int_eq(frame_handshake_payload_parse(out, (size_t)n, &hs), WH_OK);
	ck_assert_uint_eq(hs.service_length, 255);
	ck_assert(hs.has_client);
	ck_assert_mem_eq(&hs.client, &c6, sizeof c6);
	/* the default service with a client */
	struct frame_client_address c4 = client_v4();
	n = frame_handshake_payload_encode(out, sizeof out, "", &c4);
	ck_assert_int_eq(frame_handshake_payload_parse(out, (size_t)n, &hs), WH_OK);
	ck_assert_uint_eq(hs.service_length, 0);
	ck_assert(hs.has_client);
	ck_assert_mem_eq(&hs.client, &c4, sizeof c4);
	/* a name alone, and nothing at all */
	ck_assert_int_eq(frame_handshake_payload_parse((const uint8_t *)"web", 3, &hs), WH_OK);
	ck_assert_uint_eq(hs.service_length, 3);
	ck_assert(!hs.has_client);
	ck_assert_int_eq(frame_handshake_payload_parse(NULL, 0, &hs), WH_OK);
	ck_assert_uint_eq(hs.service_length, 0);
}
END_TEST

START_TEST(test_handshake_payload_unknown_extension_skipped)
{
	uint8_t in[64];
	size_t n = unhex("776562 00 7f 02 abcd 01 0d 04 c0000207 c822 7f000001 4650 80 00", in, sizeof in);
	struct frame_handshake hs;
	ck_assert_int_eq(frame_handshake_payload_parse(in, n, &hs), WH_OK);
	ck_assert(hs.has_client);
	ck_assert_uint_eq(hs.client.src_port, 51234);
}
END_TEST

START_TEST(test_handshake_payload_malformed)
{
	static const char *const bad[] = {
		"776562 00",                                            /* a NUL, nothing after */
		"776562 00 01",                                         /* a type without a length */
		"776562 00 01 0d 04 c0000207",                          /* runs past the end */
		"776562 00 01 0c 04 c0000207 c822 7f000001 46",         /* a client block too short */
		"776562 00 01 0e 04 c0000207 c822 7f000001 4650 00",    /* ... too long */
		"776562 00 01 0d 05 c0000207 c822 7f000001 4650",       /* no such family */
		"776562 00 01 0d 06 c0000207 c822 7f000001 4650",       /* v6 with a v4 block */
		"776562 00 01 00",                                      /* an empty client block */
		"776562 00 01 0d 04 c0000207 c822 7f000001 4650 01 0d 04 c0000207 c822 7f000001 4650",
		"776562 00 7f 00 7f 00",                                /* any type twice */
	};
	uint8_t in[128];
	struct frame_handshake hs;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t n = unhex(bad[i], in, sizeof in);
		ck_assert_msg(frame_handshake_payload_parse(in, n, &hs) == WH_EPROTOCOL, "accepted: %s", bad[i]);
	}
	/* oversized: a name over 255 bytes, extensions over 255 bytes */
	uint8_t big[FRAME_CONTROL_MAX];
	memset(big, 'a', sizeof big);
	ck_assert_int_eq(frame_handshake_payload_parse(big, 256, &hs), WH_EPAYLOAD_TOO_LARGE);
	big[3] = 0;
	for (size_t at = 4; at + 2 <= 4 + 256; at += 2) { /* unknown types 0x80.. with no value */
		big[at] = (uint8_t)(0x80 + (at - 4) / 2);
		big[at + 1] = 0;
	}
	ck_assert_int_eq(frame_handshake_payload_parse(big, 4 + 256, &hs), WH_EPAYLOAD_TOO_LARGE);
	ck_assert_int_eq(frame_handshake_payload_parse(big, 4 + 254, &hs), WH_OK);
}
END_TEST

static Suite *frame_suite(void)
{
	Suite *suite = suite_create("frame");
	TCase *golden = tcase_create("golden");
	tcase_add_test(golden, test_golden_handshake);
	tcase_add_test(golden, test_golden_data);
	tcase_add_test(golden, test_golden_window_update);
	tcase_add_test(golden, test_golden_ping_pong);
	tcase_add_test(golden, test_golden_close);
	tcase_add_test(golden, test_golden_error);
	tcase_add_test(golden, test_golden_data_header_only);
	suite_add_tcase(suite, golden);

	TCase *codec = tcase_create("codec");
	tcase_add_test(codec, test_roundtrip_every_type);
	tcase_add_test(codec, test_type_names_and_roles);
	tcase_add_test(codec, test_encode_errors);
	tcase_add_test(codec, test_parse_errors);
	tcase_add_test(codec, test_wire_error_codes);
	tcase_add_test(codec, test_header_check_rules);
	tcase_add_test(codec, test_header_check_boundaries);
	tcase_add_test(codec, test_handshake_payload_golden);
	tcase_add_test(codec, test_handshake_payload_roundtrip);
	tcase_add_test(codec, test_handshake_payload_unknown_extension_skipped);
	tcase_add_test(codec, test_handshake_payload_malformed);
	suite_add_tcase(suite, codec);

	TCase *decoder = tcase_create("decoder");
	tcase_add_test(decoder, test_decoder_init);
	tcase_add_test(decoder, test_decoder_any_split_same_result);
	tcase_add_test(decoder, test_decoder_malformed_is_not_fatal);
	tcase_add_test(decoder, test_decoder_each_malformed_code);
	tcase_add_test(decoder, test_decoder_fatal_length);
	tcase_add_test(decoder, test_decoder_fatal_version);
	tcase_add_test(decoder, test_decoder_http_garbage_is_fatal);
	tcase_add_test(decoder, test_decoder_malformed_run_limit);
	tcase_add_test(decoder, test_decoder_error_message_truncated);
	tcase_add_test(decoder, test_decoder_direct_payload_read);
	tcase_add_test(decoder, test_decoder_skip_payload);
	tcase_add_test(decoder, test_decoder_per_codec_ceiling);
	tcase_add_test(decoder, test_decoder_truncated_input);
	suite_add_tcase(suite, decoder);
	return suite;
}

int main(void)
{
	SRunner *runner = srunner_create(frame_suite());
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
