/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Arm SMMUv3: a guest's STE (stage 1 through its CD table) nested over iodp's stage 2
 * (IOMMU_HWPT_DATA_ARM_SMMUV3), commands as invalidations.
 */
#include "model.h"

#include <iodp/iodp.h>
#include <iodp/smmuv3.h>

#include <endian.h>

#include <algorithm>
#include <cstring>

namespace iodp::ctl {

namespace {

using pgtable::FaultKind;
using pgtable::Format;
using iotlb::Route;

bool walks(Format f)
{
	return f == Format::arm_s1 || f == Format::arm_s2;
}

/** SMMUv3: STE -> (SSID) -> CD -> stage 1 over the parent's stage 2, tagged (VMID, ASID). */
Route nested_route(const HwptNested &h, std::optional<uint32_t> pasid)
{
	using namespace smmuv3;
	const Ste ste = Ste::decode(h.smmu.ste);
	const HwptPaging &parent = *h.parent;
	if (!ste.valid || ste.config == kConfigAbort) // DMA is blocked
		return route_blocked(FaultKind::not_attached);
	if (ste.config == kConfigBypass) // stage-1 bypass: the parent's stage 2 alone
		return route_paging(parent);
	uint32_t ssid = 0;
	if (pasid) {
		if (ste.s1_cd_max == 0 || *pasid >= (1u << ste.s1_cd_max))
			return route_blocked(FaultKind::bad_config, 1);
		ssid = *pasid;
	} else if (ste.s1_cd_max != 0) {
		switch (ste.s1dss) { // what a request without SSID does
		case kS1dssTerminate:
			return route_blocked(FaultKind::not_attached);
		case kS1dssBypass:
			return route_paging(parent);
		case kS1dssSsid0:
			break;
		default:
			return route_blocked(FaultKind::bad_config, 1);
		}
	}
	uint64_t cd_addr = ste.s1_context_ptr + uint64_t{ssid} * kCdBytes;
	if (ste.s1_fmt != kS1FmtLinear && ste.s1_cd_max != 0) {
		// Two levels: an L1 descriptor per 64 or 1024 CDs.
		if (ste.s1_fmt != kS1Fmt2Level4K && ste.s1_fmt != kS1Fmt2Level64K)
			return route_blocked(FaultKind::bad_config, 1);
		const unsigned split = ste.s1_fmt == kS1Fmt2Level4K ? 6 : 10;
		uint64_t l1 = 0;
		if (auto f = read_ipa(parent, ste.s1_context_ptr + uint64_t{ssid >> split} * kL1CdBytes,
				      &l1, kL1CdBytes))
			return *f;
		const L1Cd desc = L1Cd::decode(le64toh(l1));
		if (!desc.valid)
			return route_blocked(FaultKind::bad_config, 1);
		cd_addr = desc.l2_ptr + uint64_t{ssid & ((1u << split) - 1)} * kCdBytes;
	}
	uint64_t words[2] = {0, 0};
	if (auto f = read_ipa(parent, cd_addr, words, sizeof(words)))
		return *f;
	words[0] = le64toh(words[0]);
	words[1] = le64toh(words[1]);
	const Cd cd = Cd::decode(words);
	if (!cd.valid || !cd.aa64)
		return route_blocked(FaultKind::bad_config, 1);
	if (cd.epd0) // TTB0 walks disabled
		return route_blocked(FaultKind::not_present, 1);
	const int granule = cd.granule_shift();
	if (granule < 0 || cd.t0sz < 16 || cd.t0sz > 48)
		return route_blocked(FaultKind::bad_config, 1);
	pgtable::TableConfig s1 = pgtable::table_config(Format::arm_s1, cd.ttb0,
							static_cast<unsigned>(granule),
							64u - cd.t0sz);
	s1.update_accessed = cd.ha;
	// SMMU TLB entries are tagged VMID + ASID, not with the SSID.
	return route_nested(h, s1, parent.id, cd.asid, iotlb::kNoPasid);
}

void binding_tags(const HwptNested &h, std::optional<uint32_t>, inval::Descriptor *d)
{
	// Stage 1 behind an STE is tagged (VMID = the parent, ASID from each CD): the ASIDs
	// the CD table named are not known here, so the VMID goes whole (the parent's own
	// stage-2 entries too: more, never less).
	d->match = inval::kMatchDomain;
	d->domain = h.parent->id;
}

Status decode_invalidation(const HwptNested &h, const std::byte *entry, inval::Descriptor *out)
{
	iodp_hwpt_arm_smmuv3_invalidate c;
	std::memcpy(&c, entry, sizeof(c));
	// The guest's VMID is replaced by the parent's, as the kernel does for a nested domain.
	return inval::decode_smmuv3_cmd(c.cmd, true, h.parent->id, out);
}

constexpr uint64_t bits(uint64_t value, unsigned shift)
{
	return value << shift;
}

/*
 * SMMUv3 ID registers (Arm IHI 0070, 6.3) for iodp's SMMUv3 model: stage 1 and stage 2,
 * AArch64 tables, coherent, 16-bit ASIDs and VMIDs, ATS, little-endian tables, no stall,
 * SubstreamID bits = the device's PASID bits, 48-bit output, 4/16/64 KiB granules. No
 * queues or MSIs (iommufd carries commands and events), no hardware dirty tracking.
 */
size_t hw_info_record(const HwInfo &info, unsigned char *out, size_t room)
{
	iodp_hw_info_arm_smmuv3 r{};
	r.idr[0] = static_cast<uint32_t>(bits(1, 0) |  // S2P
					 bits(1, 1) |  // S1P
					 bits(2, 2) |  // TTF: AArch64
					 bits(1, 4) |  // COHACC
					 bits(1, 10) | // ATS
					 bits(1, 12) | // ASID16
					 bits(1, 18) | // VMID16
					 bits(2, 21) | // TTENDIAN: little-endian
					 bits(1, 24)); // STALL_MODEL: no stall
	r.idr[1] = static_cast<uint32_t>(bits(16, 0) |              // SIDSIZE
					 bits(info.pasid_bits, 6)); // SSIDSIZE
	r.idr[5] = static_cast<uint32_t>(bits(5, 0) |  // OAS: 48 bits
					 bits(1, 4) |  // GRAN4K
					 bits(1, 5) |  // GRAN16K
					 bits(1, 6));  // GRAN64K
	const size_t n = std::min(room, sizeof(r));
	std::memcpy(out, &r, n);
	return n;
}

} // namespace

const ModelOps kSmmuV3Ops = {
	.model = IommuModel::smmuv3,
	.name = "smmuv3",
	.paging_format = Format::arm_s2,
	.walks = walks,
	.msi_window = {0x08000000, 0x080fffff},
	.dirty_tracking = false,
	.nested_data_type = IODP_HWPT_DATA_ARM_SMMUV3,
	.nested_name = "ARM_SMMUV3",
	.pasids_through_rid = true,
	.nested_route = nested_route,
	.binding_tags = binding_tags,
	.invalidate_data_type = IODP_HWPT_INVALIDATE_DATA_ARM_SMMUV3,
	.invalidate_name = "ARM_SMMUV3 (1)",
	.invalidate_entry_bytes = sizeof(iodp_hwpt_arm_smmuv3_invalidate),
	.decode_invalidation = decode_invalidation,
	.hw_info_type = IODP_HW_INFO_TYPE_ARM_SMMUV3,
	.hw_info_record = hw_info_record,
};

} // namespace iodp::ctl
