#pragma once
// PNG and JPEG files decoded to 8-bit pixels (docs/semantics.md, "Data"). libpng's simplified API
// reads PNG, libjpeg-turbo reads JPEG: both Debian's maintained system libraries, so no image
// code of our own parses untrusted bytes.
//
// Every image becomes 1 (gray) or 3 (RGB) channels of bytes, row-major HWC: a PNG with alpha
// drops it (as PIL's convert('RGB') does), a 16-bit PNG is reduced to 8 bits by libpng, a CMYK
// JPEG is refused. A corrupt or truncated file is an mps::Error naming the file and what libpng
// or libjpeg said; a JPEG warning (libjpeg fills a truncated scan with gray and only warns) is an
// error too, so a damaged image never becomes a silently wrong one.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace mps {

struct Image8 {
    int64_t height = 0, width = 0, channels = 0; // channels 1 or 3
    std::vector<uint8_t> pixels;                 // height * width * channels, HWC
};

// PNG or JPEG, told by the first bytes; `name` stands for the file in messages.
Image8 decode_image(std::span<const uint8_t> bytes, const std::string& name);
Image8 decode_png(std::span<const uint8_t> bytes, const std::string& name);
Image8 decode_jpeg(std::span<const uint8_t> bytes, const std::string& name);
// The whole file, decoded; errors name `path`.
Image8 read_image_file(const std::string& path);

// Whether `file_name` ends in .png, .jpg or .jpeg (any case): what an image folder holds.
bool is_image_file_name(const std::string& file_name);

// The whole file's bytes; mps::Error naming `path` when it cannot be read.
std::vector<uint8_t> read_file_bytes(const std::string& path);

} // namespace mps
