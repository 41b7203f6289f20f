#!/usr/bin/env bash
# Debian's own kernel for the vfio-qemu tests (the kernel users actually run): the image
# linux-image-amd64 depends on (6.1 on Debian 12), fetched with `apt-get download` and
# unpacked with `dpkg-deb -x` into a cache outside the tree; never installed.
#
#   tools/guest/debian-kernel.sh   prints the unpacked tree's path on the last line; it holds
#                                  tree/boot/vmlinuz-REL and tree/lib/modules/REL (REL in
#                                  ./release)
#
# Environment: IODP_KERNEL_CACHE (default /var/cache/iodp, else ~/.cache/iodp).
set -euo pipefail
say() { echo "debian-kernel: $*" >&2; }

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
if [ -z "$pkg" ]; then
	say "apt knows no linux-image-amd64 (apt-get update?)"
	exit 1
fi
version=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
cache=${IODP_KERNEL_CACHE:-/var/cache/iodp}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/iodp
	mkdir -p "$cache"
fi
dir=$cache/debian-$pkg-$version
if [ -f "$dir/release" ]; then
	echo "$dir"
	exit 0
fi
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [ -f "$dir/release" ]; then
	echo "$dir"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say "apt-get download $pkg ($version)"
(cd "$tmp" && apt-get download -q "$pkg=$version" >&2)
dpkg-deb -x "$tmp"/*.deb "$dir/tree"
release=$(ls "$dir/tree/lib/modules" | head -n1)
if [ ! -f "$dir/tree/boot/vmlinuz-$release" ] || [ ! -d "$dir/tree/lib/modules/$release/kernel" ]; then
	say "$pkg did not unpack as expected (no boot/vmlinuz-$release or modules)"
	exit 1
fi
echo "$release" >"$dir/release"
say "unpacked $pkg into $dir"
echo "$dir"
