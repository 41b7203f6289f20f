/* SPDX-License-Identifier: BSD-3-Clause */
// rte_vect_get_max_simd_bitwidth() is still experimental in DPDK 22.11; it is how an EAL
// user (--force-max-simd-bitwidth) says which vector paths may run, so we honour it.
#define ALLOW_EXPERIMENTAL_API
#include <iodp/iotlb.h>

#include <rte_cpuflags.h>
// DPDK 22.11's generic/rte_vect.h declares its functions without extern "C".
extern "C" {
#include <generic/rte_vect.h>
}
#include <rte_vect.h>

#define IODP_LOOKUP_NS baseline
#include "lookup_kernel.h"
#include "lookup_isa.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <cerrno>

namespace iodp::iotlb {

int size_class(unsigned shift)
{
	for (unsigned c = 0; c < kSizeClasses; c++)
		if (kSizeShift[c] == shift)
			return static_cast<int>(c);
	return -1;
}

/** Whether the AVX2 lookup kernels may run here (see Shard::lookup_isa()). */
static bool lookup_avx2_usable(uint16_t max_simd_bitwidth)
{
	return (max_simd_bitwidth == 0 || max_simd_bitwidth >= 256) &&
	       rte_cpu_get_flag_enabled(RTE_CPUFLAG_AVX2) > 0 &&
	       rte_cpu_get_flag_enabled(RTE_CPUFLAG_BMI2) > 0 &&
	       // 0 before rte_eal_init(): no limit has been set yet.
	       (rte_vect_get_max_simd_bitwidth() == 0 ||
		rte_vect_get_max_simd_bitwidth() >= RTE_VECT_SIMD_256);
}

Result<Shard> Shard::create(const ShardConfig &config)
{
	if (config.entries > (1u << 26))
		return Status::error(-EINVAL, "iotlb shard: {} entries is more than 2^26",
				     config.entries);
	Shard sh;
	const uint32_t want = std::max<uint32_t>(64, config.entries);
	sh.sets_ = std::bit_ceil(want) / kWays;
	sh.set_bits_ = static_cast<unsigned>(std::countr_zero(sh.sets_));
	// Hugepage-backed when the machine has them: a shard is looked up at random.
	Result<GuestRam> ram = GuestRam::allocate(size_t{sh.sets_} * sizeof(Set));
	if (!ram)
		return Status::error(-ENOMEM, "iotlb shard: {}", ram.status().message());
	sh.ram_ = std::move(*ram);
	sh.sets_ptr_ = reinterpret_cast<Set *>(sh.ram_.data());
	static_assert(sizeof(Set) == sizeof(baseline::RawSet) &&
		      alignof(Set) == alignof(baseline::RawSet));
	if (lookup_avx2_usable(config.max_simd_bitwidth)) {
		sh.runs_ = kLookupAvx2;
		sh.lookup_isa_ = "avx2";
	} else {
		sh.runs_ = baseline::kRuns;
		sh.lookup_isa_ = "sse4.2";
	}

	if (config.walk_entries > (1u << 24))
		return Status::error(-EINVAL, "iotlb shard: {} walk-cache entries is more than 2^24",
				     config.walk_entries);
	sh.walk_nsets_ = std::bit_ceil(std::max<uint32_t>(64, config.walk_entries)) / kWays;
	Result<GuestRam> wram = GuestRam::allocate(size_t{sh.walk_nsets_} * sizeof(Set));
	if (!wram)
		return Status::error(-ENOMEM, "iotlb shard walk cache: {}",
				     wram.status().message());
	sh.walk_ram_ = std::move(*wram);
	sh.walk_sets_ = reinterpret_cast<Set *>(sh.walk_ram_.data());

	if (config.routes > (1u << 16))
		return Status::error(-EINVAL, "iotlb shard: {} routes is more than 2^16",
				     config.routes);
	sh.routes_.resize(std::bit_ceil(std::max<uint32_t>(16, config.routes)));
	sh.contexts_.emplace_back(); // handle 0: a context that never hits
	return sh;
}

void Shard::new_key(Context &c)
{
	if (next_key_ > 0xffff) {
		// Keys ran out: forget everything once and hand out keys from 1 again.
		std::memset(sets_ptr_, 0, size_t{sets_} * sizeof(Set));
		std::memset(walk_sets_, 0, size_t{walk_nsets_} * sizeof(Set));
		next_key_ = 1;
		for (size_t h = 1; h < contexts_.size(); h++) {
			contexts_[h].key = static_cast<uint16_t>(next_key_++);
			contexts_[h].size_mask = 0;
			contexts_[h].n_sizes = 0;
		}
		stats_.full_flushes++;
		return; // c got a fresh key in the loop
	}
	c.key = static_cast<uint16_t>(next_key_++);
	c.size_mask = 0;
	c.n_sizes = 0;
}

void Shard::recompute_sizes(Context &c)
{
	c.n_sizes = 0;
	for (int cls = kSizeClasses - 1; cls >= 0; cls--)
		if (c.size_mask & (1u << cls))
			c.largest_first[c.n_sizes++] = static_cast<uint8_t>(cls);
}

uint16_t Shard::context(uint32_t domain, uint32_t asid, uint32_t pasid, uint32_t s2_domain)
{
	const auto tag = std::make_tuple(domain, asid, pasid);
	auto it = by_tag_.find(tag);
	if (it != by_tag_.end()) {
		Context &c = contexts_[it->second];
		if (c.s2_domain != s2_domain) {
			// Its entries were made over another stage 2: they must not be used.
			c.s2_domain = s2_domain;
			flush_context(it->second);
		}
		return it->second;
	}
	if (contexts_.size() > 0xffff)
		return 0; // out of handles: translate() walks every request of such a route
	const auto h = static_cast<uint16_t>(contexts_.size());
	Context c;
	c.domain = domain;
	c.asid = asid;
	c.pasid = pasid;
	c.s2_domain = s2_domain;
	contexts_.push_back(c);
	new_key(contexts_.back());
	by_tag_.emplace(tag, h);
	return h;
}

/*
 * Find @p key in a set's four keys (@p keys starts the set) with no branch on which way
 * matched, since with random traffic the way is unpredictable and a mispredict costs more
 * than the whole lookup. A hit sets the way's referenced bit (for NRU) unless it is set.
 */
static inline bool find_in_set(const uint64_t *keys, uint64_t *values, uint64_t key,
			       uint64_t *value)
{
	const unsigned match =
		baseline::match_ways(reinterpret_cast<const baseline::RawSet *>(keys), key);
	if (match == 0)
		return false;
	const unsigned w = static_cast<unsigned>(__builtin_ctz(match));
	*value = values[w];
	if (!(*value & Shard::kReferenced))
		values[w] = *value | Shard::kReferenced;
	return true;
}

/**
 * The way a fill takes in a set: its own key, a free way, else not-recently-used (when
 * every way was hit, all are marked unreferenced and way 0 goes). Chosen from three masks
 * with no branch on the set's contents: which way is free or cold is random, and a
 * mispredicted branch per fill cost more than the compares.
 */
static unsigned victim_way(uint64_t *keys, uint64_t *values, uint64_t k)
{
	const auto *set = reinterpret_cast<const baseline::RawSet *>(keys);
	const unsigned own = baseline::match_ways(set, k);
	const unsigned free = baseline::match_ways(set, 0);
	unsigned cold = 0;
	for (unsigned i = 0; i < 4; i++)
		cold |= ((values[i] & Shard::kReferenced) == 0 ? 1u : 0u) << i;
	const unsigned pick = own != 0 ? own : free != 0 ? free : cold;
	if (pick == 0) {
		for (unsigned i = 0; i < 4; i++)
			values[i] &= ~Shard::kReferenced;
		return 0;
	}
	return static_cast<unsigned>(__builtin_ctz(pick));
}

bool Shard::probe_one(const Context &c, uint64_t iova, uint64_t *host, uint8_t *perm)
{
	for (unsigned i = 0; i < c.n_sizes; i++) {
		const unsigned cls = c.largest_first[i];
		const unsigned shift = kSizeShift[cls];
		const uint64_t base = iova & ~((1ull << shift) - 1);
		Set &s = sets_ptr_[set_of(iova >> shift, c.key)];
		uint64_t v;
		if (find_in_set(s.key, s.value, make_key(base >> 12, c.key, cls), &v)) {
			*host = (v & ~0xfffull) + (iova - base);
			*perm = static_cast<uint8_t>((v & 7) | (cls << 4));
			return true;
		}
	}
	return false;
}

size_t Shard::lookup_bulk(const Probe *probes, size_t n, uint64_t *host, uint8_t *perm)
{
	size_t hits = 0;
	size_t i = 0;
	while (i < n) {
		// Requests come in runs of one context (one device queue, one PASID).
		const uint16_t ctx = probes[i].ctx;
		size_t end = i + 1;
		while (end < n && probes[end].ctx == ctx)
			end++;
		const Context &c = contexts_[ctx];
		if (c.n_sizes != 1) {
			for (; i < end; i++) {
				host[i] = 0;
				perm[i] = 0;
				if (probes[i].iova < kMaxCachedIova &&
				    probe_one(c, probes[i].iova, &host[i], &perm[i]))
					hits++;
			}
			continue;
		}
		// One page size in use (the common case): one set per request, with the
		// shift a constant in each instantiation.
		hits += runs_[c.largest_first[0]](sets_ptr_, set_bits_, c.key, probes + i,
						   end - i, host + i, perm + i);
		i = end;
	}
	stats_.hits += hits;
	stats_.misses += n - hits;
	return hits;
}

void Shard::fill(uint16_t ctx, uint64_t iova, unsigned page_shift, uint64_t host_page,
		 uint8_t perm)
{
	const int cls = size_class(page_shift);
	if (cls < 0 || iova >= kMaxCachedIova || ctx == 0 || ctx >= contexts_.size() ||
	    sets_ == 0)
		return;
	Context &c = contexts_[ctx];
	const uint64_t base = iova & ~((1ull << page_shift) - 1);
	Set &s = sets_ptr_[set_of(iova >> page_shift, c.key)];
	const uint64_t k = make_key(base >> 12, c.key, static_cast<unsigned>(cls));
	const uint64_t v = (host_page & ~((1ull << page_shift) - 1)) | (perm & 7u);
	// Not-recently-used: refresh in place, else a free way, else the first way not hit
	// since the set last filled up. New entries start unreferenced, so one-off fills
	// replace each other before they replace entries that are being hit.
	const unsigned w = victim_way(s.key, s.value, k);
	if (s.key[w] != 0 && s.key[w] != k)
		stats_.evictions++;
	s.key[w] = k;
	s.value[w] = v;
	stats_.fills++;
	if (!(c.size_mask & (1u << cls))) {
		c.size_mask |= static_cast<uint8_t>(1u << cls);
		recompute_sizes(c);
	}
}

void Shard::flush_context(uint16_t ctx)
{
	if (ctx == 0 || ctx >= contexts_.size())
		return;
	new_key(contexts_[ctx]);
	stats_.context_flushes++;
}

void Shard::flush_range(uint16_t ctx, uint64_t addr, uint64_t size)
{
	if (ctx == 0 || ctx >= contexts_.size() || size == 0)
		return;
	const Context &c = contexts_[ctx];
	const uint64_t last = addr + (size - 1) < addr ? UINT64_MAX : addr + (size - 1);
	// Past a few dozen probes a new key is cheaper than finding the entries.
	constexpr uint64_t kMaxProbes = 64;
	uint64_t probes = 0;
	for (unsigned i = 0; i < c.n_sizes; i++) {
		const unsigned shift = kSizeShift[c.largest_first[i]];
		probes += ((last >> shift) - (addr >> shift)) + 1;
		if (probes > kMaxProbes || probes == 0) {
			flush_context(ctx);
			return;
		}
	}
	for (unsigned i = 0; i < c.n_sizes; i++) {
		const unsigned cls = c.largest_first[i];
		const unsigned shift = kSizeShift[cls];
		// Pages of this size that overlap the range, including one whose base lies below.
		for (uint64_t vpn = addr >> shift; vpn <= (last >> shift); vpn++) {
			const uint64_t base = vpn << shift;
			if (base >= kMaxCachedIova)
				break;
			Set &s = sets_ptr_[set_of(vpn, c.key)];
			const uint64_t k = make_key(base >> 12, c.key, cls);
			for (unsigned w = 0; w < kWays; w++)
				if (s.key[w] == k)
					s.key[w] = 0;
			if (vpn == UINT64_MAX >> shift)
				break;
		}
	}
	stats_.range_flushes++;
}

/*
 * Paging-structure entries live in their own sets: key = the input region the table maps
 * (iova >> the reach of a table at that height) | context key | height; value = the
 * table's memory address | the permission state above it (bits 11:4) | referenced.
 */
uint64_t Shard::walk_key(uint16_t key, const pgtable::Stage &st, int height, uint64_t iova,
			 uint32_t *set) const
{
	const uint64_t region = iova >> st.shift(height + 1);
	const uint64_t h = (region ^ (uint64_t{key} << 43) ^ (uint64_t(height) << 59)) *
			   0x9e3779b97f4a7c15ull;
	*set = static_cast<uint32_t>(((h >> 32) * walk_nsets_) >> 32);
	return (region << 19) | (uint64_t{key} << 3) | static_cast<unsigned>(height);
}

pgtable::TableRef Shard::walk_lookup(uint16_t ctx, const pgtable::Stage &st, uint64_t iova)
{
	const Context &c = contexts_[ctx];
	if (ctx != 0 && walk_nsets_ != 0) {
		// The leaf table first (one read left), then its parent (two).
		for (int h = 0; h < 2 && h < st.start_height; h++) {
			uint32_t set;
			const uint64_t k = walk_key(c.key, st, h, iova, &set);
			Set &s = walk_sets_[set];
			uint64_t v;
			if (find_in_set(s.key, s.value, k, &v)) {
				pgtable::TableRef t;
				t.table = v & ~0xfffull;
				t.height = static_cast<int8_t>(h);
				t.acc = static_cast<uint8_t>(v >> 4);
				return t;
			}
		}
	}
	return {};
}

void Shard::walk_fill(uint16_t ctx, const pgtable::Stage &st, uint64_t iova,
		      const pgtable::TableRef &t)
{
	if (ctx == 0 || ctx >= contexts_.size() || walk_nsets_ == 0 || !t.valid() ||
	    t.height > 1 || t.height >= st.start_height || (t.table & 0xfff) != 0)
		return;
	uint32_t set;
	const uint64_t k = walk_key(contexts_[ctx].key, st, t.height, iova, &set);
	Set &s = walk_sets_[set];
	const unsigned w = victim_way(s.key, s.value, k);
	s.key[w] = k;
	s.value[w] = t.table | (uint64_t{t.acc} << 4);
	Context &c = contexts_[ctx];
	c.stage = st;
	c.has_walks = true;
}

void Shard::flush_walk_range(uint16_t ctx, uint64_t addr, uint64_t size)
{
	if (ctx == 0 || ctx >= contexts_.size() || size == 0)
		return;
	const Context &c = contexts_[ctx];
	if (!c.has_walks)
		return; // no table of it was ever cached
	const uint64_t last = addr + (size - 1) < addr ? UINT64_MAX : addr + (size - 1);
	const pgtable::Stage &st = c.stage;
	constexpr uint64_t kMaxProbes = 64;
	for (int h = 0; h < 2; h++) {
		const unsigned reach = st.shift(h + 1);
		if ((last >> reach) - (addr >> reach) >= kMaxProbes) {
			flush_context(ctx);
			return;
		}
	}
	for (int h = 0; h < 2; h++) {
		const unsigned reach = st.shift(h + 1);
		for (uint64_t r = addr >> reach; r <= (last >> reach); r++) {
			uint32_t set;
			const uint64_t k = walk_key(c.key, st, h, r << reach, &set);
			Set &s = walk_sets_[set];
			for (unsigned w = 0; w < kWays; w++)
				if (s.key[w] == k)
					s.key[w] = 0;
		}
	}
}

void Shard::clear_translations()
{
	std::memset(sets_ptr_, 0, size_t{sets_} * sizeof(Set));
	std::memset(walk_sets_, 0, size_t{walk_nsets_} * sizeof(Set));
	for (Context &c : contexts_) {
		c.size_mask = 0;
		c.n_sizes = 0;
	}
	stats_.full_flushes++;
}

void Shard::flush_all()
{
	clear_translations();
	for (CachedRoute &r : routes_)
		r.used = false;
}

void Shard::apply(const inval::Descriptor &d)
{
	using namespace inval;
	if (d.op != Op::invalidate)
		return;
	if (d.targets & kTargetConfig) {
		for (CachedRoute &r : routes_)
			if (r.used && route_matches(r, d)) {
				r.used = false;
				stats_.route_flushes++;
			}
	}
	const bool leaves = d.targets & kTargetIotlb;
	// Leaf-only promises the tables above stayed: their cached entries may stay too.
	const bool tables = (d.targets & kTargetWalkCache) && !d.leaf_only;
	if (!leaves && !tables)
		return;
	if ((d.match & (kMatchDomain | kMatchAsid | kMatchPasid)) == 0) {
		clear_translations(); // no tag to match on (device-only matches too): everything
		return;
	}
	for (size_t h = 1; h < contexts_.size(); h++) {
		const Context &c = contexts_[h];
		const auto ctx = static_cast<uint16_t>(h);
		if (d.match & kMatchStage2) {
			// A stage-2 change: the domain's own IPA entries in the range, and every
			// nested context over it whole (its entries and cached tables combine
			// both stages, so no IOVA range is known).
			const bool over = c.s2_domain != kNoDomain &&
					  (!(d.match & kMatchDomain) || c.s2_domain == d.domain);
			const bool tagged = !(d.match & kMatchDomain) || c.domain == d.domain;
			if (over || (tagged && c.asid != kStage2Asid)) {
				flush_context(ctx); // SMMU: stage 1 tagged with the VMID as well
				continue;
			}
			if (!tagged)
				continue;
		} else if (((d.match & kMatchDomain) && c.domain != d.domain) ||
			   ((d.match & kMatchAsid) && c.asid != d.asid) ||
			   ((d.match & kMatchPasid) && c.pasid != d.pasid)) {
			continue;
		}
		if (!(d.match & kMatchRange)) {
			flush_context(ctx); // leaves and tables alike: over-invalidation is allowed
			continue;
		}
		if (leaves)
			flush_range(ctx, d.addr, d.size);
		if (tables)
			flush_walk_range(ctx, d.addr, d.size);
	}
}

} // namespace iodp::iotlb
