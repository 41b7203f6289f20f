/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef IODP_IPC_PROTO_H
#define IODP_IPC_PROTO_H

/**
 * @file
 * The `ipc` device's wire protocol: how a driver in another process attaches to iodp-pmd.
 *
 * Shaped like vhost-user: the app listens on a unix socket (SOCK_SEQPACKET, one message per
 * packet, every message exactly sizeof(struct iodp_ipc_msg)); the driver connects and
 *
 *   1. sends HELLO with its guest memory as a file descriptor (SCM_RIGHTS): a memfd sealed
 *      against shrinking (F_SEAL_SHRINK), so the app can never touch a truncated page;
 *   2. gets back a reply carrying another memfd: the device's queues, two DPDK element
 *      rings each (requests in, completions out; 32-byte elements), laid out as
 *      iodp_ipc_rings says and initialised by the app with rte_ring_init();
 *   3. sends MAP / UNMAP (IOVA -> offset in its guest memory); an UNMAP is answered only
 *      once no worker can still use the old translation;
 *   4. posts struct iodp_request on a queue's request ring (rte_ring_sp_enqueue_burst_elem)
 *      and takes struct iodp_completion from its completion ring
 *      (rte_ring_sc_dequeue_burst_elem): no EAL is needed for that, only the ring headers
 *      (a request's port field is ignored: the queue says whose it is);
 *   5. sends BYE, or just goes away: either way the device is stopped and everything it
 *      shared is released.
 *
 * A completion's host address is in the driver's own address space (where it said, in
 * HELLO, that it mapped its guest memory). Malformed messages, or ring indices that no
 * correct producer could write, stop the device; the app and its other devices go on.
 */

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IODP_IPC_VERSION 1u

enum iodp_ipc_type {
	IODP_IPC_HELLO = 1, /* driver -> app, with the guest memory fd */
	IODP_IPC_MAP = 2,
	IODP_IPC_UNMAP = 3,
	IODP_IPC_BYE = 4,
	IODP_IPC_REPLY = 128, /* app -> driver: status of the message with the same seq */
};

/** iodp_ipc_map::flags */
#define IODP_IPC_MAP_READ 1u
#define IODP_IPC_MAP_WRITE 2u

struct iodp_ipc_hello {
	uint32_t version;  /* IODP_IPC_VERSION */
	uint32_t reserved;
	uint64_t mem_size; /* bytes of guest memory shared (<= the fd's size) */
	uint64_t mem_base; /* where the driver mapped it: completions point there */
	char name[32];     /* the driver's name, for the app's log (NUL-terminated) */
};

struct iodp_ipc_map {
	uint64_t iova;
	uint64_t offset;   /* into the guest memory */
	uint64_t length;   /* iova, offset and length are multiples of 4 KiB */
	uint32_t flags;    /* IODP_IPC_MAP_* */
	uint32_t reserved;
};

struct iodp_ipc_unmap {
	uint64_t iova;
	uint64_t length;
};

/**
 * HELLO's reply (with the rings fd): queue q's request ring is at offset
 * 2 * q * ring_stride, its completion ring at (2 * q + 1) * ring_stride.
 */
struct iodp_ipc_rings {
	uint64_t size;        /* bytes of the rings fd */
	uint64_t ring_stride;
	uint32_t queues;
	uint32_t entries;     /* each ring's size (a power of two; entries - 1 usable) */
	uint32_t elem_size;   /* 32 */
	uint32_t reserved;
	char device[32];      /* the device's name in the app */
};

struct iodp_ipc_msg {
	uint32_t type;    /* enum iodp_ipc_type */
	uint32_t seq;     /* echoed in the reply */
	int32_t status;   /* reply: 0 or -errno */
	uint32_t reserved;
	union {
		struct iodp_ipc_hello hello;
		struct iodp_ipc_map map;
		struct iodp_ipc_unmap unmap;
		struct iodp_ipc_rings rings;  /* reply to HELLO */
		uint64_t unmapped;            /* reply to UNMAP: bytes */
		uint8_t raw[112];
	} u;
	char error[128];  /* reply with status < 0: what was wrong, naming the object */
};

#ifdef __cplusplus
static_assert(sizeof(struct iodp_ipc_msg) == 256, "fixed-size messages");
}
#else
_Static_assert(sizeof(struct iodp_ipc_msg) == 256, "fixed-size messages");
#endif

#endif /* IODP_IPC_PROTO_H */
