#!/usr/bin/env bash
# Float32 images/s of every torchvision family mpsearch imports (tests/data/torchvision/, reduced
# width, random weights) against PyTorch 1.13 eager on the same cores in the same run: mpsearch
# eval (2 workers, batch 256) and bench/torchvision_eager.py (2 threads, batch 256, no_grad), each
# the median of RUNS passes over IMAGES images (the fixture's 500 repeated), resized to the
# family's input size. Needs Debian's python3-torch and python3-torchvision.
#   flock /tmp/bench.lock bench/torchvision_bench.sh [OUT_DIR]     (RUNS, IMAGES, BUILD override)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/$(date -u +%F)-torchvision}
RUNS=${RUNS:-5}
IMAGES=${IMAGES:-2000}
BUILD=${BUILD:-build}
FIX=tests/data/torchvision
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

/usr/bin/python3 - "$FIX/images.npz" "$WORK/images.npz" "$IMAGES" <<'PY'
import sys, numpy as np
d = np.load(sys.argv[1]); n = int(sys.argv[3]); k = (n + 499) // 500
np.savez(sys.argv[2], images=np.concatenate([d["images"]] * k)[:n], labels=np.concatenate([d["labels"]] * k)[:n])
PY
/usr/bin/python3 bench/torchvision_eager.py --images "$IMAGES" --runs "$RUNS" 2>/dev/null >"$WORK/eager.txt"
{
echo "Command: \`bench/torchvision_bench.sh\` (RUNS=$RUNS, IMAGES=$IMAGES), $(date -u +%FT%TZ), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo
echo "| family | input | mpsearch float32 images/s | PyTorch eager images/s | mpsearch / PyTorch |"
echo "|---|---:|---:|---:|---:|"
for json in "$FIX"/*.json; do
  family=$(basename "$json" .json)
  size=$(grep -o '"input_size": *[0-9]*' "$json" | sed 's/.*: *//')
  echo "data: {test: $WORK/images.npz, preprocess: {mean: 0.2860, std: 0.3530, resize: $size}}" >"$WORK/d.yaml"
  eager=$(awk -v f="$family" '$1 == f {print $2}' "$WORK/eager.txt")
  if ! "$BUILD/mpsearch" eval --model "$FIX/$family.onnx" --data-config "$WORK/d.yaml" --json >/dev/null 2>"$WORK/err"; then
    echo "| $family | $size | not imported: $(sed 's/.*: op type/op type/; s/ is not supported.*/ unsupported/' "$WORK/err") | $eager | |"
    continue
  fi
  rate=$(for _ in $(seq "$RUNS"); do "$BUILD/mpsearch" eval --model "$FIX/$family.onnx" --data-config "$WORK/d.yaml" --json |
    python3 -c "import json,sys; print(json.load(sys.stdin)['images_per_second'])"; done | median)
  printf '| %s | %s | %.0f | %s | %.2fx |\n' "$family" "$size" "$rate" "$eager" "$(echo "$rate / $eager" | bc -l)"
done
} | tee "$OUT/images_per_second.md"
