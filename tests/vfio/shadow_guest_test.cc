/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * shadow_guest_test: shadow mode against a real kernel and a real IOMMU (QEMU's intel-iommu),
 * run as /init's child inside a QEMU guest like vfio_guest_test (tests/vfio/run_guest.py;
 * cases named shadow-*). A guest x86-64 first-stage table is built with iodp's TableBuilder
 * in "guest RAM" (memory of this process, given guest-physical addresses by an iodp IOAS);
 * a nested VT-d HWPT over a NEST_PARENT paging HWPT on that IOAS is what the edu device is
 * attached to, so the kernel holds iodp's shadow of it. Then iodp translates in software
 * and the edu device DMAs through the real IOMMU: the bytes land where iodp said, or the
 * DMA is blocked where iodp said fault. "Blocked" is checked by comparing all of guest RAM
 * with a model of what the DMAs iodp allowed wrote.
 *
 *   shadow_guest_test --case NAME --iommu type1|iommufd
 *
 * Prints "IODP-CASE NAME PASS" or "IODP-CASE NAME FAIL: why".
 */
#include <iodp/iodp.h>
#include <iodp/ctl.h>
#include <iodp/pgtable_builder.h>
#include <iodp/vfio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "guest_case.h"

using namespace iodp;

namespace {

using namespace iodp::guest;

double now_s()
{
	return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
		.count();
}

/* sysfs: the edu device on vfio-pci --------------------------------------------------------- */

std::string edu_on_vfio()
{
	std::vector<std::string> edus;
	DIR *d = ::opendir("/sys/bus/pci/devices");
	CHECK(d != nullptr);
	while (dirent *e = ::readdir(d)) {
		const std::string dir = std::string("/sys/bus/pci/devices/") + e->d_name;
		if (e->d_name[0] != '.' && read_file(dir + "/vendor") == "0x1234" &&
		    read_file(dir + "/device") == "0x11e8")
			edus.push_back(e->d_name);
	}
	::closedir(d);
	if (edus.empty())
		fail("no edu device (1234:11e8) in the guest");
	std::sort(edus.begin(), edus.end());
	const std::string &bdf = edus[0];
	if (driver_of(bdf) != "vfio-pci") {
		if (!driver_of(bdf).empty())
			write_file("/sys/bus/pci/devices/" + bdf + "/driver/unbind", bdf);
		write_file("/sys/bus/pci/devices/" + bdf + "/driver_override", "vfio-pci");
		write_file("/sys/bus/pci/drivers/vfio-pci/bind", bdf);
	}
	CHECK(driver_of(bdf) == "vfio-pci");
	return bdf;
}

/* The edu device: DMA between its 4 KiB buffer and guest IOVAs (28-bit DMA mask) --------- */

constexpr uint64_t kEduBuf = 0x40000;

class Edu {
public:
	explicit Edu(vfio::Device &d) : d_(d)
	{
		CHECK(rd(0x00) == 0x010000ed);
		uint16_t cmd = 0;
		must(d_.read(vfio::kConfigRegion, 4, &cmd, 2), "config read");
		cmd |= 0x6; // memory space + bus master
		must(d_.write(vfio::kConfigRegion, 4, &cmd, 2), "config write");
	}
	/** IOVA -> the device's buffer at @p off. */
	void to_device(uint64_t iova, uint32_t off, uint32_t len)
	{
		CHECK(off + len < 4096); // QEMU 7.2's edu aborts on byte 4095
		dma(iova, kEduBuf + off, len, 1);
	}
	/** The device's buffer at @p off -> IOVA. */
	void to_ram(uint32_t off, uint64_t iova, uint32_t len)
	{
		CHECK(off + len < 4096);
		dma(kEduBuf + off, iova, len, 3);
	}
	uint64_t count = 0;

private:
	uint32_t rd(uint64_t off)
	{
		uint32_t v = 0;
		must(d_.read(vfio::kBar0Region, off, &v, 4), "edu read");
		return v;
	}
	void wr(uint64_t off, uint32_t v) { must(d_.write(vfio::kBar0Region, off, &v, 4), "edu write"); }
	void dma(uint64_t src, uint64_t dst, uint32_t len, uint32_t cmd)
	{
		CHECK(src < (1u << 28) && dst < (1u << 28));
		wr(0x80, static_cast<uint32_t>(src));
		wr(0x88, static_cast<uint32_t>(dst));
		wr(0x90, len);
		wr(0x98, cmd);
		// QEMU's edu finishes a DMA in a timer 100 ms of virtual time later. The guest
		// sleeps while it waits: run_guest.py's -icount sleep=off then jumps the clock
		// to that deadline, so a DMA costs the instructions run, not 100 ms of wall time.
		const double end = now_s() + 10;
		while (rd(0x98) & 1) {
			if (now_s() > end)
				fail("edu DMA did not finish in 10 s");
			std::this_thread::sleep_for(std::chrono::milliseconds(2));
		}
		count++;
	}
	vfio::Device &d_;
};

/* The bench: guest RAM, its IOAS, a guest stage 1, the edu device shadowing it ------------- */

constexpr uint64_t MiB = 1ull << 20;
constexpr uint64_t kGpa = 0x100000000;  ///< guest RAM's guest-physical base
constexpr uint64_t kRam = 104 * MiB;    ///< [0, 64M) run, [64M, 96M) pages, [96M, 104M) tables
constexpr uint64_t kTables = 96 * MiB;
constexpr uint8_t kRWU = pgtable::kMapRead | pgtable::kMapWrite | pgtable::kMapUser;
constexpr uint8_t kROU = pgtable::kMapRead | pgtable::kMapUser;
constexpr uint32_t kFixedRW =
	IODP_IOAS_MAP_FIXED_IOVA | IODP_IOAS_MAP_READABLE | IODP_IOAS_MAP_WRITEABLE;

struct Bench {
	ctl::Ctx ctx;
	uint8_t *ram = nullptr;
	std::vector<uint8_t> model; ///< what guest RAM must hold
	uint32_t ioas = 0, parent = 0, nested = 0;
	pgtable::TablePool pool;
	pgtable::TableBuilder s1;
	std::unique_ptr<vfio::Device> dev;
	std::unique_ptr<Edu> edu;
	std::mt19937_64 rng{20261130};

	/** SMMUv3: the CD table (one CD) in guest RAM, and the CD's ASID. */
	static constexpr uint64_t kCdOff = kTables - 3 * 4096;
	static constexpr uint16_t kAsid = 9;
	ctl::IommuModel viommu;

	/**
	 * Stage 2 maps guest RAM as two mappings: the run's memory [0, 64M) and the rest. The
	 * device's vIOMMU is @p model: a VT-d first stage (x86-64 table), or an SMMUv3 STE ->
	 * CD 0 -> Arm stage-1 table, all in guest RAM.
	 */
	explicit Bench(vfio::Iommu iommu, bool coalesce = true,
		       vfio::Nesting mode = vfio::Nesting::auto_select,
		       ctl::IommuModel model_ = ctl::IommuModel::vtd)
		: viommu(model_)
	{
		const bool smmu = viommu == ctl::IommuModel::smmuv3;
		void *p = ::mmap(nullptr, kRam, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				 -1, 0);
		CHECK(p != MAP_FAILED);
		ram = static_cast<uint8_t *>(p);
		std::memset(ram, 0, kRam);
		model.assign(kTables, 0);
		ioas = must(ctx.ioas_alloc(), "ioas_alloc");
		must(ctx.ioas_map(ioas, kFixedRW, kGpa, ram, 64 * MiB), "map guest RAM (run)");
		must(ctx.ioas_map(ioas, kFixedRW, kGpa + 64 * MiB, ram + 64 * MiB, kRam - 64 * MiB),
		     "map guest RAM (rest)");
		pool = pgtable::TablePool(kGpa + kTables, reinterpret_cast<std::byte *>(ram + kTables),
					  kRam - kTables, 4096);
		s1 = must(pgtable::TableBuilder::create(
				  pgtable::table_config(smmu ? pgtable::Format::arm_s1
							     : pgtable::Format::x86_64_4l),
				  &pool),
			  "table");
		s1.set_max_leaf(4096); // 4 KiB leaves, as a guest's DMA API makes them
		vfio::Options opt;
		opt.iommu = iommu;
		opt.shadow.coalesce = coalesce;
		opt.mode = mode;
		opt.model = viommu;
		dev = must(vfio::Device::open(ctx, edu_on_vfio(), opt), "open");
		const uint32_t id = dev->ctl_id();
		parent = must(ctx.hwpt_alloc_paging(id, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0),
			      "nest parent");
		if (smmu) {
			// CD 0: T0SZ 16 (48-bit input), valid, AArch64, the ASID; TTB0 the table.
			const uint64_t cd[2] = {16 | (1ull << 31) | (1ull << 41) |
						(uint64_t{kAsid} << 48), s1.root()};
			std::memcpy(ram + kCdOff, cd, sizeof(cd));
			std::memcpy(model_ram(kCdOff), cd, sizeof(cd));
			// STE: valid, config 5 (stage 1 translates), S1ContextPtr, S1CDMax 0.
			nested = must(ctx.hwpt_alloc_nested(
					      id, parent, 0, 0,
					      ctl::SmmuV3Data{{1 | (5ull << 1) | (kGpa + kCdOff), 0}}),
				      "nested hwpt (SMMUv3 STE)");
		} else {
			nested = must(ctx.hwpt_alloc_nested(id, parent, 0, 0,
							    ctl::VtdS1Data{0, s1.root(), 48}),
				      "nested hwpt");
		}
		CHECK(must(dev->attach(nested), "attach to the nested hwpt") == nested);
		std::printf("  %s: %s, %s\n", dev->bdf().c_str(), dev->path_reason().c_str(),
			    dev->nesting_reason().c_str());
		CHECK(dev->stats().shadow);
		edu = std::make_unique<Edu>(*dev);
		// The device's buffer gets a pattern from a page the guest maps for it.
		const uint64_t src = 0xff00000;
		for (uint32_t i = 0; i < 4096; i++)
			ram[kTables - 4096 + i] = static_cast<uint8_t>(i * 7 + 3);
		std::memcpy(model.data() + kTables - 4096, ram + kTables - 4096, 4096);
		map(src, kTables - 4096, 4096, kROU);
		invalidate_page(src);
		edu->to_device(src, 0, 2048);
		edu->to_device(src + 2048, 2048, 2047); // QEMU 7.2's edu refuses to touch byte 4095
		unmap(src, 4096);
		invalidate_page(src);
	}
	uint8_t *model_ram(uint64_t off) { return model.data() + off; }
	~Bench()
	{
		if (dev != nullptr)
			dev->close();
		::munmap(ram, kRam);
	}

	void map(uint64_t iova, uint64_t ram_off, uint64_t len, uint8_t perm)
	{
		must(s1.map(iova, kGpa + ram_off, len, perm), "guest stage-1 map");
	}
	void unmap(uint64_t iova, uint64_t len) { must(s1.unmap(iova, len), "guest stage-1 unmap"); }

	/** One IOMMU_HWPT_INVALIDATE call: (addr, npages) entries (npages ~0: everything). */
	void invalidate(const std::vector<std::pair<uint64_t, uint64_t>> &ranges)
	{
		std::vector<iodp_hwpt_vtd_s1_invalidate> e;
		for (auto [addr, npages] : ranges)
			e.push_back({addr, npages, 0, 0});
		uint32_t handled = 0;
		must(ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_S1, e.data(),
					 sizeof(e[0]), static_cast<uint32_t>(e.size()), &handled),
		     "hwpt_invalidate");
		CHECK(handled == e.size());
	}
	void invalidate_all() { invalidate({{0, UINT64_MAX}}); }
	/** One page, as the model's guest driver would: a VTD_S1 entry, or TLBI_NH_VA + sync. */
	void invalidate_page(uint64_t iova)
	{
		if (viommu == ctl::IommuModel::smmuv3)
			cmdq({tlbi_va(iova)});
		else
			invalidate({{iova, 1}});
	}

	/* SMMUv3: the guest's command queue (IODP_HWPT_INVALIDATE_DATA_SMMUV3_CMDQ) */
	/** The guest's completion word: VT-d inv_wait's status, SMMUv3 CMD_SYNC's MSI. */
	static constexpr uint64_t kStatusOff = kTables - 2 * 4096;
	uint32_t syncs = 0;
	static std::array<uint64_t, 2> tlbi_va(uint64_t iova)
	{
		return {0x12 | (uint64_t{kAsid} << 48), iova}; // TLBI_NH_VA, one page
	}
	static std::array<uint64_t, 2> tlbi_asid() { return {0x11 | (uint64_t{kAsid} << 48), 0}; }
	/**
	 * The commands, then a CMD_SYNC (CS=SIG_IRQ) whose MSI write to guest RAM must have
	 * happened when the call returns (and only then: the kernel holds the view).
	 */
	void cmdq(std::vector<std::array<uint64_t, 2>> q)
	{
		syncs++;
		q.push_back({0x46 | (1 << 12) | (uint64_t{syncs} << 32), kGpa + kStatusOff});
		uint32_t handled = 0;
		must(ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_SMMUV3_CMDQ, q.data(),
					 16, static_cast<uint32_t>(q.size()), &handled),
		     "SMMUv3 command queue");
		CHECK(handled == q.size());
		uint32_t msi;
		std::memcpy(&msi, ram + kStatusOff, sizeof(msi));
		CHECK(msi == syncs);
		std::memcpy(model_ram(kStatusOff), &msi, sizeof(msi));
	}

	/**
	 * iodp translates a write of @p len bytes at @p iova; the edu device writes them from
	 * its buffer at @p off through the real IOMMU. Returns whether iodp said it lands (the
	 * model then holds the bytes where iodp said).
	 */
	bool dma(uint64_t iova, uint32_t off, uint32_t len)
	{
		const ctl::Translated t = must(ctx.translate(dev->ctl_id(), std::nullopt, iova,
							     pgtable::kAccessWrite),
					       "translate");
		edu->to_ram(off, iova, len);
		if (t.fault != pgtable::FaultKind::none)
			return false;
		const uint64_t at = t.host - reinterpret_cast<uintptr_t>(ram);
		CHECK(at + len <= kTables);
		for (uint32_t i = 0; i < len; i++)
			model[at + i] = static_cast<uint8_t>((off + i) * 7 + 3);
		if (std::memcmp(ram + at, model.data() + at, len) != 0)
			fail("DMA to iova 0x" + hex(iova) + ": the bytes are not where iodp said (ram +0x" +
			     hex(at) + ")");
		return true;
	}
	/** Guest RAM is exactly what the allowed DMAs wrote: the blocked ones wrote nothing. */
	void expect_ram_is_model(const char *when)
	{
		if (std::memcmp(ram, model.data(), kTables) == 0)
			return;
		uint64_t i = 0;
		while (ram[i] == model[i])
			i++;
		fail(std::string(when) + ": guest RAM at +0x" + hex(i) +
		     " was written by a DMA iodp said faults");
	}
	static std::string hex(uint64_t v)
	{
		char b[24];
		std::snprintf(b, sizeof(b), "%" PRIx64, v);
		return b;
	}
	void stats(const char *what)
	{
		const vfio::Stats s = dev->stats();
		std::printf("  %s: %" PRIu64 " kernel calls (%" PRIu64 " maps, %" PRIu64
			    " unmaps), %" PRIu64 " bytes mapped, %" PRIu64 " syncs, degraded %d\n",
			    what, s.kernel_calls, s.maps, s.unmaps, s.bytes_mapped, s.shadow_syncs,
			    s.degraded);
	}
};

/* Cases ---------------------------------------------------------------------------------- */

/** Random IOVAs the agreement check DMAs to (100 ms each of the guest's virtual time). */
constexpr int kAgreeDmas = 1000;
constexpr uint64_t kAgreeRunIova = 0x4000000, kAgreePagesIova = 0x8000000;

/**
 * The agreement layout in the guest's stage 1 (not yet invalidated): a 64 MiB run of 4 KiB
 * pages at kAgreeRunIova and 1000 scattered pages above kAgreePagesIova, which it returns.
 * Every 10th scattered page is read-only (a device write faults), every 50th points at
 * guest memory stage 2 does not map (faults at stage 2); the rest are read-write.
 */
std::vector<uint64_t> map_agree_layout(Bench &b)
{
	b.map(kAgreeRunIova, 0, 64 * MiB, kRWU);
	std::vector<uint64_t> pages;
	std::map<uint64_t, bool> used;
	while (pages.size() < 1000) {
		const uint64_t iova = kAgreePagesIova + (b.rng() % 16384) * 4096;
		if (used[iova])
			continue;
		used[iova] = true;
		const size_t i = pages.size();
		const uint64_t ram_off = i % 50 == 7 ? 200 * MiB : 64 * MiB + (b.rng() % 8192) * 4096;
		b.map(iova, ram_off, 4096, i % 10 == 3 ? kROU : kRWU);
		pages.push_back(iova);
	}
	return pages;
}

/**
 * kAgreeDmas DMAs of 64 bytes at random IOVAs of map_agree_layout()'s: half in the run, a
 * quarter on the scattered @p pages, a quarter anywhere (mostly unmapped). Returns how many
 * landed and how many iodp blocked (Bench::dma() keeps the model the RAM is checked against).
 */
std::pair<unsigned, unsigned> random_dmas(Bench &b, const std::vector<uint64_t> &pages)
{
	unsigned landed = 0, blocked = 0;
	for (int i = 0; i < kAgreeDmas; i++) {
		uint64_t iova;
		switch (i % 4) {
		case 0:
		case 1:
			iova = kAgreeRunIova + (b.rng() % (64 * MiB / 4096)) * 4096;
			break;
		case 2:
			iova = pages[b.rng() % pages.size()];
			break;
		default:
			iova = (b.rng() % (256 * MiB / 4096)) * 4096;
		}
		const uint32_t off = static_cast<uint32_t>(b.rng() % 64) * 8;
		iova += (b.rng() % 63) * 64;
		(b.dma(iova, off, 64) ? landed : blocked)++;
	}
	return {landed, blocked};
}

/**
 * 1000 scattered 4 KiB pages (some read-only, some to guest memory stage 2 does not map) and
 * a 64 MiB contiguous run of 4 KiB pages, one invalidation call; then kAgreeDmas random
 * IOVAs, faults mixed in.
 */
void case_agree(vfio::Iommu iommu)
{
	Bench b(iommu);
	const double t0 = now_s();
	const std::vector<uint64_t> pages = map_agree_layout(b);
	std::vector<std::pair<uint64_t, uint64_t>> entries{{kAgreeRunIova, (64 * MiB) >> 12}};
	for (uint64_t iova : pages)
		entries.push_back({iova, 1});
	b.invalidate(entries);
	const double t1 = now_s();
	b.stats("after 1001 invalidation entries in one call");
	CHECK(b.dev->stats().maps >= 2 && b.dev->stats().maps <= 1000);
	const auto [landed, blocked] = random_dmas(b, pages);
	b.expect_ram_is_model("after the DMAs");
	std::printf("  %d DMAs of 64 bytes: %u landed where iodp said, %u blocked where iodp "
		    "said fault; shadowing %.2f s, DMAs %.2f s\n", kAgreeDmas, landed, blocked,
		    t1 - t0, now_s() - t1);
	CHECK(landed >= kAgreeDmas / 2 && blocked >= kAgreeDmas / 10);
}

/** Unmap a page + page invalidation: blocked. Retarget + page invalidation: the new page. */
void case_unmap(vfio::Iommu iommu)
{
	Bench b(iommu);
	b.map(0x100000, 64 * MiB, 4096, kRWU);
	b.invalidate({{0x100000, 1}});
	CHECK(b.dma(0x100000, 0, 512));
	b.unmap(0x100000, 4096);
	b.invalidate({{0x100000, 1}});
	CHECK(!b.dma(0x100000, 512, 512));
	b.expect_ram_is_model("after the unmapped page's DMA");
	b.stats("unmap");
}

void case_retarget(vfio::Iommu iommu)
{
	Bench b(iommu);
	b.map(0x100000, 64 * MiB, 4096, kRWU);
	b.invalidate({{0x100000, 1}});
	CHECK(b.dma(0x100000, 0, 512));
	b.unmap(0x100000, 4096);
	b.map(0x100000, 65 * MiB, 4096, kRWU);
	b.invalidate({{0x100000, 1}});
	CHECK(b.dma(0x100000, 1024, 512)); // lands in the new page (checked), the old keeps its
	b.expect_ram_is_model("after the retargeted DMA");
	b.stats("retarget");
}

/** Changes without an invalidation are not shadowed; a domain-wide one re-walks them all. */
void case_domain(vfio::Iommu iommu)
{
	Bench b(iommu);
	for (uint64_t i = 0; i < 64; i++)
		b.map(0x200000 + i * 0x3000, 64 * MiB + i * 4096, 4096, kRWU);
	// iodp translates them already (its walks read the table), but the guest has not
	// invalidated: the kernel was not told, and the device is blocked there.
	CHECK(must(b.ctx.translate(b.dev->ctl_id(), std::nullopt, 0x200000, pgtable::kAccessWrite),
		   "translate")
		      .fault == pgtable::FaultKind::none);
	b.edu->to_ram(0, 0x200000, 256);
	b.expect_ram_is_model("before any invalidation");
	b.invalidate_all();
	for (uint64_t i = 0; i < 64; i++)
		CHECK(b.dma(0x200000 + i * 0x3000 + 8, static_cast<uint32_t>(i * 8), 256));
	b.unmap(0x200000, 64 * 0x3000);
	b.invalidate_all();
	for (uint64_t i = 0; i < 64; i += 7)
		CHECK(!b.dma(0x200000 + i * 0x3000, 0, 256));
	b.expect_ram_is_model("after the domain-wide invalidations");
	b.stats("domain");
}

/** The VMM unmaps guest RAM from the IOAS: the kernel follows without a guest invalidation. */
void case_stage2(vfio::Iommu iommu)
{
	Bench b(iommu);
	b.map(0x100000, MiB, 4096, kRWU);       // in the run's stage-2 mapping
	b.map(0x101000, 64 * MiB, 4096, kRWU);  // in the other one
	b.invalidate({{0x100000, 2}});
	CHECK(b.dma(0x100000, 0, 256) && b.dma(0x101000, 0, 256));
	must(b.ctx.ioas_unmap(b.ioas, kGpa, 64 * MiB), "stage-2 unmap");
	CHECK(!b.dma(0x100000, 256, 256)); // blocked: its guest memory is gone
	CHECK(b.dma(0x101000, 256, 256));  // the other still lands
	b.expect_ram_is_model("after the stage-2 unmap");
	must(b.ctx.ioas_map(b.ioas, kFixedRW, kGpa, b.ram, 64 * MiB), "stage-2 map");
	CHECK(b.dma(0x100000, 512, 256));
	b.expect_ram_is_model("after the stage-2 map");
	b.stats("stage2");
}

/**
 * Strict churn: map, invalidate, DMA, unmap, invalidate (and every 10th round a DMA that
 * must be blocked); 1000 rounds.
 */
void case_churn(vfio::Iommu iommu)
{
	Bench b(iommu);
	constexpr int kRounds = 1000;
	const double t0 = now_s();
	for (int i = 0; i < kRounds; i++) {
		const uint64_t iova = 0x1000000 + static_cast<uint64_t>(i % 256) * 4096;
		const uint64_t off = 64 * MiB + static_cast<uint64_t>(i) * 4096;
		b.map(iova, off, 4096, kRWU);
		b.invalidate({{iova, 1}});
		if (!b.dma(iova + 64, static_cast<uint32_t>(i % 32) * 8, 64))
			fail("round " + std::to_string(i) + ": iodp says the new page faults");
		b.unmap(iova, 4096);
		b.invalidate({{iova, 1}});
		if (i % 10 == 0 && b.dma(iova + 128, 0, 64))
			fail("round " + std::to_string(i) + ": iodp still translates");
	}
	b.expect_ram_is_model("after churn");
	const vfio::Stats s = b.dev->stats();
	std::printf("  %d rounds (map, invalidate, DMA, unmap, invalidate) in %.2f s; %" PRIu64
		    " maps, %" PRIu64 " unmaps\n", kRounds, now_s() - t0, s.maps, s.unmaps);
	CHECK(s.maps == kRounds + 1 && s.unmaps == kRounds + 1 && s.bytes_mapped == 0);
}

/* A guest's VT-d invalidation queue: 128-bit descriptors, as the guest's driver writes them. */
struct Qi {
	uint64_t qw[2];
};
constexpr uint64_t kDid = 3;
Qi iotlb_page(uint64_t addr, unsigned am = 0, bool ih = false)
{
	return {{0x2 | (3 << 4) | (kDid << 16), addr | (uint64_t{ih} << 6) | am}};
}
Qi pasid_iotlb_page(uint64_t addr) // PASID 0: a scalable-mode guest's RID
{
	return {{0x6 | (3 << 4) | (kDid << 16), addr}};
}
Qi iotlb_domain() { return {{0x2 | (2 << 4) | (kDid << 16), 0}}; }
Qi context_global() { return {{0x1 | (1 << 4), 0}}; }
Qi wait(uint64_t gpa, uint32_t data) { return {{0x5 | (1 << 5) | (uint64_t{data} << 32), gpa}}; }

/**
 * The guest's VT-d queued invalidations (IODP_HWPT_INVALIDATE_DATA_VTD_QI) drive the shadow:
 * page, PASID-page, domain and context descriptors, each stretch ending in an inv_wait
 * whose status word (in guest RAM) is written only after the kernel holds the new view.
 */
void case_qi(vfio::Iommu iommu)
{
	Bench b(iommu);
	constexpr uint64_t kStatusOff = Bench::kStatusOff;
	uint32_t token = 0;
	// One queue: descriptors, then a wait; the status word holds its data afterwards.
	auto queue = [&](std::vector<Qi> q) {
		token++;
		q.push_back(wait(kGpa + kStatusOff, token));
		uint32_t handled = 0;
		must(b.ctx.hwpt_invalidate(b.nested, IODP_HWPT_INVALIDATE_DATA_VTD_QI, q.data(),
					   sizeof(Qi), static_cast<uint32_t>(q.size()), &handled),
		     "VT-d queue");
		CHECK(handled == q.size());
		uint32_t st;
		std::memcpy(&st, b.ram + kStatusOff, sizeof(st));
		CHECK(st == token);
		std::memcpy(b.model.data() + kStatusOff, &st, sizeof(st));
	};
	b.map(0x100000, 64 * MiB, 4096, kRWU);
	b.map(0x300000, 65 * MiB, 4096, kRWU);
	queue({pasid_iotlb_page(0x100000), iotlb_page(0x300000, 0, true)});
	CHECK(b.dma(0x100000, 0, 256) && b.dma(0x300000 + 64, 256, 256));
	// Random pages, invalidated by page descriptors (some of 2^am pages); DMAs at them and
	// at IOVAs nothing maps.
	std::map<uint64_t, bool> used;
	std::vector<Qi> q;
	std::vector<uint64_t> pages;
	for (unsigned i = 0; pages.size() < 96; i++) {
		const uint64_t iova = 0x1000000 + (b.rng() % 4096) * 4096;
		if (used[iova & ~0x3fffull])
			continue;
		used[iova & ~0x3fffull] = true;
		b.map(iova, 66 * MiB + pages.size() * 4096, 4096, i % 8 == 5 ? kROU : kRWU);
		pages.push_back(iova);
		q.push_back(i % 3 == 0 ? iotlb_page(iova & ~0x3fffull, 2) : iotlb_page(iova));
	}
	queue(q);
	unsigned landed = 0, blocked = 0;
	for (unsigned i = 0; i < 192; i++) {
		const uint64_t iova = i % 2 ? pages[b.rng() % pages.size()]
					    : 0x1000000 + (b.rng() % 4096) * 4096;
		(b.dma(iova + (b.rng() % 32) * 64, static_cast<uint32_t>(i % 32) * 64, 64) ? landed
											 : blocked)++;
	}
	b.expect_ram_is_model("after the page descriptors' DMAs");
	CHECK(landed >= 64 && blocked >= 32);
	// Unmap one page, retarget another: page descriptors, then blocked / the new page.
	b.unmap(0x100000, 4096);
	b.unmap(0x300000, 4096);
	b.map(0x300000, 67 * MiB, 4096, kRWU);
	queue({iotlb_page(0x100000), iotlb_page(0x300000)});
	CHECK(!b.dma(0x100000, 0, 256));
	CHECK(b.dma(0x300000, 512, 256));
	// Changes no descriptor named stay unshadowed; a domain-selective one re-walks them.
	for (uint64_t i = 0; i < 32; i++)
		b.map(0x4000000 + i * 0x5000, 68 * MiB + i * 4096, 4096, kRWU);
	b.edu->to_ram(0, 0x4000000, 256);
	b.expect_ram_is_model("before any descriptor named the new pages");
	queue({iotlb_domain()});
	for (uint64_t i = 0; i < 32; i += 3)
		CHECK(b.dma(0x4000000 + i * 0x5000 + 128, static_cast<uint32_t>(i * 16), 256));
	// Everything unmapped; a global context-cache invalidation re-walks all: blocked.
	b.unmap(0x4000000, 32 * 0x5000);
	b.unmap(0x300000, 4096);
	for (uint64_t iova : pages)
		b.unmap(iova, 4096);
	queue({context_global()});
	CHECK(!b.dma(0x4000000, 0, 256) && !b.dma(0x300000, 0, 256) && !b.dma(pages[7], 0, 256));
	CHECK(b.dev->stats().bytes_mapped == 0);
	b.expect_ram_is_model("after the queues");
	std::printf("  %u queues; DMAs after page descriptors: %u landed where iodp said, %u "
		    "blocked where it said fault\n", token, landed, blocked);
	b.stats("qi");
}

/* SMMUv3: the device's vIOMMU is iodp's SMMUv3 model, its STE -> CD -> Arm stage 1 in guest
 * RAM; the real IOMMU (QEMU's intel-iommu) holds the shadow. */

/** TLBI_NH_VA of (NUM+1) << SCALE 4 KiB pages at @p iova (the range form, TG 4 KiB). */
std::array<uint64_t, 2> tlbi_va_range(uint64_t iova, unsigned num, unsigned scale)
{
	return {0x12 | (uint64_t{num} << 12) | (uint64_t{scale} << 20) |
			(uint64_t{Bench::kAsid} << 48),
		iova | (1 << 10)};
}

/**
 * As shadow-agree, through SMMUv3 commands: a 64 MiB run (one range TLBI) and 1000
 * scattered pages (one TLBI_NH_VA each), one CMD_SYNC; then kAgreeDmas random IOVAs.
 */
void case_smmu_agree(vfio::Iommu iommu)
{
	Bench b(iommu, true, vfio::Nesting::auto_select, ctl::IommuModel::smmuv3);
	CHECK(b.dev->nesting_reason().find("shadow") == 0);
	const std::vector<uint64_t> pages = map_agree_layout(b);
	// 16 << 10 pages for the run in one range command, then one per scattered page.
	std::vector<std::array<uint64_t, 2>> q{tlbi_va_range(kAgreeRunIova, 15, 10)};
	for (uint64_t iova : pages)
		q.push_back(Bench::tlbi_va(iova));
	b.cmdq(q);
	b.stats("after 1001 commands and a CMD_SYNC");
	CHECK(b.dev->stats().maps >= 2 && b.dev->stats().maps <= 1000);
	const auto [landed, blocked] = random_dmas(b, pages);
	b.expect_ram_is_model("after the DMAs");
	std::printf("  %d DMAs of 64 bytes through the SMMUv3 shadow: %u landed where iodp said, "
		    "%u blocked where iodp said fault\n", kAgreeDmas, landed, blocked);
	CHECK(landed >= kAgreeDmas / 2 && blocked >= kAgreeDmas / 10);
}

/**
 * SMMUv3 commands: unmap + TLBI_NH_VA + CMD_SYNC -> blocked; retarget -> the new page;
 * TLBI_NH_ASID re-walks what no command named; an invalid CD + CFGI_CD -> all blocked.
 */
void case_smmu_unmap(vfio::Iommu iommu)
{
	Bench b(iommu, true, vfio::Nesting::auto_select, ctl::IommuModel::smmuv3);
	b.map(0x100000, 64 * MiB, 4096, kRWU);
	b.map(0x200000, 65 * MiB, 4096, kRWU);
	b.cmdq({Bench::tlbi_va(0x100000), Bench::tlbi_va(0x200000)});
	CHECK(b.dma(0x100000, 0, 256) && b.dma(0x200000, 0, 256));
	b.unmap(0x100000, 4096);
	b.cmdq({Bench::tlbi_va(0x100000)});
	CHECK(!b.dma(0x100000, 256, 256));
	b.unmap(0x200000, 4096);
	b.map(0x200000, 66 * MiB, 4096, kRWU);
	b.cmdq({Bench::tlbi_va(0x200000)});
	CHECK(b.dma(0x200000, 512, 256)); // the new page; the old keeps its bytes
	b.expect_ram_is_model("after unmap and retarget");
	for (uint64_t i = 0; i < 32; i++)
		b.map(0x400000 + i * 0x3000, 67 * MiB + i * 4096, 4096, kRWU);
	b.edu->to_ram(0, 0x400000, 256);
	b.expect_ram_is_model("before a command named the new pages");
	b.cmdq({Bench::tlbi_asid()});
	for (uint64_t i = 0; i < 32; i += 3)
		CHECK(b.dma(0x400000 + i * 0x3000 + 64, static_cast<uint32_t>(i * 8), 256));
	// The guest invalidates its CD (V clear) and says so: DMA is blocked everywhere.
	const uint64_t cd0 = 0;
	std::memcpy(b.ram + Bench::kCdOff, &cd0, sizeof(cd0));
	std::memcpy(b.model_ram(Bench::kCdOff), &cd0, sizeof(cd0));
	b.cmdq({{0x05, 0}}); // CFGI_CD
	CHECK(!b.dma(0x200000, 0, 256) && !b.dma(0x400000, 0, 256));
	CHECK(b.dev->stats().bytes_mapped == 0);
	b.expect_ram_is_model("after the CD went invalid");
	b.stats("smmu");
}

/** Kernel calls and time, iodp (coalescing) vs one call per leaf, with real ioctls. */
void case_calls(vfio::Iommu iommu)
{
	double secs[2];
	uint64_t calls[2];
	for (int coalesce = 0; coalesce < 2; coalesce++) {
		Bench b(iommu, coalesce == 1);
		const uint64_t before = b.dev->stats().maps;
		b.map(0x4000000, 0, 16 * MiB, kRWU); // 4096 contiguous 4 KiB pages
		const double t0 = now_s();
		b.invalidate({{0x4000000, (16 * MiB) >> 12}});
		secs[coalesce] = now_s() - t0;
		calls[coalesce] = b.dev->stats().maps - before;
		CHECK(b.dma(0x4000000 + 5 * MiB, 0, 256));
		b.expect_ram_is_model("after the DMA");
	}
	std::printf("  16 MiB of 4 KiB pages, one invalidation: per_page %" PRIu64 " map calls "
		    "in %.3f s, iodp %" PRIu64 " in %.3f s: %.0fx fewer calls, %.1fx the speed "
		    "(TCG: ratios only)\n", calls[0], secs[0], calls[1], secs[1],
		    double(calls[0]) / double(calls[1]), secs[0] / secs[1]);
	CHECK(calls[0] == 4096 && calls[1] == 1);
}

/** A full type1 container: the numbers, the device degraded, and recovery. */
void case_full(vfio::Iommu iommu)
{
	// Booted with vfio_iommu_type1.dma_entry_limit=64.
	Bench b(iommu);
	for (uint64_t i = 0; i < 100; i++) // scattered: 100 kernel mappings
		b.map(0x200000 + i * 0x2000, 64 * MiB + i * 0x2000, 4096, kRWU);
	std::vector<iodp_hwpt_vtd_s1_invalidate> e{{0x200000, 200, 0, 0}};
	uint32_t handled = 0;
	const Status s = b.ctx.hwpt_invalidate(b.nested, IODP_HWPT_INVALIDATE_DATA_VTD_S1, e.data(),
					       sizeof(e[0]), 1, &handled);
	std::printf("  invalidate -> %s (%d)\n", s.message().c_str(), s.code());
	CHECK(s.code() == -ENOSPC);
	for (const char *want : {"dma_avail 0", "dma_entry_limit=64", "mapping(s)", "degraded"})
		if (s.message().find(want) == std::string::npos)
			fail(std::string("the message lacks '") + want + "'");
	CHECK(b.dev->stats().degraded);
	// The guest gives up half of them: the range re-shadows and the device is whole again.
	for (uint64_t i = 0; i < 100; i += 2)
		b.unmap(0x200000 + i * 0x2000, 4096);
	b.invalidate({{0x200000, 200}});
	CHECK(!b.dev->stats().degraded);
	CHECK(b.dma(0x200000 + 0x2000, 0, 256));
	CHECK(!b.dma(0x200000, 0, 256));
	b.expect_ram_is_model("after recovering");
	b.stats("full");
}

/** mode=auto falls back to shadow where the kernel does not nest, and says why; nested fails. */
void case_auto(vfio::Iommu iommu)
{
	{
		Bench b(iommu);
		const std::string why = b.dev->nesting_reason();
		CHECK(why.rfind("shadow (auto: ", 0) == 0);
		if (iommu == vfio::Iommu::type1)
			CHECK(why.find("type1 container has no nested translation") != std::string::npos);
		else // QEMU 7.2's intel-iommu: no ECAP.NEST, or NEST_PARENT refused
			CHECK(why.find("ECAP.NEST") != std::string::npos ||
			      why.find("NEST_PARENT") != std::string::npos);
		b.map(0x100000, 64 * MiB, 4096, kRWU);
		b.invalidate({{0x100000, 1}});
		CHECK(b.dma(0x100000, 0, 256));
		b.expect_ram_is_model("shadowed after the fallback");
	}
	// mode=nested where the kernel cannot nest: refused, with the reason.
	ctl::Ctx ctx;
	vfio::Options opt;
	opt.iommu = iommu;
	opt.mode = vfio::Nesting::nested;
	std::unique_ptr<vfio::Device> dev = must(vfio::Device::open(ctx, edu_on_vfio(), opt), "open");
	const uint32_t ioas = must(ctx.ioas_alloc(), "ioas_alloc");
	const uint32_t parent = must(ctx.hwpt_alloc_paging(dev->ctl_id(), ioas,
							   IODP_HWPT_ALLOC_NEST_PARENT, 0),
				     "nest parent");
	const uint32_t nested = must(ctx.hwpt_alloc_nested(dev->ctl_id(), parent, 0, 0,
							   ctl::VtdS1Data{0, 0x1000, 48}),
				     "nested");
	Result<uint32_t> r = dev->attach(nested);
	CHECK(!r);
	std::printf("  mode=nested -> %s\n", r.status().message().c_str());
	CHECK(r.status().code() == -EOPNOTSUPP);
	CHECK(r.status().message().find("mode=nested: the kernel cannot nest") != std::string::npos);
	CHECK(dev->ioas() == 0);
	dev->close();
}

const std::map<std::string, Case> &cases()
{
	static const std::map<std::string, Case> c = {
		{"shadow-agree", case_agree},   {"shadow-unmap", case_unmap},
		{"shadow-retarget", case_retarget}, {"shadow-domain", case_domain},
		{"shadow-stage2", case_stage2}, {"shadow-churn", case_churn},
		{"shadow-calls", case_calls},   {"shadow-full", case_full},
		{"shadow-auto", case_auto},     {"shadow-qi", case_qi},
		{"shadow-smmu-agree", case_smmu_agree}, {"shadow-smmu-unmap", case_smmu_unmap},
	};
	return c;
}

} // namespace

int main(int argc, char **argv)
{
	return run_case(argc, argv, "shadow_guest_test", cases());
}
