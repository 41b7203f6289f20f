/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * IOTLB hit lookups, in bursts of 32, against what software IOMMUs use today.
 *
 *   IotlbHit/iodp/<entries>        iotlb::Shard::lookup_bulk (capacity 2x entries)
 *   IotlbHit/array/<entries>       a direct-indexed array: the floor
 *   IotlbHit/rte_hash/<entries>    DPDK rte_hash_lookup_bulk_data
 *   IotlbHit/umap_mutex/<entries>  std::unordered_map behind a std::mutex, locked per
 *                                  lookup (QEMU's intel-iommu / SMMUv3 IOTLB)
 *   IotlbHit/vhost_list/<entries>  a sorted list walked under a reader-writer lock
 *                                  (DPDK vhost's IOTLB)
 *
 * Every lookup hits; addresses are drawn uniformly from the cached pages, so the working set
 * is the whole table. items_per_second is lookups per second.
 */
#include <iodp/iotlb.h>

#include <benchmark/benchmark.h>

#include <rte_eal.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_rwlock.h>

#include <list>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kBurst = 32;
constexpr size_t kStream = 1 << 16;
constexpr uint64_t kIovaBase = 1ull << 32;
constexpr uint64_t kHostBase = 0x7f0000000000;

/** kStream addresses, uniformly over @p entries pages, with a page offset. */
std::vector<uint64_t> stream(uint64_t entries)
{
	std::mt19937_64 rng(entries);
	std::vector<uint64_t> v(kStream);
	for (uint64_t &a : v)
		a = kIovaBase + (rng() % entries) * 4096 + (rng() & 0xff8);
	return v;
}

uint64_t host_of(uint64_t iova)
{
	return kHostBase + (iova - kIovaBase);
}

/**
 * The timed loop every implementation shares: burst(pos, host) translates the kBurst
 * addresses of the stream starting at pos into host[] and returns how many hit.
 */
template <class Burst> void run_bursts(benchmark::State &s, Burst &&burst)
{
	uint64_t host[kBurst];
	size_t pos = 0;
	uint64_t sum = 0, hits = 0;
	for (auto _ : s) {
		hits += burst(pos, host);
		sum += host[kBurst - 1];
		pos = (pos + kBurst) % kStream;
	}
	benchmark::DoNotOptimize(sum);
	if (hits != s.iterations() * kBurst)
		s.SkipWithError("a lookup missed");
	s.SetItemsProcessed(static_cast<int64_t>(s.iterations()) * kBurst);
}

void iodp_shard(benchmark::State &s, uint64_t entries)
{
	iodp::iotlb::ShardConfig cfg;
	cfg.entries = static_cast<uint32_t>(entries * 2);
	iodp::Result<iodp::iotlb::Shard> sh = iodp::iotlb::Shard::create(cfg);
	if (!sh) {
		s.SkipWithError(sh.status().message().c_str());
		return;
	}
	const uint16_t ctx = sh->context(1, 0, 0);
	for (uint64_t p = 0; p < entries; p++)
		sh->fill(ctx, kIovaBase + p * 4096, 12, host_of(kIovaBase + p * 4096), 3);
	std::vector<iodp::iotlb::Probe> probes(kStream);
	const std::vector<uint64_t> addrs = stream(entries);
	for (size_t i = 0; i < kStream; i++)
		probes[i] = {addrs[i], ctx};
	uint8_t perm[kBurst];
	run_bursts(s, [&](size_t pos, uint64_t *host) {
		return sh->lookup_bulk(&probes[pos], kBurst, host, perm);
	});
	s.SetLabel(std::string("shard on ") + iodp::ram_backing_name(sh->backing()));
}

void array(benchmark::State &s, uint64_t entries)
{
	std::vector<uint64_t> table(entries);
	for (uint64_t p = 0; p < entries; p++)
		table[p] = host_of(kIovaBase + p * 4096);
	const std::vector<uint64_t> addrs = stream(entries);
	run_bursts(s, [&](size_t pos, uint64_t *host) {
		for (size_t i = 0; i < kBurst; i++) {
			const uint64_t a = addrs[pos + i];
			host[i] = table[(a - kIovaBase) >> 12] + (a & 0xfff);
		}
		benchmark::DoNotOptimize(host);
		return kBurst;
	});
}

void dpdk_hash(benchmark::State &s, uint64_t entries)
{
	const std::string name = "iotlb_bench_" + std::to_string(entries);
	rte_hash_parameters p{};
	p.name = name.c_str();
	p.entries = static_cast<uint32_t>(entries * 2);
	p.key_len = sizeof(uint64_t);
	p.hash_func = rte_hash_crc;
	p.socket_id = 0;
	rte_hash *h = rte_hash_create(&p);
	if (h == nullptr) {
		s.SkipWithError("rte_hash_create failed");
		return;
	}
	for (uint64_t pg = 0; pg < entries; pg++) {
		const uint64_t key = (kIovaBase >> 12) + pg;
		void *data = reinterpret_cast<void *>(host_of(kIovaBase + pg * 4096));
		rte_hash_add_key_data(h, &key, data);
	}
	const std::vector<uint64_t> addrs = stream(entries);
	std::vector<uint64_t> keys(kStream);
	for (size_t i = 0; i < kStream; i++)
		keys[i] = addrs[i] >> 12;
	std::vector<const void *> key_ptrs(kStream);
	for (size_t i = 0; i < kStream; i++)
		key_ptrs[i] = &keys[i];
	void *data[kBurst];
	uint64_t hit_mask = 0;
	run_bursts(s, [&](size_t pos, uint64_t *host) {
		const int hits =
			rte_hash_lookup_bulk_data(h, &key_ptrs[pos], kBurst, &hit_mask, data);
		for (size_t i = 0; i < kBurst; i++)
			host[i] = reinterpret_cast<uintptr_t>(data[i]) + (addrs[pos + i] & 0xfff);
		return static_cast<size_t>(hits);
	});
	s.SetLabel(rte_eal_has_hugepages() ? "EAL memory: hugepages" : "EAL memory: no-huge");
	rte_hash_free(h);
}

void umap_mutex(benchmark::State &s, uint64_t entries)
{
	std::unordered_map<uint64_t, uint64_t> map;
	std::mutex lock;
	for (uint64_t p = 0; p < entries; p++)
		map[(kIovaBase >> 12) + p] = host_of(kIovaBase + p * 4096);
	const std::vector<uint64_t> addrs = stream(entries);
	run_bursts(s, [&](size_t pos, uint64_t *host) {
		size_t hits = 0;
		for (size_t i = 0; i < kBurst; i++) {
			const uint64_t a = addrs[pos + i];
			std::lock_guard g(lock); // one lock per translation, as QEMU takes it
			auto it = map.find(a >> 12);
			host[i] = it == map.end() ? 0 : it->second + (a & 0xfff);
			hits += it != map.end();
		}
		return hits;
	});
}

void vhost_list(benchmark::State &s, uint64_t entries)
{
	struct Node {
		uint64_t iova, size, uaddr;
	};
	std::list<Node> list; // sorted by iova, like vhost's TAILQ
	for (uint64_t p = 0; p < entries; p++)
		list.push_back({kIovaBase + p * 4096, 4096, host_of(kIovaBase + p * 4096)});
	rte_rwlock_t lock;
	rte_rwlock_init(&lock);
	const std::vector<uint64_t> addrs = stream(entries);
	run_bursts(s, [&](size_t pos, uint64_t *host) {
		size_t hits = 0;
		for (size_t i = 0; i < kBurst; i++) {
			const uint64_t a = addrs[pos + i];
			host[i] = 0;
			rte_rwlock_read_lock(&lock);
			for (const Node &n : list) {
				if (a < n.iova)
					break;
				if (a < n.iova + n.size) {
					host[i] = n.uaddr + (a - n.iova);
					hits++;
					break;
				}
			}
			rte_rwlock_read_unlock(&lock);
		}
		return hits;
	});
}

} // namespace

void register_iotlb_benchmarks()
{
	struct Impl {
		const char *name;
		void (*fn)(benchmark::State &, uint64_t);
	};
	static const Impl impls[] = {{"iodp", iodp_shard},     {"array", array},
				     {"rte_hash", dpdk_hash},  {"umap_mutex", umap_mutex},
				     {"vhost_list", vhost_list}};
	for (const Impl &impl : impls)
		for (uint64_t entries : {1024ull, 16384ull, 262144ull})
			benchmark::RegisterBenchmark(
				("IotlbHit/" + std::string(impl.name) + "/" +
				 std::to_string(entries)).c_str(),
				[impl, entries](benchmark::State &s) { impl.fn(s, entries); });
}
