/* The library's version string. */
#include "config.h"

#include <wormhole/wormhole.h>

const char *wh_version(void)
{
	return PACKAGE_VERSION;
}
