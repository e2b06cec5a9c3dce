# mpsearch search with policy bayesian_bits end to end on real data with small limits: a mu sweep
# gives one candidate per mu with cost falling as mu grows, each with the policy's own accuracy
# in the archive and the report; a bisection step follows under the budget; 1 and 2 workers give
# identical results; a finished run resumed evaluates nothing new, a cut one takes the archived
# mu from the archive instead of training it again; the finetune mode runs; bad
# parameters are refused with a message that names them; grid `run` learns the space's own
# bit-widths and its own accuracy is the evaluator's.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

config() { # config <policy block> <output dir> [granularity] [pruning]
  cat <<YAML
model: $ROOT/models/lenet5.onnx
data: {calibration_images: 200, validation_images: 400}
granularity: ${3:-kernel}
bits: {weights: [8, 4, 2], activations: [8, 4, 2], pruning: ${4:-false}}
pinned: {last: W8A8}
constraints: {max_relative_bitops: W4A4}
baselines: [W4A4]
policy: $1
budget: {max_evaluations: 20}
seed: 3
workers: 2
output: $2
YAML
}

sweep="{name: bayesian_bits, mu_min: 0.01, mu_max: 1, mu_count: 4, bisect_steps: 1, steps: 60, gate_lr: 0.15, batch: 32}"
config "$sweep" "$WORK/bb" >"$WORK/bb.yaml"
"$MPSEARCH" search --config "$WORK/bb.yaml" --quiet >"$WORK/bb.out" 2>&1 ||
  { fail "post_training run failed"; cat "$WORK/bb.out"; }
for file in archive.jsonl policy.yaml pareto.csv summary.json report.md; do
  [[ -s $WORK/bb/$file ]] || fail "$file missing"
done
grep -q "## The policy's own accuracy" "$WORK/bb/report.md" || fail "report.md has no own-accuracy table"

# One record per mu, each with own_accuracy; the sweep's BitOPs never rise with mu and do fall.
python3 - "$WORK/bb/archive.jsonl" <<'PY' || fail "archive check: see above"
import json, sys
records = [json.loads(l) for l in open(sys.argv[1]) if '"kind":"search"' in l]
sweep = [r for r in records if r["stage"].startswith("sweep mu=")]
bisect = [r for r in records if r["stage"].startswith("bisection mu=")]
assert len(sweep) == 4, f"{len(sweep)} sweep records, expected 4"
assert len(bisect) <= 1, f"{len(bisect)} bisection records, expected at most 1"
assert all(0 <= r["own_accuracy"] <= 100 for r in records), "own_accuracy missing or out of range"
cost = [r["score"]["relative_bitops"] for r in sweep]
assert all(b <= a for a, b in zip(cost, cost[1:])), f"sweep BitOPs rise with mu: {cost}"
assert cost[-1] < cost[0], f"mu changed nothing: {cost}"
PY

# one worker: identical results (the policy's training does not depend on the evaluator's workers)
"$MPSEARCH" search --config "$WORK/bb.yaml" --output "$WORK/bb-one" --workers 1 --quiet \
  >/dev/null 2>&1 || fail "1-worker run failed"
cmp -s "$WORK/bb/pareto.csv" "$WORK/bb-one/pareto.csv" || fail "1 and 2 workers: Pareto fronts differ"

# resuming a finished run evaluates nothing new
lines=$(wc -l <"$WORK/bb/archive.jsonl")
"$MPSEARCH" search --resume "$WORK/bb" --quiet >"$WORK/again.out" 2>&1 ||
  { fail "resuming a finished run failed"; cat "$WORK/again.out"; }
[[ $(wc -l <"$WORK/bb/archive.jsonl") == "$lines" ]] || fail "resume re-evaluated"

# a killed run resumes: the archived mu is taken from the archive, not trained again (its own
# accuracy, marked 12.34 here, stays), and the rest trains to the uninterrupted run's front. The
# marked line gets a new checksum, as the writer would give it (search/archive.h), since the
# resume refuses an edited line.
mkdir -p "$WORK/bb-cut"
cp "$WORK/bb/config.yaml" "$WORK/bb-cut/"
python3 - "$WORK/bb/archive.jsonl" "$WORK/bb-cut/archive.jsonl" <<'PY' || fail "cutting the archive failed"
import hashlib, json, sys
def signed(r):
    r.pop("check", None)
    body = json.dumps(r, separators=(",", ":"))
    return body[:-1] + ',"check":"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"}\n'
out, searched = [], 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") == "search":
        searched += 1
        if searched > 1: break  # a kill after the first record: nothing later was written
        r["own_accuracy"] = 12.34
    out.append(signed(r))
open(sys.argv[2], "w").write("".join(out))
PY
"$MPSEARCH" search --resume "$WORK/bb-cut" --quiet >"$WORK/cut.out" 2>&1 ||
  { fail "resuming a cut run failed"; cat "$WORK/cut.out"; }
cmp -s "$WORK/bb/pareto.csv" "$WORK/bb-cut/pareto.csv" || fail "resumed and uninterrupted fronts differ"
grep -q "| 0 | sweep mu=0.01 | .* | 12.34 |" "$WORK/bb-cut/report.md" ||
  { fail "the resumed run trained the archived mu again"; grep "sweep mu" "$WORK/bb-cut/report.md"; }

# finetune mode, layer granularity (the paper's)
config "{name: bayesian_bits, mode: finetune, mu_count: 1, steps: 20, finetune_steps: 10, batch: 32}" \
  "$WORK/ft" layer >"$WORK/ft.yaml"
"$MPSEARCH" search --config "$WORK/ft.yaml" --quiet >"$WORK/ft.out" 2>&1 ||
  { fail "finetune mode failed"; cat "$WORK/ft.out"; }
grep -q '"own_accuracy"' "$WORK/ft/archive.jsonl" || fail "finetune mode: no own_accuracy"

# pruning: z_2 of every kernel is learned; a strong mu prunes kernels (0 bits) of some layer
config "{name: bayesian_bits, mu_min: 5, mu_max: 5, mu_count: 1, bisect_steps: 0, steps: 60, gate_lr: 0.2, batch: 32}" \
  "$WORK/prune" kernel true >"$WORK/prune.yaml"
"$MPSEARCH" search --config "$WORK/prune.yaml" --quiet >"$WORK/prune.out" 2>&1 ||
  { fail "pruning run failed"; cat "$WORK/prune.out"; }
python3 - "$WORK/prune/archive.jsonl" <<'PY' || fail "pruning check: see above"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if '"kind":"search"' in l][0]
bits = [b for layer in r["policy"] for b in (layer["w"] if isinstance(layer["w"], list) else [layer["w"]])]
assert 0 in bits, f"mu = 5 pruned no kernel: {sorted(set(bits))}"
PY

# a space with nothing to choose (bits [4] and [4]) trains once: mu would change nothing
config "{name: bayesian_bits, mu_count: 3, steps: 20, batch: 32}" "$WORK/fixed" \
  | sed 's/weights: \[8, 4, 2\], activations: \[8, 4, 2\]/weights: [4], activations: [4]/' \
  | sed 's/max_relative_bitops: W4A4/max_relative_bitops: W8A8/' >"$WORK/fixed.yaml"
"$MPSEARCH" search --config "$WORK/fixed.yaml" --quiet >"$WORK/fixed.out" 2>&1 ||
  { fail "fixed-space run failed"; cat "$WORK/fixed.out"; }
[[ $(grep -c '"kind":"search"' "$WORK/fixed/archive.jsonl") == 1 ]] ||
  fail "a space without choices trained more than once"

# grid run, bitops regularizer: gates over the space's own bit-widths (3 and 6 included), and the
# policy's own accuracy is the evaluator's (the same quantizers; integer and fake-quant paths may
# round an image differently)
config "{name: bayesian_bits, grid: run, regularizer: bitops, mu_min: 0.05, mu_max: 2, mu_count: 3, bisect_steps: 0, steps: 60, gate_lr: 0.15, batch: 32}" \
  "$WORK/run" | sed 's/\[8, 4, 2\]/[8, 6, 4, 3, 2]/g' >"$WORK/run.yaml"
"$MPSEARCH" search --config "$WORK/run.yaml" --quiet >"$WORK/run.out" 2>&1 ||
  { fail "grid run failed"; cat "$WORK/run.out"; }
python3 - "$WORK/run/archive.jsonl" <<'PY' || fail "grid run check: see above"
import json, sys
records = [json.loads(l) for l in open(sys.argv[1]) if '"kind":"search"' in l]
assert len(records) == 3, f"{len(records)} records, expected 3"
for r in records:
    gap = abs(r["own_accuracy"] - r["score"]["accuracy"])
    assert gap <= 0.5, f'{r["stage"]}: own {r["own_accuracy"]} % against evaluator {r["score"]["accuracy"]} %'
bits = {b for r in records for layer in r["policy"]
        for b in (layer["w"] if isinstance(layer["w"], list) else [layer["w"]]) + [layer["a"]]}
assert bits <= {8, 6, 4, 3, 2}, f"bits outside the space: {sorted(bits)}"
assert bits & {6, 3}, f"no 3 or 6 bits learned: {sorted(bits)}"
cost = [r["score"]["relative_bitops"] for r in records]
assert cost[-1] < cost[0], f"mu changed nothing: {cost}"
PY

# bad input
config "{name: bayesian_bits, grid: nested}" "$WORK/bad4" >"$WORK/bad4.yaml"
expect_input_error "grid" search --config "$WORK/bad4.yaml" --quiet
config "{name: bayesian_bits, mode: sometimes}" "$WORK/bad1" >"$WORK/bad1.yaml"
expect_input_error "mode" search --config "$WORK/bad1.yaml" --quiet
config "{name: bayesian_bits, mu_min: 1, mu_max: 0.1}" "$WORK/bad2" >"$WORK/bad2.yaml"
expect_input_error "mu_max must not be below mu_min" search --config "$WORK/bad2.yaml" --quiet
config "{name: bayesian_bits}" "$WORK/bad3" network >"$WORK/bad3.yaml"
expect_input_error "granularity \`network\`" search --config "$WORK/bad3.yaml" --quiet
finish
