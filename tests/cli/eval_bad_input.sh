# mpsearch eval: every class of bad input gets one clear message and a non-zero exit.
source "$(dirname "$0")/common.bash"
BAD=$ROOT/tests/data/bad

expect_failure "absent.onnx: cannot open" eval --model "$WORK/absent.onnx"
echo "not a model" >"$WORK/text.onnx"
expect_failure "text.onnx: not a valid ONNX model" eval --model "$WORK/text.onnx"
head -c 300 "$BAD/tiny.onnx" >"$WORK/truncated.onnx"
expect_failure "truncated.onnx" eval --model "$WORK/truncated.onnx"
expect_failure "LeakyRelu" eval --model "$BAD/unsupported_op.onnx"
expect_failure "act_leaky" eval --model "$BAD/unsupported_op.onnx"
expect_failure "3x32x32" eval --model "$BAD/input_3x32x32.onnx" --limit 10
expect_failure "--limit must be positive" eval --model "$BAD/tiny.onnx" --limit 0
expect_failure "unrecognised option '--frobnicate'" eval --model "$BAD/tiny.onnx" --frobnicate
expect_failure "the option '--model' is required" eval
expect_failure "no t10k-images-idx3-ubyte" eval --model "$BAD/tiny.onnx" --data "$WORK"
expect_failure "unknown split" eval --model "$BAD/tiny.onnx" --split everything
expect_failure "unknown command 'evaluate'" evaluate
finish
