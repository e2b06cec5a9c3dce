#!/usr/bin/env bash
# Checks that a change leaves the arithmetic alone: runs every config under configs/ with small
# limits (1,000 validation images, 40 evaluations, short bayesian_bits training) with two
# mpsearch binaries and compares what they scored: archive.jsonl without its timing fields
# ("seconds", "elapsed") and pareto.csv, byte for byte.
#   scripts/compare_runs.sh OLD_MPSEARCH NEW_MPSEARCH [WORK_DIR]
# KEEP_OLD=1 reuses the old binary's runs already in WORK_DIR/old (one baseline, many changes).
# Exit 0 when every config matches, 1 otherwise (the differing configs are listed).
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: scripts/compare_runs.sh OLD_MPSEARCH NEW_MPSEARCH [WORK_DIR]}
new=${2:?usage: scripts/compare_runs.sh OLD_MPSEARCH NEW_MPSEARCH [WORK_DIR]}
work=${3:-$(mktemp -d)}
mkdir -p "$work"

small_config() { # config -> the same run with small limits
  sed -e 's/validation_images: [0-9]*/validation_images: 1000/' \
      -e 's/max_evaluations: [0-9]*/max_evaluations: 40/' \
      -e 's/^\(  *\)episodes: [0-9]*/\1episodes: 40/' \
      -e 's/^\(  *\)steps: [0-9]*/\1steps: 20/' \
      -e 's/mu_count: [0-9]*/mu_count: 2/' \
      -e 's/bisect_steps: [0-9]*/bisect_steps: 1/' \
      -e '/^output:/d' "$1"
}

scores() { # archive -> its lines without timing fields
  python3 -c '
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in ("seconds", "elapsed")}
    return [strip(x) for x in v] if isinstance(v, list) else v
for line in open(sys.argv[1]):
    print(json.dumps(strip(json.loads(line)), sort_keys=True))' "$1"
}

failed=()
for config in configs/quickstart.yaml configs/*/*.yaml; do
  name=$(echo "${config#configs/}" | tr / - | sed 's/\.yaml$//')
  small_config "$config" > "$work/$name.yaml"
  for side in old new; do
    bin=$old; [[ $side == new ]] && bin=$new
    [[ $side == old && ${KEEP_OLD:-0} == 1 && -f $work/old/$name/pareto.csv ]] && continue
    rm -rf "$work/$side/$name"
    "$bin" search --config "$work/$name.yaml" --output "$work/$side/$name" --quiet > /dev/null
  done
  if cmp -s "$work/old/$name/pareto.csv" "$work/new/$name/pareto.csv" &&
     cmp -s <(scores "$work/old/$name/archive.jsonl") <(scores "$work/new/$name/archive.jsonl"); then
    echo "same       $name ($(wc -l < "$work/new/$name/archive.jsonl") archive lines)"
  else
    echo "DIFFERENT  $name"
    failed+=("$name")
  fi
done
((${#failed[@]} == 0)) || { echo "differ: ${failed[*]}"; exit 1; }
echo "all configs score alike (runs in $work)"
