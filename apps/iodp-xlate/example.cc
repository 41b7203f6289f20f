/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * --example: a guest built in memory, so a first run needs no image files. It shows a hit
 * of each x86-64 page size and the three faults people meet first.
 */
#include "xlate.h"

#include <iodp/mem.h>
#include <iodp/pgtable_builder.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

namespace iodp::xlate {

using namespace pgtable;

namespace {

constexpr uint64_t kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024;
constexpr uint64_t kRamSize = 8 * kMiB;
constexpr uint64_t kPoolBase = 1 * kMiB, kPoolSize = 1 * kMiB;

struct Mapping {
	uint64_t iova, oa, size;
	uint8_t perm;
	const char *what;
};

// Outputs need no backing: a walk reads tables, never the pages they map.
constexpr Mapping kMappings[] = {
	{0x7f0000401000, 0x5000, 4 * kKiB, kMapRead | kMapWrite | kMapUser,
	 "4 KiB page, user read-write"},
	{0x7f0000600000, 0x600000, 2 * kMiB, kMapRead | kMapUser, "2 MiB page, user read-only"},
	{0x40000000, 4 * kGiB, 1 * kGiB, kMapRead | kMapWrite | kMapExec,
	 "1 GiB page, supervisor-only read-write-execute, output beyond guest RAM"},
};

struct Probe {
	uint64_t iova;
	uint8_t access;
	FaultKind expect;
	const char *note;
};

constexpr Probe kProbes[] = {
	{0x7f0000401234, kAccessRead | kAccessWrite, FaultKind::none,
	 "unprivileged read-write inside the 4 KiB page"},
	{0x7f00006abcde, kAccessRead, FaultKind::none, "unprivileged read inside the 2 MiB page"},
	{0x40123456, kAccessRead | kAccessExec | kAccessPriv, FaultKind::none,
	 "privileged read-execute inside the 1 GiB page"},
	{0x7f0000800000, kAccessRead, FaultKind::not_present,
	 "nothing mapped here: not-present at the level where the walk stops (intended)"},
	{0x7f0000600000, kAccessWrite, FaultKind::permission,
	 "unprivileged write to the read-only 2 MiB page: permission (intended)"},
	{0x0000800000000000, kAccessRead, FaultKind::address_size,
	 "non-canonical (bit 47 set, bits 63..48 clear): address-size (intended)"},
};

/** Explanations go to stdout, or to stderr when stdout must hold nothing but JSON. */
[[gnu::format(printf, 2, 3)]] void say(const OutputMode &mode, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	std::vfprintf(mode.json ? stderr : stdout, fmt, ap);
	va_end(ap);
}

int broken(const char *what, const Status &s)
{
	std::fprintf(stderr, "iodp-xlate --example: %s: %s\n", what, s.message().c_str());
	return kExitUsage;
}

/** Write the guest RAM image and say how to translate from it; an exit status or -1. */
int save_image(const OutputMode &mode, const std::string &dir, const GuestRam &ram,
	       uint64_t root)
{
	const std::string path = dir + "/ram.img";
	FILE *f = std::fopen(path.c_str(), "wb");
	if (f == nullptr) {
		std::fprintf(stderr, "iodp-xlate --example --save: %s: %s\n", path.c_str(),
			     std::strerror(errno));
		return kExitUsage;
	}
	const bool written = std::fwrite(ram.data(), 1, kRamSize, f) == kRamSize;
	const int err = errno;
	if (std::fclose(f) != 0 || !written) {
		std::fprintf(stderr, "iodp-xlate --example --save: writing %s: %s\n", path.c_str(),
			     std::strerror(written ? errno : err));
		return kExitUsage;
	}
	say(mode, "Wrote %s (%llu MiB of guest RAM, loaded at GPA 0x0). Translate from it:\n"
	    "  iodp-xlate --mem 0:%s --format x86-64-4l --root %s 0x7f0000401234 "
	    "0x7f00006abcde\n\n", path.c_str(), static_cast<unsigned long long>(kRamSize / kMiB),
	    path.c_str(), hex(root).c_str());
	return -1;
}

} // namespace

int run_example(const OutputMode &mode, const std::string &save_dir)
{
	// Ordinary pages: 8 MiB gains nothing from hugepages, and on a host without free ones
	// the hugetlb fallback maps fine but faults (SIGBUS) on first touch.
	Result<GuestRam> ram = GuestRam::allocate(kRamSize, GuestRam::Source::anonymous);
	if (!ram)
		return broken("guest RAM", ram.status());
	GuestMemory mem;
	if (Status s = mem.add_region(0, kRamSize, ram->data()); !s)
		return broken("guest memory", s);

	TablePool pool(kPoolBase, ram->data() + kPoolBase, kPoolSize, 4 * kKiB);
	TableConfig config;
	config.format = Format::x86_64_4l;
	Result<TableBuilder> table = TableBuilder::create(config, &pool);
	if (!table)
		return broken("table", table.status());
	for (const Mapping &m : kMappings)
		if (Status s = table->map(m.iova, m.oa, m.size, m.perm); !s)
			return broken("map", s);
	Result<Translation> xlat = make_translation(mem, table->config());
	if (!xlat)
		return broken("translation", xlat.status());

	say(mode, "iodp-xlate --example: an x86-64-4l page table built in %llu MiB of guest RAM "
	    "at GPA 0x0 (%s memory),\nits %llu table pages from a pool at GPA %s, root %s. "
	    "It maps:\n", static_cast<unsigned long long>(kRamSize / kMiB),
	    ram_backing_name(ram->backing()), static_cast<unsigned long long>(pool.pages_in_use()),
	    hex(kPoolBase).c_str(), hex(table->root()).c_str());
	for (const Mapping &m : kMappings)
		say(mode, "  %-16s -> %-12s %s\n", hex(m.iova).c_str(), hex(m.oa).c_str(), m.what);
	if (!save_dir.empty())
		if (int rc = save_image(mode, save_dir, *ram, table->root()); rc >= 0)
			return rc;
	size_t expected_faults = 0;
	for (const Probe &p : kProbes)
		expected_faults += p.expect != FaultKind::none;
	say(mode, "Translating %zu addresses; the last %zu fault on purpose, to show fault "
	    "records.\n(With the RAM in a file: iodp-xlate --mem 0:ram.img --format x86-64-4l "
	    "--root %s ADDR ...)\n\n", std::size(kProbes), expected_faults,
	    hex(table->root()).c_str());

	std::vector<WalkRequest> reqs;
	std::vector<std::string> notes;
	for (const Probe &p : kProbes) {
		reqs.push_back(walk_request(p.iova, p.access));
		notes.emplace_back(p.note);
	}
	const size_t faults = translate_and_print(*xlat, reqs, mode, notes);

	// The example doubles as a smoke test: each walk must end as the note says.
	int status = kExitOk;
	for (const Probe &p : kProbes) {
		const WalkResult r = walk(*xlat, p.iova, p.access);
		if (r.fault != p.expect) {
			std::fprintf(stderr, "iodp-xlate --example: %s gave %s, expected %s\n",
				     hex(p.iova).c_str(), fault_name(r.fault).data(),
				     fault_name(p.expect).data());
			status = kExitFault;
		}
	}
	if (status == kExitOk)
		say(mode, "\n%zu of %zu faulted, as intended: the example worked.\n", faults,
		    std::size(kProbes));
	return std::fflush(stdout) == 0 ? status : kExitUsage;
}

} // namespace iodp::xlate
