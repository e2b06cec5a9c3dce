#pragma once
// The levels of GateGrid::run (gated_network.h): Bayesian Bits gates over the run's own
// quantizers instead of the nested residual grid. A chain of up to five bit-widths (GateLevels,
// ascending) is mixed in the telescoped form of residual_quantizer.h,
//   x_q = sum_k weight_k(z) * Q_k(x),  weight_k = P_k - P_{k+1},  P_k = z_0 * ... * z_k,
// so a hard gate pattern gives exactly one level: the run's quantizer at the pattern's bits.
//
// Activations (RunGridActivation): Q_k = fake_quantize_activation(x, range_k, bits_k) with the
// calibrated range of each bit-width (activation_range.h); 32 bits is x itself.
//   backward  dL/dz_k from the residuals e_k = Q_k - Q_{k-1} (residual_gate_gradients), and the
//             straight-through dL/dx = dL/dx_q * sum_k weight_k * pass_k(x), pass_k the
//             fake-quant layer's clip mask at level k (ActivationClipMask, as train_layers.h).
// Weights (mix_weight_levels / weight_levels_backward): Q_k is the run's weight quantizer at
// bits_k, precomputed per level (the run's weight quantizers take their range from the kernel
// itself and clip nothing), so dL/dw = z_0 * dL/dw_q.
// `inside` (optional): 0 marks padding of a blocked layout, which gives 0 forward and passes no
// gradient.
#include "evaluator/quant/activation_range.h"
#include "evaluator/quant/residual_quantizer.h"

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace mps {

using GateGradient = std::array<double, residual_gate_count>;

class RunGridActivation {
public:
    // ranges[k]: the calibrated range at levels[k] (unused at 32 bits).
    RunGridActivation(const GateLevels& levels, const std::array<float, residual_gate_count>& ranges,
                      bool is_signed);

    void forward(const ResidualGates& z, const float* x, float* y, int64_t n,
                 const uint8_t* inside) const;
    // Writes dx (may alias dy) and ADDS dL/dz to dz.
    void backward(const ResidualGates& z, const float* x, const float* dy, float* dx, int64_t n,
                  const uint8_t* inside, GateGradient& dz) const;

private:
    void quantize_level(size_t k, const float* x, int64_t n, float* out) const;

    GateLevels levels_;
    std::array<float, residual_gate_count> ranges_;
    bool is_signed_;
    std::vector<ActivationClipMask> clips_; // per level: its fake quantization's clip mask
};

// One unit's weights: out[i] = sum_k weight_k(z) * levels[k][i] over the unit's values.
void mix_weight_levels(std::span<const std::span<const float>> levels, const ResidualGates& z,
                       std::span<float> out);
// Its backward: ADDS dL/dz to dz and writes grad_w = z_0 * grad_out.
void weight_levels_backward(std::span<const std::span<const float>> levels, const ResidualGates& z,
                            std::span<const float> grad_out, std::span<float> grad_w,
                            GateGradient& dz);

} // namespace mps
