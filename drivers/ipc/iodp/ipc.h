/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * drivers/ipc: a device whose driver is another process (see <iodp/ipc_proto.h>).
 *
 * devargs: ipcN,key=value,...
 *   path=FILE       the unix socket to listen on (default /tmp/iodp-<name>.sock)
 *   queues=N        request queues (1..16, default 1)
 *   entries=N       slots per ring (a power of two, 64..65536, default 1024)
 *   format=vtd|smmu the IOMMU whose page-table format the device's IOAS uses (default vtd)
 *   group=N         IOMMU group to join (0: a new one)
 *
 * The device listens from configure on; one driver attaches at a time. When the driver
 * leaves (BYE, a closed socket, or a protocol error) the device is gone: the engine stops
 * polling it and closes it, which unmaps everything the driver shared.
 */

#include <iodp/dev.h>

namespace iodp::ipc {

/** The driver, for dev::Registry::add(). */
const dev::Driver &driver();

} // namespace iodp::ipc
