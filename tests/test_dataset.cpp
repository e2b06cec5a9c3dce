// Readers for idx (raw and gzip'd) and CIFAR-10 batches, on files the tests write, plus the
// Fashion-MNIST splits and normalization on the installed data set.
#include "evaluator/base/error.h"
#include "evaluator/data/dataset.h"
#include "tests/temp_dir.h"

#include <doctest/doctest.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace mps;
using test::TempDir;
namespace fs = std::filesystem;

namespace {

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
}

std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> out{0, 0, 0x08, static_cast<uint8_t>(dims.size())};
    for (uint32_t d : dims)
        for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<uint8_t>(d >> shift));
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

std::string error_of(auto&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

} // namespace

TEST_CASE("read_idx reads raw and gzip'd files identically") {
    TempDir dir;
    std::vector<uint8_t> pixels(2 * 3 * 4);
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7);
    const auto bytes = idx_bytes({2, 3, 4}, pixels);
    write_bytes(dir.file("raw"), bytes);
    write_gzip(dir.file("packed.gz"), bytes);
    for (const char* name : {"raw", "packed.gz"}) {
        const IdxArray a = read_idx(dir.file(name));
        CHECK(a.dims == std::vector<int64_t>{2, 3, 4});
        CHECK(a.data == pixels);
    }
}

TEST_CASE("read_idx rejects missing, truncated and foreign files with the file name") {
    TempDir dir;
    CHECK(error_of([&] { read_idx(dir.file("absent")); }).find("absent: cannot open") != std::string::npos);

    auto bytes = idx_bytes({10}, std::vector<uint8_t>(10, 1));
    bytes.resize(bytes.size() - 3);
    write_bytes(dir.file("short"), bytes);
    CHECK(error_of([&] { read_idx(dir.file("short")); }).find("truncated") != std::string::npos);

    write_bytes(dir.file("text"), {'h', 'e', 'l', 'l', 'o'});
    CHECK(error_of([&] { read_idx(dir.file("text")); }).find("bad magic") != std::string::npos);

    auto floats = idx_bytes({1}, {0, 0, 0, 0});
    floats[2] = 0x0D;
    write_bytes(dir.file("floats"), floats);
    CHECK(error_of([&] { read_idx(dir.file("floats")); }).find("not supported") != std::string::npos);

    // A gzip stream cut in the middle.
    write_gzip(dir.file("full.gz"), idx_bytes({1000}, std::vector<uint8_t>(1000, 9)));
    std::ifstream in(dir.file("full.gz"), std::ios::binary);
    std::vector<uint8_t> gz((std::istreambuf_iterator<char>(in)), {});
    gz.resize(gz.size() / 2);
    write_bytes(dir.file("cut.gz"), gz);
    CHECK_FALSE(error_of([&] { read_idx(dir.file("cut.gz")); }).empty());
}

TEST_CASE("Fashion-MNIST-style directory: splits, normalization and label checks") {
    TempDir dir;
    const int n = 60;
    std::vector<uint8_t> pixels(n * 2 * 2), labels(n);
    for (int i = 0; i < n; ++i) {
        labels[i] = static_cast<uint8_t>(i % 10);
        for (int p = 0; p < 4; ++p) pixels[i * 4 + p] = static_cast<uint8_t>(i);
    }
    write_gzip(dir.file("t10k-images-idx3-ubyte.gz"), idx_bytes({n, 2, 2}, pixels));
    write_bytes(dir.file("t10k-labels-idx1-ubyte"), idx_bytes({n}, labels));
    const Dataset test = load_fashion_mnist(dir.path().string(), Split::test);
    CHECK(test.count == n);
    CHECK(test.image_size() == 4);
    CHECK(test.labels[13] == 3);
    CHECK(test.image(13)[2] == doctest::Approx((13 / 255.0 - 0.2860) / 0.3530).epsilon(1e-6));

    const Dataset part = test.slice(50, 100);
    CHECK(part.count == 10);
    CHECK(part.labels[0] == 0);
    // A slice keeps the shape and holds exactly its own images.
    CHECK(part.channels == 1);
    CHECK(part.image_size() == 4);
    CHECK(part.num_classes == test.num_classes);
    CHECK(part.images.size() == 40);
    CHECK(part.image(3)[1] == test.image(53)[1]);

    CHECK(error_of([&] { load_fashion_mnist(dir.path().string(), Split::train); })
              .find("no train-images-idx3-ubyte[.gz] here; point --data") != std::string::npos);
    labels[5] = 12;
    write_bytes(dir.file("t10k-labels-idx1-ubyte"), idx_bytes({n}, labels));
    CHECK(error_of([&] { load_fashion_mnist(dir.path().string(), Split::test); })
              .find("out of range") != std::string::npos);
}

TEST_CASE("installed Fashion-MNIST has the documented splits") {
    if (!fs::exists(std::string(default_fashion_mnist_dir) + "/t10k-images-idx3-ubyte.gz")) return;
    const Dataset val = load_fashion_mnist(default_fashion_mnist_dir, Split::validation);
    CHECK(val.count == 5000);
    const Dataset calib = load_fashion_mnist(default_fashion_mnist_dir, Split::calibration, 300);
    CHECK(calib.count == 300);
    const Dataset train = load_fashion_mnist(default_fashion_mnist_dir, Split::train);
    CHECK(train.count == 55000);
    CHECK(std::equal(calib.images.begin(), calib.images.end(), train.images.begin()));
    // Validation follows train: its first image is training image 55,000, not image 0.
    CHECK_FALSE(std::equal(val.image(0), val.image(0) + 784, train.image(0)));
    const Dataset test = load_fashion_mnist(default_fashion_mnist_dir, Split::test);
    CHECK(test.count == 10000);
    double mean = 0;
    for (float x : train.images) mean += x;
    CHECK(mean / static_cast<double>(train.images.size()) == doctest::Approx(0.0).epsilon(0.01));
}

TEST_CASE("CIFAR-10 batch: records, normalization, bad sizes") {
    TempDir dir;
    std::vector<uint8_t> bytes;
    for (int r = 0; r < 3; ++r) {
        bytes.push_back(static_cast<uint8_t>(r + 4));
        for (int p = 0; p < 3072; ++p) bytes.push_back(static_cast<uint8_t>(p / 1024 * 100 + r));
    }
    write_bytes(dir.file("data_batch_1.bin"), bytes);
    const Dataset d = read_cifar10_batch(dir.file("data_batch_1.bin"));
    CHECK(d.count == 3);
    CHECK(d.channels == 3);
    CHECK(d.labels[2] == 6);
    // Record 1, green channel (value 101), mean 0.4822, std 0.2435.
    CHECK(d.image(1)[1024 + 5] == doctest::Approx((101 / 255.0 - 0.4822) / 0.2435).epsilon(1e-5));
    bytes.pop_back();
    write_bytes(dir.file("cut.bin"), bytes);
    CHECK(error_of([&] { read_cifar10_batch(dir.file("cut.bin")); }).find("not a multiple") != std::string::npos);
}
