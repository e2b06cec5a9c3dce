#pragma once
// One layer's learned integer weights at one bit-width (a scale per kernel, int8 codes), as a
// file: how a data-aware quantizer (adaround) keeps what it learned in the run directory, so that
// `mpsearch search --resume` and later evaluations do not learn it again.
//
// Format: the line "mpsearch layer codes 1", then little-endian int64 kernels, int64 size,
// `kernels` float32 scales and kernels * size int8 codes, nothing after. Written atomically
// (evaluator/base/atomic_file.h).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mps {

struct LayerCodes {
    int64_t kernels = 0, size = 0;
    std::vector<float> scales;  // kernels
    std::vector<int8_t> codes;  // kernels x size, row-major
};

// Throws mps::Failure naming the file when it cannot be written (its directory is created).
void write_layer_codes(const std::string& path, const LayerCodes& codes);
// The codes in `path`, or nullopt when it does not exist or does not hold `kernels` x `size`
// codes in this format (the caller then learns them again and overwrites it).
std::optional<LayerCodes> read_layer_codes(const std::string& path, int64_t kernels, int64_t size);

} // namespace mps
