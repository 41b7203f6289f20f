/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/status.h>
#include <iodp/text.h>

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

namespace iodp {
namespace {

TEST(Printable, PassesTextAndUtf8)
{
	EXPECT_EQ(printable("emul0,profile=nic"), "emul0,profile=nic");
	EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
		  "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	EXPECT_EQ(printable("a\\b"), "a\\b");
	EXPECT_EQ(printable(""), "");
}

TEST(Printable, EscapesControlsAndBadBytes)
{
	EXPECT_EQ(printable("a\nb\tc\rd"), "a\\nb\\tc\\rd");
	EXPECT_EQ(printable("\x1b[31mred"), "\\x1b[31mred");
	EXPECT_EQ(printable(std::string_view("nic\0junk", 8)), "nic\\x00junk");
	EXPECT_EQ(printable("\x7f"), "\\x7f");
	EXPECT_EQ(printable("\xff"), "\\xff");
	EXPECT_EQ(printable("\xc3"), "\\xc3");                 // cut short
	EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");        // overlong '/'
	EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80"); // a surrogate
	EXPECT_EQ(printable("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80"); // above U+10FFFF
	EXPECT_EQ(printable("\xc2\x9b"), "\\xc2\\x9b");        // C1 CSI
	// Escaping twice changes nothing more.
	const std::string once = printable("x\x01\xfe\n");
	EXPECT_EQ(printable(once), once);
}

} // namespace
} // namespace iodp
