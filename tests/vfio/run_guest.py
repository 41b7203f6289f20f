#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Boot a QEMU guest (TCG) that runs one vfio_guest_test case and report its result.

  run_guest.py (--kernel BZIMAGE | --kernel-from SCRIPT | --debian-from SCRIPT)
               --initrd INITRD --case NAME [--iommu type1|iommufd]
               [--topology edu|bridge|none] [--vtd on|off] [--append ARGS]
               [--icount off|SHIFT] [--timeout S] [--log FILE]

--kernel-from runs tools/guest/build-kernel.sh (the cached kernel at once; the first run on a
machine builds it, several runners waiting on one build); --debian-from runs
tools/guest/debian-kernel.sh and boots that tree's vmlinuz. --icount SHIFT makes the guest's
clock count instructions and skip idle time (see icount()); the default is real time.

The guest's serial console is read line by line; the case passes when the guest prints
"IODP-CASE NAME PASS". Anything else (a FAIL line, a guest that hangs past --timeout, a
QEMU that does not start) fails, and the whole console log is printed.

--vtd off boots with no VT-d in QEMU and intel_iommu=off (the iommufd selftest's mock
devices, tests/iommufd/differential.py, do not attach with VT-d on).
"""
import argparse
import os
import selectors
import shutil
import subprocess
import sys
import time

TOPOLOGIES = {
    # One edu device on the root complex: its own IOMMU group.
    "edu": ["-device", "edu"],
    # Two edu devices behind a PCIe-to-PCI bridge: the bridge and both in one group.
    "bridge": ["-device", "pcie-pci-bridge,id=br0,bus=pcie.0,addr=5",
               "-device", "edu,bus=br0,addr=1", "-device", "edu,bus=br0,addr=2"],
    # No device: cases that need only the kernel (the iommufd selftest's mock devices).
    "none": [],
}


def qemu_command(args):
    append = (f"console=ttyS0 intel_iommu={args.vtd} iommu=nopt no_timer_check panic=-1 "
              f"loglevel=4 iodp.case={args.case} iodp.iommu={args.iommu} "
              f"{args.append}").strip()
    vtd = (["-device", "intel-iommu,intremap=on,caching-mode=on,x-scalable-mode=on"]
           if args.vtd == "on" else [])
    return ["qemu-system-x86_64", "-machine", "q35,kernel-irqchip=split", "-accel", "tcg",
            "-cpu", "max", "-m", "2G", "-smp", "1", "-nographic", "-no-reboot",
            "-nodefaults", "-serial", "stdio", "-display", "none",
            "-kernel", args.kernel, "-initrd", args.initrd, "-append", append,
            *vtd, *TOPOLOGIES[args.topology], "-nic", "none", *icount(args.icount)]


def icount(shift):
    """With a shift: QEMU's virtual clock counted in guest instructions (2^shift ns each)
    and, with sleep=off, jumping to the next timer deadline whenever the guest idles. QEMU's
    edu device completes a DMA in a timer 100 ms of virtual time after the command, so with
    the real-time clock every DMA costs 100 ms of wall time; here a guest that sleeps while
    it waits costs only the instructions it runs (measured: 1000 edu DMAs in about 6 s of
    wall time instead of 100 s). The price is the boot: its busy-waits now run in guest
    instructions (QEMU's CPU time for a 'dma' guest: 1.4 s real clock, 2.2 s shift 2,
    1.8 s shift 4) and TCG runs slower with icount (shadow-unmap, 6 DMAs: 2.1 s of CPU
    real clock, 3.5 s shift 4), so the cases that DMA little keep the real clock (the
    default) and those that DMA hundreds of times ask for shift 4 (16 ns an instruction:
    virtual time runs a few times faster than real while the guest computes; the
    guest's timeouts are seconds)."""
    return [] if shift == "off" else ["-icount", f"shift={shift},sleep=off"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel")
    ap.add_argument("--kernel-from")
    ap.add_argument("--debian-from")
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--case", required=True)
    ap.add_argument("--iommu", default="type1", choices=["type1", "iommufd"])
    ap.add_argument("--topology", default="edu", choices=sorted(TOPOLOGIES))
    ap.add_argument("--vtd", default="on", choices=["on", "off"])
    ap.add_argument("--append", default="")
    ap.add_argument("--icount", default="off", choices=["off"] + [str(i) for i in range(11)],
                    help="the guest's clock: off (real time) or the icount shift (0-10)")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--log")
    args = ap.parse_args()
    if args.kernel_from or args.debian_from:
        script = args.kernel_from or args.debian_from
        t0 = time.monotonic()
        out = subprocess.run([script], stdout=subprocess.PIPE, text=True)
        if out.returncode != 0 or not out.stdout.strip():
            sys.exit(f"run_guest: {script} failed (exit {out.returncode})")
        path = out.stdout.strip().splitlines()[-1]
        if args.debian_from:
            release = open(os.path.join(path, "release")).read().strip()
            path = os.path.join(path, "tree", "boot", "vmlinuz-" + release)
        args.kernel = path
        if time.monotonic() - t0 > 5:
            print(f"run_guest: {script} took {time.monotonic() - t0:.0f} s (kernel {path})")
    if not args.kernel:
        sys.exit("run_guest: give --kernel, --kernel-from or --debian-from")
    if shutil.which("qemu-system-x86_64") is None:
        sys.exit("run_guest: qemu-system-x86_64 is missing: install qemu-system-x86 "
                 "(tools/setup.sh does)")
    for f in (args.kernel, args.initrd):
        if not os.path.exists(f):
            sys.exit(f"run_guest: {f} is missing")
    cmd = qemu_command(args)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    log, buf, verdict, booted = [], b"", None, None
    while True:
        left = args.timeout - (time.monotonic() - start)
        if left <= 0:
            verdict = verdict or f"timed out after {args.timeout:.0f} s"
            break
        if not sel.select(timeout=min(left, 1.0)):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip("\r")
            log.append(line)
            if "IODP-BOOTED" in line and booted is None:
                booted = time.monotonic() - start
            if line.startswith(f"IODP-CASE {args.case} "):
                verdict = line.split(" ", 2)[2]
    if proc.poll() is None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    total = time.monotonic() - start
    if buf:
        log.append(buf.decode("utf-8", "replace"))
    if args.log:
        with open(args.log, "w") as f:
            f.write("\n".join(log) + "\n")
    ok = verdict == "PASS"
    # The case's own lines (indented by the guest program) and the verdict.
    for line in log:
        if not ok or line.startswith("  ") or line.startswith("IODP-"):
            print(line)
    print(f"run_guest: {args.case} ({args.iommu}, {args.topology}): "
          f"{verdict or 'no result from the guest'}; boot to /init "
          f"{'%.1f s' % booted if booted is not None else 'not reached'}, whole run {total:.1f} s")
    if not ok:
        print("run_guest: command: " + " ".join(cmd))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
