/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * iodp-xlate internals shared by the command-line translator (main.cc) and --example
 * (example.cc): result and trace printing, so both speak exactly the same output format.
 */

#include <iodp/pgtable.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace iodp::xlate {

/** Exit statuses; scripts and tests rely on them. */
inline constexpr int kExitOk = 0;
inline constexpr int kExitFault = 1;
inline constexpr int kExitUsage = 2;

struct OutputMode {
	bool json = false;  ///< one JSON object a line on stdout
	bool trace = false; ///< every entry read, before each result (stderr with json)
};

/** "0x1a2b": lowercase hex, no leading zeros; every address in the output looks like this. */
std::string hex(uint64_t value);

/**
 * Translate @p reqs and print one result line each on stdout. Without tracing the requests
 * go through walk_burst(), the data path's entry point; with it, through walk() one at a
 * time (the tracer needs it), which gives the same results by the library's contract.
 * @p notes, when not empty, holds a line per request that text mode prints before it.
 * Returns how many requests faulted.
 */
size_t translate_and_print(const pgtable::Translation &xlat,
			   std::span<const pgtable::WalkRequest> reqs, const OutputMode &mode,
			   std::span<const std::string> notes = {});

/** Build a small x86-64 guest in memory, translate a few addresses; returns the exit status. */
/** --example; with @p save_dir, also write its RAM image there (ram.img). */
int run_example(const OutputMode &mode, const std::string &save_dir);

} // namespace iodp::xlate
