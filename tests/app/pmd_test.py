#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""iodp-pmd end to end: the app as a user runs it, and drivers in other processes.

    pmd_test.py IODP_PMD IODP_IPC_DRIVER [unittest args]
"""
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

PMD = None
DRIVER = None

SUMMARY_FIELDS = ["duration_s", "workers", "requests", "completions", "faults",
                  "mismatches", "lost", "requests_per_s", "hit_rate", "sync_latency_us",
                  "per_worker"]
WORKER_FIELDS = ["lcore", "requests", "requests_per_s", "hit_rate", "walks_per_s", "faults"]


def eal(prefix):
    """EAL arguments of one test run: its own file prefix (runtime dir, telemetry)."""
    return ["--file-prefix", prefix]


class App:
    """iodp-pmd in the background, its output collected line by line."""

    def __init__(self, args, prefix):
        self.prefix = prefix
        self.proc = subprocess.Popen([PMD] + eal(prefix) + ["--"] + args,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines = []
        self.fresh = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            self.fresh.put(line)

    def wait_for(self, pattern, timeout=30):
        """The first line (seen so far or later) matching pattern."""
        rx = re.compile(pattern)
        for line in list(self.lines):
            if rx.search(line):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.fresh.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.fresh.empty():
                    break
                continue
            if rx.search(line):
                return line
        raise AssertionError("iodp-pmd never printed /%s/; output:\n%s" %
                             (pattern, "".join(self.lines)))

    def finish(self, sig=None, timeout=60):
        if sig is not None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        self.proc.stdout.close()
        return rc, "".join(self.lines)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=10)
        self.proc.stdout.close()


def run_pmd(args, prefix, timeout=120):
    p = subprocess.run([PMD] + eal(prefix) + ["--"] + args, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def mapped_files(pid):
    with open("/proc/%d/maps" % pid) as f:
        return f.read()


def free_hugepages():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("HugePages_Free:"):
                return int(line.split()[1])
    return 0


class PmdTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="iodp-pmd-test-")
        self.prefix = "iodp-test-%d-%s" % (os.getpid(), self.id().split(".")[-1])
        self.apps = []

    def tearDown(self):
        for a in self.apps:
            a.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, args):
        a = App(args, self.prefix)
        self.apps.append(a)
        return a

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def check_summary(self, js):
        for k in SUMMARY_FIELDS:
            self.assertIn(k, js)
        self.assertIn("p50", js["sync_latency_us"])
        self.assertIn("p99", js["sync_latency_us"])
        self.assertEqual(len(js["per_worker"]), js["workers"])
        for w in js["per_worker"]:
            for k in WORKER_FIELDS:
                self.assertIn(k, w)
        self.assertGreater(js["requests"], 0)
        self.assertEqual(js["mismatches"], 0)
        self.assertEqual(js["lost"], 0)
        self.assertGreater(js["requests_per_s"], 0)
        self.assertTrue(0 <= js["hit_rate"] <= 1)

    # -- the built-in default ----------------------------------------------------------------
    def test_default_config(self):
        out = self.path("summary.json")
        rc, stdout, stderr = run_pmd(["--duration", "3", "--json", out], self.prefix)
        self.assertEqual(rc, 0, stdout + stderr)
        self.assertRegex(stdout, r"config built-in default: 4 device\(s\)")
        lines = re.findall(r"^\[\s*\d+\.\ds\] .*req/s  hit .*walks .*faults \d+  invals "
                           r".*sync p99 ", stdout, re.M)
        self.assertGreaterEqual(len(lines), 2, stdout)
        self.assertIn("iodp-pmd summary", stdout)
        self.assertIn("stopped by --duration", stdout)
        with open(out) as f:
            js = json.load(f)
        self.check_summary(js)
        self.assertEqual(js["config"], "built-in default")
        self.assertEqual(js["requests"], js["completions"])
        self.assertGreater(js["faults"], 0, "emul2 sends 0.5% to unmapped IOVAs")
        self.assertEqual(js["faults"], js["expected_faults"])
        self.assertGreater(js["commands"], 0, "the strict device invalidates")
        self.assertGreater(js["sync_latency_us"]["p99"], 0)
        self.assertEqual(sorted(d["name"] for d in js["per_device"]),
                         ["emul0", "emul1", "emul2", "emul3"])
        self.assertAlmostEqual(js["duration_s"], 3, delta=1)

    # -- start-up says what it did (issue 20) ------------------------------------------------
    def test_startup_names_added_eal_options_and_stats_are_consistent(self):
        out = self.path("summary.json")
        p = subprocess.run([PMD, "--", "--duration", "1", "--json", out], capture_output=True,
                           text=True, timeout=120)  # no EAL options: the app adds its own
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        added = re.search(r"^iodp-pmd: EAL options added: (.*) \(give your own", p.stdout, re.M)
        self.assertIsNotNone(added, p.stdout)
        self.assertIn("--no-pci", added.group(1))
        self.assertIn("--file-prefix=iodp-pmd", added.group(1))
        sync = re.search(r"^invalidation \d+ commands, (\d+) syncs.*: p50 ([\d.]+) us, "
                         r"p99 ([\d.]+) us, max ([\d.]+) us", p.stdout, re.M)
        self.assertIsNotNone(sync, p.stdout)
        p50, p99, mx = (float(sync.group(i)) for i in (2, 3, 4))
        self.assertLessEqual(p50, p99)
        self.assertLessEqual(p99, mx, "a percentile above the max is a bucket edge, capped")
        with open(out) as f:
            js = json.load(f)
        lat = js["sync_latency_us"]
        self.assertLessEqual(lat["p99"], lat["max"])
        self.assertTrue(all(d["checks_answers"] for d in js["per_device"]))

    def test_second_instance_names_the_file_prefix(self):
        first = self.start(["--duration", "30", "--stats-interval", "0"])
        first.wait_for(r"telemetry at")
        rc, stdout, stderr = run_pmd(["--duration", "1"], self.prefix)
        self.assertEqual(rc, 1, stdout + stderr)
        self.assertIn("another DPDK process (pid %d) runs with --file-prefix=%s"
                      % (first.proc.pid, self.prefix), stderr)
        self.assertIn("--file-prefix=%s-2" % self.prefix, stderr)
        self.assertNotIn("Success", stderr)

    def test_control_and_worker_on_one_cpu_is_said(self):
        p = subprocess.run([PMD] + eal(self.prefix) + ["--lcores=0@0,1@0", "--",
                            "--duration", "1", "--stats-interval", "0"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"warning: the control thread \(lcore 0\) shares CPU 0 "
                                   r"with worker lcore 1")
        q = subprocess.run([PMD] + eal(self.prefix) + ["-l", "0-1", "--", "--duration", "1",
                            "--stats-interval", "0"], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(q.returncode, 0, q.stdout + q.stderr)
        self.assertNotIn("shares CPU", q.stdout)

    def test_print_config_round_trips(self):
        rc, text, _ = run_pmd(["--print-config"], self.prefix)
        self.assertEqual(rc, 0)
        cfg = self.write("default.conf", text)
        out = self.path("s.json")
        rc, stdout, stderr = run_pmd(["--config", cfg, "--duration", "1", "--json", out,
                                      "--stats-interval", "0"], self.prefix)
        self.assertEqual(rc, 0, stdout + stderr)
        self.assertNotRegex(stdout, r"^\[\s*\d", "--stats-interval 0: no live line")
        with open(out) as f:
            self.assertEqual(len(json.load(f)["per_device"]), 4)

    # -- a configuration file ----------------------------------------------------------------
    def test_config_file(self):
        cfg = self.write("two.conf", """
# two devices, one worker
[engine]
workers = 1          # the EAL gives one worker lcore here at least
burst = 32
iotlb_entries = 4096

[device emul5]
profile = random
format = smmu-nested
ws = 32M
verify = yes

[device emul9]
profile = stream
format = vtd
pgsize = 2m
ws = 16M
verify = 1
""")
        out = self.path("s.json")
        rc, stdout, stderr = run_pmd(["--config", cfg, "--duration", "2", "--json", out],
                                     self.prefix)
        self.assertEqual(rc, 0, stdout + stderr)
        with open(out) as f:
            js = json.load(f)
        self.check_summary(js)
        self.assertEqual(js["config"], cfg)
        self.assertEqual(js["workers"], 1)
        self.assertEqual([d["name"] for d in js["per_device"]], ["emul5", "emul9"])
        self.assertIn("smmu-nested", js["per_device"][0]["description"])
        self.assertIn("2m pages", js["per_device"][1]["description"])

    def test_device_option(self):
        out = self.path("s.json")
        rc, stdout, stderr = run_pmd(["--device", "emul3,profile=zipf,ws=16M,verify=1",
                                      "--duration", "1", "--json", out], self.prefix)
        self.assertEqual(rc, 0, stdout + stderr)
        with open(out) as f:
            self.assertEqual([d["name"] for d in json.load(f)["per_device"]], ["emul3"])

    def test_bad_config(self):
        cases = [
            ("[device emul0]\nprofile = nic\nprofle = nic\n", r":3: .*unknown key 'profle'"),
            ("[device emul0]\nprofile = nic\nws = lots\n", r":3: \[device emul0\] .*ws"),
            ("[device emul0]\nprofile = nick\n", r":2: \[device emul0\] .*profile"),
            ("[devise emul0]\nprofile = nic\n", r":1: unknown section \[devise emul0\]"),
            ("[engine]\nburst = 0\n[device emul0]\n", r":2: \[engine\] burst = 0"),
            ("[engine]\nwrkers = 2\n[device emul0]\n", r":2: \[engine\]: unknown key 'wrkers'"),
            ("[device emul0]\nprofile nic\n", r":2: 'profile nic': expected key = value"),
            ("[device emul0]\nprofile = nic\nprofile = nvme\n", r":3: .*profile: given twice"),
            ("[device vhost0]\n", r":1: \[device vhost0\]: no driver by that name"),
            ("[device emul0]\n[device emul0]\n", r":2: \[device emul0\] again"),
            ("profile = nic\n", r":1: profile: a key outside any section"),
            ("[engine]\nworkers = 1\n", r": no \[device NAME\] section"),
            ("[device emul0]\nqueues = 99\n", r":2: \[device emul0\] .*queues"),
            # A driver's own check of values together points at the key it blames.
            ("[device emul0]\nverify = 1\nprofile = replay\n",
             r":3: \[device emul0\] .*profile=replay takes no"),
            ("[device emul0]\nws = 64G\nformat = vtd\n", r":2: \[device emul0\] .*page tables"),
        ]
        for i, (text, want) in enumerate(cases):
            with self.subTest(config=text):
                cfg = self.write("bad%d.conf" % i, text)
                rc, stdout, stderr = run_pmd(["--config", cfg, "--duration", "1"],
                                             self.prefix)
                self.assertEqual(rc, 2, stdout + stderr)
                self.assertRegex(stderr, re.escape(cfg) + want)
                self.assertNotIn("summary", stdout)
        rc, _, stderr = run_pmd(["--config", self.path("missing.conf")], self.prefix)
        self.assertEqual(rc, 2)
        self.assertIn("missing.conf: cannot read the configuration", stderr)
        for args, want in [(["--duration", "soon"], "--duration needs"),
                           (["--frobnicate"], "unknown option '--frobnicate'"),
                           (["-l", "0-1"], "EAL options go before '--'"),
                           (["--device", "emul0,colour=red"], "unknown argument 'colour'")]:
            rc, _, stderr = run_pmd(args, self.prefix)
            self.assertEqual(rc, 2, args)
            self.assertIn(want, stderr)

    # -- signals -----------------------------------------------------------------------------
    def test_sigint_prints_summary(self):
        out = self.path("s.json")
        app = self.start(["--json", out])
        app.wait_for(r"^\[\s*1\.\ds\]")
        rc, text = app.finish(signal.SIGINT)
        self.assertEqual(rc, 0, text)
        self.assertIn("iodp-pmd summary", text)
        self.assertIn("stopped by SIGINT", text)
        with open(out) as f:
            js = json.load(f)
        self.check_summary(js)
        self.assertEqual(js["stopped_by"], "SIGINT")

    def test_sigterm_stops_cleanly(self):
        app = self.start([])
        app.wait_for(r"^\[\s*1\.\ds\]")
        rc, text = app.finish(signal.SIGTERM)
        self.assertEqual(rc, 0, text)
        self.assertIn("stopped by SIGTERM", text)

    # -- telemetry ---------------------------------------------------------------------------
    def test_telemetry(self):
        out = self.path("s.json")
        app = self.start(["--duration", "30", "--json", out])
        line = app.wait_for(r"telemetry at (\S+)/dpdk_telemetry\.v2")
        sock_path = re.search(r"telemetry at (\S+/dpdk_telemetry\.v2)", line).group(1)
        app.wait_for(r"^\[\s*2\.\ds\]")

        # With DPDK's own client, as a user would.
        tool = shutil.which("dpdk-telemetry.py")
        self.assertIsNotNone(tool, "dpdk-telemetry.py (package dpdk-dev) is missing: "
                             "tools/setup.sh installs it")
        p = subprocess.run([sys.executable, tool, "-f", self.prefix], text=True,
                           input="/iodp/summary\n/iodp/rates\n/iodp/stats\n/iodp/devices\n",
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        replies = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        self.assertEqual(len(replies), 4, p.stdout)
        summary = replies[0]["/iodp/summary"]
        for k in SUMMARY_FIELDS:
            if k != "per_worker":  # DPDK 22.11 telemetry nests one level: see /iodp/rates
                self.assertIn(k, summary)
        self.assertGreater(summary["requests"], 0)
        self.assertEqual(summary["mismatches"], 0)
        self.assertIn("p99", summary["sync_latency_us"])
        rates = replies[1]["/iodp/rates"]
        self.assertGreater(float(rates["total"]["requests_per_s"]), 0)
        self.assertIn("worker0", rates)
        for k in WORKER_FIELDS:
            self.assertIn(k, rates["worker0"])
        self.assertGreater(replies[2]["/iodp/stats"]["requests"], 0)
        self.assertEqual(sorted(replies[3]["/iodp/devices"]),
                         ["emul0", "emul1", "emul2", "emul3"])
        # One counter table (lib/engine/iodp/counters.h) names both reports' counters.
        stats_keys = set(replies[2]["/iodp/stats"])
        self.assertEqual(set(summary["stats"]), stats_keys)
        devices = replies[3]["/iodp/devices"]

        # And straight over the socket: the numbers move.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(sock_path)
        s.recv(1024)
        s.send(b"/iodp/summary")
        first = json.loads(s.recv(65536))["/iodp/summary"]["requests"]
        time.sleep(1.5)
        s.send(b"/iodp/summary")
        second = json.loads(s.recv(65536))["/iodp/summary"]["requests"]
        s.close()
        self.assertGreater(second, first)
        rc, text = app.finish(signal.SIGINT)
        self.assertEqual(rc, 0, text)
        with open(out) as f:
            js = json.load(f)
        self.assertEqual(set(js["stats"]), stats_keys)
        for d in js["per_device"]:  # the same counters; each report adds its own fields
            self.assertEqual(set(d) - {"name", "reason"},
                             set(devices[d["name"]]) - {"port", "queues", "ctl_device"})

    # -- drivers in other processes ----------------------------------------------------------
    def test_driver_hears_the_apps_reason_and_stops_with_the_app(self):
        # Under heavy load (load average 20 on 2 CPUs) the first driver was seen to be gone
        # before the second one connected, once in a few runs, which stops the device; the
        # scenario is then run again (at most three times) and each failed try is shown.
        tries = []
        for attempt in range(3):
            result = self._second_driver_is_refused(attempt)
            if result is None:
                return
            tries.append(result)
            if "ipc0 already has a driver" in result:
                break  # the refusal itself was seen: a real failure, not the setup
        self.fail("\n---- next try ----\n".join(tries))

    def _second_driver_is_refused(self, attempt):
        """None when the whole scenario passed, else what went wrong."""
        sock = self.path("ipc0-%d.sock" % attempt)
        cfg = self.write("one-%d.conf" % attempt, "[device ipc0]\npath = %s\n" % sock)
        app = self.start(["--config", cfg, "--stats-interval", "0"])
        app.wait_for(r"telemetry at")
        first = subprocess.Popen([DRIVER, "--socket", sock, "--mode", "forever"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        app.wait_for(r"ipc0: driver 'iodp-ipc-driver' \(pid \d+\) attached", timeout=30)
        time.sleep(0.5)
        if first.poll() is not None:
            out, err = first.communicate()
            app.finish(signal.SIGINT)
            return "the first driver ended before the second came: %s%s" % (out, err)
        second = subprocess.run([DRIVER, "--socket", sock], capture_output=True, text=True,
                                timeout=60)
        problems = []
        if second.returncode != 1 or "ipc0 already has a driver" not in second.stderr or \
                "cannot send to the app" in second.stderr:
            problems.append("second driver: rc %d: %s%s" % (second.returncode, second.stdout,
                                                            second.stderr))
        rc, text = app.finish(signal.SIGINT)
        if rc != 0:
            problems.append("app rc %d: %s" % (rc, text))
        out, err = first.communicate(timeout=30)  # --mode forever ends when the app does
        if first.returncode != 0 or "the app closed the connection" not in out:
            problems.append("first driver rc %d: %s%s" % (first.returncode, out, err))
        return "\n".join(problems) if problems else None

    def test_multi_process(self):
        socks = {n: self.path("%s.sock" % n) for n in ["ipc0", "ipc1", "ipc2", "ipc3"]}
        cfg = self.write("ipc.conf", """
[engine]
workers = 1
[device emul0]
profile = nic
ws = 16M
verify = 1
[device ipc0]
path = %(ipc0)s
queues = 2
[device ipc1]
path = %(ipc1)s
[device ipc2]
path = %(ipc2)s
[device ipc3]
path = %(ipc3)s
entries = 256
""" % socks)
        out = self.path("s.json")
        app = self.start(["--config", cfg, "--json", out])
        app.wait_for(r"^\[\s*1\.\ds\]")
        pid = app.proc.pid
        huge = free_hugepages() >= 32

        # A well-behaved driver: attach, map, traffic checked answer by answer, unmap, bye.
        d = subprocess.run([DRIVER, "--socket", socks["ipc0"], "--requests", "50000"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(d.returncode, 0, d.stdout + d.stderr)
        self.assertIn("mismatches=0", d.stdout)
        self.assertIn("faults_after_unmap=2000", d.stdout)
        if huge:
            self.assertIn("guest memory on hugepages", d.stdout)
        app.wait_for(r"event: ipc0 \(port 1\) removed: device gone: driver detached \(BYE\)")

        # Garbage on the socket, then nonsense in a ring: each stops only its own device.
        for name, mode, why in [("ipc1", "garbage", "driver protocol error: a message of 7"),
                                ("ipc2", "corrupt-ring", "driver corrupted a request ring")]:
            d = subprocess.run([DRIVER, "--socket", socks[name], "--mode", mode],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(d.returncode, 0, d.stdout + d.stderr)
            app.wait_for(r"event: %s \(port \d\) removed: device gone: %s" % (name, why))

        # A driver killed mid-traffic.
        drv = subprocess.Popen([DRIVER, "--socket", socks["ipc3"], "--mode", "forever"],
                               stdout=subprocess.PIPE, text=True)
        self.assertIn("attached to ipc3", drv.stdout.readline())
        time.sleep(1)
        self.assertIn("memfd:iodp-driver-guest", mapped_files(pid))
        drv.kill()
        drv.wait()
        drv.stdout.close()
        app.wait_for(r"event: ipc3 \(port 4\) removed: device gone: driver disconnected")
        # Everything the drivers shared, and the rings, are unmapped.
        maps = mapped_files(pid)
        self.assertNotIn("iodp-driver-guest", maps)
        self.assertNotIn("iodp-ipc", maps)
        for name in ["ipc0", "ipc1", "ipc2", "ipc3"]:
            self.assertFalse(os.path.exists(socks[name]), "socket left behind: " + name)

        # The emulated device kept running through all of it.
        before = len(app.lines)
        app.wait_for(r"^\[\s*\d+\.\ds\] [1-9]")
        rc, text = app.finish(signal.SIGINT)
        self.assertEqual(rc, 0, text)
        self.assertGreater(len(app.lines), before)
        with open(out) as f:
            js = json.load(f)
        self.check_summary(js)
        self.assertEqual(js["devices_lost"], 4)
        devs = {d["name"]: d for d in js["per_device"]}
        self.assertEqual(devs["emul0"]["state"], "running")
        self.assertGreater(devs["emul0"]["requests"], 0)
        self.assertEqual(devs["ipc0"]["requests"], devs["ipc0"]["completions"])
        self.assertEqual(devs["ipc0"]["requests"], 2 * 50000 + 2 * 1000)
        for name in ["ipc0", "ipc1", "ipc2", "ipc3"]:
            self.assertEqual(devs[name]["state"], "removed")
        self.assertEqual(len(js["events"]), 4)


if __name__ == "__main__":
    PMD, DRIVER = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
