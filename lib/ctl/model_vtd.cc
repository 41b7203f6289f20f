/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Intel VT-d: scalable mode, a guest's first stage nested over iodp's second stage through
 * PASID entries (IOMMU_HWPT_DATA_VTD_S1), queued invalidation.
 */
#include "model.h"

#include <iodp/iodp.h>
#include <iodp/vtd.h>

#include <cstring>

namespace iodp::ctl {

namespace {

using pgtable::Format;

bool walks(Format f)
{
	return f != Format::arm_s1 && f != Format::arm_s2;
}

iotlb::Route nested_route(const HwptNested &h, std::optional<uint32_t> pasid)
{
	const Format f = h.vtd.addr_width == vtd::kS1Width5Level ? Format::x86_64_5l
								 : Format::x86_64_4l;
	// VT-d tags first-stage entries with the domain (this HWPT) and the PASID.
	iotlb::Route r = route_nested(h, pgtable::table_config(f, h.vtd.pgtbl_addr), h.id, 0,
				      pasid ? *pasid : iotlb::kNoPasid);
	// Without SRE the PASID entry refuses supervisor requests outright.
	r.priv_faults = !(h.vtd.flags & vtd::kS1Sre);
	return r;
}

void binding_tags(const HwptNested &h, std::optional<uint32_t> pasid, inval::Descriptor *d)
{
	// First-stage entries are tagged (this HWPT, the PASID or none for the RID).
	d->match = inval::kMatchDomain | inval::kMatchPasid;
	d->domain = h.id;
	d->pasid = pasid ? *pasid : iotlb::kNoPasid;
}

Status decode_invalidation(const HwptNested &h, const std::byte *entry, inval::Descriptor *out)
{
	iodp_hwpt_vtd_s1_invalidate v;
	std::memcpy(&v, entry, sizeof(v));
	return inval::decode_iommufd_vtd_s1(v.addr, v.npages, v.flags, v.__reserved, h.id, out);
}

constexpr uint64_t bits(uint64_t value, unsigned shift)
{
	return value << shift;
}

/*
 * VT-d CAP_REG and ECAP_REG (Intel VT-d specification, 11.4.2 and 11.4.3) for what iodp's
 * VT-d model does: 4-level (48-bit) second stage with 2 MiB and 1 GiB leaves, first stage
 * with 1 GiB pages and 5 levels, nesting, scalable mode with PASIDs, queued and
 * page-selective invalidation, device-TLB invalidation, page requests (fault queues),
 * second-stage accessed/dirty (dirty tracking), coherent walks. No MMIO registers, no
 * interrupt remapping, no pass-through.
 */
size_t hw_info_record(const HwInfo &info, unsigned char *out, size_t room)
{
	iodp_hw_info_vtd r{};
	r.cap_reg = bits(6, 0) |           // ND: 16-bit domain ids
		    bits(1u << 2, 8) |     // SAGAW: 4-level (48-bit) second stage
		    bits(47, 16) |         // MGAW: 48 bits
		    bits(3, 34) |          // SLLPS: 2 MiB and 1 GiB second-stage leaves
		    bits(1, 39) |          // PSI: page-selective invalidation
		    bits(18, 48) |         // MAMV: masks up to 2^18 pages (1 GiB)
		    bits(1, 56) |          // FL1GP: first-stage 1 GiB pages
		    bits(1, 60);           // FL5LP: 5-level first stage
	r.ecap_reg = bits(1, 0) |          // C: walks are coherent (CPU reads)
		     bits(1, 1) |          // QI: queued invalidation
		     bits(1, 2) |          // DT: device-TLB invalidation
		     bits(1, 7) |          // SC: snoop control
		     bits(1, 26) |         // NEST: nested translation
		     bits(1, 29) |         // PRS: page requests (fault queues)
		     bits(info.pasid_bits != 0 ? info.pasid_bits - 1u : 0, 35) | // PSS
		     bits(info.pasid_bits != 0, 40) | // PASID
		     bits(1, 43) |         // SMTS: scalable mode
		     bits(info.dirty_tracking, 45) | // SLADS
		     bits(1, 46) |         // SLTS: second-stage translation
		     bits(1, 47) |         // FLTS: first-stage translation
		     bits(1, 48);          // SMPWCS: coherent scalable-mode walks
	const size_t n = std::min(room, sizeof(r));
	std::memcpy(out, &r, n);
	return n;
}

} // namespace

const ModelOps kVtdOps = {
	.model = IommuModel::vtd,
	.name = "vtd",
	.paging_format = Format::vtd_ss_4l,
	.walks = walks,
	.msi_window = {0xfee00000, 0xfeefffff},
	.dirty_tracking = true,
	.nested_data_type = IODP_HWPT_DATA_VTD_S1,
	.nested_name = "VTD_S1",
	.pasids_through_rid = false,
	.nested_route = nested_route,
	.binding_tags = binding_tags,
	.invalidate_data_type = IODP_HWPT_INVALIDATE_DATA_VTD_S1,
	.invalidate_name = "VTD_S1 (0)",
	.invalidate_entry_bytes = sizeof(iodp_hwpt_vtd_s1_invalidate),
	.decode_invalidation = decode_invalidation,
	.hw_info_type = IODP_HW_INFO_TYPE_INTEL_VTD,
	.hw_info_record = hw_info_record,
};

} // namespace iodp::ctl
