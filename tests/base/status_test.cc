/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/status.h>
#include <iodp/text.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>

namespace iodp {
namespace {

TEST(Status, ShortMessage)
{
	const Status s = Status::error(-EINVAL, "device {}: {} queues", "emul0", 9u);
	EXPECT_EQ(s.code(), -EINVAL);
	EXPECT_EQ(s.message(), "device emul0: 9 queues");
	EXPECT_EQ(Status::error(EIO, "positive").code(), -EIO);
}

/** {fmt}'s syntax: hex as the messages write addresses, escaped braces, strings of each kind. */
TEST(Status, FmtSyntax)
{
	const std::string owner = "msi";
	const std::string_view what = "reserve";
	EXPECT_EQ(Status::error(-EINVAL, "ioas {} {}: 0x{:x}+0x{:x} reserved by {} {{sic}}", 3u,
				what, uint64_t{0xfee00000}, uint64_t{1} << 20, owner)
			  .message(),
		  "ioas 3 reserve: 0xfee00000+0x100000 reserved by msi {sic}");
	EXPECT_EQ(Status::error(-EOPNOTSUPP, "unknown flags {:#x}", 0x30u).message(),
		  "unknown flags 0x30");
	EXPECT_EQ(Status::error(-EINVAL, "{:>5}|{:<4}|{:02x}|{}", "ab", 7, 5u, -1).message(),
		  "   ab|7   |05|-1");
}

/** A long message (a name, a value, then what was expected) is kept whole. */
TEST(Status, LongMessageIsNotCut)
{
	const std::string value(600, 'x');
	const Status s = Status::error(-EINVAL, "cfg:3: [device emul0] ws={}: expected 4K to 1G",
				       value);
	EXPECT_EQ(s.message(), "cfg:3: [device emul0] ws=" + value + ": expected 4K to 1G");
	for (size_t len : {510u, 511u, 512u, 513u}) {
		const std::string m(len, 'm');
		EXPECT_EQ(Status::error(-EIO, "{}", m).message(), m) << len;
	}
	EXPECT_EQ(Status::error(-EIO, "{}", "").message(), "");
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
