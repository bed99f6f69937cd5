/* Fuzz target: any bytes decode to an error, a wait for more, or a header whose re-encoding
 * decodes to the same addresses and TLVs; every shorter prefix of a header waits for more. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "proxy_header.h"

#define TLVS_MAX 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_or_abort(const struct proxy_header *a, const struct proxy_header *b)
{
	if (a->addresses.family != b->addresses.family ||
	    memcmp(&a->addresses, &b->addresses, sizeof a->addresses) != 0)
		abort();
	if (a->version == 2 && (a->tlvs_length != b->tlvs_length ||
				memcmp(a->tlvs, b->tlvs, a->tlvs_length) != 0))
		abort();
}

/* The decoded header encoded again (TLVs as they came) decodes to the same. */
static void reencode(const struct proxy_header *h)
{
	_Static_assert(TLVS_MAX * 3 < 65536, "TLVs fit a v2 header");
	uint8_t out[16 + 65535];
	struct proxy_tlv tlvs[TLVS_MAX];
	size_t count = 0, left = h->tlvs_length;
	const uint8_t *at = h->tlvs;
	int n;
	if (h->version == 1) {
		n = proxy_header_encode_v1(out, sizeof out, &h->addresses);
	} else {
		while (count < TLVS_MAX && proxy_tlv_next(&at, &left, &tlvs[count]) == 1)
			count++;
		if (left)
			return; /* more TLVs than we keep: nothing to compare */
		n = proxy_header_encode_v2(out, sizeof out, &h->addresses, tlvs, count);
	}
	struct proxy_header again;
	if (n <= 0 || proxy_header_decode(out, (size_t)n, &again) != n)
		abort();
	same_or_abort(h, &again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header h, prefix;
	int n = proxy_header_decode(data, size, &h);
	if (n < 0)
		return 0;
	if (n == 0) /* waiting for more: only ever for fewer bytes than a v2 header may hold */
		return size > 16 + 65535 ? (abort(), 0) : 0;
	if ((size_t)n > size || h.tlvs_length > size)
		abort();
	for (size_t k = (size_t)n > 64 ? (size_t)n - 64 : 0; k < (size_t)n; k++)
		if (proxy_header_decode(data, k, &prefix) != 0)
			abort();
	reencode(&h);
	return 0;
}
