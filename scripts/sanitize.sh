#!/usr/bin/env bash
# Builds mpsearch and its tests with AddressSanitizer and UBSan (-DMPSEARCH_SANITIZE=ON, GCC) into
# build-asan/ and runs the unit and CLI tests there; any sanitizer report fails its test. The
# slowest tests are left out (SANITIZE_EXCLUDE, a ctest regex) so that CI stays well inside its
# time limit: they exercise the same code as the ones that run, only longer.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=${SANITIZE_EXCLUDE:-'cli_search_bayesian_bits|cli_bench_neighbourhood|integer_path_under_|cli_train_lenet5|cli_finetune'}

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPSEARCH_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$(nproc)" --target mpsearch mpsearch_tests
export ASAN_OPTIONS=detect_leaks=1
export LSAN_OPTIONS=suppressions=$PWD/scripts/lsan.supp
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j "$(nproc)" -E "$exclude" "$@"
