/* SPDX-License-Identifier: BSD-3-Clause */
#include "formats.h"

#include <iodp/pgtable_builder.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstring>

namespace iodp::pgtable {

using namespace detail;

static_assert(kMapRead == kMapR && kMapWrite == kMapW && kMapExec == kMapX &&
	      kMapUser == detail::kMapU);

/* ---------------------------------------------------------------------------------------- */

TablePool::TablePool(uint64_t base, std::byte *host, uint64_t size, uint64_t page)
	: base_(base), host_(host), size_(size - size % page), page_(page), live_(size_ / page_)
{
	// Neither list can hold a page twice (held pages are neither free nor in use).
	free_pages_.reserve(size_ / page_);
	held_.reserve(size_ / page_);
}

Result<uint64_t> TablePool::alloc(uint64_t bytes)
{
	const uint64_t n = std::max<uint64_t>(1, (bytes + page_ - 1) / page_);
	if (n == 1 && !free_pages_.empty()) {
		const uint64_t addr = free_pages_.back();
		free_pages_.pop_back();
		in_use_++;
		return addr;
	}
	// Multi-page blocks (concatenated stage-2 start tables) are aligned to their size.
	const uint64_t span = n * page_;
	const uint64_t start = (base_ + bump_ + span - 1) / span * span - base_;
	if (start + span > size_ || start + span < start)
		return Status::error(-ENOMEM, "table pool 0x{:x}+0x{:x}"
				     ": no room for a 0x{:x}-byte table", base_, size_, span);
	for (uint64_t skipped = bump_; skipped < start; skipped += page_)
		free_pages_.push_back(base_ + skipped);
	bump_ = start + span;
	in_use_ += n;
	return base_ + start;
}

void TablePool::free(uint64_t addr, uint64_t bytes)
{
	const uint64_t n = std::max<uint64_t>(1, (bytes + page_ - 1) / page_);
	in_use_ -= n;
	if (deferred_)
		held_.push_back({addr, n * page_, 0});
	else
		release(addr, n * page_);
}

void TablePool::seal_held(uint64_t gen)
{
	for (; sealed_ < held_.size(); sealed_++)
		held_[sealed_].gen = gen;
}

std::vector<uint64_t> TablePool::held_tables() const
{
	std::vector<uint64_t> v;
	for (const Held &h : held_)
		v.push_back(h.addr);
	return v;
}

void TablePool::release_sealed(uint64_t gen)
{
	size_t n = 0;
	for (; n < sealed_ && held_[n].gen <= gen; n++)
		release(held_[n].addr, held_[n].bytes);
	held_.erase(held_.begin(), held_.begin() + static_cast<ptrdiff_t>(n));
	sealed_ -= n;
}

void TablePool::release(uint64_t addr, uint64_t bytes)
{
	std::memset(host(addr, bytes), 0, bytes);
	for (uint64_t off = 0; off < bytes; off += page_) {
		live(addr + off) = 0;
		free_pages_.push_back(addr + off);
	}
}

std::byte *TablePool::host(uint64_t addr, uint64_t len) const
{
	const uint64_t off = addr - base_;
	if (off >= size_ || len > size_ - off)
		return nullptr;
	return host_ + off;
}

/* ---------------------------------------------------------------------------------------- */

namespace {

/** The recursive work of one builder, for one format policy. */
template <class P> class Editor {
public:
	Editor(const Stage &st, TablePool &pool, uint64_t max_leaf = 0)
		: st_(st), pool_(pool), max_leaf_(max_leaf)
	{
	}

	bool any_mapped(uint64_t table, int h, uint64_t iova, uint64_t size)
	{
		while (size > 0) {
			const uint64_t chunk = chunk_of(h, iova, size);
			const uint64_t e = load(table, h, iova);
			const Decoded d = classify(e, h);
			if (d.kind == Kind::leaf)
				return true;
			if (d.kind == Kind::table && any_mapped(d.addr, h - 1, iova, chunk))
				return true;
			iova += chunk;
			size -= chunk;
		}
		return false;
	}

	Status map(uint64_t table, int h, uint64_t iova, uint64_t oa, uint64_t size, uint8_t m)
	{
		while (size > 0) {
			const uint64_t entry_size = 1ull << st_.shift(h);
			std::byte *slot = entry(table, h, iova);
			const bool fits = ((iova | oa) & (entry_size - 1)) == 0 && size >= entry_size &&
					  (max_leaf_ == 0 || entry_size <= max_leaf_);
			if (h == 0 || (fits && P::block_allowed(h, st_))) {
				put(table, slot, h, P::make_leaf(oa, h, m, st_));
				iova += entry_size;
				oa += entry_size;
				size -= entry_size;
				continue;
			}
			const uint64_t chunk = chunk_of(h, iova, size);
			const Decoded d = classify(GuestMemory::load_le64(slot), h);
			uint64_t next = d.addr;
			if (d.kind != Kind::table) {
				Result<uint64_t> t = pool_.alloc(st_.table_bytes(h - 1));
				if (!t)
					return t.status();
				next = *t;
				put(table, slot, h, P::make_table(next, st_));
			}
			if (Status s = map(next, h - 1, iova, oa, chunk, m); !s)
				return s;
			iova += chunk;
			oa += chunk;
			size -= chunk;
		}
		return {};
	}

	/** Unmap in one table; true when the table is left empty. */
	Status unmap(uint64_t table, int h, uint64_t iova, uint64_t size, uint64_t &unmapped)
	{
		while (size > 0) {
			const uint64_t entry_size = 1ull << st_.shift(h);
			const uint64_t chunk = chunk_of(h, iova, size);
			std::byte *slot = entry(table, h, iova);
			const uint64_t e = GuestMemory::load_le64(slot);
			Decoded d = classify(e, h);
			if (d.kind == Kind::leaf && chunk == entry_size) {
				put(table, slot, h, 0);
				unmapped += chunk;
			} else if (d.kind != Kind::fault) {
				if (d.kind == Kind::leaf) {
					Result<uint64_t> t = split(d.addr, h, P::leaf_map_perm(e));
					if (!t)
						return t.status();
					put(table, slot, h, P::make_table(*t, st_));
					d.addr = *t;
				}
				if (Status s = unmap(d.addr, h - 1, iova, chunk, unmapped); !s)
					return s;
				if (pool_.live(d.addr) == 0) {
					put(table, slot, h, 0);
					pool_.free(d.addr, st_.table_bytes(h - 1));
				}
			}
			iova += chunk;
			size -= chunk;
		}
		return {};
	}

	template <class Fn> void harvest(uint64_t table, int h, uint64_t iova, uint64_t size,
					 bool keep, Fn &on_dirty)
	{
		while (size > 0) {
			const uint64_t entry_size = 1ull << st_.shift(h);
			const uint64_t chunk = chunk_of(h, iova, size);
			std::byte *slot = entry(table, h, iova);
			const uint64_t e = GuestMemory::load_le64(slot);
			const Decoded d = classify(e, h);
			if (d.kind == Kind::leaf && (e & P::kDirty)) {
				on_dirty(iova & ~(entry_size - 1), entry_size);
				if (!keep) {
					// Walkers may be setting A/D in the same entry right now.
					std::atomic_ref<uint64_t> ref(*reinterpret_cast<uint64_t *>(slot));
					ref.fetch_and(~htole64(P::kDirty), std::memory_order_relaxed);
				}
			} else if (d.kind == Kind::table) {
				harvest(d.addr, h - 1, iova, chunk, keep, on_dirty);
			}
			iova += chunk;
			size -= chunk;
		}
	}

	/** Set the dirty bit of the leaf mapping @p iova; false when none does. */
	bool mark_dirty(uint64_t table, int h, uint64_t iova)
	{
		for (;; h--) {
			std::byte *slot = entry(table, h, iova);
			const Decoded d = classify(GuestMemory::load_le64(slot), h);
			if (d.kind == Kind::fault)
				return false;
			if (d.kind == Kind::leaf) {
				// Walkers may be setting A/D in the same entry right now.
				std::atomic_ref<uint64_t> ref(*reinterpret_cast<uint64_t *>(slot));
				ref.fetch_or(htole64(P::kDirty), std::memory_order_relaxed);
				return true;
			}
			table = d.addr;
		}
	}

	/** Table pages unmap() would allocate for splits in [iova, iova + size). */
	uint64_t split_needs(uint64_t table, int h, uint64_t iova, uint64_t size) const
	{
		uint64_t need = 0;
		while (size > 0) {
			const uint64_t entry_size = 1ull << st_.shift(h);
			const uint64_t chunk = chunk_of(h, iova, size);
			const Decoded d = classify(load(table, h, iova), h);
			if (d.kind == Kind::leaf && chunk != entry_size)
				need += block_split_needs(h, iova, chunk);
			else if (d.kind == Kind::table)
				need += split_needs(d.addr, h - 1, iova, chunk);
			iova += chunk;
			size -= chunk;
		}
		return need;
	}

private:
	/**
	 * A block at @p h split for [iova, iova + size): one table of leaves one level down,
	 * then the same for each of those leaves the range covers only in part (at most two).
	 */
	uint64_t block_split_needs(int h, uint64_t iova, uint64_t size) const
	{
		uint64_t need = 1;
		const uint64_t child = 1ull << st_.shift(h - 1);
		while (size > 0) {
			const uint64_t chunk = chunk_of(h - 1, iova, size);
			if (chunk != child)
				need += block_split_needs(h - 1, iova, chunk);
			iova += chunk;
			size -= chunk;
		}
		return need;
	}

	/**
	 * Write entry @p v (a present entry, or 0) into @p slot of @p table and keep the
	 * table's count of present entries. An entry counts when it decodes as present, so
	 * accessed bits a walker ORed into an entry just cleared do not make it count.
	 */
	void put(uint64_t table, std::byte *slot, int h, uint64_t v)
	{
		const bool was = classify(GuestMemory::load_le64(slot), h).kind != Kind::fault;
		GuestMemory::store_le64(slot, v);
		const bool now = v != 0;
		if (was != now)
			pool_.live(table) = static_cast<uint16_t>(pool_.live(table) + (now ? 1 : -1));
	}

	/** A table one level down holding the same mapping as the block at @p h. */
	Result<uint64_t> split(uint64_t oa, int h, uint8_t m)
	{
		Result<uint64_t> t = pool_.alloc(st_.table_bytes(h - 1));
		if (!t)
			return t;
		const uint64_t child = 1ull << st_.shift(h - 1);
		std::byte *p = pool_.host(*t, st_.table_bytes(h - 1));
		const uint64_t n = 1ull << st_.index_bits(h - 1);
		for (uint64_t i = 0; i < n; i++)
			GuestMemory::store_le64(p + i * 8, P::make_leaf(oa + i * child, h - 1, m, st_));
		pool_.live(*t) = static_cast<uint16_t>(n);
		return t;
	}

	Decoded classify(uint64_t e, int h) const
	{
		uint32_t acc = P::kInitAccum;
		return P::decode(e, h, st_, acc);
	}

	/** Bytes from @p iova to the end of its entry at @p h, capped at @p size. */
	uint64_t chunk_of(int h, uint64_t iova, uint64_t size) const
	{
		const uint64_t entry_size = 1ull << st_.shift(h);
		return std::min(size, entry_size - (iova & (entry_size - 1)));
	}

	std::byte *entry(uint64_t table, int h, uint64_t iova) const
	{
		const uint64_t index = (iova >> st_.shift(h)) & ((1ull << st_.index_bits(h)) - 1);
		// Tables come from the pool, so their host addresses always exist.
		return pool_.host(table + index * 8, 8);
	}

	uint64_t load(uint64_t table, int h, uint64_t iova) const
	{
		return GuestMemory::load_le64(entry(table, h, iova));
	}

	const Stage &st_;
	TablePool &pool_;
	uint64_t max_leaf_ = 0;
};

/** The input range check the walker applies, for a whole range. */
bool range_in_format(const Stage &st, uint64_t iova, uint64_t size)
{
	const uint64_t last = iova + (size - 1);
	if (last < iova)
		return false;
	if (st.format == Format::x86_64_4l || st.format == Format::x86_64_5l) {
		// Both ends canonical and in the same half.
		auto canon = [&](uint64_t a) {
			const int64_t s = static_cast<int64_t>(a) << (64 - st.ias);
			return static_cast<uint64_t>(s >> (64 - st.ias)) == a;
		};
		return canon(iova) && canon(last) && ((iova ^ last) >> 63) == 0;
	}
	return (last >> st.ias) == 0;
}

} // namespace

Result<TableBuilder> TableBuilder::create(const TableConfig &config, TablePool *pool)
{
	TableConfig c = config;
	c.root = 0;
	Result<Stage> st = make_stage(c);
	if (!st)
		return st.status();
	// A pool page is one table below the start level: the granule, except in the mock
	// format (2 KiB pages, 4 KiB tables).
	const uint64_t table_page = st->table_page_bytes();
	if (pool == nullptr || pool->page_size() != table_page)
		return Status::error(-EINVAL, "{} builder: the table pool's page size must be "
				     "0x{:x} (one table)", format_name(c.format).data(),
				     table_page);
	Result<uint64_t> root = pool->alloc(st->table_bytes(st->start_height));
	if (!root)
		return root.status();
	c.root = *root;
	st->root = *root;
	return TableBuilder(c, *st, pool);
}

Status TableBuilder::map(uint64_t iova, uint64_t oa, uint64_t size, uint8_t perm)
{
	const char *name = format_name(stage_.format).data();
	const uint64_t g = 1ull << stage_.granule_shift;
	if (size == 0 || ((iova | oa | size) & (g - 1)))
		return Status::error(-EINVAL, "{} map 0x{:x}+0x{:x} -> 0x{:x}"
				     ": not aligned to the 0x{:x} granule (or empty)",
				     name, iova, size, oa, g);
	if (!range_in_format(stage_, iova, size))
		return Status::error(-EINVAL, "{} map 0x{:x}+0x{:x}"
				     ": outside the {}-bit input range", name, iova, size,
				     stage_.ias);
	if (oa + (size - 1) < oa || ((oa + (size - 1)) >> 52) != 0)
		return Status::error(-EINVAL, "{} map -> 0x{:x}+0x{:x}"
				     ": output beyond 52 bits", name, oa, size);
	if (format_stage(stage_.format) == 2 && (perm & kMapUser))
		return Status::error(-EINVAL, "{} map: user/privileged is a stage-1 attribute",
				     name);
	return with_policy(stage_.format, [&](auto p) -> Status {
		using P = decltype(p);
		if (!P::perm_encodable(perm))
			return Status::error(-EINVAL, "{} map 0x{:x}: permissions {} cannot be "
					     "expressed in this format", name, iova,
					     perm_letters(perm & 7).c_str());
		Editor<P> ed(stage_, *pool_, max_leaf_);
		if (ed.any_mapped(stage_.root, stage_.start_height, iova, size))
			return Status::error(-EEXIST, "{} map 0x{:x}+0x{:x}"
					     ": overlaps an existing mapping", name, iova, size);
		Status s = ed.map(stage_.root, stage_.start_height, iova, oa, size, perm);
		if (!s) {
			// Leave nothing half-mapped behind.
			uint64_t ignored = 0;
			(void)ed.unmap(stage_.root, stage_.start_height, iova, size, ignored);
		}
		return s;
	});
}

Status TableBuilder::unmap(uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	const char *name = format_name(stage_.format).data();
	const uint64_t g = 1ull << stage_.granule_shift;
	if (size == 0 || ((iova | size) & (g - 1)))
		return Status::error(-EINVAL, "{} unmap 0x{:x}+0x{:x}"
				     ": not aligned to the 0x{:x} granule (or empty)",
				     name, iova, size, g);
	if (!range_in_format(stage_, iova, size))
		return Status::error(-EINVAL, "{} unmap 0x{:x}+0x{:x}"
				     ": outside the {}-bit input range", name, iova, size,
				     stage_.ias);
	return with_policy(stage_.format, [&](auto p) -> Status {
		Editor<decltype(p)> ed(stage_, *pool_);
		// All or nothing: every page the splits need is there before anything changes.
		const uint64_t need = ed.split_needs(stage_.root, stage_.start_height, iova, size);
		if (need > pool_->pages_free())
			return Status::error(-ENOMEM, "{} unmap 0x{:x}+0x{:x}"
					     ": splitting blocks needs {} table page(s), "
					     "the pool has {}", name, iova, size, need,
					     pool_->pages_free());
		uint64_t done = 0;
		Status s = ed.unmap(stage_.root, stage_.start_height, iova, size, done);
		if (unmapped != nullptr)
			*unmapped = done;
		return s;
	});
}

uint64_t TableBuilder::unmap_needs(uint64_t iova, uint64_t size) const
{
	if (size == 0 || !range_in_format(stage_, iova, size))
		return 0; // unmap() refuses it without allocating
	return with_policy(stage_.format, [&](auto p) -> uint64_t {
		Editor<decltype(p)> ed(stage_, *pool_);
		return ed.split_needs(stage_.root, stage_.start_height, iova, size);
	});
}

bool TableBuilder::tracks_dirty() const
{
	return with_policy(stage_.format, [](auto p) { return decltype(p)::kDirty != 0; });
}

Result<bool> TableBuilder::mark_dirty(uint64_t iova)
{
	if (!tracks_dirty())
		return Status::error(-EOPNOTSUPP, "{}: the format has no dirty bit",
				     format_name(stage_.format).data());
	if (!range_in_format(stage_, iova, 1))
		return false;
	return with_policy(stage_.format, [&](auto p) {
		Editor<decltype(p)> ed(stage_, *pool_);
		return ed.mark_dirty(stage_.root, stage_.start_height, iova);
	});
}

Status TableBuilder::harvest_dirty(uint64_t iova, uint64_t size, bool keep,
				   const std::function<void(uint64_t, uint64_t)> &on_dirty)
{
	const char *name = format_name(stage_.format).data();
	if (!tracks_dirty())
		return Status::error(-EOPNOTSUPP, "{}: the format has no dirty bit", name);
	if (size == 0 || !range_in_format(stage_, iova, size))
		return Status::error(-EINVAL, "{} dirty read 0x{:x}+0x{:x}"
				     ": outside the {}-bit input range (or empty)", name, iova,
				     size, stage_.ias);
	with_policy(stage_.format, [&](auto p) {
		Editor<decltype(p)> ed(stage_, *pool_);
		ed.harvest(stage_.root, stage_.start_height, iova, size, keep, on_dirty);
	});
	return {};
}

} // namespace iodp::pgtable
