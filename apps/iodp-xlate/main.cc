/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * iodp-xlate: translate addresses through page tables held in raw guest-memory images, with
 * the walker the data path uses, so a fault seen in the field can be replayed offline and
 * every entry it read shown (--trace).
 */
#include "xlate.h"

#include <iodp/mem.h>
#include <iodp/number.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <getopt.h>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace iodp::xlate {

using namespace pgtable;

namespace {

const char kUsage[] =
	"Usage:\n"
	"  iodp-xlate --mem GPA:FILE [--mem GPA:FILE ...] --format FMT --root GPA\n"
	"             [--granule 4k|16k|64k] [--ias BITS] [--start-level N]\n"
	"             [--s2-format FMT --s2-root GPA [--s2-granule G] [--s2-ias BITS]\n"
	"              [--s2-start-level N]]\n"
	"             [--access r|w|x|rw|rx|rwx] [--priv] [--json] [--trace]\n"
	"             [--addresses FILE] [ADDR ...]\n"
	"  iodp-xlate --example [--json] [--trace] [--save DIR]\n"
	"  iodp-xlate --help\n"
	"\n"
	"Translate each ADDR through the page table at --root, reading the tables from raw\n"
	"memory images with the walker the iodp data path uses.\n"
	"\n"
	"  --mem GPA:FILE      load FILE at guest-physical address GPA (repeatable); with a\n"
	"                      second stage, GPA is in stage 2's output space\n"
	"  --format FMT        x86-64-4l x86-64-5l vtd-ss-3l vtd-ss-4l vtd-ss-5l arm-s1 arm-s2\n"
	"                      mock (the kernel selftest's: 2k pages, 1M blocks, 32 bits)\n"
	"  --root GPA          address of the start-level table (stage 1's input space of\n"
	"                      stage 2 when nested)\n"
	"  --granule G         4k, 16k or 64k; Arm only (x86-64 and VT-d are always 4k)\n"
	"  --ias BITS          input address bits; Arm only, default 48 (x86-64 and VT-d\n"
	"                      fix it: it may be given but must agree)\n"
	"  --start-level N     Arm stage 2 may start lower with concatenated tables; derived\n"
	"                      from --ias and --granule when not given\n"
	"  --s2-format FMT     nest over a second stage: x86-64 over vtd-ss-*, arm-s1 over\n"
	"                      arm-s2\n"
	"  --s2-root GPA       stage 2's start-level table (required with --s2-format)\n"
	"  --s2-granule G, --s2-ias BITS, --s2-start-level N\n"
	"                      as above, for stage 2\n"
	"  --access A          what the request does: r, w, x, rw, rx or rwx (default r)\n"
	"  --priv              a privileged (supervisor, EL1) request; default unprivileged\n"
	"  --addresses FILE    more addresses, one a line; blank lines and # comments are\n"
	"                      ignored; '-' reads standard input\n"
	"  --json              one JSON object a line:\n"
	"                      {\"iova\":\"0x..\",\"ok\":true,\"out\":\"0x..\",\"size\":N,\"perm\":\"rw\"}\n"
	"                      {\"iova\":\"0x..\",\"ok\":false,\"fault\":\"..\",\"stage\":N,\"level\":N}\n"
	"  --trace             print every table entry read before each result (on stderr\n"
	"                      with --json, so stdout stays JSON)\n"
	"  --example           build a small x86-64 guest in memory and translate a few\n"
	"                      addresses (takes only --json, --trace and --save)\n"
	"  --save DIR          with --example: also write its guest RAM to DIR/ram.img and\n"
	"                      print the command line that translates from that image\n"
	"  --help              show this help\n"
	"\n"
	"Numbers are decimal or 0x-prefixed hex.\n"
	"Exit status: 0 all addresses translated, 1 some faulted, 2 bad usage or input.\n";

enum class Opt {
	mem,
	format,
	root,
	granule,
	ias,
	start_level,
	s2_format,
	s2_root,
	s2_granule,
	s2_ias,
	s2_start_level,
	access,
	priv,
	json,
	trace,
	addresses,
	example,
	save,
	help,
	count_,
};

struct OptionSpec {
	const char *name;
	Opt id;
	const char *metavar; ///< nullptr: a flag without a value
	bool repeatable;
};

constexpr OptionSpec kOptions[] = {
	{"--mem", Opt::mem, "GPA:FILE", true},
	{"--format", Opt::format, "FMT", false},
	{"--root", Opt::root, "GPA", false},
	{"--granule", Opt::granule, "4k|16k|64k", false},
	{"--ias", Opt::ias, "BITS", false},
	{"--start-level", Opt::start_level, "N", false},
	{"--s2-format", Opt::s2_format, "FMT", false},
	{"--s2-root", Opt::s2_root, "GPA", false},
	{"--s2-granule", Opt::s2_granule, "4k|16k|64k", false},
	{"--s2-ias", Opt::s2_ias, "BITS", false},
	{"--s2-start-level", Opt::s2_start_level, "N", false},
	{"--access", Opt::access, "r|w|x|rw|rx|rwx", false},
	{"--priv", Opt::priv, nullptr, true},
	{"--json", Opt::json, nullptr, true},
	{"--trace", Opt::trace, nullptr, true},
	{"--addresses", Opt::addresses, "FILE", true},
	{"--example", Opt::example, nullptr, true},
	{"--save", Opt::save, "DIR", false},
	{"--help", Opt::help, nullptr, true},
	{"-h", Opt::help, nullptr, true},
};

const char *option_name(Opt id)
{
	for (const OptionSpec &o : kOptions)
		if (o.id == id)
			return o.name;
	return "?";
}

/** What the user said about one stage; unset fields take the library's defaults. */
struct StageArgs {
	std::optional<Format> format;
	std::optional<uint64_t> root;
	std::optional<unsigned> granule_shift; ///< unset: 4k (mock: its fixed 2k)
	unsigned ias = 0;
	int start_level = -1;

	TableConfig config() const
	{
		TableConfig c;
		c.format = *format;
		c.root = *root;
		c.granule_shift = granule_shift.value_or(*format == Format::mock ? 11 : 12);
		c.ias = ias;
		c.start_level = start_level;
		return c;
	}
};

struct MemArg {
	std::string spec; // as given, for messages
	uint64_t gpa = 0;
	std::string path;
};

/** An address on the command line, or a file of them, in command-line order. */
struct AddressSource {
	bool is_file = false;
	std::string text;
};

struct Args {
	std::vector<MemArg> mems;
	StageArgs s1, s2;
	uint8_t access = kAccessRead;
	bool priv = false;
	OutputMode mode;
	bool example = false;
	std::string save_dir; ///< --example --save DIR
	bool help = false;
	std::vector<AddressSource> addresses;
	bool seen[static_cast<size_t>(Opt::count_)] = {};

	bool given(Opt id) const { return seen[static_cast<size_t>(id)]; }
};

/** Decimal or 0x hex; no sign, no suffix, nothing left over. */
std::optional<uint64_t> parse_number(std::string_view s)
{
	uint64_t v = 0;
	if (parse_u64(s, &v, {.hex = true, .sizes = false}) != NumberError::none)
		return std::nullopt;
	return v;
}

Status parse_value(const OptionSpec &o, std::string_view v, Args &a)
{
	const int vlen = static_cast<int>(v.size());
	const char *vs = v.data();
	auto bad = [&](const char *why) {
		return Status::error(-EINVAL, "{} '{}': {}", o.name, std::string_view(vs, vlen), why);
	};
	StageArgs &st = (o.id >= Opt::s2_format && o.id <= Opt::s2_start_level) ? a.s2 : a.s1;

	switch (o.id) {
	case Opt::mem: {
		const size_t colon = v.find(':');
		if (colon == std::string_view::npos || colon == 0 || colon + 1 == v.size())
			return bad("expected GPA:FILE");
		const std::optional<uint64_t> gpa = parse_number(v.substr(0, colon));
		if (!gpa)
			return bad("the GPA is not a number (decimal or 0x hex)");
		a.mems.push_back({std::string(v), *gpa, std::string(v.substr(colon + 1))});
		return {};
	}
	case Opt::format:
	case Opt::s2_format: {
		st.format = parse_format(v);
		if (!st.format)
			return bad("unknown format (one of x86-64-4l x86-64-5l vtd-ss-3l vtd-ss-4l "
				   "vtd-ss-5l arm-s1 arm-s2 mock)");
		return {};
	}
	case Opt::root:
	case Opt::s2_root:
		st.root = parse_number(v);
		if (!st.root)
			return bad("not a number (decimal or 0x hex)");
		return {};
	case Opt::granule:
	case Opt::s2_granule:
		if (v == "4k" || v == "4K" || v == "4096")
			st.granule_shift = 12;
		else if (v == "16k" || v == "16K" || v == "16384")
			st.granule_shift = 14;
		else if (v == "64k" || v == "64K" || v == "65536")
			st.granule_shift = 16;
		else
			return bad("not a granule (4k, 16k or 64k)");
		return {};
	case Opt::ias:
	case Opt::s2_ias: {
		const std::optional<uint64_t> n = parse_number(v);
		// 0 asks for the default, as in TableConfig; the format checks the rest.
		if (!n || *n > 64)
			return bad("not a number of address bits (0..64)");
		st.ias = static_cast<unsigned>(*n);
		return {};
	}
	case Opt::start_level:
	case Opt::s2_start_level: {
		if (v == "-1") {
			st.start_level = -1;
			return {};
		}
		const std::optional<uint64_t> n = parse_number(v);
		if (!n || *n > 5)
			return bad("not a level (0..5, or -1 to derive it)");
		st.start_level = static_cast<int>(*n);
		return {};
	}
	case Opt::access: {
		uint8_t access = 0;
		for (char c : v) {
			const uint8_t bit = c == 'r' ? kAccessRead : c == 'w' ? kAccessWrite
						   : c == 'x' ? kAccessExec : 0;
			if (bit == 0 || (access & bit))
				return bad("expected r, w, x, rw, rx or rwx");
			access |= bit;
		}
		if (access == 0)
			return bad("expected r, w, x, rw, rx or rwx");
		a.access = access;
		return {};
	}
	case Opt::addresses:
		a.addresses.push_back({true, std::string(v)});
		return {};
	case Opt::save:
		if (v.empty())
			return Status::error(-EINVAL, "--save needs a directory");
		a.save_dir = v;
		return {};
	case Opt::priv:
	case Opt::json:
	case Opt::trace:
	case Opt::example:
	case Opt::help:
	case Opt::count_:
		break;
	}
	return {};
}

/** getopt_long's val for kOptions[i]: above every character a short option could be. */
constexpr int kLongVal = 256;

/** What a flag (an option without a value) sets. */
void set_flag(Opt id, Args &a)
{
	switch (id) {
	case Opt::priv: a.priv = true; break;
	case Opt::json: a.mode.json = true; break;
	case Opt::trace: a.mode.trace = true; break;
	case Opt::example: a.example = true; break;
	default: a.help = true; break;
	}
}

/**
 * Parse argv into @p a with getopt_long, as DPDK's apps do; stops early at --help.
 * Addresses and --addresses files keep their command-line order ("-" mode: operands come
 * back in place); getopt's own messages are off, ours name the option.
 */
Status parse_args(int argc, char **argv, Args &a)
{
	std::vector<option> longopts;
	for (size_t i = 0; i < std::size(kOptions); i++)
		if (kOptions[i].name[1] == '-')
			longopts.push_back({kOptions[i].name + 2,
					    kOptions[i].metavar ? required_argument : no_argument,
					    nullptr, kLongVal + static_cast<int>(i)});
	longopts.push_back({});
	// The spec of a val getopt_long returned (or put in optopt).
	auto spec_of = [](int val) -> const OptionSpec * {
		if (val >= kLongVal && val < kLongVal + static_cast<int>(std::size(kOptions)))
			return &kOptions[val - kLongVal];
		return nullptr;
	};
	// An argv word up to its '=': how the user wrote the option.
	auto written = [](const char *word) {
		const std::string_view w = word;
		return w.starts_with("--") ? w.substr(0, w.find('=')) : w;
	};
	opterr = 0;
	optind = 0; // glibc: 0 starts a fresh scan (iodp-xlate parses once, tests may not)
	for (;;) {
		// Short options are ours: -h is the only one, alone (getopt would take -hx as
		// -h -x). getopt_long gets no short options, so it stops only between words.
		if (const int next = std::max(optind, 1); next < argc) {
			const std::string_view w = argv[next];
			if (w.size() >= 2 && w[0] == '-' && w[1] != '-') {
				if (w != "-h")
					return Status::error(-EINVAL, "unknown option '{}'", w);
				a.help = true;
				return {};
			}
		}
		const int c = getopt_long(argc, argv, "-:", longopts.data(), nullptr);
		if (c == -1)
			break;
		if (c == 1) { // an operand, in place
			a.addresses.push_back({false, optarg});
			continue;
		}
		if (c == '?') {
			if (const OptionSpec *o = spec_of(optopt))
				return Status::error(-EINVAL, "{} takes no value", o->name);
			return Status::error(-EINVAL, "unknown option '{}'", written(argv[optind - 1]));
		}
		if (c == ':') {
			const OptionSpec *o = spec_of(optopt);
			return Status::error(-EINVAL, "{} needs a value ({})", o->name, o->metavar);
		}
		const OptionSpec *o = spec_of(c);
		// getopt_long takes unambiguous abbreviations (--form); iodp-xlate never has, so
		// scripts keep meaning what they say when an option is added.
		const bool inline_value = o->metavar != nullptr && optarg != argv[optind - 1];
		const char *word = argv[optind - (o->metavar != nullptr && !inline_value ? 2 : 1)];
		if (written(word) != o->name)
			return Status::error(-EINVAL, "unknown option '{}'", written(word));
		bool &seen = a.seen[static_cast<size_t>(o->id)];
		if (seen && !o->repeatable)
			return Status::error(-EINVAL, "{} given more than once", o->name);
		seen = true;
		if (o->metavar == nullptr) {
			set_flag(o->id, a);
			if (a.help)
				return {};
			continue;
		}
		if (Status s = parse_value(*o, optarg, a); !s)
			return s;
	}
	// After "--": the rest are addresses.
	for (int i = optind; i < argc; i++)
		a.addresses.push_back({false, argv[i]});
	return {};
}

/** The combinations parse_args cannot judge one option at a time. */
Status check_args(const Args &a)
{
	if (a.example) {
		for (const OptionSpec &o : kOptions)
			if (a.given(o.id) && o.id != Opt::example && o.id != Opt::json &&
			    o.id != Opt::trace && o.id != Opt::save)
				return Status::error(-EINVAL, "--example builds its own guest and "
						     "addresses; it takes only --json, --trace and "
						     "--save, not {}", o.name);
		if (!a.addresses.empty())
			return Status::error(-EINVAL, "--example translates its own addresses, "
					     "not '{}'", a.addresses.front().text);
		return {};
	}
	if (a.given(Opt::save))
		return Status::error(-EINVAL, "--save writes --example's guest RAM; it goes with "
				     "--example");
	if (a.mems.empty())
		return Status::error(-EINVAL, "missing required option --mem GPA:FILE (the "
				     "memory holding the tables)");
	if (!a.s1.format)
		return Status::error(-EINVAL, "missing required option --format FMT");
	if (!a.s1.root)
		return Status::error(-EINVAL, "missing required option --root GPA");
	if (!a.s2.format) {
		for (Opt id : {Opt::s2_root, Opt::s2_granule, Opt::s2_ias, Opt::s2_start_level})
			if (a.given(id))
				return Status::error(-EINVAL, "{} needs --s2-format (it describes "
						     "a second stage)", option_name(id));
	} else if (!a.s2.root) {
		return Status::error(-EINVAL, "--s2-format needs --s2-root GPA (stage 2's "
				     "start-level table)");
	}
	if (a.addresses.empty())
		return Status::error(-EINVAL, "no addresses to translate (give ADDR arguments or "
				     "--addresses FILE)");
	return {};
}

/** Closes a descriptor on every way out. */
struct Fd {
	int fd = -1;
	~Fd()
	{
		if (fd >= 0)
			close(fd);
	}
};

/** A memory image: a regular file mapped (pages cost memory once read), or a pipe's bytes. */
struct Image {
	GuestRam ram;          // a pipe's bytes
	std::byte *map = nullptr; // a regular file, mapped copy-on-write
	uint64_t size = 0;     // bytes of the file; the region is exactly this long

	Image() = default;
	Image(Image &&o) noexcept
		: ram(std::move(o.ram)), map(std::exchange(o.map, nullptr)), size(o.size) {}
	Image &operator=(Image &&) = delete;
	~Image()
	{
		if (map != nullptr)
			munmap(map, size);
	}
	std::byte *data() { return map != nullptr ? map : ram.data(); }
};

/** More than this from a pipe is refused: a file of any size is mapped instead. */
constexpr uint64_t kMaxStreamBytes = 1ull << 30;

Result<Image> load_image(const std::string &path)
{
	Fd f{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
	if (f.fd < 0)
		return Status::error(-errno, "cannot open '{}': {}", path,
				     std::strerror(errno));
	struct stat st;
	if (fstat(f.fd, &st) != 0)
		return Status::error(-errno, "cannot stat '{}': {}", path,
				     std::strerror(errno));
	if (S_ISDIR(st.st_mode))
		return Status::error(-EISDIR, "'{}' is a directory", path);
	Image img;
	if (S_ISREG(st.st_mode) && st.st_size > 0) {
		// Mapped, not read: a 2 GiB sparse image costs what the walks touch. Private and
		// writable, so accessed/dirty updates never reach the file.
		img.size = static_cast<uint64_t>(st.st_size);
		void *p = mmap(nullptr, img.size, PROT_READ | PROT_WRITE, MAP_PRIVATE, f.fd, 0);
		if (p == MAP_FAILED)
			return Status::error(-errno, "cannot map '{}': {}", path,
					     std::strerror(errno));
		img.map = static_cast<std::byte *>(p);
		return img;
	}
	if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode) && !S_ISREG(st.st_mode))
		return Status::error(-EINVAL, "'{}' is not a regular file or a pipe (an image "
				     "needs a size; a device such as /dev/zero has none)",
				     path);
	// A pipe (<(...)), or a regular file that claims size 0 (as in /proc): read whole, up
	// to kMaxStreamBytes.
	std::vector<std::byte> staged;
	for (;;) {
		if (img.size == kMaxStreamBytes)
			return Status::error(-EFBIG, "'{}' gives more than {} MiB; save it to a "
					     "file, which is mapped rather than read", path,
					     kMaxStreamBytes >> 20);
		staged.resize(std::min<uint64_t>(img.size + (1 << 16), kMaxStreamBytes));
		std::byte *dst = staged.data() + img.size;
		const size_t room = staged.size() - img.size;
		const ssize_t n = read(f.fd, dst, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return Status::error(-errno, "cannot read '{}': {}", path,
					     std::strerror(errno));
		if (n == 0)
			break;
		img.size += static_cast<uint64_t>(n);
	}
	if (img.size == 0)
		return Status::error(-EINVAL, "'{}' is empty", path);
	Result<GuestRam> ram = GuestRam::allocate(img.size, GuestRam::Source::anonymous);
	if (!ram)
		return Status::error(ram.status().code(), "'{}': {}", path,
				     ram.status().message());
	img.ram = std::move(*ram);
	std::memcpy(img.ram.data(), staged.data(), img.size);
	return img;
}

Status read_address_file(const std::string &path, uint8_t access,
			 std::vector<WalkRequest> &reqs)
{
	const bool is_stdin = path == "-";
	std::FILE *f = is_stdin ? stdin : std::fopen(path.c_str(), "re");
	if (f == nullptr)
		return Status::error(-errno, "--addresses '{}': cannot open: {}", path,
				     std::strerror(errno));
	char *line = nullptr;
	size_t cap = 0;
	Status status;
	for (unsigned lineno = 1; getline(&line, &cap, f) >= 0; lineno++) {
		std::string_view s = line;
		s = s.substr(0, s.find('#'));
		const size_t first = s.find_first_not_of(" \t\r\n");
		if (first == s.npos)
			continue;
		s = s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1);
		const std::optional<uint64_t> iova = parse_number(s);
		if (!iova) {
			status = Status::error(-EINVAL, "--addresses '{}' line {}: '{}' is not an "
					       "address (decimal or 0x hex)", path, lineno,
					       s);
			break;
		}
		reqs.push_back(walk_request(*iova, access));
	}
	if (status && std::ferror(f))
		status = Status::error(-EIO, "--addresses '{}': read error", path);
	std::free(line);
	if (!is_stdin)
		std::fclose(f);
	return status;
}

int fail(const Status &s, bool hint)
{
	std::fprintf(stderr, "iodp-xlate: %s\n", s.message().c_str());
	if (hint)
		std::fprintf(stderr, "Try 'iodp-xlate --help' for more information.\n");
	return kExitUsage;
}

int run(int argc, char **argv)
{
	Args a;
	if (Status s = parse_args(argc, argv, a); !s)
		return fail(s, true);
	if (a.help) {
		std::fputs(kUsage, stdout);
		return std::fflush(stdout) == 0 ? kExitOk : kExitUsage;
	}
	if (Status s = check_args(a); !s)
		return fail(s, true);
	if (a.example)
		return run_example(a.mode, a.save_dir);

	const uint8_t access = a.access | (a.priv ? kAccessPriv : 0);
	std::vector<WalkRequest> reqs;
	for (const AddressSource &src : a.addresses) {
		if (src.is_file) {
			if (Status s = read_address_file(src.text, access, reqs); !s)
				return fail(s, false);
			continue;
		}
		const std::optional<uint64_t> iova = parse_number(src.text);
		if (!iova)
			return fail(Status::error(-EINVAL, "address '{}' is not a number (decimal or "
						  "0x hex)", src.text), true);
		reqs.push_back(walk_request(*iova, access));
	}

	GuestMemory mem;
	std::vector<Image> images;
	images.reserve(a.mems.size());
	for (const MemArg &m : a.mems) {
		Result<Image> img = load_image(m.path);
		if (!img)
			return fail(Status::error(img.status().code(), "--mem {}: {}", m.spec,
						  img.status().message()), false);
		if (Status s = mem.add_region(m.gpa, img->size, img->data()); !s)
			return fail(Status::error(s.code(), "--mem {}: {}", m.spec,
						  s.message()), false);
		images.push_back(std::move(*img));
	}

	const TableConfig s1 = a.s1.config();
	std::optional<TableConfig> s2;
	if (a.s2.format)
		s2 = a.s2.config();
	Result<Translation> xlat = make_translation(mem, s1, s2 ? &*s2 : nullptr);
	if (!xlat)
		return fail(xlat.status(), false);

	const size_t faults = translate_and_print(*xlat, reqs, a.mode);
	if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
		std::fprintf(stderr, "iodp-xlate: writing the results failed: %s\n",
			     std::strerror(errno));
		return kExitUsage;
	}
	return faults == 0 ? kExitOk : kExitFault;
}

} // namespace

} // namespace iodp::xlate

int main(int argc, char **argv)
{
	return iodp::xlate::run(argc, argv);
}
