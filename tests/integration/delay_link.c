/* Two hosts for tests and benchmarks: two namespaces, two tun devices, and a process that
 * delays the packets between them. */
#include "config.h"

#include <dirent.h>
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

#include "delay_link.h"

#define LINK_MTU 65000   /* few, large packets: the forwarder is not what limits the rate */
#define PACKET_MAX 65536
#define READS_PER_TURN 64

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

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
		fprintf(stderr, "delay link: '%s' failed\n", command);
	return status == 0;
}

bool delay_link_enter(struct delay_link *link, enum delay_link_side side)
{
	return link->fds[side] >= 0 && setns(link->fds[side], CLONE_NEWNET) == 0;
}

/* Forwards between a tun device made in each namespace; tells the parent on `ready`. */
static void forwarder_main(struct delay_link *link, int ready, double delay)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int tun[2] = { -1, -1 };
	for (int side = 0; side < 2; side++)
		if (delay_link_enter(link, side == 0 ? DELAY_LINK_NEAR : DELAY_LINK_FAR))
			tun[side] = tun_open("whlink");
	char ok = tun[0] >= 0 && tun[1] >= 0 ? 'y' : 'n';
	(void)!write(ready, &ok, 1);
	close(ready);
	if (ok != 'y')
		_exit(1);
	forward(tun[0], tun[1], delay);
	_exit(0);
}

/* Namespaces are named after the process that made them; one whose maker is gone was left
 * by a test that failed before its clean-up. */
static void remove_stale_namespaces(void)
{
	DIR *dir = opendir("/run/netns");
	if (!dir)
		return;
	for (struct dirent *e; (e = readdir(dir));) {
		int pid;
		char side[8];
		if (sscanf(e->d_name, "wh-%7[a-z]-%d", side, &pid) != 2 || pid <= 0 ||
		    kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char command[300];
		snprintf(command, sizeof command, "ip netns del %s 2>/dev/null", e->d_name);
		(void)!system(command);
	}
	closedir(dir);
}

bool delay_link_start(struct delay_link *link, double delay)
{
	memset(link, 0, sizeof *link);
	link->fds[0] = link->fds[1] = link->fds[2] = -1;
	link->forwarder = -1;
	snprintf(link->near_addr, sizeof link->near_addr, "10.231.0.1");
	snprintf(link->far_addr, sizeof link->far_addr, "10.231.0.2");
	if (geteuid() != 0) {
		fprintf(stderr, "delay link: needs root (namespaces, tun)\n");
		return false;
	}
	remove_stale_namespaces();
	link->fds[DELAY_LINK_HOME] = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	for (int side = 0; side < 2; side++) {
		char command[128], path[128];
		snprintf(link->netns[side], sizeof link->netns[side], "wh-%s-%d", side ? "far" : "near",
			 (int)getpid());
		snprintf(command, sizeof command, "ip netns add %s", link->netns[side]);
		if (!run(command)) {
			link->netns[side][0] = '\0';
			delay_link_stop(link);
			return false;
		}
		snprintf(path, sizeof path, "/run/netns/%s", link->netns[side]);
		link->fds[1 + side] = open(path, O_RDONLY | O_CLOEXEC);
	}
	int ready[2];
	if (link->fds[0] < 0 || link->fds[1] < 0 || link->fds[2] < 0 || pipe(ready) < 0) {
		delay_link_stop(link);
		return false;
	}
	link->forwarder = fork();
	if (link->forwarder == 0) {
		close(ready[0]);
		forwarder_main(link, ready[1], delay);
	}
	close(ready[1]);
	char ok = 'n';
	(void)!read(ready[0], &ok, 1);
	close(ready[0]);
	if (ok != 'y') {
		fprintf(stderr, "delay link: cannot create the tun devices\n");
		delay_link_stop(link);
		return false;
	}
	for (int side = 0; side < 2; side++) {
		const char *ns = link->netns[side];
		const char *mine = side ? link->far_addr : link->near_addr;
		const char *theirs = side ? link->near_addr : link->far_addr;
		char steps[3][256];
		snprintf(steps[0], sizeof steps[0], "ip -n %s link set lo up", ns);
		snprintf(steps[1], sizeof steps[1], "ip -n %s link set whlink mtu %d txqueuelen 10000 up",
			 ns, LINK_MTU);
		snprintf(steps[2], sizeof steps[2], "ip -n %s addr add %s peer %s dev whlink", ns, mine,
			 theirs);
		for (int i = 0; i < 3; i++)
			if (!run(steps[i])) {
				delay_link_stop(link);
				return false;
			}
	}
	return true;
}

void delay_link_cut(struct delay_link *link)
{
	/* A stopped forwarder reads nothing: packets wait in the tun queues until they overflow,
	 * then are dropped; none is ever delivered. */
	if (link->forwarder > 0)
		kill(link->forwarder, SIGSTOP);
}

bool delay_link_set_up(struct delay_link *link, bool up)
{
	bool ok = true;
	for (int side = 0; side < 2; side++) {
		char command[160];
		snprintf(command, sizeof command, "ip -n %s link set whlink %s", link->netns[side],
			 up ? "up" : "down");
		ok = run(command) && ok;
		if (up) { /* the peer route goes with the link: put it back */
			snprintf(command, sizeof command, "ip -n %s addr replace %s peer %s dev whlink",
				 link->netns[side], side ? link->far_addr : link->near_addr,
				 side ? link->near_addr : link->far_addr);
			ok = run(command) && ok;
		}
	}
	return ok;
}

void delay_link_stop(struct delay_link *link)
{
	if (link->forwarder > 0) {
		kill(link->forwarder, SIGKILL);
		waitpid(link->forwarder, NULL, 0);
		link->forwarder = -1;
	}
	for (int i = 0; i < 3; i++) {
		if (link->fds[i] >= 0)
			close(link->fds[i]);
		link->fds[i] = -1;
	}
	for (int side = 0; side < 2; side++)
		if (link->netns[side][0]) {
			char command[128];
			snprintf(command, sizeof command, "ip netns del %s", link->netns[side]);
			run(command);
			link->netns[side][0] = '\0';
		}
}
