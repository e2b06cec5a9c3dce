# Helpers for the end-to-end CLI tests. Each test script is run as
#   bash tests/cli/<name>.sh <path-to-mpsearch> <repo-root>
# and sources this file. A failed expectation prints what was run and exits 1.
set -uo pipefail
MPSEARCH=$1
ROOT=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failures=0

# expect_exit <code> "<substring of stderr>" args... : the command must exit with <code> (the
# codes of search/cli.h: 1 a failure while running, 2 bad usage or input) and print the
# substring on stderr.
expect_exit() {
  local code=$1 want=$2; shift 2
  "$MPSEARCH" "$@" >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  if [[ $rc -ne $code ]] || ! grep -qF -- "$want" "$WORK/err"; then
    echo "FAIL: mpsearch $* -> exit $rc, stderr:"; cat "$WORK/err"
    echo "      expected exit $code and: $want"
    failures=$((failures + 1))
  fi
}

# expect_input_error "<substring of stderr>" args... : rejected as bad usage or input (exit 2).
expect_input_error() { expect_exit 2 "$@"; }

# untimed <archive.jsonl>: the archive without its timings (run seconds "elapsed", evaluation
# "seconds"), which no two runs share, and without the line checksums, which cover the timings
untimed() {
  sed -e 's/"elapsed":[^,}]*//g' -e 's/"seconds":[^,}]*//g' -e 's/,"check":"[0-9a-f]*"//' "$1"
}

finish() {
  if ((failures)); then echo "$failures check(s) failed"; exit 1; fi
  echo "all checks passed"
}
