/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef IODP_IODP_H
#define IODP_IODP_H

/**
 * @file
 * iodp control API for C drivers and VMMs.
 *
 * The object model and the command structs are the Linux kernel's iommufd ones (same fields,
 * same order, same sizes, same errno rules), so code written for /dev/iommu ports by
 * replacing ioctl(fd, IOMMU_..., &cmd) with iodp_ioctl(ctx, IOMMU_..., &cmd). The kernel
 * header defines both the numbers and the structs; this header repeats them under iodp_
 * names so it stands alone and can be included next to <linux/iommufd.h>.
 *
 * Every struct starts with `size`, the caller's sizeof. A size below the struct's minimum is
 * EINVAL; a larger size is accepted when the bytes iodp does not know are zero (E2BIG
 * otherwise); unknown flags are EOPNOTSUPP. Output fields are written back up to
 * min(size, sizeof).
 *
 * Two ways to call:
 *  - iodp_ioctl(ctx, cmd, arg): 0, or -1 with errno set, exactly like ioctl(2); the message
 *    of the last failure on the calling thread is iodp_last_error(ctx).
 *  - iodp_<command>(ctx, arg, ext): 0 or a negative errno; on failure ext->msg (when ext is
 *    not NULL) holds a one-line message naming the object and the reason.
 *
 * Commands iodp adds (devices, attach, fault records, a slow-path translate) use numbers
 * from 0xc0 in the same ';' space and follow the same rules.
 *
 * Thread safety: calls on one context may come from several threads at once.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The kernel's _IO(';', nr): no direction, no size. */
#define IODP_IOMMUFD_TYPE ';'
#define IODP_CMD(nr) ((unsigned long)((IODP_IOMMUFD_TYPE << 8) | (nr)))

/* Command numbers: IOMMUFD_CMD_BASE 0x80 + n, as in <linux/iommufd.h>. */
#define IODP_IOMMU_DESTROY IODP_CMD(0x80)
#define IODP_IOMMU_IOAS_ALLOC IODP_CMD(0x81)
#define IODP_IOMMU_IOAS_ALLOW_IOVAS IODP_CMD(0x82)
#define IODP_IOMMU_IOAS_COPY IODP_CMD(0x83)
#define IODP_IOMMU_IOAS_IOVA_RANGES IODP_CMD(0x84)
#define IODP_IOMMU_IOAS_MAP IODP_CMD(0x85)
#define IODP_IOMMU_IOAS_UNMAP IODP_CMD(0x86)
#define IODP_IOMMU_OPTION IODP_CMD(0x87)
#define IODP_IOMMU_HWPT_ALLOC IODP_CMD(0x89)
#define IODP_IOMMU_GET_HW_INFO IODP_CMD(0x8a)
#define IODP_IOMMU_HWPT_SET_DIRTY_TRACKING IODP_CMD(0x8b)
#define IODP_IOMMU_HWPT_GET_DIRTY_BITMAP IODP_CMD(0x8c)
#define IODP_IOMMU_HWPT_INVALIDATE IODP_CMD(0x8d)
#define IODP_IOMMU_FAULT_QUEUE_ALLOC IODP_CMD(0x8e)

/* iodp's own commands. */
#define IODP_DEVICE_ALLOC IODP_CMD(0xc0)
#define IODP_DEVICE_ATTACH IODP_CMD(0xc1)
#define IODP_DEVICE_DETACH IODP_CMD(0xc2)
#define IODP_FAULT_READ IODP_CMD(0xc3)
#define IODP_FAULT_RESPOND IODP_CMD(0xc4)
#define IODP_FAULT_EVENTS_READ IODP_CMD(0xc5)
#define IODP_VPASID_SET IODP_CMD(0xc6)
#define IODP_TRANSLATE IODP_CMD(0xc7)

/* ---- iommufd commands ------------------------------------------------------------------ */

/** IOMMU_DESTROY: destroy any object by id (EBUSY while something uses it). */
struct iodp_destroy {
	uint32_t size;
	uint32_t id;
};

/** IOMMU_IOAS_ALLOC */
struct iodp_ioas_alloc {
	uint32_t size;
	uint32_t flags; /* must be 0 */
	uint32_t out_ioas_id;
};

/** An inclusive IOVA range, as IOMMU_IOAS_IOVA_RANGES reports them. */
struct iodp_iova_range {
	uint64_t start;
	uint64_t last;
};

/** IOMMU_IOAS_ALLOW_IOVAS: replace the list of ranges that must stay usable. */
struct iodp_ioas_allow_iovas {
	uint32_t size;
	uint32_t ioas_id;
	uint32_t num_iovas;
	uint32_t __reserved;
	uint64_t allowed_iovas; /* pointer to num_iovas struct iodp_iova_range */
};

#define IODP_IOAS_MAP_FIXED_IOVA (1u << 0)
#define IODP_IOAS_MAP_WRITEABLE (1u << 1)
#define IODP_IOAS_MAP_READABLE (1u << 2)

/** IOMMU_IOAS_COPY: map what src maps at [src_iova, +length) in dst as well. */
struct iodp_ioas_copy {
	uint32_t size;
	uint32_t flags; /* IODP_IOAS_MAP_* */
	uint32_t dst_ioas_id;
	uint32_t src_ioas_id;
	uint64_t length;
	uint64_t dst_iova; /* in, or out without FIXED_IOVA */
	uint64_t src_iova;
};

/** IOMMU_IOAS_IOVA_RANGES: the usable IOVA ranges; EMSGSIZE (count set) if too few slots. */
struct iodp_ioas_iova_ranges {
	uint32_t size;
	uint32_t ioas_id;
	uint32_t num_iovas; /* in: slots at allowed_iovas; out: ranges there are */
	uint32_t __reserved;
	uint64_t allowed_iovas; /* pointer to struct iodp_iova_range[num_iovas] */
	uint64_t out_iova_alignment;
};

/** IOMMU_IOAS_MAP: map host memory at user_va. */
struct iodp_ioas_map {
	uint32_t size;
	uint32_t flags; /* IODP_IOAS_MAP_* */
	uint32_t ioas_id;
	uint32_t __reserved;
	uint64_t user_va;
	uint64_t length;
	uint64_t iova; /* in with FIXED_IOVA, else out */
};

/** IOMMU_IOAS_UNMAP: whole mappings only; iova 0 + length U64_MAX unmaps everything. */
struct iodp_ioas_unmap {
	uint32_t size;
	uint32_t ioas_id;
	uint64_t iova;
	uint64_t length; /* out: bytes unmapped */
};

#define IODP_OPTION_RLIMIT_MODE 0
#define IODP_OPTION_HUGE_PAGES 1
#define IODP_OPTION_OP_SET 0
#define IODP_OPTION_OP_GET 1

/** IOMMU_OPTION: RLIMIT_MODE (object 0) or HUGE_PAGES (an IOAS); 0/1 values. */
struct iodp_option {
	uint32_t size;
	uint32_t option_id;
	uint16_t op;
	uint16_t __reserved;
	uint32_t object_id;
	uint64_t val64;
};

#define IODP_HWPT_ALLOC_NEST_PARENT (1u << 0)
#define IODP_HWPT_ALLOC_DIRTY_TRACKING (1u << 1)
#define IODP_HWPT_FAULT_ID_VALID (1u << 2)
#define IODP_HWPT_ALLOC_PASID (1u << 3)

#define IODP_HWPT_DATA_NONE 0
#define IODP_HWPT_DATA_VTD_S1 1
#define IODP_HWPT_DATA_ARM_SMMUV3 2

/** IOMMU_HWPT_ALLOC: a paging HWPT on an IOAS, or a nested one on a NEST_PARENT HWPT. */
struct iodp_hwpt_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t pt_id;
	uint32_t out_hwpt_id;
	uint32_t __reserved;
	uint32_t data_type; /* IODP_HWPT_DATA_* */
	uint32_t data_len;
	uint64_t data_uptr;
	uint32_t fault_id;
	uint8_t __reserved2[4];
};

#define IODP_VTD_S1_SRE (1ull << 0)
#define IODP_VTD_S1_EAFE (1ull << 1)
#define IODP_VTD_S1_WPE (1ull << 2)

/** HWPT data VTD_S1: a guest's first-stage (x86-64 paging) table. */
struct iodp_hwpt_vtd_s1 {
	uint64_t flags;
	uint64_t pgtbl_addr; /* guest-physical, 4 KiB aligned */
	uint32_t addr_width; /* 48 or 57 */
	uint32_t __reserved;
};

/** HWPT data ARM_SMMUV3: the guest's STE words 0 and 1 (little-endian). */
struct iodp_hwpt_arm_smmuv3 {
	uint64_t ste[2];
};

#define IODP_HW_INFO_FLAG_INPUT_TYPE (1u << 0)
#define IODP_HW_INFO_TYPE_NONE 0
/** iodp's own hardware-info record: struct iodp_hw_info_iodp. */
#define IODP_HW_INFO_TYPE_IODP 0x100
/**
 * The kernel's records, what a VT-d or SMMUv3 device answers by default: register values
 * that describe what iodp implements for that model (doc/control.md lists the bits).
 */
#define IODP_HW_INFO_TYPE_INTEL_VTD 1
#define IODP_HW_INFO_TYPE_ARM_SMMUV3 2

/** struct iommu_hw_info_vtd: the VT-d CAP_REG and ECAP_REG. */
struct iodp_hw_info_vtd {
	uint32_t flags;
	uint32_t __reserved;
	uint64_t cap_reg;
	uint64_t ecap_reg;
};

/** struct iommu_hw_info_arm_smmuv3: SMMU_IDR0..5, SMMU_IIDR, SMMU_AIDR. */
struct iodp_hw_info_arm_smmuv3 {
	uint32_t flags;
	uint32_t __reserved;
	uint32_t idr[6];
	uint32_t iidr;
	uint32_t aidr;
};

#define IODP_HW_CAP_DIRTY_TRACKING (1ull << 0)
#define IODP_HW_CAP_PCI_PASID_EXEC (1ull << 1)
#define IODP_HW_CAP_PCI_PASID_PRIV (1ull << 2)

/** IOMMU_GET_HW_INFO */
struct iodp_hw_info {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t data_len; /* in: bytes at data_uptr; out: bytes of the record */
	uint64_t data_uptr;
	uint32_t in_data_type; /* out: the record's type (the kernel's union) */
	uint8_t out_max_pasid_log2;
	uint8_t __reserved[3];
	uint64_t out_capabilities;
};

/** Page-table formats (bit n of iodp_hw_info_iodp.formats). */
enum iodp_format {
	IODP_FORMAT_X86_64_4L = 0,
	IODP_FORMAT_X86_64_5L = 1,
	IODP_FORMAT_VTD_SS_3L = 2,
	IODP_FORMAT_VTD_SS_4L = 3,
	IODP_FORMAT_VTD_SS_5L = 4,
	IODP_FORMAT_ARM_S1 = 5,
	IODP_FORMAT_ARM_S2 = 6,
};

/** The IOMMU a device sits behind. */
enum iodp_iommu_model {
	IODP_IOMMU_VTD = 1,    /* VT-d: paging HWPTs are VT-d second stage; nests VTD_S1 */
	IODP_IOMMU_SMMUV3 = 2, /* SMMUv3: paging HWPTs are Arm stage 2; nests ARM_SMMUV3 */
};

/** GET_HW_INFO record of type IODP_HW_INFO_TYPE_IODP. */
struct iodp_hw_info_iodp {
	uint32_t formats;         /* bit per enum iodp_format the engine walks */
	uint32_t paging_format;   /* enum iodp_format of this device's paging HWPTs */
	uint64_t page_sizes;      /* bit n set: 2^n-byte leaves exist in some format */
	uint32_t granules;        /* bit n set: 2^n-byte granule supported */
	uint32_t nested_types;    /* bit per IODP_HWPT_DATA_* this device can nest */
	uint32_t model;           /* enum iodp_iommu_model */
	uint8_t pasid_bits;
	uint8_t paging_ias;       /* input bits of this device's paging HWPTs */
	uint16_t __reserved;
};

#define IODP_HWPT_SET_DIRTY_TRACKING_ENABLE (1u << 0)

/** IOMMU_HWPT_SET_DIRTY_TRACKING */
struct iodp_hwpt_set_dirty_tracking {
	uint32_t size;
	uint32_t flags;
	uint32_t hwpt_id;
	uint32_t __reserved;
};

#define IODP_HWPT_GET_DIRTY_BITMAP_NO_CLEAR (1u << 0)

/** IOMMU_HWPT_GET_DIRTY_BITMAP: bit n of data = page iova + n * page_size was written. */
struct iodp_hwpt_get_dirty_bitmap {
	uint32_t size;
	uint32_t hwpt_id;
	uint32_t flags;
	uint32_t __reserved;
	uint64_t iova;
	uint64_t length;
	uint64_t page_size;
	uint64_t data; /* pointer to a uint64_t bitmap of length / page_size bits */
};

#define IODP_HWPT_INVALIDATE_DATA_VTD_S1 0
#define IODP_HWPT_INVALIDATE_DATA_ARM_SMMUV3 1
/*
 * iodp's own (no kernel has it): raw VT-d queued-invalidation descriptors of a VT-d nested
 * HWPT, 16 bytes each (the first half of a 256-bit one; the rest must be zero), as a VMM's
 * vIOMMU reads them from the guest's queue. An inv_wait completes (its status data is
 * written to guest memory through stage 2) only after what came before it is applied,
 * shadowed into the kernel and past every worker (inside a Ctx::SyncBatch the workers'
 * grace period is the batch's, so there the write does not wait for it). A global
 * descriptor covers the HWPT.
 */
#define IODP_HWPT_INVALIDATE_DATA_VTD_QI 0x10000
/*
 * iodp's own: the commands of a guest's SMMUv3 command queue for an SMMUv3 nested HWPT, 16
 * bytes each, the whole command set (the guest's VMID stands for the HWPT). A CMD_SYNC
 * completes (with CS=SIG_IRQ and an MSIAddr: MSIData written there through stage 2) only
 * after what came before it is applied, shadowed into the kernel and past every worker.
 */
#define IODP_HWPT_INVALIDATE_DATA_SMMUV3_CMDQ 0x10001

#define IODP_VTD_INV_FLAGS_LEAF (1u << 0)

/** One VTD_S1 invalidation entry; addr 0 + npages U64_MAX is the whole domain. */
struct iodp_hwpt_vtd_s1_invalidate {
	uint64_t addr;
	uint64_t npages;
	uint32_t flags;
	uint32_t __reserved;
};

/** One ARM_SMMUV3 invalidation entry: an SMMUv3 command. */
struct iodp_hwpt_arm_smmuv3_invalidate {
	uint64_t cmd[2];
};

/** IOMMU_HWPT_INVALIDATE: nested HWPTs only; stops at the first bad entry. */
struct iodp_hwpt_invalidate {
	uint32_t size;
	uint32_t hwpt_id;
	uint64_t data_uptr;
	uint32_t data_type;
	uint32_t entry_len;
	uint32_t entry_num; /* in: entries; out: entries handled, also on failure */
	uint32_t __reserved;
};

/** IOMMU_FAULT_QUEUE_ALLOC: out_fault_fd is an eventfd, readable while records wait. */
struct iodp_fault_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t out_fault_id;
	uint32_t out_fault_fd;
};

#define IODP_PGFAULT_FLAGS_PASID_VALID (1u << 0)
#define IODP_PGFAULT_FLAGS_LAST_PAGE (1u << 1)
#define IODP_PGFAULT_PERM_READ (1u << 0)
#define IODP_PGFAULT_PERM_WRITE (1u << 1)
#define IODP_PGFAULT_PERM_EXEC (1u << 2)
#define IODP_PGFAULT_PERM_PRIV (1u << 3)

/** A recoverable fault (the kernel's struct iommu_hwpt_pgfault). */
struct iodp_hwpt_pgfault {
	uint32_t flags;
	uint32_t dev_id;
	uint32_t pasid;
	uint32_t grpid;
	uint32_t perm;
	uint32_t __reserved;
	uint64_t addr;
	uint32_t length;
	uint32_t cookie;
};

#define IODP_PAGE_RESP_SUCCESS 0
#define IODP_PAGE_RESP_INVALID 1

/** The answer to a recoverable fault (the kernel's struct iommu_hwpt_page_response). */
struct iodp_hwpt_page_response {
	uint32_t cookie;
	uint32_t code;
};

/* ---- iodp commands -------------------------------------------------------------------- */

#define IODP_DEVICE_NAME_LEN 32

/**
 * IODP_DEVICE_ALLOC: a device this caller drives (library mode; emulated and VFIO devices
 * come from their drivers). group_id 0 makes a new IOMMU group.
 */
struct iodp_device_alloc {
	uint32_t size;
	uint32_t flags;      /* must be 0 */
	uint32_t model;      /* enum iodp_iommu_model */
	uint32_t group_id;   /* in: group to join, 0 for a new one; out: the group */
	uint32_t rid;        /* requester / stream id, for messages and invalidations */
	uint32_t out_dev_id;
	char name[IODP_DEVICE_NAME_LEN]; /* NUL-terminated, unique in the context */
};

#define IODP_ATTACH_PASID (1u << 0)
/** pasid is a guest vPASID, translated through the context's IODP_VPASID_SET table. */
#define IODP_ATTACH_VPASID (1u << 1)

/** IODP_DEVICE_ATTACH: attach (or atomically replace) RID or one PASID to a HWPT or IOAS. */
struct iodp_device_attach {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t pt_id; /* in: HWPT or IOAS; out: the HWPT used */
	uint32_t pasid;
};

/** IODP_DEVICE_DETACH: DMA through RID (or the PASID) is blocked afterwards. */
struct iodp_device_detach {
	uint32_t size;
	uint32_t flags; /* IODP_ATTACH_PASID, IODP_ATTACH_VPASID */
	uint32_t dev_id;
	uint32_t pasid;
};

/** IODP_FAULT_READ: take up to num recoverable faults from a fault queue. */
struct iodp_fault_read {
	uint32_t size;
	uint32_t fault_id;
	uint32_t num; /* in: slots; out: records written */
	uint32_t __reserved;
	uint64_t records; /* pointer to struct iodp_hwpt_pgfault[num] */
};

/** IODP_FAULT_RESPOND: answer faults; stops at the first unknown cookie. */
struct iodp_fault_respond {
	uint32_t size;
	uint32_t fault_id;
	uint32_t num; /* in: responses; out: responses handled */
	uint32_t __reserved;
	uint64_t responses; /* pointer to struct iodp_hwpt_page_response[num] */
};

/** Fault kinds in fault events (the walker's classification). */
enum iodp_fault_kind {
	IODP_FAULT_NONE = 0,
	IODP_FAULT_NOT_PRESENT = 1,
	IODP_FAULT_PERMISSION = 2,
	IODP_FAULT_ADDRESS_SIZE = 3,
	IODP_FAULT_RESERVED_BIT = 4,
	IODP_FAULT_BAD_TABLE_POINTER = 5,
	IODP_FAULT_ACCESS_FLAG = 6,
	IODP_FAULT_LOOP = 7,
	IODP_FAULT_PASID_NOT_ATTACHED = 8, /* also: RID not attached (DMA blocked) */
	IODP_FAULT_BAD_CONFIG = 9,         /* invalid CD / STE / stage-1 setup */
};

#define IODP_FAULT_EVENT_PASID_VALID (1u << 0)

/** A fault that is not recoverable, or one no fault queue took. */
struct iodp_fault_event {
	uint32_t dev_id;
	uint32_t pasid;
	uint32_t flags;
	uint8_t access; /* IODP_PGFAULT_PERM_* bits of the request */
	uint8_t kind;   /* enum iodp_fault_kind */
	uint8_t stage;  /* 1 or 2 (0: before any table) */
	int8_t level;   /* architecture level of the faulting entry */
	uint64_t addr;
};

/** IODP_FAULT_EVENTS_READ: take up to num events from the context's event log. */
struct iodp_fault_events_read {
	uint32_t size;
	uint32_t flags; /* must be 0 */
	uint32_t num;   /* in: slots; out: events written */
	uint32_t __reserved;
	uint64_t events;   /* pointer to struct iodp_fault_event[num] */
	uint64_t out_lost; /* events dropped because the log was full, since the last read */
};

#define IODP_VPASID_CLEAR (1u << 0)

/** IODP_VPASID_SET: bind a guest vPASID to a physical PASID (0: pick a free one). */
struct iodp_vpasid_set {
	uint32_t size;
	uint32_t flags;
	uint32_t vpasid;
	uint32_t ppasid; /* in: wanted, 0 to allocate; out: the physical PASID */
};

#define IODP_TRANSLATE_PASID (1u << 0)

/**
 * IODP_TRANSLATE: translate one address on the control path, as a worker would, without
 * caches. Faults are not errors: the call returns 0 with out_fault set and records the
 * fault (a recoverable one goes to the HWPT's fault queue, with out_cookie).
 */
struct iodp_translate {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t pasid;
	uint32_t access; /* IODP_PGFAULT_PERM_* */
	uint32_t __reserved;
	uint64_t iova;
	uint64_t out_addr; /* host address */
	uint64_t out_page_size;
	uint32_t out_perm; /* IODP_PGFAULT_PERM_READ/WRITE/EXEC */
	uint32_t out_fault; /* enum iodp_fault_kind */
	uint8_t out_stage;
	int8_t out_level;
	uint16_t __reserved2;
	uint32_t out_cookie; /* recoverable fault queued: its cookie; else 0 */
};

/* ---- calls ----------------------------------------------------------------------------- */

struct iodp_ctx;

#define IODP_EXTACK_MSG_LEN 256

/** Where a failing call leaves its message (the kernel's extack, for userspace). */
struct iodp_extack {
	char msg[IODP_EXTACK_MSG_LEN];
};

/** A new, empty context (0 or -ENOMEM). */
int iodp_ctx_open(struct iodp_ctx **out);
/** Destroy a context and every object in it. NULL is ignored. */
void iodp_ctx_close(struct iodp_ctx *ctx);

/** ioctl(2)-shaped: 0, or -1 with errno set (ENOTTY for an unknown command). */
int iodp_ioctl(struct iodp_ctx *ctx, unsigned long cmd, void *arg);
/** The message of the last failed call on this thread and context ("" if none). */
const char *iodp_last_error(struct iodp_ctx *ctx);

int iodp_destroy(struct iodp_ctx *ctx, struct iodp_destroy *cmd, struct iodp_extack *ext);
int iodp_ioas_alloc(struct iodp_ctx *ctx, struct iodp_ioas_alloc *cmd,
		    struct iodp_extack *ext);
int iodp_ioas_allow_iovas(struct iodp_ctx *ctx, struct iodp_ioas_allow_iovas *cmd,
			  struct iodp_extack *ext);
int iodp_ioas_copy(struct iodp_ctx *ctx, struct iodp_ioas_copy *cmd, struct iodp_extack *ext);
int iodp_ioas_iova_ranges(struct iodp_ctx *ctx, struct iodp_ioas_iova_ranges *cmd,
			  struct iodp_extack *ext);
int iodp_ioas_map(struct iodp_ctx *ctx, struct iodp_ioas_map *cmd, struct iodp_extack *ext);
int iodp_ioas_unmap(struct iodp_ctx *ctx, struct iodp_ioas_unmap *cmd,
		    struct iodp_extack *ext);
int iodp_option(struct iodp_ctx *ctx, struct iodp_option *cmd, struct iodp_extack *ext);
int iodp_hwpt_alloc(struct iodp_ctx *ctx, struct iodp_hwpt_alloc *cmd,
		    struct iodp_extack *ext);
int iodp_get_hw_info(struct iodp_ctx *ctx, struct iodp_hw_info *cmd, struct iodp_extack *ext);
int iodp_hwpt_set_dirty_tracking(struct iodp_ctx *ctx, struct iodp_hwpt_set_dirty_tracking *cmd,
				 struct iodp_extack *ext);
int iodp_hwpt_get_dirty_bitmap(struct iodp_ctx *ctx, struct iodp_hwpt_get_dirty_bitmap *cmd,
			       struct iodp_extack *ext);
int iodp_hwpt_invalidate(struct iodp_ctx *ctx, struct iodp_hwpt_invalidate *cmd,
			 struct iodp_extack *ext);
int iodp_fault_queue_alloc(struct iodp_ctx *ctx, struct iodp_fault_alloc *cmd,
			   struct iodp_extack *ext);
int iodp_device_alloc(struct iodp_ctx *ctx, struct iodp_device_alloc *cmd,
		      struct iodp_extack *ext);
int iodp_device_attach(struct iodp_ctx *ctx, struct iodp_device_attach *cmd,
		       struct iodp_extack *ext);
int iodp_device_detach(struct iodp_ctx *ctx, struct iodp_device_detach *cmd,
		       struct iodp_extack *ext);
int iodp_fault_read(struct iodp_ctx *ctx, struct iodp_fault_read *cmd, struct iodp_extack *ext);
int iodp_fault_respond(struct iodp_ctx *ctx, struct iodp_fault_respond *cmd,
		       struct iodp_extack *ext);
int iodp_fault_events_read(struct iodp_ctx *ctx, struct iodp_fault_events_read *cmd,
			   struct iodp_extack *ext);
int iodp_vpasid_set(struct iodp_ctx *ctx, struct iodp_vpasid_set *cmd, struct iodp_extack *ext);
int iodp_translate(struct iodp_ctx *ctx, struct iodp_translate *cmd, struct iodp_extack *ext);

/* ---- the kernel's file operations (what /dev/iommu descriptors do) --------------------- */

/**
 * read(2) on a fault queue's descriptor, as the kernel's iommufd fault file: @p count must
 * be a multiple of sizeof(struct iodp_hwpt_pgfault) (else -ESPIPE); fills whole records and
 * returns the bytes written, 0 when nothing waits, -EINVAL when @p count is 0 while a record
 * waits. libiodp-preload.so routes read() on the descriptor here.
 */
long iodp_fault_fd_read(struct iodp_ctx *ctx, uint32_t fault_id, void *buf, size_t count);
/**
 * write(2) on a fault queue's descriptor: whole struct iodp_hwpt_page_response records
 * (else -ESPIPE); returns the bytes consumed, or -EINVAL when the first response has an
 * unknown cookie or code (a later bad one ends the write short, as in the kernel).
 */
long iodp_fault_fd_write(struct iodp_ctx *ctx, uint32_t fault_id, const void *buf,
			 size_t count);

/**
 * The kernel's test-only commands (IOMMU_TEST_CMD, CONFIG_IOMMUFD_TEST): off by default
 * (the command is then ENOTTY, as on a kernel built without them). @p enable non-zero
 * turns them on for this context. Returns 0, or -EOPNOTSUPP when iodp was built without
 * them (meson -Diommufd_test=false).
 */
int iodp_ctx_test_commands(struct iodp_ctx *ctx, int enable);
/**
 * What the kernel does when the last descriptor of a test "access" (IOMMU_TEST_CMD
 * CREATE_ACCESS, out_access_fd) is closed: unpin its pages and destroy it. The descriptor
 * itself is the caller's to close. 0 or -ENOENT.
 */
int iodp_test_access_release(struct iodp_ctx *ctx, int access_fd);

#ifdef __cplusplus
}
#endif

#endif /* IODP_IODP_H */
