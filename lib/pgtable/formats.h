/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Format policies: how each architecture encodes and checks its descriptors. Private to
 * lib/pgtable; the walker and the builder are templates over these, so every per-level
 * decision is inlined.
 *
 * A policy provides:
 *   kInitAccum                      permission state before the start level
 *   decode(e, h, stage, accum)      classify an entry (table, leaf, fault) and fold the
 *                                   entry's hierarchical permission bits into accum
 *   finish(e, h, stage, accum, access, perm, set_bits)
 *                                   check a leaf against the access; give the effective
 *                                   permissions and the accessed/dirty bits to set
 *   kTableAccessed                  accessed bit hardware sets in table entries (0 if none)
 *   kDirty                          dirty bit hardware sets in leaves (0 if none)
 *   in_range(iova, stage)           whether the input is inside the format's range
 *   block_allowed(h, stage)         whether a leaf may sit at height h above the page table
 *   make_table / make_leaf / leaf_map_perm   the encodings the builder writes
 */

#include <iodp/pgtable.h>

namespace iodp::pgtable::detail {

constexpr uint64_t bit(unsigned n) { return 1ull << n; }
/** Bits hi..lo inclusive; an empty mask when hi < lo. */
constexpr uint64_t bit_range(unsigned hi, unsigned lo)
{
	return hi < lo ? 0 : ((~0ull >> (63 - hi)) & ~(bit(lo) - 1));
}

enum class Kind : uint8_t { table, leaf, fault };

struct Decoded {
	Kind kind;
	FaultKind fault;
	uint64_t addr; // next table, or leaf output base (aligned to the leaf size)
};

constexpr Decoded fault_of(FaultKind k) { return {Kind::fault, k, 0}; }
constexpr Decoded table_at(uint64_t a) { return {Kind::table, FaultKind::none, a}; }
constexpr Decoded leaf_at(uint64_t a) { return {Kind::leaf, FaultKind::none, a}; }

/** Permissions the builder maps with (see builder.h: kMapRead ...). */
inline constexpr uint8_t kMapR = 1, kMapW = 2, kMapX = 4, kMapU = 8;

/** Check the requested access bits against the effective permissions. */
constexpr bool allows(uint8_t perm, uint8_t access)
{
	// kAccessRead/Write/Exec share their bit values with kPermRead/Write/Exec.
	return (access & 7 & ~perm) == 0;
}

/* ---------------------------------------------------------------------------------------- */
/* x86-64 paging (VT-d first stage, AMD v2, CPU SVA)                                          */

struct X86 {
	static constexpr uint64_t P = bit(0), RW = bit(1), US = bit(2), A = bit(5), D = bit(6),
				  PS = bit(7), XD = bit(63);
	static constexpr uint64_t kAddr = bit_range(51, 12);
	static constexpr uint64_t kTableAccessed = A;
	static constexpr uint64_t kDirty = D;

	// Accumulated over the path: writable at every level, user at every level, XD anywhere.
	static constexpr uint32_t kAllRw = 1, kAllUs = 2, kAnyXd = 4;
	static constexpr uint32_t kInitAccum = kAllRw | kAllUs;

	static bool in_range(uint64_t iova, const Stage &st)
	{
		// Canonical: bits 63..ias-1 all equal.
		const int64_t s = static_cast<int64_t>(iova) << (64 - st.ias);
		return static_cast<uint64_t>(s >> (64 - st.ias)) == iova;
	}

	static bool block_allowed(int h, const Stage &) { return h == 1 || h == 2; }

	static Decoded decode(uint64_t e, int h, const Stage &st, uint32_t &acc)
	{
		if (!(e & P))
			return fault_of(FaultKind::not_present);
		if (!(e & RW))
			acc &= ~kAllRw;
		if (!(e & US))
			acc &= ~kAllUs;
		if (e & XD)
			acc |= kAnyXd;
		if (h == 0) // bit 7 of a PTE is PAT
			return leaf_at(e & kAddr);
		if (!(e & PS))
			return table_at(e & kAddr);
		if (!block_allowed(h, st)) // PS is reserved in PML4E/PML5E
			return fault_of(FaultKind::reserved_bit);
		// Large page: bit 12 is PAT, the bits between it and the page size are reserved.
		if (e & bit_range(st.shift(h) - 1, 13))
			return fault_of(FaultKind::reserved_bit);
		return leaf_at(e & kAddr & ~(bit(st.shift(h)) - 1));
	}

	static FaultKind finish(uint64_t, int, const Stage &, uint32_t acc, uint8_t access,
				uint8_t &perm, uint64_t &set_bits)
	{
		if (!(access & kAccessPriv) && !(acc & kAllUs))
			return FaultKind::permission;
		// Supervisor writes honour R/W too (CR0.WP / VT-d WPE semantics).
		perm = kPermRead | ((acc & kAllRw) ? kPermWrite : 0) |
		       ((acc & kAnyXd) ? 0 : kPermExec);
		if (!allows(perm, access))
			return FaultKind::permission;
		set_bits = A | ((access & kAccessWrite) ? D : 0);
		return FaultKind::none;
	}

	static uint64_t make_table(uint64_t addr, const Stage &) { return addr | P | RW | US; }
	static uint64_t make_leaf(uint64_t oa, int h, uint8_t m, const Stage &)
	{
		return oa | P | ((m & kMapW) ? RW : 0) | ((m & kMapU) ? US : 0) |
		       ((m & kMapX) ? 0 : XD) | (h > 0 ? PS : 0);
	}
	static uint8_t leaf_map_perm(uint64_t e)
	{
		return kMapR | ((e & RW) ? kMapW : 0) | ((e & US) ? kMapU : 0) |
		       ((e & XD) ? 0 : kMapX);
	}
	static bool perm_encodable(uint8_t m) { return (m & kMapR) != 0; }
};

/* ---------------------------------------------------------------------------------------- */
/* VT-d second stage                                                                          */

struct VtdSs {
	static constexpr uint64_t R = bit(0), W = bit(1), X = bit(2), SP = bit(7), A = bit(8),
				  D = bit(9);
	static constexpr uint64_t kAddr = bit_range(51, 12);
	// Bit 62 is reserved; 10, 52-61 and 63 are ignored.
	static constexpr uint64_t kReserved = bit(62);
	static constexpr uint64_t kTableAccessed = A;
	static constexpr uint64_t kDirty = D;

	// R, W, X each granted at every level so far (the entry's own bits 2:0).
	static constexpr uint32_t kInitAccum = 7;

	static bool in_range(uint64_t iova, const Stage &st) { return (iova >> st.ias) == 0; }
	static bool block_allowed(int h, const Stage &) { return h == 1 || h == 2; }

	static Decoded decode(uint64_t e, int h, const Stage &st, uint32_t &acc)
	{
		if (!(e & (R | W))) // no present bit: an entry is present when R or W is set
			return fault_of(FaultKind::not_present);
		if (e & kReserved)
			return fault_of(FaultKind::reserved_bit);
		acc &= static_cast<uint32_t>(e & 7);
		if (h == 0) // bit 7 is ignored in an SS-PTE
			return leaf_at(e & kAddr);
		if (!(e & SP))
			return table_at(e & kAddr);
		if (!block_allowed(h, st))
			return fault_of(FaultKind::reserved_bit);
		if (e & bit_range(st.shift(h) - 1, 12))
			return fault_of(FaultKind::reserved_bit);
		return leaf_at(e & kAddr);
	}

	static FaultKind finish(uint64_t, int, const Stage &, uint32_t acc, uint8_t access,
				uint8_t &perm, uint64_t &set_bits)
	{
		perm = static_cast<uint8_t>(acc); // R/W/X line up with kPermRead/Write/Exec
		if (!allows(perm, access))
			return FaultKind::permission;
		set_bits = A | ((access & kAccessWrite) ? D : 0);
		return FaultKind::none;
	}

	static uint64_t make_table(uint64_t addr, const Stage &) { return addr | R | W | X; }
	static uint64_t make_leaf(uint64_t oa, int h, uint8_t m, const Stage &)
	{
		return oa | ((m & kMapR) ? R : 0) | ((m & kMapW) ? W : 0) | ((m & kMapX) ? X : 0) |
		       (h > 0 ? SP : 0);
	}
	static uint8_t leaf_map_perm(uint64_t e) { return static_cast<uint8_t>(e & 7); }
	static bool perm_encodable(uint8_t m) { return (m & (kMapR | kMapW)) != 0; }
};

/* ---------------------------------------------------------------------------------------- */
/* Mock: the Linux iommufd selftest's mock IOMMU (drivers/iommu/iommufd/selftest.c)            */

/*
 * The kernel's mock domain keeps one entry per 2 KiB page (MOCK_IO_PAGE_SIZE = PAGE_SIZE / 2)
 * and, on a MOCK_FLAGS_DEVICE_HUGE_IOVA device, 1 MiB pages (512 of them) with a dirty bit
 * each. Here that geometry is a table format: VT-d second-stage entries whose output
 * address starts at bit 11, tables of 512 entries (4 KiB, two granules), blocks at height 1
 * only. Bit 10 stays ignored; A and D are the VT-d bits 8 and 9.
 */
struct Mock : VtdSs {
	static constexpr uint64_t kAddr = bit_range(51, 11);

	static bool block_allowed(int h, const Stage &) { return h == 1; }

	static Decoded decode(uint64_t e, int h, const Stage &st, uint32_t &acc)
	{
		if (!(e & (R | W)))
			return fault_of(FaultKind::not_present);
		if (e & kReserved)
			return fault_of(FaultKind::reserved_bit);
		acc &= static_cast<uint32_t>(e & 7);
		if (h == 0)
			return leaf_at(e & kAddr);
		if (!(e & SP))
			return table_at(e & kAddr);
		if (!block_allowed(h, st) || (e & bit_range(st.shift(h) - 1, 11)))
			return fault_of(FaultKind::reserved_bit);
		return leaf_at(e & kAddr);
	}
};

/* ---------------------------------------------------------------------------------------- */
/* Arm VMSAv8-64 long descriptors, shared by both stages                                      */

struct ArmLpae {
	static constexpr uint64_t kValid = bit(0), kTableOrPage = bit(1), AF = bit(10);
	static constexpr uint64_t kTableAccessed = 0; // table descriptors have no AF
	// Arm records dirtiness by clearing read-only under DBM; iodp does not model that.
	static constexpr uint64_t kDirty = 0;

	static bool in_range(uint64_t iova, const Stage &st) { return (iova >> st.ias) == 0; }

	/* 4K: 1 GiB and 2 MiB blocks; 16K: 32 MiB; 64K: 512 MiB (no LPA2 / 52-bit blocks). */
	static bool block_allowed(int h, const Stage &st)
	{
		return h == 1 || (h == 2 && st.granule_shift == 12);
	}

	/** Output address of a descriptor; false if it sets bits beyond 48-bit output. */
	static bool output_address(uint64_t e, const Stage &st, uint64_t *oa)
	{
		const unsigned g = st.granule_shift;
		uint64_t a = e & bit_range(47, g);
		if (g == 16)
			a |= ((e >> 12) & 0xf) << 48; // 64K granule: OA[51:48] lives in bits 15:12
		else if (e & bit_range(51, 48))
			return false;
		*oa = a;
		return true;
	}
	static uint64_t encode_address(uint64_t oa, const Stage &st)
	{
		uint64_t e = oa & bit_range(47, st.granule_shift);
		if (st.granule_shift == 16)
			e |= ((oa >> 48) & 0xf) << 12;
		return e;
	}

	/** Shared structure decode; the stage-1 policy adds the table attribute bits. */
	static Decoded decode_common(uint64_t e, int h, const Stage &st)
	{
		if (!(e & kValid))
			return fault_of(FaultKind::not_present);
		uint64_t oa;
		if (!output_address(e, st, &oa))
			return fault_of(FaultKind::reserved_bit);
		if (e & kTableOrPage)
			return h == 0 ? leaf_at(oa) : table_at(oa);
		// Block descriptor (01): not at level 3, and only where the granule has blocks.
		if (h == 0 || !block_allowed(h, st))
			return fault_of(FaultKind::not_present);
		return leaf_at(oa & ~(bit(st.shift(h)) - 1));
	}

	static uint64_t make_table(uint64_t addr, const Stage &st)
	{
		return encode_address(addr, st) | kValid | kTableOrPage;
	}
	static uint64_t leaf_type(int h) { return h == 0 ? (kValid | kTableOrPage) : kValid; }
};

struct ArmS1 : ArmLpae {
	static constexpr uint64_t AP1 = bit(6) /* EL0 access */, AP2 = bit(7) /* read-only */,
				  PXN = bit(53), UXN = bit(54);
	static constexpr uint64_t kShInner = 3ull << 8;
	// Table attributes: APTable 62:61, UXNTable 60, PXNTable 59.
	static constexpr uint64_t kApTableNoEl0 = bit(61), kApTableRo = bit(62),
				  kUxnTable = bit(60), kPxnTable = bit(59);

	static constexpr uint32_t kNoEl0 = 1, kRo = 2, kUxn = 4, kPxn = 8;
	static constexpr uint32_t kInitAccum = 0;

	static Decoded decode(uint64_t e, int h, const Stage &st, uint32_t &acc)
	{
		Decoded d = decode_common(e, h, st);
		if (d.kind == Kind::table)
			acc |= ((e & kApTableNoEl0) ? kNoEl0 : 0) | ((e & kApTableRo) ? kRo : 0) |
			       ((e & kUxnTable) ? kUxn : 0) | ((e & kPxnTable) ? kPxn : 0);
		return d;
	}

	static FaultKind finish(uint64_t e, int, const Stage &st, uint32_t acc, uint8_t access,
				uint8_t &perm, uint64_t &set_bits)
	{
		// Access flag faults take priority over permission faults.
		if (!(e & AF)) {
			if (!st.update_accessed)
				return FaultKind::access_flag;
			set_bits = AF;
		}
		const bool el0 = (e & AP1) && !(acc & kNoEl0);
		const bool ro = (e & AP2) || (acc & kRo);
		const bool priv = access & kAccessPriv;
		if (!priv && !el0)
			return FaultKind::permission;
		// Memory writable at EL0 is never executable at EL1.
		const bool pxn = (e & PXN) || (acc & kPxn) || (el0 && !ro);
		const bool uxn = (e & UXN) || (acc & kUxn);
		perm = kPermRead | (ro ? 0 : kPermWrite) | ((priv ? pxn : uxn) ? 0 : kPermExec);
		if (!allows(perm, access))
			return FaultKind::permission;
		return FaultKind::none;
	}

	static uint64_t make_leaf(uint64_t oa, int h, uint8_t m, const Stage &st)
	{
		uint64_t e = encode_address(oa, st) | leaf_type(h) | AF | kShInner;
		if (m & kMapU)
			e |= AP1 | PXN | ((m & kMapX) ? 0 : UXN);
		else
			e |= UXN | ((m & kMapX) ? 0 : PXN);
		if (!(m & kMapW))
			e |= AP2;
		return e;
	}
	static uint8_t leaf_map_perm(uint64_t e)
	{
		const bool user = e & AP1;
		const bool x = user ? !(e & UXN) : !(e & PXN);
		return kMapR | ((e & AP2) ? 0 : kMapW) | (user ? kMapU : 0) | (x ? kMapX : 0);
	}
	static bool perm_encodable(uint8_t m) { return (m & kMapR) != 0; }
};

struct ArmS2 : ArmLpae {
	static constexpr uint64_t S2AP_R = bit(6), S2AP_W = bit(7);
	static constexpr unsigned kXnShift = 53; // XN[1:0] at 54:53 (FEAT_XNX encoding)
	static constexpr uint64_t kMemAttrNormalWb = 0xfull << 2, kShInner = 3ull << 8;
	static constexpr uint32_t kInitAccum = 0;

	static Decoded decode(uint64_t e, int h, const Stage &st, uint32_t &)
	{
		return decode_common(e, h, st);
	}

	static FaultKind finish(uint64_t e, int, const Stage &st, uint32_t, uint8_t access,
				uint8_t &perm, uint64_t &set_bits)
	{
		if (!(e & AF)) {
			if (!st.update_accessed)
				return FaultKind::access_flag;
			set_bits = AF;
		}
		// XN 00: executable; 01: not at EL1; 10: never; 11: not at EL0.
		const unsigned xn = (e >> kXnShift) & 3;
		const bool exec = (access & kAccessPriv) ? (xn == 0 || xn == 3) : (xn == 0 || xn == 1);
		perm = ((e & S2AP_R) ? kPermRead : 0) | ((e & S2AP_W) ? kPermWrite : 0) |
		       (exec ? kPermExec : 0);
		if (!allows(perm, access))
			return FaultKind::permission;
		return FaultKind::none;
	}

	static uint64_t make_leaf(uint64_t oa, int h, uint8_t m, const Stage &st)
	{
		return encode_address(oa, st) | leaf_type(h) | AF | kShInner | kMemAttrNormalWb |
		       ((m & kMapR) ? S2AP_R : 0) | ((m & kMapW) ? S2AP_W : 0) |
		       ((m & kMapX) ? 0 : (2ull << kXnShift));
	}
	static uint8_t leaf_map_perm(uint64_t e)
	{
		return ((e & S2AP_R) ? kMapR : 0) | ((e & S2AP_W) ? kMapW : 0) |
		       (((e >> kXnShift) & 3) == 0 ? kMapX : 0);
	}
	static bool perm_encodable(uint8_t m) { return (m & (kMapR | kMapW)) != 0; }
};

/** No second stage: the walker compiles the nested steps out. */
struct NoStage {};

/** Call fn(Policy{}) for the policy of @p format. */
template <class Fn> decltype(auto) with_policy(Format format, Fn &&fn)
{
	switch (format) {
	case Format::x86_64_4l:
	case Format::x86_64_5l:
		return fn(X86{});
	case Format::vtd_ss_3l:
	case Format::vtd_ss_4l:
	case Format::vtd_ss_5l:
		return fn(VtdSs{});
	case Format::arm_s1:
		return fn(ArmS1{});
	case Format::mock:
		return fn(Mock{});
	case Format::arm_s2:
		break;
	}
	return fn(ArmS2{});
}

} // namespace iodp::pgtable::detail
