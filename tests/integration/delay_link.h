/* Two hosts for tests and benchmarks: two network namespaces joined by a point-to-point
 * link that holds every packet for a fixed time, and that can be cut. */
#ifndef WORMHOLE_TESTS_DELAY_LINK_H
#define WORMHOLE_TESTS_DELAY_LINK_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * This kernel has no netem, so the delay is made in user space at the packet level: a child
 * process owns two tun devices, one in each namespace, and forwards each packet to the other
 * side once it has waited `delay` seconds. TCP runs end to end over it, with its own windows
 * and congestion control, as over a long path; a relay that accepted and re-sent TCP streams
 * would instead split each connection in two short ones.
 *
 * Both ends are namespaces of their own, so the caller's namespace is left as it was and
 * links of parallel tests never meet. Processes started from inside a namespace stay there;
 * Unix sockets with a path reach across namespaces, so an app in the caller's namespace can
 * attach to a broker in either.
 *
 * Needs root (namespaces, tun) and iproute2.
 */
enum delay_link_side { DELAY_LINK_HOME, DELAY_LINK_NEAR, DELAY_LINK_FAR };

struct delay_link {
	char netns[2][48]; /* names of the near and far namespaces (ip netns) */
	int fds[3];        /* open on home, near, far: for setns() */
	pid_t forwarder;   /* the child moving packets */
	char near_addr[16], far_addr[16]; /* dotted IPv4 of each end */
};

/* Creates both namespaces, the link and its addresses, and starts forwarding with `delay`
 * seconds each way. false (with a line on stderr) if any of it is not possible here. */
bool delay_link_start(struct delay_link *link, double delay);
/* Moves the calling thread to a side's namespace. Sockets and children it creates there
 * stay there. false if it could not. */
bool delay_link_enter(struct delay_link *link, enum delay_link_side side);
/* Cuts the link: from now on every packet is lost, in both directions, silently (no RST,
 * no ICMP), as when a cable is pulled. */
void delay_link_cut(struct delay_link *link);
/* Takes the link down on both ends (up: back up): packets are dropped at once, sockets
 * keep their state, and TCP resumes when it comes back up if nothing timed out meanwhile.
 * false if iproute2 failed. */
bool delay_link_set_up(struct delay_link *link, bool up);
/* Stops forwarding and removes both namespaces with their devices. */
void delay_link_stop(struct delay_link *link);

#endif
