/* SPDX-License-Identifier: BSD-3-Clause */
#include "impl.h"
#include "inspect.h"
#include "model.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <utility>

namespace iodp::ctl {

using pgtable::Format;

const char *obj_type_name(ObjType type)
{
	switch (type) {
	case ObjType::ioas:
		return "ioas";
	case ObjType::hwpt_paging:
		return "paging hwpt";
	case ObjType::hwpt_nested:
		return "nested hwpt";
	case ObjType::device:
		return "device";
	case ObjType::fault_queue:
		return "fault queue";
	}
	return "object";
}

const ModelOps &model_ops(IommuModel model)
{
	switch (model) { // one table per IommuModel value
	case IommuModel::smmuv3:
		return kSmmuV3Ops;
	case IommuModel::vtd:
		break;
	}
	return kVtdOps;
}

const char *model_name(IommuModel model)
{
	return model_ops(model).name;
}

FaultQueue::~FaultQueue()
{
	if (eventfd >= 0)
		close(eventfd);
}

uint64_t HwptPaging::aperture_last() const
{
	const pgtable::Stage &st = table.stage();
	return st.ias >= 64 ? UINT64_MAX : (1ull << st.ias) - 1;
}

/* ---------------------------------------------------------------------------------------- */

std::string Ctx::Impl::binding_name(const Binding &b)
{
	std::string s = "device " + b.dev->name;
	if (b.pasid)
		s += " pasid " + std::to_string(*b.pasid);
	return s;
}

Ctx::Impl::ObjectNode Ctx::Impl::object_node(std::unique_ptr<Object> o)
{
	decltype(objects) one;
	const uint32_t id = o->id;
	one.emplace(id, std::move(o));
	return one.extract(one.begin());
}

uint32_t Ctx::Impl::alloc_id()
{
	while (next_id == 0 || objects.count(next_id) != 0)
		next_id++;
	return next_id++;
}

Object *Ctx::Impl::find(uint32_t id) const
{
	auto it = objects.find(id);
	return it == objects.end() ? nullptr : it->second.get();
}

Status Ctx::Impl::no_object(uint32_t id, const char *want) const
{
	const Object *o = find(id);
	if (o == nullptr)
		return Status::error(-ENOENT, "{} {}: no such object", want, id);
	return Status::error(-ENOENT, "object {} is a {}, not a {}", id, obj_type_name(o->type),
			     want);
}

Result<Ioas *> Ctx::Impl::get_ioas(uint32_t id) const
{
	Object *o = find(id);
	if (o == nullptr || o->type != ObjType::ioas)
		return no_object(id, "ioas");
	return static_cast<Ioas *>(o);
}

Result<Hwpt *> Ctx::Impl::get_hwpt(uint32_t id) const
{
	Object *o = find(id);
	if (o == nullptr || (o->type != ObjType::hwpt_paging && o->type != ObjType::hwpt_nested))
		return no_object(id, "hwpt");
	return static_cast<Hwpt *>(o);
}

Result<Device *> Ctx::Impl::get_device(uint32_t id) const
{
	Object *o = find(id);
	if (o == nullptr || o->type != ObjType::device)
		return no_object(id, "device");
	return static_cast<Device *>(o);
}

Result<FaultQueue *> Ctx::Impl::get_fault_queue(uint32_t id) const
{
	Object *o = find(id);
	if (o == nullptr || o->type != ObjType::fault_queue)
		return no_object(id, "fault queue");
	return static_cast<FaultQueue *>(o);
}

/* Who uses an object, for EBUSY messages ------------------------------------------------- */

void Ctx::Impl::for_each_binding(const std::function<void(Binding &)> &fn) const
{
	for (const auto &[id, o] : objects) {
		if (o->type != ObjType::device)
			continue;
		auto *d = static_cast<Device *>(o.get());
		if (d->rid_binding != nullptr)
			fn(*d->rid_binding);
		for (auto &[pasid, b] : d->pasid_bindings)
			fn(*b);
	}
	for (Binding *b : parked)
		fn(*b);
}

std::string Ctx::Impl::first_user(const Object &obj) const
{
	std::string who;
	auto note = [&](const std::string &s) {
		if (who.empty())
			who = s;
	};
	for_each_binding([&](Binding &b) {
		std::string parked_note;
		if (b.detached)
			parked_note = " (detached, parked until " +
				      std::to_string(b.pending_faults) + " fault(s) get a response)";
		if (b.hwpt == &obj)
			note("is attached to " + binding_name(b) + parked_note);
		if (b.dev == &obj)
			note("is attached to hwpt " + std::to_string(b.hwpt->id) +
			     (b.pasid ? " by pasid " + std::to_string(*b.pasid) : "") +
			     parked_note);
	});
	if (obj.type == ObjType::ioas)
		for (const IoasMirror *m : static_cast<const Ioas &>(obj).mirrors)
			note("is mirrored into " + m->name());
	if (obj.type == ObjType::hwpt_nested)
		for (const NestedObserver *o : static_cast<const HwptNested &>(obj).observers)
			note("is shadowed into " + o->name());
	for (const auto &[id, o] : objects) {
		if (o->type == ObjType::hwpt_paging) {
			auto *h = static_cast<HwptPaging *>(o.get());
			if (h->ioas == &obj)
				note("is used by hwpt " + std::to_string(h->id));
		}
		if (o->type == ObjType::hwpt_nested) {
			auto *h = static_cast<HwptNested *>(o.get());
			if (h->parent == &obj)
				note("is the parent of nested hwpt " + std::to_string(h->id));
		}
		if (o->type == ObjType::hwpt_paging || o->type == ObjType::hwpt_nested) {
			auto *h = static_cast<Hwpt *>(o.get());
			if (h->fault_id == obj.id && obj.type == ObjType::fault_queue)
				note("is used by hwpt " + std::to_string(h->id));
		}
	}
	return who.empty() ? "is in use" : who;
}

std::string Ctx::Impl::object_name(const Object &obj)
{
	if (obj.type == ObjType::device)
		return "device " + static_cast<const Device &>(obj).name;
	if (obj.type == ObjType::hwpt_paging || obj.type == ObjType::hwpt_nested)
		return "hwpt " + std::to_string(obj.id);
	return std::string(obj_type_name(obj.type)) + " " + std::to_string(obj.id);
}

/* Bindings --------------------------------------------------------------------------------- */

void Ctx::Impl::put(Binding *b)
{
	if (--b->refs != 0)
		return;
	parked.erase(std::remove(parked.begin(), parked.end(), b), parked.end());
	Hwpt *h = b->hwpt;
	h->users--;
	b->dev->users--;
	delete b;
	if (h->type == ObjType::hwpt_paging && static_cast<HwptPaging *>(h)->auto_domain &&
	    h->users == 0)
		destroy_object(h);
}

void Ctx::Impl::unbind(Binding *b)
{
	b->detached = true;
	invalidate_binding(*b);
	if (b->refs > 1)
		parked.push_back(b);
	put(b);
}

/* Destroy ---------------------------------------------------------------------------------- */

void Ctx::Impl::destroy_object(Object *o)
{
	switch (o->type) {
	case ObjType::hwpt_paging: {
		auto *h = static_cast<HwptPaging *>(o);
		auto &v = h->ioas->hwpts;
		v.erase(std::remove(v.begin(), v.end(), h), v.end());
		h->ioas->users--;
		break;
	}
	case ObjType::hwpt_nested:
		static_cast<HwptNested *>(o)->parent->users--;
		break;
	case ObjType::device: {
		auto *d = static_cast<Device *>(o);
		auto &members = groups[d->group];
		members.erase(std::remove(members.begin(), members.end(), d), members.end());
		if (members.empty())
			groups.erase(d->group);
		break;
	}
	default:
		break;
	}
	if (o->type == ObjType::hwpt_paging || o->type == ObjType::hwpt_nested) {
		auto *h = static_cast<Hwpt *>(o);
		if (h->fault_id != 0)
			find(h->fault_id)->users--;
		// Workers may hold routes to it until the grace period: drop them, free it after.
		invalidate_domain(h->id, inval::kTargetAll);
	}
	auto it = objects.find(o->id);
	Object *gone = it->second.release();
	objects.erase(it);
	retire([gone] { delete gone; }); // one pointer: std::function holds it without the heap
}

Status Ctx::destroy(uint32_t id)
{
	Impl::LockThenSyncWorkers call(*impl_);
	Object *o = impl_->find(id);
	if (o == nullptr)
		return Status::error(-ENOENT, "destroy: no object {}", id);
	if (o->users != 0)
		return Status::error(-EBUSY, "{} {}", Impl::object_name(*o).c_str(),
				     impl_->first_user(*o).c_str());
	// A HWPT's invalidation publishes routes; the object itself is retired.
	impl_->reserve(1, 1, 1);
	impl_->destroy_object(o);
	return {};
}

/* Construction ----------------------------------------------------------------------------- */

Ctx::Ctx(const CtxConfig &config) : impl_(std::make_unique<Impl>())
{
	impl_->cfg = config;
	iotlb::CoherenceConfig cc;
	cc.max_workers = config.max_workers;
	cc.ring_entries = config.inval_ring_entries;
	Result<std::unique_ptr<iotlb::Coherence>> c = iotlb::Coherence::create(cc);
	if (!c) {
		// Only a bad worker count or ring size gets here (or no memory at all): keep
		// going with the defaults, which are known to be valid.
		std::fprintf(stderr, "iodp ctl: %s; using the default worker settings\n",
			     c.status().message().c_str());
		c = iotlb::Coherence::create();
		if (!c)
			std::abort();
	}
	impl_->coherence = std::move(*c);
}

Ctx::~Ctx()
{
	// Whatever waits for a grace period (workers are gone by now) is freed first.
	impl_->coherence->sync();
	// Bindings first: they point at devices and HWPTs.
	for (const auto &[id, o] : impl_->objects) {
		if (o->type == ObjType::device) {
			auto *d = static_cast<Device *>(o.get());
			delete d->rid_binding;
			for (auto &[pasid, b] : d->pasid_bindings)
				delete b;
		}
	}
	for (Binding *b : impl_->parked)
		delete b;
	// Nested HWPTs and bindings referred to the others; nothing walks them any more.
	impl_->objects.clear();
	delete impl_->routes.exchange(nullptr, std::memory_order_acquire);
}

Inspector::Inspector(const Ctx &ctx) : impl_(*ctx.impl_), lock_(ctx.impl_->lock) {}

std::vector<uint32_t> Inspector::ids() const
{
	std::vector<uint32_t> out;
	for (const auto &[id, obj] : impl_.objects)
		out.push_back(id);
	return out;
}

const Object *Inspector::find(uint32_t id) const
{
	return impl_.find(id);
}

Result<ObjectInfo> Ctx::object_info(uint32_t id) const
{
	Impl::LockThenSyncWorkers call(*impl_);
	const Object *obj = impl_->find(id);
	if (obj == nullptr)
		return Status::error(-ENOENT, "object {}: no such object", id);
	ObjectInfo info;
	info.id = obj->id;
	info.type = obj->type;
	info.users = obj->users;
	switch (obj->type) {
	case ObjType::ioas: {
		const auto &ioas = static_cast<const Ioas &>(*obj);
		for (const HwptPaging *h : ioas.hwpts)
			info.hwpts.push_back(h->id);
		info.mappings = ioas.mappings.size();
		break;
	}
	case ObjType::hwpt_paging: {
		const auto &h = static_cast<const HwptPaging &>(*obj);
		info.model = h.model;
		info.ioas = h.ioas->id;
		info.auto_domain = h.auto_domain;
		info.format = h.table.stage().format;
		break;
	}
	case ObjType::hwpt_nested: {
		const auto &h = static_cast<const HwptNested &>(*obj);
		info.model = h.model;
		info.ioas = h.parent->ioas->id;
		info.parent = h.parent->id;
		info.data_type = h.data_type;
		info.vtd = h.vtd;
		info.smmu = h.smmu;
		break;
	}
	case ObjType::device: {
		const auto &d = static_cast<const Device &>(*obj);
		info.model = d.model;
		info.name = d.name;
		info.group = d.group;
		info.rid = d.rid;
		break;
	}
	case ObjType::fault_queue:
		break;
	}
	return info;
}

size_t Ctx::object_count() const
{
	Impl::LockThenSyncWorkers call(*impl_);
	return impl_->objects.size();
}

void Ctx::set_invalidation_sink(std::function<void(const inval::Descriptor &)> sink)
{
	Impl::LockThenSyncWorkers call(*impl_);
	impl_->sink = std::move(sink);
}

void Ctx::set_device_tlb_handler(
	std::function<void(uint32_t dev_id, const inval::Descriptor &)> handler)
{
	Impl::LockThenSyncWorkers call(*impl_);
	impl_->device_tlb = std::move(handler);
}

const CtxConfig &Ctx::config() const
{
	return impl_->cfg; // set once, by the constructor
}

iotlb::Coherence &Ctx::coherence()
{
	return *impl_->coherence;
}

/* Invalidation and grace periods ----------------------------------------------------------- */

namespace {

/** The SyncBatch open on this thread, if any. */
thread_local Ctx::SyncBatch *tls_batch = nullptr;

/** Whether @p b can absorb @p d: the same invalidation of a range that touches b's. */
bool mergeable(const inval::Descriptor &b, const inval::Descriptor &d)
{
	if (b.op != inval::Op::invalidate || d.op != inval::Op::invalidate ||
	    !(b.match & inval::kMatchRange) || b.targets != d.targets || b.match != d.match ||
	    b.leaf_only != d.leaf_only || b.granule_shift != d.granule_shift ||
	    b.level != d.level || b.domain != d.domain || b.asid != d.asid ||
	    b.pasid != d.pasid || b.device != d.device)
		return false;
	const uint64_t b_last = b.addr + (b.size - 1), d_last = d.addr + (d.size - 1);
	// Touching or overlapping; the merged range must not reach 2^64 bytes.
	return d.addr <= b_last + 1 && b.addr <= d_last + 1 && b_last + 1 != 0 &&
	       d_last + 1 != 0 && !(std::min(b.addr, d.addr) == 0 &&
				    std::max(b_last, d_last) == UINT64_MAX);
}

} // namespace

Ctx::Impl::LockThenSyncWorkers::~LockThenSyncWorkers()
{
	SyncBatch *batch = tls_batch;
	if (batch != nullptr && batch->ctx_.impl_.get() == &impl_) {
		// The batch's sync() retires the table pages (after posting what it holds) and
		// waits the grace period. The lock goes with lock_'s destructor.
		batch->due_ |= std::exchange(impl_.sync_due, false);
		return;
	}
	impl_.retire_table_pages();
	const bool sync = std::exchange(impl_.sync_due, false);
	lock_.unlock();
	if (sync)
		impl_.coherence->sync(); // also runs what was retired before it began
}

void Ctx::Impl::notify(const inval::Descriptor &d)
{
	// Workers that drop a route on hearing of @p d find its successor already published.
	if (d.targets & inval::kTargetConfig)
		publish_routes();
	if (sink)
		sink(d);
	if ((d.targets & inval::kTargetDeviceTlb) && device_tlb)
		report_device_tlb(d);
	sync_due = true;
	SyncBatch *batch = tls_batch;
	if (batch != nullptr && batch->ctx_.impl_.get() == this) {
		batch->requested_++;
		// Adjacent pages unmapped one call at a time become one range; a range that
		// now bridges two held ones absorbs the second.
		inval::Descriptor cur = d;
		for (size_t i = 0; i < held.size();) {
			if (!mergeable(held[i], cur)) {
				i++;
				continue;
			}
			const uint64_t last = std::max(held[i].addr + (held[i].size - 1),
						       cur.addr + (cur.size - 1));
			cur.addr = std::min(held[i].addr, cur.addr);
			cur.size = last - cur.addr + 1;
			held.erase(held.begin() + static_cast<ptrdiff_t>(i));
			i = 0;
		}
		held.push_back(cur);
		return;
	}
	coherence->post(d);
}

Ctx::SyncBatch::SyncBatch(Ctx &ctx) : ctx_(ctx)
{
	tls_batch = this;
}

Ctx::SyncBatch::~SyncBatch()
{
	(void)sync();
	tls_batch = nullptr;
}

unsigned Ctx::SyncBatch::sync()
{
	Impl &impl = *ctx_.impl_;
	unsigned posted;
	{
		std::lock_guard g(impl.lock);
		posted = impl.post_held();
		impl.retire_table_pages();
		due_ |= std::exchange(impl.sync_due, false);
	}
	if (std::exchange(due_, false))
		impl.coherence->sync();
	return posted;
}

std::optional<iotlb::Coherence::Grace> Ctx::SyncBatch::begin_sync(unsigned *posted)
{
	Impl &impl = *ctx_.impl_;
	{
		std::lock_guard g(impl.lock);
		*posted = impl.post_held();
		impl.retire_table_pages();
		due_ |= std::exchange(impl.sync_due, false);
	}
	if (!std::exchange(due_, false))
		return std::nullopt;
	return impl.coherence->begin_sync();
}

void Ctx::Impl::settle_freed_tables(uint32_t ioas_id)
{
	// A few rounds: another thread may free more meanwhile (then the map goes ahead).
	for (int round = 0; round < 4; round++) {
		{
			std::lock_guard g(lock);
			Result<Ioas *> ioas = get_ioas(ioas_id);
			if (!ioas)
				return; // the map gives the reason
			bool held = false;
			for (const HwptPaging *h : (*ioas)->hwpts)
				held |= h->pool.has_held();
			if (!held)
				return;
			// Freed in this thread's open batch: its invalidations go out now.
			reserve(0, 0, 1); // may throw: nothing changed yet
			retire_table_pages();
		}
		coherence->sync(); // its reclaim() makes the tables reusable
	}
}

unsigned Ctx::Impl::post_held()
{
	for (const inval::Descriptor &d : held)
		coherence->post(d);
	const auto n = static_cast<unsigned>(held.size());
	held.clear();
	return n;
}

void Ctx::Impl::report_device_tlb(const inval::Descriptor &d)
{
	for (const auto &[id, o] : objects) {
		if (o->type != ObjType::device)
			continue;
		const auto &dev = static_cast<const Device &>(*o);
		bool hit = false;
		auto look = [&](const Binding *b) {
			if (b == nullptr)
				return;
			const Hwpt *h = b->hwpt;
			const uint32_t parent = h->type == ObjType::hwpt_nested
							? static_cast<const HwptNested *>(h)->parent->id
							: 0;
			hit |= !(d.match & inval::kMatchDomain) || h->id == d.domain ||
			       parent == d.domain;
		};
		look(dev.rid_binding);
		for (const auto &[pasid, b] : dev.pasid_bindings)
			look(b);
		if ((d.match & inval::kMatchDevice) && !(d.match & inval::kMatchDomain))
			hit = dev.id == d.device;
		if (hit)
			device_tlb(dev.id, d);
	}
}

void Ctx::Impl::invalidate_range(const HwptPaging &h, uint64_t iova, uint64_t length)
{
	inval::Descriptor d;
	d.targets = inval::kTargetIotlb | inval::kTargetWalkCache | inval::kTargetDeviceTlb;
	// The HWPT's own translations in the range, and whole any stage 1 nested on it.
	d.match = inval::kMatchDomain | inval::kMatchRange | inval::kMatchStage2;
	d.domain = h.id;
	d.addr = iova;
	d.size = length;
	notify(d);
}

Status Ctx::Impl::unmap_tables(HwptPaging &h, uint64_t iova, uint64_t length)
{
	// The builder changes nothing when it fails (a block to split and no page for it).
	if (Status s = h.table.unmap(iova, length); !s)
		return Status::error(s.code(), "hwpt {}: {}", h.id, s.message());
	invalidate_range(h, iova, length);
	pages_held = true;
	return {};
}

void Ctx::Impl::invalidate_domain(uint32_t domain, uint8_t targets, uint8_t match)
{
	inval::Descriptor d;
	d.targets = targets;
	d.match = static_cast<uint8_t>(inval::kMatchDomain | match);
	d.domain = domain;
	notify(d);
}

void Ctx::Impl::invalidate_binding(const Binding &b)
{
	// A paging HWPT's translations follow its own tables, whose every change is
	// invalidated: they stay valid for the next device that attaches.
	if (b.hwpt->type != ObjType::hwpt_nested)
		return;
	const auto &h = *static_cast<const HwptNested *>(b.hwpt);
	inval::Descriptor d;
	d.targets = inval::kTargetIotlb | inval::kTargetWalkCache;
	model_ops(h.model).binding_tags(h, b.pasid, &d);
	notify(d);
}

void Ctx::Impl::invalidate_routes(const Device &dev)
{
	inval::Descriptor d;
	d.targets = inval::kTargetConfig;
	d.match = inval::kMatchDevice;
	d.device = dev.id;
	notify(d);
}

void Ctx::Impl::reserve(unsigned notifies, unsigned publishes, unsigned retires)
{
	held.reserve(held.size() + notifies);
	parked.reserve(parked.size() + 1); // a detach may park the binding it removes
	// Route tables only for a call that publishes routes (map and unmap, the frequent
	// ones, do not): counting the bindings walks every object.
	if (publishes != 0) {
		size_t bindings = 1, devices = 0; // one more binding: an attach adds it
		for (const auto &[id, o] : objects) {
			if (o->type != ObjType::device)
				continue;
			const auto &d = static_cast<const Device &>(*o);
			devices++;
			bindings += (d.rid_binding != nullptr) + d.pasid_bindings.size();
		}
		while (spare_routes.size() < publishes)
			spare_routes.push_back(std::make_unique<RouteTable>());
		for (const auto &t : spare_routes) {
			t->routes.reserve(bindings);
			t->lazy.reserve(devices);
		}
	}
	iotlb::Coherence::reserve(retire_slots, retires + publishes + 1);
}

void Ctx::Impl::retire(std::function<void()> fn)
{
	// What a batch holds goes out first: its grace period must also cover the workers
	// dropping what they cached of the memory being retired.
	post_held();
	coherence->retire(std::move(fn), retire_slots);
	sync_due = true;
}

void Ctx::Impl::retire_table_pages()
{
	if (!std::exchange(pages_held, false))
		return; // most calls unmap nothing: no need to look at every HWPT
	// A walk cache may still point into these pages until the held invalidations go out.
	post_held();
	const uint64_t gen = ++table_gen;
	for (const auto &[id, o] : objects)
		if (o->type == ObjType::hwpt_paging)
			static_cast<HwptPaging *>(o.get())->pool.seal_held(gen);
	// The pool is only touched under the lock. A HWPT destroyed meanwhile is gone from
	// objects, its pages with it. Two words: no allocation (reserve() made the slot).
	retire([this, gen] {
		std::lock_guard g(lock);
		for (const auto &[id, o] : objects)
			if (o->type == ObjType::hwpt_paging)
				static_cast<HwptPaging *>(o.get())->pool.release_sealed(gen);
	});
}

} // namespace iodp::ctl
