/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/* Private to drivers/emul: one device's state, shared by emul.cc and profiles.cc. */

#include <iodp/emul.h>
#include <iodp/mem.h>
#include <iodp/pgtable_builder.h>
#include <iodp/topo.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace iodp::emul {

enum class Profile : uint8_t { nic, nvme, random, zipf, stream, strict, storm, replay };
enum class Layout : uint8_t { vtd, smmu, vtd_nested, smmu_nested };

/**
 * Where the working set starts in IOVA space: above 4 GiB, so that no working set (up to
 * 64 GiB) reaches a VT-d MSI window (0xfee00000) or the SMMUv3 one (0x08000000).
 */
inline constexpr uint64_t kIovaBase = 1ull << 32;
/** Where guest RAM starts in guest-physical space (nested layouts), likewise. */
inline constexpr uint64_t kGpaBase = 1ull << 36;
/** The first MiB of the working set holds NIC descriptor rings and NVMe PRP lists. */
inline constexpr uint64_t kMeta = 1u << 20;
inline constexpr uint64_t kPage = 4096;
/** Requests a queue remembers (a power of two, more than a worker takes at once). */
inline constexpr unsigned kDepth = 2048;
/** strict: DMA buffers per queue, each mapped before and unmapped after its DMA. */
inline constexpr unsigned kSlots = 32;
/** PASID of a VT-d nested device's stage 1; CD 0 / no PASID on SMMUv3. */
inline constexpr uint32_t kNestedPasid = 1;

using Counter = dev::StatCounter;

/** What a queue remembers about a request until it is answered. */
struct Record {
	uint64_t iova;
	uint64_t host_page; ///< strict: where the slot's page is (the truth)
	uint32_t len;
	uint8_t access;
	uint8_t expect_fault;
	uint16_t slot;
};

/** strict: a slot's state. The worker owns mapped -> in flight -> DMA done; control the rest. */
enum SlotState : uint8_t { kUnmapped, kMapped, kInFlight, kDmaDone, kNeedInval, kUnmapping };

struct Slot {
	std::atomic<uint8_t> state{kUnmapped};
	uint64_t host_page = 0; ///< written before state becomes kMapped (release)
	uint64_t generation = 0;
};

struct Emul;

struct alignas(64) Queue {
	Emul *emul = nullptr;
	uint16_t id = 0;
	uint64_t rng = 0;
	uint64_t issued = 0;   ///< requests posted
	uint64_t answered = 0; ///< requests whose last completion came
	uint32_t answered_bytes = 0; ///< of the request being answered
	uint64_t cursor = 0;
	uint32_t sub = 0;
	std::unique_ptr<Record[]> recs;
	std::unique_ptr<Slot[]> slots;
	std::unique_ptr<std::byte[]> scratch;
	/** replay: requests made at configure, posted in a loop (cookies filled in on the way). */
	std::unique_ptr<dev::Request[]> replay;
	Counter requests, completions, faults, expected_faults, mismatches, dma_bytes;
};

struct Emul {
	dev::Device *dev = nullptr;
	Profile profile = Profile::random;
	Layout layout = Layout::vtd;
	uint16_t queues = 1;
	uint64_t ws = 64u << 20;
	uint64_t pgsize = kPage;
	uint32_t len = 64;
	unsigned faults_pm = 0;
	bool verify = false;
	bool dma = false;
	uint64_t vanish = 0;
	uint32_t group = 0;
	uint64_t seed = 1;

	GuestRam ram;
	/**
	 * ram as guest memory at guest-physical 0: strict and storm map their buffers with
	 * ioas_map_guest(), as a VMM maps guest RAM it owns (no check that a user address is
	 * mapped, which ioas_map() makes with a system call per map).
	 */
	GuestMemory ram_map;
	std::byte *host = nullptr;
	uint64_t npages = 0;      ///< ws / pgsize
	uint64_t data_pages = 0;  ///< 4 KiB pages after kMeta
	/** Its translation topology (lib/topo): the IOAS, HWPTs and the guest's stage 1. */
	std::unique_ptr<topo::Domain> dom;
	/* Copied from dom for the paths that read them. */
	uint32_t pasid = IODP_PASID_NONE;
	uint32_t ioas = 0, parent = 0, nested = 0;
	uint32_t hwpt = 0; ///< paging: the auto domain the attach made
	uint16_t asid = 0;
	int numa_node = -1; ///< of guest RAM, found once at configure
	std::vector<uint32_t> zipf;         ///< samples: data page numbers
	std::unique_ptr<Queue[]> q;
	std::unique_ptr<std::byte[]> payload; ///< what dma=1 writes
	std::atomic<uint64_t> commands{0};
	uint64_t storm_cursor = 0; ///< storm: the next page of its IOVA window to map

	bool nested_layout() const { return layout == Layout::vtd_nested || layout == Layout::smmu_nested; }
	/** Guest page of working-set page @p p: nested layouts scatter them (stage 1 is not 1:1). */
	uint64_t scatter(uint64_t p) const { return nested_layout() ? (p * 1000003 + 7) % npages : p; }
	/** The host address @p iova must translate to (static mappings), or 0 if unmapped. */
	uint64_t truth(uint64_t iova) const
	{
		if (iova < kIovaBase || iova - kIovaBase >= ws)
			return 0;
		const uint64_t off = iova - kIovaBase;
		return reinterpret_cast<uint64_t>(host) + scatter(off / pgsize) * pgsize +
		       off % pgsize;
	}
	/** strict: IOVA of queue @p q's slot @p s (page 0 of each queue's 2 MiB stays mapped). */
	uint64_t slot_iova(unsigned qid, unsigned s) const
	{
		const uint64_t region = kIovaBase + ((ws + (2u << 20) - 1) & ~uint64_t{(2u << 20) - 1});
		return region + uint64_t{qid} * (2u << 20) + uint64_t{s + 1} * kPage;
	}
};

/** The burst functions of @p profile. */
dev::RxBurst rx_burst_of(Profile profile);
uint16_t tx_burst(void *queue, const dev::Completion *cpls, uint16_t n);
/** replay: answers counted, not checked (the engine's cost is what that profile measures). */
uint16_t tx_burst_replay(void *queue, const dev::Completion *cpls, uint16_t n);
/** replay: requests in each queue's loop (a power of two). */
uint64_t replay_length(const Emul &e);
/** replay: fill each queue's loop, uniform over the data pages. */
void make_replay(Emul &e);

inline uint64_t next_rand(uint64_t &s)
{
	// xorshift64*: a few cycles, good enough for traffic shapes.
	s ^= s >> 12;
	s ^= s << 25;
	s ^= s >> 27;
	return s * 0x2545f4914f6cdd1dull;
}

} // namespace iodp::emul
