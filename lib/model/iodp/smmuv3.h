/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Arm SMMUv3 structures, as the architecture lays them out (Arm IHI 0070): the fields of
 * the stream table entry and context descriptor that iodp's model reads, the L1 context
 * descriptor of a two-level CD table, and the command opcodes. The one definition that
 * lib/ctl (routes), lib/inval (commands), the emulated driver and the tests share.
 *
 * Words are in CPU order; the tables in guest memory are little-endian (read with le64toh,
 * write with GuestMemory::store_le64).
 */

#include <cstdint>

namespace iodp::smmuv3 {

/** STE.Config (word 0, bits 3:1). */
inline constexpr uint8_t kConfigAbort = 0;
inline constexpr uint8_t kConfigBypass = 4;  ///< both stages bypassed
inline constexpr uint8_t kConfigS1 = 5;      ///< stage 1 translates (stage 2: the host's)
inline constexpr uint8_t kConfigS2 = 6;
inline constexpr uint8_t kConfigS1S2 = 7;

/** STE.S1DSS (word 1, bits 1:0): what a transaction without a SubstreamID does. */
inline constexpr uint8_t kS1dssTerminate = 0;
inline constexpr uint8_t kS1dssBypass = 1;
inline constexpr uint8_t kS1dssSsid0 = 2;

/** STE.S1Fmt (word 0, bits 5:4): the CD table's shape. */
inline constexpr uint8_t kS1FmtLinear = 0;
inline constexpr uint8_t kS1Fmt2Level4K = 1;  ///< L1 descriptors of 64 CDs each
inline constexpr uint8_t kS1Fmt2Level64K = 2; ///< L1 descriptors of 1024 CDs each

inline constexpr unsigned kCdBytes = 64;
inline constexpr unsigned kL1CdBytes = 8;

constexpr uint64_t field(uint64_t w, unsigned lo, unsigned bits)
{
	return (w >> lo) & ((1ull << bits) - 1);
}

/** The stage-1 fields of an STE (the ones a guest sets through iommufd). */
struct Ste {
	bool valid = false;
	uint8_t config = kConfigAbort;
	uint8_t s1_fmt = kS1FmtLinear;
	uint64_t s1_context_ptr = 0; ///< bits 51:6 of the CD table's (or L1 table's) address
	uint8_t s1_cd_max = 0;       ///< log2 of the number of CDs (0: one, no SubstreamIDs)
	uint8_t s1dss = kS1dssTerminate;

	static constexpr Ste decode(const uint64_t w[2])
	{
		Ste s;
		s.valid = w[0] & 1;
		s.config = static_cast<uint8_t>(field(w[0], 1, 3));
		s.s1_fmt = static_cast<uint8_t>(field(w[0], 4, 2));
		s.s1_context_ptr = w[0] & (((1ull << 46) - 1) << 6);
		s.s1_cd_max = static_cast<uint8_t>(field(w[0], 59, 5));
		s.s1dss = static_cast<uint8_t>(field(w[1], 0, 2));
		return s;
	}
	constexpr void encode(uint64_t w[2]) const
	{
		w[0] = uint64_t{valid} | (uint64_t{config} << 1) | (uint64_t{s1_fmt} << 4) |
		       (s1_context_ptr & (((1ull << 46) - 1) << 6)) | (uint64_t{s1_cd_max} << 59);
		w[1] = s1dss;
	}
};

/* The STE bits a guest may set through iommufd (IOMMU_HWPT_DATA_ARM_SMMUV3); the kernel
 * refuses others with EIO. */
inline constexpr uint64_t kSte0GuestBits = 1ull |               // V
					   (7ull << 1) |        // Config
					   (3ull << 4) |        // S1Fmt
					   (((1ull << 46) - 1) << 6) | // S1ContextPtr 51:6
					   (0x1full << 59);     // S1CDMax
inline constexpr uint64_t kSte1GuestBits = 3ull |               // S1DSS
					   (3ull << 2) | (3ull << 4) | (3ull << 6) | // S1CIR/COR/CSH
					   (1ull << 27) |       // S1STALLD
					   (3ull << 28);        // EATS

/** The fields of a context descriptor (words 0 and 1) that a stage-1 walk needs. */
struct Cd {
	uint8_t t0sz = 16;     ///< input size 64 - T0SZ
	uint8_t tg0 = 0;       ///< TTB0 granule: 0 4 KiB, 1 64 KiB, 2 16 KiB
	bool epd0 = false;     ///< TTB0 walks disabled
	bool valid = false;
	bool aa64 = true;      ///< AArch64 tables
	bool ha = false;       ///< hardware Access flag updates
	uint16_t asid = 0;
	uint64_t ttb0 = 0;     ///< bits 51:4

	static constexpr Cd decode(const uint64_t w[2])
	{
		Cd c;
		c.t0sz = static_cast<uint8_t>(field(w[0], 0, 6));
		c.tg0 = static_cast<uint8_t>(field(w[0], 6, 2));
		c.epd0 = field(w[0], 14, 1);
		c.valid = field(w[0], 31, 1);
		c.aa64 = field(w[0], 41, 1);
		c.ha = field(w[0], 43, 1);
		c.asid = static_cast<uint16_t>(field(w[0], 48, 16));
		c.ttb0 = w[1] & (((1ull << 48) - 1) << 4);
		return c;
	}
	constexpr void encode(uint64_t w[2]) const
	{
		w[0] = (t0sz & 0x3fu) | (uint64_t{tg0} << 6) | (uint64_t{epd0} << 14) |
		       (uint64_t{valid} << 31) | (uint64_t{aa64} << 41) | (uint64_t{ha} << 43) |
		       (uint64_t{asid} << 48);
		w[1] = ttb0 & (((1ull << 48) - 1) << 4);
	}
	/** The TTB0 granule as a shift (12, 14, 16), or -1 for the reserved encoding. */
	constexpr int granule_shift() const
	{
		constexpr int kShift[] = {12, 16, 14, -1};
		return kShift[tg0 & 3];
	}
};

/** An L1 descriptor of a two-level CD table: valid (bit 0) and L2Ptr (bits 51:12). */
struct L1Cd {
	bool valid = false;
	uint64_t l2_ptr = 0;
	static constexpr L1Cd decode(uint64_t w)
	{
		return {static_cast<bool>(w & 1), w & (((1ull << 40) - 1) << 12)};
	}
};

/** Command opcodes (bits 7:0 of the first word). */
inline constexpr uint8_t kPrefetchCfg = 0x01, kCfgiSte = 0x03, kCfgiAll = 0x04, kCfgiCd = 0x05,
			 kCfgiCdAll = 0x06, kTlbiNhAll = 0x10, kTlbiNhAsid = 0x11,
			 kTlbiNhVa = 0x12, kTlbiNhVaa = 0x13, kTlbiS12Vmall = 0x28,
			 kTlbiS2Ipa = 0x2a, kTlbiNsnhAll = 0x30, kAtcInv = 0x40, kPriResp = 0x41,
			 kResume = 0x44, kCmdSync = 0x46;

} // namespace iodp::smmuv3
