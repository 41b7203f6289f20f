/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/coherence.h>
#include <iodp/ring.h>

#include <fmt/core.h>

#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace iodp::iotlb {

static_assert(sizeof(inval::Descriptor) % 4 == 0, "rte_ring elements are multiples of 4 bytes");

namespace {

void *zalloc(size_t bytes)
{
	const size_t rounded = (bytes + 63) & ~size_t{63};
	void *p = std::aligned_alloc(64, rounded);
	if (p != nullptr)
		std::memset(p, 0, rounded);
	return p;
}

/** The worker this thread last drained as (sync() must not wait for its own caller). */
struct SelfWorker {
	const Coherence *owner = nullptr;
	unsigned id = 0;
};
thread_local SelfWorker tls_self;

} // namespace

Result<std::unique_ptr<Coherence>> Coherence::create(const CoherenceConfig &config)
{
	if (config.max_workers == 0 || config.max_workers > RTE_MAX_LCORE * 4)
		return Status::error(-EINVAL, "coherence: max_workers {} is out of range",
				     config.max_workers);
	if (config.ring_entries < 8 || (config.ring_entries & (config.ring_entries - 1)))
		return Status::error(-EINVAL, "coherence: ring_entries {} is not a power of two "
				     ">= 8", config.ring_entries);
	std::unique_ptr<Coherence> c(new Coherence());
	c->config_ = config;
	// rte_rcu_qsbr and rte_ring work in memory we give them: no EAL needed, so a driver
	// thread in library mode can use them too.
	const size_t qsz = rte_rcu_qsbr_get_memsize(config.max_workers);
	c->qsbr_ = static_cast<rte_rcu_qsbr *>(zalloc(qsz));
	if (c->qsbr_ == nullptr || rte_rcu_qsbr_init(c->qsbr_, config.max_workers) != 0)
		return Status::error(-ENOMEM, "coherence: cannot set up rte_rcu_qsbr for {} "
				     "workers", config.max_workers);
	c->workers_ = std::make_unique<Worker[]>(config.max_workers);
	return c;
}

Coherence::~Coherence()
{
	if (workers_ != nullptr)
		for (unsigned i = 0; i < config_.max_workers; i++)
			std::free(workers_[i].ring);
	for (Retired &r : retired_)
		r.fn();
	std::free(qsbr_);
}

Result<unsigned> Coherence::register_worker(Shard *shard)
{
	std::lock_guard g(lock_);
	for (unsigned id = 0; id < config_.max_workers; id++) {
		Worker &w = workers_[id];
		if (w.registered)
			continue;
		// rte_ring_init wants count = entries: one slot stays free, as usual.
		Result<rte_ring *> ring = mem::ring_alloc(
			fmt::format("iodp_inval_{}_{}", static_cast<void *>(this), id),
			sizeof(inval::Descriptor), config_.ring_entries,
			RING_F_SP_ENQ | RING_F_SC_DEQ);
		if (!ring && ring.status().code() == -ENOMEM)
			return Status::error(-ENOMEM, "coherence: no memory for worker {}'s ring",
					     id);
		if (!ring)
			return Status::error(ring.status().code(), "coherence: {}",
					     ring.status().message());
		std::free(w.ring);
		w.ring = *ring;
		w.shard = shard;
		w.overflowed.store(false, std::memory_order_relaxed);
		w.registered = true;
		rte_rcu_qsbr_thread_register(qsbr_, id);
		rte_rcu_qsbr_thread_online(qsbr_, id);
		w.online = true;
		return id;
	}
	return Status::error(-ENOSPC, "coherence: all {} worker slots are taken",
			     config_.max_workers);
}

void Coherence::unregister_worker(unsigned id)
{
	std::lock_guard g(lock_);
	if (id >= config_.max_workers || !workers_[id].registered)
		return;
	rte_rcu_qsbr_thread_offline(qsbr_, id);
	rte_rcu_qsbr_thread_unregister(qsbr_, id);
	workers_[id].registered = false;
	workers_[id].online = false;
	if (tls_self.owner == this && tls_self.id == id)
		tls_self = {};
	workers_[id].shard = nullptr;
}

unsigned Coherence::drain(unsigned id)
{
	Worker &w = workers_[id];
	tls_self = {this, id};
	constexpr unsigned kBatch = 32;
	inval::Descriptor batch[kBatch];
	unsigned total = 0;
	for (;;) {
		const unsigned n = rte_ring_sc_dequeue_burst_elem(w.ring, batch, sizeof(batch[0]),
								  kBatch, nullptr);
		for (unsigned i = 0; i < n; i++)
			w.shard->apply(batch[i]);
		total += n;
		if (n < kBatch)
			break;
	}
	// A post that found the ring full marked us instead: forget everything.
	if (w.overflowed.load(std::memory_order_acquire)) {
		w.overflowed.store(false, std::memory_order_relaxed);
		w.shard->flush_all();
	}
	return total;
}

void Coherence::quiescent(unsigned id)
{
	rte_rcu_qsbr_quiescent(qsbr_, id);
}

void Coherence::offline(unsigned id)
{
	workers_[id].online = false;
	rte_rcu_qsbr_thread_offline(qsbr_, id);
}

void Coherence::online(unsigned id)
{
	rte_rcu_qsbr_thread_online(qsbr_, id);
	workers_[id].online = true;
	drain(id);
}

void Coherence::post(const inval::Descriptor &d)
{
	std::lock_guard g(lock_);
	// Under the lock: one writer at a time; relaxed, it is a statistic.
	posted_.store(posted_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
	for (unsigned id = 0; id < config_.max_workers; id++) {
		Worker &w = workers_[id];
		if (!w.registered)
			continue;
		if (rte_ring_sp_enqueue_elem(w.ring, const_cast<inval::Descriptor *>(&d),
					     sizeof(d)) != 0) {
			w.overflowed.store(true, std::memory_order_release);
			overflows_.fetch_add(1, std::memory_order_relaxed);
		}
	}
}

namespace {

uint64_t steady_ns()
{
	return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
					     std::chrono::steady_clock::now().time_since_epoch())
					     .count());
}

} // namespace

Coherence::Grace Coherence::begin_sync()
{
	Grace g;
	g.start_ns = steady_ns();
	g.token = rte_rcu_qsbr_start(qsbr_);
	// Called by a worker between bursts: it holds nothing, say so rather than wait for it.
	// (A quiescent report on an offline thread would bring it online: check first.)
	if (tls_self.owner == this && workers_[tls_self.id].online)
		rte_rcu_qsbr_quiescent(qsbr_, tls_self.id);
	return g;
}

bool Coherence::sync_done(const Grace &grace)
{
	if (rte_rcu_qsbr_check(qsbr_, grace.token, false) != 1)
		return false;
	sync_latency_.record(steady_ns() - grace.start_ns);
	return true;
}

void Coherence::sync()
{
	const Grace g = begin_sync();
	rte_rcu_qsbr_check(qsbr_, g.token, true);
	sync_latency_.record(steady_ns() - g.start_ns);
	reclaim();
}

void Coherence::reserve(RetireSlots &slots, size_t n)
{
	while (slots.size() < n)
		slots.emplace_back();
}

void Coherence::retire(std::function<void()> fn)
{
	RetireSlots none;
	retire(std::move(fn), none);
}

void Coherence::retire(std::function<void()> fn, RetireSlots &slots)
{
	const uint64_t token = rte_rcu_qsbr_start(qsbr_);
	std::lock_guard g(lock_);
	if (slots.empty())
		slots.emplace_back(); // may throw: nothing retired, nothing changed
	Retired &r = slots.front();
	r.token = token;
	r.fn = std::move(fn);
	retired_.splice(retired_.end(), slots, slots.begin());
}

size_t Coherence::reclaim()
{
	// Allocation-free (a splice moves nodes): callers run it after the point where a
	// failure could still be reported.
	std::list<Retired> ready;
	{
		std::lock_guard g(lock_);
		auto end = retired_.begin();
		while (end != retired_.end() && rte_rcu_qsbr_check(qsbr_, end->token, false) == 1)
			++end;
		ready.splice(ready.end(), retired_, retired_.begin(), end);
	}
	for (Retired &r : ready)
		r.fn();
	return ready.size();
}

unsigned Coherence::workers() const
{
	std::lock_guard g(lock_);
	unsigned n = 0;
	for (unsigned id = 0; id < config_.max_workers; id++)
		n += workers_[id].registered;
	return n;
}

} // namespace iodp::iotlb
