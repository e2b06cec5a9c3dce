# A CNN trained and exported by PyTorch 1.13 (scripts/make_pytorch_fixture.py: Conv with folded BN,
# Clip with Constant inputs, depthwise conv, MaxPool, GlobalAveragePool, Flatten, Gemm) gives the
# test accuracy PyTorch measured, to within 0.02 points, for both the opset 13 and opset 11 export.
source "$(dirname "$0")/common.bash"
field() { grep -o "\"$1\": *[0-9.]*" "$2" | head -1 | sed 's/.*: *//'; }
want=$(field accuracy "$ROOT/tests/data/pytorch_cnn.json")
for model in pytorch_cnn.onnx pytorch_cnn_opset11.onnx; do
  "$MPSEARCH" eval --model "$ROOT/tests/data/$model" --json >"$WORK/out.json" || exit 1
  got=$(field accuracy "$WORK/out.json")
  if ! awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.02) }'; then
    echo "FAIL: $model: mpsearch accuracy $got, PyTorch $want"
    failures=$((failures + 1))
  fi
done
finish
