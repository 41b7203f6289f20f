/* SPDX-License-Identifier: BSD-3-Clause */
/* parse_u64: the one parser of numbers users write (devargs, config files, iodp-xlate). */
#include <iodp/number.h>

#include <gtest/gtest.h>

#include <string>

namespace iodp {
namespace {

constexpr NumberSyntax kDecimal{.hex = false, .sizes = false};
constexpr NumberSyntax kHex{.hex = true, .sizes = false};
constexpr NumberSyntax kSizes{.hex = true, .sizes = true};

uint64_t must(std::string_view s, NumberSyntax syn)
{
	uint64_t v = 0;
	EXPECT_EQ(parse_u64(s, &v, syn), NumberError::none) << s;
	return v;
}

NumberError error(std::string_view s, NumberSyntax syn)
{
	uint64_t v = 12345;
	const NumberError e = parse_u64(s, &v, syn);
	EXPECT_EQ(v, 12345u) << "unchanged on error: " << s;
	return e;
}

TEST(Number, DecimalAndHex)
{
	EXPECT_EQ(must("0", kDecimal), 0u);
	EXPECT_EQ(must("010", kDecimal), 10u) << "never octal";
	EXPECT_EQ(must("18446744073709551615", kDecimal), UINT64_MAX);
	EXPECT_EQ(must("0x1f", kHex), 0x1fu);
	EXPECT_EQ(must("0XFFFFFFFFFFFFFFFF", kHex), UINT64_MAX);
	EXPECT_EQ(error("0x10", kDecimal), NumberError::trailing) << "hex not taken";
}

TEST(Number, Sizes)
{
	EXPECT_EQ(must("4K", kSizes), 4096u);
	EXPECT_EQ(must("64m", kSizes), 64u << 20);
	EXPECT_EQ(must("1G", kSizes), 1u << 30);
	EXPECT_EQ(must("0x10K", kSizes), 16u << 10);
	EXPECT_EQ(must("17179869183G", kSizes), 17179869183ull << 30);
	EXPECT_EQ(error("17179869184G", kSizes), NumberError::too_large);
	EXPECT_EQ(error("4KB", kSizes), NumberError::trailing);
	EXPECT_EQ(error("4T", kSizes), NumberError::trailing);
	EXPECT_EQ(error("4K", kHex), NumberError::trailing) << "no sizes unless asked";
}

TEST(Number, Refusals)
{
	for (const char *s : {"", "+1", "-1", " 1", "x1", "0x", "0xg", "K"})
		EXPECT_EQ(error(s, kSizes), NumberError::not_a_number) << '"' << s << '"';
	EXPECT_EQ(error("18446744073709551616", kHex), NumberError::too_large);
	EXPECT_EQ(error("0x10000000000000000", kHex), NumberError::too_large);
	EXPECT_EQ(error("12 ", kHex), NumberError::trailing);
	EXPECT_EQ(error(std::string_view("12\0" "3", 4), kHex), NumberError::trailing)
		<< "an embedded NUL is not the end";
}

} // namespace
} // namespace iodp
