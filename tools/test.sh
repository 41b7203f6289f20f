#!/usr/bin/env bash
# Set up, build and run every test: the release build, then the sanitizer build
# (AddressSanitizer + UndefinedBehaviorSanitizer), then the concurrency tests under
# ThreadSanitizer, then every fuzz target for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh --asan --tsan --fuzz
echo "test: release build"
meson test -C build --print-errorlogs --num-processes 2
echo "test: AddressSanitizer + UndefinedBehaviorSanitizer build"
meson test -C build-asan --print-errorlogs --num-processes 2
echo "test: ThreadSanitizer build (suite tsan)"
meson test -C build-tsan --suite tsan --print-errorlogs --num-processes 2
echo "test: fuzz targets, ${IODP_FUZZ_SECONDS:-20} s each (build-fuzz, libFuzzer + ASan + UBSan)"
meson test -C build-fuzz --suite fuzz --print-errorlogs
