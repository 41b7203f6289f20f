/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Hand-built tables, one format at a time. The entries are written as raw numbers from the
 * architecture documents, not with the library's encoders, so a wrong encoder and a wrong
 * decoder cannot agree by accident.
 */
#include "test_guest.h"

#include <vector>

namespace iodp::pgtable::testing {
namespace {

constexpr uint64_t KiB = 1024, MiB = KiB * KiB, GiB = MiB * KiB;
constexpr uint64_t bit(unsigned n) { return 1ull << n; }

/* x86-64 and VT-d: 9 bits a level over a 4 KiB page. */
constexpr uint64_t idx(uint64_t i5, uint64_t i4, uint64_t i3, uint64_t i2, uint64_t i1,
		       uint64_t off = 0)
{
	return (i5 << 48) | (i4 << 39) | (i3 << 30) | (i2 << 21) | (i1 << 12) | off;
}

/* ---------------------------------------------------------------------------------------- */

class X86Golden : public ::testing::Test {
protected:
	static constexpr uint64_t P = 1, RW = 2, US = 4, A = bit(5), D = bit(6), PS = bit(7),
				  XD = bit(63), TABLE = P | RW | US;
	// PML5 0x7000 -> PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000
	void SetUp() override
	{
		g.put(0x7000 + 1 * 8, 0x1000 | TABLE);
		g.put(0x1000 + 1 * 8, 0x2000 | TABLE);
		g.put(0x2000 + 2 * 8, 0x3000 | TABLE);
		g.put(0x3000 + 3 * 8, 0x4000 | TABLE);
		g.put(0x4000 + 4 * 8, 0xabcd000 | TABLE);
	}
	WalkResult w4(uint64_t iova, uint8_t access = kAccessRead)
	{
		return walk_cfg(g.mem, table_config(Format::x86_64_4l, 0x1000), iova, access);
	}
	TestGuest g{0, 1 * MiB};
};

TEST_F(X86Golden, FourKilobytePage)
{
	expect_ok(w4(idx(0, 1, 2, 3, 4, 0x567)), 0xabcd567, 4 * KiB, "rwx");
	expect_ok(w4(idx(0, 1, 2, 3, 4, 0x567), kAccessWrite | kAccessExec), 0xabcd567, 4 * KiB,
		  "rwx");
}

TEST_F(X86Golden, LargePages)
{
	g.put(0x3000 + 5 * 8, 0x40000000 | TABLE | PS);
	expect_ok(w4(idx(0, 1, 2, 5, 0, 0x12345)), 0x40012345, 2 * MiB, "rwx");
	g.put(0x2000 + 3 * 8, 0x80000000 | TABLE | PS);
	expect_ok(w4(idx(0, 1, 3, 0, 0) + 0x1234567), 0x81234567, 1 * GiB, "rwx");
	// Bit 12 of a large-page entry is PAT, not an address bit.
	g.put(0x3000 + 9 * 8, 0x40400000 | TABLE | PS | bit(12));
	expect_ok(w4(idx(0, 1, 2, 9, 0, 0x10)), 0x40400010, 2 * MiB, "rwx");
	// ...and in a PTE bit 7 is PAT, not PS.
	g.put(0x4000 + 5 * 8, 0x5000 | TABLE | PS);
	expect_ok(w4(idx(0, 1, 2, 3, 5, 0x8)), 0x5008, 4 * KiB, "rwx");
}

TEST_F(X86Golden, PermissionsAccumulateOverLevels)
{
	g.put(0x4000 + 6 * 8, 0x5000 | P | US | XD); // read-only, no execute
	expect_ok(w4(idx(0, 1, 2, 3, 6)), 0x5000, 4 * KiB, "r");
	expect_fault(w4(idx(0, 1, 2, 3, 6), kAccessWrite), FaultKind::permission, 1, 1);
	expect_fault(w4(idx(0, 1, 2, 3, 6), kAccessExec), FaultKind::permission, 1, 1);
	// Supervisor writes honour R/W as well.
	expect_fault(w4(idx(0, 1, 2, 3, 6), kAccessWrite | kAccessPriv), FaultKind::permission, 1,
		     1);

	g.put(0x1000 + 2 * 8, 0x2000 | P | RW); // supervisor-only above the leaf
	expect_fault(w4(idx(0, 2, 2, 3, 4)), FaultKind::permission, 1, 1);
	expect_ok(w4(idx(0, 2, 2, 3, 4), kAccessRead | kAccessPriv), 0xabcd000, 4 * KiB, "rwx");

	g.put(0x1000 + 4 * 8, 0x2000 | TABLE | XD); // XD high up removes execute
	expect_ok(w4(idx(0, 4, 2, 3, 4)), 0xabcd000, 4 * KiB, "rw");
	expect_fault(w4(idx(0, 4, 2, 3, 4), kAccessExec), FaultKind::permission, 1, 1);

	g.put(0x1000 + 5 * 8, 0x6000 | TABLE); // a PDPT whose entry is read-only
	g.put(0x6000 + 2 * 8, 0x3000 | P | US);
	expect_ok(w4(idx(0, 5, 2, 3, 4)), 0xabcd000, 4 * KiB, "rx");
}

TEST_F(X86Golden, FaultsNameKindAndLevel)
{
	expect_fault(w4(idx(0, 1, 2, 7, 0)), FaultKind::not_present, 1, 2);
	expect_fault(w4(idx(0, 9, 0, 0, 0)), FaultKind::not_present, 1, 4);
	g.put(0x1000 + 3 * 8, 0x2000 | TABLE | PS); // PS is reserved in a PML4E
	expect_fault(w4(idx(0, 3, 0, 0, 0)), FaultKind::reserved_bit, 1, 4);
	g.put(0x3000 + 8 * 8, 0x40200000 | TABLE | PS | bit(13)); // inside a 2 MiB page's address
	expect_fault(w4(idx(0, 1, 2, 8, 0)), FaultKind::reserved_bit, 1, 2);
	g.put(0x2000 + 4 * 8, 0x80000000 | TABLE | PS | bit(29));
	expect_fault(w4(idx(0, 1, 4, 0, 0)), FaultKind::reserved_bit, 1, 3);
	// A present bit cleared wins over everything else in the entry.
	g.put(0x3000 + 10 * 8, 0x40000000 | RW | PS | bit(13));
	expect_fault(w4(idx(0, 1, 2, 10, 0)), FaultKind::not_present, 1, 2);
}

TEST_F(X86Golden, CanonicalAddresses)
{
	expect_fault(w4(0x0000800000000000ull), FaultKind::address_size, 1, 4);
	expect_fault(w4(0xfff0000000000000ull), FaultKind::address_size, 1, 4);
	g.put(0x1000 + 256 * 8, 0x2000 | TABLE); // upper half indexes from bit 47 down
	expect_ok(w4(0xffff800000000000ull | idx(0, 0, 2, 3, 4, 1)), 0xabcd001, 4 * KiB, "rwx");
}

TEST_F(X86Golden, FiveLevels)
{
	const TableConfig c5 = table_config(Format::x86_64_5l, 0x7000);
	expect_ok(walk_cfg(g.mem, c5, idx(1, 1, 2, 3, 4, 0x567)), 0xabcd567, 4 * KiB, "rwx");
	expect_fault(walk_cfg(g.mem, c5, 0x0000800000000000ull), FaultKind::not_present, 1, 5);
	expect_fault(walk_cfg(g.mem, c5, bit(56)), FaultKind::address_size, 1, 5);
	g.put(0x7000 + 2 * 8, 0x1000 | TABLE | PS);
	expect_fault(walk_cfg(g.mem, c5, idx(2, 0, 0, 0, 0)), FaultKind::reserved_bit, 1, 5);
}

TEST_F(X86Golden, AccessedAndDirtyUpdates)
{
	TableConfig c = table_config(Format::x86_64_4l, 0x1000);
	c.update_accessed = true;
	expect_ok(walk_cfg(g.mem, c, idx(0, 1, 2, 3, 4)), 0xabcd000, 4 * KiB, "rwx");
	EXPECT_TRUE(g.get(0x1000 + 8) & A);
	EXPECT_TRUE(g.get(0x3000 + 3 * 8) & A);
	EXPECT_TRUE(g.get(0x4000 + 4 * 8) & A);
	EXPECT_FALSE(g.get(0x4000 + 4 * 8) & D);
	expect_ok(walk_cfg(g.mem, c, idx(0, 1, 2, 3, 4), kAccessWrite), 0xabcd000, 4 * KiB, "rwx");
	EXPECT_TRUE(g.get(0x4000 + 4 * 8) & D);
	// Without the option, a walk writes nothing.
	g.put(0x4000 + 7 * 8, 0x5000 | TABLE);
	expect_ok(w4(idx(0, 1, 2, 3, 7), kAccessWrite), 0x5000, 4 * KiB, "rwx");
	EXPECT_EQ(g.get(0x4000 + 7 * 8), 0x5000 | TABLE);
}

/* ---------------------------------------------------------------------------------------- */

class VtdSsGolden : public ::testing::Test {
protected:
	static constexpr uint64_t R = 1, W = 2, X = 4, SP = bit(7), TABLE = R | W | X;
	void SetUp() override
	{
		g.put(0x7000 + 1 * 8, 0x1000 | TABLE);
		g.put(0x1000 + 1 * 8, 0x2000 | TABLE);
		g.put(0x2000 + 2 * 8, 0x3000 | TABLE);
		g.put(0x3000 + 3 * 8, 0x4000 | TABLE);
		g.put(0x4000 + 4 * 8, 0xabcd000 | R | W);
	}
	WalkResult w4(uint64_t iova, uint8_t access = kAccessRead)
	{
		return walk_cfg(g.mem, table_config(Format::vtd_ss_4l, 0x1000), iova, access);
	}
	TestGuest g{0, 1 * MiB};
};

TEST_F(VtdSsGolden, PagesAndPermissions)
{
	expect_ok(w4(idx(0, 1, 2, 3, 4, 0x567)), 0xabcd567, 4 * KiB, "rw");
	expect_fault(w4(idx(0, 1, 2, 3, 4), kAccessExec), FaultKind::permission, 2, 1);
	g.put(0x3000 + 5 * 8, 0x40000000 | R | W | SP);
	expect_ok(w4(idx(0, 1, 2, 5, 0, 0x12345)), 0x40012345, 2 * MiB, "rw");
	g.put(0x2000 + 3 * 8, 0x80000000 | R | W | X | SP);
	expect_ok(w4(idx(0, 1, 3, 0, 0) + 0x1234567), 0x81234567, 1 * GiB, "rwx");
	// Bits 52-61 and 63 are ignored.
	g.put(0x4000 + 9 * 8, 0x6000 | R | bit(63) | bit(55) | bit(10));
	expect_ok(w4(idx(0, 1, 2, 3, 9)), 0x6000, 4 * KiB, "r");
	expect_fault(w4(idx(0, 1, 2, 3, 9), kAccessWrite), FaultKind::permission, 2, 1);
	// Write-only high up: reads fault at the leaf.
	g.put(0x1000 + 2 * 8, 0x2000 | W);
	expect_fault(w4(idx(0, 2, 2, 3, 4)), FaultKind::permission, 2, 1);
	expect_ok(w4(idx(0, 2, 2, 3, 4), kAccessWrite), 0xabcd000, 4 * KiB, "w");
}

TEST_F(VtdSsGolden, FaultsAndReservedBits)
{
	g.put(0x4000 + 6 * 8, 0x5000 | X); // no R, no W: not present
	expect_fault(w4(idx(0, 1, 2, 3, 6)), FaultKind::not_present, 2, 1);
	g.put(0x4000 + 7 * 8, 0x5000 | R | W | bit(62));
	expect_fault(w4(idx(0, 1, 2, 3, 7)), FaultKind::reserved_bit, 2, 1);
	g.put(0x1000 + 3 * 8, 0x2000 | R | W | SP); // no 512 GiB pages
	expect_fault(w4(idx(0, 3, 0, 0, 0)), FaultKind::reserved_bit, 2, 4);
	g.put(0x3000 + 8 * 8, 0x40201000 | R | W | SP); // address bits inside a 2 MiB page
	expect_fault(w4(idx(0, 1, 2, 8, 0)), FaultKind::reserved_bit, 2, 2);
	expect_fault(w4(bit(48)), FaultKind::address_size, 2, 4);
	expect_fault(w4(idx(0, 1, 2, 9, 0)), FaultKind::not_present, 2, 2);
}

TEST_F(VtdSsGolden, ThreeAndFiveLevels)
{
	const TableConfig c3 = table_config(Format::vtd_ss_3l, 0x2000);
	expect_ok(walk_cfg(g.mem, c3, idx(0, 0, 2, 3, 4, 0x567)), 0xabcd567, 4 * KiB, "rw");
	expect_fault(walk_cfg(g.mem, c3, bit(39)), FaultKind::address_size, 2, 3);
	const TableConfig c5 = table_config(Format::vtd_ss_5l, 0x7000);
	expect_ok(walk_cfg(g.mem, c5, idx(1, 1, 2, 3, 4, 0x567)), 0xabcd567, 4 * KiB, "rw");
	expect_fault(walk_cfg(g.mem, c5, bit(57)), FaultKind::address_size, 2, 5);
	expect_fault(walk_cfg(g.mem, c5, idx(3, 0, 0, 0, 0)), FaultKind::not_present, 2, 5);
}

TEST(StageConfig, FixedGeometryMustAgree)
{
	TestGuest g{0, 64 * KiB};
	const TableConfig agreeing = table_config(Format::x86_64_4l, 0x1000, 12, 48, 4);
	EXPECT_TRUE(make_translation(g.mem, agreeing).ok());
	Result<Translation> bad =
		make_translation(g.mem, table_config(Format::x86_64_4l, 0x1000, 14));
	ASSERT_FALSE(bad.ok());
	EXPECT_EQ(bad.status().code(), -EINVAL);
	EXPECT_NE(bad.status().message().find("granule"), std::string::npos);
	EXPECT_FALSE(make_translation(g.mem, table_config(Format::x86_64_5l, 0x1000, 12, 48)).ok());
	EXPECT_FALSE(
		make_translation(g.mem, table_config(Format::vtd_ss_3l, 0x1000, 12, 0, 4)).ok());
	EXPECT_FALSE(make_translation(g.mem, table_config(Format::x86_64_4l, 0x1008)).ok());
	for (Format f : kAllFormats)
		EXPECT_EQ(parse_format(format_name(f)), f);
	EXPECT_FALSE(parse_format("x86-64-3l").has_value());
}

/* ---------------------------------------------------------------------------------------- */

class ArmS1Golden : public ::testing::Test {
protected:
	static constexpr uint64_t TABLE = 3, PAGE = 3, BLOCK = 1, AF = bit(10), AP1 = bit(6),
				  AP2 = bit(7), PXN = bit(53), UXN = bit(54);
	// 4K granule, 48-bit input: L0 0x1000 -> L1 0x2000 -> L2 0x3000 -> L3 0x4000.
	void SetUp() override
	{
		g.put(0x1000 + 1 * 8, 0x2000 | TABLE);
		g.put(0x2000 + 2 * 8, 0x3000 | TABLE);
		g.put(0x3000 + 3 * 8, 0x4000 | TABLE);
		g.put(0x4000 + 4 * 8, 0xabcd000 | PAGE | AF | AP1);
	}
	WalkResult w(uint64_t iova, uint8_t access = kAccessRead)
	{
		return walk_cfg(g.mem, table_config(Format::arm_s1, 0x1000), iova, access);
	}
	TestGuest g{0, 1 * MiB};
};

TEST_F(ArmS1Golden, FourKilobyteGranule)
{
	expect_ok(w(idx(0, 1, 2, 3, 4, 0x567)), 0xabcd567, 4 * KiB, "rwx");
	// EL0-writable memory is never executable at EL1.
	expect_ok(w(idx(0, 1, 2, 3, 4), kAccessRead | kAccessPriv), 0xabcd000, 4 * KiB, "rw");
	g.put(0x3000 + 5 * 8, 0x40000000 | BLOCK | AF | AP1);
	expect_ok(w(idx(0, 1, 2, 5, 0, 0x12345)), 0x40012345, 2 * MiB, "rwx");
	g.put(0x2000 + 3 * 8, 0x80000000 | BLOCK | AF | AP1 | UXN);
	expect_ok(w(idx(0, 1, 3, 0, 0) + 0x1234567), 0x81234567, 1 * GiB, "rw");

	const TableConfig c39 = table_config(Format::arm_s1, 0x2000, 12, 39);
	expect_ok(walk_cfg(g.mem, c39, idx(0, 0, 2, 3, 4, 0x567)), 0xabcd567, 4 * KiB, "rwx");
	expect_fault(walk_cfg(g.mem, c39, bit(39)), FaultKind::address_size, 1, 1);
	EXPECT_FALSE(make_translation(g.mem, table_config(Format::arm_s1, 0x2000, 12, 39, 0)).ok());
}

TEST_F(ArmS1Golden, DescriptorEncodings)
{
	g.put(0x1000 + 2 * 8, 0x80000000 | BLOCK | AF); // no level-0 blocks with 4K
	expect_fault(w(idx(0, 2, 0, 0, 0)), FaultKind::not_present, 1, 0);
	g.put(0x4000 + 6 * 8, 0x5000 | BLOCK | AF); // 01 at level 3 is reserved
	expect_fault(w(idx(0, 1, 2, 3, 6)), FaultKind::not_present, 1, 3);
	g.put(0x4000 + 7 * 8, 0x5000 | PAGE | AP1); // AF clear
	expect_fault(w(idx(0, 1, 2, 3, 7)), FaultKind::access_flag, 1, 3);
	g.put(0x4000 + 11 * 8, bit(48) | 0x5000 | PAGE | AF | AP1); // OA beyond 48 bits
	expect_fault(w(idx(0, 1, 2, 3, 11)), FaultKind::reserved_bit, 1, 3);
	g.put(0x4000 + 12 * 8, 0x5000 | 2 | AF); // bit 0 clear: invalid whatever else is set
	expect_fault(w(idx(0, 1, 2, 3, 12)), FaultKind::not_present, 1, 3);
	expect_fault(w(bit(48)), FaultKind::address_size, 1, 0);
	expect_fault(w(idx(0, 1, 2, 6, 0)), FaultKind::not_present, 1, 2);
}

TEST_F(ArmS1Golden, HardwareAccessFlagUpdate)
{
	g.put(0x4000 + 7 * 8, 0x5000 | PAGE | AP1);
	TableConfig c = table_config(Format::arm_s1, 0x1000);
	c.update_accessed = true;
	expect_ok(walk_cfg(g.mem, c, idx(0, 1, 2, 3, 7)), 0x5000, 4 * KiB, "rwx");
	EXPECT_TRUE(g.get(0x4000 + 7 * 8) & AF);
}

TEST_F(ArmS1Golden, AccessPermissions)
{
	g.put(0x4000 + 8 * 8, 0x5000 | PAGE | AF | AP1 | AP2); // read-only at EL0 and EL1
	expect_ok(w(idx(0, 1, 2, 3, 8)), 0x5000, 4 * KiB, "rx");
	expect_fault(w(idx(0, 1, 2, 3, 8), kAccessWrite), FaultKind::permission, 1, 3);
	expect_ok(w(idx(0, 1, 2, 3, 8), kAccessExec | kAccessPriv), 0x5000, 4 * KiB, "rx");

	g.put(0x4000 + 9 * 8, 0x5000 | PAGE | AF); // EL1 only
	expect_fault(w(idx(0, 1, 2, 3, 9)), FaultKind::permission, 1, 3);
	expect_ok(w(idx(0, 1, 2, 3, 9), kAccessWrite | kAccessPriv), 0x5000, 4 * KiB, "rwx");

	g.put(0x4000 + 10 * 8, 0x5000 | PAGE | AF | PXN);
	expect_fault(w(idx(0, 1, 2, 3, 10), kAccessExec | kAccessPriv), FaultKind::permission, 1,
		     3);
	expect_ok(w(idx(0, 1, 2, 3, 10), kAccessPriv), 0x5000, 4 * KiB, "rw");
}

TEST_F(ArmS1Golden, HierarchicalTableAttributes)
{
	g.put(0x1000 + 3 * 8, 0x2000 | TABLE | bit(62)); // APTable[1]: read-only below
	expect_ok(w(idx(0, 3, 2, 3, 4)), 0xabcd000, 4 * KiB, "rx");
	expect_fault(w(idx(0, 3, 2, 3, 4), kAccessWrite), FaultKind::permission, 1, 3);
	g.put(0x1000 + 4 * 8, 0x2000 | TABLE | bit(61)); // APTable[0]: no EL0 below
	expect_fault(w(idx(0, 4, 2, 3, 4)), FaultKind::permission, 1, 3);
	expect_ok(w(idx(0, 4, 2, 3, 4), kAccessPriv), 0xabcd000, 4 * KiB, "rwx");
	g.put(0x1000 + 5 * 8, 0x2000 | TABLE | bit(60)); // UXNTable
	expect_ok(w(idx(0, 5, 2, 3, 4)), 0xabcd000, 4 * KiB, "rw");
	g.put(0x1000 + 6 * 8, 0x2000 | TABLE | bit(59)); // PXNTable, seen from EL1
	expect_ok(w(idx(0, 6, 2, 3, 4), kAccessPriv), 0xabcd000, 4 * KiB, "rw");
}

TEST(ArmS1GoldenGranules, SixteenKilobyte)
{
	constexpr uint64_t T = 3, AF = bit(10), AP1 = bit(6);
	TestGuest g{0, 1 * MiB};
	// 48-bit input: 4 levels, level 0 indexes just bit 47 (a 2-entry table).
	g.put(0x10000 + 1 * 8, 0x14000 | T);
	g.put(0x14000 + 2 * 8, 0x18000 | T);
	g.put(0x18000 + 3 * 8, 0x1c000 | T);
	g.put(0x1c000 + 4 * 8, 0xabc4000 | T | AF | AP1);
	g.put(0x18000 + 5 * 8, 0x42000000 | 1 | AF | AP1); // 32 MiB block
	g.put(0x14000 + 3 * 8, 0x1000000000 | 1 | AF);     // no 64 GiB blocks
	const TableConfig c = table_config(Format::arm_s1, 0x10000, 14);
	const uint64_t base = bit(47) | (2ull << 36);
	expect_ok(walk_cfg(g.mem, c, base | (3ull << 25) | (4ull << 14) | 0x1567), 0xabc5567,
		  16 * KiB, "rwx");
	expect_ok(walk_cfg(g.mem, c, base | (5ull << 25) | 0x123456), 0x42123456, 32 * MiB,
		  "rwx");
	expect_fault(walk_cfg(g.mem, c, bit(47) | (3ull << 36)), FaultKind::not_present, 1, 1);
	expect_fault(walk_cfg(g.mem, c, base | (6ull << 25)), FaultKind::not_present, 1, 2);
}

TEST(ArmS1GoldenGranules, SixtyFourKilobyteWith52BitOutput)
{
	constexpr uint64_t T = 3, AF = bit(10), AP1 = bit(6);
	TestGuest g{0, 1 * MiB};
	// 48-bit input: 3 levels starting at level 1 with 6 index bits.
	g.put(0x10000 + 2 * 8, 0x20000 | T);
	g.put(0x20000 + 3 * 8, 0x30000 | T);
	g.put(0x30000 + 4 * 8, 0xabc0000 | T | AF | AP1);
	g.put(0x30000 + 5 * 8, 0x50000 | (3ull << 12) | T | AF | AP1); // OA[51:48] = 3
	g.put(0x20000 + 6 * 8, 0x60000000 | 1 | AF | AP1);             // 512 MiB block
	const TableConfig c = table_config(Format::arm_s1, 0x10000, 16);
	const uint64_t base = 2ull << 42;
	expect_ok(walk_cfg(g.mem, c, base | (3ull << 29) | (4ull << 16) | 0x1567), 0xabc1567,
		  64 * KiB, "rwx");
	expect_ok(walk_cfg(g.mem, c, base | (3ull << 29) | (5ull << 16) | 0x10),
		  (3ull << 48) | 0x50010, 64 * KiB, "rwx");
	expect_ok(walk_cfg(g.mem, c, base | (6ull << 29) | 0x1234567), 0x61234567, 512 * MiB,
		  "rwx");
	// A 52-bit input is allowed with 64K (10 index bits at level 1).
	const TableConfig c52 = table_config(Format::arm_s1, 0x10000, 16, 52);
	expect_ok(walk_cfg(g.mem, c52, base | (3ull << 29) | (4ull << 16)), 0xabc0000, 64 * KiB,
		  "rwx");
	expect_fault(walk_cfg(g.mem, c52, bit(52)), FaultKind::address_size, 1, 1);
}

/* ---------------------------------------------------------------------------------------- */

TEST(ArmS2Golden, ConcatenatedStartTableAndS2Permissions)
{
	constexpr uint64_t T = 3, AF = bit(10), S2R = bit(6), S2W = bit(7);
	TestGuest g{0, 1 * MiB};
	// 40-bit input starting at level 1: 10 index bits, two concatenated 4K tables (8K root).
	const TableConfig c = table_config(Format::arm_s2, 0x2000, 12, 40, 1);
	g.put(0x2000 + 514 * 8, 0x4000 | T);
	g.put(0x4000 + 3 * 8, 0x5000 | T);
	g.put(0x5000 + 4 * 8, 0xabcd000 | T | AF | S2R | S2W);
	g.put(0x5000 + 5 * 8, 0xabce000 | T | AF | S2R | S2W | (2ull << 53));
	g.put(0x5000 + 6 * 8, 0xabcf000 | T | AF | S2R | (1ull << 53));
	g.put(0x5000 + 7 * 8, 0xabcf000 | T | S2R);
	const uint64_t base = bit(39) | (2ull << 30) | (3ull << 21);
	expect_ok(walk_cfg(g.mem, c, base | (4 << 12) | 0x567), 0xabcd567, 4 * KiB, "rwx");
	expect_ok(walk_cfg(g.mem, c, base | (5 << 12)), 0xabce000, 4 * KiB, "rw");
	expect_ok(walk_cfg(g.mem, c, base | (6 << 12)), 0xabcf000, 4 * KiB, "rx");
	expect_ok(walk_cfg(g.mem, c, base | (6 << 12), kAccessPriv), 0xabcf000, 4 * KiB, "r");
	expect_fault(walk_cfg(g.mem, c, base | (6 << 12), kAccessWrite), FaultKind::permission, 2,
		     3);
	expect_fault(walk_cfg(g.mem, c, base | (7 << 12)), FaultKind::access_flag, 2, 3);
	expect_fault(walk_cfg(g.mem, c, bit(40)), FaultKind::address_size, 2, 1);
	expect_fault(walk_cfg(g.mem, c, (2ull << 30)), FaultKind::not_present, 2, 1);

	// The root must be aligned to the whole concatenated table; the start level must leave
	// 1..13+4 index bits.
	EXPECT_FALSE(make_translation(g.mem, table_config(Format::arm_s2, 0x1000, 12, 40, 1)).ok());
	EXPECT_FALSE(make_translation(g.mem, table_config(Format::arm_s2, 0x2000, 12, 40, 2)).ok());
	Result<Translation> x =
		make_translation(g.mem, table_config(Format::arm_s2, 0x2000, 12, 40));
	ASSERT_TRUE(x.ok());
	EXPECT_EQ(x->s1.level(x->s1.start_height), 0); // derived: 4 levels, no concatenation
}

/* ---------------------------------------------------------------------------------------- */

/*
 * Nested x86-64 over VT-d second stage. Guest-physical G lives at host-physical
 * G + 0x100000 for G < 0x80000; the stage-2 tables are built with the builder (tested on
 * its own), the stage-1 tables by hand.
 */
class NestedGolden : public ::testing::Test {
protected:
	static constexpr uint64_t TABLE = 7, kShift = 0x100000;
	void SetUp() override
	{
		pool = TablePool(0x1c0000, g.mem.translate(0x1c0000, 0x40000), 0x40000, 4096);
		TableConfig c;
		c.format = Format::vtd_ss_4l;
		Result<TableBuilder> b = TableBuilder::create(c, &pool);
		ASSERT_TRUE(b.ok()) << b.status().message();
		s2 = std::move(b.value());
		ASSERT_TRUE(s2.map(0, kShift, 0x80000, kMapRead | kMapWrite).ok());
		ASSERT_TRUE(s2.map(0xabcd000, 0x190000, 0x1000, kMapRead).ok());
		// Stage 1 at guest-physical 0x1000..: written at host-physical + kShift.
		put_gpa(0x1000 + 1 * 8, 0x2000 | TABLE);
		put_gpa(0x2000 + 2 * 8, 0x3000 | TABLE);
		put_gpa(0x3000 + 3 * 8, 0x4000 | TABLE);
		put_gpa(0x4000 + 4 * 8, 0xabcd000 | TABLE);
	}
	void put_gpa(uint64_t gpa, uint64_t v) { g.put(gpa + kShift, v); }
	WalkResult w(uint64_t iova, uint8_t access = kAccessRead)
	{
		const TableConfig s1 = table_config(Format::x86_64_4l, 0x1000);
		const TableConfig s2c = s2.config();
		return walk_cfg(g.mem, s1, iova, access, &s2c);
	}
	TestGuest g{0x100000, 1 * MiB};
	TablePool pool;
	TableBuilder s2;
};

TEST_F(NestedGolden, TwoDimensionalWalk)
{
	// Stage 1 gives rwx, stage 2 maps the output read-only and not executable.
	expect_ok(w(idx(0, 1, 2, 3, 4, 0x567)), 0x190567, 4 * KiB, "r");
	expect_fault(w(idx(0, 1, 2, 3, 4), kAccessWrite), FaultKind::permission, 2, 1);
}

TEST_F(NestedGolden, StageTwoFaultsDuringTableFetch)
{
	put_gpa(0x1000 + 6 * 8, 0x90000 | TABLE); // stage-1 table not mapped by stage 2
	expect_fault(w(idx(0, 6, 0, 0, 0)), FaultKind::not_present, 2, 1);

	put_gpa(0x4000 + 5 * 8, 0xdead000 | TABLE); // output not mapped by stage 2
	expect_fault(w(idx(0, 1, 2, 3, 5)), FaultKind::not_present, 2, 2);

	ASSERT_TRUE(s2.map(0xa0000, 0x900000, 0x1000, kMapRead).ok()); // outside guest memory
	put_gpa(0x1000 + 7 * 8, 0xa0000 | TABLE);
	expect_fault(w(idx(0, 7, 0, 0, 0)), FaultKind::bad_table_pointer, 1, 3);

	ASSERT_TRUE(s2.map(0xb0000, 0x160000, 0x1000, kMapWrite).ok()); // no read for the walk
	put_gpa(0x1000 + 8 * 8, 0xb0000 | TABLE);
	expect_fault(w(idx(0, 8, 0, 0, 0)), FaultKind::permission, 2, 1);

	expect_fault(w(0x0000800000000000ull), FaultKind::address_size, 1, 4);
	expect_fault(w(idx(0, 1, 2, 9, 0)), FaultKind::not_present, 1, 2);
}

TEST_F(NestedGolden, TraceShowsTheTwentyFourReads)
{
	struct Counter : WalkTracer {
		int s1 = 0, s2 = 0;
		void step(const TraceStep &s) override { (s.stage == 1 ? s1 : s2)++; }
	} counter;
	const TableConfig s1 = table_config(Format::x86_64_4l, 0x1000);
	const TableConfig s2c = s2.config();
	Result<Translation> x = make_translation(g.mem, s1, &s2c);
	ASSERT_TRUE(x.ok());
	expect_ok(walk(*x, idx(0, 1, 2, 3, 4), kAccessRead, &counter), 0x190000, 4 * KiB, "r");
	// Four stage-1 entries, each fetched through a four-level stage 2, then the output.
	EXPECT_EQ(counter.s1, 4);
	EXPECT_EQ(counter.s2, 4 * 4 + 4);
}

TEST(NestedPairs, OnlyWhatHardwareCombines)
{
	TestGuest g{0, 64 * KiB};
	const TableConfig x86 = table_config(Format::x86_64_4l), arm1 = table_config(Format::arm_s1),
			  vtd = table_config(Format::vtd_ss_3l), arm2 = table_config(Format::arm_s2);
	EXPECT_TRUE(make_translation(g.mem, x86, &vtd).ok());
	EXPECT_TRUE(make_translation(g.mem, arm1, &arm2).ok());
	Result<Translation> bad = make_translation(g.mem, x86, &arm2);
	ASSERT_FALSE(bad.ok());
	EXPECT_NE(bad.status().message().find("x86-64-4l over arm-s2"), std::string::npos)
		<< bad.status().message();
	EXPECT_FALSE(make_translation(g.mem, arm1, &vtd).ok());
	EXPECT_FALSE(make_translation(g.mem, vtd, &vtd).ok());
}

TEST(NestedArm, StageOneOverConcatenatedStageTwo)
{
	constexpr uint64_t T = 3, AF = bit(10), AP1 = bit(6), S2R = bit(6), S2W = bit(7);
	TestGuest g{0, 1 * MiB};
	// Stage 2: 40-bit IPA from level 1 (8K root at 0x2000), identity for IPA 0..2 MiB via a
	// 2 MiB block, and IPA 0x40000000 -> PA 0xc0000 as a read-only page.
	g.put(0x2000 + 0 * 8, 0x4000 | T);
	g.put(0x4000 + 0 * 8, 0x0 | 1 | AF | S2R | S2W);
	g.put(0x2000 + 1 * 8, 0x5000 | T);
	g.put(0x5000 + 0 * 8, 0x6000 | T);
	g.put(0x6000 + 0 * 8, 0xc0000 | T | AF | S2R | (2ull << 53));
	// Stage 1: 39-bit VA from level 1: L1 0x10000 -> L2 0x11000 -> L3 0x12000 -> 0x40000000.
	g.put(0x10000 + 1 * 8, 0x11000 | T);
	g.put(0x11000 + 2 * 8, 0x12000 | T);
	g.put(0x12000 + 3 * 8, 0x40000000 | T | AF | AP1);
	g.put(0x12000 + 4 * 8, 0x80000000 | T | AF | AP1); // IPA not mapped by stage 2
	const TableConfig s1 = table_config(Format::arm_s1, 0x10000, 12, 39);
	const TableConfig s2 = table_config(Format::arm_s2, 0x2000, 12, 40, 1);
	const uint64_t va = (1ull << 30) | (2ull << 21) | (3ull << 12) | 0x89;
	expect_ok(walk_cfg(g.mem, s1, va, kAccessRead, &s2), 0xc0089, 4 * KiB, "r");
	expect_fault(walk_cfg(g.mem, s1, va, kAccessWrite, &s2), FaultKind::permission, 2, 3);
	expect_fault(walk_cfg(g.mem, s1, va + 0x1000, kAccessRead, &s2), FaultKind::not_present,
		     2, 1);
	// The leaf sizes combine: a stage-1 page inside a stage-2 block is a 4 KiB translation.
	g.put(0x12000 + 5 * 8, 0x1000 | T | AF | AP1);
	expect_ok(walk_cfg(g.mem, s1, va + 0x2000, kAccessRead, &s2), 0x1089, 4 * KiB, "rwx");
}

} // namespace
} // namespace iodp::pgtable::testing
