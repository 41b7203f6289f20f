/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Real IOMMU page-table formats, walked in software.
 *
 * Formats (each a compile-time policy inside the walker; no virtual call per level):
 *  - x86-64 4- and 5-level paging: VT-d first stage, AMD v2, CPU SVA tables.
 *  - VT-d second stage, 3/4/5 levels.
 *  - Arm VMSAv8-64 stage 1 and stage 2 (4 KiB, 16 KiB, 64 KiB granules; stage-2
 *    concatenated start tables).
 *  - Nested: a stage-1 walk whose table pointers and output go through a stage-2 walk
 *    (x86-64 over VT-d second stage; Arm stage 1 over Arm stage 2).
 *  - Mock: the geometry of the Linux iommufd selftest's mock IOMMU (2 KiB pages, 1 MiB
 *    blocks, a 32-bit input), so the kernel's selftest runs against iodp (lib/ctl's
 *    test commands). Not hardware: not in kAllFormats.
 *
 * A walk reads guest memory only through GuestMemory, so a forged table can at worst produce
 * a fault record. Walks are read-only unless the stage enables hardware accessed/dirty
 * updates (TableConfig::update_accessed).
 *
 * Level numbering is the architecture's: x86-64 and VT-d 5..1 (1 is the 4 KiB table),
 * Arm 0..3 (3 is the granule-sized page table).
 */

#include <iodp/mem.h>
#include <iodp/status.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace iodp::pgtable {

enum class Format : uint8_t {
	x86_64_4l,
	x86_64_5l,
	vtd_ss_3l,
	vtd_ss_4l,
	vtd_ss_5l,
	arm_s1,
	arm_s2,
	/**
	 * The selftest mock domain's: VT-d second-stage entries with the output address from
	 * bit 11, 2 KiB pages (height 0), 1 MiB blocks (height 1), 4 KiB tables of 512 entries,
	 * 32-bit input (three levels, a 64-byte start table).
	 */
	mock,
};
/** The hardware formats (Format::mock is iodp's model of the kernel's test IOMMU). */
inline constexpr Format kAllFormats[] = {Format::x86_64_4l, Format::x86_64_5l,
					 Format::vtd_ss_3l, Format::vtd_ss_4l,
					 Format::vtd_ss_5l, Format::arm_s1, Format::arm_s2};

/** Format names as the tools spell them: "x86-64-4l", "vtd-ss-3l", "arm-s1", ... */
std::string_view format_name(Format format);
std::optional<Format> parse_format(std::string_view name);
/** 2 for the second-stage formats (vtd-ss-*, arm-s2, mock), else 1. */
int format_stage(Format format);

/** What a request wants to do; combine with |. Unprivileged unless kAccessPriv is set. */
inline constexpr uint8_t kAccessRead = 1;
inline constexpr uint8_t kAccessWrite = 2;
inline constexpr uint8_t kAccessExec = 4;
inline constexpr uint8_t kAccessPriv = 8;

/** Effective permissions of a translation. */
inline constexpr uint8_t kPermRead = 1;
inline constexpr uint8_t kPermWrite = 2;
inline constexpr uint8_t kPermExec = 4;
/** "rwx"-ordered letters, e.g. "rw", "rx"; "-" for none. */
std::string perm_letters(uint8_t perm);

enum class FaultKind : uint8_t {
	none,
	not_present,       ///< invalid entry (or an encoding the format does not allow there)
	permission,        ///< the leaf (or a level above it) does not allow the access
	address_size,      ///< input outside the format's range (non-canonical, >= 2^ias)
	reserved_bit,      ///< a reserved bit is set in an entry
	bad_table_pointer, ///< a table fetch outside guest memory
	access_flag,       ///< Arm AF clear (and hardware AF update off)
	loop,              ///< a table pointer back to a table already on this walk's path
	/* Not from a walk: what a translation context (PASID / CD / STE) says. */
	not_attached,      ///< no translation attached for the device / PASID (DMA blocked)
	bad_config,        ///< the context entry is malformed (invalid CD, STE, ...)
};
std::string_view fault_name(FaultKind kind);

/** One translation stage, as a user describes it. */
struct TableConfig {
	Format format = Format::x86_64_4l;
	/** Address of the start-level table (output space of the stage below, if any). */
	uint64_t root = 0;
	/** Granule as a shift: 12, 14 or 16 (Arm only; x86-64 and VT-d are always 12, mock 11). */
	unsigned granule_shift = 12;
	/** Input address bits; 0 picks the default (48 for Arm, fixed for x86-64 and VT-d). */
	unsigned ias = 0;
	/** Start level in the architecture's numbering; -1 derives it from ias and granule. */
	int start_level = -1;
	/**
	 * Behave as hardware with accessed/dirty updates on (x86 A/D, VT-d SSADE, Arm HA): set
	 * the accessed flag of each entry used and the dirty flag of the leaf on writes,
	 * and for Arm set AF instead of raising an access-flag fault.
	 */
	bool update_accessed = false;
};

/** A TableConfig in one expression (the fields in their order; defaults as above). */
constexpr TableConfig table_config(Format format, uint64_t root = 0, unsigned granule_shift = 12,
				   unsigned ias = 0, int start_level = -1)
{
	TableConfig c;
	c.format = format;
	c.root = root;
	c.granule_shift = granule_shift;
	c.ias = ias;
	c.start_level = start_level;
	return c;
}

/**
 * A validated stage with its geometry worked out. Heights count levels above the leaf
 * table: height 0 is the granule-sized page table (x86 level 1, Arm level 3).
 */
struct Stage {
	Format format = Format::x86_64_4l;
	uint64_t root = 0;
	uint8_t granule_shift = 12;
	uint8_t bits_per_level = 9; ///< granule_shift - 3 (mock: 9, its tables are 2 granules)
	uint8_t ias = 48;
	uint8_t start_height = 3;
	bool update_accessed = false;

	/** Lowest input bit that indexes the table at @p height. */
	unsigned shift(int height) const { return granule_shift + height * bits_per_level; }
	/** Index bits of the table at @p height (the start table may have more or fewer). */
	unsigned index_bits(int height) const
	{
		return height == start_height ? ias - shift(height) : bits_per_level;
	}
	/** Bytes of the table at @p height (a stage-2 start table may be concatenated). */
	uint64_t table_bytes(int height) const { return 8ull << index_bits(height); }
	/**
	 * Bytes of a table below the start level: what a builder's pool page holds (the
	 * granule, except for Format::mock).
	 */
	uint64_t table_page_bytes() const { return 8ull << bits_per_level; }
	/** The architecture's level number of @p height. */
	int level(int height) const;
	int stage() const { return format_stage(format); }
};

/** Check @p config and work out its geometry; EINVAL with a message if it is wrong. */
Result<Stage> make_stage(const TableConfig &config);

/** A whole translation: one stage, or stage 1 nested over stage 2. */
struct Translation {
	const GuestMemory *mem = nullptr;
	Stage s1;
	std::optional<Stage> s2;
};

/**
 * Whether hardware combines stage 1 @p s1 over stage 2 @p s2 (the pairs the walker nests):
 * x86-64 over a VT-d second stage, Arm stage 1 over Arm stage 2.
 */
bool can_nest(Format s1, Format s2);

/**
 * Build a Translation. A nested pair must be one that hardware combines (can_nest()).
 * @p mem must outlive the result.
 */
Result<Translation> make_translation(const GuestMemory &mem, const TableConfig &s1,
				     const TableConfig *s2 = nullptr);

/**
 * A table below the root of stage 1 (or of the only stage), as a paging-structure cache
 * keeps it: where it is in guest memory and what the levels above it allowed.
 */
struct TableRef {
	/**
	 * Address in the walker's memory (nested: after stage 2, so resuming there reads no
	 * stage-2 tables); 0 when the table is not contiguous there and cannot be cached.
	 */
	uint64_t table = 0;
	int8_t height = -1; ///< height above the leaf table; -1: none
	uint8_t acc = 0;    ///< the format's permission state from the levels above (opaque)

	bool valid() const { return height >= 0 && table != 0; }
	bool operator==(const TableRef &) const = default;
};

/** WalkRequest::flags: nested walks stop at the stage-1 leaf; out is its IPA. */
inline constexpr uint8_t kWalkStage1Only = 1;

struct WalkRequest {
	uint64_t iova = 0;
	uint8_t access = kAccessRead; ///< kAccess* bits
	uint8_t flags = 0;            ///< kWalk* bits
	/**
	 * Begin at this table instead of the root (a paging-structure cache hit for iova). A
	 * resumed walk checks for table loops only below it, as hardware does.
	 */
	TableRef start;
};

/** A WalkRequest from the root, in one expression. */
constexpr WalkRequest walk_request(uint64_t iova, uint8_t access = kAccessRead)
{
	WalkRequest r;
	r.iova = iova;
	r.access = access;
	return r;
}

struct WalkResult {
	uint64_t out = 0;       ///< output address, page offset included
	uint64_t page_size = 0; ///< leaf size (nested: the smaller of the two leaves)
	uint8_t perm = 0;       ///< effective kPerm* bits for the request's privilege
	FaultKind fault = FaultKind::none;
	uint8_t stage = 0;      ///< faulting stage: 2 for a second-stage format, else 1
	int8_t level = 0;       ///< architecture level of the entry that faulted
	uint8_t reads = 0;      ///< table entries read, both stages
	/**
	 * Stage-1 tables below the root that this walk read, lowest first: [0] holds the
	 * entry the walk ended on, [1] its parent. What a paging-structure cache fills from.
	 */
	TableRef path[2];

	bool ok() const { return fault == FaultKind::none; }
	bool operator==(const WalkResult &) const = default;
};

/** One step of a traced walk: the entry the walker just read. */
struct TraceStep {
	int stage = 1;            ///< 1 or 2 (the format's stage)
	int level = 0;            ///< architecture level of the table
	bool for_stage1 = false;  ///< stage-2 step translating a stage-1 table or output address
	bool for_output = false;  ///< ...and it is the stage-1 output (not a table entry)
	uint64_t input = 0;       ///< the address this stage is translating
	uint64_t table = 0;       ///< table address in this stage's output space
	uint64_t index = 0;
	uint64_t entry = 0;       ///< raw descriptor
	Format format = Format::x86_64_4l;
	int height = 0;
	uint8_t granule_shift = 12;
};

/** Receives each step of a traced walk; only used by walk() with a tracer (debug path). */
class WalkTracer {
public:
	virtual ~WalkTracer() = default;
	virtual void step(const TraceStep &step) = 0;
};

/** Human-readable decoding of an entry: "P RW US PS A D XD -> 0x1234000 (table)". */
std::string describe_entry(Format format, uint64_t entry, int height, uint8_t granule_shift);

/** Walk one address. Thread-safe for concurrent walks of the same tables. */
WalkResult walk(const Translation &xlat, uint64_t iova, uint8_t access,
		WalkTracer *tracer = nullptr);
/** Walk one request (resume point and flags included). */
WalkResult walk(const Translation &xlat, const WalkRequest &req);

/** Walks kept in flight at once by walk_burst(): enough to cover DRAM latency. */
inline constexpr size_t kWalkInFlight = 32;

/**
 * Walk @p n requests interleaved: every walk advances one table entry at a time and the
 * entry it needs next is prefetched while the others advance, so up to kWalkInFlight table
 * reads overlap. results[i] is exactly what walk(xlat, reqs[i]) gives.
 */
void walk_burst(const Translation &xlat, const WalkRequest *reqs, WalkResult *results,
		size_t n);

} // namespace iodp::pgtable
