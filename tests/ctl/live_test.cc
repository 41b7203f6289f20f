/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Workers translate continuously (shards, routes, resolve) while the control side maps,
 * unmaps, detaches and re-attaches through lib/ctl. An oracle knows, for each request,
 * every state it may legally see: the state when its burst started (every change whose
 * call had returned by then) and any change made while it ran. An answer outside that set
 * is a stale translation after a sync: a violation.
 */
#include "ctl_fixture.h"

#include <iodp/coherence.h>
#include <iodp/iotlb.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#ifndef IODP_LIVE_ROUNDS
#ifdef __SANITIZE_THREAD__
#define IODP_LIVE_ROUNDS 300 // build-tsan: each round ~10x slower
#else
#define IODP_LIVE_ROUNDS 1500
#endif
#endif

namespace iodp::ctl::test {
namespace {

using pgtable::FaultKind;

constexpr unsigned kSlots = 32;    // IOVA pages the control side remaps
constexpr unsigned kRotation = 16; // host pages each slot cycles through
constexpr uint64_t kIova = 0x100000;
constexpr uint64_t kPage = 4096;
constexpr int kAttach = -1; // a log entry about the attachment, not a slot

struct Change {
	int slot = 0;      ///< kAttach: host is 1 attached, 0 detached
	uint64_t host = 0; ///< 0: unmapped
};

struct LiveOracle {
	/** @p invalidate false: workers never drain (the oracle's own check). */
	explicit LiveOracle(bool invalidate) : invalidate(invalidate)
	{
		CtxConfig cfg;
		cfg.max_workers = 4;
		ctx = std::make_unique<Ctx>(cfg);
		ioas = ok(ctx->ioas_alloc());
		dev = ok(ctx->device_create(vtd_device("live0")));
		ok(ctx->device_attach(dev, std::nullopt, ioas));
	}

	uint64_t host_page(unsigned slot, uint64_t version) const
	{
		return buf.addr((slot * kRotation + version % kRotation) * kPage);
	}

	void worker(unsigned seed)
	{
		iotlb::Shard shard = std::move(*iotlb::Shard::create({4096, 512, 16}));
		iotlb::Coherence &bus = ctx->coherence();
		const unsigned id = *bus.register_worker(&shard);
		registered++;
		std::mt19937 rng(seed);
		uint64_t state[kSlots] = {};
		bool attached = true;
		uint64_t replayed = 0;
		constexpr size_t kBurst = 32;
		iotlb::Query reqs[kBurst];
		pgtable::WalkResult res[kBurst];
		uint64_t n_req = 0, n_ok = 0, bad = 0;
		while (!stop.load(std::memory_order_relaxed)) {
			if (invalidate)
				bus.drain(id);
			// Every change up to `done` had returned before these requests start.
			const uint64_t v0 = done.load(std::memory_order_acquire);
			for (; replayed < v0; replayed++) {
				const Change &c = log[replayed + 1];
				if (c.slot == kAttach)
					attached = c.host != 0;
				else
					state[c.slot] = c.host;
			}
			const iotlb::CachedRoute *route = shard.route_lookup(dev, iotlb::kNoPasid);
			if (route == nullptr) {
				Result<iotlb::Route> r = ctx->resolve(dev, std::nullopt);
				if (!r) {
					bad++;
					break;
				}
				route = shard.route_fill(dev, iotlb::kNoPasid, *r);
			}
			for (size_t i = 0; i < kBurst; i++)
				reqs[i] = {kIova + (rng() % kSlots) * kPage + rng() % kPage,
					   pgtable::kAccessRead};
			shard.translate(*route, reqs, kBurst, res);
			// Changes announced by now may have been seen half-made.
			const uint64_t a1 = announced.load(std::memory_order_acquire);
			for (size_t i = 0; i < kBurst; i++) {
				const unsigned s = static_cast<unsigned>((reqs[i].iova - kIova) / kPage);
				bool may_attached = attached, may_detached = !attached;
				bool may_unmapped = state[s] == 0;
				bool host_ok = false;
				const uint64_t off = reqs[i].iova % kPage;
				if (res[i].ok() && state[s] != 0 && res[i].out == state[s] + off)
					host_ok = true;
				for (uint64_t j = v0 + 1; j <= a1; j++) {
					const Change &c = log[j];
					if (c.slot == kAttach) {
						may_attached |= c.host != 0;
						may_detached |= c.host == 0;
					} else if (c.slot == static_cast<int>(s)) {
						may_unmapped |= c.host == 0;
						host_ok |= res[i].ok() && c.host != 0 &&
							   res[i].out == c.host + off;
					}
				}
				bool legal;
				if (res[i].ok())
					legal = host_ok && may_attached;
				else if (res[i].fault == FaultKind::not_present)
					legal = may_unmapped && may_attached;
				else if (res[i].fault == FaultKind::not_attached)
					legal = may_detached;
				else
					legal = false;
				bad += !legal;
				n_ok += res[i].ok();
			}
			n_req += kBurst;
			bus.quiescent(id);
		}
		bus.unregister_worker(id);
		requests += n_req;
		translated += n_ok;
		violations += bad;
		hits += shard.stats().hits;
	}

	void control(unsigned rounds)
	{
		std::mt19937 rng(7);
		uint64_t version[kSlots] = {};
		bool mapped[kSlots] = {};
		bool attached = true;
		log.resize(rounds + 1);
		for (unsigned r = 1; r <= rounds; r++) {
			Change c;
			// (A worker that ignores invalidations would use a destroyed domain:
			// the oracle's own check only remaps.)
			const bool toggle_attach = invalidate && rng() % 32 == 0;
			const unsigned s = rng() % kSlots;
			if (toggle_attach) {
				c.slot = kAttach;
				c.host = attached ? 0 : 1;
			} else {
				c.slot = static_cast<int>(s);
				c.host = mapped[s] ? 0 : host_page(s, ++version[s]);
			}
			log[r] = c;
			announced.store(r, std::memory_order_release);
			if (toggle_attach && attached) {
				ASSERT_TRUE(ctx->device_detach(dev, std::nullopt).ok());
			} else if (toggle_attach) {
				ASSERT_TRUE(ctx->device_attach(dev, std::nullopt, ioas).ok());
			} else if (mapped[s]) {
				Result<uint64_t> n = ctx->ioas_unmap(ioas, kIova + s * kPage, kPage);
				ASSERT_TRUE(n.ok()) << n.status().message();
			} else {
				Result<uint64_t> m = ctx->ioas_map(ioas, kFixedRW, kIova + s * kPage,
								   reinterpret_cast<void *>(c.host),
								   kPage);
				ASSERT_TRUE(m.ok()) << m.status().message();
			}
			if (toggle_attach)
				attached = !attached;
			else
				mapped[s] = !mapped[s];
			done.store(r, std::memory_order_release);
			if (!invalidate) // give the workers time to hit what they cached
				std::this_thread::sleep_for(std::chrono::microseconds(50));
		}
	}

	void run(unsigned rounds)
	{
		std::thread w1([&] { worker(1); });
		std::thread w2([&] { worker(2); });
		while (registered.load() < 2)
			std::this_thread::yield();
		control(rounds);
		stop = true;
		w1.join();
		w2.join();
	}

	bool invalidate;
	HostBuffer buf{kSlots * kRotation * kPage};
	std::unique_ptr<Ctx> ctx;
	uint32_t ioas = 0, dev = 0;
	std::vector<Change> log;
	std::atomic<uint64_t> announced{0}, done{0};
	std::atomic<unsigned> registered{0};
	std::atomic<bool> stop{false};
	std::atomic<uint64_t> requests{0}, translated{0}, violations{0}, hits{0};
};

TEST(Live, NoStaleTranslationAfterAControlCallReturns)
{
	LiveOracle o(true);
	o.run(IODP_LIVE_ROUNDS);
	EXPECT_EQ(o.violations.load(), 0u);
	EXPECT_GT(o.requests.load(), 10000u);
	EXPECT_GT(o.translated.load(), o.requests.load() / 8);
	EXPECT_GT(o.hits.load(), o.requests.load() / 8) << "the shards were hardly used";
}

/** The oracle itself: workers that never apply invalidations must be caught. */
TEST(Live, CatchesWorkersThatIgnoreInvalidations)
{
	LiveOracle o(false);
	o.run(400);
	EXPECT_GT(o.violations.load(), 0u);
}

} // namespace
} // namespace iodp::ctl::test
