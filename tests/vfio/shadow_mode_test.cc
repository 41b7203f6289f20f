/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shadow mode against a stand-in kernel with type1's rules (no overlapping maps, unmaps of
 * whole mappings, a limit on how many): a nested HWPT (a VT-d first stage built in guest
 * RAM over a NEST_PARENT paging HWPT) observed by a ShadowMode. After each guest
 * invalidation (Ctx::hwpt_invalidate) and each stage-2 change, the kernel translates every
 * page exactly as iodp's translate() does, and only what the invalidation named was walked.
 */
#include "../ctl/ctl_fixture.h"

#include <iodp/iodp.h>
#include <iodp/pgtable_builder.h>
#include <iodp/shadow_mode.h>

#include <cerrno>
#include <map>
#include <random>
#include <vector>

namespace iodp::vfio {
namespace {

using namespace ctl;
using namespace ctl::test;

constexpr uint64_t KiB = 1024, MiB = KiB * KiB;
constexpr uint64_t kGpa = 0x40000000;   ///< guest RAM's guest-physical base
constexpr uint64_t kRam = 16 * MiB;     ///< data in the low half, tables in the high
constexpr uint64_t kWindow = 0x100000;  ///< guest IOVAs the tests map
constexpr uint64_t kWindowLen = 8 * MiB;
constexpr uint8_t kRWU = pgtable::kMapRead | pgtable::kMapWrite | pgtable::kMapUser;

/** The kernel: type1's rules, every call recorded. */
class FakeKernel : public IoasMirror {
public:
	struct Map {
		uint64_t size, host;
		uint32_t flags;
	};
	std::string name() const override { return "fake type1 container"; }
	std::vector<IovaRange> ranges() const override { return {{0, UINT64_MAX}}; }

	Status map(const Mapping &m) override
	{
		const uint64_t host = reinterpret_cast<uintptr_t>(m.host);
		if (m.length == 0 || ((m.iova | host | m.length) & 4095))
			return Status::error(-EINVAL, "VFIO_IOMMU_MAP_DMA: unaligned");
		auto it = maps.lower_bound(m.iova);
		if ((it != maps.end() && it->first < m.iova + m.length) ||
		    (it != maps.begin() && std::prev(it)->first + std::prev(it)->second.size > m.iova))
			return Status::error(-EEXIST, "VFIO_IOMMU_MAP_DMA: overlaps");
		if (maps.size() >= limit)
			return Status::error(-ENOSPC, "VFIO_IOMMU_MAP_DMA failed: the type1 container "
					     "is full (dma_avail 0)");
		maps[m.iova] = {m.length, host, m.flags};
		map_calls++;
		return {};
	}

	Status unmap(const Mapping &m) override
	{
		auto it = maps.find(m.iova);
		uint64_t at = m.iova;
		auto end = it;
		while (end != maps.end() && at < m.iova + m.length && end->first == at) {
			at += end->second.size;
			++end;
		}
		if (it == maps.end() || at != m.iova + m.length)
			return Status::error(-EINVAL, "VFIO_IOMMU_UNMAP_DMA: not whole mappings");
		maps.erase(it, end);
		unmap_calls++;
		return {};
	}

	/** What the kernel's IOMMU does with a read of @p iova: the host address, or none. */
	std::optional<uint64_t> lookup(uint64_t iova, bool write) const
	{
		auto it = maps.upper_bound(iova);
		if (it == maps.begin())
			return std::nullopt;
		--it;
		if (iova >= it->first + it->second.size)
			return std::nullopt;
		if (write && !(it->second.flags & IODP_IOAS_MAP_WRITEABLE))
			return std::nullopt;
		return it->second.host + (iova - it->first);
	}

	std::map<uint64_t, Map> maps;
	size_t limit = 65535;
	uint64_t map_calls = 0, unmap_calls = 0;
};

struct ShadowModeTest : ::testing::Test {
	Ctx ctx;
	HostBuffer ram{kRam};
	pgtable::TablePool pool{kGpa + kRam / 2, ram.at(kRam / 2), kRam / 2, 4096};
	pgtable::TableBuilder s1;
	FakeKernel kernel;
	ShadowMode mode{"vfio test (shadow)", kernel, "/nonexistent"};
	uint32_t ioas = 0, dev = 0, parent = 0, nested = 0;

	void SetUp() override
	{
		ioas = ok(ctx.ioas_alloc());
		// Two stage-2 mappings: data (the low half) and tables (the high half).
		ok(ctx.ioas_map(ioas, kFixedRW, kGpa, ram.data(), kRam / 2).status());
		ok(ctx.ioas_map(ioas, kFixedRW, kGpa + kRam / 2, ram.at(kRam / 2), kRam / 2)
			   .status());
		s1 = ok(pgtable::TableBuilder::create(pgtable::table_config(pgtable::Format::x86_64_4l),
						      &pool));
		dev = ok(ctx.device_create(vtd_device("vfio0")));
		parent = ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0));
		nested = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, VtdS1Data{0, s1.root(), 48}));
		ok(ctx.device_attach(dev, std::nullopt, nested).status());
	}
	void TearDown() override { (void)ctx.hwpt_detach_observer(nested, &mode); }

	void attach() { ASSERT_TRUE(ctx.hwpt_attach_observer(nested, &mode).ok()); }

	/** One IOMMU_HWPT_INVALIDATE call of VTD_S1 entries (addr, npages). */
	Status invalidate(std::vector<std::pair<uint64_t, uint64_t>> ranges, uint32_t flags = 0)
	{
		std::vector<iodp_hwpt_vtd_s1_invalidate> e;
		for (auto [addr, npages] : ranges)
			e.push_back({addr, npages, flags, 0});
		uint32_t handled = 0;
		return ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_S1, e.data(),
					   sizeof(e[0]), static_cast<uint32_t>(e.size()), &handled);
	}
	Status invalidate_all() { return invalidate({{0, UINT64_MAX}}); }

	/** Every page of the window: the kernel does what iodp's translate() says, both ways. */
	void expect_agree(const char *when)
	{
		SCOPED_TRACE(when);
		int bad = 0;
		for (uint64_t iova = kWindow; iova < kWindow + kWindowLen && bad < 5;
		     iova += 4096) {
			for (bool write : {false, true}) {
				const Translated t = ok(ctx.translate(
					dev, std::nullopt, iova + 8,
					write ? pgtable::kAccessWrite : pgtable::kAccessRead));
				const std::optional<uint64_t> k = kernel.lookup(iova + 8, write);
				const bool same = t.fault == pgtable::FaultKind::none ? k && *k == t.host : !k;
				if (!same) {
					bad++;
					ADD_FAILURE() << std::hex << "iova 0x" << iova
						      << (write ? " write" : " read") << ": iodp "
						      << (t.fault != pgtable::FaultKind::none ? "faults" : "-> 0x") << t.host
						      << ", kernel "
						      << (k ? "-> 0x" : "faults") << (k ? *k : 0);
				}
			}
		}
	}
};

TEST_F(ShadowModeTest, AttachShadowsWhatTheGuestMappedCoalesced)
{
	// 64 contiguous pages and 3 scattered ones, mapped before the attach.
	ASSERT_TRUE(s1.map(kWindow, kGpa + 0x200000, 64 * 4096, kRWU).ok());
	for (uint64_t i = 0; i < 3; i++)
		ASSERT_TRUE(s1.map(kWindow + 0x400000 + i * 0x10000, kGpa + 0x300000 + i * 0x3000,
				   4096, pgtable::kMapRead | pgtable::kMapUser).ok());
	attach();
	EXPECT_EQ(kernel.map_calls, 4u) << "one call per contiguous run";
	expect_agree("after attach");
	// A destroy of an observed HWPT says who holds it.
	Status s = ctx.destroy(nested);
	EXPECT_EQ(s.code(), -EBUSY);
}

TEST_F(ShadowModeTest, PageInvalidationReshadowsOnlyItsRange)
{
	attach();
	ASSERT_TRUE(s1.map(kWindow, kGpa + 0x1000, 4096, kRWU).ok());
	ASSERT_TRUE(s1.map(kWindow + 0x100000, kGpa + 0x2000, 4096, kRWU).ok());
	// Only the first page is invalidated: only it reaches the kernel.
	ASSERT_TRUE(invalidate({{kWindow, 1}}).ok());
	EXPECT_TRUE(kernel.lookup(kWindow, false).has_value());
	EXPECT_FALSE(kernel.lookup(kWindow + 0x100000, false).has_value())
		<< "a page no invalidation named is not walked";
	EXPECT_EQ(kernel.map_calls, 1u);
	ASSERT_TRUE(invalidate({{kWindow + 0x100000, 1}}, IODP_VTD_INV_FLAGS_LEAF).ok());
	expect_agree("after both invalidations");

	// Unmap + page invalidation: blocked. Retarget + page invalidation: the new page.
	ASSERT_TRUE(s1.unmap(kWindow, 4096).ok());
	ASSERT_TRUE(invalidate({{kWindow, 1}}).ok());
	EXPECT_FALSE(kernel.lookup(kWindow, false).has_value());
	ASSERT_TRUE(s1.unmap(kWindow + 0x100000, 4096).ok());
	ASSERT_TRUE(s1.map(kWindow + 0x100000, kGpa + 0x5000, 4096, kRWU).ok());
	ASSERT_TRUE(invalidate({{kWindow + 0x100000, 1}}).ok());
	EXPECT_EQ(kernel.lookup(kWindow + 0x100000, true), ram.addr(0x5000));
	expect_agree("after unmap and retarget");
	EXPECT_EQ(mode.shadow().stats().syncs, 4u + 2u) << "4 invalidations; attach: 2 (canonical halves)";
}

TEST_F(ShadowModeTest, OneCallWithManyEntriesIsOneWalkPerMergedRange)
{
	attach();
	std::vector<std::pair<uint64_t, uint64_t>> entries;
	for (uint64_t i = 0; i < 16; i++) {
		ASSERT_TRUE(s1.map(kWindow + i * 4096, kGpa + i * 4096, 4096, kRWU).ok());
		entries.push_back({kWindow + i * 4096, 1});
	}
	const uint64_t syncs = mode.shadow().stats().syncs;
	ASSERT_TRUE(invalidate(entries).ok());
	EXPECT_EQ(mode.shadow().stats().syncs, syncs + 1) << "16 adjacent entries, one range";
	EXPECT_EQ(kernel.map_calls, 1u) << "and one kernel call";
	expect_agree("after the batch");
}

TEST_F(ShadowModeTest, DomainWideInvalidationRewalksEverything)
{
	attach();
	std::mt19937_64 rng(15);
	for (int i = 0; i < 200; i++) {
		const uint64_t page = rng() % (kWindowLen / 4096);
		(void)s1.map(kWindow + page * 4096, kGpa + (rng() % 2048) * 4096, 4096,
			     (rng() & 1) ? kRWU : pgtable::kMapRead | pgtable::kMapUser);
	}
	ASSERT_TRUE(invalidate_all().ok());
	expect_agree("after a domain-wide invalidation");
	// A stage-2 range invalidation (SMMU-style) or a PASID-wide one: whole scope too.
	ASSERT_TRUE(s1.unmap(kWindow, kWindowLen).ok());
	ASSERT_TRUE(invalidate_all().ok());
	EXPECT_TRUE(kernel.maps.empty());
}

TEST_F(ShadowModeTest, RandomChurnAgreesAfterEveryInvalidation)
{
	attach();
	std::mt19937_64 rng(42);
	for (int op = 0; op < 300; op++) {
		const uint64_t pages = 1 + rng() % 32;
		const uint64_t iova = kWindow + (rng() % (kWindowLen / 4096 - pages)) * 4096;
		if (rng() % 3 == 0) {
			(void)s1.unmap(iova, pages * 4096);
		} else {
			(void)s1.unmap(iova, pages * 4096);
			ASSERT_TRUE(s1.map(iova, kGpa + (rng() % 1024) * 4096, pages * 4096,
					   (rng() & 1) ? kRWU : pgtable::kMapRead | pgtable::kMapUser)
					    .ok());
		}
		ASSERT_TRUE(invalidate({{iova, pages}}).ok());
		if (op % 50 == 0)
			expect_agree("during churn");
	}
	expect_agree("after churn");
	EXPECT_FALSE(mode.degraded());
}

TEST_F(ShadowModeTest, StageTwoUnmapDropsWhatReachedItAndAMapBringsItBack)
{
	// Guest IOVAs reach the data half of guest RAM at +1 MiB.
	ASSERT_TRUE(s1.map(kWindow, kGpa + MiB, 256 * 4096, kRWU).ok());
	attach();
	ASSERT_EQ(kernel.maps.size(), 1u);
	// The VMM takes the data half of guest RAM away from the IOAS.
	ASSERT_TRUE(ctx.ioas_unmap(ioas, kGpa, kRam / 2).ok());
	EXPECT_TRUE(kernel.maps.empty()) << "nothing reaches host memory the IOAS gave up";
	expect_agree("after the stage-2 unmap");
	// And gives it back: the shadow follows without a guest invalidation.
	ok(ctx.ioas_map(ioas, kFixedRW, kGpa, ram.data(), kRam / 2).status());
	EXPECT_EQ(kernel.maps.size(), 1u);
	expect_agree("after the stage-2 map");
}

TEST_F(ShadowModeTest, AFullContainerFailsWithTheNumbersAndTheDeviceIsDegraded)
{
	attach();
	for (uint64_t i = 0; i < 32; i++) // scattered: nothing coalesces
		ASSERT_TRUE(s1.map(kWindow + i * 8192, kGpa + i * 8192, 4096, kRWU).ok());
	kernel.limit = 20;
	Status s = invalidate({{kWindow, 64}});
	ASSERT_EQ(s.code(), -ENOSPC) << s.message();
	EXPECT_NE(s.message().find("dma_avail 0"), std::string::npos) << s.message();
	EXPECT_NE(s.message().find("20 mapping(s)"), std::string::npos) << s.message();
	EXPECT_NE(s.message().find("degraded"), std::string::npos) << s.message();
	EXPECT_TRUE(mode.degraded());
	// Another range syncing fine does not make the stale one right.
	ASSERT_TRUE(invalidate({{kWindow + 0x200000, 1}}).ok());
	EXPECT_TRUE(mode.degraded());
	kernel.limit = 64;
	ASSERT_TRUE(invalidate({{kWindow, 64}}).ok());
	EXPECT_FALSE(mode.degraded());
	expect_agree("after recovering");
}

TEST_F(ShadowModeTest, BadEntryStillShadowsTheEntriesBeforeIt)
{
	attach();
	ASSERT_TRUE(s1.map(kWindow, kGpa, 4096, kRWU).ok());
	iodp_hwpt_vtd_s1_invalidate e[2] = {{kWindow, 1, 0, 0}, {kWindow + 1, 1, 0, 0}};
	uint32_t handled = 0;
	Status s = ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_S1, e, sizeof(e[0]),
				       2, &handled);
	EXPECT_EQ(s.code(), -EINVAL) << "entry 1 is misaligned";
	EXPECT_EQ(handled, 1u);
	EXPECT_TRUE(kernel.lookup(kWindow, false).has_value()) << "entry 0 took effect";
}

TEST_F(ShadowModeTest, ObserverAttachChecks)
{
	EXPECT_EQ(ctx.hwpt_attach_observer(parent, &mode).code(), -EINVAL);
	EXPECT_EQ(ctx.hwpt_attach_observer(nested, nullptr).code(), -EINVAL);
	EXPECT_EQ(ctx.hwpt_detach_observer(nested, &mode).code(), -ENOENT);
	attach();
	EXPECT_EQ(ctx.hwpt_attach_observer(nested, &mode).code(), -EEXIST);
	// A failing first view attaches nothing.
	FakeKernel full;
	full.limit = 0;
	ShadowMode other("other", full, "/nonexistent");
	ASSERT_TRUE(s1.map(kWindow, kGpa, 4096, kRWU).ok());
	EXPECT_EQ(ctx.hwpt_attach_observer(nested, &other).code(), -ENOSPC);
	EXPECT_EQ(ctx.hwpt_detach_observer(nested, &other).code(), -ENOENT);
}

/** SMMUv3: STE -> CD 0 -> an Arm stage 1 over the parent's stage 2, invalidated by commands. */
struct SmmuShadowTest : ::testing::Test {
	Ctx ctx;
	HostBuffer ram{kRam};
	pgtable::TablePool pool{kGpa + kRam / 2, ram.at(kRam / 2), kRam / 2, 4096};
	pgtable::TableBuilder s1;
	FakeKernel kernel;
	ShadowMode mode{"vfio test (smmu shadow)", kernel, "/nonexistent"};
	uint32_t ioas = 0, dev = 0, nested = 0;
	static constexpr uint64_t kCd = kGpa + kRam / 2 - 4096; ///< the CD table (one CD)
	static constexpr uint16_t kAsid = 9;

	void SetUp() override
	{
		ioas = ok(ctx.ioas_alloc());
		ok(ctx.ioas_map(ioas, kFixedRW, kGpa, ram.data(), kRam).status());
		s1 = ok(pgtable::TableBuilder::create(pgtable::table_config(pgtable::Format::arm_s1),
						      &pool));
		const uint64_t cd0 = 16 /* T0SZ: 48-bit */ | (1ull << 31) /* V */ |
				     (1ull << 41) /* AA64 */ | (uint64_t{kAsid} << 48);
		GuestMemory::store_le64(ram.at(kCd - kGpa), cd0);
		GuestMemory::store_le64(ram.at(kCd - kGpa + 8), s1.root());
		dev = ok(ctx.device_create(smmu_device("vfio-smmu0")));
		const uint32_t parent =
			ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0));
		// STE: valid, config 5 (stage 1 translate), S1ContextPtr, S1CDMax 0.
		nested = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, SmmuV3Data{{1 | (5ull << 1) | kCd, 0}}));
		ok(ctx.device_attach(dev, std::nullopt, nested).status());
		ASSERT_TRUE(ctx.hwpt_attach_observer(nested, &mode).ok());
	}
	void TearDown() override { (void)ctx.hwpt_detach_observer(nested, &mode); }

	Status command(uint64_t w0, uint64_t w1)
	{
		iodp_hwpt_arm_smmuv3_invalidate c{{w0, w1}};
		uint32_t handled = 0;
		return ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_ARM_SMMUV3, &c,
					   sizeof(c), 1, &handled);
	}
	bool kernel_agrees(uint64_t iova)
	{
		const Translated t = ok(ctx.translate(dev, std::nullopt, iova, pgtable::kAccessRead));
		const std::optional<uint64_t> k = kernel.lookup(iova, false);
		return t.fault == pgtable::FaultKind::none ? k && *k == t.host : !k;
	}
};

TEST_F(SmmuShadowTest, CommandsReshadowWhatTheyName)
{
	ASSERT_TRUE(s1.map(kWindow, kGpa + 0x10000, 4096, kRWU).ok());
	ASSERT_TRUE(s1.map(kWindow + 0x200000, kGpa + 0x20000, 4096, kRWU).ok());
	// TLBI_NH_VA (ASID 9, one page): only that page reaches the kernel.
	ASSERT_TRUE(command(0x12 | (uint64_t{kAsid} << 48), kWindow).ok());
	EXPECT_TRUE(kernel.lookup(kWindow, false).has_value());
	EXPECT_FALSE(kernel.lookup(kWindow + 0x200000, false).has_value());
	// TLBI_NH_ASID: everything.
	ASSERT_TRUE(command(0x11 | (uint64_t{kAsid} << 48), 0).ok());
	EXPECT_TRUE(kernel_agrees(kWindow + 0x200000));
	// The guest points CD 0 at an empty table; CFGI_CD: everything goes.
	pgtable::TableBuilder empty = ok(pgtable::TableBuilder::create(
		pgtable::table_config(pgtable::Format::arm_s1), &pool));
	GuestMemory::store_le64(ram.at(kCd - kGpa + 8), empty.root());
	ASSERT_TRUE(command(0x05, 0).ok());
	EXPECT_TRUE(kernel.maps.empty());
	EXPECT_TRUE(kernel_agrees(kWindow) && kernel_agrees(kWindow + 0x200000));
	// An invalid CD: DMA blocked (the route faults), the kernel holds nothing.
	GuestMemory::store_le64(ram.at(kCd - kGpa + 8), s1.root());
	ASSERT_TRUE(command(0x05, 0).ok());
	EXPECT_EQ(kernel.maps.size(), 2u);
	GuestMemory::store_le64(ram.at(kCd - kGpa), 0);
	ASSERT_TRUE(command(0x05, 0).ok());
	EXPECT_TRUE(kernel.maps.empty());
}

} // namespace
} // namespace iodp::vfio
