/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * iodp-bench: every suite in one binary, so ratios against the baselines come from one run.
 * DPDK's EAL is started first (rte_hash and DPDK memory need it): on hugepages when some are
 * free, else with --no-huge, and never probing PCI.
 */
#include <benchmark/benchmark.h>

#include <rte_eal.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

void register_walk_benchmarks();
void register_iotlb_benchmarks();
void register_inval_benchmarks();
void register_engine_benchmarks();
void register_shadow_benchmarks();
void register_ctl_benchmarks();

namespace {

/**
 * Free default-size hugepages. /proc/meminfo is read a line at a time: most lines end in a
 * unit ("MemTotal: 123 kB"), so reading "key value" pairs loses step at the first one.
 */
long free_hugepages()
{
	std::ifstream f("/proc/meminfo");
	std::string line;
	while (std::getline(f, line)) {
		long value = 0;
		if (std::sscanf(line.c_str(), "HugePages_Free: %ld", &value) == 1)
			return value;
	}
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	// The main lcore plus up to eight workers, one per CPU (Engine/<profile>/<workers>).
	const long cpus = std::max(1L, std::min(9L, sysconf(_SC_NPROCESSORS_ONLN)));
	std::vector<std::string> eal = {"iodp-bench", "--no-pci", "-l",
					"0-" + std::to_string(cpus - 1),
					// No shared config or hugepage files: two runs at once (or a
					// run beside a test) do not collide, and nothing is left behind.
					"--in-memory", "--log-level=error"};
	const long free_pages = free_hugepages();
	const bool huge = free_pages >= 64;
	if (!huge) {
		std::fprintf(stderr, "iodp-bench: %ld free hugepages (fewer than 64); running the EAL "
				     "with --no-huge (hash and walk numbers will be lower)\n",
			     free_pages);
		eal.insert(eal.end(), {"--no-huge", "-m", "2048"});
	}
	std::vector<char *> eal_argv;
	for (std::string &a : eal)
		eal_argv.push_back(a.data());
	if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
		std::fprintf(stderr, "iodp-bench: rte_eal_init failed\n");
		return 1;
	}
	register_walk_benchmarks();
	register_iotlb_benchmarks();
	register_inval_benchmarks();
	register_engine_benchmarks();
	register_shadow_benchmarks();
	register_ctl_benchmarks();
	// Every result says what memory it ran on: the EAL's here, each benchmark's own
	// blocks in its label (walks, shards and guest RAM may fall back when pages run out).
	benchmark::AddCustomContext("eal_memory", huge && rte_eal_has_hugepages()
							  ? "hugepages"
							  : "no-huge");
	benchmark::AddCustomContext("free_hugepages_at_start", std::to_string(free_pages));
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	rte_eal_cleanup();
	return 0;
}
