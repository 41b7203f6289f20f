/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/engine.h>
#include <iodp/ring.h>

#include <fmt/core.h>

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
static_assert(IODP_PASID_NONE == iotlb::kNoPasid, "requests' 'no PASID' is lib/ctl's");

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

/** Requests per step (Step::kMax): one bulk lookup's worth. */
constexpr size_t kStepRequests = 64;

Worker::Worker(ctl::Ctx &ctx, const WorkerConfig &config)
	: ctx_(ctx), config_(config), pub_(std::make_unique<Published>()),
	  spill_(std::make_unique<iotlb::CachedRoute[]>(kStepRequests))
{
	for (std::atomic<uint64_t> &w : pub_->word)
		w.store(0, std::memory_order_relaxed);
}

Result<std::unique_ptr<Worker>> Worker::create(ctl::Ctx &ctx, const WorkerConfig &config)
{
	if (config.fault_ring < 8 || (config.fault_ring & (config.fault_ring - 1)))
		return Status::error(-EINVAL, "worker: fault_ring {} is not a power of two >= 8",
				     config.fault_ring);
	std::unique_ptr<Worker> w(new Worker(ctx, config));
	Result<iotlb::Shard> shard = iotlb::Shard::create(config.shard);
	if (!shard)
		return shard.status();
	w->shard_ = std::move(*shard);
	Result<rte_ring *> faults =
		mem::ring_alloc(fmt::format("iodp_flt_{}", static_cast<void *>(w.get())),
				sizeof(FaultNote), config.fault_ring, RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (!faults && faults.status().code() == -ENOMEM)
		return Status::error(-ENOMEM, "worker: no memory for its fault ring");
	if (!faults)
		return Status::error(faults.status().code(), "worker: fault ring: {}",
				     faults.status().message());
	w->faults_ = *faults;
	Result<unsigned> id = ctx.coherence().register_worker(&w->shard_);
	if (!id)
		return id.status();
	w->id_ = *id;
	w->bus_ = &ctx.coherence();
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
		return Status::error(-EINVAL, "worker: port {} is beyond the last ({})", port,
				     kMaxPorts - 1);
	port_dev_[port] = ctl_device;
	return {};
}

void Worker::begin_burst()
{
	own_.invalidations += bus_->drain(id_);
	burst_start_ = rte_rdtsc();
}

void Worker::end_burst(bool busy)
{
	bus_->quiescent(id_);
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
	bus_->offline(id_);
}

void Worker::online()
{
	bus_->online(id_);
}

/*
 * The PASID/config cache in front of lib/ctl. A miss reads the route table lib/ctl
 * publishes (no lock: a worker never waits for the control thread, not even for an SMMUv3
 * SSID, whose CD it reads itself); no binding is a blocked route, cached like any other
 * until a config invalidation.
 */
const iotlb::CachedRoute *Worker::route(uint32_t ctl_dev, uint32_t pasid,
					const iotlb::CachedRoute *const *held, size_t nheld)
{
	if (const iotlb::CachedRoute *r = shard_.route_lookup(ctl_dev, pasid))
		return r;
	return route_miss(ctl_dev, pasid, held, nheld);
}

const iotlb::CachedRoute *Worker::route_miss(uint32_t ctl_dev, uint32_t pasid,
					     const iotlb::CachedRoute *const *held, size_t nheld)
{
	own_.route_misses++;
	// Earlier requests of this step point at their cached routes: a fill must not
	// overwrite one of those (the soak found requests answered through another device's
	// route). When every slot it may use is held, the step keeps the route itself.
	auto fill = [&](const iotlb::Route &rt) -> const iotlb::CachedRoute * {
		if (const iotlb::CachedRoute *c = shard_.route_fill(ctl_dev, pasid, rt, held, nheld))
			return c;
		iotlb::CachedRoute &own = spill_[nspill_++]; // at most one per request of a step
		shard_.route_make(own, ctl_dev, pasid, rt);
		return &own;
	};
	iotlb::Route rt; // default: blocked, not attached
	(void)ctx_.published_route(ctl_dev, pasid, &rt);
	return fill(rt);
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
 * The translate path: four stages over a step of at most Step::kMax requests, each its
 * own function so the path reads top to bottom.
 *
 *   gather     check each request (length, access, port: every index a request gives is
 *              bounds-checked, and a port must have a device), find its route in the
 *              PASID/config cache, make its probe
 *   look_up    one bulk lookup of every request's first byte. A request that lies inside
 *              the page it hits, whatever that page's size (4 KiB to 1 GiB), with the
 *              access allowed, is answered by that one lookup: the hit path ends here
 *   walk       the rest: single-page misses walked together per route with the lookup
 *              already made (Shard::translate_known); requests that cross pages are split
 *              into 4 KiB pieces, the pieces after the first looked up, then walked
 *   complete   completions in request order: one for a hit, one per host-contiguous run
 *              for split requests, one for a fault
 *
 * What a stage leaves for the next is 16 bytes per request (Answer); the 56-byte walk
 * results exist only for walked requests, and are folded into Answers or read directly by
 * complete() for split ones.
 */
namespace {

enum How : uint8_t {
	kBad,   ///< malformed: BAD_REQUEST
	kFault, ///< answered with a fault before any lookup (no route, refused)
	kLook,  ///< looked up in look_up(), not answered yet
	kDone,  ///< answered with Answer::host (a hit, or a walk's result)
	kWalk,  ///< one page, missed: walk() answers it
	kSplit, ///< crosses pages of the size it hit (or missed): walk() splits it
	kSent,  ///< a hit whose completion look_up() wrote already
};

/** One request's state between stages: 16 bytes. */
struct Answer {
	uint64_t host;  ///< translated address of the first byte (kDone, no fault)
	uint8_t how;
	uint8_t fault;  ///< pgtable::FaultKind (0: none)
	uint8_t stage;
	int8_t level;
	uint16_t probe; ///< kLook, kWalk, kSplit: index of its probe
	uint16_t pieces; ///< kSplit: index of its first piece
};
static_assert(sizeof(Answer) == 16, "an Answer is what the hit path carries: keep it small");

bool cacheable(uint8_t access) { return !(access & pgtable::kAccessPriv); }

void set_fault(Answer &a, const WalkResult &w)
{
	a.how = kDone;
	a.host = 0;
	a.fault = static_cast<uint8_t>(w.fault);
	a.stage = w.stage;
	a.level = w.level;
}

} // namespace

struct Worker::Step {
	static constexpr size_t kMax = kStepRequests;

	const Request *reqs = nullptr;
	size_t n = 0; ///< requests taken
	/** Some request spans pages: completions are not one per request, complete() counts. */
	bool multi = false;
	Answer ans[kMax];
	uint32_t dev[kMax];
	const iotlb::CachedRoute *rt[kMax];
	uint8_t pages[kMax]; ///< 4 KiB pages each request touches (<= 17)

	iotlb::Probe probe[kMax];
	uint64_t host[kMax];
	uint8_t perm[kMax];
	size_t nprobe = 0;

	/** Split requests' 4 KiB pieces (results left uninitialised: see run() of old). */
	iotlb::Query piece[kMaxPieces];
	size_t npiece = 0;
	union Results {
		WalkResult v[kMaxPieces];
		Results() {}
	} res;
};

template <bool kFixedPort>
void Worker::gather(Step &s, uint16_t port, const Request *reqs, size_t n, size_t room)
{
	s.reqs = reqs;
	s.multi = false;
	s.nprobe = 0;
	s.npiece = 0;
	nspill_ = 0;
	size_t i = 0, worst = 0, pieces = 0;
	uint32_t last_dev = 0, last_pasid = 0;
	const iotlb::CachedRoute *rt = nullptr;
	bool have = false;
	bool open = false; ///< rt translates (not blocked): only privileged requests may be refused
	const uint32_t fixed_dev = kFixedPort && port < kMaxPorts ? port_dev_[port] : 0;
	for (; i < n && i < Step::kMax; i++) {
		const Request &r = reqs[i];
		// A port past the table or with no device is a bad request, like a bad length:
		// only a port a device was set on (set_port) reaches a route.
		const unsigned p = kFixedPort ? port : r.port;
		const uint32_t dev = kFixedPort ? fixed_dev : p < kMaxPorts ? port_dev_[p] : 0;
		const uint64_t pages = dev != 0 ? pages_of(r) : 0;
		const uint64_t need = pages ? pages : 1;
		// Room for its worst case (a completion per page), and for its pieces if split.
		if (worst + need > room || (pages > 1 && pieces + pages > kMaxPieces))
			break;
		worst += need;
		Answer &a = s.ans[i];
		s.pages[i] = static_cast<uint8_t>(pages);
		s.dev[i] = dev;
		s.rt[i] = nullptr;
		if (pages == 0) {
			a.how = kBad;
			continue;
		}
		pieces += pages > 1 ? pages : 0;
		s.multi |= pages > 1;
		if (!have || dev != last_dev || r.pasid != last_pasid) {
			rt = route(dev, r.pasid, s.rt, i); // nullptr: the device is gone
			open = rt != nullptr && rt->route.blocked == pgtable::FaultKind::none &&
			       rt->route.mem != nullptr;
			last_dev = dev;
			last_pasid = r.pasid;
			have = true;
		}
		if (rt == nullptr) {
			WalkResult w;
			w.fault = pgtable::FaultKind::not_attached;
			set_fault(a, w);
			continue;
		}
		s.rt[i] = rt;
		if (!open || (r.access & pgtable::kAccessPriv)) {
			WalkResult w;
			if (rt->route.refuses(r.access, &w)) {
				set_fault(a, w);
				continue;
			}
		}
		a.how = kLook;
		a.probe = static_cast<uint16_t>(s.nprobe);
		s.probe[s.nprobe++] = {r.iova, cacheable(r.access) ? rt->ctx : uint16_t{0}};
	}
	s.n = i;
}

void Worker::look_up(Step &s, Completion *cpls)
{
	shard_.lookup_bulk(s.probe, s.nprobe, s.host, s.perm);
	// One completion per request (nothing spans pages): a hit's goes out now, at its
	// request's index, and the hit path is done with it.
	const bool direct = !s.multi;
	for (size_t i = 0; i < s.n; i++) {
		Answer &a = s.ans[i];
		if (a.how != kLook)
			continue;
		const Request &r = s.reqs[i];
		const uint64_t host = s.host[a.probe];
		const uint8_t perm = s.perm[a.probe];
		const uint64_t size_mask = (uint64_t{1} << iotlb::kSizeShift[perm >> 4]) - 1;
		const uint64_t last = (r.iova & size_mask) + (r.length ? r.length - 1 : 0);
		if (host != 0 && (r.access & 7 & ~perm) == 0 && last <= size_mask) {
			own_.pages++;
			if (direct) {
				cpls[i] = Completion{r.cookie, host, 0, r.length ? r.length : 1, 0, 0,
						     0, IODP_CPL_LAST, 0};
				a.how = kSent;
				continue;
			}
			a.how = kDone; // inside the page it hit: answered by this one lookup
			a.host = host;
			a.fault = 0;
		} else {
			a.how = s.pages[i] == 1 ? kWalk : kSplit;
		}
	}
}

void Worker::walk(Step &s)
{
	// Single-page misses, in runs of one route, with the lookup look_up() made.
	iotlb::Query w[Step::kMax];
	uint64_t host[Step::kMax];
	uint8_t perm[Step::kMax];
	uint8_t who[Step::kMax];
	union Results {
		WalkResult v[Step::kMax];
		Results() {}
	} res;
	size_t nw = 0;
	const iotlb::CachedRoute *cur = nullptr;
	auto flush = [&] {
		if (config_.serial_walks) {
			for (size_t k = 0; k < nw; k++)
				shard_.translate_known(*cur, &w[k], 1, &host[k], &perm[k], &res.v[k]);
		} else if (nw != 0) {
			shard_.translate_known(*cur, w, nw, host, perm, res.v);
		}
		for (size_t k = 0; k < nw; k++) {
			Answer &a = s.ans[who[k]];
			if (res.v[k].ok()) {
				a.how = kDone;
				a.host = res.v[k].out;
				a.fault = 0;
			} else {
				set_fault(a, res.v[k]);
			}
		}
		own_.pages += nw;
		nw = 0;
	};
	for (size_t i = 0; i < s.n; i++) {
		const Answer &a = s.ans[i];
		if (a.how != kWalk)
			continue;
		if (s.rt[i] != cur) {
			flush();
			cur = s.rt[i];
		}
		w[nw] = {s.reqs[i].iova, s.reqs[i].access};
		host[nw] = s.host[a.probe];
		perm[nw] = s.perm[a.probe];
		who[nw++] = static_cast<uint8_t>(i);
	}
	flush();

	// Requests that cross pages: 4 KiB pieces, the first already looked up.
	for (size_t i = 0; i < s.n; i++) {
		Answer &a = s.ans[i];
		if (a.how != kSplit)
			continue;
		const Request &r = s.reqs[i];
		const size_t p0 = s.npiece, np = s.pages[i];
		const uint64_t base = r.iova & ~(kPage - 1);
		iotlb::Probe probes[IODP_REQUEST_MAX_LEN / kPage + 1];
		uint64_t phost[IODP_REQUEST_MAX_LEN / kPage + 2];
		uint8_t pperm[IODP_REQUEST_MAX_LEN / kPage + 2];
		for (size_t k = 0; k < np; k++) {
			s.piece[p0 + k] = {k == 0 ? r.iova : base + k * kPage, r.access};
			if (k > 0)
				probes[k - 1] = {base + k * kPage, s.probe[a.probe].ctx};
		}
		phost[0] = s.host[a.probe];
		pperm[0] = s.perm[a.probe];
		shard_.lookup_bulk(probes, np - 1, phost + 1, pperm + 1);
		if (config_.serial_walks) {
			for (size_t k = 0; k < np; k++)
				shard_.translate_known(*s.rt[i], &s.piece[p0 + k], 1, &phost[k],
						       &pperm[k], &s.res.v[p0 + k]);
		} else {
			shard_.translate_known(*s.rt[i], &s.piece[p0], np, phost, pperm,
					       &s.res.v[p0]);
		}
		a.pieces = static_cast<uint16_t>(p0);
		s.npiece += np;
		own_.pages += np;
	}
}

size_t Worker::complete(Step &s, Completion *cpls)
{
	size_t nc = 0;
	for (size_t i = 0; i < s.n; i++) {
		const Request &r = s.reqs[i];
		const Answer &a = s.ans[i];
		if (a.how == kSent) {
			nc++; // look_up() wrote it (then every request has exactly one)
			continue;
		}
		const uint32_t len = r.length ? r.length : 1;
		if (a.how == kDone && a.fault == 0) {
			cpls[nc++] = Completion{r.cookie, a.host, 0, len, 0, 0, 0, IODP_CPL_LAST, 0};
			continue;
		}
		if (a.how == kBad) {
			cpls[nc++] = Completion{r.cookie, 0, 0, 0, IODP_FAULT_BAD_REQUEST, 0, 0,
						IODP_CPL_LAST, 0};
			fault(r, s.dev[i], r.iova, IODP_FAULT_BAD_REQUEST, 0, 0);
			continue;
		}
		if (a.how == kDone) {
			cpls[nc++] = Completion{r.cookie, 0, 0, 0, a.fault, a.stage, a.level,
						IODP_CPL_LAST, 0};
			fault(r, s.dev[i], r.iova, a.fault, a.stage, a.level);
			continue;
		}
		nc += complete_split(r, s.dev[i], &s.piece[a.pieces], &s.res.v[a.pieces],
				     s.pages[i], &cpls[nc]);
	}
	return nc;
}

/** A split request: its first failed piece faults it, else one completion per run. */
size_t Worker::complete_split(const Request &r, uint32_t dev, const iotlb::Query *pieces,
			      const WalkResult *res, size_t np, Completion *cpls)
{
	for (size_t p = 0; p < np; p++) {
		if (res[p].ok())
			continue;
		const WalkResult &w = res[p];
		const uint32_t off = p == 0 ? 0 : static_cast<uint32_t>(pieces[p].iova - r.iova);
		cpls[0] = Completion{r.cookie, 0, off, 0, static_cast<uint8_t>(w.fault), w.stage,
				     w.level, IODP_CPL_LAST, 0};
		fault(r, dev, pieces[p].iova, static_cast<unsigned>(w.fault), w.stage, w.level);
		return 1;
	}
	// Runs of host-contiguous pages share one completion.
	const uint64_t len = r.length ? r.length : 1;
	uint64_t off = 0;
	size_t nc = 0;
	Completion *run = nullptr;
	for (size_t p = 0; p < np; p++) {
		const uint64_t in_page = kPage - (pieces[p].iova & (kPage - 1));
		const uint32_t plen = static_cast<uint32_t>(std::min<uint64_t>(in_page, len - off));
		const uint64_t host = res[p].out;
		if (run != nullptr && run->host + run->length == host) {
			run->length += plen;
		} else {
			run = &cpls[nc++];
			*run = Completion{r.cookie, host, static_cast<uint32_t>(off), plen, 0, 0, 0, 0, 0};
		}
		off += plen;
	}
	run->flags = IODP_CPL_LAST;
	return nc;
}

/*
 * Steps until the requests run out or the next one's worst case does not fit @p cap:
 * *consumed is how many were answered (in order).
 */
template <bool kFixedPort>
size_t Worker::run(uint16_t port, const Request *reqs, size_t n, Completion *cpls, size_t cap,
		   size_t *consumed)
{
	Step s;
	size_t nc = 0, done = 0;
	while (done < n) {
		gather<kFixedPort>(s, port, reqs + done, n - done, cap - nc);
		if (s.n == 0)
			break; // no room for the next request's completions
		look_up(s, cpls + nc);
		walk(s);
		nc += complete(s, cpls + nc);
		own_.requests += s.n;
		done += s.n;
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
						f.iova, f.access, static_cast<pgtable::FaultKind>(f.kind),
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
