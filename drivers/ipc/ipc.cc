/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * drivers/ipc: the app's side of a driver in another process.
 *
 * The control thread (service hook) owns the socket: it accepts one driver, maps what the
 * driver shares, and turns MAP / UNMAP into IOAS calls. Workers own the queues: they read
 * and write the shared rings in DPDK's rte_ring layout (what the driver's
 * rte_ring_*_elem calls expect), but keep their own copies of the indices they produce or
 * consume and of the ring geometry. Everything the driver can write is data, never an
 * address: a driver scribbling over the ring headers can stop its own device, never make a
 * worker read or write outside the rings.
 */
#include <iodp/iodp.h>
#include <iodp/ipc.h>
#include <iodp/ipc_proto.h>
#include <iodp/ring.h>
#include <iodp/text.h>

#include <fmt/core.h>

#include <rte_log.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

/* `--log-level=iodp.ipc:debug` (or `iodp.*:...`) sets it. */
RTE_LOG_REGISTER(iodp_logtype_ipc, iodp.ipc, INFO);
#define IPC_LOG(level, fmt, ...) \
	rte_log(RTE_LOG_##level, iodp_logtype_ipc, "iodp.ipc: " fmt "\n", __VA_ARGS__)

namespace iodp::ipc {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kHugePage = 2u << 20;
constexpr uint32_t kElem = sizeof(dev::Request);
/** Messages handled per service call: a burst of MAPs must not starve the others. */
constexpr unsigned kMsgsPerService = 16;

const char *const kKeys[] = {"path", "queues", "entries", "format", "group", nullptr};
const char *const kFormats[] = {"vtd", "smmu", nullptr};

static_assert(sizeof(dev::Completion) == kElem, "one element size for both rings");

struct Ipc;

struct alignas(64) Queue {
	Ipc *ipc = nullptr;
	uint16_t id = 0;
	rte_ring *req = nullptr;
	rte_ring *cpl = nullptr;
	// The worker's own copy; what the driver writes is never used as an address. Rings
	// without RING_F_EXACT_SZ hold one less than their size: the mask is the capacity.
	uint32_t mask = 0;
	uint32_t req_head = 0; ///< request ring: our consumer index
	uint32_t cpl_head = 0; ///< completion ring: our producer index
	bool broken = false;
	/** Driver address minus app address of guest memory (set before the driver has rings). */
	std::atomic<int64_t> to_driver{0};
	dev::StatCounter requests, completions, faults;
};

struct Ipc {
	dev::Device *dev = nullptr;
	std::string path;
	uint16_t queues = 1;
	uint32_t entries = 1024;
	ctl::IommuModel model = ctl::IommuModel::vtd;
	uint32_t group = 0;

	int listen_fd = -1;
	int conn_fd = -1;
	bool listening = false; ///< we created path (and unlink it at close)

	int rings_fd = -1;
	std::byte *rings = nullptr;
	uint64_t rings_size = 0;
	uint64_t ring_stride = 0;
	bool rings_huge = false;

	std::byte *guest = nullptr;

	uint32_t ioas = 0;
	uint32_t hwpt = 0;
	std::atomic<uint64_t> maps{0}, unmaps{0};
	std::unique_ptr<Queue[]> q;

	// What info() describes; written by the control thread, read by telemetry too.
	mutable std::mutex info_lock;
	uint64_t guest_size = 0;
	bool guest_huge = false;
	std::string driver_name;
	pid_t driver_pid = 0;
};

Ipc &ipc_of(const dev::Device &d)
{
	return *static_cast<Ipc *>(d.priv);
}

bool on_hugetlbfs(int fd)
{
	struct statfs fs {};
	return fstatfs(fd, &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC;
}

Result<std::unique_ptr<dev::Device>> probe(ctl::Ctx &ctx, const dev::DevArgs &a)
{
	auto p = std::make_unique<Ipc>();
	const std::string *path = a.find("path");
	p->path = path != nullptr ? *path : "/tmp/iodp-" + a.name() + ".sock";
	if (p->path.empty() || p->path.size() >= sizeof(sockaddr_un{}.sun_path))
		return a.blame("path", -EINVAL, "{}: path='{}' is not a usable unix socket path "
			       "(1 to {} bytes)", a.name(), p->path,
			       sizeof(sockaddr_un{}.sun_path) - 1);
	Result<uint64_t> queues = a.get_uint("queues", 1, 1, dev::kMaxQueues);
	Result<uint64_t> entries = a.get_uint("entries", 1024, 64, 65536);
	Result<unsigned> format = a.get_choice("format", kFormats, 0);
	Result<uint64_t> group = a.get_uint("group", 0, 0, UINT32_MAX);
	for (const Status *s : {&queues.status(), &entries.status(), &format.status(),
				&group.status()})
		if (!s->ok())
			return *s;
	if ((*entries & (*entries - 1)) != 0)
		return a.blame("entries", -EINVAL, "{}: entries={} is not a power of two",
			       a.name(), *entries);
	p->queues = static_cast<uint16_t>(*queues);
	p->entries = static_cast<uint32_t>(*entries);
	p->model = *format == 0 ? ctl::IommuModel::vtd : ctl::IommuModel::smmuv3;
	p->group = static_cast<uint32_t>(*group);
	auto d = std::make_unique<dev::Device>(driver(), a.name(), ctx, p->queues);
	p->dev = d.get();
	d->priv = p.release();
	return d;
}

/* Control side --------------------------------------------------------------------------- */

Status listen_on(Ipc &p)
{
	const char *name = p.dev->name().c_str();
	sockaddr_un sa{};
	sa.sun_family = AF_UNIX;
	std::memcpy(sa.sun_path, p.path.c_str(), p.path.size() + 1);
	struct stat st {};
	if (lstat(p.path.c_str(), &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return Status::error(-EEXIST, "{}: path={} exists and is not a socket", name,
					     p.path);
		// A socket left by a process that is gone is reused; a live one is not stolen.
		const int probe_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		const bool live = probe_fd >= 0 &&
				  connect(probe_fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0;
		if (probe_fd >= 0)
			::close(probe_fd);
		if (live)
			return Status::error(-EADDRINUSE, "{}: path={}: another process is listening "
					     "there", name, p.path);
		unlink(p.path.c_str());
	}
	p.listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p.listen_fd < 0)
		return Status::error(-errno, "{}: socket: {}", name, std::strerror(errno));
	if (bind(p.listen_fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) != 0 ||
	    listen(p.listen_fd, 4) != 0)
		return Status::error(-errno, "{}: cannot listen on path={}: {}", name,
				     p.path, std::strerror(errno));
	p.listening = true;
	return {};
}

/** The queues' rings in one sealed memfd, on hugepages when there are any. */
Status make_rings(Ipc &p)
{
	const char *name = p.dev->name().c_str();
	Result<size_t> ring_bytes = mem::ring_bytes(kElem, p.entries);
	if (!ring_bytes)
		return Status::error(-EINVAL, "{}: entries={}: no such ring", name, p.entries);
	p.ring_stride = (uint64_t{*ring_bytes} + kPage - 1) & ~(kPage - 1);
	const uint64_t need = p.ring_stride * 2 * p.queues;
	const std::string mname = "iodp-" + p.dev->name() + "-rings";
	p.rings_fd = memfd_create(mname.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB);
	p.rings_size = (need + kHugePage - 1) & ~(kHugePage - 1);
	if (p.rings_fd >= 0 && ftruncate(p.rings_fd, static_cast<off_t>(p.rings_size)) == 0) {
		p.rings = static_cast<std::byte *>(mmap(nullptr, p.rings_size, PROT_READ | PROT_WRITE,
							MAP_SHARED | MAP_POPULATE, p.rings_fd, 0));
		if (p.rings == MAP_FAILED)
			p.rings = nullptr;
	}
	p.rings_huge = p.rings != nullptr;
	if (!p.rings_huge) {
		// No free hugepages: ordinary shared memory works the same, with more TLB misses.
		if (p.rings_fd >= 0)
			::close(p.rings_fd);
		p.rings_size = need;
		p.rings_fd = memfd_create(mname.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (p.rings_fd < 0 || ftruncate(p.rings_fd, static_cast<off_t>(p.rings_size)) != 0)
			return Status::error(-errno, "{}: cannot make the rings' memfd: {}", name,
					     std::strerror(errno));
		p.rings = static_cast<std::byte *>(mmap(nullptr, p.rings_size, PROT_READ | PROT_WRITE,
							MAP_SHARED | MAP_POPULATE, p.rings_fd, 0));
		if (p.rings == MAP_FAILED) {
			p.rings = nullptr;
			return Status::error(-errno, "{}: cannot map the rings: {}", name,
					     std::strerror(errno));
		}
	}
	// The driver maps the same file: it must not be able to shrink it under us.
	if (fcntl(p.rings_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
		return Status::error(-errno, "{}: cannot seal the rings' memfd: {}", name,
				     std::strerror(errno));
	p.q = std::make_unique<Queue[]>(p.queues);
	for (uint16_t i = 0; i < p.queues; i++) {
		Queue &q = p.q[i];
		q.ipc = &p;
		q.id = i;
		q.req = reinterpret_cast<rte_ring *>(p.rings + 2 * i * p.ring_stride);
		q.cpl = reinterpret_cast<rte_ring *>(p.rings + (2 * i + 1) * p.ring_stride);
		constexpr unsigned kFlags = RING_F_SP_ENQ | RING_F_SC_DEQ;
		Status s = mem::ring_init(q.req, fmt::format("{:.16}_req{}", name, i), p.entries,
					  kFlags);
		if (s)
			s = mem::ring_init(q.cpl, fmt::format("{:.16}_cpl{}", name, i), p.entries,
					   kFlags);
		if (!s)
			return Status::error(s.code(), "{}: rte_ring_init failed for queue {}", name, i);
		q.mask = p.entries - 1;
	}
	return {};
}

Status configure(dev::Device &d)
{
	Ipc &p = ipc_of(d);
	ctl::Ctx &ctx = d.ctx();
	Status s = listen_on(p);
	if (s.ok())
		s = make_rings(p);
	if (!s.ok())
		return s;
	ctl::DeviceSpec spec;
	spec.name = d.name();
	spec.model = p.model;
	spec.group = p.group;
	spec.rid = dev::next_rid();
	Result<uint32_t> id = ctx.device_create(spec);
	if (!id)
		return id.status();
	d.ctl_id = *id;
	Result<uint32_t> ioas = ctx.ioas_alloc();
	if (!ioas)
		return ioas.status();
	p.ioas = *ioas;
	Result<uint32_t> h = ctx.device_attach(d.ctl_id, std::nullopt, p.ioas);
	if (!h)
		return h.status();
	p.hwpt = *h;
	IPC_LOG(INFO, "%s: waiting for a driver on %s (rings on %s)", d.name().c_str(),
		p.path.c_str(), p.rings_huge ? "hugepages" : "4 KiB pages");
	return {};
}

Status start(dev::Device &d)
{
	Ipc &p = ipc_of(d);
	dev::FastPath &fp = d.fast_path();
	fp.rx_burst = [](void *qp, dev::Request *reqs, uint16_t n) -> uint16_t {
		Queue &q = *static_cast<Queue *>(qp);
		if (q.broken)
			return 0;
		const uint32_t tail = __atomic_load_n(&q.req->prod.tail, __ATOMIC_ACQUIRE);
		const uint32_t avail = tail - q.req_head;
		if (avail == 0)
			return 0;
		if (avail > q.mask) [[unlikely]] {
			q.broken = true;
			q.ipc->dev->mark_gone("driver corrupted a request ring (its producer index "
					      "is past what the ring holds)");
			return 0;
		}
		if (avail < n)
			n = static_cast<uint16_t>(avail);
		const auto *slots = reinterpret_cast<const dev::Request *>(q.req + 1);
		for (uint16_t i = 0; i < n; i++)
			reqs[i] = slots[(q.req_head + i) & q.mask];
		q.req_head += n;
		__atomic_store_n(&q.req->cons.head, q.req_head, __ATOMIC_RELAXED);
		__atomic_store_n(&q.req->cons.tail, q.req_head, __ATOMIC_RELEASE);
		q.requests.add(n);
		return n;
	};
	fp.tx_burst = [](void *qp, const dev::Completion *cpls, uint16_t n) -> uint16_t {
		Queue &q = *static_cast<Queue *>(qp);
		if (q.broken)
			return 0;
		const uint32_t cons = __atomic_load_n(&q.cpl->cons.tail, __ATOMIC_ACQUIRE);
		const uint32_t used = q.cpl_head - cons;
		if (used > q.mask) [[unlikely]] {
			q.broken = true;
			q.ipc->dev->mark_gone("driver corrupted a completion ring (its consumer "
					      "index is past what the app produced)");
			return 0;
		}
		if (q.mask - used < n)
			n = static_cast<uint16_t>(q.mask - used);
		const int64_t to_driver = q.to_driver.load(std::memory_order_relaxed);
		auto *slots = reinterpret_cast<dev::Completion *>(q.cpl + 1);
		uint64_t done = 0, faults = 0;
		for (uint16_t i = 0; i < n; i++) {
			dev::Completion c = cpls[i];
			if (c.host != 0)
				c.host += static_cast<uint64_t>(to_driver);
			done += c.flags & IODP_CPL_LAST;
			faults += c.fault != 0;
			slots[(q.cpl_head + i) & q.mask] = c;
		}
		q.cpl_head += n;
		__atomic_store_n(&q.cpl->prod.head, q.cpl_head, __ATOMIC_RELAXED);
		__atomic_store_n(&q.cpl->prod.tail, q.cpl_head, __ATOMIC_RELEASE);
		q.completions.add(done);
		q.faults.add(faults);
		return n;
	};
	for (uint16_t i = 0; i < p.queues; i++)
		fp.queue[i] = &p.q[i];
	return {};
}

void stop(dev::Device &) {}

void close_conn(Ipc &p)
{
	if (p.conn_fd >= 0)
		::close(p.conn_fd);
	p.conn_fd = -1;
}

void close(dev::Device &d)
{
	Ipc *p = &ipc_of(d);
	ctl::Ctx &ctx = d.ctx();
	close_conn(*p);
	if (p->listen_fd >= 0)
		::close(p->listen_fd);
	if (p->listening)
		unlink(p->path.c_str());
	// The lib/ctl objects first (their removal syncs every worker), then the memory
	// they pointed at.
	if (d.ctl_id != 0) {
		(void)ctx.device_detach(d.ctl_id, std::nullopt);
		for (uint32_t id : {p->ioas, d.ctl_id})
			if (id != 0)
				(void)ctx.destroy(id);
	}
	if (p->guest != nullptr)
		munmap(p->guest, p->guest_size);
	if (p->rings != nullptr)
		munmap(p->rings, p->rings_size);
	if (p->rings_fd >= 0)
		::close(p->rings_fd);
	d.priv = nullptr;
	delete p;
}

void info(const dev::Device &d, dev::DevInfo *i)
{
	const Ipc &p = ipc_of(d);
	char buf[200];
	std::lock_guard g(p.info_lock);
	if (p.guest_size != 0) // attached
		std::snprintf(buf, sizeof(buf), "driver '%s' (pid %d) on %s: %llu MiB guest memory "
			      "on %s, rings on %s", p.driver_name.c_str(), static_cast<int>(p.driver_pid),
			      p.path.c_str(), static_cast<unsigned long long>(p.guest_size >> 20),
			      p.guest_huge ? "hugepages" : "4 KiB pages",
			      p.rings_huge ? "hugepages" : "4 KiB pages");
	else
		std::snprintf(buf, sizeof(buf), "waiting for a driver on %s", p.path.c_str());
	i->description = buf;
	i->group = p.group;
	i->hwpt = p.hwpt;
	i->ioas = p.ioas;
}

void stats(const dev::Device &d, dev::DevStats *s)
{
	const Ipc &p = ipc_of(d);
	for (uint16_t i = 0; i < p.queues; i++) {
		s->requests += p.q[i].requests.get();
		s->completions += p.q[i].completions.get();
		s->faults += p.q[i].faults.get();
	}
	s->commands = p.unmaps.load(std::memory_order_relaxed);
}

void stats_reset(dev::Device &d)
{
	Ipc &p = ipc_of(d);
	for (uint16_t i = 0; i < p.queues; i++)
		for (dev::StatCounter *c : {&p.q[i].requests, &p.q[i].completions, &p.q[i].faults})
			c->reset();
}

/* The socket ----------------------------------------------------------------------------- */

void send_msg(Ipc &p, const iodp_ipc_msg &m, int fd = -1)
{
	iovec iov{const_cast<iodp_ipc_msg *>(&m), sizeof(m)};
	msghdr mh{};
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
	if (fd >= 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	// A driver that does not read its replies loses them, not the app its thread.
	(void)sendmsg(p.conn_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

iodp_ipc_msg reply_to(const iodp_ipc_msg &m, const Status &s)
{
	iodp_ipc_msg r{};
	r.type = IODP_IPC_REPLY;
	r.seq = m.seq;
	r.status = s.code();
	if (!s.ok())
		std::snprintf(r.error, sizeof(r.error), "%s", s.message().c_str());
	return r;
}

/** The driver broke the protocol: its device is stopped (the engine closes it). */
template <class... Args>
void protocol_error(Ipc &p, fmt::format_string<Args...> format, Args &&...args)
{
	const std::string why = fmt::vformat(format, fmt::make_format_args(args...));
	close_conn(p);
	p.dev->mark_gone(("driver protocol error: " + why).c_str());
}

Status attach(Ipc &p, const iodp_ipc_hello &h, int fd)
{
	const char *name = p.dev->name().c_str();
	if (h.version != IODP_IPC_VERSION)
		return Status::error(-EPROTO, "{}: protocol version {} (this app speaks {})", name,
				     h.version, IODP_IPC_VERSION);
	if (fd < 0)
		return Status::error(-EBADF, "{}: HELLO carried no guest memory fd", name);
	struct stat st {};
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return Status::error(-EBADF, "{}: the guest memory fd is not a memfd or file", name);
	if (h.mem_size == 0 || h.mem_size % kPage != 0 ||
	    h.mem_size > static_cast<uint64_t>(st.st_size))
		return Status::error(-EINVAL, "{}: mem_size={} is 0, not a multiple of 4 KiB or "
				     "more than the fd holds ({} bytes)", name,
				     h.mem_size,
				     static_cast<long long>(st.st_size));
	const bool huge = on_hugetlbfs(fd);
	if (huge && h.mem_size % kHugePage != 0)
		return Status::error(-EINVAL, "{}: mem_size={}: guest memory on hugepages is "
				     "shared in whole 2 MiB pages", name,
				     h.mem_size);
	const int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & F_SEAL_SHRINK) == 0)
		return Status::error(-EPERM, "{}: the guest memory fd must be a memfd sealed with "
				     "F_SEAL_SHRINK (a shrinking file would crash the app)", name);
	void *m = mmap(nullptr, h.mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return Status::error(-errno, "{}: cannot map the guest memory: {}", name,
				     std::strerror(errno));
	p.guest = static_cast<std::byte *>(m);
	const int64_t to_driver = static_cast<int64_t>(h.mem_base - reinterpret_cast<uint64_t>(m));
	for (uint16_t i = 0; i < p.queues; i++)
		p.q[i].to_driver.store(to_driver, std::memory_order_relaxed);
	ucred cred{};
	socklen_t len = sizeof(cred);
	(void)getsockopt(p.conn_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
	std::lock_guard g(p.info_lock);
	p.guest_size = h.mem_size;
	p.guest_huge = huge;
	// Another process chose it: no control characters or bad UTF-8 reach logs or JSON.
	p.driver_name = printable(std::string_view(h.name, strnlen(h.name, sizeof(h.name))));
	p.driver_pid = cred.pid;
	return {};
}

Status do_map(Ipc &p, const iodp_ipc_map &m)
{
	const char *name = p.dev->name().c_str();
	if (m.length == 0 || (m.iova | m.offset | m.length) % kPage != 0)
		return Status::error(-EINVAL, "{}: map iova 0x{:x} offset 0x{:x} length 0x{:x}: "
				     "not 4 KiB multiples or empty", name,
				     m.iova,
				     m.offset,
				     m.length);
	if (m.offset >= p.guest_size || m.length > p.guest_size - m.offset)
		return Status::error(-EINVAL, "{}: map offset 0x{:x} length 0x{:x} is outside the "
				     "{} bytes of guest memory shared", name,
				     m.offset,
				     m.length,
				     p.guest_size);
	if (m.flags == 0 || (m.flags & ~(IODP_IPC_MAP_READ | IODP_IPC_MAP_WRITE)) != 0)
		return Status::error(-EINVAL, "{}: map flags 0x{:x} (READ 1, WRITE 2, at least one)",
				     name, m.flags);
	const uint32_t flags = IODP_IOAS_MAP_FIXED_IOVA |
			       ((m.flags & IODP_IPC_MAP_READ) ? IODP_IOAS_MAP_READABLE : 0) |
			       ((m.flags & IODP_IPC_MAP_WRITE) ? IODP_IOAS_MAP_WRITEABLE : 0);
	Result<uint64_t> r = p.dev->ctx().ioas_map(p.ioas, flags, m.iova, p.guest + m.offset,
						   m.length);
	if (r)
		p.maps.fetch_add(1, std::memory_order_relaxed);
	return r.status();
}

/** One message; false when the connection is gone. */
bool handle(Ipc &p, const iodp_ipc_msg &m, int fd)
{
	switch (m.type) {
	case IODP_IPC_HELLO: {
		if (p.guest != nullptr) {
			protocol_error(p, "a second HELLO");
			return false;
		}
		Status s = attach(p, m.u.hello, fd);
		iodp_ipc_msg r = reply_to(m, s);
		if (!s.ok()) {
			// Refused before anything was shared: the device waits for another driver.
			IPC_LOG(WARNING, "%s: driver refused: %s", p.dev->name().c_str(),
				s.message().c_str());
			send_msg(p, r);
			close_conn(p);
			return false;
		}
		r.u.rings = iodp_ipc_rings{p.rings_size, p.ring_stride, p.queues, p.entries, kElem,
					   0, {}};
		std::snprintf(r.u.rings.device, sizeof(r.u.rings.device), "%s",
			      p.dev->name().c_str());
		send_msg(p, r, p.rings_fd);
		IPC_LOG(INFO, "%s: driver '%s' (pid %d) attached, %llu MiB of guest memory",
			p.dev->name().c_str(), p.driver_name.c_str(),
			static_cast<int>(p.driver_pid),
			static_cast<unsigned long long>(p.guest_size >> 20));
		return true;
	}
	case IODP_IPC_MAP:
	case IODP_IPC_UNMAP: {
		if (p.guest == nullptr) {
			protocol_error(p, "{} before HELLO", m.type == IODP_IPC_MAP ? "MAP" : "UNMAP");
			return false;
		}
		iodp_ipc_msg r{};
		if (m.type == IODP_IPC_MAP) {
			r = reply_to(m, do_map(p, m.u.map));
		} else {
			// Returns once no worker can still use what it removed.
			Result<uint64_t> u = p.dev->ctx().ioas_unmap(p.ioas, m.u.unmap.iova,
								     m.u.unmap.length);
			r = reply_to(m, u.status());
			if (u) {
				r.u.unmapped = *u;
				p.unmaps.fetch_add(1, std::memory_order_relaxed);
			}
		}
		send_msg(p, r);
		return true;
	}
	case IODP_IPC_BYE:
		send_msg(p, reply_to(m, {}));
		close_conn(p);
		p.dev->mark_gone("driver detached (BYE)");
		return false;
	default:
		protocol_error(p, "unknown message type {}", m.type);
		return false;
	}
}

/** Take one message: 1 handled, 0 nothing waiting, -1 the connection ended. */
int receive(Ipc &p)
{
	iodp_ipc_msg m{};
	iovec iov{&m, sizeof(m)};
	alignas(cmsghdr) char cbuf[CMSG_SPACE(4 * sizeof(int))];
	msghdr mh{};
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	const ssize_t n = recvmsg(p.conn_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	// Whatever descriptors came with it are ours to close unless HELLO keeps one.
	int fds[4];
	unsigned nfds = 0;
	if (n >= 0)
		for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
				for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) &&
						   nfds < 4; i++)
					std::memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int),
						    sizeof(int));
	auto close_fds = [&] {
		for (unsigned i = 0; i < nfds; i++)
			::close(fds[i]);
	};
	if (n <= 0) {
		close_fds();
		const bool attached = p.guest != nullptr;
		close_conn(p);
		if (attached)
			p.dev->mark_gone(n == 0 ? "driver disconnected without BYE"
						: "driver connection failed");
		return -1;
	}
	if (mh.msg_flags & MSG_CTRUNC) {
		// The kernel closed what did not fit; those that did are ours to close.
		close_fds();
		protocol_error(p, "a message with more file descriptors or control data than "
			       "fit ({} bytes, room for 4 descriptors; HELLO carries one)",
			       sizeof(cbuf));
		return -1;
	}
	if ((mh.msg_flags & MSG_TRUNC) != 0 || static_cast<size_t>(n) != sizeof(m)) {
		close_fds();
		protocol_error(p, "a message of {} bytes{} (messages are {} bytes)", n,
			       (mh.msg_flags & MSG_TRUNC) ? " or more" : "", sizeof(m));
		return -1;
	}
	if (nfds > (m.type == IODP_IPC_HELLO ? 1u : 0u)) {
		close_fds();
		protocol_error(p, "{} file descriptors with a message of type {}", nfds, m.type);
		return -1;
	}
	const int fd = nfds == 1 ? fds[0] : -1;
	const bool alive = handle(p, m, fd);
	if (fd >= 0)
		::close(fd); // mapped (or refused): the mapping keeps the memory
	return alive ? 1 : -1;
}

void service(dev::Device &d)
{
	Ipc &p = ipc_of(d);
	if (d.gone())
		return;
	// One driver at a time: others are told so and let go.
	for (;;) {
		const int c = accept4(p.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0)
			break;
		if (p.conn_fd >= 0 || p.guest != nullptr) {
			iodp_ipc_msg r{};
			r.type = IODP_IPC_REPLY;
			r.status = -EBUSY;
			std::snprintf(r.error, sizeof(r.error), "%s already has a driver (one per "
				      "ipc device)", d.name().c_str());
			(void)send(c, &r, sizeof(r), MSG_DONTWAIT | MSG_NOSIGNAL);
			::close(c);
			continue;
		}
		p.conn_fd = c;
	}
	// Each message (a MAP, an UNMAP, ...) is control work of this device's: it spends the
	// engine's per-pass budget, so that a driver's burst of maps slows only itself.
	for (unsigned i = 0; i < kMsgsPerService && p.conn_fd >= 0 && d.spend_budget(); i++)
		if (receive(p) <= 0)
			break;
}

const dev::DevOps kOps = {configure, start, stop, close, info, stats, stats_reset, service};

const dev::Driver kDriver = {
	"ipc",
	"a device whose driver is another process, attached over a unix socket",
	kKeys,
	&kOps,
	probe,
};

} // namespace

const dev::Driver &driver()
{
	return kDriver;
}

} // namespace iodp::ipc
