/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * IOAS mirrors: kernel address spaces (a VFIO container, an iommufd IOAS) that a real device
 * translates through, kept in step with an iodp IOAS. The IOAS calls in ioas.cc call
 * mirror_map() / mirror_unmap() at their public level; this file is everything else.
 */
#include "impl.h"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>

namespace iodp::ctl {

namespace {

/** The gaps of @p ranges (sorted, inclusive) over the whole 64-bit space. */
std::vector<IovaRange> complement(const std::vector<IovaRange> &ranges)
{
	std::vector<IovaRange> out;
	uint64_t pos = 0;
	for (const IovaRange &r : ranges) {
		if (r.start > pos)
			out.push_back({pos, r.start - 1});
		if (r.last == UINT64_MAX)
			return out;
		pos = std::max(pos, r.last + 1);
	}
	out.push_back({pos, UINT64_MAX});
	return out;
}

bool inside(const std::vector<IovaRange> &ranges, uint64_t start, uint64_t last)
{
	for (const IovaRange &r : ranges)
		if (r.start <= start && last <= r.last)
			return true;
	return false;
}

std::string describe(const std::vector<IovaRange> &ranges)
{
	std::string s;
	for (const IovaRange &r : ranges)
		s += fmt::format("{}0x{:x}-0x{:x}", s.empty() ? "" : ", ", r.start, r.last);
	return s.empty() ? "none" : s;
}

} // namespace

void Ctx::Impl::mirror_reserved(const Ioas &ioas, std::vector<Reserved> &out) const
{
	for (const IoasMirror *m : ioas.mirrors) {
		const std::vector<IovaRange> ranges = m->ranges();
		const std::string owner = m->name() + ": the kernel maps only " + describe(ranges);
		for (const IovaRange &gap : complement(ranges))
			out.push_back({gap, owner});
	}
}

bool Ctx::Impl::mirror_refuses(const Ioas &ioas, uint64_t start, uint64_t last) const
{
	for (const IoasMirror *m : ioas.mirrors)
		if (!inside(m->ranges(), start, last))
			return true;
	return false;
}

Status Ctx::Impl::mirror_map(const Ioas &ioas, uint64_t iova)
{
	if (ioas.mirrors.empty())
		return {}; // most IOASes: no lookup
	const Mapping &m = ioas.mappings.at(iova);
	for (size_t i = 0; i < ioas.mirrors.size(); i++) {
		Status s = ioas.mirrors[i]->map(m);
		if (!s) {
			for (size_t j = 0; j < i; j++)
				(void)ioas.mirrors[j]->unmap(m);
			return Status::error(s.code(), "ioas {}: {}", ioas.id, s.message());
		}
	}
	return {};
}

Status Ctx::Impl::mirror_unmap(const Ioas &ioas, uint64_t iova)
{
	if (ioas.mirrors.empty())
		return {};
	const Mapping &m = ioas.mappings.at(iova);
	for (IoasMirror *mirror : ioas.mirrors)
		if (Status s = mirror->unmap(m); !s)
			return Status::error(s.code(), "ioas {}: {}", ioas.id, s.message());
	return {};
}

Status Ctx::ioas_attach_mirror(uint32_t ioas_id, IoasMirror *mirror)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Ioas *> ioas_r = impl_->get_ioas(ioas_id);
	if (!ioas_r)
		return ioas_r.status();
	Ioas &ioas = **ioas_r;
	if (mirror == nullptr)
		return Status::error(-EINVAL, "ioas {}: no mirror given", ioas_id);
	if (std::find(ioas.mirrors.begin(), ioas.mirrors.end(), mirror) != ioas.mirrors.end())
		return Status::error(-EEXIST, "ioas {}: {} is already attached", ioas_id,
				     mirror->name());
	const std::vector<IovaRange> ranges = mirror->ranges();
	const uint64_t page = mirror->min_page();
	for (const auto &[iova, m] : ioas.mappings) {
		const uint64_t last = iova + (m.length - 1);
		if (!inside(ranges, iova, last))
			return Status::error(-EADDRINUSE, "ioas {}: cannot mirror into {}: mapping "
					     "0x{:x}+0x{:x} is outside the ranges it "
					     "maps ({})", ioas_id, mirror->name(), iova,
					     m.length, describe(ranges).c_str());
		if ((iova | m.length | reinterpret_cast<uintptr_t>(m.host)) & (page - 1))
			return Status::error(-EINVAL, "ioas {}: cannot mirror into {}: mapping "
					     "0x{:x}+0x{:x} is not aligned to its "
					     "0x{:x}-byte pages", ioas_id,
					     mirror->name(), iova, m.length, page);
	}
	for (const IovaRange &a : ioas.allowed)
		for (const IovaRange &gap : complement(ranges))
			if (a.start <= gap.last && gap.start <= a.last)
				return Status::error(-EADDRINUSE, "ioas {}: cannot mirror into {}: "
						     "allowed range 0x{:x}-0x{:x}"
						     " is outside the ranges it maps ({})",
						     ioas_id, mirror->name(), a.start,
						     a.last, describe(ranges).c_str());
	// Replay what is mapped; a failure takes back what this mirror took.
	std::vector<const Mapping *> done;
	for (const auto &[iova, m] : ioas.mappings) {
		if (Status s = mirror->map(m); !s) {
			for (const Mapping *d : done)
				(void)mirror->unmap(*d);
			return Status::error(s.code(), "ioas {}: {}", ioas_id, s.message());
		}
		done.push_back(&m);
	}
	ioas.mirrors.push_back(mirror);
	ioas.users++;
	return {};
}

Status Ctx::ioas_detach_mirror(uint32_t ioas_id, IoasMirror *mirror)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Ioas *> ioas_r = impl_->get_ioas(ioas_id);
	if (!ioas_r)
		return ioas_r.status();
	Ioas &ioas = **ioas_r;
	auto it = std::find(ioas.mirrors.begin(), ioas.mirrors.end(), mirror);
	if (it == ioas.mirrors.end())
		return Status::error(-ENOENT, "ioas {}: that mirror is not attached", ioas_id);
	ioas.mirrors.erase(it);
	ioas.users--;
	return {};
}

} // namespace iodp::ctl
