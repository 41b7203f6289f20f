/* SPDX-License-Identifier: BSD-3-Clause */
#include "test_guest.h"

namespace iodp::pgtable::testing {

TestGuest::TestGuest(uint64_t gpa, uint64_t size)
{
	Result<GuestRam> r = GuestRam::allocate(size, GuestRam::Source::anonymous);
	EXPECT_TRUE(r.ok()) << r.status().message();
	ram = std::move(r.value());
	Status s = mem.add_region(gpa, size, ram.data());
	EXPECT_TRUE(s.ok()) << s.message();
}

WalkResult walk_cfg(const GuestMemory &mem, const TableConfig &s1, uint64_t iova,
		    uint8_t access, const TableConfig *s2)
{
	Result<Translation> x = make_translation(mem, s1, s2);
	EXPECT_TRUE(x.ok()) << x.status().message();
	if (!x.ok())
		return {};
	const WalkResult one = walk(*x, iova, access);
	// Every golden case doubles as a check that a burst of one agrees.
	WalkRequest req = walk_request(iova, access);
	WalkResult burst;
	walk_burst(*x, &req, &burst, 1);
	EXPECT_EQ(one, burst);
	return one;
}

void expect_fault(const WalkResult &r, FaultKind kind, int stage, int level)
{
	EXPECT_EQ(fault_name(r.fault), fault_name(kind));
	EXPECT_EQ(r.stage, stage);
	EXPECT_EQ(r.level, level);
}

void expect_ok(const WalkResult &r, uint64_t out, uint64_t size, const char *perm)
{
	EXPECT_EQ(fault_name(r.fault), "none") << "stage " << int(r.stage) << " level "
					       << int(r.level);
	EXPECT_EQ(r.out, out) << std::hex << "0x" << r.out << " != 0x" << out;
	EXPECT_EQ(r.page_size, size);
	EXPECT_EQ(perm_letters(r.perm), perm);
}

} // namespace iodp::pgtable::testing
