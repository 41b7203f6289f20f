/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/mem.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <sys/mman.h>

#include <rte_lcore.h>
#include <rte_malloc.h>

namespace iodp {

Status GuestMemory::add_region(uint64_t gpa, uint64_t size, void *host)
{
	if (size == 0)
		return Status::error(-EINVAL, "guest memory: region at 0x%" PRIx64 " has size 0", gpa);
	if (host == nullptr)
		return Status::error(-EINVAL, "guest memory: region 0x%" PRIx64 "+0x%" PRIx64
				     " has no host memory", gpa, size);
	if (gpa + (size - 1) < gpa)
		return Status::error(-EINVAL, "guest memory: region 0x%" PRIx64 "+0x%" PRIx64
				     " wraps past 2^64", gpa, size);
	const GuestRegion added{gpa, size, static_cast<std::byte *>(host)};
	for (const GuestRegion &r : regions_)
		if (added.gpa <= r.last() && r.gpa <= added.last())
			return Status::error(-EEXIST, "guest memory: region 0x%" PRIx64 "+0x%" PRIx64
					     " overlaps region 0x%" PRIx64 "+0x%" PRIx64,
					     gpa, size, r.gpa, r.size);
	auto pos = std::lower_bound(regions_.begin(), regions_.end(), gpa,
				    [](const GuestRegion &r, uint64_t g) { return r.gpa < g; });
	regions_.insert(pos, added);
	return {};
}

Status GuestMemory::remove_region(uint64_t gpa)
{
	auto it = std::find_if(regions_.begin(), regions_.end(),
			       [gpa](const GuestRegion &r) { return r.gpa == gpa; });
	if (it == regions_.end())
		return Status::error(-ENOENT, "guest memory: no region starts at 0x%" PRIx64, gpa);
	regions_.erase(it);
	return {};
}

const GuestRegion *GuestMemory::find_sorted(uint64_t gpa) const
{
	auto it = std::upper_bound(regions_.begin(), regions_.end(), gpa,
				   [](uint64_t g, const GuestRegion &r) { return g < r.gpa; });
	if (it == regions_.begin())
		return nullptr;
	--it;
	return gpa - it->gpa < it->size ? &*it : nullptr;
}

bool GuestMemory::read(uint64_t gpa, void *dst, uint64_t len) const
{
	if (len == 0)
		return true;
	const std::byte *p = translate(gpa, len);
	if (p == nullptr)
		return false;
	std::memcpy(dst, p, len);
	return true;
}

bool GuestMemory::write(uint64_t gpa, const void *src, uint64_t len) const
{
	if (len == 0)
		return true;
	std::byte *p = translate(gpa, len);
	if (p == nullptr)
		return false;
	std::memcpy(p, src, len);
	return true;
}

const char *ram_backing_name(RamBacking backing)
{
	switch (backing) {
	case RamBacking::dpdk:
		return rte_eal_has_hugepages() ? "dpdk-hugepages" : "dpdk-no-huge";
	case RamBacking::hugetlb:
		return "hugetlb";
	case RamBacking::anonymous:
		return "anonymous";
	}
	return "?";
}

bool dpdk_eal_running()
{
	// The EAL counts its lcores during rte_eal_init(); before that the count is 0.
	return rte_lcore_count() > 0;
}

GuestRam &GuestRam::operator=(GuestRam &&other) noexcept
{
	if (this != &other) {
		release();
		data_ = std::exchange(other.data_, nullptr);
		size_ = std::exchange(other.size_, 0);
		mapped_size_ = std::exchange(other.mapped_size_, 0);
		backing_ = other.backing_;
	}
	return *this;
}

namespace {

/**
 * Whether the EAL still maps the memory at @p p. rte_eal_cleanup() unmaps every memory
 * segment, and rte_free() of a pointer into one then crashes; a program that cleans up
 * the EAL before destroying iodp's objects gets this message instead (once), and the
 * memory goes with the process.
 */
bool dpdk_memory_still_mapped(const void *p)
{
	const uintptr_t page = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{4095};
	if (msync(reinterpret_cast<void *>(page), 1, MS_ASYNC) == 0 || errno != ENOMEM)
		return true;
	static std::atomic<bool> said{false};
	if (!said.exchange(true))
		std::fprintf(stderr, "iodp: guest RAM from DPDK released after rte_eal_cleanup(), "
			     "which already unmapped it: destroy iodp's engine, devices and "
			     "contexts before rte_eal_cleanup() (doc/engine.md)\n");
	return false;
}

} // namespace

void GuestRam::release()
{
	if (data_ == nullptr)
		return;
	if (backing_ == RamBacking::dpdk) {
		if (dpdk_memory_still_mapped(data_))
			rte_free(data_);
	} else
		munmap(data_, mapped_size_);
	data_ = nullptr;
}

namespace {

constexpr uint64_t kHugePage = 2ull << 20;

std::byte *map_anonymous(uint64_t bytes, int extra_flags)
{
	// No MAP_NORESERVE: a hugetlb mapping without a reservation maps fine and then
	// raises SIGBUS on first touch when the pool is empty; reserving makes mmap fail instead.
	void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
	return p == MAP_FAILED ? nullptr : static_cast<std::byte *>(p);
}

} // namespace

Result<GuestRam> GuestRam::allocate(uint64_t size, Source source)
{
	if (size == 0)
		return Status::error(-EINVAL, "guest RAM: size 0");
	GuestRam ram;
	ram.size_ = size;
	const bool any = source == Source::automatic;

	if (source == Source::dpdk || (any && dpdk_eal_running())) {
		if (!dpdk_eal_running())
			return Status::error(-ENODEV, "guest RAM: DPDK memory asked for but no EAL runs");
		ram.data_ = static_cast<std::byte *>(
			rte_zmalloc("iodp_guest_ram", size, kHugePage));
		if (ram.data_ != nullptr) {
			ram.backing_ = RamBacking::dpdk;
			return ram;
		}
		if (!any)
			return Status::error(-ENOMEM, "guest RAM: DPDK has no 0x%" PRIx64
					     " bytes free", size);
	}
	if (source == Source::hugetlb || any) {
		const uint64_t rounded = (size + kHugePage - 1) & ~(kHugePage - 1);
		ram.data_ = map_anonymous(rounded, MAP_HUGETLB);
		if (ram.data_ != nullptr) {
			ram.backing_ = RamBacking::hugetlb;
			ram.mapped_size_ = rounded;
			return ram;
		}
		if (!any)
			return Status::error(-ENOMEM, "guest RAM: no 0x%" PRIx64
					     " bytes of 2 MiB hugepages free", rounded);
	}
	ram.data_ = map_anonymous(size, 0);
	if (ram.data_ == nullptr)
		return Status::error(-ENOMEM, "guest RAM: cannot map 0x%" PRIx64 " bytes", size);
	ram.backing_ = RamBacking::anonymous;
	ram.mapped_size_ = size;
	return ram;
}

} // namespace iodp
