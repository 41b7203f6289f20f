/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * The control plane: iommufd's object model, in C++.
 *
 * A Ctx is one user's set of objects (like one open /dev/iommu): IOASes, paging and nested
 * HWPTs, devices (in IOMMU groups), fault queues. Every object has a u32 id (never 0) and a
 * count of its users; destroying an object that is still used fails with EBUSY and a message
 * naming the user. Every call validates its input and returns a Status whose message names
 * the object and the reason; a failed call changes nothing.
 *
 * <iodp/iodp.h> is the C face of the same calls, with the kernel's structs and size rules.
 *
 * Lifecycle (from the /dev/ioasid design): set up a table (IOAS + HWPT), authorise the
 * device (attach), de-authorise it (detach), destroy the table. A detached binding that
 * something still holds (a fault awaiting its response; later, a worker inside a grace
 * period) is parked: its HWPT stays busy until the last holder lets go.
 *
 * Thread safety: every call takes the context's lock; calls from several threads are safe.
 *
 * Workers. Translation is done by worker threads, each with its own IOTLB shard registered
 * with coherence(). A worker resolves (device, PASID) with resolve() on a config-cache miss
 * and translates through iotlb::Shard::translate(). Every call that takes a translation
 * away (unmap, detach, replace, destroy, an iommufd invalidation, clearing dirty bits)
 * posts the invalidations to every worker and returns only after a sync: once it returned,
 * no worker can answer from what it removed. Table pages and other memory walkers may read
 * are freed after the same grace period.
 */

#include <iodp/coherence.h>
#include <iodp/iotlb.h>
#include <iodp/pgtable.h>
#include <iodp/status.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

struct iodp_ctx;

namespace iodp {
class GuestMemory;
namespace inval {
struct Descriptor;
}
} // namespace iodp

namespace iodp::ctl {

enum class ObjType : uint8_t { ioas, hwpt_paging, hwpt_nested, device, fault_queue };
const char *obj_type_name(ObjType type);

enum class IommuModel : uint8_t { vtd, smmuv3 };
const char *model_name(IommuModel model);


/*
 * Flags of the calls below. Their values are the kernel's uAPI bits (IOMMU_IOAS_MAP_*,
 * IOMMU_HWPT_ALLOC_*, IOMMU_VTD_S1_*), which <iodp/iodp.h> names IODP_*: either spelling
 * works.
 */
/** ioas_map(), ioas_map_guest(), ioas_copy() and Mapping::flags. */
inline constexpr uint32_t kMapFixedIova = 1u << 0;
inline constexpr uint32_t kMapWriteable = 1u << 1;
inline constexpr uint32_t kMapReadable = 1u << 2;
/** hwpt_alloc_paging() and hwpt_alloc_nested(). */
inline constexpr uint32_t kHwptNestParent = 1u << 0;
inline constexpr uint32_t kHwptDirtyTracking = 1u << 1;
inline constexpr uint32_t kHwptFaultIdValid = 1u << 2;
inline constexpr uint32_t kHwptPasid = 1u << 3;
/** VtdS1Data::flags: the first-stage PASID entry's SRE, EAFE and WPE bits. */
inline constexpr uint64_t kVtdS1Sre = 1ull << 0;
inline constexpr uint64_t kVtdS1Eafe = 1ull << 1;
inline constexpr uint64_t kVtdS1Wpe = 1ull << 2;
/** ObjectInfo::data_type of a nested HWPT (IOMMU_HWPT_DATA_*). */
inline constexpr uint32_t kDataVtdS1 = 1;
inline constexpr uint32_t kDataArmSmmuV3 = 2;

struct IovaRange {
	uint64_t start = 0;
	uint64_t last = 0; ///< inclusive
	bool operator==(const IovaRange &) const = default;
};

/** One IOAS mapping: [iova, iova + length) -> host memory. */
struct Mapping {
	uint64_t iova = 0;
	uint64_t length = 0;
	std::byte *host = nullptr;
	uint32_t flags = 0; ///< kMapReadable / kMapWriteable
	/** Set when the host memory was given as guest memory: the guest-physical address. */
	std::optional<uint64_t> gpa;
};

/**
 * Something outside iodp that must map exactly what an IOAS maps: a real device's kernel
 * address space (a VFIO type1 container or an iommufd IOAS). The one place where "this IOAS
 * changed over this range" becomes kernel calls; attach it with Ctx::ioas_attach_mirror().
 *
 * The context calls it under its lock, from its public IOAS calls:
 * - map(): for each new mapping (ioas_map, ioas_map_guest, each piece of ioas_copy), after
 *   iodp's own tables hold it and before the call returns. A failure fails the iodp call,
 *   which then removes the mapping from iodp and from the mirrors that took it: nothing
 *   stays mapped anywhere.
 * - unmap(): for each whole mapping an unmap removes, before iodp drops it; when the iodp
 *   call returns, the mirror no longer maps it. A failure stops the unmap there: the
 *   mappings already done are gone everywhere, the rest stay everywhere (never a mapping
 *   the mirror keeps and iodp does not).
 * - ranges(): the IOVA ranges it can map; the IOAS's usable ranges are narrowed to them, so
 *   a map outside fails in iodp, with the reason, before anything changes.
 * Implementations are control-path code (virtual calls are fine here, never on the hot path).
 */
class IoasMirror {
public:
	virtual ~IoasMirror() = default;
	/** For messages: "vfio 0000:00:03.0 (type1 container)". */
	virtual std::string name() const = 0;
	virtual Status map(const Mapping &m) = 0;
	virtual Status unmap(const Mapping &m) = 0;
	/** Inclusive, sorted, not overlapping. */
	virtual std::vector<IovaRange> ranges() const = 0;
	/** The smallest page it maps: IOVAs, host addresses and lengths are aligned to it. */
	virtual uint64_t min_page() const { return 4096; }
};

/**
 * Something outside iodp that must translate what a nested HWPT translates: a real device
 * whose kernel IOMMU holds the composition guest IOVA -> GPA -> host of a guest's stage 1
 * over its stage 2 (shadow mode, drivers/vfio). Attach it with Ctx::hwpt_attach_observer().
 *
 * The context calls it under its lock, after iodp's own state changed and before the call
 * that changed it returns, so that call completes only once the observer holds the new view
 * (a guest's invalidation wait is strict):
 * - changed(): the translation of @p ranges (inclusive, sorted, disjoint) may have changed:
 *   from hwpt_invalidate() once per call (a guest's queue: once per stretch ending at an
 *   inv_wait / CMD_SYNC, before that completes), with the ranges of its entries merged (a
 *   domain-, PASID- or config-wide entry, or one in stage-2 input space, names the whole
 *   input range); from a stage-2 map (ioas_map / ioas_map_guest / ioas_copy on the parent's
 *   IOAS) with the whole input range, as newly mapped guest memory can make any stage-1
 *   leaf reachable.
 * - host_gone(): the parent's IOAS no longer maps host memory [host, host + length) (an
 *   IOAS unmap): nothing may reach it any more.
 * @p xlat is the HWPT's translation now (for the RID), or nullptr when DMA through it is
 * blocked (an aborting STE, a broken context). Errors are returned by the iodp call that
 * caused them, after iodp's own change (which stays: the observer says it is degraded).
 */
class NestedObserver {
public:
	virtual ~NestedObserver() = default;
	/** For messages: "vfio 0000:00:03.0 (shadow of hwpt 5)". */
	virtual std::string name() const = 0;
	virtual Status changed(const pgtable::Translation *xlat,
			       std::span<const IovaRange> ranges) = 0;
	virtual Status host_gone(const pgtable::Translation *xlat, uint64_t host,
				 uint64_t length) = 0;
	/**
	 * The entries of one hwpt_invalidate() call that iodp applied, as given (iodp's entry
	 * layouts are the kernel's): an observer whose kernel nests in hardware forwards them.
	 * Called before changed(). Default: nothing to forward.
	 */
	virtual Status forward(uint32_t /*data_type*/, const void * /*entries*/,
			       uint32_t /*entry_len*/, uint32_t /*entry_num*/)
	{
		return {};
	}
};


/** A guest-owned stage 1 (VT-d first stage) on a NEST_PARENT paging HWPT. */
struct VtdS1Data {
	uint64_t flags = 0; ///< kVtdS1*
	uint64_t pgtbl_addr = 0;
	uint32_t addr_width = 48;
};

/** A guest-owned SMMUv3 STE (stage 1 through a CD table) on a NEST_PARENT paging HWPT. */
struct SmmuV3Data {
	uint64_t ste[2] = {0, 0};
};

/**
 * A stage 1 iodp does not walk, of a type iodp's C API does not take (the kernel selftest's
 * mock nested domain, IOMMU_HWPT_DATA_SELFTEST, made by the test commands): DMA through it
 * faults at stage 1 (not present), and it takes no invalidations of its own.
 */
struct OpaqueS1Data {
	uint32_t data_type = 0; ///< not kDataVtdS1 / kDataArmSmmuV3
};

struct DeviceSpec {
	std::string name;
	IommuModel model = IommuModel::vtd;
	uint32_t group = 0; ///< 0: a new group
	uint32_t rid = 0;
	uint8_t pasid_bits = 20;
	/**
	 * IOVA ranges the device cannot use besides its model's MSI window (a platform's
	 * reserved regions, the edges of an aperture): reserved in every IOAS it is attached
	 * to, as the kernel reserves iommu_get_resv_regions().
	 */
	std::vector<IovaRange> reserved;
	/**
	 * The table format of paging HWPTs made for the device when none is asked for (an
	 * attach to an IOAS, HWPT_ALLOC), instead of its model's (vtd-ss-4l, arm-s2), and the
	 * largest leaf they use (0: any the format has). The kernel-selftest mock device of
	 * the test commands uses Format::mock, 2 KiB leaves unless MOCK_FLAGS_DEVICE_HUGE_IOVA.
	 */
	std::optional<pgtable::TableConfig> paging_format = std::nullopt; // initialised: {a, b} lists
	uint64_t paging_max_leaf = 0;                                     // need not name it
};

struct CtxConfig {
	/** Host memory for each engine-managed table's pages. */
	uint64_t table_pool_bytes = 8ull << 20;
	/** Fault events kept for fault_events() before the oldest are dropped. */
	size_t fault_event_log = 1024;
	/** Worker threads that may register with coherence(), and each one's ring. */
	unsigned max_workers = 64;
	unsigned inval_ring_entries = 1024;
};

/** What get_hw_info() reports: a device's IOMMU model and what iodp's model of it offers. */
struct HwInfo {
	IommuModel model = IommuModel::vtd;
	pgtable::Format paging_format = pgtable::Format::vtd_ss_4l; ///< of its paging HWPTs
	uint8_t paging_ias = 48;  ///< input bits of its paging HWPTs
	uint8_t pasid_bits = 0;
	uint64_t page_sizes = 0;  ///< bit n set: 2^n-byte leaves exist in some format
	uint32_t granules = 0;    ///< bit n set: 2^n-byte granule supported
	bool dirty_tracking = false;
};

/**
 * A recoverable fault queued on a HWPT's fault queue, awaiting fault_respond() with its
 * cookie (the kernel's struct iommu_hwpt_pgfault: one 4 KiB page, the last of its group).
 */
struct PageFault {
	uint32_t dev_id = 0;
	std::optional<uint32_t> pasid;
	uint32_t grpid = 0;  ///< page request group index (9 bits, as PCIe PRI)
	uint8_t access = 0;  ///< pgtable::kAccess* of the faulting request
	uint64_t addr = 0;   ///< page-aligned
	uint32_t length = 0;
	uint32_t cookie = 0;
};

/** A fault that is not recoverable, or one no fault queue took (the context's event log). */
struct FaultEvent {
	uint32_t dev_id = 0;
	std::optional<uint32_t> pasid;
	uint8_t access = 0; ///< pgtable::kAccess*
	pgtable::FaultKind kind = pgtable::FaultKind::none;
	uint8_t stage = 0;  ///< 1 or 2 (0: before any table)
	int8_t level = 0;   ///< architecture level of the faulting entry
	uint64_t addr = 0;
};

/** What an object is and what it refers to: a copy, for tools, drivers and tests. */
struct ObjectInfo {
	uint32_t id = 0;
	ObjType type = ObjType::ioas;
	uint32_t users = 0;       ///< objects and bindings that refer to it (destroy needs 0)
	/** HWPTs and devices: the IOMMU model. */
	IommuModel model = IommuModel::vtd;
	/** HWPTs: the IOAS they translate into (a nested HWPT: its parent's IOAS). */
	uint32_t ioas = 0;
	/** Nested HWPTs: the paging parent, and the guest table's kind (kernel data type). */
	uint32_t parent = 0;
	uint32_t data_type = 0; ///< kDataVtdS1, kDataArmSmmuV3, ...
	VtdS1Data vtd;   ///< data_type kDataVtdS1: the guest's first stage as allocated
	SmmuV3Data smmu; ///< data_type kDataArmSmmuV3: the guest's STE as allocated
	/** Paging HWPTs: made by an attach to an IOAS; the table's format. */
	bool auto_domain = false;
	pgtable::Format format = pgtable::Format::vtd_ss_4l;
	/** IOASes: the paging HWPTs over it and how many mappings it holds. */
	std::vector<uint32_t> hwpts;
	size_t mappings = 0;
	/** Devices: the name, IOMMU group and requester id. */
	std::string name;
	uint32_t group = 0;
	uint32_t rid = 0;
};

/** What translate() found. */
struct Translated {
	uint64_t host = 0;
	uint64_t page_size = 0;
	uint8_t perm = 0; ///< pgtable::kPerm*
	pgtable::FaultKind fault = pgtable::FaultKind::none;
	uint8_t stage = 0;
	int8_t level = 0;
	uint32_t cookie = 0; ///< recoverable fault queued under this cookie
};

class Ctx {
public:
	explicit Ctx(const CtxConfig &config = {});
	~Ctx();
	Ctx(const Ctx &) = delete;
	Ctx &operator=(const Ctx &) = delete;
	/** What it was created with (drivers check their sizes against the table pool). */
	const CtxConfig &config() const;
	/**
	 * Every object, mapping, binding, group and vPASID as text (one line each); equal
	 * dumps mean equal object graphs. For tests (fail-nth) and debugging.
	 */
	std::string dump() const;

	/* Objects ------------------------------------------------------------------------ */
	Status destroy(uint32_t id);

	/* IOAS ----------------------------------------------------------------------------- */
	Result<uint32_t> ioas_alloc();
	Status ioas_allow_iovas(uint32_t ioas_id, std::span<const IovaRange> ranges);
	/**
	 * Keep [range.start, range.last] out of the IOAS for good (what the kernel's
	 * iopt_reserve_iova() does for a driver; the test command ADD_RESERVED). EADDRINUSE
	 * when something is mapped or allowed there.
	 */
	Status ioas_add_reserved(uint32_t ioas_id, const IovaRange &range);
	/** Usable ranges (not reserved by an attached device or a table's reach). */
	Result<std::vector<IovaRange>> ioas_iova_ranges(uint32_t ioas_id, uint64_t *alignment);
	/**
	 * Map [host, host + length) at @p iova (with kMapFixedIova) or at an IOVA
	 * picked in the allowed ranges; returns the IOVA.
	 */
	Result<uint64_t> ioas_map(uint32_t ioas_id, uint32_t flags, uint64_t iova, void *host,
				  uint64_t length);
	/** Map guest memory: [gpa, gpa + length) must lie in one region of @p mem. */
	Result<uint64_t> ioas_map_guest(uint32_t ioas_id, uint32_t flags, uint64_t iova,
					const GuestMemory &mem, uint64_t gpa, uint64_t length);
	/** Returns the bytes unmapped. */
	Result<uint64_t> ioas_unmap(uint32_t ioas_id, uint64_t iova, uint64_t length);
	/**
	 * Split the mapping that holds @p iova so that one ends there (the kernel's
	 * iopt_cut_iova(), which VFIO type1 (v1) unmaps use to unmap part of a mapping).
	 * Nothing happens when @p iova is a mapping's last byte or nothing maps it. The new
	 * mapping's start (iova + 1) and host address must be aligned to the IOAS's alignment
	 * and to a page (EINVAL); an IOAS with mirrors is not cut (EINVAL: they could not unmap
	 * a part). Translation does not change.
	 */
	Status ioas_cut(uint32_t ioas_id, uint64_t iova);
	/** Returns the destination IOVA. */
	Result<uint64_t> ioas_copy(uint32_t dst_id, uint32_t src_id, uint32_t flags,
				   uint64_t dst_iova, uint64_t src_iova, uint64_t length);
	/**
	 * Keep @p mirror in step with the IOAS from now on: checks that every mapping and every
	 * allowed range lies inside mirror->ranges() (EADDRINUSE naming the first that does
	 * not), then gives it every existing mapping (undone on a failure). The IOAS counts it
	 * as a user until ioas_detach_mirror(); the caller owns it and detaches it before
	 * destroying the context.
	 */
	Status ioas_attach_mirror(uint32_t ioas_id, IoasMirror *mirror);
	/**
	 * Stop calling @p mirror. It keeps what it maps (the caller unmaps or drops it all,
	 * e.g. by closing the kernel container). ENOENT when not attached.
	 */
	Status ioas_detach_mirror(uint32_t ioas_id, IoasMirror *mirror);
	/** IOMMU_OPTION; for OP_GET *val is written. */
	Status option(uint32_t option_id, uint16_t op, uint32_t object_id, uint64_t *val);

	/* HWPTs ---------------------------------------------------------------------------- */
	/**
	 * A paging HWPT on @p ioas_id in @p dev_id's paging format (or @p format when given).
	 * flags: NEST_PARENT, DIRTY_TRACKING, FAULT_ID_VALID, PASID.
	 */
	Result<uint32_t> hwpt_alloc_paging(uint32_t dev_id, uint32_t ioas_id, uint32_t flags,
					   uint32_t fault_id,
					   std::optional<pgtable::TableConfig> format = {});
	Result<uint32_t> hwpt_alloc_nested(uint32_t dev_id, uint32_t parent_id, uint32_t flags,
					   uint32_t fault_id, const VtdS1Data &data);
	Result<uint32_t> hwpt_alloc_nested(uint32_t dev_id, uint32_t parent_id, uint32_t flags,
					   uint32_t fault_id, const SmmuV3Data &data);
	Result<uint32_t> hwpt_alloc_nested(uint32_t dev_id, uint32_t parent_id, uint32_t flags,
					   uint32_t fault_id, const OpaqueS1Data &data);
	Status hwpt_set_dirty_tracking(uint32_t hwpt_id, bool enable);
	/**
	 * Mark the page at @p iova dirty as a device write through @p hwpt_id would (a test
	 * hook: the kernel selftest's IOMMU_TEST_OP_DIRTY). Returns false when nothing is
	 * mapped there; EINVAL unless dirty tracking is on.
	 */
	Result<bool> hwpt_mark_dirty(uint32_t hwpt_id, uint64_t iova);
	/** Set bit n of @p bitmap for each page iova + n * page_size written since the last read. */
	Status hwpt_get_dirty_bitmap(uint32_t hwpt_id, uint64_t iova, uint64_t length,
				     uint64_t page_size, bool no_clear, uint64_t *bitmap);
	/**
	 * Keep @p observer in step with nested HWPT @p hwpt_id from now on (see NestedObserver):
	 * it first gets changed() over the whole input range, and is attached only if that
	 * succeeds. The HWPT counts it as a user until hwpt_detach_observer(); the caller owns
	 * it and detaches it before destroying the context.
	 */
	Status hwpt_attach_observer(uint32_t hwpt_id, NestedObserver *observer);
	/** Stop calling @p observer (it keeps what it holds). ENOENT when not attached. */
	Status hwpt_detach_observer(uint32_t hwpt_id, NestedObserver *observer);
	/**
	 * Apply an iommufd invalidation array (@p entry_len bytes per entry) to a nested HWPT,
	 * or a guest's queue (IODP_HWPT_INVALIDATE_DATA_VTD_QI / _SMMUV3_CMDQ, <iodp/iodp.h>).
	 * Stops at the first bad entry; *handled is the number applied, also on failure.
	 */
	Status hwpt_invalidate(uint32_t hwpt_id, uint32_t data_type, const void *entries,
			       uint32_t entry_len, uint32_t entry_num, uint32_t *handled);

	/**
	 * Also hand every invalidation this context posts to @p sink (tests record them; a
	 * device model can forward device-TLB ones). Called under the context's lock.
	 */
	void set_invalidation_sink(std::function<void(const inval::Descriptor &)> sink);
	/**
	 * Where device-TLB (ATS) invalidations go: once per affected device (those attached to
	 * the domain it names, the device it names, else every attached one), for the
	 * device's driver to drop its own cached translations. Called under the lock.
	 */
	void set_device_tlb_handler(
		std::function<void(uint32_t dev_id, const inval::Descriptor &)> handler);

	/* Devices -------------------------------------------------------------------------- */
	Result<uint32_t> device_create(const DeviceSpec &spec);
	/** The id of the device called @p name (ENOENT). */
	Result<uint32_t> device_id(const std::string &name) const;
	/**
	 * Attach the RID (no @p pasid) or one PASID to a HWPT, or to an IOAS (which finds or
	 * makes a compatible paging HWPT). Replaces an existing attachment atomically. Returns
	 * the HWPT id.
	 */
	Result<uint32_t> device_attach(uint32_t dev_id, std::optional<uint32_t> pasid,
				       uint32_t pt_id);
	Status device_detach(uint32_t dev_id, std::optional<uint32_t> pasid);
	/** What @p dev_id's IOMMU model offers (IOMMU_GET_HW_INFO). */
	Result<HwInfo> get_hw_info(uint32_t dev_id);

	/* PASIDs --------------------------------------------------------------------------- */
	/** Bind @p vpasid to @p ppasid (0: the lowest free one); returns the pPASID. */
	Result<uint32_t> vpasid_set(uint32_t vpasid, uint32_t ppasid);
	Status vpasid_clear(uint32_t vpasid);
	Result<uint32_t> vpasid_lookup(uint32_t vpasid) const;

	/* Faults --------------------------------------------------------------------------- */
	/**
	 * A fault queue; *eventfd (when not NULL) is the caller's own descriptor of its
	 * eventfd (readable while records wait): the caller closes it, iodp never does.
	 */
	Result<uint32_t> fault_queue_alloc(int *eventfd);
	/** Take up to @p max unread recoverable faults. */
	Result<std::vector<PageFault>> fault_read(uint32_t fault_id, size_t max);
	/** How many recoverable faults wait to be read. */
	Result<size_t> fault_pending(uint32_t fault_id) const;
	/** Answer one fault (code 0: success, 1: invalid, as IOMMU_PAGE_RESP_*); EINVAL for an unknown cookie. */
	Status fault_respond(uint32_t fault_id, uint32_t cookie, uint32_t code);
	/** Take up to @p max fault events; *lost is how many were dropped since the last take. */
	std::vector<FaultEvent> fault_events(size_t max, uint64_t *lost);

	/* Translation (control path: no caches, no bursts) --------------------------------- */
	/**
	 * Translate as a worker would: the device's binding for @p pasid (or its RID), the
	 * HWPT's tables, nested through stage 2. Faults are recorded (recoverable ones queued
	 * with a cookie) and returned in Translated::fault.
	 */
	Result<Translated> translate(uint32_t dev_id, std::optional<uint32_t> pasid, uint64_t iova,
				     uint8_t access);

	/**
	 * Record a fault a worker found (the same record translate() makes: the event log, and
	 * the HWPT's fault queue when recoverable). Workers queue their faults and a control
	 * thread reports them here, so the hot path never takes this context's lock. Returns
	 * the cookie of a queued recoverable fault, else 0. ENOENT for no device.
	 */
	Result<uint32_t> report_fault(uint32_t dev_id, std::optional<uint32_t> pasid,
				      uint64_t iova, uint8_t access, pgtable::FaultKind kind,
				      uint8_t stage, int8_t level);

	/* Workers -------------------------------------------------------------------------- */
	/** Where workers register their shards; every invalidation of this context goes there. */
	iotlb::Coherence &coherence();

	/**
	 * One grace period for many calls, for a control loop that carries out a batch of
	 * commands and reports them complete together (Engine::poll_control()).
	 *
	 * While a SyncBatch is open on a thread, the calls that thread makes on this Ctx make
	 * their change and return without waiting: their invalidations are held (range
	 * invalidations of one domain that touch or overlap are merged into one) and memory
	 * they free waits as usual. sync() posts what is held and returns after one grace
	 * period that began after all of it: only then may the caller report those calls
	 * complete. Calls from other threads are not affected (they sync as always, which
	 * does not cover what this batch still holds). The destructor syncs if anything is
	 * due. One batch per thread at a time; not for worker threads.
	 */
	class SyncBatch {
	public:
		explicit SyncBatch(Ctx &ctx);
		~SyncBatch();
		SyncBatch(const SyncBatch &) = delete;
		SyncBatch &operator=(const SyncBatch &) = delete;
		/**
		 * Post the held invalidations and wait for a grace period if the calls since the
		 * last sync() need one. Returns the invalidations it posted (after merging).
		 */
		unsigned sync();
		/**
		 * sync() without the wait, for a loop that does other work meanwhile: post the
		 * held invalidations (their count to @p posted) and begin a grace period if the
		 * calls since the last sync need one. Returns it (the calls are complete once
		 * coherence().sync_done() says so), or nullopt when none was needed (they are
		 * complete now).
		 */
		std::optional<iotlb::Coherence::Grace> begin_sync(unsigned *posted);
		/** Invalidations the calls asked for since the batch opened (before merging). */
		uint64_t requested() const { return requested_; }

	private:
		friend class Ctx;
		Ctx &ctx_;
		uint64_t requested_ = 0;
		bool due_ = false;
	};
	/**
	 * How a worker translates requests of @p dev_id with @p pasid (none: the RID): what its
	 * PASID/config cache keeps until a config invalidation drops it. Reads the binding,
	 * and for SMMUv3 the STE and CD (through stage 2); a context the hardware would refuse
	 * gives a blocked route (every request faults), not an error. ENOENT for no device.
	 */
	Result<iotlb::Route> resolve(uint32_t dev_id, std::optional<uint32_t> pasid);

	enum class RouteLookup : uint8_t {
		found, ///< *out is the route
		none,  ///< no binding (or no such device): requests fault, not attached
	};
	/**
	 * The route of (@p dev_id, @p pasid) from the table the control side publishes on
	 * every config invalidation, read without the context's lock, so a worker's
	 * PASID/config-cache miss never waits for the control thread. An SMMUv3 SSID's CD is
	 * read here from guest memory (through the parent's stage 2), as the SMMU reads it.
	 * For worker threads between begin and end of a burst (the table and the objects it
	 * names are freed a grace period after they go). @p pasid: iotlb::kNoPasid for the RID.
	 */
	RouteLookup published_route(uint32_t dev_id, uint32_t pasid, iotlb::Route *out) const;

	/* Introspection (tests, tools) --------------------------------------------------- */
	/** A copy of what object @p id is and refers to, taken under the lock (ENOENT). */
	Result<ObjectInfo> object_info(uint32_t id) const;
	size_t object_count() const;
	/** The ids of every object, ascending. */
	std::vector<uint32_t> object_ids() const;

	/** Private to lib/ctl (named here so its files can share it). */
	struct Impl;

private:
	friend class Inspector; // lib/ctl/inspect.h: tests and lib/ctl's extensions
	std::unique_ptr<Impl> impl_;
};

/** The C++ context behind a C handle (for libraries that extend the C API). */
Ctx &ctx_of(struct iodp_ctx *c);

} // namespace iodp::ctl
