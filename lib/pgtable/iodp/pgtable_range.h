/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Range walks: every translation of an IOVA range, table by table.
 *
 * Where walk() answers one address, walk_range() answers "what does [start, start + length)
 * map to?" by descending the tables once: each table entry in the range is read once, a
 * not-present upper entry skips everything it would map, and a leaf is reported as one run
 * however many 4 KiB pages it covers. This is what shadowing a guest's page table into a
 * kernel IOMMU needs after an invalidation (QEMU's vtd_page_walk does the same, page by
 * page). A control-path function: the sink is a virtual call per run, not per request.
 */

#include <iodp/pgtable.h>

#include <cstdint>

namespace iodp::pgtable {

/** [iova, iova + size) translates to [out, out + size) with perm (kPerm* bits). */
struct RangeRun {
	uint64_t iova = 0;
	uint64_t out = 0;
	uint64_t size = 0;
	uint8_t perm = 0;
};

/** [iova, iova + size) does not translate because of an entry other than a not-present one. */
struct RangeFault {
	uint64_t iova = 0;
	uint64_t size = 0;
	FaultKind fault = FaultKind::none;
	uint8_t stage = 1;
	int8_t level = 0;
};

/** Receives a range walk's results in IOVA order. */
class RangeSink {
public:
	virtual ~RangeSink() = default;
	virtual void run(const RangeRun &r) = 0;
	/** Default: ignored (the range is simply not mapped). */
	virtual void fault(const RangeFault &) {}
};

struct RangeStats {
	uint64_t entries = 0; ///< table entries read, both stages
	uint64_t runs = 0;    ///< runs reported
	uint64_t faults = 0;  ///< fault runs reported
};

/**
 * Report every translation of [start, start + length) (length 0: nothing) to @p sink, in
 * IOVA order, cut to the range. Permissions are those an access with privilege @p priv
 * (0 or kAccessPriv) gets; a leaf that gives such an access nothing (an x86 supervisor-only
 * page to an unprivileged access, an Arm page with the access flag clear) is a fault run.
 * Nested: each stage-1 leaf's output goes through stage 2, so runs end at stage-2 leaf
 * boundaries too and carry both stages' permissions. Reads only: no accessed/dirty
 * updates. A range partly outside the format's input range is a fault run (address size).
 */
RangeStats walk_range(const Translation &xlat, uint64_t start, uint64_t length, uint8_t priv,
		      RangeSink &sink);

} // namespace iodp::pgtable
