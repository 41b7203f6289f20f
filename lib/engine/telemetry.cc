/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * DPDK telemetry: /iodp/stats, /iodp/workers, /iodp/devices (read them with
 * dpdk-telemetry.py). Handlers run on DPDK's telemetry thread and read only snapshots; the
 * counters and their names are counters.h's tables.
 */
#include <iodp/counters.h>
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

/** A counters.h visitor: telemetry has no booleans, so a flag goes as 0/1 too. */
auto adder(rte_tel_data *d)
{
	return [d](const char *name, uint64_t v, CounterKind) { add(d, name, v); };
}

int tel_stats(const char *, const char *, rte_tel_data *d)
{
	Engine *e = g_engine.load(std::memory_order_acquire);
	rte_tel_data_start_dict(d);
	if (e == nullptr)
		return 0;
	visit_stats(e->stats(), adder(d));
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
		visit_worker(ws[i], adder(w));
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
		visit_device(p.stats, adder(v));
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
