/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * drivers/vfio as a dev::Driver: a real PCI device as a port of the engine and iodp-pmd.
 *
 * devargs: vfioN,dev=ADDRESS[,iommu=auto|type1|iommufd][,ioas=ID][,mode=auto|shadow|nested]
 *   dev=ADDRESS   a PCI address (0000:00:03.0 or 00:03.0) bound to vfio-pci, or a VFIO
 *                 device cdev path (/dev/vfio/devices/vfioN, which means iommufd)
 *   iommu=        the kernel path (default auto: iommufd when /dev/iommu and the device's
 *                 cdev exist, else type1)
 *   ioas=ID       attach to this iodp IOAS (default: a new one of its own), or paging or
 *                 nested HWPT (a nested one: the guest's stage 1, followed as mode= says)
 *   mode=         for a nested HWPT (vfio::Nesting): shadow (iodp shadows the guest's table
 *                 into the kernel), nested (the kernel nests in hardware, refused where it
 *                 cannot) or auto (default: nested where the kernel can, else shadow)
 *
 * The hardware translates for the device, so the port has no request queue (0 queues): the
 * engine lists it and reports its stats (the driver's own counters: kernel_calls,
 * kernel_maps, kernel_unmaps, kernel_bytes_mapped, kernel_pages_mapped, kernel_errors;
 * shadow_syncs and shadow_degraded in shadow mode, nested_invalidate_calls nested) but
 * polls nothing. See <iodp/vfio.h> for the library API behind it.
 */

#include <iodp/dev.h>

namespace iodp::vfio {

/** The driver, for dev::Registry::add(). */
const dev::Driver &driver();

} // namespace iodp::vfio
