/* SPDX-License-Identifier: BSD-3-Clause */
/* Result lines (text and JSON) and walk traces. */
#include "xlate.h"

#include <cinttypes>
#include <cstdio>
#include <iterator>
#include <vector>

namespace iodp::xlate {

using namespace pgtable;

namespace {

/** "4 KiB", "2 MiB": the largest unit that divides the size exactly. */
std::string size_name(uint64_t size)
{
	static const char *const kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	size_t unit = 0;
	while (unit + 1 < std::size(kUnits) && size >= 1024 && size % 1024 == 0) {
		size /= 1024;
		unit++;
	}
	return std::to_string(size) + " " + kUnits[unit];
}

void print_result(uint64_t iova, const WalkResult &r, bool json)
{
	const std::string in = hex(iova);
	const std::string_view fault = fault_name(r.fault);
	if (json) {
		// Every string printed is a hex number or a fixed name: nothing needs escaping.
		if (r.ok())
			std::printf("{\"iova\":\"%s\",\"ok\":true,\"out\":\"%s\",\"size\":%" PRIu64
				    ",\"perm\":\"%s\"}\n", in.c_str(), hex(r.out).c_str(),
				    r.page_size, perm_letters(r.perm).c_str());
		else
			std::printf("{\"iova\":\"%s\",\"ok\":false,\"fault\":\"%.*s\",\"stage\":%d,"
				    "\"level\":%d}\n", in.c_str(), static_cast<int>(fault.size()),
				    fault.data(), r.stage, r.level);
		return;
	}
	if (r.ok())
		std::printf("%s -> %s (%s page, %s)\n", in.c_str(), hex(r.out).c_str(),
			    size_name(r.page_size).c_str(), perm_letters(r.perm).c_str());
	else
		std::printf("%s: fault %.*s at stage %d level %d\n", in.c_str(),
			    static_cast<int>(fault.size()), fault.data(), r.stage, r.level);
}

class TracePrinter final : public WalkTracer {
public:
	explicit TracePrinter(std::FILE *out) : out_(out) {}

	void step(const TraceStep &s) override
	{
		const std::string what = describe_entry(s.format, s.entry, s.height,
							s.granule_shift);
		// A stage-2 step of a nested walk says what it translates for stage 1.
		const char *role = !s.for_stage1 ? ""
				   : s.for_output ? " (stage-1 output)"
						  : " (stage-1 table)";
		std::fprintf(out_, "  stage %d level %d%s: in %s table %s index %" PRIu64
			     " entry 0x%016llx  %s\n", s.stage, s.level, role, hex(s.input).c_str(),
			     hex(s.table).c_str(), s.index, static_cast<unsigned long long>(s.entry),
			     what.c_str());
	}

private:
	std::FILE *out_;
};

} // namespace

std::string hex(uint64_t value)
{
	char buf[24];
	std::snprintf(buf, sizeof(buf), "0x%" PRIx64, value);
	return buf;
}

size_t translate_and_print(const Translation &xlat, std::span<const WalkRequest> reqs,
			   const OutputMode &mode, std::span<const std::string> notes)
{
	auto note = [&](size_t i) {
		if (!mode.json && i < notes.size())
			std::printf("# %s\n", notes[i].c_str());
	};
	size_t faults = 0;
	if (mode.trace) {
		// JSON consumers read stdout line by line: keep the trace out of their way.
		std::FILE *trace_out = mode.json ? stderr : stdout;
		TracePrinter tracer(trace_out);
		for (size_t i = 0; i < reqs.size(); i++) {
			note(i);
			if (mode.json)
				std::fprintf(stderr, "trace %s:\n", hex(reqs[i].iova).c_str());
			const WalkResult r = walk(xlat, reqs[i].iova, reqs[i].access, &tracer);
			print_result(reqs[i].iova, r, mode.json);
			faults += !r.ok();
		}
		return faults;
	}
	std::vector<WalkResult> results(reqs.size());
	walk_burst(xlat, reqs.data(), results.data(), reqs.size());
	for (size_t i = 0; i < reqs.size(); i++) {
		note(i);
		print_result(reqs[i].iova, results[i], mode.json);
		faults += !results[i].ok();
	}
	return faults;
}

} // namespace iodp::xlate
