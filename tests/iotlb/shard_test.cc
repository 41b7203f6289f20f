/* SPDX-License-Identifier: BSD-3-Clause */
/* The IOTLB shard: hits, page sizes, replacement, and each invalidation scope. */
#include <iodp/iotlb.h>

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

namespace iodp::iotlb {
namespace {

using namespace iodp::inval;

constexpr uint64_t kHost = 0x7f0000000000;

/** Every test runs on each lookup kernel: the parameter is the SIMD width allowed. */
struct ShardTest : ::testing::TestWithParam<uint16_t> {
	static ShardConfig config()
	{
		ShardConfig c;
		c.entries = 4096;
		c.max_simd_bitwidth = GetParam();
		return c;
	}
	Shard shard = std::move(*Shard::create(config()));

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

TEST_P(ShardTest, FillThenHitWithOffsetAndPermissions)
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

TEST_P(ShardTest, ContextsAreSeparate)
{
	const uint16_t a = shard.context(5, 0, 1), b = shard.context(5, 0, 2);
	const uint16_t d = shard.context(6, 0, 1);
	EXPECT_EQ(shard.context(5, 0, 1), a) << "handles are stable";
	shard.fill(a, 0x1000, 12, kHost, 1);
	EXPECT_NE(look(a, 0x1000), 0u);
	EXPECT_EQ(look(b, 0x1000), 0u);
	EXPECT_EQ(look(d, 0x1000), 0u);
}

TEST_P(ShardTest, EveryPageSize)
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

TEST_P(ShardTest, RangeFlushDropsOverlapsIncludingBigPagesStartingOutside)
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

TEST_P(ShardTest, LargeRangeFlushesTheWholeContext)
{
	const uint16_t c = shard.context(1, 0, 0), other = shard.context(2, 0, 0);
	shard.fill(c, 0x1000, 12, kHost, 3);
	shard.fill(other, 0x1000, 12, kHost, 3);
	shard.flush_range(c, 0x100000000, 1ull << 40); // far away, but huge
	EXPECT_EQ(look(c, 0x1000), 0u) << "over-invalidation is allowed";
	EXPECT_NE(look(other, 0x1000), 0u) << "other contexts are untouched";
}

TEST_P(ShardTest, ApplyScopes)
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

TEST_P(ShardTest, HotEntriesSurviveAScan)
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

/*
 * lookup_bulk against a reference model: a std::map of every translation filled and not
 * invalidated since. Three contexts take the three lookup paths: 4 KiB pages only and
 * 2 MiB pages only (one size: lookup_run, in chunks), both sizes (probe_one per request).
 * Rounds of fills, refills, single-page and whole-context invalidations, then one bulk
 * lookup of probes in runs of one context. Every hit must be the model's translation
 * (host address with the offset, permissions, size class); everything the model does not
 * hold must miss; and, sized so that nothing is evicted, what it holds must hit.
 */
TEST_P(ShardTest, BulkAgreesWithAReferenceModel)
{
	struct Entry {
		unsigned shift;
		uint64_t host_page;
		uint8_t perm;
	};
	using Key = std::pair<uint16_t, uint64_t>; // (context, page base)
	std::map<Key, Entry> model;
	std::mt19937_64 rng(7);
	const uint16_t small = shard.context(1, 0, 0), big = shard.context(2, 0, 3),
		       mixed = shard.context(3, 5, 0);
	const uint16_t ctxs[] = {small, big, mixed};
	// 4 KiB pages below 2 MiB, 2 MiB pages from 1 GiB: the two sizes never overlap, and
	// about 1200 translations fit the 4096 entries with few evictions.
	constexpr uint64_t kBigBase = 1ull << 30;
	auto random_page = [&](uint16_t c, unsigned *shift) {
		const bool big_page = c == big || (c == mixed && rng() % 3 == 0);
		*shift = big_page ? 21 : 12;
		return big_page ? kBigBase + ((rng() % 64) << 21) : (rng() % 512) << 12;
	};
	/* What the model translates @p iova to in @p c: host address and perm, or 0. */
	auto expect = [&](uint16_t c, uint64_t iova, uint8_t *perm) -> uint64_t {
		for (unsigned shift : {21u, 12u}) {
			auto it = model.find({c, iova & ~((1ull << shift) - 1)});
			if (it != model.end() && it->second.shift == shift) {
				*perm = static_cast<uint8_t>(it->second.perm |
							     (size_class(shift) << 4));
				return it->second.host_page + (iova & ((1ull << shift) - 1));
			}
		}
		*perm = 0;
		return 0;
	};
	size_t hits = 0, present = 0;
	for (int round = 0; round < 40; round++) {
		for (int i = 0; i < 200; i++) {
			const uint16_t c = ctxs[rng() % 3];
			unsigned shift = 0;
			const uint64_t page = random_page(c, &shift);
			const uint64_t host = kHost + ((rng() % 65536) << shift);
			const auto perm = static_cast<uint8_t>(1 + rng() % 7);
			shard.fill(c, page + (rng() & ((1ull << shift) - 1)), shift, host, perm);
			model[{c, page}] = {shift, host, perm}; // a refill replaces
		}
		for (int i = 0; i < 40; i++) { // one page (or one byte of it) at a time
			const uint16_t c = ctxs[rng() % 3];
			unsigned shift = 0;
			const uint64_t page = random_page(c, &shift);
			const uint64_t at = page + (rng() & ((1ull << shift) - 1) & ~0xfffull);
			shard.flush_range(c, at, 4096);
			model.erase({c, page});
		}
		if (round % 10 == 9) {
			const uint16_t c = ctxs[rng() % 3];
			shard.flush_context(c);
			std::erase_if(model, [&](const auto &e) { return e.first.first == c; });
		}
		// Probes in runs of one context (as one device queue's requests are), half of
		// them at pages the model holds, the rest anywhere.
		std::vector<Probe> probes;
		while (probes.size() < 300) {
			const uint16_t c = ctxs[rng() % 3];
			const size_t run = 1 + rng() % 70;
			for (size_t k = 0; k < run; k++) {
				unsigned shift = 0;
				uint64_t page = random_page(c, &shift);
				if (rng() & 1) {
					auto it = model.lower_bound({c, page});
					if (it != model.end() && it->first.first == c) {
						page = it->first.second;
						shift = it->second.shift;
					}
				}
				probes.push_back({page + (rng() & ((1ull << shift) - 1)), c});
			}
		}
		std::vector<uint64_t> host(probes.size());
		std::vector<uint8_t> perm(probes.size());
		const size_t n_hits =
			shard.lookup_bulk(probes.data(), probes.size(), host.data(), perm.data());
		size_t counted = 0;
		for (size_t i = 0; i < probes.size(); i++) {
			uint8_t want_perm = 0;
			const uint64_t want = expect(probes[i].ctx, probes[i].iova, &want_perm);
			present += want != 0;
			if (host[i] == 0) {
				EXPECT_EQ(perm[i], 0) << "a miss reports no permissions";
				continue;
			}
			counted++;
			ASSERT_EQ(host[i], want) << "round " << round << " probe " << i << ": context "
						 << probes[i].ctx << " iova 0x" << std::hex
						 << probes[i].iova;
			ASSERT_EQ(perm[i], want_perm) << "round " << round << " probe " << i;
		}
		EXPECT_EQ(n_hits, counted) << "the returned hit count";
		hits += counted;
	}
	// Sized to fit (about 1200 translations at most, 4096 entries): nothing is evicted,
	// so every probe of a translation the model holds hits, and so does a look-up of
	// every translation it holds at the end.
	ASSERT_EQ(shard.stats().evictions, 0u) << "the test's sizes no longer fit the shard";
	EXPECT_EQ(hits, present);
	ASSERT_FALSE(model.empty());
	for (const auto &[key, e] : model)
		EXPECT_EQ(look(key.first, key.second), e.host_page)
			<< "context " << key.first << " page 0x" << std::hex << key.second;
}

TEST_P(ShardTest, KeysRunningOutClearsOnceAndKeepsWorking)
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

TEST_P(ShardTest, HighAddressesAreNotCached)
{
	const uint16_t c = shard.context(1, 0, 0);
	shard.fill(c, 0xffff800000001000, 12, kHost, 3);
	EXPECT_EQ(look(c, 0xffff800000001000), 0u);
	// In a burst too, beside cached pages: the high address must not match the page its
	// low bits name (the key has no room for bits 63:57), and its neighbours still hit.
	shard.fill(c, 0x1000, 12, kHost, 3);
	std::vector<Probe> probes;
	for (int i = 0; i < 37; i++)
		probes.push_back({i % 5 == 2 ? (1ull << 57) + 0x1008 : 0x1008, c});
	std::vector<uint64_t> host(probes.size());
	std::vector<uint8_t> perm(probes.size());
	EXPECT_EQ(shard.lookup_bulk(probes.data(), probes.size(), host.data(), perm.data()), 30u);
	for (size_t i = 0; i < probes.size(); i++)
		EXPECT_EQ(host[i], i % 5 == 2 ? 0 : kHost + 8) << "probe " << i;
}

TEST_P(ShardTest, NamesItsLookupKernel)
{
	const std::string isa = shard.lookup_isa();
	if (GetParam() == 128)
		EXPECT_EQ(isa, "sse4.2");
	else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2"))
		EXPECT_EQ(isa, "avx2");
	else
		EXPECT_EQ(isa, "sse4.2");
}

INSTANTIATE_TEST_SUITE_P(Kernels, ShardTest, ::testing::Values(uint16_t{0}, uint16_t{128}),
			 [](const ::testing::TestParamInfo<uint16_t> &p) {
				 return p.param == 0 ? std::string("widest")
						     : "simd" + std::to_string(p.param);
			 });

} // namespace
} // namespace iodp::iotlb
