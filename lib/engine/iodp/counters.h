/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * The counters iodp reports, each once: its name (the key in DPDK telemetry's
 * /iodp/stats, /iodp/workers and /iodp/devices, and in iodp-pmd's JSON summary), what it
 * counts, and how to read it from a snapshot. Every report iterates these tables, so a
 * counter cannot have two names; doc/engine.md lists the same names (tests/engine
 * counters_test checks both).
 */

#include <iodp/engine.h>

#include <cstdint>
#include <span>

namespace iodp::engine {

/** How a counter is shown where a report has the type: a count, or a 0/1 flag (JSON bool). */
enum class CounterKind : uint8_t { count, flag };

/** One counter of @p Stats (WorkerStats, EngineStats or dev::DevStats). */
template <class Stats> struct Counter {
	const char *name;        ///< the report key: lower case, words joined by '_'
	const char *description; ///< what it counts, one line
	uint64_t (*read)(const Stats &);
	CounterKind kind = CounterKind::count;
};

/** Per worker, and summed over workers in /iodp/stats: requests, hits, walks, faults by kind... */
std::span<const Counter<WorkerStats>> worker_counters();
/** Engine-wide, beside the worker totals in /iodp/stats: commands, syncs, devices lost... */
std::span<const Counter<EngineStats>> engine_counters();
/** Per device (/iodp/devices, the summary's per_device), before the driver's own counters. */
std::span<const Counter<dev::DevStats>> device_counters();

/**
 * The /iodp/stats set: @p add(name, value, kind) for each counter: the first engine-wide
 * one (workers), the worker totals, then the other engine-wide ones.
 */
template <class Add> void visit_stats(const EngineStats &s, Add &&add)
{
	const std::span<const Counter<EngineStats>> e = engine_counters();
	add(e[0].name, e[0].read(s), e[0].kind);
	for (const Counter<WorkerStats> &c : worker_counters())
		add(c.name, c.read(s.total), c.kind);
	for (const Counter<EngineStats> &c : e.subspan(1))
		add(c.name, c.read(s), c.kind);
}

/** One worker's counters: @p add(name, value, kind) for each. */
template <class Add> void visit_worker(const WorkerStats &s, Add &&add)
{
	for (const Counter<WorkerStats> &c : worker_counters())
		add(c.name, c.read(s), c.kind);
}

/** One device's counters, then its driver's own (as kind count). */
template <class Add> void visit_device(const dev::DevStats &s, Add &&add)
{
	for (const Counter<dev::DevStats> &c : device_counters())
		add(c.name, c.read(s), c.kind);
	for (const auto &[name, value] : s.driver_counters)
		add(name.c_str(), value, CounterKind::count);
}

} // namespace iodp::engine
