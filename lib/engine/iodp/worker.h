/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef IODP_WORKER_H
#define IODP_WORKER_H

/**
 * @file
 * Library mode for C drivers: the driver's own thread becomes an iodp worker (its own IOTLB
 * shard, kept coherent with every invalidation of the context) and translates its own
 * requests in bursts, with no rings and no engine.
 *
 *   struct iodp_worker *w;
 *   iodp_worker_create(ctx, &cfg, &w, &ext);
 *   iodp_worker_set_port(w, 0, dev_id, &ext);        // requests with device = 0
 *   n = iodp_translate_burst(w, reqs, nreq, cpls, cap, &consumed);
 *
 * Between bursts the same thread may call the control API (map, unmap, invalidate): its
 * sync does not wait for the caller. A thread that stops translating for a while calls
 * iodp_worker_offline() so that other threads' syncs do not wait for it.
 */

#include <iodp/iodp.h>
#include <iodp/request.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct iodp_worker;

struct iodp_worker_config {
	uint32_t size;          /* sizeof(struct iodp_worker_config) */
	uint32_t flags;         /* none defined: 0 */
	uint32_t iotlb_entries; /* 0: default (32768) */
	uint32_t walk_entries;  /* paging-structure cache entries; 0: default (2048) */
};

struct iodp_worker_stats {
	uint64_t requests;
	uint64_t completions;
	uint64_t pages;
	uint64_t hits;
	uint64_t misses;
	uint64_t walks;
	uint64_t walk_reads;
	uint64_t faults;
	uint64_t invalidations;
};

/** 0, or -errno with the reason in @ext (EINVAL bad config, ENOSPC no worker slot). */
int iodp_worker_create(struct iodp_ctx *ctx, const struct iodp_worker_config *cfg,
		       struct iodp_worker **out, struct iodp_extack *ext);
/** Unregister and free (NULL is ignored). */
void iodp_worker_destroy(struct iodp_worker *w);
/**
 * Requests whose port field is @port belong to the context's device @dev_id (0: to no
 * device). A request naming a port with no device is answered IODP_FAULT_BAD_REQUEST.
 */
int iodp_worker_set_port(struct iodp_worker *w, uint16_t port, uint32_t dev_id,
			 struct iodp_extack *ext);
/**
 * Translate up to @n requests in order, writing at most @cap completions (each request
 * gets one per host-contiguous run, the last flagged IODP_CPL_LAST; a fault answers it
 * once). *consumed is how many requests were answered. Returns completions written.
 * With @cap >= 34 every call makes progress.
 */
size_t iodp_translate_burst(struct iodp_worker *w, const struct iodp_request *reqs, size_t n,
			    struct iodp_completion *cpls, size_t cap, size_t *consumed);
void iodp_worker_offline(struct iodp_worker *w);
void iodp_worker_online(struct iodp_worker *w);
void iodp_worker_get_stats(const struct iodp_worker *w, struct iodp_worker_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* IODP_WORKER_H */
