/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fail-nth for the allocation-failure test (the kernel's iommufd_fail_nth idea): this
 * binary's operator new counts down while armed and throws std::bad_alloc at the n-th
 * allocation, once. Every heap allocation counts: lib/ctl's own, the standard library's
 * containers and strings inside it, and what it calls.
 */
#include "fail_nth.h"

#include <cstdlib>
#include <cstddef>
#include <execinfo.h>
#include <new>
#include <unistd.h>

namespace iodp::test {

std::atomic<bool> g_fail_armed{false};
std::atomic<long> g_fail_countdown{0};
std::atomic<long> g_allocations{0};

} // namespace iodp::test

namespace {

void *allocate(size_t n, size_t align)
{
	using namespace iodp::test;
	if (g_fail_armed.load(std::memory_order_relaxed)) {
		g_allocations.fetch_add(1, std::memory_order_relaxed);
		if (g_fail_countdown.fetch_sub(1, std::memory_order_relaxed) == 1) {
			g_fail_armed.store(false, std::memory_order_relaxed);
			// IODP_FAIL_NTH_TRACE=1: where it fired (backtrace_symbols_fd uses no heap).
			if (std::getenv("IODP_FAIL_NTH_TRACE") != nullptr) {
				void *frames[32];
				const int k = backtrace(frames, 32);
				(void)!write(2, "fail-nth fired at:\n", 19);
				backtrace_symbols_fd(frames, k, 2);
			}
			return nullptr;
		}
	}
	if (n == 0)
		n = 1;
	if (align <= alignof(std::max_align_t))
		return std::malloc(n);
	return std::aligned_alloc(align, (n + align - 1) / align * align);
}

} // namespace

void *operator new(size_t n)
{
	if (void *p = allocate(n, 0))
		return p;
	throw std::bad_alloc();
}
void *operator new[](size_t n)
{
	return operator new(n);
}
void *operator new(size_t n, std::align_val_t a)
{
	if (void *p = allocate(n, static_cast<size_t>(a)))
		return p;
	throw std::bad_alloc();
}
void *operator new[](size_t n, std::align_val_t a)
{
	return operator new(n, a);
}
void *operator new(size_t n, const std::nothrow_t &) noexcept
{
	return allocate(n, 0);
}
void *operator new[](size_t n, const std::nothrow_t &) noexcept
{
	return allocate(n, 0);
}
void operator delete(void *p) noexcept { std::free(p); }
void operator delete[](void *p) noexcept { std::free(p); }
void operator delete(void *p, size_t) noexcept { std::free(p); }
void operator delete[](void *p, size_t) noexcept { std::free(p); }
void operator delete(void *p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void *p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void *p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void *p, size_t, std::align_val_t) noexcept { std::free(p); }
