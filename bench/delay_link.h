/* A far network for the benchmarks: a second network namespace joined to this one by a
 * point-to-point link that holds every packet for a fixed time. */
#ifndef WORMHOLE_BENCH_DELAY_LINK_H
#define WORMHOLE_BENCH_DELAY_LINK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * This kernel has no netem, so the delay is made in user space at the packet level: a child
 * process owns two tun devices, one here and one in the far namespace, and forwards each
 * packet to the other side once it has waited `delay` seconds. TCP runs end to end over it,
 * with its own windows and congestion control, as it would over a long path; a relay that
 * accepted and re-sent TCP streams would instead split the connection in two short ones.
 *
 * Needs root (namespaces, tun). Set-up uses iproute2.
 */
struct delay_link {
	char netns[64];   /* name of the far namespace (ip netns) */
	int netns_fd;     /* open on it: setns() there to start processes on the far side */
	int home_fd;      /* this process's own namespace, to come back */
	pid_t forwarder;  /* the child moving packets */
	char near_addr[16], far_addr[16]; /* dotted IPv4 of each end */
};

/* Creates the namespace, the link and its addresses, and starts forwarding with `delay`
 * seconds each way. false (with a line on stderr) if any of it is not possible here. */
bool delay_link_start(struct delay_link *link, double delay);
/* Moves the calling thread to the far namespace (true) or back home (false). Children
 * forked meanwhile stay where they were started. */
bool delay_link_enter(struct delay_link *link, bool far);
/* Stops forwarding and removes the namespace and both devices. */
void delay_link_stop(struct delay_link *link);

#endif
