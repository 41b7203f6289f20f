#!/usr/bin/env bash
# Build the test guest's Linux kernel: Debian's linux-source-6.12, tinyconfig plus the options
# the vfio-qemu tests need (VT-d, VFIO with type1 container and device cdevs, iommufd) and
# those the iommufd selftest's mock devices need (the iommufd-selftest suite's differential
# run, tests/iommufd), all built in. The bzImage is cached outside the source tree, keyed by the source version and
# the option list, so the second run prints the path at once.
#
#   tools/guest/build-kernel.sh     prints the bzImage path on the last line
#
# Environment: IODP_KERNEL_CACHE (default /var/cache/iodp, else ~/.cache/iodp when that is
# not writable), IODP_KERNEL_JOBS (make -j, default 2).
set -euo pipefail

options=(64BIT ACPI PCI PCI_MSI X86_X2APIC IOMMU_SUPPORT IRQ_REMAP INTEL_IOMMU
	INTEL_IOMMU_DEFAULT_ON INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON IOMMUFD VFIO VFIO_GROUP
	VFIO_CONTAINER VFIO_IOMMU_TYPE1 VFIO_DEVICE_CDEV VFIO_PCI DEVTMPFS DEVTMPFS_MOUNT
	BLK_DEV_INITRD RD_GZIP BINFMT_ELF BINFMT_SCRIPT PROC_FS SYSFS TTY SERIAL_8250
	SERIAL_8250_CONSOLE PRINTK MULTIUSER FUTEX EPOLL EVENTFD SIGNALFD TIMERFD POSIX_TIMERS
	SHMEM TMPFS HUGETLBFS
	UIO UIO_PCI_GENERIC
	DEBUG_KERNEL RUNTIME_TESTING_MENU FAULT_INJECTION FAILSLAB DEBUG_FS
	FAULT_INJECTION_DEBUG_FS IOMMUFD_TEST INTEL_IOMMU_SVM TRANSPARENT_HUGEPAGE)
# UIO_PCI_GENERIC: a second PCI driver that takes any device (driver_override) and is not
# DMA-managed, so a group holding a device bound to it is not viable (the group tests).
# DEBUG_KERNEL .. IOMMUFD_TEST: the selftest's own list (tools/testing/selftests/iommu/config)
# and what IOMMUFD_TEST depends on (drivers/iommu/iommufd/Kconfig). INTEL_IOMMU_SVM is the
# x86 option that selects IOMMU_IOPF (hidden; Debian's own 6.12 kernel has it on): without
# it the mock's IOMMU_TEST_OP_TRIGGER_IOPF reports nothing and the selftest's
# alloc_hwpt_nested fails on a build artifact, not on the kernel's ABI. TRANSPARENT_HUGEPAGE
# (Debian's kernels have it too): without it iommufd aligns automatic IOVAs to 4 KiB only
# (iopt_alloc_iova's max_alignment) and the selftest's area_auto_iova fails.

say() { echo "build-kernel: $*" >&2; }

if [ $# -gt 0 ]; then
	say "usage: $0 (no arguments)"
	exit 2
fi
done_with() {
	echo "$1"
	exit 0
}

tarball=/usr/src/linux-source-6.12.tar.xz
if [ ! -f "$tarball" ]; then
	say "$tarball is missing: install the Debian package linux-source-6.12 (tools/setup.sh does)"
	exit 1
fi
version=$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null || stat -c %s "$tarball")
key=$(printf '%s\n' "$version" "${options[@]}" | sha256sum | cut -c1-16)

cache=${IODP_KERNEL_CACHE:-/var/cache/iodp}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/iodp
	mkdir -p "$cache"
fi
dir=$cache/kernel-$key
if [ -f "$dir/bzImage" ]; then
	done_with "$dir/bzImage"
fi

# Two builds at once (two meson tests, two checkouts) must not share a tree: a lock per key.
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [ -f "$dir/bzImage" ]; then
	done_with "$dir/bzImage"
fi

work=$dir/src
rm -rf "$work"
mkdir -p "$work"
say "extracting $tarball ($version) into $work"
tar -xf "$tarball" -C "$work" --strip-components=1
cd "$work"
say "tinyconfig + ${#options[@]} options"
make -s tinyconfig >&2
for o in "${options[@]}"; do
	scripts/config --enable "$o"
done
make -s olddefconfig >&2
missing=()
for o in "${options[@]}"; do
	grep -qx "CONFIG_$o=y" .config || missing+=("$o")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "these options did not stick after olddefconfig (a dependency is off): ${missing[*]}"
	exit 1
fi
jobs=${IODP_KERNEL_JOBS:-2}
say "make -j$jobs bzImage (about 4 minutes on 2 cores)"
start=$(date +%s)
make -s -j"$jobs" bzImage >&2
cp .config "$dir/config"
cp arch/x86/boot/bzImage "$dir/bzImage.tmp"
mv "$dir/bzImage.tmp" "$dir/bzImage"
cd /
rm -rf "$work"
say "built in $(( $(date +%s) - start )) s: $dir/bzImage"
done_with "$dir/bzImage"
