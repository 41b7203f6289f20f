/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Guest-physical memory: the only way iodp reads or writes memory a guest controls.
 *
 * A GuestMemory is a set of non-overlapping regions (guest-physical base, size, host pointer).
 * Page-table walks read every table entry through it, so a table pointer a guest forged can
 * never make iodp touch host memory outside the regions: an access that is not wholly inside
 * one region fails and touches nothing.
 *
 * Thread safety: lookups and reads are const and may run on many threads at once; adding or
 * removing regions must not race with them (the control plane changes the map while workers
 * are quiescent).
 */

#include <iodp/status.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <endian.h>
#include <map>
#include <memory>
#include <span>
#include <vector>

namespace iodp {

struct GuestRegion {
	uint64_t gpa = 0;      ///< guest-physical base
	uint64_t size = 0;     ///< bytes, > 0
	std::byte *host = nullptr; ///< host address of gpa

	uint64_t last() const { return gpa + (size - 1); }
};

/**
 * A counted set of 4 KiB pages that any number of threads may test without locks while one
 * writer (at a time) adds and removes ranges: the host memory an IOAS maps, as walkers see it.
 *
 * A page added twice (two mappings of the same host memory) stays until it is removed twice.
 * Readers test a bit in a radix tree (root -> two interior levels -> a 4 KiB bitmap leaf per
 * 128 MiB); the tree's nodes are published with release stores and never freed before the
 * set itself, so a reader never follows a dangling pointer. The bit is the first add of a
 * page; only further adds of pages already in the set are counted, in a map of ranges on
 * the writer side. add() and remove() cost a few loads per 64 pages, plus O(log m) in the
 * m ranges added more than once (none, usually).
 *
 * Ordering: a page removed may still test present to a reader that started before the
 * removal; callers that free the memory wait a grace period first (as for any RCU reader).
 */
class PageSet {
public:
	static constexpr unsigned kPageShift = 12;

	PageSet();
	~PageSet();
	PageSet(const PageSet &) = delete;
	PageSet &operator=(const PageSet &) = delete;

	/** Whether every page of [addr, addr + len) is in the set (len > 0). Any thread. */
	bool contains(uint64_t addr, uint64_t len) const
	{
		const uint64_t first = addr >> kPageShift;
		const uint64_t last = (addr + (len - 1)) >> kPageShift;
		if (addr + (len - 1) < addr)
			return false;
		for (uint64_t p = first;; p++) {
			if (!has(p))
				return false;
			if (p == last)
				return true;
		}
	}

	/**
	 * Add [addr, addr + len): page-aligned, len > 0, no wrap (EINVAL otherwise). ENOMEM when
	 * a node cannot be allocated; the set is unchanged then. Writer side only.
	 */
	Status add(uint64_t addr, uint64_t len);
	/** Undo one add() of exactly this range (or of ranges that make it up). Writer side. */
	void remove(uint64_t addr, uint64_t len);
	/** Pages in the set. Writer side. */
	uint64_t pages() const { return pages_; }
	/** Ranges of pages added more than once, with the same count (for tests). */
	size_t segments() const { return cover_size_; }

private:
	static constexpr unsigned kLeafBits = 15;  // pages per leaf: 2^15 (a 4 KiB bitmap)
	static constexpr unsigned kInnerBits = 12; // children per interior node
	static constexpr unsigned kRootBits = 52 - kLeafBits - 2 * kInnerBits;

	struct Leaf {
		std::atomic<uint64_t> word[(1u << kLeafBits) / 64] = {};
	};
	struct Inner {
		std::atomic<void *> child[1u << kInnerBits] = {};
	};

	bool has(uint64_t page) const
	{
		// Acquire: a node's zeroed contents are visible before the pointer to it.
		const auto *l2 = static_cast<const Inner *>(
			root_[(page >> (kLeafBits + 2 * kInnerBits)) & ((1u << kRootBits) - 1)]
				.load(std::memory_order_acquire));
		if (l2 == nullptr)
			return false;
		const auto *l1 = static_cast<const Inner *>(
			l2->child[(page >> (kLeafBits + kInnerBits)) & ((1u << kInnerBits) - 1)]
				.load(std::memory_order_acquire));
		if (l1 == nullptr)
			return false;
		const auto *leaf = static_cast<const Leaf *>(
			l1->child[(page >> kLeafBits) & ((1u << kInnerBits) - 1)].load(
				std::memory_order_acquire));
		if (leaf == nullptr)
			return false;
		// Relaxed: the table entry that led the reader here was loaded with acquire after
		// the writer set this bit (add() runs before the mapping is put in any table).
		const uint64_t w = leaf->word[(page & ((1u << kLeafBits) - 1)) >> 6].load(
			std::memory_order_relaxed);
		return (w >> (page & 63)) & 1;
	}
	Leaf *leaf_for(uint64_t page, bool create);
	/** Set (or clear) the bits of [first, last]; the pages already set go to more_adds(). */
	void set_bits(uint64_t first, uint64_t last, bool on);
	void more_adds(uint64_t first, uint64_t last);
	void split_at(uint64_t page);
	void merge_around(uint64_t first, uint64_t last);

	std::unique_ptr<std::atomic<void *>[]> root_;
	/**
	 * Writer side: disjoint page ranges [first, last] in the set with how many adds cover
	 * them beyond the first (which is the bit).
	 */
	struct Segment {
		uint64_t last;
		uint64_t count;
	};
	std::unique_ptr<std::map<uint64_t, Segment>> cover_;
	size_t cover_size_ = 0;
	uint64_t pages_ = 0;
};

class GuestMemory {
public:
	/**
	 * Add a region. Fails with EINVAL (zero size, null host pointer, gpa + size wraps) or
	 * EEXIST (overlaps a region already in the map); the map is unchanged on failure.
	 */
	Status add_region(uint64_t gpa, uint64_t size, void *host);
	/** Remove the region that starts at @p gpa; ENOENT if none does. */
	Status remove_region(uint64_t gpa);

	/** The region containing @p gpa, or nullptr. */
	const GuestRegion *find(uint64_t gpa) const
	{
		// Few regions in practice: a linear scan beats a binary search up to a handful.
		if (regions_.size() <= kLinearScanMax) {
			for (const GuestRegion &r : regions_)
				if (gpa - r.gpa < r.size)
					return &r;
			return nullptr;
		}
		return find_sorted(gpa);
	}

	/**
	 * Host address of [gpa, gpa + len) when the whole range lies inside one region,
	 * else nullptr. @p len must be > 0.
	 */
	std::byte *translate(uint64_t gpa, uint64_t len) const
	{
		const GuestRegion *r = find(gpa);
		if (r == nullptr || len - 1 > r->last() - gpa)
			return pages_ != nullptr && pages_->contains(gpa, len)
				       ? reinterpret_cast<std::byte *>(static_cast<uintptr_t>(gpa))
				       : nullptr;
		return r->host + (gpa - r->gpa);
	}

	/**
	 * Beyond the regions, read the pages of @p pages at their own addresses (an identity
	 * map of host memory, as a paging HWPT's walks see the memory its IOAS maps). The set
	 * is shared and changes under readers; it must outlive this map. nullptr: none.
	 */
	void set_identity_pages(const PageSet *pages) { pages_ = pages; }

	/** Read a little-endian 64-bit value; false (and *out untouched) if out of bounds. */
	bool read_u64(uint64_t gpa, uint64_t *out) const
	{
		const std::byte *p = translate(gpa, 8);
		if (p == nullptr)
			return false;
		*out = load_le64(p);
		return true;
	}

	/** Write a little-endian 64-bit value; false (nothing written) if out of bounds. */
	bool write_u64(uint64_t gpa, uint64_t value) const
	{
		std::byte *p = translate(gpa, 8);
		if (p == nullptr)
			return false;
		store_le64(p, value);
		return true;
	}

	/** Copy bytes in or out; false (nothing copied) unless wholly inside one region. */
	bool read(uint64_t gpa, void *dst, uint64_t len) const;
	bool write(uint64_t gpa, const void *src, uint64_t len) const;

	std::span<const GuestRegion> regions() const { return regions_; }

	/**
	 * Little-endian load/store of an 8-byte-aligned table entry at a host address that
	 * translate() gave. Single-copy atomic, as hardware reads entries: walkers read tables
	 * while the control side edits them. The store releases (a new table's entries are
	 * visible before the pointer to it) and the load acquires; both are plain moves on x86.
	 */
	static uint64_t load_le64(const std::byte *p)
	{
		const std::atomic_ref<uint64_t> entry(
			*const_cast<uint64_t *>(reinterpret_cast<const uint64_t *>(p)));
		return le64toh(entry.load(std::memory_order_acquire));
	}
	static void store_le64(std::byte *p, uint64_t v)
	{
		std::atomic_ref<uint64_t> entry(*reinterpret_cast<uint64_t *>(p));
		entry.store(htole64(v), std::memory_order_release);
	}
	/**
	 * Atomically set bits in an 8-byte-aligned entry, as hardware sets accessed/dirty flags:
	 * the guest may be writing the same entry, so a plain store could lose its update.
	 */
	static void atomic_or_le64(std::byte *p, uint64_t bits)
	{
		std::atomic_ref<uint64_t> entry(*reinterpret_cast<uint64_t *>(p));
		// Relaxed: the flag is a hint to the guest, ordered by nothing else we do.
		entry.fetch_or(htole64(bits), std::memory_order_relaxed);
	}

private:
	static constexpr size_t kLinearScanMax = 8;
	const GuestRegion *find_sorted(uint64_t gpa) const;

	std::vector<GuestRegion> regions_; // sorted by gpa
	const PageSet *pages_ = nullptr;
};

/** Where a GuestRam block came from. */
enum class RamBacking : uint8_t {
	dpdk,      ///< DPDK memory (hugepages when the EAL has them)
	hugetlb,   ///< an anonymous MAP_HUGETLB mapping of 2 MiB pages
	anonymous, ///< ordinary 4 KiB pages
	/**
	 * ordinary memory at a 2 MiB-aligned address advised MADV_HUGEPAGE: the kernel backs
	 * it with transparent 2 MiB pages where it can (the fallback when hugepages run out)
	 */
	thp,
};

const char *ram_backing_name(RamBacking backing);

/**
 * An owned, zero-filled block of host memory to serve as guest RAM.
 *
 * allocate() prefers hugepages: DPDK memory when an EAL is running, else a MAP_HUGETLB
 * mapping, else 2 MiB-aligned ordinary memory advised for transparent hugepages, else plain
 * ordinary pages; backing() says which one it got so callers can report it.
 */
class GuestRam {
public:
	enum class Source : uint8_t { automatic, dpdk, hugetlb, anonymous };

	GuestRam() = default;
	GuestRam(GuestRam &&other) noexcept { *this = std::move(other); }
	GuestRam &operator=(GuestRam &&other) noexcept;
	GuestRam(const GuestRam &) = delete;
	GuestRam &operator=(const GuestRam &) = delete;
	~GuestRam() { release(); }

	/**
	 * Allocate @p size bytes (> 0). With Source::automatic the first backing that works wins;
	 * an explicit source fails with ENOMEM (or ENODEV for DPDK without an EAL) instead of
	 * falling back.
	 */
	static Result<GuestRam> allocate(uint64_t size, Source source = Source::automatic);

	std::byte *data() const { return data_; }
	uint64_t size() const { return size_; }
	RamBacking backing() const { return backing_; }

private:
	void release();

	std::byte *data_ = nullptr;
	uint64_t size_ = 0;
	uint64_t mapped_size_ = 0;
	RamBacking backing_ = RamBacking::anonymous;
};

/** True when a DPDK EAL has been initialised in this process. */
bool dpdk_eal_running();

} // namespace iodp
