/* SPDX-License-Identifier: BSD-3-Clause */
/* Guest RAM from DPDK memory: needs an EAL, so it runs in its own process. */
#include <iodp/mem.h>

#include <gtest/gtest.h>

#include <rte_eal.h>

namespace iodp {
namespace {

TEST(GuestRamEal, AutomaticPrefersDpdkMemory)
{
	ASSERT_TRUE(dpdk_eal_running());
	Result<GuestRam> r = GuestRam::allocate(4 << 20);
	ASSERT_TRUE(r.ok()) << r.status().message();
	EXPECT_EQ(r->backing(), RamBacking::dpdk);
	EXPECT_EQ(reinterpret_cast<uintptr_t>(r->data()) % (2 << 20), 0u);
	EXPECT_EQ(r->data()[(4 << 20) - 1], std::byte{0});

	GuestMemory m;
	ASSERT_TRUE(m.add_region(0x80000000, r->size(), r->data()).ok());
	ASSERT_TRUE(m.write_u64(0x80000000 + 0x3ffff8, 7));
	uint64_t v = 0;
	ASSERT_TRUE(m.read_u64(0x80000000 + 0x3ffff8, &v));
	EXPECT_EQ(v, 7u);
	EXPECT_NE(ram_backing_name(r->backing()), nullptr);

	Result<GuestRam> a = GuestRam::allocate(4096, GuestRam::Source::anonymous);
	ASSERT_TRUE(a.ok());
	EXPECT_EQ(a->backing(), RamBacking::anonymous);
}

} // namespace
} // namespace iodp

int main(int argc, char **argv)
{
	testing::InitGoogleTest(&argc, argv);
	// Never probe PCI; no hugepages needed for this test; one core.
	char arg0[] = "mem_eal_test", a1[] = "--no-pci", a2[] = "--no-huge", a3[] = "-l",
	     a4[] = "0", a5[] = "-m", a6[] = "64", a7[] = "--log-level=error",
	     a8[] = "--file-prefix=iodp_mem_eal_test";
	char *eal_argv[] = {arg0, a1, a2, a3, a4, a5, a6, a7, a8};
	if (rte_eal_init(9, eal_argv) < 0) {
		fprintf(stderr, "mem_eal_test: rte_eal_init failed\n");
		return 1;
	}
	const int rc = RUN_ALL_TESTS();
	rte_eal_cleanup();
	return rc;
}
