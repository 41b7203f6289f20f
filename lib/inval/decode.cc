/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/inval.h>

#include <cerrno>
#include <cinttypes>
#include <bit>
#include <cstdio>

namespace iodp::inval {

namespace {

constexpr uint64_t field(uint64_t w, unsigned hi, unsigned lo)
{
	return (w >> lo) & (~0ull >> (63 - (hi - lo)));
}

/** [addr, addr + size) with the end clamped at the top of the address space. */
void set_range(Descriptor *d, uint64_t addr, uint64_t size)
{
	d->match |= kMatchRange;
	d->addr = addr;
	d->size = (size == 0 || addr + (size - 1) < addr) ? (0 - addr) : size;
	if (d->size == 0) // addr 0 and the whole space: no range at all
		d->match &= static_cast<uint8_t>(~kMatchRange);
}

} // namespace

std::string describe(const Descriptor &d)
{
	std::string s = d.op == Op::sync ? "sync" : "";
	if (d.op == Op::invalidate) {
		static const char *const names[] = {"iotlb", "walk", "config", "devtlb"};
		for (int i = 0; i < 4; i++) {
			if (!(d.targets & (1u << i)))
				continue;
			if (!s.empty())
				s.push_back('+');
			s.append(names[i]);
		}
		if (s.empty())
			s = "nothing";
	}
	char buf[160];
	if (d.match & kMatchDomain)
		s += (std::snprintf(buf, sizeof(buf), " domain=%u", d.domain), buf);
	if (d.match & kMatchAsid)
		s += (std::snprintf(buf, sizeof(buf), " asid=%u", d.asid), buf);
	if (d.match & kMatchPasid)
		s += (std::snprintf(buf, sizeof(buf), " pasid=%u", d.pasid), buf);
	if (d.match & kMatchDevice)
		s += (std::snprintf(buf, sizeof(buf), " device=%#x", d.device), buf);
	if (d.match & kMatchRange)
		s += (std::snprintf(buf, sizeof(buf), " %s=0x%" PRIx64 "+0x%" PRIx64,
				    (d.match & kMatchStage2) ? "ipa" : "range", d.addr, d.size),
		      buf);
	if (d.op == Op::invalidate && d.match == 0)
		s += " all";
	if (d.leaf_only)
		s += " leaf";
	if (d.granule_shift)
		s += (std::snprintf(buf, sizeof(buf), " granule=%u", 1u << d.granule_shift), buf);
	if (d.level >= 0)
		s += (std::snprintf(buf, sizeof(buf), " level=%d", d.level), buf);
	return s;
}

Status decode_iommufd_vtd_s1(uint64_t addr, uint64_t npages, uint32_t flags,
			     uint32_t reserved, uint32_t domain, Descriptor *out)
{
	constexpr uint32_t kLeaf = 1;
	if ((flags & ~kLeaf) != 0)
		return Status::error(-EOPNOTSUPP, "vtd_s1 invalidation: unknown flags {:#x}",
				     flags & ~kLeaf);
	if (reserved != 0)
		return Status::error(-EOPNOTSUPP, "vtd_s1 invalidation: __reserved is {:#x}, not 0",
				     reserved);
	if ((addr & 0xfff) != 0)
		return Status::error(-EINVAL, "vtd_s1 invalidation: addr 0x{:x}"
				     " is not 4 KiB aligned", addr);
	if (npages == UINT64_MAX && addr != 0)
		return Status::error(-EINVAL, "vtd_s1 invalidation: npages U64_MAX (everything) "
				     "needs addr 0, not 0x{:x}", addr);
	if (npages == 0)
		return Status::error(-EINVAL, "vtd_s1 invalidation: npages is 0");
	Descriptor d;
	d.targets = kTargetIotlb | kTargetWalkCache | kTargetDeviceTlb;
	d.match = kMatchDomain;
	d.domain = domain;
	d.leaf_only = (flags & kLeaf) != 0;
	if (npages != UINT64_MAX)
		set_range(&d, addr, npages > (UINT64_MAX >> 12) ? 0 : npages << 12);
	*out = d;
	return {};
}

Status decode_smmuv3_cmd(const uint64_t cmd[2], bool iommufd_subset, uint32_t vmid,
			 Descriptor *out)
{
	using namespace smmuv3;
	const uint64_t w0 = cmd[0], w1 = cmd[1];
	const uint8_t op = static_cast<uint8_t>(w0 & 0xff);
	const uint32_t sid = static_cast<uint32_t>(field(w0, 63, 32));
	const uint32_t ssid = static_cast<uint32_t>(field(w0, 31, 12));
	const bool leaf = (w1 & 1) != 0;

	if (iommufd_subset) {
		switch (op) {
		case kTlbiNsnhAll: case kTlbiNhVa: case kTlbiNhVaa: case kTlbiNhAll:
		case kTlbiNhAsid: case kAtcInv: case kCfgiCd: case kCfgiCdAll:
			break;
		default:
			return Status::error(-EIO, "smmuv3 command opcode {:#x} is not accepted "
					     "from a guest", op);
		}
	}
	Descriptor d;
	const uint32_t cmd_vmid = iommufd_subset ? vmid : static_cast<uint32_t>(field(w0, 47, 32));
	const uint32_t asid = static_cast<uint32_t>(field(w0, 63, 48));

	// TLBI by address: a single address (TG 0) or (NUM+1) * 2^SCALE granules.
	auto tlbi_range = [&](uint64_t va_mask) -> Status {
		const unsigned tg = static_cast<unsigned>(field(w1, 11, 10));
		const unsigned ttl = static_cast<unsigned>(field(w1, 9, 8));
		const uint64_t va = w1 & va_mask & ~0xfffull;
		d.leaf_only = leaf;
		if (tg == 0) {
			// Any leaf containing va overlaps its 4 KiB page.
			set_range(&d, va, 4096);
			return {};
		}
		static const uint8_t kShift[] = {0, 12, 14, 16};
		const unsigned shift = kShift[tg];
		const uint64_t num = field(w0, 16, 12), scale = field(w0, 24, 20);
		if (scale + shift >= 64)
			return Status::error(-EINVAL, "smmuv3 TLBI: SCALE {} is too large",
					     scale);
		const uint64_t granules = (num + 1) << scale;
		const uint64_t base = va & ~((1ull << shift) - 1);
		set_range(&d, base, granules > (UINT64_MAX >> shift) ? 0 : granules << shift);
		d.granule_shift = static_cast<uint8_t>(shift);
		if (ttl != 0)
			d.level = static_cast<int8_t>(ttl);
		return {};
	};

	switch (op) {
	case kCfgiSte:
		d.targets = kTargetConfig;
		d.match = kMatchDevice;
		d.device = sid;
		break;
	case kCfgiAll:
		d.targets = kTargetConfig;
		break;
	case kCfgiCd:
		d.targets = kTargetConfig;
		d.match = kMatchDevice | kMatchPasid;
		d.device = sid;
		d.pasid = ssid;
		d.leaf_only = leaf;
		break;
	case kCfgiCdAll:
		d.targets = kTargetConfig;
		d.match = kMatchDevice;
		d.device = sid;
		break;
	case kTlbiNhAll:
		d.targets = kTargetIotlb | kTargetWalkCache;
		d.match = kMatchDomain;
		d.domain = cmd_vmid;
		break;
	case kTlbiNhAsid:
		d.targets = kTargetIotlb | kTargetWalkCache;
		d.match = kMatchDomain | kMatchAsid;
		d.domain = cmd_vmid;
		d.asid = asid;
		break;
	case kTlbiNhVa:
	case kTlbiNhVaa:
		d.targets = kTargetIotlb | kTargetWalkCache;
		d.match = kMatchDomain | (op == kTlbiNhVa ? kMatchAsid : 0);
		d.domain = cmd_vmid;
		d.asid = asid;
		if (Status s = tlbi_range(~0ull); !s)
			return s;
		break;
	case kTlbiS12Vmall:
		d.targets = kTargetIotlb | kTargetWalkCache;
		d.match = kMatchDomain;
		d.domain = cmd_vmid;
		break;
	case kTlbiS2Ipa:
		d.targets = kTargetIotlb | kTargetWalkCache;
		d.match = kMatchDomain | kMatchStage2;
		d.domain = cmd_vmid;
		if (Status s = tlbi_range((1ull << 52) - 1); !s)
			return s;
		break;
	case kTlbiNsnhAll:
		d.targets = kTargetIotlb | kTargetWalkCache;
		// From a guest this means "everything of mine", never everyone's.
		if (iommufd_subset) {
			d.match = kMatchDomain;
			d.domain = vmid;
		}
		break;
	case kAtcInv: {
		d.targets = kTargetDeviceTlb;
		// SSID validity is not in every revision's field set: matching the device only
		// over-invalidates, which is allowed; matching a wrong PASID would not be.
		d.match = kMatchDevice;
		d.device = sid;
		const unsigned size = static_cast<unsigned>(field(w1, 5, 0));
		if (size < 52) {
			const uint64_t span = 4096ull << size;
			set_range(&d, (w1 & ~0xfffull) & ~(span - 1), span);
		}
		break;
	}
	case kCmdSync:
		d.op = Op::sync;
		d.targets = 0;
		d.sync_token = w0 >> 12;
		break;
	case kPrefetchCfg:
	case kPriResp:
	case kResume:
		return Status::error(-EOPNOTSUPP, "smmuv3 command opcode {:#x} is not an "
				     "invalidation", op);
	default:
		return Status::error(-EINVAL, "smmuv3 command opcode {:#x} is unknown", op);
	}
	*out = d;
	return {};
}

/* VT-d invalidation queue ------------------------------------------------------------------ */

namespace {

/** Page-selective range: 2^am 4 KiB pages at addr, which must be aligned to that size. */
Status vtd_page_range(uint64_t qw1, const char *what, Descriptor *d)
{
	const unsigned am = static_cast<unsigned>(qw1 & 0x3f);
	const uint64_t addr = qw1 & ~0xfffull;
	if (am > 52)
		return Status::error(-EINVAL, "vt-d {}: AM {} is larger than the address space",
				     what, am);
	const uint64_t size = 4096ull << am;
	if (addr & (size - 1))
		return Status::error(-EINVAL, "vt-d {}: address 0x{:x} is not aligned to "
				     "its 2^{} pages", what, addr, am);
	set_range(d, addr, size);
	d->leaf_only = (qw1 >> 6) & 1; // IH
	return {};
}

/** ATS invalidation size: with S set, the trailing ones above bit 12 give the size. */
void ats_range(uint64_t qw1, bool s, Descriptor *d)
{
	uint64_t addr = qw1 & ~0xfffull;
	if (!s) {
		set_range(d, addr, 4096);
		return;
	}
	const unsigned ones = static_cast<unsigned>(std::countr_one(addr >> 12));
	if (ones >= 51) // all ones: the whole space
		return;
	const uint64_t size = 8192ull << ones;
	set_range(d, addr & ~(size - 1), size);
}

} // namespace

Status decode_vtd_qi(const uint64_t desc[2], Descriptor *out)
{
	using namespace vtd;
	const uint64_t qw0 = desc[0], qw1 = desc[1];
	const uint8_t type = static_cast<uint8_t>((qw0 & 0xf) | (((qw0 >> 9) & 7) << 4));
	const unsigned g = static_cast<unsigned>(field(qw0, 5, 4));
	const uint32_t did = static_cast<uint32_t>(field(qw0, 31, 16));
	const uint32_t pasid = static_cast<uint32_t>(field(qw0, 51, 32));
	Descriptor d;
	switch (type) {
	case kContextCache:
		d.targets = kTargetConfig;
		if (g == 0)
			return Status::error(-EINVAL,
					     "vt-d context-cache: granularity 0 is reserved");
		if (g >= 2) {
			d.match = kMatchDomain;
			d.domain = did;
		}
		if (g == 3) {
			d.match |= kMatchDevice;
			d.device = static_cast<uint32_t>(field(qw0, 47, 32));
		}
		break;
	case kIotlb:
		d.targets = kTargetIotlb | kTargetWalkCache;
		if (g == 0)
			return Status::error(-EINVAL, "vt-d iotlb: granularity 0 is reserved");
		if (g >= 2) {
			d.match = kMatchDomain;
			d.domain = did;
		}
		if (g == 3)
			if (Status s = vtd_page_range(qw1, "iotlb", &d); !s)
				return s;
		break;
	case kPasidIotlb:
		d.targets = kTargetIotlb | kTargetWalkCache;
		if (g < 2)
			return Status::error(-EINVAL,
					     "vt-d pasid-iotlb: granularity {} is reserved", g);
		d.match = kMatchDomain | kMatchPasid;
		d.domain = did;
		d.pasid = pasid;
		if (g == 3)
			if (Status s = vtd_page_range(qw1, "pasid-iotlb", &d); !s)
				return s;
		break;
	case kPasidCache:
		d.targets = kTargetConfig;
		if (g == 2)
			return Status::error(-EINVAL,
					     "vt-d pasid-cache: granularity 2 is reserved");
		if (g != 3) {
			d.match = kMatchDomain;
			d.domain = did;
		}
		if (g == 1) {
			d.match |= kMatchPasid;
			d.pasid = pasid;
		}
		break;
	case kDeviceTlb:
		d.targets = kTargetDeviceTlb;
		d.match = kMatchDevice;
		d.device = static_cast<uint32_t>(field(qw0, 47, 32));
		ats_range(qw1, qw1 & 1, &d);
		break;
	case kPasidDeviceTlb:
		d.targets = kTargetDeviceTlb;
		d.match = kMatchDevice | kMatchPasid;
		d.device = static_cast<uint32_t>(field(qw0, 31, 16));
		d.pasid = pasid;
		ats_range(qw1, (qw1 >> 11) & 1, &d);
		break;
	case kInvWait:
		d.op = Op::sync;
		d.targets = 0;
		d.sync_token = qw0 >> 32;                        // status data
		d.sync_addr = ((qw0 >> 5) & 1) ? qw1 & ~3ull : 0; // SW: write status data
		break;
	case kIec:
		return Status::error(-EOPNOTSUPP, "vt-d descriptor type {:#x} (interrupt entry "
				     "cache) is not a translation invalidation", type);
	default:
		return Status::error(-EINVAL, "vt-d descriptor type {:#x} is unknown", type);
	}
	*out = d;
	return {};
}

} // namespace iodp::inval
