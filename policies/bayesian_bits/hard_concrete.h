#pragma once
// The gates of Bayesian Bits (docs/policies.md, bayesian_bits, "Gates" and "Objective"): the
// hard-concrete relaxation (Louizos et al. 2018) of each residual gate z_b, its thresholding into
// a bit-width, and the BitOPs-weighted regularizer R_q with its gradient. All in double: these are
// a few scalars per quantizer; callers storing float parameters convert.
//
// Constants: beta = 2/3, gamma = -0.1, zeta = 1.1.
//   sample    s = sigmoid((log u - log(1 - u) + log_alpha) / beta),  u in (0, 1)
//             z = clamp(s * (zeta - gamma) + gamma, 0, 1)
//             dz/dlog_alpha = (zeta - gamma) * s * (1 - s) / beta  when the unclamped value lies in
//             [0, 1] (ends included, like torch.clamp), else 0.
//   on        p = q(z > 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))
//             q(z = 0) = 1 - p, computed as sigmoid(-(log_alpha - beta * log(-gamma / zeta))) so
//             it keeps its precision near 0;  dp/dlog_alpha = p * (1 - p) = p * q(z = 0).
//   threshold gate b is on when q(z_b = 0) < 0.34, and a closed gate closes every gate above it:
//             bits = 0 if z_2 is off, else the highest b with z_2 .. z_b all on.
//   init      log_alpha = +6 for the levels up to the start bit-width, -6 above it.
//
// Regularizer of one quantizer with gated units u (kernel-wise weights: one unit per output
// channel; layer granularity and activations: one unit), m = MACs_l / MACs_max, c_b = m * b,
// p_k = q(z_k > 0) of the unit:
//   R_q = (1 / U) sum_u [c_2 p_2 + p_2 c_4 p_4 + p_2 p_4 c_8 p_8 + p_2 p_4 p_8 c_16 p_16
//                        + p_2 p_4 p_8 p_16 c_32 p_32]
// Without pruning (activations, or weights whose z_2 is not learned) p_2 := 1 everywhere, so the
// first term is the constant c_2 and dR_q/dlog_alpha_2 = 0.
// With prefix products P_k = p_2 ... p_k (P_0 = 1) and S_k = b_k + p_{k+1} S_{k+1} (S_32 = 32):
//   dR_q/dp_k = (m / U) P_{k-1} S_k,  dR_q/dlog_alpha_k = dR_q/dp_k * p_k (1 - p_k)
// (per unit: R_q is a mean, so each unit's logits only reach their own term).
#include "evaluator/quant/residual_quantizer.h"

#include <array>
#include <span>
#include <vector>

namespace mps {

namespace hard_concrete {
inline constexpr double beta = 2.0 / 3.0;
inline constexpr double gamma = -0.1;
inline constexpr double zeta = 1.1;
inline constexpr double off_threshold = 0.34; // a gate is on when q(z = 0) < this
inline constexpr double log_alpha_on = 6.0;   // initial logit of an open gate
inline constexpr double log_alpha_off = -6.0; // initial logit of a closed gate
} // namespace hard_concrete

// log_alpha of z_2, z_4, z_8, z_16, z_32 (index as in residual_bits).
using GateLogits = std::array<double, residual_gate_count>;

struct GateSample {
    double z;             // in [0, 1]
    double dz_dlog_alpha; // straight derivative of the clamped sample
};

// One training sample of a gate from uniform noise u in (0, 1). Throws mps::Error for u outside
// the open interval (log u or log(1 - u) would be infinite).
GateSample sample_gate(double u, double log_alpha);

// p = q(z > 0), its derivative, and q(z = 0) = 1 - p.
double probability_on(double log_alpha);
double probability_on_derivative(double log_alpha);
double probability_off(double log_alpha);

// Whether one gate survives thresholding: probability_off(log_alpha) < 0.34.
bool gate_is_on(double log_alpha);
// The bit-width the thresholded gates give: 0 (pruned), 2, 4, 8, 16 or 32. With prunable =
// false z_2 is always on (the result is at least 2) and log_alpha[0] is ignored.
int thresholded_bits(const GateLogits& log_alpha, bool prunable);
// The hard gate vector of thresholded_bits (gates_for_bits of it).
ResidualGates thresholded_gates(const GateLogits& log_alpha, bool prunable);

// The initial logits for a start bit-width in {2, 4, 8, 16, 32}: +6 up to it, -6 above.
// Throws mps::Error for another bit-width.
GateLogits initial_log_alpha(int start_bits);

// The cost of one gate chain with per-level costs c_k: sum_k c_k P_k, P_k = p_2 ... p_k (p_2 := 1
// when not prunable), and its gradient in the logits: dC/dlog_alpha_k = P_{k-1} S_k dp_k/dlog_alpha_k
// with S_k = c_k + p_{k+1} S_{k+1}. c_k = b_k is the per-unit term of R_q (regularizer `bits`).
struct ChainCost {
    double value = 0.0;
    GateLogits grad{}; // dC / dlog_alpha
};
ChainCost chain_cost(const GateLogits& log_alpha, bool prunable,
                     const std::array<double, residual_gate_count>& level_cost);
// The expected effective bits of one chain of `levels` under independent gates: chain_cost with
// the level increments c_k = b_k - b_{k-1} (nested levels: 2, 2, 4, 8, 16), so that a hard chain
// costs exactly its bits.
ChainCost expected_bits(const GateLogits& log_alpha, bool prunable,
                        const GateLevels& levels = residual_bits);

struct BitRegularizer {
    double value = 0.0;             // R_q
    std::vector<GateLogits> grad;   // dR_q / dlog_alpha, one per unit
};

// R_q of one quantizer and its gradient. `macs_ratio` = MACs_l / MACs_max (GatedNetwork gives each
// layer's input quantizer its own layer's MACs, so the ratio is at most 1 there; any finite
// positive ratio is accepted). Throws mps::Error for no units or a ratio that is not finite and
// positive.
// `levels`: the bits b_k of the chain's levels (c_b = m * b).
BitRegularizer bit_regularizer(std::span<const GateLogits> units, double macs_ratio,
                               bool prunable, const GateLevels& levels = residual_bits);

// The expected-BitOPs regularizer of one layer (GateRegularizer::bitops in gated_network.h):
//   R_l = (m / 8) * W * A,  W = (1 / U) sum_u E[b_u] over the weight units, A = E[b_a] of the
//   activation chain (never prunable), m = MACs_l / MACs_max; gates independent, so R_l is the
//   layer's expected BitOPs over MACs_max and 8 bits (W8A8 costs 8 m). Gradients:
//   dR/dlog_alpha_{u,k} = (m / 8) * A / U * dE[b_u]/dlog_alpha_k, dR/dlog_alpha_{a,k} =
//   (m / 8) * W * dE[b_a]/dlog_alpha_k. Throws mps::Error like bit_regularizer.
struct LayerBitops {
    double value = 0.0;
    std::vector<GateLogits> weight_grad; // one per weight unit
    GateLogits activation_grad{};
};
LayerBitops bitops_regularizer(std::span<const GateLogits> weight_units, bool weights_prunable,
                               const GateLogits& activation, double macs_ratio,
                               const GateLevels& weight_levels = residual_bits,
                               const GateLevels& activation_levels = residual_bits);

} // namespace mps
