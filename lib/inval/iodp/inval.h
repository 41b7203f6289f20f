/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * One invalidation descriptor for every source.
 *
 * VT-d invalidation-queue descriptors, SMMUv3 commands and iommufd invalidate arrays all
 * decode into Descriptor: a fully specified request (what to drop, where, and hints that may
 * only ever make it drop less when the source promised that was safe). Nothing opaque is
 * passed on, so every consumer (IOTLB shards, walk caches, config caches, device TLBs)
 * applies the same rules.
 *
 * A decoder rejects a malformed input with a reason and never produces a descriptor that
 * invalidates less than the input asked for; over-invalidation is allowed.
 */

#include <iodp/smmuv3.h>
#include <iodp/status.h>
#include <iodp/vtd.h>

#include <cstdint>
#include <string>

namespace iodp::inval {

/** What to drop; combine with |. */
inline constexpr uint8_t kTargetIotlb = 1;       ///< leaf translations
inline constexpr uint8_t kTargetWalkCache = 2;   ///< paging-structure (non-leaf) entries
inline constexpr uint8_t kTargetConfig = 4;      ///< PASID / context / CD / STE caches
inline constexpr uint8_t kTargetDeviceTlb = 8;   ///< the device's own ATC (ATS)
inline constexpr uint8_t kTargetAll = 15;

/** Which entries the targets are matched against; combine with |. None set: everything. */
inline constexpr uint8_t kMatchDomain = 1;  ///< domain == tag (VT-d DID, SMMU VMID, hwpt)
inline constexpr uint8_t kMatchAsid = 2;    ///< asid == SMMU stage-1 ASID
inline constexpr uint8_t kMatchPasid = 4;   ///< pasid == PASID / SSID
inline constexpr uint8_t kMatchDevice = 8;  ///< device == requester (SID / RID)
inline constexpr uint8_t kMatchRange = 16;  ///< translations overlapping [addr, addr + size)
/** The range is in stage-2 input (IPA) space: drops every nested entry of the domain. */
inline constexpr uint8_t kMatchStage2 = 32;

enum class Op : uint8_t {
	invalidate,
	sync, ///< complete once every earlier descriptor is visible on every core
};

struct Descriptor {
	Op op = Op::invalidate;
	uint8_t targets = kTargetAll;
	uint8_t match = 0;
	/** Only leaf entries changed: paging-structure caches may be kept. */
	bool leaf_only = false;
	/** Hint: the leaves in the range are of this size (log2 bytes); 0 when unknown. */
	uint8_t granule_shift = 0;
	/** Hint: the level of the leaves (architecture numbering); -1 when unknown. */
	int8_t level = -1;
	uint32_t domain = 0;
	uint32_t asid = 0;
	uint32_t pasid = 0;
	uint32_t device = 0;
	uint64_t addr = 0;  ///< kMatchRange: first byte
	uint64_t size = 0;  ///< kMatchRange: bytes (> 0; addr + size - 1 does not wrap)
	uint64_t sync_token = 0; ///< Op::sync: status data / MSI data to signal completion with
	uint64_t sync_addr = 0;  ///< Op::sync: where to write it (0: no write)

	/** Whether a cached translation of [iova, iova + len) matches the range part. */
	bool overlaps(uint64_t iova, uint64_t len) const
	{
		return !(match & kMatchRange) ||
		       (iova <= addr + (size - 1) && addr <= iova + (len - 1));
	}
};

/** One line for logs and test failures: "iotlb+walk domain=5 range=0x1000+0x2000 leaf". */
std::string describe(const Descriptor &d);

/* iommufd HWPT_INVALIDATE entries (see <iodp/iodp.h>) ---------------------------------- */

/**
 * Decode one IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 entry for the nested domain @p domain.
 * EOPNOTSUPP for unknown flags or a non-zero reserved field, EINVAL for a misaligned address
 * or a whole-space request (npages U64_MAX) with a non-zero address, as the kernel does.
 */
Status decode_iommufd_vtd_s1(uint64_t addr, uint64_t npages, uint32_t flags,
			     uint32_t reserved, uint32_t domain, Descriptor *out);

/**
 * Decode one SMMUv3 command (two little-endian 64-bit words). With @p iommufd_subset only
 * the opcodes a guest may pass through iommufd are accepted (TLBI_NSNH_ALL, TLBI_NH_VA,
 * TLBI_NH_VAA, TLBI_NH_ALL, TLBI_NH_ASID, ATC_INV, CFGI_CD, CFGI_CD_ALL); the others give
 * EIO. @p vmid replaces the command's VMID field, as the kernel does for a nested domain.
 */
Status decode_smmuv3_cmd(const uint64_t cmd[2], bool iommufd_subset, uint32_t vmid,
			 Descriptor *out);

/**
 * Decode one VT-d invalidation-queue descriptor (128-bit, or the first 128 bits of a 256-bit
 * one): context-cache, IOTLB, device-TLB, inv_wait, PASID-IOTLB, PASID-cache, PASID
 * device-TLB. Reserved granularities and misaligned page ranges are EINVAL; other types
 * (interrupt entry cache, page-group response) are EOPNOTSUPP.
 */
Status decode_vtd_qi(const uint64_t desc[2], Descriptor *out);

/* Descriptor types and command opcodes: <iodp/vtd.h>, <iodp/smmuv3.h> (one definition). */
namespace vtd = ::iodp::vtd;
namespace smmuv3 = ::iodp::smmuv3;

} // namespace iodp::inval
