/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/engine.h>

#include <rte_cycles.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace iodp::engine {

using dev::Completion;
using dev::Request;
using pgtable::WalkResult;

namespace {

constexpr uint64_t kPage = 4096;
constexpr unsigned kStatWords = sizeof(WorkerStats) / sizeof(uint64_t);
static_assert(sizeof(WorkerStats) % sizeof(uint64_t) == 0, "WorkerStats is all counters");
static_assert(sizeof(FaultNote) % 4 == 0, "rte_ring elements are multiples of 4 bytes");

/** Pages [first, last] of a request, or 0 when it is malformed. */
inline uint64_t pages_of(const Request &r)
{
	const uint64_t len = r.length ? r.length : 1;
	if (len > IODP_REQUEST_MAX_LEN || r.iova + (len - 1) < r.iova ||
	    (r.access & ~0xfu) != 0 || (r.access & 7) == 0)
		return 0;
	return ((r.iova + len - 1) / kPage) - (r.iova / kPage) + 1;
}

} // namespace

struct Worker::Published {
	std::atomic<uint64_t> word[kStatWords];
};

Worker::Worker(ctl::Ctx &ctx, const WorkerConfig &config)
	: ctx_(ctx), config_(config), pub_(std::make_unique<Published>())
{
	for (std::atomic<uint64_t> &w : pub_->word)
		w.store(0, std::memory_order_relaxed);
}

Result<std::unique_ptr<Worker>> Worker::create(ctl::Ctx &ctx, const WorkerConfig &config)
{
	if (config.fault_ring < 8 || (config.fault_ring & (config.fault_ring - 1)))
		return Status::error(-EINVAL, "worker: fault_ring %u is not a power of two >= 8",
				     config.fault_ring);
	std::unique_ptr<Worker> w(new Worker(ctx, config));
	Result<iotlb::Shard> shard = iotlb::Shard::create(config.shard);
	if (!shard)
		return shard.status();
	w->shard_ = std::move(*shard);
	const ssize_t sz = rte_ring_get_memsize_elem(sizeof(FaultNote), config.fault_ring);
	void *mem = sz > 0 ? std::aligned_alloc(64, (static_cast<size_t>(sz) + 63) & ~size_t{63})
			   : nullptr;
	if (mem == nullptr)
		return Status::error(-ENOMEM, "worker: no memory for its fault ring");
	std::memset(mem, 0, static_cast<size_t>(sz));
	w->faults_ = static_cast<rte_ring *>(mem);
	char name[RTE_RING_NAMESIZE];
	std::snprintf(name, sizeof(name), "iodp_flt_%p", static_cast<void *>(w.get()));
	if (rte_ring_init(w->faults_, name, config.fault_ring, RING_F_SP_ENQ | RING_F_SC_DEQ) != 0)
		return Status::error(-EINVAL, "worker: rte_ring_init failed for its fault ring");
	Result<unsigned> id = ctx.coherence().register_worker(&w->shard_);
	if (!id)
		return id.status();
	w->id_ = *id;
	w->registered_ = true;
	return w;
}

Worker::~Worker()
{
	if (registered_)
		ctx_.coherence().unregister_worker(id_);
	std::free(faults_);
}

Status Worker::set_port(uint16_t port, uint32_t ctl_device)
{
	if (port >= kMaxPorts)
		return Status::error(-EINVAL, "worker: port %u is beyond the last (%u)", port,
				     kMaxPorts - 1);
	port_dev_[port] = ctl_device;
	return {};
}

void Worker::begin_burst()
{
	own_.invalidations += ctx_.coherence().drain(id_);
	burst_start_ = rte_rdtsc();
}

void Worker::end_burst(bool busy)
{
	ctx_.coherence().quiescent(id_);
	const uint64_t cycles = rte_rdtsc() - burst_start_;
	own_.total_cycles += cycles;
	if (busy) {
		own_.busy_cycles += cycles;
		own_.bursts++;
	}
	// Idle rounds publish now and then: readers see the totals settle.
	if (busy || (++idle_rounds_ & 0xff) == 0)
		publish();
	if (config_.report_faults_inline && rte_ring_count(faults_) != 0)
		report_faults();
}

size_t Worker::translate_burst(const Request *reqs, size_t n, Completion *cpls, size_t cap,
			       size_t *consumed)
{
	begin_burst();
	const size_t c = run<false>(0, reqs, n, cpls, cap, consumed);
	end_burst(n != 0);
	return c;
}

size_t Worker::translate(const Request *reqs, size_t n, Completion *cpls, size_t cap,
			 size_t *consumed)
{
	return run<false>(0, reqs, n, cpls, cap, consumed);
}

size_t Worker::translate_port(uint16_t port, const Request *reqs, size_t n, Completion *cpls,
			      size_t cap, size_t *consumed)
{
	return run<true>(port, reqs, n, cpls, cap, consumed);
}

void Worker::offline()
{
	ctx_.coherence().offline(id_);
}

void Worker::online()
{
	ctx_.coherence().online(id_);
}

/*
 * The PASID/config cache in front of lib/ctl: a miss takes the context's lock, which is
 * fine between quiescent states (a control thread syncs only after it unlocks).
 */
const iotlb::CachedRoute *Worker::route(uint32_t ctl_dev, uint32_t pasid)
{
	if (const iotlb::CachedRoute *r = shard_.route_lookup(ctl_dev, pasid))
		return r;
	own_.route_misses++;
	Result<iotlb::Route> r = ctx_.resolve(ctl_dev, pasid == IODP_PASID_NONE
							      ? std::nullopt
							      : std::optional<uint32_t>(pasid));
	if (!r)
		return nullptr; // the device is gone: its requests fault
	return shard_.route_fill(ctl_dev, pasid, *r);
}

void Worker::fault(const Request &r, uint32_t ctl_dev, uint64_t iova, unsigned kind,
		   uint8_t stage, int8_t level)
{
	own_.faults++;
	own_.faults_by_kind[kind < kFaultKinds ? kind : kFaultKinds - 1]++;
	if (ctl_dev == 0 || kind == IODP_FAULT_BAD_REQUEST)
		return; // nobody to report it to: the completion says it all
	FaultNote note{iova, ctl_dev, r.pasid, r.access, static_cast<uint8_t>(kind), stage, level,
		       0};
	if (rte_ring_sp_enqueue_elem(faults_, &note, sizeof(note)) != 0)
		own_.faults_dropped++;
}

/*
 * One step: take requests while their pages fit kMaxPieces and their worst-case
 * completions fit @p cap, translate the pages of each (device, PASID) run with one
 * Shard::translate() call, then answer the requests in order.
 */
template <bool kFixedPort>
size_t Worker::run(uint16_t port, const Request *reqs, size_t n, Completion *cpls, size_t cap,
		   size_t *consumed)
{
	iotlb::Request pieces[kMaxPieces];
	// Left uninitialised: WalkResult has member initialisers, and zeroing 14 KiB per
	// call cost more than the hits it serves.
	union Results {
		WalkResult v[kMaxPieces];
		Results() {}
	} results;
	WalkResult *res = results.v;
	uint32_t first_piece[kMaxPieces + 1];
	size_t nc = 0;
	size_t done = 0;
	while (done < n) {
		// Gather.
		size_t np = 0, end = done, worst = 0;
		while (end < n) {
			const Request &r = reqs[end];
			const uint64_t pages = pages_of(r);
			const uint64_t need = pages ? pages : 1;
			if (np + pages > kMaxPieces || end - done >= kMaxPieces ||
			    nc + worst + need > cap)
				break;
			first_piece[end - done] = static_cast<uint32_t>(np);
			const uint64_t base = r.iova & ~(kPage - 1);
			for (uint64_t p = 0; p < pages; p++)
				pieces[np + p] = {p == 0 ? r.iova : base + p * kPage, r.access};
			np += pages;
			worst += need;
			end++;
		}
		first_piece[end - done] = static_cast<uint32_t>(np);
		if (end == done)
			break; // no room for the next request's completions
		own_.pages += np;

		// Translate runs of one (device, PASID).
		for (size_t i = done; i < end;) {
			const uint32_t dev = port_dev_[kFixedPort ? port : reqs[i].device];
			const uint32_t pasid = reqs[i].pasid;
			size_t j = i + 1;
			while (j < end && reqs[j].pasid == pasid &&
			       (kFixedPort || port_dev_[reqs[j].device] == dev))
				j++;
			const size_t p0 = first_piece[i - done], p1 = first_piece[j - done];
			const iotlb::CachedRoute *rt = dev != 0 ? route(dev, pasid) : nullptr;
			if (rt == nullptr) {
				for (size_t p = p0; p < p1; p++) {
					res[p] = WalkResult{};
					res[p].fault = pgtable::FaultKind::not_attached;
				}
			} else if (config_.serial_walks) {
				for (size_t p = p0; p < p1; p++)
					shard_.translate(*rt, &pieces[p], 1, &res[p]);
			} else if (p1 > p0) {
				shard_.translate(*rt, &pieces[p0], p1 - p0, &res[p0]);
			}
			i = j;
		}

		// Answer in order.
		for (size_t i = done; i < end; i++) {
			const Request &r = reqs[i];
			const uint32_t dev = port_dev_[kFixedPort ? port : r.device];
			const size_t p0 = first_piece[i - done], p1 = first_piece[i + 1 - done];
			Completion &c0 = cpls[nc];
			if (p0 == p1) {
				c0 = Completion{r.cookie, 0, 0, 0, IODP_FAULT_BAD_REQUEST, 0, 0,
						IODP_CPL_LAST, 0};
				fault(r, dev, r.iova, IODP_FAULT_BAD_REQUEST, 0, 0);
				nc++;
				continue;
			}
			size_t bad = p1;
			for (size_t p = p0; p < p1; p++)
				if (!res[p].ok()) {
					bad = p;
					break;
				}
			if (bad != p1) {
				const WalkResult &w = res[bad];
				const uint32_t off = bad == p0 ? 0
							       : static_cast<uint32_t>(
									 pieces[bad].iova - r.iova);
				c0 = Completion{r.cookie, 0, off, 0, static_cast<uint8_t>(w.fault),
						w.stage, w.level, IODP_CPL_LAST, 0};
				fault(r, dev, pieces[bad].iova, static_cast<unsigned>(w.fault),
				      w.stage, w.level);
				nc++;
				continue;
			}
			// Runs of host-contiguous pages share one completion.
			const uint64_t len = r.length ? r.length : 1;
			uint64_t off = 0;
			Completion *run = nullptr;
			for (size_t p = p0; p < p1; p++) {
				const uint64_t in_page = kPage - (pieces[p].iova & (kPage - 1));
				const uint32_t plen = static_cast<uint32_t>(
					std::min<uint64_t>(in_page, len - off));
				const uint64_t host = res[p].out;
				if (run != nullptr && run->host + run->length == host) {
					run->length += plen;
				} else {
					run = &cpls[nc++];
					*run = Completion{r.cookie, host, static_cast<uint32_t>(off),
							  plen, 0, 0, 0, 0, 0};
				}
				off += plen;
			}
			run->flags = IODP_CPL_LAST;
		}
		own_.requests += end - done;
		done = end;
	}
	own_.completions += nc;
	*consumed = done;
	return nc;
}

unsigned Worker::take_faults(FaultNote *notes, unsigned n)
{
	return rte_ring_sc_dequeue_burst_elem(faults_, notes, sizeof(*notes), n, nullptr);
}

unsigned Worker::report_faults()
{
	FaultNote notes[64];
	unsigned total = 0;
	for (;;) {
		const unsigned n = take_faults(notes, 64);
		for (unsigned i = 0; i < n; i++) {
			const FaultNote &f = notes[i];
			(void)ctx_.report_fault(f.ctl_device,
						f.pasid == IODP_PASID_NONE
							? std::nullopt
							: std::optional<uint32_t>(f.pasid),
						f.iova, f.access, static_cast<iodp_fault_kind>(f.kind),
						f.stage, f.level);
		}
		total += n;
		if (n < 64)
			return total;
	}
}

void Worker::publish()
{
	WorkerStats s = own_;
	const iotlb::ShardStats &ss = shard_.stats();
	s.hits = ss.hits;
	s.misses = ss.misses;
	s.walks = ss.walks;
	s.walk_reads = ss.walk_reads;
	s.walk_cache_hits = ss.walk_cache_hits;
	s.s2_hits = ss.s2_hits;
	uint64_t words[kStatWords];
	std::memcpy(words, &s, sizeof(s));
	for (unsigned i = 0; i < kStatWords; i++)
		pub_->word[i].store(words[i], std::memory_order_relaxed);
}

WorkerStats &WorkerStats::operator+=(const WorkerStats &o)
{
	uint64_t a[kStatWords], b[kStatWords];
	std::memcpy(a, this, sizeof(a));
	std::memcpy(b, &o, sizeof(b));
	for (unsigned i = 0; i < kStatWords; i++)
		a[i] += b[i];
	std::memcpy(this, a, sizeof(a));
	return *this;
}

WorkerStats Worker::stats() const
{
	uint64_t words[kStatWords];
	for (unsigned i = 0; i < kStatWords; i++)
		words[i] = pub_->word[i].load(std::memory_order_relaxed);
	WorkerStats s;
	std::memcpy(&s, words, sizeof(s));
	return s;
}

} // namespace iodp::engine
