/* SPDX-License-Identifier: BSD-3-Clause */
#include "ext.h"
#include "impl.h"
#include "model.h"

#include <iodp/smmuv3.h>
#include <iodp/vtd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>

namespace iodp::ctl {

using pgtable::Format;

namespace {

constexpr uint32_t kPagingFlags = IODP_HWPT_ALLOC_NEST_PARENT | IODP_HWPT_ALLOC_DIRTY_TRACKING |
				  IODP_HWPT_FAULT_ID_VALID | IODP_HWPT_ALLOC_PASID;
constexpr uint32_t kNestedFlags = IODP_HWPT_FAULT_ID_VALID | IODP_HWPT_ALLOC_PASID;

} // namespace

Status Ctx::Impl::check_fault_id(uint32_t flags, uint32_t fault_id) const
{
	if (!(flags & IODP_HWPT_FAULT_ID_VALID))
		return {};
	Result<FaultQueue *> q = get_fault_queue(fault_id);
	return q ? Status() : q.status();
}

Result<HwptPaging *> Ctx::Impl::make_paging(Device *dev, Ioas *ioas, uint32_t flags,
					    uint32_t fault_id,
					    std::optional<pgtable::TableConfig> fmt)
{
	if (flags & ~kPagingFlags)
		return Status::error(-EOPNOTSUPP, "hwpt alloc: unknown flags {:#x}",
				     flags & ~kPagingFlags);
	if (Status s = check_fault_id(flags, fault_id); !s)
		return s;
	pgtable::TableConfig cfg = fmt		       ? *fmt
				   : dev->paging_format ? *dev->paging_format
				   : pgtable::table_config(model_ops(dev->model).paging_format);
	if (!model_ops(dev->model).walks(cfg.format))
		return Status::error(-EINVAL, "hwpt alloc: device {} is behind a {} IOMMU, which "
				     "cannot walk {} tables", dev->name.c_str(), model_name(dev->model),
				     pgtable::format_name(cfg.format).data());
	if ((flags & IODP_HWPT_ALLOC_NEST_PARENT) && pgtable::format_stage(cfg.format) != 2)
		return Status::error(-EINVAL, "hwpt alloc: a NEST_PARENT table must be a second "
				     "stage, not {}", pgtable::format_name(cfg.format).data());

	const uint32_t id = alloc_id();
	auto h = std::make_unique<HwptPaging>(id);
	h->flags = flags;
	h->fault_id = (flags & IODP_HWPT_FAULT_ID_VALID) ? fault_id : 0;
	h->model = dev->model;
	h->ioas = ioas;
	Result<pgtable::Stage> st = pgtable::make_stage(cfg);
	if (!st)
		return Status::error(st.status().code(), "hwpt alloc: {}",
				     st.status().message());
	const uint64_t granule = 1ull << st->granule_shift;
	if ((flags & IODP_HWPT_ALLOC_DIRTY_TRACKING) &&
	    (cfg.format == Format::arm_s1 || cfg.format == Format::arm_s2))
		return Status::error(-EOPNOTSUPP, "hwpt alloc: {} tables have no dirty bit iodp "
				     "can track", pgtable::format_name(cfg.format).data());
	for (const auto &[iova, m] : ioas->mappings) {
		const uint64_t aperture = st->ias >= 64 ? UINT64_MAX : (1ull << st->ias) - 1;
		if (m.iova + (m.length - 1) > aperture)
			return Status::error(-EADDRINUSE, "hwpt alloc: ioas {} maps 0x{:x}"
					     "+0x{:x}, beyond the {}-bit input of {}",
					     ioas->id, m.iova, m.length, st->ias,
					     pgtable::format_name(cfg.format).data());
		// Mapped before a table came (alignment 1): the kernel's EADDRINUSE.
		if ((m.iova | m.length | reinterpret_cast<uintptr_t>(m.host)) & (granule - 1))
			return Status::error(-EADDRINUSE, "hwpt alloc: ioas {} mapping 0x{:x}"
					     "+0x{:x} is not aligned to the 0x{:x}"
					     " granule", ioas->id, m.iova, m.length, granule);
	}
	Result<GuestRam> ram = GuestRam::allocate(this->cfg.table_pool_bytes);
	if (!ram)
		return Status::error(-ENOMEM, "hwpt alloc: no memory for the table pool: {}",
				     ram.status().message());
	h->pool_ram = std::move(*ram);
	h->pool = pgtable::TablePool(reinterpret_cast<uintptr_t>(h->pool_ram.data()),
				     h->pool_ram.data(), h->pool_ram.size(),
				     st->table_page_bytes());
	h->pool.set_deferred(true); // freed pages wait out a grace period (Impl::LockThenSyncWorkers)
	Result<pgtable::TableBuilder> tb = pgtable::TableBuilder::create(cfg, &h->pool);
	if (!tb)
		return Status::error(tb.status().code(), "hwpt alloc: {}",
				     tb.status().message());
	h->table = std::move(*tb);
	h->leaf_cap = dev->paging_max_leaf;
	h->table.set_max_leaf(ioas->huge_pages ? h->leaf_cap : granule);
	for (const auto &[iova, m] : ioas->mappings)
		if (Status s = table_map(*h, m); !s)
			return s; // the table and its pool go with h
	// Everything that allocates before anything outside h changes.
	make_host_map(*h);
	ioas->hwpts.reserve(ioas->hwpts.size() + 1);
	HwptPaging *raw = h.get();
	ObjectNode node = object_node(std::move(h));
	ioas->hwpts.push_back(raw);
	ioas->users++;
	if (raw->fault_id != 0)
		find(raw->fault_id)->users++;
	objects.insert(std::move(node));
	return raw;
}

Result<uint32_t> Ctx::hwpt_alloc_paging(uint32_t dev_id, uint32_t ioas_id, uint32_t flags,
					uint32_t fault_id, std::optional<pgtable::TableConfig> fmt)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Device *> dev = impl_->get_device(dev_id);
	if (!dev)
		return dev.status();
	Object *pt = impl_->find(ioas_id);
	if (pt != nullptr && pt->type != ObjType::ioas)
		return Status::error(-EINVAL, "hwpt alloc: pt_id {} is a {}; a paging HWPT is "
				     "allocated on an ioas", ioas_id, obj_type_name(pt->type));
	Result<Ioas *> ioas = impl_->get_ioas(ioas_id);
	if (!ioas)
		return ioas.status();
	Result<HwptPaging *> h = impl_->make_paging(*dev, *ioas, flags, fault_id, fmt);
	if (!h)
		return h.status();
	return (*h)->id;
}

/**
 * Checks shared by both nested kinds, in the order the errors are reported: the device, its
 * IOMMU model, the flags and fault queue, the parent. Returns the parent.
 */
static Result<HwptPaging *> nested_parent(Ctx::Impl &impl, uint32_t dev_id, uint32_t parent_id,
					  uint32_t flags, uint32_t fault_id, IommuModel model)
{
	Result<Device *> dev = impl.get_device(dev_id);
	if (!dev)
		return dev.status();
	if ((*dev)->model != model)
		return Status::error(-EOPNOTSUPP, "hwpt alloc: device {} is behind a{} {} IOMMU; "
				     "{} data needs {}", (*dev)->name.c_str(),
				     (*dev)->model == IommuModel::smmuv3 ? "n" : "",
				     model_name((*dev)->model), model_ops(model).nested_name,
				     model_name(model));
	if (flags & ~kNestedFlags)
		return Status::error(-EOPNOTSUPP, "hwpt alloc: flags {:#x} are not for nested "
				     "HWPTs", flags & ~kNestedFlags);
	if (Status s = impl.check_fault_id(flags, fault_id); !s)
		return s;
	Object *o = impl.find(parent_id);
	if (o == nullptr || o->type == ObjType::device || o->type == ObjType::fault_queue)
		return impl.no_object(parent_id, "hwpt");
	if (o->type != ObjType::hwpt_paging)
		return Status::error(-EINVAL, "hwpt alloc: pt_id {} is a {}; a nested HWPT needs "
				     "a paging HWPT allocated with NEST_PARENT", parent_id,
				     obj_type_name(o->type));
	auto *parent = static_cast<HwptPaging *>(o);
	if (!(parent->flags & IODP_HWPT_ALLOC_NEST_PARENT))
		return Status::error(-EINVAL, "hwpt alloc: hwpt {} was not allocated with "
				     "NEST_PARENT", parent_id);
	// A NEST_PARENT table is a second stage of its model's family (make_paging checks).
	if (parent->model != model)
		return Status::error(-EINVAL, "hwpt alloc: parent hwpt {} ({}) cannot carry this "
				     "stage 1", parent_id,
				     pgtable::format_name(parent->table.stage().format).data());
	return parent;
}

/** The object both nested kinds share; the caller fills in its data. */
static HwptNested *add_nested(Ctx::Impl &impl, HwptPaging *parent, uint32_t flags,
			      uint32_t fault_id, uint32_t data_type)
{
	auto h = std::make_unique<HwptNested>(impl.alloc_id());
	h->flags = flags;
	h->fault_id = (flags & IODP_HWPT_FAULT_ID_VALID) ? fault_id : 0;
	h->model = parent->model;
	h->parent = parent;
	h->data_type = data_type;
	HwptNested *raw = h.get();
	Ctx::Impl::ObjectNode node = Ctx::Impl::object_node(std::move(h)); // allocates first
	parent->users++;
	if (raw->fault_id != 0)
		impl.find(raw->fault_id)->users++;
	impl.objects.insert(std::move(node));
	return raw;
}

Result<uint32_t> Ctx::hwpt_alloc_nested(uint32_t dev_id, uint32_t parent_id, uint32_t flags,
					uint32_t fault_id, const VtdS1Data &data)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<HwptPaging *> parent =
		nested_parent(*impl_, dev_id, parent_id, flags, fault_id, IommuModel::vtd);
	if (!parent)
		return parent.status();
	constexpr uint64_t kKnown = vtd::kS1KnownFlags;
	if (data.flags & ~kKnown)
		return Status::error(-EOPNOTSUPP, "hwpt alloc: vtd_s1 flags {:#x}"
				     " are unknown", data.flags & ~kKnown);
	if (data.addr_width != 48 && data.addr_width != 57)
		return Status::error(-EINVAL, "hwpt alloc: vtd_s1 addr_width {} is not 48 or 57",
				     data.addr_width);
	if (data.pgtbl_addr & 0xfff)
		return Status::error(-EINVAL, "hwpt alloc: vtd_s1 pgtbl_addr 0x{:x}"
				     " is not 4 KiB aligned", data.pgtbl_addr);
	const Format s2 = (*parent)->table.stage().format;
	if (!pgtable::can_nest(Format::x86_64_4l, s2))
		return Status::error(-EINVAL, "hwpt alloc: parent hwpt {} is a {} table, which "
				     "cannot carry a VT-d first stage", parent_id,
				     pgtable::format_name(s2).data());
	HwptNested *h = add_nested(*impl_, *parent, flags, fault_id, IODP_HWPT_DATA_VTD_S1);
	h->vtd = data;
	return h->id;
}

Result<uint32_t> Ctx::hwpt_alloc_nested(uint32_t dev_id, uint32_t parent_id, uint32_t flags,
					uint32_t fault_id, const SmmuV3Data &data)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<HwptPaging *> parent =
		nested_parent(*impl_, dev_id, parent_id, flags, fault_id, IommuModel::smmuv3);
	if (!parent)
		return parent.status();
	using smmuv3::kSte0GuestBits, smmuv3::kSte1GuestBits;
	if ((data.ste[0] & ~kSte0GuestBits) || (data.ste[1] & ~kSte1GuestBits))
		return Status::error(-EIO, "hwpt alloc: STE sets fields a guest may not set "
				     "(word 0 {:#x}, word 1 {:#x})",
				     data.ste[0] & ~kSte0GuestBits, data.ste[1] & ~kSte1GuestBits);
	const smmuv3::Ste ste = smmuv3::Ste::decode(data.ste);
	if (ste.valid && ste.config != smmuv3::kConfigAbort && ste.config != smmuv3::kConfigBypass &&
	    ste.config != smmuv3::kConfigS1)
		return Status::error(-EIO, "hwpt alloc: STE Config {} is not abort (0), bypass (4) "
				     "or stage 1 (5)", ste.config);
	HwptNested *h = add_nested(*impl_, *parent, flags, fault_id, IODP_HWPT_DATA_ARM_SMMUV3);
	h->smmu = data;
	return h->id;
}

Result<uint32_t> Ctx::hwpt_alloc_nested(uint32_t dev_id, uint32_t parent_id, uint32_t flags,
					uint32_t fault_id, const OpaqueS1Data &data)
{
	Impl::LockThenSyncWorkers call(*impl_);
	if (data.data_type == IODP_HWPT_DATA_VTD_S1 || data.data_type == IODP_HWPT_DATA_ARM_SMMUV3)
		return Status::error(-EINVAL, "hwpt alloc: data_type {} is walked by iodp: give "
				     "its data", data.data_type);
	Result<Device *> dev = impl_->get_device(dev_id);
	if (!dev)
		return dev.status();
	Result<HwptPaging *> parent =
		nested_parent(*impl_, dev_id, parent_id, flags, fault_id, (*dev)->model);
	if (!parent)
		return parent.status();
	return add_nested(*impl_, *parent, flags, fault_id, data.data_type)->id;
}

/* Dirty tracking --------------------------------------------------------------------------- */

static Result<HwptPaging *> dirty_hwpt(Ctx::Impl &impl, uint32_t hwpt_id)
{
	Result<Hwpt *> h = impl.get_hwpt(hwpt_id);
	if (!h)
		return h.status();
	if ((*h)->type != ObjType::hwpt_paging)
		return Status::error(-EINVAL, "hwpt {} is nested: the guest tracks its own "
				     "dirty bits", hwpt_id);
	auto *p = static_cast<HwptPaging *>(*h);
	if (!(p->flags & IODP_HWPT_ALLOC_DIRTY_TRACKING))
		return Status::error(-EINVAL, "hwpt {} was not allocated with DIRTY_TRACKING",
				     hwpt_id);
	return p;
}

Status Ctx::hwpt_set_dirty_tracking(uint32_t hwpt_id, bool enable)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<HwptPaging *> h = dirty_hwpt(*impl_, hwpt_id);
	if (!h)
		return h.status();
	if ((*h)->dirty_tracking == enable)
		return {};
	impl_->reserve(1, 1, 0); // the invalidation below publishes routes
	(*h)->dirty_tracking = enable;
	// Routes carry the accessed/dirty setting, and entries cached while it was off would
	// let writes through without marking pages dirty.
	impl_->invalidate_domain(hwpt_id, inval::kTargetAll, inval::kMatchStage2);
	return {};
}

Result<bool> Ctx::hwpt_mark_dirty(uint32_t hwpt_id, uint64_t iova)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<HwptPaging *> h = dirty_hwpt(*impl_, hwpt_id);
	if (!h)
		return h.status();
	if (!(*h)->dirty_tracking)
		return Status::error(-EINVAL, "hwpt {}: dirty tracking is off", hwpt_id);
	// Only the bit changes: nothing cached depends on it (a cached writable entry was
	// cached after the walk that set it, or is dropped when the bit is harvested).
	return (*h)->table.mark_dirty(iova);
}

Status Ctx::hwpt_get_dirty_bitmap(uint32_t hwpt_id, uint64_t iova, uint64_t length,
				  uint64_t page_size, bool no_clear, uint64_t *bitmap)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<HwptPaging *> h = dirty_hwpt(*impl_, hwpt_id);
	if (!h)
		return h.status();
	const uint64_t granule = 1ull << (*h)->table.stage().granule_shift;
	if (page_size < granule || (page_size & (page_size - 1)))
		return Status::error(-EINVAL, "hwpt {} dirty bitmap: page_size 0x{:x}"
				     " is not a power of two >= its 0x{:x} granule",
				     hwpt_id, page_size, granule);
	if (length == 0 || ((iova | length) & (page_size - 1)))
		return Status::error(-EINVAL, "hwpt {} dirty bitmap: 0x{:x}+0x{:x}"
				     " is empty or not aligned to page_size 0x{:x}",
				     hwpt_id, iova, length, page_size);
	if (iova + (length - 1) < iova)
		return Status::error(-EOVERFLOW, "hwpt {} dirty bitmap: 0x{:x}+0x{:x}"
				     " wraps", hwpt_id, iova, length);
	if (bitmap == nullptr)
		return Status::error(-EFAULT, "hwpt {} dirty bitmap: data is NULL", hwpt_id);
	const uint64_t last = iova + (length - 1);
	const uint64_t aperture = (*h)->aperture_last();
	if (iova > aperture)
		return {}; // nothing can be mapped, so nothing is dirty
	const uint64_t span = std::min(last, aperture) - iova + 1;
	bool cleared = false;
	Status s = (*h)->table.harvest_dirty(iova, span, no_clear, [&](uint64_t leaf,
								       uint64_t size) {
		const uint64_t lo = std::max(leaf, iova);
		const uint64_t hi = std::min(leaf + (size - 1), last);
		for (uint64_t p = (lo - iova) / page_size; p <= (hi - iova) / page_size; p++)
			bitmap[p / 64] |= 1ull << (p % 64);
		cleared = !no_clear;
	});
	// A cached writable entry would let the next write skip setting the bit again.
	if (cleared)
		impl_->invalidate_range(**h, iova, span);
	return s;
}

/* Invalidation ----------------------------------------------------------------------------- */

Status invalidate_array_bounds(uint32_t hwpt_id, bool has_data, uint32_t entry_len,
			       uint32_t entry_num)
{
	// So that one call cannot pin a CPU for long (nor, here, make iodp allocate entry_len
	// bytes to copy one entry): the kernel's bounds and errno, checked before the lookup.
	if (entry_num == 0)
		return {};
	if (!has_data)
		return Status::error(-EINVAL, "hwpt {} invalidate: {} entries at data_uptr NULL",
				     hwpt_id, entry_num);
	if (entry_len == 0 || entry_len > kInvalidateEntryLenMax)
		return Status::error(-EINVAL, "hwpt {} invalidate: entry_len {} is not within "
				     "1..{}", hwpt_id, entry_len, kInvalidateEntryLenMax);
	if (entry_num > kInvalidateEntryNumMax)
		return Status::error(-EINVAL, "hwpt {} invalidate: entry_num {} is over the {} "
				     "one call takes", hwpt_id, entry_num, kInvalidateEntryNumMax);
	return {};
}

Result<HwptNested *> Ctx::Impl::get_invalidation_target(uint32_t id) const
{
	Result<Hwpt *> hr = get_hwpt(id);
	if (!hr)
		return hr.status();
	if ((*hr)->type != ObjType::hwpt_nested)
		return Status::error(-ENOENT, "hwpt {} is a paging HWPT: only nested HWPTs take "
				     "cache invalidations (iodp keeps its own tables coherent)", id);
	return static_cast<HwptNested *>(*hr);
}

Status Ctx::hwpt_invalidate(uint32_t hwpt_id, uint32_t data_type, const void *entries,
			    uint32_t entry_len, uint32_t entry_num, uint32_t *handled)
{
	if (data_type == IODP_HWPT_INVALIDATE_DATA_VTD_QI ||
	    data_type == IODP_HWPT_INVALIDATE_DATA_SMMUV3_CMDQ) {
		*handled = 0;
		if (Status s = invalidate_array_bounds(hwpt_id, entries != nullptr, entry_len,
						       entry_num);
		    !s)
			return s;
		return impl_->invalidate_queue(hwpt_id, data_type, entries, entry_len, entry_num,
					       handled);
	}
	Impl::LockThenSyncWorkers call(*impl_);
	*handled = 0;
	if (Status s = invalidate_array_bounds(hwpt_id, entries != nullptr, entry_len, entry_num);
	    !s)
		return s;
	Result<HwptNested *> hr = impl_->get_invalidation_target(hwpt_id);
	if (!hr)
		return hr.status();
	HwptNested *h = *hr;
	const ModelOps &ops = model_ops(h->model);
	if (h->data_type != ops.nested_data_type)
		return Status::error(-EINVAL, "hwpt {}: its stage 1 (data type {:#x}) is not "
				     "walked by iodp and takes no invalidations", hwpt_id,
				     h->data_type);
	if (data_type != ops.invalidate_data_type)
		return Status::error(-EINVAL, "hwpt {} takes {} invalidations, not data_type {}",
				     hwpt_id, ops.invalidate_name, data_type);
	const uint32_t known = ops.invalidate_entry_bytes;
	if (entry_num == 0)
		return {}; // a probe: the type is supported
	if (entry_len < known)
		return Status::error(-EINVAL, "hwpt {} invalidate: entry_len {} is shorter than "
				     "the {}-byte entry", hwpt_id, entry_len, known);
	const auto *base = static_cast<const std::byte *>(entries);
	// What the entries handled name, for the HWPT's observers (shadows in a kernel IOMMU):
	// they re-walk it once, after the whole array, before this call returns.
	std::vector<IovaRange> touched;
	bool whole = false;
	auto shadow = [&](Status s) -> Status {
		Status o;
		for (NestedObserver *obs : h->observers)
			if (Status f = obs->forward(data_type, entries, entry_len, *handled);
			    !f && o)
				o = Status::error(f.code(), "hwpt {}: {}", hwpt_id,
						  f.message());
		if (!h->observers.empty() && (whole || !touched.empty()))
			if (Status c = impl_->observe_changed(
				    *h, whole ? impl_->observed_scope(*h) : touched);
			    !c && o)
				o = c;
		return s ? o : s;
	};
	for (uint32_t i = 0; i < entry_num; i++) {
		const std::byte *e = base + static_cast<size_t>(i) * entry_len;
		for (uint32_t b = known; b < entry_len; b++)
			if (e[b] != std::byte{0})
				return shadow(Status::error(-E2BIG, "hwpt {} invalidate entry {}: "
							    "byte {} past the {} known is not "
							    "zero", hwpt_id, i, b, known));
		inval::Descriptor d;
		Status s = ops.decode_invalidation(*h, e, &d);
		if (!s)
			return shadow(Status::error(s.code(), "hwpt {} invalidate entry {}: {}",
						    hwpt_id, i, s.message()));
		if (d.op != inval::Op::sync &&
		    (d.targets & (inval::kTargetIotlb | inval::kTargetWalkCache |
				  inval::kTargetConfig))) {
			// A range of leaves or tables: that range; anything wider (a domain, an
			// ASID, a PASID, a config, a stage-2 range): the whole input range.
			if ((d.match & inval::kMatchRange) && !(d.match & inval::kMatchStage2) &&
			    !(d.targets & inval::kTargetConfig))
				touched.push_back({d.addr, d.addr + (d.size - 1)});
			else
				whole = true;
		}
		if (d.targets & inval::kTargetConfig) {
			// Guest stream IDs and SSIDs are not iodp's device ids: drop the config
			// of every route through this HWPT (more than asked, never less).
			impl_->reserve(2, 1, 0);
			impl_->invalidate_domain(h->id, inval::kTargetConfig);
			d.targets &= static_cast<uint8_t>(~inval::kTargetConfig);
		}
		if ((d.targets & inval::kTargetDeviceTlb) && (d.match & inval::kMatchDevice)) {
			// ATC_INV names a guest stream ID: report to the devices behind this HWPT.
			d.match = static_cast<uint8_t>((d.match & ~inval::kMatchDevice) |
						       inval::kMatchDomain);
			d.domain = h->id;
		}
		if (d.targets != 0 || d.op == inval::Op::sync)
			impl_->notify(d);
		*handled = i + 1;
	}
	return shadow({});
}

} // namespace iodp::ctl
