/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * drivers/emul: the device side (probe, guest RAM, mappings through lib/ctl) and the guest
 * driver side of strict mode (map before DMA, unmap + invalidate after), which runs on
 * the control thread through the service hook.
 */
#include "emul_impl.h"

#include <iodp/iodp.h>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

namespace iodp::emul {

namespace {

const char *const kKeys[] = {"profile", "format", "queues", "ws",   "pgsize", "len",  "faults",
			     "verify",  "dma",    "vanish", "group", "seed", nullptr};
const char *const kProfiles[] = {"nic",    "nvme",   "random", "zipf",
				  "stream", "strict", "storm",  "replay", nullptr};
/** storm: pages mapped (and unmap commands posted) per service call, and its IOVA window. */
constexpr unsigned kStormPerService = 256;
constexpr uint64_t kStormWindow = 8192;
const char *const kLayouts[] = {"vtd", "smmu", "vtd-nested", "smmu-nested", nullptr};
const char *const kPgsizes[] = {"4k", "2m", nullptr};

constexpr uint32_t kRW = IODP_IOAS_MAP_READABLE | IODP_IOAS_MAP_WRITEABLE;
constexpr uint8_t kS1Perm = pgtable::kMapRead | pgtable::kMapWrite | pgtable::kMapUser;

/**
 * Table pages for @p ws bytes in 4 KiB pages at kIovaBase: a leaf table per 2 MiB, one per
 * GiB above them, and room for the levels above and strict mode's slot region.
 */
uint64_t table_bytes_4k(uint64_t ws)
{
	const uint64_t leaves = (ws + (2u << 20) - 1) >> 21;
	const uint64_t dirs = (ws + (1u << 30) - 1) >> 30;
	return (leaves + dirs + 8) * kPage;
}

Emul &emul_of(const dev::Device &d)
{
	return *static_cast<Emul *>(d.priv);
}

Result<std::unique_ptr<dev::Device>> probe(ctl::Ctx &ctx, const dev::DevArgs &a)
{
	auto e = std::make_unique<Emul>();
	Result<unsigned> profile = a.get_choice("profile", kProfiles, 2);
	Result<unsigned> layout = a.get_choice("format", kLayouts, 0);
	Result<uint64_t> queues = a.get_uint("queues", 1, 1, dev::kMaxQueues);
	Result<uint64_t> ws = a.get_size("ws", 64u << 20, 4u << 20, 64ull << 30);
	Result<unsigned> pg = a.get_choice("pgsize", kPgsizes, 0);
	Result<uint64_t> faults = a.get_uint("faults", 0, 0, 1000);
	Result<bool> verify = a.get_bool("verify", false);
	Result<bool> dma = a.get_bool("dma", false);
	Result<uint64_t> vanish = a.get_uint("vanish", 0, 0, UINT64_MAX);
	Result<uint64_t> group = a.get_uint("group", 0, 0, UINT32_MAX);
	Result<uint64_t> seed = a.get_uint("seed", 1, 0, UINT64_MAX);
	for (const Status *s : {&profile.status(), &layout.status(), &queues.status(), &ws.status(),
				&pg.status(), &faults.status(), &verify.status(), &dma.status(),
				&vanish.status(), &group.status(), &seed.status()})
		if (!s->ok())
			return *s;
	e->profile = static_cast<Profile>(*profile);
	e->layout = static_cast<Layout>(*layout);
	e->queues = static_cast<uint16_t>(*queues);
	e->pgsize = *pg == 0 ? kPage : (2u << 20);
	const uint32_t def_len = e->profile == Profile::stream ? 256 : 64;
	Result<uint64_t> len = a.get_uint("len", def_len, 1, IODP_REQUEST_MAX_LEN);
	if (!len)
		return len.status();
	e->len = static_cast<uint32_t>(*len);
	if (*ws % e->pgsize != 0)
		return a.blame("ws", -EINVAL, "{}: ws={} is not a multiple of pgsize", a.name(),
			       *ws);
	if (e->len > *ws - kMeta)
		return a.blame("len", -EINVAL, "{}: len={} does not fit the working set",
			       a.name(), e->len);
	// vtd and smmu map the working set in 4 KiB pages (pgsize=4k) into an engine-managed
	// table: its pages come from the context's table pool. Checked now, not when the
	// pool runs out halfway through the mapping.
	const bool paging = e->layout == Layout::vtd || e->layout == Layout::smmu;
	if (paging && e->pgsize == kPage) {
		const uint64_t need = table_bytes_4k(*ws);
		const uint64_t pool = ctx.config().table_pool_bytes;
		if (need > pool) {
			uint64_t most = 0; // the largest ws (in MiB) whose tables fit
			while (table_bytes_4k((most + 64) << 20) <= pool)
				most += 64;
			return a.blame("ws", -EINVAL, "{}: ws={}M with format={} and pgsize=4k needs "
					     "{} KiB of page tables; the table pool holds {} "
					     "KiB: ws up to {}M, or pgsize=2m, or a nested format",
					     a.name(),
					     *ws >> 20,
					     kLayouts[*layout],
					     need >> 10,
					     pool >> 10,
					     most);
		}
	}
	e->ws = *ws;
	e->faults_pm = static_cast<unsigned>(*faults);
	e->verify = *verify;
	e->dma = *dma;
	e->vanish = *vanish;
	e->group = static_cast<uint32_t>(*group);
	e->seed = *seed;
	if (e->profile == Profile::replay && (e->faults_pm != 0 || e->verify || e->dma))
		return a.blame("profile", -EINVAL, "{}: profile=replay takes no faults, verify or dma "
				     "(its answers are counted, not checked)", a.name());
	auto d = std::make_unique<dev::Device>(driver(), a.name(), ctx, e->queues);
	e->dev = d.get();
	d->priv = e.release();
	return d;
}

/** The guest's stage 1 for the nested layouts (the topology made it, empty). */
Status build_stage1(Emul &e)
{
	pgtable::TableBuilder &s1 = *e.dom->stage1();
	for (uint64_t p = 0; p < e.npages; p++) {
		Status s = s1.map(kIovaBase + p * e.pgsize, kGpaBase + e.scatter(p) * e.pgsize,
				  e.pgsize, kS1Perm);
		if (!s.ok())
			return s;
	}
	if (e.profile == Profile::strict)
		for (unsigned q = 0; q < e.queues; q++) {
			// Page 0 of each queue's slot region stays mapped, so the leaf table that
			// holds the slots never empties (and is never freed under a walker).
			Status s = s1.map(e.slot_iova(q, 0) - kPage, kGpaBase, kPage, kS1Perm);
			if (!s.ok())
				return s;
		}
	return {};
}

Status configure(dev::Device &d)
{
	Emul &e = emul_of(d);
	ctl::Ctx &ctx = d.ctx();
	const bool nested = e.nested_layout();
	const uint64_t ws_aligned = (e.ws + (2u << 20) - 1) & ~uint64_t{(2u << 20) - 1};
	// Stage-1 tables: a leaf table per 2 MiB (4 KiB pages) plus the levels above and slack.
	const uint64_t table_bytes = nested ? ws_aligned / 256 + (4u << 20) : 0;
	Result<GuestRam> ram = GuestRam::allocate(ws_aligned + table_bytes);
	if (!ram)
		return ram.status();
	e.ram = std::move(*ram);
	e.host = e.ram.data();
	if (Status s = e.ram_map.add_region(0, e.ram.size(), e.host); !s.ok())
		return s;
	e.numa_node = dev::memory_node(e.host, e.ram.size());
	e.npages = e.ws / e.pgsize;
	e.data_pages = (e.ws - kMeta) / kPage;
	e.payload = std::make_unique<std::byte[]>(IODP_REQUEST_MAX_LEN);
	for (uint32_t i = 0; i < IODP_REQUEST_MAX_LEN; i++)
		e.payload[i] = static_cast<std::byte>(i * 31 + 7);

	ctl::DeviceSpec spec;
	spec.name = d.name();
	spec.model = (e.layout == Layout::smmu || e.layout == Layout::smmu_nested)
			     ? ctl::IommuModel::smmuv3
			     : ctl::IommuModel::vtd;
	spec.group = e.group;
	spec.rid = dev::next_rid();
	Result<uint32_t> id = ctx.device_create(spec);
	if (!id)
		return id.status();
	d.ctl_id = *id;
	topo::Recipe r;
	r.kind = e.layout == Layout::vtd_nested    ? topo::Kind::vtd_nested
		 : e.layout == Layout::smmu_nested ? topo::Kind::smmu_nested
						   : topo::Kind::paging;
	r.host = e.host;
	r.gpa = nested ? kGpaBase : kIovaBase; // paging: guest RAM is mapped 1:1 at its IOVAs
	r.bytes = nested ? ws_aligned + table_bytes : e.ws;
	r.tables_offset = ws_aligned;
	r.small_pages = !nested && e.pgsize == kPage;
	if (r.kind == topo::Kind::vtd_nested)
		r.pasid = kNestedPasid;
	r.asid = static_cast<uint16_t>(1 + d.ctl_id % 0xfffe);
	Result<std::unique_ptr<topo::Domain>> dom = topo::Domain::build(ctx, d.ctl_id, r);
	if (!dom)
		return dom.status();
	e.dom = std::move(*dom);
	e.ioas = e.dom->ioas();
	if (nested) {
		e.parent = e.dom->parent();
		e.nested = e.dom->hwpt();
		e.pasid = e.dom->pasid().value_or(IODP_PASID_NONE);
		e.asid = r.kind == topo::Kind::smmu_nested ? r.asid : 0;
		if (Status s = build_stage1(e); !s.ok())
			return s;
	} else {
		e.hwpt = e.dom->hwpt();
		if (e.profile == Profile::strict)
			for (unsigned q = 0; q < e.queues; q++) {
				// As in the nested layouts' stage 1: page 0 of each queue's slot
				// region stays mapped, so the leaf table that holds the slots never
				// empties (a map never waits for a freed table's grace period).
				Result<uint64_t> m = ctx.ioas_map_guest(
					e.ioas, kRW | IODP_IOAS_MAP_FIXED_IOVA, e.slot_iova(q, 0) - kPage,
					e.ram_map, 0, kPage);
				if (!m)
					return m.status();
			}
	}

	if (e.profile == Profile::zipf) {
		// 64Ki samples of Zipf(0.99) over the data pages, popular pages scattered.
		const uint64_t n = e.data_pages;
		std::vector<double> cdf(n);
		double sum = 0;
		for (uint64_t i = 0; i < n; i++)
			cdf[i] = (sum += 1.0 / std::pow(static_cast<double>(i + 1), 0.99));
		uint64_t rng = e.seed * 0x9e3779b97f4a7c15ull + 1;
		e.zipf.resize(65536);
		for (uint32_t &z : e.zipf) {
			const double u = static_cast<double>(next_rand(rng) >> 11) / 9007199254740992.0 * sum;
			const uint64_t rank = static_cast<uint64_t>(
				std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
			z = static_cast<uint32_t>((std::min(rank, n - 1) * 2654435761ull + 13) % n);
		}
	}
	e.q = std::make_unique<Queue[]>(e.queues);
	for (uint16_t i = 0; i < e.queues; i++) {
		Queue &q = e.q[i];
		q.emul = &e;
		q.id = i;
		q.rng = (e.seed + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t{i} << 32 | 0x5bd1e995);
		q.recs = std::make_unique<Record[]>(kDepth);
		q.scratch = std::make_unique<std::byte[]>(IODP_REQUEST_MAX_LEN);
		if (e.profile == Profile::strict)
			q.slots = std::make_unique<Slot[]>(kSlots);
	}
	if (e.profile == Profile::replay)
		make_replay(e);
	return {};
}

Status start(dev::Device &d)
{
	Emul &e = emul_of(d);
	dev::FastPath &fp = d.fast_path();
	fp.rx_burst = rx_burst_of(e.profile);
	fp.tx_burst = e.profile == Profile::replay ? tx_burst_replay : tx_burst;
	for (uint16_t i = 0; i < e.queues; i++)
		fp.queue[i] = &e.q[i];
	return {};
}

void stop(dev::Device &) {}

void close(dev::Device &d)
{
	Emul *e = &emul_of(d);
	ctl::Ctx &ctx = d.ctx();
	e->dom.reset(); // detaches, then destroys what the topology made
	if (d.ctl_id != 0)
		(void)ctx.destroy(d.ctl_id);
	d.priv = nullptr;
	delete e;
}

void info(const dev::Device &d, dev::DevInfo *i)
{
	const Emul &e = emul_of(d);
	static const char *const kPg[] = {"4k", "2m"};
	char buf[200];
	std::snprintf(buf, sizeof(buf), "%s traffic, %s tables, ws %llu MiB, %s pages%s%s, RAM %s",
		      kProfiles[static_cast<unsigned>(e.profile)],
		      kLayouts[static_cast<unsigned>(e.layout)],
		      static_cast<unsigned long long>(e.ws >> 20), kPg[e.pgsize != kPage],
		      e.verify ? ", verify" : "", e.dma ? ", dma" : "",
		      e.host != nullptr ? ram_backing_name(e.ram.backing()) : "not allocated");
	i->description = buf;
	i->group = e.group;
	i->numa_node = e.numa_node;
	i->hwpt = e.nested != 0 ? e.nested : e.hwpt;
	i->pasid = e.pasid;
	i->ioas = e.ioas;
	i->asid = e.asid;
}

void stats(const dev::Device &d, dev::DevStats *s)
{
	const Emul &e = emul_of(d);
	for (uint16_t i = 0; i < e.queues; i++) {
		const Queue &q = e.q[i];
		s->requests += q.requests.get();
		s->completions += q.completions.get();
		s->faults += q.faults.get();
		s->expected_faults += q.expected_faults.get();
		s->mismatches += q.mismatches.get();
		s->dma_bytes += q.dma_bytes.get();
	}
	s->commands = e.commands.load(std::memory_order_relaxed);
	s->checks_answers = true;
}

void stats_reset(dev::Device &d)
{
	Emul &e = emul_of(d);
	for (uint16_t i = 0; i < e.queues; i++)
		for (Counter *c : {&e.q[i].requests, &e.q[i].completions, &e.q[i].faults,
				   &e.q[i].expected_faults, &e.q[i].mismatches, &e.q[i].dma_bytes})
			c->reset();
	e.commands.store(0, std::memory_order_relaxed);
}

/** strict, guest side: tell the IOMMU about an unmapped slot. */
bool post_invalidation(dev::Device &d, Emul &e, unsigned qid, unsigned s)
{
	dev::Command c{};
	c.cookie = (uint64_t{qid} << 32) | s;
	const uint64_t iova = e.slot_iova(qid, s);
	if (e.layout == Layout::vtd_nested) {
		c.type = IODP_DEV_CMD_HWPT_INVALIDATE;
		c.object = e.nested;
		c.arg = IODP_HWPT_INVALIDATE_DATA_VTD_S1;
		const iodp_hwpt_vtd_s1_invalidate inv{iova, 1, IODP_VTD_INV_FLAGS_LEAF, 0};
		std::memcpy(c.data, &inv, sizeof(inv));
	} else if (e.layout == Layout::smmu_nested) {
		c.type = IODP_DEV_CMD_HWPT_INVALIDATE;
		c.object = e.nested;
		c.arg = IODP_HWPT_INVALIDATE_DATA_ARM_SMMUV3;
		c.data[0] = 0x12 /* CMD_TLBI_NH_VA */ | (uint64_t{e.asid} << 48);
		c.data[1] = iova | 1 /* leaf */;
	} else {
		c.type = IODP_DEV_CMD_IOAS_UNMAP;
		c.object = e.ioas;
		c.iova = iova;
		c.length = kPage;
	}
	return d.post_command(c);
}

/**
 * storm, driver side (control thread): keep the invalidation queue full of single-page
 * unmaps, each of a page mapped just before. What the engine serves per pass is its
 * budget's business; this side does at most kStormPerService maps per call.
 */
void storm_service(dev::Device &d, Emul &e)
{
	dev::CommandDone done[64];
	unsigned n;
	while ((n = d.take_done(done, 64)) != 0)
		e.commands.store(e.commands.load(std::memory_order_relaxed) + n,
				 std::memory_order_relaxed);
	ctl::Ctx &ctx = d.ctx();
	const uint64_t region = kIovaBase + ((e.ws + (2u << 20) - 1) & ~uint64_t{(2u << 20) - 1});
	// Each map is control work of this device's own: it spends the pass's budget, so
	// that what the storm costs the control thread stays its own share.
	for (unsigned i = 0; i < kStormPerService && d.commands_pending() < 1024 - 1 &&
			     d.spend_budget();
	     i++) {
		const uint64_t page = e.storm_cursor % kStormWindow;
		const uint64_t iova = region + page * kPage;
		// A page whose unmap is still queued is mapped: wait for it (EEXIST).
		if (!ctx.ioas_map_guest(e.ioas, kRW | IODP_IOAS_MAP_FIXED_IOVA, iova, e.ram_map,
					kMeta + (page % e.data_pages) * kPage, kPage))
			return;
		dev::Command c{};
		c.type = IODP_DEV_CMD_IOAS_UNMAP;
		c.object = e.ioas;
		c.iova = iova;
		c.length = kPage;
		c.cookie = e.storm_cursor++;
		if (!d.post_command(c)) {
			(void)ctx.ioas_unmap(e.ioas, iova, kPage);
			e.storm_cursor--;
			return;
		}
	}
}

/**
 * strict, guest side (control thread): slots whose DMA is done are unmapped and
 * invalidated; slots whose invalidation completed are mapped again, each time onto
 * another page, so an answer from a stale entry would point at the wrong page.
 */
void service(dev::Device &d)
{
	Emul &e = emul_of(d);
	if (e.profile == Profile::storm && !d.gone())
		storm_service(d, e);
	if (e.profile != Profile::strict || d.gone())
		return;
	ctl::Ctx &ctx = d.ctx();
	dev::CommandDone done[64];
	unsigned n;
	while ((n = d.take_done(done, 64)) != 0)
		for (unsigned i = 0; i < n; i++) {
			const unsigned qid = static_cast<unsigned>(done[i].cookie >> 32);
			const unsigned s = static_cast<unsigned>(done[i].cookie & 0xffffffff);
			if (qid >= e.queues || s >= kSlots)
				continue;
			if (done[i].status != 0)
				e.q[qid].mismatches.add(1);
			e.q[qid].slots[s].state.store(kUnmapped, std::memory_order_relaxed);
			e.commands.store(e.commands.load(std::memory_order_relaxed) + 1,
					 std::memory_order_relaxed);
		}
	for (unsigned qid = 0; qid < e.queues; qid++)
		for (unsigned s = 0; s < kSlots; s++) {
			Slot &slot = e.q[qid].slots[s];
			const uint8_t st = slot.state.load(std::memory_order_acquire);
			const uint64_t iova = e.slot_iova(qid, s);
			if (st == kUnmapped) {
				if (!d.spend_budget())
					continue; // this pass's share is used: a later pass maps it
				const uint64_t page = ((uint64_t{qid} * kSlots + s) * 7919 +
						       ++slot.generation * 104729) % e.data_pages;
				const uint64_t gpa_off = kMeta + page * kPage;
				Status st2 = e.nested_layout()
						     ? e.dom->stage1()->map(iova, kGpaBase + gpa_off, kPage, kS1Perm)
						     : ctx.ioas_map_guest(e.ioas,
									  kRW | IODP_IOAS_MAP_FIXED_IOVA,
									  iova, e.ram_map, gpa_off, kPage)
							       .status();
				if (!st2.ok()) {
					d.mark_gone(("strict: cannot map a buffer: " + st2.message()).c_str());
					return;
				}
				slot.host_page = reinterpret_cast<uint64_t>(e.host + gpa_off);
				slot.state.store(kMapped, std::memory_order_release);
			} else if (st == kDmaDone || st == kNeedInval) {
				if (st == kDmaDone && e.nested_layout()) {
					Status u = e.dom->stage1()->unmap(iova, kPage);
					if (!u.ok()) {
						d.mark_gone(("strict: cannot unmap a buffer: " +
							     u.message()).c_str());
						return;
					}
				}
				slot.state.store(post_invalidation(d, e, qid, s) ? kUnmapping : kNeedInval,
						 std::memory_order_relaxed);
			}
		}
}

const dev::DevOps kOps = {configure, start, stop, close, info, stats, stats_reset, service};

const dev::Driver kDriver = {
	"emul",
	"emulated devices: nic, nvme, random, zipf, stream and strict traffic profiles",
	kKeys,
	&kOps,
	probe,
};

} // namespace

const dev::Driver &driver()
{
	return kDriver;
}

} // namespace iodp::emul
