/* SPDX-License-Identifier: BSD-3-Clause */
/* Hardware nesting through iommufd: probe, nested HWPT allocation, batched invalidations. */
#include "nesting.h"

#include <iodp/iodp.h>
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cinttypes>
#include <cstring>

namespace iodp::vfio::nesting {

static_assert(sizeof(kabi::iommu_hwpt_alloc) == 48, "uAPI layout");
static_assert(offsetof(kabi::iommu_hwpt_alloc, data_uptr) == 32, "uAPI layout");
static_assert(offsetof(kabi::iommu_hwpt_alloc, fault_id) == 40, "uAPI layout");
static_assert(sizeof(kabi::iommu_hwpt_vtd_s1) == 24, "uAPI layout");
static_assert(sizeof(kabi::iommu_hwpt_invalidate) == 32, "uAPI layout");
static_assert(offsetof(kabi::iommu_hwpt_invalidate, entry_num) == 24, "uAPI layout");
static_assert(sizeof(kabi::iommu_hwpt_vtd_s1_invalidate) == 24, "uAPI layout");
static_assert(sizeof(kabi::iommu_hw_info_vtd) == 24, "uAPI layout");
static_assert(sizeof(kabi::iommu_hw_info) == 40, "uAPI layout");
static_assert(offsetof(kabi::iommu_hw_info, out_capabilities) == 32, "uAPI layout");

namespace {

std::string err_text(int err)
{
	std::string s = std::strerror(err);
	switch (err) {
	case EOPNOTSUPP:
		s += " (the kernel's IOMMU driver offers no nesting for this device)";
		break;
	case ENOTTY:
		s += " (this kernel does not know the call)";
		break;
	case EINVAL:
		s += " (the kernel refused the arguments)";
		break;
	default:
		break;
	}
	return s;
}

} // namespace

Result<uint32_t> alloc_parent(const Ioctl &call, uint32_t dev_id, uint32_t ioas_id)
{
	kabi::iommu_hwpt_alloc a{};
	a.size = sizeof(a);
	a.flags = kabi::IOMMU_HWPT_ALLOC_NEST_PARENT;
	a.dev_id = dev_id;
	a.pt_id = ioas_id;
	a.data_type = kabi::IOMMU_HWPT_DATA_NONE;
	if (int r = call(kabi::IOMMU_HWPT_ALLOC, &a); r != 0)
		return Status::error(r, "IOMMU_HWPT_ALLOC with NEST_PARENT on kernel ioas {}: {}",
				     ioas_id, err_text(-r).c_str());
	return a.out_hwpt_id;
}

Result<uint32_t> alloc_nested_vtd(const Ioctl &call, uint32_t dev_id, uint32_t parent,
				  const ctl::VtdS1Data &data)
{
	kabi::iommu_hwpt_vtd_s1 s1{};
	s1.flags = data.flags;
	s1.pgtbl_addr = data.pgtbl_addr;
	s1.addr_width = data.addr_width;
	kabi::iommu_hwpt_alloc a{};
	a.size = sizeof(a);
	a.dev_id = dev_id;
	a.pt_id = parent;
	a.data_type = kabi::IOMMU_HWPT_DATA_VTD_S1;
	a.data_len = sizeof(s1);
	a.data_uptr = reinterpret_cast<uintptr_t>(&s1);
	if (int r = call(kabi::IOMMU_HWPT_ALLOC, &a); r != 0)
		return Status::error(r, "IOMMU_HWPT_ALLOC of a VTD_S1 nested HWPT (table at 0x{:x}"
				     ", {}-bit) on parent hwpt {}: {}", data.pgtbl_addr,
				     data.addr_width, parent, err_text(-r).c_str());
	return a.out_hwpt_id;
}

Probe probe(const Ioctl &call, uint32_t dev_id, uint32_t ioas_id)
{
	kabi::iommu_hw_info_vtd vtd{};
	kabi::iommu_hw_info info{};
	info.size = sizeof(info);
	info.dev_id = dev_id;
	info.data_len = sizeof(vtd);
	info.data_uptr = reinterpret_cast<uintptr_t>(&vtd);
	if (int r = call(kabi::IOMMU_GET_HW_INFO, &info); r != 0)
		return {false, "IOMMU_GET_HW_INFO: " + err_text(-r)};
	if (info.out_data_type != kabi::IOMMU_HW_INFO_TYPE_INTEL_VTD)
		return {false, "the device's IOMMU is not VT-d (IOMMU_GET_HW_INFO type " +
				       std::to_string(info.out_data_type) +
				       "); iodp nests VT-d first stages only"};
	if (!(vtd.ecap_reg & kabi::kVtdEcapNest))
		return {false, "the VT-d unit reports no nesting (ECAP.NEST clear)"};
	Result<uint32_t> parent = alloc_parent(call, dev_id, ioas_id);
	if (!parent)
		return {false, parent.status().message()};
	kabi::iommu_destroy d{sizeof(d), *parent};
	(void)call(kabi::IOMMU_DESTROY, &d);
	return {true, "IOMMU_GET_HW_INFO reports VT-d with ECAP.NEST and IOMMU_HWPT_ALLOC "
		      "with NEST_PARENT succeeds"};
}

Status forward(const Ioctl &call, uint32_t hwpt_id, uint32_t data_type, const void *entries,
	       uint32_t entry_len, uint32_t entry_num, uint32_t batch, uint32_t *handled,
	       ForwardStats *stats)
{
	ForwardStats local;
	ForwardStats &st = stats != nullptr ? *stats : local;
	*handled = 0;
	if (batch == 0)
		return Status::error(-EINVAL, "hwpt {}: invalidation batch size 0", hwpt_id);
	const auto *base = static_cast<const std::byte *>(entries);
	unsigned retries = 0;
	while (*handled < entry_num) {
		const uint32_t n = std::min(batch, entry_num - *handled);
		kabi::iommu_hwpt_invalidate inv{};
		inv.size = sizeof(inv);
		inv.hwpt_id = hwpt_id;
		inv.data_uptr = reinterpret_cast<uintptr_t>(base + size_t{*handled} * entry_len);
		inv.data_type = data_type;
		inv.entry_len = entry_len;
		inv.entry_num = n;
		st.calls++;
		const int r = call(kabi::IOMMU_HWPT_INVALIDATE, &inv);
		// The kernel says how many it handled, also on failure; never trust more than given.
		const uint32_t done = std::min(inv.entry_num, n);
		*handled += done;
		st.entries += done;
		if (r == 0) {
			if (done == 0)
				return Status::error(-EIO, "hwpt {}: IOMMU_HWPT_INVALIDATE handled none "
						     "of {} entries (entry {} of {}) and said success",
						     hwpt_id, n, *handled, entry_num);
			retries = 0;
			continue;
		}
		if ((r == -EINTR || r == -EAGAIN) && retries < 3) {
			retries++;
			st.retries++;
			continue;
		}
		return Status::error(r, "hwpt {}: IOMMU_HWPT_INVALIDATE failed at entry {} of {} "
				     "({} handled, the rest not): {}", hwpt_id, *handled, entry_num,
				     *handled, err_text(-r).c_str());
	}
	return {};
}

Status Forwarder::forward(uint32_t data_type, const void *entries, uint32_t entry_len,
			  uint32_t entry_num)
{
	if (entry_num == 0)
		return {};
	if (data_type != IODP_HWPT_INVALIDATE_DATA_VTD_S1)
		return Status::error(-EOPNOTSUPP, "{}: only VTD_S1 invalidations are forwarded "
				     "(SMMUv3 nesting is 6.13+ uAPI)", name_);
	uint32_t handled = 0;
	Status s = nesting::forward(call_, hwpt_, kabi::IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, entries,
				    entry_len, entry_num, batch_, &handled, &stats_);
	calls_.store(stats_.calls, std::memory_order_relaxed);
	entries_.store(stats_.entries, std::memory_order_relaxed);
	if (!s)
		return Status::error(s.code(), "{}: {}", name_, s.message());
	return {};
}

} // namespace iodp::vfio::nesting
