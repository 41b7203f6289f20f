#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The kernel as the oracle: run the kernel's iommufd selftest on a real kernel and on iodp,
and compare them test by test.

    differential.py SELFTEST IODP_RUN PRELOAD DIFFERENCES
                    --run-guest RUN_GUEST --kernel-from BUILD_KERNEL --initrd INITRD

The kernel half boots the vfio-qemu guests' kernel (tools/guest/build-kernel.sh; it has
CONFIG_IOMMUFD_TEST, whose mock devices the selftest drives) in QEMU (TCG) with no VT-d and
intel_iommu=off, through tests/vfio/run_guest.py; INITRD holds SELFTEST, the same binary,
and tests/iommufd/guest_case.sh, which prints its TAP. The iodp half runs SELFTEST under
iodp-run, as run_selftest.py does.

Every test whose result differs (passes on one side only) is printed with its reason from
DIFFERENCES, whose lines are "NAME SIDE REASON", SIDE the side it passes on (kernel or
iodp). A difference that is not listed, one listed for the other side, a listed test that
no longer differs, or a test one side did not run fails this test.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from run_selftest import hugepage_note, hugepages_free, parse_tap, read_test_list, run_on_iodp

SIDES = ("kernel", "iodp")


def read_differences(path):
    listed = read_test_list(path, 3, "NAME kernel|iodp REASON", lambda p: p[1] in SIDES)
    return {name: tuple(rest) for name, rest in listed.items()}


def run_on_kernel(args):
    """Boot the guest; (results, logs, seconds the selftest ran in the guest, guest run s)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "console.log")
        cmd = [sys.executable, args.run_guest, "--kernel-from", args.kernel_from,
               "--initrd", args.initrd, "--case", "iommufd-selftest", "--iommu", "iommufd",
               "--topology", "none",
               "--vtd", "off", "--timeout", str(args.guest_timeout), "--log", log]
        t0 = time.monotonic()
        run = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - t0
        print(run.stdout, end="")
        console = open(log).read() if os.path.exists(log) else ""
    if run.returncode != 0:
        print(run.stderr, end="")
        sys.exit("differential: the kernel's run did not finish (above: run_guest.py)")
    m = re.search(r"IODP-TAP-BEGIN\n(.*)\nIODP-TAP-END exit (\d+), uptime ([\d.]+) s to "
                  r"([\d.]+) s", console, re.S)
    if not m:
        print(console[-4000:])
        sys.exit("differential: no TAP from the guest (IODP-TAP-BEGIN/END)")
    results, logs = parse_tap(m.group(1))
    return results, logs, float(m.group(4)) - float(m.group(3)), wall


def main():
    ap = argparse.ArgumentParser(usage=__doc__)
    ap.add_argument("selftest")
    ap.add_argument("iodp_run")
    ap.add_argument("preload")
    ap.add_argument("differences")
    ap.add_argument("--run-guest", required=True)
    ap.add_argument("--kernel-from", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--guest-timeout", type=float, default=600)
    args = ap.parse_args()
    listed = read_differences(args.differences)

    kernel, kernel_logs, guest_s, guest_wall = run_on_kernel(args)
    free = hugepages_free()
    t0 = time.monotonic()
    iodp, iodp_logs, output, returncode = run_on_iodp(args.selftest, args.iodp_run,
                                                      args.preload)
    iodp_s = time.monotonic() - t0
    if not iodp:
        print(output[-4000:])
        sys.exit(f"differential: no test results from {args.selftest} on iodp "
                 f"(exit {returncode})")

    problems = []
    for name in sorted(set(kernel) ^ set(iodp)):
        side = "the kernel" if name in iodp else "iodp"
        problems.append(f"{name}: not run on {side}")
    differences = []
    for name in sorted(set(kernel) & set(iodp)):
        if kernel[name] == iodp[name]:
            if name in listed:
                problems.append(f"{name}: listed ({listed[name][0]} only) but both sides "
                                f"{'pass' if kernel[name] else 'fail'}: remove it from "
                                f"{args.differences}")
            continue
        side = "kernel" if kernel[name] else "iodp"
        differences.append(name)
        if name not in listed:
            problems.append(f"{name}: passes on {side} only and is not listed in "
                            f"{args.differences}")
            failed_logs = iodp_logs if side == "kernel" else kernel_logs
            print(f"--- {name}, as it failed on {'iodp' if side == 'kernel' else 'the kernel'}")
            print("\n".join(failed_logs[name][-40:]))
        elif listed[name][0] != side:
            problems.append(f"{name}: listed as passing on {listed[name][0]} only, but it "
                            f"passes on {side} only")
    for name in sorted(set(listed) - set(kernel) - set(iodp)):
        problems.append(f"{name}: listed but run on neither side")

    print(f"iommufd selftest, differential: the kernel passes {sum(kernel.values())}/"
          f"{len(kernel)} (selftest {guest_s:.1f} s in the TCG guest, guest run "
          f"{guest_wall:.1f} s), iodp {sum(iodp.values())}/{len(iodp)} ({iodp_s:.1f} s); "
          f"{len(differences)} differences:")
    for name in differences:
        side = "kernel" if kernel[name] else "iodp"
        reason = listed[name][1] if name in listed else "NOT EXPLAINED"
        print(f"  {name}: passes on {side} only: {reason}")
    for p in problems:
        print(p)
    note = hugepage_note([n for n in differences if kernel[n]], free)
    if note:
        print(note)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
