// Hard-concrete gates and the Bayesian Bits regularizer; the formulas are in hard_concrete.h.
#include "policies/bayesian_bits/hard_concrete.h"

#include "evaluator/base/error.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace mps {

namespace {

double sigmoid(double v) {
    // Two branches so that exp never overflows.
    if (v >= 0) return 1.0 / (1.0 + std::exp(-v));
    const double e = std::exp(v);
    return e / (1.0 + e);
}

// log_alpha - beta * log(-gamma / zeta): the logit of q(z > 0).
double on_logit(double log_alpha) {
    using namespace hard_concrete;
    return log_alpha - beta * std::log(-gamma / zeta);
}

void check_regularizer_args(const char* what, size_t units, double macs_ratio) {
    if (units == 0)
        throw Error(std::string(what) + ": a quantizer with no gated units; pass at least one");
    if (!std::isfinite(macs_ratio) || !(macs_ratio > 0.0))
        throw Error(std::string(what) + ": MACs ratio " + std::to_string(macs_ratio) +
                    " must be finite and positive (MACs of the layer / largest layer MACs)");
}

} // namespace

GateSample sample_gate(double u, double log_alpha) {
    using namespace hard_concrete;
    if (!(u > 0.0 && u < 1.0))
        throw Error("sample_gate: noise u = " + std::to_string(u) +
                    " is outside the open interval (0, 1); draw u from (0, 1)");
    const double s = sigmoid((std::log(u) - std::log1p(-u) + log_alpha) / beta);
    const double stretched = s * (zeta - gamma) + gamma;
    if (stretched < 0.0) return {0.0, 0.0};
    if (stretched > 1.0) return {1.0, 0.0};
    return {stretched, (zeta - gamma) * s * (1.0 - s) / beta};
}

double probability_on(double log_alpha) { return sigmoid(on_logit(log_alpha)); }

double probability_on_derivative(double log_alpha) {
    // p * q(z = 0) rather than p * (1 - p): no cancellation when p is close to 1.
    return probability_on(log_alpha) * probability_off(log_alpha);
}

double probability_off(double log_alpha) { return sigmoid(-on_logit(log_alpha)); }

bool gate_is_on(double log_alpha) {
    return probability_off(log_alpha) < hard_concrete::off_threshold;
}

int thresholded_bits(const GateLogits& log_alpha, bool prunable) {
    int bits = 0;
    for (size_t k = 0; k < residual_gate_count; ++k) {
        const bool on = (k == 0 && !prunable) || gate_is_on(log_alpha[k]);
        if (!on) break; // a closed gate closes every gate above it
        bits = residual_bits[k];
    }
    return bits;
}

ResidualGates thresholded_gates(const GateLogits& log_alpha, bool prunable) {
    return gates_for_bits(thresholded_bits(log_alpha, prunable));
}

GateLogits initial_log_alpha(int start_bits) {
    // gates_for_bits validates the bit-width (and accepts 0, which is no start).
    if (start_bits == 0)
        throw Error("initial_log_alpha: start bit-width 0 would prune everything; use 2, 4, 8, "
                    "16 or 32");
    const ResidualGates open = gates_for_bits(start_bits);
    GateLogits log_alpha{};
    for (size_t k = 0; k < residual_gate_count; ++k)
        log_alpha[k] = open[k] != 0.0f ? hard_concrete::log_alpha_on : hard_concrete::log_alpha_off;
    return log_alpha;
}

ChainCost chain_cost(const GateLogits& log_alpha, bool prunable,
                     const std::array<double, residual_gate_count>& level_cost) {
    std::array<double, residual_gate_count> p{}, dp{}; // p_k and dp_k / dlog_alpha_k
    for (size_t k = 0; k < residual_gate_count; ++k) {
        const bool learned = k > 0 || prunable;
        p[k] = learned ? probability_on(log_alpha[k]) : 1.0;
        dp[k] = learned ? probability_on_derivative(log_alpha[k]) : 0.0;
    }
    // suffix[k] = S_k = c_k + p_{k+1} S_{k+1}; the chain's cost is p_0 S_0.
    std::array<double, residual_gate_count> suffix{};
    suffix[residual_gate_count - 1] = level_cost[residual_gate_count - 1];
    for (size_t k = residual_gate_count - 1; k-- > 0;)
        suffix[k] = level_cost[k] + p[k + 1] * suffix[k + 1];
    ChainCost c;
    c.value = p[0] * suffix[0];
    double prefix = 1.0; // P_{k-1}
    for (size_t k = 0; k < residual_gate_count; ++k) {
        c.grad[k] = prefix * suffix[k] * dp[k];
        prefix *= p[k];
    }
    return c;
}

ChainCost expected_bits(const GateLogits& log_alpha, bool prunable, const GateLevels& levels) {
    std::array<double, residual_gate_count> increment{};
    for (size_t k = 0; k < residual_gate_count; ++k)
        increment[k] = levels[k] - (k == 0 ? 0 : levels[k - 1]);
    return chain_cost(log_alpha, prunable, increment);
}

BitRegularizer bit_regularizer(std::span<const GateLogits> units, double macs_ratio,
                               bool prunable, const GateLevels& levels) {
    check_regularizer_args("bit_regularizer", units.size(), macs_ratio);
    const double scale = macs_ratio / static_cast<double>(units.size()); // m / U
    std::array<double, residual_gate_count> bits{};
    std::copy(levels.begin(), levels.end(), bits.begin());
    BitRegularizer r;
    r.grad.resize(units.size());
    for (size_t u = 0; u < units.size(); ++u) {
        const ChainCost c = chain_cost(units[u], prunable, bits);
        r.value += scale * c.value;
        for (size_t k = 0; k < residual_gate_count; ++k) r.grad[u][k] = scale * c.grad[k];
    }
    return r;
}

LayerBitops bitops_regularizer(std::span<const GateLogits> weight_units, bool weights_prunable,
                               const GateLogits& activation, double macs_ratio,
                               const GateLevels& weight_levels, const GateLevels& activation_levels) {
    check_regularizer_args("bitops_regularizer", weight_units.size(), macs_ratio);
    const double units = static_cast<double>(weight_units.size()), m = macs_ratio / 8.0;
    std::vector<ChainCost> weights;
    double w = 0.0;
    for (const GateLogits& unit : weight_units) {
        weights.push_back(expected_bits(unit, weights_prunable, weight_levels));
        w += weights.back().value / units;
    }
    const ChainCost a = expected_bits(activation, false, activation_levels);
    LayerBitops r;
    r.value = m * w * a.value;
    for (const ChainCost& c : weights) {
        GateLogits g{};
        for (size_t k = 0; k < residual_gate_count; ++k) g[k] = m * a.value / units * c.grad[k];
        r.weight_grad.push_back(g);
    }
    for (size_t k = 0; k < residual_gate_count; ++k) r.activation_grad[k] = m * w * a.grad[k];
    return r;
}

} // namespace mps
