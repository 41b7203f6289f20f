/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Text that came from outside (a driver's name, a configuration value, devargs) on its way
 * to a terminal, a log or a JSON file: control characters and bytes that are not UTF-8
 * would let it forge lines, move the cursor or make the file invalid.
 */

#include <cstdint>
#include <string>
#include <string_view>

namespace iodp {

/**
 * @p s with every control character (C0, DEL, C1), and every byte that is not part of a
 * valid UTF-8 sequence, written as \\xNN; "\\n", "\\t" and "\\r" as such. Valid UTF-8 and a
 * backslash pass unchanged, so printable(printable(s)) == printable(s): text may be
 * escaped where it is spliced into a message and again where the message is printed.
 */
inline std::string printable(std::string_view s)
{
	static const char kHex[] = "0123456789abcdef";
	std::string out;
	out.reserve(s.size());
	auto escape = [&](unsigned char c) {
		out += '\\';
		switch (c) {
		case '\n': out += 'n'; return;
		case '\t': out += 't'; return;
		case '\r': out += 'r'; return;
		default: break;
		}
		out += 'x';
		out += kHex[c >> 4];
		out += kHex[c & 15];
	};
	const auto *p = reinterpret_cast<const unsigned char *>(s.data());
	const size_t n = s.size();
	for (size_t i = 0; i < n;) {
		const unsigned char c = p[i];
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				escape(c);
			else
				out += static_cast<char>(c);
			i++;
			continue;
		}
		// The length of the sequence c starts, and the range its second byte must be in
		// (no overlong forms, no surrogates, nothing above U+10FFFF).
		size_t len = 0;
		unsigned char lo = 0x80, hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			lo = c == 0xe0 ? 0xa0 : 0x80;
			hi = c == 0xed ? 0x9f : 0xbf;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			lo = c == 0xf0 ? 0x90 : 0x80;
			hi = c == 0xf4 ? 0x8f : 0xbf;
		}
		bool ok = len != 0 && i + len <= n && p[i + 1] >= lo && p[i + 1] <= hi;
		for (size_t k = 2; ok && k < len; k++)
			ok = p[i + k] >= 0x80 && p[i + k] <= 0xbf;
		// C1 controls (U+0080-U+009F, 0xc2 0x80-0x9f) act like ESC sequences on terminals.
		if (ok && len == 2 && c == 0xc2 && p[i + 1] <= 0x9f)
			ok = false;
		if (!ok) {
			escape(c);
			i++;
			continue;
		}
		out.append(s.substr(i, len));
		i += len;
	}
	return out;
}

} // namespace iodp
