#pragma once
// NumPy arrays: .npy files (format versions 1, 2 and 3) and .npz archives of them
// (numpy.savez and savez_compressed), as PyTorch and TensorFlow pipelines export data sets.
//
// Read: C-order, little-endian (or single-byte) arrays of the dtypes an image or label array
// has: uint8, int8, int16, int32, int64, uint16, uint32, uint64, float32, float64. Fortran order,
// big-endian, object and structured dtypes are refused. Errors are mps::Error naming the file
// (and the member of an .npz) and saying how to save it instead.
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace mps {

struct NpyArray {
    char kind = 0;               // 'u' unsigned, 'i' signed integer, 'f' floating
    int item_size = 0;           // bytes per element
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;   // count() * item_size bytes, little-endian, C order
    std::string source;          // "dir/x.npy" or "dir/d.npz:images" (for messages)

    int64_t count() const;
    std::string dtype_name() const; // "uint8", "float32", ...
    std::string shape_text() const; // "(100, 28, 28)"
    // Element i as a double / as an integer (kind 'u' or 'i').
    double real(int64_t i) const;
    int64_t integer(int64_t i) const;
};

NpyArray parse_npy(std::span<const uint8_t> bytes, const std::string& name);
NpyArray read_npy(const std::string& path);
// The arrays of an .npz file by name (the member name without ".npy").
std::map<std::string, NpyArray> read_npz(const std::string& path);

} // namespace mps
