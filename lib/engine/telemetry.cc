/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * DPDK telemetry: /iodp/stats, /iodp/workers, /iodp/devices (read them with
 * dpdk-telemetry.py). Handlers run on DPDK's telemetry thread and read only snapshots.
 */
#include <iodp/engine.h>

#include <rte_telemetry.h>

#include <atomic>
#include <cstdio>
#include <mutex>

namespace iodp::engine {

namespace {

std::atomic<Engine *> g_engine{nullptr};

void add(rte_tel_data *d, const char *name, uint64_t v)
{
	rte_tel_data_add_dict_u64(d, name, v);
}

void worker_dict(rte_tel_data *d, const WorkerStats &s)
{
	add(d, "requests", s.requests);
	add(d, "completions", s.completions);
	add(d, "pages", s.pages);
	add(d, "hits", s.hits);
	add(d, "misses", s.misses);
	add(d, "hit_rate_ppm", static_cast<uint64_t>(s.hit_rate() * 1e6));
	add(d, "walks", s.walks);
	add(d, "walk_reads", s.walk_reads);
	add(d, "walk_cache_hits", s.walk_cache_hits);
	add(d, "s2_hits", s.s2_hits);
	add(d, "route_misses", s.route_misses);
	add(d, "faults", s.faults);
	add(d, "faults_dropped", s.faults_dropped);
	add(d, "invalidations", s.invalidations);
	add(d, "lost", s.lost);
	add(d, "bursts", s.bursts);
	add(d, "busy_cycles", s.busy_cycles);
	add(d, "total_cycles", s.total_cycles);
	static const char *const kinds[kFaultKinds] = {
		nullptr, "fault_not_present", "fault_permission", "fault_address_size",
		"fault_reserved_bit", "fault_bad_table_pointer", "fault_access_flag",
		"fault_loop", "fault_not_attached", "fault_bad_config", nullptr, nullptr,
		nullptr, nullptr, nullptr, nullptr, "fault_bad_request"};
	for (unsigned k = 0; k < kFaultKinds; k++)
		if (kinds[k] != nullptr)
			add(d, kinds[k], s.faults_by_kind[k]);
}

int tel_stats(const char *, const char *, rte_tel_data *d)
{
	Engine *e = g_engine.load(std::memory_order_acquire);
	rte_tel_data_start_dict(d);
	if (e == nullptr)
		return 0;
	const EngineStats s = e->stats();
	add(d, "workers", s.workers);
	worker_dict(d, s.total);
	add(d, "commands", s.commands);
	add(d, "command_errors", s.command_errors);
	add(d, "faults_reported", s.faults_reported);
	add(d, "devices_lost", s.devices_lost);
	add(d, "sync_count", s.sync_count);
	add(d, "sync_p50_ns", s.sync_p50_ns);
	add(d, "sync_p99_ns", s.sync_p99_ns);
	add(d, "sync_max_ns", s.sync_max_ns);
	add(d, "command_passes", s.command_passes);
	add(d, "invalidations", s.invalidations);
	add(d, "invalidations_posted", s.invalidations_posted);
	add(d, "throttled", s.throttled);
	return 0;
}

int tel_workers(const char *, const char *, rte_tel_data *d)
{
	Engine *e = g_engine.load(std::memory_order_acquire);
	rte_tel_data_start_dict(d);
	if (e == nullptr)
		return 0;
	const std::vector<WorkerStats> ws = e->worker_stats();
	for (unsigned i = 0; i < ws.size(); i++) {
		rte_tel_data *w = rte_tel_data_alloc();
		if (w == nullptr)
			return -ENOMEM;
		rte_tel_data_start_dict(w);
		add(w, "lcore", e->worker_lcore(i));
		worker_dict(w, ws[i]);
		char name[32];
		std::snprintf(name, sizeof(name), "worker%u", i);
		rte_tel_data_add_dict_container(d, name, w, 0);
	}
	return 0;
}

int tel_devices(const char *, const char *, rte_tel_data *d)
{
	Engine *e = g_engine.load(std::memory_order_acquire);
	rte_tel_data_start_dict(d);
	if (e == nullptr)
		return 0;
	for (const PortReport &p : e->ports()) {
		rte_tel_data *v = rte_tel_data_alloc();
		if (v == nullptr)
			return -ENOMEM;
		rte_tel_data_start_dict(v);
		add(v, "port", p.port);
		rte_tel_data_add_dict_string(v, "driver", p.info.driver.c_str());
		rte_tel_data_add_dict_string(v, "description", p.info.description.c_str());
		add(v, "queues", p.info.queues);
		add(v, "ctl_device", p.info.ctl_device);
		add(v, "requests", p.stats.requests);
		add(v, "completions", p.stats.completions);
		add(v, "faults", p.stats.faults);
		add(v, "expected_faults", p.stats.expected_faults);
		add(v, "mismatches", p.stats.mismatches);
		add(v, "checks_answers", p.stats.checks_answers ? uint64_t{1} : uint64_t{0});
		add(v, "commands", p.stats.commands);
		add(v, "dma_bytes", p.stats.dma_bytes);
		add(v, "throttled", p.stats.throttled);
		for (const auto &[name, value] : p.stats.driver_counters)
			add(v, name.c_str(), value);
		rte_tel_data_add_dict_string(v, "state", p.gone ? "removed" : "running");
		rte_tel_data_add_dict_container(d, p.info.name.c_str(), v, 0);
	}
	return 0;
}

} // namespace

void Engine::register_telemetry(Engine *engine)
{
	static std::once_flag once;
	std::call_once(once, [] {
		rte_telemetry_register_cmd("/iodp/stats", tel_stats,
					   "iodp totals: requests, hits, walks, faults, syncs");
		rte_telemetry_register_cmd("/iodp/workers", tel_workers,
					   "iodp per-worker counters");
		rte_telemetry_register_cmd("/iodp/devices", tel_devices,
					   "iodp devices: per-device counters and state");
	});
	g_engine.store(engine, std::memory_order_release);
}

void Engine::unregister_telemetry(Engine *engine)
{
	g_engine.compare_exchange_strong(engine, nullptr, std::memory_order_acq_rel);
}

} // namespace iodp::engine
