/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/mem.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace iodp {
namespace {

TEST(GuestMemory, AddFindAndTranslate)
{
	std::vector<std::byte> a(0x2000), b(0x1000);
	GuestMemory m;
	ASSERT_TRUE(m.add_region(0x10000, a.size(), a.data()).ok());
	ASSERT_TRUE(m.add_region(0x1000, b.size(), b.data()).ok());
	ASSERT_EQ(m.regions().size(), 2u);
	EXPECT_EQ(m.regions()[0].gpa, 0x1000u); // kept sorted

	EXPECT_EQ(m.translate(0x1000, 8), b.data());
	EXPECT_EQ(m.translate(0x11ff8, 8), a.data() + 0x1ff8);
	EXPECT_EQ(m.translate(0x11ff9, 8), nullptr); // straddles the end
	EXPECT_EQ(m.translate(0x1ff8, 16), nullptr);
	EXPECT_EQ(m.translate(0x0fff, 1), nullptr);
	EXPECT_EQ(m.translate(0x12000, 1), nullptr);
	EXPECT_EQ(m.find(0x5000), nullptr);
}

TEST(GuestMemory, RejectsBadRegionsAndKeepsTheMap)
{
	std::vector<std::byte> a(0x2000);
	GuestMemory m;
	ASSERT_TRUE(m.add_region(0x10000, 0x2000, a.data()).ok());

	Status s = m.add_region(0x11000, 0x2000, a.data());
	EXPECT_EQ(s.code(), -EEXIST);
	EXPECT_NE(s.message().find("overlaps region 0x10000+0x2000"), std::string::npos)
		<< s.message();
	EXPECT_EQ(m.add_region(0xf000, 0x1001, a.data()).code(), -EEXIST);
	EXPECT_EQ(m.add_region(0, 0, a.data()).code(), -EINVAL);
	EXPECT_EQ(m.add_region(0, 0x1000, nullptr).code(), -EINVAL);
	EXPECT_EQ(m.add_region(~0ull - 0xfff + 1, 0x2000, a.data()).code(), -EINVAL); // wraps
	EXPECT_EQ(m.regions().size(), 1u);

	EXPECT_EQ(m.remove_region(0x10001).code(), -ENOENT);
	EXPECT_TRUE(m.remove_region(0x10000).ok());
	EXPECT_TRUE(m.regions().empty());
}

TEST(GuestMemory, LittleEndianReadsAndWritesAreBoundsChecked)
{
	std::vector<std::byte> a(0x1000);
	GuestMemory m;
	ASSERT_TRUE(m.add_region(0x4000, a.size(), a.data()).ok());
	ASSERT_TRUE(m.write_u64(0x4008, 0x1122334455667788ull));
	EXPECT_EQ(a[8], std::byte{0x88}); // little-endian in memory
	EXPECT_EQ(a[15], std::byte{0x11});
	uint64_t v = 0;
	ASSERT_TRUE(m.read_u64(0x4008, &v));
	EXPECT_EQ(v, 0x1122334455667788ull);

	v = 42;
	EXPECT_FALSE(m.read_u64(0x4ffc, &v)); // half outside
	EXPECT_EQ(v, 42u);                   // untouched
	EXPECT_FALSE(m.write_u64(0x4ff9, 1));
	EXPECT_EQ(a[0xff9], std::byte{0});
	EXPECT_FALSE(m.read_u64(0x3ff8, &v));

	char buf[4] = {'a', 'b', 'c', 'd'};
	EXPECT_TRUE(m.write(0x4ffc, buf, 4));
	EXPECT_FALSE(m.write(0x4ffd, buf, 4));
	char back[4] = {};
	EXPECT_TRUE(m.read(0x4ffc, back, 4));
	EXPECT_EQ(back[3], 'd');
}

TEST(GuestMemory, ManyRegionsUseTheSortedLookup)
{
	std::vector<std::byte> block(0x1000 * 32);
	GuestMemory m;
	// Every other page, added in reverse order.
	for (int i = 15; i >= 0; i--)
		ASSERT_TRUE(m.add_region(0x100000 + i * 0x2000, 0x1000, block.data() + i * 0x2000)
				    .ok());
	for (int i = 0; i < 16; i++) {
		EXPECT_EQ(m.translate(0x100000 + i * 0x2000 + 0x10, 8),
			  block.data() + i * 0x2000 + 0x10);
		EXPECT_EQ(m.translate(0x100000 + i * 0x2000 + 0x1000, 8), nullptr);
	}
	EXPECT_EQ(m.translate(0xfffff, 1), nullptr);
}

TEST(GuestRam, AnonymousIsZeroedAndSized)
{
	Result<GuestRam> r = GuestRam::allocate(3 << 20, GuestRam::Source::anonymous);
	ASSERT_TRUE(r.ok()) << r.status().message();
	EXPECT_EQ(r->backing(), RamBacking::anonymous);
	EXPECT_EQ(r->size(), 3u << 20);
	EXPECT_EQ(r->data()[(3 << 20) - 1], std::byte{0});
	r->data()[0] = std::byte{1};
	GuestRam moved = std::move(r.value());
	EXPECT_EQ(moved.data()[0], std::byte{1});
	EXPECT_EQ(r->data(), nullptr);
}

TEST(GuestRam, AutomaticFallsBackWithoutAnEal)
{
	ASSERT_FALSE(dpdk_eal_running());
	Result<GuestRam> r = GuestRam::allocate(4 << 20);
	ASSERT_TRUE(r.ok()) << r.status().message();
	// Hugepages when the machine has them reserved, ordinary pages otherwise.
	EXPECT_NE(r->backing(), RamBacking::dpdk);
	EXPECT_EQ(r->data()[12345], std::byte{0});

	Result<GuestRam> d = GuestRam::allocate(4096, GuestRam::Source::dpdk);
	EXPECT_FALSE(d.ok());
	EXPECT_EQ(d.status().code(), -ENODEV);
	EXPECT_EQ(GuestRam::allocate(0).status().code(), -EINVAL);
}

/** Free 2 MiB hugepages, from /proc/meminfo (0 if unreadable). */
long free_hugepages()
{
	FILE *f = std::fopen("/proc/meminfo", "r");
	if (f == nullptr)
		return 0;
	char line[256];
	long n = 0;
	while (std::fgets(line, sizeof(line), f) != nullptr)
		if (std::sscanf(line, "HugePages_Free: %ld", &n) == 1)
			break;
	std::fclose(f);
	return n;
}

TEST(GuestRam, FallbackPastTheFreeHugepagesIsAlignedForThp)
{
	// More than every free hugepage: MAP_HUGETLB must fail, so the fallback is what we get
	// (virtual memory only; nothing is touched but two bytes).
	const uint64_t size = (static_cast<uint64_t>(free_hugepages()) + 1) * (2u << 20) + 4096;
	Result<GuestRam> r = GuestRam::allocate(size);
	ASSERT_TRUE(r.ok()) << r.status().message();
	ASSERT_NE(r->backing(), RamBacking::hugetlb);
	std::FILE *thp = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	char mode[128] = "";
	if (thp != nullptr) {
		if (std::fgets(mode, sizeof(mode), thp) == nullptr)
			mode[0] = 0;
		std::fclose(thp);
	}
	if (std::strstr(mode, "[never]") == nullptr) {
		EXPECT_EQ(r->backing(), RamBacking::thp);
		EXPECT_STREQ(ram_backing_name(r->backing()), "anonymous-thp");
	} else {
		EXPECT_EQ(r->backing(), RamBacking::anonymous); // not called THP when it cannot be
	}
	if (r->backing() == RamBacking::thp) {
		EXPECT_EQ(reinterpret_cast<uintptr_t>(r->data()) % (2u << 20), 0u);
	}
	EXPECT_EQ(r->size(), size);
	EXPECT_EQ(r->data()[0], std::byte{0});
	EXPECT_EQ(r->data()[size - 1], std::byte{0});
}

} // namespace
} // namespace iodp
