// Image folders and preprocessing (evaluator/data/data_source.h, preprocess.h): Fashion-MNIST
// written out as PNG files loads to exactly the tensors of its idx files, and resizing agrees
// with a naive reference of the documented formula.
#include "evaluator/base/error.h"
#include "evaluator/data/data_source.h"
#include "evaluator/data/preprocess.h"
#include "tests/temp_dir.h"

#include <doctest/doctest.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

using namespace mps;

namespace {

void write_gray_png(const std::string& path, const float* normalized, int64_t h, int64_t w) {
    std::vector<uint8_t> bytes(static_cast<size_t>(h * w));
    // invert the idx normalization exactly: the bytes are recovered by rounding
    for (size_t i = 0; i < bytes.size(); ++i)
        bytes[i] = static_cast<uint8_t>(std::lround((normalized[i] * 0.3530f + 0.2860f) * 255.0f));
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    image.width = static_cast<png_uint_32>(w);
    image.height = static_cast<png_uint_32>(h);
    image.format = PNG_FORMAT_GRAY;
    REQUIRE(png_image_write_to_file(&image, path.c_str(), 0, bytes.data(), 0, nullptr));
}

} // namespace

TEST_CASE("data: Fashion-MNIST as a PNG image folder loads exactly as its idx files") {
    const Dataset idx = load_fashion_mnist(default_fashion_mnist_dir, Split::test).slice(0, 300);
    test::TempDir dir;
    for (int64_t i = 0; i < idx.count; ++i) {
        const auto folder = dir.path() / ("class" + std::to_string(idx.labels[i]));
        std::filesystem::create_directories(folder);
        char name[32];
        std::snprintf(name, sizeof name, "%05lld.png", static_cast<long long>(i));
        write_gray_png((folder / name).string(), idx.image(i), idx.height, idx.width);
    }
    DataSource source;
    source.splits[Split::test] = SplitSource{dir.path().string()};
    source.preprocess.channels = 1;
    source.preprocess.mean = {0.2860f};
    source.preprocess.std = {0.3530f};
    const Dataset folder = load_split(source, Split::test, 1000, 10);
    // the folder's order: class by class, by file name (= idx order) within a class
    std::vector<int64_t> order(static_cast<size_t>(idx.count));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return idx.labels[a] < idx.labels[b]; });
    REQUIRE(folder.count == idx.count);
    CHECK(folder.channels == 1);
    CHECK(folder.height == 28);
    for (int64_t k = 0; k < folder.count; ++k) {
        const int64_t i = order[static_cast<size_t>(k)];
        CHECK(folder.labels[k] == idx.labels[i]);
        CHECK(std::equal(folder.image(k), folder.image(k) + 784, idx.image(i)));
    }

    SUBCASE("an empty class is refused, naming it") {
        std::filesystem::create_directories(dir.path() / "zz_empty");
        CHECK_THROWS_WITH_AS(load_split(source, Split::test, 1000, 11),
                             doctest::Contains("class 'zz_empty'"), Error);
    }
    SUBCASE("a truncated PNG is refused, naming the file") {
        const auto first = *std::filesystem::directory_iterator(dir.path() / "class0");
        std::filesystem::resize_file(first.path(), 60);
        CHECK_THROWS_WITH_AS(load_split(source, Split::test, 1000, 10),
                             doctest::Contains(first.path().string().c_str()), Error);
    }
    SUBCASE("labels beyond the model's classes are refused") {
        CHECK_THROWS_WITH_AS(load_split(source, Split::test, 1000, 5),
                             doctest::Contains("the model has 5 outputs"), Error);
    }
}

TEST_CASE("data: bilinear resize and center crop match a naive reference") {
    FloatImage image{3, 5, 7, {}};
    for (size_t i = 0; i < 105; ++i) image.values.push_back(static_cast<float>((i * 37) % 101) / 100.0f);
    const int64_t oh = 9, ow = 4;
    const FloatImage out = resize_bilinear(image, oh, ow);
    for (int64_t c = 0; c < 3; ++c)
        for (int64_t y = 0; y < oh; ++y)
            for (int64_t x = 0; x < ow; ++x) {
                // the documented formula, in double
                const double sy = std::max((y + 0.5) * 5.0 / oh - 0.5, 0.0);
                const double sx = std::max((x + 0.5) * 7.0 / ow - 0.5, 0.0);
                const int64_t y0 = static_cast<int64_t>(sy), x0 = static_cast<int64_t>(sx);
                const int64_t y1 = std::min<int64_t>(y0 + 1, 4), x1 = std::min<int64_t>(x0 + 1, 6);
                const double ly = sy - y0, lx = sx - x0;
                const double want = (1 - ly) * ((1 - lx) * image.at(c, y0, x0) + lx * image.at(c, y0, x1)) +
                                    ly * ((1 - lx) * image.at(c, y1, x0) + lx * image.at(c, y1, x1));
                CHECK(out.at(c, y, x) == doctest::Approx(want).epsilon(1e-6));
            }
    CHECK(shorter_side_size(5, 7, 10) == std::pair<int64_t, int64_t>{10, 14});
    const FloatImage crop = center_crop(image, 2, 4); // top round(1.5) = 2, left round(1.5) = 2
    CHECK(crop.at(1, 0, 0) == image.at(1, 2, 2));
    CHECK(crop.at(2, 1, 3) == image.at(2, 3, 5));
    Preprocess p;
    p.mean = {0.5f, 0.25f, 0.0f};
    p.std = {2.0f, 1.0f, 0.5f};
    p.bgr = true;
    const FloatImage n = preprocess_image(image, p, "x");
    CHECK(n.at(0, 1, 1) == (image.at(2, 1, 1) - 0.0f) / 0.5f); // blue first
    CHECK(n.at(2, 1, 1) == (image.at(0, 1, 1) - 0.5f) / 2.0f);
}

TEST_CASE("data: image folders and arrays read with the default normalization get a warning") {
    DataSource data;
    CHECK(default_normalization_warning(data).empty()); // idx: Fashion-MNIST's own normalization
    data.splits[Split::test] = SplitSource{"images.npz"};
    const std::string warning = default_normalization_warning(data);
    CHECK(warning.find("mean 0 and std 1") != std::string::npos);
    CHECK(warning.find("data.preprocess.mean") != std::string::npos);
    data.preprocess.mean = {0.2860f};
    CHECK(default_normalization_warning(data).empty());
    data.preprocess.mean = {0.0f};
    data.preprocess.std = {0.5f};
    CHECK(default_normalization_warning(data).empty());
}
