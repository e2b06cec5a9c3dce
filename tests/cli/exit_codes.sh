# The exit codes of search/cli.h, told apart: 2 for bad usage or input, 1 for a failure while
# running on good input (an output that cannot be written), each with one message on stderr. The
# tests run as root, so the unwritable places are ones root cannot write either: /proc, a path
# through a regular file, and /dev/full behind stdout.
source "$(dirname "$0")/common.bash"
TINY=$ROOT/tests/data/bad/tiny.onnx
FAST=(--limit 50 --batch 50 --calibration 50)
echo "a file, not a directory" >"$WORK/file"

# bad usage or input: 2
expect_exit 2 "usage: mpsearch" # no command
expect_exit 2 "unknown command 'frobnicate'" frobnicate
expect_exit 2 "unrecognised option '--frobnicate'" eval --model "$TINY" --frobnicate
expect_exit 2 "absent.onnx: cannot open" eval --model "$WORK/absent.onnx"
expect_exit 2 "absent.yaml" search --config "$WORK/absent.yaml"
expect_exit 2 "absent.yaml" eval --model "$TINY" --policy "$WORK/absent.yaml"
expect_exit 2 "--limit must be positive" eval --model "$TINY" --limit 0

# good input, outputs that cannot be written: 1
cat >"$WORK/run.yaml" <<YAML
model: $ROOT/models/lenet5.onnx
data: {calibration_images: 50, validation_images: 50}
bits: {weights: [8, 4], activations: [8]}
policy: {name: random}
budget: {max_evaluations: 2, batch: 2}
output: $WORK/run
YAML
expect_exit 1 "cannot create the run directory" search --config "$WORK/run.yaml" --quiet \
  --output /proc/mpsearch-run
expect_exit 1 "cannot create the run directory" search --config "$WORK/run.yaml" --quiet \
  --output "$WORK/file/run"
expect_exit 1 "p.yaml: cannot write" eval --model "$TINY" --uniform W4A8 "${FAST[@]}" \
  --write-policy /proc/mpsearch/p.yaml
expect_exit 1 "p.yaml: cannot write" eval --model "$TINY" --uniform W4A8 "${FAST[@]}" \
  --write-policy "$WORK/file/p.yaml"
"$MPSEARCH" eval --model "$TINY" --limit 50 >/dev/full 2>"$WORK/err"
rc=$?
if [[ $rc -ne 1 ]] || ! grep -qF "cannot write the standard output" "$WORK/err"; then
  echo "FAIL: eval >/dev/full -> exit $rc, stderr:"; cat "$WORK/err"; failures=$((failures + 1))
fi
[[ -z $(find "$WORK" -name '*.tmp') ]] || { echo "FAIL: temporary files left"; failures=$((failures + 1)); }
finish
