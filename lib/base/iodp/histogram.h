/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * LatencyHistogram: latencies in nanoseconds in log-linear buckets (four per power of two,
 * about 19% wide): constant memory, percentiles good to a bucket. Written by one thread at
 * a time (relaxed atomics: record() is a few adds); readers anywhere take a snapshot
 * (counts()) and may subtract an earlier one to describe the time between. Coherence
 * keeps its sync latencies in one; iodp-pmd and the engine's stats read them.
 */

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>

namespace iodp {

class LatencyHistogram {
public:
	static constexpr unsigned kSubBuckets = 4;
	static constexpr unsigned kBuckets = 64 * kSubBuckets;

	/** What a window of latencies comes to; every figure is 0 when it holds none. */
	struct Figures {
		uint64_t count = 0, p50_ns = 0, p99_ns = 0, max_ns = 0;
	};

	/** Bucket counts at one moment; the difference of two describes the time between. */
	struct Counts {
		uint64_t bucket[kBuckets] = {};
		uint64_t total = 0;

		/** The upper edge of the bucket holding quantile @p q, 0 when empty. */
		uint64_t quantile(double q) const { return quantile_of(bucket, total, q); }

		/** The upper edge of the highest bucket in use (a bound on the max), 0 when empty. */
		uint64_t highest() const
		{
			for (unsigned b = kBuckets; b-- > 0;)
				if (bucket[b] != 0)
					return upper_edge(b);
			return 0;
		}

		/**
		 * Count, p50, p99 and max, each within the window's highest bucket; @p max_ns
		 * (a known maximum over a longer time, 0: none) caps them further, as it is
		 * exact where bucket edges are not.
		 */
		Figures figures(uint64_t max_ns = 0) const
		{
			Figures f;
			f.count = total;
			if (total == 0)
				return f;
			f.max_ns = max_ns != 0 ? std::min(highest(), max_ns) : highest();
			f.p50_ns = std::min(quantile(0.5), f.max_ns);
			f.p99_ns = std::min(quantile(0.99), f.max_ns);
			return f;
		}

		Counts operator-(const Counts &earlier) const
		{
			Counts d;
			for (unsigned b = 0; b < kBuckets; b++) {
				d.bucket[b] = bucket[b] - earlier.bucket[b];
				d.total += d.bucket[b];
			}
			return d;
		}
	};

	void record(uint64_t ns)
	{
		buckets_[bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
		count_.fetch_add(1, std::memory_order_relaxed);
		if (ns > max_.load(std::memory_order_relaxed))
			max_.store(ns, std::memory_order_relaxed);
	}

	/** The value at quantile @p q in [0, 1] (upper edge of its bucket, capped at the max). */
	uint64_t quantile(double q) const
	{
		return std::min(quantile_of(buckets_, count(), q), max());
	}

	Counts counts() const
	{
		Counts c;
		for (unsigned b = 0; b < kBuckets; b++) {
			c.bucket[b] = buckets_[b].load(std::memory_order_relaxed);
			c.total += c.bucket[b];
		}
		return c;
	}

	uint64_t count() const { return count_.load(std::memory_order_relaxed); }
	uint64_t max() const { return max_.load(std::memory_order_relaxed); }

	void reset()
	{
		for (std::atomic<uint64_t> &b : buckets_)
			b.store(0, std::memory_order_relaxed);
		count_.store(0, std::memory_order_relaxed);
		max_.store(0, std::memory_order_relaxed);
	}

	/** The bucket of @p ns: exact below 4, then four per power of two. */
	static unsigned bucket_of(uint64_t ns)
	{
		if (ns < kSubBuckets)
			return static_cast<unsigned>(ns);
		const unsigned msb = 63 - static_cast<unsigned>(std::countl_zero(ns));
		// The two bits below the top one pick the sub-bucket.
		const unsigned sub = static_cast<unsigned>(ns >> (msb - 2)) & (kSubBuckets - 1);
		const unsigned b = (msb - 1) * kSubBuckets + sub;
		return b < kBuckets ? b : kBuckets - 1;
	}

	/** The largest value in @p bucket. */
	static uint64_t upper_edge(unsigned bucket)
	{
		if (bucket < kSubBuckets)
			return bucket;
		const unsigned msb = bucket / kSubBuckets + 1;
		const uint64_t sub = bucket % kSubBuckets;
		return ((uint64_t{kSubBuckets} + sub + 1) << (msb - 2)) - 1;
	}

private:
	template <typename Bucket>
	static uint64_t quantile_of(const Bucket *buckets, uint64_t total, double q)
	{
		if (total == 0)
			return 0;
		const double want = q <= 0 ? 1 : q >= 1 ? static_cast<double>(total) : q * total;
		uint64_t seen = 0;
		for (unsigned b = 0; b < kBuckets; b++) {
			seen += buckets[b];
			if (static_cast<double>(seen) >= want)
				return upper_edge(b);
		}
		return upper_edge(kBuckets - 1);
	}

	std::atomic<uint64_t> buckets_[kBuckets] = {};
	std::atomic<uint64_t> count_{0};
	std::atomic<uint64_t> max_{0};
};

} // namespace iodp
