# mpsearch export, checked in a real runtime: ONNX Runtime's Node binding (tests/ort, installed by
# scripts/setup.sh) runs the exported model over the test split and its predictions are compared
# with `mpsearch eval --path int --predictions` of the same policy (docs/export.md):
#   - exported with --float-bias and run with ONNX Runtime's graph optimizations off, the model's
#     own arithmetic: top-1 within 0.1 points and at least 99.9 % of the predictions equal (the
#     export's contract: codes, scales, Clip ranges, pruning, headroom);
#   - exported as by default and run with every optimization on (integer kernels, int32 biases
#     of fused layers): top-1 within ORT_TOP1_POINTS (default 1.0: a subset of 2,000 images is noisy) and at least ORT_AGREEMENT
#     percent (default 97.5) equal. Both figures are printed.
# Policies: uniform W8A8 and W4A4 (eval --write-policy; W4A4 also as opset 21 INT4), W4A4 with
# the adaround quantizer (its learned codes exported) and the
# kernel-wise policy with pruned
# kernels that a short random search chooses (whose run directory holds model.q.onnx).
# EXPORT_MODELS (default "lenet5 resnet8") and EXPORT_IMAGES (default 2000; 0 = all 10,000) keep
# CI short; the full matrix is EXPORT_MODELS="lenet5 vgg_small resnet8 mobilenet_tiny" EXPORT_IMAGES=0.
source "$(dirname "$0")/common.bash"
ORT_DIR=$ROOT/tests/ort
MODELS=${EXPORT_MODELS:-lenet5 resnet8}
IMAGES=${EXPORT_IMAGES:-2000}
LIMIT=(); ((IMAGES > 0)) && LIMIT=(--limit "$IMAGES")

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
node -e "require('$ORT_DIR/node_modules/onnxruntime-node')" ||
  { echo "FAIL: onnxruntime-node does not load from $ORT_DIR; run scripts/setup.sh"; exit 1; }

# compare <label> <mpsearch json> <mpsearch predictions> <ort json> <ort predictions> <points> <percent>
compare() {
  python3 - "$@" <<'PY' || failures=$((failures + 1))
import json, sys
label, mj, mp, oj, op, points, percent = sys.argv[1:]
a = json.load(open(mj))["accuracy"]; b = json.load(open(oj))["accuracy"]
p = open(mp).read().split(); q = open(op).read().split()
agree = 100.0 * sum(x == y for x, y in zip(p, q)) / len(p)
ok = len(p) == len(q) and abs(a - b) <= float(points) + 1e-9 and agree >= float(percent)
print(f"{'ok  ' if ok else 'FAIL'} {label}: mpsearch {a:.2f} %, ONNX Runtime {b:.2f} %, "
      f"predictions agree {agree:.2f} % of {len(p)} (limits {points} points, {percent} %)")
sys.exit(0 if ok else 1)
PY
}

# check <model> <name> <policy.yaml> <exported.onnx>
check() {
  local model=$1 name=$2 policy=$3 onnx=$4 base=$WORK/$1.$2
  "$MPSEARCH" eval --model "$ROOT/models/$model.onnx" --policy "$policy" "${LIMIT[@]}" --json \
    --predictions "$base.mpsearch.txt" >"$base.mpsearch.json" || { fail "$model $name eval"; return; }
  "$MPSEARCH" export --model "$ROOT/models/$model.onnx" --policy "$policy" --float-bias \
    --out "$base.float_bias.onnx" >/dev/null || { fail "$model $name export --float-bias"; return; }
  node "$ORT_DIR/run_model.js" --model "$base.float_bias.onnx" --out "$base.disabled.txt" \
    "${LIMIT[@]}" --optimization disabled >"$base.disabled.json" || fail "$model $name ORT off"
  node "$ORT_DIR/run_model.js" --model "$onnx" --out "$base.all.txt" "${LIMIT[@]}" \
    >"$base.all.json" || fail "$model $name ORT"
  compare "$model $name (ORT optimizations off)" "$base.mpsearch.json" "$base.mpsearch.txt" \
    "$base.disabled.json" "$base.disabled.txt" 0.1 99.9
  compare "$model $name (ORT integer kernels)" "$base.mpsearch.json" "$base.mpsearch.txt" \
    "$base.all.json" "$base.all.txt" "${ORT_TOP1_POINTS:-1.0}" "${ORT_AGREEMENT:-97.5}"
}

for model in $MODELS; do
  for bits in W8A8 W4A4; do
    policy=$WORK/$model.$bits.yaml
    "$MPSEARCH" eval --model "$ROOT/models/$model.onnx" --uniform $bits --limit 10 \
      --write-policy "$policy" >/dev/null || { fail "$model $bits policy"; continue; }
    "$MPSEARCH" export --model "$ROOT/models/$model.onnx" --policy "$policy" \
      --out "$WORK/$model.$bits.onnx" >/dev/null || { fail "$model $bits export"; continue; }
    check "$model" "$bits" "$policy" "$WORK/$model.$bits.onnx"
  done
  # adaround's learned codes: the export's integer weights are what the evaluator scored
  policy=$WORK/$model.adaround.yaml
  "$MPSEARCH" eval --model "$ROOT/models/$model.onnx" --uniform W4A4 --quantizer adaround --limit 10 \
    --write-policy "$policy" >/dev/null || fail "$model adaround policy"
  "$MPSEARCH" export --model "$ROOT/models/$model.onnx" --policy "$policy" \
    --out "$WORK/$model.adaround.onnx" >/dev/null || fail "$model adaround export"
  check "$model" adaround "$policy" "$WORK/$model.adaround.onnx"
  # opset 21: INT4 weight codes (packed two a byte), the same arithmetic
  "$MPSEARCH" export --model "$ROOT/models/$model.onnx" --policy "$WORK/$model.W4A4.yaml" --opset 21 \
    --float-bias --out "$WORK/$model.int4.onnx" >/dev/null || fail "$model opset 21 export"
  node "$ORT_DIR/run_model.js" --model "$WORK/$model.int4.onnx" --out "$WORK/$model.int4.txt" \
    "${LIMIT[@]}" --optimization disabled >"$WORK/$model.int4.json" || fail "$model opset 21 ORT"
  compare "$model W4A4 opset 21 INT4 (ORT optimizations off)" "$WORK/$model.W4A4.mpsearch.json" \
    "$WORK/$model.W4A4.mpsearch.txt" "$WORK/$model.int4.json" "$WORK/$model.int4.txt" 0.1 99.9
  # a searched kernel-wise policy with pruned kernels: the run writes model.q.onnx itself
  sed "s|MODEL|$ROOT/models/$model.onnx|; s|OUT|$WORK/run_$model|" >"$WORK/$model.search.yaml" <<'YAML'
model: MODEL
data: {calibration_images: 1000, validation_images: 500}
quantizers: {weights: uniform, activations: max, path: int}
granularity: kernel
bits: {weights: [8, 6, 4, 3], activations: [8, 6, 4], pruning: true}
constraints: {max_relative_bitops: W6A6}
baselines: [W8A8]
policy: {name: random, fit_budget: true, prune_probability: 0.1}
budget: {max_evaluations: 4}
seed: 1
output: OUT
YAML
  "$MPSEARCH" search --config "$WORK/$model.search.yaml" >/dev/null 2>&1 || { fail "$model search"; continue; }
  grep -qE "weight_bits: \[.*\b0\b" "$WORK/run_$model/policy.yaml" || fail "$model: searched policy prunes no kernel"
  check "$model" kernelwise "$WORK/run_$model/policy.yaml" "$WORK/run_$model/model.q.onnx"
done
finish
