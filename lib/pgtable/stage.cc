/* SPDX-License-Identifier: BSD-3-Clause */
/* Names, configuration checks and geometry of the formats. */
#include "formats.h"

#include <cerrno>
#include <cinttypes>

namespace iodp::pgtable {

using namespace detail;

namespace {

struct FormatInfo {
	Format format;
	const char *name;
	int stage;
	unsigned fixed_ias; // 0: configurable (Arm)
	int levels;         // 0: derived (Arm)
};

constexpr FormatInfo kFormats[] = {
	{Format::x86_64_4l, "x86-64-4l", 1, 48, 4},
	{Format::x86_64_5l, "x86-64-5l", 1, 57, 5},
	{Format::vtd_ss_3l, "vtd-ss-3l", 2, 39, 3},
	{Format::vtd_ss_4l, "vtd-ss-4l", 2, 48, 4},
	{Format::vtd_ss_5l, "vtd-ss-5l", 2, 57, 5},
	{Format::arm_s1, "arm-s1", 1, 0, 0},
	{Format::arm_s2, "arm-s2", 2, 0, 0},
	{Format::mock, "mock", 2, 32, 3},
};

const FormatInfo &info(Format f) { return kFormats[static_cast<size_t>(f)]; }

bool is_arm(Format f) { return f == Format::arm_s1 || f == Format::arm_s2; }

} // namespace

std::string_view format_name(Format format) { return info(format).name; }

std::optional<Format> parse_format(std::string_view name)
{
	for (const FormatInfo &f : kFormats)
		if (name == f.name)
			return f.format;
	return std::nullopt;
}

int format_stage(Format format) { return info(format).stage; }

std::string perm_letters(uint8_t perm)
{
	std::string s;
	if (perm & kPermRead)
		s += 'r';
	if (perm & kPermWrite)
		s += 'w';
	if (perm & kPermExec)
		s += 'x';
	return s.empty() ? "-" : s;
}

std::string_view fault_name(FaultKind kind)
{
	switch (kind) {
	case FaultKind::none:
		return "none";
	case FaultKind::not_present:
		return "not-present";
	case FaultKind::permission:
		return "permission";
	case FaultKind::address_size:
		return "address-size";
	case FaultKind::reserved_bit:
		return "reserved-bit";
	case FaultKind::bad_table_pointer:
		return "bad-table-pointer";
	case FaultKind::access_flag:
		return "access-flag";
	case FaultKind::loop:
		return "loop";
	case FaultKind::not_attached:
		return "not-attached";
	case FaultKind::bad_config:
		return "bad-config";
	}
	return "?";
}

int Stage::level(int height) const
{
	return is_arm(format) ? 3 - height : height + 1;
}

Result<Stage> make_stage(const TableConfig &c)
{
	const FormatInfo &fi = info(c.format);
	Stage st;
	st.format = c.format;
	st.root = c.root;
	st.update_accessed = c.update_accessed;

	if (c.format == Format::mock) {
		// The selftest's MOCK_IO_PAGE_SIZE; 512-entry tables give its 1 MiB huge page.
		if (c.granule_shift != 11)
			return Status::error(-EINVAL, "mock: granule must be 2k (shift 11), not "
					     "shift {}", c.granule_shift);
		if (c.ias != 0 && c.ias != fi.fixed_ias)
			return Status::error(-EINVAL, "mock: input size is {} bits, not {}",
					     fi.fixed_ias, c.ias);
		if (c.start_level != -1 && c.start_level != fi.levels)
			return Status::error(-EINVAL, "mock: start level is {}, not {}", fi.levels,
					     c.start_level);
		st.granule_shift = 11;
		st.bits_per_level = 9;
		st.ias = static_cast<uint8_t>(fi.fixed_ias);
		st.start_height = static_cast<uint8_t>(fi.levels - 1);
	} else if (!is_arm(c.format)) {
		if (c.granule_shift != 12)
			return Status::error(-EINVAL, "{}: granule must be 4k, not {}k", fi.name,
					     1u << (c.granule_shift - 10));
		if (c.ias != 0 && c.ias != fi.fixed_ias)
			return Status::error(-EINVAL, "{}: input size is {} bits, not {}", fi.name,
					     fi.fixed_ias, c.ias);
		if (c.start_level != -1 && c.start_level != fi.levels)
			return Status::error(-EINVAL, "{}: start level is {}, not {}", fi.name,
					     fi.levels, c.start_level);
		st.granule_shift = 12;
		st.bits_per_level = 9;
		st.ias = static_cast<uint8_t>(fi.fixed_ias);
		st.start_height = static_cast<uint8_t>(fi.levels - 1);
	} else {
		const unsigned g = c.granule_shift;
		if (g != 12 && g != 14 && g != 16)
			return Status::error(-EINVAL, "{}: granule must be 4k, 16k or 64k", fi.name);
		const unsigned ias = c.ias ? c.ias : 48;
		// 52-bit inputs need the 64K granule (no LPA2 here).
		const unsigned max_ias = g == 16 ? 52 : 48;
		const unsigned min_ias = c.format == Format::arm_s1 ? 25 : 24;
		if (ias < min_ias || ias > max_ias)
			return Status::error(-EINVAL, "{}: input size {} bits is outside {}..{} for "
					     "the {}k granule", fi.name, ias, min_ias, max_ias,
					     1u << (g - 10));
		st.granule_shift = static_cast<uint8_t>(g);
		st.bits_per_level = static_cast<uint8_t>(g - 3);
		st.ias = static_cast<uint8_t>(ias);
		const unsigned levels = (ias - g + (g - 3) - 1) / (g - 3);
		const int derived_level = 4 - static_cast<int>(levels);
		if (c.format == Format::arm_s1) {
			if (c.start_level != -1 && c.start_level != derived_level)
				return Status::error(-EINVAL, "arm-s1: {}-bit input with the {}k granule "
						     "starts at level {}, not {}", ias,
						     1u << (g - 10), derived_level, c.start_level);
			st.start_height = static_cast<uint8_t>(3 - derived_level);
		} else {
			const int sl = c.start_level == -1 ? derived_level : c.start_level;
			if (sl < 0 || sl > 3)
				return Status::error(-EINVAL, "arm-s2: start level {} is not 0..3", sl);
			st.start_height = static_cast<uint8_t>(3 - sl);
			const int bits = static_cast<int>(ias) - static_cast<int>(st.shift(3 - sl));
			// At most 16 concatenated tables at the start level.
			if (bits < 1 || bits > st.bits_per_level + 4)
				return Status::error(-EINVAL, "arm-s2: {}-bit input cannot start at level "
						     "{} with the {}k granule ({} index bits; 1..{} allowed)",
						     ias, sl, 1u << (g - 10), bits,
						     st.bits_per_level + 4);
		}
	}
	const uint64_t align = st.table_bytes(st.start_height);
	if (c.root & (align - 1))
		return Status::error(-EINVAL, "{}: root 0x{:x} is not aligned to its "
				     "0x{:x}-byte start table", fi.name, c.root, align);
	return st;
}

bool can_nest(Format s1, Format s2)
{
	const bool vtd_ss = s2 == Format::vtd_ss_3l || s2 == Format::vtd_ss_4l ||
			    s2 == Format::vtd_ss_5l;
	if (s1 == Format::x86_64_4l || s1 == Format::x86_64_5l)
		return vtd_ss;
	return s1 == Format::arm_s1 && s2 == Format::arm_s2;
}

Result<Translation> make_translation(const GuestMemory &mem, const TableConfig &s1,
				     const TableConfig *s2)
{
	Result<Stage> first = make_stage(s1);
	if (!first)
		return first.status();
	Translation x;
	x.mem = &mem;
	x.s1 = *first;
	if (s2 == nullptr)
		return x;
	if (!can_nest(s1.format, s2->format))
		return Status::error(-EINVAL, "nested {} over {}: no hardware combines these "
				     "(x86-64 nests over vtd-ss, arm-s1 over arm-s2)",
				     info(s1.format).name, info(s2->format).name);
	Result<Stage> second = make_stage(*s2);
	if (!second)
		return second.status();
	x.s2 = *second;
	return x;
}

std::string describe_entry(Format format, uint64_t e, int h, uint8_t granule_shift)
{
	TableConfig c;
	c.format = format;
	c.granule_shift = granule_shift;
	Result<Stage> st_or = make_stage(c);
	Stage st = st_or ? *st_or : Stage{};
	std::string s;
	auto flag = [&](bool on, const char *name) {
		if (on) {
			if (!s.empty())
				s += ' ';
			s += name;
		}
	};
	with_policy(format, [&](auto p) {
		using P = decltype(p);
		if constexpr (std::is_same_v<P, X86>) {
			flag(e & X86::P, "P");
			flag(e & X86::RW, "RW");
			flag(e & X86::US, "US");
			flag(e & X86::A, "A");
			flag(e & X86::D, "D");
			flag(h > 0 && (e & X86::PS), "PS");
			flag(e & X86::XD, "XD");
		} else if constexpr (std::is_same_v<P, VtdSs> || std::is_same_v<P, Mock>) {
			flag(e & VtdSs::R, "R");
			flag(e & VtdSs::W, "W");
			flag(e & VtdSs::X, "X");
			flag(h > 0 && (e & VtdSs::SP), "SP");
			flag(e & VtdSs::A, "A");
			flag(e & VtdSs::D, "D");
		} else {
			flag(e & ArmLpae::kValid, (e & ArmLpae::kTableOrPage) ? (h == 0 ? "page" : "table")
									      : "block");
			if (std::is_same_v<P, ArmS1>) {
				flag(e & ArmS1::AP1, "AP[1]=EL0");
				flag(e & ArmS1::AP2, "AP[2]=RO");
				flag(e & ArmS1::PXN, "PXN");
				flag(e & ArmS1::UXN, "UXN");
				flag(e & ArmS1::kApTableNoEl0, "APTable[0]");
				flag(e & ArmS1::kApTableRo, "APTable[1]");
				flag(e & ArmS1::kUxnTable, "UXNTable");
				flag(e & ArmS1::kPxnTable, "PXNTable");
			} else {
				flag(e & ArmS2::S2AP_R, "S2AP.R");
				flag(e & ArmS2::S2AP_W, "S2AP.W");
				const unsigned xn = (e >> ArmS2::kXnShift) & 3;
				flag(xn != 0, xn == 1 ? "XN=01" : xn == 2 ? "XN=10" : "XN=11");
			}
			flag(e & ArmLpae::AF, "AF");
		}
		uint32_t acc = P::kInitAccum;
		const Decoded d = P::decode(e, h, st, acc);
		char buf[64];
		if (d.kind == Kind::fault)
			std::snprintf(buf, sizeof(buf), "=> %s", fault_name(d.fault).data());
		else
			std::snprintf(buf, sizeof(buf), "=> %s 0x%" PRIx64,
				      d.kind == Kind::table ? "table" : "leaf", d.addr);
		flag(true, buf);
	});
	return s;
}

} // namespace iodp::pgtable
