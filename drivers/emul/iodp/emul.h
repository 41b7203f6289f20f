/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * drivers/emul: emulated devices that produce translation traffic shaped like real ones.
 *
 * devargs: emulN,key=value,...
 *   profile=nic|nvme|random|zipf|stream|strict|storm|replay
 *                   what the device does (default random); storm sends no requests: its
 *                   driver side keeps its invalidation queue full of single-page
 *                   IOAS_UNMAPs (a command storm, for fairness tests); replay posts requests
 *                   made once at configure (uniform single-page reads and writes over the
 *                   working set, len bytes) and counts the answers without checking them,
 *                   so what a benchmark of it times is the engine
 *   format=vtd|smmu|vtd-nested|smmu-nested       who owns the tables: the engine (paging,
 *                                                 in that IOMMU's format) or the guest
 *                                                 (a stage 1 in guest RAM over a parent)
 *   queues=N        request queues (1..16, default 1)
 *   ws=SIZE         working set: guest RAM the traffic covers (default 64M, >= 4M)
 *   pgsize=4k|2m    page size of the mapping (default 4k)
 *   len=BYTES       request length for random/zipf/stream (defaults 64/64/256)
 *   faults=N        per mille of requests sent to an unmapped IOVA (expected faults)
 *   verify=0|1      check every completion against the device's own truth
 *   dma=0|1         really copy the payload to/from the translated host address
 *   vanish=N        disappear after N requests (hot unplug)
 *   group=N         IOMMU group to join (0: a new one)
 *   seed=N          traffic seed
 */

#include <iodp/dev.h>

namespace iodp::emul {

/** The driver, for dev::Registry::add(). */
const dev::Driver &driver();

} // namespace iodp::emul
