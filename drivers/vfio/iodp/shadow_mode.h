/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Shadow mode: a real device attached to a nested HWPT (a guest's stage 1 over a VMM's
 * stage 2) gets, in its kernel address space, the composition guest IOVA -> GPA -> host,
 * kept equal to what iodp translates.
 *
 * ShadowMode is the ctl::NestedObserver of that HWPT (Ctx::hwpt_attach_observer): each
 * guest invalidation (Ctx::hwpt_invalidate, all entries of one call merged) re-shadows only
 * the ranges it names with shadow::Shadow (range walk, coalescing, diff, unmaps before
 * maps); a domain-, PASID- or config-wide one re-walks the whole input range. All of it
 * happens before the invalidation call returns (strict). Stage-2 changes:
 * - guest memory unmapped from the IOAS: every IOVA range whose kernel mapping reached the
 *   memory that went is re-walked (an unmap can only take translations away, and only
 *   those that reached it): O(mappings) to find them, one sync per range;
 * - guest memory mapped into the IOAS: the whole input range is re-walked (new guest
 *   memory can make any stage-1 leaf reachable; there is no reverse map from GPAs to
 *   guest IOVAs). A not-present upper entry skips its whole reach, and unchanged mappings
 *   cost no kernel call, so this costs a walk of the guest's table, not kernel calls.
 * A kernel call that fails (a full type1 container: ENOSPC) is reported with the numbers
 * (the kernel's dma_avail, the dma_entry_limit module parameter, what is mapped) and the
 * device is degraded until every range it left stale has been re-shadowed successfully.
 *
 * The kernel side is any ctl::IoasMirror used for its map/unmap calls alone (drivers/vfio's
 * type1 container or iommufd IOAS, with FIXED_IOVA): one call per coalesced run.
 */

#include <iodp/ctl.h>
#include <iodp/shadow.h>

#include <atomic>
#include <cstdint>
#include <span>
#include <string>

namespace iodp::vfio {

class ShadowMode final : public ctl::NestedObserver {
public:
	/**
	 * @p kernel's map() and unmap() are the kernel calls (it is not attached to any IOAS);
	 * @p sysfs is where /sys is (for the type1 module parameter in messages).
	 */
	ShadowMode(std::string name, ctl::IoasMirror &kernel, std::string sysfs = "/sys",
		   const shadow::ShadowConfig &config = {});

	std::string name() const override { return name_; }
	Status changed(const pgtable::Translation *xlat,
		       std::span<const ctl::IovaRange> ranges) override;
	Status host_gone(const pgtable::Translation *xlat, uint64_t host,
			 uint64_t length) override;

	/** Unmap everything it mapped (a detach that keeps the kernel space). */
	Status clear() { return shadow_.clear(); }
	/** The shadow itself: under the iodp context's lock only (it changes under it). */
	const shadow::Shadow &shadow() const { return shadow_; }
	/** Readable from any thread (published after each change): */
	bool degraded() const { return degraded_.load(std::memory_order_relaxed); }
	/** Guest invalidations and stage-2 changes handled (calls of changed / host_gone). */
	uint64_t events() const { return events_.load(std::memory_order_relaxed); }
	uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }

private:
	Status sync(const pgtable::Translation *xlat, uint64_t start, uint64_t last);
	Status sync_all(const pgtable::Translation *xlat, std::span<const ctl::IovaRange> ranges);

	class Mapper : public shadow::KernelMapper {
	public:
		Mapper(ctl::IoasMirror &kernel, std::string sysfs)
			: kernel_(kernel), sysfs_(std::move(sysfs))
		{
		}
		Status map(uint64_t iova, uint64_t host, uint64_t size, uint8_t perm) override;
		Status unmap(uint64_t iova, uint64_t size) override;

	private:
		ctl::IoasMirror &kernel_;
		std::string sysfs_;
	};

	std::string name_;
	Mapper mapper_;
	shadow::Shadow shadow_;
	void publish();
	std::atomic<uint64_t> events_{0}, syncs_{0};
	std::atomic<bool> degraded_{false};
};

} // namespace iodp::vfio
