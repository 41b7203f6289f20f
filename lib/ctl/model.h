/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * What differs between IOMMU models, in one table per model (the kernel's iommu_ops):
 * model_vtd.cc and model_smmuv3.cc. Core ctl asks the table and never branches on the
 * model; adding a model is adding an IommuModel value and one such file. The hardware
 * structures the tables read are lib/model's (<iodp/vtd.h>, <iodp/smmuv3.h>). Private to
 * lib/ctl.
 */

#include "objects.h"

#include <iodp/inval.h>
#include <iodp/iotlb.h>

#include <cstddef>
#include <optional>

namespace iodp::ctl {

#define IODP_CTL_PRIVATE [[gnu::visibility("hidden")]]

struct ModelOps {
	IommuModel model;
	const char *name; ///< "vtd", "smmuv3": messages and dumps
	/** Paging HWPTs: the format made when none is asked for, and which formats it walks. */
	pgtable::Format paging_format;
	bool (*walks)(pgtable::Format format);
	/** Where the model's interrupt messages land: never translated, reserved in IOASes. */
	IovaRange msi_window;
	bool dirty_tracking; ///< second-stage accessed/dirty bits
	/** The guest table it nests (IOMMU_HWPT_DATA_*) and that type's name in messages. */
	uint32_t nested_data_type;
	const char *nested_name;
	/**
	 * SubstreamIDs come from the table attached to the RID (an SMMUv3 STE's CD table), not
	 * from bindings per PASID.
	 */
	bool pasids_through_rid;
	/** The route of @p pasid (none: the RID) through nested HWPT @p h of this model. */
	iotlb::Route (*nested_route)(const HwptNested &h, std::optional<uint32_t> pasid);
	/**
	 * Make @p d (targets set) name every translation cached through a binding of @p pasid
	 * to @p h, by the tags the model puts on them: what a detach or replace drops.
	 */
	void (*binding_tags)(const HwptNested &h, std::optional<uint32_t> pasid,
			     inval::Descriptor *d);
	/** IOMMU_HWPT_INVALIDATE: the array's data type, its name, one entry's size. */
	uint32_t invalidate_data_type;
	const char *invalidate_name;
	uint32_t invalidate_entry_bytes;
	/** Decode one entry (invalidate_entry_bytes long) for nested HWPT @p h. */
	Status (*decode_invalidation)(const HwptNested &h, const std::byte *entry,
				      inval::Descriptor *out);
	/** GET_HW_INFO: the kernel's record type for the model and the record itself. */
	uint32_t hw_info_type;
	size_t (*hw_info_record)(const HwInfo &info, unsigned char *out, size_t room);
};

IODP_CTL_PRIVATE const ModelOps &model_ops(IommuModel model);
IODP_CTL_PRIVATE extern const ModelOps kVtdOps;
IODP_CTL_PRIVATE extern const ModelOps kSmmuV3Ops;

/* Routes, for the models' nested_route (device.cc). */
/** A route on which every request faults with @p kind. */
IODP_CTL_PRIVATE iotlb::Route route_blocked(pgtable::FaultKind kind, uint8_t stage = 0,
					    int8_t level = 0);
/** A paging HWPT's own translations. */
IODP_CTL_PRIVATE iotlb::Route route_paging(const HwptPaging &h);
/** A guest stage 1 @p s1 over @p h's parent, tagged (@p domain, @p asid, @p pasid). */
IODP_CTL_PRIVATE iotlb::Route route_nested(const HwptNested &h, const pgtable::TableConfig &s1,
					   uint32_t domain, uint32_t asid, uint32_t pasid);
/**
 * The route through nested HWPT @p h for @p pasid (its model's nested_route, or blocked
 * for an opaque stage 1). Lock-free for a worker inside a burst: device.cc says why.
 */
IODP_CTL_PRIVATE iotlb::Route route_through(const HwptNested &h, std::optional<uint32_t> pasid);
/**
 * Read @p len bytes at a guest-physical (stage-1 output) address through @p parent's stage
 * 2; a blocked route saying why when that fails.
 */
IODP_CTL_PRIVATE std::optional<iotlb::Route> read_ipa(const HwptPaging &parent, uint64_t ipa,
						      void *buf, size_t len);

} // namespace iodp::ctl
