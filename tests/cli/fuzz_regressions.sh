# Inputs the fuzzers found problems with (fuzz/README.md, "Findings so far") stay fixed: each goes
# through the command that reads such a file and must end in success or one input error (exit 0
# or 2), never a crash, a sanitizer report or an "internal error" (exit 1). Under
# scripts/sanitize.sh this runs with AddressSanitizer and UBSan.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
REGRESSIONS=$ROOT/tests/data/fuzz/regressions
TINY=$ROOT/tests/data/bad/tiny.onnx

# check_input <file> args...: the command on it ends with exit 0 or 2
check_input() {
  local file=$1; shift
  "$MPSEARCH" "$@" >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  if [[ $rc -ne 0 && $rc -ne 2 ]] || grep -q "internal error\|runtime error\|Sanitizer" "$WORK/err"; then
    fail "$(basename "$file"): mpsearch $* -> exit $rc: $(head -c 400 "$WORK/err")"
  fi
}

shopt -s nullglob
for f in "$REGRESSIONS"/onnx/*; do check_input "$f" eval --model "$f" --limit 20; done
for f in "$REGRESSIONS"/policy_file/*; do
  check_input "$f" eval --model "$TINY" --policy "$f" --limit 20 --calibration 20
done
finish
