/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shadow mode: a nested HWPT's translation kept in a kernel address space. See
 * <iodp/shadow_mode.h> for what is re-walked when and why.
 */
#include <iodp/iodp.h>
#include <iodp/shadow_mode.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <fstream>
#include <vector>

namespace iodp::vfio {

ShadowMode::ShadowMode(std::string name, ctl::IoasMirror &kernel, std::string sysfs,
		       const shadow::ShadowConfig &config)
	: name_(std::move(name)), mapper_(kernel, std::move(sysfs)), shadow_(mapper_, config)
{
}

Status ShadowMode::Mapper::map(uint64_t iova, uint64_t host, uint64_t size, uint8_t perm)
{
	ctl::Mapping m;
	m.iova = iova;
	m.length = size;
	m.host = reinterpret_cast<std::byte *>(host);
	m.flags = ((perm & pgtable::kPermRead) ? IODP_IOAS_MAP_READABLE : 0u) |
		  ((perm & pgtable::kPermWrite) ? IODP_IOAS_MAP_WRITEABLE : 0u);
	Status s = kernel_.map(m);
	if (s || s.code() != -ENOSPC)
		return s;
	// A full type1 container: name the module parameter's value too.
	std::ifstream f(sysfs_ + "/module/vfio_iommu_type1/parameters/dma_entry_limit");
	unsigned long limit = 0;
	if (f >> limit)
		return Status::error(s.code(), "{} (vfio_iommu_type1.dma_entry_limit={})",
				     s.message(), limit);
	return s;
}

Status ShadowMode::Mapper::unmap(uint64_t iova, uint64_t size)
{
	ctl::Mapping m;
	m.iova = iova;
	m.length = size;
	return kernel_.unmap(m);
}

Status ShadowMode::sync(const pgtable::Translation *xlat, uint64_t start, uint64_t last)
{
	const uint64_t length = last - start == UINT64_MAX ? UINT64_MAX : last - start + 1;
	Status s = xlat != nullptr ? shadow_.sync(*xlat, start, length) : shadow_.drop(start, length);
	if (!s)
		return Status::error(s.code(), "{}: {}{}", name_, s.message(),
				     shadow_.degraded() ? " (degraded: the kernel may hold a stale "
							  "view until this range is re-shadowed)"
							: "");
	return s;
}

void ShadowMode::publish()
{
	events_.store(events_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
	syncs_.store(shadow_.stats().syncs, std::memory_order_relaxed);
	degraded_.store(shadow_.degraded(), std::memory_order_relaxed);
}

Status ShadowMode::changed(const pgtable::Translation *xlat,
			   std::span<const ctl::IovaRange> ranges)
{
	Status s = sync_all(xlat, ranges);
	publish();
	return s;
}

Status ShadowMode::sync_all(const pgtable::Translation *xlat,
			    std::span<const ctl::IovaRange> ranges)
{
	// Every range is tried: a failure in one leaves the others right.
	Status first;
	for (const ctl::IovaRange &r : ranges)
		if (Status s = sync(xlat, r.start, r.last); !s && first)
			first = s;
	return first;
}

Status ShadowMode::host_gone(const pgtable::Translation *xlat, uint64_t host, uint64_t length)
{
	if (length == 0)
		return {};
	const uint64_t host_last = host + (length - 1);
	// The IOVA ranges whose kernel mappings reached the memory that went, merged.
	std::vector<ctl::IovaRange> hit;
	for (const auto &[iova, e] : shadow_.extents()) {
		if (e.host > host_last || e.host + (e.size - 1) < host)
			continue;
		const uint64_t last = iova + (e.size - 1);
		if (!hit.empty() && hit.back().last + 1 == iova)
			hit.back().last = last;
		else
			hit.push_back({iova, last});
	}
	Status s = sync_all(xlat, hit);
	publish();
	return s;
}

} // namespace iodp::vfio
