/* A far network for the benchmarks: two tun devices and a process that delays packets. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "delay_link.h"

#define LINK_MTU 65000   /* few, large packets: the forwarder is not what limits the rate */
#define PACKET_MAX 65536
#define READS_PER_TURN 64

struct packet {
	double due;
	size_t length;
	struct packet *next;
	unsigned char data[];
};

/* One direction: packets read from `from` wait here until due, then go to `to`. */
struct lane {
	int from, to;
	struct packet *head, *tail;
};

static int tun_open(const char *name)
{
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct ifreq ifr = { .ifr_flags = IFF_TUN | IFF_NO_PI };
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void lane_read(struct lane *lane, double due)
{
	for (int i = 0; i < READS_PER_TURN; i++) {
		struct packet *p = malloc(sizeof *p + PACKET_MAX);
		if (!p)
			return;
		ssize_t n = read(lane->from, p->data, PACKET_MAX);
		if (n <= 0) {
			free(p);
			return;
		}
		p->due = due;
		p->length = (size_t)n;
		p->next = NULL;
		if (lane->tail)
			lane->tail->next = p;
		else
			lane->head = p;
		lane->tail = p;
	}
}

static void lane_deliver(struct lane *lane, double now)
{
	while (lane->head && lane->head->due <= now) {
		struct packet *p = lane->head;
		(void)!write(lane->to, p->data, p->length); /* a full queue drops, as a link would */
		lane->head = p->next;
		if (!lane->head)
			lane->tail = NULL;
		free(p);
	}
}

static void forward(int near, int far, double delay)
{
	struct lane lanes[2] = { { .from = near, .to = far }, { .from = far, .to = near } };
	for (;;) {
		double now = now_s(), next = now + 1.0;
		for (int i = 0; i < 2; i++)
			if (lanes[i].head && lanes[i].head->due < next)
				next = lanes[i].head->due;
		double wait = next > now ? next - now : 0;
		struct timespec timeout = { (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) };
		struct pollfd pfd[2] = { { near, POLLIN, 0 }, { far, POLLIN, 0 } };
		if (ppoll(pfd, 2, &timeout, NULL) < 0 && errno != EINTR)
			_exit(1);
		now = now_s();
		for (int i = 0; i < 2; i++) {
			if (pfd[i].revents & POLLIN)
				lane_read(&lanes[i], now + delay);
			lane_deliver(&lanes[i], now);
		}
	}
}

static bool run(const char *command)
{
	int status = system(command);
	if (status != 0)
		fprintf(stderr, "bench: '%s' failed\n", command);
	return status == 0;
}

bool delay_link_enter(struct delay_link *link, bool far)
{
	return setns(far ? link->netns_fd : link->home_fd, CLONE_NEWNET) == 0;
}

bool delay_link_start(struct delay_link *link, double delay)
{
	memset(link, 0, sizeof *link);
	link->netns_fd = link->home_fd = -1;
	link->forwarder = -1;
	unsigned id = (unsigned)getpid();
	char near_dev[IFNAMSIZ], far_dev[IFNAMSIZ], command[256];
	snprintf(link->netns, sizeof link->netns, "wh-bench-%u", id);
	snprintf(near_dev, sizeof near_dev, "whdA%u", id % 10000000);
	snprintf(far_dev, sizeof far_dev, "whdB%u", id % 10000000);
	snprintf(link->near_addr, sizeof link->near_addr, "10.231.%u.1", id % 250);
	snprintf(link->far_addr, sizeof link->far_addr, "10.231.%u.2", id % 250);
	if (geteuid() != 0) {
		fprintf(stderr, "bench: the far figure needs root (namespaces, tun): skipped\n");
		return false;
	}
	snprintf(command, sizeof command, "ip netns add %s", link->netns);
	if (!run(command))
		return false;
	char path[128];
	snprintf(path, sizeof path, "/run/netns/%s", link->netns);
	link->netns_fd = open(path, O_RDONLY | O_CLOEXEC);
	link->home_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	int ready[2];
	if (link->netns_fd < 0 || link->home_fd < 0 || pipe(ready) < 0) {
		delay_link_stop(link);
		return false;
	}
	link->forwarder = fork();
	if (link->forwarder == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(ready[0]);
		int near = tun_open(near_dev);
		int far = near >= 0 && delay_link_enter(link, true) ? tun_open(far_dev) : -1;
		char ok = far >= 0 ? 'y' : 'n';
		(void)!write(ready[1], &ok, 1);
		close(ready[1]);
		if (far < 0)
			_exit(1);
		forward(near, far, delay);
		_exit(0);
	}
	close(ready[1]);
	char ok = 'n';
	(void)!read(ready[0], &ok, 1);
	close(ready[0]);
	if (ok != 'y') {
		fprintf(stderr, "bench: cannot create tun devices: skipped\n");
		delay_link_stop(link);
		return false;
	}
	char steps[5][256];
	snprintf(steps[0], sizeof steps[0], "ip link set %s mtu %d txqueuelen 10000 up", near_dev, LINK_MTU);
	snprintf(steps[1], sizeof steps[1], "ip addr add %s peer %s dev %s", link->near_addr,
		 link->far_addr, near_dev);
	snprintf(steps[2], sizeof steps[2], "ip -n %s link set lo up", link->netns);
	snprintf(steps[3], sizeof steps[3], "ip -n %s link set %s mtu %d txqueuelen 10000 up",
		 link->netns, far_dev, LINK_MTU);
	snprintf(steps[4], sizeof steps[4], "ip -n %s addr add %s peer %s dev %s", link->netns,
		 link->far_addr, link->near_addr, far_dev);
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
		if (!run(steps[i])) {
			delay_link_stop(link);
			return false;
		}
	return true;
}

void delay_link_stop(struct delay_link *link)
{
	if (link->forwarder > 0) {
		kill(link->forwarder, SIGKILL);
		waitpid(link->forwarder, NULL, 0);
		link->forwarder = -1;
	}
	if (link->netns_fd >= 0)
		close(link->netns_fd);
	if (link->home_fd >= 0)
		close(link->home_fd);
	link->netns_fd = link->home_fd = -1;
	if (link->netns[0]) {
		char command[128];
		snprintf(command, sizeof command, "ip netns del %s", link->netns);
		run(command);
		link->netns[0] = '\0';
	}
}
