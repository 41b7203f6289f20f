/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The walker: one state machine for single-stage and nested (2-D) walks.
 *
 * A walk is a sequence of "read one entry, decide, compute the next entry's address". The
 * state machine stops after computing each next address, having prefetched it, so that
 * walk_burst() can advance other walks while the load is in flight (the VPP x4 FIB lookup
 * idea, but for any number of walks and any depth). walk() runs the same machine to the end,
 * which is why a burst gives exactly the results of one-at-a-time walks.
 */
#include "formats.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>

namespace iodp::pgtable {

using namespace detail;

namespace {

constexpr int kMaxHeights = 6;

/** Progress through one stage. */
struct Cursor {
	uint64_t in = 0;    // the address this stage translates
	uint64_t table = 0; // current table (this stage's output space)
	int h = 0;          // current height
	uint32_t acc = 0;   // hierarchical permission state (policy-defined)
	int depth = 0;      // tables on the path so far
	uint64_t path[kMaxHeights] = {};
	uint64_t path_bytes[kMaxHeights] = {};
	uint8_t path_acc[kMaxHeights] = {}; // acc on entering each table of the path

	void begin(uint64_t input, const Stage &st, uint32_t init_acc)
	{
		in = input;
		table = st.root;
		h = st.start_height;
		acc = init_acc;
		depth = 1;
		path[0] = st.root;
		path_bytes[0] = st.table_bytes(st.start_height);
		path_acc[0] = static_cast<uint8_t>(init_acc);
	}
	/** Resume at a cached table; loops are checked from there down (@p known: on the path). */
	void begin_at(uint64_t input, const TableRef &t, const Stage &st, bool known)
	{
		in = input;
		table = t.table;
		h = t.height;
		acc = t.acc;
		depth = known ? 1 : 0;
		path[0] = t.table;
		path_bytes[0] = st.table_bytes(t.height);
		path_acc[0] = t.acc;
	}
	uint64_t entry_address(const Stage &st) const
	{
		const uint64_t index = (in >> st.shift(h)) & ((1ull << st.index_bits(h)) - 1);
		return table + index * 8;
	}
	/** A table pointer back into a table already on this path is a loop. */
	bool revisits(uint64_t next) const
	{
		for (int i = 0; i < depth; i++)
			if (next - path[i] < path_bytes[i])
				return true;
		return false;
	}
	void descend(uint64_t next, const Stage &st)
	{
		h--;
		table = next;
		path[depth] = next;
		path_bytes[depth] = st.table_bytes(h);
		path_acc[depth] = static_cast<uint8_t>(acc);
		depth++;
	}
};

template <class P1, class P2> class Walk {
	static constexpr bool kNested = !std::is_same_v<P2, NoStage>;

public:
	Walk(const Translation &x) : x_(x) {}

	bool done() const { return pending_ == nullptr; }

	/**
	 * Begin @p req; the answer is written into @p out as the walk goes. Into the
	 * caller's array, not a member copied out at the end: the walk stores its result a
	 * byte here and there, and a wide copy read back at once stalls on store forwarding
	 * (measured: a third of a resumed walk's time).
	 */
	void start(const WalkRequest &req, WalkResult *out)
	{
		res_ = out;
		*res_ = WalkResult{};
		access_ = req.access;
		stage1_only_ = kNested && (req.flags & kWalkStage1Only);
		in_s2_ = false;
		table_in_mem_ = false;
		// Two stores: a chained assignment reads path_[1] back at once (store forwarding).
		path_[0] = TableRef{};
		path_[1] = TableRef{};
		if (!P1::in_range(req.iova, x_.s1))
			return fail(FaultKind::address_size, x_.s1, x_.s1.start_height);
		if (req.start.valid() && req.start.height < x_.s1.start_height) {
			// A nested resume point is already in memory: its first read skips stage 2.
			c1_.begin_at(req.iova, req.start, x_.s1, !kNested);
			table_in_mem_ = kNested;
		} else {
			c1_.begin(req.iova, x_.s1, P1::kInitAccum);
		}
		fetch_s1();
	}

	template <bool kTrace> void advance(WalkTracer *tracer)
	{
		std::byte *const entry_ptr = pending_;
		const uint64_t e = GuestMemory::load_le64(entry_ptr);
		res_->reads++;
		if constexpr (kNested) {
			if (in_s2_)
				return advance_s2<kTrace>(entry_ptr, e, tracer);
		}
		return advance_s1<kTrace>(entry_ptr, e, tracer);
	}

private:
	void fail(FaultKind kind, const Stage &st, int h)
	{
		res_->fault = kind;
		res_->stage = static_cast<uint8_t>(st.stage());
		res_->level = static_cast<int8_t>(st.level(h));
		pending_ = nullptr;
	}

	void set_pending(std::byte *p)
	{
		pending_ = p;
		__builtin_prefetch(p);
	}

	void fetch_s1()
	{
		const uint64_t addr = c1_.entry_address(x_.s1);
		if constexpr (kNested) {
			if (!table_in_mem_)
				return begin_s2(addr, false);
			std::byte *p = x_.mem->translate(addr, 8);
			if (p == nullptr)
				return fail(FaultKind::bad_table_pointer, x_.s1, c1_.h);
			entry_mem_ = addr;
			entry_contiguous_ = true;
			set_pending(p);
		} else {
			std::byte *p = x_.mem->translate(addr, 8);
			if (p == nullptr)
				return fail(FaultKind::bad_table_pointer, x_.s1, c1_.h);
			set_pending(p);
		}
	}

	void begin_s2(uint64_t addr, bool for_output)
	{
		const Stage &s2 = *x_.s2;
		s2_for_output_ = for_output;
		in_s2_ = true;
		if (!P2::in_range(addr, s2))
			return fail(FaultKind::address_size, s2, s2.start_height);
		c2_.begin(addr, s2, P2::kInitAccum);
		fetch_s2();
	}

	void fetch_s2()
	{
		const Stage &s2 = *x_.s2;
		std::byte *p = x_.mem->translate(c2_.entry_address(s2), 8);
		if (p == nullptr)
			return fail(FaultKind::bad_table_pointer, s2, c2_.h);
		set_pending(p);
	}

	template <bool kTrace>
	void trace(WalkTracer *tracer, const Stage &st, const Cursor &c, uint64_t e, bool for_s1)
	{
		if constexpr (kTrace) {
			TraceStep s;
			s.stage = st.stage();
			s.level = st.level(c.h);
			s.for_stage1 = for_s1;
			s.for_output = for_s1 && s2_for_output_;
			s.input = c.in;
			s.table = c.table;
			s.index = (c.entry_address(st) - c.table) / 8;
			s.entry = e;
			s.format = st.format;
			s.height = c.h;
			s.granule_shift = st.granule_shift;
			tracer->step(s);
		}
	}

	/*
	 * One entry of a stage: a fault ends the walk; a table moves the cursor down and
	 * returns false; a leaf passes the permission check and returns true with the leaf's
	 * output address, size and permissions.
	 */
	template <class P>
	bool step(std::byte *entry_ptr, uint64_t e, const Stage &st, Cursor &c, uint8_t access,
		  uint64_t &out, uint64_t &size, uint8_t &perm)
	{
		const Decoded d = P::decode(e, c.h, st, c.acc);
		if (d.kind == Kind::fault) {
			fail(d.fault, st, c.h);
			return false;
		}
		if (d.kind == Kind::table) {
			if (c.revisits(d.addr)) {
				fail(FaultKind::loop, st, c.h);
				return false;
			}
			if (P::kTableAccessed != 0 && st.update_accessed && !(e & P::kTableAccessed))
				GuestMemory::atomic_or_le64(entry_ptr, P::kTableAccessed);
			c.descend(d.addr, st);
			return false;
		}
		uint64_t set_bits = 0;
		const FaultKind f = P::finish(e, c.h, st, c.acc, access, perm, set_bits);
		if (f != FaultKind::none) {
			fail(f, st, c.h);
			return false;
		}
		if (st.update_accessed && (e & set_bits) != set_bits)
			GuestMemory::atomic_or_le64(entry_ptr, set_bits);
		size = 1ull << st.shift(c.h);
		out = d.addr | (c.in & (size - 1));
		return true;
	}

	/**
	 * Nested: note the stage-1 table being read, for a paging-structure cache to keep (its
	 * memory address is known only now, from the stage-2 walk that fetched the entry).
	 * A single stage finds its path in the cursor when it finishes instead.
	 */
	void record_table()
	{
		TableRef t;
		if (c1_.h < x_.s1.start_height) {
			t.height = static_cast<int8_t>(c1_.h);
			t.acc = static_cast<uint8_t>(c1_.acc);
			if (!kNested)
				t.table = c1_.table;
			else if (entry_contiguous_)
				t.table = entry_mem_ - (c1_.entry_address(x_.s1) - c1_.table);
		}
		path_[1] = path_[0];
		path_[0] = t;
	}

	template <bool kTrace> void advance_s1(std::byte *entry_ptr, uint64_t e, WalkTracer *tracer)
	{
		trace<kTrace>(tracer, x_.s1, c1_, e, false);
		if constexpr (kNested) {
			record_table();
			table_in_mem_ = false;
		}
		uint64_t out, size;
		uint8_t perm;
		if (!step<P1>(entry_ptr, e, x_.s1, c1_, access_, out, size, perm)) {
			if (!done())
				fetch_s1();
			return;
		}
		if constexpr (kNested) {
			if (stage1_only_)
				return finish(out, size, perm);
			s1_size_ = size;
			s1_perm_ = perm;
			return begin_s2(out, true);
		}
		finish(out, size, perm);
	}

	template <bool kTrace> void advance_s2(std::byte *entry_ptr, uint64_t e, WalkTracer *tracer)
	{
		if constexpr (kNested) {
			const Stage &s2 = *x_.s2;
			trace<kTrace>(tracer, s2, c2_, e, true);
			// Stage-1 table fetches are reads, whatever the request is.
			const uint8_t access = s2_for_output_ ? access_ : kAccessRead;
			uint64_t out, size;
			uint8_t perm;
			if (!step<P2>(entry_ptr, e, s2, c2_, access, out, size, perm)) {
				if (!done())
					fetch_s2();
				return;
			}
			if (s2_for_output_)
				return finish(out, std::min(size, s1_size_),
					      static_cast<uint8_t>(perm & s1_perm_));
			// The stage-1 entry's guest-physical address now has a host address.
			in_s2_ = false;
			std::byte *p = x_.mem->translate(out, 8);
			if (p == nullptr)
				return fail(FaultKind::bad_table_pointer, x_.s1, c1_.h);
			// The table has one memory address if one stage-2 page holds all of it.
			entry_mem_ = out;
			entry_contiguous_ = size >= x_.s1.table_bytes(c1_.h);
			set_pending(p);
		}
	}

	void finish(uint64_t out, uint64_t size, uint8_t perm)
	{
		res_->out = out;
		res_->page_size = size;
		res_->perm = perm;
		pending_ = nullptr;
		if constexpr (kNested) {
			res_->path[0] = path_[0];
			res_->path[1] = path_[1];
		} else {
			// The leaf's table and its parent, if they are below the root.
			const int top = x_.s1.start_height;
			for (int k = 0; k < 2 && c1_.depth - 1 - k >= 0 && c1_.h + k < top; k++) {
				const int d = c1_.depth - 1 - k;
				res_->path[k].table = c1_.path[d];
				res_->path[k].height = static_cast<int8_t>(c1_.h + k);
				res_->path[k].acc = c1_.path_acc[d];
			}
		}
	}

	const Translation &x_;
	std::byte *pending_ = nullptr; // next entry to read (prefetched); null when done
	uint8_t access_ = 0;
	bool in_s2_ = false;
	bool s2_for_output_ = false;
	bool stage1_only_ = false;
	bool table_in_mem_ = false;     // c1_.table is a memory address (nested resume)
	bool entry_contiguous_ = false; // the current stage-1 table is contiguous in memory
	uint64_t entry_mem_ = 0;        // memory address of the stage-1 entry being read
	TableRef path_[2];
	uint64_t s1_size_ = 0;
	uint8_t s1_perm_ = 0;
	Cursor c1_, c2_;
	WalkResult *res_ = nullptr;
};

template <class P1, class P2>
WalkResult walk_one(const Translation &x, const WalkRequest &req, WalkTracer *tracer)
{
	Walk<P1, P2> w(x);
	WalkResult res;
	w.start(req, &res);
	if (tracer != nullptr) {
		while (!w.done())
			w.template advance<true>(tracer);
	} else {
		while (!w.done())
			w.template advance<false>(nullptr);
	}
	return res;
}

template <class P1, class P2>
void walk_many(const Translation &x, const WalkRequest *reqs, WalkResult *results, size_t n)
{
	using W = Walk<P1, P2>;
	// Walk holds a reference, so build the slots in raw storage once.
	alignas(W) std::byte storage[sizeof(W) * kWalkInFlight];
	W *slots = reinterpret_cast<W *>(storage);
	bool live[kWalkInFlight];
	size_t next = 0, n_live = 0;

	const size_t width = std::min(n, kWalkInFlight);
	for (size_t k = 0; k < width; k++)
		new (&slots[k]) W(x);

	// Start the next request in slot k; walks that end at once (address-size, bad root)
	// are answered here and do not occupy the slot.
	auto refill = [&](size_t k) {
		while (next < n) {
			slots[k].start(reqs[next], &results[next]);
			next++;
			if (!slots[k].done())
				return true;
		}
		return false;
	};

	for (size_t k = 0; k < width; k++) {
		live[k] = refill(k);
		n_live += live[k];
	}
	while (n_live > 0) {
		for (size_t k = 0; k < width; k++) {
			if (!live[k])
				continue;
			slots[k].template advance<false>(nullptr);
			if (!slots[k].done())
				continue;
			if (!refill(k)) {
				live[k] = false;
				n_live--;
			}
		}
	}
	static_assert(std::is_trivially_destructible_v<W>);
}

/** Pick the template instance for the translation's formats, once per call. */
template <class Fn> decltype(auto) dispatch(const Translation &x, Fn &&fn)
{
	if (x.s2) {
		if (x.s1.format == Format::arm_s1)
			return fn(ArmS1{}, ArmS2{});
		return fn(X86{}, VtdSs{});
	}
	return with_policy(x.s1.format, [&](auto p1) { return fn(p1, NoStage{}); });
}

} // namespace

WalkResult walk(const Translation &x, uint64_t iova, uint8_t access, WalkTracer *tracer)
{
	WalkRequest req;
	req.iova = iova;
	req.access = access;
	return dispatch(x, [&](auto p1, auto p2) {
		return walk_one<decltype(p1), decltype(p2)>(x, req, tracer);
	});
}

WalkResult walk(const Translation &x, const WalkRequest &req)
{
	return dispatch(x, [&](auto p1, auto p2) {
		return walk_one<decltype(p1), decltype(p2)>(x, req, nullptr);
	});
}

void walk_burst(const Translation &x, const WalkRequest *reqs, WalkResult *results, size_t n)
{
	dispatch(x, [&](auto p1, auto p2) {
		walk_many<decltype(p1), decltype(p2)>(x, reqs, results, n);
	});
}

} // namespace iodp::pgtable
