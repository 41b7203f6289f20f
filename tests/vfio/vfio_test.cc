/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * drivers/vfio on the host (no VFIO here): the PCI address rules, the group viability rule
 * and the path choice against a fake sysfs and /dev, and the failures that must leave
 * nothing behind. The real kernel paths are tested in QEMU guests (suite vfio-qemu).
 */
#include "sysfs.h"

#include <iodp/vfio.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace iodp::vfio {
namespace {

namespace fs = std::filesystem;

#define EXPECT_FAILS(expr, err, text)                                                      \
	do {                                                                               \
		const ::iodp::Status st_ = (expr);                                         \
		EXPECT_EQ(st_.code(), -(err)) << st_.message();                            \
		EXPECT_NE(st_.message().find(text), std::string::npos)                     \
			<< "message: " << st_.message() << "\nwanted: " << (text);         \
	} while (0)

/** A fake /sys and /dev: PCI devices with drivers, IOMMU groups, VFIO cdevs. */
class FakeSys : public ::testing::Test {
protected:
	fs::path root;
	std::string sys, dev;

	void SetUp() override
	{
		char tmpl[] = "/tmp/iodp-vfio-test-XXXXXX";
		root = ::mkdtemp(tmpl);
		sys = (root / "sys").string();
		dev = (root / "dev").string();
		fs::create_directories(sys + "/bus/pci/devices");
		fs::create_directories(sys + "/bus/pci/drivers");
		fs::create_directories(sys + "/kernel/iommu_groups");
		fs::create_directories(sys + "/class/vfio-dev");
		fs::create_directories(dev + "/vfio/devices");
	}
	void TearDown() override { fs::remove_all(root); }

	/** A device @p bdf in group @p group bound to @p driver ("" none). */
	void device(const std::string &bdf, int group, const std::string &driver,
		    const std::string &cdev = "")
	{
		const fs::path d = sys + "/bus/pci/devices/" + bdf;
		fs::create_directories(d);
		const fs::path g = sys + "/kernel/iommu_groups/" + std::to_string(group);
		fs::create_directories(g / "devices");
		fs::create_directory_symlink(g, d / "iommu_group");
		fs::create_directory_symlink(d, g / "devices" / bdf);
		if (!driver.empty()) {
			fs::create_directories(sys + "/bus/pci/drivers/" + driver);
			fs::create_directory_symlink(sys + "/bus/pci/drivers/" + driver, d / "driver");
		}
		if (!cdev.empty()) {
			fs::create_directories(d / "vfio-dev" / cdev);
			fs::create_directories(sys + "/class/vfio-dev/" + cdev);
			fs::create_directory_symlink(d, sys + "/class/vfio-dev/" + cdev + "/device");
			std::ofstream(dev + "/vfio/devices/" + cdev) << "";
		}
	}
	Options options(Iommu iommu = Iommu::auto_select) const
	{
		Options o;
		o.iommu = iommu;
		o.sysfs = sys;
		o.dev = dev;
		return o;
	}
};

TEST(VfioBdf, Normalizes)
{
	EXPECT_EQ(*sysfs::normalize_bdf("00:03.0"), "0000:00:03.0");
	EXPECT_EQ(*sysfs::normalize_bdf("0000:0A:1f.7"), "0000:0a:1f.7");
	for (const char *bad : {"", "00:03", "00:03.8", "00:20.0", "0000:00:03.0x", "zz:03.0",
				"0000-00:03.0"})
		EXPECT_FAILS(sysfs::normalize_bdf(bad).status(), EINVAL,
			     std::string("bad PCI address '") + bad + "'");
}

TEST_F(FakeSys, RefusesMissingAndUnboundDevices)
{
	ctl::Ctx ctx;
	EXPECT_FAILS(Device::open(ctx, "00:03.0", options()).status(), ENOENT,
		     "no PCI device 0000:00:03.0");
	device("0000:00:03.0", 3, "");
	EXPECT_FAILS(Device::open(ctx, "00:03.0", options()).status(), ENODEV,
		     "cannot use 0000:00:03.0: it has no driver, not vfio-pci (bind it: echo "
		     "vfio-pci > ");
	device("0000:00:04.0", 4, "e1000e");
	EXPECT_FAILS(Device::open(ctx, "0000:00:04.0", options()).status(), ENODEV,
		     "its driver is e1000e, not vfio-pci");
	EXPECT_FAILS(Device::open(ctx, "0000:00:04.0", options()).status(), ENODEV,
		     "/driver/unbind");
	EXPECT_EQ(ctx.object_count(), 0u);
}

TEST_F(FakeSys, GroupViabilityNamesTheOffendingDevice)
{
	device("0000:00:03.0", 7, "vfio-pci");
	device("0000:00:04.0", 7, "e1000e");
	device("0000:00:05.0", 7, "pcieport");
	device("0000:00:06.0", 7, "");
	ctl::Ctx ctx;
	EXPECT_FAILS(Device::open(ctx, "0000:00:03.0", options()).status(), EBUSY,
		     "cannot use 0000:00:03.0: 0000:00:04.0 in the same IOMMU group 7 is bound to "
		     "e1000e");
	EXPECT_EQ(ctx.object_count(), 0u);
	// vfio-pci, pci-stub, pcieport and no driver are viable: the check passes and the
	// next step (the group's /dev/vfio/7, absent here) is what fails.
	fs::remove(sys + "/bus/pci/devices/0000:00:04.0/driver");
	fs::create_directories(sys + "/bus/pci/drivers/pci-stub");
	fs::create_directory_symlink(sys + "/bus/pci/drivers/pci-stub",
				     sys + "/bus/pci/devices/0000:00:04.0/driver");
	EXPECT_FAILS(Device::open(ctx, "0000:00:03.0", options()).status(), ENOENT,
		     "cannot use 0000:00:03.0: open " + dev + "/vfio/7 failed");
}

TEST_F(FakeSys, NoGroupMeansNoIommu)
{
	device("0000:00:03.0", 1, "vfio-pci");
	fs::remove(sys + "/bus/pci/devices/0000:00:03.0/iommu_group");
	ctl::Ctx ctx;
	EXPECT_FAILS(Device::open(ctx, "0000:00:03.0", options()).status(), ENODEV,
		     "has no IOMMU group");
}

TEST_F(FakeSys, PathChoice)
{
	device("0000:00:03.0", 2, "vfio-pci", "vfio0");
	ctl::Ctx ctx;
	// auto without /dev/iommu: type1 (its group node is missing here).
	EXPECT_FAILS(Device::open(ctx, "0000:00:03.0", options()).status(), ENOENT,
		     "open " + dev + "/vfio/2 failed");
	// iommufd asked for without /dev/iommu: said so.
	EXPECT_FAILS(Device::open(ctx, "0000:00:03.0", options(Iommu::iommufd)).status(), ENODEV,
		     "this kernel has no /dev/iommu");
	// A cdev path means iommufd.
	EXPECT_FAILS(Device::open(ctx, dev + "/vfio/devices/vfio0", options(Iommu::type1)).status(),
		     EINVAL, "only the iommufd path uses");
	EXPECT_FAILS(Device::open(ctx, dev + "/vfio/devices/vfio5", options()).status(), ENOENT,
		     "is not a VFIO device cdev");
	// With /dev/iommu (a plain file here), auto takes iommufd; binding then fails.
	std::ofstream(dev + "/iommu") << "";
	EXPECT_FAILS(Device::open(ctx, "0000:00:03.0", options()).status(), ENOTTY,
		     "VFIO_DEVICE_BIND_IOMMUFD failed");
	EXPECT_EQ(ctx.object_count(), 0u);
}

} // namespace
} // namespace iodp::vfio
