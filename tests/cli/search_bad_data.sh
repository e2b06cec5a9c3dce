# Data a search or an evaluation cannot use is an error before anything is written (issue 22,
# cases 1 and 5): an empty validation split (a training file of 30,000 images, valid idx files),
# a split smaller than the config's validation_images, a corrupt data file and a model whose
# input does not fit the images each exit 2 with a message naming the split or the files, and
# leave no run directory behind, so a plain re-run works once the input is fixed.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
FMNIST=/usr/share/datasets/fashion-mnist

be32() { # a 32-bit big-endian number, as idx headers hold them
  printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) \
    $(($1 >> 8 & 255)) $(($1 & 255)))"
}

# make_data <dir> <training images>: the installed data set with its training files cut to the
# first N images (valid idx files: the header's count says N)
make_data() {
  local dir=$1 n=$2
  mkdir -p "$dir"
  ln -sf "$FMNIST"/t10k-* "$dir/"
  { printf '\x00\x00\x08\x03'; be32 "$n"; be32 28; be32 28
    zcat "$FMNIST/train-images-idx3-ubyte.gz" | tail -c +17 | head -c $((n * 784)); } \
    >"$dir/train-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01'; be32 "$n"
    zcat "$FMNIST/train-labels-idx1-ubyte.gz" | tail -c +9 | head -c "$n"; } \
    >"$dir/train-labels-idx1-ubyte"
}

config() { # config <model> <data dir> <validation images> <output>
  cat <<YAML
model: $1
data: {dir: $2, calibration_images: 100, validation_images: $3}
bits: {weights: [8, 4], activations: [8]}
policy: {name: random}
budget: {max_evaluations: 4, batch: 2}
output: $4
YAML
}
LENET=$ROOT/models/lenet5.onnx

make_data "$WORK/half" 30000
config "$LENET" "$WORK/half" 500 "$WORK/run-half" >"$WORK/half.yaml"
expect_input_error "the validation split (training images 55,000..59,999) holds 0 images" \
  search --config "$WORK/half.yaml" --quiet
grep -qF "$WORK/half/train-images-idx3-ubyte" "$WORK/err" || fail "no file named: $(cat "$WORK/err")"
grep -qF "the file has 30000 images" "$WORK/err" || fail "no image count: $(cat "$WORK/err")"
[[ ! -e $WORK/run-half ]] || fail "an empty validation split left a run directory"
expect_input_error "the validation split (training images 55,000..59,999) holds 0 images" \
  eval --model "$LENET" --data "$WORK/half" --split validation

# a validation split smaller than validation_images
make_data "$WORK/short" 55300
config "$LENET" "$WORK/short" 500 "$WORK/run-short" >"$WORK/short.yaml"
expect_input_error "the validation split holds 300 images, fewer than the config's validation_images (500)" \
  search --config "$WORK/short.yaml" --quiet
[[ ! -e $WORK/run-short ]] || fail "a short validation split left a run directory"

# a corrupt data file (gzip data cut short), then the plain re-run once it is fixed
mkdir -p "$WORK/corrupt"
ln -sf "$FMNIST"/t10k-* "$FMNIST"/train-labels-* "$WORK/corrupt/"
head -c 100000 "$FMNIST/train-images-idx3-ubyte.gz" >"$WORK/corrupt/train-images-idx3-ubyte.gz"
config "$LENET" "$WORK/corrupt" 200 "$WORK/run-corrupt" >"$WORK/corrupt.yaml"
expect_input_error "train-images-idx3-ubyte.gz: corrupt or truncated gzip data" \
  search --config "$WORK/corrupt.yaml" --quiet
[[ ! -e $WORK/run-corrupt ]] || fail "a corrupt data file left a run directory"
ln -sf "$FMNIST/train-images-idx3-ubyte.gz" "$WORK/corrupt/train-images-idx3-ubyte.gz"
"$MPSEARCH" search --config "$WORK/corrupt.yaml" --quiet >"$WORK/out" 2>"$WORK/err" ||
  fail "the re-run after fixing the data failed: $(cat "$WORK/err")"

# a model whose input does not fit the images
config "$ROOT/tests/data/bad/input_3x32x32.onnx" "$FMNIST" 200 "$WORK/run-shape" >"$WORK/shape.yaml"
expect_input_error "the model reads images of 3x32x32 but" search --config "$WORK/shape.yaml" --quiet
grep -qF "holds images of 1x28x28" "$WORK/err" || fail "no data shape: $(cat "$WORK/err")"
[[ ! -e $WORK/run-shape ]] || fail "a model/data shape mismatch left a run directory"
finish
