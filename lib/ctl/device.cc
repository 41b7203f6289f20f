/* SPDX-License-Identifier: BSD-3-Clause */
#include "impl.h"
#include "model.h"


#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace iodp::ctl {

using pgtable::FaultKind;
using pgtable::Format;

static_assert(static_cast<int>(FaultKind::not_present) == IODP_FAULT_NOT_PRESENT &&
	      static_cast<int>(FaultKind::permission) == IODP_FAULT_PERMISSION &&
	      static_cast<int>(FaultKind::address_size) == IODP_FAULT_ADDRESS_SIZE &&
	      static_cast<int>(FaultKind::reserved_bit) == IODP_FAULT_RESERVED_BIT &&
	      static_cast<int>(FaultKind::bad_table_pointer) == IODP_FAULT_BAD_TABLE_POINTER &&
	      static_cast<int>(FaultKind::access_flag) == IODP_FAULT_ACCESS_FLAG &&
	      static_cast<int>(FaultKind::loop) == IODP_FAULT_LOOP &&
	      static_cast<int>(FaultKind::not_attached) == IODP_FAULT_PASID_NOT_ATTACHED &&
	      static_cast<int>(FaultKind::bad_config) == IODP_FAULT_BAD_CONFIG);
static_assert(pgtable::kAccessRead == IODP_PGFAULT_PERM_READ &&
	      pgtable::kAccessWrite == IODP_PGFAULT_PERM_WRITE &&
	      pgtable::kAccessExec == IODP_PGFAULT_PERM_EXEC &&
	      pgtable::kAccessPriv == IODP_PGFAULT_PERM_PRIV);

IovaRange Ctx::Impl::msi_window(const Device &d)
{
	// Where each IOMMU's interrupt messages land; DMA there is never translated.
	return model_ops(d.model).msi_window;
}

Ioas *Ctx::Impl::ioas_of(Hwpt *h) const
{
	if (h->type == ObjType::hwpt_paging)
		return static_cast<HwptPaging *>(h)->ioas;
	return static_cast<HwptNested *>(h)->parent->ioas;
}

/* Devices ---------------------------------------------------------------------------------- */

Result<uint32_t> Ctx::device_create(const DeviceSpec &spec)
{
	Impl::LockThenSyncWorkers call(*impl_);
	if (spec.name.empty() || spec.name.size() >= IODP_DEVICE_NAME_LEN)
		return Status::error(-EINVAL, "device alloc: name must be 1..{} characters",
				     IODP_DEVICE_NAME_LEN - 1);
	if (spec.model != IommuModel::vtd && spec.model != IommuModel::smmuv3)
		return Status::error(-EOPNOTSUPP, "device {}: unknown IOMMU model {}",
				     spec.name, static_cast<unsigned>(spec.model));
	if (spec.pasid_bits > 20)
		return Status::error(-EINVAL, "device {}: {} PASID bits; at most 20",
				     spec.name, spec.pasid_bits);
	for (const auto &[id, o] : impl_->objects)
		if (o->type == ObjType::device && static_cast<Device *>(o.get())->name == spec.name)
			return Status::error(-EEXIST, "device {}: the name is taken (device id {})",
					     spec.name, id);
	uint32_t group = spec.group;
	if (group != 0) {
		auto it = impl_->groups.find(group);
		if (it == impl_->groups.end())
			return Status::error(-ENOENT, "device {}: no IOMMU group {}",
					     spec.name, group);
		if (it->second.front()->model != spec.model)
			return Status::error(-EINVAL, "device {}: group {} is behind a {} IOMMU",
					     spec.name, group,
					     model_name(it->second.front()->model));
	} else {
		while (impl_->next_group == 0 || impl_->groups.count(impl_->next_group))
			impl_->next_group++;
		group = impl_->next_group++;
	}
	const uint32_t id = impl_->alloc_id();
	auto d = std::make_unique<Device>(id);
	d->name = spec.name;
	d->model = spec.model;
	d->group = group;
	d->rid = spec.rid;
	d->pasid_bits = spec.pasid_bits;
	for (const IovaRange &r : spec.reserved)
		if (r.start > r.last)
			return Status::error(-EINVAL, "device {}: reserved range 0x{:x}-0x{:x}"
					     " ends before it starts", spec.name, r.start,
					     r.last);
	d->reserved = spec.reserved;
	if (spec.paging_format) {
		Result<pgtable::Stage> st = pgtable::make_stage(*spec.paging_format);
		if (!st)
			return Status::error(st.status().code(), "device {}: paging format: {}",
					     spec.name, st.status().message());
		if (pgtable::format_stage(spec.paging_format->format) != 2)
			return Status::error(
				-EINVAL, "device {}: paging format {} is not a second stage",
				spec.name,
				pgtable::format_name(spec.paging_format->format).data());
	}
	const uint64_t max_leaf = spec.paging_max_leaf;
	if (max_leaf & (max_leaf - 1))
		return Status::error(-EINVAL, "device {}: largest leaf 0x{:x} is not a "
				     "power of two", spec.name, max_leaf);
	d->paging_format = spec.paging_format;
	d->paging_max_leaf = max_leaf;
	// Allocate first (the object's node, the group's room or node), then insert.
	Device *raw = d.get();
	Impl::ObjectNode node = Impl::object_node(std::move(d));
	decltype(impl_->groups)::node_type new_group;
	if (auto it = impl_->groups.find(group); it != impl_->groups.end()) {
		it->second.reserve(it->second.size() + 1);
		it->second.push_back(raw);
	} else {
		decltype(impl_->groups) one;
		one[group].push_back(raw);
		impl_->groups.insert(one.extract(one.begin()));
	}
	impl_->objects.insert(std::move(node));
	return id;
}

Result<uint32_t> Ctx::device_id(const std::string &name) const
{
	Impl::LockThenSyncWorkers call(*impl_);
	for (const auto &[id, o] : impl_->objects)
		if (o->type == ObjType::device && static_cast<Device *>(o.get())->name == name)
			return id;
	return Status::error(-ENOENT, "device {}: no such device", name);
}

static Binding *&slot_of(Device &d, std::optional<uint32_t> pasid)
{
	return pasid ? d.pasid_bindings[*pasid] : d.rid_binding;
}

static Binding *binding_of(const Device &d, std::optional<uint32_t> pasid)
{
	if (!pasid)
		return d.rid_binding;
	auto it = d.pasid_bindings.find(*pasid);
	return it == d.pasid_bindings.end() ? nullptr : it->second;
}

Result<uint32_t> Ctx::device_attach(uint32_t dev_id, std::optional<uint32_t> pasid,
				    uint32_t pt_id)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Device *> dr = impl_->get_device(dev_id);
	if (!dr)
		return dr.status();
	Device &dev = **dr;
	if (pasid && (*pasid == 0 || *pasid >= (1u << dev.pasid_bits)))
		return Status::error(-EINVAL, "cannot attach {} pasid {}: PASIDs are 1..{} on "
				     "this device (0 is the RID's)", dev.name, *pasid,
				     (1u << dev.pasid_bits) - 1);
	Object *pt = impl_->find(pt_id);
	if (pt == nullptr)
		return Status::error(-ENOENT, "cannot attach {} to {}: no such ioas or hwpt",
				     dev.name, pt_id);
	if (pt->type != ObjType::ioas && pt->type != ObjType::hwpt_paging &&
	    pt->type != ObjType::hwpt_nested)
		return Status::error(-EINVAL, "cannot attach {} to {}: it is a {}, not an ioas "
				     "or hwpt", dev.name, pt_id, obj_type_name(pt->type));

	// What the attach allocates, before anything changes: the binding, the PASID's slot,
	// the windows it checks, and room for what replacing, parking, retiring an unused
	// automatic domain and publishing routes need.
	auto fresh = std::make_unique<Binding>();
	decltype(dev.pasid_bindings)::node_type pasid_node;
	if (pasid && dev.pasid_bindings.count(*pasid) == 0) {
		decltype(dev.pasid_bindings) one;
		one.emplace(*pasid, nullptr);
		pasid_node = one.extract(one.begin());
	}
	std::vector<std::pair<IovaRange, const char *>> windows = {
		{Impl::msi_window(dev), "MSI window"}};
	for (const IovaRange &r : dev.reserved)
		windows.push_back({r, "reserved region"});
	impl_->reserve(4, 3, 2);

	// Devices of one group share their translation: find the group's domain here.
	Hwpt *group_hwpt = nullptr;
	const Device *group_peer = nullptr;
	for (Device *peer : impl_->groups[dev.group]) {
		Binding *pb = peer == &dev ? nullptr : binding_of(*peer, pasid);
		if (pb != nullptr) {
			group_hwpt = pb->hwpt;
			group_peer = peer;
			break;
		}
	}

	Hwpt *target = nullptr;
	HwptPaging *made = nullptr;
	if (pt->type == ObjType::ioas) {
		auto *ioas = static_cast<Ioas *>(pt);
		if (group_hwpt != nullptr && impl_->ioas_of(group_hwpt) == ioas &&
		    group_hwpt->type == ObjType::hwpt_paging)
			target = group_hwpt;
		// As the kernel's: only automatic domains are reused, never a HWPT the caller
		// allocated (the caller may destroy that one whenever it has no users).
		for (HwptPaging *h : ioas->hwpts)
			if (target == nullptr && h->auto_domain && h->model == dev.model &&
			    (!dev.paging_format ||
			     h->table.stage().format == dev.paging_format->format) &&
			    h->fault_id == 0 && !(h->flags & IODP_HWPT_ALLOC_NEST_PARENT))
				target = h;
		if (target == nullptr) {
			Result<HwptPaging *> h = impl_->make_paging(
				&dev, ioas, pasid ? IODP_HWPT_ALLOC_PASID : 0, 0, std::nullopt);
			if (!h)
				return Status::error(h.status().code(),
						     "cannot attach {} to ioas {}: {}",
						     dev.name, pt_id,
						     h.status().message());
			made = *h;
			made->auto_domain = true;
			target = made;
		}
	} else {
		target = static_cast<Hwpt *>(pt);
	}
	// Every return before the attach takes effect, and a message that cannot be
	// allocated, destroys the automatic domain made for it.
	auto fail = [](Status s) -> Result<uint32_t> { return s; };
	struct Undo {
		Impl &impl;
		HwptPaging *&made;
		~Undo()
		{
			if (made != nullptr)
				impl.destroy_object(made); // reserved above: allocates nothing
		}
	} undo{*impl_, made};
	if (target->model != dev.model)
		return fail(Status::error(-EINVAL, "cannot attach {} to hwpt {}: the table is for "
					  "a {} IOMMU and the device is behind {}",
					  dev.name, target->id, model_name(target->model),
					  model_name(dev.model)));
	if (pasid && target->type == ObjType::hwpt_nested &&
	    model_ops(target->model).pasids_through_rid)
		return fail(Status::error(-EINVAL, "cannot attach {} pasid {} to hwpt {}: an "
					  "SMMUv3 STE is attached by RID; its CD table covers the "
					  "SSIDs", dev.name, *pasid, target->id));
	if (group_hwpt != nullptr && group_hwpt != target) {
		std::string where = pasid ? " pasid " + std::to_string(*pasid) : "";
		return fail(Status::error(-EINVAL, "cannot attach {}{} to hwpt {}: {} in the same "
					  "group {} is attached to hwpt {}", dev.name,
					  where, target->id, group_peer->name,
					  dev.group, group_hwpt->id));
	}
	// The device's MSI window becomes reserved in the IOAS the table mirrors.
	// So do the device's own reserved regions (DeviceSpec::reserved).
	const Ioas *ioas = impl_->ioas_of(target);
	for (const auto &[msi, what] : windows) {
		for (const auto &[iova, m] : ioas->mappings)
			if (m.iova <= msi.last && msi.start <= m.iova + (m.length - 1))
				return fail(Status::error(
					-EADDRINUSE, "cannot attach {} to hwpt {}: ioas {} maps 0x{:x}"
					"+0x{:x} over the device's {} 0x{:x}-0x{:x}",
					dev.name, target->id, ioas->id, m.iova, m.length, what,
					msi.start, msi.last));
		for (const IovaRange &a : ioas->allowed)
			if (a.start <= msi.last && msi.start <= a.last)
				return fail(Status::error(
					-EADDRINUSE, "cannot attach {} to hwpt {}: ioas {} allows 0x{:x}"
					"-0x{:x}, which holds the device's {}",
					dev.name, target->id, ioas->id, a.start, a.last, what));
	}

	made = nullptr; // attached: it stays
	Binding *b = fresh.release();
	b->dev = &dev;
	b->hwpt = target;
	b->pasid = pasid;
	target->users++;
	dev.users++;
	if (!pasid_node.empty())
		dev.pasid_bindings.insert(std::move(pasid_node));
	Binding *&slot = slot_of(dev, pasid);
	Binding *old = slot;
	slot = b; // the replacement is one pointer store
	if (old != nullptr)
		impl_->unbind(old);
	impl_->invalidate_routes(dev);
	return target->id;
}

Status Ctx::device_detach(uint32_t dev_id, std::optional<uint32_t> pasid)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Device *> dr = impl_->get_device(dev_id);
	if (!dr)
		return dr.status();
	Device &dev = **dr;
	Binding *b = binding_of(dev, pasid);
	if (b == nullptr) {
		if (pasid)
			return Status::error(-ENOENT, "device {}: pasid {} is not attached",
					     dev.name, *pasid);
		return Status::error(-ENOENT, "device {}: the RID is not attached",
				     dev.name);
	}
	// Unbinding may retire an automatic domain; routes are published again.
	impl_->reserve(3, 2, 1);
	if (pasid)
		dev.pasid_bindings.erase(*pasid);
	else
		dev.rid_binding = nullptr;
	impl_->unbind(b);
	impl_->invalidate_routes(dev); // returns once no worker translates for it any more
	return {};
}

Result<HwInfo> Ctx::get_hw_info(uint32_t dev_id)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Device *> dr = impl_->get_device(dev_id);
	if (!dr)
		return dr.status();
	const Device &dev = **dr;
	HwInfo info;
	const ModelOps &ops = model_ops(dev.model);
	info.model = dev.model;
	info.paging_format = ops.paging_format;
	for (unsigned shift : {12u, 14u, 16u, 21u, 25u, 29u, 30u})
		info.page_sizes |= 1ull << shift;
	info.granules = (1u << 12) | (1u << 14) | (1u << 16);
	info.pasid_bits = dev.pasid_bits;
	info.paging_ias = 48;
	info.dirty_tracking = ops.dirty_tracking;
	return info;
}

/* vPASIDs ---------------------------------------------------------------------------------- */

Result<uint32_t> Ctx::vpasid_set(uint32_t vpasid, uint32_t ppasid)
{
	Impl::LockThenSyncWorkers call(*impl_);
	constexpr uint32_t kMax = (1u << 20) - 1;
	if (vpasid == 0 || vpasid > kMax || ppasid > kMax)
		return Status::error(-EINVAL, "vpasid {} -> {}: PASIDs are 1..{}", vpasid, ppasid,
				     kMax);
	auto &table = impl_->vpasid_to_ppasid;
	if (auto it = table.find(vpasid); it != table.end())
		return Status::error(-EEXIST, "vpasid {} is already bound to pasid {}", vpasid,
				     it->second);
	auto taken = [&](uint32_t p) {
		return std::any_of(table.begin(), table.end(),
				   [&](const auto &kv) { return kv.second == p; });
	};
	if (ppasid == 0) {
		for (ppasid = 1; ppasid <= kMax && taken(ppasid); ppasid++)
			;
		if (ppasid > kMax)
			return Status::error(-ENOSPC, "vpasid {}: no free physical PASID", vpasid);
	} else if (taken(ppasid)) {
		return Status::error(-EEXIST, "vpasid {}: pasid {} is bound to another vpasid",
				     vpasid, ppasid);
	}
	table[vpasid] = ppasid;
	return ppasid;
}

Status Ctx::vpasid_clear(uint32_t vpasid)
{
	Impl::LockThenSyncWorkers call(*impl_);
	auto it = impl_->vpasid_to_ppasid.find(vpasid);
	if (it == impl_->vpasid_to_ppasid.end())
		return Status::error(-ENOENT, "vpasid {} is not bound", vpasid);
	const uint32_t p = it->second;
	std::string user;
	impl_->for_each_binding([&](Binding &b) {
		if (!b.detached && b.pasid == p && user.empty())
			user = Impl::binding_name(b);
	});
	if (!user.empty())
		return Status::error(-EBUSY, "vpasid {} (pasid {}) is attached: {}", vpasid, p,
				     user);
	impl_->vpasid_to_ppasid.erase(it);
	return {};
}

Result<uint32_t> Ctx::vpasid_lookup(uint32_t vpasid) const
{
	Impl::LockThenSyncWorkers call(*impl_);
	auto it = impl_->vpasid_to_ppasid.find(vpasid);
	if (it == impl_->vpasid_to_ppasid.end())
		return Status::error(-ENOENT, "vpasid {} is not bound", vpasid);
	return it->second;
}

/* Faults ----------------------------------------------------------------------------------- */

Result<uint32_t> Ctx::fault_queue_alloc(int *fd_out)
{
	Impl::LockThenSyncWorkers call(*impl_);
	const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return Status::error(-errno, "fault queue alloc: eventfd failed");
	/*
	 * The caller gets its own descriptor of the same eventfd, as the kernel's fd is the
	 * caller's: iodp closes only the one it keeps, so a caller that closed its number
	 * (which may now name another file) never has it closed under it by a destroy.
	 */
	const int caller_fd = fd_out != nullptr ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (fd_out != nullptr && caller_fd < 0) {
		const int err = errno;
		close(fd);
		return Status::error(-err, "fault queue alloc: dup of the eventfd failed");
	}
	const uint32_t id = impl_->alloc_id();
	impl_->objects.emplace(id, std::make_unique<FaultQueue>(id, fd));
	if (fd_out != nullptr)
		*fd_out = caller_fd;
	return id;
}

std::vector<uint32_t> Ctx::object_ids() const
{
	Impl::LockThenSyncWorkers call(*impl_);
	std::vector<uint32_t> ids;
	ids.reserve(impl_->objects.size());
	for (const auto &[id, obj] : impl_->objects)
		ids.push_back(id);
	return ids;
}

Result<size_t> Ctx::fault_pending(uint32_t fault_id) const
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<FaultQueue *> q = impl_->get_fault_queue(fault_id);
	if (!q)
		return q.status();
	return (*q)->unread.size();
}

uint32_t Ctx::Impl::record_fault(Binding *b, const Device &dev, std::optional<uint32_t> pasid,
				 uint64_t iova, uint8_t access, FaultKind kind,
				 uint8_t stage, int8_t level)
{
	const bool recoverable = kind == FaultKind::not_present ||
				 kind == FaultKind::permission || kind == FaultKind::access_flag;
	if (recoverable && b != nullptr && b->hwpt->fault_id != 0) {
		auto *q = static_cast<FaultQueue *>(find(b->hwpt->fault_id));
		PageFault r;
		r.dev_id = dev.id;
		r.pasid = pasid;
		r.grpid = q->next_grpid++ & 0x1ff; // PRI page request group index is 9 bits
		r.access = access;
		r.addr = iova & ~0xfffull;
		r.length = 4096;
		r.cookie = q->next_cookie++;
		if (q->next_cookie == 0)
			q->next_cookie = 1;
		q->unread.push_back(r);
		q->awaiting[r.cookie] = b;
		b->refs++;
		b->pending_faults++;
		const uint64_t one = 1;
		(void)!write(q->eventfd, &one, sizeof(one));
		return r.cookie;
	}
	FaultEvent e;
	e.dev_id = dev.id;
	e.pasid = pasid;
	e.access = access;
	e.kind = kind;
	e.stage = stage;
	e.level = level;
	e.addr = iova;
	if (events.size() >= cfg.fault_event_log) {
		events.pop_front();
		events_lost++;
	}
	events.push_back(e);
	return 0;
}

Result<std::vector<PageFault>> Ctx::fault_read(uint32_t fault_id, size_t max)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<FaultQueue *> q = impl_->get_fault_queue(fault_id);
	if (!q)
		return q.status();
	std::vector<PageFault> out;
	while (out.size() < max && !(*q)->unread.empty()) {
		out.push_back((*q)->unread.front());
		(*q)->unread.pop_front();
	}
	if ((*q)->unread.empty()) {
		uint64_t drained;
		(void)!read((*q)->eventfd, &drained, sizeof(drained));
	}
	return out;
}

Status Ctx::fault_respond(uint32_t fault_id, uint32_t cookie, uint32_t code)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<FaultQueue *> q = impl_->get_fault_queue(fault_id);
	if (!q)
		return q.status();
	if (code != IODP_PAGE_RESP_SUCCESS && code != IODP_PAGE_RESP_INVALID)
		return Status::error(-EINVAL, "fault queue {}: response code {} is not SUCCESS "
				     "(0) or INVALID (1)", fault_id, code);
	auto it = (*q)->awaiting.find(cookie);
	if (it == (*q)->awaiting.end())
		return Status::error(-EINVAL, "fault queue {}: no fault awaits cookie {}",
				     fault_id, cookie);
	Binding *b = it->second;
	(*q)->awaiting.erase(it);
	auto &u = (*q)->unread;
	u.erase(std::remove_if(u.begin(), u.end(),
			       [&](const PageFault &r) { return r.cookie == cookie; }),
		u.end());
	b->pending_faults--;
	impl_->put(b);
	return {};
}

std::vector<FaultEvent> Ctx::fault_events(size_t max, uint64_t *lost)
{
	Impl::LockThenSyncWorkers call(*impl_);
	std::vector<FaultEvent> out;
	while (out.size() < max && !impl_->events.empty()) {
		out.push_back(impl_->events.front());
		impl_->events.pop_front();
	}
	if (lost != nullptr)
		*lost = impl_->events_lost;
	impl_->events_lost = 0;
	return out;
}

/* Routes and translation ------------------------------------------------------------------ */

using iotlb::Route;

Route route_blocked(FaultKind kind, uint8_t stage, int8_t level)
{
	Route r;
	r.blocked = kind;
	r.blocked_stage = stage;
	r.blocked_level = level;
	return r;
}

/** A paging HWPT's own translations: the domain's stage-2-style context. */
Route route_paging(const HwptPaging &h)
{
	Result<pgtable::Stage> st = pgtable::make_stage(h.config());
	if (!st)
		return route_blocked(FaultKind::bad_config);
	Route r;
	r.blocked = FaultKind::none;
	r.s1 = *st;
	r.mem = &h.view;
	r.domain = h.id;
	r.asid = iotlb::kStage2Asid;
	r.hwpt = h.id;
	return r;
}

/** A guest stage 1 over the parent's stage 2, tagged (domain, asid, pasid). */
Route route_nested(const HwptNested &h, const pgtable::TableConfig &s1, uint32_t domain,
		   uint32_t asid, uint32_t pasid)
{
	Result<pgtable::Stage> st1 = pgtable::make_stage(s1);
	Result<pgtable::Stage> st2 = pgtable::make_stage(h.parent->config());
	// The walker nests only the pairs hardware combines.
	if (!st1 || !st2 || !pgtable::can_nest(st1->format, st2->format))
		return route_blocked(FaultKind::bad_config, 1);
	Route r;
	r.blocked = FaultKind::none;
	r.s1 = *st1;
	r.s2 = *st2;
	r.mem = &h.parent->view;
	r.domain = domain;
	r.asid = asid;
	r.pasid = pasid;
	r.s2_domain = h.parent->id;
	r.hwpt = h.id;
	return r;
}

/** Read @p len bytes at a stage-1 (IPA) address through the parent's stage 2. */
std::optional<Route> read_ipa(const HwptPaging &parent, uint64_t ipa, void *buf, size_t len)
{
	const GuestMemory &mem = *parent.host_map;
	Result<pgtable::Translation> x = pgtable::make_translation(mem, parent.config());
	if (!x)
		return route_blocked(FaultKind::bad_config, 2);
	const pgtable::WalkResult w = pgtable::walk(*x, ipa, pgtable::kAccessRead);
	if (!w.ok())
		return route_blocked(w.fault, 2, w.level);
	if (!mem.read(w.out, buf, len))
		return route_blocked(FaultKind::bad_table_pointer, 2);
	return std::nullopt;
}


Binding *Ctx::Impl::route_binding(const Device &dev, std::optional<uint32_t> pasid) const
{
	Binding *b = binding_of(dev, pasid);
	// SubstreamIDs from the table attached to the RID (SMMUv3: the STE's CD table).
	if (b == nullptr && pasid && dev.rid_binding != nullptr &&
	    dev.rid_binding->hwpt->type == ObjType::hwpt_nested &&
	    model_ops(dev.rid_binding->hwpt->model).pasids_through_rid)
		b = dev.rid_binding;
	return b;
}

Route Ctx::Impl::route_of(const Binding *b, std::optional<uint32_t> pasid) const
{
	if (b == nullptr)
		return route_blocked(FaultKind::not_attached);
	if (b->hwpt->type == ObjType::hwpt_paging)
		return route_paging(*static_cast<const HwptPaging *>(b->hwpt));
	return route_through(*static_cast<const HwptNested *>(b->hwpt), pasid);
}

/*
 * The route through a nested HWPT. Reads only what does not change while the HWPT lives
 * (its data, its parent's table config, the parent's published view) and guest memory
 * through the parent's stage 2, as walks do: so a worker may call it without the lock,
 * between begin and end of a burst (the HWPT is freed a grace period after it goes).
 */
Route route_through(const HwptNested &h, std::optional<uint32_t> pasid)
{
	const ModelOps &ops = model_ops(h.model);
	if (h.data_type != ops.nested_data_type) // an opaque stage 1 (OpaqueS1Data)
		return route_blocked(FaultKind::not_present, 1);
	return ops.nested_route(h, pasid);
}

void Ctx::Impl::publish_routes()
{
	// A spare from reserve() when the call made one: filled within its capacity.
	std::unique_ptr<RouteTable> t;
	if (!spare_routes.empty()) {
		t = std::move(spare_routes.back());
		spare_routes.pop_back();
		t->routes.clear();
		t->lazy.clear();
	} else {
		t = std::make_unique<RouteTable>();
	}
	for (const auto &[id, o] : objects) {
		if (o->type != ObjType::device)
			continue;
		const auto &dev = static_cast<const Device &>(*o);
		if (dev.rid_binding != nullptr) {
			t->routes.emplace_back(uint64_t{dev.id} << 32 | iotlb::kNoPasid,
					       route_of(dev.rid_binding, std::nullopt));
			// SSIDs through the RID's table (SMMUv3 CDs): read on first use.
			const Hwpt *h = dev.rid_binding->hwpt;
			if (h->type == ObjType::hwpt_nested && model_ops(h->model).pasids_through_rid)
				t->lazy.emplace_back(dev.id, static_cast<const HwptNested *>(h));
		}
		for (const auto &[pasid, b] : dev.pasid_bindings)
			t->routes.emplace_back(uint64_t{dev.id} << 32 | pasid, route_of(b, pasid));
	}
	std::sort(t->routes.begin(), t->routes.end(),
		  [](const auto &a, const auto &b) { return a.first < b.first; });
	std::sort(t->lazy.begin(), t->lazy.end(),
		  [](const auto &a, const auto &b) { return a.first < b.first; });
	// Release: a worker that loads the pointer (acquire) sees the table's contents.
	const RouteTable *old = routes.exchange(t.release(), std::memory_order_acq_rel);
	if (old != nullptr)
		retire([old] { delete old; });
}

Ctx::RouteLookup Ctx::published_route(uint32_t dev_id, uint32_t pasid, iotlb::Route *out) const
{
	// Acquire pairs with publish_routes()' release; the table lives until a grace period
	// after it is replaced, and a worker inside a burst holds that period open.
	const Impl::RouteTable *t = impl_->routes.load(std::memory_order_acquire);
	if (t == nullptr)
		return RouteLookup::none;
	const uint64_t key = uint64_t{dev_id} << 32 | pasid;
	const auto it = std::lower_bound(t->routes.begin(), t->routes.end(), key,
					 [](const auto &e, uint64_t k) { return e.first < k; });
	if (it != t->routes.end() && it->first == key) {
		*out = it->second;
		return RouteLookup::found;
	}
	if (pasid != iotlb::kNoPasid) {
		// An SSID of an SMMUv3 STE: its CD is read now, from guest memory, without the
		// lock (what the SMMU's own CD fetch does on a configuration-cache miss).
		const auto lz = std::lower_bound(
			t->lazy.begin(), t->lazy.end(), dev_id,
			[](const auto &e, uint32_t d) { return e.first < d; });
		if (lz != t->lazy.end() && lz->first == dev_id) {
			*out = route_through(*lz->second, pasid);
			return RouteLookup::found;
		}
	}
	return RouteLookup::none;
}

Result<iotlb::Route> Ctx::resolve(uint32_t dev_id, std::optional<uint32_t> pasid)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Device *> dr = impl_->get_device(dev_id);
	if (!dr)
		return dr.status();
	return impl_->route_of(impl_->route_binding(**dr, pasid), pasid);
}

Result<Translated> Ctx::translate(uint32_t dev_id, std::optional<uint32_t> pasid, uint64_t iova,
				  uint8_t access)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Device *> dr = impl_->get_device(dev_id);
	if (!dr)
		return dr.status();
	if (access & ~0xf)
		return Status::error(-EINVAL, "translate: access {:#x} has unknown bits", access);
	Device &dev = **dr;
	Binding *b = impl_->route_binding(dev, pasid);
	// The route a worker would cache, walked uncached.
	const Route r = impl_->route_of(b, pasid);
	pgtable::WalkResult w;
	if (!r.refuses(access, &w))
		w = pgtable::walk(r.translation(), iova, access);
	Translated t;
	t.fault = w.fault;
	if (w.ok()) {
		t.host = w.out;
		t.page_size = w.page_size;
		t.perm = w.perm;
	} else {
		t.stage = w.stage;
		t.level = w.level;
		t.cookie = impl_->record_fault(b, dev, pasid, iova, access, t.fault, w.stage,
					       w.level);
	}
	return t;
}

Result<uint32_t> Ctx::report_fault(uint32_t dev_id, std::optional<uint32_t> pasid,
				   uint64_t iova, uint8_t access, FaultKind kind,
				   uint8_t stage, int8_t level)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Result<Device *> dr = impl_->get_device(dev_id);
	if (!dr)
		return dr.status();
	if (kind == FaultKind::none || kind > FaultKind::bad_config)
		return Status::error(-EINVAL, "report_fault: fault kind {} is not a fault",
				     static_cast<int>(kind));
	Device &dev = **dr;
	// The binding the request would use now: a fault raced with a detach is still logged
	// (no binding: no recoverable queue).
	Binding *b = impl_->route_binding(dev, pasid);
	return impl_->record_fault(b, dev, pasid, iova, access, kind, stage, level);
}

} // namespace iodp::ctl
