/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/ring.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace iodp::mem {

Result<size_t> ring_bytes(unsigned elem_size, unsigned entries)
{
	const ssize_t sz = rte_ring_get_memsize_elem(elem_size, entries);
	if (sz < 0)
		return Status::error(-EINVAL, "ring of {} entries of {} bytes: DPDK takes a power "
				     "of two entries of a multiple of 4 bytes", entries, elem_size);
	return static_cast<size_t>(sz);
}

Status ring_init(rte_ring *mem, std::string_view name, unsigned entries, unsigned flags)
{
	char rname[RTE_RING_NAMESIZE];
	const size_t n = std::min(name.size(), sizeof(rname) - 1);
	std::memcpy(rname, name.data(), n);
	rname[n] = '\0';
	// rte_ring_init sets up a pointer ring's header; element rings share its layout.
	if (int rc = rte_ring_init(mem, rname, entries, flags); rc != 0)
		return Status::error(rc, "ring {}: rte_ring_init failed", rname);
	return {};
}

Result<rte_ring *> ring_alloc(std::string_view name, unsigned elem_size, unsigned entries,
			      unsigned flags)
{
	Result<size_t> bytes = ring_bytes(elem_size, entries);
	if (!bytes)
		return bytes.status();
	const size_t rounded = (*bytes + 63) & ~size_t{63};
	void *mem = std::aligned_alloc(64, rounded);
	if (mem == nullptr)
		return Status::error(-ENOMEM, "ring {}: no memory for {} bytes", name, rounded);
	std::memset(mem, 0, rounded);
	auto *r = static_cast<rte_ring *>(mem);
	if (Status s = ring_init(r, name, entries, flags); !s) {
		std::free(mem);
		return s;
	}
	return r;
}

} // namespace iodp::mem
