/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/iotlb.h>

#include <rte_prefetch.h>

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

Result<Shard> Shard::create(const ShardConfig &config)
{
	if (config.entries > (1u << 30))
		return Status::error(-EINVAL, "iotlb shard: %u entries is more than 2^30",
				     config.entries);
	Shard sh;
	const uint32_t want = std::max<uint32_t>(64, config.entries);
	sh.sets_ = std::bit_ceil(want) / kWays;
	sh.set_bits_ = static_cast<unsigned>(std::countr_zero(sh.sets_));
	// Hugepage-backed when the machine has them: a shard is looked up at random.
	Result<GuestRam> ram = GuestRam::allocate(size_t{sh.sets_} * sizeof(Set));
	if (!ram)
		return Status::error(-ENOMEM, "iotlb shard: %s", ram.status().message().c_str());
	sh.ram_ = std::move(*ram);
	sh.sets_ptr_ = reinterpret_cast<Set *>(sh.ram_.data());
	sh.contexts_.emplace_back(); // handle 0: a context that never hits
	return sh;
}

void Shard::new_key(Context &c)
{
	if (next_key_ > 0xffff) {
		// Keys ran out: forget everything once and hand out keys from 1 again.
		std::memset(sets_ptr_, 0, size_t{sets_} * sizeof(Set));
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

uint16_t Shard::context(uint32_t domain, uint32_t asid, uint32_t pasid)
{
	const auto tag = std::make_tuple(domain, asid, pasid);
	auto it = by_tag_.find(tag);
	if (it != by_tag_.end())
		return it->second;
	const auto h = static_cast<uint16_t>(contexts_.size());
	Context c;
	c.domain = domain;
	c.asid = asid;
	c.pasid = pasid;
	contexts_.push_back(c);
	new_key(contexts_.back());
	by_tag_.emplace(tag, h);
	return h;
}

bool Shard::probe_one(const Context &c, uint64_t iova, uint64_t *host, uint8_t *perm)
{
	for (unsigned i = 0; i < c.n_sizes; i++) {
		const unsigned cls = c.largest_first[i];
		const unsigned shift = kSizeShift[cls];
		const uint64_t base = iova & ~((1ull << shift) - 1);
		Set &s = sets_ptr_[set_of(iova >> shift, c.key)];
		const uint64_t k = make_key(base >> 12, c.key, cls);
		for (unsigned w = 0; w < kWays; w++) {
			if (s.key[w] != k)
				continue;
			const uint64_t v = s.value[w];
			*host = (v & ~0xfffull) + (iova - base);
			*perm = static_cast<uint8_t>(v & 7);
			if (w > 0) { // climb one way: hot entries end up in front
				std::swap(s.key[w], s.key[w - 1]);
				std::swap(s.value[w], s.value[w - 1]);
			}
			return true;
		}
	}
	return false;
}

size_t Shard::lookup_bulk(const Probe *probes, size_t n, uint64_t *host, uint8_t *perm)
{
	// Prefetch the set of the context's first page size this far ahead of the compare.
	constexpr size_t kAhead = 8;
	auto prefetch = [&](size_t i) {
		const Context &c = contexts_[probes[i].ctx];
		if (c.n_sizes == 0)
			return;
		const unsigned shift = kSizeShift[c.largest_first[0]];
		rte_prefetch0(&sets_ptr_[set_of(probes[i].iova >> shift, c.key)]);
	};
	for (size_t i = 0; i < n && i < kAhead; i++)
		prefetch(i);
	size_t hits = 0;
	for (size_t i = 0; i < n; i++) {
		if (i + kAhead < n)
			prefetch(i + kAhead);
		const Context &c = contexts_[probes[i].ctx];
		host[i] = 0;
		perm[i] = 0;
		if (probes[i].iova < kMaxCachedIova && probe_one(c, probes[i].iova, &host[i], &perm[i]))
			hits++;
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
	const uint64_t v = (host_page & ~((1ull << page_shift) - 1)) | (perm & 7);
	unsigned w = kWays - 1;
	for (unsigned i = 0; i < kWays; i++) {
		if (s.key[i] == k || s.key[i] == 0) { // refresh in place, or take a free way
			w = i;
			break;
		}
	}
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

void Shard::flush_all()
{
	std::memset(sets_ptr_, 0, size_t{sets_} * sizeof(Set));
	for (Context &c : contexts_) {
		c.size_mask = 0;
		c.n_sizes = 0;
	}
	stats_.full_flushes++;
}

void Shard::apply(const inval::Descriptor &d)
{
	using namespace inval;
	if (d.op != Op::invalidate || !(d.targets & kTargetIotlb))
		return;
	if ((d.match & (kMatchDomain | kMatchAsid | kMatchPasid)) == 0) {
		flush_all(); // no tag to match on (device-only matches included): everything
		return;
	}
	for (size_t h = 1; h < contexts_.size(); h++) {
		const Context &c = contexts_[h];
		if (((d.match & kMatchDomain) && c.domain != d.domain) ||
		    ((d.match & kMatchAsid) && c.asid != d.asid) ||
		    ((d.match & kMatchPasid) && c.pasid != d.pasid))
			continue;
		// A stage-2 (IPA) range says nothing about which IOVAs moved: drop them all.
		if ((d.match & kMatchRange) && !(d.match & kMatchStage2))
			flush_range(static_cast<uint16_t>(h), d.addr, d.size);
		else
			flush_context(static_cast<uint16_t>(h));
	}
}

} // namespace iodp::iotlb
