/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/* Private state of a Ctx, shared by the files of lib/ctl. Every function expects the lock. */

#include "objects.h"

#include <iodp/inval.h>

#include <mutex>

namespace iodp::ctl {

/** A range some object keeps out of an IOAS, with who keeps it (for messages). */
struct Reserved {
	IovaRange range;
	std::string owner;
};

// Hidden: its methods are lib/ctl's own, not part of libiodp.so's ABI (packaging/libiodp.map).
struct [[gnu::visibility("hidden")]] Ctx::Impl {
	CtxConfig cfg;
	mutable std::mutex lock;
	std::map<uint32_t, std::unique_ptr<Object>> objects;
	uint32_t next_id = 1;
	std::map<uint32_t, std::vector<Device *>> groups;
	uint32_t next_group = 1;
	std::map<uint32_t, uint32_t> vpasid_to_ppasid;
	std::vector<Binding *> parked;
	std::deque<FaultEvent> events;
	uint64_t events_lost = 0;
	std::function<void(const inval::Descriptor &)> sink;
	std::function<void(uint32_t, const inval::Descriptor &)> device_tlb;
	std::unique_ptr<iotlb::Coherence> coherence;
	bool sync_due = false;     ///< something was posted or retired under the lock
	/** Invalidations a SyncBatch holds (posted by its sync()), merged where they touch. */
	std::vector<inval::Descriptor> held;
	bool pages_held = false;   ///< an unmap left table pages waiting for a grace period
	uint8_t rlimit_mode = 0;   ///< IOMMU_OPTION RLIMIT_MODE as last set (0: user, 1: mm)
	/**
	 * Every binding's route, for workers to read without the lock (published_route()):
	 * rebuilt under the lock by each config invalidation before workers hear of it, stored
	 * with release, the old table freed after the grace period, as the engine publishes
	 * its poll lists.
	 */
	struct RouteTable {
		std::vector<std::pair<uint64_t, iotlb::Route>> routes; ///< by (device << 32 | PASID)
		/**
		 * Devices whose SSIDs name CDs (SMMUv3), by device id, with their nested HWPT:
		 * a worker reads the CD itself, as the SMMU does (published_route()).
		 */
		std::vector<std::pair<uint32_t, const HwptNested *>> lazy;
	};
	std::atomic<const RouteTable *> routes{nullptr};
	/*
	 * Made ahead by reserve(), so that a call, once it changes state, cannot run out of
	 * memory in what follows (publishing routes, retiring, the end-of-call sync's sync).
	 */
	std::vector<std::unique_ptr<RouteTable>> spare_routes;
	iotlb::Coherence::RetireSlots retire_slots;
	uint64_t table_gen = 0; ///< grace periods given table pages (TablePool::seal_held)

	/**
	 * Every public call starts with one: it takes the context's lock, and when the call
	 * posted invalidations or retired memory, its destructor lets the lock go and then
	 * waits for every worker to pass a quiescent state (a worker resolving a route needs
	 * the lock to get there), so the call returns only after the grace period: nothing
	 * it removed can still be answered. Hence the name, at the top of each call.
	 */
	class LockThenSyncWorkers {
	public:
		explicit LockThenSyncWorkers(Impl &impl) : impl_(impl), lock_(impl.lock) {}
		~LockThenSyncWorkers();
		LockThenSyncWorkers(const LockThenSyncWorkers &) = delete;
		LockThenSyncWorkers &operator=(const LockThenSyncWorkers &) = delete;

	private:
		Impl &impl_;
		std::unique_lock<std::mutex> lock_;
	};

	/**
	 * Allocate what the rest of a call needs once it starts changing state: room for
	 * @p notifies invalidations (a SyncBatch holds them), a route table for each of
	 * @p publishes (notify() of a config invalidation), a retire slot for each of
	 * @p retires, for each table replaced and for the table pages LockThenSyncWorkers
	 * retires. Throws std::bad_alloc having changed nothing; within these counts,
	 * notify(), publish_routes(), retire() and LockThenSyncWorkers allocate nothing.
	 * Sinks and handlers set by the embedder are its own.
	 */
	void reserve(unsigned notifies, unsigned publishes, unsigned retires);
	/** Send @p d to the sink, every worker and the device TLBs; the call then syncs. */
	void notify(const inval::Descriptor &d);
	void report_device_tlb(const inval::Descriptor &d);
	/** Invalidate what a paging HWPT maps in [iova, iova + length) (it is a stage 2 too). */
	void invalidate_range(const HwptPaging &h, uint64_t iova, uint64_t length);
	/**
	 * Remove [iova, iova + length) from @p h's table: the one way entries go away. Fails
	 * (ENOMEM, nothing changed) only when a block must be split and the pool is dry;
	 * check_unmap() tells beforehand.
	 */
	Status unmap_tables(HwptPaging &h, uint64_t iova, uint64_t length);
	/** Whether every paging HWPT of @p ioas can unmap @p victims (whole mappings). */
	Status check_unmap(const Ioas &ioas, std::span<const Mapping> victims) const;
	/** Invalidate @p targets of everything tagged @p domain (match adds to kMatchDomain). */
	void invalidate_domain(uint32_t domain, uint8_t targets, uint8_t match = 0);
	/**
	 * Drop every worker's translations and cached tables tagged with what @p b's route
	 * tags them with (a detach or replace): the guest may change its tables while nothing
	 * is attached, and sends no invalidation then; attaching again must walk them anew.
	 */
	void invalidate_binding(const Binding &b);
	/** Build and publish a new RouteTable from the bindings (notify() calls it). */
	void publish_routes();
	/** Drop every worker's cached routes of @p dev (an attach, replace or detach). */
	void invalidate_routes(const Device &dev);
	/**
	 * Before a map into @p ioas_id (takes the lock itself; call without it): while a table
	 * an unmap freed is not reusable yet, a worker's walk cache may still point at it
	 * until it drains that unmap's invalidation, and a walk through it would miss a new
	 * mapping made in a fresh table. Wait for a grace period then (posting what this
	 * thread's SyncBatch holds first). Unmaps whose grace period is still running are
	 * the engine's pipelined control passes (Engine::poll_control()).
	 */
	void settle_freed_tables(uint32_t ioas_id);
	/** Post the invalidations a SyncBatch holds (before anything is retired); how many. */
	unsigned post_held();
	/** Free @p fn's memory after the call's grace period (runs without the lock). */
	void retire(std::function<void()> fn);
	/** Hand the table pages unmaps freed to a grace period (by LockThenSyncWorkers). */
	void retire_table_pages();

	using ObjectNode = decltype(objects)::node_type;
	/**
	 * @p o in a map node of its own, inserted into objects later without allocating
	 * (objects.insert(std::move(node))): a call allocates before it changes anything.
	 */
	static ObjectNode object_node(std::unique_ptr<Object> o);

	uint32_t alloc_id();
	Object *find(uint32_t id) const;
	Status no_object(uint32_t id, const char *want) const;
	Result<Ioas *> get_ioas(uint32_t id) const;
	Result<Hwpt *> get_hwpt(uint32_t id) const;
	/**
	 * The nested HWPT a cache invalidation names. The kernel looks the id up as a nested
	 * HWPT, so a paging one is not found (ENOENT), as any other object.
	 */
	Result<HwptNested *> get_invalidation_target(uint32_t id) const;
	Result<Device *> get_device(uint32_t id) const;
	Result<FaultQueue *> get_fault_queue(uint32_t id) const;

	static std::string binding_name(const Binding &b);
	static std::string object_name(const Object &obj);
	void for_each_binding(const std::function<void(Binding &)> &fn) const;
	std::string first_user(const Object &obj) const;

	void put(Binding *b);
	void unbind(Binding *b);
	void destroy_object(Object *o);

	/* IOAS (ioas.cc) */
	std::vector<Reserved> reserved(const Ioas &ioas) const;
	std::vector<IovaRange> usable(const Ioas &ioas) const;
	/** Whether [start, last] overlaps a reserved range (reserved() names them). */
	bool hits_reserved(const Ioas &ioas, uint64_t start, uint64_t last) const;
	uint64_t alignment(const Ioas &ioas) const;
	/** EADDRINUSE unless every mapping's IOVA, length and host address are @p align aligned. */
	Status check_aligned(const Ioas &ioas, uint64_t align) const;
	/** Map into the IOAS, its page set and its tables. */
	Status map_range(Ioas &ioas, uint32_t flags, uint64_t &iova, std::byte *host,
			 uint64_t length, std::optional<uint64_t> gpa, const char *what);
	/** Unmap one whole mapping from the tables and the IOAS; returns its length. */
	uint64_t remove_mapping(Ioas &ioas, uint64_t iova);
	Result<uint64_t> alloc_iova(const Ioas &ioas, uint64_t length, uint64_t host_align) const;
	Status check_fixed(const Ioas &ioas, uint64_t iova, uint64_t length) const;
	Status table_map(HwptPaging &h, const Mapping &m);
	/** Walk-time view of a paging HWPT: its tables and its IOAS's memory (made once). */
	void make_host_map(HwptPaging &h);

	/* Mirrors (mirror.cc): kernel address spaces kept in step with an IOAS */
	/** What @p ioas's mirrors cannot map, added to @p out (for reserved()). */
	void mirror_reserved(const Ioas &ioas, std::vector<Reserved> &out) const;
	/** Whether a mirror cannot map [start, last] (for hits_reserved()). */
	bool mirror_refuses(const Ioas &ioas, uint64_t start, uint64_t last) const;
	/** Give the mapping at @p iova to every mirror; on a failure the ones done undo it. */
	Status mirror_map(const Ioas &ioas, uint64_t iova);
	/** Take the mapping at @p iova from every mirror (before remove_mapping()). */
	Status mirror_unmap(const Ioas &ioas, uint64_t iova);

	/* Nested observers (observer.cc): shadows of a nested HWPT outside iodp */
	/** The whole input range of @p h's stage 1 (x86: both canonical halves). */
	std::vector<IovaRange> observed_scope(const HwptNested &h) const;
	/** Give @p ranges of @p h to its observers (the first failure is returned). */
	Status observe_changed(HwptNested &h, std::vector<IovaRange> ranges);
	/** Stage 2 of @p ioas grew: every observed HWPT over it re-walks its whole scope. */
	Status observe_stage2_map(const Ioas &ioas);
	/** Stage 2 of @p ioas no longer maps [host, host + length). */
	Status observe_stage2_unmap(const Ioas &ioas, uint64_t host, uint64_t length);

	/**
	 * hwpt_invalidate() of a guest's queue, IODP_HWPT_INVALIDATE_DATA_VTD_QI or _SMMUV3_CMDQ
	 * (qi.cc). Takes the lock itself, once per segment that ends at an inv_wait / CMD_SYNC.
	 */
	Status invalidate_queue(uint32_t hwpt_id, uint32_t data_type, const void *entries,
				uint32_t entry_len, uint32_t entry_num, uint32_t *handled);

	/* HWPTs (hwpt.cc) */
	Result<HwptPaging *> make_paging(Device *dev, Ioas *ioas, uint32_t flags,
					 uint32_t fault_id,
					 std::optional<pgtable::TableConfig> fmt);
	Status check_fault_id(uint32_t flags, uint32_t fault_id) const;

	/* Devices and faults (device.cc) */
	static IovaRange msi_window(const Device &d);
	Binding *route_binding(const Device &dev, std::optional<uint32_t> pasid) const;
	iotlb::Route route_of(const Binding *b, std::optional<uint32_t> pasid) const;
	Ioas *ioas_of(Hwpt *h) const;
	uint32_t record_fault(Binding *b, const Device &dev, std::optional<uint32_t> pasid,
			      uint64_t iova, uint8_t access, pgtable::FaultKind kind, uint8_t stage,
			      int8_t level);
};

} // namespace iodp::ctl
