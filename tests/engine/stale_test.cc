/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Nothing is answered from what attach, replace, detach or destroy removed (doc/control.md).
 *
 * A library-mode worker translates through a nested stage 1 and caches the result (leaf and
 * paging-structure entries tagged with the domain and PASID or ASID). The binding goes away,
 * the guest then changes its table without an invalidation (nothing is attached, so a guest
 * sends none), and the same HWPT is attached again: the worker must walk the new table, as
 * the control-path translate does. The kernel's VT-d and SMMUv3 drivers flush the old
 * domain + PASID on teardown and replace for the same reason.
 */
#include "../ctl/ctl_fixture.h"

#include <iodp/iodp.h>
#include <iodp/engine.h>
#include <iodp/pgtable_builder.h>

#include <gtest/gtest.h>

namespace iodp::ctl::test {
namespace {

using pgtable::Format;

constexpr uint64_t kGuestBase = 0x40000000;
constexpr uint64_t kVa = 0x7f0000001000;      // the guest's IOVA (stage-1 input)
constexpr uint64_t kPageA = kGuestBase + 0x200000;  // what it maps first
constexpr uint64_t kPageB = kGuestBase + 0x300000;  // and after the change
constexpr uint32_t kRWU = pgtable::kMapRead | pgtable::kMapWrite | pgtable::kMapUser;

struct StaleTest : ::testing::Test {
	Ctx ctx;
	HostBuffer ram{8u << 20};
	pgtable::TablePool pool;
	uint32_t ioas = 0, dev = 0, parent = 0;
	std::unique_ptr<engine::Worker> worker;

	void SetUp() override
	{
		ioas = ok(ctx.ioas_alloc());
		ok(ctx.ioas_map(ioas, kFixedRW, kGuestBase, ram.data(), ram.size()).status());
		pool = pgtable::TablePool(kGuestBase + (4u << 20), ram.at(4u << 20), 4u << 20,
					  4096);
	}

	void make_worker()
	{
		engine::WorkerConfig wc;
		wc.report_faults_inline = true;
		worker = ok(engine::Worker::create(ctx, wc));
		ok(worker->set_port(0, dev));
		// The first burst makes this thread the worker's: its syncs no longer wait for
		// it (nothing is attached yet, so it faults).
		EXPECT_EQ(worker_xlate(std::nullopt, kVa), 0u);
	}

	/** The worker's answer for @p iova: the host address, or 0 on a fault. */
	uint64_t worker_xlate(std::optional<uint32_t> pasid, uint64_t iova)
	{
		dev::Request r{};
		r.iova = iova;
		r.cookie = 1;
		r.length = 8;
		r.pasid = pasid ? *pasid : IODP_PASID_NONE;
		r.access = IODP_ACCESS_READ;
		dev::Completion c[4] = {};
		size_t consumed = 0;
		const size_t n = worker->translate_burst(&r, 1, c, 4, &consumed);
		EXPECT_EQ(n, 1u);
		EXPECT_EQ(consumed, 1u);
		return c[0].fault == 0 ? c[0].host : 0;
	}

	/** The control path's answer (the uncached truth). */
	uint64_t ctl_xlate(std::optional<uint32_t> pasid, uint64_t iova)
	{
		Translated t = ok(ctx.translate(dev, pasid, iova, pgtable::kAccessRead));
		return t.fault == pgtable::FaultKind::none ? t.host : 0;
	}

	/** The worker agrees with the control path at kVa, which is @p want. */
	void expect_both(std::optional<uint32_t> pasid, uint64_t want, const char *when)
	{
		SCOPED_TRACE(when);
		EXPECT_EQ(ctl_xlate(pasid, kVa + 8), want);
		EXPECT_EQ(worker_xlate(pasid, kVa + 8), want);
	}

	/** The guest moves kVa to page B without telling anyone (no invalidation). */
	static void remap_silently(pgtable::TableBuilder &s1)
	{
		ok(s1.unmap(kVa, 0x1000));
		ok(s1.map(kVa, kPageB, 0x1000, kRWU));
	}

	uint64_t host(uint64_t gpa) const { return ram.addr(gpa - kGuestBase + 8); }
};

/* VT-d: a first stage per PASID (or the RID), tagged (nested HWPT, PASID). ---------------- */

struct VtdStale : StaleTest, ::testing::WithParamInterface<std::optional<uint32_t>> {
	pgtable::TableBuilder s1;
	uint32_t nested = 0;

	void SetUp() override
	{
		StaleTest::SetUp();
		s1 = ok(pgtable::TableBuilder::create(pgtable::table_config(Format::x86_64_4l),
						      &pool));
		ok(s1.map(kVa, kPageA, 0x1000, kRWU));
		dev = ok(ctx.device_create(vtd_device("emul0")));
		parent = ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0));
		nested = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0,
						  VtdS1Data{IODP_VTD_S1_SRE, s1.root(), 48}));
		make_worker();
		ok(ctx.device_attach(dev, GetParam(), nested).status());
		expect_both(GetParam(), host(kPageA), "first attach");
	}
};

TEST_P(VtdStale, DetachThenAttachAgain)
{
	ok(ctx.device_detach(dev, GetParam()));
	EXPECT_EQ(worker_xlate(GetParam(), kVa), 0u);
	remap_silently(s1);
	ok(ctx.device_attach(dev, GetParam(), nested).status());
	expect_both(GetParam(), host(kPageB), "attached again after the guest changed the table");
}

TEST_P(VtdStale, DetachWithoutTranslatingInBetween)
{
	ok(ctx.device_detach(dev, GetParam()));
	remap_silently(s1);
	ok(ctx.device_attach(dev, GetParam(), nested).status());
	expect_both(GetParam(), host(kPageB), "attached again");
}

TEST_P(VtdStale, ReplaceToAnotherHwptAndBack)
{
	pgtable::TableBuilder other = ok(pgtable::TableBuilder::create(
		pgtable::table_config(Format::x86_64_4l), &pool));
	ok(other.map(kVa, kGuestBase + 0x100000, 0x1000, kRWU));
	const uint32_t second = ok(ctx.hwpt_alloc_nested(
		dev, parent, 0, 0, VtdS1Data{IODP_VTD_S1_SRE, other.root(), 48}));
	ok(ctx.device_attach(dev, GetParam(), second).status());
	expect_both(GetParam(), host(kGuestBase + 0x100000), "replaced");
	remap_silently(s1); // the first HWPT is not attached: no invalidation
	ok(ctx.device_attach(dev, GetParam(), nested).status());
	expect_both(GetParam(), host(kPageB), "replaced back");
}

TEST_P(VtdStale, ReplaceByThePagingParent)
{
	ok(ctx.device_attach(dev, GetParam(), parent).status());
	remap_silently(s1);
	ok(ctx.device_attach(dev, GetParam(), nested).status());
	expect_both(GetParam(), host(kPageB), "back from the parent");
}

TEST_P(VtdStale, DestroyAndAllocateAgain)
{
	ok(ctx.device_detach(dev, GetParam()));
	ok(ctx.destroy(nested));
	remap_silently(s1);
	nested = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0,
					  VtdS1Data{IODP_VTD_S1_SRE, s1.root(), 48}));
	ok(ctx.device_attach(dev, GetParam(), nested).status());
	expect_both(GetParam(), host(kPageB), "a new HWPT over the same table");
}

/** Another device keeps the (HWPT, PASID) attached: its answers must not go stale either. */
TEST_P(VtdStale, SharedDomainStaysCoherent)
{
	const uint32_t other = ok(ctx.device_create(vtd_device("emul1")));
	ok(ctx.device_attach(other, GetParam(), nested).status());
	ok(ctx.device_detach(dev, GetParam()));
	remap_silently(s1); // still attached through emul1, so a guest would invalidate:
	const iodp_hwpt_vtd_s1_invalidate inv{kVa, 1, 0, 0};
	uint32_t handled = 0;
	ok(ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_S1, &inv, sizeof(inv), 1,
			       &handled));
	ok(ctx.device_attach(dev, GetParam(), nested).status());
	expect_both(GetParam(), host(kPageB), "attached again beside emul1");
}

INSTANTIATE_TEST_SUITE_P(PasidAndRid, VtdStale,
			 ::testing::Values(std::optional<uint32_t>(5), std::nullopt),
			 [](const auto &info) { return info.param ? "pasid" : "rid"; });

/* SMMUv3: an STE by RID, a CD per SSID, tagged (VMID = the parent, ASID). ------------------- */

struct SmmuStale : StaleTest {
	static constexpr uint64_t kCdTable = kGuestBase + 0x100000;
	pgtable::TableBuilder s1;
	uint32_t nested = 0;
	SmmuV3Data ste{};

	void SetUp() override
	{
		StaleTest::SetUp();
		s1 = ok(pgtable::TableBuilder::create(pgtable::table_config(Format::arm_s1),
						      &pool));
		ok(s1.map(kVa, kPageA, 0x1000, kRWU));
		const uint64_t cd0 = 16 /* T0SZ: 48-bit */ | (1ull << 31) /* V */ |
				     (1ull << 41) /* AA64 */ | (uint64_t{7} << 48) /* ASID */;
		GuestMemory::store_le64(ram.at(kCdTable - kGuestBase), cd0);
		GuestMemory::store_le64(ram.at(kCdTable - kGuestBase + 8), s1.root());
		dev = ok(ctx.device_create(smmu_device("smmu0")));
		parent = ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0));
		// Config 5 (stage 1 over stage 2), one CD (S1CDMax 0).
		ste = SmmuV3Data{{1 | (5ull << 1) | kCdTable, 0}};
		nested = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, ste));
		make_worker();
		ok(ctx.device_attach(dev, std::nullopt, nested).status());
		expect_both(std::nullopt, host(kPageA), "first attach");
	}
};

TEST_F(SmmuStale, DetachThenAttachAgain)
{
	ok(ctx.device_detach(dev, std::nullopt));
	EXPECT_EQ(worker_xlate(std::nullopt, kVa), 0u);
	remap_silently(s1);
	ok(ctx.device_attach(dev, std::nullopt, nested).status());
	expect_both(std::nullopt, host(kPageB), "attached again");
}

TEST_F(SmmuStale, ReplaceByBypassAndBack)
{
	const uint32_t bypass =
		ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, SmmuV3Data{{1 | (4ull << 1), 0}}));
	ok(ctx.device_attach(dev, std::nullopt, bypass).status());
	remap_silently(s1);
	ok(ctx.device_attach(dev, std::nullopt, nested).status());
	expect_both(std::nullopt, host(kPageB), "replaced back");
}

TEST_F(SmmuStale, ReplaceByAnotherSteAndBack)
{
	const uint32_t second = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, ste));
	ok(ctx.device_attach(dev, std::nullopt, second).status());
	remap_silently(s1);
	ok(ctx.device_attach(dev, std::nullopt, nested).status());
	expect_both(std::nullopt, host(kPageB), "replaced back");
}

TEST_F(SmmuStale, DestroyAndAllocateAgain)
{
	ok(ctx.device_detach(dev, std::nullopt));
	ok(ctx.destroy(nested));
	remap_silently(s1);
	nested = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, ste));
	ok(ctx.device_attach(dev, std::nullopt, nested).status());
	expect_both(std::nullopt, host(kPageB), "a new STE over the same CD");
}

/*
 * A burst whose requests name more routes than the PASID/config cache keeps: a route filled
 * late in the burst must not take the slot of one an earlier request of the same burst
 * still uses (found by tools/soak: a translated request answered "not attached" through
 * another device's route).
 */
TEST(RouteCache, FullInOneBurstKeepsEveryRequestsRoute)
{
	Ctx ctx;
	HostBuffer ram{1u << 20};
	const uint32_t ioas = ok(ctx.ioas_alloc());
	ok(ctx.ioas_map(ioas, kFixedRW, 0x100000, ram.data(), ram.size()).status());
	engine::WorkerConfig wc;
	wc.report_faults_inline = true;
	wc.shard.routes = 16; // the smallest cache: 64 devices overflow every probe window
	std::unique_ptr<engine::Worker> worker = ok(engine::Worker::create(ctx, wc));
	constexpr unsigned kDevices = 64; // one step
	std::vector<uint32_t> devs;
	for (unsigned i = 0; i < kDevices; i++) {
		char name[16];
		std::snprintf(name, sizeof(name), "d%u", i);
		devs.push_back(ok(ctx.device_create(vtd_device(name))));
		ok(worker->set_port(static_cast<uint16_t>(i), devs.back()));
	}
	// Every other device translates; the others are not attached.
	std::vector<dev::Request> reqs(kDevices);
	std::vector<dev::Completion> cpls(2 * kDevices);
	for (int round = 0; round < 2; round++) {
		for (unsigned i = 0; i < kDevices; i++) {
			if (round == 1 && i % 2 == 0)
				ok(ctx.device_attach(devs[i], std::nullopt, ioas).status());
			reqs[i] = dev::Request{};
			reqs[i].iova = 0x100000 + i * 0x1000;
			reqs[i].cookie = i;
			reqs[i].length = 8;
			reqs[i].pasid = IODP_PASID_NONE;
			reqs[i].port = static_cast<uint16_t>(i);
			reqs[i].access = IODP_ACCESS_READ;
		}
		size_t consumed = 0;
		const size_t n = worker->translate_burst(reqs.data(), kDevices, cpls.data(),
							 cpls.size(), &consumed);
		ASSERT_EQ(consumed, kDevices);
		ASSERT_EQ(n, kDevices);
		for (unsigned i = 0; i < kDevices; i++) {
			SCOPED_TRACE(::testing::Message() << "round " << round << " device " << i);
			const bool attached = round == 1 && i % 2 == 0;
			EXPECT_EQ(cpls[i].cookie, i);
			EXPECT_EQ(cpls[i].fault, attached ? 0u : unsigned{IODP_FAULT_PASID_NOT_ATTACHED});
			if (attached) {
				EXPECT_EQ(cpls[i].host, ram.addr(i * 0x1000));
			}
		}
	}
}

} // namespace
} // namespace iodp::ctl::test
