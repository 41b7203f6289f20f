/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Ctx::SyncBatch: many calls, one grace period. A worker caches translations and answers
 * from its cache until an invalidation it drained drops them, so an answer after the
 * batch's sync() that still translates an unmapped page proves the sync ended before the
 * worker dropped it: exactly what a guest's early-completed invalidation wait would allow.
 */
#include "ctl_fixture.h"

#include <iodp/coherence.h>
#include <iodp/iotlb.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace iodp::ctl::test {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kIova = 0x200000;
constexpr unsigned kPages = 64;

class BatchTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		CtxConfig cfg;
		cfg.max_workers = 2;
		ctx = std::make_unique<Ctx>(cfg);
		ioas = ok(ctx->ioas_alloc());
		dev = ok(ctx->device_create(vtd_device("batch0")));
		ok(ctx->device_attach(dev, std::nullopt, ioas).status());
		for (unsigned p = 0; p < kPages; p++)
			ok(ctx->ioas_map(ioas, kFixedRW, kIova + p * kPage, buf.at(p * kPage), kPage)
				   .status());
	}

	/**
	 * Translate every page, burst after burst, publishing after each burst which pages
	 * translated and how many bursts began (before the drain).
	 */
	void worker()
	{
		iotlb::Shard shard = std::move(*iotlb::Shard::create({4096, 512, 16}));
		iotlb::Coherence &bus = ctx->coherence();
		const unsigned id = *bus.register_worker(&shard);
		iotlb::Query reqs[kPages];
		pgtable::WalkResult res[kPages];
		for (unsigned p = 0; p < kPages; p++)
			reqs[p] = {kIova + p * kPage + 8, pgtable::kAccessRead};
		while (!stop.load(std::memory_order_relaxed)) {
			const uint64_t seq = begun.load(std::memory_order_relaxed) + 1;
			begun.store(seq, std::memory_order_seq_cst);
			bus.drain(id);
			const iotlb::CachedRoute *route = shard.route_lookup(dev, iotlb::kNoPasid);
			if (route == nullptr) {
				Result<iotlb::Route> r = ctx->resolve(dev, std::nullopt);
				if (!r)
					break;
				route = shard.route_fill(dev, iotlb::kNoPasid, *r);
			}
			shard.translate(*route, reqs, kPages, res);
			uint64_t mask = 0;
			for (unsigned p = 0; p < kPages; p++)
				if (res[p].ok())
					mask |= 1ull << p;
			answered.store(mask, std::memory_order_relaxed);
			// A long burst: it keeps what it answered (maybe from entries the control
			// side has since removed) until it ends.
			if (hold.load(std::memory_order_acquire)) {
				holding.store(mask, std::memory_order_release);
				while (hold.load(std::memory_order_acquire))
					std::this_thread::yield();
			}
			finished.store(seq, std::memory_order_release);
			bus.quiescent(id);
		}
		cache_hits = shard.stats().hits;
		bus.unregister_worker(id);
	}

	/** The pages a burst that began after now translated. */
	uint64_t next_answer()
	{
		const uint64_t after = begun.load(std::memory_order_seq_cst);
		while (finished.load(std::memory_order_acquire) <= after)
			std::this_thread::yield();
		return answered.load(std::memory_order_relaxed);
	}

	HostBuffer buf{kPages * kPage};
	std::unique_ptr<Ctx> ctx;
	uint32_t ioas = 0, dev = 0;
	std::atomic<bool> stop{false};
	std::atomic<uint64_t> begun{0}, finished{0}, answered{0};
	std::atomic<bool> hold{false};
	std::atomic<uint64_t> holding{0};
	uint64_t cache_hits = 0;
};

TEST_F(BatchTest, NoWaitEndsBeforeTheWorkersDroppedWhatTheBatchUnmapped)
{
	std::thread w([this] { worker(); });
	// Every page cached (the second burst answers from the cache).
	while (next_answer() != ~0ull)
		;
	(void)next_answer();
	// The worker stops inside a burst that translated every page.
	hold = true;
	while (holding.load(std::memory_order_acquire) != ~0ull)
		std::this_thread::yield();
	const uint64_t syncs = ctx->coherence().sync_latency().count();
	const uint64_t posted = ctx->coherence().posted();
	std::atomic<bool> complete{false};
	unsigned merged = 0;
	uint64_t requested = 0;
	std::thread control([&] {
		Ctx::SyncBatch batch(*ctx);
		// Odd pages one call at a time, then the even ones, which bridge them: the held
		// ranges merge as they come to touch.
		for (unsigned p = 1; p < kPages; p += 2)
			ASSERT_EQ(ok(ctx->ioas_unmap(ioas, kIova + p * kPage, kPage)), kPage);
		for (unsigned p = 0; p < kPages; p += 2)
			ASSERT_EQ(ok(ctx->ioas_unmap(ioas, kIova + p * kPage, kPage)), kPage);
		requested = batch.requested();
		// The calls returned without posting or syncing: nothing is complete yet.
		EXPECT_EQ(ctx->coherence().posted(), posted);
		EXPECT_EQ(ctx->coherence().sync_latency().count(), syncs);
		merged = batch.sync();
		complete = true; // what a guest's invalidation wait would now see
		EXPECT_EQ(batch.sync(), 0u);
	});
	// The worker's burst began before the unmaps and still holds their pages: the
	// batch's sync must not end while it runs.
	std::this_thread::sleep_for(std::chrono::milliseconds(50));
	EXPECT_FALSE(complete.load()) << "the wait ended while a worker still held the pages";
	hold = false;
	control.join();
	EXPECT_TRUE(complete.load());
	EXPECT_EQ(requested, kPages);
	EXPECT_EQ(merged, 1u) << "64 adjacent pages are one range";
	EXPECT_EQ(ctx->coherence().sync_latency().count(), syncs + 1)
		<< "one sync for the batch (and none when nothing is due)";
	// Complete: a burst that begins now translates none of them.
	EXPECT_EQ(next_answer(), 0u);
	stop = true;
	w.join();
	EXPECT_GT(cache_hits, 0u) << "the worker answered from its cache";
}

/* Calls outside a batch (or on another thread) still return after their own sync. */
TEST_F(BatchTest, CallsOutsideTheBatchStillSync)
{
	std::thread w([this] { worker(); });
	while (next_answer() != ~0ull)
		;
	Ctx::SyncBatch batch(*ctx);
	std::thread other([this] {
		ASSERT_EQ(ok(ctx->ioas_unmap(ioas, kIova, kPage)), kPage);
		// Returned: complete, whatever the batch on the main thread holds.
		EXPECT_EQ(next_answer() & 1, 0u);
	});
	other.join();
	ASSERT_EQ(ok(ctx->ioas_unmap(ioas, kIova + kPage, kPage)), kPage);
	(void)batch.sync();
	EXPECT_EQ(next_answer() & 3, 0u);
	stop = true;
	w.join();
}

} // namespace
} // namespace iodp::ctl::test
