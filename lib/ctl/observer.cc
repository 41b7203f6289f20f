/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Nested observers: things outside iodp (a real device's kernel IOMMU in shadow mode) that
 * must translate what a nested HWPT translates. hwpt.cc and ioas.cc call observe_*() where
 * a guest invalidation or a stage-2 change lands; this file is everything else.
 */
#include "impl.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>

namespace iodp::ctl {

std::vector<IovaRange> Ctx::Impl::observed_scope(const HwptNested &h) const
{
	Binding b;
	b.hwpt = const_cast<HwptNested *>(&h);
	const iotlb::Route r = route_of(&b, std::nullopt);
	const unsigned ias = r.blocked == pgtable::FaultKind::none ? r.s1.ias : 64;
	if (ias >= 64)
		return {{0, UINT64_MAX}};
	const uint64_t half = 1ull << (ias - 1);
	if (r.blocked == pgtable::FaultKind::none && (r.s1.format == pgtable::Format::x86_64_4l ||
						      r.s1.format == pgtable::Format::x86_64_5l))
		return {{0, half - 1}, {0 - half, UINT64_MAX}}; // canonical halves
	return {{0, (1ull << ias) - 1}};
}

namespace {

/** The translation an observer of @p h walks now, or nothing when DMA is blocked. */
struct Now {
	iotlb::Route route;
	pgtable::Translation xlat;
	void fill()
	{
		if (route.blocked == pgtable::FaultKind::none && route.mem != nullptr)
			xlat = route.translation();
	}
	const pgtable::Translation *get() const
	{
		return route.blocked == pgtable::FaultKind::none && xlat.mem != nullptr ? &xlat
											: nullptr;
	}
};

} // namespace

Status Ctx::Impl::observe_changed(HwptNested &h, std::vector<IovaRange> ranges)
{
	if (h.observers.empty() || ranges.empty())
		return {};
	// Sorted and merged: one walk per stretch, however many entries named it.
	std::sort(ranges.begin(), ranges.end(),
		  [](const IovaRange &a, const IovaRange &b) { return a.start < b.start; });
	std::vector<IovaRange> merged{ranges.front()};
	for (size_t i = 1; i < ranges.size(); i++) {
		IovaRange &m = merged.back();
		if (m.last == UINT64_MAX || ranges[i].start <= m.last + 1)
			m.last = std::max(m.last, ranges[i].last);
		else
			merged.push_back(ranges[i]);
	}
	Binding b;
	b.hwpt = &h;
	Now now{route_of(&b, std::nullopt), {}};
	now.fill();
	Status first;
	for (NestedObserver *o : h.observers)
		if (Status s = o->changed(now.get(), merged); !s && first)
			first = Status::error(s.code(), "hwpt {}: {}", h.id, s.message());
	return first;
}

/** Every observed nested HWPT whose stage 2 is a paging HWPT on @p ioas. */
template <class Fn>
static void for_each_observed(const std::map<uint32_t, std::unique_ptr<Object>> &objects,
			      const Ioas &ioas, Fn &&fn)
{
	for (const auto &[id, o] : objects) {
		if (o->type != ObjType::hwpt_nested)
			continue;
		auto &h = static_cast<HwptNested &>(*o);
		if (!h.observers.empty() && h.parent->ioas == &ioas)
			fn(h);
	}
}

Status Ctx::Impl::observe_stage2_map(const Ioas &ioas)
{
	Status first;
	for_each_observed(objects, ioas, [&](HwptNested &h) {
		if (Status s = observe_changed(h, observed_scope(h)); !s && first)
			first = s;
	});
	return first;
}

Status Ctx::Impl::observe_stage2_unmap(const Ioas &ioas, uint64_t host, uint64_t length)
{
	Status first;
	for_each_observed(objects, ioas, [&](HwptNested &h) {
		Binding b;
		b.hwpt = &h;
		Now now{route_of(&b, std::nullopt), {}};
		now.fill();
		for (NestedObserver *obs : h.observers)
			if (Status s = obs->host_gone(now.get(), host, length); !s && first)
				first = Status::error(s.code(), "hwpt {}: {}", h.id,
						      s.message());
	});
	return first;
}

Status Ctx::hwpt_attach_observer(uint32_t hwpt_id, NestedObserver *observer)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Hwpt *> hr = impl_->get_hwpt(hwpt_id);
	if (!hr)
		return hr.status();
	if ((*hr)->type != ObjType::hwpt_nested)
		return Status::error(-EINVAL, "hwpt {} is a paging HWPT: only a nested HWPT is "
				     "shadowed (mirror a paging HWPT's IOAS instead)", hwpt_id);
	auto &h = static_cast<HwptNested &>(**hr);
	if (observer == nullptr)
		return Status::error(-EINVAL, "hwpt {}: no observer given", hwpt_id);
	if (std::find(h.observers.begin(), h.observers.end(), observer) != h.observers.end())
		return Status::error(-EEXIST, "hwpt {}: {} is already attached", hwpt_id,
				     observer->name());
	// The first view: everything the HWPT translates now.
	Binding b;
	b.hwpt = &h;
	Now now{impl_->route_of(&b, std::nullopt), {}};
	now.fill();
	const std::vector<IovaRange> scope = impl_->observed_scope(h);
	if (Status s = observer->changed(now.get(), scope); !s)
		return Status::error(s.code(), "hwpt {}: {}", hwpt_id, s.message());
	h.observers.push_back(observer);
	h.users++;
	return {};
}

Status Ctx::hwpt_detach_observer(uint32_t hwpt_id, NestedObserver *observer)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Hwpt *> hr = impl_->get_hwpt(hwpt_id);
	if (!hr)
		return hr.status();
	if ((*hr)->type != ObjType::hwpt_nested)
		return Status::error(-ENOENT, "hwpt {}: that observer is not attached", hwpt_id);
	auto &h = static_cast<HwptNested &>(**hr);
	auto it = std::find(h.observers.begin(), h.observers.end(), observer);
	if (it == h.observers.end())
		return Status::error(-ENOENT, "hwpt {}: that observer is not attached", hwpt_id);
	h.observers.erase(it);
	h.users--;
	return {};
}

} // namespace iodp::ctl
