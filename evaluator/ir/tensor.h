#pragma once
// Tensor: a dense float32 array with its dimensions, row-major (the last dimension varies fastest).
// Layouts follow ONNX: activations NCHW, conv weights OIHW (I = input channels per group), fully
// connected weights [out, in].
#include <cstdint>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

namespace mps {

struct Tensor {
    std::vector<int64_t> dims;
    std::vector<float> data;

    Tensor() = default;
    explicit Tensor(std::vector<int64_t> d, float fill = 0.0f)
        : dims(std::move(d)), data(static_cast<size_t>(count(dims)), fill) {}

    static int64_t count(const std::vector<int64_t>& d) {
        return std::accumulate(d.begin(), d.end(), int64_t{1}, std::multiplies<>());
    }
    int64_t numel() const { return static_cast<int64_t>(data.size()); }
    bool empty() const { return data.empty(); }
};

// Dimensions as "1x28x28" (in messages); "scalar" for none.
inline std::string dims_text(const std::vector<int64_t>& dims) {
    std::string text;
    for (size_t i = 0; i < dims.size(); ++i) {
        if (i) text += 'x';
        text += std::to_string(dims[i]);
    }
    return text.empty() ? std::string("scalar") : text;
}

} // namespace mps
