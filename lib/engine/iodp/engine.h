/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * The poll-mode engine: worker cores that answer devices' translation requests.
 *
 * A Worker is one core's translate pipeline. Per burst it
 *   1. drains its invalidation ring into its IOTLB shard (lib/iotlb Coherence),
 *   2. resolves each request's context, device -> PASID -> domain, through the shard's
 *      PASID/config cache (on a miss, the route table lib/ctl publishes, read without
 *      its lock; an unattached PASID faults, never translates),
 *   3. looks up every request's first byte in bulk in the shard; a request inside the page
 *      it hits (any page size) is answered by that lookup,
 *   4. walks the misses together (walks interleaved level by level with prefetch, resumed
 *      from the paging-structure cache, nested through the stage-2 cache) and fills;
 *      requests that cross pages are split into 4 KiB pieces there,
 *   5. writes completions (one per host-contiguous run of a request) and queues faults for
 *      the control thread to report to the context's fault queues,
 *   6. reports a quiescent state.
 * Library mode is the same Worker on the driver's own thread (translate_burst()); the
 * Engine runs Workers on DPDK lcores and feeds them from devices' queues (lib/dev), one
 * queue to one worker, placed on the queue memory's NUMA node when there is more than one.
 *
 * The control thread (the EAL main lcore, or the application's thread) calls
 * Engine::poll_control(): it carries out devices' invalidation-queue commands through
 * lib/ctl (which fans them out to every worker and syncs), reports workers' faults, runs
 * driver service hooks and takes away devices that disappeared.
 */

#include <iodp/coherence.h>
#include <iodp/ctl.h>
#include <iodp/dev.h>
#include <iodp/iotlb.h>
#include <iodp/request.h>
#include <iodp/status.h>

#include <atomic>
#include <deque>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

struct rte_ring;

namespace iodp::engine {

/** Ports a worker can tell apart; Request::port indexes them. */
inline constexpr unsigned kMaxPorts = 256;
/** Fault kinds counted separately (enum iodp_fault_kind, IODP_FAULT_BAD_REQUEST). */
inline constexpr unsigned kFaultKinds = 17;

struct WorkerConfig {
	iotlb::ShardConfig shard;
	/** Walk misses one at a time (the baseline the batched pipeline is measured against). */
	bool serial_walks = false;
	/** Faults waiting for the control thread (a power of two); beyond it they are counted. */
	unsigned fault_ring = 1024;
	/**
	 * Library mode: report faults to lib/ctl at the end of each burst on the worker's own
	 * thread, rather than leave them for an Engine's control thread.
	 */
	bool report_faults_inline = false;
};

/** One worker's counters (a snapshot; a worker publishes them at the end of each burst). */
struct WorkerStats {
	uint64_t bursts = 0;
	uint64_t requests = 0;
	uint64_t completions = 0;     ///< completion records written (>= requests answered)
	uint64_t pages = 0;           ///< lookups: one per request inside one cached page, one per
				      ///< 4 KiB piece of a request split across pages
	uint64_t hits = 0;
	uint64_t misses = 0;
	uint64_t walks = 0;
	uint64_t walk_reads = 0;
	uint64_t walk_cache_hits = 0;
	uint64_t s2_hits = 0;
	uint64_t route_misses = 0;
	uint64_t faults = 0;
	uint64_t faults_by_kind[kFaultKinds] = {};
	uint64_t faults_dropped = 0;  ///< not reported: the fault ring was full
	uint64_t invalidations = 0;   ///< descriptors applied from the invalidation ring
	uint64_t lost = 0;            ///< completions a device did not take
	uint64_t busy_cycles = 0;     ///< TSC cycles in bursts that had requests
	uint64_t total_cycles = 0;

	double hit_rate() const { return pages ? static_cast<double>(hits) / pages : 0.0; }
	/** Add every counter of @p other (totals over workers). */
	WorkerStats &operator+=(const WorkerStats &other);
};

/** A fault a worker found, for the control thread to report (lib/ctl report_fault). */
struct FaultNote {
	uint64_t iova;
	uint32_t ctl_device;
	uint32_t pasid; ///< IODP_PASID_NONE: none
	uint8_t access;
	uint8_t kind;
	uint8_t stage;
	int8_t level;
	uint32_t pad;
};

class Worker {
public:
	/** Registers a shard with @p ctx's coherence; ENOSPC when all worker slots are taken. */
	static Result<std::unique_ptr<Worker>> create(ctl::Ctx &ctx, const WorkerConfig &config);
	~Worker();
	Worker(const Worker &) = delete;
	Worker &operator=(const Worker &) = delete;

	/**
	 * Requests naming @p port (Request::port) are device @p ctl_device's (0: no device's;
	 * a request naming a port with no device is answered BAD_REQUEST).
	 */
	Status set_port(uint16_t port, uint32_t ctl_device);

	/**
	 * Library mode, one call per burst: drain invalidations, translate, report a quiescent
	 * state. Writes at most @p cap completions (cap >= 2 * IODP_REQUEST_MAX_LEN / 4096 + 2
	 * guarantees progress); *consumed is how many requests were answered (in order).
	 * Returns the completions written.
	 */
	size_t translate_burst(const dev::Request *reqs, size_t n, dev::Completion *cpls,
			       size_t cap, size_t *consumed);

	/* The same in parts, for a loop that serves several queues per burst --------------- */
	void begin_burst();
	/** Translate requests of whatever ports they name. */
	size_t translate(const dev::Request *reqs, size_t n, dev::Completion *cpls, size_t cap,
			 size_t *consumed);
	/** Translate requests that all come from @p port (their port field is ignored). */
	size_t translate_port(uint16_t port, const dev::Request *reqs, size_t n,
			      dev::Completion *cpls, size_t cap, size_t *consumed);
	void count_lost(uint64_t n) { own_.lost += n; }
	void end_burst(bool busy);

	/** Stop holding syncs up while not polling; online() catches up first. */
	void offline();
	void online();

	/** Control side: take queued faults (single consumer). */
	unsigned take_faults(FaultNote *notes, unsigned n);
	/** Report queued faults to lib/ctl now; returns how many. */
	unsigned report_faults();

	WorkerStats stats() const;
	unsigned coherence_id() const { return id_; }
	const iotlb::Shard &shard() const { return shard_; }

	/** Requests split into at most this many pages per internal step. */
	static constexpr size_t kMaxPieces = 256;

private:
	Worker(ctl::Ctx &ctx, const WorkerConfig &config);
	template <bool kFixedPort>
	size_t run(uint16_t port, const dev::Request *reqs, size_t n, dev::Completion *cpls,
		   size_t cap, size_t *consumed);
	/* The stages of run() (worker.cc says what each does). */
	struct Step;
	template <bool kFixedPort>
	void gather(Step &s, uint16_t port, const dev::Request *reqs, size_t n, size_t room);
	void look_up(Step &s, dev::Completion *cpls);
	void walk(Step &s);
	size_t complete(Step &s, dev::Completion *cpls);
	size_t complete_split(const dev::Request &r, uint32_t dev, const iotlb::Query *pieces,
			      const pgtable::WalkResult *res, size_t np, dev::Completion *cpls);
	/** The route of (ctl_dev, pasid); a miss never evicts one of @p held (this step's). */
	const iotlb::CachedRoute *route(uint32_t ctl_dev, uint32_t pasid,
					const iotlb::CachedRoute *const *held, size_t nheld);
	/** route()'s miss: the published table (no lock), then the cache. */
	[[gnu::noinline]] const iotlb::CachedRoute *
	route_miss(uint32_t ctl_dev, uint32_t pasid, const iotlb::CachedRoute *const *held,
		   size_t nheld);
	void fault(const dev::Request &r, uint32_t ctl_dev, uint64_t iova, unsigned kind,
		   uint8_t stage, int8_t level);
	void publish();

	ctl::Ctx &ctx_;
	/**
	 * The context's Coherence, kept here: read every burst, and ctx_'s own state shares
	 * cache lines with what the control thread writes on every call.
	 */
	iotlb::Coherence *bus_ = nullptr;
	WorkerConfig config_;
	iotlb::Shard shard_;
	unsigned id_ = 0;
	bool registered_ = false;
	rte_ring *faults_ = nullptr;
	uint32_t port_dev_[kMaxPorts] = {};
	uint64_t burst_start_ = 0;
	uint32_t idle_rounds_ = 0;
	WorkerStats own_;          ///< the worker's own counters (its thread only)
	/** What stats() reads: copied from own_ and the shard with relaxed stores per burst. */
	struct Published;
	std::unique_ptr<Published> pub_;
	/** Routes a step holds that the route cache had no room for (route()); per step. */
	std::unique_ptr<iotlb::CachedRoute[]> spill_;
	unsigned nspill_ = 0;
};

/**
 * Carry out up to @p max of @p device's invalidation-queue commands through lib/ctl and
 * complete them after one sync that began after the last of them (so each guest wait ends
 * only once every worker dropped what the command removed); @p max 1 is one sync per
 * command. Failures are completed with their errno and described in @p failures. Returns
 * the commands taken.
 */
unsigned serve_commands(ctl::Ctx &ctx, dev::Device &device, std::vector<std::string> *failures,
			unsigned max = 32);

struct EngineConfig {
	WorkerConfig worker;
	/** Requests taken from a queue at a time. */
	uint16_t burst = 64;
	/**
	 * Control work one device may have done per control pass: invalidation-queue
	 * commands carried out plus maps its service hook makes (dev::Device::spend_budget()).
	 * Its fair share, so that one device's command storm slows only itself. Devices are
	 * served round-robin, starting one further each pass. 1..4096.
	 */
	unsigned command_budget = 64;
	/** Worker lcores (EAL lcore ids); empty: every EAL worker lcore. */
	std::vector<unsigned> lcores;
};

/** A device as the engine sees it. */
struct PortReport {
	uint16_t port = 0;
	dev::DevInfo info;
	dev::DevStats stats;
	bool gone = false;
	std::string gone_reason;
	std::vector<unsigned> queue_worker; ///< the worker of each queue
};

/** Totals over workers, plus what the control thread keeps. */
struct EngineStats {
	WorkerStats total;
	unsigned workers = 0;
	uint64_t commands = 0;         ///< invalidation-queue commands carried out
	uint64_t command_errors = 0;
	uint64_t faults_reported = 0;  ///< to lib/ctl
	uint64_t devices_lost = 0;
	uint64_t sync_count = 0;
	uint64_t sync_p50_ns = 0, sync_p99_ns = 0, sync_max_ns = 0;
	/**
	 * Control passes that carried out commands, each ending in one sync for all of them
	 * (commands / command_passes: guest invalidations per sync).
	 */
	uint64_t command_passes = 0;
	/** Invalidations those commands asked for, and what was posted after merging ranges. */
	uint64_t invalidations = 0, invalidations_posted = 0;
	/** Passes in which some device had more commands than its budget (all devices). */
	uint64_t throttled = 0;
};

class Engine {
public:
	static Result<std::unique_ptr<Engine>> create(ctl::Ctx &ctx, const EngineConfig &config);
	~Engine();
	Engine(const Engine &) = delete;
	Engine &operator=(const Engine &) = delete;

	/**
	 * Serve a configured device: start it and give each of its queues to a worker. Before
	 * start() or while running. Returns its port. The device must outlive the engine.
	 */
	Result<uint16_t> add_device(dev::Device &device);
	/** Stop serving @p port (workers let go of it before this returns) and stop it. */
	Status remove_device(uint16_t port, const std::string &reason);

	/** Launch the workers on their lcores. */
	Status start();
	/** Stop the workers and wait for them. */
	void stop();
	bool running() const { return running_; }

	/**
	 * The control thread's work: invalidation-queue commands, fault reports, driver
	 * service hooks, devices that went away (removed, then closed so that their memory
	 * is released; ports() keeps their last info and stats). Returns how much it did
	 * (0: idle).
	 */
	unsigned poll_control();

	EngineStats stats() const;
	std::vector<WorkerStats> worker_stats() const;
	std::vector<PortReport> ports() const;
	/** Lines describing what happened (devices lost, command failures), oldest first. */
	std::vector<std::string> take_events();
	/**
	 * Whether each event is also logged when it happens (DPDK log type `iodp.engine`,
	 * WARNING; on by default). An app that prints take_events() itself turns it off, so
	 * that each event is shown once.
	 */
	void set_event_log(bool on) { log_events_.store(on, std::memory_order_relaxed); }
	unsigned workers() const { return static_cast<unsigned>(workers_.size()); }
	unsigned worker_lcore(unsigned w) const { return lcores_[w]; }
	ctl::Ctx &ctx() const { return ctx_; }

	/** Answer /iodp/stats, /iodp/workers and /iodp/devices on DPDK telemetry. */
	static void register_telemetry(Engine *engine);
	/** Stop answering for @p engine (if it is the one registered). */
	static void unregister_telemetry(Engine *engine);

private:
	Engine(ctl::Ctx &ctx, const EngineConfig &config);
	struct PollEntry;
	struct PollList;
	struct Port;
	struct InFlight;
	static int worker_main(void *arg);
	/** Complete the batches whose grace period is over (@p wait: all of them); how many. */
	unsigned complete_inflight(bool wait);
	void publish_lists();
	void event(std::string line);

	ctl::Ctx &ctx_;
	EngineConfig config_;
	std::vector<unsigned> lcores_;
	std::vector<int> lcore_node_;
	std::vector<std::unique_ptr<Worker>> workers_;
	std::vector<std::unique_ptr<Port>> ports_;
	/** Per worker: what it polls (published with release, retired after a sync). */
	std::unique_ptr<std::atomic<PollList *>[]> lists_;
	std::atomic<bool> stop_{false};
	std::atomic<bool> log_events_{true};
	bool running_ = false;
	// Written by the control thread, read by stats() from any thread (telemetry).
	std::atomic<uint64_t> commands_{0}, command_errors_{0}, faults_reported_{0},
		devices_lost_{0}, command_passes_{0}, invalidations_{0}, invalidations_posted_{0},
		throttled_{0};
	unsigned next_port_ = 0; ///< where the next control pass starts serving (round-robin)
	uint64_t passes_ = 0;    ///< control passes so far
	/** Passes' commands carried out, oldest first, each waiting for its grace period. */
	std::deque<std::unique_ptr<InFlight>> inflight_;
	mutable std::mutex ports_lock_; // ports_ changes vs readers on other threads
	std::mutex events_lock_;
	std::vector<std::string> events_;
};

} // namespace iodp::engine
