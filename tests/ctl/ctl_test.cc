/* SPDX-License-Identifier: BSD-3-Clause */
/* Control-plane behaviour through the C++ API: lifecycle, groups, PASIDs, nesting, faults. */
#include "ctl_fixture.h"
#include "inspect.h"

#include <iodp/iodp.h>
#include <iodp/smmuv3.h>
#include <iodp/iotlb.h>
#include <iodp/pgtable_builder.h>

#include <atomic>
#include <thread>
#include <unistd.h>

namespace iodp::ctl::test {
namespace {

using pgtable::Format;

constexpr uint64_t kGuestBase = 0x40000000; // guest-physical base of guest RAM in tests

/** A context with one IOAS mapping 2 MiB of host memory at IOVA 0x100000. */
struct CtlTest : ::testing::Test {
	Ctx ctx;
	HostBuffer buf{4u << 20};
	uint32_t ioas = 0;

	void SetUp() override
	{
		ioas = ok(ctx.ioas_alloc());
		ok(ctx.ioas_map(ioas, kFixedRW, 0x100000, buf.data(), 2u << 20).status());
	}

	uint32_t device(const DeviceSpec &spec) { return ok(ctx.device_create(spec)); }

	Translated xlate(uint32_t dev, std::optional<uint32_t> pasid, uint64_t iova,
			 uint8_t access = pgtable::kAccessRead)
	{
		return ok(ctx.translate(dev, pasid, iova, access));
	}
};

TEST_F(CtlTest, AttachToIoasTranslatesThroughAnAutoDomain)
{
	const uint32_t dev = device(vtd_device("emul0"));
	const uint32_t hwpt = ok(ctx.device_attach(dev, std::nullopt, ioas));
	EXPECT_NE(hwpt, ioas);
	EXPECT_EQ(ok(ctx.object_info(hwpt)).type, ObjType::hwpt_paging);
	Translated t = xlate(dev, std::nullopt, 0x100000 + 0x1234, pgtable::kAccessWrite);
	EXPECT_EQ(t.fault, pgtable::FaultKind::none);
	EXPECT_EQ(t.host, buf.addr(0x1234));
	EXPECT_EQ(t.perm & pgtable::kPermWrite, pgtable::kPermWrite);

	// The auto domain goes with its last user; then the IOAS is free to go.
	EXPECT_FAILS(ctx.destroy(ioas), EBUSY, "ioas " + std::to_string(ioas) + " is used by hwpt");
	ok(ctx.device_detach(dev, std::nullopt));
	EXPECT_FAILS(ctx.object_info(hwpt), ENOENT, "no such object");
	ok(ctx.destroy(ioas));
}

TEST_F(CtlTest, DetachLeavesDmaBlocked)
{
	const uint32_t dev = device(vtd_device("emul0"));
	ok(ctx.device_attach(dev, std::nullopt, ioas).status());
	ok(ctx.device_detach(dev, std::nullopt));
	Translated t = xlate(dev, std::nullopt, 0x100000);
	EXPECT_EQ(t.fault, pgtable::FaultKind::not_attached);
	uint64_t lost = 1;
	std::vector<FaultEvent> ev = ctx.fault_events(8, &lost);
	ASSERT_EQ(ev.size(), 1u);
	EXPECT_EQ(ev[0].dev_id, dev);
	EXPECT_EQ(ev[0].kind, pgtable::FaultKind::not_attached);
	EXPECT_EQ(ev[0].addr, 0x100000u);
	EXPECT_EQ(lost, 0u);
	EXPECT_FAILS(ctx.device_detach(dev, std::nullopt), ENOENT, "the RID is not attached");
}

TEST_F(CtlTest, DestroyInUseNamesTheUser)
{
	const uint32_t dev = device(vtd_device("emul0"));
	const uint32_t hwpt = ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_PASID, 0));
	ok(ctx.device_attach(dev, 3, hwpt).status());
	EXPECT_FAILS(ctx.destroy(hwpt), EBUSY,
		     "hwpt " + std::to_string(hwpt) + " is attached to device emul0 pasid 3");
	EXPECT_FAILS(ctx.destroy(dev), EBUSY,
		     "device emul0 is attached to hwpt " + std::to_string(hwpt) + " by pasid 3");
	EXPECT_FAILS(ctx.destroy(ioas), EBUSY, "is used by hwpt " + std::to_string(hwpt));
	EXPECT_FAILS(ctx.destroy(999), ENOENT, "no object 999");
	// Lifecycle in order: de-authorise, then destroy the table, then the IOAS.
	ok(ctx.device_detach(dev, 3));
	ok(ctx.destroy(hwpt));
	ok(ctx.destroy(ioas));
	ok(ctx.destroy(dev));
	EXPECT_EQ(ctx.object_count(), 0u);
}

TEST_F(CtlTest, NestParentCannotGoBeforeItsChild)
{
	const uint32_t dev = device(vtd_device("emul0"));
	const uint32_t parent =
		ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0));
	const uint32_t child = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, VtdS1Data{0, 0x1000, 48}));
	EXPECT_FAILS(ctx.destroy(parent), EBUSY,
		     "is the parent of nested hwpt " + std::to_string(child));
	ok(ctx.destroy(child));
	ok(ctx.destroy(parent));
}

TEST_F(CtlTest, GroupMembersShareOneDomain)
{
	const uint32_t a = device(vtd_device("emul0"));
	const uint32_t group = ok(ctx.object_info(a)).group;
	const uint32_t b = device(vtd_device("emul1", group));
	const uint32_t h5 = ok(ctx.hwpt_alloc_paging(a, ioas, 0, 0));
	const uint32_t h9 = ok(ctx.hwpt_alloc_paging(a, ioas, 0, 0));
	ok(ctx.device_attach(a, std::nullopt, h5).status());
	EXPECT_FAILS(ctx.device_attach(b, std::nullopt, h9), EINVAL,
		     "cannot attach emul1 to hwpt " + std::to_string(h9) + ": emul0 in the same group " +
			     std::to_string(group) + " is attached to hwpt " + std::to_string(h5));
	// Attaching the peer to the IOAS picks the group's domain.
	EXPECT_EQ(ok(ctx.device_attach(b, std::nullopt, ioas)), h5);
	// A device in another group is free to use another domain.
	const uint32_t c = device(vtd_device("emul2"));
	EXPECT_EQ(ok(ctx.device_attach(c, std::nullopt, h9)), h9);
	EXPECT_NE(ok(ctx.object_info(c)).group, group);
}

TEST_F(CtlTest, ReattachReplacesAtomically)
{
	const uint32_t dev = device(vtd_device("emul0"));
	const uint32_t ioas2 = ok(ctx.ioas_alloc());
	HostBuffer other(2u << 20);
	ok(ctx.ioas_map(ioas2, kFixedRW, 0x100000, other.data(), 2u << 20).status());
	const uint32_t h1 = ok(ctx.hwpt_alloc_paging(dev, ioas, 0, 0));
	const uint32_t h2 = ok(ctx.hwpt_alloc_paging(dev, ioas2, 0, 0));
	ok(ctx.device_attach(dev, std::nullopt, h1).status());
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000).host, buf.addr());
	ok(ctx.device_attach(dev, std::nullopt, h2).status());
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000).host, other.addr());
	EXPECT_EQ(ok(ctx.object_info(h1)).users, 0u);
	ok(ctx.destroy(h1));
}

TEST_F(CtlTest, PasidsAreSeparateAndBounded)
{
	const uint32_t dev = device(vtd_device("emul0"));
	ok(ctx.device_attach(dev, 7, ioas).status());
	EXPECT_EQ(xlate(dev, 7, 0x100000).fault, pgtable::FaultKind::none);
	// Only attached PASIDs translate; the RID is not attached either.
	EXPECT_EQ(xlate(dev, 8, 0x100000).fault, pgtable::FaultKind::not_attached);
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000).fault, pgtable::FaultKind::not_attached);
	EXPECT_FAILS(ctx.device_attach(dev, 0, ioas), EINVAL, "0 is the RID's");
	EXPECT_FAILS(ctx.device_attach(dev, 1u << 20, ioas), EINVAL, "PASIDs are 1..1048575");
	EXPECT_FAILS(ctx.device_detach(dev, 8), ENOENT, "pasid 8 is not attached");
}

TEST_F(CtlTest, VpasidTable)
{
	EXPECT_EQ(ok(ctx.vpasid_set(5, 0)), 1u);
	EXPECT_EQ(ok(ctx.vpasid_set(6, 40)), 40u);
	EXPECT_EQ(ok(ctx.vpasid_set(7, 0)), 2u);
	EXPECT_FAILS(ctx.vpasid_set(5, 9), EEXIST, "vpasid 5 is already bound to pasid 1");
	EXPECT_FAILS(ctx.vpasid_set(8, 40), EEXIST, "pasid 40 is bound to another vpasid");
	EXPECT_EQ(ok(ctx.vpasid_lookup(6)), 40u);
	const uint32_t dev = device(vtd_device("emul0"));
	ok(ctx.device_attach(dev, 40, ioas).status());
	EXPECT_FAILS(ctx.vpasid_clear(6), EBUSY, "vpasid 6 (pasid 40) is attached: device emul0");
	ok(ctx.device_detach(dev, 40));
	ok(ctx.vpasid_clear(6));
	EXPECT_FAILS(ctx.vpasid_lookup(6), ENOENT, "vpasid 6 is not bound");
}

TEST_F(CtlTest, ModelsDoNotMix)
{
	const uint32_t v = device(vtd_device("vtd0"));
	const uint32_t s = device(smmu_device("smmu0"));
	const uint32_t hv = ok(ctx.hwpt_alloc_paging(v, ioas, 0, 0));
	EXPECT_FAILS(ctx.device_attach(s, std::nullopt, hv), EINVAL,
		     "the table is for a vtd IOMMU and the device is behind smmuv3");
	EXPECT_FAILS(ctx.device_create(smmu_device("smmu1", ok(ctx.object_info(v)).group)),
		     EINVAL, "is behind a vtd IOMMU");
	EXPECT_FAILS(ctx.device_create(vtd_device("vtd0")), EEXIST, "the name is taken");
	// Each model gets its own kind of auto domain on the same IOAS.
	const uint32_t hs = ok(ctx.device_attach(s, std::nullopt, ioas));
	EXPECT_EQ(ok(ctx.object_info(hs)).format, Format::arm_s2);
	EXPECT_EQ(xlate(s, std::nullopt, 0x100000 + 0x10).host, buf.addr(0x10));
}

TEST_F(CtlTest, MsiWindowIsReservedOnceAttached)
{
	const uint32_t dev = device(vtd_device("emul0"));
	ok(ctx.device_attach(dev, std::nullopt, ioas).status());
	uint64_t align = 0;
	std::vector<IovaRange> r = ok(ctx.ioas_iova_ranges(ioas, &align));
	EXPECT_EQ(align, 4096u);
	ASSERT_EQ(r.size(), 2u);
	EXPECT_EQ(r[0], (IovaRange{0, 0xfedfffff}));
	EXPECT_EQ(r[1], (IovaRange{0xfef00000, (1ull << 48) - 1}));
	EXPECT_FAILS(ctx.ioas_map(ioas, kFixedRW, 0xfee00000, buf.data(), 4096), EINVAL,
		     "reserved by device emul0 (MSI window)");
	EXPECT_FAILS(ctx.ioas_map(ioas, kFixedRW, 1ull << 48, buf.data(), 4096), EINVAL,
		     "48-bit input");
	const IovaRange clash{0xfe000000, 0xffffffff};
	EXPECT_FAILS(ctx.ioas_allow_iovas(ioas, {&clash, 1}), EADDRINUSE,
		     "reserved by device emul0 (MSI window)");
}

TEST_F(CtlTest, AttachRefusedWhenMsiWindowIsMapped)
{
	ok(ctx.ioas_map(ioas, kFixedRW, 0xfee00000, buf.data(), 4096).status());
	const uint32_t dev = device(vtd_device("emul0"));
	EXPECT_FAILS(ctx.device_attach(dev, std::nullopt, ioas), EADDRINUSE,
		     "over the device's MSI window");
	// The auto domain made for the failed attach is gone again.
	EXPECT_EQ(ctx.object_count(), 2u);
}

TEST_F(CtlTest, AllocatedIovasAreAlignedAndAllowed)
{
	const IovaRange allowed{0x10000000, 0x1fffffff};
	ok(ctx.ioas_allow_iovas(ioas, {&allowed, 1}));
	const uint64_t a = ok(ctx.ioas_map(ioas, kRW, 0, buf.data(), 2u << 20));
	EXPECT_GE(a, allowed.start);
	EXPECT_EQ(a % (2u << 20), 0u); // host is 2 MiB aligned: so is the IOVA
	const uint64_t b = ok(ctx.ioas_map(ioas, kRW, 0, buf.at(0x1000), 0x1000));
	EXPECT_GE(b, allowed.start);
	EXPECT_TRUE(b + 0x1000 <= a || b >= a + (2u << 20));
	const IovaRange tiny{0x10000000, 0x10000fff};
	ok(ctx.ioas_unmap(ioas, 0, UINT64_MAX).status());
	ok(ctx.ioas_allow_iovas(ioas, {&tiny, 1}));
	EXPECT_FAILS(ctx.ioas_map(ioas, kRW, 0, buf.data(), 0x2000), ENOSPC, "no free");
}

TEST_F(CtlTest, HugePagesOptionLimitsLeafSize)
{
	const uint32_t dev = device(vtd_device("emul0"));
	ok(ctx.device_attach(dev, std::nullopt, ioas).status());
	ok(ctx.ioas_map(ioas, kFixedRW, 0x40000000, buf.data(), 2u << 20).status());
	EXPECT_EQ(xlate(dev, std::nullopt, 0x40000000).page_size, 2u << 20);

	const uint32_t ioas2 = ok(ctx.ioas_alloc());
	uint64_t v = 0;
	ok(ctx.option(IODP_OPTION_HUGE_PAGES, IODP_OPTION_OP_SET, ioas2, &v));
	const uint32_t dev2 = device(vtd_device("emul1"));
	ok(ctx.device_attach(dev2, std::nullopt, ioas2).status());
	ok(ctx.ioas_map(ioas2, kFixedRW, 0x40000000, buf.data(), 2u << 20).status());
	EXPECT_EQ(xlate(dev2, std::nullopt, 0x40000000).page_size, 4096u);
	ok(ctx.option(IODP_OPTION_HUGE_PAGES, IODP_OPTION_OP_GET, ioas2, &v));
	EXPECT_EQ(v, 0u);
	// As the kernel's: large pages may come back at any time (for later maps), but not
	// go away while a HWPT maps something.
	v = 1;
	ok(ctx.option(IODP_OPTION_HUGE_PAGES, IODP_OPTION_OP_SET, ioas2, &v));
	v = 0;
	EXPECT_FAILS(ctx.option(IODP_OPTION_HUGE_PAGES, IODP_OPTION_OP_SET, ioas2, &v), EINVAL,
		     "cannot be turned off while a HWPT maps something");
	v = 2;
	EXPECT_FAILS(ctx.option(IODP_OPTION_HUGE_PAGES, IODP_OPTION_OP_SET, ioas2, &v), EINVAL,
		     "is not 0 or 1");
}

TEST_F(CtlTest, RlimitModeOptionAsTheKernel)
{
	// A fresh context: RLIMIT_MODE changes only while it has no objects.
	Ctx fresh;
	uint64_t v = 1;
	EXPECT_FAILS(fresh.option(IODP_OPTION_RLIMIT_MODE, IODP_OPTION_OP_GET, 5, &v), EOPNOTSUPP,
		     "object_id must be 0");
	ok(fresh.option(IODP_OPTION_RLIMIT_MODE, IODP_OPTION_OP_SET, 0, &v));
	v = 0;
	ok(fresh.option(IODP_OPTION_RLIMIT_MODE, IODP_OPTION_OP_GET, 0, &v));
	EXPECT_EQ(v, 1u); // what was set
	v = 2;
	EXPECT_FAILS(fresh.option(IODP_OPTION_RLIMIT_MODE, IODP_OPTION_OP_SET, 0, &v), EINVAL,
		     "not 0 or 1");
	ok(fresh.ioas_alloc());
	v = 0;
	EXPECT_FAILS(fresh.option(IODP_OPTION_RLIMIT_MODE, IODP_OPTION_OP_SET, 0, &v), EBUSY,
		     "has objects");
	// HUGE_PAGES names an IOAS: none is ENOENT, whatever the op.
	EXPECT_FAILS(fresh.option(IODP_OPTION_HUGE_PAGES, IODP_OPTION_OP_GET, 0, &v), ENOENT, "");
	EXPECT_FAILS(fresh.option(IODP_OPTION_HUGE_PAGES, 7, 0, &v), ENOENT, "");
}

TEST_F(CtlTest, DirtyTracking)
{
	const uint32_t dev = device(vtd_device("emul0"));
	const uint32_t h = ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_DIRTY_TRACKING, 0));
	ok(ctx.device_attach(dev, std::nullopt, h).status());
	ok(ctx.hwpt_set_dirty_tracking(h, true));
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000 + 0x3000, pgtable::kAccessWrite).fault,
		  pgtable::FaultKind::none);
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000 + 0x5000, pgtable::kAccessRead).fault,
		  pgtable::FaultKind::none);
	uint64_t bitmap[8] = {};
	ok(ctx.hwpt_get_dirty_bitmap(h, 0x100000, 0x8000, 0x1000, true, bitmap));
	EXPECT_EQ(bitmap[0], 1ull << 3); // only the page written
	std::fill(std::begin(bitmap), std::end(bitmap), 0);
	ok(ctx.hwpt_get_dirty_bitmap(h, 0x100000, 0x8000, 0x1000, false, bitmap));
	EXPECT_EQ(bitmap[0], 1ull << 3) << "NO_CLEAR cleared the bit";
	std::fill(std::begin(bitmap), std::end(bitmap), 0);
	ok(ctx.hwpt_get_dirty_bitmap(h, 0x100000, 0x8000, 0x1000, false, bitmap));
	EXPECT_EQ(bitmap[0], 0u) << "read-and-clear left the bit set";

	const uint32_t plain = ok(ctx.hwpt_alloc_paging(dev, ioas, 0, 0));
	EXPECT_FAILS(ctx.hwpt_set_dirty_tracking(plain, true), EINVAL,
		     "was not allocated with DIRTY_TRACKING");
	const uint32_t smmu = device(smmu_device("smmu0"));
	EXPECT_FAILS(ctx.hwpt_alloc_paging(smmu, ioas, IODP_HWPT_ALLOC_DIRTY_TRACKING, 0),
		     EOPNOTSUPP, "no dirty bit");
	EXPECT_FAILS(ctx.hwpt_get_dirty_bitmap(h, 0x100000, 0x8000, 0x1800, false, bitmap), EINVAL,
		     "not a power of two");
}

/*
 * A device whose domains use another table format (the test commands' kernel-selftest mock:
 * 2 KiB pages): IOVA alignment, leaf sizes and dirty granularity follow that format.
 */
TEST_F(CtlTest, DevicePagingFormatSetsAlignmentLeavesAndDirtyGranule)
{
	DeviceSpec spec = vtd_device("mock0");
	spec.paging_format = pgtable::table_config(Format::mock, 0, 11);
	spec.paging_max_leaf = 2048;
	const uint32_t dev = device(spec);
	const uint32_t h = ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_DIRTY_TRACKING, 0));
	ok(ctx.device_attach(dev, std::nullopt, h).status());
	uint64_t align = 0;
	ok(ctx.ioas_iova_ranges(ioas, &align).status());
	EXPECT_EQ(align, 2048u);
	ok(ctx.ioas_map(ioas, kFixedRW, 0x400800, buf.at(0x200800), 0x800).status());
	Translated t = xlate(dev, std::nullopt, 0x400800 + 5);
	EXPECT_EQ(t.host, buf.addr(0x200805));
	EXPECT_EQ(t.page_size, 2048u) << "no block beyond paging_max_leaf";
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000 + 0x100000).page_size, 2048u);

	EXPECT_FAILS(ctx.hwpt_mark_dirty(h, 0x100000).status(), EINVAL, "dirty tracking is off");
	ok(ctx.hwpt_set_dirty_tracking(h, true));
	EXPECT_TRUE(ok(ctx.hwpt_mark_dirty(h, 0x100800)));
	EXPECT_FALSE(ok(ctx.hwpt_mark_dirty(h, 0x300000)));
	uint64_t bitmap[1] = {};
	ok(ctx.hwpt_get_dirty_bitmap(h, 0x100000, 0x8000, 0x800, false, bitmap));
	EXPECT_EQ(bitmap[0], 1ull << 1); // the 2 KiB page marked, not its 4 KiB neighbour
	EXPECT_FAILS(ctx.hwpt_get_dirty_bitmap(h, 0x100000, 0x8000, 0x400, false, bitmap),
		     EINVAL, "granule");

	// A nested HWPT on a mock parent: only an opaque stage 1 (the walker nests the pairs
	// hardware combines); DMA through it faults at stage 1.
	const uint32_t parent =
		ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0));
	EXPECT_FAILS(ctx.hwpt_alloc_nested(dev, parent, 0, 0, VtdS1Data{}).status(), EINVAL,
		     "cannot carry a VT-d first stage");
	EXPECT_FAILS(ctx.hwpt_alloc_nested(dev, parent, 0, 0, OpaqueS1Data{IODP_HWPT_DATA_VTD_S1})
			     .status(),
		     EINVAL, "walked by iodp");
	const uint32_t opaque =
		ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, OpaqueS1Data{0xdead}));
	ok(ctx.device_attach(dev, std::nullopt, opaque).status());
	t = xlate(dev, std::nullopt, 0x100000);
	EXPECT_EQ(t.fault, pgtable::FaultKind::not_present);
	EXPECT_EQ(t.stage, 1);
	uint32_t handled = 1;
	EXPECT_FAILS(ctx.hwpt_invalidate(opaque, 0, nullptr, 0, 0, &handled), EINVAL,
		     "takes no invalidations");
	EXPECT_FAILS(ctx.hwpt_invalidate(parent, 0, nullptr, 0, 0, &handled), ENOENT,
		     "only nested HWPTs");
	ok(ctx.device_attach(dev, std::nullopt, h).status());
	ok(ctx.destroy(opaque));

	DeviceSpec bad = vtd_device("bad0");
	bad.paging_format = pgtable::table_config(Format::x86_64_4l);
	EXPECT_FAILS(ctx.device_create(bad).status(), EINVAL, "not a second stage");
	bad.paging_format = pgtable::table_config(Format::mock, 0, 12);
	EXPECT_FAILS(ctx.device_create(bad).status(), EINVAL, "granule must be 2k");
}

/* A cut splits a mapping (VFIO type1 v1 unmaps of a part); translation does not change. */
TEST_F(CtlTest, CutSplitsAMappingWithoutChangingTranslation)
{
	const uint32_t dev = device(vtd_device("emul0"));
	ok(ctx.device_attach(dev, std::nullopt, ioas).status());
	EXPECT_FAILS(ctx.ioas_unmap(ioas, 0x100000 + 0x3000, 0x1000).status(), ENOENT,
		     "would split mapping");
	EXPECT_FAILS(ctx.ioas_cut(ioas, 0x100000 + 0x37ff), EINVAL, "is not aligned to 0x1000");
	ok(ctx.ioas_cut(ioas, 0x100000 + 0x2fff));
	ok(ctx.ioas_cut(ioas, 0x100000 + 0x3fff));
	ok(ctx.ioas_cut(ioas, 0x100000 + 0x3fff)); // already a mapping's last byte
	ok(ctx.ioas_cut(ioas, 0x900000));          // nothing mapped there
	EXPECT_EQ(ok(ctx.object_info(ioas)).mappings, 3u);
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000 + 0x3123).host, buf.addr(0x3123));
	EXPECT_EQ(ok(ctx.ioas_unmap(ioas, 0x100000 + 0x3000, 0x1000)), 0x1000u);
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000 + 0x3123).fault,
		  pgtable::FaultKind::not_present);
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000 + 0x4000).host, buf.addr(0x4000));
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000 + 0x2fff).host, buf.addr(0x2fff));
}

/** Recoverable faults go to the HWPT's queue; the binding is parked until answered. */
TEST_F(CtlTest, RecoverableFaultsAndParking)
{
	int fd = -1;
	const uint32_t q = ok(ctx.fault_queue_alloc(&fd));
	ASSERT_GE(fd, 0);
	const uint32_t dev = device(vtd_device("emul0"));
	const uint32_t h = ok(ctx.hwpt_alloc_paging(dev, ioas,
						    IODP_HWPT_FAULT_ID_VALID | IODP_HWPT_ALLOC_PASID, q));
	ok(ctx.device_attach(dev, 3, h).status());
	Translated t = xlate(dev, 3, 0x900123, pgtable::kAccessWrite);
	EXPECT_EQ(t.fault, pgtable::FaultKind::not_present);
	EXPECT_NE(t.cookie, 0u);
	uint64_t pending = 0;
	EXPECT_EQ(read(fd, &pending, sizeof(pending)), 8);
	EXPECT_EQ(pending, 1u);

	std::vector<PageFault> rec = ok(ctx.fault_read(q, 8));
	ASSERT_EQ(rec.size(), 1u);
	EXPECT_EQ(rec[0].dev_id, dev);
	EXPECT_EQ(rec[0].pasid, 3u);
	EXPECT_EQ(rec[0].access, pgtable::kAccessWrite);
	EXPECT_EQ(rec[0].addr, 0x900000u);
	EXPECT_EQ(rec[0].cookie, t.cookie);

	// De-authorise: the binding is parked while its fault awaits an answer.
	ok(ctx.device_detach(dev, 3));
	EXPECT_FAILS(ctx.destroy(h), EBUSY, "(detached, parked until 1 fault(s) get a response)");
	EXPECT_FAILS(ctx.destroy(q), EBUSY, "fault queue " + std::to_string(q) + " is used by hwpt");
	EXPECT_FAILS(ctx.fault_respond(q, t.cookie + 100, IODP_PAGE_RESP_SUCCESS), EINVAL,
		     "no fault awaits cookie");
	EXPECT_FAILS(ctx.fault_respond(q, t.cookie, 7), EINVAL, "response code 7");
	ok(ctx.fault_respond(q, t.cookie, IODP_PAGE_RESP_INVALID));
	ok(ctx.destroy(h));
	ok(ctx.destroy(q));
}

TEST_F(CtlTest, NonRecoverableFaultsAreEvents)
{
	const uint32_t dev = device(vtd_device("emul0"));
	const uint32_t parent =
		ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0));
	// A stage-1 root pointer that stage 2 does not map: a stage-2 fault on the table.
	const uint32_t nested =
		ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, VtdS1Data{0, 0x7000000, 48}));
	ok(ctx.device_attach(dev, 9, nested).status());
	Translated t = xlate(dev, 9, 0x1000);
	EXPECT_EQ(t.fault, pgtable::FaultKind::not_present);
	EXPECT_EQ(t.stage, 2);
	uint64_t lost = 0;
	std::vector<FaultEvent> ev = ctx.fault_events(8, &lost);
	ASSERT_EQ(ev.size(), 1u);
	EXPECT_EQ(ev[0].pasid, 9u);
	EXPECT_EQ(ev[0].stage, 2);
}

TEST_F(CtlTest, EventLogDropsOldestAndCounts)
{
	CtxConfig cfg;
	cfg.fault_event_log = 4;
	Ctx small(cfg);
	const uint32_t dev = ok(small.device_create(vtd_device("emul0")));
	for (int i = 0; i < 10; i++)
		ok(small.translate(dev, std::nullopt, 0x1000ull * i, pgtable::kAccessRead).status());
	uint64_t lost = 0;
	std::vector<FaultEvent> ev = small.fault_events(16, &lost);
	ASSERT_EQ(ev.size(), 4u);
	EXPECT_EQ(lost, 6u);
	EXPECT_EQ(ev[0].addr, 0x6000u);
}

/* Nested translation ------------------------------------------------------------------------ */

/** Guest RAM identity-mapped (IOVA = GPA) in the IOAS, with a table pool inside it. */
struct NestedTest : CtlTest {
	HostBuffer ram{8u << 20};
	pgtable::TablePool pool;

	void map_guest_ram(uint64_t granule = 4096)
	{
		ok(ctx.ioas_map(ioas, kFixedRW, kGuestBase, ram.data(), ram.size()).status());
		// Tables in the upper half; data pages below.
		pool = pgtable::TablePool(kGuestBase + (4u << 20), ram.at(4u << 20), 4u << 20,
					  granule);
	}

	struct VtdNested {
		pgtable::TableBuilder s1;
		uint32_t dev, parent, nested;
	};
	/**
	 * A VT-d device whose PASID 4 is attached to a guest stage 1 (no SRE) mapping
	 * 0x7f0000000000 + 8 KiB (rw, user) to guest RAM at +0x200000, over a nest parent.
	 */
	VtdNested vtd_nested()
	{
		map_guest_ram();
		VtdNested v;
		v.s1 = ok(pgtable::TableBuilder::create(pgtable::table_config(Format::x86_64_4l),
							&pool));
		ok(v.s1.map(0x7f0000000000, kGuestBase + 0x200000, 0x2000,
			    pgtable::kMapRead | pgtable::kMapWrite | pgtable::kMapUser));
		v.dev = device(vtd_device("emul0"));
		v.parent = ok(ctx.hwpt_alloc_paging(v.dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0));
		v.nested = ok(ctx.hwpt_alloc_nested(v.dev, v.parent, 0, 0,
						    VtdS1Data{0, v.s1.root(), 48}));
		ok(ctx.device_attach(v.dev, 4, v.nested).status());
		return v;
	}
};

TEST_F(NestedTest, VtdFirstStageOverSecondStage)
{
	VtdNested v = vtd_nested();
	const uint32_t dev = v.dev, parent = v.parent;
	Translated t = xlate(dev, 4, 0x7f0000001008, pgtable::kAccessWrite);
	EXPECT_EQ(t.fault, pgtable::FaultKind::none);
	EXPECT_EQ(t.host, ram.addr(0x201008));
	// Without SRE, supervisor requests are refused.
	t = xlate(dev, 4, 0x7f0000001008, pgtable::kAccessRead | pgtable::kAccessPriv);
	EXPECT_EQ(t.fault, pgtable::FaultKind::permission);
	const uint32_t sre = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0,
						      VtdS1Data{IODP_VTD_S1_SRE, v.s1.root(), 48}));
	ok(ctx.device_attach(dev, 4, sre).status());
	t = xlate(dev, 4, 0x7f0000001008, pgtable::kAccessRead | pgtable::kAccessPriv);
	EXPECT_EQ(t.fault, pgtable::FaultKind::none);
}

TEST_F(NestedTest, NestedAllocChecks)
{
	const uint32_t dev = device(vtd_device("emul0"));
	const uint32_t smmu = device(smmu_device("smmu0"));
	const uint32_t plain = ok(ctx.hwpt_alloc_paging(dev, ioas, 0, 0));
	const uint32_t parent =
		ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0));
	EXPECT_FAILS(ctx.hwpt_alloc_nested(dev, plain, 0, 0, VtdS1Data{0, 0, 48}), EINVAL,
		     "was not allocated with NEST_PARENT");
	EXPECT_FAILS(ctx.hwpt_alloc_nested(dev, ioas, 0, 0, VtdS1Data{0, 0, 48}), EINVAL,
		     "a nested HWPT needs a paging HWPT");
	EXPECT_FAILS(ctx.hwpt_alloc_nested(dev, parent, 0, 0, VtdS1Data{0, 0, 39}), EINVAL,
		     "addr_width 39 is not 48 or 57");
	EXPECT_FAILS(ctx.hwpt_alloc_nested(dev, parent, 0, 0, VtdS1Data{0, 0x1234, 48}), EINVAL,
		     "not 4 KiB aligned");
	EXPECT_FAILS(ctx.hwpt_alloc_nested(dev, parent, 0, 0, VtdS1Data{8, 0, 48}), EOPNOTSUPP,
		     "vtd_s1 flags 0x8 are unknown");
	EXPECT_FAILS(ctx.hwpt_alloc_nested(dev, parent, IODP_HWPT_ALLOC_NEST_PARENT, 0,
					   VtdS1Data{0, 0, 48}),
		     EOPNOTSUPP, "are not for nested HWPTs");
	EXPECT_FAILS(ctx.hwpt_alloc_nested(smmu, parent, 0, 0, VtdS1Data{0, 0, 48}), EOPNOTSUPP,
		     "VTD_S1 data needs vtd");
	EXPECT_FAILS(ctx.hwpt_alloc_nested(dev, parent, 0, 0, SmmuV3Data{}), EOPNOTSUPP,
		     "ARM_SMMUV3 data needs smmuv3");
	EXPECT_FAILS(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0,
					   pgtable::table_config(Format::x86_64_4l)),
		     EINVAL, "must be a second stage");
	EXPECT_FAILS(ctx.hwpt_alloc_paging(dev, ioas, 1u << 9, 0), EOPNOTSUPP, "unknown flags");
	EXPECT_FAILS(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_FAULT_ID_VALID, 77), ENOENT,
		     "fault queue 77: no such object");
}

/** SMMUv3: an STE (by RID) -> CD table indexed by SSID -> stage 1 over stage 2. */
struct SmmuTest : NestedTest {
	uint32_t dev = 0, parent = 0;
	static constexpr uint64_t kCdTable = kGuestBase + 0x100000;

	static uint64_t ste0(unsigned cfg, uint64_t ctx_ptr, unsigned cd_max, unsigned fmt = 0)
	{
		smmuv3::Ste s;
		s.valid = true;
		s.config = static_cast<uint8_t>(cfg);
		s.s1_fmt = static_cast<uint8_t>(fmt);
		s.s1_context_ptr = ctx_ptr;
		s.s1_cd_max = static_cast<uint8_t>(cd_max);
		uint64_t w[2];
		s.encode(w);
		return w[0];
	}

	void write_cd(uint64_t gpa, uint64_t ttb0, uint16_t asid, bool valid = true)
	{
		smmuv3::Cd c; // 48-bit input, 4 KiB granule, AArch64
		c.valid = valid;
		c.asid = asid;
		c.ttb0 = ttb0;
		uint64_t w[2];
		c.encode(w);
		GuestMemory::store_le64(ram.at(gpa - kGuestBase), w[0]);
		GuestMemory::store_le64(ram.at(gpa - kGuestBase + 8), w[1]);
	}

	void SetUp() override
	{
		NestedTest::SetUp();
		map_guest_ram();
		dev = device(smmu_device("smmu0"));
		parent = ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0));
	}
};

TEST_F(SmmuTest, CdTableSelectsStageOnePerSsid)
{
	pgtable::TableBuilder a = ok(pgtable::TableBuilder::create(
		pgtable::table_config(Format::arm_s1), &pool));
	pgtable::TableBuilder b = ok(pgtable::TableBuilder::create(
		pgtable::table_config(Format::arm_s1), &pool));
	ok(a.map(0x10000, kGuestBase + 0x200000, 0x1000,
		  pgtable::kMapRead | pgtable::kMapWrite | pgtable::kMapUser));
	ok(b.map(0x10000, kGuestBase + 0x300000, 0x1000, pgtable::kMapRead | pgtable::kMapUser));
	write_cd(kCdTable, a.root(), 1);
	write_cd(kCdTable + 64 * 2, b.root(), 2);
	const SmmuV3Data ste{{ste0(5, kCdTable, 3), 2 /* S1DSS: SSID 0 */}};
	const uint32_t nested = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, ste));
	EXPECT_FAILS(ctx.device_attach(dev, 2, nested), EINVAL, "is attached by RID");
	ok(ctx.device_attach(dev, std::nullopt, nested).status());

	EXPECT_EQ(xlate(dev, std::nullopt, 0x10010).host, ram.addr(0x200010)); // CD 0
	EXPECT_EQ(xlate(dev, 2, 0x10010).host, ram.addr(0x300010));           // CD 2
	EXPECT_EQ(xlate(dev, 2, 0x10010, pgtable::kAccessWrite).fault, pgtable::FaultKind::permission);
	EXPECT_EQ(xlate(dev, 1, 0x10010).fault, pgtable::FaultKind::bad_config);  // CD 1 invalid
	EXPECT_EQ(xlate(dev, 8, 0x10010).fault, pgtable::FaultKind::bad_config);  // beyond S1CDMax
}

/*
 * A worker's PASID/config-cache miss on an SSID reads the CD itself, as the SMMU does: the
 * published route answers while a control call holds the context's lock (here the
 * Inspector holds it; published_route() taking it would deadlock this thread).
 */
TEST_F(SmmuTest, PublishedRouteReadsCdsWithoutTheLock)
{
	pgtable::TableBuilder a = ok(pgtable::TableBuilder::create(
		pgtable::table_config(Format::arm_s1), &pool));
	ok(a.map(0x10000, kGuestBase + 0x300000, 0x1000, pgtable::kMapRead | pgtable::kMapUser));
	write_cd(kCdTable + 64 * 2, a.root(), 2);
	const SmmuV3Data ste{{ste0(5, kCdTable, 3), 2 /* S1DSS: SSID 0 */}};
	const uint32_t nested = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, ste));
	ok(ctx.device_attach(dev, std::nullopt, nested).status());

	iotlb::Route cd2, cd1, beyond;
	{
		Inspector look(ctx);
		ASSERT_EQ(ctx.published_route(dev, 2, &cd2), Ctx::RouteLookup::found);
		ASSERT_EQ(ctx.published_route(dev, 1, &cd1), Ctx::RouteLookup::found);
		ASSERT_EQ(ctx.published_route(dev, 8, &beyond), Ctx::RouteLookup::found);
	}
	pgtable::WalkResult w;
	ASSERT_FALSE(cd2.refuses(pgtable::kAccessRead, &w));
	w = pgtable::walk(cd2.translation(), 0x10010, pgtable::kAccessRead);
	ASSERT_TRUE(w.ok());
	EXPECT_EQ(w.out, ram.addr(0x300010));
	EXPECT_EQ(cd2.asid, 2u); // tagged with the CD's ASID
	EXPECT_EQ(cd1.blocked, pgtable::FaultKind::bad_config);    // CD 1 invalid
	EXPECT_EQ(beyond.blocked, pgtable::FaultKind::bad_config); // beyond S1CDMax
	// The same answers as the control path's own translation.
	EXPECT_EQ(xlate(dev, 2, 0x10010).host, ram.addr(0x300010));
	EXPECT_EQ(xlate(dev, 1, 0x10010).fault, pgtable::FaultKind::bad_config);
}

TEST_F(SmmuTest, TwoLevelCdTableAndBypassAndAbort)
{
	pgtable::TableBuilder a = ok(pgtable::TableBuilder::create(
		pgtable::table_config(Format::arm_s1), &pool));
	ok(a.map(0x10000, kGuestBase + 0x200000, 0x1000, pgtable::kMapRead | pgtable::kMapUser));
	// S1Fmt 1: L1 descriptors, each pointing at 64 CDs. SSID 70 = L1[1], CD 6.
	const uint64_t l1 = kCdTable, l2 = kCdTable + 0x1000;
	GuestMemory::store_le64(ram.at(l1 + 8 - kGuestBase), l2 | 1);
	write_cd(l2 + 6 * 64, a.root(), 9);
	const uint32_t two = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0,
						      SmmuV3Data{{ste0(5, l1, 8, 1), 0}}));
	ok(ctx.device_attach(dev, std::nullopt, two).status());
	EXPECT_EQ(xlate(dev, 70, 0x10000).host, ram.addr(0x200000));
	EXPECT_EQ(xlate(dev, 6, 0x10000).fault, pgtable::FaultKind::bad_config); // L1[0] invalid
	EXPECT_EQ(xlate(dev, std::nullopt, 0x10000).fault, pgtable::FaultKind::not_attached);

	const uint32_t bypass =
		ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, SmmuV3Data{{ste0(4, 0, 0), 0}}));
	ok(ctx.device_attach(dev, std::nullopt, bypass).status());
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000).host, buf.addr()); // stage 2 only
	const uint32_t abort =
		ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, SmmuV3Data{{ste0(0, 0, 0), 0}}));
	ok(ctx.device_attach(dev, std::nullopt, abort).status());
	EXPECT_EQ(xlate(dev, std::nullopt, 0x100000).fault, pgtable::FaultKind::not_attached);

	EXPECT_FAILS(ctx.hwpt_alloc_nested(dev, parent, 0, 0, SmmuV3Data{{ste0(6, 0, 0), 0}}),
		     EIO, "STE Config 6");
	EXPECT_FAILS(ctx.hwpt_alloc_nested(dev, parent, 0, 0,
					   SmmuV3Data{{ste0(5, 0, 0), 1ull << 40}}),
		     EIO, "fields a guest may not set");
}

} // namespace
} // namespace iodp::ctl::test

namespace iodp::ctl::test {
namespace {

/** Control calls from several threads on one context: each sees its own work intact. */
TEST(CtlThreads, ConcurrentMapUnmapTranslate)
{
	Ctx ctx;
	HostBuffer buf(4u << 20);
	const uint32_t ioas = ok(ctx.ioas_alloc());
	const uint32_t dev = ok(ctx.device_create(vtd_device("emul0")));
	ok(ctx.device_attach(dev, std::nullopt, ioas).status());
	std::atomic<int> errors{0};
	auto worker = [&](int t) {
		const uint64_t base = 0x10000000ull * (t + 1);
		for (int i = 0; i < 200; i++) {
			const uint64_t iova = base + (i % 8) * 0x10000;
			std::byte *host = buf.at((t * 8 + i % 8) * 0x10000);
			if (!ctx.ioas_map(ioas, kFixedRW, iova, host, 0x10000).ok())
				errors++;
			Result<Translated> r = ctx.translate(dev, std::nullopt, iova + 0x10,
							     pgtable::kAccessRead);
			if (!r.ok() || r->host != reinterpret_cast<uintptr_t>(host) + 0x10)
				errors++;
			Result<uint64_t> u = ctx.ioas_unmap(ioas, iova, 0x10000);
			if (!u.ok() || *u != 0x10000)
				errors++;
		}
	};
	std::thread a(worker, 0), b(worker, 1), c(worker, 2);
	a.join();
	b.join();
	c.join();
	EXPECT_EQ(errors.load(), 0);
	EXPECT_EQ(ok(ctx.object_info(ioas)).mappings, 0u);
}

/* Workers: routes, invalidation fan-out, sync ------------------------------------------ */

/** One worker shard registered with a context; offline unless a test says otherwise. */
struct Worker {
	explicit Worker(Ctx &c) : ctx(c)
	{
		id = ok(ctx.coherence().register_worker(&shard));
		ctx.coherence().offline(id);
	}
	~Worker() { ctx.coherence().unregister_worker(id); }

	/** What the shard answers for @p reqs on (dev, pasid), resolving on a config miss. */
	std::vector<pgtable::WalkResult> translate(uint32_t dev, std::optional<uint32_t> pasid,
						   std::vector<iotlb::Query> reqs)
	{
		const uint32_t key = pasid ? *pasid : iotlb::kNoPasid;
		const iotlb::CachedRoute *r = shard.route_lookup(dev, key);
		if (r == nullptr)
			r = shard.route_fill(dev, key, ok(ctx.resolve(dev, pasid)));
		std::vector<pgtable::WalkResult> out(reqs.size());
		shard.translate(*r, reqs.data(), reqs.size(), out.data());
		return out;
	}

	Ctx &ctx;
	iotlb::Shard shard = std::move(*iotlb::Shard::create({1024, 256, 16}));
	unsigned id = 0;
};

/** The shard's answers agree with the control path's, request by request. */
void expect_same_answers(Ctx &ctx, Worker &w, uint32_t dev, std::optional<uint32_t> pasid,
			 const std::vector<iotlb::Query> &reqs)
{
	for (int pass = 0; pass < 2; pass++) { // cold, then from the caches
		const std::vector<pgtable::WalkResult> got = w.translate(dev, pasid, reqs);
		for (size_t i = 0; i < reqs.size(); i++) {
			const Translated t = ok(ctx.translate(dev, pasid, reqs[i].iova,
							      reqs[i].access));
			EXPECT_EQ(static_cast<int>(got[i].fault), static_cast<int>(t.fault))
				<< std::hex << "0x" << reqs[i].iova << " pass " << pass;
			if (t.fault == pgtable::FaultKind::none) {
				EXPECT_EQ(got[i].out, t.host) << std::hex << "0x" << reqs[i].iova;
			}
		}
	}
}

TEST_F(NestedTest, WorkerRoutesAnswerAsTheControlPathDoes)
{
	const uint32_t dev = vtd_nested().dev;
	ok(ctx.device_attach(dev, std::nullopt, ioas).status());
	Worker w(ctx);
	const std::vector<iotlb::Query> s1_reqs = {
		{0x7f0000001008, pgtable::kAccessWrite},
		{0x7f0000000010, pgtable::kAccessRead},
		{0x7f0000002000, pgtable::kAccessRead},                       // not mapped
		{0x7f0000001008, pgtable::kAccessRead | pgtable::kAccessPriv}, // no SRE
	};
	expect_same_answers(ctx, w, dev, 4, s1_reqs);
	expect_same_answers(ctx, w, dev, 9, s1_reqs); // PASID 9 is not attached
	expect_same_answers(ctx, w, dev, std::nullopt,
			    {{0x100010, pgtable::kAccessWrite}, {0x900000, pgtable::kAccessRead}});
}

TEST_F(SmmuTest, WorkerRoutesReadTheCdOnceAndAnswerAsTheControlPathDoes)
{
	pgtable::TableBuilder a = ok(pgtable::TableBuilder::create(
		pgtable::table_config(Format::arm_s1), &pool));
	ok(a.map(0x10000, kGuestBase + 0x200000, 0x1000,
		  pgtable::kMapRead | pgtable::kMapWrite | pgtable::kMapUser));
	write_cd(kCdTable + 64 * 2, a.root(), 2);
	const SmmuV3Data ste{{ste0(5, kCdTable, 3), 2}};
	const uint32_t nested = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, ste));
	ok(ctx.device_attach(dev, std::nullopt, nested).status());
	Worker w(ctx);
	const std::vector<iotlb::Query> reqs = {{0x10008, pgtable::kAccessWrite},
						  {0x11000, pgtable::kAccessRead}};
	expect_same_answers(ctx, w, dev, 2, reqs);
	expect_same_answers(ctx, w, dev, 1, reqs); // SSID 1: an invalid CD
	// The guest rewrites SSID 2's CD; the cached route keeps the old one until CFGI_CD.
	write_cd(kCdTable + 64 * 2, a.root(), 2, false);
	EXPECT_TRUE(w.translate(dev, 2, reqs)[0].ok()) << "the config cache does cache";
	iodp_hwpt_arm_smmuv3_invalidate cfgi{};
	cfgi.cmd[0] = 0x05 | (2ull << 12) | (uint64_t{0} << 32); // CFGI_CD, SSID 2, SID 0
	uint32_t handled = 0;
	ok(ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_ARM_SMMUV3, &cfgi, sizeof(cfgi),
			       1, &handled));
	ctx.coherence().online(w.id); // drains what was posted while it was offline
	EXPECT_EQ(w.translate(dev, 2, reqs)[0].fault, pgtable::FaultKind::bad_config);
}

TEST_F(CtlTest, UnmapInvalidatesTheRangeAndReportsDeviceTlbs)
{
	const uint32_t d1 = device(vtd_device("emul1")), d2 = device(vtd_device("emul2"));
	const uint32_t d3 = device(vtd_device("emul3"));
	const uint32_t hwpt = ok(ctx.device_attach(d1, std::nullopt, ioas));
	ok(ctx.device_attach(d2, std::nullopt, ioas).status());
	const uint32_t other = ok(ctx.ioas_alloc());
	ok(ctx.device_attach(d3, std::nullopt, other).status());
	std::vector<inval::Descriptor> seen;
	std::vector<uint32_t> atc;
	ctx.set_invalidation_sink([&](const inval::Descriptor &d) { seen.push_back(d); });
	ctx.set_device_tlb_handler([&](uint32_t dev, const inval::Descriptor &) {
		atc.push_back(dev);
	});
	ok(ctx.ioas_map(ioas, kFixedRW, 0x800000, buf.at(2u << 20), 0x2000).status());
	EXPECT_TRUE(seen.empty()) << "a new mapping replaces nothing cached";
	ok(ctx.ioas_unmap(ioas, 0x800000, 0x2000).status());
	ASSERT_EQ(seen.size(), 1u);
	EXPECT_EQ(seen[0].domain, hwpt);
	EXPECT_EQ(seen[0].match, inval::kMatchDomain | inval::kMatchRange | inval::kMatchStage2);
	EXPECT_EQ(seen[0].addr, 0x800000u);
	EXPECT_EQ(seen[0].size, 0x2000u);
	EXPECT_EQ(atc, (std::vector<uint32_t>{d1, d2})) << "only devices behind the domain";
}

TEST_F(CtlTest, AnIdleWorkerHoldsNoSyncUpAndCatchesUpWhenBack)
{
	const uint32_t dev = device(vtd_device("emul0"));
	ok(ctx.device_attach(dev, std::nullopt, ioas).status());
	Worker w(ctx);
	ctx.coherence().online(w.id);
	ASSERT_TRUE(w.translate(dev, std::nullopt, {{0x100000, pgtable::kAccessRead}})[0].ok());
	ctx.coherence().quiescent(w.id);
	ctx.coherence().offline(w.id);
	// Offline: neither the unmap's sync nor the detach's waits for it.
	ok(ctx.ioas_unmap(ioas, 0x100000, 2u << 20).status());
	ok(ctx.device_detach(dev, std::nullopt));
	ctx.coherence().online(w.id);
	EXPECT_EQ(w.shard.route_lookup(dev, iotlb::kNoPasid), nullptr) << "route dropped";
	EXPECT_EQ(w.translate(dev, std::nullopt, {{0x100000, pgtable::kAccessRead}})[0].fault,
		  pgtable::FaultKind::not_attached);
	ctx.coherence().offline(w.id);
}

TEST_F(CtlTest, ASyncWaitsForABusyWorkerToFinishItsBurst)
{
	const uint32_t dev = device(vtd_device("emul0"));
	ok(ctx.device_attach(dev, std::nullopt, ioas).status());
	Worker w(ctx);
	ctx.coherence().online(w.id);
	ASSERT_TRUE(w.translate(dev, std::nullopt, {{0x100000, pgtable::kAccessRead}})[0].ok());
	// The worker is inside a burst (no quiescent state yet): the unmap must not return.
	std::atomic<bool> returned{false};
	std::thread control([&] {
		ok(ctx.ioas_unmap(ioas, 0x100000, 2u << 20).status());
		returned = true;
	});
	std::this_thread::sleep_for(std::chrono::milliseconds(50));
	EXPECT_FALSE(returned.load());
	// The stale entry is still usable inside this burst (the unmap has not returned)...
	EXPECT_TRUE(w.translate(dev, std::nullopt, {{0x100000, pgtable::kAccessRead}})[0].ok());
	ctx.coherence().quiescent(w.id);
	control.join();
	EXPECT_TRUE(returned.load());
	// ...and the next burst drains first: not any more.
	ctx.coherence().drain(w.id);
	EXPECT_EQ(w.translate(dev, std::nullopt, {{0x100000, pgtable::kAccessRead}})[0].fault,
		  pgtable::FaultKind::not_present);
	ctx.coherence().offline(w.id);
}

} // namespace
} // namespace iodp::ctl::test
