# mpsearch eval on a real model and real data: the JSON object has every documented key, and the
# human-readable report names the same accuracy.
source "$(dirname "$0")/common.bash"
"$MPSEARCH" eval --model "$ROOT/tests/data/bad/tiny.onnx" --limit 300 --batch 64 --json >"$WORK/out.json" || exit 1
for key in accuracy loss images images_per_second macs params weight_bytes; do
  grep -q "\"$key\":" "$WORK/out.json" || { echo "FAIL: key $key missing: $(cat "$WORK/out.json")"; exit 1; }
done
grep -q '"images":300' "$WORK/out.json" || { echo "FAIL: expected 300 images: $(cat "$WORK/out.json")"; exit 1; }
# conv 4x1x3x3 on 28x28 (pad 1) + fc 10x4: MACs = 4*9*784 + 40
grep -q '"macs":28264' "$WORK/out.json" || { echo "FAIL: MACs: $(cat "$WORK/out.json")"; exit 1; }
"$MPSEARCH" eval --model "$ROOT/tests/data/bad/tiny.onnx" --limit 300 >"$WORK/out.txt" || exit 1
grep -q "top-1 accuracy" "$WORK/out.txt" || { echo "FAIL: $(cat "$WORK/out.txt")"; exit 1; }
finish
