/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libiodp-preload.so: /dev/iommu in userspace, for unmodified iommufd programs.
 *
 *   LD_PRELOAD=libiodp-preload.so PROGRAM     (or: iodp-run PROGRAM)
 *
 * open("/dev/iommu") returns a real descriptor (a memfd named "iodp:/dev/iommu") bound to a
 * new iodp context; ioctl() on it goes to iodp_ioctl(). The descriptor a fault queue or a
 * test access hands out is registered too: read()/write() on a fault queue's descriptor are
 * the kernel's fault file (whole struct iommu_hwpt_pgfault records in, page responses out),
 * poll() works on it natively (iodp keeps it readable while records wait). dup, dup2, dup3
 * and fcntl(F_DUPFD, F_DUPFD_CLOEXEC) share the file; the context goes when its last
 * descriptor (the /dev/iommu ones and the fault queue and access ones, which hold it as in
 * the kernel) is closed. Every other descriptor goes straight to libc.
 *
 * What userspace cannot do the same: after fork() the child has a copy of every context
 * (the kernel shares one open file); nothing survives exec(); a descriptor passed to
 * another process over a socket is only a memfd there.
 *
 * Environment: IODP_IOMMUFD_TEST=1 turns on the kernel's test-only commands
 * (IOMMU_TEST_CMD) in every context opened; IODP_RUN_TRACE=1 prints why each failing ioctl
 * failed (iodp_last_error()) to stderr.
 */
/* The wrappers define open and open64 (fcntl and fcntl64) themselves: no redirection. */
#undef _FILE_OFFSET_BITS
#include <iodp/iodp.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <unordered_map>

namespace {

/* The kernel's numbers (ioctl(2) on /dev/iommu); iodp's are the same. */
constexpr unsigned long kFaultQueueAlloc = IODP_IOMMU_FAULT_QUEUE_ALLOC;
constexpr unsigned long kTestCmd = IODP_CMD(0x80 + 32);
constexpr uint32_t kTestOpCreateAccess = 5;

/** One open file: a context, or a fault queue / test access of one. */
struct File {
	enum class Kind { iommufd, fault, access };
	Kind kind = Kind::iommufd;
	iodp_ctx *ctx = nullptr;
	/** Fault queues and accesses keep their context's file alive, as in the kernel. */
	std::shared_ptr<File> owner;
	uint32_t fault_id = 0;
	int access_fd = -1; ///< the number the access was created under (its id in commands)

	~File()
	{
		if (kind == Kind::iommufd)
			iodp_ctx_close(ctx);
		else if (kind == Kind::access)
			(void)iodp_test_access_release(ctx, access_fd);
	}
};

struct Real {
	int (*open)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	int (*close)(int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*fcntl)(int, int, ...);
	int (*ioctl)(int, unsigned long, ...);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
};

template <class F> void bind(F &fn, const char *name)
{
	fn = reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

Real &real()
{
	static Real r = [] {
		Real x{};
		bind(x.open, "open");
		bind(x.openat, "openat");
		bind(x.close, "close");
		bind(x.dup, "dup");
		bind(x.dup2, "dup2");
		bind(x.dup3, "dup3");
		bind(x.fcntl, "fcntl");
		bind(x.ioctl, "ioctl");
		bind(x.read, "read");
		bind(x.write, "write");
		return x;
	}();
	return r;
}

/*
 * The descriptor table. iodp itself reads and writes its own eventfds through these same
 * wrappers, so the lock is never held while iodp runs: lookups copy the shared_ptr out.
 */
std::mutex g_lock;
std::unordered_map<int, std::shared_ptr<File>> g_files;
std::atomic<size_t> g_count{0}; ///< g_files.size(): the common case (none) takes no lock

std::shared_ptr<File> lookup(int fd)
{
	if (fd < 0 || g_count.load(std::memory_order_acquire) == 0)
		return nullptr;
	std::lock_guard<std::mutex> l(g_lock);
	auto it = g_files.find(fd);
	return it == g_files.end() ? nullptr : it->second;
}

/** Bind @p fd to @p f (nullptr: unbind); returns what it was bound to (dropped unlocked). */
std::shared_ptr<File> rebind(int fd, std::shared_ptr<File> f)
{
	std::lock_guard<std::mutex> l(g_lock);
	std::shared_ptr<File> old;
	auto it = g_files.find(fd);
	if (it != g_files.end()) {
		old = std::move(it->second);
		g_files.erase(it);
	}
	if (f)
		g_files.emplace(fd, std::move(f));
	g_count.store(g_files.size(), std::memory_order_release);
	return old;
}

bool is_dev_iommu(const char *path)
{
	return path != nullptr && std::strcmp(path, "/dev/iommu") == 0;
}

int open_iommufd(int flags)
{
	if ((flags & O_ACCMODE) != O_RDWR && (flags & O_ACCMODE) != O_RDONLY &&
	    (flags & O_ACCMODE) != O_WRONLY) {
		errno = EINVAL;
		return -1;
	}
	iodp_ctx *ctx = nullptr;
	if (int rc = iodp_ctx_open(&ctx); rc < 0) {
		errno = -rc;
		return -1;
	}
	const char *test = std::getenv("IODP_IOMMUFD_TEST");
	if (test != nullptr && std::strcmp(test, "1") == 0) {
		if (int rc = iodp_ctx_test_commands(ctx, 1); rc < 0) {
			iodp_ctx_close(ctx);
			errno = -rc;
			return -1;
		}
	}
	const int fd = memfd_create("iodp:/dev/iommu", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0) {
		const int e = errno;
		iodp_ctx_close(ctx);
		errno = e;
		return -1;
	}
	auto f = std::make_shared<File>();
	f->ctx = ctx;
	(void)rebind(fd, std::move(f));
	return fd;
}

/**
 * Whether a descriptor of fault queue @p id of @p ctx is open. The kernel's fault file holds
 * its object, so IOMMU_DESTROY of the queue is EBUSY until the last descriptor is closed.
 */
bool fault_file_open(const iodp_ctx *ctx, uint32_t id)
{
	std::lock_guard<std::mutex> l(g_lock);
	for (const auto &[fd, f] : g_files)
		if (f->kind == File::Kind::fault && f->ctx == ctx && f->fault_id == id)
			return true;
	return false;
}

/** After a command that handed out a descriptor: bind it to its file. */
void register_handed_out(const std::shared_ptr<File> &ctx_file, unsigned long cmd, void *arg)
{
	if (cmd == kFaultQueueAlloc) {
		const auto *k = static_cast<const iodp_fault_alloc *>(arg);
		auto f = std::make_shared<File>();
		f->kind = File::Kind::fault;
		f->ctx = ctx_file->ctx;
		f->owner = ctx_file;
		f->fault_id = k->out_fault_id;
		(void)rebind(static_cast<int>(k->out_fault_fd), std::move(f));
	} else if (cmd == kTestCmd) {
		uint32_t op, out_fd;
		std::memcpy(&op, static_cast<const char *>(arg) + 4, sizeof(op));
		if (op != kTestOpCreateAccess)
			return;
		std::memcpy(&out_fd, static_cast<const char *>(arg) + 16, sizeof(out_fd));
		auto f = std::make_shared<File>();
		f->kind = File::Kind::access;
		f->ctx = ctx_file->ctx;
		f->owner = ctx_file;
		f->access_fd = static_cast<int>(out_fd);
		(void)rebind(static_cast<int>(out_fd), std::move(f));
	}
}

/** IODP_RUN_TRACE=1: print the message of every failing ioctl (iodp_last_error). */
bool trace()
{
	static const bool on = [] {
		const char *v = std::getenv("IODP_RUN_TRACE");
		return v != nullptr && std::strcmp(v, "1") == 0;
	}();
	return on;
}

/** The kernel's answer for an operation a file does not have. */
int no_op(int err)
{
	errno = err;
	return -1;
}

/** A new descriptor @p nfd now names what @p oldfd names. */
int shared(int oldfd, int nfd)
{
	if (nfd >= 0)
		if (std::shared_ptr<File> f = lookup(oldfd))
			(void)rebind(nfd, std::move(f));
	return nfd;
}

int do_open(const char *path, int flags, mode_t mode)
{
	if (is_dev_iommu(path))
		return open_iommufd(flags);
	return real().open(path, flags, mode);
}

int do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	if (is_dev_iommu(path))
		return open_iommufd(flags);
	return real().openat(dirfd, path, flags, mode);
}

mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

} // namespace

extern "C" {

[[gnu::visibility("default")]] int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	const mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return do_open(path, flags, mode);
}

[[gnu::visibility("default")]] int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	const mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return do_open(path, flags, mode);
}

[[gnu::visibility("default")]] int __open_2(const char *path, int flags)
{
	return do_open(path, flags, 0);
}

[[gnu::visibility("default")]] int __open64_2(const char *path, int flags)
{
	return do_open(path, flags, 0);
}

[[gnu::visibility("default")]] int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	const mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return do_openat(dirfd, path, flags, mode);
}

[[gnu::visibility("default")]] int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	const mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return do_openat(dirfd, path, flags, mode);
}

[[gnu::visibility("default")]] int __openat_2(int dirfd, const char *path, int flags)
{
	return do_openat(dirfd, path, flags, 0);
}

[[gnu::visibility("default")]] int __openat64_2(int dirfd, const char *path, int flags)
{
	return do_openat(dirfd, path, flags, 0);
}

[[gnu::visibility("default")]] int close(int fd)
{
	/* Unbind first: the file (and with the last one the context) goes after the close. */
	std::shared_ptr<File> old = lookup(fd) ? rebind(fd, nullptr) : nullptr;
	return real().close(fd);
}

[[gnu::visibility("default")]] int dup(int fd)
{
	return shared(fd, real().dup(fd));
}

[[gnu::visibility("default")]] int dup2(int oldfd, int newfd)
{
	const int rc = real().dup2(oldfd, newfd);
	if (rc >= 0 && oldfd != newfd) {
		std::shared_ptr<File> gone = rebind(newfd, lookup(oldfd));
	}
	return rc;
}

[[gnu::visibility("default")]] int dup3(int oldfd, int newfd, int flags)
{
	const int rc = real().dup3(oldfd, newfd, flags);
	if (rc >= 0) {
		std::shared_ptr<File> gone = rebind(newfd, lookup(oldfd));
	}
	return rc;
}

[[gnu::visibility("default")]] int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	/* Every fcntl argument is an int or a pointer, passed in the same register. */
	void *arg = va_arg(ap, void *);
	va_end(ap);
	const int rc = real().fcntl(fd, cmd, arg);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		return shared(fd, rc);
	return rc;
}

[[gnu::visibility("default")]] int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl(fd, cmd, arg);
}

[[gnu::visibility("default")]] int ioctl(int fd, unsigned long cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	std::shared_ptr<File> f = lookup(fd);
	if (!f)
		return real().ioctl(fd, cmd, arg);
	if (f->kind != File::Kind::iommufd)
		return no_op(ENOTTY); // the kernel's fault and access files have no ioctls
	if (cmd == IODP_IOMMU_DESTROY && arg != nullptr) {
		struct iodp_destroy d;
		std::memcpy(&d, arg, sizeof(d));
		if (d.size == sizeof(d) && fault_file_open(f->ctx, d.id)) {
			if (trace())
				std::fprintf(stderr, "iodp-run: ioctl %#lx on fd %d: fault queue %u "
					     "has an open descriptor\n", cmd, fd, d.id);
			return no_op(EBUSY);
		}
	}
	const int rc = iodp_ioctl(f->ctx, cmd, arg);
	if (rc >= 0)
		register_handed_out(f, cmd, arg);
	else if (trace())
		std::fprintf(stderr, "iodp-run: ioctl %#lx on fd %d: %s\n", cmd, fd,
			     iodp_last_error(f->ctx)); // where the kernel has no message at all
	return rc;
}

[[gnu::visibility("default")]] ssize_t read(int fd, void *buf, size_t count)
{
	std::shared_ptr<File> f = lookup(fd);
	if (!f)
		return real().read(fd, buf, count);
	if (f->kind != File::Kind::fault)
		return no_op(EINVAL); // /dev/iommu and access files have no read
	const long rc = iodp_fault_fd_read(f->ctx, f->fault_id, buf, count);
	return rc < 0 ? no_op(static_cast<int>(-rc)) : rc;
}

[[gnu::visibility("default")]] ssize_t __read_chk(int fd, void *buf, size_t count, size_t)
{
	return read(fd, buf, count);
}

[[gnu::visibility("default")]] ssize_t write(int fd, const void *buf, size_t count)
{
	std::shared_ptr<File> f = lookup(fd);
	if (!f)
		return real().write(fd, buf, count);
	if (f->kind != File::Kind::fault)
		return no_op(EINVAL);
	const long rc = iodp_fault_fd_write(f->ctx, f->fault_id, buf, count);
	return rc < 0 ? no_op(static_cast<int>(-rc)) : rc;
}

} // extern "C"
