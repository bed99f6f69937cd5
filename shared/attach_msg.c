/* The attach protocol between apps and the broker: encode and decode, bounds-checked. */
#include "config.h"

#include <stdbool.h>
#include <string.h>

#include "attach_msg.h"
#include "cursor.h"

static bool string_ok(const char *s, size_t *length)
{
	*length = strnlen(s, ATTACH_STRING_MAX + 1);
	return *length <= ATTACH_STRING_MAX;
}

static void put_string(struct cursor *c, const char *s)
{
	size_t n;
	if (!string_ok(s, &n)) {
		c->failed = true;
		return;
	}
	cursor_put_u8(c, (uint8_t)n);
	cursor_put_bytes(c, s, n);
}

static void get_string(struct cursor *c, char out[ATTACH_STRING_MAX + 1])
{
	size_t n = cursor_get_u8(c);
	cursor_get_bytes(c, out, n);
	out[c->failed ? 0 : n] = '\0';
	if (memchr(out, '\0', n))
		c->failed = true; /* an embedded NUL would truncate the name silently */
}

unsigned attach_fd_count(const struct attach_msg *msg)
{
	switch (msg->type) {
	case ATTACH_WELCOME:
		return 3;
	case ATTACH_OPENED:
	case ATTACH_INCOMING:
		return msg->slot == ATTACH_NO_SLOT ? 2 : 1;
	case ATTACH_STREAM_FD:
		return 1;
	default:
		return 0;
	}
}

const char *attach_type_name(unsigned type)
{
	switch (type) {
	case ATTACH_HELLO: return "HELLO";
	case ATTACH_OPEN: return "OPEN";
	case ATTACH_LISTEN: return "LISTEN";
	case ATTACH_UNLISTEN: return "UNLISTEN";
	case ATTACH_RELEASE: return "RELEASE";
	case ATTACH_STATS: return "STATS";
	case ATTACH_ACCEPTED: return "ACCEPTED";
	case ATTACH_STREAM_FD: return "STREAM_FD";
	case ATTACH_WELCOME: return "WELCOME";
	case ATTACH_OPENED: return "OPENED";
	case ATTACH_INCOMING: return "INCOMING";
	case ATTACH_RESULT: return "RESULT";
	case ATTACH_STATS_REPLY: return "STATS_REPLY";
	default: return "UNKNOWN";
	}
}

/* The fields of each type, in wire order; one function serves both directions. */
static void fields(struct cursor *c, struct attach_msg *m, bool encode)
{
#define U8(f) (encode ? cursor_put_u8(c, m->f) : (void)(m->f = cursor_get_u8(c)))
#define U32(f) (encode ? cursor_put_u32le(c, (uint32_t)m->f) : (void)(m->f = cursor_get_u32le(c)))
#define I32(f) (encode ? cursor_put_u32le(c, (uint32_t)m->f) : (void)(m->f = (int32_t)cursor_get_u32le(c)))
#define U64(f) (encode ? cursor_put_u64le(c, m->f) : (void)(m->f = cursor_get_u64le(c)))
#define STR(f) (encode ? put_string(c, m->f) : get_string(c, m->f))
	switch (m->type) {
	case ATTACH_HELLO: U32(version); U32(pid); break;
	case ATTACH_OPEN: STR(peer); STR(service); U32(timeout_ms); break;
	case ATTACH_LISTEN: case ATTACH_UNLISTEN: STR(service); break;
	case ATTACH_RELEASE: case ATTACH_ACCEPTED: case ATTACH_STREAM_FD: U64(handle); break;
	case ATTACH_WELCOME:
		U32(version);
		if (encode)
			cursor_put_bytes(c, m->client_id, ATTACH_CLIENT_ID_SIZE);
		else
			cursor_get_bytes(c, m->client_id, ATTACH_CLIENT_ID_SIZE);
		U32(max_streams); U32(ring_capacity);
		break;
	case ATTACH_OPENED: U64(handle); U32(ring_capacity); U8(tx_ring); U32(slot); break;
	case ATTACH_INCOMING: U64(handle); U32(ring_capacity); U8(tx_ring); U32(slot); STR(service); STR(peer); break;
	case ATTACH_RESULT: I32(error); STR(message); break;
	case ATTACH_STATS: break;
	case ATTACH_STATS_REPLY:
		U8(stats_count);
		if (m->stats_count > ATTACH_STATS_MAX) {
			c->failed = true;
			break;
		}
		for (unsigned i = 0; i < m->stats_count; i++)
			U64(stats[i]);
		break;
	default: c->failed = true; break;
	}
#undef U8
#undef U32
#undef I32
#undef U64
#undef STR
}

static bool type_valid(unsigned type)
{
	return strcmp(attach_type_name(type), "UNKNOWN") != 0;
}

int attach_encode(uint8_t *out, size_t cap, const struct attach_msg *msg)
{
	size_t n;
	if (!out || !msg || !type_valid(msg->type) || msg->tx_ring > 1 || msg->stats_count > ATTACH_STATS_MAX ||
	    !string_ok(msg->peer, &n) || !string_ok(msg->service, &n) || !string_ok(msg->message, &n))
		return WH_EINVAL;
	struct cursor c = cursor_writer(out, cap);
	cursor_put_u8(&c, ATTACH_VERSION);
	cursor_put_u8(&c, (uint8_t)msg->type);
	cursor_put_u8(&c, 0);
	cursor_put_u8(&c, 0);
	cursor_put_u32le(&c, msg->request_id);
	if (c.failed)
		return WH_EBUFFER_TOO_SMALL;
	struct attach_msg copy = *msg;
	fields(&c, &copy, true);
	return c.failed ? WH_EBUFFER_TOO_SMALL : (int)c.at; /* strings were checked above */
}

/* Decodes, and says which rule a message broke (NULL when it broke none). */
static const char *decode(const uint8_t *in, size_t length, struct attach_msg *msg)
{
	memset(msg, 0, sizeof *msg);
	if (!in || length < ATTACH_HEADER_SIZE)
		return "shorter than the 8-byte header";
	if (length > ATTACH_MESSAGE_MAX)
		return "longer than the largest message";
	struct cursor c = cursor_reader(in, length);
	uint8_t version = cursor_get_u8(&c);
	msg->type = (enum attach_type)cursor_get_u8(&c);
	uint16_t reserved = (uint16_t)(cursor_get_u8(&c) | cursor_get_u8(&c) << 8);
	msg->request_id = cursor_get_u32le(&c);
	if (version != ATTACH_VERSION)
		return "another protocol version in the header";
	if (reserved != 0)
		return "reserved header bits set";
	if (!type_valid(msg->type))
		return "unknown message type";
	fields(&c, msg, false);
	if (c.failed)
		return "a field runs past the end, or a string holds a NUL";
	if (c.at != length)
		return "bytes after the last field";
	if (msg->tx_ring > 1)
		return "a field out of range";
	return NULL;
}

int attach_decode(const uint8_t *in, size_t length, struct attach_msg *msg)
{
	return decode(in, length, msg) ? WH_EPROTOCOL : WH_OK;
}

const char *attach_decode_error(const uint8_t *in, size_t length)
{
	struct attach_msg scratch;
	return decode(in, length, &scratch);
}

#define COUNTER_STRUCT struct attach_stats
static const struct counter_info attach_stats_info[] = { ATTACH_STATS_TABLE(COUNTER_INFO_OF) };
#undef COUNTER_STRUCT

void attach_stats_pack(const struct attach_stats *stats, struct attach_msg *reply)
{
	reply->stats_count = ATTACH_STAT_COUNT;
	for (unsigned i = 0; i < ATTACH_STAT_COUNT; i++)
		reply->stats[i] = counter_value(stats, &attach_stats_info[i]);
}

void attach_stats_unpack(const struct attach_msg *reply, struct attach_stats *stats)
{
	memset(stats, 0, sizeof *stats);
	for (unsigned i = 0; i < reply->stats_count && i < ATTACH_STAT_COUNT; i++)
		*(uint64_t *)(void *)((char *)stats + attach_stats_info[i].offset) = reply->stats[i];
}
