/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef IODP_REQUEST_H
#define IODP_REQUEST_H

/**
 * @file
 * What devices post and what they get back: translation requests, completions, and the
 * commands of a device's invalidation queue. Plain C, fixed layouts: the same structs go
 * through rings, shared memory and library-mode calls.
 */

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Request access bits (combine with |); the same values as the walker's. */
#define IODP_ACCESS_READ 1u
#define IODP_ACCESS_WRITE 2u
#define IODP_ACCESS_EXEC 4u
#define IODP_ACCESS_PRIV 8u

/** iodp_request::pasid for a request without a PASID (the device's RID translation). */
#define IODP_PASID_NONE 0xffffffffu

/** The longest request: a longer one is answered with IODP_FAULT_BAD_REQUEST. */
#define IODP_REQUEST_MAX_LEN (64u * 1024u)

/** Completion fault code (beside enum iodp_fault_kind's): the request itself is malformed. */
#define IODP_FAULT_BAD_REQUEST 16u

/**
 * A translation request: 32 bytes, two to a cache line. The port and queue come from where
 * it was received (the engine ignores what the device wrote there); library-mode callers
 * name the port.
 */
struct iodp_request {
	uint64_t iova;
	uint64_t cookie;   /* returned in every completion of this request */
	uint32_t length;   /* bytes from iova; 0 is taken as 1 (a probe of one address) */
	uint32_t pasid;    /* IODP_PASID_NONE: no PASID */
	uint16_t port;     /* engine port (library mode: the index given to iodp_worker_set_port) */
	uint16_t queue;
	uint8_t access;    /* IODP_ACCESS_* */
	uint8_t __reserved[3];
};

/** This completion is the request's last one. */
#define IODP_CPL_LAST 1u

/**
 * One answer: 32 bytes. A request whose bytes lie in pages that are not contiguous in host
 * memory gets one completion per contiguous run (offset, length), the last flagged
 * IODP_CPL_LAST. A fault answers the whole request once: fault != 0, host = 0, offset =
 * where in the request the fault is.
 */
struct iodp_completion {
	uint64_t cookie;
	uint64_t host;     /* host virtual address of iova + offset */
	uint32_t offset;   /* into the request */
	uint32_t length;   /* bytes at host */
	uint8_t fault;     /* enum iodp_fault_kind, IODP_FAULT_BAD_REQUEST; 0: translated */
	uint8_t stage;     /* faulting stage (1, 2), 0 for none */
	int8_t level;      /* faulting level */
	uint8_t flags;     /* IODP_CPL_* */
	uint32_t __reserved;
};

/* ---- a device's invalidation queue --------------------------------------------------- */

enum iodp_dev_cmd_type {
	/** data: one iommufd invalidation entry for the nested HWPT @object (data_type in
	 *  @arg: IODP_HWPT_INVALIDATE_DATA_VTD_S1 or _ARM_SMMUV3), then a sync. */
	IODP_DEV_CMD_HWPT_INVALIDATE = 1,
	/** An engine-managed IOAS @object: unmap [iova, iova + length), invalidate, sync.
	 *  (There is no map command: a device must not name host memory to map.) */
	IODP_DEV_CMD_IOAS_UNMAP = 2,
};

/**
 * A device-originated command (what a guest driver writes to its virtual IOMMU's queue).
 * Completed, after the invalidation is visible on every worker, with a iodp_dev_cmd_done.
 */
struct iodp_dev_cmd {
	uint32_t type;     /* enum iodp_dev_cmd_type */
	uint32_t object;   /* HWPT or IOAS id */
	uint64_t cookie;
	uint64_t iova;     /* UNMAP */
	uint64_t length;   /* UNMAP */
	uint64_t __reserved1;
	uint32_t __reserved2;
	uint32_t arg;      /* HWPT_INVALIDATE: data type */
	uint64_t data[3];  /* HWPT_INVALIDATE: the entry (up to 24 bytes) */
};

struct iodp_dev_cmd_done {
	uint64_t cookie;
	int32_t status;    /* 0 or -errno */
	uint32_t __reserved;
};

#ifdef __cplusplus
}
#endif

#endif /* IODP_REQUEST_H */
