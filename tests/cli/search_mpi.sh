# mpsearch search under mpirun (docs/distributed.md): three ranks with one worker thread each give
# the one-process run's archive byte for byte but for its timings, and its chosen policy and
# Pareto front, for every policy, also when resumed; only rank 0 prints; a worker that cannot load the run makes
# rank 0 name it and exit 2 with no run directory; a config every rank refuses is reported once;
# a worker with another model is an error naming the rank, not a wrong score. Skipped when
# mpirun is absent; every mpirun is bounded by `timeout`, so a hang fails instead of blocking.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

if ! command -v mpirun >/dev/null; then
  echo "skipped: no mpirun (install openmpi-bin and libopenmpi-dev: scripts/setup.sh)"
  exit 0
fi
# Open MPI's own allocations are not ours to answer for under the sanitizer build.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
mpi() { timeout 120 mpirun --oversubscribe --allow-run-as-root "$@"; }

config() { # config <policy block> [model]
  cat <<YAML
model: $ROOT/models/${2:-lenet5}.onnx
data: {calibration_images: 200, validation_images: 500}
granularity: kernel
bits: {weights: [8, 4, 2], activations: [8, 4, 2]}
pinned: {last: W8A8}
constraints: {max_relative_bitops: W4A4}
baselines: [W8A8, W4A4]
policy: $1
budget: {max_evaluations: 30, batch: 6}
seed: 5
workers: 2
output: $WORK/unused
YAML
}

policies=(
  "{name: uniform}"
  "{name: random}"
  "{name: greedy_sensitivity, metric: kl}"
  "{name: autoq, episodes: 30, warmup_episodes: 12, episodes_per_batch: 6, llc_updates: 8, hidden: 64}"
  "{name: bayesian_bits, mu_min: 0.1, mu_max: 10, mu_count: 3, bisect_steps: 1, steps: 20, gate_lr: 0.15, batch: 32}"
)
for policy in "${policies[@]}"; do
  name=$(sed 's/.*name: \([a-z_]*\).*/\1/' <<<"$policy")
  config "$policy" >"$WORK/$name.yaml"
  "$MPSEARCH" search --config "$WORK/$name.yaml" --output "$WORK/$name-one" --workers 1 --quiet \
    >"$WORK/$name-one.out" 2>&1 || { fail "$name: one process failed"; cat "$WORK/$name-one.out"; continue; }
  mpi -np 3 "$MPSEARCH" search --config "$WORK/$name.yaml" --output "$WORK/$name-mpi" --workers 1 \
    --quiet >"$WORK/$name-mpi.out" 2>"$WORK/$name-mpi.err" ||
    { fail "$name: mpirun -np 3 failed"; cat "$WORK/$name-mpi.err"; continue; }
  cmp -s <(untimed "$WORK/$name-one/archive.jsonl") <(untimed "$WORK/$name-mpi/archive.jsonl") ||
    fail "$name: the 3-rank archive differs from the one-process archive"
  cmp -s "$WORK/$name-one/pareto.csv" "$WORK/$name-mpi/pareto.csv" || fail "$name: Pareto fronts differ"
  if [[ -e $WORK/$name-one/policy.yaml ]]; then # none when no candidate meets the budget
    cmp -s <(sed -n '/^layers:/,$p' "$WORK/$name-one/policy.yaml") \
      <(sed -n '/^layers:/,$p' "$WORK/$name-mpi/policy.yaml" 2>/dev/null) ||
      fail "$name: chosen policies differ"
  else
    [[ -e $WORK/$name-mpi/policy.yaml ]] && fail "$name: only the 3-rank run chose a policy"
  fi
  [[ $(grep -c '^report: ' "$WORK/$name-mpi.out") == 1 ]] || fail "$name: not exactly one rank printed the outcome"
  [[ -s $WORK/$name-mpi.err ]] && { fail "$name: stderr not empty under --quiet"; cat "$WORK/$name-mpi.err"; }
done
[[ -e $WORK/unused ]] && fail "a rank wrote the config's output directory"

# --resume under mpirun: the one-process random run cut after its third batch (18 records of 6)
# and continued by 3 ranks ends with the one-process archive.
mkdir -p "$WORK/resumed" && cp "$WORK/random-one/config.yaml" "$WORK/resumed/"
cut=$(grep -n '"batch":2,' "$WORK/random-one/archive.jsonl" | tail -1 | cut -d: -f1)
head -n "$cut" "$WORK/random-one/archive.jsonl" >"$WORK/resumed/archive.jsonl"
mpi -np 3 "$MPSEARCH" search --resume "$WORK/resumed" --workers 1 --quiet >"$WORK/resumed.out" 2>&1 ||
  { fail "resume under mpirun failed"; cat "$WORK/resumed.out"; }
grep -q "^30 evaluations (18 resumed)" "$WORK/resumed.out" || fail "resume: $(head -1 "$WORK/resumed.out")"
cmp -s <(untimed "$WORK/random-one/archive.jsonl") <(untimed "$WORK/resumed/archive.jsonl") ||
  fail "resumed by 3 ranks: the archive differs from the one-process archive"

# Workers that cannot load the run (here: their command line names a missing model): rank 0 names
# the first, exits 2 and leaves no run directory.
config "{name: random}" no_such_model >"$WORK/broken.yaml"
mpi -np 1 "$MPSEARCH" search --config "$WORK/random.yaml" --output "$WORK/broken-run" : \
  -np 2 "$MPSEARCH" search --config "$WORK/broken.yaml" --output "$WORK/broken-run" \
  >"$WORK/broken.out" 2>"$WORK/broken.err"
rc=$?
[[ $rc == 2 ]] || fail "failing workers: exit $rc, expected 2"
grep -q "rank 1 could not load the run: .*no_such_model.*(and 1 other rank(s) failed too)" "$WORK/broken.err" ||
  { fail "failing workers: no message naming rank 1"; cat "$WORK/broken.err"; }
[[ -e $WORK/broken-run ]] && fail "failing workers: a run directory was created"

# A config that every rank refuses: one message (rank 0's), exit 2.
mpi -np 3 "$MPSEARCH" search --config "$WORK/broken.yaml" >"$WORK/all.out" 2>"$WORK/all.err"
rc=$?
[[ $rc == 2 ]] || fail "bad config for all ranks: exit $rc, expected 2"
[[ $(grep -c "no_such_model" "$WORK/all.err") == 1 ]] ||
  { fail "bad config for all ranks: expected one message"; cat "$WORK/all.err"; }

# A worker with another model loads but cannot read rank 0's candidates: an error naming it.
config "{name: random}" mobilenet_tiny >"$WORK/other.yaml"
mpi -np 1 "$MPSEARCH" search --config "$WORK/random.yaml" --output "$WORK/other-run" --quiet : \
  -np 1 "$MPSEARCH" search --config "$WORK/other.yaml" --output "$WORK/other-run" --quiet \
  >"$WORK/other.out" 2>"$WORK/other.err"
rc=$?
[[ $rc == 1 ]] || fail "a worker with another model: exit $rc, expected 1"
grep -q "rank 1: .*disagree about the model" "$WORK/other.err" ||
  { fail "a worker with another model: no message naming rank 1"; cat "$WORK/other.err"; }

finish
