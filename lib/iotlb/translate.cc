/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The shard's miss path: routes (the PASID/config cache) and translate(), which takes a
 * burst through the leaf entries, resumed walks and the stage-2 cache and fills all three.
 */
#include <iodp/iotlb.h>

#include <algorithm>
#include <type_traits>
#include <bit>

// GCC 12 cannot see that lookup_bulk() reads only the n probes filled before it (its
// prefetch loop indexes ahead under a bound), once the scratch arrays below are left
// uninitialised.
#if !defined(__clang__) // (clang has no such warning, and -Werror refuses unknown ones)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace iodp::iotlb {

using pgtable::FaultKind;
using pgtable::TableRef;
using pgtable::WalkRequest;
using pgtable::WalkResult;

namespace {

/** Slots a route may sit in from its home slot (open addressing, linear probing). */
constexpr unsigned kRouteProbes = 8;
/** Requests translated together: the leaf lookups, then the walks of the misses. */
constexpr size_t kChunk = 64;

/**
 * Scratch arrays left uninitialised: WalkRequest and WalkResult have member initialisers,
 * and zeroing kChunk of each per chunk cost more than the hits they serve.
 */
template <class T, size_t N> struct Scratch {
	static_assert(std::is_trivially_destructible_v<T>);
	union {
		T v[N];
	};
	Scratch() {}
	T &operator[](size_t i) { return v[i]; }
	T *data() { return v; }
};

size_t route_home(uint32_t device, uint32_t pasid, size_t slots)
{
	const uint64_t h = ((uint64_t{device} << 32) | pasid) * 0x9e3779b97f4a7c15ull;
	return static_cast<size_t>(h >> 40) & (slots - 1);
}

bool cacheable(uint8_t access) { return !(access & pgtable::kAccessPriv); }

} // namespace

const CachedRoute *Shard::route_lookup(uint32_t device, uint32_t pasid)
{
	const size_t slots = routes_.size();
	for (unsigned p = 0; slots != 0 && p < kRouteProbes; p++) {
		const CachedRoute &r = routes_[(route_home(device, pasid, slots) + p) & (slots - 1)];
		if (r.used && r.device == device && r.pasid == pasid) {
			stats_.route_hits++;
			return &r;
		}
	}
	stats_.route_misses++;
	return nullptr;
}

const CachedRoute *Shard::route_fill(uint32_t device, uint32_t pasid, const Route &route,
				     const CachedRoute *const *keep, size_t nkeep)
{
	const size_t slots = routes_.size();
	if (slots == 0)
		return nullptr;
	const size_t home = route_home(device, pasid, slots);
	CachedRoute *slot = nullptr;
	for (unsigned p = 0; p < kRouteProbes && slot == nullptr; p++) {
		CachedRoute &r = routes_[(home + p) & (slots - 1)];
		if (r.used && r.device == device && r.pasid == pasid)
			slot = &r;
	}
	for (unsigned p = 0; p < kRouteProbes && slot == nullptr; p++) {
		CachedRoute &r = routes_[(home + p) & (slots - 1)];
		if (!r.used)
			slot = &r;
	}
	// A full window: the first route no caller holds goes (it is re-read later). One a
	// burst still holds must not change under it: that request would take this route.
	for (unsigned p = 0; p < kRouteProbes && slot == nullptr; p++) {
		CachedRoute &r = routes_[(home + p) & (slots - 1)];
		if (std::find(keep, keep + nkeep, &r) == keep + nkeep)
			slot = &r;
	}
	if (slot == nullptr)
		return nullptr;
	route_make(*slot, device, pasid, route);
	return slot;
}

void Shard::route_make(CachedRoute &out, uint32_t device, uint32_t pasid, const Route &route)
{
	CachedRoute *slot = &out;
	slot->device = device;
	slot->pasid = pasid;
	slot->route = route;
	slot->ctx = 0;
	slot->s2_ctx = 0;
	if (route.blocked == FaultKind::none) {
		if (route.s2) {
			slot->s2_ctx = context(route.s2_domain, kStage2Asid, kNoPasid);
			slot->ctx = context(route.domain, route.asid, route.pasid, route.s2_domain);
		} else {
			slot->ctx = context(route.domain, route.asid, route.pasid);
		}
	}
	slot->used = true;
}

bool Shard::route_matches(const CachedRoute &r, const inval::Descriptor &d) const
{
	using namespace inval;
	if ((d.match & kMatchDevice) && r.device != d.device)
		return false;
	if ((d.match & kMatchPasid) && r.pasid != d.pasid)
		return false;
	// A domain tag may name the route's stage 1, its stage 2 or its HWPT: any will do.
	if ((d.match & kMatchDomain) && r.route.domain != d.domain &&
	    r.route.s2_domain != d.domain && r.route.hwpt != d.domain)
		return false;
	return true;
}

/*
 * Keep the tables a walk went through. A walk resumed from the cache reports the table it
 * started at as its path: that one is cached already (a miss in a table the cache holds,
 * the common case under random traffic), so only what lies above it is new.
 */
void Shard::fill_path(uint16_t ctx, const pgtable::Stage &st, const WalkRequest &w,
		      const WalkResult &res)
{
	for (const TableRef &t : res.path)
		if (!(w.start.valid() && t.table == w.start.table && t.height == w.start.height))
			walk_fill(ctx, st, w.iova, t);
}

void Shard::translate(const CachedRoute &r, const Query *queries, size_t n, WalkResult *out)
{
	for (size_t i = 0; i < n; i += kChunk)
		translate_chunk(r, queries + i, std::min(kChunk, n - i), nullptr, nullptr, out + i);
}

/*
 * Leaf entries hold translations for the access that filled them: with accessed/dirty
 * updates on, a read-filled entry is kept read-only so that the first write walks and sets
 * the dirty bit, as hardware does.
 */
static uint8_t cached_perm(const Route &rt, const WalkResult &res, uint8_t access)
{
	const bool tracks = rt.s1.update_accessed || (rt.s2 && rt.s2->update_accessed);
	if (tracks && !(access & pgtable::kAccessWrite))
		return res.perm & ~pgtable::kPermWrite;
	return res.perm;
}

void Shard::translate_known(const CachedRoute &r, const Query *queries, size_t n,
			    const uint64_t *host, const uint8_t *perm, WalkResult *out)
{
	for (size_t i = 0; i < n; i += kChunk)
		translate_chunk(r, queries + i, std::min(kChunk, n - i), host + i, perm + i, out + i);
}

void Shard::translate_chunk(const CachedRoute &r, const Query *queries, size_t n,
			    const uint64_t *known_host, const uint8_t *known_perm, WalkResult *out)
{
	const Route &rt = r.route;
	if (rt.blocked != FaultKind::none || rt.mem == nullptr) {
		for (size_t i = 0; i < n; i++)
			rt.refuses(queries[i].access, &out[i]);
		return;
	}
	const pgtable::Translation x = rt.translation();
	const bool nested = rt.s2.has_value();

	uint64_t looked_host[kChunk];
	uint8_t looked_perm[kChunk];
	const uint64_t *host = known_host;
	const uint8_t *perm = known_perm;
	if (host == nullptr) {
		Probe probes[kChunk];
		for (size_t i = 0; i < n; i++)
			probes[i] = {queries[i].iova, cacheable(queries[i].access) ? r.ctx : uint16_t{0}};
		lookup_bulk(probes, n, looked_host, looked_perm);
		host = looked_host;
		perm = looked_perm;
	}

	Scratch<WalkRequest, kChunk> walks;
	size_t who[kChunk];
	size_t nw = 0;
	// A miss on the page the previous miss is walking, with the same access, waits for
	// that walk (a hardware IOMMU merges it into the outstanding miss): sequential traffic
	// would otherwise walk each page once per request in the burst.
	size_t merged[kChunk];
	size_t nmerged = 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t access = queries[i].access;
		if (rt.refuses(access, &out[i]))
			continue;
		// A hit that does not allow the access walks again: the entry may be older
		// than a change that granted it (hardware re-walks before it faults, too).
		if (host[i] != 0 && (access & 7 & ~perm[i]) == 0) {
			out[i] = WalkResult{};
			out[i].out = host[i];
			out[i].page_size = 1ull << kSizeShift[perm[i] >> 4];
			out[i].perm = perm[i] & 7;
			continue;
		}
		if (nw > 0 && walks[nw - 1].access == access &&
		    (walks[nw - 1].iova >> 12) == (queries[i].iova >> 12)) {
			merged[nmerged++] = i;
			continue;
		}
		WalkRequest &w = walks[nw];
		w = pgtable::walk_request(queries[i].iova, access);
		w.flags = nested ? pgtable::kWalkStage1Only : 0;
		w.start = walk_lookup(r.ctx, rt.s1, queries[i].iova);
		if (w.start.valid())
			stats_.walk_cache_hits++;
		else
			stats_.walk_cache_misses++;
		who[nw++] = i;
	}
	if (nw == 0)
		return;

	Scratch<WalkResult, kChunk> res;
	pgtable::walk_burst(x, walks.data(), res.data(), nw);
	stats_.walks += nw;
	for (size_t k = 0; k < nw; k++) {
		stats_.walk_reads += res[k].reads;
		fill_path(r.ctx, rt.s1, walks[k], res[k]);
	}
	if (nested) {
		uint64_t ipa[kChunk];
		uint8_t access[kChunk];
		for (size_t k = 0; k < nw; k++) {
			ipa[k] = res[k].out;
			access[k] = walks[k].access;
		}
		resolve_stage2(r, x, nw, ipa, access, res.data());
	}
	for (size_t k = 0; k < nw; k++) {
		out[who[k]] = res[k];
		if (!res[k].ok() || !cacheable(walks[k].access))
			continue;
		const uint64_t size = res[k].page_size;
		fill(r.ctx, walks[k].iova, static_cast<unsigned>(std::countr_zero(size)),
		     res[k].out & ~(size - 1), cached_perm(rt, res[k], walks[k].access));
	}
	// Merged misses take the answer of the walk before them (the same 4 KiB page).
	for (size_t m = 0, k = 0; m < nmerged; m++) {
		const size_t i = merged[m];
		while (k + 1 < nw && who[k + 1] < i)
			k++;
		const WalkResult &w = res[k];
		out[i] = w;
		out[i].reads = 0;
		out[i].path[0] = out[i].path[1] = pgtable::TableRef{};
		if (w.ok())
			out[i].out = w.out - (walks[k].iova & 0xfff) + (queries[i].iova & 0xfff);
	}
	stats_.misses -= nmerged;
	stats_.hits += nmerged;
}

/*
 * Nested: res[k] holds stage 1's answer (its output is an IPA). Map each IPA through the
 * stage-2 domain's own entries, walking stage 2 (resumed from its cached tables) for the
 * misses, and combine: the smaller page, the permissions both stages grant.
 */
void Shard::resolve_stage2(const CachedRoute &r, const pgtable::Translation &x, size_t n,
			   const uint64_t *ipa, const uint8_t *access, WalkResult *res)
{
	const pgtable::Stage &s2 = *r.route.s2;
	Probe probes[kChunk];
	uint64_t host[kChunk];
	uint8_t perm[kChunk];
	for (size_t k = 0; k < n; k++) {
		const bool want = res[k].ok() && cacheable(access[k]);
		probes[k] = {ipa[k], want ? r.s2_ctx : uint16_t{0}};
	}
	lookup_bulk(probes, n, host, perm);

	Scratch<WalkRequest, kChunk> walks;
	size_t who[kChunk];
	size_t nw = 0;
	for (size_t k = 0; k < n; k++) {
		if (!res[k].ok())
			continue;
		if (host[k] != 0 && (access[k] & 7 & ~perm[k]) == 0) {
			stats_.s2_hits++;
			res[k].out = host[k];
			res[k].page_size = std::min(res[k].page_size,
						    uint64_t{1} << kSizeShift[perm[k] >> 4]);
			res[k].perm &= perm[k] & 7;
			continue;
		}
		stats_.s2_misses++;
		WalkRequest &w = walks[nw];
		w = pgtable::walk_request(ipa[k], access[k]);
		w.start = walk_lookup(r.s2_ctx, s2, ipa[k]);
		who[nw++] = k;
	}
	if (nw == 0)
		return;
	pgtable::Translation x2;
	x2.mem = x.mem;
	x2.s1 = s2;
	Scratch<WalkResult, kChunk> s2res;
	pgtable::walk_burst(x2, walks.data(), s2res.data(), nw);
	stats_.walks += nw;
	for (size_t j = 0; j < nw; j++) {
		const WalkResult &t = s2res[j];
		WalkResult &s1 = res[who[j]];
		stats_.walk_reads += t.reads;
		fill_path(r.s2_ctx, s2, walks[j], t);
		s1.reads = static_cast<uint8_t>(s1.reads + t.reads);
		if (!t.ok()) {
			s1.out = 0;
			s1.page_size = 0;
			s1.perm = 0;
			s1.fault = t.fault;
			s1.stage = t.stage;
			s1.level = t.level;
			continue;
		}
		if (cacheable(walks[j].access)) {
			const uint64_t size = t.page_size;
			fill(r.s2_ctx, walks[j].iova, static_cast<unsigned>(std::countr_zero(size)),
			     t.out & ~(size - 1), cached_perm(r.route, t, walks[j].access));
		}
		s1.out = t.out;
		s1.page_size = std::min(s1.page_size, t.page_size);
		s1.perm &= t.perm;
	}
}

} // namespace iodp::iotlb
