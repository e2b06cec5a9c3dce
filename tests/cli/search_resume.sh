# mpsearch search end to end on real data with small limits: a run writes its whole directory; a
# run cut short and resumed ends as the uninterrupted run did (the same archive but for timings,
# chosen policy and Pareto front), for cuts at fixed records of the archive: after a complete
# batch, inside a batch (its lines are dropped and evaluated again), through the middle of a line
# and after the last record; 1 and 2 workers give identical results; a finished run resumed
# evaluates nothing new. Deterministic: the cuts are made in a copy of the finished archive, as a
# kill at that moment would leave it.
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

# the outputs two runs must agree on: the chosen policy's bits, the Pareto front, the archive
same_result() { # same_result <dir a> <dir b> <what>
  cmp -s <(sed -n '/^layers:/,$p' "$1/policy.yaml") <(sed -n '/^layers:/,$p' "$2/policy.yaml") ||
    fail "$3: chosen policies differ"
  cmp -s "$1/pareto.csv" "$2/pareto.csv" || fail "$3: Pareto fronts differ"
  cmp -s <(untimed "$1/archive.jsonl") <(untimed "$2/archive.jsonl") || fail "$3: archives differ"
}

# the line number of search record <id> in an archive (keys are written in sorted order)
record_line() { grep -n "\"id\":$2,\"kind\":\"search\"" "$1" | cut -d: -f1; }

# how many of the search records in the first <n> lines belong to complete batches
complete_records() { # complete_records <archive> <n>
  head -n "$2" "$1" | grep '"kind":"search"' |
    sed 's/.*"batch":\([0-9]*\),"batch_size":\([0-9]*\),.*/\1 \2/' | sort | uniq -c |
    awk '$1 == $3 { kept += $1 } END { print kept + 0 }'
}

# resume_from_cut <name> <record id> [half]: the finished run's archive kept up to and including
# that record (and with "half", half of the next line too), resumed, compared with the full run
resume_from_cut() {
  local name=$1 id=$2 half=${3:-}
  local full=$WORK/$name-full dir=$WORK/$name-cut-$id$half
  local n; n=$(record_line "$full/archive.jsonl" "$id")
  [[ -n $n ]] || { fail "$name: no search record $id in the archive"; return; }
  mkdir -p "$dir" && cp "$full/config.yaml" "$dir/"
  head -n "$n" "$full/archive.jsonl" >"$dir/archive.jsonl"
  if [[ -n $half ]]; then
    local next; next=$(sed -n "$((n + 1))p" "$full/archive.jsonl")
    printf '%s' "${next:0:$((${#next} / 2))}" >>"$dir/archive.jsonl"
  fi
  local kept; kept=$(complete_records "$dir/archive.jsonl" "$n")
  "$MPSEARCH" search --resume "$dir" >"$dir.out" 2>"$dir.err" ||
    { fail "$name cut after record $id$half: resume failed"; cat "$dir.err"; return; }
  grep -q "^36 evaluations ($kept resumed)" "$dir.out" ||
    fail "$name cut after record $id$half: expected $kept resumed: $(head -1 "$dir.out")"
  local dropped=$((id + 1 - kept)); [[ -n $half ]] && dropped=$((dropped + 1))
  if ((dropped > 0)); then
    grep -q "resume: dropped $dropped line(s)" "$dir.err" ||
      fail "$name cut after record $id$half: no 'dropped $dropped line(s)': $(cat "$dir.err")"
  fi
  same_result "$full" "$dir" "$name cut after record $id$half and resumed"
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
  [[ $(grep -c '"kind":"search"' "$WORK/$name-full/archive.jsonl") == 36 ]] ||
    fail "$name: the archive does not hold 36 search records"

  resume_from_cut "$name" 0
  resume_from_cut "$name" 5
  resume_from_cut "$name" 20
  resume_from_cut "$name" 13 half
  resume_from_cut "$name" 35

  # one worker: identical results
  "$MPSEARCH" search --config "$WORK/$name.yaml" --output "$WORK/$name-one" --workers 1 --quiet \
    >/dev/null 2>&1 || fail "$name: 1-worker run failed"
  same_result "$WORK/$name-full" "$WORK/$name-one" "$name with 1 and 2 workers"

  # resuming a finished run evaluates nothing new
  lines=$(wc -l <"$WORK/$name-full/archive.jsonl")
  "$MPSEARCH" search --resume "$WORK/$name-full" --quiet >"$WORK/$name-again.out" 2>&1 ||
    fail "$name: resuming a finished run failed"
  [[ $(wc -l <"$WORK/$name-full/archive.jsonl") == "$lines" ]] || fail "$name: resume re-evaluated"
  grep -q "^36 evaluations (36 resumed)" "$WORK/$name-again.out" ||
    fail "$name: no outcome line: $(cat "$WORK/$name-again.out")"
done

# a second run into the same directory is refused; --resume of a directory without a run too
expect_input_error "already holds a run" search --config "$WORK/random.yaml" --quiet
expect_input_error "holds no run to resume" search --resume "$WORK" --quiet
expect_input_error "either --config" search --quiet
finish
