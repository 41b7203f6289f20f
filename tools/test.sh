#!/usr/bin/env bash
# Set up, build and run every test: the release build, then the sanitizer build
# (AddressSanitizer + UndefinedBehaviorSanitizer).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh --asan
echo "test: release build"
meson test -C build --print-errorlogs --num-processes 2
echo "test: AddressSanitizer + UndefinedBehaviorSanitizer build"
meson test -C build-asan --print-errorlogs --num-processes 2
