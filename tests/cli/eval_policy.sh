# mpsearch eval with a bit-width policy: --uniform and --policy on both paths, the JSON keys, the
# policy written back with its metrics, and one clear message for every kind of bad input.
source "$(dirname "$0")/common.bash"
TINY=$ROOT/tests/data/bad/tiny.onnx
CNN=$ROOT/tests/data/pytorch_cnn.onnx
FAST=(--limit 200 --batch 64 --calibration 100)

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
json_value() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

# --uniform: every documented key, costs at the policy's bits
"$MPSEARCH" eval --model "$TINY" --uniform W4A8 "${FAST[@]}" --json >"$WORK/int.json" || fail "uniform W4A8 int"
for key in accuracy loss images images_per_second macs params weight_bytes bitops relative_bitops \
           relative_weight_bytes path; do
  grep -q "\"$key\":" "$WORK/int.json" || fail "key $key missing: $(cat "$WORK/int.json")"
done
# conv 4x1x3x3 on 28x28 + fc 10x4: MACs 28264; BitOPs = MACs * 4 * 8
[[ $(json_value "$WORK/int.json" bitops) == 904448 ]] || fail "bitops: $(cat "$WORK/int.json")"
[[ $(json_value "$WORK/int.json" relative_bitops) == 0.03125 ]] || fail "relative bitops"
[[ $(json_value "$WORK/int.json" path) == int ]] || fail "path int"
[[ $(json_value "$WORK/int.json" images) == 200 ]] || fail "200 images"

# the fake path computes the same function: same accuracy on these 200 images
"$MPSEARCH" eval --model "$TINY" --uniform W4A8 "${FAST[@]}" --path fake --json >"$WORK/fake.json" || fail "fake path"
[[ $(json_value "$WORK/fake.json" path) == fake ]] || fail "path fake"
[[ $(json_value "$WORK/fake.json" accuracy) == $(json_value "$WORK/int.json" accuracy) ]] ||
  fail "int and fake accuracies differ: $(cat "$WORK/int.json") vs $(cat "$WORK/fake.json")"

# --write-policy then --policy: the same policy scores the same, the metrics block is written
"$MPSEARCH" eval --model "$CNN" --uniform W4A4 "${FAST[@]}" --write-policy "$WORK/cnn.yaml" \
  --json >"$WORK/written.json" || fail "write policy"
grep -q "^metrics:" "$WORK/cnn.yaml" || fail "no metrics block: $(cat "$WORK/cnn.yaml")"
grep -q "accuracy: " "$WORK/cnn.yaml" || fail "no accuracy in metrics"
"$MPSEARCH" eval --model "$CNN" --policy "$WORK/cnn.yaml" "${FAST[@]}" --json >"$WORK/read.json" || fail "read policy"
[[ $(json_value "$WORK/read.json" accuracy) == $(json_value "$WORK/written.json" accuracy) ]] ||
  fail "policy file scores differently from --uniform"
# the text report and --verbose path decisions
"$MPSEARCH" eval --model "$CNN" --policy "$WORK/cnn.yaml" "${FAST[@]}" --verbose >"$WORK/out.txt" || fail "text"
grep -q "BitOPs per image" "$WORK/out.txt" || fail "text report: $(cat "$WORK/out.txt")"
grep -q "integer path" "$WORK/out.txt" || fail "verbose decisions: $(cat "$WORK/out.txt")"
# the float32 mode is unchanged
"$MPSEARCH" eval --model "$TINY" --limit 100 --json >"$WORK/float.json" || fail "float mode"
grep -q '"bitops"' "$WORK/float.json" && fail "float mode reports bitops"

# bad inputs: one clear message and exit 2 each
expect_input_error "was made for a model with SHA-256" eval --model "$TINY" --policy "$WORK/cnn.yaml" "${FAST[@]}"
"$MPSEARCH" eval --model "$TINY" --uniform W8A8 "${FAST[@]}" --write-policy "$WORK/tiny.yaml" >/dev/null || fail "tiny policy"
sed 's/^  conv1:/  conv9:/' "$WORK/tiny.yaml" >"$WORK/wrong_layer.yaml"
expect_input_error "conv9" eval --model "$TINY" --policy "$WORK/wrong_layer.yaml" "${FAST[@]}"
awk '/activation_bits/ && !done {sub(/: 8/, ": 9"); done=1} {print}' "$WORK/tiny.yaml" >"$WORK/bits9.yaml"
expect_input_error "9" eval --model "$TINY" --policy "$WORK/bits9.yaml" "${FAST[@]}"
expect_input_error "bits9.yaml:" eval --model "$TINY" --policy "$WORK/bits9.yaml" "${FAST[@]}"
printf 'version: 1\nmodel: [unclosed\n' >"$WORK/malformed.yaml"
expect_input_error "malformed.yaml" eval --model "$TINY" --policy "$WORK/malformed.yaml" "${FAST[@]}"
expect_input_error "absent.yaml" eval --model "$TINY" --policy "$WORK/absent.yaml" "${FAST[@]}"
expect_input_error "W4Q8" eval --model "$TINY" --uniform W4Q8 "${FAST[@]}"
expect_input_error "W9A8" eval --model "$TINY" --uniform W9A8 "${FAST[@]}"
expect_input_error "choose one policy" eval --model "$TINY" --uniform W4A8 --policy "$WORK/tiny.yaml"
expect_input_error "'gpu'" eval --model "$TINY" --uniform W4A8 --path gpu
expect_input_error "--path applies to a quantized evaluation" eval --model "$TINY" --path fake
# --predictions of a float32 evaluation: one class per scored image
"$MPSEARCH" eval --model "$TINY" --limit 150 --predictions "$WORK/f.txt" >/dev/null || fail "float predictions"
[[ $(wc -l <"$WORK/f.txt") == 150 ]] || fail "float predictions: $(wc -l <"$WORK/f.txt") lines, not 150"
# --predictions: one class per scored image, and their accuracy is the reported one
"$MPSEARCH" eval --model "$TINY" --uniform W4A8 "${FAST[@]}" --predictions "$WORK/p.txt" --json >"$WORK/p.json" || fail "predictions"
[[ $(wc -l <"$WORK/p.txt") == 200 ]] || fail "predictions: $(wc -l <"$WORK/p.txt") lines, not 200"
grep -qvE '^[0-9]+$' "$WORK/p.txt" && fail "predictions: a line that is not a class"
expect_input_error "--calibration must be positive" eval --model "$TINY" --uniform W4A8 --calibration 0
expect_input_error "--workers must be positive" eval --model "$TINY" --uniform W4A8 --workers 0
expect_input_error "nosuchquantizer" eval --model "$TINY" --uniform W4A8 --quantizer nosuchquantizer "${FAST[@]}"
expect_input_error "median" eval --model "$TINY" --uniform W4A8 --calibration-method median "${FAST[@]}"
expect_input_error "contradicts" eval --model "$TINY" --policy "$WORK/tiny.yaml" --quantizer kmeans "${FAST[@]}"
finish
