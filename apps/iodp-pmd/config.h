/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * iodp-pmd's configuration file: INI-style sections a person writes by hand.
 *
 *   [engine]
 *   workers = 2              # or: lcores = 1,2
 *   burst = 64
 *   iotlb_entries = 32768
 *   walk_entries = 2048
 *   serial_walks = no
 *
 *   [device emul0]           # one section per device; its keys are the driver's devargs
 *   profile = nic
 *   format = vtd
 *
 * Every error names the file, the line and the key.
 */

#include <iodp/dev.h>
#include <iodp/status.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace iodp::pmd {

struct DeviceConf {
	std::string name;
	unsigned line = 0; ///< of its [device NAME] header
	struct Arg {
		std::string key, value;
		unsigned line;
	};
	std::vector<Arg> args;

	/** The section's key = value pairs, in order, for dev::DevArgs::make(). */
	std::vector<std::pair<std::string, std::string>> pairs() const;
	/**
	 * Prefix @p message with "FILE:LINE: [device NAME] ": the line of @p key (the key a
	 * driver blamed, dev::DevArgs::blamed()), or the section's when none.
	 */
	std::string locate(const std::string &source, const std::string &key,
			   const std::string &message) const;
};

struct Config {
	std::string source = "built-in default";
	unsigned workers = 0;          ///< 0: every EAL worker lcore
	std::vector<unsigned> lcores;  ///< explicit worker lcores (exclusive with workers)
	uint16_t burst = 64;
	uint32_t iotlb_entries = 32768;
	uint32_t walk_entries = 2048;
	bool serial_walks = false;
	std::vector<DeviceConf> devices;
};

/**
 * Parse @p text (from @p source, for messages). Device names must name a driver in
 * @p drivers and their keys must be that driver's; values are checked when the device is
 * created (DeviceConf::locate() points such errors at their line).
 */
Result<Config> parse_config(std::string_view text, const std::string &source,
			    const dev::Registry &drivers);

/** Configuration files larger than this are refused (a device section is a few lines). */
inline constexpr size_t kMaxConfigBytes = 1u << 20;

/** Read and parse @p path (at most kMaxConfigBytes; a pipe is fine). */
Result<Config> load_config(const std::string &path, const dev::Registry &drivers);

/** The configuration used without a file (printed by --print-config). */
extern const char kDefaultConfig[];

} // namespace iodp::pmd
