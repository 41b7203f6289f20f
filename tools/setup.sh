#!/usr/bin/env bash
# Set up iodp on Debian: install the packages that are missing, reserve 2 MiB hugepages,
# configure and build. Safe to run again; a machine that has everything needs no network.
#
#   tools/setup.sh            release build in build/
#   tools/setup.sh --asan     also the AddressSanitizer + UBSan build in build-asan/
#   tools/setup.sh --tsan     also configure the ThreadSanitizer build in build-tsan/ (meson
#                             test --suite tsan builds what that suite needs)
#   tools/setup.sh --fuzz     also configure the libFuzzer build in build-fuzz/ (clang-16,
#                             ASan + UBSan; meson test --suite fuzz builds the targets)
#
# Environment: IODP_HUGEPAGES (2 MiB pages to reserve, default 512 = 1 GiB; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."

asan=0
tsan=0
fuzz=0
for arg in "$@"; do
	case "$arg" in
	--asan) asan=1 ;;
	--tsan) tsan=1 ;;
	--fuzz) fuzz=1 ;;
	*) echo "setup: unknown argument '$arg' (known: --asan, --tsan, --fuzz)" >&2; exit 2 ;;
	esac
done

say() { echo "setup: $*"; }

# --- packages ------------------------------------------------------------------------------
packages=(g++ meson ninja-build pkgconf libdpdk-dev dpdk libhwloc-dev libgtest-dev
	  libgmock-dev libbenchmark-dev python3 dpdk-dev linux-source-6.12
	  qemu-system-x86 busybox-static cpio make gcc bc flex bison libelf-dev libssl-dev
	  xz-utils)
# (dpdk-dev brings dpdk-telemetry.py, the client the app's telemetry test uses;
# linux-source-6.12 the kernel's iommufd selftest, the iommufd-selftest suite, and the
# vfio-qemu guest kernel; the rest is for vfio-qemu too: QEMU, the guest's initramfs, and
# the guest kernel's build.)
# clang-16, libFuzzer and clang's sanitizer runtimes: the fuzz targets (build-fuzz/).
packages+=(clang-16 libfuzzer-16-dev libclang-rt-16-dev)
# python3-matplotlib draws tools/bench-report's plots.
packages+=(python3-matplotlib)
# {fmt}: Status messages (lib/base/iodp/status.h).
packages+=(libfmt-dev)
# nlohmann-json: iodp-pmd's JSON summary.
packages+=(nlohmann-json3-dev)
# abseil's B-tree: an IOAS's mappings (lib/ctl).
packages+=(libabsl-dev)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	sudo_cmd=()
	[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	if ! "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
		"${sudo_cmd[@]}" apt-get update -q
		"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
else
	say "all packages present"
fi

# --- hugepages -----------------------------------------------------------------------------
want=${IODP_HUGEPAGES:-512}
nr=/proc/sys/vm/nr_hugepages
if [ "$want" -eq 0 ]; then
	say "hugepages: skipped (IODP_HUGEPAGES=0); runs use --no-huge and ordinary pages"
elif [ "$(id -u)" -ne 0 ]; then
	say "hugepages: not root, cannot reserve them; runs fall back to --no-huge"
else
	have=$(cat "$nr" 2>/dev/null || echo 0)
	if [ "$have" -lt "$want" ]; then
		echo "$want" >"$nr" 2>/dev/null || true
		have=$(cat "$nr" 2>/dev/null || echo 0)
	fi
	if ! mountpoint -q /dev/hugepages 2>/dev/null; then
		mkdir -p /dev/hugepages 2>/dev/null || true
		mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true
	fi
	if [ "$have" -gt 0 ] && mountpoint -q /dev/hugepages 2>/dev/null; then
		say "hugepages: $have x 2 MiB reserved, hugetlbfs at /dev/hugepages"
	else
		say "hugepages: could not reserve or mount them (got $have pages); runs fall back" \
		    "to --no-huge and ordinary 4 KiB pages (more TLB misses)"
	fi
fi

# --- vfio-qemu: Debian's own kernel image (apt-get download, unpacked into a cache outside
# the tree, not installed). The guest kernel built from linux-source-6.12 is built by the
# first `meson test` that needs it (tools/guest/build-kernel.sh, once per machine). Before
# the build: the Debian guest's initramfs target reads its modules.
if ! debian_kernel=$(tools/guest/debian-kernel.sh); then
	say "could not fetch Debian's kernel image for the vfio-qemu tests (apt-get download)"
	exit 1
fi
say "vfio-qemu Debian kernel: $debian_kernel"

# --- build ---------------------------------------------------------------------------------
configure() {
	local dir=$1
	shift
	# Also in meson.build's defaults; given here too so that build directories made
	# before it was set get it on --reconfigure (defaults apply only at first setup).
	set -- -Dpkgconfig.relocatable=true "$@"
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	[ "${build_all:-1}" -eq 0 ] || ninja -C "$dir"
}

configure build
if [ "$asan" -eq 1 ]; then
	# -Db_lundef=false: the sanitizer runtimes resolve symbols at load time.
	configure build-asan -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
		-Db_lundef=false -Dbench=false
fi
if [ "$tsan" -eq 1 ]; then
	# Its own directory: TSan cannot be combined with ASan. Only the tests of suite
	# 'tsan' run there (tests/meson.build).
	# Configured only: `meson test -C build-tsan --suite tsan` (tools/test.sh) builds just
	# what that suite needs, not every test and app again.
	build_all=0 configure build-tsan -Dbuildtype=debugoptimized -Db_sanitize=thread \
		-Db_lundef=false -Dbench=false
fi
if [ "$fuzz" -eq 1 ]; then
	# libFuzzer needs clang; DPDK's headers and libraries work with it as they are.
	# Configured only, like build-tsan: `meson test --suite fuzz` builds the targets.
	CC=clang-16 CXX=clang++-16 build_all=0 configure build-fuzz -Dfuzz=true -Dtests=false \
		-Dbench=false -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
		-Db_lundef=false
fi
say "built: build/apps/iodp-pmd/iodp-pmd, build/apps/iodp-xlate/iodp-xlate, build/bench/iodp-bench"
