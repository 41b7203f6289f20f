/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/iodp.h>
#include <iodp/mem.h>
#include <iodp/smmuv3.h>
#include <iodp/topo.h>

#include <cerrno>

namespace iodp::topo {

namespace {

constexpr uint64_t kPage = 4096;

} // namespace

const char *kind_name(Kind kind)
{
	switch (kind) {
	case Kind::paging:
		return "paging";
	case Kind::vtd_nested:
		return "vtd-nested";
	case Kind::smmu_nested:
		return "smmu-nested";
	}
	return "?";
}

Result<std::unique_ptr<Domain>> Domain::build(ctl::Ctx &ctx, uint32_t dev_id,
					      const Recipe &recipe)
{
	const bool nested = recipe.kind != Kind::paging;
	if (recipe.host == nullptr || recipe.bytes == 0 || recipe.bytes % kPage ||
	    recipe.gpa % kPage)
		return Status::error(-EINVAL, "topology {}: guest RAM must be whole pages",
				     kind_name(recipe.kind));
	if (nested && (recipe.tables_offset % kPage ||
		       recipe.tables_offset + 2 * kPage > recipe.bytes))
		return Status::error(-EINVAL, "topology {}: the guest's tables need at least two "
				     "pages at the end of guest RAM (offset {:#x} of {:#x})",
				     kind_name(recipe.kind), recipe.tables_offset, recipe.bytes);
	if (recipe.pasid && recipe.kind != Kind::vtd_nested)
		return Status::error(-EINVAL, "topology {}: only vtd-nested attaches a PASID",
				     kind_name(recipe.kind));
	std::unique_ptr<Domain> d(new Domain(ctx, dev_id, recipe));
	if (Status s = d->make(); !s)
		return s; // the destructor undid what make() did
	return d;
}

Status Domain::make()
{
	const Recipe &r = recipe_;
	Result<uint32_t> ioas = ctx_.ioas_alloc();
	if (!ioas)
		return ioas.status();
	ioas_ = *ioas;
	if (r.kind == Kind::paging && r.small_pages) {
		uint64_t off = 0;
		if (Status s = ctx_.option(IODP_OPTION_HUGE_PAGES, IODP_OPTION_OP_SET, ioas_, &off);
		    !s)
			return s;
	}
	Result<uint64_t> m = ctx_.ioas_map(ioas_,
					   ctl::kMapFixedIova | ctl::kMapReadable |
						   ctl::kMapWriteable,
					   r.gpa, r.host, r.bytes);
	if (!m)
		return m.status();
	if (r.kind == Kind::paging) {
		Result<uint32_t> h = ctx_.device_attach(dev_id_, std::nullopt, ioas_);
		if (!h)
			return h.status();
		hwpt_ = *h;
		attached_ = true;
		return {};
	}
	Result<uint32_t> parent = ctx_.hwpt_alloc_paging(dev_id_, ioas_, ctl::kHwptNestParent, 0);
	if (!parent)
		return parent.status();
	parent_ = *parent;
	// The guest's tables live in its own RAM, addressed by guest-physical address.
	pool_ = std::make_unique<pgtable::TablePool>(r.gpa + r.tables_offset,
						     r.host + r.tables_offset,
						     r.bytes - r.tables_offset, kPage);
	const pgtable::Format fmt = r.kind == Kind::vtd_nested ? pgtable::Format::x86_64_4l
							       : pgtable::Format::arm_s1;
	Result<pgtable::TableBuilder> b =
		pgtable::TableBuilder::create(pgtable::table_config(fmt), pool_.get());
	if (!b)
		return b.status();
	s1_.emplace(std::move(*b));
	Result<uint32_t> nested = Status{};
	if (r.kind == Kind::vtd_nested) {
		nested = ctx_.hwpt_alloc_nested(dev_id_, parent_, 0, 0,
						ctl::VtdS1Data{0, s1_->root(), 48});
	} else {
		// One CD (SSID 0, for requests without a SubstreamID: S1DSS=SSID0) -> stage 1.
		Result<uint64_t> cd_gpa = pool_->alloc(kPage);
		if (!cd_gpa)
			return cd_gpa.status();
		smmuv3::Cd cd; // 48-bit input, 4 KiB granule, AArch64
		cd.valid = true;
		cd.asid = r.asid;
		cd.ttb0 = s1_->root();
		uint64_t words[2];
		cd.encode(words);
		std::byte *p = pool_->host(*cd_gpa, 16);
		GuestMemory::store_le64(p, words[0]);
		GuestMemory::store_le64(p + 8, words[1]);
		smmuv3::Ste ste; // stage 1 over the host's stage 2, a CD table of two
		ste.valid = true;
		ste.config = smmuv3::kConfigS1;
		ste.s1_context_ptr = *cd_gpa;
		ste.s1_cd_max = 1;
		ste.s1dss = smmuv3::kS1dssSsid0;
		ctl::SmmuV3Data data;
		ste.encode(data.ste);
		nested = ctx_.hwpt_alloc_nested(dev_id_, parent_, 0, 0, data);
	}
	if (!nested)
		return nested.status();
	hwpt_ = *nested;
	Result<uint32_t> at = ctx_.device_attach(dev_id_, r.pasid, hwpt_);
	if (!at)
		return at.status();
	attached_ = true;
	return {};
}

Domain::~Domain()
{
	if (attached_)
		(void)ctx_.device_detach(dev_id_, recipe_.pasid);
	// A paging topology's HWPT is the automatic domain: it went with the detach.
	for (uint32_t id : {recipe_.kind != Kind::paging ? hwpt_ : 0u, parent_, ioas_})
		if (id != 0)
			(void)ctx_.destroy(id);
}

} // namespace iodp::topo
