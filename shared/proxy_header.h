/* The PROXY protocol header (haproxy's "The PROXY protocol", versions 1 and 2): a codec. */
#ifndef WORMHOLE_SHARED_PROXY_HEADER_H
#define WORMHOLE_SHARED_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wormhole/errors.h>

/*
 * What an exposing broker sends its target before any byte of a stream (proxy-protocol =
 * v1 | v2, docs/FORWARDING.md): who the TCP client was. Pure functions over caller-owned
 * buffers: no allocation, no I/O, no logging. The decoder exists for the tests and the fuzz
 * target (a target of ours never reads one), and never reads past the bytes it is given.
 *
 * Encoders return the bytes written (> 0) or WH_EBUFFER_TOO_SMALL / WH_EINVAL.
 * proxy_header_decode returns the header's length (> 0), 0 while the bytes given are a
 * prefix of a header that may still be whole (feed more), or WH_EPROTOCOL for bytes that can
 * never be one.
 */

#define PROXY_V1_MAX 107u      /* the longest v1 line, CRLF included (the spec's bound) */
#define PROXY_V2_HEADER 16u    /* signature, version and command, family, length */
#define PROXY_V2_ADDRESSES_MAX 216u /* the v2 address block for AF_UNIX; ours: 12 or 36 */
/* What we ever encode: a v2 header, TCP6 addresses and one TLV of 255 value bytes. */
#define PROXY_HEADER_ENCODE_MAX (PROXY_V2_HEADER + 36u + 3u + 255u)

/* PP2_TYPE_* of the spec that the decoder names; and ours (the spec leaves 0xE0-0xEF to
 * applications): the certificate identity the exposing broker verified for the peer
 * broker the stream came from (UTF-8, 1-255 bytes, no NUL; absent over plaintext). */
#define PROXY_TLV_ALPN 0x01u
#define PROXY_TLV_AUTHORITY 0x02u
#define PROXY_TLV_NOOP 0x04u
#define PROXY_TLV_SSL 0x20u
#define PROXY_TLV_WORMHOLE_PEER 0xE0u

enum proxy_family {
	PROXY_FAMILY_UNKNOWN = 0, /* v1 "PROXY UNKNOWN", v2 AF_UNSPEC: no addresses */
	PROXY_FAMILY_TCP4 = 4,
	PROXY_FAMILY_TCP6 = 6,
};

/* Who connected (src) to which address (dst), as the reaching broker's forward saw it.
 * Addresses in network byte order (4 or 16 bytes used), ports in host order. */
struct proxy_addresses {
	enum proxy_family family;
	uint8_t src_addr[16], dst_addr[16];
	uint16_t src_port, dst_port;
};

struct proxy_tlv {
	uint8_t type;
	uint16_t length;
	const uint8_t *value; /* decoding: points into the input */
};

struct proxy_header {
	unsigned version; /* 1 or 2 */
	bool local;       /* v2 LOCAL command (the proxy's own connection: addresses unused) */
	struct proxy_addresses addresses;
	const uint8_t *tlvs; /* v2: the TLV bytes after the addresses (walk with proxy_tlv_next) */
	size_t tlvs_length;
};

/* "PROXY TCP4 SRC DST SPORT DPORT\r\n", or "PROXY UNKNOWN\r\n" for PROXY_FAMILY_UNKNOWN. */
int proxy_header_encode_v1(uint8_t *out, size_t cap, const struct proxy_addresses *addresses);
/* A v2 PROXY command with TCP4 or TCP6 addresses, or for PROXY_FAMILY_UNKNOWN a LOCAL
 * command of family UNSPEC (no address block: the receiver keeps the connection's own; the
 * TLVs still go). tlv_count TLVs, each value at most 65535 bytes (WH_EINVAL past the 16-bit
 * total). */
int proxy_header_encode_v2(uint8_t *out, size_t cap, const struct proxy_addresses *addresses,
			   const struct proxy_tlv *tlvs, size_t tlv_count);

int proxy_header_decode(const uint8_t *in, size_t length, struct proxy_header *header);

/* The next TLV of a v2 header's TLV bytes: 1 with *tlv set (the cursor moved past it), 0 at
 * the end, WH_EPROTOCOL for a TLV that runs past the end. */
int proxy_tlv_next(const uint8_t **cursor, size_t *left, struct proxy_tlv *tlv);
/* The first TLV of the given type: true with *tlv set; false if none (or malformed). */
bool proxy_tlv_find(const struct proxy_header *header, uint8_t type, struct proxy_tlv *tlv);

#endif /* WORMHOLE_SHARED_PROXY_HEADER_H */
