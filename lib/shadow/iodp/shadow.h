/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Shadowing a page table into a kernel IOMMU, range by range.
 *
 * A real device behind VFIO is translated by the hardware IOMMU, which only knows flat
 * IOVA -> host mappings (a type1 container, an iommufd IOAS). When the device's IOMMU view
 * is a table someone else owns (a guest's stage 1 nested over a VMM's stage 2), each change
 * of that table must become kernel map and unmap calls. QEMU's intel-iommu with
 * caching-mode does it one call per leaf page; Shadow does it per invalidated range:
 *
 *  1. range-walk only the invalidated range (pgtable::walk_range: table by table, a
 *     not-present upper entry skips its whole reach);
 *  2. coalesce runs that are contiguous in IOVA and host memory with equal permissions;
 *  3. diff against what the kernel holds for the device (an ordered map: O(log n) lookups
 *     and updates), keeping what did not change;
 *  4. unmap what went away (adjacent unmaps merged into one call), then map what is new —
 *     unmaps first, so no stale translation is ever visible next to a new one.
 *
 * A kernel mapping that straddles the edge of an invalidated range is unmapped whole (the
 * kernel does not split mappings on unmap) and its parts outside the range are mapped again
 * as they were. Coalescing happens within one sync only: page-by-page churn (map a page,
 * invalidate it; unmap it, invalidate it) stays one kernel call per change, and only a
 * mapping an earlier sync coalesced from many pages is ever split.
 *
 * Not thread-safe: one Shadow per device, used under its owner's lock (the control path).
 */

#include <iodp/pgtable_range.h>
#include <iodp/status.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace iodp::shadow {

/** The kernel side: one call each (VFIO_IOMMU_MAP_DMA / IOMMU_IOAS_MAP and their unmaps). */
class KernelMapper {
public:
	virtual ~KernelMapper() = default;
	/** Map [iova, iova + size) to host memory at @p host with pgtable::kPerm* bits. */
	virtual Status map(uint64_t iova, uint64_t host, uint64_t size, uint8_t perm) = 0;
	/** Unmap [iova, iova + size), which covers whole mappings made by map(). */
	virtual Status unmap(uint64_t iova, uint64_t size) = 0;
};

/** One mapping the kernel holds: [iova, iova + size) -> [host, host + size). */
struct Extent {
	uint64_t size = 0;
	uint64_t host = 0;
	uint8_t perm = 0;
	bool operator==(const Extent &) const = default;
};

struct ShadowConfig {
	/**
	 * Coalesce contiguous runs into one kernel mapping (iodp's way). Off: one mapping per
	 * leaf run as the range walk reports it, which is QEMU's way (the bench's baseline).
	 */
	bool coalesce = true;
	/** Privilege of the device's accesses (0 or pgtable::kAccessPriv). */
	uint8_t priv = 0;
	/** Map only runs with at least these permissions (a write-only run cannot be mapped). */
	uint8_t need_perm = pgtable::kPermRead;
};

struct ShadowStats {
	uint64_t syncs = 0;
	uint64_t map_calls = 0, unmap_calls = 0;
	uint64_t bytes_mapped = 0, bytes_unmapped = 0;
	uint64_t entries_read = 0; ///< table entries the range walks read
	uint64_t failures = 0;     ///< kernel calls that failed
	uint64_t kept = 0;         ///< kernel mappings a sync found unchanged
};

class Shadow {
public:
	explicit Shadow(KernelMapper &kernel, const ShadowConfig &config = {});
	Shadow(const Shadow &) = delete;
	Shadow &operator=(const Shadow &) = delete;

	/**
	 * Make the kernel's view of [start, start + length) what @p xlat translates there.
	 * On a kernel failure the sync stops: what was done is recorded (extents() is exactly
	 * what the kernel holds), the device is degraded until a later sync of the failed range
	 * succeeds, and the error names the call, the range and how much is mapped.
	 */
	Status sync(const pgtable::Translation &xlat, uint64_t start, uint64_t length);
	/**
	 * Make the kernel map nothing in [start, start + length) (DMA through the table is
	 * blocked there), with the same rules as sync().
	 */
	Status drop(uint64_t start, uint64_t length);
	/** Unmap everything (a detach). */
	Status clear();

	/** What the kernel holds, by IOVA. */
	const std::map<uint64_t, Extent> &extents() const { return mapped_; }
	const ShadowStats &stats() const { return stats_; }
	/**
	 * A sync failed and part of its range may be stale in the kernel: until a later sync
	 * (or drop) of every failed range succeeds. stale() lists them (inclusive).
	 */
	bool degraded() const { return !stale_.empty(); }
	const std::map<uint64_t, uint64_t> &stale() const { return stale_; }
	uint64_t bytes_mapped() const { return total_; }

private:
	/** Diff @p wanted (IOVA order, inside the range) against the kernel over [start, last]. */
	Status apply(const std::vector<std::pair<uint64_t, Extent>> &wanted, uint64_t start,
		     uint64_t last);
	Status unmap_run(uint64_t iova, uint64_t size);
	Status map_one(uint64_t iova, const Extent &e);

	KernelMapper &kernel_;
	ShadowConfig config_;
	std::map<uint64_t, Extent> mapped_;
	ShadowStats stats_;
	uint64_t total_ = 0;
	std::map<uint64_t, uint64_t> stale_; ///< first -> last of ranges a failed sync left
	void mark_stale(uint64_t start, uint64_t last);
	void mark_fresh(uint64_t start, uint64_t last);
};

} // namespace iodp::shadow
