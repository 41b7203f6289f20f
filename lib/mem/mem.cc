/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/mem.h>

#include <algorithm>
#include <bit>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sys/mman.h>

#include <rte_lcore.h>
#include <rte_malloc.h>

namespace iodp {

/* PageSet ---------------------------------------------------------------------------------- */

PageSet::PageSet()
	: root_(std::make_unique<std::atomic<void *>[]>(size_t{1} << kRootBits)),
	  cover_(std::make_unique<std::map<uint64_t, Segment>>())
{
}

PageSet::~PageSet()
{
	for (size_t i = 0; i < (size_t{1} << kRootBits); i++) {
		auto *l2 = static_cast<Inner *>(root_[i].load(std::memory_order_relaxed));
		if (l2 == nullptr)
			continue;
		for (auto &c2 : l2->child) {
			auto *l1 = static_cast<Inner *>(c2.load(std::memory_order_relaxed));
			if (l1 == nullptr)
				continue;
			for (auto &c1 : l1->child)
				delete static_cast<Leaf *>(c1.load(std::memory_order_relaxed));
			delete l1;
		}
		delete l2;
	}
}

PageSet::Leaf *PageSet::leaf_for(uint64_t page, bool create)
{
	// Release: a reader that sees the pointer sees the node zeroed.
	auto child = [create](std::atomic<void *> &slot, auto *fresh) -> void * {
		void *p = slot.load(std::memory_order_relaxed);
		if (p != nullptr || !create)
			return p;
		p = fresh();
		if (p != nullptr)
			slot.store(p, std::memory_order_release);
		return p;
	};
	auto new_inner = +[]() -> void * { return new (std::nothrow) Inner(); };
	auto new_leaf = +[]() -> void * { return new (std::nothrow) Leaf(); };
	auto *l2 = static_cast<Inner *>(
		child(root_[(page >> (kLeafBits + 2 * kInnerBits)) & ((1u << kRootBits) - 1)],
		      new_inner));
	if (l2 == nullptr)
		return nullptr;
	auto *l1 = static_cast<Inner *>(
		child(l2->child[(page >> (kLeafBits + kInnerBits)) & ((1u << kInnerBits) - 1)],
		      new_inner));
	if (l1 == nullptr)
		return nullptr;
	return static_cast<Leaf *>(
		child(l1->child[(page >> kLeafBits) & ((1u << kInnerBits) - 1)], new_leaf));
}

void PageSet::set_bits(uint64_t first, uint64_t last, bool on)
{
	for (uint64_t p = first;;) {
		Leaf *leaf = leaf_for(p, false); // add() made every leaf of the range
		// Whole words at a time within this leaf.
		const uint64_t leaf_last = p | ((1u << kLeafBits) - 1);
		const uint64_t end = std::min(last, leaf_last);
		while (p <= end) {
			const unsigned bit = p & 63;
			const uint64_t n = std::min<uint64_t>(64 - bit, end - p + 1);
			const uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << bit;
			std::atomic<uint64_t> &w = leaf->word[(p & ((1u << kLeafBits) - 1)) >> 6];
			const uint64_t old = w.load(std::memory_order_relaxed);
			// One writer: a plain read-modify-write; release orders it before the table
			// entries the caller writes next.
			w.store(on ? old | mask : old & ~mask, std::memory_order_release);
			const uint64_t changed = on ? mask & ~old : mask & old;
			pages_ = on ? pages_ + std::popcount(changed) : pages_ - std::popcount(changed);
			// Pages already in the set: runs of set bits, counted on the side.
			for (uint64_t again = on ? mask & old : 0; again != 0;) {
				const unsigned start = static_cast<unsigned>(std::countr_zero(again));
				const uint64_t x = again >> start;
				const unsigned len = ~x == 0 ? 64 - start
							     : static_cast<unsigned>(std::countr_one(x));
				const uint64_t base = p - bit;
				more_adds(base + start, base + start + len - 1);
				again &= len + start >= 64 ? (start == 0 ? 0 : (1ull << start) - 1)
							   : ~(((1ull << len) - 1) << start);
			}
			p += n;
			if (p == 0)
				return; // wrapped past the last page
		}
		if (end == last)
			return;
	}
}

void PageSet::split_at(uint64_t page)
{
	auto it = cover_->upper_bound(page);
	if (it == cover_->begin())
		return;
	--it;
	if (it->first < page && it->second.last >= page) {
		cover_->emplace_hint(std::next(it), page, Segment{it->second.last, it->second.count});
		it->second.last = page - 1;
		cover_size_++;
	}
}

Status PageSet::add(uint64_t addr, uint64_t len)
{
	constexpr uint64_t kPage = 1ull << kPageShift;
	if (len == 0 || ((addr | len) & (kPage - 1)) || addr + (len - 1) < addr)
		return Status::error(-EINVAL, "page set: 0x{:x}+0x{:x} is empty, "
				     "not page-aligned or wraps", addr, len);
	const uint64_t first = addr >> kPageShift;
	const uint64_t last = (addr + (len - 1)) >> kPageShift;
	// Every node first: a failure leaves only empty nodes behind, which change nothing.
	for (uint64_t p = first;; p = (p | ((1u << kLeafBits) - 1)) + 1) {
		if (leaf_for(p, true) == nullptr)
			return Status::error(-ENOMEM, "page set: no memory for a node covering "
					     "0x{:x}", p << kPageShift);
		if ((p | ((1u << kLeafBits) - 1)) >= last)
			break;
	}
	set_bits(first, last, true);
	return {};
}

void PageSet::more_adds(uint64_t first, uint64_t last)
{
	split_at(first);
	if (last + 1 != (1ull << (64 - kPageShift)))
		split_at(last + 1);
	auto it = cover_->lower_bound(first);
	uint64_t pos = first;
	while (true) {
		if (it != cover_->end() && it->first == pos) {
			it->second.count++;
			pos = it->second.last;
			++it;
		} else {
			const uint64_t gap_last =
				it != cover_->end() && it->first <= last ? it->first - 1 : last;
			cover_->emplace_hint(it, pos, Segment{gap_last, 1});
			cover_size_++;
			pos = gap_last;
		}
		if (pos >= last)
			break;
		pos++;
	}
	merge_around(first == 0 ? 0 : first - 1, last);
}

void PageSet::merge_around(uint64_t first, uint64_t last)
{
	// Neighbours with the same count become one segment, so pages added again one at a
	// time next to each other stay one entry, not one per page.
	auto it = cover_->upper_bound(first);
	if (it != cover_->begin())
		--it;
	if (it != cover_->begin() && it->first >= first)
		--it;
	while (it != cover_->end() && it->first <= last) {
		auto next = std::next(it);
		if (next != cover_->end() && it->second.last + 1 == next->first &&
		    it->second.count == next->second.count) {
			it->second.last = next->second.last;
			cover_->erase(next);
			cover_size_--;
			continue;
		}
		if (it->second.last >= last)
			break;
		it = next;
	}
}

void PageSet::remove(uint64_t addr, uint64_t len)
{
	if (len == 0)
		return;
	const uint64_t first = addr >> kPageShift;
	const uint64_t last = (addr + (len - 1)) >> kPageShift;
	if (cover_->empty()) {
		set_bits(first, last, false); // every page was added once: the usual case
		return;
	}
	split_at(first);
	if (last + 1 != (1ull << (64 - kPageShift)))
		split_at(last + 1);
	// Pages counted on the side lose one count and stay; the others leave the set.
	uint64_t pos = first;
	bool done = false;
	for (auto it = cover_->lower_bound(first); it != cover_->end() && it->first <= last;) {
		if (it->first > pos)
			set_bits(pos, it->first - 1, false);
		done = it->second.last == last;
		pos = it->second.last + 1;
		if (--it->second.count == 0) {
			it = cover_->erase(it);
			cover_size_--;
		} else {
			++it;
		}
	}
	if (!done && pos <= last && pos >= first)
		set_bits(pos, last, false);
	merge_around(first == 0 ? 0 : first - 1, last);
}

/* GuestMemory ------------------------------------------------------------------------------ */

Status GuestMemory::add_region(uint64_t gpa, uint64_t size, void *host)
{
	if (size == 0)
		return Status::error(-EINVAL, "guest memory: region at 0x{:x} has size 0", gpa);
	if (host == nullptr)
		return Status::error(-EINVAL, "guest memory: region 0x{:x}+0x{:x}"
				     " has no host memory", gpa, size);
	if (gpa + (size - 1) < gpa)
		return Status::error(-EINVAL, "guest memory: region 0x{:x}+0x{:x}"
				     " wraps past 2^64", gpa, size);
	const GuestRegion added{gpa, size, static_cast<std::byte *>(host)};
	for (const GuestRegion &r : regions_)
		if (added.gpa <= r.last() && r.gpa <= added.last())
			return Status::error(-EEXIST, "guest memory: region 0x{:x}+0x{:x}"
					     " overlaps region 0x{:x}+0x{:x}",
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
		return Status::error(-ENOENT, "guest memory: no region starts at 0x{:x}", gpa);
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
	case RamBacking::thp:
		return "anonymous-thp";
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
	// (thp: data_ is the 2 MiB-aligned start of what is still mapped.)
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

/** Whether the kernel gives transparent hugepages to memory that asks (not "[never]"). */
bool thp_allowed()
{
	std::FILE *f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (f == nullptr)
		return false;
	char mode[128];
	const bool read = std::fgets(mode, sizeof(mode), f) != nullptr;
	std::fclose(f);
	return read && std::strstr(mode, "[never]") == nullptr;
}

/**
 * Ordinary memory laid out for transparent hugepages: @p bytes rounded up to 2 MiB, at a
 * 2 MiB-aligned address (map 2 MiB more, unmap the unaligned head and the tail), advised
 * MADV_HUGEPAGE. Without the alignment the kernel can back no 2 MiB page of a block that
 * starts mid-page, and a table or IOTLB looked up at random pays a TLB miss per access.
 * Returns nullptr when the kernel refuses the advice (THP disabled): the caller maps
 * plain pages then, and says so.
 */
std::byte *map_thp(uint64_t bytes)
{
	if (!thp_allowed())
		return nullptr;
	const uint64_t want = (bytes + kHugePage - 1) & ~(kHugePage - 1);
	std::byte *p = map_anonymous(want + kHugePage, 0);
	if (p == nullptr)
		return nullptr;
	const uint64_t addr = reinterpret_cast<uint64_t>(p);
	const uint64_t head = ((addr + kHugePage - 1) & ~(kHugePage - 1)) - addr;
	if (head != 0)
		munmap(p, head);
	std::byte *aligned = p + head;
	munmap(aligned + want, kHugePage - head); // the tail: never empty (head < 2 MiB)
	if (madvise(aligned, want, MADV_HUGEPAGE) != 0) {
		munmap(aligned, want);
		return nullptr;
	}
	return aligned;
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
			return Status::error(-ENOMEM, "guest RAM: DPDK has no 0x{:x}"
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
			return Status::error(-ENOMEM, "guest RAM: no 0x{:x}"
					     " bytes of 2 MiB hugepages free", rounded);
	}
	if (any) {
		// Few or no hugepages free: 2 MiB-aligned memory the kernel may back with THP.
		const uint64_t rounded = (size + kHugePage - 1) & ~(kHugePage - 1);
		ram.data_ = map_thp(size);
		if (ram.data_ != nullptr) {
			ram.backing_ = RamBacking::thp;
			ram.mapped_size_ = rounded;
			return ram;
		}
	}
	ram.data_ = map_anonymous(size, 0);
	if (ram.data_ == nullptr)
		return Status::error(-ENOMEM, "guest RAM: cannot map 0x{:x} bytes", size);
	ram.backing_ = RamBacking::anonymous;
	ram.mapped_size_ = size;
	return ram;
}

} // namespace iodp
