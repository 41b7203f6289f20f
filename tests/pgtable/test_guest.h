/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

#include <iodp/pgtable.h>
#include <iodp/pgtable_builder.h>

#include <gtest/gtest.h>

namespace iodp::pgtable::testing {

/** One region of zeroed guest RAM, and a hand for writing table entries into it. */
struct TestGuest {
	TestGuest(uint64_t gpa, uint64_t size);

	void put(uint64_t gpa, uint64_t value)
	{
		ASSERT_TRUE(mem.write_u64(gpa, value)) << std::hex << "put outside guest: 0x" << gpa;
	}
	uint64_t get(uint64_t gpa) const
	{
		uint64_t v = 0;
		EXPECT_TRUE(mem.read_u64(gpa, &v));
		return v;
	}

	GuestRam ram;
	GuestMemory mem;
};

/** Walk one address through a single stage, or stage 1 over @p s2. */
WalkResult walk_cfg(const GuestMemory &mem, const TableConfig &s1, uint64_t iova,
		    uint8_t access = kAccessRead, const TableConfig *s2 = nullptr);

/** Expect a fault of @p kind at (stage, level). */
void expect_fault(const WalkResult &r, FaultKind kind, int stage, int level);
/** Expect a translation to @p out with leaf size @p size and permissions @p perm. */
void expect_ok(const WalkResult &r, uint64_t out, uint64_t size, const char *perm);

} // namespace iodp::pgtable::testing
