// The Bayesian Bits weight quantizer: per kernel, the affine b-bit grid of the nested residual
// quantizer (evaluator/quant/residual_quantizer.h) on the kernel's symmetric range [-max|w|, max|w|].
// It scores a Bayesian Bits policy on the nested grid (docs/quantizers.md, "bayesian_bits";
// docs/policies.md, "The nested residual quantizer"), with max|w| as the range rather than the
// learned one; fake-quant only (the zero point x_min / s = -(2^b - 1) / 2 is not an integer).
#include "evaluator/quant/quantizer.h"
#include "evaluator/quant/residual_quantizer.h"

#include <algorithm>
#include <cmath>

namespace mps {
namespace {

// Whether b is a level of the nested quantizer that the weight bit-widths can name (32 is float).
bool is_residual_level(int bits) { return bits == 2 || bits == 4 || bits == 8 || bits == 16; }

class BayesianBitsQuantizer final : public WeightQuantizer {
public:
    std::string name() const override { return "bayesian_bits"; }

protected:
    void quantize_bits(std::span<const float> w, int bits, std::span<float> out) const override {
        float x_max = 0.0f;
        for (float v : w) x_max = std::max(x_max, std::fabs(v));
        if (x_max == 0.0f) { // all-zero kernel: no range to put a grid on
            std::fill(out.begin(), out.end(), 0.0f);
            return;
        }
        const float x_min = -x_max;
        if (is_residual_level(bits)) {
            // Through the residual quantizer itself, so the levels are bit for bit those that
            // Bayesian Bits trained with (steps from the recursion s_{2b} = s_b / (2^b + 1)).
            const ResidualQuantizer grid = ResidualQuantizer::symmetric(x_max);
            if (grid.step(bits) == 0.0f) return keep(w, out);
            for (size_t i = 0; i < w.size(); ++i) out[i] = grid.level(w[i], bits);
            return;
        }
        // 1, 3, 5, 6, 7 bits have no gate: the same affine grid, its step by one division.
        const float step = (x_max - x_min) / static_cast<float>((1 << bits) - 1);
        if (step == 0.0f) return keep(w, out);
        for (size_t i = 0; i < w.size(); ++i) {
            const float t = std::clamp(w[i], x_min, x_max) - x_min;
            out[i] = x_min + step * std::nearbyint(t / step); // division, round half to even
        }
    }

private:
    // A subnormal range whose step underflows to 0: the grid is finer than float resolution, so
    // every weight is its own level (and the result stays finite rather than 0 / 0).
    static void keep(std::span<const float> w, std::span<float> out) {
        std::copy(w.begin(), w.end(), out.begin());
    }
};

} // namespace

std::unique_ptr<WeightQuantizer> make_bayesian_bits_quantizer(const QuantizerArgs& args) {
    check_args("weight quantizer 'bayesian_bits'", args, {});
    return std::make_unique<BayesianBitsQuantizer>();
}

} // namespace mps
