/* Shared-memory segments and the descriptors that wake apps and the broker, all from the
 * descriptor budget. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "apps_internal.h"
#include "attach_wake.h"
#include "futex.h"

int errno_error(void)
{
	return errno == EMFILE || errno == ENFILE ? WH_EDESCRIPTORS
	       : errno == ENOMEM		  ? WH_ENOMEM
						  : WH_ESYSTEM;
}

int budget_eventfd(struct apps *apps, enum fd_use use)
{
	if (!fd_budget_take(apps->fds, 1, use))
		return WH_EDESCRIPTORS;
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0) {
		int error = errno_error();
		fd_budget_give(apps->fds, 1);
		return error;
	}
	return fd;
}

/* Takes an eventfd's count without blocking, whatever flags an app that shares it set;
 * -1 with errno (EAGAIN: nothing), or the bytes read. */
static ssize_t eventfd_take(int fd)
{
	uint64_t value;
	struct iovec iov = { &value, sizeof value };
	return preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
}

bool eventfd_reads_nowait(void)
{
	int fd = eventfd(0, EFD_CLOEXEC); /* blocking: only RWF_NOWAIT keeps the read from waiting */
	if (fd < 0)
		return false;
	bool nowait = eventfd_take(fd) < 0 && errno == EAGAIN;
	close(fd);
	return nowait;
}

bool doorbell_take(struct app_session *c)
{
	if (!c->apps->doorbell_sockets) {
		(void)eventfd_take(c->doorbell);
		return true;
	}
	return wake_take(c->doorbell) != WAKE_HUNG_UP;
}

int budget_wake_pair(struct apps *apps, enum fd_use use, int fds[2])
{
	fds[0] = fds[1] = -1;
	if (!fd_budget_take(apps->fds, 2, use))
		return WH_EDESCRIPTORS;
	if (wake_pair(fds) < 0) {
		int error = errno_error();
		fds[0] = fds[1] = -1;
		fd_budget_give(apps->fds, 2);
		return error;
	}
	return WH_OK;
}

void budget_close(struct apps *apps, int fd)
{
	if (fd < 0)
		return;
	close(fd);
	fd_budget_give(apps->fds, 1);
}

int segment_create(struct apps *apps, struct segment *seg, uint32_t capacity, uint64_t handle)
{
	uint8_t random[8];
	char name[40];
	randombytes_buf(random, sizeof random); /* names only tell segments apart in /proc */
	snprintf(name, sizeof name, "wormhole-%02x%02x%02x%02x%02x%02x%02x%02x", random[0], random[1],
		 random[2], random[3], random[4], random[5], random[6], random[7]);
	seg->capacity = capacity;
	seg->size = ring_segment_size(capacity);
	if (!fd_budget_take(apps->fds, 1, FD_USE_STREAM))
		return WH_EDESCRIPTORS;
	seg->memfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (seg->memfd < 0) {
		int error = errno_error();
		fd_budget_give(apps->fds, 1);
		return error;
	}
	if (ftruncate(seg->memfd, (off_t)seg->size) < 0 ||
	    fcntl(seg->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return errno_error(); /* the caller's segment_destroy closes it */
	seg->memory = mmap(NULL, seg->size, PROT_READ | PROT_WRITE, MAP_SHARED, seg->memfd, 0);
	if (seg->memory == MAP_FAILED) {
		seg->memory = NULL;
		if (errno == ENOMEM && !apps->map_limit_logged) {
			/* Usually not memory: each stream is one mapping, and Linux allows a process
			 * vm.max_map_count of them (65530 unless raised). Said once. */
			long limit = -1;
			FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
			if (f) {
				if (fscanf(f, "%ld", &limit) != 1)
					limit = -1;
				fclose(f);
			}
			log_write(apps->log, LOG_WARN, "apps", "cannot map another stream segment (%llu streams "
				  "held): Cannot allocate memory; each stream is one mapping and "
				  "vm.max_map_count is %ld: raise it (sysctl) for more streams",
				  (unsigned long long)apps->stats.streams, limit);
			apps->map_limit_logged = true;
		}
		return WH_ENOMEM;
	}
	return ring_segment_init(seg->memory, seg->size, capacity, handle);
}

void segment_drop_fd(struct apps *apps, struct segment *seg)
{
	budget_close(apps, seg->memfd);
	seg->memfd = -1;
}

void segment_destroy(struct apps *apps, struct segment *seg)
{
	if (seg->memory)
		munmap(seg->memory, seg->size);
	seg->memory = NULL;
	segment_drop_fd(apps, seg);
}

void wake_app(const struct shm_stream *s, uint32_t flags, uint32_t *sleeper_word)
{
	const struct app_session *c = s->client;
	if (!flags || !c)
		return;
	if (notify_post(c->notify, c->slot_count, s->slot))
		wake_send(c->news);
	if ((flags & RING_WAIT_SLEEPER) && sleeper_word)
		futex_wake_shared(sleeper_word);
	if (s->wake_app >= 0)
		wake_send(s->wake_app);
}

void wake_app_both(struct shm_stream *s)
{
	uint32_t reader = ring_producer_wake_needed(&s->to_app);
	uint32_t writer = ring_consumer_wake_needed(&s->from_app);
	if (writer & RING_WAIT_SLEEPER)
		futex_wake_shared(ring_consumer_wake_word(&s->from_app));
	wake_app(s, reader | writer | RING_WAIT_NEWS, ring_producer_wake_word(&s->to_app));
}
