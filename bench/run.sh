#!/usr/bin/env bash
# Benchmark comparisons: every registered policy on the zoo models under equal BitOPs budgets and
# equal evaluation budgets, plus the engine's speed, into bench/results/<date>[-quick]/.
#   bench/run.sh           all four models, budgets W8A8 W4A8 W4A4 W3A3, 300 evaluations per run
#   bench/run.sh --quick   lenet5 and resnet8, budgets W4A4 W3A3, 100 evaluations per run
# Runs that exist are resumed, so a killed benchmark continues where it stopped. Needs the build
# of scripts/setup.sh (build/) or BUILD=<dir>. OUT=<dir> writes elsewhere; COMPARE_WITH=<an
# earlier results.json of the same mode> adds the report's reproduction section (bench/README.md).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" # paths below (and in the reports) are relative to the repository
BUILD=${BUILD:-build}
quick=false
[[ ${1:-} == --quick ]] && quick=true
if $quick; then
  OUT=${OUT:-bench/results/$(date -u +%Y-%m-%d)-quick}
  plan=(--models lenet5,resnet8 --budgets W4A4,W3A3 --evaluations 100 --validation-images 1000)
  cases=bench/cases/quick.txt
  runs=3
else
  OUT=${OUT:-bench/results/$(date -u +%Y-%m-%d)}
  plan=(--models lenet5,resnet8,vgg_small,mobilenet_tiny --budgets W8A8,W4A8,W4A4,W3A3
        --evaluations 300 --validation-images 2000)
  cases=bench/cases/quantized.txt
  runs=5
fi
# bayesian_bits trains once per mu: fewer, faster trainings than its defaults keep --quick under
# 10 minutes and the full run under 90. Its gates learn over the run's own quantizers and bit-widths
# with the expected-BitOPs regularizer, as the zoo configs do (docs/policies.md).
plan+=(--policy-args "bayesian_bits=grid: run, regularizer: bitops, mu_min: 0.05, mu_max: 2, mu_count: 4, bisect_steps: 1, steps: 100, gate_lr: 0.09")
[[ -n ${COMPARE_WITH:-} ]] && plan+=(--compare-with "$COMPARE_WITH")
for driver in mpsearch_bench_search mpsearch_bench_quantized mpsearch_bench_peak; do
  if [[ ! -x $BUILD/bench/$driver ]]; then
    echo "bench/run.sh: $BUILD/bench/$driver not found; run scripts/setup.sh first (or set BUILD=<build dir>)" >&2
    exit 2
  fi
done
mkdir -p "$OUT"
start=$(date +%s)
"$BUILD/bench/mpsearch_bench_search" "${plan[@]}" --out "$OUT"
"$BUILD/bench/mpsearch_bench_quantized" --cases "$cases" --runs "$runs" \
  --measure images,candidates --out "$OUT/engine"
"$BUILD/bench/mpsearch_bench_peak" --runs "$runs" --out "$OUT/peak"
echo "bench/run.sh: $(( $(date +%s) - start )) s; report $OUT/report.md, engine tables $OUT/engine.md and $OUT/peak.md"
