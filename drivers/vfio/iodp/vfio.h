/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * drivers/vfio: real PCI devices through the kernel's VFIO, attached directly to an iodp IOAS.
 *
 * A device attached to an iodp IOAS (or a paging HWPT on it) sees exactly that IOAS: the
 * IOAS's mappings are mirrored into a kernel address space (ctl::IoasMirror), every later
 * map / unmap / copy too, and an iodp unmap returns only after the kernel unmap. The IOAS's
 * usable ranges shrink to what the kernel can map, so a map outside them fails in iodp, with
 * the kernel's ranges in the message, before anything changes.
 *
 * Two kernel paths:
 * - type1: the device's group (/dev/vfio/N), a container (/dev/vfio/vfio) with
 *   VFIO_TYPE1v2_IOMMU, VFIO_IOMMU_MAP_DMA / UNMAP_DMA; the device fd from
 *   VFIO_GROUP_GET_DEVICE_FD (so the device's regions are reachable while it is attached).
 * - iommufd: /dev/iommu and the device's cdev /dev/vfio/devices/vfioN:
 *   VFIO_DEVICE_BIND_IOMMUFD, IOMMU_IOAS_ALLOC, VFIO_DEVICE_ATTACH_IOMMUFD_PT,
 *   IOMMU_IOAS_MAP / UNMAP, IOMMU_IOAS_IOVA_RANGES.
 * `auto` takes iommufd when /dev/iommu and the device's cdev exist, else type1, and says which
 * (path_reason()).
 *
 * All devices of one kernel IOMMU group belong to one iodp context and share one kernel
 * address space (devices attached to the same iodp IOAS with the same path share one
 * container or kernel IOAS). A device whose group holds a device bound to a driver other than
 * vfio-pci, pci-stub or pcieport (the kernel's viability rule; no driver is fine), or that
 * another iodp context uses, is refused with a message naming that device and its driver.
 *
 * Errors: every kernel call that fails comes back as a Status with the errno and a message
 * naming the call, the device and what it means. A failure half-way undoes what was done;
 * close() (or the process ending) releases every fd, the container and the kernel IOAS.
 *
 * Thread safety: a Device is used by one thread at a time; different devices may be used
 * from different threads (the process-wide group table has its own lock). The IOAS calls
 * that reach the kernel run under the iodp context's lock.
 */

#include <iodp/ctl.h>
#include <iodp/shadow.h>
#include <iodp/status.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace iodp::vfio {

enum class Iommu : uint8_t { auto_select, type1, iommufd };
/** "auto", "type1", "iommufd". */
const char *iommu_name(Iommu iommu);

/**
 * How a device attached to a nested HWPT follows the guest's stage 1 (doc/vfio.md):
 * - shadow: iodp walks the guest's table on each invalidation and keeps the composition
 *   in the device's kernel space (<iodp/shadow_mode.h>);
 * - nested: the kernel nests in hardware (iommufd: a NEST_PARENT HWPT mirroring the IOAS,
 *   the guest's table as a VTD_S1 nested HWPT, invalidations forwarded in batches);
 *   refused, with the kernel's reason, where it cannot;
 * - auto: nested where IOMMU_GET_HW_INFO reports nesting and NEST_PARENT allocation
 *   succeeds, else shadow; nesting_reason() says which and why.
 */
enum class Nesting : uint8_t { auto_select, shadow, nested };
/** "auto", "shadow", "nested". */
const char *nesting_name(Nesting mode);

struct Options {
	Iommu iommu = Iommu::auto_select;
	Nesting mode = Nesting::auto_select;
	/**
	 * The IOMMU model of the device's lib/ctl twin: the vIOMMU a VMM shows the guest, and
	 * so which guest tables its nested HWPTs take (VT-d first stage, or SMMUv3 STE + CD +
	 * stage 1). The real IOMMU (the kernel's) is whatever the host has: shadow mode gives
	 * it the composition either way.
	 */
	ctl::IommuModel model = ctl::IommuModel::vtd;
	/** Where sysfs and /dev are (tests point these at a fake tree). */
	std::string sysfs = "/sys";
	std::string dev = "/dev";
	/** Shadow mode (attached to a nested HWPT): coalescing off is QEMU's way (one kernel
	 *  call per leaf), for comparisons. */
	shadow::ShadowConfig shadow;
};

/** Counters of one device (those of its kernel address space are shared by its group). */
struct Stats {
	Iommu path = Iommu::auto_select; ///< type1 or iommufd once opened
	uint64_t kernel_calls = 0;       ///< ioctls issued (map, unmap, attach, info, ...)
	uint64_t maps = 0;               ///< kernel map calls that succeeded
	uint64_t unmaps = 0;             ///< kernel unmap calls that succeeded
	uint64_t bytes_mapped = 0;       ///< bytes the kernel maps now
	uint64_t pages_mapped = 0;       ///< the same in 4 KiB pages
	uint64_t errors = 0;             ///< kernel calls that failed
	/** Shadow mode (attached to a nested HWPT, <iodp/shadow_mode.h>). */
	bool shadow = false;
	/** Shadow mode: a kernel call failed and part of the kernel's view may be stale. */
	bool degraded = false;
	uint64_t shadow_syncs = 0;  ///< range syncs (walk + diff + kernel calls)
	uint64_t shadow_events = 0; ///< guest invalidation calls and stage-2 changes handled
	/** Hardware nesting: IOMMU_HWPT_INVALIDATE calls and the entries they carried. */
	bool nested = false;
	uint64_t forward_calls = 0, forward_entries = 0;
};

/** A region of the device (BAR, config space): VFIO_DEVICE_GET_REGION_INFO. */
struct Region {
	uint32_t index = 0;
	uint64_t size = 0;
	uint64_t offset = 0; ///< in the device fd
	uint32_t flags = 0;  ///< VFIO_REGION_INFO_FLAG_*
};

/** VFIO region indexes of a PCI device (as <linux/vfio.h>). */
inline constexpr uint32_t kBar0Region = 0;
inline constexpr uint32_t kConfigRegion = 7;

class Device {
public:
	/**
	 * Open @p spec: a PCI address ("0000:00:03.0" or "00:03.0") or a device cdev path
	 * ("/dev/vfio/devices/vfio0", which implies iommufd) for context @p ctx. Checks the
	 * device is bound to vfio-pci and its group is viable and not used by another context,
	 * opens the group (type1) or the cdev and binds it to the context's iommufd (iommufd),
	 * and makes a lib/ctl device for it (in the lib/ctl group of its kernel group).
	 */
	static Result<std::unique_ptr<Device>> open(ctl::Ctx &ctx, const std::string &spec,
						   const Options &options = {});
	/** Detaches and releases everything (see close()). */
	~Device();
	Device(const Device &) = delete;
	Device &operator=(const Device &) = delete;

	/**
	 * Attach to iodp IOAS @p pt_id, or to a paging HWPT (its IOAS is what the kernel
	 * mirrors), or to a nested HWPT (shadow mode: the kernel holds guest IOVA -> host as
	 * the guest's stage 1 over the parent's stage 2 translates it, <iodp/shadow_mode.h>;
	 * the device has a kernel space of its own). Attaching while attached replaces the attachment (iommufd: one
	 * VFIO_DEVICE_ATTACH_IOMMUFD_PT; type1: detach, then attach). Returns the lib/ctl HWPT
	 * the device's lib/ctl twin is attached to.
	 */
	Result<uint32_t> attach(uint32_t pt_id);
	/** Detach: DMA is blocked (type1: the device fd is closed and the group leaves its
	 *  container; iommufd: VFIO_DEVICE_DETACH_IOMMUFD_PT). */
	Status detach();
	/** Detach, destroy the lib/ctl device, close every fd. Safe to call twice. */
	void close();

	const std::string &bdf() const { return bdf_; }
	int group() const { return group_; }
	/** The path taken (type1 or iommufd) and why ("auto: /dev/iommu and ... exist"). */
	Iommu path() const { return path_; }
	const std::string &path_reason() const { return path_reason_; }
	/** Attached to a nested HWPT: shadow or nested, and why ("shadow (auto: ...)"). */
	const std::string &nesting_reason() const { return nesting_reason_; }
	/** The lib/ctl device standing for this one (translate() answers what it reaches). */
	uint32_t ctl_id() const { return ctl_id_; }
	/** The iodp IOAS attached to (0: none). */
	uint32_t ioas() const;
	/** What the kernel can map for this device (empty while detached). */
	std::vector<ctl::IovaRange> kernel_ranges() const;
	/** type1: how many more mappings the container takes (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
	 *  read again now); iommufd: UINT32_MAX. ENODEV while detached. */
	Result<uint32_t> dma_avail() const;
	Stats stats() const;

	/** Region @p index (ENODEV without a device fd, i.e. type1 while detached). */
	Result<Region> region(uint32_t index) const;
	/** pread / pwrite on a region; short transfers are errors. */
	Status read(uint32_t index, uint64_t offset, void *buf, size_t len) const;
	Status write(uint32_t index, uint64_t offset, const void *buf, size_t len) const;
	/** The device fd (-1 when there is none): for interrupts, mmap of BARs, resets. */
	int fd() const { return device_fd_; }

	/** Private state (vfio.cc). */
	struct Space;
	struct GroupState;
	struct IommufdFd;

private:
	Device(ctl::Ctx &ctx, Options options);
	/** For a nested HWPT: whether the kernel nests (true) or iodp shadows (false). */
	Result<bool> choose_nesting(uint32_t hwpt_id);

	ctl::Ctx &ctx_;
	Options options_;
	std::string bdf_;
	int group_ = -1;
	Iommu path_ = Iommu::auto_select;
	std::string path_reason_;
	std::string nesting_reason_;
	uint32_t ctl_id_ = 0;
	int device_fd_ = -1;
	uint32_t iommufd_devid_ = 0;
	std::shared_ptr<GroupState> gstate_;
	std::shared_ptr<IommufdFd> iommufd_;
	std::shared_ptr<Space> space_;
	std::shared_ptr<Space> last_space_; ///< for stats() after a detach
	bool device_attached_ = false;      ///< iommufd: attached to a kernel IOAS
	uint64_t own_calls_ = 0;
	uint64_t own_errors_ = 0;
	bool closed_ = false;
};

} // namespace iodp::vfio
