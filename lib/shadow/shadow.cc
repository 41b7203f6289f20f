/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shadow::sync: range walk, coalesce, diff against the kernel's mappings, unmaps, then maps.
 * See shadow.h for why each step is there.
 */
#include <iodp/shadow.h>

#include <algorithm>
#include <cinttypes>
#include <iterator>
#include <utility>
#include <vector>

namespace iodp::shadow {

namespace {

using Run = std::pair<uint64_t, Extent>; // iova, extent

/** The runs a range walk finds, coalesced (or not) as the config says. */
class Wanted : public pgtable::RangeSink {
public:
	Wanted(const ShadowConfig &c) : coalesce_(c.coalesce), need_(c.need_perm) {}

	void run(const pgtable::RangeRun &r) override
	{
		// A run the kernel cannot express (write-only, exec-only) is left unmapped: the
		// device faults there, as iodp's own translation refuses the access it lacks.
		if ((r.perm & need_) != need_)
			return;
		const uint8_t perm = r.perm & (pgtable::kPermRead | pgtable::kPermWrite);
		if (coalesce_ && !runs.empty()) {
			auto &[iova, e] = runs.back();
			if (iova + e.size == r.iova && e.host + e.size == r.out && e.perm == perm) {
				e.size += r.size;
				return;
			}
		}
		runs.push_back({r.iova, {r.size, r.out, perm}});
	}

	std::vector<Run> runs;

private:
	const bool coalesce_;
	const uint8_t need_;
};

bool adjacent(const Run &a, const Run &b)
{
	return a.first + a.second.size == b.first &&
	       a.second.host + a.second.size == b.second.host && a.second.perm == b.second.perm;
}

} // namespace

Shadow::Shadow(KernelMapper &kernel, const ShadowConfig &config)
	: kernel_(kernel), config_(config)
{
}

Status Shadow::unmap_run(uint64_t iova, uint64_t size)
{
	Status s = kernel_.unmap(iova, size);
	if (!s.ok()) {
		stats_.failures++;
		return Status::error(s.code(), "shadow: unmapping [0x{:x}, +0x{:x}"
				     ") from the kernel failed: {} ({} mapping(s), {}"
				     " bytes mapped)", iova, size, s.message(),
				     mapped_.size(), total_);
	}
	stats_.unmap_calls++;
	stats_.bytes_unmapped += size;
	// The call covered whole extents: forget them.
	for (auto it = mapped_.lower_bound(iova); it != mapped_.end() && it->first < iova + size;) {
		total_ -= it->second.size;
		it = mapped_.erase(it);
	}
	return {};
}

Status Shadow::map_one(uint64_t iova, const Extent &e)
{
	Status s = kernel_.map(iova, e.host, e.size, e.perm);
	if (!s.ok()) {
		stats_.failures++;
		return Status::error(s.code(), "shadow: mapping [0x{:x}, +0x{:x}"
				     ") into the kernel failed: {} ({} mapping(s), {}"
				     " bytes mapped)", iova, e.size, s.message(),
				     mapped_.size(), total_);
	}
	stats_.map_calls++;
	stats_.bytes_mapped += e.size;
	mapped_.emplace(iova, e);
	total_ += e.size;
	return {};
}

Status Shadow::sync(const pgtable::Translation &xlat, uint64_t start, uint64_t length)
{
	if (length == 0)
		return {};
	const uint64_t last = start + (length - 1) < start ? ~0ull : start + (length - 1);
	stats_.syncs++;
	// 1-2: the range walk, coalesced; 3-4 in apply().
	Wanted want(config_);
	stats_.entries_read += pgtable::walk_range(xlat, start, last - start + 1, config_.priv,
						   want).entries;
	return apply(want.runs, start, last);
}

Status Shadow::drop(uint64_t start, uint64_t length)
{
	if (length == 0)
		return {};
	const uint64_t last = start + (length - 1) < start ? ~0ull : start + (length - 1);
	stats_.syncs++;
	return apply({}, start, last);
}

void Shadow::mark_stale(uint64_t start, uint64_t last)
{
	// Merge with what overlaps or touches it.
	auto it = stale_.upper_bound(start);
	if (it != stale_.begin() && (std::prev(it)->second >= start ||
				     std::prev(it)->second + 1 == start))
		--it;
	while (it != stale_.end() && (it->first <= last || it->first == last + 1)) {
		start = std::min(start, it->first);
		last = std::max(last, it->second);
		it = stale_.erase(it);
	}
	stale_.emplace(start, last);
}

void Shadow::mark_fresh(uint64_t start, uint64_t last)
{
	auto it = stale_.upper_bound(start);
	if (it != stale_.begin() && std::prev(it)->second >= start)
		--it;
	while (it != stale_.end() && it->first <= last) {
		const auto [f, l] = *it;
		it = stale_.erase(it);
		if (f < start)
			stale_.emplace(f, start - 1);
		if (l > last)
			it = stale_.emplace(last + 1, l).first;
	}
}

Status Shadow::apply(const std::vector<std::pair<uint64_t, Extent>> &wanted, uint64_t start,
		     uint64_t last)
{
	// What the kernel holds over the range, in IOVA order.
	std::vector<Run> have;
	auto it = mapped_.lower_bound(start);
	if (it != mapped_.begin()) {
		auto before = std::prev(it);
		if (before->first + before->second.size > start)
			it = before;
	}
	for (; it != mapped_.end() && it->first <= last; ++it)
		have.push_back(*it);

	// Unchanged mappings inside the range stay; everything else in `have` goes.
	std::vector<bool> keep_have(have.size(), false), keep_want(wanted.size(), false);
	for (size_t i = 0, j = 0; i < have.size() && j < wanted.size();) {
		if (have[i].first < wanted[j].first) {
			i++;
		} else if (wanted[j].first < have[i].first) {
			j++;
		} else {
			const bool inside = have[i].first >= start &&
					    have[i].first + (have[i].second.size - 1) <= last;
			if (inside && have[i].second == wanted[j].second) {
				keep_have[i] = keep_want[j] = true;
				stats_.kept++;
			}
			i++;
			j++;
		}
	}

	// The parts of straddling mappings outside the range are mapped again as they were.
	std::vector<Run> maps;
	for (size_t i = 0; i < have.size(); i++) {
		if (keep_have[i])
			continue;
		const auto &[iova, e] = have[i];
		if (iova < start)
			maps.push_back({iova, {start - iova, e.host, e.perm}});
		const uint64_t end_last = iova + (e.size - 1);
		if (end_last > last)
			maps.push_back({last + 1, {end_last - last, e.host + (last + 1 - iova), e.perm}});
	}
	for (size_t j = 0; j < wanted.size(); j++)
		if (!keep_want[j])
			maps.push_back(wanted[j]);
	std::sort(maps.begin(), maps.end(),
		  [](const Run &a, const Run &b) { return a.first < b.first; });
	if (config_.coalesce && maps.size() > 1) {
		std::vector<Run> merged{maps.front()};
		for (size_t k = 1; k < maps.size(); k++) {
			if (adjacent(merged.back(), maps[k]))
				merged.back().second.size += maps[k].second.size;
			else
				merged.push_back(maps[k]);
		}
		maps = std::move(merged);
	}

	// Unmaps first, adjacent ones as one call; then the maps.
	for (size_t i = 0; i < have.size();) {
		if (keep_have[i]) {
			i++;
			continue;
		}
		const uint64_t iova = have[i].first;
		uint64_t size = have[i].second.size;
		size_t k = i + 1;
		for (; k < have.size() && !keep_have[k] && have[k].first == iova + size; k++)
			size += have[k].second.size;
		if (Status s = unmap_run(iova, size); !s.ok()) {
			mark_stale(start, last);
			return s;
		}
		i = k;
	}
	for (const auto &[iova, e] : maps) {
		if (Status s = map_one(iova, e); !s.ok()) {
			mark_stale(start, last);
			return s;
		}
	}
	mark_fresh(start, last);
	return {};
}

Status Shadow::clear()
{
	while (!mapped_.empty()) {
		const auto [iova, e] = *mapped_.begin();
		uint64_t size = e.size;
		for (auto it = std::next(mapped_.begin());
		     it != mapped_.end() && it->first == iova + size; ++it)
			size += it->second.size;
		if (Status s = unmap_run(iova, size); !s.ok())
			return s;
	}
	return {};
}

} // namespace iodp::shadow
