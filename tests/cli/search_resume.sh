# mpsearch search end to end on real data with small limits: a run writes its whole directory; a
# run killed with SIGKILL at several moments and resumed ends with the same chosen policy and
# Pareto front as an uninterrupted run; 1 and 2 workers give identical results; a finished run
# resumed evaluates nothing new.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

config() { # config <policy block> <output dir>
  cat <<YAML
model: $ROOT/models/lenet5.onnx
data: {calibration_images: 200, validation_images: 400}
granularity: kernel
bits: {weights: [8, 4, 2], activations: [8, 4]}
pinned: {last: W8A8}
constraints: {max_relative_bitops: W4A4}
baselines: [W8A8, W4A4]
policy: $1
budget: {max_evaluations: 36, batch: 6}
seed: 7
workers: 2
output: $2
YAML
}

# the outputs two runs must agree on: the chosen policy's bits and the Pareto front
same_result() { # same_result <dir a> <dir b> <what>
  cmp -s <(sed -n '/^layers:/,$p' "$1/policy.yaml") <(sed -n '/^layers:/,$p' "$2/policy.yaml") ||
    fail "$3: chosen policies differ"
  cmp -s "$1/pareto.csv" "$2/pareto.csv" || fail "$3: Pareto fronts differ"
}

for policy in "{name: greedy_sensitivity, metric: kl}" "{name: random}"; do
  name=$(sed 's/.*name: \([a-z_]*\).*/\1/' <<<"$policy")
  config "$policy" "$WORK/$name-full" >"$WORK/$name.yaml"
  "$MPSEARCH" search --config "$WORK/$name.yaml" --quiet >"$WORK/$name-full.out" 2>&1 ||
    { fail "$name: uninterrupted run failed"; cat "$WORK/$name-full.out"; continue; }
  for file in config.yaml archive.jsonl policy.yaml pareto.csv summary.json report.md; do
    [[ -s $WORK/$name-full/$file ]] || fail "$name: $file missing"
  done
  [[ -z $(find "$WORK/$name-full" -name '*.tmp') ]] || fail "$name: temporary files left behind"

  # killed at several moments, each time resumed, then resumed to the end
  "$MPSEARCH" search --config "$WORK/$name.yaml" --output "$WORK/$name-killed" --quiet \
    >/dev/null 2>&1 &
  pid=$!
  sleep 0.8; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  for delay in 0.4 0.9 1.7; do
    [[ -f $WORK/$name-killed/archive.jsonl ]] || break
    "$MPSEARCH" search --resume "$WORK/$name-killed" --quiet >/dev/null 2>&1 &
    pid=$!
    sleep $delay; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  done
  if [[ -f $WORK/$name-killed/archive.jsonl ]]; then
    "$MPSEARCH" search --resume "$WORK/$name-killed" --quiet >"$WORK/$name-resumed.out" 2>&1 ||
      { fail "$name: resume failed"; cat "$WORK/$name-resumed.out"; }
  else # killed before the archive existed: start again
    "$MPSEARCH" search --config "$WORK/$name.yaml" --output "$WORK/$name-killed" --quiet \
      >"$WORK/$name-resumed.out" 2>&1 || fail "$name: restart failed"
  fi
  same_result "$WORK/$name-full" "$WORK/$name-killed" "$name killed and resumed"

  # one worker: identical results
  "$MPSEARCH" search --config "$WORK/$name.yaml" --output "$WORK/$name-one" --workers 1 --quiet \
    >/dev/null 2>&1 || fail "$name: 1-worker run failed"
  same_result "$WORK/$name-full" "$WORK/$name-one" "$name with 1 and 2 workers"

  # resuming a finished run evaluates nothing new
  lines=$(wc -l <"$WORK/$name-full/archive.jsonl")
  "$MPSEARCH" search --resume "$WORK/$name-full" --quiet >"$WORK/$name-again.out" 2>&1 ||
    fail "$name: resuming a finished run failed"
  [[ $(wc -l <"$WORK/$name-full/archive.jsonl") == "$lines" ]] || fail "$name: resume re-evaluated"
  grep -q "resumed" "$WORK/$name-again.out" || fail "$name: no outcome line: $(cat "$WORK/$name-again.out")"
done

# a second run into the same directory is refused; --resume of a directory without a run too
expect_input_error "already holds a run" search --config "$WORK/random.yaml" --quiet
expect_input_error "holds no run to resume" search --resume "$WORK" --quiet
expect_input_error "either --config" search --quiet
finish
