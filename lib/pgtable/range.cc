/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Range walks: descend the tables once for a whole IOVA range (see pgtable_range.h).
 *
 * The same format policies as the walker decide every entry, so a range walk and walk()
 * of each address inside it cannot disagree (the tests check it address by address).
 * Nested: stage-1 tables and outputs are intermediate addresses; each goes through stage 2
 * by walk(), and the stage-2 leaf last used is kept, so a run of stage-1 leaves inside one
 * stage-2 page costs no stage-2 reads.
 */
#include "formats.h"

#include <iodp/pgtable_range.h>

#include <algorithm>

namespace iodp::pgtable {

using namespace detail;

namespace {

constexpr int kMaxDepth = 6;

/** Tables on the current path, for loop detection (as the walker does). */
struct Path {
	uint64_t table[kMaxDepth] = {};
	uint64_t bytes[kMaxDepth] = {};
	int depth = 0;

	bool revisits(uint64_t addr) const
	{
		for (int i = 0; i < depth; i++)
			if (addr - table[i] < bytes[i])
				return true;
		return false;
	}
};

/** Adjacent faults of one kind arrive as one run. */
class FaultMerger {
public:
	explicit FaultMerger(RangeSink &sink, RangeStats &stats) : sink_(sink), stats_(stats) {}
	~FaultMerger() = default;

	void fault(uint64_t iova, uint64_t size, FaultKind kind, int stage, int level)
	{
		if (have_ && kind == f_.fault && stage == f_.stage && level == f_.level &&
		    f_.iova + f_.size == iova) {
			f_.size += size;
			return;
		}
		flush();
		f_ = {iova, size, kind, static_cast<uint8_t>(stage), static_cast<int8_t>(level)};
		have_ = true;
	}
	void run(const RangeRun &r)
	{
		flush();
		stats_.runs++;
		sink_.run(r);
	}
	void flush()
	{
		if (!have_)
			return;
		have_ = false;
		stats_.faults++;
		sink_.fault(f_);
	}

private:
	RangeSink &sink_;
	RangeStats &stats_;
	RangeFault f_;
	bool have_ = false;
};

template <class P1, class P2> class RangeWalk {
	static constexpr bool kNested = !std::is_same_v<P2, NoStage>;

public:
	RangeWalk(const Translation &x, uint8_t priv, FaultMerger &out, RangeStats &stats)
		: x_(x), priv_(priv & kAccessPriv), out_(out), stats_(stats)
	{
		if constexpr (kNested) {
			// Stage 2 alone, read-only: walk() must not set accessed bits for us.
			x2_.mem = x.mem;
			x2_.s1 = *x.s2;
			x2_.s1.update_accessed = false;
		}
	}

	void walk(uint64_t first, uint64_t last)
	{
		const Stage &st = x_.s1;
		bool ok = P1::in_range(first, st) && P1::in_range(last, st);
		if constexpr (std::is_same_v<P1, X86>)
			ok = ok && (first >> 63) == (last >> 63); // not across the non-canonical hole
		if (!ok)
			return out_.fault(first, last - first + 1, FaultKind::address_size, st.stage(),
					  st.level(st.start_height));
		Path path;
		path.table[0] = st.root;
		path.bytes[0] = st.table_bytes(st.start_height);
		path.depth = 1;
		table(st.root, st.start_height, P1::kInitAccum, first, last, path);
	}

private:
	/** Where a stage-1 table's entries are: one host pointer, or entry by entry. */
	struct TableView {
		std::byte *base = nullptr;
		uint64_t addr = 0;  ///< in stage 1's output space
		bool split = false; ///< nested: the table spans stage-2 pages; translate each entry
	};

	/** The stage-2 leaf last used (nested). */
	struct S2Leaf {
		uint64_t first = 1, last = 0; ///< empty
		uint64_t host = 0;            ///< host address of first
		uint8_t perm = 0;
		bool covers(uint64_t a) const { return a - first <= last - first && first <= last; }
	};

	/** Nested: the stage-2 leaf holding @p ipa, or a fault (kind, level). */
	bool s2_leaf(uint64_t ipa, FaultKind &fault, int &level)
	{
		if (s2_.covers(ipa))
			return true;
		const WalkResult r = pgtable::walk(x2_, ipa, priv_);
		stats_.entries += r.reads;
		if (!r.ok()) {
			fault = r.fault;
			level = r.level;
			return false;
		}
		s2_.first = ipa & ~(r.page_size - 1);
		s2_.last = s2_.first + (r.page_size - 1);
		s2_.host = r.out - (ipa - s2_.first);
		s2_.perm = r.perm;
		return true;
	}

	/** The table at @p addr (stage 1's output space), or false after reporting a fault. */
	bool open_table(uint64_t addr, uint64_t bytes, TableView &v)
	{
		v.addr = addr;
		if constexpr (kNested) {
			FaultKind f;
			int level;
			if (!s2_leaf(addr, f, level) || !(s2_.perm & kPermRead))
				return false;
			if (addr + (bytes - 1) <= s2_.last) {
				v.base = x_.mem->translate(s2_.host + (addr - s2_.first), bytes);
				return v.base != nullptr;
			}
			v.split = true; // read entry by entry, each through stage 2
			return true;
		} else {
			v.base = x_.mem->translate(addr, bytes);
			return v.base != nullptr;
		}
	}

	const std::byte *entry(const TableView &v, uint64_t offset)
	{
		if constexpr (kNested) {
			if (v.split) {
				FaultKind f;
				int level;
				if (!s2_leaf(v.addr + offset, f, level) || !(s2_.perm & kPermRead))
					return nullptr;
				return x_.mem->translate(s2_.host + (v.addr + offset - s2_.first), 8);
			}
		}
		return v.base + offset;
	}

	void table(uint64_t addr, int h, uint32_t acc, uint64_t lo, uint64_t hi, Path &path)
	{
		const Stage &st = x_.s1;
		TableView view;
		if (!open_table(addr, st.table_bytes(h), view))
			return out_.fault(lo, hi - lo + 1, FaultKind::bad_table_pointer, 1, st.level(h));
		const unsigned shift = st.shift(h);
		const uint64_t index_mask = (1ull << st.index_bits(h)) - 1;
		const uint64_t esize = 1ull << shift;
		for (uint64_t a = lo;;) {
			const uint64_t efirst = a & ~(esize - 1);
			const uint64_t sub_last = std::min(hi, efirst + (esize - 1));
			const std::byte *p = entry(view, ((a >> shift) & index_mask) * 8);
			if (p == nullptr) {
				out_.fault(a, sub_last - a + 1, FaultKind::bad_table_pointer, 1,
					   st.level(h));
			} else {
				const uint64_t e = GuestMemory::load_le64(p);
				stats_.entries++;
				one_entry(e, h, acc, a, efirst, sub_last, path);
			}
			if (sub_last >= hi)
				break;
			a = sub_last + 1;
		}
	}

	void one_entry(uint64_t e, int h, uint32_t acc, uint64_t a, uint64_t efirst,
		       uint64_t sub_last, Path &path)
	{
		const Stage &st = x_.s1;
		const uint64_t size = sub_last - a + 1;
		const Decoded d = P1::decode(e, h, st, acc);
		if (d.kind == Kind::fault) {
			// Not present: nothing there, at any address below this entry.
			if (d.fault != FaultKind::not_present)
				out_.fault(a, size, d.fault, 1, st.level(h));
			return;
		}
		if (d.kind == Kind::table) {
			if (path.revisits(d.addr) || path.depth == kMaxDepth)
				return out_.fault(a, size, FaultKind::loop, 1, st.level(h));
			path.table[path.depth] = d.addr;
			path.bytes[path.depth] = st.table_bytes(h - 1);
			path.depth++;
			table(d.addr, h - 1, acc, a, sub_last, path);
			path.depth--;
			return;
		}
		uint8_t perm = 0;
		uint64_t set_bits = 0;
		const FaultKind f = P1::finish(e, h, st, acc, priv_, perm, set_bits);
		if (f != FaultKind::none)
			return out_.fault(a, size, f, 1, st.level(h));
		leaf(a, d.addr + (a - efirst), size, perm);
	}

	void leaf(uint64_t iova, uint64_t out, uint64_t size, uint8_t perm)
	{
		if constexpr (!kNested) {
			out_.run({iova, out, size, perm});
		} else {
			while (size > 0) {
				FaultKind f;
				int level;
				const uint64_t g = 1ull << x2_.s1.granule_shift;
				if (!s2_leaf(out, f, level)) {
					// One stage-2 granule at a time; the merger joins them.
					const uint64_t n = std::min(size, g - (out & (g - 1)));
					out_.fault(iova, n, f, 2, level);
					iova += n;
					out += n;
					size -= n;
					continue;
				}
				const uint64_t n = std::min(size, s2_.last - out + 1);
				out_.run({iova, s2_.host + (out - s2_.first), n,
					  static_cast<uint8_t>(perm & s2_.perm)});
				iova += n;
				out += n;
				size -= n;
			}
		}
	}

	const Translation &x_;
	const uint8_t priv_;
	FaultMerger &out_;
	RangeStats &stats_;
	Translation x2_; // nested: stage 2 alone
	S2Leaf s2_;
};

} // namespace

RangeStats walk_range(const Translation &x, uint64_t start, uint64_t length, uint8_t priv,
		      RangeSink &sink)
{
	RangeStats stats;
	if (length == 0)
		return stats;
	FaultMerger out(sink, stats);
	// A range that wraps is cut at the top of the address space.
	const uint64_t last = start + (length - 1) < start ? ~0ull : start + (length - 1);
	auto go = [&](auto p1, auto p2) {
		RangeWalk<decltype(p1), decltype(p2)> w(x, priv, out, stats);
		w.walk(start, last);
	};
	if (x.s2) {
		if (x.s1.format == Format::arm_s1)
			go(ArmS1{}, ArmS2{});
		else
			go(X86{}, VtdSs{});
	} else {
		with_policy(x.s1.format, [&](auto p1) { go(p1, NoStage{}); });
	}
	out.flush();
	return stats;
}

} // namespace iodp::pgtable
