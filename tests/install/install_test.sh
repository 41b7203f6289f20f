#!/usr/bin/env bash
# Install into a scratch destdir and use iodp the way an outside program would, through
# pkg-config only: build examples/library_mode.c with cc and run it against the installed
# libiodp.so, then compile every installed header alone (C++20; the C headers as C11 too).
#
# usage: install_test.sh MESON BUILD_ROOT PREFIX LIBDIR EXAMPLE_C
set -euo pipefail

if [ $# -ne 5 ]; then
	echo "usage: $0 MESON BUILD_ROOT PREFIX LIBDIR EXAMPLE_C" >&2
	exit 2
fi
meson=$1 build_root=$2 prefix=$3 libdir=$4 example=$5
CC=${CC:-cc}
CXX=${CXX:-g++}
# The headers a C program may include; every installed header must compile as C++.
c_headers="iodp.h request.h worker.h ipc_proto.h"

step=setup
reported=0
fail() {
	echo "install_test: FAILED at step '$step': $1" >&2
	reported=1
	exit 1
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/iodp-install.XXXXXX")
# Whatever fails (set -e included), say at which step; always remove the destdir.
trap 'rc=$?; rm -rf "$tmp"; if [ $rc -ne 0 ] && [ $reported -eq 0 ]; then
	echo "install_test: FAILED at step '"'"'$step'"'"' (exit $rc)" >&2; fi' EXIT

# libdir may be relative to the prefix (Debian: lib/x86_64-linux-gnu) or absolute.
case $libdir in
/*) lib=$tmp$libdir ;;
*) lib=$tmp$prefix/$libdir ;;
esac

step="meson install --destdir"
echo "install_test: $step $tmp"
"$meson" install -C "$build_root" --destdir "$tmp" --no-rebuild --quiet ||
	fail "meson install -C $build_root --destdir $tmp --no-rebuild"
[ -f "$lib/pkgconfig/libiodp.pc" ] || fail "no $lib/pkgconfig/libiodp.pc after install"
[ -e "$lib/libiodp.so" ] || fail "no $lib/libiodp.so after install"

# As the README says: PKG_CONFIG_PATH alone, no PKG_CONFIG_SYSROOT_DIR. libiodp.pc is
# relocatable (its prefix is ${pcfiledir}/...), so the flags point into the destdir.
step="exported symbols"
# packaging/libiodp.map: the C API and namespace iodp, one version node, nothing else.
others=$(nm -D --defined-only -C "$lib/libiodp.so" | awk '{ $1 = ""; $2 = ""; sub(/^ +/, ""); print }' |
	grep -v -e '^iodp_' -e '^iodp::' -e '^typeinfo for iodp::' -e '^typeinfo name for iodp::' \
		-e '^vtable for iodp::' -e '^IODP_0\.1$' | sed 's/@@IODP_0\.1$//' |
	grep -v -e '^iodp_' -e '^iodp::' || true)
[ -z "$others" ] || fail "libiodp.so exports symbols outside the C API and namespace iodp: $(echo "$others" | head -5)"
# grep without -q reads all of nm's output: -q would stop at the first match and, under
# pipefail, nm's SIGPIPE would fail the pipeline once the symbol list is long enough.
nm -D --defined-only "$lib/libiodp.so" | grep 'iodp_ioctl@@IODP_0.1' >/dev/null ||
	fail "iodp_ioctl is not exported in version IODP_0.1"

step="pkg-config --cflags --libs libiodp"
export PKG_CONFIG_PATH=$lib/pkgconfig
flags=$(pkg-config --cflags --libs libiodp) || fail "pkg-config cannot use $lib/pkgconfig/libiodp.pc"
echo "install_test: pkg-config: $flags"
case " $flags " in
*" -I$tmp"*) ;;
*) fail "pkg-config --cflags libiodp does not point into the destdir: $flags" ;;
esac

step="cc library_mode.c"
echo "install_test: $step with the pkg-config flags only"
# shellcheck disable=SC2086 # pkg-config output is a list of words
"$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$tmp/library_mode" "$example" $flags ||
	fail "$CC -o library_mode $example $flags"

step="run library_mode"
echo "install_test: $step against the installed libiodp.so"
resolved=$(LD_LIBRARY_PATH=$lib ldd "$tmp/library_mode" | awk '/libiodp\.so/ {print $3}')
case $resolved in
"$lib"/*) ;;
*) fail "library_mode finds libiodp.so at '$resolved', not under $lib" ;;
esac
rc=0
LD_LIBRARY_PATH=$lib "$tmp/library_mode" || rc=$?
[ $rc -eq 0 ] || fail "library_mode exited with status $rc"

# The ipc driver's documented line: DPDK's ring header and iodp's protocol, no library.
step="cc ipc driver with pkg-config --cflags libdpdk libiodp"
ipc_flags=$(pkg-config --cflags libdpdk libiodp) || fail "pkg-config --cflags libdpdk libiodp"
cat >"$tmp/ipc_driver.c" <<'EOF'
#include <iodp/ipc_proto.h>
#include <iodp/request.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
int main(void)
{
	struct iodp_request req = {0};
	(void)req;
	return (int)sizeof(struct rte_ring) == 0;
}
EOF
# shellcheck disable=SC2086
"$CC" -O2 -o "$tmp/ipc_driver" "$tmp/ipc_driver.c" $ipc_flags ||
	fail "$CC -o ipc_driver ipc_driver.c \$(pkg-config --cflags libdpdk libiodp)"
"$tmp/ipc_driver" || fail "the ipc driver snippet did not run"

step="compile the installed headers"
inc=$(find "$tmp" -type d -path '*/include/iodp' | head -n 1)
[ -n "$inc" ] || fail "no include/iodp directory under $tmp"
headers=$(cd "$inc" && find . -maxdepth 1 -name '*.h' -printf '%f\n' | sort)
[ -n "$headers" ] || fail "no headers in $inc"
for h in formats.h impl.h; do
	[ ! -e "$inc/$h" ] || fail "private header $h is installed"
done
echo "install_test: $step: $(echo "$headers" | tr "\n" " ")"
for h in $headers; do
	# shellcheck disable=SC2086
	printf '#include <iodp/%s>\n' "$h" |
		"$CXX" -std=c++20 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -x c++ - $flags ||
		fail "<iodp/$h> does not compile alone as C++20"
done
# shellcheck disable=SC2086
for h in $headers; do printf '#include <iodp/%s>\n' "$h"; done |
	"$CXX" -std=c++20 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -x c++ - $flags ||
	fail "the installed headers do not compile together as C++20"
for h in $c_headers; do
	[ -f "$inc/$h" ] || fail "C header $h not installed"
	# shellcheck disable=SC2086
	printf '#include <iodp/%s>\n' "$h" |
		"$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -x c - $flags ||
		fail "<iodp/$h> does not compile alone as C11"
done

step="finished"
echo "install_test: ok"
