/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The C API as a command stream on one context: each step picks a command, fills its struct
 * from the input, sets the size word (exact, minimum, longer with a zero tail, or any), names
 * objects the stream created, and points its pointers at real buffers (sometimes at a guard
 * page or a small integer: EFAULT, never a crash). Maps name a real 1 MiB host buffer whose
 * first bytes come from the input, so nested HWPTs walk fuzzed tables. Every failure has an
 * errno and a message.
 */
#include <iodp/iodp.h>

#include <fuzzer/FuzzedDataProvider.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <vector>

namespace {

constexpr size_t kBuf = 1u << 20;   // host memory maps may name
constexpr size_t kArea = 64u << 10; // arrays, records, blobs

struct Memory {
	std::byte *buf, *area, *guard;
	Memory()
	{
		// [buf][area][guard page]
		void *p = mmap(nullptr, kBuf + kArea + 4096, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			std::abort();
		buf = static_cast<std::byte *>(p);
		area = buf + kBuf;
		guard = area + kArea;
		if (mprotect(guard, 4096, PROT_NONE) != 0)
			std::abort();
	}
};

#define OFFSETOFEND(type, field) (offsetof(type, field) + sizeof(((type *)nullptr)->field))

struct Command {
	unsigned long number;
	size_t size, min_size;
};

const Command kCommands[] = {
	{IODP_IOMMU_DESTROY, sizeof(struct iodp_destroy), OFFSETOFEND(struct iodp_destroy, id)},
	{IODP_IOMMU_IOAS_ALLOC, sizeof(struct iodp_ioas_alloc), OFFSETOFEND(struct iodp_ioas_alloc, out_ioas_id)},
	{IODP_IOMMU_IOAS_ALLOW_IOVAS, sizeof(struct iodp_ioas_allow_iovas),
	 OFFSETOFEND(struct iodp_ioas_allow_iovas, allowed_iovas)},
	{IODP_IOMMU_IOAS_COPY, sizeof(struct iodp_ioas_copy), OFFSETOFEND(struct iodp_ioas_copy, src_iova)},
	{IODP_IOMMU_IOAS_IOVA_RANGES, sizeof(struct iodp_ioas_iova_ranges),
	 OFFSETOFEND(struct iodp_ioas_iova_ranges, out_iova_alignment)},
	{IODP_IOMMU_IOAS_MAP, sizeof(struct iodp_ioas_map), OFFSETOFEND(struct iodp_ioas_map, iova)},
	{IODP_IOMMU_IOAS_UNMAP, sizeof(struct iodp_ioas_unmap), OFFSETOFEND(struct iodp_ioas_unmap, length)},
	{IODP_IOMMU_OPTION, sizeof(struct iodp_option), OFFSETOFEND(struct iodp_option, val64)},
	{IODP_IOMMU_HWPT_ALLOC, sizeof(struct iodp_hwpt_alloc), OFFSETOFEND(struct iodp_hwpt_alloc, __reserved)},
	{IODP_IOMMU_GET_HW_INFO, sizeof(struct iodp_hw_info), OFFSETOFEND(struct iodp_hw_info, __reserved)},
	{IODP_IOMMU_HWPT_SET_DIRTY_TRACKING, sizeof(struct iodp_hwpt_set_dirty_tracking),
	 OFFSETOFEND(struct iodp_hwpt_set_dirty_tracking, __reserved)},
	{IODP_IOMMU_HWPT_GET_DIRTY_BITMAP, sizeof(struct iodp_hwpt_get_dirty_bitmap),
	 OFFSETOFEND(struct iodp_hwpt_get_dirty_bitmap, data)},
	{IODP_IOMMU_HWPT_INVALIDATE, sizeof(struct iodp_hwpt_invalidate),
	 OFFSETOFEND(struct iodp_hwpt_invalidate, __reserved)},
	{IODP_IOMMU_FAULT_QUEUE_ALLOC, sizeof(struct iodp_fault_alloc),
	 OFFSETOFEND(struct iodp_fault_alloc, out_fault_fd)},
	{IODP_DEVICE_ALLOC, sizeof(struct iodp_device_alloc), OFFSETOFEND(struct iodp_device_alloc, name)},
	{IODP_DEVICE_ATTACH, sizeof(struct iodp_device_attach), OFFSETOFEND(struct iodp_device_attach, pasid)},
	{IODP_DEVICE_DETACH, sizeof(struct iodp_device_detach), OFFSETOFEND(struct iodp_device_detach, pasid)},
	{IODP_FAULT_READ, sizeof(struct iodp_fault_read), OFFSETOFEND(struct iodp_fault_read, records)},
	{IODP_FAULT_RESPOND, sizeof(struct iodp_fault_respond), OFFSETOFEND(struct iodp_fault_respond, responses)},
	{IODP_FAULT_EVENTS_READ, sizeof(struct iodp_fault_events_read),
	 OFFSETOFEND(struct iodp_fault_events_read, events)},
	{IODP_VPASID_SET, sizeof(struct iodp_vpasid_set), OFFSETOFEND(struct iodp_vpasid_set, ppasid)},
	{IODP_TRANSLATE, sizeof(struct iodp_translate), OFFSETOFEND(struct iodp_translate, iova)},
};

union Arg {
	struct iodp_destroy destroy;
	struct iodp_ioas_alloc ioas_alloc;
	struct iodp_ioas_allow_iovas allow;
	struct iodp_ioas_copy copy;
	struct iodp_ioas_iova_ranges ranges;
	struct iodp_ioas_map map;
	struct iodp_ioas_unmap unmap;
	struct iodp_option option;
	struct iodp_hwpt_alloc hwpt;
	struct iodp_hw_info info;
	struct iodp_hwpt_set_dirty_tracking dirty;
	struct iodp_hwpt_get_dirty_bitmap bitmap;
	struct iodp_hwpt_invalidate inv;
	struct iodp_fault_alloc fault;
	struct iodp_device_alloc dev;
	struct iodp_device_attach attach;
	struct iodp_device_detach detach;
	struct iodp_fault_read fread;
	struct iodp_fault_respond fresp;
	struct iodp_fault_events_read events;
	struct iodp_vpasid_set vpasid;
	struct iodp_translate xlate;
	unsigned char raw[512];
};

struct Stream {
	FuzzedDataProvider &in;
	Memory &m;
	std::vector<uint32_t> ids{0, 1, 2, 3};

	uint32_t id() { return ids[in.ConsumeIntegralInRange<size_t>(0, ids.size() - 1)]; }

	/** A pointer to @p bytes of real memory, or now and then one that faults. */
	uint64_t ptr(size_t bytes)
	{
		switch (in.ConsumeIntegralInRange<unsigned>(0, 15)) {
		case 0:
			return 0;
		case 1:
			return 16; // low, unmapped
		case 2:
			return reinterpret_cast<uintptr_t>(m.guard) - (bytes / 2); // runs into it
		default: {
			const size_t room = kArea > bytes ? kArea - bytes : 0;
			return reinterpret_cast<uintptr_t>(m.area) +
			       in.ConsumeIntegralInRange<size_t>(0, room);
		}
		}
	}
	/** A count of @p each-byte entries that fits the area. */
	uint32_t count(size_t each) { return in.ConsumeIntegralInRange<uint32_t>(0, kArea / each); }

	/** Names, pointers and lengths: what a caller of the real kernel would have. */
	void fix(unsigned c, Arg &a)
	{
		switch (kCommands[c].number) {
		case IODP_IOMMU_DESTROY: a.destroy.id = id(); break;
		case IODP_IOMMU_IOAS_ALLOW_IOVAS:
			a.allow.ioas_id = id();
			a.allow.num_iovas = count(sizeof(struct iodp_iova_range));
			a.allow.allowed_iovas = ptr(a.allow.num_iovas * sizeof(struct iodp_iova_range));
			break;
		case IODP_IOMMU_IOAS_COPY:
			a.copy.dst_ioas_id = id();
			a.copy.src_ioas_id = id();
			break;
		case IODP_IOMMU_IOAS_IOVA_RANGES:
			a.ranges.ioas_id = id();
			a.ranges.num_iovas = count(sizeof(struct iodp_iova_range));
			a.ranges.allowed_iovas = ptr(a.ranges.num_iovas * sizeof(struct iodp_iova_range));
			break;
		case IODP_IOMMU_IOAS_MAP: {
			// Real memory only: a kernel pins it, iodp walks it.
			a.map.ioas_id = id();
			const size_t off = a.map.user_va % kBuf & ~size_t{0xfff};
			a.map.user_va = reinterpret_cast<uintptr_t>(m.buf + off);
			a.map.length %= kBuf - off + 1;
			break;
		}
		case IODP_IOMMU_IOAS_UNMAP: a.unmap.ioas_id = id(); break;
		case IODP_IOMMU_OPTION: a.option.object_id = id(); break;
		case IODP_IOMMU_HWPT_ALLOC:
			a.hwpt.dev_id = id();
			a.hwpt.pt_id = id();
			a.hwpt.fault_id = id();
			a.hwpt.data_len %= 64;
			a.hwpt.data_uptr = a.hwpt.data_type == 0 && in.ConsumeBool() ? 0
											 : ptr(64);
			break;
		case IODP_IOMMU_GET_HW_INFO:
			a.info.dev_id = id();
			a.info.data_len %= 1024;
			a.info.data_uptr = ptr(a.info.data_len);
			break;
		case IODP_IOMMU_HWPT_SET_DIRTY_TRACKING: a.dirty.hwpt_id = id(); break;
		case IODP_IOMMU_HWPT_GET_DIRTY_BITMAP: {
			a.bitmap.hwpt_id = id();
			a.bitmap.page_size = 4096ull << in.ConsumeIntegralInRange<unsigned>(0, 18);
			// Bits the bitmap needs: length / page_size, at most the area's.
			a.bitmap.length %= a.bitmap.page_size * (kArea * 8) + 1;
			a.bitmap.data = ptr(a.bitmap.length / a.bitmap.page_size / 8 + 8);
			break;
		}
		case IODP_IOMMU_HWPT_INVALIDATE:
			a.inv.hwpt_id = id();
			a.inv.entry_len %= 64;
			a.inv.entry_num = a.inv.entry_len ? count(a.inv.entry_len) : a.inv.entry_num % 4;
			a.inv.data_uptr = ptr(size_t{a.inv.entry_len} * a.inv.entry_num);
			break;
		case IODP_DEVICE_ALLOC: a.dev.name[sizeof(a.dev.name) - 1] = in.ConsumeBool() ? 0 : 'x'; break;
		case IODP_DEVICE_ATTACH:
			a.attach.dev_id = id();
			a.attach.pt_id = id();
			a.attach.pasid %= 64;
			break;
		case IODP_DEVICE_DETACH:
			a.detach.dev_id = id();
			a.detach.pasid %= 64;
			break;
		case IODP_FAULT_READ:
			a.fread.fault_id = id();
			a.fread.num = count(sizeof(struct iodp_hwpt_pgfault));
			a.fread.records = ptr(a.fread.num * sizeof(struct iodp_hwpt_pgfault));
			break;
		case IODP_FAULT_RESPOND:
			a.fresp.fault_id = id();
			a.fresp.num = count(sizeof(struct iodp_hwpt_page_response));
			a.fresp.responses = ptr(a.fresp.num * sizeof(struct iodp_hwpt_page_response));
			break;
		case IODP_FAULT_EVENTS_READ:
			a.events.num = count(sizeof(struct iodp_fault_event));
			a.events.events = ptr(a.events.num * sizeof(struct iodp_fault_event));
			break;
		case IODP_TRANSLATE: a.xlate.dev_id = id(); break;
		default: break;
		}
	}

	void learn(unsigned c, const Arg &a)
	{
		switch (kCommands[c].number) {
		case IODP_IOMMU_IOAS_ALLOC: ids.push_back(a.ioas_alloc.out_ioas_id); break;
		case IODP_IOMMU_HWPT_ALLOC: ids.push_back(a.hwpt.out_hwpt_id); break;
		case IODP_IOMMU_FAULT_QUEUE_ALLOC: ids.push_back(a.fault.out_fault_id); break;
		case IODP_DEVICE_ALLOC: ids.push_back(a.dev.out_dev_id); break;
		case IODP_DEVICE_ATTACH: ids.push_back(a.attach.pt_id); break;
		default: break;
		}
	}
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static Memory m;
	FuzzedDataProvider in(data, size);
	// Guest memory first: nested HWPTs read their tables from what maps name.
	const std::vector<uint8_t> ram = in.ConsumeBytes<uint8_t>(in.ConsumeIntegral<uint16_t>());
	if (!ram.empty())
		std::memcpy(m.buf, ram.data(), ram.size());
	std::memset(m.buf + ram.size(), 0, 65536 - ram.size()); // ram.size() <= 65535
	std::memset(m.area, 0, kArea);

	iodp_ctx *ctx = nullptr;
	if (iodp_ctx_open(&ctx) != 0)
		std::abort();
	Stream s{in, m};
	for (unsigned step = 0; step < 64 && in.remaining_bytes() > 0; step++) {
		const unsigned c = in.ConsumeIntegralInRange<unsigned>(0, std::size(kCommands) - 1);
		const Command &cmd = kCommands[c];
		Arg a;
		std::memset(&a, 0, sizeof(a));
		const std::vector<uint8_t> body = in.ConsumeBytes<uint8_t>(cmd.size);
		if (!body.empty())
			std::memcpy(a.raw, body.data(), body.size());
		s.fix(c, a);
		// Arrays the command reads get the input's bytes too.
		const std::vector<uint8_t> arr = in.ConsumeBytes<uint8_t>(in.ConsumeIntegral<uint8_t>());
		if (!arr.empty())
			std::memcpy(m.area, arr.data(), arr.size());
		uint32_t sz;
		switch (in.ConsumeIntegralInRange<unsigned>(0, 7)) {
		case 0: sz = static_cast<uint32_t>(cmd.min_size); break;
		case 1: sz = static_cast<uint32_t>(cmd.size + 8); break; // zero tail: a.raw is zeroed
		case 2: sz = in.ConsumeIntegralInRange<uint32_t>(0, sizeof(a.raw)); break;
		default: sz = static_cast<uint32_t>(cmd.size); break;
		}
		std::memcpy(a.raw, &sz, sizeof(sz));
		errno = 0;
		if (iodp_ioctl(ctx, cmd.number, &a) == 0) {
			s.learn(c, a);
		} else if (errno <= 0 || iodp_last_error(ctx)[0] == '\0') {
			std::abort(); // a failure without an errno or a reason
		}
	}
	iodp_ctx_close(ctx);
	return 0;
}
