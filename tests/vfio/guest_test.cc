/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vfio_guest_test: drivers/vfio against a real kernel, run as /init's child inside a QEMU
 * guest (tests/vfio/run_guest.py boots it). QEMU's `edu` device (PCI 1234:11e8) is the DMA
 * master: its DMA engine copies between guest memory (through the IOMMU, i.e. through what
 * iodp mirrored into the kernel) and a 4 KiB buffer inside the device.
 *
 *   vfio_guest_test --case NAME --iommu type1|iommufd
 *
 * Prints "IODP-CASE NAME PASS" or "IODP-CASE NAME FAIL: why" (and exits 0 / 1): the runner
 * reads these lines from the serial console.
 */
#include <iodp/iodp.h>
#include <iodp/ctl.h>
#include <iodp/vfio.h>

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
#include <string>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "guest_case.h"

using namespace iodp;

namespace {

using namespace iodp::guest;

/** A failure whose errno and message are what the test expects. */
void expect_error(const Status &s, int err, const std::string &text, const char *what)
{
	if (s.ok())
		fail(std::string(what) + ": succeeded, expected an error");
	std::printf("  %s -> %s (%d)\n", what, s.message().c_str(), s.code());
	if (s.code() != -err)
		fail(std::string(what) + ": errno " + std::to_string(-s.code()) + ", expected " +
		     std::to_string(err) + " (" + s.message() + ")");
	if (s.message().find(text) == std::string::npos)
		fail(std::string(what) + ": message lacks '" + text + "': " + s.message());
}

/* sysfs ------------------------------------------------------------------------------------ */

/** Bind @p bdf to @p driver ("" leaves it unbound). */
void bind_driver(const std::string &bdf, const std::string &driver)
{
	const std::string dev = "/sys/bus/pci/devices/" + bdf;
	if (driver_of(bdf) == driver)
		return;
	if (!driver_of(bdf).empty())
		write_file(dev + "/driver/unbind", bdf);
	if (driver.empty())
		return;
	write_file(dev + "/driver_override", driver);
	write_file("/sys/bus/pci/drivers/" + driver + "/bind", bdf);
	CHECK(driver_of(bdf) == driver);
}

std::vector<std::string> edu_devices()
{
	std::vector<std::string> out;
	DIR *d = ::opendir("/sys/bus/pci/devices");
	if (d == nullptr)
		return out;
	while (dirent *e = ::readdir(d)) {
		const std::string n = e->d_name;
		if (n[0] == '.')
			continue;
		const std::string dir = "/sys/bus/pci/devices/" + n;
		if (read_file(dir + "/vendor") == "0x1234" && read_file(dir + "/device") == "0x11e8")
			out.push_back(n);
	}
	::closedir(d);
	std::sort(out.begin(), out.end());
	return out;
}

size_t open_fds()
{
	size_t n = 0;
	DIR *d = ::opendir("/proc/self/fd");
	while (dirent *e = ::readdir(d))
		n += e->d_name[0] != '.';
	::closedir(d);
	return n - 1; // the directory itself
}

/* The edu device ----------------------------------------------------------------------------- */

constexpr uint64_t kEduBuf = 0x40000; ///< the device's DMA buffer, as DMA addresses name it
constexpr uint32_t kDmaLen = 2048;    ///< < 4096: QEMU 7.2 aborts on a full 4 KiB count

class Edu {
public:
	explicit Edu(vfio::Device &d) : d_(d) {}

	void init()
	{
		uint32_t id = rd(0x00);
		if (id != 0x010000ed)
			fail("edu identification register reads 0x" + std::to_string(id));
		uint16_t cmd = 0;
		must(d_.read(vfio::kConfigRegion, 4, &cmd, 2), "config read");
		cmd |= 0x6; // memory space + bus master
		must(d_.write(vfio::kConfigRegion, 4, &cmd, 2), "config write");
	}

	/** RAM (IOVA) -> device buffer. */
	void to_device(uint64_t iova, uint32_t len = kDmaLen) { dma(iova, kEduBuf, len, 1); }
	/** Device buffer -> RAM (IOVA). */
	void to_ram(uint64_t iova, uint32_t len = kDmaLen) { dma(kEduBuf, iova, len, 3); }

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
		CHECK(src < (1u << 28) && dst < (1u << 28)); // edu's DMA mask
		wr(0x80, static_cast<uint32_t>(src));
		wr(0x88, static_cast<uint32_t>(dst));
		wr(0x90, len);
		wr(0x98, cmd);
		const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
		while (rd(0x98) & 1) {
			if (std::chrono::steady_clock::now() > end)
				fail("edu DMA did not finish in 10 s");
			std::this_thread::sleep_for(std::chrono::milliseconds(5));
		}
	}

	vfio::Device &d_;
};

/** Page-aligned host memory the kernel can pin. */
struct Pages {
	explicit Pages(size_t n) : len(n * 4096)
	{
		void *p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				 -1, 0);
		if (p == MAP_FAILED)
			fail("mmap");
		base = static_cast<uint8_t *>(p);
		std::memset(base, 0, len);
	}
	~Pages() { ::munmap(base, len); }
	uint8_t *page(size_t i) { return base + i * 4096; }
	uint8_t *base;
	size_t len;
};

void fill(uint8_t *p, uint8_t seed, size_t n = kDmaLen)
{
	for (size_t i = 0; i < n; i++)
		p[i] = static_cast<uint8_t>(seed + i * 7);
}

bool same(const uint8_t *p, uint8_t seed, size_t n = kDmaLen)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != static_cast<uint8_t>(seed + i * 7))
			return false;
	return true;
}

bool zero(const uint8_t *p, size_t n = 4096)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

constexpr uint32_t kRW = IODP_IOAS_MAP_FIXED_IOVA | IODP_IOAS_MAP_READABLE | IODP_IOAS_MAP_WRITEABLE;
constexpr uint32_t kRO = IODP_IOAS_MAP_FIXED_IOVA | IODP_IOAS_MAP_READABLE;

/* The test bench: a context, an IOAS, the first edu device on vfio-pci, attached. --------- */

struct Bench {
	vfio::Options opt;
	ctl::Ctx ctx;
	uint32_t ioas = 0;
	std::unique_ptr<vfio::Device> dev;
	std::unique_ptr<Edu> edu;
	Pages mem{8};

	explicit Bench(vfio::Iommu iommu, bool attach = true)
	{
		opt.iommu = iommu;
		const std::vector<std::string> edus = edu_devices();
		if (edus.empty())
			fail("no edu device (1234:11e8) in the guest");
		bind_driver(edus[0], "vfio-pci");
		ioas = must(ctx.ioas_alloc(), "ioas_alloc");
		dev = must(vfio::Device::open(ctx, edus[0], opt), "open");
		std::printf("  %s: %s\n", dev->bdf().c_str(), dev->path_reason().c_str());
		CHECK(dev->path() == iommu);
		if (attach)
			do_attach();
	}
	void do_attach()
	{
		must(dev->attach(ioas), "attach");
		edu = std::make_unique<Edu>(*dev);
		edu->init();
	}
	void map(uint64_t iova, uint8_t *host, uint32_t flags = kRW, uint64_t len = 4096)
	{
		CHECK(must(ctx.ioas_map(ioas, flags, iova, host, len), "ioas_map") == iova);
	}
	void unmap(uint64_t iova, uint64_t len = 4096)
	{
		CHECK(must(ctx.ioas_unmap(ioas, iova, len), "ioas_unmap") == len);
	}
	/** Put the pattern @p seed into the device's buffer (through a mapped page). */
	void load(uint8_t seed, uint64_t via_iova, uint8_t *via_host)
	{
		fill(via_host, seed);
		edu->to_device(via_iova);
	}
};

/* Cases ---------------------------------------------------------------------------------- */

void case_dma(vfio::Iommu iommu)
{
	Bench b(iommu);
	b.map(0x100000, b.mem.page(0));
	b.map(0x200000, b.mem.page(1));
	b.load(0x11, 0x100000, b.mem.page(0)); // RAM -> device
	b.edu->to_ram(0x200000);               // device -> RAM
	CHECK(same(b.mem.page(1), 0x11));
	// Several pages in one mapping, DMA into the middle of it.
	Pages big(4);
	b.map(0x400000, big.base, kRW, big.len);
	b.edu->to_ram(0x400000 + 2 * 4096 + 512);
	CHECK(same(big.page(2) + 512, 0x11));
	CHECK(zero(big.page(0)) && zero(big.page(1)) && zero(big.page(3)));
	const vfio::Stats s = b.dev->stats();
	std::printf("  stats: path %s, %" PRIu64 " kernel calls, %" PRIu64 " maps, %" PRIu64
		    " bytes mapped, %" PRIu64 " errors\n", vfio::iommu_name(s.path),
		    s.kernel_calls, s.maps, s.bytes_mapped, s.errors);
	CHECK(s.maps == 3 && s.bytes_mapped == 6 * 4096 && s.pages_mapped == 6 && s.errors == 0);
}

void case_unmap_blocks(vfio::Iommu iommu)
{
	Bench b(iommu);
	b.map(0x100000, b.mem.page(0));
	b.map(0x200000, b.mem.page(1));
	b.load(0x22, 0x100000, b.mem.page(0));
	b.edu->to_ram(0x200000);
	CHECK(same(b.mem.page(1), 0x22));
	b.unmap(0x200000);
	CHECK(b.dev->stats().unmaps == 1);
	b.load(0x33, 0x100000, b.mem.page(0));
	b.edu->to_ram(0x200000); // blocked: the kernel no longer maps it
	CHECK(same(b.mem.page(1), 0x22));
}

void case_readonly(vfio::Iommu iommu)
{
	Bench b(iommu);
	b.map(0x100000, b.mem.page(0));
	fill(b.mem.page(1), 0x44);
	b.map(0x200000, b.mem.page(1), kRO);
	b.map(0x300000, b.mem.page(2));
	b.load(0x55, 0x100000, b.mem.page(0));
	b.edu->to_ram(0x200000); // device write to a read-only page: blocked
	CHECK(same(b.mem.page(1), 0x44));
	b.edu->to_device(0x200000); // reading it works
	b.edu->to_ram(0x300000);
	CHECK(same(b.mem.page(2), 0x44));
}

void case_remap(vfio::Iommu iommu)
{
	Bench b(iommu);
	b.map(0x100000, b.mem.page(0));
	b.map(0x200000, b.mem.page(1));
	b.load(0x66, 0x100000, b.mem.page(0));
	b.edu->to_ram(0x200000);
	CHECK(same(b.mem.page(1), 0x66));
	b.unmap(0x200000);
	b.map(0x200000, b.mem.page(2));
	b.load(0x77, 0x100000, b.mem.page(0));
	b.edu->to_ram(0x200000);
	CHECK(same(b.mem.page(2), 0x77)); // lands in the new page
	CHECK(same(b.mem.page(1), 0x66)); // the old one is untouched
}

void case_copy(vfio::Iommu iommu)
{
	Bench b(iommu);
	b.map(0x100000, b.mem.page(0));
	const uint32_t src = must(b.ctx.ioas_alloc(), "ioas_alloc");
	CHECK(must(b.ctx.ioas_map(src, kRW, 0x5000000, b.mem.page(3), 4096), "map src") ==
	      0x5000000);
	CHECK(must(b.ctx.ioas_copy(b.ioas, src, kRW, 0x300000, 0x5000000, 4096), "copy") ==
	      0x300000);
	b.load(0x88, 0x100000, b.mem.page(0));
	b.edu->to_ram(0x300000);
	CHECK(same(b.mem.page(3), 0x88));
	CHECK(b.dev->stats().maps == 2);
}

void case_close(vfio::Iommu iommu)
{
	const size_t fds = open_fds();
	Pages keep(2);
	ctl::Ctx ctx2;
	{
		Bench b(iommu);
		const size_t objects = b.ctx.object_count();
		b.map(0x100000, b.mem.page(0));
		b.map(0x200000, b.mem.page(1));
		b.load(0x99, 0x100000, b.mem.page(0));
		b.edu->to_ram(0x200000);
		CHECK(same(b.mem.page(1), 0x99));
		// Detach and attach again: a new kernel space, the IOAS's mappings replayed.
		must(b.dev->detach(), "detach");
		CHECK(b.dev->ioas() == 0 && b.dev->kernel_ranges().empty());
		b.do_attach();
		b.load(0x5a, 0x100000, b.mem.page(0));
		b.edu->to_ram(0x200000);
		CHECK(same(b.mem.page(1), 0x5a));
		const uint32_t ctl_id = b.dev->ctl_id();
		b.dev->close();
		CHECK(!b.ctx.object_info(ctl_id));
		CHECK(b.dev->fd() < 0);
		// The IOAS has no user left: no mirror, no device.
		must(b.ctx.ioas_unmap(b.ioas, 0, UINT64_MAX), "unmap all");
		CHECK(b.ctx.object_count() <= objects);
		must(b.ctx.destroy(b.ioas), "destroy ioas after close");
		b.dev.reset();
	}
	CHECK(open_fds() == fds);
	// A new context, a new empty IOAS: the old IOVA reaches nothing.
	Bench b(iommu);
	b.map(0x100000, keep.page(0));
	b.load(0xaa, 0x100000, keep.page(0));
	b.edu->to_ram(0x200000);
	std::printf("  after close: DMA to the old IOVA blocked\n");
	CHECK(zero(keep.page(1)));
}

void case_agree(vfio::Iommu iommu)
{
	// An emulated device's view (iodp's software translation) and the edu device's (the
	// kernel's) on one IOAS: the same bytes for every translation.
	Bench b(iommu);
	ctl::DeviceSpec spec;
	spec.name = "emulated";
	spec.rid = 0xff00;
	const uint32_t emul = must(b.ctx.device_create(spec), "device_create");
	must(b.ctx.device_attach(emul, std::nullopt, b.ioas), "emulated attach");
	Pages pool(8);
	b.map(0x100000, b.mem.page(0));
	const uint64_t iovas[] = {0x800000, 0x801000, 0x1234000, 0x7fff000};
	for (size_t i = 0; i < 4; i++)
		b.map(iovas[i], pool.page(2 * i), kRW);
	b.load(0xbb, 0x100000, b.mem.page(0));
	for (size_t i = 0; i < 4; i++) {
		const uint64_t iova = iovas[i] + 256 * i;
		const ctl::Translated t = must(b.ctx.translate(emul, std::nullopt, iova, pgtable::kAccessWrite), "translate");
		CHECK(t.fault == pgtable::FaultKind::none);
		b.edu->to_ram(iova);
		CHECK(same(reinterpret_cast<const uint8_t *>(static_cast<uintptr_t>(t.host)), 0xbb));
	}
	// Unmapped for both: iodp faults and the DMA is blocked.
	b.unmap(iovas[2]);
	const ctl::Translated t = must(b.ctx.translate(emul, std::nullopt, iovas[2], pgtable::kAccessWrite), "translate");
	CHECK(t.fault != pgtable::FaultKind::none);
	b.load(0xcc, 0x100000, b.mem.page(0));
	b.edu->to_ram(iovas[2]);
	CHECK(zero(pool.page(4), 512) && same(pool.page(4) + 512, 0xbb));
	for (size_t i = 1; i < 8; i += 2)
		CHECK(zero(pool.page(i)));
}

void case_bad_bdf(vfio::Iommu iommu)
{
	ctl::Ctx ctx;
	vfio::Options opt;
	opt.iommu = iommu;
	expect_error(vfio::Device::open(ctx, "00:1f.9", opt).status(), EINVAL,
		     "bad PCI address '00:1f.9'", "open 00:1f.9");
	expect_error(vfio::Device::open(ctx, "0000:00:1e.0", opt).status(), ENOENT,
		     "no PCI device 0000:00:1e.0", "open 0000:00:1e.0");
	expect_error(vfio::Device::open(ctx, "/dev/vfio/devices/vfio9", opt).status(),
		     iommu == vfio::Iommu::type1 ? EINVAL : ENOENT,
		     "/dev/vfio/devices/vfio9", "open /dev/vfio/devices/vfio9");
	CHECK(ctx.object_count() == 0);
}

void case_not_vfio(vfio::Iommu iommu)
{
	ctl::Ctx ctx;
	vfio::Options opt;
	opt.iommu = iommu;
	const std::string edu = edu_devices().at(0);
	const size_t fds = open_fds();
	bind_driver(edu, "");
	expect_error(vfio::Device::open(ctx, edu, opt).status(), ENODEV,
		     "cannot use " + edu + ": it has no driver, not vfio-pci", "open unbound");
	bind_driver(edu, "uio_pci_generic");
	expect_error(vfio::Device::open(ctx, edu, opt).status(), ENODEV,
		     "its driver is uio_pci_generic, not vfio-pci", "open on uio_pci_generic");
	bind_driver(edu, "vfio-pci");
	CHECK(ctx.object_count() == 0 && open_fds() == fds);
	auto d = must(vfio::Device::open(ctx, edu, opt), "open on vfio-pci");
	d->close();
}

void case_group(vfio::Iommu iommu)
{
	// Two edu devices behind a PCIe-to-PCI bridge: one IOMMU group.
	const std::vector<std::string> edus = edu_devices();
	CHECK(edus.size() == 2);
	const std::string a = edus[0], bb = edus[1];
	CHECK(read_file("/sys/bus/pci/devices/" + a + "/iommu_group") ==
	      read_file("/sys/bus/pci/devices/" + bb + "/iommu_group"));
	vfio::Options opt;
	opt.iommu = iommu;
	ctl::Ctx ctx;
	const size_t fds = open_fds();
	bind_driver(a, "vfio-pci");
	bind_driver(bb, "uio_pci_generic");
	expect_error(vfio::Device::open(ctx, a, opt).status(), EBUSY,
		     "cannot use " + a + ": " + bb + " in the same IOMMU group", "open, group not viable");
	expect_error(vfio::Device::open(ctx, a, opt).status(), EBUSY, "is bound to uio_pci_generic",
		     "open, group not viable");
	CHECK(ctx.object_count() == 0 && open_fds() == fds);
	// The group made viable: both devices share one kernel space.
	bind_driver(bb, "vfio-pci");
	Pages mem(4);
	const uint32_t ioas = must(ctx.ioas_alloc(), "ioas_alloc");
	auto da = must(vfio::Device::open(ctx, a, opt), "open a");
	auto db = must(vfio::Device::open(ctx, bb, opt), "open b");
	// Another context cannot take a device of this group.
	ctl::Ctx other;
	expect_error(vfio::Device::open(other, bb, opt).status(), EBUSY,
		     "is used by another iodp context", "open from another context");
	must(da->attach(ioas), "attach a");
	const uint32_t ioas2 = must(ctx.ioas_alloc(), "ioas_alloc");
	expect_error(db->attach(ioas2).status(), EBUSY, "one group shares one IOAS",
		     "attach b elsewhere");
	must(db->attach(ioas), "attach b");
	CHECK(must(ctx.ioas_map(ioas, kRW, 0x100000, mem.page(0), 4096), "map") == 0x100000);
	CHECK(must(ctx.ioas_map(ioas, kRW, 0x200000, mem.page(1), 4096), "map") == 0x200000);
	CHECK(must(ctx.ioas_map(ioas, kRW, 0x300000, mem.page(2), 4096), "map") == 0x300000);
	Edu ea(*da), eb(*db);
	ea.init();
	eb.init();
	fill(mem.page(0), 0x31);
	ea.to_device(0x100000);
	ea.to_ram(0x200000);
	eb.to_device(0x100000);
	eb.to_ram(0x300000);
	CHECK(same(mem.page(1), 0x31) && same(mem.page(2), 0x31));
	// One kernel space: each map reached the kernel once.
	CHECK(da->stats().maps == 3 && db->stats().maps == 3);
	da->close();
	db->close();
	CHECK(open_fds() == fds);
}

void case_range(vfio::Iommu iommu)
{
	Bench b(iommu);
	const std::vector<ctl::IovaRange> kr = b.dev->kernel_ranges();
	CHECK(!kr.empty());
	for (const ctl::IovaRange &r : kr)
		std::printf("  kernel range 0x%" PRIx64 "-0x%" PRIx64 "\n", r.start, r.last);
	const uint64_t beyond = kr.back().last + 1;
	CHECK(beyond != 0);
	expect_error(b.ctx.ioas_map(b.ioas, kRW, beyond, b.mem.page(0), 4096).status(), EINVAL,
		     "the kernel maps only", "map beyond the kernel's ranges");
	// The MSI window is a hole in the kernel's ranges.
	expect_error(b.ctx.ioas_map(b.ioas, kRW, 0xfee00000, b.mem.page(0), 4096).status(),
		     EINVAL, "reserved by", "map over the MSI window");
	// The usable ranges iodp reports end where the kernel's do.
	const auto usable = must(b.ctx.ioas_iova_ranges(b.ioas, nullptr), "iova_ranges");
	CHECK(usable.back().last <= kr.back().last);
	const vfio::Stats s = b.dev->stats();
	CHECK(s.maps == 0 && s.errors == 0);
	// An IOAS with a mapping the kernel cannot hold refuses the attach, leaving nothing.
	ctl::Ctx ctx;
	const uint32_t ioas = must(ctx.ioas_alloc(), "ioas_alloc");
	CHECK(must(ctx.ioas_map(ioas, kRW, beyond, b.mem.page(1), 4096), "map") == beyond);
	b.dev->close();
	vfio::Options opt;
	opt.iommu = iommu;
	auto d = must(vfio::Device::open(ctx, edu_devices().at(0), opt), "open");
	expect_error(d->attach(ioas).status(), EADDRINUSE, "is outside the ranges it maps",
		     "attach over a mapping the kernel cannot hold");
	CHECK(d->ioas() == 0);
	must(ctx.destroy(ioas), "destroy ioas");
}

void case_full(vfio::Iommu iommu)
{
	// Booted with vfio_iommu_type1.dma_entry_limit=64.
	Bench b(iommu);
	const uint32_t avail = must(b.dev->dma_avail(), "dma_avail");
	std::printf("  dma_avail %u\n", avail);
	CHECK(avail == 64);
	Pages mem(65);
	for (uint64_t i = 0; i < 64; i++)
		b.map(0x1000000 + i * 0x2000, mem.page(i));
	expect_error(b.ctx.ioas_map(b.ioas, kRW, 0x1000000 + 64 * 0x2000, mem.page(64), 4096)
			     .status(),
		     ENOSPC, "type1 container is full", "map the 65th");
	expect_error(b.ctx.ioas_map(b.ioas, kRW, 0x1000000 + 64 * 0x2000, mem.page(64), 4096)
			     .status(),
		     ENOSPC, "dma_avail 0", "map the 65th");
	// Nothing of the failed map stayed: iodp does not translate it, and an unmap frees one.
	ctl::DeviceSpec spec;
	spec.name = "emulated";
	spec.rid = 0xff00;
	const uint32_t emul = must(b.ctx.device_create(spec), "device_create");
	must(b.ctx.device_attach(emul, std::nullopt, b.ioas), "emulated attach");
	CHECK(must(b.ctx.translate(emul, std::nullopt, 0x1000000 + 64 * 0x2000, pgtable::kAccessRead), "translate")
		      .fault != pgtable::FaultKind::none);
	b.unmap(0x1000000);
	CHECK(must(b.dev->dma_avail(), "dma_avail") == 1);
	b.map(0x1000000 + 64 * 0x2000, mem.page(64));
	CHECK(b.dev->stats().errors == 2);
}

void case_pmd(vfio::Iommu iommu)
{
	// iodp-pmd with the edu device as a vfio port beside an emulated device: it runs, lists
	// the port (no queue: the hardware translates) and reports the driver's counters.
	const std::string edu = edu_devices().at(0);
	bind_driver(edu, "vfio-pci");
	const std::string cmd = std::string("/bin/iodp-pmd --no-huge --no-shconf -m 256 --lcores 0@0,1@0 "
					    "--no-telemetry --log-level=1 -- --device vfio0,dev=") +
				edu + ",iommu=" + vfio::iommu_name(iommu) +
				" --device emul0,profile=nic --duration 2 --stats-interval 0 "
				"--json - 2>&1";
	FILE *f = ::popen(cmd.c_str(), "r");
	CHECK(f != nullptr);
	std::string out;
	char buf[4096];
	size_t n;
	while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0)
		out.append(buf, n);
	const int rc = ::pclose(f);
	std::printf("%s\n", out.c_str());
	if (rc != 0)
		fail("iodp-pmd exited with " + std::to_string(rc));
	// The JSON's spacing is the writer's business (compact since nlohmann-json): compare
	// without blanks.
	std::string compact;
	for (char c : out)
		if (c != ' ')
			compact += c;
	for (const char *want : {"\"name\":\"vfio0\"", "\"driver\":\"vfio\"", "\"kernel_calls\":",
				 "\"name\":\"emul0\"", vfio::iommu_name(iommu)})
		if (compact.find(want) == std::string::npos)
			fail(std::string("iodp-pmd's JSON lacks ") + want);
}

const std::map<std::string, Case> &cases()
{
	static const std::map<std::string, Case> c = {
		{"dma", case_dma},           {"unmap_blocks", case_unmap_blocks},
		{"readonly", case_readonly}, {"remap", case_remap},
		{"copy", case_copy},         {"close", case_close},
		{"agree", case_agree},       {"bad_bdf", case_bad_bdf},
		{"not_vfio", case_not_vfio}, {"group", case_group},
		{"range", case_range},       {"full", case_full},
		{"pmd", case_pmd},
	};
	return c;
}

} // namespace

int main(int argc, char **argv)
{
	return run_case(argc, argv, "vfio_guest_test", cases());
}
