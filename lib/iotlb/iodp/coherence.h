/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Keeping every worker's shard coherent: invalidation fan-out and sync.
 *
 * The control side posts each invalidation to every worker's single-producer /
 * single-consumer ring (DPDK rte_ring). A worker drains its ring into its shard at the start
 * of every burst, before it takes requests, and reports a quiescent state (DPDK
 * rte_rcu_qsbr) at the end. sync() returns once every online worker has reported a
 * quiescent state after the sync began, so every request a worker takes after sync()
 * returned is answered from a shard that has applied everything posted before it.
 *
 * A worker that stops polling goes offline (it then holds no sync up) and drains before
 * it answers anything when it comes back. A ring that fills up while its worker is slow or
 * offline is not waited for: the worker is marked overflowed and flushes its whole shard
 * on its next drain (over-invalidation, never under).
 *
 * retire() defers work (freeing unmapped table pages) until a grace period has passed.
 */

#include <iodp/histogram.h>
#include <iodp/inval.h>
#include <iodp/iotlb.h>
#include <iodp/status.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <vector>

struct rte_ring;
struct rte_rcu_qsbr;

namespace iodp::iotlb {

/** The sync latency histogram's type: lib/base's (histogram.h), named here as before. */
using LatencyHistogram = iodp::LatencyHistogram;

struct CoherenceConfig {
	unsigned max_workers = 64;
	unsigned ring_entries = 1024; ///< per worker, a power of two
};

class Coherence {
public:
	static Result<std::unique_ptr<Coherence>> create(const CoherenceConfig &config = {});
	~Coherence();
	Coherence(const Coherence &) = delete;
	Coherence &operator=(const Coherence &) = delete;

	/* Worker side (each id used by one thread) ---------------------------------------- */

	/** Register @p shard; the worker starts online. Returns its id. */
	Result<unsigned> register_worker(Shard *shard);
	void unregister_worker(unsigned id);
	/** Apply everything posted to this worker; call before taking a burst. */
	unsigned drain(unsigned id);
	/** The end of a burst: nothing from before this point is in use. */
	void quiescent(unsigned id);
	/** Stop holding syncs up while not polling; online() drains before returning. */
	void offline(unsigned id);
	void online(unsigned id);

	/* Control side (any thread) ------------------------------------------------------ */

	/** Send @p d to every registered worker. */
	void post(const inval::Descriptor &d);
	/**
	 * Return once every online worker has passed a quiescent state after this call began.
	 * A worker thread may call it between its bursts (library mode: the driver's own thread
	 * maps and unmaps): its own quiescent state is reported first, so it does not wait
	 * for itself.
	 */
	void sync();
	/** A grace period begun by begin_sync(). */
	struct Grace {
		uint64_t token = 0;
		uint64_t start_ns = 0; ///< steady clock, for the latency histogram
	};
	/**
	 * sync() in two halves, for a control loop that does other work while the workers
	 * pass their quiescent states: begin_sync() starts a grace period and returns at once;
	 * sync_done() says, without waiting, whether every online worker has passed a
	 * quiescent state since (then it records the latency, so call it until it returns
	 * true and no more). What sync() guarantees holds from the moment sync_done() says so.
	 * Worker threads report their own quiescent state as in sync().
	 */
	Grace begin_sync();
	bool sync_done(const Grace &grace);
	/** How long sync() calls (and begun syncs, until done) took (all callers). */
	const LatencyHistogram &sync_latency() const { return sync_latency_; }
	LatencyHistogram &sync_latency() { return sync_latency_; }
	/** What retire() keeps: @p fn runs once the grace period that began at @p token ends. */
	struct Retired {
		uint64_t token;
		std::function<void()> fn;
	};
	/**
	 * Nodes for retire() made ahead of time, owned by the caller: a control call that must
	 * not run out of memory once it has started changing state reserves them first (the
	 * kernel's iommufd allocates before it commits the same way).
	 */
	using RetireSlots = std::list<Retired>;
	/** Make @p slots hold at least @p n nodes. Throws std::bad_alloc, @p slots still usable. */
	static void reserve(RetireSlots &slots, size_t n);
	/** Run @p fn once a grace period that starts now has passed (at a later sync/reclaim). */
	void retire(std::function<void()> fn);
	/**
	 * As retire(@p fn), with the node taken from @p slots when it has one: then nothing is
	 * allocated (a closure of at most two words, trivially copyable, is held inside
	 * std::function without the heap).
	 */
	void retire(std::function<void()> fn, RetireSlots &slots);
	/** Run the retired work whose grace period is over; returns how many ran. */
	size_t reclaim();

	unsigned workers() const;
	uint64_t overflows() const { return overflows_.load(std::memory_order_relaxed); }
	/** Descriptors post() has sent (each counted once, whatever the number of workers). */
	uint64_t posted() const { return posted_.load(std::memory_order_relaxed); }

private:
	Coherence() = default;

	struct Worker {
		Shard *shard = nullptr;
		rte_ring *ring = nullptr;
		std::atomic<bool> overflowed{false};
		bool registered = false;
		bool online = false; ///< read and written by the worker's own thread only
	};
	CoherenceConfig config_;
	rte_rcu_qsbr *qsbr_ = nullptr;
	std::unique_ptr<Worker[]> workers_;
	// Control side from here, on cache lines of its own: workers read qsbr_ and workers_
	// every burst, and the control thread writes these on every post.
	alignas(64) mutable std::mutex lock_; // one poster at a time (rings are single-producer)
	std::list<Retired> retired_; // a list: reclaim() moves nodes out without allocating
	std::atomic<uint64_t> overflows_{0};
	std::atomic<uint64_t> posted_{0};
	LatencyHistogram sync_latency_;
};

} // namespace iodp::iotlb
