/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * counters.h: the one table of counter names that telemetry and iodp-pmd's JSON render.
 * Names are well formed and unique where they share a dict (/iodp/stats holds the engine's
 * and the worker totals' side by side), the visitors give each table row once in order,
 * and doc/engine.md's counter tables list exactly these names (argv[1]: its path).
 */
#include <iodp/counters.h>

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace iodp::engine {
namespace {

std::string g_doc_path;

template <class Stats> std::vector<std::string> names(std::span<const Counter<Stats>> table)
{
	std::vector<std::string> out;
	for (const Counter<Stats> &c : table)
		out.push_back(c.name);
	return out;
}

/** Lower case words of letters and digits joined by single '_'s, starting with a letter. */
bool is_name(std::string_view n)
{
	if (n.empty() || n[0] < 'a' || n[0] > 'z' || n.back() == '_' ||
	    n.find("__") != std::string_view::npos)
		return false;
	for (char c : n)
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	return true;
}

// (No std::regex: GCC 12's -Wmaybe-uninitialized trips on its headers in the ASan build.)
template <class Stats> void expect_well_formed(std::span<const Counter<Stats>> table)
{
	for (const Counter<Stats> &c : table) {
		EXPECT_TRUE(is_name(c.name)) << c.name;
		EXPECT_NE(std::string(c.description), "") << c.name;
		EXPECT_NE(c.read, nullptr) << c.name;
	}
}

TEST(Counters, NamesAreWellFormed)
{
	expect_well_formed(worker_counters());
	expect_well_formed(engine_counters());
	expect_well_formed(device_counters());
}

/** One dict, one name: /iodp/stats and the summary's stats hold both tables side by side. */
TEST(Counters, NamesAreUniqueWhereTheyShareADict)
{
	std::vector<std::string> stats = names(engine_counters());
	for (const std::string &n : names(worker_counters()))
		stats.push_back(n);
	EXPECT_EQ(std::set<std::string>(stats.begin(), stats.end()).size(), stats.size());
	const std::vector<std::string> dev = names(device_counters());
	EXPECT_EQ(std::set<std::string>(dev.begin(), dev.end()).size(), dev.size());
}

TEST(Counters, VisitorsGiveEachRowOnceWithItsValue)
{
	EngineStats s;
	s.workers = 3;
	s.invalidations = 11;
	s.invalidations_posted = 7;
	s.total.requests = 100;
	s.total.pages = 4;
	s.total.hits = 3;
	s.total.invalidations = 5;
	s.total.faults_by_kind[IODP_FAULT_BAD_REQUEST] = 2;
	std::vector<std::string> seen;
	std::map<std::string, uint64_t> value;
	visit_stats(s, [&](const char *name, uint64_t v, CounterKind) {
		seen.push_back(name);
		value[name] = v;
	});
	const std::vector<std::string> engine = names(engine_counters());
	std::vector<std::string> want = {engine[0]};
	for (const std::string &n : names(worker_counters()))
		want.push_back(n);
	want.insert(want.end(), engine.begin() + 1, engine.end());
	EXPECT_EQ(seen, want);
	EXPECT_EQ(seen[0], "workers");
	EXPECT_EQ(value["workers"], 3u);
	EXPECT_EQ(value["invalidations_requested"], 11u);
	EXPECT_EQ(value["invalidations_posted"], 7u);
	EXPECT_EQ(value["invalidations"], 5u) << "the workers' total, not the engine's";
	EXPECT_EQ(value["requests"], 100u);
	EXPECT_EQ(value["hit_rate_ppm"], 750000u);
	EXPECT_EQ(value["fault_bad_request"], 2u);

	dev::DevStats d;
	d.mismatches = 9;
	d.checks_answers = true;
	d.driver_counters = {{"kernel_maps", 4}};
	std::map<std::string, std::pair<uint64_t, CounterKind>> dv;
	visit_device(d, [&](const char *name, uint64_t v, CounterKind k) { dv[name] = {v, k}; });
	EXPECT_EQ(dv.size(), device_counters().size() + 1);
	EXPECT_EQ(dv["mismatches"].first, 9u);
	EXPECT_EQ(dv["checks_answers"], std::make_pair(uint64_t{1}, CounterKind::flag));
	EXPECT_EQ(dv["kernel_maps"], std::make_pair(uint64_t{4}, CounterKind::count));
}

/** The backquoted names in the first column of the table whose header starts @p header. */
std::vector<std::string> doc_table(const std::string &doc, const std::string &header)
{
	std::vector<std::string> out;
	std::istringstream in(doc);
	std::string line;
	bool inside = false;
	while (std::getline(in, line)) {
		if (!inside) {
			inside = line.rfind("| " + header + " |", 0) == 0;
			continue;
		}
		if (line.rfind("|", 0) != 0)
			break;
		if (line.rfind("|---", 0) == 0)
			continue;
		const std::string first = line.substr(1, line.find('|', 1) - 1);
		for (size_t open = first.find('`'); open != std::string::npos;) {
			const size_t close = first.find('`', open + 1);
			if (close == std::string::npos)
				break;
			const std::string_view n(first.data() + open + 1, close - open - 1);
			if (is_name(n))
				out.emplace_back(n);
			open = first.find('`', close + 1);
		}
	}
	return out;
}

TEST(Counters, DocEngineMdListsExactlyTheTablesNames)
{
	ASSERT_NE(g_doc_path, "") << "usage: counters_test PATH/doc/engine.md";
	std::ifstream f(g_doc_path);
	ASSERT_TRUE(f) << g_doc_path;
	const std::string doc((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
	EXPECT_EQ(doc_table(doc, "worker counter"), names(worker_counters()));
	EXPECT_EQ(doc_table(doc, "engine counter"), names(engine_counters()));
	EXPECT_EQ(doc_table(doc, "device counter"), names(device_counters()));
}

} // namespace
} // namespace iodp::engine

int main(int argc, char **argv)
{
	testing::InitGoogleTest(&argc, argv);
	if (argc > 1)
		iodp::engine::g_doc_path = argv[1];
	return RUN_ALL_TESTS();
}
