# Fashion-MNIST written out as a PNG image folder (one subfolder per class) and as .npz arrays
# (NHWC uint8 test images; NCHW calibration images) gives exactly the idx files' figures for a zoo
# model: float32 accuracy and loss, and a uniform W4A4 integer evaluation calibrated on the same
# 1,000 training images. A search reads the same sources from its config. Bad image data (a
# corrupt PNG, a folder with no images, mixed sizes without resize, labels beyond the model's
# classes, arrays of the wrong rank or dtype) is one message naming the file, exit 2, and no run
# directory.
source "$(dirname "$0")/common.bash"
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
MODEL=$ROOT/models/resnet8.onnx

# Python's standard library only (zlib, zipfile): CI has no numpy or PIL.
python3 - "$WORK" <<'EOF' || exit 1
import gzip, io, os, struct, sys, zipfile, zlib
work = sys.argv[1]
src = "/usr/share/datasets/fashion-mnist"

def idx(name, header):
    return gzip.open(os.path.join(src, name)).read()[header:]

def png(w, h, rows, color=0):
    chunk = lambda tag, data: (struct.pack(">I", len(data)) + tag + data +
                               struct.pack(">I", zlib.crc32(tag + data)))
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

def npy(dtype, shape, data):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype, repr(tuple(shape)))
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data

def npz(path, arrays):
    with zipfile.ZipFile(path, "w") as z:
        for key, (dtype, shape, data) in arrays.items():
            z.writestr(key + ".npy", npy(dtype, shape, data))

test, labels = idx("t10k-images-idx3-ubyte.gz", 16), idx("t10k-labels-idx1-ubyte.gz", 8)
train, train_labels = idx("train-images-idx3-ubyte.gz", 16), idx("train-labels-idx1-ubyte.gz", 8)
for i, label in enumerate(labels):
    folder = os.path.join(work, "png", "class%d" % label)
    os.makedirs(folder, exist_ok=True)
    image = test[i * 784:(i + 1) * 784]
    with open(os.path.join(folder, "%05d.png" % i), "wb") as f:
        f.write(png(28, 28, [image[r * 28:(r + 1) * 28] for r in range(28)]))
lab64 = lambda b: b"".join(struct.pack("<q", v) for v in b)
npz(os.path.join(work, "test.npz"), {"images": ("|u1", (10000, 28, 28, 1), test),
                                     "labels": ("<i8", (10000,), lab64(labels))})
npz(os.path.join(work, "calib.npz"), {"images": ("|u1", (1000, 1, 28, 28), train[:784000]),
                                      "labels": ("<i8", (1000,), lab64(train_labels[:1000]))})
# bad inputs
os.makedirs(os.path.join(work, "bad", "noimages", "class0"))
os.makedirs(os.path.join(work, "bad", "corrupt", "a"))
good = png(28, 28, [test[r * 28:(r + 1) * 28] for r in range(28)])
open(os.path.join(work, "bad", "corrupt", "a", "0.png"), "wb").write(good)
open(os.path.join(work, "bad", "corrupt", "a", "1.png"), "wb").write(good[:len(good) // 2])
os.makedirs(os.path.join(work, "bad", "mixed", "a"))
open(os.path.join(work, "bad", "mixed", "a", "0.png"), "wb").write(good)
open(os.path.join(work, "bad", "mixed", "a", "1.png"), "wb").write(png(30, 2, [bytes(30)] * 2))
npz(os.path.join(work, "bad", "label.npz"), {"images": ("|u1", (2, 1, 28, 28), test[:1568]),
                                             "labels": ("<i8", (2,), lab64(b"\x03\x0c"))})
npz(os.path.join(work, "bad", "rank.npz"), {"images": ("|u1", (1568,), test[:1568]),
                                            "labels": ("<i8", (2,), lab64(b"\x03\x01"))})
npz(os.path.join(work, "bad", "dtype.npz"), {"images": ("<c8", (2, 1, 28, 28), bytes(2 * 784 * 8)),
                                             "labels": ("<i8", (2,), lab64(b"\x03\x01"))})
EOF

norm="preprocess: {mean: 0.2860, std: 0.3530}"
printf 'data: {test: %s, calibration: %s, %s}\n' "$WORK/png" "$WORK/calib.npz" "$norm" >"$WORK/png.yaml"
printf 'data: {test: %s, calibration: %s, %s}\n' "$WORK/test.npz" "$WORK/calib.npz" "$norm" >"$WORK/npz.yaml"

# figures <name> <eval args...>: accuracy and loss (to 9 digits: the folder sums the losses in
# another order) of one evaluation, into $WORK/<name>.fig
figures() {
  local name=$1; shift
  "$MPSEARCH" eval --model "$MODEL" --json "$@" >"$WORK/$name.json" 2>"$WORK/$name.err" ||
    { fail "eval $*: $(cat "$WORK/$name.err")"; return; }
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["accuracy"], "%.9f" % r["loss"])' \
    "$WORK/$name.json" >"$WORK/$name.fig"
}
for mode in float int; do
  args=(); [[ $mode == int ]] && args=(--uniform W4A4 --path int)
  figures idx-$mode "${args[@]}"
  figures png-$mode --data-config "$WORK/png.yaml" "${args[@]}"
  figures npz-$mode --data-config "$WORK/npz.yaml" "${args[@]}"
  for source in png npz; do
    cmp -s "$WORK/idx-$mode.fig" "$WORK/$source-$mode.fig" ||
      fail "$mode: idx gives $(cat "$WORK/idx-$mode.fig"), $source $(cat "$WORK/$source-$mode.fig")"
  done
done
grep -q "^9[0-9]\.[0-9]* " "$WORK/idx-float.fig" || fail "resnet8 float32: $(cat "$WORK/idx-float.fig")"

# A search reads the same sources: the PNG folder as the validation split, .npz as the test split.
cat >"$WORK/search.yaml" <<YAML
model: $MODEL
data: {validation: $WORK/png, test: $WORK/test.npz, calibration: $WORK/calib.npz, validation_images: 500, $norm}
bits: {weights: [8, 4], activations: [8]}
policy: {name: random}
budget: {max_evaluations: 2, batch: 2}
output: $WORK/run
YAML
"$MPSEARCH" search --config "$WORK/search.yaml" --quiet >/dev/null 2>"$WORK/err" ||
  fail "search on a PNG folder: $(cat "$WORK/err")"
[[ -s $WORK/run/policy.yaml ]] || fail "search on a PNG folder wrote no policy.yaml"

# bad_data <what> <source> <message>: eval and search refuse it naming the file; no run directory
bad_data() {
  local what=$1 source=$2 want=$3
  printf 'data: {test: %s, validation: %s, calibration: %s, %s}\n' "$source" "$source" \
    "$WORK/calib.npz" "$norm" >"$WORK/bad.yaml"
  expect_input_error "$want" eval --model "$MODEL" --data-config "$WORK/bad.yaml"
  sed "s|^data: .*|$(head -1 "$WORK/bad.yaml")|; s|^output: .*|output: $WORK/run-bad|" \
    "$WORK/search.yaml" >"$WORK/bad-search.yaml"
  expect_input_error "$want" search --config "$WORK/bad-search.yaml" --quiet
  [[ ! -e $WORK/run-bad ]] || { fail "$what left a run directory"; rm -rf "$WORK/run-bad"; }
}
bad_data "a corrupt PNG" "$WORK/bad/corrupt" "$WORK/bad/corrupt/a/1.png"
bad_data "a folder with no images" "$WORK/bad/noimages" "class 'class0'"
bad_data "mixed image sizes" "$WORK/bad/mixed" "$WORK/bad/mixed/a/1.png"
bad_data "a label beyond the classes" "$WORK/bad/label.npz" "label 12"
bad_data "images of rank 1" "$WORK/bad/rank.npz" "rank 1"
bad_data "complex images" "$WORK/bad/dtype.npz" "dtype '<c8' is not supported"
finish
