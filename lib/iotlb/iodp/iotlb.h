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
 *
 * Beside the leaf entries a shard keeps the two caches a miss needs:
 *  - a paging-structure cache: for each context, the stage-1 tables one and two levels
 *    above the leaves (with the permissions the levels above them granted), so a miss
 *    resumes the walk there and reads one or two entries instead of the whole path;
 *  - a PASID/config cache: (device, PASID) -> Route (format, roots, tags), so requests never
 *    re-read PASID, context, STE or CD tables.
 * Nested translations keep their stage-2 results as leaf entries of the stage-2 domain's
 * own context (asid kStage2Asid): the stage-2 cache is the IOTLB, shared by every stage 1
 * nested on that domain and by devices attached to the domain directly.
 */

#include <iodp/inval.h>
#include <iodp/mem.h>
#include <iodp/pgtable.h>

#include <atomic>
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

/** Tag of translations that carry no PASID (RID requests; SMMU, whose tag is the ASID). */
inline constexpr uint32_t kNoPasid = UINT32_MAX;
/**
 * ASID tag of a stage-2 (or single-stage paging) domain's own translations: IPA -> host,
 * shared by nested stage 1s (their stage-2 cache) and devices attached directly.
 */
inline constexpr uint32_t kStage2Asid = UINT32_MAX;
/** "No domain" for Shard::context()'s s2_domain. */
inline constexpr uint32_t kNoDomain = 0;

struct ShardConfig {
	/** Entries (rounded up to a power of two, at least 64). 32Ki x 16 B = 512 KiB: L2. */
	uint32_t entries = 32768;
	/** Paging-structure cache entries (same rules). 2Ki tables x 2 MiB = 4 GiB of reach. */
	uint32_t walk_entries = 2048;
	/** PASID/config cache entries (a power of two, at least 16). */
	uint32_t routes = 256;
	/**
	 * The widest vectors lookup_bulk() may use: 0 follows DPDK's limit
	 * (rte_vect_get_max_simd_bitwidth()); 128 keeps the SSE4.2 kernels.
	 */
	uint16_t max_simd_bitwidth = 0;
};

struct ShardStats {
	uint64_t hits = 0;
	uint64_t misses = 0;
	uint64_t fills = 0;
	uint64_t evictions = 0;      ///< fills that replaced a live entry
	uint64_t context_flushes = 0;
	uint64_t range_flushes = 0;
	uint64_t full_flushes = 0;
	uint64_t walks = 0;          ///< walks started by translate() (stage-2 walks included)
	uint64_t walk_reads = 0;     ///< table entries those walks read
	uint64_t walk_cache_hits = 0;   ///< walks resumed below the root
	uint64_t walk_cache_misses = 0; ///< walks from the root
	uint64_t s2_hits = 0;        ///< nested outputs found in the stage-2 cache
	uint64_t s2_misses = 0;
	uint64_t route_hits = 0;     ///< PASID/config cache
	uint64_t route_misses = 0;
	uint64_t route_flushes = 0;  ///< routes dropped by invalidations
};

/**
 * How to translate one (device, PASID)'s requests: what a PASID/config cache entry holds.
 * The control side (lib/ctl) resolves it from the binding, PASID table, STE and CD.
 */
struct Route {
	/** not_attached (DMA blocked), bad_config, ...: every request faults with this. */
	pgtable::FaultKind blocked = pgtable::FaultKind::not_attached;
	uint8_t blocked_stage = 0;
	int8_t blocked_level = 0;
	/** Privileged requests fault at stage 1 (VT-d first stage without SRE). */
	bool priv_faults = false;
	/** The stage requests enter (stage 1, or the only stage) and, nested, stage 2. */
	pgtable::Stage s1;
	std::optional<pgtable::Stage> s2;
	/**
	 * The memory walks read. The control side publishes a new one when it changes (with a
	 * release store) and frees the old one after a grace period; translate() loads it once.
	 */
	const std::atomic<const GuestMemory *> *mem = nullptr;
	/** TLB tag of what s1 maps: (domain, asid, pasid) as Shard::context() takes them. */
	uint32_t domain = 0, asid = 0, pasid = kNoPasid;
	/** Nested: the stage-2 domain (its context is (s2_domain, kStage2Asid, kNoPasid)). */
	uint32_t s2_domain = kNoDomain;
	/** Who the translation belongs to, for fault reports and config invalidations. */
	uint32_t hwpt = 0;

	/**
	 * Whether a request with @p access faults before any walk (a blocked route, or a
	 * privileged request where they are refused); if so *fault says how.
	 */
	bool refuses(uint8_t access, pgtable::WalkResult *fault) const
	{
		if (blocked == pgtable::FaultKind::none && mem != nullptr &&
		    !(priv_faults && (access & pgtable::kAccessPriv)))
			return false;
		*fault = pgtable::WalkResult{};
		if (blocked != pgtable::FaultKind::none || mem == nullptr) {
			fault->fault = blocked != pgtable::FaultKind::none
					       ? blocked
					       : pgtable::FaultKind::not_attached;
			fault->stage = blocked_stage;
			fault->level = blocked_level;
		} else {
			fault->fault = pgtable::FaultKind::permission;
			fault->stage = 1;
		}
		return true;
	}
	/** The stages over the memory published now (for a route that does not refuse). */
	pgtable::Translation translation() const
	{
		pgtable::Translation x;
		x.mem = mem->load(std::memory_order_acquire);
		x.s1 = s1;
		x.s2 = s2;
		return x;
	}
};

/** A route in the PASID/config cache, with its contexts resolved. */
struct CachedRoute {
	uint32_t device = 0;
	uint32_t pasid = kNoPasid;
	Route route;
	uint16_t ctx = 0;    ///< leaf entries and paging-structure entries of s1
	uint16_t s2_ctx = 0; ///< nested: the stage-2 domain's context
	bool used = false;
};

/**
 * What translate() is asked: one address and its access. (A device's request, struct
 * iodp_request, may span pages; the worker asks one Query per page of it. A walk's input
 * is pgtable::WalkRequest.)
 */
struct Query {
	uint64_t iova;
	uint8_t access; ///< pgtable::kAccess*
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

	/**
	 * The handle of (domain, asid, pasid), made on first use. Not for the per-request path.
	 * A nested context names its stage-2 domain: a stage-2 invalidation of that domain
	 * then drops it whole (its entries combine both stages).
	 */
	uint16_t context(uint32_t domain, uint32_t asid, uint32_t pasid,
			 uint32_t s2_domain = kNoDomain);

	/**
	 * Look up @p n probes. host[i] is the translated host address (page base + offset) or 0
	 * on a miss; perm[i] the page's permissions (bits 2:0) and size class (bits 6:4). Sets of the next probes are prefetched
	 * while the current ones are compared. Returns the number of hits.
	 */
	size_t lookup_bulk(const Probe *probes, size_t n, uint64_t *host, uint8_t *perm);

	/** Cache one translation: the page of 2^page_shift bytes containing @p iova. */
	void fill(uint16_t ctx, uint64_t iova, unsigned page_shift, uint64_t host_page,
		  uint8_t perm);

	/** Drop every entry of a context, leaf and paging-structure (a new key; no scan). */
	void flush_context(uint16_t ctx);
	/** Drop leaf entries of @p ctx whose page overlaps [addr, addr + size). */
	void flush_range(uint16_t ctx, uint64_t addr, uint64_t size);
	/** Drop paging-structure entries of @p ctx whose tables map part of the range. */
	void flush_walk_range(uint16_t ctx, uint64_t addr, uint64_t size);
	/** Drop everything: leaves, tables and routes (what a lost invalidation calls for). */
	void flush_all();
	/**
	 * Apply an invalidation to whichever of the leaf, paging-structure and config caches
	 * it targets. May drop more than asked, never less.
	 */
	void apply(const inval::Descriptor &d);

	/* Paging-structure cache ----------------------------------------------------------- */

	/** The lowest cached stage-1 table of @p ctx for @p iova (in @p st), or none. */
	pgtable::TableRef walk_lookup(uint16_t ctx, const pgtable::Stage &st, uint64_t iova);
	/** Keep @p t (from WalkResult::path) as the table for @p iova in @p ctx. */
	void walk_fill(uint16_t ctx, const pgtable::Stage &st, uint64_t iova,
		       const pgtable::TableRef &t);

	/* PASID/config cache ---------------------------------------------------------------- */

	/** The cached route of (device, pasid), or nullptr. */
	const CachedRoute *route_lookup(uint32_t device, uint32_t pasid);
	/**
	 * Cache @p r for (device, pasid), replacing whatever was there. When its probe window
	 * is full, a route not in @p keep[0..nkeep) is evicted: callers that hold pointers to
	 * cached routes (a worker's burst) name them there. nullptr when every slot of the
	 * window is kept: then route_make() gives the caller a route of its own.
	 */
	const CachedRoute *route_fill(uint32_t device, uint32_t pasid, const Route &r,
				      const CachedRoute *const *keep = nullptr, size_t nkeep = 0);
	/** Make @p out the route route_fill() would have cached (not cached). */
	void route_make(CachedRoute &out, uint32_t device, uint32_t pasid, const Route &r);

	/* Translation ------------------------------------------------------------------------ */

	/**
	 * Translate @p n queries of one route: leaf entries first; the misses are walked
	 * together (walk_burst), each resumed from the paging-structure cache when it can be,
	 * nested outputs through the stage-2 cache (stage-2 walks for its misses); then every
	 * cache is filled. out[i] is what pgtable::walk() of the route's tables gives, except
	 * that hits report reads = 0 and path = {}. Privileged requests are walked (resumed)
	 * but not cached: leaf permissions depend on privilege and the tag does not hold it.
	 */
	void translate(const CachedRoute &r, const Query *queries, size_t n,
		       pgtable::WalkResult *out);
	/**
	 * translate() for queries already looked up: host[i] and perm[i] are what
	 * lookup_bulk() gave for queries[i] with the route's context (a hit, a hit without the
	 * access, or a miss; counted there). No second lookup: the worker's one-pass path
	 * answers hits itself and hands only the rest here.
	 */
	void translate_known(const CachedRoute &r, const Query *queries, size_t n,
			     const uint64_t *host, const uint8_t *perm, pgtable::WalkResult *out);

	/** Value bit 3: the entry was hit since its set last filled up (NRU replacement). */
	static constexpr uint64_t kReferenced = 8;

	const ShardStats &stats() const { return stats_; }
	uint32_t capacity() const { return sets_ * kWays; }
	/** Bytes of the entry array (for sizing reports). */
	size_t bytes() const { return size_t{sets_} * sizeof(Set); }
	/** What the entry array sits on (hugepages or not: a lookup's TLB cost depends on it). */
	RamBacking backing() const { return ram_.backing(); }
	/**
	 * The instruction set lookup_bulk() uses: "avx2" where the CPU has AVX2 and BMI2 and
	 * both ShardConfig::max_simd_bitwidth and DPDK's SIMD limit (--force-max-simd-bitwidth,
	 * rte_vect_set_max_simd_bitwidth()) allow 256 bits when the shard is created, else
	 * "sse4.2" (the x86-64 baseline DPDK builds for). Both answer alike; only speed differs.
	 */
	const char *lookup_isa() const { return lookup_isa_; }

	/** A lookup kernel: one run of probes of one context and one size class. */
	using LookupFn = size_t (*)(void *entry_array, unsigned set_bits, uint16_t ctx_key,
				    const Probe *probes, size_t n, uint64_t *host, uint8_t *perm);

private:
	static constexpr unsigned kWays = 4;
	struct alignas(64) Set {
		uint64_t key[kWays];
		uint64_t value[kWays];
	};
	struct Context {
		uint32_t domain = 0, asid = 0, pasid = 0;
		uint32_t s2_domain = kNoDomain;
		bool has_walks = false;    ///< walk_fill() ran: stage holds the geometry
		pgtable::Stage stage;
		uint16_t key = 0;          ///< current key; 0 = no entries can match
		uint8_t size_mask = 0;     ///< size classes filled since the last flush
		uint8_t largest_first[kSizeClasses] = {}; ///< classes in mask, largest first
		uint8_t n_sizes = 0;
	};

	uint32_t set_of(uint64_t vpn, uint16_t key) const
	{
		// Fibonacci hashing of page number and key: neighbouring pages spread over sets;
		// the set is the hash's top bits (lookup_kernel.h computes it the same way).
		const uint64_t h = (vpn ^ (uint64_t{key} << 45)) * 0x9e3779b97f4a7c15ull;
		return static_cast<uint32_t>(h >> (64 - set_bits_));
	}
	static uint64_t make_key(uint64_t vpn4k, uint16_t key, unsigned cls)
	{
		return (vpn4k << 19) | (uint64_t{key} << 3) | cls;
	}
	void new_key(Context &c);
	void clear_translations();
	void recompute_sizes(Context &c);
	bool probe_one(const Context &c, uint64_t iova, uint64_t *host, uint8_t *perm);
	/** The lookup kernels (lookup_kernel.h) this CPU runs, one per size class. */
	const LookupFn *runs_ = nullptr;
	const char *lookup_isa_ = "";

	uint64_t walk_key(uint16_t key, const pgtable::Stage &st, int height, uint64_t iova,
			  uint32_t *set) const;
	bool route_matches(const CachedRoute &r, const inval::Descriptor &d) const;
	void translate_chunk(const CachedRoute &r, const Query *queries, size_t n,
			     const uint64_t *known_host, const uint8_t *known_perm,
			     pgtable::WalkResult *out);
	void fill_path(uint16_t ctx, const pgtable::Stage &st, const pgtable::WalkRequest &w,
		       const pgtable::WalkResult &res);
	void resolve_stage2(const CachedRoute &r, const pgtable::Translation &x, size_t n,
			    const uint64_t *ipa, const uint8_t *access, pgtable::WalkResult *res);

	GuestRam ram_;
	Set *sets_ptr_ = nullptr;
	GuestRam walk_ram_;
	Set *walk_sets_ = nullptr;
	uint32_t walk_nsets_ = 0;
	std::vector<CachedRoute> routes_;
	uint32_t sets_ = 0;
	unsigned set_bits_ = 0;
	uint32_t next_key_ = 1;
	std::vector<Context> contexts_;
	std::map<std::tuple<uint32_t, uint32_t, uint32_t>, uint16_t> by_tag_;
	ShardStats stats_;
};

} // namespace iodp::iotlb
