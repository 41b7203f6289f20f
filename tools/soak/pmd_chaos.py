#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The app half of the soak: iodp-pmd under chaos (doc/reliability.md).

    pmd_chaos.py IODP_PMD IODP_IPC_DRIVER [--duration S] [--seed N] [--ipc N]

iodp-pmd runs emulated devices that check every answer (verify=1: strict map/DMA/unmap with
invalidations, nested VT-d and SMMUv3, a device that vanishes) and ipc devices. A chaos loop,
random from the seed it prints first, gives each ipc device one driver process: one that
runs and says goodbye, one that runs until it is killed (SIGKILL at a random time), one that
sends a malformed message, one that scribbles over its request ring, or raw garbage on the
socket from the chaos loop itself. Checked: every driver that runs to the end found every
answer right (its exit status); the app survives and exits 0; 0 mismatches, 0 lost,
requests == completions for every emulated device; every device whose driver died or
misbehaved, and the one that vanished, is reported removed with a reason; the app's
descriptors after the last driver left are no more than before the first came, and its
resident set flat after the warm-up (slack for the allocator). On a failure it prints the
seed and what it saw.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

MODES = ["normal", "forever", "garbage", "corrupt-ring", "raw"]


def fail(seed, msg, output=""):
    sys.stderr.write("pmd_chaos: FAILED (seed %d): %s\n" % (seed, msg))
    if output:
        sys.stderr.write("--- iodp-pmd output (last 60 lines) ---\n")
        sys.stderr.write("".join(output.splitlines(True)[-60:]))
    sys.exit(1)


def proc_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def proc_rss(pid):
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def connect(path, deadline):
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            time.sleep(0.05)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pmd")
    ap.add_argument("driver")
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--ipc", type=int, default=12, help="ipc devices (one driver each)")
    ap.add_argument("--no-rss-check", action="store_true",
                    help="report the resident set only (AddressSanitizer's quarantine grows it)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (1 << 31)
    rng = random.Random(seed)
    print("pmd_chaos: seed %d, %.0f s, %d ipc devices" % (seed, args.duration, args.ipc),
          flush=True)

    tmp = tempfile.mkdtemp(prefix="iodp-chaos-")
    try:
        run(args, seed, rng, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, seed, rng, tmp):
    socks = [os.path.join(tmp, "ipc%d.sock" % i) for i in range(args.ipc)]
    emul = """
[engine]
workers = 1
[device emul0]
profile = strict
format = vtd-nested
ws = 8M
verify = 1
[device emul1]
profile = strict
format = smmu-nested
ws = 8M
verify = 1
[device emul2]
profile = nvme
format = vtd-nested
ws = 16M
verify = 1
[device emul3]
profile = zipf
format = smmu-nested
ws = 16M
verify = 1
faults = 20
[device emul4]
profile = random
format = smmu
len = 6000
ws = 16M
verify = 1
dma = 1
[device emul5]
profile = stream
format = vtd
ws = 16M
verify = 1
vanish = %d
""" % rng.randint(200000, 2000000)
    cfg = emul + "".join("[device ipc%d]\npath = %s\n" % (i, p) for i, p in enumerate(socks))
    cfg_path = os.path.join(tmp, "chaos.conf")
    with open(cfg_path, "w") as f:
        f.write(cfg)
    out = os.path.join(tmp, "summary.json")
    prefix = "iodp-chaos-%d" % os.getpid()
    app = subprocess.Popen([args.pmd, "--file-prefix", prefix, "--", "--config", cfg_path,
                            "--duration", str(int(args.duration) + 5), "--json", out,
                            "--stats-interval", "5"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(app.stdout), daemon=True)
    reader.start()
    start = time.monotonic()
    deadline = start + args.duration

    def output():
        return "".join(lines)

    # Wait for the first rate line: devices made, sockets listening.
    while not any(re.match(r"^\[\s*\d+\.\ds\]", l) for l in list(lines)):
        if app.poll() is not None or time.monotonic() > start + 60:
            fail(seed, "iodp-pmd did not start", output())
        time.sleep(0.1)
    fds_before = proc_fds(app.pid)

    # Each ipc device gets one driver, started at a random time in the first 80% of the
    # run; "forever" drivers are killed at a random later time.
    plan = []
    for i in range(args.ipc):
        mode = MODES[i % len(MODES)] if i < len(MODES) else rng.choice(MODES)
        at = start + rng.uniform(0.05, 0.8) * args.duration
        plan.append((at, i, mode))
    plan.sort()
    running = []  # (proc, index, mode, kill_at)
    samples = []  # (t, rss)
    expect_removed = {"emul5"}
    results = []
    pending = list(plan)
    while time.monotonic() < deadline or running:
        now = time.monotonic()
        if app.poll() is not None:
            fail(seed, "iodp-pmd exited early (status %d)" % app.returncode, output())
        while pending and pending[0][0] <= now:
            _, i, mode = pending.pop(0)
            name = "ipc%d" % i
            if mode == "raw":
                s = connect(socks[i], now + 10)
                if s is None:
                    fail(seed, "cannot connect to " + socks[i], output())
                junk = bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 17, 256, 300])))
                try:
                    s.send(junk)
                except OSError:
                    pass
                s.close()
                expect_removed.add(name)
                print("pmd_chaos: %6.1fs %s: raw garbage (%d bytes)" %
                      (now - start, name, len(junk)), flush=True)
                continue
            argv = [args.driver, "--socket", socks[i], "--mem", "4", "--mode", mode,
                    "--requests", str(rng.randint(2000, 50000))]
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
            kill_at = now + rng.uniform(0.2, 5) if mode == "forever" else None
            running.append((p, i, mode, kill_at))
            if mode != "normal":
                expect_removed.add(name)
            print("pmd_chaos: %6.1fs %s: driver pid %d, mode %s" %
                  (now - start, name, p.pid, mode), flush=True)
        for entry in list(running):
            p, i, mode, kill_at = entry
            if kill_at is not None and now >= kill_at and p.poll() is None:
                p.send_signal(signal.SIGKILL)
            rc = p.poll()
            if rc is None:
                continue
            running.remove(entry)
            text = p.stdout.read()
            p.stdout.close()
            results.append((i, mode, rc, text))
            if mode == "forever" and rc != -signal.SIGKILL:
                fail(seed, "ipc%d driver (forever) ended by itself with %d:\n%s" %
                     (i, rc, text), output())
            if mode != "forever" and rc != 0:
                fail(seed, "ipc%d driver (%s) exited %d:\n%s" % (i, mode, rc, text),
                     output())
        rss = proc_rss(app.pid)
        if rss is not None:
            samples.append((now - start, rss))
        time.sleep(0.05)

    # Every driver has left: the app's descriptors are back to what they were.
    time.sleep(1)
    fds_after = proc_fds(app.pid)
    app.send_signal(signal.SIGINT)
    try:
        rc = app.wait(timeout=60)
    except subprocess.TimeoutExpired:
        app.kill()
        fail(seed, "iodp-pmd did not stop on SIGINT", output())
    reader.join(timeout=10)
    text = output()
    if rc != 0:
        fail(seed, "iodp-pmd exited %d" % rc, text)
    if fds_before is not None and fds_after is not None and fds_after > fds_before:
        fail(seed, "iodp-pmd had %d descriptors before the first driver, %d after the last "
             "left" % (fds_before, fds_after), text)
    with open(out) as f:
        js = json.load(f)
    if js["mismatches"] != 0 or js["lost"] != 0:
        fail(seed, "mismatches %d, lost %d" % (js["mismatches"], js["lost"]), text)
    removed = {}
    for d in js["per_device"]:
        if d["name"].startswith("emul"):
            if d["mismatches"] != 0:
                fail(seed, "%s: %d mismatches" % (d["name"], d["mismatches"]), text)
            if d["name"] not in expect_removed and d["requests"] != d["completions"]:
                fail(seed, "%s: %d requests, %d completions" %
                     (d["name"], d["requests"], d["completions"]), text)
        if d["state"] == "removed":
            removed[d["name"]] = d.get("reason", "")
    for name in sorted(expect_removed):
        if name not in removed or not removed[name]:
            fail(seed, "%s should be reported removed with a reason; per_device: %s" %
                 (name, json.dumps(js["per_device"])), text)
        if not re.search(r"event: %s \(port \d+\) removed: " % name, text):
            fail(seed, "no event line says %s was removed" % name, text)
    # Resident set: the peak in the last quarter against the peak in the second.
    dur = args.duration
    warm = max([r for t, r in samples if 0.25 * dur <= t < 0.5 * dur] or [0])
    late = max([r for t, r in samples if t >= 0.75 * dur] or [0])
    if not args.no_rss_check and warm and late > warm + warm // 4 + (32 << 20):
        fail(seed, "resident set grew from %d MiB to %d MiB" % (warm >> 20, late >> 20), text)
    print("pmd_chaos: %d drivers (%s), %d devices removed as expected (%s); "
          "%d requests, %d completions, 0 mismatches, 0 lost; descriptors %s -> %s; "
          "resident set %d -> %d MiB" %
          (len(results), ", ".join(sorted(set(m for _, m, _, _ in results))), len(removed),
           ", ".join(sorted(removed)), js["requests"], js["completions"], fds_before,
           fds_after, warm >> 20, late >> 20))
    print("pmd_chaos: OK (seed %d)" % seed)


if __name__ == "__main__":
    main()
