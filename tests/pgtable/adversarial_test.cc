/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Tables a hostile or broken guest could write: loops, pointers out of guest memory,
 * reserved bits, garbage. The walker must give the right fault and never read outside the
 * guest's regions (the sanitizer build of this test is what proves "never").
 */
#include "test_guest.h"

#include <random>
#include <vector>

namespace iodp::pgtable::testing {
namespace {

constexpr uint64_t KiB = 1024, MiB = KiB * KiB;

TEST(Adversarial, SelfLoopsAndBackPointers)
{
	TestGuest g{0, 1 * MiB};
	g.put(0x1000, 0x1000 | 7); // PML4[0] points at the PML4 itself
	const TableConfig c = table_config(Format::x86_64_4l, 0x1000);
	expect_fault(walk_cfg(g.mem, c, 0), FaultKind::loop, 1, 4);
	g.put(0x1000 + 8, 0x2000 | 7);
	g.put(0x2000, 0x1000 | 7); // PDPT back to the PML4
	expect_fault(walk_cfg(g.mem, c, 1ull << 39), FaultKind::loop, 1, 3);
	g.put(0x2000 + 8, 0x3000 | 7);
	g.put(0x3000, 0x2000 | 7); // PD back to the PDPT
	expect_fault(walk_cfg(g.mem, c, (1ull << 39) | (1ull << 30)), FaultKind::loop, 1, 2);

	// Arm: a pointer into the concatenated start table of a stage 2 is a loop too.
	g.put(0x8000 + 600 * 8, 0xa000 | 3);
	g.put(0xa000, 0x9000 | 3); // second half of the 8K root at 0x8000
	const TableConfig s2 = table_config(Format::arm_s2, 0x8000, 12, 40, 1);
	expect_fault(walk_cfg(g.mem, s2, 600ull << 30), FaultKind::loop, 2, 2);

	// VT-d second stage: a 5-level table pointing at itself from its last level.
	g.put(0x20000, 0x21000 | 3);
	g.put(0x21000, 0x22000 | 3);
	g.put(0x22000, 0x20000 | 3);
	const TableConfig vtd5 = table_config(Format::vtd_ss_5l, 0x20000);
	expect_fault(walk_cfg(g.mem, vtd5, 0), FaultKind::loop, 2, 3);
}

TEST(Adversarial, PointersOutsideGuestMemory)
{
	TestGuest g{0x100000, 64 * KiB};
	const TableConfig c = table_config(Format::x86_64_4l, 0x100000);
	// A root outside guest memory faults at the start level.
	expect_fault(walk_cfg(g.mem, table_config(Format::x86_64_4l, 0x5000), 0),
		     FaultKind::bad_table_pointer, 1, 4);
	expect_fault(walk_cfg(g.mem, table_config(Format::arm_s1, 0x5000), 0),
		     FaultKind::bad_table_pointer, 1, 0);
	// A table pointer to the top of the address space and one just past the region.
	g.put(0x100000, 0x000ffffffffff000ull | 7);
	expect_fault(walk_cfg(g.mem, c, 0), FaultKind::bad_table_pointer, 1, 3);
	g.put(0x100008, 0x110000 | 7);
	expect_fault(walk_cfg(g.mem, c, 1ull << 39), FaultKind::bad_table_pointer, 1, 3);
	// A table whose first entries are inside the region but later ones are not.
	g.put(0x100010, 0x10f000 | 7);
	g.put(0x10f000 + 511 * 8, 0x1234000 | 7);
	EXPECT_EQ(walk_cfg(g.mem, c, (2ull << 39) | (511ull << 30)).fault,
		  FaultKind::bad_table_pointer); // the PD at 0x1234000 is outside
}

TEST(Adversarial, RegionEndingMidTable)
{
	std::vector<std::byte> mem(8); // a table of which one entry exists
	GuestMemory m;
	ASSERT_TRUE(m.add_region(0x1000, mem.size(), mem.data()).ok());
	const TableConfig c = table_config(Format::vtd_ss_3l, 0x1000);
	expect_fault(walk_cfg(m, c, 0), FaultKind::not_present, 2, 3);
	expect_fault(walk_cfg(m, c, 1ull << 30), FaultKind::bad_table_pointer, 2, 3);
}

TEST(Adversarial, AllOnesEntries)
{
	TestGuest g{0, 1 * MiB};
	for (uint64_t a = 0x1000; a < 0x2000; a += 8)
		g.put(a, ~0ull);
	EXPECT_EQ(walk_cfg(g.mem, table_config(Format::x86_64_4l, 0x1000), 0).fault,
		  FaultKind::reserved_bit); // PS in a PML4E
	EXPECT_EQ(walk_cfg(g.mem, table_config(Format::vtd_ss_4l, 0x1000), 0).fault,
		  FaultKind::reserved_bit); // bit 62
	EXPECT_EQ(walk_cfg(g.mem, table_config(Format::arm_s1, 0x1000), 0).fault,
		  FaultKind::reserved_bit); // OA bits 51:48 with a 4K granule
	// 64K granule: all ones is a table at a 52-bit address far outside guest memory.
	for (uint64_t a = 0x10000; a < 0x20000; a += 8)
		g.put(a, ~0ull);
	expect_fault(walk_cfg(g.mem, table_config(Format::arm_s1, 0x10000, 16), 0),
		     FaultKind::bad_table_pointer, 1, 2);
}

/*
 * Garbage everywhere: guest memory full of random words, some of them pointing back into
 * the guest so walks go deep. Walk many addresses in every format and nesting; every
 * result must be a well-formed answer and the burst must agree with single walks.
 */
TEST(Adversarial, RandomGarbageTables)
{
	constexpr uint64_t kSize = 256 * KiB;
	TestGuest g{0, kSize};
	std::mt19937_64 rng(12345);
	for (uint64_t a = 0; a < kSize; a += 8) {
		uint64_t v = rng();
		// Most words are plausible descriptors pointing inside the guest.
		if (rng() % 4)
			v = (v & 0x8000000000000fffull) | 1 | ((rng() % kSize) & ~0xfffull);
		g.put(a, v);
	}
	struct Case {
		TableConfig s1;
		std::optional<TableConfig> s2;
	};
	std::vector<Case> cases;
	for (Format f : {Format::x86_64_4l, Format::x86_64_5l, Format::vtd_ss_3l,
			 Format::vtd_ss_4l, Format::vtd_ss_5l})
		cases.push_back({table_config(f, 0x3000), {}});
	for (unsigned gs : {12u, 14u, 16u}) {
		cases.push_back({table_config(Format::arm_s1, 0x10000, gs), {}});
		cases.push_back({table_config(Format::arm_s2, 0x10000, gs), {}});
		cases.push_back({table_config(Format::arm_s1, 0x10000, gs),
				 table_config(Format::arm_s2, 0x20000, gs, 40)});
	}
	cases.push_back({table_config(Format::x86_64_4l, 0x4000),
			 table_config(Format::vtd_ss_4l, 0x5000)});
	cases.push_back({table_config(Format::x86_64_5l, 0x4000),
			 table_config(Format::vtd_ss_3l, 0x6000)});

	size_t faults = 0, ok = 0;
	for (const Case &c : cases) {
		Result<Translation> x =
			make_translation(g.mem, c.s1, c.s2 ? &*c.s2 : nullptr);
		ASSERT_TRUE(x.ok()) << x.status().message();
		std::vector<WalkRequest> reqs(512);
		for (WalkRequest &r : reqs)
			r = walk_request((rng() & 0x7fffffffffffull) >> (rng() % 16),
					 static_cast<uint8_t>(rng() % 16));
		std::vector<WalkResult> burst(reqs.size());
		walk_burst(*x, reqs.data(), burst.data(), reqs.size());
		for (size_t i = 0; i < reqs.size(); i++) {
			const WalkResult one = walk(*x, reqs[i].iova, reqs[i].access);
			ASSERT_EQ(one, burst[i]) << "request " << i;
			if (one.ok()) {
				ok++;
				EXPECT_NE(one.page_size, 0u);
				EXPECT_EQ(one.perm & ~7, 0);
			} else {
				faults++;
				EXPECT_TRUE(one.stage == 1 || one.stage == 2);
				EXPECT_GE(one.level, 0);
				EXPECT_LE(one.level, 5);
			}
		}
	}
	// The garbage is varied enough to produce both outcomes.
	EXPECT_GT(faults, 0u);
	EXPECT_GT(ok, 0u);
}

} // namespace
} // namespace iodp::pgtable::testing
