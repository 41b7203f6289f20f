/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shadow against a stand-in kernel with type1's rules (a map may not overlap one that
 * exists; an unmap must cover whole mappings; a container holds a limited number of them):
 * after every change of a guest table followed by a sync of the changed range, the
 * kernel's mappings are exactly what the table translates, coalesced, with unmaps issued
 * before maps.
 */
#include "../pgtable/test_guest.h"

#include <iodp/pgtable_range.h>
#include <iodp/shadow.h>

#include <cerrno>
#include <map>
#include <random>
#include <vector>

namespace iodp::shadow {
namespace {

using pgtable::testing::TestGuest;
using namespace pgtable;

constexpr uint64_t KiB = 1024, MiB = KiB * KiB, GiB = MiB * KiB;

/** The kernel's side: type1's rules, every call recorded. */
class FakeKernel : public KernelMapper {
public:
	struct Call {
		bool map;
		uint64_t iova, size;
	};

	Status map(uint64_t iova, uint64_t host, uint64_t size, uint8_t perm) override
	{
		if (size == 0 || (iova | host | size) & 4095)
			return Status::error(-EINVAL, "map: unaligned");
		auto it = maps.lower_bound(iova);
		if ((it != maps.end() && it->first < iova + size) ||
		    (it != maps.begin() && std::prev(it)->first + std::prev(it)->second.size > iova))
			return Status::error(-EEXIST, "map: [0x{:x}, +0x{:x}) overlaps",
					     iova,
					     size);
		if (maps.size() >= limit)
			return Status::error(-ENOSPC, "VFIO_IOMMU_MAP_DMA: container full (dma_avail 0 "
					     "of {})", limit);
		maps[iova] = {size, host, perm};
		calls.push_back({true, iova, size});
		return {};
	}

	Status unmap(uint64_t iova, uint64_t size) override
	{
		// Whole mappings only (type1 v2 refuses to bisect one).
		auto it = maps.lower_bound(iova);
		if (it == maps.end() || it->first != iova)
			return Status::error(-EINVAL, "unmap: no mapping starts at 0x{:x}",
					     iova);
		uint64_t at = iova;
		while (at < iova + size) {
			if (it == maps.end() || it->first != at)
				return Status::error(-EINVAL, "unmap: bisects or holes");
			at += it->second.size;
			++it;
		}
		if (at != iova + size)
			return Status::error(-EINVAL, "unmap: bisects a mapping");
		maps.erase(maps.lower_bound(iova), it);
		calls.push_back({false, iova, size});
		return {};
	}

	/** The host address @p iova reaches, or none. */
	std::optional<std::pair<uint64_t, uint8_t>> lookup(uint64_t iova) const
	{
		auto it = maps.upper_bound(iova);
		if (it == maps.begin())
			return std::nullopt;
		--it;
		if (iova - it->first >= it->second.size)
			return std::nullopt;
		return std::make_pair(it->second.host + (iova - it->first), it->second.perm);
	}

	std::map<uint64_t, Extent> maps;
	std::vector<Call> calls;
	size_t limit = SIZE_MAX;
};

/** Everything a table translates in a window, as runs with kPermRead (what is mapped). */
struct AllRuns : RangeSink {
	std::vector<RangeRun> runs;
	void run(const RangeRun &r) override
	{
		if (r.perm & kPermRead)
			runs.push_back(r);
	}
};

class ShadowTest : public ::testing::Test {
protected:
	static constexpr uint64_t kGpa = 0x40000000, kPool = 8 * MiB;
	static constexpr uint64_t kWindow = 0x7f0000000000, kSpan = 64 * MiB;
	static constexpr uint64_t kOut = 0x100000000; // "host" addresses the table maps to

	void SetUp() override
	{
		pool = TablePool(kGpa, guest.mem.translate(kGpa, kPool), kPool, 4096);
		Result<TableBuilder> b = TableBuilder::create(table_config(Format::x86_64_4l), &pool);
		ASSERT_TRUE(b.ok());
		table = std::move(*b);
		const TableConfig c = table.config();
		Result<Translation> x = make_translation(guest.mem, c);
		ASSERT_TRUE(x.ok());
		xlat = *x;
	}

	/** The kernel holds exactly what the table translates in the window. */
	void expect_kernel_agrees(const Shadow &sh)
	{
		ASSERT_EQ(kernel.maps, sh.extents()) << "the shadow's record is the kernel's state";
		AllRuns all;
		walk_range(xlat, kWindow, kSpan, 0, all);
		uint64_t runs_bytes = 0, kernel_bytes = 0;
		for (const RangeRun &r : all.runs) {
			runs_bytes += r.size;
			for (uint64_t a : {r.iova, r.iova + r.size - 1}) {
				auto k = kernel.lookup(a);
				ASSERT_TRUE(k.has_value()) << std::hex << "not in the kernel: 0x" << a;
				EXPECT_EQ(k->first, r.out + (a - r.iova)) << std::hex << "0x" << a;
				EXPECT_EQ(k->second, r.perm & (kPermRead | kPermWrite));
			}
		}
		for (const auto &[iova, e] : kernel.maps)
			kernel_bytes += e.size;
		EXPECT_EQ(kernel_bytes, runs_bytes) << "nothing stale in the kernel";
	}

	TestGuest guest{kGpa, kPool};
	TablePool pool;
	TableBuilder table;
	Translation xlat;
	FakeKernel kernel;
};

TEST_F(ShadowTest, ContiguousPagesBecomeOneCall)
{
	// 1024 pages mapped one by one (4 KiB leaves), contiguous in host memory.
	for (uint64_t i = 0; i < 1024; i++)
		ASSERT_TRUE(table.map(kWindow + i * 4096, kOut + i * 4096, 4096, kMapRead | kMapWrite |
				      kMapUser).ok());
	Shadow iodp(kernel);
	ASSERT_TRUE(iodp.sync(xlat, kWindow, 1024 * 4096).ok());
	EXPECT_EQ(kernel.calls.size(), 1u);
	EXPECT_EQ(iodp.stats().map_calls, 1u);
	expect_kernel_agrees(iodp);
	// The same sync again changes nothing.
	ASSERT_TRUE(iodp.sync(xlat, kWindow, 1024 * 4096).ok());
	EXPECT_EQ(kernel.calls.size(), 1u);
	EXPECT_EQ(iodp.stats().kept, 1u);

	FakeKernel k2;
	Shadow per_page(k2, {.coalesce = false});
	ASSERT_TRUE(per_page.sync(xlat, kWindow, 1024 * 4096).ok());
	EXPECT_EQ(k2.calls.size(), 1024u) << "QEMU's way: one call per leaf";
}

TEST_F(ShadowTest, ChangeInsideACoalescedMappingSplitsItUnmapFirst)
{
	for (uint64_t i = 0; i < 16; i++)
		ASSERT_TRUE(table.map(kWindow + i * 4096, kOut + i * 4096, 4096,
				      kMapRead | kMapWrite | kMapUser).ok());
	Shadow sh(kernel);
	ASSERT_TRUE(sh.sync(xlat, kWindow, 16 * 4096).ok());
	ASSERT_EQ(kernel.maps.size(), 1u);
	// The guest retargets page 7 and invalidates that page only.
	ASSERT_TRUE(table.unmap(kWindow + 7 * 4096, 4096).ok());
	ASSERT_TRUE(table.map(kWindow + 7 * 4096, kOut + 100 * 4096, 4096,
			      kMapRead | kMapUser).ok());
	kernel.calls.clear();
	ASSERT_TRUE(sh.sync(xlat, kWindow + 7 * 4096, 4096).ok());
	ASSERT_GE(kernel.calls.size(), 2u);
	EXPECT_FALSE(kernel.calls.front().map) << "the stale mapping goes first";
	for (size_t i = 1; i < kernel.calls.size(); i++)
		EXPECT_TRUE(kernel.calls[i].map) << "every unmap before any map";
	EXPECT_EQ(kernel.lookup(kWindow + 7 * 4096)->first, kOut + 100 * 4096);
	EXPECT_EQ(kernel.lookup(kWindow + 7 * 4096)->second, kPermRead);
	EXPECT_EQ(kernel.lookup(kWindow + 6 * 4096)->first, kOut + 6 * 4096);
	EXPECT_EQ(kernel.lookup(kWindow + 8 * 4096)->first, kOut + 8 * 4096);
	expect_kernel_agrees(sh);
}

TEST_F(ShadowTest, RandomChangesEachSyncedOverItsRangeAgreeWithTheTable)
{
	std::mt19937_64 rng(0x5ad0);
	Shadow sh(kernel);
	for (int op = 0; op < 400; op++) {
		const uint64_t pages = 1 + rng() % (rng() % 4 == 0 ? 1024 : 16);
		const uint64_t iova = kWindow + (rng() % (kSpan / 4096 - pages)) * 4096;
		const uint64_t len = pages * 4096;
		if (rng() % 3 == 0) {
			ASSERT_TRUE(table.unmap(iova, len).ok());
		} else {
			const uint64_t out = kOut + (rng() % 4096) * 2 * MiB + (rng() % 2) * 4096;
			const uint8_t perm = kMapUser | kMapRead | ((rng() % 2) ? kMapWrite : 0);
			Status s = table.map(iova, out, len, perm);
			if (!s.ok()) {
				ASSERT_EQ(s.code(), -EEXIST);
				continue;
			}
		}
		// The guest invalidates what it changed (sometimes a bit more).
		const uint64_t pad = (rng() % 4 == 0) ? 64 * KiB : 0;
		ASSERT_TRUE(sh.sync(xlat, iova - pad, len + 2 * pad).ok()) << op;
		if (op % 20 == 0)
			expect_kernel_agrees(sh);
	}
	expect_kernel_agrees(sh);
	ASSERT_TRUE(sh.clear().ok());
	EXPECT_TRUE(kernel.maps.empty());
	EXPECT_EQ(sh.bytes_mapped(), 0u);
}

TEST_F(ShadowTest, AFullContainerFailsWithTheNumbersAndRecovers)
{
	// Scattered pages: nothing coalesces.
	for (uint64_t i = 0; i < 32; i++)
		ASSERT_TRUE(table.map(kWindow + i * 8192, kOut + i * 8192, 4096,
				      kMapRead | kMapUser).ok());
	kernel.limit = 20;
	Shadow sh(kernel);
	Status s = sh.sync(xlat, kWindow, 64 * 4096);
	ASSERT_EQ(s.code(), -ENOSPC);
	EXPECT_NE(s.message().find("container full"), std::string::npos) << s.message();
	EXPECT_NE(s.message().find("20 mapping(s)"), std::string::npos) << s.message();
	EXPECT_TRUE(sh.degraded());
	EXPECT_EQ(kernel.maps, sh.extents()) << "what was done is what is recorded";
	kernel.limit = 64;
	ASSERT_TRUE(sh.sync(xlat, kWindow, 64 * 4096).ok());
	EXPECT_FALSE(sh.degraded());
	expect_kernel_agrees(sh);
}

TEST(ShadowNested, StageOneOverStageTwoShadowsTheComposition)
{
	constexpr uint64_t kGpa = 0x40000000, kPool = 8 * MiB;
	TestGuest guest(kGpa, 2 * kPool);
	std::byte *host = guest.mem.translate(kGpa, 2 * kPool);
	TablePool p2(kGpa + kPool, host + kPool, kPool, 4096), p1(0x80000000, host, kPool, 4096);
	TableBuilder s2 = std::move(*TableBuilder::create(table_config(Format::vtd_ss_4l), &p2));
	TableBuilder s1 = std::move(*TableBuilder::create(table_config(Format::x86_64_4l), &p1));
	// Stage 2: the stage-1 pool's IPAs onto its memory; guest RAM IPA 4G -> host 16G.
	ASSERT_TRUE(s2.map(0x80000000, kGpa, kPool, kMapRead | kMapWrite).ok());
	ASSERT_TRUE(s2.map(4 * GiB, 16 * GiB, 64 * MiB, kMapRead | kMapWrite).ok());
	for (uint64_t i = 0; i < 256; i++)
		ASSERT_TRUE(s1.map(0x1000000 + i * 4096, 4 * GiB + i * 4096, 4096,
				   kMapRead | kMapWrite | kMapUser).ok());
	const TableConfig c1 = s1.config(), c2 = s2.config();
	Translation x = *make_translation(guest.mem, c1, &c2);
	FakeKernel kernel;
	Shadow sh(kernel);
	ASSERT_TRUE(sh.sync(x, 0x1000000, 256 * 4096).ok());
	ASSERT_EQ(kernel.maps.size(), 1u);
	EXPECT_EQ(kernel.lookup(0x1000000 + 5 * 4096)->first, 16 * GiB + 5 * 4096);
	// A stage-2 change (the VMM unmaps guest RAM): re-shadow the range.
	ASSERT_TRUE(s2.unmap(4 * GiB, 2 * MiB).ok());
	ASSERT_TRUE(sh.sync(x, 0x1000000, 256 * 4096).ok());
	EXPECT_TRUE(kernel.maps.empty());
}

} // namespace
} // namespace iodp::shadow
