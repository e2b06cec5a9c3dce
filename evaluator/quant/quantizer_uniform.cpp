// The default weight quantizer, exactly as docs/quantizers.md, "uniform", defines it.
#include "evaluator/base/error.h"
#include "evaluator/quant/quantizer.h"

#include <algorithm>
#include <cmath>

namespace mps {

int uniform_qmax(int bits) {
    if (bits < 2 || bits > 16)
        throw Error("uniform_qmax: bit-width " + std::to_string(bits) + " is not in 2..16");
    return (1 << (bits - 1)) - 1;
}

float uniform_scale(std::span<const float> w, int bits) {
    if (w.empty()) return 0.0f;
    if (bits == 1) {
        double sum = 0.0;
        for (float v : w) sum += std::fabs(static_cast<double>(v));
        return static_cast<float>(sum / static_cast<double>(w.size()));
    }
    float max_abs = 0.0f;
    for (float v : w) max_abs = std::max(max_abs, std::fabs(v));
    return max_abs / static_cast<float>(uniform_qmax(bits));
}

std::vector<int32_t> uniform_codes(std::span<const float> w, int bits, float scale) {
    std::vector<int32_t> q(w.size(), 0);
    if (bits == 1) {
        for (size_t i = 0; i < w.size(); ++i) q[i] = w[i] >= 0.0f ? 1 : -1; // sign(0) = +1
        return q;
    }
    if (scale == 0.0f) return q;
    const float qmax = static_cast<float>(uniform_qmax(bits));
    for (size_t i = 0; i < w.size(); ++i) {
        // Division, not multiplication by 1/s: the definition's rounding ties depend on it.
        // nearbyint rounds half to even in the default floating-point environment.
        const float r = std::nearbyint(w[i] / scale);
        q[i] = static_cast<int32_t>(std::clamp(r, -qmax, qmax));
    }
    return q;
}

void dequantize_codes(const WeightQuantizer::KernelCodes& kernel, std::span<float> out) {
    for (size_t i = 0; i < out.size(); ++i)
        out[i] = kernel.scale * static_cast<float>(kernel.codes[i]);
}

namespace {

class UniformQuantizer final : public WeightQuantizer {
public:
    std::string name() const override { return "uniform"; }
    bool has_integer_form() const override { return true; }
    KernelCodes kernel_codes(std::span<const float> w, int bits) const override {
        const float scale = uniform_scale(w, bits);
        return {scale, uniform_codes(w, bits, scale)};
    }

protected:
    void quantize_bits(std::span<const float> w, int bits, std::span<float> out) const override {
        dequantize_codes(kernel_codes(w, bits), out);
    }
};

} // namespace

std::unique_ptr<WeightQuantizer> make_uniform_quantizer(const QuantizerArgs& args) {
    check_args("weight quantizer 'uniform'", args, {});
    return std::make_unique<UniformQuantizer>();
}

} // namespace mps
