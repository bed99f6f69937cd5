/* The wire frame codec: header packing, frame encoders, parse helpers and the decoder. */
#include "config.h"

#include <string.h>

#include "cursor.h"
#include "frame.h"

/* Big-endian u32 at a place already checked to hold it (the header, a u32 payload). */
static void put_u32(uint8_t *out, uint32_t value)
{
	struct cursor c = cursor_writer(out, 4);
	cursor_put_u32be(&c, value);
}

static uint32_t get_u32(const uint8_t *in)
{
	struct cursor c = cursor_reader(in, 4);
	return cursor_get_u32be(&c);
}

/* ---- header ------------------------------------------------------------------------ */

void frame_header_pack(uint8_t out[FRAME_HEADER_SIZE], const struct frame_header *header)
{
	out[0] = header->version;
	out[1] = header->type;
	put_u32(out + 2, header->stream_id);
	put_u32(out + 6, header->length);
}

void frame_header_unpack(const uint8_t in[FRAME_HEADER_SIZE], struct frame_header *header)
{
	header->version = in[0];
	header->type = in[1];
	header->stream_id = get_u32(in + 2);
	header->length = get_u32(in + 6);
}

bool frame_type_is_valid(unsigned type)
{
	return type >= FRAME_DATA && type <= FRAME_ERROR;
}

const char *frame_type_name(unsigned type)
{
	static const char *const names[] = {
		[FRAME_DATA] = "DATA",   [FRAME_WINDOW_UPDATE] = "WINDOW_UPDATE",
		[FRAME_PING] = "PING",   [FRAME_PONG] = "PONG",
		[FRAME_CLOSE] = "CLOSE", [FRAME_HANDSHAKE] = "HANDSHAKE",
		[FRAME_ERROR] = "ERROR",
	};
	return frame_type_is_valid(type) ? names[type] : "UNKNOWN";
}

bool frame_is_connection_level(const struct frame_header *header)
{
	return header->stream_id == 0;
}

bool frame_stream_id_is_local(uint32_t stream_id, bool client_role)
{
	return stream_id != 0 && (stream_id & 1u) == (client_role ? 1u : 0u);
}

/* Which stream ids a type may carry: PING and PONG only 0, ERROR either, others non-zero. */
static bool stream_id_fits_type(unsigned type, uint32_t stream_id)
{
	switch (type) {
	case FRAME_PING:
	case FRAME_PONG:
		return stream_id == 0;
	case FRAME_ERROR:
		return true;
	default:
		return stream_id != 0;
	}
}

static int payload_length_check(unsigned type, uint32_t length, uint32_t max_payload)
{
	switch (type) {
	case FRAME_DATA:
		return length > max_payload ? WH_EPAYLOAD_TOO_LARGE : WH_OK;
	case FRAME_WINDOW_UPDATE:
	case FRAME_PING:
	case FRAME_PONG:
		if (length < FRAME_U32_PAYLOAD)
			return WH_EFRAME_TOO_SHORT;
		return length > FRAME_U32_PAYLOAD ? WH_EPAYLOAD_TOO_LARGE : WH_OK;
	case FRAME_ERROR:
		/* A long message is cut short (the decoder keeps FRAME_CONTROL_MAX bytes and skips
		 * the rest), so any length up to the absolute ceiling is an ERROR, not a malformed
		 * frame: the stream still learns that it failed and with which code. */
		return length < FRAME_U32_PAYLOAD ? WH_EFRAME_TOO_SHORT : WH_OK;
	default: /* HANDSHAKE, CLOSE: buffered whole, so bounded by the control buffer */
		return length > FRAME_CONTROL_MAX ? WH_EPAYLOAD_TOO_LARGE : WH_OK;
	}
}

int frame_header_check(const struct frame_header *header, uint32_t max_payload)
{
	if (header->length > FRAME_MAX_PAYLOAD)
		return WH_EPAYLOAD_TOO_LARGE;
	if (header->version != FRAME_VERSION)
		return WH_EINVALID_VERSION;
	if (!frame_type_is_valid(header->type))
		return WH_EINVALID_FRAME_TYPE;
	if (!stream_id_fits_type(header->type, header->stream_id))
		return WH_EINVALID_STREAM_ID;
	return payload_length_check(header->type, header->length, max_payload);
}

/* ---- encoders ---------------------------------------------------------------------- */

/* The checks every encoder shares, in the order a caller would want them reported. */
static int encode_check(uint8_t *out, size_t cap, unsigned type, uint32_t stream_id,
			size_t length, size_t bytes_needed)
{
	if (!out && cap)
		return WH_EINVAL;
	if (!frame_type_is_valid(type))
		return WH_EINVALID_FRAME_TYPE;
	if (!stream_id_fits_type(type, stream_id))
		return WH_EINVALID_STREAM_ID;
	if (length > FRAME_MAX_PAYLOAD)
		return WH_EPAYLOAD_TOO_LARGE;
	if (cap < bytes_needed)
		return WH_EBUFFER_TOO_SMALL;
	return WH_OK;
}

static void encode_header(uint8_t *out, enum frame_type type, uint32_t stream_id, size_t length)
{
	struct frame_header header = {
		.version = FRAME_VERSION,
		.type = (uint8_t)type,
		.stream_id = stream_id,
		.length = (uint32_t)length,
	};
	frame_header_pack(out, &header);
}

int frame_encode(uint8_t *out, size_t cap, enum frame_type type, uint32_t stream_id,
		 const void *payload, size_t length)
{
	if (!payload && length)
		return WH_EINVAL;
	int error = encode_check(out, cap, type, stream_id, length,
				 FRAME_HEADER_SIZE + (length <= FRAME_MAX_PAYLOAD ? length : 0));
	if (error != WH_OK)
		return error;
	encode_header(out, type, stream_id, length);
	if (length)
		memcpy(out + FRAME_HEADER_SIZE, payload, length);
	return (int)(FRAME_HEADER_SIZE + length);
}

int frame_encode_data_header(uint8_t *out, size_t cap, uint32_t stream_id, size_t length)
{
	int error = encode_check(out, cap, FRAME_DATA, stream_id, length, FRAME_HEADER_SIZE);
	if (error != WH_OK)
		return error;
	encode_header(out, FRAME_DATA, stream_id, length);
	return (int)FRAME_HEADER_SIZE;
}

int frame_encode_data(uint8_t *out, size_t cap, uint32_t stream_id, const void *payload,
		      size_t length)
{
	return frame_encode(out, cap, FRAME_DATA, stream_id, payload, length);
}

static int encode_u32_frame(uint8_t *out, size_t cap, enum frame_type type, uint32_t stream_id,
			    uint32_t value)
{
	uint8_t payload[FRAME_U32_PAYLOAD];
	put_u32(payload, value);
	return frame_encode(out, cap, type, stream_id, payload, sizeof payload);
}

int frame_encode_window_update(uint8_t *out, size_t cap, uint32_t stream_id, uint32_t increment)
{
	if (increment == 0)
		return WH_EINVAL;
	return encode_u32_frame(out, cap, FRAME_WINDOW_UPDATE, stream_id, increment);
}

int frame_encode_ping(uint8_t *out, size_t cap, uint32_t ping_id)
{
	return encode_u32_frame(out, cap, FRAME_PING, 0, ping_id);
}

int frame_encode_pong(uint8_t *out, size_t cap, uint32_t ping_id)
{
	return encode_u32_frame(out, cap, FRAME_PONG, 0, ping_id);
}

int frame_encode_close(uint8_t *out, size_t cap, uint32_t stream_id)
{
	return frame_encode(out, cap, FRAME_CLOSE, stream_id, NULL, 0);
}

int frame_encode_handshake(uint8_t *out, size_t cap, uint32_t stream_id, const void *payload,
			   size_t length)
{
	if (length > FRAME_CONTROL_MAX)
		return WH_EPAYLOAD_TOO_LARGE;
	return frame_encode(out, cap, FRAME_HANDSHAKE, stream_id, payload, length);
}

static size_t client_address_size(uint8_t family)
{
	return family == 4 ? 4 : family == 6 ? 16 : 0;
}

int frame_handshake_payload_encode(uint8_t *out, size_t cap, const char *service,
				   const struct frame_client_address *client)
{
	size_t name = service ? strnlen(service, FRAME_SERVICE_NAME_MAX + 1) : 0;
	if (name > FRAME_SERVICE_NAME_MAX || (client && !client_address_size(client->family)))
		return WH_EINVAL;
	struct cursor c = cursor_writer(out, cap);
	cursor_put_bytes(&c, service, name);
	if (client) {
		size_t size = client_address_size(client->family);
		cursor_put_u8(&c, 0);
		cursor_put_u8(&c, FRAME_HS_CLIENT);
		cursor_put_u8(&c, (uint8_t)(1 + 2 * (size + 2)));
		cursor_put_u8(&c, client->family);
		cursor_put_bytes(&c, client->src_addr, size);
		cursor_put_u8(&c, (uint8_t)(client->src_port >> 8));
		cursor_put_u8(&c, (uint8_t)client->src_port);
		cursor_put_bytes(&c, client->dst_addr, size);
		cursor_put_u8(&c, (uint8_t)(client->dst_port >> 8));
		cursor_put_u8(&c, (uint8_t)client->dst_port);
	}
	return c.failed ? WH_EBUFFER_TOO_SMALL : (int)c.at;
}

static int parse_client(const uint8_t *value, size_t length, struct frame_client_address *client)
{
	size_t size = length ? client_address_size(value[0]) : 0;
	if (!size || length != 1 + 2 * (size + 2))
		return WH_EPROTOCOL;
	memset(client, 0, sizeof *client);
	client->family = value[0];
	memcpy(client->src_addr, value + 1, size);
	client->src_port = (uint16_t)(value[1 + size] << 8 | value[2 + size]);
	memcpy(client->dst_addr, value + 3 + size, size);
	client->dst_port = (uint16_t)(value[3 + 2 * size] << 8 | value[4 + 2 * size]);
	return WH_OK;
}

int frame_handshake_payload_parse(const uint8_t *payload, size_t length, struct frame_handshake *out)
{
	memset(out, 0, sizeof *out);
	const uint8_t *nul = length ? memchr(payload, 0, length) : NULL;
	size_t name = nul ? (size_t)(nul - payload) : length;
	if (name > FRAME_SERVICE_NAME_MAX)
		return WH_EPAYLOAD_TOO_LARGE;
	out->service = payload;
	out->service_length = name;
	if (!nul)
		return WH_OK;
	const uint8_t *at = nul + 1;
	size_t left = length - name - 1;
	if (left == 0)
		return WH_EPROTOCOL;
	if (left > FRAME_HS_EXTENSIONS_MAX)
		return WH_EPAYLOAD_TOO_LARGE;
	uint32_t seen[8] = { 0 }; /* one bit per type: each at most once */
	while (left) {
		if (left < 2 || at[1] > left - 2)
			return WH_EPROTOCOL;
		uint8_t type = at[0], size = at[1];
		if (seen[type / 32] & (1u << (type % 32)))
			return WH_EPROTOCOL;
		seen[type / 32] |= 1u << (type % 32);
		if (type == FRAME_HS_CLIENT) {
			if (parse_client(at + 2, size, &out->client) != WH_OK)
				return WH_EPROTOCOL;
			out->has_client = true;
		}
		at += 2u + size;
		left -= 2u + size;
	}
	return WH_OK;
}

int frame_encode_error(uint8_t *out, size_t cap, uint32_t stream_id, uint32_t code,
		       const char *message, size_t message_length)
{
	if (!message && message_length)
		return WH_EINVAL;
	if (message_length > FRAME_CONTROL_MAX - FRAME_U32_PAYLOAD)
		return WH_EPAYLOAD_TOO_LARGE;
	size_t length = FRAME_U32_PAYLOAD + message_length;
	int error = encode_check(out, cap, FRAME_ERROR, stream_id, length, FRAME_HEADER_SIZE + length);
	if (error != WH_OK)
		return error;
	encode_header(out, FRAME_ERROR, stream_id, length);
	put_u32(out + FRAME_HEADER_SIZE, code);
	if (message_length)
		memcpy(out + FRAME_HEADER_SIZE + FRAME_U32_PAYLOAD, message, message_length);
	return (int)(FRAME_HEADER_SIZE + length);
}

/* ---- parse helpers ----------------------------------------------------------------- */

static int parse_u32_frame(const struct frame_header *header, const uint8_t *payload,
			   enum frame_type type, uint32_t *value)
{
	if (!header || !value || (!payload && header->length))
		return WH_EINVAL;
	if (header->type != type)
		return WH_EINVALID_FRAME_TYPE;
	if (header->length < FRAME_U32_PAYLOAD)
		return WH_EFRAME_TOO_SHORT;
	if (header->length > FRAME_U32_PAYLOAD)
		return WH_EPAYLOAD_TOO_LARGE;
	*value = get_u32(payload);
	return WH_OK;
}

int frame_parse_window_update(const struct frame_header *header, const uint8_t *payload,
			      uint32_t *increment)
{
	return parse_u32_frame(header, payload, FRAME_WINDOW_UPDATE, increment);
}

int frame_parse_ping(const struct frame_header *header, const uint8_t *payload, uint32_t *ping_id)
{
	return parse_u32_frame(header, payload, FRAME_PING, ping_id);
}

int frame_parse_pong(const struct frame_header *header, const uint8_t *payload, uint32_t *ping_id)
{
	return parse_u32_frame(header, payload, FRAME_PONG, ping_id);
}

int frame_parse_error(const struct frame_header *header, const uint8_t *payload,
		      uint32_t payload_length, uint32_t *code, const char **message,
		      size_t *message_length)
{
	if (!header || !code || !message || !message_length || (!payload && payload_length))
		return WH_EINVAL;
	if (header->type != FRAME_ERROR)
		return WH_EINVALID_FRAME_TYPE;
	/* payload_length may be below header->length when the decoder truncated the message. */
	if (header->length < FRAME_U32_PAYLOAD || payload_length < FRAME_U32_PAYLOAD ||
	    payload_length > header->length)
		return WH_EFRAME_TOO_SHORT;
	*code = get_u32(payload);
	*message = (const char *)payload + FRAME_U32_PAYLOAD;
	*message_length = payload_length - FRAME_U32_PAYLOAD;
	return WH_OK;
}

/* ---- wire error codes -------------------------------------------------------------- */

static const struct {
	int error;
	uint32_t code;
} wire_codes[] = {
	{ WH_EINVALID_VERSION, FRAME_ERR_PROTOCOL },
	{ WH_EINVALID_FRAME_TYPE, FRAME_ERR_PROTOCOL },
	{ WH_EPAYLOAD_TOO_LARGE, FRAME_ERR_PROTOCOL },
	{ WH_EFRAME_TOO_SHORT, FRAME_ERR_PROTOCOL },
	{ WH_EINVALID_STREAM_ID, FRAME_ERR_PROTOCOL },
	{ WH_EPROTOCOL, FRAME_ERR_PROTOCOL },
	{ WH_ENO_SERVICE, FRAME_ERR_NO_SERVICE },
	{ WH_EACCESS, FRAME_ERR_FORBIDDEN },
	{ WH_ESTREAM_ALREADY_EXISTS, FRAME_ERR_STREAM_EXISTS },
	{ WH_EFLOW_CONTROL, FRAME_ERR_FLOW_CONTROL },
	{ WH_ELIMIT, FRAME_ERR_LIMIT },
	{ WH_EDESCRIPTORS, FRAME_ERR_LIMIT },
	{ WH_ESTREAM_CLOSED, FRAME_ERR_CANCELLED },
	{ WH_ERING_CORRUPT, FRAME_ERR_ENDPOINT_GONE },
	{ WH_EBROKER_GONE, FRAME_ERR_ENDPOINT_GONE },
	{ WH_EAPP_GONE, FRAME_ERR_ENDPOINT_GONE },
	{ WH_EACCEPT_QUEUE_FULL, FRAME_ERR_ACCEPT_QUEUE_FULL },
	{ WH_ETIMEOUT, FRAME_ERR_TIMEOUT },
	{ WH_EKEEPALIVE_TIMEOUT, FRAME_ERR_TIMEOUT },
	{ WH_EMUX_CLOSED, FRAME_ERR_GOING_AWAY },
	{ WH_ECONNECTION_CLOSED, FRAME_ERR_GOING_AWAY },
};

uint32_t frame_error_code_for(int wh_error)
{
	for (size_t i = 0; i < sizeof wire_codes / sizeof wire_codes[0]; i++)
		if (wire_codes[i].error == wh_error)
			return wire_codes[i].code;
	return FRAME_ERR_INTERNAL;
}

int frame_error_from_code(uint32_t code)
{
	switch (code) {
	case FRAME_ERR_PROTOCOL:
		return WH_EPROTOCOL;
	case FRAME_ERR_NO_SERVICE:
		return WH_ENO_SERVICE;
	case FRAME_ERR_FORBIDDEN:
		return WH_EACCESS;
	case FRAME_ERR_STREAM_EXISTS:
		return WH_ESTREAM_ALREADY_EXISTS;
	case FRAME_ERR_FLOW_CONTROL:
		return WH_EFLOW_CONTROL;
	case FRAME_ERR_LIMIT:
		return WH_ELIMIT;
	case FRAME_ERR_ACCEPT_QUEUE_FULL:
		return WH_EACCEPT_QUEUE_FULL;
	case FRAME_ERR_TIMEOUT:
		return WH_ETIMEOUT;
	case FRAME_ERR_GOING_AWAY:
		return WH_EMUX_CLOSED;
	case FRAME_ERR_ENDPOINT_GONE:
		return WH_EAPP_GONE;
	default:
		return WH_EREMOTE;
	}
}

/* ---- decoder ----------------------------------------------------------------------- */

int frame_decoder_init(struct frame_decoder *decoder, uint32_t max_payload)
{
	if (!decoder || max_payload > FRAME_MAX_PAYLOAD)
		return WH_EINVAL;
	memset(decoder, 0, offsetof(struct frame_decoder, control));
	decoder->max_payload = max_payload ? max_payload : FRAME_DEFAULT_PAYLOAD;
	decoder->state = FRAME_DECODER_HEAD;
	return WH_OK;
}

static void event_malformed(struct frame_event *event, const struct frame_header *header,
			    int error, bool fatal)
{
	event->kind = FRAME_EVENT_MALFORMED;
	event->header = *header;
	event->error = error;
	event->fatal = fatal;
}

static void decoder_fail(struct frame_decoder *decoder, struct frame_event *event, int error)
{
	decoder->state = FRAME_DECODER_FAILED;
	decoder->fatal_error = error;
	event_malformed(event, &decoder->header, error, true);
}

/* The header is complete: check it and choose what the payload bytes are for. */
static void decoder_start_frame(struct frame_decoder *decoder, struct frame_event *event)
{
	struct frame_header *header = &decoder->header;
	frame_header_unpack(decoder->head, header);
	decoder->head_have = 0;
	decoder->remaining = header->length;

	int error = frame_header_check(header, decoder->max_payload);
	if (error != WH_OK && (header->length > FRAME_MAX_PAYLOAD || header->version != FRAME_VERSION)) {
		/* Past the absolute ceiling the length itself is not believable, and under another
		 * version the header's layout (so its length) cannot be trusted: framing is lost. */
		decoder_fail(decoder, event, error);
		return;
	}
	if (error != WH_OK) {
		if (++decoder->malformed_run > FRAME_MALFORMED_RUN_LIMIT) {
			decoder_fail(decoder, event, WH_EPROTOCOL);
			return;
		}
		decoder->state = header->length ? FRAME_DECODER_SKIP : FRAME_DECODER_HEAD;
		event_malformed(event, header, error, false);
		return;
	}
	decoder->malformed_run = 0;
	event->header = *header;
	if (header->type == FRAME_DATA) {
		decoder->state = header->length ? FRAME_DECODER_DATA : FRAME_DECODER_HEAD;
		event->kind = FRAME_EVENT_DATA_HEADER;
		event->end = header->length == 0;
		return;
	}
	decoder->control_have = 0;
	if (header->length) {
		decoder->state = FRAME_DECODER_CONTROL;
		return;
	}
	decoder->state = FRAME_DECODER_HEAD;
	event->kind = FRAME_EVENT_CONTROL;
	event->payload = decoder->control;
}

static size_t decoder_take_control(struct frame_decoder *decoder, const uint8_t *in,
				   size_t length, struct frame_event *event)
{
	size_t take = length < decoder->remaining ? length : decoder->remaining;
	size_t room = FRAME_CONTROL_MAX - decoder->control_have;
	size_t keep = take < room ? take : room; /* only an ERROR message can exceed the room */
	memcpy(decoder->control + decoder->control_have, in, keep);
	decoder->control_have += (uint32_t)keep;
	decoder->remaining -= (uint32_t)take;
	if (decoder->remaining == 0) {
		decoder->state = FRAME_DECODER_HEAD;
		event->kind = FRAME_EVENT_CONTROL;
		event->header = decoder->header;
		event->payload = decoder->control;
		event->payload_length = decoder->control_have;
		event->truncated = decoder->control_have < decoder->header.length;
	}
	return take;
}

static size_t decoder_take_data(struct frame_decoder *decoder, const uint8_t *in, size_t length,
				struct frame_event *event)
{
	size_t take = length < decoder->remaining ? length : decoder->remaining;
	event->kind = FRAME_EVENT_DATA_CHUNK;
	event->header = decoder->header;
	event->payload = in;
	event->payload_length = (uint32_t)take;
	event->payload_offset = decoder->header.length - decoder->remaining;
	decoder->remaining -= (uint32_t)take;
	event->end = decoder->remaining == 0;
	if (event->end)
		decoder->state = FRAME_DECODER_HEAD;
	return take;
}

size_t frame_decoder_feed(struct frame_decoder *decoder, const uint8_t *in, size_t length,
			  struct frame_event *event)
{
	memset(event, 0, sizeof *event);
	if (decoder->state == FRAME_DECODER_FAILED) {
		event_malformed(event, &decoder->header, decoder->fatal_error, true);
		return 0;
	}
	if (length == 0 || !in)
		return 0;

	switch (decoder->state) {
	case FRAME_DECODER_HEAD: {
		size_t take = FRAME_HEADER_SIZE - decoder->head_have;
		if (take > length)
			take = length;
		memcpy(decoder->head + decoder->head_have, in, take);
		decoder->head_have += (uint8_t)take;
		if (decoder->head_have == FRAME_HEADER_SIZE)
			decoder_start_frame(decoder, event);
		return take;
	}
	case FRAME_DECODER_DATA:
		return decoder_take_data(decoder, in, length, event);
	case FRAME_DECODER_CONTROL:
		return decoder_take_control(decoder, in, length, event);
	case FRAME_DECODER_SKIP: {
		size_t take = length < decoder->remaining ? length : decoder->remaining;
		decoder->remaining -= (uint32_t)take;
		if (decoder->remaining == 0)
			decoder->state = FRAME_DECODER_HEAD;
		return take;
	}
	case FRAME_DECODER_FAILED:
		break;
	}
	return 0;
}

uint32_t frame_decoder_data_remaining(const struct frame_decoder *decoder)
{
	return decoder->state == FRAME_DECODER_DATA ? decoder->remaining : 0;
}

int frame_decoder_data_consumed(struct frame_decoder *decoder, uint32_t n)
{
	if (n > frame_decoder_data_remaining(decoder))
		return WH_EINVAL;
	decoder->remaining -= n;
	if (decoder->state == FRAME_DECODER_DATA && decoder->remaining == 0)
		decoder->state = FRAME_DECODER_HEAD;
	return WH_OK;
}

void frame_decoder_skip_payload(struct frame_decoder *decoder)
{
	if (decoder->state == FRAME_DECODER_DATA)
		decoder->state = FRAME_DECODER_SKIP;
}

int frame_decoder_finish(const struct frame_decoder *decoder)
{
	if (decoder->state == FRAME_DECODER_FAILED)
		return decoder->fatal_error;
	if (decoder->state == FRAME_DECODER_HEAD && decoder->head_have == 0)
		return WH_OK;
	return WH_EUNEXPECTED_EOF;
}
