# mpsearch export: bad input gets one clear message and a documented exit code, and never leaves a
# file (partial or temporary) behind.
source "$(dirname "$0")/common.bash"
LENET=$ROOT/models/lenet5.onnx
RESNET=$ROOT/models/resnet8.onnx
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
no_output() { [[ ! -e $1 ]] || fail "$1 was left behind"; ls "$(dirname "$1")" | grep -q '\.tmp' && fail "a temporary file was left in $(dirname "$1")"; }

"$MPSEARCH" eval --model "$LENET" --uniform W4A4 --limit 10 --write-policy "$WORK/lenet.yaml" >/dev/null || fail "policy"
mkdir -p "$WORK/dest"

# a policy made for another model: the SHA-256 mismatch, exit 2
expect_input_error "was made for a model with SHA-256" export --model "$RESNET" --policy "$WORK/lenet.yaml" --out "$WORK/dest/a.onnx"
no_output "$WORK/dest/a.onnx"
# a policy naming a layer the model lacks (same model, the layer renamed): file:line, exit 2
sed 's/^  conv1:/  conv9:/' "$WORK/lenet.yaml" >"$WORK/wrong_layer.yaml"
expect_input_error "wrong_layer.yaml:" export --model "$LENET" --policy "$WORK/wrong_layer.yaml" --out "$WORK/dest/b.onnx"
expect_input_error "conv9" export --model "$LENET" --policy "$WORK/wrong_layer.yaml" --out "$WORK/dest/b.onnx"
no_output "$WORK/dest/b.onnx"
# an output that cannot be written: a failure while running (exit 1) naming the path
expect_exit 1 "$WORK/missing_dir/c.onnx" export --model "$LENET" --policy "$WORK/lenet.yaml" --out "$WORK/missing_dir/c.onnx"
mkdir "$WORK/readonly" && chmod 555 "$WORK/readonly"
if [[ $(id -u) -ne 0 ]]; then # root writes anywhere
  expect_exit 1 "$WORK/readonly/d.onnx" export --model "$LENET" --policy "$WORK/lenet.yaml" --out "$WORK/readonly/d.onnx"
  no_output "$WORK/readonly/d.onnx"
fi
expect_exit 1 "$WORK/dest" export --model "$LENET" --policy "$WORK/lenet.yaml" --out "$WORK/dest"
# usage errors
expect_input_error "--opset must be 13 or 21" export --model "$LENET" --policy "$WORK/lenet.yaml" --out "$WORK/dest/e.onnx" --opset 17
expect_input_error "absent.yaml" export --model "$LENET" --policy "$WORK/absent.yaml" --out "$WORK/dest/f.onnx"
expect_input_error "--out" export --model "$LENET" --policy "$WORK/lenet.yaml"
no_output "$WORK/dest/e.onnx"

# the good case: written, with its provenance in the metadata
"$MPSEARCH" export --model "$LENET" --policy "$WORK/lenet.yaml" --out "$WORK/dest/good.onnx" >"$WORK/good.txt" || fail "export"
grep -q "5 quantizable layers, 5 on integer codes" "$WORK/good.txt" || fail "summary: $(cat "$WORK/good.txt")"
grep -aq "mpsearch.source_model_sha256" "$WORK/dest/good.onnx" || fail "no sha256 metadata"
grep -aq "$(sha256sum "$LENET" | cut -d' ' -f1)" "$WORK/dest/good.onnx" || fail "metadata has another hash"
# the encodings sidecar: W4A4 is expressible; a 3-bit policy is listed as not
"$MPSEARCH" export --model "$LENET" --policy "$WORK/lenet.yaml" --out "$WORK/dest/enc.onnx" \
  --encodings "$WORK/dest/enc.json" >"$WORK/enc.txt" || fail "encodings"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert len(d['param_encodings']) == 5 and d['param_encodings']['conv1.weight'][0]['bitwidth'] == 4" \
  "$WORK/dest/enc.json" || fail "encodings content"
"$MPSEARCH" eval --model "$LENET" --uniform W3A4 --limit 10 --write-policy "$WORK/w3.yaml" >/dev/null || fail "W3A4 policy"
"$MPSEARCH" export --model "$LENET" --policy "$WORK/w3.yaml" --out "$WORK/dest/w3.onnx" \
  --encodings "$WORK/dest/w3.json" >"$WORK/w3.txt" || fail "W3A4 encodings"
grep -q "not in the encodings: conv1.weight: kernel 0 has 3 bits" "$WORK/w3.txt" || fail "W3 listing: $(cat "$WORK/w3.txt")"
# a quantizer without an integer form: float weights, said in the message and the metadata
sed 's/name: uniform/name: kmeans/' "$WORK/lenet.yaml" >"$WORK/kmeans.yaml"
"$MPSEARCH" export --model "$LENET" --policy "$WORK/kmeans.yaml" --out "$WORK/dest/km.onnx" >"$WORK/km.txt" || fail "kmeans export"
grep -q "weight quantizer 'kmeans' has no integer form" "$WORK/km.txt" || fail "kmeans message: $(cat "$WORK/km.txt")"
grep -aq "has no integer form" "$WORK/dest/km.onnx" || fail "kmeans metadata"
finish
