/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ShadowSync/<pattern>/{iodp,per_page}: shadowing a guest's page table into a kernel IOMMU.
 *
 *   iodp      range walk of the invalidated range, coalesced runs, diff (lib/shadow)
 *   per_page  QEMU's way (intel-iommu caching-mode + VFIO): the same range walk, one
 *             kernel call per leaf
 *
 * The kernel is a stand-in that counts the calls and makes one real, cheap system call per
 * call (getppid), so a kernel call costs at least a kernel entry, as VFIO_IOMMU_MAP_DMA
 * does, not nothing; a real MAP_DMA also pins pages and edits IOMMU tables, so real ratios
 * are larger. Items are guest pages shadowed; `calls_per_page` is kernel calls per page.
 *
 *   contig-4k     1 GiB of 4 KiB guest pages over contiguous host memory, one invalidation
 *   scattered-4k  64K 4 KiB pages every other page (nothing to coalesce), one invalidation
 *   2m            1 GiB of 2 MiB guest pages, one invalidation
 *   churn         strict-mode traffic: map a page + invalidate, unmap it + invalidate
 */
#include <benchmark/benchmark.h>

#include <iodp/mem.h>
#include <iodp/pgtable_builder.h>
#include <iodp/shadow.h>

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

namespace {

using namespace iodp;
using namespace iodp::pgtable;

constexpr uint64_t kMiB = 1ull << 20, kGiB = 1ull << 30;
constexpr uint64_t kPoolGpa = 0x40000000, kPoolBytes = 16 * kMiB;
constexpr uint64_t kIova = 0x7f0000000000, kHost = 0x100000000;

/** Counts calls; each costs one real system call. */
class StandInKernel : public shadow::KernelMapper {
public:
	Status map(uint64_t, uint64_t, uint64_t, uint8_t) override
	{
		syscall(SYS_getppid);
		calls++;
		return {};
	}
	Status unmap(uint64_t, uint64_t) override
	{
		syscall(SYS_getppid);
		calls++;
		return {};
	}
	uint64_t calls = 0;
};

/** A guest x86-64 table in its own memory, built once per pattern. */
struct GuestTable {
	GuestRam ram;
	GuestMemory mem;
	TablePool pool;
	TableBuilder table;
	Translation xlat;

	static std::unique_ptr<GuestTable> make()
	{
		auto g = std::make_unique<GuestTable>();
		Result<GuestRam> r = GuestRam::allocate(kPoolBytes, GuestRam::Source::anonymous);
		if (!r || !g->mem.add_region(kPoolGpa, kPoolBytes, r->data()).ok())
			return nullptr;
		g->ram = std::move(*r);
		g->pool = TablePool(kPoolGpa, g->ram.data(), kPoolBytes, 4096);
		Result<TableBuilder> b = TableBuilder::create(table_config(Format::x86_64_4l),
							      &g->pool);
		if (!b)
			return nullptr;
		g->table = std::move(*b);
		const TableConfig c = g->table.config();
		Result<Translation> x = make_translation(g->mem, c);
		if (!x)
			return nullptr;
		g->xlat = *x;
		return g;
	}
};

constexpr uint8_t kPerm = kMapRead | kMapWrite | kMapUser;

/** Map @p pages pages of @p page bytes, every @p stride bytes of IOVA, one map each. */
std::unique_ptr<GuestTable> build(uint64_t pages, uint64_t page, uint64_t stride)
{
	std::unique_ptr<GuestTable> g = GuestTable::make();
	if (g == nullptr)
		return nullptr;
	for (uint64_t i = 0; i < pages; i++)
		if (!g->table.map(kIova + i * stride, kHost + i * page, page, kPerm).ok())
			return nullptr;
	return g;
}

void one_invalidation(benchmark::State &state, GuestTable *g, uint64_t pages, uint64_t page,
		      uint64_t stride, bool coalesce)
{
	if (g == nullptr) {
		state.SkipWithError("could not build the guest table");
		return;
	}
	uint64_t calls = 0, shadowed = 0;
	for (auto _ : state) {
		StandInKernel k;
		shadow::Shadow sh(k, {.coalesce = coalesce});
		if (!sh.sync(g->xlat, kIova, pages * stride).ok()) {
			state.SkipWithError("sync failed");
			return;
		}
		calls += k.calls;
		shadowed += pages * (page / 4096);
		benchmark::DoNotOptimize(sh.extents().size());
	}
	state.SetItemsProcessed(static_cast<int64_t>(shadowed));
	state.counters["calls_per_page"] = shadowed ? static_cast<double>(calls) / shadowed : 0;
}

void churn(benchmark::State &state, bool coalesce)
{
	std::unique_ptr<GuestTable> g = GuestTable::make();
	if (g == nullptr) {
		state.SkipWithError("could not build the guest table");
		return;
	}
	StandInKernel k;
	shadow::Shadow sh(k, {.coalesce = coalesce});
	uint64_t i = 0;
	for (auto _ : state) {
		const uint64_t iova = kIova + (i % 256) * 4096, host = kHost + (i * 7919 % 4096) * 4096;
		i++;
		if (!g->table.map(iova, host, 4096, kPerm).ok() || !sh.sync(g->xlat, iova, 4096).ok() ||
		    !g->table.unmap(iova, 4096).ok() || !sh.sync(g->xlat, iova, 4096).ok()) {
			state.SkipWithError("churn step failed");
			return;
		}
	}
	state.SetItemsProcessed(state.iterations());
	state.counters["calls_per_page"] =
		state.iterations() ? static_cast<double>(k.calls) / state.iterations() : 0;
}

struct Pattern {
	const char *name;
	uint64_t pages, page, stride;
};

const Pattern kPatterns[] = {
	{"contig-4k", kGiB / 4096, 4096, 4096},
	{"scattered-4k", 65536, 4096, 8192},
	{"2m", kGiB / (2 * kMiB), 2 * kMiB, 2 * kMiB},
};

} // namespace

void register_shadow_benchmarks()
{
	for (const Pattern &p : kPatterns) {
		// Built on first use and kept: both variants read the same table.
		auto table = std::make_shared<std::unique_ptr<GuestTable>>();
		auto get = [table, p]() {
			if (*table == nullptr)
				*table = build(p.pages, p.page, p.stride);
			return table->get();
		};
		for (bool coalesce : {true, false})
			benchmark::RegisterBenchmark(
				(std::string("ShadowSync/") + p.name + (coalesce ? "/iodp" : "/per_page"))
					.c_str(),
				[get, p, coalesce](benchmark::State &s) {
					one_invalidation(s, get(), p.pages, p.page, p.stride, coalesce);
				})
				->Unit(benchmark::kMillisecond);
	}
	for (bool coalesce : {true, false})
		benchmark::RegisterBenchmark(
			(std::string("ShadowSync/churn/") + (coalesce ? "iodp" : "per_page")).c_str(),
			[coalesce](benchmark::State &s) { churn(s, coalesce); });
}
