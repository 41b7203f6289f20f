/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The shard's miss path: translate() against plain walks for every kind of route, what a
 * miss costs with the paging-structure and stage-2 caches warm, and each invalidation
 * target and hint (leaf-only, walk cache, config, stage 2) one by one.
 */
#include <iodp/iotlb.h>
#include <iodp/pgtable_builder.h>

#include <gtest/gtest.h>

#include <random>

namespace iodp::iotlb {
namespace {

using namespace iodp::inval;
using namespace iodp::pgtable;

constexpr uint64_t MiB = 1ull << 20, GiB = 1ull << 30;

/*
 * Guest memory: the stage-1 table pool, then the stage-2 pool. Nested: stage 1's tables
 * sit at kS1Ipa, which stage 2 maps onto the pool with 4 KiB pages (so the stage-2 walk of
 * a table fetch is real), and stage-1 outputs [kOutIpa, +1 GiB) map to kOutPa in 2 MiB
 * blocks.
 */
constexpr uint64_t kMemGpa = 0x40000000, kPoolBytes = 16 * MiB;
constexpr uint64_t kS1Ipa = 0x80000000, kOutIpa = 4 * GiB, kOutPa = 16 * GiB;
constexpr uint32_t kDevice = 7;

struct RouteSetup {
	const char *name;
	TableConfig s1;
	std::optional<TableConfig> s2;
};

class TranslateTest : public ::testing::TestWithParam<RouteSetup> {
protected:
	void SetUp() override
	{
		const RouteSetup &p = GetParam();
		Result<GuestRam> r = GuestRam::allocate(2 * kPoolBytes, GuestRam::Source::anonymous);
		ASSERT_TRUE(r.ok());
		ram = std::move(*r);
		ASSERT_TRUE(mem.add_region(kMemGpa, 2 * kPoolBytes, ram.data()).ok());
		if (p.s2) {
			s2_pool = TablePool(kMemGpa + kPoolBytes, ram.data() + kPoolBytes, kPoolBytes,
					    1ull << p.s2->granule_shift);
			s2 = std::move(*TableBuilder::create(*p.s2, &s2_pool));
			s2.set_max_leaf(1ull << p.s2->granule_shift);
			ASSERT_TRUE(s2.map(kS1Ipa, kMemGpa, kPoolBytes, kMapRead | kMapWrite).ok());
			s2.set_max_leaf(0);
			ASSERT_TRUE(s2.map(kOutIpa, kOutPa, GiB, kMapRead | kMapWrite | kMapExec).ok());
			s1_pool = TablePool(kS1Ipa, ram.data(), kPoolBytes, 1ull << p.s1.granule_shift);
		} else {
			s1_pool = TablePool(kMemGpa, ram.data(), kPoolBytes, 1ull << p.s1.granule_shift);
		}
		s1 = std::move(*TableBuilder::create(p.s1, &s1_pool));
		shard = std::move(*Shard::create({4096, 512, 16}));
		view.store(&mem);
		route = make_route();
	}

	bool nested() const { return GetParam().s2.has_value(); }
	/** User (unprivileged) access: a stage-1 attribute only. */
	uint8_t user() const { return format_stage(GetParam().s1.format) == 1 ? kMapUser : 0; }
	uint64_t granule() const { return 1ull << GetParam().s1.granule_shift; }
	/** Where stage 1 maps to: an IPA when nested, any address otherwise. */
	uint64_t out_base() const { return nested() ? kOutIpa : 0x7f0000000000; }

	Route make_route()
	{
		Route rt;
		rt.blocked = FaultKind::none;
		rt.s1 = *make_stage(s1.config());
		if (nested())
			rt.s2 = *make_stage(s2.config());
		rt.mem = &view;
		rt.domain = 5;
		rt.asid = nested() ? 1 : kStage2Asid;
		rt.pasid = kNoPasid;
		rt.s2_domain = nested() ? 9 : kNoDomain;
		rt.hwpt = 5;
		return rt;
	}
	Translation xlat() const
	{
		const TableConfig c1 = s1.config(), c2 = nested() ? s2.config() : TableConfig{};
		return *make_translation(mem, c1, nested() ? &c2 : nullptr);
	}
	const CachedRoute &cached()
	{
		const CachedRoute *r = shard.route_lookup(kDevice, kNoPasid);
		if (r == nullptr)
			r = shard.route_fill(kDevice, kNoPasid, route);
		return *r;
	}
	WalkResult one(uint64_t iova, uint8_t access = kAccessRead)
	{
		Query q{iova, access};
		WalkResult r;
		shard.translate(cached(), &q, 1, &r);
		return r;
	}
	/** What a plain walk gives, in the fields translate() promises to match. */
	static void expect_same(const WalkResult &got, const WalkResult &want, uint64_t iova)
	{
		EXPECT_EQ(got.fault, want.fault) << std::hex << "0x" << iova;
		EXPECT_EQ(got.out, want.out) << std::hex << "0x" << iova;
		EXPECT_EQ(got.page_size, want.page_size) << std::hex << "0x" << iova;
		EXPECT_EQ(got.perm, want.perm) << std::hex << "0x" << iova;
		EXPECT_EQ(got.stage, want.stage) << std::hex << "0x" << iova;
		EXPECT_EQ(got.level, want.level) << std::hex << "0x" << iova;
	}
	Descriptor range(uint64_t addr, uint64_t size, bool leaf_only)
	{
		Descriptor d;
		d.targets = kTargetIotlb | kTargetWalkCache;
		d.match = kMatchDomain | kMatchRange;
		d.domain = 5;
		d.addr = addr;
		d.size = size;
		d.leaf_only = leaf_only;
		return d;
	}

	GuestRam ram;
	GuestMemory mem;
	std::atomic<const GuestMemory *> view{nullptr};
	TablePool s1_pool, s2_pool;
	TableBuilder s1, s2;
	Shard shard;
	Route route;
};

TEST_P(TranslateTest, AgreesWithWalksColdAndWarm)
{
	std::mt19937_64 rng(42);
	const uint64_t g = granule(), base = 0x10000000;
	// 4 KiB..64 KiB pages, a few blocks, some read-only, holes between.
	for (uint64_t i = 0; i < 512; i += 2) {
		const Status st = s1.map(base + i * g, out_base() + i * g, g,
				   kMapRead | ((i % 6) ? kMapWrite : 0) | user());
		ASSERT_TRUE(st.ok()) << st.message();
	}
	const uint64_t block = 1ull << make_stage(s1.config())->shift(1);
	const Status mapped = s1.map(base + 2 * block, out_base() + 2 * block, block,
				   kMapRead | kMapWrite | user());
	ASSERT_TRUE(mapped.ok()) << mapped.message();
	std::vector<Query> reqs;
	for (int i = 0; i < 2000; i++) {
		const uint64_t iova = rng() % 4 ? base + rng() % (512 * g)
					      : base + 2 * block + rng() % block;
		const uint8_t access = static_cast<uint8_t>((rng() % 2 ? kAccessWrite : kAccessRead) |
							    (rng() % 8 == 0 ? kAccessPriv : 0));
		reqs.push_back({iova, access});
	}
	const Translation x = xlat();
	std::vector<WalkResult> got(reqs.size());
	for (int pass = 0; pass < 2; pass++) {
		shard.translate(cached(), reqs.data(), reqs.size(), got.data());
		for (size_t i = 0; i < reqs.size(); i++)
			expect_same(got[i], walk(x, reqs[i].iova, reqs[i].access), reqs[i].iova);
	}
	const ShardStats &st = shard.stats();
	EXPECT_GT(st.hits, 1000u);
	EXPECT_GT(st.walk_cache_hits, 100u);
	if (nested()) {
		EXPECT_GT(st.s2_hits, 100u);
	}
}

TEST_P(TranslateTest, AMissCostsOneReadOnceTheTablesAreCached)
{
	const uint64_t g = granule(), base = 0x20000000;
	ASSERT_TRUE(s1.map(base, out_base(), 16 * g, kMapRead | kMapWrite | user()).ok());
	const WalkResult cold = one(base);
	ASSERT_TRUE(cold.ok());
	const int levels = make_stage(s1.config())->start_height + 1;
	if (!nested()) {
		EXPECT_EQ(cold.reads, levels);
	} else {
		EXPECT_GT(cold.reads, levels * 2); // stage-2 walks for every stage-1 table
	}
	// Another page under the same leaf table: one stage-1 read; stage 2 answers from its
	// cache (the output block is already there).
	const WalkResult warm = one(base + 5 * g);
	ASSERT_TRUE(warm.ok());
	EXPECT_EQ(warm.reads, 1);
	EXPECT_EQ(warm.out, (nested() ? kOutPa : out_base()) + 5 * g);
	// And the page itself now hits: no reads at all.
	EXPECT_EQ(one(base + 5 * g).reads, 0);
}

TEST_P(TranslateTest, LeafOnlyKeepsTablesAndFullRangeDropsThem)
{
	const uint64_t g = granule(), base = 0x20000000;
	ASSERT_TRUE(s1.map(base, out_base(), 16 * g, kMapRead | kMapWrite | user()).ok());
	ASSERT_TRUE(one(base).ok());
	ASSERT_TRUE(one(base + g).ok());

	shard.apply(range(base + g, g, true));
	EXPECT_EQ(one(base).reads, 0) << "outside the range: still cached";
	EXPECT_EQ(one(base + g).reads, 1) << "leaf dropped, its table kept";

	shard.apply(range(base + g, g, false));
	const WalkResult again = one(base + g);
	EXPECT_GT(again.reads, 1) << "the table entries went too";
	EXPECT_TRUE(again.ok());
}

TEST_P(TranslateTest, ARangeDropsABlockWhoseBaseIsOutsideIt)
{
	const uint64_t block = 1ull << make_stage(s1.config())->shift(1), base = 4 * block;
	ASSERT_TRUE(s1.map(base, out_base() + block, block, kMapRead | kMapWrite | user()).ok());
	ASSERT_TRUE(one(base + block / 2).ok());
	ASSERT_EQ(one(base + block / 2).reads, 0);
	// Remap the block elsewhere; invalidate one granule in its middle.
	uint64_t unmapped = 0;
	ASSERT_TRUE(s1.unmap(base, block, &unmapped).ok());
	ASSERT_TRUE(s1.map(base, out_base() + 2 * block, block, kMapRead | user()).ok());
	EXPECT_EQ(one(base + 8).out, (nested() ? kOutPa : out_base()) + block + 8)
		<< "stale until invalidated (the cache does cache)";
	shard.apply(range(base + block / 2, granule(), false));
	EXPECT_EQ(one(base + 8).out, (nested() ? kOutPa : out_base()) + 2 * block + 8);
}

TEST_P(TranslateTest, ConfigInvalidationDropsRoutesItNames)
{
	ASSERT_NE(shard.route_fill(kDevice, kNoPasid, route), nullptr);
	ASSERT_NE(shard.route_fill(kDevice, 3, route), nullptr);
	ASSERT_NE(shard.route_fill(kDevice + 1, 3, route), nullptr);
	Descriptor d;
	d.targets = kTargetIotlb; // leaf targets leave routes alone
	d.match = kMatchDevice;
	d.device = kDevice;
	shard.apply(d);
	EXPECT_NE(shard.route_lookup(kDevice, 3), nullptr);

	d.targets = kTargetConfig;
	d.match = kMatchDevice | kMatchPasid; // a PASID-cache invalidation
	d.pasid = 3;
	shard.apply(d);
	EXPECT_EQ(shard.route_lookup(kDevice, 3), nullptr);
	EXPECT_NE(shard.route_lookup(kDevice, kNoPasid), nullptr);
	EXPECT_NE(shard.route_lookup(kDevice + 1, 3), nullptr);

	d.match = kMatchDomain; // by the HWPT behind the routes
	d.domain = route.hwpt;
	shard.apply(d);
	EXPECT_EQ(shard.route_lookup(kDevice, kNoPasid), nullptr);
	EXPECT_EQ(shard.route_lookup(kDevice + 1, 3), nullptr);
	EXPECT_EQ(shard.stats().route_flushes, 3u);
}

TEST_P(TranslateTest, BlockedRoutesAndPrivilegeChecksFault)
{
	Route blocked;
	blocked.blocked = FaultKind::not_attached;
	const CachedRoute *r = shard.route_fill(kDevice, 1, blocked);
	Query q{0x1000, kAccessRead};
	WalkResult res;
	shard.translate(*r, &q, 1, &res);
	EXPECT_EQ(res.fault, FaultKind::not_attached);

	Route no_sre = route;
	no_sre.priv_faults = true;
	ASSERT_TRUE(s1.map(granule(), out_base(), granule(), kMapRead | user()).ok());
	r = shard.route_fill(kDevice, 2, no_sre);
	q = {granule(), kAccessRead | kAccessPriv};
	shard.translate(*r, &q, 1, &res);
	EXPECT_EQ(res.fault, FaultKind::permission);
	EXPECT_EQ(res.stage, 1);
}

/** Setups with a stage 2. */
class NestedTranslateTest : public TranslateTest {};
/** Setups whose formats have a dirty bit. */
class DirtyTranslateTest : public TranslateTest {};

TEST_P(NestedTranslateTest, StageTwoChangesNeedAStageTwoInvalidation)
{
	ASSERT_TRUE(nested());
	const uint64_t base = 0x30000000;
	ASSERT_TRUE(s1.map(base, kOutIpa, granule(), kMapRead | kMapWrite | user()).ok());
	ASSERT_EQ(one(base).out, kOutPa);
	// Move the output block's stage-2 mapping.
	const uint64_t s2_block = 1ull << make_stage(s2.config())->shift(1);
	uint64_t unmapped = 0;
	ASSERT_TRUE(s2.unmap(kOutIpa, s2_block, &unmapped).ok());
	ASSERT_TRUE(s2.map(kOutIpa, kOutPa + 64 * s2_block, s2_block, kMapRead | kMapWrite).ok());
	EXPECT_EQ(one(base).out, kOutPa) << "stale until invalidated";
	Descriptor d;
	d.targets = kTargetIotlb | kTargetWalkCache;
	d.match = kMatchDomain | kMatchStage2 | kMatchRange;
	d.domain = 9;
	d.addr = kOutIpa;
	d.size = granule();
	shard.apply(d);
	EXPECT_EQ(one(base).out, kOutPa + 64 * s2_block);
}

TEST_P(DirtyTranslateTest, DirtyTrackingWalksTheFirstWriteAfterARead)
{
	ASSERT_TRUE(s1.tracks_dirty());
	route.s1.update_accessed = true;
	const uint64_t base = 0x30000000;
	ASSERT_TRUE(s1.map(base, out_base(), granule(), kMapRead | kMapWrite | user()).ok());
	ASSERT_TRUE(one(base, kAccessRead).ok());
	EXPECT_EQ(one(base, kAccessRead).reads, 0);
	const WalkResult w = one(base, kAccessWrite);
	ASSERT_TRUE(w.ok());
	EXPECT_GT(w.reads, 0) << "a read-filled entry must not absorb the write";
	int dirty = 0;
	ASSERT_TRUE(s1.harvest_dirty(base, granule(), false, [&](uint64_t, uint64_t) { dirty++; })
			    .ok());
	EXPECT_EQ(dirty, 1);
	// Clearing dirty bits invalidates (lib/ctl does): the next write walks and marks again.
	shard.apply(range(base, granule(), true));
	EXPECT_GT(one(base, kAccessWrite).reads, 0);
	dirty = 0;
	ASSERT_TRUE(s1.harvest_dirty(base, granule(), false, [&](uint64_t, uint64_t) { dirty++; })
			    .ok());
	EXPECT_EQ(dirty, 1);
}

const RouteSetup kSetups[] = {
	{"x86_64_4l", table_config(Format::x86_64_4l), {}},
	{"vtd_ss_4l", table_config(Format::vtd_ss_4l), {}},
	{"arm_s1_4k", table_config(Format::arm_s1, 0, 12), {}},
	{"arm_s1_64k", table_config(Format::arm_s1, 0, 16), {}},
	{"arm_s2_16k", table_config(Format::arm_s2, 0, 14, 42, 1), {}},
	{"nested_x86_vtd", table_config(Format::x86_64_4l), table_config(Format::vtd_ss_4l)},
	{"nested_arm_4k", table_config(Format::arm_s1, 0, 12),
	 table_config(Format::arm_s2, 0, 12, 40, 1)},
};

std::string setup_name(const ::testing::TestParamInfo<RouteSetup> &info)
{
	return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Routes, TranslateTest, ::testing::ValuesIn(kSetups), setup_name);
INSTANTIATE_TEST_SUITE_P(Routes, NestedTranslateTest,
			 ::testing::Values(kSetups[5], kSetups[6]), setup_name);
INSTANTIATE_TEST_SUITE_P(Routes, DirtyTranslateTest,
			 ::testing::Values(kSetups[0], kSetups[1], kSetups[5]), setup_name);

} // namespace
} // namespace iodp::iotlb
