/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The control plane's objects: private to lib/ctl (and to tests, through inspect.h).
 * <iodp/ctl.h> is the contract; these layouts are free to change with it.
 */

#include <iodp/ctl.h>
#include <iodp/coherence.h>
#include <iodp/iodp.h>
#include <iodp/mem.h>
#include <iodp/pgtable_builder.h>

#include <absl/container/btree_map.h>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace iodp::ctl {

struct Object {
	Object(uint32_t id_, ObjType type_) : id(id_), type(type_) {}
	virtual ~Object() = default;
	Object(const Object &) = delete;
	Object &operator=(const Object &) = delete;

	const uint32_t id;
	const ObjType type;
	/** Objects and bindings that refer to this one; destroy needs 0. */
	uint32_t users = 0;
};

struct HwptPaging;

struct Ioas : Object {
	explicit Ioas(uint32_t id_) : Object(id_, ObjType::ioas) {}

	/**
	 * By iova. A B-tree (many mappings to a node) rather than a red-black tree: at a
	 * million mappings a lookup misses the cache a few times instead of ~20. Inserts and
	 * erases move other values: hold no reference or iterator across them.
	 */
	absl::btree_map<uint64_t, Mapping> mappings;
	/**
	 * The host memory of the mappings, counted: what walks through this IOAS's paging
	 * HWPTs may read besides their table pools. Changed in place (O(log n) per mapping);
	 * freed with the IOAS, after the HWPTs that read it.
	 */
	std::unique_ptr<PageSet> pages = std::make_unique<PageSet>();
	std::vector<IovaRange> allowed;       ///< empty: no constraint
	std::vector<HwptPaging *> hwpts;      ///< kept in step with mappings
	std::vector<IovaRange> reserved;      ///< ioas_add_reserved()
	std::vector<IoasMirror *> mirrors;    ///< kept in step with mappings (not owned)
	bool huge_pages = true;
};

struct Hwpt : Object {
	Hwpt(uint32_t id_, ObjType type_) : Object(id_, type_) {}
	uint32_t flags = 0;    ///< IODP_HWPT_ALLOC_* / FAULT_ID_VALID as allocated
	uint32_t fault_id = 0; ///< fault queue for recoverable faults (0: none)
	IommuModel model = IommuModel::vtd;
};

/** An engine-managed page table that mirrors its IOAS (outputs are host addresses). */
struct HwptPaging : Hwpt {
	explicit HwptPaging(uint32_t id_) : Hwpt(id_, ObjType::hwpt_paging) {}

	Ioas *ioas = nullptr;
	bool auto_domain = false; ///< made by an attach to an IOAS; goes with its last user
	/** Atomic: a worker reads it (config()) when it reads an SMMUv3 CD without the lock. */
	std::atomic<bool> dirty_tracking{false};
	/** The largest leaf while the IOAS allows large pages (0: any): the device's. */
	uint64_t leaf_cap = 0;
	GuestRam pool_ram;
	pgtable::TablePool pool;
	pgtable::TableBuilder table;
	/**
	 * Identity map (address = host address) of the table pool and the IOAS's memory: all
	 * a walk may read. Made once: the pool is its one region and the IOAS's page set
	 * (`Ioas::pages`, changed in place by map and unmap) the rest. Workers load `view`
	 * once per burst.
	 */
	std::unique_ptr<GuestMemory> host_map;
	std::atomic<const GuestMemory *> view{nullptr};

	/** The stage as walkers use it (accessed/dirty updates on while tracking). */
	pgtable::TableConfig config() const
	{
		pgtable::TableConfig c = table.config();
		c.update_accessed = dirty_tracking;
		return c;
	}
	uint64_t aperture_last() const;
};

struct HwptNested : Hwpt {
	explicit HwptNested(uint32_t id_) : Hwpt(id_, ObjType::hwpt_nested) {}
	HwptPaging *parent = nullptr;
	/** IODP_HWPT_DATA_VTD_S1, IODP_HWPT_DATA_ARM_SMMUV3, or an OpaqueS1Data's type. */
	uint32_t data_type = IODP_HWPT_DATA_VTD_S1;
	VtdS1Data vtd;
	SmmuV3Data smmu;
	std::vector<NestedObserver *> observers; ///< kept in step with what it translates
};

struct Device;

/** A device's RID or (device, PASID) attached to a HWPT. */
struct Binding {
	Device *dev = nullptr;
	Hwpt *hwpt = nullptr;
	std::optional<uint32_t> pasid;
	uint32_t refs = 1; ///< the attachment itself + holders (pending faults)
	bool detached = false;
	uint32_t pending_faults = 0;
};

struct Device : Object {
	explicit Device(uint32_t id_) : Object(id_, ObjType::device) {}
	std::string name;
	IommuModel model = IommuModel::vtd;
	uint32_t group = 0;
	uint32_t rid = 0;
	uint8_t pasid_bits = 20;
	std::vector<IovaRange> reserved; ///< DeviceSpec::reserved
	std::optional<pgtable::TableConfig> paging_format; ///< DeviceSpec::paging_format
	uint64_t paging_max_leaf = 0;                      ///< DeviceSpec::paging_max_leaf
	Binding *rid_binding = nullptr;
	std::map<uint32_t, Binding *> pasid_bindings;
};

struct FaultQueue : Object {
	FaultQueue(uint32_t id_, int fd) : Object(id_, ObjType::fault_queue), eventfd(fd) {}
	~FaultQueue() override;
	int eventfd = -1;
	uint32_t next_cookie = 1;
	uint32_t next_grpid = 1;
	std::deque<PageFault> unread;
	/** cookie -> binding held until the response (read or not). */
	std::map<uint32_t, Binding *> awaiting;
};

} // namespace iodp::ctl
