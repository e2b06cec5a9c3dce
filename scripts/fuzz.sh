#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/README.md) with clang, AddressSanitizer and UBSan into
# build-fuzz/, then fuzzes each for FUZZ_SECONDS (default 60), two at a time, from the seed corpora
# of tests/data, with libFuzzer's random seed FUZZ_SEED (default 1: CI explores the same inputs in
# the same order every time, so a finding reproduces and a slower machine runs a prefix of them). Exits 1 naming the input of the first finding (build-fuzz/findings/); a finding
# becomes a regression input under tests/data/fuzz/regressions/<target>/ (fuzz/README.md).
#   scripts/fuzz.sh [target ...]     targets: onnx run_config policy_file archive idx (default all)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
random_seed=${FUZZ_SEED:-1}
targets=("$@")
((${#targets[@]})) || targets=(onnx run_config policy_file archive idx)

cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
  -DMPSEARCH_FUZZ=ON -DMPSEARCH_SANITIZE=ON >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

# seeds <target>: the files its corpus starts from
seeds() {
  case $1 in
    onnx) ls tests/data/*.onnx tests/data/bad/*.onnx ;;
    run_config) find configs tests/data/fuzz/run_config -name '*.yaml' ;;
    *) find "tests/data/fuzz/$1" -type f ;;
  esac
  [[ -d tests/data/fuzz/regressions/$1 ]] && find "tests/data/fuzz/regressions/$1" -type f
  return 0
}

# fuzz_one <target>: a fresh corpus from the seeds, then libFuzzer for $seconds
fuzz_one() {
  local target=$1 corpus=build-fuzz/corpus/$1
  rm -rf "$corpus" && mkdir -p "$corpus" build-fuzz/findings
  local seed
  seeds "$target" | while read -r seed; do cp "$seed" "$corpus/${seed//\//_}"; done
  local max_len=4096
  [[ $target == onnx ]] && max_len=200000
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "build-fuzz/fuzz/fuzz_$target" "$corpus" -max_total_time="$seconds" -max_len="$max_len" \
    -seed="$random_seed" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/findings/$target-" >"build-fuzz/fuzz_$target.log" 2>&1
}

# Two at a time. The outcome is read from the logs and findings, not from wait's status, which
# also reports a child that was only stopped (SIGSTOP) and continued.
running=0
for target in "${targets[@]}"; do
  fuzz_one "$target" &
  running=$((running + 1))
  if ((running == 2)); then wait; running=0; fi
done
wait
status=0
for target in "${targets[@]}"; do
  log=build-fuzz/fuzz_$target.log
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  if ! grep -q '^Done [0-9]* runs' "$log" ||
     compgen -G "build-fuzz/findings/$target-[clto]*" >/dev/null; then
    echo "fuzz: $target found a problem: $(grep -m1 -E 'ERROR|SUMMARY|Test unit' "$log" || true)"
    status=1
  fi
  echo "fuzz: $target: ${runs:-?} inputs in ${seconds} s"
done
if ((status)); then
  ls build-fuzz/findings/
  echo "fuzz: the logs are build-fuzz/fuzz_<target>.log"
fi
exit "$status"
