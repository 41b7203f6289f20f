/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * VFIO type1 compatibility on /dev/iommu, as the kernel's iommufd has it
 * (drivers/iommu/iommufd/vfio_compat.c): IOMMU_VFIO_IOAS names the IOAS the container
 * ioctls work on, and VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU,
 * VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA and VFIO_IOMMU_UNMAP_DMA act on it. Without a
 * compat IOAS they are ENODEV, like the kernel's (VFIO would have no group).
 *
 * Numbers and layouts are the kernel's <linux/vfio.h> and <linux/iommufd.h>; they are
 * repeated here so that lib/ctl needs no kernel headers.
 */
#include "ext.h"
#include "inspect.h"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <vector>

namespace iodp::ctl {
namespace {

constexpr unsigned long kVfioIoas = IODP_CMD(0x88); // IOMMU_VFIO_IOAS
constexpr unsigned long kVfioBase = IODP_CMD(100);  // _IO(VFIO_TYPE ';', VFIO_BASE)
constexpr unsigned long kGetApiVersion = kVfioBase + 0;
constexpr unsigned long kCheckExtension = kVfioBase + 1;
constexpr unsigned long kSetIommu = kVfioBase + 2;
constexpr unsigned long kIommuGetInfo = kVfioBase + 12;
constexpr unsigned long kIommuMapDma = kVfioBase + 13;
constexpr unsigned long kIommuUnmapDma = kVfioBase + 14;

constexpr int kApiVersion = 0;
constexpr unsigned long kType1 = 1, kType1v2 = 3, kDmaCcIommu = 4, kUnmapAll = 9;
constexpr uint32_t kMapRead = 1u << 0, kMapWrite = 1u << 1;
constexpr uint32_t kUnmapFlagAll = 1u << 1;
constexpr uint32_t kInfoPgsizes = 1u << 0, kInfoCaps = 1u << 1;
constexpr uint16_t kCapIovaRange = 1, kCapDmaAvail = 3;

enum : uint32_t { kIoasGet = 0, kIoasSet = 1, kIoasClear = 2 };

struct iommu_vfio_ioas {
	uint32_t size;
	uint32_t ioas_id;
	uint16_t op;
	uint16_t __reserved;
};
struct vfio_dma_map {
	uint32_t argsz, flags;
	uint64_t vaddr, iova, size;
};
struct vfio_dma_unmap {
	uint32_t argsz, flags;
	uint64_t iova, size;
};
struct vfio_info {
	uint32_t argsz, flags;
	uint64_t iova_pgsizes;
	uint32_t cap_offset, pad;
};
struct cap_header {
	uint16_t id, version;
	uint32_t next;
};
struct cap_iova_range {
	cap_header header;
	uint32_t nr_iovas, reserved;
};
struct cap_dma_avail {
	cap_header header;
	uint32_t avail;
};
static_assert(sizeof(iommu_vfio_ioas) == 12 && sizeof(vfio_dma_map) == 32 &&
	      sizeof(vfio_dma_unmap) == 24 && sizeof(vfio_info) == 24 &&
	      sizeof(cap_iova_range) == 16 && sizeof(cap_dma_avail) == 12);

} // namespace

class VfioCompat {
public:
	explicit VfioCompat(Ctx &ctx) : ctx_(ctx) {}
	Result<int> command(unsigned long cmd, void *arg);

private:
	Result<uint32_t> compat_ioas() const;
	Status vfio_ioas(iommu_vfio_ioas &k);
	Result<int> check_extension(unsigned long type) const;
	Status set_iommu(unsigned long type);
	Status get_info(void *arg);
	Status map_dma(void *arg);
	Status unmap_dma(void *arg);

	Ctx &ctx_;
	uint32_t ioas_id_ = 0; ///< the compat IOAS (0: none)
};

void VfioCompatDelete::operator()(VfioCompat *v) const
{
	delete v;
}

VfioCompatPtr make_vfio_compat(Ctx &ctx)
{
	return VfioCompatPtr(new VfioCompat(ctx));
}

Result<int> vfio_command(VfioCompat &v, unsigned long cmd, void *arg)
{
	return v.command(cmd, arg);
}

Result<uint32_t> VfioCompat::compat_ioas() const
{
	Result<ObjectInfo> o = ctx_.object_info(ioas_id_);
	if (ioas_id_ == 0 || !o || o->type != ObjType::ioas)
		return Status::error(-ENODEV, "no compat IOAS (IOMMU_VFIO_IOAS SET names one)");
	return ioas_id_;
}

Status VfioCompat::vfio_ioas(iommu_vfio_ioas &k)
{
	if (k.__reserved != 0)
		return Status::error(-EOPNOTSUPP, "IOMMU_VFIO_IOAS: __reserved is not 0");
	switch (k.op) {
	case kIoasGet: {
		Result<uint32_t> id = compat_ioas();
		if (!id)
			return id.status();
		k.ioas_id = *id;
		return {};
	}
	case kIoasSet: {
		Result<ObjectInfo> o = ctx_.object_info(k.ioas_id);
		if (!o || o->type != ObjType::ioas)
			return Status::error(-ENOENT, "IOMMU_VFIO_IOAS: no ioas {}", k.ioas_id);
		ioas_id_ = k.ioas_id;
		return {};
	}
	case kIoasClear:
		ioas_id_ = 0;
		return {};
	default:
		return Status::error(-EOPNOTSUPP, "IOMMU_VFIO_IOAS: unknown op {}", k.op);
	}
}

Result<int> VfioCompat::check_extension(unsigned long type) const
{
	switch (type) {
	case kType1:
	case kType1v2:
	case kUnmapAll:
		return 1;
	case kDmaCcIommu: // iodp's tables are read by the CPU: always coherent
		if (Result<uint32_t> id = compat_ioas(); !id)
			return id.status();
		return 1;
	default: // nesting, vaddr update, no-IOMMU: not offered
		return 0;
	}
}

Status VfioCompat::set_iommu(unsigned long type)
{
	if (type != kType1 && type != kType1v2)
		return Status::error(-EINVAL, "VFIO_SET_IOMMU: type {} is not type1 (1) or "
				     "type1v2 (3)", type);
	Result<uint32_t> id = compat_ioas();
	if (!id)
		return id.status();
	if (type != kType1)
		return {};
	/* Type1 (v1) may unmap parts of a mapping: the kernel turns large pages off. */
	uint64_t off = 0;
	return ctx_.option(IODP_OPTION_HUGE_PAGES, IODP_OPTION_OP_SET, *id, &off);
}

Status VfioCompat::get_info(void *arg)
{
	constexpr size_t kMin = offsetof(vfio_info, iova_pgsizes) + sizeof(uint64_t);
	vfio_info info{};
	std::memcpy(&info, arg, kMin);
	if (info.argsz < kMin)
		return Status::error(-EINVAL, "VFIO_IOMMU_GET_INFO: argsz {} is below {}",
				     info.argsz, kMin);
	const size_t out_size = std::min<size_t>(info.argsz, sizeof(info));
	Result<uint32_t> id = compat_ioas();
	if (!id)
		return id.status();
	uint64_t align = 0;
	Result<std::vector<IovaRange>> ranges = ctx_.ioas_iova_ranges(*id, &align);
	if (!ranges)
		return ranges.status();
	/* The kernel's: page sizes every domain has, at least PAGE_SIZE and the alignment. */
	uint64_t pgsizes = ~0xfffull;
	if (Inspector look(ctx_); const Ioas *ioas = look.find_as<Ioas>(*id)) {
		if (!ioas->hwpts.empty())
			pgsizes = ioas->huge_pages ? (4096ull | (2ull << 20) | (1ull << 30)) : 4096;
	} else {
		return Status::error(-ENODEV, "ioas {}: gone", *id);
	}
	pgsizes = std::max<uint64_t>(pgsizes, align);

	auto *base = static_cast<unsigned char *>(arg);
	/* The caps, each 8-byte aligned after the struct: DMA_AVAIL, then IOVA_RANGE. */
	const size_t avail_off = sizeof(info);
	const size_t avail_size = (sizeof(cap_dma_avail) + 7) & ~size_t{7};
	const size_t iova_off = avail_off + avail_size;
	const size_t iova_size = sizeof(cap_iova_range) + ranges->size() * 16;
	const size_t total = iova_off + ((iova_size + 7) & ~size_t{7});
	if (info.argsz >= avail_off + sizeof(cap_dma_avail)) {
		cap_dma_avail c{{kCapDmaAvail, 1, 0}, UINT32_MAX};
		if (info.argsz >= iova_off)
			c.header.next = static_cast<uint32_t>(iova_off);
		std::memcpy(base + avail_off, &c, sizeof(c));
	}
	if (info.argsz > iova_off) {
		const size_t avail = info.argsz - iova_off;
		for (size_t i = 0; i < ranges->size(); i++)
			if (avail >= sizeof(cap_iova_range) + (i + 1) * 16) {
				const uint64_t r[2] = {(*ranges)[i].start, (*ranges)[i].last};
				std::memcpy(base + iova_off + sizeof(cap_iova_range) + i * 16, r, 16);
			}
		if (avail >= iova_size) {
			cap_iova_range c{{kCapIovaRange, 1, 0},
					 static_cast<uint32_t>(ranges->size()), 0};
			std::memcpy(base + iova_off, &c, sizeof(c));
		}
	}
	info.flags = kInfoPgsizes | kInfoCaps;
	info.iova_pgsizes = pgsizes;
	info.cap_offset = info.argsz >= total ? static_cast<uint32_t>(sizeof(info)) : 0;
	info.argsz = static_cast<uint32_t>(total);
	std::memcpy(arg, &info, out_size);
	return {};
}

Status VfioCompat::map_dma(void *arg)
{
	vfio_dma_map m;
	std::memcpy(&m, arg, sizeof(m));
	if (m.argsz < sizeof(m) || (m.flags & ~(kMapRead | kMapWrite)))
		return Status::error(-EINVAL, "VFIO_IOMMU_MAP_DMA: argsz {} or flags {:#x}",
				     m.argsz, m.flags);
	Result<uint32_t> id = compat_ioas();
	if (!id)
		return id.status();
	uint32_t flags = IODP_IOAS_MAP_FIXED_IOVA;
	if (m.flags & kMapRead)
		flags |= IODP_IOAS_MAP_READABLE;
	if (m.flags & kMapWrite)
		flags |= IODP_IOAS_MAP_WRITEABLE;
	Result<uint64_t> r = ctx_.ioas_map(*id, flags, m.iova,
					   reinterpret_cast<void *>(static_cast<uintptr_t>(m.vaddr)),
					   m.size);
	return r ? Status{} : r.status();
}

Status VfioCompat::unmap_dma(void *arg)
{
	vfio_dma_unmap u;
	std::memcpy(&u, arg, sizeof(u));
	if (u.argsz < sizeof(u) || (u.flags & ~kUnmapFlagAll))
		return Status::error(-EINVAL, "VFIO_IOMMU_UNMAP_DMA: argsz {} or flags {:#x}",
				     u.argsz, u.flags);
	Result<uint32_t> id = compat_ioas();
	if (!id)
		return id.status();
	uint64_t iova = u.iova, length = u.size;
	if (u.flags & kUnmapFlagAll) {
		if (u.iova != 0 || u.size != 0)
			return Status::error(-EINVAL, "VFIO_IOMMU_UNMAP_DMA: UNMAP_FLAG_ALL "
					     "takes iova and size 0");
		iova = 0;
		length = UINT64_MAX;
	}
	/* type1 unmaps of nothing succeed with size 0 (iommufd's IOAS_UNMAP is ENOENT). */
	const uint64_t last = length == 0 ? iova : iova + (length - 1);
	bool any = false, huge_pages = true;
	if (Inspector look(ctx_); const Ioas *ioas = look.find_as<Ioas>(*id)) {
		for (const auto &[start, m] : ioas->mappings)
			if (start <= last && start + (m.length - 1) >= iova)
				any = true;
		huge_pages = ioas->huge_pages;
	}
	/*
	 * Type1 (v1) turned large pages off: as the kernel, cut the mappings at both ends of
	 * the range first, so that a part of a mapping can go (type1v2 refuses, ENOENT).
	 */
	if (any && length != 0 && !huge_pages && !(u.flags & kUnmapFlagAll)) {
		if (Status s = ctx_.ioas_cut(*id, last); !s)
			return s;
		if (iova != 0)
			if (Status s = ctx_.ioas_cut(*id, iova - 1); !s)
				return s;
	}
	uint64_t unmapped = 0;
	if (any && length != 0) {
		Result<uint64_t> r = ctx_.ioas_unmap(*id, iova, length);
		if (!r)
			return r.status();
		unmapped = *r;
	}
	u.size = unmapped;
	std::memcpy(arg, &u, sizeof(u));
	return {};
}

Result<int> VfioCompat::command(unsigned long cmd, void *arg)
{
	switch (cmd) {
	case kVfioIoas: {
		iommu_vfio_ioas k{};
		if (arg == nullptr)
			return Status::error(-EFAULT, "IOMMU_VFIO_IOAS: the argument is NULL");
		std::memcpy(&k.size, arg, sizeof(k.size));
		if (k.size < sizeof(k))
			return Status::error(-EINVAL, "IOMMU_VFIO_IOAS: size {} is below {}",
					     k.size, sizeof(k));
		std::memcpy(&k, arg, sizeof(k));
		for (size_t i = sizeof(k); i < k.size; i++)
			if (static_cast<const unsigned char *>(arg)[i] != 0)
				return Status::error(-E2BIG, "IOMMU_VFIO_IOAS: byte {} of {} is "
						     "not zero", i, k.size);
		if (Status s = vfio_ioas(k); !s)
			return s;
		std::memcpy(arg, &k, sizeof(k));
		return 0;
	}
	case kGetApiVersion:
		return kApiVersion;
	case kCheckExtension:
		return check_extension(reinterpret_cast<uintptr_t>(arg));
	case kSetIommu:
		if (Status s = set_iommu(reinterpret_cast<uintptr_t>(arg)); !s)
			return s;
		return 0;
	case kIommuGetInfo:
	case kIommuMapDma:
	case kIommuUnmapDma: {
		if (arg == nullptr)
			return Status::error(-EFAULT, "VFIO ioctl {:#x}: the argument is NULL", cmd);
		Status s = cmd == kIommuGetInfo ? get_info(arg)
			   : cmd == kIommuMapDma ? map_dma(arg)
						 : unmap_dma(arg);
		if (!s)
			return s;
		return 0;
	}
	default:
		return Status::error(-ENOTTY, "iodp_ioctl: unknown command {:#x}", cmd);
	}
}

} // namespace iodp::ctl
