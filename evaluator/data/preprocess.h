#pragma once
// Preprocessing of images from image folders and NumPy arrays into a model's input
// (docs/semantics.md, "Data", has the arithmetic; docs/config.md the `data.preprocess` keys).
// In this order, all in float32:
//   1. values: a byte p becomes p / 255; float32 arrays are taken as they are (already in [0, 1]
//      as torchvision's ToTensor leaves them);
//   2. color: RGB to gray as 0.2989 R + 0.587 G + 0.114 B (torchvision's rgb_to_grayscale),
//      gray to RGB by copying the channel;
//   3. resize: bilinear with half-pixel centres, no antialiasing (torch's
//      interpolate(mode='bilinear', align_corners=False, antialias=False)), either the shorter
//      side to `resize` (the longer to floor(resize * long / short), torchvision's rule) or to
//      exactly resize_height x resize_width;
//   4. center crop to crop_height x crop_width, offsets round((size - crop) / 2) with ties to
//      even (Python's round, as torchvision's center_crop);
//   5. normalize each channel c: (x - mean[c]) / std[c] (mean and std in RGB order);
//   6. channel order: RGB, or BGR (the channels reversed) for models trained on BGR input.
#include <cstdint>
#include <string>
#include <vector>

namespace mps {

// One image, CHW float32.
struct FloatImage {
    int64_t channels = 0, height = 0, width = 0;
    std::vector<float> values;

    float& at(int64_t c, int64_t y, int64_t x) { return values[static_cast<size_t>((c * height + y) * width + x)]; }
    float at(int64_t c, int64_t y, int64_t x) const { return values[static_cast<size_t>((c * height + y) * width + x)]; }
};

struct Preprocess {
    int64_t channels = 0;             // 1 gray, 3 RGB; 0: as the images are
    int64_t resize = 0;               // shorter side; 0: no resize (unless resize_height is set)
    int64_t resize_height = 0, resize_width = 0; // exact size; 0: not given
    int64_t crop_height = 0, crop_width = 0;     // 0: no crop
    std::vector<float> mean{0.0f};    // one value for every channel, or one per channel (RGB order)
    std::vector<float> std{1.0f};
    bool bgr = false;

    bool operator==(const Preprocess&) const = default;
};

// The arithmetic steps, each on its own (exposed for the tests' reference checks).
FloatImage convert_color(const FloatImage& image, int64_t channels);
FloatImage resize_bilinear(const FloatImage& image, int64_t height, int64_t width);
// (height, width) of the shorter side scaled to `size`.
std::pair<int64_t, int64_t> shorter_side_size(int64_t height, int64_t width, int64_t size);
FloatImage center_crop(const FloatImage& image, int64_t height, int64_t width);

// Steps 2 to 6 on an image whose values are already step 1's. Errors (a crop larger than the
// image, a mean/std count that fits neither 1 nor the channels) name `name` and the key to fix.
FloatImage preprocess_image(FloatImage image, const Preprocess& p, const std::string& name);

} // namespace mps
