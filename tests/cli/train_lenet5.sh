# mpsearch train end to end on real data: one lenet5 epoch writes an ONNX model whose test accuracy,
# as printed by train, is what mpsearch eval measures on it; bad input is refused and leaves no
# output file behind.
source "$(dirname "$0")/common.bash"
"$MPSEARCH" train --arch lenet5 --epochs 1 --out "$WORK/lenet5.onnx" >"$WORK/train.txt" 2>&1 ||
  { echo "FAIL: train exited non-zero:"; cat "$WORK/train.txt"; exit 1; }
grep -q "^epoch   1" "$WORK/train.txt" || { echo "FAIL: no epoch line"; cat "$WORK/train.txt"; exit 1; }
printed=$(sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p' "$WORK/train.txt")
"$MPSEARCH" eval --model "$WORK/lenet5.onnx" --json >"$WORK/eval.json" || exit 1
measured=$(grep -o '"accuracy":[0-9.]*' "$WORK/eval.json" | sed 's/.*://')
awk -v a="$printed" -v b="$measured" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 80 && d < 0.005) }' ||
  { echo "FAIL: train printed $printed %, eval measured $measured %"; exit 1; }

expect_input_error "resnet99" train --arch resnet99 --out "$WORK/x.onnx"
expect_input_error "the option '--out' is required" train --arch lenet5
expect_input_error "unrecognised option '--colour'" train --arch lenet5 --out "$WORK/x.onnx" --colour
expect_input_error "no train-images-idx3-ubyte" train --arch lenet5 --out "$WORK/x.onnx" --data "$WORK"
[[ ! -e "$WORK/x.onnx" ]] || { echo "FAIL: a failed run left $WORK/x.onnx"; failures=$((failures + 1)); }
finish
