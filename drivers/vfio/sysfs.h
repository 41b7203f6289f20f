/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/* sysfs facts about PCI devices and IOMMU groups (private to drivers/vfio). */

#include <iodp/status.h>

#include <string>
#include <vector>

namespace iodp::vfio::sysfs {

/** "0000:00:03.0" from "0000:00:03.0" or "00:03.0" (lower case); EINVAL naming the text. */
Result<std::string> normalize_bdf(const std::string &text);
/** The PCI address behind a device cdev path "/dev/vfio/devices/vfioN". */
Result<std::string> bdf_of_cdev(const std::string &sys, const std::string &cdev);
/** The driver bound to @p bdf ("" when none). */
std::string driver_of(const std::string &sys, const std::string &bdf);
/** The IOMMU group number of @p bdf (ENODEV naming why there is none). */
Result<int> group_of(const std::string &sys, const std::string &bdf);
/** The devices of IOMMU group @p group. */
std::vector<std::string> group_devices(const std::string &sys, int group);
/** The device's cdev name ("vfio0") or "" when the kernel made none. */
std::string cdev_of(const std::string &sys, const std::string &bdf);
/**
 * Checks that @p bdf exists, is bound to vfio-pci and that every other device of its group
 * is viable (no driver, vfio-pci, pci-stub or pcieport): the kernel's rule. Returns the group.
 */
Result<int> check_usable(const std::string &sys, const std::string &bdf);

} // namespace iodp::vfio::sysfs
