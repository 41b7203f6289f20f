/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The C API as a C driver or VMM sees it: <iodp/iodp.h> compiled as C11, every call through
 * iodp_ioctl() or the iodp_<command>() form, no C++ anywhere. One scenario from device to
 * teardown, then the errno rules a port from /dev/iommu relies on.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS under -std=c11 */

#include <iodp/iodp.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static struct iodp_ctx *g_ctx;

static void fail_at(const char *file, int line, const char *what)
{
	fprintf(stderr, "FAIL: %s:%d: %s\n", file, line, what);
	if (g_ctx != NULL && iodp_last_error(g_ctx)[0] != '\0')
		fprintf(stderr, "  last error: %s\n", iodp_last_error(g_ctx));
	exit(1);
}

#define CHECK(cond)                                                                              \
	do {                                                                                     \
		if (!(cond))                                                                     \
			fail_at(__FILE__, __LINE__, #cond);                                      \
	} while (0)

/* An ioctl that must succeed; errno and the message say why it did not. */
#define IOCTL_OK(cmd, arg)                                                                       \
	do {                                                                                     \
		if (iodp_ioctl(g_ctx, (cmd), (arg)) != 0) {                                      \
			fprintf(stderr, "  errno %d (%s)\n", errno, strerror(errno));            \
			fail_at(__FILE__, __LINE__, "iodp_ioctl(" #cmd ", " #arg ") failed");    \
		}                                                                                \
	} while (0)

/* An ioctl that must fail with -1 and errno @p err. */
#define IOCTL_ERR(cmd, arg, err)                                                                 \
	do {                                                                                     \
		errno = 0;                                                                       \
		int rc_ = iodp_ioctl(g_ctx, (cmd), (arg));                                       \
		if (rc_ != -1 || errno != (err)) {                                               \
			fprintf(stderr, "  rc %d errno %d (%s), want -1 errno %d (%s)\n", rc_,   \
				errno, strerror(errno), (err), strerror(err));                   \
			fail_at(__FILE__, __LINE__, "iodp_ioctl(" #cmd ", " #arg ") -> " #err);  \
		}                                                                                \
	} while (0)

#define PTR(p) ((uint64_t)(uintptr_t)(p))

static void *map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	return p;
}

static void destroy_ok(uint32_t id)
{
	struct iodp_destroy d = {.size = sizeof(d), .id = id};
	IOCTL_OK(IODP_IOMMU_DESTROY, &d);
}

static void destroy_busy(uint32_t id, const char *why)
{
	struct iodp_destroy d = {.size = sizeof(d), .id = id};
	IOCTL_ERR(IODP_IOMMU_DESTROY, &d, EBUSY);
	CHECK(strstr(iodp_last_error(g_ctx), why) != NULL);
}

#define GUEST_RAM_GPA 0x40000000ull
#define GUEST_RAM_SIZE (4ull << 20)
#define GUEST_VA 0x7000000000ull
#define GUEST_DATA_GPA 0x40200000ull
#define X86_PRW_US 0x7ull

/*
 * A guest's x86-64 4-level table in its own RAM: PML4 at offset 0, PDPT, PD and PT in the
 * next three pages, one 4 KiB page GUEST_VA -> GUEST_DATA_GPA. Entries hold guest-physical
 * addresses, which the nested walk sends through stage 2.
 */
static uint64_t build_guest_table(unsigned char *ram)
{
	uint64_t *pml4 = (uint64_t *)ram;
	uint64_t *pdpt = (uint64_t *)(ram + 0x1000);
	uint64_t *pd = (uint64_t *)(ram + 0x2000);
	uint64_t *pt = (uint64_t *)(ram + 0x3000);

	pml4[(GUEST_VA >> 39) & 0x1ff] = (GUEST_RAM_GPA + 0x1000) | X86_PRW_US;
	pdpt[(GUEST_VA >> 30) & 0x1ff] = (GUEST_RAM_GPA + 0x2000) | X86_PRW_US;
	pd[(GUEST_VA >> 21) & 0x1ff] = (GUEST_RAM_GPA + 0x3000) | X86_PRW_US;
	pt[(GUEST_VA >> 12) & 0x1ff] = GUEST_DATA_GPA | X86_PRW_US;
	return GUEST_RAM_GPA;
}

int main(void)
{
	const uint32_t rw = IODP_IOAS_MAP_READABLE | IODP_IOAS_MAP_WRITEABLE;
	const size_t buf_len = 2u << 20;

	/* 1. Context */
	CHECK(iodp_ctx_open(&g_ctx) == 0 && g_ctx != NULL);
	CHECK(strcmp(iodp_last_error(g_ctx), "") == 0);

	/* 2. Device */
	struct iodp_device_alloc dev = {.size = sizeof(dev), .model = IODP_IOMMU_VTD, .rid = 0x100};
	strcpy(dev.name, "cdev0");
	IOCTL_OK(IODP_DEVICE_ALLOC, &dev);
	CHECK(dev.out_dev_id != 0);
	CHECK(dev.group_id != 0);
	const uint32_t dev_id = dev.out_dev_id;

	/* 3. IOAS, ioctl style */
	struct iodp_ioas_alloc ia = {.size = sizeof(ia)};
	IOCTL_OK(IODP_IOMMU_IOAS_ALLOC, &ia);
	CHECK(ia.out_ioas_id != 0 && ia.out_ioas_id != dev_id);
	const uint32_t ioas = ia.out_ioas_id;

	/* 4. Maps: one at a fixed IOVA, one where iodp picks */
	unsigned char *buf = map_anon(buf_len);
	struct iodp_ioas_map map = {.size = sizeof(map), .flags = IODP_IOAS_MAP_FIXED_IOVA | rw,
				    .ioas_id = ioas, .user_va = PTR(buf), .length = buf_len,
				    .iova = 0x100000};
	IOCTL_OK(IODP_IOMMU_IOAS_MAP, &map);
	CHECK(map.iova == 0x100000);

	unsigned char *buf2 = map_anon(buf_len);
	struct iodp_ioas_map map2 = {.size = sizeof(map2), .flags = rw, .ioas_id = ioas,
				     .user_va = PTR(buf2), .length = buf_len};
	IOCTL_OK(IODP_IOMMU_IOAS_MAP, &map2);
	CHECK(map2.iova != 0);
	CHECK((map2.iova & 0xfff) == 0);
	CHECK(map2.iova + buf_len <= 0x100000 || map2.iova >= 0x100000 + buf_len);

	/* 5. Attach the RID to the IOAS: iodp makes (or finds) a paging HWPT for it */
	struct iodp_device_attach at = {.size = sizeof(at), .dev_id = dev_id, .pt_id = ioas};
	IOCTL_OK(IODP_DEVICE_ATTACH, &at);
	CHECK(at.pt_id != 0 && at.pt_id != ioas);
	const uint32_t auto_hwpt = at.pt_id;

	struct iodp_translate tr = {.size = sizeof(tr), .dev_id = dev_id,
				    .access = IODP_PGFAULT_PERM_READ, .iova = 0x100000 + 0x1234};
	IOCTL_OK(IODP_TRANSLATE, &tr);
	CHECK(tr.out_fault == IODP_FAULT_NONE);
	CHECK(tr.out_addr == PTR(buf) + 0x1234);
	CHECK(tr.out_perm & IODP_PGFAULT_PERM_WRITE);

	/* A fault is an answer, not an error; with no fault queue it lands in the event log. */
	const uint64_t hole = 0x10000000;
	struct iodp_translate tw = {.size = sizeof(tw), .dev_id = dev_id,
				    .access = IODP_PGFAULT_PERM_WRITE, .iova = hole};
	IOCTL_OK(IODP_TRANSLATE, &tw);
	CHECK(tw.out_fault == IODP_FAULT_NOT_PRESENT);
	CHECK(tw.out_cookie == 0);

	struct iodp_fault_event ev[4];
	memset(ev, 0xff, sizeof(ev));
	struct iodp_fault_events_read er = {.size = sizeof(er), .num = 4, .events = PTR(ev)};
	IOCTL_OK(IODP_FAULT_EVENTS_READ, &er);
	CHECK(er.num == 1 && er.out_lost == 0);
	CHECK(ev[0].dev_id == dev_id);
	CHECK(ev[0].addr == hole);
	CHECK(ev[0].kind == IODP_FAULT_NOT_PRESENT);
	CHECK(ev[0].access == IODP_PGFAULT_PERM_WRITE);
	CHECK(!(ev[0].flags & IODP_FAULT_EVENT_PASID_VALID));

	/* 6. Errors: errno for ioctl callers, the message from iodp_last_error() */
	destroy_busy(ioas, "is used by hwpt");

	IOCTL_ERR(IODP_CMD(0xbf), &ia, ENOTTY);
	CHECK(strstr(iodp_last_error(g_ctx), "unknown command") != NULL);

	struct iodp_ioas_map m = map;
	m.size = 4;
	IOCTL_ERR(IODP_IOMMU_IOAS_MAP, &m, EINVAL);

	/* A newer caller's longer struct: fine while the tail iodp does not know is zero. */
	struct {
		struct iodp_ioas_map m;
		uint64_t tail[2];
	} big;
	memset(&big, 0, sizeof(big));
	big.m = map;
	big.m.size = sizeof(big);
	big.m.iova = 0x1000000;
	big.tail[1] = 1;
	IOCTL_ERR(IODP_IOMMU_IOAS_MAP, &big, E2BIG);
	big.tail[1] = 0;
	IOCTL_OK(IODP_IOMMU_IOAS_MAP, &big);
	CHECK(big.m.iova == 0x1000000 && big.tail[0] == 0 && big.tail[1] == 0);
	struct iodp_ioas_unmap um = {.size = sizeof(um), .ioas_id = ioas, .iova = 0x1000000,
				     .length = buf_len};
	IOCTL_OK(IODP_IOMMU_IOAS_UNMAP, &um);
	CHECK(um.length == buf_len);

	m = map;
	m.flags |= 1u << 3;
	m.iova = 0x1000000;
	IOCTL_ERR(IODP_IOMMU_IOAS_MAP, &m, EOPNOTSUPP);

	m = map;
	IOCTL_ERR(IODP_IOMMU_IOAS_MAP, &m, EEXIST);

	/* Mappings come out whole, as the kernel's do. */
	um = (struct iodp_ioas_unmap){.size = sizeof(um), .ioas_id = ioas, .iova = 0x100000,
				      .length = buf_len / 2};
	IOCTL_ERR(IODP_IOMMU_IOAS_UNMAP, &um, ENOENT);
	CHECK(strstr(iodp_last_error(g_ctx), "split") != NULL);

	struct iodp_extack ext;
	memset(&ext, 0, sizeof(ext));
	CHECK(iodp_ioas_unmap(g_ctx, &um, &ext) == -ENOENT);
	CHECK(ext.msg[0] != '\0');
	CHECK(strstr(ext.msg, "IOAS_UNMAP") != NULL);
	tr.iova = 0x100000;
	IOCTL_OK(IODP_TRANSLATE, &tr); /* the failed unmap changed nothing */
	CHECK(tr.out_fault == IODP_FAULT_NONE && tr.out_addr == PTR(buf));

	/* 7. Usable ranges: the attached device's MSI window is cut out */
	struct iodp_ioas_iova_ranges rq = {.size = sizeof(rq), .ioas_id = ioas};
	IOCTL_ERR(IODP_IOMMU_IOAS_IOVA_RANGES, &rq, EMSGSIZE);
	CHECK(rq.num_iovas >= 2);
	struct iodp_iova_range ranges[16];
	CHECK(rq.num_iovas <= 16);
	rq.allowed_iovas = PTR(ranges);
	IOCTL_OK(IODP_IOMMU_IOAS_IOVA_RANGES, &rq);
	CHECK(rq.num_iovas >= 2);
	CHECK(rq.out_iova_alignment == 4096);
	for (uint32_t i = 0; i < rq.num_iovas; i++) {
		CHECK(ranges[i].start <= ranges[i].last);
		CHECK(ranges[i].last < 0xfee00000ull || ranges[i].start > 0xfeefffffull);
		CHECK(i == 0 || ranges[i].start > ranges[i - 1].last);
	}
	CHECK(ranges[0].start == 0 && ranges[0].last == 0xfedfffffull);

	/* 8. Nested VT-d: the guest's stage 1 over a NEST_PARENT stage 2 on the same IOAS */
	struct iodp_hwpt_alloc pa = {.size = sizeof(pa), .flags = IODP_HWPT_ALLOC_NEST_PARENT,
				     .dev_id = dev_id, .pt_id = ioas,
				     .data_type = IODP_HWPT_DATA_NONE};
	IOCTL_OK(IODP_IOMMU_HWPT_ALLOC, &pa);
	const uint32_t parent = pa.out_hwpt_id;
	CHECK(parent != 0 && parent != auto_hwpt && parent != ioas);

	unsigned char *ram = map_anon(GUEST_RAM_SIZE);
	struct iodp_ioas_map rm = {.size = sizeof(rm), .flags = IODP_IOAS_MAP_FIXED_IOVA | rw,
				   .ioas_id = ioas, .user_va = PTR(ram),
				   .length = GUEST_RAM_SIZE, .iova = GUEST_RAM_GPA};
	IOCTL_OK(IODP_IOMMU_IOAS_MAP, &rm);
	const uint64_t pml4 = build_guest_table(ram);

	struct iodp_hwpt_vtd_s1 s1 = {.flags = 0, .pgtbl_addr = pml4, .addr_width = 48};
	struct iodp_hwpt_alloc na = {.size = sizeof(na), .dev_id = dev_id, .pt_id = parent,
				     .data_type = IODP_HWPT_DATA_VTD_S1,
				     .data_len = sizeof(s1), .data_uptr = PTR(&s1)};
	IOCTL_OK(IODP_IOMMU_HWPT_ALLOC, &na);
	const uint32_t nested = na.out_hwpt_id;
	CHECK(nested != 0 && nested != parent);

	struct iodp_device_attach pat = {.size = sizeof(pat), .flags = IODP_ATTACH_PASID,
					 .dev_id = dev_id, .pt_id = nested, .pasid = 5};
	IOCTL_OK(IODP_DEVICE_ATTACH, &pat);
	CHECK(pat.pt_id == nested);

	struct iodp_translate tn = {.size = sizeof(tn), .flags = IODP_TRANSLATE_PASID,
				    .dev_id = dev_id, .pasid = 5,
				    .access = IODP_PGFAULT_PERM_READ, .iova = GUEST_VA + 0x10};
	IOCTL_OK(IODP_TRANSLATE, &tn);
	CHECK(tn.out_fault == IODP_FAULT_NONE);
	CHECK(tn.out_addr == PTR(ram) + (GUEST_DATA_GPA - GUEST_RAM_GPA) + 0x10);
	CHECK(tn.out_page_size == 4096);

	/* Still the RID's own stage 2, untouched by the PASID attach. */
	tr.iova = 0x100000 + 0x1234;
	IOCTL_OK(IODP_TRANSLATE, &tr);
	CHECK(tr.out_fault == IODP_FAULT_NONE && tr.out_addr == PTR(buf) + 0x1234);

	/* Handled entries are counted even when a later one is refused. */
	struct iodp_hwpt_vtd_s1_invalidate inv[3] = {
		{.addr = GUEST_VA, .npages = 1, .flags = IODP_VTD_INV_FLAGS_LEAF},
		{.addr = 0, .npages = UINT64_MAX},
		{.addr = GUEST_VA, .npages = 1, .flags = 1u << 7},
	};
	struct iodp_hwpt_invalidate hi = {.size = sizeof(hi), .hwpt_id = nested,
					  .data_uptr = PTR(inv),
					  .data_type = IODP_HWPT_INVALIDATE_DATA_VTD_S1,
					  .entry_len = sizeof(inv[0]), .entry_num = 3};
	IOCTL_ERR(IODP_IOMMU_HWPT_INVALIDATE, &hi, EOPNOTSUPP);
	CHECK(hi.entry_num == 2);
	CHECK(strstr(iodp_last_error(g_ctx), "entry 2") != NULL);
	hi.entry_num = 2;
	IOCTL_OK(IODP_IOMMU_HWPT_INVALIDATE, &hi);
	CHECK(hi.entry_num == 2);

	/*
	 * iodp keeps its own tables coherent: a paging HWPT takes no invalidations (ENOENT, as
	 * the kernel's lookup of a nested HWPT finds none).
	 */
	hi.hwpt_id = parent;
	IOCTL_ERR(IODP_IOMMU_HWPT_INVALIDATE, &hi, ENOENT);
	CHECK(hi.entry_num == 0);
	CHECK(strstr(iodp_last_error(g_ctx), "paging") != NULL);

	/* 9. Lifecycle: every user pins what it uses; EBUSY names the user */
	destroy_busy(nested, "is attached to device cdev0 pasid 5");
	destroy_busy(parent, "is the parent of nested hwpt");
	destroy_busy(dev_id, "is attached to hwpt");

	struct iodp_device_detach dt = {.size = sizeof(dt), .flags = IODP_ATTACH_PASID,
					.dev_id = dev_id, .pasid = 5};
	IOCTL_OK(IODP_DEVICE_DETACH, &dt);
	IOCTL_ERR(IODP_DEVICE_DETACH, &dt, ENOENT);
	tn.iova = GUEST_VA + 0x10;
	IOCTL_OK(IODP_TRANSLATE, &tn);
	CHECK(tn.out_fault == IODP_FAULT_PASID_NOT_ATTACHED);

	destroy_ok(nested);
	destroy_ok(parent);

	dt = (struct iodp_device_detach){.size = sizeof(dt), .dev_id = dev_id};
	IOCTL_OK(IODP_DEVICE_DETACH, &dt);
	/* The HWPT the attach made went with its last user. */
	struct iodp_destroy d = {.size = sizeof(d), .id = auto_hwpt};
	IOCTL_ERR(IODP_IOMMU_DESTROY, &d, ENOENT);

	/* 10. Hardware info, read while the device still exists */
	struct iodp_hw_info_iodp info;
	memset(&info, 0xff, sizeof(info));
	struct iodp_hw_info hw = {.size = sizeof(hw), .flags = IODP_HW_INFO_FLAG_INPUT_TYPE,
				  .dev_id = dev_id, .data_len = sizeof(info), .data_uptr = PTR(&info),
				  .in_data_type = IODP_HW_INFO_TYPE_IODP};
	IOCTL_OK(IODP_IOMMU_GET_HW_INFO, &hw);
	CHECK(hw.in_data_type == IODP_HW_INFO_TYPE_IODP);
	CHECK(hw.data_len == sizeof(info));
	CHECK(hw.out_max_pasid_log2 == 20);
	CHECK(hw.out_capabilities & IODP_HW_CAP_DIRTY_TRACKING);
	CHECK(info.model == IODP_IOMMU_VTD);
	CHECK(info.paging_format == IODP_FORMAT_VTD_SS_4L);
	CHECK(info.nested_types & (1u << IODP_HWPT_DATA_VTD_S1));
	CHECK(info.pasid_bits == 20);

	destroy_ok(ioas);
	destroy_ok(dev_id);
	d.id = ioas;
	IOCTL_ERR(IODP_IOMMU_DESTROY, &d, ENOENT);

	iodp_ctx_close(g_ctx);
	g_ctx = NULL;
	munmap(ram, GUEST_RAM_SIZE);
	munmap(buf2, buf_len);
	munmap(buf, buf_len);
	printf("ctl_c_test: ok\n");
	return 0;
}
