/*
 * libwormholeclient: the public API apps link to reach a wormhole-broker.
 * This is the only header apps include. Every public symbol starts with wh_ (WH_ for macros).
 * Threading rule: a handle is used by one thread at a time; distinct handles are independent.
 */
#ifndef WORMHOLE_WORMHOLE_H
#define WORMHOLE_WORMHOLE_H

#include <wormhole/errors.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's package version, e.g. "0.1.0". Static string; never fails. */
WH_EXPORT const char *wh_version(void);

#ifdef __cplusplus
}
#endif

#endif /* WORMHOLE_WORMHOLE_H */
