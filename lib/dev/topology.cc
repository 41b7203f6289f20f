/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/dev.h>

#include <hwloc.h>

namespace iodp::dev {

int memory_node(const void *addr, size_t len)
{
	hwloc_topology_t topo;
	if (hwloc_topology_init(&topo) != 0)
		return -1;
	int node = -1;
	if (hwloc_topology_load(topo) == 0 &&
	    hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE) > 1) {
		hwloc_nodeset_t set = hwloc_bitmap_alloc();
		if (set != nullptr &&
		    hwloc_get_area_memlocation(topo, addr, len, set, HWLOC_MEMBIND_BYNODESET) == 0 &&
		    hwloc_bitmap_weight(set) == 1)
			node = hwloc_bitmap_first(set);
		hwloc_bitmap_free(set);
	}
	hwloc_topology_destroy(topo);
	return node;
}

int cpu_node(unsigned cpu)
{
	hwloc_topology_t topo;
	if (hwloc_topology_init(&topo) != 0)
		return -1;
	int node = -1;
	if (hwloc_topology_load(topo) == 0) {
		const int nodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
		for (int i = 0; nodes > 1 && i < nodes && node < 0; i++) {
			hwloc_obj_t n = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, i);
			if (n != nullptr && n->cpuset != nullptr &&
			    hwloc_bitmap_isset(n->cpuset, cpu))
				node = static_cast<int>(n->os_index);
		}
	}
	hwloc_topology_destroy(topo);
	return node;
}

} // namespace iodp::dev
