#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Build the kernel's iommufd selftest (tools/testing/selftests/iommu/iommufd.c), unmodified,
# from Debian's linux-source-6.12 tarball.
#
#   build_selftest.sh OUTPUT COMPAT_HEADER TARBALL CC...
#
# The files it needs are extracted once into a cache outside the source tree
# ($IODP_KSRC_CACHE, else /var/cache/iodp when writable, else ~/.cache/iodp), keyed by the
# tarball's size and time, so a rebuild does not read the 150 MB tarball again. The uapi
# headers get what the kernel's headers_install does (no __user annotations).
set -euo pipefail
out=$1 compat=$2 tarball=$3
shift 3
cc=("$@")

if [ ! -f "$tarball" ]; then
	echo "build_selftest: $tarball not found: install Debian's linux-source-6.12" \
	     "(tools/setup.sh does)" >&2
	exit 1
fi
root=${IODP_KSRC_CACHE:-}
if [ -z "$root" ]; then
	if mkdir -p /var/cache/iodp 2>/dev/null && [ -w /var/cache/iodp ]; then
		root=/var/cache/iodp
	else
		root=${XDG_CACHE_HOME:-$HOME/.cache}/iodp
	fi
fi
key=$(stat -c '%s-%Y' "$tarball")
cache="$root/iommufd-selftest-$key"
src=linux-source-6.12
members=(
	"$src/tools/testing/selftests/iommu/iommufd.c"
	"$src/tools/testing/selftests/iommu/iommufd_utils.h"
	"$src/tools/testing/selftests/kselftest_harness.h"
	"$src/tools/testing/selftests/kselftest.h"
	"$src/drivers/iommu/iommufd/iommufd_test.h"
	"$src/include/uapi/linux/iommufd.h"
	"$src/include/uapi/linux/vfio.h"
)
if [ ! -f "$cache/done" ]; then
	mkdir -p "$root"
	tmp=$(mktemp -d "$root/.extract.XXXXXX")
	chmod 755 "$tmp"
	trap 'rm -rf "$tmp"' EXIT
	echo "build_selftest: extracting the selftest from $tarball into $cache (once)"
	tar -xJf "$tarball" -C "$tmp" "${members[@]}"
	mkdir -p "$tmp/include/linux"
	for h in iommufd.h vfio.h; do
		sed -E -e 's/([[:space:](])(__user|__force|__iomem)[[:space:]]/\1/g' \
		       -e 's/__attribute_const__([[:space:]]|$)/\1/g' \
		       "$tmp/$src/include/uapi/linux/$h" >"$tmp/include/linux/$h"
	done
	touch "$tmp/done"
	rm -rf "$cache"
	mv "$tmp" "$cache"
	trap - EXIT
fi
# The kernel's selftest flags (tools/testing/selftests/iommu/Makefile), its uapi headers
# first, and the compatibility header for the five names this tree's headers lack.
"${cc[@]}" -Wall -O2 -Wno-unused-function -D_GNU_SOURCE -I"$cache/include" \
	-include "$compat" -o "$out" \
	"$cache/$src/tools/testing/selftests/iommu/iommufd.c"
