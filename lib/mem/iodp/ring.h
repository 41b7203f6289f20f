/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * DPDK element rings in memory iodp owns, not in an EAL memzone: library-mode users have
 * no EAL, and an ipc device's rings live in a memfd its driver maps too. Workers' fault
 * rings, coherence's invalidation rings, devices' command rings and ipc queues all come
 * from here. Not installed: a library-internal helper.
 */

#include <iodp/status.h>

#include <cstddef>
#include <string_view>

struct rte_ring;

namespace iodp::mem {

/**
 * The bytes an element ring of @p entries slots of @p elem_size bytes takes. -EINVAL when
 * DPDK refuses the shape (@p entries not a power of two or too large, @p elem_size not a
 * multiple of 4).
 */
Result<size_t> ring_bytes(unsigned elem_size, unsigned entries);

/**
 * Set up a ring at @p mem, ring_bytes() that the caller owns (the heap, a shared memfd).
 * @p name is cut to what rte_ring keeps (RTE_RING_NAMESIZE - 1 bytes); it names nothing
 * global, as no memzone is made. @p flags: RING_F_SP_ENQ, RING_F_SC_DEQ, ... One of
 * @p entries stays free, as in every rte_ring. Returns rte_ring_init's error.
 */
Status ring_init(rte_ring *mem, std::string_view name, unsigned entries, unsigned flags);

/**
 * A ring in ring_bytes() of zeroed, 64-byte aligned heap memory; free it with std::free().
 * -EINVAL for a shape DPDK refuses, -ENOMEM without memory.
 */
Result<rte_ring *> ring_alloc(std::string_view name, unsigned elem_size, unsigned entries,
			      unsigned flags);

} // namespace iodp::mem
