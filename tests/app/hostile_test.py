#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""iodp-pmd against hostile input: files that never end, control characters and bad UTF-8
in configuration values and driver names, unwritable output, and ipc messages with more
descriptors than fit. Every case ends with a clear message and the documented exit status.

    hostile_test.py IODP_PMD IODP_IPC_DRIVER [unittest args]
"""
import fcntl
import json
import os
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pmd_test as base  # noqa: E402  (the App helper and run_pmd)


class Hostile(unittest.TestCase):
    # pmd_test's fixture, without its tests (they run in app-pmd).
    setUp = base.PmdTest.setUp
    tearDown = base.PmdTest.tearDown
    start = base.PmdTest.start
    path = base.PmdTest.path
    write = base.PmdTest.write

    def run_pmd(self, args):
        return base.run_pmd(args, self.prefix)

    def write_bytes(self, name, data):
        with open(self.path(name), "wb") as f:
            f.write(data)
        return self.path(name)

    # -- unbounded reads ---------------------------------------------------------------------
    def test_config_that_never_ends(self):
        rc, out, err = self.run_pmd(["--config", "/dev/zero"])
        self.assertEqual(rc, 2, out + err)
        self.assertIn("/dev/zero: the configuration is larger than 1024 KiB", err)

    # -- configuration values ----------------------------------------------------------------
    def test_config_control_characters(self):
        for i, (data, want) in enumerate([
                (b"[device emul0]\nprofile = nic\0junk\n", ":2: a control character (0x00)"),
                (b"[device emul0]\nprofile = \x1b[31mnic\n", ":2: a control character (0x1b)"),
        ]):
            with self.subTest(data=data):
                cfg = self.write_bytes("ctl%d.conf" % i, data)
                rc, out, err = self.run_pmd(["--config", cfg, "--duration", "1"])
                self.assertEqual(rc, 2, out + err)
                self.assertIn(want, err)
                self.assertNotIn("\x1b", err)

    def test_values_are_escaped_in_messages(self):
        cfg = self.write_bytes("utf.conf", b"[device emul0]\nprofile = nic\xff\xfe\n")
        rc, out, err = self.run_pmd(["--config", cfg, "--duration", "1"])
        self.assertEqual(rc, 2, out + err)
        self.assertIn(r"profile='nic\xff\xfe' is not one of", err)
        rc, out, err = self.run_pmd(["--device", "emul0,prof\x1bile=1"])
        self.assertEqual(rc, 2, out + err)
        self.assertIn(r"unknown argument 'prof\x1bile'", err)
        self.assertNotIn("\x1b", err)
        rc, out, err = self.run_pmd(["--device", "emul\n0"])
        self.assertEqual(rc, 2, out + err)
        self.assertIn(r"emul\n0", err)

    def test_numbers_are_decimal(self):
        # 017 would be 15 as octal, inside the range; as decimal it is 17, outside.
        rc, out, err = self.run_pmd(["--device", "emul0,queues=017"])
        self.assertEqual(rc, 2, out + err)
        self.assertIn("queues=017 is outside [1, 16]", err)

    def test_usage_errors_exit_2(self):
        rc, out, err = self.run_pmd(["--device", "emul0", "--device", "emul0,profile=nvme"])
        self.assertEqual(rc, 2, out + err)
        self.assertIn("a device named emul0 is already given by --device", err)
        cfg = self.write("one.conf", "[device emul0]\nprofile = nic\n")
        rc, out, err = self.run_pmd(["--config", cfg, "--device", "emul0"])
        self.assertEqual(rc, 2, out + err)
        self.assertIn("already in the configuration file", err)
        many = []
        for i in range(257):
            many += ["--device", "emul%d" % i]
        rc, out, err = self.run_pmd(many)
        self.assertEqual(rc, 2, out + err)
        self.assertIn("257 devices: the engine serves at most 256", err)

    # -- output ------------------------------------------------------------------------------
    def test_json_path_checked_before_the_run(self):
        rc, out, err = self.run_pmd(["--device", "emul0,ws=8M", "--duration", "30",
                                     "--json", self.path("no/such/dir.json")])
        self.assertEqual(rc, 2, out + err)
        self.assertIn("dir.json: cannot write it", err)
        self.assertNotIn("summary", out)

    def test_json_write_failure_exits_1(self):
        rc, out, err = self.run_pmd(["--device", "emul0,ws=8M", "--duration", "0.5",
                                     "--stats-interval", "0", "--json", "/dev/full"])
        self.assertEqual(rc, 1, out + err)
        self.assertIn("--json /dev/full: the summary was not written: No space left", err)

    # -- a hostile ipc driver ----------------------------------------------------------------
    @staticmethod
    def hello(name, mem_size=2 << 20):
        body = struct.pack("<IIQQ32s", 1, 0, mem_size, 0x10000000, name)
        body += b"\0" * (112 - len(body))
        return struct.pack("<IIiI", 1, 1, 0, 0) + body + b"\0" * 128

    @staticmethod
    def guest_memfd(size=2 << 20):
        fd = os.memfd_create("hostile-guest", os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
        return fd

    def connect(self, path):
        for _ in range(100):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.connect(path)
                return s
            except OSError:
                s.close()
                time.sleep(0.1)
        self.fail("cannot connect to " + path)

    def test_ipc_hostile_names_and_descriptors(self):
        socks = {n: self.path("%s.sock" % n) for n in ["ipc0", "ipc1"]}
        cfg = self.write("ipc.conf", """
[engine]
workers = 1
[device emul0]
profile = nic
ws = 8M
[device ipc0]
path = %(ipc0)s
[device ipc1]
path = %(ipc1)s
""" % socks)
        out = self.path("s.json")
        app = self.start(["--config", cfg, "--json", out, "--stats-interval", "0.5"])
        app.wait_for(r"^\[\s*0\.\ds\]")

        # A name with an escape sequence, a newline and bytes that are not UTF-8.
        mem = self.guest_memfd()
        s0 = self.connect(socks["ipc0"])
        s0.sendmsg([self.hello(b"evil\x1b[2J\nname\xff\xfe")],
                   [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", mem))])
        reply, _, _, _ = s0.recvmsg(256, socket.CMSG_SPACE(4 * 4))
        self.assertEqual(struct.unpack_from("<i", reply, 8)[0], 0, reply[128:])
        app.wait_for(r"driver 'evil\\x1b\[2J\\nname\\xff\\xfe' \(pid \d+\) attached")

        # HELLO with 200 descriptors: truncated control data, said as such.
        s1 = self.connect(socks["ipc1"])
        fds = [mem] * 200
        s1.sendmsg([self.hello(b"many")],
                   [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("%di" % len(fds), *fds))])
        app.wait_for(r"event: ipc1 \(port \d\) removed: device gone: driver protocol error: "
                     r"a message with more file descriptors or control data than fit")

        rc, text = app.finish(base.signal.SIGINT)
        s0.close()
        s1.close()
        os.close(mem)
        self.assertEqual(rc, 0, text)
        self.assertNotIn("\x1b", text)
        with open(out, "rb") as f:
            raw = f.read()
        js = json.loads(raw.decode("utf-8"))  # strict: valid UTF-8 and valid JSON
        descs = [d["description"] for d in js["per_device"]]
        self.assertTrue(any("evil\\x1b[2J\\nname\\xff\\xfe" in d for d in descs), descs)


if __name__ == "__main__":
    base.PMD, base.DRIVER = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
