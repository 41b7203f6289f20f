/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A guest's invalidation queue, as a VMM's vIOMMU reads it: raw VT-d queued-invalidation
 * descriptors (IODP_HWPT_INVALIDATE_DATA_VTD_QI) or SMMUv3 commands of the command queue
 * (IODP_HWPT_INVALIDATE_DATA_SMMUV3_CMDQ), applied to one nested HWPT.
 *
 * Unlike an iommufd invalidation array, a queue carries its own completion points: an
 * inv_wait descriptor or a CMD_SYNC, whose status / MSI write (or the call returning,
 * without one) tells the guest that everything before it is done. So the array is taken in
 * segments, each ending at such a wait: the segment's invalidations are applied, the
 * HWPT's observers (a shadow in a kernel IOMMU, a hardware-nested HWPT) re-walk or are
 * told what it named, iodp's workers pass a grace period, and only then is the wait's
 * data written to guest memory. A failure anywhere stops the queue before that wait: the
 * guest never sees a completion for a view the kernel does not hold.
 */
#include "impl.h"
#include "model.h"

#include <iodp/iodp.h>

#include <cerrno>
#include <cstring>
#include <endian.h>

namespace iodp::ctl {

namespace {

/** What differs between the two queues. */
struct Queue {
	IommuModel model;
	uint32_t nested_data_type;
	const char *name;
	Status (*decode)(const uint64_t qw[2], inval::Descriptor *out);
};

Status decode_vtd(const uint64_t qw[2], inval::Descriptor *out)
{
	return inval::decode_vtd_qi(qw, out);
}

/** The whole command set (a guest's own queue); CMD_SYNC's MSI write, when it asks for one. */
Status decode_smmu(const uint64_t qw[2], inval::Descriptor *out)
{
	if (Status s = inval::decode_smmuv3_cmd(qw, false, 0, out); !s)
		return s;
	if (out->op == inval::Op::sync) {
		// CS = SIG_IRQ with an MSIAddr: the SMMU writes MSIData there on completion
		// (Linux's arm-smmu-v3 polls its queue entry for it).
		const bool irq = ((qw[0] >> 12) & 3) == 1;
		out->sync_token = qw[0] >> 32;
		out->sync_addr = irq ? qw[1] & 0x000ffffffffffffcull : 0;
	}
	return {};
}

constexpr Queue kVtdQueue = {IommuModel::vtd, IODP_HWPT_DATA_VTD_S1,
			     "VT-d queued-invalidation descriptors", decode_vtd};
constexpr Queue kSmmuQueue = {IommuModel::smmuv3, IODP_HWPT_DATA_ARM_SMMUV3,
			      "SMMUv3 command-queue commands", decode_smmu};

/** The nested HWPT @p hwpt_id of @p q's model, or why it takes no such queue. */
Result<HwptNested *> qi_hwpt(Ctx::Impl &impl, uint32_t hwpt_id, const Queue &q)
{
	Result<HwptNested *> hr = impl.get_invalidation_target(hwpt_id);
	if (!hr)
		return hr.status();
	HwptNested *h = *hr;
	if (h->model != q.model || h->data_type != q.nested_data_type)
		return Status::error(-EINVAL, "hwpt {} is a {} nested HWPT (data type {:#x}): {} "
				     "do not apply to it", hwpt_id, model_ops(h->model).name,
				     h->data_type, q.name);
	return h;
}

/**
 * Write the wait's 32-bit status / MSI data at guest-physical @p gpa through @p parent's stage 2
 * (the VMM's view of guest memory: the VT-d unit's status write and the SMMU's MSI
 * write are not translated by the guest's stage 1).
 */
Status write_status(const HwptPaging &parent, uint64_t gpa, uint32_t data)
{
	const GuestMemory &mem = *parent.host_map;
	Result<pgtable::Translation> x = pgtable::make_translation(mem, parent.config());
	if (!x)
		return x.status();
	const pgtable::WalkResult w = pgtable::walk(*x, gpa, pgtable::kAccessWrite);
	if (!w.ok())
		return Status::error(-EFAULT, "guest-physical {:#x} is not writable through "
				     "stage 2 (hwpt {})", gpa, parent.id);
	const uint32_t le = htole32(data);
	if (!mem.write(w.out, &le, sizeof(le)))
		return Status::error(-EFAULT, "guest-physical {:#x} is outside the memory of "
				     "hwpt {}'s IOAS", gpa, parent.id);
	return {};
}

/** A hardware-nested kernel takes VTD_S1 entries: the one a decoded descriptor stands for. */
iodp_hwpt_vtd_s1_invalidate vtd_s1_entry(const inval::Descriptor &d, bool whole)
{
	if (whole)
		return {0, UINT64_MAX, 0, 0};
	return {d.addr, d.size >> 12, d.leaf_only ? IODP_VTD_INV_FLAGS_LEAF : 0u, 0};
}

} // namespace

Status Ctx::Impl::invalidate_queue(uint32_t hwpt_id, uint32_t data_type, const void *entries,
				   uint32_t entry_len, uint32_t entry_num, uint32_t *handled)
{
	*handled = 0;
	const Queue &q = data_type == IODP_HWPT_INVALIDATE_DATA_VTD_QI ? kVtdQueue : kSmmuQueue;
	const bool vtd = q.model == IommuModel::vtd;
	constexpr uint32_t known = 16;
	if (entry_num > 0 && entry_len < known)
		return Status::error(-EINVAL, "hwpt {} invalidate: entry_len {} is shorter than "
				     "a 16-byte descriptor", hwpt_id, entry_len);
	const auto *base = static_cast<const std::byte *>(entries);
	uint32_t i = 0;
	do {
		bool wait = false;
		inval::Descriptor w;
		{
			LockThenSyncWorkers call(*this);
			Result<HwptNested *> hr = qi_hwpt(*this, hwpt_id, q);
			if (!hr)
				return hr.status();
			HwptNested &h = **hr;
			std::vector<IovaRange> touched;
			std::vector<iodp_hwpt_vtd_s1_invalidate> fwd;
			std::vector<iodp_hwpt_arm_smmuv3_invalidate> fwd_smmu;
			bool whole = false;
			Status err;
			for (; i < entry_num; i++) {
				const std::byte *e = base + size_t{i} * entry_len;
				bool clean = true;
				for (uint32_t b = known; b < entry_len && clean; b++)
					clean = e[b] == std::byte{0};
				if (!clean) {
					err = Status::error(-E2BIG, "hwpt {} invalidate entry {}: bytes "
							    "past the 16-byte descriptor are not "
							    "zero", hwpt_id, i);
					break;
				}
				uint64_t qw[2];
				std::memcpy(qw, e, sizeof(qw));
				inval::Descriptor d;
				if (Status s = q.decode(qw, &d); !s) {
					err = Status::error(s.code(), "hwpt {} invalidate entry {}: {}",
							    hwpt_id, i, s.message());
					break;
				}
				if (d.op == inval::Op::sync) {
					wait = true;
					w = d;
					break;
				}
				// The guest's DID / VMID names this HWPT (the VMM routed the queue
				// here): iodp's tag for it is the HWPT (VT-d) or its parent (SMMUv3's
				// VMID). VT-d's PASID 0 is the RID's, which iodp tags with no PASID:
				// every PASID of the HWPT (more than asked, never less). A global
				// descriptor covers the HWPT.
				const uint32_t tag = vtd ? h.id : h.parent->id;
				if (d.match & inval::kMatchDomain) {
					d.domain = tag;
					if (vtd)
						d.match = static_cast<uint8_t>(d.match & ~inval::kMatchPasid);
				} else if (d.targets & (inval::kTargetIotlb | inval::kTargetWalkCache)) {
					d.match = static_cast<uint8_t>(d.match | inval::kMatchDomain);
					d.domain = tag;
				}
				if (d.targets & (inval::kTargetIotlb | inval::kTargetWalkCache |
						 inval::kTargetConfig)) {
					const bool range = (d.match & inval::kMatchRange) &&
							   !(d.targets & inval::kTargetConfig);
					if (range)
						touched.push_back({d.addr, d.addr + (d.size - 1)});
					else
						whole = true;
					if (vtd)
						fwd.push_back(vtd_s1_entry(d, !range));
				}
				if (!vtd) {
					// A nesting kernel takes the commands iommufd passes through.
					inval::Descriptor ignored;
					if (inval::decode_smmuv3_cmd(qw, true, 0, &ignored))
						fwd_smmu.push_back({{qw[0], qw[1]}});
				}
				if (d.targets & inval::kTargetConfig) {
					// Guest SIDs are not iodp device ids: every route through h.
					reserve(2, 1, 0);
					invalidate_domain(h.id, inval::kTargetConfig);
					d.targets &= static_cast<uint8_t>(~inval::kTargetConfig);
				}
				if (d.targets & inval::kTargetDeviceTlb) {
					d.match = static_cast<uint8_t>(
						(d.match & ~(inval::kMatchDevice | inval::kMatchPasid)) |
						inval::kMatchDomain);
					d.domain = h.id;
				}
				if (d.targets != 0)
					notify(d);
				*handled = i + 1;
			}
			// The segment's observers: told (a nesting kernel) and re-walked (a shadow)
			// once, before the wait that ends it can complete.
			Status shown;
			for (NestedObserver *obs : h.observers) {
				const size_t n = vtd ? fwd.size() : fwd_smmu.size();
				if (n == 0)
					break;
				Status f = vtd ? obs->forward(IODP_HWPT_INVALIDATE_DATA_VTD_S1,
							      fwd.data(), sizeof(fwd[0]),
							      static_cast<uint32_t>(n))
					       : obs->forward(IODP_HWPT_INVALIDATE_DATA_ARM_SMMUV3,
							      fwd_smmu.data(), sizeof(fwd_smmu[0]),
							      static_cast<uint32_t>(n));
				if (!f && shown)
					shown = Status::error(f.code(), "hwpt {}: {}", hwpt_id,
							      f.message());
			}
			if (!h.observers.empty() && (whole || !touched.empty()))
				if (Status c = observe_changed(h, whole ? observed_scope(h) : touched);
				    !c && shown)
					shown = c;
			if (!err)
				return err;
			if (!shown)
				return Status::error(shown.code(), "{} (entries before {} applied; the "
						     "queue stops there)", shown.message(), i);
			if (!wait)
				return {};
			notify(w); // iodp's workers pass a grace period as the lock goes
		}
		// The wait completes: its status write, after the workers' grace period.
		if (w.sync_addr != 0) {
			std::lock_guard g(lock);
			Result<HwptNested *> hr = qi_hwpt(*this, hwpt_id, q);
			if (!hr)
				return hr.status();
			if (Status s = write_status(*(*hr)->parent, w.sync_addr,
						    static_cast<uint32_t>(w.sync_token));
			    !s)
				return Status::error(s.code(), "hwpt {} invalidate entry {}: {} "
						     "write: {}", hwpt_id, i,
						     vtd ? "inv_wait status" : "CMD_SYNC MSI",
						     s.message());
		}
		*handled = ++i;
	} while (i < entry_num);
	return {};
}

} // namespace iodp::ctl
