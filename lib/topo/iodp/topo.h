/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Translation topologies, written once: what a VMM sets up on an iodp context so that one
 * device's DMA is translated the way its guest expects. A device (lib/dev: queues, bursts,
 * stats) is attached to one of these; it does not build them itself. The emulated driver,
 * the tests and the vfio shadow tests use the same recipes.
 *
 * - paging: guest RAM mapped in an IOAS at IOVA = guest-physical address; the device
 *   attached to the IOAS (an automatic paging domain of its model's format).
 * - vtd_nested: guest RAM in an IOAS (stage 2); a NEST_PARENT HWPT; the guest's own VT-d
 *   first stage (x86-64 4-level) built in guest RAM; a VTD_S1 nested HWPT; the device's
 *   RID or one PASID attached to it.
 * - smmu_nested: the same with an Arm stage 1 (4 KiB granule, 48 bits), one context
 *   descriptor (SSID 0, ASID given) and an STE taking requests without a SubstreamID to it.
 */

#include <iodp/ctl.h>
#include <iodp/pgtable_builder.h>
#include <iodp/status.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

namespace iodp::topo {

enum class Kind : uint8_t { paging, vtd_nested, smmu_nested };
/** "paging", "vtd-nested", "smmu-nested". */
const char *kind_name(Kind kind);

struct Recipe {
	Kind kind = Kind::paging;
	/** Guest RAM: host memory [host, host + bytes) at guest-physical address @p gpa. */
	std::byte *host = nullptr;
	uint64_t gpa = 0;
	uint64_t bytes = 0;
	/** Nested: guest RAM from this offset to the end holds the guest's tables. */
	uint64_t tables_offset = 0;
	/** Paging: map in 4 KiB pages only (IOMMU_OPTION_HUGE_PAGES off on the IOAS). */
	bool small_pages = false;
	/** vtd_nested: the PASID the guest's stage 1 is attached at (none: the RID). */
	std::optional<uint32_t> pasid;
	/** smmu_nested: the context descriptor's ASID. */
	uint16_t asid = 1;
};

/**
 * One device's topology on a context. build() makes it whole or not at all (a failure
 * undoes what it made); the destructor detaches the device and destroys what it made, in
 * order, so a context is left as it was found.
 */
class Domain {
public:
	/** Set up @p recipe for device @p dev_id (a ctl device of the kind's IOMMU model). */
	static Result<std::unique_ptr<Domain>> build(ctl::Ctx &ctx, uint32_t dev_id,
						     const Recipe &recipe);
	~Domain();
	Domain(const Domain &) = delete;
	Domain &operator=(const Domain &) = delete;

	const Recipe &recipe() const { return recipe_; }
	uint32_t ioas() const { return ioas_; }
	/** The HWPT the device's DMA goes through (paging: the automatic domain). */
	uint32_t hwpt() const { return hwpt_; }
	/** Nested: the NEST_PARENT HWPT (stage 2); 0 for paging. */
	uint32_t parent() const { return parent_; }
	/** The PASID the device is attached with (none: the RID). */
	std::optional<uint32_t> pasid() const { return recipe_.pasid; }
	/**
	 * Nested: the guest's stage 1 (IOVA -> guest-physical), empty at first; a guest maps
	 * and unmaps through it and sends invalidations for what it changed. Paging: none.
	 */
	pgtable::TableBuilder *stage1() { return s1_ ? &*s1_ : nullptr; }

private:
	Domain(ctl::Ctx &ctx, uint32_t dev_id, const Recipe &recipe)
		: ctx_(ctx), dev_id_(dev_id), recipe_(recipe)
	{
	}
	Status make();

	ctl::Ctx &ctx_;
	const uint32_t dev_id_;
	const Recipe recipe_;
	uint32_t ioas_ = 0, parent_ = 0, hwpt_ = 0;
	bool attached_ = false;
	std::unique_ptr<pgtable::TablePool> pool_;
	std::optional<pgtable::TableBuilder> s1_;
};

} // namespace iodp::topo
