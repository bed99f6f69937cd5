/* The broker's descriptor budget: what peers and apps may make it hold, and a reserve. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdbudget.h"

static uint64_t open_descriptors(void)
{
	DIR *dir = opendir("/proc/self/fd");
	if (!dir)
		return 64; /* no /proc: a guess on the safe side for a fresh daemon */
	uint64_t count = 0;
	for (struct dirent *entry; (entry = readdir(dir));)
		if (entry->d_name[0] != '.')
			count++;
	closedir(dir);
	return count ? count - 1 : 0; /* the directory's own descriptor */
}

void fd_budget_init(struct fd_budget *budget, uint64_t reserve, uint64_t fixed)
{
	struct rlimit limit;
	*budget = (struct fd_budget){ .reserve = reserve };
	budget->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	budget->limit = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
				? (uint64_t)limit.rlim_cur
				: UINT64_MAX / 2;
	budget->baseline = open_descriptors() + fixed;
}

uint64_t fd_budget_available(const struct fd_budget *budget, enum fd_use use)
{
	if (!budget)
		return UINT64_MAX;
	uint64_t held = budget->baseline + budget->used;
	uint64_t keep = use == FD_USE_STREAM ? budget->reserve
			: use == FD_USE_SESSION ? budget->reserve / 2
						: 0;
	uint64_t ceiling = budget->limit > keep ? budget->limit - keep : 0;
	return held < ceiling ? ceiling - held : 0;
}

bool fd_budget_take(struct fd_budget *budget, unsigned n, enum fd_use use)
{
	if (!budget)
		return true;
	if (fd_budget_available(budget, use) < n) {
		budget->refused++;
		return false;
	}
	budget->used += n;
	return true;
}

/* The spare is lost when even it could not be opened again after shedding (the process
 * limit lowered under the broker, descriptors held by what the budget does not count): it
 * comes back at the first chance, or the next exhaustion would leave clients waiting in the
 * queue instead of being told at once. */
static void spare_restore(struct fd_budget *budget)
{
	if (budget && budget->spare_fd < 0)
		budget->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void fd_budget_give(struct fd_budget *budget, unsigned n)
{
	if (!budget)
		return;
	budget->used = budget->used >= n ? budget->used - n : 0;
	spare_restore(budget);
}

int fd_budget_accept(struct fd_budget *budget, int listen_fd, enum fd_use use, bool *shed)
{
	*shed = false;
	spare_restore(budget);
	if (fd_budget_take(budget, 1, use)) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		int error = errno;
		fd_budget_give(budget, 1);
		errno = error;
		if (!budget || (error != EMFILE && error != ENFILE))
			return -1;
	}
	/* No descriptor for it: free the spare's slot for a moment to take it off the queue. */
	if (budget->spare_fd >= 0) {
		close(budget->spare_fd);
		budget->spare_fd = -1;
	}
	int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		int error = errno;
		budget->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		errno = error;
		return -1;
	}
	budget->shed++;
	*shed = true;
	return fd;
}

void fd_budget_shed_done(struct fd_budget *budget, int fd)
{
	close(fd);
	spare_restore(budget);
}

void fd_budget_release(struct fd_budget *budget)
{
	if (budget && budget->spare_fd >= 0)
		close(budget->spare_fd);
	if (budget)
		budget->spare_fd = -1;
}
