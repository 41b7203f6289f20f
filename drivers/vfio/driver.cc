/* SPDX-License-Identifier: BSD-3-Clause */
/* drivers/vfio as a dev::Driver (see <iodp/vfio_driver.h>). */
#include <iodp/vfio.h>
#include <iodp/vfio_driver.h>

#include <cerrno>
#include <cstdio>

namespace iodp::vfio {

namespace {

const char *const kKeys[] = {"dev", "iommu", "ioas", "mode", nullptr};
const char *const kIommus[] = {"auto", "type1", "iommufd", nullptr};
const char *const kModes[] = {"auto", "shadow", "nested", nullptr}; // as vfio::Nesting

struct Port {
	std::string spec;
	Options options;
	uint32_t want_ioas = 0;
	uint32_t own_ioas = 0; ///< made at configure, destroyed at close
	std::unique_ptr<Device> vdev;
	uint32_t hwpt = 0;
	Stats base; ///< at the last stats_reset
};

Port &port_of(const dev::Device &d)
{
	return *static_cast<Port *>(d.priv);
}

Result<std::unique_ptr<dev::Device>> probe(ctl::Ctx &ctx, const dev::DevArgs &a)
{
	auto p = std::make_unique<Port>();
	const std::string *spec = a.find("dev");
	if (spec == nullptr || spec->empty())
		return Status::error(-EINVAL, "{}: dev= is required (a PCI address bound to "
				     "vfio-pci, or /dev/vfio/devices/vfioN)", a.name());
	Result<unsigned> iommu = a.get_choice("iommu", kIommus, 0);
	if (!iommu)
		return iommu.status();
	Result<uint64_t> ioas = a.get_uint("ioas", 0, 0, UINT32_MAX);
	if (!ioas)
		return ioas.status();
	Result<unsigned> mode = a.get_choice("mode", kModes, 0);
	if (!mode)
		return mode.status();
	p->options.mode = static_cast<Nesting>(*mode);
	p->spec = *spec;
	p->options.iommu = static_cast<Iommu>(*iommu);
	p->want_ioas = static_cast<uint32_t>(*ioas);
	auto d = std::make_unique<dev::Device>(driver(), a.name(), ctx, 0);
	d->priv = p.release();
	return d;
}

Status configure(dev::Device &d)
{
	Port &p = port_of(d);
	ctl::Ctx &ctx = d.ctx();
	Result<std::unique_ptr<Device>> v = Device::open(ctx, p.spec, p.options);
	if (!v)
		return Status::error(v.status().code(), "{}: {}", d.name(),
				     v.status().message());
	p.vdev = std::move(*v);
	uint32_t ioas = p.want_ioas;
	if (ioas == 0) {
		Result<uint32_t> a = ctx.ioas_alloc();
		if (!a)
			return a.status();
		p.own_ioas = ioas = *a;
	}
	Result<uint32_t> h = p.vdev->attach(ioas);
	if (!h)
		return Status::error(h.status().code(), "{}: {}", d.name(),
				     h.status().message());
	p.hwpt = *h;
	d.ctl_id = p.vdev->ctl_id();
	return {};
}

Status start(dev::Device &)
{
	return {}; // no queue: the hardware translates
}

void stop(dev::Device &) {}

void close(dev::Device &d)
{
	Port *p = &port_of(d);
	if (p->vdev != nullptr)
		p->vdev->close();
	p->vdev.reset();
	if (p->own_ioas != 0)
		(void)d.ctx().destroy(p->own_ioas);
	d.ctl_id = 0;
	d.priv = nullptr;
	delete p;
}

void info(const dev::Device &d, dev::DevInfo *i)
{
	const Port &p = port_of(d);
	if (p.vdev == nullptr)
		return;
	char buf[256];
	std::snprintf(buf, sizeof(buf), "%s, %s, ioas %u%s%s (the hardware translates)",
		      p.vdev->bdf().c_str(), p.vdev->path_reason().c_str(), p.vdev->ioas(),
		      p.vdev->nesting_reason().empty() ? "" : ", ",
		      p.vdev->nesting_reason().c_str());
	i->description = buf;
	i->group = 0;
	if (Result<ctl::ObjectInfo> cd = d.ctx().object_info(p.vdev->ctl_id()))
		i->group = cd->group;
	i->hwpt = p.hwpt;
	i->ioas = p.vdev->ioas();
}

void stats(const dev::Device &d, dev::DevStats *s)
{
	const Port &p = port_of(d);
	if (p.vdev == nullptr)
		return;
	const Stats v = p.vdev->stats();
	s->driver_counters = {
		{"kernel_calls", v.kernel_calls - p.base.kernel_calls},
		{"kernel_maps", v.maps - p.base.maps},
		{"kernel_unmaps", v.unmaps - p.base.unmaps},
		{"kernel_bytes_mapped", v.bytes_mapped},
		{"kernel_pages_mapped", v.pages_mapped},
		{"kernel_errors", v.errors - p.base.errors},
	};
	if (v.shadow) {
		s->driver_counters.push_back({"shadow_syncs", v.shadow_syncs - p.base.shadow_syncs});
		s->driver_counters.push_back({"shadow_degraded", v.degraded ? 1 : 0});
	}
	if (v.nested)
		s->driver_counters.push_back({"nested_invalidate_calls",
					      v.forward_calls - p.base.forward_calls});
}

void stats_reset(dev::Device &d)
{
	Port &p = port_of(d);
	if (p.vdev != nullptr)
		p.base = p.vdev->stats();
}

const dev::DevOps kOps = {configure, start, stop, close, info, stats, stats_reset, nullptr};

const dev::Driver kDriver = {
	"vfio",
	"a real PCI device through the kernel's VFIO (type1 or iommufd), attached to an IOAS",
	kKeys,
	&kOps,
	probe,
};

} // namespace

const dev::Driver &driver()
{
	return kDriver;
}

} // namespace iodp::vfio
