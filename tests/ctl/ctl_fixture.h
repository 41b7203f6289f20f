/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/* Shared helpers for the control-plane tests. */

#include <iodp/coherence.h>
#include <iodp/iodp.h>
#include <iodp/ctl.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <sys/mman.h>

namespace iodp::ctl::test {

/** Zeroed, 2 MiB-aligned host memory that tests map into IOASes. */
class HostBuffer {
public:
	explicit HostBuffer(size_t size) : size_(size)
	{
		void *p = std::aligned_alloc(2u << 20, (size + (2u << 20) - 1) & ~((2ull << 20) - 1));
		std::memset(p, 0, size);
		data_ = static_cast<std::byte *>(p);
	}
	~HostBuffer() { std::free(data_); }
	HostBuffer(const HostBuffer &) = delete;
	HostBuffer &operator=(const HostBuffer &) = delete;

	std::byte *data() const { return data_; }
	std::byte *at(uint64_t off) const { return data_ + off; }
	uint64_t addr(uint64_t off = 0) const { return reinterpret_cast<uintptr_t>(data_ + off); }
	size_t size() const { return size_; }

private:
	std::byte *data_;
	size_t size_;
};

inline constexpr uint32_t kRW = IODP_IOAS_MAP_READABLE | IODP_IOAS_MAP_WRITEABLE;
inline constexpr uint32_t kFixedRW = IODP_IOAS_MAP_FIXED_IOVA | kRW;

inline DeviceSpec vtd_device(const std::string &name, uint32_t group = 0)
{
	DeviceSpec s;
	s.name = name;
	s.model = IommuModel::vtd;
	s.group = group;
	return s;
}

inline DeviceSpec smmu_device(const std::string &name, uint32_t group = 0)
{
	DeviceSpec s = vtd_device(name, group);
	s.model = IommuModel::smmuv3;
	return s;
}

/** Unwrap a Result in a test, failing with its message. */
template <class T> T ok(Result<T> r)
{
	EXPECT_TRUE(r.ok()) << r.status().message();
	return r.ok() ? std::move(*r) : T{};
}

inline void ok(const Status &s)
{
	EXPECT_TRUE(s.ok()) << s.message();
}

/** Expect a failure with @p err and a message containing @p text. */
#define EXPECT_FAILS(expr, err, text)                                                            \
	do {                                                                                     \
		const ::iodp::Status st_ = ::iodp::ctl::test::status_of(expr);                   \
		EXPECT_EQ(st_.code(), -(err)) << st_.message();                                  \
		EXPECT_NE(st_.message().find(text), std::string::npos)                           \
			<< "message: " << st_.message() << "\nwanted: " << (text);               \
	} while (0)

inline Status status_of(const Status &s) { return s; }
template <class T> Status status_of(const Result<T> &r)
{
	return r.ok() ? Status() : r.status();
}

} // namespace iodp::ctl::test
