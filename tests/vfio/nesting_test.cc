/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Hardware nesting through iommufd, without a kernel that nests: every call nesting.cc makes
 * goes to a stand-in that checks its encoding against the uAPI (include/uapi/linux/iommufd.h
 * of Linux 6.12: request numbers, struct sizes, field offsets) and answers as a kernel would.
 */
#include "../../drivers/vfio/nesting.h"
#include <iodp/iodp.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <vector>

namespace iodp::vfio::nesting {
namespace {

/** A field of @p T at byte @p off of the struct behind @p arg. */
template <class T> T field(const void *arg, size_t off)
{
	T v;
	std::memcpy(&v, static_cast<const std::byte *>(arg) + off, sizeof(v));
	return v;
}

TEST(NestingAbi, RequestNumbersAndLayoutsAreTheKernels)
{
	// _IO(';', nr): type 0x3b in bits 15:8, no size or direction bits.
	EXPECT_EQ(kabi::IOMMU_HWPT_ALLOC, 0x3b89u);
	EXPECT_EQ(kabi::IOMMU_GET_HW_INFO, 0x3b8au);
	EXPECT_EQ(kabi::IOMMU_HWPT_INVALIDATE, 0x3b8du);
	EXPECT_EQ(kabi::IOMMU_DESTROY, 0x3b80u);
	EXPECT_EQ(sizeof(kabi::iommu_hwpt_alloc), 48u);
	EXPECT_EQ(offsetof(kabi::iommu_hwpt_alloc, out_hwpt_id), 16u);
	EXPECT_EQ(offsetof(kabi::iommu_hwpt_alloc, data_type), 24u);
	EXPECT_EQ(offsetof(kabi::iommu_hwpt_alloc, data_len), 28u);
	EXPECT_EQ(offsetof(kabi::iommu_hwpt_alloc, data_uptr), 32u);
	EXPECT_EQ(sizeof(kabi::iommu_hwpt_vtd_s1), 24u);
	EXPECT_EQ(offsetof(kabi::iommu_hwpt_vtd_s1, addr_width), 16u);
	EXPECT_EQ(sizeof(kabi::iommu_hwpt_invalidate), 32u);
	EXPECT_EQ(offsetof(kabi::iommu_hwpt_invalidate, data_uptr), 8u);
	EXPECT_EQ(offsetof(kabi::iommu_hwpt_invalidate, data_type), 16u);
	EXPECT_EQ(offsetof(kabi::iommu_hwpt_invalidate, entry_len), 20u);
	EXPECT_EQ(offsetof(kabi::iommu_hwpt_invalidate, entry_num), 24u);
	EXPECT_EQ(sizeof(kabi::iommu_hwpt_vtd_s1_invalidate), 24u);
	EXPECT_EQ(sizeof(kabi::iommu_hw_info_vtd), 24u);
	EXPECT_EQ(offsetof(kabi::iommu_hw_info_vtd, ecap_reg), 16u);
	// iodp's own invalidation entry is the kernel's (Forwarder passes it as is).
	EXPECT_EQ(sizeof(iodp_hwpt_vtd_s1_invalidate), sizeof(kabi::iommu_hwpt_vtd_s1_invalidate));
	EXPECT_EQ(IODP_HWPT_INVALIDATE_DATA_VTD_S1, kabi::IOMMU_HWPT_INVALIDATE_DATA_VTD_S1);
	EXPECT_EQ(IODP_VTD_INV_FLAGS_LEAF, kabi::IOMMU_VTD_INV_FLAGS_LEAF);
}

TEST(Nesting, AllocationsEncodeParentAndVtdS1)
{
	std::vector<std::vector<uint8_t>> data;
	std::vector<kabi::iommu_hwpt_alloc> got;
	Ioctl call = [&](unsigned long req, void *arg) {
		EXPECT_EQ(req, kabi::IOMMU_HWPT_ALLOC);
		EXPECT_EQ(field<uint32_t>(arg, 0), 48u) << "size";
		auto *a = static_cast<kabi::iommu_hwpt_alloc *>(arg);
		got.push_back(*a);
		const auto *p = reinterpret_cast<const uint8_t *>(a->data_uptr);
		data.emplace_back(p, p + a->data_len);
		a->out_hwpt_id = 40 + static_cast<uint32_t>(got.size());
		return 0;
	};
	EXPECT_EQ(*alloc_parent(call, 7, 3), 41u);
	EXPECT_EQ(got[0].flags, 1u) << "NEST_PARENT";
	EXPECT_EQ(got[0].dev_id, 7u);
	EXPECT_EQ(got[0].pt_id, 3u);
	EXPECT_EQ(got[0].data_type, 0u);
	EXPECT_EQ(got[0].data_len, 0u);
	EXPECT_EQ(*alloc_nested_vtd(call, 7, 41, ctl::VtdS1Data{1, 0x1234000, 57}), 42u);
	EXPECT_EQ(got[1].flags, 0u);
	EXPECT_EQ(got[1].pt_id, 41u);
	EXPECT_EQ(got[1].data_type, 1u) << "IOMMU_HWPT_DATA_VTD_S1";
	ASSERT_EQ(data[1].size(), 24u);
	EXPECT_EQ(field<uint64_t>(data[1].data(), 0), 1u) << "flags (SRE)";
	EXPECT_EQ(field<uint64_t>(data[1].data(), 8), 0x1234000u) << "pgtbl_addr";
	EXPECT_EQ(field<uint32_t>(data[1].data(), 16), 57u) << "addr_width";
	EXPECT_EQ(field<uint32_t>(data[1].data(), 20), 0u) << "__reserved";
	// A refusal names the call and the meaning.
	Ioctl refuse = [](unsigned long, void *) { return -EOPNOTSUPP; };
	Result<uint32_t> r = alloc_parent(refuse, 7, 3);
	ASSERT_FALSE(r.ok());
	EXPECT_EQ(r.status().code(), -EOPNOTSUPP);
	EXPECT_NE(r.status().message().find("NEST_PARENT"), std::string::npos);
	EXPECT_NE(r.status().message().find("no nesting"), std::string::npos);
}

/** The probe's kernel: GET_HW_INFO answers @p type / @p ecap; NEST_PARENT gives @p alloc. */
struct ProbeKernel {
	uint32_t type = kabi::IOMMU_HW_INFO_TYPE_INTEL_VTD;
	uint64_t ecap = kabi::kVtdEcapNest;
	int alloc = 0;
	std::vector<unsigned long> calls;
	uint32_t destroyed = 0;
	Ioctl fn()
	{
		return [this](unsigned long req, void *arg) {
			calls.push_back(req);
			if (req == kabi::IOMMU_GET_HW_INFO) {
				auto *i = static_cast<kabi::iommu_hw_info *>(arg);
				EXPECT_EQ(i->size, 40u);
				EXPECT_EQ(i->data_len, 24u);
				kabi::iommu_hw_info_vtd v{};
				v.ecap_reg = ecap;
				std::memcpy(reinterpret_cast<void *>(i->data_uptr), &v, sizeof(v));
				i->out_data_type = type;
				return 0;
			}
			if (req == kabi::IOMMU_HWPT_ALLOC) {
				static_cast<kabi::iommu_hwpt_alloc *>(arg)->out_hwpt_id = 9;
				return alloc;
			}
			if (req == kabi::IOMMU_DESTROY) {
				destroyed = static_cast<kabi::iommu_destroy *>(arg)->id;
				return 0;
			}
			return -ENOTTY;
		};
	}
};

TEST(Nesting, ProbeSaysWhyNot)
{
	ProbeKernel k;
	Probe p = probe(k.fn(), 1, 2);
	EXPECT_TRUE(p.nests) << p.reason;
	EXPECT_EQ(k.destroyed, 9u) << "the probe's parent is destroyed again";

	k = {};
	k.alloc = -EOPNOTSUPP; // QEMU 7.2's intel-iommu, measured
	p = probe(k.fn(), 1, 2);
	EXPECT_FALSE(p.nests);
	EXPECT_NE(p.reason.find("IOMMU_HWPT_ALLOC with NEST_PARENT"), std::string::npos) << p.reason;
	EXPECT_NE(p.reason.find(std::strerror(EOPNOTSUPP)), std::string::npos) << p.reason;
	EXPECT_EQ(k.destroyed, 0u);

	k = {};
	k.ecap = 0;
	p = probe(k.fn(), 1, 2);
	EXPECT_FALSE(p.nests);
	EXPECT_NE(p.reason.find("ECAP.NEST"), std::string::npos) << p.reason;
	EXPECT_EQ(k.calls.size(), 1u) << "no allocation tried";

	k = {};
	k.type = kabi::IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
	p = probe(k.fn(), 1, 2);
	EXPECT_FALSE(p.nests);
	EXPECT_NE(p.reason.find("not VT-d"), std::string::npos) << p.reason;

	Ioctl old = [](unsigned long, void *) { return -ENOTTY; };
	p = probe(old, 1, 2);
	EXPECT_FALSE(p.nests);
	EXPECT_NE(p.reason.find("IOMMU_GET_HW_INFO"), std::string::npos) << p.reason;
}

/** The forwarding kernel: records each call's entries; scripted answers per call. */
struct InvalKernel {
	struct Answer {
		int ret;
		uint32_t handled; ///< UINT32_MAX: all given
	};
	std::deque<Answer> script;
	std::vector<std::vector<uint64_t>> addrs; ///< per call, the entries' addr fields
	Ioctl fn()
	{
		return [this](unsigned long req, void *arg) {
			EXPECT_EQ(req, kabi::IOMMU_HWPT_INVALIDATE);
			auto *inv = static_cast<kabi::iommu_hwpt_invalidate *>(arg);
			EXPECT_EQ(inv->size, 32u);
			EXPECT_EQ(inv->hwpt_id, 77u);
			EXPECT_EQ(inv->data_type, 0u);
			EXPECT_EQ(inv->entry_len, 24u);
			std::vector<uint64_t> a;
			for (uint32_t i = 0; i < inv->entry_num; i++)
				a.push_back(reinterpret_cast<const kabi::iommu_hwpt_vtd_s1_invalidate *>(
						    inv->data_uptr)[i].addr);
			addrs.push_back(a);
			Answer ans{0, UINT32_MAX};
			if (!script.empty()) {
				ans = script.front();
				script.pop_front();
			}
			if (ans.handled != UINT32_MAX)
				inv->entry_num = std::min(ans.handled, inv->entry_num);
			return ans.ret;
		};
	}
};

std::vector<kabi::iommu_hwpt_vtd_s1_invalidate> entries(uint32_t n)
{
	std::vector<kabi::iommu_hwpt_vtd_s1_invalidate> e(n);
	for (uint32_t i = 0; i < n; i++)
		e[i] = {uint64_t{i} << 12, 1, 0, 0};
	return e;
}

TEST(Nesting, ForwardBatchesAndHonoursEntryNum)
{
	auto e = entries(300);
	InvalKernel k;
	uint32_t handled = 0;
	ForwardStats st;
	ASSERT_TRUE(forward(k.fn(), 77, 0, e.data(), 24, 300, 128, &handled, &st).ok());
	EXPECT_EQ(handled, 300u);
	ASSERT_EQ(k.addrs.size(), 3u);
	EXPECT_EQ(k.addrs[0].size(), 128u);
	EXPECT_EQ(k.addrs[1].front(), 128u << 12);
	EXPECT_EQ(k.addrs[2].size(), 44u);
	EXPECT_EQ(st.calls, 3u);
	EXPECT_EQ(st.entries, 300u);

	// The kernel handles fewer than given and says so: the next call starts after them.
	k = {};
	k.script = {{0, 100}};
	ASSERT_TRUE(forward(k.fn(), 77, 0, e.data(), 24, 300, 128, &handled).ok());
	EXPECT_EQ(handled, 300u);
	ASSERT_GE(k.addrs.size(), 2u);
	EXPECT_EQ(k.addrs[1].front(), 100u << 12);
}

TEST(Nesting, PartialFailureIsReportedAndTransientOnesRetried)
{
	auto e = entries(300);
	InvalKernel k;
	uint32_t handled = 0;
	// Call 2 fails at its 22nd entry: 128 + 22 handled, the rest not.
	k.script = {{0, UINT32_MAX}, {-EINVAL, 22}};
	Status s = forward(k.fn(), 77, 0, e.data(), 24, 300, 128, &handled);
	EXPECT_EQ(s.code(), -EINVAL);
	EXPECT_EQ(handled, 150u);
	EXPECT_NE(s.message().find("failed at entry 150 of 300 (150 handled, the rest not)"),
		  std::string::npos) << s.message();
	EXPECT_EQ(k.addrs.size(), 2u) << "nothing more after a hard failure";

	// EAGAIN: repeated from the first unhandled entry.
	k = {};
	k.script = {{-EAGAIN, 5}, {0, UINT32_MAX}};
	ForwardStats st;
	ASSERT_TRUE(forward(k.fn(), 77, 0, e.data(), 24, 10, 128, &handled, &st).ok());
	EXPECT_EQ(handled, 10u);
	EXPECT_EQ(st.retries, 1u);
	EXPECT_EQ(k.addrs[1].front(), 5u << 12);

	// Three retries, then the failure.
	k = {};
	k.script = {{-EAGAIN, 0}, {-EAGAIN, 0}, {-EAGAIN, 0}, {-EAGAIN, 0}};
	s = forward(k.fn(), 77, 0, e.data(), 24, 10, 128, &handled);
	EXPECT_EQ(s.code(), -EAGAIN);
	EXPECT_EQ(k.addrs.size(), 4u);

	// Success that handled nothing would loop forever: an error instead.
	k = {};
	k.script = {{0, 0}};
	EXPECT_EQ(forward(k.fn(), 77, 0, e.data(), 24, 10, 128, &handled).code(), -EIO);
}

TEST(Nesting, ForwarderGetsEachInvalidateCallThroughTheContext)
{
	ctl::Ctx ctx;
	const uint32_t ioas = *ctx.ioas_alloc();
	ctl::DeviceSpec spec;
	spec.name = "vfio0";
	const uint32_t dev = *ctx.device_create(spec);
	const uint32_t parent = *ctx.hwpt_alloc_paging(dev, ioas, IODP_HWPT_ALLOC_NEST_PARENT, 0);
	const uint32_t nested = *ctx.hwpt_alloc_nested(dev, parent, 0, 0, ctl::VtdS1Data{0, 0, 48});
	InvalKernel k;
	Forwarder fw("vfio0 (kernel-nested)", k.fn(), 77, 2);
	ASSERT_TRUE(ctx.hwpt_attach_observer(nested, &fw).ok());
	iodp_hwpt_vtd_s1_invalidate e[3] = {{0x1000, 1, 0, 0}, {0x5000, 2, 0, 0}, {0x9000, 1, 0, 0}};
	uint32_t handled = 0;
	ASSERT_TRUE(ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_S1, e, sizeof(e[0]),
					3, &handled).ok());
	ASSERT_EQ(k.addrs.size(), 2u) << "3 entries in batches of 2";
	EXPECT_EQ(k.addrs[1].front(), 0x9000u);
	EXPECT_EQ(fw.stats().entries, 3u);
	// A kernel refusal fails the guest's invalidation with the entry named.
	k.script = {{-EINVAL, 0}};
	Status s = ctx.hwpt_invalidate(nested, IODP_HWPT_INVALIDATE_DATA_VTD_S1, e, sizeof(e[0]), 1,
				       &handled);
	EXPECT_EQ(s.code(), -EINVAL);
	EXPECT_NE(s.message().find("kernel-nested"), std::string::npos) << s.message();
	ASSERT_TRUE(ctx.hwpt_detach_observer(nested, &fw).ok());
}

} // namespace
} // namespace iodp::vfio::nesting
