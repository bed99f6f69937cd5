/* The attach protocol between apps and the broker: encode and decode, bounds-checked. */
#include "config.h"

#include <stdbool.h>
#include <string.h>

#include "ctlmsg.h"

/* A cursor that can never read or write past its end; the first overrun sticks. */
struct cursor {
	uint8_t *out;
	const uint8_t *in;
	size_t length, at;
	bool failed;
};

static void put_bytes(struct cursor *c, const void *bytes, size_t n)
{
	if (c->failed || c->length - c->at < n) {
		c->failed = true;
		return;
	}
	memcpy(c->out + c->at, bytes, n);
	c->at += n;
}

static void put_u8(struct cursor *c, uint8_t v) { put_bytes(c, &v, 1); }

static void put_u32(struct cursor *c, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	put_bytes(c, b, 4);
}

static void put_u64(struct cursor *c, uint64_t v)
{
	put_u32(c, (uint32_t)v);
	put_u32(c, (uint32_t)(v >> 32));
}

static bool string_ok(const char *s, size_t *length)
{
	*length = strnlen(s, CTL_STRING_MAX + 1);
	return *length <= CTL_STRING_MAX;
}

static void put_string(struct cursor *c, const char *s)
{
	size_t n;
	if (!string_ok(s, &n)) {
		c->failed = true;
		return;
	}
	put_u8(c, (uint8_t)n);
	put_bytes(c, s, n);
}

static void get_bytes(struct cursor *c, void *bytes, size_t n)
{
	if (c->failed || c->length - c->at < n) {
		c->failed = true;
		memset(bytes, 0, n);
		return;
	}
	memcpy(bytes, c->in + c->at, n);
	c->at += n;
}

static uint8_t get_u8(struct cursor *c)
{
	uint8_t v;
	get_bytes(c, &v, 1);
	return v;
}

static uint32_t get_u32(struct cursor *c)
{
	uint8_t b[4];
	get_bytes(c, b, 4);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t get_u64(struct cursor *c)
{
	uint64_t low = get_u32(c);
	return low | (uint64_t)get_u32(c) << 32;
}

static void get_string(struct cursor *c, char out[CTL_STRING_MAX + 1])
{
	size_t n = get_u8(c);
	get_bytes(c, out, n);
	out[c->failed ? 0 : n] = '\0';
	if (memchr(out, '\0', n))
		c->failed = true; /* an embedded NUL would truncate the name silently */
}

unsigned ctl_fd_count(const struct ctl_msg *msg)
{
	switch (msg->type) {
	case CTL_WELCOME:
		return 2;
	case CTL_OPENED:
	case CTL_INCOMING:
		return msg->slot == CTL_NO_SLOT ? 3 : 2;
	default:
		return 0;
	}
}

const char *ctl_type_name(unsigned type)
{
	switch (type) {
	case CTL_HELLO: return "HELLO";
	case CTL_OPEN: return "OPEN";
	case CTL_LISTEN: return "LISTEN";
	case CTL_UNLISTEN: return "UNLISTEN";
	case CTL_RELEASE: return "RELEASE";
	case CTL_STATS: return "STATS";
	case CTL_ACCEPTED: return "ACCEPTED";
	case CTL_WELCOME: return "WELCOME";
	case CTL_OPENED: return "OPENED";
	case CTL_INCOMING: return "INCOMING";
	case CTL_RESULT: return "RESULT";
	case CTL_STATS_REPLY: return "STATS_REPLY";
	default: return "UNKNOWN";
	}
}

/* The fields of each type, in wire order; one function serves both directions. */
static void fields(struct cursor *c, struct ctl_msg *m, bool encode)
{
#define U8(f) (encode ? put_u8(c, m->f) : (void)(m->f = get_u8(c)))
#define U32(f) (encode ? put_u32(c, (uint32_t)m->f) : (void)(m->f = get_u32(c)))
#define I32(f) (encode ? put_u32(c, (uint32_t)m->f) : (void)(m->f = (int32_t)get_u32(c)))
#define U64(f) (encode ? put_u64(c, m->f) : (void)(m->f = get_u64(c)))
#define STR(f) (encode ? put_string(c, m->f) : get_string(c, m->f))
	switch (m->type) {
	case CTL_HELLO: U32(version); U32(pid); break;
	case CTL_OPEN: STR(peer); STR(service); break;
	case CTL_LISTEN: case CTL_UNLISTEN: STR(service); break;
	case CTL_RELEASE: case CTL_ACCEPTED: U64(handle); break;
	case CTL_WELCOME:
		U32(version);
		if (encode)
			put_bytes(c, m->client_id, CTL_CLIENT_ID_SIZE);
		else
			get_bytes(c, m->client_id, CTL_CLIENT_ID_SIZE);
		U32(max_streams); U32(ring_capacity);
		break;
	case CTL_OPENED: U64(handle); U32(ring_capacity); U8(tx_ring); U32(slot); break;
	case CTL_INCOMING: U64(handle); U32(ring_capacity); U8(tx_ring); U32(slot); STR(service); STR(peer); break;
	case CTL_RESULT: I32(error); STR(message); break;
	case CTL_STATS: break;
	case CTL_STATS_REPLY:
		U8(stats_count);
		if (m->stats_count > CTL_STATS_MAX) {
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
	return strcmp(ctl_type_name(type), "UNKNOWN") != 0;
}

int ctl_encode(uint8_t *out, size_t cap, const struct ctl_msg *msg)
{
	size_t n;
	if (!out || !msg || !type_valid(msg->type) || msg->tx_ring > 1 || msg->stats_count > CTL_STATS_MAX ||
	    !string_ok(msg->peer, &n) || !string_ok(msg->service, &n) || !string_ok(msg->message, &n))
		return WH_EINVAL;
	struct cursor c = { .out = out, .length = cap };
	put_u8(&c, CTL_VERSION);
	put_u8(&c, (uint8_t)msg->type);
	put_u8(&c, 0);
	put_u8(&c, 0);
	put_u32(&c, msg->request_id);
	if (c.failed)
		return WH_EBUFFER_TOO_SMALL;
	struct ctl_msg copy = *msg;
	fields(&c, &copy, true);
	return c.failed ? WH_EBUFFER_TOO_SMALL : (int)c.at; /* strings were checked above */
}

int ctl_decode(const uint8_t *in, size_t length, struct ctl_msg *msg)
{
	memset(msg, 0, sizeof *msg);
	if (!in || length < CTL_HEADER_SIZE || length > CTL_MESSAGE_MAX)
		return WH_EPROTOCOL;
	struct cursor c = { .in = in, .length = length };
	uint8_t version = get_u8(&c);
	msg->type = (enum ctl_type)get_u8(&c);
	uint16_t reserved = (uint16_t)(get_u8(&c) | get_u8(&c) << 8);
	msg->request_id = get_u32(&c);
	if (version != CTL_VERSION || reserved != 0)
		return WH_EPROTOCOL;
	fields(&c, msg, false);
	if (c.failed || c.at != length || msg->tx_ring > 1)
		return WH_EPROTOCOL; /* short, long, or a field out of range */
	return WH_OK;
}
