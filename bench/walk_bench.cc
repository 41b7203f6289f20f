/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Page-table walks over tables much larger than the caches.
 *
 *   Walk/<format>/serial     one walk at a time (walk())
 *   Walk/<format>/pipelined  interleaved walks (walk_burst())
 *   Baseline/dram/dependent     one random load at a time: the latency bound
 *   Baseline/dram/independent   random loads with no dependency: the machine's MLP bound
 *
 * items_per_second is walks (or loads) per second.
 *
 * The bound of each walk benchmark is measured in the same run over the walk's own tables
 * (the same memory, so the same backing and TLB reach): random cache lines of the table
 * pool, read as independent loads (the memory-level-parallelism bound) and as a dependent
 * chain (chain_per_s, for reference: serial walks do not depend on each other either, so
 * out-of-order execution overlaps them and their bound is the same). Each walk touches one cache line
 * that is cold (its leaf entry: 2 Mi walks over 2 Mi distinct leaf lines, 128 MiB); the
 * levels above it and the stage-2 tables of the nested cases are a few hundred KiB and stay
 * cached. So a walk's bound is one such load: counters bound_per_s (walks/s at the bound)
 * and of_bound (the walk's rate / the bound), and the label says the backing.
 */
#include <iodp/pgtable.h>
#include <iodp/pgtable_builder.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace iodp;
using namespace iodp::pgtable;

constexpr uint64_t MiB = 1ull << 20, GiB = 1ull << 30;
constexpr uint64_t kPoolBytes = 256 * MiB;
constexpr size_t kBurst = 256;
constexpr uint64_t kPages = 1ull << 21;
constexpr uint64_t kIovaBase = 1ull << 30;

struct WalkCase {
	std::string name;
	TableConfig s1;
	bool nested = false;
	TableConfig s2;
};

/** Tables for one case: many random single-page mappings, each in cold tables. */
struct WalkSetup {
	std::string name;
	GuestRam ram;
	GuestMemory mem;
	TablePool s1_pool, s2_pool;
	TableBuilder s1, s2;
	Translation xlat;
	std::vector<WalkRequest> reqs;
	uint64_t table_bytes = 0;
	/** Loads per second over random lines of the tables: independent, dependent (0: not yet). */
	double mlp_per_s = 0, chain_per_s = 0;

	bool build(const WalkCase &c)
	{
		name = c.name;
		Result<GuestRam> r = GuestRam::allocate(2 * kPoolBytes);
		if (!r.ok())
			return fail(r.status());
		ram = std::move(r.value());
		constexpr uint64_t kGpa = 1 * GiB;
		if (Status s = mem.add_region(kGpa, ram.size(), ram.data()); !s)
			return fail(s);

		// Nested: stage-1 tables at IPA 0x40000000 map onto the pool at PA kGpa; stage-1
		// outputs in [64G, 128G) IPA go to [256G, 320G) PA through 1 GiB blocks.
		constexpr uint64_t kS1Ipa = 0x40000000, kOutIpa = 64 * GiB, kOutPa = 256 * GiB;
		const uint64_t page = 1ull << c.s1.granule_shift;
		if (c.nested) {
			s2_pool = TablePool(kGpa + kPoolBytes, ram.data() + kPoolBytes, kPoolBytes,
					    1ull << c.s2.granule_shift);
			Result<TableBuilder> b2 = TableBuilder::create(c.s2, &s2_pool);
			if (!b2.ok())
				return fail(b2.status());
			s2 = std::move(b2.value());
			const uint8_t rwx = kMapRead | kMapWrite | kMapExec;
			if (Status s = s2.map(kS1Ipa, kGpa, kPoolBytes, kMapRead | kMapWrite); !s)
				return fail(s);
			if (Status s = s2.map(kOutIpa, kOutPa, 64 * GiB, rwx); !s)
				return fail(s);
			s1_pool = TablePool(kS1Ipa, ram.data(), kPoolBytes, page);
		} else {
			s1_pool = TablePool(kGpa, ram.data(), kPoolBytes, page);
		}
		Result<TableBuilder> b1 = TableBuilder::create(c.s1, &s1_pool);
		if (!b1.ok())
			return fail(b1.status());
		s1 = std::move(b1.value());

		// One mapped page per cache line of leaf table: kPages walks then touch kPages
		// distinct leaf lines (kPages * 64 bytes, far beyond the last-level cache), while
		// the levels above stay small and warm, as in a real dense table.
		const uint64_t stride = page * 8;
		std::mt19937_64 rng(42);
		const uint8_t perm = format_stage(c.s1.format) == 1 ? (kMapRead | kMapUser)
								     : kMapRead;
		reqs.reserve(kPages);
		for (uint64_t k = 0; k < kPages; k++) {
			const uint64_t iova = kIovaBase + k * stride;
			const uint64_t oa = kOutIpa + (rng() % (64 * GiB / page)) * page;
			if (Status s = s1.map(iova, c.nested ? oa : oa - kOutIpa, page, perm); !s)
				return fail(s);
			reqs.push_back(walk_request(iova | (rng() & (page - 1)), kAccessRead));
		}
		std::shuffle(reqs.begin(), reqs.end(), rng);
		table_bytes = s1_pool.pages_in_use() * page;

		const TableConfig s1c = s1.config(), s2c = s2.config();
		Result<Translation> x = make_translation(mem, s1c, c.nested ? &s2c : nullptr);
		if (!x.ok())
			return fail(x.status());
		xlat = *x;
		return true;
	}

	bool fail(const Status &s)
	{
		std::fprintf(stderr, "iodp-bench: %s: %s\n", name.c_str(), s.message().c_str());
		return false;
	}
};

/** Random cache lines of @p s's table pool, for the bounds. */
std::vector<uint32_t> table_lines(const WalkSetup &s)
{
	const uint64_t lines = s.table_bytes / 64;
	std::vector<uint32_t> v(1u << 20);
	std::mt19937_64 rng(11);
	for (uint32_t &l : v)
		l = static_cast<uint32_t>(rng() % lines);
	return v;
}

/**
 * This thread's CPU time in seconds: the walks are timed in CPU time (Google Benchmark's
 * default), so their bound must be too, or a machine busy with other work moves it.
 */
double thread_seconds()
{
	timespec ts{};
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

/**
 * Measure the two bounds over the tables of @p s (once per setup, ~0.1 s): reads of
 * random table lines with no dependency between them (the machine overlaps as many as it
 * can: the MLP bound) and as a chain where each address depends on the value before.
 */
void measure_bounds(WalkSetup &s)
{
	if (s.mlp_per_s != 0)
		return;
	const std::vector<uint32_t> lines = table_lines(s);
	const auto *p = reinterpret_cast<const uint64_t *>(s.ram.data());
	uint64_t sum = 0;
	for (uint32_t l : lines) // warm the TLB and caches as the walks' own warm-up does
		sum += p[uint64_t{l} * 8];
	constexpr int kRounds = 4;
	double t0 = thread_seconds();
	for (int r = 0; r < kRounds; r++)
		for (size_t i = 0; i < lines.size(); i++)
			sum += p[uint64_t{lines[i]} * 8];
	s.mlp_per_s = kRounds * lines.size() / (thread_seconds() - t0);
	// A chain: the next line's index takes the top bit of the value read (0 or 1 line
	// further), which the compiler cannot know, so each load waits for the one before.
	uint64_t v = 0;
	t0 = thread_seconds();
	for (size_t i = 0; i < lines.size(); i++)
		v = p[(uint64_t{lines[i]} + (v >> 63)) * 8];
	s.chain_per_s = lines.size() / (thread_seconds() - t0);
	benchmark::DoNotOptimize(sum);
	benchmark::DoNotOptimize(v);
}

/** One setup at a time: each needs hundreds of MiB. */
WalkSetup *setup_for(const WalkCase &c)
{
	static std::unique_ptr<WalkSetup> current;
	if (!current || current->name != c.name) {
		current.reset();
		current = std::make_unique<WalkSetup>();
		if (!current->build(c)) {
			current.reset();
			return nullptr;
		}
	}
	return current.get();
}

/** Label and bound counters: @p bound_per_s is one table-line load per walk. */
void label(benchmark::State &state, const WalkSetup &s, double bound_per_s, const char *bound,
	   size_t walks_per_iter)
{
	state.SetLabel(std::to_string(s.table_bytes >> 20) + " MiB of tables, " +
		       std::to_string(s.reqs.size() >> 20) + "Mi pages, " +
		       ram_backing_name(s.ram.backing()) + ", bound: " + bound);
	state.counters["bound_per_s"] = bound_per_s;
	// A rate counter is divided by the elapsed time: walks / bound / s = (walks/s) / bound.
	state.counters["of_bound"] = benchmark::Counter(
		static_cast<double>(state.iterations() * walks_per_iter) / bound_per_s,
		benchmark::Counter::kIsRate);
}

void walk_serial(benchmark::State &state, const WalkCase &c)
{
	WalkSetup *s = setup_for(c);
	if (s == nullptr)
		return state.SkipWithError("table setup failed");
	size_t i = 0, faults = 0;
	for (auto _ : state) {
		const WalkRequest &r = s->reqs[i];
		const WalkResult res = walk(s->xlat, r.iova, r.access);
		benchmark::DoNotOptimize(res);
		faults += !res.ok();
		if (++i == s->reqs.size())
			i = 0;
	}
	if (faults != 0)
		state.SkipWithError("walks faulted");
	state.SetItemsProcessed(state.iterations());
	measure_bounds(*s);
	// Serial walks are independent of each other too: out-of-order execution overlaps
	// consecutive ones, so their bound is the same independent-load rate; the dependent
	// chain (every load waiting for the one before) is shown beside it for reference.
	state.counters["chain_per_s"] = s->chain_per_s;
	label(state, *s, s->mlp_per_s, "independent loads of table lines", 1);
}

void walk_pipelined(benchmark::State &state, const WalkCase &c)
{
	WalkSetup *s = setup_for(c);
	if (s == nullptr)
		return state.SkipWithError("table setup failed");
	WalkResult results[kBurst];
	size_t i = 0, faults = 0;
	for (auto _ : state) {
		walk_burst(s->xlat, &s->reqs[i], results, kBurst);
		for (const WalkResult &r : results)
			faults += !r.ok();
		benchmark::DoNotOptimize(results);
		i += kBurst;
		if (i + kBurst > s->reqs.size())
			i = 0;
	}
	if (faults != 0)
		state.SkipWithError("walks faulted");
	state.SetItemsProcessed(state.iterations() * kBurst);
	measure_bounds(*s);
	label(state, *s, s->mlp_per_s, "independent loads of table lines", kBurst);
}

/* The machine's own bounds, over a buffer as large as the table pool. */
struct DramBuffer {
	GuestRam ram;
	std::vector<uint32_t> order; // random line indices
	DramBuffer()
	{
		Result<GuestRam> r = GuestRam::allocate(kPoolBytes);
		if (!r.ok())
			return;
		ram = std::move(r.value());
		const size_t lines = kPoolBytes / 64;
		static_assert(kPoolBytes / 64 >= (1 << 20));
		auto *next = reinterpret_cast<uint64_t *>(ram.data());
		// A random cyclic permutation of cache lines for the dependent chase.
		std::vector<uint32_t> perm(lines);
		for (size_t i = 0; i < lines; i++)
			perm[i] = static_cast<uint32_t>(i);
		std::mt19937_64 rng(7);
		std::shuffle(perm.begin(), perm.end(), rng);
		for (size_t i = 0; i < lines; i++)
			next[perm[i] * 8] = perm[(i + 1) % lines];
		order.assign(perm.begin(), perm.begin() + (1 << 20));
	}
	static DramBuffer &get()
	{
		static DramBuffer b;
		return b;
	}
};

void dram_dependent(benchmark::State &state)
{
	DramBuffer &b = DramBuffer::get();
	const auto *p = reinterpret_cast<const uint64_t *>(b.ram.data());
	uint64_t at = 0;
	for (auto _ : state) {
		at = p[at * 8];
		benchmark::DoNotOptimize(at);
	}
	state.SetItemsProcessed(state.iterations());
	state.SetLabel(ram_backing_name(b.ram.backing()));
}

void dram_independent(benchmark::State &state)
{
	DramBuffer &b = DramBuffer::get();
	const auto *p = reinterpret_cast<const uint64_t *>(b.ram.data());
	size_t i = 0;
	uint64_t sum = 0;
	for (auto _ : state) {
		// 64 loads whose addresses come from a sequential list: no load waits for another.
		for (int k = 0; k < 64; k++)
			sum += p[b.order[i + k] * 8];
		i += 64;
		if (i + 64 > b.order.size())
			i = 0;
	}
	benchmark::DoNotOptimize(sum);
	state.SetItemsProcessed(state.iterations() * 64);
	state.SetLabel(ram_backing_name(b.ram.backing()));
}

std::vector<WalkCase> cases()
{
	std::vector<WalkCase> v = {
		{"x86-64-4l", table_config(Format::x86_64_4l), false, {}},
		{"x86-64-5l", table_config(Format::x86_64_5l), false, {}},
		{"vtd-ss-3l", table_config(Format::vtd_ss_3l), false, {}},
		{"vtd-ss-4l", table_config(Format::vtd_ss_4l), false, {}},
		{"vtd-ss-5l", table_config(Format::vtd_ss_5l), false, {}},
		{"arm-s1-4k", table_config(Format::arm_s1, 0, 12), false, {}},
		{"arm-s1-16k", table_config(Format::arm_s1, 0, 14), false, {}},
		{"arm-s1-64k", table_config(Format::arm_s1, 0, 16), false, {}},
		{"arm-s2-4k", table_config(Format::arm_s2, 0, 12, 40, 1), false, {}},
		{"nested-x86-64-4l+vtd-ss-4l", table_config(Format::x86_64_4l), true,
		 table_config(Format::vtd_ss_4l)},
		{"nested-arm-s1-4k+arm-s2-4k", table_config(Format::arm_s1, 0, 12), true,
		 table_config(Format::arm_s2, 0, 12, 40, 1)},
	};
	return v;
}

} // namespace

void register_walk_benchmarks()
{
	benchmark::RegisterBenchmark("Baseline/dram/dependent", dram_dependent);
	benchmark::RegisterBenchmark("Baseline/dram/independent", dram_independent);
	for (const WalkCase &c : cases()) {
		benchmark::RegisterBenchmark(("Walk/" + c.name + "/serial").c_str(),
					     [c](benchmark::State &s) { walk_serial(s, c); });
		benchmark::RegisterBenchmark(("Walk/" + c.name + "/pipelined").c_str(),
					     [c](benchmark::State &s) { walk_pipelined(s, c); });
	}
}
