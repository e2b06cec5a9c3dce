# bench/neighbourhood.py: every one-layer move of uniform W4A4 on lenet5 is scored, the base is
# mpsearch eval's own figure, each move changes exactly one layer's bits (its BitOPs are linear in
# that layer's weight or activation bits), and a bad model path fails with one message.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
NB=(python3 "$ROOT/bench/neighbourhood.py" --mpsearch "$MPSEARCH" --bits 2,8
    --validation-images 300 --test-images 300)

"${NB[@]}" --model "$ROOT/models/lenet5.onnx" --layers conv2,fc3 --out "$WORK/nb" 2>"$WORK/nb.err" ||
  { fail "neighbourhood.py exited non-zero"; cat "$WORK/nb.err"; }
"$MPSEARCH" eval --model "$ROOT/models/lenet5.onnx" --uniform W4A4 --split validation --limit 300 \
  --json >"$WORK/base.json" || fail "mpsearch eval of the base failed"
python3 - "$WORK/nb/results.json" "$WORK/base.json" "$WORK/nb/report.md" <<'PY' || fail "results check: see above"
import json, sys
r = json.load(open(sys.argv[1])); base = json.load(open(sys.argv[2]))
report = open(sys.argv[3]).read()
b = r["base_score"]
assert b["validation_accuracy"] == base["accuracy"], (b, base["accuracy"])
layers = ["conv2", "fc3"]
assert [m["layer"] for m in r["moves"]] == [l for l in layers for _ in range(4)], r["moves"]
for l in layers:
    cost = {(m["weight_bits"], m["activation_bits"]): m["score"]["relative_bitops"]
            for m in r["moves"] if m["layer"] == l}
    assert set(cost) == {(2, 4), (8, 4), (4, 2), (4, 8)}, cost
    for lo, hi in [((2, 4), (8, 4)), ((4, 2), (4, 8))]:
        # bits 2 -> 4 -> 8: the second step costs twice the first when only this layer moved
        up, down = cost[hi] - b["relative_bitops"], b["relative_bitops"] - cost[lo]
        assert down > 0 and abs(up - 2 * down) < 1e-12, (l, lo, hi, up, down)
assert report.count("\n| conv2 |") == 4 and report.count("\n| fc3 |") == 4 and "Moves that raise validation accuracy:" in report, report
print("results ok")
PY

"${NB[@]}" --model "$WORK/missing.onnx" --out "$WORK/bad" >"$WORK/bad.out" 2>&1
rc=$?
if [[ $rc -eq 0 ]] || ! grep -q "missing.onnx" "$WORK/bad.out"; then
  fail "a missing model: exit $rc, output:"; cat "$WORK/bad.out"
fi
[[ -e $WORK/bad ]] && fail "a failed run left an output directory"
"${NB[@]}" --model "$ROOT/models/lenet5.onnx" --layers conv9 --out "$WORK/bad" >"$WORK/bad.out" 2>&1 &&
  fail "an unknown layer was accepted"
grep -q "no quantizable layer conv9; its layers: conv1, conv2, fc1, fc2, fc3" "$WORK/bad.out" ||
  { fail "an unknown layer: no clear message"; cat "$WORK/bad.out"; }
finish
