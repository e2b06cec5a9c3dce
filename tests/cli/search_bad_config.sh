# mpsearch search on bad configs: every problem of the file in one message with file:line:column,
# exit code 2, and no run directory left behind.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

cat >"$WORK/bad.yaml" <<YAML
model: $ROOT/models/lenet5.onnx
granularty: kernel
bits: {weights: [8, 4, 12], activations: [8, 4]}
constraints: {max_relative_bitops: 0.00001}
policy: {name: greedy_sensitivity, lookahed: 2}
budget: {max_evaluations: many}
output: $WORK/run
YAML
expect_input_error "bad.yaml:2:1: granularty" search --config "$WORK/bad.yaml"
for want in "did you mean 'granularity'" "bad.yaml:3:" "bits.weights[2]" "bad.yaml:4:" \
            "max_relative_bitops" "bad.yaml:5:" "lookahead" "bad.yaml:6:" "max_evaluations"; do
  grep -qF -- "$want" "$WORK/err" || fail "message lacks '$want': $(cat "$WORK/err")"
done
[[ ! -e $WORK/run ]] || fail "a run directory was created for a bad config"

printf 'model: [unclosed\n' >"$WORK/malformed.yaml"
expect_input_error "malformed.yaml:1:" search --config "$WORK/malformed.yaml"
expect_input_error "missing.yaml" search --config "$WORK/missing.yaml"
finish
