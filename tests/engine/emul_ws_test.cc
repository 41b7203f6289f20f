/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The emulated device's documented ws range works, or is refused up front with the real
 * limit: no working set reaches an MSI window, and a 4 KiB-page table that cannot fit the
 * context's table pool is refused when the device is created, naming the largest ws that
 * fits (not halfway through mapping it).
 */
#include "../ctl/ctl_fixture.h"

#include <iodp/dev.h>
#include <iodp/emul.h>

#include <gtest/gtest.h>

namespace iodp::ctl::test {
namespace {

struct EmulWs : ::testing::Test {
	dev::Registry reg;
	Ctx ctx;
	void SetUp() override { ASSERT_TRUE(reg.add(emul::driver()).ok()); }
};

/** 3 GiB from IOVA 1 GiB used to cover the VT-d MSI window at 0xfee00000. */
TEST_F(EmulWs, LargeWorkingSetsClearTheMsiWindow)
{
	for (const char *args : {"emul0,format=vtd,ws=3G", "emul1,format=vtd,ws=3G,pgsize=2m",
				 "emul2,format=vtd-nested,ws=3G", "emul3,format=smmu-nested,ws=3G"}) {
		Result<std::unique_ptr<dev::Device>> d = reg.create(ctx, args);
		EXPECT_TRUE(d.ok()) << args << ": " << d.status().message();
	}
}

TEST_F(EmulWs, TablePoolLimitIsCheckedUpFront)
{
	EXPECT_FAILS(reg.create(ctx, "emul0,format=smmu,ws=4G"), EINVAL,
		     "emul0: ws=4096M with format=smmu and pgsize=4k needs 8240 KiB of page "
		     "tables; the table pool holds 8192 KiB: ws up to 4032M");
	EXPECT_FAILS(reg.create(ctx, "emul1,format=vtd,ws=64G"), EINVAL, "ws up to 4032M");
	EXPECT_TRUE(reg.create(ctx, "emul2,format=smmu,ws=4032M").ok());
	// A bigger pool moves the limit.
	CtxConfig big;
	big.table_pool_bytes = 16u << 20;
	Ctx roomy(big);
	Result<std::unique_ptr<dev::Device>> d = reg.create(roomy, "emul3,format=smmu,ws=4G");
	EXPECT_TRUE(d.ok()) << d.status().message();
}

} // namespace
} // namespace iodp::ctl::test
