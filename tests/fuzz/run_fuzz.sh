#!/usr/bin/env bash
# Run one libFuzzer target for a bounded time from its seed corpus:
#   run_fuzz.sh TARGET SEED_DIR FOUND_DIR [libFuzzer options]
# New inputs go to FOUND_DIR (in the build directory), never into the repository's seeds.
# IODP_FUZZ_SECONDS (default 20) bounds the run; a crash leaves crash-* in FOUND_DIR and
# fails the test (make it a seed and a regression test).
set -euo pipefail
target=$1 seeds=$2 found=$3
shift 3
mkdir -p "$found"
# (libFuzzer's own failure status is 77, which meson reads as "skipped": say 1.)
exec "$target" -max_total_time="${IODP_FUZZ_SECONDS:-20}" -timeout=10 -rss_limit_mb=2048 \
	-error_exitcode=1 -timeout_exitcode=1 \
	-artifact_prefix="$found/" -print_final_stats=1 "$@" "$found" "$seeds"
