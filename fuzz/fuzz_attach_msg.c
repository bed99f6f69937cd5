/* Fuzz target: any packet decodes to an error or to a message that re-encodes identically. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "attach_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct attach_msg msg;
	if (attach_decode(data, size, &msg) != WH_OK)
		return 0;
	uint8_t out[ATTACH_MESSAGE_MAX];
	int n = attach_encode(out, sizeof out, &msg);
	if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
		abort();
	return 0;
}
