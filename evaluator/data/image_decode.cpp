#include "evaluator/data/image_decode.h"

#include "evaluator/base/error.h"

#include <png.h>
// jpeglib.h needs size_t and FILE declared first.
#include <cstdio>
#include <jpeglib.h>

#include <algorithm>
#include <csetjmp>
#include <cstring>
#include <fstream>
#include <iterator>

namespace mps {

namespace {

// Images larger than this are refused before their pixels are allocated: a 20-byte header must
// not make the reader ask for gigabytes (the fuzzers' 2 GB limit; no classifier input is near).
constexpr int64_t max_pixels = int64_t{1} << 26;

void check_size(int64_t height, int64_t width, const std::string& name) {
    if (height < 1 || width < 1 || height * width > max_pixels)
        throw Error(name + ": image of " + std::to_string(width) + "x" + std::to_string(height) +
                    " pixels is empty or larger than " + std::to_string(max_pixels) +
                    " pixels; resize it before loading");
}

bool starts_with(std::span<const uint8_t> bytes, std::initializer_list<uint8_t> magic) {
    return bytes.size() >= magic.size() && std::equal(magic.begin(), magic.end(), bytes.begin());
}

// libjpeg reports errors through a callback that must not return: it longjmps back to
// decode_jpeg with the message. Warnings (truncated data) are treated as errors.
struct JpegError {
    jpeg_error_mgr manager;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr info) {
    auto* error = reinterpret_cast<JpegError*>(info->err);
    (*info->err->format_message)(info, error->message);
    std::longjmp(error->jump, 1);
}

void jpeg_message(j_common_ptr info, int level) {
    if (level < 0) jpeg_fail(info); // a warning: corrupt or truncated data
}

} // namespace

Image8 decode_png(std::span<const uint8_t> bytes, const std::string& name) {
    png_image image;
    std::memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()))
        throw Error(name + ": not a readable PNG file (" + image.message + ")");
    Image8 out;
    out.height = image.height;
    out.width = image.width;
    try {
        check_size(out.height, out.width, name);
    } catch (...) {
        png_image_free(&image);
        throw;
    }
    // Native channels, 8 bits, alpha kept so that it can be dropped rather than composited.
    const bool color = image.format & PNG_FORMAT_FLAG_COLOR;
    const bool alpha = image.format & PNG_FORMAT_FLAG_ALPHA;
    image.format = (color ? PNG_FORMAT_FLAG_COLOR : 0) | (alpha ? PNG_FORMAT_FLAG_ALPHA : 0);
    std::vector<uint8_t> buffer(PNG_IMAGE_SIZE(image));
    if (!png_image_finish_read(&image, nullptr, buffer.data(), 0, nullptr))
        throw Error(name + ": corrupt or truncated PNG file (" + image.message + ")");
    out.channels = color ? 3 : 1;
    const int64_t stride = out.channels + (alpha ? 1 : 0);
    if (!alpha) {
        out.pixels = std::move(buffer);
        return out;
    }
    out.pixels.resize(static_cast<size_t>(out.height * out.width * out.channels));
    for (int64_t p = 0; p < out.height * out.width; ++p)
        std::copy_n(&buffer[static_cast<size_t>(p * stride)], out.channels,
                    &out.pixels[static_cast<size_t>(p * out.channels)]);
    return out;
}

// Everything with a destructor is declared before setjmp, so the longjmp skips none (C++ allows
// longjmp only then); the jpeg object is destroyed on both paths.
Image8 decode_jpeg(std::span<const uint8_t> bytes, const std::string& name) {
    jpeg_decompress_struct info;
    JpegError error;
    Image8 out;
    std::string problem;
    info.err = jpeg_std_error(&error.manager);
    error.manager.error_exit = jpeg_fail;
    error.manager.emit_message = jpeg_message;
    jpeg_create_decompress(&info);
    if (setjmp(error.jump)) {
        jpeg_destroy_decompress(&info);
        throw Error(name + ": corrupt or truncated JPEG file (" + error.message + ")");
    }
    jpeg_mem_src(&info, bytes.data(), static_cast<unsigned long>(bytes.size()));
    jpeg_read_header(&info, TRUE);
    if (info.num_components == 1) info.out_color_space = JCS_GRAYSCALE;
    else if (info.jpeg_color_space == JCS_YCbCr || info.jpeg_color_space == JCS_RGB)
        info.out_color_space = JCS_RGB;
    else problem = name + ": JPEG color space " + std::to_string(info.jpeg_color_space) +
                   " (CMYK or YCCK) is not supported; save the image as RGB or grayscale";
    if (problem.empty()) {
        try {
            check_size(info.image_height, info.image_width, name);
        } catch (const Error& e) {
            problem = e.what();
        }
    }
    if (!problem.empty()) {
        jpeg_destroy_decompress(&info);
        throw Error(problem);
    }
    jpeg_start_decompress(&info);
    out.height = info.output_height;
    out.width = info.output_width;
    out.channels = info.output_components;
    out.pixels.resize(static_cast<size_t>(out.height * out.width * out.channels));
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = &out.pixels[static_cast<size_t>(info.output_scanline * out.width *
                                                       out.channels)];
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    return out;
}

Image8 decode_image(std::span<const uint8_t> bytes, const std::string& name) {
    if (starts_with(bytes, {0x89, 'P', 'N', 'G'})) return decode_png(bytes, name);
    if (starts_with(bytes, {0xFF, 0xD8})) return decode_jpeg(bytes, name);
    throw Error(name + ": neither a PNG nor a JPEG file (" +
                (bytes.empty() ? std::string("empty") : "unknown first bytes") +
                "); image folders hold .png and .jpg/.jpeg images only");
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open file");
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    if (in.bad()) throw Error(path + ": cannot read file");
    return bytes;
}

Image8 read_image_file(const std::string& path) {
    const std::vector<uint8_t> bytes = read_file_bytes(path);
    return decode_image(bytes, path);
}

bool is_image_file_name(const std::string& file_name) {
    std::string lower = file_name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (const char* ext : {".png", ".jpg", ".jpeg"})
        if (lower.size() > std::strlen(ext) && lower.ends_with(ext)) return true;
    return false;
}

} // namespace mps
