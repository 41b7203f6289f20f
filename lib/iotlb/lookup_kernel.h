/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The shard's hit path: a run of probes of one context and one page size, looked up in the
 * set-associative entry array. Included by iotlb.cc (the x86-64 baseline DPDK builds for)
 * and by iotlb_avx2.cc (compiled with -mavx2 -mbmi2, chosen at run time), the way DPDK
 * drivers keep their vector paths. Each includer first defines IODP_LOOKUP_NS, so the two
 * builds of these templates never meet at link time.
 *
 * Per probe the work is counted in instructions, not in cache misses (the array is sized
 * for L2 and every set of a chunk is prefetched before the first compare), so the two passes
 * do as little as they can: the first computes set and key once and keeps both, the second
 * compares all four ways at once and writes the answer.
 */

#include <iodp/iotlb.h>

#include <rte_prefetch.h>

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#ifndef IODP_LOOKUP_NS
#error "define IODP_LOOKUP_NS before including lookup_kernel.h"
#endif

namespace iodp::iotlb::IODP_LOOKUP_NS {

/** A key no entry has: size class 7 does not exist (and key 0 marks a free way). */
inline constexpr uint64_t kNeverCached = ~0ull;

/** One set of the entry array: four keys, then their four values (Shard::Set). */
struct alignas(64) RawSet {
	uint64_t key[4];
	uint64_t value[4];
};

/** The way of @p s holding @p key as a bit mask (0: none); all four compared at once. */
static inline unsigned match_ways(const RawSet *s, uint64_t key)
{
#if defined(__AVX2__)
	const __m256i want = _mm256_set1_epi64x(static_cast<long long>(key));
	const __m256i keys = _mm256_load_si256(reinterpret_cast<const __m256i *>(s->key));
	return static_cast<unsigned>(
		_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(keys, want))));
#else
	const __m128i want = _mm_set1_epi64x(static_cast<long long>(key));
	const __m128i *k = reinterpret_cast<const __m128i *>(s->key);
	return static_cast<unsigned>(
		_mm_movemask_pd(_mm_castsi128_pd(_mm_cmpeq_epi64(_mm_load_si128(k), want))) |
		(_mm_movemask_pd(_mm_castsi128_pd(_mm_cmpeq_epi64(_mm_load_si128(k + 1), want)))
		 << 2));
#endif
}

/** Fibonacci hashing's multiplier (Shard::set_of()). */
inline constexpr uint64_t kFibonacci = 0x9e3779b97f4a7c15ull;

#if defined(__AVX2__)
/** The iovas of probes p[0..3], in order. */
static inline __m256i four_iovas(const Probe *p)
{
	static_assert(sizeof(Probe) == 16 && offsetof(Probe, iova) == 0);
	const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));     // 0, 1
	const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p + 2)); // 2, 3
	// unpacklo takes quadword 0 of each 128-bit half: iova 0, 2 | 1, 3.
	return _mm256_permute4x64_epi64(_mm256_unpacklo_epi64(a, b), 0xd8);
}

/** a * c modulo 2^64 in each lane (AVX2 has only 32 x 32 -> 64 multiplies). */
static inline __m256i mul64(__m256i a, uint64_t c)
{
	const __m256i c_lo = _mm256_set1_epi64x(static_cast<long long>(c & 0xffffffffu));
	const __m256i c_hi = _mm256_set1_epi64x(static_cast<long long>(c >> 32));
	const __m256i lo = _mm256_mul_epu32(a, c_lo);
	const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), c_lo),
					       _mm256_mul_epu32(a, c_hi));
	return _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32));
}

static inline uint64_t or_lanes(__m256i v)
{
	const __m128i x = _mm_or_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
	return static_cast<uint64_t>(_mm_cvtsi128_si64(_mm_or_si128(x, _mm_unpackhi_epi64(x, x))));
}
#endif

/**
 * Look up @p n probes of one context (tag key @p ctx_key) in page size class @p Cls.
 * The set of a page is the top @p set_bits bits of its Fibonacci hash: Shard::set_of().
 * host[i]/perm[i] as Shard::lookup_bulk() defines them; returns the hits.
 */
template <unsigned Cls>
size_t lookup_run(void *entry_array, unsigned set_bits, uint16_t ctx_key, const Probe *probes,
		  size_t n, uint64_t *host, uint8_t *perm)
{
	constexpr unsigned kShift = kSizeShift[Cls];
	constexpr uint64_t kOffset = (1ull << kShift) - 1;
	constexpr uint64_t kReferenced = Shard::kReferenced;
	RawSet *const sets = static_cast<RawSet *>(entry_array);
	const uint64_t tag = (uint64_t{ctx_key} << 3) | Cls;
	const uint64_t hash_key = uint64_t{ctx_key} << 45;
	const unsigned drop = 64 - set_bits;
#if defined(__AVX2__)
	const __m256i vhash_key = _mm256_set1_epi64x(static_cast<long long>(hash_key));
	const __m256i vtag = _mm256_set1_epi64x(static_cast<long long>(tag));
	const __m256i vsets = _mm256_set1_epi64x(reinterpret_cast<long long>(sets));
	const __m128i vdrop = _mm_cvtsi32_si128(static_cast<int>(drop));
	const __m256i voffset = _mm256_set1_epi64x(static_cast<long long>(kOffset));
#endif
	size_t hits = 0;
	constexpr size_t kChunk = 32;
	RawSet *set[kChunk];
	uint64_t key[kChunk];
	uint64_t offset[kChunk]; // each probe's offset in its page, kept from pass 1
	for (size_t base = 0; base < n; base += kChunk) {
		const size_t m = std::min(kChunk, n - base);
		const Probe *p = probes + base;
		// Pass 1: every set of the chunk found and prefetched, so their misses overlap.
		uint64_t high = 0;
		size_t k = 0;
#if defined(__AVX2__)
		// Four probes at a time: the scalar loop's dozen instructions per probe are
		// most of a hit's cost once the sets are in L2.
		__m256i vhigh = _mm256_setzero_si256();
		for (; k + 4 <= m; k += 4) {
			const __m256i iova = four_iovas(p + k);
			vhigh = _mm256_or_si256(vhigh, iova);
			const __m256i vpn = _mm256_srli_epi64(iova, kShift);
			const __m256i h = mul64(_mm256_xor_si256(vpn, vhash_key), kFibonacci);
			const __m256i at = _mm256_add_epi64(
				_mm256_slli_epi64(_mm256_srl_epi64(h, vdrop), 6), vsets);
			_mm256_storeu_si256(reinterpret_cast<__m256i *>(&set[k]), at);
			_mm256_storeu_si256(
				reinterpret_cast<__m256i *>(&key[k]),
				_mm256_or_si256(_mm256_slli_epi64(vpn, kShift - 12 + 19), vtag));
			_mm256_storeu_si256(reinterpret_cast<__m256i *>(&offset[k]),
					    _mm256_and_si256(iova, voffset));
			rte_prefetch0(set[k]);
			rte_prefetch0(set[k + 1]);
			rte_prefetch0(set[k + 2]);
			rte_prefetch0(set[k + 3]);
		}
		high = or_lanes(vhigh);
#endif
		for (; k < m; k++) {
			const uint64_t vpn = p[k].iova >> kShift;
			high |= p[k].iova;
			set[k] = &sets[((vpn ^ hash_key) * kFibonacci) >> drop];
			key[k] = (vpn << (kShift - 12 + 19)) | tag;
			offset[k] = p[k].iova & kOffset;
			rte_prefetch0(set[k]);
		}
		// Inputs too high for the key are never cached and must not alias a cached
		// page: such a chunk (never seen in practice) is compared probe by probe.
		if (high >= kMaxCachedIova) {
			for (size_t k = 0; k < m; k++)
				if (p[k].iova >= kMaxCachedIova)
					key[k] = kNeverCached;
		}
		// Pass 2: compare and answer.
		uint64_t *h = host + base;
		uint8_t *pm = perm + base;
		for (size_t k = 0; k < m; k++) {
			const unsigned ways = match_ways(set[k], key[k]);
			if (ways == 0) {
				h[k] = 0;
				pm[k] = 0;
				continue;
			}
			uint64_t *slot = &set[k]->value[__builtin_ctzll(ways)];
			const uint64_t v = *slot;
			// Set NRU's referenced bit only when it is clear: no store (no dirty line)
			// on the hits that repeat.
			if (!(v & kReferenced))
				*slot = v | kReferenced;
			h[k] = (v & ~0xfffull) + offset[k];
			pm[k] = static_cast<uint8_t>((v & 7) | (Cls << 4));
			hits++;
		}
	}
	return hits;
}

/** lookup_run for each size class, indexed by class. */
inline constexpr Shard::LookupFn kRuns[kSizeClasses] = {
	&lookup_run<0>, &lookup_run<1>, &lookup_run<2>, &lookup_run<3>,
	&lookup_run<4>, &lookup_run<5>, &lookup_run<6>,
};

} // namespace iodp::iotlb::IODP_LOOKUP_NS
