/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/status.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace iodp {
namespace {

TEST(Status, ShortMessage)
{
	const Status s = Status::error(-EINVAL, "device %s: %u queues", "emul0", 9u);
	EXPECT_EQ(s.code(), -EINVAL);
	EXPECT_EQ(s.message(), "device emul0: 9 queues");
	EXPECT_EQ(Status::error(EIO, "positive").code(), -EIO);
}

/** A long message (a name, a value, then what was expected) is kept whole. */
TEST(Status, LongMessageIsNotCut)
{
	const std::string value(600, 'x');
	const Status s = Status::error(-EINVAL, "cfg:3: [device emul0] ws=%s: expected 4K to 1G",
				       value.c_str());
	EXPECT_EQ(s.message(), "cfg:3: [device emul0] ws=" + value + ": expected 4K to 1G");
	for (size_t len : {510u, 511u, 512u, 513u}) {
		const std::string m(len, 'm');
		EXPECT_EQ(Status::error(-EIO, "%s", m.c_str()).message(), m) << len;
	}
	EXPECT_EQ(Status::error(-EIO, "%s", "").message(), "");
}

} // namespace
} // namespace iodp
