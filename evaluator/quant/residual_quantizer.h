#pragma once
// The nested residual quantizer of Bayesian Bits (docs/policies.md, "The nested residual
// quantizer"; van Baalen et al., NeurIPS 2020) on a float range [x_min, x_max]
// (signed tensors: x_min = -x_max; unsigned: x_min = 0).
//
// Contract, with R = x_max - x_min and levels b in {2, 4, 8, 16, 32}:
//   steps      s_2 = R / 3, s_{2b} = s_b / (2^b + 1)      (so s_b = R / (2^b - 1): the grids nest)
//              computed by exactly this recursion in float32, division (not 1/x multiplication).
//   codes      t = clamp(x, x_min, x_max) - x_min,  q_b = round(t / s_b)
//   levels     Q_b = x_min + s_b * q_b: the plain affine b-bit quantizer on the grid
//              {x_min + i * s_b : i = 0 .. 2^b - 1}.
//   residuals  x_2 = Q_2,  e_b = Q_b - Q_{b/2} for b = 4 .. 32.
//              The paper writes e_4 = s_4 * round((x - x_2) / s_4); since x_2 - x_min is an
//              integer multiple (q_2 * (2^2 + 1)) of s_4, round((t - s_2 q_2) / s_4) = q_4 - 5 q_2
//              exactly and both definitions agree in real arithmetic; we take the codes from the
//              one division t / s_b, like the plain quantizer, so no rounding decision can differ.
//   output     x_q = z_2 * (x_2 + z_4 * (e_4 + z_8 * (e_8 + z_16 * (e_16 + z_32 * e_32))))
//              for gate values z in [0, 1] (hard or relaxed). It is evaluated in its telescoped
//              form  x_q = sum_b (P_b - P_{2b}) * Q_b,  P_b = z_2 * ... * z_b, P_64 = 0,  which is
//              the same polynomial; in float it makes every hard gate pattern give exactly one
//              level Q_b (weight 1, all others weight 0), i.e. bit for bit the plain quantizer at
//              the pattern's effective bits, and 0 when z_2 = 0.
//   rounding   round = std::nearbyint in the default environment: round half to even, the
//              rounding of the `uniform` weight quantizer (evaluator/quant/quantizer_uniform.cpp).
//              q_b is not clamped: clamping x keeps t / s_b within [0, 2^b - 1] up to one ulp,
//              which the rounding absorbs; the plain reference formula does the same.
//
// Backward (straight-through estimator: d round(v) / d v := 1):
//   d x_q / d x   = z_2 for x_min <= x <= x_max (both ends included, like torch.clamp), else 0.
//                   Every Q_b passes x through with slope 1, so the residuals e_b have slope 0 and
//                   the slope is that of x_2: 1 when z_2 = 1 (every hard pattern but pruned).
//   d x_q / d z_b = the partial derivative of the nested expression:
//                   d/dz_2  = x_2 + z_4 * inner_4
//                   d/dz_4  = z_2 * inner_4,                inner_4  = e_4 + z_8 * inner_8
//                   d/dz_8  = z_2 z_4 * inner_8,            inner_8  = e_8 + z_16 * inner_16
//                   d/dz_16 = z_2 z_4 z_8 * inner_16,       inner_16 = e_16 + z_32 * e_32
//                   d/dz_32 = z_2 z_4 z_8 z_16 * e_32
//                   evaluated in double from the float residuals.
//   d x_q / d x_max  (grad_range; the range is learned through x_max alone): when the quantizer
//                   is symmetric (x_min == -x_max) x_min = -x_max moves with x_max, otherwise
//                   x_min stays fixed (unsigned activations: x_min = 0). With lo = x_min,
//                   lo' = d lo / d x_max (-1 symmetric, 0 otherwise), R = x_max - lo,
//                   s_b = R / (2^b - 1), s_b' = d s_b / d x_max = (1 - lo') / (2^b - 1),
//                   t = clamp(x) - lo, v = t / s_b, q = round(v), Q_b = lo + s_b * q, the STE
//                   (d q / d v := 1) gives d Q_b / d x_max = lo' + t' + s_b' * (q - v), so
//                     x_min <= x <= x_max (both ends inside, as for d/dx): t' = -lo',
//                                            d Q_b / d x_max = s_b' * (q - v)
//                     x > x_max: Q_b = x_max (q = v = 2^b - 1),  d Q_b / d x_max = 1
//                     x < x_min: Q_b = lo    (q = v = 0),        d Q_b / d x_max = lo'
//                   and through the telescoped form  d x_q / d x_max = sum_b (P_b - P_{2b}) *
//                   d Q_b / d x_max  (0 when z_2 = 0). q is the forward's code (the one float
//                   division t / s_b); q - v is taken in double with v = double(t) / double(s_b),
//                   so that the rounding error of v does not swamp the small residual q - v
//                   at 16 and 32 bits. The step recursion has the same derivative:
//                   3 * 5 * 17 * ... * (2^(b/2) + 1) = 2^b - 1.
#include <array>
#include <cstddef>
#include <span>

namespace mps {

// The gated levels, finest last. Gate k of a gate vector belongs to residual_bits[k].
inline constexpr std::array<int, 5> residual_bits{2, 4, 8, 16, 32};
inline constexpr size_t residual_gate_count = residual_bits.size();

// Gate values z_2, z_4, z_8, z_16, z_32, each in [0, 1].
using ResidualGates = std::array<float, residual_gate_count>;

// x_2, e_4, e_8, e_16, e_32 (index as in residual_bits).
using Residuals = std::array<float, residual_gate_count>;

// The hard pattern of b bits: gates up to b open (1), the rest closed (0). b in {0, 2, 4, 8, 16,
// 32}; throws mps::Error otherwise.
ResidualGates gates_for_bits(int bits);

// Effective bits of a gate vector: 0 if z_2 = 0, else the highest b whose chain z_2 .. z_b is all
// open, where a gate counts as open when z != 0 (its residual enters x_q). For hard patterns this
// is the b of gates_for_bits; in {0, 2, 4, 8, 16, 32}. Throws mps::Error for a gate outside [0, 1].
int effective_bits(const ResidualGates& z);

// The bit-width of each gate's level, ascending: residual_bits for the nested quantizer; another
// chain (GateGrid::run in gated_network.h) may gate other levels in the same telescoped form.
using GateLevels = std::array<int, residual_gate_count>;
// effective_bits of z on a chain of `levels`: 0 if z_2 = 0, else the level of the last gate of the
// open prefix.
int effective_bits(const ResidualGates& z, const GateLevels& levels);

// The telescoped form over any family of levels Q_2, Q_4, ..., Q_32 (index as residual_bits):
// x_q = sum_k weight_k * Q_k with weight_k = P_k - P_{k+1}, P_k = z_2 * ... * z_{b_k}, computed in
// float as ResidualQuantizer::quantize does (a hard pattern gives weights of exactly 0 and 1).
// Gates are checked to lie in [0, 1] (mps::Error otherwise).
std::array<float, residual_gate_count> residual_level_weights(const ResidualGates& z);
// d x_q / d z_k of the nested expression from the residuals e_k = Q_k - Q_{k-1} (e_0 = Q_0) of the
// first `levels` levels; dz of the levels from `levels` on is set to 0 (their gates sit above a
// closed gate or multiply nothing). ResidualQuantizer's backward uses it with its own levels.
void residual_gate_gradients(const Residuals& e, const ResidualGates& z, size_t levels,
                             std::array<double, residual_gate_count>& dz);
// How many levels (from the coarsest) the gate gradients of z depend on: the levels up to the
// first closed gate, and on above it while the gates stay open into the inner brackets.
size_t residual_levels_needed(const ResidualGates& z);

class ResidualQuantizer {
public:
    // Throws mps::Error unless x_min and x_max are finite with x_min < x_max.
    ResidualQuantizer(float x_min, float x_max);
    // The signed range [-x_max, x_max].
    static ResidualQuantizer symmetric(float x_max);

    float x_min() const { return x_min_; }
    float x_max() const { return x_max_; }
    // s_b for b in residual_bits; throws mps::Error for another b.
    float step(int bits) const;

    // Q_b: the plain affine b-bit value of x (b in residual_bits).
    float level(float x, int bits) const;
    // x_2, e_4, e_8, e_16, e_32 of x.
    Residuals residuals(float x) const;

    // x_q for one value (gates checked to lie in [0, 1]; mps::Error otherwise).
    float quantize(float x, const ResidualGates& z) const;
    // d x_q / d x (straight-through).
    float grad_x(float x, const ResidualGates& z) const;
    // d x_q / d z_b for every gate.
    std::array<double, residual_gate_count> grad_gates(float x, const ResidualGates& z) const;
    // d x_q / d x_max under the straight-through estimator (d round(v)/dv := 1). The range moves
    // as Bayesian Bits learns it: when the quantizer is symmetric (x_min == -x_max) x_min = -x_max
    // moves with it; otherwise x_min stays fixed (unsigned activations: x_min = 0).
    float grad_range(float x, const ResidualGates& z) const;
    // Whether x_min == -x_max, i.e. whether x_min follows x_max in grad_range.
    bool is_symmetric() const { return x_min_ == -x_max_; }

    // A whole tensor under one gate vector (per-tensor / layer granularity). `out` has x.size()
    // values and may alias x.
    void quantize(std::span<const float> x, const ResidualGates& z, std::span<float> out) const;
    // Kernel-wise: x holds gates.size() equal contiguous channels (output channel c is the c-th
    // block of x.size() / gates.size() values, the layout of a conv / fc weight), channel c under
    // gates[c]. Throws mps::Error when gates is empty or does not divide x.size().
    void quantize_per_channel(std::span<const float> x, std::span<const ResidualGates> gates,
                              std::span<float> out) const;

    // Backward of quantize_per_channel (and of quantize, with one gate vector): given
    // grad_out = dL/dx_q, writes grad_x = dL/dx (may alias grad_out) and ADDS dL/dz of channel c
    // to grad_gates[c] (so several batches can accumulate). When grad_range is not empty it must
    // have one entry per gate vector, and entry c gets dL/dx_max of channel c ADDED:
    // sum over channel c of grad_out[i] * d x_q[i] / d x_max, accumulated in double (a per-tensor
    // range sums the entries). Same shape checks as above; mps::Error on any mismatch.
    void backward_per_channel(std::span<const float> x, std::span<const ResidualGates> gates,
                              std::span<const float> grad_out, std::span<float> grad_x,
                              std::span<std::array<double, residual_gate_count>> grad_gates,
                              std::span<double> grad_range = {}) const;

private:
    struct Prepared; // the telescoped weights P_b - P_{2b} of checked gates
    static Prepared prepare(const ResidualGates& z);
    float quantize_prepared(float x, const Prepared& p) const;
    float level_at(float x, size_t k) const; // Q of residual_bits[k]
    // d x_q / d z into dz and d x_q / d x_max as the result, in one pass over the levels.
    double element_gradients(float x, const ResidualGates& z,
                             const std::array<double, residual_gate_count>& weight, size_t levels,
                             std::array<double, residual_gate_count>& dz) const;

    float x_min_, x_max_;
    std::array<float, residual_gate_count> steps_;
};

} // namespace mps
