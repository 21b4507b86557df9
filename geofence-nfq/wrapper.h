/* What geofence-nfq uses of libnetfilter_queue's message API and of libmnl, for bindgen. */
#include <stdint.h>
#include <linux/netlink.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
