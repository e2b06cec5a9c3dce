#include "evaluator/data/preprocess.h"

#include "evaluator/base/error.h"

#include <algorithm>
#include <cfenv>
#include <cmath>

namespace mps {

namespace {

std::string size_text(int64_t height, int64_t width) {
    return std::to_string(height) + "x" + std::to_string(width);
}

// Per output index: the two source indices and the weight of the second, as
// torch's upsample_bilinear2d computes them (area_pixel_compute_source_index, align_corners
// false): src = scale * (dst + 0.5) - 0.5 with scale = in / out in float, clamped at 0.
struct Taps {
    std::vector<int64_t> low, high;
    std::vector<float> weight;
};

Taps bilinear_taps(int64_t in, int64_t out) {
    Taps t;
    const float scale = static_cast<float>(in) / static_cast<float>(out);
    for (int64_t d = 0; d < out; ++d) {
        const float src = std::max(scale * (static_cast<float>(d) + 0.5f) - 0.5f, 0.0f);
        const int64_t low = static_cast<int64_t>(src);
        t.low.push_back(low);
        t.high.push_back(low < in - 1 ? low + 1 : low);
        t.weight.push_back(src - static_cast<float>(low));
    }
    return t;
}

} // namespace

FloatImage convert_color(const FloatImage& image, int64_t channels) {
    if (channels == 0 || channels == image.channels) return image;
    FloatImage out{channels, image.height, image.width, {}};
    const size_t plane = static_cast<size_t>(image.height * image.width);
    out.values.resize(plane * static_cast<size_t>(channels));
    if (channels == 1) { // 3 -> 1
        for (size_t i = 0; i < plane; ++i)
            out.values[i] = 0.2989f * image.values[i] + 0.587f * image.values[plane + i] +
                            0.114f * image.values[2 * plane + i];
    } else { // 1 -> 3
        for (int64_t c = 0; c < 3; ++c)
            std::copy_n(image.values.begin(), plane, out.values.begin() + static_cast<std::ptrdiff_t>(c * plane));
    }
    return out;
}

FloatImage resize_bilinear(const FloatImage& image, int64_t height, int64_t width) {
    if (height == image.height && width == image.width) return image;
    const Taps ty = bilinear_taps(image.height, height), tx = bilinear_taps(image.width, width);
    FloatImage out{image.channels, height, width, {}};
    out.values.resize(static_cast<size_t>(image.channels * height * width));
    for (int64_t c = 0; c < image.channels; ++c)
        for (int64_t y = 0; y < height; ++y) {
            const float wy1 = ty.weight[y], wy0 = 1.0f - wy1;
            for (int64_t x = 0; x < width; ++x) {
                const float wx1 = tx.weight[x], wx0 = 1.0f - wx1;
                // torch's order: rows first weighted across x, then the two rows across y
                out.at(c, y, x) =
                    wy0 * (wx0 * image.at(c, ty.low[y], tx.low[x]) + wx1 * image.at(c, ty.low[y], tx.high[x])) +
                    wy1 * (wx0 * image.at(c, ty.high[y], tx.low[x]) + wx1 * image.at(c, ty.high[y], tx.high[x]));
            }
        }
    return out;
}

std::pair<int64_t, int64_t> shorter_side_size(int64_t height, int64_t width, int64_t size) {
    if (height <= width) return {size, static_cast<int64_t>(static_cast<double>(size) * width / height)};
    return {static_cast<int64_t>(static_cast<double>(size) * height / width), size};
}

FloatImage center_crop(const FloatImage& image, int64_t height, int64_t width) {
    // Python's round: ties to even (the default rounding mode of nearbyint).
    const auto offset = [](int64_t size, int64_t crop) {
        return static_cast<int64_t>(std::nearbyint(static_cast<double>(size - crop) / 2.0));
    };
    const int64_t top = offset(image.height, height), left = offset(image.width, width);
    FloatImage out{image.channels, height, width, {}};
    out.values.resize(static_cast<size_t>(image.channels * height * width));
    for (int64_t c = 0; c < image.channels; ++c)
        for (int64_t y = 0; y < height; ++y)
            for (int64_t x = 0; x < width; ++x) out.at(c, y, x) = image.at(c, top + y, left + x);
    return out;
}

FloatImage preprocess_image(FloatImage image, const Preprocess& p, const std::string& name) {
    image = convert_color(image, p.channels);
    if (p.resize > 0) {
        const auto [h, w] = shorter_side_size(image.height, image.width, p.resize);
        image = resize_bilinear(image, h, w);
    } else if (p.resize_height > 0) {
        image = resize_bilinear(image, p.resize_height, p.resize_width);
    }
    if (p.crop_height > 0) {
        if (p.crop_height > image.height || p.crop_width > image.width)
            throw Error(name + ": center crop " + size_text(p.crop_height, p.crop_width) +
                        " is larger than the image (" + size_text(image.height, image.width) +
                        " after resizing); lower data.preprocess.crop or raise data.preprocess.resize");
        image = center_crop(image, p.crop_height, p.crop_width);
    }
    const auto per_channel = [&](const std::vector<float>& v, const char* key) {
        if (v.size() != 1 && static_cast<int64_t>(v.size()) != image.channels)
            throw Error(name + ": data.preprocess." + key + " has " + std::to_string(v.size()) +
                        " values for images of " + std::to_string(image.channels) +
                        " channels; give one value or one per channel");
        return [&v](int64_t c) { return v.size() == 1 ? v[0] : v[static_cast<size_t>(c)]; };
    };
    const auto mean = per_channel(p.mean, "mean");
    const auto std_dev = per_channel(p.std, "std");
    const size_t plane = static_cast<size_t>(image.height * image.width);
    for (int64_t c = 0; c < image.channels; ++c) {
        const float m = mean(c), s = std_dev(c);
        for (size_t i = 0; i < plane; ++i) {
            float& x = image.values[static_cast<size_t>(c) * plane + i];
            x = (x - m) / s;
        }
    }
    if (p.bgr && image.channels == 3)
        std::swap_ranges(image.values.begin(), image.values.begin() + static_cast<std::ptrdiff_t>(plane),
                         image.values.begin() + static_cast<std::ptrdiff_t>(2 * plane));
    return image;
}

} // namespace mps
