#!/usr/bin/env bash
# Installs the Debian packages mpsearch needs (non-interactive; does nothing for packages already
# installed) and builds everything into build/ (Release).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  cmake g++ make
  libdnnl-dev ocl-icd-opencl-dev   # oneDNN; its CMake config needs the OpenCL headers
  libtbb-dev
  libboost-program-options-dev
  libyaml-cpp-dev
  nlohmann-json3-dev
  doctest-dev
  libonnx-dev libprotobuf-dev
  zlib1g-dev
  libpng-dev libjpeg62-turbo-dev  # image folders: PNG and JPEG decoding
  dataset-fashion-mnist
  gnuplot-nox
  libopenmpi-dev openmpi-bin       # mpirun -np N mpsearch search (docs/distributed.md)
  time                             # /usr/bin/time: tests/cli/bad_input_bounds.sh measures memory
  python3                          # tests/cli/torchvision_import.sh reads its JSON fixtures
  clang libclang-rt-dev            # libFuzzer and its sanitizers: scripts/fuzz.sh
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm run ONNX Runtime's Node binding (tests/cli/export_ort.sh). A machine whose
# nodejs package already brings npm (NodeSource's) must not get Debian's npm: the two conflict.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ONNX Runtime for checking exported models (tests/ort/package-lock.json pins the version);
# --ignore-scripts skips the binding's optional GPU download, which this network cannot reach.
(cd tests/ort && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
node -e "require('./tests/ort/node_modules/onnxruntime-node')" ||
  { echo "setup: onnxruntime-node does not load (tests/ort)" >&2; exit 1; }

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
