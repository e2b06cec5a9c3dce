#pragma once
// Data sets: image classification data, normalized, in NCHW float32, with the fixed splits of
// docs/semantics.md, "Data".
//
//   train       = training images 0..54,999
//   validation  = training images 55,000..59,999 (what a search scores candidates on)
//   calibration = the first N training images (default 1000)
//   test        = the 10,000 t10k images (final reports only)
//
// Fashion-MNIST pixels are normalized as x = (pixel / 255 - 0.2860) / 0.3530.
#include <cstdint>
#include <string>
#include <vector>

namespace mps {

struct Dataset {
    int64_t count = 0;
    int64_t channels = 0, height = 0, width = 0;
    int num_classes = 10;
    std::vector<float> images;   // count * channels * height * width, NCHW, normalized
    std::vector<uint8_t> labels; // count
    // The files the images came from ("dir/train-images-idx3-ubyte.gz and dir/train-labels-..."),
    // for messages about them; empty for data made in memory.
    std::string source;

    int64_t image_size() const { return channels * height * width; }
    const float* image(int64_t i) const { return images.data() + i * image_size(); }
    // Images [first, first + n) as a new data set (n clipped to what is there).
    Dataset slice(int64_t first, int64_t n) const;
};

enum class Split { train, validation, calibration, test };
// "train", "validation", "calibration", "test"; parse_split throws mps::Error on anything else.
const char* split_name(Split split);
Split parse_split(const std::string& name);

inline constexpr const char* default_fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

// An idx file (gzip'd or raw, detected from its content): the header's dimensions and the raw
// unsigned bytes. Only the ubyte element type (0x08) is supported. Errors name the file and what
// is wrong (missing, truncated, bad magic, unsupported type).
struct IdxArray {
    std::vector<int64_t> dims;
    std::vector<uint8_t> data;
};
IdxArray read_idx(const std::string& path);

// Fashion-MNIST (or MNIST: same file names) from `dir`, which holds
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. `calibration_count` applies to
// Split::calibration only. A split with no images, or fewer than `calibration_count`
// calibration images, is an mps::Error naming the split, the files and how many images they
// hold: a search scored on nothing would report 0 % for every candidate and look successful.
Dataset load_fashion_mnist(const std::string& dir, Split split, int64_t calibration_count = 1000);
// The whole training file (60,000 images) and one split of it (train, validation or calibration):
// what a caller needing several of those splits reads once instead of decompressing the file
// for each.
Dataset load_fashion_mnist_training_file(const std::string& dir);
// The idx files load_fashion_mnist reads from `dir` for `prefix` "train" or "t10k" (images, then
// labels), each the .gz or the plain file, whichever exists; mps::Error when one is missing.
std::vector<std::string> fashion_mnist_files(const std::string& dir, const std::string& prefix);
Dataset fashion_mnist_split(const Dataset& training_file, Split split,
                            int64_t calibration_count = 1000);

// One CIFAR-10 binary batch file (records of 1 label byte + 3072 pixel bytes, CHW), normalized
// per channel with CIFAR-10's mean and standard deviation.
Dataset read_cifar10_batch(const std::string& path);

} // namespace mps
