/* SPDX-License-Identifier: BSD-3-Clause */
/* The C context's extensions (ext.h) and the kernel's fault-file read/write. */
#include "ext.h"
#include "model.h"

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
	r.nested_types = 1u << model_ops(info.model).nested_data_type;
	r.model = info.model == IommuModel::vtd ? IODP_IOMMU_VTD : IODP_IOMMU_SMMUV3;
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
	const ModelOps &ops = model_ops(info.model);
	const uint32_t own = ops.hw_info_type;
	if (in_type == IODP_HW_INFO_TYPE_NONE)
		in_type = own;
	if (in_type == IODP_HW_INFO_TYPE_IODP)
		return record_of(IODP_HW_INFO_TYPE_IODP, iodp_record(info));
	if (in_type != own)
		return Status::error(-EOPNOTSUPP, "in_data_type {}: a {} device reports type {} "
				     "(or {}, iodp's own record)", in_type, ops.name,
				     own, IODP_HW_INFO_TYPE_IODP);
	HwInfoRecord out;
	out.type = own;
	out.len = ops.hw_info_record(info, out.bytes, sizeof(out.bytes));
	return out;
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
