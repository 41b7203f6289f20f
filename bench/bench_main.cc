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

long free_hugepages()
{
	std::ifstream f("/proc/meminfo");
	std::string key;
	long value = 0;
	while (f >> key >> value)
		if (key == "HugePages_Free:")
			return value;
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	// The main lcore plus up to eight workers, one per CPU (Engine/<profile>/<workers>).
	const long cpus = std::max(1L, std::min(9L, sysconf(_SC_NPROCESSORS_ONLN)));
	std::vector<std::string> eal = {"iodp-bench", "--no-pci", "-l",
					"0-" + std::to_string(cpus - 1),
					"--file-prefix=iodp_bench", "--log-level=error"};
	if (free_hugepages() < 64) {
		std::fprintf(stderr, "iodp-bench: fewer than 64 free hugepages; running the EAL "
				     "with --no-huge (hash and walk numbers will be lower)\n");
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
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	rte_eal_cleanup();
	return 0;
}
