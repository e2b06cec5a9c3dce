# mpsearch eval on a real model and real data: the JSON object has every documented key, and the
# human-readable report names the same figures (accuracy, loss, images, MACs, parameters).
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
MODEL=$ROOT/tests/data/bad/tiny.onnx

"$MPSEARCH" eval --model "$MODEL" --limit 300 --batch 64 --json >"$WORK/out.json" || exit 1
for key in accuracy loss images images_per_second macs params weight_bytes; do
  grep -q "\"$key\":" "$WORK/out.json" || fail "key $key missing: $(cat "$WORK/out.json")"
done
json() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$WORK/out.json"; }
[[ $(json images) == 300 ]] || fail "expected 300 images: $(cat "$WORK/out.json")"
# conv 4x1x3x3 on 28x28 (pad 1) + fc 10x4: MACs = 4*9*784 + 40
[[ $(json macs) == 28264 ]] || fail "MACs: $(cat "$WORK/out.json")"
# an accuracy over 300 images is a whole number of them
awk -v a="$(json accuracy)" 'BEGIN { c = a * 3; d = c - int(c + 0.5); exit !(d < 1e-6 && d > -1e-6) }' ||
  fail "accuracy $(json accuracy) % is not k/300"

"$MPSEARCH" eval --model "$MODEL" --limit 300 >"$WORK/out.txt" || exit 1
text() { sed -n "s/^$1  *\([^ ]*\).*/\1/p" "$WORK/out.txt"; }
want_accuracy=$(awk -v a="$(json accuracy)" 'BEGIN { printf "%.2f", a }')
want_loss=$(awk -v a="$(json loss)" 'BEGIN { printf "%.4f", a }')
[[ -n $(text "top-1 accuracy") && $(text "top-1 accuracy") == "$want_accuracy" ]] ||
  fail "the report says accuracy '$(text "top-1 accuracy")', the JSON $want_accuracy: $(cat "$WORK/out.txt")"
[[ $(text "mean loss") == "$want_loss" ]] || fail "the report says loss '$(text "mean loss")', the JSON $want_loss"
[[ $(text "MACs per image") == "$(json macs)" ]] || fail "the report's MACs differ from the JSON's"
[[ $(text "parameters") == "$(json params)" ]] || fail "the report's parameters differ from the JSON's"
grep -q "^split  *test (300 images)" "$WORK/out.txt" || fail "the report does not say 300 test images"
finish
