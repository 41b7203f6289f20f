/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Traffic: each profile's rx_burst makes the requests a device of that kind would post;
 * tx_burst takes the answers, checks them (verify=1) and does the DMA (dma=1).
 */
#include "emul_impl.h"

#include <rte_prefetch.h>

#include <algorithm>
#include <bit>
#include <cstring>

namespace iodp::emul {

namespace {

constexpr uint64_t kSeqMask = (1ull << 48) - 1;

uint64_t cookie_of(unsigned qid, uint64_t seq)
{
	return (uint64_t{qid} << 48) | (seq & kSeqMask);
}

/** A request of @p len bytes at data offset @p off, kept inside the working set. */
uint64_t data_iova(const Emul &e, uint64_t off, uint32_t len)
{
	const uint64_t limit = e.ws - kMeta;
	if (off + len > limit)
		off = (limit - len) & ~uint64_t{63};
	return kIovaBase + kMeta + off;
}

struct Gen {
	uint64_t iova;
	uint32_t len;
	uint8_t access;
	uint16_t slot;
	uint64_t host_page;
};

template <Profile P>
bool generate(Emul &e, Queue &q, Gen *g)
{
	const uint64_t r = next_rand(q.rng);
	if constexpr (P == Profile::nic) {
		// Descriptor i of the RX ring, then the buffer it points to: a 2 KiB buffer from
		// a pool over the working set, mostly one of the recently used ones.
		constexpr uint64_t kRing = 1024;
		const uint64_t desc = q.cursor % kRing;
		if (q.sub == 0) {
			*g = {kIovaBase + uint64_t{q.id} * 65536 + desc * 16, 16, IODP_ACCESS_READ, 0, 0};
			q.sub = 1;
		} else {
			const uint64_t nbuf = (e.ws - kMeta) / 2048;
			const uint64_t hot = std::max<uint64_t>(nbuf / 16, 1);
			const uint64_t buf = (r & 7) != 0 ? (r >> 8) % hot : (r >> 8) % nbuf;
			const uint32_t len = 64 + static_cast<uint32_t>((r >> 40) % (1518 - 64 + 1));
			*g = {data_iova(e, buf * 2048, len), len, IODP_ACCESS_WRITE, 0, 0};
			q.sub = 0;
			q.cursor++;
		}
	} else if constexpr (P == Profile::nvme) {
		// A 128 KiB transfer: the PRP list (32 entries), then 32 sequential 4 KiB pages.
		if (q.sub == 0) {
			const uint64_t list = 768 * 1024 + uint64_t{q.id} * 16384 + (q.cursor % 4) * kPage;
			*g = {kIovaBase + list, 256, IODP_ACCESS_READ, 0, 0};
		} else {
			const uint64_t page = (q.cursor * 32 + q.sub - 1) % e.data_pages;
			*g = {data_iova(e, page * kPage, 4096), 4096,
			      static_cast<uint8_t>((q.cursor & 1) ? IODP_ACCESS_READ : IODP_ACCESS_WRITE),
			      0, 0};
		}
		if (++q.sub == 33) {
			q.sub = 0;
			q.cursor++;
		}
	} else if constexpr (P == Profile::random || P == Profile::zipf) {
		const uint64_t page = P == Profile::random
					      ? (r >> 16) % e.data_pages
					      : e.zipf[(r >> 16) & (e.zipf.size() - 1)];
		const uint64_t off = ((r >> 4) & 63) * 64;
		*g = {data_iova(e, page * kPage + off, e.len), e.len,
		      static_cast<uint8_t>((r & 1) ? IODP_ACCESS_WRITE : IODP_ACCESS_READ), 0, 0};
	} else if constexpr (P == Profile::stream) {
		if (q.cursor + e.len > e.ws - kMeta)
			q.cursor = 0;
		*g = {kIovaBase + kMeta + q.cursor, e.len, IODP_ACCESS_WRITE, 0, 0};
		q.cursor += e.len;
	} else { // strict: only buffers the driver has mapped
		for (unsigned k = 0; k < kSlots; k++) {
			const unsigned s = static_cast<unsigned>((q.cursor + k) % kSlots);
			Slot &slot = q.slots[s];
			if (slot.state.load(std::memory_order_acquire) != kMapped)
				continue;
			slot.state.store(kInFlight, std::memory_order_relaxed);
			*g = {e.slot_iova(q.id, s), 4096, IODP_ACCESS_WRITE, static_cast<uint16_t>(s),
			      slot.host_page};
			q.cursor = s + 1;
			return true;
		}
		return false;
	}
	return true;
}

/**
 * How many of @p n requests a queue may post now: none once the device is gone (or just
 * vanished, vanish=N), else at most what its in-flight window has room for.
 */
inline uint16_t admit(Queue &q, Emul &e, uint16_t n)
{
	if (e.dev->gone())
		return 0;
	if (e.vanish != 0 && q.issued >= (e.vanish + e.queues - 1) / e.queues) {
		e.dev->mark_gone("vanish: the device was unplugged mid-run");
		return 0;
	}
	const uint64_t room = kDepth - (q.issued - q.answered);
	return n > room ? static_cast<uint16_t>(room) : n;
}

/*
 * replay: the requests were made at configure; posting one is a copy and a cookie, so what
 * a benchmark times is the engine, not the traffic generator.
 */
uint16_t rx_burst_replay(void *queue, dev::Request *reqs, uint16_t n)
{
	Queue &q = *static_cast<Queue *>(queue);
	Emul &e = *q.emul;
	n = admit(q, e, n);
	// Locals: stores to reqs[] may alias the queue, and reloading it per request costs.
	const dev::Request *loop = q.replay.get();
	const uint64_t mask = replay_length(e) - 1, cursor = q.cursor, issued = q.issued;
	const uint64_t tag = uint64_t{q.id} << 48;
	for (uint16_t k = 0; k < n; k++) {
		reqs[k] = loop[(cursor + k) & mask];
		reqs[k].cookie = tag | ((issued + k) & kSeqMask);
	}
	// The next burst's requests (two per line): a 1 Mi-request loop is 32 MiB, read from
	// DRAM each time round, and the stall on it was most of this function's time.
	static_assert(sizeof(dev::Request) == 32);
	for (uint16_t k = 0; k < n; k += 2)
		rte_prefetch0(&loop[(cursor + n + k) & mask]);
	q.cursor += n;
	q.issued += n;
	q.requests.add(n);
	return n;
}

template <Profile P>
uint16_t rx_burst(void *queue, dev::Request *reqs, uint16_t n)
{
	Queue &q = *static_cast<Queue *>(queue);
	Emul &e = *q.emul;
	n = admit(q, e, n);
	uint16_t k = 0;
	for (; k < n; k++) {
		Gen g;
		if (!generate<P>(e, q, &g))
			break;
		uint8_t expect_fault = 0;
		if (P != Profile::strict && e.faults_pm != 0 &&
		    next_rand(q.rng) % 1000 < e.faults_pm) {
			// Below the working set: mapped in no layout.
			g.iova = kIovaBase - kPage * (1 + next_rand(q.rng) % 255);
			expect_fault = 1;
		}
		reqs[k] = dev::Request{g.iova, cookie_of(q.id, q.issued), g.len, e.pasid, 0, q.id,
				       g.access, {0, 0, 0}};
		q.recs[q.issued & (kDepth - 1)] = {g.iova, g.host_page, g.len, g.access,
						   expect_fault, g.slot};
		q.issued++;
	}
	q.requests.add(k);
	return k;
}

/** Whether [c.host, c.host + c.length) is where @p rec's bytes from c.offset really are. */
bool segment_ok(const Emul &e, const Record &rec, const dev::Completion &c)
{
	// Every page boundary in the run must match: a run may only join host-contiguous pages.
	uint64_t o = c.offset;
	const uint64_t end = uint64_t{c.offset} + c.length;
	while (o < end) {
		const uint64_t iova = rec.iova + o;
		const uint64_t want = e.profile == Profile::strict
					      ? rec.host_page + (iova & (kPage - 1))
					      : e.truth(iova);
		if (want == 0 || c.host + (o - c.offset) != want)
			return false;
		o = (iova | (kPage - 1)) + 1 - rec.iova;
	}
	return true;
}

} // namespace

uint16_t tx_burst(void *queue, const dev::Completion *cpls, uint16_t n)
{
	Queue &q = *static_cast<Queue *>(queue);
	Emul &e = *q.emul;
	if (e.dev->gone())
		return 0; // nobody there to take them
	uint64_t done = 0, faults = 0, expected = 0, bad = 0, bytes = 0;
	for (uint16_t i = 0; i < n; i++) {
		const dev::Completion &c = cpls[i];
		// Answers come in order, each request exactly once: anything else is a mismatch.
		if (c.cookie != cookie_of(q.id, q.answered)) {
			bad++;
			continue;
		}
		const Record &rec = q.recs[q.answered & (kDepth - 1)];
		const uint32_t want_len = rec.len ? rec.len : 1;
		if (c.fault != 0) {
			faults++;
			if (rec.expect_fault)
				expected++;
			else if (e.verify)
				bad++;
		} else {
			if (e.verify && (rec.expect_fault || c.offset != q.answered_bytes ||
					 c.length == 0 || c.offset + c.length > want_len ||
					 !segment_ok(e, rec, c)))
				bad++;
			if (e.dma) {
				void *host = reinterpret_cast<void *>(c.host);
				if (rec.access & IODP_ACCESS_WRITE)
					std::memcpy(host, e.payload.get() + c.offset, c.length);
				else
					std::memcpy(q.scratch.get(), host, c.length);
				bytes += c.length;
			}
			q.answered_bytes += c.length;
		}
		if (c.flags & IODP_CPL_LAST) {
			if (e.verify && c.fault == 0 && q.answered_bytes != want_len)
				bad++;
			if (e.profile == Profile::strict)
				q.slots[rec.slot].state.store(kDmaDone, std::memory_order_release);
			q.answered++;
			q.answered_bytes = 0;
			done++;
		}
	}
	q.completions.add(done);
	q.faults.add(faults);
	q.expected_faults.add(expected);
	q.mismatches.add(bad);
	q.dma_bytes.add(bytes);
	return n;
}

/** storm: commands only, no requests. */
uint16_t rx_burst_none(void *, dev::Request *, uint16_t)
{
	return 0;
}

uint16_t tx_burst_replay(void *queue, const dev::Completion *cpls, uint16_t n)
{
	Queue &q = *static_cast<Queue *>(queue);
	if (q.emul->dev->gone())
		return 0;
	uint64_t done = 0, faults = 0;
	for (uint16_t i = 0; i < n; i++) {
		done += cpls[i].flags & IODP_CPL_LAST;
		faults += cpls[i].fault != 0;
	}
	q.answered += done;
	q.completions.add(done);
	q.faults.add(faults);
	return n;
}

uint64_t replay_length(const Emul &e)
{
	// A working set a shard can hold: a request per page (at least 4 Ki, 32 B each), a loop
	// that stays in L2 as a device's ring would be in cache. A larger one: four per page,
	// at most 1 Mi, so the loop is not replayed in an order the shard can learn (1 GiB:
	// 1 Mi requests, a reuse distance 32 times a shard's entries).
	const uint64_t n = e.data_pages < (1u << 16) ? e.data_pages : e.data_pages * 4;
	return std::bit_ceil(std::clamp<uint64_t>(n, 1u << 12, 1u << 20));
}

void make_replay(Emul &e)
{
	const uint64_t n = replay_length(e);
	for (uint16_t i = 0; i < e.queues; i++) {
		Queue &q = e.q[i];
		q.replay = std::make_unique<dev::Request[]>(n);
		for (uint64_t k = 0; k < n; k++) {
			const uint64_t r = next_rand(q.rng);
			const uint64_t page = (r >> 16) % e.data_pages;
			const uint64_t off = ((r >> 4) & 63) * 64;
			q.replay[k] = dev::Request{
				data_iova(e, page * kPage + off, e.len), 0, e.len, e.pasid, 0, q.id,
				static_cast<uint8_t>((r & 1) ? IODP_ACCESS_WRITE : IODP_ACCESS_READ),
				{0, 0, 0}};
		}
	}
}

dev::RxBurst rx_burst_of(Profile profile)
{
	switch (profile) {
	case Profile::nic: return rx_burst<Profile::nic>;
	case Profile::nvme: return rx_burst<Profile::nvme>;
	case Profile::random: return rx_burst<Profile::random>;
	case Profile::zipf: return rx_burst<Profile::zipf>;
	case Profile::stream: return rx_burst<Profile::stream>;
	case Profile::strict: return rx_burst<Profile::strict>;
	case Profile::storm: return rx_burst_none;
	case Profile::replay: return rx_burst_replay;
	}
	return nullptr;
}

} // namespace iodp::emul
