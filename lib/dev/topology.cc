/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/dev.h>

#include <hwloc.h>

#include <mutex>

namespace iodp::dev {

namespace {

/**
 * The machine's topology, loaded once (a load reads sysfs: milliseconds) and kept for the
 * process; nullptr when hwloc cannot load it or there is only one NUMA node, in which
 * case placement has nothing to choose.
 */
hwloc_topology_t numa_topology()
{
	static hwloc_topology_t topo = nullptr;
	static std::once_flag once;
	std::call_once(once, [] {
		hwloc_topology_t t;
		if (hwloc_topology_init(&t) != 0)
			return;
		if (hwloc_topology_load(t) != 0 ||
		    hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE) <= 1) {
			hwloc_topology_destroy(t);
			return;
		}
		topo = t;
	});
	return topo;
}

} // namespace

int memory_node(const void *addr, size_t len)
{
	hwloc_topology_t topo = numa_topology();
	if (topo == nullptr)
		return -1;
	int node = -1;
	hwloc_nodeset_t set = hwloc_bitmap_alloc();
	if (set != nullptr &&
	    hwloc_get_area_memlocation(topo, addr, len, set, HWLOC_MEMBIND_BYNODESET) == 0 &&
	    hwloc_bitmap_weight(set) == 1)
		node = hwloc_bitmap_first(set);
	hwloc_bitmap_free(set);
	return node;
}

int cpu_node(unsigned cpu)
{
	hwloc_topology_t topo = numa_topology();
	if (topo == nullptr)
		return -1;
	const int nodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
	for (int i = 0; i < nodes; i++) {
		hwloc_obj_t n = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, i);
		if (n != nullptr && n->cpuset != nullptr && hwloc_bitmap_isset(n->cpuset, cpu))
			return static_cast<int>(n->os_index);
	}
	return -1;
}

} // namespace iodp::dev
