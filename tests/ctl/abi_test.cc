/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The C ABI: every command under the kernel's size rules (short, minimum, exact, longer with
 * a zero tail, longer with a non-zero tail), and a table of error paths with their errno and
 * message, through iodp_ioctl as ported code calls it.
 */
#include "ctl_fixture.h"
#ifdef IODP_FAIL_NTH
#include "fail_nth.h"
#endif

#include <iodp/iodp.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <functional>
#include <sys/mman.h>
#include <vector>

namespace iodp::ctl::test {
namespace {

/* C++ sees the functions of the same names first; these name the structs. */
using destroy_cmd = struct iodp_destroy;
using ioas_alloc_cmd = struct iodp_ioas_alloc;
using ioas_allow_iovas_cmd = struct iodp_ioas_allow_iovas;
using ioas_copy_cmd = struct iodp_ioas_copy;
using ioas_iova_ranges_cmd = struct iodp_ioas_iova_ranges;
using ioas_map_cmd = struct iodp_ioas_map;
using ioas_unmap_cmd = struct iodp_ioas_unmap;
using option_cmd = struct iodp_option;
using hwpt_alloc_cmd = struct iodp_hwpt_alloc;
using hwpt_set_dirty_tracking_cmd = struct iodp_hwpt_set_dirty_tracking;
using hwpt_get_dirty_bitmap_cmd = struct iodp_hwpt_get_dirty_bitmap;
using hwpt_invalidate_cmd = struct iodp_hwpt_invalidate;
using device_alloc_cmd = struct iodp_device_alloc;
using device_attach_cmd = struct iodp_device_attach;
using device_detach_cmd = struct iodp_device_detach;
using fault_read_cmd = struct iodp_fault_read;
using fault_respond_cmd = struct iodp_fault_respond;
using fault_events_read_cmd = struct iodp_fault_events_read;
using vpasid_set_cmd = struct iodp_vpasid_set;
using translate_cmd = struct iodp_translate;

#define OFFSETOFEND(type, field) (offsetof(type, field) + sizeof(((type *)nullptr)->field))

/** A context with one of everything, so every command has something valid to act on. */
struct World {
	iodp_ctx *ctx = nullptr;
	HostBuffer buf{4u << 20};
	uint32_t dev = 0, dev2 = 0, ioas = 0, ioas2 = 0, hwpt_dirty = 0, parent = 0, nested = 0;
	uint32_t fault = 0;
	iodp_iova_range ranges[8] = {};
	uint64_t bitmap[4] = {};
	iodp_hwpt_vtd_s1_invalidate inv{0, UINT64_MAX, 0, 0};
	int serial = 0;

	World()
	{
		EXPECT_EQ(iodp_ctx_open(&ctx), 0);
		dev = make_device("dev");
		dev2 = make_device("dev2");
		ioas = ioctl_out<ioas_alloc_cmd>(IODP_IOMMU_IOAS_ALLOC, {}).out_ioas_id;
		ioas2 = ioctl_out<ioas_alloc_cmd>(IODP_IOMMU_IOAS_ALLOC, {}).out_ioas_id;
		ioas_map_cmd m{};
		m.flags = kFixedRW;
		m.ioas_id = ioas;
		m.user_va = buf.addr();
		m.length = 0x1000;
		m.iova = 0x100000;
		ioctl_out(IODP_IOMMU_IOAS_MAP, m);
		hwpt_alloc_cmd h{};
		h.dev_id = dev;
		h.pt_id = ioas;
		h.flags = IODP_HWPT_ALLOC_DIRTY_TRACKING;
		hwpt_dirty = ioctl_out(IODP_IOMMU_HWPT_ALLOC, h).out_hwpt_id;
		h.flags = IODP_HWPT_ALLOC_NEST_PARENT;
		parent = ioctl_out(IODP_IOMMU_HWPT_ALLOC, h).out_hwpt_id;
		iodp_hwpt_vtd_s1 s1{0, 0x1000, 48, 0};
		h.flags = 0;
		h.pt_id = parent;
		h.data_type = IODP_HWPT_DATA_VTD_S1;
		h.data_len = sizeof(s1);
		h.data_uptr = reinterpret_cast<uintptr_t>(&s1);
		nested = ioctl_out(IODP_IOMMU_HWPT_ALLOC, h).out_hwpt_id;
		fault = ioctl_out<iodp_fault_alloc>(IODP_IOMMU_FAULT_QUEUE_ALLOC, {}).out_fault_id;
		device_attach_cmd a{};
		a.dev_id = dev2;
		a.pt_id = ioas;
		ioctl_out(IODP_DEVICE_ATTACH, a);
	}
	~World() { iodp_ctx_close(ctx); }

	template <class T> T ioctl_out(unsigned long cmd, T arg)
	{
		arg.size = sizeof(T);
		EXPECT_EQ(iodp_ioctl(ctx, cmd, &arg), 0) << iodp_last_error(ctx);
		return arg;
	}

	uint32_t make_device(const char *name)
	{
		device_alloc_cmd d{};
		d.model = IODP_IOMMU_VTD;
		std::snprintf(d.name, sizeof(d.name), "%s", name);
		return ioctl_out(IODP_DEVICE_ALLOC, d).out_dev_id;
	}
};

/** One command: its number, sizes, and a valid argument in a given world. */
struct Command {
	const char *name;
	unsigned long number;
	size_t size;
	size_t min_size;
	std::function<void(World &, void *)> fill; // writes a valid struct (size filled later)
};

template <class T> std::function<void(World &, void *)> filler(std::function<T(World &)> make)
{
	return [make](World &w, void *p) {
		T v = make(w);
		std::memcpy(p, &v, sizeof(T));
	};
}

#define CMD(number, type, last, ...)                                                             \
	Command                                                                                  \
	{                                                                                        \
		#number, number, sizeof(type), OFFSETOFEND(type, last),                           \
			filler<type>([](World & w) -> type {                                     \
				(void)w;                                                         \
				type k{};                                                        \
				__VA_ARGS__;                                                     \
				return k;                                                        \
			})                                                                       \
	}

std::vector<Command> commands()
{
	return {
		CMD(IODP_IOMMU_DESTROY, destroy_cmd, id, {
			k.id = w.ioctl_out<ioas_alloc_cmd>(IODP_IOMMU_IOAS_ALLOC, {}).out_ioas_id;
		}),
		CMD(IODP_IOMMU_IOAS_ALLOC, ioas_alloc_cmd, out_ioas_id, {}),
		CMD(IODP_IOMMU_IOAS_ALLOW_IOVAS, ioas_allow_iovas_cmd, allowed_iovas, {
			w.ranges[0] = {0x1000000, 0x1ffffff};
			k.ioas_id = w.ioas2;
			k.num_iovas = 1;
			k.allowed_iovas = reinterpret_cast<uintptr_t>(w.ranges);
		}),
		CMD(IODP_IOMMU_IOAS_COPY, ioas_copy_cmd, src_iova, {
			k.flags = kFixedRW;
			k.dst_ioas_id = w.ioas2;
			k.src_ioas_id = w.ioas;
			k.length = 0x1000;
			k.dst_iova = 0x5000000;
			k.src_iova = 0x100000;
		}),
		CMD(IODP_IOMMU_IOAS_IOVA_RANGES, ioas_iova_ranges_cmd, out_iova_alignment, {
			k.ioas_id = w.ioas;
			k.num_iovas = 8;
			k.allowed_iovas = reinterpret_cast<uintptr_t>(w.ranges);
		}),
		CMD(IODP_IOMMU_IOAS_MAP, ioas_map_cmd, iova, {
			k.flags = kFixedRW;
			k.ioas_id = w.ioas;
			k.user_va = w.buf.addr(0x200000);
			k.length = 0x1000;
			k.iova = 0x3000000;
		}),
		CMD(IODP_IOMMU_IOAS_UNMAP, ioas_unmap_cmd, length, {
			k.ioas_id = w.ioas;
			k.iova = 0x100000;
			k.length = 0x1000;
		}),
		CMD(IODP_IOMMU_OPTION, option_cmd, val64, {
			k.option_id = IODP_OPTION_HUGE_PAGES;
			k.op = IODP_OPTION_OP_GET;
			k.object_id = w.ioas;
		}),
		CMD(IODP_IOMMU_HWPT_ALLOC, hwpt_alloc_cmd, __reserved, {
			k.dev_id = w.dev;
			k.pt_id = w.ioas;
		}),
		CMD(IODP_IOMMU_GET_HW_INFO, iodp_hw_info, __reserved, { k.dev_id = w.dev; }),
		CMD(IODP_IOMMU_HWPT_SET_DIRTY_TRACKING, hwpt_set_dirty_tracking_cmd, __reserved, {
			k.flags = IODP_HWPT_SET_DIRTY_TRACKING_ENABLE;
			k.hwpt_id = w.hwpt_dirty;
		}),
		CMD(IODP_IOMMU_HWPT_GET_DIRTY_BITMAP, hwpt_get_dirty_bitmap_cmd, data, {
			k.hwpt_id = w.hwpt_dirty;
			k.iova = 0x100000;
			k.length = 0x4000;
			k.page_size = 0x1000;
			k.data = reinterpret_cast<uintptr_t>(w.bitmap);
		}),
		CMD(IODP_IOMMU_HWPT_INVALIDATE, hwpt_invalidate_cmd, __reserved, {
			k.hwpt_id = w.nested;
			k.data_uptr = reinterpret_cast<uintptr_t>(&w.inv);
			k.data_type = IODP_HWPT_INVALIDATE_DATA_VTD_S1;
			k.entry_len = sizeof(w.inv);
			k.entry_num = 1;
		}),
		CMD(IODP_IOMMU_FAULT_QUEUE_ALLOC, iodp_fault_alloc, out_fault_fd, {}),
		CMD(IODP_DEVICE_ALLOC, device_alloc_cmd, name, {
			k.model = IODP_IOMMU_VTD;
			std::snprintf(k.name, sizeof(k.name), "abi%d", w.serial++);
		}),
		CMD(IODP_DEVICE_ATTACH, device_attach_cmd, pasid, {
			k.dev_id = w.dev;
			k.pt_id = w.ioas;
		}),
		CMD(IODP_DEVICE_DETACH, device_detach_cmd, pasid, { k.dev_id = w.dev2; }),
		CMD(IODP_FAULT_READ, fault_read_cmd, records, { k.fault_id = w.fault; }),
		CMD(IODP_FAULT_RESPOND, fault_respond_cmd, responses, { k.fault_id = w.fault; }),
		CMD(IODP_FAULT_EVENTS_READ, fault_events_read_cmd, events, {}),
		CMD(IODP_VPASID_SET, vpasid_set_cmd, ppasid, { k.vpasid = 7; }),
		CMD(IODP_TRANSLATE, translate_cmd, iova, {
			k.dev_id = w.dev2;
			k.access = IODP_PGFAULT_PERM_READ;
			k.iova = 0x100000;
		}),
	};
}

class SizeRules : public ::testing::TestWithParam<Command> {
protected:
	/** Run the command with the struct's size field set to @p size in a @p room buffer. */
	int call(size_t size, size_t room, std::byte tail_byte = std::byte{0})
	{
		const Command &c = GetParam();
		std::vector<std::byte> arg(std::max(room, c.size) + 16, std::byte{0});
		c.fill(w, arg.data());
		const uint32_t sz = static_cast<uint32_t>(size);
		std::memcpy(arg.data(), &sz, sizeof(sz));
		if (room > c.size)
			arg[room - 1] = tail_byte;
		const int rc = iodp_ioctl(w.ctx, c.number, arg.data());
		return rc == 0 ? 0 : errno;
	}
	World w;
};

TEST_P(SizeRules, Short)
{
	const Command &c = GetParam();
	EXPECT_EQ(call(c.min_size - 1, c.size), EINVAL);
	EXPECT_NE(std::string(iodp_last_error(w.ctx)).find("is below the minimum"),
		  std::string::npos)
		<< iodp_last_error(w.ctx);
	EXPECT_EQ(call(4, c.size), EINVAL);
}

TEST_P(SizeRules, Minimum)
{
	const Command &c = GetParam();
	EXPECT_EQ(call(c.min_size, c.size), 0) << iodp_last_error(w.ctx);
}

TEST_P(SizeRules, Exact)
{
	EXPECT_EQ(call(GetParam().size, GetParam().size), 0) << iodp_last_error(w.ctx);
}

TEST_P(SizeRules, LongerWithZeroTail)
{
	const size_t n = GetParam().size + 8;
	EXPECT_EQ(call(n, n), 0) << iodp_last_error(w.ctx);
}

TEST_P(SizeRules, LongerWithNonZeroTail)
{
	const size_t n = GetParam().size + 8;
	EXPECT_EQ(call(n, n, std::byte{1}), E2BIG);
	EXPECT_NE(std::string(iodp_last_error(w.ctx)).find("is not zero"), std::string::npos)
		<< iodp_last_error(w.ctx);
}

INSTANTIATE_TEST_SUITE_P(EveryCommand, SizeRules, ::testing::ValuesIn(commands()),
			 [](const auto &info) {
				 std::string n = info.param.name;
				 return n.substr(n.find('_') + 1);
			 });

TEST(Abi, CommandNumbersAreTheKernels)
{
	// _IO(';', 0x80 + n): type ';' in bits 15:8, no size, no direction.
	EXPECT_EQ(IODP_IOMMU_DESTROY, 0x3b80ul);
	EXPECT_EQ(IODP_IOMMU_IOAS_MAP, 0x3b85ul);
	EXPECT_EQ(IODP_IOMMU_HWPT_ALLOC, 0x3b89ul);
	EXPECT_EQ(IODP_IOMMU_HWPT_INVALIDATE, 0x3b8dul);
	EXPECT_EQ(IODP_IOMMU_FAULT_QUEUE_ALLOC, 0x3b8eul);
}

TEST(Abi, UnknownCommandIsEnotty)
{
	World w;
	int dummy = 0;
	EXPECT_EQ(iodp_ioctl(w.ctx, IODP_CMD(0x9f), &dummy), -1); // 0x88 is IOMMU_VFIO_IOAS
	EXPECT_EQ(errno, ENOTTY);
	EXPECT_STREQ(iodp_last_error(w.ctx), "iodp_ioctl: unknown command 0x3b9f");
	EXPECT_EQ(iodp_ioctl(w.ctx, IODP_IOMMU_IOAS_MAP, nullptr), -1);
	EXPECT_EQ(errno, EFAULT);
}

TEST(Abi, ExtackAndLastErrorArePerCall)
{
	World w;
	destroy_cmd d{sizeof(d), 12345};
	iodp_extack ext;
	EXPECT_EQ(iodp_destroy(w.ctx, &d, &ext), -ENOENT);
	EXPECT_STREQ(ext.msg, "DESTROY: destroy: no object 12345");
	EXPECT_STREQ(iodp_last_error(w.ctx), ext.msg);
	d.id = w.ioctl_out<ioas_alloc_cmd>(IODP_IOMMU_IOAS_ALLOC, {}).out_ioas_id;
	EXPECT_EQ(iodp_destroy(w.ctx, &d, &ext), 0);
	EXPECT_STREQ(ext.msg, "");
	// Another context on this thread keeps its own message.
	iodp_ctx *other = nullptr;
	ASSERT_EQ(iodp_ctx_open(&other), 0);
	EXPECT_STREQ(iodp_last_error(other), "");
	iodp_ctx_close(other);
}

/* Error paths ------------------------------------------------------------------------------- */

struct ErrorCase {
	const char *what;
	unsigned long number;
	std::function<std::vector<std::byte>(World &)> make; // the whole argument
	int err;
	const char *message;
};

template <class T> std::vector<std::byte> bytes(T v)
{
	v.size = sizeof(T);
	std::vector<std::byte> out(sizeof(T));
	std::memcpy(out.data(), &v, sizeof(T));
	return out;
}

std::vector<ErrorCase> error_cases()
{
	static iodp_iova_range bad_ranges[2] = {{0x2000, 0x1000}, {0, 0}};
	static iodp_iova_range overlap[2] = {{0x1000, 0x3fff}, {0x2000, 0x4fff}};
	static iodp_hwpt_vtd_s1 long_s1[2] = {};
	static uint64_t cmd_bad[2] = {0x28 /* TLBI_S12_VMALL */, 0};
	return {
		{"destroy unknown id", IODP_IOMMU_DESTROY,
		 [](World &) { return bytes(destroy_cmd{0, 4242}); }, ENOENT, "no object 4242"},
		{"destroy busy ioas", IODP_IOMMU_DESTROY,
		 [](World &w) { return bytes(destroy_cmd{0, w.ioas}); }, EBUSY,
		 "is used by hwpt"},
		{"ioas alloc flags", IODP_IOMMU_IOAS_ALLOC,
		 [](World &) { return bytes(ioas_alloc_cmd{0, 1, 0}); }, EOPNOTSUPP,
		 "unknown flags 0x1"},
		{"allow reversed range", IODP_IOMMU_IOAS_ALLOW_IOVAS,
		 [](World &w) {
			 return bytes(ioas_allow_iovas_cmd{0, w.ioas, 1, 0,
							    reinterpret_cast<uintptr_t>(bad_ranges)});
		 },
		 EINVAL, "ends before it starts"},
		{"allow overlapping ranges", IODP_IOMMU_IOAS_ALLOW_IOVAS,
		 [](World &w) {
			 return bytes(ioas_allow_iovas_cmd{0, w.ioas, 2, 0,
							    reinterpret_cast<uintptr_t>(overlap)});
		 },
		 EINVAL, "overlap"},
		{"allow reserved field", IODP_IOMMU_IOAS_ALLOW_IOVAS,
		 [](World &w) { return bytes(ioas_allow_iovas_cmd{0, w.ioas, 0, 1, 0}); },
		 EOPNOTSUPP, "__reserved is 0x1"},
		{"map unknown ioas", IODP_IOMMU_IOAS_MAP,
		 [](World &w) {
			 return bytes(ioas_map_cmd{0, kFixedRW, 999, 0, w.buf.addr(), 4096, 0});
		 },
		 ENOENT, "ioas 999: no such object"},
		{"map wrong object type", IODP_IOMMU_IOAS_MAP,
		 [](World &w) {
			 return bytes(ioas_map_cmd{0, kFixedRW, w.dev, 0, w.buf.addr(), 4096, 0});
		 },
		 ENOENT, "is a device, not a ioas"},
		{"map unknown flag", IODP_IOMMU_IOAS_MAP,
		 [](World &w) {
			 return bytes(ioas_map_cmd{0, kFixedRW | 8, w.ioas, 0, w.buf.addr(), 4096,
						    0x200000});
		 },
		 EOPNOTSUPP, "unknown flags 0x8"},
		{"map no permission", IODP_IOMMU_IOAS_MAP,
		 [](World &w) {
			 return bytes(ioas_map_cmd{0, IODP_IOAS_MAP_FIXED_IOVA, w.ioas, 0,
						    w.buf.addr(), 4096, 0x200000});
		 },
		 EINVAL, "neither READABLE nor WRITEABLE"},
		{"map overlap", IODP_IOMMU_IOAS_MAP,
		 [](World &w) {
			 return bytes(ioas_map_cmd{0, kFixedRW, w.ioas, 0, w.buf.addr(), 0x2000,
						    0xff000});
		 },
		 EEXIST, "overlaps mapping 0x100000+0x1000"},
		{"map unaligned", IODP_IOMMU_IOAS_MAP,
		 [](World &w) {
			 return bytes(ioas_map_cmd{0, kFixedRW, w.ioas, 0, w.buf.addr(), 4096,
						    0x200800});
		 },
		 EINVAL, "is not aligned to 0x1000"},
		{"map wraps", IODP_IOMMU_IOAS_MAP,
		 [](World &w) {
			 return bytes(ioas_map_cmd{0, kFixedRW, w.ioas, 0, w.buf.addr(), 0x2000,
						    ~0xfffull});
		 },
		 EOVERFLOW, "wraps"},
		{"map empty", IODP_IOMMU_IOAS_MAP,
		 [](World &w) {
			 return bytes(ioas_map_cmd{0, kFixedRW, w.ioas, 0, w.buf.addr(), 0, 0});
		 },
		 EINVAL, "length is 0"},
		{"unmap splits", IODP_IOMMU_IOAS_UNMAP,
		 [](World &w) {
			 ioas_map_cmd m{sizeof(m), kFixedRW, w.ioas, 0, w.buf.addr(0x10000),
					 0x4000, 0x800000};
			 EXPECT_EQ(iodp_ioctl(w.ctx, IODP_IOMMU_IOAS_MAP, &m), 0);
			 return bytes(ioas_unmap_cmd{0, w.ioas, 0x800000, 0x2000});
		 },
		 ENOENT, "would split mapping 0x800000+0x4000"},
		{"unmap nothing", IODP_IOMMU_IOAS_UNMAP,
		 [](World &w) { return bytes(ioas_unmap_cmd{0, w.ioas, 0x9000000, 0x1000}); },
		 ENOENT, "nothing is mapped there"},
		{"copy unmapped source", IODP_IOMMU_IOAS_COPY,
		 [](World &w) {
			 return bytes(ioas_copy_cmd{0, kFixedRW, w.ioas2, w.ioas, 0x2000,
						     0x5000000, 0x100000});
		 },
		 ENOENT, "source 0x101000 is not mapped"},
		{"ranges too small", IODP_IOMMU_IOAS_IOVA_RANGES,
		 [](World &w) { return bytes(ioas_iova_ranges_cmd{0, w.ioas, 0, 0, 0, 0}); },
		 EMSGSIZE, "has 2 ranges; the array holds 0"},
		{"option unknown", IODP_IOMMU_OPTION,
		 [](World &) { return bytes(option_cmd{0, 9, 0, 0, 0, 0}); }, EOPNOTSUPP,
		 "unknown option_id 9"},
		{"option bad op", IODP_IOMMU_OPTION,
		 [](World &) { return bytes(option_cmd{0, 0, 5, 0, 0, 0}); }, EOPNOTSUPP,
		 "unknown op 5"},
		{"option bad value", IODP_IOMMU_OPTION,
		 [](World &w) { return bytes(option_cmd{0, 1, 0, 0, w.ioas2, 2}); }, EINVAL,
		 "is not 0 or 1"},
		{"hwpt data for NONE", IODP_IOMMU_HWPT_ALLOC,
		 [](World &w) {
			 hwpt_alloc_cmd h{};
			 h.dev_id = w.dev;
			 h.pt_id = w.ioas;
			 h.data_len = 8;
			 return bytes(h);
		 },
		 EINVAL, "data_type NONE takes no data"},
		{"hwpt blob longer than known", IODP_IOMMU_HWPT_ALLOC,
		 [](World &w) {
			 hwpt_alloc_cmd h{};
			 h.dev_id = w.dev;
			 h.pt_id = w.parent;
			 h.data_type = IODP_HWPT_DATA_VTD_S1;
			 h.data_len = sizeof(long_s1);
			 h.data_uptr = reinterpret_cast<uintptr_t>(long_s1);
			 return bytes(h);
		 },
		 EINVAL, "data_len 48"},
		{"hwpt unknown data type", IODP_IOMMU_HWPT_ALLOC,
		 [](World &w) {
			 hwpt_alloc_cmd h{};
			 h.dev_id = w.dev;
			 h.pt_id = w.parent;
			 h.data_type = 9;
			 static uint64_t blob = 0;
			 h.data_len = sizeof(blob);
			 h.data_uptr = reinterpret_cast<uintptr_t>(&blob);
			 return bytes(h);
		 },
		 EOPNOTSUPP, "unknown data_type 9"},
		{"hwpt data type without data", IODP_IOMMU_HWPT_ALLOC, // the kernel's order
		 [](World &w) {
			 hwpt_alloc_cmd h{};
			 h.dev_id = w.dev;
			 h.pt_id = w.parent;
			 h.data_type = 9;
			 return bytes(h);
		 },
		 EINVAL, "data_type 9 takes data"},
		{"hwpt on a hwpt without data", IODP_IOMMU_HWPT_ALLOC,
		 [](World &w) {
			 hwpt_alloc_cmd h{};
			 h.dev_id = w.dev;
			 h.pt_id = w.parent;
			 return bytes(h);
		 },
		 EINVAL, "a paging HWPT is allocated on an ioas"},
		{"hw info unknown device", IODP_IOMMU_GET_HW_INFO,
		 [](World &) {
			 iodp_hw_info i{};
			 i.dev_id = 555;
			 return bytes(i);
		 },
		 ENOENT, "device 555: no such object"},
		{"hw info unknown type", IODP_IOMMU_GET_HW_INFO,
		 [](World &w) {
			 iodp_hw_info i{};
			 i.dev_id = w.dev;
			 i.flags = IODP_HW_INFO_FLAG_INPUT_TYPE;
			 i.in_data_type = IODP_HW_INFO_TYPE_ARM_SMMUV3; // the device is VT-d
			 return bytes(i);
		 },
		 EOPNOTSUPP, "in_data_type 2"},
		{"invalidate paging hwpt", IODP_IOMMU_HWPT_INVALIDATE,
		 [](World &w) {
			 return bytes(hwpt_invalidate_cmd{0, w.parent, 0, 0, 24, 0, 0});
		 },
		 ENOENT, "only nested HWPTs take cache invalidations"}, // the kernel's lookup
		{"invalidate wrong type", IODP_IOMMU_HWPT_INVALIDATE,
		 [](World &w) {
			 return bytes(hwpt_invalidate_cmd{0, w.nested, 0, 1, 16, 0, 0});
		 },
		 EINVAL, "takes VTD_S1 (0) invalidations, not data_type 1"},
		{"invalidate short entry", IODP_IOMMU_HWPT_INVALIDATE,
		 [](World &w) {
			 return bytes(hwpt_invalidate_cmd{
				 0, w.nested, reinterpret_cast<uintptr_t>(&w.inv), 0, 16, 1, 0});
		 },
		 EINVAL, "entry_len 16 is shorter than the 24-byte entry"},
		{"invalidate smmu opcode from guest", IODP_IOMMU_HWPT_INVALIDATE,
		 [](World &w) {
			 device_alloc_cmd d{sizeof(d), 0, IODP_IOMMU_SMMUV3, 0, 0, 0, "smmu"};
			 EXPECT_EQ(iodp_ioctl(w.ctx, IODP_DEVICE_ALLOC, &d), 0);
			 hwpt_alloc_cmd h{};
			 h.size = sizeof(h);
			 h.dev_id = d.out_dev_id;
			 h.pt_id = w.ioas2;
			 h.flags = IODP_HWPT_ALLOC_NEST_PARENT;
			 EXPECT_EQ(iodp_ioctl(w.ctx, IODP_IOMMU_HWPT_ALLOC, &h), 0);
			 iodp_hwpt_arm_smmuv3 ste{{1 | (5 << 1), 0}};
			 h.pt_id = h.out_hwpt_id;
			 h.flags = 0;
			 h.data_type = IODP_HWPT_DATA_ARM_SMMUV3;
			 h.data_len = sizeof(ste);
			 h.data_uptr = reinterpret_cast<uintptr_t>(&ste);
			 EXPECT_EQ(iodp_ioctl(w.ctx, IODP_IOMMU_HWPT_ALLOC, &h), 0)
				 << iodp_last_error(w.ctx);
			 return bytes(hwpt_invalidate_cmd{0, h.out_hwpt_id,
							   reinterpret_cast<uintptr_t>(cmd_bad), 1,
							   16, 1, 0});
		 },
		 EIO, "opcode 0x28 is not accepted from a guest"},
		{"dirty on plain hwpt", IODP_IOMMU_HWPT_SET_DIRTY_TRACKING,
		 [](World &w) { return bytes(hwpt_set_dirty_tracking_cmd{0, 1, w.parent, 0}); },
		 EINVAL, "was not allocated with DIRTY_TRACKING"},
		{"dirty unknown flag", IODP_IOMMU_HWPT_GET_DIRTY_BITMAP,
		 [](World &w) {
			 return bytes(hwpt_get_dirty_bitmap_cmd{0, w.hwpt_dirty, 2, 0, 0, 4096, 4096,
								 0});
		 },
		 EOPNOTSUPP, "unknown flags 0x2"},
		{"fault alloc flags", IODP_IOMMU_FAULT_QUEUE_ALLOC,
		 [](World &) { return bytes(iodp_fault_alloc{0, 4, 0, 0}); }, EOPNOTSUPP,
		 "unknown flags 0x4"},
		{"device name unterminated", IODP_DEVICE_ALLOC,
		 [](World &) {
			 device_alloc_cmd d{};
			 d.model = IODP_IOMMU_VTD;
			 std::memset(d.name, 'x', sizeof(d.name));
			 return bytes(d);
		 },
		 EINVAL, "not NUL-terminated"},
		{"device unknown model", IODP_DEVICE_ALLOC,
		 [](World &) {
			 device_alloc_cmd d{};
			 d.model = 3;
			 std::snprintf(d.name, sizeof(d.name), "x");
			 return bytes(d);
		 },
		 EOPNOTSUPP, "unknown IOMMU model 3"},
		{"attach to a fault queue", IODP_DEVICE_ATTACH,
		 [](World &w) { return bytes(device_attach_cmd{0, 0, w.dev, w.fault, 0}); },
		 EINVAL, "it is a fault queue, not an ioas or hwpt"},
		{"attach unbound vpasid", IODP_DEVICE_ATTACH,
		 [](World &w) {
			 return bytes(device_attach_cmd{0, IODP_ATTACH_VPASID, w.dev, w.ioas, 3});
		 },
		 ENOENT, "vpasid 3 is not bound"},
		{"respond unknown cookie", IODP_FAULT_RESPOND,
		 [](World &w) {
			 static iodp_hwpt_page_response r{77, 0};
			 return bytes(fault_respond_cmd{0, w.fault, 1, 0,
							 reinterpret_cast<uintptr_t>(&r)});
		 },
		 EINVAL, "response 0: fault queue"},
		{"translate unknown access bits", IODP_TRANSLATE,
		 [](World &w) {
			 translate_cmd t{};
			 t.dev_id = w.dev2;
			 t.access = 0x10;
			 return bytes(t);
		 },
		 EINVAL, "access 0x10 has unknown bits"},
		{"vpasid clear unknown", IODP_VPASID_SET,
		 [](World &) { return bytes(vpasid_set_cmd{0, IODP_VPASID_CLEAR, 12, 0}); },
		 ENOENT, "vpasid 12 is not bound"},
	};
}

class ErrorPaths : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ErrorPaths, ErrnoAndMessage)
{
	World w;
	const ErrorCase &c = GetParam();
	std::vector<std::byte> arg = c.make(w);
	errno = 0;
	EXPECT_EQ(iodp_ioctl(w.ctx, c.number, arg.data()), -1);
	EXPECT_EQ(errno, c.err) << iodp_last_error(w.ctx);
	EXPECT_NE(std::string(iodp_last_error(w.ctx)).find(c.message), std::string::npos)
		<< "message: " << iodp_last_error(w.ctx) << "\nwanted: " << c.message;
}

INSTANTIATE_TEST_SUITE_P(Table, ErrorPaths, ::testing::ValuesIn(error_cases()),
			 [](const auto &info) {
				 std::string n = info.param.what;
				 for (char &ch : n)
					 if (!std::isalnum(static_cast<unsigned char>(ch)))
						 ch = '_';
				 return n;
			 });

TEST(Abi, FailedCallsChangeNothing)
{
	World w;
	// A failing map leaves the IOAS as it was; a failing invalidate reports progress.
	ioas_iova_ranges_cmd r{sizeof(r), w.ioas, 8, 0, reinterpret_cast<uintptr_t>(w.ranges), 0};
	ASSERT_EQ(iodp_ioctl(w.ctx, IODP_IOMMU_IOAS_IOVA_RANGES, &r), 0);
	ioas_map_cmd m{sizeof(m), kFixedRW, w.ioas, 0, w.buf.addr(), 0x2000, 0xff000};
	EXPECT_EQ(iodp_ioctl(w.ctx, IODP_IOMMU_IOAS_MAP, &m), -1);
	EXPECT_EQ(m.iova, 0xff000u) << "a failed call wrote its reply";
	ioas_unmap_cmd u{sizeof(u), w.ioas, 0x100000, 0x1000};
	EXPECT_EQ(iodp_ioctl(w.ctx, IODP_IOMMU_IOAS_UNMAP, &u), 0);
	EXPECT_EQ(u.length, 0x1000u);

	iodp_hwpt_vtd_s1_invalidate inv[3] = {{0, 1, 0, 0}, {0x1000, 2, 1, 0}, {0x1000, 1, 4, 0}};
	hwpt_invalidate_cmd i{sizeof(i), w.nested, reinterpret_cast<uintptr_t>(inv), 0,
			       sizeof(inv[0]), 3, 0};
	EXPECT_EQ(iodp_ioctl(w.ctx, IODP_IOMMU_HWPT_INVALIDATE, &i), -1);
	EXPECT_EQ(errno, EOPNOTSUPP);
	EXPECT_EQ(i.entry_num, 2u);
	EXPECT_NE(std::string(iodp_last_error(w.ctx)).find("entry 2"), std::string::npos);
}

TEST(Abi, InvalidateArrayBounds)
{
	// iommufd_hwpt_invalidate(): __reserved (EOPNOTSUPP), then the array's bounds (EINVAL),
	// then the HWPT; entry_num reads 0 after each, and iodp copies nothing (an entry_len of
	// up to 4 GiB would otherwise be one allocation).
	World w;
	auto call = [&](hwpt_invalidate_cmd k, int err, const char *text) {
		errno = 0;
		EXPECT_EQ(iodp_ioctl(w.ctx, IODP_IOMMU_HWPT_INVALIDATE, &k), -1);
		EXPECT_EQ(errno, err) << iodp_last_error(w.ctx);
		EXPECT_NE(std::string(iodp_last_error(w.ctx)).find(text), std::string::npos)
			<< "message: " << iodp_last_error(w.ctx) << "\nwanted: " << text;
		EXPECT_EQ(k.entry_num, 0u);
	};
	const auto inv = reinterpret_cast<uintptr_t>(&w.inv);
	constexpr uint32_t vtd_s1 = IODP_HWPT_INVALIDATE_DATA_VTD_S1;
	constexpr uint32_t sz = sizeof(hwpt_invalidate_cmd);
	call({sz, w.nested, 0, vtd_s1, 24, 1, 0}, EINVAL, "1 entries at data_uptr NULL");
	call({sz, w.nested, inv, vtd_s1, 0, 1, 0}, EINVAL, "entry_len 0 is not within 1..4096");
	call({sz, w.nested, inv, vtd_s1, 4097, 1, 0}, EINVAL, "entry_len 4097");
	call({sz, w.nested, inv, vtd_s1, UINT32_MAX, 1, 0}, EINVAL, "entry_len 4294967295");
	call({sz, w.nested, inv, vtd_s1, 24, (1u << 19) + 1, 0}, EINVAL,
	     "entry_num 524289 is over the 524288");
	call({sz, 4242, inv, vtd_s1, 4097, 1, 0}, EINVAL, "entry_len 4097"); // before the lookup
	call({sz, w.nested, inv, vtd_s1, 4097, 1, 1}, EOPNOTSUPP, "__reserved");
	call({sz, 4242, inv, vtd_s1, 24, 1, 0}, ENOENT, "4242");
	// The bound itself is allowed: one 4096-byte entry, the bytes past the known 24 zero.
	std::vector<unsigned char> page(4096, 0);
	std::memcpy(page.data(), &w.inv, sizeof(w.inv));
	hwpt_invalidate_cmd k{sz, w.nested, reinterpret_cast<uintptr_t>(page.data()), vtd_s1,
			      4096, 1, 0};
	EXPECT_EQ(iodp_ioctl(w.ctx, IODP_IOMMU_HWPT_INVALIDATE, &k), 0) << iodp_last_error(w.ctx);
	EXPECT_EQ(k.entry_num, 1u);
}

TEST(Abi, HwInfoRecord)
{
	World w;
	iodp_hw_info_iodp rec;
	std::memset(&rec, 0xff, sizeof(rec));
	uint8_t big[sizeof(rec) + 8];
	std::memset(big, 0xff, sizeof(big));
	iodp_hw_info i{};
	i.size = sizeof(i);
	i.dev_id = w.dev;
	i.flags = IODP_HW_INFO_FLAG_INPUT_TYPE; // iodp's own record (the default is VT-d's)
	i.in_data_type = IODP_HW_INFO_TYPE_IODP;
	i.data_len = sizeof(big);
	i.data_uptr = reinterpret_cast<uintptr_t>(big);
	ASSERT_EQ(iodp_ioctl(w.ctx, IODP_IOMMU_GET_HW_INFO, &i), 0) << iodp_last_error(w.ctx);
	EXPECT_EQ(i.data_len, sizeof(rec));
	EXPECT_EQ(i.in_data_type, static_cast<uint32_t>(IODP_HW_INFO_TYPE_IODP));
	EXPECT_EQ(i.out_max_pasid_log2, 20);
	EXPECT_TRUE(i.out_capabilities & IODP_HW_CAP_DIRTY_TRACKING);
	std::memcpy(&rec, big, sizeof(rec));
	EXPECT_EQ(rec.model, static_cast<uint32_t>(IODP_IOMMU_VTD));
	EXPECT_EQ(rec.paging_format, static_cast<uint32_t>(IODP_FORMAT_VTD_SS_4L));
	EXPECT_EQ(rec.formats, 0x7fu);
	EXPECT_TRUE(rec.page_sizes & (1ull << 30));
	EXPECT_EQ(rec.nested_types, 1u << IODP_HWPT_DATA_VTD_S1);
	for (size_t b = sizeof(rec); b < sizeof(big); b++)
		EXPECT_EQ(big[b], 0) << "the tail of a longer buffer is zeroed";
}

/* The caller's memory: bad addresses are EFAULT, never a crash. ------------------------------ */

/** Two pages, the second PROT_NONE: whatever runs past the first faults. */
struct GuardedPage {
	std::byte *page = nullptr;
	GuardedPage()
	{
		void *p = mmap(nullptr, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		EXPECT_NE(p, MAP_FAILED);
		page = static_cast<std::byte *>(p);
		EXPECT_EQ(mprotect(page + 4096, 4096, PROT_NONE), 0);
	}
	~GuardedPage() { munmap(page, 2 * 4096); }
	/** Where @p n bytes end exactly at the guard. */
	std::byte *ending(size_t n) const { return page + 4096 - n; }
	std::byte *guard() const { return page + 4096; }
	uint64_t guard_addr() const { return reinterpret_cast<uintptr_t>(guard()); }
	void read_only() const { EXPECT_EQ(mprotect(page, 4096, PROT_READ), 0); }
};

/** The ioctl's errno (0 on success) and, on EFAULT, a message saying what could not be read. */
int call_errno(World &w, unsigned long cmd, void *arg)
{
	errno = 0;
	return iodp_ioctl(w.ctx, cmd, arg) == 0 ? 0 : errno;
}

class UserStructs : public ::testing::TestWithParam<Command> {
protected:
	World w;
};

/** The argument itself unreadable, or running into an unreadable page. */
TEST_P(UserStructs, BadArgumentAddressIsEfault)
{
	const Command &c = GetParam();
	GuardedPage g;
	EXPECT_EQ(call_errno(w, c.number, g.guard()), EFAULT);
	EXPECT_EQ(call_errno(w, c.number, reinterpret_cast<void *>(8)), EFAULT);
	// A valid struct that says it is 8 bytes longer than the page holds.
	std::byte *arg = g.ending(c.size);
	c.fill(w, arg);
	const uint32_t size = static_cast<uint32_t>(c.size + 8);
	std::memcpy(arg, &size, sizeof(size));
	EXPECT_EQ(call_errno(w, c.number, arg), EFAULT) << iodp_last_error(w.ctx);
	EXPECT_NE(std::string(iodp_last_error(w.ctx)).find("cannot read"), std::string::npos)
		<< iodp_last_error(w.ctx);
}

/** A reply to a read-only struct is EFAULT too (what copy_to_user does). */
TEST_P(UserStructs, ReadOnlyArgumentIsEfault)
{
	const Command &c = GetParam();
	GuardedPage g;
	std::byte *arg = g.ending(c.size);
	c.fill(w, arg);
	const uint32_t size = static_cast<uint32_t>(c.size);
	std::memcpy(arg, &size, sizeof(size));
	g.read_only();
	// Every command replies (at least its size word back): EFAULT, whatever it did.
	EXPECT_EQ(call_errno(w, c.number, arg), EFAULT) << iodp_last_error(w.ctx);
}

INSTANTIATE_TEST_SUITE_P(EveryCommand, UserStructs, ::testing::ValuesIn(commands()),
			 [](const auto &info) { return std::string(info.param.name); });

/** The case: size 36 ends inside data_uptr, which then holds half a pointer. */
TEST(UserPointers, HwptAllocSizeEndingInsideDataUptr)
{
	World w;
	iodp_hwpt_vtd_s1 s1{0, 0x1000, 48, 0};
	hwpt_alloc_cmd h{};
	h.size = 36;
	h.dev_id = w.dev;
	h.pt_id = w.parent;
	h.data_type = IODP_HWPT_DATA_VTD_S1;
	h.data_len = sizeof(s1);
	h.data_uptr = 0xffff800000001000ull | reinterpret_cast<uintptr_t>(&s1);
	EXPECT_EQ(call_errno(w, IODP_IOMMU_HWPT_ALLOC, &h), EFAULT);
	EXPECT_NE(std::string(iodp_last_error(w.ctx)).find("HWPT_ALLOC: data_uptr: cannot read"),
		  std::string::npos) << iodp_last_error(w.ctx);
}

TEST(UserPointers, EveryArrayAndBuffer)
{
	World w;
	GuardedPage g;
	auto expect_efault = [&](unsigned long cmd, void *arg, const char *what) {
		EXPECT_EQ(call_errno(w, cmd, arg), EFAULT) << what << ": " << iodp_last_error(w.ctx);
		EXPECT_NE(std::string(iodp_last_error(w.ctx)).find(what), std::string::npos)
			<< iodp_last_error(w.ctx);
	};
	ioas_allow_iovas_cmd a{sizeof(a), w.ioas2, 2, 0, g.guard_addr() - 16};
	expect_efault(IODP_IOMMU_IOAS_ALLOW_IOVAS, &a, "allowed_iovas");

	ioas_iova_ranges_cmd r{sizeof(r), w.ioas, 8, 0, g.guard_addr(), 0};
	expect_efault(IODP_IOMMU_IOAS_IOVA_RANGES, &r, "allowed_iovas");

	hwpt_alloc_cmd h{};
	h.size = sizeof(h);
	h.dev_id = w.dev;
	h.pt_id = w.parent;
	h.data_type = IODP_HWPT_DATA_VTD_S1;
	h.data_len = sizeof(iodp_hwpt_vtd_s1);
	h.data_uptr = g.guard_addr() - 8;
	expect_efault(IODP_IOMMU_HWPT_ALLOC, &h, "data_uptr");

	iodp_hw_info i{};
	i.size = sizeof(i);
	i.dev_id = w.dev;
	i.data_len = 4096;
	i.data_uptr = g.guard_addr() - 64;
	expect_efault(IODP_IOMMU_GET_HW_INFO, &i, "data_uptr");

	hwpt_get_dirty_bitmap_cmd d{};
	d.size = sizeof(d);
	d.hwpt_id = w.hwpt_dirty;
	d.iova = 0x100000;
	d.length = 0x1000 * 128;
	d.page_size = 0x1000;
	d.data = g.guard_addr() - 8; // 16 bytes of bitmap needed
	expect_efault(IODP_IOMMU_HWPT_GET_DIRTY_BITMAP, &d, "dirty bitmap data");

	// Two entries, the second in the guard page: one handled, then EFAULT.
	auto *inv = reinterpret_cast<iodp_hwpt_vtd_s1_invalidate *>(g.ending(sizeof(w.inv)));
	*inv = w.inv;
	hwpt_invalidate_cmd v{sizeof(v), w.nested, reinterpret_cast<uintptr_t>(inv),
			      IODP_HWPT_INVALIDATE_DATA_VTD_S1, sizeof(w.inv), 2, 0};
	EXPECT_EQ(call_errno(w, IODP_IOMMU_HWPT_INVALIDATE, &v), EFAULT);
	EXPECT_LE(v.entry_num, 1u);

	fault_read_cmd fr{sizeof(fr), w.fault, 4, 0, g.guard_addr()};
	expect_efault(IODP_FAULT_READ, &fr, "records");
	fault_respond_cmd fp{sizeof(fp), w.fault, 1, 0, g.guard_addr()};
	expect_efault(IODP_FAULT_RESPOND, &fp, "responses");
	fault_events_read_cmd fe{sizeof(fe), 0, 4, 0, g.guard_addr(), 0};
	expect_efault(IODP_FAULT_EVENTS_READ, &fe, "events");
}

/** Arrays too large to hold are ENOMEM (or EFAULT), not an exception through C. */
TEST(UserPointers, HugeCounts)
{
	World w;
	GuardedPage g;
	ioas_allow_iovas_cmd a{sizeof(a), w.ioas2, UINT32_MAX, 0, g.guard_addr()};
	const int err = call_errno(w, IODP_IOMMU_IOAS_ALLOW_IOVAS, &a);
	EXPECT_TRUE(err == ENOMEM || err == EFAULT) << err;
	hwpt_get_dirty_bitmap_cmd d{};
	d.size = sizeof(d);
	d.hwpt_id = w.hwpt_dirty;
	d.iova = 0;
	d.length = 1ull << 62;
	d.page_size = 0x1000;
	d.data = reinterpret_cast<uintptr_t>(g.page); // 4 KiB of a 2^47-byte bitmap
	EXPECT_EQ(call_errno(w, IODP_IOMMU_HWPT_GET_DIRTY_BITMAP, &d), EFAULT);
}

#ifdef IODP_FAIL_NTH
/*
 * fail-nth: every command of the ABI tests, with the n-th allocation failing for n = 1, 2,
 * ... until the command succeeds. Each failing call returns ENOMEM with a message, and the
 * whole object graph (Ctx::dump(): objects, mappings, tables, bindings, groups) is what it
 * was before the call.
 */
class FailNth : public ::testing::TestWithParam<Command> {};

TEST_P(FailNth, EachAllocationFailureIsEnomemAndChangesNothing)
{
	const Command &c = GetParam();
	for (long n = 1;; n++) {
		ASSERT_LT(n, 10000) << "never succeeds";
		World w;
		std::vector<std::byte> arg(c.size + 16, std::byte{0});
		c.fill(w, arg.data());
		const uint32_t sz = static_cast<uint32_t>(c.size);
		std::memcpy(arg.data(), &sz, sizeof(sz));
		const std::string before = ctx_of(w.ctx).dump();
		iodp::test::fail_nth(n);
		errno = 0;
		const int rc = iodp_ioctl(w.ctx, c.number, arg.data());
		const int err = errno;
		const bool fired = iodp::test::disarm();
		if (!fired) {
			// Fewer than n allocations: the command ran whole, and must have succeeded.
			EXPECT_EQ(rc, 0) << c.name << ": " << iodp_last_error(w.ctx);
			break;
		}
		if (rc == 0)
			continue; // the failure was absorbed (a cache, a retry): fine
		EXPECT_EQ(err, ENOMEM) << c.name << " n=" << n << ": " << iodp_last_error(w.ctx);
		// "out of memory" where a container could not grow; lib/ctl's own ENOMEM
		// failures name what could not be allocated.
		EXPECT_GT(std::string(iodp_last_error(w.ctx)).size(), std::strlen("X: "))
			<< c.name << " n=" << n;
		EXPECT_EQ(ctx_of(w.ctx).dump(), before) << c.name << " n=" << n;
		if (::testing::Test::HasFailure())
			break;
	}
}

/* More paths of the commands that change state: each variant is named after its command. */
#define VARIANT(label, number, type, last, ...)                                                  \
	Command                                                                                  \
	{                                                                                        \
		label, number, sizeof(type), OFFSETOFEND(type, last),                            \
			filler<type>([](World & w) -> type {                                     \
				type k{};                                                        \
				__VA_ARGS__;                                                     \
				return k;                                                        \
			})                                                                       \
	}

/** Map @p length bytes of the world's buffer at @p iova of @p ioas (buffer offset = iova's). */
void map_more(World &w, uint32_t ioas, uint64_t iova, uint64_t length)
{
	ioas_map_cmd m{};
	m.flags = kFixedRW;
	m.ioas_id = ioas;
	m.user_va = w.buf.addr() + (iova - 0x100000);
	m.length = length;
	m.iova = iova;
	w.ioctl_out(IODP_IOMMU_IOAS_MAP, m);
}

std::vector<Command> fail_nth_commands()
{
	std::vector<Command> v = commands(); // every one: none is left out
	const std::vector<Command> more = {
		// A paging HWPT (its domain invalidated, routes published), a nested one, a
		// device.
		VARIANT("IODP_IOMMU_DESTROY_paging", IODP_IOMMU_DESTROY, destroy_cmd, id,
			{ k.id = w.hwpt_dirty; }),
		VARIANT("IODP_IOMMU_DESTROY_nested", IODP_IOMMU_DESTROY, destroy_cmd, id,
			{ k.id = w.nested; }),
		VARIANT("IODP_IOMMU_DESTROY_device", IODP_IOMMU_DESTROY, destroy_cmd, id,
			{ k.id = w.dev; }),
		// Two mappings, through three paging HWPTs; and everything at once.
		VARIANT("IODP_IOMMU_IOAS_UNMAP_two", IODP_IOMMU_IOAS_UNMAP, ioas_unmap_cmd, length, {
			map_more(w, w.ioas, 0x101000, 0x1000);
			k.ioas_id = w.ioas;
			k.iova = 0x100000;
			k.length = 0x2000;
		}),
		VARIANT("IODP_IOMMU_IOAS_UNMAP_all", IODP_IOMMU_IOAS_UNMAP, ioas_unmap_cmd, length, {
			map_more(w, w.ioas, 0x200000, 0x200000);
			k.ioas_id = w.ioas;
			k.iova = 0;
			k.length = UINT64_MAX;
		}),
		// Two source mappings become two pieces, into an IOAS with a table.
		VARIANT("IODP_IOMMU_IOAS_COPY_two", IODP_IOMMU_IOAS_COPY, ioas_copy_cmd, src_iova, {
			map_more(w, w.ioas, 0x101000, 0x1000);
			device_attach_cmd a{};
			a.dev_id = w.dev;
			a.pt_id = w.ioas2;
			w.ioctl_out(IODP_DEVICE_ATTACH, a);
			k.flags = kFixedRW;
			k.dst_ioas_id = w.ioas2;
			k.src_ioas_id = w.ioas;
			k.length = 0x2000;
			k.dst_iova = 0x5000000;
			k.src_iova = 0x100000;
		}),
		// Replace: dev2's automatic domain loses its last user and goes.
		VARIANT("IODP_DEVICE_ATTACH_replace", IODP_DEVICE_ATTACH, device_attach_cmd, pasid, {
			k.dev_id = w.dev2;
			k.pt_id = w.nested;
		}),
		VARIANT("IODP_DEVICE_ATTACH_nested", IODP_DEVICE_ATTACH, device_attach_cmd, pasid, {
			k.dev_id = w.dev;
			k.pt_id = w.nested;
		}),
		// A nested binding: its (domain, PASID) entries are dropped.
		VARIANT("IODP_DEVICE_DETACH_nested", IODP_DEVICE_DETACH, device_detach_cmd, pasid, {
			device_attach_cmd a{};
			a.dev_id = w.dev;
			a.pt_id = w.nested;
			w.ioctl_out(IODP_DEVICE_ATTACH, a);
			k.dev_id = w.dev;
		}),
	};
	v.insert(v.end(), more.begin(), more.end());
	return v;
}

INSTANTIATE_TEST_SUITE_P(EveryCommand, FailNth, ::testing::ValuesIn(fail_nth_commands()),
			 [](const auto &info) { return std::string(info.param.name); });
#endif

} // namespace
} // namespace iodp::ctl::test
