/* SPDX-License-Identifier: BSD-3-Clause */
#include "sysfs.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <system_error>

namespace iodp::vfio::sysfs {

namespace fs = std::filesystem;

namespace {

bool hex(char c)
{
	return std::isxdigit(static_cast<unsigned char>(c)) != 0;
}

/** The last component of the link at @p link ("" when it is not a link). */
std::string link_name(const fs::path &link)
{
	std::error_code ec;
	const fs::path target = fs::read_symlink(link, ec);
	return ec ? std::string() : target.filename().string();
}

std::string pci_dir(const std::string &sys, const std::string &bdf)
{
	return sys + "/bus/pci/devices/" + bdf;
}

/** Drivers the kernel lets share a group with a device in use (vfio_dev_driver_allowed +
 *  driver_managed_dma): a device with one of them can do no DMA of its own. */
bool viable_driver(const std::string &drv)
{
	return drv.empty() || drv == "vfio-pci" || drv == "pci-stub" || drv == "pcieport";
}

} // namespace

Result<std::string> normalize_bdf(const std::string &text)
{
	std::string s = text;
	std::transform(s.begin(), s.end(), s.begin(),
		       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
	if (s.size() == 7)
		s = "0000:" + s;
	// DDDD:BB:DD.F
	const bool ok = s.size() == 12 && hex(s[0]) && hex(s[1]) && hex(s[2]) && hex(s[3]) &&
			s[4] == ':' && hex(s[5]) && hex(s[6]) && s[7] == ':' && hex(s[8]) &&
			hex(s[9]) && s[10] == '.' && s[11] >= '0' && s[11] <= '7' &&
			std::stoi(s.substr(8, 2), nullptr, 16) < 32;
	if (!ok)
		return Status::error(-EINVAL, "vfio: bad PCI address '{}' (expected DDDD:BB:DD.F "
				     "or BB:DD.F, or a cdev path /dev/vfio/devices/vfioN)",
				     text);
	return s;
}

Result<std::string> bdf_of_cdev(const std::string &sys, const std::string &cdev)
{
	const std::string name = fs::path(cdev).filename().string();
	const fs::path dev = fs::path(sys) / "class/vfio-dev" / name / "device";
	const std::string bdf = link_name(dev);
	if (name.rfind("vfio", 0) != 0 || bdf.empty())
		return Status::error(-ENOENT, "vfio: {} is not a VFIO device cdev (no {})",
				     cdev, dev.string());
	return bdf;
}

std::string driver_of(const std::string &sys, const std::string &bdf)
{
	return link_name(pci_dir(sys, bdf) + "/driver");
}

Result<int> group_of(const std::string &sys, const std::string &bdf)
{
	const std::string g = link_name(pci_dir(sys, bdf) + "/iommu_group");
	if (g.empty() || !std::all_of(g.begin(), g.end(), [](char c) { return c >= '0' && c <= '9'; }))
		return Status::error(-ENODEV, "vfio: cannot use {}: it has no IOMMU group (no "
				     "{}/iommu_group: is the IOMMU on? intel_iommu=on, "
				     "amd_iommu=on)", bdf, pci_dir(sys, bdf).c_str());
	return std::stoi(g);
}

std::vector<std::string> group_devices(const std::string &sys, int group)
{
	std::vector<std::string> out;
	std::error_code ec;
	const fs::path dir = fs::path(sys) / "kernel/iommu_groups" / std::to_string(group) / "devices";
	for (const auto &e : fs::directory_iterator(dir, ec))
		out.push_back(e.path().filename().string());
	std::sort(out.begin(), out.end());
	return out;
}

std::string cdev_of(const std::string &sys, const std::string &bdf)
{
	std::error_code ec;
	for (const auto &e : fs::directory_iterator(pci_dir(sys, bdf) + "/vfio-dev", ec)) {
		const std::string n = e.path().filename().string();
		if (n.rfind("vfio", 0) == 0)
			return n;
	}
	return {};
}

Result<int> check_usable(const std::string &sys, const std::string &bdf)
{
	std::error_code ec;
	if (!fs::exists(pci_dir(sys, bdf), ec))
		return Status::error(-ENOENT, "vfio: no PCI device {} (no {})", bdf,
				     pci_dir(sys, bdf).c_str());
	const std::string drv = driver_of(sys, bdf);
	if (drv != "vfio-pci") {
		const std::string dir = pci_dir(sys, bdf);
		const std::string unbind =
			drv.empty() ? "" : "echo " + bdf + " > " + dir + "/driver/unbind; ";
		return Status::error(-ENODEV, "vfio: cannot use {}: {}, not vfio-pci (bind it: "
				     "echo vfio-pci > {}/driver_override; {}echo {} > "
				     "{}/bus/pci/drivers/vfio-pci/bind)", bdf,
				     drv.empty() ? "it has no driver"
						 : ("its driver is " + drv).c_str(),
				     dir, unbind, bdf, sys);
	}
	Result<int> group = group_of(sys, bdf);
	if (!group)
		return group;
	for (const std::string &other : group_devices(sys, *group)) {
		if (other == bdf)
			continue;
		const std::string odrv = driver_of(sys, other);
		if (!viable_driver(odrv))
			return Status::error(-EBUSY, "vfio: cannot use {}: {} in the same IOMMU "
					     "group {} is bound to {} (a group is usable only when "
					     "each of its devices has no driver or vfio-pci, "
					     "pci-stub or pcieport)", bdf, other,
					     *group, odrv);
	}
	return group;
}

} // namespace iodp::vfio::sysfs
