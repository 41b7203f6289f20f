/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Where iodp behaves as the kernel's iommufd and used not to (issue 17): each test here
 * failed before its fix. Through iodp_ioctl, as ported code calls it. The kernel's own
 * selftest runs in the iommufd-selftest suite (tests/iommufd).
 */
#include "ctl_fixture.h"

#include <iodp/iodp.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace iodp::ctl::test {
namespace {

class Conform : public ::testing::Test {
protected:
	void SetUp() override { ASSERT_EQ(iodp_ctx_open(&c), 0); }
	void TearDown() override { iodp_ctx_close(c); }

	/** ioctl(2)'s answer and errno (0 on success). */
	std::pair<int, int> call(unsigned long cmd, void *arg)
	{
		errno = 0;
		const int rc = iodp_ioctl(c, cmd, arg);
		return {rc, rc < 0 ? errno : 0};
	}
	uint32_t device(uint32_t model = IODP_IOMMU_VTD)
	{
		struct iodp_device_alloc d = {};
		d.size = sizeof(d);
		d.model = model;
		std::snprintf(d.name, sizeof(d.name), "dev%u", next_dev++);
		EXPECT_EQ(iodp_ioctl(c, IODP_DEVICE_ALLOC, &d), 0) << iodp_last_error(c);
		return d.out_dev_id;
	}
	uint32_t ioas()
	{
		struct iodp_ioas_alloc a = {};
		a.size = sizeof(a);
		EXPECT_EQ(iodp_ioctl(c, IODP_IOMMU_IOAS_ALLOC, &a), 0) << iodp_last_error(c);
		return a.out_ioas_id;
	}
	uint32_t fault_queue(int *fd)
	{
		struct iodp_fault_alloc q = {};
		q.size = sizeof(q);
		EXPECT_EQ(iodp_ioctl(c, IODP_IOMMU_FAULT_QUEUE_ALLOC, &q), 0) << iodp_last_error(c);
		*fd = static_cast<int>(q.out_fault_fd);
		return q.out_fault_id;
	}
	int destroy(uint32_t id)
	{
		struct iodp_destroy d = {};
		d.size = sizeof(d);
		d.id = id;
		return iodp_ioctl(c, IODP_IOMMU_DESTROY, &d);
	}

	iodp_ctx *c = nullptr;
	uint32_t next_dev = 0;
};

/* The fault queue's descriptor is the caller's: iodp never closes that number. */
TEST_F(Conform, FaultQueueDescriptorIsTheCallers)
{
	int fd = -1;
	const uint32_t q = fault_queue(&fd);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(close(fd), 0);
	const int reused = open("/dev/null", O_RDONLY); // takes the lowest free number
	ASSERT_EQ(reused, fd);
	ASSERT_EQ(destroy(q), 0) << iodp_last_error(c);
	EXPECT_GE(fcntl(reused, F_GETFD), 0) << "iodp closed a descriptor it had handed out";
	close(reused);

	/* And the other way: destroying the queue leaves the caller's descriptor open. */
	const uint32_t q2 = fault_queue(&fd);
	ASSERT_EQ(destroy(q2), 0);
	EXPECT_GE(fcntl(fd, F_GETFD), 0);
	close(fd);
}

/* read()/write() on the descriptor take whole kernel records (iodp_fault_fd_read/write). */
TEST_F(Conform, FaultFileRecords)
{
	int fd = -1;
	const uint32_t q = fault_queue(&fd);
	const uint32_t dev = device();
	const uint32_t as = ioas();
	struct iodp_hwpt_alloc h = {};
	h.size = sizeof(h);
	h.flags = IODP_HWPT_FAULT_ID_VALID;
	h.dev_id = dev;
	h.pt_id = as;
	h.fault_id = q;
	ASSERT_EQ(iodp_ioctl(c, IODP_IOMMU_HWPT_ALLOC, &h), 0) << iodp_last_error(c);
	struct iodp_device_attach at = {};
	at.size = sizeof(at);
	at.dev_id = dev;
	at.pt_id = h.out_hwpt_id;
	ASSERT_EQ(iodp_ioctl(c, IODP_DEVICE_ATTACH, &at), 0) << iodp_last_error(c);

	struct iodp_hwpt_pgfault rec[2];
	EXPECT_EQ(iodp_fault_fd_read(c, q, rec, sizeof(rec[0]) + 1), -ESPIPE);
	EXPECT_EQ(iodp_fault_fd_read(c, q, rec, sizeof(rec)), 0); // nothing waits
	struct iodp_translate t = {};
	t.size = sizeof(t);
	t.dev_id = dev;
	t.access = IODP_PGFAULT_PERM_WRITE;
	t.iova = 0x123000;
	ASSERT_EQ(iodp_ioctl(c, IODP_TRANSLATE, &t), 0) << iodp_last_error(c);
	ASSERT_NE(t.out_cookie, 0u);
	EXPECT_EQ(iodp_fault_fd_read(c, q, rec, 0), -EINVAL); // a record waits, no room
	EXPECT_EQ(iodp_fault_fd_read(c, q, rec, sizeof(rec)), (long)sizeof(rec[0]));
	EXPECT_EQ(rec[0].cookie, t.out_cookie);
	EXPECT_EQ(rec[0].addr, 0x123000u);
	EXPECT_EQ(rec[0].perm, (uint32_t)IODP_PGFAULT_PERM_WRITE);

	struct iodp_hwpt_page_response r[2] = {{t.out_cookie, IODP_PAGE_RESP_SUCCESS},
					       {t.out_cookie, IODP_PAGE_RESP_SUCCESS}};
	EXPECT_EQ(iodp_fault_fd_write(c, q, r, sizeof(r[0]) - 1), -ESPIPE);
	// The second answers the same cookie again: the write ends after the first.
	EXPECT_EQ(iodp_fault_fd_write(c, q, r, sizeof(r)), (long)sizeof(r[0]));
	EXPECT_EQ(iodp_fault_fd_write(c, q, r, sizeof(r[0])), -EINVAL);
	close(fd);
}

/* IOMMU_HWPT_ALLOC checks in the kernel's order. */
TEST_F(Conform, HwptAllocErrnoOrder)
{
	const uint32_t as = ioas();
	struct iodp_hwpt_alloc h = {};
	h.size = sizeof(h);
	h.dev_id = 99; // no such device
	h.pt_id = as;
	h.data_type = 0x77; // unknown type
	h.data_len = 8;
	uint64_t blob = 0;
	h.data_uptr = reinterpret_cast<uintptr_t>(&blob);
	EXPECT_EQ(call(IODP_IOMMU_HWPT_ALLOC, &h), std::make_pair(-1, ENOENT));

	h.dev_id = device();
	h.data_type = IODP_HWPT_DATA_NONE; // NONE with data
	EXPECT_EQ(call(IODP_IOMMU_HWPT_ALLOC, &h), std::make_pair(-1, EINVAL));

	h.data_len = 0;
	h.data_uptr = 0;
	h.pt_id = 4242; // no such object: EINVAL, not ENOENT
	EXPECT_EQ(call(IODP_IOMMU_HWPT_ALLOC, &h), std::make_pair(-1, EINVAL));

	int fd = -1;
	h.pt_id = as;
	h.fault_id = fault_queue(&fd);
	h.flags = IODP_HWPT_ALLOC_NEST_PARENT | IODP_HWPT_FAULT_ID_VALID;
	EXPECT_EQ(call(IODP_IOMMU_HWPT_ALLOC, &h), std::make_pair(-1, EOPNOTSUPP));
	close(fd);
}

/* With a device attached, IOAS_MAP of memory the process has not mapped is EFAULT. */
TEST_F(Conform, MapOfUnmappedMemoryWithADeviceIsEfault)
{
	const uint32_t as = ioas();
	const long page = sysconf(_SC_PAGESIZE);
	auto *mem = static_cast<unsigned char *>(
		mmap(nullptr, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
	ASSERT_NE(mem, MAP_FAILED);
	ASSERT_EQ(munmap(mem + 2 * page, 2 * page), 0); // the second half is gone
	struct iodp_ioas_map m = {};
	m.size = sizeof(m);
	m.flags = IODP_IOAS_MAP_FIXED_IOVA | IODP_IOAS_MAP_READABLE;
	m.ioas_id = as;
	m.user_va = reinterpret_cast<uintptr_t>(mem);
	m.length = 4 * page;
	m.iova = 0x100000;
	// No device: nothing would be pinned yet (the kernel pins when a domain comes).
	ASSERT_EQ(call(IODP_IOMMU_IOAS_MAP, &m), std::make_pair(0, 0));
	struct iodp_ioas_unmap u = {};
	u.size = sizeof(u);
	u.ioas_id = as;
	u.iova = 0x100000;
	u.length = 4 * page;
	ASSERT_EQ(call(IODP_IOMMU_IOAS_UNMAP, &u), std::make_pair(0, 0));

	struct iodp_device_attach at = {};
	at.size = sizeof(at);
	at.dev_id = device();
	at.pt_id = as;
	ASSERT_EQ(iodp_ioctl(c, IODP_DEVICE_ATTACH, &at), 0) << iodp_last_error(c);
	EXPECT_EQ(call(IODP_IOMMU_IOAS_MAP, &m), std::make_pair(-1, EFAULT));
	EXPECT_NE(std::string(iodp_last_error(c)).find("not all mapped"), std::string::npos);
	// Nothing was mapped: unmapping it is ENOENT.
	EXPECT_EQ(call(IODP_IOMMU_IOAS_UNMAP, &u), std::make_pair(-1, ENOENT));
	m.length = 2 * page; // the mapped half is fine
	EXPECT_EQ(call(IODP_IOMMU_IOAS_MAP, &m), std::make_pair(0, 0));
	ASSERT_EQ(munmap(mem, 2 * page), 0);
}

/* An IOAS with no HWPT has IOVA alignment 1 until a table (or HUGE_PAGES 0) needs more. */
TEST_F(Conform, AlignmentOneWithoutHwpt)
{
	const uint32_t as = ioas();
	auto alignment = [&] {
		struct iodp_iova_range ranges[4];
		struct iodp_ioas_iova_ranges r = {};
		r.size = sizeof(r);
		r.ioas_id = as;
		r.num_iovas = 4;
		r.allowed_iovas = reinterpret_cast<uintptr_t>(ranges);
		EXPECT_EQ(call(IODP_IOMMU_IOAS_IOVA_RANGES, &r), std::make_pair(0, 0));
		return r.out_iova_alignment;
	};
	EXPECT_EQ(alignment(), 1u);

	alignas(4096) static unsigned char mem[3 * 4096];
	struct iodp_ioas_map m = {};
	m.size = sizeof(m);
	m.flags = IODP_IOAS_MAP_FIXED_IOVA | IODP_IOAS_MAP_READABLE;
	m.ioas_id = as;
	m.user_va = reinterpret_cast<uintptr_t>(mem + 100);
	m.length = 3000;
	m.iova = 0x100064;
	ASSERT_EQ(call(IODP_IOMMU_IOAS_MAP, &m), std::make_pair(0, 0)) << iodp_last_error(c);
	struct iodp_ioas_copy cp = {};
	cp.size = sizeof(cp);
	cp.flags = IODP_IOAS_MAP_FIXED_IOVA | IODP_IOAS_MAP_READABLE;
	cp.dst_ioas_id = as;
	cp.src_ioas_id = as;
	cp.length = 3000;
	cp.dst_iova = 0x200007;
	cp.src_iova = 0x100064;
	EXPECT_EQ(call(IODP_IOMMU_IOAS_COPY, &cp), std::make_pair(0, 0)) << iodp_last_error(c);

	// A table with 4 KiB pages cannot take those: the attach fails and changes nothing.
	struct iodp_device_attach at = {};
	at.size = sizeof(at);
	at.dev_id = device();
	at.pt_id = as;
	EXPECT_EQ(call(IODP_DEVICE_ATTACH, &at), std::make_pair(-1, EADDRINUSE));
	struct iodp_option o = {};
	o.size = sizeof(o);
	o.option_id = IODP_OPTION_HUGE_PAGES;
	o.op = IODP_OPTION_OP_SET;
	o.object_id = as;
	o.val64 = 0; // large pages off means page alignment: the same
	EXPECT_EQ(call(IODP_IOMMU_OPTION, &o), std::make_pair(-1, EADDRINUSE));
	EXPECT_EQ(alignment(), 1u);

	struct iodp_ioas_unmap u = {};
	u.size = sizeof(u);
	u.ioas_id = as;
	u.length = UINT64_MAX; // all
	ASSERT_EQ(call(IODP_IOMMU_IOAS_UNMAP, &u), std::make_pair(0, 0));
	at.pt_id = as;
	ASSERT_EQ(call(IODP_DEVICE_ATTACH, &at), std::make_pair(0, 0)) << iodp_last_error(c);
	EXPECT_EQ(alignment(), 4096u);
	EXPECT_EQ(call(IODP_IOMMU_IOAS_MAP, &m), std::make_pair(-1, EINVAL));
}

/* Attach to an IOAS makes or reuses automatic domains only, never the caller's HWPT. */
TEST_F(Conform, AttachToIoasUsesOnlyAutomaticDomains)
{
	const uint32_t as = ioas();
	const uint32_t d1 = device(), d2 = device(), d3 = device();
	struct iodp_hwpt_alloc h = {};
	h.size = sizeof(h);
	h.dev_id = d1;
	h.pt_id = as;
	ASSERT_EQ(iodp_ioctl(c, IODP_IOMMU_HWPT_ALLOC, &h), 0) << iodp_last_error(c);
	struct iodp_device_attach at = {};
	at.size = sizeof(at);
	at.dev_id = d2;
	at.pt_id = as;
	ASSERT_EQ(iodp_ioctl(c, IODP_DEVICE_ATTACH, &at), 0) << iodp_last_error(c);
	const uint32_t automatic = at.pt_id;
	EXPECT_NE(automatic, h.out_hwpt_id);
	at.dev_id = d3;
	at.pt_id = as;
	ASSERT_EQ(iodp_ioctl(c, IODP_DEVICE_ATTACH, &at), 0) << iodp_last_error(c);
	EXPECT_EQ(at.pt_id, automatic); // automatic domains are shared
	EXPECT_EQ(destroy(h.out_hwpt_id), 0) << iodp_last_error(c); // nobody uses it
}

/* GET_HW_INFO answers the kernel's record for the model; iodp's own on request. */
TEST_F(Conform, HwInfoKernelRecords)
{
	struct iodp_hw_info i = {};
	struct iodp_hw_info_vtd vtd;
	std::memset(&vtd, 0xff, sizeof(vtd));
	i.size = sizeof(i);
	i.dev_id = device(IODP_IOMMU_VTD);
	i.data_len = sizeof(vtd);
	i.data_uptr = reinterpret_cast<uintptr_t>(&vtd);
	ASSERT_EQ(iodp_ioctl(c, IODP_IOMMU_GET_HW_INFO, &i), 0) << iodp_last_error(c);
	EXPECT_EQ(i.in_data_type, (uint32_t)IODP_HW_INFO_TYPE_INTEL_VTD); // out_data_type
	EXPECT_EQ(i.data_len, sizeof(vtd));
	EXPECT_EQ(vtd.flags, 0u);
	EXPECT_EQ((vtd.cap_reg >> 8) & 0x1f, 1u << 2);  // SAGAW: 4-level second stage
	EXPECT_EQ((vtd.cap_reg >> 16) & 0x3f, 47u);     // MGAW: 48 bits
	EXPECT_EQ((vtd.cap_reg >> 34) & 0xf, 3u);       // SLLPS: 2 MiB, 1 GiB
	EXPECT_TRUE(vtd.ecap_reg & (1ull << 26));       // NEST
	EXPECT_TRUE(vtd.ecap_reg & (1ull << 40));       // PASID
	EXPECT_EQ((vtd.ecap_reg >> 35) & 0x1f, 19u);    // PSS: 20 PASID bits
	EXPECT_TRUE(vtd.ecap_reg & (1ull << 45));       // SLADS: dirty tracking
	EXPECT_TRUE(vtd.ecap_reg & (1ull << 46));       // SLTS
	EXPECT_TRUE(vtd.ecap_reg & (1ull << 47));       // FLTS

	struct iodp_hw_info_arm_smmuv3 smmu;
	std::memset(&smmu, 0xff, sizeof(smmu));
	i.dev_id = device(IODP_IOMMU_SMMUV3);
	i.data_len = sizeof(smmu);
	i.data_uptr = reinterpret_cast<uintptr_t>(&smmu);
	i.in_data_type = 0;
	ASSERT_EQ(iodp_ioctl(c, IODP_IOMMU_GET_HW_INFO, &i), 0) << iodp_last_error(c);
	EXPECT_EQ(i.in_data_type, (uint32_t)IODP_HW_INFO_TYPE_ARM_SMMUV3);
	EXPECT_EQ(i.data_len, sizeof(smmu));
	EXPECT_EQ(smmu.idr[0] & 3u, 3u);                // S1P | S2P
	EXPECT_EQ((smmu.idr[0] >> 2) & 3u, 2u);         // AArch64 tables
	EXPECT_EQ((smmu.idr[1] >> 6) & 0x1f, 20u);      // SSIDSIZE
	EXPECT_EQ(smmu.idr[5] & 7u, 5u);                // OAS: 48 bits
	EXPECT_EQ(smmu.idr[0] & (3u << 6), 0u);         // HTTU: no dirty tracking on Arm

	i.flags = IODP_HW_INFO_FLAG_INPUT_TYPE; // iodp's own record stays available
	i.in_data_type = IODP_HW_INFO_TYPE_IODP;
	i.data_len = 0;
	ASSERT_EQ(iodp_ioctl(c, IODP_IOMMU_GET_HW_INFO, &i), 0) << iodp_last_error(c);
	EXPECT_EQ(i.in_data_type, (uint32_t)IODP_HW_INFO_TYPE_IODP);
	EXPECT_EQ(i.data_len, sizeof(struct iodp_hw_info_iodp));
	i.in_data_type = IODP_HW_INFO_TYPE_INTEL_VTD; // not this device's
	EXPECT_EQ(call(IODP_IOMMU_GET_HW_INFO, &i), std::make_pair(-1, EOPNOTSUPP));
}

/* IOMMU_OPTION: RLIMIT_MODE with an object id is EOPNOTSUPP; set then get. */
TEST_F(Conform, OptionRlimitMode)
{
	struct iodp_option o = {};
	o.size = sizeof(o);
	o.option_id = IODP_OPTION_RLIMIT_MODE;
	o.op = IODP_OPTION_OP_SET;
	o.val64 = 1;
	o.object_id = 3;
	EXPECT_EQ(call(IODP_IOMMU_OPTION, &o), std::make_pair(-1, EOPNOTSUPP));
	o.object_id = 0;
	EXPECT_EQ(call(IODP_IOMMU_OPTION, &o), std::make_pair(0, 0));
	o.op = IODP_OPTION_OP_GET;
	o.val64 = 7;
	EXPECT_EQ(call(IODP_IOMMU_OPTION, &o), std::make_pair(0, 0));
	EXPECT_EQ(o.val64, 1u);
}

/* The kernel's test commands are off unless asked for. */
TEST_F(Conform, TestCommandsOffByDefault)
{
	uint32_t cmd[18] = {72, 9 /* SET_TEMP_MEMORY_LIMIT */, 0, 0, 65536};
	const unsigned long kTestCmd = IODP_CMD(0x80 + 32);
	EXPECT_EQ(call(kTestCmd, cmd), std::make_pair(-1, ENOTTY));
	ASSERT_EQ(iodp_ctx_test_commands(c, 1), 0);
	EXPECT_EQ(call(kTestCmd, cmd), std::make_pair(0, 0));
	cmd[4] = 4; // below the kernel's minimum
	EXPECT_EQ(call(kTestCmd, cmd), std::make_pair(-1, EINVAL));
	ASSERT_EQ(iodp_ctx_test_commands(c, 0), 0);
	EXPECT_EQ(call(kTestCmd, cmd), std::make_pair(-1, ENOTTY));
}

/* VFIO type1 container ioctls on /dev/iommu (drivers/iommu/iommufd/vfio_compat.c). */
TEST_F(Conform, VfioCompat)
{
	const unsigned long base = IODP_CMD(100); // _IO(VFIO_TYPE, VFIO_BASE)
	const unsigned long get_api = base, check_ext = base + 1, set_iommu = base + 2,
			    get_info = base + 12, map_dma = base + 13, unmap_dma = base + 14;
	const unsigned long vfio_ioas = IODP_CMD(0x88);
	auto arg = [](unsigned long v) { return reinterpret_cast<void *>(v); };
	EXPECT_EQ(call(get_api, nullptr), std::make_pair(0, 0));   // VFIO_API_VERSION
	EXPECT_EQ(call(check_ext, arg(3)), std::make_pair(1, 0));  // TYPE1v2
	EXPECT_EQ(call(check_ext, arg(1)), std::make_pair(1, 0));  // TYPE1
	EXPECT_EQ(call(check_ext, arg(8)), std::make_pair(0, 0));  // NOIOMMU: no
	EXPECT_EQ(call(set_iommu, arg(3)), std::make_pair(-1, ENODEV)); // no compat IOAS

	struct {
		uint32_t size, ioas_id;
		uint16_t op, reserved;
	} v = {12, 0, 0 /* GET */, 0};
	EXPECT_EQ(call(vfio_ioas, &v), std::make_pair(-1, ENODEV));
	v.op = 1; // SET
	v.ioas_id = 77;
	EXPECT_EQ(call(vfio_ioas, &v), std::make_pair(-1, ENOENT));
	const uint32_t as = ioas();
	v.ioas_id = as;
	EXPECT_EQ(call(vfio_ioas, &v), std::make_pair(0, 0));
	v.op = 0;
	v.ioas_id = 0;
	EXPECT_EQ(call(vfio_ioas, &v), std::make_pair(0, 0));
	EXPECT_EQ(v.ioas_id, as);
	EXPECT_EQ(call(set_iommu, arg(3)), std::make_pair(0, 0));
	EXPECT_EQ(call(set_iommu, arg(2)), std::make_pair(-1, EINVAL));

	HostBuffer buf(1 << 20);
	struct {
		uint32_t argsz, flags;
		uint64_t vaddr, iova, size;
	} m = {32, 3, buf.addr(), 0x100000, 1 << 20};
	EXPECT_EQ(call(map_dma, &m), std::make_pair(0, 0));
	m.flags = 1u << 31;
	EXPECT_EQ(call(map_dma, &m), std::make_pair(-1, EINVAL));
	struct {
		uint32_t argsz, flags;
		uint64_t iova, size;
	} u = {24, 0, 0x900000, 4096};
	EXPECT_EQ(call(unmap_dma, &u), std::make_pair(0, 0)); // nothing there: success, 0
	EXPECT_EQ(u.size, 0u);
	u = {24, 2 /* UNMAP_FLAG_ALL */, 0, 0};
	EXPECT_EQ(call(unmap_dma, &u), std::make_pair(0, 0));
	EXPECT_EQ(u.size, 1u << 20);

	/* GET_INFO: sizes a small buffer asks for, then the caps chain. */
	alignas(8) unsigned char info[256] = {};
	uint32_t argsz = 16;
	std::memcpy(info, &argsz, 4);
	EXPECT_EQ(call(get_info, info), std::make_pair(0, 0));
	std::memcpy(&argsz, info, 4);
	EXPECT_GT(argsz, 24u);
	std::memset(info, 0, sizeof(info));
	std::memcpy(info, &argsz, 4);
	EXPECT_EQ(call(get_info, info), std::make_pair(0, 0));
	uint32_t flags, cap_offset;
	std::memcpy(&flags, info + 4, 4);
	std::memcpy(&cap_offset, info + 16, 4);
	EXPECT_EQ(flags, 3u); // PGSIZES | CAPS
	EXPECT_EQ(cap_offset, 24u);
	uint16_t first_cap;
	std::memcpy(&first_cap, info + cap_offset, 2);
	EXPECT_EQ(first_cap, 3u); // DMA_AVAIL, then IOVA_RANGE
}

/* Reserved regions of a device and of an IOAS leave IOVA_RANGES as the kernel's do. */
TEST(ConformReserved, DeviceAndIoasReservedRanges)
{
	Ctx ctx;
	HostBuffer buf(1 << 20);
	const uint32_t ioas = ok(ctx.ioas_alloc());
	ok(ctx.ioas_map(ioas, kFixedRW, 0x1000, buf.data(), 0x1000).status());
	// Over a mapping: refused, nothing reserved.
	EXPECT_FAILS(ctx.ioas_add_reserved(ioas, {0x1000, 0x1fff}), EADDRINUSE,
		     "overlaps mapping");
	ok(ctx.ioas_add_reserved(ioas, {0x10000, 0x1ffff}));
	EXPECT_FAILS(ctx.ioas_map(ioas, kFixedRW, 0x10000, buf.data(), 0x1000), EINVAL,
		     "reserved by ioas");
	const IovaRange allow{0x8000, 0x18fff};
	EXPECT_FAILS(ctx.ioas_allow_iovas(ioas, {&allow, 1}), EADDRINUSE, "reserved");

	DeviceSpec spec = vtd_device("aperture");
	spec.reserved = {{0, (1ull << 24) - 1}, {1ull << 31, UINT64_MAX}};
	const uint32_t dev = ok(ctx.device_create(spec));
	// The mapping at 0x1000 is inside the device's reserved region: no attach.
	EXPECT_FAILS(ctx.device_attach(dev, std::nullopt, ioas), EADDRINUSE, "reserved region");
	ok(ctx.ioas_unmap(ioas, 0x1000, 0x1000).status());
	ok(ctx.device_attach(dev, std::nullopt, ioas).status());
	uint64_t align = 0;
	const std::vector<IovaRange> r = ok(ctx.ioas_iova_ranges(ioas, &align));
	ASSERT_EQ(r.size(), 1u);
	EXPECT_EQ(r[0], (IovaRange{1ull << 24, (1ull << 31) - 1}));
	EXPECT_FAILS(ctx.ioas_map(ioas, kFixedRW, 0x80000000, buf.data(), 0x1000), EINVAL,
		     "reserved region");
	ok(ctx.device_detach(dev, std::nullopt));
	EXPECT_EQ(ok(ctx.ioas_iova_ranges(ioas, &align)).size(), 2u); // around 0x10000-0x1ffff
}

} // namespace
} // namespace iodp::ctl::test
