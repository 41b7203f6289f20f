/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Hardware nesting through iommufd: whether the kernel nests for a device, the nested HWPT
 * it is given (the guest's VT-d first stage over a NEST_PARENT HWPT), and guest
 * invalidations forwarded to it in batches. Every kernel call goes through an Ioctl, so the
 * encodings are tested against the uAPI layouts without a kernel that nests (QEMU 7.2's
 * intel-iommu does not: HWPT_ALLOC with NEST_PARENT gives EOPNOTSUPP).
 */

#include "kabi.h"

#include <iodp/ctl.h>
#include <iodp/status.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

namespace iodp::vfio::nesting {

/** One ioctl on the iommufd: 0, or -errno. */
using Ioctl = std::function<int(unsigned long request, void *arg)>;

struct Probe {
	bool nests = false;
	/** Why (or why not), for path_reason(): "IOMMU_HWPT_ALLOC with NEST_PARENT: ...". */
	std::string reason;
};

/**
 * Whether the kernel nests for iommufd device @p dev_id: IOMMU_GET_HW_INFO (the IOMMU type
 * and, for VT-d, ECAP.NEST), then an IOMMU_HWPT_ALLOC with NEST_PARENT on kernel IOAS
 * @p ioas_id, destroyed again. Only VT-d is tried (SMMUv3 nesting is 6.13+ uAPI).
 */
Probe probe(const Ioctl &call, uint32_t dev_id, uint32_t ioas_id);

/** IOMMU_HWPT_ALLOC with NEST_PARENT on kernel IOAS @p ioas_id. */
Result<uint32_t> alloc_parent(const Ioctl &call, uint32_t dev_id, uint32_t ioas_id);

/** IOMMU_HWPT_ALLOC of the guest's VT-d first stage (IOMMU_HWPT_DATA_VTD_S1) on @p parent. */
Result<uint32_t> alloc_nested_vtd(const Ioctl &call, uint32_t dev_id, uint32_t parent,
				  const ctl::VtdS1Data &data);

struct ForwardStats {
	uint64_t calls = 0;   ///< IOMMU_HWPT_INVALIDATE calls made
	uint64_t entries = 0; ///< entries the kernel handled
	uint64_t retries = 0; ///< calls repeated after EINTR / EAGAIN
};

/**
 * Give @p entry_num entries of @p entry_len bytes to kernel HWPT @p hwpt_id with
 * IOMMU_HWPT_INVALIDATE, at most @p batch per call. The kernel's entry_num (how many it
 * handled) is honoured: the next call starts after them. A call that fails with EINTR or
 * EAGAIN is repeated from the first unhandled entry (up to 3 times); any other failure stops:
 * the error names the failed entry, how many of the array were handled and the errno.
 * *handled is the number handled, also on failure.
 */
Status forward(const Ioctl &call, uint32_t hwpt_id, uint32_t data_type, const void *entries,
	       uint32_t entry_len, uint32_t entry_num, uint32_t batch, uint32_t *handled,
	       ForwardStats *stats = nullptr);

/**
 * The observer of a nested HWPT that the kernel nests in hardware: the kernel walks the
 * guest's table itself, so only invalidations go to it (forward(), in batches); stage-2
 * changes reach it through the IOAS mirror of its NEST_PARENT HWPT.
 */
class Forwarder final : public ctl::NestedObserver {
public:
	Forwarder(std::string name, Ioctl call, uint32_t kernel_hwpt, uint32_t batch = 128)
		: name_(std::move(name)), call_(std::move(call)), hwpt_(kernel_hwpt), batch_(batch)
	{
	}
	std::string name() const override { return name_; }
	Status changed(const pgtable::Translation *, std::span<const ctl::IovaRange>) override
	{
		return {};
	}
	Status host_gone(const pgtable::Translation *, uint64_t, uint64_t) override { return {}; }
	Status forward(uint32_t data_type, const void *entries, uint32_t entry_len,
		       uint32_t entry_num) override;
	/** Under the iodp context's lock only. */
	const ForwardStats &stats() const { return stats_; }
	/** Readable from any thread. */
	uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }
	uint64_t entries() const { return entries_.load(std::memory_order_relaxed); }
	uint32_t kernel_hwpt() const { return hwpt_; }

private:
	std::string name_;
	Ioctl call_;
	uint32_t hwpt_;
	uint32_t batch_;
	ForwardStats stats_;
	std::atomic<uint64_t> calls_{0}, entries_{0};
};

} // namespace iodp::vfio::nesting
