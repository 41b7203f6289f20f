#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Run the kernel's iommufd selftest against iodp and compare with the expectations file.

    run_selftest.py SELFTEST IODP_RUN PRELOAD EXPECTATIONS

Runs every test of SELFTEST (tools/testing/selftests/iommu/iommufd.c, built unmodified)
under `iodp-run --test-commands`, reads its TAP lines, and compares them with
EXPECTATIONS: every test that does not pass must be listed there with its reason. A test
that passes but is listed, a failure that is not listed, or a listed name the run does not
have fails this test. Prints the per-test output of every unexpected failure.

In a sanitizer build the preload library needs the sanitizer runtimes loaded first, so the
program is started with LD_PRELOAD set directly (runtimes, then the library).
"""
import os
import re
import subprocess
import sys

KERNEL_REFERENCE = "test iommufd-differential runs it on the real kernel"


def read_test_list(path, fields, usage, valid=lambda parts: True):
    """{NAME: [the other fields]} from a list of "NAME ..." lines of @fields fields each
    (the last one takes the rest of the line); blank and # lines skipped. A line that is not
    @usage, or a name listed twice, ends the run with the file and line."""
    listed = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, fields - 1)
            if len(parts) != fields or not valid(parts):
                sys.exit(f"{path}:{n}: '{line}' is not {usage}")
            if parts[0] in listed:
                sys.exit(f"{path}:{n}: {parts[0]} is listed twice")
            listed[parts[0]] = parts[1:]
    return listed


def read_expectations(path):
    return {name: rest[0] for name, rest in read_test_list(path, 2, "NAME REASON").items()}


def sanitizer_runtimes(preload):
    """The sanitizer runtimes PRELOAD links with (they must be loaded first), if any."""
    out = subprocess.run(["ldd", preload], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*(lib(?:asan|ubsan)\.so[.\d]*) => (\S+)", line)
        if m:
            libs.append(m.group(2))
    return libs


def parse_tap(output):
    """Each test's result (True: passed; a SKIP is not a pass) and its output lines, from
    the kselftest harness's TAP."""
    results = {}
    logs = {}
    current = []
    for line in output.splitlines():
        m = re.match(r"(ok|not ok) \d+ (\S+)(.*)", line)
        if m:
            passed = m.group(1) == "ok" and "# SKIP" not in m.group(3)
            results[m.group(2)] = passed
            logs[m.group(2)] = current + [line]
            current = []
        else:
            current.append(line)
    return results, logs


def hugepages_free():
    """The host's free 2 MiB hugepages (HugePages_Free), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("HugePages_Free:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def hugepage_note(failed, free):
    """A line for failures of the *_huge variants when the host had few hugepages free."""
    if free is None or free >= 64 or not any("huge" in n for n in failed):
        return None
    return (f"note: {free} 2 MiB hugepages were free on the host when the run started; the "
            "selftest's *_huge variants map up to 64 with MAP_HUGETLB, so another process "
            "holding them fails those tests")


def run_on_iodp(selftest, iodp_run, preload):
    """Run SELFTEST against iodp: (results, logs, whole output, exit status)."""
    env = dict(os.environ)
    runtimes = sanitizer_runtimes(preload)
    if runtimes:
        env["LD_PRELOAD"] = ":".join(runtimes + [os.path.abspath(preload)])
        env["IODP_IOMMUFD_TEST"] = "1"
        # The selftest itself is not instrumented: its own allocations are not iodp's.
        env["ASAN_OPTIONS"] = "detect_leaks=0:verify_asan_link_order=0"
        cmd = [selftest]
    else:
        cmd = [iodp_run, "--test-commands", selftest]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    output = run.stdout + run.stderr
    results, logs = parse_tap(output)
    return results, logs, output, run.returncode


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    selftest, iodp_run, preload, expectations = sys.argv[1:]
    expected = read_expectations(expectations)
    free = hugepages_free()
    results, logs, output, returncode = run_on_iodp(selftest, iodp_run, preload)
    if not results:
        print(output[-4000:])
        sys.exit(f"no test results from {selftest} (exit {returncode})")

    problems = []
    for name, passed in sorted(results.items()):
        if passed and name in expected:
            problems.append(f"unexpected pass: {name} (listed: {expected[name]}); "
                            "remove it from the expectations file")
        elif not passed and name not in expected:
            problems.append(f"unexpected failure: {name}")
            print(f"--- {name}")
            print("\n".join(logs[name][-40:]))
    for name in sorted(set(expected) - set(results)):
        problems.append(f"listed but not run: {name}")

    passes = sum(results.values())
    print(f"iommufd selftest on iodp: {passes}/{len(results)} pass, "
          f"{len(results) - passes} expected failures (kernel: {KERNEL_REFERENCE})")
    for p in problems:
        print(p)
    note = hugepage_note([n for n, ok in results.items() if not ok and n not in expected], free)
    if note:
        print(note)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
