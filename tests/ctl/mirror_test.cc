/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * IOAS mirrors (ctl::IoasMirror): the seam where IOAS changes become kernel calls for real
 * devices. A recording mirror with fault injection stands in for the kernel.
 */
#include "ctl_fixture.h"

#include <map>

namespace iodp::ctl::test {
namespace {

/** A mirror that keeps what it maps, refuses on request, and logs every call. */
class FakeMirror : public IoasMirror {
public:
	std::string name() const override { return "fake kernel"; }
	Status map(const Mapping &m) override
	{
		log.push_back("map " + std::to_string(m.iova));
		if (fail_maps_after >= 0 && maps_done >= fail_maps_after)
			return Status::error(-ENOSPC, "fake kernel: full");
		if (mapped.count(m.iova) != 0)
			return Status::error(-EEXIST, "fake kernel: already mapped");
		maps_done++;
		mapped[m.iova] = m;
		return {};
	}
	Status unmap(const Mapping &m) override
	{
		log.push_back("unmap " + std::to_string(m.iova));
		if (fail_unmap)
			return Status::error(-EIO, "fake kernel: unmap failed");
		if (mapped.erase(m.iova) == 0)
			return Status::error(-ENOENT, "fake kernel: nothing there");
		return {};
	}
	std::vector<IovaRange> ranges() const override { return range_list; }

	std::map<uint64_t, Mapping> mapped;
	std::vector<std::string> log;
	std::vector<IovaRange> range_list{{0, 0xfedfffff}, {0xfef00000, (1ull << 39) - 1}};
	int fail_maps_after = -1;
	int maps_done = 0;
	bool fail_unmap = false;
};

class MirrorTest : public ::testing::Test {
protected:
	Ctx ctx;
	HostBuffer buf{1 << 20};
	uint32_t ioas = 0;
	uint32_t dev = 0;
	FakeMirror mirror;

	void SetUp() override
	{
		ioas = ok(ctx.ioas_alloc());
		dev = ok(ctx.device_create(vtd_device("emul")));
		ok(ctx.device_attach(dev, std::nullopt, ioas));
	}
	bool translates(uint64_t iova)
	{
		Result<Translated> t = ctx.translate(dev, std::nullopt, iova, pgtable::kAccessRead);
		return t.ok() && t->fault == pgtable::FaultKind::none;
	}
};

TEST_F(MirrorTest, AttachReplaysAndFollowsMapUnmapCopy)
{
	ok(ctx.ioas_map(ioas, kFixedRW, 0x10000, buf.at(0), 0x2000));
	ok(ctx.ioas_attach_mirror(ioas, &mirror));
	ASSERT_EQ(mirror.mapped.count(0x10000), 1u);
	EXPECT_EQ(mirror.mapped[0x10000].length, 0x2000u);
	ok(ctx.ioas_map(ioas, kFixedRW, 0x20000, buf.at(0x2000), 0x1000));
	EXPECT_EQ(mirror.mapped.count(0x20000), 1u);
	// Copy from another IOAS: each new mapping reaches the mirror.
	const uint32_t src = ok(ctx.ioas_alloc());
	ok(ctx.ioas_map(src, kFixedRW, 0x90000, buf.at(0x8000), 0x1000));
	ok(ctx.ioas_copy(ioas, src, kFixedRW, 0x30000, 0x90000, 0x1000));
	EXPECT_EQ(mirror.mapped.at(0x30000).host, buf.at(0x8000));
	EXPECT_EQ(ok(ctx.ioas_unmap(ioas, 0x10000, 0x2000)), 0x2000u);
	EXPECT_EQ(mirror.mapped.count(0x10000), 0u);
	EXPECT_FALSE(translates(0x10000));
	// Unmap all: the kernel's copy goes before each iodp mapping.
	EXPECT_EQ(ok(ctx.ioas_unmap(ioas, 0, UINT64_MAX)), 0x2000u);
	EXPECT_TRUE(mirror.mapped.empty());
	ok(ctx.ioas_detach_mirror(ioas, &mirror));
	ok(ctx.ioas_map(ioas, kFixedRW, 0x40000, buf.at(0), 0x1000));
	EXPECT_TRUE(mirror.mapped.empty());
}

TEST_F(MirrorTest, FailedKernelMapLeavesNothingMapped)
{
	ok(ctx.ioas_attach_mirror(ioas, &mirror));
	mirror.fail_maps_after = 1;
	ok(ctx.ioas_map(ioas, kFixedRW, 0x10000, buf.at(0), 0x1000));
	EXPECT_FAILS(ctx.ioas_map(ioas, kFixedRW, 0x20000, buf.at(0x1000), 0x1000), ENOSPC,
		     "ioas " + std::to_string(ioas) + ": fake kernel: full");
	EXPECT_FALSE(translates(0x20000));
	// The same IOVA maps once the kernel has room: iodp kept nothing of the failure.
	mirror.fail_maps_after = -1;
	ok(ctx.ioas_map(ioas, kFixedRW, 0x20000, buf.at(0x1000), 0x1000));
	EXPECT_TRUE(translates(0x20000));
	// A copy of two pieces whose second fails: neither stays, in iodp or the mirror.
	const uint32_t src = ok(ctx.ioas_alloc());
	ok(ctx.ioas_map(src, kFixedRW, 0x90000, buf.at(0x8000), 0x1000));
	ok(ctx.ioas_map(src, kFixedRW, 0x91000, buf.at(0x20000), 0x1000));
	mirror.fail_maps_after = mirror.maps_done + 1;
	EXPECT_FAILS(ctx.ioas_copy(ioas, src, kFixedRW, 0x50000, 0x90000, 0x2000), ENOSPC, "full");
	EXPECT_EQ(mirror.mapped.count(0x50000), 0u);
	EXPECT_FALSE(translates(0x50000));
	EXPECT_FALSE(translates(0x51000));
}

TEST_F(MirrorTest, FailedKernelUnmapKeepsWhatItCouldNotUnmap)
{
	ok(ctx.ioas_map(ioas, kFixedRW, 0x10000, buf.at(0), 0x1000));
	ok(ctx.ioas_attach_mirror(ioas, &mirror));
	mirror.fail_unmap = true;
	EXPECT_FAILS(ctx.ioas_unmap(ioas, 0x10000, 0x1000), EIO, "unmap failed");
	// Never a mapping the kernel keeps and iodp does not.
	EXPECT_TRUE(translates(0x10000));
	EXPECT_EQ(mirror.mapped.count(0x10000), 1u);
	mirror.fail_unmap = false;
	EXPECT_EQ(ok(ctx.ioas_unmap(ioas, 0x10000, 0x1000)), 0x1000u);
}

TEST_F(MirrorTest, RangesNarrowTheIoas)
{
	ok(ctx.ioas_attach_mirror(ioas, &mirror));
	EXPECT_FAILS(ctx.ioas_map(ioas, kFixedRW, 1ull << 39, buf.at(0), 0x1000), EINVAL,
		     "reserved by fake kernel: the kernel maps only 0x0-0xfedfffff, "
		     "0xfef00000-0x7fffffffff");
	EXPECT_TRUE(mirror.log.empty());
	const std::vector<IovaRange> usable = ok(ctx.ioas_iova_ranges(ioas, nullptr));
	ASSERT_FALSE(usable.empty());
	EXPECT_EQ(usable.back().last, (1ull << 39) - 1);
	// Picked IOVAs stay inside too.
	const uint64_t iova = ok(ctx.ioas_map(ioas, kRW, 0, buf.at(0), 0x1000));
	EXPECT_LT(iova, 1ull << 39);
	EXPECT_EQ(mirror.mapped.count(iova), 1u);
	// Allowed ranges the kernel cannot map are refused.
	const IovaRange allow[] = {{1ull << 38, (1ull << 40) - 1}};
	EXPECT_FAILS(ctx.ioas_allow_iovas(ioas, allow), EADDRINUSE, "fake kernel");
}

TEST_F(MirrorTest, AttachRefusesWhatTheKernelCannotHoldAndUndoesAFailedReplay)
{
	ok(ctx.ioas_map(ioas, kFixedRW, 1ull << 40, buf.at(0), 0x1000));
	EXPECT_FAILS(ctx.ioas_attach_mirror(ioas, &mirror), EADDRINUSE,
		     "mapping 0x10000000000+0x1000 is outside the ranges it maps");
	ok(ctx.ioas_unmap(ioas, 1ull << 40, 0x1000));
	ok(ctx.ioas_map(ioas, kFixedRW, 0x10000, buf.at(0), 0x1000));
	ok(ctx.ioas_map(ioas, kFixedRW, 0x20000, buf.at(0x1000), 0x1000));
	mirror.fail_maps_after = 1;
	EXPECT_FAILS(ctx.ioas_attach_mirror(ioas, &mirror), ENOSPC, "full");
	EXPECT_TRUE(mirror.mapped.empty());
	// Not attached: nothing reaches it, and the IOAS is not held.
	EXPECT_FAILS(ctx.ioas_detach_mirror(ioas, &mirror), ENOENT, "not attached");
}

TEST_F(MirrorTest, AMirroredIoasIsBusy)
{
	ok(ctx.device_detach(dev, std::nullopt));
	ok(ctx.ioas_attach_mirror(ioas, &mirror));
	EXPECT_FAILS(ctx.ioas_attach_mirror(ioas, &mirror), EEXIST, "already attached");
	EXPECT_FAILS(ctx.destroy(ioas), EBUSY, "is mirrored into fake kernel");
	ok(ctx.ioas_detach_mirror(ioas, &mirror));
	ok(ctx.destroy(dev));
	ok(ctx.destroy(ioas));
}

} // namespace
} // namespace iodp::ctl::test
