# mpsearch eval: every class of bad input gets one clear message and exit 2.
source "$(dirname "$0")/common.bash"
BAD=$ROOT/tests/data/bad

expect_input_error "absent.onnx: cannot open" eval --model "$WORK/absent.onnx"
echo "not a model" >"$WORK/text.onnx"
expect_input_error "text.onnx: not a valid ONNX model" eval --model "$WORK/text.onnx"
head -c 300 "$BAD/tiny.onnx" >"$WORK/truncated.onnx"
expect_input_error "truncated.onnx" eval --model "$WORK/truncated.onnx"
expect_input_error "LeakyRelu" eval --model "$BAD/unsupported_op.onnx"
expect_input_error "act_leaky" eval --model "$BAD/unsupported_op.onnx"
expect_input_error "3x32x32" eval --model "$BAD/input_3x32x32.onnx" --limit 10
expect_input_error "--limit must be positive" eval --model "$BAD/tiny.onnx" --limit 0
expect_input_error "unrecognised option '--frobnicate'" eval --model "$BAD/tiny.onnx" --frobnicate
expect_input_error "the option '--model' is required" eval
expect_input_error "no t10k-images-idx3-ubyte" eval --model "$BAD/tiny.onnx" --data "$WORK"
expect_input_error "unknown split" eval --model "$BAD/tiny.onnx" --split everything
expect_input_error "unknown command 'evaluate'" evaluate
finish
