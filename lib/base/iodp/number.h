/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Unsigned numbers from text a user wrote (devargs, config files, command lines): one
 * parser, so that every place takes the same forms and refuses the same mistakes.
 */

#include <cctype>
#include <charconv>
#include <cstdint>
#include <string_view>

namespace iodp {

/** What parse_u64() accepts beyond plain decimal digits. */
struct NumberSyntax {
	bool hex = true;    ///< "0x" or "0X" then hex digits
	bool sizes = false; ///< one trailing K, M or G (any case): times 2^10, 2^20, 2^30
};

/** Why parse_u64() refused its text. */
enum class NumberError : uint8_t {
	none,
	not_a_number, ///< empty, or no digit where one must be (a sign, a space, "0x" alone)
	too_large,    ///< over 2^64 - 1, suffix included
	trailing,     ///< characters after the number (and its size suffix)
};

/**
 * @p s as an unsigned 64-bit number in @p syntax: digits, nothing before them (no sign,
 * no space) and nothing after (but a size suffix). On success *@p out is set and
 * NumberError::none returned; otherwise *@p out is unchanged.
 */
inline NumberError parse_u64(std::string_view s, uint64_t *out, NumberSyntax syntax = {})
{
	int base = 10;
	if (syntax.hex && s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s.remove_prefix(2);
	}
	const char *const begin = s.data(), *const end = begin + s.size();
	uint64_t v = 0;
	auto [p, ec] = std::from_chars(begin, end, v, base);
	if (p == begin)
		return NumberError::not_a_number;
	if (ec == std::errc::result_out_of_range)
		return NumberError::too_large;
	unsigned shift = 0;
	if (syntax.sizes && end - p == 1) {
		switch (std::toupper(static_cast<unsigned char>(*p))) {
		case 'K': shift = 10; p++; break;
		case 'M': shift = 20; p++; break;
		case 'G': shift = 30; p++; break;
		default: break;
		}
	}
	if (p != end)
		return NumberError::trailing;
	if (shift != 0 && (v >> (64 - shift)) != 0)
		return NumberError::too_large;
	*out = v << shift;
	return NumberError::none;
}

} // namespace iodp
