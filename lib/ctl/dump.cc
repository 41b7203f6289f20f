/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Ctx::dump(): the whole object graph as text, for tests that check a failed call changed
 * nothing (fail-nth) and for people debugging one.
 */
#include "impl.h"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>

namespace iodp::ctl {

namespace {

void line(std::string &out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void line(std::string &out, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	std::vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	out += buf;
	out += '\n';
}

void binding(std::string &out, const char *what, const Binding *b)
{
	line(out, "  %s -> hwpt %u pasid %d refs %u%s faults %u", what, b->hwpt->id,
	     b->pasid ? static_cast<int>(*b->pasid) : -1, b->refs,
	     b->detached ? " detached" : "", b->pending_faults);
}

} // namespace

std::string Ctx::dump() const
{
	Impl::LockThenSyncWorkers call(*impl_);
	std::string out;
	for (const auto &[id, o] : impl_->objects) {
		line(out, "%s %u users %u", obj_type_name(o->type), id, o->users);
		switch (o->type) {
		case ObjType::ioas: {
			const auto &a = static_cast<const Ioas &>(*o);
			for (const auto &[iova, m] : a.mappings)
				line(out, "  map 0x%" PRIx64 "+0x%" PRIx64 " host %p flags %#x gpa %d 0x%"
				     PRIx64, m.iova, m.length, static_cast<void *>(m.host), m.flags,
				     m.gpa.has_value(), m.gpa.value_or(0));
			for (const IovaRange &r : a.allowed)
				line(out, "  allow 0x%" PRIx64 "-0x%" PRIx64, r.start, r.last);
			for (const HwptPaging *h : a.hwpts)
				line(out, "  hwpt %u", h->id);
			line(out, "  huge_pages %d", a.huge_pages);
			break;
		}
		case ObjType::hwpt_paging: {
			const auto &h = static_cast<const HwptPaging &>(*o);
			line(out, "  ioas %u flags %#x fault %u %s auto %d dirty %d", h.ioas->id,
			     h.flags, h.fault_id, model_name(h.model), h.auto_domain,
			     h.dirty_tracking.load() ? 1 : 0);
			// The table: what each mapping's first and last byte translate to.
			Result<pgtable::Translation> x =
				pgtable::make_translation(*h.host_map, h.config());
			if (x)
				for (const auto &[iova, m] : h.ioas->mappings)
					for (uint64_t at : {m.iova, m.iova + m.length - 1}) {
						const pgtable::WalkResult w =
							pgtable::walk(*x, at, pgtable::kAccessRead);
						line(out, "  table 0x%" PRIx64 " -> %s 0x%" PRIx64, at,
						     w.ok() ? "ok" : "fault", w.out);
					}
			break;
		}
		case ObjType::hwpt_nested: {
			const auto &h = static_cast<const HwptNested &>(*o);
			line(out, "  parent %u type %u flags %#x fault %u", h.parent->id, h.data_type,
			     h.flags, h.fault_id);
			break;
		}
		case ObjType::device: {
			const auto &d = static_cast<const Device &>(*o);
			line(out, "  %s %s group %u rid %#x", d.name.c_str(), model_name(d.model),
			     d.group, d.rid);
			if (d.rid_binding != nullptr)
				binding(out, "rid", d.rid_binding);
			for (const auto &[pasid, b] : d.pasid_bindings) {
				char what[32];
				std::snprintf(what, sizeof(what), "pasid %u", pasid);
				binding(out, what, b);
			}
			break;
		}
		case ObjType::fault_queue: {
			const auto &f = static_cast<const FaultQueue &>(*o);
			line(out, "  unread %zu awaiting %zu", f.unread.size(), f.awaiting.size());
			break;
		}
		default:
			break;
		}
	}
	for (const auto &[group, members] : impl_->groups) {
		line(out, "group %u:", group);
		for (const Device *d : members)
			line(out, "  device %u", d->id);
	}
	for (const auto &[v, p] : impl_->vpasid_to_ppasid)
		line(out, "vpasid %u -> %u", v, p);
	line(out, "parked %zu events %zu lost %" PRIu64, impl_->parked.size(),
	     impl_->events.size(), impl_->events_lost);
	return out;
}

} // namespace iodp::ctl
