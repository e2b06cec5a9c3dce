# Helpers for the end-to-end CLI tests. Each test script is run as
#   bash tests/cli/<name>.sh <path-to-mpsearch> <repo-root>
# and sources this file. A failed expectation prints what was run and exits 1.
set -uo pipefail
MPSEARCH=$1
ROOT=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failures=0

# expect_failure "<substring of stderr>" args... : the command must exit non-zero (not by a
# signal: a crash is a failure too) and print the substring on stderr.
expect_failure() {
  local want=$1; shift
  "$MPSEARCH" "$@" >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  if [[ $rc -eq 0 || $rc -ge 128 ]] || ! grep -qF -- "$want" "$WORK/err"; then
    echo "FAIL: mpsearch $* -> exit $rc, stderr:"; cat "$WORK/err"
    echo "      expected a non-zero exit and: $want"
    failures=$((failures + 1))
  fi
}

finish() {
  if ((failures)); then echo "$failures check(s) failed"; exit 1; fi
  echo "all checks passed"
}
