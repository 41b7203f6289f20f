/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * iodp-soak: the chaos soak (doc/reliability.md).
 *
 * Several threads, each with a context of its own and a library-mode worker on that thread,
 * do random work for a while: valid and invalid control calls (maps, unmaps and copies,
 * paging and nested HWPTs allocated and destroyed, devices attached by RID and PASID,
 * replaced, detached, destroyed and added again, fault queues, dirty tracking), a guest
 * that edits its stage-1 tables and invalidates them with a random scope that covers the
 * change, and garbage (ids that name nothing, the wrong kind of object, flags, ranges and
 * invalidation entries that are refused). After every step the worker translates a burst of
 * random requests, and each answer is checked against what the control path's own
 * translate() says then (every call that removed a translation has returned after its
 * sync): the same host address for every page of every run, the same fault. Checked all
 * along: every request is answered exactly once (its completions cover it in order, the
 * last flagged, or one fault), a refused call changes nothing (Ctx::dump() before and
 * after), every failure has an errno and a message, the worker's counters equal what the
 * soak counted. At the end: descriptors as many as at the start, the resident set no
 * larger than after the warm-up (with slack for the allocator).
 *
 * Deterministic from the seed printed first: thread T's steps depend on (seed, T) alone, so
 * `--seed S --thread T --steps N` replays a failure that the message placed at step N.
 */
#include <iodp/ctl.h>
#include <iodp/engine.h>
#include <iodp/iodp.h> /* the iommufd invalidation entry and data types */
#include <iodp/pgtable_builder.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using namespace iodp;
using ctl::Ctx;

/* Options ------------------------------------------------------------------------------- */

struct Options {
	uint64_t seed = 0;
	double duration = 60;
	unsigned threads = 2;
	int only_thread = -1;       ///< --thread: run this one only (a replay)
	uint64_t max_steps = 0;     ///< --steps: stop each thread after this many (0: none)
	uint64_t round_steps = 1500; ///< steps before a thread tears its world down and starts over
	uint64_t trace_from = UINT64_MAX; ///< --trace N: print every call from step N on
	uint32_t routes = 0;        ///< --routes: the worker's route cache (0: 16 or 256 by chance)
};

std::atomic<bool> g_stop{false};

/** Print where the soak failed, with what replays it, and exit 1 (other threads too). */
[[noreturn, gnu::format(printf, 4, 5)]] void fail(const Options &o, unsigned thread,
						  uint64_t step, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	std::vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	std::fprintf(stderr,
		     "soak: FAILED: seed %" PRIu64 " thread %u step %" PRIu64 ": %s\n"
		     "soak: replay: iodp-soak --seed %" PRIu64 " --thread %u --steps %" PRIu64
		     "\n",
		     o.seed, thread, step, msg, o.seed, thread, step + 1);
	std::fflush(stderr);
	_exit(1);
}

/* Memory and descriptors ---------------------------------------------------------------- */

unsigned open_fds()
{
	unsigned n = 0;
	if (DIR *d = opendir("/proc/self/fd")) {
		while (dirent *e = readdir(d))
			n += e->d_name[0] != '.';
		closedir(d);
		n--; // the directory itself
	}
	return n;
}

uint64_t rss_bytes()
{
	uint64_t pages = 0, resident = 0;
	if (FILE *f = std::fopen("/proc/self/statm", "r")) {
		if (std::fscanf(f, "%" SCNu64 " %" SCNu64, &pages, &resident) != 2)
			resident = 0;
		std::fclose(f);
	}
	return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

/* One thread's world -------------------------------------------------------------------- */

constexpr uint64_t kPage = 4096;
constexpr uint64_t kDataBytes = 4u << 20;       // host memory the churn IOAS maps pieces of
constexpr uint64_t kIovaBase = 0x100000;         // where fixed maps go: 256 MiB from here
constexpr uint64_t kIovaSpan = 256u << 20;
constexpr uint64_t kGuestBase = 0x40000000;      // the guest's RAM in the nested stage 2
constexpr uint64_t kGuestBytes = 8u << 20;       // data in the first half, tables in the second
constexpr uint64_t kVa = 0x7f0000000000;         // the guest's stage-1 window
constexpr unsigned kVaPages = 64;
constexpr unsigned kPorts = 3;                   // devices: two VT-d, one SMMUv3
constexpr uint32_t kRW = ctl::kMapReadable | ctl::kMapWriteable;
constexpr uint32_t kRWU = pgtable::kMapRead | pgtable::kMapWrite | pgtable::kMapUser;
constexpr size_t kCplCap = 512;

/** Memory a world maps: zeroed, 2 MiB aligned. */
struct Buffer {
	std::byte *p;
	size_t size;
	explicit Buffer(size_t n)
		: p(static_cast<std::byte *>(std::aligned_alloc(2u << 20, n))), size(n)
	{
		std::memset(p, 0, n);
	}
	~Buffer() { std::free(p); }
	Buffer(const Buffer &) = delete;
	Buffer &operator=(const Buffer &) = delete;
};

struct Counts {
	std::atomic<uint64_t> progress{0}; ///< steps done, for the watchdog (main thread reads)
	std::atomic<bool> done{false};     ///< the thread returned
	uint64_t steps = 0, calls = 0, refused = 0, requests = 0, completions = 0, faults = 0,
		 compared = 0, guest_changes = 0, invalidations = 0, hot_swaps = 0;
	Counts() = default;
	Counts(const Counts &c) { *this += c; }
	Counts &operator=(const Counts &c)
	{
		steps = calls = refused = requests = completions = faults = compared =
			guest_changes = invalidations = hot_swaps = 0;
		return *this += c;
	}
	Counts &operator+=(const Counts &c)
	{
		steps += c.steps;
		calls += c.calls;
		refused += c.refused;
		requests += c.requests;
		completions += c.completions;
		faults += c.faults;
		compared += c.compared;
		guest_changes += c.guest_changes;
		invalidations += c.invalidations;
		hot_swaps += c.hot_swaps;
		return *this;
	}
};

class World {
public:
	World(const Options &o, unsigned thread, std::mt19937_64 &rng, Counts &counts)
		: o_(o), thread_(thread), rng_(rng), n_(counts)
	{
	}

	/** Objects every step can use; the guest's tables. */
	void build();
	/** One random step and a burst of checked translations after it. */
	void step(uint64_t step);
	/** The worker's counters equal what the soak counted (exact: same thread). */
	void check_counters();

private:
	struct Map {
		uint64_t length;
		uint64_t host_off;
		uint32_t flags;
	};

	const Options &o_;
	unsigned thread_;
	std::mt19937_64 &rng_;
	Counts &n_;
	Counts start_; // counts when this world began (its worker counts from there)
	uint64_t step_ = 0;

	// Destroyed in reverse: the worker goes before the context.
	Buffer data_{kDataBytes};
	Buffer guest_{kGuestBytes};
	Ctx ctx_;
	pgtable::TablePool pool_;
	pgtable::TableBuilder s1_[2];
	std::unique_ptr<engine::Worker> worker_;

	uint32_t ioas_ = 0, gioas_ = 0, parent_ = 0;
	uint32_t dev_[kPorts] = {};
	uint32_t nested_[2] = {};         // 0: destroyed (made again on demand)
	std::vector<uint32_t> paging_;    // explicit paging HWPTs on the churn IOAS
	std::vector<uint32_t> faultqs_;
	std::map<uint64_t, Map> maps_;    // the churn IOAS, by iova
	std::vector<bool> va_mapped_[2];
	uint32_t bound_[kPorts][4] = {}; // what each port's RID (0) and PASIDs 1..3 are attached to
	unsigned serial_ = 0;

	uint64_t rnd(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
	bool chance(unsigned percent) { return rnd(100) < percent; }

	[[noreturn, gnu::format(printf, 2, 3)]] void bad(const char *fmt, ...);
	template <class T> T must(Result<T> r, const char *what);
	void must(const Status &s, const char *what);
	/** A call that should fail: it does, with an errno and a message, changing nothing. */
	template <class F> void refused(const char *what, F &&call);
	/** A call that may fail: when it does, it has a message and changed nothing. */
	template <class F> bool tried(const char *what, F &&call);

	uint32_t make_device(unsigned port);
	void make_nested(unsigned k);
	void set_ports();

	void op_map();
	void op_unmap();
	void op_copy();
	void op_attach();
	void op_detach();
	void op_hwpt();
	void op_destroy();
	void op_hot_swap();
	void op_guest();
	void op_fault_queue();
	void op_dirty();
	void op_garbage();

	void translate_burst();
	void check_request(const dev::Request &r, const dev::Completion *c, size_t nc);
};

[[noreturn]] void World::bad(const char *fmt, ...)
{
	char msg[1800];
	va_list ap;
	va_start(ap, fmt);
	std::vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (step_ >= o_.trace_from)
		std::fprintf(stderr, "%s", ctx_.dump().c_str());
	fail(o_, thread_, step_, "%s", msg);
}

template <class T> T World::must(Result<T> r, const char *what)
{
	n_.calls++;
	if (step_ >= o_.trace_from)
		std::fprintf(stderr, "step %" PRIu64 ": %s: %s\n", step_, what,
			     r ? "ok" : r.status().message().c_str());
	if (!r)
		bad("%s failed: %s", what, r.status().message().c_str());
	return std::move(*r);
}

void World::must(const Status &s, const char *what)
{
	n_.calls++;
	if (step_ >= o_.trace_from)
		std::fprintf(stderr, "step %" PRIu64 ": %s: %s\n", step_, what,
			     s ? "ok" : s.message().c_str());
	if (!s)
		bad("%s failed: %s", what, s.message().c_str());
}

template <class T> static Status status_of(const Result<T> &r)
{
	return r.status();
}
static Status status_of(const Status &s)
{
	return s;
}

template <class F> bool World::tried(const char *what, F &&call)
{
	n_.calls++;
	const std::string before = ctx_.dump();
	const auto r = call();
	const Status s = status_of(r);
	if (step_ >= o_.trace_from)
		std::fprintf(stderr, "step %" PRIu64 ": %s: %s\n", step_, what,
			     s ? "ok" : s.message().c_str());
	if (s)
		return true;
	n_.refused++;
	if (s.code() >= 0 || s.message().empty())
		bad("%s failed with code %d and message \"%s\"", what, s.code(),
		    s.message().c_str());
	if (ctx_.dump() != before)
		bad("%s failed (%s) and changed the object graph", what, s.message().c_str());
	return false;
}

template <class F> void World::refused(const char *what, F &&call)
{
	if (tried(what, call))
		bad("%s succeeded; it must be refused", what);
}

uint32_t World::make_device(unsigned port)
{
	ctl::DeviceSpec spec;
	spec.name = "soak" + std::to_string(thread_) + "." + std::to_string(serial_++);
	spec.model = port == 2 ? ctl::IommuModel::smmuv3 : ctl::IommuModel::vtd;
	spec.pasid_bits = 4;
	return must(ctx_.device_create(spec), "device alloc");
}

void World::make_nested(unsigned k)
{
	nested_[k] = must(ctx_.hwpt_alloc_nested(dev_[0], parent_, 0, 0,
						 ctl::VtdS1Data{ctl::kVtdS1Sre, s1_[k].root(), 48}),
			  "nested hwpt alloc");
}

void World::set_ports()
{
	for (unsigned p = 0; p < kPorts; p++)
		must(worker_->set_port(static_cast<uint16_t>(p), dev_[p]), "set_port");
}

void World::build()
{
	start_ = n_;
	ioas_ = must(ctx_.ioas_alloc(), "ioas alloc");
	gioas_ = must(ctx_.ioas_alloc(), "ioas alloc");
	must(ctx_.ioas_map(gioas_, ctl::kMapFixedIova | kRW, kGuestBase, guest_.p,
			   kGuestBytes)
		     .status(),
	     "guest map");
	pool_ = pgtable::TablePool(kGuestBase + kGuestBytes / 2, guest_.p + kGuestBytes / 2,
				   kGuestBytes / 2, kPage);
	for (auto &s : s1_)
		s = must(pgtable::TableBuilder::create(
				 pgtable::table_config(pgtable::Format::x86_64_4l), &pool_),
			 "stage-1 table");
	for (unsigned p = 0; p < kPorts; p++)
		dev_[p] = make_device(p);
	parent_ = must(ctx_.hwpt_alloc_paging(dev_[0], gioas_, ctl::kHwptNestParent, 0),
		       "parent alloc");
	for (unsigned k = 0; k < 2; k++) {
		make_nested(k);
		va_mapped_[k].assign(kVaPages, false);
	}
	engine::WorkerConfig wc;
	wc.report_faults_inline = true;
	// Half the worlds with the smallest PASID/config cache: routes are evicted all along.
	wc.shard.routes = o_.routes != 0 ? o_.routes : chance(50) ? 16 : 256;
	worker_ = must(engine::Worker::create(ctx_, wc), "worker");
	set_ports();
	// The first burst makes this thread the worker's: its own syncs no longer wait for it.
	translate_burst();
}

/* Control steps ------------------------------------------------------------------------- */

void World::op_map()
{
	const uint64_t len = (1 + rnd(16)) * kPage;
	const uint64_t off = rnd((kDataBytes - len) / kPage + 1) * kPage;
	const uint32_t flags = chance(25) ? ctl::kMapReadable : kRW;
	if (chance(30)) {
		uint64_t iova = 0;
		if (tried("ioas map (any iova)", [&] {
			    Result<uint64_t> r = ctx_.ioas_map(ioas_, flags, 0, data_.p + off, len);
			    if (r)
				    iova = *r;
			    return r;
		    }))
			maps_[iova] = {len, off, flags};
		return;
	}
	const uint64_t iova = kIovaBase + rnd(kIovaSpan / kPage) * kPage;
	auto next = maps_.lower_bound(iova);
	bool overlaps = next != maps_.end() && next->first < iova + len;
	if (next != maps_.begin()) {
		auto prev = std::prev(next);
		overlaps |= prev->first + prev->second.length > iova;
	}
	auto call = [&] {
		return ctx_.ioas_map(ioas_, ctl::kMapFixedIova | flags, iova, data_.p + off,
				     len);
	};
	if (overlaps) {
		refused("ioas map over a mapping", call);
		return;
	}
	// It may still be refused (a device's MSI window, an aperture): then it changed nothing.
	if (tried("ioas map", call))
		maps_[iova] = {len, off, flags};
}

void World::op_unmap()
{
	if (maps_.empty())
		return;
	auto it = std::next(maps_.begin(), static_cast<long>(rnd(maps_.size())));
	const uint64_t iova = it->first, len = it->second.length;
	if (len > kPage && chance(20)) {
		refused("ioas unmap of part of a mapping",
			[&] { return ctx_.ioas_unmap(ioas_, iova + kPage, kPage); });
		return;
	}
	if (chance(3)) {
		must(ctx_.ioas_unmap(ioas_, 0, UINT64_MAX).status(), "ioas unmap all");
		maps_.clear();
		return;
	}
	// Whole mappings in a range: this one and, now and then, the next if it touches.
	uint64_t end = iova + len;
	auto next = std::next(it);
	const bool two = next != maps_.end() && next->first == end && chance(50);
	if (two)
		end += next->second.length;
	const uint64_t got = must(ctx_.ioas_unmap(ioas_, iova, end - iova), "ioas unmap");
	if (got != end - iova)
		bad("ioas unmap 0x%" PRIx64 "+0x%" PRIx64 " unmapped 0x%" PRIx64, iova,
		    end - iova, got);
	if (two)
		maps_.erase(next);
	maps_.erase(it);
}

void World::op_copy()
{
	if (maps_.empty())
		return;
	auto it = std::next(maps_.begin(), static_cast<long>(rnd(maps_.size())));
	const Map m = it->second;
	const uint64_t dst = kIovaBase + rnd(kIovaSpan / kPage) * kPage;
	uint64_t got = 0;
	if (tried("ioas copy", [&] {
		    Result<uint64_t> r = ctx_.ioas_copy(ioas_, ioas_, ctl::kMapFixedIova | m.flags,
						       dst, it->first, m.length);
		    if (r)
			    got = *r;
		    return r;
	    }))
		maps_[got] = m;
}

void World::op_attach()
{
	const unsigned p = static_cast<unsigned>(rnd(kPorts));
	std::optional<uint32_t> pasid;
	if (p != 2 && chance(50))
		pasid = static_cast<uint32_t>(1 + rnd(3));
	uint32_t pt = ioas_;
	const unsigned pick = static_cast<unsigned>(rnd(10));
	if (pick < 4 && nested_[pick % 2] != 0)
		pt = nested_[pick % 2];
	else if (pick < 7 && !paging_.empty())
		pt = paging_[rnd(paging_.size())];
	// An SMMUv3 device on a VT-d table, a HWPT made for the other model: refused.
	char what[96];
	std::snprintf(what, sizeof(what), "device attach port %u (%u) pasid %d to %u", p, dev_[p],
		      pasid ? static_cast<int>(*pasid) : -1, pt);
	if (tried(what, [&] { return ctx_.device_attach(dev_[p], pasid, pt); }))
		bound_[p][pasid ? *pasid : 0] = pt;
}

void World::op_detach()
{
	const unsigned p = static_cast<unsigned>(rnd(kPorts));
	std::optional<uint32_t> pasid;
	if (p != 2 && chance(50))
		pasid = static_cast<uint32_t>(1 + rnd(3));
	char what[96];
	std::snprintf(what, sizeof(what), "device detach port %u (%u) pasid %d", p, dev_[p],
		      pasid ? static_cast<int>(*pasid) : -1);
	if (tried(what, [&] { return ctx_.device_detach(dev_[p], pasid); }))
		bound_[p][pasid ? *pasid : 0] = 0;
}

void World::op_hwpt()
{
	if (paging_.size() >= 3)
		return;
	const unsigned p = static_cast<unsigned>(rnd(kPorts));
	uint32_t flags = 0;
	if (p != 2 && chance(30))
		flags |= ctl::kHwptDirtyTracking;
	uint32_t id = 0;
	if (tried("paging hwpt alloc", [&] {
		    Result<uint32_t> r = ctx_.hwpt_alloc_paging(dev_[p], ioas_, flags, 0);
		    if (r)
			    id = *r;
		    return r;
	    }))
		paging_.push_back(id);
	for (unsigned k = 0; k < 2; k++)
		if (nested_[k] == 0)
			make_nested(k);
}

void World::op_destroy()
{
	// A HWPT: refused while attached.
	std::vector<uint32_t *> targets;
	for (uint32_t &id : paging_)
		targets.push_back(&id);
	for (uint32_t &id : nested_)
		if (id != 0)
			targets.push_back(&id);
	if (targets.empty())
		return;
	uint32_t *t = targets[rnd(targets.size())];
	if (tried("hwpt destroy", [&] { return ctx_.destroy(*t); })) {
		paging_.erase(std::remove(paging_.begin(), paging_.end(), *t), paging_.end());
		for (uint32_t &id : nested_)
			if (&id == t)
				id = 0;
	}
}

void World::op_hot_swap()
{
	// A device goes (detached from everything first) and another takes its port.
	const unsigned p = static_cast<unsigned>(rnd(kPorts));
	refused("destroy of an ioas in use", [&] { return ctx_.destroy(gioas_); });
	tried("device detach", [&] { return ctx_.device_detach(dev_[p], std::nullopt); });
	for (uint32_t pasid = 1; pasid <= 3; pasid++)
		tried("device detach", [&] { return ctx_.device_detach(dev_[p], pasid); });
	// (Device 0 named only the model of the parent and nested HWPTs: they stay.)
	char what[64];
	std::snprintf(what, sizeof(what), "device destroy port %u (%u)", p, dev_[p]);
	must(ctx_.destroy(dev_[p]), what);
	dev_[p] = make_device(p);
	must(worker_->set_port(static_cast<uint16_t>(p), dev_[p]), "set_port");
	for (uint32_t &b : bound_[p])
		b = 0;
	n_.hot_swaps++;
	// Usually the new device is attached at once, as a hot-plugged one would be.
	if (chance(70) && tried("device attach (new)", [&] {
		    return ctx_.device_attach(dev_[p], std::nullopt, ioas_);
	    }))
		bound_[p][0] = ioas_;
}

void World::op_guest()
{
	// The guest changes one stage-1 page and invalidates a range that covers it.
	const unsigned k = static_cast<unsigned>(rnd(2));
	const unsigned page = static_cast<unsigned>(rnd(kVaPages));
	const uint64_t va = kVa + page * kPage;
	if (va_mapped_[k][page]) {
		uint64_t unmapped = 0;
		if (Status s = s1_[k].unmap(va, kPage, &unmapped); !s)
			bad("guest unmap: %s", s.message().c_str());
		va_mapped_[k][page] = false;
	} else {
		const uint64_t gpa = kGuestBase + rnd(kGuestBytes / 2 / kPage) * kPage;
		const uint32_t perm = chance(20) ? pgtable::kMapRead | pgtable::kMapUser : kRWU;
		if (Status s = s1_[k].map(va, gpa, kPage, perm); !s)
			bad("guest map: %s", s.message().c_str());
		va_mapped_[k][page] = true;
	}
	n_.guest_changes++;
	if (nested_[k] == 0)
		return; // nothing can have cached it
	// While nothing is attached a guest sends no invalidation (there is no IOMMU to tell):
	// attaching again must not find what was cached before (doc/control.md).
	bool attached = false;
	for (const auto &port : bound_)
		for (uint32_t pt : port)
			attached |= pt == nested_[k];
	if (!attached && chance(70))
		return;
	iodp_hwpt_vtd_s1_invalidate inv{};
	switch (rnd(3)) {
	case 0: // the page
		inv.addr = va;
		inv.npages = 1;
		break;
	case 1: { // an aligned block around it
		const unsigned order = static_cast<unsigned>(1 + rnd(6));
		inv.addr = va & ~((kPage << order) - 1);
		inv.npages = 1ull << order;
		break;
	}
	default: // everything
		inv.addr = 0;
		inv.npages = UINT64_MAX;
		break;
	}
	uint32_t handled = 0;
	must(ctx_.hwpt_invalidate(nested_[k], IODP_HWPT_INVALIDATE_DATA_VTD_S1, &inv,
				  sizeof(inv), 1, &handled),
	     "hwpt invalidate");
	if (handled != 1)
		bad("hwpt invalidate handled %u of 1", handled);
	n_.invalidations++;
}

void World::op_fault_queue()
{
	if (!faultqs_.empty() && chance(50)) {
		const size_t i = rnd(faultqs_.size());
		must(ctx_.destroy(faultqs_[i]), "fault queue destroy");
		faultqs_.erase(faultqs_.begin() + static_cast<long>(i));
		return;
	}
	if (faultqs_.size() < 4)
		faultqs_.push_back(must(ctx_.fault_queue_alloc(nullptr), "fault queue alloc"));
}

void World::op_dirty()
{
	if (paging_.empty())
		return;
	const uint32_t h = paging_[rnd(paging_.size())];
	// Refused on a HWPT allocated without DIRTY_TRACKING.
	tried("set dirty tracking", [&] { return ctx_.hwpt_set_dirty_tracking(h, chance(50)); });
}

void World::op_garbage()
{
	const uint32_t nothing = 100000 + static_cast<uint32_t>(rnd(1000));
	switch (rnd(8)) {
	case 0:
		refused("destroy of nothing", [&] { return ctx_.destroy(nothing); });
		break;
	case 1:
		refused("attach to nothing",
			[&] { return ctx_.device_attach(dev_[0], std::nullopt, nothing); });
		break;
	case 2:
		refused("attach to a device",
			[&] { return ctx_.device_attach(dev_[0], std::nullopt, dev_[1]); });
		break;
	case 3:
		refused("map of nothing", [&] {
			return ctx_.ioas_map(ioas_, 0, 0, data_.p + 1, kPage);
		});
		break;
	case 4:
		refused("unmap of a hwpt", [&] { return ctx_.ioas_unmap(parent_, 0, kPage); });
		break;
	case 5:
		refused("pasid out of range", [&] {
			return ctx_.device_attach(dev_[0], 1u << 10, ioas_);
		});
		break;
	case 6: {
		if (nested_[0] == 0)
			break;
		iodp_hwpt_vtd_s1_invalidate inv{0, 1, 0x80, 0}; // an unknown flag
		uint32_t handled = 0;
		refused("invalidation with unknown flags", [&] {
			return ctx_.hwpt_invalidate(nested_[0], IODP_HWPT_INVALIDATE_DATA_VTD_S1,
						    &inv, sizeof(inv), 1, &handled);
		});
		break;
	}
	default: {
		// A source page no mapping covers.
		uint64_t src = kIovaBase + kIovaSpan;
		auto covered = [&](uint64_t a) {
			auto it = maps_.upper_bound(a);
			return it != maps_.begin() && std::prev(it)->first +
							      std::prev(it)->second.length > a;
		};
		while (covered(src))
			src += kPage;
		refused("copy from nowhere", [&] {
			return ctx_.ioas_copy(ioas_, ioas_, kRW, 0, src, kPage);
		});
		break;
	}
	}
}

void World::step(uint64_t step)
{
	step_ = step;
	n_.steps++;
	n_.progress.store(step + 1, std::memory_order_relaxed);
	switch (rnd(20)) {
	case 0: case 1: case 2: op_map(); break;
	case 3: case 4: op_unmap(); break;
	case 5: op_copy(); break;
	case 6: case 7: op_attach(); break;
	case 8: op_detach(); break;
	case 9: op_hwpt(); break;
	case 10: op_destroy(); break;
	case 11: op_hot_swap(); break;
	case 12: case 13: case 14: case 15: op_guest(); break;
	case 16: op_fault_queue(); break;
	case 17: op_dirty(); break;
	default: op_garbage(); break;
	}
	translate_burst();
}

/* Translations -------------------------------------------------------------------------- */

void World::translate_burst()
{
	const size_t n = 1 + rnd(48);
	std::vector<dev::Request> reqs(n);
	for (size_t i = 0; i < n; i++) {
		dev::Request &r = reqs[i];
		r.cookie = i;
		// Mostly a RID or PASID that is attached, at an address its table may map.
		unsigned port = static_cast<unsigned>(rnd(kPorts)), slot = 0;
		if (chance(80)) {
			for (unsigned k = 0; k < kPorts * 4; k++) {
				const unsigned at = static_cast<unsigned>(rnd(kPorts * 4));
				if (bound_[at / 4][at % 4] != 0) {
					port = at / 4;
					slot = at % 4;
					break;
				}
			}
		} else {
			slot = chance(60) ? 0 : static_cast<unsigned>(1 + rnd(3));
		}
		const uint32_t pt = bound_[port][slot];
		const bool nested = pt != 0 && (pt == nested_[0] || pt == nested_[1]);
		const unsigned where = static_cast<unsigned>(rnd(10));
		if (where < 8 && !nested && !maps_.empty()) {
			auto it = std::next(maps_.begin(), static_cast<long>(rnd(maps_.size())));
			r.iova = it->first + rnd(it->second.length + kPage);
		} else if (where < 8) {
			r.iova = kVa + rnd((kVaPages + 1) * kPage);
		} else {
			r.iova = rnd(1ull << 48);
		}
		r.length = static_cast<uint32_t>(chance(70) ? 1 + rnd(64) : 1 + rnd(3 * kPage));
		r.pasid = slot == 0 ? IODP_PASID_NONE : slot;
		// Now and then a port no device has, or one past the worker's table.
		const unsigned odd = static_cast<unsigned>(rnd(100));
		r.port = static_cast<uint16_t>(odd < 97 ? port : odd == 97 ? 7 : 300);
		r.access = chance(50) ? IODP_ACCESS_READ
				      : chance(50) ? IODP_ACCESS_WRITE
						   : IODP_ACCESS_READ | IODP_ACCESS_WRITE;
	}
	std::vector<dev::Completion> cpls(kCplCap);
	size_t done = 0;
	std::vector<std::vector<dev::Completion>> per(n);
	while (done < n) {
		size_t consumed = 0;
		const size_t nc = worker_->translate_burst(reqs.data() + done, n - done, cpls.data(),
							   cpls.size(), &consumed);
		if (consumed == 0)
			bad("translate_burst made no progress (%zu of %zu answered)", done, n);
		for (size_t i = 0; i < nc; i++) {
			const uint64_t c = cpls[i].cookie;
			if (c < done || c >= done + consumed)
				bad("a completion for request %" PRIu64 " in a burst that answered "
				    "%zu..%zu", c, done, done + consumed - 1);
			per[c].push_back(cpls[i]);
		}
		n_.completions += nc;
		done += consumed;
	}
	n_.requests += n;
	for (size_t i = 0; i < n; i++)
		check_request(reqs[i], per[i].data(), per[i].size());
}

void World::check_request(const dev::Request &r, const dev::Completion *c, size_t nc)
{
	const uint64_t len = r.length == 0 ? 1 : r.length;
	const std::string what = "request dev port " + std::to_string(r.port) + " pasid " +
				 (r.pasid == IODP_PASID_NONE ? std::string("none")
							     : std::to_string(r.pasid)) +
				 " iova " + std::to_string(r.iova) + "+" + std::to_string(len);
	if (nc == 0)
		bad("%s: no completion (lost)", what.c_str());
	if (!(c[nc - 1].flags & IODP_CPL_LAST))
		bad("%s: the last completion is not flagged last", what.c_str());
	for (size_t i = 0; i + 1 < nc; i++)
		if (c[i].flags & IODP_CPL_LAST)
			bad("%s: completion %zu of %zu is flagged last (duplicated)", what.c_str(), i,
			    nc);
	if (c[0].fault != 0) {
		n_.faults++;
		if (nc != 1)
			bad("%s: a fault and %zu more completions", what.c_str(), nc - 1);
		if (r.port >= engine::kMaxPorts) {
			if (c[0].fault != IODP_FAULT_BAD_REQUEST)
				bad("%s: port past the table answered fault %u, not BAD_REQUEST",
				    what.c_str(), c[0].fault);
			return;
		}
		if (r.port >= kPorts)
			return; // no device: some fault, nothing to compare with
		Result<ctl::Translated> t = ctx_.translate(
			dev_[r.port],
			r.pasid == IODP_PASID_NONE ? std::nullopt : std::optional<uint32_t>(r.pasid),
			r.iova + c[0].offset, r.access);
		n_.compared++;
		if (!t)
			bad("%s: translate: %s", what.c_str(), t.status().message().c_str());
		const auto kind = static_cast<uint8_t>(t->fault);
		if (kind != c[0].fault && step_ >= o_.trace_from) {
			// What a worker reads on a route miss (0 found, 1 none, 2 resolve).
			iotlb::Route rt;
			const auto k = ctx_.published_route(dev_[r.port], r.pasid, &rt);
			std::fprintf(stderr, "published route of device %u pasid %#x: %d\n",
				     dev_[r.port], r.pasid, static_cast<int>(k));
		}
		if (kind != c[0].fault)
			bad("%s: the worker faulted (%u) at offset %u; the control path says "
			    "fault %u, host 0x%" PRIx64, what.c_str(), c[0].fault, c[0].offset,
			    kind, t->host);
		return;
	}
	if (r.port >= kPorts)
		bad("%s: translated for a port without a device", what.c_str());
	uint64_t pos = 0;
	for (size_t i = 0; i < nc; i++) {
		if (c[i].fault != 0)
			bad("%s: fault %u after translated runs", what.c_str(), c[i].fault);
		if (c[i].offset != pos || c[i].length == 0)
			bad("%s: completion %zu covers %u+%u, expected to start at %" PRIu64,
			    what.c_str(), i, c[i].offset, c[i].length, pos);
		// Every page of the run: the control path's host address, contiguous.
		for (uint64_t off = c[i].offset; off < uint64_t{c[i].offset} + c[i].length;
		     off = ((r.iova + off) | (kPage - 1)) + 1 - r.iova) {
			Result<ctl::Translated> t = ctx_.translate(
				dev_[r.port],
				r.pasid == IODP_PASID_NONE ? std::nullopt
							   : std::optional<uint32_t>(r.pasid),
				r.iova + off, r.access);
			n_.compared++;
			if (!t)
				bad("%s: translate: %s", what.c_str(), t.status().message().c_str());
			const uint64_t want = c[i].host + (off - c[i].offset);
			if (t->fault != pgtable::FaultKind::none || t->host != want)
				bad("%s: the worker answered host 0x%" PRIx64 " at offset %" PRIu64
				    "; the control path says fault %u host 0x%" PRIx64 " (stale?)",
				    what.c_str(), want, off, static_cast<unsigned>(t->fault),
				    t->host);
		}
		pos += c[i].length;
	}
	if (pos != len)
		bad("%s: completions cover %" PRIu64 " of %" PRIu64 " bytes", what.c_str(), pos,
		    len);
}

void World::check_counters()
{
	const engine::WorkerStats s = worker_->stats();
	const uint64_t requests = n_.requests - start_.requests;
	const uint64_t completions = n_.completions - start_.completions;
	if (s.requests != requests || s.completions != completions)
		bad("worker counted %" PRIu64 " requests and %" PRIu64 " completions; the soak "
		    "sent %" PRIu64 " and took %" PRIu64, s.requests, s.completions, requests,
		    completions);
	uint64_t by_kind = 0;
	for (uint64_t k : s.faults_by_kind)
		by_kind += k;
	if (by_kind != s.faults)
		bad("worker faults %" PRIu64 " but %" PRIu64 " by kind", s.faults, by_kind);
	if (s.lost != 0)
		bad("worker lost %" PRIu64 " completions", s.lost);
}

/* Threads and the run ------------------------------------------------------------------- */

void run_thread(const Options &o, unsigned t, Counts &counts)
{
	std::mt19937_64 rng(o.seed * 0x9e3779b97f4a7c15ull + t + 1);
	uint64_t step = 0;
	while (!g_stop.load(std::memory_order_relaxed)) {
		World w(o, t, rng, counts);
		w.build();
		for (uint64_t i = 0; i < o.round_steps; i++, step++) {
			if (g_stop.load(std::memory_order_relaxed) ||
			    (o.max_steps != 0 && step >= o.max_steps))
				break;
			w.step(step);
			if (i % 64 == 63)
				w.check_counters();
		}
		w.check_counters();
		if (o.max_steps != 0 && step >= o.max_steps)
			break;
	}
	counts.done.store(true, std::memory_order_release);
}

int usage(const char *argv0)
{
	std::fprintf(stderr,
		     "usage: %s [--duration SECONDS] [--seed N] [--threads N] [--thread T]\n"
		     "          [--steps N] [--round N] [--trace FROM_STEP] [--routes N]\n",
		     argv0);
	return 2;
}

bool parse_u64(const char *s, uint64_t *out)
{
	char *end = nullptr;
	errno = 0;
	const unsigned long long v = std::strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
		return false;
	*out = v;
	return true;
}

} // namespace

int main(int argc, char **argv)
{
	Options o;
	o.seed = static_cast<uint64_t>(
		std::chrono::system_clock::now().time_since_epoch().count());
	if (const char *s = std::getenv("IODP_SOAK_SEED"); s != nullptr && !parse_u64(s, &o.seed))
		return usage(argv[0]);
	for (int i = 1; i < argc; i++) {
		const std::string a = argv[i];
		uint64_t v = 0;
		if (i + 1 >= argc || !parse_u64(argv[i + 1], &v))
			return usage(argv[0]);
		i++;
		if (a == "--duration")
			o.duration = static_cast<double>(v);
		else if (a == "--seed")
			o.seed = v;
		else if (a == "--threads" && v >= 1 && v <= 64)
			o.threads = static_cast<unsigned>(v);
		else if (a == "--thread" && v < 64)
			o.only_thread = static_cast<int>(v);
		else if (a == "--steps")
			o.max_steps = v;
		else if (a == "--round" && v >= 1)
			o.round_steps = v;
		else if (a == "--trace")
			o.trace_from = v;
		else if (a == "--routes" && v >= 16 && v <= 65536)
			o.routes = static_cast<uint32_t>(v);
		else
			return usage(argv[0]);
	}
	std::printf("soak: seed %" PRIu64 ", %u thread(s), %.0f s\n", o.seed,
		    o.only_thread >= 0 ? 1u : o.threads, o.duration);
	std::fflush(stdout);

	const unsigned fds_before = open_fds();
	std::vector<unsigned> ids;
	if (o.only_thread >= 0)
		ids.push_back(static_cast<unsigned>(o.only_thread));
	else
		for (unsigned t = 0; t < o.threads; t++)
			ids.push_back(t);
	std::vector<Counts> counts(ids.size());
	std::vector<std::thread> threads;
	const auto t0 = std::chrono::steady_clock::now();
	for (size_t i = 0; i < ids.size(); i++)
		threads.emplace_back(run_thread, std::cref(o), ids[i], std::ref(counts[i]));

	// The resident set: its peak in the second quarter (after the warm-up) against its
	// peak in the last quarter. A leak grows it; the worlds' own churn does not.
	uint64_t warm_peak = 0, late_peak = 0;
	const auto deadline = t0 + std::chrono::duration<double>(o.duration);
	// A thread that makes no step for this long is stuck (a deadlock is a failure too).
	constexpr auto kStuck = std::chrono::seconds(60);
	std::vector<uint64_t> seen(ids.size(), 0);
	std::vector<std::chrono::steady_clock::time_point> moved(ids.size(), t0);
	auto watch = [&] {
		const auto now = std::chrono::steady_clock::now();
		for (size_t i = 0; i < ids.size(); i++) {
			const uint64_t p = counts[i].progress.load(std::memory_order_relaxed);
			if (p != seen[i]) {
				seen[i] = p;
				moved[i] = now;
			} else if (now - moved[i] > kStuck &&
				   !(o.max_steps != 0 && p >= o.max_steps)) {
				fail(o, ids[i], p, "no step done in %lld s (stuck)",
				     static_cast<long long>(kStuck.count()));
			}
		}
	};
	while (std::chrono::steady_clock::now() < deadline) {
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
		watch();
		const double f = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
					 .count() /
				 o.duration;
		const uint64_t rss = rss_bytes();
		if (f >= 0.25 && f < 0.5)
			warm_peak = std::max(warm_peak, rss);
		if (f >= 0.75)
			late_peak = std::max(late_peak, rss);
		if (o.max_steps != 0) {
			bool all = true;
			for (const Counts &c : counts)
				all &= c.steps >= o.max_steps;
			if (all)
				break;
		}
	}
	g_stop.store(true);
	// Threads finish their step; the watchdog still watches them while they do.
	for (size_t i = 0; i < threads.size(); i++) {
		while (counts[i].done.load(std::memory_order_acquire) == false) {
			std::this_thread::sleep_for(std::chrono::milliseconds(20));
			watch();
		}
		threads[i].join();
	}
	const double secs =
		std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

	Counts total;
	for (const Counts &c : counts)
		total += c;
	std::printf("soak: %.1f s: %" PRIu64 " steps (%.0f/s), %" PRIu64 " control calls (%.0f/s, "
		    "%" PRIu64 " refused as they should be or changing nothing), %" PRIu64
		    " guest table changes, %" PRIu64 " invalidations, %" PRIu64
		    " device swaps\n",
		    secs, total.steps, total.steps / secs, total.calls, total.calls / secs,
		    total.refused, total.guest_changes, total.invalidations, total.hot_swaps);
	std::printf("soak: %" PRIu64 " requests (%.0f/s), %" PRIu64 " completions, %" PRIu64
		    " faults, %" PRIu64 " answers compared with the control path: all agree\n",
		    total.requests, total.requests / secs, total.completions, total.faults,
		    total.compared);

	const unsigned fds_after = open_fds();
	if (fds_after != fds_before) {
		std::fprintf(stderr, "soak: FAILED: seed %" PRIu64 ": %u descriptors open at the "
			     "start, %u at the end\n", o.seed, fds_before, fds_after);
		return 1;
	}
	// Slack: the allocator keeps freed memory; a quarter more and 32 MiB is not a leak
	// of the soak's own steady churn. Under AddressSanitizer its quarantine grows the
	// resident set by design: LeakSanitizer checks for leaks at exit there instead.
#ifdef __SANITIZE_ADDRESS__
	constexpr bool kCheckRss = false;
#else
	constexpr bool kCheckRss = true;
#endif
	if (kCheckRss && warm_peak != 0 && late_peak > warm_peak + warm_peak / 4 + (32u << 20)) {
		std::fprintf(stderr, "soak: FAILED: seed %" PRIu64 ": resident set grew from %"
			     PRIu64 " MiB after the warm-up to %" PRIu64 " MiB at the end\n",
			     o.seed, warm_peak >> 20, late_peak >> 20);
		return 1;
	}
	std::printf("soak: descriptors %u at start and end; resident set peak %" PRIu64
		    " MiB after warm-up, %" PRIu64 " MiB at the end\n",
		    fds_before, warm_peak >> 20, late_peak >> 20);
	std::printf("soak: OK (seed %" PRIu64 ")\n", o.seed);
	return 0;
}
