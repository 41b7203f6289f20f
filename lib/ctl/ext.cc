/* SPDX-License-Identifier: BSD-3-Clause */
/* The C context's extensions (ext.h) and the kernel's fault-file read/write. */
#include "ext.h"

#include <cerrno>
#include <cstring>
#include <vector>

namespace iodp::ctl {

Extensions::Extensions(Ctx &ctx) : ctx_(ctx), vfio_(make_vfio_compat(ctx)) {}
Extensions::~Extensions() = default;

Result<int> Extensions::ioctl(unsigned long cmd, void *arg)
{
	constexpr unsigned long kTestCmd = IODP_CMD(0x80 + 32); // iommufd_test.h
	if (cmd == kTestCmd) {
		if (!test_)
			return Status::error(-ENOTTY, "IOMMU_TEST_CMD: the kernel's test commands "
					     "are off (iodp_ctx_test_commands, IODP_IOMMUFD_TEST=1)");
		if (Status s = test_command(*test_, arg); !s)
			return s;
		return 0;
	}
	return vfio_command(*vfio_, cmd, arg);
}

std::optional<Result<int>> Extensions::before(unsigned long cmd, void *arg)
{
	if (!test_)
		return std::nullopt;
	return test_intercept(*test_, cmd, arg);
}

Status hwpt_alloc_kernel_order(const Ctx &ctx, const struct iodp_hwpt_alloc &k)
{
	/*
	 * iommufd_hwpt_alloc(): the data type against its length, then the device (ENOENT),
	 * then pt_id (any object; none is EINVAL), then the flags the kind of HWPT takes.
	 */
	if (k.data_type == IODP_HWPT_DATA_NONE && k.data_len != 0)
		return Status::error(-EINVAL, "data_type NONE takes no data (data_len {})",
				     k.data_len);
	if (k.data_type != IODP_HWPT_DATA_NONE && k.data_len == 0)
		return Status::error(-EINVAL, "data_type {} takes data (data_len is 0)",
				     k.data_type);
	Result<ObjectInfo> dev = ctx.object_info(k.dev_id);
	if (!dev || dev->type != ObjType::device)
		return Status::error(-ENOENT, "no device {}", k.dev_id);
	Result<ObjectInfo> pt = ctx.object_info(k.pt_id);
	if (!pt)
		return Status::error(-EINVAL, "pt_id {} names no object", k.pt_id);
	if (pt->type == ObjType::ioas && (k.flags & IODP_HWPT_FAULT_ID_VALID) &&
	    (k.flags & IODP_HWPT_ALLOC_NEST_PARENT))
		return Status::error(-EOPNOTSUPP, "a NEST_PARENT HWPT takes no fault queue "
				     "(FAULT_ID_VALID)");
	return {};
}

namespace {

constexpr uint64_t bits(uint64_t value, unsigned shift)
{
	return value << shift;
}

/*
 * VT-d CAP_REG and ECAP_REG (Intel VT-d specification, 11.4.2 and 11.4.3) for what iodp's
 * VT-d model does: 4-level (48-bit) second stage with 2 MiB and 1 GiB leaves, first stage
 * with 1 GiB pages and 5 levels, nesting, scalable mode with PASIDs, queued and
 * page-selective invalidation, device-TLB invalidation, page requests (fault queues),
 * second-stage accessed/dirty (dirty tracking), coherent walks. No MMIO registers, no
 * interrupt remapping, no pass-through.
 */
iodp_hw_info_vtd vtd_record(const HwInfo &info)
{
	iodp_hw_info_vtd r{};
	r.cap_reg = bits(6, 0) |           // ND: 16-bit domain ids
		    bits(1u << 2, 8) |     // SAGAW: 4-level (48-bit) second stage
		    bits(47, 16) |         // MGAW: 48 bits
		    bits(3, 34) |          // SLLPS: 2 MiB and 1 GiB second-stage leaves
		    bits(1, 39) |          // PSI: page-selective invalidation
		    bits(18, 48) |         // MAMV: masks up to 2^18 pages (1 GiB)
		    bits(1, 56) |          // FL1GP: first-stage 1 GiB pages
		    bits(1, 60);           // FL5LP: 5-level first stage
	r.ecap_reg = bits(1, 0) |          // C: walks are coherent (CPU reads)
		     bits(1, 1) |          // QI: queued invalidation
		     bits(1, 2) |          // DT: device-TLB invalidation
		     bits(1, 7) |          // SC: snoop control
		     bits(1, 26) |         // NEST: nested translation
		     bits(1, 29) |         // PRS: page requests (fault queues)
		     bits(info.pasid_bits != 0 ? info.pasid_bits - 1u : 0, 35) | // PSS
		     bits(info.pasid_bits != 0, 40) | // PASID
		     bits(1, 43) |         // SMTS: scalable mode
		     bits(info.dirty_tracking, 45) | // SLADS
		     bits(1, 46) |         // SLTS: second-stage translation
		     bits(1, 47) |         // FLTS: first-stage translation
		     bits(1, 48);          // SMPWCS: coherent scalable-mode walks
	return r;
}

/*
 * SMMUv3 ID registers (Arm IHI 0070, 6.3) for iodp's SMMUv3 model: stage 1 and stage 2,
 * AArch64 tables, coherent, 16-bit ASIDs and VMIDs, ATS, little-endian tables, no stall,
 * SubstreamID bits = the device's PASID bits, 48-bit output, 4/16/64 KiB granules. No
 * queues or MSIs (iommufd carries commands and events), no hardware dirty tracking.
 */
iodp_hw_info_arm_smmuv3 smmu_record(const HwInfo &info)
{
	iodp_hw_info_arm_smmuv3 r{};
	r.idr[0] = static_cast<uint32_t>(bits(1, 0) |  // S2P
					 bits(1, 1) |  // S1P
					 bits(2, 2) |  // TTF: AArch64
					 bits(1, 4) |  // COHACC
					 bits(1, 10) | // ATS
					 bits(1, 12) | // ASID16
					 bits(1, 18) | // VMID16
					 bits(2, 21) | // TTENDIAN: little-endian
					 bits(1, 24)); // STALL_MODEL: no stall
	r.idr[1] = static_cast<uint32_t>(bits(16, 0) |              // SIDSIZE
					 bits(info.pasid_bits, 6)); // SSIDSIZE
	r.idr[5] = static_cast<uint32_t>(bits(5, 0) |  // OAS: 48 bits
					 bits(1, 4) |  // GRAN4K
					 bits(1, 5) |  // GRAN16K
					 bits(1, 6));  // GRAN64K
	return r;
}

template <class T> HwInfoRecord record_of(uint32_t type, const T &r)
{
	static_assert(sizeof(T) <= sizeof(HwInfoRecord::bytes));
	HwInfoRecord out;
	out.type = type;
	out.len = sizeof(T);
	std::memcpy(out.bytes, &r, sizeof(T));
	return out;
}

/* iodp's own record: what its model of the device's IOMMU offers. */
iodp_hw_info_iodp iodp_record(const HwInfo &info)
{
	iodp_hw_info_iodp r{};
	for (pgtable::Format f : pgtable::kAllFormats)
		r.formats |= 1u << static_cast<unsigned>(f); // enum iodp_format's order
	r.paging_format = static_cast<uint32_t>(info.paging_format);
	r.page_sizes = info.page_sizes;
	r.granules = info.granules;
	const bool vtd = info.model == IommuModel::vtd;
	r.nested_types = 1u << (vtd ? IODP_HWPT_DATA_VTD_S1 : IODP_HWPT_DATA_ARM_SMMUV3);
	r.model = vtd ? IODP_IOMMU_VTD : IODP_IOMMU_SMMUV3;
	r.pasid_bits = info.pasid_bits;
	r.paging_ias = info.paging_ias;
	return r;
}

} // namespace

uint64_t hw_capabilities(const HwInfo &info)
{
	return IODP_HW_CAP_PCI_PASID_EXEC | IODP_HW_CAP_PCI_PASID_PRIV |
	       (info.dirty_tracking ? IODP_HW_CAP_DIRTY_TRACKING : 0);
}

Result<HwInfoRecord> hw_info_record(const HwInfo &info, uint32_t in_type)
{
	const bool vtd = info.model == IommuModel::vtd;
	const uint32_t own = vtd ? IODP_HW_INFO_TYPE_INTEL_VTD : IODP_HW_INFO_TYPE_ARM_SMMUV3;
	if (in_type == IODP_HW_INFO_TYPE_NONE)
		in_type = own;
	if (in_type == IODP_HW_INFO_TYPE_IODP)
		return record_of(IODP_HW_INFO_TYPE_IODP, iodp_record(info));
	if (in_type != own)
		return Status::error(-EOPNOTSUPP, "in_data_type {}: a {} device reports type {} "
				     "(or {}, iodp's own record)", in_type, vtd ? "VT-d" : "SMMUv3",
				     own, IODP_HW_INFO_TYPE_IODP);
	if (vtd)
		return record_of(own, vtd_record(info));
	return record_of(own, smmu_record(info));
}

Status Extensions::enable_test_commands(bool on)
{
#ifdef IODP_IOMMUFD_TEST
	if (on && !test_)
		test_ = make_test_commands(ctx_);
	else if (!on)
		test_.reset();
	return {};
#else
	(void)on;
	return Status::error(-EOPNOTSUPP, "iodp was built without the test commands "
			     "(meson -Diommufd_test=true)");
#endif
}

Status Extensions::release_access(int fd)
{
	if (!test_)
		return Status::error(-ENOENT, "access {}: the test commands are off", fd);
	return test_access_release(*test_, fd);
}

} // namespace iodp::ctl

extern "C" {

int iodp_ctx_test_commands(struct iodp_ctx *c, int enable)
{
	if (c == nullptr)
		return -EINVAL;
	iodp::Status s = iodp::ctl::ext_of(c).enable_test_commands(enable != 0);
	return s ? 0 : iodp::ctl::c_api_fail(c, s);
}

int iodp_test_access_release(struct iodp_ctx *c, int access_fd)
{
	if (c == nullptr)
		return -EINVAL;
	iodp::Status s = iodp::ctl::ext_of(c).release_access(access_fd);
	return s ? 0 : iodp::ctl::c_api_fail(c, s);
}

long iodp_fault_fd_read(struct iodp_ctx *c, uint32_t fault_id, void *buf, size_t count)
{
	constexpr size_t kRecord = sizeof(iodp_hwpt_pgfault);
	if (c == nullptr)
		return -EINVAL;
	if (count % kRecord != 0)
		return -ESPIPE;
	iodp::ctl::Ctx &ctx = iodp::ctl::ctx_of(c);
	if (count == 0) {
		/* The kernel's "read count doesn't fit the first fault group". */
		iodp::Result<size_t> n = ctx.fault_pending(fault_id);
		if (!n)
			return n.status().code();
		return *n != 0 ? -EINVAL : 0;
	}
	if (buf == nullptr)
		return -EFAULT;
	iodp::Result<std::vector<iodp::ctl::PageFault>> r =
		ctx.fault_read(fault_id, count / kRecord);
	if (!r)
		return r.status().code();
	auto *out = static_cast<unsigned char *>(buf);
	for (const iodp::ctl::PageFault &f : *r) {
		const iodp_hwpt_pgfault rec = iodp::ctl::pgfault_record(f);
		std::memcpy(out, &rec, kRecord);
		out += kRecord;
	}
	return static_cast<long>(r->size() * kRecord);
}

long iodp_fault_fd_write(struct iodp_ctx *c, uint32_t fault_id, const void *buf, size_t count)
{
	constexpr size_t kRecord = sizeof(iodp_hwpt_page_response);
	if (c == nullptr)
		return -EINVAL;
	if (count % kRecord != 0)
		return -ESPIPE;
	if (count != 0 && buf == nullptr)
		return -EFAULT;
	iodp::ctl::Ctx &ctx = iodp::ctl::ctx_of(c);
	size_t done = 0;
	int rc = 0;
	while (done < count) {
		iodp_hwpt_page_response r;
		std::memcpy(&r, static_cast<const char *>(buf) + done, kRecord);
		if (iodp::Status s = ctx.fault_respond(fault_id, r.cookie, r.code); !s) {
			rc = s.code();
			break;
		}
		done += kRecord;
	}
	return done == 0 ? rc : static_cast<long>(done);
}

} // extern "C"
