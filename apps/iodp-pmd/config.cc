/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The configuration file. DPDK's rte_cfgfile reads the same INI shape but keeps no line
 * numbers, and a message that cannot say which line is wrong is half a message; hence
 * this small parser.
 */
#include "config.h"

#include <iodp/number.h>
#include <iodp/text.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace iodp::pmd {

const char kDefaultConfig[] =
	"# iodp-pmd's built-in default: four emulated devices, each with its own traffic\n"
	"# shape and table layout, every answer checked against the device's own truth;\n"
	"# workers on every EAL worker lcore.\n"
	"[engine]\n"
	"burst = 64\n"
	"iotlb_entries = 32768\n"
	"walk_entries = 2048\n"
	"\n"
	"# A NIC: descriptor reads and 2 KiB buffer writes, two queues, VT-d paging tables.\n"
	"[device emul0]\n"
	"profile = nic\n"
	"format = vtd\n"
	"queues = 2\n"
	"ws = 64M\n"
	"verify = 1\n"
	"\n"
	"# NVMe: PRP lists and 32-page transfers through a guest's VT-d first stage (nested).\n"
	"[device emul1]\n"
	"profile = nvme\n"
	"format = vtd-nested\n"
	"ws = 64M\n"
	"verify = 1\n"
	"\n"
	"# Skewed reuse over an SMMUv3 stage 1 (STE -> CD -> tables), 0.5% expected faults.\n"
	"[device emul2]\n"
	"profile = zipf\n"
	"format = smmu-nested\n"
	"ws = 256M\n"
	"faults = 5\n"
	"verify = 1\n"
	"\n"
	"# Strict DMA API: map, one DMA, unmap + invalidate, remap elsewhere.\n"
	"[device emul3]\n"
	"profile = strict\n"
	"format = smmu\n"
	"ws = 16M\n"
	"verify = 1\n";

namespace {

std::string_view trim(std::string_view s)
{
	const char *ws = " \t\r";
	const size_t b = s.find_first_not_of(ws);
	if (b == std::string_view::npos)
		return {};
	return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

/** 'text', built without operator+ (GCC 12 -O3 warns falsely on "'" + std::string). */
std::string quoted(std::string_view text)
{
	std::string q(1, '\'');
	q.append(text);
	q += '\'';
	return q;
}

/** "FILE:LINE: message"; whatever the file said is quoted printable(). */
Status at(const std::string &source, unsigned line, const std::string &msg)
{
	return Status::error(-EINVAL, "{}:{}: {}", printable(source).c_str(), line,
			     printable(msg).c_str());
}

/** Decimal (a config file's numbers have no 0x and no size suffix) in [min, max]. */
bool parse_uint(std::string_view v, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t x = 0;
	if (parse_u64(v, &x, {.hex = false, .sizes = false}) != NumberError::none || x < min ||
	    x > max)
		return false;
	*out = x;
	return true;
}

const char *const kEngineKeys =
	"workers, lcores, burst, iotlb_entries, walk_entries, serial_walks";

Status engine_key(Config &c, const std::string &source, unsigned line, const std::string &key,
		  const std::string &value)
{
	uint64_t n = 0;
	if (key == "workers") {
		if (!parse_uint(value, 1, 128, &n))
			return at(source, line, "[engine] workers = " + value + ": expected 1 to 128");
		c.workers = static_cast<unsigned>(n);
	} else if (key == "lcores") {
		std::string_view rest = value;
		c.lcores.clear();
		while (!rest.empty()) {
			const size_t comma = rest.find(',');
			if (!parse_uint(trim(rest.substr(0, comma)), 0, 1023, &n))
				return at(source, line, "[engine] lcores = " + value + ": expected "
					  "lcore ids separated by commas, such as 1,2,3");
			c.lcores.push_back(static_cast<unsigned>(n));
			rest = comma == std::string_view::npos ? std::string_view{}
							       : rest.substr(comma + 1);
		}
		if (c.lcores.empty())
			return at(source, line, "[engine] lcores: no lcore given");
	} else if (key == "burst") {
		if (!parse_uint(value, 1, 512, &n))
			return at(source, line, "[engine] burst = " + value + ": expected 1 to 512");
		c.burst = static_cast<uint16_t>(n);
	} else if (key == "iotlb_entries" || key == "walk_entries") {
		if (!parse_uint(value, 64, 1u << 24, &n))
			return at(source, line, "[engine] " + key + " = " + value + ": expected 64 "
				  "to 16777216 (rounded up to a power of two)");
		(key == "iotlb_entries" ? c.iotlb_entries : c.walk_entries) =
			static_cast<uint32_t>(n);
	} else if (key == "serial_walks") {
		if (!dev::parse_bool(value, &c.serial_walks))
			return at(source, line, "[engine] serial_walks = " + value + ": expected "
				  "yes or no");
	} else {
		return at(source, line, "[engine]: unknown key '" + key + "' (known: " +
					kEngineKeys + ")");
	}
	return {};
}

} // namespace

std::vector<std::pair<std::string, std::string>> DeviceConf::pairs() const
{
	std::vector<std::pair<std::string, std::string>> out;
	for (const Arg &a : args)
		out.emplace_back(a.key, a.value);
	return out;
}

std::string DeviceConf::locate(const std::string &source, const std::string &key,
			       const std::string &message) const
{
	unsigned line = this->line;
	for (const Arg &a : args)
		if (a.key == key) {
			line = a.line;
			break;
		}
	return printable(source) + ":" + std::to_string(line) + ": [device " + name + "] " +
	       printable(message);
}

Result<Config> parse_config(std::string_view text, const std::string &source,
			    const dev::Registry &drivers)
{
	Config c;
	c.source = source;
	enum class Section { none, engine, device } section = Section::none;
	const dev::Driver *drv = nullptr;
	bool engine_section = false;
	std::vector<std::string> engine_keys;
	unsigned line_no = 0;
	while (!text.empty()) {
		const size_t nl = text.find('\n');
		std::string_view line = text.substr(0, nl);
		text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
		line_no++;
		// A NUL would cut a value short where it becomes a C string; other control
		// characters have no business in a file people write (tabs and CR excepted).
		for (const char ch : line) {
			const auto c = static_cast<unsigned char>(ch);
			if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) {
				char msg[80];
				std::snprintf(msg, sizeof(msg), "a control character (0x%02x): "
					      "configuration files are text", c);
				return at(source, line_no, msg);
			}
		}
		const size_t hash = line.find('#');
		line = trim(line.substr(0, hash));
		if (line.empty())
			continue;
		if (line.front() == '[') {
			if (line.back() != ']')
				return at(source, line_no, "section header '" + std::string(line) +
							   "' has no closing ']'");
			const std::string_view inner = trim(line.substr(1, line.size() - 2));
			if (inner == "engine") {
				if (engine_section)
					return at(source, line_no, "a second [engine] section");
				engine_section = true;
				section = Section::engine;
				continue;
			}
			if (inner.substr(0, 7) != "device " && inner.substr(0, 7) != "device\t")
				return at(source, line_no, "unknown section [" + std::string(inner) +
							   "] (sections: [engine], [device NAME])");
			const std::string name(trim(inner.substr(7)));
			bool word = !name.empty();
			for (const char ch : name)
				word = word && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_');
			if (!word)
				return at(source, line_no, "[device " + name + "]: a device name is "
					  "letters, digits and '_', such as emul0 or ipc0");
			for (const DeviceConf &d : c.devices)
				if (d.name == name)
					return at(source, line_no, "[device " + name + "] again (first at "
						  "line " + std::to_string(d.line) + ")");
			drv = drivers.driver_of(name);
			if (drv == nullptr)
				return at(source, line_no, "[device " + name + "]: no driver by that name "
					  "(a device is a driver's name and a number; drivers: " +
					  drivers.names() + ")");
			c.devices.push_back(DeviceConf{name, line_no, {}});
			section = Section::device;
			continue;
		}
		const size_t eq = line.find('=');
		if (eq == std::string_view::npos)
			return at(source, line_no, quoted(line) + ": expected key = value");
		const std::string key(trim(line.substr(0, eq)));
		const std::string value(trim(line.substr(eq + 1)));
		if (key.empty())
			return at(source, line_no, quoted(line) + ": no key before '='");
		if (value.empty())
			return at(source, line_no, key + ": no value after '='");
		if (section == Section::none)
			return at(source, line_no, key + ": a key outside any section (start with "
				  "[engine] or [device NAME])");
		if (value.find(',') != std::string::npos && section == Section::device)
			return at(source, line_no, key + " = " + value + ": a device value cannot "
				  "hold ','");
		if (section == Section::engine) {
			for (const std::string &k : engine_keys)
				if (k == key)
					return at(source, line_no, "[engine] " + key + ": given twice");
			engine_keys.push_back(key);
			Status s = engine_key(c, source, line_no, key, value);
			if (!s.ok())
				return s;
			continue;
		}
		DeviceConf &d = c.devices.back();
		if (!drv->takes(key))
			return at(source, line_no, "[device " + d.name + "]: unknown key '" + key +
						   "' for " + drv->name + " devices (known: " +
						   drv->key_list() + ")");
		for (const DeviceConf::Arg &a : d.args)
			if (a.key == key)
				return at(source, line_no, "[device " + d.name + "] " + key + ": given "
					  "twice (first at line " + std::to_string(a.line) + ")");
		d.args.push_back({key, value, line_no});
	}
	if (c.workers != 0 && !c.lcores.empty())
		return Status::error(-EINVAL, "{}: [engine] gives both workers and lcores; give one",
				     source);
	if (c.devices.empty())
		return Status::error(-EINVAL, "{}: no [device NAME] section: there is nothing to "
				     "serve", source);
	return c;
}

Result<Config> load_config(const std::string &path, const dev::Registry &drivers)
{
	const std::string shown = printable(path);
	const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return Status::error(-errno, "{}: cannot read the configuration: {}", shown,
				     std::strerror(errno));
	// Read at most one byte more than the limit: /dev/zero or a runaway pipe is refused
	// instead of read until memory runs out.
	std::string text(kMaxConfigBytes + 1, '\0');
	size_t got = 0;
	while (got < text.size()) {
		const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			const int err = errno;
			::close(fd);
			return Status::error(-err, "{}: cannot read the configuration: {}",
					     shown, std::strerror(err));
		}
		if (n == 0)
			break;
		got += static_cast<size_t>(n);
	}
	::close(fd);
	if (got > kMaxConfigBytes)
		return Status::error(-EFBIG, "{}: the configuration is larger than {} KiB; is it "
				     "the right file?", shown, kMaxConfigBytes >> 10);
	text.resize(got);
	return parse_config(text, path, drivers);
}

} // namespace iodp::pmd
