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

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
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
		if (on_call)
			on_call();
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
		if (on_call)
			on_call();
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
	std::function<void()> on_call; ///< after each call took effect
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

/* A guest's VT-d invalidation queue (IODP_HWPT_INVALIDATE_DATA_VTD_QI) ------------------- */

/** 128-bit queued-invalidation descriptors, as a guest's driver writes them. */
struct Qi {
	uint64_t qw[2];
};
constexpr uint64_t kDid = 7;
/** Page-selective IOTLB invalidation of 2^am pages at @p addr (IH: leaves only). */
Qi iotlb_page(uint64_t addr, unsigned am = 0, bool ih = false)
{
	return {{0x2 | (3 << 4) | (kDid << 16), addr | (uint64_t{ih} << 6) | am}};
}
Qi iotlb_domain() { return {{0x2 | (2 << 4) | (kDid << 16), 0}}; }
/** PASID-based IOTLB, page-selective: what a scalable-mode guest sends for PASID 0 (RID). */
Qi pasid_iotlb_page(uint64_t addr, uint32_t pasid = 0)
{
	return {{0x6 | (3 << 4) | (kDid << 16) | (uint64_t{pasid} << 32), addr}};
}
Qi context_global() { return {{0x1 | (1 << 4), 0}}; }
/** inv_wait with SW: write @p data at guest-physical @p gpa once everything before is done. */
Qi wait(uint64_t gpa, uint32_t data) { return {{0x5 | (1 << 5) | (uint64_t{data} << 32), gpa}}; }

struct VtdQueueTest : ShadowModeTest {
	static constexpr uint64_t kStatus = kGpa + 0x7ff000; ///< the guest's status words
	uint32_t handled = 0;
	/** The descriptors, @p entry_len bytes apart (shorter: cut, longer: zero-padded). */
	Status queue(const std::vector<Qi> &q, uint32_t entry_len = sizeof(Qi))
	{
		std::vector<std::byte> raw(q.size() * entry_len);
		for (size_t i = 0; i < q.size(); i++)
			std::memcpy(raw.data() + i * entry_len, q[i].qw,
				    std::min<size_t>(entry_len, sizeof(Qi)));
		return ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_QI, raw.data(),
					   entry_len, static_cast<uint32_t>(q.size()), &handled);
	}
	uint32_t status(unsigned i) const
	{
		uint32_t v;
		std::memcpy(&v, ram.at(kStatus - kGpa + 8 * i), sizeof(v));
		return v;
	}
};

TEST_F(VtdQueueTest, EachWaitCompletesOnlyAfterTheKernelHoldsWhatCameBefore)
{
	attach();
	ASSERT_TRUE(s1.map(kWindow, kGpa + 0x1000, 4096, kRWU).ok());
	ASSERT_TRUE(s1.map(kWindow + 0x200000, kGpa + 0x2000, 4096, kRWU).ok());
	// At each kernel call: which waits had completed. The first page's map must come
	// before wait 0's status write, the second's after it and before wait 1's.
	std::vector<std::pair<uint32_t, uint32_t>> seen;
	kernel.on_call = [&] { seen.push_back({status(0), status(1)}); };
	ASSERT_TRUE(queue({pasid_iotlb_page(kWindow), wait(kStatus, 0xa1),
			   iotlb_page(kWindow + 0x200000, 0, true), wait(kStatus + 8, 0xb2)})
			    .ok());
	EXPECT_EQ(handled, 4u);
	ASSERT_EQ(seen.size(), 2u);
	EXPECT_EQ(seen[0], std::make_pair(0u, 0u)) << "page 1 shadowed before wait 0 completed";
	EXPECT_EQ(seen[1], std::make_pair(0xa1u, 0u)) << "page 2 after wait 0, before wait 1";
	EXPECT_EQ(status(0), 0xa1u);
	EXPECT_EQ(status(1), 0xb2u);
	expect_agree("after the queue");
	EXPECT_EQ(mode.shadow().stats().syncs, 2u + 2u) << "attach: 2; one walk per segment";

	// Unmap + page invalidation + wait: the kernel drops it before the wait completes.
	kernel.on_call = nullptr;
	ASSERT_TRUE(s1.unmap(kWindow, 4096).ok());
	ASSERT_TRUE(s1.unmap(kWindow + 0x200000, 4096).ok());
	ASSERT_TRUE(s1.map(kWindow + 0x200000, kGpa + 0x5000, 4096, kRWU).ok()); // retarget
	ASSERT_TRUE(queue({iotlb_page(kWindow), iotlb_page(kWindow + 0x200000),
			   wait(kStatus, 0xc3)}).ok());
	EXPECT_FALSE(kernel.lookup(kWindow, false).has_value());
	EXPECT_EQ(kernel.lookup(kWindow + 0x200000, true), ram.addr(0x5000));
	EXPECT_EQ(status(0), 0xc3u);
	expect_agree("after unmap and retarget");
}

TEST_F(VtdQueueTest, DomainAndContextDescriptorsRewalkEverything)
{
	attach();
	for (uint64_t i = 0; i < 16; i++)
		ASSERT_TRUE(s1.map(kWindow + i * 0x40000, kGpa + i * 0x3000, 4096, kRWU).ok());
	// A wait with nothing before it completes at once; nothing was shadowed.
	ASSERT_TRUE(queue({wait(kStatus, 1)}).ok());
	EXPECT_EQ(status(0), 1u);
	EXPECT_TRUE(kernel.maps.empty());
	ASSERT_TRUE(queue({iotlb_domain(), wait(kStatus, 2)}).ok());
	EXPECT_EQ(kernel.maps.size(), 16u);
	expect_agree("after the domain-selective IOTLB invalidation");
	ASSERT_TRUE(s1.unmap(kWindow, 16 * 0x40000).ok());
	ASSERT_TRUE(queue({context_global(), wait(kStatus, 3)}).ok());
	EXPECT_TRUE(kernel.maps.empty());
	EXPECT_EQ(status(0), 3u);
	// A wait without SW (the VMM signals by returning): nothing written.
	ASSERT_TRUE(queue({{{0x5 | (uint64_t{9} << 32), kStatus}}}).ok());
	EXPECT_EQ(status(0), 3u);
}

TEST_F(VtdQueueTest, AFailureStopsTheQueueBeforeTheNextWait)
{
	attach();
	ASSERT_TRUE(s1.map(kWindow, kGpa + 0x1000, 4096, kRWU).ok());
	// A bad descriptor (granularity 0): the entries before it are applied and shadowed,
	// the wait after it never completes.
	Status s = queue({iotlb_page(kWindow), wait(kStatus, 5), {{0x2, 0}}, wait(kStatus + 8, 6)});
	EXPECT_EQ(s.code(), -EINVAL) << s.message();
	EXPECT_NE(s.message().find("entry 2"), std::string::npos) << s.message();
	EXPECT_EQ(handled, 2u);
	EXPECT_EQ(status(0), 5u);
	EXPECT_EQ(status(1), 0u);
	EXPECT_TRUE(kernel.lookup(kWindow, false).has_value());
	// The kernel refuses a map (a full container): the wait does not complete.
	ASSERT_TRUE(s1.map(kWindow + 0x10000, kGpa + 0x9000, 4096, kRWU).ok());
	kernel.limit = kernel.maps.size();
	s = queue({iotlb_page(kWindow + 0x10000), wait(kStatus + 8, 7)});
	EXPECT_EQ(s.code(), -ENOSPC) << s.message();
	EXPECT_EQ(handled, 1u);
	EXPECT_EQ(status(1), 0u);
	EXPECT_TRUE(mode.degraded());
	kernel.limit = 64;
	ASSERT_TRUE(queue({iotlb_page(kWindow + 0x10000), wait(kStatus + 8, 7)}).ok());
	EXPECT_EQ(status(1), 7u);
	EXPECT_FALSE(mode.degraded());
	// A status address stage 2 does not map: EFAULT, the wait not counted.
	s = queue({iotlb_page(kWindow), wait(0x10, 8)});
	EXPECT_EQ(s.code(), -EFAULT) << s.message();
	EXPECT_NE(s.message().find("inv_wait status write"), std::string::npos) << s.message();
	EXPECT_EQ(handled, 1u);
	// Bytes past the 16-byte descriptor must be zero; shorter entries are refused.
	std::vector<std::byte> raw(32);
	raw[20] = std::byte{1};
	EXPECT_EQ(ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_QI, raw.data(), 32, 1,
				      &handled).code(), -E2BIG);
	EXPECT_EQ(queue({wait(kStatus, 1)}, 8).code(), -EINVAL);
	// Only a VT-d nested HWPT takes them.
	EXPECT_EQ(ctx.hwpt_invalidate(parent, IODP_HWPT_INVALIDATE_DATA_VTD_QI, raw.data(), 32, 0,
				      &handled).code(), -ENOENT);
	EXPECT_TRUE(ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_QI, nullptr, 16, 0,
					&handled).ok()) << "a probe";
}

/** What a hardware-nesting observer is forwarded: the kernel's VTD_S1 entries. */
struct Recorder : NestedObserver {
	std::vector<iodp_hwpt_vtd_s1_invalidate> got;
	std::vector<uint32_t> types;
	std::string name() const override { return "recorder"; }
	Status changed(const pgtable::Translation *, std::span<const IovaRange>) override
	{
		return {};
	}
	Status host_gone(const pgtable::Translation *, uint64_t, uint64_t) override { return {}; }
	Status forward(uint32_t type, const void *e, uint32_t len, uint32_t n) override
	{
		types.push_back(type);
		EXPECT_EQ(len, sizeof(iodp_hwpt_vtd_s1_invalidate));
		const auto *v = static_cast<const iodp_hwpt_vtd_s1_invalidate *>(e);
		got.insert(got.end(), v, v + n);
		return {};
	}
};

TEST_F(VtdQueueTest, ANestingKernelIsForwardedVtdS1EntriesPerSegment)
{
	Recorder r;
	ASSERT_TRUE(ctx.hwpt_attach_observer(nested, &r).ok());
	ASSERT_TRUE(queue({iotlb_page(0x40000, 2, true), pasid_iotlb_page(0x9000),
			   wait(kStatus, 1), iotlb_domain(), {{0x3 | (5ull << 32), 0x5000}}})
			    .ok());
	ASSERT_TRUE(ctx.hwpt_detach_observer(nested, &r).ok());
	EXPECT_EQ(r.types, (std::vector<uint32_t>{IODP_HWPT_INVALIDATE_DATA_VTD_S1,
						  IODP_HWPT_INVALIDATE_DATA_VTD_S1}));
	ASSERT_EQ(r.got.size(), 3u) << "the device-TLB descriptor is the kernel's own business";
	EXPECT_EQ(r.got[0].addr, 0x40000u);
	EXPECT_EQ(r.got[0].npages, 4u);
	EXPECT_EQ(r.got[0].flags, uint32_t{IODP_VTD_INV_FLAGS_LEAF});
	EXPECT_EQ(r.got[1].addr, 0x9000u);
	EXPECT_EQ(r.got[1].npages, 1u);
	EXPECT_EQ(r.got[2].addr, 0u);
	EXPECT_EQ(r.got[2].npages, UINT64_MAX);
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

/** CMD_SYNC with CS=SIG_IRQ: MSIData written at MSIAddr on completion. */
Qi cmd_sync(uint64_t gpa, uint32_t data) { return {{0x46 | (1 << 12) | (uint64_t{data} << 32), gpa}}; }

TEST_F(SmmuShadowTest, CommandQueueSyncCompletesOnlyAfterTheKernelHoldsWhatCameBefore)
{
	const uint64_t msi = kGpa + 0x8000;
	auto msi_data = [&] {
		uint32_t v;
		std::memcpy(&v, ram.at(msi - kGpa), sizeof(v));
		return v;
	};
	std::vector<uint32_t> seen;
	kernel.on_call = [&] { seen.push_back(msi_data()); };
	auto queue = [&](std::vector<Qi> q, uint32_t *handled) {
		return ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_SMMUV3_CMDQ, q.data(),
					   sizeof(Qi), static_cast<uint32_t>(q.size()), handled);
	};
	ASSERT_TRUE(s1.map(kWindow, kGpa + 0x10000, 4096, kRWU).ok());
	ASSERT_TRUE(s1.map(kWindow + 0x200000, kGpa + 0x20000, 4096, kRWU).ok());
	const uint64_t va = 0x12 | (uint64_t{kAsid} << 48); // TLBI_NH_VA, ASID 9
	uint32_t handled = 0;
	ASSERT_TRUE(queue({{{va, kWindow}}, cmd_sync(msi, 0x11), {{va, kWindow + 0x200000}},
			   cmd_sync(msi, 0x22)}, &handled).ok());
	EXPECT_EQ(handled, 4u);
	EXPECT_EQ(seen, (std::vector<uint32_t>{0, 0x11})) << "each map before its sync's write";
	EXPECT_EQ(msi_data(), 0x22u);
	EXPECT_TRUE(kernel_agrees(kWindow) && kernel_agrees(kWindow + 0x200000));
	// Unmap + TLBI + CMD_SYNC: gone before the sync completes. CFGI_STE (outside the
	// iommufd subset: a guest's own queue has the whole set) re-walks everything.
	seen.clear();
	ASSERT_TRUE(s1.unmap(kWindow, 4096).ok());
	ASSERT_TRUE(queue({{{va, kWindow}}, cmd_sync(msi, 0x33)}, &handled).ok());
	EXPECT_EQ(seen, (std::vector<uint32_t>{0x22})) << "the unmap before the sync's write";
	EXPECT_FALSE(kernel.lookup(kWindow, false).has_value());
	ASSERT_TRUE(s1.unmap(kWindow + 0x200000, 4096).ok());
	ASSERT_TRUE(queue({{{0x03, 0}}, cmd_sync(msi, 0x44)}, &handled).ok());
	EXPECT_TRUE(kernel.maps.empty());
	EXPECT_EQ(msi_data(), 0x44u);
	// CMD_SYNC without SIG_IRQ writes nothing; a failing kernel leaves the sync pending.
	ASSERT_TRUE(queue({{{0x46, msi}}}, &handled).ok());
	EXPECT_EQ(msi_data(), 0x44u);
	ASSERT_TRUE(s1.map(kWindow, kGpa + 0x10000, 4096, kRWU).ok());
	kernel.limit = 0;
	EXPECT_EQ(queue({{{va, kWindow}}, cmd_sync(msi, 0x55)}, &handled).code(), -ENOSPC);
	EXPECT_EQ(handled, 1u);
	EXPECT_EQ(msi_data(), 0x44u);
	// The queue of the other model is refused by name.
	Status s = ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_QI, nullptr, 16, 0,
				       &handled);
	EXPECT_EQ(s.code(), -EINVAL);
	EXPECT_NE(s.message().find("smmuv3 nested HWPT"), std::string::npos) << s.message();
}

} // namespace
} // namespace iodp::vfio
