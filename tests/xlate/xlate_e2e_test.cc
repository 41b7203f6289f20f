/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * End-to-end tests of iodp-xlate: tables built with TableBuilder in a buffer, saved as raw
 * memory images, translated by the real binary (path in $IODP_XLATE); stdout, stderr and
 * the exit status are checked, against hand-worked expectations and against the library's
 * own walk of the same memory.
 */
#include <iodp/pgtable_builder.h>

#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <spawn.h>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern char **environ;

namespace iodp::pgtable {
namespace {

constexpr uint64_t kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024;

std::string hex(uint64_t v)
{
	char buf[24];
	std::snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
	return buf;
}

std::string ok_json(uint64_t iova, uint64_t out, uint64_t size, const std::string &perm)
{
	return "{\"iova\":\"" + hex(iova) + "\",\"ok\":true,\"out\":\"" + hex(out) +
	       "\",\"size\":" + std::to_string(size) + ",\"perm\":\"" + perm + "\"}";
}

std::string fault_json(uint64_t iova, const std::string &fault, int stage, int level)
{
	return "{\"iova\":\"" + hex(iova) + "\",\"ok\":false,\"fault\":\"" + fault +
	       "\",\"stage\":" + std::to_string(stage) + ",\"level\":" + std::to_string(level) +
	       "}";
}

std::string json_of(uint64_t iova, const WalkResult &r)
{
	if (r.ok())
		return ok_json(iova, r.out, r.page_size, perm_letters(r.perm));
	return fault_json(iova, std::string(fault_name(r.fault)), r.stage, r.level);
}

std::vector<std::string> split_lines(const std::string &s)
{
	std::vector<std::string> lines;
	std::istringstream in(s);
	for (std::string line; std::getline(in, line);)
		lines.push_back(line);
	return lines;
}

struct RunResult {
	int status = -1; // exit status, or 128 + signal
	std::string out, err;

	std::vector<std::string> lines() const { return split_lines(out); }
};

std::string slurp(const std::string &path)
{
	std::ifstream f(path, std::ios::binary);
	std::stringstream ss;
	ss << f.rdbuf();
	return ss.str();
}

/** Per-test scratch directory: image files, address files and the tool's captured output. */
class XlateTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		const char *tool = std::getenv("IODP_XLATE");
		ASSERT_NE(tool, nullptr) << "set IODP_XLATE to the iodp-xlate binary";
		tool_ = tool;
		const char *tmp = std::getenv("TMPDIR");
		std::string tmpl = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") +
				   "/iodp-xlate-e2e-XXXXXX";
		ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
		dir_ = tmpl;
	}

	void TearDown() override
	{
		if (!dir_.empty())
			std::filesystem::remove_all(dir_);
	}

	std::string path(const std::string &name) const { return dir_ + "/" + name; }

	/** Save @p bytes as an image file; returns the --mem value that loads it at @p gpa. */
	std::string save(const std::vector<std::byte> &bytes, uint64_t gpa, const std::string &name)
	{
		std::ofstream f(path(name), std::ios::binary);
		f.write(reinterpret_cast<const char *>(bytes.data()),
			static_cast<std::streamsize>(bytes.size()));
		EXPECT_TRUE(f.good());
		return hex(gpa) + ":" + path(name);
	}

	std::string write_text(const std::string &name, const std::string &text)
	{
		std::ofstream f(path(name));
		f << text;
		EXPECT_TRUE(f.good());
		return path(name);
	}

	RunResult run(const std::vector<std::string> &args)
	{
		RunResult r;
		std::vector<std::string> argv_s = {tool_};
		argv_s.insert(argv_s.end(), args.begin(), args.end());
		std::vector<char *> argv;
		for (std::string &a : argv_s)
			argv.push_back(a.data());
		argv.push_back(nullptr);

		// Files, not pipes: no risk of a full pipe blocking the child while we wait.
		const std::string out = path("stdout"), err = path("stderr");
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
		posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
						 0644);
		posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
						 0644);
		pid_t pid;
		const int rc = posix_spawn(&pid, tool_.c_str(), &fa, nullptr, argv.data(), environ);
		posix_spawn_file_actions_destroy(&fa);
		EXPECT_EQ(rc, 0) << "cannot run " << tool_;
		if (rc != 0)
			return r;
		int ws = 0;
		EXPECT_EQ(waitpid(pid, &ws, 0), pid);
		r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
		r.out = slurp(out);
		r.err = slurp(err);
		return r;
	}

	std::string tool_;
	std::string dir_;
};

TableBuilder make_builder(const TableConfig &cfg, TablePool *pool)
{
	Result<TableBuilder> b = TableBuilder::create(cfg, pool);
	EXPECT_TRUE(b.ok()) << b.status().message();
	return b.ok() ? std::move(*b) : TableBuilder{};
}

/** What the library itself says for each address, as the tool's JSON lines. */
std::vector<std::string> library_json(const std::vector<std::byte> &image, uint64_t gpa,
				      const TableConfig &s1, const TableConfig *s2,
				      const std::vector<uint64_t> &iovas, uint8_t access)
{
	GuestMemory mem;
	Status s = mem.add_region(gpa, image.size(), const_cast<std::byte *>(image.data()));
	EXPECT_TRUE(s.ok()) << s.message();
	Result<Translation> x = make_translation(mem, s1, s2);
	EXPECT_TRUE(x.ok()) << x.status().message();
	std::vector<std::string> lines;
	if (!x.ok())
		return lines;
	for (uint64_t iova : iovas)
		lines.push_back(json_of(iova, walk(*x, iova, access)));
	return lines;
}

std::vector<std::string> hex_all(const std::vector<uint64_t> &v)
{
	std::vector<std::string> out;
	for (uint64_t a : v)
		out.push_back(hex(a));
	return out;
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string> &b)
{
	a.insert(a.end(), b.begin(), b.end());
	return a;
}

bool contains(const std::string &hay, const std::string &needle)
{
	return hay.find(needle) != std::string::npos;
}

/* ---------------------------------------------------------------------------------------- */
/* One stage, every format                                                                   */

struct FormatCase {
	const char *label;
	Format format;
	unsigned granule_shift;
	unsigned ias;     // 0: the format's default
	int start_level;  // -1: derived
	int expect_start; // the start level the walk must begin at
	unsigned expect_ias;
	std::vector<uint64_t> page_sizes; // one mapping of each
	std::vector<std::string> args;    // geometry options for the tool
};

std::ostream &operator<<(std::ostream &os, const FormatCase &c) { return os << c.label; }

bool is_x86(Format f) { return f == Format::x86_64_4l || f == Format::x86_64_5l; }
bool is_arm(Format f) { return f == Format::arm_s1 || f == Format::arm_s2; }

/** Architecture level of a leaf of @p size. */
int leaf_level(const FormatCase &c, uint64_t size)
{
	const int g = static_cast<int>(c.granule_shift);
	const int h = (__builtin_ctzll(size) - g) / (g - 3);
	return is_arm(c.format) ? 3 - h : h + 1;
}

class FormatTest : public XlateTest, public ::testing::WithParamInterface<FormatCase> {};

TEST_P(FormatTest, TranslatesEachPageSizeAndFaults)
{
	const FormatCase &c = GetParam();
	const uint64_t granule = 1ull << c.granule_shift;
	const uint64_t kGpa = 0x200000;
	std::vector<std::byte> image(4 * kMiB);
	TablePool pool(kGpa, image.data(), image.size(), granule);
	const TableConfig cfg = table_config(c.format, 0, c.granule_shift, c.ias, c.start_level);
	TableBuilder b = make_builder(cfg, &pool);
	ASSERT_NE(b.root(), 0u);
	EXPECT_EQ(b.stage().level(b.stage().start_height), c.expect_start);
	EXPECT_EQ(b.stage().ias, c.expect_ias);

	// Stage-1 formats need the user bit for unprivileged requests.
	const uint8_t user = format_stage(c.format) == 1 ? kMapUser : 0;
	const uint8_t perms[] = {kMapRead | kMapWrite, kMapRead, kMapRead | kMapWrite | kMapExec};
	const char *const letters[] = {"rw", "r", "rwx"};
	std::vector<uint64_t> iovas;
	std::vector<std::string> expect;
	for (size_t i = 0; i < c.page_sizes.size(); i++) {
		const uint64_t size = c.page_sizes[i];
		const uint64_t iova = (i + 1) * 4 * kGiB, oa = (i + 1) * 64 * kGiB;
		ASSERT_TRUE(b.map(iova, oa, size, perms[i % 3] | user).ok()) << size;
		const uint64_t probe = iova + size / 2 + 0x123;
		iovas.push_back(probe);
		expect.push_back(ok_json(probe, oa + size / 2 + 0x123, size, letters[i % 3]));
	}
	const int stage = format_stage(c.format);
	// Same leaf table as the first (smallest) mapping, empty slot.
	const uint64_t hole = 4 * kGiB + 16 * granule;
	iovas.push_back(hole);
	expect.push_back(fault_json(hole, "not-present", stage, leaf_level(c, granule)));
	// The last input address: its start-level slot was never filled.
	const uint64_t top = is_x86(c.format) ? (1ull << (c.expect_ias - 1)) - granule
					      : (1ull << c.expect_ias) - granule;
	iovas.push_back(top);
	expect.push_back(fault_json(top, "not-present", stage, c.expect_start));
	// Just past the input range (non-canonical on x86-64).
	const uint64_t past = 1ull << (c.expect_ias - (is_x86(c.format) ? 1 : 0));
	iovas.push_back(past);
	expect.push_back(fault_json(past, "address-size", stage, c.expect_start));

	const std::string mem = save(image, kGpa, "mem.img");
	const std::vector<std::string> base =
		concat({"--mem", mem, "--format", std::string(format_name(c.format)), "--root",
			hex(b.root())}, c.args);

	RunResult r = run(concat(concat(base, {"--json"}), hex_all(iovas)));
	EXPECT_EQ(r.status, 1) << r.err; // the last three fault
	EXPECT_EQ(r.lines(), expect) << r.err;
	EXPECT_EQ(r.lines(), library_json(image, kGpa, b.config(), nullptr, iovas, kAccessRead));

	// Only the mappings: everything translates, exit 0.
	const std::vector<uint64_t> hits(iovas.begin(), iovas.begin() + c.page_sizes.size());
	r = run(concat(concat(base, {"--json"}), hex_all(hits)));
	EXPECT_EQ(r.status, 0) << r.err;
	EXPECT_EQ(r.lines(), std::vector<std::string>(expect.begin(),
						      expect.begin() + c.page_sizes.size()));

	// A write to the read-only mapping is a permission fault at its leaf.
	r = run(concat(base, {"--json", "--access", "w", hex(iovas[1])}));
	EXPECT_EQ(r.status, 1) << r.err;
	EXPECT_EQ(r.lines(), std::vector<std::string>{fault_json(
				     iovas[1], "permission", stage,
				     leaf_level(c, c.page_sizes[1]))});

	// The text form says the same thing.
	r = run(concat(base, {hex(iovas[0]), hex(hole)}));
	EXPECT_EQ(r.status, 1) << r.err;
	const std::string size_name = granule == 4 * kKiB ? "4 KiB" : granule == 16 * kKiB
										 ? "16 KiB"
										 : "64 KiB";
	EXPECT_EQ(r.lines(),
		  (std::vector<std::string>{
			  hex(iovas[0]) + " -> " + hex(64 * kGiB + granule / 2 + 0x123) + " (" +
				  size_name + " page, rw)",
			  hex(hole) + ": fault not-present at stage " + std::to_string(stage) +
				  " level " + std::to_string(leaf_level(c, granule))}));

	// A root outside every --mem region: the very first fetch fails.
	r = run(concat({"--mem", mem, "--format", std::string(format_name(c.format)), "--root",
			hex(0x40000000)}, concat(c.args, {"--json", hex(iovas[0])})));
	EXPECT_EQ(r.status, 1) << r.err;
	EXPECT_EQ(r.lines(), std::vector<std::string>{fault_json(iovas[0], "bad-table-pointer",
								 stage, c.expect_start)});
}

INSTANTIATE_TEST_SUITE_P(
	Formats, FormatTest,
	::testing::Values(
		FormatCase{"x86_64_4l", Format::x86_64_4l, 12, 0, -1, 4, 48,
			   {4 * kKiB, 2 * kMiB, 1 * kGiB}, {}},
		// The fixed geometry may be spelled out, as long as it agrees.
		FormatCase{"x86_64_4l_explicit", Format::x86_64_4l, 12, 48, 4, 4, 48,
			   {4 * kKiB, 2 * kMiB, 1 * kGiB},
			   {"--granule", "4k", "--ias", "48", "--start-level", "4"}},
		FormatCase{"x86_64_5l", Format::x86_64_5l, 12, 0, -1, 5, 57,
			   {4 * kKiB, 2 * kMiB, 1 * kGiB}, {}},
		FormatCase{"vtd_ss_3l", Format::vtd_ss_3l, 12, 0, -1, 3, 39,
			   {4 * kKiB, 2 * kMiB, 1 * kGiB}, {}},
		FormatCase{"vtd_ss_4l", Format::vtd_ss_4l, 12, 0, -1, 4, 48,
			   {4 * kKiB, 2 * kMiB, 1 * kGiB}, {}},
		FormatCase{"vtd_ss_5l", Format::vtd_ss_5l, 12, 0, -1, 5, 57,
			   {4 * kKiB, 2 * kMiB, 1 * kGiB}, {}},
		FormatCase{"arm_s1_4k", Format::arm_s1, 12, 0, -1, 0, 48,
			   {4 * kKiB, 2 * kMiB, 1 * kGiB}, {"--granule", "4k"}},
		FormatCase{"arm_s1_4k_39bit", Format::arm_s1, 12, 39, -1, 1, 39,
			   {4 * kKiB, 2 * kMiB, 1 * kGiB}, {"--ias", "39"}},
		FormatCase{"arm_s1_16k", Format::arm_s1, 14, 0, -1, 0, 48,
			   {16 * kKiB, 32 * kMiB}, {"--granule", "16k"}},
		FormatCase{"arm_s1_64k", Format::arm_s1, 16, 0, -1, 1, 48,
			   {64 * kKiB, 512 * kMiB}, {"--granule", "64k"}},
		FormatCase{"arm_s2_4k", Format::arm_s2, 12, 0, -1, 0, 48,
			   {4 * kKiB, 2 * kMiB, 1 * kGiB}, {}},
		// Two concatenated start tables: 40 bits starting at level 1.
		FormatCase{"arm_s2_4k_concat", Format::arm_s2, 12, 40, 1, 1, 40,
			   {4 * kKiB, 2 * kMiB, 1 * kGiB},
			   {"--ias", "40", "--start-level", "1"}},
		FormatCase{"arm_s2_16k", Format::arm_s2, 14, 0, -1, 0, 48,
			   {16 * kKiB, 32 * kMiB}, {"--granule", "16k"}},
		FormatCase{"arm_s2_64k", Format::arm_s2, 16, 0, -1, 1, 48,
			   {64 * kKiB, 512 * kMiB}, {"--granule", "64k"}}),
	[](const ::testing::TestParamInfo<FormatCase> &info) { return info.param.label; });

/* ---------------------------------------------------------------------------------------- */
/* Nested                                                                                    */

struct NestedCase {
	const char *label;
	TableConfig s1, s2;
	std::vector<std::string> args; // format and geometry options for both stages
};

std::ostream &operator<<(std::ostream &os, const NestedCase &c) { return os << c.label; }

class NestedTest : public XlateTest, public ::testing::WithParamInterface<NestedCase> {};

/*
 * The image is stage-2 output memory at 0x1000000: stage-2 tables in its first MiB, stage-1
 * tables in its second, which stage 1 sees at IPA 0x40000000 because stage 2 maps them there.
 */
TEST_P(NestedTest, TranslatesThroughBothStages)
{
	const NestedCase &c = GetParam();
	constexpr uint64_t kGpa = 0x1000000, kS1Ipa = 0x40000000;
	std::vector<std::byte> image(4 * kMiB);
	TablePool s2_pool(kGpa, image.data(), 1 * kMiB, 4 * kKiB);
	TablePool s1_pool(kS1Ipa, image.data() + 1 * kMiB, 1 * kMiB, 4 * kKiB);
	TableBuilder s2 = make_builder(c.s2, &s2_pool);
	TableBuilder s1 = make_builder(c.s1, &s1_pool);
	const uint8_t rw = kMapRead | kMapWrite;
	ASSERT_TRUE(s2.map(kS1Ipa, kGpa + 1 * kMiB, 1 * kMiB, kMapRead).ok());

	// 4 KiB over a 2 MiB block: the smaller leaf is the size.
	ASSERT_TRUE(s1.map(0x7000, 0x80000000, 4 * kKiB, rw | kMapUser).ok());
	ASSERT_TRUE(s2.map(0x80000000, 0x200000000, 2 * kMiB, rw).ok());
	// 1 GiB over 1 GiB.
	ASSERT_TRUE(s1.map(0x40000000, 0xc0000000, 1 * kGiB, rw | kMapUser).ok());
	ASSERT_TRUE(s2.map(0xc0000000, 0x300000000, 1 * kGiB, rw).ok());
	// 2 MiB over 4 KiB pages (output not 2 MiB aligned).
	ASSERT_TRUE(s1.map(0x80000000, 0x100000000, 2 * kMiB, rw | kMapUser).ok());
	ASSERT_TRUE(s2.map(0x100000000, 0x400001000, 2 * kMiB, rw).ok());
	// Read-write at stage 1, read-only at stage 2.
	ASSERT_TRUE(s1.map(0x9000, 0x90000000, 4 * kKiB, rw | kMapUser).ok());
	ASSERT_TRUE(s2.map(0x90000000, 0x500000000, 4 * kKiB, kMapRead).ok());
	// Stage 1 maps it; stage 2 does not.
	ASSERT_TRUE(s1.map(0xa000, 0xa0000000, 4 * kKiB, rw | kMapUser).ok());
	// A stage-1 table address that stage 2 sends outside memory.
	ASSERT_TRUE(s2.map(0x60000000, 0x7000000000, 4 * kKiB, kMapRead).ok());

	const bool arm = c.s1.format == Format::arm_s1;
	// Stage-2 levels: where the 0x80000000 region's 2 MiB block sits, and its 4 KiB pages.
	const int s2_l2 = 2, s2_l1 = arm ? 3 : 1, s1_leaf = arm ? 3 : 1;
	const std::vector<uint64_t> iovas = {0x7123, 0x40000000 + 0x12345678, 0x80000000 + 0x1abcd,
					     0x9008, 0x5000, 0xa000};
	const std::vector<std::string> expect = {
		ok_json(0x7123, 0x200000123, 4 * kKiB, "rw"),
		ok_json(0x52345678, 0x312345678, 1 * kGiB, "rw"),
		ok_json(0x8001abcd, 0x40001bbcd, 4 * kKiB, "rw"),
		ok_json(0x9008, 0x500000008, 4 * kKiB, "r"),
		fault_json(0x5000, "not-present", 1, s1_leaf),
		fault_json(0xa000, "not-present", 2, s2_l2),
	};
	const std::string mem = save(image, kGpa, "host.img");
	TableConfig s1_cfg = s1.config(), s2_cfg = s2.config();
	const std::vector<std::string> base =
		concat({"--mem", mem, "--root", hex(s1.root()), "--s2-root", hex(s2.root())}, c.args);

	RunResult r = run(concat(concat(base, {"--json"}), hex_all(iovas)));
	EXPECT_EQ(r.status, 1) << r.err;
	EXPECT_EQ(r.lines(), expect) << r.err;
	EXPECT_EQ(r.lines(), library_json(image, kGpa, s1_cfg, &s2_cfg, iovas, kAccessRead));

	// Stage 2 refuses the write stage 1 allows, at its 4 KiB leaf.
	r = run(concat(base, {"--json", "--access", "rw", "0x9008"}));
	EXPECT_EQ(r.status, 1) << r.err;
	EXPECT_EQ(r.lines(), std::vector<std::string>{fault_json(0x9008, "permission", 2, s2_l1)});

	// A stage-1 root stage 2 does not map faults in stage 2 before any stage-1 entry.
	r = run(concat({"--mem", mem, "--root", "0x50000000", "--s2-root", hex(s2.root())},
		       concat(c.args, {"--json", "0x7000"})));
	EXPECT_EQ(r.status, 1) << r.err;
	EXPECT_EQ(r.lines(), std::vector<std::string>{fault_json(0x7000, "not-present", 2, s2_l2)});

	// One that stage 2 maps outside memory: stage 1 cannot fetch its start table.
	r = run(concat({"--mem", mem, "--root", "0x60000000", "--s2-root", hex(s2.root())},
		       concat(c.args, {"--json", "0x7000"})));
	EXPECT_EQ(r.status, 1) << r.err;
	const int s1_start = s1.stage().level(s1.stage().start_height);
	EXPECT_EQ(r.lines(),
		  std::vector<std::string>{fault_json(0x7000, "bad-table-pointer", 1, s1_start)});

	// Everything that translates, traced: stage-2 steps show up for the stage-1 tables.
	r = run(concat(base, {"--trace", "0x7123"}));
	EXPECT_EQ(r.status, 0) << r.err;
	EXPECT_TRUE(contains(r.out, "(stage-1 table)")) << r.out;
	EXPECT_TRUE(contains(r.out, "(stage-1 output)")) << r.out;
	EXPECT_TRUE(contains(r.out, "0x7123 -> 0x200000123 (4 KiB page, rw)")) << r.out;
}

INSTANTIATE_TEST_SUITE_P(
	Pairs, NestedTest,
	::testing::Values(
		NestedCase{"x86_over_vtd", table_config(Format::x86_64_4l),
			   table_config(Format::vtd_ss_4l),
			   {"--format", "x86-64-4l", "--s2-format", "vtd-ss-4l"}},
		NestedCase{"arm_s1_over_s2", table_config(Format::arm_s1),
			   table_config(Format::arm_s2, 0, 12, 40, 1),
			   {"--format", "arm-s1", "--granule", "4k", "--s2-format", "arm-s2",
			    "--s2-granule", "4k", "--s2-ias", "40", "--s2-start-level", "1"}}),
	[](const ::testing::TestParamInfo<NestedCase> &info) { return info.param.label; });

/* ---------------------------------------------------------------------------------------- */
/* Options, output forms and exit statuses on one x86-64 guest                               */

class OptionsTest : public XlateTest {
protected:
	static constexpr uint64_t kGpa = 0x100000;

	void SetUp() override
	{
		XlateTest::SetUp();
		pool_ = std::make_unique<TablePool>(kGpa, image_.data(), image_.size(), 4 * kKiB);
		b_ = make_builder(table_config(Format::x86_64_4l), pool_.get());
		ASSERT_TRUE(b_.map(0x1000, 0x5000, 4 * kKiB, kMapRead | kMapWrite | kMapUser).ok());
		ASSERT_TRUE(b_.map(0x2000, 0x6000, 4 * kKiB, kMapRead | kMapExec | kMapUser).ok());
		// Supervisor only.
		ASSERT_TRUE(b_.map(0x3000, 0x7000, 4 * kKiB, kMapRead | kMapWrite).ok());
		mem_ = save(image_, kGpa, "mem.img");
	}

	std::vector<std::string> base() const
	{
		return {"--mem", mem_, "--format", "x86-64-4l", "--root", hex(b_.root())};
	}

	std::vector<std::byte> image_ = std::vector<std::byte>(256 * kKiB);
	std::unique_ptr<TablePool> pool_;
	TableBuilder b_;
	std::string mem_;
};

TEST_F(OptionsTest, AccessAndPrivilege)
{
	RunResult r = run(concat(base(), {"--json", "--access", "rx", "0x2010", "0x1010"}));
	EXPECT_EQ(r.status, 1) << r.err;
	EXPECT_EQ(r.lines(), (std::vector<std::string>{ok_json(0x2010, 0x6010, 4096, "rx"),
						       fault_json(0x1010, "permission", 1, 1)}));

	r = run(concat(base(), {"--json", "0x3000"}));
	EXPECT_EQ(r.lines(), std::vector<std::string>{fault_json(0x3000, "permission", 1, 1)});
	r = run(concat(base(), {"--json", "--priv", "--access", "rw", "0x3000"}));
	EXPECT_EQ(r.status, 0) << r.err;
	EXPECT_EQ(r.lines(), std::vector<std::string>{ok_json(0x3000, 0x7000, 4096, "rw")});
}

TEST_F(OptionsTest, AddressesFileAndArguments)
{
	const std::string file = write_text("addrs", "# addresses to check\n"
						     "\n"
						     "0x1008\n"
						     "   8192   # decimal, 0x2000\n"
						     "0x0000000000004000\r\n"
						     "\t\n");
	RunResult r = run(concat(base(), {"--json", "0x1000", "--addresses", file, "12288"}));
	EXPECT_EQ(r.status, 1) << r.err;
	EXPECT_EQ(r.lines(), (std::vector<std::string>{
				     ok_json(0x1000, 0x5000, 4096, "rw"),
				     ok_json(0x1008, 0x5008, 4096, "rw"),
				     ok_json(0x2000, 0x6000, 4096, "rx"),
				     fault_json(0x4000, "not-present", 1, 1),
				     fault_json(0x3000, "permission", 1, 1),
			     }));

	// Only the file: fine too.
	r = run(concat(base(), {"--json", "--addresses", file}));
	EXPECT_EQ(r.lines().size(), 3u) << r.err;

	const std::string bad = write_text("bad", "0x1000\nfoo\n");
	r = run(concat(base(), {"--addresses", bad}));
	EXPECT_EQ(r.status, 2);
	EXPECT_TRUE(contains(r.err, "line 2")) << r.err;
	EXPECT_TRUE(contains(r.err, "'foo'")) << r.err;
	EXPECT_EQ(r.out, "");
}

TEST_F(OptionsTest, TraceShowsRawEntries)
{
	// The root entry the walk reads for 0x1000, straight from the image.
	const uint64_t root_entry = GuestMemory::load_le64(image_.data() + (b_.root() - kGpa));
	char raw[32];
	std::snprintf(raw, sizeof(raw), "0x%016llx", static_cast<unsigned long long>(root_entry));
	const std::string described = describe_entry(Format::x86_64_4l, root_entry, 3, 12);

	RunResult r = run(concat(base(), {"--trace", "0x1000"}));
	EXPECT_EQ(r.status, 0) << r.err;
	const std::vector<std::string> lines = r.lines();
	ASSERT_EQ(lines.size(), 5u) << r.out; // four levels, then the result
	EXPECT_TRUE(contains(lines[0], raw)) << lines[0];
	EXPECT_TRUE(contains(lines[0], described)) << lines[0];
	EXPECT_TRUE(contains(lines[0], "level 4")) << lines[0];
	EXPECT_TRUE(contains(lines[0], hex(b_.root()))) << lines[0];
	EXPECT_TRUE(contains(lines[3], "0x8000000000005007")) << lines[3]; // P RW US XD
	EXPECT_EQ(lines[4], "0x1000 -> 0x5000 (4 KiB page, rw)");

	// With --json the trace moves to stderr; stdout is the same as without --trace.
	const std::vector<std::string> addrs = {"0x1000", "0x2000", "0x3000", "0x4000",
						"0xffff800000000000", "0x800000000000"};
	RunResult traced = run(concat(concat(base(), {"--json", "--trace"}), addrs));
	RunResult plain = run(concat(concat(base(), {"--json"}), addrs));
	EXPECT_EQ(traced.status, 1);
	EXPECT_EQ(plain.status, 1);
	EXPECT_EQ(traced.out, plain.out);
	EXPECT_TRUE(contains(traced.err, raw)) << traced.err;
	for (const std::string &line : traced.lines())
		EXPECT_EQ(line.rfind("{\"iova\":", 0), 0u) << line;
	EXPECT_EQ(plain.lines().back(), fault_json(0x800000000000, "address-size", 1, 4));
}

TEST_F(OptionsTest, BurstMatchesLibrary)
{
	// Enough addresses to keep every burst slot busy, hits and faults mixed.
	std::vector<uint64_t> iovas;
	for (uint64_t i = 0; i < 200; i++)
		iovas.push_back(i * 0x7ff + (i % 7) * (1ull << 39));
	RunResult r = run(concat(concat(base(), {"--json"}), hex_all(iovas)));
	EXPECT_EQ(r.status, 1) << r.err;
	EXPECT_EQ(r.lines(), library_json(image_, kGpa, b_.config(), nullptr, iovas, kAccessRead));
}

TEST_F(OptionsTest, ExitStatuses)
{
	EXPECT_EQ(run(concat(base(), {"0x1000", "0x2000"})).status, 0);
	EXPECT_EQ(run(concat(base(), {"0x1000", "0x9000"})).status, 1);
	EXPECT_EQ(run(concat(base(), {"--bogus", "0x1000"})).status, 2);
	RunResult help = run({"--help"});
	EXPECT_EQ(help.status, 0);
	EXPECT_TRUE(contains(help.out, "--format")) << help.out;
	EXPECT_TRUE(contains(help.out, "--s2-root")) << help.out;
}

/** Each case must exit 2, print nothing on stdout, and name the problem on stderr. */
struct BadUsage {
	std::vector<std::string> args;
	std::vector<std::string> mentions;
};

TEST_F(OptionsTest, BadUsageExits2WithAMessage)
{
	const std::string root = hex(b_.root());
	const std::vector<BadUsage> cases = {
		{{"--mem", mem_, "--format", "x86-64-6l", "--root", root, "0x1000"},
		 {"--format", "x86-64-6l"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "0x1000"}, {"--root"}},
		{{"--mem", mem_, "--root", root, "0x1000"}, {"--format"}},
		{{"--format", "x86-64-4l", "--root", root, "0x1000"}, {"--mem"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", root, "--granule", "16k", "0x1000"},
		 {"granule", "16k"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", root, "--ias", "39", "0x1000"},
		 {"39"}},
		{{"--mem", mem_, "--format", "vtd-ss-3l", "--root", root, "--start-level", "4", "1"},
		 {"start level", "4"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", root, "--s2-root", "0x0",
		  "0x1000"},
		 {"--s2-root", "--s2-format"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", root, "--s2-format", "vtd-ss-4l",
		  "0x1000"},
		 {"--s2-root"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", root, "--s2-format", "arm-s2",
		  "--s2-root", "0", "0x1000"},
		 {"x86-64-4l", "arm-s2"}},
		{{"--mem", "0:" + path("missing.img"), "--format", "x86-64-4l", "--root", root,
		  "0x1000"},
		 {"missing.img"}},
		{{"--mem", "0:" + dir_, "--format", "x86-64-4l", "--root", root, "0x1000"},
		 {"directory"}},
		{{"--mem", mem_, "--mem", hex(kGpa + 0x1000) + ":" + path("mem.img"), "--format",
		  "x86-64-4l", "--root", root, "0x1000"},
		 {"overlaps"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", "0x12x", "0x1000"},
		 {"--root", "0x12x"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", hex(b_.root() + 8), "0x1000"},
		 {"aligned"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", root}, {"addresses"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", root, "bogus"}, {"'bogus'"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", root, "--access", "rq", "1"},
		 {"--access", "rq"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", root, "--frobnicate", "1"},
		 {"--frobnicate"}},
		{{"--mem", "nocolon", "--format", "x86-64-4l", "--root", root, "1"},
		 {"--mem", "GPA:FILE"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root"}, {"--root"}},
		{{"--mem", mem_, "--format", "x86-64-4l", "--root", root, "--addresses",
		  path("nope.txt"), "1"},
		 {"nope.txt"}},
		{{"--example", "--format", "x86-64-4l"}, {"--example", "--format"}},
		// A device has no size: it would be read until memory runs out.
		{{"--mem", "0x10000000:/dev/zero", "--format", "x86-64-4l", "--root", root, "1"},
		 {"/dev/zero", "not a regular file or a pipe"}},
	};
	for (const BadUsage &c : cases) {
		std::string cmd;
		for (const std::string &a : c.args)
			cmd += " " + a;
		RunResult r = run(c.args);
		EXPECT_EQ(r.status, 2) << cmd << "\n" << r.out << r.err;
		EXPECT_EQ(r.out, "") << cmd;
		for (const std::string &m : c.mentions)
			EXPECT_TRUE(contains(r.err, m)) << cmd << "\nstderr: " << r.err
							<< "\nshould mention " << m;
	}
}

/* ---------------------------------------------------------------------------------------- */

/** A large image is mapped, not read: a 2 GiB sparse file costs what the walk touches. */
TEST_F(OptionsTest, LargeImageIsMapped)
{
	const std::string big = path("sparse.img");
	const int fd = open(big.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, 2ll << 30), 0);
	close(fd);
	RunResult r = run(concat(base(), {"--mem", "0x100000000:" + big, "0x1000"}));
	EXPECT_EQ(r.status, 0) << r.err;
	rusage ru{};
	ASSERT_EQ(getrusage(RUSAGE_CHILDREN, &ru), 0);
	EXPECT_LT(ru.ru_maxrss, 256 * 1024) << "KiB of RSS: the image was read, not mapped";
}

TEST_F(XlateTest, ExampleRunsAndExitsZero)
{
	RunResult r = run({"--example"});
	EXPECT_EQ(r.status, 0) << r.out << r.err;
	for (const char *fault : {"not-present", "permission", "address-size"})
		EXPECT_TRUE(contains(r.out, fault)) << r.out;
	EXPECT_TRUE(contains(r.out, "(4 KiB page, rw)")) << r.out;
	EXPECT_TRUE(contains(r.out, "(2 MiB page, r)")) << r.out;
	EXPECT_TRUE(contains(r.out, "(1 GiB page, rwx)")) << r.out;

	r = run({"--example", "--json"});
	EXPECT_EQ(r.status, 0) << r.err;
	EXPECT_EQ(r.lines().size(), 6u) << r.out;
	for (const std::string &line : r.lines())
		EXPECT_EQ(line.rfind("{\"iova\":\"0x", 0), 0u) << line;

	r = run({"--example", "--trace"});
	EXPECT_EQ(r.status, 0) << r.err;
	EXPECT_TRUE(contains(r.out, "stage 1 level 4")) << r.out;
}

} // namespace
} // namespace iodp::pgtable
