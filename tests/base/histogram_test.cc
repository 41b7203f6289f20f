/* SPDX-License-Identifier: BSD-3-Clause */
/* LatencyHistogram: bucket edges, quantiles, windows (counts subtracted), figures. */
#include <iodp/histogram.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>

namespace iodp {
namespace {

using H = LatencyHistogram;

/** Every value falls in the bucket whose edges hold it; buckets are at most ~25% wide. */
TEST(LatencyHistogram, BucketsHoldTheirValues)
{
	for (uint64_t ns : std::initializer_list<uint64_t>{0, 1, 3, 4, 5, 7, 8, 100, 1000, 123456,
							    (uint64_t{1} << 40) + 12345,
							    UINT64_MAX}) {
		const unsigned b = H::bucket_of(ns);
		ASSERT_LT(b, H::kBuckets);
		EXPECT_LE(ns, H::upper_edge(b)) << ns;
		if (b > 0) {
			EXPECT_GT(ns, H::upper_edge(b - 1)) << ns;
		}
	}
	// Up to the last bucket a value can reach (2^64 - 1 is in it; the rest stay empty).
	const unsigned last = H::bucket_of(UINT64_MAX);
	EXPECT_EQ(H::upper_edge(last), UINT64_MAX);
	for (unsigned b = H::kSubBuckets; b < last; b++)
		EXPECT_LE(H::upper_edge(b + 1) - H::upper_edge(b), (H::upper_edge(b) + 1) / 4 + 1)
			<< b;
	EXPECT_EQ(H::upper_edge(H::bucket_of(1000)), 1023u);
}

TEST(LatencyHistogram, QuantilesAreBucketEdgesCappedAtTheMax)
{
	H h;
	EXPECT_EQ(h.quantile(0.5), 0u) << "empty";
	for (int i = 0; i < 99; i++)
		h.record(100);
	h.record(1000);
	EXPECT_EQ(h.count(), 100u);
	EXPECT_EQ(h.max(), 1000u);
	EXPECT_EQ(h.quantile(0.5), H::upper_edge(H::bucket_of(100)));
	EXPECT_EQ(h.quantile(0.99), H::upper_edge(H::bucket_of(100)));
	EXPECT_EQ(h.quantile(1.0), 1000u) << "the edge (1023) capped at the max";
	h.reset();
	EXPECT_EQ(h.count(), 0u);
	EXPECT_EQ(h.counts().total, 0u);
}

/** A window is the difference of two snapshots; its figures stay within its own buckets. */
TEST(LatencyHistogram, WindowsAndFigures)
{
	H h;
	for (int i = 0; i < 10; i++)
		h.record(50000); // before the window: slow ones
	const H::Counts start = h.counts();
	for (int i = 0; i < 100; i++)
		h.record(i < 98 ? 200 : 400);
	const H::Counts window = h.counts() - start;
	EXPECT_EQ(window.total, 100u);
	EXPECT_EQ(window.highest(), H::upper_edge(H::bucket_of(400)));
	const H::Figures f = window.figures(h.max());
	EXPECT_EQ(f.count, 100u);
	EXPECT_EQ(f.max_ns, H::upper_edge(H::bucket_of(400))) << "not the lifetime's 50000";
	EXPECT_EQ(f.p50_ns, H::upper_edge(H::bucket_of(200)));
	EXPECT_EQ(f.p99_ns, H::upper_edge(H::bucket_of(400)));
	// An exact max below the bucket edge caps every figure.
	const H::Figures capped = window.figures(300);
	EXPECT_EQ(capped.max_ns, 300u);
	EXPECT_EQ(capped.p99_ns, 300u);
	EXPECT_EQ(capped.p50_ns, H::upper_edge(H::bucket_of(200)));
	const H::Figures none = (start - start).figures(1);
	EXPECT_EQ(none.count + none.p50_ns + none.p99_ns + none.max_ns, 0u);
}

} // namespace
} // namespace iodp
