/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Building page tables in any format: an engine-managed table for an IOAS, a guest stage 1
 * in tests, a memory image for iodp-xlate.
 *
 * The builder maps with the largest page that fits (alignment of IOVA and output address,
 * and what the format allows at each level), splits a block when an unmap covers only part
 * of it, and frees tables that become empty (never the root).
 *
 * Thread safety: one builder per table, used from one thread. Frees are immediate: a caller
 * with concurrent walkers must defer reuse of freed pages past a grace period itself.
 */

#include <iodp/pgtable.h>

#include <functional>
#include <utility>
#include <vector>

namespace iodp::pgtable {

/** Permissions to map with; combine with |. */
inline constexpr uint8_t kMapRead = 1;
inline constexpr uint8_t kMapWrite = 2;
inline constexpr uint8_t kMapExec = 4;
/** Unprivileged requests may use it (x86 U/S, Arm AP[1]); stage 1 only. */
inline constexpr uint8_t kMapUser = 8;

/**
 * Pages that hold tables: a block of host memory that walkers see at @p base in the table
 * address space (guest-physical for a single stage or a stage 2; intermediate-physical for
 * a nested stage 1, whose stage 2 must map that range onto the same memory).
 */
class TablePool {
public:
	TablePool() = default;
	/**
	 * @p host must stay valid and zeroed where unused; @p page is one table in bytes (the
	 * granule, except for Format::mock: 4 KiB tables of 2 KiB pages).
	 * The bookkeeping for every page is allocated here (about 40 bytes a page), so that
	 * alloc(), free() and the held pages' release allocate nothing: an unmap that has
	 * begun cannot run out of memory halfway.
	 */
	TablePool(uint64_t base, std::byte *host, uint64_t size, uint64_t page);

	/** @p bytes zeroed bytes aligned to their own size (rounded up to a page); ENOMEM. */
	Result<uint64_t> alloc(uint64_t bytes);
	/** Return pages from alloc(); they are zeroed for reuse (or held: set_deferred). */
	void free(uint64_t addr, uint64_t bytes);
	/**
	 * Hold freed pages instead of reusing them, untouched, until release(): walkers that
	 * run concurrently with unmaps may still be reading them until a grace period ends.
	 */
	void set_deferred(bool on) { deferred_ = on; }
	/**
	 * Give the pages held since the last seal to the grace period numbered @p gen (numbers
	 * grow from 1; grace periods end in the order they begin).
	 */
	void seal_held(uint64_t gen);
	/** Make the pages sealed with a number up to @p gen reusable (zeroed). */
	void release_sealed(uint64_t gen);
	/** Whether some freed pages are not reusable yet (held or sealed). */
	bool has_held() const { return !held_.empty(); }
	/** The addresses of the tables freed and not yet reusable (held or sealed). */
	std::vector<uint64_t> held_tables() const;
	/** Host address of [addr, addr + len) if it lies in the pool, else nullptr. */
	std::byte *host(uint64_t addr, uint64_t len) const;

	uint64_t base() const { return base_; }
	uint64_t page_size() const { return page_; }
	uint64_t pages_in_use() const { return in_use_; }
	/** Single pages alloc() can still hand out (reused or never used). */
	uint64_t pages_free() const { return free_pages_.size() + (size_ - bump_) / page_; }
	/**
	 * Present entries in the table at @p addr (an address alloc() returned): the builder's
	 * bookkeeping, so that "is this table empty" costs O(1) instead of a scan.
	 */
	uint16_t &live(uint64_t addr) { return live_[(addr - base_) / page_]; }

private:
	uint64_t base_ = 0;
	std::byte *host_ = nullptr;
	uint64_t size_ = 0;
	uint64_t page_ = 4096;
	uint64_t bump_ = 0; // offset of the first never-used page
	uint64_t in_use_ = 0;
	std::vector<uint64_t> free_pages_;
	bool deferred_ = false;
	struct Held {
		uint64_t addr;
		uint64_t bytes;
		uint64_t gen; ///< 0 until sealed
	};
	std::vector<Held> held_; // sealed ones first, in the order of their grace periods
	size_t sealed_ = 0;
	void release(uint64_t addr, uint64_t bytes);
	std::vector<uint16_t> live_; // per page; a multi-page table counts in its first
};

class TableBuilder {
public:
	TableBuilder() = default;

	/**
	 * A new, empty table in @p config's format (config.root is ignored: the root comes from
	 * @p pool, whose page size must be Stage::table_page_bytes()). @p pool must
	 * outlive the builder.
	 */
	static Result<TableBuilder> create(const TableConfig &config, TablePool *pool);

	/**
	 * Map [iova, iova + size) to [oa, oa + size). All three granule-aligned, size > 0, the
	 * range inside the format's input range, @p perm encodable in the format (stage 1 needs
	 * read; VT-d second stage read or write; any non-empty set on Arm stage 2). EEXIST if any
	 * part is already mapped (nothing is changed then); ENOMEM when the pool runs dry.
	 */
	Status map(uint64_t iova, uint64_t oa, uint64_t size, uint8_t perm);

	/**
	 * Leaves no larger than @p bytes from now on (0: any size the format allows); iommufd's
	 * HUGE_PAGES option turned off is max_leaf = the granule.
	 */
	void set_max_leaf(uint64_t bytes) { max_leaf_ = bytes; }

	/** Whether the format has a dirty bit that hardware (and the walker) sets on writes. */
	bool tracks_dirty() const;

	/**
	 * Set the dirty bit of the leaf that maps @p iova, as a device write would, whatever
	 * the leaf's permissions (a test hook: the kernel selftest's IOMMU_TEST_OP_DIRTY).
	 * false when nothing maps @p iova; EOPNOTSUPP if the format has no dirty bit.
	 */
	Result<bool> mark_dirty(uint64_t iova);

	/**
	 * Report each leaf in [iova, iova + size) whose dirty bit is set as on_dirty(leaf_iova,
	 * leaf_size) (a block reports its whole extent), clearing the bit unless @p keep is set.
	 * EOPNOTSUPP if the format has no dirty bit.
	 */
	Status harvest_dirty(uint64_t iova, uint64_t size, bool keep,
			     const std::function<void(uint64_t, uint64_t)> &on_dirty);

	/**
	 * Unmap whatever is mapped in [iova, iova + size) (granule-aligned), splitting blocks
	 * that stick out of the range. @p unmapped, if given, receives the bytes that were mapped.
	 * All or nothing: ENOMEM, with the table unchanged, when the splits need more table
	 * pages than the pool has (unmap_needs() says how many beforehand).
	 */
	Status unmap(uint64_t iova, uint64_t size, uint64_t *unmapped = nullptr);
	/** Table pages unmap(iova, size) would allocate to split blocks (0 almost always). */
	uint64_t unmap_needs(uint64_t iova, uint64_t size) const;

	uint64_t root() const { return stage_.root; }
	const Stage &stage() const { return stage_; }
	/** The config to walk this table with (root filled in). */
	TableConfig config() const { return config_; }

private:
	TableBuilder(const TableConfig &config, const Stage &stage, TablePool *pool)
		: config_(config), stage_(stage), pool_(pool)
	{
	}

	TableConfig config_;
	Stage stage_;
	TablePool *pool_ = nullptr;
	uint64_t max_leaf_ = 0;
};

} // namespace iodp::pgtable
