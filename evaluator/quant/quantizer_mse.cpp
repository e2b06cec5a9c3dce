// `mse`: the uniform quantizer's symmetric grid with per-kernel clipping chosen to minimise the
// weight error (docs/quantizers.md, "mse"). Outliers stretch max|w| and with it every step of a
// 2..4-bit grid; clipping them trades their error for finer steps everywhere else.
#include "evaluator/base/error.h"
#include "evaluator/quant/quantizer.h"

#include <algorithm>
#include <cmath>

namespace mps {

namespace {

// Sum of (w - s * q)^2 over the kernel, q = uniform_codes(w, bits, s), in double.
double weight_error(std::span<const float> w, int bits, float scale) {
    const std::vector<int32_t> q = uniform_codes(w, bits, scale);
    double sum = 0.0;
    for (size_t i = 0; i < w.size(); ++i) {
        const double e = static_cast<double>(w[i]) - static_cast<double>(scale * static_cast<float>(q[i]));
        sum += e * e;
    }
    return sum;
}

class MseQuantizer final : public WeightQuantizer {
public:
    explicit MseQuantizer(int grid) : grid_(grid) {}
    std::string name() const override { return "mse"; }
    QuantizerArgs args() const override { return {{"grid", std::to_string(grid_)}}; }
    bool has_integer_form() const override { return true; }

    KernelCodes kernel_codes(std::span<const float> w, int bits) const override {
        const float full = uniform_scale(w, bits);
        if (bits == 1 || full == 0.0f) return {full, uniform_codes(w, bits, full)};
        float best_scale = full;
        double best_error = weight_error(w, bits, full);
        for (int i = 1; i < grid_; ++i) {
            // a = 1 - i / 100 in float32: the same ratios on every machine
            const float ratio = 1.0f - static_cast<float>(i) / 100.0f;
            const float scale = full * ratio;
            const double error = weight_error(w, bits, scale);
            if (error < best_error) { // ties keep the larger ratio
                best_error = error;
                best_scale = scale;
            }
        }
        return {best_scale, uniform_codes(w, bits, best_scale)};
    }

protected:
    void quantize_bits(std::span<const float> w, int bits, std::span<float> out) const override {
        dequantize_codes(kernel_codes(w, bits), out);
    }

private:
    int grid_;
};

} // namespace

std::unique_ptr<WeightQuantizer> make_mse_quantizer(const QuantizerArgs& args) {
    const std::string owner = "weight quantizer 'mse'";
    check_args(owner, args, {"grid"});
    return std::make_unique<MseQuantizer>(int_arg(owner, args, "grid", 51, 1, 100));
}

} // namespace mps
