/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The walker over guest memory the fuzzer writes, in every format, granule and nested pair.
 * Guest RAM sits between PROT_NONE guard pages: a read outside a region crashes the fuzzer
 * (ASan would not see it: the memory is mmap'ed). One walk at a time and the burst
 * pipeline must give identical results (they run the same state machine).
 *
 * Input: a 16-byte header (formats, granules, roots, flags), then up to 64 KiB of memory.
 */
#include <iodp/mem.h>
#include <iodp/pgtable.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>

using namespace iodp;
using namespace iodp::pgtable;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMemBytes = 64 * 1024;
constexpr uint64_t kGpa = 0x40000000; // where guest RAM starts; also a second alias below

/** [guard][kMemBytes][guard], mapped once. */
std::byte *guest()
{
	static std::byte *mem = [] {
		void *p = mmap(nullptr, kMemBytes + 2 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (p == MAP_FAILED)
			std::abort();
		auto *b = static_cast<std::byte *>(p) + kPage;
		if (mprotect(b, kMemBytes, PROT_READ | PROT_WRITE) != 0)
			std::abort();
		return b;
	}();
	return mem;
}

uint64_t u64(const uint8_t *p)
{
	uint64_t v;
	std::memcpy(&v, p, 8);
	return v;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 16)
		return 0;
	const uint8_t f1 = data[0], f2 = data[1], g = data[2], flags = data[3];
	const uint64_t roots = u64(data + 4);
	const uint32_t ias = data[12] & 63;
	const int start = (data[13] & 7) == 7 ? -1 : (data[13] & 7);
	data += 16;
	size -= 16;
	std::byte *mem = guest();
	const size_t n = size < kMemBytes ? size : kMemBytes;
	std::memcpy(mem, data, n);
	std::memset(mem + n, 0, kMemBytes - n);

	GuestMemory gm;
	if (!gm.add_region(kGpa, kMemBytes, mem).ok())
		std::abort();
	static const unsigned kGranules[] = {12, 14, 16, 12};
	const Format fmt1 = kAllFormats[f1 % std::size(kAllFormats)];
	TableConfig s1 = table_config(fmt1, kGpa + (roots & (kMemBytes - 1)),
				      kGranules[g & 3], (flags & 1) ? ias : 0,
				      (flags & 2) ? start : -1);
	s1.update_accessed = flags & 4;
	TableConfig s2 = table_config(kAllFormats[f2 % std::size(kAllFormats)],
				      kGpa + ((roots >> 32) & (kMemBytes - 1)), kGranules[(g >> 2) & 3]);
	s2.update_accessed = flags & 8;
	// Stage 2 identity-ish: its tables live in the same memory; most fuzzed tables fault.
	Result<Translation> x = make_translation(gm, s1, (flags & 16) ? &s2 : nullptr);
	if (!x)
		return 0;
	// Addresses: from the tail of the input, else a few fixed ones.
	WalkRequest reqs[kWalkInFlight + 8];
	WalkResult burst[std::size(reqs)];
	size_t nreq = 0;
	for (size_t off = 0; off + 9 <= n && nreq < std::size(reqs); off += 9 + (n / 16)) {
		reqs[nreq] = walk_request(u64(data + off), data[off + 8] & 15);
		if (data[off + 8] & 16)
			reqs[nreq].flags = kWalkStage1Only;
		nreq++;
	}
	if (nreq == 0)
		reqs[nreq++] = walk_request(0);
	walk_burst(*x, reqs, burst, nreq);
	// With A/D updates the first pass changes memory; one at a time afterwards would see
	// other entries: compare only the read-only walks.
	if (!s1.update_accessed && !s2.update_accessed)
		for (size_t i = 0; i < nreq; i++)
			if (!(walk(*x, reqs[i]) == burst[i]))
				std::abort();
	return 0;
}
