/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The C API: the kernel's size rules around each command, then the C++ call.
 *
 * copy_in() is copy_struct_from_user(): a size below the command's minimum is EINVAL, bytes
 * past what iodp knows must be zero (E2BIG), a shorter struct is zero-extended. Replies go
 * back as min(size, sizeof) bytes.
 */
#include "ext.h"

#include <iodp/ctl.h>
#include <iodp/iodp.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <sys/uio.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

using iodp::Result;
using iodp::Status;
using iodp::ctl::Ctx;

namespace {
int fail(iodp_ctx *ctx, const Status &s, iodp_extack *ext);
}

struct iodp_ctx {
	explicit iodp_ctx(uint64_t serial_) : serial(serial_) {}
	const uint64_t serial;
	Ctx ctx;
	iodp::ctl::Extensions ext{ctx};
};

Ctx &iodp::ctl::ctx_of(struct iodp_ctx *c)
{
	return c->ctx;
}

iodp::ctl::Extensions &iodp::ctl::ext_of(struct iodp_ctx *c)
{
	return c->ext;
}

int iodp::ctl::c_api_fail(struct iodp_ctx *ctx, const Status &s)
{
	return fail(ctx, s, nullptr);
}

namespace {

#define OFFSETOFEND(type, field) (offsetof(type, field) + sizeof(((type *)nullptr)->field))

/* The layouts are the kernel's; a change here breaks every ported caller. */
static_assert(sizeof(struct iodp_destroy) == 8);
static_assert(sizeof(struct iodp_ioas_alloc) == 12);
static_assert(sizeof(struct iodp_ioas_allow_iovas) == 24);
static_assert(sizeof(struct iodp_ioas_copy) == 40);
static_assert(sizeof(struct iodp_ioas_iova_ranges) == 32);
static_assert(sizeof(struct iodp_ioas_map) == 40);
static_assert(sizeof(struct iodp_ioas_unmap) == 24);
static_assert(sizeof(struct iodp_option) == 24);
static_assert(sizeof(struct iodp_hwpt_alloc) == 48 &&
	      offsetof(struct iodp_hwpt_alloc, fault_id) == 40);
static_assert(sizeof(struct iodp_hw_info) == 40 &&
	      offsetof(struct iodp_hw_info, out_capabilities) == 32);
static_assert(sizeof(struct iodp_hwpt_set_dirty_tracking) == 16);
static_assert(sizeof(struct iodp_hwpt_get_dirty_bitmap) == 48);
static_assert(sizeof(struct iodp_hwpt_invalidate) == 32);
static_assert(sizeof(struct iodp_fault_alloc) == 16);
static_assert(sizeof(struct iodp_hwpt_vtd_s1) == 24);
static_assert(sizeof(struct iodp_hwpt_arm_smmuv3) == 16);
static_assert(sizeof(struct iodp_hwpt_vtd_s1_invalidate) == 24);
static_assert(sizeof(struct iodp_hwpt_pgfault) == 40);
static_assert(sizeof(struct iodp_hwpt_page_response) == 8);
/* The C++ API's flags are the uAPI's bits (ctl.h), so flags pass through unchanged. */
static_assert(iodp::ctl::kMapFixedIova == IODP_IOAS_MAP_FIXED_IOVA &&
	      iodp::ctl::kMapWriteable == IODP_IOAS_MAP_WRITEABLE &&
	      iodp::ctl::kMapReadable == IODP_IOAS_MAP_READABLE);
static_assert(iodp::ctl::kHwptNestParent == IODP_HWPT_ALLOC_NEST_PARENT &&
	      iodp::ctl::kHwptDirtyTracking == IODP_HWPT_ALLOC_DIRTY_TRACKING &&
	      iodp::ctl::kHwptFaultIdValid == IODP_HWPT_FAULT_ID_VALID &&
	      iodp::ctl::kHwptPasid == IODP_HWPT_ALLOC_PASID);
static_assert(iodp::ctl::kVtdS1Sre == IODP_VTD_S1_SRE && iodp::ctl::kVtdS1Eafe == IODP_VTD_S1_EAFE &&
	      iodp::ctl::kVtdS1Wpe == IODP_VTD_S1_WPE);
static_assert(iodp::ctl::kDataVtdS1 == IODP_HWPT_DATA_VTD_S1 &&
	      iodp::ctl::kDataArmSmmuV3 == IODP_HWPT_DATA_ARM_SMMUV3);
static_assert(static_cast<int>(iodp::pgtable::FaultKind::bad_config) == IODP_FAULT_BAD_CONFIG);

} // namespace

/* The C records of the C++ API's faults. */
iodp_hwpt_pgfault iodp::ctl::pgfault_record(const PageFault &f)
{
	iodp_hwpt_pgfault r{};
	r.flags = IODP_PGFAULT_FLAGS_LAST_PAGE | (f.pasid ? IODP_PGFAULT_FLAGS_PASID_VALID : 0);
	r.dev_id = f.dev_id;
	r.pasid = f.pasid.value_or(0);
	r.grpid = f.grpid;
	r.perm = f.access;
	r.addr = f.addr;
	r.length = f.length;
	r.cookie = f.cookie;
	return r;
}

namespace {

iodp_fault_event event_record(const iodp::ctl::FaultEvent &e)
{
	iodp_fault_event r{};
	r.dev_id = e.dev_id;
	r.pasid = e.pasid.value_or(0);
	r.flags = e.pasid ? IODP_FAULT_EVENT_PASID_VALID : 0;
	r.access = e.access;
	r.kind = static_cast<uint8_t>(e.kind); // the same order (static_assert above, device.cc)
	r.stage = e.stage;
	r.level = e.level;
	r.addr = e.addr;
	return r;
}

/** The last failure per (thread, context); contexts are told apart by a serial number. */
thread_local std::unordered_map<uint64_t, std::string> t_last_error;
std::atomic<uint64_t> g_next_serial{1};

int fail(iodp_ctx *ctx, const Status &s, iodp_extack *ext)
{
	if (ext != nullptr)
		std::snprintf(ext->msg, sizeof(ext->msg), "%s", s.message().c_str());
	if (ctx != nullptr) {
		if (t_last_error.size() > 64)
			t_last_error.clear();
		t_last_error[ctx->serial] = s.message();
	}
	return s.code();
}

/*
 * The caller's memory is read and written like the kernel's copy_from_user/copy_to_user: a
 * bad address (unmapped, PROT_NONE, read-only for a reply) is EFAULT, not a crash.
 * process_vm_readv/writev on our own pid does the copy in the kernel, which reports the
 * fault; where a sandbox forbids them (ENOSYS, EPERM) the copy is a plain memcpy.
 */
bool user_copy(void *dst, const void *src, size_t n, bool to_user)
{
	if (n == 0)
		return true;
	if (src == nullptr || dst == nullptr)
		return false;
	static std::atomic<bool> plain{false};
	if (!plain.load(std::memory_order_relaxed)) {
		iovec local{to_user ? const_cast<void *>(src) : dst, n};
		iovec remote{to_user ? dst : const_cast<void *>(src), n};
		const ssize_t r = to_user ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
					  : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
		if (r == static_cast<ssize_t>(n))
			return true;
		if (r >= 0 || (errno != ENOSYS && errno != EPERM))
			return false; // a part, or nothing, was there: EFAULT
		plain.store(true, std::memory_order_relaxed);
	}
	std::memcpy(dst, src, n);
	return true;
}

const void *uptr(uint64_t p)
{
	return reinterpret_cast<const void *>(static_cast<uintptr_t>(p));
}

/** Read @p n bytes of the caller's at @p src (EFAULT naming @p what when it cannot). */
Status read_user(void *dst, const void *src, size_t n, const char *what)
{
	if (!user_copy(dst, src, n, false))
		return Status::error(-EFAULT, "{}: cannot read {} bytes at {}", what, n, src);
	return {};
}

Status write_user(void *dst, const void *src, size_t n, const char *what)
{
	if (!user_copy(dst, src, n, true))
		return Status::error(-EFAULT, "{}: cannot write {} bytes at {}", what, n, dst);
	return {};
}

/** The caller's array of @p num entries of @p T into @p out (ENOMEM, EFAULT). */
template <class T>
Status read_array(uint64_t user, uint32_t num, std::vector<T> *out, const char *what)
{
	if (num != 0 && user == 0)
		return Status::error(-EFAULT, "{} is NULL", what);
	// The kernel copies such arrays in, so one that is not all there is EFAULT whatever its
	// length: look at its last byte before allocating for it (a count of 2^32 must not
	// become a 64 GiB allocation; under ASan that aborts instead of throwing).
	if (num != 0) {
		const uint64_t bytes = uint64_t{num} * sizeof(T);
		uint8_t last;
		if (user + bytes - 1 < user ||
		    !read_user(&last, uptr(user + bytes - 1), 1, what).ok())
			return Status::error(-EFAULT, "{}: {} entries at 0x{:x} are not all readable",
					     what, num, user);
	}
	out->resize(num); // bad_alloc: ENOMEM, from run()
	return read_user(out->data(), uptr(user), size_t{num} * sizeof(T), what);
}

/**
 * copy_struct_from_user(): the size word first, then min(size, sizeof(T)) bytes (the rest
 * zero-filled), then every byte past sizeof(T) must be zero (E2BIG).
 */
template <class T> Status copy_in(T &k, const void *arg, size_t min_size, const char *name)
{
	if (arg == nullptr)
		return Status::error(-EFAULT, "{}: the argument is NULL", name);
	uint32_t size;
	if (!user_copy(&size, arg, sizeof(size), false))
		return Status::error(-EFAULT, "{}: cannot read the argument at {}", name, arg);
	if (size < min_size)
		return Status::error(-EINVAL, "{}: size {} is below the minimum {}", name, size,
				     min_size);
	std::memset(&k, 0, sizeof(k));
	if (!user_copy(&k, arg, std::min<size_t>(size, sizeof(T)), false))
		return Status::error(-EFAULT, "{}: cannot read {} bytes at {}", name, size, arg);
	const auto *bytes = static_cast<const unsigned char *>(arg);
	unsigned char chunk[256];
	for (size_t off = sizeof(T); off < size; off += sizeof(chunk)) {
		const size_t n = std::min<size_t>(sizeof(chunk), size - off);
		if (!user_copy(chunk, bytes + off, n, false))
			return Status::error(-EFAULT, "{}: cannot read {} bytes at {}", name, size,
					     arg);
		for (size_t i = 0; i < n; i++)
			if (chunk[i] != 0)
				return Status::error(-E2BIG, "{}: byte {} of {} is not zero; iodp "
						     "knows the first {}", name, off + i, size,
						     sizeof(T));
	}
	return {};
}

/** The reply: min(size, sizeof(T)) bytes (the size word was readable in copy_in). */
template <class T> Status copy_out(const T &k, void *arg, const char *name)
{
	if (!user_copy(arg, &k, std::min<size_t>(k.size, sizeof(T)), true))
		return Status::error(-EFAULT, "{}: cannot write the reply at {}", name, arg);
	return {};
}

/**
 * Run one command: size rules, the handler, the reply. @p reply_on_error: the command
 * reports something on failure as well (IOVA_RANGES' count, INVALIDATE's entries handled).
 */
template <class T>
int run(iodp_ctx *ctx, T *arg, iodp_extack *ext, size_t min_size, const char *name,
	Status (*handler)(Ctx &, T &), bool reply_on_error = false)
{
	if (ctx == nullptr)
		return fail(nullptr, Status::error(-EINVAL, "{}: no context", name), ext);
	T k;
	if (Status s = copy_in(k, arg, min_size, name); !s)
		return fail(ctx, s, ext);
	Status s;
	try {
		s = handler(ctx->ctx, k);
	} catch (const std::bad_alloc &) {
		// A container or string that could not grow, here or in lib/ctl: the call
		// is ENOMEM (the fail-nth test checks that it changed nothing).
		s = Status::error(-ENOMEM, "out of memory");
	}
	if (s || reply_on_error)
		if (Status w = copy_out(k, arg, name); !w)
			return fail(ctx, w, ext);
	if (!s)
		return fail(ctx, Status::error(s.code(), "{}: {}", name, s.message()), ext);
	if (ext != nullptr)
		ext->msg[0] = '\0';
	return 0;
}

Status reserved_zero(uint64_t value, const char *field)
{
	if (value != 0)
		return Status::error(-EOPNOTSUPP, "{} is {:#x}, not 0", field, value);
	return {};
}

template <class T> Status take(Result<T> r, T *out)
{
	if (!r)
		return r.status();
	*out = *r;
	return {};
}

/* Handlers ---------------------------------------------------------------------------------- */

Status do_destroy(Ctx &c, struct iodp_destroy &k)
{
	return c.destroy(k.id);
}

Status do_ioas_alloc(Ctx &c, struct iodp_ioas_alloc &k)
{
	if (k.flags != 0)
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}", k.flags);
	return take(c.ioas_alloc(), &k.out_ioas_id);
}

Status do_allow_iovas(Ctx &c, struct iodp_ioas_allow_iovas &k)
{
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	std::vector<struct iodp_iova_range> src;
	if (Status s = read_array(k.allowed_iovas, k.num_iovas, &src, "allowed_iovas"); !s)
		return Status::error(s.code(), "ioas {} allow: {}", k.ioas_id,
				     s.message());
	std::vector<iodp::ctl::IovaRange> ranges(k.num_iovas);
	for (uint32_t i = 0; i < k.num_iovas; i++)
		ranges[i] = {src[i].start, src[i].last};
	return c.ioas_allow_iovas(k.ioas_id, ranges);
}

Status do_copy(Ctx &c, struct iodp_ioas_copy &k)
{
	return take(c.ioas_copy(k.dst_ioas_id, k.src_ioas_id, k.flags, k.dst_iova, k.src_iova,
				k.length),
		    &k.dst_iova);
}

Status do_iova_ranges(Ctx &c, struct iodp_ioas_iova_ranges &k)
{
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	uint64_t align = 0;
	Result<std::vector<iodp::ctl::IovaRange>> r = c.ioas_iova_ranges(k.ioas_id, &align);
	if (!r)
		return r.status();
	const uint32_t capacity = k.num_iovas;
	if (capacity != 0 && k.allowed_iovas == 0)
		return Status::error(-EFAULT, "ioas {} ranges: allowed_iovas is NULL", k.ioas_id);
	std::vector<struct iodp_iova_range> out;
	for (size_t i = 0; i < r->size() && i < capacity; i++)
		out.push_back({(*r)[i].start, (*r)[i].last});
	if (Status s = write_user(reinterpret_cast<void *>(static_cast<uintptr_t>(k.allowed_iovas)),
				  out.data(), out.size() * sizeof(out[0]), "allowed_iovas");
	    !s)
		return s;
	k.num_iovas = static_cast<uint32_t>(r->size());
	k.out_iova_alignment = align;
	if (r->size() > capacity)
		return Status::error(-EMSGSIZE, "ioas {} has {} ranges; the array holds {}",
				     k.ioas_id, r->size(), capacity);
	return {};
}

Status do_map(Ctx &c, struct iodp_ioas_map &k)
{
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	return take(c.ioas_map(k.ioas_id, k.flags, k.iova,
			       reinterpret_cast<void *>(static_cast<uintptr_t>(k.user_va)),
			       k.length),
		    &k.iova);
}

Status do_unmap(Ctx &c, struct iodp_ioas_unmap &k)
{
	return take(c.ioas_unmap(k.ioas_id, k.iova, k.length), &k.length);
}

Status do_option(Ctx &c, struct iodp_option &k)
{
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	return c.option(k.option_id, k.op, k.object_id, &k.val64);
}

/** A driver data blob: at least @p min and at most sizeof(T) bytes; EINVAL otherwise. */
template <class T> Status read_blob(const struct iodp_hwpt_alloc &k, size_t min, T *out)
{
	if (k.data_len < min || k.data_len > sizeof(T))
		return Status::error(-EINVAL, "data_len {}: the type {} record is {} bytes",
				     k.data_len, k.data_type, sizeof(T));
	if (k.data_uptr == 0)
		return Status::error(-EFAULT, "data_uptr is NULL");
	std::memset(out, 0, sizeof(T));
	return read_user(out, uptr(k.data_uptr), k.data_len, "data_uptr");
}

Status do_hwpt_alloc(Ctx &c, struct iodp_hwpt_alloc &k)
{
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	uint32_t r2;
	std::memcpy(&r2, k.__reserved2, sizeof(r2));
	if (Status s = reserved_zero(r2, "__reserved2"); !s)
		return s;
	if (Status s = iodp::ctl::hwpt_alloc_kernel_order(c, k); !s)
		return s;
	switch (k.data_type) {
	case IODP_HWPT_DATA_NONE:
		return take(c.hwpt_alloc_paging(k.dev_id, k.pt_id, k.flags, k.fault_id),
			    &k.out_hwpt_id);
	case IODP_HWPT_DATA_VTD_S1: {
		struct iodp_hwpt_vtd_s1 v;
		if (Status s = read_blob(k, OFFSETOFEND(struct iodp_hwpt_vtd_s1, __reserved), &v);
		    !s)
			return s;
		if (v.__reserved != 0)
			return Status::error(-EOPNOTSUPP, "vtd_s1 __reserved is {:#x}, not 0",
					     v.__reserved);
		iodp::ctl::VtdS1Data d{v.flags, v.pgtbl_addr, v.addr_width};
		return take(c.hwpt_alloc_nested(k.dev_id, k.pt_id, k.flags, k.fault_id, d),
			    &k.out_hwpt_id);
	}
	case IODP_HWPT_DATA_ARM_SMMUV3: {
		struct iodp_hwpt_arm_smmuv3 v;
		if (Status s = read_blob(k, sizeof(v), &v); !s)
			return s;
		iodp::ctl::SmmuV3Data d{{le64toh(v.ste[0]), le64toh(v.ste[1])}};
		return take(c.hwpt_alloc_nested(k.dev_id, k.pt_id, k.flags, k.fault_id, d),
			    &k.out_hwpt_id);
	}
	default:
		return Status::error(-EOPNOTSUPP, "unknown data_type {}", k.data_type);
	}
}

Status do_hw_info(Ctx &c, struct iodp_hw_info &k)
{
	if (k.flags & ~IODP_HW_INFO_FLAG_INPUT_TYPE)
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}",
				     k.flags & ~IODP_HW_INFO_FLAG_INPUT_TYPE);
	if (k.__reserved[0] | k.__reserved[1] | k.__reserved[2])
		return Status::error(-EOPNOTSUPP, "__reserved is not 0");
	if (k.data_len != 0 && k.data_uptr == 0)
		return Status::error(-EFAULT, "data_uptr is NULL");
	Result<iodp::ctl::HwInfo> info = c.get_hw_info(k.dev_id);
	if (!info)
		return info.status();
	const uint64_t caps = iodp::ctl::hw_capabilities(*info);
	// The kernel's record for the device's model unless the caller asks for another.
	Result<iodp::ctl::HwInfoRecord> rec = iodp::ctl::hw_info_record(
		*info, (k.flags & IODP_HW_INFO_FLAG_INPUT_TYPE) ? k.in_data_type : 0);
	if (!rec)
		return rec.status();
	auto *dst = reinterpret_cast<unsigned char *>(static_cast<uintptr_t>(k.data_uptr));
	const size_t n = std::min<size_t>(k.data_len, rec->len);
	if (Status s = write_user(dst, rec->bytes, n, "data_uptr"); !s)
		return s;
	// Past the record the caller's buffer is cleared, as clear_user() does.
	static const unsigned char zero[256] = {};
	for (size_t off = n; off < k.data_len; off += sizeof(zero))
		if (Status s = write_user(dst + off, zero,
					  std::min<size_t>(sizeof(zero), k.data_len - off),
					  "data_uptr");
		    !s)
			return s;
	k.data_len = static_cast<uint32_t>(rec->len);
	k.in_data_type = rec->type;
	k.out_max_pasid_log2 = info->pasid_bits;
	k.out_capabilities = caps;
	return {};
}

Status do_set_dirty(Ctx &c, struct iodp_hwpt_set_dirty_tracking &k)
{
	if (k.flags & ~IODP_HWPT_SET_DIRTY_TRACKING_ENABLE)
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}", k.flags);
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	return c.hwpt_set_dirty_tracking(k.hwpt_id, k.flags & IODP_HWPT_SET_DIRTY_TRACKING_ENABLE);
}

Status do_dirty_bitmap(Ctx &c, struct iodp_hwpt_get_dirty_bitmap &k)
{
	if (k.flags & ~IODP_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}", k.flags);
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	const bool no_clear = k.flags & IODP_HWPT_GET_DIRTY_BITMAP_NO_CLEAR;
	auto *user = reinterpret_cast<uint64_t *>(static_cast<uintptr_t>(k.data));
	const uint64_t ps = k.page_size;
	const bool sane = ps >= 4096 && (ps & (ps - 1)) == 0 && k.length != 0 &&
			  ((k.iova | k.length) & (ps - 1)) == 0 &&
			  k.iova + (k.length - 1) >= k.iova && user != nullptr;
	if (!sane) // lib/ctl says what is wrong before it touches the bitmap
		return c.hwpt_get_dirty_bitmap(k.hwpt_id, k.iova, k.length, ps, no_clear, user);
	// The bits are ORed into the caller's bitmap: read it, set bits in a copy, write it
	// back; a window of 2^20 words at a time, so a huge range needs no huge buffer.
	// Each window is first written back unchanged, so an unwritable bitmap fails before
	// any dirty bit is cleared.
	constexpr uint64_t kWords = 1u << 20;
	const uint64_t pages = k.length / ps; // >= 1; the last page may be partial: no
	std::vector<uint64_t> words;
	for (uint64_t first = 0; first < pages; first += kWords * 64) {
		const uint64_t n = std::min(pages - first, kWords * 64);
		words.resize((n + 63) / 64);
		uint64_t *at = user + first / 64;
		const size_t bytes = words.size() * sizeof(uint64_t);
		if (Status s = read_user(words.data(), at, bytes, "dirty bitmap data"); !s)
			return s;
		if (Status s = write_user(at, words.data(), bytes, "dirty bitmap data"); !s)
			return s;
		if (Status s = c.hwpt_get_dirty_bitmap(k.hwpt_id, k.iova + first * ps, n * ps, ps,
						       no_clear, words.data());
		    !s)
			return s;
		if (Status s = write_user(at, words.data(), bytes, "dirty bitmap data"); !s)
			return s;
	}
	return {};
}

Status do_invalidate(Ctx &c, struct iodp_hwpt_invalidate &k)
{
	const uint32_t num = k.entry_num;
	k.entry_num = 0;
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	if (Status s = iodp::ctl::invalidate_array_bounds(k.hwpt_id, k.data_uptr != 0,
							  k.entry_len, num);
	    !s)
		return s;
	if (num == 0) // a probe: lib/ctl says whether the type is supported
		return c.hwpt_invalidate(k.hwpt_id, k.data_type, uptr(k.data_uptr), k.entry_len,
					 num, &k.entry_num);
	// The entries are copied in a batch at a time (a bad address is EFAULT at the first
	// entry it covers; those before it are applied and counted, as the kernel does).
	const size_t per = std::max<size_t>(1, 4096 / k.entry_len);
	std::vector<unsigned char> batch;
	for (uint32_t done = 0; done < num;) {
		const uint32_t n = static_cast<uint32_t>(std::min<size_t>(per, num - done));
		batch.resize(size_t{n} * k.entry_len);
		const auto *src = static_cast<const unsigned char *>(uptr(k.data_uptr)) +
				  size_t{done} * k.entry_len;
		if (Status s = read_user(batch.data(), src, batch.size(), "data_uptr"); !s)
			return Status::error(s.code(), "hwpt {} invalidate entry {}: {}", k.hwpt_id,
					     done, s.message());
		uint32_t handled = 0;
		Status s = c.hwpt_invalidate(k.hwpt_id, k.data_type, batch.data(), k.entry_len,
					     n, &handled);
		k.entry_num = done + handled;
		if (!s) {
			// Its entry numbers count from the batch: say which entry of the array.
			if (done == 0)
				return s;
			return Status::error(s.code(), "{} (entry {} of the array)",
					     s.message(), done + handled);
		}
		done += n;
	}
	return {};
}

Status do_fault_alloc(Ctx &c, struct iodp_fault_alloc &k)
{
	if (k.flags != 0)
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}", k.flags);
	int fd = -1;
	if (Status s = take(c.fault_queue_alloc(&fd), &k.out_fault_id); !s)
		return s;
	k.out_fault_fd = static_cast<uint32_t>(fd);
	return {};
}

Status do_device_alloc(Ctx &c, struct iodp_device_alloc &k)
{
	if (k.flags != 0)
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}", k.flags);
	if (std::memchr(k.name, '\0', sizeof(k.name)) == nullptr)
		return Status::error(-EINVAL, "device name is not NUL-terminated within {} bytes",
				     IODP_DEVICE_NAME_LEN);
	if (k.model != IODP_IOMMU_VTD && k.model != IODP_IOMMU_SMMUV3)
		return Status::error(-EOPNOTSUPP, "device {}: unknown IOMMU model {}", k.name,
				     k.model);
	iodp::ctl::DeviceSpec spec;
	spec.name = k.name;
	spec.model = k.model == IODP_IOMMU_VTD ? iodp::ctl::IommuModel::vtd
					       : iodp::ctl::IommuModel::smmuv3;
	spec.group = k.group_id;
	spec.rid = k.rid;
	Result<uint32_t> id = c.device_create(spec);
	if (!id)
		return id.status();
	k.out_dev_id = *id;
	Result<iodp::ctl::ObjectInfo> info = c.object_info(*id);
	if (!info) // gone already: another thread destroyed it (the id was valid)
		return info.status();
	k.group_id = info->group;
	return {};
}

Result<std::optional<uint32_t>> attach_pasid(Ctx &c, uint32_t flags, uint32_t pasid)
{
	constexpr uint32_t kKnown = IODP_ATTACH_PASID | IODP_ATTACH_VPASID;
	if (flags & ~kKnown)
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}", flags & ~kKnown);
	if (flags & IODP_ATTACH_VPASID) {
		Result<uint32_t> p = c.vpasid_lookup(pasid);
		if (!p)
			return p.status();
		return std::optional<uint32_t>(*p);
	}
	if (flags & IODP_ATTACH_PASID)
		return std::optional<uint32_t>(pasid);
	return std::optional<uint32_t>();
}

Status do_attach(Ctx &c, struct iodp_device_attach &k)
{
	Result<std::optional<uint32_t>> pasid = attach_pasid(c, k.flags, k.pasid);
	if (!pasid)
		return pasid.status();
	return take(c.device_attach(k.dev_id, *pasid, k.pt_id), &k.pt_id);
}

Status do_detach(Ctx &c, struct iodp_device_detach &k)
{
	Result<std::optional<uint32_t>> pasid = attach_pasid(c, k.flags, k.pasid);
	if (!pasid)
		return pasid.status();
	return c.device_detach(k.dev_id, *pasid);
}

Status do_fault_read(Ctx &c, struct iodp_fault_read &k)
{
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	if (k.num != 0 && k.records == 0)
		return Status::error(-EFAULT, "records is NULL");
	// Probe the whole array first: records taken from the queue must not be lost.
	std::vector<iodp_hwpt_pgfault> probe;
	if (Status s = read_array(k.records, k.num, &probe, "records"); !s)
		return s;
	if (Status s = write_user(reinterpret_cast<void *>(static_cast<uintptr_t>(k.records)),
				  probe.data(), probe.size() * sizeof(probe[0]), "records");
	    !s)
		return s;
	Result<std::vector<iodp::ctl::PageFault>> r = c.fault_read(k.fault_id, k.num);
	if (!r)
		return r.status();
	for (size_t i = 0; i < r->size(); i++)
		probe[i] = iodp::ctl::pgfault_record((*r)[i]);
	if (Status s = write_user(reinterpret_cast<void *>(static_cast<uintptr_t>(k.records)),
				  probe.data(), r->size() * sizeof(iodp_hwpt_pgfault), "records");
	    !s)
		return s;
	k.num = static_cast<uint32_t>(r->size());
	return {};
}

Status do_fault_respond(Ctx &c, struct iodp_fault_respond &k)
{
	const uint32_t num = k.num;
	k.num = 0;
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	std::vector<struct iodp_hwpt_page_response> r;
	if (Status s = read_array(k.responses, num, &r, "responses"); !s)
		return s;
	for (uint32_t i = 0; i < num; i++) {
		if (Status s = c.fault_respond(k.fault_id, r[i].cookie, r[i].code); !s)
			return Status::error(s.code(), "response {}: {}", i, s.message());
		k.num = i + 1;
	}
	return {};
}

Status do_fault_events(Ctx &c, struct iodp_fault_events_read &k)
{
	if (k.flags != 0)
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}", k.flags);
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	if (k.num != 0 && k.events == 0)
		return Status::error(-EFAULT, "events is NULL");
	// Probe the whole array first: events taken from the log must not be lost.
	std::vector<iodp_fault_event> probe;
	if (Status s = read_array(k.events, k.num, &probe, "events"); !s)
		return s;
	auto *dst = reinterpret_cast<void *>(static_cast<uintptr_t>(k.events));
	if (Status s = write_user(dst, probe.data(), probe.size() * sizeof(probe[0]), "events"); !s)
		return s;
	uint64_t lost = 0;
	std::vector<iodp::ctl::FaultEvent> e = c.fault_events(k.num, &lost);
	for (size_t i = 0; i < e.size(); i++)
		probe[i] = event_record(e[i]);
	if (Status s = write_user(dst, probe.data(), e.size() * sizeof(iodp_fault_event), "events");
	    !s)
		return s;
	k.num = static_cast<uint32_t>(e.size());
	k.out_lost = lost;
	return {};
}

Status do_vpasid(Ctx &c, struct iodp_vpasid_set &k)
{
	if (k.flags & ~IODP_VPASID_CLEAR)
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}", k.flags);
	if (k.flags & IODP_VPASID_CLEAR)
		return c.vpasid_clear(k.vpasid);
	return take(c.vpasid_set(k.vpasid, k.ppasid), &k.ppasid);
}

Status do_translate(Ctx &c, struct iodp_translate &k)
{
	if (k.flags & ~IODP_TRANSLATE_PASID)
		return Status::error(-EOPNOTSUPP, "unknown flags {:#x}", k.flags);
	if (Status s = reserved_zero(k.__reserved, "__reserved"); !s)
		return s;
	if (k.access & ~0xfu)
		return Status::error(-EINVAL, "access {:#x} has unknown bits", k.access);
	std::optional<uint32_t> pasid;
	if (k.flags & IODP_TRANSLATE_PASID)
		pasid = k.pasid;
	Result<iodp::ctl::Translated> t =
		c.translate(k.dev_id, pasid, k.iova, static_cast<uint8_t>(k.access));
	if (!t)
		return t.status();
	k.out_addr = t->host;
	k.out_page_size = t->page_size;
	k.out_perm = t->perm;
	k.out_fault = static_cast<uint32_t>(t->fault);
	k.out_stage = t->stage;
	k.out_level = t->level;
	k.out_cookie = t->cookie;
	return {};
}

} // namespace

Status iodp::ctl::copy_from_user(void *dst, const void *src, size_t n, const char *what)
{
	return read_user(dst, src, n, what);
}

/* Entry points ------------------------------------------------------------------------------ */

extern "C" {

int iodp_ctx_open(struct iodp_ctx **out)
{
	if (out == nullptr)
		return -EINVAL;
	auto *c = new (std::nothrow)
		iodp_ctx(g_next_serial.fetch_add(1, std::memory_order_relaxed));
	if (c == nullptr)
		return -ENOMEM;
	*out = c;
	return 0;
}

void iodp_ctx_close(struct iodp_ctx *ctx)
{
	delete ctx;
}

const char *iodp_last_error(struct iodp_ctx *ctx)
{
	if (ctx == nullptr)
		return "";
	auto it = t_last_error.find(ctx->serial);
	return it == t_last_error.end() ? "" : it->second.c_str();
}

/*
 * Every command, once (the kernel's iommufd_ioctl_ops[]): its ioctl number, its C entry
 * point and struct, the struct's last field the caller must pass (the minimum size), its
 * name in messages, its handler, and whether the reply is written back on failure too (as
 * the kernel does where out fields say how far the call got).
 */
#define IODP_COMMANDS(X)                                                                        \
	X(IODP_IOMMU_DESTROY, iodp_destroy, iodp_destroy, id, "DESTROY", do_destroy, false)     \
	X(IODP_IOMMU_IOAS_ALLOC, iodp_ioas_alloc, iodp_ioas_alloc,                              \
	  out_ioas_id, "IOAS_ALLOC", do_ioas_alloc, false)                                      \
	X(IODP_IOMMU_IOAS_ALLOW_IOVAS, iodp_ioas_allow_iovas, iodp_ioas_allow_iovas,            \
	  allowed_iovas, "IOAS_ALLOW_IOVAS", do_allow_iovas, false)                             \
	X(IODP_IOMMU_IOAS_COPY, iodp_ioas_copy, iodp_ioas_copy,                                 \
	  src_iova, "IOAS_COPY", do_copy, false)                                                \
	X(IODP_IOMMU_IOAS_IOVA_RANGES, iodp_ioas_iova_ranges, iodp_ioas_iova_ranges,            \
	  out_iova_alignment, "IOAS_IOVA_RANGES", do_iova_ranges, true)                         \
	X(IODP_IOMMU_IOAS_MAP, iodp_ioas_map, iodp_ioas_map, iova, "IOAS_MAP", do_map, false)   \
	X(IODP_IOMMU_IOAS_UNMAP, iodp_ioas_unmap, iodp_ioas_unmap,                              \
	  length, "IOAS_UNMAP", do_unmap, false)                                                \
	X(IODP_IOMMU_OPTION, iodp_option, iodp_option, val64, "OPTION", do_option, false)       \
	X(IODP_IOMMU_HWPT_ALLOC, iodp_hwpt_alloc, iodp_hwpt_alloc,                              \
	  __reserved, "HWPT_ALLOC", do_hwpt_alloc, false)                                       \
	X(IODP_IOMMU_GET_HW_INFO, iodp_get_hw_info, iodp_hw_info,                               \
	  __reserved, "GET_HW_INFO", do_hw_info, false)                                         \
	X(IODP_IOMMU_HWPT_SET_DIRTY_TRACKING, iodp_hwpt_set_dirty_tracking, iodp_hwpt_set_dirty_tracking,\
	  __reserved, "HWPT_SET_DIRTY_TRACKING", do_set_dirty, false)                           \
	X(IODP_IOMMU_HWPT_GET_DIRTY_BITMAP, iodp_hwpt_get_dirty_bitmap, iodp_hwpt_get_dirty_bitmap,\
	  data, "HWPT_GET_DIRTY_BITMAP", do_dirty_bitmap, false)                                \
	X(IODP_IOMMU_HWPT_INVALIDATE, iodp_hwpt_invalidate, iodp_hwpt_invalidate,               \
	  __reserved, "HWPT_INVALIDATE", do_invalidate, true)                                   \
	X(IODP_IOMMU_FAULT_QUEUE_ALLOC, iodp_fault_queue_alloc, iodp_fault_alloc,               \
	  out_fault_fd, "FAULT_QUEUE_ALLOC", do_fault_alloc, false)                             \
	X(IODP_DEVICE_ALLOC, iodp_device_alloc, iodp_device_alloc,                              \
	  name, "DEVICE_ALLOC", do_device_alloc, false)                                         \
	X(IODP_DEVICE_ATTACH, iodp_device_attach, iodp_device_attach,                           \
	  pasid, "DEVICE_ATTACH", do_attach, false)                                             \
	X(IODP_DEVICE_DETACH, iodp_device_detach, iodp_device_detach,                           \
	  pasid, "DEVICE_DETACH", do_detach, false)                                             \
	X(IODP_FAULT_READ, iodp_fault_read, iodp_fault_read,                                    \
	  records, "FAULT_READ", do_fault_read, false)                                          \
	X(IODP_FAULT_RESPOND, iodp_fault_respond, iodp_fault_respond,                           \
	  responses, "FAULT_RESPOND", do_fault_respond, true)                                   \
	X(IODP_FAULT_EVENTS_READ, iodp_fault_events_read, iodp_fault_events_read,               \
	  events, "FAULT_EVENTS_READ", do_fault_events, false)                                  \
	X(IODP_VPASID_SET, iodp_vpasid_set, iodp_vpasid_set,                                    \
	  ppasid, "VPASID_SET", do_vpasid, false)                                               \
	X(IODP_TRANSLATE, iodp_translate, iodp_translate,                                       \
	  iova, "TRANSLATE", do_translate, false)

#define IODP_ENTRY_POINT(number, fn, type, last_field, name, handler, reply_on_error)          \
	int fn(struct iodp_ctx *ctx, struct type *cmd, struct iodp_extack *ext)                 \
	{                                                                                       \
		return run<struct type>(ctx, cmd, ext, OFFSETOFEND(struct type, last_field), name,\
					handler, reply_on_error);                               \
	}
IODP_COMMANDS(IODP_ENTRY_POINT)
#undef IODP_ENTRY_POINT

int iodp_ioctl(struct iodp_ctx *ctx, unsigned long cmd, void *arg)
{
	int rc;
	if (ctx != nullptr) // the test commands' own objects (ext.h)
		if (std::optional<Result<int>> r = ctx->ext.before(cmd, arg)) {
			if (*r)
				return **r;
			errno = -fail(ctx, r->status(), nullptr);
			return -1;
		}
	switch (cmd) {
#define IODP_CASE(number, fn, type, ...)                                                      \
	case number:                                                                            \
		rc = fn(ctx, static_cast<struct type *>(arg), nullptr);                         \
		break;
		IODP_COMMANDS(IODP_CASE)
#undef IODP_CASE
	default: // the kernel's test commands, VFIO compatibility (ext.h); else ENOTTY
		if (ctx == nullptr) {
			rc = fail(nullptr, Status::error(-EINVAL, "iodp_ioctl: no context"), nullptr);
			break;
		}
		if (Result<int> r = ctx->ext.ioctl(cmd, arg); !r)
			rc = fail(ctx, r.status(), nullptr);
		else
			return *r;
		break;
	}
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	return 0;
}

} // extern "C"
