# The adaround weight quantizer end to end on resnet8 with small limits: a greedy search keeps the
# learned codes in its run directory; `eval --policy` of the chosen policy reproduces the search's
# test accuracy, both with those codes beside the policy and learned again without them; --resume
# learns nothing again (the code files stay untouched); the fake path scores as the integer path;
# `export` writes the layers with integer codes.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
json_value() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

RUN=$WORK/run
cat >"$WORK/adaround.yaml" <<YAML
model: $ROOT/models/resnet8.onnx
data: {calibration_images: 64, validation_images: 200}
quantizers: {weights: {name: adaround, iterations: 40}, activations: max, path: int}
granularity: layer
bits: {weights: [8, 4, 3], activations: [8]}
pinned: {first: W8A8, last: W8A8}
constraints: {max_relative_bitops: 0.055}
baselines: [W4A8]
policy: {name: greedy_sensitivity}
budget: {max_evaluations: 20, batch: 6}
seed: 3
workers: 2
output: $RUN
YAML
"$MPSEARCH" search --config "$WORK/adaround.yaml" --quiet >"$WORK/search.out" 2>&1 ||
  { fail "search failed"; cat "$WORK/search.out"; finish; }
codes=$(find "$RUN/learned_codes" -name '*.codes' | wc -l)
((codes > 0)) || fail "no learned codes in $RUN/learned_codes"
grep -q "name: adaround" "$RUN/policy.yaml" || fail "policy.yaml does not name adaround: $(cat "$RUN/policy.yaml")"
searched=$(python3 -c "import yaml,sys; print('%.2f' % yaml.safe_load(open(sys.argv[1]))['metrics']['accuracy'])" "$RUN/policy.yaml")

# eval --policy: the search's test accuracy, from the codes beside the policy and learned again
"$MPSEARCH" eval --model "$ROOT/models/resnet8.onnx" --policy "$RUN/policy.yaml" --calibration 64 \
  --json >"$WORK/beside.json" || fail "eval --policy (codes beside it)"
mkdir -p "$WORK/alone" && cp "$RUN/policy.yaml" "$WORK/alone/"
"$MPSEARCH" eval --model "$ROOT/models/resnet8.onnx" --policy "$WORK/alone/policy.yaml" \
  --calibration 64 --json >"$WORK/alone.json" || fail "eval --policy (learned again)"
[[ ! -e $WORK/alone/learned_codes ]] || fail "eval wrote codes beside a policy without them"
for result in beside alone; do
  got=$(python3 -c "import json,sys; print('%.2f' % json.load(open(sys.argv[1]))['accuracy'])" "$WORK/$result.json")
  [[ $got == "$searched" ]] || fail "eval --policy ($result) scores $got %, the search $searched %"
done

# --resume of the finished run reads the codes: not one file is written again
before=$(find "$RUN/learned_codes" -type f -printf '%f %i %T@\n' | sort)
"$MPSEARCH" search --resume "$RUN" --quiet >"$WORK/resume.out" 2>&1 || fail "resume: $(cat "$WORK/resume.out")"
after=$(find "$RUN/learned_codes" -type f -printf '%f %i %T@\n' | sort)
[[ $before == "$after" ]] || fail "resume rewrote learned codes: $before -> $after"
grep -q "^20 evaluations (20 resumed)" "$WORK/resume.out" || fail "resume: $(head -1 "$WORK/resume.out")"

# the fake path computes the same function on the first 500 test images
for path in int fake; do
  "$MPSEARCH" eval --model "$ROOT/models/resnet8.onnx" --policy "$RUN/policy.yaml" --calibration 64 \
    --limit 500 --path $path --json >"$WORK/$path.json" || fail "eval --path $path"
done
[[ $(json_value "$WORK/int.json" accuracy) == $(json_value "$WORK/fake.json" accuracy) ]] ||
  fail "int and fake paths differ: $(cat "$WORK/int.json") vs $(cat "$WORK/fake.json")"

# export: the learned codes as integer weights
"$MPSEARCH" export --model "$ROOT/models/resnet8.onnx" --policy "$RUN/policy.yaml" --calibration 64 \
  --out "$WORK/model.q.onnx" >"$WORK/export.out" 2>&1 || fail "export: $(cat "$WORK/export.out")"
grep -q "10 on integer codes" "$WORK/export.out" || fail "export: $(cat "$WORK/export.out")"
finish
