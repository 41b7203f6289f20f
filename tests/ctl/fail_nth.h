/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/* The allocation-failure switch of the fail-nth test binary (fail_nth_alloc.cc). */

#include <atomic>

namespace iodp::test {

extern std::atomic<bool> g_fail_armed;
extern std::atomic<long> g_fail_countdown;
extern std::atomic<long> g_allocations; ///< counted while armed

/** The @p n-th allocation from now fails (once); disarm() stops counting. */
inline void fail_nth(long n)
{
	g_allocations.store(0, std::memory_order_relaxed);
	g_fail_countdown.store(n, std::memory_order_relaxed);
	g_fail_armed.store(true, std::memory_order_relaxed);
}

/** Whether the failure happened (the countdown reached it). */
inline bool disarm()
{
	const bool fired = !g_fail_armed.exchange(false, std::memory_order_relaxed);
	return fired;
}

} // namespace iodp::test
