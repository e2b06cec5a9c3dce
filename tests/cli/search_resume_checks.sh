# A resume builds only on scores that hold for the run as it is now, and a kill leaves nothing
# that blocks it (issue 22, cases 3 and 5). The archive's first line records what the scores
# depend on: after validation_images or the quantizers are edited in the run's config.yaml, the
# resume exits 2 naming the key; a record whose accuracy was edited by hand is refused by its
# checksum. A run killed while creating its archive (only archive.jsonl.<pid>.tmp there) resumes
# from nothing, and the temporaries of killed writes are removed by the resume.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

cat >"$WORK/run.yaml" <<YAML
model: $ROOT/models/lenet5.onnx
data: {calibration_images: 100, validation_images: 400}
bits: {weights: [8, 4], activations: [8]}
quantizers: {weights: uniform, activations: max}
policy: {name: random}
budget: {max_evaluations: 8, batch: 4}
output: $WORK/full
YAML
"$MPSEARCH" search --config "$WORK/run.yaml" --quiet >"$WORK/full.out" 2>&1 ||
  { fail "the run failed: $(cat "$WORK/full.out")"; finish; }

copy_run() { rm -rf "$WORK/$1"; cp -r "$WORK/full" "$WORK/$1"; }

copy_run images
sed -i 's/validation_images: 400/validation_images: 300/' "$WORK/images/config.yaml"
expect_input_error "its scores depend on validation_images, which was '400' and is now '300'" \
  search --resume "$WORK/images" --quiet

copy_run quantizer
sed -i 's/weights: uniform,/weights: ls,/' "$WORK/quantizer/config.yaml"
expect_input_error "its scores depend on weight_quantizer, which was 'uniform' and is now 'ls" \
  search --resume "$WORK/quantizer" --quiet

copy_run edited
sed -i '3s/"accuracy":[0-9.]*/"accuracy":99.5/' "$WORK/edited/archive.jsonl"
expect_input_error "archive.jsonl:3: the line does not match its checksum" \
  search --resume "$WORK/edited" --quiet

# killed while the archive was first written: config.yaml and the archive's temporary only
mkdir -p "$WORK/early"
cp "$WORK/full/config.yaml" "$WORK/early/"
head -c 100 "$WORK/full/archive.jsonl" >"$WORK/early/archive.jsonl.4242.tmp"
"$MPSEARCH" search --resume "$WORK/early" >"$WORK/early.out" 2>"$WORK/early.err" ||
  fail "resuming a run killed before its archive existed failed: $(cat "$WORK/early.err")"
grep -q "^8 evaluations (0 resumed)" "$WORK/early.out" || fail "early: $(head -1 "$WORK/early.out")"
cmp -s "$WORK/full/pareto.csv" "$WORK/early/pareto.csv" || fail "early: the Pareto front differs"

# temporaries of killed writes in a finished run: removed (and said) by the resume
copy_run stale
touch "$WORK/stale/archive.jsonl.4242.tmp" "$WORK/stale/.pareto.svg.4242.0.gp" \
  "$WORK/stale/.pareto.svg.4242.1.svg" "$WORK/stale/summary.json.77.tmp"
"$MPSEARCH" search --resume "$WORK/stale" >"$WORK/stale.out" 2>"$WORK/stale.err" ||
  fail "resuming past stale temporaries failed: $(cat "$WORK/stale.err")"
[[ -z $(find "$WORK/stale" -name '*.tmp' -o -name '.pareto.svg.*') ]] ||
  fail "stale temporaries left: $(ls -a "$WORK/stale")"
grep -qF "removed .pareto.svg.4242.0.gp, a temporary file an interrupted run left" "$WORK/stale.err" ||
  fail "the removal is not reported: $(cat "$WORK/stale.err")"
cmp -s "$WORK/full/pareto.csv" "$WORK/stale/pareto.csv" || fail "stale: the Pareto front differs"
finish
