/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * End to end: emulated devices -> worker lcores -> completions, per traffic profile.
 *
 *   Engine/<profile>/<workers>             the engine (batched, prefetching pipeline)
 *   Engine/<profile>/<workers>/serialwalk  the same engine walking misses one at a time
 *   Library/<profile>                      library mode on the benchmark's thread: the
 *                                          worker's own cost (CPU time), no rings
 *   EngineQemuStyle/<profile>              the same devices and traffic through an engine
 *                                          built as software IOMMUs are today: one mutex,
 *                                          one hash table (std::unordered_map, reset when it
 *                                          holds 1024 pages, as QEMU's intel-iommu does),
 *                                          one walk at a time under the lock
 * Items are requests answered (per second of wall time); req_per_worker_cpu_s is the same
 * per second of the worker threads' own CPU time (what counts on a shared machine); hit_rate is IOTLB hits per page looked up; the label is the
 * device's description (with what its guest RAM is backed by). The benchmark's thread is
 * the control thread (strict traffic needs it for its unmaps and invalidations).
 */
#include <iodp/emul.h>
#include <iodp/engine.h>

#include <benchmark/benchmark.h>

#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_pause.h>

#include <dirent.h>

#include <chrono>
#include <fstream>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

using namespace iodp;

namespace {

using Clock = std::chrono::steady_clock;

/** The devargs of each profile: a working set larger than a shard reaches where it matters. */
struct ProfileSpec {
	const char *name;
	const char *devargs;
};
const ProfileSpec kProfiles[] = {
	{"nic", "profile=nic,ws=256M"},
	{"nvme", "profile=nvme,ws=256M"},
	{"random", "profile=random,ws=1G"},
	{"zipf", "profile=zipf,ws=1G"},
	{"stream", "profile=stream,ws=256M"},
	{"strict", "profile=strict,ws=64M"},
	// The engine alone: requests made before the clock starts, answers counted, not
	// checked. hit: 8 Ki pages, which a shard (32 Ki entries) holds; miss: uniform over
	// 1 GiB (a shard reaches 128 MiB of it), every miss resumed at its leaf table.
	{"replay-hit", "profile=replay,ws=32M"},
	{"replay-miss", "profile=replay,ws=1G"},
};

constexpr auto kSlice = std::chrono::milliseconds(50);

/**
 * Nanoseconds lcore @p lcore's thread has run on a CPU (schedstat's first field), or 0.
 * On a machine shared with other work a worker waits for a core much of the time; requests
 * per second of its own CPU time is what it does when it has a core to itself.
 */
uint64_t lcore_cpu_ns(unsigned lcore)
{
	const std::string want = "rte-worker-" + std::to_string(lcore);
	DIR *dir = opendir("/proc/self/task");
	if (dir == nullptr)
		return 0;
	uint64_t ns = 0;
	while (const dirent *e = readdir(dir)) {
		const std::string task = std::string("/proc/self/task/") + e->d_name;
		std::ifstream comm(task + "/comm");
		std::string name;
		if (!std::getline(comm, name) || name != want)
			continue;
		std::ifstream stat(task + "/schedstat");
		stat >> ns;
		break;
	}
	closedir(dir);
	return ns;
}

uint64_t lcores_cpu_ns(const std::vector<unsigned> &lcores)
{
	uint64_t ns = 0;
	for (unsigned l : lcores)
		ns += lcore_cpu_ns(l);
	return ns;
}

/** Counter req_per_worker_cpu_s: @p requests over the workers' own CPU time. */
void count_cpu(benchmark::State &state, uint64_t requests, uint64_t cpu_ns)
{
	if (cpu_ns != 0)
		state.counters["req_per_worker_cpu_s"] = static_cast<double>(requests) * 1e9 / cpu_ns;
}

std::unique_ptr<dev::Device> make_device(ctl::Ctx &ctx, const ProfileSpec &p, unsigned queues)
{
	dev::Registry reg;
	(void)reg.add(emul::driver());
	const std::string args = std::string("emul0,") + p.devargs + ",queues=" +
				 std::to_string(queues);
	Result<std::unique_ptr<dev::Device>> d = reg.create(ctx, args);
	if (!d)
		return nullptr;
	return std::move(*d);
}

void run_engine(benchmark::State &state, const ProfileSpec &p, unsigned workers, bool serial)
{
	ctl::Ctx ctx;
	std::unique_ptr<dev::Device> d = make_device(ctx, p, workers);
	engine::EngineConfig cfg;
	cfg.worker.serial_walks = serial;
	unsigned l;
	RTE_LCORE_FOREACH_WORKER(l)
		if (cfg.lcores.size() < workers)
			cfg.lcores.push_back(l);
	Result<std::unique_ptr<engine::Engine>> e = engine::Engine::create(ctx, cfg);
	if (d == nullptr || !e || !(*e)->add_device(*d).ok() || !(*e)->start().ok()) {
		state.SkipWithError(e ? "device or start failed" : e.status().message().c_str());
		return;
	}
	engine::Engine &eng = **e;
	const auto warm_end = Clock::now() + std::chrono::milliseconds(200);
	while (Clock::now() < warm_end)
		eng.poll_control();
	const engine::EngineStats before_e = eng.stats();
	const engine::WorkerStats before = before_e.total;
	const uint64_t cpu0 = lcores_cpu_ns(cfg.lcores);
	for (auto _ : state) {
		const auto t0 = Clock::now();
		while (Clock::now() - t0 < kSlice)
			eng.poll_control();
		state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
	}
	const uint64_t cpu1 = lcores_cpu_ns(cfg.lcores);
	eng.stop();
	const engine::EngineStats after_e = eng.stats();
	const engine::WorkerStats after = after_e.total;
	// Control passes: how many guest invalidations each sync covered (strict traffic).
	const double secs = static_cast<double>(state.iterations()) * kSlice.count() / 1e3;
	const auto syncs = static_cast<double>(after_e.command_passes - before_e.command_passes);
	const auto invals = static_cast<double>(after_e.commands - before_e.commands);
	if (invals > 0) {
		state.counters["inval_per_sync"] = syncs > 0 ? invals / syncs : 0;
		state.counters["syncs_per_s"] = syncs / secs;
		state.counters["inval_per_s"] = invals / secs;
	}
	state.SetItemsProcessed(static_cast<int64_t>(after.requests - before.requests));
	count_cpu(state, after.requests - before.requests, cpu1 - cpu0);
	const double pages = static_cast<double>(after.pages - before.pages);
	state.counters["hit_rate"] = pages > 0 ? (after.hits - before.hits) / pages : 0;
	state.counters["walk_reads_per_miss"] =
		after.misses > before.misses
			? static_cast<double>(after.walk_reads - before.walk_reads) /
				  (after.misses - before.misses)
			: 0;
	if (d->stats().mismatches != 0)
		state.SkipWithError("the device saw wrong answers");
	state.SetLabel(d->info().description);
}

/*
 * Library mode: the benchmark's thread is the worker (translate_burst() between the
 * device's rx and tx bursts), with no rings, no other thread and no control loop, timed
 * by this thread's CPU time: the worker's own cost per request, which a machine shared
 * with other work disturbs least.
 */
void run_library(benchmark::State &state, const ProfileSpec &p)
{
	ctl::Ctx ctx;
	std::unique_ptr<dev::Device> d = make_device(ctx, p, 1);
	Result<std::unique_ptr<engine::Worker>> w = engine::Worker::create(ctx, {});
	if (d == nullptr || !w || !d->start().ok() || !(*w)->set_port(0, d->ctl_id).ok()) {
		state.SkipWithError("device or worker setup failed");
		return;
	}
	engine::Worker &worker = **w;
	const dev::FastPath &fp = d->fast_path();
	dev::Request reqs[64];
	dev::Completion cpls[64 * 17];
	auto burst = [&] {
		const uint16_t n = fp.rx_burst(fp.queue[0], reqs, 64);
		size_t used = 0;
		const size_t nc = worker.translate_burst(reqs, n, cpls, 64 * 17, &used);
		fp.tx_burst(fp.queue[0], cpls, static_cast<uint16_t>(nc));
		return used;
	};
	for (int i = 0; i < 20000; i++) // warm the shard
		burst();
	const engine::WorkerStats before = worker.stats();
	uint64_t done = 0;
	for (auto _ : state)
		done += burst();
	const engine::WorkerStats after = worker.stats();
	state.SetItemsProcessed(static_cast<int64_t>(done));
	const double pages = static_cast<double>(after.pages - before.pages);
	state.counters["hit_rate"] = pages > 0 ? (after.hits - before.hits) / pages : 0;
	if (d->stats().mismatches != 0)
		state.SkipWithError("the device saw wrong answers");
	state.SetLabel(d->info().description);
	d->stop();
}

/* The QEMU-style baseline --------------------------------------------------------------- */

/**
 * One lock around everything, one hash table of pages, walks one at a time under the lock,
 * invalidations that scan the table (QEMU's vtd_iotlb_page_invalidate does the same).
 */
class QemuStyleEngine {
public:
	explicit QemuStyleEngine(ctl::Ctx &ctx) : ctx_(ctx)
	{
		ctx_.set_invalidation_sink([this](const inval::Descriptor &d) { invalidate(d); });
	}
	~QemuStyleEngine() { ctx_.set_invalidation_sink({}); }

	void serve(dev::Device &d, uint16_t queue)
	{
		const dev::FastPath &fp = d.fast_path();
		dev::Request reqs[64];
		dev::Completion cpls[64 * 17];
		const uint16_t n = fp.rx_burst(fp.queue[queue], reqs, 64);
		size_t nc = 0;
		for (uint16_t i = 0; i < n; i++) {
			nc += translate(d.ctl_id, reqs[i], &cpls[nc]);
			if (nc > 64 * 16) {
				fp.tx_burst(fp.queue[queue], cpls, static_cast<uint16_t>(nc));
				nc = 0;
			}
		}
		if (nc != 0)
			fp.tx_burst(fp.queue[queue], cpls, static_cast<uint16_t>(nc));
		requests_.store(requests_.load(std::memory_order_relaxed) + n,
				std::memory_order_relaxed);
	}

	uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }
	uint64_t hits = 0, pages = 0;

private:
	struct Key {
		uint32_t dev, pasid;
		uint64_t page;
		bool operator==(const Key &) const = default;
	};
	struct KeyHash {
		size_t operator()(const Key &k) const
		{
			return std::hash<uint64_t>()(k.page ^ (uint64_t{k.dev} << 40) ^
						     (uint64_t{k.pasid} << 20));
		}
	};
	struct Entry {
		uint64_t host_page;
		uint8_t perm;
	};
	/** VTD_IOTLB_MAX_SIZE in QEMU's hw/i386/intel_iommu.c. */
	static constexpr size_t kMaxEntries = 1024;

	size_t translate(uint32_t dev, const dev::Request &r, dev::Completion *out)
	{
		const uint64_t len = r.length ? r.length : 1;
		uint64_t off = 0;
		size_t nc = 0;
		while (off < len) {
			const uint64_t iova = r.iova + off;
			const uint64_t plen = std::min<uint64_t>(4096 - (iova & 4095), len - off);
			uint64_t host = 0;
			pgtable::WalkResult w;
			{
				std::unique_lock g(mu_);
				pages++;
				const auto it = iotlb_.find({dev, r.pasid, iova >> 12});
				if (it != iotlb_.end() && (r.access & 7 & ~it->second.perm) == 0) {
					hits++;
					host = it->second.host_page + (iova & 4095);
				} else {
					const iotlb::Route *rt = route(g, dev, r.pasid);
					if (rt == nullptr || rt->refuses(r.access, &w))
						w.fault = rt == nullptr ? pgtable::FaultKind::not_attached
									: w.fault;
					else
						w = pgtable::walk(rt->translation(), iova, r.access);
					if (w.ok()) {
						host = w.out;
						// QEMU's intel-iommu: a full IOTLB is reset, not evicted.
						if (iotlb_.size() >= kMaxEntries)
							iotlb_.clear();
						iotlb_[{dev, r.pasid, iova >> 12}] = {w.out & ~4095ull,
										       w.perm};
					}
				}
			}
			if (host == 0) {
				out[0] = dev::Completion{r.cookie, 0, static_cast<uint32_t>(off), 0,
							 static_cast<uint8_t>(w.fault), w.stage, w.level,
							 IODP_CPL_LAST, 0};
				return 1;
			}
			if (nc > 0 && out[nc - 1].host + out[nc - 1].length == host)
				out[nc - 1].length += static_cast<uint32_t>(plen);
			else
				out[nc++] = dev::Completion{r.cookie, host, static_cast<uint32_t>(off),
							    static_cast<uint32_t>(plen), 0, 0, 0, 0, 0};
			off += plen;
		}
		out[nc - 1].flags = IODP_CPL_LAST;
		return nc;
	}

	/** The context cache; a miss resolves outside the lock (lib/ctl calls back into us). */
	const iotlb::Route *route(std::unique_lock<std::mutex> &g, uint32_t dev, uint32_t pasid)
	{
		const uint64_t key = (uint64_t{dev} << 32) | pasid;
		auto it = routes_.find(key);
		if (it != routes_.end())
			return &it->second;
		g.unlock();
		Result<iotlb::Route> r = ctx_.resolve(dev, pasid == IODP_PASID_NONE
								   ? std::nullopt
								   : std::optional<uint32_t>(pasid));
		g.lock();
		if (!r)
			return nullptr;
		return &(routes_[key] = *r);
	}

	void invalidate(const inval::Descriptor &d)
	{
		std::lock_guard g(mu_);
		if (d.targets & inval::kTargetConfig)
			routes_.clear();
		if ((d.match & inval::kMatchRange) && !(d.match & inval::kMatchStage2)) {
			std::erase_if(iotlb_, [&](const auto &kv) {
				return d.overlaps(kv.first.page << 12, 4096);
			});
		} else {
			iotlb_.clear();
		}
	}

	ctl::Ctx &ctx_;
	std::mutex mu_;
	std::unordered_map<Key, Entry, KeyHash> iotlb_;
	std::unordered_map<uint64_t, iotlb::Route> routes_;
	std::atomic<uint64_t> requests_{0};
};

struct QemuRun {
	QemuStyleEngine *engine;
	dev::Device *dev;
	ctl::Ctx *ctx;
	std::atomic<bool> stop{false};
};

int qemu_worker(void *arg)
{
	auto *run = static_cast<QemuRun *>(arg);
	// It walks the same tables as the engine's workers, so lib/ctl's grace periods must
	// wait for it before table pages are reused: registered like a worker. Its shard
	// stays empty (QEMU's invalidations come through the sink, under its lock).
	iotlb::Coherence &bus = run->ctx->coherence();
	Result<iotlb::Shard> shard = iotlb::Shard::create({64, 64, 16});
	Result<unsigned> id = shard ? bus.register_worker(&*shard) : Result<unsigned>(shard.status());
	while (!run->stop.load(std::memory_order_relaxed)) {
		if (id)
			bus.drain(*id);
		run->engine->serve(*run->dev, 0);
		if (id)
			bus.quiescent(*id);
	}
	if (id)
		bus.unregister_worker(*id);
	return 0;
}

void run_qemu_style(benchmark::State &state, const ProfileSpec &p)
{
	ctl::Ctx ctx;
	std::unique_ptr<dev::Device> d = make_device(ctx, p, 1);
	const unsigned lcore = rte_get_next_lcore(-1, 1, 0);
	if (d == nullptr || !d->start().ok() || lcore >= RTE_MAX_LCORE) {
		state.SkipWithError("device or lcore missing");
		return;
	}
	QemuStyleEngine q(ctx);
	QemuRun run{&q, d.get(), &ctx};
	rte_eal_remote_launch(qemu_worker, &run, lcore);
	auto control = [&] {
		// QEMU's way: each invalidation carried out and waited for alone.
		while (engine::serve_commands(ctx, *d, nullptr, 1) != 0)
			;
		d->service();
	};
	const auto warm_end = Clock::now() + std::chrono::milliseconds(200);
	while (Clock::now() < warm_end)
		control();
	const uint64_t before = q.requests();
	const uint64_t cpu0 = lcore_cpu_ns(lcore);
	for (auto _ : state) {
		const auto t0 = Clock::now();
		while (Clock::now() - t0 < kSlice)
			control();
		state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
	}
	const uint64_t cpu1 = lcore_cpu_ns(lcore);
	const uint64_t done = q.requests() - before;
	run.stop.store(true);
	rte_eal_wait_lcore(lcore);
	state.SetItemsProcessed(static_cast<int64_t>(done));
	count_cpu(state, done, cpu1 - cpu0);
	state.counters["hit_rate"] = q.pages ? static_cast<double>(q.hits) / q.pages : 0;
	if (d->stats().mismatches != 0)
		state.SkipWithError("the device saw wrong answers");
	state.SetLabel(d->info().description);
}

} // namespace

void register_engine_benchmarks()
{
	const unsigned worker_lcores = rte_lcore_count() - 1;
	for (const ProfileSpec &p : kProfiles) {
		for (unsigned w : {1u, 2u, 4u, 8u}) {
			if (w > worker_lcores)
				break;
			const std::string base = std::string("Engine/") + p.name + "/" + std::to_string(w);
			benchmark::RegisterBenchmark(base.c_str(), [p, w](benchmark::State &s) {
				run_engine(s, p, w, false);
			})->UseManualTime()->Iterations(10)->Unit(benchmark::kMillisecond);
			benchmark::RegisterBenchmark((base + "/serialwalk").c_str(),
						     [p, w](benchmark::State &s) {
							     run_engine(s, p, w, true);
						     })
				->UseManualTime()->Iterations(10)->Unit(benchmark::kMillisecond);
		}
		if (std::string(p.name) != "strict") // strict needs a control thread
			benchmark::RegisterBenchmark((std::string("Library/") + p.name).c_str(),
						     [p](benchmark::State &s) { run_library(s, p); });
		if (worker_lcores >= 1)
			benchmark::RegisterBenchmark((std::string("EngineQemuStyle/") + p.name).c_str(),
						     [p](benchmark::State &s) { run_qemu_style(s, p); })
				->UseManualTime()->Iterations(10)->Unit(benchmark::kMillisecond);
	}
}
