# A run directory has one writer, and a signal ends a run where it can be resumed (issue 22, cases
# 2 and 6). While a search runs, a second search with the same --output and a --resume of the
# directory are refused with exit 3 and the running process's PID, and change nothing there.
# SIGTERM and SIGINT end a run after the batch in flight is written: exit 143 and 130, a message
# saying how to resume, an archive of complete batches (the resume drops nothing), no temporaries.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# a search that runs until it is stopped (random proposals, a budget it does not reach soon)
cat >"$WORK/long.yaml" <<YAML
model: $ROOT/models/lenet5.onnx
data: {calibration_images: 100, validation_images: 200}
bits: {weights: [8, 4, 2], activations: [8, 4]}
policy: {name: random}
budget: {max_evaluations: 1000000, batch: 4}
output: $WORK/run
YAML
sed 's/max_evaluations: 1000000/max_evaluations: 8/' "$WORK/long.yaml" >"$WORK/other.yaml"

searched() {
  local n; n=$(grep -c '"kind":"search"' "$WORK/run/archive.jsonl" 2>/dev/null)
  echo "${n:-0}"
}

# wait_for_records <n>: until the archive holds n search records (at most 60 s)
wait_for_records() {
  for _ in $(seq 600); do (($(searched) >= $1)) && return 0; sleep 0.1; done
  fail "the archive never reached $1 search records"; return 1
}

# stop_with <signal> <expected exit> <pid>: signals the run, waits for it, checks how it ended
stop_with() {
  kill -"$1" "$3"
  for _ in $(seq 300); do kill -0 "$3" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$3" 2>/dev/null && { fail "SIG$1: still running after 30 s"; kill -KILL "$3"; }
  wait "$3"
  local rc=$?
  [[ $rc -eq $2 ]] || fail "SIG$1: exit $rc, expected $2"
  grep -qF "interrupted by SIG$1 after" "$WORK/bg.err" || fail "SIG$1: no message: $(cat "$WORK/bg.err")"
  grep -qF "mpsearch search --resume $WORK/run" "$WORK/bg.err" || fail "SIG$1: no resume command"
  (($(searched) % 4 == 0)) || fail "SIG$1: the archive ends with a batch cut short"
  [[ -z $(find "$WORK/run" -name '*.tmp') ]] || fail "SIG$1: temporary files left"
}

"$MPSEARCH" search --config "$WORK/long.yaml" --quiet >"$WORK/bg.out" 2>"$WORK/bg.err" &
pid=$!
if wait_for_records 4; then
  cp "$WORK/run/config.yaml" "$WORK/config.before"
  expect_exit 3 "in use by another mpsearch process (PID $pid)" \
    search --config "$WORK/other.yaml" --output "$WORK/run" --quiet
  expect_exit 3 "in use by another mpsearch process (PID $pid)" search --resume "$WORK/run" --quiet
  cmp -s "$WORK/config.before" "$WORK/run/config.yaml" || fail "a refused run changed config.yaml"
fi
stop_with TERM 143 "$pid"

# the lock died with its holder: the resume runs, takes every record over (nothing dropped), and
# stops at SIGINT
before=$(searched)
"$MPSEARCH" search --resume "$WORK/run" >"$WORK/bg.out" 2>"$WORK/bg.err" &
pid=$!
wait_for_records $((before + 4)) && stop_with INT 130 "$pid"
grep -q "dropped" "$WORK/bg.err" && fail "the resume dropped lines: $(cat "$WORK/bg.err")"
finish
