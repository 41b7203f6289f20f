/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The kernel's test-only IOMMU_TEST_CMD (drivers/iommu/iommufd/iommufd_test.h, what a
 * CONFIG_IOMMUFD_TEST kernel answers), on iodp's own device model, so that the kernel's
 * selftest (tools/testing/selftests/iommu/iommufd.c) runs against iodp unmodified:
 *
 *  - a mock device is an iodp device (VT-d model) attached to the IOAS or HWPT given;
 *    its selftest object id and its device id are the same iodp id; its paging HWPTs are
 *    the mock domain's page table (pgtable::Format::mock: 2 KiB pages, 1 MiB only on a
 *    HUGE_IOVA device), so IOVA alignment and dirty granularity are the mock's;
 *  - DIRTY sets the dirty bit of the mock domain's leaves as a device write would;
 *  - a nested HWPT of the mock's IOMMU_HWPT_DATA_SELFTEST type is an iodp nested HWPT with
 *    an opaque stage 1 (not walked: DMA through it faults); its IOTLB array lives here,
 *    cleared by SELFTEST invalidations and read by MD_CHECK_IOTLB;
 *  - MD_CHECK_MAP translates each address through iodp (Ctx::translate, the walk a worker
 *    does) and compares with the user address;
 *  - an "access" is an in-process user of an IOAS: it reads and writes through the IOAS's
 *    mappings and records the ranges it pinned; its id is the descriptor it was handed
 *    (as in the kernel), closed with iodp_test_access_release();
 *  - MD_CHECK_REFS counts the pins the kernel would hold: one per IOAS that has a HWPT and
 *    maps the page (the kernel pins at map time), one per access pin of a page no domain
 *    pinned.
 *
 * Off unless iodp_ctx_test_commands() turned it on (ENOTTY otherwise, as on a kernel
 * without the option). Ops iodp does not model are EOPNOTSUPP with a message saying so.
 */
#include "ext.h"
#include "inspect.h"

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <map>
#include <optional>
#include <sys/eventfd.h>
#include <unistd.h>
#include <vector>

namespace iodp::ctl {
namespace {

enum : uint32_t {
	kOpAddReserved = 1,
	kOpMockDomain,
	kOpMdCheckMap,
	kOpMdCheckRefs,
	kOpCreateAccess,
	kOpDestroyAccessPages,
	kOpAccessPages,
	kOpAccessRw,
	kOpSetTempMemoryLimit,
	kOpMockDomainReplace,
	kOpAccessReplaceIoas,
	kOpMockDomainFlags,
	kOpDirty,
	kOpMdCheckIotlb,
	kOpTriggerIopf,
};

constexpr uint32_t kDevNoDirty = 1u << 0, kDevHugeIova = 1u << 1, kDevPasid = 1u << 2;
constexpr uint32_t kAccessNeedsPin = 1u << 0;
constexpr uint32_t kAccessPagesWrite = 1u << 0, kAccessSyz = 1u << 16;
constexpr uint32_t kRwWrite = 1u << 0, kRwSlowPath = 1u << 2;
constexpr uint64_t kPage = 4096;
constexpr unsigned kMockPageShift = 11;
constexpr uint64_t kMockPage = 1ull << kMockPageShift; ///< MOCK_IO_PAGE_SIZE
constexpr uint64_t kMockApertureStart = 1ull << 24, kMockApertureLast = (1ull << 31) - 1;
/* The mock nested domain (iommufd_test.h): its data, invalidations and IOTLB array. */
constexpr uint32_t kHwptDataSelftest = 0xdead;
constexpr uint32_t kInvalidateDataSelftest = 0xdeadbeef;
constexpr uint32_t kInvalidateFlagAll = 1u << 0;
constexpr uint32_t kIotlbNum = 4; ///< MOCK_NESTED_DOMAIN_IOTLB_NUM

/* struct iommu_hwpt_invalidate_selftest. */
struct InvalidateSelftest {
	uint32_t flags;
	uint32_t iotlb_id;
};

/* struct iommu_test_cmd (iommufd_test.h). */
struct TestCmd {
	uint32_t size;
	uint32_t op;
	uint32_t id;
	uint32_t __reserved;
	union {
		struct {
			uint64_t start, length;
		} add_reserved;
		struct {
			uint32_t out_stdev_id, out_hwpt_id, out_idev_id, dev_flags;
		} mock_domain; // also mock_domain_flags
		struct {
			uint32_t pt_id;
		} mock_domain_replace;
		struct {
			uint64_t iova, length, uptr;
		} check_map;
		struct {
			uint64_t length, uptr;
			uint32_t refs;
		} check_refs;
		struct {
			uint32_t out_access_fd, flags;
		} create_access;
		struct {
			uint32_t access_pages_id;
		} destroy_access_pages;
		struct {
			uint32_t flags, out_access_pages_id;
			uint64_t iova, length, uptr;
		} access_pages;
		struct {
			uint64_t iova, length, uptr;
			uint32_t flags;
		} access_rw;
		struct {
			uint32_t limit;
		} memory_limit;
		struct {
			uint32_t ioas_id;
		} access_replace_ioas;
		struct {
			uint32_t flags;
			uint64_t iova, length, page_size, uptr, out_nr_dirty;
		} dirty;
		struct {
			uint32_t id, iotlb;
		} check_iotlb;
		struct {
			uint32_t dev_id, pasid, grpid, perm;
			uint64_t addr;
		} trigger_iopf;
	};
	uint32_t last;
};
static_assert(offsetof(TestCmd, last) == 64 && sizeof(TestCmd) == 72);
constexpr size_t kMinSize = offsetof(TestCmd, last) + sizeof(uint32_t);

struct Pin {
	uint64_t iova = 0;
	uint64_t length = 0;
	uintptr_t host = 0;   ///< where the IOAS mapped iova when it was pinned
	uint32_t ioas_id = 0; ///< the IOAS it was pinned through
};

struct Access {
	uint32_t ioas_id = 0;
	bool needs_pin = false;
	uint32_t next_item = 1;
	std::map<uint32_t, Pin> pins;
};

} // namespace

class TestCommands {
public:
	explicit TestCommands(Ctx &ctx) : ctx_(ctx) {}
	~TestCommands()
	{
		for (const auto &[fd, a] : accesses_)
			close(fd);
	}
	TestCommands(const TestCommands &) = delete;
	TestCommands &operator=(const TestCommands &) = delete;

	Status run(TestCmd &k);
	Status release(int fd);
	std::optional<Result<int>> intercept(unsigned long cmd, void *arg);

private:
	Status mock_domain(TestCmd &k);
	Status mock_domain_replace(TestCmd &k);
	Status check_map(const TestCmd &k);
	Status check_refs(const TestCmd &k);
	Status create_access(TestCmd &k);
	Status access_pages(TestCmd &k);
	Status access_rw(const TestCmd &k);
	Status trigger_iopf(const TestCmd &k);
	Status dirty(TestCmd &k);
	Result<Access *> access(uint32_t fd);
	/** The host address @p ioas_id maps @p iova to, with the bytes left in that mapping. */
	Result<std::pair<uintptr_t, uint64_t>> host_of(uint32_t ioas_id, uint64_t iova) const;
	uint32_t pins_of(uintptr_t page) const;

	Status destroy_mock(uint32_t dev_id);
	void unmap_pins(const void *arg);
	Status mock_hw_info(iodp_hw_info &k, uint32_t flags);
	Status mock_hwpt_alloc(const struct iodp_hwpt_alloc &k, uint32_t flags);
	Status mock_nested_alloc(struct iodp_hwpt_alloc &k);
	Status mock_nested_invalidate(struct iodp_hwpt_invalidate &k);
	Status check_iotlb(const TestCmd &k) const;

	Ctx &ctx_;
	std::map<uint32_t, uint32_t> mocks_; ///< mock device id -> MOCK_FLAGS_DEVICE_*
	/** Mock nested HWPTs (iodp nested HWPTs with an opaque stage 1) -> their IOTLB array. */
	std::map<uint32_t, std::array<uint32_t, kIotlbNum>> nested_;
	uint32_t next_mock_ = 0;
	uint32_t memory_limit_ = 65536;
	std::map<int, Access> accesses_; ///< by the descriptor handed out
};

void TestCommandsDelete::operator()(TestCommands *t) const
{
	delete t;
}

TestCommandsPtr make_test_commands(Ctx &ctx)
{
	return TestCommandsPtr(new TestCommands(ctx));
}

Status test_command(TestCommands &t, void *arg)
{
	if (arg == nullptr)
		return Status::error(-EFAULT, "IOMMU_TEST_CMD: the argument is NULL");
	uint32_t size;
	std::memcpy(&size, arg, sizeof(size));
	if (size < kMinSize)
		return Status::error(-EINVAL, "IOMMU_TEST_CMD: size {} is below {}", size,
				     kMinSize);
	TestCmd k{};
	std::memcpy(&k, arg, std::min<size_t>(size, sizeof(k)));
	for (size_t i = sizeof(k); i < size; i++)
		if (static_cast<const unsigned char *>(arg)[i] != 0)
			return Status::error(-E2BIG, "IOMMU_TEST_CMD: byte {} is not zero", i);
	Status s = t.run(k);
	if (!s)
		return Status::error(s.code(), "IOMMU_TEST_CMD op {}: {}", k.op,
				     s.message());
	std::memcpy(arg, &k, std::min<size_t>(size, sizeof(k)));
	return {};
}

Status test_access_release(TestCommands &t, int fd)
{
	return t.release(fd);
}

std::optional<Result<int>> test_intercept(TestCommands &t, unsigned long cmd, void *arg)
{
	return t.intercept(cmd, arg);
}

std::optional<Result<int>> TestCommands::intercept(unsigned long cmd, void *arg)
{
	if (cmd == IODP_IOMMU_IOAS_UNMAP && arg != nullptr && !accesses_.empty()) {
		unmap_pins(arg);
		return std::nullopt; // the table unmaps
	}
	/* Only these four take a struct (VFIO_SET_IOMMU's argument is a number). */
	if (arg == nullptr || (mocks_.empty() && nested_.empty()) ||
	    (cmd != IODP_IOMMU_DESTROY && cmd != IODP_IOMMU_GET_HW_INFO &&
	     cmd != IODP_IOMMU_HWPT_ALLOC && cmd != IODP_IOMMU_HWPT_INVALIDATE))
		return std::nullopt;
	uint32_t size;
	std::memcpy(&size, arg, sizeof(size));
	if (cmd == IODP_IOMMU_DESTROY && size == sizeof(struct iodp_destroy)) {
		struct iodp_destroy d;
		std::memcpy(&d, arg, sizeof(d));
		if (nested_.count(d.id) != 0) {
			if (Status s = ctx_.destroy(d.id); !s)
				return Result<int>(Status::error(s.code(), "DESTROY: {}",
								 s.message().c_str()));
			nested_.erase(d.id);
			return 0;
		}
		if (mocks_.count(d.id) == 0)
			return std::nullopt;
		if (Status s = destroy_mock(d.id); !s)
			return Result<int>(Status::error(s.code(), "DESTROY: {}", s.message()));
		return 0;
	}
	if (cmd == IODP_IOMMU_HWPT_INVALIDATE && size == sizeof(struct iodp_hwpt_invalidate)) {
		struct iodp_hwpt_invalidate k;
		std::memcpy(&k, arg, sizeof(k));
		if (nested_.count(k.hwpt_id) == 0)
			return std::nullopt;
		Status s = mock_nested_invalidate(k);
		std::memcpy(arg, &k, sizeof(k)); // entry_num: the entries handled, also on failure
		if (!s)
			return Result<int>(Status::error(s.code(), "HWPT_INVALIDATE: {}",
							 s.message().c_str()));
		return 0;
	}
	if (cmd == IODP_IOMMU_GET_HW_INFO && size == sizeof(iodp_hw_info)) {
		iodp_hw_info k;
		std::memcpy(&k, arg, sizeof(k));
		auto it = mocks_.find(k.dev_id);
		if (it == mocks_.end())
			return std::nullopt;
		if (Status s = mock_hw_info(k, it->second); !s)
			return Result<int>(Status::error(s.code(), "GET_HW_INFO: {}",
							 s.message()));
		std::memcpy(arg, &k, sizeof(k));
		return 0;
	}
	if (cmd == IODP_IOMMU_HWPT_ALLOC && size == sizeof(struct iodp_hwpt_alloc)) {
		struct iodp_hwpt_alloc k;
		std::memcpy(&k, arg, sizeof(k));
		auto it = mocks_.find(k.dev_id);
		if (it == mocks_.end())
			return std::nullopt;
		if (k.data_type == kHwptDataSelftest) {
			if (Status s = mock_nested_alloc(k); !s)
				return Result<int>(Status::error(s.code(), "HWPT_ALLOC: {}",
								 s.message().c_str()));
			std::memcpy(arg, &k, sizeof(k));
			return 0;
		}
		if (Status s = mock_hwpt_alloc(k, it->second); !s)
			return Result<int>(Status::error(s.code(), "HWPT_ALLOC: {}",
							 s.message()));
		return std::nullopt; // the table allocates it
	}
	return std::nullopt;
}

void TestCommands::unmap_pins(const void *arg)
{
	/*
	 * The kernel calls each access's unmap op before it unmaps IOVA the access pinned;
	 * the selftest's op drops every item in the range. So do these pins.
	 */
	struct iodp_ioas_unmap u{};
	std::memcpy(&u.size, arg, sizeof(u.size));
	if (u.size < sizeof(u))
		return; // the table gives the reason
	std::memcpy(&u, arg, sizeof(u));
	const uint64_t last = u.length == 0 ? u.iova : u.iova + (u.length - 1);
	for (auto &[fd, a] : accesses_)
		for (auto it = a.pins.begin(); it != a.pins.end();) {
			const Pin &p = it->second;
			const bool hit = p.ioas_id == u.ioas_id && p.iova <= last &&
					 u.iova <= p.iova + (p.length - 1);
			it = hit ? a.pins.erase(it) : std::next(it);
		}
}

Status TestCommands::destroy_mock(uint32_t dev_id)
{
	/* The kernel's selftest object: detach and unbind, whatever is attached. */
	std::vector<uint32_t> pasids;
	bool rid_bound = false;
	{
		Inspector look(ctx_);
		const auto *d = look.find_as<Device>(dev_id);
		if (d == nullptr)
			return Status::error(-ENOENT, "no mock device {}", dev_id);
		for (const auto &[pasid, b] : d->pasid_bindings)
			pasids.push_back(pasid);
		rid_bound = d->rid_binding != nullptr;
	}
	for (uint32_t pasid : pasids)
		if (Status s = ctx_.device_detach(dev_id, pasid); !s)
			return s;
	if (rid_bound)
		if (Status s = ctx_.device_detach(dev_id, std::nullopt); !s)
			return s;
	if (Status s = ctx_.destroy(dev_id); !s)
		return s;
	mocks_.erase(dev_id);
	return {};
}

Status TestCommands::mock_hw_info(iodp_hw_info &k, uint32_t flags)
{
	/* The mock driver's record (iommufd_test.h): type SELFTEST, flags 0, test_reg. */
	constexpr uint32_t kTypeSelftest = 0xfeedbeef, kRegVal = 0xdeadbeef;
	if ((k.flags & ~IODP_HW_INFO_FLAG_INPUT_TYPE) || k.__reserved[0] || k.__reserved[1] ||
	    k.__reserved[2])
		return Status::error(-EOPNOTSUPP, "unknown flags or reserved bytes");
	if ((k.flags & IODP_HW_INFO_FLAG_INPUT_TYPE) && k.in_data_type != IODP_HW_INFO_TYPE_NONE &&
	    k.in_data_type != kTypeSelftest)
		return Status::error(-EOPNOTSUPP, "mock device {} reports type {:#x}, not {:#x}",
				     k.dev_id, kTypeSelftest, k.in_data_type);
	const uint32_t record[2] = {0, kRegVal};
	if (k.data_len != 0 && k.data_uptr == 0)
		return Status::error(-EFAULT, "data_uptr is NULL");
	auto *dst = reinterpret_cast<unsigned char *>(static_cast<uintptr_t>(k.data_uptr));
	const size_t n = std::min<size_t>(k.data_len, sizeof(record));
	if (n != 0)
		std::memcpy(dst, record, n);
	if (k.data_len > n)
		std::memset(dst + n, 0, k.data_len - n);
	k.data_len = sizeof(record);
	k.in_data_type = kTypeSelftest;
	k.out_capabilities = (flags & kDevNoDirty) ? 0 : IODP_HW_CAP_DIRTY_TRACKING;
	k.out_max_pasid_log2 = (flags & kDevPasid) ? 20 : 0;
	return {};
}

Status TestCommands::mock_hwpt_alloc(const struct iodp_hwpt_alloc &k, uint32_t flags)
{
	/* The mock IOMMU of a NO_DIRTY device has no dirty tracking. */
	if ((k.flags & IODP_HWPT_ALLOC_DIRTY_TRACKING) && (flags & kDevNoDirty))
		return Status::error(-EOPNOTSUPP, "mock device {} has no dirty tracking",
				     k.dev_id);
	return {};
}

Status TestCommands::mock_nested_alloc(struct iodp_hwpt_alloc &k)
{
	/*
	 * iommufd_hwpt_alloc() then the mock's domain_alloc_user(), in the kernel's order:
	 * the core's checks, the kind of pt_id, the flags, the parent, the data, the fault
	 * queue. The HWPT is an iodp nested HWPT whose stage 1 iodp does not walk (the
	 * mock's nested domain maps nothing); its IOTLB array is kept here.
	 */
	if (Status s = hwpt_alloc_kernel_order(ctx_, k); !s)
		return s;
	Result<ObjectInfo> pt = ctx_.object_info(k.pt_id); // there: the kernel order checked
	if (!pt)
		return pt.status();
	if (pt->type == ObjType::ioas)
		return Status::error(-EOPNOTSUPP, "a mock paging domain takes no data");
	if (pt->type != ObjType::hwpt_paging)
		return Status::error(-EINVAL, "pt_id {} is a {}, not a paging hwpt", k.pt_id,
				     obj_type_name(pt->type));
	if (k.flags & ~IODP_HWPT_FAULT_ID_VALID)
		return Status::error(-EOPNOTSUPP, "flags {:#x} are not for nested HWPTs",
				     k.flags & ~IODP_HWPT_FAULT_ID_VALID);
	bool nest_parent = false;
	if (Inspector look(ctx_); const HwptPaging *h = look.find_as<HwptPaging>(k.pt_id))
		nest_parent = h->flags & IODP_HWPT_ALLOC_NEST_PARENT;
	if (pt->auto_domain || !nest_parent)
		return Status::error(-EINVAL, "hwpt {} was not allocated with NEST_PARENT",
				     k.pt_id);
	if (pt->format != pgtable::Format::mock)
		return Status::error(-EINVAL, "hwpt {} is not a mock domain", k.pt_id);
	uint32_t iotlb = 0; // struct iommu_hwpt_selftest: exactly its one field
	if (k.data_len != sizeof(iotlb))
		return Status::error(-EINVAL, "selftest data_len {} is not {}", k.data_len,
				     sizeof(iotlb));
	const void *data = reinterpret_cast<const void *>(static_cast<uintptr_t>(k.data_uptr));
	if (Status s = copy_from_user(&iotlb, data, sizeof(iotlb), "selftest data"); !s)
		return s;
	Result<uint32_t> id = ctx_.hwpt_alloc_nested(k.dev_id, k.pt_id, k.flags, k.fault_id,
						     OpaqueS1Data{kHwptDataSelftest});
	if (!id)
		return id.status();
	std::array<uint32_t, kIotlbNum> a;
	a.fill(iotlb);
	nested_[*id] = a;
	k.out_hwpt_id = *id;
	return {};
}

Status TestCommands::mock_nested_invalidate(struct iodp_hwpt_invalidate &k)
{
	/* iommufd_hwpt_invalidate() then mock_domain_cache_invalidate_user(). */
	const uint32_t num = k.entry_num;
	k.entry_num = 0;
	if (k.__reserved != 0)
		return Status::error(-EOPNOTSUPP, "__reserved is {:#x}, not 0", k.__reserved);
	if (Status s = invalidate_array_bounds(k.hwpt_id, k.data_uptr != 0, k.entry_len, num); !s)
		return s;
	if (k.data_type != kInvalidateDataSelftest)
		return Status::error(-EINVAL, "hwpt {} takes SELFTEST ({:#x}) invalidations, not "
				     "data_type {:#x}", k.hwpt_id, kInvalidateDataSelftest,
				     k.data_type);
	std::array<uint32_t, kIotlbNum> &iotlb = nested_.at(k.hwpt_id);
	for (uint32_t i = 0; i < num; i++) {
		if (k.entry_len != sizeof(InvalidateSelftest))
			return Status::error(-EINVAL, "entry_len {} is not {}", k.entry_len,
					     sizeof(InvalidateSelftest));
		InvalidateSelftest e;
		const auto *src = reinterpret_cast<const unsigned char *>(
			static_cast<uintptr_t>(k.data_uptr));
		if (Status s = copy_from_user(&e, src + uint64_t{i} * k.entry_len, sizeof(e),
					      "invalidation entry");
		    !s)
			return s;
		if (e.flags & ~kInvalidateFlagAll)
			return Status::error(-EOPNOTSUPP, "entry {}: unknown flags {:#x}", i,
					     e.flags & ~kInvalidateFlagAll);
		if (e.iotlb_id >= kIotlbNum)
			return Status::error(-EINVAL, "entry {}: iotlb_id {} is over {}", i,
					     e.iotlb_id, kIotlbNum - 1);
		if (e.flags & kInvalidateFlagAll)
			iotlb.fill(0);
		else
			iotlb[e.iotlb_id] = 0;
		k.entry_num = i + 1;
	}
	return {};
}

Status TestCommands::check_iotlb(const TestCmd &k) const
{
	auto it = nested_.find(k.id);
	if (it == nested_.end()) {
		Result<ObjectInfo> o = ctx_.object_info(k.id);
		if (!o || o->type != ObjType::hwpt_nested)
			return Status::error(-ENOENT, "no nested hwpt {}", k.id);
		return Status::error(-EINVAL, "hwpt {} is not a mock nested domain", k.id);
	}
	if (k.check_iotlb.id >= kIotlbNum)
		return Status::error(-EINVAL, "iotlb id {} is over {}", k.check_iotlb.id,
				     kIotlbNum - 1);
	if (it->second[k.check_iotlb.id] != k.check_iotlb.iotlb)
		return Status::error(-EINVAL, "hwpt {} iotlb[{}] is {:#x}, not {:#x}", k.id,
				     k.check_iotlb.id, it->second[k.check_iotlb.id],
				     k.check_iotlb.iotlb);
	return {};
}

Status TestCommands::run(TestCmd &k)
{
	switch (k.op) {
	case kOpMockDomain:
	case kOpMockDomainFlags:
		return mock_domain(k);
	case kOpMockDomainReplace:
		return mock_domain_replace(k);
	case kOpMdCheckMap:
		return check_map(k);
	case kOpMdCheckRefs:
		return check_refs(k);
	case kOpCreateAccess:
		return create_access(k);
	case kOpAccessPages:
		return access_pages(k);
	case kOpAccessRw:
		return access_rw(k);
	case kOpDestroyAccessPages: {
		Result<Access *> a = access(k.id);
		if (!a)
			return a.status();
		if ((*a)->pins.erase(k.destroy_access_pages.access_pages_id) == 0)
			return Status::error(-ENOENT, "access {} has no pages {}", k.id,
					     k.destroy_access_pages.access_pages_id);
		return {};
	}
	case kOpAccessReplaceIoas: {
		Result<Access *> a = access(k.id);
		if (!a)
			return a.status();
		Result<ObjectInfo> o = ctx_.object_info(k.access_replace_ioas.ioas_id);
		if (!o || o->type != ObjType::ioas)
			return Status::error(-ENOENT, "no ioas {}", k.access_replace_ioas.ioas_id);
		/* As the kernel's: pages pinned through the old IOAS stay pinned until unpinned. */
		(*a)->ioas_id = k.access_replace_ioas.ioas_id;
		return {};
	}
	case kOpSetTempMemoryLimit:
		/*
		 * The kernel shrinks its page-batch allocations to exercise their split paths;
		 * iodp's map path has no such batches, so the value is only checked and kept.
		 */
		if (k.memory_limit.limit < sizeof(unsigned long) + sizeof(uint32_t))
			return Status::error(-EINVAL, "memory limit {} is below {}",
					     k.memory_limit.limit,
					     sizeof(unsigned long) + sizeof(uint32_t));
		memory_limit_ = k.memory_limit.limit;
		return {};
	case kOpTriggerIopf:
		return trigger_iopf(k);
	case kOpAddReserved:
		if (k.add_reserved.length == 0 ||
		    k.add_reserved.start + (k.add_reserved.length - 1) < k.add_reserved.start)
			return Status::error(-EINVAL, "reserved range 0x{:x}+0x{:x}",
					     (unsigned long)k.add_reserved.start,
					     (unsigned long)k.add_reserved.length);
		return ctx_.ioas_add_reserved(k.id, {k.add_reserved.start,
						     k.add_reserved.start + (k.add_reserved.length - 1)});
	case kOpDirty:
		return dirty(k);
	case kOpMdCheckIotlb:
		return check_iotlb(k);
	default:
		return Status::error(-EOPNOTSUPP, "unknown op");
	}
}

Status TestCommands::mock_domain(TestCmd &k)
{
	const uint32_t flags = k.op == kOpMockDomainFlags ? k.mock_domain.dev_flags : 0;
	if (flags & ~(kDevNoDirty | kDevHugeIova | kDevPasid))
		return Status::error(-EINVAL, "unknown mock device flags {:#x}", flags);
	DeviceSpec spec;
	spec.name = "mock" + std::to_string(next_mock_++);
	spec.model = IommuModel::vtd;
	spec.pasid_bits = (flags & kDevPasid) ? 20 : 0;
	/*
	 * The mock domain's page table: 2 KiB pages (MOCK_IO_PAGE_SIZE), and 1 MiB ones
	 * (MOCK_HUGE_PAGE_SIZE) only on a HUGE_IOVA device, as its pgsize_bitmap says.
	 */
	spec.paging_format = pgtable::table_config(pgtable::Format::mock, 0, kMockPageShift);
	spec.paging_max_leaf = (flags & kDevHugeIova) ? 0 : kMockPage;
	/* The mock domain's aperture [MOCK_APERTURE_START, MOCK_APERTURE_LAST]. */
	spec.reserved = {{0, kMockApertureStart - 1}, {kMockApertureLast + 1, UINT64_MAX}};
	Result<uint32_t> dev = ctx_.device_create(spec);
	if (!dev)
		return dev.status();
	/* A NO_DIRTY device cannot join a HWPT that tracks dirty pages (the kernel's mock). */
	bool tracks_dirty = false;
	if (Inspector look(ctx_); const Hwpt *h = look.find_as<Hwpt>(k.id))
		tracks_dirty = (h->flags & IODP_HWPT_ALLOC_DIRTY_TRACKING) != 0;
	if ((flags & kDevNoDirty) && tracks_dirty) {
		(void)ctx_.destroy(*dev);
		return Status::error(-EINVAL, "a NO_DIRTY mock device cannot attach to hwpt {}, "
				     "which tracks dirty pages", k.id);
	}
	Result<uint32_t> hwpt = ctx_.device_attach(*dev, std::nullopt, k.id);
	if (!hwpt) {
		(void)ctx_.destroy(*dev);
		return hwpt.status();
	}
	mocks_[*dev] = flags;
	k.mock_domain.out_stdev_id = *dev;
	k.mock_domain.out_hwpt_id = *hwpt;
	k.mock_domain.out_idev_id = *dev;
	return {};
}

Status TestCommands::mock_domain_replace(TestCmd &k)
{
	Result<ObjectInfo> o = ctx_.object_info(k.id);
	if (!o || o->type != ObjType::device)
		return Status::error(-ENOENT, "no mock device {}", k.id);
	Result<uint32_t> hwpt = ctx_.device_attach(k.id, std::nullopt,
						   k.mock_domain_replace.pt_id);
	if (!hwpt)
		return hwpt.status();
	k.mock_domain_replace.pt_id = *hwpt;
	return {};
}

Status TestCommands::check_map(const TestCmd &k)
{
	const uint64_t iova = k.check_map.iova, length = k.check_map.length;
	const uint64_t uptr = k.check_map.uptr;
	if (iova % kMockPage || length % kMockPage || uptr % kMockPage || uptr + length < uptr)
		return Status::error(-EINVAL, "iova {:#x}, length {:#x} and uptr {:#x} must be {} "
				     "aligned", (unsigned long)iova, (unsigned long)length,
				     (unsigned long)uptr, (unsigned long)kMockPage);
	/* A device whose RID is on this HWPT: its translation is the HWPT's. */
	uint32_t dev_id = 0;
	{
		Inspector look(ctx_);
		for (uint32_t id : look.ids()) {
			const auto *d = look.find_as<Device>(id);
			if (d != nullptr && d->rid_binding != nullptr &&
			    d->rid_binding->hwpt != nullptr && d->rid_binding->hwpt->id == k.id)
				dev_id = id;
		}
	}
	if (dev_id == 0) {
		Result<ObjectInfo> o = ctx_.object_info(k.id);
		if (!o || o->type != ObjType::hwpt_paging)
			return Status::error(-ENOENT, "no paging hwpt {}", k.id);
		return Status::error(-EINVAL, "hwpt {} has no device to translate for", k.id);
	}
	for (uint64_t off = 0; off < length; off += kMockPage) {
		/* The mock compares page frames only: a write-only mapping is checked too. */
		Result<Translated> t = ctx_.translate(dev_id, std::nullopt, iova + off,
						      IODP_PGFAULT_PERM_READ);
		if (t && t->fault == pgtable::FaultKind::permission)
			t = ctx_.translate(dev_id, std::nullopt, iova + off,
					   IODP_PGFAULT_PERM_WRITE);
		if (!t)
			return t.status();
		if (t->fault != pgtable::FaultKind::none || t->host != uptr + off)
			return Status::error(-EINVAL, "hwpt {}: iova {:#x} is host {:#x} (fault {}), "
					     "not {:#x}", k.id, (unsigned long)(iova + off),
					     (unsigned long)t->host, static_cast<int>(t->fault),
					     (unsigned long)(uptr + off));
	}
	return {};
}

uint32_t TestCommands::pins_of(uintptr_t page) const
{
	uint32_t refs = 0;
	std::map<uint32_t, bool> domain_pinned; // ioas id -> a domain pinned this page
	Inspector look(ctx_);
	for (uint32_t id : look.ids()) {
		const auto *ioas = look.find_as<Ioas>(id);
		if (ioas == nullptr || ioas->hwpts.empty())
			continue;
		for (const auto &[iova, m] : ioas->mappings) {
			const auto host = reinterpret_cast<uintptr_t>(m.host);
			if (page + kPage > host && page < host + m.length) {
				refs++;
				domain_pinned[id] = true;
				break;
			}
		}
	}
	/* The kernel pins a page once per IOAS: an access shares a domain's pin. */
	std::map<uint32_t, bool> access_pinned;
	for (const auto &[fd, a] : accesses_)
		for (const auto &[item, p] : a.pins)
			if (page + kPage > p.host && page < p.host + p.length &&
			    !domain_pinned[p.ioas_id] && !access_pinned[p.ioas_id]) {
				refs++;
				access_pinned[p.ioas_id] = true;
			}
	return refs;
}

Status TestCommands::check_refs(const TestCmd &k)
{
	const uint64_t uptr = k.check_refs.uptr, length = k.check_refs.length;
	if (length % kPage || uptr % kPage || uptr + length < uptr)
		return Status::error(-EINVAL, "uptr {:#x} and length {:#x} must be page aligned",
				     (unsigned long)uptr, (unsigned long)length);
	for (uint64_t off = 0; off < length; off += kPage) {
		const uint32_t refs = pins_of(uptr + off);
		if (refs != k.check_refs.refs)
			return Status::error(-EIO, "page {:#x} has {} pins, not {}",
					     (unsigned long)(uptr + off), refs, k.check_refs.refs);
	}
	return {};
}

Status TestCommands::create_access(TestCmd &k)
{
	if (k.create_access.flags & ~kAccessNeedsPin)
		return Status::error(-EOPNOTSUPP, "unknown access flags {:#x}",
				     k.create_access.flags);
	Result<ObjectInfo> o = ctx_.object_info(k.id);
	if (!o || o->type != ObjType::ioas)
		return Status::error(-ENOENT, "no ioas {}", k.id);
	/* The access's file, as the kernel's anon inode: its number is the access's id. */
	const int fd = eventfd(0, EFD_CLOEXEC);
	if (fd < 0)
		return Status::error(-errno, "access: eventfd failed");
	Access a;
	a.ioas_id = k.id;
	a.needs_pin = k.create_access.flags & kAccessNeedsPin;
	accesses_[fd] = a;
	k.create_access.out_access_fd = static_cast<uint32_t>(fd);
	return {};
}

Status TestCommands::release(int fd)
{
	/* The descriptor is the caller's (it closes it); only the access goes. */
	if (accesses_.erase(fd) == 0)
		return Status::error(-ENOENT, "no access {}", fd);
	return {};
}

Result<Access *> TestCommands::access(uint32_t fd)
{
	auto it = accesses_.find(static_cast<int>(fd));
	if (it == accesses_.end())
		return Status::error(-EBADF, "no access with descriptor {}", fd);
	return &it->second;
}

Result<std::pair<uintptr_t, uint64_t>> TestCommands::host_of(uint32_t ioas_id, uint64_t iova) const
{
	Inspector look(ctx_);
	const auto *ioas = look.find_as<Ioas>(ioas_id);
	if (ioas == nullptr)
		return Status::error(-ENOENT, "no ioas {}", ioas_id);
	auto it = ioas->mappings.upper_bound(iova);
	if (it == ioas->mappings.begin())
		return Status::error(-ENOENT, "ioas {} maps nothing at {:#x}", ioas_id,
				     (unsigned long)iova);
	--it;
	const Mapping &m = it->second;
	if (iova - m.iova >= m.length)
		return Status::error(-ENOENT, "ioas {} maps nothing at {:#x}", ioas_id,
				     (unsigned long)iova);
	return std::pair<uintptr_t, uint64_t>(reinterpret_cast<uintptr_t>(m.host) + (iova - m.iova),
					      m.length - (iova - m.iova));
}

Status TestCommands::access_pages(TestCmd &k)
{
	auto &p = k.access_pages;
	if (p.length > (16u << 20))
		return Status::error(-ENOMEM, "length {:#x} is over 16 MiB", (unsigned long)p.length);
	if (p.flags & ~(kAccessPagesWrite | kAccessSyz))
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}", p.flags);
	Result<Access *> a = access(k.id);
	if (!a)
		return a.status();
	if (!(*a)->needs_pin)
		return Status::error(-EOPNOTSUPP, "access {} was not made to pin pages", k.id);
	if (p.length == 0)
		return Status::error(-EINVAL, "length 0");
	/* The whole range must be mapped (contiguously in host memory for the check). */
	Result<std::pair<uintptr_t, uint64_t>> first = host_of((*a)->ioas_id, p.iova);
	if (!first)
		return first.status();
	for (uint64_t off = 0; off < p.length;) {
		Result<std::pair<uintptr_t, uint64_t>> h = host_of((*a)->ioas_id, p.iova + off);
		if (!h)
			return h.status();
		if (p.uptr != 0 && h->first != p.uptr + off)
			return Status::error(-EINVAL, "iova {:#x} is not at uptr + {:#x}",
					     (unsigned long)(p.iova + off), (unsigned long)off);
		off += h->second;
	}
	const uint32_t item = (*a)->next_item++;
	const uintptr_t host_start = first->first & ~(kPage - 1);
	const uint64_t host_len = ((first->first + p.length + kPage - 1) & ~(kPage - 1)) - host_start;
	(*a)->pins[item] = Pin{p.iova, host_len, host_start, (*a)->ioas_id};
	p.out_access_pages_id = item;
	return {};
}

Status TestCommands::access_rw(const TestCmd &k)
{
	const auto &r = k.access_rw;
	if (r.length > (16u << 20))
		return Status::error(-ENOMEM, "length {:#x} is over 16 MiB", (unsigned long)r.length);
	if (r.flags & ~(kRwWrite | kRwSlowPath | kAccessSyz))
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}", r.flags);
	Result<Access *> a = access(k.id);
	if (!a)
		return a.status();
	if (r.length == 0)
		return Status::error(-EINVAL, "length 0");
	auto *user = reinterpret_cast<unsigned char *>(static_cast<uintptr_t>(r.uptr));
	/* Check the whole range first: a failed access changes nothing. */
	for (uint64_t off = 0; off < r.length;) {
		Result<std::pair<uintptr_t, uint64_t>> h = host_of((*a)->ioas_id, r.iova + off);
		if (!h)
			return h.status();
		off += h->second;
	}
	for (uint64_t off = 0; off < r.length;) {
		Result<std::pair<uintptr_t, uint64_t>> h = host_of((*a)->ioas_id, r.iova + off);
		const uint64_t n = std::min(h->second, r.length - off);
		auto *host = reinterpret_cast<unsigned char *>(h->first);
		if (r.flags & kRwWrite)
			std::memmove(host, user + off, n);
		else
			std::memmove(user + off, host, n);
		off += n;
	}
	return {};
}

Status TestCommands::dirty(TestCmd &k)
{
	/*
	 * The kernel's iommufd_test_dirty(): for each bit set in the user's bitmap, the mock
	 * domain's entry for iova + bit * page_size gets its dirty bit, as a device write
	 * would set it; out_nr_dirty counts the mapped ones.
	 */
	auto &d = k.dirty;
	if (d.page_size == 0 || d.length == 0 || d.iova % d.page_size ||
	    d.length % d.page_size || d.uptr == 0)
		return Status::error(-EINVAL, "dirty: iova {:#x}, length {:#x}, page_size {:#x} "
				     "(and a bitmap) must be aligned and non-zero",
				     (unsigned long)d.iova, (unsigned long)d.length,
				     (unsigned long)d.page_size);
	const uint64_t pages = d.length / d.page_size;
	if (pages > (16ull << 20) * 8)
		return Status::error(-EOVERFLOW, "dirty: {} pages is over the bitmap limit",
				     (unsigned long)pages);
	bool mock = false, tracking = false;
	if (Inspector look(ctx_); const HwptPaging *h = look.find_as<HwptPaging>(k.id)) {
		mock = h->table.stage().format == pgtable::Format::mock;
		tracking = h->dirty_tracking;
	} else {
		return Status::error(-ENOENT, "dirty: no paging hwpt {}", k.id);
	}
	if (!mock)
		return Status::error(-EINVAL, "dirty: hwpt {} is not a mock domain", k.id);
	if (!tracking)
		return Status::error(-EINVAL, "dirty: hwpt {} does not track dirty pages", k.id);
	std::vector<unsigned char> bitmap((pages + 7) / 8);
	const void *user = reinterpret_cast<const void *>(static_cast<uintptr_t>(d.uptr));
	if (Status s = copy_from_user(bitmap.data(), user, bitmap.size(), "dirty: bitmap"); !s)
		return s;
	uint64_t count = 0;
	for (uint64_t i = 0; i < pages; i++) {
		if (!(bitmap[i / 8] & (1u << (i % 8))))
			continue;
		Result<bool> mapped = ctx_.hwpt_mark_dirty(k.id, d.iova + i * d.page_size);
		if (!mapped)
			return mapped.status();
		count += *mapped;
	}
	d.out_nr_dirty = count;
	return {};
}

Status TestCommands::trigger_iopf(const TestCmd &k)
{
	const auto &t = k.trigger_iopf;
	/* The kernel's mock reports on its PASID when one is given, else on the RID. */
	std::optional<uint32_t> pasid;
	{
		Inspector look(ctx_);
		const auto *d = look.find_as<Device>(t.dev_id);
		if (d == nullptr)
			return Status::error(-ENOENT, "no device {}", t.dev_id);
		if (t.pasid != 0 && d->pasid_bindings.count(t.pasid))
			pasid = t.pasid;
	}
	Result<uint32_t> cookie = ctx_.report_fault(t.dev_id, pasid, t.addr,
						    static_cast<uint8_t>(t.perm),
						    pgtable::FaultKind::not_present, 1, 0);
	if (!cookie)
		return cookie.status();
	return {};
}

} // namespace iodp::ctl
