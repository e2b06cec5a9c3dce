// The nested residual quantizer of Bayesian Bits; the formulas are in residual_quantizer.h.
#include "evaluator/quant/residual_quantizer.h"

#include "evaluator/base/error.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace mps {

namespace {

size_t level_index(int bits) {
    for (size_t k = 0; k < residual_gate_count; ++k)
        if (residual_bits[k] == bits) return k;
    throw Error("residual quantizer: bit-width " + std::to_string(bits) +
                " is not a Bayesian Bits level; use 2, 4, 8, 16 or 32");
}

void check_gates(const ResidualGates& z) {
    for (size_t k = 0; k < residual_gate_count; ++k)
        if (!(z[k] >= 0.0f && z[k] <= 1.0f)) // also rejects NaN
            throw Error("residual quantizer: gate z_" + std::to_string(residual_bits[k]) + " = " +
                        std::to_string(z[k]) + " is outside [0, 1]; clamp the gate sample");
}

// Channel size of a kernel-wise call, after checking the shapes.
size_t channel_size(size_t values, size_t channels, const char* what) {
    if (channels == 0 || values % channels != 0)
        throw Error(std::string("residual quantizer: ") + what + ": " + std::to_string(values) +
                    " values do not split into " + std::to_string(channels) +
                    " equal channels; pass one gate vector per output channel");
    return values / channels;
}

// The telescoped weights P_b - P_{2b} in double (gates already checked), for the range gradient.
std::array<double, residual_gate_count> level_weights(const ResidualGates& z) {
    std::array<double, residual_gate_count + 2> chain{};
    chain[0] = 1.0;
    for (size_t k = 0; k < residual_gate_count; ++k) chain[k + 1] = chain[k] * double(z[k]);
    std::array<double, residual_gate_count> weight{};
    for (size_t k = 0; k < residual_gate_count; ++k) weight[k] = chain[k + 1] - chain[k + 2];
    return weight;
}

} // namespace

// Gates checked once per call, with the telescoped weight of each level: x_q = sum w_k * Q_k.
struct ResidualQuantizer::Prepared {
    std::array<float, residual_gate_count> weight;
};

std::array<float, residual_gate_count> residual_level_weights(const ResidualGates& z) {
    check_gates(z);
    // chain[k + 1] = P_k = z_0 * ... * z_k; the weight of level k is P_k - P_{k+1}. Hard gates
    // give weights of exactly 0 and 1.
    std::array<float, residual_gate_count + 2> chain{};
    chain[0] = 1.0f;
    for (size_t k = 0; k < residual_gate_count; ++k) chain[k + 1] = chain[k] * z[k];
    std::array<float, residual_gate_count> weight{};
    for (size_t k = 0; k < residual_gate_count; ++k) weight[k] = chain[k + 1] - chain[k + 2];
    return weight;
}

void residual_gate_gradients(const Residuals& e, const ResidualGates& z, size_t levels,
                             std::array<double, residual_gate_count>& dz) {
    // inner_k = e_k + z_{k+1} inner_{k+1} is the bracket gate k multiplies; d/dz_k = P_{k-1} inner_k.
    dz.fill(0.0);
    double inner = 0.0;
    for (size_t k = levels; k-- > 0;)
        inner = double(e[k]) + (k + 1 < levels ? double(z[k + 1]) * inner : 0.0), dz[k] = inner;
    double outer = 1.0;
    for (size_t k = 0; k < levels; ++k) {
        dz[k] *= outer;
        outer *= double(z[k]);
    }
}

ResidualGates gates_for_bits(int bits) {
    ResidualGates z{};
    if (bits == 0) return z;
    const size_t last = level_index(bits);
    for (size_t k = 0; k <= last; ++k) z[k] = 1.0f;
    return z;
}

int effective_bits(const ResidualGates& z) { return effective_bits(z, residual_bits); }

int effective_bits(const ResidualGates& z, const GateLevels& levels) {
    check_gates(z);
    int bits = 0;
    for (size_t k = 0; k < residual_gate_count && z[k] != 0.0f; ++k) bits = levels[k];
    return bits;
}

ResidualQuantizer::ResidualQuantizer(float x_min, float x_max) : x_min_(x_min), x_max_(x_max) {
    if (!std::isfinite(x_min) || !std::isfinite(x_max) || !(x_min < x_max))
        throw Error("residual quantizer: range [" + std::to_string(x_min) + ", " +
                    std::to_string(x_max) +
                    "] is not a finite interval with x_min < x_max; keep the learned range positive");
    // s_2 = R / 3, s_{2b} = s_b / (2^b + 1): the paper's recursion, in float.
    steps_[0] = (x_max - x_min) / 3.0f;
    for (size_t k = 1; k < residual_gate_count; ++k) {
        const double divisor = std::ldexp(1.0, residual_bits[k - 1]) + 1.0; // exact in float
        steps_[k] = steps_[k - 1] / static_cast<float>(divisor);
    }
}

ResidualQuantizer ResidualQuantizer::symmetric(float x_max) {
    return ResidualQuantizer(-x_max, x_max);
}

float ResidualQuantizer::step(int bits) const { return steps_[level_index(bits)]; }

float ResidualQuantizer::level_at(float x, size_t k) const {
    const float s = steps_[k];
    const float t = std::clamp(x, x_min_, x_max_) - x_min_;
    return x_min_ + s * std::nearbyint(t / s); // division, round half to even
}

float ResidualQuantizer::level(float x, int bits) const { return level_at(x, level_index(bits)); }

Residuals ResidualQuantizer::residuals(float x) const {
    Residuals r{};
    float previous = 0.0f;
    for (size_t k = 0; k < residual_gate_count; ++k) {
        const float q = level_at(x, k);
        r[k] = q - previous;
        previous = q;
    }
    return r;
}

ResidualQuantizer::Prepared ResidualQuantizer::prepare(const ResidualGates& z) {
    return Prepared{residual_level_weights(z)};
}

float ResidualQuantizer::quantize_prepared(float x, const Prepared& p) const {
    // Levels of weight 0 are skipped: a hard pattern then returns exactly one level.
    float sum = 0.0f;
    for (size_t k = 0; k < residual_gate_count; ++k)
        if (p.weight[k] != 0.0f) sum += p.weight[k] * level_at(x, k);
    return sum;
}

float ResidualQuantizer::quantize(float x, const ResidualGates& z) const {
    return quantize_prepared(x, prepare(z));
}

float ResidualQuantizer::grad_x(float x, const ResidualGates& z) const {
    check_gates(z);
    return x >= x_min_ && x <= x_max_ ? z[0] : 0.0f;
}

std::array<double, residual_gate_count> ResidualQuantizer::grad_gates(float x,
                                                                      const ResidualGates& z) const {
    check_gates(z);
    std::array<double, residual_gate_count> dz{};
    element_gradients(x, z, level_weights(z), residual_gate_count, dz);
    return dz;
}

float ResidualQuantizer::grad_range(float x, const ResidualGates& z) const {
    check_gates(z);
    std::array<double, residual_gate_count> dz{};
    return static_cast<float>(element_gradients(x, z, level_weights(z), residual_levels_needed(z), dz));
}

void ResidualQuantizer::quantize(std::span<const float> x, const ResidualGates& z,
                                 std::span<float> out) const {
    quantize_per_channel(x, std::span<const ResidualGates>(&z, 1), out);
}

void ResidualQuantizer::quantize_per_channel(std::span<const float> x,
                                             std::span<const ResidualGates> gates,
                                             std::span<float> out) const {
    if (out.size() != x.size())
        throw Error("residual quantizer: output has " + std::to_string(out.size()) +
                    " values for an input of " + std::to_string(x.size()));
    const size_t per_channel = channel_size(x.size(), gates.size(), "quantize_per_channel");
    for (size_t c = 0; c < gates.size(); ++c) {
        const Prepared p = prepare(gates[c]);
        for (size_t i = c * per_channel; i < (c + 1) * per_channel; ++i)
            out[i] = quantize_prepared(x[i], p);
    }
}

void ResidualQuantizer::backward_per_channel(
    std::span<const float> x, std::span<const ResidualGates> gates, std::span<const float> grad_out,
    std::span<float> grad_x, std::span<std::array<double, residual_gate_count>> grad_gates,
    std::span<double> grad_range) const {
    if (grad_out.size() != x.size() || grad_x.size() != x.size() ||
        grad_gates.size() != gates.size())
        throw Error("residual quantizer: backward_per_channel: grad_out (" +
                    std::to_string(grad_out.size()) + ") and grad_x (" +
                    std::to_string(grad_x.size()) + ") must have x's " + std::to_string(x.size()) +
                    " values and grad_gates (" + std::to_string(grad_gates.size()) +
                    ") one entry per gate vector (" + std::to_string(gates.size()) + ")");
    if (!grad_range.empty() && grad_range.size() != gates.size())
        throw Error("residual quantizer: backward_per_channel: grad_range has " +
                    std::to_string(grad_range.size()) + " entries for " +
                    std::to_string(gates.size()) +
                    " gate vectors; pass one per gate vector, or an empty span for no range "
                    "gradient");
    const size_t per_channel = channel_size(x.size(), gates.size(), "backward_per_channel");
    for (size_t c = 0; c < gates.size(); ++c) {
        const ResidualGates& z = gates[c];
        check_gates(z);
        const std::array<double, residual_gate_count> weight = level_weights(z);
        const size_t levels = residual_levels_needed(z);
        double range_sum = 0.0;
        for (size_t i = c * per_channel; i < (c + 1) * per_channel; ++i) {
            const float g = grad_out[i]; // read before grad_x[i], which may alias it
            std::array<double, residual_gate_count> dz{};
            const double dr = element_gradients(x[i], z, weight, levels, dz);
            for (size_t k = 0; k < residual_gate_count; ++k) grad_gates[c][k] += double(g) * dz[k];
            range_sum += double(g) * dr;
            grad_x[i] = x[i] >= x_min_ && x[i] <= x_max_ ? g * z[0] : 0.0f;
        }
        if (!grad_range.empty()) grad_range[c] += range_sum;
    }
}

size_t residual_levels_needed(const ResidualGates& z) {
    // Level k matters while the prefix z_2 ... z_{b_{k-1}} is non-zero (d/dz_k = prefix * inner_k)
    // and, above the last such level, while the gates stay open into the inner brackets.
    size_t top = 0;
    while (top + 1 < residual_gate_count && z[top] != 0.0f) ++top;
    while (top + 1 < residual_gate_count && z[top + 1] != 0.0f) ++top;
    return top + 1;
}

double ResidualQuantizer::element_gradients(float x, const ResidualGates& z,
                                            const std::array<double, residual_gate_count>& weight,
                                            size_t levels,
                                            std::array<double, residual_gate_count>& dz) const {
    // One pass over the levels that matter: the same codes as the forward, the residuals e_k,
    // the brackets that each gate multiplies (inner_k = e_k + z_{k+1} inner_{k+1}) and each
    // level's slope d Q_b / d x_max; the derivatives of the levels above `levels` are exactly 0
    // (a zero gate below them).
    const double lo_slope = is_symmetric() ? -1.0 : 0.0;
    const float t = std::clamp(x, x_min_, x_max_) - x_min_;
    Residuals e{};
    double range = 0.0;
    float previous = 0.0f;
    for (size_t k = 0; k < levels; ++k) {
        const float s = steps_[k];
        const float code = std::nearbyint(t / s);
        const float q = x_min_ + s * code; // level_at(x, k)
        e[k] = q - previous;
        previous = q;
        if (weight[k] == 0.0) continue;
        double slope;
        if (x > x_max_) slope = 1.0;
        else if (x < x_min_) slope = lo_slope;
        else
            slope = (1.0 - lo_slope) / (std::ldexp(1.0, residual_bits[k]) - 1.0) *
                    (double(code) - double(t) / double(s));
        range += weight[k] * slope;
    }
    residual_gate_gradients(e, z, levels, dz);
    return range;
}

} // namespace mps
