#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The guest half of the iommufd-selftest suite's differential run (differential.py): the
# kernel's own iommufd selftest, the same binary the suite runs on iodp, against this
# kernel's iommufd and its mock devices (CONFIG_IOMMUFD_TEST). /init runs it as case
# iommufd-selftest (tests/vfio/make_initrd.py --case-script).
#
# The selftest's TAP goes to a file and is printed whole between two markers after it
# exits, so that kernel messages on the console cannot split its lines.

# Its *_huge and *_hugepage variants map up to 64 2 MiB pages with MAP_HUGETLB.
echo 96 >/proc/sys/vm/nr_hugepages
echo "IODP-HUGEPAGES $(cat /proc/sys/vm/nr_hugepages)"
start=$(cut -d' ' -f1 /proc/uptime)
/bin/iommufd >/tmp/tap 2>&1
rc=$?
end=$(cut -d' ' -f1 /proc/uptime)
echo "IODP-TAP-BEGIN"
cat /tmp/tap
echo "IODP-TAP-END exit $rc, uptime $start s to $end s"
# kselftest's exit status: 0 all passed, 1 some failed; anything else (a signal, a
# harness error) means the run did not finish.
if [ "$rc" -le 1 ]; then
	echo "IODP-CASE iommufd-selftest PASS"
else
	echo "IODP-CASE iommufd-selftest FAIL: the selftest exited with $rc"
fi
