/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * InvalSync/<workers>: a range invalidation posted and synced while <workers> threads do
 * nothing but translate bursts out of their shards (drain, lookup, quiescent). Each
 * iteration is one post + sync; counters p10_us ... p999_us and max_us are its latency.
 *
 * The workers are ordinary threads: with as many workers as cores the control thread
 * competes with them for a CPU, and the latency shows it.
 */
#include <iodp/coherence.h>

#include <benchmark/benchmark.h>

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace {

using namespace iodp;
using namespace iodp::iotlb;

void inval_sync(benchmark::State &s, unsigned workers)
{
	Result<std::unique_ptr<Coherence>> bus = Coherence::create({8, 1024});
	if (!bus) {
		s.SkipWithError(bus.status().message().c_str());
		return;
	}
	std::atomic<bool> stop{false};
	std::atomic<unsigned> ready{0};
	std::vector<std::thread> threads;
	for (unsigned w = 0; w < workers; w++) {
		threads.emplace_back([&, w] {
			// The EAL pinned the main thread (and so its children) to lcore 0: let
			// worker w run on its own CPU where there is one.
			cpu_set_t set;
			CPU_ZERO(&set);
			const unsigned ncpu = std::max(1u, std::thread::hardware_concurrency());
			CPU_SET((w + 1) % ncpu, &set);
			pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
			Shard shard = std::move(*Shard::create({16384}));
			const unsigned id = *(*bus)->register_worker(&shard);
			const uint16_t ctx = shard.context(1, 0, 0);
			Probe probes[32];
			uint64_t host[32];
			uint8_t perm[32];
			for (unsigned i = 0; i < 32; i++) {
				probes[i] = {(1ull << 32) + i * 4096, ctx};
				shard.fill(ctx, probes[i].iova, 12, 0x7000000000 + i * 4096, 3);
			}
			ready++;
			while (!stop.load(std::memory_order_relaxed)) {
				(*bus)->drain(id);
				shard.lookup_bulk(probes, 32, host, perm);
				benchmark::DoNotOptimize(host);
				(*bus)->quiescent(id);
			}
			(*bus)->unregister_worker(id);
		});
	}
	while (ready.load() < workers)
		std::this_thread::yield();
	inval::Descriptor d;
	d.targets = inval::kTargetIotlb;
	d.match = inval::kMatchDomain | inval::kMatchRange;
	d.domain = 1;
	d.size = 4096;
	std::vector<double> us;
	uint64_t n = 0;
	for (auto _ : s) {
		d.addr = (1ull << 32) + (n++ % 32) * 4096;
		const auto t0 = std::chrono::steady_clock::now();
		(*bus)->post(d);
		(*bus)->sync();
		const auto t1 = std::chrono::steady_clock::now();
		us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
	}
	stop = true;
	for (std::thread &t : threads)
		t.join();
	std::sort(us.begin(), us.end());
	if (!us.empty()) {
		// The distribution, for tools/bench-report's plot (per mille ranks).
		auto at = [&](size_t pm) { return us[std::min(us.size() - 1, us.size() * pm / 1000)]; };
		s.counters["p10_us"] = at(100);
		s.counters["p50_us"] = at(500);
		s.counters["p90_us"] = at(900);
		s.counters["p99_us"] = at(990);
		s.counters["p999_us"] = at(999);
		s.counters["max_us"] = us.back();
	}
	s.SetItemsProcessed(static_cast<int64_t>(s.iterations()));
}

} // namespace

void register_inval_benchmarks()
{
	for (unsigned w : {1u, 2u})
		benchmark::RegisterBenchmark(("InvalSync/" + std::to_string(w)).c_str(),
					     [w](benchmark::State &s) { inval_sync(s, w); })
			->UseRealTime();
}
