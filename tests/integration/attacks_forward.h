/* The forwarding cases of check_attacks (tests/integration/attacks_forward.c). */
#ifndef WORMHOLE_TESTS_ATTACKS_FORWARD_H
#define WORMHOLE_TESTS_ATTACKS_FORWARD_H

#include <check.h>

/* The test case "forward": one loop test per forwarding attack. */
TCase *forward_attacks_tcase(void);

#endif
