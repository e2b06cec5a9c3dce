#pragma once
// ExportPlan: how each quantizable layer of a BN-folded graph under a bit-width policy is written
// as ONNX QDQ (docs/export.md), decided before any ONNX is built so the decisions can be tested
// and reported on their own.
//
//   - Weights: the `uniform` quantizer at 0..8 bits per kernel has an integer form: int8 codes
//     (uniform_codes) and one float scale per kernel (uniform_scale), so DequantizeLinear gives
//     the quantize-dequantized weights bit for bit. A pruned or all-zero kernel has zero codes
//     and a stand-in scale (below). Every other case (16 or 32 bits in the layer, quantizers
//     without an integer form) keeps the quantize-dequantized weights as float32.
//   - Activations (a layer's input at b bits, range r): per tensor, as uint8 codes; unsigned
//     values with zero point 0 and codes 0..2^b-1, signed ones with zero point 128 and codes
//     128 +- (2^(b-1)-1), so QuantizeLinear, a Clip to those codes and DequantizeLinear give
//     mpsearch's fake-quantized value (round half to even, x / s a division). Signed 1-bit
//     (binary) and 16-bit inputs have no uint8 form and are written with float ops (`emulated`).
//     r = 0 (only zeros seen) is scale 1 with the Clip pinned at the zero point: every code 0.
//   - Headroom: codes below 8 bits leave int8 / uint8 range unused; layers read them times 2^j
//     at scale / 2^j (exact: powers of two only move the exponent), the largest j the type
//     holds. That changes no value anywhere but makes the unit s_x * s_w of a fused layer's
//     int32 bias 2^(j_x + j_w) times finer, and so its rounding (below) that much smaller.
//   - Fusion: where a layer P's output reaches the next quantizable layer M only through its
//     ReLU / Clip, max pools and a flatten, each value read once (mpsearch's code chains), and
//     both have integer forms, P's output is quantized to M's codes as well (Q on outputs), which
//     lets ONNX Runtime run P as QLinearConv / QGemm. Quantization is monotone, so the max pools
//     give the same codes either way. P's bias is then int32 in units of s_x * s_w[k] (ONNX
//     Runtime's integer kernels require it): the one rounding mpsearch does not do.
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/graph.h"
#include "evaluator/quant/calibration.h"
#include "evaluator/quant/quantizer.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mps {

// How one value is quantized at one bit-width.
struct ActivationForm {
    enum class Kind { none, codes, binary, emulated } kind = Kind::none;
    int bits = float_bits;
    bool is_signed = false;
    float range = 0.0f;
    float scale = 0.0f;        // codes: the uint8 step; binary: the magnitude; emulated: the step
    uint8_t zero_point = 0;    // codes
    uint8_t code_min = 0, code_max = 255; // codes: the Clip after QuantizeLinear
    float level_max = 0.0f;    // emulated: qmax of the integer grid (qmin = -qmax or 0)
    // codes: the layer reads the codes times 2^shift at scale / 2^shift (a second Quantize /
    // Dequantize pair, exact), the largest shift the uint8 range holds; see "Headroom".
    int shift = 0;
};
ActivationForm activation_form(float range, int bits, bool is_signed);

// One layer's weights in the export.
struct WeightForm {
    bool integer = false;
    std::vector<int8_t> codes;  // integer: the weight tensor's codes (times 2^shift), same layout
    std::vector<float> scales;  // integer: one per kernel (/ 2^shift; a stand-in for zero kernels)
    std::vector<int> shifts;    // integer: the headroom shift of each kernel (0 for INT4 storage)
    bool int4 = false;          // integer: stored as INT4 (never fused: ONNX Runtime's CPU
                                // integer kernels take 8-bit weights only)
    std::vector<bool> zero_kernel; // integer: the kernel is all zeros (pruned or zero weights)
    Tensor dequantized;         // float: quantize-dequantized weights
    std::string why_float;      // float: the reason, for the message and the metadata
};
// `int4`: the codes are stored as INT4 (opset 21, every kernel at most 4 bits): no shift.
WeightForm weight_form(const Node& layer, const LayerBits& bits, const WeightQuantizer& quantizer,
                       bool int4 = false);
// Opset 21 stores a layer's codes as INT4 when every kernel has at most 4 bits.
bool stores_int4(const LayerBits& bits, int opset);

// int32 bias codes round_half_even(b[k] / (s_x * s_w[k])), or nothing when one overflows int32.
// A zero kernel's stand-in scale is set here so that its bias keeps about 20 bits.
std::optional<std::vector<int32_t>> bias_codes(const Node& layer, WeightForm& weights,
                                               float input_scale);

struct LayerPlan {
    std::string name;
    ActivationForm input;     // Kind::none at 32 bits
    WeightForm weights;
    // Set when the layer's output is quantized to the next layer's codes (fused).
    std::optional<ActivationForm> output;
    std::vector<std::string> output_chain; // values quantized with `output` (stage output first)
    std::vector<int32_t> bias;             // fused: int32 bias codes
    bool integer() const {
        return weights.integer && input.kind == ActivationForm::Kind::codes;
    }
};

struct ExportPlan {
    std::vector<LayerPlan> layers;               // graph order
    std::map<std::string, ActivationForm> requantize; // value -> form written after its producer
    std::map<std::string, bool> clip_after;      // value -> its requantization needs the Clip
    // Lines for the user: layers not on integer kernels and why.
    std::vector<std::string> notes;
};
// Validates `policy` against `folded` (mps::Error naming the layer otherwise). `fuse` false
// quantizes no layer output (every bias stays float32; ONNX Runtime then runs no integer kernel).
ExportPlan plan_export(const Graph& folded, const BitPolicy& policy,
                       const WeightQuantizer& quantizer, const Calibration& calibration,
                       bool fuse = true, int opset = 13);

} // namespace mps
