#include "evaluator/data/dataset.h"

#include "evaluator/base/error.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <memory>

namespace mps {

Dataset Dataset::slice(int64_t first, int64_t n) const {
    // The shape only: copying *this first would copy every image just to replace them.
    Dataset out;
    out.channels = channels;
    out.height = height;
    out.width = width;
    out.num_classes = num_classes;
    out.source = source;
    first = std::clamp<int64_t>(first, 0, count);
    n = std::clamp<int64_t>(n, 0, count - first);
    out.count = n;
    out.images.assign(images.begin() + first * image_size(),
                      images.begin() + (first + n) * image_size());
    out.labels.assign(labels.begin() + first, labels.begin() + first + n);
    return out;
}

const char* split_name(Split split) {
    switch (split) {
    case Split::train: return "train";
    case Split::validation: return "validation";
    case Split::calibration: return "calibration";
    case Split::test: return "test";
    }
    return "unknown";
}

Split parse_split(const std::string& name) {
    for (Split s : {Split::train, Split::validation, Split::calibration, Split::test})
        if (name == split_name(s)) return s;
    throw Error("unknown split '" + name + "'; use train, validation, calibration or test");
}

namespace {

// Whole file contents, gunzipped when the file starts with the gzip magic bytes. gzread reads
// plain files unchanged, so one code path serves both.
std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
    std::unique_ptr<gzFile_s, decltype(&gzclose)> file(gzopen(path.c_str(), "rb"), &gzclose);
    if (!file) throw Error(path + ": cannot open file");
    std::vector<uint8_t> bytes;
    std::array<uint8_t, 1 << 16> chunk;
    for (;;) {
        const int n = gzread(file.get(), chunk.data(), static_cast<unsigned>(chunk.size()));
        if (n < 0) {
            int code = 0;
            throw Error(path + ": corrupt or truncated gzip data (" +
                        gzerror(file.get(), &code) + ")");
        }
        if (n == 0) break;
        bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + n);
    }
    int code = 0;
    gzerror(file.get(), &code);
    if (code != Z_OK && code != Z_STREAM_END)
        throw Error(path + ": corrupt or truncated gzip data");
    return bytes;
}

uint32_t big_endian_u32(const uint8_t* p) {
    return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}

// dir/stem.gz or dir/stem, whichever exists.
std::string find_file(const std::string& dir, const std::string& stem) {
    for (const std::string& name : {stem + ".gz", stem}) {
        const std::string path = dir + "/" + name;
        if (std::ifstream(path).good()) return path;
    }
    throw Error(dir + ": no " + stem + "[.gz] here; point --data at a directory holding the "
                "Fashion-MNIST idx files (default " + default_fashion_mnist_dir +
                ", Debian package dataset-fashion-mnist)");
}

constexpr float fashion_mnist_mean = 0.2860f;
constexpr float fashion_mnist_std = 0.3530f;
constexpr int64_t train_count = 55000;

Dataset load_idx_pair(const std::string& dir, const std::string& prefix) {
    const std::vector<std::string> files = fashion_mnist_files(dir, prefix);
    const std::string& images_path = files[0];
    const std::string& labels_path = files[1];
    const IdxArray images = read_idx(images_path);
    const IdxArray labels = read_idx(labels_path);
    if (images.dims.size() != 3)
        throw Error(images_path + ": expected a 3-D idx array of images, got " +
                    std::to_string(images.dims.size()) + " dimensions");
    if (labels.dims.size() != 1 || labels.dims[0] != images.dims[0])
        throw Error(labels_path + ": expected " + std::to_string(images.dims[0]) +
                    " labels to match " + images_path);
    Dataset d;
    d.count = images.dims[0];
    d.channels = 1;
    d.height = images.dims[1];
    d.width = images.dims[2];
    d.images.resize(images.data.size());
    for (size_t i = 0; i < images.data.size(); ++i)
        d.images[i] = (images.data[i] / 255.0f - fashion_mnist_mean) / fashion_mnist_std;
    d.labels = labels.data;
    d.source = images_path + " and " + labels_path;
    for (uint8_t label : d.labels)
        if (label >= d.num_classes)
            throw Error(labels_path + ": label " + std::to_string(label) +
                        " is out of range for 10 classes");
    return d;
}

// What a split of `file` must hold: at least `wanted` images (1 by default).
void require_images(const Dataset& split_images, Split split, const Dataset& file,
                    const std::string& range, int64_t wanted = 1) {
    if (split_images.count >= wanted) return;
    const std::string need = wanted > 1 ? std::to_string(wanted) + " images" : "any images";
    throw Error(file.source + ": the " + split_name(split) + " split (" + range + ") holds " +
                std::to_string(split_images.count) + " images, not " + need + ": the file has " +
                std::to_string(file.count) +
                " images; point --data (or the config's data.dir) at the complete Fashion-MNIST "
                "files (60,000 training and 10,000 test images)");
}

} // namespace

std::vector<std::string> fashion_mnist_files(const std::string& dir, const std::string& prefix) {
    return {find_file(dir, prefix + "-images-idx3-ubyte"),
            find_file(dir, prefix + "-labels-idx1-ubyte")};
}

IdxArray read_idx(const std::string& path) {
    const std::vector<uint8_t> bytes = read_maybe_gzip(path);
    if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0)
        throw Error(path + ": not an idx file (bad magic number)");
    if (bytes[2] != 0x08)
        throw Error(path + ": idx element type code " + std::to_string(bytes[2]) +
                    " is not supported; only unsigned bytes (code 8) are");
    const size_t rank = bytes[3];
    if (rank == 0 || bytes.size() < 4 + 4 * rank)
        throw Error(path + ": truncated idx header");
    IdxArray out;
    size_t total = 1;
    const size_t offset = 4 + 4 * rank;
    bool too_large = false; // a product past the file's size, which could also wrap around
    for (size_t i = 0; i < rank; ++i) {
        out.dims.push_back(big_endian_u32(&bytes[4 + 4 * i]));
        const size_t dim = static_cast<size_t>(out.dims.back());
        too_large = too_large || (dim > 0 && total > (bytes.size() - offset) / dim);
        total *= dim;
    }
    if (too_large || bytes.size() - offset != total)
        throw Error(path + ": truncated or oversized idx file: header promises " +
                    (too_large ? "more than " + std::to_string(bytes.size() - offset)
                               : std::to_string(total)) +
                    " bytes of data, file has " + std::to_string(bytes.size() - offset));
    out.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(offset), bytes.end());
    return out;
}

Dataset fashion_mnist_split(const Dataset& train_file, Split split, int64_t calibration_count) {
    Dataset out;
    switch (split) {
    case Split::train:
        out = train_file.slice(0, train_count);
        require_images(out, split, train_file, "training images 0..54,999");
        return out;
    case Split::validation:
        out = train_file.slice(train_count, train_file.count - train_count);
        require_images(out, split, train_file, "training images 55,000..59,999");
        return out;
    case Split::calibration:
        if (calibration_count < 1 || calibration_count > train_count)
            throw Error("calibration size " + std::to_string(calibration_count) +
                        " is out of range; use 1.." + std::to_string(train_count));
        out = train_file.slice(0, calibration_count);
        require_images(out, split, train_file, "the first " + std::to_string(calibration_count) +
                       " training images", calibration_count);
        return out;
    case Split::test: break;
    }
    throw Error("the test split is not part of the training file; load it with Split::test");
}

Dataset load_fashion_mnist(const std::string& dir, Split split, int64_t calibration_count) {
    if (split == Split::test) {
        Dataset test = load_idx_pair(dir, "t10k");
        require_images(test, split, test, "the t10k images");
        return test;
    }
    return fashion_mnist_split(load_idx_pair(dir, "train"), split, calibration_count);
}

Dataset load_fashion_mnist_training_file(const std::string& dir) {
    return load_idx_pair(dir, "train");
}

Dataset read_cifar10_batch(const std::string& path) {
    constexpr int64_t record = 1 + 3 * 32 * 32;
    constexpr std::array<float, 3> mean{0.4914f, 0.4822f, 0.4465f};
    constexpr std::array<float, 3> stddev{0.2470f, 0.2435f, 0.2616f};
    const std::vector<uint8_t> bytes = read_maybe_gzip(path);
    if (bytes.empty() || bytes.size() % record != 0)
        throw Error(path + ": not a CIFAR-10 binary batch (size " + std::to_string(bytes.size()) +
                    " is not a multiple of " + std::to_string(record) + "-byte records)");
    Dataset d;
    d.count = static_cast<int64_t>(bytes.size()) / record;
    d.channels = 3;
    d.height = d.width = 32;
    d.images.resize(static_cast<size_t>(d.count * d.image_size()));
    d.labels.resize(static_cast<size_t>(d.count));
    for (int64_t i = 0; i < d.count; ++i) {
        const uint8_t* r = &bytes[static_cast<size_t>(i * record)];
        if (r[0] >= 10)
            throw Error(path + ": record " + std::to_string(i) + " has label " +
                        std::to_string(r[0]) + "; CIFAR-10 labels are 0..9");
        d.labels[i] = r[0];
        for (int64_t p = 0; p < d.image_size(); ++p) {
            const int64_t c = p / (32 * 32);
            d.images[i * d.image_size() + p] = (r[1 + p] / 255.0f - mean[c]) / stddev[c];
        }
    }
    return d;
}

} // namespace mps
