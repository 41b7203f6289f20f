/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The invalidation decoders (VT-d invalidation-queue descriptors, SMMUv3 commands, iommufd
 * VTD_S1 entries) on arbitrary words, and what they decode applied to an IOTLB shard.
 * A decoded range is never empty and never wraps (inval.h's promise to every consumer).
 *
 * Input: records of 1 selector byte + 24 bytes.
 */
#include <iodp/inval.h>
#include <iodp/iotlb.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

using namespace iodp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static iotlb::Shard *shard = [] {
		iotlb::ShardConfig c;
		c.entries = 256;
		c.walk_entries = 64;
		c.routes = 16;
		Result<iotlb::Shard> s = iotlb::Shard::create(c);
		if (!s)
			std::abort();
		return new iotlb::Shard(std::move(*s));
	}();
	for (; size >= 25; data += 25, size -= 25) {
		uint64_t w[3];
		std::memcpy(w, data + 1, sizeof(w));
		inval::Descriptor d;
		Status s;
		switch (data[0] % 4) {
		case 0:
			s = inval::decode_vtd_qi(w, &d);
			break;
		case 1:
			s = inval::decode_smmuv3_cmd(w, true, static_cast<uint32_t>(w[2]), &d);
			break;
		case 2:
			s = inval::decode_smmuv3_cmd(w, false, static_cast<uint32_t>(w[2]), &d);
			break;
		default:
			s = inval::decode_iommufd_vtd_s1(w[0], w[1], static_cast<uint32_t>(w[2]),
							 static_cast<uint32_t>(w[2] >> 32),
							 data[0] >> 2, &d);
			break;
		}
		if (!s.ok()) {
			if (s.code() >= 0 || s.message().empty())
				std::abort(); // every failure has an errno and a reason
			continue;
		}
		if ((d.match & inval::kMatchRange) &&
		    (d.size == 0 || d.addr + (d.size - 1) < d.addr))
			std::abort();
		(void)inval::describe(d);
		shard->apply(d);
	}
	return 0;
}
