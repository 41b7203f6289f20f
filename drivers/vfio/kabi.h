/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * The kernel ABI drivers/vfio uses beyond Debian 12's <linux/vfio.h> (linux-libc-dev 6.1,
 * which has the type1 container but neither <linux/iommufd.h> nor the VFIO device cdev
 * ioctls). Layouts and numbers are those of the kernel's uAPI (include/uapi/linux/iommufd.h,
 * vfio.h, Linux 6.6 and later); every struct starts with its size, so a kernel that knows a
 * longer struct zero-fills the rest.
 */

#include <linux/vfio.h>

#include <cstdint>
#include <sys/ioctl.h>

namespace iodp::vfio::kabi {

inline constexpr unsigned long kIommufdType = ';';

struct iommu_destroy {
	uint32_t size;
	uint32_t id;
};
inline constexpr unsigned long IOMMU_DESTROY = _IO(kIommufdType, 0x80);

struct iommu_ioas_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t out_ioas_id;
};
inline constexpr unsigned long IOMMU_IOAS_ALLOC = _IO(kIommufdType, 0x81);

struct iommu_iova_range {
	uint64_t start;
	uint64_t last;
};

struct iommu_ioas_iova_ranges {
	uint32_t size;
	uint32_t ioas_id;
	uint32_t num_iovas;
	uint32_t __reserved;
	uint64_t allowed_iovas;
	uint64_t out_iova_alignment;
};
inline constexpr unsigned long IOMMU_IOAS_IOVA_RANGES = _IO(kIommufdType, 0x84);

inline constexpr uint32_t IOMMU_IOAS_MAP_FIXED_IOVA = 1;
inline constexpr uint32_t IOMMU_IOAS_MAP_WRITEABLE = 2;
inline constexpr uint32_t IOMMU_IOAS_MAP_READABLE = 4;

struct iommu_ioas_map {
	uint32_t size;
	uint32_t flags;
	uint32_t ioas_id;
	uint32_t __reserved;
	uint64_t user_va;
	uint64_t length;
	uint64_t iova;
};
inline constexpr unsigned long IOMMU_IOAS_MAP = _IO(kIommufdType, 0x85);

struct iommu_ioas_unmap {
	uint32_t size;
	uint32_t ioas_id;
	uint64_t iova;
	uint64_t length;
};
inline constexpr unsigned long IOMMU_IOAS_UNMAP = _IO(kIommufdType, 0x86);

struct iommu_hw_info {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t data_len;
	uint64_t data_uptr;
	uint32_t out_data_type;
	uint8_t out_max_pasid_log2;
	uint8_t __reserved[3];
	uint64_t out_capabilities;
};
inline constexpr unsigned long IOMMU_GET_HW_INFO = _IO(kIommufdType, 0x8a);

/* Nesting (Linux 6.8+; layouts as include/uapi/linux/iommufd.h of 6.12). SMMUv3 nesting
 * (IOMMU_HWPT_DATA_ARM_SMMUV3, invalidations through a vIOMMU object) is 6.13+ uAPI. */
inline constexpr uint32_t IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
inline constexpr uint32_t IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2;

struct iommu_hw_info_vtd {
	uint32_t flags;
	uint32_t __reserved;
	uint64_t cap_reg;
	uint64_t ecap_reg;
};
/** VT-d ECAP_REG.NEST (bit 26): nested translation. */
inline constexpr uint64_t kVtdEcapNest = 1ull << 26;

inline constexpr uint32_t IOMMU_HWPT_ALLOC_NEST_PARENT = 1;
inline constexpr uint32_t IOMMU_HWPT_DATA_NONE = 0;
inline constexpr uint32_t IOMMU_HWPT_DATA_VTD_S1 = 1;

struct iommu_hwpt_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t pt_id;
	uint32_t out_hwpt_id;
	uint32_t __reserved;
	uint32_t data_type;
	uint32_t data_len;
	uint64_t data_uptr;
	uint32_t fault_id;
	uint32_t __reserved2;
};
inline constexpr unsigned long IOMMU_HWPT_ALLOC = _IO(kIommufdType, 0x89);

struct iommu_hwpt_vtd_s1 {
	uint64_t flags; ///< IOMMU_VTD_S1_SRE 1, EAFE 2, WPE 4
	uint64_t pgtbl_addr;
	uint32_t addr_width;
	uint32_t __reserved;
};

inline constexpr uint32_t IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0;
inline constexpr uint32_t IOMMU_VTD_INV_FLAGS_LEAF = 1;

struct iommu_hwpt_vtd_s1_invalidate {
	uint64_t addr;
	uint64_t npages;
	uint32_t flags;
	uint32_t __reserved;
};

struct iommu_hwpt_invalidate {
	uint32_t size;
	uint32_t hwpt_id;
	uint64_t data_uptr;
	uint32_t data_type;
	uint32_t entry_len;
	uint32_t entry_num; ///< in: entries given; out: entries the kernel handled
	uint32_t __reserved;
};
inline constexpr unsigned long IOMMU_HWPT_INVALIDATE = _IO(kIommufdType, 0x8d);

struct vfio_device_bind_iommufd {
	uint32_t argsz;
	uint32_t flags;
	int32_t iommufd;
	uint32_t out_devid;
};
inline constexpr unsigned long VFIO_DEVICE_BIND_IOMMUFD = _IO(VFIO_TYPE, VFIO_BASE + 18);

struct vfio_device_attach_iommufd_pt {
	uint32_t argsz;
	uint32_t flags;
	uint32_t pt_id;
};
inline constexpr unsigned long VFIO_DEVICE_ATTACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 19);

struct vfio_device_detach_iommufd_pt {
	uint32_t argsz;
	uint32_t flags;
};
inline constexpr unsigned long VFIO_DEVICE_DETACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 20);

} // namespace iodp::vfio::kabi
