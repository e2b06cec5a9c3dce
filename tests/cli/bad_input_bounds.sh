# Bad input costs bounded memory and time and is told whole (issue 22, cases 4 and 7): a config
# larger than 1 MiB is refused without being parsed (a 52 MB list of bit-widths took 15.5 GB and
# 150 s before); a config with thousands of problems lists the first 50 and counts the rest; a
# binary config's message is not cut at its NUL byte; --batch above 4096 is refused, not run.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
TINY=$ROOT/tests/data/bad/tiny.onnx

# a list of 700,000 repeated bit-widths (2 MB): refused at once, in little memory
{ printf 'model: %s\nbits: {weights: [' "$ROOT/models/lenet5.onnx"
  yes '4, ' | head -n 700000 | tr -d '\n'; printf '4], activations: [8]}\npolicy: {name: random}\n'; } \
  >"$WORK/big.yaml"
/usr/bin/time -f '%M' -o "$WORK/rss" "$MPSEARCH" search --config "$WORK/big.yaml" \
  >"$WORK/out" 2>"$WORK/err"
rc=$?
[[ $rc -eq 2 ]] || fail "a 2 MB config: exit $rc"
grep -qF "big.yaml: the file is more than 1048576 bytes, more than the 1 MiB" "$WORK/err" ||
  fail "a 2 MB config: $(head -c 300 "$WORK/err")"
(($(wc -l <"$WORK/err") == 1)) || fail "a 2 MB config: $(wc -l <"$WORK/err") lines of messages"
rss=$(tail -1 "$WORK/rss")
((rss < 200000)) || fail "a 2 MB config took $rss KB"

# 3,000 unknown keys: 50 listed, the rest counted
{ printf 'model: %s\npolicy: {name: random}\n' "$ROOT/models/lenet5.onnx"
  for i in $(seq 3000); do echo "key$i: 1"; done; } >"$WORK/keys.yaml"
expect_input_error "keys.yaml: and 2950 more problems (the first 50 are listed)" \
  search --config "$WORK/keys.yaml"
(($(wc -l <"$WORK/err") == 51)) || fail "3,000 unknown keys: $(wc -l <"$WORK/err") lines of messages"

# a binary config: the message names the NUL byte and reaches the end of its line
printf 'model: lenet5\npo\0licy: {name: random}\n' >"$WORK/binary.yaml"
expect_input_error "binary.yaml:2:3: a NUL byte: the file holds binary data, not YAML text; check that this is the right file" \
  search --config "$WORK/binary.yaml"
head -c 2000 "$ROOT/tests/data/pytorch_cnn.onnx" >"$WORK/model.yaml"
expect_input_error "not YAML text" search --config "$WORK/model.yaml"
expect_input_error "not YAML text" eval --model "$TINY" --policy "$WORK/model.yaml"

# --batch beyond what a forward pass needs
expect_input_error "--batch 100000 is more than 4096 images per pass" \
  eval --model "$TINY" --batch 100000
expect_input_error "--batch 100000 is more than 4096 images per pass" \
  train --arch lenet5 --batch 100000 --out "$WORK/m.onnx"
finish
