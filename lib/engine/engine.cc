/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/engine.h>
#include <iodp/iodp.h>
#include <iodp/mem.h>

#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_pause.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>

/* `--log-level=iodp.engine:debug` (or `iodp.*:...`) sets it; DPDK's own types are apart. */
RTE_LOG_REGISTER(iodp_logtype_engine, iodp.engine, INFO);

namespace iodp::engine {

struct Engine::PollEntry {
	dev::RxBurst rx;
	dev::TxBurst tx;
	void *queue;
	uint16_t port;
};

struct Engine::PollList {
	std::vector<PollEntry> entries;
};

struct Engine::Port {
	uint16_t id = 0;
	dev::Device *dev = nullptr;
	std::vector<unsigned> queue_worker;
	bool active = false;
	std::string gone_reason;
	/** A device that went away is closed; what it last reported stays here. */
	bool closed = false;
	dev::DevInfo final_info;
	dev::DevStats final_stats;
	/** Passes that left commands for later (its budget was used); read by ports(). */
	std::atomic<uint64_t> throttled{0};
	/* Control thread only: */
	bool heavy = false;     ///< throttled in its last pass
	uint64_t last_work = 0; ///< the last pass in which it did control work (0: none)
};

namespace {

struct Launch {
	Engine *engine;
	unsigned worker;
};

/** Completions a worker keeps per queue burst: the largest request split page by page. */
constexpr size_t kCplCap = 1024;
constexpr unsigned kMaxBurst = 512;
constexpr unsigned kMaxCommandBudget = 4096;
/** Commands taken from a device at a time. */
constexpr unsigned kCommandChunk = 64;

} // namespace

Engine::Engine(ctl::Ctx &ctx, const EngineConfig &config) : ctx_(ctx), config_(config) {}

Result<std::unique_ptr<Engine>> Engine::create(ctl::Ctx &ctx, const EngineConfig &config)
{
	if (config.burst == 0 || config.burst > kMaxBurst)
		return Status::error(-EINVAL, "engine: burst {} is outside [1, {}]", config.burst,
				     kMaxBurst);
	if (config.command_budget == 0 || config.command_budget > kMaxCommandBudget)
		return Status::error(-EINVAL, "engine: command budget {} is outside [1, {}]",
				     config.command_budget, kMaxCommandBudget);
	if (!dpdk_eal_running())
		return Status::error(-ENODEV, "engine: DPDK's EAL is not initialised (workers "
				     "are EAL lcores; library mode needs no engine)");
	std::unique_ptr<Engine> e(new Engine(ctx, config));
	std::vector<unsigned> lcores = config.lcores;
	if (lcores.empty()) {
		unsigned l;
		RTE_LCORE_FOREACH_WORKER(l)
			lcores.push_back(l);
	}
	if (lcores.empty())
		return Status::error(-EINVAL, "engine: no worker lcores: give the EAL at least two "
				     "lcores (-l 0-1; the first one is the control thread)");
	for (size_t i = 0; i < lcores.size(); i++) {
		const unsigned l = lcores[i];
		if (l >= RTE_MAX_LCORE || !rte_lcore_is_enabled(l) || l == rte_get_main_lcore())
			return Status::error(-EINVAL, "engine: lcore {} is not an EAL worker lcore "
					     "(see -l / --lcores; lcore {} is the main one)", l,
					     rte_get_main_lcore());
		if (std::find(lcores.begin(), lcores.begin() + i, l) != lcores.begin() + i)
			return Status::error(-EINVAL, "engine: lcore {} is listed twice", l);
	}
	e->lcores_ = lcores;
	e->lists_ = std::make_unique<std::atomic<PollList *>[]>(lcores.size());
	for (size_t i = 0; i < lcores.size(); i++) {
		Result<std::unique_ptr<Worker>> w = Worker::create(ctx, config.worker);
		if (!w)
			return w.status();
		// Offline until its lcore runs it: a sync must not wait for a worker not polling.
		(*w)->offline();
		e->workers_.push_back(std::move(*w));
		e->lcore_node_.push_back(dev::cpu_node(rte_lcore_to_cpu_id(static_cast<int>(lcores[i]))));
		e->lists_[i].store(new PollList(), std::memory_order_relaxed);
	}
	return e;
}

Engine::~Engine()
{
	unregister_telemetry(this);
	stop();
	(void)complete_inflight(true); // workers offline: over at once
	for (auto &p : ports_)
		if (p->active && p->dev != nullptr)
			p->dev->stop();
	if (lists_ != nullptr)
		for (size_t i = 0; i < workers_.size(); i++)
			delete lists_[i].load(std::memory_order_relaxed);
	// Lists retired by earlier publishes run with the coherence's reclaim / destructor.
	ctx_.coherence().reclaim();
}

Result<uint16_t> Engine::add_device(dev::Device &device)
{
	if (ports_.size() >= kMaxPorts)
		return Status::error(-ENOSPC, "engine: {}: all {} ports are taken",
				     device.name(), kMaxPorts);
	for (const auto &p : ports_)
		if (p->dev == &device && p->active)
			return Status::error(-EEXIST, "engine: {} is already port {}",
					     device.name(), p->id);
	if (!device.started()) {
		Status s = device.start();
		if (!s.ok())
			return s;
	}
	auto port = std::make_unique<Port>();
	port->id = static_cast<uint16_t>(ports_.size());
	port->dev = &device;
	port->active = true;
	const dev::DevInfo info = device.info();
	// One queue, one worker: the least loaded worker on the queue memory's node, else the
	// least loaded of all (what RSS spreading does with queues).
	std::vector<unsigned> load(workers_.size(), 0);
	for (const auto &p : ports_)
		if (p->active)
			for (unsigned w : p->queue_worker)
				load[w]++;
	for (unsigned q = 0; q < device.queues(); q++) {
		int best = -1;
		for (int pass = 0; pass < 2 && best < 0; pass++)
			for (unsigned w = 0; w < workers_.size(); w++) {
				if (pass == 0 && (info.numa_node < 0 || lcore_node_[w] != info.numa_node))
					continue;
				if (best < 0 || load[w] < load[static_cast<unsigned>(best)])
					best = static_cast<int>(w);
			}
		port->queue_worker.push_back(static_cast<unsigned>(best));
		load[static_cast<unsigned>(best)]++;
	}
	for (auto &w : workers_) {
		Status s = w->set_port(port->id, device.ctl_id);
		if (!s.ok())
			return s;
	}
	const uint16_t id = port->id;
	{
		std::lock_guard g(ports_lock_);
		ports_.push_back(std::move(port));
	}
	publish_lists();
	return id;
}

/*
 * New poll lists for every worker; the old ones are freed after a grace period, when no
 * worker can still be walking them.
 */
void Engine::publish_lists()
{
	for (unsigned w = 0; w < workers_.size(); w++) {
		auto *l = new PollList();
		for (const auto &p : ports_) {
			if (!p->active)
				continue;
			const dev::FastPath &fp = p->dev->fast_path();
			for (unsigned q = 0; q < p->queue_worker.size(); q++)
				if (p->queue_worker[q] == w)
					l->entries.push_back({fp.rx_burst, fp.tx_burst, fp.queue[q], p->id});
		}
		PollList *old = lists_[w].exchange(l, std::memory_order_acq_rel);
		ctx_.coherence().retire([old] { delete old; });
	}
}

Status Engine::remove_device(uint16_t port, const std::string &reason)
{
	if (port >= ports_.size() || !ports_[port]->active)
		return Status::error(-ENOENT, "engine: no active port {}", port);
	Port &p = *ports_[port];
	{
		std::lock_guard g(ports_lock_);
		p.active = false;
		p.gone_reason = reason;
	}
	publish_lists();
	// Commands it had carried out are completed first (the device is stopped next).
	(void)complete_inflight(true);
	// After this no worker is inside the device's burst functions.
	ctx_.coherence().sync();
	p.dev->stop();
	event(p.dev->name() + " (port " + std::to_string(port) + ") removed: " + reason);
	return {};
}

int Engine::worker_main(void *arg)
{
	const Launch launch = *static_cast<Launch *>(arg);
	delete static_cast<Launch *>(arg);
	Engine &e = *launch.engine;
	Worker &w = *e.workers_[launch.worker];
	std::atomic<PollList *> &list = e.lists_[launch.worker];
	const uint16_t burst = e.config_.burst;
	dev::Request reqs[kMaxBurst];
	dev::Completion cpls[kCplCap];
	w.online();
	while (!e.stop_.load(std::memory_order_relaxed)) {
		w.begin_burst();
		const PollList *l = list.load(std::memory_order_acquire);
		bool busy = false;
		for (const PollEntry &q : l->entries) {
			const uint16_t n = q.rx(q.queue, reqs, burst);
			if (n == 0)
				continue;
			busy = true;
			size_t done = 0;
			while (done < n) {
				size_t used = 0;
				const size_t c = w.translate_port(q.port, reqs + done, n - done, cpls,
								  kCplCap, &used);
				const uint16_t sent = q.tx(q.queue, cpls, static_cast<uint16_t>(c));
				if (sent < c)
					w.count_lost(c - sent);
				if (used == 0)
					break;
				done += used;
			}
		}
		w.end_burst(busy);
		if (!busy)
			rte_pause();
	}
	w.offline();
	return 0;
}

Status Engine::start()
{
	if (running_)
		return Status::error(-EBUSY, "engine: already running");
	stop_.store(false, std::memory_order_relaxed);
	for (unsigned i = 0; i < workers_.size(); i++) {
		auto *arg = new Launch{this, i};
		const int rc = rte_eal_remote_launch(worker_main, arg, lcores_[i]);
		if (rc != 0) {
			delete arg;
			stop_.store(true, std::memory_order_relaxed);
			for (unsigned j = 0; j < i; j++)
				rte_eal_wait_lcore(lcores_[j]);
			return Status::error(rc, "engine: cannot launch worker {} on lcore {} "
					     "(busy?)", i, lcores_[i]);
		}
	}
	running_ = true;
	return {};
}

void Engine::stop()
{
	if (!running_)
		return;
	stop_.store(true, std::memory_order_relaxed);
	for (unsigned l : lcores_)
		rte_eal_wait_lcore(l);
	running_ = false;
	// Passes still waiting: with every worker offline their grace periods are over.
	(void)complete_inflight(true);
	// Faults still queued belong in the log.
	for (auto &w : workers_)
		faults_reported_.fetch_add(w->report_faults(), std::memory_order_relaxed);
}

void Engine::event(std::string line)
{
	if (log_events_.load(std::memory_order_relaxed))
		rte_log(RTE_LOG_WARNING, iodp_logtype_engine, "iodp.engine: %s\n",
			line.c_str());
	std::lock_guard g(events_lock_);
	events_.push_back(std::move(line));
}

std::vector<std::string> Engine::take_events()
{
	std::lock_guard g(events_lock_);
	return std::exchange(events_, {});
}

namespace {

Status run_command(ctl::Ctx &ctx, const dev::Command &c)
{
	switch (c.type) {
	case IODP_DEV_CMD_HWPT_INVALIDATE: {
		uint32_t len = 0;
		if (c.arg == IODP_HWPT_INVALIDATE_DATA_VTD_S1)
			len = sizeof(iodp_hwpt_vtd_s1_invalidate);
		else if (c.arg == IODP_HWPT_INVALIDATE_DATA_ARM_SMMUV3)
			len = sizeof(iodp_hwpt_arm_smmuv3_invalidate);
		else
			return Status::error(-EOPNOTSUPP, "invalidation data type {} is unknown",
					     c.arg);
		uint32_t handled = 0;
		return ctx.hwpt_invalidate(c.object, c.arg, c.data, len, 1, &handled);
	}
	case IODP_DEV_CMD_IOAS_UNMAP: {
		Result<uint64_t> r = ctx.ioas_unmap(c.object, c.iova, c.length);
		return r ? Status{} : r.status();
	}
	default:
		return Status::error(-EOPNOTSUPP, "command type {} is unknown", c.type);
	}
}

/** A command carried out, to be completed once the pass's sync is over. */
struct Done {
	dev::Device *dev;
	dev::CommandDone done;
};

/** Passes whose grace period may still be running; more waits for the oldest. */
constexpr size_t kMaxInFlight = 16;
/** A heavy device's share while a light one is active: this part of the budget. */
constexpr unsigned kHeavyShare = 16;
/** A light device is active if it did control work within this many passes. */
constexpr uint64_t kRecentPasses = 4;

/**
 * Take up to @p budget of @p device's commands and carry them out (inside the caller's
 * SyncBatch: nothing is complete yet); their completions go to @p out.
 */
unsigned run_commands(ctl::Ctx &ctx, dev::Device &device, unsigned budget,
		      std::vector<Done> &out, std::vector<std::string> *failures)
{
	dev::Command cmds[kCommandChunk];
	unsigned taken = 0;
	budget = std::min(budget, device.pass_budget());
	while (taken < budget) {
		const unsigned n = device.take_commands(cmds, std::min(kCommandChunk, budget - taken));
		for (unsigned i = 0; i < n; i++) {
			Status s = run_command(ctx, cmds[i]);
			if (!s.ok() && failures != nullptr)
				failures->push_back(device.name() +
						    ": invalidation-queue command failed: " +
						    s.message());
			out.push_back({&device, {cmds[i].cookie, s.code(), 0}});
		}
		taken += n;
		if (n == 0)
			break;
	}
	(void)device.spend_budget(taken);
	return taken;
}

/** Complete what run_commands() carried out: only after the sync that covers them. */
void complete_all(const std::vector<Done> &done, std::vector<std::string> *failures)
{
	for (const Done &d : done)
		if (!d.dev->complete(d.done) && failures != nullptr)
			failures->push_back(d.dev->name() +
					    ": completion queue full, a completion is lost");
}

} // namespace

/** One pass's commands, carried out, complete once the grace period begun after them ends. */
struct Engine::InFlight {
	iotlb::Coherence::Grace grace;
	std::vector<Done> done;
};

unsigned serve_commands(ctl::Ctx &ctx, dev::Device &device, std::vector<std::string> *failures,
			unsigned max)
{
	std::vector<Done> done;
	unsigned n;
	{
		ctl::Ctx::SyncBatch batch(ctx);
		n = run_commands(ctx, device, max, done, failures);
		(void)batch.sync();
	}
	complete_all(done, failures);
	return n;
}

unsigned Engine::complete_inflight(bool wait)
{
	unsigned n = 0;
	while (!inflight_.empty()) {
		InFlight &f = *inflight_.front();
		while (!ctx_.coherence().sync_done(f.grace)) {
			if (!wait)
				return n;
			rte_pause();
		}
		std::vector<std::string> failures;
		complete_all(f.done, &failures);
		command_errors_.fetch_add(failures.size(), std::memory_order_relaxed);
		for (std::string &line : failures)
			event(std::move(line));
		n += static_cast<unsigned>(f.done.size());
		inflight_.pop_front();
	}
	return n;
}

/*
 * A control pass:
 *   1. devices that went away are removed and closed;
 *   2. earlier passes' commands whose grace period is over are completed;
 *   3. each device, round-robin, gets its budget of control work: its service hook runs
 *      (a driver's own maps spend it), then its commands, up to what is left; devices
 *      with work left over are counted throttled;
 *   4. the pass's invalidations are posted (merged into ranges) and one grace period
 *      begins; the pass does not wait for it: its commands complete in a later pass once
 *      it is over, and meanwhile the loop serves other devices. A storm's work thus fills
 *      the time another device's commands wait for the workers, instead of adding to it.
 * Each guest wait still ends only after a grace period that began after its unmap or
 * invalidation (strict semantics).
 */
unsigned Engine::poll_control()
{
	unsigned work = 0;
	for (auto &pp : ports_) {
		Port &p = *pp;
		if (!p.active || !p.dev->gone())
			continue;
		devices_lost_.fetch_add(1, std::memory_order_relaxed);
		(void)remove_device(p.id, "device gone: " + p.dev->gone_reason());
		// Nothing will use it again: release its memory and lib/ctl objects now,
		// keeping its last numbers for ports() and the summaries built on them.
		std::lock_guard g(ports_lock_);
		p.final_info = p.dev->info();
		p.final_stats = p.dev->stats();
		p.dev->close();
		p.closed = true;
		work++;
	}
	work += complete_inflight(false);
	const size_t np = ports_.size();
	const uint64_t pass_no = ++passes_;
	// Shares: a device that used all of its budget last pass (heavy) gets a slice of it
	// while a light device is active, so that a light device waits for little of its
	// work between its own steps; alone, or beside heavy ones only, it gets all of it.
	bool light_active = false;
	for (const auto &pp : ports_)
		light_active |= pp->active && !pp->heavy && pp->last_work != 0 &&
				pass_no - pp->last_work <= kRecentPasses;
	const unsigned heavy_budget = std::max(1u, config_.command_budget / kHeavyShare);
	// Service hooks outside the batch: what a driver does there (an ipc driver's unmap,
	// answered as soon as the call returns) must sync as any call does.
	for (size_t k = 0; k < np; k++) {
		Port &p = *ports_[(next_port_ + k) % np];
		if (!p.active)
			continue;
		p.dev->set_pass_budget(p.heavy && light_active ? heavy_budget
							       : config_.command_budget);
		p.dev->service();
	}
	std::vector<std::string> failures;
	std::vector<Done> done;
	unsigned served = 0;
	bool throttled = false;
	unsigned posted = 0;
	std::optional<iotlb::Coherence::Grace> grace;
	uint64_t requested = 0;
	{
		ctl::Ctx::SyncBatch batch(ctx_);
		for (size_t k = 0; k < np; k++) {
			Port &p = *ports_[(next_port_ + k) % np];
			if (!p.active)
				continue;
			const unsigned before = p.dev->pass_budget();
			served += run_commands(ctx_, *p.dev, config_.command_budget, done,
					       &failures);
			const bool used = p.dev->pass_budget() != before ||
					  p.dev->pass_budget() != (p.heavy && light_active
									   ? heavy_budget
									   : config_.command_budget);
			if (used)
				p.last_work = pass_no;
			p.heavy = p.dev->commands_pending() != 0 || p.dev->budget_short();
			if (p.heavy) {
				p.throttled.store(p.throttled.load(std::memory_order_relaxed) + 1,
						  std::memory_order_relaxed);
				throttled = true;
			}
		}
		if (np != 0)
			next_port_ = static_cast<unsigned>((next_port_ + 1) % np);
		grace = batch.begin_sync(&posted);
		requested = batch.requested();
	}
	if (served != 0) {
		command_passes_.fetch_add(1, std::memory_order_relaxed);
		invalidations_.fetch_add(requested, std::memory_order_relaxed);
		invalidations_posted_.fetch_add(posted, std::memory_order_relaxed);
	}
	if (!done.empty()) {
		if (!grace) {
			complete_all(done, &failures); // nothing needed a grace period
		} else {
			if (inflight_.size() >= kMaxInFlight)
				work += complete_inflight(true);
			inflight_.push_back(std::make_unique<InFlight>(InFlight{*grace, std::move(done)}));
		}
	}
	if (throttled)
		throttled_.fetch_add(1, std::memory_order_relaxed);
	commands_.fetch_add(served, std::memory_order_relaxed);
	command_errors_.fetch_add(failures.size(), std::memory_order_relaxed);
	for (std::string &f : failures)
		event(std::move(f));
	work += served;
	// Commands left over budget, and passes still waiting for their grace period: the
	// caller must not sleep before the next pass.
	for (auto &pp : ports_)
		if (pp->active)
			work += pp->dev->commands_pending();
	work += static_cast<unsigned>(inflight_.size());
	for (auto &w : workers_) {
		const unsigned n = w->report_faults();
		faults_reported_.fetch_add(n, std::memory_order_relaxed);
		work += n;
	}
	ctx_.coherence().reclaim();
	return work;
}

std::vector<WorkerStats> Engine::worker_stats() const
{
	std::vector<WorkerStats> v;
	for (const auto &w : workers_)
		v.push_back(w->stats());
	return v;
}

EngineStats Engine::stats() const
{
	EngineStats e;
	e.workers = static_cast<unsigned>(workers_.size());
	for (const auto &w : workers_)
		e.total += w->stats();
	e.commands = commands_.load(std::memory_order_relaxed);
	e.command_errors = command_errors_.load(std::memory_order_relaxed);
	e.faults_reported = faults_reported_.load(std::memory_order_relaxed);
	e.devices_lost = devices_lost_.load(std::memory_order_relaxed);
	const iotlb::LatencyHistogram &h = ctx_.coherence().sync_latency();
	e.sync_count = h.count();
	e.sync_p50_ns = h.quantile(0.5);
	e.sync_p99_ns = h.quantile(0.99);
	e.sync_max_ns = h.max();
	e.command_passes = command_passes_.load(std::memory_order_relaxed);
	e.invalidations = invalidations_.load(std::memory_order_relaxed);
	e.invalidations_posted = invalidations_posted_.load(std::memory_order_relaxed);
	e.throttled = throttled_.load(std::memory_order_relaxed);
	return e;
}

std::vector<PortReport> Engine::ports() const
{
	std::lock_guard g(ports_lock_);
	std::vector<PortReport> v;
	for (const auto &p : ports_) {
		PortReport r;
		r.port = p->id;
		r.info = p->closed ? p->final_info : p->dev->info();
		r.stats = p->closed ? p->final_stats : p->dev->stats();
		r.stats.throttled = p->throttled.load(std::memory_order_relaxed);
		r.gone = !p->active;
		r.gone_reason = p->gone_reason;
		r.queue_worker = p->queue_worker;
		v.push_back(std::move(r));
	}
	return v;
}

} // namespace iodp::engine
