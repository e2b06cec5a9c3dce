// Per-kernel affine (asymmetric) weight quantizer: 2^b evenly spaced levels from min(w) to max(w).
#include "evaluator/quant/quantizer.h"

#include <algorithm>
#include <cmath>

namespace mps {
namespace {

class UniformAsymmetricQuantizer final : public WeightQuantizer {
public:
    std::string name() const override { return "uniform_asymmetric"; }

protected:
    void quantize_bits(std::span<const float> w, int bits, std::span<float> out) const override {
        const auto [lo_it, hi_it] = std::minmax_element(w.begin(), w.end());
        const float lo = *lo_it, hi = *hi_it;
        const int qmax_int = (1 << bits) - 1;
        const float qmax = static_cast<float>(qmax_int);
        const float scale = (hi - lo) / qmax;
        if (scale == 0.0f) { // constant kernel (or a range below float resolution)
            for (size_t i = 0; i < w.size(); ++i) out[i] = w[i] == hi ? hi : lo;
            return;
        }
        for (size_t i = 0; i < w.size(); ++i) {
            const float q = std::clamp(std::nearbyint((w[i] - lo) / scale), 0.0f, qmax);
            // The top level is max(w) itself: lo + scale * qmax can miss it by an ulp.
            out[i] = q == qmax ? hi : lo + scale * q;
        }
    }
};

} // namespace

std::unique_ptr<WeightQuantizer> make_uniform_asymmetric_quantizer(const QuantizerArgs& args) {
    check_args("weight quantizer 'uniform_asymmetric'", args, {});
    return std::make_unique<UniformAsymmetricQuantizer>();
}

} // namespace mps
