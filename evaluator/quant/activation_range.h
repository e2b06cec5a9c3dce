#pragma once
// Activation quantization: which tensors are unsigned, how their ranges are calibrated, and the
// fake-quantization function itself (docs/semantics.md, "Activations").
//
// The input of every quantizable layer is quantized per tensor with a range fixed once on the
// calibration images (BN-folded float32 network):
//   unsigned: qmax = 2^b - 1,     s = range / qmax, x_q = s * clamp(round_half_even(x / s), 0, qmax)
//   signed:   qmax = 2^(b-1) - 1, s = range / qmax, x_q = s * clamp(round_half_even(x / s), -qmax, qmax)
// with division (not multiplication by 1/s) and round-half-even; b = 32 leaves x unchanged; a
// range of 0 maps everything to 0.
//
// Signed 1-bit (the signed formula gives qmax = 0 there, which is undefined): binary, like the
// 1-bit weight rule: x_q = range * sign(x), sign(0) = +1, where every calibration rule sets range
// to the least-squares optimal binary scale, mean|x| over the calibration images.
#include "evaluator/ir/graph.h"
#include "evaluator/quant/quantizer.h"

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mps {

// Value name -> true when the value is non-negative by construction: output of relu or clip with
// clip_min >= 0; max_pool, average_pool, global_average_pool or flatten of such a value; add of
// two such values. Everything else (the graph input, conv / fully_connected / batch_norm outputs)
// is false (signed). Every value of the graph, the input included, has an entry.
std::map<std::string, bool> unsigned_values(const Graph& graph);

// --- The grid ---
// qmax for an activation: 2^b - 1 unsigned, 2^(b-1) - 1 signed; b in 1..16 (signed 1-bit: 1,
// the magnitude of the binary code +-1).
int activation_qmax(int bits, bool is_signed);
// Step s = range / qmax in float32 (division); for signed 1-bit the binary magnitude `range`.
float activation_scale(float range, int bits, bool is_signed);
// Quantize-dequantize n values in place with the calibrated `range` (max, or max|x| when signed,
// or a clipped range). bits in {1..8, 16, 32}; throws mps::Error otherwise.
void fake_quantize_activation(float* x, int64_t n, float range, int bits, bool is_signed);
// The straight-through estimator's mask of fake_quantize_activation(range, bits, is_signed): the
// gradient of x flows when the quantizer did not clip it, s != 0 and qmin <= x / s <= qmax
// (s = activation_scale); signed 1-bit (binary) passes -1 <= x <= 1 with s = range != 0, and
// 32 bits passes everything. One rule for every fake-quant backward (train_layers.h, run_grid.h).
class ActivationClipMask {
public:
    ActivationClipMask(float range, int bits, bool is_signed);
    bool passes(float x) const {
        if (all_) return true;
        const float code = binary_ ? x : x / scale_;
        return scale_ != 0.0f && code >= qmin_ && code <= qmax_;
    }

private:
    float scale_ = 0.0f, qmin_ = 0.0f, qmax_ = 0.0f;
    bool binary_ = false, all_ = false;
};

// --- Calibration rules ---
enum class CalibrationRule {
    max,        // default: max of x (unsigned) or max|x| (signed)
    percentile, // the given percentile (default 99.99) of x (unsigned) or |x| (signed)
    mse,        // the clipping range c in {max * i / grid : i = 1..grid} (default grid = 100)
                // minimizing the quantization squared error at the asked bit-width; first on ties
};

struct CalibrationMethod {
    CalibrationRule rule = CalibrationRule::max;
    double percentile = 99.99; // percentile rule: in (0, 100]
    int grid = 100;            // mse rule: number of candidate ranges
};

const char* calibration_rule_name(CalibrationRule rule);
std::vector<std::string> calibration_rule_names(); // "max", "percentile", "mse"
inline constexpr const char* default_calibration_rule = "max";
// From a policy file's name and arguments (percentile: `percentile`; mse: `grid`). Throws
// mps::Error for an unknown rule (listing the known ones) or a bad argument.
CalibrationMethod make_calibration(const std::string& name, const QuantizerArgs& args = {});
// The arguments of `method` that its rule uses, as strings (for policy files).
QuantizerArgs calibration_args(const CalibrationMethod& method);

// Statistics of one activation tensor over the calibration images, enough for every rule.
//
// It keeps the exact max, the exact mean of the magnitudes, and a histogram of the magnitudes
// (x clamped at 0 for an unsigned tensor, |x| for a signed one: symmetric quantization error only
// depends on |x|) with `bins` bins over [0, R), R the smallest power of two above the max. The
// histogram (and so every range) is the same whatever the order and batching of the observed
// values: rebinning when R doubles merges bin pairs exactly. Percentile ranges are exact to within
// one bin (R / bins); the mse rule evaluates the error at bin centres. Non-finite values are
// ignored. Not thread-safe: give each thread its own observer and merge() them.
class ActivationObserver {
public:
    static constexpr size_t bins = 16384;

    explicit ActivationObserver(bool is_signed);

    void observe(const float* x, int64_t n);
    // Adds `other`'s statistics (same signedness) as if its values had been observed here.
    void merge(const ActivationObserver& other);

    bool is_signed() const { return is_signed_; }
    int64_t count() const { return count_; }
    float max() const { return max_; }           // max x (unsigned, >= 0) or max|x| (signed)
    double mean_magnitude() const;                 // mean of the magnitudes; 0 when empty

    // The range to quantize this tensor with at `bits` (anything for b = 32: max) by `method`.
    float range(const CalibrationMethod& method, int bits) const;

private:
    float percentile_range(double percent) const;
    float mse_range(int bits, int grid) const;
    void grow_to(double limit); // doubles R until limit < R

    bool is_signed_;
    int64_t count_ = 0;
    float max_ = 0.0f;
    double sum_magnitude_ = 0.0;
    double top_ = 0.0; // R; 0 until a positive value arrives
    std::vector<int64_t> histogram_;
};

} // namespace mps
