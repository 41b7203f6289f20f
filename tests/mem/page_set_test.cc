/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * PageSet against a reference model (a count per page), and readers testing pages while a
 * writer adds and removes ranges (also built into the ThreadSanitizer test binary).
 */
#include <iodp/mem.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <map>
#include <random>
#include <thread>
#include <vector>

namespace iodp {
namespace {

constexpr uint64_t kPage = 4096;

TEST(PageSet, AddRemoveAndCounts)
{
	PageSet s;
	EXPECT_FALSE(s.contains(0x10000, 1));
	ASSERT_TRUE(s.add(0x10000, 3 * kPage).ok());
	EXPECT_TRUE(s.contains(0x10000, 3 * kPage));
	EXPECT_TRUE(s.contains(0x12ff8, 8));
	EXPECT_FALSE(s.contains(0x12ff8, 16)); // runs past the last page
	EXPECT_FALSE(s.contains(0xfff8, 16));
	// The same memory added twice stays until removed twice.
	ASSERT_TRUE(s.add(0x11000, kPage).ok());
	s.remove(0x10000, 3 * kPage);
	EXPECT_FALSE(s.contains(0x10000, 1));
	EXPECT_TRUE(s.contains(0x11000, kPage));
	EXPECT_FALSE(s.contains(0x12000, 1));
	EXPECT_EQ(s.pages(), 1u);
	s.remove(0x11000, kPage);
	EXPECT_FALSE(s.contains(0x11000, 1));
	EXPECT_EQ(s.segments(), 0u);
	EXPECT_EQ(s.pages(), 0u);
	// Bad ranges change nothing.
	EXPECT_EQ(s.add(0x10001, kPage).code(), -EINVAL);
	EXPECT_EQ(s.add(0x10000, 0).code(), -EINVAL);
	EXPECT_EQ(s.add(~uint64_t{0} - kPage + 1, 2 * kPage).code(), -EINVAL);
	EXPECT_EQ(s.segments(), 0u);
	EXPECT_FALSE(s.contains(~uint64_t{0} - 7, 16)); // wraps
	// The top of the address space and ranges across leaves and interior nodes.
	ASSERT_TRUE(s.add(~uint64_t{0} - kPage + 1, kPage).ok());
	EXPECT_TRUE(s.contains(~uint64_t{0} - 7, 8));
	ASSERT_TRUE(s.add((1ull << 39) - 2 * kPage, 4 * kPage).ok());
	EXPECT_TRUE(s.contains((1ull << 39) - 2 * kPage, 4 * kPage));
	EXPECT_FALSE(s.contains((1ull << 39) - 3 * kPage, 1));
	EXPECT_FALSE(s.contains((1ull << 39) + 2 * kPage, 1));
}

TEST(PageSet, OnlyPagesAddedAgainAreCountedOnTheSide)
{
	PageSet s;
	for (uint64_t i = 0; i < 1000; i++)
		ASSERT_TRUE(s.add(0x40000000 + i * kPage, kPage).ok());
	EXPECT_EQ(s.segments(), 0u) << "pages added once are just bits";
	EXPECT_EQ(s.pages(), 1000u);
	// The same pages again, one at a time: one range counted on the side.
	for (uint64_t i = 0; i < 1000; i++)
		ASSERT_TRUE(s.add(0x40000000 + i * kPage, kPage).ok());
	EXPECT_EQ(s.segments(), 1u);
	s.remove(0x40000000 + 500 * kPage, kPage);
	EXPECT_EQ(s.segments(), 2u);
	EXPECT_TRUE(s.contains(0x40000000 + 500 * kPage, kPage));
	ASSERT_TRUE(s.add(0x40000000 + 500 * kPage, kPage).ok());
	EXPECT_EQ(s.segments(), 1u);
	s.remove(0x40000000, 1000 * kPage);
	EXPECT_EQ(s.segments(), 0u);
	EXPECT_EQ(s.pages(), 1000u);
	s.remove(0x40000000, 1000 * kPage);
	EXPECT_EQ(s.pages(), 0u);
	EXPECT_FALSE(s.contains(0x40000000, kPage));
}

/** Runs of pages with the same count above 1: what segments() must be. */
size_t runs(const std::map<uint64_t, unsigned> &count)
{
	size_t n = 0;
	uint64_t prev_page = 0;
	unsigned prev_count = 0;
	for (const auto &[p, c] : count) {
		if (c < 2)
			continue;
		if (prev_count < 2 || p != prev_page + 1 || c != prev_count)
			n++;
		prev_page = p;
		prev_count = c;
	}
	return n;
}

class PageSetModel : public ::testing::TestWithParam<unsigned> {};

TEST_P(PageSetModel, RandomRangesAgreeWithACountPerPage)
{
	std::mt19937_64 rng(GetParam());
	auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
	// Two windows of 96 pages: one across a leaf boundary (128 MiB), one across an
	// interior node's (2^39).
	const uint64_t bases[] = {(1ull << 27) - 48 * kPage, (1ull << 39) - 48 * kPage};
	PageSet s;
	std::map<uint64_t, unsigned> count; // page number -> adds covering it
	std::vector<std::pair<uint64_t, uint64_t>> held; // what was added, to remove later
	for (int step = 0; step < 3000; step++) {
		if (held.empty() || pick(5) < 3) {
			const uint64_t base = bases[pick(2)];
			const uint64_t first = pick(96);
			const uint64_t n = 1 + pick(std::min<uint64_t>(12, 96 - first));
			const uint64_t addr = base + first * kPage;
			ASSERT_TRUE(s.add(addr, n * kPage).ok());
			held.emplace_back(addr, n * kPage);
			for (uint64_t i = 0; i < n; i++)
				count[addr / kPage + i]++;
		} else {
			const size_t k = pick(held.size());
			const auto [addr, len] = held[k];
			held.erase(held.begin() + static_cast<ptrdiff_t>(k));
			s.remove(addr, len);
			for (uint64_t i = 0; i < len / kPage; i++)
				count[addr / kPage + i]--;
		}
		for (uint64_t base : bases)
			for (uint64_t i = 0; i < 96; i++) {
				const uint64_t page = base / kPage + i;
				auto it = count.find(page);
				const bool want = it != count.end() && it->second > 0;
				ASSERT_EQ(s.contains(page * kPage + 8 * pick(512), 8), want)
					<< "step " << step << " page 0x" << std::hex << page;
			}
		ASSERT_EQ(s.segments(), runs(count)) << "step " << step;
		uint64_t in_set = 0;
		for (const auto &[p, c] : count)
			in_set += c > 0;
		ASSERT_EQ(s.pages(), in_set) << "step " << step;
	}
	for (const auto &[addr, len] : held)
		s.remove(addr, len);
	EXPECT_EQ(s.segments(), 0u);
	EXPECT_EQ(s.pages(), 0u);
	for (uint64_t base : bases)
		EXPECT_FALSE(s.contains(base, 96 * kPage));
}

INSTANTIATE_TEST_SUITE_P(Seeds, PageSetModel, ::testing::Values(1u, 2u, 3u));

/*
 * Readers test pages while the writer adds and removes others: a page always in the set
 * always tests present, a page never added never does, and the pages that come and go may
 * test either way (but never crash a reader: nodes appear under it).
 */
TEST(PageSet, ReadersNeverSeeWrongPagesWhileTheWriterWorks)
{
	PageSet s;
	constexpr uint64_t kBase = 1ull << 36;
	constexpr uint64_t kStable = kBase;                 // 64 pages, always there
	constexpr uint64_t kChurn = kBase + 64 * kPage;     // come and go
	constexpr uint64_t kNever = kBase + 4096 * kPage;   // never added
	constexpr uint64_t kFar = (1ull << 44) + 77 * kPage; // its nodes appear mid-run
	ASSERT_TRUE(s.add(kStable, 64 * kPage).ok());
	std::atomic<bool> stop{false};
	std::atomic<uint64_t> wrong{0}, reads{0};
	std::vector<std::thread> readers;
	for (unsigned r = 0; r < 2; r++)
		readers.emplace_back([&, r] {
			uint64_t i = r;
			uint64_t n = 0;
			while (!stop.load(std::memory_order_relaxed)) {
				i = i * 6364136223846793005ull + 1442695040888963407ull;
				const uint64_t page = (i >> 33) % 64;
				if (!s.contains(kStable + page * kPage, 8))
					wrong.fetch_add(1, std::memory_order_relaxed);
				if (s.contains(kNever + page * kPage, 8))
					wrong.fetch_add(1, std::memory_order_relaxed);
				(void)s.contains(kChurn + page * kPage, 8);
				(void)s.contains(kFar, 8);
				if ((++n & 255) == 0)
					reads.fetch_add(256, std::memory_order_relaxed);
			}
		});
	// The readers must really run while the writer works (the machine may be busy).
	while (reads.load(std::memory_order_relaxed) == 0)
		std::this_thread::yield();
	std::mt19937_64 rng(5);
	const uint64_t reads_before = reads.load();
	for (int round = 0; round < 20000 || reads.load(std::memory_order_relaxed) <
						     reads_before + 100000;
	     round++) {
		const uint64_t first = rng() % 64;
		const uint64_t n = 1 + rng() % (64 - first);
		ASSERT_TRUE(s.add(kChurn + first * kPage, n * kPage).ok());
		if (round == 10000) {
			ASSERT_TRUE(s.add(kFar, kPage).ok());
		}
		s.remove(kChurn + first * kPage, n * kPage);
	}
	stop = true;
	for (std::thread &t : readers)
		t.join();
	EXPECT_EQ(wrong.load(), 0u);
	EXPECT_TRUE(s.contains(kFar, kPage));
	EXPECT_FALSE(s.contains(kChurn, 64 * kPage));
}

/* A GuestMemory with identity pages: its regions first, then the set. */
TEST(PageSet, GuestMemoryReadsIdentityPagesBeyondItsRegions)
{
	std::vector<std::byte> region(0x2000);
	alignas(4096) static std::byte page[4096];
	page[8] = std::byte{0x5a};
	GuestMemory m;
	ASSERT_TRUE(m.add_region(0x10000, region.size(), region.data()).ok());
	PageSet s;
	m.set_identity_pages(&s);
	const uint64_t addr = reinterpret_cast<uintptr_t>(page);
	EXPECT_EQ(m.translate(addr, 8), nullptr);
	ASSERT_TRUE(s.add(addr, sizeof(page)).ok());
	EXPECT_EQ(m.translate(addr + 8, 8), page + 8);
	uint64_t v = 0;
	ASSERT_TRUE(m.read_u64(addr + 8, &v));
	EXPECT_EQ(v & 0xff, 0x5au);
	EXPECT_EQ(m.translate(0x10008, 8), region.data() + 8); // regions keep their own host
	s.remove(addr, sizeof(page));
	EXPECT_EQ(m.translate(addr, 8), nullptr);
}

} // namespace
} // namespace iodp
