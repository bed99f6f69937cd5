/* Sleeping on a 32-bit word of shared memory, and waking it: futex(2) without a libc wrapper.
 * The words live in segments mapped by two processes, so the calls are never
 * FUTEX_PRIVATE_FLAG (the kernel keys a shared futex by the mapped file and offset). */
#ifndef WORMHOLE_SHARED_FUTEX_H
#define WORMHOLE_SHARED_FUTEX_H

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleeps while *word == expected, at most timeout_ns (< 0: no limit). 0 when woken or when
 * the word had changed already (the caller looks again either way), ETIMEDOUT, or EINTR. */
static inline int futex_wait_shared(uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
	struct timespec ts = { (time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000) };
	if (syscall(SYS_futex, word, FUTEX_WAIT, expected, timeout_ns < 0 ? NULL : &ts, NULL, 0) == 0)
		return 0;
	return errno == EAGAIN ? 0 : errno;
}

/* Wakes every thread sleeping on word. */
static inline void futex_wake_shared(uint32_t *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

#endif
