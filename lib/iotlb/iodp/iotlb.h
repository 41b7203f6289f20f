/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * The IOTLB shard: one worker core's cache of leaf translations.
 *
 * A shard belongs to one worker; lookups, fills and flushes take no lock and no atomic
 * read-modify-write. It is a set-associative array of 16-byte entries, four to a 64-byte
 * set, so a lookup touches one cache line per page size it tries:
 *
 *   key   = IOVA page number (45 bits: inputs below 2^57) | context key (16) | size class (3)
 *   value = host address of the page | referenced (bit 3) | permissions (bits 2:0)
 *
 * Contexts. A translation context is (domain tag, ASID, PASID): what hardware tags TLB
 * entries with (VT-d DID + PASID; SMMU VMID + ASID). context() gives a stable handle; the
 * handle's current 16-bit key goes into entries. Flushing a whole context, domain or PASID
 * just gives the handle a fresh key: old entries can never match again and are replaced as
 * sets fill. When keys run out the array is cleared once and keys start over.
 *
 * Page sizes. Every context remembers which page sizes were filled for it; a lookup tries
 * those sizes only (largest first), so 4 KiB-only traffic costs one probe.
 *
 * Replacement: not-recently-used. A hit sets the entry's referenced bit; a fill takes a free
 * way, else one not referenced since the set last filled up (then all bits are cleared).
 * New entries start unreferenced, so a stream of one-off fills replaces itself before it
 * replaces entries that are being hit: skewed traffic keeps its hot set (see
 * doc/performance.md).
 */

#include <iodp/inval.h>
#include <iodp/mem.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

namespace iodp::iotlb {

/** Page sizes the formats produce, as size classes 0..6. */
inline constexpr uint8_t kSizeShift[] = {12, 14, 16, 21, 25, 29, 30};
inline constexpr unsigned kSizeClasses = 7;
/** The size class of a page of 2^@p shift bytes, or -1. */
int size_class(unsigned shift);

/** Inputs at or above this are not cached (they would not fit the key). */
inline constexpr uint64_t kMaxCachedIova = 1ull << 57;

struct ShardConfig {
	/** Entries (rounded up to a power of two, at least 64). 32Ki x 16 B = 512 KiB: L2. */
	uint32_t entries = 32768;
};

struct ShardStats {
	uint64_t hits = 0;
	uint64_t misses = 0;
	uint64_t fills = 0;
	uint64_t evictions = 0;      ///< fills that replaced a live entry
	uint64_t context_flushes = 0;
	uint64_t range_flushes = 0;
	uint64_t full_flushes = 0;
};

/** A lookup: which context, which address. */
struct Probe {
	uint64_t iova;
	uint16_t ctx; ///< a handle from Shard::context()
};

class Shard {
public:
	/** An empty shard that holds nothing; create() makes a real one. */
	Shard() = default;
	/** ENOMEM when the entry array cannot be allocated. */
	static Result<Shard> create(const ShardConfig &config = {});
	Shard(Shard &&) = default;
	Shard &operator=(Shard &&) = default;

	/** The handle of (domain, asid, pasid), made on first use. Not for the per-request path. */
	uint16_t context(uint32_t domain, uint32_t asid, uint32_t pasid);

	/**
	 * Look up @p n probes. host[i] is the translated host address (page base + offset) or 0
	 * on a miss; perm[i] the page's permissions. Sets of the next probes are prefetched
	 * while the current ones are compared. Returns the number of hits.
	 */
	size_t lookup_bulk(const Probe *probes, size_t n, uint64_t *host, uint8_t *perm);

	/** Cache one translation: the page of 2^page_shift bytes containing @p iova. */
	void fill(uint16_t ctx, uint64_t iova, unsigned page_shift, uint64_t host_page,
		  uint8_t perm);

	/** Drop every entry of a context (a new key; nothing is scanned). */
	void flush_context(uint16_t ctx);
	/** Drop entries of @p ctx whose page overlaps [addr, addr + size). */
	void flush_range(uint16_t ctx, uint64_t addr, uint64_t size);
	void flush_all();
	/**
	 * Apply an invalidation to the leaf entries (targets without kTargetIotlb change
	 * nothing here). May drop more than asked, never less.
	 */
	void apply(const inval::Descriptor &d);

	/** Value bit 3: the entry was hit since its set last filled up (NRU replacement). */
	static constexpr uint64_t kReferenced = 8;

	const ShardStats &stats() const { return stats_; }
	uint32_t capacity() const { return sets_ * kWays; }
	/** Bytes of the entry array (for sizing reports). */
	size_t bytes() const { return size_t{sets_} * sizeof(Set); }

private:
	static constexpr unsigned kWays = 4;
	struct alignas(64) Set {
		uint64_t key[kWays];
		uint64_t value[kWays];
	};
	struct Context {
		uint32_t domain = 0, asid = 0, pasid = 0;
		uint16_t key = 0;          ///< current key; 0 = no entries can match
		uint8_t size_mask = 0;     ///< size classes filled since the last flush
		uint8_t largest_first[kSizeClasses] = {}; ///< classes in mask, largest first
		uint8_t n_sizes = 0;
	};

	uint32_t set_of(uint64_t vpn, uint16_t key) const
	{
		// Fibonacci hashing of page number and key: neighbouring pages spread over sets.
		const uint64_t h = (vpn ^ (uint64_t{key} << 45)) * 0x9e3779b97f4a7c15ull;
		// Map the top 32 bits onto [0, sets_) by multiplication: no variable shift.
		return static_cast<uint32_t>(((h >> 32) * sets_) >> 32);
	}
	static uint64_t make_key(uint64_t vpn4k, uint16_t key, unsigned cls)
	{
		return (vpn4k << 19) | (uint64_t{key} << 3) | cls;
	}
	void new_key(Context &c);
	void recompute_sizes(Context &c);
	bool probe_one(const Context &c, uint64_t iova, uint64_t *host, uint8_t *perm);
	template <unsigned Cls>
	size_t lookup_run(const Context &c, const Probe *probes, size_t n, uint64_t *host,
			  uint8_t *perm);
	using RunFn = size_t (Shard::*)(const Context &, const Probe *, size_t, uint64_t *,
					uint8_t *);
	static const RunFn kRuns[kSizeClasses];

	GuestRam ram_;
	Set *sets_ptr_ = nullptr;
	uint32_t sets_ = 0;
	unsigned set_bits_ = 0;
	uint32_t next_key_ = 1;
	std::vector<Context> contexts_;
	std::map<std::tuple<uint32_t, uint32_t, uint32_t>, uint16_t> by_tag_;
	ShardStats stats_;
};

} // namespace iodp::iotlb
