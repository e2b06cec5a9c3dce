#include "evaluator/quant/layer_codes_file.h"

#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace mps {

namespace {

const std::string magic = "mpsearch layer codes 1\n";

template <typename T>
void append(std::string& bytes, const T* values, size_t count) {
    bytes.append(reinterpret_cast<const char*>(values), count * sizeof(T));
}

} // namespace

void write_layer_codes(const std::string& path, const LayerCodes& codes) {
    std::error_code error;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), error);
    if (error)
        throw Failure(path + ": cannot create its directory (" + error.message() +
                      "); make the run directory writable");
    std::string bytes = magic;
    append(bytes, &codes.kernels, 1);
    append(bytes, &codes.size, 1);
    append(bytes, codes.scales.data(), codes.scales.size());
    append(bytes, codes.codes.data(), codes.codes.size());
    write_file_atomically(path, bytes);
}

std::optional<LayerCodes> read_layer_codes(const std::string& path, int64_t kernels, int64_t size) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t header = magic.size() + 2 * sizeof(int64_t);
    const size_t expected = header + static_cast<size_t>(kernels) * sizeof(float) +
                            static_cast<size_t>(kernels * size);
    if (bytes.size() != expected || bytes.compare(0, magic.size(), magic) != 0) return std::nullopt;
    LayerCodes codes;
    std::memcpy(&codes.kernels, bytes.data() + magic.size(), sizeof(int64_t));
    std::memcpy(&codes.size, bytes.data() + magic.size() + sizeof(int64_t), sizeof(int64_t));
    if (codes.kernels != kernels || codes.size != size) return std::nullopt;
    codes.scales.resize(static_cast<size_t>(kernels));
    codes.codes.resize(static_cast<size_t>(kernels * size));
    std::memcpy(codes.scales.data(), bytes.data() + header, codes.scales.size() * sizeof(float));
    std::memcpy(codes.codes.data(), bytes.data() + header + codes.scales.size() * sizeof(float),
                codes.codes.size());
    return codes;
}

} // namespace mps
