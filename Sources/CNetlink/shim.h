#ifndef NODENET_CNETLINK_H
#define NODENET_CNETLINK_H
// libmnl and the Linux uapi headers the Netlink module speaks.
// glibc's <netinet/in.h> first: the uapi libc-compat.h then skips its own in_addr/in6_addr,
// so Swift files that import both Glibc and CNetlink see one definition of each.
#include <sys/socket.h>
#include <netinet/in.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/if_bridge.h>
#include <linux/veth.h>
#include <linux/neighbour.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>
#endif
