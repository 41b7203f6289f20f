/* SPDX-License-Identifier: BSD-3-Clause */
/* mem::ring_*: DPDK element rings in plain memory, without an EAL. */
#include <iodp/ring.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

namespace iodp::mem {
namespace {

struct Elem {
	uint64_t a, b, c; // 24 bytes: not a power of two, as FaultNote is not
};

TEST(Ring, BytesRefusesShapesDpdkRefuses)
{
	EXPECT_EQ(ring_bytes(sizeof(Elem), 100).status().code(), -EINVAL);
	EXPECT_EQ(ring_bytes(6, 64).status().code(), -EINVAL) << "element not a multiple of 4";
	const Result<size_t> ok = ring_bytes(sizeof(Elem), 64);
	ASSERT_TRUE(ok.ok());
	EXPECT_GE(ok.value(), 64 * sizeof(Elem));
	const Status s = ring_alloc("r", sizeof(Elem), 100, 0).status();
	EXPECT_EQ(s.code(), -EINVAL);
	EXPECT_NE(s.message().find("100 entries of 24 bytes"), std::string::npos) << s.message();
}

/** Heap rings carry elements in order and hold entries - 1 of them, as every rte_ring. */
TEST(Ring, AllocCarriesElementsInOrder)
{
	Result<rte_ring *> r = ring_alloc("test_ring", sizeof(Elem), 8,
					  RING_F_SP_ENQ | RING_F_SC_DEQ);
	ASSERT_TRUE(r.ok()) << r.status().message();
	rte_ring *ring = *r;
	EXPECT_EQ(reinterpret_cast<uintptr_t>(ring) % 64, 0u);
	EXPECT_EQ(rte_ring_get_capacity(ring), 7u);
	std::vector<Elem> in(7);
	for (uint64_t i = 0; i < in.size(); i++)
		in[i] = {i, i * 10, i * 100};
	EXPECT_EQ(rte_ring_enqueue_bulk_elem(ring, in.data(), sizeof(Elem), 7, nullptr), 7u);
	Elem extra{};
	EXPECT_NE(rte_ring_enqueue_elem(ring, &extra, sizeof(Elem)), 0) << "full at 7";
	std::vector<Elem> out(7);
	EXPECT_EQ(rte_ring_dequeue_bulk_elem(ring, out.data(), sizeof(Elem), 7, nullptr), 7u);
	for (uint64_t i = 0; i < out.size(); i++)
		EXPECT_EQ(out[i].c, i * 100);
	std::free(ring);
}

/** A name longer than rte_ring keeps is cut, not refused (rte_ring_init says ENAMETOOLONG). */
TEST(Ring, LongNamesAreCut)
{
	const std::string name(3 * RTE_RING_NAMESIZE, 'n');
	Result<rte_ring *> r = ring_alloc(name, 8, 16, 0);
	ASSERT_TRUE(r.ok()) << r.status().message();
	EXPECT_EQ(std::string((*r)->name), name.substr(0, RTE_RING_NAMESIZE - 1));
	std::free(*r);
}

/** In memory the caller owns (an ipc device's memfd): two rings side by side. */
TEST(Ring, InitInCallersMemory)
{
	const Result<size_t> bytes = ring_bytes(16, 32);
	ASSERT_TRUE(bytes.ok());
	const size_t stride = (bytes.value() + 63) & ~size_t{63};
	void *mem = std::aligned_alloc(64, 2 * stride);
	ASSERT_NE(mem, nullptr);
	auto *a = static_cast<rte_ring *>(mem);
	auto *b = reinterpret_cast<rte_ring *>(static_cast<char *>(mem) + stride);
	ASSERT_TRUE(ring_init(a, "a", 32, RING_F_SP_ENQ | RING_F_SC_DEQ).ok());
	ASSERT_TRUE(ring_init(b, "b", 32, RING_F_SP_ENQ | RING_F_SC_DEQ).ok());
	uint64_t x[2] = {1, 2};
	uint64_t y[2] = {};
	EXPECT_EQ(rte_ring_enqueue_elem(a, x, 16), 0);
	EXPECT_EQ(rte_ring_count(b), 0u);
	EXPECT_EQ(rte_ring_dequeue_elem(a, y, 16), 0);
	EXPECT_EQ(y[1], 2u);
	const Status bad = ring_init(a, "a", 33, 0);
	EXPECT_EQ(bad.code(), -EINVAL);
	EXPECT_EQ(bad.message(), "ring a: rte_ring_init failed");
	std::free(mem);
}

} // namespace
} // namespace iodp::mem
