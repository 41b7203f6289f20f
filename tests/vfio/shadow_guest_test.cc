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
		// QEMU's edu finishes a DMA in a timer 100 ms later (virtual time, which runs with
		// real time under TCG): each DMA costs 100 ms, so the cases count their DMAs.
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

	/** Stage 2 maps guest RAM as two mappings: the run's memory [0, 64M) and the rest. */
	explicit Bench(vfio::Iommu iommu, bool coalesce = true,
		       vfio::Nesting mode = vfio::Nesting::auto_select)
	{
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
				  pgtable::table_config(pgtable::Format::x86_64_4l), &pool),
			  "table");
		s1.set_max_leaf(4096); // 4 KiB leaves, as a guest's DMA API makes them
		vfio::Options opt;
		opt.iommu = iommu;
		opt.shadow.coalesce = coalesce;
		opt.mode = mode;
		dev = must(vfio::Device::open(ctx, edu_on_vfio(), opt), "open");
		const uint32_t id = dev->ctl_id();
		parent = must(ctx.hwpt_alloc_paging(id, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0),
			      "nest parent");
		nested = must(ctx.hwpt_alloc_nested(id, parent, 0, 0,
						    ctl::VtdS1Data{0, s1.root(), 48}),
			      "nested hwpt");
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
		invalidate({{src, 1}});
		edu->to_device(src, 0, 2048);
		edu->to_device(src + 2048, 2048, 2047); // QEMU 7.2's edu refuses to touch byte 4095
		unmap(src, 4096);
		invalidate({{src, 1}});
	}
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

/** Each edu DMA takes 100 ms under TCG: the agreement check makes this many. */
constexpr int kAgreeDmas = 250;

/**
 * 1000 scattered 4 KiB pages (some read-only, some to guest memory stage 2 does not map) and
 * a 64 MiB contiguous run of 4 KiB pages, one invalidation call; then kAgreeDmas random
 * IOVAs, faults mixed in.
 */
void case_agree(vfio::Iommu iommu)
{
	Bench b(iommu);
	const double t0 = now_s();
	constexpr uint64_t kRunIova = 0x4000000, kPagesIova = 0x8000000;
	b.map(kRunIova, 0, 64 * MiB, kRWU);
	std::vector<std::pair<uint64_t, uint64_t>> entries{{kRunIova, (64 * MiB) >> 12}};
	std::vector<uint64_t> pages;
	std::map<uint64_t, bool> used;
	while (pages.size() < 1000) {
		const uint64_t iova = kPagesIova + (b.rng() % 16384) * 4096;
		if (used[iova])
			continue;
		used[iova] = true;
		const size_t i = pages.size();
		// Every 10th read-only (a device write faults), every 50th to guest memory stage
		// 2 does not map (faults at stage 2); the rest read-write to scattered pages.
		const uint64_t ram_off = i % 50 == 7 ? 200 * MiB : 64 * MiB + (b.rng() % 8192) * 4096;
		b.map(iova, ram_off, 4096, i % 10 == 3 ? kROU : kRWU);
		pages.push_back(iova);
		entries.push_back({iova, 1});
	}
	b.invalidate(entries);
	const double t1 = now_s();
	b.stats("after 1001 invalidation entries in one call");
	CHECK(b.dev->stats().maps >= 2 && b.dev->stats().maps <= 1000);
	unsigned landed = 0, blocked = 0;
	for (int i = 0; i < kAgreeDmas; i++) {
		uint64_t iova;
		switch (i % 4) {
		case 0:
		case 1:
			iova = kRunIova + (b.rng() % (64 * MiB / 4096)) * 4096;
			break;
		case 2:
			iova = pages[b.rng() % pages.size()];
			break;
		default:
			iova = (b.rng() % (256 * MiB / 4096)) * 4096; // mostly unmapped
		}
		const uint32_t off = static_cast<uint32_t>(b.rng() % 64) * 8;
		const uint32_t len = 64;
		iova += (b.rng() % 63) * 64;
		(b.dma(iova, off, len) ? landed : blocked)++;
	}
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
 * must be blocked); 200 rounds, as each DMA takes 100 ms under TCG.
 */
void case_churn(vfio::Iommu iommu)
{
	Bench b(iommu);
	constexpr int kRounds = 200;
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
		{"shadow-auto", case_auto},
	};
	return c;
}

} // namespace

int main(int argc, char **argv)
{
	return run_case(argc, argv, "shadow_guest_test", cases());
}
