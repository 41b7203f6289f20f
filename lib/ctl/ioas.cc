/* SPDX-License-Identifier: BSD-3-Clause */
#include "impl.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <new>
#include <sys/mman.h>
#include <unistd.h>

namespace iodp::ctl {

namespace {

constexpr uint32_t kMapFlags =
	IODP_IOAS_MAP_FIXED_IOVA | IODP_IOAS_MAP_WRITEABLE | IODP_IOAS_MAP_READABLE;

bool overlaps(const IovaRange &a, uint64_t start, uint64_t last)
{
	return a.start <= last && start <= a.last;
}

uint8_t table_perm(uint32_t flags)
{
	// iommufd has no execute permission: readable memory may be fetched from.
	uint8_t p = 0;
	if (flags & IODP_IOAS_MAP_READABLE)
		p |= pgtable::kMapRead | pgtable::kMapExec;
	if (flags & IODP_IOAS_MAP_WRITEABLE)
		p |= pgtable::kMapWrite;
	return p;
}

/** Round @p v up to @p align (a power of two); false on overflow. */
bool round_up(uint64_t v, uint64_t align, uint64_t *out)
{
	const uint64_t r = (v + (align - 1)) & ~(align - 1);
	if (r < v)
		return false;
	*out = r;
	return true;
}

} // namespace

/* Reserved and usable ranges --------------------------------------------------------------- */

std::vector<Reserved> Ctx::Impl::reserved(const Ioas &ioas) const
{
	std::vector<Reserved> out;
	for (const HwptPaging *h : ioas.hwpts) {
		const uint64_t last = h->aperture_last();
		if (last != UINT64_MAX)
			out.push_back({{last + 1, UINT64_MAX},
				       "hwpt " + std::to_string(h->id) + " (" +
					       std::string(pgtable::format_name(
						       h->table.stage().format)) +
					       ", " + std::to_string(h->table.stage().ias) +
					       "-bit input)"});
	}
	for_each_binding([&](Binding &b) {
		if (!b.detached && ioas_of(b.hwpt) == &ioas) {
			out.push_back(
				{msi_window(*b.dev), "device " + b.dev->name + " (MSI window)"});
			for (const IovaRange &r : b.dev->reserved)
				out.push_back({r, "device " + b.dev->name + " (reserved region)"});
		}
	});
	for (const IovaRange &r : ioas.reserved)
		out.push_back({r, "ioas " + std::to_string(ioas.id) + " (reserved)"});
	mirror_reserved(ioas, out);
	std::sort(out.begin(), out.end(),
		  [](const Reserved &a, const Reserved &b) { return a.range.start < b.range.start; });
	return out;
}

std::vector<IovaRange> Ctx::Impl::usable(const Ioas &ioas) const
{
	std::vector<IovaRange> out;
	uint64_t pos = 0;
	bool done = false;
	for (const Reserved &r : reserved(ioas)) {
		if (done)
			break;
		if (r.range.last < pos)
			continue;
		if (r.range.start > pos)
			out.push_back({pos, r.range.start - 1});
		if (r.range.last == UINT64_MAX)
			done = true;
		else
			pos = std::max(pos, r.range.last + 1);
	}
	if (!done)
		out.push_back({pos, UINT64_MAX});
	return out;
}

namespace {

struct PageRange {
	uint64_t start, length;
};

/** The pages [hva, hva + length) touches (the page set counts whole pages). */
PageRange whole_pages(uint64_t hva, uint64_t length)
{
	constexpr uint64_t kMask = (1ull << PageSet::kPageShift) - 1;
	const uint64_t start = hva & ~kMask;
	return {start, ((hva + length + kMask) & ~kMask) - start};
}

} // namespace

uint64_t Ctx::Impl::alignment(const Ioas &ioas) const
{
	// The kernel's iopt_calculate_iova_alignment(): 1 until a table needs its granule,
	// a page when large pages are off (HUGE_PAGES 0).
	uint64_t a = ioas.huge_pages ? 1 : 4096;
	for (const HwptPaging *h : ioas.hwpts)
		a = std::max<uint64_t>(a, 1ull << h->table.stage().granule_shift);
	for (const IoasMirror *m : ioas.mirrors)
		a = std::max(a, m->min_page());
	return a;
}

bool Ctx::Impl::hits_reserved(const Ioas &ioas, uint64_t start, uint64_t last) const
{
	for (const HwptPaging *h : ioas.hwpts)
		if (last > h->aperture_last())
			return true;
	if (mirror_refuses(ioas, start, last))
		return true;
	bool hit = false;
	for_each_binding([&](Binding &b) {
		if (b.detached || ioas_of(b.hwpt) != &ioas)
			return;
		hit |= overlaps(msi_window(*b.dev), start, last);
		for (const IovaRange &r : b.dev->reserved)
			hit |= overlaps(r, start, last);
	});
	for (const IovaRange &r : ioas.reserved)
		hit |= overlaps(r, start, last);
	return hit;
}

Status Ctx::Impl::check_aligned(const Ioas &ioas, uint64_t align) const
{
	for (const auto &[iova, m] : ioas.mappings)
		if ((m.iova | m.length | reinterpret_cast<uintptr_t>(m.host)) & (align - 1))
			return Status::error(-EADDRINUSE, "ioas {} maps 0x{:x}+0x{:x}"
					     " at host {}, not aligned to 0x{:x}", ioas.id,
					     m.iova, m.length, static_cast<void *>(m.host), align);
	return {};
}

Status Ctx::Impl::check_fixed(const Ioas &ioas, uint64_t iova, uint64_t length) const
{
	const uint64_t last = iova + (length - 1);
	// The reserved ranges with their owners' names only when one is hit: every map
	// checks, and the names are strings built per range.
	if (hits_reserved(ioas, iova, last)) {
		for (const Reserved &r : reserved(ioas))
			if (overlaps(r.range, iova, last))
				return Status::error(-EINVAL, "ioas {}: 0x{:x}+0x{:x}"
						     " overlaps 0x{:x}-0x{:x}"
						     " reserved by {}", ioas.id, iova, length,
						     r.range.start, r.range.last, r.owner);
	}
	auto it = ioas.mappings.upper_bound(last);
	if (it != ioas.mappings.begin()) {
		const Mapping &m = std::prev(it)->second;
		if (m.iova + (m.length - 1) >= iova)
			return Status::error(-EEXIST, "ioas {}: 0x{:x}+0x{:x}"
					     " overlaps mapping 0x{:x}+0x{:x}",
					     ioas.id, iova, length, m.iova, m.length);
	}
	return {};
}

Result<uint64_t> Ctx::Impl::alloc_iova(const Ioas &ioas, uint64_t length,
				       uint64_t host_align) const
{
	// Align to the largest page the host address allows (up to 1 GiB) so tables can use
	// blocks; never hand out IOVA 0, which hides NULL-pointer DMA.
	uint64_t align = alignment(ioas);
	while (align < (1ull << 30) && align * 2 <= length && host_align % (align * 2) == 0)
		align *= 2;
	std::vector<IovaRange> space = usable(ioas);
	if (!ioas.allowed.empty()) {
		std::vector<IovaRange> in;
		for (const IovaRange &a : ioas.allowed)
			for (const IovaRange &u : space)
				if (overlaps(u, a.start, a.last))
					in.push_back({std::max(a.start, u.start),
						      std::min(a.last, u.last)});
		space = in;
	}
	for (const IovaRange &r : space) {
		uint64_t pos;
		if (!round_up(std::max(r.start, align), align, &pos))
			continue;
		while (pos <= r.last && r.last - pos >= length - 1) {
			const uint64_t last = pos + (length - 1);
			auto it = ioas.mappings.upper_bound(last);
			if (it == ioas.mappings.begin())
				return pos;
			const Mapping &m = std::prev(it)->second;
			const uint64_t m_last = m.iova + (m.length - 1);
			if (m_last < pos)
				return pos;
			if (m_last == UINT64_MAX || !round_up(m_last + 1, align, &pos))
				break;
		}
	}
	return Status::error(-ENOSPC, "ioas {}: no free 0x{:x}-byte IOVA range aligned "
			     "to 0x{:x} in the {} ranges", ioas.id, length, align,
			     ioas.allowed.empty() ? "usable" : "allowed");
}

/* Tables kept in step ---------------------------------------------------------------------- */

Status Ctx::Impl::table_map(HwptPaging &h, const Mapping &m)
{
	Status s = h.table.map(m.iova, reinterpret_cast<uintptr_t>(m.host), m.length,
			       table_perm(m.flags));
	if (!s)
		return Status::error(s.code(), "hwpt {}: {}", h.id, s.message());
	return {};
}

void Ctx::Impl::make_host_map(HwptPaging &h)
{
	// Walks read table pages and (nested) guest tables at host addresses: the walker may
	// read exactly the pool and the memory this IOAS maps, nothing else. The pool is the
	// map's one region (the fast case: every single-stage walk reads only the pool); the
	// mapped memory is the IOAS's page set, which map and unmap change in place.
	auto mem = std::make_unique<GuestMemory>();
	(void)mem->add_region(reinterpret_cast<uintptr_t>(h.pool_ram.data()), h.pool_ram.size(),
			      h.pool_ram.data());
	mem->set_identity_pages(h.ioas->pages.get());
	h.view.store(mem.get(), std::memory_order_release);
	h.host_map = std::move(mem);
}

Status Ctx::Impl::check_unmap(const Ioas &ioas, std::span<const Mapping> victims) const
{
	for (const HwptPaging *h : ioas.hwpts) {
		uint64_t need = 0;
		for (const Mapping &m : victims)
			need += h->table.unmap_needs(m.iova, m.length);
		if (need > h->pool.pages_free())
			return Status::error(-ENOMEM, "hwpt {}: the unmap splits blocks and needs {}"
					     " table page(s); its pool has {} free",
					     h->id, need, h->pool.pages_free());
	}
	return {};
}

Status Ctx::Impl::map_range(Ioas &ioas, uint32_t flags, uint64_t &iova, std::byte *host,
			    uint64_t length, std::optional<uint64_t> gpa, const char *what)
{
	if (flags & ~kMapFlags)
		return Status::error(-EOPNOTSUPP, "ioas {} {}: unknown flags {:#x}", ioas.id, what,
				     flags & ~kMapFlags);
	if (!(flags & (IODP_IOAS_MAP_READABLE | IODP_IOAS_MAP_WRITEABLE)))
		return Status::error(-EINVAL, "ioas {} {}: neither READABLE nor WRITEABLE",
				     ioas.id, what);
	if (length == 0)
		return Status::error(-EINVAL, "ioas {} {}: length is 0", ioas.id, what);
	const uint64_t hva = reinterpret_cast<uintptr_t>(host);
	if (hva + (length - 1) < hva)
		return Status::error(-EOVERFLOW, "ioas {} {}: host 0x{:x}+0x{:x}"
				     " wraps", ioas.id, what, hva, length);
	const uint64_t align = alignment(ioas);
	if ((hva | length) & (align - 1))
		return Status::error(-EINVAL, "ioas {} {}: host address 0x{:x}"
				     " and length 0x{:x} must be aligned to 0x{:x}",
				     ioas.id, what, hva, length, align);
	if (flags & IODP_IOAS_MAP_FIXED_IOVA) {
		if (iova & (align - 1))
			return Status::error(-EINVAL, "ioas {} {}: iova 0x{:x}"
					     " is not aligned to 0x{:x}", ioas.id, what, iova,
					     align);
		if (iova + (length - 1) < iova)
			return Status::error(-EOVERFLOW, "ioas {} {}: iova 0x{:x}"
					     "+0x{:x} wraps", ioas.id, what, iova, length);
		if (Status s = check_fixed(ioas, iova, length); !s)
			return s;
	} else {
		Result<uint64_t> a = alloc_iova(ioas, length, hva == 0 ? 1ull << 63 : hva & -hva);
		if (!a)
			return a.status();
		iova = *a;
	}
	const Mapping m{iova, length, host, flags & ~IODP_IOAS_MAP_FIXED_IOVA, gpa};
	// Allocate first: room for undoing the tables below, then the mapping's place in the
	// B-tree (an insert may allocate nodes: a throw leaves the tree as it was, and
	// nothing else has changed yet). Workers never read mappings; the lock is held.
	reserve(static_cast<unsigned>(ioas.hwpts.size()), 0, 0);
	ioas.mappings.emplace(iova, m);
	// The memory first, then the tables: a walker that finds the new entries can read it.
	// Whole pages (a mapping is byte-aligned only while no table needs more).
	const PageRange pr = whole_pages(hva, length);
	if (Status s = ioas.pages->add(pr.start, pr.length); !s) {
		ioas.mappings.erase(iova);
		return Status::error(s.code(), "ioas {} {}: {}", ioas.id, what,
				     s.message());
	}
	for (size_t i = 0; i < ioas.hwpts.size(); i++) {
		if (Status s = table_map(*ioas.hwpts[i], m); !s) {
			// Workers may have walked the part already made: invalidate it too. What
			// was just mapped has no block to split, so these unmaps cannot fail.
			for (size_t j = 0; j < i; j++)
				(void)unmap_tables(*ioas.hwpts[j], iova, length);
			ioas.pages->remove(pr.start, pr.length);
			ioas.mappings.erase(iova);
			return s;
		}
	}
	return {};
}

uint64_t Ctx::Impl::remove_mapping(Ioas &ioas, uint64_t iova)
{
	auto it = ioas.mappings.find(iova);
	const Mapping &m = it->second;
	// Callers ran check_unmap() (or are undoing their own map, which splits nothing).
	for (HwptPaging *h : ioas.hwpts)
		(void)unmap_tables(*h, m.iova, m.length);
	// Walkers still inside a burst may read it until the call's grace period ends.
	const PageRange pr = whole_pages(reinterpret_cast<uintptr_t>(m.host), m.length);
	ioas.pages->remove(pr.start, pr.length);
	const uint64_t length = m.length;
	ioas.mappings.erase(it);
	return length;
}

/* Commands --------------------------------------------------------------------------------- */

Result<uint32_t> Ctx::ioas_alloc()
{
	Impl::LockThenSyncWorkers call(*impl_);
	const uint32_t id = impl_->alloc_id();
	impl_->objects.emplace(id, std::make_unique<Ioas>(id));
	return id;
}

Status Ctx::ioas_add_reserved(uint32_t ioas_id, const IovaRange &range)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Ioas *> ioas = impl_->get_ioas(ioas_id);
	if (!ioas)
		return ioas.status();
	if (range.start > range.last)
		return Status::error(-EINVAL, "ioas {} reserve: 0x{:x}-0x{:x}"
				     " ends before it starts", ioas_id, range.start, range.last);
	for (const auto &[iova, m] : (*ioas)->mappings)
		if (overlaps(range, m.iova, m.iova + (m.length - 1)))
			return Status::error(-EADDRINUSE, "ioas {} reserve: 0x{:x}-0x{:x}"
					     " overlaps mapping 0x{:x}+0x{:x}", ioas_id,
					     range.start, range.last, m.iova, m.length);
	for (const IovaRange &a : (*ioas)->allowed)
		if (overlaps(range, a.start, a.last))
			return Status::error(-EADDRINUSE, "ioas {} reserve: 0x{:x}-0x{:x}"
					     " overlaps allowed 0x{:x}-0x{:x}", ioas_id,
					     range.start, range.last, a.start, a.last);
	(*ioas)->reserved.push_back(range);
	return {};
}

Status Ctx::ioas_allow_iovas(uint32_t ioas_id, std::span<const IovaRange> ranges)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Ioas *> ioas = impl_->get_ioas(ioas_id);
	if (!ioas)
		return ioas.status();
	std::vector<IovaRange> sorted(ranges.begin(), ranges.end());
	std::sort(sorted.begin(), sorted.end(),
		  [](const IovaRange &a, const IovaRange &b) { return a.start < b.start; });
	for (size_t i = 0; i < sorted.size(); i++) {
		if (sorted[i].start > sorted[i].last)
			return Status::error(-EINVAL, "ioas {} allow: range 0x{:x}"
					     "-0x{:x} ends before it starts", ioas_id,
					     sorted[i].start,
					     sorted[i].last);
		if (i > 0 && sorted[i].start <= sorted[i - 1].last)
			return Status::error(-EINVAL, "ioas {} allow: ranges 0x{:x}-0x{:x}"
					     " and 0x{:x}-0x{:x} overlap", ioas_id,
					     sorted[i - 1].start, sorted[i - 1].last,
					     sorted[i].start, sorted[i].last);
	}
	for (const Reserved &r : impl_->reserved(**ioas))
		for (const IovaRange &a : sorted)
			if (overlaps(r.range, a.start, a.last))
				return Status::error(
					-EADDRINUSE, "ioas {} allow: 0x{:x}-0x{:x}"
					" overlaps 0x{:x}-0x{:x} reserved by {}",
					ioas_id, a.start, a.last, r.range.start, r.range.last,
					r.owner);
	(*ioas)->allowed = std::move(sorted);
	return {};
}

Result<std::vector<IovaRange>> Ctx::ioas_iova_ranges(uint32_t ioas_id, uint64_t *alignment)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Ioas *> ioas = impl_->get_ioas(ioas_id);
	if (!ioas)
		return ioas.status();
	if (alignment != nullptr)
		*alignment = impl_->alignment(**ioas);
	return impl_->usable(**ioas);
}

namespace {

/*
 * With a domain attached the kernel pins user memory at map time, so memory the process
 * has not mapped is EFAULT there. iodp pins nothing but gives the same answer: mincore()
 * fails with ENOMEM on any unmapped page. It touches no page and faults nothing in; the
 * cost is one system call and one byte of vector per 4 KiB page, in steps of 256 MiB.
 */
Status check_user_mapped(uint32_t ioas_id, const void *host, uint64_t length)
{
	const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
	const uintptr_t start = reinterpret_cast<uintptr_t>(host);
	if (length == 0 || start + length < start)
		return {}; // map_range gives the reason
	constexpr uintptr_t kStep = 256ull << 20;
	// One byte per page of the first step: a small map (the common one, a page or a
	// few) needs a few bytes on the stack, not 64 KiB allocated and zeroed per call.
	const uintptr_t first = start & ~(page - 1);
	const uintptr_t pages = (std::min<uintptr_t>(kStep, start + length - first) + page - 1) / page;
	unsigned char small[64];
	std::vector<unsigned char> big(pages > sizeof(small) ? pages : 0);
	unsigned char *vec = pages > sizeof(small) ? big.data() : small;
	for (uintptr_t a = first; a < start + length; a += kStep) {
		const uintptr_t n = std::min<uintptr_t>(kStep, start + length - a);
		if (mincore(reinterpret_cast<void *>(a), n, vec) != 0)
			return Status::error(-EFAULT, "ioas {} map: host memory 0x{:x}"
					     "+0x{:x} is not all mapped in this process",
					     ioas_id, start, length);
	}
	return {};
}

} // namespace

Result<uint64_t> Ctx::ioas_map(uint32_t ioas_id, uint32_t flags, uint64_t iova, void *host,
			       uint64_t length)
{
	impl_->settle_freed_tables(ioas_id);
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Ioas *> ioas = impl_->get_ioas(ioas_id);
	if (!ioas)
		return ioas.status();
	if (host == nullptr)
		return Status::error(-EFAULT, "ioas {} map: host address is NULL", ioas_id);
	if (!(*ioas)->hwpts.empty())
		if (Status s = check_user_mapped(ioas_id, host, length); !s)
			return s;
	if (Status s = impl_->map_range(**ioas, flags, iova, static_cast<std::byte *>(host),
					length, std::nullopt, "map");
	    !s)
		return s;
	// Mirrors (kernel address spaces of real devices) take it before the call succeeds.
	if (Status s = impl_->mirror_map(**ioas, iova); !s) {
		impl_->remove_mapping(**ioas, iova);
		return s;
	}
	// Shadows of nested HWPTs over it may now reach more (a failure leaves them degraded,
	// never reaching too much: the map stands).
	(void)impl_->observe_stage2_map(**ioas);
	return iova;
}

Result<uint64_t> Ctx::ioas_map_guest(uint32_t ioas_id, uint32_t flags, uint64_t iova,
				     const GuestMemory &mem, uint64_t gpa, uint64_t length)
{
	impl_->settle_freed_tables(ioas_id);
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Ioas *> ioas = impl_->get_ioas(ioas_id);
	if (!ioas)
		return ioas.status();
	std::byte *host = length == 0 ? nullptr : mem.translate(gpa, length);
	if (host == nullptr)
		return Status::error(-EINVAL, "ioas {} map: guest 0x{:x}+0x{:x}"
				     " is not inside one guest memory region", ioas_id, gpa,
				     length);
	if (Status s = impl_->map_range(**ioas, flags, iova, host, length, gpa, "map");
	    !s)
		return s;
	if (Status s = impl_->mirror_map(**ioas, iova); !s) {
		impl_->remove_mapping(**ioas, iova);
		return s;
	}
	// Shadows of nested HWPTs over it may now reach more (a failure leaves them degraded,
	// never reaching too much: the map stands).
	(void)impl_->observe_stage2_map(**ioas);
	return iova;
}

Status Ctx::ioas_cut(uint32_t ioas_id, uint64_t iova)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Ioas *> ioas_r = impl_->get_ioas(ioas_id);
	if (!ioas_r)
		return ioas_r.status();
	Ioas &ioas = **ioas_r;
	auto it = ioas.mappings.upper_bound(iova);
	if (it == ioas.mappings.begin())
		return {};
	--it;
	Mapping &m = it->second;
	if (iova - m.iova >= m.length - 1)
		return {}; // unmapped, or already the last byte
	const uint64_t left = iova + 1 - m.iova;
	const uint64_t host = reinterpret_cast<uintptr_t>(m.host) + left;
	// Whole pages on both sides: the IOAS's page set counts each mapping's pages.
	const uint64_t align = std::max<uint64_t>(impl_->alignment(ioas),
						  1ull << PageSet::kPageShift);
	if (((iova + 1) | host) & (align - 1))
		return Status::error(-EINVAL, "ioas {} cut at 0x{:x}: 0x{:x} (host 0x{:x}) is not "
				     "aligned to 0x{:x}", ioas_id, iova, iova + 1, host, align);
	if (!ioas.mirrors.empty())
		return Status::error(-EINVAL, "ioas {} cut at 0x{:x}: {} could not unmap a part "
				     "of mapping 0x{:x}+0x{:x}", ioas_id, iova,
				     ioas.mirrors.front()->name(), m.iova, m.length);
	Mapping rhs = m;
	rhs.iova = iova + 1;
	rhs.length = m.length - left;
	rhs.host = m.host + left;
	if (rhs.gpa)
		*rhs.gpa += left;
	const uint64_t m_iova = m.iova;
	// Allocates before m changes; the insert moves values in the B-tree: find m again.
	ioas.mappings.emplace_hint(std::next(it), rhs.iova, rhs);
	ioas.mappings.find(m_iova)->second.length = left;
	return {};
}

Result<uint64_t> Ctx::ioas_unmap(uint32_t ioas_id, uint64_t iova, uint64_t length)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Ioas *> ioas_r = impl_->get_ioas(ioas_id);
	if (!ioas_r)
		return ioas_r.status();
	Ioas &ioas = **ioas_r;
	const bool all = iova == 0 && length == UINT64_MAX;
	if (!all) {
		if (length == 0)
			return Status::error(-EINVAL, "ioas {} unmap: length is 0", ioas_id);
		if (iova + (length - 1) < iova)
			return Status::error(-EOVERFLOW, "ioas {} unmap: 0x{:x}+0x{:x}"
					     " wraps", ioas_id, iova, length);
	}
	const uint64_t last = all ? UINT64_MAX : iova + (length - 1);
	// Check everything first: a failed unmap changes nothing. The victims are copies: the
	// B-tree moves values as mappings go, and a copy saves a lookup per use.
	std::vector<Mapping> victims;
	auto it = ioas.mappings.upper_bound(iova);
	if (it != ioas.mappings.begin())
		it = std::prev(it);
	for (; it != ioas.mappings.end() && it->first <= last; ++it) {
		const Mapping &m = it->second;
		const uint64_t m_last = m.iova + (m.length - 1);
		if (m_last < iova)
			continue;
		if (m.iova < iova || m_last > last)
			return Status::error(-ENOENT, "ioas {} unmap 0x{:x}+0x{:x}"
					     ": would split mapping 0x{:x}+0x{:x}"
					     " (unmap whole mappings)", ioas_id, iova, length,
					     m.iova, m.length);
		victims.push_back(m);
	}
	if (victims.empty()) {
		if (all)
			return uint64_t{0};
		return Status::error(-ENOENT, "ioas {} unmap 0x{:x}+0x{:x}"
				     ": nothing is mapped there", ioas_id, iova, length);
	}
	if (Status s = impl_->check_unmap(ioas, victims); !s)
		return Status::error(s.code(), "ioas {} unmap 0x{:x}+0x{:x}: {}",
				     ioas_id, iova, length, s.message());
	uint64_t unmapped = 0;
	std::vector<std::pair<uint64_t, uint64_t>> gone; // host memory no longer mapped
	// Allocated before the first mapping goes: each one's invalidations, its memory.
	gone.reserve(victims.size());
	impl_->reserve(static_cast<unsigned>(victims.size() * ioas.hwpts.size()), 0, 0);
	// Shadows of nested HWPTs over this IOAS drop what reached the memory that went.
	auto unshadow = [&]() -> Status {
		for (const auto &[host, len] : gone)
			if (Status s = impl_->observe_stage2_unmap(ioas, host, len); !s)
				return s;
		return {};
	};
	for (const Mapping &m : victims) {
		// The kernel's copy goes first: when this returns, no real device reaches it.
		if (Status s = impl_->mirror_unmap(ioas, m.iova); !s) {
			(void)unshadow();
			return s;
		}
		gone.emplace_back(reinterpret_cast<uintptr_t>(m.host), m.length);
		unmapped += impl_->remove_mapping(ioas, m.iova);
	}
	if (Status s = unshadow(); !s)
		return s;
	return unmapped;
}

Result<uint64_t> Ctx::ioas_copy(uint32_t dst_id, uint32_t src_id, uint32_t flags,
				uint64_t dst_iova, uint64_t src_iova, uint64_t length)
{
	impl_->settle_freed_tables(dst_id);
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Ioas *> src = impl_->get_ioas(src_id);
	if (!src)
		return src.status();
	Result<Ioas *> dst = impl_->get_ioas(dst_id);
	if (!dst)
		return dst.status();
	if (flags & ~kMapFlags)
		return Status::error(-EOPNOTSUPP, "ioas {} copy: unknown flags {:#x}", dst_id,
				     flags & ~kMapFlags);
	if (length == 0)
		return Status::error(-EINVAL, "ioas {} copy: length is 0", dst_id);
	if (src_iova + (length - 1) < src_iova)
		return Status::error(-EOVERFLOW, "ioas {} copy: source 0x{:x}+0x{:x}"
				     " wraps", src_id, src_iova, length);
	// The source range must be mapped end to end; it becomes one or more pieces.
	struct Piece {
		uint64_t offset;
		std::byte *host;
		uint64_t length;
		std::optional<uint64_t> gpa;
	};
	std::vector<Piece> pieces;
	uint64_t pos = src_iova;
	const uint64_t last = src_iova + (length - 1);
	while (true) {
		auto it = (*src)->mappings.upper_bound(pos);
		const Mapping *m =
			it == (*src)->mappings.begin() ? nullptr : &std::prev(it)->second;
		if (m == nullptr || m->iova + (m->length - 1) < pos)
			return Status::error(-ENOENT, "ioas {} copy: source 0x{:x}"
					     " is not mapped in ioas {}", dst_id, pos, src_id);
		const uint64_t off = pos - m->iova;
		const uint64_t n = std::min(m->length - off, last - pos + 1);
		pieces.push_back({pos - src_iova, m->host + off, n,
				  m->gpa ? std::optional<uint64_t>(*m->gpa + off) : std::nullopt});
		if (last - pos + 1 == n)
			break;
		pos += n;
	}
	Ioas &d = **dst;
	const uint64_t align = impl_->alignment(d);
	if (!(flags & IODP_IOAS_MAP_FIXED_IOVA)) {
		const uint64_t hva = reinterpret_cast<uintptr_t>(pieces[0].host);
		Result<uint64_t> a = impl_->alloc_iova(d, length, hva & -hva);
		if (!a)
			return a.status();
		dst_iova = *a;
	}
	// Each piece is a mapping of its own; check them all, then map them all.
	const uint32_t map_flags = flags | IODP_IOAS_MAP_FIXED_IOVA;
	if (dst_iova & (align - 1))
		return Status::error(-EINVAL, "ioas {} copy: iova 0x{:x}"
				     " is not aligned to 0x{:x}", dst_id, dst_iova, align);
	if (dst_iova + (length - 1) < dst_iova)
		return Status::error(-EOVERFLOW, "ioas {} copy: 0x{:x}+0x{:x} wraps",
				     dst_id, dst_iova, length);
	if (Status s = impl_->check_fixed(d, dst_iova, length); !s)
		return s;
	std::vector<uint64_t> done;
	done.reserve(pieces.size());
	impl_->reserve(static_cast<unsigned>(pieces.size() * d.hwpts.size()), 0, 0);
	for (const Piece &p : pieces) {
		uint64_t at = dst_iova + p.offset;
		Status s;
		try {
			s = impl_->map_range(d, map_flags, at, p.host, p.length, p.gpa, "copy");
		} catch (const std::bad_alloc &) {
			// map_range() changed nothing; the pieces already mapped go below.
			s = Status::error(-ENOMEM, "ioas {} copy: out of memory", dst_id);
		}
		if (!s) {
			for (uint64_t v : done)
				impl_->remove_mapping(d, v);
			return s;
		}
		done.push_back(at);
	}
	for (size_t i = 0; i < done.size(); i++) {
		if (Status s = impl_->mirror_map(d, done[i]); !s) {
			for (size_t j = 0; j < done.size(); j++) {
				if (j < i)
					(void)impl_->mirror_unmap(d, done[j]);
				impl_->remove_mapping(d, done[j]);
			}
			return s;
		}
	}
	(void)impl_->observe_stage2_map(d);
	return dst_iova;
}

Status Ctx::option(uint32_t option_id, uint16_t op, uint32_t object_id, uint64_t *val)
{
	Impl::LockThenSyncWorkers call(*impl_);
	/* The kernel's order (iommufd_option): the option, its object, the op, the value. */
	switch (option_id) {
	case IODP_OPTION_RLIMIT_MODE:
		if (object_id != 0)
			return Status::error(-EOPNOTSUPP, "option RLIMIT_MODE: object_id must be 0, "
					     "not {}", object_id);
		/*
		 * Which limit pinned memory is charged to. iodp pins nothing (the caller owns the
		 * memory it maps), so the mode is kept for the caller and changes nothing else;
		 * like the kernel's it can only change while the context is empty.
		 */
		if (op == IODP_OPTION_OP_GET) {
			*val = impl_->rlimit_mode;
			return {};
		}
		if (op != IODP_OPTION_OP_SET)
			return Status::error(-EOPNOTSUPP, "option: unknown op {}", op);
		if (!impl_->objects.empty())
			return Status::error(-EBUSY, "option RLIMIT_MODE: the context has objects");
		if (*val > 1)
			return Status::error(-EINVAL, "option RLIMIT_MODE: value {}"
					     " is not 0 or 1", *val);
		impl_->rlimit_mode = static_cast<uint8_t>(*val);
		return {};
	case IODP_OPTION_HUGE_PAGES: {
		Result<Ioas *> ioas = impl_->get_ioas(object_id);
		if (!ioas)
			return ioas.status();
		if (op == IODP_OPTION_OP_GET) {
			*val = (*ioas)->huge_pages ? 1 : 0;
			return {};
		}
		if (op != IODP_OPTION_OP_SET)
			return Status::error(-EOPNOTSUPP, "option: unknown op {}", op);
		if (*val > 1)
			return Status::error(-EINVAL, "option HUGE_PAGES: value {}"
					     " is not 0 or 1", *val);
		/*
		 * As the kernel's: large pages go back on at any time (for later maps); off
		 * only while no HWPT holds mappings (their leaves are already large), and
		 * then every mapping must already be page aligned (off means page alignment).
		 */
		if (*val == 0 && (*ioas)->huge_pages && !(*ioas)->hwpts.empty() &&
		    !(*ioas)->mappings.empty())
			return Status::error(-EINVAL, "ioas {}: HUGE_PAGES cannot be turned off "
					     "while a HWPT maps something", object_id);
		if (*val == 0)
			if (Status s = impl_->check_aligned(**ioas, 4096); !s)
				return s;
		(*ioas)->huge_pages = *val == 1;
		for (HwptPaging *h : (*ioas)->hwpts)
			h->table.set_max_leaf((*ioas)->huge_pages
						      ? h->leaf_cap
						      : 1ull << h->table.stage().granule_shift);
		return {};
	}
	default:
		return Status::error(-EOPNOTSUPP, "option: unknown option_id {}", option_id);
	}
}

} // namespace iodp::ctl
