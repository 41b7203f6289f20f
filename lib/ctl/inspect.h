/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * Looking at a context's objects from outside the Ctx: for lib/ctl's own extensions (the
 * kernel's test commands, VFIO compatibility) and for tests. Not installed: the objects'
 * layouts (objects.h) are not part of the contract. Users of the library read what they
 * need through Ctx::object_info().
 */

#include "objects.h"

#include <mutex>
#include <vector>

namespace iodp::ctl {

/**
 * Holds the context's lock while it lives, so what find() returns stays valid and
 * unchanged. Calling the Ctx while one is alive on the same thread deadlocks (the lock is
 * not recursive): take what you need, let it go, then call.
 */
class [[gnu::visibility("hidden")]] Inspector {
public:
	explicit Inspector(const Ctx &ctx);
	Inspector(const Inspector &) = delete;
	Inspector &operator=(const Inspector &) = delete;

	/** The ids of every object, ascending. */
	std::vector<uint32_t> ids() const;
	/** The object with @p id, or nullptr. */
	const Object *find(uint32_t id) const;
	/** The object with @p id if it is a T (Ioas, HwptPaging, Device, ...), else nullptr. */
	template <class T> const T *find_as(uint32_t id) const
	{
		return dynamic_cast<const T *>(find(id));
	}

private:
	const Ctx::Impl &impl_;
	std::unique_lock<std::mutex> lock_;
};

} // namespace iodp::ctl
