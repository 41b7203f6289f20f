/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The counter tables (counters.h): one row per counter, read by telemetry.cc and by
 * iodp-pmd's reports. The descriptions are doc/engine.md's, shortened.
 */
#include <iodp/counters.h>

#include <iodp/iodp.h>
#include <iodp/request.h>

namespace iodp::engine {

namespace {

#define IODP_WORKER(field, text)                                                           \
	Counter<WorkerStats>                                                               \
	{                                                                                  \
		#field, text, [](const WorkerStats &s) -> uint64_t { return s.field; }     \
	}
#define IODP_FAULT(kind, suffix)                                                           \
	Counter<WorkerStats>                                                               \
	{                                                                                  \
		"fault_" #suffix, "requests answered with fault " #suffix,                 \
			[](const WorkerStats &s) -> uint64_t { return s.faults_by_kind[kind]; }    \
	}

// The order is the reports' order.
const Counter<WorkerStats> kWorker[] = {
	IODP_WORKER(requests, "requests taken from device queues (or given to iodp_translate_burst)"),
	IODP_WORKER(completions, "completion records written: one per host-contiguous run"),
	IODP_WORKER(pages, "lookups: one per request inside one cached page, one per 4 KiB piece "
			   "of a request split across pages"),
	IODP_WORKER(hits, "pieces answered from the IOTLB shard"),
	IODP_WORKER(misses, "pieces the shard did not hold (walked)"),
	{"hit_rate_ppm", "hits / pages, in millionths",
	 [](const WorkerStats &s) -> uint64_t { return static_cast<uint64_t>(s.hit_rate() * 1e6); }},
	IODP_WORKER(walks, "table walks started, stage-2 walks of nested misses included"),
	IODP_WORKER(walk_reads, "table entries those walks read"),
	IODP_WORKER(walk_cache_hits, "walks resumed from the paging-structure cache"),
	IODP_WORKER(s2_hits, "nested walks whose stage-2 step came from the stage-2 cache"),
	IODP_WORKER(route_misses, "PASID/config cache misses (a route resolved from lib/ctl)"),
	IODP_WORKER(faults, "requests answered with a fault"),
	IODP_FAULT(IODP_FAULT_NOT_PRESENT, not_present),
	IODP_FAULT(IODP_FAULT_PERMISSION, permission),
	IODP_FAULT(IODP_FAULT_ADDRESS_SIZE, address_size),
	IODP_FAULT(IODP_FAULT_RESERVED_BIT, reserved_bit),
	IODP_FAULT(IODP_FAULT_BAD_TABLE_POINTER, bad_table_pointer),
	IODP_FAULT(IODP_FAULT_ACCESS_FLAG, access_flag),
	IODP_FAULT(IODP_FAULT_LOOP, loop),
	IODP_FAULT(IODP_FAULT_PASID_NOT_ATTACHED, not_attached),
	IODP_FAULT(IODP_FAULT_BAD_CONFIG, bad_config),
	IODP_FAULT(IODP_FAULT_BAD_REQUEST, bad_request),
	IODP_WORKER(faults_dropped, "faults not reported to lib/ctl: the fault ring was full"),
	IODP_WORKER(invalidations, "invalidation descriptors applied from the worker's ring"),
	IODP_WORKER(lost, "completions a device's completion queue had no room for"),
	IODP_WORKER(bursts, "polls that found requests"),
	IODP_WORKER(busy_cycles, "TSC cycles in polls that found requests"),
	IODP_WORKER(total_cycles, "TSC cycles in all polls"),
};

#define IODP_ENGINE(field, text)                                                           \
	Counter<EngineStats>                                                               \
	{                                                                                  \
		#field, text, [](const EngineStats &s) -> uint64_t { return s.field; }     \
	}

// workers first: visit_stats() puts the worker totals right after it.
const Counter<EngineStats> kEngine[] = {
	IODP_ENGINE(workers, "workers"),
	IODP_ENGINE(commands, "device invalidation-queue commands carried out"),
	IODP_ENGINE(command_errors, "device invalidation-queue commands that failed"),
	IODP_ENGINE(faults_reported, "faults reported to lib/ctl's fault log and queues"),
	IODP_ENGINE(devices_lost, "devices that went away"),
	IODP_ENGINE(sync_count, "Coherence::sync() calls"),
	IODP_ENGINE(sync_p50_ns, "sync latency median, ns (bucket upper edge)"),
	IODP_ENGINE(sync_p99_ns, "sync latency 99th percentile, ns (bucket upper edge)"),
	IODP_ENGINE(sync_max_ns, "slowest sync, ns"),
	IODP_ENGINE(command_passes, "control passes that carried out commands (one sync each)"),
	// Not "invalidations": that is the worker counter summed beside it in /iodp/stats.
	{"invalidations_requested", "invalidations the commands asked the workers for",
	 [](const EngineStats &s) -> uint64_t { return s.invalidations; }},
	IODP_ENGINE(invalidations_posted, "invalidations posted after merging ranges"),
	IODP_ENGINE(throttled, "passes in which some device had more commands than its budget"),
};

#define IODP_DEVICE(field, text)                                                           \
	Counter<dev::DevStats>                                                             \
	{                                                                                  \
		#field, text, [](const dev::DevStats &s) -> uint64_t { return s.field; }   \
	}

const Counter<dev::DevStats> kDevice[] = {
	IODP_DEVICE(requests, "requests the device posted"),
	IODP_DEVICE(completions, "requests answered"),
	IODP_DEVICE(faults, "requests answered with a fault"),
	IODP_DEVICE(expected_faults, "of those, ones the device meant to cause"),
	IODP_DEVICE(mismatches, "answers that disagree with the device's own truth (verify)"),
	{"checks_answers", "the device knows its right answers (expected_faults and mismatches "
			   "are measured)",
	 [](const dev::DevStats &s) -> uint64_t { return s.checks_answers ? 1 : 0; },
	 CounterKind::flag},
	IODP_DEVICE(commands, "invalidation-queue commands completed (ipc: UNMAPs)"),
	IODP_DEVICE(dma_bytes, "bytes really copied (dma=1)"),
	IODP_DEVICE(throttled, "control passes that left its commands for the next one"),
};

} // namespace

std::span<const Counter<WorkerStats>> worker_counters() { return kWorker; }
std::span<const Counter<EngineStats>> engine_counters() { return kEngine; }
std::span<const Counter<dev::DevStats>> device_counters() { return kDevice; }

} // namespace iodp::engine
