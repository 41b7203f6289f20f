/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Invalidation fan-out and sync, and the concurrency oracle: workers translate without
 * pause while the control side remaps pages, invalidates and syncs; every request records
 * the newest mapping whose sync had completed when it started, and its answer may never be
 * older than that.
 */
#include <iodp/coherence.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <random>
#include <thread>

namespace iodp::iotlb {
namespace {

using namespace iodp::inval;

constexpr uint64_t kIova = 0x100000000;

Descriptor page_inval(uint32_t domain, uint64_t iova)
{
	Descriptor d;
	d.targets = kTargetIotlb | kTargetWalkCache;
	d.match = kMatchDomain | kMatchRange;
	d.domain = domain;
	d.addr = iova;
	d.size = 4096;
	return d;
}

struct CoherenceTest : ::testing::Test {
	std::unique_ptr<Coherence> bus = std::move(*Coherence::create({4, 8}));
	Shard shard = std::move(*Shard::create({1024}));

	uint64_t look(uint16_t ctx, uint64_t iova)
	{
		Probe p{iova, ctx};
		uint64_t host = 0;
		uint8_t perm = 0;
		shard.lookup_bulk(&p, 1, &host, &perm);
		return host;
	}
};

TEST_F(CoherenceTest, PostedInvalidationsApplyOnDrain)
{
	const unsigned id = *bus->register_worker(&shard);
	const uint16_t c = shard.context(1, 0, 0);
	shard.fill(c, kIova, 12, 0x7000000000, 3);
	bus->post(page_inval(1, kIova));
	EXPECT_NE(look(c, kIova), 0u) << "nothing changes before the worker drains";
	EXPECT_EQ(bus->drain(id), 1u);
	EXPECT_EQ(look(c, kIova), 0u);
	bus->offline(id);
	bus->sync(); // an offline worker holds nothing up
}

/*
 * A sync waits for online workers only. It normally ends within microseconds; the bound is
 * far above that (a loaded 2-core machine, a sanitizer build), so only a sync that waits
 * for the offline worker reaches it. Then the test brings that worker online and has it
 * report, which ends the sync, and fails with a message instead of hanging until meson's
 * timeout.
 */
TEST_F(CoherenceTest, OfflineWorkersDoNotHoldSyncsUp)
{
	constexpr auto kBound = std::chrono::seconds(20);
	const unsigned a = *bus->register_worker(&shard);
	Shard other = std::move(*Shard::create({1024}));
	const unsigned b = *bus->register_worker(&other);
	bus->offline(b);
	bus->quiescent(a);
	std::promise<void> synced;
	std::future<void> done_sync = synced.get_future();
	std::thread t([&] {
		bus->sync();
		synced.set_value();
	});
	// a reports again while the sync waits; b is offline and never does.
	std::atomic<bool> done{false};
	std::thread w([&] {
		while (!done.load()) {
			bus->drain(a);
			bus->quiescent(a);
		}
	});
	const bool in_time = done_sync.wait_for(kBound) == std::future_status::ready;
	if (!in_time) {
		bus->online(b); // release the sync: b reports once
		bus->quiescent(b);
	}
	t.join();
	done = true;
	w.join();
	EXPECT_TRUE(in_time) << "a sync with one worker offline did not end within "
			     << kBound.count() << " s: it waited for the offline worker (it "
			     << "ended once that worker came online and reported)";
	if (in_time)
		bus->online(b);
	EXPECT_EQ(bus->workers(), 2u);
}

TEST_F(CoherenceTest, FullRingMeansFlushEverything)
{
	const unsigned id = *bus->register_worker(&shard);
	const uint16_t c = shard.context(1, 0, 0), other = shard.context(2, 0, 0);
	shard.fill(c, kIova, 12, 0x7000000000, 3);
	shard.fill(other, kIova, 12, 0x7000000000, 3);
	for (int i = 0; i < 20; i++) // ring of 8: most do not fit
		bus->post(page_inval(1, kIova + 0x100000 * (i + 1)));
	EXPECT_GT(bus->overflows(), 0u);
	bus->drain(id);
	EXPECT_EQ(look(other, kIova), 0u) << "an overflowed worker must forget everything";
}

TEST_F(CoherenceTest, RetiredWorkWaitsForAGracePeriod)
{
	const unsigned id = *bus->register_worker(&shard);
	int freed = 0;
	bus->retire([&] { freed++; });
	EXPECT_EQ(bus->reclaim(), 0u) << "the worker has not been quiescent since";
	EXPECT_EQ(freed, 0);
	bus->quiescent(id);
	EXPECT_EQ(bus->reclaim(), 1u);
	EXPECT_EQ(freed, 1);
	bus->unregister_worker(id);
	EXPECT_EQ(bus->workers(), 0u);
}

/* The oracle ------------------------------------------------------------------------------ */

constexpr unsigned kPages = 128;
#ifndef IODP_ORACLE_ROUNDS
#ifdef __SANITIZE_THREAD__
#define IODP_ORACLE_ROUNDS 200 // build-tsan: each round ~10x slower
#else
#define IODP_ORACLE_ROUNDS 1000 // three threads on this 2-core machine: a sync is ~ms
#endif
#endif
constexpr uint32_t kDomain = 1;

/** A page's state: version << 1 | mapped. The host address carries the version. */
uint64_t host_of(unsigned page, uint64_t version)
{
	return (version << 24) | (uint64_t{page} << 12);
}

struct Oracle {
	std::atomic<uint64_t> table[kPages] = {};     // what a walk reads
	std::atomic<uint64_t> completed[kPages] = {}; // newest version whose sync returned
	std::atomic<bool> stop{false};
	std::atomic<uint64_t> requests{0}, hits{0}, violations{0};

	/** One worker: drain, answer a burst, be quiescent; until stopped. */
	void worker(Coherence &bus, unsigned seed, bool use_bus)
	{
		Shard shard = std::move(*Shard::create({4096}));
		const unsigned id = *bus.register_worker(&shard);
		const uint16_t ctx = shard.context(kDomain, 0, 0);
		std::mt19937 rng(seed);
		constexpr size_t kBurst = 32;
		Probe probes[kBurst];
		uint64_t min_version[kBurst], host[kBurst];
		uint8_t perm[kBurst];
		uint64_t n_req = 0, n_hit = 0, bad = 0;
		while (!stop.load(std::memory_order_relaxed)) {
			if (use_bus)
				bus.drain(id);
			for (size_t i = 0; i < kBurst; i++) {
				const unsigned p = rng() % kPages;
				// The request starts now: what it may legally see is fixed here.
				min_version[i] = completed[p].load(std::memory_order_acquire);
				probes[i] = {kIova + (uint64_t{p} << 12), ctx};
			}
			n_hit += shard.lookup_bulk(probes, kBurst, host, perm);
			for (size_t i = 0; i < kBurst; i++) {
				const unsigned p = static_cast<unsigned>((probes[i].iova - kIova) >> 12);
				uint64_t version;
				if (host[i] != 0) {
					version = host[i] >> 24;
				} else {
					const uint64_t t = table[p].load(std::memory_order_acquire);
					version = t >> 1;
					if (t & 1)
						shard.fill(ctx, probes[i].iova, 12, host_of(p, version), 3);
				}
				if (version < min_version[i])
					bad++;
			}
			n_req += kBurst;
			if (use_bus)
				bus.quiescent(id);
		}
		bus.unregister_worker(id);
		requests += n_req;
		hits += n_hit;
		violations += bad;
	}

	/** The control side: remap a page, invalidate it, sync; then declare it done. */
	void control(Coherence &bus, unsigned rounds, bool use_bus)
	{
		std::mt19937 rng(99);
		uint64_t version[kPages] = {};
		for (unsigned r = 0; r < rounds; r++) {
			const unsigned p = rng() % kPages;
			const uint64_t v = ++version[p];
			table[p].store((v << 1) | (rng() % 4 != 0), std::memory_order_release);
			if (use_bus) {
				if (r % 16 == 0) { // now and then the whole domain
					Descriptor d;
					d.targets = kTargetIotlb;
					d.match = kMatchDomain;
					d.domain = kDomain;
					bus.post(d);
				} else {
					bus.post(page_inval(kDomain, kIova + (uint64_t{p} << 12)));
				}
				bus.sync();
			} else {
				// No invalidation: give the workers time to hit the stale entry.
				std::this_thread::sleep_for(std::chrono::microseconds(50));
			}
			completed[p].store(v, std::memory_order_release);
		}
	}
};

void run_oracle(Oracle &o, bool use_bus, unsigned rounds)
{
	std::unique_ptr<Coherence> bus = std::move(*Coherence::create({8, 64}));
	for (unsigned p = 0; p < kPages; p++) // everything mapped at version 0 to start
		o.table[p].store(1, std::memory_order_relaxed);
	std::thread w1([&] { o.worker(*bus, 1, use_bus); });
	std::thread w2([&] { o.worker(*bus, 2, use_bus); });
	// Let both workers register before the first sync so they are waited for.
	while (bus->workers() < 2)
		std::this_thread::yield();
	o.control(*bus, rounds, use_bus);
	o.stop = true;
	w1.join();
	w2.join();
}

TEST(CoherenceOracle, NothingStaleAfterASync)
{
	Oracle o;
	run_oracle(o, true, IODP_ORACLE_ROUNDS);
	EXPECT_EQ(o.violations.load(), 0u);
	EXPECT_GT(o.requests.load(), 1000u);
	EXPECT_GT(o.hits.load(), o.requests.load() / 4) << "the shard was hardly used";
}

/** The oracle itself: without invalidations, stale answers must show up. */
TEST(CoherenceOracle, CatchesStaleEntriesWithoutInvalidation)
{
	Oracle o;
	run_oracle(o, false, 400);
	EXPECT_GT(o.violations.load(), 0u);
}

} // namespace
} // namespace iodp::iotlb
