/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Library mode: a userspace driver that links libiodp, makes its own thread an iodp worker
 * and translates its own DMA requests in bursts, with no rings and no engine.
 *
 * The driver owns a 1 MiB buffer, maps it at IOVA 0x100000 for its device through the
 * iommufd-shaped control API, translates a burst of requests (one crosses a page, one is
 * out of range), then unmaps half the buffer from the same thread and shows that the next
 * burst faults there. Exit status 0 when every answer is the expected one.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS under -std=c11 */

#include <iodp/iodp.h>
#include <iodp/worker.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define BUF_SIZE (1u << 20)
#define IOVA 0x100000ull

static int failures;

static void expect(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "library_mode: FAIL: %s\n", what);
		failures++;
	}
}

int main(void)
{
	struct iodp_extack ext = {{0}};
	struct iodp_ctx *ctx = NULL;
	if (iodp_ctx_open(&ctx) != 0)
		return 1;

	/* The device, an IOAS holding the buffer, and the attachment. */
	struct iodp_device_alloc dev = {.size = sizeof(dev), .model = IODP_IOMMU_VTD, .rid = 0x10};
	snprintf(dev.name, sizeof(dev.name), "mydev");
	struct iodp_ioas_alloc ioas = {.size = sizeof(ioas)};
	unsigned char *buf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || iodp_device_alloc(ctx, &dev, &ext) != 0 ||
	    iodp_ioas_alloc(ctx, &ioas, &ext) != 0) {
		fprintf(stderr, "library_mode: setup failed: %s\n", ext.msg);
		return 1;
	}
	struct iodp_ioas_map map = {.size = sizeof(map),
				    .flags = IODP_IOAS_MAP_FIXED_IOVA | IODP_IOAS_MAP_READABLE |
					     IODP_IOAS_MAP_WRITEABLE,
				    .ioas_id = ioas.out_ioas_id,
				    .user_va = (uint64_t)(uintptr_t)buf,
				    .length = BUF_SIZE,
				    .iova = IOVA};
	struct iodp_device_attach at = {.size = sizeof(at), .dev_id = dev.out_dev_id,
					.pt_id = ioas.out_ioas_id};
	if (iodp_ioas_map(ctx, &map, &ext) != 0 || iodp_device_attach(ctx, &at, &ext) != 0) {
		fprintf(stderr, "library_mode: map/attach failed: %s\n", ext.msg);
		return 1;
	}

	/* This thread becomes a worker; its requests name the device as port 0. */
	struct iodp_worker_config cfg = {.size = sizeof(cfg)};
	struct iodp_worker *w = NULL;
	if (iodp_worker_create(ctx, &cfg, &w, &ext) != 0 ||
	    iodp_worker_set_port(w, 0, dev.out_dev_id, &ext) != 0) {
		fprintf(stderr, "library_mode: worker: %s\n", ext.msg);
		return 1;
	}

	struct iodp_request reqs[4] = {
		{.iova = IOVA + 0x40, .cookie = 1, .length = 64, .pasid = IODP_PASID_NONE,
		 .access = IODP_ACCESS_READ},
		{.iova = IOVA + 0x1ff0, .cookie = 2, .length = 32, .pasid = IODP_PASID_NONE,
		 .access = IODP_ACCESS_WRITE}, /* crosses into the next page */
		{.iova = IOVA + BUF_SIZE, .cookie = 3, .length = 8, .pasid = IODP_PASID_NONE,
		 .access = IODP_ACCESS_READ}, /* just past the buffer */
		{.iova = IOVA + 0x80000, .cookie = 4, .length = 8, .pasid = IODP_PASID_NONE,
		 .access = IODP_ACCESS_WRITE},
	};
	struct iodp_completion cpl[64];
	size_t used = 0;
	size_t n = iodp_translate_burst(w, reqs, 4, cpl, 64, &used);
	printf("burst 1: %zu requests answered with %zu completions\n", used, n);
	for (size_t i = 0; i < n; i++)
		printf("  cookie %llu: %s host %p offset %u length %u%s\n",
		       (unsigned long long)cpl[i].cookie, cpl[i].fault ? "fault" : "ok",
		       (void *)(uintptr_t)cpl[i].host, cpl[i].offset, cpl[i].length,
		       (cpl[i].flags & IODP_CPL_LAST) ? " (last)" : "");
	expect(used == 4, "all four requests answered");
	/* The buffer is virtually contiguous, so the crossing request is one run. */
	expect(n == 4, "one completion per request");
	expect(cpl[0].host == (uint64_t)(uintptr_t)(buf + 0x40), "request 1 host address");
	expect(cpl[1].host == (uint64_t)(uintptr_t)(buf + 0x1ff0) && cpl[1].length == 32,
	       "request 2 in one run");
	expect(cpl[2].fault == IODP_FAULT_NOT_PRESENT, "request 3 faults");
	expect(cpl[3].host == (uint64_t)(uintptr_t)(buf + 0x80000), "request 4 host address");

	/* Unmap the upper half from this same thread, between bursts: no deadlock, and the
	 * sync inside the unmap covers this worker's own shard. */
	struct iodp_ioas_unmap un = {.size = sizeof(un), .ioas_id = ioas.out_ioas_id,
				     .iova = IOVA, .length = BUF_SIZE};
	/* Whole mappings only: unmap everything and map the lower half back. */
	map.length = BUF_SIZE / 2;
	if (iodp_ioas_unmap(ctx, &un, &ext) != 0 || iodp_ioas_map(ctx, &map, &ext) != 0) {
		fprintf(stderr, "library_mode: remap failed: %s\n", ext.msg);
		return 1;
	}
	n = iodp_translate_burst(w, reqs, 4, cpl, 64, &used);
	expect(n == 4 && cpl[0].fault == 0 && cpl[3].fault == IODP_FAULT_NOT_PRESENT,
	       "after the unmap the upper half faults, the lower half translates");

	struct iodp_worker_stats st;
	iodp_worker_get_stats(w, &st);
	printf("worker: %llu requests, %llu pages, %llu hits, %llu walks, %llu faults, "
	       "%llu invalidations\n",
	       (unsigned long long)st.requests, (unsigned long long)st.pages,
	       (unsigned long long)st.hits, (unsigned long long)st.walks,
	       (unsigned long long)st.faults, (unsigned long long)st.invalidations);
	expect(st.requests == 8 && st.faults == 3, "worker counters");

	iodp_worker_destroy(w);
	iodp_ctx_close(ctx);
	munmap(buf, BUF_SIZE);
	if (failures == 0)
		printf("library_mode: ok\n");
	return failures == 0 ? 0 : 1;
}
