/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The topology recipes (lib/topo): each one translates as its guest expects, a failure
 * leaves nothing behind, and a Domain's end leaves the context as it was.
 */
#include <iodp/mem.h>
#include <iodp/topo.h>

#include <gtest/gtest.h>

#include <cerrno>

namespace iodp {
namespace {

constexpr uint64_t kGpa = 0x40000000;
constexpr uint64_t kRam = 8u << 20;
constexpr uint64_t kTables = 4u << 20; ///< guest tables in the upper half

struct TopoTest : ::testing::TestWithParam<topo::Kind> {
	ctl::Ctx ctx;
	GuestRam ram = std::move(*GuestRam::allocate(kRam));

	uint32_t device(ctl::IommuModel model)
	{
		ctl::DeviceSpec spec;
		spec.name = "dev0";
		spec.model = model;
		Result<uint32_t> id = ctx.device_create(spec);
		EXPECT_TRUE(id.ok()) << id.status().message();
		return id.ok() ? *id : 0;
	}
	topo::Recipe recipe(topo::Kind kind)
	{
		topo::Recipe r;
		r.kind = kind;
		r.host = ram.data();
		r.gpa = kGpa;
		r.bytes = kRam;
		r.tables_offset = kTables;
		if (kind == topo::Kind::vtd_nested)
			r.pasid = 7;
		return r;
	}
	static ctl::IommuModel model_of(topo::Kind kind)
	{
		return kind == topo::Kind::smmu_nested ? ctl::IommuModel::smmuv3
						       : ctl::IommuModel::vtd;
	}
};

TEST_P(TopoTest, TranslatesAsTheGuestSetItUpAndLeavesNothing)
{
	const topo::Kind kind = GetParam();
	const uint32_t dev = device(model_of(kind));
	const size_t before = ctx.object_count();
	{
		Result<std::unique_ptr<topo::Domain>> d = topo::Domain::build(ctx, dev, recipe(kind));
		ASSERT_TRUE(d.ok()) << d.status().message();
		topo::Domain &dom = **d;
		EXPECT_NE(dom.ioas(), 0u);
		EXPECT_NE(dom.hwpt(), 0u);
		uint64_t iova = kGpa + 0x3000; // paging: IOVA = guest-physical
		if (kind != topo::Kind::paging) {
			// The guest maps IOVA 0x10000 to guest page 0x3000 in its own stage 1.
			ASSERT_NE(dom.stage1(), nullptr);
			ASSERT_TRUE(dom.stage1()
					    ->map(0x10000, kGpa + 0x3000, 0x1000,
						  pgtable::kMapRead | pgtable::kMapWrite | pgtable::kMapUser)
					    .ok());
			iova = 0x10000;
			EXPECT_EQ(ctx.object_info(dom.hwpt())->type, ctl::ObjType::hwpt_nested);
			EXPECT_EQ(ctx.object_info(dom.hwpt())->parent, dom.parent());
		} else {
			EXPECT_EQ(dom.stage1(), nullptr);
			EXPECT_TRUE(ctx.object_info(dom.hwpt())->auto_domain);
		}
		Result<ctl::Translated> t = ctx.translate(dev, dom.pasid(), iova + 0x24,
							  pgtable::kAccessWrite);
		ASSERT_TRUE(t.ok()) << t.status().message();
		EXPECT_EQ(t->fault, pgtable::FaultKind::none);
		EXPECT_EQ(t->host, reinterpret_cast<uint64_t>(ram.data()) + 0x3024);
	}
	EXPECT_EQ(ctx.object_count(), before) << "the Domain's end destroys what it made";
	EXPECT_TRUE(ctx.destroy(dev).ok()) << "and detaches the device";
}

TEST_P(TopoTest, AFailureLeavesNothingBehind)
{
	const topo::Kind kind = GetParam();
	// A device behind the other IOMMU model: nested HWPTs refuse it; paging takes either.
	const uint32_t dev = device(kind == topo::Kind::vtd_nested ? ctl::IommuModel::smmuv3
								   : ctl::IommuModel::vtd);
	const size_t before = ctx.object_count();
	Result<std::unique_ptr<topo::Domain>> d = topo::Domain::build(ctx, dev, recipe(kind));
	if (kind == topo::Kind::paging)
		EXPECT_TRUE(d.ok());
	else
		EXPECT_FALSE(d.ok());
	d = Status{};
	EXPECT_EQ(ctx.object_count(), before);
	topo::Recipe bad = recipe(kind);
	bad.tables_offset = kRam; // no room for the guest's tables
	if (kind != topo::Kind::paging) {
		Result<std::unique_ptr<topo::Domain>> b = topo::Domain::build(ctx, dev, bad);
		EXPECT_EQ(b.status().code(), -EINVAL);
		EXPECT_NE(b.status().message().find("two pages"), std::string::npos);
	}
	bad = recipe(kind);
	bad.bytes = 100; // not whole pages
	EXPECT_EQ(topo::Domain::build(ctx, dev, bad).status().code(), -EINVAL);
	EXPECT_EQ(ctx.object_count(), before);
}

INSTANTIATE_TEST_SUITE_P(Kinds, TopoTest,
			 ::testing::Values(topo::Kind::paging, topo::Kind::vtd_nested,
					   topo::Kind::smmu_nested),
			 [](const auto &info) {
				 std::string n = topo::kind_name(info.param);
				 for (char &c : n)
					 if (c == '-')
						 c = '_';
				 return n;
			 });

} // namespace
} // namespace iodp
