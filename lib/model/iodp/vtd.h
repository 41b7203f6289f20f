/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Intel VT-d structures (Intel VT-d specification, rev. 4): the first-stage fields of a
 * scalable-mode PASID-table entry as iommufd passes them (IOMMU_HWPT_DATA_VTD_S1), and the
 * invalidation descriptor types. The one definition that lib/ctl, lib/inval, the drivers
 * and the tests share.
 */

#include <cstdint>

namespace iodp::vtd {

/** First-stage PASID-entry flags (iommufd's IOMMU_VTD_S1_*; the PASID entry's bits). */
inline constexpr uint64_t kS1Sre = 1ull << 0;  ///< supervisor requests allowed
inline constexpr uint64_t kS1Eafe = 1ull << 1; ///< extended access flag
inline constexpr uint64_t kS1Wpe = 1ull << 2;  ///< write protect enforced for supervisor
inline constexpr uint64_t kS1KnownFlags = kS1Sre | kS1Eafe | kS1Wpe;

/** First-stage address widths: 48 (4-level) and 57 (5-level) bits. */
inline constexpr uint32_t kS1Width4Level = 48;
inline constexpr uint32_t kS1Width5Level = 57;

/** Invalidation descriptor types (qw0 bits 3:0, with 11:9 as bits 6:4). */
inline constexpr uint8_t kContextCache = 0x1, kIotlb = 0x2, kDeviceTlb = 0x3, kIec = 0x4,
			 kInvWait = 0x5, kPasidIotlb = 0x6, kPasidCache = 0x7,
			 kPasidDeviceTlb = 0x8;

} // namespace iodp::vtd
