/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * What iodp-pmd tells its user: the live line every interval, the summary at the end (as
 * text, as JSON for scripts) and the same numbers on DPDK telemetry.
 */

#include <iodp/coherence.h>
#include <iodp/engine.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace iodp::pmd {

/** The engine's counters at one moment. */
struct Sample {
	double t = 0; ///< seconds since the engine started
	engine::EngineStats engine;
	std::vector<engine::WorkerStats> workers;
	std::vector<engine::PortReport> ports;
	iotlb::LatencyHistogram::Counts sync;

	static Sample take(const engine::Engine &eng, double t);
};

struct WorkerRates {
	unsigned lcore = 0;
	uint64_t requests = 0;
	double requests_per_s = 0;
	double hit_rate = 0;
	double walks_per_s = 0;
	uint64_t faults = 0;
	double busy = 0; ///< share of cycles spent in bursts that had requests
};

/** What happened between two samples. */
struct Rates {
	double seconds = 0;
	uint64_t requests = 0;
	uint64_t faults = 0;
	double requests_per_s = 0;
	double hit_rate = 0;
	double walks_per_s = 0;
	double invals_per_s = 0; ///< invalidation descriptors per second (each reaches every worker)
	uint64_t syncs = 0;
	double syncs_per_s = 0;
	/** Guest invalidation commands per control pass (each pass ends in one sync). */
	double commands_per_sync = 0;
	uint64_t sync_p50_ns = 0, sync_p99_ns = 0;
	std::vector<WorkerRates> workers;
};

Rates rates_between(const Sample &from, const Sample &to, const engine::Engine &eng);

/** The live line: "  3.0s  28.41 Mreq/s  hit 97.3%  walks 0.52 M/s ...". */
std::string stats_line(const Rates &r);

/** How the run was set up, for the summary. */
struct RunInfo {
	std::string config;
	bool hugepages = false;
	std::string stop_reason;
	std::vector<std::string> events;
};

/** The summary as text (for people) on @p out. */
void print_summary(FILE *out, const RunInfo &run, const Sample &start, const Sample &end,
		   const engine::Engine &eng);

/** The summary as one JSON object (for scripts; the fields doc/user-guide.md lists). */
std::string summary_json(const RunInfo &run, const Sample &start, const Sample &end,
			 const engine::Engine &eng);

/**
 * Answer /iodp/summary (the JSON summary's fields, so far) and /iodp/rates (the last
 * interval) on DPDK telemetry. update() is called by the control thread every interval.
 */
class Telemetry {
public:
	static void register_commands();
	static void update(const RunInfo &run, const Sample &start, const Sample &now,
			   const Rates &last, const engine::Engine &eng);
	static void clear();
};

/** Mismatches over every device (a mismatch is a wrong answer: the run failed). */
uint64_t total_mismatches(const Sample &s);

} // namespace iodp::pmd
