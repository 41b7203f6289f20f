/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Map / unmap / copy against a reference model: random operations on two IOASes, each
 * mirrored by engine-managed tables in a different format; after every operation the IOAS
 * holds exactly the model's mappings and translations through attached devices agree.
 */
#include "ctl_fixture.h"
#include "inspect.h"

#include <map>
#include <random>

namespace iodp::ctl::test {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kSpace = 64ull << 20; // fixed IOVAs are drawn from here

struct ModelMapping {
	uint64_t length;
	uint64_t host; // host address
	bool operator==(const ModelMapping &) const = default;
};
using Model = std::map<uint64_t, ModelMapping>;

bool overlaps(const Model &m, uint64_t iova, uint64_t len)
{
	for (const auto &[a, mm] : m)
		if (a < iova + len && iova < a + mm.length)
			return true;
	return false;
}

/** The host address the model says @p iova translates to, or 0. */
uint64_t expected_host(const Model &m, uint64_t iova)
{
	auto it = m.upper_bound(iova);
	if (it == m.begin())
		return 0;
	--it;
	return iova < it->first + it->second.length ? it->second.host + (iova - it->first) : 0;
}

class ModelTest : public ::testing::TestWithParam<unsigned> {
protected:
	Ctx ctx;
	HostBuffer buf{16u << 20};
	uint32_t ioas[2] = {};
	uint32_t dev[2] = {};
	Model model[2];
	std::mt19937_64 rng{GetParam()};

	uint64_t pick(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); }

	void SetUp() override
	{
		ioas[0] = ok(ctx.ioas_alloc());
		ioas[1] = ok(ctx.ioas_alloc());
		dev[0] = ok(ctx.device_create(vtd_device("vtd0")));
		dev[1] = ok(ctx.device_create(smmu_device("smmu0")));
		ok(ctx.device_attach(dev[0], std::nullopt, ioas[0]).status());
		ok(ctx.device_attach(dev[1], std::nullopt, ioas[1]).status());
	}

	void check(int i)
	{
		Model actual;
		{
			Inspector look(ctx); // the context's lock: no Ctx calls in this block
			for (const auto &[iova, m] : look.find_as<Ioas>(ioas[i])->mappings)
				actual[iova] = {m.length, reinterpret_cast<uintptr_t>(m.host)};
		}
		ASSERT_EQ(actual, model[i]);
		// Probe inside mappings, at their edges and in between.
		for (int n = 0; n < 16; n++) {
			uint64_t iova;
			if (!model[i].empty() && n % 2 == 0) {
				auto it = std::next(model[i].begin(), pick(model[i].size()));
				iova = it->first + pick(it->second.length + kPage) - kPage / 2;
			} else {
				iova = pick(kSpace * 2);
			}
			const Translated t =
				ok(ctx.translate(dev[i], std::nullopt, iova, pgtable::kAccessRead));
			const uint64_t want = expected_host(model[i], iova);
			if (want == 0)
				ASSERT_EQ(t.fault, pgtable::FaultKind::not_present) << std::hex << iova;
			else
				ASSERT_EQ(t.host, want) << std::hex << iova;
		}
		(void)ctx.fault_events(SIZE_MAX, nullptr);
		check_host_view(i);
	}

	/**
	 * What walks may read (each paging HWPT's view): its table pool and exactly the host
	 * pages some mapping covers, probed at random pages and at mappings' edges.
	 */
	void check_host_view(int i)
	{
		Inspector look(ctx); // the context's lock: no Ctx calls below
		const auto *obj = look.find_as<Ioas>(ioas[i]);
		auto covered = [&](uint64_t host) {
			for (const auto &[iova, mm] : model[i])
				if (host >= mm.host && host - mm.host < mm.length)
					return true;
			return false;
		};
		for (const HwptPaging *h : obj->hwpts) {
			const GuestMemory *view = h->view.load(std::memory_order_acquire);
			ASSERT_NE(view, nullptr);
			ASSERT_NE(view->translate(reinterpret_cast<uintptr_t>(h->pool_ram.data()), 8),
				  nullptr);
			for (int n = 0; n < 16; n++) {
				uint64_t host = buf.addr(pick(buf.size() / kPage) * kPage);
				if (!model[i].empty() && n % 2 == 0) {
					auto it = std::next(model[i].begin(), pick(model[i].size()));
					host = it->second.host +
					       (pick(2) == 0 ? it->second.length : 0) - kPage * pick(2);
				}
				host += 8 * pick(512);
				const bool readable = view->translate(host, 8) != nullptr;
				ASSERT_EQ(readable, covered(host)) << std::hex << "host 0x" << host;
				if (readable) {
					ASSERT_EQ(view->translate(host, 8),
						  reinterpret_cast<std::byte *>(host));
				}
			}
		}
	}

	void map_fixed(int i)
	{
		const uint64_t len = (1 + pick(16)) * kPage;
		const uint64_t iova = pick(kSpace / kPage) * kPage;
		const uint64_t host = buf.addr(pick((buf.size() - len) / kPage) * kPage);
		Result<uint64_t> r = ctx.ioas_map(ioas[i], kFixedRW, iova,
						  reinterpret_cast<void *>(host), len);
		if (overlaps(model[i], iova, len)) {
			ASSERT_EQ(r.status().code(), -EEXIST) << r.status().message();
		} else {
			ASSERT_TRUE(r.ok()) << r.status().message();
			model[i][iova] = {len, host};
		}
	}

	void map_anywhere(int i)
	{
		const uint64_t len = (1 + pick(64)) * kPage;
		const uint64_t host = buf.addr(pick((buf.size() - len) / kPage) * kPage);
		Result<uint64_t> r =
			ctx.ioas_map(ioas[i], kRW, 0, reinterpret_cast<void *>(host), len);
		ASSERT_TRUE(r.ok()) << r.status().message();
		ASSERT_NE(*r, 0u);
		ASSERT_EQ(*r % kPage, 0u);
		ASSERT_FALSE(overlaps(model[i], *r, len)) << std::hex << *r;
		model[i][*r] = {len, host};
	}

	void unmap(int i)
	{
		Model &m = model[i];
		if (m.empty() || pick(8) == 0) {
			// Nothing there (or everything).
			if (pick(4) == 0) {
				ASSERT_TRUE(ctx.ioas_unmap(ioas[i], 0, UINT64_MAX).ok());
				m.clear();
				return;
			}
			const uint64_t iova = kSpace * 4 + pick(1000) * kPage;
			ASSERT_EQ(ctx.ioas_unmap(ioas[i], iova, kPage).status().code(), -ENOENT);
			return;
		}
		auto first = std::next(m.begin(), pick(m.size()));
		auto last = first;
		for (uint64_t n = pick(3); n > 0 && std::next(last) != m.end(); n--)
			++last;
		const uint64_t start = first->first;
		const uint64_t end = last->first + last->second.length;
		if (first->second.length > kPage && pick(4) == 0) {
			// Splitting the first mapping: refused, nothing changes.
			Result<uint64_t> r = ctx.ioas_unmap(ioas[i], start + kPage, end - start - kPage);
			ASSERT_EQ(r.status().code(), -ENOENT);
			return;
		}
		uint64_t want = 0;
		for (auto it = first;; ++it) {
			want += it->second.length;
			if (it == last)
				break;
		}
		Result<uint64_t> r = ctx.ioas_unmap(ioas[i], start, end - start);
		ASSERT_TRUE(r.ok()) << r.status().message();
		ASSERT_EQ(*r, want);
		m.erase(first, std::next(last));
	}

	void copy(int from, int to)
	{
		if (model[from].empty())
			return;
		auto it = std::next(model[from].begin(), pick(model[from].size()));
		const uint64_t off = pick(it->second.length / kPage) * kPage;
		const uint64_t len = (1 + pick((it->second.length - off) / kPage)) * kPage;
		const uint64_t dst = pick(kSpace / kPage) * kPage;
		Result<uint64_t> r = ctx.ioas_copy(ioas[to], ioas[from], kFixedRW, dst,
						   it->first + off, len);
		if (overlaps(model[to], dst, len) || (from == to && overlaps(model[to], dst, len))) {
			ASSERT_EQ(r.status().code(), -EEXIST) << r.status().message();
		} else {
			ASSERT_TRUE(r.ok()) << r.status().message();
			model[to][dst] = {len, it->second.host + off};
		}
	}
};

TEST_P(ModelTest, RandomOperations)
{
	for (int step = 0; step < 300; step++) {
		const int i = static_cast<int>(pick(2));
		switch (pick(6)) {
		case 0:
		case 1:
			map_fixed(i);
			break;
		case 2:
			map_anywhere(i);
			break;
		case 3:
		case 4:
			unmap(i);
			break;
		default:
			copy(i, static_cast<int>(pick(2)));
			break;
		}
		if (HasFatalFailure())
			return;
		check(i);
		if (HasFatalFailure())
			return;
	}
	// Everything unmapped leaves the tables with only their roots.
	for (int i = 0; i < 2; i++) {
		ok(ctx.ioas_unmap(ioas[i], 0, UINT64_MAX).status());
		Inspector look(ctx);
		const auto *obj = look.find_as<Ioas>(ioas[i]);
		for (const HwptPaging *h : obj->hwpts)
			EXPECT_EQ(h->pool.pages_in_use(), 1u);
		EXPECT_EQ(obj->pages->pages(), 0u) << "the host view still holds pages";
		EXPECT_EQ(obj->pages->segments(), 0u);
	}
}

INSTANTIATE_TEST_SUITE_P(Seeds, ModelTest, ::testing::Values(1u, 2u, 3u));

} // namespace
} // namespace iodp::ctl::test
