/* SPDX-License-Identifier: BSD-3-Clause */
/* The builder's choices: largest page that fits, block splits, freeing, and its errors. */
#include "test_guest.h"

#include <algorithm>
#include <random>
#include <vector>

namespace iodp::pgtable::testing {
namespace {

constexpr uint64_t KiB = 1024, MiB = KiB * KiB, GiB = MiB * KiB;

TableConfig cfg_x86() { return table_config(Format::x86_64_4l, 0); }

class BuilderTest : public ::testing::Test {
protected:
	void make(TableConfig c, uint64_t page = 4096, uint64_t pool_bytes = 4 * MiB)
	{
		pool = TablePool(0, g.ram.data(), pool_bytes, page);
		Result<TableBuilder> r = TableBuilder::create(c, &pool);
		ASSERT_TRUE(r.ok()) << r.status().message();
		b = std::move(r.value());
	}
	WalkResult w(uint64_t iova, uint8_t access = kAccessPriv)
	{
		return walk_cfg(g.mem, b.config(), iova, access);
	}
	TestGuest g{0, 16 * MiB};
	TablePool pool;
	TableBuilder b;
};

TEST_F(BuilderTest, LargestPageThatFits)
{
	make(cfg_x86());
	ASSERT_TRUE(b.map(1 * GiB, 5 * GiB, 1 * GiB + 2 * MiB + 4 * KiB, kMapRead | kMapWrite).ok());
	expect_ok(w(1 * GiB + 0x1234), 5 * GiB + 0x1234, 1 * GiB, "rw");
	expect_ok(w(2 * GiB + 0x1234), 6 * GiB + 0x1234, 2 * MiB, "rw");
	expect_ok(w(2 * GiB + 2 * MiB + 8), 6 * GiB + 2 * MiB + 8, 4 * KiB, "rw");
	expect_fault(w(2 * GiB + 2 * MiB + 4 * KiB), FaultKind::not_present, 1, 1);
	// Output only 4K-aligned: no large pages however big the range.
	ASSERT_TRUE(b.map(4 * GiB, 7 * GiB + 4 * KiB, 4 * MiB, kMapRead).ok());
	expect_ok(w(4 * GiB + 3 * MiB), 7 * GiB + 4 * KiB + 3 * MiB, 4 * KiB, "r");
}

/* Deferred frees: a walker may still be inside the tables an unmap emptied. */
TEST_F(BuilderTest, DeferredPoolHoldsFreedTablesUntilReleased)
{
	make(cfg_x86());
	pool.set_deferred(true);
	ASSERT_TRUE(b.map(1 * GiB, 5 * GiB, 4 * KiB, kMapRead).ok());
	const uint64_t in_use = pool.pages_in_use();
	const WalkResult before = w(1 * GiB);
	ASSERT_TRUE(before.ok());
	uint64_t unmapped = 0;
	ASSERT_TRUE(b.unmap(1 * GiB, 4 * KiB, &unmapped).ok());
	const std::vector<uint64_t> held = pool.held_tables();
	ASSERT_EQ(held.size(), 3u) << "every table below the root went empty";
	EXPECT_EQ(pool.pages_in_use(), in_use - 3);
	// Not reused while held (a late reader finds them empty, never re-filled), nor when
	// sealed for a grace period...
	pool.seal_held(1);
	ASSERT_TRUE(b.map(3 * GiB, 6 * GiB, 4 * KiB, kMapRead).ok());
	const WalkResult other = w(3 * GiB);
	for (uint64_t addr : held)
		EXPECT_NE(other.path[0].table, addr);
	// ...released only with the grace period they were sealed for...
	pool.release_sealed(0);
	EXPECT_EQ(pool.held_tables().size(), 3u);
	pool.release_sealed(1);
	EXPECT_TRUE(pool.held_tables().empty());
	// ...and reused then.
	ASSERT_TRUE(b.map(2 * GiB, 6 * GiB, 4 * KiB, kMapRead).ok());
	const uint64_t reused = w(2 * GiB).path[0].table;
	EXPECT_TRUE(std::any_of(held.begin(), held.end(), [&](uint64_t a) { return a == reused; }));
}

TEST_F(BuilderTest, PartialUnmapSplitsBlocks)
{
	make(cfg_x86());
	ASSERT_TRUE(b.map(1 * GiB, 3 * GiB, 1 * GiB, kMapRead | kMapWrite | kMapUser).ok());
	uint64_t unmapped = 0;
	ASSERT_TRUE(b.unmap(1 * GiB + 6 * MiB + 8 * KiB, 4 * KiB, &unmapped).ok());
	EXPECT_EQ(unmapped, 4 * KiB);
	expect_fault(w(1 * GiB + 6 * MiB + 8 * KiB), FaultKind::not_present, 1, 1);
	// The pieces keep the block's permissions (user, writable, not executable).
	expect_ok(w(1 * GiB + 6 * MiB + 4 * KiB, 0), 3 * GiB + 6 * MiB + 4 * KiB, 4 * KiB, "rw");
	expect_ok(w(1 * GiB + 6 * MiB + 12 * KiB, 0), 3 * GiB + 6 * MiB + 12 * KiB, 4 * KiB,
		  "rw");
	expect_ok(w(1 * GiB + 8 * MiB, 0), 3 * GiB + 8 * MiB, 2 * MiB, "rw");
	expect_ok(w(1 * GiB + 1023 * MiB, 0), 3 * GiB + 1023 * MiB, 2 * MiB, "rw");
	// Unmapping the rest frees every table below the root.
	ASSERT_TRUE(b.unmap(0, 4 * GiB, &unmapped).ok());
	EXPECT_EQ(unmapped, 1 * GiB - 4 * KiB);
	EXPECT_EQ(pool.pages_in_use(), 1u);
}

/* A split needs table pages; without them the unmap fails and changes nothing. */
TEST_F(BuilderTest, UnmapThatCannotSplitChangesNothing)
{
	// Root, level 3, level 2: a 1 GiB block then a 2 MiB block leave one page free.
	make(cfg_x86(), 4096, 4 * 4096);
	ASSERT_TRUE(b.map(1 * GiB, 3 * GiB, 1 * GiB, kMapRead | kMapWrite).ok());
	ASSERT_TRUE(b.map(2 * GiB, 5 * GiB, 2 * MiB, kMapRead | kMapWrite).ok());
	EXPECT_EQ(pool.pages_in_use(), 3u);
	EXPECT_EQ(pool.pages_free(), 1u);
	// One 4 KiB page out of the 1 GiB block: a table of 2 MiB blocks, then one of 4 KiB
	// pages; out of the 2 MiB block: one table.
	EXPECT_EQ(b.unmap_needs(1 * GiB + 6 * MiB, 4 * KiB), 2u);
	EXPECT_EQ(b.unmap_needs(1 * GiB + 4 * MiB, 2 * MiB), 1u);
	EXPECT_EQ(b.unmap_needs(2 * GiB + 8 * KiB, 4 * KiB), 1u);
	EXPECT_EQ(b.unmap_needs(1 * GiB, 1 * GiB), 0u);
	// Both ends of the range inside the same block: still the two tables at most per level.
	EXPECT_EQ(b.unmap_needs(1 * GiB + 4 * KiB, 1 * GiB - 8 * KiB), 3u);

	uint64_t unmapped = 77;
	Status st = b.unmap(1 * GiB + 6 * MiB, 4 * KiB, &unmapped);
	EXPECT_EQ(st.code(), -ENOMEM) << st.message();
	EXPECT_NE(st.message().find("needs 2 table page(s)"), std::string::npos) << st.message();
	EXPECT_EQ(unmapped, 77u) << "nothing unmapped, nothing reported";
	EXPECT_EQ(pool.pages_in_use(), 3u);
	expect_ok(w(1 * GiB + 6 * MiB), 3 * GiB + 6 * MiB, 1 * GiB, "rw");
	expect_ok(w(1 * GiB + 1023 * MiB), 3 * GiB + 1023 * MiB, 1 * GiB, "rw");
	// One page is enough for the 2 MiB block.
	ASSERT_TRUE(b.unmap(2 * GiB + 8 * KiB, 4 * KiB, &unmapped).ok());
	EXPECT_EQ(unmapped, 4 * KiB);
	expect_fault(w(2 * GiB + 8 * KiB), FaultKind::not_present, 1, 1);
	expect_ok(w(2 * GiB + 12 * KiB), 5 * GiB + 12 * KiB, 4 * KiB, "rw");
	// Whole leaves need nothing; emptied tables go back to the pool.
	ASSERT_TRUE(b.unmap(0, 4 * GiB, &unmapped).ok());
	EXPECT_EQ(unmapped, 1 * GiB + 2 * MiB - 4 * KiB);
	EXPECT_EQ(pool.pages_in_use(), 1u);
}

/* Tables are freed by count, not by scanning: the count follows every kind of change. */
TEST_F(BuilderTest, EmptyTablesAreFreedWhateverTheOrder)
{
	make(cfg_x86());
	std::mt19937_64 rng(7);
	std::vector<uint64_t> pages;
	for (uint64_t i = 0; i < 1024; i++)
		pages.push_back(1 * GiB + i * 4 * KiB);
	std::shuffle(pages.begin(), pages.end(), rng);
	for (uint64_t p : pages)
		ASSERT_TRUE(b.map(p, p, 4 * KiB, kMapRead).ok());
	// A 2 MiB block next to them, split by a partial unmap, then unmapped page by page.
	ASSERT_TRUE(b.map(1 * GiB + 4 * MiB, 8 * GiB, 2 * MiB, kMapRead).ok());
	ASSERT_TRUE(b.unmap(1 * GiB + 4 * MiB, 4 * KiB).ok());
	for (uint64_t i = 1; i < 512; i++)
		ASSERT_TRUE(b.unmap(1 * GiB + 4 * MiB + i * 4 * KiB, 4 * KiB).ok());
	std::shuffle(pages.begin(), pages.end(), rng);
	for (size_t i = 0; i < pages.size(); i++) {
		ASSERT_TRUE(b.unmap(pages[i], 4 * KiB).ok());
		if (i + 1 < pages.size()) {
			ASSERT_TRUE(w(pages[i + 1]).ok()) << "a table freed while in use";
		}
	}
	EXPECT_EQ(pool.pages_in_use(), 1u);
}

TEST_F(BuilderTest, ArmGranulesUseTheirBlocks)
{
	make(table_config(Format::arm_s1, 0, 16), 64 * KiB);
	ASSERT_TRUE(b.map(512 * MiB, 1 * GiB, 512 * MiB + 64 * KiB, kMapRead).ok());
	expect_ok(w(512 * MiB + 5), 1 * GiB + 5, 512 * MiB, "r");
	expect_ok(w(1 * GiB + 5), 1 * GiB + 512 * MiB + 5, 64 * KiB, "r");
	ASSERT_TRUE(b.unmap(512 * MiB, 64 * KiB).ok());
	expect_ok(w(512 * MiB + 64 * KiB), 1 * GiB + 64 * KiB, 64 * KiB, "r");
}

TEST_F(BuilderTest, ConcatenatedStageTwoRoot)
{
	g.ram.data()[0] = std::byte{0}; // the pool starts at 0: the root must be 8K-aligned
	make(table_config(Format::arm_s2, 0, 12, 40, 1));
	EXPECT_EQ(b.root() % (8 * KiB), 0u);
	ASSERT_TRUE(b.map(0xff00000000, 0x1000, 0x1000, kMapWrite).ok());
	expect_ok(w(0xff00000abc, 0), 0x1abc, 4 * KiB, "w");
}

/*
 * The kernel selftest's mock IOMMU: 2 KiB pages, 1 MiB blocks (512 pages), 4 KiB tables,
 * a 32-bit input; dirty bits per leaf, set by a write walk or by mark_dirty().
 */
TEST_F(BuilderTest, MockFormatHasTwoKiBPagesAndOneMiBBlocks)
{
	TableConfig c = table_config(Format::mock, 0, 11);
	TablePool wrong(0, g.ram.data(), 1 * MiB, 2 * KiB); // a pool page is one 4 KiB table
	EXPECT_EQ(TableBuilder::create(c, &wrong).status().code(), -EINVAL);
	EXPECT_EQ(make_stage(table_config(Format::mock, 0, 12)).status().code(), -EINVAL);
	make(c, 4 * KiB);
	ASSERT_EQ(b.stage().table_page_bytes(), 4 * KiB);
	// 2 KiB aligned at both ends: 2 KiB leaves.
	ASSERT_TRUE(b.map(16 * MiB + 2 * KiB, 8 * MiB + 6 * KiB, 4 * KiB, kMapRead | kMapWrite)
			    .ok());
	expect_ok(w(16 * MiB + 2 * KiB + 5, 0), 8 * MiB + 6 * KiB + 5, 2 * KiB, "rw");
	expect_ok(w(16 * MiB + 4 * KiB + 5, 0), 8 * MiB + 8 * KiB + 5, 2 * KiB, "rw");
	expect_fault(w(16 * MiB, 0), FaultKind::not_present, 2, 1);
	// 1 MiB aligned at both ends: one block, the mock's MOCK_HUGE_PAGE_SIZE.
	ASSERT_TRUE(b.map(32 * MiB, 9 * MiB, 1 * MiB + 2 * KiB, kMapRead).ok());
	expect_ok(w(32 * MiB + 0x12345, 0), 9 * MiB + 0x12345, 1 * MiB, "r");
	expect_ok(w(33 * MiB + 8, 0), 10 * MiB + 8, 2 * KiB, "r");
	EXPECT_EQ(b.map(1ull << 32, 0, 2 * KiB, kMapRead).code(), -EINVAL); // beyond 32 bits
	// Dirty: a block reports its whole extent; an unmapped address marks nothing.
	std::vector<std::pair<uint64_t, uint64_t>> dirty;
	auto record = [&](uint64_t iova, uint64_t size) { dirty.emplace_back(iova, size); };
	ASSERT_TRUE(b.mark_dirty(32 * MiB + 6 * KiB).value());
	ASSERT_TRUE(b.mark_dirty(16 * MiB + 4 * KiB).value());
	EXPECT_FALSE(b.mark_dirty(16 * MiB).value());
	ASSERT_TRUE(b.harvest_dirty(16 * MiB, 32 * MiB, false, record).ok());
	const std::vector<std::pair<uint64_t, uint64_t>> want = {{16 * MiB + 4 * KiB, 2 * KiB},
								 {32 * MiB, 1 * MiB}};
	EXPECT_EQ(dirty, want);
	dirty.clear();
	ASSERT_TRUE(b.harvest_dirty(16 * MiB, 32 * MiB, false, record).ok());
	EXPECT_TRUE(dirty.empty()) << "harvesting cleared the bits";
	// Splitting the block keeps 2 KiB leaves of the rest.
	ASSERT_TRUE(b.unmap(32 * MiB + 2 * KiB, 2 * KiB).ok());
	expect_fault(w(32 * MiB + 2 * KiB, 0), FaultKind::not_present, 2, 1);
	expect_ok(w(32 * MiB + 4 * KiB, 0), 9 * MiB + 4 * KiB, 2 * KiB, "r");
}

TEST_F(BuilderTest, RejectsBadRequestsAndChangesNothing)
{
	make(cfg_x86(), 4096, 5 * 4096);
	EXPECT_EQ(b.map(0x1001, 0, 0x1000, kMapRead).code(), -EINVAL);
	EXPECT_EQ(b.map(0x1000, 0, 0, kMapRead).code(), -EINVAL);
	EXPECT_EQ(b.map(0x1000, 0, 0x1000, kMapWrite).code(), -EINVAL); // x86 cannot write-only
	EXPECT_EQ(b.map(0x00007ffffffff000, 0, 0x2000, kMapRead).code(), -EINVAL); // crosses
	Status st = b.map(0x800000000000, 0, 0x1000, kMapRead);
	EXPECT_EQ(st.code(), -EINVAL);
	EXPECT_NE(st.message().find("x86-64-4l map 0x800000000000"), std::string::npos)
		<< st.message();

	ASSERT_TRUE(b.map(0x200000, 0x200000, 0x2000, kMapRead).ok());
	EXPECT_EQ(b.map(0x201000, 0, 0x1000, kMapRead).code(), -EEXIST);
	EXPECT_EQ(b.map(0, 0, 0x400000, kMapRead).code(), -EEXIST);
	const uint64_t used = pool.pages_in_use();
	// The pool has one page left: a mapping that needs three fails and leaves nothing.
	Status full = b.map(1ull << 40, 0, 0x1000, kMapRead);
	EXPECT_EQ(full.code(), -ENOMEM) << full.message();
	EXPECT_EQ(pool.pages_in_use(), used);
	expect_ok(w(0x201000), 0x201000, 4 * KiB, "r");

	TableConfig s2 = table_config(Format::vtd_ss_4l, 0);
	TablePool p2(8 * MiB, g.ram.data() + 8 * MiB, 1 * MiB, 4096);
	Result<TableBuilder> b2 = TableBuilder::create(s2, &p2);
	ASSERT_TRUE(b2.ok());
	EXPECT_EQ(b2->map(0, 0, 0x1000, kMapExec).code(), -EINVAL);
	EXPECT_EQ(b2->map(0, 0, 0x1000, kMapRead | kMapUser).code(), -EINVAL);
	TablePool wrong(0, g.ram.data(), 1 * MiB, 16 * KiB);
	EXPECT_EQ(TableBuilder::create(table_config(Format::arm_s1, 0, 12), &wrong).status().code(),
		  -EINVAL);
}

} // namespace
} // namespace iodp::pgtable::testing
