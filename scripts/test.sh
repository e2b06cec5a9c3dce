#!/usr/bin/env bash
# Set-up (packages and build), then every unit and end-to-end test through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
