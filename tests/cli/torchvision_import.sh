# The 14 torchvision 0.14 classification families, exported by torch.onnx at reduced width
# (scripts/make_torchvision_fixtures.py, tests/data/torchvision/): every family mpsearch imports
# gives PyTorch's float32 predictions (every image whose top-1/top-2 logit margin in PyTorch is
# above 1e-4; at most 1 in 2,000 of the others) and its mean loss to 1e-5, read from .npz arrays
# resized to the family's input size by mpsearch's preprocessing; W8A8 on the fake-quant and the
# integer path agree within 0.1 points. A family mpsearch does not import yet is refused with
# exit 2 and a message naming what stops it (the list below; it shrinks as operators land).
source "$(dirname "$0")/common.bash"
FIX="$ROOT/tests/data/torchvision"
declare -A refused=(
  [convnext_tiny]="op type 'Transpose' is not supported")

# compare <family.json> <predictions file> <eval json>: PyTorch against mpsearch, as above.
compare() {
  python3 - "$@" <<'EOF'
import json, sys
want = json.load(open(sys.argv[1]))
got = [int(line) for line in open(sys.argv[2])]
run = json.loads(open(sys.argv[3]).read())
apart = [i for i, (p, q) in enumerate(zip(want["predictions"], got)) if p != q]
decisive = [i for i in apart if want["margins"][i] > 1e-4]
problems = []
if len(got) != want["images"]: problems.append(f"{len(got)} predictions, want {want['images']}")
if decisive: problems.append(f"images {decisive[:5]} predicted apart with margins above 1e-4")
if len(apart) > max(1, want["images"] // 2000): problems.append(f"{len(apart)} images apart")
if abs(run["loss"] - want["loss"]) > 1e-5:
    problems.append(f"loss {run['loss']:.8f}, PyTorch {want['loss']:.8f}")
print("; ".join(problems))
EOF
}

accuracy() { grep -o '"accuracy":[0-9.]*' "$1" | sed 's/.*://'; }

for json in "$FIX"/*.json; do
  family=$(basename "$json" .json)
  size=$(grep -o '"input_size": *[0-9]*' "$json" | sed 's/.*: *//')
  cat >"$WORK/$family.yaml" <<EOF
data: {test: $FIX/images.npz, calibration: $FIX/images.npz, calibration_images: 200,
       preprocess: {mean: 0.2860, std: 0.3530, resize: $size}}
EOF
  if [[ -n ${refused[$family]:-} ]]; then
    expect_input_error "${refused[$family]}" \
      eval --model "$FIX/$family.onnx" --data-config "$WORK/$family.yaml"
    continue
  fi
  if ! "$MPSEARCH" eval --model "$FIX/$family.onnx" --data-config "$WORK/$family.yaml" --json \
      --predictions "$WORK/$family.pred" >"$WORK/$family.out" 2>"$WORK/err"; then
    echo "FAIL: $family: mpsearch eval failed:"; cat "$WORK/err"; failures=$((failures + 1)); continue
  fi
  problems=$(compare "$json" "$WORK/$family.pred" "$WORK/$family.out")
  [[ -z $problems ]] || { echo "FAIL: $family float32 against PyTorch: $problems"; failures=$((failures + 1)); }
  for path in fake int; do
    "$MPSEARCH" eval --model "$FIX/$family.onnx" --data-config "$WORK/$family.yaml" --json \
      --uniform W8A8 --path $path >"$WORK/$family.$path" 2>"$WORK/err" ||
      { echo "FAIL: $family W8A8 $path:"; cat "$WORK/err"; failures=$((failures + 1)); }
  done
  fake=$(accuracy "$WORK/$family.fake") int=$(accuracy "$WORK/$family.int")
  awk -v a="$fake" -v b="$int" 'BEGIN { d = a - b; exit !(d <= 0.1 && d >= -0.1) }' ||
    { echo "FAIL: $family W8A8: fake-quant $fake %, integer $int %"; failures=$((failures + 1)); }
done
finish
