/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Force-included (-include) when iodp builds the kernel's iommufd selftest from Debian's
 * linux-source-6.12 (6.12.117): that tree's iommufd.c and iommufd_utils.h were backported
 * with five names its own uapi and test headers lack. They are supplied here with the
 * values of the kernel release that introduced them (6.15/6.16), so the test source itself
 * is compiled unmodified.
 */
#ifndef IODP_SELFTEST_COMPAT_H
#define IODP_SELFTEST_COMPAT_H

#include <linux/iommufd.h>

/* enum iommu_hw_info_type: DEFAULT is 0 (an alias of NONE: "whatever the driver has"). */
#define IOMMU_HW_INFO_TYPE_DEFAULT 0
/* iommu_hw_info.flags: in_data_type names the type the caller wants. */
#define IOMMU_HW_INFO_FLAG_INPUT_TYPE (1 << 0)
/*
 * struct iommu_hw_info: in newer kernels `union { __u32 in_data_type; __u32 out_data_type; }`
 * at the same offset; the alias gives the same layout.
 */
#define in_data_type out_data_type
/* iommufd_test.h: a mock device that supports PASIDs, and its PASID width. */
#define MOCK_FLAGS_DEVICE_PASID (1 << 2)
#define MOCK_PASID_WIDTH 20

#endif
