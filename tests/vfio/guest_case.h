/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/*
 * What every guest test program shares (vfio_guest_test, shadow_guest_test): failing a
 * case with a reason, sysfs reads and writes, and main(): "--case NAME --iommu
 * type1|iommufd", one case run, its result as the line run_guest.py looks for
 * ("IODP-CASE NAME PASS" or "... FAIL: why").
 */

#include <iodp/status.h>
#include <iodp/vfio.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <map>
#include <string>
#include <unistd.h>

namespace iodp::guest {

struct Fail {
	std::string why;
};

[[noreturn]] inline void fail(const std::string &why)
{
	throw Fail{why};
}

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond))                                                               \
			::iodp::guest::fail(std::string(#cond) + " (line " +              \
					    std::to_string(__LINE__) + ")");               \
	} while (0)

template <class T> T must(Result<T> r, const char *what)
{
	if (!r)
		fail(std::string(what) + ": " + r.status().message());
	return std::move(*r);
}

inline void must(const Status &s, const char *what)
{
	if (!s)
		fail(std::string(what) + ": " + s.message());
}

inline void write_file(const std::string &path, const std::string &text)
{
	const int fd = ::open(path.c_str(), O_WRONLY);
	if (fd < 0)
		fail("open " + path + ": " + std::strerror(errno));
	const ssize_t n = ::write(fd, text.data(), text.size());
	const int err = errno;
	::close(fd);
	if (n != static_cast<ssize_t>(text.size()))
		fail("write '" + text + "' to " + path + ": " + std::strerror(err));
}

/** A sysfs file's text without its trailing newline; empty when it cannot be read. */
inline std::string read_file(const std::string &path)
{
	char buf[256] = {};
	const int fd = ::open(path.c_str(), O_RDONLY);
	if (fd < 0)
		return {};
	const ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
	::close(fd);
	std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
	while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
		s.pop_back();
	return s;
}

/** The driver @p bdf is bound to, or empty. */
inline std::string driver_of(const std::string &bdf)
{
	char buf[256];
	const std::string link = "/sys/bus/pci/devices/" + bdf + "/driver";
	const ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf) - 1);
	if (n <= 0)
		return {};
	std::string s(buf, static_cast<size_t>(n));
	return s.substr(s.rfind('/') + 1);
}

using Case = std::function<void(vfio::Iommu)>;

/** main() of a guest test program with these cases. */
inline int run_case(int argc, char **argv, const char *program,
		    const std::map<std::string, Case> &cases)
{
	std::string name, iommu = "type1";
	for (int i = 1; i + 1 < argc; i += 2) {
		const std::string k = argv[i];
		if (k == "--case")
			name = argv[i + 1];
		else if (k == "--iommu")
			iommu = argv[i + 1];
	}
	std::setvbuf(stdout, nullptr, _IOLBF, 0);
	auto it = cases.find(name);
	if (it == cases.end() || (iommu != "type1" && iommu != "iommufd")) {
		std::printf("usage: %s --case NAME --iommu type1|iommufd; cases:", program);
		for (const auto &[n, c] : cases)
			std::printf(" %s", n.c_str());
		std::printf("\n");
		return 2;
	}
	try {
		it->second(iommu == "type1" ? vfio::Iommu::type1 : vfio::Iommu::iommufd);
	} catch (const Fail &f) {
		std::printf("IODP-CASE %s FAIL: %s\n", name.c_str(), f.why.c_str());
		return 1;
	}
	std::printf("IODP-CASE %s PASS\n", name.c_str());
	return 0;
}

} // namespace iodp::guest
