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
 *   CtlStrictSteps/<map>   what one strict buffer costs, step by step (map, translate,
 *                          unmap, sync), on one thread: see ctl_strict_steps().
 *
 *   CtlFairness/budget:<b>  a strict device (map, DMA, unmap + invalidation + wait per
 *                          buffer) alone and beside a storm device that keeps its
 *                          invalidation queue full, in turns (250 ms each, 4 times); each
 *                          device may have <b> units of control work (maps, commands) done
 *                          per control pass. ratio = the strict device's
 *                          buffers/s with the storm / alone (goal >= 0.8); storm_cmd_per_s
 *                          is what the storm got done. budget:4096 is "no budget" (the
 *                          queue holds 1024).
 *
 * What makes a call O(n) or O(log n) shows directly: compare the per-call cost across n.
 * The per-call counters are the calling thread's CPU time (the build machine is shared, and
 * a call never sleeps: no workers are registered, so its sync waits for nobody); items/s
 * is wall time. The host memory is reserved, never touched (the control path does not
 * read it).
 */
#include <iodp/ctl.h>
#include <iodp/iodp.h>
#include <iodp/emul.h>
#include <iodp/engine.h>
#include <iodp/mem.h>

#include <rte_lcore.h>

#include <benchmark/benchmark.h>

#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <chrono>
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

/*
 * What one strict buffer costs, step by step, on one thread (library mode: the thread is
 * the worker too, so a sync waits for nobody and every step is CPU time, which a shared
 * machine disturbs least). Per round of 32 buffers (a strict queue's slots, adjacent
 * pages): 32 maps, one translate burst of 32 one-page requests (the DMA's lookup: a miss
 * and a walk each, as in Engine/strict), 32 unmaps inside one SyncBatch, its sync (the
 * invalidations, merged into one range, posted to the worker's ring; one grace period).
 * The next burst drains the ring first (counted in dma_ns). Counters: ns per buffer of
 * each step and in all; items are buffers. The engine spreads these over two threads:
 * map, unmap and sync on the control thread, translate and drain on the worker.
 */
void ctl_strict_steps(benchmark::State &state, bool guest)
{
	constexpr unsigned kSlots = 32;
	Reservation host(kSlots * 64 * kPage);
	GuestMemory ram;
	(void)ram.add_region(0, kSlots * 64 * kPage, host.data());
	ctl::Ctx ctx;
	const uint32_t ioas = *ctx.ioas_alloc();
	ctl::DeviceSpec spec;
	spec.name = "vtd0";
	spec.model = ctl::IommuModel::vtd;
	const uint32_t dev = *ctx.device_create(spec);
	// The leaf table stays (page 0 of the 2 MiB stays mapped), as a strict queue's does.
	// The worker comes last: until its first burst on this thread, a sync waits for it.
	if (!host.ok() || !ctx.device_attach(dev, std::nullopt, ioas).ok() ||
	    !ctx.ioas_map(ioas, kFixedRW, kIovaBase, host.data(), kPage)) {
		state.SkipWithError("setup failed");
		return;
	}
	Result<std::unique_ptr<engine::Worker>> w = engine::Worker::create(ctx, {});
	if (!w || !(*w)->set_port(0, dev).ok()) {
		state.SkipWithError("worker setup failed");
		return;
	}
	engine::Worker &worker = **w;
	dev::Request reqs[kSlots];
	dev::Completion cpls[kSlots * 2];
	double t_map = 0, t_dma = 0, t_unmap = 0, t_sync = 0;
	uint64_t round = 0, answered = 0;
	for (auto _ : state) {
		// Each round maps the slots onto other host pages (as the strict profile does).
		const uint64_t shift = (round++ % 63) + 1;
		const double t0 = cpu_now();
		for (unsigned s = 0; s < kSlots; s++) {
			const uint64_t iova = kIovaBase + (s + 1) * kPage, off = (s * 64 + shift) * kPage;
			if (!(guest ? ctx.ioas_map_guest(ioas, kFixedRW, iova, ram, off, kPage)
				    : ctx.ioas_map(ioas, kFixedRW, iova, host.data() + off, kPage))) {
				state.SkipWithError("map failed");
				return;
			}
		}
		const double t1 = cpu_now();
		for (unsigned s = 0; s < kSlots; s++)
			reqs[s] = dev::Request{kIovaBase + (s + 1) * kPage, s, 4096, IODP_PASID_NONE, 0, 0,
					       IODP_ACCESS_WRITE, {0, 0, 0}};
		size_t used = 0;
		const size_t nc = worker.translate_burst(reqs, kSlots, cpls, kSlots * 2, &used);
		for (size_t i = 0; i < nc; i++)
			answered += cpls[i].fault == 0 &&
				    cpls[i].host == reinterpret_cast<uint64_t>(
							    host.data() + (cpls[i].cookie * 64 + shift) * kPage);
		const double t2 = cpu_now();
		double t3;
		{
			ctl::Ctx::SyncBatch batch(ctx);
			for (unsigned s = 0; s < kSlots; s++)
				if (!ctx.ioas_unmap(ioas, kIovaBase + (s + 1) * kPage, kPage)) {
					state.SkipWithError("unmap failed");
					return;
				}
			t3 = cpu_now();
			(void)batch.sync();
		}
		const double t4 = cpu_now();
		t_map += t1 - t0;
		t_dma += t2 - t1;
		t_unmap += t3 - t2;
		t_sync += t4 - t3;
	}
	const double bufs = static_cast<double>(state.iterations()) * kSlots;
	if (answered != static_cast<uint64_t>(bufs))
		state.SkipWithError("a buffer was answered wrongly");
	state.SetItemsProcessed(static_cast<int64_t>(bufs));
	state.counters["map_ns"] = t_map / bufs * 1e9;
	state.counters["dma_ns"] = t_dma / bufs * 1e9;
	state.counters["unmap_ns"] = t_unmap / bufs * 1e9;
	state.counters["sync_ns"] = t_sync / bufs * 1e9;
	state.counters["total_ns"] = (t_map + t_dma + t_unmap + t_sync) / bufs * 1e9;
}

/** Requests the device got answers for, over @p d of polling the control side. */
uint64_t strict_answers(engine::Engine &eng, dev::Device &strict, std::chrono::milliseconds d)
{
	const uint64_t before = strict.stats().completions;
	const auto end = std::chrono::steady_clock::now() + d;
	while (std::chrono::steady_clock::now() < end)
		eng.poll_control();
	return strict.stats().completions - before;
}

void ctl_fairness(benchmark::State &state, unsigned budget)
{
	ctl::Ctx ctx;
	dev::Registry reg;
	(void)reg.add(emul::driver());
	Result<std::unique_ptr<dev::Device>> strict = reg.create(ctx, "emul0,profile=strict,ws=16M");
	Result<std::unique_ptr<dev::Device>> storm = reg.create(ctx, "emul1,profile=storm,ws=16M");
	engine::EngineConfig cfg;
	cfg.command_budget = budget;
	cfg.lcores = {rte_get_next_lcore(-1, 1, 0)};
	Result<std::unique_ptr<engine::Engine>> e = engine::Engine::create(ctx, cfg);
	if (!strict || !storm || !e || !(*e)->add_device(**strict).ok() || !(*e)->start().ok()) {
		state.SkipWithError("devices or engine failed");
		return;
	}
	engine::Engine &eng = **e;
	using std::chrono::milliseconds;
	(void)strict_answers(eng, **strict, milliseconds(200));
	// Alone and beside the storm in turns (the storm's device taken out and put back),
	// so that what else the machine runs weighs on both alike.
	uint64_t alone = 0, with = 0, storm_done = 0, storm_throttled = 0;
	double secs = 0;
	for (auto _ : state) {
		alone += strict_answers(eng, **strict, milliseconds(250));
		Result<uint16_t> port = eng.add_device(**storm);
		if (!port) {
			state.SkipWithError(port.status().message().c_str());
			return;
		}
		(void)strict_answers(eng, **strict, milliseconds(50)); // its queue fills
		const uint64_t storm0 = (*storm)->stats().commands;
		with += strict_answers(eng, **strict, milliseconds(250));
		storm_done += (*storm)->stats().commands - storm0;
		storm_throttled += eng.ports()[*port].stats.throttled;
		(void)eng.remove_device(*port, "the storm pauses");
		(void)strict_answers(eng, **strict, milliseconds(50));
		secs += 0.25;
		state.SetIterationTime(0.5);
	}
	eng.stop();
	state.counters["alone_buf_per_s"] = static_cast<double>(alone) / secs;
	state.counters["buf_per_s"] = static_cast<double>(with) / secs;
	state.counters["ratio"] = alone > 0 ? static_cast<double>(with) / alone : 0;
	state.counters["storm_cmd_per_s"] = static_cast<double>(storm_done) / secs;
	state.counters["storm_throttled"] = static_cast<double>(storm_throttled);
	state.counters["strict_throttled"] = static_cast<double>(eng.ports()[0].stats.throttled);
	if ((*strict)->stats().mismatches != 0)
		state.SkipWithError("the strict device saw wrong answers");
}

} // namespace

void register_ctl_benchmarks()
{
	// ioas_map: user memory, checked mapped (a system call per map); ioas_map_guest: a
	// VMM's guest RAM, as drivers/emul's strict profile maps its buffers.
	for (bool guest : {false, true})
		benchmark::RegisterBenchmark(guest ? "CtlStrictSteps/ioas_map_guest"
						   : "CtlStrictSteps/ioas_map",
					     [guest](benchmark::State &s) { ctl_strict_steps(s, guest); });
	for (unsigned budget : {64u, 4096u})
		benchmark::RegisterBenchmark(("CtlFairness/budget:" + std::to_string(budget)).c_str(),
					     [budget](benchmark::State &s) { ctl_fairness(s, budget); })
			->UseManualTime()
			->Iterations(4)
			->Unit(benchmark::kMillisecond);
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
