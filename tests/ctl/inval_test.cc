/* SPDX-License-Identifier: BSD-3-Clause */
/* lib/inval decoders as the control plane uses them, and nested HWPT invalidation arrays. */
#include "ctl_fixture.h"

#include <iodp/iodp.h>
#include <iodp/inval.h>

#include <cstring>
#include <vector>

namespace iodp::ctl::test {
namespace {

using namespace iodp::inval;

Descriptor vtd(uint64_t addr, uint64_t npages, uint32_t flags = 0)
{
	Descriptor d;
	Status s = decode_iommufd_vtd_s1(addr, npages, flags, 0, 7, &d);
	EXPECT_TRUE(s.ok()) << s.message();
	return d;
}

Descriptor smmu(uint64_t w0, uint64_t w1, bool subset = false, uint32_t vmid = 0)
{
	Descriptor d;
	const uint64_t cmd[2] = {w0, w1};
	Status s = decode_smmuv3_cmd(cmd, subset, vmid, &d);
	EXPECT_TRUE(s.ok()) << s.message();
	return d;
}

TEST(Inval, VtdS1Entries)
{
	Descriptor d = vtd(0x5000, 3, IODP_VTD_INV_FLAGS_LEAF);
	EXPECT_EQ(d.match, kMatchDomain | kMatchRange);
	EXPECT_EQ(d.domain, 7u);
	EXPECT_EQ(d.addr, 0x5000u);
	EXPECT_EQ(d.size, 0x3000u);
	EXPECT_TRUE(d.leaf_only);
	EXPECT_EQ(d.targets, kTargetIotlb | kTargetWalkCache | kTargetDeviceTlb);
	EXPECT_EQ(describe(d), "iotlb+walk+devtlb domain=7 range=0x5000+0x3000 leaf");

	d = vtd(0, UINT64_MAX);
	EXPECT_EQ(d.match, kMatchDomain) << "the whole domain, no range";
	// A count that overflows the address space covers the rest of it, never less.
	d = vtd(0x10000, UINT64_MAX - 1);
	EXPECT_EQ(d.addr + d.size, 0u);

	Descriptor out;
	EXPECT_EQ(decode_iommufd_vtd_s1(0x5800, 1, 0, 0, 7, &out).code(), -EINVAL);
	EXPECT_EQ(decode_iommufd_vtd_s1(0x5000, UINT64_MAX, 0, 0, 7, &out).code(), -EINVAL);
	EXPECT_EQ(decode_iommufd_vtd_s1(0x5000, 0, 0, 0, 7, &out).code(), -EINVAL);
	EXPECT_EQ(decode_iommufd_vtd_s1(0x5000, 1, 2, 0, 7, &out).code(), -EOPNOTSUPP);
	EXPECT_EQ(decode_iommufd_vtd_s1(0x5000, 1, 0, 1, 7, &out).code(), -EOPNOTSUPP);
}

TEST(Inval, RangeOverlapIncludesLargePagesStartingOutside)
{
	Descriptor d = vtd(0x201000, 1);
	EXPECT_TRUE(d.overlaps(0x200000, 2u << 20)); // a 2 MiB page whose base is below
	EXPECT_FALSE(d.overlaps(0x400000, 0x1000));
	EXPECT_FALSE(d.overlaps(0x200000, 0x1000));
}

TEST(Inval, SmmuTlbiRange)
{
	// TLBI_NH_VA, ASID 5, VMID 3: TG 4K, SCALE 1, NUM 2 -> 3 * 2 = 6 pages; TTL 3; leaf.
	const uint64_t w0 = 0x12 | (2ull << 12) | (1ull << 20) | (3ull << 32) | (5ull << 48);
	const uint64_t w1 = 1 | (3ull << 8) | (1ull << 10) | 0x7000;
	Descriptor d = smmu(w0, w1);
	EXPECT_EQ(d.match, kMatchDomain | kMatchAsid | kMatchRange);
	EXPECT_EQ(d.domain, 3u);
	EXPECT_EQ(d.asid, 5u);
	EXPECT_EQ(d.addr, 0x7000u);
	EXPECT_EQ(d.size, 6u * 4096);
	EXPECT_EQ(d.granule_shift, 12);
	EXPECT_EQ(d.level, 3);
	EXPECT_TRUE(d.leaf_only);
	// From a guest the VMID is the nested domain's, whatever the command says.
	EXPECT_EQ(smmu(w0, w1, true, 9).domain, 9u);
	// TG 0: one address; any leaf containing it overlaps its 4 KiB page.
	d = smmu(0x13, 0x12345000);
	EXPECT_EQ(d.match, kMatchDomain | kMatchRange);
	EXPECT_EQ(d.size, 4096u);
	EXPECT_TRUE(d.overlaps(0x12200000, 2u << 20));
	// 64K granule.
	d = smmu(0x12 | (1ull << 12), (3ull << 10) | 0x30000);
	EXPECT_EQ(d.addr, 0x30000u);
	EXPECT_EQ(d.size, 2u * 65536);
}

TEST(Inval, SmmuOtherCommands)
{
	EXPECT_EQ(smmu(0x05 | (4ull << 12) | (0x21ull << 32), 0).match,
		  kMatchDevice | kMatchPasid);
	EXPECT_EQ(smmu(0x05 | (4ull << 12) | (0x21ull << 32), 0).targets, kTargetConfig);
	EXPECT_EQ(smmu(0x06 | (0x21ull << 32), 0).match, kMatchDevice);
	EXPECT_EQ(smmu(0x03 | (0x21ull << 32), 0).device, 0x21u);
	EXPECT_EQ(smmu(0x10 | (4ull << 32), 0).match, kMatchDomain);
	EXPECT_EQ(smmu(0x30, 0).match, 0) << "NSNH_ALL from the host: everything";
	EXPECT_EQ(smmu(0x30, 0, true, 4).match, kMatchDomain) << "from a guest: its own domain";
	Descriptor d = smmu(0x2a | (2ull << 32), 0x40000000);
	EXPECT_EQ(d.match, kMatchDomain | kMatchStage2 | kMatchRange);
	d = smmu(0x40 | (0x21ull << 32), 52);
	EXPECT_EQ(d.match, kMatchDevice) << "SIZE 52: the whole ATC";
	EXPECT_EQ(d.targets, kTargetDeviceTlb);
	d = smmu(0x40 | (0x21ull << 32), 0x123000 | 4);
	EXPECT_EQ(d.addr, 0x120000u);
	EXPECT_EQ(d.size, 0x10000u);
	EXPECT_EQ(smmu(0x46, 0).op, Op::sync);

	Descriptor out;
	const uint64_t bad[2] = {0x7f, 0};
	EXPECT_EQ(decode_smmuv3_cmd(bad, false, 0, &out).code(), -EINVAL);
	const uint64_t resume[2] = {0x44, 0};
	EXPECT_EQ(decode_smmuv3_cmd(resume, false, 0, &out).code(), -EOPNOTSUPP);
	const uint64_t s2[2] = {0x2a, 0};
	EXPECT_EQ(decode_smmuv3_cmd(s2, true, 0, &out).code(), -EIO);
}

/** A VT-d nested HWPT on a new device of @p ctx; what it applies lands in @p seen. */
uint32_t nested_hwpt_feeding(Ctx &ctx, std::vector<Descriptor> &seen)
{
	const uint32_t ioas = ok(ctx.ioas_alloc());
	const uint32_t dev = ok(ctx.device_create(vtd_device("emul0")));
	const uint32_t parent =
		ok(ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0));
	const uint32_t nested = ok(ctx.hwpt_alloc_nested(dev, parent, 0, 0, VtdS1Data{0, 0, 48}));
	ctx.set_invalidation_sink([&seen](const Descriptor &d) { seen.push_back(d); });
	return nested;
}

/** The nested HWPT hands each decoded entry to the sink, in order, until a bad one. */
TEST(Inval, NestedHwptFeedsTheSink)
{
	Ctx ctx;
	std::vector<Descriptor> seen;
	const uint32_t nested = nested_hwpt_feeding(ctx, seen);

	struct Entry {
		iodp_hwpt_vtd_s1_invalidate e;
		uint64_t tail; // entry_len 32: 8 bytes iodp does not know
	} entries[3] = {{{0x1000, 1, 0, 0}, 0}, {{0, UINT64_MAX, 0, 0}, 0}, {{0x3000, 1, 0, 0}, 5}};
	uint32_t handled = 99;
	EXPECT_FAILS(ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_S1, entries,
					 sizeof(Entry), 3, &handled),
		     E2BIG, "entry 2: byte 24 past the 24 known is not zero");
	EXPECT_EQ(handled, 2u);
	ASSERT_EQ(seen.size(), 2u);
	EXPECT_EQ(seen[0].addr, 0x1000u);
	EXPECT_EQ(seen[0].domain, nested);
	EXPECT_EQ(seen[1].match, kMatchDomain);
	// entry_num 0 probes whether the type is supported.
	ok(ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_S1, nullptr, 24, 0, &handled));
	EXPECT_EQ(handled, 0u);
}

TEST(Inval, ArrayBoundsAsTheKernelCore)
{
	// hw_pagetable.c: an array of entries at NULL, of 0 or more than a page per entry, or of
	// more than 1 << 19 entries is EINVAL before the HWPT is looked up; nothing is applied.
	Ctx ctx;
	std::vector<Descriptor> seen;
	const uint32_t nested = nested_hwpt_feeding(ctx, seen);
	constexpr uint32_t vtd_s1 = IODP_HWPT_INVALIDATE_DATA_VTD_S1;
	std::vector<unsigned char> page(4097, 0);
	const iodp_hwpt_vtd_s1_invalidate one{0x1000, 1, 0, 0};
	std::memcpy(page.data(), &one, sizeof(one));
	uint32_t handled = 99;
	EXPECT_FAILS(ctx.hwpt_invalidate(nested, vtd_s1, nullptr, 24, 1, &handled), EINVAL,
		     "1 entries at data_uptr NULL");
	EXPECT_EQ(handled, 0u);
	EXPECT_FAILS(ctx.hwpt_invalidate(nested, vtd_s1, page.data(), 0, 1, &handled), EINVAL,
		     "entry_len 0 is not within 1..4096");
	EXPECT_FAILS(ctx.hwpt_invalidate(nested, vtd_s1, page.data(), 4097, 1, &handled), EINVAL,
		     "entry_len 4097 is not within 1..4096");
	EXPECT_FAILS(ctx.hwpt_invalidate(nested, vtd_s1, page.data(), 24, (1u << 19) + 1,
					 &handled),
		     EINVAL, "entry_num 524289 is over the 524288 one call takes");
	// Before the lookup: an unknown HWPT with a bad array is EINVAL, as in the kernel.
	EXPECT_FAILS(ctx.hwpt_invalidate(4242, vtd_s1, page.data(), 4097, 1, &handled), EINVAL,
		     "entry_len 4097");
	EXPECT_TRUE(seen.empty());
	// A page is the largest entry: the known 24 bytes, the rest zero.
	ok(ctx.hwpt_invalidate(nested, vtd_s1, page.data(), 4096, 1, &handled));
	EXPECT_EQ(handled, 1u);
	ASSERT_EQ(seen.size(), 1u);
	EXPECT_EQ(seen[0].addr, 0x1000u);
}

} // namespace
} // namespace iodp::ctl::test

namespace iodp::ctl::test {
namespace {

using namespace iodp::inval;

Descriptor qi(uint64_t qw0, uint64_t qw1 = 0)
{
	Descriptor d;
	const uint64_t desc[2] = {qw0, qw1};
	Status s = decode_vtd_qi(desc, &d);
	EXPECT_TRUE(s.ok()) << s.message();
	return d;
}

int qi_error(uint64_t qw0, uint64_t qw1 = 0)
{
	Descriptor d;
	const uint64_t desc[2] = {qw0, qw1};
	return decode_vtd_qi(desc, &d).code();
}

TEST(VtdQi, IotlbGranularities)
{
	EXPECT_EQ(qi(0x2 | (1 << 4)).match, 0) << "global";
	Descriptor d = qi(0x2 | (2 << 4) | (9ull << 16));
	EXPECT_EQ(d.match, kMatchDomain);
	EXPECT_EQ(d.domain, 9u);
	// Page-selective: AM 2 = four pages, IH = leaf only.
	d = qi(0x2 | (3 << 4) | (9ull << 16), 0x44000 | (1 << 6) | 2);
	EXPECT_EQ(d.match, kMatchDomain | kMatchRange);
	EXPECT_EQ(d.addr, 0x44000u);
	EXPECT_EQ(d.size, 0x4000u);
	EXPECT_TRUE(d.leaf_only);
	EXPECT_EQ(d.targets, kTargetIotlb | kTargetWalkCache);
	EXPECT_EQ(qi_error(0x2 | (3 << 4), 0x45000 | 2), -EINVAL) << "not aligned to 2^AM pages";
	EXPECT_EQ(qi_error(0x2), -EINVAL) << "granularity 0";
}

TEST(VtdQi, PasidScopes)
{
	Descriptor d = qi(0x6 | (2 << 4) | (3ull << 16) | (77ull << 32));
	EXPECT_EQ(d.match, kMatchDomain | kMatchPasid);
	EXPECT_EQ(d.pasid, 77u);
	d = qi(0x6 | (3 << 4) | (3ull << 16) | (77ull << 32), 0x200000 | 9);
	EXPECT_EQ(d.size, 2u << 20);
	EXPECT_EQ(qi_error(0x6 | (1 << 4)), -EINVAL);
	d = qi(0x7 | (1 << 4) | (3ull << 16) | (77ull << 32));
	EXPECT_EQ(d.targets, kTargetConfig);
	EXPECT_EQ(d.match, kMatchDomain | kMatchPasid);
	EXPECT_EQ(qi(0x7 | (0 << 4) | (3ull << 16)).match, kMatchDomain);
	EXPECT_EQ(qi(0x7 | (3 << 4)).match, 0);
	EXPECT_EQ(qi_error(0x7 | (2 << 4)), -EINVAL);
	d = qi(0x1 | (3 << 4) | (4ull << 16) | (0x10ull << 32));
	EXPECT_EQ(d.match, kMatchDomain | kMatchDevice);
	EXPECT_EQ(d.device, 0x10u);
}

TEST(VtdQi, DeviceTlbAndWait)
{
	Descriptor d = qi(0x3 | (0x18ull << 32), 0x5000);
	EXPECT_EQ(d.targets, kTargetDeviceTlb);
	EXPECT_EQ(d.device, 0x18u);
	EXPECT_EQ(d.size, 4096u);
	// S = 1 with ADDR bit 12 set and bit 13 clear: 16 KiB at 0x4000.
	d = qi(0x3 | (0x18ull << 32), 0x5000 | 1);
	EXPECT_EQ(d.addr, 0x4000u);
	EXPECT_EQ(d.size, 0x4000u);
	d = qi(0x8 | (0x18ull << 16) | (5ull << 32), 0x7000);
	EXPECT_EQ(d.match, kMatchDevice | kMatchPasid | kMatchRange);
	d = qi(0x5 | (1 << 5) | (0xabcdull << 32), 0x1000);
	EXPECT_EQ(d.op, Op::sync);
	EXPECT_EQ(d.sync_token, 0xabcdu);
	EXPECT_EQ(d.sync_addr, 0x1000u);
	EXPECT_EQ(qi_error(0x4), -EOPNOTSUPP);
	EXPECT_EQ(qi_error(0xf), -EINVAL);
}

} // namespace
} // namespace iodp::ctl::test
