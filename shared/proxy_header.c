/* The PROXY protocol header, versions 1 and 2: encoders and a strict, bounded decoder. */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "cursor.h"
#include "proxy_header.h"

static const uint8_t v2_signature[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
static const char v1_prefix[] = "PROXY ";

#define V2_VERSION 0x20u
#define V2_CMD_LOCAL 0x00u
#define V2_CMD_PROXY 0x01u
#define V2_FAM_UNSPEC 0x00u
#define V2_FAM_TCP4 0x11u
#define V2_FAM_UDP4 0x12u
#define V2_FAM_TCP6 0x21u
#define V2_FAM_UDP6 0x22u
#define V2_FAM_UNIX_STREAM 0x31u
#define V2_FAM_UNIX_DGRAM 0x32u

static size_t address_size(enum proxy_family family)
{
	return family == PROXY_FAMILY_TCP4 ? 4 : family == PROXY_FAMILY_TCP6 ? 16 : 0;
}

static bool family_valid(enum proxy_family family)
{
	return family == PROXY_FAMILY_UNKNOWN || family == PROXY_FAMILY_TCP4 || family == PROXY_FAMILY_TCP6;
}

/* ---- version 1 ------------------------------------------------------------------------ */

int proxy_header_encode_v1(uint8_t *out, size_t cap, const struct proxy_addresses *a)
{
	if (!out || !a || !family_valid(a->family))
		return WH_EINVAL;
	char line[PROXY_V1_MAX + 1];
	int n;
	if (a->family == PROXY_FAMILY_UNKNOWN) {
		n = snprintf(line, sizeof line, "PROXY UNKNOWN\r\n");
	} else {
		int af = a->family == PROXY_FAMILY_TCP4 ? AF_INET : AF_INET6;
		char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
		if (!inet_ntop(af, a->src_addr, src, sizeof src) || !inet_ntop(af, a->dst_addr, dst, sizeof dst))
			return WH_EINVAL;
		n = snprintf(line, sizeof line, "PROXY TCP%c %s %s %u %u\r\n",
			     a->family == PROXY_FAMILY_TCP4 ? '4' : '6', src, dst, a->src_port, a->dst_port);
	}
	if (n < 0 || (size_t)n > PROXY_V1_MAX)
		return WH_EINVAL;
	if ((size_t)n > cap)
		return WH_EBUFFER_TOO_SMALL;
	memcpy(out, line, (size_t)n);
	return n;
}

/* The next space-separated word of line[*at..end): false when there is none or it is empty
 * (two spaces in a row, or a space at the end). */
static bool v1_word(const char *line, size_t end, size_t *at, const char **word, size_t *length)
{
	size_t start = *at;
	size_t i = start;
	while (i < end && line[i] != ' ')
		i++;
	if (i == start)
		return false;
	*word = line + start;
	*length = i - start;
	*at = i < end ? i + 1 : i;
	return !(i < end && i + 1 == end); /* "... " with nothing after the space */
}

static bool v1_address(const char *word, size_t length, int af, uint8_t *out)
{
	char text[INET6_ADDRSTRLEN];
	if (length == 0 || length >= sizeof text)
		return false;
	memcpy(text, word, length);
	text[length] = '\0';
	return inet_pton(af, text, out) == 1;
}

/* Decimal 0-65535, no sign, no leading zero (the spec's form: one text per port). */
static bool v1_port(const char *word, size_t length, uint16_t *port)
{
	if (length == 0 || length > 5 || (word[0] == '0' && length > 1))
		return false;
	unsigned value = 0;
	for (size_t i = 0; i < length; i++) {
		if (word[i] < '0' || word[i] > '9')
			return false;
		value = value * 10 + (unsigned)(word[i] - '0');
	}
	if (value > 65535)
		return false;
	*port = (uint16_t)value;
	return true;
}

/* The words after "PROXY TCPx ": SRC DST SPORT DPORT and nothing more. */
static bool v1_fields(const char *line, size_t end, size_t at, struct proxy_addresses *a)
{
	int af = a->family == PROXY_FAMILY_TCP4 ? AF_INET : AF_INET6;
	const char *word[4];
	size_t length[4];
	for (int i = 0; i < 4; i++)
		if (!v1_word(line, end, &at, &word[i], &length[i]))
			return false;
	return at == end && v1_address(word[0], length[0], af, a->src_addr) &&
	       v1_address(word[1], length[1], af, a->dst_addr) &&
	       v1_port(word[2], length[2], &a->src_port) && v1_port(word[3], length[3], &a->dst_port);
}

static int decode_v1(const uint8_t *in, size_t length, struct proxy_header *h)
{
	size_t scan = length < PROXY_V1_MAX ? length : PROXY_V1_MAX;
	const uint8_t *cr = NULL;
	for (size_t i = 0; i + 1 < scan && !cr; i++)
		if (in[i] == '\r' && in[i + 1] == '\n')
			cr = in + i;
	if (!cr)
		return length >= PROXY_V1_MAX ? WH_EPROTOCOL : 0;
	const char *line = (const char *)in;
	size_t end = (size_t)(cr - in), at = sizeof v1_prefix - 1;
	for (size_t i = 0; i < end; i++) /* printable US-ASCII only: no NUL, CR or LF inside */
		if (in[i] < 0x20 || in[i] > 0x7E)
			return WH_EPROTOCOL;
	const char *word;
	size_t n;
	h->version = 1;
	if (end > at && end - at >= 7 && memcmp(line + at, "UNKNOWN", 7) == 0 &&
	    (end - at == 7 || line[at + 7] == ' ')) {
		h->addresses.family = PROXY_FAMILY_UNKNOWN; /* the rest of the line is ignored */
		return (int)(end + 2);
	}
	if (!v1_word(line, end, &at, &word, &n) || n != 4 || memcmp(word, "TCP", 3) != 0 ||
	    (word[3] != '4' && word[3] != '6'))
		return WH_EPROTOCOL;
	h->addresses.family = word[3] == '4' ? PROXY_FAMILY_TCP4 : PROXY_FAMILY_TCP6;
	if (!v1_fields(line, end, at, &h->addresses))
		return WH_EPROTOCOL;
	return (int)(end + 2);
}

/* ---- version 2 ------------------------------------------------------------------------ */

int proxy_header_encode_v2(uint8_t *out, size_t cap, const struct proxy_addresses *a,
			   const struct proxy_tlv *tlvs, size_t tlv_count)
{
	if (!out || !a || !family_valid(a->family) || (tlv_count && !tlvs))
		return WH_EINVAL;
	size_t size = address_size(a->family), body = 2 * size + (size ? 4 : 0);
	for (size_t i = 0; i < tlv_count; i++) {
		if (tlvs[i].length && !tlvs[i].value)
			return WH_EINVAL;
		body += 3u + tlvs[i].length;
	}
	if (body > UINT16_MAX)
		return WH_EINVAL;
	struct cursor c = cursor_writer(out, cap);
	cursor_put_bytes(&c, v2_signature, sizeof v2_signature);
	/* no addresses: LOCAL (the receiver keeps the connection's own), which consumers take;
	 * PROXY with family UNSPEC is allowed by the spec but haproxy 2.6 resets it */
	cursor_put_u8(&c, V2_VERSION | (size ? V2_CMD_PROXY : V2_CMD_LOCAL));
	cursor_put_u8(&c, a->family == PROXY_FAMILY_TCP4   ? V2_FAM_TCP4
			  : a->family == PROXY_FAMILY_TCP6 ? V2_FAM_TCP6
							   : V2_FAM_UNSPEC);
	cursor_put_u8(&c, (uint8_t)(body >> 8));
	cursor_put_u8(&c, (uint8_t)body);
	if (size) {
		cursor_put_bytes(&c, a->src_addr, size);
		cursor_put_bytes(&c, a->dst_addr, size);
		cursor_put_u8(&c, (uint8_t)(a->src_port >> 8));
		cursor_put_u8(&c, (uint8_t)a->src_port);
		cursor_put_u8(&c, (uint8_t)(a->dst_port >> 8));
		cursor_put_u8(&c, (uint8_t)a->dst_port);
	}
	for (size_t i = 0; i < tlv_count; i++) {
		cursor_put_u8(&c, tlvs[i].type);
		cursor_put_u8(&c, (uint8_t)(tlvs[i].length >> 8));
		cursor_put_u8(&c, (uint8_t)tlvs[i].length);
		cursor_put_bytes(&c, tlvs[i].value, tlvs[i].length);
	}
	if (c.failed)
		return WH_EBUFFER_TOO_SMALL;
	return (int)c.at;
}

int proxy_tlv_next(const uint8_t **cursor, size_t *left, struct proxy_tlv *tlv)
{
	if (*left == 0)
		return 0;
	if (*left < 3)
		return WH_EPROTOCOL;
	const uint8_t *p = *cursor;
	size_t length = (size_t)p[1] << 8 | p[2];
	if (length > *left - 3)
		return WH_EPROTOCOL;
	tlv->type = p[0];
	tlv->length = (uint16_t)length;
	tlv->value = p + 3;
	*cursor = p + 3 + length;
	*left -= 3 + length;
	return 1;
}

bool proxy_tlv_find(const struct proxy_header *h, uint8_t type, struct proxy_tlv *tlv)
{
	const uint8_t *at = h->tlvs;
	size_t left = h->tlvs_length;
	while (proxy_tlv_next(&at, &left, tlv) == 1)
		if (tlv->type == type)
			return true;
	return false;
}

/* The family byte: what it holds and how long its address block is; false if no family. */
static bool v2_family(uint8_t fam, enum proxy_family *family, size_t *block)
{
	switch (fam) {
	case V2_FAM_UNSPEC: *family = PROXY_FAMILY_UNKNOWN; *block = 0; return true;
	case V2_FAM_TCP4: *family = PROXY_FAMILY_TCP4; *block = 12; return true;
	case V2_FAM_TCP6: *family = PROXY_FAMILY_TCP6; *block = 36; return true;
	/* datagrams and Unix sockets: valid headers, addresses we do not carry */
	case V2_FAM_UDP4: *family = PROXY_FAMILY_UNKNOWN; *block = 12; return true;
	case V2_FAM_UDP6: *family = PROXY_FAMILY_UNKNOWN; *block = 36; return true;
	case V2_FAM_UNIX_STREAM:
	case V2_FAM_UNIX_DGRAM: *family = PROXY_FAMILY_UNKNOWN; *block = 216; return true;
	default: return false;
	}
}

static int decode_v2(const uint8_t *in, size_t length, struct proxy_header *h)
{
	if (length < PROXY_V2_HEADER)
		return 0;
	uint8_t ver_cmd = in[12];
	size_t body = (size_t)in[14] << 8 | in[15], block;
	if ((ver_cmd & 0xF0u) != V2_VERSION || (ver_cmd & 0x0Fu) > V2_CMD_PROXY ||
	    !v2_family(in[13], &h->addresses.family, &block) || body < block)
		return WH_EPROTOCOL;
	if (length - PROXY_V2_HEADER < body)
		return 0;
	h->version = 2;
	h->local = (ver_cmd & 0x0Fu) == V2_CMD_LOCAL;
	size_t size = address_size(h->addresses.family);
	const uint8_t *p = in + PROXY_V2_HEADER;
	if (size) {
		memcpy(h->addresses.src_addr, p, size);
		memcpy(h->addresses.dst_addr, p + size, size);
		h->addresses.src_port = (uint16_t)(p[2 * size] << 8 | p[2 * size + 1]);
		h->addresses.dst_port = (uint16_t)(p[2 * size + 2] << 8 | p[2 * size + 3]);
	}
	h->tlvs = p + block;
	h->tlvs_length = body - block;
	const uint8_t *at = h->tlvs;
	size_t left = h->tlvs_length;
	struct proxy_tlv tlv;
	int more;
	while ((more = proxy_tlv_next(&at, &left, &tlv)) == 1)
		;
	return more < 0 ? more : (int)(PROXY_V2_HEADER + body);
}

/* ---- either ----------------------------------------------------------------------------- */

/* Whether in[0..length) agrees with what bytes of the given text it covers. */
static bool agrees(const uint8_t *in, size_t length, const void *text, size_t text_length)
{
	return memcmp(in, text, length < text_length ? length : text_length) == 0;
}

int proxy_header_decode(const uint8_t *in, size_t length, struct proxy_header *header)
{
	if (!header || (!in && length))
		return WH_EINVAL;
	memset(header, 0, sizeof *header);
	if (length == 0)
		return 0;
	if (agrees(in, length, v2_signature, sizeof v2_signature))
		return length < sizeof v2_signature ? 0 : decode_v2(in, length, header);
	if (agrees(in, length, v1_prefix, sizeof v1_prefix - 1))
		return length < sizeof v1_prefix - 1 ? 0 : decode_v1(in, length, header);
	return WH_EPROTOCOL;
}
