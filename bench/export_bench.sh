#!/usr/bin/env bash
# Images/s of ONNX Runtime (tests/ort, 2 intra-op threads, batch 256, every graph optimization) on
# the float32 model, the exported uniform W8A8 model and a searched kernel-wise policy's
# model.q.onnx, beside mpsearch's float32 and integer paths (2 workers, batch 256), all on the
# 10,000 test images in one run: ONNX Runtime figures are the median of RUNS timed passes after a
# warm-up pass, mpsearch's the median of RUNS `mpsearch eval` runs.
#   flock /tmp/bench.lock bench/export_bench.sh [OUT_DIR]      (MODELS, RUNS, BUILD override)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/$(date -u +%F)-export}
MODELS=${MODELS:-resnet8 vgg_small}
RUNS=${RUNS:-5}
BUILD=${BUILD:-build}
MPSEARCH=$BUILD/mpsearch
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
mpsearch_rate() { # args for eval: median images/s over RUNS runs
  for _ in $(seq "$RUNS"); do "$MPSEARCH" eval "$@" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['images_per_second'])"; done | median
}
ort_rate() { node tests/ort/run_model.js --model "$1" --time-runs "$RUNS" --threads 2 --batch 256 |
  python3 -c "import json,sys; d=json.load(sys.stdin); print(d['images_per_second'], d['accuracy'])"; }

{
echo "| model | mpsearch float32 | mpsearch int W8A8 | ORT float32 | ORT W8A8 (export) | ORT searched policy (export) |"
echo "|---|---:|---:|---:|---:|---:|"
for m in $MODELS; do
  model=models/$m.onnx
  "$MPSEARCH" eval --model "$model" --uniform W8A8 --limit 10 --write-policy "$WORK/$m.w8a8.yaml" >/dev/null
  "$MPSEARCH" export --model "$model" --policy "$WORK/$m.w8a8.yaml" --out "$WORK/$m.w8a8.onnx" >/dev/null
  sed "s|MODEL|$model|; s|OUT|$WORK/run_$m|" bench/export_search.yaml >"$WORK/$m.search.yaml"
  "$MPSEARCH" search --config "$WORK/$m.search.yaml" >/dev/null 2>&1
  f=$(mpsearch_rate --model "$model")
  i=$(mpsearch_rate --model "$model" --policy "$WORK/$m.w8a8.yaml")
  read -r of ofa < <(ort_rate "$model")
  read -r oq oqa < <(ort_rate "$WORK/$m.w8a8.onnx")
  read -r os osa < <(ort_rate "$WORK/run_$m/model.q.onnx")
  printf '| %s | %.0f | %.0f | %.0f (%.2f %%) | %.0f (%.2f %%) | %.0f (%.2f %%) |\n' "$m" "$f" "$i" "$of" "$ofa" "$oq" "$oqa" "$os" "$osa"
  cp "$WORK/run_$m/policy.yaml" "$OUT/$m.searched_policy.yaml"
done
} | tee "$OUT/images_per_second.md"
