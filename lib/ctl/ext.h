/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * What a C context (struct iodp_ctx) has beyond the Ctx: the commands iodp_ioctl's table
 * does not list — the kernel's test-only IOMMU_TEST_CMD (test_cmd.cc) and the VFIO type1
 * container ioctls iommufd accepts on /dev/iommu (vfio_compat.cc) — and the kernel's
 * fault-file read/write. Private to lib/ctl.
 */

#include <iodp/ctl.h>
#include <iodp/iodp.h>

#include <memory>
#include <optional>

namespace iodp::ctl {

class TestCommands;
class VfioCompat;
/* Each defined in its own file; the deleters are too. */
struct TestCommandsDelete {
	void operator()(TestCommands *t) const;
};
struct VfioCompatDelete {
	void operator()(VfioCompat *v) const;
};
using TestCommandsPtr = std::unique_ptr<TestCommands, TestCommandsDelete>;
using VfioCompatPtr = std::unique_ptr<VfioCompat, VfioCompatDelete>;

// Not hidden like Ctx::Impl: struct iodp_ctx (whose functions are exported) holds one.
class Extensions {
public:
	explicit Extensions(Ctx &ctx);
	~Extensions();
	Extensions(const Extensions &) = delete;
	Extensions &operator=(const Extensions &) = delete;

	/**
	 * A command iodp_ioctl's table does not know: its ioctl(2) value (VFIO_CHECK_EXTENSION
	 * answers 1), or ENOTTY when no extension takes it.
	 */
	Result<int> ioctl(unsigned long cmd, void *arg);
	/**
	 * Before iodp_ioctl's table: what the test commands answer differently for their own
	 * objects (IOMMU_DESTROY of a mock device unplugs it; GET_HW_INFO of one answers
	 * the selftest record). nullopt: the table answers.
	 */
	std::optional<Result<int>> before(unsigned long cmd, void *arg);
	Status enable_test_commands(bool on);
	Status release_access(int fd);

private:
	Ctx &ctx_;
	TestCommandsPtr test_; ///< non-null: test commands on
	VfioCompatPtr vfio_;
};

/* c_api.cc */
Extensions &ext_of(struct iodp_ctx *c);
/** The caller's memory, as the kernel's copy_from_user: EFAULT naming @p what, no crash. */
Status copy_from_user(void *dst, const void *src, size_t n, const char *what);
/** Record @p s as the context's last error (iodp_last_error); returns its code. */
int c_api_fail(struct iodp_ctx *ctx, const Status &s);
/** The kernel's record of a queued fault (FAULT_READ, and read() on a fault fd). */
iodp_hwpt_pgfault pgfault_record(const PageFault &f);

/* hwpt.cc */
/** The kernel core's bounds on one HWPT_INVALIDATE array (hw_pagetable.c). */
constexpr uint32_t kInvalidateEntryLenMax = 4096, kInvalidateEntryNumMax = 1u << 19;
/**
 * Whether an invalidation array of @p entry_num entries of @p entry_len bytes, at a
 * non-NULL address when @p has_data, is within those bounds: EINVAL naming the bound when
 * not. The kernel checks this before it looks the HWPT up; an empty array always passes.
 */
Status invalidate_array_bounds(uint32_t hwpt_id, bool has_data, uint32_t entry_len,
			       uint32_t entry_num);

/* test_cmd.cc */
TestCommandsPtr make_test_commands(Ctx &ctx);
Status test_command(TestCommands &t, void *arg);
Status test_access_release(TestCommands &t, int fd);
std::optional<Result<int>> test_intercept(TestCommands &t, unsigned long cmd, void *arg);

/* ext.cc: GET_HW_INFO's record of the type asked (0: the model's own, the kernel's). */
struct HwInfoRecord {
	uint32_t type = 0;
	size_t len = 0;
	unsigned char bytes[64] = {};
};
Result<HwInfoRecord> hw_info_record(const HwInfo &info, uint32_t in_type);
/** GET_HW_INFO's out_capabilities (IODP_HW_CAP_*) for @p info. */
uint64_t hw_capabilities(const HwInfo &info);

/* ext.cc: the kernel's order of checks for IOMMU_HWPT_ALLOC (c_api.cc runs it first). */
Status hwpt_alloc_kernel_order(const Ctx &ctx, const struct iodp_hwpt_alloc &k);

/* vfio_compat.cc */
VfioCompatPtr make_vfio_compat(Ctx &ctx);
/** ENOTTY when @p cmd is not a VFIO container ioctl. */
Result<int> vfio_command(VfioCompat &v, unsigned long cmd, void *arg);

} // namespace iodp::ctl
