/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * drivers/vfio: real devices through the kernel's VFIO (type1 container or iommufd),
 * attached directly to an iodp IOAS. See <iodp/vfio.h>.
 *
 * State shared between devices lives in one process-wide table (the kernel's group and
 * container state is process-wide too: a group opens once per process):
 * - GroupState: one kernel IOMMU group, owned by one iodp context; its type1 group fd.
 * - Space: one kernel address space (a type1 container or an iommufd IOAS) mirroring one
 *   iodp IOAS (ctl::IoasMirror); every device of that context attached to that IOAS with the
 *   same path shares it. Its map()/unmap() run under the iodp context's lock.
 * Lock order: the table's lock, then the context's (IOAS calls never take the table's).
 */
#include "kabi.h"
#include "nesting.h"
#include "sysfs.h"

#include <iodp/iodp.h>
#include <iodp/shadow_mode.h>
#include <iodp/vfio.h>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <sys/stat.h>
#include <unistd.h>

namespace iodp::vfio {

namespace {

const char *call_meaning(unsigned long call, int err)
{
	switch (err) {
	case EPERM:
	case EACCES:
		return "permission denied (root, or access to /dev/vfio and a large enough "
		       "RLIMIT_MEMLOCK)";
	case EBUSY:
		return "in use (another process or driver holds the group or device)";
	case ENOSPC:
		return call == VFIO_IOMMU_MAP_DMA
			       ? "the type1 container is full (the vfio_iommu_type1 module's "
				 "dma_entry_limit, 65535 unless set)"
			       : "no space";
	case ENOMEM:
		return "out of memory, or the pages cannot be pinned (RLIMIT_MEMLOCK)";
	case EEXIST:
		return "the kernel already maps part of this range";
	case EFAULT:
		return "the host memory is not mapped in this process";
	case ENOENT:
		return "the kernel has nothing mapped there";
	case ENODEV:
		return "no such device";
	case EINVAL:
		return "the kernel refused the arguments (alignment, range or state)";
	case ENOTTY:
		return "this kernel does not know the call";
	default:
		return "failed";
	}
}

bool exists(const std::string &path)
{
	struct stat st;
	return ::stat(path.c_str(), &st) == 0;
}

std::string hex_range(uint64_t iova, uint64_t length)
{
	return fmt::format("0x{:x}+0x{:x}", iova, length);
}

/** Counters written under the iodp context's lock and read anywhere. */
struct Counter {
	std::atomic<uint64_t> v{0};
	void add(uint64_t n) { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
	void sub(uint64_t n) { v.store(v.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
	uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

} // namespace

/** One /dev/iommu per iodp context (its kernel IOASes and bound devices). */
struct Device::IommufdFd {
	int fd = -1;
	~IommufdFd()
	{
		if (fd >= 0)
			::close(fd);
	}
};

const char *nesting_name(Nesting mode)
{
	switch (mode) {
	case Nesting::shadow:
		return "shadow";
	case Nesting::nested:
		return "nested";
	default:
		return "auto";
	}
}

const char *iommu_name(Iommu iommu)
{
	switch (iommu) {
	case Iommu::type1:
		return "type1";
	case Iommu::iommufd:
		return "iommufd";
	default:
		return "auto";
	}
}

struct Device::Space : ctl::IoasMirror {
	ctl::Ctx *ctx = nullptr;
	uint32_t ioas = 0;
	Iommu path = Iommu::type1;
	int container = -1;               ///< type1
	std::shared_ptr<Device::IommufdFd> iommufd; ///< iommufd
	uint32_t kernel_ioas = 0;         ///< iommufd
	bool mirrored = false;            ///< attached to the iodp IOAS as its mirror
	/** Shadow mode: the nested HWPT it shadows (0: it mirrors the IOAS) and the shadow,
	 *  attached to that HWPT as its observer. */
	uint32_t shadow_hwpt = 0;
	std::unique_ptr<ShadowMode> shadow;
	/** Hardware nesting (iommufd): the kernel's NEST_PARENT and nested HWPTs, and the
	 *  observer forwarding the guest's invalidations to the nested one. */
	uint32_t kernel_parent = 0, kernel_nested = 0;
	std::unique_ptr<nesting::Forwarder> forwarder;
	unsigned devices = 0;             ///< devices attached through it
	std::vector<int> groups;          ///< type1: group fds in the container
	std::vector<ctl::IovaRange> kranges;
	uint64_t page = 4096;
	std::string first_bdf;
	Counter calls, maps, unmaps, bytes, errors;

	~Space() override
	{
		if (container >= 0)
			::close(container);
	}

	/** An ioctl on the iommufd with the accounting, for nesting.h (0 or -errno). */
	nesting::Ioctl iommufd_call()
	{
		return [this](unsigned long req, void *arg) {
			calls.add(1);
			if (::ioctl(iommufd->fd, req, arg) == 0)
				return 0;
			const int err = errno;
			errors.add(1);
			return -err;
		};
	}

	/** Destroy the kernel's nested and parent HWPTs (before the kernel IOAS). */
	void destroy_kernel_hwpts()
	{
		for (uint32_t *id : {&kernel_nested, &kernel_parent}) {
			if (*id == 0)
				continue;
			kabi::iommu_destroy d{sizeof(d), *id};
			(void)iommufd_call()(kabi::IOMMU_DESTROY, &d);
			*id = 0;
		}
	}

	/** ioctl with the accounting and a message naming the call and what it means. */
	Status call(int fd, unsigned long req, const char *name, void *arg, const std::string &what)
	{
		calls.add(1);
		if (::ioctl(fd, req, arg) == 0)
			return {};
		const int err = errno;
		errors.add(1);
		return Status::error(-err, "vfio {}: {} {} failed: {}: {}", first_bdf, name,
				     what, std::strerror(err), call_meaning(req, err));
	}

	std::string name() const override
	{
		return "vfio " + first_bdf + " (" +
		       (path == Iommu::type1 ? std::string("type1 container")
					     : "iommufd ioas " + std::to_string(kernel_ioas)) +
		       (shadow_hwpt == 0 ? std::string()
			: forwarder != nullptr || kernel_parent != 0
				? ", kernel-nested hwpt " + std::to_string(shadow_hwpt)
				: ", shadow of hwpt " + std::to_string(shadow_hwpt)) +
		       ")";
	}
	std::vector<ctl::IovaRange> ranges() const override { return kranges; }
	uint64_t min_page() const override { return page; }

	Status map(const ctl::Mapping &m) override
	{
		const bool rd = m.flags & IODP_IOAS_MAP_READABLE;
		const bool wr = m.flags & IODP_IOAS_MAP_WRITEABLE;
		Status s;
		if (path == Iommu::type1) {
			vfio_iommu_type1_dma_map dm{};
			dm.argsz = sizeof(dm);
			dm.flags = (rd ? VFIO_DMA_MAP_FLAG_READ : 0u) | (wr ? VFIO_DMA_MAP_FLAG_WRITE : 0u);
			dm.vaddr = reinterpret_cast<uintptr_t>(m.host);
			dm.iova = m.iova;
			dm.size = m.length;
			s = call(container, VFIO_IOMMU_MAP_DMA, "VFIO_IOMMU_MAP_DMA", &dm,
				 hex_range(m.iova, m.length));
			if (!s && s.code() == -ENOSPC) {
				Result<uint32_t> avail = dma_avail();
				return Status::error(s.code(), "{} (dma_avail {})", s.message(),
						     avail ? *avail : 0u);
			}
		} else {
			kabi::iommu_ioas_map im{};
			im.size = sizeof(im);
			im.flags = kabi::IOMMU_IOAS_MAP_FIXED_IOVA |
				   (rd ? kabi::IOMMU_IOAS_MAP_READABLE : 0u) |
				   (wr ? kabi::IOMMU_IOAS_MAP_WRITEABLE : 0u);
			im.ioas_id = kernel_ioas;
			im.user_va = reinterpret_cast<uintptr_t>(m.host);
			im.length = m.length;
			im.iova = m.iova;
			s = call(iommufd->fd, kabi::IOMMU_IOAS_MAP, "IOMMU_IOAS_MAP", &im,
				 hex_range(m.iova, m.length));
		}
		if (!s)
			return s;
		maps.add(1);
		bytes.add(m.length);
		return {};
	}

	Status unmap(const ctl::Mapping &m) override
	{
		uint64_t done = 0;
		Status s;
		if (path == Iommu::type1) {
			vfio_iommu_type1_dma_unmap du{};
			du.argsz = sizeof(du);
			du.iova = m.iova;
			du.size = m.length;
			s = call(container, VFIO_IOMMU_UNMAP_DMA, "VFIO_IOMMU_UNMAP_DMA", &du,
				 hex_range(m.iova, m.length));
			done = du.size;
		} else {
			kabi::iommu_ioas_unmap iu{};
			iu.size = sizeof(iu);
			iu.ioas_id = kernel_ioas;
			iu.iova = m.iova;
			iu.length = m.length;
			s = call(iommufd->fd, kabi::IOMMU_IOAS_UNMAP, "IOMMU_IOAS_UNMAP", &iu,
				 hex_range(m.iova, m.length));
			done = iu.length;
		}
		if (!s)
			return s;
		if (done != m.length) {
			errors.add(1);
			return Status::error(-EIO, "vfio {}: the kernel unmapped 0x{:x} of {}",
					     first_bdf, done,
					     hex_range(m.iova, m.length).c_str());
		}
		unmaps.add(1);
		bytes.sub(m.length);
		return {};
	}

	Result<uint32_t> dma_avail()
	{
		if (path != Iommu::type1)
			return UINT32_MAX;
		Result<std::vector<uint8_t>> info = type1_info();
		if (!info)
			return info.status();
		uint32_t avail = UINT32_MAX;
		for_each_cap(*info, [&](const vfio_info_cap_header *h) {
			if (h->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL)
				avail = reinterpret_cast<const vfio_iommu_type1_info_dma_avail *>(h)->avail;
		});
		return avail;
	}

	/** VFIO_IOMMU_GET_INFO with its capability chain. */
	Result<std::vector<uint8_t>> type1_info()
	{
		std::vector<uint8_t> buf(sizeof(vfio_iommu_type1_info));
		auto *info = reinterpret_cast<vfio_iommu_type1_info *>(buf.data());
		info->argsz = sizeof(vfio_iommu_type1_info);
		if (Status s = call(container, VFIO_IOMMU_GET_INFO, "VFIO_IOMMU_GET_INFO", info, "");
		    !s)
			return s;
		if (info->argsz > buf.size()) {
			const uint32_t need = info->argsz;
			buf.assign(need, 0);
			info = reinterpret_cast<vfio_iommu_type1_info *>(buf.data());
			info->argsz = need;
			if (Status s = call(container, VFIO_IOMMU_GET_INFO, "VFIO_IOMMU_GET_INFO",
					    info, "");
			    !s)
				return s;
		}
		return buf;
	}

	template <class F> static void for_each_cap(const std::vector<uint8_t> &buf, F &&fn)
	{
		const auto *info = reinterpret_cast<const vfio_iommu_type1_info *>(buf.data());
		if (!(info->flags & VFIO_IOMMU_INFO_CAPS))
			return;
		uint32_t off = info->cap_offset;
		while (off != 0 && off + sizeof(vfio_info_cap_header) <= buf.size()) {
			const auto *h = reinterpret_cast<const vfio_info_cap_header *>(buf.data() + off);
			fn(h);
			if (h->next <= off)
				break;
			off = h->next;
		}
	}

	/** Read the kernel's ranges and page sizes (after a device joined). */
	Status refresh()
	{
		if (path == Iommu::type1) {
			Result<std::vector<uint8_t>> info = type1_info();
			if (!info)
				return info.status();
			const auto *ti = reinterpret_cast<const vfio_iommu_type1_info *>(info->data());
			if (ti->flags & VFIO_IOMMU_INFO_PGSIZES)
				page = ti->iova_pgsizes & -ti->iova_pgsizes;
			std::vector<ctl::IovaRange> r;
			bool have = false;
			for_each_cap(*info, [&](const vfio_info_cap_header *h) {
				if (h->id != VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)
					return;
				have = true;
				const auto *c = reinterpret_cast<const vfio_iommu_type1_info_cap_iova_range *>(h);
				for (uint32_t i = 0; i < c->nr_iovas; i++)
					r.push_back({c->iova_ranges[i].start, c->iova_ranges[i].end});
			});
			if (!have)
				r.push_back({0, UINT64_MAX});
			kranges = r;
			return {};
		}
		kabi::iommu_ioas_iova_ranges q{};
		q.size = sizeof(q);
		q.ioas_id = kernel_ioas;
		calls.add(1);
		if (::ioctl(iommufd->fd, kabi::IOMMU_IOAS_IOVA_RANGES, &q) != 0 && errno != EMSGSIZE) {
			const int err = errno;
			errors.add(1);
			return Status::error(-err, "vfio {}: IOMMU_IOAS_IOVA_RANGES failed: {}",
					     first_bdf, std::strerror(err));
		}
		std::vector<kabi::iommu_iova_range> r(q.num_iovas);
		q.allowed_iovas = reinterpret_cast<uintptr_t>(r.data());
		if (Status s = call(iommufd->fd, kabi::IOMMU_IOAS_IOVA_RANGES,
				    "IOMMU_IOAS_IOVA_RANGES", &q, "");
		    !s)
			return s;
		kranges.clear();
		for (uint32_t i = 0; i < q.num_iovas && i < r.size(); i++)
			kranges.push_back({r[i].start, r[i].last});
		page = std::max<uint64_t>(4096, q.out_iova_alignment);
		return {};
	}
};

struct Device::GroupState {
	int number = -1;
	const ctl::Ctx *owner = nullptr;
	int fd = -1;              ///< type1: /dev/vfio/N
	uint32_t ctl_group = 0;   ///< the lib/ctl group of its devices
	std::vector<std::string> open; ///< devices of this group open in iodp
	std::weak_ptr<Space> space;    ///< where its attached devices are
	unsigned attached = 0;
	bool in_container = false;

	~GroupState()
	{
		if (fd >= 0)
			::close(fd);
	}
};

namespace {

/** The process-wide table: kernel groups, address spaces, one /dev/iommu per context. */
struct Table {
	std::mutex lock;
	std::map<int, std::weak_ptr<Device::GroupState>> groups;
	std::vector<std::weak_ptr<Device::Space>> spaces;
	std::map<const ctl::Ctx *, std::weak_ptr<Device::IommufdFd>> iommufds;
};

Table &table()
{
	static Table t;
	return t;
}

} // namespace

Device::Device(ctl::Ctx &ctx, Options options) : ctx_(ctx), options_(std::move(options)) {}

Device::~Device()
{
	close();
}

Result<std::unique_ptr<Device>> Device::open(ctl::Ctx &ctx, const std::string &spec,
					     const Options &options)
{
	std::unique_ptr<Device> d(new Device(ctx, options));
	const std::string &sys = options.sysfs;
	bool by_cdev = !spec.empty() && spec[0] == '/';
	if (by_cdev) {
		if (options.iommu == Iommu::type1)
			return Status::error(-EINVAL, "vfio: {} is a device cdev, which only the "
					     "iommufd path uses (iommu=type1 was asked for)",
					     spec);
		Result<std::string> bdf = sysfs::bdf_of_cdev(sys, spec);
		if (!bdf)
			return bdf.status();
		d->bdf_ = *bdf;
	} else {
		Result<std::string> bdf = sysfs::normalize_bdf(spec);
		if (!bdf)
			return bdf.status();
		d->bdf_ = *bdf;
	}
	const std::string &bdf = d->bdf_;
	Result<int> group = sysfs::check_usable(sys, bdf);
	if (!group)
		return group.status();
	d->group_ = *group;

	// The path: iommufd needs /dev/iommu and the device's cdev.
	const std::string cdev_name = sysfs::cdev_of(sys, bdf);
	const std::string cdev = by_cdev ? spec : options.dev + "/vfio/devices/" + cdev_name;
	const bool have_iommufd = exists(options.dev + "/iommu");
	const bool have_cdev = !cdev_name.empty() && exists(cdev);
	switch (options.iommu) {
	case Iommu::type1:
		d->path_ = Iommu::type1;
		d->path_reason_ = "type1 (asked for)";
		break;
	case Iommu::iommufd:
		if (!have_iommufd || !have_cdev)
			return Status::error(-ENODEV, "vfio: cannot use {} with iommufd: {}",
					     bdf,
					     !have_iommufd ? "this kernel has no /dev/iommu "
							     "(CONFIG_IOMMUFD)"
							   : "it has no VFIO device cdev "
							     "(CONFIG_VFIO_DEVICE_CDEV)");
		d->path_ = Iommu::iommufd;
		d->path_reason_ = "iommufd (asked for)";
		break;
	default:
		if (by_cdev || (have_iommufd && have_cdev)) {
			d->path_ = Iommu::iommufd;
			d->path_reason_ = "iommufd (auto: " + options.dev + "/iommu and " + cdev +
					  " exist)";
		} else {
			d->path_ = Iommu::type1;
			d->path_reason_ = std::string("type1 (auto: ") +
					  (!have_iommufd ? "no " + options.dev + "/iommu"
							 : "no VFIO device cdev for " + bdf) +
					  ")";
		}
	}

	Table &t = table();
	std::lock_guard guard(t.lock);
	std::shared_ptr<GroupState> gs = t.groups[d->group_].lock();
	if (gs != nullptr) {
		if (gs->owner != &ctx)
			return Status::error(-EBUSY, "vfio: cannot use {}: IOMMU group {} is used by "
					     "another iodp context (through {})", bdf,
					     d->group_, gs->open.empty() ? "?" : gs->open[0]);
		if (std::find(gs->open.begin(), gs->open.end(), bdf) != gs->open.end())
			return Status::error(-EBUSY, "vfio: {} is already open in this context",
					     bdf);
	} else {
		gs = std::make_shared<GroupState>();
		gs->number = d->group_;
		gs->owner = &ctx;
	}
	if (d->path_ == Iommu::type1 && gs->fd < 0) {
		const std::string gpath = options.dev + "/vfio/" + std::to_string(d->group_);
		const int fd = ::open(gpath.c_str(), O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			const int err = errno;
			return Status::error(-err, "vfio: cannot use {}: open {} failed: {}: {}",
					     bdf, gpath, std::strerror(err),
					     err == EBUSY ? "another process has the group open"
							  : call_meaning(0, err));
		}
		gs->fd = fd;
		vfio_group_status st{};
		st.argsz = sizeof(st);
		d->own_calls_++;
		if (::ioctl(fd, VFIO_GROUP_GET_STATUS, &st) != 0 ||
		    !(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
			d->own_errors_++;
			::close(fd);
			gs->fd = -1;
			return Status::error(-EBUSY, "vfio: cannot use {}: the kernel says IOMMU "
					     "group {} is not viable (VFIO_GROUP_GET_STATUS): a "
					     "device in it is bound to a driver that is not "
					     "vfio-pci", bdf, d->group_);
		}
	}
	if (d->path_ == Iommu::iommufd) {
		const int fd = ::open(cdev.c_str(), O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			const int err = errno;
			return Status::error(-err, "vfio: cannot use {}: open {} failed: {}: {}",
					     bdf, cdev, std::strerror(err),
					     call_meaning(0, err));
		}
		d->device_fd_ = fd;
		std::shared_ptr<Device::IommufdFd> ifd = t.iommufds[&ctx].lock();
		if (ifd == nullptr) {
			ifd = std::make_shared<IommufdFd>();
			ifd->fd = ::open((options.dev + "/iommu").c_str(), O_RDWR | O_CLOEXEC);
			if (ifd->fd < 0) {
				const int err = errno;
				::close(d->device_fd_);
				d->device_fd_ = -1;
				return Status::error(-err, "vfio: cannot use {}: open {}/iommu "
						     "failed: {}", bdf, options.dev,
						     std::strerror(err));
			}
			t.iommufds[&ctx] = ifd;
		}
		kabi::vfio_device_bind_iommufd b{};
		b.argsz = sizeof(b);
		b.iommufd = ifd->fd;
		d->own_calls_++;
		if (::ioctl(d->device_fd_, kabi::VFIO_DEVICE_BIND_IOMMUFD, &b) != 0) {
			const int err = errno;
			d->own_errors_++;
			::close(d->device_fd_);
			d->device_fd_ = -1;
			return Status::error(-err, "vfio: cannot use {}: VFIO_DEVICE_BIND_IOMMUFD "
					     "failed: {}: {}", bdf, std::strerror(err),
					     err == EBUSY ? "the group is not viable or the device "
							    "is in use"
							  : call_meaning(0, err));
		}
		d->iommufd_devid_ = b.out_devid;
		d->iommufd_ = ifd;
	}

	// Its twin in lib/ctl: same group as the other devices of its kernel group.
	ctl::DeviceSpec ds;
	ds.name = bdf;
	ds.model = options.model;
	ds.group = gs->ctl_group;
	const unsigned bus = static_cast<unsigned>(std::stoul(bdf.substr(5, 2), nullptr, 16));
	const unsigned devfn = static_cast<unsigned>(std::stoul(bdf.substr(8, 2), nullptr, 16)) << 3 |
			       static_cast<unsigned>(bdf[11] - '0');
	ds.rid = bus << 8 | devfn;
	Result<uint32_t> id = ctx.device_create(ds);
	if (!id) {
		if (d->device_fd_ >= 0)
			::close(d->device_fd_);
		d->device_fd_ = -1;
		return id.status();
	}
	d->ctl_id_ = *id;
	if (Result<ctl::ObjectInfo> cd = ctx.object_info(*id))
		gs->ctl_group = cd->group;
	gs->open.push_back(bdf);
	t.groups[d->group_] = gs;
	d->gstate_ = gs;
	return d;
}

uint32_t Device::ioas() const
{
	return space_ != nullptr ? space_->ioas : 0;
}

std::vector<ctl::IovaRange> Device::kernel_ranges() const
{
	return space_ != nullptr ? space_->kranges : std::vector<ctl::IovaRange>{};
}

Result<uint32_t> Device::dma_avail() const
{
	if (space_ == nullptr)
		return Status::error(-ENODEV, "vfio {}: not attached", bdf_);
	return space_->dma_avail();
}

Stats Device::stats() const
{
	Stats s;
	s.path = path_;
	const Space *sp = space_ != nullptr ? space_.get() : last_space_.get();
	s.kernel_calls = own_calls_;
	s.errors = own_errors_;
	if (sp != nullptr) {
		s.kernel_calls += sp->calls.get();
		s.maps = sp->maps.get();
		s.unmaps = sp->unmaps.get();
		s.bytes_mapped = space_ != nullptr ? sp->bytes.get() : 0;
		s.pages_mapped = s.bytes_mapped / 4096;
		s.errors += sp->errors.get();
		if (sp->shadow != nullptr) {
			s.shadow = true;
			s.degraded = space_ != nullptr && sp->shadow->degraded();
			s.shadow_syncs = sp->shadow->syncs();
			s.shadow_events = sp->shadow->events();
		}
		if (sp->forwarder != nullptr) {
			s.nested = true;
			s.forward_calls = sp->forwarder->calls();
			s.forward_entries = sp->forwarder->entries();
		}
	}
	return s;
}

Result<uint32_t> Device::attach(uint32_t pt_id)
{
	if (closed_)
		return Status::error(-ENODEV, "vfio {}: closed", bdf_);
	// The IOAS behind pt_id; a nested HWPT is shadowed (shadow_mode.h), not mirrored.
	Result<ctl::ObjectInfo> obj = ctx_.object_info(pt_id);
	uint32_t ioas_id = 0, shadow_of = 0;
	if (obj && obj->type == ctl::ObjType::ioas)
		ioas_id = pt_id;
	else if (obj && obj->type == ctl::ObjType::hwpt_paging)
		ioas_id = obj->ioas;
	else if (obj && obj->type == ctl::ObjType::hwpt_nested) {
		ioas_id = obj->ioas;
		shadow_of = pt_id;
	} else
		return Status::error(-ENOENT, "vfio {}: no IOAS or paging HWPT {}", bdf_,
				     pt_id);
	bool hw_nested = false;
	if (shadow_of != 0 && (space_ == nullptr || space_->shadow_hwpt != shadow_of)) {
		Result<bool> hw = choose_nesting(shadow_of);
		if (!hw)
			return hw.status();
		hw_nested = *hw;
	}
	if (space_ != nullptr) {
		if (space_->ioas == ioas_id && space_->shadow_hwpt == shadow_of) {
			// Same kernel space: only the lib/ctl twin moves (e.g. IOAS -> its HWPT).
			return ctx_.device_attach(ctl_id_, std::nullopt, pt_id);
		}
		if (Status s = detach(); !s)
			return s;
	}

	Table &t = table();
	std::lock_guard guard(t.lock);
	GroupState &gs = *gstate_;
	std::shared_ptr<Space> gspace = gs.space.lock();
	if (gs.attached > 0 && gspace != nullptr &&
	    (gspace->ioas != ioas_id || gspace->shadow_hwpt != shadow_of))
		return Status::error(-EBUSY, "vfio {}: cannot attach to ioas {}: the other devices "
				     "of IOMMU group {} are attached to ioas {}, and one group "
				     "shares one IOAS", bdf_, ioas_id, group_, gspace->ioas);

	// Find or make the kernel space mirroring this IOAS.
	std::shared_ptr<Space> sp;
	for (auto it = t.spaces.begin(); it != t.spaces.end();) {
		std::shared_ptr<Space> s = it->lock();
		if (s == nullptr) {
			it = t.spaces.erase(it);
			continue;
		}
		if (s->ctx == &ctx_ && s->ioas == ioas_id && s->path == path_ &&
		    s->shadow_hwpt == shadow_of)
			sp = s;
		++it;
	}
	const bool fresh = sp == nullptr;
	if (fresh) {
		sp = std::make_shared<Space>();
		sp->ctx = &ctx_;
		sp->ioas = ioas_id;
		sp->path = path_;
		sp->shadow_hwpt = shadow_of;
		sp->first_bdf = bdf_;
		if (path_ == Iommu::type1) {
			const std::string cpath = options_.dev + "/vfio/vfio";
			sp->container = ::open(cpath.c_str(), O_RDWR | O_CLOEXEC);
			if (sp->container < 0) {
				const int err = errno;
				return Status::error(-err, "vfio {}: open {} failed: {}", bdf_,
						     cpath, std::strerror(err));
			}
			sp->calls.add(2);
			if (::ioctl(sp->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
			    ::ioctl(sp->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1)
				return Status::error(-ENODEV, "vfio {}: the container at {} has no "
						     "VFIO_TYPE1v2_IOMMU (CONFIG_VFIO_IOMMU_TYPE1)",
						     bdf_, cpath);
		} else {
			sp->iommufd = iommufd_;
			kabi::iommu_ioas_alloc a{};
			a.size = sizeof(a);
			if (Status s = sp->call(iommufd_->fd, kabi::IOMMU_IOAS_ALLOC,
						"IOMMU_IOAS_ALLOC", &a, "");
			    !s)
				return s;
			sp->kernel_ioas = a.out_ioas_id;
		}
	}
	// Undo what this attach did, in reverse, on any failure below.
	bool joined_container = false;
	auto undo = [&](Status s) -> Status {
		if (path_ == Iommu::type1) {
			if (device_fd_ >= 0)
				::close(device_fd_);
			device_fd_ = -1;
			if (joined_container) {
				sp->calls.add(1);
				(void)::ioctl(gs.fd, VFIO_GROUP_UNSET_CONTAINER);
				gs.in_container = false;
				sp->groups.erase(std::find(sp->groups.begin(), sp->groups.end(), gs.fd));
			}
		} else if (device_attached_) {
			kabi::vfio_device_detach_iommufd_pt dt{};
			dt.argsz = sizeof(dt);
			sp->calls.add(1);
			(void)::ioctl(device_fd_, kabi::VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt);
			device_attached_ = false;
		}
		if (fresh && path_ == Iommu::iommufd && sp->kernel_ioas != 0) {
			kabi::iommu_destroy dd{sizeof(dd), sp->kernel_ioas};
			(void)::ioctl(iommufd_->fd, kabi::IOMMU_DESTROY, &dd);
		}
		return s;
	};

	if (path_ == Iommu::type1) {
		if (!gs.in_container) {
			int c = sp->container;
			if (Status s = sp->call(gs.fd, VFIO_GROUP_SET_CONTAINER,
						"VFIO_GROUP_SET_CONTAINER", &c,
						"(group " + std::to_string(group_) + ")");
			    !s)
				return undo(s);
			gs.in_container = true;
			joined_container = true;
			sp->groups.push_back(gs.fd);
			if (fresh) {
				sp->calls.add(1);
				if (::ioctl(sp->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) != 0) {
					const int err = errno;
					sp->errors.add(1);
					return undo(Status::error(-err, "vfio {}: VFIO_SET_IOMMU "
								  "(TYPE1v2) failed: {}", bdf_,
								  std::strerror(err)));
				}
			}
		}
		sp->calls.add(1);
		const int fd = ::ioctl(gs.fd, VFIO_GROUP_GET_DEVICE_FD, bdf_.c_str());
		if (fd < 0) {
			const int err = errno;
			sp->errors.add(1);
			return undo(Status::error(-err, "vfio {}: VFIO_GROUP_GET_DEVICE_FD failed: "
						  "{}: {}", bdf_, std::strerror(err),
						  call_meaning(0, err)));
		}
		device_fd_ = fd;
	} else {
		kabi::vfio_device_attach_iommufd_pt at{};
		at.argsz = sizeof(at);
		at.pt_id = sp->kernel_ioas;
		if (Status s = sp->call(device_fd_, kabi::VFIO_DEVICE_ATTACH_IOMMUFD_PT,
					"VFIO_DEVICE_ATTACH_IOMMUFD_PT", &at,
					"(kernel ioas " + std::to_string(sp->kernel_ioas) + ")");
		    !s)
			return undo(s);
		device_attached_ = true;
	}
	if (Status s = sp->refresh(); !s)
		return undo(s);
	Result<uint32_t> hwpt = ctx_.device_attach(ctl_id_, std::nullopt, pt_id);
	if (!hwpt)
		return undo(hwpt.status());
	if (fresh && shadow_of != 0 && hw_nested) {
		// The kernel nests: its IOAS mirrors the iodp IOAS (stage 2, GPA -> host), a
		// NEST_PARENT HWPT on it, the guest's table as a VTD_S1 nested HWPT, the device
		// attached there; the guest's invalidations are forwarded to it in batches.
		const ctl::ObjectInfo &h = *obj;
		auto fail = [&](Status s) {
			if (sp->forwarder != nullptr)
				(void)ctx_.hwpt_detach_observer(shadow_of, sp->forwarder.get());
			kabi::vfio_device_detach_iommufd_pt dt{};
			dt.argsz = sizeof(dt);
			(void)::ioctl(device_fd_, kabi::VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt);
			device_attached_ = false;
			sp->destroy_kernel_hwpts();
			if (sp->mirrored)
				(void)ctx_.ioas_detach_mirror(ioas_id, sp.get());
			sp->mirrored = false;
			(void)ctx_.device_detach(ctl_id_, std::nullopt);
			return undo(s);
		};
		if (Status s = ctx_.ioas_attach_mirror(ioas_id, sp.get()); !s)
			return fail(s);
		sp->mirrored = true;
		const nesting::Ioctl call = sp->iommufd_call();
		Result<uint32_t> parent = nesting::alloc_parent(call, iommufd_devid_, sp->kernel_ioas);
		if (!parent)
			return fail(parent.status());
		sp->kernel_parent = *parent;
		Result<uint32_t> nested = nesting::alloc_nested_vtd(call, iommufd_devid_, *parent, h.vtd);
		if (!nested)
			return fail(nested.status());
		sp->kernel_nested = *nested;
		kabi::vfio_device_attach_iommufd_pt at{};
		at.argsz = sizeof(at);
		at.pt_id = *nested;
		if (Status s = sp->call(device_fd_, kabi::VFIO_DEVICE_ATTACH_IOMMUFD_PT,
					"VFIO_DEVICE_ATTACH_IOMMUFD_PT", &at,
					"(kernel nested hwpt " + std::to_string(*nested) + ")");
		    !s)
			return fail(s);
		sp->forwarder = std::make_unique<nesting::Forwarder>(sp->name(), call, *nested);
		if (Status s = ctx_.hwpt_attach_observer(shadow_of, sp->forwarder.get()); !s) {
			sp->forwarder.reset();
			return fail(s);
		}
		t.spaces.push_back(sp);
	} else if (fresh && shadow_of != 0) {
		// From here on every guest invalidation and stage-2 change of the nested HWPT
		// reaches the kernel; what it translates now goes in.
		sp->shadow = std::make_unique<ShadowMode>(sp->name(), *sp, options_.sysfs,
							  options_.shadow);
		if (Status s = ctx_.hwpt_attach_observer(shadow_of, sp->shadow.get()); !s) {
			(void)ctx_.device_detach(ctl_id_, std::nullopt);
			return undo(s);
		}
		t.spaces.push_back(sp);
	} else if (fresh) {
		// From here on every IOAS change reaches the kernel; what is mapped now goes in.
		if (Status s = ctx_.ioas_attach_mirror(ioas_id, sp.get()); !s) {
			(void)ctx_.device_detach(ctl_id_, std::nullopt);
			return undo(s);
		}
		sp->mirrored = true;
		t.spaces.push_back(sp);
	}
	sp->devices++;
	gs.attached++;
	gs.space = sp;
	space_ = sp;
	last_space_ = sp;
	return *hwpt;
}

Result<bool> Device::choose_nesting(uint32_t hwpt_id)
{
	const Nesting mode = options_.mode;
	if (mode == Nesting::shadow) {
		nesting_reason_ = "shadow (asked for)";
		return false;
	}
	Result<ctl::ObjectInfo> h = ctx_.object_info(hwpt_id);
	if (!h)
		return h.status();
	std::string why;
	if (path_ != Iommu::iommufd) {
		why = "a type1 container has no nested translation (iommufd has)";
	} else if (h->data_type != IODP_HWPT_DATA_VTD_S1) {
		why = "iodp nests VT-d first stages only (SMMUv3 nesting is 6.13+ uAPI)";
	} else {
		// A kernel IOAS of its own for the probe's NEST_PARENT allocation.
		kabi::iommu_ioas_alloc a{};
		a.size = sizeof(a);
		own_calls_++;
		if (::ioctl(iommufd_->fd, kabi::IOMMU_IOAS_ALLOC, &a) != 0) {
			own_errors_++;
			why = std::string("IOMMU_IOAS_ALLOC: ") + std::strerror(errno);
		} else {
			const int fd = iommufd_->fd;
			const nesting::Ioctl call = [this, fd](unsigned long req, void *arg) {
				own_calls_++;
				if (::ioctl(fd, req, arg) == 0)
					return 0;
				own_errors_++;
				return -errno;
			};
			const nesting::Probe p = nesting::probe(call, iommufd_devid_, a.out_ioas_id);
			kabi::iommu_destroy d{sizeof(d), a.out_ioas_id};
			(void)call(kabi::IOMMU_DESTROY, &d);
			if (p.nests) {
				nesting_reason_ = std::string("nested (") +
						  (mode == Nesting::nested ? "asked for: " : "auto: ") +
						  p.reason + ")";
				return true;
			}
			why = p.reason;
		}
	}
	if (mode == Nesting::nested)
		return Status::error(-EOPNOTSUPP, "vfio {}: mode=nested: the kernel cannot nest "
				     "hwpt {}: {}", bdf_, hwpt_id, why);
	nesting_reason_ = "shadow (auto: " + why + ")";
	return false;
}

Status Device::detach()
{
	if (space_ == nullptr)
		return Status::error(-ENOENT, "vfio {}: not attached", bdf_);
	Table &t = table();
	std::lock_guard guard(t.lock);
	GroupState &gs = *gstate_;
	Space &sp = *space_;
	Status result = ctx_.device_detach(ctl_id_, std::nullopt);
	// Block the device first (its group leaves the container / it detaches from the
	// kernel IOAS), then stop mirroring: no moment where it reaches what iodp unmapped.
	if (path_ == Iommu::type1) {
		if (device_fd_ >= 0)
			::close(device_fd_);
		device_fd_ = -1;
		if (gs.attached == 1 && gs.in_container) {
			sp.calls.add(1);
			if (::ioctl(gs.fd, VFIO_GROUP_UNSET_CONTAINER) != 0) {
				const int err = errno;
				sp.errors.add(1);
				result = Status::error(-err, "vfio {}: VFIO_GROUP_UNSET_CONTAINER "
						       "failed: {}", bdf_, std::strerror(err));
			}
			gs.in_container = false;
			sp.groups.erase(std::find(sp.groups.begin(), sp.groups.end(), gs.fd));
		}
	} else if (device_attached_) {
		kabi::vfio_device_detach_iommufd_pt dt{};
		dt.argsz = sizeof(dt);
		if (Status s = sp.call(device_fd_, kabi::VFIO_DEVICE_DETACH_IOMMUFD_PT,
				       "VFIO_DEVICE_DETACH_IOMMUFD_PT", &dt, "");
		    !s)
			result = s;
		device_attached_ = false;
	}
	gs.attached--;
	if (--sp.devices == 0) {
		if (sp.mirrored)
			(void)ctx_.ioas_detach_mirror(sp.ioas, &sp);
		sp.mirrored = false;
		if (sp.shadow != nullptr)
			(void)ctx_.hwpt_detach_observer(sp.shadow_hwpt, sp.shadow.get());
		if (sp.forwarder != nullptr)
			(void)ctx_.hwpt_detach_observer(sp.shadow_hwpt, sp.forwarder.get());
		if (sp.path == Iommu::iommufd)
			sp.destroy_kernel_hwpts();
		// Dropping the kernel space unmaps everything it held.
		if (sp.path == Iommu::type1) {
			::close(sp.container);
			sp.container = -1;
		} else {
			kabi::iommu_destroy dd{sizeof(dd), sp.kernel_ioas};
			if (Status s = sp.call(iommufd_->fd, kabi::IOMMU_DESTROY, "IOMMU_DESTROY", &dd,
					       "(kernel ioas " + std::to_string(sp.kernel_ioas) + ")");
			    !s && result)
				result = s;
			sp.kernel_ioas = 0;
		}
		sp.bytes.v.store(0, std::memory_order_relaxed);
		// Dead from here on (stats() may still read its counters): no attach finds it,
		// and it holds no fd.
		sp.iommufd.reset();
		t.spaces.erase(std::remove_if(t.spaces.begin(), t.spaces.end(),
					      [&](const std::weak_ptr<Space> &w) {
						      return w.lock().get() == &sp;
					      }),
			       t.spaces.end());
	}
	space_.reset();
	return result;
}

void Device::close()
{
	if (closed_)
		return;
	closed_ = true;
	if (space_ != nullptr)
		(void)detach();
	if (ctl_id_ != 0)
		(void)ctx_.destroy(ctl_id_);
	ctl_id_ = 0;
	if (device_fd_ >= 0)
		::close(device_fd_);
	device_fd_ = -1;
	Table &t = table();
	std::lock_guard guard(t.lock);
	if (gstate_ != nullptr) {
		auto &open = gstate_->open;
		open.erase(std::remove(open.begin(), open.end(), bdf_), open.end());
	}
	gstate_.reset();
	iommufd_.reset();
}

Result<Region> Device::region(uint32_t index) const
{
	if (device_fd_ < 0)
		return Status::error(-ENODEV, "vfio {}: no device fd (type1: attach first)",
				     bdf_);
	vfio_region_info ri{};
	ri.argsz = sizeof(ri);
	ri.index = index;
	if (::ioctl(device_fd_, VFIO_DEVICE_GET_REGION_INFO, &ri) != 0) {
		const int err = errno;
		return Status::error(-err, "vfio {}: VFIO_DEVICE_GET_REGION_INFO {} failed: {}",
				     bdf_, index, std::strerror(err));
	}
	return Region{index, ri.size, ri.offset, ri.flags};
}

Status Device::read(uint32_t index, uint64_t offset, void *buf, size_t len) const
{
	Result<Region> r = region(index);
	if (!r)
		return r.status();
	if (offset > r->size || len > r->size - offset)
		return Status::error(-EINVAL, "vfio {}: read 0x{:x}+{} is outside region "
				     "{} (0x{:x} bytes)", bdf_, offset, len, index,
				     r->size);
	const ssize_t n = ::pread(device_fd_, buf, len, static_cast<off_t>(r->offset + offset));
	if (n != static_cast<ssize_t>(len))
		return Status::error(n < 0 ? -errno : -EIO, "vfio {}: read of region {} at 0x{:x}"
				     " failed", bdf_, index, offset);
	return {};
}

Status Device::write(uint32_t index, uint64_t offset, const void *buf, size_t len) const
{
	Result<Region> r = region(index);
	if (!r)
		return r.status();
	if (offset > r->size || len > r->size - offset)
		return Status::error(-EINVAL, "vfio {}: write 0x{:x}+{} is outside region "
				     "{} (0x{:x} bytes)", bdf_, offset, len, index,
				     r->size);
	const ssize_t n = ::pwrite(device_fd_, buf, len, static_cast<off_t>(r->offset + offset));
	if (n != static_cast<ssize_t>(len))
		return Status::error(n < 0 ? -errno : -EIO, "vfio {}: write of region {} at 0x{:x}"
				     " failed", bdf_, index, offset);
	return {};
}

} // namespace iodp::vfio
