/* SPDX-License-Identifier: BSD-3-Clause */
/* The IOTLB shard: hits, page sizes, replacement, and each invalidation scope. */
#include <iodp/iotlb.h>

#include <gtest/gtest.h>

#include <random>

namespace iodp::iotlb {
namespace {

using namespace iodp::inval;

constexpr uint64_t kHost = 0x7f0000000000;

struct ShardTest : ::testing::Test {
	Shard shard = std::move(*Shard::create({4096}));

	uint64_t look(uint16_t ctx, uint64_t iova, uint8_t *perm = nullptr)
	{
		Probe p{iova, ctx};
		uint64_t host = 0;
		uint8_t pm = 0;
		shard.lookup_bulk(&p, 1, &host, &pm);
		if (perm != nullptr)
			*perm = pm;
		return host;
	}
};

TEST_F(ShardTest, FillThenHitWithOffsetAndPermissions)
{
	const uint16_t c = shard.context(5, 0, 0);
	EXPECT_EQ(look(c, 0x1234), 0u);
	shard.fill(c, 0x1234, 12, kHost + 0x5000, 3);
	uint8_t perm = 0;
	EXPECT_EQ(look(c, 0x1abc, &perm), kHost + 0x5abc);
	EXPECT_EQ(perm & 7, 3);
	EXPECT_EQ(perm >> 4, size_class(12));
	EXPECT_EQ(look(c, 0x2000), 0u);
	EXPECT_EQ(shard.stats().hits, 1u);
	EXPECT_EQ(shard.stats().misses, 2u);
}

TEST_F(ShardTest, ContextsAreSeparate)
{
	const uint16_t a = shard.context(5, 0, 1), b = shard.context(5, 0, 2);
	const uint16_t d = shard.context(6, 0, 1);
	EXPECT_EQ(shard.context(5, 0, 1), a) << "handles are stable";
	shard.fill(a, 0x1000, 12, kHost, 1);
	EXPECT_NE(look(a, 0x1000), 0u);
	EXPECT_EQ(look(b, 0x1000), 0u);
	EXPECT_EQ(look(d, 0x1000), 0u);
}

TEST_F(ShardTest, EveryPageSize)
{
	const uint16_t c = shard.context(1, 0, 0);
	for (unsigned cls = 0; cls < kSizeClasses; cls++) {
		const unsigned shift = kSizeShift[cls];
		const uint64_t iova = (uint64_t{cls} + 1) << 31; // 2 GiB apart, aligned for all
		shard.fill(c, iova + 8, shift, kHost + (uint64_t{cls} << 31), 7);
		const uint64_t last = iova + (1ull << shift) - 1;
		EXPECT_EQ(look(c, last), kHost + (uint64_t{cls} << 31) + (1ull << shift) - 1)
			<< "shift " << shift;
		EXPECT_EQ(look(c, last + 1), 0u) << "shift " << shift;
	}
}

TEST_F(ShardTest, RangeFlushDropsOverlapsIncludingBigPagesStartingOutside)
{
	const uint16_t c = shard.context(1, 0, 0);
	shard.fill(c, 0x200000, 21, kHost, 3);          // 2 MiB page at 0x200000
	shard.fill(c, 0x400000, 12, kHost + 0x400000, 3); // 4 KiB page
	shard.fill(c, 0x401000, 12, kHost + 0x401000, 3);
	// [0x3ff000, 0x400fff]: the top of the 2 MiB page and the first 4 KiB page.
	shard.flush_range(c, 0x3ff000, 0x2000);
	EXPECT_EQ(look(c, 0x200000), 0u) << "a 2 MiB page whose base is outside the range";
	EXPECT_EQ(look(c, 0x400000), 0u);
	EXPECT_NE(look(c, 0x401000), 0u) << "outside the range: kept";
}

TEST_F(ShardTest, LargeRangeFlushesTheWholeContext)
{
	const uint16_t c = shard.context(1, 0, 0), other = shard.context(2, 0, 0);
	shard.fill(c, 0x1000, 12, kHost, 3);
	shard.fill(other, 0x1000, 12, kHost, 3);
	shard.flush_range(c, 0x100000000, 1ull << 40); // far away, but huge
	EXPECT_EQ(look(c, 0x1000), 0u) << "over-invalidation is allowed";
	EXPECT_NE(look(other, 0x1000), 0u) << "other contexts are untouched";
}

TEST_F(ShardTest, ApplyScopes)
{
	const uint16_t d1p1 = shard.context(1, 0, 1), d1p2 = shard.context(1, 0, 2);
	const uint16_t d2p1 = shard.context(2, 0, 1), d3a7 = shard.context(3, 7, 0);
	auto fill_all = [&] {
		for (uint16_t c : {d1p1, d1p2, d2p1, d3a7}) {
			shard.fill(c, 0x1000, 12, kHost, 3);
			shard.fill(c, 0x9000, 12, kHost + 0x9000, 3);
		}
	};
	auto alive = [&](uint16_t c, uint64_t iova) { return look(c, iova) != 0; };

	fill_all();
	Descriptor d;
	d.targets = kTargetIotlb;
	d.match = kMatchDomain | kMatchPasid;
	d.domain = 1;
	d.pasid = 2;
	shard.apply(d);
	EXPECT_TRUE(alive(d1p1, 0x1000));
	EXPECT_FALSE(alive(d1p2, 0x1000));
	EXPECT_FALSE(alive(d1p2, 0x9000));

	fill_all();
	d.match = kMatchDomain | kMatchRange;
	d.domain = 1;
	d.addr = 0x9000;
	d.size = 0x1000;
	shard.apply(d);
	EXPECT_TRUE(alive(d1p1, 0x1000));
	EXPECT_FALSE(alive(d1p1, 0x9000));
	EXPECT_FALSE(alive(d1p2, 0x9000));
	EXPECT_TRUE(alive(d2p1, 0x9000));

	fill_all();
	d.match = kMatchDomain | kMatchAsid;
	d.domain = 3;
	d.asid = 7;
	shard.apply(d);
	EXPECT_FALSE(alive(d3a7, 0x1000));
	EXPECT_TRUE(alive(d2p1, 0x1000));

	fill_all();
	d.match = kMatchDomain | kMatchStage2 | kMatchRange; // IPA range: the whole domain
	d.domain = 2;
	d.addr = 0x40000000;
	d.size = 0x1000;
	shard.apply(d);
	EXPECT_FALSE(alive(d2p1, 0x1000));
	EXPECT_TRUE(alive(d1p1, 0x1000));

	fill_all();
	d.targets = kTargetConfig; // not for leaf entries
	d.match = 0;
	shard.apply(d);
	EXPECT_TRUE(alive(d1p1, 0x1000));
	d.targets = kTargetAll; // global
	shard.apply(d);
	for (uint16_t c : {d1p1, d1p2, d2p1, d3a7})
		EXPECT_FALSE(alive(c, 0x1000));
}

TEST_F(ShardTest, HotEntriesSurviveAScan)
{
	const uint16_t c = shard.context(1, 0, 0);
	// 256 hot pages hit often; a one-off scan of 64 Ki pages streams through.
	for (uint64_t p = 0; p < 256; p++)
		shard.fill(c, p << 12, 12, kHost + (p << 12), 3);
	for (int round = 0; round < 4; round++)
		for (uint64_t p = 0; p < 256; p++)
			(void)look(c, p << 12);
	for (uint64_t p = 0; p < 65536; p++)
		shard.fill(c, (1ull << 32) + (p << 12), 12, kHost, 3);
	int hot_left = 0;
	for (uint64_t p = 0; p < 256; p++)
		hot_left += look(c, p << 12) != 0;
	EXPECT_GT(hot_left, 256 * 6 / 10) << "the scan evicted most of the hot set";
	EXPECT_GT(shard.stats().evictions, 0u);
}

TEST_F(ShardTest, BulkEqualsSingle)
{
	std::mt19937_64 rng(7);
	const uint16_t a = shard.context(1, 0, 0), b = shard.context(2, 0, 3);
	for (int i = 0; i < 2000; i++)
		shard.fill(rng() & 1 ? a : b, (rng() % 4096) << 12, 12, kHost + ((rng() % 4096) << 12),
			   static_cast<uint8_t>(rng() & 7));
	std::vector<Probe> probes(300);
	for (Probe &p : probes)
		p = {(rng() % 4096) << 12 | (rng() & 0xfff), static_cast<uint16_t>(rng() & 1 ? a : b)};
	std::vector<uint64_t> host(probes.size());
	std::vector<uint8_t> perm(probes.size());
	// Single lookups first (they reorder ways, never contents), then the burst.
	std::vector<uint64_t> single(probes.size());
	for (size_t i = 0; i < probes.size(); i++)
		single[i] = look(probes[i].ctx, probes[i].iova);
	shard.lookup_bulk(probes.data(), probes.size(), host.data(), perm.data());
	EXPECT_EQ(host, single);
}

TEST_F(ShardTest, KeysRunningOutClearsOnceAndKeepsWorking)
{
	const uint16_t c = shard.context(1, 0, 0);
	for (int i = 0; i < 70000; i++)
		shard.flush_context(c);
	shard.fill(c, 0x1000, 12, kHost, 3);
	EXPECT_NE(look(c, 0x1000), 0u);
	EXPECT_GE(shard.stats().full_flushes, 1u);
	shard.flush_context(c);
	EXPECT_EQ(look(c, 0x1000), 0u);
}

TEST_F(ShardTest, HighAddressesAreNotCached)
{
	const uint16_t c = shard.context(1, 0, 0);
	shard.fill(c, 0xffff800000001000, 12, kHost, 3);
	EXPECT_EQ(look(c, 0xffff800000001000), 0u);
}

} // namespace
} // namespace iodp::iotlb
