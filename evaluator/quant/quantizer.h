#pragma once
// Weight quantizers: map one kernel's float weights and a bit-width to quantize-dequantized
// (float) weights, behind one small interface, chosen by name from a registry.
//
// Common contract (every quantizer):
//   - a kernel is one output channel's weights (conv: I/g*kh*kw values, fc: in values);
//   - bits = 0  -> the kernel is pruned: all outputs are 0;
//   - bits = 32 -> float: outputs equal the inputs bit for bit;
//   - other bits (1..8, 16) -> the quantizer's own rule, below and in docs/quantizers.md;
//   - results are deterministic (no randomness, no dependence on threads) and finite for finite
//     inputs; an all-zero kernel maps to zeros;
//   - quantizers are immutable after construction: one instance may serve many threads.
//
// Registered quantizers:
//   uniform            the default; docs/quantizers.md exactly: symmetric, signed,
//                      s = max|w| / (2^(b-1) - 1) in float32, q = round_half_even(w / s) (division),
//                      clamped to +-qmax; b = 1: mean|w| * sign(w), sign(0) = +1.
//   uniform_asymmetric per-kernel affine grid of 2^b levels from min(w) to max(w) (both exactly
//                      representable): s = (max - min) / (2^b - 1),
//                      q = clamp(round_half_even((w - min) / s), 0, 2^b - 1), w_q = min + s * q
//                      (and exactly max for q = 2^b - 1). The zero point -min/s is real-valued, so
//                      this quantizer is fake-quant only.
//   ls                 least squares binary expansion (Pouransari et al. 2020): b = 1 optimal
//                      mean|w| * sign(w); b >= 2 greedy residual expansion
//                      r_0 = w, s_i = mean|r_{i-1}|, r_i = r_{i-1} - s_i * sign(r_{i-1}),
//                      w_q = sum_i s_i * sign(r_{i-1}). Argument two_bit=optimal replaces the
//                      greedy 2-bit result by the exact least-squares optimum (paper's "ls-2").
//   kmeans             per-kernel codebook of 2^b centroids, initialized linearly between min and
//                      max, refined by Lloyd iterations (argument iterations, default 100) until
//                      no assignment changes; each weight becomes its nearest centroid.
//                      A kernel with at most 2^b distinct values is kept exactly (zero error).
//   bayesian_bits      the grid of the Bayesian Bits nested residual quantizer
//                      (residual_quantizer.h) on the kernel's symmetric range x_max = max|w|,
//                      x_min = -x_max: 2^b levels {x_min + i * s, i = 0 .. 2^b - 1},
//                      s = (x_max - x_min) / (2^b - 1), w_q = x_min + s * round_half_even(
//                      (clamp(w) - x_min) / s). For b in {2, 4, 8, 16} it is
//                      ResidualQuantizer::symmetric(max|w|).level(w, b), bit for bit (its steps
//                      come from the recursion s_{2b} = s_b / (2^b + 1)); for b in {1, 3, 5, 6, 7}
//                      the same formula with s by one division. 0 is not a level (the zero point
//                      is -(2^b - 1) / 2), so this quantizer is fake-quant only.
//   mse                `uniform`'s symmetric grid with the kernel's clipping chosen to minimise the
//                      weight error: s = a * max|w| / qmax for a in {1, 0.99, ..., 0.50} (argument
//                      `grid`, the number of ratios, default 51, step 0.01), the one with the
//                      least sum (w - s * q)^2, ties to the larger a; q as `uniform`'s codes.
//                      b = 1 as `uniform` (mean|w| is already the least-squares scale).
//   adaround           `uniform`'s (argument scale: max, default) or `mse`'s (scale: mse) scale,
//                      each weight rounded down or up as learned on the calibration inputs to
//                      minimise the layer-output error (adaround.h). Data-aware: see with_data.
//                      b = 1 as `uniform`; b = 16 rounds to nearest on its grid.
// `uniform`, `mse` and `adaround` at 1..8 bits have an integer form (kernel_codes) for the
// integer path and the export.
#include "evaluator/ir/tensor.h"
#include "evaluator/quant/layer_data.h"

#include <functional>
#include <map>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mps {

// Named arguments of a quantizer or calibration rule, as written in a policy file
// (`iterations: 50` -> {"iterations", "50"}).
using QuantizerArgs = std::map<std::string, std::string>;

// A quantizer (weight quantizer or calibration rule) by name, with its arguments: what a run
// config, a policy file and the evaluator's options name.
struct QuantizerSpec {
    std::string name;
    QuantizerArgs args;
    bool operator==(const QuantizerSpec&) const = default;
};

class WeightQuantizer {
public:
    virtual ~WeightQuantizer() = default;
    // The registry name ("uniform", ...).
    virtual std::string name() const = 0;
    // The arguments it was made with, completed with defaults (for logs and policy files).
    virtual QuantizerArgs args() const { return {}; }
    // Quantize-dequantize one kernel: out[i] is the quantized value of w[i]. `out` has w.size()
    // elements and may alias `w`. Handles bits 0 and 32 itself; throws mps::Error for a bit-width
    // outside {0..8, 16, 32} or a size mismatch.
    void quantize_kernel(std::span<const float> w, int bits, std::span<float> out) const;

    // The integer form of one kernel at 1..8 bits, for the integer path and the export: codes in
    // [-qmax, qmax] (b = 1: -1 or +1) and one scale, with quantize_kernel's outputs exactly
    // scale * code. Quantizers whose grid is not symmetric around 0 with one scale per kernel
    // have none (has_integer_form() false; kernel_codes then throws).
    struct KernelCodes {
        float scale = 0.0f;
        std::vector<int32_t> codes;
    };
    virtual bool has_integer_form() const { return false; }
    virtual KernelCodes kernel_codes(std::span<const float> w, int bits) const;

    // Data-aware quantizers (adaround) learn from one model's layers and calibration inputs:
    // learns_from_data() is true and with_data() returns a quantizer bound to `data`, which
    // serves that model's kernels (recognised by their values) with what it learned, and any
    // other kernel as it would without data. The others keep the default: false, nullptr.
    virtual bool learns_from_data() const { return false; }
    virtual std::shared_ptr<const WeightQuantizer> with_data(
        std::shared_ptr<const LayerDataSource> data) const;

protected:
    // The quantizer's own rule for bits in {1..8, 16}; w.size() == out.size() > 0.
    virtual void quantize_bits(std::span<const float> w, int bits, std::span<float> out) const = 0;
};

// The quantized weight tensor of a conv / fully_connected layer: kernel k (weight.dims[0] kernels,
// numel / dims[0] values each) quantized at bits[k]. Throws when bits.size() != dims[0].
Tensor quantize_weights(const WeightQuantizer& quantizer, const Tensor& weight,
                        std::span<const int> bits);

// Registry. make_weight_quantizer throws mps::Error for an unknown name (listing the known ones)
// or an unknown / malformed argument (listing the accepted ones).
std::unique_ptr<WeightQuantizer> make_weight_quantizer(const std::string& name,
                                                       const QuantizerArgs& args = {});
std::vector<std::string> weight_quantizer_names();
inline constexpr const char* default_weight_quantizer = "uniform";

// --- The uniform (default) quantizer's integer form, for the integer execution path. ---
// qmax = 2^(b-1) - 1 for 2 <= b <= 16.
int uniform_qmax(int bits);
// Kernel scale for 2 <= b <= 16: max|w| / qmax in float32; for b = 1: mean|w| (accumulated in
// double, rounded once to float). 0 for an all-zero kernel.
float uniform_scale(std::span<const float> w, int bits);
// Integer codes for 1 <= b <= 16: q[i] = clamp(round_half_even(w[i] / s), -qmax, qmax), or for
// b = 1: +1 when w[i] >= 0 else -1. The quantized weight is scale * q[i] (0 when scale == 0).
std::vector<int32_t> uniform_codes(std::span<const float> w, int bits, float scale);
// out[i] = kernel.scale * kernel.codes[i]: the float weights of an integer form.
void dequantize_codes(const WeightQuantizer::KernelCodes& kernel, std::span<float> out);

// --- Argument helpers for quantizer and calibration factories. ---
// Throws mps::Error naming `owner` when `args` has a key outside `accepted`.
void check_args(const std::string& owner, const QuantizerArgs& args,
                const std::vector<std::string>& accepted);
// The integer / number value of args[key] within [lo, hi], or `fallback` when absent.
int int_arg(const std::string& owner, const QuantizerArgs& args, const std::string& key,
            int fallback, int lo, int hi);
double double_arg(const std::string& owner, const QuantizerArgs& args, const std::string& key,
                  double fallback, double lo, double hi);

// Factories of the built-in quantizers (one per quantizer_*.cpp; the registry calls them).
std::unique_ptr<WeightQuantizer> make_uniform_quantizer(const QuantizerArgs& args);
std::unique_ptr<WeightQuantizer> make_uniform_asymmetric_quantizer(const QuantizerArgs& args);
std::unique_ptr<WeightQuantizer> make_ls_quantizer(const QuantizerArgs& args);
std::unique_ptr<WeightQuantizer> make_kmeans_quantizer(const QuantizerArgs& args);
std::unique_ptr<WeightQuantizer> make_bayesian_bits_quantizer(const QuantizerArgs& args);
std::unique_ptr<WeightQuantizer> make_mse_quantizer(const QuantizerArgs& args);
std::unique_ptr<WeightQuantizer> make_adaround_quantizer(const QuantizerArgs& args);

} // namespace mps
