#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Build a test guest's initramfs (vfio-qemu, and the iommufd-selftest suite's differential
run): busybox-static as the shell, the test programs and every shared library they load
(ldd), an /init that runs the case named on the kernel command line (iodp.case=NAME
iodp.iommu=type1|iommufd) and powers off, and optionally kernel modules (Debian's kernel has
VFIO as modules) loaded in dependency order.

  make_initrd.py --output initrd.cpio.gz --program build/tests/vfio/vfio_guest_test
                 [--modules-root DIR --kernel-release REL --module vfio-pci ...]
                 [--debian-kernel tools/guest/debian-kernel.sh]
                 [--case-script NAME=SCRIPT ...]

With --debian-kernel the script gives the unpacked Debian kernel (modules root and release).
A case with a --case-script runs that shell script (it prints the case's "IODP-CASE NAME"
verdict itself); the others run vfio_guest_test (shadow-*: shadow_guest_test).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

INIT = r"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Modules get their parameters from the command line (NAME.PARAM=VALUE), as modprobe does.
for m in $(cat /modules.order 2>/dev/null); do
	n=$(echo "${m%.ko}" | tr - _)
	args=
	for w in $(cat /proc/cmdline); do
		case "$w" in "$n".*) args="$args ${w#"$n".}" ;; esac
	done
	insmod /modules/$m $args || echo "IODP-INIT insmod $m failed"
done
case=; iommu=type1
for w in $(cat /proc/cmdline); do
	case "$w" in
	iodp.case=*) case=${w#iodp.case=} ;;
	iodp.iommu=*) iommu=${w#iodp.iommu=} ;;
	esac
done
echo "IODP-BOOTED $(cut -d' ' -f1 /proc/uptime)s"
if [ -f "/cases/$case" ]; then
	sh "/cases/$case"
else
	prog=vfio_guest_test
	case "$case" in shadow-*) prog=shadow_guest_test ;; esac
	/bin/$prog --case "$case" --iommu "$iommu"
fi
echo "IODP-EXIT $?"
poweroff -f
"""


def libs_of(program):
    """The absolute paths of the shared libraries @program loads (and the loader)."""
    out = subprocess.run(["ldd", program], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                paths.append(target)
        elif parts and parts[0].startswith("/"):
            paths.append(parts[0])
    return paths


def module_depends(path):
    """The modules @path depends on, from its .modinfo ("depends=a,b")."""
    data = open(path, "rb").read()
    if path.endswith(".xz"):
        data = subprocess.run(["xz", "-dc", path], check=True, capture_output=True).stdout
    at = data.find(b"\0depends=")
    if at < 0:
        return []
    end = data.index(b"\0", at + 1)
    text = data[at + len(b"\0depends="):end].decode()
    return [d for d in text.split(",") if d]


def module_order(root, release, wanted):
    """Module files with their dependencies first (read from the modules themselves: an
    unpacked, not installed, kernel package has no modules.dep)."""
    base = os.path.join(root, "lib/modules", release)
    by_name = {}
    for d, _, files in os.walk(base):
        for f in files:
            if ".ko" in f:
                by_name[f.split(".ko")[0].replace("-", "_")] = os.path.join(d, f)
    order = []

    def add(name):
        key = name.replace("-", "_")
        if key not in by_name:
            sys.exit(f"make_initrd: no module {name} under {base}")
        for dep in module_depends(by_name[key]):
            add(dep)
        if by_name[key] not in order:
            order.append(by_name[key])

    for w in wanted:
        add(w)
    return base, order


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--output", required=True)
    ap.add_argument("--program", action="append", required=True)
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--modules-root")
    ap.add_argument("--kernel-release")
    ap.add_argument("--module", action="append", default=[])
    ap.add_argument("--debian-kernel")
    ap.add_argument("--case-script", action="append", default=[], metavar="NAME=SCRIPT")
    args = ap.parse_args()
    if args.debian_kernel:
        out = subprocess.run([args.debian_kernel], check=True, capture_output=True, text=True)
        tree = out.stdout.strip().splitlines()[-1]
        args.kernel_release = open(os.path.join(tree, "release")).read().strip()
        args.modules_root = os.path.join(tree, "tree")
    if not os.path.exists(args.busybox):
        sys.exit(f"make_initrd: {args.busybox} is missing: install busybox-static")
    with tempfile.TemporaryDirectory() as tmp:
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "modules",
                  "var/run", "run"):
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
        shutil.copy2(args.busybox, os.path.join(tmp, "bin/busybox"))
        for applet in ("sh", "mount", "cat", "cut", "echo", "insmod", "poweroff", "ls",
                       "dmesg", "sleep", "tr"):
            os.symlink("busybox", os.path.join(tmp, "bin", applet))
        files = set()
        for p in args.program:
            shutil.copy2(p, os.path.join(tmp, "bin", os.path.basename(p)))
            files.update(libs_of(p))
        for f in sorted(files):
            dest = os.path.join(tmp, f.lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(os.path.realpath(f), dest)
        if args.module:
            base, order = module_order(args.modules_root, args.kernel_release, args.module)
            names = []
            for src in order:
                name = os.path.basename(src)
                if name.endswith(".xz"):
                    subprocess.run(["xz", "-dk", "-c", src], check=True,
                                   stdout=open(os.path.join(tmp, "modules", name[:-3]), "wb"))
                    name = name[:-3]
                else:
                    shutil.copy2(src, os.path.join(tmp, "modules", name))
                names.append(name)
            with open(os.path.join(tmp, "modules.order"), "w") as f:
                f.write("\n".join(names) + "\n")
        if args.case_script:
            os.makedirs(os.path.join(tmp, "cases"))
        for spec in args.case_script:
            name, sep, script = spec.partition("=")
            if not sep or not name or not os.path.isfile(script):
                sys.exit(f"make_initrd: --case-script {spec}: want NAME=SCRIPT, an existing "
                         "file")
            shutil.copy2(script, os.path.join(tmp, "cases", name))
        with open(os.path.join(tmp, "init"), "w") as f:
            f.write(INIT)
        os.chmod(os.path.join(tmp, "init"), 0o755)
        listing = subprocess.run(["find", "."], cwd=tmp, check=True, capture_output=True).stdout
        cpio = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=tmp, input=listing,
                              check=True, capture_output=True).stdout
        tmp_out = args.output + ".tmp"
        with open(tmp_out, "wb") as f:
            subprocess.run(["gzip", "-1"], input=cpio, stdout=f, check=True)
        os.replace(tmp_out, args.output)


if __name__ == "__main__":
    main()
