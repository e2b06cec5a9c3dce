# mpsearch finetune end to end on real data: lenet5 under a uniform W4A4 policy, one epoch on 5000
# training images. The after-figure is at least the before-figure (less half a point), and eval of
# the written model and policy reproduces it exactly; bad input is refused with one message,
# exit 2 and no output file.
source "$(dirname "$0")/common.bash"
MODEL="$ROOT/models/lenet5.onnx"
"$MPSEARCH" eval --model "$MODEL" --uniform W4A4 --write-policy "$WORK/w4a4.yaml" >"$WORK/eval0.txt" 2>&1 ||
  { echo "FAIL: eval --write-policy exited non-zero:"; cat "$WORK/eval0.txt"; exit 1; }
"$MPSEARCH" finetune --model "$MODEL" --policy "$WORK/w4a4.yaml" --epochs 1 --limit-train 5000 \
  --out "$WORK/lenet5_ft.onnx" >"$WORK/ft.txt" 2>&1 ||
  { echo "FAIL: finetune exited non-zero:"; cat "$WORK/ft.txt"; exit 1; }
cat "$WORK/ft.txt"
grep -q "^epoch   1" "$WORK/ft.txt" || { echo "FAIL: no epoch line"; exit 1; }
before=$(sed -n 's/^before  test accuracy \([0-9.]*\) %.*/\1/p' "$WORK/ft.txt")
after=$(sed -n 's/^after   test accuracy \([0-9.]*\) %.*/\1/p' "$WORK/ft.txt")
[[ -n "$before" && -n "$after" ]] || { echo "FAIL: no before / after figures"; exit 1; }
awk -v a="$after" -v b="$before" 'BEGIN { exit !(a >= b - 0.5 && a > 80) }' ||
  { echo "FAIL: after $after % is worse than before $before % - 0.5"; failures=$((failures + 1)); }
[[ -f "$WORK/lenet5_ft.policy.yaml" ]] || { echo "FAIL: no lenet5_ft.policy.yaml"; exit 1; }
grep -q "lenet5_ft.onnx" "$WORK/lenet5_ft.policy.yaml" ||
  { echo "FAIL: the written policy does not name the written model"; failures=$((failures + 1)); }

# eval of the outputs reproduces the printed after-figure; the written policy holds it too.
"$MPSEARCH" eval --model "$WORK/lenet5_ft.onnx" --policy "$WORK/lenet5_ft.policy.yaml" --json \
  >"$WORK/eval.json" || { echo "FAIL: eval of the outputs failed"; exit 1; }
measured=$(grep -o '"accuracy":[0-9.]*' "$WORK/eval.json" | sed 's/.*://')
awk -v a="$after" -v b="$measured" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 0.005) }' ||
  { echo "FAIL: finetune printed $after %, eval measured $measured %"; failures=$((failures + 1)); }
stored=$(sed -n 's/^ *accuracy: *\([0-9.]*\).*/\1/p' "$WORK/lenet5_ft.policy.yaml")
awk -v a="$stored" -v b="$measured" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 0.005) }' ||
  { echo "FAIL: the policy file says $stored %, eval measured $measured %"; failures=$((failures + 1)); }

# Bad input: one clear message, exit 2, no output file.
expect_bad_input() {
  local want=$1; shift
  expect_exit 2 "$want" finetune "$@"
  [[ $(wc -l <"$WORK/err") -eq 1 ]] ||
    { echo "FAIL: mpsearch finetune $*: more than one line on stderr"; failures=$((failures + 1)); }
  if [[ -e "$WORK/x.onnx" || -e "$WORK/x.policy.yaml" ]]; then
    echo "FAIL: mpsearch finetune $* left an output file"; failures=$((failures + 1))
    rm -f "$WORK/x.onnx" "$WORK/x.policy.yaml"
  fi
}
expect_bad_input "the option '--policy' is required" \
  --model "$MODEL" --epochs 1 --out "$WORK/x.onnx"
expect_bad_input "cannot open" \
  --model "$MODEL" --policy "$WORK/missing.yaml" --epochs 1 --out "$WORK/x.onnx"
expect_bad_input "the policy was made for a model with SHA-256" \
  --model "$ROOT/models/resnet8.onnx" --policy "$WORK/w4a4.yaml" --epochs 1 --out "$WORK/x.onnx"
expect_bad_input "--epochs must be positive" \
  --model "$MODEL" --policy "$WORK/w4a4.yaml" --epochs 0 --out "$WORK/x.onnx"
expect_bad_input "--distill must be between 0 and 1" \
  --model "$MODEL" --policy "$WORK/w4a4.yaml" --epochs 1 --distill 1.5 --out "$WORK/x.onnx"
expect_bad_input "--distill-temperature must be positive" \
  --model "$MODEL" --policy "$WORK/w4a4.yaml" --epochs 1 --distill-temperature 0 --out "$WORK/x.onnx"
finish
