/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The control path at VMM scale.
 *
 *   CtlMap/<pattern>/<n>   map n single 4 KiB pages into an IOAS with a VT-d paging HWPT
 *                          attached (one IOAS_MAP call each), then unmap them (one IOAS_UNMAP
 *                          call each). adjacent: IOVAs in order; shuffled: the same IOVAs
 *                          in a random order. Items are calls; map_ns and unmap_ns are the
 *                          mean cost of one call of each kind, last10_ns the mean of the last
 *                          10% of the maps (where the IOAS is fullest).
 *
 * What makes a call O(n) or O(log n) shows directly: compare the per-call cost across n.
 * The per-call counters are the calling thread's CPU time (the build machine is shared, and
 * a call never sleeps: no workers are registered, so its sync waits for nobody); items/s
 * is wall time. The host memory is reserved, never touched (the control path does not
 * read it).
 */
#include <iodp/ctl.h>

#include <benchmark/benchmark.h>

#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace iodp;

/** This thread's CPU time in seconds. */
double cpu_now()
{
	timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

constexpr uint64_t kPage = 4096;
constexpr uint64_t kIovaBase = 1ull << 32;
constexpr uint32_t kFixedRW =
	IODP_IOAS_MAP_FIXED_IOVA | IODP_IOAS_MAP_READABLE | IODP_IOAS_MAP_WRITEABLE;

/** Address space for @p bytes of host memory, never touched (PROT_NONE, no backing). */
class Reservation {
public:
	explicit Reservation(uint64_t bytes) : bytes_(bytes)
	{
		void *p = mmap(nullptr, bytes + (2u << 20), PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		base_ = p == MAP_FAILED ? nullptr : static_cast<std::byte *>(p);
	}
	~Reservation()
	{
		if (base_ != nullptr)
			munmap(base_, bytes_ + (2u << 20));
	}
	Reservation(const Reservation &) = delete;
	Reservation &operator=(const Reservation &) = delete;
	/** 2 MiB-aligned start (so adjacent host pages are what a guest's RAM looks like). */
	std::byte *data() const
	{
		const uintptr_t a = reinterpret_cast<uintptr_t>(base_);
		return reinterpret_cast<std::byte *>((a + (2u << 20) - 1) & ~uintptr_t{(2u << 20) - 1});
	}
	bool ok() const { return base_ != nullptr; }

private:
	std::byte *base_ = nullptr;
	uint64_t bytes_;
};

void ctl_map(benchmark::State &state, bool shuffled, uint64_t n)
{
	Reservation host(n * kPage);
	if (!host.ok()) {
		state.SkipWithError("cannot reserve the host address space");
		return;
	}
	std::vector<uint64_t> order(n);
	std::iota(order.begin(), order.end(), uint64_t{0});
	if (shuffled)
		std::shuffle(order.begin(), order.end(), std::mt19937_64(42));
	double map_s = 0, unmap_s = 0, last10_s = 0;
	for (auto _ : state) {
		state.PauseTiming();
		ctl::CtxConfig cfg;
		// One 4 KiB leaf table per 512 pages, plus the levels above.
		cfg.table_pool_bytes = std::max<uint64_t>(8ull << 20, (n / 512 + 64) * kPage * 2);
		auto ctx = std::make_unique<ctl::Ctx>(cfg);
		const uint32_t ioas = *ctx->ioas_alloc();
		ctl::DeviceSpec spec;
		spec.name = "vtd0";
		spec.model = ctl::IommuModel::vtd;
		const uint32_t dev = *ctx->device_create(spec);
		if (!ctx->device_attach(dev, std::nullopt, ioas).ok()) {
			state.SkipWithError("attach failed");
			return;
		}
		state.ResumeTiming();
		const double t0 = cpu_now();
		double t90 = t0;
		for (uint64_t i = 0; i < n; i++) {
			if (i == n - n / 10)
				t90 = cpu_now();
			const uint64_t p = order[i];
			Result<uint64_t> r = ctx->ioas_map(ioas, kFixedRW, kIovaBase + p * kPage,
							   host.data() + p * kPage, kPage);
			if (!r) {
				state.SkipWithError(r.status().message().c_str());
				return;
			}
		}
		const double t1 = cpu_now();
		for (uint64_t i = 0; i < n; i++) {
			Result<uint64_t> r = ctx->ioas_unmap(ioas, kIovaBase + order[i] * kPage, kPage);
			if (!r) {
				state.SkipWithError(r.status().message().c_str());
				return;
			}
		}
		const double t2 = cpu_now();
		map_s += t1 - t0;
		last10_s += t1 - t90;
		unmap_s += t2 - t1;
		state.PauseTiming();
		ctx.reset();
		state.ResumeTiming();
	}
	const double iters = static_cast<double>(state.iterations());
	state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * 2 * n));
	state.counters["map_ns"] = map_s / iters / n * 1e9;
	state.counters["unmap_ns"] = unmap_s / iters / n * 1e9;
	state.counters["last10_ns"] = last10_s / iters / std::max<uint64_t>(1, n / 10) * 1e9;
}

} // namespace

void register_ctl_benchmarks()
{
	for (bool shuffled : {false, true})
		for (uint64_t n : {1000ull, 10000ull, 100000ull, 1000000ull})
			benchmark::RegisterBenchmark(
				("CtlMap/" + std::string(shuffled ? "shuffled" : "adjacent") + "/" +
				 std::to_string(n))
					.c_str(),
				[shuffled, n](benchmark::State &s) { ctl_map(s, shuffled, n); })
				->Unit(benchmark::kMillisecond)
				->UseRealTime()
				->Iterations(n >= 100000 ? 1 : n >= 10000 ? 3 : 20);
}
