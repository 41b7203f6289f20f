/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Random map/unmap sequences through the builder, checked against a reference model: every
 * mapped range (its ends and random pages inside) and random unmapped addresses are walked,
 * one at a time and in bursts, for every format, granule and nesting.
 */
#include "test_guest.h"

#include <iodp/pgtable_range.h>

#include <map>
#include <random>
#include <vector>

namespace iodp::pgtable::testing {
namespace {

constexpr uint64_t KiB = 1024, MiB = KiB * KiB, GiB = MiB * KiB;

struct PropertyCase {
	const char *name;
	TableConfig s1;
	std::optional<TableConfig> s2; // nested when set
	uint64_t window;               // IOVA base of the random operations
};

const PropertyCase kCases[] = {
	{"x86_64_4l", table_config(Format::x86_64_4l), {}, 0x7f0000000000},
	{"x86_64_4l_upper", table_config(Format::x86_64_4l), {}, 0xffff800000000000},
	{"x86_64_5l", table_config(Format::x86_64_5l), {}, 0x00ff000000000000},
	{"vtd_ss_3l", table_config(Format::vtd_ss_3l), {}, 0x4000000000},
	{"vtd_ss_4l", table_config(Format::vtd_ss_4l), {}, 0x800000000000 - 8 * GiB},
	{"vtd_ss_5l", table_config(Format::vtd_ss_5l), {}, 0x100000000000000},
	{"arm_s1_4k", table_config(Format::arm_s1, 0, 12), {}, 0x800000000000},
	{"arm_s1_4k_39", table_config(Format::arm_s1, 0, 12, 39), {}, 0x4000000000},
	{"arm_s1_16k", table_config(Format::arm_s1, 0, 14), {}, 0xc00000000000},
	{"arm_s1_64k", table_config(Format::arm_s1, 0, 16), {}, 0x400000000000},
	{"arm_s1_64k_52", table_config(Format::arm_s1, 0, 16, 52), {}, 0x8000000000000},
	{"arm_s2_4k_concat", table_config(Format::arm_s2, 0, 12, 40, 1), {}, 0x8000000000},
	{"arm_s2_16k", table_config(Format::arm_s2, 0, 14, 42, 1), {}, 0x20000000000},
	{"arm_s2_64k", table_config(Format::arm_s2, 0, 16, 48), {}, 0x100000000},
	{"nested_x86_vtd", table_config(Format::x86_64_4l),
	 table_config(Format::vtd_ss_4l), 0x10000000000},
	{"nested_x86_5l_vtd_3l", table_config(Format::x86_64_5l),
	 table_config(Format::vtd_ss_3l), 0x10000000000},
	{"nested_arm_4k", table_config(Format::arm_s1, 0, 12),
	 table_config(Format::arm_s2, 0, 12, 40, 1), 0x10000000000},
	{"nested_arm_64k", table_config(Format::arm_s1, 0, 16),
	 table_config(Format::arm_s2, 0, 16, 40), 0x10000000000},
};

struct RefMapping {
	uint64_t size;
	uint64_t oa;
	uint8_t perm;
};

class PropertyTest : public ::testing::TestWithParam<PropertyCase> {
protected:
	// Guest memory: the stage-1 table pool at the start, the stage-2 pool after it.
	static constexpr uint64_t kMemGpa = 0x40000000, kPoolBytes = 48 * MiB;
	// Nested: stage-1 tables live at this IPA; stage 2 maps it onto the pool.
	static constexpr uint64_t kS1PoolIpa = 0x80000000;
	// Nested: stage-1 outputs land in [4G, 68G) IPA, which stage 2 maps to [16G, 80G) PA.
	static constexpr uint64_t kOutIpa = 4 * GiB, kOutPa = 16 * GiB, kOutSpan = 64 * GiB;

	void SetUp() override
	{
		const PropertyCase &pc = GetParam();
		const uint64_t page = 1ull << pc.s1.granule_shift;
		std::byte *host = guest.mem.translate(kMemGpa, 2 * kPoolBytes);
		ASSERT_NE(host, nullptr);
		if (pc.s2) {
			s2_pool = TablePool(kMemGpa + kPoolBytes, host + kPoolBytes, kPoolBytes,
					    1ull << pc.s2->granule_shift);
			Result<TableBuilder> b2 = TableBuilder::create(*pc.s2, &s2_pool);
			ASSERT_TRUE(b2.ok()) << b2.status().message();
			s2 = std::move(b2.value());
			ASSERT_TRUE(s2.map(kS1PoolIpa, kMemGpa, kPoolBytes, kMapRead | kMapWrite).ok());
			const uint8_t all = kMapRead | kMapWrite | kMapExec;
			ASSERT_TRUE(s2.map(kOutIpa, kOutPa, kOutSpan, all).ok());
			s1_pool = TablePool(kS1PoolIpa, host, kPoolBytes, page);
		} else {
			s1_pool = TablePool(kMemGpa, host, kPoolBytes, page);
		}
		Result<TableBuilder> b1 = TableBuilder::create(pc.s1, &s1_pool);
		ASSERT_TRUE(b1.ok()) << b1.status().message();
		s1 = std::move(b1.value());
		const TableConfig s1c = s1.config(), s2c = pc.s2 ? s2.config() : TableConfig{};
		Result<Translation> x = make_translation(guest.mem, s1c, pc.s2 ? &s2c : nullptr);
		ASSERT_TRUE(x.ok()) << x.status().message();
		xlat = *x;
	}

	/** Block sizes of the stage-1 format, smallest first (granule included). */
	std::vector<uint64_t> leaf_sizes() const
	{
		const Stage &st = s1.stage();
		std::vector<uint64_t> sizes{1ull << st.shift(0), 1ull << st.shift(1)};
		if (st.granule_shift == 12)
			sizes.push_back(1ull << st.shift(2));
		return sizes;
	}

	/** Expected (out, perm) for an IOVA inside a reference mapping. */
	uint64_t expected_out(const RefMapping &m, uint64_t start, uint64_t iova) const
	{
		const uint64_t oa = m.oa + (iova - start);
		return GetParam().s2 ? oa - kOutIpa + kOutPa : oa;
	}
	static uint8_t expected_perm(uint8_t map_perm, bool stage1)
	{
		// Requests below carry no access bits and the builder's stage-1 tables grant
		// everything, so the leaf's own permissions come back (stage 1 is always readable).
		return (map_perm & 7) | (stage1 ? kPermRead : 0);
	}

	/**
	 * Random maps and unmaps through the builder, with the reference model kept beside
	 * them. Sets span, granule and big; the test's random generator continues from here.
	 */
	void random_tables(std::mt19937_64 &rng, std::map<uint64_t, RefMapping> &ref)
	{
		const PropertyCase &pc = GetParam();
		const bool nested = pc.s2.has_value();
		const bool stage1 = format_stage(pc.s1.format) == 1;
		const std::vector<uint64_t> sizes = leaf_sizes();
		granule = sizes.front();
		big = sizes.back();
		// Keep the space small enough that ranges collide, big enough for the largest leaves.
		span = std::min<uint64_t>(64 * big, 64 * GiB);

		auto overlaps = [&](uint64_t iova, uint64_t size) {
			auto it = ref.upper_bound(iova + size - 1);
			if (it == ref.begin())
				return false;
			--it;
			return it->first + it->second.size > iova;
		};
		auto ref_unmap = [&](uint64_t iova, uint64_t size) {
			std::map<uint64_t, RefMapping> keep;
			for (auto it = ref.begin(); it != ref.end();) {
				const uint64_t s = it->first, e = s + it->second.size;
				if (e <= iova || s >= iova + size) {
					++it;
					continue;
				}
				if (s < iova)
					keep[s] = {iova - s, it->second.oa, it->second.perm};
				if (e > iova + size)
					keep[iova + size] = {e - (iova + size),
							     it->second.oa + (iova + size - s), it->second.perm};
				it = ref.erase(it);
			}
			ref.insert(keep.begin(), keep.end());
		};
		auto random_perm = [&]() -> uint8_t {
			uint8_t p = static_cast<uint8_t>(rng() % 8);
			if (stage1)
				p |= kMapRead;
			else if (!(p & (kMapRead | kMapWrite)))
				p |= kMapWrite;
			return p;
		};

		for (int op = 0; op < 300; op++) {
			uint64_t size;
			switch (rng() % 8) {
			case 0:
				size = big;
				break;
			case 1:
			case 2:
				size = sizes[rng() % sizes.size()] * (1 + rng() % 3);
				break;
			default:
				size = granule * (1 + rng() % 24);
			}
			size = std::min(size, span / 2);
			// Usually aligned to the size's own leaf, sometimes to a granule only.
			const uint64_t align = (rng() % 3) ? std::min(size & -size, big) : granule;
			const uint64_t iova = pc.window + (rng() % ((span - size) / align + 1)) * align;
			if (rng() % 5 == 0) {
				uint64_t unmapped = 0;
				Status s = s1.unmap(iova, size, &unmapped);
				ASSERT_TRUE(s.ok()) << s.message();
				ref_unmap(iova, size);
				continue;
			}
			// Output: same alignment as the IOVA most of the time, so large leaves can form.
			uint64_t oa = nested ? kOutIpa + (iova - pc.window)
					     : (iova - pc.window) + (rng() % 64) * big + 64 * GiB;
			if (rng() % 4 == 0)
				oa += granule;
			const uint8_t perm = random_perm();
			Status s = s1.map(iova, oa, size, perm);
			if (overlaps(iova, size)) {
				ASSERT_EQ(s.code(), -EEXIST) << s.message();
				continue;
			}
			ASSERT_TRUE(s.ok()) << s.message();
			ref[iova] = {size, oa, perm};
		}
	}

	uint64_t span = 0, granule = 0, big = 0;

	TestGuest guest{kMemGpa, 2 * kPoolBytes};
	TablePool s1_pool, s2_pool;
	TableBuilder s1, s2;
	Translation xlat;
};

TEST_P(PropertyTest, RandomMapUnmapAgainstReference)
{
	const PropertyCase &pc = GetParam();
	const bool nested = pc.s2.has_value();
	const bool stage1 = format_stage(pc.s1.format) == 1;
	std::mt19937_64 rng(0x10da0 + std::hash<std::string>{}(pc.name));
	std::map<uint64_t, RefMapping> ref; // start -> mapping
	random_tables(rng, ref);
	if (::testing::Test::HasFatalFailure())
		return;

	// Probe addresses: ends and random pages of every mapping, plus random addresses.
	std::vector<WalkRequest> reqs;
	for (const auto &[start, m] : ref) {
		reqs.push_back(walk_request(start, 0));
		reqs.push_back(walk_request(start + m.size - 1, 0));
		reqs.push_back(walk_request(start + (rng() % m.size), 0));
	}
	for (int i = 0; i < 200; i++)
		reqs.push_back(walk_request(pc.window + rng() % span, 0));
	for (WalkRequest &r : reqs) {
		auto it = ref.upper_bound(r.iova);
		const bool user = it != ref.begin() && (std::prev(it)->second.perm & kMapUser);
		// Stage-1 pages without the user bit are read as privileged requests.
		if (stage1 && !user)
			r.access = kAccessPriv;
	}

	std::vector<WalkResult> burst(reqs.size());
	walk_burst(xlat, reqs.data(), burst.data(), reqs.size());
	size_t mapped_probes = 0;
	for (size_t i = 0; i < reqs.size(); i++) {
		const uint64_t iova = reqs[i].iova;
		const WalkResult r = walk(xlat, iova, reqs[i].access);
		ASSERT_EQ(r, burst[i]) << std::hex << "burst differs at 0x" << iova;
		auto it = ref.upper_bound(iova);
		const bool inside = it != ref.begin() &&
				    iova < std::prev(it)->first + std::prev(it)->second.size;
		if (!inside) {
			EXPECT_EQ(r.fault, FaultKind::not_present) << std::hex << "0x" << iova;
			EXPECT_EQ(r.stage, 1 + (!nested && !stage1));
			continue;
		}
		mapped_probes++;
		--it;
		const uint64_t start = it->first;
		const RefMapping &m = it->second;
		ASSERT_TRUE(r.ok()) << std::hex << "0x" << iova << ": " << fault_name(r.fault)
				    << " stage " << int(r.stage) << " level " << int(r.level);
		EXPECT_EQ(r.out, expected_out(m, start, iova)) << std::hex << "0x" << iova;
		EXPECT_EQ(perm_letters(r.perm), perm_letters(expected_perm(m.perm, stage1)));
		// The leaf lies wholly inside the mapping (no page larger than what was mapped)...
		const uint64_t page_base = iova & ~(r.page_size - 1);
		EXPECT_GE(page_base, start);
		EXPECT_LE(page_base + r.page_size, start + m.size);
		EXPECT_GE(r.page_size, granule);
	}
	EXPECT_GT(mapped_probes, 100u);

	// Resuming at a table the walk passed through (a paging-structure cache hit) gives
	// the same answer from fewer reads, and a neighbour in the table's reach resumes too.
	size_t resumed = 0;
	for (size_t i = 0; i < reqs.size(); i++) {
		const WalkResult &full = burst[i];
		for (const TableRef &t : full.path) {
			if (!t.valid())
				continue;
			WalkRequest r = reqs[i];
			r.start = t;
			const WalkResult again = walk(xlat, r);
			ASSERT_EQ(again.out, full.out) << std::hex << "0x" << r.iova;
			ASSERT_EQ(again.perm, full.perm);
			ASSERT_EQ(again.page_size, full.page_size);
			ASSERT_EQ(again.fault, full.fault);
			ASSERT_LT(again.reads, full.reads);
			if (!nested) {
				EXPECT_EQ(again.reads, 1 + t.height - full.path[0].height);
			}
			resumed++;
		}
		if (nested && full.ok()) {
			// Stage 1 alone ends at the IPA that stage 2 then maps.
			WalkRequest r = reqs[i];
			r.flags = kWalkStage1Only;
			const WalkResult ipa = walk(xlat, r);
			ASSERT_TRUE(ipa.ok());
			EXPECT_EQ(ipa.out - kOutIpa + kOutPa, full.out);
			EXPECT_LT(ipa.reads, full.reads);
		}
	}
	EXPECT_GT(resumed, 100u);

	// ...and unmapping everything frees every table but the root.
	ASSERT_TRUE(s1.unmap(pc.window, span).ok());
	const uint64_t root_bytes = s1.stage().table_bytes(s1.stage().start_height);
	const uint64_t page = s1_pool.page_size();
	EXPECT_EQ(s1_pool.pages_in_use(), std::max<uint64_t>(1, (root_bytes + page - 1) / page));
	EXPECT_EQ(walk(xlat, pc.window, kAccessPriv).fault, FaultKind::not_present);
}

/** Collects a range walk's runs and faults. */
struct Collect : RangeSink {
	std::vector<RangeRun> runs;
	std::vector<RangeFault> faults;
	void run(const RangeRun &r) override { runs.push_back(r); }
	void fault(const RangeFault &f) override { faults.push_back(f); }
};

TEST_P(PropertyTest, RangeWalkAgreesWithWalkEverywhere)
{
	const PropertyCase &pc = GetParam();
	std::mt19937_64 rng(0x4a46e + std::hash<std::string>{}(pc.name));
	std::map<uint64_t, RefMapping> ref;
	random_tables(rng, ref);
	if (::testing::Test::HasFatalFailure())
		return;
	// Privileged: supervisor-only stage-1 pages are mapped too (as walk() with kAccessPriv).
	Collect c;
	const RangeStats st = walk_range(xlat, pc.window, span, kAccessPriv, c);
	EXPECT_TRUE(c.faults.empty()) << fault_name(c.faults.front().fault);
	uint64_t covered = 0, expected = 0, prev_end = pc.window;
	for (const auto &[start, m] : ref)
		expected += m.size;
	auto check_gap = [&](uint64_t from, uint64_t to) {
		for (int k = 0; k < 4 && from < to; k++) {
			const uint64_t a = from + rng() % (to - from);
			EXPECT_FALSE(walk(xlat, a, kAccessPriv).ok()) << std::hex << "gap 0x" << a;
		}
	};
	for (const RangeRun &r : c.runs) {
		ASSERT_GE(r.iova, prev_end) << "runs in IOVA order, not overlapping";
		check_gap(prev_end, r.iova);
		for (uint64_t a : {r.iova, r.iova + r.size - 1, r.iova + rng() % r.size}) {
			const WalkResult w = walk(xlat, a, kAccessPriv);
			ASSERT_TRUE(w.ok()) << std::hex << "0x" << a << ": " << fault_name(w.fault);
			EXPECT_EQ(w.out, r.out + (a - r.iova)) << std::hex << "0x" << a;
			EXPECT_EQ(w.perm, r.perm) << std::hex << "0x" << a;
		}
		covered += r.size;
		prev_end = r.iova + r.size;
	}
	check_gap(prev_end, pc.window + span);
	EXPECT_EQ(covered, expected) << "every mapped byte, once";
	// One read per table entry in the range at most: never page by page.
	EXPECT_LT(st.entries, expected / granule + 64 * c.runs.size() + 64);

	// A sub-range cut in the middle of leaves: the same translations, cut to it.
	const uint64_t lo = pc.window + span / 3 + granule / 2, len = span / 4;
	Collect part;
	walk_range(xlat, lo, len, kAccessPriv, part);
	for (const RangeRun &r : part.runs) {
		EXPECT_GE(r.iova, lo);
		EXPECT_LE(r.iova + r.size, lo + len);
		EXPECT_EQ(walk(xlat, r.iova, kAccessPriv).out, r.out);
	}
}

void PrintTo(const PropertyCase &c, std::ostream *os) { *os << c.name; }

INSTANTIATE_TEST_SUITE_P(Formats, PropertyTest, ::testing::ValuesIn(kCases),
			 [](const ::testing::TestParamInfo<PropertyCase> &info) {
				 return std::string(info.param.name);
			 });

} // namespace
} // namespace iodp::pgtable::testing
